using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using VitSharp.IO;

namespace VitSharp.Tests.IO;

public sealed class SafeTensorsTests : IDisposable
{
    private static string FixtureDir => TestFixtures.Dir;
    private readonly string _dir;

    public SafeTensorsTests()
    {
        _dir = Path.Combine(Path.GetTempPath(), "vitsharp-st-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string TempPath(string name) => Path.Combine(_dir, name);

    /// <summary>Writes a file made of an explicit header length, header text and data bytes.</summary>
    private string WriteRaw(string name, string header, byte[] data, ulong? headerLength = null)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        string path = TempPath(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ---------------------------------------------------------------- round trips

    public static TheoryData<DType, int[]> DTypesAndShapes()
    {
        var data = new TheoryData<DType, int[]>();
        int[][] shapes = [[], [0, 3], [1], [7], [2, 3, 4], [1, 1, 1, 1], [3, 0]];
        foreach (DType t in new[] { DType.F32, DType.F16, DType.BF16, DType.F64, DType.I64, DType.I32 })
            foreach (int[] s in shapes)
                data.Add(t, s);
        return data;
    }

    private static int Count(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    /// <summary>Values exactly representable in every float dtype (small multiples of 0.25, within bf16 precision).</summary>
    private static float[] ExactFloats(int n) => Enumerable.Range(0, n).Select(i => (i % 17 - 8) * 0.25f).ToArray();

    private static SafeTensorsWriter.Entry MakeEntry(string name, DType dtype, int[] shape)
    {
        int n = Count(shape);
        float[] f = ExactFloats(n);
        return dtype switch
        {
            DType.F32 => SafeTensorsWriter.F32(name, shape, f),
            DType.F16 => SafeTensorsWriter.F16(name, shape, f),
            DType.BF16 => SafeTensorsWriter.BF16(name, shape, f),
            DType.F64 => SafeTensorsWriter.F64(name, shape, f.Select(x => (double)x).ToArray()),
            DType.I64 => SafeTensorsWriter.I64(name, shape, f.Select(x => (long)(x * 4)).ToArray()),
            DType.I32 => SafeTensorsWriter.I32(name, shape, f.Select(x => (int)(x * 4)).ToArray()),
            _ => throw new NotSupportedException(),
        };
    }

    [Theory]
    [MemberData(nameof(DTypesAndShapes))]
    public void RoundTrip_PreservesDTypeShapeBytesAndValues(DType dtype, int[] shape)
    {
        string path = TempPath("rt.safetensors");
        SafeTensorsWriter.Entry entry = MakeEntry("t", dtype, shape);
        SafeTensorsWriter.Save(path, [entry]);

        using var f = SafeTensorsFile.Open(path);
        SafeTensorInfo info = Assert.Single(f.Tensors);
        Assert.Equal("t", info.Name);
        Assert.Equal(dtype, info.DType);
        Assert.Equal(shape, info.Shape);
        Assert.Equal(Count(shape), info.ElementCount);
        Assert.Equal(entry.Data.ToArray(), f.ReadRaw("t"));

        float[] expected = ExactFloats(Count(shape));
        if (dtype is DType.I64 or DType.I32)
        {
            Assert.Equal(expected.Select(x => (long)(x * 4)).ToArray(), f.ReadInt64("t"));
            Assert.Equal(expected.Select(x => (float)(long)(x * 4)).ToArray(), f.ReadFloat32("t"));
        }
        else
        {
            Assert.Equal(expected, f.ReadFloat32("t"));
        }
    }

    [Fact]
    public void RoundTrip_ScalarHasElementCountOneAndZeroSizeHasNoBytes()
    {
        string path = TempPath("scalar.safetensors");
        SafeTensorsWriter.Save(path, [
            SafeTensorsWriter.F32("scalar", [], [3.5f]),
            SafeTensorsWriter.F32("empty", [0, 3], ReadOnlySpan<float>.Empty),
            SafeTensorsWriter.I64("after", [2], [long.MinValue, long.MaxValue]),
        ]);
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(1, f.Info("scalar").ElementCount);
        Assert.Equal([3.5f], f.ReadFloat32("scalar"));
        Assert.Equal(0, f.Info("empty").ElementCount);
        Assert.Equal(0, f.Info("empty").ByteLength);
        Assert.Empty(f.ReadFloat32("empty"));
        Assert.Equal([long.MinValue, long.MaxValue], f.ReadInt64("after"));
    }

    [Theory]
    [InlineData(DType.F32, 100_003)]  // > 64 KB chunk, F32 direct path
    [InlineData(DType.F16, 70_001)]   // several conversion chunks, odd tail
    [InlineData(DType.BF16, 33_000)]
    [InlineData(DType.I64, 20_000)]
    public void RoundTrip_LargeTensorSpanningSeveralReadChunksIsExact(DType dtype, int n)
    {
        string path = TempPath("large.safetensors");
        SafeTensorsWriter.Save(path, [MakeEntry("pad", DType.F32, [3]), MakeEntry("big", dtype, [n])]);
        using var f = SafeTensorsFile.Open(path);
        float[] expected = ExactFloats(n);
        if (dtype == DType.I64)
            Assert.Equal(expected.Select(x => (long)(x * 4)).ToArray(), f.ReadInt64("big"));
        else
            Assert.Equal(expected, f.ReadFloat32("big"));
    }

    [Fact]
    public void RoundTrip_KeepsGivenOrderAndMetadata()
    {
        string path = TempPath("order.safetensors");
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\"" };
        SafeTensorsWriter.Save(path, [
            SafeTensorsWriter.F32("zeta", [1], [1f]),
            SafeTensorsWriter.F32("alpha", [1], [2f]),
            SafeTensorsWriter.F32("mid.dle", [1], [3f]),
        ], meta);
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(["zeta", "alpha", "mid.dle"], f.Tensors.Select(t => t.Name));
        Assert.Equal(meta, f.Metadata.ToDictionary());
        Assert.Equal([2f], f.ReadFloat32("alpha"));
    }

    [Fact]
    public void ReadFloat32IntoSpan_FillsDestinationAndRejectsWrongLength()
    {
        string path = TempPath("span.safetensors");
        SafeTensorsWriter.Save(path, [SafeTensorsWriter.BF16("w", [2, 2], [1f, -2f, 0.5f, 4f])]);
        using var f = SafeTensorsFile.Open(path);
        var dst = new float[4];
        f.ReadFloat32("w", dst);
        Assert.Equal([1f, -2f, 0.5f, 4f], dst);
        var ex = Assert.Throws<ArgumentException>(() => f.ReadFloat32("w", new float[3]));
        Assert.Contains("'w'", ex.Message);
    }

    [Fact]
    public void ReadInt64_OnFloatTensorThrowsNamingKeyAndFile()
    {
        string path = TempPath("f.safetensors");
        SafeTensorsWriter.Save(path, [SafeTensorsWriter.F32("w", [1], [1f])]);
        using var f = SafeTensorsFile.Open(path);
        var ex = Assert.Throws<SafeTensorsException>(() => f.ReadInt64("w"));
        Assert.Contains("f.safetensors", ex.Message);
        Assert.Contains("'w'", ex.Message);
    }

    [Fact]
    public void ReadSmallIntegerAndBoolDTypes_WidenCorrectly()
    {
        // I16 [-2, 300], I8 [-1], U8 [255], BOOL [0, 7] laid out contiguously.
        byte[] data = [0xFE, 0xFF, 0x2C, 0x01, 0xFF, 0xFF, 0x00, 0x07];
        string header = """{"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"I8","shape":[1],"data_offsets":[4,5]},"c":{"dtype":"U8","shape":[1],"data_offsets":[5,6]},"d":{"dtype":"BOOL","shape":[2],"data_offsets":[6,8]}}""";
        using var f = SafeTensorsFile.Open(WriteRaw("ints.safetensors", header, data));
        Assert.Equal([-2L, 300L], f.ReadInt64("a"));
        Assert.Equal([-1L], f.ReadInt64("b"));
        Assert.Equal([255L], f.ReadInt64("c"));
        Assert.Equal([0L, 1L], f.ReadInt64("d"));
        Assert.Equal([-2f, 300f], f.ReadFloat32("a"));
        Assert.Equal([0f, 1f], f.ReadFloat32("d"));
    }

    // ---------------------------------------------------------------- writer behaviour

    [Fact]
    public void Save_LeavesNoTmpFileAndOverwritesExistingFile()
    {
        string path = TempPath("w.safetensors");
        File.WriteAllText(path, "old contents, not safetensors");
        SafeTensorsWriter.Save(path, [SafeTensorsWriter.F32("x", [2], [1f, 2f])]);
        Assert.False(File.Exists(path + ".tmp"));
        Assert.Equal(["w.safetensors"], Directory.GetFiles(_dir).Select(Path.GetFileName));
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal([1f, 2f], f.ReadFloat32("x"));
    }

    [Fact]
    public void Save_InvalidEntryThrowsAndLeavesNoFileOrTmp()
    {
        string path = TempPath("bad.safetensors");
        var wrongSize = new SafeTensorsWriter.Entry("x", DType.F32, [3], new byte[8]);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Save(path, [wrongSize]));
        var dup = SafeTensorsWriter.F32("x", [1], [1f]);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Save(path, [dup, dup]));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(13)]
    public void Save_HeaderIsSpacePaddedSoDataStartsEightByteAligned(int n)
    {
        string path = TempPath("align.safetensors");
        SafeTensorsWriter.Save(path, [SafeTensorsWriter.F32("x" + new string('y', n), [n], new float[n])]);
        byte[] bytes = File.ReadAllBytes(path);
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, (8 + headerLen) % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLen);
        Assert.EndsWith("}", header.TrimEnd(' '));
        Assert.True(header.TrimEnd(' ').Length >= header.Length - 7);
        using var doc = JsonDocument.Parse(header); // padding must keep the JSON valid
        Assert.Equal(8 + (long)headerLen + 4L * n, bytes.LongLength);
    }

