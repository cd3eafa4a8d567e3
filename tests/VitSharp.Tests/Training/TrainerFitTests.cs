using VitSharp.Data;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;
using VitSharp.Training;
using static VitSharp.Tests.Training.TrainingTestUtil;

namespace VitSharp.Tests.Training;

/// <summary><see cref="Trainer.Fit"/> on a model and data built in C# (no preset or data-set names).</summary>
public class TrainerFitTests
{
    private static FitOptions Options(string? outDir) => new()
    {
        Epochs = 3, BatchSize = 16, LearningRate = 3e-3f, MinLearningRate = 1e-4f, WarmupEpochs = 0.5f, WeightDecay = 0.05f,
        LabelSmoothing = 0, Seed = 3, OutDir = outDir,
        Augmentation = [new RandomHorizontalFlip()],   // keeps the class; exact resume covers its per-sample seeding
        Normalization = new Normalize([0.3f], [0.25f]),
    };

    private static ViT NewViT(int seed)
    {
        Init.Seed(seed);
        return new ViT(SyntheticImages.Config());
    }

    [Fact]
    public void Fit_TrainsAHandBuiltViTOnAnInMemoryDataset_AndItsLossFalls()
    {
        var train = SyntheticImages.Make(256, seed: 1);
        var test = SyntheticImages.Make(64, seed: 2);
        var model = NewViT(0);
        var r = Trainer.Fit(model, train, test, Options(null) with { Epochs = 6, LearningRate = 5e-3f });
        Assert.False(r.Interrupted);
        Assert.Null(r.CheckpointPath);   // no output folder: nothing written
        Assert.Equal(6, r.History.Count);
        Assert.True(r.History[^1].TrainLoss < r.History[0].TrainLoss - 0.3, string.Join(" → ", r.History.Select(h => $"{h.TrainLoss:F3} ({h.TrainAccuracy:P0} {h.TestAccuracy:P0})")));
        Assert.True(r.FinalEvaluation!.Accuracy > 0.8, string.Join(" → ", r.History.Select(h => $"{h.TrainLoss:F3} ({h.TrainAccuracy:P0} {h.TestAccuracy:P0} {h.TestLoss:F3})")));
        Assert.Equal(64, r.FinalEvaluation.Count);
    }

    [Fact]
    public void Fit_WithACheckpointFolder_ResumesExactlyAsAnUninterruptedRun()
    {
        var train = SyntheticImages.Make(96, seed: 1);
        var test = SyntheticImages.Make(32, seed: 2);
        using var whole = new TempDir("fit");
        var reference = Trainer.Fit(NewViT(0), train, test, Options(whole.Path));
        Assert.NotNull(reference.CheckpointPath);

        // Stopped in the middle of epoch 2, then continued on a model built with another seed: the checkpoint's weights,
        // optimizer state, schedule and position take over.
        using var dir = new TempDir("fit");
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(e => { if (e is StepProgress { Epoch: 2, Batch: >= 2 }) cts.Cancel(); });
        var first = Trainer.Fit(NewViT(0), train, test, Options(dir.Path) with { DataParallel = true }, progress, cts.Token);
        Assert.True(first.Interrupted);
        Assert.Single(first.History);
        var resumed = Trainer.Fit(NewViT(42), train, test, Options(dir.Path) with { Resume = true });
        Assert.False(resumed.Interrupted);
        AssertSameCurve(reference.History, resumed.History);
        AssertSameTensors(reference.CheckpointPath!, resumed.CheckpointPath!);
        Assert.Equal(File.ReadAllText(Path.Combine(whole.Path, Trainer.MetricsFile)).Split('\n').Length,
            File.ReadAllText(Path.Combine(dir.Path, Trainer.MetricsFile)).Split('\n').Length);

        // The checkpoint rebuilds the hand-built model (its spec is taken from the ViT's Config) with the normalisation.
        var ckpt = Checkpoint.Load(resumed.CheckpointPath!);
        Assert.IsType<ViT>(ckpt.Model);
        var data = DataInfo.FromJson(ckpt.Info.Data);
        Assert.Equal(SyntheticImages.Classes, data.ClassNames);
        Assert.Equal([0.3f], data.Mean);
        Assert.Equal([0.25f], data.Std);
    }

    [Fact]
    public void Fit_ResumeWithoutACheckpoint_NamesTheMissingFile()
    {
        using var dir = new TempDir("fit");
        var e = Assert.Throws<CheckpointException>(() =>
            Trainer.Fit(NewViT(0), SyntheticImages.Make(16, 1), null, Options(dir.Path) with { Resume = true }));
        Assert.Contains(Path.Combine(dir.Path, Trainer.CheckpointFile), e.Message);
    }

    [Fact]
    public void Fit_WithoutATestSet_RecordsNaNTestMetricsAndNoEvaluation()
    {
        using var dir = new TempDir("fit");
        var r = Trainer.Fit(NewViT(0), SyntheticImages.Make(32, 1), null, Options(dir.Path) with { Epochs = 1 });
        Assert.Null(r.FinalEvaluation);
        Assert.True(double.IsNaN(r.History[0].TestAccuracy));
        Assert.True(File.Exists(Path.Combine(dir.Path, Trainer.MetricsFile)));
        Assert.True(File.Exists(r.CheckpointPath));
    }

    [Fact]
    public void Fit_InvalidOptions_AreRejectedNamingTheValue()
    {
        var e = Assert.Throws<ArgumentException>(() => Trainer.Fit(NewViT(0), SyntheticImages.Make(16, 1), null, Options(null) with { BatchSize = 0 }));
        Assert.Contains("batch size", e.Message);
        Assert.Throws<ArgumentException>(() => Trainer.Fit(NewViT(0), SyntheticImages.Make(16, 1), null, Options(null) with { Resume = true }));
        e = Assert.Throws<ArgumentException>(() => Trainer.Fit(NewViT(0), SyntheticImages.Make(16, 1), null, Options(null) with { ProgressInterval = TimeSpan.FromMilliseconds(-1) }));
        Assert.Contains("progress interval", e.Message);
    }
}
