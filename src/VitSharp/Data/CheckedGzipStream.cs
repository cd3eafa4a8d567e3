using System.Buffers.Binary;
using System.IO.Compression;

namespace VitSharp.Data;

/// <summary>
/// A read-only decompressing stream over a single-member gzip file (RFC 1952, as gzip(1) writes it) that
/// says what is wrong when the file is bad. .NET's <see cref="GZipStream"/> reports every zlib error as
/// "unsupported compression method" and silently accepts a truncated stream or trailing bytes; this stream
/// checks the header itself (magic, method 8 = deflate, reserved flags), computes the CRC-32 and length of
/// the decompressed data and, at the end, compares them with the 8-byte trailer. Every failure is a
/// one-line <see cref="DataSetException"/> naming the file: bad header, corrupt deflate data, bad CRC,
/// bad size, truncated stream or trailing garbage. A concatenation of several gzip members is reported as
/// a trailer mismatch.
/// </summary>
internal sealed class CheckedGzipStream : Stream
{
    private static readonly uint[] CrcTable = BuildCrcTable();

    private readonly string _path;
    private readonly FileStream _file;
    private readonly GZipStream _gz;
    private readonly long _fileLength;
    private readonly int _headerLength;
    private uint _crc = 0xFFFFFFFF;
    private long _length;
    private bool _verified;

    public CheckedGzipStream(FileStream file, string path)
    {
        _file = file;
        _path = path;
        _fileLength = file.Length;
        _headerLength = ParseHeader();
        file.Position = 0;
        _gz = new GZipStream(file, CompressionMode.Decompress);
    }

    /// <summary>Decompressed bytes delivered so far.</summary>
    public long DecompressedLength => _length;

    private int ParseHeader()
    {
        var h = new byte[10];
        _file.Position = 0;
        int got = _file.ReadAtLeast(h, h.Length, throwOnEndOfStream: false);
        if (got < 10) throw Fail($"truncated gzip header: file ends at offset {got}, a gzip header has at least 10 bytes");
        if (h[0] != 0x1F || h[1] != 0x8B) throw Fail($"bad gzip magic {h[0]:X2} {h[1]:X2} at offset 0: expected 1F 8B");
        if (h[2] != 8) throw Fail($"unsupported gzip compression method {h[2]} at offset 2: only 8 (deflate) exists");
        byte flags = h[3];
        if ((flags & 0xE0) != 0) throw Fail($"bad gzip header: reserved flag bits 0x{flags & 0xE0:X2} set at offset 3");
        long pos = 10;
        if ((flags & 4) != 0) // FEXTRA
        {
            Span<byte> xlen = stackalloc byte[2];
            if (_file.ReadAtLeast(xlen, 2, false) < 2) throw Fail($"truncated gzip header: extra field length at offset {pos} is missing");
            pos += 2 + BinaryPrimitives.ReadUInt16LittleEndian(xlen);
        }
        for (int bit = 8; bit <= 16; bit <<= 1) // FNAME, FCOMMENT: zero-terminated
        {
            if ((flags & bit) == 0) continue;
            _file.Position = pos;
            int b;
            do { b = _file.ReadByte(); pos++; } while (b > 0);
            if (b < 0) throw Fail($"truncated gzip header: the {(bit == 8 ? "file name" : "comment")} field runs to the end of the file");
        }
        if ((flags & 2) != 0) pos += 2; // FHCRC
        if (pos + 8 > _fileLength)
            throw Fail($"truncated gzip stream: the header ends at offset {pos} and the file at {_fileLength}, leaving no room for deflate data and the 8-byte trailer");
        return (int)Math.Min(pos, int.MaxValue);
    }

