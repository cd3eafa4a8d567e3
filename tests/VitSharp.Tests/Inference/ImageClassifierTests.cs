using System.Text.Json.Nodes;
using VitSharp.Cli;
using VitSharp.Data;
using VitSharp.Inference;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;
using VitSharp.Tests.Training;
using VitSharp.Training;

namespace VitSharp.Tests.Inference;

/// <summary><see cref="ImageClassifier"/>: the library's image → class path, checked against <c>vit predict --json</c>.</summary>
public sealed class ImageClassifierTests : IDisposable
{
    private readonly TempDir _dir = new("classifier");
    private readonly string _checkpoint, _image;

    public ImageClassifierTests()
    {
        // An RGB ViT with a normalisation, saved as vit train saves it; a PNG of another size (so it is resized).
        Init.Seed(4);
        var config = SyntheticImages.Config(channels: 3);
        var model = new ViT(config);
        var info = new DataInfo("custom", SyntheticImages.Classes, 3, 8, 8, [0.4f, 0.5f, 0.6f], [0.2f, 0.25f, 0.3f]);
        _checkpoint = _dir.File("model.safetensors");
        Checkpoint.Save(_checkpoint, model, new CheckpointInfo(ModelSpec.ViT(config), info.ToJson(), new JsonObject()));
        var rng = new Random(9);
        var rgb = new byte[13 * 11 * 3];
        rng.NextBytes(rgb);
        _image = _dir.File("photo.png");
        File.WriteAllBytes(_image, PngWriter.Encode(rgb, 13, 11, colorType: 2));
    }

    public void Dispose() => _dir.Dispose();

    private static (int Code, string Out, string Err) Vit(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static void AssertSameTop(JsonArray expected, ImagePrediction actual)
    {
        Assert.Equal(expected.Count, actual.Top.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i]!["index"]!.GetValue<int>(), actual.Top[i].Index);
            Assert.Equal(expected[i]!["class"]!.GetValue<string>(), actual.Top[i].Name);
            Assert.Equal(expected[i]!["probability"]!.GetValue<double>(), Math.Round((double)actual.Top[i].Probability, 6));
        }
    }

    [Fact]
    public void PathStreamAndBytesGiveTheSameTopKAsVitPredictJson()
    {
        var (code, stdout, stderr) = Vit("predict", _checkpoint, _image, "--top", "3", "--json");
        Assert.True(code == 0, stderr);
        var expected = JsonNode.Parse(stdout)!["predictions"]![0]!["top"]!.AsArray();
        Assert.Equal(3, expected.Count);

        var classifier = ImageClassifier.Load(_checkpoint);
        Assert.Equal((3, 8, 8), classifier.InputShape);
        var fromPath = classifier.Predict(_image, topK: 3);
        Assert.Equal(_image, fromPath.Image);
        AssertSameTop(expected, fromPath);
        using (var stream = File.OpenRead(_image)) AssertSameTop(expected, classifier.Predict(stream, topK: 3));
        AssertSameTop(expected, classifier.Predict(File.ReadAllBytes(_image), topK: 3, name: "upload.png"));
        AssertSameTop(expected, classifier.PredictBatch([_image, _image], topK: 3)[1]);
        Assert.Equal(fromPath.Best, fromPath.Top[0]);
        Assert.Equal(SyntheticImages.Classes.Length, classifier.Predict(_image, topK: 50).Top.Count);   // capped at the class count
    }

    [Fact]
    public void ABadImageGivesAOneLineErrorNamingIt()
    {
        var classifier = ImageClassifier.Load(_checkpoint);
        string text = _dir.File("notes.png");
        File.WriteAllText(text, "this is not an image\n");
        var e = Assert.Throws<DataSetException>(() => classifier.Predict(text));
        Assert.Contains(text, e.Message);
        Assert.Contains("not a PNG or JPEG", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        var fromBytes = Assert.Throws<DataSetException>(() => classifier.Predict("GIF89a"u8.ToArray(), name: "upload.gif"));
        Assert.Contains("upload.gif", fromBytes.Message);
        var missing = Assert.Throws<DataSetException>(() => classifier.PredictBatch([_image, _dir.File("gone.png")]));
        Assert.Contains("gone.png", missing.Message);
        Assert.Throws<ArgumentException>(() => classifier.Predict(_image, topK: 0));
    }

    [Fact]
    public void AttentionMapCoversThePatchGridAndMatchesVitPredictsDrawing()
    {
        var classifier = ImageClassifier.Load(_checkpoint);
        Assert.True(classifier.SupportsAttention);
        var map = classifier.AttentionMap(_image);
        Assert.Equal((2, 2), (map.GridHeight, map.GridWidth));
        Assert.Equal(4, map.Map.Length);
        Assert.All(map.Map, v => Assert.True(float.IsFinite(v) && v >= 0));
        Assert.Equal((13, 11), (map.Image.Width, map.Image.Height));

        string mine = _dir.File("mine.png"), cli = _dir.File("cli.png");
        map.SavePng(mine);
        Assert.Equal(0, Vit("predict", _checkpoint, _image, "--attention", cli).Code);
        Assert.Equal(File.ReadAllBytes(cli), File.ReadAllBytes(mine));
    }
}
