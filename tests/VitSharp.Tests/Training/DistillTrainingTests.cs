using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Optim;
using VitSharp.Tests.Data;
using VitSharp.Training;
using static VitSharp.Tests.Training.TrainingTestUtil;

namespace VitSharp.Tests.Training;

/// <summary>Tiny teacher checkpoints on Fashion-MNIST for distillation tests.</summary>
internal static class TinyTeacher
{
    public static ViTConfig Config(int classes) => new()
    {
        ImageHeight = 28, ImageWidth = 28, PatchHeight = 7, PatchWidth = 7, NumClasses = classes, Dim = 16, Depth = 1,
        Heads = 2, DimHead = 8, MlpDim = 32, Channels = 1,
    };

    /// <summary>
    /// Writes a checkpoint of a tiny ViT teacher (dim 16, depth 1, patch 7) to <paramref name="path"/>: with 10 classes it
    /// is first trained for 16 AdamW steps on the first 256 training images; with another class count it stays untrained.
    /// </summary>
    public static string Create(string path, int classes = 10)
    {
        var (train, _, info) = DataSets.Load("fashion-mnist", null);
        var cfg = Config(classes);
        Init.Seed(5);
        var teacher = new ViT(cfg);
        if (classes == train.NumClasses)
        {
            var opt = new AdamW(teacher.NamedParameters(), 3e-3f, weightDecay: 0);
            var loader = new DataLoader(DataSets.Limit(train, 256), 32, shuffle: true, seed: 1, info.Normalize());
            for (int epoch = 0; epoch < 2; epoch++)
                foreach (var b in loader.Epoch(epoch))
                {
                    using var scope = TensorScope.Begin();
                    teacher.ZeroGrad();
                    F.CrossEntropy(teacher.Forward(b.Images), b.Labels).Backward();
                    opt.Step();
                }
        }
        var data = info with { ClassNames = Enumerable.Range(0, classes).Select(i => i < info.ClassNames.Count ? info.ClassNames[i] : $"c{i}").ToArray() };
        Checkpoint.Save(path, teacher, new CheckpointInfo(ModelSpec.ViT(cfg), data.ToJson(), new JsonObject()));
        return path;
    }
}

/// <summary>A tiny teacher and one distillation run of the default student (3 epochs × 6 steps), shared by the tests.</summary>
public sealed class DistillRun : IDisposable
{
    public TempDir Dir { get; } = new("distill");
    public string TeacherPath { get; }
    public TrainOptions Options { get; }
    public TrainResult Result { get; }

    public static TrainOptions Tiny(string outDir, string teacher) => new()
    {
        TrainLimit = 96, TestLimit = 32, BatchSize = 16, Epochs = 3, Seed = 3, WarmupEpochs = 0.5f, OutDir = outDir,
        Teacher = teacher, Temperature = 2f, Alpha = 0.5f,
    };

    public DistillRun()
    {
        TeacherPath = TinyTeacher.Create(Dir.File("teacher.safetensors"));
        Options = Tiny(Path.Combine(Dir.Path, "student"), TeacherPath);
        Result = Trainer.Run(Options);
    }

    public void Dispose() => Dir.Dispose();
}

/// <summary>Training a DistillableViT student against a teacher checkpoint (<c>vit train --teacher</c>).</summary>
public class DistillTrainingTests(DistillRun run) : IClassFixture<DistillRun>
{
    [Fact]
    public void TheDistillationLossDecreases()
    {
        var h = run.Result.History;
        Assert.Equal(3, h.Count);
        Assert.All(h, m => Assert.True(m.TrainDistillLoss is double d && double.IsFinite(d) && d >= 0, $"distill loss {m.TrainDistillLoss}"));
        // Every epoch averages over the same 96 images, so without learning the three figures would be equal.
        Assert.True(h[2].TrainDistillLoss < 0.9 * h[0].TrainDistillLoss, $"distill loss {h[0].TrainDistillLoss} → {h[1].TrainDistillLoss} → {h[2].TrainDistillLoss}");
        Assert.True(h[2].TrainLoss < h[0].TrainLoss, $"train loss {h[0].TrainLoss} → {h[2].TrainLoss}");
        var lines = File.ReadAllLines(Path.Combine(run.Options.OutDir, Trainer.MetricsFile));
        Assert.All(lines, l => Assert.Contains("\"train_distill_loss\":", l));
    }

