namespace VitSharp.NN;

/// <summary>
/// The softmax probabilities of an attention layer as a module of their own (as vit-pytorch's <c>attend</c>), so that
/// the one hook mechanism (<see cref="Module.RegisterForwardHook"/>) sees them: the layer passes its probabilities
/// [B, H, N, M] (rows: queries, columns: keys; each row sums to 1; before attention dropout) through this child
/// (key <c>attend</c>, no parameters), and a hook on it receives them as its output. The forward is the identity —
/// the softmax itself runs inside the fused attention kernel, which writes the probabilities out only while this
/// module has hooks, so an unobserved layer pays nothing for it. <see cref="Inspection.Recorder"/> hooks these.
/// </summary>
/// <example>
/// <code>
/// using var handle = attention.Attend.RegisterForwardHook((_, _, probs) => maps.Add(probs.Clone()));
/// </code>
/// </example>
public sealed class AttentionProbabilities : Module
{
    private Action<Tensor>? _forward;
    private Dropout? _dropout;

    /// <summary>Passes the probabilities on unchanged (the hooks see them).</summary>
    protected override Tensor ForwardCore(Tensor probabilities) => probabilities;

    /// <summary>
    /// What the parent layer hands to the fused kernel's probability callback (<see cref="F.MultiHeadAttention"/>) on its
    /// path without attention dropout: while this module or the layer's attention <paramref name="dropout"/> (an identity
    /// there) has hooks, a callback that runs both on the probabilities, as the unfused path does; else null (the kernel
    /// then keeps the probabilities to itself).
    /// </summary>
    internal Action<Tensor>? WhenObserved(Dropout? dropout)
    {
        if (!HasForwardHooks && dropout is not { HasForwardHooks: true }) return null;
        _dropout = dropout;
        // Captures only this (a lambda capturing the parameter would allocate its closure on every call, hooked or not).
        return _forward ??= p => { var a = Forward(p); _dropout?.Forward(a); };
    }
}
