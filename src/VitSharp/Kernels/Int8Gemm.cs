using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// int8 Linear: <c>y[m, out] = dequant(quant_u8(x[m, in]) · q(W)ᵀ) + bias</c> with int32 accumulation.
/// </summary>
/// <remarks>
/// <para>Activations are quantized per row on the fly, asymmetric u8. For row i (all arithmetic in float):
/// <c>lo = min(0, min_k x)</c>, <c>hi = max(0, max_k x)</c>, <c>s = (hi − lo) / 255</c>,
/// <c>zp = clamp(round(−lo / s), 0, 255)</c>, <c>q[k] = clamp(round(x[k] / s) + zp, 0, 255)</c> (round half to even),
/// so that 0 is represented exactly. A row of zeros (s = 0) has zp = 0 and q = 0. A row that holds NaN or ±∞, or
/// whose range overflows float (hi − lo &gt; float.MaxValue), gets s = NaN: all its outputs are NaN (whatever the bias).</para>
/// <para>Weights: <see cref="Int8Weights"/> (symmetric s8 per output channel, scale <c>sw[j]</c>, sums <c>colsum[j]</c>).
/// Output: <c>acc = Σ_k q[k]·qw[j,k]</c> (exact, int32), <c>d = acc − zp·colsum[j]</c> (int32),
/// <c>y[i,j] = (float)d · (s · sw[j]) + bias[j]</c>, evaluated exactly so in float (no fused multiply-add; the bias is
/// not added when there is none). Every path computes the same int32 values and the same float epilogue, so all paths
/// give bit-identical y.</para>
/// <para>Paths: <c>vnni</c> — native AVX512_VNNI kernel (<see cref="NativeKernels"/>, 6×64 register tile of VPDPBUSD);
/// managed fallbacks <c>avx512bw</c> / <c>avx2</c> — u8 and s8 widened to int16 and multiplied with VPMADDWD (exact:
/// |255·127·2| &lt; 2³¹; VPMADDUBSW is not used since its int16 sums saturate), and <c>scalar</c>.
/// Work is split into blocks of rows × 128 output channels over <see cref="ComputeThreads"/> threads; activations are
/// quantized into per-thread unmanaged scratch, and int32 accumulators are written into y and converted in place,
/// so steady-state calls allocate no managed memory.</para>
/// </remarks>
public static unsafe class Int8Gemm
{
    /// <summary>The managed kernel variants, best first.</summary>
    internal enum ManagedIsa { Avx512BW, Avx2, Scalar }

    /// <summary>Tests: caps the managed variant used by calls on this thread (e.g. <see cref="ManagedIsa.Scalar"/> on an AVX-512 machine); null = best available.</summary>
    [ThreadStatic] internal static ManagedIsa? ManagedIsaCap;

    internal static ManagedIsa BestManagedIsa
    {
        get
        {
            ManagedIsa best = Avx512BW.IsSupported && Bmi2.X64.IsSupported ? ManagedIsa.Avx512BW
                : Avx2.IsSupported && Bmi2.X64.IsSupported ? ManagedIsa.Avx2 : ManagedIsa.Scalar;
            return ManagedIsaCap is { } cap && cap > best ? cap : best;
        }
    }

    /// <summary>Rows per work item (a multiple of the native kernel's 6-row tile).</summary>
    internal const int BlockRows = 48;

    /// <summary>Output channels per work item (a multiple of the 64-channel panel).</summary>
    internal const int BlockCols = 128;

    /// <summary>The path <see cref="Linear(ReadOnlySpan{float}, int, Int8Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>
    /// would run for <paramref name="path"/>: <c>vnni</c>, <c>avx512bw</c>, <c>avx2</c> or <c>scalar</c>.</summary>
    /// <exception cref="PlatformNotSupportedException"><see cref="LowPrecisionPath.Native"/> without the native VNNI kernel.</exception>
    public static string PathName(LowPrecisionPath path = LowPrecisionPath.Auto) => UseNative(path) ? "vnni" : BestManagedIsa switch
    {
        ManagedIsa.Avx512BW => "avx512bw",
        ManagedIsa.Avx2 => "avx2",
        _ => "scalar",
    };

    private static bool UseNative(LowPrecisionPath path) => path switch
    {
        LowPrecisionPath.Managed => false,
        LowPrecisionPath.Native => NativeKernels.HasVnni ? true
            : throw new PlatformNotSupportedException($"the native int8 kernel is not available ({NativeKernels.Describe()})"),
        _ => NativeKernels.HasVnni,
    };

