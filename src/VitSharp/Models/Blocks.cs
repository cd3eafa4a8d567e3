using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Multi-head self-attention as vit-pytorch's <c>vit.Attention</c>: LayerNorm (<c>norm</c>), fused
/// <c>to_qkv</c> (no bias), softmax(q·kᵀ·D^-½)·v per head, <c>to_out.0</c> (absent when H = 1 and D = C).
/// Shapes: x [B, N, C] → [B, N, C]; H heads of D dims. With <c>bareOut</c> it is SimpleViT's variant: <c>to_out</c> is
/// a bare Linear (key <c>to_out.weight</c>), always present.
/// </summary>
public sealed class Attention : Module
{
    private readonly int _heads, _dimHead;
    private readonly Dropout _dropout;

    /// <summary>Pre-attention LayerNorm (key <c>norm</c>).</summary>
    public LayerNorm Norm { get; }
    /// <summary>Fused q, k, v projection (key <c>to_qkv</c>).</summary>
    public Linear ToQkv { get; }
    /// <summary>Output projection (key <c>to_out</c>; Identity when there is none).</summary>
    public Module ToOut { get; }

    /// <summary>The attention probabilities [B, H, N, N] (key <c>attend</c>, no parameters, as the reference's Softmax): hook it to see them.</summary>
    public AttentionProbabilities Attend { get; }

    /// <summary>Creates the block.</summary>
    /// <param name="dim">Token width C.</param>
    /// <param name="heads">Heads H.</param>
    /// <param name="dimHead">Head width D.</param>
    /// <param name="dropout">Dropout on the attention probabilities and after the output projection.</param>
    /// <param name="outBias">Whether the output projection has a bias.</param>
    /// <param name="bareOut">SimpleViT's layout: <c>to_out</c> is a bare Linear, present even when H = 1 and D = C.</param>
    public Attention(int dim, int heads = 8, int dimHead = 64, float dropout = 0f, bool outBias = true, bool bareOut = false)
    {
        Check.Heads(heads, dimHead);
        _heads = heads; _dimHead = dimHead;
        int inner = heads * dimHead;
        bool projectOut = !(heads == 1 && dimHead == dim);
        Norm = RegisterModule("norm", new LayerNorm(dim));
        Attend = RegisterModule("attend", new AttentionProbabilities());
        _dropout = RegisterModule("dropout", new Dropout(dropout));
        ToQkv = RegisterModule("to_qkv", new Linear(dim, inner * 3, bias: false));
        ToOut = RegisterModule<Module>("to_out", bareOut ? new Linear(inner, dim, outBias) : projectOut
            ? new Sequential(new Linear(inner, dim, outBias), new Dropout(dropout))
            : new Identity());
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        x = Norm.Forward(x);
        var qkv = ToQkv.Forward(x);                                   // [B, N, 3·H·D]
        Tensor o;
        if (Training && _dropout.P > 0)   // dropout on the attention probabilities needs the unfused path
            o = MultiheadAttention.Unfused(qkv, _heads, _dimHead, 1f / MathF.Sqrt(_dimHead), scaleQuery: false, _dropout, Attend);
        else o = F.MultiHeadAttention(qkv, _heads, probs: Attend.WhenObserved(_dropout));  // [B, N, H·D]
        return ToOut.Forward(o);
    }

    /// <summary><c>Forward(x) + x</c> with the add in the output projection's epilogue (<see cref="F.LinearResidual"/>),
    /// for <see cref="Transformer"/> with no hooks in the tree (inference and training); otherwise the two steps.</summary>
    internal Tensor ForwardPlusInput(Tensor x)
    {
        var last = Blocks.LastLinear(ToOut, Training);
        if (last is null || Training && _dropout.P > 0) return Forward(x) + x;
        var qkv = ToQkv.Forward(Norm.Forward(x));
        var o = F.MultiHeadAttention(qkv, _heads, probs: Attend.WhenObserved(_dropout));
        return F.LinearResidual(o, last.Weight, last.Bias, x);
    }
}

