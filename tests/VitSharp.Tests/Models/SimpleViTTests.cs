using System.Text.Json.Nodes;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Tests.Models;

/// <summary>SimpleViT: parity with the PyTorch fixture, its fixed sin-cos positions, other configurations, gradients, bad configs.</summary>
public class SimpleViTTests
{
    private static SimpleViTConfig Tiny(int h = 8, int w = 8, int ph = 4, int pw = 4, int channels = 3, int classes = 3,
        int dim = 8, int depth = 1, int heads = 2, int dimHead = 4, int mlp = 16) => new()
    {
        ImageHeight = h, ImageWidth = w, PatchHeight = ph, PatchWidth = pw, Channels = channels, NumClasses = classes,
        Dim = dim, Depth = depth, Heads = heads, DimHead = dimHead, MlpDim = mlp,
    };

    /// <summary>Parameter count of vit-pytorch's SimpleViT, written out from its constructor.</summary>
    private static long ExpectedCount(SimpleViTConfig c)
    {
        long patchDim = (long)c.Channels * c.PatchHeight * c.PatchWidth, d = c.Dim, inner = (long)c.Heads * c.DimHead;
        long embed = 2 * patchDim + patchDim * d + d + 2 * d;
        long attn = 2 * d + d * 3 * inner + inner * d;                    // norm, to_qkv, to_out (no biases)
        long ff = 2 * d + d * c.MlpDim + c.MlpDim + c.MlpDim * d + d;
        return embed + c.Depth * (attn + ff) + 2 * d + d * c.NumClasses + c.NumClasses;
    }

    [Fact]
    public void ParityWithPyTorchFixture() => FixtureChecks.AssertParity("simple_vit", SimpleViTConfig.Constructor,
        logitsAbs: 3e-6, gradientRel: 6e-6);   // achieved: logits 2.4e-7, loss 2.4e-7, gradients 5.2e-7 relative

    [Fact]
    public void StateDictKeysAndShapesEqualTheFixture()
    {
        FixtureChecks.AssertStateDictMatches("simple_vit");
        var keys = FixtureChecks.Build("simple_vit").StateDict().Keys;
        Assert.DoesNotContain(keys, k => k.Contains("pos_embedding", StringComparison.Ordinal)); // fixed, not a parameter
        Assert.Contains("transformer.layers.0.0.to_out.weight", keys);                           // a bare Linear, no bias
        Assert.DoesNotContain("transformer.layers.0.0.to_out.bias", keys);
        Assert.Contains("transformer.layers.0.1.net.3.weight", keys);                            // no dropout layers
    }

