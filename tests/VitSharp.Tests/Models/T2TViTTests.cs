using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Parity;
using VitSharp.Tests.Autograd;

namespace VitSharp.Tests.Models;

/// <summary>T2T-ViT: fixture parity, state_dict layout, parameter counts, other configurations, gradients, bad configs.</summary>
public class T2TViTTests
{
    private const string Ctor = "vit_pytorch.t2t.T2TViT";

    private static T2TViTConfig Tiny(int image = 6, int channels = 2, (int, int)[]? layers = null, string pool = "cls", int classes = 3,
        int depth = 1, int dim = 8, int heads = 2, int dimHead = 4, int mlp = 8) => new()
    {
        ImageSize = image, Channels = channels, T2TLayers = layers ?? [(3, 2), (2, 1)], Pool = pool, NumClasses = classes,
        Depth = depth, Dim = dim, Heads = heads, DimHead = dimHead, MlpDim = mlp,
    };

    private static JsonObject Kwargs(string json) => JsonNode.Parse(json)!.AsObject();


    [Fact]
    public void ParityWithPyTorchFixture()
    {
        FixtureChecks.AssertParity("t2t_vit", Ctor, logitsAbs: 4e-6, gradientRel: 1.1e-5);   // achieved: logits 3.6e-7, loss 0, gradients 1.06e-6 relative
        // The fixture has a gradient for every parameter.
        Assert.Equal(FixtureChecks.Build("t2t_vit").NamedParameters().Count(), FixtureChecks.GradientCount("t2t_vit"));
    }

    [Fact]
    public void StateDictKeysAndShapesEqualTheFixture()
    {
        FixtureChecks.AssertStateDictMatches("t2t_vit");
        var model = Assert.IsType<T2TViT>(FixtureChecks.Build("t2t_vit"));
        Assert.Equal(model.ParameterCount(), ExpectedCount(model.Config));
    }

    /// <summary>Image side after each soft split: ⌊(side − k + 2·⌊s/2⌋) / s⌋ + 1 (torch Unfold's output size).</summary>
    private static int Side(int image, (int K, int S)[] layers)
    {
        int side = image;
        foreach (var (k, s) in layers) side = (side + 2 * (s / 2) - k) / s + 1;
        return side;
    }

    /// <summary>Parameters of vit-pytorch's Transformer (attention + feed-forward per layer, final LayerNorm).</summary>
    private static long TransformerCount(long dim, int depth, int heads, int dimHead, int mlp)
    {
        long inner = (long)heads * dimHead;
        long attn = 2 * dim + dim * 3 * inner + (heads == 1 && dimHead == dim ? 0 : inner * dim + dim);
        long ff = 2 * dim + dim * mlp + mlp + mlp * dim + dim;
        return depth * (attn + ff) + 2 * dim;
    }

    /// <summary>Parameter count of vit-pytorch's T2TViT, written out from its constructor.</summary>
    private static long ExpectedCount(T2TViTConfig c)
    {
        var layers = c.T2TLayers.ToArray();
        long n = 0, width = c.Channels;
        for (int i = 0; i < layers.Length; i++)
        {
            width *= layers[i].Kernel * layers[i].Kernel;
            if (i < layers.Length - 1) n += TransformerCount(width, 1, 1, (int)width, (int)width);
        }
        long side = Side(c.ImageSize, layers.Select(l => (l.Kernel, l.Stride)).ToArray());
        n += width * c.Dim + c.Dim;                                   // Linear(width → dim)
        n += (side * side + 1) * c.Dim + c.Dim;                       // pos_embedding, cls_token
        n += TransformerCount(c.Dim, c.Depth, c.Heads, c.DimHead, c.MlpDim);
        return n + (long)c.Dim * c.NumClasses + c.NumClasses;         // mlp_head
    }

    [Trait("Category", "Slow")]
    [Fact]
    public void PaperSizePresetsFollowVitPytorchsLayoutNotThePapersCount()
    {
        // T2T-ViT-14 has 21.5M parameters in the paper (T2T-ViT-19 39.2M, T2T-ViT-24 64.1M): there the T2T module's
        // token transformers project the unfolded tokens (147, then 576 wide) down to 64. vit-pytorch's T2TViT keeps the
        // unfolded width (147, then 1323; the last Linear takes 11907 features), so the same sizes have more parameters.
        // We build vit-pytorch's layout honestly and check it against its constructor, not against the paper.
        foreach (var (name, paper) in new[] { ("t2t-vit-14", 21_500_000L), ("t2t-vit-19", 39_200_000L) })
        {
            var preset = Presets.Get(name);
            Assert.Null(preset.PublishedParameters);
            Assert.Contains($"paper {paper / 1e6:0.0}M", preset.Description);
            var model = (T2TViT)preset.Build();
            Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
            Assert.Equal(11907, model.Config.TokenWidth);
            Assert.Equal(196, model.Config.NumPatches);            // 224 → 56 → 28 → 14, as in the paper
            Assert.True(model.ParameterCount() > paper);
        }
        Assert.Equal(34_598_146L, ExpectedCount(((T2TViT)Presets.Get("t2t-vit-14").Build()).Config));
    }

