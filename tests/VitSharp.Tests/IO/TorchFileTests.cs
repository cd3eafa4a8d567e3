using System.IO.Compression;
using VitSharp.IO;
using VitSharp.Models;

namespace VitSharp.Tests.IO;

/// <summary>torch.save files: the PyTorch fixtures against PyTorch's logits, round trips through TorchFile.Save
/// (views, shared storages, dtypes), and truncated, malformed and hostile files refused before anything is returned.</summary>
public sealed class TorchFileTests : IDisposable
{
    private static readonly string Pretrained = Path.Combine(TestFixtures.Dir, "pretrained");
    private readonly string _dir = Directory.CreateTempSubdirectory("vitsharp-torchfile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Temp(string name) => Path.Combine(_dir, name);

    private static string Fixture(string name) => Path.Combine(Pretrained, name);

    private static readonly Lazy<Dictionary<string, Tensor>> Expected = new(() => Weights.Load(Fixture("expected.safetensors")));

    private static VisionTransformer TinyVit() => new(new VisionTransformerConfig
    {
        ImageSize = 32, PatchSize = 8, NumLayers = 2, NumHeads = 3, HiddenDim = 48, MlpDim = 96, NumClasses = 10,
    });

    /// <summary>Loads the weights strictly, runs the fixture input in eval mode and returns the max |logit − expected|.</summary>
    private static float MaxLogitError(VitSharp.NN.Module model, IReadOnlyDictionary<string, Tensor> sd, string expectedKey)
    {
        model.LoadStateDict(sd, strict: true);
        model.Eval();
        using (global::VitSharp.Autograd.NoGrad())
        {
            var logits = model.Forward(Expected.Value["input"]);
            var expected = Expected.Value[expectedKey];
            Assert.Equal(expected.Shape, logits.Shape);
            return logits.Data.Zip(expected.Data, (a, b) => Math.Abs(a - b)).Max();
        }
    }

    // ---- fixtures written by PyTorch 1.13 ----

    [Theory]
    [InlineData("tv_vit.pth", "vit_logits", TorchFileFormat.Zip)]
    [InlineData("tv_vit_legacy.pth", "vit_logits", TorchFileFormat.Legacy)]
    [InlineData("tv_vit_fp16.pth", "vit_fp16_logits", TorchFileFormat.Zip)]
    public void TorchvisionStateDictGivesPyTorchsLogits(string file, string expected, TorchFileFormat format)
    {
        using (var archive = TorchFile.Open(Fixture(file))) Assert.Equal(format, archive.Format);
        var sd = TorchFile.LoadStateDict(Fixture(file));
        var model = TinyVit();
        Assert.Equal(model.StateDict().Keys.Order(), sd.Keys.Order());
        float err = MaxLogitError(model, sd, expected);
        Assert.True(err < 5e-6f, $"max |logit error| {err}");   // measured 6.0e-7 (fp16: 3.6e-7)
    }

    [Fact]
    public void LegacyFileGivesBitIdenticalTensorsToTheZipFile()
    {
        var zip = TorchFile.LoadStateDict(Fixture("tv_vit.pth"));
        var legacy = TorchFile.LoadStateDict(Fixture("tv_vit_legacy.pth"));
        Assert.Equal(zip.Keys, legacy.Keys);
        foreach (var (k, t) in zip)
        {
            Assert.Equal(t.Shape, legacy[k].Shape);
            Assert.True(t.Data.AsSpan().SequenceEqual(legacy[k].Data), k);
        }
    }

    [Fact]
    public void DeitCheckpointIsFoundUnderModelAndMapsFromTimmKeys()
    {
        using (var archive = TorchFile.Open(Fixture("deit_checkpoint.pth")))
        {
            var root = Assert.IsType<PickleDict>(archive.Root);
            Assert.Equal(299L, root["epoch"]);
            Assert.IsType<PickleDict>(root["optimizer"]);
            archive.FindStateDict(out string? under);
            Assert.Equal("model", under);
        }
        var timm = TorchFile.LoadStateDict(Fixture("deit_checkpoint.pth"));
        Assert.Contains("blocks.0.attn.qkv.weight", timm.Keys);
        var model = TinyVit();
        float err = MaxLogitError(model, TimmKeys.FromTimm(timm, model), "vit_logits");
        Assert.True(err < 5e-6f, $"max |logit error| {err}");   // measured 6.0e-7 (fp16: 3.6e-7)
    }

    [Fact]
    public void DistilledDeitLoadsWithBothTokensAndHeads()
    {
        var sd = TorchFile.LoadStateDict(Fixture("deit_distilled.pth"));
        Assert.Equal(35, sd.Count);
        Assert.Equal([1, 1, 48], sd["dist_token"].Shape);
        Assert.Equal([1, 18, 48], sd["pos_embed"].Shape);
        Assert.Equal([10, 48], sd["head_dist.weight"].Shape);
        Assert.Equal([10, 48], sd["head.weight"].Shape);
    }

    [Fact]
    public void ResNetStateDictWithInt64BuffersGivesPyTorchsLogits()
    {
        var sd = TorchFile.LoadStateDict(Fixture("resnet.pth"));
        Assert.Equal([], sd["bn1.num_batches_tracked"].Shape);
        var model = new ResNet(new ResNetConfig { Block = "BasicBlock", Layers = [1, 1, 1, 1], NumClasses = 10 });
        float err = MaxLogitError(model, sd, "resnet_logits");
        Assert.True(err < 5e-5f, $"max |logit error| {err}");   // measured 1.1e-5
    }

    [Fact]
    public void EvilPickleIsRefusedWithTheGlobalsNameAndNothingRuns()
    {
        const string pwned = "/tmp/vitsharp-pwned";
        File.Delete(pwned);
        var e = Assert.Throws<TorchFileException>(() => TorchFile.LoadStateDict(Fixture("evil.pth")));
        Assert.Contains("refuses global 'posix.system' at pickle offset 191", e.Message);
        Assert.Equal(Fixture("evil.pth"), e.FilePath);
        Assert.Throws<TorchFileException>(() => TorchFile.Open(Fixture("evil.pth")));
        Assert.False(File.Exists(pwned));
    }

    // ---- round trips through TorchFile.Save ----

    [Fact]
    public void SaveThenLoadReturnsTheSameTensorsIncludingZeroDimAndEmpty()
    {
        var rng = new Random(5);
        var sd = new Dictionary<string, Tensor>
        {
            ["a.weight"] = Tensor.RandN(rng, 0, 1, 7, 5, 3),
            ["a.bias"] = Tensor.RandN(rng, 0, 1, 5),
            ["scalar"] = new Tensor([3.5f]),
            ["empty"] = new Tensor(0, 4),
            ["üñï.code"] = Tensor.RandN(rng, 0, 1, 1, 1, 1, 1),
        };
        sd["scalar"] = new Tensor([3.5f], []);
        string path = Temp("rt.pth");
        TorchFile.Save(path, sd);
        var back = TorchFile.LoadStateDict(path);
        Assert.Equal(sd.Keys, back.Keys);
        foreach (var (k, t) in sd)
        {
            Assert.Equal(t.Shape, back[k].Shape);
            Assert.True(t.Data.AsSpan().SequenceEqual(back[k].Data), k);
        }
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
        // Records are 64-byte aligned and the file is a valid zip (CRCs checked by ZipArchive on read).
        using var zip = ZipFile.OpenRead(path);
        Assert.Equal(["archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/data/1", "archive/data/2", "archive/data/3", "archive/data/4", "archive/version"],
            zip.Entries.Select(e => e.FullName));
        foreach (var entry in zip.Entries) { using var s = entry.Open(); s.CopyTo(Stream.Null); }
        using var archive = TorchFile.Open(path);
        Assert.All(archive.Storages.Values, s => Assert.Equal(DType.F32, s.DType));
    }

    [Fact]
    public void ViewsOfSharedStoragesAreReadWithOffsetsAndStrides()
    {
        var values = Enumerable.Range(0, 24).Select(i => (float)i).ToArray();
        var storage = TorchStorageData.FromFloats(values);
        var entries = new[]
        {
            new TorchSaveEntry("whole", storage, 0, [2, 3, 4], [12, 4, 1]),
            new TorchSaveEntry("slice", storage, 5, [2, 3], [3, 1]),           // contiguous run at an offset
            new TorchSaveEntry("transposed", storage, 0, [4, 6], [1, 4]),      // non-contiguous: gathered
            new TorchSaveEntry("expanded", storage, 2, [3, 2], [0, 1]),         // stride 0 (broadcast)
            new TorchSaveEntry("strided", storage, 1, [2, 2, 2], [12, 6, 3]),
            new TorchSaveEntry("scalar", storage, 23, [], []),
            new TorchSaveEntry("empty", storage, 24, [0, 5], [5, 1]),
        };
        string path = Temp("views.pth");
        TorchFile.Save(path, entries);
        using (var archive = TorchFile.Open(path)) Assert.Single(archive.Storages);
        var sd = TorchFile.LoadStateDict(path);
        Assert.Equal(values, sd["whole"].Data);
        Assert.Equal([5f, 6, 7, 8, 9, 10], sd["slice"].Data);
        Assert.Equal(Enumerable.Range(0, 24).Select(i => (float)(i % 6 * 4 + i / 6)), sd["transposed"].Data);
        Assert.Equal([2f, 3, 2, 3, 2, 3], sd["expanded"].Data);
        Assert.Equal([1f, 4, 7, 10, 13, 16, 19, 22], sd["strided"].Data);
        Assert.Equal(23f, sd["scalar"].Item());
        Assert.Equal([], sd["scalar"].Shape);
        Assert.Equal([0, 5], sd["empty"].Shape);
    }

    [Fact]
    public void HalfBFloat16AndInt64StoragesAreConvertedToFloat()
    {
        var floats = new[] { 0.1f, -2.5f, 65504f, 1e-3f };
        var entries = new[]
        {
            TorchSaveEntry.Contiguous("h", TorchStorageData.FromFloatsAsHalf(floats), 2, 2),
            TorchSaveEntry.Contiguous("bf", TorchStorageData.FromFloatsAsHalf(floats, bfloat16: true), 4),
            TorchSaveEntry.Contiguous("i", TorchStorageData.FromInt64([-3, 0, 1L << 40]), 3),
            TorchSaveEntry.Contiguous("d", TorchStorageData.FromBytes(DType.F64, BitConverter.GetBytes(0.25).Concat(BitConverter.GetBytes(-1e300)).ToArray()), 2),
            new TorchSaveEntry("ht", TorchStorageData.FromFloatsAsHalf(floats), 0, [2, 2], [1, 2]),
        };
        string path = Temp("dtypes.pth");
        TorchFile.Save(path, entries);
        var sd = TorchFile.LoadStateDict(path);
        Assert.Equal(floats.Select(f => (float)(Half)f), sd["h"].Data);
        Assert.Equal(floats.Select(f => BFloat16.ToSingle(BFloat16.FromSingle(f))), sd["bf"].Data);
        Assert.Equal([-3f, 0f, (float)(1L << 40)], sd["i"].Data);
        Assert.Equal([0.25f, float.NegativeInfinity], sd["d"].Data);
        Assert.Equal(new[] { 0, 2, 1, 3 }.Select(i => (float)(Half)floats[i]), sd["ht"].Data);
    }

    [Fact]
    public void DataParallelModulePrefixIsStrippedOnlyWhenEveryKeyHasIt()
    {
        var t = new Tensor([1f, 2f], 2);
        string path = Temp("dp.pth");
        TorchFile.Save(path, [KeyValuePair.Create("module.a", t), KeyValuePair.Create("module.b.c", t)]);
        Assert.Equal(["a", "b.c"], TorchFile.LoadStateDict(path).Keys);
        TorchFile.Save(path, [KeyValuePair.Create("module.a", t), KeyValuePair.Create("b", t)]);
        Assert.Equal(["module.a", "b"], TorchFile.LoadStateDict(path).Keys);
    }

    [Theory]
    [InlineData("state_dict")]
    [InlineData("model_ema")]
    [InlineData("module")]
    public void CheckpointStateDictIsFoundUnderItsKeyAndNonTensorsAreSkipped(string under)
    {
        var p = new PickleBuilder().Proto().EmptyDict().Mark()
            .Str("epoch").Int(3)
            .Str(under).Global("collections", "OrderedDict").EmptyTuple().Reduce().Mark()
                .Str("module.w").Tensor("0", "FloatStorage", 2, 0, [2], [1])
                .Str("module.step").Int(7)
            .SetItems()
            .SetItems().Stop();
        string path = Temp("ckpt.pth");
        TorchFile.WriteZip(path, p.Bytes, [("0", () => new byte[] { 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40 })]);
        var sd = TorchFile.LoadStateDict(path);
        Assert.Equal(["w"], sd.Keys);
        Assert.Equal([1f, 2f], sd["w"].Data);
    }

    [Fact]
    public void DictWithoutAStateDictIsAnError()
    {
        var p = new PickleBuilder().Proto().EmptyDict().Str("epoch").Int(3).SetItem().Stop();
        string path = Temp("nosd.pth");
        TorchFile.WriteZip(path, p.Bytes, []);
        Assert.Contains("no state_dict", Assert.Throws<TorchFileException>(() => TorchFile.LoadStateDict(path)).Message);
    }

    // ---- bad input: each an exception before any dictionary is returned ----

    private TorchFileException Refused(string path) => Assert.Throws<TorchFileException>(() => TorchFile.LoadStateDict(path));

    private string HandWritten(string name, PickleBuilder pickle, params (string Key, int Bytes)[] storages)
    {
        string path = Temp(name);
        TorchFile.WriteZip(path, pickle.Bytes, storages.Select(s => (s.Key, (TorchZip.Source)(() => new byte[s.Bytes]))).ToList());
        return path;
    }

    [Fact]
    public void TruncatedZipIsRefusedAtEveryLength()
    {
        var bytes = File.ReadAllBytes(Fixture("tv_vit.pth"));
        foreach (int length in new[] { 3, 4, 30, 100, 5000, bytes.Length / 2, bytes.Length - 23, bytes.Length - 1 })
        {
            string path = Temp($"trunc{length}.pth");
            File.WriteAllBytes(path, bytes[..length]);
            var e = Refused(path);
            Assert.StartsWith(path + ": ", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [Fact]
    public void TruncatedLegacyFileIsRefused()
    {
        var bytes = File.ReadAllBytes(Fixture("tv_vit_legacy.pth"));
        foreach (int length in new[] { 1, 20, 1000, bytes.Length / 2, bytes.Length - 1 })
        {
            string path = Temp($"ltrunc{length}.pth");
            File.WriteAllBytes(path, bytes[..length]);
            Refused(path);
        }
    }

    [Theory]
    [InlineData("hello, world")]
    [InlineData("")]
    [InlineData("\u0080\u0002N.")]
    public void WrongMagicIsRefused(string content)
    {
        string path = Temp("magic.pth");
        File.WriteAllBytes(path, content.Select(c => (byte)c).ToArray());
        Assert.Contains("neither a zip-format nor a legacy torch.save file", Refused(path).Message);
    }

    [Fact]
    public void ZipWithoutDataPklIsRefused()
    {
        string path = Temp("plain.zip");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create)) zip.CreateEntry("readme.txt");
        Assert.Contains("without a NAME/data.pkl", Refused(path).Message);
    }

    [Fact]
    public void StorageShorterThanItsTensorIsRefused()
    {
        // The pickle declares 100 elements; the record holds 10 floats.
        var p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", 100, 0, [100], [1]).SetItems().Stop();
        var e = Refused(HandWritten("short.pth", p, ("0", 40)));
        Assert.Contains("storage '0' has 40 bytes but declares 100 F32 elements (400 bytes)", e.Message);
        Assert.Equal("0", e.Key);
        // The view reaches past the declared elements (size × stride + offset).
        p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", 10, 4, [4, 2], [2, 1]).SetItems().Stop();
        Assert.Contains("reaches element 11 of a storage of 10 elements", Refused(HandWritten("view.pth", p, ("0", 40))).Message);
        // A storage record missing altogether.
        p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("3", "FloatStorage", 1, 0, [1], [1]).SetItems().Stop();
        Assert.Contains("has no record archive/data/3", Refused(HandWritten("missing.pth", p)).Message);
    }

    [Fact]
    public void NegativeAndOutOfBoundsStridesAreRefused()
    {
        var p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", 10, 9, [10], [-1]).SetItems().Stop();
        Assert.Contains("negative stride", Refused(HandWritten("neg.pth", p, ("0", 40))).Message);
        var storage = TorchStorageData.FromFloats(new float[10]);
        string path = Temp("oob.pth");
        TorchFile.Save(path, [new TorchSaveEntry("w", storage, 0, [3, 4], [4, 1])], validate: false);
        Assert.Contains("reaches element 11", Refused(path).Message);
        Assert.Throws<ArgumentException>(() => TorchFile.Save(path, [new TorchSaveEntry("w", storage, 0, [3, 4], [4, 1])]));
    }

    [Fact]
    public void UnknownStorageTypeIsRefused()
    {
        var p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "ComplexDoubleStorage", 1, 0, [1], [1]).SetItems().Stop();
        Assert.Contains("refuses global 'torch.ComplexDoubleStorage'", Refused(HandWritten("complex.pth", p, ("0", 16))).Message);
        p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "UntypedStorage", 1, 0, [1], [1]).SetItems().Stop();
        Assert.Contains("refuses global 'torch.UntypedStorage'", Refused(HandWritten("untyped.pth", p, ("0", 16))).Message);
    }

