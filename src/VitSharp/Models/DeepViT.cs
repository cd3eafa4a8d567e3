using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="DeepViT"/>: vit-pytorch's constructor arguments, with Python's names and defaults. The
/// reference takes square images and patches only (plain ints).
/// </summary>
public sealed record DeepViTConfig : ModelConfig<DeepViTConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "vit_pytorch.deepvit.DeepViT";

    /// <summary>Image side in pixels (square images).</summary>
    [Kwarg("image_size", Min = 1)] public required int ImageSize { get; init; }
    /// <summary>Patch side (square patches).</summary>
    [Kwarg("patch_size", Min = 1)] public required int PatchSize { get; init; }
    /// <summary>Number of classes (0 gives logits [B, 0], as the reference's <c>Linear(dim, 0)</c>).</summary>
    [Kwarg("num_classes", Min = 0)] public required int NumClasses { get; init; }
    /// <summary>Token width C.</summary>
    [Kwarg("dim", Min = 1)] public required int Dim { get; init; }
    /// <summary>Transformer layers.</summary>
    [Kwarg("depth", Min = 0)] public required int Depth { get; init; }
    /// <summary>Attention heads H.</summary>
    [Kwarg("heads", Min = 1)] public required int Heads { get; init; }
    /// <summary>Hidden width of the feed-forward blocks.</summary>
    [Kwarg("mlp_dim", Min = 1)] public required int MlpDim { get; init; }
    /// <summary>"cls" (token 0) or "mean" (mean over all tokens, the class token included: it is always there).</summary>
    [Kwarg("pool", OneOf = ["cls", "mean"])] public string Pool { get; init; } = "cls";
    /// <summary>Input channels.</summary>
    [Kwarg("channels", Min = 1)] public int Channels { get; init; } = 3;
    /// <summary>Head width D.</summary>
    [Kwarg("dim_head", Min = 1)] public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside the transformer (attention probabilities, projections, MLP).</summary>
    [Kwarg("dropout", Rate = true)] public float Dropout { get; init; }
    /// <summary>Dropout after adding the positions.</summary>
    [Kwarg("emb_dropout", Rate = true)] public float EmbDropout { get; init; }

    /// <summary>Number of patches.</summary>
    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);

    /// <inheritdoc/>
    protected override void CheckMore() => Check.Divisible((ImageSize, ImageSize), (PatchSize, PatchSize));

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (Channels, ImageSize, ImageSize);
}

/// <summary>Reorders dimensions (einops' <c>Rearrange</c> for pure permutations, e.g. <c>'b h i j -> b i j h'</c> is (0, 2, 3, 1)).</summary>
public sealed class Permute : Module
{
    private readonly int[] _dims;

    /// <summary>Creates the rearrangement: output dimension i is input dimension <paramref name="dims"/>[i].</summary>
    public Permute(params int[] dims) => _dims = (int[])dims.Clone();

    /// <summary>The permutation.</summary>
    public IReadOnlyList<int> Dims => _dims;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => input.Permute(_dims);
}

/// <summary>
/// DeepViT's re-attention (vit-pytorch <c>deepvit.Attention</c>): LayerNorm (<c>norm</c>) → <c>to_qkv</c> (no bias) →
/// softmax(q·kᵀ·D^-½) → dropout → mixed across heads by <c>reattn_weights</c> [H, H]
/// (attn'[b, g, i, j] = Σ_h attn[b, h, i, j]·W[h, g]) → LayerNorm over the head axis (<c>reattn_norm.1</c>, size H) →
/// ·v → <c>to_out.0</c> Linear (always present). x [B, N, C] → [B, N, C].
/// </summary>
public sealed class ReAttention : Module
{
    private readonly int _heads, _dimHead;
    private readonly Dropout _dropout;

    /// <summary>Pre-attention LayerNorm (key <c>norm</c>).</summary>
    public LayerNorm Norm { get; }
    /// <summary>Fused q, k, v projection (key <c>to_qkv</c>).</summary>
    public Linear ToQkv { get; }
    /// <summary>Head-mixing matrix [H, H] (key <c>reattn_weights</c>).</summary>
    public Tensor ReattnWeights { get; }
    /// <summary>Permute → LayerNorm(H) → permute back (key <c>reattn_norm</c>; the LayerNorm is <c>reattn_norm.1</c>).</summary>
    public Sequential ReattnNorm { get; }
    /// <summary>Output projection (key <c>to_out</c>).</summary>
    public Sequential ToOut { get; }
    /// <summary>The softmax probabilities [B, H, N, N] before dropout and re-attention (key <c>attend</c>, no parameters): hook it to see them.</summary>
    public AttentionProbabilities Attend { get; }

