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
    /// <summary>What one replica's half-step returns: the sum of its per-sample losses and its correct predictions.</summary>
    public readonly record struct HalfResult(double LossSum, int Correct);

    /// <summary>
    /// The work on one half: (module, images, labels, weight, replica index) → result; it must run forward and
    /// backward with the loss scaled by weight (the half's share of the batch) so that gradients accumulate into the
    /// module's parameters, inside its own <see cref="TensorScope"/> that it disposes.
    /// </summary>
    public delegate HalfResult HalfStep(Module module, Tensor images, int[] labels, float weight, int replica);

    private readonly Module _model, _replica;
    private readonly Tensor[] _params, _replicaParams;
    private readonly Thread _thread;
    private readonly SemaphoreSlim _go = new(0), _done = new(0);
    private volatile bool _stop;
    private HalfStep? _work;
    private Tensor? _images;
    private int[]? _labels;
    private float _weight;
    private HalfResult _result;
    private ExceptionDispatchInfo? _error;

    /// <summary>Whether data-parallel steps suit this model on this machine: at least 2 compute threads and no layer
    /// that mixes the samples of a batch (BatchNorm).</summary>
    public static bool Suits(Module model) =>
        ComputeThreads.Count >= 2 && !model.NamedModules().Any(m => m.Module.GetType().Name.Contains("BatchNorm", StringComparison.Ordinal));

    /// <summary>Sets up the replica (built by <paramref name="buildReplica"/>, same architecture) and its thread.</summary>
    public DataParallel(Module model, Func<Module> buildReplica)
    {
        _model = model;
        _replica = buildReplica();
        _replica.Train(model.Training);
        _params = model.Parameters().ToArray();
        _replicaParams = _replica.Parameters().ToArray();
        if (_params.Length != _replicaParams.Length || _params.Zip(_replicaParams).Any(p => p.First.Size != p.Second.Size))
            throw new ArgumentException("the replica's parameters differ from the model's");
        SyncReplica();
        _thread = new Thread(Loop) { IsBackground = true, Name = "VitSharp data-parallel replica" };
        _thread.Start();
    }

    /// <summary>Copies the model's parameters (and buffers) into the replica; call after every optimizer step.</summary>
    public void SyncReplica()
    {
        for (int i = 0; i < _params.Length; i++) _params[i].Data.AsSpan().CopyTo(_replicaParams[i].Data);
        var buffers = _model.NamedBuffers().ToArray();
        var rb = _replica.NamedBuffers().ToArray();
        for (int i = 0; i < buffers.Length; i++) buffers[i].Buffer.Data.AsSpan().CopyTo(rb[i].Buffer.Data);
    }

    /// <summary>
    /// Runs <paramref name="step"/> on both halves of the batch at once and adds the replica's gradients into the
    /// model's. Returns the combined result. Batches of one sample run on the model alone.
    /// </summary>
    public HalfResult Step(Tensor images, int[] labels, HalfStep step)
    {
        int b = labels.Length;
        if (b < 2) return step(_model, images, labels, 1f, 0);
        int n0 = (b + 1) / 2, n1 = b - n0;
        var (x0, x1) = Split(images, n0);
        _replica.Train(_model.Training);
        foreach (var p in _replicaParams) if (p.Grad is not null) Array.Clear(p.Grad.Data);
        _work = step; _images = x1; _labels = labels[n0..]; _weight = (float)n1 / b; _error = null;
        _go.Release();
        HalfResult r0;
        try
        {
            using (ComputeThreads.Serial())
                r0 = step(_model, x0, labels[..n0], (float)n0 / b, 0);
        }
        finally { _done.Wait(); }
        _error?.Throw();
        for (int i = 0; i < _params.Length; i++)
        {
            var g = _replicaParams[i].Grad;
            if (g is null) continue;
            var mine = _params[i].GradSpan();
            System.Numerics.Tensors.TensorPrimitives.Add(mine, g.Data, mine);
        }
        return new HalfResult(r0.LossSum + _result.LossSum, r0.Correct + _result.Correct);
    }

    private static (Tensor, Tensor) Split(Tensor images, int n0)
    {
        int b = images.Dim(0), per = images.Size / Math.Max(1, b);
        var shape0 = images.Shape; shape0[0] = n0;
        var shape1 = images.Shape; shape1[0] = b - n0;
        var d0 = new float[n0 * per]; var d1 = new float[(b - n0) * per];
        images.Data.AsSpan(0, d0.Length).CopyTo(d0);
        images.Data.AsSpan(d0.Length, d1.Length).CopyTo(d1);
        return (new Tensor(d0, shape0), new Tensor(d1, shape1));
    }

    private void Loop()
    {
        using var serial = ComputeThreads.Serial();
        while (true)
        {
            _go.Wait();
            if (_stop) return;
            try { _result = _work!(_replica, _images!, _labels!, _weight, 1); }
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
