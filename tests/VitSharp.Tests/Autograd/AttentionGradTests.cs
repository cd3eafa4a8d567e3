namespace VitSharp.Tests.Autograd;

/// <summary>F.ScaledDotProductAttention: forward against a naive reference; gradients of q, k and v.</summary>
public class AttentionGradTests
{
    public static double[] Reference(Tensor q, Tensor k, Tensor v, double scale, out double[] probs)
    {
        int n = q.Dim(-2), d = q.Dim(-1), m = k.Dim(-2), groups = q.Size / (n * d);
        var o = new double[q.Size];
        probs = new double[groups * n * m];
        for (int g = 0; g < groups; g++)
            for (int i = 0; i < n; i++)
            {
                var s = new double[m];
                for (int j = 0; j < m; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)q.Data[(g * n + i) * d + c] * k.Data[(g * m + j) * d + c];
                    s[j] = dot * scale;
                }
                double max = s.Max(), z = s.Sum(x => Math.Exp(x - max));
                for (int j = 0; j < m; j++)
                {
                    double p = Math.Exp(s[j] - max) / z;
                    probs[(g * n + i) * m + j] = p;
                    for (int c = 0; c < d; c++) o[(g * n + i) * d + c] += p * v.Data[(g * m + j) * d + c];
                }
            }
        return o;
    }

    [Theory]
    [InlineData(new[] { 3 }, 3, 4, 5, null)]
    [InlineData(new[] { 2 }, 3, 5, 4, null)]
    [InlineData(new[] { 2, 2 }, 4, 4, 3, null)]
    [InlineData(new int[0], 1, 1, 2, null)]
    [InlineData(new[] { 2 }, 2, 3, 4, 0.9f)]
    public void ForwardAndGradientsOfQKV(int[] lead, int n, int m, int d, float? scale)
    {
        var q = TestData.Uniform(1, -1, 1, [.. lead, n, d]);
        var k = TestData.Uniform(2, -1, 1, [.. lead, m, d]);
        var v = TestData.Uniform(3, -1, 1, [.. lead, m, d]);
        Tensor? probs = null;
        var o = F.ScaledDotProductAttention(q, k, v, scale, p => probs = p);
        Assert.Equal(q.Shape, o.Shape);
        var expected = Reference(q, k, v, scale ?? 1 / Math.Sqrt(d), out var expProbs);
        TestData.AssertClose(expected, o.Data, 1e-5, 1e-5, "attention output");
        Assert.NotNull(probs);
        int[] probShape = [.. lead, n, m];
        Assert.Equal(probShape, probs!.Shape);
        TestData.AssertClose(expProbs, probs.Data, 1e-6, 1e-5, "attention probabilities");
        // Scale the inputs up so the softmax is far from uniform (otherwise dq, dk are tiny).
        var q2 = q * 2f; var k2 = k * 2f;
        GradCheck.Verify(t => F.ScaledDotProductAttention(t[0], t[1], t[2], scale), [q2.Detach(), k2.Detach(), v], allowZero: m == 1);
    }

    [Theory]
    [InlineData(true, false, false)]
    [InlineData(false, true, false)]
    [InlineData(false, false, true)]
    [InlineData(true, false, true)]
    public void OnlySomeOfQKVRequireGrad(bool wq, bool wk, bool wv)
    {
        var q = TestData.Uniform(7, -2, 2, 2, 3, 4);
        var k = TestData.Uniform(8, -2, 2, 2, 5, 4);
        var v = TestData.Uniform(9, -1, 1, 2, 5, 4);
        GradCheck.Verify(t => F.ScaledDotProductAttention(t[0], t[1], t[2]), [q, k, v], wrt: [wq, wk, wv]);
    }

    [Fact]
    public void LargeGroupCountTakesTheParallelPathAndStillAgrees()
    {
        // 16 groups × 16 × 16 × 32 crosses the parallel threshold of the kernel.
        var q = TestData.Uniform(4, -1, 1, 16, 16, 32);
        var k = TestData.Uniform(5, -1, 1, 16, 16, 32);
        var v = TestData.Uniform(6, -1, 1, 16, 16, 32);
        var o = F.ScaledDotProductAttention(q, k, v);
        TestData.AssertClose(Reference(q, k, v, 1 / Math.Sqrt(32), out _), o.Data, 1e-5, 1e-4, "attention output");
    }

    [Fact]
    public void MismatchedShapesThrow()
    {
        Assert.Throws<ArgumentException>(() => F.ScaledDotProductAttention(Tensor.Zeros(2, 3, 4), Tensor.Zeros(2, 3, 5), Tensor.Zeros(2, 3, 5)));
        Assert.Throws<ArgumentException>(() => F.ScaledDotProductAttention(Tensor.Zeros(2, 3, 4), Tensor.Zeros(2, 3, 4), Tensor.Zeros(2, 2, 4)));
        Assert.Throws<ArgumentException>(() => F.ScaledDotProductAttention(Tensor.Zeros(2, 3, 4), Tensor.Zeros(1, 3, 4), Tensor.Zeros(1, 3, 4)));
    }
}