    /// <summary><c>y = dequant(quant(x) · q(W)ᵀ)</c> without bias; see <see cref="Linear(ReadOnlySpan{float}, int, Int8Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>.</summary>
    public static void Linear(ReadOnlySpan<float> x, int m, Int8Weights w, Span<float> y, LowPrecisionPath path = LowPrecisionPath.Auto)
        => Linear(x, m, w, ReadOnlySpan<float>.Empty, y, path);

    /// <summary>
    /// <c>y[m, out] = dequant(quant_u8_per_row(x[m, in]) · q(W)ᵀ) + bias</c> (see the class remarks for the exact arithmetic).
    /// </summary>
    /// <param name="x">Activations [m, w.InFeatures] row-major (exactly m·in elements).</param>
    /// <param name="m">Number of rows (≥ 0).</param>
    /// <param name="w">Quantized weights.</param>
    /// <param name="bias">Empty for none, else w.OutFeatures values.</param>
    /// <param name="y">Output [m, w.OutFeatures] row-major (exactly m·out elements); overwritten. It may not overlap <paramref name="bias"/>.</param>
    /// <param name="path">Which implementation to use.</param>
    /// <exception cref="ArgumentException">A length does not match the shapes.</exception>
    /// <exception cref="PlatformNotSupportedException"><see cref="LowPrecisionPath.Native"/> without the native VNNI kernel.</exception>
    public static void Linear(ReadOnlySpan<float> x, int m, Int8Weights w, ReadOnlySpan<float> bias, Span<float> y,
        LowPrecisionPath path = LowPrecisionPath.Auto)
        => Linear(x, m, w, bias, y, path, gelu: false, residual: default);

    /// <summary>As <see cref="Linear(ReadOnlySpan{float}, int, Int8Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>,
    /// then on each block of y as it finishes GELU when <paramref name="gelu"/> (<see cref="F.LinearGelu"/>) and the
    /// <paramref name="residual"/> [m, out] when it is not empty (<see cref="F.LinearResidual"/>).</summary>
    internal static void Linear(ReadOnlySpan<float> x, int m, Int8Weights w, ReadOnlySpan<float> bias, Span<float> y,
        LowPrecisionPath path, bool gelu, ReadOnlySpan<float> residual)
    {
        ArgumentNullException.ThrowIfNull(w);
        LowPrecisionBuffers.ValidateLinear(x, m, w.InFeatures, bias, y, w.OutFeatures, residual);
        int k = w.InFeatures, n = w.OutFeatures;
        bool native = UseNative(path);
        if (m == 0) return;
        int kp = w.Groups * 4;
        var buffers = LowPrecisionBuffers.Current;
        byte* qa = (byte*)buffers.Activations((long)m * kp);
        buffers.Rows(m, out float* sx, out int* zp);
        fixed (float* px = x)
        fixed (float* pb = bias)
        fixed (float* py = y)
        fixed (float* pr = residual)
        fixed (float* sw = w.Scales)
        fixed (int* colSums = w.ColumnSums)
        {
            var quant = new QuantizeBody { X = px, K = k, Kp = kp, Q = qa, Scales = sx, ZeroPoints = zp };
            Parallel2.For(m, Parallel2.Chunks(m, k), quant);
            int rowBlocks = (m + BlockRows - 1) / BlockRows, colBlocks = (n + BlockCols - 1) / BlockCols;
            var job = new GemmBody
            {
                Native = native, Isa = BestManagedIsa, A = qa, Kp = kp, M = m, N = n, Groups = w.Groups, B = w.Packed,
                Y = py, Sx = sx, Zp = zp, Sw = sw, ColSums = colSums, Bias = bias.Length == 0 ? null : pb,
                RowBlocks = rowBlocks, ColBlocks = colBlocks, ColumnMajor = m <= 256, Post = new GemmEpilogue(null, gelu, residual.Length == 0 ? null : pr),
            };
            int items = rowBlocks * colBlocks;
            if (items == 1 || ComputeThreads.IsSerialThread) for (int i = 0; i < items; i++) job.Run(i);
            else GemmWorkers.For(items, job);
        }
        GC.KeepAlive(w);
    }

