using System.Runtime.InteropServices;
using VitSharp.IO;

namespace VitSharp.Kernels;

/// <summary>
/// The weight of a Linear layer converted once to bfloat16 for <see cref="Bf16Gemm"/> (round to nearest even, NaN
/// stays NaN, ±∞ kept, values past the largest finite bf16 become ±∞: <see cref="BFloat16.FromSingle(float)"/>).
/// </summary>
/// <remarks>
/// Kept as the bf16 values widened to float ([out, in] row-major, for the fp32 fallback) and, where the native
/// AVX512_BF16 kernel can run, packed as bf16 bit patterns: panels of 64 output channels, in each for every pair of
/// consecutive k the 64 channels' 2 values: element <c>p·P·128 + g·128 + (j mod 64)·2 + (k mod 2)</c> with
/// <c>P = ⌈in/2⌉</c>, zero padding. The packed copy is unmanaged, made on first native use, freed by the finalizer.
/// </remarks>
public sealed unsafe class Bf16Weights
{
    private readonly float[] _rounded;
    private nint _packed; // ushort*, 0 until first native use
    private readonly object _packLock = new();

    /// <summary>Number of output channels (rows of the weight).</summary>
    public int OutFeatures { get; }

    /// <summary>Number of input features (columns of the weight).</summary>
    public int InFeatures { get; }

    /// <summary>The bf16 weights widened to float, [out, in] row-major.</summary>
    public ReadOnlySpan<float> Values => _rounded;

    /// <summary>Pairs along k (⌈in/2⌉).</summary>
    internal int Pairs => (InFeatures + 1) / 2;

    internal int Panels => (OutFeatures + 63) / 64;

    internal long PackedElements => (long)Panels * Pairs * 128;

    private Bf16Weights(float[] rounded, int outFeatures, int inFeatures)
    {
        _rounded = rounded;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
    }

    /// <summary>Frees the packed copy.</summary>
    ~Bf16Weights()
    {
        if (_packed != 0)
        {
            NativeMemory.AlignedFree((void*)_packed);
            GC.RemoveMemoryPressure(PackedElements * 2);
        }
    }

    /// <summary>Converts a weight stored [outFeatures, inFeatures] row-major (as torch's <c>Linear.weight</c>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is &lt; 1.</exception>
    /// <exception cref="ArgumentException">The weight's length is not outFeatures·inFeatures.</exception>
    public static Bf16Weights Convert(ReadOnlySpan<float> weight, int outFeatures, int inFeatures)
    {
        if (outFeatures < 1) throw new ArgumentOutOfRangeException(nameof(outFeatures), $"outFeatures must be ≥ 1, got {outFeatures}");
        if (inFeatures < 1) throw new ArgumentOutOfRangeException(nameof(inFeatures), $"inFeatures must be ≥ 1, got {inFeatures}");
        if (weight.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"weight has {weight.Length} elements, expected outFeatures·inFeatures = {outFeatures}·{inFeatures} = {(long)outFeatures * inFeatures}", nameof(weight));
        var rounded = new float[weight.Length];
        Bf16Gemm.RoundToBf16(weight, rounded);
        return new Bf16Weights(rounded, outFeatures, inFeatures);
    }

    /// <summary>The packed bf16 copy for the native kernel (made once, thread-safe).</summary>
    internal ushort* Packed()
    {
        if (Volatile.Read(ref _packed) is var p && p != 0) return (ushort*)p;
        lock (_packLock)
        {
            if (_packed != 0) return (ushort*)_packed;
            long count = PackedElements;
            var packed = (ushort*)NativeMemory.AlignedAlloc((nuint)Math.Max(64, count * 2), 64);
            NativeMemory.Clear(packed, (nuint)(count * 2));
            int k = InFeatures;
            for (int j = 0; j < OutFeatures; j++)
            {
                long p0 = (long)(j >> 6) * Pairs * 128 + (j & 63) * 2;
                for (int t = 0; t < k; t++)
                    packed[p0 + (t >> 1) * 128L + (t & 1)] = (ushort)(BitConverter.SingleToUInt32Bits(_rounded[(long)j * k + t]) >> 16);
            }
            GC.AddMemoryPressure(count * 2);
            Volatile.Write(ref _packed, (nint)packed);
            return packed;
        }
    }
}
