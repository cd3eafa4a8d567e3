using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;

namespace VitSharp.IO;

/// <summary>
/// A malformed, truncated, lying or unsupported <c>.npz</c> / <c>.npy</c> input. The message is one line: the file,
/// then the array (when known), then the problem with the byte offset where it applies.
/// </summary>
public sealed class NpzException : Exception
{
    /// <summary>The file (or stream name) the error concerns.</summary>
    public string FilePath { get; }

    /// <summary>The array concerned (its name in the archive, without <c>.npy</c>), if any.</summary>
    public string? ArrayName { get; }

    /// <summary>The byte offset concerned (inside the array's <c>.npy</c> entry), if any.</summary>
    public long? Offset { get; }

    /// <summary>Creates an exception whose message is "<paramref name="filePath"/>: array 'name' <paramref name="problem"/>"
    /// (or "<paramref name="filePath"/>: <paramref name="problem"/>" without an array).</summary>
    public NpzException(string filePath, string? arrayName, string problem, long? offset = null, Exception? inner = null)
        : base(OneLine(arrayName is null ? $"{filePath}: {problem}" : $"{filePath}: array {Quote(arrayName)} {problem}"), inner)
    {
        FilePath = filePath;
        ArrayName = arrayName;
        Offset = offset;
    }

    internal static string Quote(string s) => "'" + string.Concat(s.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString())) + "'";

    private static string OneLine(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n");
}

/// <summary>The header of one <c>.npy</c> array.</summary>
/// <param name="Descr">numpy's dtype string as written (e.g. <c>&lt;f4</c>, <c>|u1</c>, <c>&gt;f8</c>).</param>
/// <param name="FortranOrder">Whether the data is column-major.</param>
/// <param name="Shape">Dimensions (empty for a 0-d array).</param>
/// <param name="DataOffset">Bytes before the data (magic, version, header length, header).</param>
public sealed record NpyHeader(string Descr, bool FortranOrder, int[] Shape, long DataOffset)
{
    /// <summary>Product of <see cref="Shape"/>.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// Reads one numpy <c>.npy</c> array (format versions 1.0, 2.0 and 3.0) as float32, without Python and without pickle.
/// Supported dtypes, little- or big-endian: <c>f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1</c> (converted to float32);
/// <c>fortran_order</c> True is transposed to row-major. Object arrays (<c>|O</c>, which need pickle), structured, string,
/// complex and void dtypes are refused. The declared shape × item size must equal the bytes actually present before
/// anything of that size is allocated.
/// </summary>
public static class Npy
{
    /// <summary>The six magic bytes <c>\x93NUMPY</c>.</summary>
    public static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Largest header accepted (numpy itself refuses headers over 10 000 bytes by default).</summary>
    public const int MaxHeaderLength = 1 << 20;

    /// <summary>
    /// Reads one array from <paramref name="stream"/> (positioned at its magic string) as a float32 tensor of its shape;
    /// <paramref name="name"/> names it in errors. On a seekable stream the data must be exactly the rest of the stream;
    /// otherwise the stream is read to its end (never more than it holds is allocated) and the length checked.
    /// </summary>
    public static Tensor Read(Stream stream, string name) => Read(stream, name, name, stream.CanSeek ? stream.Length - stream.Position : null);

    /// <summary>Reads a <c>.npy</c> file.</summary>
    public static Tensor Load(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        return Read(fs, path, Path.GetFileNameWithoutExtension(path), fs.Length);
    }

