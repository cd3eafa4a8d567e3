using System.Buffers.Binary;
using System.IO.Compression;

namespace VitSharp.Data;

/// <summary>
/// Reads the IDX format of MNIST and Fashion-MNIST: a big-endian header (magic 0x00000803 and three
/// dimensions N, H, W for images; 0x00000801 and N for labels) followed by unsigned bytes. Files may be
/// gzip-compressed (detected by their first bytes, not by the name) or raw.
/// </summary>
public static class Idx
{
    /// <summary>Magic number of an unsigned-byte IDX file with three dimensions (images).</summary>
    public const uint ImagesMagic = 0x00000803;

    /// <summary>Magic number of an unsigned-byte IDX file with one dimension (labels).</summary>
    public const uint LabelsMagic = 0x00000801;

    /// <summary>
    /// Loads an images file and a labels file into a grey (1-channel) data set, checking magic numbers,
    /// dimensions, truncation, that both files hold the same number of items and that every label is in
    /// [0, <paramref name="numClasses"/>).
    /// </summary>
    /// <param name="imagesPath">The idx3 images file (.gz or raw).</param>
    /// <param name="labelsPath">The idx1 labels file (.gz or raw).</param>
    /// <param name="numClasses">Number of classes (labels must be below it); ignored when <paramref name="classNames"/> is given.</param>
    /// <param name="classNames">Class names; defaults to "0", "1", …</param>
    /// <exception cref="DataSetException">A file is missing, unreadable or malformed.</exception>
    public static InMemoryDataset Load(string imagesPath, string labelsPath, int numClasses = 10, IReadOnlyList<string>? classNames = null)
    {
        var (pixels, n, h, w) = ReadImages(imagesPath);
        int classes = classNames?.Count ?? numClasses;
        if (classes <= 0) throw new ArgumentOutOfRangeException(nameof(numClasses), "need at least one class");
        byte[] labels = ReadLabels(labelsPath);
        if (labels.Length != n)
            throw new DataSetException($"{labelsPath}: holds {labels.Length} labels but {imagesPath} holds {n} images");
        var ints = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (labels[i] >= classes)
                throw new DataSetException($"{labelsPath}: label {labels[i]} of item {i} at offset {8 + i} is out of range [0, {classes})");
            ints[i] = labels[i];
        }
        var names = classNames ?? Enumerable.Range(0, classes).Select(i => i.ToString()).ToArray();
        return new InMemoryDataset(pixels, ints, 1, h, w, names);
    }

    /// <summary>Reads an idx3 unsigned-byte file: the pixels (N×H×W bytes) and the three dimensions.</summary>
    /// <remarks>
    /// What is allocated is bounded by what the file can deliver, not by what its header claims: for a raw
    /// file N×H×W must fit in the bytes after the header before anything is allocated; for a .gz file
    /// (whose decompressed length is unknown up front) the pixels are read in chunks into a buffer that
    /// grows at most to twice the data actually present, so a header that lies fails when the data runs out.
    /// </remarks>
    /// <exception cref="DataSetException">The file is missing, unreadable or malformed.</exception>
    public static (byte[] Pixels, int Count, int Height, int Width) ReadImages(string path)
    {
        using var s = Open(path, out bool gz);
        Span<byte> header = stackalloc byte[16];
        ReadHeader(s, path, gz, header, ImagesMagic, 3, "IDX unsigned-byte images, 3 dimensions");
        int n = Dim(path, header, 4, "image count", allowZero: true);
        int h = Dim(path, header, 8, "height", allowZero: false);
        int w = Dim(path, header, 12, "width", allowZero: false);
        long total;
        try { total = checked((long)n * h * w); }
        catch (OverflowException) { total = long.MaxValue; }
        if (total > Array.MaxLength)
            throw new DataSetException($"{path}: header at offset 4 declares {n} images of {h}×{w} ({(total == long.MaxValue ? "overflowing" : total.ToString())} bytes), more than can be loaded at once ({Array.MaxLength} bytes)");
        var pixels = ReadBody(s, path, gz, total, 16, "pixels", $"{n} images of {h}×{w}");
        return (pixels, n, h, w);
    }

    /// <summary>Reads an idx1 unsigned-byte file (labels); allocation is bounded as in <see cref="ReadImages"/>.</summary>
    /// <exception cref="DataSetException">The file is missing, unreadable or malformed.</exception>
    public static byte[] ReadLabels(string path)
    {
        using var s = Open(path, out bool gz);
        Span<byte> header = stackalloc byte[8];
        ReadHeader(s, path, gz, header, LabelsMagic, 1, "IDX unsigned-byte labels, 1 dimension");
        int n = Dim(path, header, 4, "label count", allowZero: true);
        return ReadBody(s, path, gz, n, 8, "labels", $"{n} labels");
    }

    /// <summary>Opens a file, through <see cref="CheckedGzipStream"/> (which names what is wrong with a bad gzip file) when it starts with the gzip magic bytes 1F 8B.</summary>
    internal static Stream Open(string path, out bool gzip)
    {
        FileStream fs;
        try
        {
            fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new DataSetException(e is FileNotFoundException or DirectoryNotFoundException
                ? $"{path}: file not found" : $"{path}: cannot open: {e.Message}", e);
        }
        int b0 = fs.ReadByte(), b1 = fs.ReadByte();
        fs.Position = 0;
        gzip = b0 == 0x1F && b1 == 0x8B;
        if (!gzip) return fs;
        try
        {
            return new BufferedStream(new CheckedGzipStream(fs, path), 1 << 16);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    /// <summary>Reads until <paramref name="buffer"/> is full or the stream ends; returns the bytes read.</summary>
    internal static int ReadFully(Stream s, string path, Span<byte> buffer)
    {
        int got = 0;
        try
        {
            while (got < buffer.Length)
            {
                int r = s.Read(buffer[got..]);
                if (r == 0) break;
                got += r;
            }
        }
        catch (InvalidDataException e)
        {
            throw new DataSetException($"{path}: corrupt gzip data: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new DataSetException($"{path}: read error: {e.Message}", e);
        }
        return got;
    }

    private static string Where(bool gz) => gz ? " (in the decompressed data)" : "";

    private static void ReadHeader(Stream s, string path, bool gz, Span<byte> header, uint magic, int dims, string what)
    {
        int got = ReadFully(s, path, header);
        if (got >= 4)
        {
            uint m = BinaryPrimitives.ReadUInt32BigEndian(header);
            if (m != magic)
            {
                string detail = header[0] != 0 || header[1] != 0 ? $"the first two bytes must be 00 00, found {header[0]:X2} {header[1]:X2} at offset 0"
                    : header[2] != 0x08 ? $"data type byte 0x{header[2]:X2} at offset 2 is not 0x08 (unsigned byte)"
                    : $"{header[3]} dimensions (byte at offset 3), expected {dims}";
                throw new DataSetException($"{path}: bad magic number 0x{m:X8} at offset 0: expected 0x{magic:X8} ({what}): {detail}");
            }
        }
        if (got < header.Length)
            throw new DataSetException($"{path}: truncated at offset {got}{Where(gz)}: expected a {header.Length}-byte IDX header, file ends at {got}");
    }

    private static int Dim(string path, ReadOnlySpan<byte> header, int offset, string what, bool allowZero)
    {
        uint v = BinaryPrimitives.ReadUInt32BigEndian(header[offset..]);
        if (v > int.MaxValue || (v == 0 && !allowZero))
            throw new DataSetException($"{path}: invalid {what} {v} at offset {offset}{(v > int.MaxValue ? " (negative as a signed 32-bit integer)" : "")}");
        return (int)v;
    }

    /// <summary>First chunk (and growth step floor) when reading a body of unknown real length.</summary>
    private const int Chunk = 1 << 20;

    private static byte[] ReadBody(Stream s, string path, bool gz, long length, int start, string what, string declared)
    {
        byte[] body;
        long got;
        if (s is FileStream fs)
        {
            long left = fs.Length - start;
            if (length > left)
                throw new DataSetException(
                    $"{path}: truncated at offset {fs.Length}: header declares {declared}, expected {length} bytes of {what} from offset {start}, but only {left} bytes follow the header, file ends at {fs.Length}");
            body = new byte[length];
            got = ReadFully(s, path, body);
        }
        else
        {
            // Unknown real length: grow by doubling (never beyond the declared length) so that a lying header
            // costs at most twice the data actually present.
            body = new byte[Math.Min(length, Chunk)];
            got = 0;
            while (true)
            {
                got += ReadFully(s, path, body.AsSpan((int)got));
                if (got < body.Length || body.LongLength == length) break;
                Array.Resize(ref body, (int)Math.Min(length, Math.Max(2L * body.Length, Chunk)));
            }
        }
        if (got < length)
            throw new DataSetException(
                $"{path}: truncated at offset {start + got}{Where(gz)}: header declares {declared}, expected {length} bytes of {what} from offset {start} to {start + length}, but only {got} bytes are present, file ends at {start + got}");
        Span<byte> extra = stackalloc byte[1];
        if (ReadFully(s, path, extra) != 0)
            throw new DataSetException($"{path}: unexpected data after offset {start + length}{Where(gz)}: the header announces {declared} = {length} bytes of {what}");
        return body;
    }
}
