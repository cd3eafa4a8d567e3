namespace VitSharp.Tests.Autograd;

/// <summary>Tape semantics: accumulation, no-grad scopes, reuse of a tensor, seeds.</summary>
public class AutogradSemanticsTests
{
    [Fact]
    public void GradientsAccumulateAcrossTwoBackwardCallsOnLeaves()
    {
        var x = TestData.Uniform(1, -1, 1, 3);
        x.RequiresGrad = true;
        (x * x).Sum().Backward();
        var first = (float[])x.Grad!.Data.Clone();
        for (int i = 0; i < 3; i++) Assert.Equal(2 * x.Data[i], first[i], 6);
        (x * 3f).Sum().Backward();
        for (int i = 0; i < 3; i++) Assert.Equal(first[i] + 3f, x.Grad!.Data[i], 6);
    }

    [Fact]
    public void NoGradScopeRecordsNothing()
    {
        var x = TestData.Uniform(2, -1, 1, 2, 3);
        var w = TestData.Uniform(3, -1, 1, 4, 3);
        x.RequiresGrad = true; w.RequiresGrad = true;
        Tensor y;
        using (VitSharp.Autograd.NoGrad())
        {
            Assert.False(VitSharp.Autograd.IsEnabled);
            y = F.Softmax(F.Linear(x, w, null) * x.Sum(), -1);
            Assert.False(y.RequiresGrad);
            Assert.False((x + x).RequiresGrad);
            Assert.False(x.Reshape(6).RequiresGrad);
        }
        Assert.True(VitSharp.Autograd.IsEnabled);
        Assert.Throws<InvalidOperationException>(() => y.Sum().Backward());
        Assert.Null(x.Grad);
        Assert.True((x + x).RequiresGrad);
    }

    [Fact]
    public void NestedNoGradScopesRestoreOnlyAtTheOuterEnd()
    {
        var x = Tensor.Ones(2); x.RequiresGrad = true;
        using (VitSharp.Autograd.NoGrad())
        {
            using (VitSharp.Autograd.NoGrad()) { }
            Assert.False((x * 2f).RequiresGrad);
        }
        Assert.True((x * 2f).RequiresGrad);
    }

    [Fact]
    public void TensorUsedTwiceGetsTheSumOfBothGradients()
    {
        var x = TestData.Uniform(4, -1, 1, 2, 2);
        x.RequiresGrad = true;
        var y = x * 3f + x.Relu() * 0f + x.Transpose(0, 1);
        y.Backward(Tensor.Ones(2, 2));
        // d/dx of 3x + xᵀ summed: 3 + 1 for every element.
        foreach (var g in x.Grad!.Data) Assert.Equal(4f, g, 6);
        GradCheck.Verify(t => t[0] * t[0] + F.Linear(t[0], t[0], null), TestData.Uniform(5, -1, 1, 3, 3));
    }

    [Fact]
    public void DiamondGraphIsDifferentiatedOnce()
    {
        var x = TestData.Uniform(6, 0.5f, 1f, 4);
        x.RequiresGrad = true;
        var a = x * 2f;
        var y = (a * a + a).Sum();
        y.Backward();
        for (int i = 0; i < 4; i++) Assert.Equal(8 * x.Data[i] + 2, x.Grad!.Data[i], 5);
    }

    [Fact]
    public void BackwardOnNonScalarWithoutGradientThrows()
    {
        var x = Tensor.Ones(2, 3); x.RequiresGrad = true;
        var y = x * 2f;
        Assert.Throws<InvalidOperationException>(() => y.Backward());
        Assert.Throws<ArgumentException>(() => y.Backward(Tensor.Ones(3, 2)));
        Assert.Null(x.Grad);
    }

    [Fact]
    public void BackwardOnTensorWithoutGradThrows()
    {
        Assert.Throws<InvalidOperationException>(() => Tensor.Ones(1).Backward());
    }

    [Fact]
    public void OneElementNonScalarShapeGetsSeedOne()
    {
        var x = Tensor.FromArray([3f], 1, 1); x.RequiresGrad = true;
        (x * x).Backward();
        Assert.Equal(6f, x.Grad!.Data[0]);
    }

    [Fact]
    public void InputsNotRequiringGradGetNoGradient()
    {
        var x = Tensor.Ones(3); x.RequiresGrad = true;
        var c = Tensor.Ones(3);
        (x * c).Sum().Backward();
        Assert.NotNull(x.Grad);
        Assert.Null(c.Grad);
    }

    [Fact]
    public void IntermediateGradientsAreReleasedAfterBackward()
    {
        var x = Tensor.Ones(3); x.RequiresGrad = true;
        var h = x * 2f;
        h.Sum().Backward();
        Assert.Null(h.Grad);
        Assert.Equal(new[] { 2f, 2f, 2f }, x.Grad!.Data);
    }
}
