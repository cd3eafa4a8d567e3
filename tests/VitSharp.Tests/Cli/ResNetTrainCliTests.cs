using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary><c>vit train --model resnet18-fmnist</c>: the trainer, checkpoints and evaluation work for a model that is not a ViT.</summary>
[Trait("Category", "DataSet")]
[Trait("Category", "Slow")]
public sealed class ResNetTrainCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-resnet-" + Guid.NewGuid().ToString("N"))).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void TrainsEvaluatesAndReloadsAResNetOnFashionMnist()
    {
        string outDir = Path.Combine(_dir, "run");
        var r = TrainCliTests.Run("train", "--model", "resnet18-fmnist", "--train-limit", "256", "--test-limit", "128", "--epochs", "1",
            "--batch-size", "64", "--out", outDir);
        Assert.True(r.Code == 0, $"exit {r.Code}\nstdout:\n{r.Out}\nstderr:\n{r.Err}");
        string ckpt = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
        Assert.Equal(Path.Combine(outDir, "checkpoint.safetensors"), ckpt);

        var loaded = Checkpoint.Load(ckpt);
        Assert.Equal("torchvision.models.resnet.ResNet", loaded.Info.Model.Constructor);
        var model = Assert.IsType<ResNet>(loaded.Model);
        Assert.Equal(1, model.Config.InChans);
        Assert.Equal(10, model.Config.NumClasses);
        // Training moved the BatchNorm running statistics, and the checkpoint kept them.
        Assert.Equal(4f, model.Bn1.NumBatchesTracked!.Item());
        Assert.Contains(model.Bn1.RunningMean!.Data, v => v != 0f);

        var e = TrainCliTests.Run("eval", ckpt, "--limit", "64", "--json");
        Assert.True(e.Code == 0, $"exit {e.Code}\nstderr:\n{e.Err}");
        Assert.Contains("\"accuracy\"", e.Out);
    }

    [Fact]
    public void AnotherModelDefaultsToItsOwnOutputFolder()
    {
        // Without --out a resnet run never touches runs/vit-fmnist: resuming looks in runs/resnet18-fmnist.
        var r = TrainCliTests.Run("train", "--model", "resnet18-fmnist", "--resume");
        Assert.NotEqual(0, r.Code);
        Assert.Contains(Path.Combine("runs", "resnet18-fmnist"), r.Err);
        Assert.DoesNotContain("vit-fmnist" + Path.DirectorySeparatorChar, r.Err);
    }
}
