using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using VitSharp.Inference;
using VitSharp.Kernels;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Optim;
using VitSharp.Training;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit bench</c>: times inference (forward, no grad, eval mode) or a training step (forward, cross-entropy
/// with label smoothing 0.1, backward, AdamW) of a preset on random images; prints median/min/max ms per step,
/// images/s, effective GFLOP/s (<see cref="Flops"/>) and its fraction of the machine's float32 GEMM peak measured in the same
/// process (<see cref="GemmPeak"/>), the CPU's features and the kernel paths, peak working set and managed bytes allocated
/// per step.
/// </summary>
public static class BenchCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The measured figures of one run.</summary>
    public sealed record Result(
        string Model, int Batch, bool Train, int Threads, int Warmup, int Steps,
        double MedianMs, double MinMs, double MaxMs, double ImagesPerSecond, double GFlopPerStep, double GFlops,
        double PeakRssMb, long AllocBytesPerStep, double[] TimesMs, bool DataParallel = false, OnnxRuntimeResult? Onnx = null,
        InferencePrecision Precision = InferencePrecision.Float32, string PrecisionPath = "", GemmPeakResult? Peak = null,
        CpuFeatures? Cpu = null, int LinearProducts = 0, int LinearProductsOnOpenBlas = 0, GemmBackend GemmBackend = GemmBackend.Auto,
        IReadOnlyList<OpTime>? Profile = null)
    {
        /// <summary>The model's GFLOP/s as a fraction of <see cref="Peak"/>'s best (null without the peak).</summary>
        public double? FractionOfPeak => Peak is { } p ? GFlops / p.BestGFlops : null;
    }

    /// <summary>With --onnx, the steps run in alternating blocks of this many per runtime (ONNX Runtime's block, one
    /// untimed VitSharp step, VitSharp's block, …), so that each runtime's timed steps follow its own.</summary>
    public const int OnnxBlock = 5;

    /// <summary>
    /// ONNX Runtime's figures for the same model exported to ONNX (<c>--onnx</c>), timed in the same loop on the same images,
    /// in alternating blocks of <see cref="OnnxBlock"/> steps per runtime.
    /// </summary>
    /// <param name="Version">ONNX Runtime's version.</param>
    /// <param name="Threads">Its intra-op threads (the same count as VitSharp's kernels).</param>
    /// <param name="MedianMs">Median ms per step.</param>
    /// <param name="MinMs">Fastest step.</param>
    /// <param name="MaxMs">Slowest step.</param>
    /// <param name="TimesMs">Every timed step.</param>
    /// <param name="MaxAbsDifference">Max |VitSharp − ONNX Runtime| over the logits of the first step.</param>
    /// <param name="ExportMs">How long the export took.</param>
    /// <param name="Precision">What ONNX Runtime ran: <see cref="InferencePrecision.Int8"/> (the export dynamically quantized,
    /// <see cref="VitSharp.Export.OnnxQuantization.DynamicInt8"/>) or <see cref="InferencePrecision.Float32"/> (also for
    /// <c>--precision bf16</c>: ONNX Runtime has no bfloat16 CPU path worth timing).</param>
    /// <param name="Cosine">Cosine similarity of VitSharp's and ONNX Runtime's logits of the first step (all images at once).</param>
    /// <param name="Profile">With <c>--profile</c>: ONNX Runtime's kernel time per operator type, per timed step.</param>
    public sealed record OnnxRuntimeResult(string Version, int Threads, double MedianMs, double MinMs, double MaxMs, double[] TimesMs,
        double MaxAbsDifference, double ExportMs, InferencePrecision Precision = InferencePrecision.Float32, double Cosine = 1,
        IReadOnlyList<OpTime>? Profile = null);

    /// <summary>One row of a per-op profile (<c>--profile</c>): milliseconds and calls per timed step.</summary>
    /// <param name="Op">VitSharp: <c>fwd NAME</c> / <c>bwd NAME</c> (<see cref="OpProfiler"/>); ONNX Runtime: the operator type.</param>
    /// <param name="MsPerStep">Milliseconds per step.</param>
    /// <param name="CallsPerStep">Calls per step.</param>
    public sealed record OpTime(string Op, double MsPerStep, double CallsPerStep);

    /// <summary>The default time <c>vit bench</c> gives the peak measurement (<see cref="GemmPeak.Measure"/>).</summary>
    public static readonly TimeSpan DefaultPeakBudget = TimeSpan.FromSeconds(2);

    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m")
        {
            Description = $"Model preset ({string.Join(", ", Presets.All.Select(p => p.Name))}) or a checkpoint / pretrained weights file",
            DefaultValueFactory = _ => "vit-fmnist",
        };
        var set = ModelArgsOption.Create();
        var batch = new Option<int>("--batch", "-b") { Description = "Images per step", DefaultValueFactory = _ => 1 };
        var train = new Option<bool>("--train") { Description = "Time a training step (forward, cross-entropy, backward, AdamW) instead of inference" };
        var threads = new Option<int?>("--threads") { Description = "Threads for the kernels (default: VITSHARP_THREADS or the processor count)" };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps first", DefaultValueFactory = _ => 3 };
        var steps = new Option<int>("--steps") { Description = "Timed steps", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "End with one JSON object on the last line" };
        var onnx = new Option<bool>("--onnx") { Description = "Also time the same model exported to ONNX in ONNX Runtime, in the same process, interleaved with VitSharp in alternating blocks of 5 steps (inference only)" };
        var precision = new Option<string>("--precision")
        {
            Description = "Number format of inference: fp32 (default), bf16 or int8. With --onnx, ONNX Runtime runs the export dynamically quantized to int8 for int8, float32 for fp32 and bf16 (it has no bfloat16 CPU path worth timing)",
            DefaultValueFactory = _ => "fp32",
        };
        var noPeak = new Option<bool>("--no-peak") { Description = "Skip measuring the machine's float32 GEMM peak (2048³ sgemm, managed and OpenBLAS, ~2–4 s) and the model's fraction of it" };
        var profile = new Option<bool>("--profile")
        {
            Description = "Also print where a step's time goes, op by op (VitSharp's ops on the calling thread, so the batch is not split into data-parallel halves); with --onnx also ONNX Runtime's kernel time per operator type (its session profiling)",
        };
        var noDataParallel = new Option<bool>("--no-data-parallel") { Description = "Split every kernel over the cores instead of running the two halves of the batch on two cores at once (the default with ≥ 2 threads and batch ≥ 2)" };
        var cmd = new Command("bench", "Time inference or a training step of a model preset on random images (median, min, max ms; images/s; GFLOP/s; memory)")
        {
            model, set, batch, train, threads, warmup, steps, json, noDataParallel, onnx, precision, noPeak, profile,
        };
        cmd.SetAction(pr =>
        {
            bool mpi = Distributed.IsLaunchedByMpi;
            if (mpi)
            {
                if (!pr.GetValue(train)) throw new ArgumentException("under mpirun vit bench times distributed training steps: add --train");
                if (pr.GetValue(profile)) throw new ArgumentException("--profile profiles one process: run it without mpirun");
                Distributed.Initialize();
                if (pr.GetValue(threads) is null && VitSharpEnvironment.Threads is null)
                    VitSharp.Kernels.ComputeThreads.Count = Math.Max(1, Environment.ProcessorCount / Distributed.LocalSize);
            }
            if (pr.GetValue(threads) is int t)
            {
                if (t < 1) throw new ArgumentException($"--threads must be ≥ 1, got {t}");
                try { VitSharp.Kernels.ComputeThreads.Count = t; }
                catch (InvalidOperationException e) { throw new ArgumentException(e.Message); }
            }
            var preset = ModelSource.Resolve(pr.GetValue(model)!);
            int b = pr.GetValue(batch), w = pr.GetValue(warmup), s = pr.GetValue(steps);
            if (b < 1) throw new ArgumentException($"--batch must be ≥ 1, got {b}");
            if (w < 0) throw new ArgumentException($"--warmup must be ≥ 0, got {w}");
            if (s < 1) throw new ArgumentException($"--steps must be ≥ 1, got {s}");
            if (pr.GetValue(onnx) && pr.GetValue(train)) throw new ArgumentException("--onnx times inference only: leave out --train");
            var p = ParsePrecision(pr.GetValue(precision)!);
            if (p != InferencePrecision.Float32 && pr.GetValue(train))
                throw new ArgumentException($"--precision {p.Name()} applies to inference only (training runs in fp32): leave out --train");
            var r = Run(preset, b, pr.GetValue(train), w, s, dataParallel: !pr.GetValue(noDataParallel), modelArgs: ModelArgsOption.Parse(pr.GetValue(set)),
                onnx: pr.GetValue(onnx), precision: p, peakBudget: pr.GetValue(noPeak) || mpi ? null : DefaultPeakBudget, profile: pr.GetValue(profile));
            if (Distributed.IsRoot) Write(ctx.Out, r, pr.GetValue(json));
            if (mpi) Distributed.Shutdown();
            return CliApp.ExitOk;
        });
        return cmd;
    }

    /// <summary><c>--precision</c>'s value (<see cref="InferencePrecisions.Parse"/>), its error naming the option.</summary>
    internal static InferencePrecision ParsePrecision(string text)
    {
        try { return InferencePrecisions.Parse(text); }
        catch (ArgumentException e) { throw new ArgumentException($"--precision: {e.Message}"); }
    }

    /// <summary>
    /// The one place VitSharp's own model is switched to <paramref name="precision"/> for <c>vit bench</c>; returns the
    /// kernel path its Linear layers then run (printed on the cpu line).
    /// </summary>
    private static string ApplyPrecision(Module module, InferencePrecision precision)
    {
        module.UsePrecision(precision);
        return precision switch
        {
            InferencePrecision.Int8 => Int8Gemm.PathName(),
            InferencePrecision.BFloat16 => Bf16Gemm.PathName(),
            _ => CpuFeatures.Current.Fp32Path,
        };
    }

    /// <summary>Builds the preset (seed 0) and times <paramref name="warmup"/> + <paramref name="steps"/> steps.</summary>
    /// <remarks>With <paramref name="dataParallel"/> (and ≥ 2 compute threads, batch ≥ 2), the batch's halves run at once
    /// on two cores (<see cref="DataParallel"/>: a model replica for training, the shared model for
    /// inference), as <c>vit train</c> does.
    /// With <paramref name="onnx"/> (inference only) the model is also exported to ONNX (<see cref="VitSharp.Export.OnnxExporter"/>)
    /// and run in ONNX Runtime on the same images within each step, the two alternating which goes first
    /// (<see cref="OnnxRuntimeRunner"/>). Under MPI (<see cref="Distributed"/> initialised, training only) every rank runs its
    /// shard of the <paramref name="batch"/> and the gradients are all-reduced: the images/s are the global batch's. <paramref name="precision"/> int8 the export is dynamically quantized
    /// (<see cref="VitSharp.Export.OnnxQuantization.DynamicInt8"/>), with bf16 ONNX Runtime runs float32.
    /// <paramref name="precision"/> other than fp32 is inference only. With <paramref name="peakBudget"/>, after the timed
    /// steps (ONNX Runtime's session closed), the machine's float32 GEMM peak is measured for about that long
    /// (<see cref="GemmPeak.Measure"/>). With <paramref name="profile"/> the timed steps are also profiled op by op
    /// (<see cref="OpProfiler"/> on the calling thread, so without data-parallel halves; with <paramref name="onnx"/> also
    /// ONNX Runtime's session profiling): <see cref="Result.Profile"/>, <see cref="OnnxRuntimeResult.Profile"/>.</remarks>
    public static Result Run(Preset preset, int batch, bool train, int warmup, int steps, bool dataParallel = true,
        IReadOnlyDictionary<string, string>? modelArgs = null, bool onnx = false,
        InferencePrecision precision = InferencePrecision.Float32, TimeSpan? peakBudget = null, bool profile = false)
    {
        dataParallel &= !profile;   // the op profile is the calling thread's
        if (train && precision != InferencePrecision.Float32)
            throw new ArgumentException($"--precision {precision.Name()} applies to inference only (training runs in fp32)");
        Init.Seed(0);
        var spec = Trainer.WithModelArgs(preset.Spec, modelArgs, preset.Name);
        var module = spec.Build();
        var (channels, height, width, numClasses, forwardFlops) = module switch
        {
            ViT v => (v.Config.Channels, v.Config.ImageHeight, v.Config.ImageWidth, v.Config.NumClasses, Flops.ViTForwardFlops(v.Config, batch)),
            SwinTransformer sw => (sw.Config.InChans, preset.ImageSize, preset.ImageSize, sw.Config.NumClasses,
                Flops.SwinForwardFlops(sw.Config, batch, preset.ImageSize, preset.ImageSize)),
            _ => throw new ArgumentException($"vit bench supports ViT and Swin presets, '{preset.Name}' is a {module.GetType().Name}"),
        };
        var images = Tensor.RandN(new Random(1), 0, 1, batch, channels, height, width);
        int classes = Math.Max(1, numClasses);
        var labels = Enumerable.Range(0, batch).Select(i => i % classes).ToArray();
        TrainStep? step = null;
        Tensor stepImages = images;
        int[] stepLabels = labels;
        bool distributed = train && Distributed.Size > 1;
        if (train)
        {
            if (numClasses <= 0) throw new ArgumentException($"--train needs a preset with classes, '{preset.Name}' has none");
            if (distributed)
            {
                // This rank's shard of the global batch, as the data loader cuts it.
                int lo = VitSharp.Data.DataLoader.ShardStart(batch, Distributed.Rank, Distributed.Size);
                int n = VitSharp.Data.DataLoader.ShardStart(batch, Distributed.Rank + 1, Distributed.Size) - lo;
                if (n < 1) throw new ArgumentException($"--batch {batch} leaves rank {Distributed.Rank} of {Distributed.Size} without images: give at least one per rank");
                int per = channels * height * width;
                stepImages = new Tensor(images.Data.AsSpan(lo * per, n * per).ToArray(), n, channels, height, width);
                stepLabels = labels[lo..(lo + n)];
            }
            step = CreateTrainStep(module, spec, dataParallel && stepLabels.Length >= 2, distributed);
        }
        else module.Eval();
        string precisionPath = train ? CpuFeatures.Current.Fp32Path : ApplyPrecision(module, precision);
        var linearGemms = LinearGemms.Of(module, Tensor.RandN(new Random(2), 0, 1, batch, channels, height, width));

        using var trainStep = step;
        using var dp = !train && dataParallel && batch >= 2 && DataParallel.Suits(module) ? new DataParallel(module) : null;
        Action<int, Tensor> forwardHalf = (_, x) => module.Forward(x);   // one delegate for all steps
        if (onnx && train) throw new ArgumentException("--onnx times inference only");
        var times = new double[steps];
        var ortTimes = new double[steps];
        long allocated = 0;
        OnnxRuntimeResult? ortResult = null;
        var ort = onnx ? new OnnxRuntimeRunner(module, images, VitSharp.Kernels.ComputeThreads.Count,
            precision == InferencePrecision.Int8 ? InferencePrecision.Int8 : InferencePrecision.Float32, profile) : null;
        IReadOnlyList<(string Op, double Ms, long Calls, long Bytes)>? ops = null;
        int profiledSteps = 0, ortRuns = 0, ortTimed = 0;
        bool profiling = false;
        void VitSharpStep()
        {
            OpProfiler.Mark();   // nothing before the step (ONNX Runtime's run, the loop) is charged to its first op
            if (step is not null)
                step.Run(stepImages, stepLabels, batch, stop: false);
            else if (dp is not null)
                dp.Forward(images, forwardHalf);
            else
            {
                using (TensorScope.Begin(recycleTensors: true))
                using (Autograd.NoGrad())
                    module.Forward(images);
            }
            if (profiling) profiledSteps++;
        }
        try
        {
            for (int it = 0; it < warmup + steps; it++)
            {
                if (ort is not null && it < warmup) { ort.Step(); ortRuns++; }
                if (ort is not null && it >= warmup && (it - warmup) % OnnxBlock == 0)
                {
                    // ONNX Runtime's block of timed steps, then one untimed VitSharp step before VitSharp's block: each
                    // runtime's timed steps follow its own, as in a serving loop. (Step by step alternation charged ONNX
                    // Runtime's intra-op threads, which keep spinning for more than 10 ms after a run, to VitSharp's next step:
                    // ViT-B/16 int8 at batch 1, 72.9 ms after an ONNX Runtime step against 55.4 after its own.)
                    ort.Step(); ortRuns++;
                    for (int j = 0; j < OnnxBlock && ortTimed < steps; j++) { ortTimes[ortTimed++] = ort.Step(); ortRuns++; }
                    VitSharpStep();
                }
                // All threads' allocations (the data-parallel step allocates on two).
                long bytes = GC.GetTotalAllocatedBytes(precise: true);
                if (profile && it == warmup) { OpProfiler.Enable(); profiling = true; }
                long start = Stopwatch.GetTimestamp();
                VitSharpStep();
                double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (it >= warmup)
                {
                    times[it - warmup] = ms;
                    allocated += GC.GetTotalAllocatedBytes(precise: true) - bytes;
                }
            }
            if (profile) ops = OpProfiler.Disable();
            if (ort is not null)
            {
                var o = ortTimes.Order().ToArray();
                ortResult = new OnnxRuntimeResult(ort.Version, ort.Threads, Median(o), o[0], o[^1], ortTimes, ort.MaxAbsDifference, ort.ExportMs,
                    ort.Precision, ort.Cosine, profile ? ort.EndProfile(ortRuns - warmup) : null);
            }
        }
        finally
        {
            if (profile) OpProfiler.Disable();   // on errors too: the thread's profiler stays off
            ort?.Dispose();   // before the peak: its intra-op threads stop
        }
        var peak = peakBudget is { } budget ? GemmPeak.Measure(budget) : null;

        var sorted = times.Order().ToArray();
        double median = Median(sorted);
        double flops = train ? 3.0 * forwardFlops : forwardFlops;
        string name = modelArgs is { Count: > 0 } ? $"{preset.Name} ({string.Join(", ", modelArgs.Select(kv => $"{kv.Key}={kv.Value}"))})" : preset.Name;
        return new Result(name, batch, train, VitSharp.Kernels.ComputeThreads.Count, warmup, steps,
            median, sorted[0], sorted[^1], batch * 1000.0 / median, flops / 1e9, flops / 1e6 / median,
            PeakRssBytes() / (1024.0 * 1024.0), allocated / steps, times, step?.IsDataParallel ?? dp is not null, ortResult,
            precision, precisionPath, peak, CpuFeatures.Current, linearGemms.Count,
            // Data-parallel halves run each kernel on one core (ComputeThreads.Serial): always the managed kernel.
            (step?.IsDataParallel ?? dp is not null) ? 0
                : Gemm.Backend == GemmBackend.Auto ? linearGemms.Count(g => g.AutoUsesOpenBlas)
                : Gemm.Backend == GemmBackend.OpenBlas && Gemm.OpenBlasAvailable ? linearGemms.Count : 0,
            Gemm.Backend, ops?.Select(r => new OpTime(r.Op, r.Ms / profiledSteps, (double)r.Calls / profiledSteps)).ToList());
    }

    private static void WriteProfile(TextWriter o, IReadOnlyList<OpTime> rows, double total)
    {
        foreach (var t in rows.Where(t => t.MsPerStep >= 0.005))
            o.WriteLine($"  {t.Op,-28} {t.MsPerStep.ToString("F2", Inv),9} ms {t.CallsPerStep.ToString("0.#", Inv),7} calls {(total > 0 ? 100 * t.MsPerStep / total : 0).ToString("F1", Inv),6}%");
    }

    private static JsonArray ProfileJson(IReadOnlyList<OpTime> rows) =>
        new(rows.Select(t => (JsonNode?)new JsonObject
        {
            ["op"] = t.Op,
            ["ms_per_step"] = Math.Round(t.MsPerStep, 4),
            ["calls_per_step"] = Math.Round(t.CallsPerStep, 3),
        }).ToArray());

    private static double Median(double[] sorted) =>
        sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;

    /// <summary>
    /// The training step <c>vit bench --train</c> times: the library's <see cref="TrainStep"/> with AdamW (learning rate
    /// 1e-3, weight decay 0.05), cross-entropy with label smoothing 0.1, no clipping, dropout not reseeded; with
    /// <paramref name="dataParallel"/> a replica built from <paramref name="spec"/> runs half of each batch.
    /// </summary>
    public static TrainStep CreateTrainStep(Module model, ModelSpec spec, bool dataParallel, bool distributed = false) =>
        new(model, new AdamW(model.NamedParameters(), 1e-3f, weightDecay: 0.05f), new TrainStepOptions { LabelSmoothing = 0.1f, Distributed = distributed },
            dataParallel ? spec.Build : null);

    /// <summary>Peak resident set size: VmHWM from /proc/self/status on Linux, else the process's peak working set.</summary>
    public static long PeakRssBytes()
    {
        try
        {
            if (File.Exists("/proc/self/status"))
                foreach (var line in File.ReadLines("/proc/self/status"))
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    {
                        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                        if (parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.Integer, Inv, out long kb)) return kb * 1024;
                    }
        }
        catch (IOException) { }
        using var p = Process.GetCurrentProcess();
        return p.PeakWorkingSet64;
    }

    private static void Write(TextWriter o, Result r, bool json)
    {
        string F1(double x) => x.ToString("F1", Inv);
        string Percent(double fraction) => (100 * fraction).ToString("F1", Inv) + "%";
        o.WriteLine($"{r.Model}, batch {r.Batch}, {(r.Train ? "training step (forward, cross-entropy, backward, AdamW)" : "inference (forward, no grad, eval mode)")}, " +
                    $"{r.Steps} timed steps after {r.Warmup} warm-up, {r.Threads} threads{(r.DataParallel ? ", data-parallel halves" : "")}" +
                    $"{(Distributed.Size > 1 ? $"; per rank, {Distributed.Size} MPI ranks (gradients all-reduced)" : "")}");
        o.WriteLine($"step: median {F1(r.MedianMs)} ms, min {F1(r.MinMs)} ms, max {F1(r.MaxMs)} ms");
        o.WriteLine($"throughput: {F1(r.ImagesPerSecond)} images/s (median); {F1(r.GFlops)} GFLOP/s effective ({r.GFlopPerStep.ToString("F2", Inv)} GFLOP per step{(r.Train ? ", 3× forward" : "")})");
        o.WriteLine($"memory: peak working set {F1(r.PeakRssMb)} MB; managed bytes allocated per step (all threads): {r.AllocBytesPerStep.ToString("N0", Inv)}");
        if (r.Peak is { } pk)
        {
            string blas = pk.OpenBlasGFlops is { } ob ? $"openblas {F1(ob)}" : "openblas not loaded";
            o.WriteLine($"peak: {pk.Size}³ sgemm managed {F1(pk.ManagedGFlops)}, {blas} GFLOP/s (best: {pk.Best}; medians of {pk.ManagedTimesMs.Length} runs, {pk.Threads} threads); " +
                        $"model {F1(r.GFlops)} GFLOP/s = {Percent(r.FractionOfPeak!.Value)} of peak");
        }
        if (r.Cpu is { } cpu)
        {
            string blasCore = cpu.OpenBlasCore is { } core ? $"openblas {core} loaded" : "openblas not loaded";
            string auto = r.DataParallel
                ? $"data-parallel halves: managed on one core each for all {r.LinearProducts} Linear products"
                : r.GemmBackend switch
                {
                    GemmBackend.Auto => $"auto: openblas for {r.LinearProductsOnOpenBlas} of {r.LinearProducts} Linear products, managed for the rest",
                    _ => $"backend {r.GemmBackend.ToString().ToLowerInvariant()} (VITSHARP_GEMM): openblas for {r.LinearProductsOnOpenBlas} of {r.LinearProducts} Linear products",
                };
            o.WriteLine($"cpu: {cpu.ModelName}; {string.Join(" ", cpu.Names)}{(cpu.FlagsKnown ? "" : " (vnni/bf16 flags unknown: no /proc/cpuinfo)")}; " +
                        $"fp32 gemm: managed {cpu.ManagedKernel}, {blasCore}, {auto}; precision {r.Precision.Name()}: {r.PrecisionPath}");
        }
        if (r.Onnx is { } x)
        {
            string ortPrecision = x.Precision == InferencePrecision.Int8
                ? "int8 (the export dynamically quantized: DynamicQuantizeLinear + MatMulInteger, fused into DynamicQuantizeMatMul)"
                : r.Precision == InferencePrecision.BFloat16 ? "fp32 (ONNX Runtime has no bfloat16 CPU path worth timing)" : "fp32";
            o.WriteLine($"onnx runtime {x.Version} {ortPrecision} (the same model exported to ONNX in {F1(x.ExportMs)} ms, {x.Threads} intra-op threads, interleaved with VitSharp in blocks of {OnnxBlock} steps): " +
                        $"median {F1(x.MedianMs)} ms, min {F1(x.MinMs)} ms, max {F1(x.MaxMs)} ms; {F1(r.Batch * 1000.0 / x.MedianMs)} images/s" +
                        (r.Peak is { } p2 ? $"; {F1(r.GFlopPerStep * 1000 / x.MedianMs)} GFLOP/s = {Percent(r.GFlopPerStep * 1000 / x.MedianMs / p2.BestGFlops)} of peak" : ""));
            o.WriteLine($"vitsharp {r.Precision.Name()} / onnx runtime {x.Precision.Name()}: {(r.MedianMs / x.MedianMs).ToString("F2", Inv)}× the time (median; below 1: VitSharp faster); " +
                        $"logits max |difference| {x.MaxAbsDifference.ToString("E1", Inv)}, cosine {x.Cosine.ToString("F6", Inv)}");
        }
        if (r.Profile is { } prof)
        {
            double inOps = prof.Sum(t => t.MsPerStep);
            o.WriteLine($"profile, vitsharp (ms per timed step, the calling thread's ops; a forward op's time runs from the previous op's end; " +
                        $"{F1(inOps)} of the median {F1(r.MedianMs)} ms in ops):");
            WriteProfile(o, prof, inOps);
            if (r.Onnx?.Profile is { } ortProf)
            {
                double ortOps = ortProf.Sum(t => t.MsPerStep);
                o.WriteLine($"profile, onnx runtime (kernel time per operator type, ms per timed step; {F1(ortOps)} of the median {F1(r.Onnx.MedianMs)} ms):");
                WriteProfile(o, ortProf, ortOps);
            }
        }
        if (!json) return;
        var root = new JsonObject
        {
            ["model"] = r.Model,
            ["batch"] = r.Batch,
            ["train"] = r.Train,
            ["threads"] = r.Threads,
            ["mpi_ranks"] = Distributed.Size,
            ["data_parallel"] = r.DataParallel,
            ["warmup"] = r.Warmup,
            ["steps"] = r.Steps,
            ["median_ms"] = Math.Round(r.MedianMs, 3),
            ["min_ms"] = Math.Round(r.MinMs, 3),
            ["max_ms"] = Math.Round(r.MaxMs, 3),
            ["images_per_s"] = Math.Round(r.ImagesPerSecond, 3),
            ["gflop_per_step"] = Math.Round(r.GFlopPerStep, 4),
            ["gflops"] = Math.Round(r.GFlops, 3),
            ["peak_rss_mb"] = Math.Round(r.PeakRssMb, 1),
            ["alloc_bytes_per_step"] = r.AllocBytesPerStep,
            ["times_ms"] = new JsonArray(r.TimesMs.Select(t => (JsonNode?)Math.Round(t, 3)).ToArray()),
            ["precision"] = r.Precision.Name(),
        };
        if (r.Profile is { } pj) root["profile"] = ProfileJson(pj);
        if (r.Peak is { } peak)
            root["peak"] = new JsonObject
            {
                ["size"] = peak.Size,
                ["threads"] = peak.Threads,
                ["managed_gflops"] = Math.Round(peak.ManagedGFlops, 3),
                ["openblas_gflops"] = peak.OpenBlasGFlops is { } g ? Math.Round(g, 3) : null,
                ["best"] = peak.Best,
                ["best_gflops"] = Math.Round(peak.BestGFlops, 3),
                ["fraction"] = Math.Round(r.FractionOfPeak!.Value, 4),
                ["managed_times_ms"] = new JsonArray(peak.ManagedTimesMs.Select(t => (JsonNode?)Math.Round(t, 3)).ToArray()),
                ["openblas_times_ms"] = new JsonArray(peak.OpenBlasTimesMs.Select(t => (JsonNode?)Math.Round(t, 3)).ToArray()),
            };
        if (r.Cpu is { } c)
            root["cpu"] = new JsonObject
            {
                ["model"] = c.ModelName,
                ["features"] = new JsonArray(c.Names.Select(n => (JsonNode?)n).ToArray()),
                ["flags_known"] = c.FlagsKnown,
                ["managed_kernel"] = c.ManagedKernel,
                ["fp32_path"] = c.Fp32Path,
                ["openblas_core"] = c.OpenBlasCore,
                ["gemm_backend"] = r.GemmBackend.ToString().ToLowerInvariant(),
                ["linear_products"] = r.LinearProducts,
                ["linear_products_on_openblas"] = r.LinearProductsOnOpenBlas,
                ["precision_path"] = r.PrecisionPath,
            };
        if (r.Onnx is { } ox)
            root["onnx"] = new JsonObject
            {
                ["version"] = ox.Version,
                ["threads"] = ox.Threads,
                ["median_ms"] = Math.Round(ox.MedianMs, 3),
                ["min_ms"] = Math.Round(ox.MinMs, 3),
                ["max_ms"] = Math.Round(ox.MaxMs, 3),
                ["precision"] = ox.Precision.Name(),
                ["max_abs_difference"] = ox.MaxAbsDifference,
                ["cosine"] = Math.Round(ox.Cosine, 8),
                ["times_ms"] = new JsonArray(ox.TimesMs.Select(t => (JsonNode?)Math.Round(t, 3)).ToArray()),
            };
        if (r.Onnx?.Profile is { } opj) root["onnx"]!["profile"] = ProfileJson(opj);
        o.WriteLine(root.ToJsonString());
    }
}
