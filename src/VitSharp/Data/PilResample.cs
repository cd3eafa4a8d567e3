namespace VitSharp.Data;

/// <summary>Pillow's resampling filters, numbered as PIL numbers them (<c>Image.Resampling</c>; the <c>resample</c> codes of Hugging Face image processors).</summary>
public enum PilFilter
{
    /// <summary>Nearest neighbour (PIL code 0): the source pixel under each output pixel's centre.</summary>
    Nearest = 0,

    /// <summary>Lanczos, a = 3 (PIL code 1).</summary>
    Lanczos = 1,

    /// <summary>Triangle filter, support 1 (PIL code 2): bilinear, antialiased when downscaling.</summary>
    Bilinear = 2,

    /// <summary>Keys cubic with a = −0.5, support 2 (PIL code 3): bicubic, antialiased when downscaling.</summary>
    Bicubic = 3,

    /// <summary>Box filter, support ½ (PIL code 4).</summary>
    Box = 4,

    /// <summary>Hamming-windowed sinc, support 1 (PIL code 5).</summary>
    Hamming = 5,
}

/// <summary>
/// Pillow's <c>Image.resize</c> on 8-bit images, bit for bit: a reimplementation of <c>libImaging/Resample.c</c>
/// (<c>ImagingResample</c>: separable convolution, horizontal pass first, then vertical) and, for
/// <see cref="PilFilter.Nearest"/>, of <c>libImaging/Geometry.c</c> (<c>ImagingScaleAffine</c>). This is what
/// torchvision's <c>Resize</c> does to PIL images and what Hugging Face image processors do.
/// </summary>
/// <remarks>
/// <para>For an output pixel <c>xx</c> the filter is centred at <c>center = (xx + ½)·scale</c> in source
/// coordinates, <c>scale = in/out</c>, and stretched by <c>filterscale = max(scale, 1)</c> — so downscaling
/// averages over every source pixel under the output pixel (antialiasing) while upscaling interpolates. Its
/// support is <c>filter support × filterscale</c>; the taps are source pixels <c>xmin ≤ x &lt; xmax</c> with
/// <c>xmin = (int)(center − support + ½)</c> and <c>xmax = (int)(center + support + ½)</c> clamped to the image,
/// weight <c>filter((x − center + ½) / filterscale)</c>, normalised to sum 1 per output pixel.</para>
/// <para>On 8-bit data the weights become fixed point with <see cref="PrecisionBits"/> = 22 fractional bits,
/// rounded away from zero; each sum starts at ½ (2²¹), and the result is <c>sum ≫ 22</c> clipped to [0, 255].
/// Each pass writes bytes, so the vertical pass reads the rounded output of the horizontal one. A pass whose
/// size does not change is skipped; equal sizes copy the image.</para>
/// <para>Images are H×W×C interleaved bytes, any channel count (channels are independent; Pillow treats each
/// band of L, RGB and RGBA alike — RGBA/LA images are premultiplied by Pillow's Python layer, which this does not do).</para>
/// </remarks>
public static class PilResample
{
    /// <summary>Fractional bits of the fixed-point weights on 8-bit data (<c>PRECISION_BITS = 32 − 8 − 2</c>).</summary>
    public const int PrecisionBits = 32 - 8 - 2;

    /// <summary>The support (half width, in source pixels at scale 1) of a filter.</summary>
    public static double Support(PilFilter filter) => filter switch
    {
        PilFilter.Box => 0.5,
        PilFilter.Bilinear => 1.0,
        PilFilter.Hamming => 1.0,
        PilFilter.Bicubic => 2.0,
        PilFilter.Lanczos => 3.0,
        _ => throw new ArgumentOutOfRangeException(nameof(filter), filter, "nearest has no convolution filter"),
    };

    /// <summary>The filter function, as Resample.c defines it (double precision; Hamming's constants are C floats).</summary>
    public static double Evaluate(PilFilter filter, double x)
    {
        switch (filter)
        {
            case PilFilter.Box:
                return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
            case PilFilter.Bilinear:
                if (x < 0.0) x = -x;
                return x < 1.0 ? 1.0 - x : 0.0;
            case PilFilter.Hamming:
                if (x < 0.0) x = -x;
                if (x == 0.0) return 1.0;
                if (x >= 1.0) return 0.0;
                x *= Math.PI;
                return Math.Sin(x) / x * (0.54f + 0.46f * Math.Cos(x));
            case PilFilter.Bicubic:
            {
                const double a = -0.5;
                if (x < 0.0) x = -x;
                if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
                if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
                return 0.0;
            }
            case PilFilter.Lanczos:
                return -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;
            default:
                throw new ArgumentOutOfRangeException(nameof(filter), filter, "nearest has no convolution filter");
        }
    }

