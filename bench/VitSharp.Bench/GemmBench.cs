using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using VitSharp.Kernels;

namespace VitSharp.Bench;

/// <summary>A GEMM problem: C[m,n] = op(A)·op(B); transB mirrors a PyTorch Linear (weight stored [out, in]); transA stores
/// A [k, m] (a Linear's weight gradient dyᵀ·x).</summary>
public readonly record struct GemmShape(int M, int N, int K, bool TransB, bool TransA = false)
{
    /// <summary>2·m·n·k.</summary>
    public double Flops => 2.0 * M * N * K;

    /// <inheritdoc/>
    public override string ToString() => $"{M}x{N}x{K}{(TransA ? " (A^T)" : "")}{(TransB ? " (B^T)" : "")}";

    /// <summary>Parses "MxNxK" (B stored [k, n]) with optional suffixes: "t" for B stored [n, k], "a" for A stored [k, m]
    /// (e.g. "96x96x3200a", "3200x96x96t").</summary>
    public static GemmShape Parse(string text)
    {
        string core = text.TrimEnd('t', 'a');
        string suffix = text[core.Length..];
        var p = core.Split('x').Select(int.Parse).ToArray();
        return new GemmShape(p[0], p[1], p[2], suffix.Contains('t'), suffix.Contains('a'));
    }

    /// <summary>ViT-B/16 batch-1 shapes (qkv, proj, fc1, fc2) and 2048³.</summary>
    public static readonly GemmShape[] Standard =
    {
        new(197, 2304, 768, true), new(197, 768, 768, true), new(197, 3072, 768, true), new(197, 768, 3072, true),
        new(2048, 2048, 2048, false),
    };
}

/// <summary>Operands for one shape, filled with values in [-1, 1).</summary>
public sealed class GemmOperands
{
    public readonly GemmShape Shape;
    public readonly float[] A, B, C;

    public GemmOperands(GemmShape s)
    {
        Shape = s;
        var r = new Random(42);
        A = new float[s.M * s.K];
        B = new float[s.K * s.N];
        C = new float[s.M * s.N];
        for (int i = 0; i < A.Length; i++) A[i] = (float)(r.NextDouble() * 2 - 1);
        for (int i = 0; i < B.Length; i++) B[i] = (float)(r.NextDouble() * 2 - 1);
    }

    private static byte[]? s_flush;

    /// <summary>Evicts A, B and C from the caches (writes 64 MB): the "-cold" paths time a call whose operands come from
    /// memory, as a training step's activations do.</summary>
    public static void Flush()
    {
        s_flush ??= new byte[64 << 20];
        for (int i = 0; i < s_flush.Length; i += 64) s_flush[i]++;
    }

    public void Run(GemmBackend backend)
    {
        var s = Shape;
        if ((int)backend == 104) backend = (GemmBackend)103;   // cold: flushed by the caller, outside the timing
        if ((int)backend == 103)
        {
            // Managed on the calling thread only (parallel: false).
            Gemm.Sgemm(GemmBackend.Managed, s.TransA, s.TransB, s.M, s.N, s.K, 1f, A, s.TransA ? s.M : s.K, B, s.TransB ? s.K : s.N, 0f, C, s.N, parallel: false);
            return;
        }
        Gemm.Sgemm(backend, s.TransA, s.TransB, s.M, s.N, s.K, 1f, A, s.TransA ? s.M : s.K, B, s.TransB ? s.K : s.N, 0f, C, s.N);
    }
}

/// <summary>The interleaved timing table printed by <c>-- gemm</c>.</summary>
public static class GemmTable
{
    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        int pi = Array.IndexOf(args, "--paths");
        string[] only = pi >= 0 && pi + 1 < args.Length ? args[pi + 1].Split(',') : new[] { "managed", "openblas", "naive" };
        PrintHeader();
        var paths = new List<(string Name, GemmBackend Backend)>();
        if (only.Contains("managed")) paths.Add(("managed", GemmBackend.Managed));
        if (only.Contains("managed-1t")) paths.Add(("managed-1t", (GemmBackend)103));
        if (only.Contains("managed-1t-cold")) paths.Add(("managed-1t-cold", (GemmBackend)104));
        if (only.Contains("openblas") && Gemm.OpenBlasAvailable) paths.Add(($"openblas ({OpenBlas.CoreName})", GemmBackend.OpenBlas));
        Console.WriteLine($"{"shape (m x n x k)",-24} {"path",-22} {"runs",5} {"median ms",10} {"min ms",9} {"GFLOP/s med",12} {"GFLOP/s max",12}");
        int si = Array.IndexOf(args, "--shapes");
        var shapes = si >= 0 && si + 1 < args.Length ? args[si + 1].Split(',').Select(GemmShape.Parse).ToArray() : GemmShape.Standard;
        foreach (var shape in shapes)
        {
            var ops = new GemmOperands(shape);
            var ps = new List<(string Name, GemmBackend Backend)>(paths);
            if (shape.Flops <= 3e8 && only.Contains("naive")) ps.Add(("naive", GemmBackend.Naive));
            // Enough repetitions for ~1 s per fast path; naive gets 3.
            int reps = (int)Math.Clamp(300e9 * (quick ? 0.3 : 1.0) / shape.Flops, 10, 300);
            var times = ps.Select(_ => new List<double>()).ToArray();
            for (int p = 0; p < ps.Count; p++)
                for (int w = 0; w < (ps[p].Backend == GemmBackend.Naive ? 1 : 5); w++) ops.Run(ps[p].Backend);
            for (int r = 0; r < reps; r++)
                for (int p = 0; p < ps.Count; p++) // interleaved so that machine noise hits every path
                {
                    if (ps[p].Backend == GemmBackend.Naive && r >= 3) continue;
                    if ((int)ps[p].Backend == 104) GemmOperands.Flush();
                    long t0 = Stopwatch.GetTimestamp();
                    ops.Run(ps[p].Backend);
                    times[p].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
            for (int p = 0; p < ps.Count; p++)
            {
                var t = times[p];
                t.Sort();
                double med = t[t.Count / 2], min = t[0];
                Console.WriteLine($"{shape,-24} {ps[p].Name,-22} {t.Count,5} {med,10:F3} {min,9:F3} {shape.Flops / med / 1e6,12:F1} {shape.Flops / min / 1e6,12:F1}");
            }
        }
        PrintAllocations();
    }

