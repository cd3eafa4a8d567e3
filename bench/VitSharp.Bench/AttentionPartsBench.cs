using System.Diagnostics;
using VitSharp.Kernels;

namespace VitSharp.Bench;

/// <summary>
/// The pieces of one tile-attention group in isolation, in cache (one head of the Fashion-MNIST model: 50 tokens, head
/// dim 32): each product, the transposed copy and the fused row softmax, as nanoseconds per call and GFLOP/s.
/// </summary>
public static unsafe class AttentionPartsBench
{
    public static void Run(string[] args)
    {
        int n = 50, d = 32, reps = 20000;
        int ni = Array.IndexOf(args, "--tokens"); if (ni >= 0) n = int.Parse(args[ni + 1]);
        int di = Array.IndexOf(args, "--dim"); if (di >= 0) d = int.Parse(args[di + 1]);
        int mp = AttentionTiles.Pad8(n);
        var rng = new Random(1);
        float[] R(int len) { var a = GC.AllocateUninitializedArray<float>(len, pinned: true); for (int i = 0; i < len; i++) a[i] = (float)(rng.NextDouble() * 2 - 1); return a; }
        float[] q = R(n * d), k = R(n * d), kt = R(d * mp), s = R(n * mp), o = R(n * d), p = R(n * n);
        fixed (float* pq = q, pk = k, pkt = kt, ps = s, po = o, pp = p)
        {
            float* pqc = pq, pkc = pk, pktc = pkt, psc = ps, poc = po, ppc = pp;
            var parts = new (string Name, double Flops, Action Body)[]
            {
                ("transpose K [n,d]→[d,mp]", 0, () => AttentionTiles.Transpose(pkc, d, n, d, pktc, mp)),
                ($"S = Q·Kᵀ ({n}×{mp}×{d})", 2.0 * n * mp * d, () => AttentionTiles.RowsTimesPanel(pqc, d, pktc, mp, psc, mp, n, mp, d, 1f, false)),
                ($"softmax {n} rows of {n}", 0, () => AttentionTiles.SoftmaxRows(psc, n, n, mp, ppc, n)),
                ($"O = P·V ({n}×{d}×{n})", 2.0 * n * d * n, () => AttentionTiles.RowsTimesPanel(ppc, n, pkc, d, poc, d, n, d, n, 1f, false)),
                ($"dV = Pᵀ·dO ({n}×{d}×{n})", 2.0 * n * d * n, () => AttentionTiles.ColsTimesPanel(ppc, n, pqc, d, poc, d, n, d, n, 1f, true)),
            };
            foreach (var (name, flops, body) in parts)
            {
                for (int i = 0; i < 2000; i++) body();
                var best = double.MaxValue;
                for (int round = 0; round < 5; round++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < reps; i++) body();
                    best = Math.Min(best, sw.Elapsed.TotalMilliseconds * 1e6 / reps);
                    // keep the softmax input in range: refill scores after each round
                    for (int i = 0; i < s.Length; i++) s[i] = (float)(rng.NextDouble() * 2 - 1);
                }
                Console.WriteLine($"{name,-32} {best,9:F0} ns  {(flops > 0 ? $"{flops / best,6:F1} GFLOP/s" : "")}");
            }
        }
    }
}
