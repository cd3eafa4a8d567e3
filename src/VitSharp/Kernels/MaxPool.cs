namespace VitSharp.Kernels;

/// <summary>
/// 2-D max pooling over planes [P, H, W] (P = batch·channels) as <c>torch.nn.functional.max_pool2d</c>
/// (dilation 1, ceil_mode off): y[p, oh, ow] = max of x[p] over the window rows [oh·sh − ph, +kh) and columns
/// [ow·sw − pw, +kw) clipped to the image (padding never wins). Ties go to the first element in row-major order and
/// a NaN wins, as in PyTorch. The backward pass recomputes the arg-max from x (nothing is saved) and routes each
/// output gradient to it.
/// </summary>
public static class MaxPoolKernel
{
    /// <summary>Writes y [P, OH, OW].</summary>
    public static void Forward(ReadOnlySpan<float> x, int planes, int height, int width, Window2d window, Span<float> y)
    {
        int oh = window.OutH(height), ow = window.OutW(width);
        Check(x.Length, y.Length, planes, height, width, oh, ow);
        for (int p = 0; p < planes; p++)
        {
            var plane = x.Slice(p * height * width, height * width);
            var dst = y.Slice(p * oh * ow, oh * ow);
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    dst[i * ow + j] = plane[ArgMax(plane, height, width, window, i, j)];
        }
    }

    /// <summary>dx [P, H, W] += dy routed to the arg-max of each window (recomputed from <paramref name="x"/>).</summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int planes, int height, int width, Window2d window, Span<float> dx)
    {
        int oh = window.OutH(height), ow = window.OutW(width);
        Check(x.Length, dy.Length, planes, height, width, oh, ow);
        if (dx.Length < (long)planes * height * width) throw new ArgumentException("dx span too short for the given shape");
        for (int p = 0; p < planes; p++)
        {
            var plane = x.Slice(p * height * width, height * width);
            var d = dx.Slice(p * height * width, height * width);
            var g = dy.Slice(p * oh * ow, oh * ow);
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    d[ArgMax(plane, height, width, window, i, j)] += g[i * ow + j];
        }
    }

    /// <summary>Index into the plane of the maximum of window (i, j).</summary>
    private static int ArgMax(ReadOnlySpan<float> plane, int height, int width, Window2d w, int i, int j)
    {
        int h0 = i * w.StrideH - w.PadH, w0 = j * w.StrideW - w.PadW;
        int h1 = Math.Min(h0 + w.KernelH, height), w1 = Math.Min(w0 + w.KernelW, width);
        h0 = Math.Max(h0, 0); w0 = Math.Max(w0, 0);
        int best = h0 * width + w0;
        float max = float.NegativeInfinity;
        for (int r = h0; r < h1; r++)
        {
            var row = plane.Slice(r * width, width);
            for (int c = w0; c < w1; c++)
            {
                float v = row[c];
                if (v > max || float.IsNaN(v)) { max = v; best = r * width + c; if (float.IsNaN(v)) return best; }
            }
        }
        return best;
    }

    private static void Check(int xLength, int yLength, int planes, int height, int width, int oh, int ow)
    {
        if (xLength < (long)planes * height * width) throw new ArgumentException("x span too short for the given shape");
        if (yLength < (long)planes * oh * ow) throw new ArgumentException("output span too short for the given shape");
    }
}
