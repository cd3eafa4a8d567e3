using System.Numerics.Tensors;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// Scaled dot-product attention per (batch, head), fused so that one head's scores stay in cache:
/// P = softmax(scale · Q·Kᵀ), O = P·V. Legend: B batch, H heads, N query tokens, M key tokens, D head dim,
/// G = B·H groups. Parallel over groups on the GEMM's worker threads.
/// </summary>
public static class AttentionKernel
{
    /// <summary>Forward pass over separate q [G, N, D], k, v [G, M, D]; keeps probs [G, N, M]; writes o [G, N, D].</summary>
    public static void Forward(float[] q, float[] k, float[] v, int groups, int n, int m, int d, float scale,
        float[] probs, float[] o)
    {
        Run(groups, n * m * 2L * d, new Groups { Mode = GroupMode.Forward, Tiles = Tiles(m, d), Q = q, K = k, V = v, P = probs, Out = o, N = n, M = m, D = d, Scale = scale });
    }

    /// <summary>Backward pass over separate q, k, v; accumulates into dq, dk, dv (same layouts as the inputs).</summary>
    public static void Backward(float[] dout, float[] q, float[] k, float[] v, float[] probs,
        int groups, int n, int m, int d, float scale, float[] dq, float[] dk, float[] dv)
    {
        Run(groups, n * m * 4L * d, new Groups
        {
            Mode = GroupMode.Backward, Tiles = Tiles(m, d), Q = q, K = k, V = v, P = probs, Out = dout, N = n, M = m, D = d, Scale = scale,
            Dq = dq, Dk = dk, Dv = dv,
        });
    }

    /// <summary>
    /// Forward pass straight from the fused projection: qkv [B, N, 3, H, D] (q, k, v blocks of H·D each, as
    /// vit-pytorch's to_qkv output) → o [B, N, H, D] (the "b n (h d)" layout to_out consumes); probs [B, H, N, N].
    /// No permute copies: heads are read and written with leading dimension 3·H·D and H·D.
    /// <paramref name="probs"/> null (inference without observers): P stays in each group's scratch and is not kept.
    /// </summary>
    public static void ForwardPacked(float[] qkv, int batch, int n, int heads, int d, float scale, float[]? probs, float[] o)
    {
        Run(batch * heads, n * n * 2L * d, new Groups { Mode = GroupMode.ForwardPacked, Tiles = Tiles(n, d), Q = qkv, P = probs, Out = o, N = n, M = n, D = d, Heads = heads, Scale = scale });
    }

    /// <summary>Backward pass of <see cref="ForwardPacked"/>; accumulates into dqkv [B, N, 3, H, D], or with
    /// <paramref name="accumulate"/> false writes all of it (dqkv need not be cleared: the same values as adding to zeros).</summary>
    public static void BackwardPacked(float[] dout, float[] qkv, float[] probs, int batch, int n, int heads, int d,
        float scale, float[] dqkv, bool accumulate = true)
    {
        Run(batch * heads, n * n * 4L * d, new Groups
        {
            Mode = GroupMode.BackwardPacked, Tiles = Tiles(n, d), Q = qkv, P = probs, Out = dout, N = n, M = n, D = d, Heads = heads, Scale = scale, Dq = dqkv,
            Overwrite = !accumulate,
        });
    }

    /// <summary>
    /// Swin's window attention from the fused projection: as <see cref="ForwardPacked"/> with B = G windows of all images
    /// (G = images · W), and before the softmax the scores get <paramref name="bias"/>[h] ([H, N, N], the relative position
    /// bias) and, when not null, <paramref name="mask"/>[g mod W] ([W, N, N], the shift mask) added:
    /// P = softmax(scale·Q·Kᵀ + bias[h] + mask[g mod W]), O = P·V. qkv [G, N, 3, H, D] → o [G, N, H·D]; probs [G, H, N, N].
    /// </summary>
    public static void ForwardWindows(float[] qkv, int groups, int n, int heads, int d, float scale, float[] bias, float[]? mask,
        int windows, float[]? probs, float[] o)
    {
        CheckWindows(groups, n, heads, bias, mask, windows);
        Run(groups * heads, n * n * 2L * d, new Groups
        {
            Mode = GroupMode.ForwardPacked, Tiles = Tiles(n, d), Q = qkv, P = probs, Out = o, N = n, M = n, D = d, Heads = heads, Scale = scale,
            Bias = bias, Mask = mask, Windows = windows,
        });
    }

