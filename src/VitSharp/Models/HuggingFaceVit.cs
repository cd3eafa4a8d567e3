using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VitSharp.IO;

namespace VitSharp.Models;

/// <summary>
/// The preprocessing a Hugging Face snapshot's <c>preprocessor_config.json</c> asks for (transformers'
/// <c>ViTImageProcessor</c> fields, with its defaults for the fields left out). A plain record: map it onto the
/// library's transforms where they are needed.
/// </summary>
public sealed record HuggingFacePreprocessing
{
    /// <summary><c>image_processor_type</c> (or the older <c>feature_extractor_type</c>), e.g. ViTImageProcessor; null if absent.</summary>
    public string? ImageProcessorType { get; init; }
    /// <summary><c>do_resize</c> (default true).</summary>
    public bool DoResize { get; init; } = true;
    /// <summary><c>size.height</c> (default 224; null when the size is given as a shortest edge).</summary>
    public int? Height { get; init; } = 224;
    /// <summary><c>size.width</c> (default 224; null when the size is given as a shortest edge).</summary>
    public int? Width { get; init; } = 224;
    /// <summary><c>size.shortest_edge</c>: resize so the shorter side has this length (aspect kept), if given.</summary>
    public int? ShortestEdge { get; init; }
    /// <summary><c>resample</c>, a PIL filter code: 0 nearest, 1 Lanczos, 2 bilinear (default), 3 bicubic, 4 box, 5 Hamming.</summary>
    public int Resample { get; init; } = 2;
    /// <summary><c>do_rescale</c> (default true): multiply the 0–255 pixel values by <see cref="RescaleFactor"/>.</summary>
    public bool DoRescale { get; init; } = true;
    /// <summary><c>rescale_factor</c> (default 1/255).</summary>
    public double RescaleFactor { get; init; } = 1.0 / 255;
    /// <summary><c>do_normalize</c> (default true): (x − mean) / std per channel.</summary>
    public bool DoNormalize { get; init; } = true;
    /// <summary><c>image_mean</c> (default [0.5, 0.5, 0.5], transformers' IMAGENET_STANDARD_MEAN).</summary>
    public float[] ImageMean { get; init; } = [0.5f, 0.5f, 0.5f];
    /// <summary><c>image_std</c> (default [0.5, 0.5, 0.5]).</summary>
    public float[] ImageStd { get; init; } = [0.5f, 0.5f, 0.5f];
    /// <summary><c>do_center_crop</c> (default false; ViTImageProcessor has no crop, other processors do).</summary>
    public bool DoCenterCrop { get; init; }
    /// <summary><c>crop_size.height</c>, if given.</summary>
    public int? CropHeight { get; init; }
    /// <summary><c>crop_size.width</c>, if given.</summary>
    public int? CropWidth { get; init; }
}

/// <summary>A Hugging Face ViT snapshot converted to torchvision's layout.</summary>
/// <param name="Config">The configuration from <c>config.json</c> (layer_norm_eps included), checked against the weights.</param>
/// <param name="StateDict">Tensors under torchvision's keys; a <see cref="VisionTransformer"/> of <paramref name="Config"/> loads them strictly.</param>
/// <param name="ClassNames">One name per output, in index order (<c>id2label</c>; <c>LABEL_i</c> as transformers names them when absent).</param>
/// <param name="Preprocessing">From <c>preprocessor_config.json</c>, or null when the snapshot has none.</param>
/// <param name="WeightsPath">The weights file read (or the index of a sharded checkpoint).</param>
/// <param name="IgnoredKeys">Keys present in the weights and deliberately not used (the pooler of a ViTModel checkpoint next to a classifier, as transformers' ViTForImageClassification ignores it).</param>
public sealed record HuggingFaceVitSnapshot(VisionTransformerConfig Config, Dictionary<string, Tensor> StateDict, IReadOnlyList<string> ClassNames,
    HuggingFacePreprocessing? Preprocessing, string WeightsPath, IReadOnlyList<string> IgnoredKeys);

