using System.Text.Json.Nodes;
using VitSharp.Cli;

namespace VitSharp.Tests.Cli;

/// <summary><c>vit bench</c>, run in-process on the small preset (correctness of the output, not timings).</summary>
public sealed class BenchCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => TrainCliTests.Run(args);

    private static JsonObject LastLineJson(string stdout)
    {
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.NotEmpty(lines);
        return Assert.IsType<JsonObject>(JsonNode.Parse(lines[^1]));
    }

    private static void AssertFigures(JsonObject j, bool train)
    {
        Assert.Equal("vit-fmnist", j["model"]!.GetValue<string>());
        Assert.Equal(2, j["batch"]!.GetValue<int>());
        Assert.Equal(train, j["train"]!.GetValue<bool>());
        foreach (var key in new[] { "median_ms", "min_ms", "max_ms", "images_per_s", "gflops", "peak_rss_mb" })
            Assert.True(j[key]!.GetValue<double>() > 0, $"{key} = {j[key]}");
        Assert.True(j["threads"]!.GetValue<int>() >= 1);
        Assert.True(j["alloc_bytes_per_step"]!.GetValue<long>() >= 0);
        Assert.True(j["min_ms"]!.GetValue<double>() <= j["median_ms"]!.GetValue<double>());
        Assert.True(j["median_ms"]!.GetValue<double>() <= j["max_ms"]!.GetValue<double>());
    }

    [Fact]
    public void Bench_Inference_Json_LastLineHasFigures()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--batch", "2", "--steps", "2", "--warmup", "1", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        AssertFigures(LastLineJson(r.Out), train: false);
    }

    [Fact]
    public void Bench_Train_Json_LastLineHasFigures()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--batch", "2", "--steps", "2", "--warmup", "1", "--train", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        AssertFigures(LastLineJson(r.Out), train: true);
    }

    private static (string Op, double Ms, double Calls)[] Profile(JsonNode? rows) =>
        Assert.IsType<JsonArray>(rows).Select(t => (t!["op"]!.GetValue<string>(), t["ms_per_step"]!.GetValue<double>(), t["calls_per_step"]!.GetValue<double>())).ToArray();

    [Fact]
    public void Bench_Profile_ListsTheForwardOpsWithTheirCallsPerStep()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--set", "depth=3", "--batch", "2", "--steps", "3", "--warmup", "1", "--no-peak", "--profile", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("", r.Err);
        Assert.Contains("profile, vitsharp", r.Out);
        var j = LastLineJson(r.Out);
        Assert.False(j["data_parallel"]!.GetValue<bool>());   // the profile is the calling thread's
        var ops = Profile(j["profile"]);
        // vit-pytorch's ViT with depth 3: two LayerNorms in the patch embedding, two per block, the transformer's final
        // one; one attention core per block.
        Assert.Equal(9, ops.Single(o => o.Op == "fwd layer_norm").Calls);
        Assert.Equal(3, ops.Single(o => o.Op == "fwd mha").Calls);
        Assert.All(ops, o => Assert.StartsWith("fwd ", o.Op));
        Assert.All(ops, o => Assert.True(o.Ms >= 0));
        // The ops' time is part of the step's: their sum per step is below the slowest step.
        Assert.InRange(ops.Sum(o => o.Ms), 1e-3, j["max_ms"]!.GetValue<double>());
    }

    [Fact]
    public void Bench_Profile_OfATrainingStepHasTheBackwardOps()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--set", "depth=2", "--batch", "2", "--steps", "2", "--warmup", "1", "--no-peak", "--train", "--profile", "--json");
        Assert.True(r.Code == 0, r.Err);
        var ops = Profile(LastLineJson(r.Out)["profile"]);
        Assert.Equal(7, ops.Single(o => o.Op == "fwd layer_norm").Calls);   // 2 + 2 · depth + 1
        Assert.Equal(7, ops.Single(o => o.Op == "bwd layer_norm").Calls);
        Assert.Contains(ops, o => o.Op == "bwd mha");
    }

    [Fact]
    public void Bench_WithoutJson_PrintsMedianAndThroughput()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--batch", "2", "--steps", "1", "--warmup", "0");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("median", r.Out);
        Assert.Contains("images/s", r.Out);
        Assert.DoesNotContain("{", r.Out);
    }

    [Fact]
    public void Bench_Set_ChangesTheModelAndItsFlopCount()
    {
        var full = LastLineJson(Run("bench", "--model", "vit-fmnist", "--batch", "2", "--steps", "1", "--warmup", "0", "--json").Out);
        var r = Run("bench", "--model", "vit-fmnist", "--set", "depth=3", "--batch", "2", "--steps", "1", "--warmup", "0", "--json");
        Assert.True(r.Code == 0, r.Err);
        var j = LastLineJson(r.Out);
        Assert.Equal("vit-fmnist (depth=3)", j["model"]!.GetValue<string>());
        double ratio = j["gflop_per_step"]!.GetValue<double>() / full["gflop_per_step"]!.GetValue<double>();
        Assert.InRange(ratio, 0.45, 0.55); // half the layers: about half the FLOPs (patch embedding and head stay)
        var bad = Run("bench", "--set", "depht=3");
        Assert.Equal(CliApp.ExitError, bad.Code);
        Assert.Contains("depht", bad.Err);
    }

    [Fact]
    public void Bench_UnknownPreset_OneLineError()
    {
        var r = Run("bench", "--model", "no-such-model", "--batch", "2");
        Assert.Equal(2, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{r.Err}");
        Assert.StartsWith("vit: error: ", lines[0]);
        Assert.Contains("no-such-model", lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
    }

    [Fact]
    public void Bench_BadBatch_OneLineError()
    {
        var r = Run("bench", "--model", "vit-fmnist", "--batch", "0");
        Assert.Equal(2, r.Code);
        Assert.StartsWith("vit: error: --batch", r.Err);
    }
}
