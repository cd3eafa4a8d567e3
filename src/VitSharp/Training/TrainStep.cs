using System.Diagnostics;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Optim;

namespace VitSharp.Training;

/// <summary>What a <see cref="TrainStep"/> does besides forward, backward and the optimizer step.</summary>
public sealed record TrainStepOptions
{
    /// <summary>Label smoothing of the cross-entropy (for an <see cref="ILossModel"/>: passed to its own loss). In [0, 1).</summary>
    public float LabelSmoothing { get; init; }

    /// <summary>Clip the global gradient norm to this before the optimizer step; 0 = no clipping.</summary>
    public float ClipGradNorm { get; init; }

    /// <summary>
    /// Seed of the dropout generator, reseeded before every step from (seed, step index[, replica]) so that a run is the
    /// same however it is interrupted and resumed (<see cref="Trainer.Fit"/> sets it). Null: the generator is not
    /// reseeded (no allocation per step; <c>vit bench</c>).
    /// </summary>
    public int? Seed { get; init; }

    /// <summary>
    /// Data-parallel over MPI ranks (<see cref="VitSharp.Distributed"/>, which must be initialised): every rank runs the step
    /// on its shard of the global batch (<see cref="TrainStep.Run(Tensor, int[], int, bool)"/>), the gradients are summed
    /// over the ranks in buckets (<see cref="GradientAllReducer"/>) and every rank takes the same optimizer step. Rank 0's
    /// parameters are broadcast to the others when the step is set up. Dropout masks are drawn per (seed, step, rank,
    /// half), so they depend on the number of ranks; everything else does not.
    /// </summary>
    public bool Distributed { get; init; }
}

/// <summary>What one training step measured.</summary>
/// <param name="LossSum">The batch's loss × its size (the sum of the per-sample losses).</param>
/// <param name="Correct">Samples whose largest logit is their label.</param>
/// <param name="Count">Samples in the batch.</param>
/// <param name="DistillLossSum">For a <see cref="DistillWrapper"/>: its distillation term × the batch size; else 0.</param>
/// <param name="ZeroGradMs">Milliseconds spent zeroing the gradients.</param>
/// <param name="ForwardBackwardMs">Milliseconds of forward, loss and backward (both halves, with data-parallel halves; in a
/// distributed step also the gradient all-reduce).</param>
/// <param name="ClipMs">Milliseconds of gradient clipping.</param>
/// <param name="OptimizerMs">Milliseconds of the optimizer step (and the replica's parameter copy).</param>
public readonly record struct StepResult(double LossSum, int Correct, int Count, double DistillLossSum,
    double ZeroGradMs, double ForwardBackwardMs, double ClipMs, double OptimizerMs)
{
    /// <summary>The batch's mean loss.</summary>
    public double Loss => Count == 0 ? double.NaN : LossSum / Count;
}

/// <summary>
/// One supervised training step, the only one in VitSharp (<see cref="Trainer.Fit"/>, <c>vit bench --train</c> and the
/// benches run it): zero the gradients, forward, loss (cross-entropy with label smoothing, or the model's own loss for an
/// <see cref="ILossModel"/> such as <see cref="DistillWrapper"/>), backward, gradient clipping, the optimizer step. With a
/// replica (<see cref="DataParallel"/>) the batch's two halves run forward and backward at once on two cores and the
/// replica's parameters are synchronised after the optimizer step. Every forward/backward runs in its own recycling
/// <see cref="TensorScope"/>, so a steady-state step allocates no managed memory (without <see cref="TrainStepOptions.Seed"/>).
/// </summary>
/// <remarks>Not thread-safe: one thread drives a step at a time. The optimizer's learning rate is the caller's (set it
/// before <see cref="Run(Tensor, int[])"/> for a schedule).</remarks>
public sealed class TrainStep : IDisposable
{
    private readonly Module _model;
    private readonly Optimizer _optimizer;
    private readonly TrainStepOptions _options;
    private readonly DataParallel? _parallel;
    private readonly DataParallel.HalfStep _halfStep;
    private readonly Tensor[] _parameters;
    private readonly GradientAllReducer? _reducer;
    private readonly double[] _stats = new double[5];   // the step's sums all-reduced over the ranks (reused)
    private readonly int _replicaBase;                  // dropout stream of this rank's first half

