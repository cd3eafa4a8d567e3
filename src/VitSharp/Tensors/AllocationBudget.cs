namespace VitSharp;

/// <summary>A tensor allocation went over the budget an <see cref="AllocationBudget"/> scope set (nothing was allocated for it).</summary>
public sealed class AllocationBudgetException(long requested, long used, long limit)
    : Exception($"a tensor of {requested:N0} elements would bring the total to {used + requested:N0}, over the budget of {limit:N0}")
{
    /// <summary>Elements of the refused tensor.</summary>
    public long Requested { get; } = requested;
    /// <summary>Elements allocated in the scope before it.</summary>
    public long Used { get; } = used;
    /// <summary>The scope's budget.</summary>
    public long Limit { get; } = limit;
}

/// <summary>
/// A per-thread budget of tensor elements: inside <see cref="Begin"/>, every tensor created with a shape
/// (<see cref="Tensor(int[])"/>, <see cref="Tensor.Zeros"/>, <see cref="Tensor.RandN"/>, …) is counted before its storage is
/// allocated, and one that would exceed the budget throws an <see cref="AllocationBudgetException"/> instead. Used to
/// build a model from an untrusted configuration (a checkpoint's or fixture's kwargs) no larger than the weights that
/// come with it: validate before you allocate.
/// </summary>
public static class AllocationBudget
{
    [ThreadStatic] private static long _limit;
    [ThreadStatic] private static long _used;
    [ThreadStatic] private static bool _active;

    /// <summary>Starts a budget of <paramref name="elements"/> on this thread until the returned scope is disposed (scopes nest: the inner one applies).</summary>
    public static IDisposable Begin(long elements)
    {
        var scope = new Scope(_active, _limit, _used);
        _active = true;
        _limit = elements;
        _used = 0;
        return scope;
    }

    /// <summary>Elements counted in the current scope.</summary>
    public static long Used => _used;

    internal static void Charge(long elements)
    {
        if (!_active) return;
        if (elements > _limit - _used) throw new AllocationBudgetException(elements, _used, _limit);
        _used += elements;
    }

    private sealed class Scope(bool active, long limit, long used) : IDisposable
    {
        private bool _disposed;
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _active = active;
            _limit = limit;
            _used = used;
        }
    }
}
