using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="T2TViT"/>, with vit-pytorch's constructor arguments (image_size, num_classes, dim, depth,
/// heads, mlp_dim, pool, channels, dim_head, dropout, emb_dropout, t2t_layers; a custom <c>transformer</c> module is not
/// supported).
/// </summary>
public sealed record T2TViTConfig
{
    /// <summary>The reference constructor's full Python name.</summary>
    public const string Constructor = "vit_pytorch.t2t.T2TViT";

    /// <summary>vit-pytorch's default soft split: (7, 4), (3, 2), (3, 2), as in the paper.</summary>
    public static IReadOnlyList<(int Kernel, int Stride)> DefaultT2TLayers { get; } = [(7, 4), (3, 2), (3, 2)];

    /// <summary>Image side in pixels (square images).</summary>
    public required int ImageSize { get; init; }
    /// <summary>Number of classes (≥ 1).</summary>
    public required int NumClasses { get; init; }
    /// <summary>Token width C of the main transformer.</summary>
    public required int Dim { get; init; }
    /// <summary>Layers of the main transformer.</summary>
    public required int Depth { get; init; }
    /// <summary>Attention heads of the main transformer.</summary>
    public required int Heads { get; init; }
    /// <summary>Hidden width of the main transformer's feed-forward blocks.</summary>
    public required int MlpDim { get; init; }
    /// <summary>"cls" (token 0) or "mean" (mean over all tokens, the class token included).</summary>
    public string Pool { get; init; } = "cls";
    /// <summary>Input channels.</summary>
    public int Channels { get; init; } = 3;
    /// <summary>Head width D of the main transformer.</summary>
    public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside every transformer (the soft-split ones included).</summary>
    public float Dropout { get; init; }
    /// <summary>Dropout after adding position embeddings.</summary>
    public float EmbDropout { get; init; }
    /// <summary>The soft-split stages as (kernel, stride); each unfolds with padding stride / 2.</summary>
    public IReadOnlyList<(int Kernel, int Stride)> T2TLayers { get; init; } = DefaultT2TLayers;

    /// <summary>Token width after stage <paramref name="stage"/>'s unfold: channels · Π kernel² over stages 0..stage.</summary>
    public int StageWidth(int stage)
    {
        long w = Channels;
        for (int i = 0; i <= stage; i++) w *= (long)T2TLayers[i].Kernel * T2TLayers[i].Kernel;
        return checked((int)w);
    }

    /// <summary>Image side after stage <paramref name="stage"/>'s unfold: ⌊(side − k + 2·(s / 2)) / s⌋ + 1, stage by stage.</summary>
    public int StageSide(int stage)
    {
        int side = ImageSize;
        for (int i = 0; i <= stage; i++)
        {
            var (k, s) = T2TLayers[i];
            side = (side - k + 2 * (s / 2)) / s + 1;
        }
        return side;
    }

    /// <summary>Width of the tokens the soft split hands to <c>Linear(width → dim)</c>.</summary>
    public int TokenWidth => StageWidth(T2TLayers.Count - 1);

    /// <summary>Number of patch tokens N after the last soft split (the transformer sees N + 1).</summary>
    public int NumPatches => StageSide(T2TLayers.Count - 1) * StageSide(T2TLayers.Count - 1);

    /// <summary>The configuration as vit_pytorch.t2t.T2TViT keyword arguments (Python names, t2t_layers as nested lists).</summary>
    public JsonObject ToKwargs() => new()
    {
        ["image_size"] = ImageSize, ["num_classes"] = NumClasses, ["dim"] = Dim, ["depth"] = Depth, ["heads"] = Heads,
        ["mlp_dim"] = MlpDim, ["pool"] = Pool, ["channels"] = Channels, ["dim_head"] = DimHead, ["dropout"] = Dropout,
        ["emb_dropout"] = EmbDropout,
        ["t2t_layers"] = new JsonArray(T2TLayers.Select(l => (JsonNode)new JsonArray(l.Kernel, l.Stride)).ToArray()),
    };

