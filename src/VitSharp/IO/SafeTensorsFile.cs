using System.Buffers;
using System.Buffers.Binary;
using System.Collections.ObjectModel;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace VitSharp.IO;

/// <summary>
/// Read-only view of a safetensors file. <see cref="Open"/> reads and validates only the header; each read then
/// fetches just the requested tensor's bytes with positional reads, so multi-GB files are never loaded whole.
/// Reads are positional (<see cref="RandomAccess"/>), so concurrent reads from several threads are safe.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the reference implementation uses the same 100 MB limit).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private const int ChunkBytes = 1 << 16;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafeTensorInfo> _byName;
    private bool _disposed;

    /// <summary>Path the file was opened with (used in every error message).</summary>
    public string Path { get; }

    /// <summary>The header's <c>__metadata__</c> (empty if absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>All tensors, in header order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>Length in bytes of the JSON header (including any padding).</summary>
    public long HeaderLength { get; }

    /// <summary>Absolute file offset of the data buffer (8 + <see cref="HeaderLength"/>).</summary>
    public long DataStart => 8 + HeaderLength;

    /// <summary>Length in bytes of the data buffer.</summary>
    public long DataLength { get; }

    private SafeTensorsFile(string path, SafeFileHandle handle, long headerLength, long dataLength,
        List<SafeTensorInfo> tensors, Dictionary<string, SafeTensorInfo> byName, Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        HeaderLength = headerLength;
        DataLength = dataLength;
        Tensors = tensors.AsReadOnly();
        _byName = byName;
        Metadata = new ReadOnlyDictionary<string, string>(metadata);
    }

    /// <summary>Opens <paramref name="path"/> and validates its header.</summary>
    /// <exception cref="SafeTensorsException">The file is missing, unreadable or malformed.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (FileNotFoundException e) { throw new SafeTensorsException(path, "file not found", inner: e); }
        catch (DirectoryNotFoundException e) { throw new SafeTensorsException(path, "file not found", inner: e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafeTensorsException(path, "cannot open file: " + e.Message, inner: e);
        }

        try
        {
            return Parse(path, handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static SafeTensorsFile Parse(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
            throw new SafeTensorsException(path, $"file is {fileLength} bytes, too short for the 8-byte header length");

        Span<byte> lenBytes = stackalloc byte[8];
        ReadExactly(path, handle, lenBytes, 0, null);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (n > MaxHeaderLength)
            throw new SafeTensorsException(path, $"header length {n} exceeds the limit of {MaxHeaderLength} bytes", null);
        if ((long)n > fileLength - 8)
            throw new SafeTensorsException(path, $"header length {n} exceeds the file size of {fileLength} bytes (at most {fileLength - 8} available after the length prefix)");
        long headerLength = (long)n;
        long dataLength = fileLength - 8 - headerLength;

        var headerBytes = new byte[headerLength];
        ReadExactly(path, handle, headerBytes, 8, null);

        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
        {
            System.Text.Unicode.Utf8.ToUtf16(headerBytes, new char[headerBytes.Length], out int validBytes, out _, replaceInvalidSequences: false);
            throw new SafeTensorsException(path, $"header is not valid UTF-8 (invalid byte sequence at header byte {validBytes})");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            string where = e.BytePositionInLine is long b ? $" near header byte {b}" : "";
            throw new SafeTensorsException(path, $"header is not valid JSON{where}: {FirstLine(e.Message)}", inner: e);
        }

        using (doc)
        {
            try
            {
                return Build(path, handle, doc.RootElement, headerLength, dataLength);
            }
            catch (InvalidOperationException e)
            {
                // System.Text.Json throws this when a string cannot be transcoded (e.g. an escaped lone surrogate).
                throw new SafeTensorsException(path, $"header contains an invalid string: {FirstLine(e.Message)}", inner: e);
            }
        }
    }

    private static SafeTensorsFile Build(string path, SafeFileHandle handle, JsonElement root, long headerLength, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new SafeTensorsException(path, $"header JSON must be an object, got {root.ValueKind}");

        var tensors = new List<SafeTensorInfo>();
        var byName = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;

        foreach (JsonProperty prop in root.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (sawMetadata) throw new SafeTensorsException(path, "duplicate '__metadata__' entry in header");
                sawMetadata = true;
                ParseMetadata(path, prop.Value, metadata);
                continue;
            }

            if (byName.ContainsKey(prop.Name))
                throw new SafeTensorsException(path, $"duplicate tensor {SafeTensorsException.Quote(prop.Name)} in header", prop.Name);
            SafeTensorInfo info = ParseEntry(path, prop.Name, prop.Value, dataLength);
            tensors.Add(info);
            byName.Add(info.Name, info);
        }

        CheckOverlap(path, tensors, dataLength);
        return new SafeTensorsFile(path, handle, headerLength, dataLength, tensors, byName, metadata);
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafeTensorsException(path, $"'__metadata__' must be an object of strings, got {value.ValueKind}");
        foreach (JsonProperty m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new SafeTensorsException(path, $"'__metadata__' value for key {SafeTensorsException.Quote(m.Name)} must be a string, got {m.Value.ValueKind}", m.Name);
            if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                throw new SafeTensorsException(path, $"duplicate '__metadata__' key {SafeTensorsException.Quote(m.Name)}", m.Name);
        }
    }

    private static SafeTensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        string q = SafeTensorsException.Quote(name);
        SafeTensorsException Bad(string problem) => new(path, $"tensor {q} {problem}", name);

        if (e.ValueKind != JsonValueKind.Object)
            throw Bad($"header entry must be an object, got {e.ValueKind}");

        if (!e.TryGetProperty("dtype", out JsonElement dt)) throw Bad("has no 'dtype'");
        if (!e.TryGetProperty("shape", out JsonElement sh)) throw Bad("has no 'shape'");
        if (!e.TryGetProperty("data_offsets", out JsonElement off)) throw Bad("has no 'data_offsets'");

        if (dt.ValueKind != JsonValueKind.String) throw Bad($"'dtype' must be a string, got {dt.ValueKind}");
        string dtString = dt.GetString()!;
        if (!DTypeExtensions.TryParseHeaderString(dtString, out DType dtype))
            throw Bad($"has unknown dtype \"{dtString}\" (supported: {string.Join(", ", Enum.GetNames<DType>())})");

        if (sh.ValueKind != JsonValueKind.Array) throw Bad($"'shape' must be an array, got {sh.ValueKind}");
        var shape = new int[sh.GetArrayLength()];
        int i = 0;
        foreach (JsonElement d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0 || dim > int.MaxValue)
                throw Bad($"'shape' dimension {i} is not an integer in [0, {int.MaxValue}]: {d.GetRawText()}");
            shape[i++] = (int)dim;
        }

        if (off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad($"'data_offsets' must be an array [begin, end], got {off.GetRawText()}");
        JsonElement b = off[0], en = off[1];
        if (b.ValueKind != JsonValueKind.Number || en.ValueKind != JsonValueKind.Number
            || !b.TryGetInt64(out long begin) || !en.TryGetInt64(out long end))
            throw Bad($"'data_offsets' must be two integers, got {off.GetRawText()}");
        if (begin < 0 || end < 0)
            throw Bad($"has negative data_offsets [{begin}, {end})");
        if (end < begin)
            throw Bad($"has data_offsets [{begin}, {end}) with end before begin");

        long count;
        long expectedBytes;
        try
        {
            count = SafeTensorInfo.Product(shape);
            expectedBytes = checked(count * dtype.ItemSize());
        }
        catch (OverflowException)
        {
            throw Bad($"shape {FormatShape(shape)} has too many elements");
        }
        if (end - begin != expectedBytes)
            throw Bad($"data_offsets [{begin}, {end}) span {end - begin} bytes but {dtype} shape {FormatShape(shape)} needs {expectedBytes}");
        if (end > dataLength)
            throw Bad($"data_offsets [{begin}, {end}) exceed the data buffer of {dataLength} bytes (file truncated?)");

        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static void CheckOverlap(string path, List<SafeTensorInfo> tensors, long dataLength)
    {
        // As the reference implementation requires, the tensors tile the data buffer exactly: no overlap, no gap, nothing
        // after the last one. A header length one byte short (every tensor shifted by a byte) leaves a byte uncovered.
        // Zero-size tensors occupy nothing.
        var sorted = tensors.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ToList();
        long expected = 0;
        for (int i = 0; i < sorted.Count; i++)
        {
            SafeTensorInfo b = sorted[i];
            if (i > 0 && b.Begin < sorted[i - 1].End)
            {
                var a = sorted[i - 1];
                throw new SafeTensorsException(path,
                    $"tensor {SafeTensorsException.Quote(b.Name)} data_offsets [{b.Begin}, {b.End}) overlap tensor {SafeTensorsException.Quote(a.Name)} [{a.Begin}, {a.End})",
                    b.Name);
            }
            if (b.Begin != expected)
                throw new SafeTensorsException(path,
                    $"tensor {SafeTensorsException.Quote(b.Name)} data_offsets [{b.Begin}, {b.End}) leave a gap of {b.Begin - expected} bytes at data offset {expected} (the tensors must tile the data buffer)",
                    b.Name);
            expected = b.End;
        }
        if (expected != dataLength)
            throw new SafeTensorsException(path,
                $"the tensors cover {expected} bytes of the {dataLength}-byte data buffer: {dataLength - expected} bytes at data offset {expected} belong to no tensor (header length wrong or file corrupted?)");
    }

    private static string FormatShape(int[] shape) => "[" + string.Join(", ", shape) + "]";

    private static string FirstLine(string s)
    {
        int nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }

    /// <summary>True if the file has a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Header entry of tensor <paramref name="name"/>.</summary>
    /// <exception cref="SafeTensorsException">No such tensor.</exception>
    public SafeTensorInfo Info(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_byName.TryGetValue(name, out SafeTensorInfo? info)) return info;
        throw new SafeTensorsException(Path, $"no tensor {SafeTensorsException.Quote(name)} (file has {_byName.Count} tensors)", name);
    }

    /// <summary>Header entry of tensor <paramref name="name"/>, or false if absent.</summary>
    public bool TryGetInfo(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SafeTensorInfo? info) =>
        _byName.TryGetValue(name, out info);

    /// <summary>Reads tensor <paramref name="name"/> converted to float (F32 is copied bit-exactly; F16/BF16 widen
    /// exactly; F64 and 64/32-bit integers round to nearest; BOOL gives 0 or 1).</summary>
    /// <exception cref="SafeTensorsException">Unknown name, tensor too large for an array, or read failure.</exception>
    public float[] ReadFloat32(string name)
    {
        SafeTensorInfo info = Info(name);
        var result = new float[CheckedArrayLength(info)];
        ReadFloat32(info, result);
        return result;
    }

    /// <summary>Reads tensor <paramref name="name"/> converted to float into <paramref name="destination"/>,
    /// whose length must equal the tensor's element count. See <see cref="ReadFloat32(string)"/>.</summary>
    /// <exception cref="ArgumentException">Destination length differs from the element count.</exception>
    /// <exception cref="SafeTensorsException">Unknown name or read failure.</exception>
    public void ReadFloat32(string name, Span<float> destination) => ReadFloat32(Info(name), destination);

    private void ReadFloat32(SafeTensorInfo info, Span<float> destination)
    {
        CheckDestination(info, destination.Length);
        long fileOffset = DataStart + info.Begin;

        if (info.DType == DType.F32)
        {
            ReadInto(info, MemoryMarshal.AsBytes(destination), fileOffset);
            if (!BitConverter.IsLittleEndian)
            {
                Span<int> bits = MemoryMarshal.Cast<float, int>(destination);
                BinaryPrimitives.ReverseEndianness(bits, bits);
            }
            return;
        }

        ReadConverted(info, destination, fileOffset, ConvertToFloat);
    }

    /// <summary>Reads integer/bool tensor <paramref name="name"/> widened to long.</summary>
    /// <exception cref="SafeTensorsException">Unknown name, floating-point dtype, or read failure.</exception>
    public long[] ReadInt64(string name)
    {
        SafeTensorInfo info = Info(name);
        if (info.DType.IsFloatingPoint())
            throw new SafeTensorsException(Path, $"tensor {SafeTensorsException.Quote(name)} has dtype {info.DType}, expected an integer or BOOL dtype", name);
        var result = new long[CheckedArrayLength(info)];
        ReadConverted<long>(info, result, DataStart + info.Begin, ConvertToInt64);
        return result;
    }

    /// <summary>Reads the raw little-endian bytes of tensor <paramref name="name"/>.</summary>
    /// <exception cref="SafeTensorsException">Unknown name, tensor larger than 2 GB, or read failure.</exception>
    public byte[] ReadRaw(string name)
    {
        SafeTensorInfo info = Info(name);
        if (info.ByteLength > Array.MaxLength)
            throw new SafeTensorsException(Path, $"tensor {SafeTensorsException.Quote(name)} is {info.ByteLength} bytes, too large for one array", name);
        var result = new byte[info.ByteLength];
        ReadInto(info, result, DataStart + info.Begin);
        return result;
    }

    /// <summary>Reads the raw bytes of tensor <paramref name="name"/> into <paramref name="destination"/>, whose
    /// length must equal the tensor's byte length.</summary>
    public void ReadRaw(string name, Span<byte> destination)
    {
        SafeTensorInfo info = Info(name);
        if (destination.Length != info.ByteLength)
            throw new ArgumentException($"{Path}: tensor {SafeTensorsException.Quote(name)} is {info.ByteLength} bytes but the destination holds {destination.Length}", nameof(destination));
        ReadInto(info, destination, DataStart + info.Begin);
    }

    /// <summary>Closes the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _handle.Dispose();
    }

    private int CheckedArrayLength(SafeTensorInfo info)
    {
        if (info.ElementCount > Array.MaxLength)
            throw new SafeTensorsException(Path, $"tensor {SafeTensorsException.Quote(info.Name)} has {info.ElementCount} elements, too many for one array", info.Name);
        return (int)info.ElementCount;
    }

    private void CheckDestination(SafeTensorInfo info, int length)
    {
        if (length != info.ElementCount)
            throw new ArgumentException($"{Path}: tensor {SafeTensorsException.Quote(info.Name)} has {info.ElementCount} elements {info.ShapeString} but the destination holds {length}", "destination");
    }

    private delegate void Converter<T>(DType dtype, ReadOnlySpan<byte> src, Span<T> dst);

    /// <summary>Streams the tensor's bytes through a pooled buffer in whole-element chunks, converting each chunk.</summary>
    private void ReadConverted<T>(SafeTensorInfo info, Span<T> destination, long fileOffset, Converter<T> convert)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int itemSize = info.DType.ItemSize();
        long remaining = info.ByteLength;
        int chunk = (int)Math.Min(ChunkBytes / itemSize * itemSize, Math.Max(remaining, itemSize));
        byte[] buffer = ArrayPool<byte>.Shared.Rent(chunk);
        try
        {
            int element = 0;
            while (remaining > 0)
            {
                int n = (int)Math.Min(remaining, chunk);
                Span<byte> span = buffer.AsSpan(0, n);
                ReadExactly(Path, _handle, span, fileOffset, info.Name);
                int count = n / itemSize;
                convert(info.DType, span, destination.Slice(element, count));
                fileOffset += n;
                remaining -= n;
                element += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void ReadInto(SafeTensorInfo info, Span<byte> destination, long fileOffset)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ReadExactly(Path, _handle, destination, fileOffset, info.Name);
    }

    private static void ReadExactly(string path, SafeFileHandle handle, Span<byte> destination, long fileOffset, string? key)
    {
        while (!destination.IsEmpty)
        {
            int n;
            try
            {
                n = RandomAccess.Read(handle, destination, fileOffset);
            }
            catch (IOException e)
            {
                throw new SafeTensorsException(path, $"read error at file offset {fileOffset}{KeySuffix(key)}: {e.Message}", key, e);
            }
            if (n == 0)
                throw new SafeTensorsException(path, $"unexpected end of file at offset {fileOffset}{KeySuffix(key)} (file truncated?)", key);
            destination = destination[n..];
            fileOffset += n;
        }
    }

    private static string KeySuffix(string? key) => key is null ? "" : $" reading tensor {SafeTensorsException.Quote(key)}";

    internal static void ConvertToFloat(DType dtype, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (dtype)
        {
            case DType.F64:
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(src[(i * 8)..]);
                break;
            case DType.F32:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(i * 4)..]);
                break;
            case DType.F16:
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(src[(i * 2)..]);
                break;
            case DType.BF16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BFloat16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(i * 2)..]));
                break;
            case DType.I64:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt64LittleEndian(src[(i * 8)..]);
                break;
            case DType.I32:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(i * 4)..]);
                break;
            case DType.I16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt16LittleEndian(src[(i * 2)..]);
                break;
            case DType.I8:
                for (int i = 0; i < dst.Length; i++) dst[i] = (sbyte)src[i];
                break;
            case DType.U8:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i];
                break;
            case DType.BOOL:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i] != 0 ? 1f : 0f;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null);
        }
    }

    private static void ConvertToInt64(DType dtype, ReadOnlySpan<byte> src, Span<long> dst)
    {
        switch (dtype)
        {
            case DType.I64:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt64LittleEndian(src[(i * 8)..]);
                break;
            case DType.I32:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(i * 4)..]);
                break;
            case DType.I16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt16LittleEndian(src[(i * 2)..]);
                break;
            case DType.I8:
                for (int i = 0; i < dst.Length; i++) dst[i] = (sbyte)src[i];
                break;
            case DType.U8:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i];
                break;
            case DType.BOOL:
                for (int i = 0; i < dst.Length; i++) dst[i] = src[i] != 0 ? 1 : 0;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null);
        }
    }
}
