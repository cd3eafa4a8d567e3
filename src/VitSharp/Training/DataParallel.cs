using System.Runtime.ExceptionServices;
using VitSharp.Kernels;
using VitSharp.NN;

namespace VitSharp.Training;

/// <summary>
/// Data-parallel training steps on a 2-core machine: the batch is cut in two halves; the model runs forward and
/// backward on one half on the calling thread while a replica (same architecture, parameters copied from the model
/// after every optimizer step) runs the other half on a second thread, each with single-threaded kernels
/// (<see cref="ComputeThreads.Serial"/>). The replica's gradients are then added into the model's, so the optimizer
/// sees the gradient of the whole batch. Compared with splitting every kernel over both cores this has no per-op
/// synchronisation and keeps the serial parts of a step (element-wise ops, autograd bookkeeping) on both cores.
/// Not for models whose layers couple the samples of a batch (BatchNorm): they would see half-batch statistics.
/// </summary>
/// <remarks>Halves are weighted by their sizes (n₀/B and n₁/B), so the summed gradient is that of the batch mean;
/// results differ from a single-replica step only by float rounding, and are the same run to run.</remarks>
public sealed class DataParallel : IDisposable
{
    /// <summary>What one replica's half-step returns: the sum of its per-sample losses, its correct predictions and
    /// (distillation) the sum of its per-sample distillation losses.</summary>
    public readonly record struct HalfResult(double LossSum, int Correct, double DistillLossSum = 0);

    /// <summary>
    /// The work on one half: (module, images, labels, weight, replica index) → result; it must run forward and
    /// backward with the loss scaled by weight (the half's share of the batch) so that gradients accumulate into the
    /// module's parameters, inside its own <see cref="TensorScope"/> that it disposes.
    /// </summary>
    public delegate HalfResult HalfStep(Module module, Tensor images, int[] labels, float weight, int replica);

    private readonly Module _model;
    private readonly Module? _replica;
    private readonly Tensor[] _params, _replicaParams;
    private readonly Thread _thread;
    private readonly SemaphoreSlim _go = new(0), _done = new(0);
    private volatile bool _stop;
    private Action<int>? _body;
    private float[]? _half0, _half1;   // the split halves' storage, reused from step to step
    private ExceptionDispatchInfo? _error;

    /// <summary>Whether data-parallel steps suit this model on this machine: at least 2 compute threads, no layer
    /// that mixes the samples of a batch (BatchNorm), and not a model with its own loss (distillation: its teacher would
    /// be replicated too; it trains with every kernel split over the cores instead).</summary>
    public static bool Suits(Module model) =>
        ComputeThreads.Count >= 2 && model is not Models.ILossModel &&
        !model.NamedModules().Any(m => m.Module.GetType().Name.Contains("BatchNorm", StringComparison.Ordinal));

    /// <summary>
    /// Sets up the second thread, and with <paramref name="buildReplica"/> (same architecture) a replica for training
    /// steps; without it only <see cref="Run"/> and <see cref="Forward"/> (inference on the shared model) are available.
    /// </summary>
    public DataParallel(Module model, Func<Module>? buildReplica = null)
    {
        _model = model;
        _params = model.Parameters().ToArray();
        if (buildReplica is not null)
        {
            _replica = buildReplica();
            _replica.Train(model.Training);
            _replicaParams = _replica.Parameters().ToArray();
            if (_params.Length != _replicaParams.Length || _params.Zip(_replicaParams).Any(p => p.First.Size != p.Second.Size))
                throw new ArgumentException("the replica's parameters differ from the model's");
            SyncReplica();
        }
        else _replicaParams = [];
        _thread = new Thread(Loop) { IsBackground = true, Name = "VitSharp data-parallel replica" };
        _thread.Start();
    }

    /// <summary>Copies the model's parameters (and buffers) into the replica; call after every optimizer step.</summary>
    public void SyncReplica()
    {
        if (_replica is null) return;
        for (int i = 0; i < _params.Length; i++) _params[i].Data.AsSpan().CopyTo(_replicaParams[i].Data);
        var buffers = _model.NamedBuffers().ToArray();
        var rb = _replica.NamedBuffers().ToArray();
        for (int i = 0; i < buffers.Length; i++) buffers[i].Buffer.Data.AsSpan().CopyTo(rb[i].Buffer.Data);
    }

