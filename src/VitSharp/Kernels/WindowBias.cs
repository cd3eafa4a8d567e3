using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// The additive terms of Swin's window attention scores. Shapes: G = B·W groups (W windows per image, window-major
/// inside each image), H heads, P = N·N scores per head (N tokens per window); table [T, H] (one row per relative
/// offset), index [P] (entries in [0, T)), bias [H, P], mask [W, P] (0 or −100), scores and out [G, H, P].
/// </summary>
public static class WindowBiasKernel
{
    /// <summary>Relative position bias: bias[h, p] = table[index[p], h].</summary>
    public static void GatherForward(ReadOnlySpan<float> table, ReadOnlySpan<int> index, int heads, Span<float> bias)
    {
        int p = index.Length;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < p; i++) bias[h * p + i] = table[index[i] * heads + h];
    }

    /// <summary>dTable[index[p], h] += dBias[h, p].</summary>
    public static void GatherBackward(ReadOnlySpan<float> dBias, ReadOnlySpan<int> index, int heads, Span<float> dTable)
    {
        int p = index.Length;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < p; i++) dTable[index[i] * heads + h] += dBias[h * p + i];
    }

    /// <summary>out[g, h, :] = scores[g, h, :] + bias[h, :] (+ mask[g mod W, :] when a mask is given).</summary>
    public static void AddForward(ReadOnlySpan<float> scores, ReadOnlySpan<float> bias, ReadOnlySpan<float> mask, int groups, int windows,
        int heads, int p, Span<float> output)
    {
        for (int g = 0; g < groups; g++)
            for (int h = 0; h < heads; h++)
            {
                int o = (g * heads + h) * p;
                var dst = output.Slice(o, p);
                TensorPrimitives.Add(scores.Slice(o, p), bias.Slice(h * p, p), dst);
                if (!mask.IsEmpty) TensorPrimitives.Add(dst, mask.Slice(g % windows * p, p), dst);
            }
    }

    /// <summary>dScores += dOut (when given); dBias[h, :] += Σ_g dOut[g, h, :] (when given).</summary>
    public static void AddBackward(ReadOnlySpan<float> dOut, int groups, int heads, int p, Span<float> dScores, Span<float> dBias)
    {
        if (!dScores.IsEmpty) TensorPrimitives.Add(dScores[..dOut.Length], dOut, dScores);
        if (dBias.IsEmpty) return;
        for (int g = 0; g < groups; g++)
            for (int h = 0; h < heads; h++)
            {
                var dst = dBias.Slice(h * p, p);
                TensorPrimitives.Add(dst, dOut.Slice((g * heads + h) * p, p), dst);
            }
    }
}
