using System.Buffers.Binary;
using VitSharp.Data;

namespace VitSharp.Tests.Data;

/// <summary>
/// Mutated PNG and JPEG files (issue 14): headers that disagree with the pixel data, truncation and absurd
/// sizes fail with one line naming the file and the problem, with bounded allocation.
/// </summary>
public sealed class HostileImageTests : IDisposable
{
    private const long AllocationBound = 64L << 20;
    private const string Photo = "/work/shared/fixtures/pretrained/photo.jpg";

    private readonly TempDir _tmp = new("hostile-img");

    public void Dispose() => _tmp.Dispose();

    private string Write(string name, byte[] bytes)
    {
        string path = _tmp.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // Managed bytes allocated by this thread: the parsers run synchronously on it, and other test classes
    // running in parallel do not count (GC.GetTotalAllocatedBytes would include them).
    private static DataSetException Throws(string path, out long allocated)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<DataSetException>(() => ImageDecoder.Decode(path));
        allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(Path.GetFileName(path), e.Message);
        return e;
    }

    private static byte[] Png16() => PngWriter.Encode(ImageDecoderTests.Pattern(16, 16, 3), 16, 16, 2);

    [Fact]
    public void PngIhdrClaimingALargerSizeThanItsData()
    {
        var e = Throws(Write("larger.png", PngWriter.WithIhdrSize(Png16(), 32, 32)), out _);
        Assert.Contains("IHDR declares 32×32", e.Message);
        Assert.Contains($"decompresses to only {16 * (1 + 48)} bytes", e.Message);
    }

    [Fact]
    public void PngIhdrClaimingASmallerSizeThanItsData()
    {
        var e = Throws(Write("smaller.png", PngWriter.WithIhdrSize(Png16(), 8, 8)), out _);
        Assert.Contains("IHDR declares 8×8", e.Message);
        Assert.Contains("the image data holds more", e.Message);
    }

    [Fact]
    public void PngMissingItsLastByte()
    {
        var png = Png16();
        var e = Throws(Write("last-byte.png", png[..^1]), out _);
        Assert.Contains("truncated PNG", e.Message);
        Assert.Contains("chunk IEND is cut short", e.Message);
    }

    [Fact]
    public void PngMissingIend()
    {
        var png = Png16();
        var e = Throws(Write("no-iend.png", png[..^12]), out _);
        Assert.Contains($"PNG has no IEND chunk: file ends at offset {png.Length - 12}", e.Message);
    }

    [Fact]
    public void PngWithCorruptIdatCrc()
    {
        var png = Png16();
        png[^13] ^= 0xFF; // last byte of the IDAT CRC
        var e = Throws(Write("idat-crc.png", png), out _);
        Assert.Contains("corrupt PNG", e.Message);
        Assert.Contains("checksum", e.Message);
    }