    private static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    /// <summary>
    /// The taps of one pass (Resample.c's <c>precompute_coeffs</c> over the whole source, box 0…<paramref name="inSize"/>):
    /// for output pixel <c>i</c>, <c>Bounds[2i]</c> is the first source pixel, <c>Bounds[2i+1]</c> the number of taps,
    /// and <c>Weights[i·KernelSize …]</c> their normalised double weights (zero beyond the count).
    /// </summary>
    public static (int KernelSize, int[] Bounds, double[] Weights) Coefficients(int inSize, int outSize, PilFilter filter)
    {
        if (inSize <= 0 || outSize <= 0) throw new ArgumentException($"sizes must be positive (in {inSize}, out {outSize})");
        double support0 = Support(filter);
        float in0 = 0f, in1 = inSize;
        double scale = (double)(in1 - in0) / outSize, filterscale = scale;
        if (filterscale < 1.0) filterscale = 1.0;
        double support = support0 * filterscale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var kk = new double[(long)outSize * ksize];
        double invFilterscale = 1.0 / filterscale;
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = in0 + (xx + 0.5) * scale;
            double ww = 0.0;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            int k = xx * ksize;
            for (int x = 0; x < xmax; x++)
            {
                double w = Evaluate(filter, (x + xmin - center + 0.5) * invFilterscale);
                kk[k + x] = w;
                ww += w;
            }
            if (ww != 0.0)
                for (int x = 0; x < xmax; x++) kk[k + x] /= ww;
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return (ksize, bounds, kk);
    }

    /// <summary>The double weights as 8-bit fixed point (<c>normalize_coeffs_8bpc</c>): (int)(w·2²² ± ½), rounding away from zero.</summary>
    public static int[] FixedPoint(ReadOnlySpan<double> weights)
    {
        var fixedWeights = new int[weights.Length];
        for (int i = 0; i < weights.Length; i++)
            fixedWeights[i] = weights[i] < 0
                ? (int)(-0.5 + weights[i] * (1 << PrecisionBits))
                : (int)(0.5 + weights[i] * (1 << PrecisionBits));
        return fixedWeights;
    }