    /// <summary>Backward pass of <see cref="ForwardWindows"/>: accumulates into dqkv [G, N, 3, H, D] and writes each group's
    /// score gradient dS (= the bias's gradient from that group) into <paramref name="dScores"/> [G, H, N, N]; the bias's
    /// gradient is its sum over G (<see cref="SumGroups"/>).</summary>
    public static void BackwardWindows(float[] dout, float[] qkv, float[] probs, int groups, int n, int heads, int d, float scale,
        float[] dqkv, float[] dScores)
    {
        if (dScores.Length < (long)groups * heads * n * n) throw new ArgumentException("dScores shorter than [G, H, N, N]", nameof(dScores));
        Run(groups * heads, n * n * 4L * d, new Groups
        {
            Mode = GroupMode.BackwardPacked, Tiles = Tiles(n, d), Q = qkv, P = probs, Out = dout, N = n, M = n, D = d, Heads = heads, Scale = scale,
            Dq = dqkv, DScores = dScores,
        });
    }

    /// <summary>sum[j] += Σ_g x[g·len + j] for j &lt; len (the bias gradient from the per-group score gradients), g in order.</summary>
    public static void SumGroups(ReadOnlySpan<float> x, int groups, int len, Span<float> sum)
    {
        if (x.Length < (long)groups * len || sum.Length < len) throw new ArgumentException("buffers shorter than the groups");
        for (int g = 0; g < groups; g++) TensorPrimitives.Add(sum[..len], x.Slice(g * len, len), sum[..len]);
    }

    private static void CheckWindows(int groups, int n, int heads, float[] bias, float[]? mask, int windows)
    {
        if (windows < 1 || groups % windows != 0) throw new ArgumentException($"window attention: {groups} groups are not a whole number of images of {windows} windows");
        if (bias.Length != heads * n * n) throw new ArgumentException($"window attention: bias of {bias.Length} entries, expected [{heads}, {n}, {n}]");
        if (mask is not null && mask.Length != windows * n * n) throw new ArgumentException($"window attention: mask of {mask.Length} entries, expected [{windows}, {n}, {n}]");
    }

    private enum GroupMode { Forward, Backward, ForwardPacked, BackwardPacked }

    /// <summary>One call's work per (batch, head) group: a struct, so that fanning out to the workers allocates nothing.</summary>
    private struct Groups : GemmWorkers.IItemBody
    {
        public GroupMode Mode; public bool Tiles;
        // Out is o (forward) or dO (backward); in the packed modes Q is qkv and Dq is dqkv.
        public float[] Q, Out; public float[]? K, V, P, Dq, Dk, Dv;
        // Window attention (packed modes only): bias [H, N, N], mask [W, N, N] or null; dS per group [G·H, N, N] backward.
        public float[]? Bias, Mask, DScores; public int Windows;
        // Backward: write dQ, dK, dV instead of adding to them (a fresh gradient buffer, not cleared).
        public bool Overwrite;
        public int N, M, D, Heads, Count; public float Scale;

