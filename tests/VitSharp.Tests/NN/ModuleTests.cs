using VitSharp.NN;

namespace VitSharp.Tests.NN;

/// <summary>Module: state_dict names, strict and non-strict loading, train/eval, parameter counts.</summary>
public class ModuleTests
{
    /// <summary>A module with a parameter, a buffer and a child, to check the three kinds of state.</summary>
    private sealed class WithBuffer : Module
    {
        public Tensor Scale { get; }
        public Tensor Running { get; }
        public WithBuffer()
        {
            Scale = RegisterParameter("scale", Tensor.Ones(2));
            Running = RegisterBuffer("running", Tensor.Zeros(3));
            RegisterModule("inner", new Linear(2, 2));
        }
        protected override Tensor ForwardCore(Tensor input) => input * Scale;
    }

    /// <summary>Sequential(Linear(2,3), Sequential(Linear(3,4, nobias), LayerNorm(4)), ModuleList(Linear(4,1), Dropout), WithBuffer).</summary>
    private static Sequential Nested() => new(
        new Linear(2, 3),
        new Sequential(new Linear(3, 4, bias: false), new LayerNorm(4)),
        new ModuleList(new Linear(4, 1), new Dropout(0.5f)),
        new WithBuffer());

    private static readonly string[] NestedKeys =
    [
        "0.weight", "0.bias", "1.0.weight", "1.1.weight", "1.1.bias", "2.0.weight", "2.0.bias",
        "3.scale", "3.inner.weight", "3.inner.bias", "3.running",
    ];

    [Fact]
    public void StateDictKeysOfNestedContainersUseDottedIndices()
    {
        var m = Nested();
        Assert.Equal(NestedKeys, m.StateDict().Keys.ToArray());
        Assert.Equal(NestedKeys.Where(k => k != "3.running"), m.NamedParameters().Select(p => p.Name));
        Assert.Equal(new[] { "3.running" }, m.NamedBuffers().Select(b => b.Name));
        Assert.All(m.Parameters(), p => Assert.True(p.RequiresGrad));
        Assert.Equal(new[] { 3, 2 }, m.StateDict()["0.weight"].Shape);
        Assert.Equal(new[] { 4, 3 }, m.StateDict()["1.0.weight"].Shape);
    }

    [Fact]
    public void ParametersFollowAReplacementDeepInTheTree()
    {
        // Parameters() is cached between calls; replacing a grandchild (whose parent the root cannot see change) must show.
        var named = new NamedSequential(("a", new Linear(3, 4, bias: false)), ("b", new LayerNorm(4)));
        var m = new Sequential(new Linear(2, 3), new Sequential(named));
        var replacement = new Linear(3, 4);                  // built first: only the replacement itself changes the tree
        var before = m.Parameters().ToArray();
        Assert.Equal(5, before.Length);
        Assert.Equal(before, m.Parameters());
        named.Replace("a", replacement);
        var after = m.Parameters().ToArray();
        Assert.Equal(6, after.Length);
        Assert.Same(replacement.Weight, after[2]);
        Assert.Same(replacement.Bias, after[3]);
        Assert.DoesNotContain(before[2], after);
        Assert.Equal(m.NamedParameters().Select(p => p.Parameter), after);
    }

    [Fact]
    public void StateDictHoldsTheLiveTensors()
    {
        var m = Nested();
        var lin = (Linear)m[0];
        Assert.Same(lin.Weight, m.StateDict()["0.weight"]);
    }

    [Fact]
    public void NamedModulesListsEveryDescendant()
    {
        var names = Nested().NamedModules().Select(n => n.Name).ToArray();
        Assert.Equal(new[] { "", "0", "1", "1.0", "1.1", "2", "2.0", "2.1", "3", "3.inner" }, names);
    }

    [Fact]
    public void ParameterCountSumsEveryParameterButNotBuffers()
    {
        // 2·3+3 + 3·4 + 4+4 + 4·1+1 + 2 + 2·2+2 = 42
        Assert.Equal(42, Nested().ParameterCount());
        Assert.Equal(0, new Sequential().ParameterCount());
    }

    [Fact]
    public void LoadStateDictRoundTripCopiesEveryValue()
    {
        Init.Seed(1); var a = Nested();
        Init.Seed(2); var b = Nested();
        a.StateDict()["3.running"].Data[1] = 7f;
        Assert.NotEqual(a.StateDict()["0.weight"].Data, b.StateDict()["0.weight"].Data);
        b.LoadStateDict(a.StateDict());
        foreach (var key in NestedKeys) Assert.Equal(a.StateDict()[key].Data, b.StateDict()[key].Data);
        // Copies, not aliases.
        Assert.NotSame(a.StateDict()["0.weight"].Data, b.StateDict()["0.weight"].Data);
    }

    private static Dictionary<string, Tensor> BrokenStateDict(Module m)
    {
        var sd = m.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        sd.Remove("1.1.bias");                              // missing
        sd["2.0.extra"] = Tensor.Zeros(1);                  // unexpected
        sd["1.0.weight"] = Tensor.Zeros(3, 4);              // mis-shaped (expects [4, 3])
        foreach (var t in sd.Values) t.Data.AsSpan().Fill(9f);
        return sd;
    }

