namespace VitSharp.Kernels;

/// <summary>
/// How many threads VitSharp's kernels use (GEMM workers, OpenBLAS, chunked element-wise ops, attention groups):
/// <c>VITSHARP_THREADS</c> when set, else the processor count. Set it before the first parallel kernel runs
/// (<c>vit train --threads N</c> does); afterwards it can no longer change.
/// </summary>
public static class ComputeThreads
{
    private static int _count = VitSharpEnvironment.Threads ?? Environment.ProcessorCount;
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

    [ThreadStatic] private static int t_serialDepth;

    /// <summary>Whether kernels called on this thread run on it alone (inside <see cref="Serial"/>).</summary>
    public static bool IsSerialThread => t_serialDepth > 0;

    /// <summary>The number of threads a kernel called on this thread may use: 1 inside <see cref="Serial"/>, else <see cref="Count"/>.</summary>
    public static int Effective => t_serialDepth > 0 ? 1 : _count;

    /// <summary>
    /// Until the returned scope is disposed, every kernel called on this thread runs on this thread only (no GEMM
    /// workers, no OpenBLAS threads, no chunked loops): for data-parallel work where each core runs its own model
    /// replica. Scopes nest.
    /// </summary>
    public static SerialScope Serial() { t_serialDepth++; return new SerialScope(); }

    /// <summary>Scope returned by <see cref="Serial"/>.</summary>
    public readonly struct SerialScope : IDisposable
    {
        /// <summary>Ends the serial section on this thread.</summary>
        public void Dispose() => t_serialDepth--;
    }

    /// <summary>Called when worker threads or OpenBLAS are set up with the current count.</summary>
    internal static int Freeze()
    {
        Volatile.Write(ref _frozen, true);
        return _count;
    }
}