        public readonly void Run(int g)
        {
            int n = N, m = M, d = D;
            if (Prefetch && g + 1 < Count && Mode >= GroupMode.ForwardPacked) PrefetchPacked(g + 1);
            switch (Mode)
            {
                case GroupMode.Forward:
                    ForwardGroup(Tiles, Q.AsSpan(g * n * d), d, K.AsSpan(g * m * d), d, V.AsSpan(g * m * d), d,
                        n, m, d, Scale, P.AsSpan(g * n * m, n * m), Out.AsSpan(g * n * d), d);
                    break;
                case GroupMode.Backward:
                    BackwardGroup(Tiles, Out.AsSpan(g * n * d), d, Q.AsSpan(g * n * d), d, K.AsSpan(g * m * d), d, V.AsSpan(g * m * d), d,
                        P.AsSpan(g * n * m, n * m), n, m, d, Scale, Dq.AsSpan(g * n * d), Dk.AsSpan(g * m * d), Dv.AsSpan(g * m * d));
                    break;
                case GroupMode.ForwardPacked:
                {
                    int hd = Heads * d, ld = 3 * hd, b = g / Heads, h = g % Heads;
                    int qb = b * n * ld + h * d;
                    var bias = Bias is null ? ReadOnlySpan<float>.Empty : Bias.AsSpan(h * n * n, n * n);
                    var mask = Mask is null ? ReadOnlySpan<float>.Empty : Mask.AsSpan(b % Windows * n * n, n * n);
                    ForwardGroup(Tiles, Q.AsSpan(qb), ld, Q.AsSpan(qb + hd), ld, Q.AsSpan(qb + 2 * hd), ld,
                        n, n, d, Scale, P is null ? Span<float>.Empty : P.AsSpan(g * n * n, n * n), Out.AsSpan(b * n * hd + h * d), hd, bias, mask);
                    break;
                }
                default:
                {
                    int hd = Heads * d, ld = 3 * hd, b = g / Heads, h = g % Heads;
                    int qb = b * n * ld + h * d;
                    BackwardGroup(Tiles, Out.AsSpan(b * n * hd + h * d), hd, Q.AsSpan(qb), ld, Q.AsSpan(qb + hd), ld, Q.AsSpan(qb + 2 * hd), ld,
                        P.AsSpan(g * n * n, n * n), n, n, d, Scale, Dq.AsSpan(qb), Dq.AsSpan(qb + hd), Dq.AsSpan(qb + 2 * hd), ld,
                        DScores is null ? Span<float>.Empty : DScores.AsSpan(g * n * n, n * n), !Overwrite);
                    break;
                }
            }
        }

        // Group g's operands into L2 while the group before it computes: the packed layouts read each head's rows with
        // a stride of 3·H·D floats (a few cache lines per row, too short for the hardware's stream prefetch), and in a
        // training step qkv, dO and P were written long before (measured: a 50-token backward per group 2× its time
        // with the operands in cache).
        private readonly unsafe void PrefetchPacked(int g)
        {
            int n = N, d = D, hd = Heads * d, ld = 3 * hd, b = g / Heads, h = g % Heads;
            int qb = b * n * ld + h * d, ob = b * n * hd + h * d;
            fixed (float* pq = Q, po = Out, pp = P, pdq = Dq)
            {
                PrefetchRows(pq + qb, n, ld, d); PrefetchRows(pq + qb + hd, n, ld, d); PrefetchRows(pq + qb + 2 * hd, n, ld, d);
                PrefetchRows(po + ob, n, hd, d);
                if (pp != null) PrefetchRows(pp + (long)g * n * n, 1, 0, n * n);
                if (pdq != null)
                {
                    PrefetchRows(pdq + qb, n, ld, d); PrefetchRows(pdq + qb + hd, n, ld, d); PrefetchRows(pdq + qb + 2 * hd, n, ld, d);
                }
            }
        }
    }

    // prefetcht1 of every cache line of rows × cols floats from p with row stride ld.
    private static unsafe void PrefetchRows(float* p, int rows, int ld, int cols)
    {
        if (!Sse.IsSupported) return;
        for (int r = 0; r < rows; r++, p += ld)
        {
            byte* s = (byte*)p, e = (byte*)(p + cols - 1);
            for (byte* x = (byte*)((nint)s & ~63); x <= e; x += 64) Sse.Prefetch1(x);
        }
    }

