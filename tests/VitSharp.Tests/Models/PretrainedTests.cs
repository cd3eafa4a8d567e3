using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Tests.Models;

/// <summary>Pretrained-weight helpers: safetensors round trips, timm's key map, position-embedding resampling, ResetClassifier.</summary>
public sealed class PretrainedTests : IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-pretrained-" + Guid.NewGuid().ToString("N"))).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static VisionTransformerConfig Tiny(int image = 12, int? rep = null, int classes = 5, int layers = 2) => new()
    {
        ImageSize = image, PatchSize = 4, NumLayers = layers, NumHeads = 2, HiddenDim = 8, MlpDim = 12, NumClasses = classes, RepresentationSize = rep,
    };

    /// <summary>Fills every parameter and buffer with seeded values (off torchvision's zero head and unit norms).</summary>
    private static T Randomized<T>(T model, int seed) where T : Module
    {
        var rng = new Random(seed);
        foreach (var (name, t) in model.StateDict())
        {
            if (name.EndsWith("num_batches_tracked", StringComparison.Ordinal)) { t.Data[0] = rng.Next(1, 100); continue; }
            bool positive = name.EndsWith("running_var", StringComparison.Ordinal);
            for (int i = 0; i < t.Size; i++) t.Data[i] = positive ? (float)(0.5 + rng.NextDouble()) : (float)(rng.NextDouble() - 0.5);
        }
        model.Eval();
        return model;
    }

    // ---------------------------------------------------------------- (a) torchvision state_dicts through safetensors

    [Fact]
    public void TorchvisionStateDictsRoundTripThroughSafetensorsWithoutAKeyMap()
    {
        Init.Seed(1);
        var vit = Randomized(new VisionTransformer(Tiny()), 2);
        var resnet = Randomized(new ResNet(new ResNetConfig { Block = "Bottleneck", Layers = [1, 1, 1, 1], NumClasses = 4 }), 3);
        foreach (var (source, fresh, input) in new (Module, Module, Tensor)[]
        {
            (vit, new VisionTransformer(Tiny()), TestData.Uniform(4, -1, 1, 2, 3, 12, 12)),
            (resnet, new ResNet(new ResNetConfig { Block = "Bottleneck", Layers = [1, 1, 1, 1], NumClasses = 4 }), TestData.Uniform(5, -1, 1, 2, 3, 20, 20)),
        })
        {
            string path = Path.Combine(_dir, source.GetType().Name + ".safetensors");
            Weights.Save(path, source.StateDict());
            using (var file = SafeTensorsFile.Open(path))
                Assert.Equal(source.StateDict().Keys.Order(StringComparer.Ordinal), file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            fresh.Eval();
            Assert.NotEqual(source.Forward(input).Data, fresh.Forward(input).Data);
            fresh.LoadStateDict(Weights.Load(path));
            Assert.Equal(source.Forward(input).Data, fresh.Forward(input).Data);
        }
    }

    [Fact]
    public void TheTorchvisionFixtureLoadsAtItsOwnAndAtALargerImageSize()
    {
        var weights = Weights.Load(TestFixtures.Prefix("torchvision_vit") + ".weights.safetensors");
        using var io = SafeTensorsFile.Open(TestFixtures.Prefix("torchvision_vit") + ".io.safetensors");
        var input = new Tensor(io.ReadFloat32("input"), io.Info("input").Shape);
        var cfg = new VisionTransformerConfig { ImageSize = 32, PatchSize = 8, NumLayers = 2, NumHeads = 4, HiddenDim = 64, MlpDim = 128, NumClasses = 10 };
        var model = new VisionTransformer(cfg); model.Eval();
        Pretrained.LoadVisionTransformer(model, TestFixtures.Prefix("torchvision_vit") + ".weights.safetensors");
        TestData.AssertClose(io.ReadFloat32("logits"), model.Forward(input).Data, 5e-6, 0, "logits after Pretrained.LoadVisionTransformer");   // achieved 4.8e-7

        // At 48×48 the 4×4 grid of positions is resampled to 6×6; everything else is the fixture's.
        var large = new VisionTransformer(cfg with { ImageSize = 48 }); large.Eval();
        Pretrained.LoadVisionTransformer(large, weights);
        Assert.Equal(new[] { 1, 37, 64 }, large.Encoder.PosEmbedding.Shape);
        Assert.Equal(weights["encoder.pos_embedding"].Data.AsSpan(0, 64).ToArray(), large.Encoder.PosEmbedding.Data.AsSpan(0, 64).ToArray());
        Assert.Equal(weights["conv_proj.weight"].Data, large.ConvProj.Weight.Data);
        Assert.Equal(new[] { 2, 10 }, large.Forward(TestData.Uniform(6, -1, 1, 2, 3, 48, 48)).Shape);
    }

    // ---------------------------------------------------------------- (b) timm's layout

    [Fact]
    public void TheTimmKeyMapNamesTimmsTensors()
    {
        // timm's VisionTransformer (models/vision_transformer.py) names, for one block.
        string[] timm =
        [
            "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
            "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.norm2.weight", "blocks.0.norm2.bias",
            "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias",
            "norm.weight", "norm.bias", "head.weight", "head.bias",
        ];
        var map = TimmKeys.VitToTorchvision(1);
        Assert.Equal(timm.Order(StringComparer.Ordinal), map.Keys.Order(StringComparer.Ordinal));
        var model = new VisionTransformer(Tiny(layers: 1));
        Assert.Equal(model.StateDict().Keys.Order(StringComparer.Ordinal), map.Values.Order(StringComparer.Ordinal));
        Assert.Equal("encoder.layers.encoder_layer_0.self_attention.in_proj_weight", map["blocks.0.attn.qkv.weight"]);
        Assert.Equal("encoder.layers.encoder_layer_0.mlp.3.bias", map["blocks.0.mlp.fc2.bias"]);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(6)]
    public void TimmLayoutFromTheInverseMapGivesIdenticalLogits(int? rep)
    {
        Init.Seed(7);
        var source = Randomized(new VisionTransformer(Tiny(rep: rep)), 8);
        var timm = TimmKeys.ToTimm(source.StateDict(), 2, preLogits: rep is not null);
        Assert.Contains("blocks.1.attn.qkv.bias", timm.Keys);
        Assert.Equal(rep is not null, timm.ContainsKey("pre_logits.fc.weight"));
        var target = new VisionTransformer(Tiny(rep: rep)); target.Eval();
        var img = TestData.Uniform(9, -1, 1, 2, 3, 12, 12);
        Assert.NotEqual(source.Forward(img).Data, target.Forward(img).Data);
        Pretrained.LoadVisionTransformer(target, timm, WeightLayout.Timm);
        Assert.Equal(source.Forward(img).Data, target.Forward(img).Data);
    }

    [Fact]
    public void TimmErrorsNameTheOffendingKeys()
    {
        var source = Randomized(new VisionTransformer(Tiny()), 10);
        var timm = TimmKeys.ToTimm(source.StateDict(), 2);
        var model = new VisionTransformer(Tiny());

        var extra = new Dictionary<string, Tensor>(timm) { ["blocks.0.ls1.gamma"] = Tensor.Ones(8), ["reg_token"] = Tensor.Zeros(1, 4, 8) };
        var ex = Assert.Throws<ArgumentException>(() => Pretrained.LoadVisionTransformer(model, extra, WeightLayout.Timm));
        Assert.Contains("blocks.0.ls1.gamma", ex.Message);
        Assert.Contains("reg_token", ex.Message);

        var wide = new Dictionary<string, Tensor>(timm) { ["blocks.1.mlp.fc1.weight"] = Tensor.Zeros(16, 8) };
        ex = Assert.Throws<ArgumentException>(() => Pretrained.LoadVisionTransformer(model, wide, WeightLayout.Timm));
        Assert.Contains("blocks.1.mlp.fc1.weight → encoder.layers.encoder_layer_1.mlp.0.weight", ex.Message);
        Assert.Contains("[16, 8]", ex.Message);

        var missing = new Dictionary<string, Tensor>(timm);
        missing.Remove("norm.bias");
        var ex2 = Assert.Throws<StateDictException>(() => Pretrained.LoadVisionTransformer(model, missing, WeightLayout.Timm));
        Assert.Contains("encoder.ln.bias", ex2.Message);

        var withPre = new Dictionary<string, Tensor>(timm) { ["pre_logits.fc.weight"] = Tensor.Zeros(8, 8), ["pre_logits.fc.bias"] = Tensor.Zeros(8) };
        Assert.Contains("representation_size", Assert.Throws<ArgumentException>(() => TimmKeys.FromTimm(withPre, model)).Message);
        var inverse = Assert.Throws<ArgumentException>(() => TimmKeys.ToTimm(new Dictionary<string, Tensor> { ["heads.head.weight"] = Tensor.Zeros(1), ["heads.x"] = Tensor.Zeros(1) }, 1));
        Assert.Contains("heads.x", inverse.Message);
        Assert.DoesNotContain("heads.head.weight", inverse.Message);
    }

    [Fact]
    public void FineTuningLoadsTheBackboneAtAnotherSizeAndKeepsTheNewHead()
    {
        // ImageNet-style weights (1000 classes, 12×12 images) into a 3-class model for 20×20 images.
        var source = Randomized(new VisionTransformer(Tiny(classes: 1000)), 11);
        var timm = TimmKeys.ToTimm(source.StateDict(), 2);
        var target = new VisionTransformer(Tiny(image: 20, classes: 3));
        var head = target.StateDict()["heads.head.weight"].Data.ToArray();
        Assert.Throws<ArgumentException>(() => Pretrained.LoadVisionTransformer(target, timm, WeightLayout.Timm));
        Pretrained.LoadVisionTransformer(target, timm, WeightLayout.Timm, includeHead: false, mode: ResampleMode.Bilinear);
        Assert.Equal(head, target.StateDict()["heads.head.weight"].Data);
        Assert.Equal(source.ConvProj.Weight.Data, target.ConvProj.Weight.Data);
        Assert.Equal(new[] { 1, 26, 8 }, target.Encoder.PosEmbedding.Shape);
        var expectedPos = PosEmbedResample.Resample(source.Encoder.PosEmbedding, (3, 3), (5, 5), 1, ResampleMode.Bilinear);
        Assert.Equal(expectedPos.Data, target.Encoder.PosEmbedding.Data);
    }

    // ---------------------------------------------------------------- (c) position-embedding resampling

    [Theory]
    [InlineData(ResampleMode.Bicubic)]
    [InlineData(ResampleMode.Bilinear)]
    public void ResamplingToTheSameGridIsTheIdentity(ResampleMode mode)
    {
        var pos = TestData.Uniform(12, -1, 1, 1, 1 + 5 * 7, 6);
        var same = PosEmbedResample.Resample(pos, (5, 7), (5, 7), 1, mode);
        Assert.Equal(pos.Shape, same.Shape);
        Assert.Equal(pos.Data, same.Data);
    }

    [Theory]
    [InlineData(ResampleMode.Bicubic, 4, 4, 6, 6)]
    [InlineData(ResampleMode.Bilinear, 4, 4, 7, 9)]
    [InlineData(ResampleMode.Bicubic, 14, 14, 7, 7)]
    [InlineData(ResampleMode.Bilinear, 3, 5, 2, 2)]
    public void ResamplingGivesTheNewShapeAndKeepsTheClassToken(ResampleMode mode, int h, int w, int nh, int nw)
    {
        var pos = TestData.Uniform(13, -1, 1, 1, 1 + h * w, 5);
        var r = PosEmbedResample.Resample(pos, (h, w), (nh, nw), 1, mode);
        Assert.Equal(new[] { 1, 1 + nh * nw, 5 }, r.Shape);
        Assert.Equal(pos.Data.AsSpan(0, 5).ToArray(), r.Data.AsSpan(0, 5).ToArray());
        var flat = PosEmbedResample.Resample(pos.Reshape(1 + h * w, 5), (h, w), (nh, nw), 1, mode);
        Assert.Equal(new[] { 1 + nh * nw, 5 }, flat.Shape);
        Assert.Equal(r.Data, flat.Data);
        var noPrefix = PosEmbedResample.Resample(new Tensor(pos.Data.AsSpan(5).ToArray(), 1, h * w, 5), (h, w), (nh, nw), 0, mode);
        Assert.Equal(r.Data.AsSpan(5).ToArray(), noPrefix.Data);
    }

    /// <summary>A linear ramp over the grid: value = a_c·x + b_c·y + c_c at cell (y, x), channel c.</summary>
    private static Tensor Ramp(int h, int w, int ch, int prefix)
    {
        var t = new Tensor(1, prefix + h * w, ch);
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) for (int c = 0; c < ch; c++)
            t.Data[(prefix + y * w + x) * ch + c] = 0.3f * (c + 1) * x - 0.2f * y + c;
        return t;
    }

    [Theory]
    [InlineData(4, 4, 7, 9)]
    [InlineData(3, 5, 8, 6)]
    [InlineData(2, 2, 14, 14)]
    public void BilinearEnlargementInterpolatesALinearRampExactly(int h, int w, int nh, int nw)
    {
        var r = PosEmbedResample.Resample(Ramp(h, w, 3, 1), (h, w), (nh, nw), 1, ResampleMode.Bilinear);
        for (int y = 0; y < nh; y++) for (int x = 0; x < nw; x++)
        {
            // align_corners=False: output centre (i + ½)·in/out − ½ in input pixel units, clamped to the border pixels.
            double sx = Math.Clamp((x + 0.5) * w / nw - 0.5, 0, w - 1), sy = Math.Clamp((y + 0.5) * h / nh - 0.5, 0, h - 1);
            for (int c = 0; c < 3; c++)
                Assert.Equal(0.3 * (c + 1) * sx - 0.2 * sy + c, r.Data[(1 + y * nw + x) * 3 + c], 5);
        }
    }

    [Fact]
    public void BicubicReproducesALinearRampAwayFromTheBorder()
    {
        int h = 6, w = 6, nh = 11, nw = 11;
        var r = PosEmbedResample.Resample(Ramp(h, w, 2, 1), (h, w), (nh, nw), 1, ResampleMode.Bicubic);
        int checkedCells = 0;
        for (int y = 0; y < nh; y++) for (int x = 0; x < nw; x++)
        {
            double sx = (x + 0.5) * w / nw - 0.5, sy = (y + 0.5) * h / nh - 0.5;
            if (sx < 1 || sx > w - 2 || sy < 1 || sy > h - 2) continue;   // all four taps inside
            checkedCells++;
            for (int c = 0; c < 2; c++) Assert.Equal(0.3 * (c + 1) * sx - 0.2 * sy + c, r.Data[(1 + y * nw + x) * 2 + c], 5);
        }
        Assert.True(checkedCells >= 25);
    }

    [Fact]
    public void BicubicWeightsAreKeysCubicWithAMinusHalfNormalisedOverTheImage()
    {
        // 1-D [0, 1] → 4 values: output 0 has centre 0.25 and taps at distances 0.25 and 1.25 (the others fall outside),
        // k(0.25) = 0.8671875, k(1.25) = −0.0703125 → weight of the 1 is −0.0703125/0.796875; output 1: k(0.25), k(0.75)
        // = 0.2265625 → 0.2265625/1.09375. The outputs mirror: 1 − those.
        var pos = new Tensor([0f, 1f], 1, 2, 1);
        var r = PosEmbedResample.Resample(pos, (1, 2), (1, 4), 0, ResampleMode.Bicubic);
        double o0 = -0.0703125 / 0.796875, o1 = 0.2265625 / 1.09375;
        TestData.AssertClose(new[] { o0, o1, 1 - o1, 1 - o0 }, r.Data, 1e-6, 0, "bicubic [0, 1] → 4");
    }

    [Fact]
    public void ResamplingRejectsAGridThatDoesNotFit()
    {
        var ex = Assert.Throws<ArgumentException>(() => PosEmbedResample.Resample(Tensor.Zeros(1, 17, 4), (3, 3), (4, 4)));
        Assert.Contains("17", ex.Message);
        var model = new VisionTransformer(Tiny());
        var sd = model.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value);
        sd["encoder.pos_embedding"] = Tensor.Zeros(1, 12, 8);
        Assert.Contains("square", Assert.Throws<ArgumentException>(() => Pretrained.LoadVisionTransformer(model, sd)).Message);
    }

    // ---------------------------------------------------------------- (d) ResetClassifier

    [Fact]
    public void VisionTransformerResetClassifierKeepsTheRepresentationLayer()
    {
        var model = Randomized(new VisionTransformer(Tiny(rep: 6)), 14);
        var img = TestData.Uniform(15, -1, 1, 2, 3, 12, 12);
        var features = model.ForwardHead(model.ForwardFeatures(img), preLogits: true).Data;
        var pre = ((Linear)model.Heads["pre_logits"]!).Weight.Data.ToArray();
        model.ResetClassifier(9);
        Assert.Equal(9, model.Config.NumClasses);
        Assert.Equal(new[] { 9, 6 }, model.StateDict()["heads.head.weight"].Shape);
        Assert.Equal(pre, ((Linear)model.Heads["pre_logits"]!).Weight.Data);
        Assert.All(model.Forward(img).Data, v => Assert.Equal(0f, v));     // torchvision's zero-initialised head
        Assert.Equal(new[] { "pre_logits", "act", "head" }, model.Heads.NamedChildren().Select(c => c.Name));
        model.ResetClassifier(0);
        Assert.Equal(features, model.Forward(img).Data);
        var rebuilt = ModelSpec.VisionTransformer(model.Config).Build();
        rebuilt.LoadStateDict(model.StateDict());
        model.ResetClassifier(4);
        Assert.Equal(new[] { 2, 4 }, model.Forward(img).Shape);
    }

    [Fact]
    public void ViTResetClassifierReplacesTheMlpHead()
    {
        var cfg = new ViTConfig { ImageHeight = 8, ImageWidth = 8, PatchHeight = 4, PatchWidth = 4, NumClasses = 3, Dim = 8, Depth = 1, Heads = 2, DimHead = 4, MlpDim = 16 };
        Init.Seed(16);
        var model = new ViT(cfg); model.Eval();
        var img = TestData.Uniform(17, -1, 1, 2, 3, 8, 8);
        var tokens = model.ForwardFeatures(img).Data;
        var embed = model.StateDict()["to_patch_embedding.2.weight"].Data.ToArray();
        model.ResetClassifier(6);
        Assert.Equal(6, model.Config.NumClasses);
        Assert.Equal(new[] { 6, 8 }, model.StateDict()["mlp_head.weight"].Shape);
        Assert.Equal(embed, model.StateDict()["to_patch_embedding.2.weight"].Data);
        Assert.Equal(new[] { 2, 6 }, model.Forward(img).Shape);
        Assert.Contains(model.NamedParameters(), p => p.Name == "mlp_head.bias");
        ModelSpec.ViT(model.Config).Build().LoadStateDict(model.StateDict());
        model.ResetClassifier(0);
        Assert.Equal(tokens, model.Forward(img).Data);
        Assert.Throws<ArgumentException>(() => model.ResetClassifier(-2));
    }
}
