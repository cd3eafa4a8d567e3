using System.Text.Json;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.Tests.Data;
using VitSharp.Training;
using static VitSharp.Tests.Training.TrainingTestUtil;

namespace VitSharp.Tests.Training;

/// <summary>One finished tiny run (2 epochs × 6 steps) that several tests compare against.</summary>
public sealed class BaselineRun : IDisposable
{
    public static TrainOptions Tiny(string outDir) => new()
    {
        TrainLimit = 96, TestLimit = 32, BatchSize = 16, Epochs = 2, Seed = 7, WarmupEpochs = 0.5f, OutDir = outDir,
        ShiftPixels = 2, Flip = true, // augmentation on, so exact resume covers its per-sample seeding too
    };

    public TempDir Dir { get; } = new("train");
    public TrainOptions Options { get; }
    public TrainResult Result { get; }
    public List<TrainEvent> Events { get; }

    public BaselineRun()
    {
        Options = Tiny(Dir.Path);
        var progress = new SyncProgress(_ => { });
        Result = Trainer.Run(Options, progress: progress);
        Events = progress.Events;
    }

    public void Dispose() => Dir.Dispose();
}

public class TrainerTests(BaselineRun baseline) : IClassFixture<BaselineRun>
{
    private static JsonObject TrainingMeta(string checkpoint)
    {
        using var f = SafeTensorsFile.Open(checkpoint);
        return (JsonObject)JsonNode.Parse(f.Metadata["vitsharp.training"])!;
    }

    [Trait("Category", "Slow")]
    [Fact]
    public void ShortRunLearnsWellAboveChance()
    {
        // 1000 images, 2 epochs: ~67% test accuracy (chance is 10%). With a learning rate of 1e-9 (everything else the
        // same) the same run stays at chance (7% test accuracy, loss 2.44 → 2.44), so this fails for a model or
        // optimizer that does not learn.
        using var dir = new TempDir("train");
        var r = Trainer.Run(new TrainOptions
        {
            TrainLimit = 1000, TestLimit = 500, Epochs = 2, BatchSize = 32, LearningRate = 3e-3f, MinLearningRate = 0,
            WarmupEpochs = 0.25f, LabelSmoothing = 0, ShiftPixels = 0, Flip = false, Seed = 1, OutDir = dir.Path,
        });
        Assert.False(r.Interrupted);
        Assert.Equal(2, r.History.Count);
        Assert.True(r.History[1].TestAccuracy > 0.5, $"test accuracy {r.History[1].TestAccuracy:P1} after 2 epochs");
        Assert.True(r.History[1].TrainLoss < r.History[0].TrainLoss - 0.3, $"train loss {r.History[0].TrainLoss} → {r.History[1].TrainLoss}");
        Assert.True(r.History[1].TestLoss < 1.5, $"test loss {r.History[1].TestLoss} (chance: ln 10 = 2.30)");
        Assert.NotNull(r.FinalEvaluation);
        Assert.Equal(500, r.FinalEvaluation!.Count);
        Assert.Equal(r.History[1].TestAccuracy, r.FinalEvaluation.Accuracy);
        Assert.Equal(500, r.FinalEvaluation.Confusion.Cast<int>().Sum());
    }

    [Fact]
    public void BaselineRunIsComplete()
    {
        var r = baseline.Result;
        Assert.False(r.Interrupted);
        Assert.Equal(Path.Combine(baseline.Dir.Path, Trainer.CheckpointFile), r.CheckpointPath!);
        Assert.Equal([1, 2], r.History.Select(h => h.Epoch));
        Assert.Equal([6L, 12L], r.History.Select(h => h.Step));
        Assert.All(r.History, h => Assert.True(double.IsFinite(h.TrainLoss) && double.IsFinite(h.TestLoss)));
        var t = TrainingMeta(r.CheckpointPath!);
        Assert.Equal(2, t["epoch"]!.GetValue<int>());
        Assert.Equal(0, t["batch"]!.GetValue<int>());
        Assert.Equal(12, t["step"]!.GetValue<long>());
        Assert.Equal(6, t["batches_per_epoch"]!.GetValue<int>());
        Assert.Equal(7, t["options"]!["seed"]!.GetValue<int>());
        var steps = baseline.Events.OfType<StepProgress>().ToList();
        Assert.Contains(steps, s => s is { Epoch: 1, Batch: 6, Batches: 6, Step: 6 });
        Assert.Equal(2, baseline.Events.OfType<EpochMetrics>().Count());
    }

