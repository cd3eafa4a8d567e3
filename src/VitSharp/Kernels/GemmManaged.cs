using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// Managed packed SIMD SGEMM (row-major): BLIS-style loop nest jc (NC) → pc (KC) → pack B → ic (MC) →
/// pack A → jr (NR) → ir (MR) → register-blocked micro-kernel.
/// </summary>
/// <remarks>
/// Micro-kernels: 6×64 with AVX-512 FMA (24 zmm accumulators), 6×16 with AVX2 FMA (12 ymm accumulators),
/// scalar 6×16 otherwise. Packed A micro-panels hold MR rows interleaved per k (a[p*MR + i]); packed B
/// micro-panels hold NR columns per k (b[p*NR + j]); both are zero-padded so the micro-kernel always computes
/// a full tile; edge tiles go through a small scratch tile. Transposes are absorbed by the packing routines.
/// Pack buffers are per thread (native, 64-byte aligned) and reused, so the steady state does not allocate.
/// <para>Threads: products under <see cref="ParallelThresholdFlops"/> (or <c>parallel: false</c>) run on the calling
/// thread. Larger ones run per (NC, KC) block in rounds on <see cref="GemmWorkers"/>: with m ≤ <see cref="SplitNMaxM"/>
/// (ViT token counts) the caller packs A once (all rows × KC, L2-resident) and the threads take ~3 column chunks
/// each, packing their own B panels; with larger m the threads first pack the shared B block together, then take
/// MC-row blocks, packing their own A. Work items are handed out dynamically, so a core slowed by another process
/// does not stall the call.</para>
/// </remarks>
internal static unsafe class GemmManaged
{
    /// <summary>Micro-kernel variants.</summary>
    internal enum KernelKind
    {
        /// <summary>6×64 over <see cref="Vector512{T}"/> (zmm FMA with AVX-512; software-emulated elsewhere, for tests).</summary>
        V512x64,
        /// <summary>6×16 with AVX2 + FMA (ymm).</summary>
        Avx2x16,
        /// <summary>6×16 scalar.</summary>
        Scalar16,
    }

    /// <summary>The kernel this CPU runs by default.</summary>
    internal static readonly KernelKind DefaultKind =
        Avx512F.IsSupported ? KernelKind.V512x64 : Fma.IsSupported && Avx2.IsSupported ? KernelKind.Avx2x16 : KernelKind.Scalar16;

    /// <summary>Micro-tile width of a kernel.</summary>
    internal static int NrOf(KernelKind kind) => kind == KernelKind.V512x64 ? 64 : 16;

    /// <summary>Rows of the micro-tile.</summary>
    internal const int MR = 6;

    /// <summary>Columns of the default micro-tile (64 with AVX-512, else 16).</summary>
    internal static readonly int NR = NrOf(DefaultKind);

    /// <summary>Depth of a packed block (k).</summary>
    internal static int KC = EnvInt("VITSHARP_GEMM_KC", 256);

    /// <summary>Rows of a packed A block (multiple of <see cref="MR"/>).</summary>
    internal static int MC = EnvInt("VITSHARP_GEMM_MC", DefaultKind == KernelKind.V512x64 ? 96 : 72);

    /// <summary>Columns of a packed B block (multiple of <see cref="NR"/>).</summary>
    internal static int NC = EnvInt("VITSHARP_GEMM_NC", 1024);

