using VitSharp.Kernels;
using VitSharp.Tests.Kernels;

namespace VitSharp.Tests.Autograd;

/// <summary>
/// F.Unfold, F.Fold, F.Conv2d, F.BatchNorm, F.MaxPool2d and F.AdaptiveAvgPool2d: forward against the naive twins and
/// gradients against finite differences, over odd sizes, strides, paddings and groups.
/// </summary>
public class SpatialGradTests
{
    /// <summary>Runs <paramref name="body"/> with convolutions blocked as given (1 = one image per GEMM, 0 = default, large = whole batch).</summary>
    private static void WithConvBlock(int columns, Action body, bool depthwiseViaGemm = false)
    {
        int old = F.ConvTargetColumnsOverride;
        bool oldDw = F.DepthwiseViaGemm;
        F.ConvTargetColumnsOverride = columns;
        F.DepthwiseViaGemm = depthwiseViaGemm;
        try { body(); } finally { F.ConvTargetColumnsOverride = old; F.DepthwiseViaGemm = oldDw; }
    }

    public static TheoryData<int, int, int, int, int, int, int> UnfoldCases() => new()
    {
        // B, C, H, W, kernel, stride, padding
        { 2, 2, 5, 5, 3, 1, 1 },
        { 1, 3, 7, 6, 3, 2, 1 },
        { 2, 1, 8, 8, 4, 4, 0 },
        { 1, 2, 9, 7, 5, 3, 2 },
    };

    [Theory, MemberData(nameof(UnfoldCases))]
    public void UnfoldForwardAndGradient(int b, int c, int h, int w, int k, int s, int p)
    {
        var x = TestData.Uniform(b * 7 + h, -1, 1, b, c, h, w);
        var y = F.Unfold(x, k, s, p);
        int oh = SpatialReference.OutSize(h, k, s, p), ow = SpatialReference.OutSize(w, k, s, p);
        Assert.Equal(new[] { b, c * k * k, oh * ow }, y.Shape);
        TestData.AssertClose(SpatialReference.Unfold(x.Data, b, c, h, w, k, k, s, s, p, p), y.Data, 0, 0, "unfold");
        // ·weights after the op so that every output position carries a distinct factor.
        var m = TestData.Uniform(3, -1, 1, y.Shape);
        GradCheck.Verify(t => F.Unfold(t[0], k, s, p) * t[1], [x, m], wrt: [true, false]);
    }

    [Theory, MemberData(nameof(UnfoldCases))]
    public void FoldForwardAndGradient(int b, int c, int h, int w, int k, int s, int p)
    {
        int oh = SpatialReference.OutSize(h, k, s, p), ow = SpatialReference.OutSize(w, k, s, p);
        var cols = TestData.Uniform(b * 5 + w, -1, 1, b, c * k * k, oh * ow);
        var y = F.Fold(cols, (h, w), k, s, p);
        Assert.Equal(new[] { b, c, h, w }, y.Shape);
        TestData.AssertClose(SpatialReference.Fold(cols.Data, b, c, h, w, k, k, s, s, p, p), y.Data, 1e-6, 1e-6, "fold");
        var m = TestData.Uniform(4, -1, 1, y.Shape);
        GradCheck.Verify(t => F.Fold(t[0], (h, w), k, s, p) * t[1], [cols, m], wrt: [true, false]);
    }

    [Fact]
    public void FoldOfUnfoldCountsWindowsPerPixel()
    {
        // fold(unfold(1)) = how many windows cover each pixel: for k3 s1 p1 on 4×4, 4 at corners, 6 on edges, 9 inside.
        var ones = Tensor.Ones(1, 1, 4, 4);
        var y = F.Fold(F.Unfold(ones, 3, 1, 1), (4, 4), 3, 1, 1);
        Assert.Equal(new float[] { 4, 6, 6, 4, 6, 9, 9, 6, 6, 9, 9, 6, 4, 6, 6, 4 }, y.Data);
    }

