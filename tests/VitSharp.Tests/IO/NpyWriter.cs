using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace VitSharp.Tests.IO;

/// <summary>A tiny numpy .npy / .npz writer for tests (written from the format description, as np.save / np.savez write them).</summary>
internal static class NpyWriter
{
    /// <summary>One .npy file: magic, version, header dict padded with spaces to a multiple of 64 bytes, data.</summary>
    public static byte[] Npy(string descr, int[] shape, byte[] data, bool fortran = false, int version = 1, string? header = null)
    {
        string shapeText = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape) + ")";
        header ??= $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': {shapeText}, }}";
        int prefix = version == 1 ? 10 : 12;
        var enc = version == 3 ? Encoding.UTF8 : Encoding.Latin1;
        int raw = enc.GetByteCount(header) + 1;
        int padded = (prefix + raw + 63) / 64 * 64 - prefix;
        var h = enc.GetBytes(header + new string(' ', padded - raw) + "\n");
        var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)version, 0]);
        Span<byte> len = stackalloc byte[4];
        if (version == 1) { BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)h.Length); ms.Write(len[..2]); }
        else { BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)h.Length); ms.Write(len); }
        ms.Write(h);
        ms.Write(data);
        return ms.ToArray();
    }

    /// <summary>float32 little-endian .npy of a tensor.</summary>
    public static byte[] F4(Tensor t) => Npy("<f4", t.Shape, F4Bytes(t.Data));

    public static byte[] F4Bytes(float[] v, bool bigEndian = false)
    {
        var b = new byte[v.Length * 4];
        for (int i = 0; i < v.Length; i++)
            if (bigEndian) BinaryPrimitives.WriteSingleBigEndian(b.AsSpan(i * 4), v[i]); else BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * 4), v[i]);
        return b;
    }

    /// <summary>An .npz: a zip of NAME.npy entries (stored, or deflated as np.savez_compressed).</summary>
    public static void Npz(string path, IEnumerable<(string Name, byte[] Npy)> arrays, bool compressed = false)
    {
        using var fs = File.Create(path);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        foreach (var (name, npy) in arrays)
        {
            var e = zip.CreateEntry(name + ".npy", compressed ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
            using var s = e.Open();
            s.Write(npy);
        }
    }

    /// <summary>An .npz of float32 tensors.</summary>
    public static void Npz(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, bool compressed = false) =>
        Npz(path, tensors.Select(kv => (kv.Key, F4(kv.Value))), compressed);
}
