namespace VitSharp.NN;

/// <summary>
/// torch.nn.MultiheadAttention used as self-attention with batch_first=True (query = key = value = x), as torchvision's
/// ViT calls it: <c>in_proj_weight</c> [3C, C] and <c>in_proj_bias</c> [3C] pack the q, k and v projections (in that
/// order; heads are H contiguous slices of C inside each), then softmax(q·kᵀ/√D)·v per head and <c>out_proj</c>
/// Linear(C → C). x [B, N, C] → [B, N, C]. Runs the fused attention kernel straight on the packed projection
/// (<see cref="F.MultiHeadAttention"/>); with attention dropout in training mode it takes the unfused path.
/// Initialisation as PyTorch: in_proj_weight Xavier-uniform, in_proj_bias and out_proj.bias zero.
/// </summary>
public sealed class MultiheadAttention : Module
{
    private readonly Dropout _dropout;

    /// <summary>Packed q, k, v projection weight [3C, C].</summary>
    public Tensor InProjWeight { get; }
    /// <summary>Packed q, k, v projection bias [3C].</summary>
    public Tensor InProjBias { get; }
    /// <summary>Output projection (key <c>out_proj</c>).</summary>
    public Linear OutProj { get; }
    /// <summary>Embedding width C.</summary>
    public int EmbedDim { get; }
    /// <summary>Heads H (C / H per head).</summary>
    public int NumHeads { get; }

    /// <summary>The attention probabilities [B, H, N, N] (key <c>attend</c>, no parameters; torch has no such module): hook it to see them.</summary>
    public AttentionProbabilities Attend { get; }

    /// <summary>Creates the layer; <paramref name="embedDim"/> must be divisible by <paramref name="numHeads"/>.</summary>
    public MultiheadAttention(int embedDim, int numHeads, float dropout = 0f)
    {
        if (embedDim < 1 || numHeads < 1 || embedDim % numHeads != 0)
            throw new ArgumentException($"embed_dim {embedDim} must be divisible by num_heads {numHeads}");
        EmbedDim = embedDim; NumHeads = numHeads;
        float bound = MathF.Sqrt(6f / (embedDim + 3 * embedDim));
        InProjWeight = RegisterParameter("in_proj_weight", Tensor.RandU(Init.Rng, -bound, bound, 3 * embedDim, embedDim));
        InProjBias = RegisterParameter("in_proj_bias", Tensor.Zeros(3 * embedDim));
        OutProj = RegisterModule("out_proj", new Linear(embedDim, embedDim));
        Array.Clear(OutProj.Bias!.Data);
        Attend = RegisterModule("attend", new AttentionProbabilities());
        _dropout = new Dropout(dropout);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank != 3 || x.Dim(2) != EmbedDim)
            throw new ArgumentException($"multi-head attention: expected [B, N, {EmbedDim}], got {Tensor.ShapeString(x.ShapeSpan)}");
        int h = NumHeads, d = EmbedDim / NumHeads;
        var qkv = F.Linear(x, InProjWeight, InProjBias);                      // [B, N, 3·C]
        Tensor o;
        if (Training && _dropout.P > 0)
        {
            _dropout.Train(true);   // not a registered child (torch keeps the rate as a plain attribute)
            o = Unfused(qkv, h, d, 1f / MathF.Sqrt(d), scaleQuery: false, _dropout, Attend);
        }
        else o = F.MultiHeadAttention(qkv, h, probs: Attend.WhenObserved(null));
        return OutProj.Forward(o);
    }

    /// <summary>
    /// The unfused attention core, for dropout on the attention probabilities (which the fused kernel does not do):
    /// qkv [B, N, 3·H·D] → q, k, v [B, H, N, D] → softmax(scale·q·kᵀ) (through <paramref name="attend"/>, whose hooks see it) →
    /// <paramref name="dropout"/> → ·v → [B, N, H·D], in ops that record their own backward. With
    /// <paramref name="scaleQuery"/> q is scaled before the product (timm's order), else the product is (torch's and
    /// vit-pytorch's), so each family rounds as its reference does.
    /// </summary>
    public static Tensor Unfused(Tensor qkv, int heads, int dimHead, float scale, bool scaleQuery, Dropout dropout, AttentionProbabilities? attend)
    {
        int b = qkv.Dim(0), n = qkv.Dim(1);
        var parts = qkv.Reshape(b, n, 3, heads, dimHead).Permute(2, 0, 3, 1, 4);   // [3, B, H, N, D]
        var q = parts.Slice(0, 0, 1).Reshape(b, heads, n, dimHead);
        var k = parts.Slice(0, 1, 1).Reshape(b, heads, n, dimHead);
        var v = parts.Slice(0, 2, 1).Reshape(b, heads, n, dimHead);
        var scores = scaleQuery ? Tensor.MatMul(q * scale, k, transB: true) : Tensor.MatMul(q, k, transB: true) * scale;
        var attn = F.Softmax(scores, -1);
        if (attend is not null) attn = attend.Forward(attn);
        return Tensor.MatMul(dropout.Forward(attn), v).Permute(0, 2, 1, 3).Reshape(b, n, heads * dimHead);
    }
}
