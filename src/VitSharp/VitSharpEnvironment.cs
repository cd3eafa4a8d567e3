using VitSharp.Kernels;

namespace VitSharp;

/// <summary>
/// The environment variables the library reads, read here only, once, when this class is first used (before the
/// first kernel runs). Kernels take their defaults from these properties; an unset or malformed variable is null.
/// </summary>
/// <remarks>
/// <list type="table">
/// <item><term><c>VITSHARP_THREADS</c></term><description>kernel threads (<see cref="ComputeThreads.Count"/>); default the processor count.</description></item>
/// <item><term><c>VITSHARP_GEMM</c></term><description><c>managed|openblas|naive|auto</c>: <see cref="Gemm.Backend"/>'s initial value.</description></item>
/// <item><term><c>VITSHARP_GEMM_KC</c>, <c>_MC</c>, <c>_NC</c></term><description>block sizes of the managed GEMM (tuning only).</description></item>
/// <item><term><c>VITSHARP_OPENBLAS_THREADS</c></term><description>OpenBLAS's thread count; default <see cref="ComputeThreads.Count"/>.</description></item>
/// <item><term><c>VITSHARP_OPENBLAS_PATH</c></term><description>an OpenBLAS library file to load first.</description></item>
/// <item><term><c>VITSHARP_OPENBLAS_CORETYPE</c></term><description>OpenBLAS kernel to select (<c>keep</c>: leave <c>OPENBLAS_CORETYPE</c> alone).</description></item>
/// <item><term><c>VITSHARP_OPENBLAS_THREAD_TIMEOUT</c></term><description>OpenBLAS's idle spin when <c>OPENBLAS_THREAD_TIMEOUT</c> is not set (default 16).</description></item>
/// <item><term><c>VITSHARP_NATIVE_KERNELS</c></term><description><c>off</c>: do not load <c>libvitsharp_kernels.so</c> (<see cref="Kernels.NativeKernels"/>); a file path: load that file first.</description></item>
/// </list>
/// The CLI reads <c>VITSHARP_DEBUG</c> itself; the tests read <c>VITSHARP_FIXTURES</c>.
/// </remarks>
public static class VitSharpEnvironment
{
    /// <summary><c>VITSHARP_THREADS</c> (≥ 1), or null.</summary>
    public static int? Threads { get; } = PositiveInt("VITSHARP_THREADS");

    /// <summary><c>VITSHARP_GEMM</c> parsed (<c>managed</c>, <c>openblas</c>, <c>naive</c>, <c>auto</c>), or null.</summary>
    public static GemmBackend? GemmBackend { get; } = Get("VITSHARP_GEMM")?.Trim().ToLowerInvariant() switch
    {
        "managed" => Kernels.GemmBackend.Managed,
        "openblas" => Kernels.GemmBackend.OpenBlas,
        "naive" => Kernels.GemmBackend.Naive,
        "auto" => Kernels.GemmBackend.Auto,
        _ => null,
    };

    /// <summary><c>VITSHARP_GEMM_KC</c>: depth of a packed block of the managed GEMM, or null.</summary>
    public static int? GemmKc { get; } = PositiveInt("VITSHARP_GEMM_KC");

    /// <summary><c>VITSHARP_GEMM_MC</c>: rows of a packed A block of the managed GEMM, or null.</summary>
    public static int? GemmMc { get; } = PositiveInt("VITSHARP_GEMM_MC");

    /// <summary><c>VITSHARP_GEMM_NC</c>: columns of a packed B block of the managed GEMM, or null.</summary>
    public static int? GemmNc { get; } = PositiveInt("VITSHARP_GEMM_NC");

    /// <summary><c>VITSHARP_OPENBLAS_THREADS</c> (≥ 1), or null.</summary>
    public static int? OpenBlasThreads { get; } = PositiveInt("VITSHARP_OPENBLAS_THREADS");

    /// <summary><c>VITSHARP_OPENBLAS_PATH</c>, or null.</summary>
    public static string? OpenBlasPath { get; } = Get("VITSHARP_OPENBLAS_PATH");

    /// <summary><c>VITSHARP_OPENBLAS_CORETYPE</c> trimmed, or null when unset or blank.</summary>
    public static string? OpenBlasCoreType { get; } = Get("VITSHARP_OPENBLAS_CORETYPE")?.Trim() is { Length: > 0 } s ? s : null;

    /// <summary><c>VITSHARP_NATIVE_KERNELS</c> trimmed (<c>off</c> or a library path), or null when unset or blank.</summary>
    public static string? NativeKernels { get; } = Get("VITSHARP_NATIVE_KERNELS")?.Trim() is { Length: > 0 } s ? s : null;

    /// <summary><c>VITSHARP_OPENBLAS_THREAD_TIMEOUT</c>, or null.</summary>
    public static string? OpenBlasThreadTimeout { get; } = Get("VITSHARP_OPENBLAS_THREAD_TIMEOUT");

    /// <summary>The inherited <c>OPENBLAS_THREAD_TIMEOUT</c> (OpenBLAS's own variable), or null.</summary>
    public static string? InheritedOpenBlasThreadTimeout { get; } = Get("OPENBLAS_THREAD_TIMEOUT");

    /// <summary>The inherited <c>OPENBLAS_CORETYPE</c> (OpenBLAS's own variable), or null.</summary>
    public static string? InheritedOpenBlasCoreType { get; } = Get("OPENBLAS_CORETYPE");

    private static string? Get(string name) => Environment.GetEnvironmentVariable(name);

    private static int? PositiveInt(string name) => int.TryParse(Get(name), out int v) && v > 0 ? v : null;
}
