using System.Numerics;
using VitSharp.IO;

namespace VitSharp.Tests.IO;

/// <summary>The restricted unpickler: plain values from every protocol, the allow-list, and hostile pickles refused with their offset.</summary>
public class TorchPickleTests
{
    private static object? Load(byte[] pickle) => TorchPickle.Load(new MemoryStream(pickle), "test.pkl");

    private static TorchFileException Refused(byte[] pickle) => Assert.Throws<TorchFileException>(() => Load(pickle));

    // pickle.dumps({'a': [1, -2, 300, 70000, -70000, 2**40, -2**63, 2**70], 'b': (1.5, -0.25), 'c': 'héllo ✓', 'd': b'\x00\xffxy',
    //               'e': (True, False, None), 'f': OrderedDict([('x', 1), ('y', ())]), 7: (1,), 'g': [[], {}, (1, 2), (1, 2, 3), (1, 2, 3, 4)]},
    //              protocol=P) by CPython 3.11, P = 0..5.
    public static TheoryData<int, string> PythonPickles => new()
    {
        { 0, "286470300a56610a70310a286c70320a49310a61492d320a61493330300a614937303030300a61492d37303030300a614c313039393531313632373737364c0a614c2d393232333337323033363835343737353830384c0a614c313138303539313632303731373431313330333432344c0a617356620a70330a2846312e350a462d302e32350a7470340a7356630a70350a5668e96c6c6f205c75323731330a70360a7356640a70370a635f636f646563730a656e636f64650a70380a28565c7530303030ff78790a70390a566c6174696e310a7031300a747031310a527031320a7356650a7031330a284930310a4930300a4e747031340a7356660a7031350a63636f6c6c656374696f6e730a4f726465726564446963740a7031360a2874527031370a56780a7031380a49310a7356790a7031390a2874737349370a2849310a747032300a7356670a7032310a286c7032320a286c7032330a6128647032340a612849310a49320a747032350a612849310a49320a49330a747032360a612849310a49320a49330a49340a747032370a61732e" },
        { 1, "7d71002858010000006171015d7102284b014afeffffff4d2c014a701101004a90eefeff4c313039393531313632373737364c0a4c2d393232333337323033363835343737353830384c0a4c313138303539313632303731373431313330333432344c0a65580100000062710328473ff800000000000047bfd00000000000007471045801000000637105580a00000068c3a96c6c6f20e29c9371065801000000647107635f636f646563730a656e636f64650a710828580500000000c3bf7879710958060000006c6174696e31710a74710b52710c580100000065710d284930310a4930300a4e74710e580100000066710f63636f6c6c656374696f6e730a4f726465726564446963740a7110295271112858010000007871124b01580100000079711329754b07284b0174711458010000006771155d7116285d71177d7118284b014b02747119284b014b024b0374711a284b014b024b034b0474711b65752e" },
        { 2, "80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101004a90eefeff8a060000000000018a0800000000000000808a09000000000000000040655801000000627103473ff800000000000047bfd00000000000008671045801000000637105580a00000068c3a96c6c6f20e29c9371065801000000647107635f636f646563730a656e636f64650a7108580500000000c3bf7879710958060000006c6174696e31710a86710b52710c580100000065710d88894e87710e580100000066710f63636f6c6c656374696f6e730a4f726465726564446963740a7110295271112858010000007871124b01580100000079711329754b074b0185711458010000006771155d7116285d71177d71184b014b028671194b014b024b0387711a284b014b024b034b0474711b65752e" },
        { 3, "80037d71002858010000006171015d7102284b014afeffffff4d2c014a701101004a90eefeff8a060000000000018a0800000000000000808a09000000000000000040655801000000627103473ff800000000000047bfd00000000000008671045801000000637105580a00000068c3a96c6c6f20e29c9371065801000000647107430400ff78797108580100000065710988894e87710a580100000066710b63636f6c6c656374696f6e730a4f726465726564446963740a710c2952710d28580100000078710e4b01580100000079710f29754b074b0185711058010000006771115d7112285d71137d71144b014b028671154b014b024b03877116284b014b024b034b0474711765752e" },
        { 4, "800495d8000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101004a90eefeff8a060000000000018a0800000000000000808a09000000000000000040658c016294473ff800000000000047bfd000000000000086948c0163948c0a68c3a96c6c6f20e29c93948c016494430400ff7879948c01659488894e87948c0166948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0178944b018c01799429754b074b0185948c0167945d94285d947d944b014b0286944b014b024b038794284b014b024b034b04749465752e" },
        { 5, "800595d8000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101004a90eefeff8a060000000000018a0800000000000000808a09000000000000000040658c016294473ff800000000000047bfd000000000000086948c0163948c0a68c3a96c6c6f20e29c93948c016494430400ff7879948c01659488894e87948c0166948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0178944b018c01799429754b074b0185948c0167945d94285d947d944b014b0286944b014b024b038794284b014b024b034b04749465752e" },
    };