    private static int EnvInt(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), out int v) && v > 0 ? v : fallback;

    /// <summary>Below this many flops (2·m·n·k) a call stays on the calling thread.</summary>
    internal static double ParallelThresholdFlops = 4e6;

    /// <summary>Prefetch the C tile at the start of each micro-kernel call.</summary>
    internal static bool PrefetchC = true;

    /// <summary>Maximum number of threads one call uses.</summary>
    internal static int MaxThreads = int.MaxValue;

    /// <summary>Which micro-kernel is in use ("avx512 6x64", "avx2 6x16" or "scalar 6x16").</summary>
    internal static string KernelName => DefaultKind switch
    {
        KernelKind.V512x64 => "avx512 6x64",
        KernelKind.Avx2x16 => "avx2 6x16",
        _ => "scalar 6x16",
    };

    /// <summary>C = alpha·op(A)·op(B) + beta·C; splits coarse column (or row) blocks over threads when worthwhile.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool parallel)
        => Sgemm(DefaultKind, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel);

    /// <summary>As above with an explicit micro-kernel (tests use it to cover every kernel on any CPU).</summary>
    internal static void Sgemm(KernelKind kind, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool parallel)
    {
        if (m <= 0 || n <= 0) return;
        int threads = parallel ? Math.Min(MaxThreads, GemmWorkers.Threads) : 1;
        double flops = 2.0 * m * n * k;
        if (threads <= 1 || flops < ParallelThresholdFlops || k == 0 || alpha == 0)
        {
            Run(kind, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }

        if (SharedPacking)
        {
            RunParallel(kind, threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }

        // Static split of the larger of m and n: each thread packs the other operand whole, so the duplicated packing
        // work is proportional to min(m, n)·k, small next to the m·n·k/threads of the micro-kernels.
        var job = new Job
        {
            Kind = kind, TransA = transA, TransB = transB, M = m, N = n, K = k, Alpha = alpha, A = a, Lda = lda,
            B = b, Ldb = ldb, Beta = beta, C = c, Ldc = ldc,
        };
        if (n >= m)
        {
            int nr = NrOf(kind);
            int tiles = (n + nr - 1) / nr;
            threads = Math.Min(threads, tiles);
            job.SplitN = true;
            job.Chunk = (tiles + threads - 1) / threads * nr;
        }
        else
        {
            int tiles = (m + MR - 1) / MR;
            threads = Math.Min(threads, tiles);
            job.SplitN = false;
            job.Chunk = (tiles + threads - 1) / threads * MR;
        }
        int parts = job.SplitN ? (n + job.Chunk - 1) / job.Chunk : (m + job.Chunk - 1) / job.Chunk;
        if (parts <= 1)
        {
            Run(kind, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, job.Execute);
    }

    /// <summary>Multi-threaded calls pack the shared operand once per block and hand out small work items
    /// dynamically (true), or split the problem statically into one independent sub-GEMM per thread (false).</summary>
    internal static bool SharedPacking = true;

    /// <summary>Up to this many rows, a parallel call shares one packed A block (all rows × KC, kept in L2) and
    /// distributes column chunks; above it, it shares the packed B block and distributes MC row blocks.</summary>
    internal static int SplitNMaxM = 256;

    /// <summary>Parallel GEMM with shared packing and dynamic distribution of row blocks or column chunks.</summary>
    private static void RunParallel(KernelKind kind, int threads, bool transA, bool transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        int nr = NrOf(kind);
        int kc = Math.Max(1, KC);
        int mc = Math.Max(MR, MC / MR * MR);
        int nc = Math.Max(nr, NC / nr * nr);
        bool splitN = m <= SplitNMaxM;
        int panels = (Math.Min(n, nc) + nr - 1) / nr;
        if (splitN && panels < 2) splitN = false;
        if (!splitN && (m + mc - 1) / mc < 2 && panels >= 2) splitN = true;
        var caller = PackBuffers.Get(mc, kc, nc, nr);
        // Reuse this thread's job object (a nested call from inside a body would find it busy and allocate).
        var job = t_job is { Busy: false } cached ? cached : new ParallelJob();
        t_job ??= job;
        job.Busy = true;
        job.Kind = kind; job.TransA = transA; job.TransB = transB; job.M = m; job.Alpha = alpha; job.A = a;
        job.Lda = lda; job.B = b; job.Ldb = ldb; job.C = c; job.Ldc = ldc; job.Nr = nr; job.Mc = mc; job.Kc = kc;
        job.Nc = nc;
        bool useWorkers = UseWorkerThreads && threads == GemmWorkers.Threads;
        var options = threads == s_options.MaxDegreeOfParallelism ? s_options : new ParallelOptions { MaxDegreeOfParallelism = threads };
        try
        {
            for (int jc = 0; jc < n; jc += nc)
            {
                int nb = Math.Min(nc, n - jc);
                job.Jc = jc;
                job.Nb = nb;
                for (int pc = 0; pc < k; pc += kc)
                {
                    int kb = Math.Min(kc, k - pc);
                    job.Pc = pc;
                    job.Kb = kb;
                    job.Beta = pc == 0 ? beta : 1f;
                    if (splitN)
                    {
                        // ~3 chunks per thread for balance, whole NR panels each.
                        int p = (nb + nr - 1) / nr;
                        int per = Math.Max(1, (p + 3 * threads - 1) / (3 * threads));
                        job.W = per * nr;
                        job.Shared = caller.GetShared((long)((m + MR - 1) / MR * MR) * kb + 64);
                        PackA(transA, a, lda, 0, pc, m, kb, job.Shared);
                        int chunks = (nb + job.W - 1) / job.W;
                        if (useWorkers) GemmWorkers.For(chunks, job.BodyN);
                        else Parallel.For(0, chunks, options, job.BodyN);
                    }
                    else
                    {
                        job.Shared = caller.GetShared((long)((nb + nr - 1) / nr * nr) * kb + 64);
                        int panelsB = (nb + nr - 1) / nr;
                        if ((long)nb * kb >= 32768 && panelsB >= 2)
                        {
                            // Pack the shared B block in parallel too (it is ~1 MB; serially it idles the workers).
                            job.PackPer = Math.Max(1, (panelsB + 2 * threads - 1) / (2 * threads));
                            int packChunks = (panelsB + job.PackPer - 1) / job.PackPer;
                            if (useWorkers) GemmWorkers.For(packChunks, job.BodyPackB);
                            else Parallel.For(0, packChunks, options, job.BodyPackB);
                        }
                        else
                        {
                            PackB(transB, b, ldb, pc, jc, kb, nb, nr, job.Shared);
                        }
                        int blocks = (m + mc - 1) / mc;
                        if (useWorkers) GemmWorkers.For(blocks, job.BodyM);
                        else Parallel.For(0, blocks, options, job.BodyM);
                    }
                }
            }
        }
        finally
        {
            job.Busy = false;
        }
    }

    /// <summary>Parallel rounds run on <see cref="GemmWorkers"/> (true) or <see cref="Parallel.For(int, int, Action{int})"/>.</summary>
    internal static bool UseWorkerThreads = Environment.GetEnvironmentVariable("VITSHARP_GEMM_THREADS") != "parallelfor";

    [ThreadStatic] private static ParallelJob? t_job;
    private static readonly ParallelOptions s_options = new() { MaxDegreeOfParallelism = ComputeThreads.Count };

    private sealed class ParallelJob
    {
        public KernelKind Kind;
        public bool TransA, TransB, Busy;
        public int M, Lda, Ldb, Ldc, Nr, Mc, Kc, Nc, Jc, Nb, Pc, Kb, W;
        public float Alpha, Beta;
        public float* A, B, C, Shared;
        public int PackPer;
        public readonly Action<int> BodyN, BodyM, BodyPackB;

        public ParallelJob()
        {
            BodyN = RunN;
            BodyM = RunM;
            BodyPackB = RunPackB;
        }

        private void RunPackB(int chunk)
        {
            int j0 = chunk * PackPer * Nr;
            int w = Math.Min(PackPer * Nr, Nb - j0);
            PackB(TransB, B, Ldb, Pc, Jc + j0, Kb, w, Nr, Shared + (long)j0 * Kb);
        }

        private void RunN(int chunk)
        {
            int j0 = chunk * W;
            int w = Math.Min(W, Nb - j0);
            var buf = PackBuffers.Get(Mc, Kc, Nc, Nr);
            PackB(TransB, B, Ldb, Pc, Jc + j0, Kb, w, Nr, buf.B);
            Macro(Kind, M, w, Kb, Nr, Alpha, Beta, Shared, buf.B, C + Jc + j0, Ldc, buf.Tmp);
        }

        private void RunM(int block)
        {
            int i0 = block * Mc;
            int mb = Math.Min(Mc, M - i0);
            var buf = PackBuffers.Get(Mc, Kc, Nc, Nr);
            PackA(TransA, A, Lda, i0, Pc, mb, Kb, buf.A);
            Macro(Kind, mb, Nb, Kb, Nr, Alpha, Beta, buf.A, Shared, C + (long)i0 * Ldc + Jc, Ldc, buf.Tmp);
        }
    }

    private sealed class Job
    {
        public KernelKind Kind;
        public bool TransA, TransB, SplitN;
        public int M, N, K, Lda, Ldb, Ldc, Chunk;
        public float Alpha, Beta;
        public float* A, B, C;

        public void Execute(int part)
        {
            int start = part * Chunk;
            if (SplitN)
            {
                int cols = Math.Min(Chunk, N - start);
                float* bb = TransB ? B + (long)start * Ldb : B + start;
                Run(Kind, TransA, TransB, M, cols, K, Alpha, A, Lda, bb, Ldb, Beta, C + start, Ldc);
            }
            else
            {
                int rows = Math.Min(Chunk, M - start);
                float* aa = TransA ? A + start : A + (long)start * Lda;
                Run(Kind, TransA, TransB, rows, N, K, Alpha, aa, Lda, B, Ldb, Beta, C + (long)start * Ldc, Ldc);
            }
        }
    }

    /// <summary>Single-threaded packed GEMM on the calling thread.</summary>
    public static void Run(KernelKind kind, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0 || alpha == 0)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        int nr = NrOf(kind);
        int kc = Math.Max(1, KC);
        int mc = Math.Max(MR, MC / MR * MR);
        int nc = Math.Max(nr, NC / nr * nr);
        var buf = PackBuffers.Get(mc, kc, nc, nr);

        for (int jc = 0; jc < n; jc += nc)
        {
            int nb = Math.Min(nc, n - jc);
            for (int pc = 0; pc < k; pc += kc)
            {
                int kb = Math.Min(kc, k - pc);
                float betaEff = pc == 0 ? beta : 1f;
                PackB(transB, b, ldb, pc, jc, kb, nb, nr, buf.B);
                for (int ic = 0; ic < m; ic += mc)
                {
                    int mb = Math.Min(mc, m - ic);
                    PackA(transA, a, lda, ic, pc, mb, kb, buf.A);
                    Macro(kind, mb, nb, kb, nr, alpha, betaEff, buf.A, buf.B, c + (long)ic * ldc + jc, ldc, buf.Tmp);
                }
            }
        }
    }

    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (beta == 0) row.Clear();
            else if (beta != 1) System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    private static void Macro(KernelKind kind, int mb, int nb, int kb, int nr, float alpha, float beta, float* pa, float* pb,
        float* c, int ldc, float* tmp)
    {
        for (int jr = 0; jr < nb; jr += nr)
        {
            int nrr = Math.Min(nr, nb - jr);
            float* bp = pb + (long)jr * kb;
            for (int ir = 0; ir < mb; ir += MR)
            {
                int mrr = Math.Min(MR, mb - ir);
                float* ap = pa + (long)ir * kb;
                float* cp = c + (long)ir * ldc + jr;
                if (mrr == MR && nrr == nr)
                {
                    Kernel(kind, kb, ap, bp, cp, ldc, alpha, beta);
                }
                else
                {
                    Kernel(kind, kb, ap, bp, tmp, nr, 1f, 0f);
                    for (int i = 0; i < mrr; i++)
                    {
                        float* src = tmp + i * nr;
                        float* dst = cp + (long)i * ldc;
                        if (beta == 0)
                            for (int j = 0; j < nrr; j++) dst[j] = alpha * src[j];
                        else
                            for (int j = 0; j < nrr; j++) dst[j] = alpha * src[j] + beta * dst[j];
                    }
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Kernel(KernelKind kind, int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (kind == KernelKind.V512x64) Kernel6x64V512(kc, a, b, c, ldc, alpha, beta);
        else if (kind == KernelKind.Avx2x16) Kernel6x16Avx2(kc, a, b, c, ldc, alpha, beta);
        else Kernel6x16Scalar(kc, a, b, c, ldc, alpha, beta);
    }

    // ---------------------------------------------------------------- micro-kernels

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x64V512(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (Sse.IsSupported && PrefetchC)
        {
            // The C tile is often cold (large m·n); start fetching its 6 rows × 4 lines now, the k loop hides it.
            for (int i = 0; i < MR; i++)
            {
                float* row = c + (long)i * ldc;
                Sse.Prefetch0(row); Sse.Prefetch0(row + 16); Sse.Prefetch0(row + 32); Sse.Prefetch0(row + 48); Sse.Prefetch0(row + 63);
            }
        }
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c43 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default, c53 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var b3 = Vector512.Load(b + 48);
            var av = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(av, b0, c00); c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(av, b2, c02); c03 = Vector512.FusedMultiplyAdd(av, b3, c03);
            av = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(av, b0, c10); c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(av, b2, c12); c13 = Vector512.FusedMultiplyAdd(av, b3, c13);
            av = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(av, b0, c20); c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(av, b2, c22); c23 = Vector512.FusedMultiplyAdd(av, b3, c23);
            av = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(av, b0, c30); c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(av, b2, c32); c33 = Vector512.FusedMultiplyAdd(av, b3, c33);
            av = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(av, b0, c40); c41 = Vector512.FusedMultiplyAdd(av, b1, c41);
            c42 = Vector512.FusedMultiplyAdd(av, b2, c42); c43 = Vector512.FusedMultiplyAdd(av, b3, c43);
            av = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(av, b0, c50); c51 = Vector512.FusedMultiplyAdd(av, b1, c51);
            c52 = Vector512.FusedMultiplyAdd(av, b2, c52); c53 = Vector512.FusedMultiplyAdd(av, b3, c53);
            a += MR;
            b += 64;
        }
        var va = Vector512.Create(alpha);
        if (beta == 0)
        {
            Store0(c, va, c00, c01, c02, c03); c += ldc;
            Store0(c, va, c10, c11, c12, c13); c += ldc;
            Store0(c, va, c20, c21, c22, c23); c += ldc;
            Store0(c, va, c30, c31, c32, c33); c += ldc;
            Store0(c, va, c40, c41, c42, c43); c += ldc;
            Store0(c, va, c50, c51, c52, c53);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Store1(c, va, vb, c00, c01, c02, c03); c += ldc;
            Store1(c, va, vb, c10, c11, c12, c13); c += ldc;
            Store1(c, va, vb, c20, c21, c22, c23); c += ldc;
            Store1(c, va, vb, c30, c31, c32, c33); c += ldc;
            Store1(c, va, vb, c40, c41, c42, c43); c += ldc;
            Store1(c, va, vb, c50, c51, c52, c53);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store0(float* c, Vector512<float> va, Vector512<float> x0, Vector512<float> x1,
        Vector512<float> x2, Vector512<float> x3)
    {
        Vector512.Store(va * x0, c);
        Vector512.Store(va * x1, c + 16);
        Vector512.Store(va * x2, c + 32);
        Vector512.Store(va * x3, c + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store1(float* c, Vector512<float> va, Vector512<float> vb, Vector512<float> x0,
        Vector512<float> x1, Vector512<float> x2, Vector512<float> x3)
    {
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x0, vb * Vector512.Load(c)), c);
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x1, vb * Vector512.Load(c + 16)), c + 16);
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x2, vb * Vector512.Load(c + 32)), c + 32);
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x3, vb * Vector512.Load(c + 48)), c + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16Avx2(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (PrefetchC)
        {
            // The C tile is often cold (large m·n); start fetching its rows now, the k loop hides the latency.
            for (int i = 0; i < MR; i++)
            {
                float* row = c + (long)i * ldc;
                Sse.Prefetch0(row); Sse.Prefetch0(row + 15);
            }
        }
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var av = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Vector256.Create(a[4]);
            c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Vector256.Create(a[5]);
            c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            a += MR;
            b += 16;
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        bool b0z = beta == 0;
        StoreRow256(c, va, vb, b0z, c00, c01); c += ldc;
        StoreRow256(c, va, vb, b0z, c10, c11); c += ldc;
        StoreRow256(c, va, vb, b0z, c20, c21); c += ldc;
        StoreRow256(c, va, vb, b0z, c30, c31); c += ldc;
        StoreRow256(c, va, vb, b0z, c40, c41); c += ldc;
        StoreRow256(c, va, vb, b0z, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow256(float* c, Vector256<float> va, Vector256<float> vb, bool beta0,
        Vector256<float> x0, Vector256<float> x1)
    {
        if (beta0)
        {
            Vector256.Store(va * x0, c);
            Vector256.Store(va * x1, c + 8);
        }
        else
        {
            Vector256.Store(Fma.MultiplyAdd(va, x0, vb * Vector256.Load(c)), c);
            Vector256.Store(Fma.MultiplyAdd(va, x1, vb * Vector256.Load(c + 8)), c + 8);
        }
    }

    private static void Kernel6x16Scalar(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        const int nr = 16;
        float* acc = stackalloc float[MR * nr];
        new Span<float>(acc, MR * nr).Clear();
        for (int p = 0; p < kc; p++)
        {
            for (int i = 0; i < MR; i++)
            {
                float ai = a[i];
                float* row = acc + i * nr;
                for (int j = 0; j < nr; j++) row[j] += ai * b[j];
            }
            a += MR;
            b += nr;
        }
        for (int i = 0; i < MR; i++)
        {
            float* dst = c + (long)i * ldc;
            float* src = acc + i * nr;
            if (beta == 0) for (int j = 0; j < nr; j++) dst[j] = alpha * src[j];
            else for (int j = 0; j < nr; j++) dst[j] = alpha * src[j] + beta * dst[j];
        }
    }

    // ---------------------------------------------------------------- packing

    /// <summary>Packs op(A)[ic..ic+mb, pc..pc+kb] into MR-row micro-panels, zero-padding the last one.</summary>
    private static void PackA(bool transA, float* a, int lda, int ic, int pc, int mb, int kb, float* dst)
    {
        for (int ir = 0; ir < mb; ir += MR)
        {
            int mr = Math.Min(MR, mb - ir);
            float* d = dst + (long)ir * kb;
            if (transA)
            {
                // A stored [k, m]: element (i, p) at a[p*lda + i]; MR contiguous floats per p.
                float* s = a + (long)pc * lda + ic + ir;
                if (mr == MR)
                {
                    for (int p = 0; p < kb; p++, s += lda, d += MR)
                    {
                        d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; d[3] = s[3]; d[4] = s[4]; d[5] = s[5];
                    }
                }
                else
                {
                    for (int p = 0; p < kb; p++, s += lda, d += MR)
                    {
                        int i = 0;
                        for (; i < mr; i++) d[i] = s[i];
                        for (; i < MR; i++) d[i] = 0;
                    }
                }
            }
            else
            {
                // A stored [m, k]: element (i, p) at a[i*lda + p]; gather MR rows.
                float* s = a + (long)(ic + ir) * lda + pc;
                int p = 0;
                if (mr == MR && Avx.IsSupported)
                {
                    // 8×8 transposes of 6 real rows + 2 zero rows; each 8-float store at d + q*MR spills 2 floats
                    // into the next slot, which the following store (or the next panel, or the slack) absorbs.
                    var z = Vector256<float>.Zero;
                    for (; p + 8 <= kb; p += 8)
                    {
                        var r0 = Avx.LoadVector256(s + p);
                        var r1 = Avx.LoadVector256(s + lda + p);
                        var r2 = Avx.LoadVector256(s + 2L * lda + p);
                        var r3 = Avx.LoadVector256(s + 3L * lda + p);
                        var r4 = Avx.LoadVector256(s + 4L * lda + p);
                        var r5 = Avx.LoadVector256(s + 5L * lda + p);
                        Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref z, ref z,
                            out var o0, out var o1, out var o2, out var o3, out var o4, out var o5, out var o6, out var o7);
                        float* q = d + p * MR;
                        Avx.Store(q, o0); Avx.Store(q + MR, o1); Avx.Store(q + 2 * MR, o2); Avx.Store(q + 3 * MR, o3);
                        Avx.Store(q + 4 * MR, o4); Avx.Store(q + 5 * MR, o5); Avx.Store(q + 6 * MR, o6); Avx.Store(q + 7 * MR, o7);
                    }
                }
                for (; p < kb; p++)
                {
                    float* q = d + p * MR;
                    int i = 0;
                    for (; i < mr; i++) q[i] = s[(long)i * lda + p];
                    for (; i < MR; i++) q[i] = 0;
                }
            }
        }
    }

    /// <summary>Packs op(B)[pc..pc+kb, jc..jc+nb] into NR-column micro-panels, zero-padding the last one.</summary>
    private static void PackB(bool transB, float* b, int ldb, int pc, int jc, int kb, int nb, int nr, float* dst)
    {
        for (int jr = 0; jr < nb; jr += nr)
        {
            int w = Math.Min(nr, nb - jr);
            float* d = dst + (long)jr * kb;
            if (!transB)
            {
                // B stored [k, n]: row p of the panel is contiguous.
                float* s = b + (long)pc * ldb + jc + jr;
                if (w == nr && nr % 16 == 0)
                {
                    if (Vector512.IsHardwareAccelerated)
                        for (int p = 0; p < kb; p++, s += ldb, d += nr)
                            for (int j = 0; j < nr; j += 16) Vector512.Store(Vector512.Load(s + j), d + j);
                    else
                        for (int p = 0; p < kb; p++, s += ldb, d += nr)
                            for (int j = 0; j < nr; j += 8) Vector256.Store(Vector256.Load(s + j), d + j);
                }
                else
                {
                    for (int p = 0; p < kb; p++, s += ldb, d += nr)
                    {
                        int j = 0;
                        for (; j + 8 <= w; j += 8) Vector256.Store(Vector256.Load(s + j), d + j);
                        for (; j < w; j++) d[j] = s[j];
                        for (; j < nr; j++) d[j] = 0;
                    }
                }
            }
            else
            {
                // B stored [n, k]: element (p, j) at b[j*ldb + p]; transpose 8×8 blocks.
                float* s = b + (long)(jc + jr) * ldb + pc;
                int j = 0;
                if (Avx.IsSupported)
                {
                    for (; j + 8 <= w; j += 8)
                    {
                        float* sj = s + (long)j * ldb;
                        int p = 0;
                        for (; p + 8 <= kb; p += 8)
                        {
                            var r0 = Avx.LoadVector256(sj + p);
                            var r1 = Avx.LoadVector256(sj + ldb + p);
                            var r2 = Avx.LoadVector256(sj + 2L * ldb + p);
                            var r3 = Avx.LoadVector256(sj + 3L * ldb + p);
                            var r4 = Avx.LoadVector256(sj + 4L * ldb + p);
                            var r5 = Avx.LoadVector256(sj + 5L * ldb + p);
                            var r6 = Avx.LoadVector256(sj + 6L * ldb + p);
                            var r7 = Avx.LoadVector256(sj + 7L * ldb + p);
                            Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7,
                                out var o0, out var o1, out var o2, out var o3, out var o4, out var o5, out var o6, out var o7);
                            float* q = d + (long)p * nr + j;
                            Avx.Store(q, o0); Avx.Store(q + nr, o1); Avx.Store(q + 2 * nr, o2); Avx.Store(q + 3 * nr, o3);
                            Avx.Store(q + 4 * nr, o4); Avx.Store(q + 5 * nr, o5); Avx.Store(q + 6 * nr, o6); Avx.Store(q + 7 * nr, o7);
                        }
                        for (; p < kb; p++)
                        {
                            float* q = d + (long)p * nr + j;
                            for (int t = 0; t < 8; t++) q[t] = sj[(long)t * ldb + p];
                        }
                    }
                }
                for (; j < w; j++)
                {
                    float* sj = s + (long)j * ldb;
                    for (int p = 0; p < kb; p++) d[(long)p * nr + j] = sj[p];
                }
                if (w < nr)
                    for (int p = 0; p < kb; p++)
                        new Span<float>(d + (long)p * nr + w, nr - w).Clear();
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2,
        ref Vector256<float> r3, ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6,
        ref Vector256<float> r7, out Vector256<float> o0, out Vector256<float> o1, out Vector256<float> o2,
        out Vector256<float> o3, out Vector256<float> o4, out Vector256<float> o5, out Vector256<float> o6,
        out Vector256<float> o7)
    {
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44);
        var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44);
        var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44);
        var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44);
        var s7 = Avx.Shuffle(t5, t7, 0xEE);
        o0 = Avx.Permute2x128(s0, s4, 0x20);
        o1 = Avx.Permute2x128(s1, s5, 0x20);
        o2 = Avx.Permute2x128(s2, s6, 0x20);
        o3 = Avx.Permute2x128(s3, s7, 0x20);
        o4 = Avx.Permute2x128(s0, s4, 0x31);
        o5 = Avx.Permute2x128(s1, s5, 0x31);
        o6 = Avx.Permute2x128(s2, s6, 0x31);
        o7 = Avx.Permute2x128(s3, s7, 0x31);
    }

    // ---------------------------------------------------------------- buffers

    /// <summary>Per-thread native pack buffers (64-byte aligned), grown on demand and freed with the thread.</summary>
    private sealed class PackBuffers
    {
        [ThreadStatic] private static PackBuffers? t_current;

        public float* A, B, Tmp;
        private float* _shared;
        private nuint _aLen, _bLen, _sharedLen;

        /// <summary>A buffer for an operand packed once and read by every thread of a parallel call.</summary>
        public float* GetShared(long floats)
        {
            if (_sharedLen < (nuint)floats)
            {
                NativeMemory.AlignedFree(_shared);
                _shared = (float*)NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);
                _sharedLen = (nuint)floats;
            }
            return _shared;
        }

        public static PackBuffers Get(int mc, int kc, int nc, int nr)
        {
            var pb = t_current ??= new PackBuffers();
            nuint aNeed = (nuint)((mc + MR) * (long)kc + 64);
            nuint bNeed = (nuint)((nc + nr) * (long)kc + 64);
            if (pb._aLen < aNeed)
            {
                NativeMemory.AlignedFree(pb.A);
                pb.A = (float*)NativeMemory.AlignedAlloc(aNeed * sizeof(float), 64);
                pb._aLen = aNeed;
            }
            if (pb._bLen < bNeed)
            {
                NativeMemory.AlignedFree(pb.B);
                pb.B = (float*)NativeMemory.AlignedAlloc(bNeed * sizeof(float), 64);
                pb._bLen = bNeed;
            }
            if (pb.Tmp == null) pb.Tmp = (float*)NativeMemory.AlignedAlloc(MR * 64 * sizeof(float), 64);
            return pb;
        }

        ~PackBuffers()
        {
            NativeMemory.AlignedFree(A);
            NativeMemory.AlignedFree(B);
            NativeMemory.AlignedFree(Tmp);
            NativeMemory.AlignedFree(_shared);
        }
    }
}
