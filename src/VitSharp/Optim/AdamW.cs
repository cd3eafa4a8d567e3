using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace VitSharp.Optim;

/// <summary>
/// AdamW exactly as torch.optim.AdamW: p ← p·(1 − lr·λ); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
/// </summary>
public sealed class AdamW : Optimizer
{
    private readonly float[][] _m, _v;
    // Steps taken per parameter: as torch's state['step'], a parameter's bias correction counts only the steps
    // in which it had a gradient (a parameter that first gets a gradient at global step 3 uses t = 1).
    private readonly long[] _steps;

    /// <summary>β₁.</summary>
    public float Beta1 { get; }
    /// <summary>β₂.</summary>
    public float Beta2 { get; }
    /// <summary>ε.</summary>
    public float Eps { get; }
    /// <summary>Decoupled weight decay λ.</summary>
    public float WeightDecay { get; set; }

    /// <summary>Creates the optimizer (PyTorch's defaults: lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01).</summary>
    public AdamW(IEnumerable<(string Name, Tensor Param)> parameters, float lr = 1e-3f, float beta1 = 0.9f,
        float beta2 = 0.999f, float eps = 1e-8f, float weightDecay = 1e-2f) : base(parameters, lr)
    {
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
        _m = Params.Select(p => new float[p.Param.Size]).ToArray();
        _v = Params.Select(p => new float[p.Param.Size]).ToArray();
        _steps = new long[Params.Count];
    }

    /// <inheritdoc/>
    protected override void Update(int index, string name, Span<float> p, ReadOnlySpan<float> g)
    {
        var m = _m[index]; var v = _v[index];
        float lr = LearningRate, b1 = Beta1, b2 = Beta2;
        long step = ++_steps[index];
        float bc1 = 1f - MathF.Pow(b1, step);
        float bc2 = 1f - MathF.Pow(b2, step);
        float stepSize = lr / bc1;
        float bc2Sqrt = MathF.Sqrt(bc2);
        float decay = 1f - lr * WeightDecay;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // The scalar expression below, eight lanes at a time and in the same order (no fused multiply-adds), so
            // every element rounds exactly as in the scalar loop.
            var vb1 = Vector256.Create(b1); var vb2 = Vector256.Create(b2);
            var va1 = Vector256.Create(1 - b1); var va2 = Vector256.Create(1 - b2);
            var vbc = Vector256.Create(bc2Sqrt); var veps = Vector256.Create(Eps);
            var vdecay = Vector256.Create(decay); var vstep = Vector256.Create(stepSize);
            ref float pr = ref MemoryMarshal.GetReference(p);
            ref float gr = ref MemoryMarshal.GetReference(g);
            ref float mr = ref MemoryMarshal.GetArrayDataReference(m);
            ref float vr = ref MemoryMarshal.GetArrayDataReference(v);
            for (; i <= p.Length - 8; i += 8)
            {
                var gi = Vector256.LoadUnsafe(ref gr, (nuint)i);
                var mi = vb1 * Vector256.LoadUnsafe(ref mr, (nuint)i) + va1 * gi;
                var vi = vb2 * Vector256.LoadUnsafe(ref vr, (nuint)i) + va2 * gi * gi;
                mi.StoreUnsafe(ref mr, (nuint)i);
                vi.StoreUnsafe(ref vr, (nuint)i);
                var denom = Vector256.Sqrt(vi) / vbc + veps;
                (Vector256.LoadUnsafe(ref pr, (nuint)i) * vdecay - vstep * mi / denom).StoreUnsafe(ref pr, (nuint)i);
            }
        }
        for (; i < p.Length; i++)
        {
            float gi = g[i];
            float mi = m[i] = b1 * m[i] + (1 - b1) * gi;
            float vi = v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            float denom = MathF.Sqrt(vi) / bc2Sqrt + Eps;
            p[i] = p[i] * decay - stepSize * mi / denom;
        }
    }

    /// <inheritdoc/>
    public override Dictionary<string, Tensor> StateDict()
    {
        var sd = new Dictionary<string, Tensor>();
        for (int i = 0; i < Params.Count; i++)
        {
            var shape = Params[i].Param.Shape;
            sd["exp_avg." + Params[i].Name] = new Tensor(_m[i], shape);
            sd["exp_avg_sq." + Params[i].Name] = new Tensor(_v[i], shape);
            sd["step." + Params[i].Name] = Tensor.Scalar(_steps[i]);
        }
        return sd;
    }

    /// <inheritdoc/>
    public override void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        for (int i = 0; i < Params.Count; i++)
        {
            Load(state, "exp_avg." + Params[i].Name, _m[i]);
            Load(state, "exp_avg_sq." + Params[i].Name, _v[i]);
            // Per-parameter step counts (torch's state['step']); older state without them: every step had a gradient.
            _steps[i] = state.TryGetValue("step." + Params[i].Name, out var st) ? (long)st.Data[0] : stepCount;
        }
        StepCount = stepCount;
    }

    internal static void Load(IReadOnlyDictionary<string, Tensor> state, string key, float[] dst)
    {
        if (!state.TryGetValue(key, out var t)) throw new KeyNotFoundException($"optimizer state lacks '{key}'");
        if (t.Size != dst.Length) throw new ArgumentException($"optimizer state '{key}' has {t.Size} elements, expected {dst.Length}");
        t.Data.AsSpan().CopyTo(dst);
    }
}
