using VitSharp.Kernels;
using Xunit.Abstractions;

namespace VitSharp.Tests.Kernels;

/// <summary>Every GEMM backend against a naive reference twin (double accumulation) on odd shapes.</summary>
public class GemmTests
{
    private readonly ITestOutputHelper _out;

    public GemmTests(ITestOutputHelper output) => _out = output;

    public static IEnumerable<object[]> Backends()
    {
        yield return new object[] { GemmBackend.Naive };
        yield return new object[] { GemmBackend.Managed };
        yield return new object[] { GemmBackend.OpenBlas };
        yield return new object[] { GemmBackend.Auto };
    }

    private static readonly (int M, int N, int K)[] Shapes =
    {
        (1, 1, 1), (7, 13, 5), (33, 65, 17), (6, 64, 8), (12, 128, 300), (5, 70, 9), (197, 129, 67),
        (1, 200, 31), (64, 1, 40), (0, 5, 3), (5, 0, 3), (4, 6, 0), (100, 300, 520),
    };

    /// <summary>Reference: C = alpha·op(A)·op(B) + beta·C with double accumulation; beta == 0 ignores C.</summary>
    internal static void Reference(bool transA, bool transB, int m, int n, int k, float alpha, float[] a, int lda,
        float[] b, int ldb, float beta, float[] c, int ldc)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += (double)(transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                int ci = i * ldc + j;
                c[ci] = beta == 0 ? (float)(alpha * s) : (float)(alpha * s + (double)beta * c[ci]);
            }
    }

    private static float[] Random(int len, int seed, float fill = float.NaN)
    {
        var r = new Random(seed);
        var x = new float[len];
        for (int i = 0; i < len; i++) x[i] = (float)(r.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>OpenBLAS is a prerequisite (scripts/setup.sh and CI install it): its backend's tests fail without it
    /// rather than pass silently on the managed fallback.</summary>
    private static void RequireBackend(GemmBackend backend) =>
        Assert.True(backend != GemmBackend.OpenBlas || Gemm.OpenBlasAvailable,
            "OpenBLAS (libopenblas.so.0) is not available: install libopenblas0-pthread (scripts/setup.sh does)");

    private static void AssertClose(float[] expected, float[] actual, int m, int n, int ldc, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            bool inside = ldc > 0 && i / ldc < m && i % ldc < n;
            if (!inside)
            {
                // Outside the m×n window C must be untouched (bitwise, NaN included).
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"{what}: element {i} outside the output window was modified");
                continue;
            }
            double d = Math.Abs((double)expected[i] - actual[i]);
            Assert.True(d <= tol, $"{what}: C[{i / ldc},{i % ldc}] expected {expected[i]} got {actual[i]} (|diff| {d:g3} > tol {tol:g3})");
        }
    }

    private unsafe void Check(GemmBackend backend, bool tA, bool tB, int m, int n, int k, float alpha, float beta, int padA,
        int padB, int padC, bool parallel, int seed, GemmManaged.KernelKind? kind = null)
    {
        int lda = (tA ? m : k) + padA, ldb = (tB ? k : n) + padB, ldc = n + padC;
        int aRows = tA ? k : m, bRows = tB ? n : k;
        var a = Random(Math.Max(0, aRows * lda), seed);
        var b = Random(Math.Max(0, bRows * ldb), seed + 1);
        // C: NaN-filled when beta == 0 (must be ignored), random otherwise; padding columns are NaN sentinels.
        var c0 = beta == 0 ? Enumerable.Repeat(float.NaN, m * ldc).ToArray() : Random(m * ldc, seed + 2);
        for (int i = 0; i < m; i++)
            for (int j = n; j < ldc; j++) c0[i * ldc + j] = float.NaN;
        var expected = (float[])c0.Clone();
        Reference(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, expected, ldc);
        var actual = (float[])c0.Clone();
        if (kind is { } kk)
        {
            fixed (float* pa = a)
            fixed (float* pb = b)
            fixed (float* pc = actual)
                GemmManaged.Sgemm(kk, tA, tB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, parallel);
        }
        else
        {
            Gemm.Sgemm(backend, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, actual, ldc, parallel);
        }
        // |a|,|b| ≤ 1: error of a k-term float dot product ≲ k·eps·Σ|a·b| ≤ k·1.2e-7·k; use a generous k·|alpha|·2e-6 + C term.
        double tol = (Math.Max(k, 1) * Math.Abs(alpha) * 2e-6 + Math.Abs(beta) * 1e-6) * Math.Max(1, Math.Sqrt(k)) + 1e-6;
        AssertClose(expected, actual, m, n, ldc, tol,
            $"{kind?.ToString() ?? backend.ToString()} tA={tA} tB={tB} m={m} n={n} k={k} alpha={alpha} beta={beta} pads=({padA},{padB},{padC}) parallel={parallel}");
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void AllTransposesAndShapes(GemmBackend backend)
    {
        RequireBackend(backend);
        int seed = 1;
        foreach (var (m, n, k) in Shapes)
        {
            if (backend == GemmBackend.Naive && (long)m * n * k > 3_000_000) continue;
            foreach (bool tA in new[] { false, true })
                foreach (bool tB in new[] { false, true })
                {
                    Check(backend, tA, tB, m, n, k, 1f, 0f, 0, 0, 0, parallel: true, seed++);
                    Check(backend, tA, tB, m, n, k, -0.5f, 1f, 3, 5, 7, parallel: true, seed++);
                    Check(backend, tA, tB, m, n, k, 2f, 0.25f, 1, 0, 2, parallel: false, seed++);
                }
        }
    }

    /// <summary>Every managed micro-kernel, including the 6×64 Vector512 one (software-emulated where the CPU lacks
    /// AVX-512, so its packing and edge logic are covered on any machine).</summary>
    [SkippableTheory]
    [InlineData((int)GemmManaged.KernelKind.V512x64)]
    [InlineData((int)GemmManaged.KernelKind.Avx2x16)]
    [InlineData((int)GemmManaged.KernelKind.Scalar16)]
    public void EveryManagedKernel(int kernel)
    {
        var kind = (GemmManaged.KernelKind)kernel;
        Skip.If(kind == GemmManaged.KernelKind.Avx2x16 && !(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported),
            "this CPU lacks AVX2/FMA, which the 6×16 AVX2 kernel needs");
        _out.WriteLine($"default kernel: {GemmManaged.KernelName}");
        int seed = 900;
        // n past a multiple of 64 by 1–16, 17–32 (the 6×64 kernel's narrow last panels) and 33–63 (a full tile).
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 13, 5), (33, 65, 17), (6, 64, 8), (13, 130, 300), (197, 129, 67), (4, 6, 0),
                     (12, 80, 9), (7, 96, 33), (197, 197, 64), (13, 104, 20), (6, 127, 7) })
            foreach (bool tA in new[] { false, true })
                foreach (bool tB in new[] { false, true })
                {
                    Check(GemmBackend.Managed, tA, tB, m, n, k, 1f, 0f, 0, 0, 0, parallel: true, seed++, kind);
                    Check(GemmBackend.Managed, tA, tB, m, n, k, -0.5f, 1f, 3, 5, 7, parallel: false, seed++, kind);
                }
        Check(GemmBackend.Managed, false, true, 150, 200, 520, 1f, 0.5f, 1, 1, 1, parallel: true, seed++, kind);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void LargeParallelShapes(GemmBackend backend)
    {
        RequireBackend(backend);
        if (backend == GemmBackend.Naive) return;   // far too slow for these shapes; covered by the smaller ones
        // Big enough to take the multi-threaded path (split over n, then over m) and several KC/MC blocks.
        Check(backend, false, true, 197, 300, 600, 1f, 0f, 0, 0, 0, parallel: true, 100);
        Check(backend, true, false, 401, 130, 530, 0.5f, 1f, 2, 3, 1, parallel: true, 101);
        Check(backend, false, false, 800, 97, 260, 1f, 0.5f, 0, 0, 0, parallel: true, 102);
        Check(backend, true, true, 70, 1100, 90, 1f, 0f, 4, 4, 4, parallel: true, 103);
    }

    /// <summary>A column-split parallel call (m ≤ SplitNMaxM) over n much wider than a packed B block (NC): the threads
    /// take capped chunks over all of n in one round per K block; every output must be the single-threaded call's bits
    /// (the K blocking, and so each sum's order, is the same).</summary>
    [Fact]
    public unsafe void ColumnSplitOverManyBlocksGivesTheSerialBits()
    {
        foreach (var (m, n, k) in new[] { (20, 7000, 300), (197, 2304, 768), (7, 1025, 600) })
        {
            var a = Random(m * k, m);
            var b = Random(n * k, n);
            var serial = new float[m * n];
            var parallel = new float[m * n];
            fixed (float* pa = a)
            fixed (float* pb = b)
            {
                fixed (float* pc = serial)
                    GemmManaged.Sgemm(GemmManaged.DefaultKind, false, true, m, n, k, 1f, pa, k, pb, k, 0f, pc, n, parallel: false);
                fixed (float* pc = parallel)
                    GemmManaged.Sgemm(GemmManaged.DefaultKind, false, true, m, n, k, 1f, pa, k, pb, k, 0f, pc, n, parallel: true);
            }
            for (int i = 0; i < serial.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(serial[i]) == BitConverter.SingleToInt32Bits(parallel[i]),
                    $"{m}x{n}x{k}: C[{i / n},{i % n}] parallel {parallel[i]:R} vs serial {serial[i]:R}");
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void AlphaZeroScalesCAndKZero(GemmBackend backend)
    {
        RequireBackend(backend);
        var a = new float[] { float.NaN, 1, 2, 3 };
        var b = new float[] { 1, 2, 3, 4 };
        var c = new float[] { 1, 2, 3, 4 };
        // k = 0: C = beta·C.
        Gemm.Sgemm(backend, false, false, 2, 2, 0, 1f, a, 1, b, 2, 3f, c, 2);
        Assert.Equal(new float[] { 3, 6, 9, 12 }, c);
        // k = 0, beta = 0 over NaN: zeros.
        var cn = new float[] { float.NaN, float.NaN, float.NaN, float.NaN };
        Gemm.Sgemm(backend, false, false, 2, 2, 0, 1f, a, 1, b, 2, 0f, cn, 2);
        Assert.Equal(new float[4], cn);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void StridedBatched(GemmBackend backend)
    {
        RequireBackend(backend);
        int seed = 500;
        foreach (var (m, n, k, batch) in new[] { (7, 13, 5, 3), (33, 65, 17, 4), (50, 64, 64, 12), (1, 1, 1, 1), (197, 64, 64, 2) })
            foreach (bool tA in new[] { false, true })
                foreach (bool tB in new[] { false, true })
                {
                    int lda = (tA ? m : k) + 1, ldb = (tB ? k : n) + 2, ldc = n + 3;
                    int aSize = (tA ? k : m) * lda, bSize = (tB ? n : k) * ldb, cSize = m * ldc;
                    long sA = aSize + 5, sB = bSize + 7, sC = cSize + 11;
                    var a = Random((int)(sA * batch), seed++);
                    var b = Random((int)(sB * batch), seed++);
                    var c0 = Random((int)(sC * batch), seed++);
                    var expected = (float[])c0.Clone();
                    for (int i = 0; i < batch; i++)
                    {
                        var ea = a.AsSpan((int)(i * sA), aSize).ToArray();
                        var eb = b.AsSpan((int)(i * sB), bSize).ToArray();
                        var ec = expected.AsSpan((int)(i * sC), cSize).ToArray();
                        Reference(tA, tB, m, n, k, 0.75f, ea, lda, eb, ldb, 0.5f, ec, ldc);
                        ec.CopyTo(expected.AsSpan((int)(i * sC)));
                    }
                    var actual = (float[])c0.Clone();
                    Gemm.SgemmStridedBatched(backend, tA, tB, m, n, k, 0.75f, a, lda, sA, b, ldb, sB, 0.5f, actual, ldc, sC, batch);
                    double tol = k * 2e-6 * Math.Sqrt(k) + 1e-6;
                    for (int i = 0; i < expected.Length; i++)
                        Assert.True(Math.Abs(expected[i] - actual[i]) <= tol,
                            $"{backend} batched tA={tA} tB={tB} {m}x{n}x{k}x{batch}: element {i} expected {expected[i]} got {actual[i]}");
                }
    }

    /// <summary>Many multi-threaded managed calls, some from concurrent callers (worker-pool ownership and rounds).</summary>
    [Fact]
    public void ConcurrentParallelCallsAreCorrect()
    {
        const int m = 40, n = 300, k = 700; // 2·m·n·k above the parallel threshold; several KC rounds
        var a = Random(m * k, 7);
        var b = Random(n * k, 8);
        var expected = new float[m * n];
        Reference(false, true, m, n, k, 1f, a, k, b, k, 0f, expected, n);
        double tol = k * 2e-6 * Math.Sqrt(k);
        void CheckOnce()
        {
            var c = new float[m * n];
            Gemm.Sgemm(GemmBackend.Managed, false, true, m, n, k, 1f, a, k, b, k, 0f, c, n);
            for (int i = 0; i < c.Length; i++)
                Assert.True(Math.Abs(c[i] - expected[i]) <= tol, $"element {i}: expected {expected[i]} got {c[i]}");
        }
        for (int r = 0; r < 30; r++) CheckOnce();
        Parallel.For(0, 24, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ => CheckOnce());
    }

    /// <summary>The worker pool runs every item exactly once, reports a body's exception, and keeps working after it.</summary>
    [Fact]
    public void WorkerPoolRunsEachItemOnceAndSurvivesExceptions()
    {
        for (int round = 0; round < 200; round++)
        {
            int count = 1 + round % 37;
            var hits = new int[count];
            GemmWorkers.For(count, i => Interlocked.Increment(ref hits[i]));
            Assert.All(hits, h => Assert.Equal(1, h));
        }
        Assert.Throws<AggregateException>(() => GemmWorkers.For(8, i => { if (i == 3) throw new InvalidOperationException("boom"); }));
        var after = new int[16];
        GemmWorkers.For(16, i => Interlocked.Increment(ref after[i]));
        Assert.All(after, h => Assert.Equal(1, h));
    }

    [Fact]
    public void OpenBlasIsAvailableHere()
    {
        // On the project's machines libopenblas0-pthread is installed; report what was loaded.
        _out.WriteLine($"OpenBLAS available: {Gemm.OpenBlasAvailable}, core: {OpenBlas.CoreName}, threads: {OpenBlas.Threads}, kernel: {GemmManaged.KernelName}");
        // scripts/setup.sh installs libopenblas0-pthread, so its absence is a failure here.
        Assert.True(Gemm.OpenBlasAvailable, "OpenBLAS (libopenblas.so.0) did not load: run ./scripts/setup.sh");
    }

    [Fact]
    public void AutoKeepsProductsOfFewRowsOnTheManagedKernelUpToTheAvx512Limit()
    {
        Assert.True(Gemm.OpenBlasAvailable, "OpenBLAS (libopenblas.so.0) did not load: run ./scripts/setup.sh");
        int saved = Gemm.AutoManagedMaxRowsAvx512;
        try
        {
            Gemm.AutoManagedMaxRowsAvx512 = 256;
            bool avx512 = System.Runtime.Intrinsics.X86.Avx512F.IsSupported;
            Assert.False(Gemm.AutoUsesOpenBlas(197, 2304, 768));
            Assert.False(Gemm.AutoUsesOpenBlas(256, 2304, 768));
            Assert.Equal(avx512, Gemm.AutoUsesOpenBlas(257, 2304, 768));   // AVX2-only: OpenBLAS from 1024 rows
            Assert.Equal(avx512, Gemm.AutoUsesOpenBlas(1000, 2304, 768));
            Assert.True(Gemm.AutoUsesOpenBlas(2048, 2048, 2048));
            Gemm.AutoManagedMaxRowsAvx512 = 0;
            Assert.Equal(avx512, Gemm.AutoUsesOpenBlas(197, 2304, 768));
            Assert.False(Gemm.AutoUsesOpenBlas(197, 8, 8));                // under AutoOpenBlasMinFlops
        }
        finally { Gemm.AutoManagedMaxRowsAvx512 = saved; }
    }

    [SkippableFact]
    public void CpuIdentityAgreesWithProcCpuinfo()
    {
        Skip.IfNot(File.Exists("/proc/cpuinfo") && System.Runtime.Intrinsics.X86.X86Base.IsSupported, "needs Linux on x86");
        var lines = File.ReadLines("/proc/cpuinfo").TakeWhile(l => l.Length > 0).ToList();
        string Field(string name) => lines.First(l => l.StartsWith(name + "\t") || l.StartsWith(name + " ")).Split(':', 2)[1].Trim();
        Assert.Equal(Field("vendor_id"), CpuIdentity.Vendor);
        Assert.Equal(int.Parse(Field("cpu family")), CpuIdentity.Family);
        _out.WriteLine($"{CpuIdentity.Vendor} family {CpuIdentity.Family}: Zen 4 {CpuIdentity.IsZen4}, Auto keeps ≤ {Gemm.AutoManagedMaxRowsAvx512} rows managed");
    }

    [Fact]
    public void RejectsTooShortBuffers()
    {
        var a = new float[5];
        var b = new float[6];
        var c = new float[6];
        Assert.ThrowsAny<ArgumentException>(() => Gemm.Sgemm(false, false, 2, 3, 3, 1f, a, 3, b, 3, 0f, c, 3));
        Assert.ThrowsAny<ArgumentException>(() => Gemm.Sgemm(false, false, 2, 3, 2, 1f, new float[4], 2, b, 2, 0f, c, 3));
    }
}