    [Theory]
    [MemberData(nameof(PythonPickles))]
    public void PlainValuesFromEveryProtocolMatchPython(int protocol, string hex)
    {
        var d = Assert.IsType<PickleDict>(Load(Convert.FromHexString(hex)));
        Assert.Equal(new object[] { "a", "b", "c", "d", "e", "f", 7L, "g" }, d.Keys.ToArray());
        var a = Assert.IsType<List<object?>>(d["a"]);
        Assert.Equal(new object?[] { 1L, -2L, 300L, 70000L, -70000L, 1L << 40, long.MinValue }, a.Take(7).ToArray());
        Assert.Equal(BigInteger.Pow(2, 70), a[7]);
        Assert.Equal(new object?[] { 1.5, -0.25 }, (object?[])d["b"]!);
        Assert.Equal("héllo ✓", d["c"]);
        Assert.Equal(new byte[] { 0, 0xff, (byte)'x', (byte)'y' }, d["d"]);
        Assert.Equal(new object?[] { true, false, null }, (object?[])d["e"]!);
        var f = Assert.IsType<PickleDict>(d["f"]);
        Assert.True(f.IsOrdered);
        Assert.Equal(1L, f["x"]);
        Assert.Empty((object?[])f["y"]!);
        Assert.Equal(new object?[] { 1L }, (object?[])d[7L]!);
        var g = Assert.IsType<List<object?>>(d["g"]);
        Assert.Empty(Assert.IsType<List<object?>>(g[0]));
        Assert.Equal(0, Assert.IsType<PickleDict>(g[1]).Count);
        Assert.Equal(new object?[] { 1L, 2L, 3L, 4L }, (object?[])g[4]!);
        Assert.InRange(protocol, 0, 5);
    }

    [Fact]
    public void TensorBecomesALazyReferenceWithItsView()
    {
        var p = new PickleBuilder().Proto().Tensor("7", "HalfStorage", 100, 10, [3, 4], [1, 5]).Stop();
        var t = Assert.IsType<TorchTensorRef>(Load(p.Bytes));
        Assert.Equal("7", t.StorageKey);
        Assert.Equal(DType.F16, t.DType);
        Assert.Equal(10, t.StorageOffset);
        Assert.Equal([3L, 4L], t.Size);
        Assert.Equal([1L, 5L], t.Stride);
        Assert.False(t.IsContiguous);
        Assert.Equal(100, t.Storage.ElementCount);
    }

    /// <summary>
    /// A training checkpoint's extras beside the weights — DeiT's and timm's <c>args</c> (argparse.Namespace), timm's
    /// <c>metric</c> (a numpy float64) — are read as inert values: CPython's protocol-2 bytes of
    /// {'args': Namespace(lr=0.1, model='deit'), 'metric': numpy.float64(81.25), 'epoch': 3}.
    /// </summary>
    [Fact]
    public void TrainingCheckpointExtrasAreReadAsInertValues()
    {
        const string hex = "80027d71002858040000006172677371016361726770617273650a4e616d6573706163650a7102298171037d71042858020000006c727105473fb999999999999a58050000006d6f64656c71065804000000646569747107756258060000006d65747269637108636e756d70792e636f72652e6d756c746961727261790a7363616c61720a7109636e756d70790a64747970650a710a58020000006638710b898887710c52710d284b0358010000003c710e4e4e4e4affffffff4affffffff4b0074710f62635f636f646563730a656e636f64650a711058080000000000000000505440711158060000006c6174696e317112867113527114867115527116580500000065706f636871174b03752e";
        var d = Assert.IsType<PickleDict>(Load(Convert.FromHexString(hex)));
        var args = Assert.IsType<PickleDict>(d["args"]);
        Assert.Equal(0.1, args.State!["lr"]);
        Assert.Equal("deit", args.State!["model"]);
        Assert.Equal(81.25, d["metric"]);
        Assert.Equal(3L, d["epoch"]);
    }

