using Xunit.Abstractions;
using System.Text.Json.Nodes;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;
using VitSharp.Tests.Kernels;
using VitSharp.Training;

namespace VitSharp.Tests.Models;

/// <summary>
/// DeiT's distilled model in timm's layout (<see cref="DistilledVisionTransformer"/>): state_dict keys, parameter counts,
/// a double-precision twin written from timm's source, the two heads, gradients, ResetClassifier, pos-embed resampling
/// with two prefix tokens, the factory and checkpoints.
/// </summary>
public class DeiTDistilledTests(ITestOutputHelper output)
{
    private static DeiTConfig Tiny(int img = 8, int patch = 4, int dim = 6, int depth = 1, int heads = 2, double mlpRatio = 2.0,
        int classes = 3, int inChans = 3, bool qkvBias = true) => new()
    {
        ImgSize = img, PatchSize = patch, EmbedDim = dim, Depth = depth, NumHeads = heads, MlpRatio = mlpRatio,
        NumClasses = classes, InChans = inChans, QkvBias = qkvBias,
    };

    /// <summary>Every parameter drawn off its initialisation (LayerNorms off 1/0, biases non-zero), then eval mode.</summary>
    private static T Randomized<T>(T model, int seed, float scale = 0.5f) where T : Module
    {
        var rng = new Random(seed);
        foreach (var (name, p) in model.NamedParameters())
        {
            bool norm = name.Contains("norm", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal);
            for (int i = 0; i < p.Size; i++) p.Data[i] = norm ? (float)(0.75 + 0.5 * rng.NextDouble()) : (float)(scale * (2 * rng.NextDouble() - 1));
        }
        model.Eval();
        return model;
    }

    // ------------------------------------------------------------------ parity with timm

