using VitSharp.Import;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;

namespace VitSharp.Tests.Import;

/// <summary>
/// Importing torchvision Swin weights: the fixtures' PyTorch-made weights as a torch.save file (buffers int64, as torch
/// writes them) give PyTorch's logits with every argument read off the shapes; other configurations (rectangular
/// windows and patches, v1 blocks with v2 merging) round-trip; a table that fits no window is refused.
/// </summary>
public sealed class SwinImportTests
{
    /// <summary>The fixture's state_dict as a torch.save zip file, relative_position_index as int64.</summary>
    private static string WriteTorchFile(TempDir dir, IReadOnlyDictionary<string, Tensor> sd)
    {
        string file = dir.File("swin.pth");
        TorchFile.Save(file, sd.Select(kv => kv.Key.EndsWith("relative_position_index", StringComparison.Ordinal)
            ? TorchSaveEntry.Contiguous(kv.Key, TorchStorageData.FromInt64(kv.Value.Data.Select(v => (long)v).ToArray()), kv.Value.Shape)
            : TorchSaveEntry.Contiguous(kv.Key, TorchStorageData.FromFloats(kv.Value.Data), kv.Value.Shape)));
        return file;
    }

    [Theory]
    [InlineData("swin", 1e-6)]      // achieved 7.5e-8
    [InlineData("swin_v2", 2e-6)]   // achieved 2.1e-7
    public void Import_TorchvisionSwinPth_InfersEveryArgument_MatchesPyTorchLogits(string fixture, double tolerance)
    {
        using var dir = new TempDir("import");
        var sd = Weights.Load(TestFixtures.Prefix(fixture) + ".weights.safetensors");
        var m = WeightImporter.Import(WriteTorchFile(dir, sd));
        Assert.Equal(WeightFormat.TorchZip, m.Format);
        Assert.Equal(WeightArchitecture.Swin, m.Architecture);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(TestFixtures.Prefix(fixture) + ".json"))!["kwargs"]!.AsObject();
        foreach (var (key, value) in json)
            Assert.True(System.Text.Json.Nodes.JsonNode.DeepEquals(value, m.Spec.Kwargs[key]), $"{key}: {m.Spec.Kwargs[key]?.ToJsonString()} vs {value!.ToJsonString()}");
        var io = Weights.Load(TestFixtures.Prefix(fixture) + ".io.safetensors");
        using var noGrad = VitSharp.Autograd.NoGrad();
        var logits = m.Model.Forward(io["input"]);
        TestData.AssertClose(io["logits"].Data, logits.Data, tolerance, 0, "logits");
        Assert.Contains(m.Notes, n => n.Contains("bicubic", StringComparison.Ordinal));
        Assert.Equal(fixture == "swin_v2" ? 256 : 224, m.Data.Preprocessing!.CropHeight);
    }

    [Theory]
    [InlineData(false, "PatchMergingV2")]
    [InlineData(true, "PatchMerging")]
    public void Import_OtherConfigurations_RoundTrip(bool v2, string merging)
    {
        Init.Seed(8);
        var config = new SwinTransformerConfig
        {
            PatchSize = [2, 3], EmbedDim = 6, Depths = [3, 1, 2], NumHeads = [1, 3, 2], WindowSize = [3, 2], MlpRatio = 2.5f, NumClasses = 5,
            InChans = 1, Block = v2 ? SwinTransformerConfig.BlockV2 : SwinTransformerConfig.BlockV1, DownsampleLayer = merging,
        };
        var original = new SwinTransformer(config);
        using var dir = new TempDir("import");
        var m = WeightImporter.Import(WriteTorchFile(dir, original.StateDict()));
        Assert.Equal(config.ToKwargs().ToJsonString(), ((SwinTransformer)m.Model).Config.ToKwargs().ToJsonString());
        var x = Tensor.RandN(Init.Rng, 0, 1, 2, 1, 14, 15);
        using var noGrad = VitSharp.Autograd.NoGrad();
        original.Eval();
        Assert.Equal(original.Forward(x).Data, m.Model.Forward(x).Data);
    }

    [Fact]
    public void Import_BiasTableThatFitsNoWindow_IsRefusedNamingTheShapes()
    {
        Init.Seed(9);
        var sd = new SwinTransformer(new SwinTransformerConfig
        {
            PatchSize = [2, 2], EmbedDim = 4, Depths = [1], NumHeads = [2], WindowSize = [2, 2], NumClasses = 3,
        }).StateDict();
        sd["features.1.0.attn.relative_position_bias_table"] = Tensor.Zeros(10, 2);
        using var dir = new TempDir("import");
        var e = Assert.Throws<ImportException>(() => WeightImporter.Import(WriteTorchFile(dir, sd)));
        Assert.Contains("relative_position_bias_table of 10 rows and a relative_position_index of 16 entries fit no window", e.Message);
        sd["features.1.0.attn.relative_position_bias_table"] = Tensor.Zeros(9, 2);
        sd["features.1.0.attn.relative_position_index"] = Tensor.Zeros(16);
        e = Assert.Throws<ImportException>(() => WeightImporter.Import(WriteTorchFile(dir, sd)));
        Assert.Contains("relative_position_index of 16 entries is not torchvision's for any window of 4 tokens", e.Message);
    }
}
