using VitSharp.NN;

namespace VitSharp.Tests.NN;

/// <summary>NamedSequential (torch.nn.Sequential from an OrderedDict): names, order, replacement.</summary>
public class NamedSequentialTests
{
    [Fact]
    public void RunsInOrderUnderItsNamesAndReplacesInPlace()
    {
        var a = new Linear(3, 4); var b = new Linear(4, 2);
        var seq = new NamedSequential(("pre", a), ("act", new Tanh()), ("head", b));
        Assert.Equal(new[] { "pre.weight", "pre.bias", "head.weight", "head.bias" }, seq.NamedParameters().Select(p => p.Name));
        var x = TestData.Uniform(1, -1, 1, 2, 3);
        Assert.Equal(F.Linear(F.Linear(x, a.Weight, a.Bias).Tanh(), b.Weight, b.Bias).Data, seq.Forward(x).Data);
        Assert.Same(b, seq["head"]);
        Assert.Null(seq["nope"]);
        Assert.Throws<ArgumentException>(() => seq.Add("act", new Identity()));

        seq.Eval();
        var c = new Linear(4, 5);
        seq.Replace("head", c);
        Assert.False(c.Training);
        Assert.Equal(new[] { "pre", "act", "head" }, seq.NamedChildren().Select(n => n.Name));
        Assert.Equal(new[] { 2, 5 }, seq.Forward(x).Shape);
        seq.Replace("head", null);
        Assert.Equal(2, seq.Count);
        Assert.Equal(new[] { 2, 4 }, seq.Forward(x).Shape);
        seq.Replace("head", new Linear(4, 1));
        Assert.Equal(new[] { "pre", "act", "head" }, seq.NamedChildren().Select(n => n.Name));
        Assert.Equal(new[] { 2, 1 }, seq.Forward(x).Shape);
    }
}
