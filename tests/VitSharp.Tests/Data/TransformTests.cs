using VitSharp.Data;

namespace VitSharp.Tests.Data;

public sealed class TransformTests
{
    private static float[] Image(int c, int h, int w)
    {
        var x = new float[c * h * w];
        for (int i = 0; i < x.Length; i++) x[i] = i + 1;
        return x;
    }

    [Fact]
    public void FlipTwiceIsIdentityAndFlipMirrorsRows()
    {
        var x = Image(3, 4, 5);
        var y = (float[])x.Clone();
        RandomHorizontalFlip.Flip(y, 3, 4, 5);
        for (int c = 0; c < 3; c++)
            for (int r = 0; r < 4; r++)
                for (int k = 0; k < 5; k++)
                    Assert.Equal(x[(c * 4 + r) * 5 + k], y[(c * 4 + r) * 5 + 4 - k]);
        RandomHorizontalFlip.Flip(y, 3, 4, 5);
        Assert.Equal(x, y);
    }

    [Fact]
    public void FlipProbability()
    {
        var always = new RandomHorizontalFlip(1.0);
        var never = new RandomHorizontalFlip(0.0);
        var x = Image(1, 2, 3);
        var y = (float[])x.Clone();
        never.Apply(y, 1, 2, 3, new Random(1));
        Assert.Equal(x, y);
        always.Apply(y, 1, 2, 3, new Random(1));
        Assert.Equal(new float[] { 3, 2, 1, 6, 5, 4 }, y);

        var half = new RandomHorizontalFlip(0.5);
        var rng = new SampleRandom(42);
        int flips = 0;
        for (int i = 0; i < 2000; i++)
        {
            var z = Image(1, 1, 2);
            half.Apply(z, 1, 1, 2, rng);
            if (z[0] == 2) flips++;
        }
        Assert.InRange(flips, 900, 1100);
    }

    [Fact]
    public void CropWithZeroPaddingIsIdentity()
    {
        var x = Image(2, 6, 7);
        var y = (float[])x.Clone();
        new RandomCrop(0).Apply(y, 2, 6, 7, new Random(3));
        Assert.Equal(x, y);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 2)]
    [InlineData(-2, 1)]
    [InlineData(2, -3)]
    [InlineData(-1, -1)]
    [InlineData(6, 0)]
    [InlineData(0, -9)]
    public void ShiftMatchesPadThenCrop(int dy, int dx)
    {
        int c = 2, h = 5, w = 6;
        var x = Image(c, h, w);
        var y = (float[])x.Clone();
        RandomCrop.Shift(y, c, h, w, dy, dx);
        for (int ch = 0; ch < c; ch++)
            for (int r = 0; r < h; r++)
                for (int k = 0; k < w; k++)
                {
                    int sr = r + dy, sk = k + dx;
                    float expected = sr >= 0 && sr < h && sk >= 0 && sk < w ? x[(ch * h + sr) * w + sk] : 0f;
                    Assert.Equal(expected, y[(ch * h + r) * w + k]);
                }
    }

    [Fact]
    public void RandomCropIsDeterministicAndCoversAllShifts()
    {
        var crop = new RandomCrop(2);
        var seen = new HashSet<(int, int)>();
        for (int s = 0; s < 400; s++)
        {
            var a = Image(1, 8, 8);
            var b = Image(1, 8, 8);
            crop.Apply(a, 1, 8, 8, new SampleRandom((ulong)s));
            crop.Apply(b, 1, 8, 8, new SampleRandom((ulong)s));
            Assert.Equal(a, b);
            var r = new SampleRandom((ulong)s);
            int top = r.Next(0, 5), left = r.Next(0, 5);
            var expected = Image(1, 8, 8);
            RandomCrop.Shift(expected, 1, 8, 8, top - 2, left - 2);
            Assert.Equal(expected, a);
            seen.Add((top, left));
        }
        Assert.Equal(25, seen.Count);
    }

    [Fact]
    public void NormalizeMath()
    {
        var x = new float[] { 0f, 0.5f, 1f, 0.25f, 0.2f, 0.4f };
        new Normalize([0.5f, 0.1f, 0.3f], [0.5f, 0.2f, 0.1f]).Apply(x, 3, 1, 2, new Random());
        Assert.Equal(new[] { (0f - 0.5f) / 0.5f, (0.5f - 0.5f) / 0.5f, (1f - 0.1f) / 0.2f, (0.25f - 0.1f) / 0.2f, (0.2f - 0.3f) / 0.1f, (0.4f - 0.3f) / 0.1f }, x);
        var g = new float[] { 0.1307f, 1f };
        new Normalize([0.1307f], [0.3081f]).Apply(g, 1, 1, 2, new Random());
        Assert.Equal(0f, g[0]);
        Assert.Equal((1f - 0.1307f) / 0.3081f, g[1]);
        Assert.Throws<ArgumentException>(() => new Normalize([0f, 0f], [1f, 1f]).Apply(new float[3], 3, 1, 1, new Random()));
        Assert.Throws<ArgumentException>(() => new Normalize([0f], [0f]));
    }

    [Fact]
    public void ComposeAppliesInOrder()
    {
        var t = new Compose(new RandomHorizontalFlip(1), new Normalize([1f], [2f]));
        var x = new float[] { 1, 3, 5 };
        t.Apply(x, 1, 1, 3, new Random());
        Assert.Equal(new float[] { 2, 1, 0 }, x);
    }

    [Fact]
    public void TransformsDoNotAllocatePerSample()
    {
        var t = new Compose(new RandomCrop(4), new RandomHorizontalFlip(), new Normalize([0.5f, 0.5f, 0.5f], [0.25f, 0.25f, 0.25f]));
        var x = new float[3 * 32 * 32];
        var rng = new SampleRandom(1);
        for (int i = 0; i < 50; i++) { rng.Reset((ulong)i); t.Apply(x, 3, 32, 32, rng); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++) { rng.Reset((ulong)i); t.Apply(x, 3, 32, 32, rng); }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void SampleRandomIsReproducibleAndInRange()
    {
        var a = new SampleRandom(7);
        var b = new SampleRandom(99);
        b.Reset(7);
        for (int i = 0; i < 100; i++)
        {
            int v = a.Next(3, 9);
            Assert.Equal(v, b.Next(3, 9));
            Assert.InRange(v, 3, 8);
            double d = a.NextDouble();
            Assert.Equal(d, b.NextDouble());
            Assert.InRange(d, 0, 1 - 1e-17);
        }
        Assert.NotEqual(SampleRandom.Mix(1, 2, 3), SampleRandom.Mix(1, 3, 2));
    }
}
