namespace VitSharp.Tests;

/// <summary>Deterministic test inputs.</summary>
internal static class TestData
{
    /// <summary>Uniform values in [lo, hi), seeded.</summary>
    public static Tensor Uniform(int seed, float lo, float hi, params int[] shape) => Tensor.RandU(new Random(seed), lo, hi, shape);

    /// <summary>Values in ±[minAbs, maxAbs] (random sign), so that kinks at 0 and divisions by ~0 are avoided.</summary>
    public static Tensor AwayFromZero(int seed, float minAbs, float maxAbs, params int[] shape)
    {
        var rng = new Random(seed);
        var t = new Tensor(shape);
        for (int i = 0; i < t.Size; i++)
        {
            float m = (float)(minAbs + (maxAbs - minAbs) * rng.NextDouble());
            t.Data[i] = rng.Next(2) == 0 ? -m : m;
        }
        return t;
    }

    /// <summary>Standard normal values as doubles.</summary>
    public static double[] NormalDoubles(int seed, int n, double std = 1.0)
    {
        var rng = new Random(seed);
        var r = new double[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            r[i] = std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
        return r;
    }

    public static float[] NormalFloats(int seed, int n, double std = 1.0) => NormalDoubles(seed, n, std).Select(d => (float)d).ToArray();

    public static int Count(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    /// <summary>Asserts elementwise |a − e| ≤ atol + rtol·|e| and reports the worst element.</summary>
    public static void AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            bool ok = Math.Abs(a - e) <= atol + rtol * Math.Abs(e) || (double.IsNaN(e) && double.IsNaN(a)) || (double.IsInfinity(e) && e == a);
            if (!ok) Assert.Fail($"{what}: element {i} is {a:R}, expected {e:R} (|diff| {Math.Abs(a - e):E3} > {atol:E1} + {rtol:E1}·|e|)");
        }
    }

    public static void AssertClose(double[] expected, float[] actual, double atol, double rtol, string what) =>
        AssertClose(expected.AsSpan(), actual.AsSpan(), atol, rtol, what);

    public static void AssertClose(float[] expected, float[] actual, double atol, double rtol, string what) =>
        AssertClose(expected.Select(x => (double)x).ToArray(), actual, atol, rtol, what);
}
