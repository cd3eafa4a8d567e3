using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>The head-mixing kernel (talking heads, re-attention) against a naive double twin, over odd shapes.</summary>
public class MixHeadsKernelTests
{
    /// <summary>y[b, g, r] = Σ_h x[b, h, r]·w[h, g], in double.</summary>
    internal static double[] NaiveForward(float[] x, float[] w, int batch, int heads, int outHeads, int rest)
    {
        var y = new double[batch * outHeads * rest];
        for (int b = 0; b < batch; b++)
            for (int g = 0; g < outHeads; g++)
                for (int r = 0; r < rest; r++)
                {
                    double s = 0;
                    for (int h = 0; h < heads; h++) s += (double)x[(b * heads + h) * rest + r] * w[h * outHeads + g];
                    y[(b * outHeads + g) * rest + r] = s;
                }
        return y;
    }

    private static float[] Rand(int seed, int n) => TestData.Uniform(seed, -1, 1, n).Data;

    [Theory]
    [InlineData(1, 1, 1, 1)] [InlineData(2, 3, 3, 5)] [InlineData(3, 4, 4, 17 * 17)] [InlineData(1, 5, 2, 7)]
    [InlineData(4, 2, 6, 33)] [InlineData(2, 7, 7, 1)] [InlineData(5, 4, 4, 65)]
    public void ForwardMatchesNaive(int batch, int heads, int outHeads, int rest)
    {
        var x = Rand(1, batch * heads * rest);
        var w = Rand(2, heads * outHeads);
        var y = Enumerable.Repeat(float.NaN, batch * outHeads * rest).ToArray(); // overwritten, never read
        MixHeadsKernel.Forward(x, w, batch, heads, outHeads, rest, y);
        TestData.AssertClose(NaiveForward(x, w, batch, heads, outHeads, rest), y, 1e-5, 1e-5, "mix heads");
    }

    [Theory]
    [InlineData(1, 1, 1, 1)] [InlineData(2, 3, 3, 5)] [InlineData(3, 4, 4, 17 * 17)] [InlineData(1, 5, 2, 7)] [InlineData(4, 2, 6, 33)]
    public void BackwardAccumulatesTheNaiveGradients(int batch, int heads, int outHeads, int rest)
    {
        var x = Rand(3, batch * heads * rest);
        var w = Rand(4, heads * outHeads);
        var dy = Rand(5, batch * outHeads * rest);
        var dx0 = Rand(6, x.Length);
        var dw0 = Rand(7, w.Length);
        var dx = (float[])dx0.Clone();
        var dw = (float[])dw0.Clone();
        MixHeadsKernel.Backward(dy, x, w, batch, heads, outHeads, rest, dx, dw);

        var ex = new double[x.Length];
        var ew = new double[w.Length];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int g = 0; g < outHeads; g++)
                    for (int r = 0; r < rest; r++)
                    {
                        double gy = dy[(b * outHeads + g) * rest + r];
                        ex[(b * heads + h) * rest + r] += w[h * outHeads + g] * gy;
                        ew[h * outHeads + g] += x[(b * heads + h) * rest + r] * gy;
                    }
        for (int i = 0; i < ex.Length; i++) ex[i] += dx0[i];
        for (int i = 0; i < ew.Length; i++) ew[i] += dw0[i];
        TestData.AssertClose(ex, dx, 1e-5, 1e-5, "dx (accumulated)");
        TestData.AssertClose(ew, dw, 1e-4, 1e-5, "dw (accumulated)");

        // Empty spans skip a gradient and leave the other one as computed.
        var dwOnly = (float[])dw0.Clone();
        MixHeadsKernel.Backward(dy, x, w, batch, heads, outHeads, rest, Span<float>.Empty, dwOnly);
        Assert.Equal(dw, dwOnly);
    }

    [Fact]
    public void RejectsShortSpans()
    {
        Assert.Throws<ArgumentException>(() => MixHeadsKernel.Forward(new float[11], new float[4], 2, 2, 2, 3, new float[12]));
        Assert.Throws<ArgumentException>(() => MixHeadsKernel.Forward(new float[12], new float[3], 2, 2, 2, 3, new float[12]));
        Assert.Throws<ArgumentException>(() => MixHeadsKernel.Backward(new float[12], new float[12], new float[4], 2, 2, 2, 3, new float[11], new float[4]));
    }
}
