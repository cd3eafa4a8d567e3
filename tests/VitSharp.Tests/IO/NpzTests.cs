using System.Buffers.Binary;
using System.IO.Compression;
using VitSharp.IO;
using VitSharp.Tests.Data;

namespace VitSharp.Tests.IO;

/// <summary>The .npz / .npy reader: versions, dtypes, byte orders, Fortran order, compression, and bad input.</summary>
public sealed class NpzTests : IDisposable
{
    private readonly TempDir _dir = new("npz");

    public void Dispose() => _dir.Dispose();

    private static float[] Seq(int n) => Enumerable.Range(0, n).Select(i => i * 0.25f - 3f).ToArray();

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    [InlineData(1, true)]
    public void Float32ArraysRoundTripInEveryVersionStoredOrDeflated(int version, bool compressed)
    {
        string path = _dir.File($"v{version}{compressed}.npz");
        var a = Seq(24);
        NpyWriter.Npz(path, [
            ("a/b/kernel", NpyWriter.Npy("<f4", [2, 3, 4], NpyWriter.F4Bytes(a), version: version)),
            ("vec", NpyWriter.Npy("<f4", [5], NpyWriter.F4Bytes(Seq(5)), version: version)),
            ("scalar", NpyWriter.Npy("<f4", [], NpyWriter.F4Bytes([7.5f]), version: version)),
            ("empty", NpyWriter.Npy("<f4", [0, 3], [], version: version)),
        ], compressed);
        var d = Npz.Load(path);
        Assert.Equal(new[] { "a/b/kernel", "empty", "scalar", "vec" }, d.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(new[] { 2, 3, 4 }, d["a/b/kernel"].Shape);
        Assert.Equal(a, d["a/b/kernel"].Data);
        Assert.Equal(Seq(5), d["vec"].Data);
        Assert.Empty(d["scalar"].Shape);
        Assert.Equal(new[] { 7.5f }, d["scalar"].Data);
        Assert.Equal(new[] { 0, 3 }, d["empty"].Shape);
    }

    [Fact]
    public void EveryNumericDtypeAndByteOrderIsConvertedExactly()
    {
        double[] v = [-2.5, 0, 1, 3, 100.25, -7];
        long[] iv = [-2, 0, 1, 3, 100, -7];
        byte[] Enc(int size, Action<Span<byte>, int> put) { var b = new byte[v.Length * size]; for (int i = 0; i < v.Length; i++) put(b.AsSpan(i * size, size), i); return b; }
        var cases = new (string Descr, byte[] Data, float[] Expected)[]
        {
            ("<f4", Enc(4, (s, i) => BinaryPrimitives.WriteSingleLittleEndian(s, (float)v[i])), v.Select(x => (float)x).ToArray()),
            (">f4", Enc(4, (s, i) => BinaryPrimitives.WriteSingleBigEndian(s, (float)v[i])), v.Select(x => (float)x).ToArray()),
            ("<f2", Enc(2, (s, i) => BinaryPrimitives.WriteHalfLittleEndian(s, (Half)v[i])), v.Select(x => (float)(Half)x).ToArray()),
            (">f2", Enc(2, (s, i) => BinaryPrimitives.WriteHalfBigEndian(s, (Half)v[i])), v.Select(x => (float)(Half)x).ToArray()),
            ("<f8", Enc(8, (s, i) => BinaryPrimitives.WriteDoubleLittleEndian(s, v[i] + 1e-12)), v.Select(x => (float)(x + 1e-12)).ToArray()),
            (">f8", Enc(8, (s, i) => BinaryPrimitives.WriteDoubleBigEndian(s, v[i])), v.Select(x => (float)x).ToArray()),
            ("<i8", Enc(8, (s, i) => BinaryPrimitives.WriteInt64LittleEndian(s, iv[i])), iv.Select(x => (float)x).ToArray()),
            (">i8", Enc(8, (s, i) => BinaryPrimitives.WriteInt64BigEndian(s, iv[i])), iv.Select(x => (float)x).ToArray()),
            ("<i4", Enc(4, (s, i) => BinaryPrimitives.WriteInt32LittleEndian(s, (int)iv[i])), iv.Select(x => (float)x).ToArray()),
            (">i4", Enc(4, (s, i) => BinaryPrimitives.WriteInt32BigEndian(s, (int)iv[i])), iv.Select(x => (float)x).ToArray()),
            ("|i1", Enc(1, (s, i) => s[0] = (byte)(sbyte)iv[i]), iv.Select(x => (float)x).ToArray()),
            ("|u1", Enc(1, (s, i) => s[0] = (byte)(i * 50)), Enumerable.Range(0, 6).Select(i => (float)(byte)(i * 50)).ToArray()),
            ("|b1", Enc(1, (s, i) => s[0] = (byte)(i % 2)), Enumerable.Range(0, 6).Select(i => (float)(i % 2)).ToArray()),
        };
        string path = _dir.File("dtypes.npz");
        NpyWriter.Npz(path, cases.Select((c, i) => ($"x{i}", NpyWriter.Npy(c.Descr, [2, 3], c.Data))), compressed: true);
        var d = Npz.Load(path);
        for (int i = 0; i < cases.Length; i++)
        {
            Assert.Equal(new[] { 2, 3 }, d[$"x{i}"].Shape);
            Assert.True(cases[i].Expected.SequenceEqual(d[$"x{i}"].Data), $"{cases[i].Descr}: got {string.Join(", ", d[$"x{i}"].Data)}");
        }
    }

    [Fact]
    public void FortranOrderIsTransposedToRowMajor()
    {
        int[] shape = [2, 3, 4];
        var c = Seq(24);                                       // row-major values of the array
        var f = new float[24];                                 // the same array stored column-major
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    f[i + 2 * (j + 3 * k)] = c[(i * 3 + j) * 4 + k];
        var t = Npy.Read(new MemoryStream(NpyWriter.Npy("<f4", shape, NpyWriter.F4Bytes(f), fortran: true)), "f");
        Assert.Equal(shape, t.Shape);
        Assert.Equal(c, t.Data);
        var m = Npy.Read(new MemoryStream(NpyWriter.Npy(">f8", [3, 2], Enumerable.Range(0, 6).SelectMany(i => { var b = new byte[8]; BinaryPrimitives.WriteDoubleBigEndian(b, i); return b; }).ToArray(), fortran: true)), "m");
        Assert.Equal(new float[] { 0, 3, 1, 4, 2, 5 }, m.Data);   // column-major [[0,3],[1,4],[2,5]]
    }

    [Fact]
    public void NpyReadsFromANonSeekableStreamAndChecksItsLength()
    {
        var bytes = NpyWriter.Npy("<f4", [3, 2], NpyWriter.F4Bytes(Seq(6)), version: 2);
        Assert.Equal(Seq(6), Npy.Read(new NonSeekable(bytes), "s").Data);
        var e = Assert.Throws<NpzException>(() => Npy.Read(new NonSeekable(bytes[..^5]), "s"));
        Assert.Contains("array 's' declares shape (3, 2) of <f4 = 24 bytes but 19 bytes follow", e.Message);
        e = Assert.Throws<NpzException>(() => Npy.Read(new NonSeekable([.. bytes, 1, 2, 3, 4]), "s"));
        Assert.Contains("but more bytes follow", e.Message);
    }

    [Fact]
    public void TheFixtureArchiveHoldsGooglesLayout()
    {
        var d = Npz.Load(Path.Combine(TestFixtures.Dir, "pretrained", "google_vit.npz"));
        Assert.Equal(40, d.Count);
        Assert.Equal(new[] { 8, 8, 3, 48 }, d["embedding/kernel"].Shape);
        Assert.Equal(new[] { 48, 3, 16 }, d["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"].Shape);
        var headers = Npz.ReadHeaders(Path.Combine(TestFixtures.Dir, "pretrained", "google_vit.npz"));
        Assert.All(headers, h => Assert.Equal("<f4", h.Header.Descr));
    }

    // ------------------------------------------------------------------ bad input

    [Fact]
    public void ObjectArraysAreRefusedNamingTheArray()
    {
        string path = _dir.File("google_vit.npz");
        NpyWriter.Npz(path, [
            ("ok", NpyWriter.Npy("<f4", [1], NpyWriter.F4Bytes([1f]))),
            ("x", NpyWriter.Npy("|O", [2], [0x80, 0x02, 0x5d, 0x71, 0x00, 0x2e, 0, 0])),   // what a pickle would look like
        ]);
        var e = Assert.Throws<NpzException>(() => Npz.Load(path));
        Assert.Equal($"{path}: array 'x' has dtype object ('|O'); object arrays are refused (they need pickle)", e.Message);
        Assert.Equal("x", e.ArrayName);
    }

    [Theory]
    [InlineData("<c8", "complex")]
    [InlineData("<U5", "strings")]
    [InlineData("|V2", "bfloat16")]
    [InlineData("<f16", "unsupported dtype '<f16'")]
    public void UnsupportedDtypesAreNamed(string descr, string expected)
    {
        string path = _dir.File("dt.npz");
        NpyWriter.Npz(path, [("w", NpyWriter.Npy(descr, [1], new byte[16]))]);
        var e = Assert.Throws<NpzException>(() => Npz.Load(path));
        Assert.Contains($"array 'w' has unsupported dtype '{descr}'", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void StructuredDtypesAreRefused()
    {
        var bytes = NpyWriter.Npy("", [1], new byte[8], header: "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (1,), }");
        var e = Assert.Throws<NpzException>(() => Npy.Read(new MemoryStream(bytes), "rec"));
        Assert.Contains("structured dtype", e.Message);
    }

    [Fact]
    public void AHeaderThatDeclaresMoreDataThanPresentIsRefusedBeforeAllocating()
    {
        string path = _dir.File("liar.npz");
        // 10 floats present; the header claims 100 000 × 100 000 × 8 floats (320 GB): refused from the sizes, nothing allocated.
        NpyWriter.Npz(path, [("big", NpyWriter.Npy("<f4", [100_000, 100_000, 8], NpyWriter.F4Bytes(Seq(10))))], compressed: true);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<NpzException>(() => Npz.Load(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20, "allocated more than 16 MB");
        Assert.Contains("array 'big'", e.Message);
        Assert.Contains("(100000, 100000, 8)", e.Message);

        NpyWriter.Npz(path, [("m", NpyWriter.Npy("<f4", [4, 4], NpyWriter.F4Bytes(Seq(10))))]);
        e = Assert.Throws<NpzException>(() => Npz.Load(path));
        Assert.Contains("array 'm' declares shape (4, 4) of <f4 = 64 bytes but 40 bytes follow its header (data at byte 128)", e.Message);
        Assert.Equal(128, e.Offset);
    }

    [Fact]
    public void AZipDirectoryThatLiesAboutTheEntrySizeIsRefusedBeforeAllocating()
    {
        // A small deflated entry whose .npy header and whose zip directory both claim 400 MB: deflate cannot expand
        // ~1 KB that far, so the claim is refused without allocating it.
        string path = _dir.File("bomb.npz");
        var npy = NpyWriter.Npy("<f4", [1000, 1000, 100], NpyWriter.F4Bytes(Seq(64)));
        NpyWriter.Npz(path, [("w", npy)], compressed: true);
        var bytes = File.ReadAllBytes(path);
        uint claimed = (uint)(npy.Length - 256 + 400_000_000);
        for (int i = 0; i + 4 <= bytes.Length; i++)
        {
            uint sig = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i));
            if (sig == 0x04034b50) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + 22), claimed);   // local header
            if (sig == 0x02014b50) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + 24), claimed);   // central directory
        }
        File.WriteAllBytes(path, bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<NpzException>(() => Npz.Load(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20, "allocated more than 16 MB");
        Assert.Contains("array 'w' has zip sizes that cannot be true", e.Message);
    }

    [Fact]
    public void ATruncatedArchiveIsAnErrorNamingTheFile()
    {
        string path = _dir.File("t.npz");
        NpyWriter.Npz(path, [("a", NpyWriter.Npy("<f4", [64], NpyWriter.F4Bytes(Seq(64))))], compressed: true);
        var all = File.ReadAllBytes(path);
        foreach (int keep in new[] { all.Length - 10, all.Length / 2, 30, 3, 0 })
        {
            File.WriteAllBytes(path, all[..keep]);
            var e = Assert.Throws<NpzException>(() => Npz.Load(path));
            Assert.StartsWith(path + ": ", e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
    }

    [Fact]
    public void ATruncatedEntryIsAnErrorNamingTheArrayAndOffset()
    {
        // The zip's directory says 128 + 256 bytes (header, data); the entry's stream holds fewer: the reader reports where the data ends.
        var full = NpyWriter.Npy("<f4", [64], NpyWriter.F4Bytes(Seq(64)));
        Assert.Equal(128 + 256, full.Length);
        var e = Assert.Throws<NpzException>(() => Npy.Read(new TruncatedAt(full, 200), "file.npz", "a", full.Length));
        Assert.Equal("file.npz: array 'a' is truncated in its data: the data ends at byte 200, 184 bytes short", e.Message);
        Assert.Equal(200, e.Offset);
        e = Assert.Throws<NpzException>(() => Npy.Read(new TruncatedAt(full, 50), "file.npz", "a", full.Length));
        Assert.Equal("file.npz: array 'a' is truncated in the header: the data ends at byte 50, 78 bytes short", e.Message);
    }

    [Theory]
    [InlineData("NOTNPY", "bad magic bytes")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }", "expected exactly 'descr', 'fortran_order', 'shape'")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", "dimension 1 = -1 is out of range")]
    [InlineData("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", "fortran_order 0")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", "malformed header")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': __import__('os'), }", "malformed header")]
    public void MalformedHeadersAreNamed(string header, string expected)
    {
        byte[] bytes = header == "NOTNPY" ? "NOTNPY\x01\x00\x00\x00"u8.ToArray() : NpyWriter.Npy("<f4", [2], new byte[8], header: header);
        var e = Assert.Throws<NpzException>(() => Npy.Read(new MemoryStream(bytes), "h"));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("h: array 'h' ", e.Message);
    }

    [Fact]
    public void ASingleNpyGivenAsAnNpzGetsAHint()
    {
        string path = _dir.File("single.npz");
        File.WriteAllBytes(path, NpyWriter.Npy("<f4", [2], new byte[8]));
        var e = Assert.Throws<NpzException>(() => Npz.Load(path));
        Assert.Contains("use Npy.Load", e.Message);
        Assert.Equal(new float[2], Npy.Load(path).Data);
    }

    [Fact]
    public void TheCliReportsNpzErrorsAsUserErrors()
    {
        var stderr = new StringWriter();
        var report = typeof(VitSharp.Cli.CliApp).GetMethod("ReportError", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        int code = (int)report.Invoke(null, [new NpzException("w.npz", "x", "has dtype object ('|O'); object arrays are refused (they need pickle)"), stderr, false])!;
        Assert.NotEqual(0, code);
        Assert.Equal("vit: error: w.npz: array 'x' has dtype object ('|O'); object arrays are refused (they need pickle)", stderr.ToString().Trim());
    }

    private sealed class NonSeekable(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
    }

    private sealed class TruncatedAt(byte[] bytes, int end) : MemoryStream(bytes[..end])
    {
    }
}
