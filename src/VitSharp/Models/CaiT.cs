using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="CaiT"/>: vit-pytorch's constructor arguments, with Python's names and defaults. The
/// reference takes square RGB images only: plain ints for the sizes and a hard-coded 3 channels.
/// </summary>
public sealed record CaiTConfig : ModelConfig<CaiTConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "vit_pytorch.cait.CaiT";

    /// <summary>Input channels: always 3 (the reference hard-codes its patch width as 3·p²).</summary>
    public const int Channels = 3;

    /// <summary>Image side in pixels (square images).</summary>
    [Kwarg("image_size", Min = 1)] public required int ImageSize { get; init; }
    /// <summary>Patch side (square patches).</summary>
    [Kwarg("patch_size", Min = 1)] public required int PatchSize { get; init; }
    /// <summary>Number of classes (0 gives logits [B, 0], as the reference's <c>Linear(dim, 0)</c>).</summary>
    [Kwarg("num_classes", Min = 0)] public required int NumClasses { get; init; }
    /// <summary>Token width C.</summary>
    [Kwarg("dim", Min = 1)] public required int Dim { get; init; }
    /// <summary>Layers of the patch transformer (self-attention over the patches).</summary>
    [Kwarg("depth", Min = 0)] public required int Depth { get; init; }
    /// <summary>Layers of the class-attention transformer (the class token attends to itself and the patches).</summary>
    [Kwarg("cls_depth", Min = 0)] public required int ClsDepth { get; init; }
    /// <summary>Attention heads H.</summary>
    [Kwarg("heads", Min = 1)] public required int Heads { get; init; }
    /// <summary>Hidden width of the feed-forward blocks.</summary>
    [Kwarg("mlp_dim", Min = 1)] public required int MlpDim { get; init; }
    /// <summary>Head width D.</summary>
    [Kwarg("dim_head", Min = 1)] public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside the transformers (attention probabilities, projections, MLP).</summary>
    [Kwarg("dropout", Rate = true)] public float Dropout { get; init; }
    /// <summary>Dropout after adding the positions.</summary>
    [Kwarg("emb_dropout", Rate = true)] public float EmbDropout { get; init; }
    /// <summary>
    /// Probability of dropping each whole layer (attention + feed-forward pair) of both transformers on every forward
    /// pass. As in the reference this happens in evaluation mode too, so a model with layer dropout is stochastic at
    /// inference; see <see cref="CaiTTransformer"/>.
    /// </summary>
    [Kwarg("layer_dropout", Rate = true)] public float LayerDropout { get; init; }

    /// <summary>Number of patches.</summary>
    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);

    /// <inheritdoc/>
    protected override void CheckMore() => Check.Divisible((ImageSize, ImageSize), (PatchSize, PatchSize));

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (Channels, ImageSize, ImageSize);
}

/// <summary>
/// CaiT's LayerScale (vit-pytorch <c>cait.LayerScale</c>): fn(x)·<c>scale</c>, with <c>scale</c> [1, 1, C] initialised
/// by the layer's 1-based index within its transformer: 0.1 up to 18, 1e-5 for 19–24, 1e-6 beyond. Keys
/// <c>scale</c> and <c>fn.*</c>.
/// </summary>
public sealed class LayerScale : Module
{
    /// <summary>Per-channel scale [1, 1, C] (key <c>scale</c>).</summary>
    public Tensor Scale { get; }
    /// <summary>The wrapped block (key <c>fn</c>).</summary>
    public Module Fn { get; }

    /// <summary>Wraps <paramref name="fn"/>; <paramref name="depth"/> is the 1-based layer index that sets the initial scale.</summary>
    public LayerScale(int dim, Module fn, int depth)
    {
        Scale = RegisterParameter("scale", Tensor.Full(InitialScale(depth), 1, 1, dim));
        Fn = RegisterModule("fn", fn);
    }

    /// <summary>The reference's initial scale for the 1-based layer index <paramref name="depth"/> (CaiT paper, section 2).</summary>
    public static float InitialScale(int depth) => depth <= 18 ? 0.1f : depth <= 24 ? 1e-5f : 1e-6f;

    /// <summary>fn(x, context)·scale; the context goes to a <see cref="TalkingHeadsAttention"/> and is ignored by other blocks.</summary>
    public Tensor Forward(Tensor x, Tensor? context) =>
        RunForwardHooks(x, context, (Fn is TalkingHeadsAttention a ? a.Forward(x, context) : Fn.Forward(x)) * Scale);

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x) => Fn.Forward(x) * Scale;
}