    /// <summary>Reads one array whose <c>.npy</c> bytes number <paramref name="length"/> (null: unknown, read to the end).</summary>
    internal static Tensor Read(Stream stream, string file, string name, long? length)
    {
        var header = ReadHeader(stream, file, name, length);
        var (kind, size, bigEndian) = ParseDescr(header.Descr, file, name);
        long count = header.ElementCount;
        long declared = checked(count * size);
        if (count > Array.MaxLength)
            throw new NpzException(file, name, $"declares shape {ShapeString(header.Shape)}: {count} elements are more than one array can hold");

        byte[]? buffered = null;
        if (length is long total)
        {
            long present = total - header.DataOffset;
            if (present != declared)
                throw new NpzException(file, name, $"declares shape {ShapeString(header.Shape)} of {header.Descr} = {declared} bytes but {present} bytes follow its header (data at byte {header.DataOffset})", header.DataOffset);
        }
        else
        {
            // Unknown length: copy what is there (bounded by the data itself), then compare.
            using var ms = new MemoryStream();
            var chunk = new byte[1 << 16];
            int n;
            while ((n = stream.Read(chunk, 0, chunk.Length)) > 0)
            {
                ms.Write(chunk, 0, n);
                if (ms.Length > declared) break;
            }
            if (ms.Length != declared)
                throw new NpzException(file, name, $"declares shape {ShapeString(header.Shape)} of {header.Descr} = {declared} bytes but {(ms.Length > declared ? "more" : ms.Length.ToString())} bytes follow its header (data at byte {header.DataOffset})", header.DataOffset);
            buffered = ms.ToArray();
        }

        var source = buffered is null ? stream : new MemoryStream(buffered, writable: false);
        var data = new float[count];
        if (kind == 'f' && size == 4)
        {
            ReadExactly(source, MemoryMarshal.AsBytes(data.AsSpan()), file, name, header.DataOffset);
            if (bigEndian != !BitConverter.IsLittleEndian)
            {
                var bits = MemoryMarshal.Cast<float, int>(data.AsSpan());
                BinaryPrimitives.ReverseEndianness(bits, bits);
            }
        }
        else
        {
            var chunk = new byte[Math.Max(size, (1 << 16) / size * size)];
            long done = 0;
            while (done < count)
            {
                int items = (int)Math.Min(count - done, chunk.Length / size);
                var bytes = chunk.AsSpan(0, items * size);
                ReadExactly(source, bytes, file, name, header.DataOffset + done * size);
                Convert(bytes, data.AsSpan((int)done, items), kind, size, bigEndian);
                done += items;
            }
        }
        if (header.FortranOrder && header.Shape.Length > 1) data = FromFortranOrder(data, header.Shape);
        return new Tensor(data, header.Shape);
    }

    /// <summary>Reads and checks the magic, version and header dictionary.</summary>
    internal static NpyHeader ReadHeader(Stream stream, string file, string name, long? length)
    {
        Span<byte> pre = stackalloc byte[12];
        ReadExactly(stream, pre[..8], file, name, 0, "in the magic string and version");
        if (!pre[..6].SequenceEqual(Magic))
            throw new NpzException(file, name, $"is not a .npy array: bad magic bytes {System.Convert.ToHexString(pre[..6])} at byte 0 (expected 934E554D5059, \"\\x93NUMPY\")", 0);
        int major = pre[6], minor = pre[7];
        if (major is < 1 or > 3)
            throw new NpzException(file, name, $"has .npy format version {major}.{minor}; versions 1.0, 2.0 and 3.0 are supported", 6);
        long headerLength;
        int prefix;
        if (major == 1)
        {
            ReadExactly(stream, pre.Slice(8, 2), file, name, 8, "in the header length");
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(pre.Slice(8, 2));
            prefix = 10;
        }
        else
        {
            ReadExactly(stream, pre.Slice(8, 4), file, name, 8, "in the header length");
            headerLength = BinaryPrimitives.ReadUInt32LittleEndian(pre.Slice(8, 4));
            prefix = 12;
        }
        if (headerLength > MaxHeaderLength || (length is long total && prefix + headerLength > total))
            throw new NpzException(file, name, $"declares a {headerLength}-byte header at byte {prefix}, more than {(length is long t ? $"the {t - prefix} bytes that follow" : $"the {MaxHeaderLength} accepted")}", prefix);
        var raw = new byte[headerLength];
        ReadExactly(stream, raw, file, name, prefix, "in the header");
        string text = major == 3 ? Encoding.UTF8.GetString(raw) : Encoding.Latin1.GetString(raw);
        Dictionary<string, object?> dict;
        try { dict = new PyLiteral(text).ParseHeaderDict(); }
        catch (FormatException e) { throw new NpzException(file, name, $"has a malformed header at byte {prefix}: {e.Message}", prefix); }
        var keys = dict.Keys.Order(StringComparer.Ordinal).ToArray();
        if (!keys.SequenceEqual(["descr", "fortran_order", "shape"]))
            throw new NpzException(file, name, $"has header keys {string.Join(", ", keys.Select(NpzException.Quote))}; expected exactly 'descr', 'fortran_order', 'shape'", prefix);
        if (dict["descr"] is not string descr)
        {
            string got = dict["descr"] is List<object?> ? "a structured dtype (a list of fields)" : Describe(dict["descr"]);
            throw new NpzException(file, name, $"has dtype {got}; only plain numeric dtypes are supported", prefix);
        }
        if (dict["fortran_order"] is not bool fortran)
            throw new NpzException(file, name, $"has fortran_order {Describe(dict["fortran_order"])}; expected True or False", prefix);
        if (dict["shape"] is not List<object?> dims || dims.Any(d => d is not long))
            throw new NpzException(file, name, $"has shape {Describe(dict["shape"])}; expected a tuple of integers", prefix);
        var shape = new int[dims.Count];
        for (int i = 0; i < shape.Length; i++)
        {
            long d = (long)dims[i]!;
            if (d < 0 || d > int.MaxValue) throw new NpzException(file, name, $"has shape {Describe(dims)}: dimension {i} = {d} is out of range", prefix);
            shape[i] = (int)d;
        }
        return new NpyHeader(descr, fortran, shape, prefix + headerLength);
    }