    [Fact]
    public void SinCosPositionsFollowTheReferenceFormula()
    {
        // dim 8: C/4 = 2 frequencies, ω = [1, 1/10000]; cell (y = 1, x = 2) of a 2×3 grid is row 1·3 + 2 = 5.
        var pe = SimpleViT.SinCos2D(2, 3, 8);
        Assert.Equal(new[] { 6, 8 }, pe.Shape);
        double[] cell5 = [Math.Sin(2), Math.Sin(2e-4), Math.Cos(2), Math.Cos(2e-4), Math.Sin(1), Math.Sin(1e-4), Math.Cos(1), Math.Cos(1e-4)];
        TestData.AssertClose(cell5, pe.Data.AsSpan(5 * 8, 8).ToArray(), 1e-6, 1e-6, "cell (1, 2)");
        TestData.AssertClose(new double[] { 0, 0, 1, 1, 0, 0, 1, 1 }, pe.Data.AsSpan(0, 8).ToArray(), 0, 0, "cell (0, 0)");

        // A wider embedding, all cells, against the formula in double.
        int h = 3, w = 5, dim = 24, q = dim / 4;
        pe = SimpleViT.SinCos2D(h, w, dim);
        var expected = new double[h * w * dim];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int k = 0; k < q; k++)
                {
                    double omega = 1 / Math.Pow(10000, (double)k / (q - 1));
                    int row = (y * w + x) * dim;
                    expected[row + k] = Math.Sin(x * omega);
                    expected[row + q + k] = Math.Cos(x * omega);
                    expected[row + 2 * q + k] = Math.Sin(y * omega);
                    expected[row + 3 * q + k] = Math.Cos(y * omega);
                }
        TestData.AssertClose(expected, pe.Data, 1e-6, 1e-5, "sin-cos positions");
    }

    [Fact]
    public void PositionsAreAddedBeforeTheTransformer()
    {
        // With depth 0 the features are the final LayerNorm of (patch embedding + positions).
        var model = new SimpleViT(Tiny(h: 8, w: 12, depth: 0, dim: 12)); model.Eval();
        var img = TestData.Uniform(1, -1, 1, 2, 3, 8, 12);
        var tokens = model.ForwardFeatures(img);
        Assert.Equal(new[] { 2, 6, 12 }, tokens.Shape);
        var embedded = model.ToPatchEmbedding.Forward(img) + SimpleViT.SinCos2D(2, 3, 12);
        var expected = model.Transformer.Norm!.Forward(embedded);
        TestData.AssertClose(expected.Data, tokens.Data, 1e-6, 1e-6, "features");
    }

    [Fact]
    public void HeadMeanPoolsAndPreLogitsAreThePooledFeatures()
    {
        var model = new SimpleViT(Tiny()); model.Eval();
        var img = TestData.Uniform(2, -1, 1, 2, 3, 8, 8);
        var tokens = model.ForwardFeatures(img);
        var pooled = model.ForwardHead(tokens, preLogits: true);
        Assert.Equal(new[] { 2, 8 }, pooled.Shape);
        var mean = new double[2 * 8];
        for (int b = 0; b < 2; b++) for (int t = 0; t < 4; t++) for (int c = 0; c < 8; c++) mean[b * 8 + c] += tokens[b, t, c] / 4.0;
        TestData.AssertClose(mean, pooled.Data, 1e-6, 1e-6, "mean pool");
        var logits = model.Forward(img);
        Assert.Equal(F.Linear(pooled, model.LinearHead.Weight, model.LinearHead.Bias).Data, logits.Data);
    }

    [Theory]
    [InlineData(8, 8, 4, 4, 3, 1, 3, 2, 4, 5)]
    [InlineData(12, 20, 4, 5, 1, 2, 4, 3, 5, 7)]        // rectangular image and patches, grey
    [InlineData(9, 9, 3, 3, 2, 3, 2, 1, 8, 2)]          // one head with dim_head = dim: to_out is still there
    [InlineData(16, 8, 8, 2, 3, 0, 7, 4, 3, 1)]         // depth 0
    public void OtherConfigurations(int h, int w, int ph, int pw, int channels, int depth, int classes, int heads, int dimHead, int seed)
    {
        var c = Tiny(h, w, ph, pw, channels, classes, dim: 8, depth: depth, heads: heads, dimHead: dimHead);
        Init.Seed(seed);
        var model = new SimpleViT(c);
        Assert.Equal(ExpectedCount(c), model.ParameterCount());
        if (depth > 0) Assert.Contains("transformer.layers.0.0.to_out.weight", model.StateDict().Keys);
        var img = TestData.Uniform(seed, -1, 1, 2, channels, h, w);
        Assert.Equal(new[] { 2, c.NumPatches, 8 }, model.ForwardFeatures(img).Shape);
        Assert.Equal(new[] { 2, classes }, model.Forward(img).Shape);
        FixtureChecks.AssertEveryParameterGetsAGradient(model, img, [0, classes - 1]);
    }

    [Fact]
    public void PresetMatchesTheConstructorFormula()
    {
        var model = (SimpleViT)Presets.Get("simplevit-fmnist").Build();
        Assert.Equal(1, model.InputChannels);
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
    }

    [Fact]
    public void TinyModelGradientsMatchFiniteDifferences()
    {
        Init.Seed(3);
        var model = new SimpleViT(Tiny(h: 8, w: 4, pw: 2, channels: 2)); model.Eval();
        var img = TestData.Uniform(9, -1, 1, 2, 2, 8, 4);
        FixtureChecks.AssertGradCheck(model, img, [2, 0],
        [
            "to_patch_embedding.1.weight", "to_patch_embedding.2.weight", "to_patch_embedding.3.bias",
            "transformer.layers.0.0.norm.weight", "transformer.layers.0.0.to_qkv.weight", "transformer.layers.0.0.to_out.weight",
            "transformer.layers.0.1.net.1.bias", "transformer.layers.0.1.net.3.weight", "transformer.norm.weight", "linear_head.weight",
        ]);
    }

    [Fact]
    public void KwargsRoundTripAndPythonDefaults()
    {
        var kwargs = new JsonObject { ["image_size"] = new JsonArray(8, 12), ["patch_size"] = 4, ["num_classes"] = 3, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        var model = (SimpleViT)ModelFactory.Create("SimpleViT", kwargs);
        Assert.Equal(3, model.Config.Channels);
        Assert.Equal(64, model.Config.DimHead);
        Assert.Equal(12, model.Config.ImageWidth);
        var again = (SimpleViT)ModelFactory.Create(SimpleViTConfig.Constructor, model.Config.ToKwargs());
        Assert.Equal(model.Config, again.Config);
    }

    [Theory]
    [InlineData("dim", 10, "divisible by 4")]
    [InlineData("dim", 4, "dim ≥ 8")]
    [InlineData("image_size", 10, "not divisible")]
    [InlineData("pool", "mean", "'pool'")]            // SimpleViT has no pool argument
    [InlineData("dropout", 0.1, "'dropout'")]
    public void BadConfigurationsAreRejected(string key, object value, string mentioned)
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 3, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        kwargs[key] = value switch { int i => JsonValue.Create(i), double d => JsonValue.Create(d), _ => JsonValue.Create((string)value) };
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(SimpleViTConfig.Constructor, kwargs));
        Assert.Contains(mentioned, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void WrongInputShapeIsRejected()
    {
        var model = new SimpleViT(Tiny(channels: 1));
        var ex = Assert.Throws<ArgumentException>(() => model.Forward(new Tensor(2, 3, 8, 8)));
        Assert.Contains("[B, 1, 8, 8]", ex.Message);
    }
}
