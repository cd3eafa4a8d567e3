using System.Text.Json.Nodes;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Tests.Models;

/// <summary>CaiT: parity with the PyTorch fixture, LayerScale, talking heads with a context, layer dropout, configurations, gradients.</summary>
public class CaiTTests
{
    private static CaiTConfig Tiny(int image = 8, int patch = 4, int classes = 3, int dim = 8, int depth = 1, int clsDepth = 1,
        int heads = 3, int dimHead = 4, int mlp = 16, float layerDropout = 0f) => new()
    {
        ImageSize = image, PatchSize = patch, NumClasses = classes, Dim = dim, Depth = depth, ClsDepth = clsDepth,
        Heads = heads, DimHead = dimHead, MlpDim = mlp, LayerDropout = layerDropout,
    };

    /// <summary>Parameter count of vit-pytorch's CaiT, written out from its constructor.</summary>
    private static long ExpectedCount(CaiTConfig c)
    {
        long patchDim = 3L * c.PatchSize * c.PatchSize, d = c.Dim, h = c.Heads, inner = h * c.DimHead;
        long embed = 2 * patchDim + patchDim * d + d + 2 * d;
        long attn = d + 2 * h * h + 2 * d + d * inner + d * 2 * inner + inner * d + d;  // scale, mixes, norm, to_q, to_kv, to_out
        long ff = d + 2 * d + d * c.MlpDim + c.MlpDim + c.MlpDim * d + d;               // scale, net
        return embed + (long)c.NumPatches * d + d + (c.Depth + c.ClsDepth) * (attn + ff) + 2 * d + d * c.NumClasses + c.NumClasses;
    }

    [Fact]
    public void ParityWithPyTorchFixture() => FixtureChecks.AssertParity("cait", CaiTConfig.Constructor,
        logitsAbs: 2e-6, gradientRel: 1.2e-5);   // achieved: logits 1.2e-7, loss 0, gradients 1.18e-6 relative

    [Fact]
    public void StateDictKeysAndShapesEqualTheFixture()
    {
        FixtureChecks.AssertStateDictMatches("cait");
        var sd = FixtureChecks.Build("cait").StateDict();
        Assert.Equal(new[] { 1, 16, 64 }, sd["pos_embedding"].Shape);   // patches only, no class-token position
        Assert.Equal(new[] { 1, 1, 64 }, sd["patch_transformer.layers.1.0.scale"].Shape);
        Assert.Equal(new[] { 4, 4 }, sd["cls_transformer.layers.0.0.fn.mix_heads_post_attn"].Shape);
    }

    [Fact]
    public void LayerScaleStartsAtTheDepthDependentValue()
    {
        Assert.Equal([0.1f, 0.1f, 1e-5f, 1e-5f, 1e-6f, 1e-6f], new[] { 1, 18, 19, 24, 25, 40 }.Select(LayerScale.InitialScale));
        var model = new CaiT(Tiny(dim: 4, depth: 26, clsDepth: 2, heads: 1, dimHead: 2, mlp: 4));
        for (int i = 0; i < 26; i++)
        {
            float expected = i < 18 ? 0.1f : i < 24 ? 1e-5f : 1e-6f;   // index i is layer i + 1
            foreach (int j in new[] { 0, 1 })
                Assert.All(model.StateDict()[$"patch_transformer.layers.{i}.{j}.scale"].Data, v => Assert.Equal(expected, v));
        }
        Assert.All(model.StateDict()["cls_transformer.layers.1.1.scale"].Data, v => Assert.Equal(0.1f, v));
    }