    /// <summary>Quantizes one row as described in the class remarks: writes q[0..kp) (zeros past k) and returns s and zp.</summary>
    internal static void QuantizeRow(float* x, int k, byte* q, int kp, out float scale, out int zeroPoint)
    {
        bool wide = Avx512F.IsSupported && k >= 16;
        float lo = 0f, hi = 0f;
        bool finite;
        int i = 0;
        if (wide)
        {
            var vlo = Vector512<float>.Zero; var vhi = Vector512<float>.Zero; var bad = Vector512<float>.Zero;
            for (; i <= k - 16; i += 16)
            {
                var v = Vector512.Load(x + i);
                vlo = Vector512.MinNative(vlo, v);
                vhi = Vector512.MaxNative(vhi, v);
                bad += v - v; // 0 for finite values, NaN once a NaN or ±∞ was seen
            }
            var lo8 = Vector256.MinNative(vlo.GetLower(), vlo.GetUpper());
            var hi8 = Vector256.MaxNative(vhi.GetLower(), vhi.GetUpper());
            for (int t = 0; t < 8; t++) { lo = Math.Min(lo, lo8[t]); hi = Math.Max(hi, hi8[t]); }
            finite = Vector512.EqualsAll(bad, Vector512<float>.Zero);
        }
        else if (Vector256.IsHardwareAccelerated && k >= 8)
        {
            var vlo = Vector256<float>.Zero; var vhi = Vector256<float>.Zero; var bad = Vector256<float>.Zero;
            for (; i <= k - 8; i += 8)
            {
                var v = Vector256.Load(x + i);
                vlo = Vector256.MinNative(vlo, v);
                vhi = Vector256.MaxNative(vhi, v);
                bad += v - v;
            }
            for (int t = 0; t < 8; t++) { lo = Math.Min(lo, vlo[t]); hi = Math.Max(hi, vhi[t]); }
            finite = Vector256.EqualsAll(bad, Vector256<float>.Zero);
        }
        else finite = true;
        for (; i < k; i++)
        {
            float v = x[i];
            finite &= float.IsFinite(v);
            lo = Math.Min(lo, v);
            hi = Math.Max(hi, v);
        }
        float s = (hi - lo) / 255f;
        if (!finite || !float.IsFinite(s) || s == 0f)
        {
            scale = finite && s == 0f ? 0f : float.NaN;
            zeroPoint = 0;
            new Span<byte>(q, kp).Clear();
            return;
        }
        int zpi = (int)Math.Clamp(MathF.Round(-lo / s), 0f, 255f);
        float z = zpi;
        i = 0;
        if (wide && s > DivisionFreeMin && s < DivisionFreeMax) i = QuantizeAvx512(x, k, q, s, zpi);
        else if (Vector256.IsHardwareAccelerated && k >= 32)
        {
            var vs = Vector256.Create(s); var vz = Vector256.Create(z);
            var v0 = Vector256<float>.Zero; var v255 = Vector256.Create(255f);
            for (; i <= k - 32; i += 32)
            {
                var a = Vector256.ConvertToInt32(Vector256.MinNative(Vector256.MaxNative(Vector256.Round(Vector256.Load(x + i) / vs) + vz, v0), v255));
                var b = Vector256.ConvertToInt32(Vector256.MinNative(Vector256.MaxNative(Vector256.Round(Vector256.Load(x + i + 8) / vs) + vz, v0), v255));
                var c = Vector256.ConvertToInt32(Vector256.MinNative(Vector256.MaxNative(Vector256.Round(Vector256.Load(x + i + 16) / vs) + vz, v0), v255));
                var d = Vector256.ConvertToInt32(Vector256.MinNative(Vector256.MaxNative(Vector256.Round(Vector256.Load(x + i + 24) / vs) + vz, v0), v255));
                var ab = Vector256.Narrow(a.AsUInt32(), b.AsUInt32());
                var cd = Vector256.Narrow(c.AsUInt32(), d.AsUInt32());
                Vector256.Narrow(ab, cd).Store(q + i);
            }
        }
        for (; i < k; i++) q[i] = (byte)Math.Clamp(MathF.Round(x[i] / s) + z, 0f, 255f);
        for (; i < kp; i++) q[i] = 0;
        scale = s;
        zeroPoint = zpi;
    }

    /// <summary>The scales for which <see cref="QuantizeAvx512"/> runs: 1/s and the remainders stay normal floats.</summary>
    internal const float DivisionFreeMin = 1e-30f, DivisionFreeMax = 1e30f;

