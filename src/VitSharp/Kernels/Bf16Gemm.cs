using System.Runtime.Intrinsics;
using VitSharp.IO;

namespace VitSharp.Kernels;

/// <summary>
/// bf16 Linear: <c>y[m, out] = bf16(x) · bf16(W)ᵀ + bias</c> with fp32 accumulation.
/// </summary>
/// <remarks>
/// <para>Activations are rounded to bf16 (round to nearest even, NaN kept) when they are packed; products of two bf16
/// values are exact in fp32, so paths differ only in the order (and, natively, the rounding steps) of the fp32 sums.
/// NaN and ±∞ propagate as in an fp32 GEMM.</para>
/// <para>Paths: <c>avx512-bf16</c> — native VDPBF16PS kernel (<see cref="NativeKernels.HasAvx512Bf16"/>; 6×64
/// register tile, each instruction adds two products per lane; the instruction treats bf16 denormals as zero and
/// flushes denormal results to zero); <c>fp32-fallback</c> — the activations rounded to bf16 into a float scratch
/// buffer and <see cref="Gemm.Sgemm(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int, bool)"/>
/// against <see cref="Bf16Weights.Values"/>, then the bias added. Steady-state calls allocate no managed memory.</para>
/// </remarks>
public static unsafe class Bf16Gemm
{
    /// <summary>Tests: calls on this thread run the native path with the library's emulated kernel (same packing and
    /// loops, the dot-product instruction replaced by AVX-512F arithmetic) when the CPU lacks AVX512_BF16.</summary>
    [ThreadStatic] internal static bool UseEmulatedNative;

    /// <summary>The path <see cref="Linear(ReadOnlySpan{float}, int, Bf16Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>
    /// would run: <c>avx512-bf16</c> or <c>fp32-fallback</c>.</summary>
    /// <exception cref="PlatformNotSupportedException"><see cref="LowPrecisionPath.Native"/> without the native bf16 kernel.</exception>
    public static string PathName(LowPrecisionPath path = LowPrecisionPath.Auto)
        => UseNative(path) ? (UseEmulatedNative && !NativeKernels.HasAvx512Bf16 ? "avx512-bf16 (emulated)" : "avx512-bf16") : "fp32-fallback";

    private static bool NativeAvailable => NativeKernels.HasAvx512Bf16 || (UseEmulatedNative && NativeKernels.HasBf16Emulation);

    private static bool UseNative(LowPrecisionPath path) => path switch
    {
        LowPrecisionPath.Managed => false,
        LowPrecisionPath.Native => NativeAvailable ? true
            : throw new PlatformNotSupportedException($"the native bf16 kernel is not available ({NativeKernels.Describe()})"),
        _ => NativeAvailable,
    };

    /// <summary><c>y = bf16(x) · bf16(W)ᵀ</c> without bias; see <see cref="Linear(ReadOnlySpan{float}, int, Bf16Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>.</summary>
    public static void Linear(ReadOnlySpan<float> x, int m, Bf16Weights w, Span<float> y, LowPrecisionPath path = LowPrecisionPath.Auto)
        => Linear(x, m, w, ReadOnlySpan<float>.Empty, y, path);

    /// <summary><c>y[m, out] = bf16(x) · bf16(W)ᵀ + bias</c> (products exact, fp32 accumulation).</summary>
    /// <param name="x">Activations [m, w.InFeatures] row-major (exactly m·in elements).</param>
    /// <param name="m">Number of rows (≥ 0).</param>
    /// <param name="w">bf16 weights.</param>
    /// <param name="bias">Empty for none, else w.OutFeatures values (fp32, added after the product).</param>
    /// <param name="y">Output [m, w.OutFeatures] row-major (exactly m·out elements); overwritten. It may not overlap x or bias.</param>
    /// <param name="path">Which implementation to use.</param>
    /// <exception cref="ArgumentException">A length does not match the shapes.</exception>
    /// <exception cref="PlatformNotSupportedException"><see cref="LowPrecisionPath.Native"/> without the native bf16 kernel.</exception>
    public static void Linear(ReadOnlySpan<float> x, int m, Bf16Weights w, ReadOnlySpan<float> bias, Span<float> y,
        LowPrecisionPath path = LowPrecisionPath.Auto)
        => Linear(x, m, w, bias, y, path, gelu: false, residual: default);

