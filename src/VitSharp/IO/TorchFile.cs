using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace VitSharp.IO;

/// <summary>A <c>torch.save</c> file that cannot be read safely: malformed, truncated, hostile or unsupported.</summary>
public sealed class TorchFileException : Exception
{
    /// <summary>The file the error concerns.</summary>
    public string FilePath { get; }

    /// <summary>The state_dict key or storage key concerned, if any.</summary>
    public string? Key { get; }

    /// <summary>The pickle offset (for pickle errors) or file offset concerned, if any.</summary>
    public long? Offset { get; }

    /// <summary>Creates an exception whose one-line message is "<paramref name="filePath"/>: <paramref name="problem"/>".</summary>
    public TorchFileException(string filePath, string problem, string? key = null, long? offset = null, Exception? inner = null)
        : base($"{filePath}: {problem}".Replace("\r", "\\r").Replace("\n", "\\n"), inner)
    {
        FilePath = filePath;
        Key = key;
        Offset = offset;
    }
}

/// <summary>The two containers <c>torch.save</c> writes.</summary>
public enum TorchFileFormat
{
    /// <summary>torch ≥ 1.6: a zip of <c>NAME/data.pkl</c>, <c>NAME/data/KEY</c> (one record per storage), <c>NAME/version</c>.</summary>
    Zip,
    /// <summary>Before 1.6: magic, protocol and sys_info pickles, the main pickle, the storage-key list, then each storage.</summary>
    Legacy,
}

/// <summary>
/// Reads and writes PyTorch <c>torch.save</c> files (<c>.pth</c>, <c>.pt</c>, <c>.bin</c>) without Python and without
/// running anything from the file: the pickle is read by <see cref="TorchPickle"/>, which refuses every global but
/// tensors, storages and plain containers.
/// </summary>
public static class TorchFile
{
    /// <summary>Where <see cref="LoadStateDict"/> looks for the state_dict inside a checkpoint dict, in this order.</summary>
    public static readonly IReadOnlyList<string> StateDictKeys = ["model", "state_dict", "model_ema", "module"];

    /// <summary>Opens a file and unpickles its object tree; tensor data is read on demand. Dispose the result.</summary>
    /// <exception cref="TorchFileException">The file is malformed, truncated, or names a refused global.</exception>
    public static TorchArchive Open(string path) => TorchArchive.Open(path);

    /// <summary>
    /// Reads the state_dict of a <c>torch.save</c> file as float32 tensors (float16, bfloat16, float64 and integer
    /// tensors converted, as <see cref="Weights.Load"/> does for safetensors).
    /// </summary>
    /// <remarks>
    /// The state_dict is the top-level dict if any of its values is a tensor; otherwise the first of
    /// <see cref="StateDictKeys"/> (<c>model</c>, <c>state_dict</c>, <c>model_ema</c>, <c>module</c>) that the
    /// top-level dict holds as a dict. Non-tensor values inside it are skipped; a <c>module.</c> prefix present on
    /// every key (DataParallel) is removed. Either the whole dictionary is returned or an exception is thrown.
    /// </remarks>
    /// <exception cref="TorchFileException">The file is malformed or hostile, or holds no state_dict.</exception>
    public static Dictionary<string, Tensor> LoadStateDict(string path)
    {
        using var archive = TorchArchive.Open(path);
        return archive.LoadStateDict();
    }

    /// <summary>
    /// Writes float32 tensors as <c>torch.save(OrderedDict)</c> would (zip format, pickle protocol 2, one storage per
    /// tensor) to a temporary file renamed over <paramref name="path"/>. <c>torch.load</c> reads the result.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> stateDict) =>
        Save(path, stateDict.Select(kv => TorchSaveEntry.Contiguous(kv.Key, TorchStorageData.FromFloats(kv.Value.Data), kv.Value.Shape)));

