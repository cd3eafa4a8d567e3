using System.Runtime.InteropServices;

namespace VitSharp.Kernels;

/// <summary>
/// The weight of a Linear layer quantized once for <see cref="Int8Gemm"/>: per output channel j, symmetric int8 with
/// <c>scale[j] = max_k |w[j,k]| / 127</c> (float division) and <c>q[j,k] = clamp(round(w[j,k] / scale[j]), −127, 127)</c>
/// (round half to even); an all-zero row (or one whose scale underflows to 0) has scale 0 and all q = 0. Also holds
/// <c>colsum[j] = Σ_k q[j,k]</c> for the activations' zero-point correction, and q packed for the kernels.
/// </summary>
/// <remarks>
/// Packed layout (shared by the native VNNI kernel and the managed fallback): panels of 64 output channels; in each,
/// for every group of 4 consecutive k, the 64 channels' 4 bytes: byte <c>p·G·256 + g·256 + (j mod 64)·4 + (k mod 4)</c>
/// with <c>G = ⌈in/4⌉</c>; padding (channels past <see cref="OutFeatures"/>, k past <see cref="InFeatures"/>) is zero.
/// The storage is unmanaged and 64-byte aligned; it is freed by the finalizer.
/// </remarks>
public sealed unsafe class Int8Weights
{
    /// <summary>Largest supported <see cref="InFeatures"/>: int32 accumulation of k products of |u8·s8| ≤ 255·127 cannot overflow below this.</summary>
    public const int MaxInFeatures = 65536;

    private readonly float[] _scales;
    private readonly int[] _colSums;
    private readonly sbyte* _packed;

    /// <summary>Number of output channels (rows of the weight).</summary>
    public int OutFeatures { get; }

    /// <summary>Number of input features (columns of the weight).</summary>
    public int InFeatures { get; }

    /// <summary>Per-output-channel scales (length <see cref="OutFeatures"/>).</summary>
    public ReadOnlySpan<float> Scales => _scales;

    /// <summary>Per-output-channel sums of the quantized weights, Σ_k q[j,k] (length <see cref="OutFeatures"/>).</summary>
    public ReadOnlySpan<int> ColumnSums => _colSums;

    /// <summary>Groups of 4 along k (⌈in/4⌉).</summary>
    internal int Groups { get; }

    /// <summary>Panels of 64 output channels (⌈out/64⌉).</summary>
    internal int Panels { get; }

    internal sbyte* Packed => _packed;

    internal long PackedBytes => (long)Panels * Groups * 256;

    /// <summary>The quantized weight q[j, k] read back from the packed storage.</summary>
    public sbyte this[int outIndex, int inIndex]
    {
        get
        {
            if ((uint)outIndex >= (uint)OutFeatures) throw new ArgumentOutOfRangeException(nameof(outIndex));
            if ((uint)inIndex >= (uint)InFeatures) throw new ArgumentOutOfRangeException(nameof(inIndex));
            return _packed[Offset(outIndex, inIndex)];
        }
    }

    private long Offset(int j, int k) => (long)(j >> 6) * Groups * 256 + (k >> 2) * 256L + (j & 63) * 4 + (k & 3);

    private Int8Weights(int outFeatures, int inFeatures)
    {
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        Groups = (inFeatures + 3) / 4;
        Panels = (outFeatures + 63) / 64;
        _scales = new float[outFeatures];
        _colSums = new int[outFeatures];
        nuint bytes = (nuint)Math.Max(64, PackedBytes);
        _packed = (sbyte*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(_packed, bytes);
        GC.AddMemoryPressure((long)bytes);
    }

    /// <summary>Frees the packed storage.</summary>
    ~Int8Weights()
    {
        NativeMemory.AlignedFree(_packed);
        GC.RemoveMemoryPressure(Math.Max(64, PackedBytes));
    }

    /// <summary>
    /// Quantizes a weight stored [outFeatures, inFeatures] row-major (as torch's <c>Linear.weight</c>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is &lt; 1, or inFeatures &gt; <see cref="MaxInFeatures"/>.</exception>
    /// <exception cref="ArgumentException">The weight's length is not outFeatures·inFeatures, or it holds NaN or ±∞.</exception>
    public static Int8Weights Quantize(ReadOnlySpan<float> weight, int outFeatures, int inFeatures)
    {
        if (outFeatures < 1) throw new ArgumentOutOfRangeException(nameof(outFeatures), $"outFeatures must be ≥ 1, got {outFeatures}");
        if (inFeatures < 1) throw new ArgumentOutOfRangeException(nameof(inFeatures), $"inFeatures must be ≥ 1, got {inFeatures}");
        if (inFeatures > MaxInFeatures)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), $"inFeatures must be ≤ {MaxInFeatures} (int32 accumulation), got {inFeatures}");
        if (weight.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"weight has {weight.Length} elements, expected outFeatures·inFeatures = {outFeatures}·{inFeatures} = {(long)outFeatures * inFeatures}", nameof(weight));
        var w = new Int8Weights(outFeatures, inFeatures);
        for (int j = 0; j < outFeatures; j++)
        {
            var row = weight.Slice(j * inFeatures, inFeatures);
            float maxAbs = 0f;
            for (int k = 0; k < row.Length; k++)
            {
                float v = row[k];
                if (!float.IsFinite(v))
                    throw new ArgumentException($"weight[{j}, {k}] is {v}: int8 quantization needs finite weights", nameof(weight));
                maxAbs = Math.Max(maxAbs, Math.Abs(v));
            }
            float scale = maxAbs / 127f;
            w._scales[j] = scale;
            int sum = 0;
            if (scale != 0f)
            {
                long p0 = (long)(j >> 6) * w.Groups * 256 + (j & 63) * 4;
                for (int k = 0; k < row.Length; k++)
                {
                    int q = (int)Math.Clamp(MathF.Round(row[k] / scale, MidpointRounding.ToEven), -127f, 127f);
                    w._packed[p0 + (k >> 2) * 256L + (k & 3)] = (sbyte)q;
                    sum += q;
                }
            }
            w._colSums[j] = sum;
        }
        return w;
    }
}
