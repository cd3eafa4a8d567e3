using VitSharp.Data;

namespace VitSharp.Tests.Data;

public sealed class ImageFolderTests : IDisposable
{
    private readonly TempDir _tmp = new("folder");

    public void Dispose() => _tmp.Dispose();

    private string Class(string name)
    {
        string d = Path.Combine(_tmp.Path, name);
        Directory.CreateDirectory(d);
        return d;
    }

    [Fact]
    public void LoadsSortedClassesResizedAndConverted()
    {
        var a = ImageDecoderTests.Pattern(8, 8, 3);
        File.WriteAllBytes(Path.Combine(Class("dog"), "z.png"), PngWriter.Encode(a, 8, 8, 2));
        File.WriteAllBytes(Path.Combine(Class("cat"), "b.PNG"), PngWriter.Encode(ImageDecoderTests.Pattern(4, 4, 1), 4, 4, 0));
        ImageEncoder.SaveJpeg(Path.Combine(Class("cat"), "a.jpg"), ImageDecoderTests.Gradient(16, 12, 3), 16, 12, 3);
        File.WriteAllText(Path.Combine(Class("cat"), "notes.txt"), "ignored");
        File.WriteAllBytes(Path.Combine(Class("ant"), "x.jpeg"), ImageEncoder.EncodeJpeg(ImageDecoderTests.Gradient(8, 8, 1), 8, 8, 1));

        var ds = new ImageFolderDataset(_tmp.Path, size: 8, channels: 3);
        Assert.Equal(new[] { "ant", "cat", "dog" }, ds.ClassNames);
        Assert.Equal(4, ds.Count);
        Assert.Equal((3, 8, 8), (ds.Channels, ds.Height, ds.Width));
        Assert.Equal(new[] { 0, 1, 1, 2 }, Enumerable.Range(0, 4).Select(ds.Label));
        Assert.Equal(new[] { "x.jpeg", "a.jpg", "b.PNG", "z.png" }, ds.Files.Select(Path.GetFileName));

        // The 8×8 PNG is already the right size: exact pixels, laid out C×H×W.
        var px = new float[3 * 64];
        ds.ReadPixels(3, px);
        for (int p = 0; p < 64; p++)
            for (int k = 0; k < 3; k++)
                Assert.Equal(a[p * 3 + k] / 255f, px[k * 64 + p]);

        // The grey 4×4 PNG was upscaled and replicated to three equal planes.
        var raw = ds.RawPixels(2).ToArray();
        Assert.Equal(raw[..64], raw[64..128]);
        Assert.Equal(raw[..64], raw[128..]);
        var expected = ImageOps.Resize(new DecodedImage(ImageDecoderTests.Pattern(4, 4, 1), 4, 4, 1), 8, 8).Pixels;
        Assert.Equal(expected, raw[..64]);

        var grey = new ImageFolderDataset(_tmp.Path, size: 5, channels: 1);
        Assert.Equal((1, 5, 5), (grey.Channels, grey.Height, grey.Width));
        Assert.Equal(4, grey.Count);
    }

    [Fact]
    public void Errors()
    {
        var empty = Assert.Throws<DataSetException>(() => new ImageFolderDataset(_tmp.Path, 8));
        Assert.Contains(_tmp.Path, empty.Message);
        Assert.Contains("no class folders", empty.Message);

        Assert.Contains("not found", Assert.Throws<DataSetException>(() => new ImageFolderDataset(_tmp.File("missing"), 8)).Message);

        File.WriteAllBytes(Path.Combine(Class("good"), "a.png"), PngWriter.Encode(ImageDecoderTests.Pattern(4, 4, 3), 4, 4, 2));
        string emptyClass = Class("hollow");
        File.WriteAllText(Path.Combine(emptyClass, "readme.txt"), "no images here");
        var noImages = Assert.Throws<DataSetException>(() => new ImageFolderDataset(_tmp.Path, 8));
        Assert.Contains("hollow", noImages.Message);

        File.WriteAllBytes(Path.Combine(emptyClass, "broken.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]);
        var broken = Assert.Throws<DataSetException>(() => new ImageFolderDataset(_tmp.Path, 8));
        Assert.Contains("broken.jpg", broken.Message);
    }
}