/// <summary>Helpers of the blocks' fused inference paths.</summary>
internal static class Blocks
{
    /// <summary>The Linear that ends <paramref name="m"/> when nothing but an inactive dropout follows it: m itself, or the
    /// last Linear of a Sequential [.., Linear, (Dropout)]; null otherwise.</summary>
    public static Linear? LastLinear(Module m, bool training) => m switch
    {
        Linear l => l,
        Sequential s when s.Count >= 1 && s[s.Count - 1] is Linear l => l,
        Sequential s when s.Count >= 2 && s[s.Count - 1] is Dropout d && (!training || d.P == 0) && s[s.Count - 2] is Linear l => l,
        _ => null,
    };
}

/// <summary>
/// Pre-norm MLP as vit-pytorch's <c>vit.FeedForward</c>: <c>net.0</c> LayerNorm → <c>net.1</c> Linear → GELU → Dropout →
/// <c>net.4</c> Linear → Dropout; without dropout layers (SimpleViT) the second Linear is <c>net.3</c>.
/// </summary>
public sealed class FeedForward : Module
{
    /// <summary>The layers (key <c>net</c>).</summary>
    public Sequential Net { get; }

    /// <summary>Creates the block; <paramref name="dropoutLayers"/> false gives SimpleViT's LayerNorm → Linear → GELU → Linear.</summary>
    public FeedForward(int dim, int hiddenDim, float dropout = 0f, bool dropoutLayers = true)
    {
        Net = RegisterModule("net", dropoutLayers
            ? new Sequential(new LayerNorm(dim), new Linear(dim, hiddenDim), new GELU(), new Dropout(dropout),
                new Linear(hiddenDim, dim), new Dropout(dropout))
            : new Sequential(new LayerNorm(dim), new Linear(dim, hiddenDim), new GELU(), new Linear(hiddenDim, dim)));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x) => Net.Forward(x);

    /// <summary><c>Forward(x) + x</c> with the add in the second Linear's epilogue (<see cref="F.LinearResidual"/>),
    /// for <see cref="Transformer"/> with no hooks in the tree (inference and training); otherwise the two steps.</summary>
    internal Tensor ForwardPlusInput(Tensor x)
    {
        var last = Blocks.LastLinear(Net, Training);
        if (last is null) return Forward(x) + x;
        int lastIndex = Net[Net.Count - 1] == last ? Net.Count - 1 : Net.Count - 2;
        return F.LinearResidual(Net.ForwardRange(x, 0, lastIndex), last.Weight, last.Bias, x);
    }
}

/// <summary>
/// vit-pytorch's <c>vit.Transformer</c>: depth × (x = attn(x) + x; x = ff(x) + x) then a final LayerNorm
/// (keys <c>layers.i.0.*</c>, <c>layers.i.1.*</c>, <c>norm.*</c>). x [B, N, C] → [B, N, C].
/// </summary>
public sealed class Transformer : Module
{
    /// <summary>Final LayerNorm (key <c>norm</c>), or null when the variant has none.</summary>
    public LayerNorm? Norm { get; }
    /// <summary>The [attention, feed-forward] pairs (key <c>layers</c>).</summary>
    public ModuleList Layers { get; }

    /// <summary>Creates the stack.</summary>
    public Transformer(int dim, int depth, int heads, int dimHead, int mlpDim, float dropout = 0f, bool finalNorm = true)
        : this(dim, depth, _ => new Attention(dim, heads, dimHead, dropout), _ => new FeedForward(dim, mlpDim, dropout), finalNorm)
    {
    }

