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

        const string posKey = "encoder.pos_embedding";
        var target = model.Encoder.PosEmbedding;
        if (sd.TryGetValue(posKey, out var pos) && pos.Rank == 3 && pos.Dim(2) == target.Dim(2) && pos.Dim(1) != target.Dim(1))
        {
            int oldSide = (int)Math.Round(Math.Sqrt(pos.Dim(1) - 1));
            if (oldSide * oldSide != pos.Dim(1) - 1)
                throw new ArgumentException($"{posKey}: {pos.Dim(1)} tokens are not a class token plus a square grid; cannot resample");
            int side = model.Config.GridSize;
            sd[posKey] = PosEmbedResample.Resample(pos, (oldSide, oldSide), (side, side), 1, mode);
        }
        var own = model.StateDict();
        var missing = own.Keys.Where(k => !sd.ContainsKey(k) && (includeHead || !k.StartsWith("heads.head.", StringComparison.Ordinal))).ToList();
        var unexpected = sd.Keys.Where(k => !own.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0) throw new NN.StateDictException(missing, unexpected, []);
        model.LoadStateDict(sd, strict: false);
    }

    /// <summary>Reads a safetensors file and loads it as <see cref="LoadVisionTransformer(VisionTransformer, IReadOnlyDictionary{string, Tensor}, WeightLayout, bool, ResampleMode)"/> does.</summary>
    public static void LoadVisionTransformer(VisionTransformer model, string path, WeightLayout layout = WeightLayout.Torchvision,
        bool includeHead = true, ResampleMode mode = ResampleMode.Bicubic) =>
        LoadVisionTransformer(model, IO.Weights.Load(path), layout, includeHead, mode);
}
