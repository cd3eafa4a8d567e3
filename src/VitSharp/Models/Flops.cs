namespace VitSharp.Models;

/// <summary>
/// Analytic floating-point operation counts, for reporting GFLOP/s in benchmarks.
/// Convention: a multiply-add counts as 2 flops; only the matrix products are counted (every Linear,
/// including the patch embedding and the head, as 2·m·n·k; attention as 2·(2·N²·D) per head per layer for
/// QKᵀ and the weighted sum of V). LayerNorm, softmax, GELU, biases and residual adds are left out
/// (a few percent at most). A training step counts as 3× the forward pass (backward ≈ 2× forward);
/// the optimizer step is not counted.
/// </summary>
public static class Flops
{
    /// <summary>Forward-pass flops of a <see cref="ViT"/> with <paramref name="config"/> for a batch of <paramref name="batch"/> images.</summary>
    public static long ViTForwardFlops(ViTConfig config, int batch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        long b = batch;
        long patches = config.NumPatches;
        long tokens = patches + (config.Pool == "cls" ? 1 : 0);
        long dim = config.Dim, heads = config.Heads, dimHead = config.DimHead, inner = heads * dimHead;
        long patchDim = (long)config.Channels * config.PatchHeight * config.PatchWidth;

        long total = 2 * b * patches * patchDim * dim;                        // patch embedding Linear
        long perLayer = 2 * b * tokens * dim * (3 * inner)                    // to_qkv
                      + b * heads * 2 * (2 * tokens * tokens * dimHead)       // QKᵀ and A·V
                      + 2 * b * tokens * dim * config.MlpDim * 2;             // feed-forward, two Linears
        if (!(heads == 1 && dimHead == dim)) perLayer += 2 * b * tokens * inner * dim;   // to_out (Identity otherwise)
        total += config.Depth * perLayer;
        if (config.NumClasses > 0) total += 2 * b * dim * config.NumClasses;  // mlp_head
        return total;
    }

    /// <summary>Flops of one training step (forward + backward) by the 3×-forward convention.</summary>
    public static long ViTTrainStepFlops(ViTConfig config, int batch) => 3 * ViTForwardFlops(config, batch);
}
