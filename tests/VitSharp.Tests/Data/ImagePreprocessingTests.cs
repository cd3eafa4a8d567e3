using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.IO;
using Xunit.Abstractions;

namespace VitSharp.Tests.Data;

public class ImagePreprocessingTests(ITestOutputHelper output)
{
    private static string Pretrained(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    // ---- against torchvision 0.14 + PIL ----------------------------------------------------------------------

    [Theory]
    // Measured here: all three bit-identical to torchvision (max |Δ| 0). PNG has no decoder in question, so Pillow's
    // resampling must be reproduced exactly; the JPEGs also match because libjpeg-turbo (Debian's libturbojpeg0, as
    // scripts/setup.sh installs) decodes as PIL's libjpeg-turbo does — another JPEG decoder may differ by a grey
    // level (the fixture README allows 1e-2).
    [InlineData("photo.png", "imagenet_eval.photo_png", 0.0)]
    [InlineData("photo.jpg", "imagenet_eval.photo_jpg", 1e-6)]
    [InlineData("gray.jpg", "imagenet_eval.gray_jpg", 1e-6)]
    public void ImageNetEvalMatchesTorchvision(string file, string key, double tolerance)
    {
        var expected = Weights.Load(Pretrained("expected.safetensors"))[key];
        Assert.Equal([3, 224, 224], expected.Shape);
        Assert.True(expected.Data.Max() - expected.Data.Min() > 1, "the expected image should not be flat");
        var (max, mean) = Compare(ImagePreprocessing.ImageNetEval(), file, expected.Data);
        output.WriteLine($"{file}: max |Δ| {max:E3}, mean |Δ| {mean:E3}");
        Assert.True(max <= tolerance, $"{file}: max |Δ| {max} > {tolerance}");
    }

    [Fact]
    public void TorchvisionsNumbersNeedPillowsAntialiasing()
    {
        // The same pipeline with torch's tensor interpolation (no antialiasing) is visibly different: the fixture
        // pins Pillow's resampling, not just any bilinear resize.
        var expected = Weights.Load(Pretrained("expected.safetensors"))["imagenet_eval.photo_png"];
        var (max, mean) = Compare(ImagePreprocessing.ImageNetEval() with { Antialias = false }, "photo.png", expected.Data);
        output.WriteLine($"photo.png without antialiasing: max |Δ| {max:E3}, mean |Δ| {mean:E3}");
        Assert.True(max > 0.1, $"max |Δ| {max}");
    }

    private static (double Max, double Mean) Compare(ImagePreprocessing pre, string file, float[] expected)
    {
        var actual = pre.Apply(ImageDecoder.Decode(Pretrained(file), channels: 3));
        Assert.Equal(expected.Length, actual.Length);
        double max = 0, sum = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double d = Math.Abs(actual[i] - expected[i]);
            max = Math.Max(max, d);
            sum += d;
        }
        return (max, sum / actual.Length);
    }

    [Fact]
    public void ResizeShorterSideTruncatesTheLongSideAsTorchvision()
    {
        var pre = ImagePreprocessing.ImageNetEval();
        Assert.Equal((256, 341), pre.ResizedSize(375, 500)); // int(256 · 500 / 375) = int(341.33)
        Assert.Equal((256, 384), pre.ResizedSize(300, 451)); // int(384.85): truncation, not rounding
        Assert.Equal((341, 256), pre.ResizedSize(500, 375));
        Assert.Equal((256, 256), pre.ResizedSize(99, 99));
        Assert.Equal((224, 224), pre.OutputSize(300, 451));
        var exact = new ImagePreprocessing { Resize = ResizeMode.Exact, ResizeHeight = 20, ResizeWidth = 30 };
        Assert.Equal((20, 30), exact.OutputSize(7, 9));
    }

