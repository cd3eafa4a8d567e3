using System.Diagnostics;

namespace VitSharp;

/// <summary>An MPI call failed, MPI cannot be loaded, or the ranks of a distributed run disagree.</summary>
public sealed class DistributedException(string message) : Exception(message);

/// <summary>
/// Data-parallel training over processes and machines with MPI (Open MPI, as Debian's <c>openmpi-bin</c> installs it):
/// start every process with <c>mpirun -np N</c>, call <see cref="Initialize"/> in each, and the world's
/// <see cref="Rank"/>s and <see cref="Size"/> are known; <see cref="AllReduceSum(Span{float})"/> sums a buffer over all
/// ranks in place. <see cref="Training.Trainer.Fit"/> and <see cref="Training.TrainStep"/> use it when it is initialised:
/// every rank trains on its shard of each global batch and the gradients are summed with bucketed all-reduces.
/// </summary>
/// <remarks>
/// <para>Bindings: VitSharp's own calls into <c>libmpi.so.40</c> (see docs/distributed.md for why not MPI.NET). Errors
/// are returned, not fatal (<c>MPI_ERRORS_RETURN</c>), and become <see cref="DistributedException"/>s.</para>
/// <para>A watchdog ends the process when a collective call has not completed within <see cref="Timeout"/> (a rank died
/// or hangs): it writes one line saying so to stderr and exits with code 2 without finalising MPI, so that
/// <c>mpirun</c> ends the whole job. Collectives are called from one thread at a time (MPI_THREAD_SERIALIZED).</para>
/// </remarks>
public static unsafe class Distributed
{
    private static readonly object Gate = new();
    private static bool _initialized, _finalized;
    private static int _rank, _size = 1;
    private static string _library = "";
    private static TimeSpan _timeout = TimeSpan.FromSeconds(60);
    // The collective under way, for the watchdog: its start (Stopwatch ticks, 0 = none) and name.
    private static long _since;
    private static string _operation = "";
    private static Thread? _watchdog;

    /// <summary>
    /// Whether this process was started by an MPI launcher (<c>mpirun</c>/<c>mpiexec</c>/<c>srun</c>): the environment holds
    /// Open MPI's, PMIx's or PMI's rank variables. <c>vit train</c> then initialises MPI on its own.
    /// </summary>
    public static bool IsLaunchedByMpi =>
        Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is { Length: > 0 } ||
        Environment.GetEnvironmentVariable("PMIX_RANK") is { Length: > 0 } ||
        Environment.GetEnvironmentVariable("PMI_SIZE") is { Length: > 0 };

