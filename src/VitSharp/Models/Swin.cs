using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="SwinTransformer"/>: torchvision 0.14's constructor arguments with Python's names and
/// defaults (<c>block</c> and <c>downsample_layer</c> by class name), plus the extension <c>in_chans</c> (input channels
/// of the patch convolution; torchvision has 3).
/// </summary>
public sealed record SwinTransformerConfig : ModelConfig<SwinTransformerConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "torchvision.models.swin_transformer.SwinTransformer";
    /// <summary>Version-1 block: pre-norm, scaled dot-product attention with a learned bias table.</summary>
    public const string BlockV1 = "SwinTransformerBlock";
    /// <summary>Version-2 block: post-norm, cosine attention with <c>logit_scale</c> and the <c>cpb_mlp</c> bias.</summary>
    public const string BlockV2 = "SwinTransformerBlockV2";
    /// <summary>Largest window (tokens per window): the attention of a window is N × N.</summary>
    public const int MaxWindowTokens = 4096;

    /// <summary>Patch height and width [h, w] (the patch convolution's kernel and stride).</summary>
    [Kwarg("patch_size", Min = 1, Max = 1 << 16)] public required int[] PatchSize { get; init; }
    /// <summary>Token width C of the first stage; stage i has C·2^i.</summary>
    [Kwarg("embed_dim", Min = 1)] public required int EmbedDim { get; init; }
    /// <summary>Blocks per stage (one stage per entry, a patch merging between consecutive stages).</summary>
    [Kwarg("depths", Min = 1, Max = 1 << 10)] public required int[] Depths { get; init; }
    /// <summary>Attention heads per stage; each must divide its stage's width.</summary>
    [Kwarg("num_heads", Min = 1)] public required int[] NumHeads { get; init; }
    /// <summary>Window height and width [h, w] in tokens.</summary>
    [Kwarg("window_size", Min = 1, Max = MaxWindowTokens)] public required int[] WindowSize { get; init; }
    /// <summary>MLP hidden width = int(width · mlp_ratio).</summary>
    [Kwarg("mlp_ratio")] public float MlpRatio { get; init; } = 4f;
    /// <summary>Dropout after the attention projection and in the MLPs.</summary>
    [Kwarg("dropout", Rate = true)] public float Dropout { get; init; }
    /// <summary>Dropout on the attention probabilities.</summary>
    [Kwarg("attention_dropout", Rate = true)] public float AttentionDropout { get; init; }
    /// <summary>Stochastic depth of the last block; block k of K drops its residual branches with probability p·k/(K−1).</summary>
    [Kwarg("stochastic_depth_prob", Rate = true)] public float StochasticDepthProb { get; init; } = 0.1f;
    /// <summary>Classes of <c>head</c>.</summary>
    [Kwarg("num_classes", Min = 1)] public int NumClasses { get; init; } = 1000;
    /// <summary>The block class: <see cref="BlockV1"/> or <see cref="BlockV2"/>.</summary>
    [Kwarg("block", OneOf = [BlockV1, BlockV2])] public string Block { get; init; } = BlockV1;
    /// <summary>The merging class between stages: "PatchMerging" (v1) or "PatchMergingV2".</summary>
    [Kwarg("downsample_layer", OneOf = ["PatchMerging", "PatchMergingV2"])] public string DownsampleLayer { get; init; } = "PatchMerging";
    /// <summary>Input channels (extension; torchvision has 3).</summary>
    [Kwarg("in_chans", Min = 1, Max = 1 << 16)] public int InChans { get; init; } = 3;

    /// <summary>Whether the blocks are version 2.</summary>
    public bool IsV2 => Block == BlockV2;
    /// <summary>Whether the patch merging is version 2 (Linear, then LayerNorm).</summary>
    public bool IsMergingV2 => DownsampleLayer == "PatchMergingV2";
    /// <summary>Number of stages.</summary>
    public int Stages => Depths.Length;
    /// <summary>Token width of stage <paramref name="stage"/>: embed_dim · 2^stage.</summary>
    public int StageDim(int stage) => checked(EmbedDim << stage);
    /// <summary>Width of the last stage (the head's input).</summary>
    public int NumFeatures => StageDim(Stages - 1);

    /// <inheritdoc/>
    protected override void CheckMore()
    {
        if (PatchSize.Length != 2) throw new ArgumentException($"patch_size must be [height, width], got [{string.Join(", ", PatchSize)}]");
        if (WindowSize.Length != 2) throw new ArgumentException($"window_size must be [height, width], got [{string.Join(", ", WindowSize)}]");
        if (Depths.Length == 0) throw new ArgumentException("depths must name at least one stage");
        if (NumHeads.Length != Depths.Length)
            throw new ArgumentException($"num_heads must have one entry per stage ({Depths.Length}), got [{string.Join(", ", NumHeads)}]");
        if ((long)WindowSize[0] * WindowSize[1] > MaxWindowTokens)
            throw new ArgumentException($"window_size {WindowSize[0]}×{WindowSize[1]} has more than {MaxWindowTokens} tokens");
        if (IsV2 && (WindowSize[0] < 2 || WindowSize[1] < 2))
            throw new ArgumentException($"window_size must be at least 2×2 for {BlockV2} (its relative coordinates divide by window − 1), got {WindowSize[0]}×{WindowSize[1]}");
        if (Depths.Length > 16 || (long)EmbedDim << (Depths.Length - 1) > 1 << 20)
            throw new ArgumentException($"embed_dim {EmbedDim} doubled over {Depths.Length} stages is too wide");
        if (Depths.Sum() > 1 << 12) throw new ArgumentException($"depths [{string.Join(", ", Depths)}] have more than {1 << 12} blocks");
        for (int i = 0; i < Stages; i++)
            if (StageDim(i) % NumHeads[i] != 0)
                throw new ArgumentException($"stage {i} width {StageDim(i)} is not divisible by num_heads[{i}] = {NumHeads[i]}");
        if (!(MlpRatio > 0) || !float.IsFinite(MlpRatio) || (long)(NumFeatures * (double)MlpRatio) > 1 << 22)
            throw new ArgumentException($"mlp_ratio must be positive and finite, got {Check.Fmt(MlpRatio)}");
    }

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (InChans, null, null);
}

