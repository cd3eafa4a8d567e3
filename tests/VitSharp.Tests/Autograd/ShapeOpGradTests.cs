namespace VitSharp.Tests.Autograd;

/// <summary>Reshape (with −1), Flatten, Permute, Transpose and BroadcastTo: forward layout and gradients.</summary>
public class ShapeOpGradTests
{
    [Theory]
    [InlineData(new[] { 2, 3, 4 }, new[] { -1, 4 }, new[] { 6, 4 })]
    [InlineData(new[] { 2, 3, 4 }, new[] { 4, -1 }, new[] { 4, 6 })]
    [InlineData(new[] { 2, 3, 4 }, new[] { 2, -1, 2 }, new[] { 2, 6, 2 })]
    [InlineData(new[] { 24 }, new[] { 2, 3, 4 }, new[] { 2, 3, 4 })]
    [InlineData(new[] { 2, 3, 4 }, new[] { -1 }, new[] { 24 })]
    public void ReshapeKeepsRowMajorOrderAndGradients(int[] shape, int[] target, int[] expected)
    {
        var x = TestData.Uniform(1, -1, 1, shape);
        var y = x.Reshape(target);
        Assert.Equal(expected, y.Shape);
        Assert.Equal(x.Data, y.Data);
        // ·x after the reshape so the output depends nonlinearly on the inputs and the layout matters.
        GradCheck.Verify(t => t[0].Reshape(target) * t[1], x, TestData.Uniform(2, -1, 1, expected));
    }

    [Fact]
    public void ReshapeRejectsBadShapes()
    {
        var x = Tensor.Zeros(2, 3);
        Assert.Throws<ArgumentException>(() => x.Reshape(4, -1));
        Assert.Throws<ArgumentException>(() => x.Reshape(-1, -1));
        Assert.Throws<ArgumentException>(() => x.Reshape(7));
    }

    [Theory]
    [InlineData(1, -1, new[] { 2, 12 })]
    [InlineData(0, 1, new[] { 6, 4 })]
    [InlineData(0, -1, new[] { 24 })]
    [InlineData(-2, -1, new[] { 2, 12 })]
    public void FlattenShapesAndGradients(int start, int end, int[] expected)
    {
        var x = TestData.Uniform(3, -1, 1, 2, 3, 4);
        Assert.Equal(expected, x.Flatten(start, end).Shape);
        GradCheck.Verify(t => t[0].Flatten(start, end) * t[1], x, TestData.Uniform(4, -1, 1, expected));
    }

    [Theory]
    [InlineData(new[] { 2, 0, 3, 1 })]
    [InlineData(new[] { 3, 2, 1, 0 })]
    [InlineData(new[] { 0, 1, 2, 3 })]
    [InlineData(new[] { -1, 0, -3, 2 })]
    public void PermuteRank4ForwardAndBackward(int[] perm)
    {
        int[] shape = [2, 3, 4, 5];
        var x = TestData.Uniform(5, -1, 1, shape);
        var y = x.Permute(perm);
        var p = perm.Select(d => d < 0 ? d + 4 : d).ToArray();
        var outShape = p.Select(d => shape[d]).ToArray();
        Assert.Equal(outShape, y.Shape);
        for (int i = 0; i < y.Size; i++)
        {
            var oi = BroadcastRef.Unravel(i, outShape);
            var ii = new int[4];
            for (int k = 0; k < 4; k++) ii[p[k]] = oi[k];
            Assert.Equal(x.Data[BroadcastRef.Ravel(ii, shape)], y.Data[i]);
        }
        GradCheck.Verify(t => t[0].Permute(perm) * t[1], x, TestData.Uniform(6, -1, 1, outShape));
    }

