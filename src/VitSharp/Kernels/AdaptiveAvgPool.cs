using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// Adaptive average pooling over planes [P, H, W] → [P, OH, OW] as <c>torch.nn.functional.adaptive_avg_pool2d</c>:
/// output row i averages input rows [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉), and likewise for columns (bins may overlap when the
/// output is not a divisor of the input, and repeat rows when it is larger).
/// </summary>
public static class AdaptiveAvgPoolKernel
{
    /// <summary>The input range [start, end) of output bin <paramref name="i"/> of <paramref name="outSize"/> over <paramref name="inSize"/>.</summary>
    public static (int Start, int End) Bin(int i, int inSize, int outSize) =>
        ((int)((long)i * inSize / outSize), (int)(((long)(i + 1) * inSize + outSize - 1) / outSize));

    /// <summary>Writes y [P, OH, OW].</summary>
    public static void Forward(ReadOnlySpan<float> x, int planes, int height, int width, int outH, int outW, Span<float> y)
    {
        Check(x.Length, y.Length, planes, height, width, outH, outW);
        for (int p = 0; p < planes; p++)
        {
            var plane = x.Slice(p * height * width, height * width);
            var dst = y.Slice(p * outH * outW, outH * outW);
            if (outH == 1 && outW == 1) { dst[0] = TensorPrimitives.Sum(plane) / (height * width); continue; }
            for (int i = 0; i < outH; i++)
            {
                var (h0, h1) = Bin(i, height, outH);
                for (int j = 0; j < outW; j++)
                {
                    var (w0, w1) = Bin(j, width, outW);
                    float s = 0;
                    for (int r = h0; r < h1; r++) s += TensorPrimitives.Sum(plane.Slice(r * width + w0, w1 - w0));
                    dst[i * outW + j] = s / ((h1 - h0) * (w1 - w0));
                }
            }
        }
    }

    /// <summary>dx [P, H, W] += dy spread evenly over each bin.</summary>
    public static void Backward(ReadOnlySpan<float> dy, int planes, int height, int width, int outH, int outW, Span<float> dx)
    {
        Check(dx.Length, dy.Length, planes, height, width, outH, outW);
        for (int p = 0; p < planes; p++)
        {
            var plane = dx.Slice(p * height * width, height * width);
            var g = dy.Slice(p * outH * outW, outH * outW);
            for (int i = 0; i < outH; i++)
            {
                var (h0, h1) = Bin(i, height, outH);
                for (int j = 0; j < outW; j++)
                {
                    var (w0, w1) = Bin(j, width, outW);
                    float v = g[i * outW + j] / ((h1 - h0) * (w1 - w0));
                    for (int r = h0; r < h1; r++)
                    {
                        var row = plane.Slice(r * width + w0, w1 - w0);
                        TensorPrimitives.Add(row, v, row);
                    }
                }
            }
        }
    }

    private static void Check(int xLength, int yLength, int planes, int height, int width, int outH, int outW)
    {
        if (outH < 1 || outW < 1) throw new ArgumentException($"adaptive_avg_pool2d: output size {outH}×{outW} must be positive");
        if (xLength < (long)planes * height * width) throw new ArgumentException("input span too short for the given shape");
        if (yLength < (long)planes * outH * outW) throw new ArgumentException("output span too short for the given shape");
    }
}
