using VitSharp.Kernels;
using Xunit.Abstractions;

namespace VitSharp.Tests.Kernels;

/// <summary>
/// <see cref="Int8Gemm"/> and <see cref="Int8Weights"/>: every available path (native VNNI, managed AVX-512BW, AVX2,
/// scalar) bit-for-bit against a naive twin written from the quantization spec, hand-computed examples, special rows,
/// non-finite inputs, accuracy against fp32, validation and allocations.
/// </summary>
public class Int8GemmTests
{
    private readonly ITestOutputHelper _out;

    public Int8GemmTests(ITestOutputHelper output) => _out = output;

    // ---------------------------------------------------------------- the reference twin (from the spec only)

    /// <summary>Per-channel symmetric weight quantization: scale = max|w|/127, q = clamp(round_even(w/scale), ±127); zero row ⇒ 0.</summary>
    internal static (float[] Scale, int[] Q) RefQuantizeWeights(float[] w, int n, int k)
    {
        var scale = new float[n];
        var q = new int[n * k];
        for (int j = 0; j < n; j++)
        {
            float maxAbs = 0;
            for (int p = 0; p < k; p++) maxAbs = MathF.Max(maxAbs, MathF.Abs(w[j * k + p]));
            scale[j] = maxAbs / 127f;
            for (int p = 0; p < k; p++)
                q[j * k + p] = scale[j] == 0 ? 0 : (int)MathF.Max(-127, MathF.Min(127, MathF.Round(w[j * k + p] / scale[j], MidpointRounding.ToEven)));
        }
        return (scale, q);
    }

    /// <summary>Per-row asymmetric u8: lo = min(0, min x), hi = max(0, max x), s = (hi−lo)/255, zp = round(−lo/s),
    /// q = clamp(round(x/s) + zp, 0, 255). Non-finite input or range ⇒ s = NaN.</summary>
    internal static (float Scale, int Zp, int[] Q) RefQuantizeRow(ReadOnlySpan<float> x)
    {
        float lo = 0, hi = 0;
        bool finite = true;
        foreach (float v in x)
        {
            if (!float.IsFinite(v)) finite = false;
            else { lo = MathF.Min(lo, v); hi = MathF.Max(hi, v); }
        }
        var q = new int[x.Length];
        float s = (hi - lo) / 255f;
        if (!finite || float.IsInfinity(s)) return (float.NaN, 0, q);
        if (s == 0) return (0f, 0, q);
        int zp = (int)Math.Clamp(MathF.Round(-lo / s, MidpointRounding.ToEven), 0, 255);
        for (int p = 0; p < x.Length; p++)
            q[p] = (int)Math.Clamp(MathF.Round(x[p] / s, MidpointRounding.ToEven) + zp, 0, 255);
        return (s, zp, q);
    }

    /// <summary>y = (float)(Σ (q−zp)·qw) · (s·sw) [+ bias], with a 64-bit dot product.</summary>
    internal static float[] Reference(float[] x, int m, int k, float[] w, int n, float[]? bias)
    {
        var (sw, qw) = RefQuantizeWeights(w, n, k);
        var y = new float[m * n];
        for (int i = 0; i < m; i++)
        {
            var (s, zp, q) = RefQuantizeRow(x.AsSpan(i * k, k));
            for (int j = 0; j < n; j++)
            {
                long d = 0;
                for (int p = 0; p < k; p++) d += (long)(q[p] - zp) * qw[j * k + p];
                float v = (float)(int)d * (s * sw[j]);
                if (bias != null) v += bias[j];
                y[i * n + j] = v;
            }
        }
        return y;
    }

    // ---------------------------------------------------------------- paths

