namespace VitSharp.Models;

/// <summary>The key layout of a pretrained VisionTransformer state_dict.</summary>
public enum WeightLayout
{
    /// <summary>torchvision's own keys (<c>conv_proj</c>, <c>encoder.layers.encoder_layer_i</c>, …).</summary>
    Torchvision,
    /// <summary>timm's keys (<c>patch_embed.proj</c>, <c>blocks.i</c>, …), renamed through <see cref="TimmKeys"/>.</summary>
    Timm,
}

/// <summary>Loading pretrained weights into models built here (fine-tuning helpers).</summary>
public static class Pretrained
{
    /// <summary>
    /// Loads a pretrained state_dict into <paramref name="model"/>: renames timm keys when <paramref name="layout"/> is
    /// <see cref="WeightLayout.Timm"/>; resamples the position embedding (class token kept, grid resized with
    /// <paramref name="mode"/>, see <see cref="PosEmbedResample"/>) when the weights were trained at another image size
    /// (both grids must be square); with <paramref name="includeHead"/> false ignores the weights' classifier and keeps the
    /// model's (for a new label set: call <see cref="VisionTransformer.ResetClassifier"/> first or after). Every other
    /// tensor must be present with the model's shape; errors name the offending keys and nothing is copied unless all fit.
    /// </summary>
    public static void LoadVisionTransformer(VisionTransformer model, IReadOnlyDictionary<string, Tensor> stateDict,
        WeightLayout layout = WeightLayout.Torchvision, bool includeHead = true, ResampleMode mode = ResampleMode.Bicubic)
    {
        var sd = layout == WeightLayout.Timm
            ? TimmKeys.FromTimm(includeHead ? stateDict : stateDict.Where(kv => !kv.Key.StartsWith("head.", StringComparison.Ordinal)).ToDictionary(), model)
            : new Dictionary<string, Tensor>(stateDict, StringComparer.Ordinal);
        if (!includeHead) foreach (var k in sd.Keys.Where(k => k.StartsWith("heads.head.", StringComparison.Ordinal)).ToList()) sd.Remove(k);

        ResamplePosEmbed(sd, "encoder.pos_embedding", model.Encoder.PosEmbedding, 1, model.Config.GridSize, mode);
        LoadChecked(model, sd, k => !includeHead && k.StartsWith("heads.head.", StringComparison.Ordinal));
    }

    /// <summary>
    /// Loads DeiT's distilled weights (timm's own keys: <c>cls_token</c>, <c>dist_token</c>, <c>pos_embed</c>, <c>blocks.i.*</c>,
    /// <c>head</c>, <c>head_dist</c>, …; as <c>IO.TorchFile.LoadStateDict</c> reads DeiT's <c>{'model': …}</c> releases)
    /// into <paramref name="model"/>. A <c>pos_embed</c> trained at another image size is resampled as timm's
    /// <c>checkpoint_filter_fn</c> does: the two prefix tokens (class and distillation) are kept, the square grid is resized
    /// with <paramref name="mode"/> (<see cref="PosEmbedResample"/>; timm's default is bicubic with antialiasing). With
    /// <paramref name="includeHead"/> false both classifiers (<c>head.*</c>, <c>head_dist.*</c>) of the weights are ignored and
    /// the model's kept (for a new label set: call <see cref="DistilledVisionTransformer.ResetClassifier"/> first or after).
    /// Every other tensor must be present with the model's shape; errors name the offending keys and nothing is copied
    /// unless all fit.
    /// </summary>
    public static void LoadDistilled(DistilledVisionTransformer model, IReadOnlyDictionary<string, Tensor> stateDict,
        bool includeHead = true, ResampleMode mode = ResampleMode.Bicubic)
    {
        static bool IsHead(string k) => k.StartsWith("head.", StringComparison.Ordinal) || k.StartsWith("head_dist.", StringComparison.Ordinal);
        var sd = stateDict.Where(kv => includeHead || !IsHead(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        ResamplePosEmbed(sd, "pos_embed", model.PosEmbed, DeiTConfig.NumPrefixTokens, model.Config.GridSize, mode);
        LoadChecked(model, sd, k => !includeHead && IsHead(k));
    }

    /// <summary>
    /// Reads a weights file — safetensors (by its <c>.safetensors</c> extension, <see cref="IO.Weights.Load"/>; the Hugging Face
    /// hub's timm files) or else a <c>torch.save</c> file (<see cref="IO.TorchFile.LoadStateDict"/>; DeiT's <c>.pth</c>
    /// releases, the dict under <c>model</c>) — and loads it as
    /// <see cref="LoadDistilled(DistilledVisionTransformer, IReadOnlyDictionary{string, Tensor}, bool, ResampleMode)"/> does.
    /// </summary>
    public static void LoadDistilled(DistilledVisionTransformer model, string path, bool includeHead = true, ResampleMode mode = ResampleMode.Bicubic) =>
        LoadDistilled(model, path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? IO.Weights.Load(path) : IO.TorchFile.LoadStateDict(path),
            includeHead, mode);

    /// <summary>
    /// When <paramref name="sd"/>[<paramref name="key"/>] is a [1, P + g², C] position embedding of the model's width but
    /// another token count, replaces it by its resampling to the model's <paramref name="grid"/>² grid, keeping the
    /// <paramref name="prefixTokens"/> leading tokens; throws when the old tokens are not P plus a square grid.
    /// </summary>
    private static void ResamplePosEmbed(Dictionary<string, Tensor> sd, string key, Tensor target, int prefixTokens, int grid, ResampleMode mode)
    {
        if (!sd.TryGetValue(key, out var pos) || pos.Rank != 3 || pos.Dim(2) != target.Dim(2) || pos.Dim(1) == target.Dim(1)) return;
        int oldTokens = pos.Dim(1) - prefixTokens;
        int oldSide = oldTokens > 0 ? (int)Math.Round(Math.Sqrt(oldTokens)) : 0;
        if (oldSide < 1 || oldSide * oldSide != oldTokens)
        {
            string prefix = prefixTokens == 1 ? "a class token" : $"{prefixTokens} prefix tokens";
            throw new ArgumentException($"{key}: {pos.Dim(1)} tokens are not {prefix} plus a square grid; cannot resample");
        }
        sd[key] = PosEmbedResample.Resample(pos, (oldSide, oldSide), (grid, grid), prefixTokens, mode);
    }

    /// <summary>Checks that <paramref name="sd"/> has exactly the model's keys (less the <paramref name="skipped"/> ones), then loads it.</summary>
    private static void LoadChecked(NN.Module model, Dictionary<string, Tensor> sd, Func<string, bool> skipped)
    {
        var own = model.StateDict();
        var missing = own.Keys.Where(k => !sd.ContainsKey(k) && !skipped(k)).ToList();
        var unexpected = sd.Keys.Where(k => !own.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0) throw new NN.StateDictException(missing, unexpected, []);
        model.LoadStateDict(sd, strict: false);
    }

    /// <summary>Reads a safetensors file and loads it as <see cref="LoadVisionTransformer(VisionTransformer, IReadOnlyDictionary{string, Tensor}, WeightLayout, bool, ResampleMode)"/> does.</summary>
    public static void LoadVisionTransformer(VisionTransformer model, string path, WeightLayout layout = WeightLayout.Torchvision,
        bool includeHead = true, ResampleMode mode = ResampleMode.Bicubic) =>
        LoadVisionTransformer(model, IO.Weights.Load(path), layout, includeHead, mode);
}
