using static VitSharp.Bench.BenchArgs;
using System.Diagnostics;
using VitSharp.Models;
using VitSharp.Optim;
using VitSharp.Training;

namespace VitSharp.Bench;

/// <summary>
/// One training step of a preset (the library's <see cref="TrainStep"/>: forward, cross-entropy with label smoothing,
/// backward, gradient clipping, AdamW) on random images, as <c>vit train</c> runs it: median and min milliseconds, images/s, managed bytes
/// allocated per step, and the per-op profile of the timed steps.
/// </summary>
public static class TrainStepBench
{
    public static void Run(string[] args)
    {
        string preset = Arg(args, "--model") ?? "vit-fmnist";
        int batch = int.Parse(Arg(args, "--batch") ?? "128");
        int steps = int.Parse(Arg(args, "--steps") ?? "10");
        int warmup = int.Parse(Arg(args, "--warmup") ?? "3");
        bool infer = args.Contains("--infer");   // forward only, in eval mode without the tape
        var p = Presets.Get(preset);
        // --set NAME=VALUE (repeatable), as vit train's.
        var sets = Trainer.ParseModelArgs(
            args.Select((a, i) => (a, i)).Where(t => t.a == "--set" && t.i + 1 < args.Length).Select(t => args[t.i + 1]).ToList());
        var model = Trainer.WithModelArgs(p.Spec, sets, preset).Build();
        if (infer) model.Eval(); else model.Train();
        // --precision bf16|int8 (inference only): the Linear layers in that precision (VitSharp.Inference.ModelPrecision).
        if (Arg(args, "--precision") is { } precision)
            VitSharp.Inference.ModelPrecision.UsePrecision(model, VitSharp.Inference.InferencePrecisions.Parse(precision));
        var images = Tensor.RandN(new Random(1), 0, 1, batch, p.Channels, p.ImageSize, p.ImageSize);
        int classes;
        using (TensorScope.Begin())
        using (Autograd.NoGrad()) classes = model.Forward(images.Slice(0, 0, 1)).Dim(1);   // any model, not only ViT's config
        var labels = Enumerable.Range(0, batch).Select(i => i % classes).ToArray();
        // The library's training step, as vit train runs it (without data-parallel halves, so that the op profile is the
        // calling thread's): AdamW, label smoothing 0.1, clipping at norm 1.
        using var step = infer ? null : new TrainStep(model, new AdamW(model.NamedParameters(), 1e-3f, weightDecay: 0.05f),
            new TrainStepOptions { LabelSmoothing = 0.1f, ClipGradNorm = 1f });
        var times = new List<double>();
        long allocated = 0;
        double zeroMs = 0, clipMs = 0, adamMs = 0;
        for (int it = 0; it < warmup + steps; it++)
        {
            if (it == warmup) OpProfiler.Enable();
            long bytes = GC.GetAllocatedBytesForCurrentThread();
            var sw = Stopwatch.StartNew();
            if (step is null)
            {
                using (TensorScope.Begin(recycleTensors: true))
                using (Autograd.NoGrad()) { OpProfiler.Mark(); model.Forward(images); OpProfiler.Mark(); }
            }
            else
            {
                var r = step.Run(images, labels);
                if (it >= warmup) { zeroMs += r.ZeroGradMs; clipMs += r.ClipMs; adamMs += r.OptimizerMs; }
            }
            if (it >= warmup) { times.Add(sw.Elapsed.TotalMilliseconds); allocated += GC.GetAllocatedBytesForCurrentThread() - bytes; }
        }
        var profile = OpProfiler.Disable();
        times.Sort();
        double median = times[times.Count / 2], min = times[0];
        Console.WriteLine($"{preset}, batch {batch}, {(infer ? "inference" : "training")}, {steps} steps after {warmup} warm-up, {Kernels.ComputeThreads.Count} threads");
        Console.WriteLine($"step: median {median:F1} ms, min {min:F1} ms, max {times[^1]:F1} ms; {batch * 1000 / median:F0} images/s (median), {batch * 1000 / min:F0} (best)");
        Console.WriteLine($"managed bytes allocated per step (calling thread): {allocated / steps:N0}");
        if (!infer)
            Console.WriteLine($"outside the ops, per step: zero gradients {zeroMs / steps:F2} ms, clip gradient norm {clipMs / steps:F2} ms, AdamW {adamMs / steps:F2} ms");
        double total = profile.Sum(r => r.Ms);
        Console.WriteLine("op profile (per step):");
        foreach (var r in profile.Take(15))
            Console.WriteLine($"  {r.Op,-20} {r.Ms / steps,8:F1} ms  {r.Calls / steps,5} calls  {100 * r.Ms / total,5:F1}%  {r.Bytes / steps,9:N0} B");
        Console.WriteLine("managed bytes per step by op (largest first):");
        foreach (var r in profile.OrderByDescending(r => r.Bytes).Take(12))
            Console.WriteLine($"  {r.Op,-20} {r.Bytes / steps,9:N0} B  {r.Calls / steps,5} calls");
    }
}
