using VitSharp.NN;

namespace VitSharp.Models;

// The building blocks of timm's `timm.models.vision_transformer.VisionTransformer` (timm/layers/patch_embed.py,
// attention.py, mlp.py and vision_transformer.py's Block), with timm's module names, so that a model made of them has
// timm's state_dict keys (`patch_embed.proj.*`, `blocks.i.norm1.*`, `blocks.i.attn.qkv.*`, `blocks.i.attn.proj.*`,
// `blocks.i.norm2.*`, `blocks.i.mlp.fc1.*`, `blocks.i.mlp.fc2.*`). Used by DeiT's distilled model
// (<see cref="DistilledVisionTransformer"/>); the same block makes timm's plain ViT. Only the options timm's ViT/DeiT
// releases use are built: no q/k norm, no LayerScale (init_values None), no register tokens, no gated attention.

/// <summary>
/// timm's <c>PatchEmbed</c>: <c>proj</c> Conv2d(in_chans → C, kernel = stride = patch) → flatten(2).transpose(1, 2),
/// i.e. image [B, c, H, W] → tokens [B, (H/p)·(W/p), C], row-major over the patch grid (timm's <c>norm</c> is Identity
/// unless an embedding norm layer is asked for, which no DeiT release does). Strict image size, as timm's default.
/// </summary>
public sealed class TimmPatchEmbed : Module
{
    /// <summary>The convolution (key <c>proj</c>).</summary>
    public Conv2d Proj { get; }
    /// <summary>Image side the model was built for.</summary>
    public int ImgSize { get; }
    /// <summary>Patch side.</summary>
    public int PatchSize { get; }
    /// <summary>Patches per side.</summary>
    public int GridSize => ImgSize / PatchSize;
    /// <summary>Number of patches (tokens).</summary>
    public int NumPatches => GridSize * GridSize;

    /// <summary>Creates the layer; the convolution keeps PyTorch's default initialisation (timm does not re-initialise it).</summary>
    public TimmPatchEmbed(int imgSize, int patchSize, int inChans, int embedDim)
    {
        if (patchSize < 1 || imgSize < 1 || imgSize % patchSize != 0)
            throw new ArgumentException($"image size {imgSize} is not divisible by the patch size {patchSize}");
        ImgSize = imgSize; PatchSize = patchSize;
        Proj = RegisterModule("proj", new Conv2d(inChans, embedDim, patchSize, patchSize));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img)
    {
        var x = Proj.Forward(img);                                        // [B, C, h, w]
        int b = x.Dim(0), c = x.Dim(1);
        return x.Reshape(b, c, x.Dim(2) * x.Dim(3)).Transpose(1, 2);      // [B, h·w, C]
    }
}

/// <summary>
/// timm's <c>Attention</c>: <c>qkv</c> Linear(C → 3C, bias = qkv_bias) viewed as [B, N, 3, H, D] (q, k, v blocks, heads
/// contiguous inside each), softmax(q·kᵀ·D^-½)·v per head (D = C / H), heads concatenated back to [B, N, C], then
/// <c>proj</c> Linear(C → C) and dropout. x [B, N, C] → [B, N, C]. The packed projection goes straight into the fused
/// attention kernel (<see cref="F.MultiHeadAttention"/>), as torch's MultiheadAttention does in
/// <see cref="MultiheadAttention"/>; with attention dropout in training mode it takes the unfused path.
/// </summary>
public sealed class TimmAttention : Module
{
    /// <summary>Fused q, k, v projection (key <c>qkv</c>).</summary>
    public Linear Qkv { get; }
    /// <summary>Dropout on the attention probabilities (timm's <c>attn_drop</c>).</summary>
    public Dropout AttnDrop { get; }
    /// <summary>Output projection (key <c>proj</c>).</summary>
    public Linear Proj { get; }
    /// <summary>Dropout after the projection (timm's <c>proj_drop</c>).</summary>
    public Dropout ProjDrop { get; }
    /// <summary>Token width C.</summary>
    public int Dim { get; }
    /// <summary>Heads H.</summary>
    public int NumHeads { get; }
    /// <summary>Head width D = C / H.</summary>
    public int HeadDim { get; }
    /// <summary>The score scale D^-½ (timm's <c>self.scale = head_dim ** -0.5</c>).</summary>
    public float Scale { get; }