    /// <summary>
    /// Writes tensors of any supported dtype, possibly views (offset, strides) of shared storages: entries whose
    /// <see cref="TorchSaveEntry.Storage"/> is the same object share one storage in the file.
    /// </summary>
    /// <exception cref="ArgumentException">Duplicate keys, a storage whose bytes are not whole elements, or a view outside its storage.</exception>
    public static void Save(string path, IEnumerable<TorchSaveEntry> entries) => Save(path, entries, validate: true);

    /// <summary>Writes entries; with <paramref name="validate"/> false (tests only) hostile views are written as given.</summary>
    internal static void Save(string path, IEnumerable<TorchSaveEntry> entries, bool validate)
    {
        var list = entries.ToList();
        var keys = new Dictionary<TorchStorageData, string>(ReferenceEqualityComparer.Instance);
        foreach (var e in list)
            if (!keys.ContainsKey(e.Storage)) keys[e.Storage] = keys.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (validate)
        {
            var seen = new HashSet<string>();
            foreach (var e in list)
            {
                if (!seen.Add(e.Key)) throw new ArgumentException($"duplicate key '{e.Key}'");
                if (e.Storage.Bytes.Length % e.Storage.DType.ItemSize() != 0)
                    throw new ArgumentException($"'{e.Key}': storage of {e.Storage.Bytes.Length} bytes is not whole {e.Storage.DType} elements");
                if (e.Size.Length != e.Stride.Length) throw new ArgumentException($"'{e.Key}': {e.Size.Length} sizes but {e.Stride.Length} strides");
                var problem = e.ToRef(keys[e.Storage]).CheckBounds();
                if (problem is not null) throw new ArgumentException($"'{e.Key}': {problem}");
            }
        }
        var pickle = new PickleWriter();
        pickle.OrderedDictOfTensors(list.Select(e => (e.Key, keys[e.Storage], e)).ToList());
        WriteZip(path, pickle.ToArray(), keys.Select(kv => (kv.Value, (TorchZip.Source)(() => kv.Key.Bytes))).ToList());
    }

    /// <summary>Writes a zip-format file from a raw pickle and storages (tests use it for hand-made pickles).</summary>
    internal static void WriteZip(string path, byte[] pickle, IReadOnlyList<(string Key, TorchZip.Source Data)> storages, string prefix = "archive")
    {
        var records = new List<(string, TorchZip.Source)> { ($"{prefix}/data.pkl", () => pickle), ($"{prefix}/byteorder", () => "little"u8) };
        records.AddRange(storages.Select(s => ($"{prefix}/data/{s.Key}", s.Data)));
        records.Add(($"{prefix}/version", () => "3\n"u8));
        TorchZip.Write(path, records);
    }
}

/// <summary>The bytes of one storage to write with <see cref="TorchFile.Save(string, IEnumerable{TorchSaveEntry})"/>.</summary>
public sealed class TorchStorageData
{
    private readonly Array _array;

    private TorchStorageData(DType dtype, Array array) { DType = dtype; _array = array; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>The storage's bytes (little-endian).</summary>
    public ReadOnlySpan<byte> Bytes => _array switch
    {
        float[] f => MemoryMarshal.AsBytes(f.AsSpan()),
        long[] l => MemoryMarshal.AsBytes(l.AsSpan()),
        _ => (byte[])_array,
    };

    /// <summary>Raw little-endian bytes of <paramref name="dtype"/> elements (not copied).</summary>
    public static TorchStorageData FromBytes(DType dtype, byte[] bytes) => new(dtype, bytes);

    /// <summary>float32 elements (not copied).</summary>
    public static TorchStorageData FromFloats(float[] data) => new(DType.F32, data);

    /// <summary>int64 elements (not copied).</summary>
    public static TorchStorageData FromInt64(long[] data) => new(DType.I64, data);

    /// <summary>float32 values rounded to float16 (or bfloat16 when <paramref name="bfloat16"/>).</summary>
    public static TorchStorageData FromFloatsAsHalf(ReadOnlySpan<float> data, bool bfloat16 = false)
    {
        var b = new byte[data.Length * 2];
        for (int i = 0; i < data.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2 * i), bfloat16 ? BFloat16.FromSingle(data[i]) : BitConverter.HalfToUInt16Bits((Half)data[i]));
        return new(bfloat16 ? DType.BF16 : DType.F16, b);
    }
}

