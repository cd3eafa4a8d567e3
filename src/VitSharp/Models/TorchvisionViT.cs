using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="VisionTransformer"/>: torchvision's constructor arguments, with Python's names and defaults,
/// plus the extensions <c>in_chans</c> (input channels of <c>conv_proj</c>, 3 in torchvision) and <c>layer_norm_eps</c>
/// (1e-6 in torchvision, timm and Google's checkpoints; 1e-12 in Hugging Face <c>transformers</c>' ViT).
/// </summary>
public sealed record VisionTransformerConfig : ModelConfig<VisionTransformerConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "torchvision.models.vision_transformer.VisionTransformer";

    /// <summary>Image side (square images, as torchvision).</summary>
    [Kwarg("image_size", Min = 1)] public required int ImageSize { get; init; }
    /// <summary>Patch side; must divide the image side.</summary>
    [Kwarg("patch_size", Min = 1)] public required int PatchSize { get; init; }
    /// <summary>Encoder blocks.</summary>
    [Kwarg("num_layers", Min = 0)] public required int NumLayers { get; init; }
    /// <summary>Attention heads; must divide hidden_dim.</summary>
    [Kwarg("num_heads", Min = 1)] public required int NumHeads { get; init; }
    /// <summary>Token width C.</summary>
    [Kwarg("hidden_dim", Min = 1)] public required int HiddenDim { get; init; }
    /// <summary>Hidden width of the MLP blocks.</summary>
    [Kwarg("mlp_dim", Min = 1)] public required int MlpDim { get; init; }
    /// <summary>Dropout after the position embedding, after attention and in the MLP.</summary>
    [Kwarg("dropout", Rate = true)] public float Dropout { get; init; }
    /// <summary>Dropout on the attention probabilities.</summary>
    [Kwarg("attention_dropout", Rate = true)] public float AttentionDropout { get; init; }
    /// <summary>Classes of <c>heads.head</c>; 0 = no head (the class token's features are returned).</summary>
    [Kwarg("num_classes", Min = 0)] public int NumClasses { get; init; } = 1000;
    /// <summary>When set, <c>heads.pre_logits</c> Linear(C → this) and tanh precede the head.</summary>
    [Kwarg("representation_size", Min = 1)] public int? RepresentationSize { get; init; }
    /// <summary>Input channels (extension; torchvision has 3).</summary>
    [Kwarg("in_chans", Min = 1)] public int InChans { get; init; } = 3;
    /// <summary>Epsilon of every LayerNorm (ln_1, ln_2, encoder.ln) (extension; torchvision has 1e-6).</summary>
    [Kwarg("layer_norm_eps")] public float LayerNormEps { get; init; } = 1e-6f;

    /// <summary>Patches per side.</summary>
    public int GridSize => ImageSize / PatchSize;
    /// <summary>Tokens including the class token: (image/patch)² + 1.</summary>
    public int SeqLength => GridSize * GridSize + 1;

    /// <inheritdoc/>
    protected override void CheckMore()
    {
        Check.Divisible((ImageSize, ImageSize), (PatchSize, PatchSize));
        if (HiddenDim % NumHeads != 0) throw new ArgumentException($"hidden_dim {HiddenDim} is not divisible by num_heads {NumHeads}");
        if (!(LayerNormEps > 0) || !float.IsFinite(LayerNormEps)) throw new ArgumentException($"layer_norm_eps must be positive and finite, got {LayerNormEps}");
    }

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (InChans, ImageSize, ImageSize);
}

/// <summary>
/// torchvision's ViT <c>EncoderBlock</c>: x = x + dropout(self_attention(ln_1(x))); x = x + mlp(ln_2(x)), with
/// <c>mlp</c> = Linear(C→M) (<c>mlp.0</c>) → GELU → Dropout → Linear(M→C) (<c>mlp.3</c>) → Dropout; LayerNorm eps 1e-6
/// unless another is given.
/// </summary>
public sealed class EncoderBlock : Module
{
    private readonly Dropout _dropout;

    /// <summary>LayerNorm before attention (key <c>ln_1</c>).</summary>
    public LayerNorm Ln1 { get; }
    /// <summary>The attention (key <c>self_attention</c>).</summary>
    public MultiheadAttention SelfAttention { get; }
    /// <summary>LayerNorm before the MLP (key <c>ln_2</c>).</summary>
    public LayerNorm Ln2 { get; }
    /// <summary>The MLP (key <c>mlp</c>: 0 Linear, 1 GELU, 2 Dropout, 3 Linear, 4 Dropout).</summary>
    public Sequential Mlp { get; }

