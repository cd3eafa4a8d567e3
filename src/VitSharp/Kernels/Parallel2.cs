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
    public static void For(int count, int chunks, Action<int, int, int> body) => For(count, chunks, new DelegateBody(body));

    private readonly struct DelegateBody(Action<int, int, int> body) : IChunkBody
    {
        public void Run(int chunk, int start, int length) => body(chunk, start, length);
    }

    /// <summary>A chunk body for <see cref="For{TBody}(int, int, in TBody)"/>: a struct, so that a loop allocates nothing.</summary>
    public interface IChunkBody
    {
        /// <summary>Processes items [start, start + length) as chunk number <paramref name="chunk"/> (called concurrently: must not mutate the struct).</summary>
        void Run(int chunk, int start, int length);
    }

    /// <summary>Runs body.Run(chunk, start, length) over <paramref name="chunks"/> contiguous chunks of [0, count), like <see cref="For(int, int, Action{int, int, int})"/> but without allocating.</summary>
    public static void For<TBody>(int count, int chunks, in TBody body) where TBody : struct, IChunkBody
    {
        if (chunks <= 1) { body.Run(0, 0, count); return; }
        GemmWorkers.For(chunks, new Chunked<TBody> { Body = body, Count = count, Chunks = chunks });
    }

    private struct Chunked<TBody> : GemmWorkers.IItemBody where TBody : struct, IChunkBody
    {
        public TBody Body;
        public int Count, Chunks;

        public void Run(int c)
        {
            int start = (int)((long)Count * c / Chunks), end = (int)((long)Count * (c + 1) / Chunks);
            Body.Run(c, start, end - start);
        }
    }
}
