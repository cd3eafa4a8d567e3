using VitSharp.NN;
using VitSharp.Tests.Autograd;
using VitSharp.Tests.Kernels;

namespace VitSharp.Tests.NN;

/// <summary>Conv2d, BatchNorm2d, MaxPool2d, AdaptiveAvgPool2d, Unfold, Fold and Flatten modules: state_dict layout, modes, buffers.</summary>
public class SpatialModuleTests
{
    [Fact]
    public void Conv2dKeysShapesAndInitBounds()
    {
        var conv = new Conv2d(6, 8, 3, stride: 2, padding: 1, groups: 2);
        var sd = conv.StateDict();
        Assert.Equal(new[] { "bias", "weight" }, sd.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(new[] { 8, 3, 3, 3 }, sd["weight"].Shape);
        Assert.Equal(new[] { 8 }, sd["bias"].Shape);
        float bound = 1f / MathF.Sqrt(3 * 3 * 3);
        Assert.All(conv.Weight.Data, v => Assert.InRange(v, -bound, bound));
        Assert.True(conv.Weight.Data.Max() > 0.8f * bound && conv.Weight.Data.Min() < -0.8f * bound, "weights should fill U(−1/√fan_in, 1/√fan_in)");
        Assert.Equal(new[] { "weight" }, new Conv2d(3, 4, 1, bias: false).StateDict().Keys);
        var x = TestData.Uniform(1, -1, 1, 2, 6, 7, 7);
        var y = conv.Forward(x);
        var expected = SpatialReference.Conv2d(x.Data, conv.Weight.Data, conv.Bias!.Data, 2, 6, 7, 7, 8, 3, 3, 2, 2, 1, 1, 2);
        TestData.AssertClose(expected, y.Data, 1e-5, 1e-5, "Conv2d module");
    }

    [Fact]
    public void Conv2dRejectsBadArguments()
    {
        Assert.Throws<ArgumentException>(() => new Conv2d(6, 8, 3, groups: 4));
        Assert.Throws<ArgumentException>(() => new Conv2d(0, 8, 3));
        Assert.Throws<ArgumentException>(() => new Conv2d(3, 8, 0));
        Assert.Throws<ArgumentException>(() => new Conv2d(3, 8, 3, stride: 0));
        Assert.Throws<ArgumentException>(() => new Conv2d(3, 8, 3, padding: -1));
    }

    [Fact]
    public void BatchNorm2dHasTorchvisionBuffersAndTracksRunningStatistics()
    {
        var bn = new BatchNorm2d(3);
        var sd = bn.StateDict();
        Assert.Equal(new[] { "bias", "num_batches_tracked", "running_mean", "running_var", "weight" }, sd.Keys.Order(StringComparer.Ordinal));
        Assert.Empty(sd["num_batches_tracked"].Shape);
        Assert.Equal(new[] { "bias", "weight" }, bn.NamedParameters().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.All(bn.RunningVar!.Data, v => Assert.Equal(1f, v));

        var x1 = TestData.Uniform(1, -1, 3, 4, 3, 5, 5);
        var x2 = TestData.Uniform(2, -2, 1, 4, 3, 5, 5);
        bn.Train();
        var y1 = bn.Forward(x1);
        bn.Forward(x2);
        Assert.Equal(2f, bn.NumBatchesTracked!.Item());
        // running = 0.9·(0.9·init + 0.1·stats1) + 0.1·stats2, with unbiased variances.
        var (m1, v1) = Stats(x1); var (m2, v2) = Stats(x2);
        TestData.AssertClose(m1.Select((m, c) => 0.9 * 0.1 * m + 0.1 * m2[c]).ToArray(), bn.RunningMean!.Data, 1e-6, 1e-5, "running mean");
        TestData.AssertClose(v1.Select((v, c) => 0.81 + 0.9 * 0.1 * v + 0.1 * v2[c]).ToArray(), bn.RunningVar.Data, 1e-6, 1e-5, "running var");
        // Training output uses the batch's own statistics: zero mean per channel.
        for (int c = 0; c < 3; c++) Assert.True(Math.Abs(Channel(y1, c).Average()) < 1e-5);

        bn.Eval();
        var before = bn.RunningMean.Data.ToArray();
        var ye = bn.Forward(x1);
        Assert.Equal(before, bn.RunningMean.Data);
        Assert.Equal(2f, bn.NumBatchesTracked.Item());
        var expected = new double[x1.Size];
        for (int i = 0; i < x1.Size; i++) { int c = i / 25 % 3; expected[i] = (x1.Data[i] - bn.RunningMean.Data[c]) / Math.Sqrt(bn.RunningVar.Data[c] + 1e-5); }
        TestData.AssertClose(expected, ye.Data, 1e-5, 1e-5, "eval output");
    }

    [Fact]
    public void BatchNorm2dCumulativeMomentumAverages()
    {
        var bn = new BatchNorm2d(2, momentum: null);
        var x1 = TestData.Uniform(3, -1, 1, 2, 2, 3, 3); var x2 = TestData.Uniform(4, 0, 2, 2, 2, 3, 3);
        bn.Forward(x1); bn.Forward(x2);
        var (m1, _) = Stats(x1); var (m2, _) = Stats(x2);
        TestData.AssertClose(m1.Select((m, c) => (m + m2[c]) / 2).ToArray(), bn.RunningMean!.Data, 1e-6, 1e-5, "cumulative running mean");
    }

    [Fact]
    public void BatchNorm2dGradientsInBothModes()
    {
        var bn = new BatchNorm2d(2);
        bn.Weight!.Data[0] = 1.3f; bn.Bias!.Data[1] = -0.4f;
        var x = TestData.Uniform(5, -2, 2, 3, 2, 3, 3);
        bn.Train();
        GradCheck.Verify(t => bn.Forward(t[0]), [x, bn.Weight, bn.Bias]);
        bn.Eval();
        GradCheck.Verify(t => bn.Forward(t[0]), [x, bn.Weight, bn.Bias]);
        Assert.Throws<ArgumentException>(() => bn.Forward(Tensor.Zeros(2, 2, 3)));
    }

    [Fact]
    public void PoolingUnfoldFoldAndFlattenModules()
    {
        var x = TestData.Uniform(6, -1, 1, 2, 3, 7, 6);
        Assert.Equal(F.MaxPool2d(x, 3, 2, 1).Data, new MaxPool2d(3, 2, 1).Forward(x).Data);
        Assert.Equal(new[] { 2, 3, 3, 3 }, new MaxPool2d(2).Forward(x).Shape);
        Assert.Equal(new[] { 2, 3, 1, 1 }, new AdaptiveAvgPool2d().Forward(x).Shape);
        Assert.Equal(F.AdaptiveAvgPool2d(x, 2, 4).Data, new AdaptiveAvgPool2d(2, 4).Forward(x).Data);
        var cols = new Unfold(3, 2, 1).Forward(x);
        Assert.Equal(new[] { 2, 27, 12 }, cols.Shape);
        Assert.Equal(new[] { 2, 3, 7, 6 }, new Fold((7, 6), 3, 2, 1).Forward(cols).Shape);
        Assert.Equal(new[] { 2, 126 }, new Flatten().Forward(x).Shape);
        Assert.Empty(new MaxPool2d(3).StateDict());
        Assert.Throws<ArgumentException>(() => new MaxPool2d(3, 1, 2));
        Assert.Throws<ArgumentException>(() => new AdaptiveAvgPool2d(0));
    }

    private static IEnumerable<double> Channel(Tensor t, int c)
    {
        int ch = t.Dim(1), s = t.Dim(2) * t.Dim(3);
        for (int b = 0; b < t.Dim(0); b++) for (int i = 0; i < s; i++) yield return t.Data[(b * ch + c) * s + i];
    }

    /// <summary>Per-channel mean and unbiased variance.</summary>
    private static (double[] mean, double[] var) Stats(Tensor x)
    {
        int c = x.Dim(1);
        var mean = new double[c]; var v = new double[c];
        for (int ch = 0; ch < c; ch++)
        {
            var vals = Channel(x, ch).ToArray();
            mean[ch] = vals.Average();
            v[ch] = vals.Sum(q => (q - mean[ch]) * (q - mean[ch])) / (vals.Length - 1);
        }
        return (mean, v);
    }
}