    private DataSetException Fail(string problem, Exception? inner = null) =>
        inner is null ? new DataSetException($"{_path}: {problem}") : new DataSetException($"{_path}: {problem}", inner);

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty) return 0;
        int r;
        try
        {
            r = _gz.Read(buffer);
        }
        catch (InvalidDataException e)
        {
            throw Diagnose(e);
        }
        if (r == 0)
        {
            VerifyTrailer();
            return 0;
        }
        _crc = Update(_crc, buffer[..r]);
        _length += r;
        return r;
    }

    /// <summary>CRC-32 (IEEE, reflected) over <paramref name="data"/>, slicing by 8 bytes.</summary>
    private static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        var t = CrcTable;
        while (data.Length >= 8)
        {
            uint one = BinaryPrimitives.ReadUInt32LittleEndian(data) ^ crc;
            uint two = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            crc = t[7 * 256 + (one & 0xFF)] ^ t[6 * 256 + ((one >> 8) & 0xFF)] ^ t[5 * 256 + ((one >> 16) & 0xFF)] ^ t[4 * 256 + (one >> 24)]
                ^ t[3 * 256 + (two & 0xFF)] ^ t[2 * 256 + ((two >> 8) & 0xFF)] ^ t[256 + ((two >> 16) & 0xFF)] ^ t[two >> 24];
            data = data[8..];
        }
        foreach (byte b in data) crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private (uint Crc, uint Size) Trailer(long at)
    {
        Span<byte> t = stackalloc byte[8];
        _file.Position = at;
        _file.ReadExactly(t);
        return (BinaryPrimitives.ReadUInt32LittleEndian(t), BinaryPrimitives.ReadUInt32LittleEndian(t[4..]));
    }

    private void VerifyTrailer()
    {
        if (_verified) return;
        _verified = true;
        uint crc = ~_crc, size = (uint)_length;
        var (tCrc, tSize) = Trailer(_fileLength - 8);
        if (tCrc == crc && tSize == size) return;
        // The trailer that fits the data somewhere before the end means bytes were appended after it.
        var whole = File.ReadAllBytes(_path);
        Span<byte> want = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(want, crc);
        BinaryPrimitives.WriteUInt32LittleEndian(want[4..], size);
        int at = whole.AsSpan(_headerLength).IndexOf(want);
        if (at >= 0)
        {
            long end = _headerLength + at + 8;
            throw Fail($"trailing garbage: {_fileLength - end} bytes after the gzip trailer, from offset {end} to the end of the file at {_fileLength}");
        }
        throw Fail($"truncated gzip stream: the compressed data ends at offset {_fileLength} after {_length} decompressed bytes without a matching CRC-32/size trailer (last 8 bytes say CRC {tCrc:X8}, size {tSize}; data gives CRC {crc:X8}, size {size})");
    }

    /// <summary>Works out why zlib rejected the stream: a second pass through the raw deflate data, then the trailer.</summary>
    private DataSetException Diagnose(InvalidDataException e)
    {
        uint crc = 0xFFFFFFFF;
        long n = 0;
        try
        {
            using var fs = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            fs.Position = _headerLength;
            using var d = new DeflateStream(fs, CompressionMode.Decompress);
            var buf = new byte[1 << 16];
            int r;
            while ((r = d.Read(buf)) > 0) { crc = Update(crc, buf.AsSpan(0, r)); n += r; }
        }
        catch (InvalidDataException)
        {
            return Fail($"corrupt deflate data in the gzip stream after {n} decompressed bytes (compressed data starts at offset {_headerLength})", e);
        }
        catch (IOException io)
        {
            return Fail($"read error: {io.Message}", io);
        }
        crc = ~crc;
        var (tCrc, tSize) = Trailer(_fileLength - 8);
        if (tCrc != crc)
            return Fail($"bad gzip CRC-32: the trailer at offset {_fileLength - 8} says {tCrc:X8} but the {n} decompressed bytes give {crc:X8}", e);
        if (tSize != (uint)n)
            return Fail($"bad gzip size: the trailer at offset {_fileLength - 4} says {tSize} bytes but the data decompresses to {n}", e);
        return Fail($"corrupt gzip data (zlib: {e.Message})", e);
    }

    /// <summary>Eight 256-entry tables: the byte-wise CRC-32 table, then each shifted by one more byte.</summary>
    private static uint[] BuildCrcTable()
    {
        var t = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        for (int k = 1; k < 8; k++)
            for (int i = 0; i < 256; i++)
            {
                uint prev = t[(k - 1) * 256 + i];
                t[k * 256 + i] = (prev >> 8) ^ t[prev & 0xFF];
            }
        return t;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _gz.Dispose();
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _length; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
