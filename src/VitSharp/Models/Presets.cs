using System.Text.Json.Nodes;
using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>A model as the reference implementation's constructor name and keyword arguments (what checkpoints store).</summary>
public sealed record ModelSpec(string Constructor, JsonObject Kwargs)
{
    /// <summary>Builds the model with freshly initialised parameters.</summary>
    public Module Build() => ModelFactory.Create(Constructor, (JsonObject)Kwargs.DeepClone());

    /// <summary>The spec of a vit_pytorch.vit.ViT configuration.</summary>
    public static ModelSpec ViT(ViTConfig config) => config.ToSpec();

    /// <summary>The spec of a vit_pytorch.distill.DistillableViT configuration.</summary>
    public static ModelSpec DistillableViT(ViTConfig config) => new(Models.DistillableViT.ConstructorName, config.ToKwargs());

    /// <summary>
    /// The spec of a vit_pytorch.distill.DistillWrapper: the teacher and student as nested {constructor, kwargs} objects
    /// (as the fixtures' JSON spells them) and the distillation hyper-parameters.
    /// </summary>
    public static ModelSpec DistillWrapper(ModelSpec teacher, ModelSpec student, DistillConfig config)
    {
        var kwargs = new JsonObject { ["teacher"] = teacher.ToJson(), ["student"] = student.ToJson() };
        foreach (var (k, v) in config.ToKwargs()) kwargs[k] = v?.DeepClone();
        return new(DistillConfig.Constructor, kwargs);
    }

    /// <summary>The spec of a torchvision.models.resnet.ResNet configuration.</summary>
    public static ModelSpec ResNet(ResNetConfig config) => config.ToSpec();

    /// <summary>The spec of a torchvision.models.vision_transformer.VisionTransformer configuration.</summary>
    public static ModelSpec VisionTransformer(VisionTransformerConfig config) => config.ToSpec();

    /// <summary>The spec of a vit_pytorch.t2t.T2TViT configuration.</summary>
    public static ModelSpec T2TViT(T2TViTConfig config) => config.ToSpec();

    /// <summary>The spec of a timm.models.deit.VisionTransformerDistilled configuration (DeiT's distilled models).</summary>
    public static ModelSpec DeiTDistilled(DeiTConfig config) => config.ToSpec();

    /// <summary>The spec of a vit_pytorch.pit.PiT configuration.</summary>
    public static ModelSpec PiT(PiTConfig config) => config.ToSpec();

    /// <summary>The spec as one JSON object {constructor, kwargs}.</summary>
    public JsonObject ToJson() => new() { ["constructor"] = Constructor, ["kwargs"] = Kwargs.DeepClone() };

    /// <summary>Reads {constructor, kwargs}: 'constructor' a string, 'kwargs' an object or absent.</summary>
    public static ModelSpec FromJson(JsonObject json)
    {
        var c = json["constructor"] ?? throw new ModelConfigException("model spec has no 'constructor'");
        if (c is not JsonValue cv || !cv.TryGetValue<string>(out var constructor))
            throw new ModelConfigException($"model spec: 'constructor' must be a string naming the Python class, got {c.ToJsonString()}");
        var k = json["kwargs"];
        if (k is not null and not JsonObject) throw new ModelConfigException($"model spec: 'kwargs' must be an object of keyword arguments, got {k.ToJsonString()}");
        return new(constructor, k as JsonObject ?? new JsonObject());
    }

    /// <summary>Tensor elements a model may allocate while it is built beyond twice those of its weights
    /// (<see cref="BuildFor"/>): 2^20 (4 MB).</summary>
    public const long BuildSlack = 1L << 20;

    /// <summary>
    /// Builds the model for weights of <paramref name="weightElements"/> elements in all, refusing — before allocating
    /// it — a configuration whose tensors would outgrow them (more than twice their elements plus <see cref="BuildSlack"/>):
    /// a hostile configuration (depth 100000, dim_head 1000000) fails at once with a <see cref="ModelConfigException"/>
    /// that names the arguments and the file's size, instead of exhausting memory before a single shape is compared.
    /// </summary>
    /// <param name="weightElements">The elements the weights that will be loaded into the model hold.</param>
    /// <param name="what">How the message names the spec (e.g. "vitsharp.model").</param>
    public Module BuildFor(long weightElements, string what = "model spec")
    {
        long limit = 2 * Math.Max(0, weightElements) + BuildSlack;
        using (AllocationBudget.Begin(limit))
        {
            try { return Build(); }
            catch (Exception e) when (Find<AllocationBudgetException>(e) is { } b)
            {
                throw new ModelConfigException(
                    $"{what}: {Describe()} implies more than {limit:N0} parameter elements (a tensor of {b.Requested:N0} after {b.Used:N0}); the weights hold {weightElements:N0}");
            }
        }
    }

