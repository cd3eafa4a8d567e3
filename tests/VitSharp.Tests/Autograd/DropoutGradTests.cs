namespace VitSharp.Tests.Autograd;

/// <summary>F.Dropout: mask pattern, scaling, gradient, evaluation mode.</summary>
public class DropoutGradTests
{
    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    [InlineData(0.8f)]
    public void GradientIsTheScaledMaskPattern(float p)
    {
        var x = TestData.AwayFromZero(1, 0.1f, 1f, 6, 7);
        x.RequiresGrad = true;
        var y = F.Dropout(x, p, training: true, new Random(42));
        var g = TestData.Uniform(2, -1, 1, 6, 7);
        y.Backward(g);
        float scale = 1f / (1 - p);
        int dropped = 0;
        for (int i = 0; i < x.Size; i++)
        {
            bool kept = y.Data[i] != 0;
            if (!kept) dropped++;
            Assert.Equal(kept ? x.Data[i] * scale : 0f, y.Data[i], 6);
            Assert.Equal(kept ? g.Data[i] * scale : 0f, x.Grad!.Data[i], 6);
        }
        Assert.InRange(dropped, 1, x.Size - 1);
    }

    [Fact]
    public void SameSeedGivesSameMaskAndFiniteDifferencesAgree()
    {
        var x = TestData.AwayFromZero(3, 0.1f, 1f, 4, 5);
        var a = F.Dropout(x, 0.3f, true, new Random(7));
        var b = F.Dropout(x, 0.3f, true, new Random(7));
        Assert.Equal(a.Data, b.Data);
        GradCheck.Verify(t => F.Dropout(t[0], 0.3f, true, new Random(7)), x);
    }

    [Fact]
    public void DropRateIsAboutP()
    {
        var x = Tensor.Ones(20000);
        var y = F.Dropout(x, 0.3f, true, new Random(3));
        int dropped = y.Data.Count(v => v == 0);
        // Binomial(20000, 0.3): σ ≈ 65; allow 5σ.
        Assert.InRange(dropped, 6000 - 325, 6000 + 325);
    }

    [Theory]
    [InlineData(0.5f, false)]
    [InlineData(0f, true)]
    public void EvalModeOrZeroRateIsIdentity(float p, bool training)
    {
        var x = TestData.Uniform(4, -1, 1, 3, 4);
        x.RequiresGrad = true;
        var y = F.Dropout(x, p, training, new Random(1));
        Assert.Equal(x.Data, y.Data);
        var g = TestData.Uniform(5, -1, 1, 3, 4);
        y.Backward(g);
        Assert.Equal(g.Data, x.Grad!.Data);
    }

    [Fact]
    public void DropoutModuleFollowsTrainEval()
    {
        var m = new VitSharp.NN.Dropout(0.5f);
        var x = Tensor.Ones(1000);
        Assert.Contains(0f, m.Forward(x).Data);
        m.Eval();
        Assert.Equal(x.Data, m.Forward(x).Data);
    }

    [Theory]
    [InlineData(-0.1f)]
    [InlineData(1.1f)]
    public void InvalidProbabilityThrows(float p)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => F.Dropout(Tensor.Ones(3), p, true, new Random(0)));
    }
}