    /// <summary>Every path this machine can run: (name, path, managed cap).</summary>
    internal static IEnumerable<(string Name, LowPrecisionPath Path, Int8Gemm.ManagedIsa? Cap)> Paths()
    {
        if (NativeKernels.HasVnni) yield return ("vnni", LowPrecisionPath.Native, null);
        var best = Int8Gemm.BestManagedIsa;
        if (best <= Int8Gemm.ManagedIsa.Avx512BW) yield return ("avx512bw", LowPrecisionPath.Managed, Int8Gemm.ManagedIsa.Avx512BW);
        if (best <= Int8Gemm.ManagedIsa.Avx2) yield return ("avx2", LowPrecisionPath.Managed, Int8Gemm.ManagedIsa.Avx2);
        yield return ("scalar", LowPrecisionPath.Managed, Int8Gemm.ManagedIsa.Scalar);
    }

    internal static float[] Run(float[] x, int m, Int8Weights w, float[]? bias, LowPrecisionPath path, Int8Gemm.ManagedIsa? cap)
    {
        var y = new float[m * w.OutFeatures];
        y.AsSpan().Fill(12345f); // any stale value must be overwritten
        var old = Int8Gemm.ManagedIsaCap;
        Int8Gemm.ManagedIsaCap = cap;
        try { Int8Gemm.Linear(x, m, w, bias, y, path); }
        finally { Int8Gemm.ManagedIsaCap = old; }
        return y;
    }