    /// <summary>
    /// Reads vit_pytorch.t2t.T2TViT's keyword arguments. <c>t2t_layers</c> is a list of [kernel, stride] pairs (default
    /// [[7, 4], [3, 2], [3, 2]]); depth, heads and mlp_dim are required because a custom <c>transformer</c> is not supported.
    /// </summary>
    public static T2TViTConfig FromKwargs(ModelFactory.Kwargs k)
    {
        if (k.Node("transformer") is { } custom)
            throw new ArgumentException($"a custom 'transformer' module is not supported (got {custom.ToJsonString()}); give depth, heads and mlp_dim instead");
        int? depth = k.IntOrNull("depth"), heads = k.IntOrNull("heads"), mlp = k.IntOrNull("mlp_dim");
        if (depth is null || heads is null || mlp is null) throw new ArgumentException("depth, heads, and mlp_dim must be supplied");
        return new T2TViTConfig
        {
            ImageSize = k.Int("image_size"), NumClasses = k.Int("num_classes"), Dim = k.Int("dim"),
            Depth = depth.Value, Heads = heads.Value, MlpDim = mlp.Value, Pool = k.String("pool", "cls"),
            Channels = k.Int("channels", 3), DimHead = k.Int("dim_head", 64), Dropout = k.Float("dropout", 0f),
            EmbDropout = k.Float("emb_dropout", 0f), T2TLayers = ReadLayers(k.Node("t2t_layers")),
        };
    }

    private static IReadOnlyList<(int, int)> ReadLayers(JsonNode? node)
    {
        if (node is null) return DefaultT2TLayers;
        string Bad() => $"t2t_layers must be a list of (kernel, stride) pairs, e.g. [[7, 4], [3, 2], [3, 2]], got {node.ToJsonString()}";
        if (node is not JsonArray stages || stages.Count == 0) throw new ArgumentException(Bad());
        var layers = new List<(int, int)>();
        foreach (var stage in stages)
        {
            if (stage is not JsonArray pair || pair.Count != 2 || AsInt(pair[0]) is not int kernel || AsInt(pair[1]) is not int stride)
                throw new ArgumentException(Bad());
            layers.Add((kernel, stride));
        }
        return layers;
    }

    private static int? AsInt(JsonNode? n) => n is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;

    /// <summary>Checks the configuration; throws <see cref="ArgumentException"/> with a one-line message naming the problem.</summary>
    public void Validate()
    {
        if (ImageSize < 1) throw new ArgumentException($"image_size must be positive, got {ImageSize}");
        if (Channels < 1) throw new ArgumentException($"channels must be positive, got {Channels}");
        if (NumClasses < 1) throw new ArgumentException($"num_classes must be ≥ 1, got {NumClasses}");
        if (Dim < 1 || Depth < 0 || Heads < 1 || DimHead < 1 || MlpDim < 1)
            throw new ArgumentException($"dim, heads, dim_head and mlp_dim must be positive and depth ≥ 0 (dim {Dim}, depth {Depth}, heads {Heads}, dim_head {DimHead}, mlp_dim {MlpDim})");
        if (Pool != "cls" && Pool != "mean") throw new ArgumentException($"pool must be 'cls' or 'mean', got '{Pool}'");
        if (Dropout < 0 || Dropout > 1 || EmbDropout < 0 || EmbDropout > 1) throw new ArgumentException("dropout rates must lie in [0, 1]");
        if (T2TLayers is null || T2TLayers.Count == 0)
            throw new ArgumentException("t2t_layers must be a non-empty list of (kernel, stride) pairs, e.g. [[7, 4], [3, 2], [3, 2]]");
        int side = ImageSize;
        long width = Channels;
        for (int i = 0; i < T2TLayers.Count; i++)
        {
            var (k, s) = T2TLayers[i];
            if (k < 1 || s < 1) throw new ArgumentException($"t2t_layers[{i}] = ({k}, {s}): kernel and stride must be ≥ 1");
            int pad = s / 2;
            if (side + 2 * pad < k)
                throw new ArgumentException($"t2t_layers[{i}] = ({k}, {s}): a {k}×{k} kernel with padding {pad} does not fit the {side}×{side} image of that stage (image_size {ImageSize})");
            side = (side - k + 2 * pad) / s + 1;
            width *= (long)k * k;
            if (width > int.MaxValue / 4)
                throw new ArgumentException($"t2t_layers unfold to tokens of width {width} at stage {i}, too large");
        }
    }
}

/// <summary>
/// Tokens-to-Token ViT exactly as vit-pytorch 1.23.6 <c>vit_pytorch.t2t.T2TViT</c>. <c>to_patch_embedding</c> is a
/// Sequential of four modules per soft-split stage — [Identity (first stage) or tokens → square image, Unfold(k, s,
/// padding s / 2), columns → tokens, a one-layer <see cref="Transformer"/> at the unfolded width with one head of that
/// width (so no <c>to_out</c>), mlp = width and its final LayerNorm (Identity after the last stage)] — then
/// Linear(width → dim). Then class token [1, 1, C] and positions [1, N + 1, C], dropout, the main
/// <see cref="Transformer"/> (with its final LayerNorm), pooling (token 0 or the mean over all tokens), <c>to_latent</c>
/// (Identity) and <c>mlp_head</c> Linear(C → classes). Images [B, c, H, H] → logits [B, classes].
/// </summary>
public sealed class T2TViT : Module, IImageModel
{
    private readonly Dropout _embDropout;

