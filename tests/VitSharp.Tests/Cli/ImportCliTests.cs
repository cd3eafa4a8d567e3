using System.Text.Json.Nodes;
using VitSharp.Cli;
using VitSharp.IO;
using VitSharp.Tests.Data;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary>
/// <c>vit import</c> on every pretrained fixture, the checkpoints it writes checked against PyTorch's logits; the other
/// commands (<c>predict</c>, <c>summary</c>) taking the weights files directly; bad sources as one-line errors.
/// </summary>
public sealed class ImportCliTests : IDisposable
{
    private readonly TempDir _dir = new("importcli");

    public void Dispose() => _dir.Dispose();

    private static string P(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    internal static (int Code, string Out, string Err) Run(params string[] args) => TrainCliTests.Run(args);

    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] fragments) =>
        CliAssert.OneLineError(r, fragments);

    private static float MaxLogitDiff(string checkpoint, string expectedKey)
    {
        var expected = Weights.Load(P("expected.safetensors"));
        var ck = Checkpoint.Load(checkpoint);
        ck.Model.Eval();
        using var noGrad = VitSharp.Autograd.NoGrad();
        var logits = ck.Model.Forward(expected["input"]);
        return expected[expectedKey].Data.Zip(logits.Data).Max(p => MathF.Abs(p.First - p.Second));
    }

    [Theory]
    [InlineData("tv_vit.pth", "vit_logits")]
    [InlineData("tv_vit_legacy.pth", "vit_logits")]
    [InlineData("tv_vit_fp16.pth", "vit_fp16_logits")]
    [InlineData("deit_checkpoint.pth", "vit_logits")]
    [InlineData("timm_vit.safetensors", "vit_logits")]
    [InlineData("google_vit.npz", "vit_logits")]
    [InlineData("hf_vit", "vit_eps1e-12_logits")]
    [InlineData("deit_distilled.pth", "deit_distilled_logits")]
    [InlineData("resnet.pth", "resnet_logits")]
    public void Import_EveryFixture_WritesACheckpointWithPyTorchsLogits(string source, string expectedKey)
    {
        string outPath = _dir.File(source.Replace('.', '_') + ".safetensors");
        // A bare state_dict does not say the head count: give it where the import would ask (the ViTs of width 48).
        string[] heads = source.StartsWith("tv_vit", StringComparison.Ordinal) || source.StartsWith("deit", StringComparison.Ordinal) || source.StartsWith("timm", StringComparison.Ordinal)
            ? ["--set", "num_heads=3"] : [];
        var r = Run(["import", P(source), "--out", outPath, .. heads]);
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(outPath, r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1].Trim());
        Assert.Contains("Model: ", r.Out);
        Assert.True(MaxLogitDiff(outPath, expectedKey) <= (source == "resnet.pth" ? 5e-5f : 5e-6f));   // achieved 1.1e-5 / ≤ 1e-6
    }

    [Fact]
    public void Import_RecordsEveryConstructorArgumentAndThePreprocessing()
    {
        string outPath = _dir.File("hf.safetensors");
        Assert.Equal(0, Run("import", P("hf_vit"), "--out", outPath).Code);
        var ck = Checkpoint.Load(outPath);
        Assert.Equal("torchvision.models.vision_transformer.VisionTransformer", ck.Info.Model.Constructor);
        Assert.Equal(1e-12, double.Parse(ck.Info.Model.Kwargs["layer_norm_eps"]!.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture), 15);
        var data = DataInfo.FromJson(ck.Info.Data);
        Assert.Equal("airplane", data.ClassNames[0]);
        Assert.NotNull(data.Preprocessing);
    }

    [Fact]
    public void Import_EvilPickle_OneLineErrorNamingTheGlobal_NothingWritten()
    {
        const string pwned = "/tmp/vitsharp-pwned";
        File.Delete(pwned);
        string outPath = _dir.File("evil.safetensors");
        var r = Run("import", P("evil.pth"), "--out", outPath);
        AssertOneLineError(r, "evil.pth", "posix.system");
        Assert.False(File.Exists(pwned));
        Assert.False(File.Exists(outPath));
    }

    [Fact]
    public void Import_BareStateDictWithoutHeadCount_SaysWhatIsMissing()
    {
        var r = Run("import", P("tv_vit.pth"), "--out", _dir.File("x.safetensors"));
        AssertOneLineError(r, "tv_vit.pth", "attention heads", "--set num_heads=N");
    }

    [Fact]
    public void Import_MissingSource_OneLineError()
    {
        var r = Run("import", _dir.File("nope.pth"), "--out", _dir.File("x.safetensors"));
        AssertOneLineError(r, "nope.pth");
    }

    [Fact]
    public void Predict_TakesAHuggingFaceFolderDirectly_WithItsClassNames()
    {
        var r = Run("predict", P("hf_vit"), P("photo.jpg"), "--json", "--top", "3");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(r.Out)!;
        var top = json["predictions"]![0]!["top"]!.AsArray();
        Assert.Equal(3, top.Count);
        string[] cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
        Assert.Contains(top[0]!["class"]!.GetValue<string>(), cifar);
    }

    [Fact]
    public void Eval_HuggingFaceFolderOnAnImageFolder_AgreesWithPredictImageByImage()
    {
        // An image folder named with the snapshot's classes; the fixture photos at odd sizes, so the recorded resize matters.
        string[] cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
        string root = _dir.File("images");
        var images = new[] { "photo.jpg", "photo.png", "gray.jpg" };
        for (int k = 0; k < 3; k++)
        {
            Directory.CreateDirectory(Path.Combine(root, cifar[k]));
            File.Copy(P(images[k]), Path.Combine(root, cifar[k], "img" + Path.GetExtension(images[k])));
        }
        // The folder's classes must be the checkpoint's ten: the other seven get one copy each.
        for (int k = 3; k < 10; k++)
        {
            Directory.CreateDirectory(Path.Combine(root, cifar[k]));
            File.Copy(P(images[k % 3]), Path.Combine(root, cifar[k], "img" + Path.GetExtension(images[k % 3])));
        }
        var r = Run("eval", P("hf_vit"), "--data", root, "--json");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(r.Out)!;
        Assert.Equal(10, json["count"]!.GetValue<int>());

        // Each image's row of the confusion matrix has its one count where predict puts the image.
        var confusion = json["confusion"]!.AsArray();
        for (int k = 0; k < 10; k++)
        {
            string file = Directory.GetFiles(Path.Combine(root, cifar[k]))[0];
            var p = Run("predict", P("hf_vit"), file, "--json", "--top", "1");
            Assert.True(p.Code == 0, p.Err);
            int predicted = JsonNode.Parse(p.Out)!["predictions"]![0]!["top"]![0]!["index"]!.GetValue<int>();
            Assert.Equal(1, confusion[k]![predicted]!.GetValue<int>());
        }
    }

    [Fact]
    public void Summary_TakesAWeightsFile()
    {
        var r = Run("summary", "--model", P("resnet.pth"));
        Assert.True(r.Code == 0, r.Err);
        long count = VitSharp.Import.WeightImporter.Import(P("resnet.pth")).Model.NamedParameters().Sum(p => (long)p.Parameter.Size);
        Assert.Contains($"Total parameters: {count:N0}", r.Out);
    }
}
