using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using VitSharp.Kernels;

namespace VitSharp.Bench.Experiments;

/// <summary>
/// Inference attention for one (batch, head) group on AVX-512: <c>O = softmax(scale·Q·Kᵀ)·V</c> without writing P, in
/// blocks of 32 queries whose scores stay in the L1 cache. Legend: N queries, M keys, D head dim (a multiple of 16).
/// </summary>
/// <remarks>
/// <para>Per group, K is packed once into tiles of 12 keys (<c>kp[t][p][i] = K[12t + i, p]</c>). Per block of 32 queries:
/// Qᵀ is packed (<c>qt[p][i] = Q[i, p]</c>); the scores are computed transposed, <c>Sᵀ[j][i] = scale·Σₚ K[j, p]·Q[i, p]</c>
/// (12 keys × 32 queries per register tile), so that each query's softmax runs down a column — max, exp and sum are
/// lane-wise, with no horizontal reductions; then <c>O[i, :] = (Σⱼ e[j][i]·V[j, :]) / Σⱼ e[j][i]</c> (12 queries × 32
/// dims per register tile, the normalisation applied once per output). Sums run in index order (p, then j), exp is
/// <see cref="VectorMath"/>'s (the same polynomial as the other attention paths).</para>
/// <para>An experiment, not promoted: against the library's packed-GEMM path (<c>bench -- attention</c>, inference table)
/// it measured 0.9–1.15× on this VM (Intel Xeon, 2 vCPUs, AVX-512) — see docs/performance.md. Kept here to re-measure on
/// other CPUs.</para>
/// </remarks>
internal static unsafe class AttentionBlocks
{
    private const int KeyTile = 12;   // keys per score register tile
    private const int QueryBlock = 32; // queries per block (two 16-lane vectors)
    private const int Lds = 48;       // row stride of the Sᵀ block: 32 used, 16 read (not stored) by the last output tile
    private const int OutTile = 12;   // queries per output register tile

    /// <summary>Whether this path runs on this CPU for head dim <paramref name="d"/>.</summary>
    public static bool Supported(int d) => Vector512.IsHardwareAccelerated && Avx512F.IsSupported && d > 0 && d % 16 == 0;

    [ThreadStatic] private static float[]? t_scratch;

    /// <summary>
    /// O[n, d] = softmax(scale·Q[n, d]·K[m, d]ᵀ)·V[m, d]; row i of Q at q + i·ldq, of K at k + i·ldk, of V at v + i·ldv,
    /// of O at o + i·ldo. Requires <see cref="Supported"/>(d), n, m ≥ 1.
    /// </summary>
    public static void Forward(float* q, int ldq, float* k, int ldk, float* v, int ldv, int n, int m, int d, float scale,
        float* o, int ldo)
    {
        int tiles = (m + KeyTile - 1) / KeyTile;
        int kpLen = tiles * KeyTile * d, vpLen = m * d, qtLen = d * QueryBlock, stLen = tiles * KeyTile * Lds;
        int need = kpLen + vpLen + qtLen + stLen + QueryBlock + 16;
        var scratch = t_scratch;
        if (scratch is null || scratch.Length < need) t_scratch = scratch = GC.AllocateArray<float>(need, pinned: true);
        fixed (float* buf = scratch)
        {
            // Lanes of Sᵀ past a block's queries (stale from earlier blocks or calls) only feed output rows that are dropped.
            float* kp = buf, vp = kp + kpLen, qt = vp + vpLen, st = qt + qtLen, inv = st + stLen;
            PackKeys(k, ldk, m, d, kp);
            // V's rows side by side: the output tiles then read one contiguous panel instead of a new page per key.
            for (int j = 0; j < m; j++) new ReadOnlySpan<float>(v + (long)j * ldv, d).CopyTo(new Span<float>(vp + (long)j * d, d));
            for (int i0 = 0; i0 < n; i0 += QueryBlock)
            {
                int rows = Math.Min(QueryBlock, n - i0);
                bool two = rows > 16;
                PackQueries(q + (long)i0 * ldq, ldq, rows, d, qt);
                for (int t = 0; t < tiles; t++)
                {
                    int keys = Math.Min(KeyTile, m - t * KeyTile);
                    if (two) Tile12x32(d, kp + (long)t * KeyTile * d, KeyTile, qt, QueryBlock, st + t * KeyTile * Lds, Lds, keys, null, scale);
                    else Tile12x16(d, kp + (long)t * KeyTile * d, KeyTile, qt, QueryBlock, st + t * KeyTile * Lds, Lds, keys, null, scale);
                }
                SoftmaxColumns(st, m, two ? 2 : 1, inv);
                for (int r0 = 0; r0 < rows; r0 += OutTile)
                {
                    int r = Math.Min(OutTile, rows - r0);
                    float* orow = o + (long)(i0 + r0) * ldo;
                    int c0 = 0;
                    for (; c0 + 32 <= d; c0 += 32) Tile12x32(m, st + r0, Lds, vp + c0, d, orow + c0, ldo, r, inv + r0, 1f);
                    if (c0 < d) Tile12x16(m, st + r0, Lds, vp + c0, d, orow + c0, ldo, r, inv + r0, 1f);
                }
            }
        }
    }