    /// <summary>
    /// q[i] = clamp(round(x[i]/s) + zp, 0, 255) for the whole 16-lane blocks of x; returns how many elements it wrote.
    /// Without a division: t = x·r with r = RN(1/s), the remainder e = x − t·s (exact by FMA), then t + e·r rounded once
    /// is the correctly rounded x/s (Markstein's correction step, as in IA-64's division), so q is bit for bit what the
    /// division gives. Rounding to an integer by VCVTPS2DQ in the default mode (nearest, ties to even) = MathF.Round.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int QuantizeAvx512(float* x, int k, byte* q, float s, int zp)
    {
        var vs = Vector512.Create(s); var vr = Vector512.Create(1f / s); var vz = Vector512.Create(zp);
        var v0 = Vector512<int>.Zero; var v255 = Vector512.Create(255);
        int i = 0;
        for (; i <= k - 16; i += 16)
        {
            var v = Vector512.Load(x + i);
            var t = v * vr;
            t = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(-t, vs, v), vr, t);
            var n = Vector512.Min(Vector512.Max(Avx512F.ConvertToVector512Int32(t) + vz, v0), v255);
            Avx512F.ConvertToVector128Byte(n).Store(q + i);
        }
        return i;
    }

    private struct QuantizeBody : Parallel2.IChunkBody
    {
        public float* X; public int K, Kp; public byte* Q; public float* Scales; public int* ZeroPoints;

        public readonly void Run(int chunk, int start, int length)
        {
            for (int r = start; r < start + length; r++)
                QuantizeRow(X + (long)r * K, K, Q + (long)r * Kp, Kp, out Scales[r], out ZeroPoints[r]);
        }
    }

    private struct GemmBody : GemmWorkers.IItemBody
    {
        public bool Native, ColumnMajor;
        public GemmEpilogue Post;
        public ManagedIsa Isa;
        public byte* A; public int Kp, M, N, Groups; public sbyte* B;
        public float* Y, Sx, Sw, Bias; public int* Zp, ColSums;
        public int RowBlocks, ColBlocks;

        public readonly void Run(int item)
        {
            int rb, cb;
            if (ColumnMajor) { cb = item / RowBlocks; rb = item % RowBlocks; }
            else { rb = item / ColBlocks; cb = item % ColBlocks; }
            int i0 = rb * BlockRows, mb = Math.Min(BlockRows, M - i0);
            int j0 = cb * BlockCols, nb = Math.Min(BlockCols, N - j0);
            byte* a = A + (long)i0 * Kp;
            sbyte* b = B + (long)(j0 / 64) * Groups * 256;
            int* c = (int*)(Y + (long)i0 * N + j0);
            if (Native) NativeKernels.U8S8GemmVnni(a, Kp, mb, b, nb, Groups, c, N);
            else Int8ManagedKernels.Gemm(Isa, a, Kp, mb, b, nb, Groups, c, N);
            Epilogue(c, N, mb, nb, Sx + i0, Zp + i0, Sw + j0, ColSums + j0, Bias == null ? null : Bias + j0);
            Post.Apply((float*)c, N, mb, nb, i0, j0);
        }
    }

    /// <summary>In place: the int32 accumulators c[r, j] become y = (float)(acc − zp[r]·colsum[j]) · (sx[r]·sw[j]) (+ bias[j]).</summary>
    internal static void Epilogue(int* c, int ldc, int rows, int cols, float* sx, int* zp, float* sw, int* colSums, float* bias)
    {
        for (int r = 0; r < rows; r++)
        {
            int* cr = c + (long)r * ldc;
            float* yr = (float*)cr;
            float s = sx[r];
            int z = zp[r];
            int j = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var vs = Vector256.Create(s); var vz = Vector256.Create(z);
                for (; j <= cols - 8; j += 8)
                {
                    var d = Vector256.Load(cr + j) - vz * Vector256.Load(colSums + j);
                    var v = Vector256.ConvertToSingle(d) * (vs * Vector256.Load(sw + j));
                    if (bias != null) v += Vector256.Load(bias + j);
                    v.Store(yr + j);
                }
            }
            for (; j < cols; j++)
            {
                float v = (float)(cr[j] - z * colSums[j]) * (s * sw[j]);
                if (bias != null) v += bias[j];
                yr[j] = v;
            }
        }
    }
}
