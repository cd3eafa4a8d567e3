using System.Runtime.Intrinsics;
using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>VectorMath.Exp against double-precision exp over its whole argument range.</summary>
public class VectorMathTests
{
    [Theory]
    [InlineData(-87.3f, -10f)]
    [InlineData(-10f, 10f)]
    [InlineData(-0.5f, 0.5f)]
    [InlineData(10f, 88.7f)]
    public void ExpIsWithinTwoUlpOfTheExactValue(float lo, float hi)
    {
        Assert.True(VectorMath.IsSupported, "VectorMath needs AVX2 and FMA, which every machine we target has");
        const int n = 20_000;
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = lo + (hi - lo) * i / (n - 1);
        double worst = 0;
        for (int i = 0; i < n; i += 8)
        {
            var y = VectorMath.Exp(Vector256.Create(x, i));
            for (int l = 0; l < 8; l++)
            {
                double exact = Math.Exp(x[i + l]);
                worst = Math.Max(worst, Math.Abs(y[l] - exact) / exact);
            }
        }
        Assert.True(worst <= 2.4e-7, $"worst relative error {worst:E2} on [{lo}, {hi}] (2 ulp = 2.4e-7)");
    }

    [Fact]
    public void ExpClampsOutOfRangeArgumentsAndKeepsNaN()
    {
        var y = VectorMath.Exp(Vector256.Create(float.NaN, float.NegativeInfinity, -1000f, float.PositiveInfinity, 1000f, 0f, 1f, -1f));
        Assert.True(float.IsNaN(y[0]));
        Assert.InRange(y[1], 0f, 1.2e-38f);
        Assert.InRange(y[2], 0f, 1.2e-38f);
        Assert.True(y[3] > 3e38f && float.IsFinite(y[3]), $"exp(+inf) = {y[3]}");
        Assert.True(y[4] > 3e38f && float.IsFinite(y[4]), $"exp(1000) = {y[4]}");
        Assert.Equal(1f, y[5]);
        Assert.Equal(MathF.E, y[6], 6);
        Assert.Equal(1 / MathF.E, y[7], 6);
    }

    [SkippableFact]
    public void ExpOn16LanesEqualsTheEightLaneExpBitForBit()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx512F.IsSupported, "the 16-lane exp needs AVX-512F");
        var rng = new Random(5);
        var x = new float[16 * 4000];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 200 - 100);
        float[] specials = { float.NaN, float.NegativeInfinity, float.PositiveInfinity, -1000f, 1000f, 0f, -0f, 1f, -1f,
            VectorMath.MinArg, VectorMath.MaxArg, 1e-30f, -1e-30f, float.Epsilon, 88.7f, -87.3f };
        specials.CopyTo(x, 0);
        for (int i = 0; i < x.Length; i += 16)
        {
            var wide = VectorMath.Exp(Vector512.Create(x.AsSpan(i, 16)));
            var lo = VectorMath.Exp(Vector256.Create(x, i));
            var hi = VectorMath.Exp(Vector256.Create(x, i + 8));
            for (int l = 0; l < 16; l++)
            {
                float expected = l < 8 ? lo[l] : hi[l - 8];
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(wide[l]) || (float.IsNaN(expected) && float.IsNaN(wide[l])),
                    $"x = {x[i + l]:R}: {wide[l]:R} vs {expected:R}");
            }
        }
    }
}