/// <summary>
/// The index maps of one window attention layer for one feature-map size (cached per layer): pad to a multiple of the
/// window, cyclic shift by −shift, partition into windows (<see cref="Partition"/>: window tokens ← map positions), the
/// inverse with the crop (<see cref="Merge"/>), and torchvision's shift mask [windows, N, N] (0 within a region, −100
/// across regions; null without shift).
/// </summary>
internal sealed class WindowGeometry
{
    public readonly int H, W, Windows;
    public readonly int[] Partition, Merge;
    public readonly float[]? Mask;

    public WindowGeometry(int h, int w, (int H, int W) window, (int H, int W) shift)
    {
        H = h; W = w;
        int ph = (h + window.H - 1) / window.H * window.H, pw = (w + window.W - 1) / window.W * window.W;
        // torchvision: no shift along an axis the window covers entirely.
        int sh = window.H >= ph ? 0 : shift.H, sw = window.W >= pw ? 0 : shift.W;
        int nh = ph / window.H, nw = pw / window.W, n = window.H * window.W;
        Windows = nh * nw;
        Partition = new int[Windows * n];
        Merge = new int[h * w];
        for (int wy = 0; wy < nh; wy++)
            for (int wx = 0; wx < nw; wx++)
                for (int iy = 0; iy < window.H; iy++)
                    for (int ix = 0; ix < window.W; ix++)
                    {
                        int t = ((wy * nw + wx) * window.H + iy) * window.W + ix;
                        int sy = (wy * window.H + iy + sh) % ph, sx = (wx * window.W + ix + sw) % pw;
                        bool inside = sy < h && sx < w;
                        Partition[t] = inside ? sy * w + sx : -1;
                        if (inside) Merge[sy * w + sx] = t;
                    }
        if (sh == 0 && sw == 0) return;
        // The regions, exactly as torchvision labels them with Python slices of the padded map.
        var label = new int[ph * pw];
        (int, int)[] hs = [Py(0, -window.H, ph), Py(-window.H, -sh, ph), Py(-sh, null, ph)];
        (int, int)[] ws = [Py(0, -window.W, pw), Py(-window.W, -sw, pw), Py(-sw, null, pw)];
        int count = 0;
        foreach (var (h0, h1) in hs)
            foreach (var (w0, w1) in ws)
            {
                for (int y = h0; y < h1; y++)
                    for (int x = w0; x < w1; x++) label[y * pw + x] = count;
                count++;
            }
        Mask = new float[Windows * n * n];
        Span<int> win = n <= 1024 ? stackalloc int[n] : new int[n];
        for (int k = 0; k < Windows; k++)
        {
            int wy = k / nw, wx = k % nw;
            for (int i = 0; i < n; i++) win[i] = label[(wy * window.H + i / window.W) * pw + wx * window.W + i % window.W];
            var m = Mask.AsSpan(k * n * n, n * n);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) m[i * n + j] = win[i] == win[j] ? 0f : -100f;
        }
    }

    /// <summary>Python's slice(start, stop) over a length as [lo, hi).</summary>
    private static (int, int) Py(int start, int? stop, int length)
    {
        static int Norm(int i, int length) => Math.Clamp(i < 0 ? i + length : i, 0, length);
        int lo = Norm(start, length), hi = stop is int s ? Norm(s, length) : length;
        return (lo, Math.Max(lo, hi));
    }
}

