using System.Text.Json.Nodes;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Tests.Models;

/// <summary>DeepViT: parity with the PyTorch fixture, re-attention against a naive twin, other configurations, gradients, bad configs.</summary>
public class DeepViTTests
{
    private static DeepViTConfig Tiny(int image = 8, int patch = 4, int channels = 3, int classes = 3, int dim = 8, int depth = 1,
        int heads = 3, int dimHead = 4, string pool = "cls") => new()
    {
        ImageSize = image, PatchSize = patch, Channels = channels, NumClasses = classes, Dim = dim, Depth = depth,
        Heads = heads, DimHead = dimHead, MlpDim = 16, Pool = pool,
    };

    /// <summary>Parameter count of vit-pytorch's DeepViT, written out from its constructor.</summary>
    private static long ExpectedCount(DeepViTConfig c)
    {
        long patchDim = (long)c.Channels * c.PatchSize * c.PatchSize, d = c.Dim, h = c.Heads, inner = h * c.DimHead;
        long embed = 2 * patchDim + patchDim * d + d + 2 * d;
        long attn = 2 * d + d * 3 * inner + h * h + 2 * h + inner * d + d;      // norm, to_qkv, reattn_weights, reattn_norm, to_out
        long ff = 2 * d + d * c.MlpDim + c.MlpDim + c.MlpDim * d + d;
        return embed + (c.NumPatches + 1) * d + d + c.Depth * (attn + ff) + 2 * d + d * c.NumClasses + c.NumClasses;
    }

    [Fact]
    public void ParityWithPyTorchFixture() => FixtureChecks.AssertParity("deepvit", DeepViTConfig.Constructor,
        logitsAbs: 5e-6, gradientRel: 8e-6);   // achieved: logits 4.8e-7, loss 0, gradients 7.3e-7 relative

    [Fact]
    public void StateDictKeysAndShapesEqualTheFixture()
    {
        FixtureChecks.AssertStateDictMatches("deepvit");
        var sd = FixtureChecks.Build("deepvit").StateDict();
        Assert.Equal(new[] { 1, 17, 64 }, sd["pos_embedding"].Shape);   // 3-D, unlike ViT's
        Assert.Equal(new[] { 1, 1, 64 }, sd["cls_token"].Shape);
        Assert.DoesNotContain(sd.Keys, k => k.StartsWith("transformer.norm", StringComparison.Ordinal));
    }