    [Fact]
    public void PngClaimingAHugeSizeFailsBeforeAllocating()
    {
        var e = Throws(Write("huge.png", PngWriter.WithIhdrSize(Png16(), 30000, 30000)), out long allocated);
        Assert.Contains("30000×30000", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Fact]
    public void PngDeclaringMoreThanItsIdatCanHoldFailsBeforeAllocating()
    {
        // 10000×10000 RGB passes the absolute limits (3e8 decoded bytes) but cannot come from a few hundred IDAT bytes.
        var e = Throws(Write("deflate-bound.png", PngWriter.WithIhdrSize(Png16(), 10000, 10000)), out long allocated);
        Assert.Contains("IHDR declares 10000×10000", e.Message);
        Assert.Contains("deflate expands at most", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Fact]
    public void PngBytesAfterIendAreIgnored()
    {
        var px = ImageDecoderTests.Pattern(16, 16, 3);
        var img = ImageDecoder.Decode(Write("after-iend.png", [.. PngWriter.Encode(px, 16, 16, 2), 1, 2, 3]));
        Assert.Equal(px, img.Pixels);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 2)]
    [InlineData(13, 9)]
    [InlineData(37, 23)]
    public void InterlacedPngStillDecodes(int w, int h)
    {
        // The IDAT length check counts Adam7 passes: a valid interlaced file must pass it.
        var px = ImageDecoderTests.Pattern(w, h, 3);
        var img = ImageDecoder.Decode(Write($"adam7-{w}x{h}.png", PngWriter.EncodeInterlaced(px, w, h, 2)));
        Assert.Equal(px, img.Pixels);
    }

    [Fact]
    public void InterlacedPngWithAShortPassFails()
    {
        var good = PngWriter.EncodeInterlaced(ImageDecoderTests.Pattern(13, 9, 3), 13, 9, 2);
        var e = Throws(Write("adam7-larger.png", PngWriter.WithIhdrSize(good, 13, 10)), out _);
        Assert.Contains("IHDR declares 13×10 (8-bit, colour type 2, interlaced)", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void LowBitDepthGreyPngStillDecodes(int bits)
    {
        // 11 pixels a row of `bits` bits each, packed MSB first; every sample at its maximum → white.
        int w = 11, h = 3, rowBytes = (w * bits + 7) / 8;
        var raw = new byte[h * (1 + rowBytes)];
        for (int y = 0; y < h; y++)
            for (int i = 0; i < rowBytes; i++) raw[y * (1 + rowBytes) + 1 + i] = 0xFF;
        var img = ImageDecoder.Decode(Write($"grey{bits}.png", PngWriter.EncodeRaw(raw, w, h, (byte)bits, 0, 0)));
        Assert.Equal((w, h, 1), (img.Width, img.Height, img.Channels));
        Assert.All(img.Pixels, p => Assert.Equal(255, p));
    }

    private static byte[] PhotoWithSof(int height, int width)
    {
        var b = File.ReadAllBytes(Photo);
        int sof = FindSof0(b);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(sof + 5), (ushort)height);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(sof + 7), (ushort)width);
        return b;
    }

    private static int FindSof0(byte[] b)
    {
        int i = 2;
        while (b[i] == 0xFF && b[i + 1] != 0xC0) i += 2 + BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(i + 2));
        Assert.Equal(0xC0, b[i + 1]);
        return i;
    }

    [Fact]
    public void PhotoFixtureDecodes()
    {
        var img = ImageDecoder.Decode(Photo);
        Assert.Equal((500, 375, 3), (img.Width, img.Height, img.Channels));
    }

    [Fact]
    public void JpegSofClaimingOneByOne()
    {
        var e = Throws(Write("sof-1x1.jpg", PhotoWithSof(1, 1)), out _);
        Assert.Contains("corrupt JPEG (1×1 declared)", e.Message);
        Assert.Contains("extraneous bytes", e.Message);
    }

    [Fact]
    public void JpegSofClaimingALargerSize()
    {
        var e = Throws(Write("sof-large.jpg", PhotoWithSof(750, 1000)), out _);
        Assert.Contains("corrupt JPEG (1000×750 declared)", e.Message);
        Assert.Contains("premature end", e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void JpegClaimingAHugeSizeFailsBeforeAllocating()
    {
        var e = Throws(Write("sof-huge.jpg", PhotoWithSof(60000, 60000)), out long allocated);
        Assert.Contains("60000×60000", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Fact]
    public void JpegDeclaringMorePixelsThanItsFileCanHoldFailsBeforeAllocating()
    {
        // 10000×10000 passes the absolute limits (3e8 decoded bytes) but not 4096 pixels per byte of a 2,000-byte file.
        var e = Throws(Write("sof-file-bound.jpg", PhotoWithSof(10000, 10000)[..2000]), out long allocated);
        Assert.Contains("10000×10000", e.Message);
        Assert.Contains("only 2000 bytes", e.Message);
        Assert.True(allocated < AllocationBound, $"allocated {allocated} bytes");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(1000)]
    public void TruncatedJpeg(int cut)
    {
        var b = File.ReadAllBytes(Photo);
        var e = Throws(Write($"cut{cut}.jpg", b[..^cut]), out _);
        Assert.Contains("corrupt JPEG", e.Message);
        Assert.Contains("Premature end", e.Message);
    }
}
