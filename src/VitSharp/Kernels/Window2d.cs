namespace VitSharp.Kernels;

/// <summary>
/// The sliding window of a 2-D convolution, unfold/fold or pooling: kernel (KernelH, KernelW), stride and
/// zero padding on both sides of each axis (dilation 1). Output extent per axis ⌊(in + 2·pad − kernel) / stride⌋ + 1,
/// as PyTorch with ceil_mode off.
/// </summary>
/// <param name="KernelH">Window height.</param>
/// <param name="KernelW">Window width.</param>
/// <param name="StrideH">Vertical step.</param>
/// <param name="StrideW">Horizontal step.</param>
/// <param name="PadH">Rows of padding above and below.</param>
/// <param name="PadW">Columns of padding left and right.</param>
public readonly record struct Window2d(int KernelH, int KernelW, int StrideH, int StrideW, int PadH, int PadW)
{
    /// <summary>A square window with equal stride and padding on both axes.</summary>
    public static Window2d Square(int kernel, int stride = 1, int padding = 0) => new(kernel, kernel, stride, stride, padding, padding);

    /// <summary>Output rows for an input of <paramref name="height"/> rows (0 when the window does not fit).</summary>
    public int OutH(int height) => Extent(height + 2 * PadH - KernelH, StrideH);

    /// <summary>Output columns for an input of <paramref name="width"/> columns (0 when the window does not fit).</summary>
    public int OutW(int width) => Extent(width + 2 * PadW - KernelW, StrideW);

    private static int Extent(int span, int stride) => span < 0 || stride < 1 ? 0 : span / stride + 1;

    /// <summary>Whether the window is a plain 1×1 stride-1 unpadded one (im2col is the identity).</summary>
    public bool IsPointwise => KernelH == 1 && KernelW == 1 && StrideH == 1 && StrideW == 1 && PadH == 0 && PadW == 0;

    /// <summary>
    /// Checks kernel, stride and padding and that the window fits an input of <paramref name="height"/>×<paramref name="width"/>;
    /// throws <see cref="ArgumentException"/> naming the problem (<paramref name="op"/> prefixes the message).
    /// </summary>
    public void Validate(string op, int height, int width)
    {
        if (KernelH < 1 || KernelW < 1) throw new ArgumentException($"{op}: kernel size {KernelH}×{KernelW} must be positive");
        if (StrideH < 1 || StrideW < 1) throw new ArgumentException($"{op}: stride {StrideH}×{StrideW} must be positive");
        if (PadH < 0 || PadW < 0) throw new ArgumentException($"{op}: padding {PadH}×{PadW} must be non-negative");
        if (OutH(height) < 1 || OutW(width) < 1)
            throw new ArgumentException($"{op}: kernel {KernelH}×{KernelW} with padding {PadH}×{PadW} does not fit an input of {height}×{width}");
    }

    /// <inheritdoc/>
    public override string ToString() => $"kernel {KernelH}×{KernelW}, stride {StrideH}×{StrideW}, padding {PadH}×{PadW}";
}
