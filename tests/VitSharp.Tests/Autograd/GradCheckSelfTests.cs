namespace VitSharp.Tests.Autograd;

/// <summary>The checker itself must catch wrong backward passes (otherwise every gradient test is vacuous).</summary>
public class GradCheckSelfTests
{
    /// <summary>x² with a backward scaled by <paramref name="factor"/> (1 = correct).</summary>
    private static Tensor SquareWithBackwardFactor(Tensor x, float factor)
    {
        var y = new Tensor(x.Shape);
        for (int i = 0; i < x.Size; i++) y.Data[i] = x.Data[i] * x.Data[i];
        return VitSharp.Autograd.Record(y, "test_square", [x], r =>
        {
            var dx = x.GradSpan();
            for (int i = 0; i < x.Size; i++) dx[i] += factor * 2 * x.Data[i] * r.Grad!.Data[i];
        });
    }

    [Fact]
    public void CorrectBackwardPasses()
    {
        GradCheck.Verify(t => SquareWithBackwardFactor(t[0], 1f), TestData.Uniform(1, -1, 1, 3, 5));
    }

    [Theory]
    [InlineData(1.03f)]
    [InlineData(0.97f)]
    [InlineData(-1f)]
    [InlineData(0f)]
    public void WrongBackwardByFactorIsDetected(float factor)
    {
        var x = TestData.AwayFromZero(2, 0.2f, 1f, 3, 5);
        var failures = GradCheck.Compare(t => SquareWithBackwardFactor(t[0], factor), [x]);
        Assert.NotEmpty(failures);
    }

    [Fact]
    public void WrongSingleElementIsDetected()
    {
        var x = TestData.AwayFromZero(3, 0.2f, 1f, 4, 4);
        var failures = GradCheck.Compare(t =>
        {
            var xx = t[0];
            var y = new Tensor(xx.Shape);
            for (int i = 0; i < xx.Size; i++) y.Data[i] = xx.Data[i] * xx.Data[i];
            return VitSharp.Autograd.Record(y, "bad", [xx], r =>
            {
                var dx = xx.GradSpan();
                for (int i = 0; i < xx.Size; i++) dx[i] += (i == 5 ? 0f : 2 * xx.Data[i]) * r.Grad!.Data[i];
            });
        }, [x]);
        Assert.Single(failures);
        Assert.Equal(5, failures[0].Element);
    }
}
