using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="PiT"/>: vit-pytorch's constructor arguments, with Python's names and defaults (depth a
/// tuple of stage depths, heads an int or one per stage).
/// </summary>
public sealed record PiTConfig : ModelConfig<PiTConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "vit_pytorch.pit.PiT";

    /// <summary>Image side in pixels (square images).</summary>
    [Kwarg("image_size", Min = 1)] public required int ImageSize { get; init; }
    /// <summary>Patch side p; patches overlap, the unfold stride being p / 2.</summary>
    [Kwarg("patch_size", Min = 2)] public required int PatchSize { get; init; }
    /// <summary>Number of classes (≥ 1).</summary>
    [Kwarg("num_classes", Min = 1)] public required int NumClasses { get; init; }
    /// <summary>Token width C of the first stage; every pooling doubles it.</summary>
    [Kwarg("dim", Min = 1)] public required int Dim { get; init; }
    /// <summary>Transformer layers per stage (one stage per entry, a pooling between consecutive stages).</summary>
    [Kwarg("depth", Converter = typeof(StageDepths))] public required int[] Depth { get; init; }
    /// <summary>Attention heads per stage (same length as <see cref="Depth"/>; an int in Python is used for every stage).</summary>
    [Kwarg("heads", Min = 1, Converter = typeof(HeadsPerStage))] public required int[] Heads { get; init; }
    /// <summary>Hidden width of every feed-forward block (the same in all stages).</summary>
    [Kwarg("mlp_dim", Min = 1)] public required int MlpDim { get; init; }
    /// <summary>Head width D (the same in all stages).</summary>
    [Kwarg("dim_head", Min = 1)] public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside the transformers.</summary>
    [Kwarg("dropout", Rate = true)] public float Dropout { get; init; }
    /// <summary>Dropout after adding the positions.</summary>
    [Kwarg("emb_dropout", Rate = true)] public float EmbDropout { get; init; }
    /// <summary>Input channels.</summary>
    [Kwarg("channels", Min = 1)] public int Channels { get; init; } = 3;

    /// <summary>Stride of the patch unfold: p / 2.</summary>
    public int PatchStride => PatchSize / 2;

    /// <summary>Number of stages.</summary>
    public int Stages => Depth.Length;

    /// <summary>Token width of stage <paramref name="stage"/>: dim · 2^stage.</summary>
    public int StageDim(int stage) => checked(Dim << stage);

    /// <summary>Side of stage <paramref name="stage"/>'s token grid: ⌊(image − p) / (p / 2)⌋ + 1, then ⌊(side − 1) / 2⌋ + 1 per pooling.</summary>
    public int StageSide(int stage)
    {
        int side = (ImageSize - PatchSize) / PatchStride + 1;
        for (int i = 0; i < stage; i++) side = (side - 1) / 2 + 1;
        return side;
    }

    /// <summary>Number of patch tokens N of the first stage (the transformer sees N + 1).</summary>
    public int NumPatches => StageSide(0) * StageSide(0);

    /// <summary>Token width of the last stage (the head's input).</summary>
    public int FinalDim => StageDim(Stages - 1);

    /// <summary>depth: a tuple of stage depths.</summary>
    private sealed class StageDepths : IKwargConverter
    {
        public object Read(JsonNode node, object config) => IntTuple(node)
            ?? throw new ArgumentException($"depth must be a tuple of stage depths, e.g. [3, 6, 4], got {node.ToJsonString()}");

        public JsonNode? Write(object? value) => new JsonArray(((int[])value!).Select(d => (JsonNode)d).ToArray());
    }

    /// <summary>heads: an int (used in every stage, as <c>cast_tuple</c>) or a tuple with one entry per stage; written as an int when all agree.</summary>
    private sealed class HeadsPerStage : IKwargConverter
    {
        public object Read(JsonNode node, object config) =>
            AsInt(node) is int h ? Enumerable.Repeat(h, ((PiTConfig)config).Depth.Length).ToArray()
            : IntTuple(node) ?? throw new ArgumentException($"heads must be an int or a tuple with one int per stage, got {node.ToJsonString()}");

        public JsonNode? Write(object? value) =>
            value is int[] { Length: > 0 } h && h.All(x => x == h[0]) ? h[0] : new JsonArray(((int[])value!).Select(x => (JsonNode)x).ToArray());
    }

    private static int? AsInt(JsonNode? n) => n is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;

    private static int[]? IntTuple(JsonNode n) =>
        n is JsonArray a && a.All(e => AsInt(e) is not null) ? a.Select(e => AsInt(e)!.Value).ToArray() : null;

    /// <inheritdoc/>
    protected override void CheckMore()
    {
        if (Depth.Length == 0 || Depth.Any(d => d < 1))
            throw new ArgumentException($"depth must be a tuple of stage depths ≥ 1, e.g. [3, 6, 4], got [{string.Join(", ", Depth)}]");
        if (Heads.Length != Depth.Length)
            throw new ArgumentException($"heads must be an int or a tuple with one entry per stage ({Depth.Length}), got [{string.Join(", ", Heads)}]");
        Check.Divisible((ImageSize, ImageSize), (PatchSize, PatchSize));
        if (Depth.Length > 20 || (long)Dim << (Depth.Length - 1) > 1 << 20)
            throw new ArgumentException($"dim {Dim} doubled over {Depth.Length} stages is too wide");
    }

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (Channels, ImageSize, ImageSize);
}

