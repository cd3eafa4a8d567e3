using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="PiT"/>, with vit-pytorch's constructor arguments (image_size, patch_size, num_classes, dim,
/// depth — a tuple of stage depths —, heads — an int or one per stage —, mlp_dim, dim_head, dropout, emb_dropout, channels).
/// </summary>
public sealed record PiTConfig
{
    /// <summary>The reference constructor's full Python name.</summary>
    public const string Constructor = "vit_pytorch.pit.PiT";

    /// <summary>Image side in pixels (square images).</summary>
    public required int ImageSize { get; init; }
    /// <summary>Patch side p; patches overlap, the unfold stride being p / 2.</summary>
    public required int PatchSize { get; init; }
    /// <summary>Number of classes (≥ 1).</summary>
    public required int NumClasses { get; init; }
    /// <summary>Token width C of the first stage; every pooling doubles it.</summary>
    public required int Dim { get; init; }
    /// <summary>Transformer layers per stage (one stage per entry, a pooling between consecutive stages).</summary>
    public required int[] Depth { get; init; }
    /// <summary>Attention heads per stage (same length as <see cref="Depth"/>).</summary>
    public required int[] Heads { get; init; }
    /// <summary>Hidden width of every feed-forward block (the same in all stages).</summary>
    public required int MlpDim { get; init; }
    /// <summary>Head width D (the same in all stages).</summary>
    public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside the transformers.</summary>
    public float Dropout { get; init; }
    /// <summary>Dropout after adding position embeddings.</summary>
    public float EmbDropout { get; init; }
    /// <summary>Input channels.</summary>
    public int Channels { get; init; } = 3;

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

    /// <summary>The configuration as vit_pytorch.pit.PiT keyword arguments (depth as a list; heads an int when all stages agree).</summary>
    public JsonObject ToKwargs() => new()
    {
        ["image_size"] = ImageSize, ["patch_size"] = PatchSize, ["num_classes"] = NumClasses, ["dim"] = Dim,
        ["depth"] = new JsonArray(Depth.Select(d => (JsonNode)d).ToArray()),
        ["heads"] = Heads.Length > 0 && Heads.All(h => h == Heads[0]) ? Heads[0] : new JsonArray(Heads.Select(h => (JsonNode)h).ToArray()),
        ["mlp_dim"] = MlpDim, ["dim_head"] = DimHead, ["dropout"] = Dropout, ["emb_dropout"] = EmbDropout, ["channels"] = Channels,
    };

    /// <summary>
    /// Reads vit_pytorch.pit.PiT's keyword arguments: <c>depth</c> must be a list (Python's tuple) of stage depths; <c>heads</c>
    /// an int (used in every stage, as <c>cast_tuple</c>) or a list with one entry per stage.
    /// </summary>
    public static PiTConfig FromKwargs(ModelFactory.Kwargs k)
    {
        var depthNode = k.Node("depth") ?? throw new ArgumentException("missing required argument 'depth' (a tuple of stage depths, e.g. [3, 6, 4])");
        int[] depth = IntTuple(depthNode)
            ?? throw new ArgumentException($"depth must be a tuple of stage depths, e.g. [3, 6, 4], got {depthNode.ToJsonString()}");
        var headsNode = k.Node("heads") ?? throw new ArgumentException("missing required argument 'heads'");
        int[] heads = AsInt(headsNode) is int h ? Enumerable.Repeat(h, depth.Length).ToArray()
            : IntTuple(headsNode) ?? throw new ArgumentException($"heads must be an int or a tuple with one int per stage, got {headsNode.ToJsonString()}");
        return new PiTConfig
        {
            ImageSize = k.Int("image_size"), PatchSize = k.Int("patch_size"), NumClasses = k.Int("num_classes"), Dim = k.Int("dim"),
            Depth = depth, Heads = heads, MlpDim = k.Int("mlp_dim"), DimHead = k.Int("dim_head", 64),
            Dropout = k.Float("dropout", 0f), EmbDropout = k.Float("emb_dropout", 0f), Channels = k.Int("channels", 3),
        };
    }

