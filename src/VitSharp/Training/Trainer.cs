using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Optim;

namespace VitSharp.Training;

/// <summary>
/// The training loop behind <c>vit train</c>: AdamW with linear warm-up and cosine decay, label smoothing,
/// light augmentation, a loader that prepares the next batch on another thread, evaluation after every
/// epoch, a checkpoint every epoch (and on cancellation), metrics.jsonl and curves.svg in the output folder.
/// The same options and seed give the same loss curve; <c>resume</c> continues exactly where a run stopped.
/// </summary>
public static class Trainer
{
    /// <summary>File name of the checkpoint inside the output folder.</summary>
    public const string CheckpointFile = "checkpoint.safetensors";
    /// <summary>File name of the per-epoch metrics (one JSON object per line).</summary>
    public const string MetricsFile = "metrics.jsonl";
    /// <summary>File name of the loss and accuracy plot.</summary>
    public const string PlotFile = "curves.svg";

    private static readonly JsonSerializerOptions Snake = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Runs (or with <paramref name="resume"/>, continues) a training run.</summary>
    public static TrainResult Run(TrainOptions options, bool resume = false, IProgress<TrainEvent>? progress = null,
        CancellationToken cancel = default)
    {
        string outDir = options.OutDir;
        string ckptPath = Path.Combine(outDir, CheckpointFile);
        LoadedCheckpoint? restored = null;
        if (resume)
        {
            if (!File.Exists(ckptPath)) throw new CheckpointException($"{ckptPath}: nothing to resume (no checkpoint in {outDir})");
            restored = Checkpoint.Load(ckptPath);
            var saved = restored.Info.Training["options"] as JsonObject ?? throw new CheckpointException($"{ckptPath}: no training options to resume from");
            options = TrainOptions.FromJson(saved) with { OutDir = outDir };
            progress?.Report(new TrainMessage($"resuming {ckptPath}"));
        }
        options.Validate();
        Directory.CreateDirectory(outDir);

        var (trainAll, testAll, info) = DataSets.Load(options.Dataset, options.DataDir, options.Seed, options.ImageSize, options.Channels);
        var train = DataSets.Limit(trainAll, options.TrainLimit);
        var test = DataSets.Limit(testAll, options.TestLimit);

        Module model;
        ModelSpec spec;
        if (restored is not null) { model = restored.Model; spec = restored.Info.Model; }
        else
        {
            spec = FitToData(Presets.Get(options.Model).Spec, info);
            Init.Seed(options.Seed);
            model = spec.Build();
        }
        model.Train();

        var optimizer = new AdamW(model.NamedParameters(), options.LearningRate, weightDecay: options.WeightDecay);
        var transforms = new List<ITransform>();
        if (options.ShiftPixels > 0) transforms.Add(new RandomCrop(options.ShiftPixels));
        if (options.Flip) transforms.Add(new RandomHorizontalFlip());
        transforms.Add(info.Normalize());
        var loader = new DataLoader(train, options.BatchSize, shuffle: true, options.Seed, new Compose(transforms.ToArray()));
        int batches = loader.BatchCount;
        long totalSteps = (long)batches * options.Epochs;
        var schedule = new WarmupCosine(options.LearningRate, (long)Math.Round(options.WarmupEpochs * batches), totalSteps, options.MinLearningRate);

        int startEpoch = 0, startBatch = 0;
        long step = 0;
        var history = new List<EpochMetrics>();
        var partial = new EpochSums();
        if (restored is not null)
        {
            var t = restored.Info.Training;
            startEpoch = t["epoch"]!.GetValue<int>();
            startBatch = t["batch"]!.GetValue<int>();
            step = t["step"]!.GetValue<long>();
            history = t["history"].Deserialize<List<EpochMetrics>>(Snake) ?? new();
            partial = t["partial"].Deserialize<EpochSums>(Snake) ?? new();
            optimizer.LoadStateDict(restored.OptimizerState, step);
            if (step > 0) optimizer.LearningRate = schedule.At(step - 1); // the rate of the last step taken
        }

        void Save(int epoch, int batch, EpochSums sums)
        {
            foreach (var (name, p) in model.NamedParameters())
                if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum<float>(p.Data)))
                    throw new NonFiniteLossException($"parameter '{name}' is not finite; the checkpoint was not overwritten");
            var training = new JsonObject
            {
                ["options"] = options.ToJson(), ["epoch"] = epoch, ["batch"] = batch, ["step"] = step,
                ["batches_per_epoch"] = batches,
                ["history"] = JsonSerializer.SerializeToNode(history, Snake), ["partial"] = JsonSerializer.SerializeToNode(sums, Snake),
            };
            Checkpoint.Save(ckptPath, model, new CheckpointInfo(spec, info.ToJson(), training), optimizer);
        }

        EvalResult? lastEval = null;
        var total = Stopwatch.StartNew();
        long stepsThisRun = 0;
        for (int epoch = startEpoch; epoch < options.Epochs; epoch++)
        {
            var sums = epoch == startEpoch ? partial : new EpochSums();
            var epochClock = Stopwatch.StartNew();
            int batch = 0, skip = epoch == startEpoch ? startBatch : 0;
            var lastReport = Stopwatch.StartNew();
            foreach (var b in loader.Epoch(epoch))
            {
                if (batch < skip) { batch++; continue; }
                if (cancel.IsCancellationRequested)
                {
                    Save(epoch, batch, sums);
                    progress?.Report(new TrainMessage($"interrupted at epoch {epoch + 1}, batch {batch}: checkpoint saved to {ckptPath}"));
                    return new TrainResult(ckptPath, history, Interrupted: true, null);
                }
                float lr = schedule.At(step);
                optimizer.LearningRate = lr;
                Dropout.Seed(HashCode.Combine(options.Seed, step));
                using (var scope = TensorScope.Begin())
                {
                    model.ZeroGrad(setToNone: false);
                    var logits = model.Forward(b.Images);
                    var loss = F.CrossEntropy(logits, b.Labels, options.LabelSmoothing);
                    float value = loss.Item();
                    if (!float.IsFinite(value))
                        throw new NonFiniteLossException($"loss is {value} at epoch {epoch + 1}, step {step + 1}; training stopped. " +
                            (File.Exists(ckptPath) ? $"The last good checkpoint is kept at {ckptPath}." : "No checkpoint had been written yet."));
                    loss.Backward();
                    if (options.ClipGradNorm > 0) GradClip.ClipGradNorm(model.Parameters(), options.ClipGradNorm);
                    optimizer.Step();
                    var predicted = Evaluator.ArgMax(logits);
                    for (int i = 0; i < b.Count; i++) if (predicted[i] == b.Labels[i]) sums.Correct++;
                    sums.LossSum += (double)value * b.Count;
                    sums.Seen += b.Count;
                }
                step++; batch++; stepsThisRun++;
                if (progress is not null && (lastReport.ElapsedMilliseconds >= 250 || batch == batches))
                {
                    lastReport.Restart();
                    double perStep = total.Elapsed.TotalSeconds / stepsThisRun;
                    var remaining = TimeSpan.FromSeconds(perStep * (totalSteps - step) * 1.05);
                    progress.Report(new StepProgress(epoch + 1, options.Epochs, batch, batches, step, sums.LossSum / sums.Seen,
                        (double)sums.Correct / sums.Seen, options.BatchSize / perStep, total.Elapsed, remaining, lr));
                }
            }
            double trainSeconds = epochClock.Elapsed.TotalSeconds;
            EvalResult eval;
            try { eval = lastEval = Evaluator.Evaluate(model, test, info.Normalize(), cancel: cancel); }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                // Cancelled during the end-of-epoch evaluation: keep the epoch's training (position = after its last
                // batch, so resuming only re-runs the evaluation).
                Save(epoch, batch, sums);
                progress?.Report(new TrainMessage($"interrupted at the end of epoch {epoch + 1}: checkpoint saved to {ckptPath}"));
                return new TrainResult(ckptPath, history, Interrupted: true, null);
            }
            var metrics = new EpochMetrics(epoch + 1, step, sums.LossSum / Math.Max(1, sums.Seen), (double)sums.Correct / Math.Max(1, sums.Seen),
                eval.Loss, eval.Accuracy, epochClock.Elapsed.TotalSeconds, sums.Seen / trainSeconds, optimizer.LearningRate);
            history.Add(metrics);
            Save(epoch + 1, 0, new EpochSums());
            WriteRecords(outDir, history);
            progress?.Report(metrics);
        }
        // A resumed run that had already finished still reports its evaluation.
        lastEval ??= Evaluator.Evaluate(model, test, info.Normalize(), cancel: cancel);
        return new TrainResult(ckptPath, history, Interrupted: false, lastEval);
    }

    /// <summary>Sets image size, channels (<c>channels</c> or <c>in_chans</c>) and class count of a preset's keyword arguments to the data set's, where the preset has them.</summary>
    public static ModelSpec FitToData(ModelSpec spec, DataInfo info)
    {
        var kwargs = (JsonObject)spec.Kwargs.DeepClone();
        if (kwargs.ContainsKey("image_size"))
            kwargs["image_size"] = info.Height == info.Width ? info.Height : new JsonArray(info.Height, info.Width);
        if (kwargs.ContainsKey("channels")) kwargs["channels"] = info.Channels;
        if (kwargs.ContainsKey("in_chans")) kwargs["in_chans"] = info.Channels;
        if (kwargs.ContainsKey("num_classes")) kwargs["num_classes"] = info.ClassNames.Count;
        return spec with { Kwargs = kwargs };
    }

    /// <summary>Rewrites metrics.jsonl and curves.svg from the history (each via a temporary file).</summary>
    public static void WriteRecords(string outDir, IReadOnlyList<EpochMetrics> history)
    {
        var lines = history.Select(m => JsonSerializer.Serialize(m, Snake));
        WriteAtomic(Path.Combine(outDir, MetricsFile), string.Join('\n', lines) + "\n");
        WriteAtomic(Path.Combine(outDir, PlotFile), Plot.TrainingCurves(history));
    }

    private static void WriteAtomic(string path, string text)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Running sums of an epoch (kept in checkpoints so an interrupted epoch resumes its metrics too).</summary>
    public sealed class EpochSums
    {
        /// <summary>Σ loss × batch size.</summary>
        public double LossSum { get; set; }
        /// <summary>Correct predictions.</summary>
        public long Correct { get; set; }
        /// <summary>Images seen.</summary>
        public long Seen { get; set; }
    }
}
