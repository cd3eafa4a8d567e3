namespace VitSharp.Kernels;

/// <summary>
/// Coarse-grained parallel loops for memory-bound kernels (LayerNorm, GELU, …) on the GEMM's worker pool:
/// the range is cut into a fixed number of chunks that depends only on its length (never on timing), so
/// results — including reductions over chunk partials summed in chunk order — are the same run to run.
/// </summary>
public static class Parallel2
{
    /// <summary>Below this many elements of work a loop stays on the calling thread.</summary>
    public const int MinParallelWork = 1 << 16;

    /// <summary>How many chunks a range of <paramref name="count"/> items of <paramref name="workPerItem"/> elements is cut into (1 when small).</summary>
    public static int Chunks(int count, long workPerItem)
    {
        if (count < 2 || GemmWorkers.Threads < 2 || count * workPerItem < MinParallelWork) return 1;
        return Math.Min(count, 4 * GemmWorkers.Threads);
    }

    /// <summary>Runs body(chunk, start, length) over <paramref name="chunks"/> contiguous chunks of [0, count).</summary>
    public static void For(int count, int chunks, Action<int, int, int> body)
    {
        if (chunks <= 1) { body(0, 0, count); return; }
        GemmWorkers.For(chunks, c =>
        {
            int start = (int)((long)count * c / chunks), end = (int)((long)count * (c + 1) / chunks);
            body(c, start, end - start);
        });
    }
}
