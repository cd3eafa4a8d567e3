namespace VitSharp.Tests.Kernels;

/// <summary>Double-precision reference functions written independently of the library.</summary>
internal static class ReferenceMath
{
    /// <summary>The vector lengths that exercise SIMD bodies and remainders.</summary>
    public static readonly int[] Lengths = [1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257];

    public static TheoryData<int> LengthData()
    {
        var d = new TheoryData<int>();
        foreach (var n in Lengths) d.Add(n);
        return d;
    }

    /// <summary>erf by its Maclaurin series for |z| ≤ 3 and 1 − erfc by a continued fraction beyond (≈1e-13 relative).</summary>
    public static double Erf(double z)
    {
        if (Math.Abs(z) > 3) return Math.Sign(z) * (1 - ErfcCf(Math.Abs(z)));
        double sum = 0, term = z; // term_n = (−1)^n z^(2n+1) / n!
        for (int n = 0; n < 200; n++)
        {
            double add = term / (2 * n + 1);
            sum += add;
            if (Math.Abs(add) < 1e-18 * Math.Abs(sum)) break;
            term *= -z * z / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    /// <summary>erfc(z) for z ≥ 3: e^(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …)))).</summary>
    public static double ErfcCf(double z)
    {
        double f = z;
        for (int k = 300; k >= 1; k--) f = z + k / 2.0 / f;
        return Math.Exp(-z * z) / Math.Sqrt(Math.PI) / f;
    }

    public static double Gelu(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    public static double GeluGrad(double x) => 0.5 * (1 + Erf(x / Math.Sqrt(2))) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI);

    /// <summary>Numerically stable log-softmax of one row.</summary>
    public static double[] LogSoftmax(ReadOnlySpan<float> x)
    {
        double max = double.NegativeInfinity;
        foreach (var v in x) max = Math.Max(max, v);
        double z = 0;
        foreach (var v in x) z += Math.Exp(v - max);
        double lse = max + Math.Log(z);
        var r = new double[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = x[i] - lse;
        return r;
    }
}
