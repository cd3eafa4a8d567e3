using System.Buffers;
using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Optim;
using VitSharp.Tests.Data;
using VitSharp.Training;

namespace VitSharp.Tests.Training;

public class CheckpointTests
{
    private static readonly ModelSpec Spec = ModelSpec.ViT(new ViTConfig
    {
        ImageHeight = 8, ImageWidth = 8, PatchHeight = 4, PatchWidth = 4, NumClasses = 3, Dim = 16, Depth = 1,
        Heads = 2, MlpDim = 32, DimHead = 8, Channels = 1,
    });

    private static readonly JsonObject Data = new DataInfo("folder", ["a", "b", "c"], 1, 8, 8, [0.5f], [0.25f]).ToJson();

    /// <summary>A model and an AdamW that has taken two steps (so its state is not all zeros).</summary>
    private static (Module Model, AdamW Optimizer) Trained(int seed)
    {
        Init.Seed(seed);
        var model = Spec.Build();
        model.Train();
        var opt = new AdamW(model.NamedParameters(), 1e-2f);
        for (int i = 0; i < 2; i++)
        {
            using var scope = TensorScope.Begin();
            model.ZeroGrad();
            var loss = F.CrossEntropy(model.Forward(TestData.Uniform(seed + i, 0, 1, 4, 1, 8, 8)), [0, 1, 2, 1]);
            loss.Backward();
            opt.Step();
        }
        return (model, opt);
    }

    private static JsonObject Training(int epoch) => new() { ["epoch"] = epoch, ["batch"] = 0, ["note"] = "ü ✓" };

