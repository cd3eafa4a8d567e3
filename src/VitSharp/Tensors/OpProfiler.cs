using System.Diagnostics;

namespace VitSharp;

/// <summary>
/// A coarse per-op wall-clock profile of the calling thread: forward time is the time since the previous op
/// finished (so module glue counts toward the next op), backward time is each node's backward function.
/// Off by default; costs one branch per op when off.
/// </summary>
public static class OpProfiler
{
    [ThreadStatic] private static Dictionary<string, (double Ms, long Calls, long Bytes)>? _table;
    [ThreadStatic] private static long _last;
    [ThreadStatic] private static long _lastBytes;
    // "fwd NAME" / "bwd NAME" keys, made once per op name so that profiling itself allocates nothing per op.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, (string Fwd, string Bwd)> Keys = new();

    /// <summary>Starts (or restarts) profiling on this thread.</summary>
    public static void Enable()
    {
        _table = new Dictionary<string, (double, long, long)>();
        _last = Stopwatch.GetTimestamp();
        _lastBytes = GC.GetAllocatedBytesForCurrentThread();
    }

    /// <summary>Stops profiling and returns the table: "fwd op" / "bwd op" → (milliseconds, calls, managed bytes allocated
    /// on this thread), largest time first.</summary>
    public static IReadOnlyList<(string Op, double Ms, long Calls, long Bytes)> Disable()
    {
        var t = _table;
        _table = null;
        return t is null ? [] : t.Select(kv => (kv.Key, kv.Value.Ms, kv.Value.Calls, kv.Value.Bytes)).OrderByDescending(r => r.Ms).ToList();
    }

    /// <summary>Marks the start of a region that is not an op (so it is not charged to the next op).</summary>
    public static void Mark()
    {
        if (_table is null) return;
        _last = Stopwatch.GetTimestamp();
        _lastBytes = GC.GetAllocatedBytesForCurrentThread();
    }

    internal static void Forward(string name)
    {
        if (_table is null) return;
        long now = Stopwatch.GetTimestamp();
        Add(Key(name).Fwd, now - _last);
        _last = now;
    }

    internal static long Start() => _table is null ? 0 : Stopwatch.GetTimestamp();

    internal static void Backward(string name, long start)
    {
        if (_table is null) return;
        long now = Stopwatch.GetTimestamp();
        Add(Key(name).Bwd, now - start);
        _last = now;
    }

    private static (string Fwd, string Bwd) Key(string name) => Keys.GetOrAdd(name, n => ("fwd " + n, "bwd " + n));

    // Bytes: allocated on this thread since the previous op (forward: the op and the glue before it; backward: the node).
    private static void Add(string key, long ticks)
    {
        var t = _table!;
        long bytes = GC.GetAllocatedBytesForCurrentThread();
        t.TryGetValue(key, out var v);
        t[key] = (v.Ms + ticks * 1000.0 / Stopwatch.Frequency, v.Calls + 1, v.Bytes + bytes - _lastBytes);
        _lastBytes = GC.GetAllocatedBytesForCurrentThread();
    }
}
