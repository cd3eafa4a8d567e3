namespace VitSharp;

/// <summary>
/// A recorded op: its inputs and how it pushes the output's gradient into theirs. Ops on the training path record a
/// <see cref="Node{TState}"/> (a static backward function over a state struct, pooled per thread: no allocation in
/// the steady state); others record a closure (<see cref="ClosureNode"/>).
/// </summary>
internal abstract class Node
{
    public string Name = "";
    private Tensor[] _inputs = [];

    /// <summary>How many inputs the op had.</summary>
    public int InputCount { get; private set; }

    /// <summary>The op's inputs (those that were not null).</summary>
    public ReadOnlySpan<Tensor> Inputs => _inputs.AsSpan(0, InputCount);

    /// <summary>Pushes <paramref name="output"/>'s gradient into the inputs' gradients.</summary>
    public abstract void RunBackward(Tensor output);

    /// <summary>Called once the node is off the tape (after its backward ran): drops references, and pooled nodes go back to their pool.</summary>
    public virtual void Recycle() { }

    /// <summary>Copies the non-null inputs into the node, reusing its array when it is long enough (a pooled node serves
    /// ops of one state type, whose input counts may differ: a Linear with and without bias).</summary>
    protected void SetInputs(ReadOnlySpan<Tensor?> inputs)
    {
        int count = 0;
        foreach (var t in inputs) if (t is not null) count++;
        if (_inputs.Length < count) _inputs = new Tensor[count];
        int k = 0;
        foreach (var t in inputs) if (t is not null) _inputs[k++] = t;
        InputCount = count;
    }

    /// <summary>Takes <paramref name="inputs"/> (no nulls) as the node's inputs, without copying.</summary>
    protected void UseInputs(Tensor[] inputs)
    {
        _inputs = inputs;
        InputCount = inputs.Length;
    }

    /// <summary>Drops the references to the inputs.</summary>
    protected void ClearInputs()
    {
        Array.Clear(_inputs);
        InputCount = 0;
    }
}

/// <summary>A node whose backward is a closure (ops off the hot path).</summary>
internal sealed class ClosureNode : Node
{
    private readonly Action<Tensor> _backward;

    public ClosureNode(string name, Tensor[] inputs, Action<Tensor> backward)
    {
        Name = name;
        UseInputs(inputs);
        _backward = backward;
    }

    public override void RunBackward(Tensor output) => _backward(output);
}

/// <summary>The backward function of a <see cref="Node{TState}"/>: static (a lambda that captures nothing), all it needs is in the state.</summary>
internal delegate void BackwardFn<TState>(in TState state, Tensor output) where TState : struct;

/// <summary>A node with its op's state inline; recycled through a per-thread pool after its backward ran.</summary>
internal sealed class Node<TState> : Node where TState : struct
{
    [ThreadStatic] private static Stack<Node<TState>>? t_pool;

    public TState State;
    private BackwardFn<TState>? _backward;

    public static Node<TState> Rent(string name, ReadOnlySpan<Tensor?> inputs, in TState state, BackwardFn<TState> backward)
    {
        var node = t_pool is { Count: > 0 } pool ? pool.Pop() : new Node<TState>();
        node.Name = name;
        node.SetInputs(inputs);
        node.State = state;
        node._backward = backward;
        return node;
    }

    public override void RunBackward(Tensor output) => _backward!(in State, output);

    public override void Recycle()
    {
        State = default;
        _backward = null;
        ClearInputs();
        (t_pool ??= new Stack<Node<TState>>()).Push(this);
    }
}

/// <summary>Global switches of the autograd tape.</summary>
public static class Autograd
{
    [ThreadStatic] private static int _noGradDepth;

    /// <summary>Whether ops record backward nodes on this thread.</summary>
    public static bool IsEnabled => _noGradDepth == 0;

    /// <summary>Disables recording until the returned scope is disposed (inference).</summary>
    public static NoGradScope NoGrad() { _noGradDepth++; return new NoGradScope(); }

    /// <summary>Scope returned by <see cref="NoGrad"/>.</summary>
    public readonly struct NoGradScope : IDisposable
    {
        /// <summary>Re-enables recording.</summary>
        public void Dispose() => _noGradDepth--;
    }