    [Theory]
    // torchvision: int(round((h − ch) / 2.0)), half to even; Hugging Face: floor.
    [InlineData(10, 4, CropRounding.TorchVision, 3)]
    [InlineData(5, 4, CropRounding.TorchVision, 0)]  // round(0.5) = 0
    [InlineData(7, 4, CropRounding.TorchVision, 2)]  // round(1.5) = 2
    [InlineData(9, 4, CropRounding.TorchVision, 2)]  // round(2.5) = 2
    [InlineData(7, 4, CropRounding.HuggingFace, 1)]
    [InlineData(9, 4, CropRounding.HuggingFace, 2)]
    [InlineData(2, 5, CropRounding.TorchVision, -1)] // pads (5 − 2) // 2 = 1 before
    [InlineData(2, 5, CropRounding.HuggingFace, -2)] // pads ceil(3 / 2) = 2 before
    [InlineData(3, 3, CropRounding.TorchVision, 0)]
    public void CropOffsetFollowsEachLibrary(int size, int crop, CropRounding rounding, int offset) =>
        Assert.Equal(offset, ImagePreprocessing.CropOffset(size, crop, rounding));

    [Fact]
    public void CropLargerThanTheImagePadsWithZeros()
    {
        // 2×2 grey image, crop 4×3 (h×w), no rescale: rows padded 1 above and 1 below, columns 0 left and 1 right.
        var img = new DecodedImage([10, 20, 30, 40], 2, 2, 1);
        var pre = new ImagePreprocessing { Channels = 1, CropHeight = 4, CropWidth = 3, RescaleFactor = null };
        float[] x = pre.Apply(img);
        Assert.Equal(new float[] { 0, 0, 0, 10, 20, 0, 30, 40, 0, 0, 0, 0 }, x);
    }