    /// <summary>Pillow's <c>clip8</c>: a fixed-point sum to a byte (<c>sum ≫ 22</c>, clipped to [0, 255]).</summary>
    private static byte Clip8(int sum)
    {
        int v = sum >> PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    /// <summary>
    /// Resizes <paramref name="source"/> (H×W×C bytes, <paramref name="width"/>×<paramref name="height"/>) to
    /// <paramref name="outWidth"/>×<paramref name="outHeight"/> into <paramref name="destination"/>, exactly as
    /// Pillow's <c>Image.resize((outWidth, outHeight), filter)</c>.
    /// </summary>
    public static void Resize(ReadOnlySpan<byte> source, int width, int height, int channels,
        int outWidth, int outHeight, PilFilter filter, Span<byte> destination)
    {
        Check(source, width, height, channels, outWidth, outHeight, destination);
        if (width == outWidth && height == outHeight)
        {
            source[..(width * height * channels)].CopyTo(destination);
            return;
        }
        if (filter == PilFilter.Nearest)
        {
            Nearest(source, width, height, channels, outWidth, outHeight, destination);
            return;
        }
        bool horizontal = outWidth != width, vertical = outHeight != height;
        if (horizontal && vertical)
        {
            var temp = new byte[(long)outWidth * height * channels];
            ResampleHorizontal(source, width, height, channels, outWidth, filter, temp);
            ResampleVertical(temp, outWidth, height, channels, outHeight, filter, destination);
        }
        else if (horizontal)
            ResampleHorizontal(source, width, height, channels, outWidth, filter, destination);
        else
            ResampleVertical(source, width, height, channels, outHeight, filter, destination);
    }

    /// <summary>Resizes a decoded image with <see cref="Resize(ReadOnlySpan{byte}, int, int, int, int, int, PilFilter, Span{byte})"/>.</summary>
    public static DecodedImage Resize(DecodedImage image, int outWidth, int outHeight, PilFilter filter)
    {
        ArgumentNullException.ThrowIfNull(image);
        var dst = new byte[(long)outWidth * outHeight * image.Channels];
        Resize(image.Pixels, image.Width, image.Height, image.Channels, outWidth, outHeight, filter, dst);
        return new DecodedImage(dst, outWidth, outHeight, image.Channels);
    }

    /// <summary>
    /// The horizontal pass (<c>ImagingResampleHorizontal_8bpc</c>): each of the <paramref name="height"/> rows of
    /// <paramref name="width"/> pixels becomes <paramref name="outWidth"/> pixels.
    /// </summary>
    public static void ResampleHorizontal(ReadOnlySpan<byte> source, int width, int height, int channels,
        int outWidth, PilFilter filter, Span<byte> destination)
    {
        Check(source, width, height, channels, outWidth, height, destination);
        var (ksize, bounds, weights) = Coefficients(width, outWidth, filter);
        int[] kk = FixedPoint(weights);
        int inRow = width * channels, outRow = outWidth * channels;
        for (int yy = 0; yy < height; yy++)
        {
            ReadOnlySpan<byte> line = source.Slice(yy * inRow, inRow);
            Span<byte> lineOut = destination.Slice(yy * outRow, outRow);
            for (int xx = 0; xx < outWidth; xx++)
            {
                int xmin = bounds[xx * 2], count = bounds[xx * 2 + 1];
                ReadOnlySpan<int> k = kk.AsSpan(xx * ksize, count);
                for (int c = 0; c < channels; c++)
                {
                    int ss = 1 << (PrecisionBits - 1);
                    for (int x = 0; x < k.Length; x++) ss += line[(x + xmin) * channels + c] * k[x];
                    lineOut[xx * channels + c] = Clip8(ss);
                }
            }
        }
    }

    /// <summary>
    /// The vertical pass (<c>ImagingResampleVertical_8bpc</c>): each of the <paramref name="width"/> columns of
    /// <paramref name="height"/> pixels becomes <paramref name="outHeight"/> pixels.
    /// </summary>
    public static void ResampleVertical(ReadOnlySpan<byte> source, int width, int height, int channels,
        int outHeight, PilFilter filter, Span<byte> destination)
    {
        Check(source, width, height, channels, width, outHeight, destination);
        var (ksize, bounds, weights) = Coefficients(height, outHeight, filter);
        int[] kk = FixedPoint(weights);
        int row = width * channels;
        for (int yy = 0; yy < outHeight; yy++)
        {
            int ymin = bounds[yy * 2], count = bounds[yy * 2 + 1];
            ReadOnlySpan<int> k = kk.AsSpan(yy * ksize, count);
            Span<byte> lineOut = destination.Slice(yy * row, row);
            for (int i = 0; i < row; i++)
            {
                int ss = 1 << (PrecisionBits - 1);
                for (int y = 0; y < k.Length; y++) ss += source[(y + ymin) * row + i] * k[y];
                lineOut[i] = Clip8(ss);
            }
        }
    }

    /// <summary>
    /// Nearest-neighbour resize as Pillow's <c>ImagingScaleAffine</c> (what <c>Image.resize</c> does for NEAREST):
    /// the source position of output pixel <c>x</c> is accumulated in double precision, starting at ½·scale and
    /// adding <c>scale = in/out</c> per pixel, and truncated.
    /// </summary>
    public static void Nearest(ReadOnlySpan<byte> source, int width, int height, int channels,
        int outWidth, int outHeight, Span<byte> destination)
    {
        Check(source, width, height, channels, outWidth, outHeight, destination);
        double a0 = (double)width / outWidth, a4 = (double)height / outHeight;
        var xin = new int[outWidth];
        double xo = a0 * 0.5;
        for (int x = 0; x < outWidth; x++)
        {
            int xi = Coord(xo);
            xin[x] = xi < width ? xi : -1;
            xo += a0;
        }
        double yo = a4 * 0.5;
        int inRow = width * channels, outRow = outWidth * channels;
        for (int y = 0; y < outHeight; y++)
        {
            int yi = Coord(yo);
            Span<byte> lineOut = destination.Slice(y * outRow, outRow);
            lineOut.Clear();
            if (yi < height)
            {
                ReadOnlySpan<byte> line = source.Slice(yi * inRow, inRow);
                for (int x = 0; x < outWidth; x++)
                    if (xin[x] >= 0) line.Slice(xin[x] * channels, channels).CopyTo(lineOut.Slice(x * channels, channels));
            }
            yo += a4;
        }
    }

    // Geometry.c's COORD: truncation (negative positions cannot occur here). A position that drifts to the source
    // size leaves its output pixel black, as Pillow does (it fills the image with zeros first).
    private static int Coord(double v) => v < 0.0 ? -1 : (int)v;

    private static void Check(ReadOnlySpan<byte> source, int width, int height, int channels, int outWidth, int outHeight, ReadOnlySpan<byte> destination)
    {
        if (width <= 0 || height <= 0 || outWidth <= 0 || outHeight <= 0)
            throw new ArgumentException($"sizes must be positive ({width}×{height} → {outWidth}×{outHeight})");
        if (channels <= 0) throw new ArgumentOutOfRangeException(nameof(channels), channels, "channels must be positive");
        if (source.Length < (long)width * height * channels)
            throw new ArgumentException($"source holds {source.Length} bytes, {width}×{height}×{channels} needs {(long)width * height * channels}");
        if (destination.Length < (long)outWidth * outHeight * channels)
            throw new ArgumentException($"destination holds {destination.Length} bytes, {outWidth}×{outHeight}×{channels} needs {(long)outWidth * outHeight * channels}");
    }
}