    [Fact]
    public void SaveLoadRoundTrip()
    {
        using var dir = new TempDir("ckpt");
        var (model, opt) = Trained(1);
        string path = dir.File("sub/dir/c.safetensors"); // missing folders are created
        Checkpoint.Save(path, model, new CheckpointInfo(Spec, Data, Training(3)), opt);

        var loaded = Checkpoint.Load(path);
        Assert.Equal(path, loaded.Path);
        Assert.Equal(Spec.ToJson().ToJsonString(), loaded.Info.Model.ToJson().ToJsonString());
        Assert.Equal(Data.ToJsonString(), loaded.Info.Data.ToJsonString());
        Assert.Equal(Training(3).ToJsonString(), loaded.Info.Training.ToJsonString());
        Assert.Equal(DataInfo.FromJson(Data).ClassNames, DataInfo.FromJson(loaded.Info.Data).ClassNames);

        var expected = model.StateDict();
        var actual = loaded.Model.StateDict();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, t) in expected) Assert.Equal(t.Data, actual[k].Data);

        var names = model.NamedParameters().Select(p => p.Name).ToArray();
        var keys = names.SelectMany(n => new[] { "exp_avg." + n, "exp_avg_sq." + n, "step." + n }).Order(StringComparer.Ordinal);
        Assert.Equal(keys, loaded.OptimizerState.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, t) in opt.StateDict()) Assert.Equal(t.Data, loaded.OptimizerState[k].Data);
        Assert.All(names, n => Assert.Equal(2f, loaded.OptimizerState["step." + n].Data[0]));
        Assert.Contains(loaded.OptimizerState, kv => kv.Key.StartsWith("exp_avg_sq.") && kv.Value.Data.Any(v => v != 0));

        // The restored optimizer continues exactly as the original.
        var opt2 = new AdamW(loaded.Model.NamedParameters(), 1e-2f);
        opt2.LoadStateDict(loaded.OptimizerState, 2);
        foreach (var (m, o) in new[] { (model, (Optimizer)opt), (loaded.Model, opt2) })
        {
            using var scope = TensorScope.Begin();
            m.ZeroGrad();
            F.CrossEntropy(m.Forward(TestData.Uniform(9, 0, 1, 4, 1, 8, 8)), [2, 1, 0, 0]).Backward();
            o.Step();
        }
        foreach (var (k, t) in model.StateDict()) Assert.Equal(t.Data, loaded.Model.StateDict()[k].Data);
    }

    [Fact]
    public void TheFileIsAPlainStateDictPlusOptimizerKeys()
    {
        using var dir = new TempDir("ckpt");
        var (model, opt) = Trained(2);
        string path = dir.File("c.safetensors");
        Checkpoint.Save(path, model, new CheckpointInfo(Spec, Data, Training(1)), opt);

        var all = Weights.Load(path);
        var plain = all.Where(kv => !kv.Key.StartsWith("optimizer.", StringComparison.Ordinal)).ToDictionary();
        Assert.Equal(model.StateDict().Keys.Order(StringComparer.Ordinal), plain.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(opt.StateDict().Count, all.Count - plain.Count);
        Assert.All(all.Keys.Except(plain.Keys), k => Assert.Matches(@"^optimizer\.(exp_avg|exp_avg_sq|step)\.", k));

        // A plain state_dict loads strictly into a freshly built model.
        var fresh = Spec.Build();
        fresh.LoadStateDict(plain, strict: true);
        foreach (var (k, t) in model.StateDict()) Assert.Equal(t.Data, fresh.StateDict()[k].Data);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(Checkpoint.Format, file.Metadata["format"]);
        Assert.True(file.Metadata.ContainsKey("vitsharp.model"));
        Assert.True(file.Metadata.ContainsKey("vitsharp.data"));
        Assert.True(file.Metadata.ContainsKey("vitsharp.training"));
    }

    [Fact]
    public void WithoutOptimizerThereAreNoOptimizerKeys()
    {
        using var dir = new TempDir("ckpt");
        var (model, _) = Trained(3);
        string path = dir.File("c.safetensors");
        Checkpoint.Save(path, model, new CheckpointInfo(Spec, Data, Training(0)));
        var loaded = Checkpoint.Load(path);
        Assert.Empty(loaded.OptimizerState);
        Assert.Equal(model.StateDict().Keys.Order(StringComparer.Ordinal), Weights.Load(path).Keys.Order(StringComparer.Ordinal));
    }

    /// <summary>Memory whose bytes cannot be read: writing it fails after the header and earlier tensors were written.</summary>
    private sealed class ThrowingMemory(int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => throw new IOException("simulated crash while writing tensor data");
        public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException();
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
        public override Memory<byte> Memory => CreateMemory(length);
    }

    [Fact]
    public void AFailedWriteMidwayLeavesThePreviousCheckpointInPlace()
    {
        using var dir = new TempDir("ckpt");
        var (model, opt) = Trained(4);
        string path = dir.File("checkpoint.safetensors");
        Checkpoint.Save(path, model, new CheckpointInfo(Spec, Data, Training(1)), opt);
        byte[] good = File.ReadAllBytes(path);

        var entries = new List<SafeTensorsWriter.Entry>
        {
            SafeTensorsWriter.F32("a", [1000], new float[1000]),
            new("b", DType.F32, [4], new ThrowingMemory(16).Memory),
        };
        var e = Assert.Throws<IOException>(() => SafeTensorsWriter.Save(path, entries, new Dictionary<string, string> { ["format"] = Checkpoint.Format }));
        Assert.Contains("simulated crash", e.Message);

        Assert.Equal(good, File.ReadAllBytes(path));
        Assert.False(File.Exists(path + ".tmp"), "the partial temporary file was left behind");
        Assert.Equal(["checkpoint.safetensors"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
        Assert.Equal(Training(1).ToJsonString(), Checkpoint.Load(path).Info.Training.ToJsonString());
    }

    [Fact]
    public void ACheckpointSaveThatCannotWriteLeavesThePreviousCheckpointInPlace()
    {
        using var dir = new TempDir("ckpt");
        var (model, opt) = Trained(5);
        string path = dir.File("checkpoint.safetensors");
        Checkpoint.Save(path, model, new CheckpointInfo(Spec, Data, Training(1)), opt);
        byte[] good = File.ReadAllBytes(path);

        // A directory where the temporary file would go makes the write fail.
        Directory.CreateDirectory(path + ".tmp");
        var (model2, opt2) = Trained(6);
        Assert.ThrowsAny<Exception>(() => Checkpoint.Save(path, model2, new CheckpointInfo(Spec, Data, Training(2)), opt2));
        Assert.Equal(good, File.ReadAllBytes(path));
        Assert.Equal(Training(1).ToJsonString(), Checkpoint.Load(path).Info.Training.ToJsonString());

        // Once the obstacle is gone, saving works and replaces the file.
        Directory.Delete(path + ".tmp");
        Checkpoint.Save(path, model2, new CheckpointInfo(Spec, Data, Training(2)), opt2);
        Assert.Equal(Training(2).ToJsonString(), Checkpoint.Load(path).Info.Training.ToJsonString());
        Assert.False(File.Exists(path + ".tmp"));
    }

    private static void AssertLoadFails(string path)
    {
        var e = Record.Exception(() => Checkpoint.Load(path));
        Assert.NotNull(e);
        Assert.True(e is CheckpointException or SafeTensorsException, $"unexpected {e.GetType().Name}: {e.Message}");
        Assert.Contains(Path.GetFileName(path), e.Message);
    }

    [Fact]
    public void TruncatedCheckpointsFailNamingTheFile()
    {
        using var dir = new TempDir("ckpt");
        var (model, opt) = Trained(7);
        string path = dir.File("good.safetensors");
        Checkpoint.Save(path, model, new CheckpointInfo(Spec, Data, Training(1)), opt);
        byte[] bytes = File.ReadAllBytes(path);
        foreach (int keep in new[] { 0, 5, 100, bytes.Length / 2, bytes.Length - 1 })
        {
            string cut = dir.File($"cut{keep}.safetensors");
            File.WriteAllBytes(cut, bytes[..keep]);
            AssertLoadFails(cut);
        }
    }

    [Fact]
    public void ASafeTensorsFileWithoutFormatMetadataIsNotACheckpoint()
    {
        using var dir = new TempDir("ckpt");
        var (model, _) = Trained(8);
        string path = dir.File("weights.safetensors");
        Weights.Save(path, model.StateDict());
        AssertLoadFails(path);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("format", e.Message);

        string other = dir.File("other.safetensors");
        Weights.Save(other, model.StateDict(), new Dictionary<string, string> { ["format"] = "pt" });
        Assert.Contains("'pt'", Assert.Throws<CheckpointException>(() => Checkpoint.Load(other)).Message);
    }

    [Fact]
    public void AMissingFileFailsNamingTheFile()
    {
        using var dir = new TempDir("ckpt");
        string path = dir.File("nowhere.safetensors");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void MalformedMetadataFailsNamingTheFile()
    {
        using var dir = new TempDir("ckpt");
        var (model, _) = Trained(9);
        string path = dir.File("bad-meta.safetensors");
        Weights.Save(path, model.StateDict(), new Dictionary<string, string>
        {
            ["format"] = Checkpoint.Format, ["vitsharp.model"] = Spec.ToJson().ToJsonString(), ["vitsharp.data"] = "{not json",
            ["vitsharp.training"] = "{}",
        });
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("bad-meta.safetensors", e.Message);
        Assert.Contains("vitsharp.data", e.Message);

        // Weights that do not fit the model spec.
        string wrong = dir.File("wrong-weights.safetensors");
        var sd = model.StateDict();
        sd.Remove(sd.Keys.First());
        Weights.Save(wrong, sd, new Dictionary<string, string>
        {
            ["format"] = Checkpoint.Format, ["vitsharp.model"] = Spec.ToJson().ToJsonString(), ["vitsharp.data"] = Data.ToJsonString(),
            ["vitsharp.training"] = "{}",
        });
        Assert.Contains("wrong-weights.safetensors", Assert.Throws<CheckpointException>(() => Checkpoint.Load(wrong)).Message);
    }
}
