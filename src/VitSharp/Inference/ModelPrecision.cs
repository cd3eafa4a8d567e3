using VitSharp.Kernels;
using VitSharp.NN;

namespace VitSharp.Inference;

/// <summary>
/// Runs a model's Linear layers in bfloat16 or int8 for inference (<c>--precision</c>): <see cref="UsePrecision"/>
/// converts every Linear weight once (and a <see cref="MultiheadAttention"/>'s packed input projection); LayerNorm,
/// softmax, GELU, attention's own products, convolutions and everything else stay float32.
/// </summary>
/// <remarks>
/// <para>The converted weights are attached to the weight tensors, so every forward pass that multiplies by them
/// (<see cref="F.Linear"/>) uses the low-precision kernel: <see cref="Bf16Gemm"/> (weights and activations rounded
/// to bfloat16, float32 accumulation) or <see cref="Int8Gemm"/> (weights quantized per output channel, activations per
/// row on the fly, int32 accumulation).</para>
/// <para>Inference only: a forward pass that records gradients through a converted layer throws
/// <see cref="InvalidOperationException"/> (call <c>UsePrecision(InferencePrecision.Float32)</c> before training).
/// <see cref="Module.LoadStateDict"/> converts the new weights again; weights changed in place by other means need
/// another <see cref="UsePrecision"/> call.</para>
/// </remarks>
public static class ModelPrecision
{
    /// <summary>
    /// Converts every Linear layer of <paramref name="model"/> to <paramref name="precision"/> (Float32 undoes it).
    /// Returns how many weight matrices were converted (or restored).
    /// </summary>
    /// <param name="model">The model; its weights are kept in float32 as well (state dicts and export are unchanged).</param>
    /// <param name="precision">The number format.</param>
    /// <param name="path">Which kernel implementation: <see cref="LowPrecisionPath.Auto"/> (the native one where the CPU has it),
    /// <see cref="LowPrecisionPath.Managed"/> (the portable fallback) or <see cref="LowPrecisionPath.Native"/>.</param>
    public static int UsePrecision(this Module model, InferencePrecision precision, LowPrecisionPath path = LowPrecisionPath.Auto)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!Enum.IsDefined(precision)) throw new ArgumentOutOfRangeException(nameof(precision), precision, "unknown precision");
        int count = 0;
        foreach (var w in LinearWeights(model))
        {
            w.Packed = precision == InferencePrecision.Float32 ? null : PackedLinearWeights.Pack(w, precision, path);
            count++;
        }
        return count;
    }

    /// <summary>The precision <see cref="UsePrecision"/> set on <paramref name="model"/> (Float32 when none, or when it has no Linear layer).</summary>
    public static InferencePrecision GetPrecision(this Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        foreach (var w in LinearWeights(model))
            if (w.Packed is { } p) return p.Precision;
        return InferencePrecision.Float32;
    }

    /// <summary>The weight matrices that <see cref="F.Linear"/> multiplies by: every <see cref="Linear"/>'s weight and every
    /// <see cref="MultiheadAttention"/>'s input projection, each once.</summary>
    internal static IEnumerable<Tensor> LinearWeights(Module model)
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (_, m) in model.NamedModules())
        {
            var w = m switch { Linear l => l.Weight, MultiheadAttention a => a.InProjWeight, _ => null };
            if (w is not null && w.Rank == 2 && seen.Add(w)) yield return w;
        }
    }
}

/// <summary>A Linear weight converted for low-precision inference, attached to the weight tensor (<see cref="Tensor.Packed"/>).</summary>
internal sealed class PackedLinearWeights
{
    private PackedLinearWeights(InferencePrecision precision, LowPrecisionPath path, Int8Weights? int8, Bf16Weights? bf16)
    {
        Precision = precision; Path = path; Int8 = int8; Bf16 = bf16;
    }

    public InferencePrecision Precision { get; }
    public LowPrecisionPath Path { get; }
    public Int8Weights? Int8 { get; }
    public Bf16Weights? Bf16 { get; }

    public static PackedLinearWeights Pack(Tensor weight, InferencePrecision precision, LowPrecisionPath path)
    {
        int outF = weight.Dim(0), inF = weight.Dim(1);
        return precision switch
        {
            InferencePrecision.Int8 => new(precision, path, Int8Weights.Quantize(weight.Data, outF, inF), null),
            InferencePrecision.BFloat16 => new(precision, path, null, Bf16Weights.Convert(weight.Data, outF, inF)),
            _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "not a low precision"),
        };
    }

    /// <summary>y[rows, out] = x[rows, in]·Wᵀ (+ bias) in this precision, then GELU when <paramref name="gelu"/>, plus <paramref name="residual"/> when it is not empty.</summary>
    public void Linear(ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> bias, Span<float> y, bool gelu = false,
        ReadOnlySpan<float> residual = default)
    {
        if (Int8 is not null) Int8Gemm.Linear(x, rows, Int8, bias, y, Path, gelu, residual);
        else Bf16Gemm.Linear(x, rows, Bf16!, bias, y, Path, gelu, residual);
    }
}