/// <summary>
/// torchvision's <c>ShiftedWindowAttention</c> over NHWC maps [B, H, W, C]: pad to a multiple of the window, roll by
/// −shift (none along an axis the window covers), partition into windows, <c>qkv</c> Linear, q·D^-½·kᵀ + the relative
/// position bias (<c>relative_position_bias_table</c> [(2wh−1)(2ww−1), heads] gathered by the buffer
/// <c>relative_position_index</c>) + the shift mask, softmax (through <c>attend</c>, which hooks see as
/// [B·windows, heads, N, N]), dropout, ·v, <c>proj</c>, dropout, reverse the partition, roll back, crop.
/// <see cref="ShiftedWindowAttentionV2"/> replaces the scores and the bias.
/// </summary>
public class ShiftedWindowAttention : Module
{
    private readonly Dropout _attnDropout, _dropout;
    private WindowGeometry? _geometry;

    /// <summary>The relative position index as ints (the buffer <c>relative_position_index</c> holds the same values).</summary>
    protected int[] Index { get; }
    /// <summary>Window height and width.</summary>
    public (int H, int W) WindowSize { get; }
    /// <summary>Shift of the odd blocks (zero for the even ones).</summary>
    public (int H, int W) ShiftSize { get; }
    /// <summary>Heads.</summary>
    public int NumHeads { get; }
    /// <summary>Tokens per window N = wh·ww.</summary>
    public int WindowTokens => WindowSize.H * WindowSize.W;
    /// <summary>Fused q, k, v projection C → 3C (key <c>qkv</c>).</summary>
    public Linear Qkv { get; }
    /// <summary>Output projection (key <c>proj</c>).</summary>
    public Linear Proj { get; }
    /// <summary>The bias table [(2wh−1)(2ww−1), heads] (key <c>relative_position_bias_table</c>; null in v2).</summary>
    public Tensor? RelativePositionBiasTable { get; }
    /// <summary>The attention probabilities [B·windows, heads, N, N] as a module, for hooks (key <c>attend</c>).</summary>
    public AttentionProbabilities Attend { get; }

