using System.Text.Json.Nodes;
using VitSharp.Models;

namespace VitSharp.Import;

/// <summary>The model family a bare state_dict's keys reveal.</summary>
public enum WeightArchitecture
{
    /// <summary>Keys that match no family this library can recognise on its own (a preset must say what the model is).</summary>
    Unknown,
    /// <summary>torchvision's <c>VisionTransformer</c> (<c>conv_proj</c>, <c>encoder.layers.encoder_layer_i</c>, …).</summary>
    TorchvisionViT,
    /// <summary>timm's plain <c>VisionTransformer</c> (<c>patch_embed.proj</c>, <c>blocks.i.attn.qkv</c>, …; DeiT without distillation).</summary>
    TimmViT,
    /// <summary>timm's <c>VisionTransformerDistilled</c> (DeiT's distilled releases: <c>dist_token</c>, <c>head_dist</c>).</summary>
    DeiTDistilled,
    /// <summary>torchvision's <c>ResNet</c> (<c>conv1</c>, <c>bn1</c>, <c>layer1.0.conv1</c>, …, <c>fc</c>).</summary>
    ResNet,
    /// <summary>torchvision's <c>SwinTransformer</c>, v1 or v2 (<c>features.0.0</c>, <c>features.1.0.attn.qkv</c>, …, <c>head</c>).</summary>
    Swin,
}

/// <summary>
/// Reads a model's constructor arguments off its state_dict's tensor shapes: everything the shapes fix (widths, depths,
/// patch and image size, classes). What they do not fix — a ViT's head count — comes from <c>--set num_heads=N</c>, from
/// a preset, or, for the widths every released ViT shares (192/384/768 → 3/6/12 heads of 64, 1024 and 1280 → 16), from
/// that convention, with a note saying so.
/// </summary>
public static class ArchitectureInference
{
    /// <summary>Head counts of the released ViTs by width (torchvision, timm, DeiT, Google, Hugging Face).</summary>
    public static IReadOnlyDictionary<int, int> ConventionalHeads { get; } = new Dictionary<int, int>
    {
        [192] = 3, [384] = 6, [768] = 12, [1024] = 16, [1280] = 16,
    };

    /// <summary>The family the keys reveal.</summary>
    public static WeightArchitecture Detect(IReadOnlyDictionary<string, Tensor> sd)
    {
        if (sd.ContainsKey("conv_proj.weight") && sd.ContainsKey("encoder.pos_embedding")) return WeightArchitecture.TorchvisionViT;
        if (sd.ContainsKey("patch_embed.proj.weight") && sd.ContainsKey("blocks.0.attn.qkv.weight"))
            return sd.ContainsKey("dist_token") ? WeightArchitecture.DeiTDistilled : WeightArchitecture.TimmViT;
        if (sd.ContainsKey("conv1.weight") && sd.ContainsKey("bn1.weight") && sd.ContainsKey("layer1.0.conv1.weight")) return WeightArchitecture.ResNet;
        if (sd.ContainsKey("features.0.0.weight") && sd.ContainsKey("features.1.0.attn.qkv.weight") && sd.ContainsKey("head.weight")) return WeightArchitecture.Swin;
        return WeightArchitecture.Unknown;
    }

    /// <summary>timm's constructor name of DeiT's distilled models.</summary>
    public const string DeiTConstructor = DeiTConfig.Constructor;

