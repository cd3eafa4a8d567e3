namespace VitSharp.NN;

/// <summary>
/// Stochastic depth as timm's <c>timm.layers.DropPath</c>: in training mode each sample's whole input (a residual
/// branch) is zeroed with probability <see cref="P"/> and the kept samples are scaled by 1/(1 − P) (timm's
/// <c>scale_by_keep</c>); identity in evaluation mode or when P is 0. x [B, …] → the same shape. Draws from the
/// dropout generator of the thread (<see cref="Dropout.Seed"/>). No parameters.
/// </summary>
public sealed class DropPath : Module
{
    /// <summary>Drop probability per sample.</summary>
    public float P { get; }

    /// <summary>Creates the layer.</summary>
    public DropPath(float p = 0f)
    {
        if (!(p >= 0 && p <= 1)) throw new ArgumentOutOfRangeException(nameof(p), $"drop path probability {p} is outside [0, 1]");
        P = p;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor input)
    {
        if (!Training || P == 0) return input;
        int b = input.Dim(0);
        float keep = 1 - P;
        var mask = TensorScope.Allocate(b, clear: false);   // scoped: no allocation per step
        var rng = Dropout.Rng;
        for (int i = 0; i < b; i++) mask[i] = rng.NextSingle() < keep ? (keep > 0 ? 1f / keep : 0f) : 0f;
        Span<int> shape = stackalloc int[input.Rank];
        shape.Fill(1);
        shape[0] = b;
        return input * Tensor.Scoped(mask, shape);
    }
}