    /// <summary>The attention probabilities [B, H, N, N] (key <c>attend</c>, no parameters; timm has no such module): hook it to see them.</summary>
    public AttentionProbabilities Attend { get; }

    /// <summary>Creates the layer; <paramref name="dim"/> must be divisible by <paramref name="numHeads"/>.</summary>
    public TimmAttention(int dim, int numHeads = 8, bool qkvBias = false, float attnDrop = 0f, float projDrop = 0f)
    {
        if (dim < 1 || numHeads < 1 || dim % numHeads != 0)
            throw new ArgumentException($"dim {dim} should be divisible by num_heads {numHeads}");
        Dim = dim; NumHeads = numHeads; HeadDim = dim / numHeads;
        Scale = 1f / MathF.Sqrt(HeadDim);
        Qkv = RegisterModule("qkv", new Linear(dim, 3 * dim, qkvBias));
        Attend = RegisterModule("attend", new AttentionProbabilities());
        AttnDrop = RegisterModule("attn_drop", new Dropout(attnDrop));
        Proj = RegisterModule("proj", new Linear(dim, dim));
        ProjDrop = RegisterModule("proj_drop", new Dropout(projDrop));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x) => ProjDrop.Forward(Proj.Forward(BeforeProj(x)));

    /// <summary>Everything before the output projection: the heads' outputs [B, N, C].</summary>
    internal Tensor BeforeProj(Tensor x)
    {
        if (x.Rank != 3 || x.Dim(2) != Dim)
            throw new ArgumentException($"attention: expected [B, N, {Dim}], got {Tensor.ShapeString(x.ShapeSpan)}");
        int h = NumHeads, d = HeadDim;
        var qkv = Qkv.Forward(x);                                                 // [B, N, 3·C]
        if (Training && AttnDrop.P > 0)   // dropout on the attention probabilities needs the unfused path
            return MultiheadAttention.Unfused(qkv, h, d, Scale, scaleQuery: true, AttnDrop, Attend);
        return F.MultiHeadAttention(qkv, h, Scale, Attend.WhenObserved(AttnDrop));          // [B, N, C]
    }
}

/// <summary>
/// timm's <c>Mlp</c>: <c>fc1</c> Linear(C → hidden) → GELU (exact erf form, <c>act</c>) → Dropout (<c>drop1</c>) →
/// <c>fc2</c> Linear(hidden → C) → Dropout (<c>drop2</c>).
/// </summary>
public sealed class TimmMlp : Module
{
    /// <summary>First Linear (key <c>fc1</c>).</summary>
    public Linear Fc1 { get; }
    /// <summary>Second Linear (key <c>fc2</c>).</summary>
    public Linear Fc2 { get; }
    private readonly GELU _act;
    private readonly Dropout _drop1, _drop2;

    /// <summary>Creates the layer.</summary>
    public TimmMlp(int inFeatures, int hiddenFeatures, float drop = 0f)
    {
        Fc1 = RegisterModule("fc1", new Linear(inFeatures, hiddenFeatures));
        _act = RegisterModule("act", new GELU());
        _drop1 = RegisterModule("drop1", new Dropout(drop));
        Fc2 = RegisterModule("fc2", new Linear(hiddenFeatures, inFeatures));
        _drop2 = RegisterModule("drop2", new Dropout(drop));
    }

    /// <inheritdoc/>
    /// <remarks>Without gradients and hooks on fc1 and act, fc1 and GELU run fused (<see cref="F.LinearGelu"/>).</remarks>
    protected override Tensor ForwardCore(Tensor x) => _drop2.Forward(Fc2.Forward(BeforeFc2(x)));

    /// <summary>Everything before fc2: drop1(act(fc1(x))).</summary>
    internal Tensor BeforeFc2(Tensor x)
    {
        var h = !Autograd.IsEnabled && F.FuseEpilogues && !Fc1.HasForwardHooks && !_act.HasForwardHooks
            ? F.LinearGelu(x, Fc1.Weight, Fc1.Bias)
            : _act.Forward(Fc1.Forward(x));
        return _drop1.Forward(h);
    }