/// <summary>One tensor to write: a view of a storage (offset, sizes and strides in elements).</summary>
/// <param name="Key">state_dict key.</param>
/// <param name="Storage">Its storage; entries with the same object share it.</param>
/// <param name="StorageOffset">First element's index in the storage.</param>
/// <param name="Size">Dimensions (empty: 0-dim).</param>
/// <param name="Stride">Strides in elements.</param>
public sealed record TorchSaveEntry(string Key, TorchStorageData Storage, long StorageOffset, long[] Size, long[] Stride)
{
    /// <summary>A row-major tensor covering its storage from offset 0.</summary>
    public static TorchSaveEntry Contiguous(string key, TorchStorageData storage, params int[] shape)
    {
        var size = shape.Select(d => (long)d).ToArray();
        var stride = new long[size.Length];
        long s = 1;
        for (int d = size.Length - 1; d >= 0; d--) { stride[d] = s; s *= size[d]; }
        return new TorchSaveEntry(key, storage, 0, size, stride);
    }

    internal TorchTensorRef ToRef(string storageKey) =>
        new(new TorchStorageRef(storageKey, Storage.DType, Storage.Bytes.Length / Storage.DType.ItemSize(), "cpu"), StorageOffset, Size, Stride);
}

/// <summary>
/// An opened <c>torch.save</c> file: its unpickled object tree (<see cref="Root"/>) and its storages, read on demand
/// by seeking (the file is never loaded whole). Not thread-safe.
/// </summary>
public sealed class TorchArchive : IDisposable
{
    private const long MaxPickleBytes = 1L << 30;
    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, long> _storageOffsets;   // file offset of each storage's first byte
    private readonly Dictionary<string, float[]> _storageCache = new();
    private bool _disposed;

