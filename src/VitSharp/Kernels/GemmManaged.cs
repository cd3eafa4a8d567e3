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
/// <para>Files: this one is the driver (block sizes, single-threaded loop nest, macro-kernel); GemmManaged.Parallel.cs
/// the split over threads; GemmManaged.MicroKernels.cs the register-blocked kernels; GemmManaged.Packing.cs the
/// packing routines and per-thread buffers.</para>
/// <para>Threads: products under <see cref="ParallelThresholdFlops"/> (or <c>parallel: false</c>) run on the calling
/// thread. Larger ones run per (NC, KC) block in rounds on <see cref="GemmWorkers"/>: with m ≤ <see cref="SplitNMaxM"/>
/// (ViT token counts) the caller packs A once per KC block (all rows × KC, L2-resident) and the threads take ~3 column
/// chunks each over all of n, packing their own B panels one at a time while the next panel's source is prefetched into
/// L2 (the weights of a batch-1 Linear come from memory on every call); with larger m the threads first pack the
/// shared B block together, then take MC-row blocks, packing their own A. Work items are handed out dynamically, so a
/// core slowed by another process does not stall the call.</para>
/// </remarks>
internal static unsafe partial class GemmManaged
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

    /// <summary>Depth of a packed block (k); <c>VITSHARP_GEMM_KC</c> overrides it.</summary>
    internal static int KC = VitSharpEnvironment.GemmKc ?? 256;

    /// <summary>Rows of a packed A block (multiple of <see cref="MR"/>); <c>VITSHARP_GEMM_MC</c> overrides it.</summary>
    internal static int MC = VitSharpEnvironment.GemmMc ?? (DefaultKind == KernelKind.V512x64 ? 96 : 72);

    /// <summary>Columns of a packed B block (multiple of <see cref="NR"/>); <c>VITSHARP_GEMM_NC</c> overrides it.</summary>
    internal static int NC = VitSharpEnvironment.GemmNc ?? 1024;

    /// <summary>Below this many flops (2·m·n·k) a call stays on the calling thread.</summary>
    internal static double ParallelThresholdFlops = 4e6;

    /// <summary>Which micro-kernel is in use ("avx512 6x64", "avx2 6x16" or "scalar 6x16").</summary>
    internal static string KernelName => DefaultKind switch
    {
        KernelKind.V512x64 => "avx512 6x64",
        KernelKind.Avx2x16 => "avx2 6x16",
        _ => "scalar 6x16",
    };

    /// <summary>C = alpha·op(A)·op(B) + beta·C; spreads blocks over <see cref="GemmWorkers"/> when worthwhile.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool parallel)
        => Sgemm(DefaultKind, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel);

    /// <summary>As above with an explicit micro-kernel (tests use it to cover every kernel on any CPU) and an optional
    /// <paramref name="epilogue"/> applied to each finished block of C while it is still in cache.</summary>
    internal static void Sgemm(KernelKind kind, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool parallel, GemmEpilogue epilogue = default)
    {
        if (m <= 0 || n <= 0) return;
        int threads = parallel ? GemmWorkers.Threads : 1;
        double flops = 2.0 * m * n * k;
        if (threads <= 1 || flops < ParallelThresholdFlops || k == 0 || alpha == 0)
            Run(kind, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
        else
            RunParallel(kind, threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
    }

    /// <summary>Single-threaded packed GEMM on the calling thread.</summary>
    public static void Run(KernelKind kind, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Run(kind, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, default);

    /// <summary>Single-threaded packed GEMM with an epilogue on each finished block of C.</summary>
    internal static void Run(KernelKind kind, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, GemmEpilogue epilogue)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0 || alpha == 0)
        {
            ScaleC(m, n, beta, c, ldc);
            epilogue.Apply(c, ldc, m, n, 0, 0);
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
                    if (pc + kb >= k) epilogue.Apply(c + (long)ic * ldc + jc, ldc, mb, nb, ic, jc);
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
        float* c, int ldc, float* tmp, SourcePrefetch prefetch = default)
    {
        int linesPerTile = prefetch.Lines == 0 ? 0 : (prefetch.Lines + (mb + MR - 1) / MR - 1) / ((mb + MR - 1) / MR);
        for (int jr = 0; jr < nb; jr += nr)
        {
            int nrr = Math.Min(nr, nb - jr);
            float* bp = pb + (long)jr * kb;
            for (int ir = 0; ir < mb; ir += MR)
            {
                if (linesPerTile != 0) prefetch.Issue(linesPerTile);
                int mrr = Math.Min(MR, mb - ir);
                float* ap = pa + (long)ir * kb;
                float* cp = c + (long)ir * ldc + jr;
                if (mrr == MR && nrr == nr)
                {
                    Kernel(kind, kb, ap, bp, cp, ldc, alpha, beta);
                }
                else
                {
                    // A last panel of at most 32 columns: only its first one or two vectors (same sums, in the same order).
                    if (kind == KernelKind.V512x64 && nrr <= 32) KernelNarrowV512(nrr <= 16 ? 1 : 2, kb, ap, bp, tmp);
                    else Kernel(kind, kb, ap, bp, tmp, nr, 1f, 0f);
                    for (int i = 0; i < mrr; i++) CopyEdgeRow(tmp + i * nr, cp + (long)i * ldc, nrr, alpha, beta);
                }
            }
        }
    }

    /// <summary>Cache lines of a B panel's source (rows of <see cref="LinesPerRow"/> 64-byte lines, <see cref="Stride"/>
    /// floats apart) fetched into L2 a few at a time between the tiles of the panel before it, so that packing the next
    /// panel reads from cache instead of memory while the kernel's FMAs hide the transfer.</summary>
    private struct SourcePrefetch
    {
        public float* Base;
        public long Stride;
        public int LinesPerRow, Lines;
        private int _next;

        public SourcePrefetch(float* rowStart, long stride, int rows, int floatsPerRow)
        {
            Base = rowStart;
            Stride = stride;
            LinesPerRow = (floatsPerRow + 15) / 16 + 1; // + 1: rows need not start on a line
            Lines = rows * LinesPerRow;
            _next = 0;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Issue(int count)
        {
            if (!Sse.IsSupported) return;
            int end = Math.Min(Lines, _next + count);
            for (; _next < end; _next++)
            {
                int row = _next / LinesPerRow, line = _next - row * LinesPerRow;
                Sse.Prefetch1(Base + row * Stride + line * 16);
            }
        }
    }

    // dst[j] = alpha·src[j] (+ beta·dst[j]) for j < n: an edge tile's row out of the scratch tile, 8 lanes at a time with
    // the scalar expression's roundings (two products and a sum, no fused multiply-add).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyEdgeRow(float* src, float* dst, int n, float alpha, float beta)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            if (beta == 0)
                for (; j + 8 <= n; j += 8) (va * Vector256.Load(src + j)).Store(dst + j);
            else
            {
                var vb = Vector256.Create(beta);
                for (; j + 8 <= n; j += 8) (va * Vector256.Load(src + j) + vb * Vector256.Load(dst + j)).Store(dst + j);
            }
        }
        if (beta == 0)
            for (; j < n; j++) dst[j] = alpha * src[j];
        else
            for (; j < n; j++) dst[j] = alpha * src[j] + beta * dst[j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Kernel(KernelKind kind, int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (kind == KernelKind.V512x64) Kernel6x64V512(kc, a, b, c, ldc, alpha, beta);
        else if (kind == KernelKind.Avx2x16) Kernel6x16Avx2(kc, a, b, c, ldc, alpha, beta);
        else Kernel6x16Scalar(kc, a, b, c, ldc, alpha, beta);
    }
}
