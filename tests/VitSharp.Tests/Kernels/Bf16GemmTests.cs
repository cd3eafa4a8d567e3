using VitSharp.Kernels;
using Xunit.Abstractions;

namespace VitSharp.Tests.Kernels;

/// <summary>
/// <see cref="Bf16Gemm"/> and <see cref="Bf16Weights"/>: bf16 rounding by hand, the fp32 fallback and the native
/// kernels against a reference with error bounds derived from fp32 summation, and the native library's emulated bf16
/// kernel (same packing and loops as the AVX512_BF16 kernel) bit-for-bit against a sequential twin.
/// </summary>
public class Bf16GemmTests
{
    private const double U = 1.0 / (1 << 24); // unit roundoff of fp32

    private readonly ITestOutputHelper _out;

    public Bf16GemmTests(ITestOutputHelper output) => _out = output;

    /// <summary>Round to nearest even to 8 significant bits, by hand on the bit pattern (NaN kept as a NaN).</summary>
    private static float RefBf16(float v)
    {
        if (float.IsNaN(v)) return float.NaN;
        uint bits = BitConverter.SingleToUInt32Bits(v);
        uint low = bits & 0xFFFF, high = bits & 0xFFFF0000;
        if (low > 0x8000 || (low == 0x8000 && (high & 0x10000) != 0)) high += 0x10000; // may carry into ±∞: correct
        return BitConverter.UInt32BitsToSingle(high);
    }

