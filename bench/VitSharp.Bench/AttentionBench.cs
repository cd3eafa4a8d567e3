using System.Diagnostics;
using VitSharp.Kernels;

namespace VitSharp.Bench;

/// <summary>
/// Packed multi-head attention (AttentionKernel.ForwardPacked / BackwardPacked) with the direct tile products against
/// the packed-GEMM path, interleaved round by round in one process so that machine noise hits both alike.
/// </summary>
public static class AttentionTable
{
    /// <summary>Runs the comparison; args: [--rounds N] [--shapes BxNxHxD,…].</summary>
    public static void Run(string[] args)
    {
        int ri = Array.IndexOf(args, "--rounds"), si = Array.IndexOf(args, "--shapes");
        int rounds = ri >= 0 ? int.Parse(args[ri + 1]) : 9;
        // --no-prefetch: groups do not prefetch the next group's operands (AttentionKernel.Prefetch), to measure what it gives.
        AttentionKernel.Prefetch = !args.Contains("--no-prefetch");
        // (batch, tokens, heads, head dim): the Fashion-MNIST model at batch 128, ViT-B/16 at batch 1, DeiT-S at batch 32.
        var shapes = si >= 0
            ? args[si + 1].Split(',').Select(x => x.Split('x').Select(int.Parse).ToArray()).Select(v => (v[0], v[1], v[2], v[3])).ToArray()
            : new[] { (128, 50, 4, 32), (1, 197, 12, 64), (32, 197, 6, 64) };
        Console.WriteLine($"attention fwd+bwd, median (min) ms over {rounds} interleaved rounds; GFLOP/s of the four products");
        // Where the CPU has AVX-512, the tiles run twice: with their 16-lane 4 × 32 blocks and with the 8-lane blocks only.
        bool wide = AttentionTiles.Use512;
        Console.WriteLine($"{"B×N×H×D",-16} {"tiles fwd",16} {"gemm fwd",16} {"tiles bwd",16} {"gemm bwd",16}" +
            (wide ? $" {"8-lane fwd",16} {"8-lane bwd",16}" : ""));
        foreach (var (b, n, h, d) in shapes)
        {
            var rng = new Random(1);
            var qkv = Uniform(rng, b * n * 3 * h * d); var dout = Uniform(rng, b * n * h * d);
            var probs = new float[b * h * n * n]; var o = new float[b * n * h * d]; var dqkv = new float[qkv.Length];
            float scale = 1 / MathF.Sqrt(d);
            double fwdFlops = 4.0 * b * h * n * n * d, bwdFlops = 2 * fwdFlops;
            var t = new List<double>[6];
            for (int i = 0; i < 6; i++) t[i] = new List<double>();
            WarmUp(n, h, d, scale);
            for (int r = -2; r < rounds; r++)
                for (int path = 0; path < (wide ? 3 : 2); path++)
                {
                    bool tiles = path != 1;
                    AttentionKernel.UseTiles = tiles;
                    AttentionTiles.Use512 = path == 0;
                    AttentionKernel.TilesMaxKeys = int.MaxValue;
                    var sw = Stopwatch.StartNew();
                    AttentionKernel.ForwardPacked(qkv, b, n, h, d, scale, probs, o);
                    double f = sw.Elapsed.TotalMilliseconds;
                    sw.Restart();
                    AttentionKernel.BackwardPacked(dout, qkv, probs, b, n, h, d, scale, dqkv);
                    double bw = sw.Elapsed.TotalMilliseconds;
                    if (r < 0) continue;
                    (path == 2 ? t[4] : t[tiles ? 0 : 1]).Add(f); (path == 2 ? t[5] : t[tiles ? 2 : 3]).Add(bw);
                }
            AttentionTiles.Use512 = true;
            AttentionKernel.UseTiles = true;
            AttentionKernel.TilesMaxKeys = 128;
            string Cell(List<double> x, double flops)
            {
                x.Sort();
                double med = x[x.Count / 2];
                return $"{med,6:F2} ({x[0],5:F2}) {flops / med / 1e6,4:F0}";
            }
            Console.WriteLine($"{$"{b}×{n}×{h}×{d}",-16} {Cell(t[0], fwdFlops),16} {Cell(t[1], fwdFlops),16} {Cell(t[2], bwdFlops),16} {Cell(t[3], bwdFlops),16}" +
                (wide ? $" {Cell(t[4], fwdFlops),16} {Cell(t[5], bwdFlops),16}" : ""));
        }
        Inference(shapes, rounds);
    }

