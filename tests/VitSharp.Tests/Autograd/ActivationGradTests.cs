using VitSharp.Kernels;

namespace VitSharp.Tests.Autograd;

/// <summary>Relu and Gelu ops: forward values and finite-difference gradients.</summary>
public class ActivationGradTests
{
    [Theory]
    [InlineData(new[] { 7 })]
    [InlineData(new[] { 2, 3, 4 })]
    [InlineData(new[] { 1 })]
    public void ReluForwardAndBackward(int[] shape)
    {
        // Inputs kept ≥ 0.1 away from the kink, so h = 1e-2 never crosses it.
        var x = TestData.AwayFromZero(11, 0.1f, 2f, shape);
        var y = x.Relu();
        TestData.AssertClose(x.Data.Select(v => (double)Math.Max(v, 0f)).ToArray(), y.Data, 0, 0, "relu");
        if (x.Data.Any(v => v > 0)) GradCheck.Verify(t => t[0].Relu(), x);
    }

    [Fact]
    public void ReluGradientIsZeroForNegativeInputs()
    {
        var x = Tensor.FromArray([-1f, 2f, -3f, 4f], 4);
        x.RequiresGrad = true;
        x.Relu().Backward(Tensor.Ones(4));
        Assert.Equal(new[] { 0f, 1f, 0f, 1f }, x.Grad!.Data);
    }

    [Theory]
    [InlineData(new[] { 9 })]
    [InlineData(new[] { 2, 3, 5 })]
    public void GeluForwardAndBackward(int[] shape)
    {
        var x = TestData.Uniform(12, -4, 4, shape);
        var y = x.Gelu();
        TestData.AssertClose(x.Data.Select(v => 0.5 * v * (1 + SpecialFunctions.Erf(v / Math.Sqrt(2)))).ToArray(), y.Data, 2e-6, 1e-6, "gelu"); // float32 erf: ≤ ½·|x|·5e-7
        GradCheck.Verify(t => t[0].Gelu(), x);
    }
}