    /// <summary>Whether a group prefetches the next group's operands (packed modes; false only for A/B measurements in
    /// <c>bench -- attention --no-prefetch</c>: the same results either way).</summary>
    internal static bool Prefetch { get; set; } = true;

    [ThreadStatic] private static bool t_gemmOnly;

    /// <summary>Use the direct tile products (<see cref="AttentionTiles"/>) where the CPU and head dim allow and there are
    /// at most <see cref="TilesMaxKeys"/> keys; false forces the packed-GEMM path (for comparison in benchmarks and tests).
    /// Per calling thread (the choice is made before a call fans out to workers): the two paths round differently, so
    /// a process-wide switch flipped by one caller would change another caller's numbers mid-run.</summary>
    public static bool UseTiles { get => !t_gemmOnly; set => t_gemmOnly = !value; }

    /// <summary>
    /// The tile path's key-count limit. Measured (bench -- attention, 2-core AVX2 VM, medians of 9 interleaved rounds
    /// after the JIT warm-up): 128×50 tokens×4 heads×32: tiles 5.07 / 10.95 ms (forward / backward) against 5.53 / 8.83
    /// for the packed GEMM — within ~10%, mixed at 1 thread; 197 tokens, 64 dims (ViT-B/16 batch 1, DeiT-S batch 32):
    /// the GEMM path is ahead, by up to 25% backward.
    /// </summary>
    public static int TilesMaxKeys { get; set; } = 128;

    private static bool Tiles(int m, int d) => UseTiles && m <= TilesMaxKeys && AttentionTiles.Supported(d);

    private static unsafe void ForwardGroup(bool tiles, ReadOnlySpan<float> q, int ldq, ReadOnlySpan<float> k, int ldk, ReadOnlySpan<float> v, int ldv,
        int n, int m, int d, float scale, Span<float> p, Span<float> o, int ldo, ReadOnlySpan<float> bias = default, ReadOnlySpan<float> mask = default)
    {
        if (tiles) { ForwardTiles(q, ldq, k, ldk, v, ldv, n, m, d, scale, p, o, ldo, bias, mask); return; }
        if (!VectorMath.IsSupported)
        {
            if (p.IsEmpty) p = AttentionTiles.Scratch(n * m).AsSpan(0, n * m);
            Gemm.Sgemm(false, true, n, m, d, scale, q, ldq, k, ldk, 0f, p, m, parallel: false);
            AddScoreBias(p, m, n, m, bias, mask);
            SoftmaxKernel.Forward(p, n, m, p);
            Gemm.Sgemm(false, false, n, d, m, 1f, p, m, v, ldv, 0f, o, ldo, parallel: false);
            return;
        }
        // Scores into padded rows (ld M8) for the fused row softmax, which writes P.
        int mp = AttentionTiles.Pad8(m);
        var s = AttentionTiles.Scratch(n * mp).AsSpan(0, n * mp);
        Gemm.Sgemm(false, true, n, m, d, scale, q, ldq, k, ldk, 0f, s, mp, parallel: false);
        AddScoreBias(s, mp, n, m, bias, mask);
        if (p.IsEmpty)
        {
            fixed (float* ps = s) AttentionTiles.SoftmaxRows(ps, n, m, mp, ps, mp);
            Gemm.Sgemm(false, false, n, d, m, 1f, s, mp, v, ldv, 0f, o, ldo, parallel: false);
            return;
        }
        fixed (float* ps = s, pp = p) AttentionTiles.SoftmaxRows(ps, n, m, mp, pp, m);
        Gemm.Sgemm(false, false, n, d, m, 1f, p, m, v, ldv, 0f, o, ldo, parallel: false);
    }