    /// <summary>Creates the block; MLP weights Xavier-uniform and biases N(0, 1e-6²), as torchvision's MLPBlock.</summary>
    public EncoderBlock(int hiddenDim, int numHeads, int mlpDim, float dropout, float attentionDropout, float layerNormEps = 1e-6f)
    {
        Ln1 = RegisterModule("ln_1", new LayerNorm(hiddenDim, layerNormEps));
        SelfAttention = RegisterModule("self_attention", new MultiheadAttention(hiddenDim, numHeads, attentionDropout));
        _dropout = RegisterModule("dropout", new Dropout(dropout));
        Ln2 = RegisterModule("ln_2", new LayerNorm(hiddenDim, layerNormEps));
        var fc1 = new Linear(hiddenDim, mlpDim);
        var fc2 = new Linear(mlpDim, hiddenDim);
        foreach (var fc in new[] { fc1, fc2 })
        {
            float bound = MathF.Sqrt(6f / (fc.InFeatures + fc.OutFeatures));
            Tensor.RandU(Init.Rng, -bound, bound, fc.Weight.Shape).Data.CopyTo(fc.Weight.Data, 0);
            Tensor.RandN(Init.Rng, 0, 1e-6f, fc.OutFeatures).Data.CopyTo(fc.Bias!.Data, 0);
        }
        Mlp = RegisterModule("mlp", new Sequential(fc1, new GELU(), new Dropout(dropout), fc2, new Dropout(dropout)));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input)
    {
        var x = _dropout.Forward(SelfAttention.Forward(Ln1.Forward(input))) + input;
        return Mlp.Forward(Ln2.Forward(x)) + x;
    }
}

/// <summary>
/// torchvision's ViT <c>Encoder</c>: x + <c>pos_embedding</c> [1, N+1, C] → dropout → <c>layers.encoder_layer_i</c> →
/// <c>ln</c> (LayerNorm eps 1e-6 unless another is given).
/// </summary>
public sealed class Encoder : Module
{
    private readonly Dropout _dropout;

    /// <summary>Learned positions [1, N+1, C], initialised N(0, 0.02²) (key <c>pos_embedding</c>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>The blocks (keys <c>layers.encoder_layer_0</c>, …).</summary>
    public NamedSequential Layers { get; }
    /// <summary>Final LayerNorm (key <c>ln</c>).</summary>
    public LayerNorm Ln { get; }

    /// <summary>Creates the encoder.</summary>
    public Encoder(int seqLength, int numLayers, int numHeads, int hiddenDim, int mlpDim, float dropout, float attentionDropout, float layerNormEps = 1e-6f)
    {
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 0.02f, 1, seqLength, hiddenDim));
        _dropout = RegisterModule("dropout", new Dropout(dropout));
        Layers = RegisterModule("layers", new NamedSequential());
        for (int i = 0; i < numLayers; i++)
            Layers.Add($"encoder_layer_{i}", new EncoderBlock(hiddenDim, numHeads, mlpDim, dropout, attentionDropout, layerNormEps));
        Ln = RegisterModule("ln", new LayerNorm(hiddenDim, layerNormEps));
    }

    /// <summary>The encoder blocks in order.</summary>
    public IEnumerable<EncoderBlock> Blocks => Layers.Modules.Cast<EncoderBlock>();

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input)
    {
        if (input.Rank != 3 || input.Dim(1) != PosEmbedding.Dim(1) || input.Dim(2) != PosEmbedding.Dim(2))
            throw new ArgumentException($"encoder: expected tokens [B, {PosEmbedding.Dim(1)}, {PosEmbedding.Dim(2)}], got {Tensor.ShapeString(input.ShapeSpan)}");
        return Ln.Forward(Layers.Forward(_dropout.Forward(input + PosEmbedding)));
    }
}

/// <summary>
/// Vision Transformer exactly as torchvision 0.14's <c>torchvision.models.vision_transformer.VisionTransformer</c>:
/// <c>conv_proj</c> (Conv2d, kernel = stride = patch) → tokens [B, (image/patch)², C] (row-major over the grid) →
/// cat(<c>class_token</c> [1, 1, C], tokens) → <see cref="Encoder"/> → token 0 → <c>heads</c> (<c>head</c> Linear, or
/// <c>pre_logits</c> Linear → tanh → <c>head</c> with a representation size). Same module tree and state_dict keys as
/// torchvision, so its weights load with no key map. Initialisation as torchvision: conv_proj truncated N(0, 1/fan_in),
/// class token zero, pre_logits truncated N(0, 1/fan_in), head zero.
/// </summary>
public sealed class VisionTransformer : ImageModel<VisionTransformerConfig>
{

