using System.IO.Compression;
using System.Text.Json.Nodes;
using VitSharp.Cli;
using VitSharp.Data;

namespace VitSharp.Tests.Cli;

/// <summary>One small real training run (Fashion-MNIST subset, 1 epoch), shared by the tests of <see cref="TrainCliTests"/>.</summary>
public sealed class SmallTrainingRun : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "vitsharp-train-" + Guid.NewGuid().ToString("N"));
    public string OutDir => Path.Combine(Dir, "run");
    public (int Code, string Out, string Err) Result { get; }

    public SmallTrainingRun()
    {
        Directory.CreateDirectory(Dir);
        Result = TrainCliTests.Run("train", "--train-limit", "512", "--test-limit", "256", "--epochs", "1", "--batch-size", "64", "--out", OutDir);
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary><c>vit train</c>, <c>vit eval</c> and <c>vit predict</c> run in-process through <see cref="CliApp.Run"/>.</summary>
public sealed class TrainCliTests(SmallTrainingRun run) : IClassFixture<SmallTrainingRun>, IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-traincli-" + Guid.NewGuid().ToString("N"))).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static string LastLine(string s) => Lines(s) is { Length: > 0 } l ? l[^1] : "";

    /// <summary>Exit code 2 and exactly one stderr line "vit: error: …" containing every fragment; no stack trace.</summary>
    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] fragments)
    {
        Assert.True(r.Code == 2, $"exit code {r.Code}, stderr:\n{r.Err}");
        var lines = Lines(r.Err).Where(l => !l.StartsWith("vit: note:")).ToArray();
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{r.Err}");
        Assert.StartsWith("vit: error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("Exception", r.Err);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    private string CheckpointPath => Path.Combine(run.OutDir, "checkpoint.safetensors");

    // ---------------------------------------------------------------- train

    [Fact]
    public void Train_SmallSubset_PrintsCheckpointPathLast_AndWritesMetricsAndPlot()
    {
        var r = run.Result;
        Assert.True(r.Code == 0, $"exit {r.Code}\nstdout:\n{r.Out}\nstderr:\n{r.Err}");
        Assert.DoesNotContain("\u001b[", r.Out);                       // plain lines when not on a terminal
        string last = LastLine(r.Out);
        Assert.Equal(CheckpointPath, last);
        Assert.True(File.Exists(last));
        Assert.Contains("epoch 1/1: train loss", r.Out);
        Assert.Contains("test loss", r.Out);

        string metrics = Path.Combine(run.OutDir, "metrics.jsonl");
        Assert.True(File.Exists(metrics));
        var records = File.ReadAllLines(metrics).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!.AsObject()).ToArray();
        Assert.Single(records);
        Assert.Equal(1, records[0]["epoch"]!.GetValue<int>());
        double testAcc = records[0]["test_accuracy"]!.GetValue<double>();
        Assert.InRange(testAcc, 0, 1);

        string svg = File.ReadAllText(Path.Combine(run.OutDir, "curves.svg"));
        Assert.Contains("<svg", svg);
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void Train_ResumeOfAFinishedRun_ReEvaluatesAndPrintsThePathLast()
    {
        // Copy the finished run so the shared one is not touched.
        string copy = Path.Combine(_dir, "resumed");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(run.OutDir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var r = Run("train", "--out", copy, "--resume", "--epochs", "3");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("--resume continues with the options stored in the checkpoint; ignoring --epochs", r.Err);
        Assert.Contains("resuming", r.Out);
        Assert.Equal(Path.Combine(copy, "checkpoint.safetensors"), LastLine(r.Out));
    }

    [Fact]
    public void Train_ResumeWithoutCheckpoint_IsAnError() =>
        AssertOneLineError(Run("train", "--out", Path.Combine(_dir, "empty"), "--resume"), "nothing to resume");

    [Fact]
    public void Train_MissingDataSet_SaysHowToInstallIt() =>
        AssertOneLineError(Run("train", "--data", "/nonexistent", "--out", Path.Combine(_dir, "x")),
            "/nonexistent", "apt-get install dataset-fashion-mnist", "--data");

    [Trait("Category", "DataSet")]
    [Fact]
    public void Train_TruncatedIdxFile_NamesTheFileAndTheOffset()
    {
        string src = FashionMnist.DefaultDirectory;
        string data = Path.Combine(_dir, "fmnist-truncated");
        Directory.CreateDirectory(data);
        // The real images file, decompressed and cut after 10 images and 5 bytes (the header announces 60,000).
        var head = new byte[16 + 10 * 784 + 5];
        using (var gz = new GZipStream(File.OpenRead(Path.Combine(src, "train-images-idx3-ubyte.gz")), CompressionMode.Decompress))
            gz.ReadExactly(head);
        string images = Path.Combine(data, "train-images-idx3-ubyte");
        File.WriteAllBytes(images, head);
        File.Copy(Path.Combine(src, "train-labels-idx1-ubyte.gz"), Path.Combine(data, "train-labels-idx1-ubyte.gz"));

        var r = Run("train", "--data", data, "--out", Path.Combine(_dir, "x"));
        AssertOneLineError(r, images, "truncated", $"offset {head.Length}");
    }

    [Fact]
    public void Train_ZeroEpochs_IsAnError() =>
        AssertOneLineError(Run("train", "--epochs", "0", "--out", Path.Combine(_dir, "x")), "epochs", "0");

    [Fact]
    public void Train_DivergingLoss_ExitsWith3AndOneLine()
    {
        var r = Run("train", "--train-limit", "256", "--test-limit", "64", "--epochs", "1", "--batch-size", "64",
            "--lr", "1e30", "--warmup-epochs", "0", "--out", Path.Combine(_dir, "nan"));
        Assert.True(r.Code == 3, $"exit {r.Code}: {r.Err}");
        var lines = Lines(r.Err);
        Assert.Single(lines);
        Assert.StartsWith("vit: error: loss is ", lines[0]);
        Assert.Contains("training stopped", lines[0]);
    }

    [Fact]
    public void Train_UnknownModelArgument_IsAnErrorBeforeLoadingData() =>
        AssertOneLineError(Run("train", "--set", "widht=3", "--data", "/nonexistent", "--out", Path.Combine(_dir, "x")), "widht", "vit-fmnist");

    [Fact]
    public void Train_MalformedSet_IsAnError() =>
        AssertOneLineError(Run("train", "--set", "dim", "--out", Path.Combine(_dir, "x")), "--set dim", "NAME=VALUE");

    [Fact]
    public void Train_UnknownPreset_IsAnErrorBeforeLoadingData() =>
        AssertOneLineError(Run("train", "--model", "vit-nope", "--out", Path.Combine(_dir, "x")), "vit-nope");

    // ---------------------------------------------------------------- eval

    [Trait("Category", "DataSet")]
    [Fact]
    public void Eval_Json_PrintsAccuracyPerClassAndConfusion()
    {
        var r = Run("eval", CheckpointPath, "--limit", "300", "--json");
        Assert.True(r.Code == 0, r.Err);
        var root = JsonNode.Parse(LastLine(r.Out))!.AsObject();
        double acc = root["accuracy"]!.GetValue<double>();
        Assert.InRange(acc, 0, 1);
        Assert.Equal(300, root["count"]!.GetValue<int>());
        var perClass = root["per_class"]!.AsObject();
        Assert.Equal(10, perClass.Count);
        Assert.Contains("Ankle boot", perClass.Select(kv => kv.Key));
        var confusion = root["confusion"]!.AsArray();
        Assert.Equal(10, confusion.Count);
        int total = 0, diagonal = 0;
        for (int i = 0; i < 10; i++)
        {
            var row = confusion[i]!.AsArray();
            Assert.Equal(10, row.Count);
            for (int j = 0; j < 10; j++) { total += row[j]!.GetValue<int>(); if (i == j) diagonal += row[j]!.GetValue<int>(); }
        }
        Assert.Equal(300, total);
        Assert.Equal(acc, (double)diagonal / total, 9);
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void Eval_Tables_ShowPerClassAccuracyAndConfusionMatrix()
    {
        var r = Run("eval", CheckpointPath, "--limit", "200");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("Per class", r.Out);
        Assert.Contains("Confusion matrix", r.Out);
        Assert.Contains("T-shirt/top", r.Out);
        Assert.StartsWith("Accuracy: ", LastLine(r.Out));
    }

    [Fact]
    public void Eval_MissingCheckpoint_IsAnError()
    {
        string missing = Path.Combine(_dir, "missing.safetensors");
        AssertOneLineError(Run("eval", missing), missing, "not found");
    }

    [Fact]
    public void Eval_FileThatIsNotACheckpoint_IsAnError()
    {
        string bogus = Path.Combine(_dir, "bogus.safetensors");
        File.WriteAllText(bogus, "not a safetensors file");
        AssertOneLineError(Run("eval", bogus), bogus);
    }

    // ---------------------------------------------------------------- predict

    /// <summary>Writes the first <paramref name="n"/> Fashion-MNIST test images as grey PNGs; returns the paths and labels.</summary>
    private (string Path, int Label)[] WriteTestPngs(int n)
    {
        var test = FashionMnist.Load(train: false);
        var result = new (string, int)[n];
        for (int i = 0; i < n; i++)
        {
            string p = Path.Combine(_dir, $"test{i}.png");
            ImageEncoder.SavePng(p, test.RawPixels(i).ToArray(), 28, 28, 1);
            result[i] = (p, test.Label(i));
        }
        return result;
    }

    [Fact]
    public void Predict_Png_PrintsTopClassesWithProbabilities()
    {
        var pngs = WriteTestPngs(2);
        var r = Run("predict", CheckpointPath, pngs[0].Path, pngs[1].Path, "--top", "3");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains(pngs[0].Path, r.Out);
        Assert.Contains(pngs[1].Path, r.Out);
        Assert.Contains("Probability", r.Out);
        Assert.Contains("%", r.Out);

        var j = Run("predict", CheckpointPath, pngs[0].Path, pngs[1].Path, "--top", "50", "--json");
        Assert.True(j.Code == 0, j.Err);
        var predictions = JsonNode.Parse(LastLine(j.Out))!["predictions"]!.AsArray();
        Assert.Equal(2, predictions.Count);
        foreach (var p in predictions)
        {
            var top = p!["top"]!.AsArray();
            Assert.Equal(10, top.Count);                                   // capped at the class count
            var probs = top.Select(t => t!["probability"]!.GetValue<double>()).ToArray();
            Assert.Equal(1.0, probs.Sum(), 3);
            Assert.True(probs.Zip(probs.Skip(1)).All(x => x.First >= x.Second), "sorted, most probable first");
            Assert.Equal(10, top.Select(t => t!["class"]!.GetValue<string>()).Distinct().Count());
        }
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void Predict_MatchesEvaluationPreprocessing()
    {
        // The PNG round trip of a test image must give the same class as the evaluator on the data set itself.
        var pngs = WriteTestPngs(8);
        var ckpt = VitSharp.Training.Checkpoint.Load(CheckpointPath);
        var info = VitSharp.Training.DataInfo.FromJson(ckpt.Info.Data);
        var test = VitSharp.Training.DataSets.Limit(FashionMnist.Load(train: false), 8);
        var loader = new DataLoader(test, 8, shuffle: false, seed: 0, info.Normalize());
        var batch = loader.GetBatch(0, 0);
        ckpt.Model.Eval();
        Tensor logits;
        using (VitSharp.Autograd.NoGrad()) logits = ckpt.Model.Forward(batch.Images);
        var expected = VitSharp.Training.Evaluator.ArgMax(logits);

        var predictions = new VitSharp.Inference.ImageClassifier(ckpt).PredictBatch(pngs.Select(p => p.Path).ToArray(), 1);
        Assert.Equal(expected, predictions.Select(p => p.Top[0].Index).ToArray());
    }

    [Fact]
    public void Predict_NonImageFile_NamesTheFile()
    {
        string text = Path.Combine(_dir, "notes.png");
        File.WriteAllText(text, "this is not an image\n");
        AssertOneLineError(Run("predict", CheckpointPath, text), text, "not a PNG or JPEG");
    }

    [Fact]
    public void Predict_TruncatedPng_NamesTheFile()
    {
        var png = WriteTestPngs(1)[0].Path;
        var bytes = File.ReadAllBytes(png);
        string cut = Path.Combine(_dir, "cut.png");
        File.WriteAllBytes(cut, bytes[..(bytes.Length / 2)]);
        AssertOneLineError(Run("predict", CheckpointPath, cut), cut);
    }

    [Fact]
    public void Predict_MissingImage_NamesTheFile()
    {
        string missing = Path.Combine(_dir, "missing.jpg");
        AssertOneLineError(Run("predict", CheckpointPath, missing), missing);
    }

    [Fact]
    public void Predict_ZeroTop_IsAnError() =>
        AssertOneLineError(Run("predict", CheckpointPath, "x.png", "--top", "0"), "--top");
}
