using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// The managed int8 fallback of <see cref="Int8Gemm"/>: the same contract as the native VNNI kernel
/// (<c>c[i, j] = Σ_k a[i,k]·w[j,k]</c> in int32 over the packed weight layout of <see cref="Int8Weights"/>), exact.
/// SIMD variants widen u8 and s8 to int16 and use VPMADDWD (two int16 products summed into int32, no saturation).
/// </summary>
internal static unsafe class Int8ManagedKernels
{
    /// <summary>c[i, j] for i &lt; m, j &lt; n (int32, row stride ldc); b points at the packed panel of column 0.</summary>
    public static void Gemm(Int8Gemm.ManagedIsa isa, byte* a, nint lda, int m, sbyte* b, int n, int groups, int* c, nint ldc)
    {
        long panel = (long)groups * 256;
        for (int j = 0; j < n; j += 64)
        {
            sbyte* bp = b + (j / 64) * panel;
            int cols = Math.Min(64, n - j);
            switch (isa)
            {
                case Int8Gemm.ManagedIsa.Avx512BW:
                    for (int h = 0; h < cols; h += 32)
                        for (int i = 0; i < m; i += 4)
                            Tile4x32(a + i * lda, lda, Math.Min(4, m - i), bp + h * 4, groups, c + i * ldc + j + h, ldc, Math.Min(32, cols - h));
                    break;
                case Int8Gemm.ManagedIsa.Avx2:
                    for (int h = 0; h < cols; h += 16)
                        for (int i = 0; i < m; i += 2)
                            Tile2x16(a + i * lda, lda, Math.Min(2, m - i), bp + h * 4, groups, c + i * ldc + j + h, ldc, Math.Min(16, cols - h));
                    break;
                default:
                    for (int i = 0; i < m; i++) Row64(a + i * lda, bp, groups, c + i * ldc + j, cols);
                    break;
            }
        }
    }

    /// <summary>Four u8 values as four int16 lanes of a 64-bit word (a0 | a1 &lt;&lt; 16 | a2 &lt;&lt; 32 | a3 &lt;&lt; 48).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Widen4(byte* p) => Bmi2.X64.ParallelBitDeposit(Unsafe.ReadUnaligned<uint>(p), 0x00FF_00FF_00FF_00FFUL);

    /// <summary>Up to 4 rows × up to 32 columns (half a panel; b at its first column). Each int16 weight vector holds
    /// 8 columns × 4 k; VPMADDWD against (a0,a1,a2,a3) broadcast gives per column the k0+k1 and k2+k3 partial sums in
    /// adjacent int32 lanes, added at the end.</summary>
    private static void Tile4x32(byte* a, nint lda, int rows, sbyte* b, int groups, int* c, nint ldc, int cols)
    {
        byte* a0 = a, a1 = rows > 1 ? a + lda : a, a2 = rows > 2 ? a + 2 * lda : a, a3 = rows > 3 ? a + 3 * lda : a;
        Vector512<int> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<int> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<int> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<int> c30 = default, c31 = default, c32 = default, c33 = default;
        for (long g = 0; g < groups; g++)
        {
            sbyte* bg = b + g * 256;
            var w0 = Avx512BW.ConvertToVector512Int16(Vector256.Load(bg));
            var w1 = Avx512BW.ConvertToVector512Int16(Vector256.Load(bg + 32));
            var w2 = Avx512BW.ConvertToVector512Int16(Vector256.Load(bg + 64));
            var w3 = Avx512BW.ConvertToVector512Int16(Vector256.Load(bg + 96));
            long o = g * 4;
            var v = Vector512.Create(Widen4(a0 + o)).AsInt16();
            c00 += Avx512BW.MultiplyAddAdjacent(v, w0); c01 += Avx512BW.MultiplyAddAdjacent(v, w1);
            c02 += Avx512BW.MultiplyAddAdjacent(v, w2); c03 += Avx512BW.MultiplyAddAdjacent(v, w3);
            v = Vector512.Create(Widen4(a1 + o)).AsInt16();
            c10 += Avx512BW.MultiplyAddAdjacent(v, w0); c11 += Avx512BW.MultiplyAddAdjacent(v, w1);
            c12 += Avx512BW.MultiplyAddAdjacent(v, w2); c13 += Avx512BW.MultiplyAddAdjacent(v, w3);
            v = Vector512.Create(Widen4(a2 + o)).AsInt16();
            c20 += Avx512BW.MultiplyAddAdjacent(v, w0); c21 += Avx512BW.MultiplyAddAdjacent(v, w1);
            c22 += Avx512BW.MultiplyAddAdjacent(v, w2); c23 += Avx512BW.MultiplyAddAdjacent(v, w3);
            v = Vector512.Create(Widen4(a3 + o)).AsInt16();
            c30 += Avx512BW.MultiplyAddAdjacent(v, w0); c31 += Avx512BW.MultiplyAddAdjacent(v, w1);
            c32 += Avx512BW.MultiplyAddAdjacent(v, w2); c33 += Avx512BW.MultiplyAddAdjacent(v, w3);
        }
        Store4(c, cols, c00, c01, c02, c03);
        if (rows > 1) Store4(c + ldc, cols, c10, c11, c12, c13);
        if (rows > 2) Store4(c + 2 * ldc, cols, c20, c21, c22, c23);
        if (rows > 3) Store4(c + 3 * ldc, cols, c30, c31, c32, c33);
    }

