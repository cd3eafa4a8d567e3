using System.Runtime.InteropServices;

namespace VitSharp.Data;

/// <summary>Writes 8-bit images as PNG (through libspng) or JPEG (through libturbojpeg).</summary>
public static unsafe class ImageEncoder
{
    /// <summary>Encodes H×W×C bytes (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as a PNG file.</summary>
    /// <exception cref="DataSetException">libspng is missing or encoding fails.</exception>
    public static void SavePng(string path, byte[] pixels, int width, int height, int channels) =>
        File.WriteAllBytes(path, EncodePng(pixels, width, height, channels, path));

    /// <summary>
    /// Saves a C×H×W float image (C = 1 or 3, values in [0, 1], clamped; e.g. a tensor slice or an attention
    /// map) as an 8-bit PNG: byte = round(255·v).
    /// </summary>
    /// <exception cref="DataSetException">libspng is missing or encoding fails.</exception>
    public static void SavePngFromChw(string path, ReadOnlySpan<float> chw, int channels, int height, int width)
    {
        if (channels is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "1 or 3 channels");
        if (width <= 0 || height <= 0) throw new ArgumentException($"image size {width}×{height} must be positive");
        int plane = height * width;
        if (chw.Length != plane * channels) throw new ArgumentException($"{chw.Length} floats do not hold a {channels}×{height}×{width} image");
        var hwc = new byte[plane * channels];
        for (int k = 0; k < channels; k++)
            for (int p = 0; p < plane; p++)
            {
                float v = chw[k * plane + p];
                hwc[p * channels + k] = (byte)MathF.Round(255f * (float.IsNaN(v) ? 0f : Math.Clamp(v, 0f, 1f)));
            }
        SavePng(path, hwc, width, height, channels);
    }

    /// <summary>Encodes H×W×C bytes (C = 1, 2, 3 or 4) as PNG file contents.</summary>
    /// <exception cref="DataSetException">libspng is missing or encoding fails.</exception>
    public static byte[] EncodePng(byte[] pixels, int width, int height, int channels, string name = "PNG")
    {
        byte color = channels switch
        {
            1 => Spng.ColorGrey,
            2 => Spng.ColorGreyAlpha,
            3 => Spng.ColorRgb,
            4 => Spng.ColorRgba,
            _ => throw new ArgumentOutOfRangeException(nameof(channels), channels, "1, 2, 3 or 4 channels"),
        };
        CheckBuffer(pixels, width, height, channels);
        var api = Spng.TryGet() ?? throw new DataSetException($"{name}: PNG encoding needs libspng (apt-get install libspng0)");
        IntPtr ctx = api.CtxNew(Spng.CtxEncoder);
        if (ctx == IntPtr.Zero) throw new OutOfMemoryException("spng_ctx_new failed");
        try
        {
            var ihdr = new Spng.Ihdr { Width = (uint)width, Height = (uint)height, BitDepth = 8, ColorType = color };
            int rc = api.SetOption(ctx, Spng.OptionEncodeToBuffer, 1);
            if (rc == 0) rc = api.SetIhdr(ctx, &ihdr);
            if (rc == 0)
                fixed (byte* p = pixels) rc = api.EncodeImage(ctx, p, (nuint)pixels.Length, Spng.FmtPng, Spng.EncodeFinalize);
            if (rc != 0) throw new DataSetException($"{name}: PNG encoding failed: {api.Error(rc)}");
            nuint len;
            int err;
            byte* png = api.GetPngBuffer(ctx, &len, &err);
            if (png == null) throw new DataSetException($"{name}: PNG encoding failed: {api.Error(err)}");
            try
            {
                return new ReadOnlySpan<byte>(png, checked((int)len)).ToArray();
            }
            finally
            {
                NativeMemory.Free(png); // allocated with malloc by libspng's default allocator
            }
        }
        finally
        {
            api.CtxFree(ctx);
        }
    }

    /// <summary>Encodes H×W×C bytes (C = 1 grey or 3 RGB) as a JPEG file (4:4:4, accurate DCT).</summary>
    /// <exception cref="DataSetException">libturbojpeg is missing or encoding fails.</exception>
    public static void SaveJpeg(string path, byte[] pixels, int width, int height, int channels, int quality = 95) =>
        File.WriteAllBytes(path, EncodeJpeg(pixels, width, height, channels, quality, path));

    /// <summary>Encodes H×W×C bytes (C = 1 grey or 3 RGB) as JPEG file contents (4:4:4, accurate DCT).</summary>
    /// <exception cref="DataSetException">libturbojpeg is missing or encoding fails.</exception>
    public static byte[] EncodeJpeg(byte[] pixels, int width, int height, int channels, int quality = 95, string name = "JPEG")
    {
        if (channels is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "1 or 3 channels");
        ArgumentOutOfRangeException.ThrowIfLessThan(quality, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(quality, 100);
        CheckBuffer(pixels, width, height, channels);
        var api = TurboJpeg.TryGet() ?? throw new DataSetException($"{name}: JPEG encoding needs libturbojpeg (apt-get install libturbojpeg0)");
        IntPtr h = api.InitCompress();
        if (h == IntPtr.Zero) throw new OutOfMemoryException("tjInitCompress failed");
        byte* jpeg = null;
        try
        {
            nuint size = 0;
            int rc;
            fixed (byte* p = pixels)
                rc = api.Compress2(h, p, width, 0, height, channels == 1 ? TurboJpeg.PixelGray : TurboJpeg.PixelRgb, &jpeg, &size,
                    channels == 1 ? TurboJpeg.SampGray : TurboJpeg.Samp444, quality, TurboJpeg.FlagAccurateDct);
            if (rc != 0) throw new DataSetException($"{name}: JPEG encoding failed: {api.Error(h)}");
            return new ReadOnlySpan<byte>(jpeg, checked((int)size)).ToArray();
        }
        finally
        {
            if (jpeg != null) api.Free(jpeg);
            api.Destroy(h);
        }
    }

    private static void CheckBuffer(byte[] pixels, int width, int height, int channels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (width <= 0 || height <= 0) throw new ArgumentException($"image size {width}×{height} must be positive");
        if (pixels.LongLength != (long)width * height * channels)
            throw new ArgumentException($"{pixels.LongLength} bytes do not hold a {width}×{height}×{channels} image");
    }
}
