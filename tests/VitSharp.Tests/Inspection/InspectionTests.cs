using VitSharp.Data;
using VitSharp.Inspection;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;
using VitSharp.Tests.Models;

namespace VitSharp.Tests.Inspection;

/// <summary>Recorder (attention maps) and Extractor (token embeddings), as vit-pytorch's recorder.py and extractor.py.</summary>
public class RecorderExtractorTests
{
    private static ViT Model(int depth = 2, int heads = 2, string pool = "cls", int image = 8, int patch = 4, float dropout = 0f, int seed = 31)
    {
        Init.Seed(seed);
        var cfg = DistillTests.Tiny(image: image, patch: patch, pool: pool, depth: depth, heads: heads) with { Dropout = dropout };
        var m = new ViT(cfg);
        m.Eval();
        return m;
    }

    [Theory]
    [InlineData(2, 2, "cls", 8, 4)]
    [InlineData(3, 1, "cls", 12, 4)]
    [InlineData(1, 3, "mean", 8, 2)]
    public void RecorderReturnsRowStochasticMapsOfEveryLayerAndLeavesTheLogitsAlone(int depth, int heads, string pool, int image, int patch)
    {
        var vit = Model(depth, heads, pool, image, patch);
        var img = TestData.Uniform(1, -1, 1, 2, 3, image, image);
        var plain = vit.Forward(img).Data;
        using var recorder = new Recorder(vit);
        var (logits, attention) = recorder.Forward(img);
        int n = (image / patch) * (image / patch) + (pool == "cls" ? 1 : 0);
        Assert.Equal(new[] { 2, depth, heads, n, n }, attention.Shape);
        Assert.Equal(plain, logits.Data);
        for (int row = 0; row < attention.Size / n; row++)
        {
            var r = attention.Data.AsSpan(row * n, n);
            double sum = 0;
            foreach (var v in r) { Assert.True(v >= 0); sum += v; }
            Assert.Equal(1.0, sum, 1e-5);
        }
        // A second forward records afresh (not appended).
        Assert.Equal(attention.Shape, recorder.Forward(img).Attention.Shape);
        Assert.Equal(depth, recorder.Recordings.Count);
    }

