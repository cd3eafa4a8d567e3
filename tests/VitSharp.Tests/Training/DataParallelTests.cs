using VitSharp.Kernels;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Tests.Training;

/// <summary>DataParallel: two half-batches on the model and a replica give the whole batch's loss and gradient.</summary>
public class DataParallelTests
{
    private static ViT Build(int seed)
    {
        Init.Seed(seed);
        return new ViT(new ViTConfig
        {
            ImageHeight = 12, ImageWidth = 12, PatchHeight = 4, PatchWidth = 4, NumClasses = 5, Dim = 16, Depth = 2,
            Heads = 2, DimHead = 8, MlpDim = 24, Channels = 1,
        });
    }

    private static DataParallel.HalfResult Half(Module m, Tensor x, int[] y, float w, int replica)
    {
        using var scope = TensorScope.Begin();
        var logits = m.Forward(x);
        var loss = F.CrossEntropy(logits, y, 0.1f);
        float value = loss.Item();
        (w == 1f ? loss : loss * w).Backward();
        var pred = Evaluator.ArgMax(logits);
        return new DataParallel.HalfResult((double)value * y.Length, y.Where((l, i) => pred[i] == l).Count());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(16)]
    public void StepMatchesSingleReplicaLossAndGradients(int batch)
    {
        var images = TestData.Uniform(batch, -1, 1, batch, 1, 12, 12);
        var labels = Enumerable.Range(0, batch).Select(i => (i * 3) % 5).ToArray();

        var reference = Build(3);
        reference.ZeroGrad(setToNone: false);
        var expected = Half(reference, images, labels, 1f, 0);

        var model = Build(3);
        // The replica starts from other weights: the constructor must copy the model's into it.
        using var dp = new DataParallel(model, () => Build(99));
        model.ZeroGrad(setToNone: false);
        var actual = dp.Step(images, labels, Half);

        Assert.Equal(expected.Correct, actual.Correct);
        Assert.Equal(expected.LossSum, actual.LossSum, 1e-4 * Math.Max(1, Math.Abs(expected.LossSum)));
        var refParams = reference.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
        foreach (var (name, p) in model.NamedParameters())
        {
            var e = refParams[name].Grad!.Data;
            double scale = e.Max(v => Math.Abs(v));
            TestData.AssertClose(e, p.Grad!.Data, 1e-5 * Math.Max(scale, 1e-3), 1e-4, name);
        }
    }

    [Fact]
    public void SyncReplicaCopiesUpdatedParameters()
    {
        var model = Build(1);
        using var dp = new DataParallel(model, () => Build(2));
        foreach (var p in model.Parameters()) Array.Fill(p.Data, 0.25f);
        dp.SyncReplica();
        var images = TestData.Uniform(5, -1, 1, 4, 1, 12, 12);
        var labels = new[] { 0, 1, 2, 3 };
        var reference = Build(7);
        foreach (var p in reference.Parameters()) Array.Fill(p.Data, 0.25f);
        reference.ZeroGrad(setToNone: false);
        var expected = Half(reference, images, labels, 1f, 0);
        model.ZeroGrad(setToNone: false);
        var actual = dp.Step(images, labels, Half);
        Assert.Equal(expected.LossSum, actual.LossSum, 1e-4);
    }

    [Fact]
    public void ErrorOnTheReplicaThreadReachesTheCaller()
    {
        var model = Build(1);
        using var dp = new DataParallel(model, () => Build(1));
        var images = TestData.Uniform(5, -1, 1, 4, 1, 12, 12);
        var e = Assert.Throws<InvalidOperationException>(() => dp.Step(images, new[] { 0, 1, 2, 3 },
            (m, x, y, w, r) => r == 1 ? throw new InvalidOperationException("replica failed") : Half(m, x, y, w, r)));
        Assert.Equal("replica failed", e.Message);
        // The pool keeps working after an error.
        model.ZeroGrad(setToNone: false);
        dp.Step(images, new[] { 0, 1, 2, 3 }, Half);
    }

    [Theory]
    [InlineData(1, 256)]
    [InlineData(37, 256)]
    [InlineData(37, 9)]
    public void EvaluationOnTwoCoresMatchesOneCore(int count, int batchSize)
    {
        var rng = new Random(count);
        var pixels = new byte[count * 144];
        rng.NextBytes(pixels);
        var data = new VitSharp.Data.InMemoryDataset(pixels, Enumerable.Range(0, count).Select(i => i % 5).ToArray(), 1, 12, 12,
            ["a", "b", "c", "d", "e"]);
        var model = Build(4);
        var expected = Evaluator.Evaluate(model, data, null, batchSize);
        using var dp = new DataParallel(model);
        var actual = Evaluator.Evaluate(model, data, null, batchSize, parallel: dp);
        Assert.Equal(expected.Count, actual.Count);
        Assert.Equal(expected.Accuracy, actual.Accuracy);
        Assert.Equal(expected.Loss, actual.Loss, 1e-5);
        Assert.Equal(expected.Confusion.Cast<int>(), actual.Confusion.Cast<int>());
        Assert.True(model.Training, "Evaluate restores the training mode");
    }

    [Fact]
    public void StepWithoutReplicaIsRefused()
    {
        var model = Build(1);
        using var dp = new DataParallel(model);
        var e = Assert.Throws<InvalidOperationException>(() => dp.Step(TestData.Uniform(1, -1, 1, 2, 1, 12, 12), [0, 1], Half));
        Assert.Contains("replica", e.Message);
    }

    [Fact]
    public void SerialScopeMakesKernelsSingleThreadedOnThisThreadOnly()
    {
        Assert.False(ComputeThreads.IsSerialThread);
        using (ComputeThreads.Serial())
        {
            Assert.True(ComputeThreads.IsSerialThread);
            Assert.Equal(1, ComputeThreads.Effective);
            bool other = true;
            var t = new Thread(() => other = ComputeThreads.IsSerialThread);
            t.Start(); t.Join();
            Assert.False(other);
        }
        Assert.False(ComputeThreads.IsSerialThread);
        Assert.Equal(ComputeThreads.Count, ComputeThreads.Effective);
    }
}