    /// <summary>Ranks started on this machine (Open MPI's <c>OMPI_COMM_WORLD_LOCAL_SIZE</c>; 1 when unknown).</summary>
    public static int LocalSize =>
        int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out int n) && n >= 1 ? n : 1;

    /// <summary>Whether <see cref="Initialize"/> has run (and <see cref="Shutdown"/> has not).</summary>
    public static bool IsInitialized => _initialized && !_finalized;

    /// <summary>This process's rank in the world, 0 … <see cref="Size"/> − 1 (0 when not initialised).</summary>
    public static int Rank => IsInitialized ? _rank : 0;

    /// <summary>Processes in the world (1 when not initialised).</summary>
    public static int Size => IsInitialized ? _size : 1;

    /// <summary>Whether this process is rank 0 or not distributed: the one that prints, evaluates the summary and writes files.</summary>
    public static bool IsRoot => Rank == 0;

    /// <summary>The MPI library's name and version (the start of MPI_Get_library_version, e.g. "Open MPI v4.1.4"), empty
    /// before <see cref="Initialize"/>.</summary>
    public static string LibraryVersion => _library;

    /// <summary>
    /// How long one collective call (all-reduce, broadcast, barrier) may wait for the other ranks before the watchdog ends
    /// this process with an error (default 60 s; a checkpoint write or an evaluation on a slow rank must fit in it).
    /// </summary>
    public static TimeSpan Timeout
    {
        get => _timeout;
        set
        {
            if (!(value > TimeSpan.Zero)) throw new ArgumentOutOfRangeException(nameof(value), $"the MPI timeout must be > 0, got {value}");
            _timeout = value;
        }
    }

    /// <summary>
    /// Loads Open MPI, initialises it (MPI_THREAD_SERIALIZED) with errors returned rather than fatal, reads the rank and
    /// size and starts the watchdog. Idempotent. Throws <see cref="DistributedException"/> naming what to install when the
    /// library cannot be loaded, or when MPI was already finalised (MPI cannot be initialised twice in a process).
    /// </summary>
    public static void Initialize()
    {
        lock (Gate)
        {
            if (_finalized) throw new DistributedException("MPI was already finalised in this process; it cannot be initialised again");
            if (_initialized) return;
            MpiNative.Load();
            int flag = 0, provided = 0, rank = 0, size = 0;
            Check(MpiNative.Initialized(&flag), "MPI_Initialized");
            if (flag == 0) Check(MpiNative.InitThread(null, null, MpiNative.ThreadSerialized, &provided), "MPI_Init_thread");
            Check(MpiNative.CommSetErrhandler(MpiNative.CommWorld, MpiNative.ErrorsReturn), "MPI_Comm_set_errhandler");
            Check(MpiNative.CommRank(MpiNative.CommWorld, &rank), "MPI_Comm_rank");
            Check(MpiNative.CommSize(MpiNative.CommWorld, &size), "MPI_Comm_size");
            byte* text = stackalloc byte[4096];
            int length = 0;
            if (MpiNative.GetLibraryVersion(text, &length) == MpiNative.Success)
                _library = System.Text.Encoding.UTF8.GetString(text, Math.Clamp(length, 0, 4095)).Split('\n', ',')[0].Trim();
            (_rank, _size, _initialized) = (rank, size, true);
            _watchdog = new Thread(Watch) { IsBackground = true, Name = "VitSharp MPI watchdog" };
            _watchdog.Start();
        }
    }

    /// <summary>Sums <paramref name="values"/> element-wise over all ranks, in place (MPI_Allreduce, MPI_SUM). Allocates nothing.</summary>
    public static void AllReduceSum(Span<float> values)
    {
        RequireInitialized();
        Begin("MPI_Allreduce");
        fixed (float* p = values)
            Collective(MpiNative.Allreduce(MpiNative.InPlace, p, values.Length, MpiNative.Float, MpiNative.OpSum, MpiNative.CommWorld), "MPI_Allreduce");
    }

    /// <summary>Sums <paramref name="values"/> element-wise over all ranks, in place (doubles). Allocates nothing.</summary>
    public static void AllReduceSum(Span<double> values)
    {
        RequireInitialized();
        Begin("MPI_Allreduce");
        fixed (double* p = values)
            Collective(MpiNative.Allreduce(MpiNative.InPlace, p, values.Length, MpiNative.Double, MpiNative.OpSum, MpiNative.CommWorld), "MPI_Allreduce");
    }

    /// <summary>Copies rank <paramref name="root"/>'s <paramref name="values"/> into every other rank's (MPI_Bcast).</summary>
    public static void Broadcast(Span<float> values, int root = 0)
    {
        RequireInitialized();
        if ((uint)root >= (uint)_size) throw new ArgumentOutOfRangeException(nameof(root), root, $"the world has ranks 0 … {_size - 1}");
        Begin("MPI_Bcast");
        fixed (float* p = values)
            Collective(MpiNative.Bcast(p, values.Length, MpiNative.Float, root, MpiNative.CommWorld), "MPI_Bcast");
    }

    /// <summary>Waits until every rank has called it (MPI_Barrier).</summary>
    public static void Barrier()
    {
        RequireInitialized();
        Begin("MPI_Barrier");
        Collective(MpiNative.Barrier(MpiNative.CommWorld), "MPI_Barrier");
    }

    /// <summary>Ends every rank of the job at once with <paramref name="code"/> (MPI_Abort); does not return.</summary>
    public static void Abort(int code)
    {
        RequireInitialized();
        MpiNative.Abort(MpiNative.CommWorld, code);
        MpiNative.Exit(code);
    }

    /// <summary>
    /// Checks that every rank holds the same <paramref name="value"/> (e.g. the batches per epoch, the parameter count):
    /// throws <see cref="DistributedException"/> naming <paramref name="what"/> when they differ.
    /// </summary>
    public static void CheckSame(double value, string what)
    {
        if (!IsInitialized || _size == 1) return;
        Span<double> v = [value, value * value];
        AllReduceSum(v);
        double mean = v[0] / _size, spread = v[1] / _size - mean * mean;
        if (Math.Abs(spread) > 1e-9 * Math.Max(1, mean * mean))
            throw new DistributedException($"rank {_rank}: the ranks disagree on {what} (this rank: {value}, mean over {_size} ranks: {mean}); start every rank with the same data and options");
    }

    /// <summary>Finalises MPI (MPI_Finalize) and stops the watchdog; after it the process is no longer distributed.</summary>
    public static void Shutdown()
    {
        lock (Gate)
        {
            if (!_initialized || _finalized) return;
            _finalized = true;
            int flag = 0;
            MpiNative.Finalized(&flag);
            if (flag == 0) MpiNative.Finalize();
        }
    }

    private static void RequireInitialized()
    {
        if (!IsInitialized) throw new InvalidOperationException("MPI is not initialised: call Distributed.Initialize() first (in a process started by mpirun)");
    }

    private static void Check(int code, string call)
    {
        if (code != MpiNative.Success) throw new DistributedException($"{call} failed: {MpiNative.Describe(code)}");
    }

    // Ends a collective that Begin started: clears the watchdog's timestamp and turns an error code into an exception.
    private static void Collective(int code, string call)
    {
        Volatile.Write(ref _since, 0);
        if (code != MpiNative.Success)
            throw new DistributedException($"rank {_rank} of {_size}: {call} failed: {MpiNative.Describe(code)} (another rank died or the network failed)");
    }

    // Marks the start of a collective for the watchdog.
    private static void Begin(string call)
    {
        _operation = call;
        Volatile.Write(ref _since, Stopwatch.GetTimestamp());
    }

    private static void Watch()
    {
        while (!_finalized)
        {
            Thread.Sleep(200);
            long since = Volatile.Read(ref _since);
            if (since == 0 || Stopwatch.GetElapsedTime(since) < _timeout) continue;
            try
            {
                Console.Error.WriteLine($"vit: error: rank {_rank} of {_size}: {_operation} did not complete within {_timeout.TotalSeconds:0.#} s " +
                    "(another rank died, hangs or is unreachable); ending this rank so that mpirun ends the job");
                Console.Error.Flush();
            }
            finally { MpiNative.Exit(2); }
        }
    }
}
