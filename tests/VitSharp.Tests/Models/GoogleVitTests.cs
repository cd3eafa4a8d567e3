using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;
using VitSharp.Tests.IO;
using VitSharp.Tests.Kernels;
using Xunit.Abstractions;

namespace VitSharp.Tests.Models;

/// <summary>Google's .npz ViT layout → torchvision: fixture parity, the exact math on other configurations, round trips, bad input.</summary>
public sealed class GoogleVitTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new("googlevit");

    public void Dispose() => _dir.Dispose();

    private static string Fixture(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    internal static (Tensor Input, float[] Logits) Expected(string logits)
    {
        using var f = SafeTensorsFile.Open(Fixture("expected.safetensors"));
        return (new Tensor(f.ReadFloat32("input"), f.Info("input").Shape), f.ReadFloat32(logits));
    }

    internal static double MaxDiff(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();

    private static VisionTransformerConfig Other => new()
    {
        ImageSize = 15, PatchSize = 5, NumLayers = 3, NumHeads = 4, HiddenDim = 16, MlpDim = 24, NumClasses = 7, RepresentationSize = 6, InChans = 2,
    };

    /// <summary>Every parameter off its default, seeded.</summary>
    internal static VisionTransformer Randomized(VisionTransformerConfig config, int seed)
    {
        Init.Seed(seed);
        var model = new VisionTransformer(config);
        var rng = new Random(seed);
        foreach (var (_, t) in model.StateDict())
            for (int i = 0; i < t.Size; i++) t.Data[i] = (float)(rng.NextDouble() - 0.5);
        model.Eval();
        return model;
    }

    /// <summary>The inverse map, written here independently: torchvision state_dict → Google's arrays (numpy transposes).</summary>
    private static Dictionary<string, Tensor> ToGoogle(IReadOnlyDictionary<string, Tensor> sd, VisionTransformerConfig cfg, string prefix = "")
    {
        int c = cfg.HiddenDim, h = cfg.NumHeads, d = c / h, p = cfg.PatchSize, m = cfg.MlpDim;
        var g = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var cw = sd["conv_proj.weight"];                                       // [C, in, p, p] → [p, p, in, C]
        var k = new Tensor(p, p, cfg.InChans, c);
        for (int o = 0; o < c; o++)
            for (int i = 0; i < cfg.InChans; i++)
                for (int y = 0; y < p; y++)
                    for (int x = 0; x < p; x++)
                        k.Data[((y * p + x) * cfg.InChans + i) * c + o] = cw.Data[((o * cfg.InChans + i) * p + y) * p + x];
        g["embedding/kernel"] = k;
        g["embedding/bias"] = sd["conv_proj.bias"];
        g["cls"] = sd["class_token"];
        g["Transformer/posembed_input/pos_embedding"] = sd["encoder.pos_embedding"];
        g["Transformer/encoder_norm/scale"] = sd["encoder.ln.weight"];
        g["Transformer/encoder_norm/bias"] = sd["encoder.ln.bias"];
        static Tensor T(Tensor w) { int r = w.Dim(0), cc = w.Dim(1); var t = new Tensor(cc, r); for (int i = 0; i < r; i++) for (int j = 0; j < cc; j++) t.Data[j * r + i] = w.Data[i * cc + j]; return t; }
        if (cfg.RepresentationSize is not null)
        {
            g["pre_logits/kernel"] = T(sd["heads.pre_logits.weight"]);
            g["pre_logits/bias"] = sd["heads.pre_logits.bias"];
        }
        if (cfg.NumClasses > 0)
        {
            g["head/kernel"] = T(sd["heads.head.weight"]);
            g["head/bias"] = sd["heads.head.bias"];
        }
        for (int l = 0; l < cfg.NumLayers; l++)
        {
            string o = $"encoder.layers.encoder_layer_{l}.", b = $"Transformer/encoderblock_{l}/", a = b + "MultiHeadDotProductAttention_1/";
            g[b + "LayerNorm_0/scale"] = sd[o + "ln_1.weight"];
            g[b + "LayerNorm_0/bias"] = sd[o + "ln_1.bias"];
            g[b + "LayerNorm_2/scale"] = sd[o + "ln_2.weight"];
            g[b + "LayerNorm_2/bias"] = sd[o + "ln_2.bias"];
            var w = sd[o + "self_attention.in_proj_weight"];
            var bias = sd[o + "self_attention.in_proj_bias"];
            string[] names = ["query", "key", "value"];
            for (int j = 0; j < 3; j++)
            {
                var kk = new Tensor(c, h, d);                       // kernel[c, h, d] = W_j[h·D + d, c]
                for (int ci = 0; ci < c; ci++) for (int hi = 0; hi < h; hi++) for (int di = 0; di < d; di++)
                    kk.Data[(ci * h + hi) * d + di] = w.Data[(j * c + hi * d + di) * c + ci];
                g[a + names[j] + "/kernel"] = kk;
                g[a + names[j] + "/bias"] = new Tensor(bias.Data.AsSpan(j * c, c).ToArray(), h, d);
            }
            var ow = sd[o + "self_attention.out_proj.weight"];       // out[h, d, c] = W[c, h·D + d]
            var ok = new Tensor(h, d, c);
            for (int hi = 0; hi < h; hi++) for (int di = 0; di < d; di++) for (int ci = 0; ci < c; ci++)
                ok.Data[(hi * d + di) * c + ci] = ow.Data[ci * c + hi * d + di];
            g[a + "out/kernel"] = ok;
            g[a + "out/bias"] = sd[o + "self_attention.out_proj.bias"];
            g[b + "MlpBlock_3/Dense_0/kernel"] = T(sd[o + "mlp.0.weight"]);
            g[b + "MlpBlock_3/Dense_0/bias"] = sd[o + "mlp.0.bias"];
            g[b + "MlpBlock_3/Dense_1/kernel"] = T(sd[o + "mlp.3.weight"]);
            g[b + "MlpBlock_3/Dense_1/bias"] = sd[o + "mlp.3.bias"];
            Assert.Equal(new[] { c, m }, g[b + "MlpBlock_3/Dense_0/kernel"].Shape);
        }
        return g.ToDictionary(kv => prefix + kv.Key, kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>
    /// The Flax ViT computed straight from Google's arrays in double precision (NHWC conv with the HWIO kernel, einsums over
    /// the [C, H, D] / [H, D, C] attention kernels, LayerNorm eps 1e-6, exact GELU as torchvision), for one image [in, S, S].
    /// </summary>
    private static double[] NaiveGoogleForward(IReadOnlyDictionary<string, Tensor> g, float[] img, int inChans, int side)
    {
        var k = g["embedding/kernel"];
        int p = k.Dim(0), c = k.Dim(3), grid = side / p, n = grid * grid + 1;
        double[,] x = new double[n, c];
        var cls = g["cls"].Data;
        var pos = g["Transformer/posembed_input/pos_embedding"].Data;
        for (int ci = 0; ci < c; ci++) x[0, ci] = cls[ci];
        for (int gy = 0; gy < grid; gy++)
            for (int gx = 0; gx < grid; gx++)
                for (int o = 0; o < c; o++)
                {
                    double s = g["embedding/bias"].Data[o];
                    for (int y = 0; y < p; y++) for (int xx = 0; xx < p; xx++) for (int i = 0; i < inChans; i++)
                        s += img[(i * side + gy * p + y) * side + gx * p + xx] * (double)k.Data[((y * p + xx) * inChans + i) * c + o];
                    x[1 + gy * grid + gx, o] = s;
                }
        for (int t = 0; t < n; t++) for (int ci = 0; ci < c; ci++) x[t, ci] += pos[t * c + ci];

        double[,] Ln(double[,] v, string key)
        {
            var sc = g[key + "/scale"].Data; var bi = g[key + "/bias"].Data;
            var r = new double[n, c];
            for (int t = 0; t < n; t++)
            {
                double mean = 0, var = 0;
                for (int ci = 0; ci < c; ci++) mean += v[t, ci];
                mean /= c;
                for (int ci = 0; ci < c; ci++) var += (v[t, ci] - mean) * (v[t, ci] - mean);
                var /= c;
                for (int ci = 0; ci < c; ci++) r[t, ci] = (v[t, ci] - mean) / Math.Sqrt(var + 1e-6) * sc[ci] + bi[ci];
            }
            return r;
        }
        for (int l = 0; g.ContainsKey($"Transformer/encoderblock_{l}/LayerNorm_0/scale"); l++)
        {
            string b = $"Transformer/encoderblock_{l}/", a = b + "MultiHeadDotProductAttention_1/";
            var y = Ln(x, b + "LayerNorm_0");
            int h = g[a + "query/kernel"].Dim(1), d = g[a + "query/kernel"].Dim(2);
            double[,,] Proj(string name)
            {
                var w = g[a + name + "/kernel"].Data; var bb = g[a + name + "/bias"].Data;
                var r = new double[n, h, d];
                for (int t = 0; t < n; t++) for (int hi = 0; hi < h; hi++) for (int di = 0; di < d; di++)
                {
                    double s = bb[hi * d + di];
                    for (int ci = 0; ci < c; ci++) s += y[t, ci] * w[(ci * h + hi) * d + di];
                    r[t, hi, di] = s;
                }
                return r;
            }
            var q = Proj("query"); var kk = Proj("key"); var v = Proj("value");
            var att = new double[n, h, d];
            for (int hi = 0; hi < h; hi++)
                for (int t = 0; t < n; t++)
                {
                    var logits = new double[n];
                    for (int s = 0; s < n; s++) { double z = 0; for (int di = 0; di < d; di++) z += q[t, hi, di] * kk[s, hi, di]; logits[s] = z / Math.Sqrt(d); }
                    double mx = logits.Max(), sum = 0;
                    for (int s = 0; s < n; s++) { logits[s] = Math.Exp(logits[s] - mx); sum += logits[s]; }
                    for (int di = 0; di < d; di++) { double z = 0; for (int s = 0; s < n; s++) z += logits[s] / sum * v[s, hi, di]; att[t, hi, di] = z; }
                }
            var ow = g[a + "out/kernel"].Data; var ob = g[a + "out/bias"].Data;
            for (int t = 0; t < n; t++) for (int ci = 0; ci < c; ci++)
            {
                double s = ob[ci];
                for (int hi = 0; hi < h; hi++) for (int di = 0; di < d; di++) s += att[t, hi, di] * ow[(hi * d + di) * c + ci];
                x[t, ci] += s;
            }
            y = Ln(x, b + "LayerNorm_2");
            var d0 = g[b + "MlpBlock_3/Dense_0/kernel"]; var d1 = g[b + "MlpBlock_3/Dense_1/kernel"];
            int m = d0.Dim(1);
            for (int t = 0; t < n; t++)
            {
                var hid = new double[m];
                for (int j = 0; j < m; j++) { double s = g[b + "MlpBlock_3/Dense_0/bias"].Data[j]; for (int ci = 0; ci < c; ci++) s += y[t, ci] * d0.Data[ci * m + j]; hid[j] = ReferenceMath.Gelu(s); }
                for (int ci = 0; ci < c; ci++) { double s = g[b + "MlpBlock_3/Dense_1/bias"].Data[ci]; for (int j = 0; j < m; j++) s += hid[j] * d1.Data[j * c + ci]; x[t, ci] += s; }
            }
        }
        x = Ln(x, "Transformer/encoder_norm");
        double[] feat = Enumerable.Range(0, c).Select(ci => x[0, ci]).ToArray();
        foreach (var (name, act) in new[] { ("pre_logits", true), ("head", false) })
        {
            if (!g.TryGetValue(name + "/kernel", out var w)) continue;
            int outs = w.Dim(1);
            var r = new double[outs];
            for (int j = 0; j < outs; j++) { double s = g[name + "/bias"].Data[j]; for (int i = 0; i < feat.Length; i++) s += feat[i] * w.Data[i * outs + j]; r[j] = act ? Math.Tanh(s) : s; }
            feat = r;
        }
        return feat;
    }

    // ------------------------------------------------------------------ the fixture

    [Fact]
    public void TheFixtureCheckpointMatchesPyTorchsLogits()
    {
        var (config, sd) = GoogleVit.Load(Fixture("google_vit.npz"));
        Assert.Equal(new VisionTransformerConfig { ImageSize = 32, PatchSize = 8, NumLayers = 2, NumHeads = 3, HiddenDim = 48, MlpDim = 96, NumClasses = 10 }, config);
        var model = new VisionTransformer(config);
        model.LoadStateDict(sd, strict: true);
        model.Eval();
        var (input, expected) = Expected("vit_logits");
        var logits = model.Forward(input).Data;
        double diff = MaxDiff(expected, logits);
        output.WriteLine($"google_vit.npz vs vit_logits: max |diff| = {diff:E2}");
        TestData.AssertClose(expected, logits, 6e-6, 0, "google_vit.npz logits");   // achieved 6.0e-7

        // The same weights in torchvision's layout (tv_vit's timm twin, as safetensors) give identical tensors.
        var timm = Weights.Load(Fixture("timm_vit.safetensors"));
        var fromTimm = TimmKeys.FromTimm(timm, model);
        foreach (var (key, t) in sd)
            TestData.AssertClose(fromTimm[key].Data, t.Data, 1e-7, 0, key);
        var again = GoogleVit.LoadModel(Fixture("google_vit.npz"));
        Assert.Equal(logits, again.Forward(input).Data);
    }

    // ------------------------------------------------------------------ other configurations

    [Theory]
    [InlineData(false, "")]
    [InlineData(true, "opt/target/")]
    public void TheConversionIsTheFlaxMathOnAnotherConfiguration(bool compressed, string prefix)
    {
        // 15×15 images of 2 channels, patch 5, 3 layers, 4 heads of 4, MLP 24, representation layer 6, 7 classes.
        var cfg = Other;
        var source = Randomized(cfg, 11);
        var google = ToGoogle(source.StateDict(), cfg);
        string path = _dir.File("other.npz");
        var arrays = ToGoogle(source.StateDict(), cfg, prefix).ToList();
        if (prefix.Length > 0) arrays.Add(new("opt/state/step", new Tensor([3f])));      // outside the prefix: ignored
        NpyWriter.Npz(path, arrays, compressed);

        var (config, sd) = GoogleVit.Load(path);
        Assert.Equal(cfg, config);
        var model = new VisionTransformer(config);
        model.LoadStateDict(sd, strict: true);
        model.Eval();
        // Round trip: torchvision → Google (the test's inverse) → .npz → GoogleVit → the very same tensors.
        foreach (var (key, t) in source.StateDict()) Assert.Equal(t.Data, sd[key].Data);

        var img = TestData.Uniform(12, -1, 1, 2, 2, 15, 15);
        var logits = model.Forward(img);
        double worst = 0;
        for (int b = 0; b < 2; b++)
        {
            var naive = NaiveGoogleForward(google, img.Data.AsSpan(b * 2 * 15 * 15, 2 * 15 * 15).ToArray(), 2, 15);
            var ours = logits.Data.AsSpan(b * 7, 7).ToArray();
            TestData.AssertClose(naive, ours, 1e-6, 0, $"image {b}: converted model vs the Flax math");   // achieved 6.5e-8
            worst = Math.Max(worst, naive.Zip(ours, (e, a) => Math.Abs(e - a)).Max());
        }
        output.WriteLine($"converted model vs naive Flax forward: max |diff| = {worst:E2}");
    }

    [Fact]
    public void ScannedAndBigVisionLayoutsGiveTheSameStateDict()
    {
        var cfg = Other with { RepresentationSize = null, NumClasses = 3 };
        var sd = Randomized(cfg, 5).StateDict();
        var g = ToGoogle(sd, cfg);
        var (_, plain) = GoogleVit.Convert(g);

        // Scanned: one array per sub-module with a leading layer axis.
        var scanned = g.Where(kv => !kv.Key.Contains("encoderblock_")).ToDictionary();
        foreach (var key in g.Keys.Where(k => k.StartsWith("Transformer/encoderblock_0/", StringComparison.Ordinal)))
        {
            string rest = key["Transformer/encoderblock_0/".Length..];
            var parts = Enumerable.Range(0, cfg.NumLayers).Select(l => g[$"Transformer/encoderblock_{l}/{rest}"]).ToList();
            scanned["Transformer/encoderblock/" + rest] = new Tensor(parts.SelectMany(t => t.Data).ToArray(), [cfg.NumLayers, .. parts[0].Shape]);
        }
        var (c2, sd2) = GoogleVit.Convert(scanned);
        Assert.Equal(cfg, c2);
        foreach (var (k, t) in plain) Assert.Equal(t.Data, sd2[k].Data);

        // big_vision: params/ prefix, pos_embedding at the top, sub-modules numbered 0 / 1 / 0.
        var bv = g.ToDictionary(kv => "params/" + kv.Key
            .Replace("Transformer/posembed_input/pos_embedding", "pos_embedding")
            .Replace("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0")
            .Replace("LayerNorm_2", "LayerNorm_1")
            .Replace("MlpBlock_3", "MlpBlock_0"), kv => kv.Value);
        var (c3, sd3) = GoogleVit.Convert(bv);
        Assert.Equal(cfg, c3);
        foreach (var (k, t) in plain) Assert.Equal(t.Data, sd3[k].Data);
    }

    [Fact]
    public void ACheckpointWithoutAHeadGivesAFeatureModel()
    {
        var cfg = Other with { NumClasses = 0, RepresentationSize = null, NumLayers = 1 };
        var g = ToGoogle(Randomized(cfg, 3).StateDict(), cfg);
        var (config, sd) = GoogleVit.Convert(g);
        Assert.Equal(0, config.NumClasses);
        var model = new VisionTransformer(config);
        model.LoadStateDict(sd, strict: true);
        Assert.Equal(new[] { 1, 16 }, model.Forward(TestData.Uniform(1, -1, 1, 1, 2, 15, 15)).Shape);
    }

    // ------------------------------------------------------------------ bad input

    private static Dictionary<string, Tensor> Good() => ToGoogle(Randomized(Other, 9).StateDict(), Other);

    [Fact]
    public void AMissingArrayIsNamed()
    {
        var g = Good();
        g.Remove("Transformer/encoderblock_1/MultiHeadDotProductAttention_1/value/bias");
        var e = Assert.Throws<ModelConfigException>(() => GoogleVit.Convert(g, "w.npz"));
        Assert.Equal("w.npz: missing array 'Transformer/encoderblock_1/MultiHeadDotProductAttention_1/value/bias'", e.Message);
    }

    [Fact]
    public void ArraysLeftOverAreListed()
    {
        var g = Good();
        g["Transformer/encoderblock_0/LayerScale_0/gamma"] = new Tensor(16);
        g["Transformer/encoderblock_5/LayerNorm_0/scale"] = new Tensor(16);      // a gap in the block numbers
        var e = Assert.Throws<ModelConfigException>(() => GoogleVit.Convert(g, "w.npz"));
        Assert.Contains("arrays with no torchvision counterpart: Transformer/encoderblock_0/LayerScale_0/gamma, Transformer/encoderblock_5/LayerNorm_0/scale", e.Message);
        Assert.Contains("without gaps", e.Message);
    }

    [Fact]
    public void InconsistentShapesAreNamed()
    {
        var g = Good();
        g["Transformer/encoderblock_2/MlpBlock_3/Dense_1/kernel"] = new Tensor(24, 8);
        var e = Assert.Throws<ModelConfigException>(() => GoogleVit.Convert(g, "w.npz"));
        Assert.Equal("w.npz: array 'Transformer/encoderblock_2/MlpBlock_3/Dense_1/kernel' has shape [24, 8], expected [24, 16] from the other arrays", e.Message);

        g = Good();
        g["Transformer/posembed_input/pos_embedding"] = new Tensor(1, 11, 16);
        e = Assert.Throws<ModelConfigException>(() => GoogleVit.Convert(g, "w.npz"));
        Assert.Contains("11 tokens are not a class token plus a square grid", e.Message);

        g = Good();
        g.Remove("cls");
        e = Assert.Throws<ModelConfigException>(() => GoogleVit.Convert(g, "w.npz"));
        Assert.Contains("no class token 'cls'", e.Message);

        e = Assert.Throws<ModelConfigException>(() => GoogleVit.Convert(new Dictionary<string, Tensor> { ["weight"] = new Tensor(1) }, "w.npz"));
        Assert.Contains("not a Google ViT checkpoint", e.Message);
    }
}
