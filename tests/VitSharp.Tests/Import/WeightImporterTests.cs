using VitSharp.Import;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;

namespace VitSharp.Tests.Import;

/// <summary>
/// <see cref="WeightImporter"/>: every file of the pretrained fixtures (the same tiny torchvision ViT written by torch,
/// torchvision, timm, Google's layout and Hugging Face, plus DeiT distilled and a ResNet) imported through the library
/// gives PyTorch's logits; other configurations written here round-trip exactly; bad sources fail naming the problem.
/// </summary>
public sealed class WeightImporterTests
{
    private static string P(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    private static readonly Lazy<Dictionary<string, Tensor>> Expected = new(() => Weights.Load(P("expected.safetensors")));

    private static float MaxDiff(Module model, string expectedKey)
    {
        model.Eval();
        using var noGrad = VitSharp.Autograd.NoGrad();
        var logits = model.Forward(Expected.Value["input"]);
        var want = Expected.Value[expectedKey];
        Assert.Equal(want.ShapeSpan.ToArray(), logits.ShapeSpan.ToArray());
        float max = 0;
        for (int i = 0; i < want.Size; i++) max = MathF.Max(max, MathF.Abs(want.Data[i] - logits.Data[i]));
        return max;
    }

    private static readonly ImportOptions ThreeHeads = new() { ModelArgs = new Dictionary<string, string> { ["num_heads"] = "3" } };

    // Achieved: 2e-7 to 1e-6 on the ViT files, 1.1e-5 on the ResNet (float32 arithmetic in another order).
    private const float VitTolerance = 5e-6f, ResNetTolerance = 5e-5f;

    [Theory]
    [InlineData("tv_vit.pth", "vit_logits", WeightFormat.TorchZip, WeightArchitecture.TorchvisionViT)]
    [InlineData("tv_vit_legacy.pth", "vit_logits", WeightFormat.TorchLegacy, WeightArchitecture.TorchvisionViT)]
    [InlineData("tv_vit_fp16.pth", "vit_fp16_logits", WeightFormat.TorchZip, WeightArchitecture.TorchvisionViT)]
    [InlineData("deit_checkpoint.pth", "vit_logits", WeightFormat.TorchZip, WeightArchitecture.TimmViT)]
    [InlineData("timm_vit.safetensors", "vit_logits", WeightFormat.SafeTensors, WeightArchitecture.TimmViT)]
    [InlineData("deit_distilled.pth", "deit_distilled_logits", WeightFormat.TorchZip, WeightArchitecture.DeiTDistilled)]
    public void Import_FixtureWithHeadCountGiven_MatchesPyTorchLogits(string file, string expected, WeightFormat format, WeightArchitecture arch)
    {
        var m = WeightImporter.Import(P(file), ThreeHeads);
        Assert.Equal(format, m.Format);
        Assert.Equal(arch, m.Architecture);
        Assert.True(MaxDiff(m.Model, expected) <= VitTolerance);
    }

    [Fact]
    public void Import_GoogleNpz_NeedsNoHeadCount_MatchesPyTorchLogits()
    {
        var m = WeightImporter.Import(P("google_vit.npz"));
        Assert.Equal(WeightFormat.Npz, m.Format);
        Assert.Equal(3, m.Spec.Kwargs["num_heads"]!.GetValue<int>());
        Assert.True(MaxDiff(m.Model, "vit_logits") <= VitTolerance);
    }

    [Fact]
    public void Import_HuggingFaceFolder_UsesConfigEpsAndId2Label()
    {
        var m = WeightImporter.Import(P("hf_vit"));
        Assert.Equal(WeightFormat.HuggingFace, m.Format);
        Assert.Equal(1e-12f, m.Spec.Kwargs["layer_norm_eps"]!.GetValue<float>());
        Assert.Equal("airplane", m.Data.ClassNames[0]);
        Assert.Equal("truck", m.Data.ClassNames[9]);
        Assert.True(MaxDiff(m.Model, "vit_eps1e-12_logits") <= VitTolerance);
        Assert.NotNull(m.Data.Preprocessing);
        Assert.Equal([0.5f, 0.5f, 0.5f], m.Data.Preprocessing!.Mean);
    }

    [Fact]
    public void Import_ResNet_InfersBlocksAndClasses_MatchesPyTorchLogits()
    {
        var m = WeightImporter.Import(P("resnet.pth"));
        Assert.Equal(WeightArchitecture.ResNet, m.Architecture);
        Assert.Equal("BasicBlock", m.Spec.Kwargs["block"]!.GetValue<string>());
        Assert.Equal([1, 1, 1, 1], m.Spec.Kwargs["layers"]!.AsArray().Select(x => x!.GetValue<int>()));
        Assert.True(MaxDiff(m.Model, "resnet_logits") <= ResNetTolerance);
    }

    [Fact]
    public void Import_BareViTStateDictOfUnconventionalWidth_SaysHowToGiveTheHeadCount()
    {
        var e = Assert.Throws<ImportException>(() => WeightImporter.Import(P("tv_vit.pth")));
        Assert.Contains("tv_vit.pth", e.Message);
        Assert.Contains("--set num_heads=N", e.Message);
    }

    [Fact]
    public void Import_PresetOfTheSameFamily_ShapesOverrideItsSizesAndSetOverridesTheRest()
    {
        // vit_b_16 is 224², width 768, 12 layers: the shapes replace every size; --set replaces its 12 heads.
        var m = WeightImporter.Import(P("tv_vit.pth"), new ImportOptions { Model = "vit_b_16", ModelArgs = new Dictionary<string, string> { ["num_heads"] = "3" } });
        Assert.Equal(48, m.Spec.Kwargs["hidden_dim"]!.GetValue<int>());
        Assert.Equal(32, m.Spec.Kwargs["image_size"]!.GetValue<int>());
        Assert.True(MaxDiff(m.Model, "vit_logits") <= VitTolerance);
    }

    [Fact]
    public void Import_PresetOfAnotherFamily_IsAnErrorNamingBoth()
    {
        var e = Assert.Throws<ImportException>(() => WeightImporter.Import(P("resnet.pth"), new ImportOptions { Model = "vit_b_16" }));
        Assert.Contains("torchvision.models.resnet.ResNet", e.Message);
        Assert.Contains("vit_b_16", e.Message);
    }

    [Fact]
    public void Import_EvilPickle_IsRefusedAndRunsNothing()
    {
        const string pwned = "/tmp/vitsharp-pwned";
        File.Delete(pwned);
        var e = Assert.ThrowsAny<Exception>(() => WeightImporter.Import(P("evil.pth")));
        Assert.Contains("posix.system", e.Message);
        Assert.False(File.Exists(pwned));
    }

    [Fact]
    public void Import_ClassesImagenetForTenClasses_IsAnErrorNamingBothCounts()
    {
        var e = Assert.Throws<ImportException>(() => WeightImporter.Import(P("resnet.pth"), new ImportOptions { Classes = "imagenet" }));
        Assert.Contains("1000 names", e.Message);
        Assert.Contains("10 classes", e.Message);
    }

    [Fact]
    public void Import_ClassesFile_NamesTheClasses()
    {
        using var dir = new TempDir("import");
        string file = dir.File("classes.txt");
        File.WriteAllLines(file, Enumerable.Range(0, 10).Select(i => $"class-{i}"));
        var m = WeightImporter.Import(P("resnet.pth"), new ImportOptions { Classes = file });
        Assert.Equal("class-7", m.Data.ClassNames[7]);
    }

    [Fact]
    public void Import_UnrecognisedKeysWithoutPreset_AsksForOne()
    {
        using var dir = new TempDir("import");
        string file = dir.File("odd.pth");
        TorchFile.Save(file, new Dictionary<string, Tensor> { ["encoder.weight"] = Tensor.Ones(2, 2) });
        var e = Assert.Throws<ImportException>(() => WeightImporter.Import(file));
        Assert.Contains("--model PRESET", e.Message);
        Assert.Contains("encoder.weight", e.Message);
    }

    [Fact]
    public void Import_TimmKeysTheMapLeavesUnmatched_AreListed()
    {
        // A LayerScale ViT (timm's ls1/ls2.gamma): keys torchvision's ViT has no place for.
        var sd = Weights.Load(P("timm_vit.safetensors"));
        sd["blocks.0.ls1.gamma"] = Tensor.Ones(48);
        sd["blocks.1.ls2.gamma"] = Tensor.Ones(48);
        using var dir = new TempDir("import");
        string file = dir.File("layerscale.pth");
        TorchFile.Save(file, sd);
        var e = Assert.Throws<ImportException>(() => WeightImporter.Import(file, ThreeHeads));
        Assert.Contains("layerscale.pth", e.Message);
        Assert.Contains("blocks.0.ls1.gamma, blocks.1.ls2.gamma", e.Message);
    }

    [Fact]
    public void Import_NotAWeightsFile_NamesTheFile()
    {
        using var dir = new TempDir("import");
        string file = dir.File("notes.txt");
        File.WriteAllText(file, "hello, world");
        var e = Assert.Throws<ImportException>(() => WeightImporter.Import(file));
        Assert.Contains("notes.txt", e.Message);
        Assert.Contains("not a weights file", e.Message);
    }

    [Fact]
    public void Import_OtherTorchvisionViTConfiguration_RoundTripsExactly()
    {
        // Not the fixture's sizes: 40×40 images, patch 10, 4 layers of width 64 with 4 heads, a representation layer, 2 channels.
        Init.Seed(7);
        var config = new VisionTransformerConfig
        {
            ImageSize = 40, PatchSize = 10, NumLayers = 4, NumHeads = 4, HiddenDim = 64, MlpDim = 80, NumClasses = 5,
            RepresentationSize = 24, InChans = 2,
        };
        var original = new VisionTransformer(config);
        foreach (var (_, p) in original.NamedParameters()) Tensor.RandN(Init.Rng, 0, 0.2f, p.Size).Data.CopyTo(p.Data, 0);
        using var dir = new TempDir("import");
        string file = dir.File("vit.pth");
        TorchFile.Save(file, original.StateDict());

        var m = WeightImporter.Import(file, new ImportOptions { ModelArgs = new Dictionary<string, string> { ["num_heads"] = "4" } });
        var c = ((VisionTransformer)m.Model).Config;
        Assert.Equal(config with { }, c);
        var x = Tensor.RandN(Init.Rng, 0, 1, 3, 2, 40, 40);
        using var noGrad = VitSharp.Autograd.NoGrad();
        original.Eval();
        Assert.Equal(original.Forward(x).Data, m.Model.Forward(x).Data);
    }

    [Fact]
    public void Import_BottleneckResNet_InfersGroupsAndWidth()
    {
        Init.Seed(3);
        var config = new ResNetConfig { Block = "Bottleneck", Layers = [1, 2, 1, 1], NumClasses = 7, Groups = 2, WidthPerGroup = 8, InChans = 1 };
        var original = new ResNet(config);
        using var dir = new TempDir("import");
        string file = dir.File("resnet.safetensors");
        Weights.Save(file, original.StateDict());
        var m = WeightImporter.Import(file);
        var c = ((ResNet)m.Model).Config;
        Assert.Equal((config.Block, config.NumClasses, config.Groups, config.WidthPerGroup, config.InChans), (c.Block, c.NumClasses, c.Groups, c.WidthPerGroup, c.InChans));
        Assert.Equal(config.Layers, c.Layers);
        var x = Tensor.RandN(Init.Rng, 0, 1, 2, 1, 24, 24);
        using var noGrad = VitSharp.Autograd.NoGrad();
        original.Eval();
        Assert.Equal(original.Forward(x).Data, m.Model.Forward(x).Data);
    }

    [Fact]
    public void LoadCheckpoint_VitSharpCheckpoint_LoadsIt_AndImportedSaveRoundTrips()
    {
        using var dir = new TempDir("import");
        var m = WeightImporter.Import(P("tv_vit.pth"), ThreeHeads);
        string ckpt = dir.File("tv.safetensors");
        m.Save(ckpt);
        Assert.Equal(WeightFormat.VitSharpCheckpoint, WeightImporter.Detect(ckpt));
        var loaded = WeightImporter.LoadCheckpoint(ckpt);
        Assert.True(MaxDiff(loaded.Model, "vit_logits") <= VitTolerance);
        var data = VitSharp.Training.DataInfo.FromJson(loaded.Info.Data);
        Assert.Equal(m.Data.Preprocessing, data.Preprocessing);
        Assert.Equal(m.Data.ClassNames, data.ClassNames);
    }
}
