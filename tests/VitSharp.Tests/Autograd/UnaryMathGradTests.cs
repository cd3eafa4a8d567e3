namespace VitSharp.Tests.Autograd;

/// <summary>Tensor.Exp, Sigmoid, ClampMax and F.L2Normalize: values against System.Math in doubles, gradients against
/// finite differences (ClampMax away from its kink; L2Normalize also on a zero row, where torch's clamp makes it x / eps).</summary>
public class UnaryMathGradTests
{
    [Theory]
    [InlineData(new[] { 7 })]
    [InlineData(new[] { 2, 3, 17 })]
    public void Exp(int[] shape)
    {
        var x = TestData.Uniform(shape.Sum(), -3, 3, shape);
        TestData.AssertClose(x.Data.Select(v => Math.Exp(v)).ToArray(), x.Exp().Data, 1e-6, 1e-6, "exp");
        GradCheck.Verify(t => t[0].Exp(), x);
    }

    [Theory]
    [InlineData(new[] { 7 })]
    [InlineData(new[] { 2, 3, 17 })]
    public void Sigmoid(int[] shape)
    {
        var x = TestData.Uniform(shape.Sum(), -6, 6, shape);
        TestData.AssertClose(x.Data.Select(v => 1 / (1 + Math.Exp(-v))).ToArray(), x.Sigmoid().Data, 1e-7, 1e-6, "sigmoid");
        GradCheck.Verify(t => t[0].Sigmoid(), x);
    }

    [Fact]
    public void ClampMaxPassesTheGradientOnlyBelowTheBound()
    {
        var x = Tensor.FromArray([-2f, 0.5f, 0.9f, 1.5f, 3f], 5);
        var y = x.ClampMax(1f);
        Assert.Equal(new[] { -2f, 0.5f, 0.9f, 1f, 1f }, y.Data);
        x.RequiresGrad = true;
        x.ClampMax(1f).Sum().Backward();
        Assert.Equal(new[] { 1f, 1f, 1f, 0f, 0f }, x.Grad!.Data);
        GradCheck.Verify(t => t[0].ClampMax(1f), x);   // every element at least 0.1 from the kink, the step is 0.01
    }

    [Theory]
    [InlineData(new[] { 4, 8 })]
    [InlineData(new[] { 2, 3, 5 })]
    public void L2NormalizeDividesEachLastAxisVectorByItsNorm(int[] shape)
    {
        var x = TestData.Uniform(shape.Sum() + 1, -2, 2, shape);
        int c = shape[^1];
        var expected = new double[x.Size];
        for (int r = 0; r < x.Size / c; r++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, c).Sum(k => (double)x.Data[r * c + k] * x.Data[r * c + k]));
            for (int k = 0; k < c; k++) expected[r * c + k] = x.Data[r * c + k] / Math.Max(norm, 1e-12);
        }
        TestData.AssertClose(expected, F.L2Normalize(x).Data, 1e-6, 1e-5, "normalize");
        GradCheck.Verify(t => F.L2Normalize(t[0]), x);
    }

    [Fact]
    public void L2NormalizeOfAZeroRowIsZeroWithGradientOverEps()
    {
        var x = Tensor.FromArray([0f, 0f, 0f, 3f, 4f, 0f], 2, 3);
        x.RequiresGrad = true;
        var y = F.L2Normalize(x, eps: 0.5f);
        Assert.Equal(new[] { 0f, 0f, 0f, 0.6f, 0.8f, 0f }, y.Data);
        y.Backward(Tensor.FromArray([1f, -2f, 3f, 0f, 0f, 0f], 2, 3));
        Assert.Equal(new[] { 2f, -4f, 6f }, x.Grad!.Data.Take(3));   // torch: x / max(‖x‖, eps) is x / eps there
    }
}