    /// <summary>The constructor name each family is built with.</summary>
    public static string Constructor(WeightArchitecture a) => a switch
    {
        WeightArchitecture.TorchvisionViT or WeightArchitecture.TimmViT => VisionTransformerConfig.Constructor,
        WeightArchitecture.DeiTDistilled => DeiTConstructor,
        WeightArchitecture.ResNet => ResNetConfig.Constructor,
        WeightArchitecture.Swin => SwinTransformerConfig.Constructor,
        _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    /// <summary>Counts the blocks <c>{prefix}{i}{suffix}</c> for i = 0, 1, … (the first gap ends the count).</summary>
    public static int CountIndexed(IReadOnlyDictionary<string, Tensor> sd, string prefix, string suffix)
    {
        int n = 0;
        while (sd.ContainsKey($"{prefix}{n}{suffix}")) n++;
        return n;
    }

    internal static Tensor Need(IReadOnlyDictionary<string, Tensor> sd, string key, int rank, string source)
    {
        if (!sd.TryGetValue(key, out var t)) throw new ImportException($"{source}: key '{key}' is missing");
        if (t.Rank != rank) throw new ImportException($"{source}: '{key}' has shape {Tensor.ShapeString(t.ShapeSpan)}, expected {rank} dimensions");
        return t;
    }

    /// <summary>
    /// torchvision VisionTransformer keyword arguments from a torchvision-layout state_dict. <paramref name="numHeads"/>
    /// (null: the convention by width, else an error saying how to give it) is not in
    /// the shapes (nor is the LayerNorm eps: 1e-6, torchvision's). Notes (assumptions made) are added to <paramref name="notes"/>.
    /// </summary>
    public static JsonObject TorchvisionViTKwargs(IReadOnlyDictionary<string, Tensor> sd, string source, int? numHeads, List<string> notes)
    {
        var conv = Need(sd, "conv_proj.weight", 4, source);
        var pos = Need(sd, "encoder.pos_embedding", 3, source);
        int hidden = conv.Dim(0), inChans = conv.Dim(1), patch = conv.Dim(2);
        if (conv.Dim(3) != patch) throw new ImportException($"{source}: conv_proj.weight {Tensor.ShapeString(conv.ShapeSpan)} has a non-square patch; torchvision's ViT takes square patches");
        if (pos.Dim(2) != hidden) throw new ImportException($"{source}: encoder.pos_embedding {Tensor.ShapeString(pos.ShapeSpan)} does not have the patch embedding's width {hidden}");
        int grid = (int)Math.Round(Math.Sqrt(pos.Dim(1) - 1));
        if (pos.Dim(1) < 2 || grid * grid != pos.Dim(1) - 1)
            throw new ImportException($"{source}: encoder.pos_embedding has {pos.Dim(1)} tokens, not a class token plus a square grid");
        int layers = CountIndexed(sd, "encoder.layers.encoder_layer_", ".ln_1.weight");
        if (layers == 0) throw new ImportException($"{source}: no encoder blocks (encoder.layers.encoder_layer_0.*)");
        var mlp0 = Need(sd, "encoder.layers.encoder_layer_0.mlp.0.weight", 2, source);
        int classes = sd.TryGetValue("heads.head.weight", out var head) ? head.Dim(0) : 0;
        int? rep = sd.TryGetValue("heads.pre_logits.weight", out var pre) ? pre.Dim(0) : null;
        int heads = numHeads ?? HeadsByConvention(hidden, source, notes);
        if (heads < 1 || hidden % heads != 0) throw new ImportException($"{source}: num_heads {heads} does not divide the width {hidden}");
        return new JsonObject
        {
            ["image_size"] = grid * patch, ["patch_size"] = patch, ["num_layers"] = layers, ["num_heads"] = heads,
            ["hidden_dim"] = hidden, ["mlp_dim"] = mlp0.Dim(0), ["num_classes"] = classes, ["representation_size"] = rep,
            ["in_chans"] = inChans,
        };
    }

    /// <summary>The conventional head count for a width, with a note; an error naming <c>--set num_heads=N</c> for other widths.</summary>
    public static int HeadsByConvention(int width, string source, List<string> notes)
    {
        if (ConventionalHeads.TryGetValue(width, out int h))
        {
            notes.Add($"num_heads {h} assumed (width {width}, as every released ViT of that width); give --set num_heads=N if it differs");
            return h;
        }
        throw new ImportException($"{source}: the weights do not say how many attention heads the model has (width {width}); " +
            "give it with --set num_heads=N (or --model PRESET)");
    }

    /// <summary>timm DeiT-distilled keyword arguments (img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio, qkv_bias).</summary>
    public static JsonObject DeiTKwargs(IReadOnlyDictionary<string, Tensor> sd, string source, int? numHeads, List<string> notes)
    {
        var conv = Need(sd, "patch_embed.proj.weight", 4, source);
        var pos = Need(sd, "pos_embed", 3, source);
        int dim = conv.Dim(0), patch = conv.Dim(2);
        if (conv.Dim(3) != patch) throw new ImportException($"{source}: patch_embed.proj.weight {Tensor.ShapeString(conv.ShapeSpan)} has a non-square patch");
        int grid = (int)Math.Round(Math.Sqrt(pos.Dim(1) - 2));
        if (pos.Dim(1) < 3 || grid * grid != pos.Dim(1) - 2)
            throw new ImportException($"{source}: pos_embed has {pos.Dim(1)} tokens, not a class and a distillation token plus a square grid");
        int depth = CountIndexed(sd, "blocks.", ".norm1.weight");
        var fc1 = Need(sd, "blocks.0.mlp.fc1.weight", 2, source);
        int classes = sd.TryGetValue("head.weight", out var head) ? head.Dim(0) : 0;
        int heads = numHeads ?? HeadsByConvention(dim, source, notes);
        // timm builds int(embed_dim · mlp_ratio) hidden units: the ratio must give fc1's width back exactly.
        double ratio = (double)fc1.Dim(0) / dim;
        while ((int)(dim * ratio) < fc1.Dim(0)) ratio = Math.BitIncrement(ratio);
        return new JsonObject
        {
            ["img_size"] = grid * patch, ["patch_size"] = patch, ["in_chans"] = conv.Dim(1), ["num_classes"] = classes,
            ["embed_dim"] = dim, ["depth"] = depth, ["num_heads"] = heads, ["mlp_ratio"] = ratio,
            ["qkv_bias"] = sd.ContainsKey("blocks.0.attn.qkv.bias"),
        };
    }

    /// <summary>torchvision ResNet keyword arguments: block kind, blocks per stage, classes, groups and width per group (read off the first bottleneck), input channels.</summary>
    public static JsonObject ResNetKwargs(IReadOnlyDictionary<string, Tensor> sd, string source)
    {
        var conv1 = Need(sd, "conv1.weight", 4, source);
        bool bottleneck = sd.ContainsKey("layer1.0.conv3.weight");
        var layers = new JsonArray();
        for (int s = 1; s <= 4; s++)
        {
            int n = CountIndexed(sd, $"layer{s}.", ".conv1.weight");
            if (n == 0) throw new ImportException($"{source}: stage layer{s} has no blocks (layer{s}.0.conv1.weight)");
            layers.Add(n);
        }
        var fc = Need(sd, "fc.weight", 2, source);
        int groups = 1, widthPerGroup = 64;
        if (bottleneck)
        {
            var conv2 = Need(sd, "layer1.0.conv2.weight", 4, source);
            int width = conv2.Dim(0);
            groups = width / conv2.Dim(1);
            widthPerGroup = width / groups;
        }
        return new JsonObject
        {
            ["block"] = bottleneck ? "Bottleneck" : "BasicBlock", ["layers"] = layers, ["num_classes"] = fc.Dim(0),
            ["groups"] = groups, ["width_per_group"] = widthPerGroup, ["in_chans"] = conv1.Dim(1),
        };
    }

    /// <summary>
    /// torchvision SwinTransformer keyword arguments, all read off the shapes: patch and width from <c>features.0.0</c>,
    /// blocks per stage (stages at <c>features.1, 3, 5, …</c>), heads per stage from each stage's first bias table (v1) or
    /// <c>logit_scale</c> (v2), the window from <c>relative_coords_table</c> (v2) or from the bias table's
    /// (2wh − 1)(2ww − 1) rows and the index's (wh·ww)² entries (v1), the MLP ratio, the merging kind (its LayerNorm is 4C
    /// wide in v1, 2C in v2), classes and input channels.
    /// </summary>
    public static JsonObject SwinKwargs(IReadOnlyDictionary<string, Tensor> sd, string source)
    {
        var conv = Need(sd, "features.0.0.weight", 4, source);
        int embed = conv.Dim(0);
        bool v2 = sd.ContainsKey("features.1.0.attn.logit_scale");
        var depths = new JsonArray();
        var heads = new JsonArray();
        int[]? window = null;
        for (int stage = 0, f = 1; sd.ContainsKey($"features.{f}.0.norm1.weight"); stage++, f += 2)
        {
            int n = CountIndexed(sd, $"features.{f}.", ".norm1.weight");
            depths.Add(n);
            string attn = $"features.{f}.0.attn.";
            if (v2)
            {
                heads.Add(Need(sd, attn + "logit_scale", 3, source).Dim(0));
                var coords = Need(sd, attn + "relative_coords_table", 4, source);
                window ??= [(coords.Dim(1) + 1) / 2, (coords.Dim(2) + 1) / 2];
            }
            else
            {
                var table = Need(sd, attn + "relative_position_bias_table", 2, source);
                heads.Add(table.Dim(1));
                window ??= WindowFromTable(table.Dim(0), Need(sd, attn + "relative_position_index", 1, source), source);
            }
        }
        if (depths.Count == 0) throw new ImportException($"{source}: key 'features.1.0.norm1.weight' is missing (no Swin stage)");
        var mlp = Need(sd, "features.1.0.mlp.0.weight", 2, source);
        var mergeNorm = depths.Count > 1 ? Need(sd, "features.2.norm.weight", 1, source) : null;
        var head = Need(sd, "head.weight", 2, source);
        return new JsonObject
        {
            ["patch_size"] = new JsonArray(conv.Dim(2), conv.Dim(3)), ["embed_dim"] = embed, ["depths"] = depths, ["num_heads"] = heads,
            ["window_size"] = new JsonArray(window![0], window[1]), ["mlp_ratio"] = (float)mlp.Dim(0) / embed, ["num_classes"] = head.Dim(0),
            ["block"] = v2 ? SwinTransformerConfig.BlockV2 : SwinTransformerConfig.BlockV1,
            ["downsample_layer"] = mergeNorm is not null && mergeNorm.Dim(0) == 2 * embed ? "PatchMergingV2" : "PatchMerging",
            ["in_chans"] = conv.Dim(1),
        };
    }

    /// <summary>The window (wh, ww) with (2wh − 1)(2ww − 1) = <paramref name="rows"/> bias rows whose torchvision
    /// relative_position_index is <paramref name="index"/> (the rows alone cannot tell wh × ww from ww × wh).</summary>
    private static int[] WindowFromTable(int rows, Tensor index, string source)
    {
        int n = (int)Math.Round(Math.Sqrt(index.Size));
        bool sized = false;
        for (int wh = 1; wh <= n && n * n == index.Size; wh++)
        {
            if (n % wh != 0 || (2 * wh - 1) * (2 * (n / wh) - 1) != rows) continue;
            sized = true;
            var expected = ShiftedWindowAttention.RelativePositionIndex((wh, n / wh));
            bool same = true;
            for (int i = 0; i < expected.Length && same; i++) same = index.Data[i] == expected[i];
            if (same) return [wh, n / wh];
        }
        throw new ImportException(sized
            ? $"{source}: the relative_position_index of {index.Size} entries is not torchvision's for any window of {n} tokens"
            : $"{source}: a relative_position_bias_table of {rows} rows and a relative_position_index of {index.Size} entries fit no window");
    }
}
