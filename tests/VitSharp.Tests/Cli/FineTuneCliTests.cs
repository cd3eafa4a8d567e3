using System.Text.Json.Nodes;
using VitSharp.Tests.Data;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary>
/// Fine-tuning from imported weights from the command line: <c>vit train --init tv_vit.pth</c> on a small image folder
/// the test writes (new head for its classes, loss falls), <c>--freeze</c>, another image size (position embedding
/// resampled), and distillation from a torchvision ResNet <c>.pth</c> teacher.
/// </summary>
[Trait("Category", "Slow")]
public sealed class FineTuneCliTests : IDisposable
{
    private readonly TempDir _dir = new("finetune");

    public void Dispose() => _dir.Dispose();

    private static string P(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    /// <summary>
    /// An image folder with train/ and test/ splits: class k's images are noisy versions of a colour of its own (32×32 RGB
    /// PNG), <paramref name="perClass"/> training and 4 test images each.
    /// </summary>
    private string WriteFolder(int classes, int perClass, int size = 32)
    {
        string root = _dir.File("images");
        var rng = new Random(5);
        for (int k = 0; k < classes; k++)
            foreach (var (split, n) in new[] { ("train", perClass), ("test", 4) })
            {
                string dir = Path.Combine(root, split, $"c{k}");
                Directory.CreateDirectory(dir);
                for (int i = 0; i < n; i++)
                {
                    var px = new byte[size * size * 3];
                    for (int j = 0; j < px.Length; j++)
                    {
                        int channel = j % 3;
                        int baseValue = ((k >> channel) & 1) == 1 ? 200 : 40;
                        px[j] = (byte)Math.Clamp(baseValue + rng.Next(-40, 41), 0, 255);
                    }
                    File.WriteAllBytes(Path.Combine(dir, $"{i}.png"), PngWriter.Encode(px, size, size, 2));
                }
            }
        return root;
    }

    private static List<JsonNode> Metrics(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, Trainer.MetricsFile)).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!).ToList();

    [Fact]
    public void TrainInit_FromTorchvisionPth_ReplacesTheHeadAndTheLossFalls()
    {
        string data = WriteFolder(classes: 3, perClass: 16);
        string outDir = _dir.File("run");
        var r = ImportCliTests.Run("train", "--init", P("tv_vit.pth"), "--set", "num_heads=3", "--dataset", "folder", "--data", data,
            "--epochs", "4", "--batch-size", "16", "--lr", "0.003", "--warmup-epochs", "0", "--out", outDir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("new classifier", r.Out);
        var m = Metrics(outDir);
        Assert.Equal(4, m.Count);
        double first = m[0]["train_loss"]!.GetValue<double>(), last = m[^1]["train_loss"]!.GetValue<double>();
        Assert.True(last < first * 0.8, $"train loss {first} → {last}");
        var ck = Checkpoint.Load(Path.Combine(outDir, Trainer.CheckpointFile));
        Assert.Equal(3, ck.Info.Model.Kwargs["num_classes"]!.GetValue<int>());
        Assert.Equal(3, ck.Info.Model.Kwargs["num_heads"]!.GetValue<int>());
    }

    [Fact]
    public void TrainInit_Freeze_ChangesOnlyTheHead()
    {
        string data = WriteFolder(classes: 2, perClass: 8);
        string outDir = _dir.File("frozen");
        var r = ImportCliTests.Run("train", "--init", P("tv_vit.pth"), "--set", "num_heads=3", "--freeze", "--dataset", "folder", "--data", data,
            "--epochs", "1", "--batch-size", "8", "--out", outDir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("frozen:", r.Out);
        var before = VitSharp.Import.WeightImporter.Import(P("tv_vit.pth"), new VitSharp.Import.ImportOptions
        {
            ModelArgs = new Dictionary<string, string> { ["num_heads"] = "3" },
        }).Model.StateDict();
        var after = Checkpoint.Load(Path.Combine(outDir, Trainer.CheckpointFile)).Model.StateDict();
        foreach (var (key, t) in after)
            if (key.StartsWith("heads.", StringComparison.Ordinal)) Assert.True(t.Data.Any(v => v != 0), $"{key} did not train");
            else Assert.Equal(before[key].Data, t.Data);
    }

    [Fact]
    public void TrainInit_AtAnotherImageSize_ResamplesThePositionEmbedding()
    {
        string data = WriteFolder(classes: 2, perClass: 8, size: 48);
        string outDir = _dir.File("resized");
        var r = ImportCliTests.Run("train", "--init", P("tv_vit.pth"), "--set", "num_heads=3", "--dataset", "folder", "--data", data,
            "--image-size", "48", "--epochs", "1", "--batch-size", "8", "--out", outDir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var ck = Checkpoint.Load(Path.Combine(outDir, Trainer.CheckpointFile));
        Assert.Equal(48, ck.Info.Model.Kwargs["image_size"]!.GetValue<int>());
        Assert.Equal([1, 37, 48], ck.Model.StateDict()["encoder.pos_embedding"].ShapeSpan.ToArray());   // (48/8)² + 1
    }

    [Fact]
    public void TrainTeacher_FromTorchvisionResNetPth_Distils()
    {
        string data = WriteFolder(classes: 10, perClass: 2);
        string outDir = _dir.File("distilled");
        var r = ImportCliTests.Run("train", "--teacher", P("resnet.pth"), "--teacher-model", "resnet18", "--dataset", "folder", "--data", data,
            "--epochs", "1", "--batch-size", "10", "--out", outDir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var ck = Checkpoint.Load(Path.Combine(outDir, Trainer.CheckpointFile));
        Assert.Equal("vit_pytorch.distill.DistillWrapper", ck.Info.Model.Constructor);
        Assert.Equal("torchvision.models.resnet.ResNet", ck.Info.Model.Kwargs["teacher"]!["constructor"]!.GetValue<string>());
        // The teacher inside the student's checkpoint is resnet.pth's, unchanged.
        var teacher = VitSharp.Import.WeightImporter.Import(P("resnet.pth")).Model.StateDict();
        var saved = ck.Model.StateDict();
        Assert.Equal(teacher["fc.weight"].Data, saved["teacher.fc.weight"].Data);
    }

    [Fact]
    public void TrainFreeze_WithoutInit_IsAnError()
    {
        var r = ImportCliTests.Run("train", "--freeze", "--epochs", "1", "--out", _dir.File("x"));
        Assert.Equal(2, r.Code);
        Assert.Contains("--init", r.Err);
    }
}