    /// <summary>Splits a dtype string into (kind, item size, big-endian); throws for what cannot become float32.</summary>
    internal static (char Kind, int Size, bool BigEndian) ParseDescr(string descr, string file, string name)
    {
        string d = descr;
        char order = '=';
        if (d.Length > 0 && d[0] is '<' or '>' or '|' or '=') { order = d[0]; d = d[1..]; }
        if (d is "O" or "O8" or "O4")
            throw new NpzException(file, name, $"has dtype object ({NpzException.Quote(descr)}); object arrays are refused (they need pickle)");
        if (d.Length >= 2 && d[0] is 'f' or 'i' or 'u' or 'b' && int.TryParse(d.AsSpan(1), out int size))
        {
            bool ok = d[0] switch { 'f' => size is 2 or 4 or 8, 'i' or 'u' => size is 1 or 2 or 4 or 8, _ => size == 1 };
            if (ok) return (d[0], size, order == '>' || (order == '=' && !BitConverter.IsLittleEndian));
        }
        string hint = d switch
        {
            "V2" => " (2-byte void: bfloat16 saved by JAX? convert it to float32 first)",
            _ when d.StartsWith('c') => " (complex)",
            _ when d.StartsWith('U') || d.StartsWith('S') => " (strings)",
            _ when d.StartsWith('M') || d.StartsWith('m') => " (date/time)",
            _ => "",
        };
        throw new NpzException(file, name, $"has unsupported dtype {NpzException.Quote(descr)}{hint}; supported: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1, either byte order");
    }

