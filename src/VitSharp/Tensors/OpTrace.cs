using VitSharp.Kernels;

namespace VitSharp;

/// <summary>
/// An op's settings beyond its tensor inputs, as it reports them to an <see cref="IOpTracer"/> (which fields mean what is
/// per op: see the call in each op; ONNX export, <c>Export/OnnxGraphBuilder.cs</c>, reads them).
/// </summary>
internal sealed class OpAttributes
{
    /// <summary>No settings.</summary>
    public static readonly OpAttributes None = new();

    /// <summary>Integer settings (dimensions, sizes, groups).</summary>
    public int[] Ints = [];
    /// <summary>A constant index map (gathers).</summary>
    public int[]? Index;
    /// <summary>Constant values (Swin's shift mask).</summary>
    public float[]? Values;
    /// <summary>First scalar setting (epsilon, scale, maximum).</summary>
    public float Scalar;
    /// <summary>Second scalar setting (affine shift).</summary>
    public float Scalar2;
    /// <summary>First flag (matmul's transA, reductions' keepDim, batch norm's batch statistics).</summary>
    public bool Flag;
    /// <summary>Second flag (matmul's transB).</summary>
    public bool Flag2;
    /// <summary>The sliding window (convolution, unfold, fold, pooling).</summary>
    public Window2d Window;
}

/// <summary>Observes every op a forward pass runs, in order, whether or not autograd records it (ONNX export traces a model this way).</summary>
internal interface IOpTracer
{
    /// <summary>
    /// An op named <paramref name="name"/> (the name autograd records it under) produced <paramref name="output"/> from
    /// <paramref name="inputs"/> (null where an optional input is absent, in the op's own order).
    /// </summary>
    void Op(string name, Tensor output, Tensor?[] inputs, OpAttributes attributes);
}

/// <summary>The tracer of the current thread: ops report to it when set (a null check otherwise).</summary>
internal static class OpTrace
{
    [ThreadStatic] private static IOpTracer? t_current;

    /// <summary>This thread's tracer, or null.</summary>
    public static IOpTracer? Current => t_current;

    /// <summary>Sets <paramref name="tracer"/> as this thread's tracer until the returned scope is disposed.</summary>
    public static Scope Begin(IOpTracer tracer)
    {
        var previous = t_current;
        t_current = tracer;
        return new Scope(previous);
    }

    /// <summary>Restores the previous tracer.</summary>
    public readonly struct Scope(IOpTracer? previous) : IDisposable
    {
        /// <summary>Restores the previous tracer.</summary>
        public void Dispose() => t_current = previous;
    }
}