    // ---------------------------------------------------------------- rounding

    [Theory]
    [InlineData(0x3F800000u, (ushort)0x3F80)] // 1.0 exact
    [InlineData(0x3F808000u, (ushort)0x3F80)] // exactly halfway, ties to even (down)
    [InlineData(0x3F818000u, (ushort)0x3F82)] // exactly halfway, ties to even (up)
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just above halfway rounds up
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below halfway rounds down
    [InlineData(0x40490FDBu, (ushort)0x4049)] // pi -> 3.140625
    [InlineData(0xBF800000u, (ushort)0xBF80)] // -1.0
    [InlineData(0x80000000u, (ushort)0x8000)] // -0.0 keeps sign
    [InlineData(0x7F800000u, (ushort)0x7F80)] // +inf
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // float.MaxValue rounds to +inf
    [InlineData(0x00000001u, (ushort)0x0000)] // tiny subnormal rounds to zero
    public void BF16_FromFloatRoundsToNearestEven(uint floatBits, ushort expected)
    {
        float value = BitConverter.UInt32BitsToSingle(floatBits);
        Assert.Equal(expected, BFloat16.FromSingle(value));
        string path = TempPath("bf16.safetensors");
        SafeTensorsWriter.Save(path, [SafeTensorsWriter.BF16("v", [], [value])]);
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(BitConverter.UInt32BitsToSingle((uint)expected << 16), f.ReadFloat32("v")[0]);
    }