    private TorchArchive(string path, TorchFileFormat format, SafeFileHandle handle, object? root,
        IReadOnlyDictionary<string, TorchStorageRef> storages, Dictionary<string, long> offsets)
    {
        Path = path; Format = format; _handle = handle; Root = root; Storages = storages; _storageOffsets = offsets;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Zip (torch ≥ 1.6) or legacy.</summary>
    public TorchFileFormat Format { get; }

    /// <summary>The unpickled object: <see cref="PickleDict"/>, lists, tuples (<c>object?[]</c>), numbers, strings,
    /// <see cref="TorchTensorRef"/>s… (see <see cref="TorchPickle"/>).</summary>
    public object? Root { get; }

    /// <summary>Every storage the pickle names, by key; each was checked to have its bytes in the file.</summary>
    public IReadOnlyDictionary<string, TorchStorageRef> Storages { get; }

    /// <summary>Opens and checks a file (see <see cref="TorchFile.Open"/>).</summary>
    public static TorchArchive Open(string path)
    {
        SafeFileHandle handle;
        try { handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TorchFileException(path, e.Message, inner: e);
        }
        try
        {
            long length = RandomAccess.GetLength(handle);
            Span<byte> magic = stackalloc byte[4];
            int got = length >= 4 ? RandomAccess.Read(handle, magic, 0) : 0;
            if (got == 4 && magic.SequenceEqual("PK\x03\x04"u8)) return OpenZip(path, handle, length);
            if (got >= 1 && magic[0] == 0x80) return OpenLegacy(path, handle, length);
            throw new TorchFileException(path, $"neither a zip-format nor a legacy torch.save file (starts with {Convert.ToHexString(magic[..got])})");
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static TorchArchive OpenZip(string path, SafeFileHandle handle, long length)
    {
        var records = TorchZip.ReadDirectory(path, handle, length);
        var byName = new Dictionary<string, ZipRecord>();
        foreach (var r in records) byName.TryAdd(r.Name, r);
        var pkl = records.FirstOrDefault(r => r.Name.EndsWith("/data.pkl", StringComparison.Ordinal) && r.Name.IndexOf('/') == r.Name.Length - 9)
            ?? throw new TorchFileException(path, "a zip without a NAME/data.pkl record: not a torch.save file");
        string prefix = pkl.Name[..^"data.pkl".Length];
        if (byName.TryGetValue(prefix + "byteorder", out var bo))
        {
            string order = Encoding.ASCII.GetString(TorchZip.ReadSmall(path, handle, bo, length, 64)).Trim();
            if (order != "little") throw new TorchFileException(path, $"byteorder '{TorchPickle.Printable(order)}' is not supported (only little-endian)");
        }
        var pickle = new TorchPickle(path);
        object? root = pickle.LoadOne(new MemoryStream(TorchZip.ReadSmall(path, handle, pkl, length, MaxPickleBytes), writable: false));
        var offsets = new Dictionary<string, long>();
        foreach (var (key, storage) in pickle.Storages)
        {
            if (!byName.TryGetValue(prefix + "data/" + key, out var rec))
                throw new TorchFileException(path, $"storage '{TorchPickle.Printable(key)}' has no record {prefix}data/{TorchPickle.Printable(key)}", key);
            if (rec.Method != 0)
                throw new TorchFileException(path, $"storage '{TorchPickle.Printable(key)}' is compressed (zip method {rec.Method}); torch.save stores storages uncompressed", key);
            long data = TorchZip.DataOffset(path, handle, rec, length);
            CheckStorageLength(path, storage, rec.Size);
            offsets[key] = data;
        }
        return new TorchArchive(path, TorchFileFormat.Zip, handle, root, pickle.Storages, offsets);
    }

    private static readonly BigInteger LegacyMagic = BigInteger.Parse("1950a86a20f9469cfc6c", System.Globalization.NumberStyles.HexNumber);

    private static TorchArchive OpenLegacy(string path, SafeFileHandle handle, long length)
    {
        var pickle = new TorchPickle(path);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        if (fs.Length != length) throw new TorchFileException(path, "the file changed while being opened");
        if (pickle.LoadOne(fs) is not BigInteger magic || magic != LegacyMagic)
            throw new TorchFileException(path, "neither a zip-format nor a legacy torch.save file (a pickle without torch's magic number)");
        if (pickle.LoadOne(fs) is not 1001L)
            throw new TorchFileException(path, "legacy torch.save file with an unsupported protocol version (1001 expected)");
        if (pickle.LoadOne(fs) is PickleDict sysInfo && sysInfo.TryGetValue("little_endian", out var le) && le is false)
            throw new TorchFileException(path, "big-endian legacy file (only little-endian is supported)");
        object? root = pickle.LoadOne(fs);
        if (pickle.LoadOne(fs) is not List<object?> keys)
            throw new TorchFileException(path, "legacy torch.save file without its storage-key list");
        var offsets = new Dictionary<string, long>();
        long pos = fs.Position;
        Span<byte> count = stackalloc byte[8];
        foreach (var k in keys)
        {
            if (k is not string key || !pickle.Storages.TryGetValue(key, out var storage))
                throw new TorchFileException(path, $"legacy storage list names {TorchPickle.Describe(k)}, which no tensor uses", k as string);
            if (offsets.ContainsKey(key)) throw new TorchFileException(path, $"legacy storage list names '{TorchPickle.Printable(key)}' twice", key);
            if (pos > length - 8) throw new TorchFileException(path, $"storage '{TorchPickle.Printable(key)}' lies beyond the end of the file (truncated?)", key, pos);
            TorchZip.ReadExactly(path, handle, count, pos, key);
            long n = BinaryPrimitives.ReadInt64LittleEndian(count);
            if (n != storage.ElementCount)
                throw new TorchFileException(path, $"storage '{TorchPickle.Printable(key)}' holds {n} elements but its tensors declare {storage.ElementCount}", key, pos);
            CheckStorageLength(path, storage, length - pos - 8);
            offsets[key] = pos + 8;
            pos += 8 + storage.ByteLength;
        }
        var missing = pickle.Storages.Keys.FirstOrDefault(k => !offsets.ContainsKey(k));
        if (missing is not null) throw new TorchFileException(path, $"storage '{TorchPickle.Printable(missing)}' is not in the legacy storage list", missing);
        return new TorchArchive(path, TorchFileFormat.Legacy, handle, root, pickle.Storages, offsets);
    }

    private static void CheckStorageLength(string path, TorchStorageRef storage, long available)
    {
        long need;
        try { need = checked(storage.ElementCount * storage.DType.ItemSize()); }
        catch (OverflowException) { need = long.MaxValue; }
        if (need > available)
            throw new TorchFileException(path, $"storage '{TorchPickle.Printable(storage.Key)}' has {available} bytes but declares {storage.ElementCount} {storage.DType} elements ({need} bytes)", storage.Key);
    }

    /// <summary>
    /// Finds the state_dict (see <see cref="TorchFile.LoadStateDict"/>): the top-level dict if it holds a tensor, else the
    /// first of <see cref="TorchFile.StateDictKeys"/> that it holds as a dict. <paramref name="under"/> is that key, or null.
    /// </summary>
    public PickleDict FindStateDict(out string? under)
    {
        under = null;
        if (Root is not PickleDict root) throw new TorchFileException(Path, $"the file holds {TorchPickle.Describe(Root)}, not a dict");
        if (root.Count == 0 || root.Any(kv => kv.Value is TorchTensorRef)) return root;
        foreach (var name in TorchFile.StateDictKeys)
            if (root.TryGetValue(name, out var v) && v is PickleDict sd) { under = name; return sd; }
        string keys = string.Join(", ", root.Keys.Take(10).Select(TorchPickle.Describe));
        throw new TorchFileException(Path, $"no state_dict: the top-level dict holds no tensor and no dict under {string.Join(", ", TorchFile.StateDictKeys.Select(k => "'" + k + "'"))} (keys: {keys})");
    }

    /// <summary>Reads the state_dict as float32 tensors (see <see cref="TorchFile.LoadStateDict"/>).</summary>
    public Dictionary<string, Tensor> LoadStateDict()
    {
        var dict = FindStateDict(out _);
        var tensors = new List<(string Key, TorchTensorRef Ref)>();
        foreach (var (k, v) in dict)
        {
            if (v is not TorchTensorRef t) continue;
            if (k is not string key) throw new TorchFileException(Path, $"state_dict key {TorchPickle.Describe(k)} is not a string");
            tensors.Add((key, t));
        }
        if (tensors.Count > 0 && tensors.All(t => t.Key.StartsWith("module.", StringComparison.Ordinal)))
            tensors = tensors.Select(t => (t.Key["module.".Length..], t.Ref)).ToList();
        // Views may share storage, but a small file must not expand into a huge allocation (e.g. thousands of tensors
        // viewing one big storage, or stride-0 broadcasts): the tensors may hold at most 4× the storages' elements.
        long stored = Storages.Values.Sum(s => s.ElementCount), limit = 4 * stored + (1L << 24), total = 0;
        foreach (var (key, t) in tensors)
        {
            if (t.CheckBounds() is { } problem) throw new TorchFileException(Path, $"tensor {Name(key)}: {problem}", key);
            if (t.ElementCount > limit - total)
                throw new TorchFileException(Path, $"the state_dict's tensors hold more than {limit} elements, over 4× the {stored} its storages hold (views repeating data)", key);
            total += t.ElementCount;
        }
        var result = new Dictionary<string, Tensor>(tensors.Count);
        try
        {
            foreach (var (key, t) in tensors) result[key] = ReadTensor(t, key);
        }
        finally { _storageCache.Clear(); }
        return result;
    }

    /// <summary>Reads one tensor as a float32 <see cref="Tensor"/> of the same shape.</summary>
    public Tensor ReadTensor(TorchTensorRef tensor, string? key = null)
    {
        var shape = new int[tensor.Size.Length];
        for (int d = 0; d < shape.Length; d++)
            shape[d] = tensor.Size[d] <= int.MaxValue ? (int)tensor.Size[d]
                : throw new TorchFileException(Path, $"tensor {Name(key)} {tensor.ShapeString} is too large for a VitSharp tensor", key);
        return new Tensor(ReadFloat32(tensor, key), shape);
    }

    /// <summary>Reads a tensor's elements (row-major, converted to float32).</summary>
    public float[] ReadFloat32(TorchTensorRef tensor) => ReadFloat32(tensor, null);

    private float[] ReadFloat32(TorchTensorRef tensor, string? key)
    {
        long n = tensor.ElementCount;
        if (n > Array.MaxLength) throw new TorchFileException(Path, $"tensor {Name(key)} {tensor.ShapeString} is too large for a VitSharp tensor", key);
        var result = new float[n];
        ReadFloat32(tensor, result, key);
        return result;
    }

    /// <summary>
    /// Reads a tensor's elements into <paramref name="destination"/> (length = element count). A contiguous tensor is
    /// read straight from its byte range into the destination; a strided view gathers from its whole storage, which
    /// is read once and kept until <see cref="Dispose"/> (or the end of <see cref="LoadStateDict"/>).
    /// </summary>
    public void ReadFloat32(TorchTensorRef tensor, Span<float> destination, string? key = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (destination.Length != tensor.ElementCount)
            throw new ArgumentException($"destination has {destination.Length} elements, the tensor {tensor.ElementCount}", nameof(destination));
        if (!_storageOffsets.TryGetValue(tensor.StorageKey, out long fileOffset) || Storages[tensor.StorageKey] != tensor.Storage)
            throw new ArgumentException("the tensor is not from this file", nameof(tensor));
        var problem = tensor.CheckBounds();
        if (problem is not null) throw new TorchFileException(Path, $"tensor {Name(key)}: {problem}", key);
        if (destination.IsEmpty) return;
        if (tensor.IsContiguous)
        {
            ReadRange(tensor.Storage, fileOffset, tensor.StorageOffset, destination, key);
            return;
        }
        if (!_storageCache.TryGetValue(tensor.StorageKey, out var storage))
        {
            if (tensor.Storage.ElementCount > Array.MaxLength)
                throw new TorchFileException(Path, $"storage '{TorchPickle.Printable(tensor.StorageKey)}' is too large to gather a view from", key);
            storage = new float[tensor.Storage.ElementCount];
            ReadRange(tensor.Storage, fileOffset, 0, storage, key);
            _storageCache[tensor.StorageKey] = storage;
        }
        Gather(storage, tensor, destination);
    }

    private static void Gather(float[] storage, TorchTensorRef t, Span<float> dst)
    {
        int rank = t.Size.Length;
        var index = new long[rank];
        long src = t.StorageOffset;
        for (int i = 0; i < dst.Length; i++)
        {
            dst[i] = storage[src];
            for (int d = rank - 1; d >= 0; d--)
            {
                src += t.Stride[d];
                if (++index[d] < t.Size[d]) break;
                src -= t.Stride[d] * t.Size[d];
                index[d] = 0;
            }
        }
    }

    /// <summary>Reads elements [first, first + dst.Length) of a storage, converting to float32 in bounded chunks.</summary>
    private void ReadRange(TorchStorageRef storage, long storageFileOffset, long first, Span<float> dst, string? key)
    {
        int item = storage.DType.ItemSize();
        long offset = storageFileOffset + first * item;
        if (storage.DType == DType.F32 && BitConverter.IsLittleEndian)
        {
            TorchZip.ReadExactly(Path, _handle, MemoryMarshal.AsBytes(dst), offset, key);
            return;
        }
        const int ChunkElements = 1 << 16;
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkElements * 8);
        try
        {
            while (!dst.IsEmpty)
            {
                int n = Math.Min(dst.Length, ChunkElements);
                var bytes = buffer.AsSpan(0, n * item);
                TorchZip.ReadExactly(Path, _handle, bytes, offset, key);
                SafeTensorsFile.ConvertToFloat(storage.DType, bytes, dst[..n]);
                offset += bytes.Length;
                dst = dst[n..];
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    private static string Name(string? key) => key is null ? "" : "'" + TorchPickle.Printable(key) + "'";

    /// <summary>Closes the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _storageCache.Clear();
        _handle.Dispose();
    }
}

/// <summary>Writes the protocol-2 pickle of an OrderedDict of tensors, as torch.save does.</summary>
internal sealed class PickleWriter
{
    private readonly MemoryStream _s = new();
    private readonly Dictionary<string, int> _memo = new();

    public byte[] ToArray() => _s.ToArray();

    public void OrderedDictOfTensors(IReadOnlyList<(string Key, string StorageKey, TorchSaveEntry Entry)> items)
    {
        _s.Write([0x80, 2]);
        Global("collections", "OrderedDict"); Op(')'); Op('R');
        for (int start = 0; start < items.Count; start += 1000)
        {
            Op('(');
            foreach (var (key, storageKey, e) in items.Skip(start).Take(1000))
            {
                Str(key);
                Global("torch._utils", "_rebuild_tensor_v2");
                Op('(');
                Op('('); Str("storage"); Global("torch", StorageTypeName(e.Storage.DType)); Str(storageKey); Str("cpu");
                Int(e.Storage.Bytes.Length / e.Storage.DType.ItemSize()); Op('t'); Op('Q');
                Int(e.StorageOffset);
                Op('('); foreach (var d in e.Size) Int(d); Op('t');
                Op('('); foreach (var d in e.Stride) Int(d); Op('t');
                Op(0x89);
                Global("collections", "OrderedDict"); Op(')'); Op('R');
                Op('t'); Op('R');
            }
            Op('u');
        }
        Op('.');
    }

    internal static string StorageTypeName(DType dtype) => TorchPickle.StorageTypes.First(kv => kv.Value == dtype).Key;

    private void Op(int code) => _s.WriteByte((byte)code);

    private void Global(string module, string name)
    {
        string full = module + "\n" + name + "\n";
        if (_memo.TryGetValue(full, out int i))
        {
            if (i < 256) { Op('h'); Op(i); }
            else { Op('j'); Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, i); _s.Write(b); }
            return;
        }
        Op('c');
        _s.Write(Encoding.ASCII.GetBytes(full));
        i = _memo.Count;
        _memo[full] = i;
        if (i < 256) { Op('q'); Op(i); }
        else { Op('r'); Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, i); _s.Write(b); }
    }

    private void Str(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        Op('X');
        Span<byte> n = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(n, b.Length);
        _s.Write(n);
        _s.Write(b);
    }

    private void Int(long v)
    {
        Span<byte> b = stackalloc byte[8];
        if (v is >= 0 and < 256) { Op('K'); Op((int)v); }
        else if (v is >= int.MinValue and <= int.MaxValue) { Op('J'); BinaryPrimitives.WriteInt32LittleEndian(b, (int)v); _s.Write(b[..4]); }
        else { Op(0x8a); Op(8); BinaryPrimitives.WriteInt64LittleEndian(b, v); _s.Write(b); }
    }
}
