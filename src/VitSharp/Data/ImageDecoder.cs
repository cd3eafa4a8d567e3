namespace VitSharp.Data;

/// <summary>
/// Decodes PNG (through libspng) and JPEG (through libjpeg-turbo's TurboJPEG API) files into 8-bit pixels.
/// The format is recognised by the file's first bytes, not by its name. Both libraries come from Debian
/// (libspng0, libturbojpeg0) and are loaded on first use.
/// </summary>
/// <remarks>
/// Colour conversion follows PIL's <c>convert</c>: RGB → grey is L = (19595·R + 38470·G + 7471·B + 2¹⁵) ≫ 16
/// (ITU-R 601-2 luma); grey → RGB repeats the value; alpha is dropped (not composited). 16-bit PNGs are
/// scaled to 8 bits by libspng; palette images are expanded.
/// </remarks>
public static unsafe class ImageDecoder
{
    /// <summary>Largest accepted image, in pixels (guards against absurd headers).</summary>
    public const long MaxPixels = 1L << 28;

    private static ReadOnlySpan<byte> PngSignature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Whether libspng could be loaded.</summary>
    public static bool PngAvailable => Spng.TryGet() is not null;

    /// <summary>Whether libturbojpeg could be loaded.</summary>
    public static bool JpegAvailable => TurboJpeg.TryGet() is not null;

