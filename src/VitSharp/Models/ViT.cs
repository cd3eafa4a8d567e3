using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="ViT"/>, with vit-pytorch's constructor arguments (image_size, patch_size,
/// num_classes, dim, depth, heads, mlp_dim, pool, channels, dim_head, dropout, emb_dropout).
/// </summary>
public sealed record ViTConfig
{
    /// <summary>Image height in pixels.</summary>
    public required int ImageHeight { get; init; }
    /// <summary>Image width in pixels.</summary>
    public required int ImageWidth { get; init; }
    /// <summary>Patch height.</summary>
    public required int PatchHeight { get; init; }
    /// <summary>Patch width.</summary>
    public required int PatchWidth { get; init; }
    /// <summary>Number of classes; 0 returns the token embeddings instead of logits.</summary>
    public required int NumClasses { get; init; }
    /// <summary>Token width C.</summary>
    public required int Dim { get; init; }
    /// <summary>Number of transformer layers.</summary>
    public required int Depth { get; init; }
    /// <summary>Attention heads H.</summary>
    public required int Heads { get; init; }
    /// <summary>Hidden width of the feed-forward blocks.</summary>
    public required int MlpDim { get; init; }
    /// <summary>"cls" (token 0) or "mean" (mean over tokens, no class token).</summary>
    public string Pool { get; init; } = "cls";
    /// <summary>Input channels.</summary>
    public int Channels { get; init; } = 3;
    /// <summary>Head width D.</summary>
    public int DimHead { get; init; } = 64;
    /// <summary>Dropout inside the transformer.</summary>
    public float Dropout { get; init; }
    /// <summary>Dropout after adding position embeddings.</summary>
    public float EmbDropout { get; init; }

    /// <summary>Number of patches.</summary>
    public int NumPatches => (ImageHeight / PatchHeight) * (ImageWidth / PatchWidth);

    /// <summary>The configuration as vit_pytorch.vit.ViT keyword arguments (Python names), for checkpoints and the factory.</summary>
    public System.Text.Json.Nodes.JsonObject ToKwargs() => new()
    {
        ["image_size"] = ImageHeight == ImageWidth ? ImageHeight : new System.Text.Json.Nodes.JsonArray(ImageHeight, ImageWidth),
        ["patch_size"] = PatchHeight == PatchWidth ? PatchHeight : new System.Text.Json.Nodes.JsonArray(PatchHeight, PatchWidth),
        ["num_classes"] = NumClasses, ["dim"] = Dim, ["depth"] = Depth, ["heads"] = Heads, ["mlp_dim"] = MlpDim,
        ["pool"] = Pool, ["channels"] = Channels, ["dim_head"] = DimHead, ["dropout"] = Dropout, ["emb_dropout"] = EmbDropout,
    };

    /// <summary>Checks the configuration; throws <see cref="ArgumentException"/> naming the problem.</summary>
    public void Validate()
    {
        if (ImageHeight <= 0 || ImageWidth <= 0) throw new ArgumentException($"image size {ImageHeight}×{ImageWidth} must be positive");
        if (PatchHeight <= 0 || PatchWidth <= 0) throw new ArgumentException($"patch size {PatchHeight}×{PatchWidth} must be positive");
        if (ImageHeight % PatchHeight != 0 || ImageWidth % PatchWidth != 0)
            throw new ArgumentException($"image size {ImageHeight}×{ImageWidth} is not divisible by the patch size {PatchHeight}×{PatchWidth}");
        if (Pool != "cls" && Pool != "mean") throw new ArgumentException($"pool must be 'cls' or 'mean', got '{Pool}'");
        if (NumClasses < 0) throw new ArgumentException($"num_classes must be ≥ 0, got {NumClasses}");
        if (Dim <= 0 || Depth < 0 || Heads <= 0 || DimHead <= 0 || MlpDim <= 0 || Channels <= 0)
            throw new ArgumentException($"dim, heads, dim_head, mlp_dim and channels must be positive and depth ≥ 0 (dim {Dim}, depth {Depth}, heads {Heads}, dim_head {DimHead}, mlp_dim {MlpDim}, channels {Channels})");
        if (Dropout < 0 || Dropout > 1 || EmbDropout < 0 || EmbDropout > 1) throw new ArgumentException("dropout rates must lie in [0, 1]");
    }
}

/// <summary>
/// Vision Transformer exactly as vit-pytorch 1.23.6 <c>vit_pytorch.vit.ViT</c>: patchify → LayerNorm →
/// Linear → LayerNorm, class token [1, C] (none with mean pooling), learned positions [N+1, C],
/// <see cref="Transformer"/>, pooling, <c>mlp_head</c>. Image [B, c, H, W] → logits [B, classes]
/// (or tokens [B, N+1, C] when num_classes is 0). <see cref="DistillableViT"/> derives from it, as in vit-pytorch.
/// </summary>
public class ViT : Module, IPatchTokenModel
{
    private readonly Dropout _embDropout;

