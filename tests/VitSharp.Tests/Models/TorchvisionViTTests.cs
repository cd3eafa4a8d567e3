using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Parity;
using VitSharp.Tests.Autograd;

namespace VitSharp.Tests.Models;

/// <summary>torchvision's VisionTransformer: fixture parity, state_dict layout, published counts, configurations, attention semantics.</summary>
public class TorchvisionViTTests
{
    private static VisionTransformerConfig Tiny(int image = 12, int patch = 4, int layers = 1, int heads = 3, int hidden = 12, int mlp = 20,
        int classes = 5, int? rep = null, int inChans = 3) => new()
    {
        ImageSize = image, PatchSize = patch, NumLayers = layers, NumHeads = heads, HiddenDim = hidden, MlpDim = mlp,
        NumClasses = classes, RepresentationSize = rep, InChans = inChans,
    };

    [Fact]
    public void ParityWithPyTorchFixture()
    {
        FixtureChecks.AssertParity("torchvision_vit", "torchvision.models.vision_transformer.VisionTransformer",
            logitsAbs: 5e-6, gradientRel: 1.2e-5);   // achieved: logits 4.8e-7, loss 2.4e-7, gradients 1.13e-6 relative
    }

    [Fact]
    public void StateDictKeysAndShapesEqualTheFixture()
    {
        FixtureChecks.AssertStateDictMatches("torchvision_vit");
        Assert.IsType<VisionTransformer>(FixtureChecks.Build("torchvision_vit"));
    }