    [Fact]
    public void BF16_NaNStaysNaN()
    {
        Assert.True(float.IsNaN(BFloat16.ToSingle(BFloat16.FromSingle(float.NaN))));
        // A NaN whose payload sits only in the low 16 bits must not collapse to infinity.
        float lowPayloadNaN = BitConverter.UInt32BitsToSingle(0x7F800001u);
        Assert.True(float.IsNaN(BFloat16.ToSingle(BFloat16.FromSingle(lowPayloadNaN))));
    }

    [Theory]
    [InlineData(1.0f, (ushort)0x3C00)]
    [InlineData(1.00048828125f, (ushort)0x3C00)]      // 1 + 2^-11: halfway, ties to even (down)
    [InlineData(1.00146484375f, (ushort)0x3C02)]      // 1 + 3*2^-11: halfway, ties to even (up)
    [InlineData(0.1f, (ushort)0x2E66)]
    [InlineData(65504f, (ushort)0x7BFF)]              // largest finite half
    [InlineData(65519f, (ushort)0x7BFF)]              // below the halfway point to overflow
    [InlineData(65520f, (ushort)0x7C00)]              // halfway to 65536 rounds to even = +inf
    [InlineData(5.9604644775390625E-08f, (ushort)0x0001)] // 2^-24, smallest subnormal
    [InlineData(2.98023223876953125E-08f, (ushort)0x0000)] // 2^-25, halfway to zero, ties to even
    [InlineData(-2.0f, (ushort)0xC000)]
    public void F16_FromFloatRoundsToNearestEven(float value, ushort expected)
    {
        string path = TempPath("f16.safetensors");
        SafeTensorsWriter.Entry e = SafeTensorsWriter.F16("v", [1], [value]);
        Assert.Equal(expected, BinaryPrimitives.ReadUInt16LittleEndian(e.Data.Span));
        SafeTensorsWriter.Save(path, [e]);
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal((float)BitConverter.UInt16BitsToHalf(expected), f.ReadFloat32("v")[0]);
    }

