using VitSharp.Data;

namespace VitSharp.Tests.Data;

public class PilResampleTests
{
    private static readonly PilFilter[] Convolutions = [PilFilter.Box, PilFilter.Bilinear, PilFilter.Hamming, PilFilter.Bicubic, PilFilter.Lanczos];

    // ---- the reference twin: Pillow's formula evaluated directly, one output value at a time ------------------

    /// <summary>The filters written out from their definitions (Keys cubic with a = −0.5, sinc windows).</summary>
    private static double Kernel(PilFilter f, double x)
    {
        double ax = Math.Abs(x);
        switch (f)
        {
            case PilFilter.Box: return x > -0.5 && x <= 0.5 ? 1 : 0;
            case PilFilter.Bilinear: return ax < 1 ? 1 - ax : 0;
            case PilFilter.Bicubic:
                const double a = -0.5;
                return ax < 1 ? (a + 2) * ax * ax * ax - (a + 3) * ax * ax + 1
                    : ax < 2 ? a * ax * ax * ax - 5 * a * ax * ax + 8 * a * ax - 4 * a : 0;
            case PilFilter.Hamming:
                return ax == 0 ? 1 : ax >= 1 ? 0 : Math.Sin(Math.PI * ax) / (Math.PI * ax) * (0.54f + 0.46f * Math.Cos(Math.PI * ax));
            case PilFilter.Lanczos:
                return x >= -3 && x < 3 ? Sinc(x) * Sinc(x / 3) : 0;
            default: throw new ArgumentException(f.ToString());
        }
    }

    private static double Sinc(double x) => x == 0 ? 1 : Math.Sin(Math.PI * x) / (Math.PI * x);

    private static double SupportOf(PilFilter f) => f switch { PilFilter.Box => 0.5, PilFilter.Bicubic => 2, PilFilter.Lanczos => 3, _ => 1 };

    /// <summary>One output sample along a line: the taps of output index <paramref name="o"/>, in fixed point (Pillow) or in double.</summary>
    private static byte Sample(Func<int, byte> line, int inSize, int outSize, int o, PilFilter f, bool fixedPoint)
    {
        double scale = (double)inSize / outSize, fs = Math.Max(scale, 1), support = SupportOf(f) * fs;
        double center = (o + 0.5) * scale;
        int lo = Math.Max((int)(center - support + 0.5), 0), hi = Math.Min((int)(center + support + 0.5), inSize);
        var w = new double[hi - lo];
        double total = 0;
        for (int i = lo; i < hi; i++) total += w[i - lo] = Kernel(f, (i - center + 0.5) / fs);
        if (fixedPoint)
        {
            int sum = 1 << 21;
            for (int i = lo; i < hi; i++)
            {
                double k = w[i - lo] / total * (1 << 22);
                sum += line(i) * (int)(k < 0 ? k - 0.5 : k + 0.5);
            }
            return (byte)Math.Clamp(sum >> 22, 0, 255);
        }
        double v = 0;
        for (int i = lo; i < hi; i++) v += line(i) * w[i - lo] / total;
        return (byte)Math.Clamp(Math.Floor(v + 0.5), 0, 255);
    }

    /// <summary>Pillow's two passes (horizontal, then vertical, each rounded to bytes), each value computed on its own.</summary>
    private static byte[] Reference(byte[] src, int w, int h, int c, int ow, int oh, PilFilter f, bool fixedPoint = true)
    {
        byte[] mid = src;
        if (ow != w)
        {
            mid = new byte[ow * h * c];
            for (int y = 0; y < h; y++)
                for (int x = 0; x < ow; x++)
                    for (int k = 0; k < c; k++)
                    {
                        int yy = y, kk = k;
                        mid[(y * ow + x) * c + k] = Sample(i => src[(yy * w + i) * c + kk], w, ow, x, f, fixedPoint);
                    }
        }
        int mw = ow;
        if (oh == h) return mid;
        var dst = new byte[ow * oh * c];
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                for (int k = 0; k < c; k++)
                {
                    int xx = x, kk = k;
                    dst[(y * ow + x) * c + k] = Sample(i => mid[(i * mw + xx) * c + kk], h, oh, y, f, fixedPoint);
                }
        return dst;
    }