    [Fact]
    public void FoldRejectsAColumnCountThatDoesNotFit()
    {
        var ex = Assert.Throws<ArgumentException>(() => F.Fold(Tensor.Zeros(1, 9, 10), (4, 4), 3, 1, 1));
        Assert.Contains("16", ex.Message);
        Assert.Throws<ArgumentException>(() => F.Fold(Tensor.Zeros(1, 8, 16), (4, 4), 3, 1, 1));
    }

    public static TheoryData<int, int, int, int, int, int, int, int, int, bool> ConvCases() => new()
    {
        // B, Cin, H, W, Cout, kernel, stride, padding, groups, bias
        { 2, 3, 7, 7, 4, 3, 1, 1, 1, true },
        { 3, 2, 9, 7, 3, 3, 2, 1, 1, false },
        { 2, 4, 6, 5, 6, 3, 1, 0, 2, true },     // grouped
        { 2, 3, 7, 7, 3, 3, 2, 1, 3, true },     // depthwise
        { 1, 2, 5, 5, 4, 3, 1, 1, 2, false },    // grouped, 2 outputs per group
        { 2, 2, 8, 8, 5, 4, 4, 0, 1, true },     // patch embedding (kernel = stride)
        { 3, 3, 5, 7, 4, 1, 1, 0, 1, true },     // pointwise
        { 2, 4, 5, 5, 4, 1, 2, 0, 4, false },    // strided pointwise depthwise
        { 1, 1, 11, 9, 2, 5, 3, 2, 1, true },
        { 2, 2, 3, 3, 2, 3, 1, 2, 1, true },     // padding beyond half the kernel
        { 2, 6, 9, 9, 12, 3, 2, 1, 6, true },    // depthwise with 2 outputs per channel (PiT's pooling)
        { 1, 3, 6, 7, 3, 2, 1, 0, 3, false },    // depthwise, even kernel
    };

    public static TheoryData<int> Blocks() => new() { 1, 0, 1 << 20 };

    [Theory, MemberData(nameof(ConvCases))]
    public void ConvForwardMatchesDirectConvolutionForEveryBlocking(int b, int cin, int h, int w, int cout, int k, int s, int p, int groups, bool bias)
    {
        var x = TestData.Uniform(b + cin + h, -1, 1, b, cin, h, w);
        var wt = TestData.Uniform(cout + k, -1, 1, cout, cin / groups, k, k);
        var bt = bias ? TestData.Uniform(9, -1, 1, cout) : null;
        var expected = SpatialReference.Conv2d(x.Data, wt.Data, bt?.Data, b, cin, h, w, cout, k, k, s, s, p, p, groups);
        int l = SpatialReference.OutSize(h, k, s, p) * SpatialReference.OutSize(w, k, s, p);
        // One image per block, the default, two images per block (the last block shorter when B is odd), all at once.
        // Depthwise convolutions have their own kernel; the GEMM path must agree too.
        foreach (bool viaGemm in groups == cin && groups > 1 ? new[] { false, true } : new[] { false })
            foreach (int cols in new[] { 1, 0, 2 * l, 1 << 20 })
                WithConvBlock(cols, () =>
                {
                    var y = F.Conv2d(x, wt, bt, s, p, groups);
                    Assert.Equal(new[] { b, cout, SpatialReference.OutSize(h, k, s, p), SpatialReference.OutSize(w, k, s, p) }, y.Shape);
                    TestData.AssertClose(expected, y.Data, 1e-5, 1e-5, $"conv2d (block columns {cols}, depthwise via GEMM {viaGemm})");
                }, viaGemm);
    }

    [Theory, MemberData(nameof(ConvCases))]
    public void ConvGradientsOfInputWeightAndBias(int b, int cin, int h, int w, int cout, int k, int s, int p, int groups, bool bias)
    {
        var x = TestData.Uniform(2 * b + cin + h, -1, 1, b, cin, h, w);
        var wt = TestData.Uniform(cout + 2 * k, -1, 1, cout, cin / groups, k, k);
        Tensor[] inputs = bias ? [x, wt, TestData.Uniform(9, -1, 1, cout)] : [x, wt];
        foreach (bool viaGemm in groups == cin && groups > 1 ? new[] { false, true } : new[] { false })
            foreach (int cols in new[] { 1, 1 << 20 })
                WithConvBlock(cols, () => GradCheck.Verify(t => F.Conv2d(t[0], t[1], t.Length > 2 ? t[2] : null, s, p, groups), inputs), viaGemm);
    }

