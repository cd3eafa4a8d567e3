namespace VitSharp.NN;

/// <summary>
/// torch.nn.Conv2d (dilation 1, zero padding): weight [Cout, Cin/groups, kh, kw] and bias [Cout] (keys <c>weight</c>,
/// <c>bias</c>), both initialised U(−1/√fan_in, 1/√fan_in) with fan_in = Cin/groups·kh·kw, as PyTorch's default.
/// Images [B, Cin, H, W] → [B, Cout, OH, OW].
/// </summary>
public sealed class Conv2d : Module
{
    /// <summary>Weight [Cout, Cin/groups, kh, kw].</summary>
    public Tensor Weight { get; }
    /// <summary>Bias [Cout], or null.</summary>
    public Tensor? Bias { get; }
    /// <summary>Input channels.</summary>
    public int InChannels { get; }
    /// <summary>Output channels.</summary>
    public int OutChannels { get; }
    /// <summary>Kernel (height, width).</summary>
    public (int H, int W) KernelSize { get; }
    /// <summary>Stride (vertical, horizontal).</summary>
    public (int H, int W) Stride { get; }
    /// <summary>Zero padding (rows, columns) on each side.</summary>
    public (int H, int W) Padding { get; }
    /// <summary>Channel groups (Cin = groups: depthwise).</summary>
    public int Groups { get; }

    /// <summary>Creates a convolution with a square kernel and equal stride and padding on both axes.</summary>
    public Conv2d(int inChannels, int outChannels, int kernelSize, int stride = 1, int padding = 0, int groups = 1, bool bias = true)
        : this(inChannels, outChannels, (kernelSize, kernelSize), (stride, stride), (padding, padding), groups, bias) { }

    /// <summary>Creates a convolution.</summary>
    public Conv2d(int inChannels, int outChannels, (int H, int W) kernelSize, (int H, int W) stride, (int H, int W) padding, int groups = 1, bool bias = true)
    {
        if (inChannels < 1 || outChannels < 1) throw new ArgumentException($"Conv2d({inChannels}, {outChannels}): channel counts must be positive");
        if (groups < 1 || inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException($"Conv2d: groups {groups} must divide in_channels {inChannels} and out_channels {outChannels}");
        if (kernelSize.H < 1 || kernelSize.W < 1) throw new ArgumentException($"Conv2d: kernel size {kernelSize.H}×{kernelSize.W} must be positive");
        if (stride.H < 1 || stride.W < 1) throw new ArgumentException($"Conv2d: stride {stride.H}×{stride.W} must be positive");
        if (padding.H < 0 || padding.W < 0) throw new ArgumentException($"Conv2d: padding {padding.H}×{padding.W} must be non-negative");
        InChannels = inChannels; OutChannels = outChannels; KernelSize = kernelSize; Stride = stride; Padding = padding; Groups = groups;
        int fanIn = inChannels / groups * kernelSize.H * kernelSize.W;
        float bound = 1f / MathF.Sqrt(fanIn);
        Weight = RegisterParameter("weight", Tensor.RandU(Init.Rng, -bound, bound, outChannels, inChannels / groups, kernelSize.H, kernelSize.W));
        if (bias) Bias = RegisterParameter("bias", Tensor.RandU(Init.Rng, -bound, bound, outChannels));
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.Conv2d(input, Weight, Bias, Stride, Padding, Groups);
}
