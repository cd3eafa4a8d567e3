namespace VitSharp.Tests.Autograd;

/// <summary>F.GatherRows, F.RelativePositionBias and F.AddWindowBias (Swin's data movements and score terms): values
/// against loops written from their definitions, gradients against finite differences, bad shapes refused; the fused
/// F.WindowAttention against the reference's steps built from them.</summary>
public class WindowOpsGradTests
{
    [Fact]
    public void GatherRowsCopiesMappedRowsAndZeroesPadding()
    {
        // 2 items of 3 rows of 2; output 4 rows per item: rows 2, 0, padding, 1.
        var x = TestData.Uniform(1, -1, 1, 2, 3, 2);
        int[] map = [2, 0, -1, 1];
        var y = F.GatherRows(x, map, 3, [2, 2, 4]);
        Assert.Equal(new[] { 2, 2, 4 }, y.Shape);
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 4; t++)
                for (int k = 0; k < 2; k++)
                    Assert.Equal(map[t] < 0 ? 0f : x.Data[(b * 3 + map[t]) * 2 + k], y.Data[(b * 4 + t) * 2 + k]);
        GradCheck.Verify(t => F.GatherRows(t[0], map, 3, [2, 2, 4]), x);
    }

    [Fact]
    public void GatherRowsRefusesShapesThatDoNotFit()
    {
        var x = Tensor.Zeros(2, 3, 2);
        Assert.Contains("not a batch of 4 rows", Assert.Throws<ArgumentException>(() => F.GatherRows(x, [0], 4, [2, 1, 2])).Message);
        Assert.Contains("is not 2 items of 2 rows", Assert.Throws<ArgumentException>(() => F.GatherRows(x, [0, 1], 3, [2, 3, 2])).Message);
    }

    [Fact]
    public void RelativePositionBiasGathersTableRowsPerHead()
    {
        var table = TestData.Uniform(2, -1, 1, 5, 3);   // T = 5, 3 heads
        int[] index = [0, 4, 4, 2];                     // N = 2, repeated entries accumulate
        var y = F.RelativePositionBias(table, index, 2);
        Assert.Equal(new[] { 3, 2, 2 }, y.Shape);
        for (int h = 0; h < 3; h++)
            for (int p = 0; p < 4; p++) Assert.Equal(table.Data[index[p] * 3 + h], y.Data[h * 4 + p]);
        GradCheck.Verify(t => F.RelativePositionBias(t[0], index, 2), table);
        Assert.Contains("index 5 is outside the table's 5 rows",
            Assert.Throws<ArgumentException>(() => F.RelativePositionBias(table, [0, 5, 1, 1], 2)).Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AddWindowBiasAddsTheHeadsBiasAndTheWindowsMask(bool masked)
    {
        // 2 images × 3 windows, 2 heads, 2 tokens per window.
        var scores = TestData.Uniform(3, -1, 1, 6, 2, 2, 2);
        var bias = TestData.Uniform(4, -1, 1, 2, 2, 2);
        float[]? mask = masked ? [0, -100, -100, 0, 0, 0, 0, 0, 0, -100, 0, 0] : null;
        var y = F.AddWindowBias(scores, bias, mask, 3);
        for (int g = 0; g < 6; g++)
            for (int h = 0; h < 2; h++)
                for (int p = 0; p < 4; p++)
                {
                    double e = scores.Data[(g * 2 + h) * 4 + p] + bias.Data[h * 4 + p] + (mask is null ? 0 : mask[g % 3 * 4 + p]);
                    Assert.Equal(e, y.Data[(g * 2 + h) * 4 + p], 5);
                }
        GradCheck.Verify(t => F.AddWindowBias(t[0], t[1], mask, 3), scores, bias);
    }

    [Fact]
    public void AddWindowBiasRefusesShapesThatDoNotFit()
    {
        var scores = Tensor.Zeros(6, 2, 2, 2);
        Assert.Contains("do not fit", Assert.Throws<ArgumentException>(() => F.AddWindowBias(scores, Tensor.Zeros(3, 2, 2), null, 3)).Message);
        Assert.Contains("do not fit", Assert.Throws<ArgumentException>(() => F.AddWindowBias(scores, Tensor.Zeros(2, 2, 2), null, 4)).Message);
        Assert.Contains("mask of 4 entries", Assert.Throws<ArgumentException>(() => F.AddWindowBias(scores, Tensor.Zeros(2, 2, 2), new float[4], 3)).Message);
    }

    // The reference's steps (torchvision's ShiftedWindowAttention): split q, k, v, (q·D^-½)·kᵀ, bias and mask, softmax, ·v.
    private static Tensor Steps(Tensor qkv, Tensor bias, float[]? mask, int windows, int heads)
    {
        int g = qkv.Dim(0), n = qkv.Dim(1), d = qkv.Dim(2) / (3 * heads);
        var t = qkv.Reshape(g, n, 3, heads, d).Permute(2, 0, 3, 1, 4);
        var q = t.Slice(0, 0, 1).Reshape(g, heads, n, d);
        var k = t.Slice(0, 1, 1).Reshape(g, heads, n, d);
        var v = t.Slice(0, 2, 1).Reshape(g, heads, n, d);
        var p = F.Softmax(F.AddWindowBias(Tensor.MatMul(q * (1f / MathF.Sqrt(d)), k, transB: true), bias, mask, windows), -1);
        return Tensor.MatMul(p, v).Transpose(1, 2).Reshape(g, n, heads * d);
    }

    // Swin's shift mask pattern: −100 between tokens of different regions, per window.
    private static float[] ShiftMask(int windows, int n, int seed)
    {
        var rng = new Random(seed);
        var mask = new float[windows * n * n];
        for (int w = 0; w < windows; w++)
        {
            var region = Enumerable.Range(0, n).Select(_ => rng.Next(w % 3 + 1)).ToArray();
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) mask[(w * n + i) * n + j] = region[i] == region[j] ? 0f : -100f;
        }
        return mask;
    }

    /// <summary>F.WindowAttention (one op) against the reference's steps: outputs, the probabilities a hook sees, and the
    /// gradients of qkv and of the bias, on Swin's 7×7 windows (49 tokens, head dim 32, shifted and not) and other shapes,
    /// through the tile path and the packed-GEMM path.</summary>
    [Theory]
    [InlineData(2, 4, 3, 49, 32, true, true)]
    [InlineData(2, 4, 3, 49, 32, false, true)]
    [InlineData(1, 3, 2, 49, 8, true, false)]
    [InlineData(3, 2, 4, 16, 16, true, true)]
    [InlineData(1, 1, 1, 5, 8, false, false)]
    [InlineData(2, 2, 2, 9, 12, true, true)]
    public void WindowAttentionMatchesTheReferenceSteps(int images, int windows, int heads, int n, int d, bool masked, bool tiles)
    {
        int g = images * windows;
        var qkv = TestData.Uniform(n + d, -1.5f, 1.5f, g, n, 3 * heads * d);
        var bias = TestData.Uniform(heads + n, -0.5f, 0.5f, heads, n, n);
        var mask = masked ? ShiftMask(windows, n, g) : null;
        var weight = TestData.Uniform(7, -1, 1, g, n, heads * d);
        bool saved = VitSharp.Kernels.AttentionKernel.UseTiles;
        VitSharp.Kernels.AttentionKernel.UseTiles = tiles;
        try
        {
            qkv.RequiresGrad = bias.RequiresGrad = true;
            Tensor? seen = null;
            var fused = F.WindowAttention(qkv, heads, bias, mask, windows, probs: p => seen = p.Clone());
            (fused * weight).Sum().Backward();
            var (dqkv, dbias) = (qkv.Grad!.Clone(), bias.Grad!.Clone());
            qkv.ZeroGrad(); bias.ZeroGrad();
            var steps = Steps(qkv, bias, mask, windows, heads);
            (steps * weight).Sum().Backward();
            TestData.AssertClose(steps.Data, fused.Data, 3e-7, 1e-6, "output");
            TestData.AssertClose(dqkv.Data.Select(x => (double)x).ToArray(), qkv.Grad!.Data, 5e-7, 2e-6, "qkv gradient");
            TestData.AssertClose(dbias.Data.Select(x => (double)x).ToArray(), bias.Grad!.Data, 5e-7, 2e-6, "bias gradient");
            Assert.NotNull(seen);
            Assert.Equal(new[] { g, heads, n, n }, seen!.Shape);
            for (int r = 0; r < g * heads * n; r++) Assert.Equal(1.0, seen.Data.AsSpan(r * n, n).ToArray().Sum(x => (double)x), 5);
        }
        finally { VitSharp.Kernels.AttentionKernel.UseTiles = saved; }
    }

    [Fact]
    public void WindowAttentionGradientsMatchFiniteDifferences()
    {
        // 2 images × 2 windows, 2 heads of 8, 6 tokens; the mask cuts some pairs.
        var mask = ShiftMask(2, 6, 3);
        GradCheck.Verify(t => F.WindowAttention(t[0], 2, t[1], mask, 2), TestData.Uniform(5, -1, 1, 4, 6, 48), TestData.Uniform(6, -0.5f, 0.5f, 2, 6, 6));
    }

    [Fact]
    public void WindowAttentionWithoutGradientsKeepsNoProbabilitiesAndGivesTheSameOutput()
    {
        var qkv = TestData.Uniform(8, -1, 1, 4, 49, 3 * 3 * 32);
        var bias = TestData.Uniform(9, -0.5f, 0.5f, 3, 49, 49);
        var mask = ShiftMask(2, 49, 4);
        var inference = F.WindowAttention(qkv, 3, bias, mask, 2);
        Assert.False(inference.RequiresGrad);
        bias.RequiresGrad = true;
        var training = F.WindowAttention(qkv, 3, bias, mask, 2);
        Assert.True(training.RequiresGrad);
        Assert.Equal(training.Data, inference.Data);
    }

    [Fact]
    public void WindowAttentionRefusesShapesThatDoNotFit()
    {
        var qkv = Tensor.Zeros(6, 4, 3 * 2 * 8);
        var bias = Tensor.Zeros(2, 4, 4);
        Assert.Contains("expected qkv [G, N, 3·H·D] with H = 5", Assert.Throws<ArgumentException>(() => F.WindowAttention(qkv, 5, bias, null, 3)).Message);
        Assert.Contains("bias [3, 4, 4] does not fit [2, 4, 4]", Assert.Throws<ArgumentException>(() => F.WindowAttention(qkv, 2, Tensor.Zeros(3, 4, 4), null, 3)).Message);
        Assert.Contains("6 groups are not a whole number of images of 4 windows", Assert.Throws<ArgumentException>(() => F.WindowAttention(qkv, 2, bias, null, 4)).Message);
        Assert.Contains("mask of 16 entries, expected [3, 4, 4]", Assert.Throws<ArgumentException>(() => F.WindowAttention(qkv, 2, bias, new float[16], 3)).Message);
    }
}