    [Fact]
    public void SameSeedGivesTheSameCurveAndWeightsAnotherSeedDoesNot()
    {
        using var again = new TempDir("train");
        var r = Trainer.Run(BaselineRun.Tiny(again.Path));
        AssertSameCurve(baseline.Result.History, r.History);
        AssertSameTensors(baseline.Result.CheckpointPath!, r.CheckpointPath!);

        using var other = new TempDir("train");
        var o = Trainer.Run(BaselineRun.Tiny(other.Path) with { Seed = 8 });
        Assert.NotEqual(baseline.Result.History[0].TrainLoss, o.History[0].TrainLoss);
        Assert.NotEqual(baseline.Result.History.Select(Curve), o.History.Select(Curve));
        Assert.False(SameTensors(baseline.Result.CheckpointPath!, o.CheckpointPath!));
    }

    [Fact]
    public void ResumeAfterTheFirstEpochIsExact()
    {
        using var dir = new TempDir("train");
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(e => { if (e is EpochMetrics { Epoch: 1 }) cts.Cancel(); });
        var first = Trainer.Run(BaselineRun.Tiny(dir.Path), progress: progress, cancel: cts.Token);
        Assert.True(first.Interrupted);
        Assert.Null(first.FinalEvaluation);
        Assert.Single(first.History);
        var t = TrainingMeta(first.CheckpointPath!);
        Assert.Equal((1, 0, 6L), (t["epoch"]!.GetValue<int>(), t["batch"]!.GetValue<int>(), t["step"]!.GetValue<long>()));

        // Resume takes everything from the checkpoint (the options given here other than OutDir are ignored).
        var resumed = Trainer.Run(new TrainOptions { OutDir = dir.Path, Epochs = 1, Seed = 99 }, resume: true);
        Assert.False(resumed.Interrupted);
        AssertSameCurve(baseline.Result.History, resumed.History);
        AssertSameTensors(baseline.Result.CheckpointPath!, resumed.CheckpointPath!);
        Assert.Equal(baseline.Result.FinalEvaluation!.Accuracy, resumed.FinalEvaluation!.Accuracy);
        Assert.Equal(File.ReadAllLines(Path.Combine(baseline.Dir.Path, Trainer.MetricsFile)).Length,
            File.ReadAllLines(Path.Combine(dir.Path, Trainer.MetricsFile)).Length);
    }

    [Fact]
    public void CancellationAtTheEndOfAnEpochSavesAndResumesExactly()
    {
        // Cancelled after the last batch of epoch 1: the cancellation reaches the evaluation of that epoch.
        using var dir = new TempDir("train");
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(e => { if (e is StepProgress { Epoch: 1, Batch: 6 }) cts.Cancel(); });
        var first = Trainer.Run(BaselineRun.Tiny(dir.Path), progress: progress, cancel: cts.Token);
        Assert.True(first.Interrupted);
        Assert.True(File.Exists(first.CheckpointPath!));
        var t = TrainingMeta(first.CheckpointPath!);
        Assert.Equal((0, 6, 6L), (t["epoch"]!.GetValue<int>(), t["batch"]!.GetValue<int>(), t["step"]!.GetValue<long>()));
        Assert.Contains(progress.Events.OfType<TrainMessage>(), m => m.Text.Contains("interrupted") && m.Text.Contains(first.CheckpointPath!));

        var resumed = Trainer.Run(new TrainOptions { OutDir = dir.Path }, resume: true);
        Assert.False(resumed.Interrupted);
        AssertSameCurve(baseline.Result.History, resumed.History);
        AssertSameTensors(baseline.Result.CheckpointPath!, resumed.CheckpointPath!);
    }