/// <summary>
/// CaiT's attention (vit-pytorch <c>cait.Attention</c>) with talking heads and an optional context: LayerNorm
/// (<c>norm</c>) → q = <c>to_q</c>(x̂); k, v = <c>to_kv</c>(x̂, or cat(x̂, context) along the tokens) (no biases) →
/// scores q·kᵀ·D^-½ mixed across heads by <c>mix_heads_pre_attn</c> [H, H] → softmax → dropout → mixed by
/// <c>mix_heads_post_attn</c> → ·v → <c>to_out.0</c> Linear. x [B, N, C], context [B, M, C] → [B, N, C].
/// </summary>
public sealed class TalkingHeadsAttention : Module
{
    private readonly int _heads, _dimHead;
    private readonly Dropout _dropout;

    /// <summary>Pre-attention LayerNorm (key <c>norm</c>; applied to x only, not to the context).</summary>
    public LayerNorm Norm { get; }
    /// <summary>Query projection (key <c>to_q</c>).</summary>
    public Linear ToQ { get; }
    /// <summary>Key and value projection, k first (key <c>to_kv</c>).</summary>
    public Linear ToKv { get; }
    /// <summary>Head mixing of the scores before the softmax, [H, H] (key <c>mix_heads_pre_attn</c>).</summary>
    public Tensor MixHeadsPreAttn { get; }
    /// <summary>Head mixing of the probabilities after the softmax, [H, H] (key <c>mix_heads_post_attn</c>).</summary>
    public Tensor MixHeadsPostAttn { get; }
    /// <summary>Output projection (key <c>to_out</c>).</summary>
    public Sequential ToOut { get; }
    /// <summary>The softmax probabilities [B, H, N, M] before dropout and the post-softmax head mixing (key <c>attend</c>, no parameters): hook it to see them.</summary>
    public AttentionProbabilities Attend { get; }

    /// <summary>Creates the block.</summary>
    public TalkingHeadsAttention(int dim, int heads = 8, int dimHead = 64, float dropout = 0f)
    {
        Check.Heads(heads, dimHead);
        _heads = heads; _dimHead = dimHead;
        int inner = heads * dimHead;
        Norm = RegisterModule("norm", new LayerNorm(dim));
        ToQ = RegisterModule("to_q", new Linear(dim, inner, bias: false));
        ToKv = RegisterModule("to_kv", new Linear(dim, inner * 2, bias: false));
        Attend = RegisterModule("attend", new AttentionProbabilities());
        _dropout = RegisterModule("dropout", new Dropout(dropout));
        MixHeadsPreAttn = RegisterParameter("mix_heads_pre_attn", Tensor.RandN(Init.Rng, 0, 1, heads, heads));
        MixHeadsPostAttn = RegisterParameter("mix_heads_post_attn", Tensor.RandN(Init.Rng, 0, 1, heads, heads));
        ToOut = RegisterModule("to_out", new Sequential(new Linear(inner, dim), new Dropout(dropout)));
    }

    /// <summary>Attention of x's tokens over x and (when given) the context's tokens.</summary>
    public Tensor Forward(Tensor x, Tensor? context) => RunForwardHooks(x, context, Run(x, context));

    private Tensor Run(Tensor x, Tensor? context)
    {
        int b = x.Dim(0), n = x.Dim(1), h = _heads, d = _dimHead;
        if (context is not null && (context.Rank != 3 || context.Dim(0) != b || context.Dim(2) != x.Dim(2)))
            throw new ArgumentException($"attention context {Tensor.ShapeString(context.ShapeSpan)} does not fit tokens {Tensor.ShapeString(x.ShapeSpan)}");
        x = Norm.Forward(x);
        var ctx = context is null ? x : Tensor.Cat([x, context], 1);
        int m = ctx.Dim(1);
        var q = ToQ.Forward(x).Reshape(b, n, h, d).Permute(0, 2, 1, 3);                   // [B, H, N, D]
        var kv = ToKv.Forward(ctx).Reshape(b, m, 2, h, d).Permute(2, 0, 3, 1, 4);          // [2, B, H, M, D]
        var k = kv.Slice(0, 0, 1).Reshape(b, h, m, d);
        var v = kv.Slice(0, 1, 1).Reshape(b, h, m, d);
        var dots = F.MixHeads(Tensor.MatMul(q, k, transB: true) * (1f / MathF.Sqrt(d)), MixHeadsPreAttn);
        var attn = _dropout.Forward(Attend.Forward(F.Softmax(dots, -1)));
        attn = F.MixHeads(attn, MixHeadsPostAttn);
        var o = Tensor.MatMul(attn, v).Permute(0, 2, 1, 3).Reshape(b, n, h * d);
        return ToOut.Forward(o);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x) => Run(x, null);
}

