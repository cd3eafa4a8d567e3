using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="T2TViT"/>: vit-pytorch's constructor arguments, with Python's names and defaults (a custom
/// <c>transformer</c> module is not supported).
/// </summary>
public sealed record T2TViTConfig : ModelConfig<T2TViTConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "vit_pytorch.t2t.T2TViT";

    /// <summary>vit-pytorch's default soft split: (7, 4), (3, 2), (3, 2), as in the paper.</summary>
    public static IReadOnlyList<(int Kernel, int Stride)> DefaultT2TLayers { get; } = [(7, 4), (3, 2), (3, 2)];

    /// <summary>Image side in pixels (square images).</summary>
    [Kwarg("image_size", Min = 1)] public required int ImageSize { get; init; }
    /// <summary>Number of classes (≥ 1).</summary>
    [Kwarg("num_classes", Min = 1)] public required int NumClasses { get; init; }
    /// <summary>Token width C of the main transformer.</summary>
    [Kwarg("dim", Min = 1)] public required int Dim { get; init; }
    /// <summary>Layers of the main transformer.</summary>
    [Kwarg("depth", Min = 0)] public required int Depth { get; init; }
    /// <summary>Attention heads of the main transformer.</summary>
    [Kwarg("heads", Min = 1)] public required int Heads { get; init; }
    /// <summary>Hidden width of the main transformer's feed-forward blocks.</summary>
    [Kwarg("mlp_dim", Min = 1)] public required int MlpDim { get; init; }
    /// <summary>"cls" (token 0) or "mean" (mean over all tokens, the class token included).</summary>
    [Kwarg("pool", OneOf = ["cls", "mean"])] public string Pool { get; init; } = "cls";
    /// <summary>Input channels.</summary>
    [Kwarg("channels", Min = 1)] public int Channels { get; init; } = 3;
    /// <summary>Head width D of the main transformer.</summary>
    [Kwarg("dim_head", Min = 1)] public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside every transformer (the soft-split ones included).</summary>
    [Kwarg("dropout", Rate = true)] public float Dropout { get; init; }
    /// <summary>Dropout after adding the positions.</summary>
    [Kwarg("emb_dropout", Rate = true)] public float EmbDropout { get; init; }
    /// <summary>The soft-split stages as (kernel, stride); each unfolds with padding stride / 2.</summary>
    [Kwarg("t2t_layers", Converter = typeof(KernelStrideList))] public IReadOnlyList<(int Kernel, int Stride)> T2TLayers { get; init; } = DefaultT2TLayers;

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

    /// <summary>
    /// Reads vit_pytorch.t2t.T2TViT's keyword arguments. <c>t2t_layers</c> is a list of [kernel, stride] pairs; depth, heads
    /// and mlp_dim are required because a custom <c>transformer</c> is not supported.
    /// </summary>
    public static new T2TViTConfig FromKwargs(ModelFactory.Kwargs k)
    {
        if (k.Node("transformer") is { } custom)
            throw new ArgumentException($"a custom 'transformer' module is not supported (got {custom.ToJsonString()}); give depth, heads and mlp_dim instead");
        if (k.Node("depth") is null || k.Node("heads") is null || k.Node("mlp_dim") is null)
            throw new ArgumentException("depth, heads, and mlp_dim must be supplied");
        return ModelConfig<T2TViTConfig>.FromKwargs(k);
    }

    /// <summary>t2t_layers: a list of [kernel, stride] pairs.</summary>
    private sealed class KernelStrideList : IKwargConverter
    {
        public object Read(JsonNode node, object config)
        {
            string Bad() => $"t2t_layers must be a list of (kernel, stride) pairs, e.g. [[7, 4], [3, 2], [3, 2]], got {node.ToJsonString()}";
            if (node is not JsonArray stages || stages.Count == 0) throw new ArgumentException(Bad());
            return stages.Select(stage => stage is JsonArray { Count: 2 } pair && AsInt(pair[0]) is int kernel && AsInt(pair[1]) is int stride
                ? (kernel, stride) : throw new ArgumentException(Bad())).ToList();
        }

        public JsonNode? Write(object? value) =>
            new JsonArray(((IReadOnlyList<(int Kernel, int Stride)>)value!).Select(l => (JsonNode)new JsonArray(l.Kernel, l.Stride)).ToArray());

        private static int? AsInt(JsonNode? n) => n is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;
    }

    /// <inheritdoc/>
    protected override void CheckMore()
    {
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

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (Channels, ImageSize, ImageSize);
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
public sealed class T2TViT : ImageModel<T2TViTConfig>
{
    private readonly Dropout _embDropout;

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
    public T2TViT(T2TViTConfig config) : base(config)
    {
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

    /// <summary>Tokens after the main transformer (and its final LayerNorm): [B, N + 1, C], the class token first.</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        var x = VitLayers.Prepend(ClsToken, ToPatchEmbedding.Forward(img)); // [B, N + 1, C]
        x = _embDropout.Forward(x + PosEmbedding);
        return Transformer.Forward(x);
    }

    /// <summary>Pooling: token 0 ('cls') or the mean over all N + 1 tokens ('mean'). [B, N + 1, C] → [B, C].</summary>
    public Tensor Pool(Tensor tokens) => VitLayers.Pool(tokens, Config.Pool);

    /// <summary>Pooling, <c>to_latent</c> and the classifier; with <paramref name="preLogits"/> the pooled features [B, C].</summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        var x = ToLatent.Forward(Pool(tokens));
        return preLogits ? x : MlpHead.Forward(x);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
