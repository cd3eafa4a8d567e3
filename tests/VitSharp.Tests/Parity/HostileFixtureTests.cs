using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.NN;
using VitSharp.Parity;
using VitSharp.Tests.Data;
using VitSharp.Tests.Training;

namespace VitSharp.Tests.Parity;

/// <summary>ParityRunner against hostile fixtures (issue 14): the JSON's kwargs, the weights and the io file.</summary>
public class HostileFixtureTests
{
    /// <summary>A small, consistent fixture of the tiny ViT (the reference values are this model's own, so it passes).</summary>
    private static string Write(TempDir dir, Action<JsonObject>? editKwargs = null, long[]? labels = null, float? poison = null)
    {
        string prefix = dir.File("tiny");
        Init.Seed(5);
        var model = HostileFiles.Spec.Build();
        model.Eval();
        var json = HostileFiles.Spec.ToJson();
        editKwargs?.Invoke((JsonObject)json["kwargs"]!);
        File.WriteAllText(prefix + ".json", json.ToJsonString());
        var sd = model.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        if (poison is float p) sd["mlp_head.weight"].Data[0] = p;
        Weights.Save(prefix + ".weights.safetensors", sd);
        var input = TestData.Uniform(1, 0, 1, 2, 1, 8, 8);
        var logits = model.Forward(input);
        labels ??= [0, 2];
        SafeTensorsWriter.Save(prefix + ".io.safetensors",
        [
            SafeTensorsWriter.F32("input", input.Shape.ToArray(), input.Data),
            SafeTensorsWriter.I64("labels", [labels.Length], labels),
            SafeTensorsWriter.F32("logits", logits.Shape.ToArray(), logits.Data),
        ]);
        return prefix;
    }

    [Theory]
    [InlineData("depth", "100000")]
    [InlineData("dim_head", "1000000")]
    [InlineData("channels", "1000000")]
    public void KwargsOutgrowingTheWeightsAreRefusedBeforeBuilding(string key, string value)
    {
        using var dir = new TempDir("hostile-parity");
        string prefix = Write(dir, k => k[key] = JsonNode.Parse(value));
        var (e, bytes) = HostileFiles.AllocatedWhileFailing<ParityException>(() => ParityRunner.Run(prefix));
        Assert.StartsWith(prefix + ".json: ", e.Message);
        Assert.Contains($"{key}={value}", e.Message);
        Assert.True(bytes < HostileFiles.FastFailBytes, $"allocated {bytes:N0} bytes before failing");
    }

    [Fact]
    public void HugeImageSizeIsRefusedByTheKwargBound()
    {
        using var dir = new TempDir("hostile-parity");
        string prefix = Write(dir, k => { k["image_size"] = 1_000_000_000; k["patch_size"] = 250_000_000; });
        var e = Assert.Throws<ParityException>(() => ParityRunner.Run(prefix));
        Assert.Contains("image_size must be ≤ 16777216, got 1000000000", e.Message);
    }

    [Fact]
    public void LabelBeyondInt32IsAnErrorNamingIt()
    {
        using var dir = new TempDir("hostile-parity");
        string prefix = Write(dir, labels: [0, 1L << 31]);
        var e = Assert.Throws<ParityException>(() => ParityRunner.Run(prefix));
        Assert.Contains("'labels'[1] is 2147483648", e.Message);
    }

    [Fact]
    public void NonFiniteWeightIsAnErrorNamingTheTensor()
    {
        using var dir = new TempDir("hostile-parity");
        string prefix = Write(dir, poison: float.PositiveInfinity);
        var e = Assert.Throws<ParityException>(() => ParityRunner.Run(prefix));
        Assert.Contains("tensor 'mlp_head.weight' holds non-finite values", e.Message);
    }
}
