namespace VitSharp.Tests.Autograd;

/// <summary>F.Linear with and without bias over inputs of rank 1 to 3.</summary>
public class LinearGradTests
{
    [Theory]
    [InlineData(new[] { 2, 3, 4 }, true)]
    [InlineData(new[] { 2, 3, 4 }, false)]
    [InlineData(new[] { 5, 4 }, true)]
    [InlineData(new[] { 4 }, true)]
    [InlineData(new[] { 4 }, false)]
    [InlineData(new[] { 1, 1, 4 }, false)]
    public void ForwardAndGradientsOfInputWeightAndBias(int[] xShape, bool withBias)
    {
        const int inF = 4, outF = 5;
        var x = TestData.Uniform(1, -1, 1, xShape);
        var w = TestData.Uniform(2, -1, 1, outF, inF);
        var b = withBias ? TestData.Uniform(3, -1, 1, outF) : null;
        var y = F.Linear(x, w, b);
        Assert.Equal([.. xShape[..^1], outF], y.Shape);
        int rows = x.Size / inF;
        var expected = new double[rows * outF];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outF; o++)
            {
                double s = b is null ? 0 : b.Data[o];
                for (int i = 0; i < inF; i++) s += (double)x.Data[r * inF + i] * w.Data[o * inF + i];
                expected[r * outF + o] = s;
            }
        TestData.AssertClose(expected, y.Data, 1e-5, 1e-5, "linear");
        if (b is null) GradCheck.Verify(t => F.Linear(t[0], t[1], null), x, w);
        else GradCheck.Verify(t => F.Linear(t[0], t[1], t[2]), x, w, b);
    }

    [Fact]
    public void WrongInputWidthThrows()
    {
        var ex = Assert.Throws<ArgumentException>(() => F.Linear(Tensor.Zeros(2, 3), Tensor.Zeros(5, 4), null));
        Assert.Contains("4", ex.Message);
    }
}
