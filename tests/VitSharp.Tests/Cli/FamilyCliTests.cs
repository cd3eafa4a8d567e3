using System.Text.Json.Nodes;
using VitSharp.Cli;
using VitSharp.Data;
using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary><c>vit train / eval / predict / summary</c> with a CaiT preset: 3-channel model, grey data.</summary>
public sealed class FamilyCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-familycli-" + Guid.NewGuid().ToString("N"))).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void CaiTPresetTrainsEvaluatesAndPredictsOnGreyImages()
    {
        string outDir = Path.Combine(_dir, "run");
        var r = TrainCliTests.Run("train", "--model", "cait-fmnist", "--train-limit", "48", "--test-limit", "16", "--epochs", "1",
            "--batch-size", "16", "--out", outDir);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("repeated into 3 channels", r.Out);
        string ckptPath = Path.Combine(outDir, Trainer.CheckpointFile);
        Assert.EndsWith(ckptPath, r.Out.TrimEnd());

        // vit eval rebuilds the CaiT and repeats the grey test images again: the run's own test accuracy.
        var e = TrainCliTests.Run("eval", ckptPath, "--limit", "16", "--json");
        Assert.True(e.Code == 0, e.Err);
        double accuracy = JsonNode.Parse(e.Out.Trim().Split('\n')[^1])!["accuracy"]!.GetValue<double>();
        var metrics = JsonNode.Parse(File.ReadAllLines(Path.Combine(outDir, Trainer.MetricsFile))[^1])!;
        Assert.Equal(metrics["test_accuracy"]!.GetValue<double>(), accuracy);

        // vit predict decodes a grey PNG as 3 channels, which equals the repeated grey plane the model was trained on.
        var test = FashionMnist.Load(train: false);
        var paths = new string[4];
        for (int i = 0; i < paths.Length; i++)
        {
            paths[i] = Path.Combine(_dir, $"t{i}.png");
            ImageEncoder.SavePng(paths[i], test.RawPixels(i).ToArray(), 28, 28, 1);
        }
        var ckpt = Checkpoint.Load(ckptPath);
        var info = DataInfo.FromJson(ckpt.Info.Data);
        var batch = new DataLoader(DataSets.Limit(new RepeatChannelsDataset(test, 3), 4), 4, shuffle: false, seed: 0, info.Normalize()).GetBatch(0, 0);
        Assert.Equal(new[] { 4, 3, 28, 28 }, batch.Images.Shape);
        ckpt.Model.Eval();
        Tensor logits;
        using (VitSharp.Autograd.NoGrad()) logits = ckpt.Model.Forward(batch.Images);
        var predictions = new VitSharp.Inference.ImageClassifier(ckpt).PredictBatch(paths, 1);
        Assert.Equal(Evaluator.ArgMax(logits), predictions.Select(p => p.Top[0].Index).ToArray());
    }

    [Theory]
    [InlineData("simplevit-fmnist", "SimpleViT", "[1, 1, 28, 28]")]
    [InlineData("deepvit-fmnist", "DeepViT", "[1, 1, 28, 28]")]
    [InlineData("cait-fmnist", "CaiT", "[1, 3, 28, 28]")]
    public void SummaryOfEachFamilyPreset(string preset, string type, string input)
    {
        var r = TrainCliTests.Run("summary", "--model", preset, "--json");
        Assert.True(r.Code == 0, r.Err);
        var j = JsonNode.Parse(r.Out)!;
        Assert.Equal(Presets.Get(preset).Build().ParameterCount(), j["total_parameters"]!.GetValue<long>());
        Assert.Equal(input, Tensor.ShapeString(j["input_shape"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray()));
        var root = j["modules"]!.AsArray()[0]!;
        Assert.Equal(type, root["type"]!.GetValue<string>());
        Assert.Equal("[1, 10]", Tensor.ShapeString(root["output_shape"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray()));
    }
}
