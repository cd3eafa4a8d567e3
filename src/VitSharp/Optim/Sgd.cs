namespace VitSharp.Optim;

/// <summary>
/// SGD exactly as torch.optim.SGD: g ← g + λp; with momentum μ: b ← g (first step) or μb + (1−dampening)g,
/// g ← g + μb (nesterov) or b; p ← p − lr·g.
/// </summary>
public sealed class Sgd : Optimizer
{
    private readonly float[]?[] _buf;

    /// <summary>Momentum μ (0 = plain SGD).</summary>
    public float Momentum { get; }
    /// <summary>Dampening of the momentum.</summary>
    public float Dampening { get; }
    /// <summary>Nesterov momentum.</summary>
    public bool Nesterov { get; }
    /// <summary>L2 weight decay λ (added to the gradient).</summary>
    public float WeightDecay { get; set; }

    /// <summary>Creates the optimizer.</summary>
    public Sgd(IEnumerable<(string Name, Tensor Param)> parameters, float lr, float momentum = 0f,
        float dampening = 0f, float weightDecay = 0f, bool nesterov = false) : base(parameters, lr)
    {
        if (nesterov && (momentum <= 0 || dampening != 0))
            throw new ArgumentException("Nesterov momentum requires a momentum > 0 and zero dampening");
        Momentum = momentum; Dampening = dampening; WeightDecay = weightDecay; Nesterov = nesterov;
        _buf = new float[Params.Count][];
    }

    /// <inheritdoc/>
    protected override void Update(int index, string name, Span<float> p, ReadOnlySpan<float> grad)
    {
        float lr = LearningRate, wd = WeightDecay, mu = Momentum;
        var buf = _buf[index];
        bool first = false;
        if (mu != 0 && buf is null) { buf = _buf[index] = new float[p.Length]; first = true; }
        for (int i = 0; i < p.Length; i++)
        {
            float g = grad[i] + wd * p[i];
            if (mu != 0)
            {
                float b = buf![i] = first ? g : mu * buf[i] + (1 - Dampening) * g;
                g = Nesterov ? g + mu * b : b;
            }
            p[i] -= lr * g;
        }
    }

    /// <inheritdoc/>
    public override Dictionary<string, Tensor> StateDict()
    {
        var sd = new Dictionary<string, Tensor>();
        for (int i = 0; i < Params.Count; i++)
            if (_buf[i] is { } b) sd["momentum_buffer." + Params[i].Name] = new Tensor(b, Params[i].Param.Shape);
        return sd;
    }

    /// <inheritdoc/>
    public override void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        for (int i = 0; i < Params.Count; i++)
        {
            string key = "momentum_buffer." + Params[i].Name;
            if (!state.ContainsKey(key)) { _buf[i] = null; continue; }
            _buf[i] = new float[Params[i].Param.Size];
            AdamW.Load(state, key, _buf[i]!);
        }
        StepCount = stepCount;
    }
}
