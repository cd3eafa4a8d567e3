namespace VitSharp.NN;

/// <summary>
/// torch.nn.MultiheadAttention used as self-attention with batch_first=True (query = key = value = x), as torchvision's
/// ViT calls it: <c>in_proj_weight</c> [3C, C] and <c>in_proj_bias</c> [3C] pack the q, k and v projections (in that
/// order; heads are H contiguous slices of C inside each), then softmax(q·kᵀ/√D)·v per head and <c>out_proj</c>
/// Linear(C → C). x [B, N, C] → [B, N, C]. Runs the fused attention kernel straight on the packed projection
/// (<see cref="F.MultiHeadAttention"/>); with attention dropout in training mode it takes the unfused path.
/// Initialisation as PyTorch: in_proj_weight Xavier-uniform, in_proj_bias and out_proj.bias zero.
/// </summary>
public sealed class MultiheadAttention : Module, IAttentionObservable
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

    /// <summary>When set, receives the attention probabilities [B, H, N, N] of every forward pass.</summary>
    public Action<Tensor>? AttentionObserver { get; set; }

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
        _dropout = new Dropout(dropout);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank != 3 || x.Dim(2) != EmbedDim)
            throw new ArgumentException($"multi-head attention: expected [B, N, {EmbedDim}], got {Tensor.ShapeString(x.ShapeSpan)}");
        int b = x.Dim(0), n = x.Dim(1), h = NumHeads, d = EmbedDim / NumHeads;
        var qkv = F.Linear(x, InProjWeight, InProjBias);                      // [B, N, 3·C]
        Tensor o;
        if (Training && _dropout.P > 0)
        {
            var heads = qkv.Reshape(b, n, 3, h, d).Permute(2, 0, 3, 1, 4);   // [3, B, H, N, D]
            var q = heads.Slice(0, 0, 1).Reshape(b, h, n, d);
            var k = heads.Slice(0, 1, 1).Reshape(b, h, n, d);
            var v = heads.Slice(0, 2, 1).Reshape(b, h, n, d);
            var attn = F.Softmax(Tensor.MatMul(q, k, transB: true) * (1f / MathF.Sqrt(d)), -1);
            AttentionObserver?.Invoke(attn);
            _dropout.Train(true);
            o = Tensor.MatMul(_dropout.Forward(attn), v).Permute(0, 2, 1, 3).Reshape(b, n, EmbedDim);
        }
        else o = F.MultiHeadAttention(qkv, h, probs: AttentionObserver);
        return OutProj.Forward(o);
    }
}
