namespace VitSharp.Optim;

/// <summary>Base of optimizers: a list of named parameters, a learning rate and per-parameter state.</summary>
public abstract class Optimizer
{
    /// <summary>The parameters with their state_dict names.</summary>
    protected IReadOnlyList<(string Name, Tensor Param)> Params { get; }

    /// <summary>Current learning rate (schedules set it before each step).</summary>
    public float LearningRate { get; set; }

    /// <summary>Number of steps taken.</summary>
    public long StepCount { get; protected set; }

    /// <summary>Creates the optimizer over named parameters.</summary>
    protected Optimizer(IEnumerable<(string Name, Tensor Param)> parameters, float lr)
    {
        if (lr < 0) throw new ArgumentOutOfRangeException(nameof(lr), $"learning rate must be ≥ 0, got {lr}");
        Params = parameters.ToList();
        LearningRate = lr;
    }

    /// <summary>Updates every parameter that has a gradient.</summary>
    public void Step()
    {
        StepCount++;
        for (int i = 0; i < Params.Count; i++)
        {
            var (name, p) = Params[i];
            if (p.Grad is null) continue;
            Update(i, name, p.Data, p.Grad.Data);
        }
    }

    /// <summary>Updates one parameter in place from its gradient.</summary>
    protected abstract void Update(int index, string name, Span<float> param, ReadOnlySpan<float> grad);

    /// <summary>Clears the gradients of every parameter.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in Params) p.Grad = null;
    }

    /// <summary>Optimizer state (moment buffers) under "&lt;kind&gt;.&lt;param name&gt;" keys, for checkpoints.</summary>
    public abstract Dictionary<string, Tensor> StateDict();

    /// <summary>Restores state saved by <see cref="StateDict"/>.</summary>
    public abstract void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, long stepCount);
}