    [Fact]
    public void TerabyteDeclaredSizeAllocatesNothing()
    {
        const long Tera = 1L << 40;
        var p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", Tera, 0, [1 << 20, 1 << 20], [1 << 20, 1]).SetItems().Stop();
        string path = HandWritten("tera.pth", p, ("0", 64));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(path);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20);
        Assert.Contains($"has 64 bytes but declares {Tera} F32 elements", e.Message);
        // Declared count overflowing the byte count.
        p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "DoubleStorage", long.MaxValue / 2, 0, [1], [1]).SetItems().Stop();
        Assert.Contains("declares", Refused(HandWritten("overflow.pth", p, ("0", 64))).Message);
    }

    [Fact]
    public void DuplicateStateDictKeysAreRefusedNamingTheKey()
    {
        var p = new PickleBuilder().BeginOrderedDict()
            .Str("encoder.ln.weight").Tensor("0", "FloatStorage", 1, 0, [1], [1])
            .Str("encoder.ln.bias").Tensor("0", "FloatStorage", 1, 0, [1], [1])
            .Str("encoder.ln.weight").Tensor("0", "FloatStorage", 1, 0, [1], [1])
            .SetItems().Stop();
        var e = Refused(HandWritten("dup.pth", p, ("0", 4)));
        Assert.Contains("duplicate key 'encoder.ln.weight'", e.Message);
        Assert.Equal("encoder.ln.weight", e.Key);
        Assert.Throws<ArgumentException>(() => TorchFile.Save(Temp("dup2.pth"), [KeyValuePair.Create("a", new Tensor(1)), KeyValuePair.Create("a", new Tensor(1))]));
    }

    [Fact]
    public void UnknownGlobalAndMissingStopAreRefused()
    {
        var p = new PickleBuilder().BeginOrderedDict().Str("w").Global("builtins", "eval").Str("1").Op(0x85).Reduce().SetItems().Stop();
        Assert.Contains("refuses global 'builtins.eval'", Refused(HandWritten("eval.pth", p)).Message);
        p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", 1, 0, [1], [1]).SetItems();
        Assert.Contains("ends before its STOP", Refused(HandWritten("nostop.pth", p, ("0", 4))).Message);
    }

    [Fact]
    public void CompressedStorageRecordIsRefused()
    {
        var p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", 256, 0, [256], [1]).SetItems().Stop();
        string path = Temp("deflated.pth");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            using (var s = zip.CreateEntry("archive/data.pkl", CompressionLevel.Optimal).Open()) s.Write(p.Bytes);
            using (var s = zip.CreateEntry("archive/data/0", CompressionLevel.Optimal).Open()) s.Write(new byte[1024]);
        }
        Assert.Contains("storage '0' is compressed (zip method 8)", Refused(path).Message);
    }

    [Fact]
    public void ViewsRepeatingOneStorageCannotAmplifyIntoAHugeAllocation()
    {
        // 64 MiB of float32 in one storage, viewed whole by 100 tensors: 6.4 GB of output from a 64 MiB file.
        const int N = 1 << 24;
        var p = new PickleBuilder().BeginOrderedDict();
        for (int i = 0; i < 100; i++) p.Str($"w{i}").Tensor("0", "FloatStorage", N, 0, [N], [1]);
        string path = HandWritten("amplify.pth", p.SetItems().Stop(), ("0", 4 * N));
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Contains("over 4× the 16777216 its storages hold", Refused(path).Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20);
        // A broadcast (stride 0) whose element count overflows is refused in the pickle.
        p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", 1, 0, [1L << 40, 1L << 40], [0, 0]).SetItems().Stop();
        Assert.Contains("overflows", Refused(HandWritten("broadcast.pth", p, ("0", 4))).Message);
        p = new PickleBuilder().BeginOrderedDict().Str("w").Tensor("0", "FloatStorage", 1, 0, [1L << 20, 1L << 20], [0, 0]).SetItems().Stop();
        Assert.Contains("over 4×", Refused(HandWritten("broadcast2.pth", p, ("0", 4))).Message);
    }

    [Fact]
    public void TensorWrappedByRebuildFromTypeV2AndParametersLoad()
    {
        // torch._tensor._rebuild_from_type_v2(_rebuild_tensor_v2, torch.nn.parameter.Parameter, (args...), {}) and
        // torch._utils._rebuild_parameter(tensor, True, OrderedDict()).
        var p = new PickleBuilder().BeginOrderedDict()
            .Str("a").Global("torch._tensor", "_rebuild_from_type_v2").Mark()
                .Global("torch._utils", "_rebuild_tensor_v2").Global("torch.nn.parameter", "Parameter")
                .Mark().Mark().Str("storage").Global("torch", "FloatStorage").Str("0").Str("cpu").Int(2).Tuple().Op('Q')
                .Int(1).IntTuple(1).IntTuple(1).False().Global("collections", "OrderedDict").EmptyTuple().Reduce().Tuple()
                .EmptyDict().Tuple().Reduce()
            .Str("b").Global("torch._utils", "_rebuild_parameter").Tensor("0", "FloatStorage", 2, 0, [2], [1])
                .Op(0x88).Global("collections", "OrderedDict").EmptyTuple().Reduce().Op(0x87).Reduce()
            .SetItems().Stop();
        string path = Temp("wrapped.pth");
        TorchFile.WriteZip(path, p.Bytes, [("0", () => new byte[] { 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40 })]);
        var sd = TorchFile.LoadStateDict(path);
        Assert.Equal([2f], sd["a"].Data);
        Assert.Equal([1f, 2f], sd["b"].Data);
        using var archive = TorchFile.Open(path);
        Assert.True(((TorchTensorRef)((PickleDict)archive.Root!)["b"]!).RequiresGrad);
    }

    [Fact]
    public void RandomlyCorruptedFixturesFailOnlyWithTorchFileException()
    {
        // Seeded mutation fuzzing (bit flips, random bytes, truncation) of both formats; 23,000 runs of this loop
        // during development also gave only successes and TorchFileExceptions.
        var rng = new Random(12);
        var files = new[] { "tv_vit.pth", "tv_vit_legacy.pth", "deit_checkpoint.pth" }.Select(f => File.ReadAllBytes(Fixture(f))).ToArray();
        string path = Temp("fuzz.pth");
        for (int i = 0; i < 300; i++)
        {
            var b = (byte[])files[i % files.Length].Clone();
            for (int k = rng.Next(1, 8); k > 0; k--)
            {
                int at = rng.Next(2) == 0 ? rng.Next(Math.Min(6000, b.Length)) : rng.Next(b.Length);
                b[at] = rng.Next(2) == 0 ? (byte)rng.Next(256) : (byte)(b[at] ^ (1 << rng.Next(8)));
            }
            if (rng.Next(10) == 0) b = b[..rng.Next(b.Length)];
            File.WriteAllBytes(path, b);
            try { TorchFile.LoadStateDict(path); }
            catch (TorchFileException) { }
        }
    }

    [Fact]
    public void CliReportsTorchFileErrorsAsUserErrors()
    {
        var e = new TorchFileException("x.pth", "refuses global 'posix.system' at pickle offset 3: nope", offset: 3);
        var err = new StringWriter();
        typeof(VitSharp.Cli.CliApp).GetMethod("ReportError", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .Invoke(null, [e, err, false]);
        Assert.Equal("vit: error: x.pth: refuses global 'posix.system' at pickle offset 3: nope", err.ToString().Trim());
    }
}
