namespace VitSharp.Kernels;

/// <summary>Which implementation <see cref="Gemm"/> uses.</summary>
public enum GemmBackend
{
    /// <summary>Pick per call: OpenBLAS where it was measured faster, managed otherwise (see <see cref="Gemm"/>).</summary>
    Auto,
    /// <summary>The managed packed SIMD kernel (AVX-512 / AVX2 / scalar).</summary>
    Managed,
    /// <summary>OpenBLAS <c>cblas_sgemm</c>, loaded at run time; falls back to managed when absent.</summary>
    OpenBlas,
    /// <summary>Triple loop; slow, for reference only.</summary>
    Naive,
}

/// <summary>
/// Single-precision GEMM over row-major matrices: C = alpha·op(A)·op(B) + beta·C,
/// where op(A) is [m, k], op(B) is [k, n] and C is [m, n].
/// </summary>
/// <remarks>
/// <para>transA: A is stored [k, m] (lda ≥ m), else [m, k] (lda ≥ k). transB: B is stored [n, k] (ldb ≥ k), else
/// [k, n] (ldb ≥ n). beta == 0 overwrites C (NaN in C is ignored), as in BLAS; k == 0 gives C = beta·C.</para>
/// <para>Backend selection: <see cref="Backend"/> (default <see cref="GemmBackend.Auto"/>, or the environment variable
/// <c>VITSHARP_GEMM=managed|openblas|naive|auto</c>). Calls with <c>parallel: false</c> always run on the calling
/// thread through the managed kernel (OpenBLAS's thread count is process-global, so it cannot be made
/// single-threaded for one call without affecting concurrent callers). Auto, for parallel calls of at least
/// <see cref="AutoOpenBlasMinFlops"/> flops when OpenBLAS is loaded:
/// <list type="bullet">
/// <item>CPU with AVX-512F: OpenBLAS (SkylakeX kernel, set before load), except for products of at most
/// <see cref="AutoManagedMaxRowsAvx512"/> rows (256 on AMD Zen 4, where the managed kernel, prefetching each next
/// weight panel while it computes, was measured faster on batch-1 ViT products; 0 elsewhere).</item>
/// <item>AVX2-only CPU: OpenBLAS (its Zen/Haswell kernel) only when m ≥ <see cref="AutoOpenBlasMinRowsAvx2"/>. Measured
/// on a 2-core AVX2 EPYC: on the 197-row ViT-B/16 shapes the managed 6×16 kernel equals or beats OpenBLAS (both
/// ~150–170 GFLOP/s, near the AVX2 peak); at 2048³ OpenBLAS is ~3–8% ahead.</item>
/// </list>
/// Everything else (small products, single-threaded calls, no OpenBLAS) uses the managed kernel.</para>
/// </remarks>
public static class Gemm
{
    /// <summary>The backend used by <see cref="Sgemm(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int, bool)"/>.</summary>
    public static GemmBackend Backend { get; set; } = VitSharpEnvironment.GemmBackend ?? GemmBackend.Auto;

    /// <summary>True when OpenBLAS was found and loaded.</summary>
    public static bool OpenBlasAvailable => OpenBlas.IsAvailable;

    /// <summary>Auto uses OpenBLAS only for parallel calls with at least this many flops (2·m·n·k).</summary>
    public static double AutoOpenBlasMinFlops { get; set; } = 2e7;

    /// <summary>On CPUs without AVX-512, Auto uses OpenBLAS only when m is at least this.</summary>
    public static int AutoOpenBlasMinRowsAvx2 { get; set; } = 1024;

    /// <summary>On CPUs with AVX-512, Auto keeps products of at most this many rows on the managed kernel (the
    /// column-split regime of batch-1 ViTs, whose weights come from memory on every call). Default: 256 on AMD Zen 4,
    /// where the managed kernel ran ViT-B/16's plain batch-1 products ~12% faster than OpenBLAS's SkylakeX kernel
    /// (docs/performance.md); 0 on other AVX-512 CPUs, where that was not measured (OpenBLAS for every large product).</summary>
    public static int AutoManagedMaxRowsAvx512 { get; set; } = CpuIdentity.IsZen4 ? 256 : 0;

    /// <summary>Whether <see cref="GemmBackend.Auto"/> would send a parallel m×n×k product to OpenBLAS.</summary>
    public static bool AutoUsesOpenBlas(int m, int n, int k)
    {
        if (!OpenBlas.IsAvailable || 2.0 * m * n * k < AutoOpenBlasMinFlops) return false;
        return System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? m > AutoManagedMaxRowsAvx512 : m >= AutoOpenBlasMinRowsAvx2;
    }

    /// <summary>C = alpha·op(A)·op(B) + beta·C (row-major, leading dimensions in elements).
    /// <c>parallel: false</c> ⇒ run on the calling thread only (for use inside parallel loops).</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        bool parallel = true)
        => Sgemm(Backend, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel);

