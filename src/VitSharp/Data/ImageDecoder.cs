using System.Buffers.Binary;
using System.IO.Compression;

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
/// <para>
/// Hostile files: the size a header declares is bounded before anything is allocated — at most
/// <see cref="MaxPixels"/> pixels, at most <see cref="MaxDecodedBytes"/> decoded bytes (width × height × 3),
/// and no more than the file could hold: a PNG's raw image data (rows with their filter bytes) at most
/// <see cref="MaxDeflateRatio"/> × the bytes of its IDAT chunks (deflate's largest expansion), a JPEG at most
/// <see cref="MaxJpegPixelsPerByte"/> pixels per byte of file. Then the pixel data must match the header:
/// a PNG's chunks must be whole and end with IEND, its IDAT data must inflate to exactly the rows the IHDR
/// declares, and libspng checks every chunk's CRC up to IEND; a JPEG is decoded with
/// TJFLAG_STOPONWARNING, so corrupt data, a premature end or extraneous bytes (a SOF size that disagrees
/// with the scan data) are errors, not warnings. Every error is one line naming the file and the problem.
/// </para>
/// </remarks>
public static unsafe class ImageDecoder
{
    /// <summary>Largest accepted image, in pixels (guards against absurd headers).</summary>
    public const long MaxPixels = 1L << 28;

    /// <summary>Largest accepted decoded buffer, in bytes (width × height × 3 for the RGB decode).</summary>
    public const long MaxDecodedBytes = 1L << 30;

    /// <summary>Deflate's largest expansion (1032:1, rounded up): a PNG's raw image data is at most this times its IDAT bytes.</summary>
    public const long MaxDeflateRatio = 1040;