    /// <summary>
    /// Creates a stack of other blocks with the same layout and residuals: layer i is
    /// [<paramref name="attention"/>(i), <paramref name="feedForward"/>(i)] (each a single-input module mapping
    /// [B, N, C] → [B, N, C]), built in that order.
    /// </summary>
    public Transformer(int dim, int depth, Func<int, Module> attention, Func<int, Module> feedForward, bool finalNorm = true)
    {
        Check.AtLeast(depth, 0, "depth");
        if (finalNorm) Norm = RegisterModule("norm", new LayerNorm(dim));
        Layers = RegisterModule("layers", new ModuleList());
        for (int i = 0; i < depth; i++)
        {
            var a = attention(i);
            Layers.Add(new ModuleList(a, feedForward(i)));
        }
    }

    /// <summary>m(x) + x; with <paramref name="fuse"/>, vit-pytorch's own blocks add it in their last Linear (<see cref="F.LinearResidual"/>,
    /// at inference and, where the product runs on the managed kernel, in training).</summary>
    private static Tensor PlusInput(Module m, Tensor x, bool fuse) => (m, fuse) switch
    {
        (Attention a, true) => a.ForwardPlusInput(x),
        (FeedForward f, true) => f.ForwardPlusInput(x),
        _ => m.Forward(x) + x,
    };

    /// <summary>The <see cref="Attention"/> blocks, in order (none when the layers use another attention block).</summary>
    public IEnumerable<Attention> AttentionBlocks()
    {
        for (int i = 0; i < Layers.Count; i++)
            if (((ModuleList)Layers[i])[0] is Attention a) yield return a;
    }

    /// <inheritdoc/>
    /// <remarks>Without gradients, inside a <see cref="TensorScope"/> and with no forward hook on this stack or any of its
    /// modules, each layer runs in a scope of its own that hands only its output on, so a forward pass holds one layer's
    /// intermediates at a time. The residual stream after layer i is the output of its feed-forward block plus that
    /// block's input (what a hook on <c>layers.i.1</c> sees).</remarks>
    protected override Tensor ForwardCore(Tensor x)
    {
        bool hooks = HasForwardHooksInTree();
        bool inference = !Autograd.IsEnabled && !hooks;
        bool layerScopes = inference && TensorScope.Current is not null;
        bool fuse = inference && F.FuseEpilogues;
        // In training, the residual adds go into the last Linears' epilogues too (F.LinearResidual records one op for both),
        // unless a hook must see the block's own output or an export traces the ops.
        bool fuseTraining = !inference && !hooks && F.FuseEpilogues && OpTrace.Current is null;
        for (int i = 0; i < Layers.Count; i++)
        {
            var pair = (ModuleList)Layers[i];
            if (inference)
            {
                using var scope = layerScopes ? TensorScope.Begin() : null;
                var y = PlusInput(pair[0], x, fuse);
                var z = PlusInput(pair[1], y, fuse);
                x = scope is null ? z : scope.Handover(z);
                continue;
            }
            x = PlusInput(pair[0], x, fuseTraining);
            x = PlusInput(pair[1], x, fuseTraining);
        }
        return Norm is null ? x : Norm.Forward(x);
    }
}

/// <summary>The steps vit-pytorch's ViT-like models (ViT, SimpleViT, DeepViT, CaiT, T2T-ViT, PiT) write the same way.</summary>
public static class VitLayers
{
    /// <summary>
    /// vit-pytorch's <c>to_patch_embedding</c>: Rearrange (<see cref="PatchRearrange"/>) → LayerNorm(c·p1·p2) →
    /// Linear(c·p1·p2 → dim) → LayerNorm(dim), keys <c>.1</c>, <c>.2</c>, <c>.3</c>. Image [B, c, H, W] → patches [B, N, dim].
    /// </summary>
    public static Sequential PatchEmbedding(int channels, int patchHeight, int patchWidth, int dim)
    {
        int patchDim = channels * patchHeight * patchWidth;
        return new Sequential(new PatchRearrange(patchHeight, patchWidth), new LayerNorm(patchDim), new Linear(patchDim, dim), new LayerNorm(dim));
    }