    /// <summary>
    /// Runs body(0) on the calling thread and body(1) on the second thread at once, each with single-threaded kernels;
    /// returns when both are done and rethrows the first error.
    /// </summary>
    public void Run(Action<int> body)
    {
        ObjectDisposedException.ThrowIf(_stop, this);
        _body = body; _error = null;
        _go.Release();
        try
        {
            using (ComputeThreads.Serial()) body(0);
        }
        finally { _done.Wait(); }
        _error?.Throw();
    }

    /// <summary>
    /// Runs <paramref name="step"/> on both halves of the batch at once and adds the replica's gradients into the
    /// model's. Returns the combined result. Batches of one sample run on the model alone.
    /// </summary>
    public HalfResult Step(Tensor images, int[] labels, HalfStep step)
    {
        if (_replica is null) throw new InvalidOperationException("training steps need a replica (construct DataParallel with buildReplica)");
        int b = labels.Length;
        if (b < 2) return step(_model, images, labels, 1f, 0);
        int n0 = (b + 1) / 2;
        var halves = SplitReusing(images, n0);
        int[][] y = [labels[..n0], labels[n0..]];
        _replica.Train(_model.Training);
        foreach (var p in _replicaParams) if (p.Grad is not null) Array.Clear(p.Grad.Data);
        var results = new HalfResult[2];
        Run(h => results[h] = step(h == 0 ? _model : _replica, halves[h], y[h], (float)y[h].Length / b, h));
        for (int i = 0; i < _params.Length; i++)
        {
            var g = _replicaParams[i].Grad;
            if (g is null) continue;
            var mine = _params[i].GradSpan();
            System.Numerics.Tensors.TensorPrimitives.Add(mine, g.Data, mine);
        }
        return new HalfResult(results[0].LossSum + results[1].LossSum, results[0].Correct + results[1].Correct,
            results[0].DistillLossSum + results[1].DistillLossSum);
    }

    /// <summary>
    /// Inference on both halves of a batch at once on the shared model: body(half index, images of that half) runs
    /// under no-grad in a <see cref="TensorScope"/> of its own on each thread (read what you need inside it).
    /// </summary>
    public void Forward(Tensor images, Action<int, Tensor> body)
    {
        int b = images.Dim(0);
        if (b < 2)
        {
            using var noGrad = Autograd.NoGrad();
            using var scope = TensorScope.Begin();
            body(0, images);
            return;
        }
        var halves = SplitReusing(images, (b + 1) / 2);
        Run(h =>
        {
            using var noGrad = Autograd.NoGrad();
            using var scope = TensorScope.Begin();
            body(h, halves[h]);
        });
    }

    // The first n0 samples of a batch [B, …] and the rest, copied into this instance's two buffers (grown when a batch is larger): no allocation per step.
    private Tensor[] SplitReusing(Tensor images, int n0)
    {
        int b = images.Dim(0), per = images.Size / Math.Max(1, b);
        int len0 = n0 * per, len1 = (b - n0) * per;
        if (_half0 is null || _half0.Length != len0) _half0 = new float[len0];
        if (_half1 is null || _half1.Length != len1) _half1 = new float[len1];
        images.Data.AsSpan(0, len0).CopyTo(_half0);
        images.Data.AsSpan(len0, len1).CopyTo(_half1);
        var shape0 = images.Shape; shape0[0] = n0;
        var shape1 = images.Shape; shape1[0] = b - n0;
        return [new Tensor(_half0, shape0), new Tensor(_half1, shape1)];
    }

    private void Loop()
    {
        using var serial = ComputeThreads.Serial();
        while (true)
        {
            _go.Wait();
            if (_stop) return;
            try { _body!(1); }
            catch (Exception e) { _error = ExceptionDispatchInfo.Capture(e); }
            finally { _done.Release(); }
        }
    }

    /// <summary>Stops the replica's thread.</summary>
    public void Dispose()
    {
        if (_stop) return;
        _stop = true;
        _go.Release();
        _thread.Join();
        _go.Dispose(); _done.Dispose();
    }
}