    [Fact]
    public void FirstLayerMapIsTheSoftmaxOfScaledQueryKeyProducts()
    {
        var vit = Model(depth: 1, heads: 2);
        var img = TestData.Uniform(2, -1, 1, 1, 3, 8, 8);
        using var recorder = new Recorder(vit);
        var attention = recorder.Forward(img).Attention;                    // [1, 1, 2, 5, 5]
        var block = vit.Transformer.AttentionBlocks().First();
        var qkv = block.ToQkv.Forward(block.Norm.Forward(vit.Embed(img)));  // [1, 5, 3·2·4]
        int n = 5, d = 4, inner = 8;
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < n; i++)
            {
                var scores = new double[n];
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int k = 0; k < d; k++) s += qkv[0, i, h * d + k] * (double)qkv[0, j, inner + h * d + k];
                    scores[j] = s / Math.Sqrt(d);
                }
                double max = scores.Max(), z = scores.Sum(s => Math.Exp(s - max));
                for (int j = 0; j < n; j++) Assert.Equal(Math.Exp(scores[j] - max) / z, attention[0, 0, h, i, j], 1e-5);
            }
    }

    [Fact]
    public void EjectRemovesOnlyTheRecordersHooks()
    {
        var vit = Model();
        var blocks = vit.Transformer.AttentionBlocks().ToList();
        int seen = 0;
        using var mine = blocks[0].Attend.RegisterForwardHook((_, _, _) => seen++);
        var recorder = new Recorder(vit);
        Assert.Equal(blocks, recorder.Blocks);
        recorder.Forward(TestData.Uniform(3, -1, 1, 1, 3, 8, 8));
        Assert.Equal(1, seen);                                              // the existing hook keeps working
        Assert.Same(vit, recorder.Eject());
        Assert.True(blocks[0].Attend.HasForwardHooks);                      // ours stays
        Assert.False(blocks[1].Attend.HasForwardHooks);
        Assert.Throws<InvalidOperationException>(() => recorder.Forward(TestData.Uniform(3, -1, 1, 1, 3, 8, 8)));
        recorder.Dispose();                                                 // idempotent
        Assert.True(blocks[0].Attend.HasForwardHooks);
        vit.Forward(TestData.Uniform(3, -1, 1, 1, 3, 8, 8));
        Assert.Equal(2, seen);
    }

    [Fact]
    public void RecorderWorksInTrainingModeWithAttentionDropout()
    {
        var vit = Model(dropout: 0.5f);
        vit.Train();
        using var recorder = new Recorder(vit);
        var attention = recorder.Forward(TestData.Uniform(4, -1, 1, 2, 3, 8, 8)).Attention;
        Assert.Equal(new[] { 2, 2, 2, 5, 5 }, attention.Shape);
        for (int row = 0; row < attention.Size / 5; row++)
            Assert.Equal(1.0, attention.Data.AsSpan(row * 5, 5).ToArray().Sum(v => (double)v), 1e-5);   // before dropout
    }

    [Fact]
    public void ADistillationWrapperIsRecordedThroughItsStudent()
    {
        Init.Seed(5);
        var student = new DistillableViT(DistillTests.Tiny(depth: 3));
        var teacher = new ViT(DistillTests.Tiny(depth: 1, dim: 12, heads: 3));
        var w = new DistillWrapper(teacher, student);
        w.Eval();
        var img = TestData.Uniform(5, -1, 1, 2, 3, 8, 8);
        using var recorder = new Recorder(w);
        var (logits, attention) = recorder.Forward(img);
        Assert.Equal(new[] { 2, 3, 2, 5, 5 }, attention.Shape);             // the student's depth and heads; no distill token
        Assert.Equal(w.Forward(img).Data, logits.Data);
        Assert.Same(student, recorder.Model);
    }

    [Fact]
    public void ModelsWithoutAttentionAreRejected() =>
        Assert.Contains("no attention", Assert.Throws<ArgumentException>(() => new Recorder(new LinearTeacher(4, 2))).Message);

    [Theory]
    [InlineData("cls")]
    [InlineData("mean")]
    public void ExtractorReturnsTheTransformerOutputAndTheLogits(string pool)
    {
        var vit = Model(depth: 2, pool: pool);
        var img = TestData.Uniform(6, -1, 1, 3, 3, 8, 8);
        var plain = vit.Forward(img).Data;
        var features = vit.ForwardFeatures(img).Data;
        using var extractor = new Extractor(vit);
        var e = extractor.Forward(img);
        Assert.Equal(plain, e.Logits.Data);
        Assert.Equal(new[] { 3, pool == "cls" ? 5 : 4, 8 }, e.Embeddings.Shape);
        Assert.Equal(features, e.Embeddings.Data);
        Assert.Null(e.Layers);
    }

    [Fact]
    public void LayerByLayerEmbeddingsAreTheResidualStreamAfterEachLayer()
    {
        var vit = Model(depth: 3);
        var img = TestData.Uniform(7, -1, 1, 2, 3, 8, 8);
        using var extractor = new Extractor(vit, layerByLayer: true);
        var e = extractor.Forward(img);
        Assert.Equal(new[] { 2, 3, 5, 8 }, e.Layers!.Shape);
        // Layer 0 spelled out: x + attn(x), then + ff(·), from the embedded tokens.
        var layer0 = (ModuleList)vit.Transformer.Layers[0];
        var x = vit.Embed(img);
        x = layer0[0].Forward(x) + x;
        x = layer0[1].Forward(x) + x;
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 5; t++)
                for (int c = 0; c < 8; c++) Assert.Equal(x[b, t, c], e.Layers[b, 0, t, c], 1e-5);
        // The last layer, through the final LayerNorm, is the transformer's output.
        var last = new Tensor(2, 5, 8);
        for (int b = 0; b < 2; b++) e.Layers.Data.AsSpan((b * 3 + 2) * 40, 40).CopyTo(last.Data.AsSpan(b * 40, 40));
        TestData.AssertClose(vit.Transformer.Norm!.Forward(last).Data, e.Embeddings.Data, 1e-6, 1e-6, "final norm of the last layer");
        Assert.Same(vit, extractor.Eject());
        Assert.False(vit.HasForwardHooksInTree());
        Assert.Throws<InvalidOperationException>(() => extractor.Forward(img));
    }

    [Fact]
    public void ExtractorOfAWrapperUsesTheStudent()
    {
        Init.Seed(6);
        var student = new DistillableViT(DistillTests.Tiny(dim: 8));
        var w = new DistillWrapper(new ViT(DistillTests.Tiny(dim: 12, heads: 3)), student);
        w.Eval();
        var img = TestData.Uniform(8, -1, 1, 1, 3, 8, 8);
        using var extractor = new Extractor(w);
        var e = extractor.Forward(img);
        Assert.Equal(new[] { 1, 5, 8 }, e.Embeddings.Shape);
        Assert.Equal(student.ForwardFeatures(img).Data, e.Embeddings.Data);
    }

    [Fact]
    public void ExtractorNeedsATransformer() =>
        Assert.Contains("transformer", Assert.Throws<ArgumentException>(() => new Extractor(new LinearTeacher(4, 2))).Message);

    [Fact]
    public void ForwardHooksSeeTheOutputUntilRemoved()
    {
        var lin = new Linear(3, 2);
        var seen = new List<int[]>();
        var handle = lin.RegisterForwardHook((m, _, y) => { Assert.Same(lin, m); seen.Add(y.Shape); });
        lin.Forward(Tensor.Zeros(4, 3));
        handle.Dispose();
        lin.Forward(Tensor.Zeros(4, 3));
        Assert.Single(seen);
        Assert.Equal(new[] { 4, 2 }, seen[0]);
    }
}