    [Fact]
    public void FashionMnistPresetHasAboutAMillionParameters()
    {
        var preset = Presets.Get("t2t-fmnist");
        Assert.Equal((28, 1), (preset.ImageSize, preset.Channels));
        var model = (T2TViT)preset.Build();
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
        Assert.InRange(model.ParameterCount(), 800_000, 1_200_000);
        Assert.Equal(49, model.Config.NumPatches);
    }

    public static TheoryData<int, int, int[], string, int, int> Configurations => new()
    {
        { 17, 1, [3, 2, 3, 2], "cls", 5, 2 },           // odd image side: 17 → 9 → 5
        { 24, 2, [7, 4, 3, 2, 3, 2], "mean", 3, 1 },    // the default soft split on another size: 24 → 6 → 3 → 2
        { 9, 3, [3, 1], "mean", 2, 0 },                 // one stage (no soft-split transformer), stride 1 → no padding, depth 0
        { 16, 3, [5, 3, 2, 1, 3, 3], "cls", 4, 1 },     // strides 3 and 1: 16 → 5 → 4 → 2
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void OtherConfigurationsHaveTheRightShapesAndEveryParameterGetsAGradient(int image, int channels, int[] flatLayers, string pool, int classes, int depth)
    {
        var layers = Enumerable.Range(0, flatLayers.Length / 2).Select(i => (flatLayers[2 * i], flatLayers[2 * i + 1])).ToArray();
        Init.Seed(image);
        var model = new T2TViT(Tiny(image, channels, layers, pool, classes, depth)); model.Eval();
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
        int side = Side(image, layers);
        var img = TestData.Uniform(image + 1, -1, 1, 2, channels, image, image);
        var features = model.ForwardFeatures(img);
        Assert.Equal(new[] { 2, side * side + 1, 8 }, features.Shape);
        Assert.Equal(new[] { 2, 8 }, model.ForwardHead(features, preLogits: true).Shape);
        var logits = model.Forward(img);
        Assert.Equal(new[] { 2, classes }, logits.Shape);
        F.CrossEntropy(logits, [0, classes - 1]).Backward();
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.True(p.Grad is not null, $"{name} got no gradient");
            Assert.True(p.Grad!.Data.Any(v => v != 0f), $"{name}: gradient is all zero");
        }
        Assert.Equal(layers.Length - 1, model.SoftSplitTransformers.Count);
    }

    [Trait("Category", "Slow")]
    [Fact]
    public void WholeTinyT2TViTGradientsMatchFiniteDifferences()
    {
        Init.Seed(3);
        var model = new T2TViT(Tiny()); model.Eval();
        var img = TestData.Uniform(9, -1, 1, 2, 2, 6, 6);
        int[] labels = [2, 0];
        var sd = model.StateDict();
        string[] names =
        [
            "to_patch_embedding.3.norm.weight", "to_patch_embedding.3.layers.0.0.norm.bias", "to_patch_embedding.3.layers.0.0.to_qkv.weight",
            "to_patch_embedding.3.layers.0.1.net.1.weight", "to_patch_embedding.3.layers.0.1.net.4.bias", "to_patch_embedding.8.weight",
            "cls_token", "pos_embedding", "transformer.layers.0.0.to_qkv.weight", "transformer.layers.0.0.to_out.0.weight", "mlp_head.weight",
        ];
        Assert.DoesNotContain("to_patch_embedding.3.layers.0.0.to_out.0.weight", sd.Keys);   // one head of the full width: no to_out
        FixtureChecks.AssertGradCheck(model, img, labels, names);
        // Through the whole soft split (unfold, rearranges, the stage transformer) down to the pixels.
        GradCheck.Verify(t => F.CrossEntropy(model.Forward(t[0]), labels), [img]);
    }