    /// <summary>The configuration this model was built from (NumClasses follows <see cref="ResetClassifier"/>).</summary>
    public ViTConfig Config { get; private set; }
    /// <summary>Patch embedding (key <c>to_patch_embedding</c>).</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>Learned positions [N+1, C] (key <c>pos_embedding</c>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>Class token [1, C], or [0, C] with mean pooling (key <c>cls_token</c>).</summary>
    public Tensor ClsToken { get; }
    /// <summary>The transformer (key <c>transformer</c>).</summary>
    public Transformer Transformer { get; }
    /// <summary>Classifier (key <c>mlp_head</c>), null when num_classes is 0.</summary>
    public Linear? MlpHead { get; private set; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public ViT(ViTConfig config)
    {
        config.Validate();
        Config = config;
        int patchDim = config.Channels * config.PatchHeight * config.PatchWidth;
        int numCls = config.Pool == "cls" ? 1 : 0;
        ToPatchEmbedding = RegisterModule("to_patch_embedding", new Sequential(
            new PatchRearrange(config.PatchHeight, config.PatchWidth),
            new LayerNorm(patchDim), new Linear(patchDim, config.Dim), new LayerNorm(config.Dim)));
        PosEmbedding = RegisterParameter("pos_embedding", Tensor.RandN(Init.Rng, 0, 1, config.NumPatches + numCls, config.Dim));
        ClsToken = RegisterParameter("cls_token", Tensor.RandN(Init.Rng, 0, 1, numCls, config.Dim));
        _embDropout = RegisterModule("dropout", new Dropout(config.EmbDropout));
        Transformer = RegisterModule("transformer", new Transformer(config.Dim, config.Depth, config.Heads, config.DimHead, config.MlpDim, config.Dropout));
        if (config.NumClasses > 0) MlpHead = RegisterModule("mlp_head", new Linear(config.Dim, config.NumClasses));
    }

    /// <inheritdoc/>
    public int InputChannels => Config.Channels;
    /// <inheritdoc/>
    public int InputHeight => Config.ImageHeight;
    /// <inheritdoc/>
    public int InputWidth => Config.ImageWidth;

    /// <inheritdoc/>
    public (int Height, int Width) PatchGrid => (Config.ImageHeight / Config.PatchHeight, Config.ImageWidth / Config.PatchWidth);
    /// <inheritdoc/>
    /// <remarks>The class token (none with mean pooling); a <see cref="DistillableViT"/>'s distillation token is appended
    /// after the patches only when distilling, so it is not a prefix token.</remarks>
    public int NumPrefixTokens => Config.Pool == "cls" ? 1 : 0;

    /// <summary>Checks an image batch against the configuration; throws an <see cref="ArgumentException"/> naming the mismatch.</summary>
    public void CheckInput(Tensor img) => ImageInput.Check(img, Config.Channels, Config.ImageHeight, Config.ImageWidth);

    /// <summary>Tokens after the transformer (and its final LayerNorm): [B, N(+1), C].</summary>
    public Tensor ForwardFeatures(Tensor img) => Transformer.Forward(Embed(img));

    /// <summary>
    /// The tokens that enter the transformer: patch embeddings with the class token in front, plus positions, after the
    /// embedding dropout. [B, c, H, W] → [B, N(+1), C].
    /// </summary>
    public Tensor Embed(Tensor img)
    {
        CheckInput(img);
        int b = img.Dim(0);
        var x = ToPatchEmbedding.Forward(img);                       // [B, N, C]
        if (ClsToken.Dim(0) > 0)
            x = Tensor.Cat([ClsToken.Reshape(1, 1, Config.Dim).BroadcastTo(b, 1, Config.Dim), x], 1);
        int n = x.Dim(1);
        x = x + (n == PosEmbedding.Dim(0) ? PosEmbedding : PosEmbedding.Slice(0, 0, n));
        return _embDropout.Forward(x);
    }

    /// <summary>Pooling: token 0 ('cls') or the mean over tokens ('mean'). [B, N, C] → [B, C].</summary>
    public Tensor Pool(Tensor tokens) =>
        Config.Pool == "mean" ? tokens.Mean(1) : tokens.Slice(1, 0, 1).Reshape(tokens.Dim(0), tokens.Dim(2));

    /// <summary>The classifier on pooled features; with <paramref name="preLogits"/> returns the pooled features.</summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        var x = Pool(tokens);
        return preLogits || MlpHead is null ? x : MlpHead.Forward(x);
    }

    /// <summary>
    /// Replaces <c>mlp_head</c> with a freshly initialised Linear(dim → <paramref name="numClasses"/>) (seeded by
    /// <see cref="Init"/>) for fine-tuning on another label set; 0 removes it (the model then returns the tokens, as
    /// vit-pytorch with num_classes 0). Everything else keeps its weights.
    /// </summary>
    public void ResetClassifier(int numClasses)
    {
        if (numClasses < 0) throw new ArgumentException($"num_classes must be ≥ 0, got {numClasses}");
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
