using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="DistilledVisionTransformer"/>, with the keyword arguments of timm's
/// <c>timm.models.deit.VisionTransformerDistilled</c> (those of timm's <c>VisionTransformer</c> that DeiT's releases
/// use): img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_rate,
/// pos_drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate — with timm's defaults. Square images and patches.
/// </summary>
public sealed record DeiTConfig : ModelConfig<DeiTConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "timm.models.deit.VisionTransformerDistilled";

    /// <summary>Prefix tokens before the patches: the class token and the distillation token.</summary>
    public const int NumPrefixTokens = 2;

    /// <summary>Image side (timm's <c>img_size</c>).</summary>
    [Kwarg("img_size", Min = 1)] public int ImgSize { get; init; } = 224;
    /// <summary>Patch side; must divide the image side.</summary>
    [Kwarg("patch_size", Min = 1)] public int PatchSize { get; init; } = 16;
    /// <summary>Input channels.</summary>
    [Kwarg("in_chans", Min = 1)] public int InChans { get; init; } = 3;
    /// <summary>Classes of <c>head</c> and <c>head_dist</c>; 0 makes both Identity (the output is then the mean of the two tokens' features).</summary>
    [Kwarg("num_classes", Min = 0)] public int NumClasses { get; init; } = 1000;
    /// <summary>Token width C.</summary>
    [Kwarg("embed_dim", Min = 1)] public int EmbedDim { get; init; } = 768;
    /// <summary>Transformer blocks.</summary>
    [Kwarg("depth", Min = 0)] public int Depth { get; init; } = 12;
    /// <summary>Attention heads; must divide embed_dim.</summary>
    [Kwarg("num_heads", Min = 1)] public int NumHeads { get; init; } = 12;
    /// <summary>MLP hidden width over C; the hidden width is int(C·mlp_ratio).</summary>
    [Kwarg("mlp_ratio")] public double MlpRatio { get; init; } = 4.0;
    /// <summary>Whether <c>attn.qkv</c> has a bias.</summary>
    [Kwarg("qkv_bias")] public bool QkvBias { get; init; } = true;
    /// <summary>
    /// timm's head dropout rate. timm's <c>VisionTransformerDistilled.forward_head</c> does not apply it (it overrides the
    /// base class's head, where <c>head_drop</c> sits), so it has no effect here either; kept for the keyword arguments.
    /// </summary>
    [Kwarg("drop_rate", Rate = true)] public float DropRate { get; init; }
    /// <summary>Dropout after adding the position embedding (timm's <c>pos_drop</c>).</summary>
    [Kwarg("pos_drop_rate", Rate = true)] public float PosDropRate { get; init; }
    /// <summary>Dropout after the attention projection and in the MLP (timm's <c>proj_drop</c>, <c>mlp.drop1</c>, <c>mlp.drop2</c>).</summary>
    [Kwarg("proj_drop_rate", Rate = true)] public float ProjDropRate { get; init; }
    /// <summary>Dropout on the attention probabilities.</summary>
    [Kwarg("attn_drop_rate", Rate = true)] public float AttnDropRate { get; init; }
    /// <summary>Stochastic depth: block i drops its residual branches with probability rate·i/(depth − 1) (timm's linspace).</summary>
    [Kwarg("drop_path_rate", Rate = true)] public float DropPathRate { get; init; }

    /// <summary>Patches per side.</summary>
    public int GridSize => ImgSize / PatchSize;
    /// <summary>Patches.</summary>
    public int NumPatches => GridSize * GridSize;
    /// <summary>Tokens: patches plus the two prefix tokens.</summary>
    public int NumTokens => NumPatches + NumPrefixTokens;
    /// <summary>The MLP's hidden width int(C·mlp_ratio).</summary>
    public int MlpHidden => TimmBlock.MlpHidden(EmbedDim, MlpRatio);

    /// <summary>Reads timm's keyword arguments; <c>global_pool</c> may be given but must be "token".</summary>
    public static new DeiTConfig FromKwargs(ModelFactory.Kwargs k)
    {
        var pool = k.String("global_pool", "token");
        if (pool != "token") throw new ArgumentException($"global_pool must be 'token' for the distilled model (timm asserts it), got '{pool}'");
        return ModelConfig<DeiTConfig>.FromKwargs(k);
    }

    /// <inheritdoc/>
    protected override void CheckMore()
    {
        Check.Divisible((ImgSize, ImgSize), (PatchSize, PatchSize), "img_size");
        if (EmbedDim % NumHeads != 0) throw new ArgumentException($"embed_dim {EmbedDim} is not divisible by num_heads {NumHeads}");
        if (!(MlpRatio > 0) || double.IsInfinity(MlpRatio) || MlpHidden < 1)
            throw new ArgumentException($"mlp_ratio must give a positive MLP width int(embed_dim·mlp_ratio), got {MlpRatio}");
    }

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (InChans, ImgSize, ImgSize);
}