    /// <summary>Inference (no probabilities kept): the experimental AVX-512 query blocks (Experiments/AttentionBlocks, where
    /// the CPU has AVX-512) against the library's tile and packed-GEMM paths, interleaved, with the largest difference of
    /// the outputs from the GEMM path's.</summary>
    private static void Inference((int b, int n, int h, int d)[] shapes, int rounds)
    {
        Console.WriteLine($"attention inference forward (no probabilities kept), median (min) ms over {rounds} interleaved rounds; GFLOP/s of the two products");
        Console.WriteLine($"{"B×N×H×D",-16} {"blocks",16} {"tiles",16} {"gemm",16}  max |blocks − gemm|");
        foreach (var (b, n, h, d) in shapes)
        {
            var rng = new Random(1);
            var qkv = Uniform(rng, b * n * 3 * h * d);
            var outs = new[] { new float[b * n * h * d], new float[b * n * h * d], new float[b * n * h * d] };
            float scale = 1 / MathF.Sqrt(d);
            double flops = 4.0 * b * h * n * n * d;
            var t = new[] { new List<double>(), new List<double>(), new List<double>() };
            bool blocks = Experiments.AttentionBlocks.Supported(d);
            for (int r = -40; r < rounds; r++)
                for (int path = blocks ? 0 : 1; path < 3; path++)
                {
                    AttentionKernel.UseTiles = path == 1;
                    AttentionKernel.TilesMaxKeys = int.MaxValue;
                    var sw = Stopwatch.StartNew();
                    if (path == 0) Experiments.AttentionBlocks.ForwardPacked(qkv, b, n, h, d, scale, outs[path]);
                    else AttentionKernel.ForwardPacked(qkv, b, n, h, d, scale, null, outs[path]);
                    if (r >= 0) t[path].Add(sw.Elapsed.TotalMilliseconds);
                }
            AttentionKernel.UseTiles = true;
            AttentionKernel.TilesMaxKeys = 128;
            double diff = 0;
            for (int i = 0; blocks && i < outs[0].Length; i++) diff = Math.Max(diff, Math.Abs(outs[0][i] - outs[2][i]));
            string Cell(List<double> x)
            {
                if (x.Count == 0) return "n/a";
                x.Sort();
                double med = x[x.Count / 2];
                return $"{med,6:F2} ({x[0],5:F2}) {flops / med / 1e6,4:F0}";
            }
            Console.WriteLine($"{$"{b}×{n}×{h}×{d}",-16} {Cell(t[0]),16} {Cell(t[1]),16} {Cell(t[2]),16}  {diff:E1}");
        }
    }

    /// <summary>
    /// Brings both paths to optimized (tier-1) code before timing: the kernels start in the JIT's quick tier-0 code,
    /// which is several times slower and is replaced only after ~30 calls and a background compile; a few warm-up
    /// rounds on a large shape are not enough (measured: the first ~7 calls of a 64×50×3×32 forward took ~20 ms,
    /// later ones ~3 ms).
    /// </summary>
    private static void WarmUp(int n, int h, int d, float scale)
    {
        var rng = new Random(2);
        var qkv = Uniform(rng, n * 3 * h * d); var dout = Uniform(rng, n * h * d);
        var probs = new float[h * n * n]; var o = new float[n * h * d]; var dqkv = new float[qkv.Length];
        for (int round = 0; round < 2; round++)
        {
            foreach (bool tiles in new[] { true, false })
            {
                AttentionKernel.UseTiles = tiles;
                AttentionKernel.TilesMaxKeys = int.MaxValue;
                for (int i = 0; i < 60; i++)
                {
                    AttentionKernel.ForwardPacked(qkv, 1, n, h, d, scale, probs, o);
                    AttentionKernel.BackwardPacked(dout, qkv, probs, 1, n, h, d, scale, dqkv);
                }
            }
            Thread.Sleep(300); // the background tier-1 compiles
        }
    }

    private static float[] Uniform(Random rng, int length)
    {
        var a = new float[length];
        for (int i = 0; i < length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }
}