    /// <summary>C = alpha·op(A)·op(B) + beta·C with an explicit backend.</summary>
    public static unsafe void Sgemm(GemmBackend backend, bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        bool parallel = true)
    {
        Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (m == 0 || n == 0) return;
        parallel &= !ComputeThreads.IsSerialThread;
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
            Run(backend, transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, parallel);
    }

    /// <summary>Strided batched GEMM: for each batch index i, C_i = alpha·op(A_i)·op(B_i) + beta·C_i.</summary>
    public static void SgemmStridedBatched(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, long strideA, ReadOnlySpan<float> b, int ldb, long strideB,
        float beta, Span<float> c, int ldc, long strideC, int batch)
        => SgemmStridedBatched(Backend, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c,
            ldc, strideC, batch);

    /// <summary>Strided batched GEMM with an explicit backend. Batches run in parallel over the cores (each one
    /// single-threaded) when there are several, else the single product uses all cores.</summary>
    public static unsafe void SgemmStridedBatched(GemmBackend backend, bool transA, bool transB, int m, int n, int k,
        float alpha, ReadOnlySpan<float> a, int lda, long strideA, ReadOnlySpan<float> b, int ldb, long strideB,
        float beta, Span<float> c, int ldc, long strideC, int batch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        if (batch == 0 || m == 0 || n == 0) return;
        long last = batch - 1;
        Validate(transA, transB, m, n, k, a.Length - last * strideA, lda, b.Length - last * strideB, ldb,
            c.Length - last * strideC, ldc);
        if (strideA < 0 || strideB < 0 || strideC < 0) throw new ArgumentOutOfRangeException(nameof(strideA), "Strides must be non-negative.");
        if (batch > 1 && strideC < (long)(m - 1) * ldc + n && k > 0)
            throw new ArgumentException("Output batches overlap (strideC too small).", nameof(strideC));
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            if (batch == 1)
            {
                Run(backend, transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, parallel: true);
                return;
            }
            double flops = 2.0 * m * n * k * batch;
            if (flops < GemmManaged.ParallelThresholdFlops || ComputeThreads.Effective == 1)
            {
                for (int i = 0; i < batch; i++)
                    Run(backend, transA, transB, m, n, k, alpha, pa + i * strideA, lda, pb + i * strideB, ldb, beta,
                        pc + i * strideC, ldc, parallel: false);
                return;
            }
            var job = new BatchJob
            {
                Backend = backend, TransA = transA, TransB = transB, M = m, N = n, K = k, Alpha = alpha, A = pa,
                Lda = lda, StrideA = strideA, B = pb, Ldb = ldb, StrideB = strideB, Beta = beta, C = pc, Ldc = ldc,
                StrideC = strideC,
            };
            // Contiguous runs of batches per worker (a struct body: no allocation per call).
            Parallel2.For(batch, Math.Min(batch, ComputeThreads.Count), job);
        }
    }

    /// <summary>
    /// A Linear with its epilogue fused: <c>y[m, n] = epilogue(x[m, k]·wᵀ)</c> with w stored [n, k] and
    /// <see cref="GemmEpilogue"/> adding the bias, applying GELU and adding a residual. The managed kernel applies the
    /// epilogue to each block of y as it finishes (no further pass over y); where the backend rule picks OpenBLAS or the
    /// naive loop, the epilogue follows as one separate parallel pass.
    /// </summary>
    internal static unsafe void LinearFused(int m, int n, int k, float* x, float* w, GemmEpilogue epilogue, float* y, bool parallel = true)
        => LinearFused(Backend, m, n, k, x, w, epilogue, y, parallel);

    /// <summary>As above with an explicit backend (tests cover each one without changing the process-wide <see cref="Backend"/>).</summary>
    internal static unsafe void LinearFused(GemmBackend backend, int m, int n, int k, float* x, float* w, GemmEpilogue epilogue, float* y,
        bool parallel = true)
    {
        if (m <= 0 || n <= 0) return;
        parallel &= !ComputeThreads.IsSerialThread;
        bool useBlas = UsesOpenBlas(backend, parallel, m, n, k) && !(backend == GemmBackend.Auto && FusedPrefersManaged);
        if (backend == GemmBackend.Naive || useBlas)
        {
            Run(backend, false, true, m, n, k, 1f, x, k, w, k, 0f, y, n, parallel);
            ApplyEpilogue(y, m, n, epilogue, parallel);
            return;
        }
        GemmManaged.Sgemm(GemmManaged.DefaultKind, false, true, m, n, k, 1f, x, k, w, k, 0f, y, n, parallel, epilogue);
    }

    /// <summary>
    /// Whether <see cref="F.Linear"/> with a bias computes <c>x·wᵀ</c> and adds the bias in the managed kernel's epilogue
    /// (<see cref="LinearFused(int, int, int, float*, float*, GemmEpilogue, float*, bool)"/>): where the plain product of
    /// this size runs on the managed kernel anyway (always on a serial thread such as a data-parallel replica's; under
    /// Auto below OpenBLAS's threshold; with the Managed backend). Elsewhere the bias is copied into y and the product
    /// added with beta = 1, so that the OpenBLAS path stays as it was. Both give acc + bias rounded once when k fits in
    /// one packed block (k ≤ KC); above that the bias is added after the blocks' partial sums instead of before them.
    /// </summary>
    internal static bool LinearBiasInEpilogue(int m, int n, int k) =>
        k > 0 && Backend != GemmBackend.Naive && !UsesOpenBlas(Backend, !ComputeThreads.IsSerialThread, m, n, k);

    /// <summary>Whether a plain product under <paramref name="backend"/> goes to OpenBLAS (else the managed kernel, or the
    /// naive loop for <see cref="GemmBackend.Naive"/>).</summary>
    private static bool UsesOpenBlas(GemmBackend backend, bool parallel, int m, int n, int k) =>
        parallel && k > 0 && OpenBlas.IsAvailable && backend switch
        {
            GemmBackend.OpenBlas => true,
            GemmBackend.Auto => AutoUsesOpenBlas(m, n, k),
            _ => false,
        };

    /// <summary>Applies <paramref name="epilogue"/> to all of y[m, n] as a separate pass (rows split over the cores when <paramref name="parallel"/>).</summary>
    internal static unsafe void ApplyEpilogue(float* y, int m, int n, GemmEpilogue epilogue, bool parallel = true)
    {
        if (epilogue.IsNone || m <= 0 || n <= 0) return;
        var body = new EpilogueRows { Epilogue = epilogue, Y = y, N = n };
        if (parallel && !ComputeThreads.IsSerialThread) Parallel2.For(m, Parallel2.Chunks(m, n), body);
        else body.Run(0, 0, m);
    }

    /// <summary>Under <see cref="GemmBackend.Auto"/>, fused products (<see cref="LinearFused(GemmBackend, int, int, int, float*, float*, GemmEpilogue, float*, bool)"/>) run on the managed kernel even
    /// where a plain product of that size would go to OpenBLAS, since only the managed kernel applies the epilogue in cache.</summary>
    internal static bool FusedPrefersManaged { get; set; } = true;

    private unsafe struct EpilogueRows : Parallel2.IChunkBody
    {
        public GemmEpilogue Epilogue;
        public float* Y;
        public int N;

        public readonly void Run(int chunk, int start, int length) => Epilogue.Apply(Y + (long)start * N, N, length, N, start, 0);
    }

    private unsafe struct BatchJob : Parallel2.IChunkBody
    {
        public GemmBackend Backend;
        public bool TransA, TransB;
        public int M, N, K, Lda, Ldb, Ldc;
        public long StrideA, StrideB, StrideC;
        public float Alpha, Beta;
        public float* A, B, C;

        public readonly void Run(int chunk, int start, int length)
        {
            for (int i = start; i < start + length; i++)
                Gemm.Run(Backend, TransA, TransB, M, N, K, Alpha, A + i * StrideA, Lda, B + i * StrideB, Ldb, Beta,
                    C + i * StrideC, Ldc, parallel: false);
        }
    }

    private static unsafe void Run(GemmBackend backend, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool parallel)
    {
        if (backend == GemmBackend.Naive)
        {
            Naive(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        if (UsesOpenBlas(backend, parallel, m, n, k)) OpenBlas.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        else GemmManaged.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel);
    }

    private static unsafe void Naive(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++)
                    s += (transA ? a[(long)p * lda + i] : a[(long)i * lda + p]) * (transB ? b[(long)j * ldb + p] : b[(long)p * ldb + j]);
                long ci = (long)i * ldc + j;
                c[ci] = beta == 0 ? alpha * s : alpha * s + beta * c[ci];
            }
    }

    private static void Validate(bool transA, bool transB, int m, int n, int k, long aLen, int lda, long bLen, int ldb,
        long cLen, int ldc)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (m == 0 || n == 0) return;
        if (ldc < n) throw new ArgumentOutOfRangeException(nameof(ldc), "ldc must be at least n.");
        if (cLen < (long)(m - 1) * ldc + n) throw new ArgumentException("C is too short.", "c");
        if (k == 0) return;
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        if (lda < aCols) throw new ArgumentOutOfRangeException(nameof(lda), "lda is smaller than the stored row width.");
        if (ldb < bCols) throw new ArgumentOutOfRangeException(nameof(ldb), "ldb is smaller than the stored row width.");
        if (aLen < (long)(aRows - 1) * lda + aCols) throw new ArgumentException("A is too short.", "a");
        if (bLen < (long)(bRows - 1) * ldb + bCols) throw new ArgumentException("B is too short.", "b");
    }
}
