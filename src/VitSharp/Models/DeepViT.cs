using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="DeepViT"/>, with vit-pytorch's constructor arguments (image_size, patch_size,
/// num_classes, dim, depth, heads, mlp_dim, pool, channels, dim_head, dropout, emb_dropout). The reference takes
/// square images and patches only (plain ints).
/// </summary>
public sealed record DeepViTConfig
{
    /// <summary>The Python constructor this configuration describes.</summary>
    public const string Constructor = "vit_pytorch.deepvit.DeepViT";

    /// <summary>Image side in pixels (square images).</summary>
    public required int ImageSize { get; init; }
    /// <summary>Patch side (square patches).</summary>
    public required int PatchSize { get; init; }
    /// <summary>Number of classes (0 gives logits [B, 0], as the reference's <c>Linear(dim, 0)</c>).</summary>
    public required int NumClasses { get; init; }
    /// <summary>Token width C.</summary>
    public required int Dim { get; init; }
    /// <summary>Number of transformer layers.</summary>
    public required int Depth { get; init; }
    /// <summary>Attention heads H.</summary>
    public required int Heads { get; init; }
    /// <summary>Hidden width of the feed-forward blocks.</summary>
    public required int MlpDim { get; init; }
    /// <summary>"cls" (token 0) or "mean" (mean over all tokens, the class token included: it is always there).</summary>
    public string Pool { get; init; } = "cls";
    /// <summary>Input channels.</summary>
    public int Channels { get; init; } = 3;
    /// <summary>Head width D.</summary>
    public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside the transformer (attention probabilities, projections, MLP).</summary>
    public float Dropout { get; init; }
    /// <summary>Dropout after adding position embeddings.</summary>
    public float EmbDropout { get; init; }

    /// <summary>Number of patches.</summary>
    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);

    /// <summary>The configuration as vit_pytorch.deepvit.DeepViT keyword arguments (Python names).</summary>
    public JsonObject ToKwargs() => new()
    {
        ["image_size"] = ImageSize, ["patch_size"] = PatchSize, ["num_classes"] = NumClasses, ["dim"] = Dim, ["depth"] = Depth,
        ["heads"] = Heads, ["mlp_dim"] = MlpDim, ["pool"] = Pool, ["channels"] = Channels, ["dim_head"] = DimHead,
        ["dropout"] = Dropout, ["emb_dropout"] = EmbDropout,
    };

    /// <summary>The model spec (constructor and keyword arguments) of this configuration.</summary>
    public ModelSpec ToSpec() => new(Constructor, ToKwargs());

    /// <summary>Reads the reference constructor's keyword arguments (defaults as in Python).</summary>
    public static DeepViTConfig FromKwargs(ModelFactory.Kwargs k) => new()
    {
        ImageSize = k.Int("image_size"), PatchSize = k.Int("patch_size"), NumClasses = k.Int("num_classes"), Dim = k.Int("dim"),
        Depth = k.Int("depth"), Heads = k.Int("heads"), MlpDim = k.Int("mlp_dim"), Pool = k.String("pool", "cls"),
        Channels = k.Int("channels", 3), DimHead = k.Int("dim_head", 64), Dropout = k.Float("dropout", 0f),
        EmbDropout = k.Float("emb_dropout", 0f),
    };

    /// <summary>Checks the configuration; throws <see cref="ArgumentException"/> naming the problem.</summary>
    public void Validate()
    {
        if (ImageSize <= 0) throw new ArgumentException($"image size {ImageSize} must be positive");
        if (PatchSize <= 0) throw new ArgumentException($"patch size {PatchSize} must be positive");
        if (ImageSize % PatchSize != 0) throw new ArgumentException($"image size {ImageSize} is not divisible by the patch size {PatchSize}");
        if (Pool != "cls" && Pool != "mean") throw new ArgumentException($"pool must be 'cls' or 'mean', got '{Pool}'");
        if (NumClasses < 0) throw new ArgumentException($"num_classes must be ≥ 0, got {NumClasses}");
        if (Dim <= 0 || Depth < 0 || Heads <= 0 || DimHead <= 0 || MlpDim <= 0 || Channels <= 0)
            throw new ArgumentException($"dim, heads, dim_head, mlp_dim and channels must be positive and depth ≥ 0 (dim {Dim}, depth {Depth}, heads {Heads}, dim_head {DimHead}, mlp_dim {MlpDim}, channels {Channels})");
        if (Dropout < 0 || Dropout > 1 || EmbDropout < 0 || EmbDropout > 1) throw new ArgumentException("dropout rates must lie in [0, 1]");
    }
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
        if (heads < 1 || dimHead < 1) throw new ArgumentOutOfRangeException(nameof(heads), $"attention needs heads ≥ 1 and dim_head ≥ 1 (got {heads}, {dimHead})");
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
public sealed class DeepViT : Module, IImageModel
{
    private readonly Dropout _embDropout;

    /// <summary>The configuration this model was built from.</summary>
    public DeepViTConfig Config { get; }
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
    public DeepViT(DeepViTConfig config)
    {
        config.Validate();
        Config = config;
        int patchDim = config.Channels * config.PatchSize * config.PatchSize;
        ToPatchEmbedding = RegisterModule("to_patch_embedding", new Sequential(
            new PatchRearrange(config.PatchSize, config.PatchSize),
            new LayerNorm(patchDim), new Linear(patchDim, config.Dim), new LayerNorm(config.Dim)));
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 1, 1, config.NumPatches + 1, config.Dim));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(Init.Rng, 0, 1, 1, 1, config.Dim));
        _embDropout = RegisterModule("dropout", new Dropout(config.EmbDropout));
        Transformer = RegisterModule("transformer", new Transformer(config.Dim, config.Depth,
            _ => new ReAttention(config.Dim, config.Heads, config.DimHead, config.Dropout),
            _ => new FeedForward(config.Dim, config.MlpDim, config.Dropout), finalNorm: false));
        MlpHead = RegisterModule("mlp_head", new Sequential(new LayerNorm(config.Dim), new Linear(config.Dim, config.NumClasses)));
    }

    /// <inheritdoc/>
    public int InputChannels => Config.Channels;
    /// <inheritdoc/>
    public int InputHeight => Config.ImageSize;
    /// <inheritdoc/>
    public int InputWidth => Config.ImageSize;

    /// <summary>Checks an image batch against the configuration; throws an <see cref="ArgumentException"/> naming the mismatch.</summary>
    public void CheckInput(Tensor img) => ImageInput.Check(img, Config.Channels, Config.ImageSize, Config.ImageSize);

    /// <summary>Tokens after the transformer, class token first: [B, N+1, C].</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        int b = img.Dim(0), c = Config.Dim;
        var x = ToPatchEmbedding.Forward(img);                       // [B, N, C]
        x = Tensor.Cat([ClsToken.BroadcastTo(b, 1, c), x], 1);
        x = x + PosEmbedding;                                        // [1, N+1, C] broadcast over the batch
        x = _embDropout.Forward(x);
        return Transformer.Forward(x);
    }

    /// <summary>Pooling: token 0 ('cls') or the mean over all tokens ('mean'). [B, N+1, C] → [B, C].</summary>
    public Tensor Pool(Tensor tokens) =>
        Config.Pool == "mean" ? tokens.Mean(1) : tokens.Slice(1, 0, 1).Reshape(tokens.Dim(0), tokens.Dim(2));

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
