using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>Configuration of <see cref="ViT"/>: vit-pytorch's constructor arguments, with Python's names and defaults.</summary>
public sealed record ViTConfig : ModelConfig<ViTConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "vit_pytorch.vit.ViT";

    /// <summary>Image height (image_size: an int or a pair).</summary>
    [Kwarg("image_size", PairWith = nameof(ImageWidth), Min = 1)] public required int ImageHeight { get; init; }
    /// <summary>Image width.</summary>
    public required int ImageWidth { get; init; }
    /// <summary>Patch height (patch_size: an int or a pair).</summary>
    [Kwarg("patch_size", PairWith = nameof(PatchWidth), Min = 1)] public required int PatchHeight { get; init; }
    /// <summary>Patch width.</summary>
    public required int PatchWidth { get; init; }
    /// <summary>Number of classes; 0 returns the tokens instead of logits.</summary>
    [Kwarg("num_classes", Min = 0)] public required int NumClasses { get; init; }
    /// <summary>Token width C.</summary>
    [Kwarg("dim", Min = 1)] public required int Dim { get; init; }
    /// <summary>Transformer layers.</summary>
    [Kwarg("depth", Min = 0)] public required int Depth { get; init; }
    /// <summary>Attention heads H.</summary>
    [Kwarg("heads", Min = 1)] public required int Heads { get; init; }
    /// <summary>Hidden width of the feed-forward blocks.</summary>
    [Kwarg("mlp_dim", Min = 1)] public required int MlpDim { get; init; }
    /// <summary>"cls" (token 0) or "mean" (mean over the tokens; the class token is then [0, C]).</summary>
    [Kwarg("pool", OneOf = ["cls", "mean"])] public string Pool { get; init; } = "cls";
    /// <summary>Input channels.</summary>
    [Kwarg("channels", Min = 1)] public int Channels { get; init; } = 3;
    /// <summary>Head width D.</summary>
    [Kwarg("dim_head", Min = 1)] public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside the transformer.</summary>
    [Kwarg("dropout", Rate = true)] public float Dropout { get; init; }
    /// <summary>Dropout after adding the positions.</summary>
    [Kwarg("emb_dropout", Rate = true)] public float EmbDropout { get; init; }

    /// <summary>Number of patches.</summary>
    public int NumPatches => (ImageHeight / PatchHeight) * (ImageWidth / PatchWidth);

    /// <inheritdoc/>
    protected override void CheckMore() => Check.Divisible((ImageHeight, ImageWidth), (PatchHeight, PatchWidth));

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (Channels, ImageHeight, ImageWidth);
}

/// <summary>
/// vit-pytorch 1.23.6 <c>vit_pytorch.vit.ViT</c>: patch embedding, class token [1, C] ([0, C] with mean pooling), positions
/// [N+1, C], <see cref="Transformer"/>, pooling, <c>mlp_head</c>. Image [B, c, H, W] → logits [B, classes] (the tokens
/// [B, N+1, C] when num_classes is 0). <see cref="DistillableViT"/> derives from it, as in vit-pytorch.
/// </summary>
public class ViT : ImageModel<ViTConfig>, IPatchTokenModel
{
    private readonly Dropout _dropout;

    /// <summary>Key <c>to_patch_embedding</c>.</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>Learned positions [N+1, C] (key <c>pos_embedding</c>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>Class token [1, C], or [0, C] with mean pooling (key <c>cls_token</c>).</summary>
    public Tensor ClsToken { get; }
    /// <summary>Key <c>transformer</c>.</summary>
    public Transformer Transformer { get; }
    /// <summary>Classifier (key <c>mlp_head</c>), null when num_classes is 0.</summary>
    public Linear? MlpHead { get; private set; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public ViT(ViTConfig config) : base(config)
    {
        int numClsTokens = config.Pool == "cls" ? 1 : 0;
        ToPatchEmbedding = RegisterModule("to_patch_embedding", VitLayers.PatchEmbedding(config.Channels, config.PatchHeight, config.PatchWidth, config.Dim));
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 1, config.NumPatches + numClsTokens, config.Dim));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(Init.Rng, 0, 1, numClsTokens, config.Dim));
        _dropout = RegisterModule("dropout", new Dropout(config.EmbDropout));
        Transformer = RegisterModule("transformer", new Transformer(config.Dim, config.Depth, config.Heads, config.DimHead, config.MlpDim, config.Dropout));
        if (config.NumClasses > 0) MlpHead = RegisterModule("mlp_head", new Linear(config.Dim, config.NumClasses));
    }

    /// <inheritdoc/>
    public (int Height, int Width) PatchGrid => (Config.ImageHeight / Config.PatchHeight, Config.ImageWidth / Config.PatchWidth);
    /// <inheritdoc/>
    /// <remarks>The class token (none with mean pooling); a <see cref="DistillableViT"/>'s distillation token comes after the patches.</remarks>
    public int NumPrefixTokens => ClsToken.Dim(0);

    /// <summary>The tokens that enter the transformer: class token and patches, plus positions, after dropout. [B, N(+1), C].</summary>
    public Tensor Embed(Tensor img)
    {
        CheckInput(img);
        var x = VitLayers.Prepend(ClsToken, ToPatchEmbedding.Forward(img));
        return _dropout.Forward(x + PosEmbedding);
    }

    /// <summary>Tokens after the transformer (and its final LayerNorm): [B, N(+1), C].</summary>
    public Tensor ForwardFeatures(Tensor img) => Transformer.Forward(Embed(img));

    /// <summary>Pooling (token 0 or the mean), then <c>mlp_head</c>; with <paramref name="preLogits"/> the pooled features [B, C].</summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        var x = VitLayers.Pool(tokens, Config.Pool);
        return preLogits || MlpHead is null ? x : MlpHead.Forward(x);
    }

    /// <summary>
    /// A freshly initialised <c>mlp_head</c> Linear(dim → <paramref name="numClasses"/>) for fine-tuning; 0 removes it (the
    /// model then returns the tokens). Everything else keeps its weights.
    /// </summary>
    public void ResetClassifier(int numClasses)
    {
        Check.AtLeast(numClasses, 0, "num_classes");
        Config = Config with { NumClasses = numClasses };
        MlpHead = numClasses > 0 ? new Linear(Config.Dim, numClasses) : null;
        ReplaceModule("mlp_head", MlpHead);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img)
    {
        var tokens = ForwardFeatures(img);
        return MlpHead is null ? tokens : ForwardHead(tokens);
    }
}
