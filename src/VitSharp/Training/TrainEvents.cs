namespace VitSharp.Training;

/// <summary>Something a training run reports while it works.</summary>
public abstract record TrainEvent;

/// <summary>Progress inside an epoch (sent every few steps).</summary>
public sealed record StepProgress(int Epoch, int Epochs, int Batch, int Batches, long Step, double Loss, double Accuracy,
    double ImagesPerSecond, TimeSpan Elapsed, TimeSpan Remaining, float LearningRate) : TrainEvent;

/// <summary>One finished epoch (what metrics.jsonl records).</summary>
public sealed record EpochMetrics(int Epoch, long Step, double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy,
    double Seconds, double ImagesPerSecond, float LearningRate) : TrainEvent
{
    /// <summary>
    /// In a distillation run, the epoch's mean distillation term (soft: KL·T², hard: cross-entropy against the teacher's
    /// arg-max); <see cref="TrainLoss"/> is then the whole wrapper loss. Null (and absent from metrics.jsonl) otherwise.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public double? TrainDistillLoss { get; init; }
}

/// <summary>A message for the person watching (checkpoint written, resumed, …).</summary>
public sealed record TrainMessage(string Text) : TrainEvent;

/// <summary>The outcome of a run.</summary>
/// <param name="CheckpointPath">The run's checkpoint; null when the run writes none (<see cref="FitOptions.OutDir"/> or
/// <see cref="FitOptions.Spec"/> missing).</param>
/// <param name="History">Every finished epoch's metrics (a resumed run's earlier epochs included).</param>
/// <param name="Interrupted">The run was cancelled before its last epoch ended (the checkpoint holds the position).</param>
/// <param name="FinalEvaluation">The last evaluation on the test set; null when interrupted or without a test set.</param>
public sealed record TrainResult(string? CheckpointPath, IReadOnlyList<EpochMetrics> History, bool Interrupted, EvalResult? FinalEvaluation);

/// <summary>The loss became NaN or infinite; the run stopped and kept the last good checkpoint.</summary>
public sealed class NonFiniteLossException(string message) : Exception(message);
