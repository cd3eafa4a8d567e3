using System.Buffers.Binary;
using System.IO.Compression;
using VitSharp.Data;

namespace VitSharp.Tests.Data;

public sealed class IdxTests : IDisposable
{
    private readonly TempDir _tmp = new("idx");

    public void Dispose() => _tmp.Dispose();

    internal static byte[] ImagesFile(int n, int h, int w, out byte[] pixels, uint magic = Idx.ImagesMagic)
    {
        pixels = new byte[n * h * w];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i * 7 + 3);
        var bytes = new byte[16 + pixels.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, magic);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)n);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), (uint)h);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), (uint)w);
        pixels.CopyTo(bytes, 16);
        return bytes;
    }

    internal static byte[] LabelsFile(byte[] labels, uint magic = Idx.LabelsMagic)
    {
        var bytes = new byte[8 + labels.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, magic);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)labels.Length);
        labels.CopyTo(bytes, 8);
        return bytes;
    }

    internal static void Write(string path, byte[] bytes, bool gz)
    {
        if (!gz) { File.WriteAllBytes(path, bytes); return; }
        using var fs = File.Create(path);
        using var z = new GZipStream(fs, CompressionLevel.Fastest);
        z.Write(bytes);
    }

    private static byte[] Labels(int n) => Enumerable.Range(0, n).Select(i => (byte)(i * 3 % 10)).ToArray();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RoundTrip(bool gz)
    {
        string img = _tmp.File("img"), lab = _tmp.File("lab");
        Write(img, ImagesFile(5, 4, 3, out var pixels), gz);
        var labels = Labels(5);
        Write(lab, LabelsFile(labels), gz);

        var ds = Idx.Load(img, lab);
        Assert.Equal(5, ds.Count);
        Assert.Equal((1, 4, 3, 10), (ds.Channels, ds.Height, ds.Width, ds.NumClasses));
        var buf = new float[12];
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(labels[i], ds.Label(i));
            ds.ReadPixels(i, buf);
            for (int k = 0; k < 12; k++) Assert.Equal(pixels[i * 12 + k] / 255f, buf[k]);
            Assert.True(ds.RawPixels(i).SequenceEqual(pixels.AsSpan(i * 12, 12)));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BadImagesMagic(bool gz)
    {
        string img = _tmp.File("bad-images"), lab = _tmp.File("lab");
        Write(img, ImagesFile(2, 2, 2, out _, magic: 0x00000801), gz);
        Write(lab, LabelsFile(Labels(2)), gz);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("bad-images", e.Message);
        Assert.Contains("0x00000801", e.Message);
        Assert.Contains("offset 0", e.Message);
    }

    [Fact]
    public void BadLabelsMagic()
    {
        string img = _tmp.File("img"), lab = _tmp.File("bad-labels");
        Write(img, ImagesFile(2, 2, 2, out _), false);
        Write(lab, LabelsFile(Labels(2), magic: 0x00000803), false);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("bad-labels", e.Message);
        Assert.Contains("magic", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedImagesNameTheOffset(bool gz)
    {
        string img = _tmp.File("trunc-images"), lab = _tmp.File("lab");
        byte[] full = ImagesFile(10, 4, 4, out _); // 16 + 160 bytes
        Write(img, full[..100], gz);
        Write(lab, LabelsFile(Labels(10)), gz);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("trunc-images", e.Message);
        Assert.Contains("truncated at offset 100", e.Message);
        Assert.Contains("expected 160 bytes of pixels", e.Message);
        Assert.Contains("file ends at 100", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TruncatedHeader()
    {
        string img = _tmp.File("short"), lab = _tmp.File("lab");
        Write(img, ImagesFile(1, 2, 2, out _)[..10], false);
        Write(lab, LabelsFile(Labels(1)), false);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("short", e.Message);
        Assert.Contains("truncated at offset 10", e.Message);
    }

    [Fact]
    public void TruncatedLabels()
    {
        string img = _tmp.File("img"), lab = _tmp.File("trunc-labels");
        Write(img, ImagesFile(6, 2, 2, out _), false);
        Write(lab, LabelsFile(Labels(6))[..11], false);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("trunc-labels", e.Message);
        Assert.Contains("truncated at offset 11", e.Message);
    }

    [Fact]
    public void TrailingBytesAreAnError()
    {
        string img = _tmp.File("long-images"), lab = _tmp.File("lab");
        Write(img, [.. ImagesFile(2, 2, 2, out _), 1, 2, 3], false);
        Write(lab, LabelsFile(Labels(2)), false);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("long-images", e.Message);
        Assert.Contains("offset 24", e.Message);
    }

    [Fact]
    public void CountMismatch()
    {
        string img = _tmp.File("img"), lab = _tmp.File("labels-7");
        Write(img, ImagesFile(6, 2, 2, out _), false);
        Write(lab, LabelsFile(Labels(7)), false);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("labels-7", e.Message);
        Assert.Contains("7 labels", e.Message);
        Assert.Contains("6 images", e.Message);
    }

    [Fact]
    public void LabelOutOfRange()
    {
        string img = _tmp.File("img"), lab = _tmp.File("range-labels");
        Write(img, ImagesFile(4, 2, 2, out _), false);
        Write(lab, LabelsFile([1, 2, 10, 3]), false);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("range-labels", e.Message);
        Assert.Contains("label 10 of item 2 at offset 10", e.Message);
    }

    [Fact]
    public void MissingFile()
    {
        var e = Assert.Throws<DataSetException>(() => Idx.Load(_tmp.File("nope"), _tmp.File("nope2")));
        Assert.Contains("nope", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void CorruptGzip()
    {
        string img = _tmp.File("corrupt.gz"), lab = _tmp.File("lab");
        byte[] gz;
        using (var ms = new MemoryStream())
        {
            using (var z = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) z.Write(ImagesFile(20, 8, 8, out _));
            gz = ms.ToArray();
        }
        for (int i = 12; i < gz.Length - 8; i++) gz[i] ^= 0x5A;
        File.WriteAllBytes(img, gz);
        Write(lab, LabelsFile(Labels(20)), false);
        var e = Assert.Throws<DataSetException>(() => Idx.Load(img, lab));
        Assert.Contains("corrupt.gz", e.Message);
    }

    [Fact]
    public void FashionMnistMissingFilesSaysHowToInstall()
    {
        var e = Assert.Throws<DataSetException>(() => FashionMnist.Load(_tmp.Path, train: true));
        Assert.Contains("apt-get install dataset-fashion-mnist", e.Message);
        Assert.Contains("--data", e.Message);
        Assert.Contains("train-images-idx3-ubyte.gz", e.Message);
        Assert.Contains(_tmp.Path, e.Message);
    }

    [Fact]
    public void FashionMnistLoadsRawFilesFromAGivenDirectory()
    {
        Write(_tmp.File("t10k-images-idx3-ubyte"), ImagesFile(3, 28, 28, out _), false);
        Write(_tmp.File("t10k-labels-idx1-ubyte"), LabelsFile([9, 0, 4]), false);
        var ds = FashionMnist.Load(_tmp.Path, train: false);
        Assert.Equal(3, ds.Count);
        Assert.Equal("Ankle boot", ds.ClassNames[ds.Label(0)]);
    }
}