    /// <summary>The constructor and its arguments as name=value (for messages).</summary>
    public string Describe() =>
        $"{Constructor}({string.Join(", ", Kwargs.Select(kv => $"{kv.Key}={kv.Value?.ToJsonString() ?? "None"}"))})";

    private static T? Find<T>(Exception? e) where T : Exception
    {
        for (; e is not null; e = e.InnerException) if (e is T t) return t;
        return null;
    }
}

/// <summary>A named model size with its published parameter count, where there is one.</summary>
public sealed record Preset(string Name, string Description, ModelSpec Spec, int ImageSize, int Channels, long? PublishedParameters = null)
{
    /// <summary>Builds the model with freshly initialised parameters.</summary>
    public Module Build() => Spec.Build();
}

/// <summary>Named model presets (vit-b16, deit-s16, …) for <c>vit summary</c>, training and benchmarks.</summary>
public static class Presets
{
    private static ViTConfig Vit(int image, int patch, int classes, int dim, int depth, int heads, int mlp, int dimHead = 64, int channels = 3) =>
        new() { ImageHeight = image, ImageWidth = image, PatchHeight = patch, PatchWidth = patch, NumClasses = classes, Dim = dim, Depth = depth, Heads = heads, MlpDim = mlp, DimHead = dimHead, Channels = channels };

    private static Preset P(string name, string description, ViTConfig c, long? published = null) =>
        new(name, description, ModelSpec.ViT(c), c.ImageHeight, c.Channels, published);

    /// <summary>
    /// The default model for 28×28 grey Fashion-MNIST images: patch 4 (49 patches), dim 96, depth 6, 3 heads of 32, mlp 192
    /// (454,890 parameters; `vit train`'s 15-minute run).
    /// </summary>
    public static ViTConfig FashionMnist => Vit(28, 4, 10, 96, 6, 3, 192, dimHead: 32, channels: 1);

    /// <summary>The wider Fashion-MNIST ViT (the default until 2026-11-21; the long recipe's): dim 128, depth 6, 4 heads of 32,
    /// mlp 256, patch 4 (803,114 parameters).</summary>
    public static ViTConfig FashionMnist128 => Vit(28, 4, 10, 128, 6, 4, 256, dimHead: 32, channels: 1);

    private static ResNetConfig Res(string block, int[] layers, int classes = 1000, int inChans = 3) =>
        new() { Block = block, Layers = layers, NumClasses = classes, InChans = inChans };

    private static Preset R(string name, string description, ResNetConfig c, int imageSize, long? published = null) =>
        new(name, description, ModelSpec.ResNet(c), imageSize, c.InChans, published);

    /// <summary>ResNet-18 for 28×28 grey Fashion-MNIST images: torchvision's layout with a one-channel stem and 10 classes.</summary>
    public static ResNetConfig ResNet18FashionMnist => Res("BasicBlock", [2, 2, 2, 2], 10, inChans: 1);

    private static Preset T(string name, string description, int patch, int layers, int heads, int hidden, int mlp, long published)
    {
        var c = new VisionTransformerConfig { ImageSize = 224, PatchSize = patch, NumLayers = layers, NumHeads = heads, HiddenDim = hidden, MlpDim = mlp };
        return new(name, description, ModelSpec.VisionTransformer(c), 224, 3, published);
    }

    private static T2TViTConfig T2t(int image, int classes, int dim, int depth, int heads, int mlp, int dimHead = 64, int channels = 3,
        IReadOnlyList<(int, int)>? layers = null) =>
        new() { ImageSize = image, NumClasses = classes, Dim = dim, Depth = depth, Heads = heads, MlpDim = mlp, DimHead = dimHead, Channels = channels, T2TLayers = layers ?? T2TViTConfig.DefaultT2TLayers };

