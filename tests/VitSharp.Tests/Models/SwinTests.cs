using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Autograd;

namespace VitSharp.Tests.Models;

/// <summary>
/// Swin v1 and v2: fixture parity, state_dict layout and buffers, torchvision's parameter counts, window attention
/// against a naive twin on maps that pad, shift along one axis or none, rectangular windows and patches, gradients
/// by finite differences, patch merging, hooks, bad configurations.
/// </summary>
public class SwinTests
{
    private const string Ctor = "torchvision.models.swin_transformer.SwinTransformer";

    [Fact]
    public void ParityWithPyTorchFixture_V1()
    {
        FixtureChecks.AssertParity("swin", Ctor, logitsAbs: 1e-6, gradientRel: 8e-6);   // achieved: logits 7.5e-8, loss 2.4e-7, gradients 8.1e-7 relative
        Assert.Equal(FixtureChecks.Build("swin").NamedParameters().Count(), FixtureChecks.GradientCount("swin"));
    }

    [Fact]
    public void ParityWithPyTorchFixture_V2()
    {
        FixtureChecks.AssertParity("swin_v2", Ctor, logitsAbs: 2e-6, gradientRel: 3e-5);   // achieved: logits 2.1e-7, loss 0, gradients 3.1e-6 relative
        Assert.Equal(FixtureChecks.Build("swin_v2").NamedParameters().Count(), FixtureChecks.GradientCount("swin_v2"));
    }

    /// <summary>Fixtures made by torchvision 0.14 with tests/fixtures/make_swin_fixtures.py, kept in the repository
    /// (tests/VitSharp.Tests/Fixtures): configurations the shared fixtures do not cover, parameters at order one.</summary>
    private static string OwnFixture(string name) => Path.Combine(
        TestFixtures.RepoRoot() ?? throw new DirectoryNotFoundException("repository root (VitSharp.slnx) not found"),
        "tests", "VitSharp.Tests", "Fixtures", name);

    [Theory]
    // 30×26 images, patch 3×2, window 4×3: both stages padded (12×15, 8×9) and shifted by (2, 1). Achieved: logits
    // 7.2e-7, gradients 1.6e-6 relative.
    [InlineData("swin_rect", 65, 7e-6, 1.6e-5)]
    // v2, 28×20, window 3: the first map padded 7×5 → 9×6; after merging 4×3 → 6×3, shifted along the height only
    // (the window covers the width). Achieved: logits 3.3e-7, gradients 1.03e-5 relative.
    [InlineData("swin_v2_rect", 77, 4e-6, 1e-4)]
    // v1 blocks, v2 merging, window 7 over 4×4 and 2×2 maps: padded, never shifted. Achieved: 2.4e-7, 1.2e-6.
    [InlineData("swin_big_window", 52, 3e-6, 1.2e-5)]
    public void ParityWithTorchvisionOnOtherConfigurations(string name, int rows, double logitsAbs, double gradientRel)
    {
        var report = VitSharp.Parity.ParityRunner.Run(OwnFixture(name));
        Assert.True(report.Passed, string.Join("\n", report.Rows.Where(r => !r.Passed).Select(r => $"{r.Name}: {r.MaxAbsError:E2}")));
        Assert.Equal(rows, report.Rows.Count);
        Assert.Equal(Ctor, report.Constructor);
        FixtureChecks.AssertAchieved(report, logitsAbs, gradientRel);
    }