    [Fact]
    public void ConvGradientOfTheWeightAloneAndOfTheInputAlone()
    {
        var x = TestData.Uniform(1, -1, 1, 2, 2, 6, 5);
        var wt = TestData.Uniform(2, -1, 1, 3, 2, 3, 3);
        GradCheck.Verify(t => F.Conv2d(t[0], t[1], null, 2, 1), [x, wt], wrt: [false, true]);
        GradCheck.Verify(t => F.Conv2d(t[0], t[1], null, 2, 1), [x, wt], wrt: [true, false]);
    }

    [Fact]
    public void ConvRectangularKernelStrideAndPadding()
    {
        var x = TestData.Uniform(3, -1, 1, 2, 3, 7, 8);
        var wt = TestData.Uniform(4, -1, 1, 2, 3, 3, 2);
        var bt = TestData.Uniform(5, -1, 1, 2);
        var y = F.Conv2d(x, wt, bt, (2, 1), (1, 0));
        var expected = SpatialReference.Conv2d(x.Data, wt.Data, bt.Data, 2, 3, 7, 8, 2, 3, 2, 2, 1, 1, 0, 1);
        Assert.Equal(new[] { 2, 2, 4, 7 }, y.Shape);
        TestData.AssertClose(expected, y.Data, 1e-5, 1e-5, "rectangular conv");
        GradCheck.Verify(t => F.Conv2d(t[0], t[1], t[2], (2, 1), (1, 0)), x, wt, bt);
    }

    [Fact]
    public void ConvWithALargeFeatureMapUsesOneImagePerGemm()
    {
        // 48×48 output positions exceed the default GEMM column target: the single-image path, forward and backward.
        var x = TestData.Uniform(1, -1, 1, 2, 1, 48, 48);
        var wt = TestData.Uniform(2, -1, 1, 2, 1, 3, 3);
        var bt = TestData.Uniform(3, -1, 1, 2);
        var expected = SpatialReference.Conv2d(x.Data, wt.Data, bt.Data, 2, 1, 48, 48, 2, 3, 3, 1, 1, 1, 1, 1);
        TestData.AssertClose(expected, F.Conv2d(x, wt, bt, 1, 1).Data, 1e-5, 1e-5, "large conv");
        GradCheck.Verify(t => F.Conv2d(t[0], t[1], t[2], 1, 1), [x, wt, bt], wrt: [false, true, true]);
    }

    [Fact]
    public void ConvRejectsBadConfigurations()
    {
        var x = Tensor.Zeros(1, 4, 5, 5);
        Assert.Contains("groups", Assert.Throws<ArgumentException>(() => F.Conv2d(x, Tensor.Zeros(3, 2, 3, 3), null, groups: 2)).Message);
        Assert.Contains("input channels", Assert.Throws<ArgumentException>(() => F.Conv2d(x, Tensor.Zeros(4, 3, 3, 3))).Message);
        Assert.Contains("does not fit", Assert.Throws<ArgumentException>(() => F.Conv2d(x, Tensor.Zeros(4, 4, 7, 7))).Message);
        Assert.Contains("bias", Assert.Throws<ArgumentException>(() => F.Conv2d(x, Tensor.Zeros(2, 4, 3, 3), Tensor.Zeros(3))).Message);
        Assert.Contains("stride", Assert.Throws<ArgumentException>(() => F.Conv2d(x, Tensor.Zeros(2, 4, 3, 3), null, stride: 0)).Message);
        Assert.Throws<ArgumentException>(() => F.Conv2d(Tensor.Zeros(4, 5, 5), Tensor.Zeros(2, 4, 3, 3)));
    }