    [Fact]
    public void CancellationMidEpochSavesThePositionAndResumingFinishesExactly()
    {
        // Batches of 4: 24 steps per epoch, a progress report after every step; cancelled after batch 7.
        var options = BaselineRun.Tiny("") with { BatchSize = 4, Epochs = 1, ProgressInterval = TimeSpan.Zero };
        using var whole = new TempDir("train");
        var reference = Trainer.Run(options with { OutDir = whole.Path });

        using var dir = new TempDir("train");
        using var cts = new CancellationTokenSource();
        StepProgress? at = null;
        var progress = new SyncProgress(e => { if (e is StepProgress { Batch: 7 } s) { at = s; cts.Cancel(); } });
        var first = Trainer.Run(options with { OutDir = dir.Path }, progress: progress, cancel: cts.Token);
        Assert.True(first.Interrupted);
        Assert.Empty(first.History);
        Assert.NotNull(at);
        Assert.Equal(Enumerable.Range(1, 7), progress.Events.OfType<StepProgress>().Select(p => p.Batch));
        Assert.Contains(progress.Events.OfType<TrainMessage>(), m => m.Text.Contains("interrupted") && m.Text.Contains(first.CheckpointPath!));
        var t = TrainingMeta(first.CheckpointPath!);
        Assert.Equal(0, t["epoch"]!.GetValue<int>());
        Assert.Equal(at.Batch, t["batch"]!.GetValue<int>());
        Assert.Equal(at.Step, t["step"]!.GetValue<long>());
        Assert.Equal(at.Batch * 4, t["partial"]!["seen"]!.GetValue<long>());
        Assert.False(File.Exists(Path.Combine(dir.Path, Trainer.MetricsFile)));

        var resumeProgress = new SyncProgress(_ => { });
        var resumed = Trainer.Run(options with { OutDir = dir.Path }, resume: true, progress: resumeProgress);
        Assert.False(resumed.Interrupted);
        Assert.Contains(resumeProgress.Events.OfType<TrainMessage>(), m => m.Text.StartsWith("resuming"));
        Assert.Equal(Enumerable.Range(8, 17), resumeProgress.Events.OfType<StepProgress>().Select(p => p.Batch));
        // The epoch's metrics include the steps before the interruption.
        AssertSameCurve(reference.History, resumed.History);
        AssertSameTensors(reference.CheckpointPath!, resumed.CheckpointPath!);
    }

    [Fact]
    public void CancelledBeforeTheFirstStepSavesTheInitialState()
    {
        using var dir = new TempDir("train");
        var r = Trainer.Run(BaselineRun.Tiny(dir.Path), cancel: new CancellationToken(canceled: true));
        Assert.True(r.Interrupted);
        var t = TrainingMeta(r.CheckpointPath!);
        Assert.Equal((0, 0, 0L), (t["epoch"]!.GetValue<int>(), t["batch"]!.GetValue<int>(), t["step"]!.GetValue<long>()));
    }

    [Fact]
    public void ResumingAFinishedRunOnlyEvaluatesAndWritesNothing()
    {
        string ckpt = baseline.Result.CheckpointPath!;
        byte[] before = File.ReadAllBytes(ckpt);
        string metrics = File.ReadAllText(Path.Combine(baseline.Dir.Path, Trainer.MetricsFile));
        var progress = new SyncProgress(_ => { });
        var r = Trainer.Run(new TrainOptions { OutDir = baseline.Dir.Path }, resume: true, progress: progress);
        Assert.False(r.Interrupted);
        AssertSameCurve(baseline.Result.History, r.History);
        Assert.Empty(progress.Events.OfType<StepProgress>());
        Assert.Equal(baseline.Result.FinalEvaluation!.Accuracy, r.FinalEvaluation!.Accuracy);
        Assert.Equal(baseline.Result.FinalEvaluation.Loss, r.FinalEvaluation.Loss);
        Assert.Equal(before, File.ReadAllBytes(ckpt));
        Assert.Equal(metrics, File.ReadAllText(Path.Combine(baseline.Dir.Path, Trainer.MetricsFile)));
    }

    [Fact]
    public void ResumeWithoutCheckpointFails()
    {
        using var dir = new TempDir("train");
        var e = Assert.Throws<CheckpointException>(() => Trainer.Run(new TrainOptions { OutDir = dir.Path }, resume: true));
        Assert.Contains(dir.Path, e.Message);
    }

    [Fact]
    public void NonFiniteLossStopsTheRunAndKeepsTheLastGoodCheckpoint()
    {
        using var dir = new TempDir("train");
        var good = Trainer.Run(BaselineRun.Tiny(dir.Path) with { Epochs = 1 });
        byte[] before = File.ReadAllBytes(good.CheckpointPath!);
        string metrics = File.ReadAllText(Path.Combine(dir.Path, Trainer.MetricsFile));

        var bad = BaselineRun.Tiny(dir.Path) with { LearningRate = 1e30f, ClipGradNorm = 0 };
        var e = Assert.Throws<NonFiniteLossException>(() => Trainer.Run(bad));
        Assert.Contains(good.CheckpointPath!, e.Message);
        Assert.Contains("kept", e.Message);
        Assert.Equal(before, File.ReadAllBytes(good.CheckpointPath!));
        Assert.False(File.Exists(good.CheckpointPath! + ".tmp"));
        Assert.Equal(metrics, File.ReadAllText(Path.Combine(dir.Path, Trainer.MetricsFile)));
        Assert.Equal(1, Checkpoint.Load(good.CheckpointPath!).Info.Training["epoch"]!.GetValue<int>());
    }