    [Theory]
    [InlineData("swin")]
    [InlineData("swin_v2")]
    public void StateDictKeysShapesAndBuffersEqualTheFixture(string fixture)
    {
        FixtureChecks.AssertStateDictMatches(fixture);
        // The buffers torchvision computes (relative_position_index, v2's relative_coords_table) equal ours.
        var model = FixtureChecks.Build(fixture);
        using var file = SafeTensorsFile.Open(TestFixtures.Prefix(fixture) + ".weights.safetensors");
        var buffers = model.NamedBuffers().ToList();
        Assert.NotEmpty(buffers);
        foreach (var (name, buffer) in buffers)
        {
            var expected = file.ReadFloat32(name);
            Assert.Equal(expected.Length, buffer.Size);
            for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - buffer.Data[i]) <= 1e-6f, $"{name}[{i}]: {buffer.Data[i]} vs {expected[i]}");
        }
    }

    [Theory]
    [InlineData("swin_t", 28_288_354L)]
    [InlineData("swin_s", 49_606_258L)]
    [InlineData("swin_b", 87_768_224L)]
    [InlineData("swin_v2_t", 28_351_570L)]
    [InlineData("swin_v2_s", 49_737_442L)]
    [InlineData("swin_v2_b", 87_930_848L)]
    public void PresetsHaveTorchvisionsParameterCounts(string name, long expected)
    {
        var preset = Presets.Get(name);
        Assert.Equal(expected, preset.PublishedParameters);
        var config = SwinTransformerConfig.FromKwargs(new ModelFactory.Kwargs(Ctor, preset.Spec.Kwargs));
        Assert.Equal(expected, ExpectedCount(config));
        Assert.Equal(expected, preset.Build().ParameterCount());
    }

    /// <summary>Parameter count of torchvision's SwinTransformer, written out from its constructor.</summary>
    private static long ExpectedCount(SwinTransformerConfig c)
    {
        long ph = c.PatchSize[0], pw = c.PatchSize[1], wh = c.WindowSize[0], ww = c.WindowSize[1];
        long dim = c.EmbedDim;
        long n = c.InChans * ph * pw * dim + dim + 2 * dim;                         // conv, LayerNorm
        for (int s = 0; s < c.Stages; s++)
        {
            dim = c.StageDim(s);
            long heads = c.NumHeads[s], hidden = (long)(dim * (double)c.MlpRatio);
            long attn = dim * 3 * dim + 3 * dim + dim * dim + dim
                + (c.IsV2 ? 2 * 512 + 512 + 512 * heads + heads : (2 * wh - 1) * (2 * ww - 1) * heads);
            n += c.Depths[s] * (4 * dim + attn + dim * hidden + hidden + hidden * dim + dim);
            if (s < c.Stages - 1) n += 4 * dim * 2 * dim + 2 * (c.IsMergingV2 ? 2 * dim : 4 * dim);
        }
        return n + 2 * dim + dim * c.NumClasses + c.NumClasses;
    }

    [Theory]
    [InlineData("swin-fmnist", 28)]
    [InlineData("swin_t", 224)]
    [InlineData("swin_t", 100)]   // padded maps: 25×25 → windows of 7 over 28×28
    public void FlopCountEqualsTheMatrixProductsTheForwardRuns(string name, int size)
    {
        // Counted from the shapes the modules actually see (hooks), not from the formula: every Linear 2·rows·in·out,
        // the patch convolution 2·B·h·w·(c·ph·pw)·C, attention 2·(2·G·heads·N·N·D) from the probabilities [G, heads, N, N].
        var preset = Presets.Get(name);
        var model = (SwinTransformer)preset.Build();
        model.Eval();
        long counted = 0;
        var handles = new List<IDisposable>();
        foreach (var (_, m) in model.NamedModules())
        {
            if (m is Linear fc)
                handles.Add(fc.RegisterForwardHook((_, inputs, _) => counted += 2L * (inputs.Input.Size / fc.InFeatures) * fc.InFeatures * fc.OutFeatures));
            else if (m is Conv2d conv)
                handles.Add(conv.RegisterForwardHook((_, inputs, output) => counted += 2L * output.Size * inputs.Input.Dim(1) * conv.Weight.Dim(2) * conv.Weight.Dim(3)));
            else if (m is ShiftedWindowAttention attn)
                handles.Add(attn.Attend.RegisterForwardHook((_, _, p) =>
                    counted += 2L * 2 * p.Dim(0) * p.Dim(1) * p.Dim(2) * p.Dim(3) * (attn.Proj.InFeatures / attn.NumHeads)));
        }
        using (VitSharp.Autograd.NoGrad()) model.Forward(Tensor.Zeros(1, preset.Channels, size, size));
        foreach (var h in handles) h.Dispose();
        Assert.Equal(counted, Flops.SwinForwardFlops(model.Config, 1, size, size));
    }

    [Fact]
    public void FashionMnistPresetTakesGreyImages()
    {
        var preset = Presets.Get("swin-fmnist");
        Assert.Equal((28, 1), (preset.ImageSize, preset.Channels));
        var model = (SwinTransformer)preset.Build();
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
        Assert.Equal(new[] { 2, 10 }, model.Forward(TestData.Uniform(1, 0, 1, 2, 1, 28, 28)).Shape);
    }

    public static TheoryData<int, int, int, int, int, int, bool> WindowCases => new()
    {
        // map h, w; window h, w; shift h, w; v2
        { 8, 8, 4, 4, 2, 2, false },   // the fixture's first stage
        { 6, 5, 4, 3, 2, 1, false },   // padded on both axes, rectangular window
        { 3, 9, 4, 4, 2, 2, false },   // the window covers the (padded) height: shifted along the width only
        { 5, 5, 7, 7, 3, 3, false },   // window larger than the map: padded, never shifted
        { 7, 6, 3, 2, 0, 0, false },   // unshifted block on a padded map
        { 8, 8, 4, 4, 2, 2, true },
        { 6, 5, 4, 3, 2, 1, true },
        { 3, 9, 4, 4, 2, 2, true },
    };

    [Theory]
    [MemberData(nameof(WindowCases))]
    public void WindowAttentionEqualsNaiveTwin(int h, int w, int wh, int ww, int sh, int sw, bool v2)
    {
        Init.Seed(h * 31 + w);
        const int c = 8, heads = 2, b = 2;
        ShiftedWindowAttention attn = v2
            ? new ShiftedWindowAttentionV2(c, (wh, ww), (sh, sw), heads)
            : new ShiftedWindowAttention(c, (wh, ww), (sh, sw), heads);
        // Non-trivial biases and scales (torchvision initialises some to zero or constants).
        foreach (var (_, p) in attn.NamedParameters())
        {
            var r = TestData.Uniform(p.Size + 7, -0.5f, 0.5f, p.Shape);
            r.Data.CopyTo(p.Data, 0);
        }
        var x = TestData.Uniform(h * w, -1, 1, b, h, w, c);
        var y = attn.Forward(x);
        Assert.Equal(new[] { b, h, w, c }, y.Shape);
        var expected = NaiveWindowAttention(attn, x, v2);
        TestData.AssertClose(expected, y.Data, 2e-5, 2e-5, "window attention");
    }

    /// <summary>
    /// torchvision's shifted_window_attention in plain loops over doubles, written from its definition rather than from
    /// the index maps: zero-pad, roll by −shift (no shift along an axis the window covers), and for each window and head
    /// softmax over its tokens of the scores plus the relative bias plus −100 between different regions (a region per
    /// [0, P − w), [P − w, P − s), [P − s, P) along each shifted axis), ·v, proj; then roll back and crop.
    /// </summary>
    private static double[] NaiveWindowAttention(ShiftedWindowAttention m, Tensor x, bool v2)
    {
        int b = x.Dim(0), h = x.Dim(1), w = x.Dim(2), c = x.Dim(3), heads = m.NumHeads, d = c / heads;
        var (wh, ww) = m.WindowSize;
        int ph = (h + wh - 1) / wh * wh, pw = (w + ww - 1) / ww * ww;
        int sh = wh >= ph ? 0 : m.ShiftSize.H, sw = ww >= pw ? 0 : m.ShiftSize.W;
        int n = wh * ww, t = (2 * wh - 1) * (2 * ww - 1);
        var qkvW = m.Qkv.Weight.Data; var qkvB = (float[])m.Qkv.Bias!.Data.Clone();
        if (v2) Array.Clear(qkvB, c, c);
        // Bias table [T, heads].
        var table = new double[t, heads];
        for (int r = 0; r < t; r++)
            for (int k = 0; k < heads; k++)
            {
                if (!v2) { table[r, k] = m.RelativePositionBiasTable!.Data[r * heads + k]; continue; }
                var v = (ShiftedWindowAttentionV2)m;
                var l1 = (Linear)v.CpbMlp[0]; var l2 = (Linear)v.CpbMlp[2];
                double z = 0;
                for (int u = 0; u < 512; u++)
                {
                    double a = l1.Bias!.Data[u] + l1.Weight.Data[u * 2] * v.RelativeCoordsTable.Data[r * 2] + l1.Weight.Data[u * 2 + 1] * v.RelativeCoordsTable.Data[r * 2 + 1];
                    z += Math.Max(a, 0) * l2.Weight.Data[k * 512 + u];
                }
                table[r, k] = 16 / (1 + Math.Exp(-z));
            }
        static int Region(int p, int size, int window, int shift) => shift == 0 ? 0 : p < size - window ? 0 : p < size - shift ? 1 : 2;
        var output = new double[b * h * w * c];
        for (int bi = 0; bi < b; bi++)
        {
            // Rolled, padded map: rolled[y, x] = padded[(y + sh) mod P, (x + sw) mod P].
            var rolled = new double[ph, pw, c];
            for (int y = 0; y < ph; y++)
                for (int xx = 0; xx < pw; xx++)
                {
                    int sy = (y + sh) % ph, sx = (xx + sw) % pw;
                    if (sy < h && sx < w)
                        for (int k = 0; k < c; k++) rolled[y, xx, k] = x.Data[((bi * h + sy) * w + sx) * c + k];
                }
            var result = new double[ph, pw, c];
            for (int wy = 0; wy < ph / wh; wy++)
                for (int wx = 0; wx < pw / ww; wx++)
                {
                    var qkv = new double[n, 3 * c];
                    for (int i = 0; i < n; i++)
                        for (int o = 0; o < 3 * c; o++)
                        {
                            double z = qkvB[o];
                            for (int k = 0; k < c; k++) z += qkvW[o * c + k] * rolled[wy * wh + i / ww, wx * ww + i % ww, k];
                            qkv[i, o] = z;
                        }
                    var attnOut = new double[n, c];
                    for (int hd = 0; hd < heads; hd++)
                    {
                        double scale = v2 ? Math.Exp(Math.Min(((ShiftedWindowAttentionV2)m).LogitScale.Data[hd], Math.Log(100))) : 1 / Math.Sqrt(d);
                        for (int i = 0; i < n; i++)
                        {
                            var s = new double[n];
                            for (int j = 0; j < n; j++)
                            {
                                double dot = 0, nq = 0, nk = 0;
                                for (int k = 0; k < d; k++)
                                {
                                    double q = qkv[i, hd * d + k], kk = qkv[j, c + hd * d + k];
                                    dot += q * kk; nq += q * q; nk += kk * kk;
                                }
                                if (v2) dot /= Math.Max(Math.Sqrt(nq), 1e-12) * Math.Max(Math.Sqrt(nk), 1e-12);
                                int yi = i / ww, xi = i % ww, yj = j / ww, xj = j % ww;
                                s[j] = dot * scale + table[(yi - yj + wh - 1) * (2 * ww - 1) + (xi - xj + ww - 1), hd];
                                int pyi = wy * wh + yi, pxi = wx * ww + xi, pyj = wy * wh + yj, pxj = wx * ww + xj;
                                if (sh + sw > 0 && (Region(pyi, ph, wh, sh) != Region(pyj, ph, wh, sh) || Region(pxi, pw, ww, sw) != Region(pxj, pw, ww, sw)))
                                    s[j] -= 100;
                            }
                            double max = s.Max(), sum = s.Sum(v => Math.Exp(v - max));
                            for (int j = 0; j < n; j++)
                                for (int k = 0; k < d; k++) attnOut[i, hd * d + k] += Math.Exp(s[j] - max) / sum * qkv[j, 2 * c + hd * d + k];
                        }
                    }
                    for (int i = 0; i < n; i++)
                        for (int o = 0; o < c; o++)
                        {
                            double z = m.Proj.Bias!.Data[o];
                            for (int k = 0; k < c; k++) z += m.Proj.Weight.Data[o * c + k] * attnOut[i, k];
                            result[wy * wh + i / ww, wx * ww + i % ww, o] = z;
                        }
                }
            // Roll back (out[y] = result[(y − s) mod P]) and crop.
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < w; xx++)
                    for (int k = 0; k < c; k++)
                        output[((bi * h + y) * w + xx) * c + k] = result[(y - sh + ph) % ph, (xx - sw + pw) % pw, k];
        }
        return output;
    }

    [Theory]
    [InlineData(4, 6, false)]
    [InlineData(5, 3, false)]
    [InlineData(5, 3, true)]
    public void PatchMergingConcatenatesTheTwoByTwoNeighboursAfterPadding(int h, int w, bool v2)
    {
        Init.Seed(h + w);
        const int c = 3, b = 2;
        var merging = new PatchMerging(c, v2);
        TestData.Uniform(5, -1, 1, merging.Norm.Weight.Size).Data.CopyTo(merging.Norm.Weight.Data, 0);
        var x = TestData.Uniform(h * w, -1, 1, b, h, w, c);
        var y = merging.Forward(x);
        int h2 = (h + 1) / 2, w2 = (w + 1) / 2;
        Assert.Equal(new[] { b, h2, w2, 2 * c }, y.Shape);
        // torch: cat(x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]) of the zero-padded map.
        (int dy, int dx)[] order = [(0, 0), (1, 0), (0, 1), (1, 1)];
        var expected = new double[b * h2 * w2 * 2 * c];
        for (int bi = 0; bi < b; bi++)
            for (int i = 0; i < h2; i++)
                for (int j = 0; j < w2; j++)
                {
                    var cat = new double[4 * c];
                    for (int q = 0; q < 4; q++)
                    {
                        int sy = 2 * i + order[q].dy, sx = 2 * j + order[q].dx;
                        for (int k = 0; k < c; k++) cat[q * c + k] = sy < h && sx < w ? x.Data[((bi * h + sy) * w + sx) * c + k] : 0;
                    }
                    double[] Norm(double[] v, int len)
                    {
                        double mean = v.Average(), var = v.Select(a => (a - mean) * (a - mean)).Average();
                        return v.Select((a, k) => (a - mean) / Math.Sqrt(var + 1e-5) * merging.Norm.Weight.Data[k] + merging.Norm.Bias.Data[k]).ToArray();
                    }
                    double[] Reduce(double[] v) => Enumerable.Range(0, 2 * c).Select(o => Enumerable.Range(0, 4 * c).Sum(k => merging.Reduction.Weight.Data[o * 4 * c + k] * v[k])).ToArray();
                    var r = v2 ? Norm(Reduce(cat), 2 * c) : Reduce(Norm(cat, 4 * c));
                    r.CopyTo(expected, ((bi * h2 + i) * w2 + j) * 2 * c);
                }
        TestData.AssertClose(expected, y.Data, 1e-5, 1e-5, "patch merging");
    }

    private static SwinTransformerConfig Tiny(bool v2, int[]? patch = null, int[]? window = null, int[]? depths = null) => new()
    {
        PatchSize = patch ?? [2, 3], EmbedDim = 4, Depths = depths ?? [2, 1], NumHeads = [2, 2], WindowSize = window ?? [3, 2], NumClasses = 3,
        InChans = 2, StochasticDepthProb = 0f,
        Block = v2 ? SwinTransformerConfig.BlockV2 : SwinTransformerConfig.BlockV1, DownsampleLayer = v2 ? "PatchMergingV2" : "PatchMerging",
    };

    /// <summary>
    /// Parameters of order one. With torchvision's initialisation (weights N(0, 0.02²), zero biases) the tiny model's
    /// activations are ~1e-3, so its LayerNorms (over 4–16 features, eps 1e-5) work in their sharply curved regime and
    /// the central difference converges only for steps far below float32's resolution of the loss.
    /// </summary>
    private static void Randomize(Module model)
    {
        int seed = 100;
        foreach (var (name, p) in model.NamedParameters())
        {
            var (lo, hi) = name.EndsWith("logit_scale", StringComparison.Ordinal) ? (0.5f, 2f)
                : p.Rank == 1 && name.Contains("norm", StringComparison.Ordinal) && name.EndsWith("weight", StringComparison.Ordinal) ? (0.6f, 1.4f)
                : (-0.4f, 0.4f);
            TestData.Uniform(seed++, lo, hi, p.Shape).Data.CopyTo(p.Data, 0);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WholeTinySwinGradientsMatchFiniteDifferences(bool v2)
    {
        // Rectangular patches and windows: a 5×4 first map (padded to 6×4, the odd block shifted by (1, 1)), 3×2 after merging (one window, no shift).
        Init.Seed(v2 ? 11 : 10);
        var model = new SwinTransformer(Tiny(v2)); model.Eval();
        Randomize(model);
        var img = TestData.Uniform(3, -1, 1, 2, 2, 10, 12);
        int[] labels = [2, 0];
        // Every element of every parameter except v2's cpb_mlp.0 (Linear(2 → 512) before a ReLU: with 512 units over 15
        // coordinates some pre-activations lie within a step of the kink, where a finite difference is meaningless; its
        // gradient is compared with PyTorch's by the v2 fixture instead).
        var names = model.NamedParameters().Select(p => p.Name).Where(n => !n.Contains("cpb_mlp.0.", StringComparison.Ordinal)).ToList();
        Assert.Contains(names, n => n.EndsWith(v2 ? "logit_scale" : "relative_position_bias_table", StringComparison.Ordinal));
        // v2's first-block q/k weights feed normalised vectors times exp(logit_scale) ≈ 2–7: at the default step (1e-2)
        // the central difference's truncation error exceeds 1% for a few of them (with or without padding); at 3e-3 and
        // 1e-3 it does not (measured), as truncation error, not a wrong gradient, behaves.
        double h = v2 ? 3e-3 : GradCheck.DefaultStep;
        FixtureChecks.AssertGradCheck(model, img, labels, names, h);
        Assert.Empty(GradCheck.Compare(t => F.CrossEntropy(model.Forward(t[0]), labels), [img], h: h));
    }

    [Theory]
    [InlineData(false, 9, 7)]
    [InlineData(true, 16, 12)]
    [InlineData(false, 4, 4)]
    public void AnyImageSizeAtLeastOnePatchWorksAndEveryParameterGetsAGradient(bool v2, int height, int width)
    {
        Init.Seed(height);
        var model = new SwinTransformer(Tiny(v2, patch: [2, 2], window: [2, 2], depths: [2, 2]));
        var img = TestData.Uniform(height, -1, 1, 3, 2, height, width);
        var logits = model.Forward(img);
        Assert.Equal(new[] { 3, 3 }, logits.Shape);
        F.CrossEntropy(logits, [0, 1, 2]).Backward();
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.True(p.Grad is not null, $"{name} got no gradient");
            // v2 zeroes the k part of the qkv bias in the forward: its gradient is zero there and only there.
            if (name.EndsWith("qkv.bias", StringComparison.Ordinal) && v2)
            {
                int c = p.Size / 3;
                Assert.All(p.Grad!.Data.Skip(c).Take(c), g => Assert.Equal(0f, g));
                Assert.Contains(p.Grad!.Data.Take(c), g => g != 0f);
            }
            else Assert.True(p.Grad!.Data.Any(v => v != 0f), $"{name}: gradient is all zero");
        }
    }

    [Fact]
    public void AttendHookSeesEveryWindowsProbabilities()
    {
        Init.Seed(4);
        var model = new SwinTransformer(Tiny(false)); model.Eval();
        var block = model.Blocks.First();
        Tensor? probs = null;
        using var handle = block.Attn.Attend.RegisterForwardHook((_, _, p) => probs = p.Clone());
        model.Forward(TestData.Uniform(2, -1, 1, 2, 2, 10, 12));
        // 5×4 map, window 3×2: padded to 6×4, 2×2 = 4 windows per image, 2 images; 2 heads; 6 tokens per window.
        Assert.Equal(new[] { 8, 2, 6, 6 }, probs!.Shape);
        for (int r = 0; r < probs.Size / 6; r++) Assert.Equal(1.0, probs.Data.Skip(r * 6).Take(6).Sum(), 5);
    }

    [Fact]
    public void RecorderKeepsEveryBlocksWindowMapsOneByOne()
    {
        Init.Seed(6);
        var model = new SwinTransformer(Tiny(false)); model.Eval();
        using var recorder = new VitSharp.Inspection.Recorder(model);
        Assert.Equal(3, recorder.Blocks.Count);
        // The stages' maps differ in shape, so they are not stacked: Recordings has them in block order.
        var e = Assert.Throws<InvalidOperationException>(() => recorder.Forward(TestData.Uniform(2, -1, 1, 2, 2, 10, 12)));
        Assert.Contains("read them one by one from Recordings", e.Message);
        Assert.Equal(new[] { 8, 2, 6, 6 }, recorder.Recordings[0].Shape);   // 2 images × 4 windows of 3×2
        Assert.Equal(new[] { 8, 2, 6, 6 }, recorder.Recordings[1].Shape);
        Assert.Equal(new[] { 2, 2, 6, 6 }, recorder.Recordings[2].Shape);   // 3×2 map after merging: one window each
    }

    [Theory]
    [InlineData("{\"patch_size\": [4], \"embed_dim\": 8, \"depths\": [1], \"num_heads\": [2], \"window_size\": [4, 4]}", "patch_size must be [height, width]")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 8, \"depths\": [1, 1], \"num_heads\": [2], \"window_size\": [4, 4]}", "num_heads must have one entry per stage (2)")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 6, \"depths\": [1], \"num_heads\": [4], \"window_size\": [4, 4]}", "stage 0 width 6 is not divisible by num_heads[0] = 4")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 8, \"depths\": [1], \"num_heads\": [2], \"window_size\": [100, 100]}", "window_size 100×100 has more than 4096 tokens")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 8, \"depths\": [1], \"num_heads\": [2], \"window_size\": [1, 4], \"block\": \"SwinTransformerBlockV2\"}", "window_size must be at least 2×2")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 8, \"depths\": [1], \"num_heads\": [2], \"window_size\": [4, 4], \"block\": \"Block\"}", "block must be")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 8, \"depths\": [0], \"num_heads\": [2], \"window_size\": [4, 4]}", "depths must be ≥ 1")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 8, \"depths\": [1], \"num_heads\": [2], \"window_size\": [4, 4], \"mlp_ratio\": 0}", "mlp_ratio must be positive")]
    [InlineData("{\"patch_size\": [4, 4], \"embed_dim\": 8, \"depths\": [1], \"num_heads\": [2]}", "missing required argument 'window_size'")]
    public void BadConfigurationsAreRefusedNamingTheArgument(string kwargs, string message)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelFactory.Create(Ctor, JsonNode.Parse(kwargs)!.AsObject()));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void ImagesSmallerThanAPatchOrWithOtherChannelsAreRefused()
    {
        var model = new SwinTransformer(Tiny(false));
        var e = Assert.Throws<ArgumentException>(() => model.Forward(Tensor.Zeros(1, 2, 1, 12)));
        Assert.Contains("at least one 2×3 patch", e.Message);
        e = Assert.Throws<ArgumentException>(() => model.Forward(Tensor.Zeros(1, 3, 10, 12)));
        Assert.Contains("expected images [B, 2, H, W]", e.Message);
    }

    [Fact]
    public void ConfigurationRoundTripsThroughKwargs()
    {
        var c = Tiny(true) with { MlpRatio = 2.5f, AttentionDropout = 0.1f };
        var back = SwinTransformerConfig.FromKwargs(new ModelFactory.Kwargs(Ctor, c.ToKwargs()));
        Assert.Equal(c.ToKwargs().ToJsonString(), back.ToKwargs().ToJsonString());
        Assert.Equal("[2,3]", c.ToKwargs()["patch_size"]!.ToJsonString());   // lists, as torchvision takes them
    }
}