    /// <summary>Creates the layer (v1 when <paramref name="v2"/> is false).</summary>
    protected ShiftedWindowAttention(int dim, (int H, int W) windowSize, (int H, int W) shiftSize, int numHeads, float attentionDropout,
        float dropout, bool v2)
    {
        WindowSize = windowSize; ShiftSize = shiftSize; NumHeads = numHeads;
        Qkv = RegisterModule("qkv", new Linear(dim, dim * 3));
        Proj = RegisterModule("proj", new Linear(dim, dim));
        Index = RelativePositionIndex(windowSize);
        if (!v2)
        {
            int t = (2 * windowSize.H - 1) * (2 * windowSize.W - 1);
            RelativePositionBiasTable = RegisterParameter("relative_position_bias_table", Init.TruncNormal(0.02f, t, numHeads));
            RegisterIndexBuffer();
        }
        _attnDropout = RegisterModule("attn_dropout", new Dropout(attentionDropout));
        _dropout = RegisterModule("dropout", new Dropout(dropout));
        Attend = RegisterModule("attend", new AttentionProbabilities());
    }

    /// <summary>Creates a version-1 layer.</summary>
    public ShiftedWindowAttention(int dim, (int H, int W) windowSize, (int H, int W) shiftSize, int numHeads, float attentionDropout = 0f, float dropout = 0f)
        : this(dim, windowSize, shiftSize, numHeads, attentionDropout, dropout, v2: false) { }

    /// <summary>Registers <see cref="Index"/> as the buffer <c>relative_position_index</c> (where torchvision registers it:
    /// after the bias table in v1, after <c>relative_coords_table</c> in v2).</summary>
    protected void RegisterIndexBuffer() =>
        RegisterBuffer("relative_position_index", new Tensor(Index.Select(i => (float)i).ToArray(), Index.Length));

    /// <summary>torchvision's <c>relative_position_index</c>: for tokens i, j of a window,
    /// (yi − yj + wh − 1)·(2ww − 1) + (xi − xj + ww − 1), flattened [N·N].</summary>
    public static int[] RelativePositionIndex((int H, int W) window)
    {
        int n = window.H * window.W;
        var index = new int[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                index[i * n + j] = (i / window.W - j / window.W + window.H - 1) * (2 * window.W - 1) + (i % window.W - j % window.W + window.W - 1);
        return index;
    }

    /// <summary>The bias added to every window's scores: [heads, N, N].</summary>
    protected virtual Tensor RelativeBias() => F.RelativePositionBias(RelativePositionBiasTable!, Index, WindowTokens);

    /// <summary>The q, k, v projection of the window tokens (v2 zeroes the k part of the bias).</summary>
    protected virtual Tensor ProjectQkv(Tensor x) => Qkv.Forward(x);

    /// <summary>The scores [G, heads, N, N] of q and k [G, heads, N, D].</summary>
    protected virtual Tensor Scores(Tensor q, Tensor k) => Tensor.MatMul(q * (1f / MathF.Sqrt(q.Dim(-1))), k, transB: true);

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank != 4) throw new ArgumentException($"window attention: expected [B, H, W, C], got {Tensor.ShapeString(x.ShapeSpan)}");
        int b = x.Dim(0), h = x.Dim(1), w = x.Dim(2), c = x.Dim(3), n = WindowTokens, d = c / NumHeads;
        var geo = _geometry;
        if (geo is null || geo.H != h || geo.W != w) _geometry = geo = new WindowGeometry(h, w, WindowSize, ShiftSize);
        int g = b * geo.Windows;
        var windows = F.GatherRows(x, geo.Partition, h * w, [g, n, c]);
        Tensor o;
        if (FusedScores && !(Training && _attnDropout.P > 0) && OpTrace.Current is null)
            // One op from the projection to the heads' outputs (the ONNX trace and attention dropout take the steps below).
            o = F.WindowAttention(ProjectQkv(windows), NumHeads, RelativeBias(), geo.Mask, geo.Windows, probs: Attend.WhenObserved(_attnDropout));
        else o = AttentionSteps(windows, geo, g, n, c, d);
        o = _dropout.Forward(Proj.Forward(o));
        return F.GatherRows(o, geo.Merge, geo.Windows * n, [b, h, w, c]);
    }

    // Whether the scores are v1's q·D^-½·kᵀ + bias, which F.WindowAttention computes in one op: not in v2 (cosine
    // similarities) nor in any other subclass that may override Scores, RelativeBias or ProjectQkv.
    private bool FusedScores => GetType() == typeof(ShiftedWindowAttention);

    // The reference's steps: split q, k, v into [G, heads, N, D], scores, bias and mask, softmax, dropout, ·v → [G, N, C].
    private Tensor AttentionSteps(Tensor windows, WindowGeometry geo, int g, int n, int c, int d)
    {
        var qkv = ProjectQkv(windows).Reshape(g, n, 3, NumHeads, d).Permute(2, 0, 3, 1, 4);
        var q = qkv.Slice(0, 0, 1).Reshape(g, NumHeads, n, d);
        var k = qkv.Slice(0, 1, 1).Reshape(g, NumHeads, n, d);
        var v = qkv.Slice(0, 2, 1).Reshape(g, NumHeads, n, d);
        var attn = F.AddWindowBias(Scores(q, k), RelativeBias(), geo.Mask, geo.Windows);
        attn = _attnDropout.Forward(Attend.Forward(F.Softmax(attn, -1)));
        return Tensor.MatMul(attn, v).Transpose(1, 2).Reshape(g, n, c);
    }
}

