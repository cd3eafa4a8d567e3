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
}

/// <summary>What one training step measured.</summary>
/// <param name="LossSum">The batch's loss × its size (the sum of the per-sample losses).</param>
/// <param name="Correct">Samples whose largest logit is their label.</param>
/// <param name="Count">Samples in the batch.</param>
/// <param name="DistillLossSum">For a <see cref="DistillWrapper"/>: its distillation term × the batch size; else 0.</param>
/// <param name="ZeroGradMs">Milliseconds spent zeroing the gradients.</param>
/// <param name="ForwardBackwardMs">Milliseconds of forward, loss and backward (both halves, with data-parallel halves).</param>
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
/// before <see cref="Run"/> for a schedule).</remarks>
public sealed class TrainStep : IDisposable
{
    private readonly Module _model;
    private readonly Optimizer _optimizer;
    private readonly TrainStepOptions _options;
    private readonly DataParallel? _parallel;
    private readonly DataParallel.HalfStep _halfStep;
    private readonly Tensor[] _parameters;

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

    /// <summary>Runs one step on a batch [B, C, H, W] with its labels and advances <see cref="Step"/>.</summary>
    /// <exception cref="NonFiniteLossException">The loss is NaN or infinite (the parameters are not updated).</exception>
    public StepResult Run(Tensor images, int[] labels)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.Dim(0) != labels.Length) throw new ArgumentException($"the batch has {images.Dim(0)} images but {labels.Length} labels");
        long t0 = Stopwatch.GetTimestamp();
        _model.ZeroGrad(setToNone: false);
        long t1 = Stopwatch.GetTimestamp();
        OpProfiler.Mark();
        var r = _parallel is null ? HalfStep(_model, images, labels, 1f, 0) : _parallel.Step(images, labels, _halfStep);
        long t2 = Stopwatch.GetTimestamp();
        if (_options.ClipGradNorm > 0) GradClip.ClipGradNorm(_parameters, _options.ClipGradNorm);
        long t3 = Stopwatch.GetTimestamp();
        _optimizer.Step();
        _parallel?.SyncReplica();
        OpProfiler.Mark();
        long t4 = Stopwatch.GetTimestamp();
        Step++;
        return new StepResult(r.LossSum, r.Correct, labels.Length, r.DistillLossSum,
            Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds, Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds,
            Stopwatch.GetElapsedTime(t2, t3).TotalMilliseconds, Stopwatch.GetElapsedTime(t3, t4).TotalMilliseconds);
    }

    // One forward and backward over (part of) a batch, the loss weighted by the part's share of the batch.
    private DataParallel.HalfResult HalfStep(Module m, Tensor images, int[] labels, float weight, int replica)
    {
        if (_options.Seed is int seed)
            Dropout.Seed(SeedMix.Combine(seed, Step, replica));   // stable across processes (HashCode.Combine is not)
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