    /// <summary>
    /// Most pixels a JPEG may declare per byte of file. Baseline Huffman coding needs at least 2 bits per
    /// 8×8 block (256 pixels per byte for grey); the margin leaves room for progressive end-of-band runs.
    /// </summary>
    public const long MaxJpegPixelsPerByte = 4096;

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
        if (width <= 0 || height <= 0)
            throw new DataSetException($"{name}: invalid image size {width}×{height} in the header");
        if (width * height > MaxPixels || width * height * 3 > MaxDecodedBytes)
            throw new DataSetException($"{name}: header declares {width}×{height}, more than {MaxPixels} pixels / {MaxDecodedBytes} decoded bytes");
    }

    private static readonly (int X, int Y, int Dx, int Dy)[] Adam7 =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

    /// <summary>Bytes of raw (filtered, uncompressed) image data the IHDR declares: rows of 1 filter byte + pixels, per Adam7 pass when interlaced.</summary>
    private static long RawImageBytes(in Spng.Ihdr ihdr)
    {
        int samples = ihdr.ColorType switch { Spng.ColorRgb => 3, Spng.ColorGreyAlpha => 2, Spng.ColorRgba => 4, _ => 1 };
        long bpp = (long)samples * ihdr.BitDepth;
        long Rows(long w, long h) => w == 0 || h == 0 ? 0 : h * (1 + (w * bpp + 7) / 8);
        if (ihdr.InterlaceMethod == 0) return Rows(ihdr.Width, ihdr.Height);
        long total = 0;
        foreach (var (x, y, dx, dy) in Adam7)
            total += Rows(ihdr.Width > x ? (ihdr.Width - x + dx - 1) / dx : 0, ihdr.Height > y ? (ihdr.Height - y + dy - 1) / dy : 0);
        return total;
    }

    /// <summary>
    /// Walks the chunks: every chunk must lie within the file and the last must be IEND. Returns the
    /// concatenated IDAT data (at most the file's size). Bytes after IEND are ignored.
    /// </summary>
    private static byte[] PngIdat(ReadOnlySpan<byte> data, string name)
    {
        var idat = new MemoryStream();
        long pos = 8;
        while (true)
        {
            if (pos == data.Length)
                throw new DataSetException($"{name}: PNG has no IEND chunk: file ends at offset {pos} after the last whole chunk");
            if (pos + 12 > data.Length)
                throw new DataSetException($"{name}: truncated PNG: chunk at offset {pos} needs at least 12 bytes, file ends at {data.Length}{(pos + 8 <= data.Length ? $" (chunk {ChunkType(data, pos)} is cut short)" : "")}");
            uint len = BinaryPrimitives.ReadUInt32BigEndian(data[(int)pos..]);
            string type = ChunkType(data, pos);
            if (len > int.MaxValue || pos + 12 + len > data.Length)
                throw new DataSetException($"{name}: truncated PNG: chunk {type} at offset {pos} declares {len} data bytes, needing {12 + (long)len} bytes, but the file ends at {data.Length}{(type == "IEND" ? " (the IEND chunk is cut short)" : "")}");
            if (type == "IDAT") idat.Write(data.Slice((int)pos + 8, (int)len));
            pos += 12 + len;
            // Bytes after IEND are ignored, as libpng and PIL do.
            if (type == "IEND") return idat.ToArray();
        }
    }

    private static string ChunkType(ReadOnlySpan<byte> data, long pos)
    {
        Span<char> t = stackalloc char[4];
        for (int i = 0; i < 4; i++) { byte b = data[(int)pos + 4 + i]; t[i] = b is >= 0x20 and < 0x7F ? (char)b : '?'; }
        return new string(t);
    }

    /// <summary>Inflates the IDAT data (into a small reused buffer) and checks it holds exactly <paramref name="expected"/> bytes.</summary>
    private static void CheckIdatLength(byte[] idat, long expected, string name, in Spng.Ihdr ihdr)
    {
        string declared = $"IHDR declares {ihdr.Width}×{ihdr.Height} ({ihdr.BitDepth}-bit, colour type {ihdr.ColorType}{(ihdr.InterlaceMethod != 0 ? ", interlaced" : "")}) = {expected} bytes of raw image data";
        if (expected > MaxDeflateRatio * idat.LongLength + 1024)
            throw new DataSetException($"{name}: {declared}, but its IDAT chunks hold only {idat.Length} compressed bytes (deflate expands at most {MaxDeflateRatio}:1)");
        // zlib's FDICT flag (bit 5 of the header's second byte): inflate would stop asking for a preset dictionary
        // (Z_NEED_DICT, which .NET reports as a ZLibException); PNG forbids one.
        if (idat.Length >= 2 && (idat[1] & 0x20) != 0)
            throw new DataSetException($"{name}: corrupt PNG: the IDAT zlib header {idat[0]:X2} {idat[1]:X2} asks for a preset dictionary (FDICT), which PNG does not allow");
        long got = 0;
        try
        {
            using var z = new ZLibStream(new MemoryStream(idat), CompressionMode.Decompress);
            var buf = new byte[1 << 16];
            int r;
            while ((r = z.Read(buf)) > 0)
            {
                got += r;
                if (got > expected) break;
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)   // IOException: ZLibException, zlib's other error codes
        {
            throw new DataSetException($"{name}: corrupt PNG: the IDAT image data is not a valid zlib stream (after {got} of {expected} decompressed bytes)", e);
        }
        if (got < expected)
            throw new DataSetException($"{name}: {declared}, but the image data decompresses to only {got} bytes (truncated or short IDAT)");
        if (got > expected)
            throw new DataSetException($"{name}: {declared}, but the image data holds more (the size in the header is smaller than the image data)");
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
                CheckIdatLength(PngIdat(data, name), RawImageBytes(ihdr), name, ihdr);
                bool grey = ihdr.ColorType is Spng.ColorGrey or Spng.ColorGreyAlpha;
                nuint size;
                rc = api.DecodedImageSize(ctx, Spng.FmtRgb8, &size);
                if (rc != 0) throw new DataSetException($"{name}: corrupt PNG: {api.Error(rc)}");
                if (size != (nuint)((long)ihdr.Width * ihdr.Height * 3))
                    throw new DataSetException($"{name}: unexpected decoded size {size} for {ihdr.Width}×{ihdr.Height} RGB");
                var rgb = new byte[size];
                fixed (byte* o = rgb) rc = api.DecodeImage(ctx, o, size, Spng.FmtRgb8, 0);
                if (rc != 0) throw new DataSetException($"{name}: corrupt PNG: {api.Error(rc)}");
                // Read the chunks after the image data up to IEND: checks their CRCs (the IDAT's included).
                rc = api.DecodeChunks(ctx);
                if (rc != 0) throw new DataSetException($"{name}: corrupt PNG after the image data: {api.Error(rc)}");
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
                if ((long)w * ht > MaxJpegPixelsPerByte * data.Length)
                    throw new DataSetException($"{name}: JPEG header declares {w}×{ht} but the file has only {data.Length} bytes (at most {MaxJpegPixelsPerByte} pixels per byte)");
                int channels = colorspace == TurboJpeg.ColorspaceGray ? 1 : 3;
                int format = channels == 1 ? TurboJpeg.PixelGray : TurboJpeg.PixelRgb;
                var pixels = new byte[(long)w * ht * channels];
                int rc;
                fixed (byte* o = pixels) rc = api.Decompress2(h, buf, (nuint)data.Length, o, w, 0, ht, format, TurboJpeg.FlagStopOnWarning);
                // With TJFLAG_STOPONWARNING libjpeg's warnings (corrupt data, premature end, extraneous bytes
                // when the SOF size disagrees with the scan data) stop the decode and are errors here.
                if (rc != 0)
                    throw new DataSetException($"{name}: corrupt JPEG ({w}×{ht} declared): {api.Error(h)}");
                return new DecodedImage(pixels, w, ht, channels);
            }
        }
        finally
        {
            api.Destroy(h);
        }
    }
}
