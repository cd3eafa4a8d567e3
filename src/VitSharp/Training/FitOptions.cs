using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.Models;

namespace VitSharp.Training;

/// <summary>
/// Options of <see cref="Trainer.Fit"/>: the optimisation (AdamW with linear warm-up and cosine decay, label smoothing,
/// gradient clipping), the data preparation (augmentation, normalisation), and where the run's records go. The defaults
/// are <c>vit train</c>'s.
/// </summary>
public sealed record FitOptions
{
    /// <summary>Passes over the training set (≥ 1).</summary>
    public int Epochs { get; init; } = 7;

    /// <summary>Images per optimizer step (≥ 1); the last batch of an epoch may be smaller.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Peak learning rate of AdamW, reached after the warm-up.</summary>
    public float LearningRate { get; init; } = 2e-3f;

    /// <summary>Final learning rate of the cosine decay (equal to <see cref="LearningRate"/>: a constant rate after the warm-up).</summary>
    public float MinLearningRate { get; init; } = 1e-5f;

    /// <summary>Linear warm-up in epochs (may be fractional; 0 = none).</summary>
    public float WarmupEpochs { get; init; } = 0.5f;

    /// <summary>AdamW's decoupled weight decay.</summary>
    public float WeightDecay { get; init; } = 0.2f;

    /// <summary>Label smoothing of the cross-entropy, in [0, 1).</summary>
    public float LabelSmoothing { get; init; } = 0.1f;

    /// <summary>Clip the global gradient norm to this before every optimizer step; 0 = off.</summary>
    public float ClipGradNorm { get; init; } = 1f;

    /// <summary>
    /// Random transforms of the training images (C×H×W floats in [0, 1]), applied in order before the normalisation, e.g.
    /// <see cref="RandomCrop"/> and <see cref="RandomHorizontalFlip"/>; each sample's randomness comes from (seed, epoch,
    /// index). Empty: none. Test images are never augmented.
    /// </summary>
    public IReadOnlyList<ITransform> Augmentation { get; init; } = [];

    /// <summary>
    /// Per-channel normalisation of training and test images (after augmentation), recorded in checkpoints so that
    /// prediction prepares images the same way. Null: <see cref="Data"/>'s mean and std when it is given, else none.
    /// </summary>
    public Normalize? Normalization { get; init; }

    /// <summary>Seed of shuffling, augmentation and dropout (initialisation is the caller's: <c>Init.Seed</c> before building
    /// the model). The same model, data, options and seed give the same loss curve.</summary>
    public int Seed { get; init; }

    /// <summary>Run each batch's two halves at once on two cores, on the model and a replica built from <see cref="Spec"/>
    /// (<see cref="Training.DataParallel"/>), where that suits the model and machine; off: every kernel splits its work.</summary>
    public bool DataParallel { get; init; } = true;

    /// <summary>
    /// Output folder: <c>checkpoint.safetensors</c> after every epoch and on cancellation (when the model has a
    /// <see cref="Spec"/>), <c>metrics.jsonl</c> and <c>curves.svg</c>. Null: nothing is written, and cancellation just
    /// stops the run.
    /// </summary>
    public string? OutDir { get; init; }

    /// <summary>
    /// The model's constructor and keyword arguments: recorded in checkpoints so that <c>vit eval</c>, <c>vit predict</c>,
    /// <c>ImageClassifier.Load</c> and resuming rebuild it, and used to build the data-parallel replica. Null: taken from the
    /// model when it is a hand-built <see cref="ViT"/>, <see cref="SimpleViT"/>, <see cref="DeepViT"/> or
    /// <see cref="CaiT"/> (from its <c>Config</c>); for any other model without a spec no checkpoint is written (only
    /// metrics.jsonl and curves.svg), resuming is not possible and the run is not data-parallel.
    /// </summary>
    public ModelSpec? Spec { get; init; }

    /// <summary>
    /// What checkpoints record about the data: its name, class names, image geometry and (when
    /// <see cref="Normalization"/> is null) the normalisation; an imported model's preprocessing. Null: the training
    /// set's class names and geometry, named "custom".
    /// </summary>
    public DataInfo? Data { get; init; }

    /// <summary>Continue the run whose checkpoint is in <see cref="OutDir"/>: its weights, optimizer state, learning-rate
    /// schedule and position (epoch, batch, the epoch's running metrics), exactly where it stopped. The options must be
    /// the run's own. A missing checkpoint is an error.</summary>
    public bool Resume { get; init; }

    /// <summary>How many images the evaluation after every epoch runs at once.</summary>
    public int EvalBatchSize { get; init; } = 256;

    /// <summary>How often <see cref="StepProgress"/> is reported (and always after an epoch's last batch); zero: after
    /// every step.</summary>
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>What checkpoints record as the run's options (<c>vit train</c>'s <see cref="TrainOptions"/>, which its
    /// resume reads back); null: these options.</summary>
    internal JsonObject? RecordedOptions { get; init; }

    /// <summary>Checks the values; throws an <see cref="ArgumentException"/> naming the bad one.</summary>
    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentException($"epochs must be ≥ 1, got {Epochs}");
        if (BatchSize < 1) throw new ArgumentException($"batch size must be ≥ 1, got {BatchSize}");
        if (EvalBatchSize < 1) throw new ArgumentException($"evaluation batch size must be ≥ 1, got {EvalBatchSize}");
        if (!(LearningRate > 0)) throw new ArgumentException($"learning rate must be > 0, got {LearningRate}");
        if (MinLearningRate < 0 || MinLearningRate > LearningRate) throw new ArgumentException($"minimum learning rate must lie in [0, {LearningRate}] (the peak), got {MinLearningRate}");
        if (WeightDecay < 0) throw new ArgumentException($"weight decay must be ≥ 0, got {WeightDecay}");
        if (LabelSmoothing < 0 || LabelSmoothing >= 1) throw new ArgumentException($"label smoothing must lie in [0, 1), got {LabelSmoothing}");
        if (WarmupEpochs < 0) throw new ArgumentException($"warm-up must be ≥ 0 epochs, got {WarmupEpochs}");
        if (!(ClipGradNorm >= 0)) throw new ArgumentException($"gradient clip must be ≥ 0, got {ClipGradNorm}");
        if (Augmentation is null || Augmentation.Any(t => t is null)) throw new ArgumentException("augmentation must be a list of transforms without nulls");
        if (ProgressInterval < TimeSpan.Zero) throw new ArgumentException($"progress interval must be ≥ 0, got {ProgressInterval}");
        if (Resume && OutDir is null) throw new ArgumentException("resuming needs the run's output folder (OutDir)");
    }

    /// <summary>The options as checkpoint JSON (snake_case keys), when no <see cref="RecordedOptions"/> are given.</summary>
    internal JsonObject ToJson() => new()
    {
        ["epochs"] = Epochs, ["batch_size"] = BatchSize, ["learning_rate"] = LearningRate, ["min_learning_rate"] = MinLearningRate,
        ["warmup_epochs"] = WarmupEpochs, ["weight_decay"] = WeightDecay, ["label_smoothing"] = LabelSmoothing,
        ["clip_grad_norm"] = ClipGradNorm, ["seed"] = Seed, ["data_parallel"] = DataParallel,
        ["augmentation"] = new JsonArray(Augmentation.Select(t => (JsonNode?)JsonValue.Create(t.GetType().Name)).ToArray()),
    };
}
