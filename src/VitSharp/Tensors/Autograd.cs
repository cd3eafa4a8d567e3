namespace VitSharp;

/// <summary>A recorded op: its inputs and the function that pushes the output's gradient into theirs.</summary>
internal sealed class Node
{
    public readonly Tensor[] Inputs;
    public readonly Action<Tensor> Backward;
    public readonly string Name;

    public Node(string name, Tensor[] inputs, Action<Tensor> backward)
    {
        Name = name;
        Inputs = inputs;
        Backward = backward;
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
    internal static bool Needs(Tensor[] xs)
    {
        if (!IsEnabled) return false;
        foreach (var x in xs) if (x.RequiresGrad) return true;
        return false;
    }

    /// <summary>Attaches a backward node to <paramref name="output"/> when any input requires a gradient.</summary>
    internal static Tensor Record(Tensor output, string name, Tensor[] inputs, Action<Tensor> backward)
    {
        OpProfiler.Forward(name);
        if (!Needs(inputs)) return output;
        output.RequiresGrad = true;
        output.Creator = new Node(name, inputs, backward);
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
            var inputs = t.Creator?.Inputs;
            if (inputs != null && next < inputs.Length)
            {
                stack.Push((t, next + 1));
                var child = inputs[next];
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
                node.Backward(t);
                OpProfiler.Backward(node.Name, start);
            }
            // Release the graph and non-leaf gradients as in PyTorch (retain_graph=False); a pooled
            // gradient goes back to the pool at once, which lowers the peak memory of a step.
            t.Creator = null;
            t.Grad = null;
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