    /// <summary>Bytes allocated by one managed call (single-threaded and parallel) after warm-up.</summary>
    private static void PrintAllocations()
    {
        var ops = new GemmOperands(new GemmShape(197, 768, 768, true));
        var s = ops.Shape;
        void One(bool parallel) => Gemm.Sgemm(GemmBackend.Managed, false, true, s.M, s.N, s.K, 1f, ops.A, s.K, ops.B, s.K, 0f, ops.C, s.N, parallel);
        for (int i = 0; i < 5; i++) { One(false); One(true); }
        long t0 = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) One(false);
        long single = (GC.GetAllocatedBytesForCurrentThread() - t0) / 10;
        long p0 = GC.GetTotalAllocatedBytes(true);
        for (int i = 0; i < 10; i++) One(true);
        long par = (GC.GetTotalAllocatedBytes(true) - p0) / 10;
        Console.WriteLine($"managed allocations per 197x768x768 call (steady state): single-threaded {single} B, parallel {par} B (pack buffers are per-thread native, parallel rounds run on dedicated workers)");
    }

    private static void PrintHeader()
    {
        Console.WriteLine($"managed kernel: {GemmManaged.KernelName}, MR={GemmManaged.MR} NR={GemmManaged.NR} KC={GemmManaged.KC} MC={GemmManaged.MC} NC={GemmManaged.NC}, threads={GemmWorkers.Threads}");
        Console.WriteLine(Gemm.OpenBlasAvailable
            ? $"openblas: core {OpenBlas.CoreName} (OPENBLAS_CORETYPE set to {OpenBlas.RequestedCoreType ?? "<inherited>"} before load; inherited env: {VitSharpEnvironment.InheritedOpenBlasCoreType ?? "<unset>"}), threads {OpenBlas.Threads}, OPENBLAS_THREAD_TIMEOUT {OpenBlas.ThreadTimeout ?? "<default>"}"
            : "openblas: not available");
    }

    /// <summary>Sweeps the managed kernel's KC and MC on the standard shapes (median GFLOP/s).</summary>
    public static void Tune(string[] args)
    {
        PrintHeader();
        int[] kcs = { 128, 192, 256, 384, 512 };
        int[] mcs = { 48, 72, 96, 144, 204 };
        foreach (var shape in GemmShape.Standard)
        {
            var ops = new GemmOperands(shape);
            int reps = (int)Math.Clamp(60e9 / shape.Flops, 5, 100);
            Console.Write($"{shape,-24}");
            foreach (int kc in kcs)
                foreach (int mc in mcs)
                {
                    GemmManaged.KC = kc;
                    GemmManaged.MC = mc;
                    ops.Run(GemmBackend.Managed);
                    var t = new List<double>();
                    for (int r = 0; r < reps; r++)
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        ops.Run(GemmBackend.Managed);
                        t.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                    }
                    t.Sort();
                    Console.Write($" {kc}/{mc}:{shape.Flops / t[t.Count / 2] / 1e6:F0}");
                }
            Console.WriteLine();
        }
    }
}

/// <summary>BenchmarkDotNet version of the table (<c>-- bdn</c>); OpenBLAS core type is chosen as in <see cref="Gemm"/>.</summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    private GemmOperands _ops = null!;

    /// <summary>Index into <see cref="GemmShape.Standard"/>.</summary>
    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "";

    public static IEnumerable<string> Shapes => GemmShape.Standard.Select(s => s.ToString());

    [GlobalSetup]
    public void Setup() => _ops = new GemmOperands(GemmShape.Standard.First(s => s.ToString() == Shape));

    [Benchmark(Baseline = true)]
    public void Managed() => _ops.Run(GemmBackend.Managed);

    [Benchmark]
    public void OpenBlas()
    {
        if (!Gemm.OpenBlasAvailable) throw new InvalidOperationException("OpenBLAS not available");
        _ops.Run(GemmBackend.OpenBlas);
    }
}