    private static Preset T(string name, string description, T2TViTConfig c, long? published = null) =>
        new(name, description, ModelSpec.T2TViT(c), c.ImageSize, c.Channels, published);

    /// <summary>
    /// T2T-ViT for 28×28 grey Fashion-MNIST images: soft split (3, 2), (3, 2) (28 → 14 → 7, so 49 tokens of width 81),
    /// then dim 128, depth 7, 4 heads of 32, mlp 256 — about 0.94M parameters.
    /// </summary>
    public static T2TViTConfig T2TFashionMnist => T2t(28, 10, 128, 7, 4, 256, dimHead: 32, channels: 1, layers: [(3, 2), (3, 2)]);

    private static PiTConfig Pit(int image, int patch, int classes, int dim, int[] depth, int[] heads, int mlp, int dimHead, int channels = 3) =>
        new() { ImageSize = image, PatchSize = patch, NumClasses = classes, Dim = dim, Depth = depth, Heads = heads, MlpDim = mlp, DimHead = dimHead, Channels = channels };

    private static Preset Pi(string name, string description, PiTConfig c, long? published = null) =>
        new(name, description, ModelSpec.PiT(c), c.ImageSize, c.Channels, published);

    /// <summary>
    /// PiT for 28×28 grey Fashion-MNIST images: patch 4 at stride 2 (13×13 tokens, pooled to 7×7 and 4×4), dim 64 → 128 → 256,
    /// depth [2, 3, 1], heads [2, 4, 8] of 32, mlp 256 — about 1.03M parameters.
    /// </summary>
    public static PiTConfig PiTFashionMnist => Pit(28, 4, 10, 64, [2, 3, 1], [2, 4, 8], 256, 32, channels: 1);

    /// <summary>timm's deit_*_distilled_patch16_224 configuration of width <paramref name="dim"/> (depth 12, mlp_ratio 4, qkv bias).</summary>
    public static DeiTConfig DeiTDistilled224(int dim, int heads) => new()
    {
        ImgSize = 224, PatchSize = 16, NumClasses = 1000, EmbedDim = dim, Depth = 12, NumHeads = heads, MlpRatio = 4.0, QkvBias = true,
    };

    private static Preset D(string name, string description, int dim, int heads, long published) =>
        new(name, description, ModelSpec.DeiTDistilled(DeiTDistilled224(dim, heads)), 224, 3, published);

    /// <summary>A torchvision Swin configuration (v2: <c>SwinTransformerBlockV2</c> and <c>PatchMergingV2</c>).</summary>
    public static SwinTransformerConfig Swin(int embed, int[] depths, int[] heads, int window, float stochasticDepth, bool v2 = false,
        int[]? patch = null, int classes = 1000, int inChans = 3) => new()
    {
        PatchSize = patch ?? [4, 4], EmbedDim = embed, Depths = depths, NumHeads = heads, WindowSize = [window, window],
        StochasticDepthProb = stochasticDepth, NumClasses = classes, InChans = inChans,
        Block = v2 ? SwinTransformerConfig.BlockV2 : SwinTransformerConfig.BlockV1, DownsampleLayer = v2 ? "PatchMergingV2" : "PatchMerging",
    };

    /// <summary>
    /// Swin for 28×28 grey Fashion-MNIST images: patch 2 (a 14×14 map), embed 48, depths [2, 2, 2], heads [2, 4, 8],
    /// window 4 — the first stage pads 14 to 16 and shifts its odd blocks, the second pads 7 to 8, the last (4×4) is one
    /// window; stochastic depth 0.1.
    /// </summary>
    public static SwinTransformerConfig SwinFashionMnist => Swin(48, [2, 2, 2], [2, 4, 8], 4, 0.1f, patch: [2, 2], classes: 10, inChans: 1);

    private static Preset S(string name, string description, SwinTransformerConfig c, int imageSize, long? published = null) =>
        new(name, description, c.ToSpec(), imageSize, c.InChans, published);

    // The paper models cannot be expressed exactly in vit-pytorch's layouts, so these presets carry no published count
    // (`vit summary` would otherwise report a "difference"); the descriptions give the paper's count and why ours differs.
    private const string T2tLayout = "vit-pytorch layout: soft-split transformers at the full unfolded width (147, 1323) where the paper reduces tokens to 64, hence more parameters";
    private const string PitLayout = "vit-pytorch layout: one mlp_dim for all stages, no q/k/v bias, a 1×1 conv after each depthwise pooling conv, a class-token position, hence a different count";