    [Fact]
    public void NonFiniteLossWithoutAnyCheckpointSaysSoAndWritesNone()
    {
        using var dir = new TempDir("train");
        var bad = BaselineRun.Tiny(dir.Path) with { LearningRate = 1e30f, ClipGradNorm = 0 };
        var e = Assert.Throws<NonFiniteLossException>(() => Trainer.Run(bad));
        Assert.Contains("No checkpoint", e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, Trainer.CheckpointFile)));
    }

    [Fact]
    public void MetricsHaveOneJsonLinePerEpochAndThePlotIsWellFormedSvg()
    {
        var lines = File.ReadAllLines(Path.Combine(baseline.Dir.Path, Trainer.MetricsFile));
        Assert.Equal(2, lines.Length);
        string[] keys = ["epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "images_per_second", "learning_rate"];
        for (int i = 0; i < lines.Length; i++)
        {
            var o = JsonNode.Parse(lines[i])!.AsObject();
            Assert.Equal(keys.Order(), o.Select(kv => kv.Key).Order());
            Assert.Equal(i + 1, o["epoch"]!.GetValue<int>());
            var h = baseline.Result.History[i];
            Assert.Equal(h.TrainLoss, o["train_loss"]!.GetValue<double>());
            Assert.Equal(h.TestAccuracy, o["test_accuracy"]!.GetValue<double>());
            Assert.InRange(o["test_accuracy"]!.GetValue<double>(), 0, 1);
        }
        Assert.False(File.Exists(Path.Combine(baseline.Dir.Path, Trainer.MetricsFile + ".tmp")));

        var svg = XDocument.Load(Path.Combine(baseline.Dir.Path, Trainer.PlotFile));
        XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.Equal(ns + "svg", svg.Root!.Name);
        var polylines = svg.Descendants(ns + "polyline").ToList();
        Assert.Equal(4, polylines.Count); // loss and accuracy, train and test
        Assert.All(polylines, p => Assert.Equal(2, p.Attribute("points")!.Value.Split(' ').Length));
        Assert.Contains(svg.Descendants(ns + "text"), t => t.Value == "loss");
    }

    [Fact]
    public void PlotOfAnEmptyOrNonFiniteHistoryIsStillWellFormed()
    {
        XDocument.Parse(Plot.TrainingCurves([]));
        var m = new EpochMetrics(1, 1, double.NaN, 0.1, double.PositiveInfinity, 0.1, 1, 1, 1e-3f);
        var doc = XDocument.Parse(Plot.TrainingCurves([m, m with { Epoch = 2 }]));
        Assert.DoesNotContain("NaN", doc.ToString());
        Assert.DoesNotContain("Infinity", doc.ToString());
    }

    [Fact]
    public void FitToDataSetsImageSizeChannelsAndClasses()
    {
        var preset = Presets.Get("vit-fmnist").Spec;
        var info = new DataInfo("folder", ["a", "b", "c"], 3, 16, 16, [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]);
        var fitted = Trainer.FitToData(preset, info);
        Assert.Equal(16, fitted.Kwargs["image_size"]!.GetValue<int>());
        Assert.Equal(3, fitted.Kwargs["channels"]!.GetValue<int>());
        Assert.Equal(3, fitted.Kwargs["num_classes"]!.GetValue<int>());
        Assert.Equal(preset.Kwargs["dim"]!.ToJsonString(), fitted.Kwargs["dim"]!.ToJsonString());
        Assert.Equal(28, preset.Kwargs["image_size"]!.GetValue<int>()); // the preset itself is untouched
        Assert.Equal(1, preset.Kwargs["channels"]!.GetValue<int>());
        var model = fitted.Build();
        Assert.Equal([2, 3], model.Forward(new Tensor(2, 3, 16, 16)).Shape);

        var wide = Trainer.FitToData(preset, info with { Height = 8, Width = 12 });
        Assert.Equal("[8,12]", wide.Kwargs["image_size"]!.ToJsonString());
    }

    [Fact]
    public void ModelArgsReplaceThePresetsArgumentsAndUnknownNamesAreErrors()
    {
        var preset = Presets.Get("vit-fmnist").Spec;
        var spec = Trainer.WithModelArgs(preset, new Dictionary<string, string> { ["dim"] = "48", ["depth"] = "2", ["pool"] = "mean", ["dropout"] = "0.25" }, "vit-fmnist");
        Assert.Equal(48, spec.Kwargs["dim"]!.GetValue<int>());
        Assert.Equal(2, spec.Kwargs["depth"]!.GetValue<int>());
        Assert.Equal("mean", spec.Kwargs["pool"]!.GetValue<string>());
        Assert.Equal(0.25, spec.Kwargs["dropout"]!.GetValue<double>());
        Assert.Equal(Presets.FashionMnist.Dim, preset.Kwargs["dim"]!.GetValue<int>()); // the preset itself is untouched
        var model = (ViT)spec.Build();
        Assert.Equal(48, model.Config.Dim);
        Assert.Equal(2, model.Config.Depth);
        Assert.Same(preset, Trainer.WithModelArgs(preset, null, "vit-fmnist"));
        var e = Assert.Throws<ArgumentException>(() => Trainer.WithModelArgs(preset, new Dictionary<string, string> { ["width"] = "3" }, "vit-fmnist"));
        Assert.Contains("'width'", e.Message);
        Assert.Contains("dim", e.Message);
    }

    [Theory]
    [InlineData("(4, 7)", "[4,7]")]
    [InlineData("(4,7)", "[4,7]")]
    [InlineData("[4, 7]", "[4,7]")]
    [InlineData("(7,)", "[7]")]
    [InlineData("True", "true")]
    [InlineData("False", "false")]
    [InlineData("None", "null")]
    [InlineData("0.1", "0.1")]
    [InlineData("mean", "\"mean\"")]
    [InlineData("(a, b", "\"(a, b\"")]
    public void ModelArgValuesAcceptJsonAndPythonLiterals(string text, string json)
    {
        var node = Trainer.ParseArgValue(text);
        Assert.Equal(json, node?.ToJsonString() ?? "null");
    }

    [Fact]
    public void APythonTupleSetsARectangularPatch()
    {
        var spec = Trainer.WithModelArgs(Presets.Get("vit-fmnist").Spec, new Dictionary<string, string> { ["patch_size"] = "(4, 7)" }, "vit-fmnist");
        var model = (ViT)spec.Build();
        Assert.Equal(4, model.Config.PatchHeight);
        Assert.Equal(7, model.Config.PatchWidth);
    }

    [Fact]
    public void TrainingOnAnImageFolderFitsTheModelToIt()
    {
        using var dir = new TempDir("folder");
        int counter = 0;
        DataSetsTests.WriteImages(dir.Path, ["ant", "bee", "cow"], 6, ref counter);
        using var outDir = new TempDir("train");
        var r = Trainer.Run(new TrainOptions
        {
            Dataset = "folder", DataDir = dir.Path, ImageSize = 8, Channels = 3, Epochs = 1, BatchSize = 8, OutDir = outDir.Path,
        });
        var ckpt = Checkpoint.Load(r.CheckpointPath!);
        var kwargs = ckpt.Info.Model.Kwargs;
        Assert.Equal((8, 3, 3), (kwargs["image_size"]!.GetValue<int>(), kwargs["channels"]!.GetValue<int>(), kwargs["num_classes"]!.GetValue<int>()));
        var data = DataInfo.FromJson(ckpt.Info.Data);
        Assert.Equal(["ant", "bee", "cow"], data.ClassNames);
        Assert.Equal(3, r.History[0].Step); // 18 images: 1 (10%) held out, 17 train in batches of 8 → 3 steps
        Assert.Equal(1, r.FinalEvaluation!.Count);
    }

    [Fact]
    public void InvalidOptionsAreRejectedBeforeTraining()
    {
        using var dir = new TempDir("train");
        foreach (var bad in new[]
        {
            BaselineRun.Tiny(dir.Path) with { Epochs = 0 }, BaselineRun.Tiny(dir.Path) with { BatchSize = 0 },
            BaselineRun.Tiny(dir.Path) with { LearningRate = 0 }, BaselineRun.Tiny(dir.Path) with { LabelSmoothing = 1 },
            BaselineRun.Tiny(dir.Path) with { TrainLimit = 0 }, BaselineRun.Tiny(dir.Path) with { ProgressInterval = TimeSpan.FromSeconds(-1) },
        })
            Assert.Throws<ArgumentException>(() => Trainer.Run(bad));
        Assert.False(File.Exists(Path.Combine(dir.Path, Trainer.CheckpointFile)));
    }

    [Fact]
    public void OptionsRoundTripThroughJson()
    {
        var o = BaselineRun.Tiny("x/y") with { DataDir = "/d", LearningRate = 1.5e-3f, Flip = false, TestLimit = null };
        var json = o.ToJson();
        Assert.True(json.ContainsKey("learning_rate"));
        Assert.True(json.ContainsKey("train_limit"));
        Assert.False(json.ContainsKey("progress_interval"));   // how often to report is not part of the run
        Assert.Equal(o, TrainOptions.FromJson(JsonNode.Parse(json.ToJsonString())!.AsObject()));
    }
}