    [Theory]
    [InlineData("posix", "system")]
    [InlineData("os", "system")]
    [InlineData("builtins", "eval")]
    [InlineData("subprocess", "Popen")]
    [InlineData("torch.storage", "_load_from_bytes")]
    [InlineData("torch", "ComplexFloatStorage")]
    [InlineData("numpy.core.multiarray", "_reconstruct")]
    [InlineData("argparse", "ArgumentParser")]
    public void GlobalOutsideTheAllowListIsRefusedWithItsNameAndOffset(string module, string name)
    {
        var p = new PickleBuilder().Proto().Mark().Str("x");
        long at = p.Position;
        p.Global(module, name).Str("echo pwned").Op(0x85).Reduce().Tuple().Stop();
        var e = Refused(p.Bytes);
        Assert.Equal($"test.pkl: refuses global '{module}.{name}' at pickle offset {at}: only tensors, storages and plain containers are allowed", e.Message);
        Assert.Equal(at, e.Offset);
    }

    [Fact]
    public void StackGlobalIsCheckedToo()
    {
        var e = Refused(new PickleBuilder().Proto(4).Str("builtins").Str("eval").Op(0x93).Stop().Bytes);
        Assert.Contains("refuses global 'builtins.eval'", e.Message);
    }

    [Theory]
    [InlineData(new byte[] { 0x80, 2, (byte)'i', (byte)'o', (byte)'s', 10, (byte)'x', 10, (byte)'.' }, "INST is not allowed")]
    [InlineData(new byte[] { 0x80, 2, (byte)'(', (byte)'N', (byte)'o', (byte)'.' }, "OBJ is not allowed")]
    [InlineData(new byte[] { 0x80, 2, 0x82, 1, (byte)'.' }, "EXT1/2/4")]
    [InlineData(new byte[] { 0x80, 6, (byte)'N', (byte)'.' }, "unsupported pickle protocol 6")]
    [InlineData(new byte[] { 0x80, 2, 0xff }, "unknown opcode 0xff at pickle offset 2")]
    public void DangerousOrUnknownOpcodesAreRefused(byte[] pickle, string expected) =>
        Assert.Contains(expected, Refused(pickle).Message);

    [Fact]
    public void AllowedGlobalCalledTheWrongWayIsRefused()
    {
        // A storage type is a name inside persistent ids, never a callable.
        var e = Refused(new PickleBuilder().Proto().Global("torch", "FloatStorage").EmptyTuple().Reduce().Stop().Bytes);
        Assert.Contains("REDUCE of 'torch.FloatStorage'", e.Message);
        e = Refused(new PickleBuilder().Proto().Global("_codecs", "encode").Str("x").Str("rot13").Op(0x86).Reduce().Stop().Bytes);
        Assert.Contains("REDUCE of '_codecs.encode'", e.Message);
        e = Refused(new PickleBuilder().Proto().EmptyDict().Str("x").Op('b').Stop().Bytes);
        Assert.Contains("BUILD", e.Message);
    }

    [Theory]
    [InlineData(new byte[] { 0x80, 2, (byte)'N' })]
    [InlineData(new byte[] { 0x80, 2, (byte)'X', 5, 0, 0, 0, (byte)'a' })]
    [InlineData(new byte[] { 0x80, 2, (byte)'J', 1, 0 })]
    [InlineData(new byte[] { 0x80, 2, (byte)'c', (byte)'c', (byte)'o' })]
    [InlineData(new byte[0])]
    public void PickleEndingWithoutStopIsRefused(byte[] pickle) =>
        Assert.Matches("ends before its STOP|ends inside this opcode, before its STOP|exceeds the", Refused(pickle).Message);

    [Fact]
    public void DeclaredLengthsBeyondTheInputAllocateNothing()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Contains("declared length 4294967295 exceeds the 1 bytes that remain at pickle offset 2",
            Refused([0x80, 2, (byte)'X', 0xff, 0xff, 0xff, 0xff, (byte)'.']).Message);
        Assert.Contains("declared length 4611686018427387904",
            Refused([0x80, 4, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40, (byte)'.']).Message);
        Assert.Contains("LONG4 of 2147483647 bytes", Refused([0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f, (byte)'.']).Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
    }

    [Fact]
    public void MemoAbuseIsRefused()
    {
        Assert.Contains("memo entry 9 was never stored at pickle offset 2", Refused([0x80, 2, (byte)'h', 9, (byte)'.']).Message);
        // A huge memo index is just a key, not an allocation.
        Assert.Equal(1L, Load([0x80, 2, (byte)'K', 1, (byte)'r', 0xff, 0xff, 0xff, 0xff, (byte)'0', (byte)'j', 0xff, 0xff, 0xff, 0xff, (byte)'.']));
        var many = new byte[TorchPickle.MaxMemo + 4];
        many[0] = 0x80; many[1] = 4; many[2] = (byte)'N';
        many.AsSpan(3, TorchPickle.MaxMemo + 1).Fill(0x94);   // MEMOIZE past the limit
        Assert.Contains($"more than {TorchPickle.MaxMemo} memo entries", Refused(many).Message);
    }