    private static void Convert(ReadOnlySpan<byte> src, Span<float> dst, char kind, int size, bool bigEndian)
    {
        for (int i = 0; i < dst.Length; i++)
        {
            var b = src.Slice(i * size, size);
            dst[i] = (kind, size) switch
            {
                ('f', 2) => (float)BitConverter.UInt16BitsToHalf(bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b)),
                ('f', 8) => (float)(bigEndian ? BinaryPrimitives.ReadDoubleBigEndian(b) : BinaryPrimitives.ReadDoubleLittleEndian(b)),
                ('i', 1) => (sbyte)b[0],
                ('i', 2) => bigEndian ? BinaryPrimitives.ReadInt16BigEndian(b) : BinaryPrimitives.ReadInt16LittleEndian(b),
                ('i', 4) => bigEndian ? BinaryPrimitives.ReadInt32BigEndian(b) : BinaryPrimitives.ReadInt32LittleEndian(b),
                ('i', 8) => bigEndian ? BinaryPrimitives.ReadInt64BigEndian(b) : BinaryPrimitives.ReadInt64LittleEndian(b),
                ('u', 1) => b[0],
                ('u', 2) => bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b),
                ('u', 4) => bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt32LittleEndian(b),
                ('u', 8) => bigEndian ? BinaryPrimitives.ReadUInt64BigEndian(b) : BinaryPrimitives.ReadUInt64LittleEndian(b),
                ('b', 1) => b[0] != 0 ? 1f : 0f,
                _ => throw new InvalidOperationException($"dtype {kind}{size}"),
            };
        }
    }

    /// <summary>Column-major data of <paramref name="shape"/> → row-major.</summary>
    private static float[] FromFortranOrder(float[] src, int[] shape)
    {
        int rank = shape.Length;
        var fStride = new long[rank];
        long s = 1;
        for (int k = 0; k < rank; k++) { fStride[k] = s; s *= shape[k]; }
        var dst = new float[src.Length];
        if (dst.Length == 0) return dst;
        var idx = new int[rank];
        long off = 0;
        for (int i = 0; i < dst.Length; i++)
        {
            dst[i] = src[off];
            for (int k = rank - 1; k >= 0; k--)   // row-major increment of the multi-index
            {
                if (++idx[k] < shape[k]) { off += fStride[k]; break; }
                off -= fStride[k] * (shape[k] - 1);
                idx[k] = 0;
            }
        }
        return dst;
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer, string file, string name, long offset, string where = "in its data")
    {
        int got = 0;
        try
        {
            while (got < buffer.Length)
            {
                int n = stream.Read(buffer[got..]);
                if (n == 0) throw new NpzException(file, name, $"is truncated {where}: the data ends at byte {offset + got}, {buffer.Length - got} bytes short", offset + got);
                got += n;
            }
        }
        catch (InvalidDataException e)
        {
            throw new NpzException(file, name, $"is corrupt {where} near byte {offset + got}: {e.Message}", offset + got, e);
        }
    }

    internal static string ShapeString(int[] shape) => shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape) + ")";

    private static string Describe(object? v) => v switch
    {
        null => "None",
        string s => NpzException.Quote(s),
        bool b => b ? "True" : "False",
        List<object?> l => "(" + string.Join(", ", l.Select(Describe)) + (l.Count == 1 ? ",)" : ")"),
        _ => System.Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "?",
    };

    /// <summary>
    /// The subset of Python literals numpy writes in a header: a dict of string keys whose values are strings, True,
    /// False, None, integers, and tuples or lists of those (structured dtypes). Anything else is a FormatException.
    /// </summary>
    private sealed class PyLiteral(string text)
    {
        private int _pos;

        public Dictionary<string, object?> ParseHeaderDict()
        {
            var value = Value(0);
            SkipSpace();
            if (_pos != text.Length) throw new FormatException($"unexpected {Near()} after the dictionary");
            if (value is not Dictionary<string, object?> dict) throw new FormatException("the header is not a dictionary");
            return dict;
        }

        private object? Value(int depth)
        {
            if (depth > 16) throw new FormatException("nested too deeply");
            SkipSpace();
            if (_pos >= text.Length) throw new FormatException("unexpected end of the header");
            char c = text[_pos];
            switch (c)
            {
                case '{':
                {
                    _pos++;
                    var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
                    while (true)
                    {
                        SkipSpace();
                        if (Peek() == '}') { _pos++; return dict; }
                        if (Value(depth + 1) is not string key) throw new FormatException($"a dictionary key is not a string {Near()}");
                        SkipSpace();
                        Expect(':');
                        if (!dict.TryAdd(key, Value(depth + 1))) throw new FormatException($"duplicate key '{key}'");
                        SkipSpace();
                        if (Peek() == ',') { _pos++; continue; }
                        SkipSpace();
                        if (Peek() == '}') { _pos++; return dict; }
                        throw new FormatException($"expected ',' or '}}' {Near()}");
                    }
                }
                case '(' or '[':
                {
                    char close = c == '(' ? ')' : ']';
                    _pos++;
                    var list = new List<object?>();
                    while (true)
                    {
                        SkipSpace();
                        if (Peek() == close) { _pos++; return list; }
                        list.Add(Value(depth + 1));
                        SkipSpace();
                        if (Peek() == ',') { _pos++; continue; }
                        if (Peek() == close) { _pos++; return list; }
                        throw new FormatException($"expected ',' or '{close}' {Near()}");
                    }
                }
                case '\'' or '"':
                {
                    int end = text.IndexOf(c, _pos + 1);
                    if (end < 0) throw new FormatException("unterminated string");
                    string s = text.Substring(_pos + 1, end - _pos - 1);
                    if (s.Contains('\\')) throw new FormatException("escapes in strings are not supported");
                    _pos = end + 1;
                    return s;
                }
                default:
                {
                    int start = _pos;
                    while (_pos < text.Length && (char.IsAsciiLetterOrDigit(text[_pos]) || text[_pos] is '_' or '-' or '+')) _pos++;
                    string word = text[start.._pos];
                    if (word == "True") return true;
                    if (word == "False") return false;
                    if (word == "None") return null;
                    if (word.EndsWith('L')) word = word[..^1];    // Python 2's long literals (old numpy)
                    if (long.TryParse(word, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long v)) return v;
                    _pos = start;
                    throw new FormatException($"unexpected {Near()}");
                }
            }
        }

        private char Peek() => _pos < text.Length ? text[_pos] : '\0';

        private void Expect(char c)
        {
            if (Peek() != c) throw new FormatException($"expected '{c}' {Near()}");
            _pos++;
        }

        private void SkipSpace()
        {
            while (_pos < text.Length && char.IsWhiteSpace(text[_pos])) _pos++;
        }

        private string Near() => _pos >= text.Length ? "at the end" : $"at character {_pos} ('{text.Substring(_pos, Math.Min(12, text.Length - _pos))}')";
    }
}