/// <summary>
/// CaiT's transformer (vit-pytorch <c>cait.Transformer</c>): depth × [LayerScale(<see cref="TalkingHeadsAttention"/>),
/// LayerScale(<see cref="FeedForward"/>)] with residuals, no final LayerNorm (keys <c>layers.i.{0,1}.{scale,fn.*}</c>).
/// </summary>
/// <remarks>
/// Layer dropout follows the reference's <c>dropout_layers</c> exactly: on every forward pass, in training and in
/// evaluation mode alike, each layer (its attention and feed-forward together) is dropped independently with
/// probability <see cref="LayerDropout"/>; if that would drop every layer, one of them, chosen uniformly, is kept.
/// The draws come from the thread's dropout generator (<see cref="Dropout.Seed"/>), so a seeded run is reproducible.
/// With probability 0 (the default) every layer runs and the forward pass is deterministic.
/// </remarks>
public sealed class CaiTTransformer : Module
{
    /// <summary>The [attention, feed-forward] pairs, each wrapped in <see cref="LayerScale"/> (key <c>layers</c>).</summary>
    public ModuleList Layers { get; }
    /// <summary>Probability of dropping a whole layer on a forward pass.</summary>
    public float LayerDropout { get; }

    /// <summary>Creates the stack.</summary>
    public CaiTTransformer(int dim, int depth, int heads, int dimHead, int mlpDim, float dropout = 0f, float layerDropout = 0f)
    {
        Check.AtLeast(depth, 0, "depth");
        Check.Rate(layerDropout, "layer_dropout");
        LayerDropout = layerDropout;
        Layers = RegisterModule("layers", new ModuleList());
        for (int i = 0; i < depth; i++)
            Layers.Add(new ModuleList(
                new LayerScale(dim, new TalkingHeadsAttention(dim, heads, dimHead, dropout), i + 1),
                new LayerScale(dim, new FeedForward(dim, mlpDim, dropout), i + 1)));
    }

    /// <summary>Which layers run on this pass (the reference's <c>dropout_layers</c>); all of them without layer dropout.</summary>
    public bool[] SampleKeptLayers()
    {
        var keep = new bool[Layers.Count];
        SampleKeptLayers(keep);
        return keep;
    }

    private void SampleKeptLayers(Span<bool> keep)
    {
        keep.Fill(true);
        int count = keep.Length;
        if (LayerDropout == 0 || count == 0) return;
        var rng = Dropout.Rng;
        for (int i = 0; i < count; i++) keep[i] = !(rng.NextSingle() < LayerDropout);
        if (!keep.Contains(true)) keep[rng.Next(count)] = true;
    }

    /// <summary>Runs the kept layers: x = attn(x, context) + x; x = ff(x) + x.</summary>
    public Tensor Forward(Tensor x, Tensor? context) => RunForwardHooks(x, context, Run(x, context));

    private Tensor Run(Tensor x, Tensor? context)
    {
        Span<bool> keep = Layers.Count <= 256 ? stackalloc bool[Layers.Count] : new bool[Layers.Count];
        SampleKeptLayers(keep);
        for (int i = 0; i < Layers.Count; i++)
        {
            if (!keep[i]) continue;
            var pair = (ModuleList)Layers[i];
            x = ((LayerScale)pair[0]).Forward(x, context) + x;
            x = ((LayerScale)pair[1]).Forward(x, null) + x;
        }
        return x;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x) => Run(x, null);
}

