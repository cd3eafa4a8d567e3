using System.Runtime.InteropServices;

namespace VitSharp.Kernels;

/// <summary>Per-thread unmanaged scratch for the low-precision kernels (quantized or rounded activations, per-row
/// scales and zero points): grown on demand, kept for the thread's lifetime, so a steady-state call allocates nothing.</summary>
internal sealed unsafe class LowPrecisionBuffers
{
    [ThreadStatic] private static LowPrecisionBuffers? t_current;

    private void* _activations;
    private nuint _activationBytes;
    private float* _scales;
    private int* _zeroPoints;
    private nuint _rows;

    /// <summary>The argument checks <see cref="Int8Gemm"/> and <see cref="Bf16Gemm"/>'s Linear share: x [m, k], y [m, n],
    /// bias empty or [n], residual empty or [m, n].</summary>
    public static void ValidateLinear(ReadOnlySpan<float> x, int m, int k, ReadOnlySpan<float> bias, Span<float> y, int n,
        ReadOnlySpan<float> residual = default)
    {
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), $"m must be ≥ 0, got {m}");
        if (x.Length != (long)m * k)
            throw new ArgumentException($"x has {x.Length} elements, expected m·in = {m}·{k} = {(long)m * k}", nameof(x));
        if (y.Length != (long)m * n)
            throw new ArgumentException($"y has {y.Length} elements, expected m·out = {m}·{n} = {(long)m * n}", nameof(y));
        if (bias.Length != 0 && bias.Length != n)
            throw new ArgumentException($"bias has {bias.Length} elements, expected 0 (none) or out = {n}", nameof(bias));
        if (residual.Length != 0 && residual.Length != (long)m * n)
            throw new ArgumentException($"residual has {residual.Length} elements, expected 0 (none) or m·out = {m}·{n} = {(long)m * n}", nameof(residual));
    }

    /// <summary>This thread's buffers.</summary>
    public static LowPrecisionBuffers Current => t_current ??= new LowPrecisionBuffers();

    /// <summary>A 64-byte aligned block of at least <paramref name="bytes"/> bytes (+64 bytes of slack).</summary>
    public void* Activations(long bytes)
    {
        nuint need = (nuint)bytes + 64;
        if (_activationBytes < need)
        {
            NativeMemory.AlignedFree(_activations);
            _activations = NativeMemory.AlignedAlloc(need, 64);
            _activationBytes = need;
        }
        return _activations;
    }

    /// <summary>Per-row scale and zero-point arrays of at least <paramref name="rows"/> entries.</summary>
    public void Rows(int rows, out float* scales, out int* zeroPoints)
    {
        if (_rows < (nuint)rows)
        {
            NativeMemory.Free(_scales);
            NativeMemory.Free(_zeroPoints);
            _scales = (float*)NativeMemory.Alloc((nuint)rows, sizeof(float));
            _zeroPoints = (int*)NativeMemory.Alloc((nuint)rows, sizeof(int));
            _rows = (nuint)rows;
        }
        scales = _scales;
        zeroPoints = _zeroPoints;
    }

    ~LowPrecisionBuffers()
    {
        NativeMemory.AlignedFree(_activations);
        NativeMemory.Free(_scales);
        NativeMemory.Free(_zeroPoints);
    }
}
