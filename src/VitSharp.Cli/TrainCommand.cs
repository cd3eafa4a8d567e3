using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;
using VitSharp.Training;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit train</c>: trains a ViT preset on a data set through <see cref="Trainer"/>, with a live progress display on a
/// terminal (plain lines otherwise). The last stdout line is the checkpoint's path. Ctrl-C saves a resumable
/// checkpoint and exits with 130; a NaN/infinite loss exits with 3.
/// </summary>
public static class TrainCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var d = new TrainOptions();
        string F(float x) => x.ToString("0.#####", Inv);
        var recipe = new Option<string?>("--recipe") { Description = $"Named option set: {string.Join(", ", TrainRecipes.All.Keys)} (default: default); explicit options override it" };
        var model = new Option<string?>("--model", "-m") { Description = $"Model preset (default: {d.Model}); image size, channels and classes follow the data set" };
        var set = ModelArgsOption.Create();
        var dataset = new Option<string?>("--dataset") { Description = $"Data set: {string.Join(", ", DataSets.Names)} (default: {d.Dataset})" };
        var data = new Option<string?>("--data") { Description = "Data folder (default for fashion-mnist: /usr/share/datasets/fashion-mnist; required for the others)" };
        var imageSize = new Option<int?>("--image-size") { Description = $"Image side for --dataset folder (default: {d.ImageSize})" };
        var channels = new Option<int?>("--channels") { Description = $"Channels for --dataset folder: 1 or 3 (default: {d.Channels})" };
        var epochs = new Option<int?>("--epochs", "-e") { Description = $"Passes over the training set (default: {d.Epochs})" };
        var batchSize = new Option<int?>("--batch-size", "-b") { Description = $"Images per step (default: {d.BatchSize})" };
        var lr = new Option<float?>("--lr") { Description = $"Peak learning rate of AdamW (default: {F(d.LearningRate)})" };
        var minLr = new Option<float?>("--min-lr") { Description = $"Final learning rate of the cosine decay (default: {F(d.MinLearningRate)})" };
        var weightDecay = new Option<float?>("--weight-decay") { Description = $"AdamW weight decay (default: {F(d.WeightDecay)})" };
        var warmup = new Option<float?>("--warmup-epochs") { Description = $"Linear warm-up in epochs, may be fractional (default: {F(d.WarmupEpochs)})" };
        var smoothing = new Option<float?>("--label-smoothing") { Description = $"Label smoothing (default: {F(d.LabelSmoothing)})" };
        var clip = new Option<float?>("--clip-grad") { Description = $"Clip the global gradient norm to this, 0 = off (default: {F(d.ClipGradNorm)})" };
        var shift = new Option<int?>("--shift") { Description = $"Random shift augmentation by up to N pixels, 0 = off (default: {d.ShiftPixels})" };
        var flip = new Option<bool>("--flip") { Description = $"Random horizontal flips (default: {(d.Flip ? "on" : "off")})" };
        var noFlip = new Option<bool>("--no-flip") { Description = "No random horizontal flips (to switch off a recipe's flips)" };
        var seed = new Option<int?>("--seed") { Description = $"Seed of initialisation, shuffling, augmentation and dropout (default: {d.Seed})" };
        var trainLimit = new Option<int?>("--train-limit") { Description = "Use only the first N training images" };
        var testLimit = new Option<int?>("--test-limit") { Description = "Use only the first N test images" };
        var outDir = new Option<string?>("--out", "-o") { Description = $"Output folder: checkpoint.safetensors, metrics.jsonl, curves.svg (default: {d.OutDir}, or runs/PRESET for another --model)" };
        var threads = new Option<int?>("--threads") { Description = "Threads for the kernels (default: VITSHARP_THREADS or the processor count)" };
        var noDataParallel = new Option<bool>("--no-data-parallel") { Description = "Split every kernel over the cores instead of running two half-batches on two model replicas (the default with ≥ 2 threads)" };
        var teacher = new Option<string?>("--teacher") { Description = "Distil from this trained checkpoint (any model): trains a DistillableViT student of the --model size against it" };
        var distill = new Option<string?>("--distill") { Description = $"With --teacher: soft (KL against the teacher's tempered softmax) or hard (its arg-max) (default: {d.Distill})" };
        var temperature = new Option<float?>("--temperature") { Description = $"With --teacher: softmax temperature of soft distillation, > 0 (default: {F(d.Temperature)})" };
        var alpha = new Option<float?>("--alpha") { Description = $"With --teacher: weight of the distillation term, loss = (1 − α)·CE + α·distillation (default: {F(d.Alpha)})" };
        var init = new Option<string?>("--init") { Description = "Start from pretrained weights (a checkpoint, .pth, .safetensors, .npz or Hugging Face folder): new classifier for the data's classes, position embedding resampled to --image-size (default: the weights' own size)" };
        var freeze = new Option<bool>("--freeze") { Description = "With --init: train only the classifier" };
        var teacherModel = new Option<string?>("--teacher-model") { Description = "With --teacher: a preset for what the teacher's weights do not say (e.g. resnet18, vit_b_16)" };
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --out from its checkpoint (with the options it was started with; any number of MPI ranks)" };
        var mpiTimeout = new Option<double?>("--mpi-timeout") { Description = $"Under mpirun: seconds a rank waits for the others in one all-reduce before it ends the job with an error (default: {Distributed.Timeout.TotalSeconds:0}); see docs/distributed.md" };
        var cmd = new Command("train", "Train a model preset on a data set (default: vit-fmnist on Fashion-MNIST); prints the checkpoint's path last. " +
            "Under mpirun -np N: data-parallel over N processes or machines (docs/distributed.md)")
        {
            recipe, model, set, dataset, data, imageSize, channels, epochs, batchSize, lr, minLr, weightDecay, warmup, smoothing, clip, shift,
            flip, noFlip, seed, trainLimit, testLimit, outDir, threads, noDataParallel, teacher, distill, temperature, alpha, teacherModel, init, freeze, resume,
            mpiTimeout,
        };
        cmd.SetAction(pr =>
        {
            if (pr.GetValue(mpiTimeout) is double timeout)
            {
                if (!(timeout > 0) || double.IsInfinity(timeout)) throw new ArgumentException($"--mpi-timeout must be a number of seconds > 0, got {timeout.ToString(Inv)}");
                Distributed.Timeout = TimeSpan.FromSeconds(timeout);
            }
            if (Distributed.IsLaunchedByMpi)
            {
                Distributed.Initialize();
                // Ranks on one machine share its cores (mpirun also binds each to its own by default).
                if (pr.GetValue(threads) is null && VitSharpEnvironment.Threads is null)
                    VitSharp.Kernels.ComputeThreads.Count = Math.Max(1, Environment.ProcessorCount / Distributed.LocalSize);
            }
            if (pr.GetValue(threads) is int nThreads) VitSharp.Kernels.ComputeThreads.Count = nThreads;
            var o = TrainRecipes.Get(pr.GetValue(recipe) ?? "default");
            var given = new List<string>();
            T? Take<T>(Option<T?> opt) where T : struct { var v = pr.GetValue(opt); if (v is not null) given.Add(opt.Name); return v; }
            string? TakeS(Option<string?> opt) { var v = pr.GetValue(opt); if (v is not null) given.Add(opt.Name); return v; }
            if (TakeS(model) is { } m) o = o with { Model = m };
            if (ModelArgsOption.Parse(pr.GetValue(set)) is { } modelArgs) { o = o with { ModelArgs = modelArgs }; given.Add(set.Name); }
            if (TakeS(dataset) is { } ds) o = o with { Dataset = ds };
            if (TakeS(data) is { } dir) o = o with { DataDir = dir };
            if (Take(imageSize) is { } isz) o = o with { ImageSize = isz };
            if (Take(channels) is { } ch) o = o with { Channels = ch };
            if (Take(epochs) is { } ep) o = o with { Epochs = ep };
            if (Take(batchSize) is { } bs) o = o with { BatchSize = bs };
            if (Take(lr) is { } l) o = o with { LearningRate = l };
            if (Take(minLr) is { } ml) o = o with { MinLearningRate = ml };
            if (Take(weightDecay) is { } wd) o = o with { WeightDecay = wd };
            if (Take(warmup) is { } wu) o = o with { WarmupEpochs = wu };
            if (Take(smoothing) is { } ls) o = o with { LabelSmoothing = ls };
            if (Take(clip) is { } cg) o = o with { ClipGradNorm = cg };
            if (Take(shift) is { } sh) o = o with { ShiftPixels = sh };
            if (pr.GetValue(flip)) { o = o with { Flip = true }; given.Add(flip.Name); }
            if (pr.GetValue(noFlip)) { o = o with { Flip = false }; given.Add(noFlip.Name); }
            if (pr.GetValue(noDataParallel)) { o = o with { DataParallel = false }; given.Add(noDataParallel.Name); }
            if (Take(seed) is { } sd) o = o with { Seed = sd };
            if (Take(trainLimit) is { } tl) o = o with { TrainLimit = tl };
            if (Take(testLimit) is { } te) o = o with { TestLimit = te };
            if (pr.GetValue(outDir) is { } od) o = o with { OutDir = od };
            else o = o with { OutDir = DefaultOutDir(o, TrainRecipes.Get(pr.GetValue(recipe) ?? "default")) };
            if (TakeS(teacher) is { } tc)
            {
                o = o with { Teacher = tc };
                // Never write the student over the default run (which usually holds the teacher).
                if (pr.GetValue(outDir) is null) o = o with { OutDir = o.OutDir + "-distilled" };
            }
            if (TakeS(teacherModel) is { } tm) o = o with { TeacherModel = tm };
            if (TakeS(init) is { } ini)
            {
                o = o with { Init = ini, InitModel = given.Contains(model.Name) ? o.Model : null };
                if (!given.Contains(imageSize.Name) && !pr.GetValue(resume))
                {
                    var pre = VitSharp.Import.WeightImporter.LoadCheckpoint(ini, new VitSharp.Import.ImportOptions { Model = o.InitModel, ModelArgs = o.ModelArgs });
                    if (pre.Model is VitSharp.Models.IImageModel { InputHeight: int side }) o = o with { ImageSize = side };
                }
                if (pr.GetValue(outDir) is null) o = o with { OutDir = Path.Combine("runs", "finetuned") };
            }
            if (pr.GetValue(freeze)) { o = o with { Freeze = true }; given.Add(freeze.Name); }
            if (TakeS(distill) is { } dk) o = o with { Distill = dk.ToLowerInvariant() };
            if (Take(temperature) is { } tt) o = o with { Temperature = tt };
            if (Take(alpha) is { } al) o = o with { Alpha = al };
            if (o.Teacher is null && !pr.GetValue(resume))
            {
                var orphan = new[] { distill.Name, temperature.Name, alpha.Name, teacherModel.Name }.Where(given.Contains).ToList();
                if (orphan.Count > 0) throw new ArgumentException($"{string.Join(", ", orphan)} need(s) --teacher CHECKPOINT");
            }
            if (!Distributed.IsInitialized) return Run(ctx, o, pr.GetValue(resume), given);
            // Every rank trains; rank 0 alone prints (errors still go to stderr from any rank). MPI is finalised only
            // after a run that ended normally: a rank that failed exits without it, so that mpirun ends the job.
            int code = Run(Distributed.IsRoot ? ctx : new CliContext(TextWriter.Null, ctx.Err), o, pr.GetValue(resume), given);
            Distributed.Shutdown();
            return code;
        });
        return cmd;
    }

    /// <summary>
    /// The output folder when --out is not given: the recipe's (runs/vit-fmnist, runs/vit-fmnist-128-long), with the recipe's
    /// model name replaced by the chosen preset's, so that training another preset never overwrites the default run.
    /// </summary>
    public static string DefaultOutDir(TrainOptions options, TrainOptions recipe)
    {
        if (string.Equals(options.Model, recipe.Model, StringComparison.OrdinalIgnoreCase)) return recipe.OutDir;
        string name = Path.GetFileName(recipe.OutDir);
        string renamed = name.StartsWith(recipe.Model, StringComparison.Ordinal) ? options.Model + name[recipe.Model.Length..] : options.Model;
        return Path.Combine(Path.GetDirectoryName(recipe.OutDir) ?? "", renamed);
    }

    /// <summary>Runs the training with Ctrl-C handling and progress output; returns the exit code.</summary>
    public static int Run(CliContext ctx, TrainOptions options, bool resume, IReadOnlyList<string> explicitOptions)
    {
        if (!resume)
        {
            options.Validate();
            if (options.Channels is not (1 or 3)) throw new ArgumentException($"--channels must be 1 or 3, got {options.Channels}");
            if (options.ImageSize < 1) throw new ArgumentException($"--image-size must be ≥ 1, got {options.ImageSize}");
            var preset = VitSharp.Models.Presets.Get(options.Model);   // an unknown preset fails before the data is loaded
            if (options.Init is null) Trainer.WithModelArgs(preset.Spec, options.ModelArgs, options.Model);   // so does an unknown --set name
            else if (!File.Exists(options.Init) && !Directory.Exists(options.Init)) throw new ArgumentException($"--init {options.Init}: no such file or folder");
            if (options.Teacher is { } t)
            {
                if (!File.Exists(t) && !Directory.Exists(t)) throw new ArgumentException($"--teacher {t}: checkpoint not found");
                if (preset.Spec.Constructor != "vit_pytorch.vit.ViT")
                    throw new ArgumentException($"--teacher trains a DistillableViT student: the preset '{options.Model}' is not a ViT");
            }
            if (File.Exists(Path.Combine(options.OutDir, Trainer.CheckpointFile)))
                ctx.Err.WriteLine($"vit: note: {options.OutDir} already holds a checkpoint; this new run overwrites it after its first epoch (--resume continues it instead)");
        }
        else if (explicitOptions.Count > 0)
            ctx.Err.WriteLine($"vit: note: --resume continues with the options stored in the checkpoint; ignoring {string.Join(", ", explicitOptions)}");

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cts.IsCancellationRequested) return;          // a second Ctrl-C ends the process at once
            e.Cancel = true;
            cts.Cancel();
            ctx.Err.WriteLine("vit: interrupted: finishing the current step and saving a checkpoint (Ctrl-C again to quit at once)");
        };
        Console.CancelKeyPress += onCancel;
        // SIGTERM (kill, service managers) stops the same way: a background job started by a non-interactive
        // shell ignores SIGINT, so this is how such a run is stopped with its checkpoint saved.
        bool distributed = Distributed.IsInitialized;
        using var onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, ctxSig =>
        {
            if (distributed)
            {
                // mpirun ends a job with SIGTERM (then SIGKILL) when a rank failed or it was interrupted: this rank may be
                // waiting for the failed one and cannot save; the last checkpoint stays as it is. SIGTERM's default follows.
                ctx.Err.WriteLine($"vit: error: rank {Distributed.Rank} of {Distributed.Size}: terminated by mpirun (a rank failed or the job was " +
                    "stopped: see mpirun's message); the last checkpoint is kept (vit train --resume continues it with any number of ranks)");
                ctx.Err.Flush();
                return;
            }
            if (cts.IsCancellationRequested) return;
            ctxSig.Cancel = true;
            cts.Cancel();
            ctx.Err.WriteLine("vit: terminated: finishing the current step and saving a checkpoint");
        });
        // mpirun forwards SIGUSR1 to every rank: the way to stop a distributed run after the current step with a checkpoint.
        using var onUsr1 = distributed ? System.Runtime.InteropServices.PosixSignalRegistration.Create((System.Runtime.InteropServices.PosixSignal)SigUsr1, ctxSig =>
        {
            ctxSig.Cancel = true;
            if (cts.IsCancellationRequested) return;
            cts.Cancel();
            if (Distributed.IsRoot) ctx.Err.WriteLine("vit: SIGUSR1: every rank stops after the current step; rank 0 saves a checkpoint");
        }) : null;
        try
        {
            if (!resume)
                ctx.Out.WriteLine($"Training {(options.Init is { } from ? $"from {from}" : options.Model)} on {options.Dataset}{(options.DataDir is null ? "" : $" ({options.DataDir})")}: " +
                    $"{options.Epochs} epoch(s), batch {options.BatchSize}, lr {options.LearningRate.ToString("G3", Inv)}, seed {options.Seed}" +
                    $"{(options.Teacher is { } tch ? $", distilled ({options.Distill}, T {options.Temperature.ToString("G3", Inv)}, alpha {options.Alpha.ToString("G3", Inv)}) from {tch}" : "")}" +
                    $"{(options.TrainLimit is int tl ? $", first {tl} training images" : "")}{(options.TestLimit is int te ? $", first {te} test images" : "")}; output in {options.OutDir}");
            TrainResult result;
            try
            {
                // mpirun gives its ranks a pseudo-terminal: plain lines there, not a live display.
                result = ctx.IsTerminal && !Distributed.IsInitialized
                    ? RunLive(ctx, options, resume, cts.Token)
                    : Trainer.Run(options, resume, new PlainReporter(ctx.Out), cts.Token);
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                // Ctrl-C during the evaluation at the end of an epoch: that epoch's checkpoint was not written yet.
                string ckpt = Path.Combine(options.OutDir, Trainer.CheckpointFile);
                if (!File.Exists(ckpt))
                {
                    ctx.Out.WriteLine("Interrupted during the evaluation of the first epoch; no checkpoint had been written yet.");
                    return CliApp.ExitInterrupted;
                }
                ctx.Out.WriteLine($"Interrupted during an evaluation; the checkpoint of the previous epoch is kept. Continue with: vit train --out {Quote(options.OutDir)} --resume");
                ctx.Out.WriteLine(ckpt);
                return CliApp.ExitInterrupted;
            }
            if (result.Interrupted)
            {
                ctx.Out.WriteLine($"Interrupted; the checkpoint holds the run's position. Continue with: vit train --out {Quote(options.OutDir)} --resume");
                ctx.Out.WriteLine(result.CheckpointPath);
                return CliApp.ExitInterrupted;
            }
            if (result.FinalEvaluation is { } ev)
                ctx.Out.WriteLine($"Done: test accuracy {Pct(ev.Accuracy)} (loss {ev.Loss.ToString("0.0000", Inv)}, {ev.Count} images) after {result.History.Count} epoch(s)" +
                    $"{(result.History.Count > 0 ? $", {Duration(TimeSpan.FromSeconds(result.History.Sum(h => h.Seconds)))} in total" : "")}");
            string dir = Path.GetDirectoryName(result.CheckpointPath) ?? ".";
            ctx.Out.WriteLine($"Metrics: {Path.Combine(dir, Trainer.MetricsFile)}; curves: {Path.Combine(dir, Trainer.PlotFile)}; checkpoint:");
            ctx.Out.WriteLine(result.CheckpointPath);
            return CliApp.ExitOk;
        }
        finally { Console.CancelKeyPress -= onCancel; }
    }

    private const int SigUsr1 = 10;   // Linux x86-64 and arm64

    private static string Quote(string path) => path.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' or '$' or '\\') ? "'" + path.Replace("'", "'\\''") + "'" : path;

    internal static string Pct(double x) => double.IsNaN(x) ? "n/a" : (100 * x).ToString("0.00", Inv) + "%";

    internal static string Duration(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Minutes}:{t.Seconds:00}";

    private static string StepText(StepProgress s) =>
        $"loss {s.Loss.ToString("0.0000", Inv)}  acc {Pct(s.Accuracy)}  {s.ImagesPerSecond.ToString("0", Inv)} img/s  " +
        $"elapsed {Duration(s.Elapsed)}  left {Duration(s.Remaining)}  lr {s.LearningRate.ToString("0.00e+00", Inv)}";

    internal static string EpochText(EpochMetrics m, int epochs) =>
        $"epoch {m.Epoch}{(epochs > 0 ? "/" + epochs : "")}: train loss {m.TrainLoss.ToString("0.0000", Inv)} acc {Pct(m.TrainAccuracy)} | " +
        $"test loss {m.TestLoss.ToString("0.0000", Inv)} acc {Pct(m.TestAccuracy)} | {m.Seconds.ToString("0.0", Inv)} s, {m.ImagesPerSecond.ToString("0", Inv)} img/s" +
        (m.TrainDistillLoss is double dl ? $" | distill loss {dl.ToString("0.0000", Inv)}" : "");

    /// <summary>Plain lines for pipes, files and tests: messages, one line per epoch, a step line every ~10 s.</summary>
    private sealed class PlainReporter(TextWriter o) : IProgress<TrainEvent>
    {
        private readonly Stopwatch _sinceLine = Stopwatch.StartNew();
        private int _epochs;

        public void Report(TrainEvent e)
        {
            switch (e)
            {
                case TrainMessage msg: o.WriteLine(msg.Text); break;
                case StepProgress s:
                    _epochs = s.Epochs;
                    if (_sinceLine.Elapsed.TotalSeconds >= 10 && s.Batch < s.Batches)
                    {
                        o.WriteLine($"epoch {s.Epoch}/{s.Epochs} step {s.Batch}/{s.Batches}  {StepText(s)}");
                        _sinceLine.Restart();
                    }
                    break;
                case EpochMetrics m:
                    o.WriteLine(EpochText(m, _epochs));
                    _sinceLine.Restart();
                    break;
            }
            o.Flush();
        }
    }

    /// <summary>A Spectre live display (bar and figures) updated from the trainer's events; epoch lines scroll above it.</summary>
    private static TrainResult RunLive(CliContext ctx, TrainOptions options, bool resume, CancellationToken cancel)
    {
        var console = ctx.Console;
        TrainResult? result = null;
        console.Live(new Markup("[grey]loading the data…[/]"))
            .AutoClear(true)
            .Overflow(VerticalOverflow.Ellipsis)
            .Start(live =>
            {
                int epochs = 0;
                var reporter = new LiveReporter(e =>
                {
                    switch (e)
                    {
                        case TrainMessage msg:
                            console.MarkupLine(Markup.Escape(msg.Text));
                            break;
                        case StepProgress s:
                            epochs = s.Epochs;
                            live.UpdateTarget(Render(s, cancel.IsCancellationRequested));
                            break;
                        case EpochMetrics m:
                            console.MarkupLine(Markup.Escape(EpochText(m, epochs)));
                            live.UpdateTarget(new Markup($"[grey]epoch {m.Epoch} done; {(m.Epoch < epochs ? "next epoch…" : "finishing…")}[/]"));
                            break;
                    }
                    live.Refresh();
                });
                result = Trainer.Run(options, resume, reporter, cancel);
            });
        return result!;
    }

    private static IRenderable Render(StepProgress s, bool stopping)
    {
        const int width = 40;
        double frac = s.Batches == 0 ? 0 : (double)s.Batch / s.Batches;
        int filled = (int)Math.Round(frac * width);
        string bar = $"[green]{new string('━', filled)}[/][grey]{new string('━', width - filled)}[/]";
        var line1 = new Markup($"[bold]epoch {s.Epoch}/{s.Epochs}[/] {bar} {(100 * frac).ToString("0", Inv),3}%  step {s.Batch}/{s.Batches}" +
            (stopping ? "  [yellow]stopping: saving a checkpoint…[/]" : ""));
        var line2 = new Markup(Markup.Escape(StepText(s)));
        return new Rows(line1, line2);
    }

    private sealed class LiveReporter(Action<TrainEvent> handle) : IProgress<TrainEvent>
    {
        public void Report(TrainEvent value) => handle(value);
    }
}