/// <summary>
/// Reads numpy <c>.npz</c> archives (<c>np.savez</c> / <c>np.savez_compressed</c>: a zip of <c>.npy</c> entries, stored or
/// deflated, zip64 included) as float32 tensors, without Python and without pickle; see <see cref="Npy"/> for the dtypes.
/// </summary>
public static class Npz
{
    /// <summary>The most deflate can compress (258 bytes per 2-bit code, ~1032:1); a larger claimed ratio is a lie.</summary>
    private const long MaxDeflateRatio = 1032;

    /// <summary>
    /// Reads every array of an <c>.npz</c> file, keyed by entry name without the <c>.npy</c> suffix (as <c>np.load</c>
    /// names them). Throws <see cref="NpzException"/> naming the file, the array and the offset for a truncated or
    /// corrupt archive, a header that lies about its size, an object array or an unsupported dtype.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        ZipArchive zip;
        try { zip = new ZipArchive(fs, ZipArchiveMode.Read, leaveOpen: true); }
        catch (InvalidDataException e)
        {
            var head = new byte[6];
            fs.Position = 0;
            int n = fs.ReadAtLeast(head, 6, throwOnEndOfStream: false);
            string hint = n == 6 && head.AsSpan().SequenceEqual(Npy.Magic) ? " (it is a single .npy array: use Npy.Load)" : "";
            throw new NpzException(path, null, $"is not a readable zip archive ({e.Message}){hint}", null, e);
        }
        using (zip)
        {
            var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            System.Collections.ObjectModel.ReadOnlyCollection<System.IO.Compression.ZipArchiveEntry> entries;
            try { entries = zip.Entries; }   // the central directory is read here, on first access
            catch (InvalidDataException e) { throw new NpzException(path, null, $"has a corrupt zip central directory ({e.Message})", null, e); }
            foreach (var entry in entries)
            {
                if (entry.FullName.EndsWith('/')) continue;      // a directory
                string name = entry.FullName.EndsWith(".npy", StringComparison.Ordinal) ? entry.FullName[..^4] : entry.FullName;
                if (result.ContainsKey(name)) throw new NpzException(path, name, "appears twice in the archive");
                // The zip directory's sizes are claims too: bound them by the file and by deflate's best ratio (1032:1)
                // before the entry's length is trusted to size anything.
                if (entry.CompressedLength > fs.Length || entry.Length > entry.CompressedLength * MaxDeflateRatio + 1024)
                    throw new NpzException(path, name, $"has zip sizes that cannot be true: {entry.Length} bytes from {entry.CompressedLength} compressed bytes in a {fs.Length}-byte file");
                try
                {
                    using var s = entry.Open();
                    result[name] = Npy.Read(s, path, name, entry.Length);
                }
                catch (InvalidDataException e)
                {
                    throw new NpzException(path, name, $"cannot be read from the archive: {e.Message}", null, e);
                }
                catch (NotSupportedException e)
                {
                    throw new NpzException(path, name, $"cannot be read from the archive: {e.Message}", null, e);
                }
            }
            return result;
        }
    }

    /// <summary>Reads only the headers (name, dtype, shape) of every array, without the data.</summary>
    public static IReadOnlyList<(string Name, NpyHeader Header)> ReadHeaders(string path)
    {
        try
        {
            using var zip = ZipFile.OpenRead(path);
            var list = new List<(string, NpyHeader)>();
            foreach (var entry in zip.Entries.Where(e => !e.FullName.EndsWith('/')))
            {
                string name = entry.FullName.EndsWith(".npy", StringComparison.Ordinal) ? entry.FullName[..^4] : entry.FullName;
                using var s = entry.Open();
                list.Add((name, Npy.ReadHeader(s, path, name, entry.Length)));
            }
            return list;
        }
        catch (InvalidDataException e) { throw new NpzException(path, null, $"is not a readable zip archive ({e.Message})", null, e); }
    }
}
