using System.Collections.Concurrent;

namespace VitSharp;

/// <summary>
/// A process-wide pool of float arrays keyed by exact length. Steady-state training steps allocate the
/// same sizes every step, so a <see cref="TensorScope"/> can take every activation, gradient and
/// kernel scratch buffer from here and give it back when the step ends.
/// </summary>
public static class TensorPool
{
    private static readonly ConcurrentDictionary<int, ConcurrentBag<float[]>> Free = new();
    private static long _pooledElements;

    /// <summary>An array of exactly <paramref name="length"/> elements, from the pool when one is free. Its contents are arbitrary.</summary>
    public static float[] Rent(int length)
    {
        if (length == 0) return [];
        if (Free.TryGetValue(length, out var bag) && bag.TryTake(out var a))
        {
            Interlocked.Add(ref _pooledElements, -length);
            return a;
        }
        return GC.AllocateUninitializedArray<float>(length);
    }

    /// <summary>Gives an array back for reuse.</summary>
    public static void Return(float[] array)
    {
        if (array.Length == 0) return;
        Free.GetOrAdd(array.Length, _ => new ConcurrentBag<float[]>()).Add(array);
        Interlocked.Add(ref _pooledElements, array.Length);
    }

    /// <summary>Bytes currently held by the pool (free arrays only).</summary>
    public static long PooledBytes => Interlocked.Read(ref _pooledElements) * sizeof(float);

    /// <summary>Drops every free array (the GC reclaims them).</summary>
    public static void Clear()
    {
        Free.Clear();
        Interlocked.Exchange(ref _pooledElements, 0);
    }
}

/// <summary>
/// Scopes the memory of a unit of work (typically one training or inference step): while a scope is the
/// current one on a thread, the tensors that ops create on that thread take their storage from
/// <see cref="TensorPool"/>, and <see cref="Dispose"/> returns it. Tensors created by ops inside the scope
/// are unusable afterwards (reading their data throws <see cref="ObjectDisposedException"/>) unless
/// <see cref="Keep"/> was called on them. Parameters, their gradients and tensors created with the public
/// constructors are never pooled. Scopes nest.
/// </summary>
/// <example>
/// <code>
/// using (var scope = TensorScope.Begin())
/// {
///     var loss = F.CrossEntropy(model.Forward(images), labels);
///     loss.Backward();
///     optimizer.Step();
///     lossValue = loss.Item();
/// }
/// </code>
/// </example>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? _current;

    private readonly TensorScope? _parent;
    private readonly List<Tensor> _tensors = new();
    private readonly HashSet<float[]> _arrays = new(ReferenceEqualityComparer.Instance);
    private HashSet<float[]>? _kept;
    private bool _disposed;

    private TensorScope(TensorScope? parent) => _parent = parent;

    /// <summary>Starts a scope on this thread; dispose it to release its tensors.</summary>
    public static TensorScope Begin() => _current = new TensorScope(_current);

    /// <summary>The innermost scope of this thread, if any.</summary>
    public static TensorScope? Current => _current;

    /// <summary>Storage for a new op result: pooled (contents arbitrary unless <paramref name="clear"/>) inside a scope, a fresh zeroed array outside.</summary>
    internal static float[] Allocate(int length, bool clear)
    {
        var scope = _current;
        if (scope is null) return new float[length];
        var a = TensorPool.Rent(length);
        if (clear) Array.Clear(a);
        scope._arrays.Add(a);
        return a;
    }

    /// <summary>Returns scope-owned storage to the pool before the scope ends (a gradient that backward no longer needs).</summary>
    internal static void ReturnEarly(float[] array)
    {
        var scope = _current;
        if (scope is not null && scope._arrays.Remove(array)) TensorPool.Return(array);
    }

    /// <summary>Registers an op-created tensor so that it is marked released when the scope ends.</summary>
    internal static void Track(Tensor t) => _current?._tensors.Add(t);

    /// <summary>Keeps a tensor (and its storage) alive past the end of this scope; returns it.</summary>
    public Tensor Keep(Tensor tensor)
    {
        _tensors.Remove(tensor);
        (_kept ??= new HashSet<float[]>(ReferenceEqualityComparer.Instance)).Add(tensor.Data);
        tensor.Creator = null;
        return tensor;
    }

    /// <summary>
    /// Hands a tensor (and its storage, when this scope owns it) to the enclosing scope, which releases it when it ends:
    /// a nested scope can then free everything else it allocated (e.g. one transformer layer's intermediates in a
    /// forward pass without gradients). Like <see cref="Keep"/>, it detaches the tensor from the autograd graph.
    /// </summary>
    /// <exception cref="InvalidOperationException">This scope has no enclosing scope.</exception>
    public Tensor Handover(Tensor tensor)
    {
        var parent = _parent ?? throw new InvalidOperationException("Handover needs an enclosing TensorScope; use Keep to keep a tensor past the outermost scope");
        if (_tensors.Remove(tensor)) parent._tensors.Add(tensor);
        if (_arrays.Remove(tensor.Data)) parent._arrays.Add(tensor.Data);
        tensor.Creator = null;
        return tensor;
    }

    /// <summary>Marks the scope's tensors released and returns their storage to the pool.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _tensors) t.Release();
        foreach (var a in _arrays)
            if (_kept is null || !_kept.Contains(a)) TensorPool.Return(a);
        _tensors.Clear();
        _arrays.Clear();
        if (_current == this) _current = _parent;
    }
}