    [Fact]
    public void RescaleAndNormaliseAreTorchvisionsFloat32Arithmetic()
    {
        var img = new DecodedImage([0, 1, 128, 255, 7, 200], 2, 1, 3);
        var pre = new ImagePreprocessing { Mean = [0.485f, 0.456f, 0.406f], Std = [0.229f, 0.224f, 0.225f] };
        float[] x = pre.Apply(img);
        float[] mean = [0.485f, 0.456f, 0.406f], std = [0.229f, 0.224f, 0.225f];
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 2; p++)
                Assert.Equal((img.Pixels[p * 3 + c] / 255f - mean[c]) / std[c], x[c * 2 + p]);
        // Another factor multiplies in double and rounds to float, as Hugging Face's rescale.
        var half = new ImagePreprocessing { RescaleFactor = 0.5 };
        Assert.Equal(63.5f, half.Apply(new DecodedImage([127, 127, 127], 1, 1, 3))[0]);
    }

    [Fact]
    public void GreyImagesAreConvertedToTheConfiguredChannels()
    {
        var grey = new DecodedImage([50, 100], 2, 1, 1);
        float[] rgb = new ImagePreprocessing { RescaleFactor = null }.Apply(grey);
        Assert.Equal(new float[] { 50, 100, 50, 100, 50, 100 }, rgb);
    }

    [Fact]
    public void ApplyResizesWithPillowOrTorch()
    {
        var rng = new Random(3);
        var bytes = new byte[17 * 13 * 3];
        rng.NextBytes(bytes);
        var img = new DecodedImage(bytes, 17, 13, 3);
        var pil = new ImagePreprocessing { Resize = ResizeMode.Exact, ResizeHeight = 6, ResizeWidth = 8, RescaleFactor = null };
        var expected = PilResample.Resize(img, 8, 6, PilFilter.Bilinear);
        float[] x = pil.Apply(img);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 48; p++)
                Assert.Equal(expected.Pixels[p * 3 + c], x[c * 48 + p]);
        var torch = pil with { Antialias = false };
        var aliased = ImageOps.Resize(img, 8, 6);
        float[] y = torch.Apply(img);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 48; p++)
                Assert.Equal(aliased.Pixels[p * 3 + c], y[c * 48 + p]);
    }

    [Fact]
    public void TorchNearestPicksFloorOfScaledIndex()
    {
        // 5 → 3 pixels: scale 5/3, sources floor(0), floor(1.67), floor(3.33) = 0, 1, 3.
        var img = new DecodedImage([0, 1, 2, 3, 4], 5, 1, 1);
        var pre = new ImagePreprocessing { Channels = 1, Resize = ResizeMode.Exact, ResizeHeight = 1, ResizeWidth = 3, Interpolation = ResizeInterpolation.Nearest, Antialias = false, RescaleFactor = null };
        Assert.Equal(new float[] { 0, 1, 3 }, pre.Apply(img));
        // Pillow's nearest samples pixel centres: floor((d + ½) · 5/3) = 0, 2, 4.
        Assert.Equal(new float[] { 0, 2, 4 }, (pre with { Antialias = true }).Apply(img));
    }

    // ---- presets -------------------------------------------------------------------------------------------

    [Fact]
    public void PresetsDescribeTheirLibraries()
    {
        var tv = ImagePreprocessing.ImageNetEval();
        Assert.Equal(ResizeMode.ShorterSide, tv.Resize);
        Assert.Equal(256, tv.ResizeShorter);
        Assert.Equal(ResizeInterpolation.Bilinear, tv.Interpolation);
        Assert.True(tv.Antialias);
        Assert.Equal((224, 224), (tv.CropHeight, tv.CropWidth));
        Assert.Equal(CropRounding.TorchVision, tv.CropRounding);
        Assert.Equal(1.0 / 255, tv.RescaleFactor);
        Assert.Equal([0.485f, 0.456f, 0.406f], tv.Mean!);
        Assert.Equal([0.229f, 0.224f, 0.225f], tv.Std!);

        var timm = ImagePreprocessing.TimmEval();
        Assert.Equal(ResizeInterpolation.Bicubic, timm.Interpolation);
        Assert.Equal(256, timm.ResizeShorter); // floor(224 / 0.875)
        Assert.Equal(tv with { Interpolation = ResizeInterpolation.Bicubic }, timm);
        Assert.Equal(438, ImagePreprocessing.TimmEval(384, 0.875).ResizeShorter);
        Assert.Equal(384, ImagePreprocessing.TimmEval(384, 1.0).ResizeShorter);
    }

    [Fact]
    public void FromHuggingFaceReadsTheFixturesProcessorConfig()
    {
        var cfg = JsonNode.Parse(File.ReadAllText(Pretrained("hf_vit/preprocessor_config.json")))!.AsObject();
        var pre = ImagePreprocessing.FromHuggingFace(
            doResize: cfg["do_resize"]!.GetValue<bool>(),
            sizeHeight: cfg["size"]!["height"]!.GetValue<int>(), sizeWidth: cfg["size"]!["width"]!.GetValue<int>(),
            resample: cfg["resample"]!.GetValue<int>(),
            doRescale: cfg["do_rescale"]!.GetValue<bool>(), rescaleFactor: cfg["rescale_factor"]!.GetValue<double>(),
            doNormalize: cfg["do_normalize"]!.GetValue<bool>(),
            imageMean: cfg["image_mean"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray(),
            imageStd: cfg["image_std"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray());
        Assert.Equal(ResizeMode.Exact, pre.Resize);
        Assert.Equal((32, 32), (pre.ResizeHeight, pre.ResizeWidth));
        Assert.Equal(ResizeInterpolation.Bilinear, pre.Interpolation);
        Assert.True(pre.Antialias);
        Assert.False(pre.HasCrop);
        Assert.Equal(ImagePreprocessing.Rescale255, pre.RescaleFactor); // 0.00392156862745098 is 1/255 exactly
        Assert.Equal([0.5f, 0.5f, 0.5f], pre.Mean!);
        Assert.Equal((32, 32), pre.OutputSize(300, 451));
        Assert.Equal(pre, ImagePreprocessing.FromHuggingFace(cfg));
    }

    [Fact]
    public void FromHuggingFaceConfigNamesAFieldOfTheWrongType()
    {
        var cfg = JsonNode.Parse("{\"size\": {\"height\": \"32\", \"width\": 32}, \"image_mean\": [0.5], \"image_std\": [0.5]}")!.AsObject();
        Assert.Contains("\"size.height\"", Assert.Throws<FormatException>(() => ImagePreprocessing.FromHuggingFace(cfg)).Message);
        var resample = JsonNode.Parse("{\"size\": {\"shortest_edge\": 32}, \"resample\": \"bilinear\", \"do_normalize\": false}")!.AsObject();
        Assert.Contains("\"resample\"", Assert.Throws<FormatException>(() => ImagePreprocessing.FromHuggingFace(resample)).Message);
    }

    [Fact]
    public void FromHuggingFaceShortestEdgeAndCrop()
    {
        var pre = ImagePreprocessing.FromHuggingFace(shortestEdge: 256, resample: 3, doCenterCrop: true, cropHeight: 224, cropWidth: 224,
            imageMean: [0.485f, 0.456f, 0.406f], imageStd: [0.229f, 0.224f, 0.225f]);
        Assert.Equal(ResizeMode.ShorterSide, pre.Resize);
        Assert.Equal(ResizeInterpolation.Bicubic, pre.Interpolation);
        Assert.Equal(CropRounding.HuggingFace, pre.CropRounding);
        var none = ImagePreprocessing.FromHuggingFace(doResize: false, doRescale: false, doNormalize: false);
        Assert.Equal(ResizeMode.None, none.Resize);
        Assert.Null(none.RescaleFactor);
        Assert.Null(none.Mean);
    }

    [Fact]
    public void FromHuggingFaceRejectsUnsupportedOrMissingValues()
    {
        Assert.Contains("resample", Assert.Throws<ArgumentException>(() => ImagePreprocessing.FromHuggingFace(sizeHeight: 8, sizeWidth: 8, resample: 1, doNormalize: false)).Message);
        Assert.Contains("size", Assert.Throws<ArgumentException>(() => ImagePreprocessing.FromHuggingFace(sizeHeight: 8, doNormalize: false)).Message);
        Assert.Contains("crop_size", Assert.Throws<ArgumentException>(() => ImagePreprocessing.FromHuggingFace(doResize: false, doCenterCrop: true, doNormalize: false)).Message);
        Assert.Contains("image_mean", Assert.Throws<ArgumentException>(() => ImagePreprocessing.FromHuggingFace(doResize: false)).Message);
    }

    // ---- JSON ----------------------------------------------------------------------------------------------

    [Fact]
    public void JsonRoundTrips()
    {
        ImagePreprocessing[] all =
        [
            ImagePreprocessing.ImageNetEval(),
            ImagePreprocessing.TimmEval(384),
            ImagePreprocessing.FromHuggingFace(sizeHeight: 32, sizeWidth: 48, resample: 0, rescaleFactor: 0.5, imageMean: [0.5f, 0.5f, 0.5f], imageStd: [0.5f, 0.5f, 0.5f]),
            new ImagePreprocessing { Channels = 1, RescaleFactor = null, Antialias = false, Mean = [0.1307f], Std = [0.3081f] },
        ];
        foreach (var p in all)
        {
            string text = p.ToJson().ToJsonString();
            var back = ImagePreprocessing.FromJson(JsonNode.Parse(text)!.AsObject());
            Assert.Equal(p, back);
            Assert.Equal(text, back.ToJson().ToJsonString());
        }
        var j = ImagePreprocessing.ImageNetEval().ToJson();
        Assert.Equal("shorter_side", j["resize"]!.GetValue<string>());
        Assert.Equal(256, j["resize_shorter"]!.GetValue<int>());
        Assert.Equal("bilinear", j["interpolation"]!.GetValue<string>());
        Assert.Equal("torchvision", j["crop_rounding"]!.GetValue<string>());
    }

    private static JsonObject Valid() => JsonNode.Parse(ImagePreprocessing.ImageNetEval().ToJson().ToJsonString())!.AsObject();

    [Theory]
    [InlineData("channels")]
    [InlineData("resize")]
    [InlineData("resize_shorter")]
    [InlineData("interpolation")]
    [InlineData("antialias")]
    [InlineData("crop_height")]
    [InlineData("crop_width")]
    [InlineData("crop_rounding")]
    [InlineData("rescale_factor")]
    [InlineData("mean")]
    [InlineData("std")]
    public void FromJsonNamesAMissingField(string field)
    {
        var j = Valid();
        j.Remove(field);
        var e = Assert.Throws<FormatException>(() => ImagePreprocessing.FromJson(j));
        Assert.Contains($"\"{field}\"", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Theory]
    [InlineData("channels", "\"3\"")]
    [InlineData("channels", "3.5")]
    [InlineData("resize", "1")]
    [InlineData("resize_shorter", "true")]
    [InlineData("interpolation", "[]")]
    [InlineData("antialias", "\"yes\"")]
    [InlineData("crop_height", "null")]
    [InlineData("crop_rounding", "0")]
    [InlineData("rescale_factor", "\"1/255\"")]
    [InlineData("mean", "0.5")]
    [InlineData("std", "{}")]
    public void FromJsonNamesAFieldOfTheWrongType(string field, string value)
    {
        var j = Valid();
        j[field] = JsonNode.Parse(value);
        var e = Assert.Throws<FormatException>(() => ImagePreprocessing.FromJson(j));
        Assert.Contains($"\"{field}\"", e.Message);
    }

    [Theory]
    [InlineData("resize", "\"longest\"")]
    [InlineData("interpolation", "\"lanczos\"")]
    [InlineData("crop_rounding", "\"ceil\"")]
    public void FromJsonNamesAnUnknownValue(string field, string value)
    {
        var j = Valid();
        j[field] = JsonNode.Parse(value);
        var e = Assert.Throws<FormatException>(() => ImagePreprocessing.FromJson(j));
        Assert.Contains($"\"{field}\"", e.Message);
        Assert.Contains("unknown value", e.Message);
    }

    [Fact]
    public void FromJsonNamesAnArrayElementOfTheWrongType()
    {
        var j = Valid();
        j["mean"] = JsonNode.Parse("[0.5, \"x\", 0.5]");
        var e = Assert.Throws<FormatException>(() => ImagePreprocessing.FromJson(j));
        Assert.Contains("\"mean\"[1]", e.Message);
    }

    [Theory]
    [InlineData("channels", "2", "Channels")]
    [InlineData("resize_shorter", "0", "ResizeShorter")]
    [InlineData("crop_width", "0", "CropHeight and CropWidth")]
    [InlineData("std", "[0.2, 0, 0.2]", "Std")]
    [InlineData("mean", "[0.5, 0.5]", "Mean")]
    [InlineData("rescale_factor", "-1", "RescaleFactor")]
    public void FromJsonRejectsAnInconsistentRecord(string field, string value, string named)
    {
        var j = Valid();
        j[field] = JsonNode.Parse(value);
        var e = Assert.Throws<FormatException>(() => ImagePreprocessing.FromJson(j));
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void FromJsonNeedsResizeSizesOnlyForTheirMode()
    {
        var j = Valid();
        j["resize"] = "exact";
        Assert.Contains("\"resize_height\"", Assert.Throws<FormatException>(() => ImagePreprocessing.FromJson(j)).Message);
        j["resize_height"] = 10;
        j["resize_width"] = 12;
        var p = ImagePreprocessing.FromJson(j);
        Assert.Equal((10, 12, 0), (p.ResizeHeight, p.ResizeWidth, p.ResizeShorter));
    }

    [Fact]
    public void InvalidRecordsAreRefusedByApply()
    {
        var img = new DecodedImage([1, 2, 3], 1, 1, 3);
        Assert.Throws<ArgumentException>(() => new ImagePreprocessing { Channels = 4 }.Apply(img));
        Assert.Throws<ArgumentException>(() => new ImagePreprocessing { Mean = [0f, 0f, 0f] }.Apply(img));
        Assert.Throws<ArgumentException>(() => new ImagePreprocessing { Resize = ResizeMode.Exact, ResizeHeight = 2, ResizeWidth = 2, Interpolation = ResizeInterpolation.Bicubic, Antialias = false }.Apply(img));
    }
}