    /// <summary>All presets by name.</summary>
    public static IReadOnlyList<Preset> All { get; } =
    [
        P("vit-fmnist", "ViT for Fashion-MNIST (28×28×1, patch 4, dim 96, depth 6, 3 heads of 32, mlp 192)", FashionMnist),
        P("vit-fmnist-128", "Wider ViT for Fashion-MNIST (28×28×1, patch 4, dim 128, depth 6, 4 heads of 32, mlp 256)", FashionMnist128),
        P("vit-b16", "ViT-Base/16 (vit-pytorch ViT, 224², 1000 classes)", Vit(224, 16, 1000, 768, 12, 12, 3072), 86_543_080),
        P("vit-b32", "ViT-Base/32 (vit-pytorch ViT, 224², 1000 classes)", Vit(224, 32, 1000, 768, 12, 12, 3072)),
        P("vit-l16", "ViT-Large/16 (vit-pytorch ViT, 224², 1000 classes)", Vit(224, 16, 1000, 1024, 24, 16, 4096)),
        P("vit-h14", "ViT-Huge/14 size (vit-pytorch ViT, 224², 1000 classes, 16 heads of 80); the paper's 632M counts torchvision's layout (vit_h_14)",
            Vit(224, 14, 1000, 1280, 32, 16, 5120, dimHead: 80)),
        P("deit-ti16", "DeiT-Tiny/16 size (vit-pytorch ViT, dim 192, 3 heads)", Vit(224, 16, 1000, 192, 12, 3, 768)),
        P("deit-s16", "DeiT-Small/16 size (vit-pytorch ViT, dim 384, 6 heads)", Vit(224, 16, 1000, 384, 12, 6, 1536)),
        P("deit-b16", "DeiT-Base/16 size (vit-pytorch ViT, dim 768, 12 heads)", Vit(224, 16, 1000, 768, 12, 12, 3072)),
        new("simplevit-fmnist", "SimpleViT for Fashion-MNIST (28×28×1, patch 4, dim 128, depth 6, 4 heads, sin-cos positions, mean pool)",
            SimpleViTFashionMnist.ToSpec(), 28, 1),
        new("deepvit-fmnist", "DeepViT for Fashion-MNIST (28×28×1, patch 4, dim 128, depth 6, 4 heads, re-attention)",
            DeepViTFashionMnist.ToSpec(), 28, 1),
        new("cait-fmnist", "CaiT for Fashion-MNIST (28×28, patch 4, dim 128, depth 6 + 2 class-attention layers, 4 heads); " +
            "CaiT always takes 3 channels, so training repeats each grey image into 3", CaiTFashionMnist.ToSpec(), 28, CaiTConfig.Channels),
        // Ours: 11,943,080 parameters. The published 12.0M (timm's cait_xxs24_224: 11.96M) counts another layout.
        new("cait-xxs24", "CaiT-XXS24 size (vit-pytorch CaiT, 224², patch 16, dim 192, depth 24 + 2 class-attention layers, 4 heads of 48): " +
            "11.94M parameters in vit-pytorch's layout; the published 12.0M is the paper's/timm's layout (conv patch embedding without " +
            "LayerNorms, q/k/v biases, talking heads as Linear(4, 4) with bias, no talking heads in class attention), so it is not shown",
            new CaiTConfig { ImageSize = 224, PatchSize = 16, NumClasses = 1000, Dim = 192, Depth = 24, ClsDepth = 2, Heads = 4, MlpDim = 768, DimHead = 48 }.ToSpec(),
            224, CaiTConfig.Channels),
        R("resnet18", "ResNet-18 (torchvision, BasicBlock [2, 2, 2, 2], 1000 classes)", Res("BasicBlock", [2, 2, 2, 2]), 224, 11_689_512),
        R("resnet34", "ResNet-34 (torchvision, BasicBlock [3, 4, 6, 3], 1000 classes)", Res("BasicBlock", [3, 4, 6, 3]), 224, 21_797_672),
        R("resnet50", "ResNet-50 (torchvision, Bottleneck [3, 4, 6, 3], 1000 classes)", Res("Bottleneck", [3, 4, 6, 3]), 224, 25_557_032),
        R("resnet101", "ResNet-101 (torchvision, Bottleneck [3, 4, 23, 3], 1000 classes)", Res("Bottleneck", [3, 4, 23, 3]), 224, 44_549_160),
        T("vit_b_16", "ViT-B/16 (torchvision VisionTransformer, 224², 1000 classes)", 16, 12, 12, 768, 3072, 86_567_656),
        T("vit_b_32", "ViT-B/32 (torchvision VisionTransformer, 224², 1000 classes)", 32, 12, 12, 768, 3072, 88_224_232),
        T("vit_l_16", "ViT-L/16 (torchvision VisionTransformer, 224², 1000 classes)", 16, 24, 16, 1024, 4096, 304_326_632),
        T("vit_h_14", "ViT-H/14 (torchvision VisionTransformer, 224², 1000 classes)", 14, 32, 16, 1280, 5120, 632_045_800),
        R("resnet18-fmnist", "ResNet-18 for Fashion-MNIST (torchvision layout, 1-channel stem, 10 classes)", ResNet18FashionMnist, 28),
        new("vit_fmnist", "torchvision VisionTransformer for Fashion-MNIST (28×28×1 via in_chans, patch 4, hidden 128, 6 layers, 4 heads, MLP 256)",
            ModelSpec.VisionTransformer(new VisionTransformerConfig
            {
                ImageSize = 28, PatchSize = 4, NumLayers = 6, NumHeads = 4, HiddenDim = 128, MlpDim = 256, NumClasses = 10, InChans = 1,
            }), 28, 1),
        T("t2t-fmnist", "T2T-ViT for Fashion-MNIST (28×28×1, soft split (3, 2), (3, 2), dim 128, depth 7, 4 heads)", T2TFashionMnist),
        T("t2t-vit-14", $"T2T-ViT-14 size (dim 384, depth 14, 6 heads, mlp 1152, soft split (7, 4), (3, 2), (3, 2), 224²; paper 21.5M; {T2tLayout})", T2t(224, 1000, 384, 14, 6, 1152)),
        T("t2t-vit-19", $"T2T-ViT-19 size (dim 448, depth 19, 7 heads, mlp 1344, 224²; paper 39.2M; {T2tLayout})", T2t(224, 1000, 448, 19, 7, 1344)),
        T("t2t-vit-24", $"T2T-ViT-24 size (dim 512, depth 24, 8 heads, mlp 1536, 224²; paper 64.1M; {T2tLayout})", T2t(224, 1000, 512, 24, 8, 1536)),
        D("deit_tiny_distilled_patch16_224", "DeiT-Ti distilled (timm VisionTransformerDistilled: embed 192, depth 12, 3 heads, 224², patch 16, 1000 classes)", 192, 3, 5_910_800),
        D("deit_small_distilled_patch16_224", "DeiT-S distilled (timm VisionTransformerDistilled: embed 384, depth 12, 6 heads, 224², patch 16, 1000 classes)", 384, 6, 22_436_432),
        D("deit_base_distilled_patch16_224", "DeiT-B distilled (timm VisionTransformerDistilled: embed 768, depth 12, 12 heads, 224², patch 16, 1000 classes)", 768, 12, 87_338_192),
        S("swin-fmnist", "Swin for Fashion-MNIST (28×28×1, patch 2, embed 48, depths [2, 2, 2], heads [2, 4, 8], window 4)", SwinFashionMnist, 28),
        S("swin_t", "Swin-T (torchvision, embed 96, depths [2, 2, 6, 2], heads [3, 6, 12, 24], window 7, 224², 1000 classes)",
            Swin(96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 0.2f), 224, 28_288_354),
        S("swin_s", "Swin-S (torchvision, embed 96, depths [2, 2, 18, 2], heads [3, 6, 12, 24], window 7, 224², 1000 classes)",
            Swin(96, [2, 2, 18, 2], [3, 6, 12, 24], 7, 0.3f), 224, 49_606_258),
        S("swin_b", "Swin-B (torchvision, embed 128, depths [2, 2, 18, 2], heads [4, 8, 16, 32], window 7, 224², 1000 classes)",
            Swin(128, [2, 2, 18, 2], [4, 8, 16, 32], 7, 0.5f), 224, 87_768_224),
        S("swin_v2_t", "Swin-V2-T (torchvision, embed 96, depths [2, 2, 6, 2], heads [3, 6, 12, 24], window 8, 256², 1000 classes)",
            Swin(96, [2, 2, 6, 2], [3, 6, 12, 24], 8, 0.2f, v2: true), 256, 28_351_570),
        S("swin_v2_s", "Swin-V2-S (torchvision, embed 96, depths [2, 2, 18, 2], heads [3, 6, 12, 24], window 8, 256², 1000 classes)",
            Swin(96, [2, 2, 18, 2], [3, 6, 12, 24], 8, 0.3f, v2: true), 256, 49_737_442),
        S("swin_v2_b", "Swin-V2-B (torchvision, embed 128, depths [2, 2, 18, 2], heads [4, 8, 16, 32], window 8, 256², 1000 classes)",
            Swin(128, [2, 2, 18, 2], [4, 8, 16, 32], 8, 0.5f, v2: true), 256, 87_930_848),
        Pi("pit-fmnist", "PiT for Fashion-MNIST (28×28×1, patch 4 stride 2, dim 64→128→256, depth [2, 3, 1], heads [2, 4, 8])", PiTFashionMnist),
        Pi("pit-ti", $"PiT-Ti size (patch 16 stride 8, dim 64→128→256, depth [2, 6, 4], heads [2, 4, 8] of 32, mlp 512, 224²; paper 4.9M; {PitLayout})", Pit(224, 16, 1000, 64, [2, 6, 4], [2, 4, 8], 512, 32)),
        Pi("pit-xs", $"PiT-XS size (patch 16 stride 8, dim 96→192→384, depth [2, 6, 4], heads [2, 4, 8] of 48, mlp 768, 224²; paper 10.6M; {PitLayout})", Pit(224, 16, 1000, 96, [2, 6, 4], [2, 4, 8], 768, 48)),
        Pi("pit-s", $"PiT-S size (patch 16 stride 8, dim 144→288→576, depth [2, 6, 4], heads [3, 6, 12] of 48, mlp 1152, 224²; paper 23.5M; {PitLayout})", Pit(224, 16, 1000, 144, [2, 6, 4], [3, 6, 12], 1152, 48)),
        Pi("pit-b", $"PiT-B size (patch 14 stride 7, dim 256→512→1024, depth [3, 6, 4], heads [4, 8, 16] of 64, mlp 2048, 224²; paper 73.8M; {PitLayout})", Pit(224, 14, 1000, 256, [3, 6, 4], [4, 8, 16], 2048, 64)),
    ];

