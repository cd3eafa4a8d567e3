using VitSharp.NN;

namespace VitSharp.Models;

/// <summary>
/// Configuration of <see cref="ResNet"/>: torchvision's constructor arguments, with Python's names and defaults, plus one
/// extension, <c>in_chans</c> (input channels, 3 in torchvision; 1 for grey images such as Fashion-MNIST — only the stem
/// convolution changes). <c>replace_stride_with_dilation</c> is accepted only as null or all false.
/// </summary>
public sealed record ResNetConfig : ModelConfig<ResNetConfig>, IImageConfig
{
    /// <summary>The Python constructor.</summary>
    public const string Constructor = "torchvision.models.resnet.ResNet";

    /// <summary>"BasicBlock" (two 3×3 convolutions, expansion 1) or "Bottleneck" (1×1, 3×3, 1×1, expansion 4): the class name.</summary>
    [Kwarg("block", OneOf = ["BasicBlock", "Bottleneck"])] public required string Block { get; init; }
    /// <summary>Blocks in layer1..layer4.</summary>
    [Kwarg("layers")] public required int[] Layers { get; init; }
    /// <summary>Classes of the <c>fc</c> head; 0 = no head (the pooled features are returned).</summary>
    [Kwarg("num_classes", Min = 0)] public int NumClasses { get; init; } = 1000;
    /// <summary>Initialise the last BatchNorm weight of every residual branch to zero.</summary>
    [Kwarg("zero_init_residual")] public bool ZeroInitResidual { get; init; }
    /// <summary>Groups of the 3×3 convolutions (Bottleneck only; ResNeXt).</summary>
    [Kwarg("groups", Min = 1)] public int Groups { get; init; } = 1;
    /// <summary>Channels per group (Bottleneck only; 128 for Wide ResNet).</summary>
    [Kwarg("width_per_group", Min = 1)] public int WidthPerGroup { get; init; } = 64;
    /// <summary>Input channels (extension; torchvision has 3).</summary>
    [Kwarg("in_chans", Min = 1)] public int InChans { get; init; } = 3;

    /// <summary>Reads the keyword arguments; <c>replace_stride_with_dilation</c> must be null or all false (no dilated convolutions).</summary>
    public static new ResNetConfig FromKwargs(ModelFactory.Kwargs k)
    {
        if (k.BoolListOrNull("replace_stride_with_dilation") is { } dilation && dilation.Any(d => d))
            throw new ArgumentException("replace_stride_with_dilation is not supported (dilated convolutions)");
        return ModelConfig<ResNetConfig>.FromKwargs(k);
    }

    /// <summary>Channel expansion of the block: 1 (BasicBlock) or 4 (Bottleneck).</summary>
    public int Expansion => Block == "Bottleneck" ? 4 : 1;

    /// <summary>Width of the pooled features (512·expansion).</summary>
    public int NumFeatures => 512 * Expansion;

    /// <inheritdoc/>
    protected override void CheckMore()
    {
        if (Layers.Length != 4 || Layers.Any(l => l < 1))
            throw new ArgumentException($"layers must be 4 positive block counts, got [{string.Join(", ", Layers)}]");
        if (Block == "BasicBlock" && (Groups != 1 || WidthPerGroup != 64))
            throw new ArgumentException("BasicBlock only supports groups=1 and base_width=64");
    }

    /// <inheritdoc/>
    public (int Channels, int? Height, int? Width) Input => (InChans, null, null);
}

/// <summary>torchvision's ResNet <c>BasicBlock</c>: conv1 (3×3, stride) → bn1 → ReLU → conv2 (3×3) → bn2, + identity or <c>downsample</c>, ReLU.</summary>
public sealed class BasicBlock : Module
{
    /// <summary>First 3×3 convolution (carries the stride).</summary>
    public Conv2d Conv1 { get; }
    /// <summary>BatchNorm after conv1.</summary>
    public BatchNorm2d Bn1 { get; }
    /// <summary>Second 3×3 convolution.</summary>
    public Conv2d Conv2 { get; }
    /// <summary>BatchNorm after conv2 (zeroed by zero_init_residual).</summary>
    public BatchNorm2d Bn2 { get; }
    /// <summary>The shortcut projection (<c>downsample.0</c> 1×1 conv, <c>downsample.1</c> BatchNorm), or null.</summary>
    public Sequential? Downsample { get; }

