namespace VitSharp.Tests.Autograd;

/// <summary>Tensor.Tanh: values against Math.Tanh and gradients against finite differences.</summary>
public class TanhGradTests
{
    [Theory]
    [InlineData(new[] { 7 })]
    [InlineData(new[] { 3, 5 })]
    [InlineData(new[] { 2, 3, 17 })]
    public void ValuesAndGradient(int[] shape)
    {
        var x = TestData.Uniform(shape.Sum(), -3, 3, shape);
        var y = x.Tanh();
        TestData.AssertClose(x.Data.Select(v => Math.Tanh(v)).ToArray(), y.Data, 1e-6, 1e-5, "tanh");
        GradCheck.Verify(t => t[0].Tanh(), x);
    }
}
