namespace VitSharp.Models;

/// <summary>Interpolation filter of <see cref="PosEmbedResample"/>.</summary>
public enum ResampleMode
{
    /// <summary>
    /// Keys' cubic convolution with a = −0.5, antialiased: PyTorch's <c>F.interpolate(mode="bicubic", antialias=True,
    /// align_corners=False)</c>, which is what timm's <c>resample_abs_pos_embed</c> uses by default.
    /// </summary>
    Bicubic,
    /// <summary>
    /// Triangle filter, antialiased: <c>F.interpolate(mode="bilinear", antialias=True, align_corners=False)</c>. When
    /// enlarging it equals plain bilinear interpolation with align_corners=False (so it reproduces a linear ramp exactly,
    /// clamped at the border pixels' centres).
    /// </summary>
    Bilinear,
}

/// <summary>
/// Resampling of learned absolute position embeddings to another patch grid, for loading pretrained weights at a
/// different image size: the prefix tokens (the class token) are kept as they are, the grid tokens are viewed as an
/// image [C, H, W] (row-major over the grid, as ViTs lay their patches out) and resized separably, width then height,
/// with PyTorch's antialiased interpolation (align_corners=False): output pixel i of an axis has centre
/// s·(i + ½) in input coordinates (s = in/out), takes the input pixels j whose centres j + ½ lie within the filter's
/// support (2·max(s, 1) for cubic, max(s, 1) for the triangle) with weights filter((j + ½ − centre)/max(s, 1)),
/// normalised to sum 1; pixels outside the image are left out (not clamped). Resampling to the same grid is the identity.
/// </summary>
public static class PosEmbedResample
{
    /// <summary>
    /// Resamples <paramref name="posEmbed"/> [1, P + oldH·oldW, C] (or [P + oldH·oldW, C]) to [1, P + newH·newW, C]
    /// (same rank as the input), P = <paramref name="numPrefixTokens"/>.
    /// </summary>
    public static Tensor Resample(Tensor posEmbed, (int H, int W) oldGrid, (int H, int W) newGrid, int numPrefixTokens = 1,
        ResampleMode mode = ResampleMode.Bicubic)
    {
        if (posEmbed.Rank is not (2 or 3) || (posEmbed.Rank == 3 && posEmbed.Dim(0) != 1))
            throw new ArgumentException($"position embedding must be [1, N, C] or [N, C], got {Tensor.ShapeString(posEmbed.ShapeSpan)}");
        int n = posEmbed.Dim(-2), c = posEmbed.Dim(-1);
        if (oldGrid.H < 1 || oldGrid.W < 1 || newGrid.H < 1 || newGrid.W < 1)
            throw new ArgumentException($"grids must be positive, got {oldGrid.H}×{oldGrid.W} → {newGrid.H}×{newGrid.W}");
        if (numPrefixTokens < 0 || n != numPrefixTokens + oldGrid.H * oldGrid.W)
            throw new ArgumentException($"position embedding has {n} tokens, but {numPrefixTokens} prefix token(s) and a {oldGrid.H}×{oldGrid.W} grid make {numPrefixTokens + oldGrid.H * oldGrid.W}");
        int outN = numPrefixTokens + newGrid.H * newGrid.W;
        var result = new float[outN * c];
        var src = posEmbed.Data;
        src.AsSpan(0, numPrefixTokens * c).CopyTo(result);
        var grid = ResampleGrid(src.AsSpan(numPrefixTokens * c), oldGrid.H, oldGrid.W, c, newGrid.H, newGrid.W, mode);
        grid.CopyTo(result, numPrefixTokens * c);
        return posEmbed.Rank == 3 ? new Tensor(result, 1, outN, c) : new Tensor(result, outN, c);
    }

    /// <summary>Resizes a channels-last grid [H, W, C] to [newH, newW, C].</summary>
    public static float[] ResampleGrid(ReadOnlySpan<float> grid, int h, int w, int c, int newH, int newW, ResampleMode mode)
    {
        if (grid.Length < (long)h * w * c) throw new ArgumentException("grid span too short for the given shape");
        var (ws, ww) = AxisWeights(w, newW, mode);
        var (hs, hw) = AxisWeights(h, newH, mode);
        // Width first: [H, W, C] → [H, newW, C], in double.
        var tmp = new double[h * newW * c];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < newW; x++)
            {
                var dst = tmp.AsSpan((y * newW + x) * c, c);
                for (int k = 0; k < ww[x].Length; k++)
                {
                    double wt = ww[x][k];
                    var s = grid.Slice((y * w + ws[x] + k) * c, c);
                    for (int ch = 0; ch < c; ch++) dst[ch] += wt * s[ch];
                }
            }
        var result = new float[newH * newW * c];
        for (int y = 0; y < newH; y++)
            for (int x = 0; x < newW; x++)
            {
                int o = (y * newW + x) * c;
                for (int ch = 0; ch < c; ch++)
                {
                    double v = 0;
                    for (int k = 0; k < hw[y].Length; k++) v += hw[y][k] * tmp[((hs[y] + k) * newW + x) * c + ch];
                    result[o + ch] = (float)v;
                }
            }
        return result;
    }

    /// <summary>Per output index: the first input index and the normalised weights of the taps (PyTorch's antialiased scheme).</summary>
    internal static (int[] Start, double[][] Weights) AxisWeights(int inSize, int outSize, ResampleMode mode)
    {
        double scale = (double)inSize / outSize;
        double stretch = Math.Max(scale, 1.0);
        double support = (mode == ResampleMode.Bicubic ? 2.0 : 1.0) * stretch;
        var start = new int[outSize];
        var weights = new double[outSize][];
        for (int i = 0; i < outSize; i++)
        {
            double center = scale * (i + 0.5);
            int lo = Math.Max((int)(center - support + 0.5), 0);
            int hi = Math.Min((int)(center + support + 0.5), inSize);
            var wt = new double[Math.Max(hi - lo, 0)];
            double total = 0;
            for (int j = 0; j < wt.Length; j++)
            {
                double x = (j + lo - center + 0.5) / stretch;
                wt[j] = mode == ResampleMode.Bicubic ? Cubic(x) : Math.Max(0, 1 - Math.Abs(x));
                total += wt[j];
            }
            if (total != 0) for (int j = 0; j < wt.Length; j++) wt[j] /= total;
            start[i] = lo;
            weights[i] = wt;
        }
        return (start, weights);
    }

    /// <summary>Keys' cubic convolution kernel with a = −0.5 (PIL's and PyTorch's antialiased bicubic).</summary>
    private static double Cubic(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
        return 0;
    }
}
