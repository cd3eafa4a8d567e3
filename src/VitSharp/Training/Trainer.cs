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

    private static readonly JsonSerializerOptions Snake = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,   // no test set: NaN
    };

    /// <summary>
    /// <c>vit train</c>'s run: resolves the names in <paramref name="options"/> (model preset and its arguments, data set,
    /// pretrained weights, teacher) into a model and data and trains it with <see cref="Fit"/>; with
    /// <paramref name="resume"/> it continues the run in <see cref="TrainOptions.OutDir"/> with the options stored in its
    /// checkpoint.
    /// </summary>
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
            options = TrainOptions.FromJson(saved) with { OutDir = outDir, ProgressInterval = options.ProgressInterval };
            progress?.Report(new TrainMessage($"resuming {ckptPath}"));
        }
        options.Validate();
        if (restored is null && options.Teacher is { } teacherPath && Path.GetFullPath(teacherPath) == Path.GetFullPath(ckptPath))
            throw new ArgumentException($"the teacher checkpoint {teacherPath} is the run's own checkpoint; give the student another --out folder");
        Directory.CreateDirectory(outDir);

        var (trainAll, testAll, info) = DataSets.Load(options.Dataset, options.DataDir, options.Seed, options.ImageSize, options.Channels);
        IImageDataset train = DataSets.Limit(trainAll, options.TrainLimit);
        IImageDataset test = DataSets.Limit(testAll, options.TestLimit);

        Module model;
        ModelSpec spec;
        IReadOnlyList<string>? trainable = null;   // with --freeze: the parameters that train
        if (restored is not null) { model = restored.Model; spec = restored.Info.Model; }
        else
        {
            Init.Seed(options.Seed);
            if (options.Init is { } initPath)
            {
                (model, spec, info, trainable) = BuildFineTuning(options, initPath, info, progress);
            }
            else
            {
                spec = FitToData(WithModelArgs(Presets.Get(options.Model).Spec, options.ModelArgs, options.Model), info);
                if (options.Teacher is null) model = spec.Build();
                else (model, spec) = BuildDistillation(options, spec, info, progress);
            }
        }
        if (restored is not null && options.Freeze)
            trainable = restored.Model.NamedParameters().Where(p => FineTune.IsHeadKey(p.Name)).Select(p => p.Name).ToList();
        if (trainable is not null)
        {
            int frozen = FineTune.Freeze(model, trainable);
            progress?.Report(new TrainMessage($"frozen: {frozen} parameter tensor(s); training only {string.Join(", ", model.NamedParameters().Where(p => p.Parameter.RequiresGrad).Select(p => p.Name))}"));
        }
        (train, test, info) = FitChannels(model, train, test, info, options.Init is { } initFile ? Path.GetFileName(initFile) : options.Model, progress);

        var augmentation = new List<ITransform>();
        if (options.ShiftPixels > 0) augmentation.Add(new RandomCrop(options.ShiftPixels));
        if (options.Flip) augmentation.Add(new RandomHorizontalFlip());
        var fit = new FitOptions
        {
            Epochs = options.Epochs, BatchSize = options.BatchSize, LearningRate = options.LearningRate, MinLearningRate = options.MinLearningRate,
            WarmupEpochs = options.WarmupEpochs, WeightDecay = options.WeightDecay, LabelSmoothing = options.LabelSmoothing,
            ClipGradNorm = options.ClipGradNorm, Augmentation = augmentation, Seed = options.Seed, DataParallel = options.DataParallel,
            OutDir = outDir, Spec = spec, Data = info, Resume = restored is not null, RecordedOptions = options.ToJson(),
            ProgressInterval = options.ProgressInterval,
        };
        return FitCore(model, train, test, fit, restored, progress, cancel);
    }

    /// <summary>
    /// Trains <paramref name="model"/> (any <see cref="Module"/> that maps [B, C, H, W] images to [B, classes] logits, or an
    /// <see cref="ILossModel"/> with its own loss) on <paramref name="train"/>: AdamW with linear warm-up and cosine decay,
    /// label smoothing, gradient clipping, augmentation and normalisation (<paramref name="options"/>), batches prepared on
    /// another thread, each step a <see cref="TrainStep"/> (data-parallel halves on two cores where they suit), evaluation
    /// on <paramref name="test"/> after every epoch, and with <see cref="FitOptions.OutDir"/> a checkpoint after every epoch
    /// and on cancellation, metrics.jsonl and curves.svg. The model is trained in place.
    /// </summary>
    /// <param name="model">The model; its frozen parameters (<c>RequiresGrad</c> false) are not optimised.</param>
    /// <param name="train">The training images (C×H×W floats in [0, 1], as <see cref="IImageDataset"/> gives them).</param>
    /// <param name="test">Evaluated after every epoch; null: no evaluation (test loss and accuracy NaN).</param>
    /// <param name="options">The run's options.</param>
    /// <param name="progress">Receives <see cref="StepProgress"/> every <see cref="FitOptions.ProgressInterval"/> (250 ms), <see cref="EpochMetrics"/> per epoch
    /// and <see cref="TrainMessage"/>s, on the training thread.</param>
    /// <param name="cancel">Stops the run after the current step: the checkpoint (when written) holds the exact position,
    /// so <see cref="FitOptions.Resume"/> continues it; the result says <see cref="TrainResult.Interrupted"/>.</param>
    /// <exception cref="NonFiniteLossException">The loss became NaN or infinite; the last good checkpoint is kept.</exception>
    /// <exception cref="CheckpointException">Resuming without a checkpoint, or from one that does not fit the model.</exception>
    public static TrainResult Fit(Module model, IImageDataset train, IImageDataset? test, FitOptions options,
        IProgress<TrainEvent>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        LoadedCheckpoint? restored = null;
        if (options.Resume)
        {
            string path = Path.Combine(options.OutDir!, CheckpointFile);
            if (!File.Exists(path)) throw new CheckpointException($"{path}: nothing to resume (no checkpoint in {options.OutDir})");
            restored = Checkpoint.Load(path);
            try { model.LoadStateDict(restored.Model.StateDict(), strict: true); }
            catch (StateDictException e) { throw new CheckpointException($"{path}: does not fit the model: {e.Message}", e); }
            progress?.Report(new TrainMessage($"resuming {path}"));
        }
        return FitCore(model, train, test, options, restored, progress, cancel);
    }

    private static TrainResult FitCore(Module model, IImageDataset train, IImageDataset? test, FitOptions options, LoadedCheckpoint? restored,
        IProgress<TrainEvent>? progress, CancellationToken cancel)
    {
        options.Validate();
        // Over MPI: every rank trains on its shard of each global batch; rank 0 alone reports and writes files.
        bool distributed = Distributed.Size > 1;
        bool root = Distributed.IsRoot;
        if (!root) progress = null;
        if (train.Count == 0) throw new ArgumentException("the training set is empty");
        var spec = options.Spec ?? DescribeModel(model);
        string? outDir = options.OutDir;
        string? ckptPath = outDir is not null && spec is not null ? Path.Combine(outDir, CheckpointFile) : null;
        if (outDir is not null)
        {
            Directory.CreateDirectory(outDir);
            if (spec is null)
                progress?.Report(new TrainMessage($"note: no model spec for a {model.GetType().Name} (FitOptions.Spec): no checkpoint is written, only {MetricsFile} and {PlotFile}"));
        }
        var info = DataFor(train, options.Data, options.Normalization);
        var norm = options.Normalization ?? options.Data?.Normalize();
        var recorded = options.RecordedOptions ?? options.ToJson();

        // Frozen parameters (a distillation teacher's, a fine-tuning run's backbone) are not optimised.
        var optimizer = new AdamW(model.NamedParameters().Where(p => p.Parameter.RequiresGrad), options.LearningRate, weightDecay: options.WeightDecay);
        var transforms = options.Augmentation.Append(norm).OfType<ITransform>().ToArray();
        var loader = new DataLoader(train, options.BatchSize, shuffle: true, options.Seed, transforms.Length == 0 ? null : new Compose(transforms),
            shard: Distributed.Rank, shards: Distributed.Size);
        int batches = loader.BatchCount;
        if (distributed)
        {
            Distributed.CheckSame(train.Count, "the number of training images");
            Distributed.CheckSame(batches, "the batches per epoch");
        }
        long totalSteps = (long)batches * options.Epochs;
        var schedule = new WarmupCosine(options.LearningRate, (long)Math.Round(options.WarmupEpochs * batches), totalSteps, options.MinLearningRate);

        int startEpoch = 0, startBatch = 0;
        long step = 0;
        var history = new List<EpochMetrics>();
        var partial = new EpochSums();
        if (restored is not null)
        {
            var t = restored.Info.Training;
            if (t["batches_per_epoch"] is JsonValue bpe && bpe.GetValue<int>() != batches)
                throw new CheckpointException($"{restored.Path}: its run had {bpe.GetValue<int>()} batches per epoch, this one {batches}; resume with the run's own data and batch size");
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
            if (ckptPath is null) return;
            // Checked on every rank (their parameters are the same), written by rank 0 alone.
            foreach (var (name, p) in model.NamedParameters())
                if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum<float>(p.Data)))
                    throw new NonFiniteLossException($"parameter '{name}' is not finite; the checkpoint was not overwritten");
            if (!root) return;
            var training = new JsonObject
            {
                ["options"] = recorded.DeepClone(), ["epoch"] = epoch, ["batch"] = batch, ["step"] = step,
                ["batches_per_epoch"] = batches,
                ["history"] = JsonSerializer.SerializeToNode(history, Snake), ["partial"] = JsonSerializer.SerializeToNode(sums, Snake),
            };
            Checkpoint.Save(ckptPath, model, new CheckpointInfo(spec!, info.ToJson(), training), optimizer);
        }
        string Saved(string what) => ckptPath is null ? $"{what} (no checkpoint written)" : $"{what}: checkpoint saved to {ckptPath}";
        // Distributed: sharded over the ranks and not cancellable half-way (every rank must finish it).
        EvalResult? Evaluate(DataParallel? parallel) =>
            test is null ? null : Evaluator.Evaluate(model, test, norm, options.EvalBatchSize, distributed ? default : cancel, parallel, distributed);

        using var stepper = new TrainStep(model, optimizer,
            new TrainStepOptions { LabelSmoothing = options.LabelSmoothing, ClipGradNorm = options.ClipGradNorm, Seed = options.Seed, Distributed = distributed },
            options.DataParallel && spec is not null ? () => BuildReplica(spec, model) : null) { Step = step };
        if (distributed)
            progress?.Report(new TrainMessage($"distributed over {Distributed.Size} MPI ranks ({Distributed.LibraryVersion}): global batch {options.BatchSize}, " +
                $"{stepper.Reducer!.Elements:N0} gradient floats all-reduced per step in {stepper.Reducer.Buckets} bucket(s); " +
                $"{Kernels.ComputeThreads.Count} kernel thread(s) per rank{(stepper.IsDataParallel ? ", two half-shards per rank" : "")}"));
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
                if (distributed ? stepper.Stopping : cancel.IsCancellationRequested)
                {
                    Save(epoch, batch, sums);
                    progress?.Report(new TrainMessage(Saved($"interrupted at epoch {epoch + 1}, batch {batch}")));
                    return new TrainResult(ckptPath, history, Interrupted: true, null);
                }
                float lr = schedule.At(step);
                optimizer.LearningRate = lr;
                StepResult r;
                try { r = stepper.Run(b.Images, b.Labels, b.GlobalCount, stop: cancel.IsCancellationRequested); }
                catch (NonFiniteLossException e)
                {
                    throw new NonFiniteLossException($"{e.Message} (epoch {epoch + 1}); training stopped. " +
                        (ckptPath is not null && File.Exists(ckptPath) ? $"The last good checkpoint is kept at {ckptPath}." : "No checkpoint had been written yet."));
                }
                sums.Correct += r.Correct;
                sums.LossSum += r.LossSum;
                sums.DistillLossSum += r.DistillLossSum;
                sums.Seen += r.Count;
                step++; batch++; stepsThisRun++;
                if (progress is not null && (lastReport.Elapsed >= options.ProgressInterval || batch == batches))
                {
                    lastReport.Restart();
                    double perStep = total.Elapsed.TotalSeconds / stepsThisRun;
                    var remaining = TimeSpan.FromSeconds(perStep * (totalSteps - step) * 1.05);
                    progress.Report(new StepProgress(epoch + 1, options.Epochs, batch, batches, step, sums.LossSum / sums.Seen,
                        (double)sums.Correct / sums.Seen, options.BatchSize / perStep, total.Elapsed, remaining, lr));
                }
            }
            double trainSeconds = epochClock.Elapsed.TotalSeconds;
            EvalResult? eval;
            try { eval = lastEval = Evaluate(stepper.Parallel); }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                // Cancelled during the end-of-epoch evaluation: keep the epoch's training (position = after its last
                // batch, so resuming only re-runs the evaluation).
                Save(epoch, batch, sums);
                progress?.Report(new TrainMessage(Saved($"interrupted at the end of epoch {epoch + 1}")));
                return new TrainResult(ckptPath, history, Interrupted: true, null);
            }
            var metrics = new EpochMetrics(epoch + 1, step, sums.LossSum / Math.Max(1, sums.Seen), (double)sums.Correct / Math.Max(1, sums.Seen),
                eval?.Loss ?? double.NaN, eval?.Accuracy ?? double.NaN, epochClock.Elapsed.TotalSeconds, sums.Seen / trainSeconds, optimizer.LearningRate)
            {
                TrainDistillLoss = model is DistillWrapper ? sums.DistillLossSum / Math.Max(1, sums.Seen) : null,
            };
            history.Add(metrics);
            Save(epoch + 1, 0, new EpochSums());
            if (outDir is not null && root) WriteRecords(outDir, history);
            progress?.Report(metrics);
        }
        // A resumed run that had already finished still reports its evaluation.
        lastEval ??= Evaluate(stepper.Parallel);
        return new TrainResult(ckptPath, history, Interrupted: false, lastEval);
    }

    /// <summary>The spec of a hand-built model whose configuration says it all, else null.</summary>
    private static ModelSpec? DescribeModel(Module model) => model switch
    {
        DistillableViT d => ModelSpec.DistillableViT(d.Config),
        ViT v when v.GetType() == typeof(ViT) => ModelSpec.ViT(v.Config),
        SimpleViT s => s.Config.ToSpec(),
        DeepViT d => d.Config.ToSpec(),
        CaiT c => c.Config.ToSpec(),
        _ => null,
    };

    /// <summary>The data info a run records: the given one (or the training set's geometry and classes, named "custom")
    /// with the normalisation's mean and std (the given data's, else identity, when there is none).</summary>
    private static DataInfo DataFor(IImageDataset train, DataInfo? data, Normalize? norm)
    {
        var info = data ?? new DataInfo("custom", train.ClassNames.ToArray(), train.Channels, train.Height, train.Width,
            Enumerable.Repeat(0f, train.Channels).ToArray(), Enumerable.Repeat(1f, train.Channels).ToArray());
        return norm is null ? info : info with { Mean = norm.Mean.ToArray(), Std = norm.Std.ToArray() };
    }

    /// <summary>A data-parallel replica of <paramref name="model"/>: built from its spec, with the same parameters frozen.</summary>
    private static Module BuildReplica(ModelSpec spec, Module model)
    {
        var replica = spec.Build();
        var frozen = model.NamedParameters().Where(p => !p.Parameter.RequiresGrad).Select(p => p.Name).ToHashSet();
        if (frozen.Count > 0)
            foreach (var (name, p) in replica.NamedParameters()) if (frozen.Contains(name)) p.RequiresGrad = false;
        return replica;
    }

    /// <summary>
    /// The model of a fine-tuning run (<see cref="TrainOptions.Init"/>): the pretrained model adapted to the data
    /// (<see cref="FineTune"/>), its spec, the data info normalised as the pretrained model's images were (its mean and
    /// std), and with <see cref="TrainOptions.Freeze"/> the parameters that train (the classifier), else null.
    /// </summary>
    public static (Module Model, ModelSpec Spec, DataInfo Info, IReadOnlyList<string>? Trainable) BuildFineTuning(TrainOptions options, string initPath,
        DataInfo info, IProgress<TrainEvent>? progress = null)
    {
        var init = Import.WeightImporter.LoadCheckpoint(initPath, new Import.ImportOptions { Model = options.InitModel, ModelArgs = options.ModelArgs });
        var initData = DataInfo.FromJson(init.Info.Data, init.Path);
        int channels = init.Model is IImageModel im ? im.InputChannels : info.Channels;
        if (initData.Mean.Length == channels && initData.Std.Length == channels && (info.Channels == channels || info.Channels == 1))
            info = info with { Mean = initData.Mean, Std = initData.Std };   // grey data is repeated into the channels later
        var spec = FineTune.AdaptSpec(init.Info.Model, info);
        var (model, fresh) = FineTune.Build(spec, init.Model, initPath);
        progress?.Report(new TrainMessage($"fine-tuning {init.Info.Model.Constructor} from {initPath}: " +
            $"{(fresh.Count > 0 ? $"new classifier ({string.Join(", ", fresh)}) for {info.ClassNames.Count} classes" : "classifier kept")}, " +
            $"images {info.Height}×{info.Width} normalised with the pretrained mean/std"));
        return (model, spec, info, options.Freeze ? fresh : null);
    }

    /// <summary>
    /// The model of a distillation run: a <see cref="DistillableViT"/> student of the preset's size (fitted to the data)
    /// inside a <see cref="DistillWrapper"/> with the teacher loaded from <see cref="TrainOptions.Teacher"/>; and its spec
    /// (the teacher as the teacher checkpoint's nested {constructor, kwargs}), so that the run's checkpoints rebuild it.
    /// </summary>
    /// <exception cref="ArgumentException">The preset is not a ViT, or the teacher does not fit the student (class count, input shape).</exception>
    public static (DistillWrapper Model, ModelSpec Spec) BuildDistillation(TrainOptions options, ModelSpec studentPreset, DataInfo info,
        IProgress<TrainEvent>? progress = null)
    {
        string path = options.Teacher ?? throw new ArgumentException("no teacher checkpoint given");
        if (studentPreset.Constructor != "vit_pytorch.vit.ViT")
            throw new ArgumentException($"distillation trains a DistillableViT student: the preset '{options.Model}' ({studentPreset.Constructor}) is not a ViT");
        var teacher = Import.WeightImporter.LoadCheckpoint(path, new Import.ImportOptions { Model = options.TeacherModel });
        var teacherData = DataInfo.FromJson(teacher.Info.Data, teacher.Path);
        if (!string.Equals(teacherData.Name, info.Name, StringComparison.OrdinalIgnoreCase) || !teacherData.Mean.SequenceEqual(info.Mean) || !teacherData.Std.SequenceEqual(info.Std))
            progress?.Report(new TrainMessage($"note: the teacher was trained on {teacherData.Name} (normalisation mean {string.Join("/", teacherData.Mean)}, " +
                $"std {string.Join("/", teacherData.Std)}); it now sees {info.Name} preprocessed for the student"));
        var studentSpec = new ModelSpec(DistillableViT.ConstructorName, studentPreset.Kwargs);
        var student = (DistillableViT)studentSpec.Build();
        var config = new DistillConfig { Temperature = options.Temperature, Alpha = options.Alpha, Hard = options.Distill == "hard" };
        DistillWrapper wrapper;
        try { wrapper = new DistillWrapper(teacher.Model, student, config); }
        catch (ArgumentException e) { throw new ArgumentException($"teacher {path}: {e.Message}", e); }
        return (wrapper, ModelSpec.DistillWrapper(teacher.Info.Model, studentSpec, config));
    }

    /// <summary>NAME=VALUE pairs (as <c>--set</c> takes them) as a dictionary, null when there are none; a malformed pair is
    /// an error naming it.</summary>
    public static Dictionary<string, string>? ParseModelArgs(IReadOnlyList<string>? pairs)
    {
        if (pairs is not { Count: > 0 }) return null;
        var args = new Dictionary<string, string>();
        foreach (var kv in pairs)
        {
            int eq = kv.IndexOf('=');
            if (eq <= 0 || eq == kv.Length - 1) throw new ArgumentException($"--set {kv}: expected NAME=VALUE, e.g. --set dim=96");
            args[kv[..eq].Trim()] = kv[(eq + 1)..].Trim();
        }
        return args;
    }

    /// <summary>
    /// The preset's keyword arguments with <paramref name="args"/> replacing some of them (values parsed by
    /// <see cref="ParseArgValue"/>: JSON or Python literals, else kept as text); a name the preset does not have is an error
    /// listing the ones it has.
    /// </summary>
    public static ModelSpec WithModelArgs(ModelSpec spec, IReadOnlyDictionary<string, string>? args, string presetName)
    {
        if (args is null || args.Count == 0) return spec;
        var kwargs = (JsonObject)spec.Kwargs.DeepClone();
        foreach (var (key, text) in args)
        {
            if (!kwargs.ContainsKey(key))
                throw new ArgumentException($"model '{presetName}' has no argument '{key}' (it has: {string.Join(", ", kwargs.Select(kv => kv.Key))})");
            kwargs[key] = ParseArgValue(text);
        }
        return spec with { Kwargs = kwargs };
    }

    /// <summary>
    /// A <c>--set</c> value: a JSON literal (<c>96</c>, <c>0.1</c>, <c>[4, 7]</c>, <c>true</c>, <c>"mean"</c>), or the Python spelling of
    /// one — a tuple <c>(4, 7)</c> (a trailing comma allowed), <c>True</c>, <c>False</c>, <c>None</c> — else the text itself
    /// (<c>pool=mean</c>).
    /// </summary>
    internal static JsonNode? ParseArgValue(string text)
    {
        string t = text.Trim();
        string json = t switch
        {
            "True" => "true",
            "False" => "false",
            "None" => "null",
            _ when t.Length >= 2 && t[0] == '(' && t[^1] == ')' => "[" + t[1..^1].Trim().TrimEnd(',') + "]",
            _ => t,
        };
        try { return JsonNode.Parse(json); }
        catch (JsonException) { return JsonValue.Create(text); }
    }

    /// <summary>Sets image size (<c>image_size</c>, or timm's <c>img_size</c>), channels (<c>channels</c> or <c>in_chans</c>) and class count of a preset's keyword arguments to the data set's, where the preset has them.</summary>
    public static ModelSpec FitToData(ModelSpec spec, DataInfo info)
    {
        var kwargs = (JsonObject)spec.Kwargs.DeepClone();
        foreach (var key in new[] { "image_size", "img_size" })
            if (kwargs.ContainsKey(key))
                kwargs[key] = info.Height == info.Width ? info.Height : new JsonArray(info.Height, info.Width);
        if (kwargs.ContainsKey("channels")) kwargs["channels"] = info.Channels;
        if (kwargs.ContainsKey("in_chans")) kwargs["in_chans"] = info.Channels;
        if (kwargs.ContainsKey("num_classes")) kwargs["num_classes"] = info.ClassNames.Count;
        return spec with { Kwargs = kwargs };
    }

    /// <summary>
    /// Matches the data's channels to a model with a fixed channel count (<see cref="IImageModel.InputChannels"/>):
    /// grey images for a model that takes 3 channels (CaiT) are repeated into 3 (and the data info says so, so that
    /// evaluation and prediction preprocess the same way); any other mismatch is an error naming both counts.
    /// </summary>
    public static (IImageDataset Train, IImageDataset Test, DataInfo Info) FitChannels(Module model, IImageDataset train, IImageDataset test,
        DataInfo info, string modelName, IProgress<TrainEvent>? progress = null)
    {
        if (model is not IImageModel im || im.InputChannels == info.Channels) return (train, test, info);
        if (info.Channels != 1)
            throw new ArgumentException($"{modelName} takes {im.InputChannels}-channel images but {info.Name} has {info.Channels} channels");
        progress?.Report(new TrainMessage($"{modelName} takes {im.InputChannels}-channel images: each grey {info.Name} image is repeated into {im.InputChannels} channels"));
        return (new RepeatChannelsDataset(train, im.InputChannels), new RepeatChannelsDataset(test, im.InputChannels), info.WithRepeatedChannels(im.InputChannels));
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
        /// <summary>Σ distillation term × batch size (distillation runs).</summary>
        public double DistillLossSum { get; set; }
    }
}
