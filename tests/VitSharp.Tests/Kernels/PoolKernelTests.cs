using VitSharp.Kernels;
using static VitSharp.Tests.Kernels.SpatialReference;

namespace VitSharp.Tests.Kernels;

/// <summary>MaxPoolKernel and AdaptiveAvgPoolKernel against naive twins.</summary>
public class PoolKernelTests
{
    public static TheoryData<int, int, int, int, int, int, int, int, int> MaxGeometries() => new()
    {
        // planes, H, W, kh, kw, stride h/w, pad h/w
        { 2, 7, 7, 3, 3, 2, 2, 1, 1 },   // ResNet's stem pooling on an odd image
        { 3, 8, 6, 2, 2, 2, 2, 0, 0 },
        { 1, 9, 5, 3, 2, 1, 1, 1, 1 },
        { 4, 5, 11, 5, 3, 3, 2, 2, 0 },
        { 1, 1, 1, 1, 1, 1, 1, 0, 0 },
    };

    [Theory, MemberData(nameof(MaxGeometries))]
    public void MaxPoolForwardAndBackwardMatchReference(int planes, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        var win = Win(kh, kw, sh, sw, ph, pw);
        // Values with deliberate ties (rounded to a coarse grid) so that the first-maximum rule is exercised.
        var x = TestData.Uniform(planes * 31 + h, -2, 2, planes, h, w).Data.Select(v => MathF.Round(v * 2) / 2).ToArray();
        var (ry, arg) = MaxPool(x, planes, h, w, kh, kw, sh, sw, ph, pw);
        var y = new float[ry.Length];
        MaxPoolKernel.Forward(x, planes, h, w, win, y);
        TestData.AssertClose(ry, y, 0, 0, "max pool");
        var dy = TestData.Uniform(5, -1, 1, ry.Length).Data;
        var expected = Enumerable.Repeat(0.125, planes * h * w).ToArray();
        int outP = ry.Length / planes;
        for (int i = 0; i < ry.Length; i++) expected[(i / outP) * h * w + arg[i]] += dy[i];
        var dx = Enumerable.Repeat(0.125f, planes * h * w).ToArray();
        MaxPoolKernel.Backward(dy, x, planes, h, w, win, dx);
        TestData.AssertClose(expected, dx, 1e-6, 1e-6, "max pool backward");
    }

    [Fact]
    public void MaxPoolTiesGoToTheFirstAndNaNPropagates()
    {
        var x = new float[] { 1, 3, 3, 0, /* row 2 */ 3, 2, float.NaN, 1 }; // 2×4, one 2×2 window per half
        var y = new float[2];
        MaxPoolKernel.Forward(x, 1, 2, 4, Window2d.Square(2, 2), y);
        Assert.Equal(3f, y[0]);
        Assert.True(float.IsNaN(y[1]));
        var dx = new float[8];
        MaxPoolKernel.Backward([1f, 10f], x, 1, 2, 4, Window2d.Square(2, 2), dx);
        Assert.Equal(new float[] { 0, 1, 0, 0, 0, 0, 10, 0 }, dx);
    }

    public static TheoryData<int, int, int, int, int> AdaptiveGeometries() => new()
    {
        { 2, 7, 7, 1, 1 },
        { 1, 5, 7, 3, 2 },   // overlapping bins
        { 3, 6, 9, 3, 3 },   // exact divisors
        { 1, 3, 2, 5, 4 },   // output larger than input: rows repeat
        { 2, 11, 13, 4, 5 },
    };

    [Theory, MemberData(nameof(AdaptiveGeometries))]
    public void AdaptiveAvgPoolMatchesReference(int planes, int h, int w, int oh, int ow)
    {
        var x = TestData.Uniform(h * 13 + w, -1, 1, planes, h, w).Data;
        var expected = AdaptiveAvg(x, planes, h, w, oh, ow);
        var y = new float[expected.Length];
        AdaptiveAvgPoolKernel.Forward(x, planes, h, w, oh, ow, y);
        TestData.AssertClose(expected, y, 1e-6, 1e-5, "adaptive avg pool");
        // Backward against the transpose of the forward map, built column by column from the reference.
        var dy = TestData.Uniform(9, -1, 1, expected.Length).Data;
        var dx = new float[x.Length];
        AdaptiveAvgPoolKernel.Backward(dy, planes, h, w, oh, ow, dx);
        var refDx = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            var e = new float[x.Length]; e[i] = 1;
            var col = AdaptiveAvg(e, planes, h, w, oh, ow);
            for (int o = 0; o < col.Length; o++) refDx[i] += col[o] * dy[o];
        }
        TestData.AssertClose(refDx, dx, 1e-6, 1e-5, "adaptive avg pool backward");
    }

    [Theory]
    [InlineData(5, 3, new[] { 0, 2, 1, 4, 3, 5 })]
    [InlineData(7, 1, new[] { 0, 7 })]
    [InlineData(2, 4, new[] { 0, 1, 0, 1, 1, 2, 1, 2 })]
    public void BinsArePyTorchs(int input, int output, int[] expected)
    {
        var got = Enumerable.Range(0, output).SelectMany(i => { var (s, e) = AdaptiveAvgPoolKernel.Bin(i, input, output); return new[] { s, e }; });
        Assert.Equal(expected, got);
    }
}