    /// <summary>The configuration this model was built from.</summary>
    public T2TViTConfig Config { get; }

    /// <inheritdoc/>
    public int InputChannels => Config.Channels;
    /// <inheritdoc/>
    public int InputHeight => Config.ImageSize;
    /// <inheritdoc/>
    public int InputWidth => Config.ImageSize;
    /// <summary>The soft split and the final projection (key <c>to_patch_embedding</c>; stage i's modules at 4i..4i+3, the Linear last).</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>The soft-split transformers, one per stage but the last (keys <c>to_patch_embedding.{4i+3}</c>).</summary>
    public IReadOnlyList<Transformer> SoftSplitTransformers { get; }
    /// <summary>Learned positions [1, N + 1, C] (key <c>pos_embedding</c>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>Class token [1, 1, C] (key <c>cls_token</c>).</summary>
    public Tensor ClsToken { get; }
    /// <summary>The main transformer (key <c>transformer</c>).</summary>
    public Transformer Transformer { get; }
    /// <summary>Identity before the head (key <c>to_latent</c>, as in the reference).</summary>
    public Identity ToLatent { get; }
    /// <summary>Classifier Linear(C → classes) (key <c>mlp_head</c>).</summary>
    public Linear MlpHead { get; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public T2TViT(T2TViTConfig config)
    {
        config.Validate();
        Config = config;
        var embed = new Sequential();
        var splitTransformers = new List<Transformer>();
        int stages = config.T2TLayers.Count;
        for (int i = 0; i < stages; i++)
        {
            var (k, s) = config.T2TLayers[i];
            int width = config.StageWidth(i);
            embed.Add(i == 0 ? new Identity() : new TokensToImage());
            embed.Add(new Unfold(k, s, s / 2));
            embed.Add(new ColumnsToTokens());
            if (i < stages - 1)
            {
                var t = new Transformer(width, depth: 1, heads: 1, dimHead: width, mlpDim: width, config.Dropout);
                splitTransformers.Add(t);
                embed.Add(t);
            }
            else embed.Add(new Identity());
        }
        embed.Add(new Linear(config.TokenWidth, config.Dim));
        ToPatchEmbedding = RegisterModule("to_patch_embedding", embed);
        SoftSplitTransformers = splitTransformers;
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 1, 1, config.NumPatches + 1, config.Dim));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(Init.Rng, 0, 1, 1, 1, config.Dim));
        _embDropout = RegisterModule("dropout", new Dropout(config.EmbDropout));
        Transformer = RegisterModule("transformer", new Transformer(config.Dim, config.Depth, config.Heads, config.DimHead, config.MlpDim, config.Dropout));
        ToLatent = RegisterModule("to_latent", new Identity());
        MlpHead = RegisterModule("mlp_head", new Linear(config.Dim, config.NumClasses));
    }

    /// <summary>Checks an image batch against the configuration; throws an <see cref="ArgumentException"/> naming the mismatch.</summary>
    public void CheckInput(Tensor img) => ImageInput.Check(img, Config.Channels, Config.ImageSize, Config.ImageSize);

    /// <summary>Tokens after the main transformer (and its final LayerNorm): [B, N + 1, C], the class token first.</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        int b = img.Dim(0), dim = Config.Dim;
        var x = ToPatchEmbedding.Forward(img);                               // [B, N, C]
        x = Tensor.Cat([ClsToken.BroadcastTo(b, 1, dim), x], 1);             // [B, N + 1, C]
        x = x + PosEmbedding;
        x = _embDropout.Forward(x);
        return Transformer.Forward(x);
    }

    /// <summary>Pooling: token 0 ('cls') or the mean over all N + 1 tokens ('mean'). [B, N + 1, C] → [B, C].</summary>
    public Tensor Pool(Tensor tokens) =>
        Config.Pool == "mean" ? tokens.Mean(1) : tokens.Slice(1, 0, 1).Reshape(tokens.Dim(0), tokens.Dim(2));

    /// <summary>Pooling, <c>to_latent</c> and the classifier; with <paramref name="preLogits"/> the pooled features [B, C].</summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        var x = ToLatent.Forward(Pool(tokens));
        return preLogits ? x : MlpHead.Forward(x);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
