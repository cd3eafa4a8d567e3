using System.Diagnostics;

namespace VitSharp;

/// <summary>
/// A coarse per-op wall-clock profile of the calling thread: forward time is the time since the previous op
/// finished (so module glue counts toward the next op), backward time is each node's backward function.
/// Off by default; costs one branch per op when off.
/// </summary>
public static class OpProfiler
{
    [ThreadStatic] private static Dictionary<string, (double Ms, long Calls)>? _table;
    [ThreadStatic] private static long _last;

    /// <summary>Starts (or restarts) profiling on this thread.</summary>
    public static void Enable()
    {
        _table = new Dictionary<string, (double, long)>();
        _last = Stopwatch.GetTimestamp();
    }

    /// <summary>Stops profiling and returns the table: "fwd op" / "bwd op" → (milliseconds, calls), largest first.</summary>
    public static IReadOnlyList<(string Op, double Ms, long Calls)> Disable()
    {
        var t = _table;
        _table = null;
        return t is null ? [] : t.Select(kv => (kv.Key, kv.Value.Ms, kv.Value.Calls)).OrderByDescending(r => r.Ms).ToList();
    }

    /// <summary>Marks the start of a region that is not an op (so it is not charged to the next op).</summary>
    public static void Mark()
    {
        if (_table is not null) _last = Stopwatch.GetTimestamp();
    }

    internal static void Forward(string name)
    {
        if (_table is null) return;
        long now = Stopwatch.GetTimestamp();
        Add("fwd " + name, now - _last);
        _last = now;
    }

    internal static long Start() => _table is null ? 0 : Stopwatch.GetTimestamp();

    internal static void Backward(string name, long start)
    {
        if (_table is null) return;
        long now = Stopwatch.GetTimestamp();
        Add("bwd " + name, now - start);
        _last = now;
    }

    private static void Add(string key, long ticks)
    {
        var t = _table!;
        t.TryGetValue(key, out var v);
        t[key] = (v.Ms + ticks * 1000.0 / Stopwatch.Frequency, v.Calls + 1);
    }
}
