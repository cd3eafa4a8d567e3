using System.Text.Json.Nodes;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary><c>vit train</c>, <c>vit eval</c> and <c>vit summary</c> with the T2T-ViT and PiT Fashion-MNIST presets.</summary>
[Trait("Category", "DataSet")]
[Trait("Category", "Slow")]
public sealed class T2TPiTCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-t2tpit-" + Guid.NewGuid().ToString("N"))).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Theory]
    [InlineData("t2t-fmnist", "vit_pytorch.t2t.T2TViT")]
    [InlineData("pit-fmnist", "vit_pytorch.pit.PiT")]
    public void TrainsAFewStepsOnAFashionMnistSubsetThenEvaluates(string preset, string constructor)
    {
        string outDir = Path.Combine(_dir, preset);
        // 128 images at batch 32: four optimizer steps.
        var r = TrainCliTests.Run("train", "--model", preset, "--train-limit", "128", "--test-limit", "64", "--epochs", "1",
            "--batch-size", "32", "--out", outDir);
        Assert.True(r.Code == 0, $"exit {r.Code}\nstdout:\n{r.Out}\nstderr:\n{r.Err}");
        string ckpt = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
        Assert.Equal(Path.Combine(outDir, "checkpoint.safetensors"), ckpt);

        var loaded = Checkpoint.Load(ckpt);
        Assert.Equal(constructor, loaded.Info.Model.Constructor);
        Assert.Equal(1, loaded.Info.Model.Kwargs["channels"]!.GetValue<int>());
        Assert.Equal(10, loaded.Info.Model.Kwargs["num_classes"]!.GetValue<int>());
        Assert.Equal(4L, loaded.Info.Training["step"]!.GetValue<long>());

        // The trained weights moved away from the seed-0 initialisation the run started from, in every parameter.
        Init.Seed(0);
        var initial = loaded.Info.Model.Build().StateDict();
        foreach (var (name, p) in loaded.Model.StateDict())
            Assert.False(initial[name].Data.SequenceEqual(p.Data), $"{name} did not change in training");

        var line = File.ReadLines(Path.Combine(outDir, "metrics.jsonl")).Last();
        var metrics = JsonNode.Parse(line)!;
        Assert.True(double.IsFinite(metrics["train_loss"]!.GetValue<double>()), line);

        var e = TrainCliTests.Run("eval", ckpt, "--limit", "32", "--json");
        Assert.True(e.Code == 0, $"exit {e.Code}\nstderr:\n{e.Err}");
        Assert.Equal(32, JsonNode.Parse(e.Out)!["count"]!.GetValue<int>());
    }

    [Theory]
    // Totals from vit-pytorch's constructors (independent count): T2T-ViT with soft split (3, 2), (3, 2) on 28×28×1, dim 128,
    // depth 7, 4 heads of 32, mlp 256; PiT with patch 4, dim 64, depth [2, 3, 1], heads [2, 4, 8] of 32, mlp 256.
    [InlineData("t2t-fmnist", "943,719", "to_patch_embedding.3.layers.0.0.to_qkv", "[1, 50, 128]")]
    [InlineData("pit-fmnist", "1,033,482", "layers.1.downsample.net.0", "[1, 17, 256]")]
    public void SummaryPrintsTheModuleTreeAndTotal(string preset, string total, string module, string shape)
    {
        var r = TrainCliTests.Run("summary", "--model", preset);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"Total parameters: {total}", r.Out);
        Assert.Contains(module, r.Out);
        Assert.Contains(shape, r.Out);
        Assert.Contains("[1, 10]", r.Out);
    }
}