    /// <summary>Patch embedding (key <c>conv_proj</c>).</summary>
    public Conv2d ConvProj { get; }
    /// <summary>Class token [1, 1, C] (key <c>class_token</c>).</summary>
    public Tensor ClassToken { get; }
    /// <summary>The encoder (key <c>encoder</c>).</summary>
    public Encoder Encoder { get; }
    /// <summary>The classifier stack (key <c>heads</c>: <c>pre_logits</c>, <c>act</c>, <c>head</c>).</summary>
    public NamedSequential Heads { get; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public VisionTransformer(VisionTransformerConfig config) : base(config)
    {
        int c = config.HiddenDim;
        ConvProj = RegisterModule("conv_proj", new Conv2d(config.InChans, c, config.PatchSize, config.PatchSize));
        ClassToken = RegisterParameter("class_token", Tensor.Zeros(1, 1, c));
        Encoder = RegisterModule("encoder", new Encoder(config.SeqLength, config.NumLayers, config.NumHeads, c, config.MlpDim, config.Dropout, config.AttentionDropout, config.LayerNormEps));
        Heads = RegisterModule("heads", new NamedSequential());
        int width = c;
        if (config.RepresentationSize is int rep)
        {
            var pre = new Linear(c, rep);
            TruncNormal(pre.Weight, MathF.Sqrt(1f / c));
            Array.Clear(pre.Bias!.Data);
            Heads.Add("pre_logits", pre);
            Heads.Add("act", new Tanh());
            width = rep;
        }
        if (config.NumClasses > 0) Heads.Add("head", ZeroHead(width, config.NumClasses));
        TruncNormal(ConvProj.Weight, MathF.Sqrt(1f / (config.InChans * config.PatchSize * config.PatchSize)));
        Array.Clear(ConvProj.Bias!.Data);
    }

    /// <summary>Width of the features <c>head</c> sees (representation_size, else hidden_dim).</summary>
    public int NumFeatures => Config.RepresentationSize ?? Config.HiddenDim;

    private static Linear ZeroHead(int inFeatures, int classes)
    {
        var head = new Linear(inFeatures, classes);
        Array.Clear(head.Weight.Data);
        Array.Clear(head.Bias!.Data);
        return head;
    }

    /// <summary>torch.nn.init.trunc_normal_(std, a = −2, b = 2): N(0, std²) redrawn outside [−2, 2].</summary>
    private static void TruncNormal(Tensor t, float std)
    {
        var rng = Init.Rng;
        var d = t.Data;
        Tensor.RandN(rng, 0, std, d.Length).Data.CopyTo(d, 0);
        for (int i = 0; i < d.Length; i++)
            while (d[i] < -2f || d[i] > 2f) d[i] = Tensor.RandN(rng, 0, std, 1).Data[0];
    }

    /// <summary>torchvision's <c>_process_input</c>: conv_proj then [B, C, h, w] → [B, h·w, C].</summary>
    public Tensor ProcessInput(Tensor img)
    {
        CheckInput(img);
        var x = ConvProj.Forward(img);                                    // [B, C, h, w]
        int b = x.Dim(0), c = x.Dim(1);
        return x.Reshape(b, c, x.Dim(2) * x.Dim(3)).Permute(0, 2, 1);
    }

    /// <summary>Tokens after the encoder (and its final LayerNorm): [B, N+1, C], class token first.</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        var x = ProcessInput(img);
        int b = x.Dim(0), c = Config.HiddenDim;
        x = Tensor.Cat([ClassToken.BroadcastTo(b, 1, c), x], 1);
        return Encoder.Forward(x);
    }

    /// <summary>The class token's features, then <c>heads</c>; with <paramref name="preLogits"/> stops before <c>head</c>
    /// (after pre_logits and tanh when there is a representation layer).</summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        int b = tokens.Dim(0), c = tokens.Dim(2);
        var x = tokens.Slice(1, 0, 1).Reshape(b, c);
        if (!preLogits) return Heads.Forward(x);
        var heads = Heads.NamedChildren();
        for (int i = 0; i < heads.Count; i++)   // indexed: a foreach over the interface would allocate an enumerator each step
            if (heads[i].Name != "head") x = heads[i].Module.Forward(x);
        return x;
    }

    /// <summary>
    /// Replaces <c>heads.head</c> with a zero-initialised Linear(features → <paramref name="numClasses"/>) as torchvision
    /// initialises it (0 removes it: the model then returns the pre-logit features), for fine-tuning on another label set.
    /// A representation layer (<c>pre_logits</c>) and the backbone keep their weights.
    /// </summary>
    public void ResetClassifier(int numClasses)
    {
        Check.AtLeast(numClasses, 0, "num_classes");
        Config = Config with { NumClasses = numClasses };
        Heads.Replace("head", numClasses > 0 ? ZeroHead(NumFeatures, numClasses) : null);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
