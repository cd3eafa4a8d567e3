using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// Batch normalisation over NCHW (or [B, C, S] with S = H·W): per channel c,
/// y = (x − mean[c]) · rstd[c] · weight[c] + bias[c], with the statistics either of the batch (training: mean and
/// biased variance over B·S values) or running ones (evaluation). The kernels work on a channel range
/// [c0, c0 + n) so that callers can split channels across threads; all spans are the full tensors.
/// </summary>
public static class BatchNormKernel
{
    /// <summary>Per-channel mean and biased variance over batch and space (two passes, sums in double).</summary>
    public static void Statistics(ReadOnlySpan<float> x, int batch, int channels, int spatial, int c0, int count,
        Span<float> mean, Span<float> variance)
    {
        double n = (double)batch * spatial;
        for (int c = c0; c < c0 + count; c++)
        {
            double s = 0;
            for (int b = 0; b < batch; b++) s += TensorPrimitives.Sum(x.Slice((b * channels + c) * spatial, spatial));
            float m = (float)(s / n);
            double v = 0;
            for (int b = 0; b < batch; b++)
            {
                var p = x.Slice((b * channels + c) * spatial, spatial);
                for (int i = 0; i < p.Length; i++) { float d = p[i] - m; v += d * d; }
            }
            mean[c] = m;
            variance[c] = (float)(v / n);
        }
    }

    /// <summary>y = (x − mean)·rstd·weight + bias per channel (weight/bias empty = 1/0).</summary>
    public static void Forward(ReadOnlySpan<float> x, int batch, int channels, int spatial, int c0, int count,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> y)
    {
        for (int c = c0; c < c0 + count; c++)
        {
            float scale = rstd[c] * (weight.IsEmpty ? 1f : weight[c]);
            float shift = (bias.IsEmpty ? 0f : bias[c]) - mean[c] * scale;
            for (int b = 0; b < batch; b++)
            {
                int o = (b * channels + c) * spatial;
                var yo = y.Slice(o, spatial);
                TensorPrimitives.Multiply(x.Slice(o, spatial), scale, yo);
                TensorPrimitives.Add(yo, shift, yo);
            }
        }
    }

    /// <summary>
    /// Backward; accumulates into <paramref name="dx"/>, <paramref name="dweight"/> and <paramref name="dbias"/> (any may be
    /// empty). With <paramref name="batchStatistics"/> the mean and rstd are functions of x (training):
    /// dx = w·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)); otherwise they are constants (evaluation): dx = w·rstd·dy.
    /// dweight += Σ dy·x̂, dbias += Σ dy, with x̂ = (x − mean)·rstd.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int batch, int channels, int spatial, int c0, int count,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, ReadOnlySpan<float> weight, bool batchStatistics,
        Span<float> dx, Span<float> dweight, Span<float> dbias)
    {
        double n = (double)batch * spatial;
        for (int c = c0; c < c0 + count; c++)
        {
            float m = mean[c], s = rstd[c], w = weight.IsEmpty ? 1f : weight[c];
            // Σ dy and Σ dy·(x − mean), in double.
            double sumDy = 0, sumDyXc = 0;
            for (int b = 0; b < batch; b++)
            {
                int o = (b * channels + c) * spatial;
                var g = dy.Slice(o, spatial); var xs = x.Slice(o, spatial);
                sumDy += TensorPrimitives.Sum(g);
                for (int i = 0; i < spatial; i++) sumDyXc += g[i] * (xs[i] - m);
            }
            if (!dbias.IsEmpty) dbias[c] += (float)sumDy;
            if (!dweight.IsEmpty) dweight[c] += (float)(sumDyXc * s);
            if (dx.IsEmpty) continue;
            float k = w * s;
            if (!batchStatistics)
            {
                for (int b = 0; b < batch; b++)
                {
                    int o = (b * channels + c) * spatial;
                    TensorPrimitives.MultiplyAdd(dy.Slice(o, spatial), k, dx.Slice(o, spatial), dx.Slice(o, spatial));
                }
                continue;
            }
            // dx = k·(dy − mean(dy) − (x − m)·s²·mean(dy·(x − m))).
            float meanDy = (float)(sumDy / n);
            float proj = (float)(sumDyXc / n) * s * s;
            for (int b = 0; b < batch; b++)
            {
                int o = (b * channels + c) * spatial;
                var g = dy.Slice(o, spatial); var xs = x.Slice(o, spatial); var d = dx.Slice(o, spatial);
                for (int i = 0; i < spatial; i++) d[i] += k * (g[i] - meanDy - proj * (xs[i] - m));
            }
        }
    }
}