/// <summary>
/// DeiT's distilled Vision Transformer exactly as timm's <c>timm.models.deit.VisionTransformerDistilled</c> (the
/// released <c>deit_*_distilled_patch16_224</c>), with timm's module tree and state_dict keys, so DeiT's checkpoints load
/// with no key map: <c>patch_embed</c> (<see cref="TimmPatchEmbed"/>) → cat(<c>cls_token</c> [1, 1, C],
/// <c>dist_token</c> [1, 1, C], patches) + <c>pos_embed</c> [1, N + 2, C] → <c>pos_drop</c> → <c>blocks.i</c>
/// (<see cref="TimmBlock"/>) → <c>norm</c> (LayerNorm eps 1e-6) → x_cls = <c>head</c>(token 0), x_dist =
/// <c>head_dist</c>(token 1).
/// </summary>
/// <remarks>
/// <para><b>Output.</b> <see cref="Module.Forward"/> returns (x_cls + x_dist) / 2 — timm's output in evaluation mode, and
/// in training mode unless distillation training is switched on. With <c>set_distilled_training(True)</c> timm's forward
/// returns, in training mode only, the pair (x_cls, x_dist) unaveraged, for DeiT's hard-distillation loss
/// ½·CE(x_cls, labels) + ½·CE(x_dist, argmax teacher(x)). Our forward returns one tensor, so it always returns the mean;
/// the pair is <see cref="ForwardBoth"/>, and <see cref="DistilledTraining"/> is timm's flag, which a training loop reads
/// (<see cref="ReturnsBothHeads"/>) to decide which of the two to call.</para>
/// <para><b>Initialisation</b> as timm's default ('' / 'reset' mode): pos_embed and dist_token truncated N(0, 0.02²),
/// cls_token N(0, 1e-6²), every Linear (qkv, proj, fc1, fc2, head, head_dist) truncated N(0, 0.02²) with zero bias,
/// LayerNorms one/zero, the patch convolution PyTorch's default.</para>
/// <para><b>num_classes 0</b>: both heads are Identity, as in timm, and the output is the mean of the two tokens' features [B, C].</para>
/// </remarks>
public sealed class DistilledVisionTransformer : ImageModel<DeiTConfig>, IPatchTokenModel
{
    private readonly Dropout _posDrop;

    /// <summary>Class token [1, 1, C] (key <c>cls_token</c>).</summary>
    public Tensor ClsToken { get; }
    /// <summary>Learned positions [1, N + 2, C], the two prefix tokens first (key <c>pos_embed</c>).</summary>
    public Tensor PosEmbed { get; }
    /// <summary>Distillation token [1, 1, C] (key <c>dist_token</c>).</summary>
    public Tensor DistToken { get; }
    /// <summary>Patch embedding (key <c>patch_embed</c>).</summary>
    public TimmPatchEmbed PatchEmbed { get; }
    /// <summary>The blocks (keys <c>blocks.0</c>, …).</summary>
    public Sequential Blocks { get; }
    /// <summary>Final LayerNorm (key <c>norm</c>).</summary>
    public LayerNorm Norm { get; }
    /// <summary>Classifier on the class token (key <c>head</c>): a Linear, or Identity when num_classes is 0.</summary>
    public Module Head { get; private set; }
    /// <summary>Classifier on the distillation token (key <c>head_dist</c>): a Linear, or Identity when num_classes is 0.</summary>
    public Module HeadDist { get; private set; }