    /// <summary>The re-attention block computed element by element in double from its own weights.</summary>
    private static double[] NaiveReAttention(ReAttention block, Tensor x, int heads, int dimHead)
    {
        int b = x.Dim(0), n = x.Dim(1), c = x.Dim(2), inner = heads * dimHead;
        double[] LayerNorm(double[] v, float[] w, float[] bias)
        {
            double mean = v.Average(), var = v.Select(t => (t - mean) * (t - mean)).Average();
            return v.Select((t, i) => (t - mean) / Math.Sqrt(var + 1e-5) * w[i] + bias[i]).ToArray();
        }
        var output = new double[b * n * c];
        var wq = block.ToQkv.Weight.Data;
        for (int bi = 0; bi < b; bi++)
        {
            var qkv = new double[n, 3 * inner];
            for (int i = 0; i < n; i++)
            {
                var xn = LayerNorm(Enumerable.Range(0, c).Select(k => (double)x[bi, i, k]).ToArray(), block.Norm.Weight.Data, block.Norm.Bias.Data);
                for (int o = 0; o < 3 * inner; o++) { double s = 0; for (int k = 0; k < c; k++) s += wq[o * c + k] * xn[k]; qkv[i, o] = s; }
            }
            var attn = new double[heads, n, n];
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < n; i++)
                {
                    var row = new double[n];
                    for (int j = 0; j < n; j++)
                    {
                        double s = 0;
                        for (int d = 0; d < dimHead; d++) s += qkv[i, h * dimHead + d] * qkv[j, inner + h * dimHead + d];
                        row[j] = s / Math.Sqrt(dimHead);
                    }
                    double max = row.Max(), z = row.Sum(t => Math.Exp(t - max));
                    for (int j = 0; j < n; j++) attn[h, i, j] = Math.Exp(row[j] - max) / z;
                }
            var re = new double[heads, n, n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    var mixed = new double[heads];
                    for (int g = 0; g < heads; g++)
                        for (int h = 0; h < heads; h++) mixed[g] += attn[h, i, j] * block.ReattnWeights[h, g];
                    var ln = (LayerNorm)block.ReattnNorm[1];
                    var normed = LayerNorm(mixed, ln.Weight.Data, ln.Bias.Data);
                    for (int g = 0; g < heads; g++) re[g, i, j] = normed[g];
                }
            var outLinear = (Linear)block.ToOut[0];
            for (int i = 0; i < n; i++)
            {
                var o = new double[inner];
                for (int h = 0; h < heads; h++)
                    for (int d = 0; d < dimHead; d++)
                        for (int j = 0; j < n; j++) o[h * dimHead + d] += re[h, i, j] * qkv[j, 2 * inner + h * dimHead + d];
                for (int k = 0; k < c; k++)
                {
                    double s = outLinear.Bias!.Data[k];
                    for (int m = 0; m < inner; m++) s += outLinear.Weight.Data[k * inner + m] * o[m];
                    output[(bi * n + i) * c + k] = s;
                }
            }
        }
        return output;
    }

    [Theory]
    [InlineData(3, 4, 5, 8)]
    [InlineData(2, 3, 7, 6)]
    [InlineData(5, 2, 1, 10)]
    public void ReAttentionMatchesANaiveTwin(int heads, int dimHead, int tokens, int dim)
    {
        Init.Seed(heads * 10 + tokens);
        var block = new ReAttention(dim, heads, dimHead);
        // Move the head-axis LayerNorm off its defaults so a missing affine step shows.
        var ln = (LayerNorm)block.ReattnNorm[1];
        TestData.Uniform(1, 0.5f, 1.5f, heads).Data.CopyTo(ln.Weight.Data, 0);
        TestData.Uniform(2, -0.5f, 0.5f, heads).Data.CopyTo(ln.Bias.Data, 0);
        block.Eval();
        var x = TestData.Uniform(3, -1, 1, 2, tokens, dim);
        TestData.AssertClose(NaiveReAttention(block, x, heads, dimHead), block.Forward(x).Data, 1e-5, 1e-4, "re-attention");
    }

    [Fact]
    public void PoolingAndHead()
    {
        foreach (var pool in new[] { "cls", "mean" })
        {
            var model = new DeepViT(Tiny(pool: pool)); model.Eval();
            var img = TestData.Uniform(4, -1, 1, 2, 3, 8, 8);
            var tokens = model.ForwardFeatures(img);
            Assert.Equal(new[] { 2, 5, 8 }, tokens.Shape);                     // the class token is there with either pool
            var pooled = model.Pool(tokens);
            var expected = new double[2 * 8];
            for (int b = 0; b < 2; b++)
                for (int c = 0; c < 8; c++)
                    expected[b * 8 + c] = pool == "cls" ? tokens[b, 0, c] : Enumerable.Range(0, 5).Average(t => (double)tokens[b, t, c]);
            TestData.AssertClose(expected, pooled.Data, 1e-6, 1e-6, pool + " pool");
            var pre = model.ForwardHead(tokens, preLogits: true);
            var ln = (LayerNorm)model.MlpHead[0];
            Assert.Equal(F.LayerNorm(pooled, ln.Weight, ln.Bias).Data, pre.Data);
            var head = (Linear)model.MlpHead[1];
            Assert.Equal(F.Linear(pre, head.Weight, head.Bias).Data, model.Forward(img).Data);
        }
    }

    [Theory]
    [InlineData(8, 4, 3, 1, 3, 4, "cls", 1)]
    [InlineData(12, 3, 1, 2, 5, 2, "mean", 2)]     // grey, 16 patches, odd class count
    [InlineData(10, 5, 2, 3, 2, 4, "cls", 3)]      // 4 patches, three layers
    [InlineData(6, 6, 3, 0, 4, 3, "mean", 4)]      // one patch, depth 0
    public void OtherConfigurations(int image, int patch, int channels, int depth, int classes, int heads, string pool, int seed)
    {
        var c = Tiny(image, patch, channels, classes, dim: 8, depth: depth, heads: heads, pool: pool);
        Init.Seed(seed);
        var model = new DeepViT(c);
        Assert.Equal(ExpectedCount(c), model.ParameterCount());
        var img = TestData.Uniform(seed, -1, 1, 2, channels, image, image);
        Assert.Equal(new[] { 2, c.NumPatches + 1, 8 }, model.ForwardFeatures(img).Shape);
        Assert.Equal(new[] { 2, classes }, model.Forward(img).Shape);
        FixtureChecks.AssertEveryParameterGetsAGradient(model, img, [0, classes - 1]);
    }

    [Fact]
    public void PresetMatchesTheConstructorFormula()
    {
        var model = (DeepViT)Presets.Get("deepvit-fmnist").Build();
        Assert.Equal(1, model.InputChannels);
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
    }

    // The LayerNorm over only H = 3 heads is strongly curved, so the default step's O(h²) truncation error reaches a
    // few percent on some elements; a smaller step keeps it well inside the checker's 1% (float32 noise is still small).
    private const double H = 2e-3;

    [Fact]
    public void TinyModelGradientsMatchFiniteDifferences()
    {
        Init.Seed(5);
        var model = new DeepViT(Tiny(image: 6, patch: 3, channels: 2)); model.Eval();
        var img = TestData.Uniform(10, -1, 1, 2, 2, 6, 6);
        FixtureChecks.AssertGradCheck(model, img, [1, 2],
        [
            "cls_token", "pos_embedding", "to_patch_embedding.1.bias", "to_patch_embedding.2.weight",
            "transformer.layers.0.0.norm.weight", "transformer.layers.0.0.to_qkv.weight", "transformer.layers.0.0.reattn_weights",
            "transformer.layers.0.0.reattn_norm.1.weight", "transformer.layers.0.0.reattn_norm.1.bias", "transformer.layers.0.0.to_out.0.weight",
            "transformer.layers.0.1.net.4.bias", "mlp_head.0.weight", "mlp_head.1.weight",
        ], h: H);
    }

    [Fact]
    public void KwargsRoundTripAndPythonDefaults()
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 3, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        var model = (DeepViT)ModelFactory.Create("DeepViT", kwargs);
        Assert.Equal(("cls", 3, 64, 0f, 0f), (model.Config.Pool, model.Config.Channels, model.Config.DimHead, model.Config.Dropout, model.Config.EmbDropout));
        var custom = model.Config with { Pool = "mean", Channels = 1, DimHead = 5, Dropout = 0.25f, EmbDropout = 0.5f };
        var again = (DeepViT)ModelFactory.Create(DeepViTConfig.Constructor, custom.ToKwargs());
        Assert.Equal(custom, again.Config);
    }

    [Theory]
    [InlineData("image_size", 10, "not divisible")]
    [InlineData("pool", "max", "'max'")]
    [InlineData("heads", 0, "heads")]
    [InlineData("dropout", 1.5, "dropout")]
    [InlineData("layer_dropout", 0.1, "'layer_dropout'")]   // a CaiT argument, not DeepViT's
    public void BadConfigurationsAreRejected(string key, object value, string mentioned)
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 3, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        kwargs[key] = value switch { int i => JsonValue.Create(i), double d => JsonValue.Create(d), _ => JsonValue.Create((string)value) };
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(DeepViTConfig.Constructor, kwargs));
        Assert.Contains(mentioned, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void RectangularImagesAreNotTaken()
    {
        // The reference computes image_size % patch_size on plain ints; a pair is an error there and here.
        var kwargs = new JsonObject { ["image_size"] = new JsonArray(8, 12), ["patch_size"] = 4, ["num_classes"] = 3, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(DeepViTConfig.Constructor, kwargs));
        Assert.Contains("image_size", ex.Message);
    }
}