    /// <summary>"png", "jpeg" or null, from the first bytes of a file.</summary>
    public static string? DetectFormat(ReadOnlySpan<byte> data)
    {
        if (data.StartsWith(PngSignature)) return "png";
        if (data.Length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return "jpeg";
        return null;
    }

    /// <summary>Decodes a PNG or JPEG file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="channels">1 for grey, 3 for RGB, 0 for the file's own (1 for grey images, else 3).</param>
    /// <exception cref="DataSetException">The file cannot be read, is neither PNG nor JPEG, is corrupt, or its decoder library is missing.</exception>
    public static DecodedImage Decode(string path, int channels = 0)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataSetException(e is FileNotFoundException or DirectoryNotFoundException
                ? $"{path}: file not found" : $"{path}: cannot read: {e.Message}", e);
        }
        return Decode(data, path, channels);
    }

    /// <summary>Decodes a PNG or JPEG held in memory; <paramref name="name"/> names it in error messages.</summary>
    /// <exception cref="DataSetException">The data is neither PNG nor JPEG, is corrupt, or its decoder library is missing.</exception>
    public static DecodedImage Decode(ReadOnlySpan<byte> data, string name, int channels = 0)
    {
        if (channels is not (0 or 1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "channels must be 0 (as stored), 1 (grey) or 3 (RGB)");
        DecodedImage img = DetectFormat(data) switch
        {
            "png" => DecodePng(data, name),
            "jpeg" => DecodeJpeg(data, name),
            _ => throw new DataSetException($"{name}: not a PNG or JPEG file (starts with {Convert.ToHexString(data[..Math.Min(8, data.Length)])})"),
        };
        int want = channels != 0 ? channels : img.Channels == 1 ? 1 : 3;
        return ConvertChannels(img, want);
    }

    /// <summary>Converts between grey (1), RGB (3) and RGBA (4) pixels as PIL's <c>convert</c> does (alpha dropped, not composited).</summary>
    public static DecodedImage ConvertChannels(DecodedImage image, int channels)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (channels is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "convert to 1 or 3 channels");
        int sc = image.Channels;
        if (sc == channels) return image;
        long n = (long)image.Width * image.Height;
        var src = image.Pixels;
        var dst = new byte[n * channels];
        if (channels == 1)
        {
            if (sc == 2 || sc == 1)
                for (long i = 0; i < n; i++) dst[i] = src[i * sc];
            else
                for (long i = 0; i < n; i++)
                {
                    long s = i * sc;
                    dst[i] = (byte)((19595 * src[s] + 38470 * src[s + 1] + 7471 * src[s + 2] + 0x8000) >> 16);
                }
        }
        else if (sc <= 2)
        {
            for (long i = 0; i < n; i++) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i * sc];
        }
        else
        {
            for (long i = 0; i < n; i++)
            {
                dst[3 * i] = src[i * sc];
                dst[3 * i + 1] = src[i * sc + 1];
                dst[3 * i + 2] = src[i * sc + 2];
            }
        }
        return new DecodedImage(dst, image.Width, image.Height, channels);
    }

    private static void CheckSize(string name, long width, long height)
    {
        if (width <= 0 || height <= 0 || width * height > MaxPixels)
            throw new DataSetException($"{name}: unsupported image size {width}×{height}");
    }

    private static DecodedImage DecodePng(ReadOnlySpan<byte> data, string name)
    {
        var api = Spng.TryGet() ?? throw new DataSetException($"{name}: {Spng.Missing}");
        IntPtr ctx = api.CtxNew(0);
        if (ctx == IntPtr.Zero) throw new OutOfMemoryException("spng_ctx_new failed");
        try
        {
            fixed (byte* buf = data)
            {
                int rc = api.SetPngBuffer(ctx, buf, (nuint)data.Length);
                Spng.Ihdr ihdr = default;
                if (rc == 0) rc = api.GetIhdr(ctx, &ihdr);
                if (rc != 0) throw new DataSetException($"{name}: corrupt PNG: {api.Error(rc)}");
                CheckSize(name, ihdr.Width, ihdr.Height);
                bool grey = ihdr.ColorType is Spng.ColorGrey or Spng.ColorGreyAlpha;
                nuint size;
                rc = api.DecodedImageSize(ctx, Spng.FmtRgb8, &size);
                if (rc != 0) throw new DataSetException($"{name}: corrupt PNG: {api.Error(rc)}");
                if (size != (nuint)((long)ihdr.Width * ihdr.Height * 3))
                    throw new DataSetException($"{name}: unexpected decoded size {size} for {ihdr.Width}×{ihdr.Height} RGB");
                var rgb = new byte[size];
                fixed (byte* o = rgb) rc = api.DecodeImage(ctx, o, size, Spng.FmtRgb8, 0);
                if (rc != 0) throw new DataSetException($"{name}: corrupt PNG: {api.Error(rc)}");
                var img = new DecodedImage(rgb, (int)ihdr.Width, (int)ihdr.Height, 3);
                // A grey PNG decodes to R = G = B; keep one plane so that grey stays exact.
                return grey ? TakeFirstChannel(img) : img;
            }
        }
        finally
        {
            api.CtxFree(ctx);
        }
    }

    private static DecodedImage TakeFirstChannel(DecodedImage img)
    {
        long n = (long)img.Width * img.Height;
        var g = new byte[n];
        for (long i = 0; i < n; i++) g[i] = img.Pixels[3 * i];
        return new DecodedImage(g, img.Width, img.Height, 1);
    }

    private static DecodedImage DecodeJpeg(ReadOnlySpan<byte> data, string name)
    {
        var api = TurboJpeg.TryGet() ?? throw new DataSetException($"{name}: {TurboJpeg.Missing}");
        IntPtr h = api.InitDecompress();
        if (h == IntPtr.Zero) throw new OutOfMemoryException("tjInitDecompress failed");
        try
        {
            fixed (byte* buf = data)
            {
                int w, ht, subsamp, colorspace;
                if (api.DecompressHeader3(h, buf, (nuint)data.Length, &w, &ht, &subsamp, &colorspace) != 0)
                    throw new DataSetException($"{name}: corrupt JPEG: {api.Error(h)}");
                CheckSize(name, w, ht);
                int channels = colorspace == TurboJpeg.ColorspaceGray ? 1 : 3;
                int format = channels == 1 ? TurboJpeg.PixelGray : TurboJpeg.PixelRgb;
                var pixels = new byte[(long)w * ht * channels];
                int rc;
                fixed (byte* o = pixels) rc = api.Decompress2(h, buf, (nuint)data.Length, o, w, 0, ht, format, 0);
                if (rc != 0)
                {
                    string msg = api.Error(h);
                    // Warnings (e.g. extraneous bytes) are accepted as PIL does; truncation is not.
                    if (api.GetErrorCode(h) != TurboJpeg.ErrorWarning || msg.Contains("Premature end", StringComparison.OrdinalIgnoreCase))
                        throw new DataSetException($"{name}: corrupt JPEG: {msg}");
                }
                return new DecodedImage(pixels, w, ht, channels);
            }
        }
        finally
        {
            api.Destroy(h);
        }
    }
}
