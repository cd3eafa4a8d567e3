using VitSharp.Optim;

namespace VitSharp.Tests.Optim;

/// <summary>AdamW and SGD against double-precision twins of torch.optim's documented algorithms.</summary>
public class OptimizerTests
{
    private const int Steps = 6;

    /// <summary>Gradient of parameter <paramref name="p"/> at step <paramref name="t"/> (1-based), or null when it gets none.</summary>
    private delegate double[]? GradSource(int p, int t);

    private static double[] Grad(int p, int t, int n) => TestData.NormalDoubles(1000 * p + t, n, std: 0.5 + 0.3 * t);

    /// <summary>torch.optim.AdamW (amsgrad off, maximize off): per-parameter state, lazily created with step 0.</summary>
    private sealed class AdamWTwin(double lr, double b1, double b2, double eps, double wd)
    {
        private readonly Dictionary<int, (double[] m, double[] v, int step)> _state = new();
        public void Step(int index, double[] p, double[]? g)
        {
            if (g is null) return;
            if (!_state.TryGetValue(index, out var s)) s = (new double[p.Length], new double[p.Length], 0);
            s.step++;
            for (int i = 0; i < p.Length; i++)
            {
                p[i] *= 1 - lr * wd;
                s.m[i] = b1 * s.m[i] + (1 - b1) * g[i];
                s.v[i] = b2 * s.v[i] + (1 - b2) * g[i] * g[i];
                double bc1 = 1 - Math.Pow(b1, s.step), bc2 = 1 - Math.Pow(b2, s.step);
                double denom = Math.Sqrt(s.v[i]) / Math.Sqrt(bc2) + eps;
                p[i] -= lr / bc1 * s.m[i] / denom;
            }
            _state[index] = s;
        }
    }

    /// <summary>torch.optim.SGD: d = g + λp; b = d (first) or μb + (1−τ)d; d = d + μb (nesterov) or b; p −= lr·d.</summary>
    private sealed class SgdTwin(double lr, double mu, double tau, double wd, bool nesterov)
    {
        private readonly Dictionary<int, double[]> _buf = new();
        public void Step(int index, double[] p, double[]? g)
        {
            if (g is null) return;
            var d = new double[p.Length];
            for (int i = 0; i < p.Length; i++) d[i] = g[i] + wd * p[i];
            if (mu != 0)
            {
                if (!_buf.TryGetValue(index, out var b)) _buf[index] = b = (double[])d.Clone();
                else for (int i = 0; i < p.Length; i++) b[i] = mu * b[i] + (1 - tau) * d[i];
                for (int i = 0; i < p.Length; i++) d[i] = nesterov ? d[i] + mu * b[i] : b[i];
            }
            for (int i = 0; i < p.Length; i++) p[i] -= lr * d[i];
        }
    }

    /// <summary>Runs the optimizer and its twin side by side over <see cref="Steps"/> steps and compares after each.</summary>
    private static void RunAgainstTwin(Func<List<(string, Tensor)>, Optimizer> make, Action<int, double[], double[]?> twinStep,
        Func<int, int, bool> hasGrad, double atol)
    {
        int[] sizes = [5, 17, 1];
        var ps = sizes.Select((n, k) => TestData.Uniform(50 + k, -1, 1, n)).ToList();
        foreach (var p in ps) p.RequiresGrad = true;
        var twin = ps.Select(p => p.Data.Select(v => (double)v).ToArray()).ToList();
        var opt = make(ps.Select((p, k) => ($"p{k}", p)).ToList());
        for (int t = 1; t <= Steps; t++)
        {
            for (int k = 0; k < ps.Count; k++)
            {
                var g = hasGrad(k, t) ? Grad(k, t, sizes[k]) : null;
                ps[k].Grad = g is null ? null : new Tensor(g.Select(x => (float)x).ToArray(), sizes[k]);
                // The twin sees the same float32-rounded gradient.
                twinStep(k, twin[k], g?.Select(x => (double)(float)x).ToArray());
            }
            opt.Step();
            for (int k = 0; k < ps.Count; k++)
                TestData.AssertClose(twin[k], ps[k].Data, atol, 0, $"parameter p{k} after step {t}");
        }
        Assert.Equal(Steps, opt.StepCount);
    }

    public static TheoryData<float, float, float, float, float> AdamWSettings() => new()
    {
        // lr, beta1, beta2, eps, weight decay
        { 1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f },
        { 1e-3f, 0.9f, 0.999f, 1e-8f, 0f },
        { 5e-2f, 0.8f, 0.95f, 1e-3f, 0.1f },
        { 1e-1f, 0f, 0.5f, 1e-6f, 0.01f },
    };

    // Parameters are O(1) and each step moves them by ≲ lr; float32 arithmetic on O(1) numbers keeps the
    // per-step error to a few 1e-7, so 2e-6 over six steps; any algorithmic slip (bias correction, decay
    // order, ε placement) moves them by ≥ 1e-4.
    private const double Atol = 2e-6;

    [Theory]
    [InlineData(37)]
    [InlineData(13)]
    [InlineData(259)]
    public void AdamWVectorLanesAndScalarTailRoundAlike(int length)
    {
        // Values and gradients repeat with period 11, so elements in the vectorized body and in the scalar tail see
        // the same inputs: every step must leave them bitwise equal (a fused multiply-add or another order in one
        // of the two paths shows in the last bits).
        const int Period = 11;
        var rng = new Random(length);
        var values = Enumerable.Range(0, Period).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var p = new Tensor(Enumerable.Range(0, length).Select(i => values[i % Period]).ToArray(), length) { RequiresGrad = true };
        var opt = new AdamW([("p", p)], 3e-3f, 0.9f, 0.999f, 1e-8f, 0.05f);
        for (int step = 1; step <= 12; step++)
        {
            var grads = Enumerable.Range(0, Period).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            p.Grad = new Tensor(Enumerable.Range(0, length).Select(i => grads[i % Period]).ToArray(), length);
            opt.Step();
            for (int i = Period; i < length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(p.Data[i]) == BitConverter.SingleToInt32Bits(p.Data[i % Period]),
                    $"step {step}, element {i}: {p.Data[i]:R} vs element {i % Period}: {p.Data[i % Period]:R}");
        }
    }

