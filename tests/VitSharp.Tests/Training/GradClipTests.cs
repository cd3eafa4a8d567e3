using VitSharp.Optim;

namespace VitSharp.Tests.Training;

public class GradClipTests
{
    private static Tensor[] Params(int seed, float scale)
    {
        var shapes = new[] { new[] { 3, 4 }, new[] { 5 }, new[] { 2, 2, 2 } };
        return shapes.Select((s, i) =>
        {
            var p = new Tensor(s) { RequiresGrad = true };
            p.Grad = new Tensor(TestData.NormalFloats(seed + i, TestData.Count(s), scale), s);
            return p;
        }).ToArray();
    }

    private static double NaiveNorm(IEnumerable<Tensor> ps) =>
        Math.Sqrt(ps.Where(p => p.Grad is not null).SelectMany(p => p.Grad!.Data).Sum(g => (double)g * g));

    [Fact]
    public void NormIsOverAllGradientsAndGradientsAreScaledToMaxNorm()
    {
        var ps = Params(1, 10f);
        var before = ps.Select(p => p.Grad!.Data.ToArray()).ToArray();
        double naive = NaiveNorm(ps);
        Assert.True(naive > 1);
        float returned = GradClip.ClipGradNorm(ps, 1f);
        Assert.Equal(naive, returned, naive * 1e-6);
        double coef = 1.0 / (naive + 1e-6);
        for (int k = 0; k < ps.Length; k++)
            TestData.AssertClose(before[k].Select(g => g * coef).ToArray(), ps[k].Grad!.Data, 1e-7, 1e-5, $"grad {k}");
        Assert.Equal(1.0, NaiveNorm(ps), 1e-5);
    }

    [Fact]
    public void GradientsBelowTheMaximumAreLeftAlone()
    {
        var ps = Params(2, 0.01f);
        var before = ps.Select(p => p.Grad!.Data.ToArray()).ToArray();
        double naive = NaiveNorm(ps);
        float returned = GradClip.ClipGradNorm(ps, 5f);
        Assert.Equal(naive, returned, naive * 1e-6);
        for (int k = 0; k < ps.Length; k++) Assert.Equal(before[k], ps[k].Grad!.Data);
    }

    [Fact]
    public void ParametersWithoutGradientsAreSkipped()
    {
        var ps = Params(3, 4f).Append(new Tensor(new[] { 7 }) { RequiresGrad = true }).ToArray();
        double naive = NaiveNorm(ps);
        float returned = GradClip.ClipGradNorm(ps, 0.5f);
        Assert.Equal(naive, returned, naive * 1e-6);
        Assert.Null(ps[^1].Grad);
        Assert.Equal(0.5, NaiveNorm(ps), 1e-5);
    }

    [Fact]
    public void ReturnsThePreClipNormNotThePostClipNorm()
    {
        var p = new Tensor(new[] { 2 }) { RequiresGrad = true };
        p.Grad = new Tensor(new[] { 3f, 4f }, 2);
        Assert.Equal(5f, GradClip.ClipGradNorm([p], 1f), 1e-6f);
        Assert.Equal(0.6f, p.Grad.Data[0], 1e-6f);
        Assert.Equal(0.8f, p.Grad.Data[1], 1e-6f);
    }
}