    /// <summary>CaiT's attention in double: LayerNorm(x), q from x̂, k and v from cat(x̂, context), talking heads before and after the softmax.</summary>
    private static double[] NaiveTalkingHeads(TalkingHeadsAttention a, Tensor x, Tensor? context, int heads, int dimHead)
    {
        int b = x.Dim(0), n = x.Dim(1), c = x.Dim(2), m = n + (context?.Dim(1) ?? 0), inner = heads * dimHead;
        var output = new double[b * n * c];
        for (int bi = 0; bi < b; bi++)
        {
            var tokens = new double[m][];
            for (int i = 0; i < m; i++)
            {
                if (i < n)
                {
                    var v = Enumerable.Range(0, c).Select(k => (double)x[bi, i, k]).ToArray();
                    double mean = v.Average(), var = v.Select(t => (t - mean) * (t - mean)).Average();
                    tokens[i] = v.Select((t, k) => (t - mean) / Math.Sqrt(var + 1e-5) * a.Norm.Weight.Data[k] + a.Norm.Bias.Data[k]).ToArray();
                }
                else tokens[i] = Enumerable.Range(0, c).Select(k => (double)context![bi, i - n, k]).ToArray();   // the context is not normed
            }
            double Dot(float[] w, int row, double[] v) { double s = 0; for (int k = 0; k < c; k++) s += w[row * c + k] * v[k]; return s; }
            var dots = new double[heads, n, m];
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < m; j++)
                    {
                        double s = 0;
                        for (int d = 0; d < dimHead; d++) s += Dot(a.ToQ.Weight.Data, h * dimHead + d, tokens[i]) * Dot(a.ToKv.Weight.Data, h * dimHead + d, tokens[j]);
                        dots[h, i, j] = s / Math.Sqrt(dimHead);
                    }
            double[,,] Mix(double[,,] t, Tensor w)
            {
                var r = new double[heads, n, m];
                for (int g = 0; g < heads; g++) for (int h = 0; h < heads; h++) for (int i = 0; i < n; i++) for (int j = 0; j < m; j++) r[g, i, j] += t[h, i, j] * w[h, g];
                return r;
            }
            var pre = Mix(dots, a.MixHeadsPreAttn);
            var attn = new double[heads, n, m];
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < n; i++)
                {
                    double max = double.NegativeInfinity, z = 0;
                    for (int j = 0; j < m; j++) max = Math.Max(max, pre[h, i, j]);
                    for (int j = 0; j < m; j++) z += Math.Exp(pre[h, i, j] - max);
                    for (int j = 0; j < m; j++) attn[h, i, j] = Math.Exp(pre[h, i, j] - max) / z;
                }
            var post = Mix(attn, a.MixHeadsPostAttn);
            var lin = (Linear)a.ToOut[0];
            for (int i = 0; i < n; i++)
            {
                var o = new double[inner];
                for (int h = 0; h < heads; h++)
                    for (int d = 0; d < dimHead; d++)
                        for (int j = 0; j < m; j++) o[h * dimHead + d] += post[h, i, j] * Dot(a.ToKv.Weight.Data, inner + h * dimHead + d, tokens[j]);
                for (int k = 0; k < c; k++)
                {
                    double s = lin.Bias!.Data[k];
                    for (int p = 0; p < inner; p++) s += lin.Weight.Data[k * inner + p] * o[p];
                    output[(bi * n + i) * c + k] = s;
                }
            }
        }
        return output;
    }

    [Theory]
    [InlineData(3, 4, 5, 0, 8)]    // self-attention (patch transformer)
    [InlineData(2, 3, 1, 6, 6)]    // one class token over itself and 6 context tokens (class attention)
    [InlineData(4, 2, 3, 2, 10)]
    public void TalkingHeadsAttentionMatchesANaiveTwin(int heads, int dimHead, int tokens, int contextTokens, int dim)
    {
        Init.Seed(heads + 7 * tokens);
        var a = new TalkingHeadsAttention(dim, heads, dimHead);
        TestData.Uniform(1, 0.5f, 1.5f, dim).Data.CopyTo(a.Norm.Weight.Data, 0);
        TestData.Uniform(2, -0.5f, 0.5f, dim).Data.CopyTo(a.Norm.Bias.Data, 0);
        a.Eval();
        var x = TestData.Uniform(3, -1, 1, 2, tokens, dim);
        var context = contextTokens > 0 ? TestData.Uniform(4, -2, 2, 2, contextTokens, dim) : null;
        var y = a.Forward(x, context);
        Assert.Equal(new[] { 2, tokens, dim }, y.Shape);
        TestData.AssertClose(NaiveTalkingHeads(a, x, context, heads, dimHead), y.Data, 1e-5, 1e-4, "talking-heads attention");
        var bad = TestData.Uniform(5, -1, 1, 2, 3, dim + 1);
        Assert.Throws<ArgumentException>(() => a.Forward(x, bad));
    }

    [Fact]
    public void FeaturesAreTheClassTokenThenThePatchesAndTheHeadReadsTokenZero()
    {
        var model = new CaiT(Tiny(depth: 2)); model.Eval();
        var img = TestData.Uniform(6, -1, 1, 2, 3, 8, 8);
        var tokens = model.ForwardFeatures(img);
        Assert.Equal(new[] { 2, 5, 8 }, tokens.Shape);
        var patches = model.PatchTransformer.Forward(model.ToPatchEmbedding.Forward(img) + model.PosEmbedding, null);
        var cls = model.ClsTransformer.Forward(model.ClsToken.BroadcastTo(2, 1, 8), patches);
        Assert.Equal(Tensor.Cat([cls, patches], 1).Data, tokens.Data);
        var pre = model.ForwardHead(tokens, preLogits: true);
        var ln = (LayerNorm)model.MlpHead[0];
        Assert.Equal(F.LayerNorm(cls.Reshape(2, 8), ln.Weight, ln.Bias).Data, pre.Data);
        var head = (Linear)model.MlpHead[1];
        Assert.Equal(F.Linear(pre, head.Weight, head.Bias).Data, model.Forward(img).Data);
    }

    [Fact]
    public void WithoutClassAttentionThePatchesDoNotReachTheHead()
    {
        // cls_depth 0: the logits are the head of the bare class token, as in the reference; the patch path gets no gradient.
        var model = new CaiT(Tiny(clsDepth: 0)); model.Eval();
        var img = TestData.Uniform(7, -1, 1, 2, 3, 8, 8);
        var logits = model.Forward(img);
        var ln = (LayerNorm)model.MlpHead[0];
        var head = (Linear)model.MlpHead[1];
        var expected = F.Linear(F.LayerNorm(model.ClsToken.Reshape(1, 8), ln.Weight, ln.Bias), head.Weight, head.Bias);
        Assert.Equal(expected.Data, logits.Data.AsSpan(0, 3).ToArray());
        Assert.Equal(expected.Data, logits.Data.AsSpan(3, 3).ToArray());
        model.ZeroGrad();
        F.CrossEntropy(model.Forward(img), [0, 1]).Backward();
        Assert.Null(model.PosEmbedding.Grad);
        Assert.NotNull(model.ClsToken.Grad);
    }

    [Fact]
    public void LayerDropoutKeepsAtLeastOneLayerAndIsSeeded()
    {
        var t = new CaiTTransformer(4, 5, 1, 2, 4, layerDropout: 1f);
        for (int s = 0; s < 50; s++) { Dropout.Seed(s); Assert.Equal(1, t.SampleKeptLayers().Count(k => k)); }
        Assert.All(new CaiTTransformer(4, 5, 1, 2, 4).SampleKeptLayers(), Assert.True);

        var half = new CaiTTransformer(4, 4, 1, 2, 4, layerDropout: 0.5f);
        Dropout.Seed(3);
        int kept = 0, draws = 2000;
        for (int i = 0; i < draws; i++) { var k = half.SampleKeptLayers(); Assert.Contains(true, k); kept += k.Count(v => v); }
        // Each layer survives with probability 1/2, plus the rescue of an all-dropped draw (1/16 of draws): 2 + 1/16 layers on average.
        Assert.InRange(kept / (double)draws, 2.0625 - 0.1, 2.0625 + 0.1);
        Dropout.Seed(11); var a = half.SampleKeptLayers();
        Dropout.Seed(11); var b = half.SampleKeptLayers();
        Assert.Equal(a, b);
    }

    [Fact]
    public void LayerDropoutRunsExactlyTheKeptLayersAlsoInEvalMode()
    {
        Init.Seed(8);
        var t = new CaiTTransformer(8, 4, 2, 4, 16, layerDropout: 0.5f);
        t.Eval();                                        // the reference drops layers in eval mode too
        var x = TestData.Uniform(8, -1, 1, 2, 3, 8);
        var outputs = new HashSet<string>();
        for (int s = 0; s < 12; s++)
        {
            Dropout.Seed(s);
            var keep = t.SampleKeptLayers();
            Dropout.Seed(s);
            var y = t.Forward(x, null);
            var expected = x;
            for (int i = 0; i < 4; i++)
            {
                if (!keep[i]) continue;
                var pair = (ModuleList)t.Layers[i];
                expected = ((LayerScale)pair[0]).Forward(expected, null) + expected;
                expected = ((LayerScale)pair[1]).Forward(expected, null) + expected;
            }
            Assert.Equal(expected.Data, y.Data);
            outputs.Add(string.Join(",", keep));
        }
        Assert.True(outputs.Count > 1, "every seed kept the same layers");
    }

    [Theory]
    [InlineData(8, 4, 1, 1, 3, 3, 1)]
    [InlineData(12, 3, 2, 2, 5, 2, 2)]      // 16 patches, two class-attention layers
    [InlineData(10, 5, 3, 1, 2, 1, 3)]      // one head
    [InlineData(6, 6, 0, 2, 4, 4, 4)]       // one patch, no patch layers
    public void OtherConfigurations(int image, int patch, int depth, int clsDepth, int classes, int heads, int seed)
    {
        var c = Tiny(image, patch, classes, dim: 8, depth: depth, clsDepth: clsDepth, heads: heads);
        Init.Seed(seed);
        var model = new CaiT(c);
        Assert.Equal(ExpectedCount(c), model.ParameterCount());
        var img = TestData.Uniform(seed, -1, 1, 2, 3, image, image);
        Assert.Equal(new[] { 2, c.NumPatches + 1, 8 }, model.ForwardFeatures(img).Shape);
        Assert.Equal(new[] { 2, classes }, model.Forward(img).Shape);
        FixtureChecks.AssertEveryParameterGetsAGradient(model, img, [0, classes - 1]);
    }

    [Fact]
    public void CaiTXxs24PresetCountsItsParameters()
    {
        var preset = Presets.Get("cait-xxs24");
        Assert.Null(preset.PublishedParameters);     // the published 12.0M counts another layout (see the description)
        Assert.Contains("12.0M", preset.Description);
        var model = (CaiT)preset.Build();
        Assert.Equal(11_943_080L, ExpectedCount(model.Config));
        Assert.Equal(11_943_080L, model.ParameterCount());
        Assert.Equal((224, 16, 192, 24, 2, 4, 768, 48), (model.Config.ImageSize, model.Config.PatchSize, model.Config.Dim, model.Config.Depth,
            model.Config.ClsDepth, model.Config.Heads, model.Config.MlpDim, model.Config.DimHead));
        var fm = (CaiT)Presets.Get("cait-fmnist").Build();
        Assert.Equal(3, fm.InputChannels);
        Assert.Equal(ExpectedCount(fm.Config), fm.ParameterCount());
    }

    [Fact]
    public void TinyModelGradientsMatchFiniteDifferences()
    {
        Init.Seed(6);
        var model = new CaiT(Tiny(image: 6, patch: 3)); model.Eval();
        // Larger scales than the 0.1 initialisation so the blocks' gradients are not tiny next to the residual path.
        foreach (var (name, p) in model.NamedParameters().Where(p => p.Name.EndsWith(".scale", StringComparison.Ordinal)))
            TestData.Uniform(name.Length, 0.5f, 1.5f, p.Size).Data.CopyTo(p.Data, 0);
        var img = TestData.Uniform(11, -1, 1, 2, 3, 6, 6);
        FixtureChecks.AssertGradCheck(model, img, [2, 1],
        [
            "cls_token", "pos_embedding", "to_patch_embedding.1.weight", "to_patch_embedding.3.weight",
            "patch_transformer.layers.0.0.scale", "patch_transformer.layers.0.0.fn.mix_heads_pre_attn", "patch_transformer.layers.0.0.fn.mix_heads_post_attn",
            "patch_transformer.layers.0.0.fn.to_q.weight", "patch_transformer.layers.0.0.fn.to_kv.weight", "patch_transformer.layers.0.1.fn.net.1.weight",
            "cls_transformer.layers.0.0.fn.norm.bias", "cls_transformer.layers.0.0.fn.to_kv.weight", "cls_transformer.layers.0.0.fn.mix_heads_pre_attn",
            "cls_transformer.layers.0.0.fn.to_out.0.weight", "cls_transformer.layers.0.1.scale", "mlp_head.0.bias", "mlp_head.1.weight",
        ], h: 2e-3);
    }

    [Fact]
    public void KwargsRoundTripAndPythonDefaults()
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 3, ["dim"] = 8, ["depth"] = 1, ["cls_depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        var model = (CaiT)ModelFactory.Create("CaiT", kwargs);
        Assert.Equal((64, 0f, 0f, 0f), (model.Config.DimHead, model.Config.Dropout, model.Config.EmbDropout, model.Config.LayerDropout));
        var custom = model.Config with { DimHead = 5, Dropout = 0.25f, EmbDropout = 0.5f, LayerDropout = 0.125f };
        Assert.Equal(custom, ((CaiT)ModelFactory.Create(CaiTConfig.Constructor, custom.ToKwargs())).Config);
    }

    [Theory]
    [InlineData("image_size", 10, "not divisible")]
    [InlineData("channels", 1, "'channels'")]          // CaiT hard-codes 3 channels and takes no such argument
    [InlineData("cls_depth", -1, "cls_depth")]
    [InlineData("layer_dropout", 1.5, "layer_dropout")]
    [InlineData("pool", "mean", "'pool'")]
    public void BadConfigurationsAreRejected(string key, object value, string mentioned)
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 3, ["dim"] = 8, ["depth"] = 1, ["cls_depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        kwargs[key] = value switch { int i => JsonValue.Create(i), double d => JsonValue.Create(d), _ => JsonValue.Create((string)value) };
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(CaiTConfig.Constructor, kwargs));
        Assert.Contains(mentioned, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void GreyImagesAreRejectedNamingTheThreeChannels()
    {
        var model = new CaiT(Tiny());
        var ex = Assert.Throws<ArgumentException>(() => model.Forward(new Tensor(2, 1, 8, 8)));
        Assert.Contains("[B, 3, 8, 8]", ex.Message);
        Assert.Contains("3 channels", ex.Message);
    }
}
