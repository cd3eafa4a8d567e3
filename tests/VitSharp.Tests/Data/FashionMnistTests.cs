using System.Buffers.Binary;
using System.IO.Compression;
using VitSharp.Data;

namespace VitSharp.Tests.Data;

/// <summary>Loads the real Fashion-MNIST from Debian's dataset-fashion-mnist (a prerequisite: the tests fail when it is absent).</summary>
[Trait("Category", "DataSet")]
public sealed class FashionMnistTests
{
    // The data set is a Debian package that scripts/setup.sh (and so the test command) installs: its absence is a failure.
    private static void RequireInstalled() =>
        Assert.True(File.Exists(Path.Combine(FashionMnist.DefaultDirectory, "t10k-labels-idx1-ubyte.gz")),
            $"Fashion-MNIST is not installed in {FashionMnist.DefaultDirectory}: run ./scripts/setup.sh (apt-get install dataset-fashion-mnist)");

    /// <summary>Decompresses the first <paramref name="n"/> bytes of a gz file, independently of the library.</summary>
    private static byte[] Head(string file, int n)
    {
        using var z = new GZipStream(File.OpenRead(Path.Combine(FashionMnist.DefaultDirectory, file)), CompressionMode.Decompress);
        var b = new byte[n];
        z.ReadExactly(b);
        return b;
    }

    [Fact]
    public void TestSplit()
    {
        RequireInstalled();
        var ds = FashionMnist.Load(null, train: false);
        Assert.Equal(10000, ds.Count);
        Assert.Equal((1, 28, 28, 10), (ds.Channels, ds.Height, ds.Width, ds.NumClasses));
        Assert.Equal("T-shirt/top", ds.ClassNames[0]);
        Assert.Equal("Ankle boot", ds.ClassNames[9]);

        byte[] labels = Head("t10k-labels-idx1-ubyte.gz", 8 + 100);
        Assert.Equal(0x801u, BinaryPrimitives.ReadUInt32BigEndian(labels));
        for (int i = 0; i < 100; i++) Assert.Equal(labels[8 + i], ds.Label(i));

        byte[] images = Head("t10k-images-idx3-ubyte.gz", 16 + 2 * 784);
        var px = new float[784];
        ds.ReadPixels(1, px);
        for (int k = 0; k < 784; k++) Assert.Equal(images[16 + 784 + k] / 255f, px[k]);
        Assert.Equal(1000, ds.ClassCounts()[3]);
    }

    [Fact]
    public void TrainSplit()
    {
        RequireInstalled();
        var ds = FashionMnist.Load(FashionMnist.DefaultDirectory, train: true);
        Assert.Equal(60000, ds.Count);
        byte[] labels = Head("train-labels-idx1-ubyte.gz", 8 + 50);
        for (int i = 0; i < 50; i++) Assert.Equal(labels[8 + i], ds.Label(i));
        Assert.All(ds.ClassCounts(), c => Assert.Equal(6000, c));
        var (mean, std) = ds.ChannelMeanStd();
        Assert.Equal(0.2860, mean[0], 3);
        Assert.Equal(0.3530, std[0], 3);
    }
}
