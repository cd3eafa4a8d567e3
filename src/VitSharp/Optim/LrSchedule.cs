namespace VitSharp.Optim;

/// <summary>A learning-rate schedule: the rate for a 0-based optimizer step.</summary>
public abstract record LrSchedule
{
    /// <summary>The learning rate at <paramref name="step"/> (0-based).</summary>
    public abstract float At(long step);
}

/// <summary>
/// Linear warm-up from 0 to <see cref="PeakLr"/> over <see cref="WarmupSteps"/> steps, then cosine decay to
/// <see cref="MinLr"/> at <see cref="TotalSteps"/> (as timm's cosine scheduler with warm-up).
/// </summary>
public sealed record WarmupCosine(float PeakLr, long WarmupSteps, long TotalSteps, float MinLr = 0f) : LrSchedule
{
    /// <inheritdoc/>
    public override float At(long step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return PeakLr * (step + 1) / WarmupSteps;
        long decay = Math.Max(1, TotalSteps - WarmupSteps);
        double t = Math.Clamp((double)(step - WarmupSteps) / decay, 0, 1);
        return (float)(MinLr + 0.5 * (PeakLr - MinLr) * (1 + Math.Cos(Math.PI * t)));
    }
}

/// <summary>A constant learning rate.</summary>
public sealed record ConstantLr(float Lr) : LrSchedule
{
    /// <inheritdoc/>
    public override float At(long step) => Lr;
}

/// <summary>Multiplies the rate by <see cref="Gamma"/> every <see cref="StepSize"/> steps (torch's StepLR).</summary>
public sealed record StepLr(float Lr, long StepSize, float Gamma = 0.1f) : LrSchedule
{
    /// <inheritdoc/>
    public override float At(long step) => Lr * MathF.Pow(Gamma, step / Math.Max(1, StepSize));
}