    /// <summary>Whether drop2 passes its input through (eval mode or p = 0).</summary>
    internal bool Drop2Inactive => !Training || _drop2.P == 0;
}

/// <summary>
/// timm's ViT <c>Block</c> (pre-norm): x = x + drop_path1(attn(norm1(x))); x = x + drop_path2(mlp(norm2(x))), with
/// LayerNorm eps 1e-6 (timm's <c>LayerNorm</c>) and an MLP of hidden width int(C·mlp_ratio). Keys <c>norm1</c>,
/// <c>attn.qkv</c>, <c>attn.proj</c>, <c>norm2</c>, <c>mlp.fc1</c>, <c>mlp.fc2</c>. x [B, N, C] → [B, N, C].
/// </summary>
public sealed class TimmBlock : Module
{
    /// <summary>LayerNorm before attention (key <c>norm1</c>).</summary>
    public LayerNorm Norm1 { get; }
    /// <summary>The attention (key <c>attn</c>).</summary>
    public TimmAttention Attn { get; }
    /// <summary>Stochastic depth on the attention branch.</summary>
    public DropPath DropPath1 { get; }
    /// <summary>LayerNorm before the MLP (key <c>norm2</c>).</summary>
    public LayerNorm Norm2 { get; }
    /// <summary>The MLP (key <c>mlp</c>).</summary>
    public TimmMlp Mlp { get; }
    /// <summary>Stochastic depth on the MLP branch.</summary>
    public DropPath DropPath2 { get; }

    /// <summary>timm's LayerNorm epsilon.</summary>
    public const float LayerNormEps = 1e-6f;

    /// <summary>The MLP's hidden width as timm computes it: <c>int(dim * mlp_ratio)</c> (truncation, in double precision as Python).</summary>
    public static int MlpHidden(int dim, double mlpRatio) => (int)(dim * mlpRatio);

    /// <summary>Creates the block.</summary>
    public TimmBlock(int dim, int numHeads, double mlpRatio = 4.0, bool qkvBias = false, float projDrop = 0f, float attnDrop = 0f, float dropPath = 0f)
    {
        Norm1 = RegisterModule("norm1", new LayerNorm(dim, LayerNormEps));
        Attn = RegisterModule("attn", new TimmAttention(dim, numHeads, qkvBias, attnDrop, projDrop));
        DropPath1 = RegisterModule("drop_path1", new DropPath(dropPath));
        Norm2 = RegisterModule("norm2", new LayerNorm(dim, LayerNormEps));
        Mlp = RegisterModule("mlp", new TimmMlp(dim, MlpHidden(dim, mlpRatio), projDrop));
        DropPath2 = RegisterModule("drop_path2", new DropPath(dropPath));
    }

    /// <inheritdoc/>
    /// <remarks>With no hooks in the block, no ONNX trace and the dropouts after the projections and the stochastic depth
    /// inactive (eval mode or p = 0), each residual add runs in the epilogue of the branch's last Linear
    /// (<see cref="F.LinearResidual"/>: attn.proj and mlp.fc2), at inference and in training; the same values as the two
    /// steps (to float rounding where K spans more than one packed block).</remarks>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (F.FuseEpilogues && OpTrace.Current is null && !HasForwardHooksInTree()
            && (!Training || DropPath1.P == 0 && DropPath2.P == 0 && Attn.ProjDrop.P == 0) && Mlp.Drop2Inactive)
        {
            x = F.LinearResidual(Attn.BeforeProj(Norm1.Forward(x)), Attn.Proj.Weight, Attn.Proj.Bias, x);
            return F.LinearResidual(Mlp.BeforeFc2(Norm2.Forward(x)), Mlp.Fc2.Weight, Mlp.Fc2.Bias, x);
        }
        x = x + DropPath1.Forward(Attn.Forward(Norm1.Forward(x)));
        return x + DropPath2.Forward(Mlp.Forward(Norm2.Forward(x)));
    }
}
