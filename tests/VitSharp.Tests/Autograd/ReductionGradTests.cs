namespace VitSharp.Tests.Autograd;

/// <summary>Sum and Mean over one or several dimensions, keepDim both ways.</summary>
public class ReductionGradTests
{
    public static TheoryData<bool, int[]?, bool> Cases()
    {
        var d = new TheoryData<bool, int[]?, bool>();
        int[]?[] dimSets = [null, [0], [1], [-1], [0, 2], [-1, -3], [1, 2], [0, 1, 2]];
        foreach (bool mean in new[] { false, true })
            foreach (var dims in dimSets)
                foreach (bool keep in new[] { false, true })
                    d.Add(mean, dims, keep);
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences(bool mean, int[]? dims, bool keepDim)
    {
        int[] shape = [2, 3, 4];
        var x = TestData.Uniform(1, -1, 1, shape);
        var y = mean ? x.Mean(dims, keepDim) : x.Sum(dims, keepDim);

        var reduce = new bool[3];
        if (dims is null) Array.Fill(reduce, true); else foreach (var dd in dims) reduce[dd < 0 ? dd + 3 : dd] = true;
        var kept = shape.Select((s, i) => reduce[i] ? 1 : s).ToArray();
        var expShape = keepDim ? kept : kept.Where((_, i) => !reduce[i]).ToArray();
        Assert.Equal(expShape, y.Shape);
        var expected = new double[TestData.Count(kept)];
        int count = shape.Where((_, i) => reduce[i]).Aggregate(1, (a, b) => a * b);
        for (int i = 0; i < x.Size; i++)
        {
            var idx = BroadcastRef.Unravel(i, shape);
            for (int k = 0; k < 3; k++) if (reduce[k]) idx[k] = 0;
            expected[BroadcastRef.Ravel(idx, kept)] += x.Data[i] / (mean ? (double)count : 1.0);
        }
        TestData.AssertClose(expected, y.Data, 1e-6, 1e-5, mean ? "mean" : "sum");
        // Multiply by a second input so the backward of the reduction is checked against a non-uniform upstream.
        GradCheck.Verify(t => (mean ? t[0].Mean(dims, keepDim) : t[0].Sum(dims, keepDim)) * t[1], x, TestData.Uniform(2, -1, 1, expShape));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SingleDimOverloads(bool keepDim)
    {
        var x = TestData.Uniform(3, -1, 1, 3, 4);
        Assert.Equal(x.Sum([1], keepDim).Data, x.Sum(1, keepDim).Data);
        Assert.Equal(x.Mean([-2], keepDim).Data, x.Mean(-2, keepDim).Data);
        GradCheck.Verify(t => t[0].Mean(0, keepDim) * t[0].Sum(-1, true).Reshape(keepDim ? [3, 1] : [3]).Sum(), x);
    }

    [Fact]
    public void ReduceOverExtentOneDims()
    {
        var x = TestData.Uniform(4, -1, 1, 2, 1, 3, 1);
        Assert.Equal(new[] { 2, 3 }, x.Sum([1, 3]).Shape);
        Assert.Equal(x.Data, x.Sum([1, 3]).Data);
        GradCheck.Verify(t => t[0].Mean([1, 3], true) * t[0], x);
    }
}
