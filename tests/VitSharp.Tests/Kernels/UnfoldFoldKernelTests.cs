using VitSharp.Kernels;
using static VitSharp.Tests.Kernels.SpatialReference;

namespace VitSharp.Tests.Kernels;

/// <summary>UnfoldKernel (im2col) and FoldKernel (col2im) against naive twins, over odd sizes, strides and paddings.</summary>
public class UnfoldFoldKernelTests
{
    // (C, H, W, kh, kw, sh, sw, ph, pw)
    public static TheoryData<int, int, int, int, int, int, int, int, int> Geometries() => new()
    {
        { 1, 5, 5, 3, 3, 1, 1, 0, 0 },
        { 2, 7, 5, 3, 3, 2, 2, 1, 1 },
        { 3, 9, 11, 3, 5, 1, 2, 1, 2 },
        { 2, 8, 8, 4, 4, 4, 4, 0, 0 },   // a patch embedding (kernel = stride)
        { 3, 13, 7, 7, 3, 4, 2, 3, 1 },
        { 1, 6, 9, 1, 1, 1, 1, 0, 0 },   // pointwise
        { 2, 4, 4, 3, 3, 3, 1, 2, 0 },   // padding beyond half the kernel
        { 1, 3, 3, 3, 3, 1, 1, 4, 4 },   // windows lying wholly in the padding
        { 2, 10, 10, 2, 3, 3, 3, 0, 1 },
    };

    [Theory, MemberData(nameof(Geometries))]
    public void UnfoldMatchesReference(int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        var win = Win(kh, kw, sh, sw, ph, pw);
        var x = TestData.Uniform(c * 100 + h, -1, 1, c, h, w).Data;
        int l = win.OutH(h) * win.OutW(w), k = c * kh * kw;
        Assert.Equal(OutSize(h, kh, sh, ph) * OutSize(w, kw, sw, pw), l);
        var cols = Enumerable.Repeat(float.NaN, k * l).ToArray(); // every entry must be written
        UnfoldKernel.Forward(x, c, h, w, win, cols, l);
        TestData.AssertClose(Unfold(x, 1, c, h, w, kh, kw, sh, sw, ph, pw), cols, 0, 0, "unfold");
    }

    [Theory, MemberData(nameof(Geometries))]
    public void SideBySideLayoutWritesOnlyItsColumns(int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        // Two images into one [K, 2·L + 3] matrix: image 1 starts at column L + 1; the spare columns stay untouched.
        var win = Win(kh, kw, sh, sw, ph, pw);
        int l = win.OutH(h) * win.OutW(w), k = c * kh * kw, ld = 2 * l + 3;
        var x0 = TestData.Uniform(1, -1, 1, c, h, w).Data; var x1 = TestData.Uniform(2, -1, 1, c, h, w).Data;
        var cols = Enumerable.Repeat(7f, k * ld).ToArray();
        UnfoldKernel.Forward(x0, c, h, w, win, cols, ld);
        UnfoldKernel.Forward(x1, c, h, w, win, cols.AsSpan(l + 1), ld);
        var r0 = Unfold(x0, 1, c, h, w, kh, kw, sh, sw, ph, pw); var r1 = Unfold(x1, 1, c, h, w, kh, kw, sh, sw, ph, pw);
        for (int r = 0; r < k; r++)
        {
            for (int j = 0; j < l; j++)
            {
                Assert.Equal(r0[r * l + j], cols[r * ld + j]);
                Assert.Equal(r1[r * l + j], cols[r * ld + l + 1 + j]);
            }
            Assert.Equal(7f, cols[r * ld + l]);
            Assert.Equal(7f, cols[r * ld + 2 * l + 1]);
            Assert.Equal(7f, cols[r * ld + 2 * l + 2]);
        }
    }

    [Theory, MemberData(nameof(Geometries))]
    public void FoldMatchesReferenceAndUnfoldBackwardAccumulates(int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        var win = Win(kh, kw, sh, sw, ph, pw);
        int l = win.OutH(h) * win.OutW(w), k = c * kh * kw;
        var cols = TestData.Uniform(c + 7 * h, -1, 1, k, l).Data;
        var expected = Fold(cols, 1, c, h, w, kh, kw, sh, sw, ph, pw);
        var y = Enumerable.Repeat(float.NaN, c * h * w).ToArray();
        FoldKernel.Forward(cols, l, c, h, w, win, y);
        TestData.AssertClose(expected, y, 1e-6, 1e-6, "fold");
        // Unfold's backward is the same col2im but accumulates into dx.
        var dx = Enumerable.Repeat(0.5f, c * h * w).ToArray();
        UnfoldKernel.Backward(cols, l, c, h, w, win, dx);
        TestData.AssertClose(expected.Select(v => v + 0.5).ToArray(), dx, 1e-6, 1e-6, "unfold backward");
    }

    [Theory, MemberData(nameof(Geometries))]
    public void FoldBackwardAccumulatesUnfold(int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
    {
        var win = Win(kh, kw, sh, sw, ph, pw);
        int l = win.OutH(h) * win.OutW(w), k = c * kh * kw;
        var dy = TestData.Uniform(3 * c + h, -1, 1, c, h, w).Data;
        var dcols = Enumerable.Repeat(-0.25f, k * l).ToArray();
        FoldKernel.Backward(dy, c, h, w, win, dcols, l);
        var expected = Unfold(dy, 1, c, h, w, kh, kw, sh, sw, ph, pw).Select(v => v - 0.25).ToArray();
        TestData.AssertClose(expected, dcols, 1e-7, 0, "fold backward");
    }

    [Theory]
    [InlineData(5, 3, 1, 0, 3)]
    [InlineData(5, 3, 2, 1, 3)]
    [InlineData(4, 3, 3, 2, 2)]
    [InlineData(2, 5, 1, 0, 0)]
    [InlineData(2, 5, 1, 1, 0)]
    [InlineData(2, 5, 1, 2, 2)]
    public void OutputExtentIsPyTorchs(int input, int kernel, int stride, int pad, int expected)
    {
        Assert.Equal(expected, Window2d.Square(kernel, stride, pad).OutH(input));
        Assert.Equal(expected, Window2d.Square(kernel, stride, pad).OutW(input));
    }

    [Fact]
    public void ShortSpansThrow()
    {
        var win = Window2d.Square(3);
        Assert.Throws<ArgumentException>(() => UnfoldKernel.Forward(new float[24], 1, 5, 5, win, new float[81], 9));
        Assert.Throws<ArgumentException>(() => UnfoldKernel.Forward(new float[25], 1, 5, 5, win, new float[80], 9));
        Assert.Throws<ArgumentException>(() => UnfoldKernel.Forward(new float[25], 1, 5, 5, win, new float[81], 8));
    }
}
