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
    private readonly Tensor[] _buffers, _replicaBuffers;
    // Reused from step to step (a steady-state step allocates nothing): the halves' images and labels, the step's
    // arguments and results, and the delegate that runs one half.
    private readonly Tensor?[] _halves = new Tensor?[2];   // the halves of the step under way
    private Tensor? _half0, _half1;                        // their tensors, kept from step to step
    private readonly int[][] _labels = [[], []];
    private readonly HalfResult[] _results = new HalfResult[2];
    private HalfStep? _step;
    private float _batch;
    private readonly Action<int> _runHalf, _forwardHalf;
    private Action<int, Tensor>? _forward;
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
        _buffers = model.NamedBuffers().Select(b => b.Buffer).ToArray();
        _forwardHalf = h =>
        {
            using var noGrad = Autograd.NoGrad();
            using var scope = TensorScope.Begin(recycleTensors: true);
            _forward!(h, _halves[h]!);
        };
        _runHalf = h => _results[h] = _step!(h == 0 ? _model : _replica!, _halves[h]!, _labels[h], _labels[h].Length / _batch, h);
        if (buildReplica is not null)
        {
            _replica = buildReplica();
            _replica.Train(model.Training);
            _replicaParams = _replica.Parameters().ToArray();
            _replicaBuffers = _replica.NamedBuffers().Select(b => b.Buffer).ToArray();
            if (_params.Length != _replicaParams.Length || _params.Zip(_replicaParams).Any(p => p.First.Size != p.Second.Size))
                throw new ArgumentException("the replica's parameters differ from the model's");
            SyncReplica();
        }
        else { _replicaParams = []; _replicaBuffers = []; }
        _thread = new Thread(Loop) { IsBackground = true, Name = "VitSharp data-parallel replica" };
        _thread.Start();
    }

    /// <summary>Copies the model's parameters (and buffers) into the replica; call after every optimizer step.</summary>
    public void SyncReplica()
    {
        if (_replica is null) return;
        for (int i = 0; i < _params.Length; i++) _params[i].Data.AsSpan().CopyTo(_replicaParams[i].Data);
        for (int i = 0; i < _buffers.Length; i++) _buffers[i].Data.AsSpan().CopyTo(_replicaBuffers[i].Data);
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
    /// <param name="images">The batch (or this process's shard of a distributed global batch).</param>
    /// <param name="labels">Its labels.</param>
    /// <param name="step">The work on one half.</param>
    /// <param name="globalCount">The samples of the whole global batch when <paramref name="images"/> is one rank's shard of
    /// it (each half is then weighted by its share of the global batch); null: the batch is whole.</param>
    public HalfResult Step(Tensor images, int[] labels, HalfStep step, int? globalCount = null)
    {
        if (_replica is null) throw new InvalidOperationException("training steps need a replica (construct DataParallel with buildReplica)");
        int b = labels.Length;
        if (b < 2) return step(_model, images, labels, b / (float)(globalCount ?? b), 0);
        int n0 = (b + 1) / 2;
        SplitReusing(images, n0);
        for (int h = 0; h < 2; h++)
        {
            int len = h == 0 ? n0 : b - n0;
            if (_labels[h].Length != len) _labels[h] = new int[len];
            labels.AsSpan(h == 0 ? 0 : n0, len).CopyTo(_labels[h]);
        }
        _replica.Train(_model.Training);
        foreach (var p in _replicaParams) if (p.Grad is not null) Array.Clear(p.Grad.Data);
        (_step, _batch) = (step, globalCount ?? b);
        try { Run(_runHalf); }
        finally { _step = null; _halves[0] = _halves[1] = null; }
        var results = _results;
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
            using var scope = TensorScope.Begin(recycleTensors: true);
            body(0, images);
            return;
        }
        SplitReusing(images, (b + 1) / 2);
        _forward = body;
        try { Run(_forwardHalf); }
        finally { _forward = null; _halves[0] = _halves[1] = null; }
    }

    // The first n0 samples of a batch [B, …] and the rest, as two tensors over this instance's buffers (new ones only
    // when the halves' shapes change): no allocation per step.
    private void SplitReusing(Tensor images, int n0)
    {
        int b = images.Dim(0), per = images.Size / Math.Max(1, b);
        for (int h = 0; h < 2; h++)
        {
            int rows = h == 0 ? n0 : b - n0;
            var t = h == 0 ? _half0 : _half1;
            if (t is null || t.Dim(0) != rows || !t.ShapeSpan[1..].SequenceEqual(images.ShapeSpan[1..]))
            {
                var shape = images.Shape; shape[0] = rows;
                t = new Tensor(shape);
                if (h == 0) _half0 = t; else _half1 = t;
            }
            images.Data.AsSpan(h == 0 ? 0 : n0 * per, rows * per).CopyTo(t.Data);
            _halves[h] = t;
        }
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