    private static void AssertBitIdentical(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i])
                && !(float.IsNaN(expected[i]) && float.IsNaN(actual[i])))
                Assert.Fail($"{what}: element {i}: expected {expected[i]:R}, got {actual[i]:R}");
    }

    private static float[] Random(Random r, int count, float scale = 1f)
    {
        var a = new float[count];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    [Fact]
    public void PathNamesReportTheKernelThatRuns()
    {
        _out.WriteLine(NativeKernels.Describe());
        string managed = Int8Gemm.PathName(LowPrecisionPath.Managed);
        Assert.Contains(managed, new[] { "avx512bw", "avx2", "scalar" });
        if (NativeKernels.HasVnni)
        {
            Assert.Equal("vnni", Int8Gemm.PathName());
            Assert.Equal("vnni", Int8Gemm.PathName(LowPrecisionPath.Native));
        }
        else
        {
            Assert.Equal(managed, Int8Gemm.PathName());
            Assert.Throws<PlatformNotSupportedException>(() => Int8Gemm.PathName(LowPrecisionPath.Native));
        }
        if (System.Runtime.Intrinsics.X86.Avx512BW.IsSupported) Assert.Equal("avx512bw", managed);
    }

    // ---------------------------------------------------------------- hand-computed examples

    [Fact]
    public void WeightQuantizationMatchesHandComputedExamples()
    {
        float[] w =
        {
            127f, -50f, 3.4f, 0f, 0f,        // max 127 → scale 1: q = 127, −50, 3, 0, 0
            -254f, 100f, 1.5f, 2.5f, -0.5f,  // max 254 → scale 2: −127, 50, round(0.75)=1, round(1.25)=1, round(−0.25)=0
            127f, 0.5f, 1.5f, 2.5f, -3.5f,   // scale 1, ties to even: 127, 0, 2, 2, −4
            0f, 0f, 0f, 0f, 0f,              // all zero: scale 0, q 0
        };
        var q = Int8Weights.Quantize(w, 4, 5);
        Assert.Equal(new[] { 1f, 2f, 1f, 0f }, q.Scales.ToArray());
        int[][] expected = { new[] { 127, -50, 3, 0, 0 }, new[] { -127, 50, 1, 1, 0 }, new[] { 127, 0, 2, 2, -4 }, new[] { 0, 0, 0, 0, 0 } };
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 5; k++)
                Assert.Equal(expected[j][k], q[j, k]);
        Assert.Equal(new[] { 80, -75, 127, 0 }, q.ColumnSums.ToArray());
    }

    [Fact]
    public unsafe void ActivationQuantizationMatchesHandComputedExamples()
    {
        (float[] X, float Scale, int Zp, int[] Q)[] cases =
        {
            (new[] { 10f, 255f }, 1f, 0, new[] { 10, 255 }),                 // lo forced to 0
            (new[] { -255f, -10f }, 1f, 255, new[] { 0, 245 }),             // hi forced to 0
            (new[] { -51f, 204f, 0.5f }, 1f, 51, new[] { 0, 255, 51 }),     // round(0.5) = 0 (to even)
            (new[] { 0.5f, 1.5f, 2.5f, 255f, 3.5f }, 1f, 0, new[] { 0, 2, 2, 255, 4 }),
            (new[] { 0f, 0f, -0f }, 0f, 0, new[] { 0, 0, 0 }),              // zero row: scale 0
            (new[] { 510f, -0f, 255f, 1f, 2f, 3f, 4f, 5f, 6f }, 2f, 0, new[] { 255, 0, 128, 0, 1, 2, 2, 2, 3 }),
        };
        foreach (var (x, scale, zp, q) in cases)
        {
            int kp = (x.Length + 3) / 4 * 4;
            var buf = new byte[kp + 4];
            buf.AsSpan().Fill(0xEE);
            float s; int z;
            fixed (float* px = x)
            fixed (byte* pq = buf)
                Int8Gemm.QuantizeRow(px, x.Length, pq, kp, out s, out z);
            Assert.Equal(scale, s);
            Assert.Equal(zp, z);
            Assert.Equal(q, buf.Take(x.Length).Select(b => (int)b).ToArray());
            Assert.All(buf.Skip(x.Length).Take(kp - x.Length), b => Assert.Equal(0, b)); // k padding is zero
            Assert.All(buf.Skip(kp), b => Assert.Equal(0xEE, b));                         // nothing past kp
        }
    }

    /// <summary>
    /// Rows of 16-multiples (the AVX-512 path, which replaces x/s by a reciprocal and one correction step) whose values
    /// sit within a few ulps of the rounding boundaries (j + ½)·s, over scales from 1e−29 to 1e29: every q equals
    /// round(x/s) + zp of the division reference.
    /// </summary>
    [Fact]
    public unsafe void ActivationQuantizationMatchesTheDivisionAtRoundingBoundaries()
    {
        var rng = new Random(17);
        int rows = 0;
        for (int row = 0; row < 3000; row++)
        {
            float s0 = MathF.Pow(10f, (float)(rng.NextDouble() * 58 - 29));
            float lo = -(float)rng.NextDouble() * 255f * s0, hi = lo + 255f * s0;
            float s = (hi - lo) / 255f;
            var x = new List<float> { lo, hi };
            for (int j = (int)MathF.Floor(lo / s) - 1; j <= (int)MathF.Ceiling(hi / s) + 1; j++)
            {
                float b = (j + 0.5f) * s;
                float d = b, u = b;
                x.Add(b);
                for (int t = 0; t < 3; t++) { d = MathF.BitDecrement(d); u = MathF.BitIncrement(u); x.Add(d); x.Add(u); }
            }
            x.RemoveAll(v => v < lo || v > hi);
            while (x.Count % 16 != 0) x.Add((float)(lo + rng.NextDouble() * (hi - lo)));
            var xs = x.ToArray();
            var (rs, rzp, rq) = RefQuantizeRow(xs);
            var buf = new byte[xs.Length];
            float qs; int qz;
            fixed (float* px = xs)
            fixed (byte* pq = buf)
                Int8Gemm.QuantizeRow(px, xs.Length, pq, xs.Length, out qs, out qz);
            Assert.Equal(rs, qs);
            Assert.Equal(rzp, qz);
            for (int i = 0; i < xs.Length; i++)
                if (rq[i] != buf[i])
                    Assert.Fail($"x = {xs[i]:R} (bits {BitConverter.SingleToInt32Bits(xs[i]):X8}), s = {s:R}: q {buf[i]}, division gives {rq[i]}");
            rows++;
        }
        Assert.Equal(3000, rows);
    }

    [Fact]
    public void TinyProductMatchesHandComputedOutputOnEveryPath()
    {
        float[] x = { 10f, 255f, -51f, 204f };      // row 0: s = 1, zp = 0, q = 10, 255; row 1: s = 1, zp = 51, q = 0, 255
        float[] w = { 127f, -50f, -254f, 100f };    // channel 0: sw = 1, q = 127, −50; channel 1: sw = 2, q = −127, 50
        float[] bias = { 0.5f, -1f };
        // y00 = 10·127 + 255·(−50) = −11480; y01 = (−1270 + 12750)·2 = 22960
        // y10 = (0−51)·127 + (255−51)·(−50) = −16677; y11 = (−51·−127 + 204·50)·2 = 33354
        float[] expected = { -11479.5f, 22959f, -16676.5f, 33353f };
        var q = Int8Weights.Quantize(w, 2, 2);
        foreach (var (name, path, cap) in Paths())
        {
            AssertBitIdentical(expected, Run(x, 2, q, bias, path, cap), name);
            AssertBitIdentical(new[] { -11480f, 22960f, -16677f, 33354f }, Run(x, 2, q, null, path, cap), name + " (no bias)");
        }
    }

    // ---------------------------------------------------------------- bit-identity on many shapes

    private static readonly int[] Ks = { 1, 3, 4, 5, 64, 192, 768, 3072 };
    private static readonly int[] Ns = { 1, 15, 16, 17, 100, 768, 2304 };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    public void EveryPathIsBitIdenticalToTheReferenceOnAllSmallShapes(int m)
    {
        var r = new Random(1000 + m);
        foreach (int k in Ks)
            foreach (int n in Ns)
                CheckShape(r, m, k, n);
    }

    [Theory]
    [InlineData(768, 2304)]
    [InlineData(3072, 768)]
    [InlineData(1, 100)]
    [InlineData(5, 17)]
    [InlineData(64, 15)]
    [InlineData(192, 1)]
    [InlineData(3, 16)]
    [InlineData(4, 768)]
    public void EveryPathIsBitIdenticalToTheReferenceWith197Rows(int k, int n) => CheckShape(new Random(k * 31 + n), 197, k, n);

    /// <summary>Above 256 rows the work items are handed out row block by row block (below, column chunk by column chunk).</summary>
    [Fact]
    public void EveryPathIsBitIdenticalToTheReferenceWithManyRows() => CheckShape(new Random(9), 389, 67, 130);

    private void CheckShape(Random r, int m, int k, int n)
    {
        var x = Random(r, m * k, 3f);
        var w = Random(r, n * k, 0.2f);
        var bias = r.Next(2) == 0 ? null : Random(r, n);
        var expected = Reference(x, m, k, w, n, bias);
        var q = Int8Weights.Quantize(w, n, k);
        foreach (var (name, path, cap) in Paths())
        {
            if (cap == Int8Gemm.ManagedIsa.Scalar && (long)m * n * k > 200_000_000) continue; // too slow; covered on smaller shapes
            AssertBitIdentical(expected, Run(x, m, q, bias, path, cap), $"{name} m={m} k={k} n={n}");
        }
    }

    [Fact]
    public void SpecialRowsAndWeightsAreBitIdenticalOnEveryPath()
    {
        const int m = 11, k = 37, n = 70;
        var r = new Random(7);
        var x = Random(r, m * k);
        void Row(int i, Func<int, float> f) { for (int p = 0; p < k; p++) x[i * k + p] = f(p); }
        Row(0, _ => 0f);                                    // zero row
        Row(1, _ => 0.75f);                                 // constant positive (lo forced to 0)
        Row(2, _ => -2.5f);                                 // constant negative (hi forced to 0)
        Row(3, p => -1f - p);                               // negative only
        Row(4, p => (p % 2 == 0 ? 1 : -1) * 1e30f * (p + 1)); // huge
        Row(5, p => (p - 18) * 1e-30f);                     // tiny
        Row(6, p => (p - 18) * 1e-44f);                     // subnormal
        Row(7, p => p == 5 ? 1e4f : 1e-3f * p);             // one outlier
        Row(8, p => 255f - p);                              // exactly representable grid
        var w = Random(r, n * k, 0.05f);
        for (int p = 0; p < k; p++) { w[3 * k + p] = 0f; w[4 * k + p] = 1e-40f * (p - 10); w[5 * k + p] = 3e37f * (p % 3 - 1); }
        w[6 * k] = 1f; // a single non-zero
        var bias = Random(r, n);
        var expected = Reference(x, m, k, w, n, bias);
        var q = Int8Weights.Quantize(w, n, k);
        Assert.Equal(0f, q.Scales[3]);
        foreach (var (name, path, cap) in Paths())
            AssertBitIdentical(expected, Run(x, m, q, bias, path, cap), name);
        // The zero row's outputs are the bias exactly; the zero weight channel's outputs too.
        var y = Run(x, m, q, bias, LowPrecisionPath.Auto, null);
        for (int j = 0; j < n; j++) Assert.Equal(bias[j], y[j]);
        for (int i = 0; i < m; i++) Assert.Equal(bias[3], y[i * n + 3]);
    }

    [Fact]
    public void ARowWithNaNOrInfinityGivesNaNOutputsForThatRowOnly()
    {
        const int m = 6, k = 40, n = 33;
        var r = new Random(11);
        var x = Random(r, m * k);
        x[1 * k + 7] = float.NaN;
        x[2 * k + 39] = float.PositiveInfinity;  // in the scalar tail of the row
        x[3 * k + 0] = float.NegativeInfinity;
        x[4 * k + 3] = 3e38f; x[4 * k + 4] = -3e38f; // finite, but hi − lo overflows float
        var w = Random(r, n * k);
        var bias = Random(r, n);
        var q = Int8Weights.Quantize(w, n, k);
        var finiteRows = (float[])x.Clone();
        foreach (int bad in new[] { 1, 2, 3, 4 }) Array.Fill(finiteRows, 0f, bad * k, k);
        var expected = Reference(finiteRows, m, k, w, n, bias);
        foreach (var (name, path, cap) in Paths())
        {
            var y = Run(x, m, q, bias, path, cap);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    float v = y[i * n + j];
                    if (i is >= 1 and <= 4) Assert.True(float.IsNaN(v), $"{name}: y[{i},{j}] = {v}, expected NaN");
                    else Assert.Equal(expected[i * n + j], v);
                }
        }
    }

    // ---------------------------------------------------------------- accuracy

    [Theory]
    [InlineData(197, 768, 768)]
    [InlineData(64, 3072, 768)]
    [InlineData(50, 384, 1536)]
    public void CosineSimilarityToTheFp32ProductIsAtLeast09999(int m, int k, int n)
    {
        var r = new Random(m + k + n);
        var x = Random(r, m * k, 2f);
        var w = Random(r, n * k, 0.05f);
        var bias = Random(r, n, 0.1f);
        var exact = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias[j];
                for (int p = 0; p < k; p++) s += (double)x[i * k + p] * w[j * k + p];
                exact[i * n + j] = s;
            }
        var y = Run(x, m, Int8Weights.Quantize(w, n, k), bias, LowPrecisionPath.Auto, null);
        double dot = 0, nx = 0, ny = 0;
        for (int i = 0; i < y.Length; i++) { dot += exact[i] * y[i]; nx += exact[i] * exact[i]; ny += (double)y[i] * y[i]; }
        double cos = dot / Math.Sqrt(nx * ny);
        _out.WriteLine($"{m}x{k}x{n}: cosine {cos:F6}");
        Assert.True(cos >= 0.9999, $"cosine similarity {cos}"); // the brief asks ≥ 0.999; ~0.99998 is achieved
    }

    // ---------------------------------------------------------------- validation

    [Fact]
    public void MismatchedShapesThrowArgumentExceptionsNamingTheMismatch()
    {
        var w = Int8Weights.Quantize(new float[6], 2, 3);
        var e = Assert.Throws<ArgumentException>(() => Int8Gemm.Linear(new float[5], 2, w, new float[4]));
        Assert.Equal("x", e.ParamName);
        Assert.Contains("expected m·in = 2·3 = 6", e.Message);
        e = Assert.Throws<ArgumentException>(() => Int8Gemm.Linear(new float[6], 2, w, new float[5]));
        Assert.Equal("y", e.ParamName);
        Assert.Contains("expected m·out = 2·2 = 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => Int8Gemm.Linear(new float[6], 2, w, new float[3], new float[4]));
        Assert.Equal("bias", e.ParamName);
        Assert.Contains("expected 0 (none) or out = 2", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Int8Gemm.Linear(new float[6], -1, w, new float[4]));
        Assert.Throws<ArgumentNullException>(() => Int8Gemm.Linear(new float[6], 2, null!, new float[4]));
        e = Assert.Throws<ArgumentException>(() => Int8Weights.Quantize(new float[5], 2, 3));
        Assert.Contains("expected outFeatures·inFeatures = 2·3 = 6", e.Message);
        e = Assert.Throws<ArgumentException>(() => Int8Weights.Quantize(new[] { 1f, float.NaN }, 1, 2));
        Assert.Contains("weight[0, 1]", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Int8Weights.Quantize(new float[0], 0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => Int8Weights.Quantize(new float[70000], 1, 70000));
        if (!NativeKernels.HasVnni)
            Assert.Throws<PlatformNotSupportedException>(() => Int8Gemm.Linear(new float[6], 2, w, new float[4], LowPrecisionPath.Native));
        // m = 0 is a valid empty product.
        Int8Gemm.Linear(ReadOnlySpan<float>.Empty, 0, w, Span<float>.Empty);
    }

    [Fact]
    public void AnEmptyBiasMeansNoBias()
    {
        var r = new Random(3);
        var x = Random(r, 3 * 9);
        var w = Random(r, 5 * 9);
        var q = Int8Weights.Quantize(w, 5, 9);
        var a = new float[15];
        var b = new float[15];
        Int8Gemm.Linear(x, 3, q, a);
        Int8Gemm.Linear(x, 3, q, (float[]?)null, b);
        AssertBitIdentical(Reference(x, 3, 9, w, 5, null), a, "no-bias overload");
        AssertBitIdentical(a, b, "null bias array");
    }

    // ---------------------------------------------------------------- allocations

    [Fact]
    public void SteadyStateCallsAllocateNoManagedMemory()
    {
        const int m = 197, k = 768, n = 768;
        var r = new Random(5);
        var x = Random(r, m * k);
        var w = Int8Weights.Quantize(Random(r, n * k), n, k);
        var bias = Random(r, n);
        var y = new float[m * n];
        foreach (var (name, path, cap) in Paths())
        {
            if (cap == Int8Gemm.ManagedIsa.Scalar) continue;
            var old = Int8Gemm.ManagedIsaCap;
            Int8Gemm.ManagedIsaCap = cap;
            try
            {
                long Measure(bool serial)
                {
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    if (serial) { using (ComputeThreads.Serial()) Int8Gemm.Linear(x, m, w, bias, y, path); }
                    else Int8Gemm.Linear(x, m, w, bias, y, path);
                    return GC.GetAllocatedBytesForCurrentThread() - before;
                }
                for (int i = 0; i < 3; i++) { Measure(false); Measure(true); }
                // The least of several calls: a single one can carry a one-off allocation of the runtime (JIT tiering).
                Assert.Equal(0, Enumerable.Range(0, 4).Min(_ => Measure(false)));
                Assert.Equal(0, Enumerable.Range(0, 4).Min(_ => Measure(true)));
            }
            finally { Int8Gemm.ManagedIsaCap = old; }
        }
    }
}
