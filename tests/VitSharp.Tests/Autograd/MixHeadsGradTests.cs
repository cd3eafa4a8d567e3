using VitSharp.Tests.Kernels;

namespace VitSharp.Tests.Autograd;

/// <summary>F.MixHeads (einsum 'b h ..., h g -> b g ...'): forward against the naive twin, gradients of x and the weight.</summary>
public class MixHeadsGradTests
{
    [Theory]
    [InlineData(new[] { 2, 3, 4, 5 }, 3)]   // attention maps [B, H, N, M], square mixing
    [InlineData(new[] { 1, 4, 3, 3 }, 4)]
    [InlineData(new[] { 3, 2, 5 }, 5)]      // rank 3, H ≠ G
    [InlineData(new[] { 2, 5 }, 2)]         // nothing after the head axis
    [InlineData(new[] { 2, 3, 1, 7 }, 1)]
    public void ForwardAndGradients(int[] shape, int outHeads)
    {
        var x = TestData.Uniform(1, -1, 1, shape);
        var w = TestData.Uniform(2, -1, 1, shape[1], outHeads);
        var y = F.MixHeads(x, w);
        int rest = TestData.Count(shape[2..]);
        Assert.Equal([shape[0], outHeads, .. shape[2..]], y.Shape);
        TestData.AssertClose(MixHeadsKernelTests.NaiveForward(x.Data, w.Data, shape[0], shape[1], outHeads, rest), y.Data, 1e-5, 1e-5, "mix heads");
        GradCheck.Verify(t => F.MixHeads(t[0], t[1]), x, w);
        GradCheck.Verify(t => F.MixHeads(t[0], t[1]), [x, w], wrt: [true, false]);
        GradCheck.Verify(t => F.MixHeads(t[0], t[1]), [x, w], wrt: [false, true]);
    }

    [Fact]
    public void GradientsAccumulateWhenTheWeightIsUsedTwice()
    {
        // Talking heads use two matrices, re-attention one; a matrix shared by two mixes must sum both contributions.
        var x = TestData.Uniform(3, -1, 1, 2, 3, 2, 2);
        var w = TestData.Uniform(4, -1, 1, 3, 3);
        GradCheck.Verify(t => F.MixHeads(F.Softmax(F.MixHeads(t[0], t[1]), -1), t[1]), x, w);
    }

    [Theory]
    [InlineData(new[] { 2, 3, 4 }, new[] { 4, 3 })]
    [InlineData(new[] { 6 }, new[] { 6, 6 })]
    [InlineData(new[] { 2, 3 }, new[] { 3 })]
    public void MismatchedShapesAreRejected(int[] xs, int[] ws)
    {
        var ex = Assert.Throws<ArgumentException>(() => F.MixHeads(Tensor.Zeros(xs), Tensor.Zeros(ws)));
        Assert.Contains("mix_heads", ex.Message);
    }
}
