namespace VitSharp.Models;

/// <summary>
/// The key map between timm's <c>VisionTransformer</c> state_dict (class-token models with global pool "token", no
/// LayerScale, no q/k norm, no register tokens: vit_base_patch16_224, vit_large_patch16_384, DeiT without distillation, …)
/// and torchvision's layout (<see cref="VisionTransformer"/>). The tensors need no reshaping: timm's fused
/// <c>attn.qkv</c> packs q, k, v (heads contiguous inside each) exactly as torch.nn.MultiheadAttention's
/// <c>in_proj_weight</c>, both LayerNorms use eps 1e-6 and both MLPs use exact GELU.
/// </summary>
/// <remarks>
/// <list type="table">
/// <listheader><term>timm</term><description>torchvision</description></listheader>
/// <item><term><c>cls_token</c> [1, 1, C]</term><description><c>class_token</c></description></item>
/// <item><term><c>pos_embed</c> [1, N+1, C]</term><description><c>encoder.pos_embedding</c></description></item>
/// <item><term><c>patch_embed.proj.{weight,bias}</c></term><description><c>conv_proj.{weight,bias}</c></description></item>
/// <item><term><c>blocks.i.norm1.*</c></term><description><c>encoder.layers.encoder_layer_i.ln_1.*</c></description></item>
/// <item><term><c>blocks.i.attn.qkv.{weight,bias}</c></term><description><c>….self_attention.in_proj_{weight,bias}</c></description></item>
/// <item><term><c>blocks.i.attn.proj.*</c></term><description><c>….self_attention.out_proj.*</c></description></item>
/// <item><term><c>blocks.i.norm2.*</c></term><description><c>….ln_2.*</c></description></item>
/// <item><term><c>blocks.i.mlp.fc1.*</c>, <c>blocks.i.mlp.fc2.*</c></term><description><c>….mlp.0.*</c>, <c>….mlp.3.*</c></description></item>
/// <item><term><c>norm.*</c></term><description><c>encoder.ln.*</c></description></item>
/// <item><term><c>pre_logits.fc.*</c> (older timm, representation size)</term><description><c>heads.pre_logits.*</c></description></item>
/// <item><term><c>head.*</c></term><description><c>heads.head.*</c></description></item>
/// </list>
/// </remarks>
public static class TimmKeys
{
    /// <summary>The map timm key → torchvision key for a model of <paramref name="numLayers"/> blocks (with a representation layer when <paramref name="preLogits"/>).</summary>
    public static IReadOnlyDictionary<string, string> VitToTorchvision(int numLayers, bool preLogits = false)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["cls_token"] = "class_token",
            ["pos_embed"] = "encoder.pos_embedding",
            ["patch_embed.proj.weight"] = "conv_proj.weight",
            ["patch_embed.proj.bias"] = "conv_proj.bias",
            ["norm.weight"] = "encoder.ln.weight",
            ["norm.bias"] = "encoder.ln.bias",
            ["head.weight"] = "heads.head.weight",
            ["head.bias"] = "heads.head.bias",
        };
        if (preLogits)
        {
            map["pre_logits.fc.weight"] = "heads.pre_logits.weight";
            map["pre_logits.fc.bias"] = "heads.pre_logits.bias";
        }
        (string, string)[] inBlock =
        [
            ("norm1", "ln_1"), ("attn.proj", "self_attention.out_proj"), ("norm2", "ln_2"), ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.3"),
        ];
        for (int i = 0; i < numLayers; i++)
        {
            string t = $"blocks.{i}.", o = $"encoder.layers.encoder_layer_{i}.";
            map[t + "attn.qkv.weight"] = o + "self_attention.in_proj_weight";
            map[t + "attn.qkv.bias"] = o + "self_attention.in_proj_bias";
            foreach (var (a, b) in inBlock)
            {
                map[$"{t}{a}.weight"] = $"{o}{b}.weight";
                map[$"{t}{a}.bias"] = $"{o}{b}.bias";
            }
        }
        return map;
    }

    /// <summary>The inverse map torchvision key → timm key.</summary>
    public static IReadOnlyDictionary<string, string> TorchvisionToVit(int numLayers, bool preLogits = false) =>
        VitToTorchvision(numLayers, preLogits).ToDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);

    /// <summary>
    /// Renames a timm ViT state_dict to torchvision's keys for <paramref name="model"/> and checks every shape against it;
    /// throws <see cref="ArgumentException"/> naming every timm key with no torchvision counterpart (e.g.
    /// <c>blocks.0.ls1.gamma</c> of a LayerScale model) and every shape that does not fit (timm key → our key, both
    /// shapes). A <c>pos_embed</c> with another token count passes (see <see cref="Pretrained.LoadVisionTransformer(VisionTransformer, IReadOnlyDictionary{string, Tensor}, WeightLayout, bool, ResampleMode)"/>, which resamples it).
    /// Tensors are shared, not copied.
    /// </summary>
    public static Dictionary<string, Tensor> FromTimm(IReadOnlyDictionary<string, Tensor> timm, VisionTransformer model)
    {
        var c = model.Config;
        bool preLogits = c.RepresentationSize is not null;
        var map = VitToTorchvision(c.NumLayers, preLogits);
        var own = model.StateDict();
        var unmapped = timm.Keys.Where(k => !map.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (unmapped.Count > 0)
        {
            string hint = !preLogits && unmapped.Any(k => k.StartsWith("pre_logits.", StringComparison.Ordinal))
                ? " (a representation layer: build the model with representation_size)" : "";
            throw new ArgumentException($"timm state_dict: no torchvision key for {string.Join(", ", unmapped)}{hint}");
        }
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var misShaped = new List<string>();
        foreach (var (key, tensor) in timm)
        {
            string ours = map[key];
            result[ours] = tensor;
            if (own.TryGetValue(ours, out var target) && !target.SameShape(tensor) && !(key == "pos_embed" && tensor.Rank == 3 && tensor.Dim(2) == target.Dim(2)))
                misShaped.Add($"{key} → {ours} (model {Tensor.ShapeString(target.ShapeSpan)}, timm {Tensor.ShapeString(tensor.ShapeSpan)})");
            if (!own.ContainsKey(ours))
                misShaped.Add($"{key} → {ours} (the model has no such tensor: num_classes 0?)");
        }
        if (misShaped.Count > 0) throw new ArgumentException($"timm state_dict does not fit the model: {string.Join(", ", misShaped)}");
        return result;
    }

    /// <summary>Renames a torchvision-layout VisionTransformer state_dict to timm's keys (the inverse of <see cref="FromTimm"/>); throws naming any key without a timm counterpart.</summary>
    public static Dictionary<string, Tensor> ToTimm(IReadOnlyDictionary<string, Tensor> torchvision, int numLayers, bool preLogits = false)
    {
        var map = TorchvisionToVit(numLayers, preLogits);
        var unmapped = torchvision.Keys.Where(k => !map.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (unmapped.Count > 0) throw new ArgumentException($"torchvision state_dict: no timm key for {string.Join(", ", unmapped)}");
        return torchvision.ToDictionary(kv => map[kv.Key], kv => kv.Value, StringComparer.Ordinal);
    }
}
