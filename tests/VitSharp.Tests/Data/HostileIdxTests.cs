using System.Buffers.Binary;
using System.IO.Compression;
using VitSharp.Data;

namespace VitSharp.Tests.Data;

/// <summary>Mutated IDX and gzip files (issue 14): each fails with one line naming the file and the problem, with bounded allocation.</summary>
public sealed class HostileIdxTests : IDisposable
{
    /// <summary>Allocation allowed for loading a small hostile file.</summary>
    private const long AllocationBound = 64L << 20;

    private readonly TempDir _tmp = new("hostile-idx");

    public void Dispose() => _tmp.Dispose();

    private static byte[] Header(uint magic, uint n, uint h, uint w, int dataBytes)
    {
        var b = new byte[16 + dataBytes];
        BinaryPrimitives.WriteUInt32BigEndian(b, magic);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), n);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), h);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), w);
        for (int i = 16; i < b.Length; i++) b[i] = (byte)(i * 13);
        return b;
    }

    private static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var z = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) z.Write(data);
        return ms.ToArray();
    }

    // Managed bytes allocated by this thread: the parsers run synchronously on it, and other test classes
    // running in parallel do not count (GC.GetTotalAllocatedBytes would include them).
    private static DataSetException Throws(Action load, out long allocated)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<DataSetException>(load);
        allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void GzipHeaderClaimingMillionsOfImagesFailsWhenTheDataRunsOut()
    {
        // 2,739,000 × 28 × 28 ≈ 2.1 GB declared; 2,000 images (1.5 MB) present.
        string path = _tmp.File("liar-images.gz");
        File.WriteAllBytes(path, Gzip(Header(Idx.ImagesMagic, 2_739_000, 28, 28, 2000 * 784)));
        var e = Throws(() => Idx.ReadImages(path), out long allocated);
        Assert.Contains("liar-images.gz", e.Message);
        Assert.Contains("2739000 images of 28×28", e.Message);
        Assert.Contains($"only {2000 * 784} bytes are present", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Fact]
    public void RawHeaderClaimingMoreThanTheFileHoldsFailsBeforeAllocating()
    {
        string path = _tmp.File("liar-images");
        File.WriteAllBytes(path, Header(Idx.ImagesMagic, 2_739_000, 28, 28, 100 * 784));
        var e = Throws(() => Idx.ReadImages(path), out long allocated);
        Assert.Contains("liar-images", e.Message);
        Assert.Contains("2739000 images of 28×28", e.Message);
        Assert.Contains($"only {100 * 784} bytes follow the header", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Fact]
    public void GzipLabelsClaimingMoreThanPresent()
    {
        string path = _tmp.File("liar-labels.gz");
        var b = new byte[8 + 50];
        BinaryPrimitives.WriteUInt32BigEndian(b, Idx.LabelsMagic);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), 2_000_000_000);
        File.WriteAllBytes(path, Gzip(b));
        var e = Throws(() => Idx.ReadLabels(path), out long allocated);
        Assert.Contains("liar-labels.gz", e.Message);
        Assert.Contains("2000000000 labels", e.Message);
        Assert.Contains("only 50 bytes are present", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Fact]
    public void OverflowingDimensions()
    {
        string path = _tmp.File("overflow");
        File.WriteAllBytes(path, Header(Idx.ImagesMagic, int.MaxValue, int.MaxValue, int.MaxValue, 16));
        var e = Throws(() => Idx.ReadImages(path), out long allocated);
        Assert.Contains("overflow", e.Message);
        Assert.Contains("offset 4", e.Message);
        Assert.Contains($"{int.MaxValue} images of {int.MaxValue}×{int.MaxValue}", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Theory]
    [InlineData(0u, 28u, "height 0 at offset 8")]
    [InlineData(28u, 0u, "width 0 at offset 12")]
    [InlineData(0x80000000u, 28u, "height 2147483648 at offset 8 (negative")]
    public void ZeroOrNegativeDimensions(uint h, uint w, string expected)
    {
        string path = _tmp.File("bad-dims");
        File.WriteAllBytes(path, Header(Idx.ImagesMagic, 1, h, w, 16));
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("bad-dims", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData(0x00000C03u, "data type byte 0x0C at offset 2")]
    [InlineData(0x00000804u, "4 dimensions (byte at offset 3), expected 3")]
    [InlineData(0x01000803u, "first two bytes must be 00 00")]
    public void WrongMagicOrDataType(uint magic, string expected)
    {
        string path = _tmp.File("bad-dtype");
        File.WriteAllBytes(path, Header(magic, 1, 2, 2, 4));
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("bad-dtype", e.Message);
        Assert.Contains("offset 0", e.Message);
        Assert.Contains(expected, e.Message);
    }

    private string GoodGzip(string name, out byte[] gz)
    {
        gz = Gzip(Header(Idx.ImagesMagic, 20, 8, 8, 20 * 64));
        return _tmp.File(name);
    }

    [Fact]
    public void GzipWithBadCrcSaysBadCrc()
    {
        string path = GoodGzip("bad-crc.gz", out var gz);
        gz[^8] ^= 0x01;
        File.WriteAllBytes(path, gz);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("bad-crc.gz", e.Message);
        Assert.Contains("bad gzip CRC-32", e.Message);
        Assert.Contains($"offset {gz.Length - 8}", e.Message);
        Assert.DoesNotContain("unsupported compression method", e.Message);
    }

    [Fact]
    public void GzipWithBadSizeSaysBadSize()
    {
        string path = GoodGzip("bad-size.gz", out var gz);
        gz[^1] ^= 0x01;
        File.WriteAllBytes(path, gz);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("bad-size.gz", e.Message);
        Assert.Contains("bad gzip size", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    public void TruncatedGzipSaysTruncated(int cut)
    {
        // Cutting into the trailer leaves all the data: .NET's GZipStream alone would accept it.
        string path = GoodGzip("cut.gz", out var gz);
        File.WriteAllBytes(path, gz[..^cut]);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("cut.gz", e.Message);
        Assert.Contains("truncated gzip stream", e.Message);
    }

    [Fact]
    public void TruncatedGzipDeflateDataSaysTruncated()
    {
        string path = GoodGzip("half.gz", out var gz);
        File.WriteAllBytes(path, gz[..(gz.Length / 2)]);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("half.gz", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void GzipWithTrailingGarbageSaysSo()
    {
        string path = GoodGzip("garbage.gz", out var gz);
        File.WriteAllBytes(path, [.. gz, 1, 2, 3, 4, 5]);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("garbage.gz", e.Message);
        Assert.Contains($"trailing garbage: 5 bytes after the gzip trailer, from offset {gz.Length}", e.Message);
    }

    [Fact]
    public void GzipWithUnknownMethodOrReservedFlags()
    {
        string path = GoodGzip("method.gz", out var gz);
        gz[2] = 7;
        File.WriteAllBytes(path, gz);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("method.gz", e.Message);
        Assert.Contains("unsupported gzip compression method 7 at offset 2", e.Message);

        gz[2] = 8;
        gz[3] = 0xE0;
        File.WriteAllBytes(path, gz);
        e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("reserved flag bits 0xE0 set at offset 3", e.Message);
    }

    [Fact]
    public void GzipWithCorruptDeflateData()
    {
        string path = GoodGzip("deflate.gz", out var gz);
        for (int i = 12; i < gz.Length - 8; i++) gz[i] ^= 0x5A;
        File.WriteAllBytes(path, gz);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("deflate.gz", e.Message);
        Assert.True(e.Message.Contains("corrupt deflate data") || e.Message.Contains("truncated"), e.Message);
    }

    [Fact]
    public void TruncatedGzipHeader()
    {
        string path = _tmp.File("header.gz");
        File.WriteAllBytes(path, [0x1F, 0x8B, 8, 0, 0, 0]);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("header.gz: truncated gzip header: file ends at offset 6", e.Message);
    }

    /// <summary>A gzip file with the FNAME field gzip(1) writes: the diagnosis must skip it to find the deflate data.</summary>
    private static byte[] WithFileName(byte[] gz)
    {
        var name = "images-idx3-ubyte\0"u8.ToArray();
        var b = new byte[gz.Length + name.Length];
        gz.AsSpan(0, 10).CopyTo(b);
        b[3] |= 0x08;
        name.CopyTo(b, 10);
        gz.AsSpan(10).CopyTo(b.AsSpan(10 + name.Length));
        return b;
    }

    [Fact]
    public void GzipWithFileNameLoadsAndItsBadCrcIsDiagnosed()
    {
        string path = GoodGzip("named.gz", out var gz);
        var named = WithFileName(gz);
        File.WriteAllBytes(path, named);
        Assert.Equal(20, Idx.ReadImages(path).Count);

        named[^6] ^= 0x40;
        File.WriteAllBytes(path, named);
        var e = Throws(() => Idx.ReadImages(path), out _);
        Assert.Contains("named.gz: bad gzip CRC-32", e.Message);
    }
}