    private static string FixtureFile(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    /// <summary>
    /// DeiT's release format, <c>torch.save({'model': state_dict})</c> of timm's VisionTransformerDistilled (models.json's
    /// <c>deit_distilled</c>), read with <see cref="VitSharp.IO.TorchFile"/> and loaded with no key map: the eval output (the mean
    /// of both heads) equals timm's logits.
    /// </summary>
    [Fact]
    public void ReleasedDistilledCheckpointGivesTimmsLogits()
    {
        var spec = JsonNode.Parse(File.ReadAllText(FixtureFile("models.json")))!["deit_distilled"]!.AsObject();
        Assert.StartsWith(DeiTConfig.Constructor, spec["constructor"]!.GetValue<string>());
        var model = Assert.IsType<DistilledVisionTransformer>(ModelFactory.Create(DeiTConfig.Constructor, (JsonObject)spec["kwargs"]!.DeepClone()));
        Assert.Equal(Tiny(img: 32, patch: 8, dim: 48, depth: 2, heads: 3, mlpRatio: 2.0, classes: 10), model.Config);

        var weights = VitSharp.IO.TorchFile.LoadStateDict(FixtureFile("deit_distilled.pth"));
        Assert.Equal(model.StateDict().Keys.Order(StringComparer.Ordinal), weights.Keys.Order(StringComparer.Ordinal));
        model.LoadStateDict(weights);                                   // strict: timm's keys are ours
        model.Eval();

        var expected = VitSharp.IO.Weights.Load(FixtureFile("expected.safetensors"));
        var input = expected["input"];
        var logits = expected["deit_distilled_logits"];
        var ours = model.Forward(input);
        Assert.Equal(logits.Shape, ours.Shape);
        double maxDiff = logits.Data.Zip(ours.Data, (e, a) => Math.Abs((double)e - a)).Max();
        output.WriteLine($"deit_distilled: max |difference| from timm's logits {maxDiff:E2} over {logits.Size} logits");
        Assert.True(maxDiff <= 3e-6, $"max |difference| {maxDiff:E2} from timm's logits");   // achieved 2.4e-7

        // The same through the fine-tuning loader, and inside a tensor scope (per-block scopes).
        var again = new DistilledVisionTransformer(model.Config);
        Pretrained.LoadDistilled(again, weights);
        again.Eval();
        using (VitSharp.Autograd.NoGrad())
        using (TensorScope.Begin())
            Assert.Equal(ours.Data, again.Forward(input).Data);
        // From the file path (a .pth), fine-tuned at another size: 48² images, a 6×6 grid from the 4×4 one, both prefix tokens kept.
        var larger = new DistilledVisionTransformer(model.Config with { ImgSize = 48 });
        Pretrained.LoadDistilled(larger, FixtureFile("deit_distilled.pth"));
        Assert.Equal(weights["pos_embed"].Data.AsSpan(0, 2 * 48).ToArray(), larger.PosEmbed.Data.AsSpan(0, 2 * 48).ToArray());
        Assert.Equal([1, 38, 48], larger.PosEmbed.Shape);
        Assert.Equal([2, 10], larger.Eval().Forward(TestData.Uniform(31, -1, 1, 2, 3, 48, 48)).Shape);
        // The two heads differ (the mean is not one head twice).
        var (cls, dist) = model.ForwardBoth(input);
        Assert.True(cls.Data.Zip(dist.Data, (a, b) => Math.Abs(a - b)).Max() > 1e-3);
    }

    // ------------------------------------------------------------------ layout and counts

    [Fact]
    public void StateDictHasTimmsKeysAndShapes()
    {
        var c = Tiny(depth: 2);
        var model = new DistilledVisionTransformer(c);
        int d = c.EmbedDim, h = c.MlpHidden, n = c.NumPatches + 2;
        var expected = new Dictionary<string, int[]>
        {
            ["cls_token"] = [1, 1, d], ["dist_token"] = [1, 1, d], ["pos_embed"] = [1, n, d],
            ["patch_embed.proj.weight"] = [d, 3, 4, 4], ["patch_embed.proj.bias"] = [d],
            ["norm.weight"] = [d], ["norm.bias"] = [d],
            ["head.weight"] = [3, d], ["head.bias"] = [3], ["head_dist.weight"] = [3, d], ["head_dist.bias"] = [3],
        };
        for (int i = 0; i < 2; i++)
        {
            string p = $"blocks.{i}.";
            expected[p + "norm1.weight"] = [d]; expected[p + "norm1.bias"] = [d];
            expected[p + "attn.qkv.weight"] = [3 * d, d]; expected[p + "attn.qkv.bias"] = [3 * d];
            expected[p + "attn.proj.weight"] = [d, d]; expected[p + "attn.proj.bias"] = [d];
            expected[p + "norm2.weight"] = [d]; expected[p + "norm2.bias"] = [d];
            expected[p + "mlp.fc1.weight"] = [h, d]; expected[p + "mlp.fc1.bias"] = [h];
            expected[p + "mlp.fc2.weight"] = [d, h]; expected[p + "mlp.fc2.bias"] = [d];
        }
        var sd = model.StateDict();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), sd.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, shape) in expected) Assert.True(shape.SequenceEqual(sd[k].Shape), $"{k}: {Tensor.ShapeString(sd[k].Shape)}");
        Assert.Equal(12, h);

        // Without qkv_bias there is no attn.qkv.bias; LayerNorms use timm's eps.
        var noBias = new DistilledVisionTransformer(Tiny(qkvBias: false)).StateDict();
        Assert.DoesNotContain("blocks.0.attn.qkv.bias", noBias.Keys);
        Assert.All(model.NamedModules().Select(m => m.Module).OfType<LayerNorm>(), ln => Assert.Equal(1e-6f, ln.Eps));
    }

    /// <summary>Parameter count of timm's VisionTransformerDistilled, written out from its constructor.</summary>
    private static long ExpectedCount(DeiTConfig c)
    {
        long d = c.EmbedDim, h = (long)(c.EmbedDim * c.MlpRatio), n = (long)c.NumPatches + 2, k = c.NumClasses;
        long patchEmbed = (long)c.InChans * c.PatchSize * c.PatchSize * d + d;
        long block = 2 * d + (3 * d * d + (c.QkvBias ? 3 * d : 0)) + (d * d + d) + 2 * d + (d * h + h) + (h * d + d);
        long heads = k > 0 ? 2 * (d * k + k) : 0;
        return patchEmbed + 2 * d + n * d + c.Depth * block + 2 * d + heads;
    }

    [Trait("Category", "Slow")]
    [Theory]
    [InlineData("deit_tiny_distilled_patch16_224", 192, 3, 5_910_800L)]
    [InlineData("deit_small_distilled_patch16_224", 384, 6, 22_436_432L)]
    [InlineData("deit_base_distilled_patch16_224", 768, 12, 87_338_192L)]
    public void PresetsHaveTimmsParameterCounts(string name, int dim, int heads, long published)
    {
        var preset = Presets.Get(name);
        Assert.Equal(published, preset.PublishedParameters);
        Assert.Equal(DeiTConfig.Constructor, preset.Spec.Constructor);
        var c = new DeiTConfig
        {
            ImgSize = 224, PatchSize = 16, EmbedDim = dim, Depth = 12, NumHeads = heads, MlpRatio = 4, QkvBias = true, NumClasses = 1000,
        };
        // The count from the architecture: 144·C² + 3127·C + 2000 for these configurations.
        Assert.Equal(144L * dim * dim + 3127L * dim + 2000, ExpectedCount(c));
        Assert.Equal(published, ExpectedCount(c));
        var kw = ModelFactory.Create(preset.Spec.Constructor, (JsonObject)preset.Spec.Kwargs.DeepClone());
        var model = Assert.IsType<DistilledVisionTransformer>(kw);
        Assert.Equal(c, model.Config);
        Assert.Equal(published, model.ParameterCount());
        Assert.Equal((3, 224, 224), (model.InputChannels, model.InputHeight, model.InputWidth));
    }

    [Fact]
    public void SummaryOfTheTinyPresetPrintsTimmsCount()
    {
        var s = global::VitSharp.Cli.SummaryCommand.Build(Presets.Get("deit_tiny_distilled_patch16_224"));
        Assert.Equal(5_910_800L, s.TotalParameters);
        Assert.Equal([1, 1000], s.Rows[0].OutputShape!);
        Assert.Equal([1, 198, 192], s.Rows.Single(r => r.Name == "norm").OutputShape!);
        Assert.Equal(12, s.Rows.Count(r => r.Type == nameof(TimmBlock) && r.Calls == 1));
    }

    [Fact]
    public void InitialisationFollowsTimm()
    {
        Init.Seed(3);
        var model = new DistilledVisionTransformer(Tiny(dim: 48, heads: 3, depth: 2, classes: 10));
        static double Std(Tensor t) { double m = t.Data.Average(v => (double)v); return Math.Sqrt(t.Data.Average(v => (v - m) * (v - m))); }
        Assert.InRange(Std(model.PosEmbed), 0.015, 0.025);
        Assert.InRange(Std(model.DistToken), 0.01, 0.03);
        Assert.All(model.ClsToken.Data, v => Assert.InRange(Math.Abs(v), 0, 1e-5));
        foreach (var (name, p) in model.NamedParameters())
        {
            if (name.StartsWith("blocks.", StringComparison.Ordinal) && (name.Contains(".attn.") || name.Contains(".mlp.")) || name.StartsWith("head", StringComparison.Ordinal))
            {
                if (name.EndsWith(".bias", StringComparison.Ordinal)) Assert.All(p.Data, v => Assert.Equal(0f, v));
                else Assert.InRange(Std(p), 0.015, 0.025);
            }
            else if (name.Contains("norm", StringComparison.Ordinal))
                Assert.All(p.Data, v => Assert.Equal(name.EndsWith(".weight", StringComparison.Ordinal) ? 1f : 0f, v));
        }
    }

    // ------------------------------------------------------------------ what it computes

    /// <summary>Row-major y = W·x + b for W [out, in].</summary>
    private static double[] Lin(Dictionary<string, Tensor> sd, string name, double[] x)
    {
        var w = sd[name + ".weight"];
        int o = w.Dim(0), i = w.Dim(1);
        var y = new double[o];
        for (int r = 0; r < o; r++)
        {
            double s = sd.TryGetValue(name + ".bias", out var b) ? b.Data[r] : 0;
            for (int k = 0; k < i; k++) s += (double)w.Data[r * i + k] * x[k];
            y[r] = s;
        }
        return y;
    }

    private static double[] Ln(Dictionary<string, Tensor> sd, string name, double[] x)
    {
        double mean = x.Average(), var = x.Average(v => (v - mean) * (v - mean));
        var w = sd[name + ".weight"].Data; var b = sd[name + ".bias"].Data;
        return x.Select((v, i) => (v - mean) / Math.Sqrt(var + 1e-6) * w[i] + b[i]).ToArray();
    }

    /// <summary>
    /// timm's forward written out in double from its source: conv patch embedding, cat(cls, dist, patches) + pos_embed,
    /// pre-norm blocks (qkv viewed as [3, H, D], softmax(q·kᵀ·D^-½)·v, proj; fc1 → exact GELU → fc2), norm, both heads.
    /// Returns (x_cls, x_dist) per sample.
    /// </summary>
    private static (double[] Cls, double[] Dist)[] Reference(DistilledVisionTransformer model, Tensor img)
    {
        var sd = model.StateDict();
        var c = model.Config;
        int bsz = img.Dim(0), ch = c.InChans, s = c.ImgSize, p = c.PatchSize, g = c.GridSize, d = c.EmbedDim, h = c.NumHeads, hd = d / h;
        var result = new (double[], double[])[bsz];
        for (int b = 0; b < bsz; b++)
        {
            var x = new List<double[]> { sd["cls_token"].Data.Select(v => (double)v).ToArray(), sd["dist_token"].Data.Select(v => (double)v).ToArray() };
            var cw = sd["patch_embed.proj.weight"].Data; var cb = sd["patch_embed.proj.bias"].Data;
            for (int gy = 0; gy < g; gy++)
                for (int gx = 0; gx < g; gx++)
                {
                    var t = new double[d];
                    for (int o = 0; o < d; o++)
                    {
                        double acc = cb[o];
                        for (int ci = 0; ci < ch; ci++)
                            for (int ky = 0; ky < p; ky++)
                                for (int kx = 0; kx < p; kx++)
                                    acc += (double)cw[((o * ch + ci) * p + ky) * p + kx] * img.Data[((b * ch + ci) * s + gy * p + ky) * s + gx * p + kx];
                        t[o] = acc;
                    }
                    x.Add(t);
                }
            var pos = sd["pos_embed"].Data;
            for (int i = 0; i < x.Count; i++) for (int j = 0; j < d; j++) x[i][j] += pos[i * d + j];
            int n = x.Count;
            for (int blk = 0; blk < c.Depth; blk++)
            {
                string pre = $"blocks.{blk}.";
                var qkv = x.Select(t => Lin(sd, pre + "attn.qkv", Ln(sd, pre + "norm1", t))).ToArray();
                var o = new double[n][];
                for (int i = 0; i < n; i++)
                {
                    o[i] = new double[d];
                    for (int hh = 0; hh < h; hh++)
                    {
                        var scores = new double[n];
                        for (int j = 0; j < n; j++)
                        {
                            double dot = 0;
                            for (int k = 0; k < hd; k++) dot += qkv[i][hh * hd + k] * qkv[j][d + hh * hd + k];
                            scores[j] = dot * Math.Pow(hd, -0.5);
                        }
                        double max = scores.Max(), sum = scores.Sum(v => Math.Exp(v - max));
                        for (int j = 0; j < n; j++)
                        {
                            double a = Math.Exp(scores[j] - max) / sum;
                            for (int k = 0; k < hd; k++) o[i][hh * hd + k] += a * qkv[j][2 * d + hh * hd + k];
                        }
                    }
                }
                for (int i = 0; i < n; i++)
                {
                    var att = Lin(sd, pre + "attn.proj", o[i]);
                    for (int j = 0; j < d; j++) x[i][j] += att[j];
                    var hid = Lin(sd, pre + "mlp.fc1", Ln(sd, pre + "norm2", x[i])).Select(ReferenceMath.Gelu).ToArray();
                    var mlp = Lin(sd, pre + "mlp.fc2", hid);
                    for (int j = 0; j < d; j++) x[i][j] += mlp[j];
                }
            }
            var cls = Ln(sd, "norm", x[0]); var dist = Ln(sd, "norm", x[1]);
            result[b] = c.NumClasses > 0 ? (Lin(sd, "head", cls), Lin(sd, "head_dist", dist)) : (cls, dist);
        }
        return result;
    }

    [Theory]
    [InlineData(8, 4, 6, 1, 2, 2.0, 3, 3, 1)]
    [InlineData(12, 4, 12, 2, 3, 4.0, 5, 1, 2)]
    [InlineData(8, 2, 8, 2, 1, 1.5, 4, 2, 3)]
    [InlineData(8, 4, 6, 1, 2, 2.0, 0, 3, 4)]      // num_classes 0: Identity heads
    public void ForwardMatchesADoublePrecisionTwinOfTimm(int img, int patch, int dim, int depth, int heads, double ratio, int classes, int inChans, int seed)
    {
        Init.Seed(seed);
        var model = Randomized(new DistilledVisionTransformer(Tiny(img, patch, dim, depth, heads, ratio, classes, inChans)), seed);
        var x = TestData.Uniform(seed + 10, -1, 1, 2, inChans, img, img);
        var reference = Reference(model, x);
        var (cls, dist) = model.ForwardBoth(x);
        var mean = model.Forward(x);
        int k = classes > 0 ? classes : dim;
        Assert.Equal([2, k], mean.Shape);
        // Achieved against the double-precision twin, over every configuration: 7.3e-7 (x_cls), 4.2e-7 (x_dist), 3.2e-7 (mean).
        for (int b = 0; b < 2; b++)
        {
            TestData.AssertClose(reference[b].Cls, cls.Data.AsSpan(b * k, k).ToArray(), 8e-6, 0, "x_cls");
            TestData.AssertClose(reference[b].Dist, dist.Data.AsSpan(b * k, k).ToArray(), 8e-6, 0, "x_dist");
            TestData.AssertClose(reference[b].Cls.Zip(reference[b].Dist, (a, e) => (a + e) / 2).ToArray(), mean.Data.AsSpan(b * k, k).ToArray(), 8e-6, 0, "mean");
        }
    }

    [Fact]
    public void OutputIsTheMeanOfTheTwoHeadsAndFeaturesPutTheTwoPrefixTokensFirst()
    {
        Init.Seed(5);
        var model = Randomized(new DistilledVisionTransformer(Tiny(img: 12, depth: 2)), 5);
        var x = TestData.Uniform(6, -1, 1, 3, 3, 12, 12);
        var tokens = model.ForwardFeatures(x);
        Assert.Equal([3, 9 + 2, 6], tokens.Shape);
        var (cls, dist) = model.ForwardBoth(x);
        var headOfToken0 = ((Linear)model.Head).Forward(tokens.Slice(1, 0, 1).Reshape(3, 6));
        var distOfToken1 = ((Linear)model.HeadDist).Forward(tokens.Slice(1, 1, 1).Reshape(3, 6));
        Assert.Equal(headOfToken0.Data, cls.Data);
        Assert.Equal(distOfToken1.Data, dist.Data);
        Assert.NotEqual(cls.Data, dist.Data);
        var output = model.Forward(x);
        for (int i = 0; i < output.Size; i++) Assert.Equal((cls.Data[i] + dist.Data[i]) * 0.5f, output.Data[i], 6);
        var pre = model.ForwardHead(tokens, preLogits: true);
        Assert.Equal([3, 6], pre.Shape);
        for (int b = 0; b < 3; b++)
            for (int j = 0; j < 6; j++)
                Assert.Equal((tokens.Data[(b * 11 + 0) * 6 + j] + tokens.Data[(b * 11 + 1) * 6 + j]) * 0.5f, pre.Data[b * 6 + j], 6);
    }

    [Fact]
    public void DistilledTrainingIsTimmsFlagAndForwardStaysTheMean()
    {
        Init.Seed(7);
        var model = Randomized(new DistilledVisionTransformer(Tiny()), 7);
        var x = TestData.Uniform(8, -1, 1, 2, 3, 8, 8);
        var evalOut = model.Forward(x).Data;
        Assert.False(model.DistilledTraining);
        model.SetDistilledTraining();
        Assert.True(model.DistilledTraining);
        Assert.False(model.ReturnsBothHeads);            // eval mode: timm averages
        model.Train();
        Assert.True(model.ReturnsBothHeads);             // timm would return (x_cls, x_dist) now
        Assert.Equal(evalOut, model.Forward(x).Data);    // no dropout configured: train and eval agree
        var (cls, dist) = model.ForwardBoth(x);
        // DeiT's hard-distillation loss on the pair trains both heads.
        model.ZeroGrad();
        (F.CrossEntropy(cls, [0, 1]) * 0.5f + F.CrossEntropy(dist, [2, 2]) * 0.5f).Backward();
        Assert.Contains(((Linear)model.Head).Weight.Grad!.Data, v => v != 0);
        Assert.Contains(((Linear)model.HeadDist).Weight.Grad!.Data, v => v != 0);
        model.DistilledTraining = false;
        Assert.False(model.ReturnsBothHeads);
    }

    [Fact]
    public void EveryParameterGradientMatchesFiniteDifferences()
    {
        Init.Seed(11);
        var model = Randomized(new DistilledVisionTransformer(Tiny(img: 8, patch: 4, dim: 4, depth: 2, heads: 2, mlpRatio: 1.5, classes: 3)), 11, scale: 0.8f);
        var x = TestData.Uniform(12, -1, 1, 2, 3, 8, 8);
        var names = model.NamedParameters().Select(p => p.Name).ToList();
        Assert.Equal(3 + 2 + 2 * 12 + 2 + 4, names.Count);
        FixtureChecks.AssertEveryParameterGetsAGradient(model, x, [2, 0]);
        FixtureChecks.AssertGradCheck(model, x, [2, 0], names, h: 2e-3);
    }

    [Fact]
    public void UnfusedAttentionPathEqualsTheFusedKernelAndHasCorrectGradients()
    {
        // Attention dropout in training mode takes the unfused path; with a vanishing rate it must compute the same thing.
        Init.Seed(13);
        var fused = Randomized(new DistilledVisionTransformer(Tiny(dim: 6, heads: 3)), 13);
        Init.Seed(13);
        var unfused = Randomized(new DistilledVisionTransformer(Tiny(dim: 6, heads: 3) with { AttnDropRate = 1e-30f }), 13);
        unfused.Train();
        var x = TestData.Uniform(14, -1, 1, 2, 3, 8, 8);
        TestData.AssertClose(fused.Forward(x).Data, unfused.Forward(x).Data, 1e-6, 1e-5, "unfused attention");
        FixtureChecks.AssertGradCheck(unfused, x, [1, 2], ["blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "pos_embed"], h: 2e-3);
    }

    [Fact]
    public void DropoutsAndDropPathActOnlyInTraining()
    {
        Init.Seed(15);
        var cfg = Tiny(depth: 3) with { PosDropRate = 0.3f, ProjDropRate = 0.3f, AttnDropRate = 0.3f, DropPathRate = 0.5f, DropRate = 0.2f };
        var model = Randomized(new DistilledVisionTransformer(cfg), 15);
        Assert.Equal([0f, 0.25f, 0.5f], model.TimmBlocks.Select(b => b.DropPath1.P).ToArray());   // timm: linspace(0, rate, depth)
        Assert.Equal(model.TimmBlocks.Select(b => b.DropPath1.P), model.TimmBlocks.Select(b => b.DropPath2.P));
        var x = TestData.Uniform(16, -1, 1, 2, 3, 8, 8);
        var a = model.Forward(x).Data;
        Assert.Equal(a, model.Forward(x).Data);
        model.Train();
        Dropout.Seed(1);
        var t1 = model.Forward(x).Data;
        Dropout.Seed(1);
        Assert.Equal(t1, model.Forward(x).Data);       // seeded
        Assert.NotEqual(a, t1);
    }

    [Fact]
    public void DropPathDropsWholeSamplesAndScalesTheKeptOnes()
    {
        var dp = new DropPath(0.5f);
        var x = TestData.Uniform(17, 1, 2, 64, 3, 5);
        Assert.Same(x, dp.Eval().Forward(x));
        dp.Train();
        Dropout.Seed(3);
        var y = dp.Forward(x);
        int dropped = 0;
        for (int b = 0; b < 64; b++)
        {
            var xs = x.Data.AsSpan(b * 15, 15).ToArray(); var ys = y.Data.AsSpan(b * 15, 15).ToArray();
            if (ys.All(v => v == 0)) dropped++;
            else Assert.Equal(xs.Select(v => v * 2f), ys);
        }
        Assert.InRange(dropped, 16, 48);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DropPath(1.5f));
    }

    // ------------------------------------------------------------------ fine-tuning helpers

    [Fact]
    public void ResetClassifierReplacesBothHeadsAndKeepsTheBackbone()
    {
        Init.Seed(19);
        var model = Randomized(new DistilledVisionTransformer(Tiny(depth: 2)), 19);
        var x = TestData.Uniform(20, -1, 1, 2, 3, 8, 8);
        var features = model.ForwardFeatures(x).Data;
        var backbone = model.StateDict().Where(kv => !kv.Key.StartsWith("head", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => (float[])kv.Value.Data.Clone());

        model.ResetClassifier(7);
        Assert.Equal(7, model.Config.NumClasses);
        Assert.False(model.Head.Training);               // the new heads take the model's mode
        Assert.Equal([7, 6], ((Linear)model.Head).Weight.Shape);
        Assert.Equal([7, 6], ((Linear)model.HeadDist).Weight.Shape);
        Assert.NotEqual(((Linear)model.Head).Weight.Data, ((Linear)model.HeadDist).Weight.Data);
        float bound = 1f / MathF.Sqrt(6);                // torch.nn.Linear's default, as timm's reset_classifier makes them
        Assert.All(((Linear)model.Head).Weight.Data, v => Assert.InRange(v, -bound, bound));
        Assert.Equal([2, 7], model.Forward(x).Shape);
        Assert.Equal(features, model.ForwardFeatures(x).Data);
        var sd = model.StateDict();
        foreach (var (k, v) in backbone) Assert.Equal(v, sd[k].Data);
        Assert.Equal([7, 6], sd["head_dist.weight"].Shape);
        Assert.Contains(model.Parameters(), p => ReferenceEquals(p, ((Linear)model.HeadDist).Weight));

        model.ResetClassifier(0);
        Assert.IsType<Identity>(model.Head);
        Assert.IsType<Identity>(model.HeadDist);
        Assert.DoesNotContain(model.StateDict().Keys, k => k.StartsWith("head", StringComparison.Ordinal));
        Assert.Equal(model.ForwardHead(model.ForwardFeatures(x), preLogits: true).Data, model.Forward(x).Data);
        Assert.Throws<ArgumentException>(() => model.ResetClassifier(-1));
    }

    [Fact]
    public void LoadDistilledResamplesPosEmbedKeepingBothPrefixTokens()
    {
        Init.Seed(21);
        var source = Randomized(new DistilledVisionTransformer(Tiny(img: 12, patch: 4)), 21);    // 3×3 grid
        var target = new DistilledVisionTransformer(Tiny(img: 16, patch: 4));                    // 4×4 grid
        var weights = source.StateDict();
        Pretrained.LoadDistilled(target, weights);
        var pos = target.PosEmbed;
        Assert.Equal([1, 18, 6], pos.Shape);
        // The class and distillation tokens' positions are copied as they are …
        Assert.Equal(weights["pos_embed"].Data.AsSpan(0, 12).ToArray(), pos.Data.AsSpan(0, 12).ToArray());
        // … and the grid is resampled on its own (the same as resampling it with no prefix token).
        var grid = new Tensor(weights["pos_embed"].Data.AsSpan(12).ToArray(), 1, 9, 6);
        Assert.Equal(PosEmbedResample.Resample(grid, (3, 3), (4, 4), 0).Data, pos.Data.AsSpan(12).ToArray());
        foreach (var (k, v) in weights.Where(kv => kv.Key != "pos_embed")) Assert.Equal(v.Data, target.StateDict()[k].Data);
        Assert.Equal([2, 3], target.Eval().Forward(TestData.Uniform(22, -1, 1, 2, 3, 16, 16)).Shape);

        // Bilinear too; same size is a plain copy.
        Pretrained.LoadDistilled(target, weights, mode: ResampleMode.Bilinear);
        Assert.Equal(PosEmbedResample.Resample(grid, (3, 3), (4, 4), 0, ResampleMode.Bilinear).Data, target.PosEmbed.Data.AsSpan(12).ToArray());
        var same = new DistilledVisionTransformer(Tiny(img: 12, patch: 4));
        Pretrained.LoadDistilled(same, weights);
        Assert.Equal(weights["pos_embed"].Data, same.PosEmbed.Data);
    }

    [Fact]
    public void LoadDistilledWithoutHeadsKeepsTheModelsClassifiersAndNamesBadKeys()
    {
        Init.Seed(23);
        var source = Randomized(new DistilledVisionTransformer(Tiny(classes: 6)), 23);
        var target = new DistilledVisionTransformer(Tiny(classes: 4));
        var headBefore = (float[])((Linear)target.Head).Weight.Data.Clone();
        var weights = source.StateDict();
        Assert.Throws<StateDictException>(() => Pretrained.LoadDistilled(target, weights));            // 6 vs 4 classes
        Pretrained.LoadDistilled(target, weights, includeHead: false);
        Assert.Equal(headBefore, ((Linear)target.Head).Weight.Data);
        Assert.Equal(weights["blocks.0.attn.qkv.weight"].Data, target.StateDict()["blocks.0.attn.qkv.weight"].Data);

        var missing = weights.Where(kv => kv.Key != "dist_token").ToDictionary(kv => kv.Key, kv => kv.Value);
        var ex = Assert.Throws<StateDictException>(() => Pretrained.LoadDistilled(target, missing, includeHead: false));
        Assert.Contains("dist_token", ex.Message);
        var extra = new Dictionary<string, Tensor>(weights) { ["blocks.0.ls1.gamma"] = new Tensor(6) };
        ex = Assert.Throws<StateDictException>(() => Pretrained.LoadDistilled(target, extra, includeHead: false));
        Assert.Contains("blocks.0.ls1.gamma", ex.Message);
        var odd = new Dictionary<string, Tensor>(weights) { ["pos_embed"] = new Tensor(1, 7, 6) };       // 2 + 5: not a square
        var bad = Assert.Throws<ArgumentException>(() => Pretrained.LoadDistilled(target, odd, includeHead: false));
        Assert.Contains("2 prefix tokens plus a square grid", bad.Message);
    }

    // ------------------------------------------------------------------ factory, checkpoints, FLOPs

    [Fact]
    public void KwargsRoundTripAndTimmsDefaults()
    {
        // depth 0 keeps the default-width model small; every other argument takes timm's default.
        var model = (DistilledVisionTransformer)ModelFactory.Create("VisionTransformerDistilled", new JsonObject { ["depth"] = 0 });
        Assert.Equal(new DeiTConfig { Depth = 0 }, model.Config);
        Assert.Equal((224, 16, 3, 1000, 768, 12, 12, 4.0, true), (model.Config.ImgSize, model.Config.PatchSize, model.Config.InChans,
            model.Config.NumClasses, model.Config.EmbedDim, new DeiTConfig().Depth, model.Config.NumHeads, model.Config.MlpRatio, model.Config.QkvBias));
        var custom = Tiny() with { MlpRatio = 2.5, QkvBias = false, DropRate = 0.125f, PosDropRate = 0.25f, ProjDropRate = 0.375f, AttnDropRate = 0.5f, DropPathRate = 0.0625f };
        var rebuilt = (DistilledVisionTransformer)custom.ToSpec().Build();
        Assert.Equal(custom, rebuilt.Config);
        Assert.Equal(15, rebuilt.TimmBlocks.First().Mlp.Fc1.OutFeatures);     // int(6 · 2.5)
        var withPool = new JsonObject { ["img_size"] = 8, ["patch_size"] = 4, ["embed_dim"] = 6, ["depth"] = 1, ["num_heads"] = 2, ["global_pool"] = "token" };
        Assert.IsType<DistilledVisionTransformer>(ModelFactory.Create(DeiTConfig.Constructor, withPool));
    }

    [Theory]
    [InlineData("img_size", 10, "not divisible")]
    [InlineData("num_heads", 4, "not divisible by num_heads")]
    [InlineData("mlp_ratio", 0.1, "mlp_ratio")]
    [InlineData("drop_path_rate", 1.5, "drop_path_rate")]
    [InlineData("global_pool", "avg", "global_pool")]
    [InlineData("class_token", false, "'class_token'")]
    public void BadConfigurationsAreRejected(string key, object value, string mentioned)
    {
        var kwargs = new JsonObject { ["img_size"] = 8, ["patch_size"] = 4, ["embed_dim"] = 6, ["depth"] = 1, ["num_heads"] = 2, ["num_classes"] = 3 };
        kwargs[key] = value switch { int i => JsonValue.Create(i), double d => JsonValue.Create(d), bool b => JsonValue.Create(b), _ => JsonValue.Create((string)value) };
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(DeiTConfig.Constructor, kwargs));
        Assert.Contains(mentioned, ex.Message);
    }

    [Fact]
    public void WrongImagesAreRejectedNamingTheExpectedShape()
    {
        var model = new DistilledVisionTransformer(Tiny(inChans: 1));
        var ex = Assert.Throws<ArgumentException>(() => model.Forward(new Tensor(2, 3, 8, 8)));
        Assert.Contains("[B, 1, 8, 8]", ex.Message);
    }

    [Fact]
    public void CheckpointRoundTripRebuildsTheModelFromItsSpec()
    {
        using var dir = new TempDir("deit-ckpt");
        Init.Seed(25);
        var spec = Tiny(inChans: 1, classes: 3).ToSpec();
        var model = Randomized((DistilledVisionTransformer)spec.Build(), 25);
        var data = new DataInfo("folder", ["a", "b", "c"], 1, 8, 8, [0.5f], [0.25f]).ToJson();
        string path = dir.File("deit.safetensors");
        Checkpoint.Save(path, model, new CheckpointInfo(spec, data, new JsonObject { ["epoch"] = 1 }));
        var loaded = Checkpoint.Load(path);
        var restored = Assert.IsType<DistilledVisionTransformer>(loaded.Model);
        Assert.Equal(model.Config, restored.Config);
        Assert.Equal(spec.ToJson().ToJsonString(), loaded.Info.Model.ToJson().ToJsonString());
        var x = TestData.Uniform(26, -1, 1, 2, 1, 8, 8);
        restored.Eval();
        Assert.Equal(model.Forward(x).Data, restored.Forward(x).Data);
    }

    [Fact]
    public void VitTrainFitsTheTinyPresetToAnImageFolderAndSavesACheckpoint()
    {
        using var data = new TempDir("deit-folder");
        int counter = 0;
        global::VitSharp.Tests.Training.DataSetsTests.WriteImages(data.Path, ["ant", "bee", "cow"], 6, ref counter);
        using var outDir = new TempDir("deit-train");
        var r = Trainer.Run(new TrainOptions
        {
            Model = "deit_tiny_distilled_patch16_224", Dataset = "folder", DataDir = data.Path, ImageSize = 16, Channels = 3,
            Epochs = 1, BatchSize = 8, OutDir = outDir.Path,
        });
        var ckpt = Checkpoint.Load(r.CheckpointPath!);
        var model = Assert.IsType<DistilledVisionTransformer>(ckpt.Model);
        Assert.Equal((16, 3, 3, 192), (model.Config.ImgSize, model.Config.InChans, model.Config.NumClasses, model.Config.EmbedDim));   // timm's img_size fitted
        Assert.Equal(1, r.FinalEvaluation!.Count);
        Assert.All(r.History, m => Assert.True(double.IsFinite(m.TrainLoss)));
    }

    // ------------------------------------------------------------------ inspection

    [Fact]
    public void RecorderSeesEveryBlocksAttentionOverBothPrefixTokensAndThePatches()
    {
        Init.Seed(27);
        var model = Randomized(new DistilledVisionTransformer(Tiny(img: 12, depth: 2, dim: 6, heads: 3)), 27);
        var x = TestData.Uniform(28, -1, 1, 2, 3, 12, 12);
        var plain = model.Forward(x).Data;
        using (var recorder = new VitSharp.Inspection.Recorder(model))
        {
            Assert.Equal(2, recorder.Blocks.Count);
            Assert.All(recorder.Blocks, b => Assert.IsType<TimmAttention>(b));
            var (logits, attention) = recorder.Forward(x);
            Assert.Equal(plain, logits.Data);
            Assert.Equal([2, 2, 3, 11, 11], attention.Shape);                  // [B, depth, H, 2 + 9, 2 + 9]
            for (int r = 0; r < attention.Size / 11; r++)
                Assert.Equal(1.0, attention.Data.AsSpan(r * 11, 11).ToArray().Sum(v => (double)v), 5);
            // Row 0 of block 0 is softmax(q₀·kᵀ·D^-½) of the normed, projected tokens: recompute it for head 1.
            var block = model.TimmBlocks.First();
            using (VitSharp.Autograd.NoGrad())
            {
                var tokens = model.AddPosEmbed(model.PatchEmbed.Forward(x));
                var qkv = block.Attn.Qkv.Forward(block.Norm1.Forward(tokens));    // [2, 11, 18]
                var scores = Enumerable.Range(0, 11).Select(j =>
                    Enumerable.Range(0, 2).Sum(k => (double)qkv.Data[0 * 18 + 2 + k] * qkv.Data[j * 18 + 6 + 2 + k]) / Math.Sqrt(2)).ToArray();
                double max = scores.Max(), z = scores.Sum(v => Math.Exp(v - max));
                for (int j = 0; j < 11; j++) Assert.Equal(Math.Exp(scores[j] - max) / z, attention.Data[((0 * 2 + 0) * 3 + 1) * 121 + j], 5);
            }
        }
        Assert.False(model.HasForwardHooksInTree());                            // ejected

        var map = VitSharp.Inspection.AttentionRollout.ForModel(model, x);
        Assert.Equal([2, 3, 3], map.Shape);                                     // the class token's row over the 3×3 patches
        Assert.Equal((3, 3), model.PatchGrid);
        Assert.Equal(2, model.NumPrefixTokens);
    }

    [Fact]
    public void PredictFromACheckpointWithAnAttentionMap()
    {
        using var dir = new TempDir("deit-predict");
        Init.Seed(29);
        var spec = Tiny(img: 16, patch: 4, inChans: 1, classes: 3, depth: 2).ToSpec();
        var model = Randomized((DistilledVisionTransformer)spec.Build(), 29);
        string ckpt = dir.File("deit.safetensors");
        Checkpoint.Save(ckpt, model, new CheckpointInfo(spec, new DataInfo("folder", ["a", "b", "c"], 1, 16, 16, [0.5f], [0.25f]).ToJson(), new JsonObject()));
        string png = dir.File("img.png"), heat = dir.File("heat.png");
        var rng = new Random(30);
        var pixels = new byte[20 * 20];
        rng.NextBytes(pixels);
        VitSharp.Data.ImageEncoder.SavePng(png, pixels, 20, 20, 1);
        var r = global::VitSharp.Tests.Cli.TrainCliTests.Run("predict", ckpt, png, "--attention", heat, "--json");
        Assert.True(r.Code == 0, r.Err);
        var top = JsonNode.Parse(r.Out.Trim().Split('\n')[^1])!["predictions"]![0]!["top"]!.AsArray();
        Assert.Equal(3, top.Count);
        Assert.Equal(1.0, top.Sum(t => t!["probability"]!.GetValue<double>()), 4);
        var decoded = VitSharp.Data.ImageDecoder.Decode(heat);
        Assert.Equal((240, 240), (decoded.Width, decoded.Height));            // 20×20 enlarged 12× (to at least 224)
    }

    [Fact]
    public void FlopsMatchAHandComputation()
    {
        // batch 2, 1 channel, image 8, patch 4: 4 patches of 16 values, 6 tokens; C 6, hidden 12, 3 classes, depth 1.
        var c = Tiny(inChans: 1);
        long patchEmbed = 2L * 2 * 4 * 16 * 6;          // 1536
        long qkv = 2L * 2 * 6 * 6 * 18;                 // 2592
        long attention = 2L * 2 * (2 * 36 * 6);         // batch·2·(2·N²·C) = 1728
        long proj = 2L * 2 * 6 * 6 * 6;                 // 864
        long mlp = 2L * (2 * 2 * 6 * 6 * 12);           // 3456
        long heads = 2L * (2 * 2 * 6 * 3);              // 144
        long expected = patchEmbed + qkv + attention + proj + mlp + heads;
        Assert.Equal(10320, expected);
        Assert.Equal(expected, Flops.DeiTForwardFlops(c, 2));
        Assert.Equal(3 * expected, Flops.DeiTTrainStepFlops(c, 2));
        // DeiT-S distilled: the paper's "4.6 GFLOPs" are multiply-adds, so about 9.2 GFLOPs by this convention.
        Assert.InRange(Flops.DeiTForwardFlops(Presets.DeiTDistilled224(384, 6), 1) / 1e9, 9.0, 9.4);
    }
}
