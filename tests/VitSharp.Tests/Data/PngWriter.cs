using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace VitSharp.Tests.Data;

/// <summary>
/// A minimal PNG writer (8-bit, filter 0 on every row, zlib via ZLibStream) used by the tests as a path
/// independent of libspng.
/// </summary>
internal static class PngWriter
{
    private static readonly uint[] CrcTable = BuildCrc();

    /// <summary>PNG bytes of an 8-bit image; colorType 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.</summary>
    public static byte[] Encode(byte[] hwc, int width, int height, byte colorType, byte[]? palette = null)
    {
        int c = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => throw new ArgumentException("color type") };
        using var png = new MemoryStream();
        png.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)height);
        ihdr[8] = 8;
        ihdr[9] = colorType;
        Chunk(png, "IHDR", ihdr);
        if (palette is not null) Chunk(png, "PLTE", palette);
        using var raw = new MemoryStream();
        using (var z = new ZLibStream(raw, CompressionLevel.Optimal, leaveOpen: true))
            for (int y = 0; y < height; y++)
            {
                z.WriteByte(0);
                z.Write(hwc, y * width * c, width * c);
            }
        Chunk(png, "IDAT", raw.ToArray());
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(len, (uint)data.Length);
        s.Write(len);
        byte[] t = Encoding.ASCII.GetBytes(type);
        s.Write(t);
        s.Write(data);
        uint crc = 0xFFFFFFFF;
        foreach (byte b in t.Concat(data)) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        BinaryPrimitives.WriteUInt32BigEndian(len, crc ^ 0xFFFFFFFF);
        s.Write(len);
    }

    /// <summary>
    /// PNG bytes from raw image data already laid out as the IHDR requires (each row: filter byte, then the
    /// packed samples; per Adam7 pass when <paramref name="interlace"/> is 1).
    /// </summary>
    public static byte[] EncodeRaw(byte[] raw, int width, int height, byte bitDepth, byte colorType, byte interlace)
    {
        using var png = new MemoryStream();
        png.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)height);
        ihdr[8] = bitDepth;
        ihdr[9] = colorType;
        ihdr[12] = interlace;
        Chunk(png, "IHDR", ihdr);
        using var z0 = new MemoryStream();
        using (var z = new ZLibStream(z0, CompressionLevel.Optimal, leaveOpen: true)) z.Write(raw);
        Chunk(png, "IDAT", z0.ToArray());
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    /// <summary>An Adam7-interlaced 8-bit PNG of <paramref name="hwc"/> (colour type 0, 2 or 6).</summary>
    public static byte[] EncodeInterlaced(byte[] hwc, int width, int height, byte colorType)
    {
        int c = colorType switch { 0 => 1, 2 => 3, 6 => 4, _ => throw new ArgumentException("color type") };
        (int X, int Y, int Dx, int Dy)[] passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];
        var raw = new List<byte>();
        foreach (var (x0, y0, dx, dy) in passes)
        {
            if (x0 >= width || y0 >= height) continue;
            for (int y = y0; y < height; y += dy)
            {
                raw.Add(0);
                for (int x = x0; x < width; x += dx)
                    for (int k = 0; k < c; k++) raw.Add(hwc[(y * width + x) * c + k]);
            }
        }
        return EncodeRaw([.. raw], width, height, 8, colorType, 1);
    }

    /// <summary>
    /// A copy of <paramref name="png"/> (as written by <see cref="Encode"/>: IHDR first) whose IHDR claims
    /// <paramref name="width"/>×<paramref name="height"/>, with the IHDR CRC recomputed so that only the size lies.
    /// </summary>
    public static byte[] WithIhdrSize(byte[] png, int width, int height)
    {
        var b = (byte[])png.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(20), (uint)height);
        uint crc = 0xFFFFFFFF;
        foreach (byte x in b.AsSpan(12, 17)) crc = CrcTable[(crc ^ x) & 0xFF] ^ (crc >> 8);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(29), crc ^ 0xFFFFFFFF);
        return b;
    }

    private static uint[] BuildCrc()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }
}