/// <summary>
/// torchvision's <c>ShiftedWindowAttentionV2</c>: cosine attention — normalize(q)·normalize(k)ᵀ times
/// exp(min(<c>logit_scale</c>, log 100)) per head ([heads, 1, 1], initialised log 10) — plus 16·sigmoid of the
/// continuous position bias <c>cpb_mlp</c> (Linear(2 → 512) → ReLU → Linear(512 → heads, no bias)) of the buffer
/// <c>relative_coords_table</c> [1, 2wh−1, 2ww−1, 2] gathered by <c>relative_position_index</c>; the k part of the
/// <c>qkv</c> bias is zero (in the forward, as torchvision's clone).
/// </summary>
public sealed class ShiftedWindowAttentionV2 : ShiftedWindowAttention
{
    private readonly Tensor _kBiasMask;

    /// <summary>The continuous position bias MLP (key <c>cpb_mlp</c>: 0 Linear, 1 ReLU, 2 Linear).</summary>
    public Sequential CpbMlp { get; }
    /// <summary>The log-coordinates the MLP reads [1, 2wh−1, 2ww−1, 2] (buffer <c>relative_coords_table</c>).</summary>
    public Tensor RelativeCoordsTable { get; }
    /// <summary>Per-head log temperature [heads, 1, 1] (key <c>logit_scale</c>).</summary>
    public Tensor LogitScale { get; }

    /// <summary>Creates the layer.</summary>
    public ShiftedWindowAttentionV2(int dim, (int H, int W) windowSize, (int H, int W) shiftSize, int numHeads, float attentionDropout = 0f, float dropout = 0f)
        : base(dim, windowSize, shiftSize, numHeads, attentionDropout, dropout, v2: true)
    {
        CpbMlp = RegisterModule("cpb_mlp", new Sequential(new Linear(2, 512), new ReLU(), new Linear(512, numHeads, bias: false)));
        RelativeCoordsTable = RegisterBuffer("relative_coords_table", CoordsTable(windowSize));
        RegisterIndexBuffer();
        LogitScale = RegisterParameter("logit_scale", Tensor.Full(MathF.Log(10f), numHeads, 1, 1));
        var mask = new float[3 * dim];
        mask.AsSpan(0, dim).Fill(1f);
        mask.AsSpan(2 * dim, dim).Fill(1f);
        _kBiasMask = new Tensor(mask, 3 * dim);
        Array.Clear(Qkv.Bias!.Data, dim, dim);
    }

