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
    public static bool Supported(int d) => Fma.IsSupported && Avx2.IsSupported && d % 8 == 0 && d > 0;

    /// <summary>Width rounded up to a whole number of 8-float vectors.</summary>
    public static int Pad8(int m) => (m + 7) & ~7;

    /// <summary>
    /// C[rows, cols] = α·A[rows, k]·B[k, cols] (+ C when <paramref name="accumulate"/>); cols a multiple of 8.
    /// A row i starts at a + i·lda; B row t at b + t·ldb; C row i at c + i·ldc.
    /// </summary>
    public static void RowsTimesPanel(float* a, int lda, float* b, int ldb, float* c, int ldc,
        int rows, int cols, int k, float alpha, bool accumulate)
    {
        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            float* a0 = a + (long)i * lda;
            float* c0 = c + (long)i * ldc;
            int j = 0;
            for (; j + 16 <= cols; j += 16) Block4x16(a0, lda, b + j, ldb, c0 + j, ldc, k, alpha, accumulate);
            if (j < cols) Block4x8(a0, lda, b + j, ldb, c0 + j, ldc, k, alpha, accumulate);
        }
        for (; i < rows; i++)
        {
            float* ai = a + (long)i * lda;
            float* ci = c + (long)i * ldc;
            for (int j = 0; j < cols; j += 8)
            {
                var acc = Vector256<float>.Zero;
                float* bp = b + j;
                for (int t = 0; t < k; t++, bp += ldb)
                    acc = Fma.MultiplyAdd(Vector256.Create(ai[t]), Avx.LoadVector256(bp), acc);
                Store(ci + j, acc, alpha, accumulate);
            }
        }
    }

    /// <summary>
    /// C[rows, cols] = α·Aᵀ·B[k, cols] (+ C when <paramref name="accumulate"/>) for A stored [k, rows]: element (i, t) of
    /// the left operand is a[t·lda + i], so Pᵀ and dSᵀ need no transposed copy. cols a multiple of 8.
    /// </summary>
    public static void ColsTimesPanel(float* a, int lda, float* b, int ldb, float* c, int ldc,
        int rows, int cols, int k, float alpha, bool accumulate)
    {
        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            float* c0 = c + (long)i * ldc;
            int j = 0;
            for (; j + 16 <= cols; j += 16) Block4x16T(a + i, lda, b + j, ldb, c0 + j, ldc, k, alpha, accumulate);
            if (j < cols) Block4x8T(a + i, lda, b + j, ldb, c0 + j, ldc, k, alpha, accumulate);
        }
        for (; i < rows; i++)
        {
            float* ci = c + (long)i * ldc;
            for (int j = 0; j < cols; j += 8)
            {
                var acc = Vector256<float>.Zero;
                float* ap = a + i, bp = b + j;
                for (int t = 0; t < k; t++, ap += lda, bp += ldb)
                    acc = Fma.MultiplyAdd(Vector256.Create(*ap), Avx.LoadVector256(bp), acc);
                Store(ci + j, acc, alpha, accumulate);
            }
        }
    }

    private static void Block4x16T(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default,
                         c20 = default, c21 = default, c30 = default, c31 = default;
        for (int t = 0; t < k; t++, a += lda, b += ldb)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var x = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
        }
        Store(c, c00, alpha, accumulate); Store(c + 8, c01, alpha, accumulate); c += ldc;
        Store(c, c10, alpha, accumulate); Store(c + 8, c11, alpha, accumulate); c += ldc;
        Store(c, c20, alpha, accumulate); Store(c + 8, c21, alpha, accumulate); c += ldc;
        Store(c, c30, alpha, accumulate); Store(c + 8, c31, alpha, accumulate);
    }

    private static void Block4x8T(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int t = 0; t < k; t++, a += lda, b += ldb)
        {
            var b0 = Avx.LoadVector256(b);
            c0 = Fma.MultiplyAdd(Vector256.Create(a[0]), b0, c0);
            c1 = Fma.MultiplyAdd(Vector256.Create(a[1]), b0, c1);
            c2 = Fma.MultiplyAdd(Vector256.Create(a[2]), b0, c2);
            c3 = Fma.MultiplyAdd(Vector256.Create(a[3]), b0, c3);
        }
        Store(c, c0, alpha, accumulate); c += ldc;
        Store(c, c1, alpha, accumulate); c += ldc;
        Store(c, c2, alpha, accumulate); c += ldc;
        Store(c, c3, alpha, accumulate);
    }

    /// <summary>
    /// In-place softmax of one padded score row: s[0..m) ← softmax(s[0..m)), lanes m..Pad8(m) ← 0 (so the row can be
    /// the left operand of the P·V product as it is). One pass for the max, one for exp and the sum, one to scale.
    /// </summary>
    public static void SoftmaxRow(float* s, int m)
    {
        int full = m & ~7, rem = m - full;
        var mask = rem == 0 ? Vector256<float>.Zero : TailMask(rem);
        var ninf = Vector256.Create(float.NegativeInfinity);
        var vmax = ninf;
        for (int j = 0; j < full; j += 8) vmax = Avx.Max(vmax, Avx.LoadVector256(s + j));
        if (rem != 0) vmax = Avx.Max(vmax, Avx.BlendVariable(ninf, Avx.LoadVector256(s + full), mask));
        var mx = Vector256.Create(HorizontalMax(vmax));
        var vsum = Vector256<float>.Zero;
        for (int j = 0; j < full; j += 8)
        {
            var e = Vector256.Exp(Avx.Subtract(Avx.LoadVector256(s + j), mx));
            Avx.Store(s + j, e);
            vsum = Avx.Add(vsum, e);
        }
        if (rem != 0)
        {
            var e = Avx.And(Vector256.Exp(Avx.Subtract(Avx.LoadVector256(s + full), mx)), mask);
            Avx.Store(s + full, e);
            vsum = Avx.Add(vsum, e);
        }
        var inv = Vector256.Create(1f / Vector256.Sum(vsum));
        int padded = full + (rem == 0 ? 0 : 8);
        for (int j = 0; j < padded; j += 8) Avx.Store(s + j, Avx.Multiply(Avx.LoadVector256(s + j), inv));
    }

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

    private static Vector256<float> TailMask(int rem) =>
        Vector256.LessThan(Vector256.Create(0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f), Vector256.Create((float)rem));

    private static float HorizontalMax(Vector256<float> v)
    {
        var m = Sse.Max(v.GetLower(), v.GetUpper());
        m = Sse.Max(m, Sse.Shuffle(m, m, 0b01_00_11_10));
        m = Sse.Max(m, Sse.Shuffle(m, m, 0b10_11_00_01));
        return m.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> acc, float alpha, bool accumulate)
    {
        var r = Avx.Multiply(acc, Vector256.Create(alpha));
        if (accumulate) r = Avx.Add(r, Avx.LoadVector256(c));
        Avx.Store(c, r);
    }

    private static void Block4x16(float* a0, int lda, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default,
                         c20 = default, c21 = default, c30 = default, c31 = default;
        for (int t = 0; t < k; t++, b += ldb)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var x = Vector256.Create(a0[t]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[t]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[t]);
            c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[t]);
            c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
        }
        Store(c, c00, alpha, accumulate); Store(c + 8, c01, alpha, accumulate); c += ldc;
        Store(c, c10, alpha, accumulate); Store(c + 8, c11, alpha, accumulate); c += ldc;
        Store(c, c20, alpha, accumulate); Store(c + 8, c21, alpha, accumulate); c += ldc;
        Store(c, c30, alpha, accumulate); Store(c + 8, c31, alpha, accumulate);
    }

    private static void Block4x8(float* a0, int lda, float* b, int ldb, float* c, int ldc, int k, float alpha, bool accumulate)
    {
        float* a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int t = 0; t < k; t++, b += ldb)
        {
            var b0 = Avx.LoadVector256(b);
            c0 = Fma.MultiplyAdd(Vector256.Create(a0[t]), b0, c0);
            c1 = Fma.MultiplyAdd(Vector256.Create(a1[t]), b0, c1);
            c2 = Fma.MultiplyAdd(Vector256.Create(a2[t]), b0, c2);
            c3 = Fma.MultiplyAdd(Vector256.Create(a3[t]), b0, c3);
        }
        Store(c, c0, alpha, accumulate); c += ldc;
        Store(c, c1, alpha, accumulate); c += ldc;
        Store(c, c2, alpha, accumulate); c += ldc;
        Store(c, c3, alpha, accumulate);
    }

    /// <summary>dst[j·ldd + i] = src[i·lds + j] for i &lt; rows, j &lt; cols, and dst[j·ldd + i] = 0 for rows ≤ i &lt; ldd
    /// (a transposed copy whose rows are zero-padded to the panel width ldd).</summary>
    public static void Transpose(float* src, int lds, int rows, int cols, float* dst, int ldd)
    {
        for (int j = 0; j < cols; j++)
        {
            float* d = dst + (long)j * ldd;
            float* s = src + j;
            for (int i = 0; i < rows; i++, s += lds) d[i] = *s;
            for (int i = rows; i < ldd; i++) d[i] = 0f;
        }
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