/// <summary>
/// vit-pytorch's <c>pit.DepthWiseConv2d</c>: <c>net.0</c> depthwise Conv2d(C_in → C_out, kernel, stride, padding, groups C_in)
/// then <c>net.1</c> pointwise Conv2d(C_out → C_out, 1). Images [B, C_in, H, W] → [B, C_out, H', W'].
/// </summary>
public sealed class DepthWiseConv2d : Module
{
    /// <summary>The two convolutions (key <c>net</c>).</summary>
    public Sequential Net { get; }

    /// <summary>Creates the block.</summary>
    public DepthWiseConv2d(int dimIn, int dimOut, int kernelSize, int padding, int stride, bool bias = true)
    {
        Net = RegisterModule("net", new Sequential(
            new Conv2d(dimIn, dimOut, kernelSize, stride, padding, groups: dimIn, bias: bias),
            new Conv2d(dimOut, dimOut, 1, bias: bias)));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x) => Net.Forward(x);
}

/// <summary>
/// vit-pytorch's <c>pit.Pool</c> between two PiT stages: the class token goes through <c>cls_ff</c> Linear(C → 2C); the
/// other N tokens become a √N × √N image, pass through <c>downsample</c> (<see cref="DepthWiseConv2d"/> C → 2C, kernel 3,
/// stride 2, padding 1) and become tokens again. [B, 1 + s², C] → [B, 1 + ⌈s/2⌉², 2C].
/// </summary>
public sealed class PiTPool : Module
{
    private readonly TokensToImage _toImage = new();

    /// <summary>The token downsampling (key <c>downsample</c>).</summary>
    public DepthWiseConv2d Downsample { get; }
    /// <summary>The class token's projection (key <c>cls_ff</c>).</summary>
    public Linear ClsFf { get; }

    /// <summary>Creates the pooling for tokens of width <paramref name="dim"/>.</summary>
    public PiTPool(int dim)
    {
        Downsample = RegisterModule("downsample", new DepthWiseConv2d(dim, dim * 2, kernelSize: 3, padding: 1, stride: 2));
        ClsFf = RegisterModule("cls_ff", new Linear(dim, dim * 2));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        int b = x.Dim(0), n = x.Dim(1);
        var cls = ClsFf.Forward(x.Slice(1, 0, 1));                              // [B, 1, 2C]
        var img = Downsample.Forward(_toImage.Forward(x.Slice(1, 1, n - 1)));   // [B, 2C, h, w]
        var tokens = img.Reshape(b, img.Dim(1), img.Dim(2) * img.Dim(3)).Transpose(1, 2);
        return Tensor.Cat([cls, tokens], 1);
    }
}

