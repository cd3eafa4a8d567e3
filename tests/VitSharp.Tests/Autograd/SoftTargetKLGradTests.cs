using VitSharp.Tests.Kernels;

namespace VitSharp.Tests.Autograd;

/// <summary>F.SoftTargetKLDiv: value against the double twin, gradient against finite differences, no gradient into the target.</summary>
public class SoftTargetKLGradTests
{
    [Theory]
    [InlineData(2, 10, 3f)]
    [InlineData(3, 7, 1f)]
    [InlineData(1, 2, 0.5f)]
    [InlineData(5, 3, 4f)]
    [InlineData(4, 1, 2f)]
    public void LossMatchesReferenceAndGradientMatchesFiniteDifferences(int rows, int k, float temperature)
    {
        var s = TestData.Uniform(rows + 5 * k, -3, 3, rows, k);
        var t = TestData.Uniform(rows + 7 * k + 1, -3, 3, rows, k);
        var loss = F.SoftTargetKLDiv(s, t, temperature);
        Assert.Empty(loss.Shape);
        var (expected, _) = SoftTargetKLKernelTests.Reference(s.Data, t.Data, rows, k, temperature);
        Assert.Equal(expected, loss.Item(), 1e-5);
        // With one class the loss is 0 whatever the logits: the gradient is identically zero.
        GradCheck.Verify(x => F.SoftTargetKLDiv(x[0], t, temperature), [s], allowZero: k == 1);
    }

    [Fact]
    public void NoGradientFlowsIntoTheTarget()
    {
        var s = TestData.Uniform(1, -2, 2, 3, 4);
        var t = TestData.Uniform(2, -2, 2, 3, 4);
        s.RequiresGrad = true;
        t.RequiresGrad = true;
        F.SoftTargetKLDiv(s, t, 2f).Backward();
        Assert.NotNull(s.Grad);
        Assert.Null(t.Grad);
    }

    [Fact]
    public void BadShapesAndTemperaturesThrow()
    {
        var a = Tensor.Zeros(2, 3);
        Assert.Throws<ArgumentException>(() => F.SoftTargetKLDiv(a, Tensor.Zeros(2, 4)));
        Assert.Throws<ArgumentException>(() => F.SoftTargetKLDiv(Tensor.Zeros(6), Tensor.Zeros(6)));
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => F.SoftTargetKLDiv(a, a, 0f)).Message);
        Assert.Throws<ArgumentException>(() => F.SoftTargetKLDiv(a, a, -2f));
        Assert.Throws<ArgumentException>(() => F.SoftTargetKLDiv(a, a, float.NaN));
    }
}