    [Fact]
    public void StrictLoadNamesMissingUnexpectedAndMisShapedKeysAndCopiesNothing()
    {
        var m = Nested();
        var before = m.StateDict().ToDictionary(kv => kv.Key, kv => (float[])kv.Value.Data.Clone());
        var ex = Assert.Throws<StateDictException>(() => m.LoadStateDict(BrokenStateDict(m), strict: true));
        Assert.Equal(new[] { "1.1.bias" }, ex.Missing);
        Assert.Equal(new[] { "2.0.extra" }, ex.Unexpected);
        Assert.Single(ex.MisShaped);
        Assert.Contains("1.1.bias", ex.Message);
        Assert.Contains("2.0.extra", ex.Message);
        Assert.Contains("1.0.weight", ex.Message);
        Assert.Contains("[4, 3]", ex.Message);
        Assert.Contains("[3, 4]", ex.Message);
        foreach (var (k, v) in m.StateDict()) Assert.Equal(before[k], v.Data);
    }

    [Theory]
    [InlineData("missing")]
    [InlineData("unexpected")]
    public void StrictLoadRejectsASingleMissingOrUnexpectedKey(string kind)
    {
        var m = Nested();
        var sd = m.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        if (kind == "missing") sd.Remove("3.running"); else sd["bogus"] = Tensor.Zeros(1);
        var ex = Assert.Throws<StateDictException>(() => m.LoadStateDict(sd));
        Assert.Contains(kind == "missing" ? "3.running" : "bogus", ex.Message);
    }

    [Fact]
    public void NonStrictLoadIgnoresMissingAndUnexpectedKeys()
    {
        var m = Nested();
        var sd = BrokenStateDict(m);
        sd["1.0.weight"] = Tensor.Full(9f, 4, 3); // fix the shape
        var biasBefore = (float[])m.StateDict()["1.1.bias"].Data.Clone();
        m.LoadStateDict(sd, strict: false);
        Assert.All(m.StateDict()["1.0.weight"].Data, v => Assert.Equal(9f, v));
        Assert.All(m.StateDict()["3.running"].Data, v => Assert.Equal(9f, v));
        Assert.Equal(biasBefore, m.StateDict()["1.1.bias"].Data);
    }

    [Fact]
    public void NonStrictLoadStillRejectsShapeMismatchAndReportsOnlyThat()
    {
        var m = Nested();
        var ex = Assert.Throws<StateDictException>(() => m.LoadStateDict(BrokenStateDict(m), strict: false));
        Assert.Contains("1.0.weight", ex.Message);
        // Missing and unexpected keys are not errors in non-strict mode, so the error must not list them.
        Assert.Empty(ex.Missing);
        Assert.Empty(ex.Unexpected);
        Assert.DoesNotContain("1.1.bias", ex.Message);
        Assert.DoesNotContain("2.0.extra", ex.Message);
    }

    [Fact]
    public void TrainAndEvalPropagateToEveryDescendant()
    {
        var m = Nested();
        Assert.All(m.NamedModules(), n => Assert.True(n.Module.Training));
        Assert.Same(m, m.Eval());
        Assert.All(m.NamedModules(), n => Assert.False(n.Module.Training));
        m.Train();
        Assert.All(m.NamedModules(), n => Assert.True(n.Module.Training));
        m.Train(false);
        Assert.All(m.NamedModules(), n => Assert.False(n.Module.Training));
    }

    [Fact]
    public void EvalTurnsOffNestedDropout()
    {
        var m = new Sequential(new Identity(), new Sequential(new Dropout(0.9f)));
        var x = Tensor.Ones(200);
        Assert.Contains(0f, m.Forward(x).Data);
        m.Eval();
        Assert.Equal(x.Data, m.Forward(x).Data);
    }

    [Fact]
    public void ZeroGradClearsEveryParameterGradient()
    {
        var m = new Sequential(new Linear(3, 2), new GELU(), new Linear(2, 1));
        F.CrossEntropy(m.Forward(Tensor.Ones(4, 3)).Reshape(4, 1), [0, 0, 0, 0]).Backward();
        F.Linear(Tensor.Ones(1, 3), ((Linear)m[0]).Weight, null).Sum().Backward();
        Assert.Contains(m.Parameters(), p => p.Grad is not null);
        m.ZeroGrad();
        Assert.All(m.Parameters(), p => Assert.Null(p.Grad));
    }

    [Fact]
    public void SequentialRunsModulesInOrder()
    {
        var lin = new Linear(3, 2);
        var m = new Sequential(lin, new ReLU());
        var x = TestData.Uniform(1, -1, 1, 4, 3);
        Assert.Equal(F.Linear(x, lin.Weight, lin.Bias).Relu().Data, m.Forward(x).Data);
        Assert.Equal(2, m.Count);
        Assert.Same(lin, m[0]);
    }

    [Fact]
    public void LinearInitialisationIsSeededAndWithinTorchBounds()
    {
        Init.Seed(5); var a = new Linear(16, 8);
        Init.Seed(5); var b = new Linear(16, 8);
        Assert.Equal(a.Weight.Data, b.Weight.Data);
        Assert.Equal(a.Bias!.Data, b.Bias!.Data);
        Assert.All(a.Weight.Data, v => Assert.InRange(v, -0.25f, 0.25f));
        Assert.True(a.Weight.Data.Max() > 0.2f && a.Weight.Data.Min() < -0.2f);
        Assert.Null(new Linear(3, 2, bias: false).Bias);
        Assert.Equal(new[] { "weight" }, new Linear(3, 2, bias: false).StateDict().Keys);
    }

    [Fact]
    public void LayerNormStartsAtOnesAndZeros()
    {
        var ln = new LayerNorm(5);
        Assert.All(ln.Weight.Data, v => Assert.Equal(1f, v));
        Assert.All(ln.Bias.Data, v => Assert.Equal(0f, v));
        Assert.Equal(1e-5f, ln.Eps);
    }
}
