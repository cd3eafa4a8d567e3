namespace VitSharp.Tests.Autograd;

/// <summary>F.LayerNorm: gradients of the input, the weight and the bias.</summary>
public class LayerNormGradTests
{
    [Theory]
    [InlineData(new[] { 3, 5 }, 1e-5f)]
    [InlineData(new[] { 2, 3, 8 }, 1e-5f)]
    [InlineData(new[] { 7 }, 1e-6f)]
    [InlineData(new[] { 4, 2 }, 1e-1f)]
    public void GradientsOfInputWeightAndBias(int[] shape, float eps)
    {
        int c = shape[^1];
        var x = TestData.Uniform(1, -2, 2, shape);
        var w = TestData.Uniform(2, 0.5f, 1.5f, c);
        var b = TestData.Uniform(3, -1, 1, c);
        GradCheck.Verify(t => F.LayerNorm(t[0], t[1], t[2], eps), x, w, b);
        GradCheck.Verify(t => F.LayerNorm(t[0], t[1], t[2], eps), [x, w, b], wrt: [false, true, false]);
        GradCheck.Verify(t => F.LayerNorm(t[0], t[1], t[2], eps), [x, w, b], wrt: [true, false, false]);
    }

    [Fact]
    public void WrongFeatureCountThrows()
    {
        Assert.Throws<ArgumentException>(() => F.LayerNorm(Tensor.Zeros(2, 3), Tensor.Ones(4), Tensor.Zeros(4)));
    }
}