    /// <summary>Sets up the step.</summary>
    /// <param name="model">The model; switched to training mode.</param>
    /// <param name="optimizer">The optimizer over the model's trainable parameters.</param>
    /// <param name="options">Label smoothing, clipping, dropout seeding (null: none of them).</param>
    /// <param name="buildReplica">Builds a model of the same architecture (parameters frozen as the model's): the batch's
    /// halves then run at once on two cores when <see cref="DataParallel.Suits"/> the model. Null: every kernel splits
    /// its work over the cores instead.</param>
    public TrainStep(Module model, Optimizer optimizer, TrainStepOptions? options = null, Func<Module>? buildReplica = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        _model = model;
        _optimizer = optimizer;
        _options = options ?? new TrainStepOptions();
        if (_options.LabelSmoothing is < 0 or >= 1) throw new ArgumentException($"label smoothing must lie in [0, 1), got {_options.LabelSmoothing}");
        if (!(_options.ClipGradNorm >= 0)) throw new ArgumentException($"gradient clip must be ≥ 0, got {_options.ClipGradNorm}");
        _parameters = model.Parameters().ToArray();
        model.Train();
        _halfStep = HalfStep;   // one delegate for every step
        if (_options.Distributed)
        {
            if (!VitSharp.Distributed.IsInitialized) throw new InvalidOperationException("a distributed step needs MPI: call Distributed.Initialize() first");
            _reducer = new GradientAllReducer(_parameters);
            VitSharp.Distributed.CheckSame(_reducer.Elements, "the number of trainable parameters");
            GradientAllReducer.BroadcastParameters(_parameters);
            _replicaBase = 2 * VitSharp.Distributed.Rank;
        }
        if (buildReplica is not null && DataParallel.Suits(model))
            _parallel = new DataParallel(model, () =>
            {
                var replica = buildReplica();
                var frozen = model.NamedParameters().Where(p => !p.Parameter.RequiresGrad).Select(p => p.Name).ToHashSet();
                if (frozen.Count > 0)
                    foreach (var (name, p) in replica.NamedParameters()) p.RequiresGrad = !frozen.Contains(name);
                return replica;
            });
    }

    /// <summary>The model being trained.</summary>
    public Module Model => _model;

    /// <summary>Whether the batch's halves run on two cores at once (a replica was given and suits the model).</summary>
    public bool IsDataParallel => _parallel is not null;

    /// <summary>The data-parallel runner (to evaluate with the same two threads), or null.</summary>
    public DataParallel? Parallel => _parallel;

    /// <summary>Steps taken so far: the index of the next step, from which dropout is seeded. Set it when resuming a run.</summary>
    public long Step { get; set; }

    /// <summary>Whether the step is data-parallel over MPI ranks (<see cref="TrainStepOptions.Distributed"/>).</summary>
    public bool IsDistributed => _reducer is not null;

    /// <summary>The gradient all-reducer of a distributed step (its bucket size and count), else null.</summary>
    public GradientAllReducer? Reducer => _reducer;

    /// <summary>In a distributed run: whether some rank asked to stop in the last step (<see cref="Run(Tensor, int[], int, bool)"/>'s
    /// <c>stop</c>); every rank sees the same value after the same step, so they all stop at the same position.</summary>
    public bool Stopping { get; private set; }

    /// <summary>Runs one step on a batch [B, C, H, W] with its labels and advances <see cref="Step"/>.</summary>
    /// <exception cref="NonFiniteLossException">The loss is NaN or infinite (the parameters are not updated).</exception>
    public StepResult Run(Tensor images, int[] labels) => Run(images, labels, labels?.Length ?? 0, stop: false);

