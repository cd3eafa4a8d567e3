using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>The vectorized float32 GELU against the exact erf form computed in double precision.</summary>
public class GeluAccuracyTests
{
    private static double Exact(double x) => 0.5 * x * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2)));
    private static double ExactGrad(double x) => 0.5 * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2))) + x * Math.Exp(-x * x / 2) / Math.Sqrt(2 * Math.PI);

    [Fact]
    public void FloatErfIsWithinHalfAMicroOfTheDoubleErfOnADenseGrid()
    {
        for (int i = 0; i <= 40000; i++)
        {
            float x = -10f + i * 0.0005f;
            double err = Math.Abs(GeluKernel.Erf(x) - SpecialFunctions.Erf(x));
            Assert.True(err < 5e-7, $"erf({x}): error {err}");
        }
    }

    public static IEnumerable<object[]> Lengths() =>
        new[] { 0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257 }.Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ForwardAndBackwardMatchTheExactFunctionAtEveryLength(int n)
    {
        var rng = new Random(n);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 16 - 8);
        var y = new float[n];
        GeluKernel.Forward(x, y);
        var dy = new float[n];
        for (int i = 0; i < n; i++) dy[i] = (float)(rng.NextDouble() * 2 - 1);
        var dx = Enumerable.Repeat(0.25f, n).ToArray();   // backward accumulates
        GeluKernel.Backward(dy, x, dx);
        for (int i = 0; i < n; i++)
        {
            // float32 erf error (≤ 5e-7) times |x| ≤ 8, plus rounding of the result.
            Assert.True(Math.Abs(y[i] - Exact(x[i])) <= 5e-7 * Math.Abs(x[i]) + 1e-6 * Math.Abs(Exact(x[i])) + 1e-7, $"gelu({x[i]}) = {y[i]}, exact {Exact(x[i])}");
            double g = 0.25 + dy[i] * ExactGrad(x[i]);
            Assert.True(Math.Abs(dx[i] - g) <= 2e-6, $"gelu'({x[i]}): {dx[i]} vs {g}");
        }
    }
}
