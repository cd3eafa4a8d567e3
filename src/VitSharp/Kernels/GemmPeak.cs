using System.Diagnostics;
using System.Globalization;
using X86 = System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// What the CPU offers VitSharp's kernels: its model name, the x86 SIMD features .NET reports, the VNNI and bfloat16
/// extensions read from <c>/proc/cpuinfo</c> (.NET has no Avx512Vnni/Avx512Bf16 classes), and the float32 GEMM paths
/// in use: the managed micro-kernel and whether OpenBLAS is loaded (<see cref="Gemm"/>).
/// </summary>
/// <param name="ModelName">The CPU's model name (<c>/proc/cpuinfo</c>'s "model name"; else the processor architecture).</param>
/// <param name="Avx2">AVX2 (.NET).</param>
/// <param name="Fma">FMA3 (.NET).</param>
/// <param name="Avx512F">AVX-512 Foundation (.NET).</param>
/// <param name="Avx512BW">AVX-512 byte and word (.NET).</param>
/// <param name="Avx512VL">AVX-512 vector length extensions (.NET).</param>
/// <param name="Avx512Vbmi">AVX-512 VBMI (.NET).</param>
/// <param name="Avx512Vnni">AVX-512 VNNI (int8 dot products; <c>avx512_vnni</c> in the flags).</param>
/// <param name="Avx512Bf16">AVX-512 BF16 (bfloat16 dot products; <c>avx512_bf16</c> in the flags).</param>
/// <param name="AvxVnni">AVX-VNNI (the 256-bit VEX form; <c>avx_vnni</c> in the flags).</param>
/// <param name="FlagsKnown">Whether the flags were read (false off Linux: the three VNNI/BF16 fields are then false, unknown).</param>
/// <param name="ManagedKernel">The managed float32 GEMM micro-kernel: <c>avx512 6x64</c>, <c>avx2 6x16</c> or <c>scalar 6x16</c>.</param>
/// <param name="OpenBlasCore">OpenBLAS's kernel core when it is loaded (e.g. <c>SkylakeX</c>), else null.</param>
public sealed record CpuFeatures(string ModelName, bool Avx2, bool Fma, bool Avx512F, bool Avx512BW, bool Avx512VL, bool Avx512Vbmi,
    bool Avx512Vnni, bool Avx512Bf16, bool AvxVnni, bool FlagsKnown, string ManagedKernel, string? OpenBlasCore)
{
    private static readonly Lazy<CpuFeatures> s_current = new(() => FromCpuInfo(ReadCpuInfo()));

    /// <summary>This machine's (read once).</summary>
    public static CpuFeatures Current => s_current.Value;

    /// <summary>The managed float32 GEMM's path in one word: <c>avx512</c>, <c>avx2</c> or <c>scalar</c>.</summary>
    public string Fp32Path => ManagedKernel.Split(' ')[0];

    /// <summary>Whether OpenBLAS is loaded (<see cref="GemmBackend.Auto"/> may then use it for large products).</summary>
    public bool OpenBlasAvailable => OpenBlasCore is not null;

    /// <summary>The features present, in <c>/proc/cpuinfo</c>'s spelling: avx2 fma avx512f avx512bw avx512vl avx512vbmi avx512_vnni avx512_bf16 avx_vnni.</summary>
    public IReadOnlyList<string> Names
    {
        get
        {
            var n = new List<string>();
            void Add(bool present, string name) { if (present) n.Add(name); }
            Add(Avx2, "avx2"); Add(Fma, "fma"); Add(Avx512F, "avx512f"); Add(Avx512BW, "avx512bw"); Add(Avx512VL, "avx512vl");
            Add(Avx512Vbmi, "avx512vbmi"); Add(Avx512Vnni, "avx512_vnni"); Add(Avx512Bf16, "avx512_bf16"); Add(AvxVnni, "avx_vnni");
            return n;
        }
    }

    /// <summary>
    /// The description from <paramref name="cpuInfo"/> (the text of <c>/proc/cpuinfo</c>, or null where there is none):
    /// its first "model name" and first "flags" line; the other features from .NET.
    /// </summary>
    internal static CpuFeatures FromCpuInfo(string? cpuInfo)
    {
        string? model = null, flags = null;
        if (cpuInfo is not null)
            foreach (var raw in cpuInfo.Split('\n'))
            {
                int colon = raw.IndexOf(':');
                if (colon < 0) continue;
                string key = raw[..colon].Trim(), value = raw[(colon + 1)..].Trim();
                if (model is null && key == "model name") model = value;
                else if (flags is null && key == "flags") flags = value;
                if (model is not null && flags is not null) break;
            }
        var set = flags is null ? new HashSet<string>() : flags.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        return new CpuFeatures(
            string.IsNullOrEmpty(model) ? System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString() : model,
            X86.Avx2.IsSupported, X86.Fma.IsSupported, X86.Avx512F.IsSupported, X86.Avx512BW.IsSupported, X86.Avx512F.VL.IsSupported,
            X86.Avx512Vbmi.IsSupported,
            set.Contains("avx512_vnni"), set.Contains("avx512_bf16"), set.Contains("avx_vnni"), flags is not null,
            GemmManaged.KernelName, OpenBlas.IsAvailable ? OpenBlas.CoreName ?? "unknown core" : null);
    }

    private static string? ReadCpuInfo()
    {
        try { return File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}

/// <summary>The machine's float32 GEMM peak as <see cref="GemmPeak.Measure"/> found it.</summary>
/// <param name="Size">The products were Size × Size × Size (2048 by default).</param>
/// <param name="Threads">Compute threads of the managed kernel (<see cref="ComputeThreads.Count"/>).</param>
/// <param name="ManagedGFlops">The managed kernel's GFLOP/s: 2·Size³ over the median of <paramref name="ManagedTimesMs"/>.</param>
/// <param name="OpenBlasGFlops">OpenBLAS's, the same way; null when OpenBLAS is not loaded.</param>
/// <param name="ManagedTimesMs">Every timed managed product (ms), after one untimed.</param>
/// <param name="OpenBlasTimesMs">Every timed OpenBLAS product (ms), after one untimed; empty without OpenBLAS.</param>
/// <param name="OpenBlasThreads">OpenBLAS's thread count (0 without OpenBLAS).</param>
/// <param name="Cpu">The CPU and the paths in use.</param>
public sealed record GemmPeakResult(int Size, int Threads, double ManagedGFlops, double? OpenBlasGFlops, double[] ManagedTimesMs,
    double[] OpenBlasTimesMs, int OpenBlasThreads, CpuFeatures Cpu)
{
    /// <summary>The better of the two, GFLOP/s: the peak a model's GFLOP/s is compared with.</summary>
    public double BestGFlops => Math.Max(ManagedGFlops, OpenBlasGFlops ?? 0);

    /// <summary>Which one gave <see cref="BestGFlops"/>: <c>managed</c> or <c>openblas</c>.</summary>
    public string Best => OpenBlasGFlops is { } o && o > ManagedGFlops ? "openblas" : "managed";
}

/// <summary>
/// Measures the float32 GEMM peak of the machine in this process: square sgemm (C = A·B, 2048³ by default) with all
/// compute threads, through the managed kernel and through OpenBLAS (when loaded), alternating, each run once untimed
/// first; the median of each. <c>vit bench</c> prints a model's GFLOP/s as a fraction of the better one.
/// </summary>
public static class GemmPeak
{
    /// <summary>The default product size (2048³: 17.2 GFLOP, ~0.1 s at 170 GFLOP/s).</summary>
    public const int DefaultSize = 2048;

    /// <summary>Timed runs of each kernel at least (even past the budget).</summary>
    public const int MinRuns = 3;

    /// <summary>Timed runs of each kernel at most.</summary>
    public const int MaxRuns = 15;

    /// <summary>
    /// Runs <see cref="MinRuns"/> to <see cref="MaxRuns"/> timed products of each kernel, alternating, until
    /// <paramref name="budget"/> (from the first timed run) is spent.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is below 1 or above 8192, or the budget is negative.</exception>
    public static GemmPeakResult Measure(TimeSpan budget, int size = DefaultSize)
    {
        if (size < 1 || size > 8192) throw new ArgumentOutOfRangeException(nameof(size), size, "the product size must be 1 to 8192");
        if (budget < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(budget), budget, "the budget must not be negative");
        var rng = new Random(1);
        int count = size * size;
        var a = new float[count];
        var b = new float[count];
        var c = new float[count];
        for (int i = 0; i < count; i++) { a[i] = rng.NextSingle() - 0.5f; b[i] = rng.NextSingle() - 0.5f; }
        bool blas = OpenBlas.IsAvailable;
        double Time(GemmBackend backend)
        {
            long start = Stopwatch.GetTimestamp();
            Gemm.Sgemm(backend, false, false, size, size, size, 1f, a, size, b, size, 0f, c, size);
            return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Time(GemmBackend.Managed);
        if (blas) Time(GemmBackend.OpenBlas);
        var managed = new List<double>();
        var openBlas = new List<double>();
        var clock = Stopwatch.StartNew();
        while (managed.Count < MaxRuns && (managed.Count < MinRuns || clock.Elapsed < budget))
        {
            managed.Add(Time(GemmBackend.Managed));
            if (blas) openBlas.Add(Time(GemmBackend.OpenBlas));
        }
        double flops = 2.0 * size * size * size;
        double GFlops(List<double> times) => flops / Median(times) / 1e6;
        return new GemmPeakResult(size, ComputeThreads.Count, GFlops(managed), blas ? GFlops(openBlas) : null,
            managed.ToArray(), openBlas.ToArray(), blas ? OpenBlas.Threads : 0, CpuFeatures.Current);
    }

    private static double Median(List<double> values)
    {
        var s = values.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}

/// <summary>One float32 GEMM's extents: op(A) [M, K] · op(B) [K, N].</summary>
/// <param name="M">Rows of the output (a Linear layer: the tokens of the batch).</param>
/// <param name="N">Columns of the output (a Linear layer: its output features).</param>
/// <param name="K">The summed extent (a Linear layer: its input features).</param>
public readonly record struct GemmShape(int M, int N, int K)
{
    /// <summary>Whether <see cref="GemmBackend.Auto"/> sends this product to OpenBLAS (<see cref="Gemm.AutoUsesOpenBlas"/>).</summary>
    public bool AutoUsesOpenBlas => Gemm.AutoUsesOpenBlas(M, N, K);
}

/// <summary>The GEMMs of a model's Linear layers, as one forward pass runs them.</summary>
public static class LinearGemms
{
    /// <summary>
    /// Runs <paramref name="model"/> once on <paramref name="images"/> (no gradients, recycled tensors) and returns the
    /// extents of every Linear layer's product in the order they ran: M = the input's rows (all dimensions but the last),
    /// N = output features, K = input features.
    /// </summary>
    public static IReadOnlyList<GemmShape> Of(NN.Module model, Tensor images)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(images);
        var recorder = new Recorder();
        using (TensorScope.Begin(recycleTensors: true))
        using (Autograd.NoGrad())
        using (OpTrace.Begin(recorder))
            model.Forward(images);
        return recorder.Shapes;
    }

    private sealed class Recorder : IOpTracer
    {
        public List<GemmShape> Shapes { get; } = new();

        public void Op(string name, Tensor output, Tensor?[] inputs, OpAttributes attributes)
        {
            if (name != "linear" || inputs[0] is not { } x || inputs[1] is not { } w) return;
            Shapes.Add(new GemmShape(x.Size / x.Dim(-1), w.Dim(0), w.Dim(1)));
        }
    }
}
