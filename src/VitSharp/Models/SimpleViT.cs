using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="SimpleViT"/>, with vit-pytorch's constructor arguments (image_size, patch_size,
/// num_classes, dim, depth, heads, mlp_dim, channels, dim_head).
/// </summary>
public sealed record SimpleViTConfig
{
    /// <summary>The Python constructor this configuration describes.</summary>
    public const string Constructor = "vit_pytorch.simple_vit.SimpleViT";

    /// <summary>Image height in pixels.</summary>
    public required int ImageHeight { get; init; }
    /// <summary>Image width in pixels.</summary>
    public required int ImageWidth { get; init; }
    /// <summary>Patch height.</summary>
    public required int PatchHeight { get; init; }
    /// <summary>Patch width.</summary>
    public required int PatchWidth { get; init; }
    /// <summary>Number of classes (0 gives logits [B, 0], as the reference's <c>Linear(dim, 0)</c>).</summary>
    public required int NumClasses { get; init; }
    /// <summary>Token width C; a multiple of 4 and at least 8 (the 2-D sin-cos positions use C/4 frequencies).</summary>
    public required int Dim { get; init; }
    /// <summary>Number of transformer layers.</summary>
    public required int Depth { get; init; }
    /// <summary>Attention heads H.</summary>
    public required int Heads { get; init; }
    /// <summary>Hidden width of the feed-forward blocks.</summary>
    public required int MlpDim { get; init; }
    /// <summary>Input channels.</summary>
    public int Channels { get; init; } = 3;
    /// <summary>Head width D.</summary>
    public int DimHead { get; init; } = 64;

    /// <summary>Patch grid rows.</summary>
    public int GridHeight => ImageHeight / PatchHeight;
    /// <summary>Patch grid columns.</summary>
    public int GridWidth => ImageWidth / PatchWidth;
    /// <summary>Number of patches (tokens).</summary>
    public int NumPatches => GridHeight * GridWidth;

    /// <summary>The configuration as vit_pytorch.simple_vit.SimpleViT keyword arguments (Python names).</summary>
    public JsonObject ToKwargs() => new()
    {
        ["image_size"] = ImageHeight == ImageWidth ? ImageHeight : new JsonArray(ImageHeight, ImageWidth),
        ["patch_size"] = PatchHeight == PatchWidth ? PatchHeight : new JsonArray(PatchHeight, PatchWidth),
        ["num_classes"] = NumClasses, ["dim"] = Dim, ["depth"] = Depth, ["heads"] = Heads, ["mlp_dim"] = MlpDim,
        ["channels"] = Channels, ["dim_head"] = DimHead,
    };

    /// <summary>The model spec (constructor and keyword arguments) of this configuration.</summary>
    public ModelSpec ToSpec() => new(Constructor, ToKwargs());

    /// <summary>Reads the reference constructor's keyword arguments (defaults as in Python).</summary>
    public static SimpleViTConfig FromKwargs(ModelFactory.Kwargs k)
    {
        var (ih, iw) = k.Pair("image_size");
        var (ph, pw) = k.Pair("patch_size");
        return new SimpleViTConfig
        {
            ImageHeight = ih, ImageWidth = iw, PatchHeight = ph, PatchWidth = pw,
            NumClasses = k.Int("num_classes"), Dim = k.Int("dim"), Depth = k.Int("depth"), Heads = k.Int("heads"),
            MlpDim = k.Int("mlp_dim"), Channels = k.Int("channels", 3), DimHead = k.Int("dim_head", 64),
        };
    }

    /// <summary>Checks the configuration; throws <see cref="ArgumentException"/> naming the problem.</summary>
    public void Validate()
    {
        if (ImageHeight <= 0 || ImageWidth <= 0) throw new ArgumentException($"image size {ImageHeight}×{ImageWidth} must be positive");
        if (PatchHeight <= 0 || PatchWidth <= 0) throw new ArgumentException($"patch size {PatchHeight}×{PatchWidth} must be positive");
        if (ImageHeight % PatchHeight != 0 || ImageWidth % PatchWidth != 0)
            throw new ArgumentException($"image size {ImageHeight}×{ImageWidth} is not divisible by the patch size {PatchHeight}×{PatchWidth}");
        if (NumClasses < 0) throw new ArgumentException($"num_classes must be ≥ 0, got {NumClasses}");
        if (Dim <= 0 || Depth < 0 || Heads <= 0 || DimHead <= 0 || MlpDim <= 0 || Channels <= 0)
            throw new ArgumentException($"dim, heads, dim_head, mlp_dim and channels must be positive and depth ≥ 0 (dim {Dim}, depth {Depth}, heads {Heads}, dim_head {DimHead}, mlp_dim {MlpDim}, channels {Channels})");
        if (Dim % 4 != 0) throw new ArgumentException($"SimpleViT needs dim divisible by 4 for its 2-D sin-cos position embedding, got {Dim}");
        // The reference divides by dim/4 − 1: dim 4 gives 0/0 = NaN positions there.
        if (Dim < 8) throw new ArgumentException($"SimpleViT needs dim ≥ 8 (its sin-cos frequencies divide by dim/4 − 1), got {Dim}");
    }
}

/// <summary>
/// vit-pytorch 1.23.6 <c>vit_pytorch.simple_vit.SimpleViT</c> ("Better plain ViT baselines"): patchify → LayerNorm →
/// Linear → LayerNorm, plus fixed 2-D sin-cos positions (not parameters, not in the state_dict), a transformer whose
/// attention output projection has no bias (<c>to_out</c> a bare Linear) and whose MLPs have no dropout, a final
/// LayerNorm, mean pooling over the tokens and <c>linear_head</c>. Image [B, c, H, W] → logits [B, classes].
/// </summary>
public sealed class SimpleViT : Module, IImageModel
{
    /// <summary>The configuration this model was built from.</summary>
    public SimpleViTConfig Config { get; }
    /// <summary>Patch embedding (key <c>to_patch_embedding</c>).</summary>
    public Sequential ToPatchEmbedding { get; }
    /// <summary>The fixed 2-D sin-cos positions [N, C] (not a parameter; see <see cref="SinCos2D"/>).</summary>
    public Tensor PosEmbedding { get; }
    /// <summary>The transformer, with its final LayerNorm (key <c>transformer</c>).</summary>
    public Transformer Transformer { get; }
    /// <summary>Classifier (key <c>linear_head</c>).</summary>
    public Linear LinearHead { get; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public SimpleViT(SimpleViTConfig config)
    {
        config.Validate();
        Config = config;
        int patchDim = config.Channels * config.PatchHeight * config.PatchWidth;
        ToPatchEmbedding = RegisterModule("to_patch_embedding", new Sequential(
            new PatchRearrange(config.PatchHeight, config.PatchWidth),
            new LayerNorm(patchDim), new Linear(patchDim, config.Dim), new LayerNorm(config.Dim)));
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

    /// <inheritdoc/>
    public int InputChannels => Config.Channels;
    /// <inheritdoc/>
    public int InputHeight => Config.ImageHeight;
    /// <inheritdoc/>
    public int InputWidth => Config.ImageWidth;

    /// <summary>Checks an image batch against the configuration; throws an <see cref="ArgumentException"/> naming the mismatch.</summary>
    public void CheckInput(Tensor img) => ImageInput.Check(img, Config.Channels, Config.ImageHeight, Config.ImageWidth);

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
