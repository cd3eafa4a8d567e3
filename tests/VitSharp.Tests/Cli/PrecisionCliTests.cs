using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.Inference;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary><c>--precision</c> on <c>vit eval</c>, <c>vit predict</c> and <c>vit serve</c>: applied as the library applies it, bad names refused.</summary>
public sealed class PrecisionCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-precisioncli-" + Guid.NewGuid().ToString("N"))).FullName;
    private readonly string _checkpoint, _image;

    public PrecisionCliTests()
    {
        Init.Seed(11);
        var model = Presets.Get("vit-fmnist").Spec.Build();
        var info = new DataInfo("fashion-mnist", FashionMnist.ClassNames, 1, 28, 28, [0.2860f], [0.3530f]);
        _checkpoint = Path.Combine(_dir, "model.safetensors");
        Checkpoint.Save(_checkpoint, model, new CheckpointInfo(Presets.Get("vit-fmnist").Spec, info.ToJson(), new JsonObject()));
        var rng = new Random(3);
        var pixels = new byte[28 * 28];
        rng.NextBytes(pixels);
        _image = Path.Combine(_dir, "x.png");
        ImageEncoder.SavePng(_image, pixels, 28, 28, 1);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Theory]
    [InlineData("bf16")]
    [InlineData("int8")]
    public void PredictGivesWhatTheLibraryGivesInThatPrecision(string precision)
    {
        var r = TrainCliTests.Run("predict", _checkpoint, _image, "--precision", precision, "--top", "3", "--json");
        Assert.True(r.Code == 0, r.Err);
        var top = JsonNode.Parse(r.Out.Trim().Split('\n')[^1])!["predictions"]![0]!["top"]!.AsArray();
        var expected = ImageClassifier.Load(_checkpoint, precision: InferencePrecisions.Parse(precision)).Predict(_image, topK: 3).Top;
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(expected[i].Index, top[i]!["index"]!.GetValue<int>());
            Assert.Equal(Math.Round((double)expected[i].Probability, 6), top[i]!["probability"]!.GetValue<double>());
        }
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void EvalReportsThePrecisionAndTheAccuracyOfThatPrecision()
    {
        var r = TrainCliTests.Run("eval", _checkpoint, "--limit", "200", "--precision", "int8", "--json");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(r.Out.Trim().Split('\n')[^1])!;
        Assert.Equal("int8", json["precision"]!.GetValue<string>());
        var ckpt = Checkpoint.Load(_checkpoint);
        ckpt.Model.UsePrecision(InferencePrecision.Int8);
        var info = DataInfo.FromJson(ckpt.Info.Data);
        var expected = Evaluator.Evaluate(ckpt.Model, DataSets.Limit(FashionMnist.Load(train: false), 200), info.Normalize());
        Assert.Equal(expected.Accuracy, json["accuracy"]!.GetValue<double>());
        Assert.Equal(expected.Loss, json["loss"]!.GetValue<double>(), 12);

        var table = TrainCliTests.Run("eval", _checkpoint, "--limit", "20", "--precision", "bf16");
        Assert.True(table.Code == 0, table.Err);
        Assert.Contains("precision bf16 (kernel: ", table.Out);
    }

    [Theory]
    [InlineData("eval")]
    [InlineData("predict")]
    [InlineData("serve")]
    public void AnUnknownPrecisionIsAOneLineError(string command)
    {
        string[] args = command switch
        {
            "predict" => ["predict", _checkpoint, _image, "--precision", "fp16"],
            "serve" => ["serve", _checkpoint, "--port", "0", "--precision", "fp16"],
            _ => ["eval", _checkpoint, "--precision", "fp16"],
        };
        CliAssert.OneLineError(TrainCliTests.Run(args), "--precision", "'fp16'", "fp32, bf16 or int8");
    }
}
