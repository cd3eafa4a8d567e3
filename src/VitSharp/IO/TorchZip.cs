using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace VitSharp.IO;

/// <summary>One record of a zip central directory.</summary>
internal sealed record ZipRecord(string Name, int Method, long CompressedSize, long Size, long LocalHeaderOffset);

/// <summary>
/// The little of the zip format that torch.save's container needs: reading the central directory (zip64 included)
/// and locating a record's bytes, so storages are read in place; and writing STORED records aligned to 64 bytes
/// as PyTorch's <c>PyTorchStreamWriter</c> does (an "FB" extra field of 'Z' padding).
/// </summary>
internal static class TorchZip
{
    private const uint LocalSig = 0x04034b50, CentralSig = 0x02014b50, EndSig = 0x06054b50, End64Sig = 0x06064b50, End64LocatorSig = 0x07064b50;

    /// <summary>Data alignment of every record, as torch writes it (storages can be memory-mapped).</summary>
    public const int Alignment = 64;

    /// <summary>Reads the central directory; throws <see cref="TorchFileException"/> when there is none (truncated file).</summary>
    public static List<ZipRecord> ReadDirectory(string path, SafeFileHandle handle, long length)
    {
        int tailLength = (int)Math.Min(length, 22 + 65535 + 20);
        var tail = new byte[tailLength];
        ReadExactly(path, handle, tail, length - tailLength);
        int eocd = -1;
        for (int i = tailLength - 22; i >= 0; i--)
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == EndSig) { eocd = i; break; }
        if (eocd < 0) throw new TorchFileException(path, "a zip file without its end-of-central-directory record (truncated or not a zip?)");
        var e = tail.AsSpan(eocd);
        long count = BinaryPrimitives.ReadUInt16LittleEndian(e[10..]);
        long cdSize = BinaryPrimitives.ReadUInt32LittleEndian(e[12..]);
        long cdOffset = BinaryPrimitives.ReadUInt32LittleEndian(e[16..]);
        if ((count == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF) && eocd >= 20
            && BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(eocd - 20)) == End64LocatorSig)
        {
            long end64 = BinaryPrimitives.ReadInt64LittleEndian(tail.AsSpan(eocd - 20 + 8));
            if (end64 < 0 || end64 > length - 56) throw new TorchFileException(path, "zip64 end record beyond the end of the file");
            var r = new byte[56];
            ReadExactly(path, handle, r, end64);
            if (BinaryPrimitives.ReadUInt32LittleEndian(r) != End64Sig) throw new TorchFileException(path, "bad zip64 end-of-central-directory record");
            count = BinaryPrimitives.ReadInt64LittleEndian(r.AsSpan(32));
            cdSize = BinaryPrimitives.ReadInt64LittleEndian(r.AsSpan(40));
            cdOffset = BinaryPrimitives.ReadInt64LittleEndian(r.AsSpan(48));
        }
        long eocdPos = length - tailLength + eocd;
        if (cdOffset < 0 || cdSize < 0 || cdOffset > eocdPos || cdSize > eocdPos - cdOffset || cdSize > int.MaxValue)
            throw new TorchFileException(path, $"zip central directory ({cdSize} bytes at {cdOffset}) lies outside the file (truncated?)");
        if (count > cdSize / 46) throw new TorchFileException(path, $"zip declares {count} records in a {cdSize}-byte central directory");
        var cd = new byte[cdSize];
        ReadExactly(path, handle, cd, cdOffset);
        var records = new List<ZipRecord>((int)count);
        int p = 0;
        for (long i = 0; i < count; i++)
        {
            if (p + 46 > cd.Length || BinaryPrimitives.ReadUInt32LittleEndian(cd.AsSpan(p)) != CentralSig)
                throw new TorchFileException(path, $"zip central directory record {i} is malformed", offset: cdOffset + p);
            var h = cd.AsSpan(p);
            int method = BinaryPrimitives.ReadUInt16LittleEndian(h[10..]);
            long csize = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
            long usize = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
            int nameLen = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]);
            int extraLen = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
            int commentLen = BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
            long local = BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
            if (p + 46 + nameLen + extraLen + commentLen > cd.Length)
                throw new TorchFileException(path, $"zip central directory record {i} runs past the directory", offset: cdOffset + p);
            string name = Encoding.UTF8.GetString(h.Slice(46, nameLen));
            // zip64 extra field: the 64-bit values of the fields that hold 0xFFFFFFFF, in this order.
            var extra = h.Slice(46 + nameLen, extraLen);
            while (extra.Length >= 4)
            {
                int id = BinaryPrimitives.ReadUInt16LittleEndian(extra), len = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
                if (4 + len > extra.Length) break;
                if (id == 1)
                {
                    var z = extra.Slice(4, len);
                    if (usize == 0xFFFFFFFF && z.Length >= 8) { usize = BinaryPrimitives.ReadInt64LittleEndian(z); z = z[8..]; }
                    if (csize == 0xFFFFFFFF && z.Length >= 8) { csize = BinaryPrimitives.ReadInt64LittleEndian(z); z = z[8..]; }
                    if (local == 0xFFFFFFFF && z.Length >= 8) local = BinaryPrimitives.ReadInt64LittleEndian(z);
                }
                extra = extra[(4 + len)..];
            }
            records.Add(new ZipRecord(name, method, csize, usize, local));
            p += 46 + nameLen + extraLen + commentLen;
        }
        return records;
    }

    /// <summary>File offset of a record's first data byte (after its local header), checked to lie inside the file.</summary>
    public static long DataOffset(string path, SafeFileHandle handle, ZipRecord r, long length)
    {
        var h = new byte[30];
        if (r.LocalHeaderOffset < 0 || r.LocalHeaderOffset > length - 30)
            throw new TorchFileException(path, $"zip record '{TorchPickle.Printable(r.Name)}' has its header outside the file (truncated?)");
        ReadExactly(path, handle, h, r.LocalHeaderOffset);
        if (BinaryPrimitives.ReadUInt32LittleEndian(h) != LocalSig)
            throw new TorchFileException(path, $"zip record '{TorchPickle.Printable(r.Name)}' has a bad local header", offset: r.LocalHeaderOffset);
        long data = r.LocalHeaderOffset + 30 + BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(28));
        if (r.CompressedSize < 0 || data > length || r.CompressedSize > length - data)
            throw new TorchFileException(path, $"zip record '{TorchPickle.Printable(r.Name)}' ({r.CompressedSize} bytes at {data}) runs past the end of the file (truncated?)", offset: data);
        return data;
    }

    /// <summary>Reads a small record whole (stored or deflated), at most <paramref name="limit"/> bytes.</summary>
    public static byte[] ReadSmall(string path, SafeFileHandle handle, ZipRecord r, long length, long limit)
    {
        long data = DataOffset(path, handle, r, length);
        if (r.Size > limit || r.CompressedSize > limit)
            throw new TorchFileException(path, $"zip record '{TorchPickle.Printable(r.Name)}' is {r.Size} bytes (at most {limit} accepted)");
        var raw = new byte[r.CompressedSize];
        ReadExactly(path, handle, raw, data);
        if (r.Method == 0) return raw;
        if (r.Method != 8) throw new TorchFileException(path, $"zip record '{TorchPickle.Printable(r.Name)}' uses compression method {r.Method} (only stored and deflate)");
        if (r.Size > 1032 * r.CompressedSize + 64)   // deflate cannot do better than ~1032:1
            throw new TorchFileException(path, $"zip record '{TorchPickle.Printable(r.Name)}' declares {r.Size} bytes from {r.CompressedSize} compressed bytes");
        var result = new byte[r.Size];
        using var inflate = new DeflateStream(new MemoryStream(raw), CompressionMode.Decompress);
        try { inflate.ReadExactly(result); }
        catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException)
        {
            throw new TorchFileException(path, $"zip record '{TorchPickle.Printable(r.Name)}' does not inflate to its declared {r.Size} bytes");
        }
        return result;
    }

    /// <summary>Reads exactly <paramref name="destination"/>.Length bytes at <paramref name="offset"/>.</summary>
    public static void ReadExactly(string path, SafeFileHandle handle, Span<byte> destination, long offset, string? key = null)
    {
        while (!destination.IsEmpty)
        {
            int n;
            try { n = RandomAccess.Read(handle, destination, offset); }
            catch (IOException e) { throw new TorchFileException(path, $"read error at file offset {offset}: {e.Message}", key, offset, e); }
            if (n == 0) throw new TorchFileException(path, $"unexpected end of file at offset {offset} (truncated?)", key, offset);
            destination = destination[n..];
            offset += n;
        }
    }

    /// <summary>Returns the bytes of one record to write (called once, while writing).</summary>
    public delegate ReadOnlySpan<byte> Source();

    /// <summary>
    /// Writes a zip of STORED records, each record's data 64-byte aligned, to a temporary file renamed over
    /// <paramref name="path"/> when complete. Sizes and CRCs go in the local headers (no data descriptors).
    /// </summary>
    public static void Write(string path, IReadOnlyList<(string Name, Source Data)> records)
    {
        string full = Path.GetFullPath(path);
        string tmp = full + ".tmp-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                var central = new MemoryStream();
                var header = new byte[30];
                foreach (var (name, source) in records)
                {
                    var data = source();
                    byte[] nameBytes = Encoding.UTF8.GetBytes(name);
                    long offset = fs.Position;
                    int pad = (int)((Alignment - (offset + 30 + nameBytes.Length + 4) % Alignment) % Alignment);
                    uint crc = Crc32.Compute(data);
                    if (offset + data.Length >= uint.MaxValue)
                        throw new IOException($"{path}: the file would exceed 4 GiB, which needs zip64 (not written by VitSharp)");
                    Array.Clear(header);
                    var h = header.AsSpan();
                    BinaryPrimitives.WriteUInt32LittleEndian(h, LocalSig);
                    BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 20);          // version needed
                    BinaryPrimitives.WriteUInt16LittleEndian(h[6..], 0x0800);      // UTF-8 names
                    BinaryPrimitives.WriteUInt32LittleEndian(h[14..], crc);
                    BinaryPrimitives.WriteUInt32LittleEndian(h[18..], (uint)data.Length);
                    BinaryPrimitives.WriteUInt32LittleEndian(h[22..], (uint)data.Length);
                    BinaryPrimitives.WriteUInt16LittleEndian(h[26..], (ushort)nameBytes.Length);
                    BinaryPrimitives.WriteUInt16LittleEndian(h[28..], (ushort)(4 + pad));
                    fs.Write(h);
                    fs.Write(nameBytes);
                    fs.Write("FB"u8);
                    fs.WriteByte((byte)pad);
                    fs.WriteByte(0);
                    for (int i = 0; i < pad; i++) fs.WriteByte((byte)'Z');
                    fs.Write(data);

                    var c = new byte[46];
                    BinaryPrimitives.WriteUInt32LittleEndian(c, CentralSig);
                    BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(4), 20);
                    BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(6), 20);
                    BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(8), 0x0800);
                    BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(16), crc);
                    BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(20), (uint)data.Length);
                    BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(24), (uint)data.Length);
                    BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(28), (ushort)nameBytes.Length);
                    BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(42), (uint)offset);
                    central.Write(c);
                    central.Write(nameBytes);
                }
                long cdOffset = fs.Position;
                if (cdOffset > uint.MaxValue || records.Count >= 0xFFFF)
                    throw new IOException($"{path}: the file would exceed 4 GiB or 65535 records, which needs zip64 (not written by VitSharp)");
                central.WriteTo(fs);
                var end = new byte[22];
                BinaryPrimitives.WriteUInt32LittleEndian(end, EndSig);
                BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(8), (ushort)records.Count);
                BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(10), (ushort)records.Count);
                BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(12), (uint)central.Length);
                BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(16), (uint)cdOffset);
                fs.Write(end);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}

/// <summary>CRC-32 (IEEE 802.3, as zip uses), slice-by-8.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = Build();

    private static uint[] Build()
    {
        var t = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        for (int s = 1; s < 8; s++)
            for (int i = 0; i < 256; i++) t[s * 256 + i] = (t[(s - 1) * 256 + i] >> 8) ^ t[t[(s - 1) * 256 + i] & 0xFF];
        return t;
    }

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFFu;
        var t = Table;
        while (data.Length >= 8)
        {
            uint one = BinaryPrimitives.ReadUInt32LittleEndian(data) ^ crc, two = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            crc = t[7 * 256 + (one & 0xFF)] ^ t[6 * 256 + ((one >> 8) & 0xFF)] ^ t[5 * 256 + ((one >> 16) & 0xFF)] ^ t[4 * 256 + (one >> 24)]
                ^ t[3 * 256 + (two & 0xFF)] ^ t[2 * 256 + ((two >> 8) & 0xFF)] ^ t[256 + ((two >> 16) & 0xFF)] ^ t[two >> 24];
            data = data[8..];
        }
        foreach (byte b in data) crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }
}