    public static TheoryData<int, int, int, int> BnShapes() => new() { { 3, 2, 3, 5 }, { 2, 3, 1, 1 }, { 4, 1, 2, 3 }, { 1, 4, 3, 3 } };

    [Theory, MemberData(nameof(BnShapes))]
    public void BatchNormTrainingGradients(int b, int c, int h, int w)
    {
        var x = TestData.Uniform(b * 3 + c, -2, 2, b, c, h, w);
        var wt = TestData.Uniform(2, 0.5f, 1.5f, c);
        var bt = TestData.Uniform(3, -1, 1, c);
        var rm = Tensor.Zeros(c); var rv = Tensor.Ones(c);
        GradCheck.Verify(t => F.BatchNorm(t[0], rm, rv, t[1], t[2], training: true), x, wt, bt);
        GradCheck.Verify(t => F.BatchNorm(t[0], null, null, t[1], t[2], training: true), x, wt, bt);
        GradCheck.Verify(t => F.BatchNorm(t[0], null, null, null, null, training: false), x);
    }

    [Theory, MemberData(nameof(BnShapes))]
    public void BatchNormEvaluationGradients(int b, int c, int h, int w)
    {
        var x = TestData.Uniform(b * 5 + c, -2, 2, b, c, h, w);
        var wt = TestData.Uniform(2, 0.5f, 1.5f, c);
        var bt = TestData.Uniform(3, -1, 1, c);
        var rm = TestData.Uniform(4, -0.5f, 0.5f, c); var rv = TestData.Uniform(5, 0.5f, 2f, c);
        var before = (rm.Data.ToArray(), rv.Data.ToArray());
        GradCheck.Verify(t => F.BatchNorm(t[0], rm, rv, t[1], t[2], training: false), x, wt, bt);
        Assert.Equal(before.Item1, rm.Data);
        Assert.Equal(before.Item2, rv.Data);
        var y = F.BatchNorm(x, rm, rv, wt, bt, training: false);
        var expected = new double[x.Size];
        int s = h * w;
        for (int i = 0; i < x.Size; i++)
        {
            int ch = i / s % c;
            expected[i] = (x.Data[i] - rm.Data[ch]) / Math.Sqrt(rv.Data[ch] + 1e-5) * wt.Data[ch] + bt.Data[ch];
        }
        TestData.AssertClose(expected, y.Data, 1e-5, 1e-5, "eval batch norm");
    }

    [Fact]
    public void BatchNormTrainingUpdatesRunningStatisticsWithTheUnbiasedVariance()
    {
        var x = new Tensor([1, 2, 3, 4, /* c1 */ 0, 0, 0, 8, /* b1 c0 */ 5, 6, 7, 8, /* b1 c1 */ 8, 8, 8, 8], 2, 2, 2, 2);
        var rm = new Tensor([0.5f, -1f], 2); var rv = new Tensor([2f, 1f], 2);
        F.BatchNorm(x, rm, rv, null, null, training: true, momentum: 0.25f);
        // channel 0: values 1..8 → mean 4.5, unbiased var 6; channel 1: 0,0,0,8,8,8,8,8 → mean 5, unbiased var 120/7.
        TestData.AssertClose(new[] { 0.75 * 0.5 + 0.25 * 4.5, 0.75 * -1 + 0.25 * 5 }, rm.Data, 1e-6, 1e-6, "running mean");
        TestData.AssertClose(new[] { 0.75 * 2 + 0.25 * 6.0, 0.75 * 1 + 0.25 * 120.0 / 7 }, rv.Data, 1e-6, 1e-6, "running var");
        Assert.Throws<ArgumentException>(() => F.BatchNorm(Tensor.Ones(1, 2, 1, 1), null, null, null, null, training: true));
    }

    public static TheoryData<int, int, int, int, int, int, int> MaxPoolCases() => new()
    {
        // B, C, H, W, kernel, stride, padding
        { 2, 2, 7, 7, 3, 2, 1 },
        { 1, 3, 6, 5, 2, 2, 0 },
        { 2, 1, 9, 8, 3, 1, 1 },
        { 1, 2, 5, 7, 5, 2, 2 },
    };