    /// <summary>torchvision's <c>relative_coords_table</c>: offsets (−(w−1) … w−1) / (w − 1) · 8, then
    /// sign · log2(|·| + 1) / 3, as [1, 2wh−1, 2ww−1, 2] (float32 arithmetic, in torchvision's order).</summary>
    public static Tensor CoordsTable((int H, int W) window)
    {
        int th = 2 * window.H - 1, tw = 2 * window.W - 1;
        var t = new float[th * tw * 2];
        for (int i = 0; i < th; i++)
            for (int j = 0; j < tw; j++)
            {
                float a = (float)(i - (window.H - 1)) / (window.H - 1) * 8f, b = (float)(j - (window.W - 1)) / (window.W - 1) * 8f;
                t[(i * tw + j) * 2] = MathF.Sign(a) * MathF.Log2(MathF.Abs(a) + 1f) / 3f;
                t[(i * tw + j) * 2 + 1] = MathF.Sign(b) * MathF.Log2(MathF.Abs(b) + 1f) / 3f;
            }
        return new Tensor(t, 1, th, tw, 2);
    }

    /// <inheritdoc/>
    protected override Tensor ProjectQkv(Tensor x) => F.Linear(x, Qkv.Weight, Qkv.Bias is { } bias ? bias * _kBiasMask : null);

    /// <inheritdoc/>
    protected override Tensor RelativeBias()
    {
        var table = CpbMlp.Forward(RelativeCoordsTable).Reshape(-1, NumHeads);   // [T, heads]
        return F.RelativePositionBias(table.Sigmoid() * 16f, Index, WindowTokens);
    }

    /// <inheritdoc/>
    protected override Tensor Scores(Tensor q, Tensor k) =>
        Tensor.MatMul(F.L2Normalize(q), F.L2Normalize(k), transB: true) * LogitScale.ClampMax(MathF.Log(100f)).Exp();
}

/// <summary>
/// torchvision's <c>SwinTransformerBlock</c> (v1, pre-norm): x + sd(attn(norm1(x))), then x + sd(mlp(norm2(x))); and
/// <c>SwinTransformerBlockV2</c> (post-norm): x + sd(norm1(attn(x))), then x + sd(norm2(mlp(x))). The MLP is
/// <c>mlp.0</c> Linear(C → int(C·ratio)) → GELU → Dropout → <c>mlp.3</c> Linear → Dropout; sd is stochastic depth
/// (per sample, as torchvision's <c>StochasticDepth(p, "row")</c>). Maps [B, H, W, C] → [B, H, W, C].
/// </summary>
public sealed class SwinTransformerBlock : Module
{
    private readonly DropPath _stochasticDepth;
    private readonly bool _v2;

    /// <summary>First LayerNorm (key <c>norm1</c>).</summary>
    public LayerNorm Norm1 { get; }
    /// <summary>The window attention (key <c>attn</c>).</summary>
    public ShiftedWindowAttention Attn { get; }
    /// <summary>Second LayerNorm (key <c>norm2</c>).</summary>
    public LayerNorm Norm2 { get; }
    /// <summary>The MLP (key <c>mlp</c>).</summary>
    public Sequential Mlp { get; }

    /// <summary>Creates the block.</summary>
    public SwinTransformerBlock(int dim, int numHeads, (int H, int W) windowSize, (int H, int W) shiftSize, float mlpRatio, float dropout,
        float attentionDropout, float stochasticDepthProb, bool v2)
    {
        _v2 = v2;
        Norm1 = RegisterModule("norm1", new LayerNorm(dim));
        Attn = RegisterModule("attn", v2
            ? new ShiftedWindowAttentionV2(dim, windowSize, shiftSize, numHeads, attentionDropout, dropout)
            : new ShiftedWindowAttention(dim, windowSize, shiftSize, numHeads, attentionDropout, dropout));
        _stochasticDepth = RegisterModule("stochastic_depth", new DropPath(stochasticDepthProb));
        Norm2 = RegisterModule("norm2", new LayerNorm(dim));
        int hidden = (int)(dim * (double)mlpRatio);
        Mlp = RegisterModule("mlp", new Sequential(new Linear(dim, hidden), new GELU(), new Dropout(dropout), new Linear(hidden, dim), new Dropout(dropout)));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (_v2)
        {
            x = x + _stochasticDepth.Forward(Norm1.Forward(Attn.Forward(x)));
            return x + _stochasticDepth.Forward(Norm2.Forward(Mlp.Forward(x)));
        }
        x = x + _stochasticDepth.Forward(Attn.Forward(Norm1.Forward(x)));
        return x + _stochasticDepth.Forward(Mlp.Forward(Norm2.Forward(x)));
    }
}

