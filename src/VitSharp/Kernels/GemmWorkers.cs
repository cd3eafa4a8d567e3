using System.Diagnostics;

namespace VitSharp.Kernels;

/// <summary>
/// Dedicated worker threads for the managed GEMM: <c>ProcessorCount − 1</c> background threads that, with the
/// calling thread, take work items from a shared counter. Unlike <see cref="Parallel.For(int, int, Action{int})"/>
/// a round allocates nothing, and a worker spins briefly after a round (the caller packs the next shared block
/// meanwhile) before it blocks. One caller owns the pool at a time; a concurrent caller runs its items itself.
/// </summary>
internal static class GemmWorkers
{
    private sealed class Worker
    {
        public readonly SemaphoreSlim Wake = new(0);
        public int Sleeping;
    }

    private static readonly object s_startLock = new();
    private static Worker[]? s_workers;
    private static int s_owner;

    // (round << 32) | next item index. Rounds never repeat, so a CAS on this value claims an item of one round.
    private static long s_next = int.MaxValue;
    private static int s_count;
    private static int s_done;
    private static long s_round;
    private static Action<int>? s_body;
    private static Exception? s_error;

    /// <summary>How long an idle worker spins looking for the next round before it blocks.</summary>
    internal static double SpinMicroseconds = 200;

    /// <summary>Number of threads that take part in a round (workers + caller).</summary>
    public static int Threads => ComputeThreads.Effective;

    /// <summary>Runs body(0..count-1) on the calling thread and the workers; returns when all are done.</summary>
    public static void For(int count, Action<int> body)
    {
        if (count <= 0) return;
        if (count == 1 || Threads < 2 || Interlocked.CompareExchange(ref s_owner, 1, 0) != 0)
        {
            // Inline (single item, one core, or another caller owns the pool): same exception contract as a pooled round.
            try { for (int i = 0; i < count; i++) body(i); }
            catch (Exception e) { throw new AggregateException(e); }
            return;
        }
        try
        {
            var workers = EnsureStarted();
            long round = ++s_round;
            // Close the counter for the new round first (index int.MaxValue ≥ any count), so that nobody can claim a
            // stale index while body and count change; then open it at index 0.
            Interlocked.Exchange(ref s_next, (round << 32) | int.MaxValue);
            s_body = body;
            s_count = count;
            s_error = null;
            Volatile.Write(ref s_done, 0);
            Interlocked.Exchange(ref s_next, round << 32); // publish (full fence)
            foreach (var w in workers)
                if (Interlocked.Exchange(ref w.Sleeping, 0) == 1) w.Wake.Release();
            while (TryRunOne()) { }
            var spin = new SpinWait();
            while (Volatile.Read(ref s_done) < count) spin.SpinOnce(sleep1Threshold: -1);
            s_body = null;
            if (s_error is { } e) throw new AggregateException(e);
        }
        finally
        {
            Volatile.Write(ref s_owner, 0);
        }
    }

    /// <summary>A loop body over items 0..count−1, as a struct so that a round allocates nothing.</summary>
    public interface IItemBody
    {
        /// <summary>Runs item <paramref name="item"/> (called concurrently: must not mutate the struct).</summary>
        void Run(int item);
    }

    /// <summary>Runs body.Run(0..count-1) as <see cref="For(int, Action{int})"/>, without allocating (the struct goes into a reused per-thread holder).</summary>
    public static void For<TBody>(int count, in TBody body) where TBody : struct, IItemBody
    {
        var job = Job<TBody>.Take();
        job.Body = body;
        try { For(count, job.Invoke); }
        finally { job.Body = default; Job<TBody>.Give(job); }
    }

    /// <summary>Holds a struct body and a delegate to it; one spare per body type and thread (a nested call of the same type makes another).</summary>
    private sealed class Job<TBody> where TBody : struct, IItemBody
    {
        [ThreadStatic] private static Job<TBody>? t_spare;

        public TBody Body;
        public readonly Action<int> Invoke;

        private Job() => Invoke = Run;

        private void Run(int item) => Body.Run(item);

        public static Job<TBody> Take()
        {
            var job = t_spare ?? new Job<TBody>();
            t_spare = null;
            return job;
        }

        public static void Give(Job<TBody> job) => t_spare = job;
    }

    private static bool WorkAvailable()
    {
        long v = Volatile.Read(ref s_next);
        return (int)(v & 0xFFFF_FFFF) < Volatile.Read(ref s_count);
    }

    private static bool TryRunOne()
    {
        while (true)
        {
            long v = Volatile.Read(ref s_next);
            int i = (int)(v & 0xFFFF_FFFF);
            if (i >= Volatile.Read(ref s_count)) return false;
            if (Interlocked.CompareExchange(ref s_next, v + 1, v) != v) continue;
            // Claimed item i of the round in v: that round cannot finish (and its body cannot change) before we
            // increment s_done.
            try { s_body!(i); }
            catch (Exception e) { Interlocked.CompareExchange(ref s_error, e, null); }
            Interlocked.Increment(ref s_done);
            return true;
        }
    }

    private static Worker[] EnsureStarted()
    {
        if (Volatile.Read(ref s_workers) is { } ws) return ws;
        lock (s_startLock)
        {
            if (s_workers != null) return s_workers;
            var list = new Worker[Math.Max(0, ComputeThreads.Freeze() - 1)];
            for (int t = 0; t < list.Length; t++)
            {
                var w = list[t] = new Worker();
                var thread = new Thread(() => Loop(w)) { IsBackground = true, Name = $"VitSharp GEMM worker {t + 1}" };
                thread.Start();
            }
            Volatile.Write(ref s_workers, list);
            return list;
        }
    }

    private static void Loop(Worker w)
    {
        long spinTicks = (long)(SpinMicroseconds * Stopwatch.Frequency / 1e6);
        while (true)
        {
            long idleSince = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (Stopwatch.GetTimestamp() - idleSince < spinTicks)
            {
                if (TryRunOne())
                {
                    idleSince = Stopwatch.GetTimestamp();
                    spin = default;
                    continue;
                }
                spin.SpinOnce(sleep1Threshold: -1);
            }
            Interlocked.Exchange(ref w.Sleeping, 1);
            if (WorkAvailable())
            {
                // A round was published after we looked; if its owner already released us, the extra count only
                // causes one spurious wake-up later.
                Interlocked.Exchange(ref w.Sleeping, 0);
                continue;
            }
            w.Wake.Wait();
        }
    }
}