    /// <summary>
    /// timm's <c>distilled_training</c> (<c>set_distilled_training</c>): when set and the model is in training mode, timm's
    /// forward returns both heads' logits. See the class remarks; here <see cref="ReturnsBothHeads"/> tells a training
    /// loop to call <see cref="ForwardBoth"/>.
    /// </summary>
    public bool DistilledTraining { get; set; }

    /// <summary>Whether timm's forward would return the pair (x_cls, x_dist) now: distillation training on and training mode.</summary>
    public bool ReturnsBothHeads => DistilledTraining && Training;

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public DistilledVisionTransformer(DeiTConfig config) : base(config)
    {
        int c = config.EmbedDim;
        var rng = Init.Rng;
        PatchEmbed = RegisterModule("patch_embed", new TimmPatchEmbed(config.ImgSize, config.PatchSize, config.InChans, c));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(rng, 0, 1e-6f, 1, 1, c));
        PosEmbed = RegisterParameter("pos_embed", TruncNormal(rng, 0.02f, 1, config.NumTokens, c));
        DistToken = RegisterParameter("dist_token", TruncNormal(rng, 0.02f, 1, 1, c));
        _posDrop = RegisterModule("pos_drop", new Dropout(config.PosDropRate));
        Blocks = RegisterModule("blocks", new Sequential());
        for (int i = 0; i < config.Depth; i++)
        {
            // timm: dpr = linspace(0, drop_path_rate, depth)
            float dpr = config.Depth > 1 ? config.DropPathRate * i / (config.Depth - 1) : 0f;
            Blocks.Add(new TimmBlock(c, config.NumHeads, config.MlpRatio, config.QkvBias, config.ProjDropRate, config.AttnDropRate, dpr));
        }
        Norm = RegisterModule("norm", new LayerNorm(c, TimmBlock.LayerNormEps));
        Head = RegisterModule("head", NewHead(c, config.NumClasses, rng));
        HeadDist = RegisterModule("head_dist", NewHead(c, config.NumClasses, rng));
        foreach (var block in TimmBlocks)
            foreach (var fc in new[] { block.Attn.Qkv, block.Attn.Proj, block.Mlp.Fc1, block.Mlp.Fc2 }) TimmLinearInit(fc, rng);
    }

    private static Module NewHead(int dim, int classes, Random rng)
    {
        if (classes == 0) return new Identity();
        var head = new Linear(dim, classes);
        TimmLinearInit(head, rng);
        return head;
    }

    /// <summary>timm's <c>init_weights_vit_timm</c> for a Linear: weight truncated N(0, 0.02²), bias zero.</summary>
    private static void TimmLinearInit(Linear fc, Random rng)
    {
        TruncNormal(rng, 0.02f, fc.Weight.Shape).Data.CopyTo(fc.Weight.Data, 0);
        if (fc.Bias is not null) Array.Clear(fc.Bias.Data);
    }

    /// <summary>timm's <c>trunc_normal_(std)</c> (a = −2, b = 2 absolute): N(0, std²) redrawn outside [−2, 2].</summary>
    private static Tensor TruncNormal(Random rng, float std, params int[] shape)
    {
        var t = Tensor.RandN(rng, 0, std, shape);
        var d = t.Data;
        for (int i = 0; i < d.Length; i++)
            while (d[i] < -2f || d[i] > 2f) d[i] = Tensor.RandN(rng, 0, std, 1).Data[0];
        return t;
    }

    /// <inheritdoc/>
    public (int Height, int Width) PatchGrid => (Config.GridSize, Config.GridSize);
    /// <inheritdoc/>
    /// <remarks>Two: the class token, then the distillation token.</remarks>
    public int NumPrefixTokens => DeiTConfig.NumPrefixTokens;

    /// <summary>The blocks in order.</summary>
    public IEnumerable<TimmBlock> TimmBlocks
    {
        get { for (int i = 0; i < Blocks.Count; i++) yield return (TimmBlock)Blocks[i]; }
    }

    /// <summary>Width of the features the heads see (embed_dim; timm's <c>num_features</c>).</summary>
    public int NumFeatures => Config.EmbedDim;

    /// <summary>timm's <c>_pos_embed</c>: cat(cls_token, dist_token, patches) + pos_embed, then pos_drop. [B, N, C] → [B, N + 2, C].</summary>
    public Tensor AddPosEmbed(Tensor patches)
    {
        int b = patches.Dim(0), c = Config.EmbedDim;
        var x = Tensor.Cat([ClsToken.BroadcastTo(b, 1, c), DistToken.BroadcastTo(b, 1, c), patches], 1);
        return _posDrop.Forward(x + PosEmbed);
    }

    /// <summary>
    /// timm's <c>forward_features</c>: tokens after the blocks and the final <c>norm</c>, [B, N + 2, C] (class token, then
    /// distillation token, then the patches row-major).
    /// </summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        var x = AddPosEmbed(PatchEmbed.Forward(img));
        if (Autograd.IsEnabled || TensorScope.Current is null || HasForwardHooksInTree()) return Norm.Forward(Blocks.Forward(x));
        for (int i = 0; i < Blocks.Count; i++)
        {
            // Inference in a scope: each block's intermediates go back to the pool as soon as it is done.
            using var scope = TensorScope.Begin();
            x = scope.Handover(Blocks[i].Forward(x));
        }
        return Norm.Forward(x);
    }

    /// <summary>Both heads on the features: (head(token 0), head_dist(token 1)), each [B, classes] (or [B, C] with Identity heads).</summary>
    public (Tensor Cls, Tensor Dist) ForwardHeads(Tensor tokens)
    {
        var (x, xDist) = PrefixTokens(tokens);
        return (Head.Forward(x), HeadDist.Forward(xDist));
    }

    /// <summary>
    /// timm's <c>forward_head</c> outside distillation training: (head(token 0) + head_dist(token 1)) / 2; with
    /// <paramref name="preLogits"/> the mean of the two tokens' features, (token 0 + token 1) / 2, [B, C].
    /// </summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        if (preLogits)
        {
            var (x, xDist) = PrefixTokens(tokens);
            return (x + xDist) * 0.5f;
        }
        var (cls, dist) = ForwardHeads(tokens);
        return (cls + dist) * 0.5f;
    }

    private static (Tensor Cls, Tensor Dist) PrefixTokens(Tensor tokens)
    {
        if (tokens.Rank != 3 || tokens.Dim(1) < DeiTConfig.NumPrefixTokens)
            throw new ArgumentException($"expected tokens [B, N + 2, C], got {Tensor.ShapeString(tokens.ShapeSpan)}");
        int b = tokens.Dim(0), c = tokens.Dim(2);
        return (tokens.Slice(1, 0, 1).Reshape(b, c), tokens.Slice(1, 1, 1).Reshape(b, c));
    }

    /// <summary>
    /// The class head's and the distillation head's logits (x_cls, x_dist), unaveraged — what timm's forward returns in
    /// training mode with distillation training on, for DeiT's hard-distillation loss. Works in either mode.
    /// </summary>
    public (Tensor Cls, Tensor Dist) ForwardBoth(Tensor img) => ForwardHeads(ForwardFeatures(img));

    /// <summary>timm's <c>set_distilled_training</c>.</summary>
    public void SetDistilledTraining(bool enable = true) => DistilledTraining = enable;

    /// <summary>
    /// timm's <c>reset_classifier</c>: replaces <c>head</c> and <c>head_dist</c> with new Linear(C → <paramref name="numClasses"/>)
    /// layers initialised as torch.nn.Linear (U(−1/√C, 1/√C), seeded by <see cref="Init"/>: timm does not re-apply its
    /// truncated-normal init here), or with Identity for 0. The backbone keeps its weights.
    /// </summary>
    public void ResetClassifier(int numClasses)
    {
        Check.AtLeast(numClasses, 0, "num_classes");
        Config = Config with { NumClasses = numClasses };
        int c = Config.EmbedDim;
        Head = numClasses > 0 ? new Linear(c, numClasses) : new Identity();
        HeadDist = numClasses > 0 ? new Linear(c, numClasses) : new Identity();
        ReplaceModule("head", Head);
        ReplaceModule("head_dist", HeadDist);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