/// <summary>
/// vit-pytorch 1.23.6 <c>vit_pytorch.cait.CaiT</c> ("Going deeper with Image Transformers"): patchify (3 channels) →
/// LayerNorm → Linear → LayerNorm, learned positions [1, N, C] added to the patches, a patch transformer of
/// self-attention layers, then a class-attention transformer (<c>cls_depth</c> layers) in which the class token
/// [1, 1, C] attends to itself and the patch tokens (the context), then <c>mlp_head</c> = LayerNorm → Linear on the
/// class token. Both transformers use <see cref="LayerScale"/> and talking heads. Image [B, 3, S, S] → logits [B, classes].
/// </summary>
public sealed class CaiT : ImageModel<CaiTConfig>
{
    private readonly Dropout _embDropout;

    /// <summary>Patch embedding (key <c>to_patch_embedding</c>).</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>Learned positions of the patches [1, N, C] (key <c>pos_embedding</c>; the class token gets none).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>Class token [1, 1, C] (key <c>cls_token</c>).</summary>
    public Tensor ClsToken { get; }
    /// <summary>Self-attention over the patches (key <c>patch_transformer</c>).</summary>
    public CaiTTransformer PatchTransformer { get; }
    /// <summary>Class attention: the class token over itself and the patches (key <c>cls_transformer</c>).</summary>
    public CaiTTransformer ClsTransformer { get; }
    /// <summary>LayerNorm then Linear (key <c>mlp_head</c>).</summary>
    public Sequential MlpHead { get; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public CaiT(CaiTConfig config) : base(config)
    {
        ToPatchEmbedding = RegisterModule("to_patch_embedding", VitLayers.PatchEmbedding(CaiTConfig.Channels, config.PatchSize, config.PatchSize, config.Dim));
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 1, 1, config.NumPatches, config.Dim));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(Init.Rng, 0, 1, 1, 1, config.Dim));
        _embDropout = RegisterModule("dropout", new Dropout(config.EmbDropout));
        PatchTransformer = RegisterModule("patch_transformer", new CaiTTransformer(config.Dim, config.Depth, config.Heads, config.DimHead,
            config.MlpDim, config.Dropout, config.LayerDropout));
        ClsTransformer = RegisterModule("cls_transformer", new CaiTTransformer(config.Dim, config.ClsDepth, config.Heads, config.DimHead,
            config.MlpDim, config.Dropout, config.LayerDropout));
        MlpHead = RegisterModule("mlp_head", new Sequential(new LayerNorm(config.Dim), new Linear(config.Dim, config.NumClasses)));
    }

    /// <summary>Checks an image batch against the configuration; throws an <see cref="ArgumentException"/> naming the mismatch.</summary>
    public override void CheckInput(Tensor img) => ImageInput.Check(img, CaiTConfig.Channels, Config.ImageSize, Config.ImageSize, " (CaiT always takes 3 channels)");

    /// <summary>
    /// The class token after the class-attention stage followed by the patch tokens after the patch transformer:
    /// [B, 1+N, C] (timm's layout; the head reads token 0).
    /// </summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        var cls = Encode(img, out var patches);
        return Tensor.Cat([cls, patches], 1);
    }

    /// <summary>Patch transformer, then class attention: the class token [B, 1, C] and the patch tokens [B, N, C].</summary>
    private Tensor Encode(Tensor img, out Tensor patches)
    {
        CheckInput(img);
        int b = img.Dim(0), c = Config.Dim;
        var x = ToPatchEmbedding.Forward(img);                       // [B, N, C]
        x = x + PosEmbedding;                                        // positions for the patches only
        x = _embDropout.Forward(x);
        patches = PatchTransformer.Forward(x, null);
        return ClsTransformer.Forward(ClsToken.BroadcastTo(b, 1, c), patches);
    }

    /// <summary>
    /// Token 0, then <c>mlp_head</c>; with <paramref name="preLogits"/> the class token after the head's LayerNorm (what
    /// the final Linear sees), [B, C].
    /// </summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false) => Head(tokens.Slice(1, 0, 1), preLogits);

    private Tensor Head(Tensor cls, bool preLogits)
    {
        var token = cls.Reshape(cls.Dim(0), cls.Dim(2));
        return preLogits ? MlpHead[0].Forward(token) : MlpHead.Forward(token);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// The head reads the class token straight from the class-attention stage (not through <see cref="ForwardFeatures"/>'s
    /// concatenation), so that, as in the reference, nothing links the patch tokens to the logits when cls_depth is 0 and
    /// their parameters then get no gradient at all (rather than zeros that weight decay would still act on).
    /// </remarks>
    protected override Tensor ForwardCore(Tensor img) => Head(Encode(img, out _), preLogits: false);
}