    // dV += Pᵀ·dO; dP = dO·Vᵀ; dS = P∘(dP − rowsum(dP∘P)); dQ += scale·dS·K; dK += scale·dSᵀ·Q.
    private static unsafe void BackwardGroup(bool tiles, ReadOnlySpan<float> dout, int ldo, ReadOnlySpan<float> q, int ldq,
        ReadOnlySpan<float> k, int ldk, ReadOnlySpan<float> v, int ldv, ReadOnlySpan<float> p,
        int n, int m, int d, float scale, Span<float> dq, Span<float> dk, Span<float> dv, int ldg = -1, Span<float> dScores = default,
        bool accumulate = true)
    {
        int ldDq = ldg < 0 ? ldq : ldg, ldDk = ldg < 0 ? ldk : ldg, ldDv = ldg < 0 ? ldv : ldg;
        if (tiles)
        {
            BackwardTiles(dout, ldo, q, ldq, k, ldk, v, ldv, p, n, m, d, scale, dq, ldDq, dk, ldDk, dv, ldDv, dScores, accumulate);
            return;
        }
        float beta = accumulate ? 1f : 0f;
        // dS in padded rows (ld M8) for the fused row kernel where the CPU has it.
        bool fused = VectorMath.IsSupported;
        int ld = fused ? AttentionTiles.Pad8(m) : m;
        var ds = AttentionTiles.Scratch(n * ld).AsSpan(0, n * ld);
        Gemm.Sgemm(true, false, m, d, n, 1f, p, m, dout, ldo, beta, dv, ldDv, parallel: false);
        Gemm.Sgemm(false, true, n, m, d, 1f, dout, ldo, v, ldv, 0f, ds, ld, parallel: false);
        if (fused)
            fixed (float* pp = p, pd = ds) AttentionTiles.SoftmaxBackwardRows(pp, pd, n, m, ld);
        else
            for (int i = 0; i < n; i++)
            {
                var pr = p.Slice(i * m, m);
                var dr = ds.Slice(i * m, m);
                float dot = TensorPrimitives.Dot(pr, dr);
                TensorPrimitives.Subtract(dr, dot, dr);
                TensorPrimitives.Multiply(dr, pr, dr);
            }
        CopyRows(ds, ld, n, m, dScores);
        Gemm.Sgemm(false, false, n, d, m, scale, ds, ld, k, ldk, beta, dq, ldDq, parallel: false);
        Gemm.Sgemm(true, false, m, d, n, scale, ds, ld, q, ldq, beta, dk, ldDk, parallel: false);
    }

    // S = scale·Q·Kᵀ into a padded scratch (Kᵀ copied to a [D, M8] panel), softmax row by row into P (kept for the
    // backward pass; in place in the scratch when p is empty), O = P·V.
    private static unsafe void ForwardTiles(ReadOnlySpan<float> q, int ldq, ReadOnlySpan<float> k, int ldk, ReadOnlySpan<float> v, int ldv,
        int n, int m, int d, float scale, Span<float> p, Span<float> o, int ldo, ReadOnlySpan<float> bias, ReadOnlySpan<float> mask)
    {
        int mp = AttentionTiles.Pad8(m);
        var scratch = AttentionTiles.Scratch(d * mp + n * mp);
        fixed (float* pq = q, pk = k, pv = v, pp = p, po = o, ps = scratch)
        {
            float* kt = ps, s = ps + d * mp;
            AttentionTiles.Transpose(pk, ldk, m, d, kt, mp);
            AttentionTiles.RowsTimesPanel(pq, ldq, kt, mp, s, mp, n, mp, d, scale, accumulate: false);
            AddScoreBias(scratch.AsSpan(d * mp, n * mp), mp, n, m, bias, mask);
            bool keep = pp != null;
            AttentionTiles.SoftmaxRows(s, n, m, mp, keep ? pp : s, keep ? m : mp);
            AttentionTiles.RowsTimesPanel(keep ? pp : s, keep ? m : mp, pv, ldv, po, ldo, n, d, m, 1f, accumulate: false);
        }
    }

