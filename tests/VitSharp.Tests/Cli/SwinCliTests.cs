using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary>Swin through the CLI: <c>vit train/eval/predict</c> with the Fashion-MNIST preset, <c>vit summary</c>,
/// <c>vit bench</c>, <c>vit import</c> of the fixture's PyTorch weights, <c>vit parity</c>.</summary>
[Trait("Category", "DataSet")]
[Trait("Category", "Slow")]
public sealed class SwinCliTests : IDisposable
{
    private const string Ctor = "torchvision.models.swin_transformer.SwinTransformer";
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-swin-" + Guid.NewGuid().ToString("N"))).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public void TrainsAFewStepsOnAFashionMnistSubsetThenEvaluatesAndPredicts()
    {
        string outDir = Path.Combine(_dir, "swin");
        // 128 images at batch 32: four optimizer steps.
        var r = TrainCliTests.Run("train", "--model", "swin-fmnist", "--train-limit", "128", "--test-limit", "64", "--epochs", "1",
            "--batch-size", "32", "--out", outDir);
        Assert.True(r.Code == 0, $"exit {r.Code}\nstdout:\n{r.Out}\nstderr:\n{r.Err}");
        string ckpt = Lines(r.Out)[^1];
        var loaded = Checkpoint.Load(ckpt);
        Assert.Equal(Ctor, loaded.Info.Model.Constructor);
        Assert.Equal(1, loaded.Info.Model.Kwargs["in_chans"]!.GetValue<int>());
        Assert.Equal(10, loaded.Info.Model.Kwargs["num_classes"]!.GetValue<int>());
        Assert.Equal(4L, loaded.Info.Training["step"]!.GetValue<long>());
        Init.Seed(0);
        var initial = loaded.Info.Model.Build().StateDict();
        foreach (var (name, p) in loaded.Model.NamedParameters())
            Assert.False(initial[name].Data.SequenceEqual(p.Data), $"{name} did not change in training");

        var e = TrainCliTests.Run("eval", ckpt, "--limit", "32", "--json");
        Assert.True(e.Code == 0, $"exit {e.Code}\nstderr:\n{e.Err}");
        Assert.Equal(32, JsonNode.Parse(Lines(e.Out)[^1])!["count"]!.GetValue<int>());

        string png = Path.Combine(_dir, "image.png");
        ImageEncoder.SavePng(png, FashionMnist.Load(train: false).RawPixels(0).ToArray(), 28, 28, 1);
        var p1 = TrainCliTests.Run("predict", ckpt, png, "--top", "10", "--json");
        Assert.True(p1.Code == 0, p1.Err);
        var top = JsonNode.Parse(Lines(p1.Out)[^1])!["predictions"]![0]!["top"]!.AsArray();
        Assert.Equal(10, top.Count);
        Assert.Equal(1.0, top.Sum(t => t!["probability"]!.GetValue<double>()), 4);

        // Attention rollout needs a class token over a patch grid; Swin has windows: a one-line error, not a stack trace.
        var p2 = TrainCliTests.Run("predict", ckpt, png, "--attention", Path.Combine(_dir, "map.png"));
        Assert.NotEqual(0, p2.Code);
        Assert.Contains("--attention needs a ViT-family model", p2.Err);
        Assert.DoesNotContain("   at ", p2.Err);
    }

    [Fact]
    public void SummaryPrintsTheTreeWithTorchvisionsKeysAndTheTotal()
    {
        var r = TrainCliTests.Run("summary", "--model", "swin_t");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("Total parameters: 28,288,354 (published: 28,288,354, equal)", r.Out);
        Assert.Contains("features.5.17", TrainCliTests.Run("summary", "--model", "swin_s").Out);
        Assert.Contains("features.1.0.attn.qkv", r.Out);
        Assert.Contains("[1, 7, 7, 768]", r.Out);   // the last stage of a 224² image
    }

    [Fact]
    public void BenchTimesATrainingStepAndCountsItsFlops()
    {
        var r = TrainCliTests.Run("bench", "--model", "swin-fmnist", "--train", "--batch", "4", "--warmup", "2", "--steps", "2", "--json");
        Assert.True(r.Code == 0, r.Err);
        var j = JsonNode.Parse(Lines(r.Out)[^1])!;
        // 3× the forward of 4 images, counted from torchvision's shapes (Flops.SwinForwardFlops; SwinTests checks it).
        double expected = 3.0 * VitSharp.Models.Flops.SwinForwardFlops(VitSharp.Models.Presets.SwinFashionMnist, 4, 28, 28) / 1e9;
        Assert.Equal(expected, j["gflop_per_step"]!.GetValue<double>(), 3);
        Assert.Equal("swin-fmnist", j["model"]!.GetValue<string>());
    }

    [Fact]
    public void ImportThenPredictAndParity()
    {
        string ckpt = Path.Combine(_dir, "imported.safetensors");
        var r = TrainCliTests.Run("import", TestFixtures.Prefix("swin_v2") + ".weights.safetensors", "--out", ckpt);
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(ckpt, Lines(r.Out)[^1]);
        Assert.Contains("bicubic", r.Out);
        // Fine-tuning the imported Swin on grey Fashion-MNIST: the head is replaced (10 classes), the rest frozen, and
        // the images repeated into its 3 channels, which the run says naming the weights it started from.
        string ft = Path.Combine(_dir, "finetune");
        var t = TrainCliTests.Run("train", "--init", ckpt, "--freeze", "--train-limit", "64", "--test-limit", "32", "--epochs", "1",
            "--batch-size", "32", "--out", ft);
        Assert.True(t.Code == 0, t.Err);
        Assert.Contains("imported.safetensors takes 3-channel images", t.Out);
        var tuned = Checkpoint.Load(Lines(t.Out)[^1]);
        Assert.Equal(10, tuned.Info.Model.Kwargs["num_classes"]!.GetValue<int>());
        Assert.Equal("SwinTransformerBlockV2", tuned.Info.Model.Kwargs["block"]!.GetValue<string>());

        var parity = TrainCliTests.Run("parity", TestFixtures.Prefix("swin"));
        Assert.True(parity.Code == 0, parity.Err);
        Assert.Contains("PASS: 65/65 within tolerance", parity.Out);
    }
}
