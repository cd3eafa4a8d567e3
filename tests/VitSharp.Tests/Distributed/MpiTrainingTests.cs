using System.Text.Json.Nodes;
using VitSharp.Tests.Cli;
using VitSharp.Training;

namespace VitSharp.Tests.Distributed;

/// <summary>One uninterrupted single-process run, the reference every distributed run of <see cref="MpiTrainingTests"/> must match.</summary>
public sealed class ReferenceRun : IDisposable
{
    public string Dir { get; } = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-mpi-" + Guid.NewGuid().ToString("N"))).FullName;
    public string OutDir => Path.Combine(Dir, "reference");
    public (int Code, string Out, string Err) Result { get; }

    public ReferenceRun() => Result = TrainCliTests.Run(MpiTrainingTests.Args(OutDir));

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// <c>mpirun -np 2 vit train</c> on loopback: two ranks give the loss curve and weights of one process with the same global
/// batch; a checkpoint moves between 1 and 2 ranks; a rank that is killed or stops responding ends the job within seconds
/// and leaves the last checkpoint whole; ranks started with different data are refused; under mpirun a training step
/// allocates nothing. A tiny model (depth 2) and 3 batches of 64 per epoch keep each run to seconds.
/// </summary>
[Trait("Category", "Process")]
[Trait("Category", "Slow")]
[Collection(nameof(MpiTrainingTests))]
[CollectionDefinition(nameof(MpiTrainingTests), DisableParallelization = true)]
public sealed class MpiTrainingTests(ReferenceRun reference) : IClassFixture<ReferenceRun>
{
    private const int Epochs = 3, StepsPerEpoch = 3;

    internal static string[] Args(string outDir, int epochs = Epochs, params string[] more) =>
        ["train", "--set", "depth=2", "--train-limit", (64 * StepsPerEpoch).ToString(), "--test-limit", "100", "--batch-size", "64",
         "--epochs", epochs.ToString(), "--seed", "7", "--out", outDir, .. more];

    private string Out(string name) => Path.Combine(reference.Dir, name);