    /// <summary>As <see cref="Linear(ReadOnlySpan{float}, int, Bf16Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>,
    /// then GELU when <paramref name="gelu"/> (<see cref="F.LinearGelu"/>) and the <paramref name="residual"/> [m, out] when it
    /// is not empty (<see cref="F.LinearResidual"/>): on each block as it finishes in the native kernel's path, as one more
    /// pass in the fallback's.</summary>
    internal static void Linear(ReadOnlySpan<float> x, int m, Bf16Weights w, ReadOnlySpan<float> bias, Span<float> y,
        LowPrecisionPath path, bool gelu, ReadOnlySpan<float> residual)
    {
        ArgumentNullException.ThrowIfNull(w);
        LowPrecisionBuffers.ValidateLinear(x, m, w.InFeatures, bias, y, w.OutFeatures, residual);
        int k = w.InFeatures, n = w.OutFeatures;
        bool native = UseNative(path);
        if (m == 0) return;
        var buffers = LowPrecisionBuffers.Current;
        fixed (float* px = x)
        fixed (float* pb = bias)
        fixed (float* py = y)
        fixed (float* pr = residual)
        {
            var post = new GemmEpilogue(null, gelu, residual.Length == 0 ? null : pr);
            if (native)
            {
                int kp = w.Pairs * 2;
                ushort* a = (ushort*)buffers.Activations((long)m * kp * 2);
                var pack = new PackBf16Body { X = px, K = k, Kp = kp, A = a };
                Parallel2.For(m, Parallel2.Chunks(m, k), pack);
                int rowBlocks = (m + Int8Gemm.BlockRows - 1) / Int8Gemm.BlockRows, colBlocks = (n + Int8Gemm.BlockCols - 1) / Int8Gemm.BlockCols;
                var job = new GemmBody
                {
                    Kernel = NativeKernels.HasAvx512Bf16 ? NativeKernels.Bf16GemmNative : NativeKernels.Bf16GemmEmulated,
                    A = a, Kp = kp, M = m, N = n, Pairs = w.Pairs, B = w.Packed(), Y = py, Bias = bias.Length == 0 ? null : pb,
                    RowBlocks = rowBlocks, ColBlocks = colBlocks, ColumnMajor = m <= 256, Post = post,
                };
                int items = rowBlocks * colBlocks;
                if (items == 1 || ComputeThreads.IsSerialThread) for (int i = 0; i < items; i++) job.Run(i);
                else GemmWorkers.For(items, job);
            }
            else
            {
                float* a = (float*)buffers.Activations((long)m * k * 4);
                long total = (long)m * k;
                Parallel2.For(m, Parallel2.Chunks(m, k), new RoundRowsBody { X = px, A = a, K = k });
                Gemm.Sgemm(false, true, m, n, k, 1f, new ReadOnlySpan<float>(a, checked((int)total)), k, w.Values, k, 0f, y, n);
                if (bias.Length != 0)
                    for (int i = 0; i < m; i++) AddBias(py + (long)i * n, pb, n);
                Gemm.ApplyEpilogue(py, m, n, post);
            }
        }
        GC.KeepAlive(w);
    }

    /// <summary>dst[i] = bf16(src[i]) widened back to float (round to nearest even; NaN stays NaN, quiet).</summary>
    internal static void RoundToBf16(ReadOnlySpan<float> src, Span<float> dst)
    {
        fixed (float* s = src)
        fixed (float* d = dst)
            RoundToBf16(s, d, src.Length);
    }

