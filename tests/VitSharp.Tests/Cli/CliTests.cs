using System.Text.Json.Nodes;
using VitSharp.Cli;
using VitSharp.IO;

namespace VitSharp.Tests.Cli;

/// <summary>The <c>vit</c> command line, run in-process through <see cref="CliApp.Run"/>.</summary>
public sealed class CliTests : IDisposable
{
    private readonly string _dir;

    public CliTests()
    {
        _dir = Path.Combine(Path.GetTempPath(), "vitsharp-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => TrainCliTests.Run(args);

    /// <summary>Copies the vit fixture into the temp dir (optionally leaving a file out) and returns the new prefix.</summary>
    private string CopyVitFixture(params string[] skipSuffixes)
    {
        string src = TestFixtures.Prefix("vit"), dst = Path.Combine(_dir, "vit");
        foreach (var suffix in new[] { ".json", ".weights.safetensors", ".io.safetensors" })
            if (!skipSuffixes.Contains(suffix)) File.Copy(src + suffix, dst + suffix);
        return dst;
    }

    /// <summary>Exit code 2 and exactly one stderr line "vit: error: …" containing every fragment; no stack trace.</summary>
    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] fragments)
    {
        Assert.Equal(2, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{r.Err}");
        Assert.StartsWith("vit: error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("Exception", r.Err);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    // ---------------------------------------------------------------- summary

    [Trait("Category", "Slow")]
    [Fact]
    public void Summary_VitB16_PrintsParameterCountAndPublishedCount()
    {
        var r = Run("summary", "--model", "vit-b16");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        Assert.Contains("Total parameters: 86,543,080 (published: 86,543,080", r.Out);
        Assert.Contains("transformer.layers.11.1.net.1", r.Out);
        Assert.Contains("[1, 197, 3072]", r.Out);                 // output shape recorded by the forward hook
        Assert.Contains("[1, 1000]", r.Out);
        Assert.Contains("forward pass", r.Out);
    }

    [Fact]
    public void Summary_DefaultIsFashionMnistModel_AndJsonIsConsistent()
    {
        var table = Run("summary");
        Assert.Equal(0, table.Code);
        Assert.Contains("vit-fmnist", table.Out);
        // vit-pytorch's ViT at dim 96, depth 6, 3 heads of 32, mlp 192, patch 4 on 28×28×1, 10 classes, by hand:
        // patch embedding LN(16) 32 + Linear(16, 96) 1,632 + LN(96) 192; positions 50·96 = 4,800; cls 96;
        // per layer LN 192 + to_qkv 96·288 = 27,648 + to_out 96·96 + 96 + LN 192 + 96·192 + 192 + 192·96 + 96 = 74,496 (× 6);
        // final LN 192; head 96·10 + 10 = 970 → 454,890.
        Assert.Contains("Total parameters: 454,890", table.Out);

        var json = Run("summary", "--model", "vit-fmnist", "--json");
        Assert.Equal(0, json.Code);
        var root = JsonNode.Parse(json.Out)!.AsObject();
        Assert.Equal(454_890, root["total_parameters"]!.GetValue<long>());
        // The wider preset (the default before): 803,114 by the same count at dim 128, 4 heads, mlp 256.
        var wide = JsonNode.Parse(Run("summary", "--model", "vit-fmnist-128", "--json").Out)!.AsObject();
        Assert.Equal(803_114, wide["total_parameters"]!.GetValue<long>());
        var modules = root["modules"]!.AsArray();
        Assert.Equal(root["total_parameters"]!.GetValue<long>(), modules.Sum(m => m!["own_parameters"]!.GetValue<long>()));
        var model = modules[0]!;
        Assert.Equal("", model["name"]!.GetValue<string>());
        Assert.Equal([1, 10], model["output_shape"]!.AsArray().Select(x => x!.GetValue<int>()));
    }

    [Fact]
    public void Summary_DepthLimitsRows()
    {
        var r = Run("summary", "--depth", "1");
        Assert.Equal(0, r.Code);
        Assert.Contains("transformer", r.Out);
        Assert.DoesNotContain("transformer.layers", r.Out);
        Assert.Contains("deeper modules not shown", r.Out);
    }

    [Fact]
    public void Summary_UnknownPreset_IsOneLineError()
    {
        AssertOneLineError(Run("summary", "--model", "vit-huge99"), "unknown model preset 'vit-huge99'", "vit-b16");
    }

    // ---------------------------------------------------------------- parity

    [Fact]
    public void Parity_VitFixture_PassesWithExitZero()
    {
        var r = Run("parity", TestFixtures.Prefix("vit"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Equal("", r.Err);
        Assert.Contains("logits", r.Out);
        Assert.Contains("adamw.mlp_head.weight", r.Out);
        string last = r.Out.TrimEnd().Split('\n')[^1];
        Assert.Matches(@"^PASS: (\d+)/\1 within tolerance$", last);
    }

    [Fact]
    public void Parity_Json_ReportsEveryRow()
    {
        var r = Run("parity", TestFixtures.Prefix("vit"), "--json");
        Assert.Equal(0, r.Code);
        var root = JsonNode.Parse(r.Out)!.AsObject();
        Assert.True(root["passed"]!.GetValue<bool>());
        Assert.Equal(0, root["failed"]!.GetValue<int>());
        Assert.Equal(root["total"]!.GetValue<int>(), root["rows"]!.AsArray().Count);
    }

    [Fact]
    public void Parity_MissingWeightsFile_IsOneLineError()
    {
        string prefix = CopyVitFixture(".weights.safetensors");
        AssertOneLineError(Run("parity", prefix), "vit.weights.safetensors", "not found");
    }

    [Fact]
    public void Parity_MissingFixtureEntirely_IsOneLineError()
    {
        AssertOneLineError(Run("parity", Path.Combine(_dir, "nothing-here")), "nothing-here.json");
    }

    [Fact]
    public void Parity_TruncatedWeightsFile_IsOneLineError()
    {
        string prefix = CopyVitFixture();
        string weights = prefix + ".weights.safetensors";
        long length = new FileInfo(weights).Length;
        using (var f = new FileStream(weights, FileMode.Open)) f.SetLength(length / 2);
        AssertOneLineError(Run("parity", prefix), "vit.weights.safetensors");
    }

    [Fact]
    public void Parity_TruncatedHeader_IsOneLineError()
    {
        string prefix = CopyVitFixture();
        string weights = prefix + ".weights.safetensors";
        using (var f = new FileStream(weights, FileMode.Open)) f.SetLength(20);
        AssertOneLineError(Run("parity", prefix), "vit.weights.safetensors");
    }

    [Fact]
    public void Parity_UnknownConstructor_IsOneLineError()
    {
        string prefix = CopyVitFixture();
        var spec = JsonNode.Parse(File.ReadAllText(prefix + ".json"))!.AsObject();
        spec["constructor"] = "vit_pytorch.nope.NoSuchViT";
        File.WriteAllText(prefix + ".json", spec.ToJsonString());
        AssertOneLineError(Run("parity", prefix), "unknown constructor 'vit_pytorch.nope.NoSuchViT'");
    }

    [Fact]
    public void Parity_ImageSizeNotDivisibleByPatchSize_IsOneLineError()
    {
        string prefix = CopyVitFixture();
        var spec = JsonNode.Parse(File.ReadAllText(prefix + ".json"))!.AsObject();
        spec["kwargs"]!["image_size"] = 30;     // patch_size is 8
        File.WriteAllText(prefix + ".json", spec.ToJsonString());
        AssertOneLineError(Run("parity", prefix), "not divisible");
    }

    [Fact]
    public void Parity_UnknownKwarg_IsOneLineError()
    {
        string prefix = CopyVitFixture();
        var spec = JsonNode.Parse(File.ReadAllText(prefix + ".json"))!.AsObject();
        spec["kwargs"]!["dimm"] = 64;
        File.WriteAllText(prefix + ".json", spec.ToJsonString());
        AssertOneLineError(Run("parity", prefix), "'dimm'");
    }

    [Fact]
    public void Parity_MalformedJson_IsOneLineError()
    {
        string prefix = CopyVitFixture();
        File.WriteAllText(prefix + ".json", "{ \"constructor\": \"vit_pytorch.vit.ViT\", \"kwargs\": {");
        AssertOneLineError(Run("parity", prefix), "vit.json");
    }

    [Fact]
    public void Parity_WeightsMissingAKey_IsOneLineError()
    {
        string prefix = CopyVitFixture(".weights.safetensors");
        var weights = Weights.Load(TestFixtures.Prefix("vit") + ".weights.safetensors");
        Assert.True(weights.Remove("mlp_head.bias"));
        Weights.Save(prefix + ".weights.safetensors", weights);
        AssertOneLineError(Run("parity", prefix), "missing keys: mlp_head.bias");
    }

    [Fact]
    public void Parity_WeightsWithWrongShape_IsOneLineError()
    {
        string prefix = CopyVitFixture(".weights.safetensors");
        var weights = Weights.Load(TestFixtures.Prefix("vit") + ".weights.safetensors");
        weights["mlp_head.bias"] = new Tensor(11);
        SafeTensorsWriter.Save(prefix + ".weights.safetensors",
            weights.Select(kv => SafeTensorsWriter.F32(kv.Key, kv.Value.Shape, kv.Value.Data)));
        AssertOneLineError(Run("parity", prefix), "mlp_head.bias");
    }

    // ---------------------------------------------------------------- usage

    [Fact]
    public void UnknownCommand_ExitsTwoWithSystemCommandLineMessage()
    {
        var r = Run("frobnicate");
        Assert.Equal(2, r.Code);
        Assert.Contains("frobnicate", r.Err);
    }

    [Fact]
    public void Verbose_ShowsStackTrace()
    {
        var r = Run("summary", "--model", "nope", "--verbose");
        Assert.Equal(2, r.Code);
        Assert.StartsWith("vit: error: unknown model preset 'nope'", r.Err);
        Assert.Contains("   at ", r.Err);
    }
}
