namespace VitSharp.Tests.Autograd;

/// <summary>F.CrossEntropy with and without label smoothing (mean over rows).</summary>
public class CrossEntropyGradTests
{
    /// <summary>torch.nn.functional.cross_entropy with label_smoothing ε, in double.</summary>
    public static double Reference(float[] logits, int[] labels, int rows, int k, double eps)
    {
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < k; j++) max = Math.Max(max, logits[r * k + j]);
            double z = 0;
            for (int j = 0; j < k; j++) z += Math.Exp(logits[r * k + j] - max);
            double lse = max + Math.Log(z);
            double nll = lse - logits[r * k + labels[r]];
            double smooth = 0;
            for (int j = 0; j < k; j++) smooth += lse - logits[r * k + j];
            total += (1 - eps) * nll + eps * smooth / k;
        }
        return total / rows;
    }

    [Theory]
    [InlineData(4, 5, 0f)]
    [InlineData(4, 5, 0.1f)]
    [InlineData(3, 7, 0.3f)]
    [InlineData(1, 2, 0f)]
    [InlineData(6, 1, 0f)]
    [InlineData(2, 3, 1f)]
    public void LossMatchesReferenceAndGradientMatchesFiniteDifferences(int rows, int k, float eps)
    {
        var logits = TestData.Uniform(1, -3, 3, rows, k);
        var rng = new Random(2);
        var labels = Enumerable.Range(0, rows).Select(_ => rng.Next(k)).ToArray();
        var loss = F.CrossEntropy(logits, labels, eps);
        Assert.Equal(1, loss.Size);
        Assert.Equal(Reference(logits.Data, labels, rows, k, eps), loss.Item(), 5);
        GradCheck.Verify(t => F.CrossEntropy(t[0], labels, eps), [logits], allowZero: k == 1);
    }

    [Fact]
    public void LargeLogitsAreStable()
    {
        var logits = Tensor.FromArray([1000f, 0f, -1000f, 500f, 501f, 499f], 2, 3);
        var loss = F.CrossEntropy(logits, [0, 1], 0.1f);
        Assert.True(float.IsFinite(loss.Item()));
        Assert.Equal(Reference(logits.Data, [0, 1], 2, 3, 0.1), loss.Item(), 3);
    }

    [Fact]
    public void BadLabelsAndShapesThrow()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => F.CrossEntropy(Tensor.Zeros(2, 3), [0, 3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => F.CrossEntropy(Tensor.Zeros(2, 3), [0, -1]));
        Assert.Throws<ArgumentException>(() => F.CrossEntropy(Tensor.Zeros(2, 3), [0]));
        Assert.Throws<ArgumentException>(() => F.CrossEntropy(Tensor.Zeros(6), [0]));
    }
}