/// <summary>
/// torchvision's <c>PatchMerging</c> (v1): pad H and W to even, concatenate the 2×2 neighbours (x[0::2, 0::2],
/// x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]) → <c>norm</c> LayerNorm(4C) → <c>reduction</c> Linear(4C → 2C, no bias);
/// <c>PatchMergingV2</c>: reduction first, then LayerNorm(2C). [B, H, W, C] → [B, ⌈H/2⌉, ⌈W/2⌉, 2C].
/// </summary>
public sealed class PatchMerging : Module
{
    private readonly bool _v2;
    private (int H, int W, int[] Map)? _map;

    /// <summary>Linear(4C → 2C, no bias) (key <c>reduction</c>).</summary>
    public Linear Reduction { get; }
    /// <summary>LayerNorm over 4C (v1) or 2C (v2) (key <c>norm</c>).</summary>
    public LayerNorm Norm { get; }

    /// <summary>Creates the merging of C-wide tokens.</summary>
    public PatchMerging(int dim, bool v2 = false)
    {
        _v2 = v2;
        Reduction = RegisterModule("reduction", new Linear(4 * dim, 2 * dim, bias: false));
        Norm = RegisterModule("norm", new LayerNorm(v2 ? 2 * dim : 4 * dim));
    }

    /// <summary>For output row (y, x, k) of ⌈H/2⌉ × ⌈W/2⌉ × 4 the input row (2y + k mod 2, 2x + k / 2), −1 in the padding.</summary>
    internal static int[] Map(int h, int w)
    {
        int h2 = (h + 1) / 2, w2 = (w + 1) / 2;
        var map = new int[h2 * w2 * 4];
        for (int y = 0; y < h2; y++)
            for (int x = 0; x < w2; x++)
                for (int k = 0; k < 4; k++)
                {
                    int sy = 2 * y + k % 2, sx = 2 * x + k / 2;
                    map[(y * w2 + x) * 4 + k] = sy < h && sx < w ? sy * w + sx : -1;
                }
        return map;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank != 4) throw new ArgumentException($"patch merging: expected [B, H, W, C], got {Tensor.ShapeString(x.ShapeSpan)}");
        int b = x.Dim(0), h = x.Dim(1), w = x.Dim(2), c = x.Dim(3);
        var m = _map;
        if (m is not { } cached || cached.H != h || cached.W != w) _map = m = (h, w, Map(h, w));
        var merged = F.GatherRows(x, m.Value.Map, h * w, [b, (h + 1) / 2, (w + 1) / 2, 4 * c]);
        return _v2 ? Norm.Forward(Reduction.Forward(merged)) : Reduction.Forward(Norm.Forward(merged));
    }
}

/// <summary>
/// Swin Transformer exactly as torchvision 0.14 <c>torchvision.models.swin_transformer.SwinTransformer</c> (v1 and v2):
/// <c>features.0</c> = Conv2d(c → C, kernel = stride = patch) → Permute to NHWC → LayerNorm(C); then per stage i (width
/// C·2^i) a Sequential of <c>depths[i]</c> blocks (odd blocks shifted by half a window), and between stages a patch
/// merging, all in <c>features</c>; <c>norm</c> LayerNorm → average over H, W (<c>permute</c>, <c>avgpool</c>,
/// <c>flatten</c>) → <c>head</c> Linear. Images [B, c, H, W] of any size ≥ the patch → logits [B, classes].
/// </summary>
public sealed class SwinTransformer : ImageModel<SwinTransformerConfig>
{
    private static readonly int[] SpatialAxes = [1, 2];