    [Theory, MemberData(nameof(MaxPoolCases))]
    public void MaxPoolForwardAndGradient(int b, int c, int h, int w, int k, int s, int p)
    {
        // Distinct values at least 0.05 apart, so that the finite-difference steps never change a window's maximum.
        int n = b * c * h * w;
        var rng = new Random(n + k);
        var values = Enumerable.Range(0, n).Select(i => (i - n / 2) * 0.05f).OrderBy(_ => rng.Next()).ToArray();
        var x = new Tensor(values, b, c, h, w);
        var y = F.MaxPool2d(x, k, s, p);
        var (ry, _) = SpatialReference.MaxPool(x.Data, b * c, h, w, k, k, s, s, p, p);
        TestData.AssertClose(ry, y.Data, 0, 0, "max pool");
        GradCheck.Verify(t => F.MaxPool2d(t[0], k, s, p), [x], h: 1e-3);
    }

    [Fact]
    public void MaxPoolStrideDefaultsToTheKernelAndPaddingIsLimited()
    {
        Assert.Equal(new[] { 1, 1, 3, 2 }, F.MaxPool2d(Tensor.Zeros(1, 1, 7, 5), 2).Shape);
        Assert.Throws<ArgumentException>(() => F.MaxPool2d(Tensor.Zeros(1, 1, 7, 5), 3, 1, 2));
    }

    public static TheoryData<int, int, int, int, int, int> AdaptiveCases() => new()
    {
        { 2, 3, 7, 7, 1, 1 },
        { 1, 2, 5, 7, 3, 2 },
        { 2, 1, 3, 2, 5, 4 },
        { 1, 2, 9, 6, 4, 3 },
    };

    [Theory, MemberData(nameof(AdaptiveCases))]
    public void AdaptiveAvgPoolForwardAndGradient(int b, int c, int h, int w, int oh, int ow)
    {
        var x = TestData.Uniform(b * 11 + h, -1, 1, b, c, h, w);
        var y = F.AdaptiveAvgPool2d(x, oh, ow);
        Assert.Equal(new[] { b, c, oh, ow }, y.Shape);
        TestData.AssertClose(SpatialReference.AdaptiveAvg(x.Data, b * c, h, w, oh, ow), y.Data, 1e-6, 1e-5, "adaptive avg pool");
        var m = TestData.Uniform(4, -1, 1, y.Shape);
        GradCheck.Verify(t => F.AdaptiveAvgPool2d(t[0], oh, ow) * t[1], [x, m], wrt: [true, false]);
    }

    [Fact]
    public void ParallelChunksGiveTheSameResultsAsOneThread()
    {
        // Large enough that Parallel2 splits channels and planes across threads.
        var x = TestData.Uniform(1, -1, 1, 8, 16, 24, 24);
        var wt = TestData.Uniform(2, -1, 1, 16, 16, 3, 3);
        var y = F.Conv2d(x, wt, null, 1, 1);
        var expected = SpatialReference.Conv2d(x.Data, wt.Data, null, 8, 16, 24, 24, 16, 3, 3, 1, 1, 1, 1, 1);
        TestData.AssertClose(expected, y.Data, 1e-4, 1e-4, "parallel conv");
        var pooled = F.MaxPool2d(x, 3, 2, 1);
        TestData.AssertClose(SpatialReference.MaxPool(x.Data, 8 * 16, 24, 24, 3, 3, 2, 2, 1, 1).y, pooled.Data, 0, 0, "parallel max pool");
        var bn = F.BatchNorm(x, null, null, null, null, training: true);
        for (int c = 0; c < 16; c++)
        {
            double sum = 0, sq = 0;
            for (int b = 0; b < 8; b++) for (int i = 0; i < 576; i++) { double v = bn.Data[(b * 16 + c) * 576 + i]; sum += v; sq += v * v; }
            Assert.True(Math.Abs(sum / 4608) < 1e-5 && Math.Abs(sq / 4608 - 1) < 1e-3, $"channel {c}: mean {sum / 4608}, var {sq / 4608}");
        }
    }
}