    [Fact]
    public void MeanPoolAveragesEveryTokenIncludingTheClassToken()
    {
        Init.Seed(4);
        var model = new T2TViT(Tiny(pool: "mean")); model.Eval();
        var img = TestData.Uniform(5, -1, 1, 2, 2, 6, 6);
        var tokens = model.ForwardFeatures(img);
        int n = tokens.Dim(1), c = tokens.Dim(2);
        Assert.Equal(5, n);                                           // 4 patches + the class token
        var pooled = model.ForwardHead(tokens, preLogits: true);
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < c; j++)
            {
                double s = 0;
                for (int i = 0; i < n; i++) s += tokens[b, i, j];
                Assert.Equal(s / n, pooled[b, j], 5);
            }
        var logits = model.Forward(img);
        var head = model.MlpHead;
        for (int b = 0; b < 2; b++)
            for (int k = 0; k < 3; k++)
            {
                double z = head.Bias![k];
                for (int j = 0; j < c; j++) z += head.Weight[k, j] * pooled[b, j];
                Assert.Equal(z, logits[b, k], 4);
            }
    }

    [Fact]
    public void RearrangesFollowEinops()
    {
        // 'b c n -> b n c' and 'b (h w) c -> b c h w' with h = int(sqrt(n)), token index row-major over (h, w).
        var cols = TestData.Uniform(1, -1, 1, 2, 3, 4);
        var tokens = new ColumnsToTokens().Forward(cols);
        Assert.Equal(new[] { 2, 4, 3 }, tokens.Shape);
        var img = new TokensToImage().Forward(tokens);
        Assert.Equal(new[] { 2, 3, 2, 2 }, img.Shape);
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++)
                        Assert.Equal(cols[b, c, i * 2 + j], img[b, c, i, j]);
        Assert.Equal(3, TokensToImage.Side(15));
        Assert.Equal(4, TokensToImage.Side(16));
    }

    [Fact]
    public void DropoutIsActiveOnlyInTraining()
    {
        Init.Seed(6);
        var model = new T2TViT(Tiny() with { Dropout = 0.5f, EmbDropout = 0.5f });
        var img = TestData.Uniform(7, -1, 1, 2, 2, 6, 6);
        model.Train();
        Assert.NotEqual(model.Forward(img).Data, model.Forward(img).Data);
        model.Eval();
        Assert.Equal(model.Forward(img).Data, model.Forward(img).Data);
    }

    [Fact]
    public void KwargsRoundTripThroughTheFactory()
    {
        var c = Tiny(image: 17, channels: 1, layers: [(3, 2), (5, 3)], pool: "mean", classes: 7, depth: 2) with { Dropout = 0.25f, EmbDropout = 0.125f };
        var model = (T2TViT)ModelFactory.Create(Ctor, c.ToKwargs());
        Assert.Equal(c.ToKwargs().ToJsonString(), model.Config.ToKwargs().ToJsonString());
        Assert.Equal("[[3,2],[5,3]]", c.ToKwargs()["t2t_layers"]!.ToJsonString());
        // The default soft split is vit-pytorch's ((7, 4), (3, 2), (3, 2)).
        var d = (T2TViT)ModelFactory.Create("T2TViT", Kwargs("""{"image_size": 32, "num_classes": 2, "dim": 8, "depth": 1, "heads": 1, "mlp_dim": 8}"""));
        Assert.Equal(new[] { (7, 4), (3, 2), (3, 2) }, d.Config.T2TLayers);
        Assert.Equal(3, d.Config.Channels);
        Assert.Equal(64, d.Config.DimHead);
        Assert.Equal("cls", d.Config.Pool);
        Assert.Equal(4, d.Config.NumPatches);                      // 32 → 8 → 4 → 2
    }

    [Theory]
    [InlineData("t2t_layers", "[[3]]", "(kernel, stride) pairs")]
    [InlineData("t2t_layers", "3", "(kernel, stride) pairs")]
    [InlineData("t2t_layers", "[]", "(kernel, stride) pairs")]
    [InlineData("t2t_layers", "[[3, 2], [3, \"x\"]]", "(kernel, stride) pairs")]
    [InlineData("t2t_layers", "[[3, 2], [0, 2]]", "t2t_layers[1] = (0, 2)")]
    [InlineData("t2t_layers", "[[3, 2], [9, 2]]", "does not fit the 4×4 image")]
    [InlineData("transformer", "\"Performer\"", "custom 'transformer'")]
    [InlineData("pool", "\"max\"", "pool")]
    [InlineData("image_size", "[8, 8]", "image_size")]
    [InlineData("num_classes", "0", "num_classes")]
    [InlineData("patch_size", "4", "'patch_size'")]
    public void BadConfigurationsAreRejectedByNameInOneLine(string key, string json, string mentioned)
    {
        var kwargs = Kwargs("""{"image_size": 8, "num_classes": 2, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8, "t2t_layers": [[3, 2], [3, 2]]}""");
        kwargs[key] = JsonNode.Parse(json);
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(Ctor, kwargs));
        Assert.Contains(mentioned, ex.Message);
        Assert.StartsWith(Ctor, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData("depth")]
    [InlineData("heads")]
    [InlineData("mlp_dim")]
    public void DepthHeadsAndMlpDimMustBeSupplied(string missing)
    {
        var kwargs = Kwargs("""{"image_size": 8, "num_classes": 2, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8}""");
        kwargs.Remove(missing);
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(Ctor, kwargs));
        Assert.Contains("depth, heads, and mlp_dim must be supplied", ex.Message);
    }

    [Fact]
    public void WrongInputShapeIsRejected()
    {
        var model = new T2TViT(Tiny());
        var ex = Assert.Throws<ArgumentException>(() => model.Forward(new Tensor(1, 3, 6, 6)));
        Assert.Contains("[B, 2, 6, 6]", ex.Message);
        Assert.Contains("[1, 3, 6, 6]", ex.Message);
    }
}