    /// <summary>Parameter count of torchvision's VisionTransformer, written out from its constructor.</summary>
    private static long ExpectedCount(VisionTransformerConfig c)
    {
        long d = c.HiddenDim, m = c.MlpDim, n = (long)(c.ImageSize / c.PatchSize) * (c.ImageSize / c.PatchSize) + 1;
        long conv = (long)c.InChans * c.PatchSize * c.PatchSize * d + d;
        long block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * m + m) + (m * d + d);
        long feat = c.RepresentationSize ?? d;
        long heads = (c.RepresentationSize is int r ? d * r + r : 0) + (c.NumClasses > 0 ? feat * c.NumClasses + c.NumClasses : 0);
        return conv + d + n * d + c.NumLayers * block + 2 * d + heads;
    }

    [Theory]
    [InlineData("vit_b_16", 86_567_656L)]
    [InlineData("vit_b_32", 88_224_232L)]
    public void PresetsHaveTorchvisionsPublishedParameterCounts(string name, long published)
    {
        var preset = Presets.Get(name);
        Assert.Equal(published, preset.PublishedParameters);
        var model = (VisionTransformer)preset.Build();
        Assert.Equal(published, model.ParameterCount());
        Assert.Equal(published, ExpectedCount(model.Config));
    }

    [Theory]
    [InlineData("vit_l_16", 304_326_632L)]
    [InlineData("vit_h_14", 632_045_800L)]
    public void LargePresetCountsMatchTheConstructorFormula(string name, long published)
    {
        // ViT-L/16 and ViT-H/14 (1.2 and 2.5 GB of weights) are checked by the formula, which the built models above and below confirm.
        var preset = Presets.Get(name);
        Assert.Equal(published, preset.PublishedParameters);
        var kw = preset.Spec.Kwargs;
        var c = new VisionTransformerConfig
        {
            ImageSize = kw["image_size"]!.GetValue<int>(), PatchSize = kw["patch_size"]!.GetValue<int>(), NumLayers = kw["num_layers"]!.GetValue<int>(),
            NumHeads = kw["num_heads"]!.GetValue<int>(), HiddenDim = kw["hidden_dim"]!.GetValue<int>(), MlpDim = kw["mlp_dim"]!.GetValue<int>(),
        };
        Assert.Equal(published, ExpectedCount(c));
        // The same spec, scaled down in depth, builds to the formula's count.
        var shallow = (VisionTransformer)ModelFactory.Create(preset.Spec.Constructor, new JsonObject
        {
            ["image_size"] = 224, ["patch_size"] = c.PatchSize, ["num_layers"] = 1, ["num_heads"] = c.NumHeads, ["hidden_dim"] = c.HiddenDim, ["mlp_dim"] = c.MlpDim,
        });
        Assert.Equal(ExpectedCount(shallow.Config), shallow.ParameterCount());
    }

    [Theory]
    [InlineData(12, 4, 1, 3, 12, null, 3)]
    [InlineData(15, 5, 2, 2, 8, 6, 1)]
    [InlineData(8, 8, 0, 1, 4, null, 2)]
    [InlineData(20, 2, 1, 4, 16, 3, 3)]
    public void OtherConfigurations(int image, int patch, int layers, int heads, int hidden, int? rep, int inChans)
    {
        Init.Seed(2);
        var model = new VisionTransformer(Tiny(image, patch, layers, heads, hidden, rep: rep, inChans: inChans, classes: 7));
        model.Eval();
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
        int n = (image / patch) * (image / patch) + 1;
        Assert.Equal(new[] { 1, n, hidden }, model.Encoder.PosEmbedding.Shape);
        var img = TestData.Uniform(3, -1, 1, 2, inChans, image, image);
        var tokens = model.ForwardFeatures(img);
        Assert.Equal(new[] { 2, n, hidden }, tokens.Shape);
        Assert.Equal(new[] { 2, 7 }, model.Forward(img).Shape);
        Assert.Equal(new[] { 2, rep ?? hidden }, model.ForwardHead(tokens, preLogits: true).Shape);
        Assert.Equal(rep is null ? new[] { "head" } : new[] { "pre_logits", "act", "head" }, model.Heads.NamedChildren().Select(c => c.Name));
    }

    [Fact]
    public void RepresentationLayerIsLinearThenTanh()
    {
        Init.Seed(3);
        var model = new VisionTransformer(Tiny(rep: 6)); model.Eval();
        var head = (Linear)model.Heads["head"]!; var pre = (Linear)model.Heads["pre_logits"]!;
        Assert.All(head.Weight.Data, v => Assert.Equal(0f, v));   // torchvision zero-initialises the head
        head.Weight.Data.AsSpan().Fill(0.3f); head.Bias!.Data[1] = 0.5f;
        var img = TestData.Uniform(4, -1, 1, 2, 3, 12, 12);
        var tokens = model.ForwardFeatures(img);
        var cls = tokens.Slice(1, 0, 1).Reshape(2, 12);
        var expected = F.Linear(F.Linear(cls, pre.Weight, pre.Bias).Tanh(), head.Weight, head.Bias);
        Assert.Equal(expected.Data, model.Forward(img).Data);
        // A zero class token plus N(0, 0.02²) positions is a near-constant row whose LayerNorm is far too curved for
        // finite differences: give it O(1) values first.
        TestData.Uniform(10, -1, 1, 12).Data.CopyTo(model.ClassToken.Data, 0);
        GradCheck.Verify(_ => model.Forward(img), [pre.Weight, pre.Bias!, model.ConvProj.Weight, model.ClassToken]);
    }

    [Fact]
    public void EncoderBlockComputesTorchvisionsAttentionWithContiguousHeadSlices()
    {
        // x + out_proj(softmax(q kᵀ/√D) v) with q, k, v = rows [0, C), [C, 2C), [2C, 3C) of in_proj and head h = columns
        // [h·D, (h+1)·D) of each; then + mlp(ln_2(·)). Written out in double.
        Init.Seed(4);
        int b = 2, n = 5, c = 6, h = 3, d = 2, m = 7;
        var block = new EncoderBlock(c, h, m, 0f, 0f); block.Eval();
        var rng = new Random(5);
        foreach (var (_, p) in block.NamedParameters()) for (int i = 0; i < p.Size; i++) p.Data[i] = (float)(rng.NextDouble() - 0.5);
        var x = TestData.Uniform(6, -1, 1, b, n, c);
        var att = block.SelfAttention;
        double[] Ln(float[] v, int off, LayerNorm ln)
        {
            double mean = 0, var = 0;
            for (int i = 0; i < c; i++) mean += v[off + i] / (double)c;
            for (int i = 0; i < c; i++) var += Math.Pow(v[off + i] - mean, 2) / c;
            return Enumerable.Range(0, c).Select(i => (v[off + i] - mean) / Math.Sqrt(var + 1e-6) * ln.Weight.Data[i] + ln.Bias.Data[i]).ToArray();
        }
        var expected = new double[b * n * c];
        for (int bi = 0; bi < b; bi++)
        {
            var qkv = new double[n, 3 * c];
            for (int t = 0; t < n; t++)
            {
                var y = Ln(x.Data, (bi * n + t) * c, block.Ln1);
                for (int o = 0; o < 3 * c; o++)
                {
                    double s = att.InProjBias.Data[o];
                    for (int i = 0; i < c; i++) s += att.InProjWeight.Data[o * c + i] * y[i];
                    qkv[t, o] = s;
                }
            }
            var mid = new double[n, c];
            for (int t = 0; t < n; t++)
            {
                var o = new double[c];
                for (int hh = 0; hh < h; hh++)
                {
                    var sc = new double[n];
                    for (int j = 0; j < n; j++) { for (int e = 0; e < d; e++) sc[j] += qkv[t, hh * d + e] * qkv[j, c + hh * d + e]; sc[j] /= Math.Sqrt(d); }
                    double mx = sc.Max(), z = sc.Sum(v => Math.Exp(v - mx));
                    for (int j = 0; j < n; j++) for (int e = 0; e < d; e++) o[hh * d + e] += Math.Exp(sc[j] - mx) / z * qkv[j, 2 * c + hh * d + e];
                }
                for (int i = 0; i < c; i++)
                {
                    double s = att.OutProj.Bias!.Data[i];
                    for (int e = 0; e < c; e++) s += att.OutProj.Weight.Data[i * c + e] * o[e];
                    mid[t, i] = s + x.Data[(bi * n + t) * c + i];
                }
            }
            var fc1 = (Linear)block.Mlp[0]; var fc2 = (Linear)block.Mlp[3];
            for (int t = 0; t < n; t++)
            {
                var row = Enumerable.Range(0, c).Select(i => (float)mid[t, i]).ToArray();
                var y = Ln(row, 0, block.Ln2);
                var hid = new double[m];
                for (int k = 0; k < m; k++)
                {
                    double s = fc1.Bias!.Data[k];
                    for (int i = 0; i < c; i++) s += fc1.Weight.Data[k * c + i] * y[i];
                    hid[k] = Kernels.ReferenceMath.Gelu(s);
                }
                for (int i = 0; i < c; i++)
                {
                    double s = fc2.Bias!.Data[i];
                    for (int k = 0; k < m; k++) s += fc2.Weight.Data[i * m + k] * hid[k];
                    expected[(bi * n + t) * c + i] = s + mid[t, i];
                }
            }
        }
        TestData.AssertClose(expected, block.Forward(x).Data, 1e-5, 1e-5, "encoder block");
    }

    [Fact]
    public void AttentionDropoutInTrainingTakesTheUnfusedPathWithCorrectGradients()
    {
        Init.Seed(7);
        var att = new MultiheadAttention(8, 2, dropout: 0.3f);
        var x = TestData.Uniform(8, -1, 1, 2, 4, 8);
        att.Eval();
        var evalOut = att.Forward(x).Data;
        att.Train();
        Dropout.Seed(1);
        Assert.NotEqual(evalOut, att.Forward(x).Data);
        // The mask is reseeded on every call so the function is deterministic for the finite differences.
        GradCheck.Verify(t => { Dropout.Seed(1); return att.Forward(t[0]); }, [x, att.InProjWeight, att.InProjBias, att.OutProj.Weight]);
        // Without attention dropout, training and evaluation agree.
        var plain = new MultiheadAttention(8, 2);
        Assert.Equal(plain.Eval().Forward(x).Data, plain.Train().Forward(x).Data);
    }

    [Fact]
    public void InitialisationFollowsTorchvision()
    {
        Init.Seed(9);
        var model = new VisionTransformer(Tiny(hidden: 24, heads: 4, mlp: 40));
        Assert.All(model.ClassToken.Data, v => Assert.Equal(0f, v));
        Assert.All(((Linear)model.Heads["head"]!).Weight.Data, v => Assert.Equal(0f, v));
        Assert.All(model.ConvProj.Bias!.Data, v => Assert.Equal(0f, v));
        var att = model.Encoder.Blocks.First().SelfAttention;
        Assert.All(att.InProjBias.Data, v => Assert.Equal(0f, v));
        float xavier = MathF.Sqrt(6f / (24 + 72));
        Assert.All(att.InProjWeight.Data, v => Assert.InRange(v, -xavier, xavier));
        double posStd = Math.Sqrt(model.Encoder.PosEmbedding.Data.Select(v => (double)v * v).Average());
        Assert.InRange(posStd, 0.015, 0.025);
    }

    [Fact]
    public void BadConfigurationsAndInputsAreRejected()
    {
        var kwargs = new JsonObject { ["image_size"] = 30, ["patch_size"] = 8, ["num_layers"] = 1, ["num_heads"] = 2, ["hidden_dim"] = 8, ["mlp_dim"] = 16 };
        Assert.Contains("not divisible", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("VisionTransformer", kwargs)).Message);
        kwargs["image_size"] = 32; kwargs["num_heads"] = 3;
        Assert.Contains("num_heads", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("VisionTransformer", kwargs)).Message);
        kwargs["num_heads"] = 2; kwargs["norm_eps"] = 1e-5;
        Assert.Contains("norm_eps", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("VisionTransformer", kwargs)).Message);
        kwargs.Remove("norm_eps"); kwargs.Remove("mlp_dim");
        Assert.Contains("mlp_dim", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("VisionTransformer", kwargs)).Message);
        var model = new VisionTransformer(Tiny());
        Assert.Contains("[B, 3, 12, 12]", Assert.Throws<ArgumentException>(() => model.Forward(Tensor.Zeros(1, 3, 16, 16))).Message);
    }

    [Fact]
    public void KwargsRoundTripThroughTheFactory()
    {
        var c = Tiny(rep: 4, inChans: 1) with { Dropout = 0.1f, AttentionDropout = 0.2f };
        var model = (VisionTransformer)ModelFactory.Create("torchvision.models.vision_transformer.VisionTransformer", c.ToKwargs());
        Assert.Equal(c.ToKwargs().ToJsonString(), model.Config.ToKwargs().ToJsonString());
    }

    [Fact]
    public void LayerNormEpsReachesEveryLayerNormAndTheKwargs()
    {
        var c = Tiny() with { LayerNormEps = 1e-12f };
        var kwargs = c.ToKwargs();
        Assert.Equal(1e-12f, kwargs["layer_norm_eps"]!.GetValue<float>());
        var model = (VisionTransformer)ModelFactory.Create("torchvision.models.vision_transformer.VisionTransformer", kwargs);
        Assert.Equal(c, model.Config);
        Assert.Equal(1e-12f, model.Encoder.Ln.Eps);
        Assert.All(model.Encoder.Blocks, b => Assert.Equal((1e-12f, 1e-12f), (b.Ln1.Eps, b.Ln2.Eps)));
        kwargs.Remove("layer_norm_eps");
        var byDefault = (VisionTransformer)ModelFactory.Create("VisionTransformer", kwargs);
        Assert.Equal(1e-6f, byDefault.Config.LayerNormEps);
        Assert.All(byDefault.Encoder.Blocks, b => Assert.Equal((1e-6f, 1e-6f), (b.Ln1.Eps, b.Ln2.Eps)));
        foreach (var bad in new[] { 0.0, -1e-6 })
        {
            kwargs["layer_norm_eps"] = bad;
            Assert.Contains("layer_norm_eps must be positive and finite", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("VisionTransformer", kwargs)).Message);
        }
        Assert.Throws<ArgumentException>(() => new VisionTransformer(Tiny() with { LayerNormEps = float.PositiveInfinity }));
        Assert.Throws<ArgumentException>(() => new VisionTransformer(Tiny() with { LayerNormEps = float.NaN }));

        // Tokens of tiny variance (patch embedding scaled down): the epsilon changes the output.
        Init.Seed(3);
        var a = new VisionTransformer(Tiny() with { LayerNormEps = 1e-12f });
        var b2 = new VisionTransformer(Tiny());
        var rng = new Random(4);
        foreach (var (name, t) in a.StateDict())
            for (int i = 0; i < t.Size; i++) t.Data[i] = (float)(rng.NextDouble() - 0.5) * (name is "conv_proj.weight" or "conv_proj.bias" or "class_token" or "encoder.pos_embedding" ? 1e-4f : 1f);
        b2.LoadStateDict(a.StateDict());
        a.Eval(); b2.Eval();
        var x = TestData.Uniform(5, -1, 1, 1, 3, 12, 12);
        var ya = a.Forward(x).Data; var yb = b2.Forward(x).Data;
        Assert.True(ya.Zip(yb, (p, q) => Math.Abs(p - q)).Max() > 0.1f, "LayerNorm eps has no effect");
    }
}
