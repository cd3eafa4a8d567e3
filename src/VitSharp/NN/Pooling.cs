using VitSharp.Kernels;

namespace VitSharp.NN;

/// <summary>torch.nn.MaxPool2d (dilation 1, ceil_mode off); no parameters. The stride defaults to the kernel size.</summary>
public sealed class MaxPool2d : Module
{
    /// <summary>The pooling window.</summary>
    public Window2d Window { get; }

    /// <summary>Creates the layer with a square window.</summary>
    public MaxPool2d(int kernelSize, int? stride = null, int padding = 0)
        : this(Window2d.Square(kernelSize, stride ?? kernelSize, padding)) { }

    /// <summary>Creates the layer.</summary>
    public MaxPool2d(Window2d window)
    {
        if (window.KernelH < 1 || window.KernelW < 1 || window.StrideH < 1 || window.StrideW < 1 || window.PadH < 0 || window.PadW < 0)
            throw new ArgumentException($"MaxPool2d: invalid window ({window})");
        if (window.PadH > window.KernelH / 2 || window.PadW > window.KernelW / 2)
            throw new ArgumentException($"MaxPool2d: padding {window.PadH}×{window.PadW} must be at most half the kernel {window.KernelH}×{window.KernelW}");
        Window = window;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.MaxPool2d(input, Window);
}

/// <summary>torch.nn.AdaptiveAvgPool2d: any [B, C, H, W] → [B, C, OutH, OutW] (PyTorch's bins); no parameters.</summary>
public sealed class AdaptiveAvgPool2d : Module
{
    /// <summary>Output rows.</summary>
    public int OutH { get; }
    /// <summary>Output columns.</summary>
    public int OutW { get; }

    /// <summary>Creates the layer with a square output (1 = global average pooling).</summary>
    public AdaptiveAvgPool2d(int outputSize = 1) : this(outputSize, outputSize) { }

    /// <summary>Creates the layer.</summary>
    public AdaptiveAvgPool2d(int outH, int outW)
    {
        if (outH < 1 || outW < 1) throw new ArgumentException($"AdaptiveAvgPool2d: output size {outH}×{outW} must be positive");
        OutH = outH; OutW = outW;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.AdaptiveAvgPool2d(input, OutH, OutW);
}

/// <summary>torch.nn.Unfold: images [B, C, H, W] → [B, C·kh·kw, L] (channel slowest, then ki, kj); no parameters.</summary>
public sealed class Unfold : Module
{
    /// <summary>The sliding window.</summary>
    public Window2d Window { get; }

    /// <summary>Creates the layer with a square kernel.</summary>
    public Unfold(int kernelSize, int stride = 1, int padding = 0) : this(Window2d.Square(kernelSize, stride, padding)) { }

    /// <summary>Creates the layer.</summary>
    public Unfold(Window2d window) => Window = window;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.Unfold(input, Window);
}

/// <summary>torch.nn.Fold: [B, C·kh·kw, L] → images [B, C, OutH, OutW], overlaps summed; no parameters.</summary>
public sealed class Fold : Module
{
    /// <summary>The sliding window.</summary>
    public Window2d Window { get; }
    /// <summary>Output rows.</summary>
    public int OutH { get; }
    /// <summary>Output columns.</summary>
    public int OutW { get; }

    /// <summary>Creates the layer with a square kernel.</summary>
    public Fold((int H, int W) outputSize, int kernelSize, int stride = 1, int padding = 0)
        : this(outputSize, Window2d.Square(kernelSize, stride, padding)) { }

    /// <summary>Creates the layer.</summary>
    public Fold((int H, int W) outputSize, Window2d window)
    {
        OutH = outputSize.H; OutW = outputSize.W; Window = window;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => F.Fold(input, OutH, OutW, Window);
}

/// <summary>torch.nn.Flatten: flattens dimensions StartDim..EndDim (default 1..−1: [B, ...] → [B, rest]).</summary>
public sealed class Flatten : Module
{
    /// <summary>First flattened dimension.</summary>
    public int StartDim { get; }
    /// <summary>Last flattened dimension.</summary>
    public int EndDim { get; }

    /// <summary>Creates the layer.</summary>
    public Flatten(int startDim = 1, int endDim = -1) { StartDim = startDim; EndDim = endDim; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input) => input.Flatten(StartDim, EndDim);
}
