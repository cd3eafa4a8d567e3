using static VitSharp.Bench.BenchArgs;
using System.Diagnostics;
using VitSharp.Kernels;
using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Bench;

/// <summary>
/// Inference of a preset with the Linear → GELU epilogue fusion (<see cref="F.LinearGelu"/>) on and off, alternating step
/// by step in one process so that both see the same machine: median, min and max milliseconds of each, and the model's
/// GFLOP/s as a fraction of the measured fp32 GEMM peak. <c>--precision int8|bf16</c> times the converted model;
/// <c>--gemm managed|openblas|auto</c> the backend of the unfused fp32 products (the fused ones run on the managed kernel).
/// </summary>
public static class FusionBench
{
    public static void Run(string[] args)
    {
        string preset = Arg(args, "--model") ?? "deit-s16";
        int batch = int.Parse(Arg(args, "--batch") ?? "32");
        int steps = int.Parse(Arg(args, "--steps") ?? "10");
        int warmup = int.Parse(Arg(args, "--warmup") ?? "2");
        if (Arg(args, "--gemm") is { } g) Gemm.Backend = Enum.Parse<GemmBackend>(g, ignoreCase: true);
        var p = Presets.Get(preset);
        var model = p.Spec.Build();
        model.Eval();
        if (Arg(args, "--precision") is { } precision)
            VitSharp.Inference.ModelPrecision.UsePrecision(model, VitSharp.Inference.InferencePrecisions.Parse(precision));
        var images = Tensor.RandN(new Random(1), 0, 1, batch, p.Channels, p.ImageSize, p.ImageSize);
        double gflop = Flops.ViTForwardFlops(((ViT)model).Config, batch) * 1e-9;
        var fused = new List<double>();
        var plain = new List<double>();
        for (int it = 0; it < 2 * (warmup + steps); it++)
        {
            bool fuse = it % 4 is 0 or 3;   // F, U, U, F, F, U, U, F, …: each side equally often first
            F.FuseEpilogues = fuse;
            var sw = Stopwatch.StartNew();
            using (TensorScope.Begin(recycleTensors: true))
            using (Autograd.NoGrad()) model.Forward(images);
            double ms = sw.Elapsed.TotalMilliseconds;
            if (it >= 2 * warmup) (fuse ? fused : plain).Add(ms);
        }
        F.FuseEpilogues = true;
        var peak = GemmPeak.Measure(TimeSpan.FromSeconds(3));
        Console.WriteLine($"{preset}, batch {batch}, inference{(Arg(args, "--precision") is { } pr ? " " + pr : "")}, {steps} steps per side after {warmup} warm-up, alternating; gemm backend {Gemm.Backend}; {gflop:F1} GFLOP per step");
        Report("fused  ", fused, gflop, peak.BestGFlops);
        Report("unfused", plain, gflop, peak.BestGFlops);
        fused.Sort(); plain.Sort();
        Console.WriteLine($"unfused / fused (medians): {plain[plain.Count / 2] / fused[fused.Count / 2]:F3}; peak {peak.BestGFlops:F1} GFLOP/s ({peak.Best})");
    }

    private static void Report(string name, List<double> times, double gflop, double peak)
    {
        var t = times.OrderBy(x => x).ToList();
        double med = t[t.Count / 2];
        Console.WriteLine($"{name}: median {med:F1} ms (min {t[0]:F1}, max {t[^1]:F1}); {gflop / med * 1e3:F1} GFLOP/s = {100 * gflop / med * 1e3 / peak:F1}% of peak");
    }
}