    /// <summary>Large enough (86,400 elements) for the rows to be split over the compute threads: every element lands
    /// where the index arithmetic says, and the backward pass sends each gradient element back to its source.</summary>
    [Theory]
    [InlineData(new[] { 0, 1, 3, 2, 4 })]   // Swin's window partition: [B, H/w, w, W/w, w·C] → [B, H/w, W/w, w, w·C]
    [InlineData(new[] { 4, 3, 2, 1, 0 })]   // innermost dimension moved: strided rows
    [InlineData(new[] { 1, 0, 2, 3, 4 })]
    public void PermuteOfALargeTensorIsExactForwardAndBackward(int[] perm)
    {
        int[] shape = [4, 6, 5, 9, 80];
        var x = TestData.Uniform(8, -1, 1, shape);
        x.RequiresGrad = true;
        var y = x.Permute(perm);
        var outShape = perm.Select(d => shape[d]).ToArray();
        var g = TestData.Uniform(9, -1, 1, outShape);
        for (int i = 0; i < y.Size; i++)
        {
            var oi = BroadcastRef.Unravel(i, outShape);
            var ii = new int[5];
            for (int k = 0; k < 5; k++) ii[perm[k]] = oi[k];
            Assert.Equal(x.Data[BroadcastRef.Ravel(ii, shape)], y.Data[i]);
        }
        (y * g).Sum().Backward();
        for (int i = 0; i < y.Size; i++)
        {
            var oi = BroadcastRef.Unravel(i, outShape);
            var ii = new int[5];
            for (int k = 0; k < 5; k++) ii[perm[k]] = oi[k];
            Assert.Equal(g.Data[i], x.Grad!.Data[BroadcastRef.Ravel(ii, shape)]);
        }
    }

    [Fact]
    public void PermuteRejectsRepeatedDims()
    {
        Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3).Permute(0, 0));
        Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3).Permute(0, -2));
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, -1)]
    [InlineData(-3, 2)]
    public void TransposeForwardAndBackward(int d0, int d1)
    {
        var x = TestData.Uniform(7, -1, 1, 2, 3, 4);
        var y = x.Transpose(d0, d1);
        int a = d0 < 0 ? d0 + 3 : d0, b = d1 < 0 ? d1 + 3 : d1;
        var shape = new[] { 2, 3, 4 };
        var expShape = (int[])shape.Clone(); (expShape[a], expShape[b]) = (expShape[b], expShape[a]);
        Assert.Equal(expShape, y.Shape);
        for (int i = 0; i < y.Size; i++)
        {
            var oi = BroadcastRef.Unravel(i, expShape);
            (oi[a], oi[b]) = (oi[b], oi[a]);
            Assert.Equal(x.Data[BroadcastRef.Ravel(oi, shape)], y.Data[i]);
        }
        GradCheck.Verify(t => t[0].Transpose(d0, d1) * t[1], x, TestData.Uniform(8, -1, 1, expShape));
    }

    [Theory]
    [InlineData(new[] { 3, 1 }, new[] { 2, 3, 4 })]
    [InlineData(new[] { 1 }, new[] { 2, 2 })]
    [InlineData(new[] { 4 }, new[] { 3, 4 })]
    [InlineData(new[] { 2, 1, 4 }, new[] { 2, 3, 4 })]
    [InlineData(new[] { 2, 3 }, new[] { 2, 3 })]
    public void BroadcastToForwardAndGradientSumsOverCopies(int[] shape, int[] target)
    {
        var x = TestData.Uniform(9, -1, 1, shape);
        var y = x.BroadcastTo(target);
        Assert.Equal(target, y.Shape);
        for (int i = 0; i < y.Size; i++)
            Assert.Equal(x.Data[BroadcastRef.Source(BroadcastRef.Unravel(i, target), shape)], y.Data[i]);
        GradCheck.Verify(t => t[0].BroadcastTo(target) * t[1], x, TestData.Uniform(10, -1, 1, target));
    }

    [Fact]
    public void BroadcastToRejectsIncompatibleTarget()
    {
        Assert.Throws<ArgumentException>(() => Tensor.Zeros(3).BroadcastTo(4));
        Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3).BroadcastTo(3));
    }
}