/// <summary>Attention rollout and the heat map drawn over an image.</summary>
public class AttentionRolloutTests
{
    /// <summary>Maps [B, L, H, N, N] built from one N×N matrix per (layer, head).</summary>
    private static Tensor Maps(int b, int layers, int heads, int n, Func<int, int, int, int, double> value)
    {
        var t = new Tensor(b, layers, heads, n, n);
        for (int bi = 0; bi < b; bi++)
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++) t[bi, l, h, i, j] = (float)value(l, h, i, j);
        return t;
    }

    [Theory]
    [InlineData(1, 2, 2)]
    [InlineData(3, 1, 3)]
    public void IdentityAttentionGivesAUniformMap(int layers, int heads, int grid)
    {
        int n = 1 + grid * grid;
        var maps = Maps(2, layers, heads, n, (_, _, i, j) => i == j ? 1 : 0);
        var r = AttentionRollout.Rollout(maps);
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) Assert.Equal(i == j ? 1f : 0f, r[1, i, j], 1e-6);
        var map = AttentionRollout.PatchMap(maps, grid, grid);
        Assert.Equal(new[] { 2, grid, grid }, map.Shape);
        Assert.All(map.Data, v => Assert.Equal(map.Data[0], v));             // uniform (the class token attends only to itself)
    }

    [Theory]
    [InlineData(1, 4)]
    [InlineData(2, 4)]
    [InlineData(3, 9)]
    public void UniformAttentionGivesTheClosedForm(int layers, int patches)
    {
        // Â = (U + I)/2 with U = 1/N everywhere; Â^L = (I + (2^L − 1)·U)/2^L, so every patch gets (2^L − 1)/(2^L·N).
        int n = 1 + patches, side = (int)Math.Sqrt(patches);
        var map = AttentionRollout.PatchMap(Maps(1, layers, 3, n, (_, _, _, _) => 1.0 / n), side, side);
        double expected = (Math.Pow(2, layers) - 1) / (Math.Pow(2, layers) * n);
        Assert.All(map.Data, v => Assert.Equal(expected, v, 1e-6));
    }

    [Fact]
    public void RandomMapsMatchAPlainMatrixReference()
    {
        int b = 2, layers = 3, heads = 2, n = 5;
        var rng = new Random(3);
        var raw = new double[b, layers, heads, n, n];
        foreach (var (bi, l, h, i) in from bi in Enumerable.Range(0, b) from l in Enumerable.Range(0, layers) from h in Enumerable.Range(0, heads) from i in Enumerable.Range(0, n) select (bi, l, h, i))
        {
            var row = Enumerable.Range(0, n).Select(_ => rng.NextDouble()).ToArray();
            for (int j = 0; j < n; j++) raw[bi, l, h, i, j] = row[j] / row.Sum();
        }
        var maps = Maps(b, layers, heads, n, (_, _, _, _) => 0);
        for (int bi = 0; bi < b; bi++)
            for (int l = 0; l < layers; l++) for (int h = 0; h < heads; h++) for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) maps[bi, l, h, i, j] = (float)raw[bi, l, h, i, j];
        var r = AttentionRollout.Rollout(maps);
        for (int bi = 0; bi < b; bi++)
        {
            double[,] acc = new double[n, n];
            for (int i = 0; i < n; i++) acc[i, i] = 1;
            for (int l = 0; l < layers; l++)
            {
                var a = new double[n, n];
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++) a[i, j] = (Enumerable.Range(0, heads).Sum(h => raw[bi, l, h, i, j]) / heads + (i == j ? 1 : 0)) / 2; // rows sum to 2
                var next = new double[n, n];
                for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) for (int k = 0; k < n; k++) next[i, j] += a[i, k] * acc[k, j];
                acc = next;
            }
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(1.0, Enumerable.Range(0, n).Sum(j => (double)r[bi, i, j]), 1e-5);
                for (int j = 0; j < n; j++) Assert.Equal(acc[i, j], r[bi, i, j], 1e-5);
            }
            var map = AttentionRollout.PatchMap(maps, 2, 2);
            for (int p = 0; p < 4; p++) Assert.Equal(acc[0, 1 + p], map[bi, p / 2, p % 2], 1e-5);
        }
    }

    [Fact]
    public void WithoutAClassTokenTheMapIsTheMeanOfTheRolloutRows()
    {
        var rng = new Random(4);
        var maps = Maps(1, 2, 2, 4, (_, _, _, _) => 0);
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 4; i++)
                {
                    var row = Enumerable.Range(0, 4).Select(_ => rng.NextDouble()).ToArray();
                    for (int j = 0; j < 4; j++) maps[0, l, h, i, j] = (float)(row[j] / row.Sum());
                }
        var r = AttentionRollout.Rollout(maps);
        var map = AttentionRollout.PatchMap(maps, 2, 2, prefixTokens: 0);
        for (int p = 0; p < 4; p++) Assert.Equal(Enumerable.Range(0, 4).Average(i => (double)r[0, i, p]), map[0, p / 2, p % 2], 1e-6);
        Assert.Equal(1.0, map.Data.Sum(v => (double)v), 1e-5);
    }

    [Fact]
    public void ZeroLayersIsTheIdentity()
    {
        var r = AttentionRollout.Rollout(new Tensor(1, 0, 2, 3, 3));
        Assert.Equal(new float[] { 1, 0, 0, 0, 1, 0, 0, 0, 1 }, r.Data);
    }

    [Fact]
    public void BadShapesAreRejected()
    {
        Assert.Throws<ArgumentException>(() => AttentionRollout.Rollout(new Tensor(1, 2, 2, 3, 4)));
        Assert.Throws<ArgumentException>(() => AttentionRollout.Rollout(new Tensor(2, 3, 3, 3)));
        Assert.Contains("2×2", Assert.Throws<ArgumentException>(() => AttentionRollout.PatchMap(new Tensor(1, 1, 1, 4, 4), 2, 2)).Message);
    }

    [Fact]
    public void ForModelGivesOneMapPerImageOverThePatchGrid()
    {
        Init.Seed(9);
        var vit = new ViT(DistillTests.Tiny(image: 12, patch: 4, depth: 2)); vit.Eval();
        var map = AttentionRollout.ForModel(vit, TestData.Uniform(1, -1, 1, 2, 3, 12, 12));
        Assert.Equal(new[] { 2, 3, 3 }, map.Shape);
        Assert.All(map.Data, v => Assert.InRange(v, 0f, 1f));
        Assert.False(vit.HasForwardHooksInTree());                          // hooks removed
        Assert.Throws<ArgumentException>(() => AttentionRollout.ForModel(new LinearTeacher(4, 2), Tensor.Zeros(1, 1, 2, 2)));
    }

    [Theory]
    [InlineData(28, 28, 224, 224)]
    [InlineData(640, 480, 640, 480)]
    [InlineData(100, 50, 300, 150)]
    [InlineData(224, 10, 224, 10)]
    public void OutputSizeEnlargesSmallImagesByAWholeFactor(int w, int h, int ew, int eh) =>
        Assert.Equal((ew, eh), AttentionHeatmap.OutputSize(w, h));

    [Fact]
    public void HeatmapIsWrittenAsADecodablePngOfTheOutputSize()
    {
        using var dir = new TempDir("heatmap");
        var grey = new DecodedImage(Enumerable.Range(0, 28 * 20).Select(i => (byte)(i % 251)).ToArray(), 28, 20, 1);
        var map = new float[] { 0, 1, 2, 3, 4, 5 };                        // a 2×3 grid, increasing
        string path = dir.File("map.png");
        AttentionHeatmap.SavePng(path, grey, map, 2, 3);
        var decoded = ImageDecoder.Decode(path);
        Assert.Equal((224, 160, 3), (decoded.Width, decoded.Height, decoded.Channels));
        // The highest cell (bottom right) is drawn red-ish, the lowest (top left) blue-ish.
        byte[] Px(int x, int y) => decoded.Pixels.AsSpan((y * 224 + x) * 3, 3).ToArray();
        var hot = Px(223, 159);
        var cold = Px(0, 0);
        Assert.True(hot[0] > hot[2], $"hot pixel {string.Join(",", hot)}");
        Assert.True(cold[2] > cold[0], $"cold pixel {string.Join(",", cold)}");
    }

    [Fact]
    public void OverlayBlendsHalfAndHalf()
    {
        var white = new DecodedImage(Enumerable.Repeat((byte)255, 2 * 2 * 3).ToArray(), 2, 2, 3);
        var o = AttentionHeatmap.Overlay(white, [7f], 1, 1);                // constant map → 0 → jet dark blue (0, 0, 0.5)
        Assert.Equal((224, 224), (o.Width, o.Height));
        Assert.Equal(new byte[] { 128, 128, 191 }, o.Pixels.AsSpan(0, 3).ToArray());
        Assert.Throws<ArgumentException>(() => AttentionHeatmap.Overlay(white, [1f, 2f], 1, 1));
    }
}
