namespace VitSharp.Data;

/// <summary>Pixel-level helpers: bilinear resizing and layout conversion between H×W×C and C×H×W.</summary>
public static class ImageOps
{
    /// <summary>
    /// Bilinear resize of an H×W×C byte image, as torchvision's <c>Resize</c> on a uint8 tensor with
    /// <c>antialias=False</c> (torch's <c>interpolate(mode="bilinear", align_corners=False)</c>): source
    /// coordinate (d + ½)·in/out − ½ clamped at 0, edge pixels repeated, result rounded half to even.
    /// Without antialiasing, strong downscaling skips pixels (aliasing) exactly like torch does.
    /// </summary>
    public static DecodedImage Resize(DecodedImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width <= 0 || height <= 0) throw new ArgumentException($"target size {width}×{height} must be positive");
        if (width == image.Width && height == image.Height) return image;
        int c = image.Channels, iw = image.Width, ih = image.Height;
        var (x0, x1, lx) = Taps(iw, width);
        var (y0, y1, ly) = Taps(ih, height);
        byte[] src = image.Pixels;
        var dst = new byte[(long)width * height * c];
        for (int y = 0; y < height; y++)
        {
            float wy1 = ly[y], wy0 = 1f - wy1;
            long r0 = (long)y0[y] * iw, r1 = (long)y1[y] * iw;
            for (int x = 0; x < width; x++)
            {
                float wx1 = lx[x], wx0 = 1f - wx1;
                for (int k = 0; k < c; k++)
                {
                    float a = src[(r0 + x0[x]) * c + k], b = src[(r0 + x1[x]) * c + k];
                    float d = src[(r1 + x0[x]) * c + k], e = src[(r1 + x1[x]) * c + k];
                    float v = wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * d + wx1 * e);
                    dst[((long)y * width + x) * c + k] = (byte)Math.Clamp(MathF.Round(v), 0f, 255f);
                }
            }
        }
        return new DecodedImage(dst, width, height, c);
    }

    private static (int[] I0, int[] I1, float[] L1) Taps(int inSize, int outSize)
    {
        var i0 = new int[outSize];
        var i1 = new int[outSize];
        var l1 = new float[outSize];
        float scale = (float)inSize / outSize;
        for (int d = 0; d < outSize; d++)
        {
            float s = Math.Max(scale * (d + 0.5f) - 0.5f, 0f);
            int i = Math.Min((int)s, inSize - 1);
            i0[d] = i;
            i1[d] = i < inSize - 1 ? i + 1 : i;
            l1[d] = Math.Min(s - i, 1f);
        }
        return (i0, i1, l1);
    }

    /// <summary>Rearranges H×W×C bytes into C×H×W bytes, written to <paramref name="destination"/>.</summary>
    public static void HwcToChw(ReadOnlySpan<byte> hwc, int width, int height, int channels, Span<byte> destination)
    {
        int plane = width * height;
        if (hwc.Length < plane * channels || destination.Length < plane * channels)
            throw new ArgumentException($"buffers too small for {width}×{height}×{channels}");
        for (int p = 0; p < plane; p++)
            for (int k = 0; k < channels; k++)
                destination[k * plane + p] = hwc[p * channels + k];
    }

    /// <summary>
    /// Decodes an image file, converts it to <paramref name="channels"/> channels, resizes it to
    /// <paramref name="size"/>×<paramref name="size"/> with <see cref="Resize"/> and returns C×H×W floats in
    /// [0, 1] — the preprocessing of <see cref="ImageFolderDataset"/>, for classifying single images.
    /// </summary>
    /// <exception cref="DataSetException">The file cannot be decoded.</exception>
    public static float[] LoadImage(string path, int size, int channels)
    {
        var chw = LoadChw(path, size, channels);
        var x = new float[chw.Length];
        for (int i = 0; i < x.Length; i++) x[i] = chw[i] / 255f;
        return x;
    }

    /// <summary>Decode, convert channels, resize, and lay out as C×H×W bytes.</summary>
    internal static byte[] LoadChw(string path, int size, int channels)
    {
        var img = Resize(ImageDecoder.Decode(path, channels), size, size);
        var chw = new byte[size * size * channels];
        HwcToChw(img.Pixels, size, size, channels, chw);
        return chw;
    }
}
