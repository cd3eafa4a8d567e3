using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Autograd;

namespace VitSharp.Tests.Models;

/// <summary>The Attention block: the unfused training path (used when attention dropout is on) agrees with the fused one.</summary>
public class AttentionBlockTests
{
    [Fact]
    public void UnfusedTrainingPathMatchesFusedPath()
    {
        // p = 1e-9: the unfused path runs (Training && P > 0) but keeps every probability (NextSingle() ≥ 1e-9
        // except when it returns exactly 0, chance 2^-24 per element) with scale 1/(1−1e-9) = 1f.
        Init.Seed(4);
        var attn = new Attention(8, heads: 2, dimHead: 4, dropout: 1e-9f);
        var x = TestData.Uniform(1, -1, 1, 2, 5, 8);
        attn.Train();
        Tensor? pTrain = null, pEval = null;
        var hook = attn.Attend.RegisterForwardHook((_, _, p) => pTrain = p);
        var train = attn.Forward(x);
        hook.Dispose();
        attn.Eval();
        Tensor eval;
        using (attn.Attend.RegisterForwardHook((_, _, p) => pEval = p)) eval = attn.Forward(x);
        TestData.AssertClose(eval.Data, train.Data, 1e-6, 1e-5, "attention block output");
        Assert.Equal(new[] { 2, 2, 5, 5 }, pTrain!.Shape);
        TestData.AssertClose(pEval!.Data, pTrain.Data, 1e-7, 1e-5, "attention probabilities");

        attn.Train();
        var w = attn.ToQkv.Weight;
        GradCheck.Verify(_ => attn.Forward(x), [w]);
    }

    [Fact]
    public void BlockGradientsOfInput()
    {
        Init.Seed(5);
        var attn = new Attention(8, heads: 2, dimHead: 4);
        attn.Eval();
        GradCheck.Verify(t => attn.Forward(t[0]), TestData.Uniform(2, -1, 1, 2, 3, 8));
        var ff = new FeedForward(8, 16);
        GradCheck.Verify(t => ff.Forward(t[0]), TestData.Uniform(3, -1, 1, 2, 3, 8));
    }
}