    private static void RoundToBf16(float* s, float* d, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var one = Vector256<uint>.One; var bias = Vector256.Create(0x7FFFu); var hi = Vector256.Create(0xFFFF0000u);
            var quiet = Vector256.Create(0x00400000u);
            for (; i <= count - 8; i += 8)
            {
                var v = Vector256.Load(s + i);
                var bits = v.AsUInt32();
                var rounded = (bits + bias + ((bits >> 16) & one)) & hi;
                var nan = (bits | quiet) & hi;
                Vector256.ConditionalSelect(Vector256.Equals(v, v).AsUInt32(), rounded, nan).AsSingle().Store(d + i);
            }
        }
        for (; i < count; i++) d[i] = BFloat16.ToSingle(BFloat16.FromSingle(s[i]));
    }

    /// <summary>Bit patterns of bf16(src[i]) for i &lt; k, zeros up to kp.</summary>
    private static void PackRow(float* s, int k, ushort* d, int kp)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var one = Vector256<uint>.One; var bias = Vector256.Create(0x7FFFu); var quiet = Vector256.Create(0x00400000u);
            for (; i <= k - 16; i += 16)
            {
                var v0 = Vector256.Load(s + i); var v1 = Vector256.Load(s + i + 8);
                var b0 = v0.AsUInt32(); var b1 = v1.AsUInt32();
                var r0 = Vector256.ConditionalSelect(Vector256.Equals(v0, v0).AsUInt32(), b0 + bias + ((b0 >> 16) & one), b0 | quiet) >> 16;
                var r1 = Vector256.ConditionalSelect(Vector256.Equals(v1, v1).AsUInt32(), b1 + bias + ((b1 >> 16) & one), b1 | quiet) >> 16;
                Vector256.Narrow(r0, r1).Store(d + i);
            }
        }
        for (; i < k; i++) d[i] = BFloat16.FromSingle(s[i]);
        for (; i < kp; i++) d[i] = 0;
    }

    private static void AddBias(float* y, float* bias, int n)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; j <= n - 8; j += 8) (Vector256.Load(y + j) + Vector256.Load(bias + j)).Store(y + j);
        for (; j < n; j++) y[j] += bias[j];
    }

    private struct RoundRowsBody : Parallel2.IChunkBody
    {
        public float* X, A; public int K;

        public readonly void Run(int chunk, int start, int length)
            => RoundToBf16(X + (long)start * K, A + (long)start * K, (long)length * K);
    }

    private struct PackBf16Body : Parallel2.IChunkBody
    {
        public float* X; public int K, Kp; public ushort* A;

        public readonly void Run(int chunk, int start, int length)
        {
            for (int r = start; r < start + length; r++) PackRow(X + (long)r * K, K, A + (long)r * Kp, Kp);
        }
    }

    private struct GemmBody : GemmWorkers.IItemBody
    {
        public delegate* unmanaged<ushort*, nint, int, ushort*, int, int, float*, nint, void> Kernel;
        public bool ColumnMajor;
        public GemmEpilogue Post;
        public ushort* A, B; public int Kp, M, N, Pairs;
        public float* Y, Bias;
        public int RowBlocks, ColBlocks;

        public readonly void Run(int item)
        {
            int rb, cb;
            if (ColumnMajor) { cb = item / RowBlocks; rb = item % RowBlocks; }
            else { rb = item / ColBlocks; cb = item % ColBlocks; }
            int i0 = rb * Int8Gemm.BlockRows, mb = Math.Min(Int8Gemm.BlockRows, M - i0);
            int j0 = cb * Int8Gemm.BlockCols, nb = Math.Min(Int8Gemm.BlockCols, N - j0);
            float* c = Y + (long)i0 * N + j0;
            Kernel(A + (long)i0 * Kp, Kp, mb, B + (long)(j0 / 64) * Pairs * 128, nb, Pairs, c, N);
            if (Bias != null)
                for (int r = 0; r < mb; r++) AddBias(c + (long)r * N, Bias + j0, nb);
            Post.Apply(c, N, mb, nb, i0, j0);
        }
    }
}