    /// <summary>Creates the block.</summary>
    public ReAttention(int dim, int heads = 8, int dimHead = 64, float dropout = 0f)
    {
        Check.Heads(heads, dimHead);
        _heads = heads; _dimHead = dimHead;
        int inner = heads * dimHead;
        Norm = RegisterModule("norm", new LayerNorm(dim));
        ToQkv = RegisterModule("to_qkv", new Linear(dim, inner * 3, bias: false));
        Attend = RegisterModule("attend", new AttentionProbabilities());
        _dropout = RegisterModule("dropout", new Dropout(dropout));
        ReattnWeights = RegisterParameter("reattn_weights", Tensor.RandN(Init.Rng, 0, 1, heads, heads));
        ReattnNorm = RegisterModule("reattn_norm", new Sequential(new Permute(0, 2, 3, 1), new LayerNorm(heads), new Permute(0, 3, 1, 2)));
        ToOut = RegisterModule("to_out", new Sequential(new Linear(inner, dim), new Dropout(dropout)));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        int b = x.Dim(0), n = x.Dim(1);
        x = Norm.Forward(x);
        var heads = ToQkv.Forward(x).Reshape(b, n, 3, _heads, _dimHead).Permute(2, 0, 3, 1, 4); // [3, B, H, N, D]
        var q = heads.Slice(0, 0, 1).Reshape(b, _heads, n, _dimHead);
        var k = heads.Slice(0, 1, 1).Reshape(b, _heads, n, _dimHead);
        var v = heads.Slice(0, 2, 1).Reshape(b, _heads, n, _dimHead);
        var attn = Attend.Forward(F.Softmax(Tensor.MatMul(q, k, transB: true) * (1f / MathF.Sqrt(_dimHead)), -1));
        attn = _dropout.Forward(attn);
        attn = ReattnNorm.Forward(F.MixHeads(attn, ReattnWeights));                          // re-attention
        var o = Tensor.MatMul(attn, v).Permute(0, 2, 1, 3).Reshape(b, n, _heads * _dimHead);
        return ToOut.Forward(o);
    }
}

/// <summary>
/// vit-pytorch 1.23.6 <c>vit_pytorch.deepvit.DeepViT</c>: ViT's patch embedding (patchify → LayerNorm → Linear →
/// LayerNorm), class token [1, 1, C] and learned positions [1, N+1, C] (3-D), a transformer of
/// <see cref="ReAttention"/> + <see cref="FeedForward"/> layers without a final LayerNorm, pooling (token 0 or the
/// mean), then <c>mlp_head</c> = LayerNorm (<c>mlp_head.0</c>) → Linear (<c>mlp_head.1</c>).
/// Image [B, c, S, S] → logits [B, classes].
/// </summary>
public sealed class DeepViT : ImageModel<DeepViTConfig>
{
    private readonly Dropout _embDropout;

    /// <summary>Patch embedding (key <c>to_patch_embedding</c>).</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>Learned positions [1, N+1, C] (key <c>pos_embedding</c>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>Class token [1, 1, C] (key <c>cls_token</c>).</summary>
    public Tensor ClsToken { get; }
    /// <summary>The transformer (key <c>transformer</c>; no final LayerNorm).</summary>
    public Transformer Transformer { get; }
    /// <summary>LayerNorm then Linear (key <c>mlp_head</c>).</summary>
    public Sequential MlpHead { get; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public DeepViT(DeepViTConfig config) : base(config)
    {
        ToPatchEmbedding = RegisterModule("to_patch_embedding", VitLayers.PatchEmbedding(config.Channels, config.PatchSize, config.PatchSize, config.Dim));
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 1, 1, config.NumPatches + 1, config.Dim));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(Init.Rng, 0, 1, 1, 1, config.Dim));
        _embDropout = RegisterModule("dropout", new Dropout(config.EmbDropout));
        Transformer = RegisterModule("transformer", new Transformer(config.Dim, config.Depth,
            _ => new ReAttention(config.Dim, config.Heads, config.DimHead, config.Dropout),
            _ => new FeedForward(config.Dim, config.MlpDim, config.Dropout), finalNorm: false));
        MlpHead = RegisterModule("mlp_head", new Sequential(new LayerNorm(config.Dim), new Linear(config.Dim, config.NumClasses)));
    }

    /// <summary>Tokens after the transformer, class token first: [B, N+1, C].</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        var x = VitLayers.Prepend(ClsToken, ToPatchEmbedding.Forward(img));
        x = _embDropout.Forward(x + PosEmbedding);                   // [1, N+1, C] broadcast over the batch
        return Transformer.Forward(x);
    }

    /// <summary>Pooling: token 0 ('cls') or the mean over all tokens ('mean'). [B, N+1, C] → [B, C].</summary>
    public Tensor Pool(Tensor tokens) => VitLayers.Pool(tokens, Config.Pool);

    /// <summary>
    /// Pooling, then <c>mlp_head</c>; with <paramref name="preLogits"/> the pooled features after the head's LayerNorm
    /// (what the final Linear sees), [B, C].
    /// </summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        var pooled = Pool(tokens);
        return preLogits ? MlpHead[0].Forward(pooled) : MlpHead.Forward(pooled);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
