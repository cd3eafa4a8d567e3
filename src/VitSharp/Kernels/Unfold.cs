using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// im2col of one image, as <c>torch.nn.functional.unfold</c>: x [C, H, W] → cols [C·kh·kw, L] with row
/// r = (c·kh + ki)·kw + kj (channel slowest, then ki, then kj) and column l = oh·OW + ow (L = OH·OW),
/// cols[r, l] = x[c, oh·sh − ph + ki, ow·sw − pw + kj], 0 in the padding. Rows of cols are
/// <c>ldCols</c> apart (≥ L), so several images can be laid side by side in one [C·kh·kw, n·L] matrix
/// (the caller passes the span starting at the image's first column).
/// </summary>
public static class UnfoldKernel
{
    /// <summary>Writes cols = unfold(x).</summary>
    public static void Forward(ReadOnlySpan<float> x, int channels, int height, int width, Window2d window, Span<float> cols, int ldCols) =>
        Gather(x, channels, height, width, window, cols, ldCols, accumulate: false);

    /// <summary>Backward (col2im): dx [C, H, W] += fold(dcols), every window position adding into the pixel it read.</summary>
    public static void Backward(ReadOnlySpan<float> dcols, int ldCols, int channels, int height, int width, Window2d window, Span<float> dx) =>
        Scatter(dcols, ldCols, channels, height, width, window, dx);

    /// <summary>Checks span lengths for an image of the given geometry.</summary>
    internal static (int outH, int outW) Check(int xLength, int colsLength, int ldCols, int channels, int height, int width, Window2d w)
    {
        int oh = w.OutH(height), ow = w.OutW(width), l = oh * ow;
        long rows = (long)channels * w.KernelH * w.KernelW;
        if (ldCols < l) throw new ArgumentException($"ldCols {ldCols} is smaller than the {l} window positions");
        if (xLength < (long)channels * height * width) throw new ArgumentException("image span too short for the given shape");
        if (rows > 0 && l > 0 && colsLength < (rows - 1) * ldCols + l) throw new ArgumentException("cols span too short for the given shape");
        return (oh, ow);
    }

    /// <summary>The output columns ow whose input column ow·s − p + k lies in [0, width): [lo, hi).</summary>
    internal static (int lo, int hi) ValidRange(int outExtent, int inExtent, int stride, int pad, int k)
    {
        // ow·s ≥ p − k  and  ow·s ≤ inExtent − 1 + p − k.
        int lo = pad - k <= 0 ? 0 : (pad - k + stride - 1) / stride;
        int top = inExtent - 1 + pad - k;
        int hi = top < 0 ? 0 : Math.Min(outExtent, top / stride + 1);
        return (Math.Min(lo, hi), hi);
    }

    /// <summary>cols (=|+=) unfold(x).</summary>
    internal static void Gather(ReadOnlySpan<float> x, int channels, int height, int width, Window2d w, Span<float> cols, int ldCols, bool accumulate)
    {
        var (oh, ow) = Check(x.Length, cols.Length, ldCols, channels, height, width, w);
        int kh = w.KernelH, kw = w.KernelW, sh = w.StrideH, sw = w.StrideW;
        for (int c = 0; c < channels; c++)
        {
            var plane = x.Slice(c * height * width, height * width);
            for (int ki = 0; ki < kh; ki++)
                for (int kj = 0; kj < kw; kj++)
                {
                    int r = (c * kh + ki) * kw + kj;
                    var row = cols.Slice(r * ldCols, oh * ow);
                    var (lo, hi) = ValidRange(ow, width, sw, w.PadW, kj);
                    int colBase = lo * sw - w.PadW + kj;
                    for (int i = 0; i < oh; i++)
                    {
                        var dst = row.Slice(i * ow, ow);
                        int ih = i * sh - w.PadH + ki;
                        if ((uint)ih >= (uint)height)
                        {
                            if (!accumulate) dst.Clear();
                            continue;
                        }
                        if (!accumulate) { dst[..lo].Clear(); dst[hi..].Clear(); }
                        var src = plane.Slice(ih * width, width);
                        if (hi <= lo) continue;
                        if (sw == 1)
                        {
                            var s = src.Slice(colBase, hi - lo);
                            if (accumulate) TensorPrimitives.Add(dst[lo..hi], s, dst[lo..hi]);
                            else s.CopyTo(dst[lo..hi]);
                        }
                        else if (accumulate)
                            for (int j = lo, iw = colBase; j < hi; j++, iw += sw) dst[j] += src[iw];
                        else
                            for (int j = lo, iw = colBase; j < hi; j++, iw += sw) dst[j] = src[iw];
                    }
                }
        }
    }

    /// <summary>dx += fold(cols).</summary>
    internal static void Scatter(ReadOnlySpan<float> cols, int ldCols, int channels, int height, int width, Window2d w, Span<float> dx)
    {
        var (oh, ow) = Check(dx.Length, cols.Length, ldCols, channels, height, width, w);
        int kh = w.KernelH, kw = w.KernelW, sh = w.StrideH, sw = w.StrideW;
        for (int c = 0; c < channels; c++)
        {
            var plane = dx.Slice(c * height * width, height * width);
            for (int ki = 0; ki < kh; ki++)
                for (int kj = 0; kj < kw; kj++)
                {
                    int r = (c * kh + ki) * kw + kj;
                    var row = cols.Slice(r * ldCols, oh * ow);
                    var (lo, hi) = ValidRange(ow, width, sw, w.PadW, kj);
                    if (hi <= lo) continue;
                    int colBase = lo * sw - w.PadW + kj;
                    for (int i = 0; i < oh; i++)
                    {
                        int ih = i * sh - w.PadH + ki;
                        if ((uint)ih >= (uint)height) continue;
                        var src = row.Slice(i * ow, ow);
                        var dst = plane.Slice(ih * width, width);
                        if (sw == 1)
                        {
                            var d = dst.Slice(colBase, hi - lo);
                            TensorPrimitives.Add(d, src[lo..hi], d);
                        }
                        else
                            for (int j = lo, iw = colBase; j < hi; j++, iw += sw) dst[iw] += src[j];
                    }
                }
        }
    }
}
