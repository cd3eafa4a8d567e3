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