    /// <summary>As the library's AttentionKernel.ForwardPacked without probabilities: qkv [B, N, 3·H·D] → o [B, N, H·D],
    /// one (batch, head) group per work item on the GEMM's worker threads.</summary>
    public static void ForwardPacked(float[] qkv, int batch, int n, int heads, int d, float scale, float[] o)
    {
        fixed (float* pq = qkv, po = o)
            GemmWorkers.For(batch * heads, new Packed { Qkv = pq, O = po, N = n, Heads = heads, D = d, Scale = scale });
    }

    private struct Packed : GemmWorkers.IItemBody
    {
        public float* Qkv, O; public int N, Heads, D; public float Scale;

        public readonly void Run(int g)
        {
            int hd = Heads * D, ld = 3 * hd, b = g / Heads, h = g % Heads;
            float* q = Qkv + (long)b * N * ld + h * D;
            Forward(q, ld, q + hd, ld, q + 2 * hd, ld, N, N, D, Scale, O + (long)b * N * hd + h * D, hd);
        }
    }

    // kp[t][p][i] = K[12t + i, p]; zero rows past m.
    private static void PackKeys(float* k, int ldk, int m, int d, float* kp)
    {
        int tiles = (m + KeyTile - 1) / KeyTile;
        for (int t = 0; t < tiles; t++)
        {
            float* dst = kp + (long)t * KeyTile * d;
            for (int i = 0; i < KeyTile; i++)
            {
                int j = t * KeyTile + i;
                if (j < m)
                {
                    float* src = k + (long)j * ldk;
                    for (int p = 0; p < d; p++) dst[p * KeyTile + i] = src[p];
                }
                else for (int p = 0; p < d; p++) dst[p * KeyTile + i] = 0f;
            }
        }
    }

    // qt[p][i] = Q[i, p] for i < rows; zero for rows ≤ i < 32.
    private static void PackQueries(float* q, int ldq, int rows, int d, float* qt)
    {
        for (int i = 0; i < QueryBlock; i++)
        {
            if (i < rows)
            {
                float* src = q + (long)i * ldq;
                for (int p = 0; p < d; p++) qt[p * QueryBlock + i] = src[p];
            }
            else for (int p = 0; p < d; p++) qt[p * QueryBlock + i] = 0f;
        }
    }

    // Per query lane: max over the m rows of Sᵀ, e = exp(s − max) written back, inv = 1 / Σ e.
    private static void SoftmaxColumns(float* st, int m, int vectors, float* inv)
    {
        if (vectors == 1)
        {
            var max = Vector512.Create(float.NegativeInfinity);
            for (int j = 0; j < m; j++) max = Vector512.Max(max, Vector512.Load(st + (long)j * Lds));
            var sum = Vector512<float>.Zero;
            for (int j = 0; j < m; j++)
            {
                float* s = st + (long)j * Lds;
                var e = VectorMath.Exp(Vector512.Load(s) - max);
                e.Store(s);
                sum += e;
            }
            (Vector512<float>.One / sum).Store(inv);
            return;
        }
        var max0 = Vector512.Create(float.NegativeInfinity);
        var max1 = max0;
        for (int j = 0; j < m; j++)
        {
            float* s = st + (long)j * Lds;
            max0 = Vector512.Max(max0, Vector512.Load(s));
            max1 = Vector512.Max(max1, Vector512.Load(s + 16));
        }
        var sum0 = Vector512<float>.Zero;
        var sum1 = sum0;
        for (int j = 0; j < m; j++)
        {
            float* s = st + (long)j * Lds;
            var e0 = VectorMath.Exp(Vector512.Load(s) - max0);
            var e1 = VectorMath.Exp(Vector512.Load(s + 16) - max1);
            e0.Store(s);
            e1.Store(s + 16);
            sum0 += e0;
            sum1 += e1;
        }
        (Vector512<float>.One / sum0).Store(inv);
        (Vector512<float>.One / sum1).Store(inv + 16);
    }

