using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace VitSharp.Kernels;

/// <summary>
/// dst[c] += Σ_r src[r, c] over a row-major [R, C] block (bias gradients: the column sums of dY). Columns are
/// taken in strips of 32 whose partial sums stay in registers while the rows stream past.
/// </summary>
public static class ColumnSumKernel
{
    /// <summary>Accumulates the column sums of <paramref name="src"/> [rows, cols] into <paramref name="dst"/> [cols].</summary>
    public static void Accumulate(ReadOnlySpan<float> src, int rows, int cols, Span<float> dst)
    {
        if (src.Length < (long)rows * cols || dst.Length < cols) throw new ArgumentException("span too short for the given shape");
        ref float s = ref MemoryMarshal.GetReference(src);
        int c = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c <= cols - 32; c += 32)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int r = 0; r < rows; r++)
                {
                    nuint o = (nuint)((long)r * cols + c);
                    a0 += Vector256.LoadUnsafe(ref s, o);
                    a1 += Vector256.LoadUnsafe(ref s, o + 8);
                    a2 += Vector256.LoadUnsafe(ref s, o + 16);
                    a3 += Vector256.LoadUnsafe(ref s, o + 24);
                }
                var d = dst.Slice(c, 32);
                (Vector256.Create<float>(d) + a0).CopyTo(d);
                (Vector256.Create<float>(d[8..]) + a1).CopyTo(d[8..]);
                (Vector256.Create<float>(d[16..]) + a2).CopyTo(d[16..]);
                (Vector256.Create<float>(d[24..]) + a3).CopyTo(d[24..]);
            }
        }
        if (c < cols)
        {
            int w = cols - c;
            for (int r = 0; r < rows; r++)
                TensorPrimitives.Add(dst.Slice(c, w), src.Slice(r * cols + c, w), dst.Slice(c, w));
        }
    }
}
