namespace VitSharp.Export;

/// <summary>One op of a traced forward pass: what it produced, from what, with which settings, in the order it ran.</summary>
internal sealed record TracedOp(string Name, Tensor Output, Tensor?[] Inputs, OpAttributes Attributes);

/// <summary>A forward pass as the ops reported it (<see cref="IOpTracer"/>): the input, the ops in order, the output.</summary>
internal sealed class OpRecorder : IOpTracer
{
    /// <summary>The ops in the order they ran.</summary>
    public List<TracedOp> Ops { get; } = new();

    /// <inheritdoc/>
    public void Op(string name, Tensor output, Tensor?[] inputs, OpAttributes attributes) =>
        Ops.Add(new TracedOp(name, output, inputs, attributes));
}

/// <summary>A traced forward pass: the images it ran on, every op, and the model's output.</summary>
internal sealed record Trace(int Batch, Tensor Input, Tensor Output, List<TracedOp> Ops);