/// <summary>
/// Hugging Face <c>transformers</c> ViT snapshots (<c>ViTForImageClassification</c>, or the bare <c>ViTModel</c>): a folder
/// with <c>config.json</c>, the weights (<c>model.safetensors</c>, <c>pytorch_model.bin</c>, or a sharded index of either)
/// and usually <c>preprocessor_config.json</c>, converted to torchvision's layout (<see cref="VisionTransformer"/>).
/// </summary>
/// <remarks>
/// <para>Keys (prefix <c>vit.</c>, absent in a bare ViTModel's file; <c>L</c> = <c>encoder.layer.i.</c>, <c>T</c> = <c>encoder.layers.encoder_layer_i.</c>):</para>
/// <list type="table">
/// <listheader><term>transformers</term><description>torchvision</description></listheader>
/// <item><term><c>embeddings.cls_token</c></term><description><c>class_token</c></description></item>
/// <item><term><c>embeddings.position_embeddings</c></term><description><c>encoder.pos_embedding</c></description></item>
/// <item><term><c>embeddings.patch_embeddings.projection.*</c></term><description><c>conv_proj.*</c></description></item>
/// <item><term><c>L attention.attention.{query,key,value}.{weight,bias}</c></term><description><c>T self_attention.in_proj_{weight,bias}</c> (q; k; v stacked; zero biases when <c>qkv_bias</c> is false)</description></item>
/// <item><term><c>L attention.output.dense.*</c></term><description><c>T self_attention.out_proj.*</c></description></item>
/// <item><term><c>L layernorm_before.*</c>, <c>L layernorm_after.*</c></term><description><c>T ln_1.*</c>, <c>T ln_2.*</c></description></item>
/// <item><term><c>L intermediate.dense.*</c>, <c>L output.dense.*</c></term><description><c>T mlp.0.*</c>, <c>T mlp.3.*</c></description></item>
/// <item><term><c>layernorm.*</c></term><description><c>encoder.ln.*</c></description></item>
/// <item><term><c>classifier.*</c> (no prefix)</term><description><c>heads.head.*</c></description></item>
/// <item><term><c>pooler.dense.*</c> (ViTModel with its pooling layer, no classifier)</term><description><c>heads.pre_logits.*</c> (representation_size = hidden_size; dense then tanh on the class token: the model returns <c>pooler_output</c>)</description></item>
/// </list>
/// <para>transformers' ViT computes exactly what torchvision's does (pre-norm blocks, exact GELU for <c>hidden_act</c>
/// "gelu", attention scaled by 1/√head_dim, classifier on the class token), except the LayerNorm epsilon: 1e-12 by
/// default, carried over as <see cref="VisionTransformerConfig.LayerNormEps"/>.</para>
/// </remarks>
public static class HuggingFaceVit
{
    /// <summary>
    /// Reads a snapshot folder. Throws <see cref="ModelConfigException"/> (one line naming the file, the field or key and
    /// the shapes) for a missing or contradictory <c>config.json</c>, an unsupported activation, weights left unmatched
    /// or missing; the readers' own exceptions for damaged weight files.
    /// </summary>
    public static HuggingFaceVitSnapshot Load(string directory)
    {
        if (!Directory.Exists(directory)) throw new ModelConfigException($"{directory}: no such snapshot directory");
        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
            throw new ModelConfigException($"{configPath}: missing (a Hugging Face snapshot needs its config.json: hidden_size, num_hidden_layers, …)");
        var config = ReadJson(configPath);
        var (weightsPath, weights) = LoadWeights(directory);
        var (cfg, sd, names, ignored) = Convert(config, weights, configPath, weightsPath);
        string prePath = Path.Combine(directory, "preprocessor_config.json");
        var pre = File.Exists(prePath) ? ReadPreprocessing(prePath) : null;
        return new HuggingFaceVitSnapshot(cfg, sd, names, pre, weightsPath, ignored);
    }

