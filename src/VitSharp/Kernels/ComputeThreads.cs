namespace VitSharp.Kernels;

/// <summary>
/// How many threads VitSharp's kernels use (GEMM workers, OpenBLAS, chunked element-wise ops, attention groups):
/// <c>VITSHARP_THREADS</c> when set, else the processor count. Set it before the first parallel kernel runs
/// (<c>vit train --threads N</c> does); afterwards it can no longer change.
/// </summary>
public static class ComputeThreads
{
    private static int _count = FromEnvironment();
    private static bool _frozen;

    /// <summary>The thread count (≥ 1).</summary>
    public static int Count
    {
        get => _count;
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(value), $"thread count must be ≥ 1, got {value}");
            if (value == _count) return;
            if (Volatile.Read(ref _frozen)) throw new InvalidOperationException($"the thread count is already fixed at {_count}: set it before the first kernel runs");
            _count = value;
        }
    }

    /// <summary>Called when worker threads or OpenBLAS are set up with the current count.</summary>
    internal static int Freeze()
    {
        Volatile.Write(ref _frozen, true);
        return _count;
    }

    private static int FromEnvironment()
    {
        var s = Environment.GetEnvironmentVariable("VITSHARP_THREADS");
        return int.TryParse(s, out int n) && n >= 1 ? n : Environment.ProcessorCount;
    }
}
