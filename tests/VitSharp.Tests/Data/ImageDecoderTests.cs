using VitSharp.Data;

namespace VitSharp.Tests.Data;

public sealed class ImageDecoderTests : IDisposable
{
    private readonly TempDir _tmp = new("img");

    public void Dispose() => _tmp.Dispose();

    internal static byte[] Pattern(int w, int h, int c, int salt = 0)
    {
        var p = new byte[w * h * c];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int k = 0; k < c; k++)
                    p[(y * w + x) * c + k] = (byte)(x * 37 + y * 11 + k * 80 + salt);
        return p;
    }

    /// <summary>A smooth gradient (JPEG reproduces it closely).</summary>
    internal static byte[] Gradient(int w, int h, int c)
    {
        var p = new byte[w * h * c];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int k = 0; k < c; k++)
                    p[(y * w + x) * c + k] = (byte)(40 + 150 * x / (w - 1) + (k == 1 ? 30 * y / (h - 1) : 0) - (k == 2 ? 20 : 0));
        return p;
    }

    private string Write(string name, byte[] bytes)
    {
        string path = _tmp.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void LibrariesAreInstalled()
    {
        Assert.True(ImageDecoder.PngAvailable, "libspng0 missing: apt-get install libspng0");
        Assert.True(ImageDecoder.JpegAvailable, "libturbojpeg0 missing: apt-get install libturbojpeg0");
    }

    [Fact]
    public void PngRgbIsExact()
    {
        var px = Pattern(7, 5, 3);
        var img = ImageDecoder.Decode(Write("rgb.png", PngWriter.Encode(px, 7, 5, 2)));
        Assert.Equal((7, 5, 3), (img.Width, img.Height, img.Channels));
        Assert.Equal(px, img.Pixels);
    }

    [Fact]
    public void PngGreyIsExactAndConvertsToRgb()
    {
        var px = Pattern(6, 3, 1);
        string path = Write("grey.png", PngWriter.Encode(px, 6, 3, 0));
        var g = ImageDecoder.Decode(path);
        Assert.Equal(1, g.Channels);
        Assert.Equal(px, g.Pixels);
        var rgb = ImageDecoder.Decode(path, channels: 3);
        Assert.Equal(3, rgb.Channels);
        for (int i = 0; i < px.Length; i++)
            Assert.Equal(new[] { px[i], px[i], px[i] }, rgb.Pixels[(3 * i)..(3 * i + 3)]);
    }

    [Fact]
    public void RgbToGreyUsesLuma()
    {
        var px = Pattern(4, 4, 3);
        var g = ImageDecoder.Decode(Write("c.png", PngWriter.Encode(px, 4, 4, 2)), channels: 1);
        Assert.Equal(1, g.Channels);
        for (int i = 0; i < 16; i++)
        {
            double l = 0.299 * px[3 * i] + 0.587 * px[3 * i + 1] + 0.114 * px[3 * i + 2];
            Assert.InRange(g.Pixels[i], Math.Floor(l - 0.5), Math.Ceiling(l + 0.5));
        }
    }

    [Fact]
    public void PngRgbaDropsAlphaAndPaletteExpands()
    {
        var rgba = Pattern(3, 2, 4);
        var img = ImageDecoder.Decode(Write("a.png", PngWriter.Encode(rgba, 3, 2, 6)));
        Assert.Equal(3, img.Channels);
        for (int i = 0; i < 6; i++)
            Assert.Equal(rgba[(4 * i)..(4 * i + 3)], img.Pixels[(3 * i)..(3 * i + 3)]);

        byte[] palette = [255, 0, 0, 0, 255, 0, 10, 20, 30];
        byte[] idx = [0, 1, 2, 2, 1, 0];
        var p = ImageDecoder.Decode(Write("p.png", PngWriter.Encode(idx, 3, 2, 3, palette)));
        Assert.Equal(3, p.Channels);
        for (int i = 0; i < 6; i++) Assert.Equal(palette[(3 * idx[i])..(3 * idx[i] + 3)], p.Pixels[(3 * i)..(3 * i + 3)]);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void SpngEncoderRoundTrip(int channels)
    {
        var px = Pattern(9, 4, channels, salt: 5);
        string path = _tmp.File($"enc{channels}.png");
        ImageEncoder.SavePng(path, px, 9, 4, channels);
        var back = ImageDecoder.Decode(path);
        var expected = ImageDecoder.ConvertChannels(new DecodedImage(px, 9, 4, channels), channels <= 2 ? 1 : 3);
        Assert.Equal(expected.Pixels, back.Pixels);
    }

    [Fact]
    public void SavePngFromChwRoundsAndClamps()
    {
        float[] chw = [0f, 0.5f, 1f, 2f, -1f, 0.2f, /* G */ 0, 0, 0, 0, 0, 1, /* B */ 1, 1, 1, 1, 1, 0];
        string path = _tmp.File("chw.png");
        ImageEncoder.SavePngFromChw(path, chw, 3, 2, 3);
        var img = ImageDecoder.Decode(path);
        Assert.Equal((3, 2, 3), (img.Width, img.Height, img.Channels));
        Assert.Equal(new byte[] { 0, 0, 255, 128, 0, 255, 255, 0, 255, 255, 0, 255, 0, 0, 255, 51, 255, 0 }, img.Pixels);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(1)]
    public void JpegIsApproximatelyRight(int channels)
    {
        var px = Gradient(32, 24, channels);
        string path = _tmp.File($"g{channels}.jpg");
        ImageEncoder.SaveJpeg(path, px, 32, 24, channels, quality: 95);
        var img = ImageDecoder.Decode(path);
        Assert.Equal((32, 24, channels), (img.Width, img.Height, img.Channels));
        double sum = 0;
        int max = 0;
        for (int i = 0; i < px.Length; i++)
        {
            int d = Math.Abs(px[i] - img.Pixels[i]);
            sum += d;
            max = Math.Max(max, d);
        }
        Assert.True(sum / px.Length < 2.0, $"mean abs error {sum / px.Length}");
        Assert.True(max <= 12, $"max abs error {max}");
        if (channels == 3) Assert.Equal(1, ImageDecoder.Decode(path, channels: 1).Channels);
    }

    [Fact]
    public void FormatComesFromMagicBytesNotExtension()
    {
        var px = Pattern(4, 4, 3);
        var img = ImageDecoder.Decode(Write("really-a-png.jpg", PngWriter.Encode(px, 4, 4, 2)));
        Assert.Equal(px, img.Pixels);
        var jpeg = ImageEncoder.EncodeJpeg(Gradient(8, 8, 3), 8, 8, 3);
        Assert.Equal(8, ImageDecoder.Decode(Write("really-a-jpeg.png", jpeg)).Width);
    }

    [Fact]
    public void CorruptFilesNameTheFile()
    {
        var notImage = Assert.Throws<DataSetException>(() => ImageDecoder.Decode(Write("text.png", "hello world"u8.ToArray())));
        Assert.Contains("text.png", notImage.Message);
        Assert.Contains("not a PNG or JPEG", notImage.Message);

        var png = PngWriter.Encode(Pattern(16, 16, 3), 16, 16, 2);
        var truncated = Assert.Throws<DataSetException>(() => ImageDecoder.Decode(Write("trunc.png", png[..(png.Length / 2)])));
        Assert.Contains("trunc.png", truncated.Message);

        var badCrc = (byte[])png.Clone();
        badCrc[20] ^= 0xFF; // inside IHDR: its CRC no longer matches
        Assert.Contains("crc.png", Assert.Throws<DataSetException>(() => ImageDecoder.Decode(Write("crc.png", badCrc))).Message);

        var jpeg = ImageEncoder.EncodeJpeg(Gradient(64, 64, 3), 64, 64, 3);
        var tj = Assert.Throws<DataSetException>(() => ImageDecoder.Decode(Write("trunc.jpg", jpeg[..(jpeg.Length / 2)])));
        Assert.Contains("trunc.jpg", tj.Message);
        Assert.Contains("trunc2.jpg", Assert.Throws<DataSetException>(() => ImageDecoder.Decode(Write("trunc2.jpg", jpeg[..40]))).Message);

        var missing = Assert.Throws<DataSetException>(() => ImageDecoder.Decode(_tmp.File("nope.png")));
        Assert.Contains("nope.png", missing.Message);
    }

    [Fact]
    public void ResizeMatchesTorchBilinear()
    {
        // Upscale 2 → 4 (align_corners=False): torch gives [a, .75a+.25b, .25a+.75b, b].
        var up = ImageOps.Resize(new DecodedImage([0, 100], 2, 1, 1), 4, 1);
        Assert.Equal(new byte[] { 0, 25, 75, 100 }, up.Pixels);
        // Downscale 4 → 2: the mean of each pair.
        var down = ImageOps.Resize(new DecodedImage([10, 20, 100, 201], 4, 1, 1), 2, 1);
        Assert.Equal(new byte[] { 15, 150 }, down.Pixels); // 150.5 rounds half to even
        // 2-D, 3 channels against a double-precision reference.
        var src = Pattern(5, 3, 3);
        var r = ImageOps.Resize(new DecodedImage(src, 5, 3, 3), 8, 7);
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 8; x++)
                for (int k = 0; k < 3; k++)
                {
                    double Ref(double sy, double sx)
                    {
                        sy = Math.Max(sy, 0); sx = Math.Max(sx, 0);
                        int y0 = (int)sy, x0 = (int)sx, y1 = Math.Min(y0 + 1, 2), x1 = Math.Min(x0 + 1, 4);
                        double ly = sy - y0, lx = sx - x0;
                        byte P(int yy, int xx) => src[(yy * 5 + xx) * 3 + k];
                        return (1 - ly) * ((1 - lx) * P(y0, x0) + lx * P(y0, x1)) + ly * ((1 - lx) * P(y1, x0) + lx * P(y1, x1));
                    }
                    double v = Ref((y + 0.5) * 3 / 7 - 0.5, (x + 0.5) * 5 / 8 - 0.5);
                    Assert.InRange(r.Pixels[(y * 8 + x) * 3 + k], Math.Round(v) - 1, Math.Round(v) + 1);
                }
        var same = new DecodedImage(src, 5, 3, 3);
        Assert.Same(same, ImageOps.Resize(same, 5, 3));
    }
}
