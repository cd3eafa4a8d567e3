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

    /// <summary>
    /// Forward-pass flops of a <see cref="DistilledVisionTransformer"/> (timm's layout): the patch convolution as a Linear
    /// (c·p² → C per patch), per block over N + 2 tokens qkv (C → 3C), QKᵀ and A·V, proj (C → C) and the MLP's two Linears
    /// (C ↔ int(C·mlp_ratio)), then both heads on one token each.
    /// </summary>
    public static long DeiTForwardFlops(DeiTConfig config, int batch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        long b = batch, patches = config.NumPatches, tokens = config.NumTokens, c = config.EmbedDim, hidden = config.MlpHidden;
        long patchDim = (long)config.InChans * config.PatchSize * config.PatchSize;
        long total = 2 * b * patches * patchDim * c;                          // patch_embed.proj
        long perBlock = 2 * b * tokens * c * (3 * c)                          // attn.qkv
                      + b * 2 * (2 * tokens * tokens * c)                     // QKᵀ and A·V over all heads (H·D = C)
                      + 2 * b * tokens * c * c                                // attn.proj
                      + 2 * b * tokens * c * hidden * 2;                      // mlp.fc1, mlp.fc2
        total += config.Depth * perBlock;
        if (config.NumClasses > 0) total += 2 * (2 * b * c * config.NumClasses);   // head and head_dist
        return total;
    }

    /// <summary>Flops of one training step of a <see cref="DistilledVisionTransformer"/> by the 3×-forward convention.</summary>
    public static long DeiTTrainStepFlops(DeiTConfig config, int batch) => 3 * DeiTForwardFlops(config, batch);

    /// <summary>
    /// Forward-pass flops of a <see cref="SwinTransformer"/> on <paramref name="height"/> × <paramref name="width"/> images,
    /// as torchvision computes it: the patch convolution as a Linear (c·ph·pw → C per patch); per block, over the map padded
    /// to whole windows, qkv (C → 3C), QKᵀ and A·V within each window (N = wh·ww tokens), proj (C → C), and the MLP
    /// (C ↔ int(C·mlp_ratio)) over the unpadded map; each patch merging's reduction (4C → 2C) over the halved map; the head.
    /// </summary>
    public static long SwinForwardFlops(SwinTransformerConfig config, int batch, int height, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        long b = batch;
        int h = height / config.PatchSize[0], w = width / config.PatchSize[1], wh = config.WindowSize[0], ww = config.WindowSize[1];
        long c = config.EmbedDim;
        long total = 2 * b * h * w * ((long)config.InChans * config.PatchSize[0] * config.PatchSize[1]) * c;
        for (int i = 0; i < config.Stages; i++)
        {
            c = config.StageDim(i);
            long hidden = (long)(c * (double)config.MlpRatio);
            long padded = (long)((h + wh - 1) / wh * wh) * ((w + ww - 1) / ww * ww), n = (long)wh * ww;
            long perBlock = 2 * b * padded * c * (3 * c)                      // qkv
                          + b * (padded / n) * 2 * (2 * n * n * c)            // QKᵀ and A·V over all heads (H·D = C)
                          + 2 * b * padded * c * c                            // proj
                          + 2 * b * h * w * c * hidden * 2;                   // mlp.0, mlp.3
            total += config.Depths[i] * perBlock;
            if (i == config.Stages - 1) break;
            h = (h + 1) / 2; w = (w + 1) / 2;
            total += 2 * b * h * w * (4 * c) * (2 * c);                       // reduction
        }
        return total + 2 * b * c * config.NumClasses;                         // head
    }
}