    /// <summary>Patch embedding, stages and mergings (key <c>features</c>).</summary>
    public Sequential Features { get; }
    /// <summary>Final LayerNorm (key <c>norm</c>).</summary>
    public LayerNorm Norm { get; }
    /// <summary>The classifier (key <c>head</c>).</summary>
    public Linear Head { get; private set; }

    /// <summary>The blocks of every stage, in order.</summary>
    public IEnumerable<SwinTransformerBlock> Blocks => Features.Items.Skip(1).OfType<Sequential>().SelectMany(s => s.Items.OfType<SwinTransformerBlock>());

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>): every Linear truncated
    /// N(0, 0.02²) with zero bias and the bias tables truncated N(0, 0.02²), as torchvision.</summary>
    public SwinTransformer(SwinTransformerConfig config) : base(config)
    {
        var (ph, pw) = (config.PatchSize[0], config.PatchSize[1]);
        var window = (config.WindowSize[0], config.WindowSize[1]);
        Features = new Sequential(new Sequential(
            new Conv2d(config.InChans, config.EmbedDim, (ph, pw), (ph, pw), (0, 0)), new Permute(0, 2, 3, 1), new LayerNorm(config.EmbedDim)));
        int total = config.Depths.Sum(), id = 0;
        for (int i = 0; i < config.Stages; i++)
        {
            int dim = config.StageDim(i);
            var stage = new Sequential();
            for (int j = 0; j < config.Depths[i]; j++, id++)
            {
                float sd = total > 1 ? config.StochasticDepthProb * id / (total - 1) : 0f;
                var shift = j % 2 == 0 ? (0, 0) : (config.WindowSize[0] / 2, config.WindowSize[1] / 2);
                stage.Add(new SwinTransformerBlock(dim, config.NumHeads[i], window, shift, config.MlpRatio, config.Dropout, config.AttentionDropout, sd, config.IsV2));
            }
            Features.Add(stage);
            if (i < config.Stages - 1) Features.Add(new PatchMerging(dim, config.IsMergingV2));
        }
        RegisterModule("features", Features);
        Norm = RegisterModule("norm", new LayerNorm(config.NumFeatures));
        Head = RegisterModule("head", new Linear(config.NumFeatures, config.NumClasses));
        foreach (var (_, m) in NamedModules())
            if (m is Linear fc)
            {
                Init.TruncNormal(0.02f, fc.Weight.Shape).Data.CopyTo(fc.Weight.Data, 0);
                if (fc.Bias is not null) Array.Clear(fc.Bias.Data);
            }
    }

    /// <inheritdoc/>
    public override void CheckInput(Tensor img)
    {
        base.CheckInput(img);
        if (img.Dim(2) < Config.PatchSize[0] || img.Dim(3) < Config.PatchSize[1])
            throw new ArgumentException($"expected images of at least one {Check.Size((Config.PatchSize[0], Config.PatchSize[1]))} patch, got {Tensor.ShapeString(img.ShapeSpan)}");
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img)
    {
        CheckInput(img);
        var x = Norm.Forward(ForwardFeatures(img));   // [B, h, w, C]
        return Head.Forward(x.Mean(SpatialAxes));
    }

    /// <summary><c>features</c>: the patch embedding, stages and mergings, [B, c, H, W] → [B, h, w, C_last] (NHWC).</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        if (Autograd.IsEnabled || TensorScope.Current is null || HasForwardHooksInTree()) return Features.Forward(img);
        var x = img;
        for (int i = 0; i < Features.Count; i++)
        {
            // Inference in a scope: each block's (and merging's) intermediates go back to the pool as soon as it is done.
            if (i > 0 && Features[i] is Sequential stage)
                for (int j = 0; j < stage.Count; j++) x = Step(stage[j], x);
            else x = Step(Features[i], x);
        }
        return x;

        static Tensor Step(Module m, Tensor x)
        {
            using var scope = TensorScope.Begin();
            return scope.Handover(m.Forward(x));
        }
    }
}
