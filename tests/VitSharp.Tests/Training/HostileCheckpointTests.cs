using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Tests.Data;
using VitSharp.Training;
using static VitSharp.Tests.Training.HostileFiles;

namespace VitSharp.Tests.Training;

/// <summary>Checkpoint.Load and DataInfo.FromJson against hostile files (issue 14): one-line errors naming the key and
/// value, refused before anything large is allocated.</summary>
public class HostileCheckpointTests
{
    [Theory]
    [InlineData("depth", "100000")]
    [InlineData("dim_head", "1000000")]
    [InlineData("channels", "1000000")]
    [InlineData("mlp_dim", "10000000")]
    public void ConfigImplyingMoreParametersThanTheFileHoldsIsRefusedBeforeBuilding(string key, string value)
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        SetKwarg(path, key, value);
        var (e, bytes) = AllocatedWhileFailing<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("vitsharp.model", e.Message);
        Assert.Contains($"{key}={value}", e.Message);
        Assert.Contains("the weights hold", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.True(bytes < FastFailBytes, $"allocated {bytes:N0} bytes before failing");
    }

    [Fact]
    public void HugeImageAndPatchSizesAreRefusedByTheKwargBound()
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        Rewrite(path, metadata: m =>
        {
            var o = (JsonObject)JsonNode.Parse(m["vitsharp.model"])!;
            o["kwargs"]!["image_size"] = 1_000_000_000;
            o["kwargs"]!["patch_size"] = 250_000_000;
            m["vitsharp.model"] = o.ToJsonString();
        });
        var (e, bytes) = AllocatedWhileFailing<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("image_size must be ≤ 16777216, got 1000000000", e.Message);
        Assert.True(bytes < FastFailBytes, $"allocated {bytes:N0} bytes before failing");
    }

    [Fact]
    public void ConstructorOfTheWrongTypeIsAnErrorNamingIt()
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        EditJson(path, "vitsharp.model", o => o["constructor"] = 5);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("'constructor' must be a string", e.Message);
        Assert.Contains("got 5", e.Message);
    }

    [Fact]
    public void KwargOfTheWrongTypeIsAnErrorNamingIt()
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        SetKwarg(path, "channels", "\"1\"");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("argument 'channels' should be an integer, got \"1\"", e.Message);
    }

    [Theory]
    [InlineData("{}", "'name'")]
    [InlineData("""{"name":null,"classes":["a"],"channels":1,"height":8,"width":8,"mean":[0.5],"std":[0.25]}""", "'name'")]
    [InlineData("""{"name":"x","channels":1,"height":8,"width":8,"mean":[0.5],"std":[0.25]}""", "'classes'")]
    [InlineData("""{"name":"x","classes":["a"],"channels":1,"height":8,"width":8,"mean":[0.5],"std":null}""", "'std'")]
    [InlineData("""{"name":"x","classes":["a"],"channels":"1","height":8,"width":8,"mean":[0.5],"std":[0.25]}""", "'channels' must be an integer")]
    [InlineData("""{"name":"x","classes":["a"],"channels":1,"height":8,"width":8,"mean":["a"],"std":[0.25]}""", "'mean' must be a list of finite numbers, got [\"a\"]")]
    [InlineData("""{"name":"x","classes":[5],"channels":1,"height":8,"width":8,"mean":[0.5],"std":[0.25]}""", "'classes'")]
    [InlineData("""{"name":"x","classes":["a"],"channels":1,"height":8,"width":8,"mean":[0.5],"std":[1e-45]}""", "'std' must be a list of finite numbers ≥ 1E-06")]
    [InlineData("""{"name":"x","classes":["a"],"channels":1,"height":8,"width":8,"mean":[0.5],"std":[1e39]}""", "'std'")]
    [InlineData("""{"name":"x","classes":["a"],"channels":3,"height":8,"width":8,"mean":[0.5,0.5],"std":[0.25,0.25]}""", "'mean' (2 values)")]
    public void MalformedDataInfoIsAnErrorNamingTheField(string json, string expected)
    {
        var e = Assert.Throws<CheckpointException>(() => DataInfo.FromJson((JsonObject)JsonNode.Parse(json)!, "c.safetensors"));
        Assert.StartsWith("c.safetensors: vitsharp.data: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void NonFiniteWeightIsRefusedNamingTheTensor(float value)
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        Poison(path, "mlp_head.weight", value);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("tensor 'mlp_head.weight' holds 1 non-finite value(s)", e.Message);
        Assert.Contains("--allow-nonfinite", e.Message);
    }

    [Fact]
    public void NonFiniteWeightLoadsWithAWarningWhenAllowed()
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        Poison(path, "mlp_head.weight", float.NaN);
        var warnings = new List<string>();
        var loaded = Checkpoint.Load(path, new CheckpointLoadOptions { AllowNonFinite = true, Warn = warnings.Add });
        Assert.True(float.IsNaN(loaded.Model.StateDict()["mlp_head.weight"].Data[0]));
        Assert.Single(warnings);
        Assert.Contains("'mlp_head.weight'", warnings[0]);
    }

    [Fact]
    public void ParameterStoredAsAnIntegerDTypeIsAnErrorNamingIt()
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        AsInt32(path, "mlp_head.weight");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("tensor 'mlp_head.weight' has dtype I32", e.Message);
    }

    [Fact]
    public void HeaderOneByteShortIsAnError()
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        HeaderOneByteShort(path);
        var e = Assert.Throws<SafeTensorsException>(() => Checkpoint.Load(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void TheRealCheckpointStillLoads()
    {
        using var dir = new TempDir("hostile");
        string path = Real(dir.File("c.safetensors"));
        Rewrite(path);   // the rewrite itself changes nothing that matters
        var loaded = Checkpoint.Load(path);
        Assert.Equal(HostileFiles.Spec.Constructor, loaded.Info.Model.Constructor);
        Assert.Equal(3, DataInfo.FromJson(loaded.Info.Data).ClassNames.Count);
    }
}
