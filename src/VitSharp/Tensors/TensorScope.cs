namespace VitSharp;

/// <summary>
/// A pool of float arrays keyed by exact length, one per thread (a scope rents and returns on its own thread, so
/// there is no contention and no miss when two threads step at once). Steady-state training steps allocate the
/// same sizes every step, so a <see cref="TensorScope"/> can take every activation, gradient and kernel scratch
/// buffer from here and give it back when the step ends.
/// </summary>
/// <remarks>
/// A thread keeps what it returned: a program that runs scopes on many threads (a server answering on the thread
/// pool, say) holds up to one step's worth of arrays per such thread; <see cref="Clear"/> lets go of all of them.
/// </remarks>
public static class TensorPool
{
    [ThreadStatic] private static Dictionary<int, Stack<float[]>>? t_free;
    [ThreadStatic] private static int t_generation;
    private static int s_generation;
    private static long _pooledElements;

    private static Dictionary<int, Stack<float[]>> Free()
    {
        int generation = Volatile.Read(ref s_generation);
        if (t_free is null || t_generation != generation)
        {
            t_free = new Dictionary<int, Stack<float[]>>();
            t_generation = generation;
        }
        return t_free;
    }

    /// <summary>An array of exactly <paramref name="length"/> elements, from this thread's pool when one is free. Its contents are arbitrary.</summary>
    public static float[] Rent(int length)
    {
        if (length == 0) return [];
        if (Free().TryGetValue(length, out var stack) && stack.TryPop(out var a))
        {
            Interlocked.Add(ref _pooledElements, -length);
            return a;
        }
        return GC.AllocateUninitializedArray<float>(length);
    }

    /// <summary>Gives an array back for reuse (to this thread's pool).</summary>
    public static void Return(float[] array)
    {
        if (array.Length == 0) return;
        var free = Free();
        if (!free.TryGetValue(array.Length, out var stack)) free[array.Length] = stack = new Stack<float[]>();
        stack.Push(array);
        Interlocked.Add(ref _pooledElements, array.Length);
    }

    /// <summary>Bytes currently held by the pools of all threads (free arrays only).</summary>
    public static long PooledBytes => Interlocked.Read(ref _pooledElements) * sizeof(float);

    /// <summary>Drops every free array of every thread (the calling thread's at once, another thread's at its next rent or return; the GC reclaims them).</summary>
    public static void Clear()
    {
        t_free = null;   // this thread's at once
        Interlocked.Increment(ref s_generation);
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
/// <remarks>
/// A scope begun with <c>recycleTensors: true</c> also reuses the tensor objects themselves (and the scope object):
/// the next scope on the thread hands the released tensors out again as new op results, so that a steady-state
/// training step allocates no managed memory at all. The price is the check: a reference to a released tensor kept
/// past the end of such a scope (without <see cref="Keep"/>) later shows another op's result instead of throwing.
/// Use it where the loop owns every tensor of the step (as <c>vit train</c> and <c>vit bench</c> do).
/// </remarks>
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
    // Released tensor objects by rank and disposed scopes, for recycling scopes on this thread.
    [ThreadStatic] private static Stack<Tensor>[]? t_freeTensors;
    [ThreadStatic] private static Stack<TensorScope>? t_freeScopes;

    private TensorScope? _parent;
    private bool _recycle;
    private readonly List<Tensor> _tensors = new();
    private readonly HashSet<float[]> _arrays = new(ReferenceEqualityComparer.Instance);
    private HashSet<float[]>? _kept;
    private bool _disposed;

    private TensorScope(TensorScope? parent, bool recycle) { _parent = parent; _recycle = recycle; }

    /// <summary>Starts a scope on this thread; dispose it to release its tensors.</summary>
    public static TensorScope Begin() => Begin(recycleTensors: false);

    /// <summary>
    /// Starts a scope on this thread; with <paramref name="recycleTensors"/> (or inside a recycling scope) the tensor
    /// objects it releases are reused by later scopes on this thread (see the remarks on <see cref="TensorScope"/>).
    /// </summary>
    public static TensorScope Begin(bool recycleTensors)
    {
        var parent = _current;
        bool recycle = recycleTensors || parent is { _recycle: true };
        TensorScope scope;
        if (recycle && t_freeScopes is { Count: > 0 } free)
        {
            scope = free.Pop();
            scope._parent = parent;
            scope._recycle = true;
            scope._disposed = false;
        }
        else scope = new TensorScope(parent, recycle);
        return _current = scope;
    }

    /// <summary>The innermost scope of this thread, if any.</summary>
    public static TensorScope? Current => _current;

    /// <summary>Whether this scope reuses the tensor objects it releases.</summary>
    public bool RecyclesTensors => _recycle;

    /// <summary>A released tensor object of the given rank to reuse for a new op result, when the current scope recycles.</summary>
    internal static Tensor? Reuse(int rank)
    {
        if (_current is not { _recycle: true } || t_freeTensors is not { } free || rank >= free.Length) return null;
        return free[rank].TryPop(out var t) ? t : null;
    }

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
        Stack<Tensor>[]? free = null;
        if (_recycle)
        {
            free = t_freeTensors ??= new Stack<Tensor>[Dims.MaxRank + 1];
            for (int r = 0; r < free.Length; r++) free[r] ??= new Stack<Tensor>();
        }
        foreach (var t in _tensors)
        {
            bool recycle = free is not null && t.Rank < free.Length;
            t.Release(dropStorage: recycle);
            if (recycle) free![t.Rank].Push(t);
        }
        foreach (var a in _arrays)
            if (_kept is null || !_kept.Contains(a)) TensorPool.Return(a);
        _tensors.Clear();
        _arrays.Clear();
        _kept?.Clear();
        if (_current == this) _current = _parent;
        if (_recycle)
        {
            _parent = null;
            (t_freeScopes ??= new Stack<TensorScope>()).Push(this);
        }
    }
}
