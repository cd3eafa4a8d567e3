using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>CrossEntropyKernel (label smoothing) against a double twin.</summary>
public class CrossEntropyKernelTests
{
    public static TheoryData<int, int, float> Cases()
    {
        var d = new TheoryData<int, int, float>();
        foreach (var k in ReferenceMath.Lengths) { d.Add(3, k, 0f); d.Add(2, k, 0.1f); }
        d.Add(5, 10, 1f);
        d.Add(1, 1, 0.2f);
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void ForwardAndBackwardMatchReference(int rows, int k, float eps)
    {
        var logits = TestData.Uniform(rows * 31 + k, -4, 4, rows, k).Data;
        var rng = new Random(k);
        var labels = Enumerable.Range(0, rows).Select(_ => rng.Next(k)).ToArray();
        var lp = new float[rows * k];
        float loss = CrossEntropyKernel.Forward(logits, labels, rows, k, eps, lp);

        var elp = new double[rows * k];
        double eloss = 0;
        for (int r = 0; r < rows; r++)
        {
            var l = ReferenceMath.LogSoftmax(logits.AsSpan(r * k, k));
            l.CopyTo(elp, r * k);
            eloss += (1 - eps) * -l[labels[r]] + eps * -l.Average();
        }
        eloss /= rows;
        TestData.AssertClose(elp, lp, 1e-5, 1e-6, "log-probabilities");
        Assert.True(Math.Abs(loss - eloss) <= 1e-5 * Math.Max(1, Math.Abs(eloss)), $"loss {loss} vs {eloss}");

        const float dloss = 1.7f;
        var d = Enumerable.Repeat(0.5f, rows * k).ToArray();
        CrossEntropyKernel.Backward(dloss, lp, labels, rows, k, eps, d);
        var ed = new double[rows * k];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < k; j++)
            {
                double target = (j == labels[r] ? 1 - eps : 0) + eps / (double)k;
                ed[r * k + j] = 0.5 + dloss / rows * (Math.Exp(elp[r * k + j]) - target);
            }
        TestData.AssertClose(ed, d, 1e-6, 1e-5, "dlogits");
    }

    [Fact]
    public void LabelOutOfRangeThrows()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CrossEntropyKernel.Forward(new float[6], [1, 3], 2, 3, 0, new float[6]));
    }
}