    private static JsonObject[] Metrics(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, Trainer.MetricsFile)).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!.AsObject()).ToArray();

    private static long SavedStep(string outDir) => Checkpoint.Load(Path.Combine(outDir, Trainer.CheckpointFile)).Info.Training["step"]!.GetValue<long>();

    /// <summary>The same epochs, steps, losses and accuracies as the reference, up to float rounding (relative 1e-5).</summary>
    private void AssertSameCurve(string outDir)
    {
        Assert.True(reference.Result.Code == 0, reference.Result.Err);
        var expected = Metrics(reference.OutDir);
        var got = Metrics(outDir);
        Assert.Equal(Epochs, expected.Length);
        Assert.Equal(expected.Length, got.Length);
        for (int e = 0; e < expected.Length; e++)
        {
            Assert.Equal(expected[e]["step"]!.GetValue<long>(), got[e]["step"]!.GetValue<long>());
            foreach (var key in new[] { "train_loss", "test_loss", "train_accuracy", "test_accuracy" })
            {
                double x = expected[e][key]!.GetValue<double>(), y = got[e][key]!.GetValue<double>();
                Assert.True(Math.Abs(x - y) <= 1e-5 * Math.Max(1, Math.Abs(x)), $"epoch {e + 1} {key}: {y}, the single process had {x}");
            }
        }
        var a = Checkpoint.Load(Path.Combine(reference.OutDir, Trainer.CheckpointFile)).Model.StateDict();
        var b = Checkpoint.Load(Path.Combine(outDir, Trainer.CheckpointFile)).Model.StateDict();
        foreach (var (name, t) in a)
        {
            float worst = 0;
            for (int i = 0; i < t.Size; i++) worst = Math.Max(worst, Math.Abs(t.Data[i] - b[name].Data[i]));
            Assert.True(worst <= 1e-4f, $"{name}: max |difference| {worst} from the single process's weights");
        }
    }

    [Fact]
    public void TwoRanksTrainTheSameLossCurveAndWeightsAsOneProcessWithTheSameGlobalBatch()
    {
        string outDir = Out("two-ranks");
        using var job = MpiJob.Start(2, Args(outDir));
        job.WaitForExit();
        Assert.True(job.ExitCode == 0, job.Transcript());
        Assert.Contains(job.Out, l => l.StartsWith("distributed over 2 MPI ranks", StringComparison.Ordinal));
        Assert.Single(job.Out, l => l.StartsWith("Done: test accuracy", StringComparison.Ordinal));   // rank 0 alone prints
        AssertSameCurve(outDir);
    }

    [Fact]
    public void ACheckpointOfTwoRanksResumesInOneProcessAndOneOfOneProcessResumesInTwoRanks()
    {
        // Two ranks stopped by SIGUSR1 (mpirun forwards it to every rank) after the first epoch, resumed by one process.
        string fromTwo = Out("from-two");
        using (var job = MpiJob.Start(2, Args(fromTwo)))
        {
            job.WaitForLine(l => l.StartsWith($"epoch 1/{Epochs}:", StringComparison.Ordinal));
            job.Signal(MpiJob.SIGUSR1);
            job.WaitForExit();
            Assert.Contains(job.Out, l => l.StartsWith("Interrupted; the checkpoint holds the run's position", StringComparison.Ordinal));
        }
        long stoppedAt = SavedStep(fromTwo);
        Assert.InRange(stoppedAt, StepsPerEpoch, Epochs * StepsPerEpoch - 1);
        var resumed = TrainCliTests.Run("train", "--out", fromTwo, "--resume");
        Assert.True(resumed.Code == 0, resumed.Err);
        AssertSameCurve(fromTwo);

        // One process stopped by SIGINT after the first epoch, resumed by two ranks.
        string fromOne = Out("from-one");
        using (var alone = MpiJob.StartAlone(null, Args(fromOne)))
        {
            alone.WaitForLine(l => l.StartsWith($"epoch 1/{Epochs}:", StringComparison.Ordinal));
            alone.Signal(MpiJob.SIGINT);
            alone.WaitForExit();
            Assert.True(alone.ExitCode == 130, alone.Transcript());
        }
        Assert.InRange(SavedStep(fromOne), StepsPerEpoch, Epochs * StepsPerEpoch - 1);
        using (var job = MpiJob.Start(2, "train", "--out", fromOne, "--resume"))
        {
            job.WaitForExit();
            Assert.True(job.ExitCode == 0, job.Transcript());
            Assert.Contains(job.Out, l => l.StartsWith("distributed over 2 MPI ranks", StringComparison.Ordinal));
        }
        AssertSameCurve(fromOne);
    }

    [Fact]
    public void KillingARankEndsTheJobWithinSecondsWithAClearErrorAndKeepsTheCheckpointWhole()
    {
        string outDir = Out("killed");
        using var job = MpiJob.Start(2, Args(outDir, epochs: 1000));
        job.WaitForLine(l => l.StartsWith("epoch 2/1000:", StringComparison.Ordinal));
        MpiJob.Signal(job.RankPid(1), MpiJob.SIGKILL);
        var took = job.WaitForExit(TimeSpan.FromSeconds(60));
        Assert.True(took < TimeSpan.FromSeconds(30), $"the job took {took.TotalSeconds:0.0} s to end after rank 1 was killed\n{job.Transcript()}");
        Assert.True(job.ExitCode != 0, job.Transcript());
        string all = string.Join('\n', job.Out.Concat(job.Err));
        Assert.True(all.Contains("rank 1", StringComparison.Ordinal) && all.Contains("signal 9", StringComparison.Ordinal),
            $"nothing says that rank 1 was killed\n{job.Transcript()}");
        Assert.DoesNotContain("   at ", all);
        Assert.True(SavedStep(outDir) >= 2 * StepsPerEpoch, job.Transcript());   // loads: the file is whole
    }

    [Fact]
    public void ARankThatStopsRespondingEndsTheJobAfterTheMpiTimeoutAndKeepsTheCheckpointWhole()
    {
        string outDir = Out("stopped");
        using var job = MpiJob.Start(2, Args(outDir, 1000, "--mpi-timeout", "3"));
        job.WaitForLine(l => l.StartsWith("epoch 2/1000:", StringComparison.Ordinal));
        int stopped = job.RankPid(1);
        MpiJob.Signal(stopped, MpiJob.SIGSTOP);
        try
        {
            var took = job.WaitForExit(TimeSpan.FromSeconds(90));
            Assert.True(took < TimeSpan.FromSeconds(40), $"the job took {took.TotalSeconds:0.0} s to end\n{job.Transcript()}");
            Assert.True(job.ExitCode != 0, job.Transcript());
            Assert.Contains(job.Err.Concat(job.Out), l => l.StartsWith("vit: error: rank 0 of 2: MPI_", StringComparison.Ordinal) &&
                l.Contains(" did not complete within 3 s (another rank died, hangs or is unreachable)", StringComparison.Ordinal));
            Assert.True(SavedStep(outDir) >= 2 * StepsPerEpoch, job.Transcript());
        }
        finally
        {
            try { MpiJob.Signal(stopped, MpiJob.SIGKILL); } catch (Xunit.Sdk.XunitException) { }   // gone already: mpirun ended it
        }
    }

    [Fact]
    public void RanksStartedWithDifferentDataAreRefusedWithAClearError()
    {
        string outDir = Out("mismatch");
        using var job = MpiJob.StartMpmd([(1, Args(outDir)), (1, ["train", "--set", "depth=2", "--train-limit", "256", "--test-limit", "100", "--batch-size", "64", "--out", outDir])]);
        job.WaitForExit(TimeSpan.FromSeconds(120));
        Assert.True(job.ExitCode != 0, job.Transcript());
        var errors = job.Err.Concat(job.Out).Where(l => l.StartsWith("vit: error: ", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(errors);
        Assert.All(errors, e => Assert.Contains("the ranks disagree on the number of training images", e));
        Assert.False(File.Exists(Path.Combine(outDir, Trainer.CheckpointFile)));
    }

    [Fact]
    public void ADistributedTrainingStepAllocatesNoManagedMemoryInTheSteadyState()
    {
        // The count covers all threads, so the JIT's background tier-up work would count too if it finished inside the
        // timed steps — which a warm-up cannot rule out under load (the full suite once measured 3,084 B per step this
        // way; alone, 0). With tiered compilation off every method is optimized at its first call: only the step's
        // own allocations remain.
        using var job = MpiJob.StartMpmd([(2, ["bench", "--train", "--model", "vit-fmnist", "--set", "depth=2", "--batch", "16", "--warmup", "12", "--steps", "4"])],
            new Dictionary<string, string> { ["DOTNET_TieredCompilation"] = "0" });
        job.WaitForExit();
        Assert.True(job.ExitCode == 0, job.Transcript());
        Assert.Contains(job.Out, l => l.Contains("2 MPI ranks (gradients all-reduced)", StringComparison.Ordinal));
        Assert.True(job.Out.Any(l => l.EndsWith("managed bytes allocated per step (all threads): 0", StringComparison.Ordinal)), job.Transcript());
    }
}