    /// <summary>Reads a snapshot and loads it into a new <see cref="VisionTransformer"/> (eval mode).</summary>
    public static (VisionTransformer Model, HuggingFaceVitSnapshot Snapshot) LoadModel(string directory)
    {
        var snap = Load(directory);
        var model = new VisionTransformer(snap.Config);
        model.LoadStateDict(snap.StateDict);
        model.Eval();
        return (model, snap);
    }

    /// <summary>The weights of a snapshot: model.safetensors, else pytorch_model.bin, else a sharded index of either.</summary>
    private static (string Path, Dictionary<string, Tensor> Weights) LoadWeights(string directory)
    {
        string st = Path.Combine(directory, "model.safetensors"), bin = Path.Combine(directory, "pytorch_model.bin");
        if (File.Exists(st)) return (st, Weights.Load(st));
        if (File.Exists(bin)) return (bin, TorchFile.LoadStateDict(bin));
        foreach (var (index, loader) in new (string, Func<string, Dictionary<string, Tensor>>)[]
        {
            ("model.safetensors.index.json", Weights.Load), ("pytorch_model.bin.index.json", TorchFile.LoadStateDict),
        })
        {
            string path = Path.Combine(directory, index);
            if (!File.Exists(path)) continue;
            if (ReadJson(path)["weight_map"] is not JsonObject map)
                throw new ModelConfigException($"{path}: no 'weight_map' object");
            var all = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var shard in map.Select(kv => kv.Value?.GetValueKind() == JsonValueKind.String ? kv.Value.GetValue<string>()
                         : throw new ModelConfigException($"{path}: weight_map['{kv.Key}'] is not a file name")).Distinct())
            {
                if (shard.Contains('/') || shard.Contains('\\') || shard.StartsWith('.'))
                    throw new ModelConfigException($"{path}: shard name '{shard}' is not a plain file name");
                foreach (var (k, t) in loader(Path.Combine(directory, shard)))
                    if (!all.TryAdd(k, t)) throw new ModelConfigException($"{path}: key '{k}' appears in two shards");
            }
            return (path, all);
        }
        throw new ModelConfigException($"{directory}: no weights (model.safetensors, pytorch_model.bin or a sharded index of either)");
    }

    private static JsonObject ReadJson(string path)
    {
        try
        {
            // Duplicate property names are refused at parse time (JsonNode would otherwise fail later, on first access).
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject
                ?? throw new ModelConfigException($"{path}: not a JSON object");
        }
        catch (JsonException e) { throw new ModelConfigException($"{path}: invalid JSON ({e.Message})"); }
    }

    /// <summary>
    /// Converts transformers ViT weights with their <c>config.json</c> (parsed) to a torchvision-layout configuration and
    /// state_dict; <paramref name="configName"/> and <paramref name="weightsName"/> name the inputs in errors. Fields left
    /// out of the config take transformers' ViTConfig defaults (hidden_size 768, 12 layers, 12 heads, intermediate 3072,
    /// image 224, patch 16, 3 channels, layer_norm_eps 1e-12, qkv_bias true, gelu, no dropout).
    /// </summary>
    public static (VisionTransformerConfig Config, Dictionary<string, Tensor> StateDict, IReadOnlyList<string> ClassNames, IReadOnlyList<string> IgnoredKeys) Convert(
        JsonObject config, IReadOnlyDictionary<string, Tensor> weights, string configName = "config.json", string weightsName = "weights")
    {
        ModelConfigException Bad(string problem) => new($"{configName}: {problem}");
        static string S(Tensor t) => Tensor.ShapeString(t.ShapeSpan);

        string? modelType = Str(config, "model_type", configName);
        if (modelType is not null and not "vit")
            throw Bad($"model_type '{modelType}' is not 'vit' (only transformers' ViTForImageClassification / ViTModel are read)");
        string act = Str(config, "hidden_act", configName) ?? "gelu";
        if (act != "gelu")
            throw Bad($"hidden_act '{act}' is not supported: VisionTransformer's MLP uses the exact GELU (transformers' \"gelu\")");
        int hidden = Int(config, "hidden_size", 768, configName), layers = Int(config, "num_hidden_layers", 12, configName);
        int heads = Int(config, "num_attention_heads", 12, configName), inter = Int(config, "intermediate_size", 3072, configName);
        int image = Square(config, "image_size", 224, configName), patch = Square(config, "patch_size", 16, configName);
        int channels = Int(config, "num_channels", 3, configName);
        float eps = Float(config, "layer_norm_eps", 1e-12f, configName);
        float dropout = Float(config, "hidden_dropout_prob", 0f, configName), attnDropout = Float(config, "attention_probs_dropout_prob", 0f, configName);
        bool qkvBias = Bool(config, "qkv_bias", true, configName);

        // Prefix: ViTForImageClassification saves the backbone under "vit."; a bare ViTModel saves it at the top.
        string p = weights.ContainsKey("vit.embeddings.cls_token") ? "vit." : weights.ContainsKey("embeddings.cls_token") ? "" : "vit.";
        var used = new HashSet<string>(StringComparer.Ordinal);
        Tensor Get(string key)
        {
            if (!weights.TryGetValue(key, out var t)) throw new ModelConfigException($"{weightsName}: missing tensor '{key}' (config {configName})");
            used.Add(key);
            return t;
        }
        void Expect(string key, Tensor t, int[] shape, string field, object value)
        {
            if (!t.ShapeSpan.SequenceEqual(shape))
                throw Bad($"{field} {value} contradicts {key} of shape {S(t)} (expected {Tensor.ShapeString(shape)})");
        }
        Tensor Check(string key, int[] shape, string field, object value)
        {
            var t = Get(key);
            Expect(key, t, shape, field, value);
            return t;
        }

        // ---- the embeddings first: they pin hidden_size, num_channels, patch_size and image_size
        var cls = Get(p + "embeddings.cls_token");
        Expect(p + "embeddings.cls_token", cls, [1, 1, hidden], "hidden_size", hidden);
        var proj = Get(p + "embeddings.patch_embeddings.projection.weight");
        if (proj.Rank != 4 || proj.Dim(0) != hidden) Expect(p + "embeddings.patch_embeddings.projection.weight", proj, [hidden, channels, patch, patch], "hidden_size", hidden);
        Expect(p + "embeddings.patch_embeddings.projection.weight", proj, [hidden, proj.Dim(1), patch, patch], "patch_size", patch);
        Expect(p + "embeddings.patch_embeddings.projection.weight", proj, [hidden, channels, patch, patch], "num_channels", channels);
        if (image % patch != 0) throw Bad($"image_size {image} is not divisible by patch_size {patch}");
        int tokens = (image / patch) * (image / patch) + 1;
        var pos = Check(p + "embeddings.position_embeddings", [1, tokens, hidden], "image_size", image);
        if (hidden % heads != 0) throw Bad($"hidden_size {hidden} is not divisible by num_attention_heads {heads}");

        var present = weights.Keys.Where(k => k.StartsWith(p + "encoder.layer.", StringComparison.Ordinal))
            .Select(k => k[(p + "encoder.layer.").Length..].Split('.')[0]).Distinct().ToList();
        int maxLayer = present.Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int i) ? i : -1).DefaultIfEmpty(-1).Max();
        if (maxLayer + 1 > layers)
            throw Bad($"num_hidden_layers {layers} contradicts the weights, which hold {p}encoder.layer.{maxLayer}.*");
        if (maxLayer + 1 < layers)
            throw Bad($"num_hidden_layers {layers} contradicts the weights, which hold {(maxLayer < 0 ? "no encoder layers" : $"layers 0 … {maxLayer} only")}");

        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["class_token"] = cls,
            ["encoder.pos_embedding"] = pos,
            ["conv_proj.weight"] = proj,
            ["conv_proj.bias"] = Check(p + "embeddings.patch_embeddings.projection.bias", [hidden], "hidden_size", hidden),
            ["encoder.ln.weight"] = Check(p + "layernorm.weight", [hidden], "hidden_size", hidden),
            ["encoder.ln.bias"] = Check(p + "layernorm.bias", [hidden], "hidden_size", hidden),
        };
        for (int i = 0; i < layers; i++)
        {
            string h = $"{p}encoder.layer.{i}.", o = $"encoder.layers.encoder_layer_{i}.";
            var w = new float[3 * hidden * hidden];
            var b = new float[3 * hidden];
            string[] qkv = ["query", "key", "value"];
            for (int j = 0; j < 3; j++)
            {
                Check($"{h}attention.attention.{qkv[j]}.weight", [hidden, hidden], "hidden_size", hidden).Data.CopyTo(w, j * hidden * hidden);
                string bk = $"{h}attention.attention.{qkv[j]}.bias";
                if (qkvBias) Check(bk, [hidden], "hidden_size", hidden).Data.CopyTo(b, j * hidden);
                else if (weights.ContainsKey(bk)) throw Bad($"qkv_bias false contradicts the weights, which hold {bk}");
            }
            sd[o + "self_attention.in_proj_weight"] = new Tensor(w, 3 * hidden, hidden);
            sd[o + "self_attention.in_proj_bias"] = new Tensor(b, 3 * hidden);
            sd[o + "self_attention.out_proj.weight"] = Check($"{h}attention.output.dense.weight", [hidden, hidden], "hidden_size", hidden);
            sd[o + "self_attention.out_proj.bias"] = Check($"{h}attention.output.dense.bias", [hidden], "hidden_size", hidden);
            sd[o + "ln_1.weight"] = Check($"{h}layernorm_before.weight", [hidden], "hidden_size", hidden);
            sd[o + "ln_1.bias"] = Check($"{h}layernorm_before.bias", [hidden], "hidden_size", hidden);
            sd[o + "ln_2.weight"] = Check($"{h}layernorm_after.weight", [hidden], "hidden_size", hidden);
            sd[o + "ln_2.bias"] = Check($"{h}layernorm_after.bias", [hidden], "hidden_size", hidden);
            var fc1 = Get($"{h}intermediate.dense.weight");
            if (fc1.Rank != 2 || fc1.Dim(1) != hidden) Expect($"{h}intermediate.dense.weight", fc1, [inter, hidden], "hidden_size", hidden);
            Expect($"{h}intermediate.dense.weight", fc1, [inter, hidden], "intermediate_size", inter);
            sd[o + "mlp.0.weight"] = fc1;
            sd[o + "mlp.0.bias"] = Check($"{h}intermediate.dense.bias", [inter], "intermediate_size", inter);
            sd[o + "mlp.3.weight"] = Check($"{h}output.dense.weight", [hidden, inter], "intermediate_size", inter);
            sd[o + "mlp.3.bias"] = Check($"{h}output.dense.bias", [hidden], "hidden_size", hidden);
        }

        // ---- the head: classifier (ViTForImageClassification) or the pooler (ViTModel), never both in use
        int classes = 0;
        int? rep = null;
        var ignored = new List<string>();
        bool hasClassifier = weights.ContainsKey("classifier.weight");
        string[] pooler = [p + "pooler.dense.weight", p + "pooler.dense.bias"];
        if (hasClassifier)
        {
            var cw = Get("classifier.weight");
            if (cw.Rank != 2 || cw.Dim(1) != hidden) throw Bad($"hidden_size {hidden} contradicts classifier.weight of shape {S(cw)} (expected [classes, {hidden}])");
            classes = cw.Dim(0);
            sd["heads.head.weight"] = cw;
            sd["heads.head.bias"] = Check("classifier.bias", [classes], "classifier rows", classes);
            foreach (var k in pooler.Where(weights.ContainsKey)) { used.Add(k); ignored.Add(k); }
        }
        else if (pooler.Any(weights.ContainsKey))
        {
            rep = hidden;
            sd["heads.pre_logits.weight"] = Check(pooler[0], [hidden, hidden], "hidden_size", hidden);
            sd["heads.pre_logits.bias"] = Check(pooler[1], [hidden], "hidden_size", hidden);
        }

        var names = ClassNames(config, classes, hasClassifier, configName);

        var unmatched = weights.Keys.Where(k => !used.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (unmatched.Count > 0)
        {
            string hint = unmatched.Any(k => k.Contains("encoder.layer.", StringComparison.Ordinal)) ? $" (num_hidden_layers is {layers})" : "";
            if (unmatched.Any(k => k.Contains("mask_token", StringComparison.Ordinal) || k.StartsWith("decoder.", StringComparison.Ordinal))) hint += " (a ViTForMaskedImageModeling checkpoint?)";
            throw new ModelConfigException($"{weightsName}: tensors with no torchvision counterpart: {string.Join(", ", unmatched)}{hint}");
        }

        var cfg = new VisionTransformerConfig
        {
            ImageSize = image, PatchSize = patch, NumLayers = layers, NumHeads = heads, HiddenDim = hidden, MlpDim = inter,
            Dropout = dropout, AttentionDropout = attnDropout, NumClasses = classes, RepresentationSize = rep, InChans = channels, LayerNormEps = eps,
        };
        try { cfg.Validate(); }
        catch (ArgumentException e) { throw Bad(e.Message); }
        return (cfg, sd, names, ignored);
    }

    /// <summary>id2label in index order; LABEL_i (transformers' default names) when absent.</summary>
    private static List<string> ClassNames(JsonObject config, int classes, bool hasClassifier, string configName)
    {
        if (config["id2label"] is not JsonObject id2label)
        {
            if (config["id2label"] is not null) throw new ModelConfigException($"{configName}: id2label is not an object");
            return Enumerable.Range(0, classes).Select(i => $"LABEL_{i}").ToList();
        }
        var names = new string?[id2label.Count];
        foreach (var (k, v) in id2label)
        {
            if (!int.TryParse(k, NumberStyles.None, CultureInfo.InvariantCulture, out int i) || i >= names.Length || names[i] is not null)
                throw new ModelConfigException($"{configName}: id2label key '{k}' is not one of 0 … {names.Length - 1} (each once)");
            names[i] = v?.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw new ModelConfigException($"{configName}: id2label['{k}'] is not a string");
        }
        if (!hasClassifier) return [];
        if (names.Length != classes)
            throw new ModelConfigException($"{configName}: id2label has {names.Length} labels but classifier.weight has {classes} rows");
        return names.Select(n => n!).ToList();
    }

    /// <summary>Reads <c>preprocessor_config.json</c> (transformers' ViTImageProcessor defaults for fields left out).</summary>
    public static HuggingFacePreprocessing ReadPreprocessing(string path)
    {
        var j = ReadJson(path);
        var r = new HuggingFacePreprocessing
        {
            ImageProcessorType = Str(j, "image_processor_type", path) ?? Str(j, "feature_extractor_type", path),
            DoResize = Bool(j, "do_resize", true, path),
            Resample = Int(j, "resample", 2, path),
            DoRescale = Bool(j, "do_rescale", true, path),
            RescaleFactor = Float(j, "rescale_factor", 1.0 / 255, path, precise: true),
            DoNormalize = Bool(j, "do_normalize", true, path),
            ImageMean = Floats(j, "image_mean", [0.5f, 0.5f, 0.5f], path),
            ImageStd = Floats(j, "image_std", [0.5f, 0.5f, 0.5f], path),
            DoCenterCrop = Bool(j, "do_center_crop", false, path),
        };
        if (r.Resample is < 0 or > 5) throw new ModelConfigException($"{path}: resample {r.Resample} is not a PIL filter code (0 nearest, 1 Lanczos, 2 bilinear, 3 bicubic, 4 box, 5 Hamming)");
        if (!(r.RescaleFactor > 0) || !double.IsFinite(r.RescaleFactor)) throw new ModelConfigException($"{path}: rescale_factor {r.RescaleFactor} must be positive");
        if (r.ImageStd.Any(s => !(s > 0))) throw new ModelConfigException($"{path}: image_std [{string.Join(", ", r.ImageStd)}] must be positive");
        var (h, w, edge) = Size(j, "size", path);
        if (h is null && w is null && edge is null) (h, w) = (224, 224);
        r = r with { Height = h, Width = w, ShortestEdge = edge };
        if (j["crop_size"] is not null)
        {
            var (ch, cw, _) = Size(j, "crop_size", path);
            r = r with { CropHeight = ch, CropWidth = cw };
        }
        return r;
    }

    /// <summary>A size as transformers writes it: an int (square), {height, width}, or {shortest_edge}.</summary>
    private static (int? H, int? W, int? ShortestEdge) Size(JsonObject j, string field, string path)
    {
        var n = j[field];
        if (n is null) return (null, null, null);
        if (n is JsonValue) { int s = Int(j, field, 0, path); return (s, s, null); }
        if (n is not JsonObject o) throw new ModelConfigException($"{path}: {field} {n.ToJsonString()} is neither an int nor an object");
        int? Get(string k) => o[k] is null ? null : Int(o, k, 0, $"{path}: {field}");
        var (hh, ww, se) = (Get("height"), Get("width"), Get("shortest_edge"));
        if ((hh is null) != (ww is null) || (hh is null && se is null))
            throw new ModelConfigException($"{path}: {field} {n.ToJsonString()} should hold height and width, or shortest_edge");
        if (hh is < 1 || ww is < 1 || se is < 1) throw new ModelConfigException($"{path}: {field} {n.ToJsonString()} must be positive");
        return (hh, ww, se);
    }

    // ---- typed reads of JSON fields, with one-line errors naming file and field

    private static string? Str(JsonObject j, string field, string file) => j[field] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var n => throw new ModelConfigException($"{file}: {field} should be a string, got {n.ToJsonString()}"),
    };

    private static int Int(JsonObject j, string field, int fallback, string file)
    {
        var n = j[field];
        if (n is null) return fallback;
        if (n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
            && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
            return (int)d;
        throw new ModelConfigException($"{file}: {field} should be an integer, got {n.ToJsonString()}");
    }

    private static int Square(JsonObject j, string field, int fallback, string file)
    {
        if (j[field] is JsonArray a)
        {
            if (a.Count != 2 || a[0]?.ToJsonString() != a[1]?.ToJsonString())
                throw new ModelConfigException($"{file}: {field} {a.ToJsonString()} is not square; VisionTransformer needs square images and patches");
            return Int(new JsonObject { [field] = a[0]?.DeepClone() }, field, fallback, file);
        }
        return Int(j, field, fallback, file);
    }

    private static float Float(JsonObject j, string field, float fallback, string file) => (float)Float(j, field, (double)fallback, file, true);

    private static double Float(JsonObject j, string field, double fallback, string file, bool precise)
    {
        var n = j[field];
        if (n is null) return fallback;
        if (n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
            return d;
        throw new ModelConfigException($"{file}: {field} should be a number, got {n.ToJsonString()}");
    }

    private static bool Bool(JsonObject j, string field, bool fallback, string file)
    {
        var n = j[field];
        if (n is null) return fallback;
        if (n is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        throw new ModelConfigException($"{file}: {field} should be true or false, got {n.ToJsonString()}");
    }

    private static float[] Floats(JsonObject j, string field, float[] fallback, string file)
    {
        var n = j[field];
        if (n is null) return fallback;
        if (n is JsonValue) return [(float)Float(j, field, 0.0, file, true)];
        if (n is JsonArray a && a.Count > 0)
            return a.Select((e, i) => (float)Float(new JsonObject { [$"{field}[{i}]"] = e?.DeepClone() }, $"{field}[{i}]", 0.0, file, true)).ToArray();
        throw new ModelConfigException($"{file}: {field} should be a number or a list of numbers, got {n.ToJsonString()}");
    }
}