    // dV += Pᵀ·dO; dP = dO·Vᵀ; dS = P∘(dP − rowsum(dP∘P)); dQ += scale·dS·K; dK += scale·dSᵀ·Q — Pᵀ and dSᵀ read
    // column-wise in place (ColsTimesPanel), Vᵀ copied to a scratch panel so dO·Vᵀ reads its right operand row by row.
    private static unsafe void BackwardTiles(ReadOnlySpan<float> dout, int ldo, ReadOnlySpan<float> q, int ldq,
        ReadOnlySpan<float> k, int ldk, ReadOnlySpan<float> v, int ldv, ReadOnlySpan<float> p, int n, int m, int d, float scale,
        Span<float> dq, int ldDq, Span<float> dk, int ldDk, Span<float> dv, int ldDv, Span<float> dScores, bool accumulate)
    {
        int mp = AttentionTiles.Pad8(m);
        var scratch = AttentionTiles.Scratch(d * mp + n * mp);
        fixed (float* pdo = dout, pq = q, pk = k, pv = v, pp = p, pdq = dq, pdk = dk, pdv = dv, ps = scratch)
        {
            float* vt = ps, dp = ps + d * mp;
            AttentionTiles.ColsTimesPanel(pp, m, pdo, ldo, pdv, ldDv, m, d, n, 1f, accumulate);           // dV += Pᵀ·dO
            AttentionTiles.Transpose(pv, ldv, m, d, vt, mp);                                            // Vᵀ [D, M8]
            AttentionTiles.RowsTimesPanel(pdo, ldo, vt, mp, dp, mp, n, mp, d, 1f, accumulate: false);   // dP [N, M8]
            AttentionTiles.SoftmaxBackwardRows(pp, dp, n, m, mp);                                       // dS [N, M8]
            CopyRows(scratch.AsSpan(d * mp, n * mp), mp, n, m, dScores);                                // window bias: dS out
            AttentionTiles.RowsTimesPanel(dp, mp, pk, ldk, pdq, ldDq, n, d, m, scale, accumulate);        // dQ += s·dS·K
            AttentionTiles.ColsTimesPanel(dp, mp, pq, ldq, pdk, ldDk, m, d, n, scale, accumulate);        // dK += s·dSᵀ·Q
        }
    }

    // s[i, j] += bias[i, j] (+ mask[i, j]) for the n × m scores in rows of stride lds; nothing when bias is empty.
    private static void AddScoreBias(Span<float> s, int lds, int n, int m, ReadOnlySpan<float> bias, ReadOnlySpan<float> mask)
    {
        if (bias.IsEmpty) return;
        for (int i = 0; i < n; i++)
        {
            var row = s.Slice(i * lds, m);
            TensorPrimitives.Add(row, bias.Slice(i * m, m), row);
            if (!mask.IsEmpty) TensorPrimitives.Add(row, mask.Slice(i * m, m), row);
        }
    }

    // dst [n, m] (dense) ← the first m columns of src's n rows of stride lds; nothing when dst is empty.
    private static void CopyRows(ReadOnlySpan<float> src, int lds, int n, int m, Span<float> dst)
    {
        if (dst.IsEmpty) return;
        for (int i = 0; i < n; i++) src.Slice(i * lds, m).CopyTo(dst.Slice(i * m, m));
    }

    private static void Run(int groups, long flopsPerGroup, Groups body)
    {
        body.Count = groups;
        // The GEMM's worker pool: no second set of threads competing with its spinning worker for two cores.
        if (groups > 1 && flopsPerGroup * groups > 200_000)
            GemmWorkers.For(groups, body);
        else
            for (int g = 0; g < groups; g++) body.Run(g);
    }
}