    private static byte[] RandomImage(int w, int h, int c, int seed)
    {
        var b = new byte[w * h * c];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static byte[] Run(byte[] src, int w, int h, int c, int ow, int oh, PilFilter f)
    {
        var dst = new byte[ow * oh * c];
        PilResample.Resize(src, w, h, c, ow, oh, f, dst);
        return dst;
    }

    public static TheoryData<PilFilter, int, int, int, int> Sizes()
    {
        var data = new TheoryData<PilFilter, int, int, int, int>();
        (int, int, int, int)[] sizes = [(17, 13, 5, 4), (17, 13, 40, 29), (9, 9, 9, 4), (9, 9, 4, 9), (23, 7, 11, 20), (50, 37, 17, 16), (3, 2, 1, 1), (1, 1, 6, 5), (64, 48, 32, 24), (30, 20, 29, 19)];
        foreach (var f in Convolutions)
            foreach (var (w, h, ow, oh) in sizes)
                data.Add(f, w, h, ow, oh);
        return data;
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void MatchesTheReferenceTwinExactly(PilFilter filter, int w, int h, int ow, int oh)
    {
        var src = RandomImage(w, h, 3, w * 1000 + h * 10 + ow + oh);
        Assert.Equal(Reference(src, w, h, 3, ow, oh, filter), Run(src, w, h, 3, ow, oh, filter));
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void FixedPointStaysWithinOneLevelOfExactArithmetic(PilFilter filter, int w, int h, int ow, int oh)
    {
        var src = RandomImage(w, h, 1, w + h + ow * oh);
        var exact = Reference(src, w, h, 1, ow, oh, filter, fixedPoint: false);
        var got = Run(src, w, h, 1, ow, oh, filter);
        for (int i = 0; i < got.Length; i++) Assert.InRange(got[i] - exact[i], -1, 1);
    }

    // ---- properties -------------------------------------------------------------------------------------------

    [Fact]
    public void EqualSizeIsTheIdentity()
    {
        var src = RandomImage(11, 7, 3, 1);
        foreach (var f in Enum.GetValues<PilFilter>())
            Assert.Equal(src, Run(src, 11, 7, 3, 11, 7, f));
    }

    [Fact]
    public void AConstantImageStaysConstant()
    {
        foreach (var f in Enum.GetValues<PilFilter>())
            foreach (byte v in new byte[] { 0, 1, 77, 128, 254, 255 })
                foreach (var (ow, oh) in new[] { (3, 2), (40, 31), (13, 50), (1, 1) })
                {
                    var src = Enumerable.Repeat(v, 13 * 9 * 3).ToArray();
                    Assert.All(Run(src, 13, 9, 3, ow, oh, f), b => Assert.Equal(v, b));
                }
    }

    [Fact]
    public void BoxHalvingOfA2xBlockPatternGivesTheOriginalBack()
    {
        var small = RandomImage(8, 6, 3, 2);
        var big = new byte[16 * 12 * 3];
        for (int y = 0; y < 12; y++)
            for (int x = 0; x < 16; x++)
                for (int k = 0; k < 3; k++)
                    big[(y * 16 + x) * 3 + k] = small[((y / 2) * 8 + x / 2) * 3 + k];
        Assert.Equal(small, Run(big, 16, 12, 3, 8, 6, PilFilter.Box));
        // Bilinear halving weighs 1/8, 3/8, 3/8, 1/8: on 2×-repeated pixels a constant region stays constant too.
        Assert.Equal(small[0], Run(Enumerable.Repeat(small[0], 16 * 12).ToArray(), 16, 12, 1, 8, 6, PilFilter.Bilinear)[0]);
    }

    [Fact]
    public void BoxHalvingAveragesPairsRoundingHalfUpPassByPass()
    {
        var src = RandomImage(10, 8, 1, 5);
        var got = Run(src, 10, 8, 1, 5, 4, PilFilter.Box);
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 5; x++)
            {
                int Row(int r) => (src[r * 10 + 2 * x] + src[r * 10 + 2 * x + 1] + 1) / 2;
                Assert.Equal((Row(2 * y) + Row(2 * y + 1) + 1) / 2, got[y * 5 + x]);
            }
    }

    [Fact]
    public void BilinearHalvingWeighsOneThreeThreeOne()
    {
        // One row, 8 → 4: output 1 uses pixels 1..4 with 1/8, 3/8, 3/8, 1/8; output 0 is clamped to pixels 0..2 (3/7, 3/7, 1/7).
        byte[] src = [0, 8, 16, 24, 32, 40, 48, 56];
        var got = Run(src, 8, 1, 1, 4, 1, PilFilter.Bilinear);
        Assert.Equal((byte)Math.Floor((8 * 1 + 16 * 3 + 24 * 3 + 32 * 1) / 8.0 + 0.5), got[1]);
        Assert.Equal((byte)Math.Floor((0 * 3 + 8 * 3 + 16 * 1) / 7.0 + 0.5), got[0]);
    }

    [Fact]
    public void ChannelsAreResampledIndependently()
    {
        var rgb = RandomImage(19, 14, 3, 9);
        foreach (var f in Enum.GetValues<PilFilter>())
        {
            var all = Run(rgb, 19, 14, 3, 8, 23, f);
            for (int k = 0; k < 3; k++)
            {
                var plane = Enumerable.Range(0, 19 * 14).Select(p => rgb[p * 3 + k]).ToArray();
                var one = Run(plane, 19, 14, 1, 8, 23, f);
                Assert.Equal(one, Enumerable.Range(0, 8 * 23).Select(p => all[p * 3 + k]).ToArray());
            }
        }
    }

    [Fact]
    public void NearestSamplesPixelCentres()
    {
        // 5 → 3: positions (d + ½) · 5/3 = 0.83, 2.5, 4.17 → 0, 2, 4. 2 → 5: (d + ½) · 0.4 → 0, 0, 1, 1, 1.
        byte[] row = [10, 11, 12, 13, 14];
        Assert.Equal(new byte[] { 10, 12, 14 }, Run(row, 5, 1, 1, 3, 1, PilFilter.Nearest));
        Assert.Equal(new byte[] { 10, 10, 11, 11, 11 }, Run([10, 11], 2, 1, 1, 5, 1, PilFilter.Nearest));
        var col = Run([1, 2, 3, 4], 1, 4, 1, 1, 2, PilFilter.Nearest);
        Assert.Equal(new byte[] { 2, 4 }, col);
    }

    [Fact]
    public void CoefficientsAreNormalisedAndPillowsBoundsAreUsed()
    {
        foreach (var f in Convolutions)
            foreach (var (inSize, outSize) in new[] { (500, 341), (375, 256), (7, 19), (10, 10) })
            {
                var (ksize, bounds, weights) = PilResample.Coefficients(inSize, outSize, f);
                for (int o = 0; o < outSize; o++)
                {
                    Assert.InRange(bounds[2 * o], 0, inSize - 1);
                    Assert.InRange(bounds[2 * o] + bounds[2 * o + 1], 1, inSize);
                    Assert.InRange(bounds[2 * o + 1], 1, ksize);
                    Assert.Equal(1.0, weights.AsSpan(o * ksize, ksize).ToArray().Sum(), 12);
                }
            }
        // 500 → 341 bilinear: scale 1.466…, support 1.466…, output 0 centred at 0.733 covers pixels 0..2.
        var (_, b, _) = PilResample.Coefficients(500, 341, PilFilter.Bilinear);
        Assert.Equal((0, 2), (b[0], b[1]));
    }

    [Fact]
    public void FilterValuesAreTheKnownOnes()
    {
        Assert.Equal(1.0, PilResample.Evaluate(PilFilter.Bicubic, 0));
        Assert.Equal(0.0, PilResample.Evaluate(PilFilter.Bicubic, 1));
        Assert.Equal(0.5625, PilResample.Evaluate(PilFilter.Bicubic, 0.5), 15);
        Assert.Equal(-0.0625, PilResample.Evaluate(PilFilter.Bicubic, 1.5), 15);
        Assert.Equal(0.0, PilResample.Evaluate(PilFilter.Bicubic, 2));
        Assert.Equal(0.75, PilResample.Evaluate(PilFilter.Bilinear, -0.25));
        Assert.Equal(1.0, PilResample.Evaluate(PilFilter.Box, 0.5));
        Assert.Equal(0.0, PilResample.Evaluate(PilFilter.Box, -0.5));
        Assert.Equal(0.0, PilResample.Evaluate(PilFilter.Lanczos, 3), 15);
        foreach (var f in Convolutions)
            for (double x = -3.5; x <= 3.5; x += 0.125)
                Assert.Equal(Kernel(f, x), PilResample.Evaluate(f, x), 12);
    }

    [Fact]
    public void FixedPointRoundsAwayFromZero()
    {
        Assert.Equal(new[] { 1 << 22, 1 << 21, -(1 << 20), 1, -1, 0 },
            PilResample.FixedPoint([1.0, 0.5, -0.25, 0.5 / (1 << 22), -0.5 / (1 << 22), 0.49 / (1 << 22)]));
    }

    [Fact]
    public void OvershootIsClippedNotWrapped()
    {
        // A hard 0 → 255 step upscaled with bicubic (negative lobes) overshoots on both sides; bytes clip at 0 and 255.
        byte[] step = [0, 0, 0, 255, 255, 255];
        var up = Run(step, 6, 1, 1, 24, 1, PilFilter.Bicubic);
        Assert.Equal(up.OrderBy(v => v).ToArray(), up); // monotone: no wrapped values
        Assert.Equal(0, up[0]);
        Assert.Equal(255, up[^1]);
    }

    [Fact]
    public void SinglePassesMatchTheFullResize()
    {
        var src = RandomImage(21, 15, 3, 4);
        var h = new byte[10 * 15 * 3];
        PilResample.ResampleHorizontal(src, 21, 15, 3, 10, PilFilter.Bicubic, h);
        Assert.Equal(h, Run(src, 21, 15, 3, 10, 15, PilFilter.Bicubic));
        var v = new byte[10 * 6 * 3];
        PilResample.ResampleVertical(h, 10, 15, 3, 6, PilFilter.Bicubic, v);
        Assert.Equal(v, Run(src, 21, 15, 3, 10, 6, PilFilter.Bicubic));
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        var src = new byte[12];
        Assert.Throws<ArgumentException>(() => PilResample.Resize(src, 2, 2, 3, 0, 2, PilFilter.Bilinear, new byte[12]));
        Assert.Throws<ArgumentException>(() => PilResample.Resize(src, 3, 2, 3, 2, 2, PilFilter.Bilinear, new byte[12]));
        Assert.Throws<ArgumentException>(() => PilResample.Resize(src, 2, 2, 3, 4, 4, PilFilter.Bilinear, new byte[12]));
        Assert.Throws<ArgumentOutOfRangeException>(() => PilResample.Coefficients(4, 2, PilFilter.Nearest));
    }
}