    /// <summary>
    /// Runs one step and advances <see cref="Step"/>. In a distributed step <paramref name="images"/> and
    /// <paramref name="labels"/> are this rank's shard (possibly empty) of a global batch of <paramref name="globalCount"/>
    /// samples: its loss is weighted by its share, the gradients are summed over the ranks, and the result's sums and count
    /// are the global batch's, the same on every rank. Otherwise <paramref name="globalCount"/> must be the batch's size.
    /// </summary>
    /// <param name="images">[B, C, H, W].</param>
    /// <param name="labels">The B labels.</param>
    /// <param name="globalCount">Samples in the global batch (all ranks together).</param>
    /// <param name="stop">This rank asks every rank to stop after this step (see <see cref="Stopping"/>).</param>
    /// <exception cref="NonFiniteLossException">The loss is NaN or infinite on some rank (the parameters are not updated).</exception>
    public StepResult Run(Tensor images, int[] labels, int globalCount, bool stop)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.Dim(0) != labels.Length) throw new ArgumentException($"the batch has {images.Dim(0)} images but {labels.Length} labels");
        if (_reducer is null ? globalCount != labels.Length : globalCount < labels.Length || globalCount < 1)
            throw new ArgumentException($"the global batch of {globalCount} samples does not hold this batch of {labels.Length}");
        long t0 = Stopwatch.GetTimestamp();
        _model.ZeroGrad(setToNone: false);
        long t1 = Stopwatch.GetTimestamp();
        OpProfiler.Mark();
        DataParallel.HalfResult r = default;
        bool nonFinite = false;
        if (_reducer is null)
            r = _parallel is null ? HalfStep(_model, images, labels, 1f, 0) : _parallel.Step(images, labels, _halfStep);
        else
        {
            // Every rank reaches the all-reduce, whatever its shard did: a rank that stopped early would hang the others.
            try
            {
                if (labels.Length > 0)
                    r = _parallel is null ? HalfStep(_model, images, labels, labels.Length / (float)globalCount, 0) : _parallel.Step(images, labels, _halfStep, globalCount);
            }
            catch (NonFiniteLossException) { nonFinite = true; }
            _reducer.SumOverRanks();
            var s = _stats;
            (s[0], s[1], s[2], s[3], s[4]) = (r.LossSum, r.Correct, r.DistillLossSum, nonFinite ? 1 : 0, stop ? 1 : 0);
            VitSharp.Distributed.AllReduceSum(s);
            Stopping = s[4] > 0;
            if (s[3] > 0) throw new NonFiniteLossException($"the loss is not finite on {s[3]:0} of {VitSharp.Distributed.Size} ranks at step {Step + 1}");
            r = new DataParallel.HalfResult(s[0], (int)Math.Round(s[1]), s[2]);
        }
        long t2 = Stopwatch.GetTimestamp();
        if (_options.ClipGradNorm > 0) GradClip.ClipGradNorm(_parameters, _options.ClipGradNorm);
        long t3 = Stopwatch.GetTimestamp();
        _optimizer.Step();
        _parallel?.SyncReplica();
        OpProfiler.Mark();
        long t4 = Stopwatch.GetTimestamp();
        Step++;
        return new StepResult(r.LossSum, r.Correct, globalCount, r.DistillLossSum,
            Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds, Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds,
            Stopwatch.GetElapsedTime(t2, t3).TotalMilliseconds, Stopwatch.GetElapsedTime(t3, t4).TotalMilliseconds);
    }

    // One forward and backward over (part of) a batch, the loss weighted by the part's share of the batch.
    private DataParallel.HalfResult HalfStep(Module m, Tensor images, int[] labels, float weight, int replica)
    {
        if (_options.Seed is int seed)
            Dropout.Seed(SeedMix.Combine(seed, Step, _replicaBase + replica));   // stable across processes (HashCode.Combine is not)
        using var scope = TensorScope.Begin(recycleTensors: true);
        Tensor logits, loss;
        double distillSum = 0;
        if (m is ILossModel lossModel)
        {
            var lr = lossModel.ComputeLoss(images, labels, _options.LabelSmoothing);
            (logits, loss) = (lr.Logits, lr.Loss);
            if (lr is DistillLoss d) distillSum = (double)d.DistillationLoss.Item() * labels.Length;
        }
        else
        {
            logits = m.Forward(images);
            loss = F.CrossEntropy(logits, labels, _options.LabelSmoothing);
        }
        float value = loss.Item();
        if (!float.IsFinite(value)) throw new NonFiniteLossException($"loss is {value} at step {Step + 1}");
        (weight == 1f ? loss : loss * weight).Backward();
        return new DataParallel.HalfResult((double)value * labels.Length, CountCorrect(logits, labels), distillSum);
    }

    // Rows whose first largest logit is the label (as Evaluator.ArgMax), without allocating.
    private static int CountCorrect(Tensor logits, int[] labels)
    {
        int k = logits.Dim(1);
        var d = logits.Data;
        int correct = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            int best = 0;
            for (int j = 1; j < k; j++) if (d[i * k + j] > d[i * k + best]) best = j;
            if (best == labels[i]) correct++;
        }
        return correct;
    }

    /// <summary>Stops the replica's thread (data-parallel steps).</summary>
    public void Dispose() => _parallel?.Dispose();
}
