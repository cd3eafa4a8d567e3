namespace VitSharp.Tests.Autograd;

/// <summary>
/// Finite-difference gradient checker for float32 ops.
/// </summary>
/// <remarks>
/// <para>The checked scalar is L(x) = Σ f(x)·R with a fixed random R (seeded, N(0,1)); its analytic gradient is
/// what <c>f(x).Backward(R)</c> accumulates into the inputs' <see cref="Tensor.Grad"/> (the seed gradient R is
/// exactly ∂L/∂f). The numeric gradient is the central difference (L(x+h·eᵢ) − L(x−h·eᵢ)) / (h₊ + h₋),
/// where the perturbed value is rounded to float32 and h₊, h₋ are the steps that were actually taken, and L is
/// accumulated in float64 from the float32 outputs (so only f's own float32 rounding adds noise).</para>
/// <para>Tolerance, element by element: |a − n| ≤ rtol·|n| + rtol/10·max|n| + noise, with rtol = 1e-2.
/// <list type="bullet">
/// <item>rtol·|n| absorbs the O(h²·f‴) truncation error of the central difference (≈1e-5 relative for
/// smooth ops with h = 1e-2 on O(1) inputs) and float32 rounding of the analytic gradient, with ~100× margin;
/// any backward that is wrong by a factor, a sign or a missing term is off by far more than 1%.</item>
/// <item>rtol/10·max|n| keeps entries that are tiny relative to the others (near-cancellations) from failing
/// on noise, while still checking them to 0.1% of the input's largest gradient.</item>
/// <item>noise = 16·ε₃₂·Σ|f(x)·R| / h bounds the float32 rounding of L propagated through the difference
/// quotient (each output carries a few ulps of relative error).</item>
/// </list></para>
/// The checker also fails when the numeric gradient of a checked input is identically zero (the test would
/// then check nothing), unless <c>allowZero</c> is set.
/// </remarks>
public static class GradCheck
{
    public const double DefaultStep = 1e-2;
    public const double DefaultRtol = 1e-2;

    public sealed record Result(int Input, int Element, double Analytic, double Numeric, double Allowed);

    /// <summary>Returns every element where analytic and numeric gradients disagree (empty when they agree).</summary>
    public static List<Result> Compare(Func<Tensor[], Tensor> f, Tensor[] inputs, bool[]? wrt = null,
        double h = DefaultStep, double rtol = DefaultRtol, int seed = 12345, bool allowZero = false)
    {
        wrt ??= inputs.Select(_ => true).ToArray();
        var originalRequiresGrad = inputs.Select(t => t.RequiresGrad).ToArray();
        try { return CompareCore(f, inputs, wrt, h, rtol, seed, allowZero); }
        finally
        {
            // Inputs may be a model's parameters: leave them as they were found.
            for (int j = 0; j < inputs.Length; j++) { inputs[j].RequiresGrad = originalRequiresGrad[j]; inputs[j].Grad = null; }
        }
    }

    private static List<Result> CompareCore(Func<Tensor[], Tensor> f, Tensor[] inputs, bool[] wrt,
        double h, double rtol, int seed, bool allowZero)
    {
        // Analytic pass.
        for (int j = 0; j < inputs.Length; j++) { inputs[j].Grad = null; inputs[j].RequiresGrad = wrt[j]; }
        var y = f(inputs);
        var r = TestData.NormalFloats(seed, y.Size);
        var rT = new Tensor(r, y.Shape);
        double noise = 16 * Math.Pow(2, -23) * Enumerable.Range(0, y.Size).Sum(i => Math.Abs((double)y.Data[i] * r[i])) / h;
        y.Backward(rT);
        var analytic = inputs.Select(t => t.Grad is null ? new float[t.Size] : (float[])t.Grad.Data.Clone()).ToArray();
        foreach (var t in inputs) { t.Grad = null; t.RequiresGrad = false; }

        double Loss()
        {
            using var _ = VitSharp.Autograd.NoGrad();
            var o = f(inputs);
            Assert.Equal(r.Length, o.Size);
            double s = 0;
            for (int i = 0; i < o.Size; i++) s += (double)o.Data[i] * r[i];
            return s;
        }

        var failures = new List<Result>();
        for (int j = 0; j < inputs.Length; j++)
        {
            if (!wrt[j]) continue;
            var x = inputs[j].Data;
            var num = new double[x.Length];
            for (int i = 0; i < x.Length; i++)
            {
                float v = x[i];
                float xp = (float)(v + h), xm = (float)(v - h);
                x[i] = xp; double lp = Loss();
                x[i] = xm; double lm = Loss();
                x[i] = v;
                num[i] = (lp - lm) / ((double)xp - xm);
            }
            double gmax = num.Length == 0 ? 0 : num.Max(Math.Abs);
            if (!allowZero && num.Length > 0)
                Assert.True(gmax > 0, $"input {j}: the numeric gradient is identically zero; the check would be vacuous");
            for (int i = 0; i < x.Length; i++)
            {
                double allowed = rtol * Math.Abs(num[i]) + rtol / 10 * gmax + noise;
                double a = analytic[j][i];
                if (!(Math.Abs(a - num[i]) <= allowed)) failures.Add(new Result(j, i, a, num[i], allowed));
            }
        }
        return failures;
    }

    /// <summary>Asserts that the analytic gradient of every input marked in <paramref name="wrt"/> matches finite differences.</summary>
    public static void Verify(Func<Tensor[], Tensor> f, Tensor[] inputs, bool[]? wrt = null,
        double h = DefaultStep, double rtol = DefaultRtol, int seed = 12345, bool allowZero = false)
    {
        var failures = Compare(f, inputs, wrt, h, rtol, seed, allowZero);
        if (failures.Count > 0)
        {
            var lines = failures.Take(8).Select(e => $"  input {e.Input}[{e.Element}]: analytic {e.Analytic:G6}, numeric {e.Numeric:G6} (allowed |diff| {e.Allowed:E2})");
            Assert.Fail($"{failures.Count} gradient element(s) disagree with finite differences:\n{string.Join("\n", lines)}");
        }
    }

    /// <summary>Convenience overload: every input is checked.</summary>
    public static void Verify(Func<Tensor[], Tensor> f, params Tensor[] inputs) => Verify(f, inputs, null);
}