    /// <summary>SimpleViT for 28×28 grey Fashion-MNIST images, sized as <see cref="FashionMnist"/>.</summary>
    public static SimpleViTConfig SimpleViTFashionMnist => new()
    {
        ImageHeight = 28, ImageWidth = 28, PatchHeight = 4, PatchWidth = 4, NumClasses = 10, Dim = 128, Depth = 6, Heads = 4,
        MlpDim = 256, DimHead = 32, Channels = 1,
    };

    /// <summary>DeepViT for 28×28 grey Fashion-MNIST images, sized as <see cref="FashionMnist"/>.</summary>
    public static DeepViTConfig DeepViTFashionMnist => new()
    {
        ImageSize = 28, PatchSize = 4, NumClasses = 10, Dim = 128, Depth = 6, Heads = 4, MlpDim = 256, DimHead = 32, Channels = 1,
    };

    /// <summary>CaiT for 28×28 Fashion-MNIST images (3 channels: the trainer repeats the grey plane), sized as <see cref="FashionMnist"/>.</summary>
    public static CaiTConfig CaiTFashionMnist => new()
    {
        ImageSize = 28, PatchSize = 4, NumClasses = 10, Dim = 128, Depth = 6, ClsDepth = 2, Heads = 4, MlpDim = 256, DimHead = 32,
    };

    /// <summary>Finds a preset by name (case-insensitive); throws naming the known ones.</summary>
    public static Preset Get(string name) =>
        All.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ModelConfigException($"unknown model preset '{name}' (known: {string.Join(", ", All.Select(p => p.Name))})");
}
