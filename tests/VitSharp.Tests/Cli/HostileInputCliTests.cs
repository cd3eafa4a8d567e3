using System.Text.Json.Nodes;
using VitSharp.Cli;
using VitSharp.Tests.Data;
using VitSharp.Tests.Training;
using static VitSharp.Tests.Training.HostileFiles;

namespace VitSharp.Tests.Cli;

/// <summary><c>vit eval</c>, <c>vit predict</c> and <c>vit parity</c> on hostile files (issue 14): one <c>vit: error:</c>
/// line naming the key and value, never "internal error", never a NaN printed as a result.</summary>
public sealed class HostileInputCliTests : IDisposable
{
    private readonly TempDir _dir = new("hostile-cli");

    public void Dispose() => _dir.Dispose();

    private static (int Code, string Out, string Err) Run(params string[] args) => TrainCliTests.Run(args);

    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] fragments)
    {
        Assert.Equal(CliApp.ExitError, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith("vit: warning: ", StringComparison.Ordinal)).ToArray();
        Assert.True(lines.Length == 1, $"expected one stderr error line, got:\n{r.Err}");
        Assert.StartsWith("vit: error: ", lines[0]);
        Assert.DoesNotContain("internal error", r.Err);
        Assert.DoesNotContain("NaN", r.Out);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    private string Image()
    {
        string path = _dir.File("img.png");
        var pixels = new byte[8 * 8];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i * 4);
        File.WriteAllBytes(path, PngWriter.Encode(pixels, 8, 8, 0));
        return path;
    }

    [Theory]
    [InlineData("eval", "depth", "100000")]
    [InlineData("predict", "depth", "100000")]
    [InlineData("predict", "dim_head", "1000000")]
    [InlineData("eval", "channels", "1000000")]
    public void ConfigOutgrowingTheFileIsOneErrorLine(string command, string key, string value)
    {
        string path = Real(_dir.File("c.safetensors"));
        SetKwarg(path, key, value);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var r = command == "eval" ? Run("eval", path) : Run("predict", path, Image());
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        AssertOneLineError(r, "vitsharp.model", $"{key}={value}", "the weights hold");
        Assert.True(bytes < FastFailBytes, $"allocated {bytes:N0} bytes before failing");
    }

    [Fact]
    public void HugeImageSizeIsOneErrorLine()
    {
        string path = Real(_dir.File("c.safetensors"));
        EditJson(path, "vitsharp.model", o => { o["kwargs"]!["image_size"] = 1_000_000_000; o["kwargs"]!["patch_size"] = 250_000_000; });
        AssertOneLineError(Run("predict", path, Image()), "image_size must be ≤ 16777216, got 1000000000");
    }

    [Theory]
    [InlineData("{}", "'name'")]
    [InlineData("""{"name":"x","classes":null,"channels":1,"height":8,"width":8,"mean":[0.5],"std":[0.25]}""", "'classes'")]
    [InlineData("""{"name":"x","classes":["a","b","c"],"channels":"1","height":8,"width":8,"mean":[0.5],"std":[0.25]}""", "'channels'")]
    [InlineData("""{"name":"x","classes":["a","b","c"],"channels":1,"height":8,"width":8,"mean":["a"],"std":[0.25]}""", "'mean'")]
    [InlineData("""{"name":"x","classes":["a","b","c"],"channels":1,"height":8,"width":8,"mean":[0.5],"std":[1e-45]}""", "'std'")]
    public void MalformedDataInfoIsOneErrorLine(string json, string field)
    {
        string path = Real(_dir.File("c.safetensors"));
        Rewrite(path, metadata: m => m["vitsharp.data"] = json);
        AssertOneLineError(Run("predict", path, Image()), "vitsharp.data", field);
        AssertOneLineError(Run("eval", path), "vitsharp.data", field);
    }

    [Fact]
    public void ConstructorOfTheWrongTypeIsOneErrorLine()
    {
        string path = Real(_dir.File("c.safetensors"));
        EditJson(path, "vitsharp.model", o => o["constructor"] = 5);
        AssertOneLineError(Run("eval", path), "'constructor' must be a string");
    }

    [Theory]
    [InlineData("eval")]
    [InlineData("predict")]
    public void NonFiniteWeightIsOneErrorLineNamingTheTensor(string command)
    {
        string path = Real(_dir.File("c.safetensors"));
        Poison(path, "mlp_head.weight", float.NaN);
        var r = command == "eval" ? Run("eval", path) : Run("predict", path, Image());
        AssertOneLineError(r, "'mlp_head.weight'", "non-finite", "--allow-nonfinite");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AllowedNonFiniteWeightWarnsAndPredictRefusesToPrintNaN(bool json)
    {
        string path = Real(_dir.File("c.safetensors"));
        Rewrite(path, entry: (n, s, v) =>
        {
            if (n == "mlp_head.bias") Array.Fill(v, float.NaN);
            return VitSharp.IO.SafeTensorsWriter.F32(n, s, v);
        });
        var args = new List<string> { "predict", path, Image(), "--allow-nonfinite" };
        if (json) args.Add("--json");
        var r = Run([.. args]);
        AssertOneLineError(r, "not finite");
        Assert.Contains("vit: warning: ", r.Err);
        Assert.Contains("'mlp_head.bias'", r.Err);
    }

    [Fact]
    public void AllowedNonFiniteWeightWarnsAndEvalRefusesToPrintNaN()
    {
        string path = Real(_dir.File("c.safetensors"));
        Rewrite(path, entry: (n, s, v) =>
        {
            if (n == "mlp_head.bias") Array.Fill(v, float.NaN);
            return VitSharp.IO.SafeTensorsWriter.F32(n, s, v);
        });
        string data = _dir.File("images");
        foreach (var cls in new[] { "a", "b", "c" })
        {
            foreach (var split in new[] { "train", "test" })
            {
                Directory.CreateDirectory(Path.Combine(data, split, cls));
                File.Copy(Image(), Path.Combine(data, split, cls, "1.png"), overwrite: true);
            }
        }
        var r = Run("eval", path, "--data", data, "--allow-nonfinite");
        AssertOneLineError(r, "not finite");
        Assert.DoesNotContain("Accuracy", r.Out);
        Assert.Contains("vit: warning: ", r.Err);
    }

    [Fact]
    public void IntegerDTypeForAParameterIsOneErrorLine()
    {
        string path = Real(_dir.File("c.safetensors"));
        AsInt32(path, "mlp_head.weight");
        AssertOneLineError(Run("predict", path, Image()), "'mlp_head.weight'", "I32");
    }

    [Fact]
    public void HeaderOneByteShortIsOneErrorLine()
    {
        string path = Real(_dir.File("c.safetensors"));
        HeaderOneByteShort(path);
        AssertOneLineError(Run("eval", path), "c.safetensors");
    }

    [Fact]
    public void ParityFixtureWithHugeDepthIsOneErrorLine()
    {
        string prefix = _dir.File("vit");
        foreach (var suffix in new[] { ".json", ".weights.safetensors", ".io.safetensors" })
            File.Copy(TestFixtures.Prefix("vit") + suffix, prefix + suffix);
        var spec = (JsonObject)JsonNode.Parse(File.ReadAllText(prefix + ".json"))!;
        spec["kwargs"]!["depth"] = 100000;
        File.WriteAllText(prefix + ".json", spec.ToJsonString());
        long before = GC.GetAllocatedBytesForCurrentThread();
        var r = Run("parity", prefix);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        AssertOneLineError(r, "vit.json", "depth=100000");
        Assert.True(bytes < FastFailBytes, $"allocated {bytes:N0} bytes before failing");
    }
}
