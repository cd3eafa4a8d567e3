using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using VitSharp.Cli;
using VitSharp.Inference;
using VitSharp.Models;
using VitSharp.Tests.Data;
using VitSharp.Tests.Export;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary>
/// <c>vit export</c> (a checkpoint → an ONNX file ONNX Runtime runs, giving the checkpoint's predictions) and
/// <c>vit bench --onnx</c>; every bad input a one-line error with exit code 2.
/// </summary>
public sealed class ExportCliTests : IDisposable
{
    private readonly TempDir _dir = new("exportcli");

    public void Dispose() => _dir.Dispose();

    private static (int Code, string Out, string Err) Run(params string[] args) => TrainCliTests.Run(args);

    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] fragments) =>
        CliAssert.OneLineError(r, fragments);

    private static readonly string[] Classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"];

    /// <summary>The vit fixture's model as a checkpoint with class names and a normalisation.</summary>
    private string VitCheckpoint()
    {
        var (model, c, h, w) = OnnxExportTests.FixtureModel("vit");
        string path = _dir.File("vit.safetensors");
        var data = new DataInfo("test", Classes, c, h, w, [0.5f, 0.5f, 0.5f], [0.25f, 0.25f, 0.25f]);
        Checkpoint.Save(path, model, new CheckpointInfo(new ModelSpec("vit_pytorch.vit.ViT", new JsonObject
        {
            ["image_size"] = 32, ["patch_size"] = 8, ["num_classes"] = 10, ["dim"] = 64, ["depth"] = 2, ["heads"] = 4, ["mlp_dim"] = 128, ["dim_head"] = 16,
        }), data.ToJson(), new JsonObject()));
        return path;
    }

    [Fact]
    public void ExportWritesAnOnnxFileWhosePredictionsAreTheCheckpoints()
    {
        string ck = VitCheckpoint(), onnx = _dir.File("vit.onnx");
        var r = Run("export", ck, onnx);
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(onnx, lines[^1]);
        Assert.Contains(lines, l => l.StartsWith("Graph: opset 17", StringComparison.Ordinal));
        Assert.Contains(lines, l => l == "Input: images [batch, 3, 32, 32] float32; output: logits [batch, 10]");

        var classifier = ImageClassifier.Load(ck);
        var rng = new Random(7);
        var inputs = Enumerable.Range(0, 3).Select(_ => Enumerable.Range(0, 3 * 32 * 32).Select(_ => rng.NextSingle()).ToArray()).ToList();
        var expected = classifier.Probabilities(inputs);
        using var session = new InferenceSession(onnx);
        Assert.Equal(Classes, JsonNode.Parse(session.ModelMetadata.CustomMetadataMap["class_names"])!.AsArray().Select(n => n!.GetValue<string>()));
        var batch = new Tensor(inputs.SelectMany(x => x).ToArray(), 3, 3, 32, 32);
        var (logits, shape) = OnnxExportTests.RunOrt(session, batch);
        Assert.Equal([3, 10], shape);
        var probs = F.Softmax(new Tensor(logits, 3, 10), -1);
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 10; k++) Assert.Equal(expected[i][k], probs.Data[i * 10 + k], 1e-5f);
    }

    [Fact]
    public void FixedBatchOptionFixesTheInputsBatchAxis()
    {
        string ck = VitCheckpoint(), onnx = _dir.File("vit4.onnx");
        var r = Run("export", ck, onnx, "--batch-dynamic", "false", "--batch", "4");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("Input: images [4, 3, 32, 32]", r.Out);
        using var session = new InferenceSession(onnx);
        Assert.Equal([4, 3, 32, 32], session.InputMetadata["images"].Dimensions);
    }

    [Fact]
    public void HelpListsEveryOption()
    {
        var r = Run("export", "--help");
        Assert.Equal(0, r.Code);
        foreach (var s in new[] { "CHECKPOINT", "OUT", "--opset", "--batch-dynamic", "--batch" }) Assert.Contains(s, r.Out);
        var bench = Run("bench", "--help");
        Assert.Contains("--onnx", bench.Out);
    }

    [Fact]
    public void MissingCheckpointIsAOneLineError()
    {
        string missing = _dir.File("nope.safetensors");
        AssertOneLineError(Run("export", missing, _dir.File("x.onnx")), missing);
        Assert.False(File.Exists(_dir.File("x.onnx")));
    }

    [Fact]
    public void UnwritableOutputIsAOneLineErrorNamingIt()
    {
        string ck = VitCheckpoint(), onnx = Path.Combine(_dir.Path, "missing-dir", "m.onnx");
        AssertOneLineError(Run("export", ck, onnx), onnx, "does not exist");
        AssertOneLineError(Run("export", ck, _dir.Path), "is a directory");
    }

    [Fact]
    public void OpsetOutOfRangeIsAOneLineError() =>
        AssertOneLineError(Run("export", VitCheckpoint(), _dir.File("x.onnx"), "--opset", "12"), "opset 12", "13 to 17");

    [Fact]
    public void OpOnnxCannotExpressAtTheChosenOpsetIsAOneLineErrorNamingIt() =>
        AssertOneLineError(Run("export", VitCheckpoint(), _dir.File("x.onnx"), "--opset", "16"), "layer_norm", "LayerNormalization", "opset 16");

    [Fact]
    public void BatchWithoutFixingItIsAOneLineError() =>
        AssertOneLineError(Run("export", VitCheckpoint(), _dir.File("x.onnx"), "--batch", "4"), "--batch", "--batch-dynamic false");

    [Fact]
    public void NonPositiveFixedBatchIsAOneLineError() =>
        AssertOneLineError(Run("export", VitCheckpoint(), _dir.File("x.onnx"), "--batch-dynamic", "false", "--batch", "0"), "--batch must be ≥ 1", "got 0");

    [Fact]
    public void OutputOverTheCheckpointItselfIsAOneLineError()
    {
        string ck = VitCheckpoint();
        AssertOneLineError(Run("export", ck, ck), "is the checkpoint itself");
        Assert.NotNull(VitSharp.Import.WeightImporter.LoadCheckpoint(ck));
    }

    [Fact]
    public void BenchOnnxReportsOnnxRuntimeBesideVitSharpWithTheSameLogits()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--batch", "2", "--steps", "3", "--warmup", "1", "--onnx", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        Assert.Contains("onnx runtime 1.32", r.Out);
        var j = JsonNode.Parse(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1])!.AsObject();
        var onnx = j["onnx"]!.AsObject();
        Assert.Equal(3, onnx["times_ms"]!.AsArray().Count);
        Assert.All(onnx["times_ms"]!.AsArray(), t => Assert.True(t!.GetValue<double>() > 0));
        Assert.True(onnx["min_ms"]!.GetValue<double>() <= onnx["median_ms"]!.GetValue<double>());
        Assert.True(onnx["median_ms"]!.GetValue<double>() <= onnx["max_ms"]!.GetValue<double>());
        Assert.InRange(onnx["max_abs_difference"]!.GetValue<double>(), 0, 1e-4);
    }

    [Fact]
    public void BenchOnnxTimesEveryStepOfBothRuntimesAcrossSeveralBlocks()
    {
        // 7 timed steps = a block of 5 and a short one per runtime: every slot of both arrays gets a time.
        var r = Run("bench", "--model", "vit-fmnist", "--set", "depth=1", "--batch", "2", "--steps", "7", "--warmup", "1", "--no-peak", "--onnx", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("in blocks of 5 steps", r.Out);
        var j = JsonNode.Parse(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1])!.AsObject();
        foreach (var times in new[] { j["times_ms"]!.AsArray(), j["onnx"]!["times_ms"]!.AsArray() })
        {
            Assert.Equal(7, times.Count);
            Assert.All(times, t => Assert.True(t!.GetValue<double>() > 0));
        }
    }

    [Fact]
    public void BenchOnnxProfileCountsOnnxRuntimesOperatorsOverTheTimedStepsOnly()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--set", "depth=3", "--batch", "2", "--steps", "3", "--warmup", "2", "--no-peak", "--onnx", "--profile", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        Assert.Contains("profile, onnx runtime", r.Out);
        var j = JsonNode.Parse(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1])!.AsObject();
        var ort = j["onnx"]!["profile"]!.AsArray().ToDictionary(t => t!["op"]!.GetValue<string>(), t => t!["calls_per_step"]!.GetValue<double>());
        var ours = j["profile"]!.AsArray().ToDictionary(t => t!["op"]!.GetValue<string>(), t => t!["calls_per_step"]!.GetValue<double>());
        // Per timed step the two runtimes run the same LayerNorms (2 + 2 · 3 + 1 = 9 at depth 3): ONNX Runtime's events
        // are counted per run of the timed window (the untimed comparison run and the 2 warm-up runs precede it).
        Assert.Equal(9, ort["LayerNormalization"]);
        Assert.Equal(ours["fwd layer_norm"], ort["LayerNormalization"]);
        Assert.All(j["onnx"]!["profile"]!.AsArray(), t => Assert.True(t!["ms_per_step"]!.GetValue<double>() >= 0));
        Assert.Empty(Directory.GetFiles(Path.GetTempPath(), $"vitsharp-ort-profile-{Environment.ProcessId}-*"));   // its file is deleted
    }

    [Fact]
    public void BenchOnnxWithTrainIsAOneLineError() =>
        AssertOneLineError(Run("bench", "--model", "vit-fmnist", "--onnx", "--train"), "--onnx", "inference only");
}