    // C[i, 0..32) = (Σ_{p<kc} a[p·lda + i] · b[p·ldb + 0..32)) · (rowScale?[i] ?? scale) for i < rows (the 12 − rows
    // other lanes of a are read, computed and dropped).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile12x32(int kc, float* a, int lda, float* b, int ldb, float* c, int ldc, int rows, float* rowScale, float scale)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
            x = Vector512.Create(a[8]); c80 = Vector512.FusedMultiplyAdd(x, b0, c80); c81 = Vector512.FusedMultiplyAdd(x, b1, c81);
            x = Vector512.Create(a[9]); c90 = Vector512.FusedMultiplyAdd(x, b0, c90); c91 = Vector512.FusedMultiplyAdd(x, b1, c91);
            x = Vector512.Create(a[10]); ca0 = Vector512.FusedMultiplyAdd(x, b0, ca0); ca1 = Vector512.FusedMultiplyAdd(x, b1, ca1);
            x = Vector512.Create(a[11]); cb0 = Vector512.FusedMultiplyAdd(x, b0, cb0); cb1 = Vector512.FusedMultiplyAdd(x, b1, cb1);
            a += lda;
            b += ldb;
        }
        Store2(c, ldc, 0, rows, rowScale, scale, c00, c01); Store2(c, ldc, 1, rows, rowScale, scale, c10, c11);
        Store2(c, ldc, 2, rows, rowScale, scale, c20, c21); Store2(c, ldc, 3, rows, rowScale, scale, c30, c31);
        Store2(c, ldc, 4, rows, rowScale, scale, c40, c41); Store2(c, ldc, 5, rows, rowScale, scale, c50, c51);
        Store2(c, ldc, 6, rows, rowScale, scale, c60, c61); Store2(c, ldc, 7, rows, rowScale, scale, c70, c71);
        Store2(c, ldc, 8, rows, rowScale, scale, c80, c81); Store2(c, ldc, 9, rows, rowScale, scale, c90, c91);
        Store2(c, ldc, 10, rows, rowScale, scale, ca0, ca1); Store2(c, ldc, 11, rows, rowScale, scale, cb0, cb1);
    }

    // As Tile12x32 for 16 columns.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile12x16(int kc, float* a, int lda, float* b, int ldb, float* c, int ldc, int rows, float* rowScale, float scale)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<float> c6 = default, c7 = default, c8 = default, c9 = default, ca = default, cb = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c0); c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c2); c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b0, c4); c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b0, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(a[6]), b0, c6); c7 = Vector512.FusedMultiplyAdd(Vector512.Create(a[7]), b0, c7);
            c8 = Vector512.FusedMultiplyAdd(Vector512.Create(a[8]), b0, c8); c9 = Vector512.FusedMultiplyAdd(Vector512.Create(a[9]), b0, c9);
            ca = Vector512.FusedMultiplyAdd(Vector512.Create(a[10]), b0, ca); cb = Vector512.FusedMultiplyAdd(Vector512.Create(a[11]), b0, cb);
            a += lda;
            b += ldb;
        }
        Store1(c, ldc, 0, rows, rowScale, scale, c0); Store1(c, ldc, 1, rows, rowScale, scale, c1);
        Store1(c, ldc, 2, rows, rowScale, scale, c2); Store1(c, ldc, 3, rows, rowScale, scale, c3);
        Store1(c, ldc, 4, rows, rowScale, scale, c4); Store1(c, ldc, 5, rows, rowScale, scale, c5);
        Store1(c, ldc, 6, rows, rowScale, scale, c6); Store1(c, ldc, 7, rows, rowScale, scale, c7);
        Store1(c, ldc, 8, rows, rowScale, scale, c8); Store1(c, ldc, 9, rows, rowScale, scale, c9);
        Store1(c, ldc, 10, rows, rowScale, scale, ca); Store1(c, ldc, 11, rows, rowScale, scale, cb);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store2(float* c, int ldc, int i, int rows, float* rowScale, float scale, Vector512<float> x0, Vector512<float> x1)
    {
        if (i >= rows) return;
        var s = Vector512.Create(rowScale == null ? scale : rowScale[i]);
        float* row = c + (long)i * ldc;
        (x0 * s).Store(row);
        (x1 * s).Store(row + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store1(float* c, int ldc, int i, int rows, float* rowScale, float scale, Vector512<float> x0)
    {
        if (i >= rows) return;
        (x0 * Vector512.Create(rowScale == null ? scale : rowScale[i])).Store(c + (long)i * ldc);
    }
}
