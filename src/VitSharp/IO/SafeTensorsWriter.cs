using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;

namespace VitSharp.IO;

/// <summary>Writes safetensors files.</summary>
public static class SafeTensorsWriter
{
    /// <summary>One tensor to write: <paramref name="Data"/> holds the little-endian bytes, exactly
    /// product(<paramref name="Shape"/>) × item size long.</summary>
    /// <param name="Name">Tensor key (non-empty, not "__metadata__").</param>
    /// <param name="DType">Element type.</param>
    /// <param name="Shape">Dimensions (non-negative); empty for a scalar.</param>
    /// <param name="Data">Raw little-endian element bytes.</param>
    public sealed record Entry(string Name, DType DType, int[] Shape, ReadOnlyMemory<byte> Data);

    /// <summary>
    /// Writes <paramref name="entries"/> (in the given order; data laid out contiguously in that order) to
    /// <paramref name="path"/>. The header is padded with spaces so the data buffer starts 8-byte aligned. The file is
    /// written to <c>path + ".tmp"</c>, flushed, then moved over <paramref name="path"/>, so an interrupted save
    /// never leaves a partial file under the final name.
    /// </summary>
    /// <exception cref="ArgumentException">Duplicate/empty/reserved name, negative dimension, or data length mismatch.</exception>
    public static void Save(string path, IEnumerable<Entry> entries, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(entries);
        List<Entry> list = entries.ToList();
        Validate(path, list);

        byte[] header = BuildHeader(list, metadata);
        string tmp = path + ".tmp";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
                fs.Write(len);
                fs.Write(header);
                foreach (Entry e in list) fs.Write(e.Data.Span);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static void Validate(string path, List<Entry> list)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (Entry e in list)
        {
            ArgumentNullException.ThrowIfNull(e, nameof(list));
            if (string.IsNullOrEmpty(e.Name))
                throw new ArgumentException($"{path}: tensor name must be non-empty", "entries");
            if (e.Name == "__metadata__")
                throw new ArgumentException($"{path}: tensor name '__metadata__' is reserved", "entries");
            if (!names.Add(e.Name))
                throw new ArgumentException($"{path}: duplicate tensor {SafeTensorsException.Quote(e.Name)}", "entries");
            ArgumentNullException.ThrowIfNull(e.Shape, nameof(e.Shape));
            if (e.Shape.Any(d => d < 0))
                throw new ArgumentException($"{path}: tensor {SafeTensorsException.Quote(e.Name)} has a negative dimension in shape [{string.Join(", ", e.Shape)}]", "entries");
            long expected = checked(SafeTensorInfo.Product(e.Shape) * e.DType.ItemSize());
            if (e.Data.Length != expected)
                throw new ArgumentException($"{path}: tensor {SafeTensorsException.Quote(e.Name)} {e.DType} [{string.Join(", ", e.Shape)}] needs {expected} bytes but has {e.Data.Length}", "entries");
        }
    }

    private static byte[] BuildHeader(List<Entry> list, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false }))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (Entry e in list)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.DType.ToHeaderString());
                w.WriteStartArray("shape");
                foreach (int d in e.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += e.Data.Length;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int len = buffer.WrittenCount;
        int padded = (len + 7) & ~7; // 8 + padded is a multiple of 8
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(len).Fill((byte)' ');
        return header;
    }

    /// <summary>An F32 entry from <paramref name="data"/>.</summary>
    public static Entry F32(string name, int[] shape, ReadOnlySpan<float> data)
    {
        var bytes = new byte[checked(data.Length * 4)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), data[i]);
        return new Entry(name, DType.F32, shape, bytes);
    }

    /// <summary>An F16 entry from <paramref name="data"/>, each value rounded to nearest-even half precision.</summary>
    public static Entry F16(string name, int[] shape, ReadOnlySpan<float> data)
    {
        var bytes = new byte[checked(data.Length * 2)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), (Half)data[i]);
        return new Entry(name, DType.F16, shape, bytes);
    }

    /// <summary>A BF16 entry from <paramref name="data"/>, each value rounded to nearest-even bfloat16.</summary>
    public static Entry BF16(string name, int[] shape, ReadOnlySpan<float> data)
    {
        var bytes = new byte[checked(data.Length * 2)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), BFloat16.FromSingle(data[i]));
        return new Entry(name, DType.BF16, shape, bytes);
    }

    /// <summary>An F64 entry from <paramref name="data"/>.</summary>
    public static Entry F64(string name, int[] shape, ReadOnlySpan<double> data)
    {
        var bytes = new byte[checked(data.Length * 8)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * 8), data[i]);
        return new Entry(name, DType.F64, shape, bytes);
    }

    /// <summary>An I64 entry from <paramref name="data"/>.</summary>
    public static Entry I64(string name, int[] shape, ReadOnlySpan<long> data)
    {
        var bytes = new byte[checked(data.Length * 8)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i * 8), data[i]);
        return new Entry(name, DType.I64, shape, bytes);
    }

    /// <summary>An I32 entry from <paramref name="data"/>.</summary>
    public static Entry I32(string name, int[] shape, ReadOnlySpan<int> data)
    {
        var bytes = new byte[checked(data.Length * 4)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), data[i]);
        return new Entry(name, DType.I32, shape, bytes);
    }
}
