using VitSharp.Optim;

namespace VitSharp.Tests.Training;

public class LrScheduleTests
{
    [Fact]
    public void WarmupIsLinearFromPeakOverWarmupToPeak()
    {
        var s = new WarmupCosine(PeakLr: 1e-3f, WarmupSteps: 10, TotalSteps: 100, MinLr: 1e-5f);
        for (int i = 0; i < 10; i++)
            Assert.Equal(1e-3 * (i + 1) / 10, s.At(i), 1e-9);
        Assert.Equal(1e-4f, s.At(0), 1e-9f); // lr / W at the first step, not 0
        Assert.Equal(1e-3f, s.At(9), 1e-9f);  // peak reached at the end of the warm-up
        Assert.Equal(1e-3f, s.At(10), 1e-9f); // cosine starts at the peak
    }

    [Fact]
    public void CosineDecaysMonotonicallyToMinLrAtTheEnd()
    {
        var s = new WarmupCosine(2e-3f, 5, 50, 1e-5f);
        for (long t = 5; t < 50; t++) Assert.True(s.At(t + 1) <= s.At(t), $"lr rose from step {t} to {t + 1}: {s.At(t)} → {s.At(t + 1)}");
        Assert.Equal(1e-5f, s.At(50), 1e-9f);
        Assert.Equal(1e-5f, s.At(500), 1e-9f); // clamped after the end
        var exact = new WarmupCosine(1f, 0, 100, 0f);
        Assert.Equal(0.5f, exact.At(50), 1e-6f); // half-way: the mean of peak and minimum
        Assert.Equal(1f, exact.At(0), 1e-6f);
        for (long t = 0; t <= 100; t++)
            Assert.Equal(0.5 * (1 + Math.Cos(Math.PI * t / 100)), exact.At(t), 1e-6);
    }

    [Fact]
    public void NoWarmupStartsAtThePeak()
    {
        var s = new WarmupCosine(1e-3f, 0, 10);
        Assert.Equal(1e-3f, s.At(0), 1e-9f);
        Assert.Equal(0f, s.At(10), 1e-9f);
    }

    [Fact]
    public void StepLrMultipliesByGammaEveryStepSizeSteps()
    {
        var s = new StepLr(0.1f, StepSize: 3, Gamma: 0.5f);
        float[] expected = [0.1f, 0.1f, 0.1f, 0.05f, 0.05f, 0.05f, 0.025f];
        for (int t = 0; t < expected.Length; t++) Assert.Equal(expected[t], s.At(t), 1e-7f);
        Assert.Equal(0.1 * Math.Pow(0.5, 10), s.At(30), 1e-10);
    }

    [Fact]
    public void ConstantLrIsConstant()
    {
        var s = new ConstantLr(3e-4f);
        foreach (long t in new long[] { 0, 1, 17, 1_000_000 }) Assert.Equal(3e-4f, s.At(t));
    }
}