    [Fact]
    public void StackAbuseIsRefused()
    {
        var deep = new byte[TorchPickle.MaxStack + 4];
        deep[0] = 0x80; deep[1] = 2;
        deep.AsSpan(2, TorchPickle.MaxStack + 1).Fill((byte)'N');
        Assert.Contains($"stack deeper than {TorchPickle.MaxStack} values", Refused(deep).Message);
        var marks = new byte[TorchPickle.MaxMarks + 4];
        marks[0] = 0x80; marks[1] = 2;
        marks.AsSpan(2, TorchPickle.MaxMarks + 1).Fill((byte)'(');
        Assert.Contains("nested marks", Refused(marks).Message);
        Assert.Contains("stack underflow at pickle offset 2", Refused([0x80, 2, (byte)'0', (byte)'.']).Message);
        Assert.Contains("stack underflow", Refused([0x80, 2, (byte)'N', (byte)'(', (byte)'R', (byte)'.']).Message);
        Assert.Contains("no MARK", Refused([0x80, 2, (byte)'t', (byte)'.']).Message);
        Assert.Contains("APPEND on None", Refused([0x80, 2, (byte)'N', (byte)'N', (byte)'a', (byte)'.']).Message);
        Assert.Contains("STOP with 2 values", Refused([0x80, 2, (byte)'N', (byte)'N', (byte)'.']).Message);
        Assert.Contains("odd number", Refused([0x80, 2, (byte)'}', (byte)'(', (byte)'N', (byte)'u', (byte)'.']).Message);
    }

    [Fact]
    public void DuplicateAndUnhashableDictKeysAreRefused()
    {
        var p = new PickleBuilder().Proto().EmptyDict().Mark().Str("w").Int(1).Str("b").Int(2).Str("w").Int(3).SetItems().Stop();
        var e = Refused(p.Bytes);
        Assert.Contains("duplicate key 'w'", e.Message);
        Assert.Equal("w", e.Key);
        Assert.Contains("cannot be a key", Refused([0x80, 2, (byte)'}', (byte)']', (byte)'N', (byte)'s', (byte)'.']).Message);
    }

    [Fact]
    public void TensorViewsOutsideTheirStorageAreRefused()
    {
        Assert.Contains("reaches element 200 of a storage of 100",
            Refused(new PickleBuilder().Proto().Tensor("0", "FloatStorage", 100, 0, [201], [1]).Stop().Bytes).Message);
        Assert.Contains("reaches element 109",
            Refused(new PickleBuilder().Proto().Tensor("0", "FloatStorage", 100, 10, [10, 10], [10, 1]).Stop().Bytes).Message);
        Assert.Contains("negative stride -1",
            Refused(new PickleBuilder().Proto().Tensor("0", "FloatStorage", 100, 50, [10], [-1]).Stop().Bytes).Message);
        Assert.Contains("negative storage offset",
            Refused(new PickleBuilder().Proto().Tensor("0", "FloatStorage", 100, -1, [10], [1]).Stop().Bytes).Message);
        Assert.Contains("overflows",
            Refused(new PickleBuilder().Proto().Tensor("0", "FloatStorage", 100, 0, [1L << 40, 1L << 40], [1L << 40, 1L << 40]).Stop().Bytes).Message);
        Assert.Contains("2 sizes but 1 strides",
            Refused(new PickleBuilder().Proto().Tensor("0", "FloatStorage", 100, 0, [2, 2], [1]).Stop().Bytes).Message);
    }

    [Fact]
    public void PersistentIdsMustBeTorchStorages()
    {
        Assert.Contains("not a torch storage", Refused(new PickleBuilder().Proto().Str("x").Op('Q').Stop().Bytes).Message);
        var p = new PickleBuilder().Proto().Mark().Str("storage").Global("collections", "OrderedDict").Str("0").Str("cpu").Int(4).Tuple().Op('Q').Stop();
        Assert.Contains("unknown storage type 'collections.OrderedDict'", Refused(p.Bytes).Message);
        var twice = new PickleBuilder().Proto().Mark()
            .Tensor("0", "FloatStorage", 4, 0, [4], [1]).Tensor("0", "HalfStorage", 4, 0, [4], [1]).Tuple().Stop();
        Assert.Contains("storage '0' is named as F32[4] and as F16[4]", Refused(twice.Bytes).Message);
    }
}
