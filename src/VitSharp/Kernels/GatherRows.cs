namespace VitSharp.Kernels;

/// <summary>
/// Row gather within each item of a batch: the pure data movements of Swin (pad + cyclic shift + window partition, its
/// inverse with the crop, the 2×2 patch merging) as one index map each.
/// Shapes: src [B, R_in, C], map [R_out], dst [B, R_out, C]; map[t] is the source row of output row t in the same item,
/// or −1 for a zero row (padding).
/// </summary>
public static class GatherRowsKernel
{
    /// <summary>dst[b, t, :] = src[b, map[t], :] (zeros where map[t] &lt; 0).</summary>
    public static void Forward(ReadOnlySpan<float> src, ReadOnlySpan<int> map, int batch, int rowsIn, int cols, Span<float> dst)
    {
        int rowsOut = map.Length;
        if (src.Length < (long)batch * rowsIn * cols || dst.Length < (long)batch * rowsOut * cols)
            throw new ArgumentException("span too short for the given shape");
        for (int b = 0; b < batch; b++)
        {
            var s = src.Slice(b * rowsIn * cols, rowsIn * cols);
            var d = dst.Slice(b * rowsOut * cols, rowsOut * cols);
            for (int t = 0; t < rowsOut; t++)
            {
                int r = map[t];
                var row = d.Slice(t * cols, cols);
                if (r < 0) row.Clear();
                else s.Slice(r * cols, cols).CopyTo(row);
            }
        }
    }

    /// <summary>dSrc[b, map[t], :] += dDst[b, t, :] for every t with map[t] ≥ 0.</summary>
    public static void Backward(ReadOnlySpan<float> dDst, ReadOnlySpan<int> map, int batch, int rowsIn, int cols, Span<float> dSrc)
    {
        int rowsOut = map.Length;
        if (dSrc.Length < (long)batch * rowsIn * cols || dDst.Length < (long)batch * rowsOut * cols)
            throw new ArgumentException("span too short for the given shape");
        for (int b = 0; b < batch; b++)
        {
            var s = dSrc.Slice(b * rowsIn * cols, rowsIn * cols);
            var d = dDst.Slice(b * rowsOut * cols, rowsOut * cols);
            for (int t = 0; t < rowsOut; t++)
            {
                int r = map[t];
                if (r < 0) continue;
                var dst = s.Slice(r * cols, cols);
                System.Numerics.Tensors.TensorPrimitives.Add(dst, d.Slice(t * cols, cols), dst);
            }
        }
    }
}
