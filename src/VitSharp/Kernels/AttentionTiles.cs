using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// Direct AVX2/FMA products for the small per-(batch, head) matrices of attention (N, M ≈ 17–577 tokens,
/// D = 8·k), without the packing and dispatch of <see cref="Gemm"/>: C (+)= α·A·B where A's rows are strided
/// (q, k, v read in place from the fused qkv) and B is a row-major panel whose width is a multiple of 8.
/// Transposed operands (Kᵀ, Vᵀ, Pᵀ, dSᵀ) are copied into small scratch panels first.
/// </summary>
internal static unsafe class AttentionTiles
{
    /// <summary>Whether the direct path runs on this CPU for head dim <paramref name="d"/>.</summary>
    public static bool Supported(int d) => VectorMath.IsSupported && d % 8 == 0 && d > 0;

    /// <summary>Width rounded up to a whole number of 8-float vectors.</summary>
    public static int Pad8(int m) => (m + 7) & ~7;

    /// <summary>
    /// C[rows, cols] = α·A[rows, k]·B[k, cols] (+ C when <paramref name="accumulate"/>); cols a multiple of 8.
    /// A row i starts at a + i·lda; B row t at b + t·ldb; C row i at c + i·ldc.
    /// </summary>
    public static void RowsTimesPanel(float* a, int lda, float* b, int ldb, float* c, int ldc,
        int rows, int cols, int k, float alpha, bool accumulate) =>
        Product(a, lda, 1, b, ldb, c, ldc, rows, cols, k, alpha, accumulate);

    /// <summary>
    /// C[rows, cols] = α·Aᵀ·B[k, cols] (+ C when <paramref name="accumulate"/>) for A stored [k, rows]: element (i, t) of
    /// the left operand is a[t·lda + i], so Pᵀ and dSᵀ need no transposed copy. cols a multiple of 8.
    /// </summary>
    public static void ColsTimesPanel(float* a, int lda, float* b, int ldb, float* c, int ldc,
        int rows, int cols, int k, float alpha, bool accumulate) =>
        Product(a, 1, lda, b, ldb, c, ldc, rows, cols, k, alpha, accumulate);

