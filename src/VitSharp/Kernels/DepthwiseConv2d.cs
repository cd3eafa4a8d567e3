using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// Depthwise 2-D convolution (groups = input channels, M output channels per input channel), computed directly:
/// y[b, c·M + m, i, j] = bias[c·M + m] + Σ_{ki, kj} w[c·M + m, ki, kj] · x[b, c, i·sh − ph + ki, j·sw − pw + kj]
/// (zero padding). x [B, C, H, W], weight [C·M, kh, kw], y [B, C·M, OH, OW]. The kernels process the input channels
/// [c0, c0 + count) with all their outputs and all images, so disjoint channel ranges can run in parallel.
/// </summary>
public static class DepthwiseConv2dKernel
{
    /// <summary>Writes y for the outputs of input channels [c0, c0 + count); bias may be empty.</summary>
    public static void Forward(ReadOnlySpan<float> x, int batch, int channels, int height, int width, int multiplier,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Window2d w, int c0, int count, Span<float> y)
    {
        int oh = w.OutH(height), ow = w.OutW(width), plane = height * width, outPlane = oh * ow, kk = w.KernelH * w.KernelW, cout = channels * multiplier;
        Check(x.Length, y.Length, weight.Length, batch, channels, plane, cout, outPlane, kk);
        for (int b = 0; b < batch; b++)
            for (int c = c0; c < c0 + count; c++)
            {
                var src = x.Slice((b * channels + c) * plane, plane);
                for (int m = 0; m < multiplier; m++)
                {
                    int co = c * multiplier + m;
                    var dst = y.Slice((b * cout + co) * outPlane, outPlane);
                    dst.Fill(bias.IsEmpty ? 0f : bias[co]);
                    var wt = weight.Slice(co * kk, kk);
                    for (int ki = 0; ki < w.KernelH; ki++)
                        for (int kj = 0; kj < w.KernelW; kj++)
                        {
                            float wv = wt[ki * w.KernelW + kj];
                            var (lo, hi) = UnfoldKernel.ValidRange(ow, width, w.StrideW, w.PadW, kj);
                            if (hi <= lo) continue;
                            int col0 = lo * w.StrideW - w.PadW + kj;
                            for (int i = 0; i < oh; i++)
                            {
                                int ih = i * w.StrideH - w.PadH + ki;
                                if ((uint)ih >= (uint)height) continue;
                                var row = src.Slice(ih * width, width);
                                var d = dst.Slice(i * ow + lo, hi - lo);
                                if (w.StrideW == 1) TensorPrimitives.MultiplyAdd(row.Slice(col0, hi - lo), wv, d, d);
                                else for (int j = 0, iw = col0; j < d.Length; j++, iw += w.StrideW) d[j] += wv * row[iw];
                            }
                        }
                }
            }
    }

    /// <summary>
    /// Backward for input channels [c0, c0 + count): accumulates dx [B, C, H, W] and dweight [C·M, kh, kw] (either may be
    /// empty) from dy [B, C·M, OH, OW].
    /// </summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int batch, int channels, int height, int width, int multiplier,
        ReadOnlySpan<float> weight, Window2d w, int c0, int count, Span<float> dx, Span<float> dweight)
    {
        int oh = w.OutH(height), ow = w.OutW(width), plane = height * width, outPlane = oh * ow, kk = w.KernelH * w.KernelW, cout = channels * multiplier;
        Check(x.Length, dy.Length, weight.Length, batch, channels, plane, cout, outPlane, kk);
        for (int b = 0; b < batch; b++)
            for (int c = c0; c < c0 + count; c++)
            {
                var src = x.Slice((b * channels + c) * plane, plane);
                var dsrc = dx.IsEmpty ? default : dx.Slice((b * channels + c) * plane, plane);
                for (int m = 0; m < multiplier; m++)
                {
                    int co = c * multiplier + m;
                    var g = dy.Slice((b * cout + co) * outPlane, outPlane);
                    for (int ki = 0; ki < w.KernelH; ki++)
                        for (int kj = 0; kj < w.KernelW; kj++)
                        {
                            int k = co * kk + ki * w.KernelW + kj;
                            float wv = weight[k];
                            var (lo, hi) = UnfoldKernel.ValidRange(ow, width, w.StrideW, w.PadW, kj);
                            if (hi <= lo) continue;
                            int col0 = lo * w.StrideW - w.PadW + kj;
                            double dw = 0;
                            for (int i = 0; i < oh; i++)
                            {
                                int ih = i * w.StrideH - w.PadH + ki;
                                if ((uint)ih >= (uint)height) continue;
                                var gs = g.Slice(i * ow + lo, hi - lo);
                                if (w.StrideW == 1)
                                {
                                    if (!dweight.IsEmpty) dw += TensorPrimitives.Dot(gs, src.Slice(ih * width + col0, hi - lo));
                                    if (!dsrc.IsEmpty) { var d = dsrc.Slice(ih * width + col0, hi - lo); TensorPrimitives.MultiplyAdd(gs, wv, d, d); }
                                }
                                else
                                    for (int j = 0, iw = ih * width + col0; j < gs.Length; j++, iw += w.StrideW)
                                    {
                                        if (!dweight.IsEmpty) dw += gs[j] * src[iw];
                                        if (!dsrc.IsEmpty) dsrc[iw] += wv * gs[j];
                                    }
                            }
                            if (!dweight.IsEmpty) dweight[k] += (float)dw;
                        }
                }
            }
    }

    private static void Check(int xLength, int yLength, int wLength, int batch, int channels, int plane, int cout, int outPlane, int kk)
    {
        if (xLength < (long)batch * channels * plane) throw new ArgumentException("input span too short for the given shape");
        if (yLength < (long)batch * cout * outPlane) throw new ArgumentException("output span too short for the given shape");
        if (wLength < (long)cout * kk) throw new ArgumentException("weight span too short for the given shape");
    }
}