/// <summary>
/// Pooling-based Vision Transformer exactly as vit-pytorch 1.23.6 <c>vit_pytorch.pit.PiT</c>: <c>to_patch_embedding</c> =
/// Unfold(p, stride p / 2) → columns to tokens → Linear(c·p² → C) (key <c>to_patch_embedding.2</c>); class token
/// [1, 1, C] and positions [1, N + 1, C]; dropout; <c>layers</c> = Sequential of one <see cref="Transformer"/> per stage
/// (no final LayerNorm) with a <see cref="PiTPool"/> between consecutive stages, each doubling C; <c>mlp_head</c> =
/// LayerNorm → Linear on token 0. Images [B, c, H, H] → logits [B, classes].
/// </summary>
public sealed class PiT : ImageModel<PiTConfig>
{
    private readonly Dropout _embDropout;

    /// <summary>Patch embedding (key <c>to_patch_embedding</c>).</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>Learned positions [1, N + 1, C] (key <c>pos_embedding</c>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>Class token [1, 1, C] (key <c>cls_token</c>).</summary>
    public Tensor ClsToken { get; }
    /// <summary>Stages and poolings in order (key <c>layers</c>: transformers at even indices, poolings at odd ones).</summary>
    public Sequential Layers { get; }
    /// <summary>The stages' transformers.</summary>
    public IReadOnlyList<Transformer> StageTransformers { get; }
    /// <summary>The poolings between stages.</summary>
    public IReadOnlyList<PiTPool> Pools { get; }
    /// <summary>Head: <c>mlp_head.0</c> LayerNorm, <c>mlp_head.1</c> Linear(C_last → classes).</summary>
    public Sequential MlpHead { get; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public PiT(PiTConfig config) : base(config)
    {
        int p = config.PatchSize;
        ToPatchEmbedding = RegisterModule("to_patch_embedding", new Sequential(
            new Unfold(p, config.PatchStride), new ColumnsToTokens(), new Linear(config.Channels * p * p, config.Dim)));
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 1, 1, config.NumPatches + 1, config.Dim));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(Init.Rng, 0, 1, 1, 1, config.Dim));
        _embDropout = RegisterModule("dropout", new Dropout(config.EmbDropout));
        var layers = new Sequential();
        var transformers = new List<Transformer>();
        var pools = new List<PiTPool>();
        for (int i = 0; i < config.Stages; i++)
        {
            int dim = config.StageDim(i);
            var t = new Transformer(dim, config.Depth[i], config.Heads[i], config.DimHead, config.MlpDim, config.Dropout, finalNorm: false);
            transformers.Add(t);
            layers.Add(t);
            if (i < config.Stages - 1)
            {
                var pool = new PiTPool(dim);
                pools.Add(pool);
                layers.Add(pool);
            }
        }
        Layers = RegisterModule("layers", layers);
        StageTransformers = transformers;
        Pools = pools;
        MlpHead = RegisterModule("mlp_head", new Sequential(new LayerNorm(config.FinalDim), new Linear(config.FinalDim, config.NumClasses)));
    }

    /// <summary>Tokens after the last stage: [B, 1 + s², C_last] (class token first, s the last stage's grid side).</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        var x = VitLayers.Prepend(ClsToken, ToPatchEmbedding.Forward(img)); // [B, N + 1, C]
        x = _embDropout.Forward(x + PosEmbedding);
        return Layers.Forward(x);
    }

    /// <summary>
    /// The head on token 0: LayerNorm (<c>mlp_head.0</c>) then the classifier (<c>mlp_head.1</c>). With
    /// <paramref name="preLogits"/> returns the normalised class token [B, C_last] (the classifier's input, as timm's PiT).
    /// </summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        var cls = tokens.Slice(1, 0, 1).Reshape(tokens.Dim(0), tokens.Dim(2));
        if (!preLogits) return MlpHead.Forward(cls);
        return MlpHead[0].Forward(cls);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
