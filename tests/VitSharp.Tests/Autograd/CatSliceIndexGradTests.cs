namespace VitSharp.Tests.Autograd;

/// <summary>Cat, Slice and IndexSelect: forward layout and gradients.</summary>
public class CatSliceIndexGradTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(-2)]
    public void CatOfThreeOnAMiddleDim(int dim)
    {
        var a = TestData.Uniform(1, -1, 1, 2, 1, 3);
        var b = TestData.Uniform(2, -1, 1, 2, 3, 3);
        var c = TestData.Uniform(3, -1, 1, 2, 2, 3);
        var y = Tensor.Cat([a, b, c], dim);
        Assert.Equal(new[] { 2, 6, 3 }, y.Shape);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 6; j++)
                for (int k = 0; k < 3; k++)
                {
                    float e = j < 1 ? a[i, j, k] : j < 4 ? b[i, j - 1, k] : c[i, j - 4, k];
                    Assert.Equal(e, y[i, j, k]);
                }
        var w = TestData.Uniform(4, -1, 1, 2, 6, 3);
        GradCheck.Verify(t => Tensor.Cat([t[0], t[1], t[2]], dim) * t[3], a, b, c, w);
    }

    [Theory]
    [InlineData(0, new[] { 1, 3 }, new[] { 2, 3 }, new[] { 3, 3 })]
    [InlineData(-1, new[] { 2, 1 }, new[] { 2, 4 }, new[] { 2, 5 })]
    public void CatOnOuterAndLastDims(int dim, int[] sa, int[] sb, int[] expected)
    {
        var a = TestData.Uniform(5, -1, 1, sa);
        var b = TestData.Uniform(6, -1, 1, sb);
        Assert.Equal(expected, Tensor.Cat([a, b], dim).Shape);
        GradCheck.Verify(t => Tensor.Cat([t[0], t[1]], dim) * t[2], a, b, TestData.Uniform(7, -1, 1, expected));
    }

    [Fact]
    public void CatWithOnlySomeInputsRequiringGrad()
    {
        var a = TestData.Uniform(8, -1, 1, 2, 2);
        var b = TestData.Uniform(9, -1, 1, 2, 3);
        GradCheck.Verify(t => Tensor.Cat([t[0], t[1]], 1) * Tensor.Cat([t[0], t[1]], 1), [a, b], wrt: [false, true]);
    }

    [Fact]
    public void CatRejectsMismatchedShapes()
    {
        Assert.Throws<ArgumentException>(() => Tensor.Cat([Tensor.Zeros(2, 3), Tensor.Zeros(3, 3)], 1));
        Assert.Throws<ArgumentException>(() => Tensor.Cat(Array.Empty<Tensor>(), 0));
    }

    [Theory]
    [InlineData(1, 1, 3)]
    [InlineData(-1, 0, 1)]
    [InlineData(0, 2, 1)]
    [InlineData(2, 0, 2)]
    public void SliceForwardAndBackward(int dim, int start, int length)
    {
        int[] shape = [3, 5, 2];
        var x = TestData.Uniform(10, -1, 1, shape);
        var y = x.Slice(dim, start, length);
        int d = dim < 0 ? dim + 3 : dim;
        var os = (int[])shape.Clone(); os[d] = length;
        Assert.Equal(os, y.Shape);
        for (int i = 0; i < y.Size; i++)
        {
            var idx = BroadcastRef.Unravel(i, os);
            idx[d] += start;
            Assert.Equal(x.Data[BroadcastRef.Ravel(idx, shape)], y.Data[i]);
        }
        GradCheck.Verify(t => t[0].Slice(dim, start, length) * t[1], x, TestData.Uniform(11, -1, 1, os));
    }

    [Fact]
    public void SliceOutOfRangeThrows()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(3, 4).Slice(1, 2, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(3, 4).Slice(0, -1, 1));
    }

    [Theory]
    [InlineData(0, new[] { 2, 0, 2, 2 })]
    [InlineData(1, new[] { 1, 1 })]
    [InlineData(-1, new[] { 2, 0, 1, 0, 2 })]
    public void IndexSelectWithRepeatedIndicesAccumulates(int dim, int[] indices)
    {
        var x = TestData.Uniform(12, -1, 1, 4, 3);
        var y = x.IndexSelect(dim, indices);
        int d = dim < 0 ? dim + 2 : dim;
        var os = new[] { 4, 3 }; os[d] = indices.Length;
        Assert.Equal(os, y.Shape);
        for (int i = 0; i < y.Size; i++)
        {
            var idx = BroadcastRef.Unravel(i, os);
            idx[d] = indices[idx[d]];
            Assert.Equal(x[idx], y.Data[i]);
        }
        GradCheck.Verify(t => t[0].IndexSelect(dim, indices) * t[1], x, TestData.Uniform(13, -1, 1, os));

        // With an all-ones upstream gradient, each source entry gets its multiplicity.
        x.Grad = null; x.RequiresGrad = true;
        x.IndexSelect(dim, indices).Backward(Tensor.Ones(os));
        for (int i = 0; i < x.Size; i++)
        {
            var idx = BroadcastRef.Unravel(i, [4, 3]);
            Assert.Equal(indices.Count(j => j == idx[d]), x.Grad!.Data[i]);
        }
    }

    [Fact]
    public void IndexSelectOutOfRangeThrows()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(3, 4).IndexSelect(0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(3, 4).IndexSelect(1, -1));
    }
}