    // C = α·A·B (+ C) with A(i, t) = a[i·rs + t·cs]. Register blocks: 4 rows × 32 columns in 16-lane vectors (AVX-512,
    // 8 accumulators), then 4 rows × 16 or 24 columns (8 or 12 accumulators, so the FMA latency is hidden), 4 × 8 only
    // for an 8-wide panel; the 1–3 rows left over in pairs and singles × 16 / 8.
    private static void Product(float* a, int rs, int cs, float* b, int ldb, float* c, int ldc,
        int rows, int cols, int k, float alpha, bool accumulate)
    {
        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            float* ai = a + (long)i * rs, ci = c + (long)i * ldc;
            int j = 0;
            if (Use512)
                for (; cols - j >= 32; j += 32) Block4x32(ai, rs, cs, b + j, ldb, ci + j, ldc, k, alpha, accumulate);
            for (; cols - j >= 32 || cols - j == 16; j += 16) Block4x16(ai, rs, cs, b + j, ldb, ci + j, ldc, k, alpha, accumulate);
            if (cols - j == 24) Block4x24(ai, rs, cs, b + j, ldb, ci + j, ldc, k, alpha, accumulate);
            else if (cols - j == 8) Block4x8(ai, rs, cs, b + j, ldb, ci + j, ldc, k, alpha, accumulate);
        }
        for (; i < rows; )
        {
            int r = rows - i >= 2 ? 2 : 1;
            float* ai = a + (long)i * rs, ci = c + (long)i * ldc;
            int j = 0;
            for (; j + 16 <= cols; j += 16) BlockRx16(r, ai, rs, cs, b + j, ldb, ci + j, ldc, k, alpha, accumulate);
            if (j < cols) BlockRx8(r, ai, rs, cs, b + j, ldb, ci + j, ldc, k, alpha, accumulate);
            i += r;
        }
    }

    private static volatile bool s_no512;

    /// <summary>Whether the products use 16-lane AVX-512 blocks where the CPU has them (false: the 8-lane blocks only, for
    /// tests and the bench). Process-wide, read by the worker threads: harmless to flip under other callers, because
    /// every output element is one FMA chain over t either way, so the two give equal bits.</summary>
    internal static bool Use512 { get => Avx512F.IsSupported && !s_no512; set => s_no512 = !value; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector512<float> acc, float alpha, bool accumulate)
    {
        var r = Avx512F.Multiply(acc, Vector512.Create(alpha));
        if (accumulate) r = Avx512F.Add(r, Avx512F.LoadVector512(c));
        Avx512F.Store(c, r);
    }

    // 4 rows × 32 columns in 16-lane vectors: 8 accumulators, as Block4x16 twice (the same FMA chain per element).
    private static void Block4x32(float* a, int rs, int cs, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = a + rs, a2 = a1 + rs, a3 = a2 + rs;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default,
                         c20 = default, c21 = default, c30 = default, c31 = default;
        for (long t = 0, at = 0; t < k; t++, at += cs, b += ldb)
        {
            var b0 = Avx512F.LoadVector512(b);
            var b1 = Avx512F.LoadVector512(b + 16);
            var x = Vector512.Create(a[at]);
            c00 = Avx512F.FusedMultiplyAdd(x, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[at]);
            c10 = Avx512F.FusedMultiplyAdd(x, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[at]);
            c20 = Avx512F.FusedMultiplyAdd(x, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[at]);
            c30 = Avx512F.FusedMultiplyAdd(x, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x, b1, c31);
        }
        Store(c, c00, alpha, accumulate); Store(c + 16, c01, alpha, accumulate); c += ldc;
        Store(c, c10, alpha, accumulate); Store(c + 16, c11, alpha, accumulate); c += ldc;
        Store(c, c20, alpha, accumulate); Store(c + 16, c21, alpha, accumulate); c += ldc;
        Store(c, c30, alpha, accumulate); Store(c + 16, c31, alpha, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> acc, float alpha, bool accumulate)
    {
        var r = Avx.Multiply(acc, Vector256.Create(alpha));
        if (accumulate) r = Avx.Add(r, Avx.LoadVector256(c));
        Avx.Store(c, r);
    }

    private static void Block4x16(float* a, int rs, int cs, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = a + rs, a2 = a1 + rs, a3 = a2 + rs;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default,
                         c20 = default, c21 = default, c30 = default, c31 = default;
        for (long t = 0, at = 0; t < k; t++, at += cs, b += ldb)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var x = Vector256.Create(a[at]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[at]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[at]);
            c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[at]);
            c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
        }
        Store(c, c00, alpha, accumulate); Store(c + 8, c01, alpha, accumulate); c += ldc;
        Store(c, c10, alpha, accumulate); Store(c + 8, c11, alpha, accumulate); c += ldc;
        Store(c, c20, alpha, accumulate); Store(c + 8, c21, alpha, accumulate); c += ldc;
        Store(c, c30, alpha, accumulate); Store(c + 8, c31, alpha, accumulate);
    }

    private static void Block4x24(float* a, int rs, int cs, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = a + rs, a2 = a1 + rs, a3 = a2 + rs;
        Vector256<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default,
                         c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        for (long t = 0, at = 0; t < k; t++, at += cs, b += ldb)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var b2 = Avx.LoadVector256(b + 16);
            var x = Vector256.Create(a[at]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01); c02 = Fma.MultiplyAdd(x, b2, c02);
            x = Vector256.Create(a1[at]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11); c12 = Fma.MultiplyAdd(x, b2, c12);
            x = Vector256.Create(a2[at]);
            c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21); c22 = Fma.MultiplyAdd(x, b2, c22);
            x = Vector256.Create(a3[at]);
            c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31); c32 = Fma.MultiplyAdd(x, b2, c32);
        }
        Store(c, c00, alpha, accumulate); Store(c + 8, c01, alpha, accumulate); Store(c + 16, c02, alpha, accumulate); c += ldc;
        Store(c, c10, alpha, accumulate); Store(c + 8, c11, alpha, accumulate); Store(c + 16, c12, alpha, accumulate); c += ldc;
        Store(c, c20, alpha, accumulate); Store(c + 8, c21, alpha, accumulate); Store(c + 16, c22, alpha, accumulate); c += ldc;
        Store(c, c30, alpha, accumulate); Store(c + 8, c31, alpha, accumulate); Store(c + 16, c32, alpha, accumulate);
    }

    private static void Block4x8(float* a, int rs, int cs, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = a + rs, a2 = a1 + rs, a3 = a2 + rs;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (long t = 0, at = 0; t < k; t++, at += cs, b += ldb)
        {
            var b0 = Avx.LoadVector256(b);
            c0 = Fma.MultiplyAdd(Vector256.Create(a[at]), b0, c0);
            c1 = Fma.MultiplyAdd(Vector256.Create(a1[at]), b0, c1);
            c2 = Fma.MultiplyAdd(Vector256.Create(a2[at]), b0, c2);
            c3 = Fma.MultiplyAdd(Vector256.Create(a3[at]), b0, c3);
        }
        Store(c, c0, alpha, accumulate); c += ldc;
        Store(c, c1, alpha, accumulate); c += ldc;
        Store(c, c2, alpha, accumulate); c += ldc;
        Store(c, c3, alpha, accumulate);
    }

    // r = 1 or 2 rows × 16 columns; two partial sums per output vector (even and odd t) so that even one row keeps
    // four FMA chains in flight.
    private static void BlockRx16(int r, float* a, int rs, int cs, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = r > 1 ? a + rs : a;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default,
                         e00 = default, e01 = default, e10 = default, e11 = default;
        long t = 0, at = 0;
        for (; t + 2 <= k; t += 2, at += 2L * cs, b += 2L * ldb)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var b2 = Avx.LoadVector256(b + ldb);
            var b3 = Avx.LoadVector256(b + ldb + 8);
            var x = Vector256.Create(a[at]);
            var y = Vector256.Create(a[at + cs]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            e00 = Fma.MultiplyAdd(y, b2, e00); e01 = Fma.MultiplyAdd(y, b3, e01);
            x = Vector256.Create(a1[at]);
            y = Vector256.Create(a1[at + cs]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            e10 = Fma.MultiplyAdd(y, b2, e10); e11 = Fma.MultiplyAdd(y, b3, e11);
        }
        if (t < k)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var x = Vector256.Create(a[at]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[at]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
        }
        Store(c, Avx.Add(c00, e00), alpha, accumulate); Store(c + 8, Avx.Add(c01, e01), alpha, accumulate);
        if (r > 1) { c += ldc; Store(c, Avx.Add(c10, e10), alpha, accumulate); Store(c + 8, Avx.Add(c11, e11), alpha, accumulate); }
    }

    private static void BlockRx8(int r, float* a, int rs, int cs, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = r > 1 ? a + rs : a;
        Vector256<float> c0 = default, c1 = default, e0 = default, e1 = default;
        long t = 0, at = 0;
        for (; t + 2 <= k; t += 2, at += 2L * cs, b += 2L * ldb)
        {
            var b0 = Avx.LoadVector256(b);
            var b2 = Avx.LoadVector256(b + ldb);
            c0 = Fma.MultiplyAdd(Vector256.Create(a[at]), b0, c0);
            e0 = Fma.MultiplyAdd(Vector256.Create(a[at + cs]), b2, e0);
            c1 = Fma.MultiplyAdd(Vector256.Create(a1[at]), b0, c1);
            e1 = Fma.MultiplyAdd(Vector256.Create(a1[at + cs]), b2, e1);
        }
        if (t < k)
        {
            var b0 = Avx.LoadVector256(b);
            c0 = Fma.MultiplyAdd(Vector256.Create(a[at]), b0, c0);
            c1 = Fma.MultiplyAdd(Vector256.Create(a1[at]), b0, c1);
        }
        Store(c, Avx.Add(c0, e0), alpha, accumulate);
        if (r > 1) Store(c + ldc, Avx.Add(c1, e1), alpha, accumulate);
    }

    /// <summary>
    /// Softmax of one padded score row: p[0..m) ← softmax(s[0..m)), leaving the unnormalised exponentials in s (lanes
    /// m..Pad8(m) of s ← 0); probabilities that would be subnormal (&lt; 2.4e−38) are 0. <paramref name="p"/> may be
    /// <paramref name="s"/> (in place). One pass for the max, one for exp and the sum, one to scale into p.
    /// </summary>
    public static void SoftmaxRow(float* s, int m, float* p)
    {
        // Rows of ≥ 64 scores take whole 16-lane blocks first (AVX-512; shorter rows, e.g. 50 tokens, measured no
        // faster); the rest, 0–15 lanes or the whole row, in 8-lane blocks and a masked tail (the padded row holds
        // only Pad8(m) floats). The 16-lane exp equals the 8-lane one bit for bit.
        int full16 = Avx512F.IsSupported && m >= 64 ? m & ~15 : 0;
        int full = m & ~7, rem = m - full;
        var mask = rem == 0 ? Vector256<float>.Zero : TailMask(rem);
        var ninf = Vector256.Create(float.NegativeInfinity);
        var vmax = ninf;
        if (full16 > 0)
        {
            var vmax16 = Vector512.Create(float.NegativeInfinity);
            for (int j = 0; j < full16; j += 16) vmax16 = Avx512F.Max(vmax16, Avx512F.LoadVector512(s + j));
            vmax = Avx.Max(vmax16.GetLower(), vmax16.GetUpper());
        }
        for (int j = full16; j < full; j += 8) vmax = Avx.Max(vmax, Avx.LoadVector256(s + j));
        if (rem != 0) vmax = Avx.Max(vmax, Avx.BlendVariable(ninf, Avx.LoadVector256(s + full), mask));
        float max = HorizontalMax(vmax);
        var mx = Vector256.Create(max);
        var vsum = Vector256<float>.Zero;
        if (full16 > 0)
        {
            var mx16 = Vector512.Create(max);
            var vsum16 = Vector512<float>.Zero;
            for (int j = 0; j < full16; j += 16)
            {
                var e = VectorMath.Exp(Avx512F.Subtract(Avx512F.LoadVector512(s + j), mx16));
                Avx512F.Store(s + j, e);
                vsum16 = Avx512F.Add(vsum16, e);
            }
            vsum = Avx.Add(vsum16.GetLower(), vsum16.GetUpper());
        }
        for (int j = full16; j < full; j += 8)
        {
            var e = VectorMath.Exp(Avx.Subtract(Avx.LoadVector256(s + j), mx));
            Avx.Store(s + j, e);
            vsum = Avx.Add(vsum, e);
        }
        if (rem != 0)
        {
            var e = Avx.And(VectorMath.Exp(Avx.Subtract(Avx.LoadVector256(s + full), mx)), mask);
            Avx.Store(s + full, e);
            vsum = Avx.Add(vsum, e);
        }
        float sum = Vector256.Sum(vsum), inv = 1f / sum;
        // Exponentials below 2·FLT_MIN·sum give 0, not a subnormal p (< 2.4e-38 off): subnormal operands cost a microcode
        // assist per instruction, and Swin's shift mask (−100) puts them in most rows — they made its window attention
        // 3.5× slower, here and in the products that read P.
        float floor = 2f * MinNormal * sum;
        if (full16 > 0)
        {
            var vinv16 = Vector512.Create(inv);
            var floor16 = Vector512.Create(floor);
            for (int j = 0; j < full16; j += 16)
            {
                var e = Avx512F.LoadVector512(s + j);
                Avx512F.Store(p + j, Avx512F.Multiply(e & Vector512.GreaterThanOrEqual(e, floor16), vinv16));
            }
        }
        var vinv = Vector256.Create(inv);
        var vfloor = Vector256.Create(floor);
        for (int j = full16; j < full; j += 8)
        {
            var e = Avx.LoadVector256(s + j);
            Avx.Store(p + j, Avx.Multiply(Avx.And(e, Avx.CompareGreaterThanOrEqual(e, vfloor)), vinv));
        }
        for (int j = full; j < m; j++) p[j] = s[j] >= floor ? s[j] * inv : 0f;
    }

    /// <summary>The smallest normal float32, 2⁻¹²⁶ (FLT_MIN).</summary>
    private const float MinNormal = 1.17549435e-38f;

    /// <summary>
    /// The softmax backward of one row in place: d[0..m) ← p ∘ (d − Σ p∘d) (dS from dP and the probabilities P);
    /// lanes m..Pad8(m) of d ← 0.
    /// </summary>
    public static void SoftmaxBackwardRow(float* p, float* d, int m)
    {
        int full = m & ~7, rem = m - full;
        var vdot = Vector256<float>.Zero;
        int j = 0;
        for (; j < full; j += 8) vdot = Fma.MultiplyAdd(Avx.LoadVector256(p + j), Avx.LoadVector256(d + j), vdot);
        float dot = Vector256.Sum(vdot);
        for (int t = full; t < m; t++) dot += p[t] * d[t];
        var vd = Vector256.Create(dot);
        for (j = 0; j < full; j += 8)
            Avx.Store(d + j, Avx.Multiply(Avx.LoadVector256(p + j), Avx.Subtract(Avx.LoadVector256(d + j), vd)));
        for (int t = full; t < m; t++) d[t] = p[t] * (d[t] - dot);
        for (int t = m; t < AttentionTiles.Pad8(m); t++) d[t] = 0f;
    }

    /// <summary><see cref="SoftmaxRow"/> over n score rows s (stride lds) into P [n, m] (stride ldp; p = s, ldp = lds: in place).</summary>
    public static void SoftmaxRows(float* s, int n, int m, int lds, float* p, int ldp)
    {
        int i = 0;
        // Rows without a 16-lane prefix two at a time: the same operations per row, interleaved, so that one row's
        // dependency chains (max, sum) overlap the other's.
        if (!(Avx512F.IsSupported && m >= 64))
            for (; i + 2 <= n; i += 2)
                SoftmaxRowPair(s + (long)i * lds, s + (long)(i + 1) * lds, m, p + (long)i * ldp, p + (long)(i + 1) * ldp);
        for (; i < n; i++) SoftmaxRow(s + (long)i * lds, m, p + (long)i * ldp);
    }

    // SoftmaxRow's 8-lane path on two rows at once (each row's operations in SoftmaxRow's order: the same bits).
    private static void SoftmaxRowPair(float* s0, float* s1, int m, float* p0, float* p1)
    {
        int full = m & ~7, rem = m - full;
        var mask = rem == 0 ? Vector256<float>.Zero : TailMask(rem);
        var ninf = Vector256.Create(float.NegativeInfinity);
        var vmax0 = ninf; var vmax1 = ninf;
        for (int j = 0; j < full; j += 8)
        {
            vmax0 = Avx.Max(vmax0, Avx.LoadVector256(s0 + j));
            vmax1 = Avx.Max(vmax1, Avx.LoadVector256(s1 + j));
        }
        if (rem != 0)
        {
            vmax0 = Avx.Max(vmax0, Avx.BlendVariable(ninf, Avx.LoadVector256(s0 + full), mask));
            vmax1 = Avx.Max(vmax1, Avx.BlendVariable(ninf, Avx.LoadVector256(s1 + full), mask));
        }
        var mx0 = Vector256.Create(HorizontalMax(vmax0));
        var mx1 = Vector256.Create(HorizontalMax(vmax1));
        var vsum0 = Vector256<float>.Zero; var vsum1 = vsum0;
        for (int j = 0; j < full; j += 8)
        {
            var e0 = VectorMath.Exp(Avx.Subtract(Avx.LoadVector256(s0 + j), mx0));
            var e1 = VectorMath.Exp(Avx.Subtract(Avx.LoadVector256(s1 + j), mx1));
            Avx.Store(s0 + j, e0); Avx.Store(s1 + j, e1);
            vsum0 = Avx.Add(vsum0, e0); vsum1 = Avx.Add(vsum1, e1);
        }
        if (rem != 0)
        {
            var e0 = Avx.And(VectorMath.Exp(Avx.Subtract(Avx.LoadVector256(s0 + full), mx0)), mask);
            var e1 = Avx.And(VectorMath.Exp(Avx.Subtract(Avx.LoadVector256(s1 + full), mx1)), mask);
            Avx.Store(s0 + full, e0); Avx.Store(s1 + full, e1);
            vsum0 = Avx.Add(vsum0, e0); vsum1 = Avx.Add(vsum1, e1);
        }
        float sum0 = Vector256.Sum(vsum0), sum1 = Vector256.Sum(vsum1);
        float inv0 = 1f / sum0, inv1 = 1f / sum1;
        float floor0 = 2f * MinNormal * sum0, floor1 = 2f * MinNormal * sum1;
        var vinv0 = Vector256.Create(inv0); var vinv1 = Vector256.Create(inv1);
        var vfloor0 = Vector256.Create(floor0); var vfloor1 = Vector256.Create(floor1);
        for (int j = 0; j < full; j += 8)
        {
            var e0 = Avx.LoadVector256(s0 + j);
            var e1 = Avx.LoadVector256(s1 + j);
            Avx.Store(p0 + j, Avx.Multiply(Avx.And(e0, Avx.CompareGreaterThanOrEqual(e0, vfloor0)), vinv0));
            Avx.Store(p1 + j, Avx.Multiply(Avx.And(e1, Avx.CompareGreaterThanOrEqual(e1, vfloor1)), vinv1));
        }
        for (int j = full; j < m; j++)
        {
            p0[j] = s0[j] >= floor0 ? s0[j] * inv0 : 0f;
            p1[j] = s1[j] >= floor1 ? s1[j] * inv1 : 0f;
        }
    }

    /// <summary><see cref="SoftmaxBackwardRow"/> over n rows of dP (stride ldd) against P [n, m], in place.</summary>
    public static void SoftmaxBackwardRows(float* p, float* d, int n, int m, int ldd)
    {
        for (int i = 0; i < n; i++) SoftmaxBackwardRow(p + (long)i * m, d + (long)i * ldd, m);
    }

    private static Vector256<float> TailMask(int rem) =>
        Vector256.LessThan(Vector256.Create(0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f), Vector256.Create((float)rem));

    private static float HorizontalMax(Vector256<float> v)
    {
        var m = Sse.Max(v.GetLower(), v.GetUpper());
        m = Sse.Max(m, Sse.Shuffle(m, m, 0b01_00_11_10));
        m = Sse.Max(m, Sse.Shuffle(m, m, 0b10_11_00_01));
        return m.ToScalar();
    }

    /// <summary>dst[j·ldd + i] = src[i·lds + j] for i &lt; rows, j &lt; cols, and dst[j·ldd + i] = 0 for rows ≤ i &lt; ldd
    /// (a transposed copy whose rows are zero-padded to the panel width ldd). 8×8 blocks in registers, the edges scalar.</summary>
    public static void Transpose(float* src, int lds, int rows, int cols, float* dst, int ldd)
    {
        int r8 = rows & ~7, c8 = cols & ~7;
        for (int i = 0; i < r8; i += 8)
            for (int j = 0; j < c8; j += 8)
                Transpose8x8(src + (long)i * lds + j, lds, dst + (long)j * ldd + i, ldd);
        for (int j = 0; j < cols; j++)
        {
            float* d = dst + (long)j * ldd;
            int i0 = j < c8 ? r8 : 0;                  // columns of the 8×8 blocks have their first r8 rows done
            float* sp = src + (long)i0 * lds + j;
            for (int i = i0; i < rows; i++, sp += lds) d[i] = *sp;
            for (int i = rows; i < ldd; i++) d[i] = 0f;
        }
    }

    private static void Transpose8x8(float* s, int lds, float* d, int ldd)
    {
        var r0 = Avx.LoadVector256(s); var r1 = Avx.LoadVector256(s + lds);
        var r2 = Avx.LoadVector256(s + 2 * lds); var r3 = Avx.LoadVector256(s + 3 * lds);
        var r4 = Avx.LoadVector256(s + 4 * lds); var r5 = Avx.LoadVector256(s + 5 * lds);
        var r6 = Avx.LoadVector256(s + 6 * lds); var r7 = Avx.LoadVector256(s + 7 * lds);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(d + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(d + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(d + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(d + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    [ThreadStatic] private static float[]? _scratch;

    /// <summary>This thread's scratch buffer of at least <paramref name="length"/> floats (grown, never shrunk).</summary>
    public static float[] Scratch(int length)
    {
        var s = _scratch;
        if (s is null || s.Length < length) _scratch = s = GC.AllocateUninitializedArray<float>(Math.Max(length, 4096), pinned: true);
        return s;
    }
}