    /// <summary>Creates the block.</summary>
    public BasicBlock(int inplanes, int planes, int stride, Sequential? downsample)
    {
        Conv1 = RegisterModule("conv1", new Conv2d(inplanes, planes, 3, stride, 1, bias: false));
        Bn1 = RegisterModule("bn1", new BatchNorm2d(planes));
        Conv2 = RegisterModule("conv2", new Conv2d(planes, planes, 3, 1, 1, bias: false));
        Bn2 = RegisterModule("bn2", new BatchNorm2d(planes));
        if (downsample is not null) Downsample = RegisterModule("downsample", downsample);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        var o = Bn1.Forward(Conv1.Forward(x)).Relu();
        o = Bn2.Forward(Conv2.Forward(o));
        return (o + (Downsample is null ? x : Downsample.Forward(x))).Relu();
    }
}

/// <summary>
/// torchvision's ResNet <c>Bottleneck</c> (ResNet V1.5: the stride sits in the 3×3 convolution): conv1 (1×1) → bn1 → ReLU →
/// conv2 (3×3, stride, groups) → bn2 → ReLU → conv3 (1×1, ×4 channels) → bn3, + identity or <c>downsample</c>, ReLU.
/// </summary>
public sealed class Bottleneck : Module
{
    /// <summary>1×1 reduction.</summary>
    public Conv2d Conv1 { get; }
    /// <summary>BatchNorm after conv1.</summary>
    public BatchNorm2d Bn1 { get; }
    /// <summary>3×3 convolution (stride, groups).</summary>
    public Conv2d Conv2 { get; }
    /// <summary>BatchNorm after conv2.</summary>
    public BatchNorm2d Bn2 { get; }
    /// <summary>1×1 expansion.</summary>
    public Conv2d Conv3 { get; }
    /// <summary>BatchNorm after conv3 (zeroed by zero_init_residual).</summary>
    public BatchNorm2d Bn3 { get; }
    /// <summary>The shortcut projection, or null.</summary>
    public Sequential? Downsample { get; }

    /// <summary>Creates the block; width = ⌊planes·baseWidth/64⌋·groups.</summary>
    public Bottleneck(int inplanes, int planes, int stride, Sequential? downsample, int groups, int baseWidth)
    {
        int width = (int)(planes * (baseWidth / 64.0)) * groups;
        Conv1 = RegisterModule("conv1", new Conv2d(inplanes, width, 1, bias: false));
        Bn1 = RegisterModule("bn1", new BatchNorm2d(width));
        Conv2 = RegisterModule("conv2", new Conv2d(width, width, 3, stride, 1, groups, bias: false));
        Bn2 = RegisterModule("bn2", new BatchNorm2d(width));
        Conv3 = RegisterModule("conv3", new Conv2d(width, planes * 4, 1, bias: false));
        Bn3 = RegisterModule("bn3", new BatchNorm2d(planes * 4));
        if (downsample is not null) Downsample = RegisterModule("downsample", downsample);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        var o = Bn1.Forward(Conv1.Forward(x)).Relu();
        o = Bn2.Forward(Conv2.Forward(o)).Relu();
        o = Bn3.Forward(Conv3.Forward(o));
        return (o + (Downsample is null ? x : Downsample.Forward(x))).Relu();
    }
}

/// <summary>
/// ResNet exactly as torchvision 0.14's <c>torchvision.models.resnet.ResNet</c>: stem <c>conv1</c> (7×7, stride 2, pad 3,
/// no bias) → <c>bn1</c> → ReLU → max pool (3, 2, 1) → <c>layer1..layer4</c> (64, 128, 256, 512 planes; stride 2 from
/// layer2 on, in the first block, which gets a 1×1 conv + BatchNorm <c>downsample</c> when the shape changes) → global
/// average pool → <c>fc</c>. Images [B, in_chans, H, W] of any size ≥ 1 pixel after the stem → logits [B, classes].
/// Initialisation as torchvision: convolutions N(0, 2/fan_out), BatchNorm 1/0, <c>fc</c> PyTorch's Linear default.
/// </summary>
/// <remarks>It takes images of any size, so as an <see cref="IImageModel"/> it reports only its channels (its
/// <see cref="IImageModel.InputHeight"/> and <see cref="IImageModel.InputWidth"/> are null): training and prediction keep the data's size.</remarks>
public sealed class ResNet : ImageModel<ResNetConfig>
{
    private readonly MaxPool2d _maxPool = new(3, 2, 1);
    private readonly AdaptiveAvgPool2d _avgPool = new(1);

