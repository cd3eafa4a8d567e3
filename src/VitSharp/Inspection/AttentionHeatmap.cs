using VitSharp.Data;

namespace VitSharp.Inspection;

/// <summary>Draws a patch-grid heat map (e.g. <see cref="AttentionRollout.PatchMap"/>) over an image and writes it as PNG.</summary>
public static class AttentionHeatmap
{
    /// <summary>Images smaller than this on their longer side are enlarged by a whole factor to at least this size.</summary>
    public const int MinimumSide = 224;

    /// <summary>
    /// The output size for an image of <paramref name="width"/> × <paramref name="height"/>: the image's own size, multiplied
    /// by the smallest whole factor that brings its longer side to at least <see cref="MinimumSide"/> pixels (28×28 → 224×224).
    /// </summary>
    public static (int Width, int Height) OutputSize(int width, int height)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"image size {width}×{height} must be positive");
        int scale = Math.Max(1, (MinimumSide + Math.Max(width, height) - 1) / Math.Max(width, height));
        return (width * scale, height * scale);
    }

    /// <summary>
    /// Blends <paramref name="map"/> (gridHeight × gridWidth values, row-major; any range) over <paramref name="image"/>:
    /// the image is converted to RGB and resized bilinearly to <see cref="OutputSize"/>, the map is min-max normalised to
    /// [0, 1] (a constant map gives 0), upsampled bilinearly to the same size, coloured with the jet colour map (blue → red)
    /// and mixed half and half with the image. Returns H×W×3 bytes.
    /// </summary>
    public static DecodedImage Overlay(DecodedImage image, ReadOnlySpan<float> map, int gridHeight, int gridWidth, float opacity = 0.5f)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (gridHeight < 1 || gridWidth < 1 || map.Length != gridHeight * gridWidth)
            throw new ArgumentException($"{map.Length} map values do not fill a {gridHeight}×{gridWidth} grid");
        if (!(opacity >= 0 && opacity <= 1)) throw new ArgumentException($"opacity must lie in [0, 1], got {opacity}");
        var (w, h) = OutputSize(image.Width, image.Height);
        var rgb = ImageOps.Resize(image.Channels == 3 ? image : ImageDecoder.ConvertChannels(image, 3), w, h);
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (var v in map) { if (float.IsFinite(v)) { min = Math.Min(min, v); max = Math.Max(max, v); } }
        float range = max > min ? max - min : 0;
        var norm = new float[map.Length];
        for (int i = 0; i < map.Length; i++) norm[i] = range > 0 && float.IsFinite(map[i]) ? (map[i] - min) / range : 0f;
        var up = Upsample(norm, gridWidth, gridHeight, w, h);
        var dst = new byte[w * h * 3];
        for (int p = 0; p < w * h; p++)
        {
            var (r, g, b) = Jet(up[p]);
            dst[p * 3 + 0] = Mix(rgb.Pixels[p * 3 + 0], r, opacity);
            dst[p * 3 + 1] = Mix(rgb.Pixels[p * 3 + 1], g, opacity);
            dst[p * 3 + 2] = Mix(rgb.Pixels[p * 3 + 2], b, opacity);
        }
        return new DecodedImage(dst, w, h, 3);
    }

    /// <summary><see cref="Overlay"/> written as an RGB PNG file (through libspng).</summary>
    /// <exception cref="DataSetException">libspng is missing or encoding fails.</exception>
    public static void SavePng(string path, DecodedImage image, ReadOnlySpan<float> map, int gridHeight, int gridWidth, float opacity = 0.5f)
    {
        var o = Overlay(image, map, gridHeight, gridWidth, opacity);
        ImageEncoder.SavePng(path, o.Pixels, o.Width, o.Height, 3);
    }

    private static byte Mix(byte image, float colour, float opacity) =>
        (byte)Math.Clamp(MathF.Round((1 - opacity) * image + opacity * 255f * colour), 0f, 255f);

    /// <summary>The jet colour map: 0 → dark blue, 0.5 → green, 1 → dark red.</summary>
    internal static (float R, float G, float B) Jet(float v)
    {
        v = Math.Clamp(v, 0f, 1f);
        static float C(float x) => Math.Clamp(x, 0f, 1f);
        return (C(1.5f - Math.Abs(4 * v - 3)), C(1.5f - Math.Abs(4 * v - 2)), C(1.5f - Math.Abs(4 * v - 1)));
    }

    /// <summary>Bilinear upsampling (align_corners = false, edges repeated) of a gw × gh grid to w × h.</summary>
    private static float[] Upsample(float[] grid, int gw, int gh, int w, int h)
    {
        var dst = new float[w * h];
        for (int y = 0; y < h; y++)
        {
            float sy = Math.Clamp((y + 0.5f) * gh / h - 0.5f, 0, gh - 1);
            int y0 = (int)sy, y1 = Math.Min(y0 + 1, gh - 1);
            float ly = sy - y0;
            for (int x = 0; x < w; x++)
            {
                float sx = Math.Clamp((x + 0.5f) * gw / w - 0.5f, 0, gw - 1);
                int x0 = (int)sx, x1 = Math.Min(x0 + 1, gw - 1);
                float lx = sx - x0;
                float top = grid[y0 * gw + x0] * (1 - lx) + grid[y0 * gw + x1] * lx;
                float bottom = grid[y1 * gw + x0] * (1 - lx) + grid[y1 * gw + x1] * lx;
                dst[y * w + x] = top * (1 - ly) + bottom * ly;
            }
        }
        return dst;
    }
}