    private static int? AsInt(JsonNode? n) => n is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;

    private static int[]? IntTuple(JsonNode n)
    {
        if (n is not JsonArray a) return null;
        var r = new int[a.Count];
        for (int i = 0; i < a.Count; i++)
        {
            if (AsInt(a[i]) is not int v) return null;
            r[i] = v;
        }
        return r;
    }

    /// <summary>Checks the configuration; throws <see cref="ArgumentException"/> with a one-line message naming the problem.</summary>
    public void Validate()
    {
        if (Depth is null || Depth.Length == 0 || Depth.Any(d => d < 1))
            throw new ArgumentException($"depth must be a tuple of stage depths ≥ 1, e.g. [3, 6, 4], got [{string.Join(", ", Depth ?? [])}]");
        if (Heads is null || Heads.Length != Depth.Length)
            throw new ArgumentException($"heads must be an int or a tuple with one entry per stage ({Depth.Length}), got [{string.Join(", ", Heads ?? [])}]");
        if (Heads.Any(h => h < 1)) throw new ArgumentException($"heads must be ≥ 1, got [{string.Join(", ", Heads)}]");
        if (ImageSize < 1) throw new ArgumentException($"image_size must be positive, got {ImageSize}");
        if (PatchSize < 2) throw new ArgumentException($"patch_size must be ≥ 2 (PiT unfolds with stride patch_size // 2), got {PatchSize}");
        if (PatchSize > ImageSize || ImageSize % PatchSize != 0)
            throw new ArgumentException($"image_size {ImageSize} is not divisible by patch_size {PatchSize} (PiT's unfold needs whole patches)");
        if (Channels < 1) throw new ArgumentException($"channels must be positive, got {Channels}");
        if (NumClasses < 1) throw new ArgumentException($"num_classes must be ≥ 1, got {NumClasses}");
        if (Dim < 1 || DimHead < 1 || MlpDim < 1)
            throw new ArgumentException($"dim, dim_head and mlp_dim must be positive (dim {Dim}, dim_head {DimHead}, mlp_dim {MlpDim})");
        if (Depth.Length > 20 || (long)Dim << (Depth.Length - 1) > 1 << 20)
            throw new ArgumentException($"dim {Dim} doubled over {Depth.Length} stages is too wide");
        if (Dropout < 0 || Dropout > 1 || EmbDropout < 0 || EmbDropout > 1) throw new ArgumentException("dropout rates must lie in [0, 1]");
    }
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
public sealed class PiT : Module, IImageModel
{
    private readonly Dropout _embDropout;

    /// <summary>The configuration this model was built from.</summary>
    public PiTConfig Config { get; }

    /// <inheritdoc/>
    public int InputChannels => Config.Channels;
    /// <inheritdoc/>
    public int InputHeight => Config.ImageSize;
    /// <inheritdoc/>
    public int InputWidth => Config.ImageSize;
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
    public PiT(PiTConfig config)
    {
        config.Validate();
        Config = config;
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

    /// <summary>Checks an image batch against the configuration; throws an <see cref="ArgumentException"/> naming the mismatch.</summary>
    public void CheckInput(Tensor img) => ImageInput.Check(img, Config.Channels, Config.ImageSize, Config.ImageSize);

    /// <summary>Tokens after the last stage: [B, 1 + s², C_last] (class token first, s the last stage's grid side).</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        int b = img.Dim(0), dim = Config.Dim;
        var x = ToPatchEmbedding.Forward(img);                               // [B, N, C]
        x = Tensor.Cat([ClsToken.BroadcastTo(b, 1, dim), x], 1);             // [B, N + 1, C]
        x = x + PosEmbedding;
        x = _embDropout.Forward(x);
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
