using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>Configuration of <see cref="SimpleViT"/>: vit-pytorch's constructor arguments, with Python's names and defaults.</summary>
public sealed record SimpleViTConfig : ModelConfig<SimpleViTConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "vit_pytorch.simple_vit.SimpleViT";

    /// <summary>Image height (image_size: an int or a pair).</summary>
    [Kwarg("image_size", PairWith = nameof(ImageWidth), Min = 1)] public required int ImageHeight { get; init; }
    /// <summary>Image width.</summary>
    public required int ImageWidth { get; init; }
    /// <summary>Patch height (patch_size: an int or a pair).</summary>
    [Kwarg("patch_size", PairWith = nameof(PatchWidth), Min = 1)] public required int PatchHeight { get; init; }
    /// <summary>Patch width.</summary>
    public required int PatchWidth { get; init; }
    /// <summary>Number of classes (0 gives logits [B, 0], as the reference's <c>Linear(dim, 0)</c>).</summary>
    [Kwarg("num_classes", Min = 0)] public required int NumClasses { get; init; }
    /// <summary>Token width C; a multiple of 4 and at least 8 (the 2-D sin-cos positions use C/4 frequencies).</summary>
    [Kwarg("dim", Min = 1)] public required int Dim { get; init; }
    /// <summary>Transformer layers.</summary>
    [Kwarg("depth", Min = 0)] public required int Depth { get; init; }
    /// <summary>Attention heads H.</summary>
    [Kwarg("heads", Min = 1)] public required int Heads { get; init; }
    /// <summary>Hidden width of the feed-forward blocks.</summary>
    [Kwarg("mlp_dim", Min = 1)] public required int MlpDim { get; init; }
    /// <summary>Input channels.</summary>
    [Kwarg("channels", Min = 1)] public int Channels { get; init; } = 3;
    /// <summary>Head width D.</summary>
    [Kwarg("dim_head", Min = 1)] public int DimHead { get; init; } = 64;

    /// <summary>Patch grid rows.</summary>
    public int GridHeight => ImageHeight / PatchHeight;
    /// <summary>Patch grid columns.</summary>
    public int GridWidth => ImageWidth / PatchWidth;
    /// <summary>Number of patches (tokens).</summary>
    public int NumPatches => GridHeight * GridWidth;

    /// <inheritdoc/>
    protected override void CheckMore()
    {
        Check.Divisible((ImageHeight, ImageWidth), (PatchHeight, PatchWidth));
        if (Dim % 4 != 0) throw new ArgumentException($"SimpleViT needs dim divisible by 4 for its 2-D sin-cos position embedding, got {Dim}");
        // The reference divides by dim/4 − 1: dim 4 gives 0/0 = NaN positions there.
        if (Dim < 8) throw new ArgumentException($"SimpleViT needs dim ≥ 8 (its sin-cos frequencies divide by dim/4 − 1), got {Dim}");
    }

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (Channels, ImageHeight, ImageWidth);
}

/// <summary>
/// vit-pytorch 1.23.6 <c>vit_pytorch.simple_vit.SimpleViT</c> ("Better plain ViT baselines"): patchify → LayerNorm →
/// Linear → LayerNorm, plus fixed 2-D sin-cos positions (not parameters, not in the state_dict), a transformer whose
/// attention output projection has no bias (<c>to_out</c> a bare Linear) and whose MLPs have no dropout, a final
/// LayerNorm, mean pooling over the tokens and <c>linear_head</c>. Image [B, c, H, W] → logits [B, classes].
/// </summary>
public sealed class SimpleViT : ImageModel<SimpleViTConfig>
{
    /// <summary>Patch embedding (key <c>to_patch_embedding</c>).</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>The fixed 2-D sin-cos positions [N, C] (not a parameter; see <see cref="SinCos2D"/>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>The transformer, with its final LayerNorm (key <c>transformer</c>).</summary>
    public Transformer Transformer { get; }
    /// <summary>Classifier (key <c>linear_head</c>).</summary>
    public Linear LinearHead { get; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public SimpleViT(SimpleViTConfig config) : base(config)
    {
        ToPatchEmbedding = RegisterModule("to_patch_embedding", VitLayers.PatchEmbedding(config.Channels, config.PatchHeight, config.PatchWidth, config.Dim));
        PosEmbedding = SinCos2D(config.GridHeight, config.GridWidth, config.Dim);
        Transformer = RegisterModule("transformer", new Transformer(config.Dim, config.Depth,
            _ => new Attention(config.Dim, config.Heads, config.DimHead, outBias: false, bareOut: true),
            _ => new FeedForward(config.Dim, config.MlpDim, dropoutLayers: false)));
        LinearHead = RegisterModule("linear_head", new Linear(config.Dim, config.NumClasses));
    }

    /// <summary>
    /// The reference's <c>posemb_sincos_2d(h, w, dim)</c> (temperature 10000): with ω_k = 1 / 10000^(k / (dim/4 − 1)),
    /// k = 0 … dim/4 − 1, the row of grid cell (y, x) (row-major, x the column) is [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)].
    /// Computed in float32 as PyTorch does. Returns [h·w, dim].
    /// </summary>
    public static Tensor SinCos2D(int h, int w, int dim, float temperature = 10000f)
    {
        if (h < 0 || w < 0) throw new ArgumentOutOfRangeException(nameof(h), $"grid {h}×{w} must be non-negative");
        if (dim % 4 != 0 || dim < 8) throw new ArgumentException($"the 2-D sin-cos embedding needs dim divisible by 4 and ≥ 8, got {dim}");
        int q = dim / 4;
        var omega = new float[q];
        for (int k = 0; k < q; k++) omega[k] = 1f / MathF.Pow(temperature, (float)k / (q - 1));
        var pe = new Tensor(h * w, dim);
        var d = pe.Data;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int row = (y * w + x) * dim;
                for (int k = 0; k < q; k++)
                {
                    float ax = x * omega[k], ay = y * omega[k];
                    d[row + k] = MathF.Sin(ax);
                    d[row + q + k] = MathF.Cos(ax);
                    d[row + 2 * q + k] = MathF.Sin(ay);
                    d[row + 3 * q + k] = MathF.Cos(ay);
                }
            }
        return pe;
    }

    /// <summary>Tokens after the transformer and its final LayerNorm: [B, N, C].</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        var x = ToPatchEmbedding.Forward(img);                       // [B, N, C]
        x = x + PosEmbedding;                                        // fixed positions, broadcast over the batch
        return Transformer.Forward(x);
    }

    /// <summary>Mean over the tokens, then <c>linear_head</c>; with <paramref name="preLogits"/> the pooled features [B, C].</summary>
    public Tensor ForwardHead(Tensor tokens, bool preLogits = false)
    {
        var x = tokens.Mean(1);
        return preLogits ? x : LinearHead.Forward(x);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