    [Theory, MemberData(nameof(AdamWSettings))]
    public void AdamWMatchesTorchAlgorithm(float lr, float b1, float b2, float eps, float wd)
    {
        var twin = new AdamWTwin(lr, b1, b2, eps, wd);
        RunAgainstTwin(ps => new AdamW(ps, lr, b1, b2, eps, wd), twin.Step, (_, _) => true, Atol);
    }

    [Fact]
    public void AdamWSkipsParametersWithoutGradientAndKeepsPerParameterStepCounts()
    {
        // p1 gets no gradient in steps 1 and 2 (as torch, it is untouched — not even decayed — and its
        // bias correction starts at its own first step); p2 misses step 4.
        var twin = new AdamWTwin(1e-2, 0.9, 0.999, 1e-8, 0.05);
        RunAgainstTwin(ps => new AdamW(ps, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f), twin.Step,
            (k, t) => !(k == 1 && t <= 2) && !(k == 2 && t == 4), Atol);
    }

    [Fact]
    public void AdamWDefaultsAreTorchDefaults()
    {
        var opt = new AdamW([("p", Tensor.Ones(1))]);
        Assert.Equal(1e-3f, opt.LearningRate);
        Assert.Equal(0.9f, opt.Beta1);
        Assert.Equal(0.999f, opt.Beta2);
        Assert.Equal(1e-8f, opt.Eps);
        Assert.Equal(1e-2f, opt.WeightDecay);
    }

    public static TheoryData<float, float, float, float, bool> SgdSettings() => new()
    {
        // lr, momentum, dampening, weight decay, nesterov
        { 0.1f, 0f, 0f, 0f, false },
        { 0.1f, 0f, 0f, 0.01f, false },
        { 0.05f, 0.9f, 0f, 0f, false },
        { 0.05f, 0.9f, 0.3f, 0.01f, false },
        { 0.05f, 0.9f, 0f, 0f, true },
        { 0.02f, 0.5f, 0f, 0.1f, true },
    };

    [Theory, MemberData(nameof(SgdSettings))]
    public void SgdMatchesTorchAlgorithm(float lr, float mu, float tau, float wd, bool nesterov)
    {
        var twin = new SgdTwin(lr, mu, tau, wd, nesterov);
        RunAgainstTwin(ps => new Sgd(ps, lr, mu, tau, wd, nesterov), twin.Step, (_, _) => true, Atol);
    }

    [Theory]
    [InlineData(0.9f, 0.2f, false)]
    [InlineData(0.9f, 0f, true)]
    public void SgdSkipsParametersWithoutGradient(float mu, float tau, bool nesterov)
    {
        var twin = new SgdTwin(0.05, mu, tau, 0.01, nesterov);
        RunAgainstTwin(ps => new Sgd(ps, 0.05f, mu, tau, 0.01f, nesterov), twin.Step,
            (k, t) => !(k == 0 && t <= 2) && !(k == 1 && t == 3), Atol);
    }

    [Fact]
    public void ParameterWithNullGradIsBitwiseUnchanged()
    {
        var p = TestData.Uniform(1, -1, 1, 4);
        var before = (float[])p.Data.Clone();
        var adam = new AdamW([("p", p)], weightDecay: 0.5f);
        var sgd = new Sgd([("p", p)], 0.1f, momentum: 0.9f, weightDecay: 0.5f);
        adam.Step(); sgd.Step();
        Assert.Equal(before, p.Data);
    }

    [Fact]
    public void ZeroGradClearsGradients()
    {
        var p = Tensor.Ones(3); p.Grad = Tensor.Ones(3);
        new Sgd([("p", p)], 0.1f).ZeroGrad();
        Assert.Null(p.Grad);
    }

    [Fact]
    public void InvalidSettingsThrow()
    {
        Assert.Throws<ArgumentException>(() => new Sgd([("p", Tensor.Ones(1))], 0.1f, momentum: 0f, nesterov: true));
        Assert.Throws<ArgumentException>(() => new Sgd([("p", Tensor.Ones(1))], 0.1f, momentum: 0.9f, dampening: 0.1f, nesterov: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sgd([("p", Tensor.Ones(1))], -0.1f));
    }

    [Fact]
    public void AdamWStateRoundTripContinuesIdentically()
    {
        var a = TestData.Uniform(2, -1, 1, 6); var b = a.Clone();
        var optA = new AdamW([("w", a)], 1e-2f);
        for (int t = 1; t <= 3; t++) { a.Grad = new Tensor(TestData.NormalFloats(t, 6), 6); optA.Step(); }
        b.Data.AsSpan().Clear(); a.Data.CopyTo(b.Data, 0);
        var optB = new AdamW([("w", b)], 1e-2f);
        optB.LoadStateDict(optA.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone()), optA.StepCount);
        for (int t = 4; t <= 5; t++)
        {
            var g = new Tensor(TestData.NormalFloats(t, 6), 6);
            a.Grad = g; b.Grad = g.Clone();
            optA.Step(); optB.Step();
        }
        Assert.Equal(a.Data, b.Data);
    }
}
