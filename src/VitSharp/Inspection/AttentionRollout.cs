namespace VitSharp.Inspection;

/// <summary>
/// Attention rollout (Abnar &amp; Zuidema, "Quantifying Attention Flow in Transformers", 2020): how much each input token
/// contributes to each output token through all layers. Per layer the heads are averaged, the identity is added for the
/// residual connection and the rows are renormalised to sum to 1: Â_l = norm(mean_h A_l + I); the rollout is the product
/// R = Â_L · … · Â_1. The row of the class token over the patch columns, reshaped to the patch grid, is the usual heat map.
/// </summary>
public static class AttentionRollout
{
    /// <summary>
    /// The rollout R [B, N, N] of attention maps [B, L, H, N, N] (as <see cref="Recorder"/> returns them). Row i of R holds
    /// the share of each input token in output token i; every row sums to 1.
    /// </summary>
    /// <exception cref="ArgumentException">The maps are not [B, L, H, N, N].</exception>
    public static Tensor Rollout(Tensor attentions)
    {
        if (attentions.Rank != 5 || attentions.Dim(3) != attentions.Dim(4))
            throw new ArgumentException($"attention rollout expects maps [B, layers, heads, N, N], got {Tensor.ShapeString(attentions.Shape)}");
        int b = attentions.Dim(0), layers = attentions.Dim(1), heads = attentions.Dim(2), n = attentions.Dim(3);
        if (heads < 1) throw new ArgumentException("attention rollout needs at least one head");
        var result = new Tensor(b, n, n);
        var a = attentions.Data;
        var rollout = new double[n * n];
        var layer = new double[n * n];
        var product = new double[n * n];
        for (int bi = 0; bi < b; bi++)
        {
            Array.Clear(rollout);
            for (int i = 0; i < n; i++) rollout[i * n + i] = 1;          // zero layers: the identity
            for (int l = 0; l < layers; l++)
            {
                Array.Clear(layer);
                long baseOffset = ((long)bi * layers + l) * heads * n * n;
                for (int h = 0; h < heads; h++)
                    for (int k = 0; k < n * n; k++) layer[k] += a[baseOffset + (long)h * n * n + k];
                for (int i = 0; i < n; i++)
                {
                    double sum = 0;
                    for (int j = 0; j < n; j++)
                    {
                        double v = layer[i * n + j] / heads + (i == j ? 1 : 0);
                        layer[i * n + j] = v;
                        sum += v;
                    }
                    if (sum != 0) for (int j = 0; j < n; j++) layer[i * n + j] /= sum;
                }
                // rollout ← Â_l · rollout
                Array.Clear(product);
                for (int i = 0; i < n; i++)
                    for (int k = 0; k < n; k++)
                    {
                        double v = layer[i * n + k];
                        if (v == 0) continue;
                        for (int j = 0; j < n; j++) product[i * n + j] += v * rollout[k * n + j];
                    }
                (rollout, product) = (product, rollout);
            }
            for (int k = 0; k < n * n; k++) result.Data[bi * n * n + k] = (float)rollout[k];
        }
        return result;
    }

    /// <summary>
    /// Records the attention of a ViT-family model (a <see cref="Models.IPatchTokenModel"/>: a <see cref="Models.ViT"/>, a
    /// <see cref="Models.DistillableViT"/> or a <see cref="Models.DistillWrapper"/>'s student, DeiT's
    /// <see cref="Models.DistilledVisionTransformer"/>) on <paramref name="images"/> without gradient, in the model's current
    /// mode, and returns the rollout heat map over its patch grid [B, H/patch, W/patch] (<see cref="PatchMap"/>): the first
    /// token's row (the class token's) over the patch columns, the prefix tokens (DeiT's distillation token) left out.
    /// </summary>
    /// <exception cref="ArgumentException">The model is not ViT-family.</exception>
    public static Tensor ForModel(NN.Module model, Tensor images)
    {
        var target = Inspect.PatchTokens(model) ?? throw new ArgumentException($"attention maps need a ViT-family model with a patch grid, got {model.GetType().Name}");
        using var recorder = new Recorder((NN.Module)target);
        Tensor attention;
        using (Autograd.NoGrad()) attention = recorder.Forward(images).Attention;
        var (gh, gw) = target.PatchGrid;
        return PatchMap(attention, gh, gw, target.NumPrefixTokens);
    }

    /// <summary>
    /// The heat map [B, gridHeight, gridWidth] of attention maps [B, L, H, N, N] of a model whose tokens are
    /// <paramref name="prefixTokens"/> special tokens (a class token: 1) followed by the gridHeight × gridWidth patches in
    /// row-major order: the rollout's class-token row over the patch columns. With no prefix token (mean pooling) the
    /// mean of all rows is used instead, the rollout of the mean-pooled output.
    /// </summary>
    /// <exception cref="ArgumentException">N differs from prefixTokens + gridHeight·gridWidth.</exception>
    public static Tensor PatchMap(Tensor attentions, int gridHeight, int gridWidth, int prefixTokens = 1)
    {
        var r = Rollout(attentions);
        int b = r.Dim(0), n = r.Dim(1), patches = gridHeight * gridWidth;
        if (gridHeight < 1 || gridWidth < 1 || prefixTokens < 0 || n != prefixTokens + patches)
            throw new ArgumentException($"{n} tokens do not make {prefixTokens} prefix token(s) and a {gridHeight}×{gridWidth} patch grid");
        var map = new Tensor(b, gridHeight, gridWidth);
        for (int bi = 0; bi < b; bi++)
            for (int p = 0; p < patches; p++)
            {
                double v = 0;
                if (prefixTokens > 0) v = r.Data[(bi * n + 0) * n + prefixTokens + p];
                else
                {
                    for (int i = 0; i < n; i++) v += r.Data[(bi * n + i) * n + p];
                    v /= n;
                }
                map.Data[bi * patches + p] = (float)v;
            }
        return map;
    }
}
