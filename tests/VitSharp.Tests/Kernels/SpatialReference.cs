using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>
/// Naive double-precision twins of the spatial kernels, written straight from PyTorch's definitions (index arithmetic
/// per output element, no ranges or strides shared with the library code).
/// </summary>
internal static class SpatialReference
{
    public static int OutSize(int input, int kernel, int stride, int pad) => (input + 2 * pad - kernel) / stride + 1;

    /// <summary>torch unfold of x [B, C, H, W] → [B, C·kh·kw, OH·OW].</summary>
    public static double[] Unfold(float[] x, int b, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        int oh = OutSize(h, kh, sh, ph), ow = OutSize(w, kw, sw, pw), l = oh * ow, k = c * kh * kw;
        var y = new double[b * k * l];
        for (int n = 0; n < b; n++)
            for (int ch = 0; ch < c; ch++)
                for (int ki = 0; ki < kh; ki++)
                    for (int kj = 0; kj < kw; kj++)
                        for (int i = 0; i < oh; i++)
                            for (int j = 0; j < ow; j++)
                            {
                                int r = ch * kh * kw + ki * kw + kj;
                                int yy = i * sh - ph + ki, xx = j * sw - pw + kj;
                                double v = yy >= 0 && yy < h && xx >= 0 && xx < w ? x[((n * c + ch) * h + yy) * w + xx] : 0;
                                y[(n * k + r) * l + i * ow + j] = v;
                            }
        return y;
    }

    /// <summary>torch fold of cols [B, C·kh·kw, OH·OW] → [B, C, H, W].</summary>
    public static double[] Fold(float[] cols, int b, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        int oh = OutSize(h, kh, sh, ph), ow = OutSize(w, kw, sw, pw), l = oh * ow, k = c * kh * kw;
        var y = new double[b * c * h * w];
        for (int n = 0; n < b; n++)
            for (int ch = 0; ch < c; ch++)
                for (int ki = 0; ki < kh; ki++)
                    for (int kj = 0; kj < kw; kj++)
                        for (int i = 0; i < oh; i++)
                            for (int j = 0; j < ow; j++)
                            {
                                int yy = i * sh - ph + ki, xx = j * sw - pw + kj;
                                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                                y[((n * c + ch) * h + yy) * w + xx] += cols[(n * k + ch * kh * kw + ki * kw + kj) * l + i * ow + j];
                            }
        return y;
    }

    /// <summary>Direct convolution: y[n, o, i, j] = bias[o] + Σ_{ci in group, ki, kj} w[o, ci, ki, kj]·x[n, g·Cin/G + ci, i·s − p + ki, j·s − p + kj].</summary>
    public static double[] Conv2d(float[] x, float[] wt, float[]? bias, int b, int cin, int h, int w, int cout, int kh, int kw,
        int sh, int sw, int ph, int pw, int groups)
    {
        int oh = OutSize(h, kh, sh, ph), ow = OutSize(w, kw, sw, pw), cg = cin / groups, og = cout / groups;
        var y = new double[b * cout * oh * ow];
        for (int n = 0; n < b; n++)
            for (int o = 0; o < cout; o++)
            {
                int g = o / og;
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++)
                    {
                        double s = bias is null ? 0 : bias[o];
                        for (int ci = 0; ci < cg; ci++)
                            for (int ki = 0; ki < kh; ki++)
                                for (int kj = 0; kj < kw; kj++)
                                {
                                    int yy = i * sh - ph + ki, xx = j * sw - pw + kj;
                                    if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                                    s += (double)wt[((o * cg + ci) * kh + ki) * kw + kj] * x[((n * cin + g * cg + ci) * h + yy) * w + xx];
                                }
                        y[((n * cout + o) * oh + i) * ow + j] = s;
                    }
            }
        return y;
    }

    /// <summary>max_pool2d: max over the clipped window; the first maximum in row-major order wins; returns values and arg-max indices within the plane.</summary>
    public static (double[] y, int[] arg) MaxPool(float[] x, int planes, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        int oh = OutSize(h, kh, sh, ph), ow = OutSize(w, kw, sw, pw);
        var y = new double[planes * oh * ow]; var arg = new int[planes * oh * ow];
        for (int p = 0; p < planes; p++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    double best = double.NegativeInfinity; int at = -1;
                    for (int ki = 0; ki < kh; ki++)
                        for (int kj = 0; kj < kw; kj++)
                        {
                            int yy = i * sh - ph + ki, xx = j * sw - pw + kj;
                            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                            double v = x[(p * h + yy) * w + xx];
                            if (at < 0 || v > best) { best = v; at = yy * w + xx; }
                        }
                    y[(p * oh + i) * ow + j] = best; arg[(p * oh + i) * ow + j] = at;
                }
        return (y, arg);
    }

    /// <summary>adaptive_avg_pool2d with bins [floor(i·In/Out), ceil((i+1)·In/Out)).</summary>
    public static double[] AdaptiveAvg(float[] x, int planes, int h, int w, int oh, int ow)
    {
        var y = new double[planes * oh * ow];
        for (int p = 0; p < planes; p++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    int h0 = (int)Math.Floor((double)i * h / oh), h1 = (int)Math.Ceiling((double)(i + 1) * h / oh);
                    int w0 = (int)Math.Floor((double)j * w / ow), w1 = (int)Math.Ceiling((double)(j + 1) * w / ow);
                    double s = 0;
                    for (int yy = h0; yy < h1; yy++) for (int xx = w0; xx < w1; xx++) s += x[(p * h + yy) * w + xx];
                    y[(p * oh + i) * ow + j] = s / ((h1 - h0) * (w1 - w0));
                }
        return y;
    }

    public static Window2d Win(int kh, int kw, int sh, int sw, int ph, int pw) => new(kh, kw, sh, sw, ph, pw);
}
