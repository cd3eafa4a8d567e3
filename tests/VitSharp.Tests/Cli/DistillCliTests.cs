using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.Tests.Training;

namespace VitSharp.Tests.Cli;

/// <summary>A tiny teacher checkpoint and one <c>vit train --teacher</c> run (64 images, 1 epoch), shared by <see cref="DistillCliTests"/>.</summary>
public sealed class DistillCliRun : IDisposable
{
    public string Dir { get; } = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-distillcli-" + Guid.NewGuid().ToString("N"))).FullName;
    public string TeacherPath { get; }
    public string OutDir => Path.Combine(Dir, "student");
    public (int Code, string Out, string Err) Result { get; }

    public DistillCliRun()
    {
        TeacherPath = TinyTeacher.Create(Path.Combine(Dir, "teacher.safetensors"));
        Result = TrainCliTests.Run("train", "--teacher", TeacherPath, "--distill", "soft", "--temperature", "2", "--alpha", "0.3",
            "--train-limit", "64", "--test-limit", "32", "--epochs", "1", "--batch-size", "32", "--out", OutDir);
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary><c>vit train --teacher</c>, and <c>vit eval</c> / <c>vit predict</c> on the distilled student's checkpoint.</summary>
[Trait("Category", "DataSet")]
public sealed class DistillCliTests(DistillCliRun run) : IClassFixture<DistillCliRun>
{
    private static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private string CheckpointPath => Path.Combine(run.OutDir, "checkpoint.safetensors");

    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] fragments)
    {
        Assert.True(r.Code == 2, $"exit code {r.Code}, stderr:\n{r.Err}");
        var lines = Lines(r.Err).Where(l => !l.StartsWith("vit: note:")).ToArray();
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{r.Err}");
        Assert.StartsWith("vit: error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    [Fact]
    public void Train_WithTeacher_DistilsAndPrintsTheCheckpointLast()
    {
        var r = run.Result;
        Assert.True(r.Code == 0, $"exit {r.Code}\nstdout:\n{r.Out}\nstderr:\n{r.Err}");
        Assert.Contains($"distilled (soft, T 2, alpha 0.3) from {run.TeacherPath}", r.Out);
        Assert.Contains("| distill loss ", r.Out);
        Assert.Equal(CheckpointPath, Lines(r.Out)[^1]);
        var ckpt = VitSharp.Training.Checkpoint.Load(CheckpointPath);
        var w = Assert.IsType<VitSharp.Models.DistillWrapper>(ckpt.Model);
        Assert.Equal(new VitSharp.Models.DistillConfig { Temperature = 2f, Alpha = 0.3f }, w.Config);
    }

    [Fact]
    public void Eval_OnTheDistilledCheckpoint()
    {
        var r = TrainCliTests.Run("eval", CheckpointPath, "--limit", "40", "--json");
        Assert.True(r.Code == 0, r.Err);
        var j = JsonNode.Parse(Lines(r.Out)[^1])!;
        Assert.Equal(40, j["count"]!.GetValue<int>());
        Assert.InRange(j["accuracy"]!.GetValue<double>(), 0, 1);
    }

    [Fact]
    public void Predict_OnTheDistilledCheckpoint_UsesTheClassTokenLogits()
    {
        var test = FashionMnist.Load(train: false);
        string png = Path.Combine(run.Dir, "predict0.png");
        ImageEncoder.SavePng(png, test.RawPixels(0).ToArray(), 28, 28, 1);
        var r = TrainCliTests.Run("predict", CheckpointPath, png, "--top", "10", "--json");
        Assert.True(r.Code == 0, r.Err);
        var top = JsonNode.Parse(Lines(r.Out)[^1])!["predictions"]![0]!["top"]!.AsArray();
        var ckpt = VitSharp.Training.Checkpoint.Load(CheckpointPath);
        var student = ((VitSharp.Models.DistillWrapper)ckpt.Model).Student.ToViT();
        student.Eval();
        var info = VitSharp.Training.DataInfo.FromJson(ckpt.Info.Data);
        var x = new float[28 * 28];
        var raw = test.RawPixels(0);
        for (int i = 0; i < x.Length; i++) x[i] = (raw[i] / 255f - info.Mean[0]) / info.Std[0];
        Tensor probs;
        using (VitSharp.Autograd.NoGrad()) probs = F.Softmax(student.Forward(new Tensor(x, 1, 1, 28, 28)), -1);
        foreach (var t in top)
            Assert.Equal(probs.Data[t!["index"]!.GetValue<int>()], t["probability"]!.GetValue<double>(), 1e-4);
    }

    private string WritePng(int index)
    {
        string png = Path.Combine(run.Dir, $"attn{index}.png");
        ImageEncoder.SavePng(png, FashionMnist.Load(train: false).RawPixels(index).ToArray(), 28, 28, 1);
        return png;
    }

    [Fact]
    public void Predict_Attention_WritesTheHeatMapOfTheDistilledStudent()
    {
        string png = WritePng(1);
        string map = Path.Combine(run.Dir, "map.png");
        var r = TrainCliTests.Run("predict", CheckpointPath, png, "--attention", map);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"{png}: attention map {map}", r.Out);
        var decoded = ImageDecoder.Decode(map);
        Assert.Equal((224, 224, 3), (decoded.Width, decoded.Height, decoded.Channels));   // 28×28 enlarged 8×
        Assert.True(decoded.Pixels.Distinct().Count() > 16, "the heat map is not a flat image");
    }

    [Fact]
    public void Predict_Attention_SeveralImagesOfAPlainViT_NumberedFilesInANewFolder()
    {
        string[] pngs = [WritePng(2), WritePng(3)];
        string map = Path.Combine(run.Dir, "maps", "rollout.png");
        var r = TrainCliTests.Run("predict", run.TeacherPath, pngs[0], pngs[1], "--attention", map, "--json");
        Assert.True(r.Code == 0, r.Err);
        var predictions = JsonNode.Parse(Lines(r.Out)[^1])!["predictions"]!.AsArray();
        for (int i = 0; i < 2; i++)
        {
            string expected = Path.Combine(run.Dir, "maps", $"rollout-{i + 1}.png");
            Assert.Equal(expected, predictions[i]!["attention"]!.GetValue<string>());
            var decoded = ImageDecoder.Decode(expected);
            Assert.Equal((224, 224), (decoded.Width, decoded.Height));
        }
        Assert.False(File.Exists(map));
    }

    [Theory]
    [InlineData("--distill", "hard")]
    [InlineData("--temperature", "2")]
    [InlineData("--alpha", "0.1")]
    public void DistillationOptionsWithoutTeacherAreRejected(string option, string value) =>
        AssertOneLineError(TrainCliTests.Run("train", option, value, "--out", Path.Combine(run.Dir, "x")), option, "--teacher");

    [Fact]
    public void MissingTeacherCheckpointIsNamed()
    {
        string missing = Path.Combine(run.Dir, "nope.safetensors");
        AssertOneLineError(TrainCliTests.Run("train", "--teacher", missing, "--out", Path.Combine(run.Dir, "x")), missing, "not found");
    }

    [Theory]
    [InlineData("--distill", "medium", "soft")]
    [InlineData("--temperature", "0", "temperature")]
    [InlineData("--alpha", "1.5", "alpha")]
    public void BadDistillationOptionsAreRejected(string option, string value, string mentioned) =>
        AssertOneLineError(TrainCliTests.Run("train", "--teacher", run.TeacherPath, option, value, "--out", Path.Combine(run.Dir, "x")), mentioned);

    [Fact]
    public void TeacherWithAnotherClassCountIsRejected()
    {
        string five = TinyTeacher.Create(Path.Combine(run.Dir, "five.safetensors"), classes: 5);
        AssertOneLineError(TrainCliTests.Run("train", "--teacher", five, "--train-limit", "32", "--test-limit", "16", "--out", Path.Combine(run.Dir, "y")),
            "teacher predicts 5 classes but the student 10");
    }
}