    /// <summary>Stem convolution (key <c>conv1</c>).</summary>
    public Conv2d Conv1 { get; }
    /// <summary>Stem BatchNorm (key <c>bn1</c>).</summary>
    public BatchNorm2d Bn1 { get; }
    /// <summary>The four stages (keys <c>layer1</c>..<c>layer4</c>), each a Sequential of blocks.</summary>
    public IReadOnlyList<Sequential> Stages { get; }
    /// <summary>The classifier (key <c>fc</c>), or null when num_classes is 0.</summary>
    public Linear? Fc { get; private set; }

    /// <summary>Builds the model with freshly initialised parameters (seeded by <see cref="Init"/>).</summary>
    public ResNet(ResNetConfig config) : base(config)
    {
        Conv1 = RegisterModule("conv1", new Conv2d(config.InChans, 64, 7, 2, 3, bias: false));
        Bn1 = RegisterModule("bn1", new BatchNorm2d(64));
        int inplanes = 64;
        var stages = new List<Sequential>();
        int[] planes = [64, 128, 256, 512];
        for (int s = 0; s < 4; s++)
        {
            int stride = s == 0 ? 1 : 2, p = planes[s], outC = p * config.Expansion;
            Sequential? down = stride != 1 || inplanes != outC
                ? new Sequential(new Conv2d(inplanes, outC, 1, stride, bias: false), new BatchNorm2d(outC))
                : null;
            var stage = new Sequential(MakeBlock(config, inplanes, p, stride, down));
            inplanes = outC;
            for (int j = 1; j < config.Layers[s]; j++) stage.Add(MakeBlock(config, inplanes, p, 1, null));
            stages.Add(RegisterModule($"layer{s + 1}", stage));
        }
        Stages = stages;
        if (config.NumClasses > 0) Fc = RegisterModule("fc", new Linear(config.NumFeatures, config.NumClasses));
        InitWeights();
    }

    private static Module MakeBlock(ResNetConfig c, int inplanes, int planes, int stride, Sequential? down) =>
        c.Block == "Bottleneck" ? new Bottleneck(inplanes, planes, stride, down, c.Groups, c.WidthPerGroup) : new BasicBlock(inplanes, planes, stride, down);

    /// <summary>torchvision's init: kaiming_normal_(fan_out, relu) for convolutions; zero_init_residual zeroes the last BatchNorm of each branch.</summary>
    private void InitWeights()
    {
        foreach (var (_, m) in NamedModules())
        {
            if (m is Conv2d conv)
            {
                int fanOut = conv.OutChannels * conv.KernelSize.H * conv.KernelSize.W;
                var w = Tensor.RandN(Init.Rng, 0, MathF.Sqrt(2f / fanOut), conv.Weight.Shape);
                w.Data.CopyTo(conv.Weight.Data, 0);
            }
            if (Config.ZeroInitResidual)
            {
                if (m is Bottleneck bo) Array.Clear(bo.Bn3.Weight!.Data);
                if (m is BasicBlock ba) Array.Clear(ba.Bn2.Weight!.Data);
            }
        }
    }

    /// <summary>The feature map after layer4: [B, 512·expansion, H/32, W/32] (rounded up per stride).</summary>
    public Tensor ForwardFeatures(Tensor img)
    {
        CheckInput(img);
        var x = Bn1.Forward(Conv1.Forward(img)).Relu();
        x = _maxPool.Forward(x);
        for (int i = 0; i < Stages.Count; i++) x = Stages[i].Forward(x);   // indexed: no enumerator per step
        return x;
    }

    /// <summary>Global average pooling then <c>fc</c>; with <paramref name="preLogits"/> (or no head) the pooled features [B, C].</summary>
    public Tensor ForwardHead(Tensor features, bool preLogits = false)
    {
        var x = _avgPool.Forward(features).Flatten(1);
        return preLogits || Fc is null ? x : Fc.Forward(x);
    }

    /// <summary>
    /// Replaces the classifier with a freshly initialised <c>fc</c> Linear(512·expansion → <paramref name="numClasses"/>)
    /// (PyTorch's default init, seeded by <see cref="Init"/>), or removes it when 0 (the model then returns pooled features),
    /// for fine-tuning on another label set. The backbone keeps its weights.
    /// </summary>
    public void ResetClassifier(int numClasses)
    {
        Check.AtLeast(numClasses, 0, "num_classes");
        Config = Config with { NumClasses = numClasses };
        Fc = numClasses > 0 ? new Linear(Config.NumFeatures, numClasses) : null;
        ReplaceModule("fc", Fc);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor img) => ForwardHead(ForwardFeatures(img));
}