    private static void Store4(int* c, int cols, Vector512<int> v0, Vector512<int> v1, Vector512<int> v2, Vector512<int> v3)
    {
        // Lanes 2t and 2t+1 of vector q belong to column 8q + t.
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        var s01 = Avx512F.PermuteVar16x32x2(v0, even, v1) + Avx512F.PermuteVar16x32x2(v0, odd, v1);
        var s23 = Avx512F.PermuteVar16x32x2(v2, even, v3) + Avx512F.PermuteVar16x32x2(v2, odd, v3);
        if (cols >= 32)
        {
            s01.Store(c);
            s23.Store(c + 16);
            return;
        }
        int* tmp = stackalloc int[32];
        s01.Store(tmp);
        s23.Store(tmp + 16);
        for (int t = 0; t < cols; t++) c[t] = tmp[t];
    }

    /// <summary>Up to 2 rows × up to 16 columns (a quarter panel) with 256-bit VPMADDWD: each int16 vector holds 4 columns × 4 k.</summary>
    private static void Tile2x16(byte* a, nint lda, int rows, sbyte* b, int groups, int* c, nint ldc, int cols)
    {
        byte* a0 = a, a1 = rows > 1 ? a + lda : a;
        Vector256<int> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector256<int> c10 = default, c11 = default, c12 = default, c13 = default;
        for (long g = 0; g < groups; g++)
        {
            sbyte* bg = b + g * 256;
            var w0 = Avx2.ConvertToVector256Int16(Vector128.Load(bg));
            var w1 = Avx2.ConvertToVector256Int16(Vector128.Load(bg + 16));
            var w2 = Avx2.ConvertToVector256Int16(Vector128.Load(bg + 32));
            var w3 = Avx2.ConvertToVector256Int16(Vector128.Load(bg + 48));
            long o = g * 4;
            var v = Vector256.Create(Widen4(a0 + o)).AsInt16();
            c00 += Avx2.MultiplyAddAdjacent(v, w0); c01 += Avx2.MultiplyAddAdjacent(v, w1);
            c02 += Avx2.MultiplyAddAdjacent(v, w2); c03 += Avx2.MultiplyAddAdjacent(v, w3);
            v = Vector256.Create(Widen4(a1 + o)).AsInt16();
            c10 += Avx2.MultiplyAddAdjacent(v, w0); c11 += Avx2.MultiplyAddAdjacent(v, w1);
            c12 += Avx2.MultiplyAddAdjacent(v, w2); c13 += Avx2.MultiplyAddAdjacent(v, w3);
        }
        Store2(c, cols, c00, c01, c02, c03);
        if (rows > 1) Store2(c + ldc, cols, c10, c11, c12, c13);
    }

    private static void Store2(int* c, int cols, Vector256<int> v0, Vector256<int> v1, Vector256<int> v2, Vector256<int> v3)
    {
        // Avx2.HorizontalAdd(x, y) = [x0+x1, x2+x3, y0+y1, y2+y3 | x4+x5, x6+x7, y4+y5, y6+y7]: columns 0,1 (x), 4,5 (y) | 2,3, 6,7.
        var h01 = Avx2.HorizontalAdd(v0, v1);
        var h23 = Avx2.HorizontalAdd(v2, v3);
        // Restore column order 0..7 and 8..15.
        var s01 = Avx2.PermuteVar8x32(h01, Vector256.Create(0, 1, 4, 5, 2, 3, 6, 7));
        var s23 = Avx2.PermuteVar8x32(h23, Vector256.Create(0, 1, 4, 5, 2, 3, 6, 7));
        if (cols >= 16)
        {
            s01.Store(c);
            s23.Store(c + 8);
            return;
        }
        int* tmp = stackalloc int[16];
        s01.Store(tmp);
        s23.Store(tmp + 8);
        for (int t = 0; t < cols; t++) c[t] = tmp[t];
    }

    /// <summary>One row × up to 64 columns, scalar.</summary>
    private static void Row64(byte* a, sbyte* b, int groups, int* c, int cols)
    {
        int* acc = stackalloc int[64];
        for (int t = 0; t < 64; t++) acc[t] = 0;
        for (long g = 0; g < groups; g++)
        {
            int x0 = a[g * 4], x1 = a[g * 4 + 1], x2 = a[g * 4 + 2], x3 = a[g * 4 + 3];
            sbyte* bg = b + g * 256;
            for (int t = 0; t < cols; t++)
                acc[t] += x0 * bg[t * 4] + x1 * bg[t * 4 + 1] + x2 * bg[t * 4 + 2] + x3 * bg[t * 4 + 3];
        }
        for (int t = 0; t < cols; t++) c[t] = acc[t];
    }
}
