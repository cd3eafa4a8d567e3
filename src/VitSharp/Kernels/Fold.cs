namespace VitSharp.Kernels;

/// <summary>
/// col2im of one image, as <c>torch.nn.functional.fold</c> (the adjoint of <see cref="UnfoldKernel"/>):
/// cols [C·kh·kw, L] (row r = (c·kh + ki)·kw + kj, column l = oh·OW + ow, rows <c>ldCols</c> apart) →
/// y [C, H, W], every column entry added into the pixel (oh·sh − ph + ki, ow·sw − pw + kj) it stands for;
/// entries that fall into the padding are dropped.
/// </summary>
public static class FoldKernel
{
    /// <summary>Writes y = fold(cols) (y is cleared first).</summary>
    public static void Forward(ReadOnlySpan<float> cols, int ldCols, int channels, int height, int width, Window2d window, Span<float> y)
    {
        y[..(channels * height * width)].Clear();
        UnfoldKernel.Scatter(cols, ldCols, channels, height, width, window, y);
    }

    /// <summary>Backward: dcols += unfold(dy).</summary>
    public static void Backward(ReadOnlySpan<float> dy, int channels, int height, int width, Window2d window, Span<float> dcols, int ldCols) =>
        UnfoldKernel.Gather(dy, channels, height, width, window, dcols, ldCols, accumulate: true);
}