    private static float[] Random(Random r, int count, float scale = 1f)
    {
        var a = new float[count];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    /// <summary>Exact-ish reference (double sums of the exact bf16 products) and, per element, the bound on what any
    /// fp32 summation order can differ from it: (k + 1)·u·Σ|a·w| for the sum plus u·|y| for the bias addition.</summary>
    private static (double[] Y, double[] Bound) Reference(float[] x, int m, int k, float[] w, int n, float[]? bias)
    {
        var y = new double[m * n];
        var bound = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0, abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double prod = (double)RefBf16(x[i * k + p]) * RefBf16(w[j * k + p]);
                    s += prod;
                    abs += Math.Abs(prod);
                }
                double b = bias?[j] ?? 0;
                y[i * n + j] = s + b;
                bound[i * n + j] = (k + 1) * U * abs + U * (Math.Abs(s) + Math.Abs(b)) + 1e-45;
            }
        return (y, bound);
    }

    /// <summary>The emulated kernel's exact order: per lane, acc = (acc + a_odd·w_odd) + a_even·w_even over k pairs
    /// (zero-padded), in float; then the bias added.</summary>
    private static float[] SequentialPairs(float[] x, int m, int k, float[] w, int n, float[]? bias)
    {
        var y = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float acc = 0f;
                for (int p = 0; p < k; p += 2)
                {
                    float aOdd = p + 1 < k ? RefBf16(x[i * k + p + 1]) : 0f, wOdd = p + 1 < k ? RefBf16(w[j * k + p + 1]) : 0f;
                    acc += aOdd * wOdd;
                    acc += RefBf16(x[i * k + p]) * RefBf16(w[j * k + p]);
                }
                if (bias != null) acc += bias[j];
                y[i * n + j] = acc;
            }
        return y;
    }

    /// <summary>Per shape of <see cref="Shapes"/>: activations in [−2, 2], weights in [−0.5, 0.5], a bias half the time, and
    /// the converted weights.</summary>
    private static IEnumerable<(int M, int K, int N, float[] X, float[] W, float[]? Bias, Bf16Weights Q)> Cases(Random r)
    {
        foreach (var (m, k, n) in Shapes)
        {
            var x = Random(r, m * k, 2f);
            var w = Random(r, n * k, 0.5f);
            var bias = r.Next(2) == 0 ? null : Random(r, n);
            yield return (m, k, n, x, w, bias, Bf16Weights.Convert(w, n, k));
        }
    }

    private static float[] Run(float[] x, int m, Bf16Weights w, float[]? bias, LowPrecisionPath path, bool emulated = false)
    {
        var y = new float[m * w.OutFeatures];
        y.AsSpan().Fill(12345f);
        Bf16Gemm.UseEmulatedNative = emulated;
        try { Bf16Gemm.Linear(x, m, w, bias, y, path); }
        finally { Bf16Gemm.UseEmulatedNative = false; }
        return y;
    }

    private static double CheckWithinBound(float[] y, (double[] Y, double[] Bound) reference, string what)
    {
        double worst = 0;
        for (int i = 0; i < y.Length; i++)
        {
            double err = Math.Abs(y[i] - reference.Y[i]);
            if (!(err <= reference.Bound[i])) Assert.Fail($"{what}: element {i}: {y[i]:R} vs reference {reference.Y[i]:R}, error {err:E3} > bound {reference.Bound[i]:E3}");
            worst = Math.Max(worst, err / reference.Bound[i]);
        }
        return worst;
    }

    [Fact]
    public void ConversionRoundsToNearestEvenByHand()
    {
        float one = 1f;
        float[] w =
        {
            1f + MathF.Pow(2, -8),                    // exactly half an ulp above 1 ⇒ ties to even: 1
            1f + 3 * MathF.Pow(2, -8),                // half-way between 1+2^-7 (odd) and 1+2^-6 (even) ⇒ 1+2^-6
            1f + MathF.Pow(2, -8) + MathF.Pow(2, -20),// just above the tie ⇒ 1+2^-7
            -(1f + MathF.Pow(2, -9)),                 // below the tie ⇒ −1
            BitConverter.UInt32BitsToSingle(0x7FFF_FFFFu), // NaN whose payload would carry into the sign if rounded like a number
            3.4e38f,                                  // past the largest finite bf16 (≈3.3895e38) ⇒ +∞
            -0f, BitConverter.UInt32BitsToSingle(0x0001_16C2u), // signed zero kept; a subnormal is rounded like any value
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, BitConverter.UInt32BitsToSingle(0xFFFF_FFFFu),
        };
        var b = Bf16Weights.Convert(w, 2, 6);
        var v = b.Values.ToArray();
        Assert.Equal(one, v[0]);
        Assert.Equal(1f + MathF.Pow(2, -6), v[1]);
        Assert.Equal(1f + MathF.Pow(2, -7), v[2]);
        Assert.Equal(-1f, v[3]);
        Assert.True(float.IsNaN(v[4]));
        Assert.Equal(float.PositiveInfinity, v[5]);
        Assert.Equal(BitConverter.SingleToInt32Bits(-0f), BitConverter.SingleToInt32Bits(v[6]));
        Assert.Equal(BitConverter.UInt32BitsToSingle(0x0001_0000u), v[7]); // 0x000116C2: low half 0x16C2 < 0x8000 ⇒ down
        Assert.Equal(float.PositiveInfinity, v[8]);
        Assert.Equal(float.NegativeInfinity, v[9]);
        Assert.True(float.IsNaN(v[10]) && float.IsNaN(v[11]));
        // The test's own rounding (used by the references below) agrees with these hand values.
        for (int i = 0; i < w.Length; i++)
            if (!float.IsNaN(w[i])) Assert.Equal(BitConverter.SingleToInt32Bits(v[i]), BitConverter.SingleToInt32Bits(RefBf16(w[i])));
    }

    [Fact]
    public void PathNamesReportTheKernelThatRuns()
    {
        _out.WriteLine(NativeKernels.Describe());
        Assert.Equal("fp32-fallback", Bf16Gemm.PathName(LowPrecisionPath.Managed));
        if (NativeKernels.HasAvx512Bf16) Assert.Equal("avx512-bf16", Bf16Gemm.PathName());
        else
        {
            Assert.Equal("fp32-fallback", Bf16Gemm.PathName());
            Assert.Throws<PlatformNotSupportedException>(() => Bf16Gemm.PathName(LowPrecisionPath.Native));
        }
    }

    private static readonly (int M, int K, int N)[] Shapes =
    {
        (1, 1, 1), (2, 3, 15), (7, 4, 16), (7, 5, 17), (1, 64, 100), (2, 192, 768), (7, 768, 100), (3, 3072, 17),
        (197, 768, 64), (197, 64, 2304), (13, 31, 129), (389, 67, 130),
    };

    [Fact]
    public void TheFp32FallbackIsWithinTheSummationBoundOfTheReference()
    {
        var r = new Random(2);
        double worst = 0;
        foreach (var (m, k, n, x, w, bias, q) in Cases(r))
        {
            var y = Run(x, m, q, bias, LowPrecisionPath.Managed);
            worst = Math.Max(worst, CheckWithinBound(y, Reference(x, m, k, w, n, bias), $"fallback {m}x{k}x{n}"));
        }
        _out.WriteLine($"worst error / bound: {worst:F4}");
        // The operands really are rounded: against the unrounded fp32 product the difference is far above the bound.
        var x1 = new[] { 1f + MathF.Pow(2, -10) };
        var y1 = Run(x1, 1, Bf16Weights.Convert(new[] { 1f + MathF.Pow(2, -10) }, 1, 1), null, LowPrecisionPath.Managed);
        Assert.Equal(1f, y1[0]);
    }

    [SkippableFact]
    public void TheEmulatedNativeKernelIsBitIdenticalToItsSequentialTwin()
    {
        Skip.IfNot(NativeKernels.HasBf16Emulation, NativeKernels.Describe());
        var r = new Random(3);
        foreach (var (m, k, n, x, w, bias, q) in Cases(r))
        {
            var expected = SequentialPairs(x, m, k, w, n, bias);
            var y = Run(x, m, q, bias, LowPrecisionPath.Native, emulated: true);
            for (int i = 0; i < y.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(y[i]),
                    $"{m}x{k}x{n} element {i}: {y[i]:R} vs {expected[i]:R}");
            CheckWithinBound(y, Reference(x, m, k, w, n, bias), $"emulated {m}x{k}x{n}");
        }
    }

    /// <summary>The real VDPBF16PS kernel against its emulated twin (same packing and loops, the instruction replaced by
    /// Intel's pseudocode: odd product added first, each step rounded), bit for bit, on inputs without denormals (the
    /// instruction flushes them, the twin does not).</summary>
    [SkippableFact]
    public void TheNativeBf16KernelIsBitIdenticalToItsEmulatedTwinWhereItRuns()
    {
        Skip.IfNot(NativeKernels.HasAvx512Bf16 && NativeKernels.HasBf16Emulation, NativeKernels.Describe());
        var r = new Random(6);
        long compared = 0;
        foreach (var (m, k, n, x, w, bias, q) in Cases(r))
        {
            var native = Run(x, m, q, bias, LowPrecisionPath.Native);
            var emulated = Run(x, m, q, bias, LowPrecisionPath.Native, emulated: true);
            for (int i = 0; i < native.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(native[i]) == BitConverter.SingleToInt32Bits(emulated[i]),
                    $"{m}x{k}x{n} element {i}: native {native[i]:R} vs emulated {emulated[i]:R}");
            compared += native.Length;
        }
        _out.WriteLine($"{compared} outputs equal bit for bit ({NativeKernels.Describe()})");
    }

    /// <summary>
    /// The real VDPBF16PS kernel (only where the CPU has AVX512_BF16: Zen 4/5, Sapphire Rapids with the flag) against
    /// the fallback. Not bit-for-bit: both sum exact bf16 products in fp32, but in different orders (the instruction
    /// adds two products per lane per step — its internal rounding is implementation-specific — while the fallback's
    /// GEMM sums with FMA in its own blocking order), and the instruction flushes denormals. So both must lie within
    /// the summation bound of the reference, and within the sum of their two bounds of each other.
    /// </summary>
    [SkippableFact]
    public void TheNativeBf16KernelAgreesWithTheFallbackWithinTheSummationBound()
    {
        Skip.IfNot(NativeKernels.HasAvx512Bf16, NativeKernels.Describe());
        var r = new Random(4);
        foreach (var (m, k, n, x, w, bias, q) in Cases(r))
        {
            var reference = Reference(x, m, k, w, n, bias);
            var native = Run(x, m, q, bias, LowPrecisionPath.Native);
            var fallback = Run(x, m, q, bias, LowPrecisionPath.Managed);
            CheckWithinBound(native, reference, $"native {m}x{k}x{n}");
            for (int i = 0; i < native.Length; i++)
                Assert.True(Math.Abs(native[i] - fallback[i]) <= 2 * reference.Bound[i], $"{m}x{k}x{n} element {i}: native {native[i]:R} vs fallback {fallback[i]:R}");
        }
    }

    [Fact]
    public void NaNInARowGivesNaNOutputsForThatRowOnEveryPath()
    {
        const int m = 4, k = 37, n = 70;
        var r = new Random(5);
        var x = Random(r, m * k);
        x[1 * k + 20] = BitConverter.UInt32BitsToSingle(0x7FFF_FFFFu); // a NaN whose payload would carry into the sign bit
        x[3 * k + 28] = BitConverter.UInt32BitsToSingle(0xFFFF_FFFFu); // the other half of a 16-value block
        var w = Random(r, n * k);
        var q = Bf16Weights.Convert(w, n, k);
        var paths = new List<(LowPrecisionPath, bool)> { (LowPrecisionPath.Managed, false) };
        if (NativeKernels.HasBf16Emulation) paths.Add((LowPrecisionPath.Native, true));
        if (NativeKernels.HasAvx512Bf16) paths.Add((LowPrecisionPath.Native, false));
        foreach (var (path, emulated) in paths)
        {
            var y = Run(x, m, q, null, path, emulated);
            for (int j = 0; j < n; j++)
            {
                Assert.True(float.IsNaN(y[n + j]) && float.IsNaN(y[3 * n + j]));
                Assert.False(float.IsNaN(y[j]) || float.IsNaN(y[2 * n + j]));
            }
        }
    }

    [Fact]
    public void MismatchedShapesThrowArgumentExceptionsNamingTheMismatch()
    {
        var w = Bf16Weights.Convert(new float[6], 2, 3);
        var e = Assert.Throws<ArgumentException>(() => Bf16Gemm.Linear(new float[5], 2, w, new float[4]));
        Assert.Equal("x", e.ParamName);
        Assert.Contains("expected m·in = 2·3 = 6", e.Message);
        e = Assert.Throws<ArgumentException>(() => Bf16Gemm.Linear(new float[6], 2, w, new float[5]));
        Assert.Equal("y", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => Bf16Gemm.Linear(new float[6], 2, w, new float[1], new float[4]));
        Assert.Equal("bias", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => Bf16Weights.Convert(new float[7], 2, 3));
        Assert.Contains("expected outFeatures·inFeatures = 2·3 = 6", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Bf16Gemm.Linear(new float[6], -2, w, new float[4]));
        if (!NativeKernels.HasAvx512Bf16)
            Assert.Throws<PlatformNotSupportedException>(() => Bf16Gemm.Linear(new float[6], 2, w, new float[4], LowPrecisionPath.Native));
        Bf16Gemm.Linear(ReadOnlySpan<float>.Empty, 0, w, Span<float>.Empty);
    }

    [Fact]
    public void SteadyStateCallsAllocateNoManagedMemory()
    {
        const int m = 197, k = 768, n = 768;
        var r = new Random(6);
        var x = Random(r, m * k);
        var w = Bf16Weights.Convert(Random(r, n * k), n, k);
        var bias = Random(r, n);
        var y = new float[m * n];
        var paths = new List<(LowPrecisionPath, bool)> { (LowPrecisionPath.Managed, false), (LowPrecisionPath.Auto, false) };
        if (NativeKernels.HasBf16Emulation) paths.Add((LowPrecisionPath.Native, true));
        foreach (var (path, emulated) in paths)
        {
            Bf16Gemm.UseEmulatedNative = emulated;
            try
            {
                long Measure(bool serial)
                {
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    if (serial) { using (ComputeThreads.Serial()) Bf16Gemm.Linear(x, m, w, bias, y, path); }
                    else Bf16Gemm.Linear(x, m, w, bias, y, path);
                    return GC.GetAllocatedBytesForCurrentThread() - before;
                }
                for (int i = 0; i < 3; i++) { Measure(false); Measure(true); }
                Assert.Equal(0, Enumerable.Range(0, 4).Min(_ => Measure(false)));
                Assert.Equal(0, Enumerable.Range(0, 4).Min(_ => Measure(true)));
            }
            finally { Bf16Gemm.UseEmulatedNative = false; }
        }
    }
}
