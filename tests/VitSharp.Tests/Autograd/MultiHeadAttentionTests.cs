namespace VitSharp.Tests.Autograd;

/// <summary>
/// The packed multi-head attention op (qkv [B, N, 3·H·D] → [B, N, H·D]) against the same computation
/// composed from reshape, permute, slice and the separate scaled-dot-product op.
/// </summary>
public class MultiHeadAttentionTests
{
    private static Tensor Composed(Tensor qkv, int heads)
    {
        int b = qkv.Dim(0), n = qkv.Dim(1), d = qkv.Dim(2) / (3 * heads);
        var t = qkv.Reshape(b, n, 3, heads, d).Permute(2, 0, 3, 1, 4);
        var q = t.Slice(0, 0, 1).Reshape(b, heads, n, d);
        var k = t.Slice(0, 1, 1).Reshape(b, heads, n, d);
        var v = t.Slice(0, 2, 1).Reshape(b, heads, n, d);
        return F.ScaledDotProductAttention(q, k, v).Permute(0, 2, 1, 3).Reshape(b, n, heads * d);
    }

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(2, 5, 3, 4)]
    [InlineData(3, 17, 4, 16)]
    [InlineData(1, 65, 2, 33)]
    public void ForwardAndGradientMatchTheComposedOps(int b, int n, int heads, int d)
    {
        var rng = new Random(b * 1000 + n * 10 + heads);
        var x1 = Tensor.RandN(rng, 0, 1, b, n, 3 * heads * d);
        x1.RequiresGrad = true;
        var x2 = x1.Clone();
        x2.RequiresGrad = true;
        var weights = Tensor.RandN(rng, 0, 1, b, n, heads * d);

        var fused = F.MultiHeadAttention(x1, heads);
        var composed = Composed(x2, heads);
        for (int i = 0; i < fused.Size; i++)
            Assert.True(Math.Abs(fused.Data[i] - composed.Data[i]) <= 1e-5f * (1 + Math.Abs(composed.Data[i])), $"output {i}: {fused.Data[i]} vs {composed.Data[i]}");

        (fused * weights).Sum().Backward();
        (composed * weights).Sum().Backward();
        for (int i = 0; i < x1.Size; i++)
            Assert.True(Math.Abs(x1.Grad!.Data[i] - x2.Grad!.Data[i]) <= 1e-4f * (1 + Math.Abs(x2.Grad.Data[i])), $"grad {i}: {x1.Grad.Data[i]} vs {x2.Grad.Data[i]}");
    }

    [Theory]
    [InlineData(1, 3, 1, 2)]
    [InlineData(2, 4, 2, 3)]
    [InlineData(1, 6, 3, 2)]
    public void GradientMatchesFiniteDifferences(int b, int n, int heads, int d)
    {
        var qkv = Tensor.RandN(new Random(b + 10 * n + 100 * heads), 0, 1, b, n, 3 * heads * d);
        GradCheck.Verify(t => F.MultiHeadAttention(t[0], heads), [qkv]);
    }

    [Theory]
    [InlineData(2, 5, 3, 4, true)]
    [InlineData(2, 50, 3, 32, true)]   // head dim a multiple of 8: the tile path
    [InlineData(2, 50, 3, 32, false)]  // the packed-GEMM path
    [InlineData(1, 197, 2, 64, true)]  // over the tile path's key limit: GEMM path with padded score rows
    [InlineData(3, 17, 1, 24, true)]
    public void InferenceWithoutKeptProbabilitiesMatchesTheRecordingForwardExactly(int b, int n, int heads, int d, bool tiles)
    {
        // Without a gradient or an observer, each group's probabilities stay in its scratch rows (no [B, H, N, N]
        // buffer): the output must be the same to the bit as the forward pass that keeps them for backward.
        bool saved = VitSharp.Kernels.AttentionKernel.UseTiles;
        VitSharp.Kernels.AttentionKernel.UseTiles = tiles;
        try
        {
            var x = Tensor.RandN(new Random(b * 100 + n + d), 0, 1, b, n, 3 * heads * d);
            x.RequiresGrad = true;
            var recorded = F.MultiHeadAttention(x, heads);
            Assert.True(recorded.RequiresGrad);
            Tensor inferred;
            using (VitSharp.Autograd.NoGrad()) inferred = F.MultiHeadAttention(x, heads);
            Assert.False(inferred.RequiresGrad);
            Assert.Equal(recorded.Data, inferred.Data);
        }
        finally { VitSharp.Kernels.AttentionKernel.UseTiles = saved; }
    }

    [Fact]
    public void ObserverReceivesRowStochasticProbabilities()
    {
        var x = Tensor.RandN(new Random(1), 0, 1, 2, 7, 3 * 2 * 4);
        Tensor? probs = null;
        F.MultiHeadAttention(x, 2, probs: p => probs = p);
        Assert.NotNull(probs);
        Assert.Equal(new[] { 2, 2, 7, 7 }, probs!.Shape);
        for (int r = 0; r < 2 * 2 * 7; r++)
            Assert.Equal(1.0, probs.Data.Skip(r * 7).Take(7).Sum(), 5);
    }

    [Fact]
    public void RejectsAWidthThatIsNotThreeTimesHeads()
    {
        var e = Assert.Throws<ArgumentException>(() => F.MultiHeadAttention(new Tensor(1, 2, 10), 2));
        Assert.Contains("qkv", e.Message);
    }
}