    // ---------------------------------------------------------------- real fixtures

    public static TheoryData<string> FixtureFiles()
    {
        var data = new TheoryData<string>();
        foreach (string p in Directory.GetFiles(FixtureDir, "*.safetensors").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(p));
        return data;
    }

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void Fixture_OpensAndEveryTensorReadsWithFiniteValues(string fileName)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(FixtureDir, fileName));
        Assert.NotEmpty(f.Tensors);
        Assert.Equal(f.DataLength, f.Tensors.Sum(t => t.ByteLength)); // torch writes the buffer densely
        foreach (SafeTensorInfo t in f.Tensors)
        {
            Assert.True(f.Contains(t.Name));
            Assert.Same(t, f.Info(t.Name));
            if (t.DType == DType.I64)
                Assert.Equal(t.ElementCount, f.ReadInt64(t.Name).Length);
            else
                Assert.All(f.ReadFloat32(t.Name), v => Assert.True(float.IsFinite(v), $"{t.Name} has {v}"));
        }
    }

    [Fact]
    public void Fixture_VitIoHasExpectedTensorsShapesAndLabels()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(FixtureDir, "vit.io.safetensors"));
        SafeTensorInfo input = f.Info("input");
        Assert.Equal(DType.F32, input.DType);
        Assert.Equal([2, 3, 32, 32], input.Shape);
        Assert.Equal(2 * 3 * 32 * 32, input.ElementCount);

        SafeTensorInfo labels = f.Info("labels");
        Assert.Equal(DType.I64, labels.DType);
        Assert.Equal([2], labels.Shape);
        Assert.All(f.ReadInt64("labels"), l => Assert.InRange(l, 0, 9)); // vit.json: num_classes = 10

        Assert.Equal([2, 10], f.Info("logits").Shape);
        Assert.Equal([1], f.Info("loss").Shape);
        Assert.True(f.ReadFloat32("loss")[0] > 0);
        Assert.Equal(["input", "labels", "logits", "loss"], f.Tensors.Take(4).Select(t => t.Name)); // header order
        Assert.Empty(f.Metadata);
    }

    [Fact]
    public void Fixture_VitWeightsClsTokenIsF32OneBy64()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(FixtureDir, "vit.weights.safetensors"));
        SafeTensorInfo cls = f.Info("cls_token");
        Assert.Equal(DType.F32, cls.DType);
        Assert.Equal([1, 64], cls.Shape);
        Assert.Equal(256, cls.ByteLength);
        Assert.Equal([17, 64], f.Info("pos_embedding").Shape);
    }

    [Fact]
    public void Fixture_ResnetScalarNumBatchesTrackedReadsAsOneElement()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(FixtureDir, "resnet_basic.weights.safetensors"));
        SafeTensorInfo t = f.Info("bn1.num_batches_tracked");
        Assert.Equal(DType.I64, t.DType);
        Assert.Empty(t.Shape);
        Assert.Single(f.ReadInt64(t.Name));
    }

    [Theory]
    [InlineData("vit.io.safetensors", "input")]
    [InlineData("vit.io.safetensors", "logits")]
    [InlineData("vit.io.safetensors", "labels")]
    [InlineData("vit.weights.safetensors", "cls_token")]
    [InlineData("vit.weights.safetensors", "to_patch_embedding.2.weight")]
    public void Fixture_ValuesMatchIndependentRawByteDecoding(string fileName, string key)
    {
        string path = Path.Combine(FixtureDir, fileName);
        // Independent decoding: our own header parse and BinaryPrimitives over the whole file.
        byte[] bytes = File.ReadAllBytes(path);
        int n = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, n));
        JsonElement e = doc.RootElement.GetProperty(key);
        int begin = e.GetProperty("data_offsets")[0].GetInt32();
        int end = e.GetProperty("data_offsets")[1].GetInt32();
        string dtype = e.GetProperty("dtype").GetString()!;
        ReadOnlySpan<byte> raw = bytes.AsSpan(8 + n + begin, end - begin);

        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(raw.ToArray(), f.ReadRaw(key));
        if (dtype == "I64")
        {
            long[] got = f.ReadInt64(key);
            for (int i = 0; i < got.Length; i++)
                Assert.Equal(BinaryPrimitives.ReadInt64LittleEndian(raw[(i * 8)..]), got[i]);
        }
        else
        {
            float[] got = f.ReadFloat32(key);
            Assert.Equal((end - begin) / 4, got.Length);
            foreach (int i in new[] { 0, 1, got.Length / 2, got.Length - 1 })
                Assert.Equal(BinaryPrimitives.ReadSingleLittleEndian(raw[(i * 4)..]), got[i]);
        }
    }

    // ---------------------------------------------------------------- malformed files

    private const string Ok1 = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";

    public static TheoryData<string, string, int, long?, string> MalformedCases() => new()
    {
        // case name, header, data bytes, explicit header length (null = actual), expected message fragment
        { "truncated_data", """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, null, "exceed the data buffer of 8 bytes" },
        { "bad_json", """{"a":{"dtype":"F32",""", 8, null, "not valid JSON" },
        { "garbage_json", "\u0001garbage", 0, null, "not valid JSON" },
        { "header_longer_than_file", Ok1, 8, 10_000, "exceeds the file size" },
        { "header_length_absurd", Ok1, 8, long.MaxValue, "exceeds the limit" },
        { "negative_offset", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}""", 8, null, "negative data_offsets" },
        { "end_before_begin", """{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}""", 8, null, "end before begin" },
        { "overlap", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, null, "overlap tensor 'a'" },
        { "unknown_dtype", """{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}""", 2, null, "unknown dtype \"F8_E4M3\"" },
        { "lowercase_dtype", """{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}""", 8, null, "unknown dtype" },
        { "shape_size_mismatch", """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 12, null, "needs 12" },
        { "missing_dtype", """{"a":{"shape":[2],"data_offsets":[0,8]}}""", 8, null, "has no 'dtype'" },
        { "missing_shape", """{"a":{"dtype":"F32","data_offsets":[0,8]}}""", 8, null, "has no 'shape'" },
        { "missing_offsets", """{"a":{"dtype":"F32","shape":[2]}}""", 8, null, "has no 'data_offsets'" },
        { "negative_dim", """{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8, null, "dimension 0" },
        { "fractional_dim", """{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", 8, null, "dimension 0" },
        { "offsets_wrong_arity", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}""", 8, null, "[begin, end]" },
        { "header_not_object", """[1,2]""", 0, null, "must be an object" },
        { "entry_not_object", """{"a":5}""", 0, null, "must be an object" },
        { "metadata_not_strings", """{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, null, "must be a string" },
        { "duplicate_key", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, null, "duplicate tensor 'a'" },
        { "lone_surrogate_key", """{"a\ud800":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}""", 4, null, "invalid string" },
        { "key_with_newline", """{"a\nb":{"dtype":"XX","shape":[],"data_offsets":[0,0]}}""", 0, null, "'a\\u000ab'" },
    };

    [Theory]
    [MemberData(nameof(MalformedCases))]
    public void Open_MalformedFileThrowsOneLineMessageNamingFileAndProblem(
        string caseName, string header, int dataBytes, long? headerLength, string expected)
    {
        string name = caseName + ".safetensors";
        string path = WriteRaw(name, header, new byte[dataBytes], (ulong?)headerLength);
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Contains(name, ex.Message);
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.DoesNotContain('\r', ex.Message);
        Assert.Equal(path, ex.FilePath);
    }

    [Fact]
    public void Open_TruncatedRealFixtureNamesTheFirstTensorPastTheEnd()
    {
        byte[] bytes = File.ReadAllBytes(Path.Combine(FixtureDir, "vit.io.safetensors"));
        string path = TempPath("vit.io.truncated.safetensors");
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length - 100).ToArray());
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("vit.io.truncated.safetensors", ex.Message);
        Assert.Contains("exceed the data buffer", ex.Message);
        Assert.NotNull(ex.Key);
        Assert.Contains($"'{ex.Key}'", ex.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void Open_FileShorterThanLengthPrefixThrows(int length)
    {
        string path = TempPath("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("short.safetensors", ex.Message);
        Assert.Contains("too short", ex.Message);
    }

    [Fact]
    public void Open_HeaderWithInvalidUtf8ThrowsSafeTensorsException()
    {
        byte[] header = [.. Encoding.UTF8.GetBytes("{\"a"), 0xFF, 0xFE, .. Encoding.UTF8.GetBytes("\":{}}")];
        var bytes = new byte[8 + header.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        string path = TempPath("utf8.safetensors");
        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("utf8.safetensors", ex.Message);
        Assert.Contains("not valid UTF-8", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Open_MissingFileThrowsFileNotFoundNamingPath()
    {
        string path = TempPath("nope.safetensors");
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Equal($"{path}: file not found", ex.Message);
    }

    [Fact]
    public void Open_GapBetweenTensorsIsAnErrorNamingTheTensor()
    {
        string header = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}    """;
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(WriteRaw("gaps.safetensors", header, new byte[12])));
        Assert.Contains("'b'", ex.Message);
        Assert.Contains("gap of 4 bytes", ex.Message);
    }

    [Fact]
    public void Open_TrailingBytesAfterTheLastTensorAreAnError()
    {
        string header = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(WriteRaw("trailing.safetensors", header, new byte[5])));
        Assert.Contains("1 bytes at data offset 4 belong to no tensor", ex.Message);
    }

    [Fact]
    public void Info_UnknownNameThrowsNamingKeyAndFile()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(FixtureDir, "vit.weights.safetensors"));
        Assert.False(f.Contains("no_such_tensor"));
        var ex = Assert.Throws<SafeTensorsException>(() => f.ReadFloat32("no_such_tensor"));
        Assert.Contains("vit.weights.safetensors", ex.Message);
        Assert.Contains("'no_such_tensor'", ex.Message);
        Assert.Equal("no_such_tensor", ex.Key);
    }

    [Fact]
    public void Read_AfterDisposeThrowsObjectDisposed()
    {
        var f = SafeTensorsFile.Open(Path.Combine(FixtureDir, "vit.weights.safetensors"));
        f.Dispose();
        Assert.Throws<ObjectDisposedException>(() => f.ReadFloat32("cls_token"));
    }
}