    /// <summary>Whether an op over these inputs should record a node.</summary>
    internal static bool Needs(Tensor a) => IsEnabled && a.RequiresGrad;
    internal static bool Needs(Tensor a, Tensor b) => IsEnabled && (a.RequiresGrad || b.RequiresGrad);
    internal static bool Needs(ReadOnlySpan<Tensor?> xs)
    {
        if (!IsEnabled) return false;
        foreach (var x in xs) if (x is { RequiresGrad: true }) return true;
        return false;
    }

    /// <summary>Attaches a backward node to <paramref name="output"/> when any input requires a gradient.</summary>
    internal static Tensor Record(Tensor output, string name, Tensor[] inputs, Action<Tensor> backward)
    {
        OpProfiler.Forward(name);
        if (!Needs(inputs)) return output;
        output.RequiresGrad = true;
        output.Creator = new ClosureNode(name, inputs, backward);
        return output;
    }

    /// <summary>
    /// Attaches a pooled backward node when any input requires a gradient: <paramref name="backward"/> must be a static
    /// lambda (it gets everything through <paramref name="state"/>); null inputs are skipped.
    /// </summary>
    internal static Tensor Record<TState>(Tensor output, string name, ReadOnlySpan<Tensor?> inputs, in TState state, BackwardFn<TState> backward)
        where TState : struct
    {
        OpProfiler.Forward(name);
        if (!Needs(inputs)) return output;
        output.RequiresGrad = true;
        output.Creator = Node<TState>.Rent(name, inputs, state, backward);
        return output;
    }
}

public sealed partial class Tensor
{
    /// <summary>
    /// Runs reverse-mode differentiation from this tensor. A one-element tensor gets the seed gradient 1;
    /// otherwise <paramref name="gradient"/> (same shape) is required. Gradients accumulate into the
    /// <see cref="Grad"/> of leaves; the graph is released afterwards.
    /// </summary>
    public void Backward(Tensor? gradient = null)
    {
        if (!RequiresGrad) throw new InvalidOperationException("Backward() on a tensor that does not require a gradient (no parameter took part, or it was computed under NoGrad)");
        if (gradient is null && Size != 1) throw new InvalidOperationException($"Backward() without a gradient needs a one-element tensor, got shape {ShapeString(_shape)}");
        if (gradient is not null && !gradient.SameShape(this)) throw new ArgumentException($"gradient shape {ShapeString(gradient._shape)} differs from tensor shape {ShapeString(_shape)}");

        // Topological order by iterative depth-first search over creators. The three collections are this thread's,
        // reused from step to step (taken out while in use, so that a nested Backward() gets its own).
        var work = t_backwardWork ?? new BackwardWork();
        t_backwardWork = null;
        var (order, visited, stack) = (work.Order, work.Visited, work.Stack);
        stack.Push((this, 0)); visited.Add(this);
        while (stack.Count > 0)
        {
            var (t, next) = stack.Pop();
            var node = t.Creator;
            if (node is not null && next < node.InputCount)
            {
                stack.Push((t, next + 1));
                var child = node.Inputs[next];
                if (child.RequiresGrad && visited.Add(child)) stack.Push((child, 0));
            }
            else order.Add(t);
        }

        var seed = GradSpan();
        if (gradient is null) seed[0] += 1f;
        else System.Numerics.Tensors.TensorPrimitives.Add(seed, gradient.Data, seed);

        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            var node = t.Creator;
            if (node is null) continue;
            var grad = t.Grad;
            if (grad is not null)
            {
                long start = OpProfiler.Start();
                node.RunBackward(t);
                OpProfiler.Backward(node.Name, start);
            }
            // Release the graph and non-leaf gradients as in PyTorch (retain_graph=False); a pooled
            // gradient goes back to the pool at once, which lowers the peak memory of a step.
            t.Creator = null;
            t.Grad = null;
            node.Recycle();
            if (grad is not null) TensorScope.ReturnEarly(grad.Data);
        }
        order.Clear(); visited.Clear(); stack.Clear();
        t_backwardWork = work;
    }

    [ThreadStatic] private static BackwardWork? t_backwardWork;

    private sealed class BackwardWork
    {
        public readonly List<Tensor> Order = new();
        public readonly HashSet<Tensor> Visited = new(ReferenceEqualityComparer.Instance);
        public readonly Stack<(Tensor t, int next)> Stack = new();
    }
}
