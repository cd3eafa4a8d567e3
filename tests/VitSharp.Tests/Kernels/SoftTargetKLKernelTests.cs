using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>SoftTargetKLKernel (DistillWrapper's soft loss) against a naive double twin.</summary>
public class SoftTargetKLKernelTests
{
    /// <summary>kl_div(log_softmax(s/T), softmax(t/T), 'batchmean')·T² and its gradient T/R·(q − p), in double, written out.</summary>
    internal static (double Loss, double[] Grad) Reference(float[] s, float[] t, int rows, int k, double temperature)
    {
        double loss = 0;
        var grad = new double[rows * k];
        for (int r = 0; r < rows; r++)
        {
            double zs = 0, zt = 0;
            for (int j = 0; j < k; j++) { zs += Math.Exp(s[r * k + j] / temperature); zt += Math.Exp(t[r * k + j] / temperature); }
            for (int j = 0; j < k; j++)
            {
                double q = Math.Exp(s[r * k + j] / temperature) / zs, p = Math.Exp(t[r * k + j] / temperature) / zt;
                if (p > 0) loss += p * Math.Log(p / q);
                grad[r * k + j] = temperature / rows * (q - p);
            }
        }
        return (loss * temperature * temperature / rows, grad);
    }

    public static TheoryData<int, int, float> Cases()
    {
        var d = new TheoryData<int, int, float>();
        foreach (var k in ReferenceMath.Lengths.Where(n => n <= 129)) { d.Add(3, k, 1f); d.Add(2, k, 3f); }
        d.Add(5, 10, 0.5f);
        d.Add(1, 1, 2f);
        d.Add(7, 13, 7.5f);
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void ForwardAndBackwardMatchReference(int rows, int k, float temperature)
    {
        var s = TestData.Uniform(rows * 17 + k, -4, 4, rows, k).Data;
        var t = TestData.Uniform(rows * 23 + k + 1, -4, 4, rows, k).Data;
        var logQ = new float[rows * k];
        var logP = new float[rows * k];
        float loss = SoftTargetKLKernel.Forward(s, t, rows, k, temperature, logQ, logP);
        var (eLoss, eGrad) = Reference(s, t, rows, k, temperature);
        Assert.True(Math.Abs(loss - eLoss) <= 1e-5 * Math.Max(1, Math.Abs(eLoss)), $"loss {loss} vs {eLoss}");

        const float dloss = 1.3f;
        var d = Enumerable.Repeat(-0.25f, rows * k).ToArray();   // backward accumulates
        SoftTargetKLKernel.Backward(dloss, logQ, logP, rows, k, temperature, d);
        TestData.AssertClose(eGrad.Select(g => -0.25 + dloss * g).ToArray(), d, 1e-6, 1e-5, "dlogits");
    }

    [Fact]
    public void EqualDistributionsGiveZeroAndATargetWithZeroProbabilitiesIsFinite()
    {
        var s = new float[] { 1f, -2f, 0.5f, 3f, 3f, 3f };
        var logQ = new float[6];
        var logP = new float[6];
        Assert.Equal(0f, SoftTargetKLKernel.Forward(s, s, 2, 3, 2f, logQ, logP), 1e-6);
        // Target probabilities that underflow to 0 count 0 (xlogy), as in PyTorch.
        var t = new float[] { 0f, -1e4f, -1e4f, 0f, 0f, -1e4f };
        float loss = SoftTargetKLKernel.Forward(s, t, 2, 3, 1f, logQ, logP);
        var (eLoss, _) = Reference(s, t, 2, 3, 1.0);
        Assert.True(float.IsFinite(loss));
        Assert.Equal(eLoss, loss, 1e-5);
    }

    [Fact]
    public void NonPositiveTemperatureThrows()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SoftTargetKLKernel.Forward(new float[2], new float[2], 1, 2, 0f, new float[2], new float[2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => SoftTargetKLKernel.Forward(new float[2], new float[2], 1, 2, -1f, new float[2], new float[2]));
    }
}