    [Fact]
    public void TheCheckpointHoldsTheWrapperWithTheUnchangedTeacher()
    {
        var ckpt = Checkpoint.Load(run.Result.CheckpointPath!);
        var w = Assert.IsType<DistillWrapper>(ckpt.Model);
        Assert.Equal(DistillWrapper.ConstructorName, ckpt.Info.Model.Constructor);
        Assert.Equal(new DistillConfig { Temperature = 2f, Alpha = 0.5f }, w.Config);
        // The student has the default preset's size, fitted to the data.
        Assert.Equal(Presets.FashionMnist, w.Student.Config);
        var keys = Weights.Load(run.Result.CheckpointPath!).Keys.ToList();
        Assert.Contains("distillation_token", keys);
        Assert.Contains("distill_mlp.1.weight", keys);
        Assert.Contains("student.cls_token", keys);
        Assert.DoesNotContain(keys, k => k.StartsWith("optimizer.", StringComparison.Ordinal) && k.Contains(".teacher.", StringComparison.Ordinal));
        Assert.Contains(keys, k => k.StartsWith("optimizer.", StringComparison.Ordinal) && k.EndsWith(".distillation_token", StringComparison.Ordinal));
        // The teacher did not train: its weights are the teacher checkpoint's, bit for bit.
        var teacher = Weights.Load(run.TeacherPath);
        foreach (var (name, p) in w.Teacher.StateDict())
            Assert.Equal(teacher[name].Data, p.Data);
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void EvaluationUsesTheClassTokenLogits()
    {
        var ckpt = Checkpoint.Load(run.Result.CheckpointPath!);
        var w = (DistillWrapper)ckpt.Model;
        var (_, test, info) = DataSets.Load("fashion-mnist", null);
        var subset = DataSets.Limit(test, 32);
        var viaWrapper = Evaluator.Evaluate(w, subset, info.Normalize());
        var viaStudent = Evaluator.Evaluate(w.Student.ToViT(), subset, info.Normalize());
        Assert.Equal(viaStudent.Accuracy, viaWrapper.Accuracy);
        Assert.Equal(viaStudent.Loss, viaWrapper.Loss);
        Assert.Equal(run.Result.FinalEvaluation!.Accuracy, viaWrapper.Accuracy);
    }

    [Trait("Category", "Slow")]
    [Fact]
    public void AnInterruptedDistillationRunResumesExactly()
    {
        using var dir = new TempDir("distill");
        string teacherCopy = dir.File("teacher-copy.safetensors");
        File.Copy(run.TeacherPath, teacherCopy);
        string outDir = Path.Combine(dir.Path, "student");
        var options = run.Options with { OutDir = outDir, Teacher = teacherCopy };
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(e => { if (e is StepProgress { Epoch: 2, Batch: 6 }) cts.Cancel(); });
        var first = Trainer.Run(options, progress: progress, cancel: cts.Token);
        Assert.True(first.Interrupted);
        // Resuming does not need the teacher checkpoint any more: the teacher's weights are in the student's checkpoint.
        File.Delete(teacherCopy);
        var resumed = Trainer.Run(new TrainOptions { OutDir = outDir }, resume: true);
        Assert.False(resumed.Interrupted);
        AssertSameCurve(run.Result.History, resumed.History);
        Assert.Equal(run.Result.History.Select(m => m.TrainDistillLoss), resumed.History.Select(m => m.TrainDistillLoss));
        AssertSameTensors(run.Result.CheckpointPath!, resumed.CheckpointPath!);
    }

    [Fact]
    public void HardDistillationRuns()
    {
        using var dir = new TempDir("distill");
        var r = Trainer.Run(run.Options with { OutDir = dir.Path, Epochs = 1, TrainLimit = 32, Distill = "hard" });
        Assert.True(r.History[0].TrainDistillLoss is double d && double.IsFinite(d));
        var w = (DistillWrapper)Checkpoint.Load(r.CheckpointPath!).Model;
        Assert.True(w.Config.Hard);
    }

    [Fact]
    public void ATeacherWithAnotherClassCountIsRejectedBeforeTraining()
    {
        using var dir = new TempDir("distill");
        string teacher = TinyTeacher.Create(dir.File("five.safetensors"), classes: 5);
        string outDir = Path.Combine(dir.Path, "out");
        var ex = Assert.Throws<ArgumentException>(() => Trainer.Run(run.Options with { OutDir = outDir, Teacher = teacher }));
        Assert.Contains("teacher predicts 5 classes but the student 10", ex.Message);
        Assert.Contains(teacher, ex.Message);
        Assert.False(File.Exists(Path.Combine(outDir, Trainer.CheckpointFile)));
    }

    [Fact]
    public void TheTeacherCannotBeTheRunsOwnCheckpoint()
    {
        using var dir = new TempDir("distill");
        File.Copy(run.TeacherPath, dir.File(Trainer.CheckpointFile));
        var ex = Assert.Throws<ArgumentException>(() => Trainer.Run(run.Options with { OutDir = dir.Path, Teacher = dir.File(Trainer.CheckpointFile) }));
        Assert.Contains("own checkpoint", ex.Message);
        Assert.True(SameTensors(run.TeacherPath, dir.File(Trainer.CheckpointFile)));
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void OnlyAViTPresetCanBeTheStudent()
    {
        var (_, _, info) = DataSets.Load("fashion-mnist", null);
        var spec = new ModelSpec("vit_pytorch.simple_vit.SimpleViT", new JsonObject());
        var ex = Assert.Throws<ArgumentException>(() => Trainer.BuildDistillation(run.Options with { Model = "simple" }, spec, info));
        Assert.Contains("not a ViT", ex.Message);
    }

    [Theory]
    [InlineData("medium", 1f, 0.5f, "soft")]
    [InlineData("soft", 0f, 0.5f, "temperature")]
    [InlineData("soft", -2f, 0.5f, "temperature")]
    [InlineData("hard", 1f, 1.2f, "alpha")]
    [InlineData("hard", 1f, -0.5f, "alpha")]
    public void BadDistillationOptionsAreRejected(string kind, float temperature, float alpha, string mentioned)
    {
        var o = run.Options with { Distill = kind, Temperature = temperature, Alpha = alpha };
        Assert.Contains(mentioned, Assert.Throws<ArgumentException>(o.Validate).Message);
    }
}

/// <summary>A few optimizer steps on one batch lower the distillation term (library level, no data set).</summary>
public class DistillStepTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AFewStepsLowerTheDistillationLoss(bool hard)
    {
        Init.Seed(4);
        var student = new DistillableViT(VitSharp.Tests.Models.DistillTests.Tiny(classes: 4));
        var teacher = new ViT(VitSharp.Tests.Models.DistillTests.Tiny(classes: 4, dim: 12, heads: 3));
        foreach (var p in teacher.MlpHead!.Parameters()) for (int i = 0; i < p.Size; i++) p.Data[i] *= 8;   // confident targets
        var w = new DistillWrapper(teacher, student, new DistillConfig { Temperature = 2f, Alpha = 0.7f, Hard = hard });
        var opt = new AdamW(w.NamedParameters().Where(p => p.Parameter.RequiresGrad), 1e-2f, weightDecay: 0);
        Assert.Equal(3 * (w.NamedParameters().Count() - teacher.NamedParameters().Count()), opt.StateDict().Count);   // exp_avg, exp_avg_sq, step
        var img = TestData.Uniform(3, -1, 1, 8, 3, 8, 8);
        int[] labels = [0, 1, 2, 3, 3, 2, 1, 0];
        var teacherBefore = teacher.StateDict().ToDictionary(kv => kv.Key, kv => (float[])kv.Value.Data.Clone());
        float first = 0, last = 0;
        for (int step = 0; step < 15; step++)
        {
            w.ZeroGrad();
            var r = w.ComputeLoss(img, labels);
            if (step == 0) first = r.DistillationLoss.Item();
            last = r.DistillationLoss.Item();
            r.Loss.Backward();
            opt.Step();
        }
        Assert.True(last < 0.7f * first, $"distillation loss {first} → {last}");
        foreach (var (name, p) in teacher.StateDict()) Assert.Equal(teacherBefore[name], p.Data);
    }
}