    /// <summary>
    /// <c>torch.cat((repeat(tokens, '... d -> b ... d'), x), dim=1)</c>: the learned <paramref name="tokens"/> ([n, C] or
    /// [1, n, C]; n may be 0, and the tokens then still get their empty gradient, as in PyTorch) in front of every
    /// sequence of <paramref name="x"/> [B, N, C] → [B, n + N, C].
    /// </summary>
    public static Tensor Prepend(Tensor tokens, Tensor x)
    {
        int b = x.Dim(0), c = x.Dim(2), n = tokens.Dim(-2);
        var t = tokens.Rank == 3 ? tokens : tokens.Reshape(1, n, c);
        return Tensor.Cat([t.BroadcastTo(b, n, c), x], 1);
    }

    /// <summary><c>x.mean(dim = 1) if pool == 'mean' else x[:, 0]</c>: [B, N, C] → [B, C].</summary>
    public static Tensor Pool(Tensor tokens, string pool) =>
        pool == "mean" ? tokens.Mean(1) : tokens.Slice(1, 0, 1).Reshape(tokens.Dim(0), tokens.Dim(2));
}

/// <summary>
/// einops' <c>Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)')</c>: image [B, c, h·p1, w·p2] → tokens
/// [B, h·w, p1·p2·c], token index row-major over (h, w), channel fastest inside a token.
/// </summary>
public sealed class PatchRearrange : Module
{
    /// <summary>Patch height and width.</summary>
    public int P1 { get; }
    /// <summary>Patch width.</summary>
    public int P2 { get; }

    /// <summary>Creates the rearrangement.</summary>
    public PatchRearrange(int p1, int p2) { P1 = p1; P2 = p2; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img)
    {
        int b = img.Dim(0), c = img.Dim(1), hh = img.Dim(2), ww = img.Dim(3);
        if (hh % P1 != 0 || ww % P2 != 0)
            throw new ArgumentException($"image {hh}×{ww} is not divisible by the patch size {P1}×{P2}");
        int h = hh / P1, w = ww / P2;
        return img.Reshape(b, c, h, P1, w, P2).Permute(0, 2, 4, 3, 5, 1).Reshape(b, h * w, P1 * P2 * c);
    }
}

/// <summary>
/// einops' <c>Rearrange('b c n -> b n c')</c> after an unfold: columns [B, C·kh·kw, L] → tokens [B, L, C·kh·kw]
/// (one token per window position, row-major). Used by T2T-ViT's soft split and PiT's patch embedding.
/// </summary>
public sealed class ColumnsToTokens : Module
{
    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor cols)
    {
        if (cols.Rank != 3) throw new ArgumentException($"expected unfolded columns [B, C, L], got {Tensor.ShapeString(cols.ShapeSpan)}");
        return cols.Transpose(1, 2);
    }
}

/// <summary>
/// einops' <c>rearrange(x, 'b (h w) c -> b c h w', h = int(sqrt(N)))</c>: tokens [B, N, C] → an image [B, C, h, N / h]
/// (square when N is a perfect square), token index row-major over (h, w). T2T-ViT's <c>RearrangeImage</c> and the
/// first step of PiT's pooling.
/// </summary>
public sealed class TokensToImage : Module
{
    /// <summary>The image side einops uses: ⌊√N⌋ rows (exact for perfect squares).</summary>
    public static int Side(int tokens)
    {
        int h = (int)Math.Sqrt(tokens);
        while ((long)h * h > tokens) h--;
        while ((long)(h + 1) * (h + 1) <= tokens) h++;
        return h;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank != 3) throw new ArgumentException($"expected tokens [B, N, C], got {Tensor.ShapeString(x.ShapeSpan)}");
        int b = x.Dim(0), n = x.Dim(1), c = x.Dim(2), h = Side(n);
        if (h == 0 || n % h != 0) throw new ArgumentException($"{n} tokens cannot be rearranged into an image with {h} rows");
        return x.Reshape(b, h, n / h, c).Permute(0, 3, 1, 2);
    }
}
