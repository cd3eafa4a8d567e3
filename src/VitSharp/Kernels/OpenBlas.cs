using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// Optional OpenBLAS backend, loaded at run time (<c>libopenblas.so.0</c>); absent library ⇒ unavailable, no crash.
/// </summary>
/// <remarks>
/// Core type: OpenBLAS reads <c>OPENBLAS_CORETYPE</c> with <c>getenv</c> when the library loads, and
/// <see cref="Environment.SetEnvironmentVariable(string, string)"/> does not touch the native environment on Linux,
/// so before loading we call libc <c>setenv</c>:
/// <list type="bullet">
/// <item><c>VITSHARP_OPENBLAS_CORETYPE=NAME</c> ⇒ <c>OPENBLAS_CORETYPE=NAME</c>; <c>VITSHARP_OPENBLAS_CORETYPE=keep</c> ⇒ leave the inherited value alone;</item>
/// <item>otherwise, when the CPU has AVX-512F ⇒ <c>OPENBLAS_CORETYPE=SkylakeX</c> (the machines default to Haswell, which runs at half speed here);</item>
/// <item>otherwise the inherited value (or OpenBLAS's own detection) is used.</item>
/// </list>
/// Threads: <c>openblas_set_num_threads</c> is process-global, so it is set once at load to
/// <see cref="Environment.ProcessorCount"/> (or <c>VITSHARP_OPENBLAS_THREADS</c>); single-threaded requests
/// (<c>parallel: false</c>) never go to OpenBLAS — the dispatcher routes them to the managed kernel.
/// Idle spin: unless <c>OPENBLAS_THREAD_TIMEOUT</c> is already set, it is set to <c>VITSHARP_OPENBLAS_THREAD_TIMEOUT</c>
/// or 16 (2^16 TSC ticks ≈ 30 µs instead of ~0.1 s), so OpenBLAS's threads do not steal a core from the managed
/// kernels that run between OpenBLAS calls.
/// </remarks>
internal static unsafe class OpenBlas
{
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private static readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> s_sgemm;
    private static readonly delegate* unmanaged<int, void> s_setThreads;
    private static readonly delegate* unmanaged<int> s_getThreads;
    private static readonly delegate* unmanaged<byte*> s_coreName;

    /// <summary>True when the library was found and exports <c>cblas_sgemm</c>.</summary>
    public static readonly bool IsAvailable;

    /// <summary>The core type OpenBLAS reports (e.g. "SkylakeX"), or null.</summary>
    public static string? CoreName => s_coreName == null ? null : Marshal.PtrToStringUTF8((nint)s_coreName());

    /// <summary>OpenBLAS's current thread count, or 0.</summary>
    public static int Threads => s_getThreads == null ? 0 : s_getThreads();

    /// <summary>The value given to <c>OPENBLAS_CORETYPE</c> before load, or null if left alone.</summary>
    public static readonly string? RequestedCoreType;

    /// <summary>The OPENBLAS_THREAD_TIMEOUT in effect at load (log2 of the idle spin in TSC ticks), or null for the default (28).</summary>
    public static readonly string? ThreadTimeout;

    [DllImport("libc.so.6", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    static OpenBlas()
    {
        try
        {
            RequestedCoreType = ChooseCoreType();
            if (RequestedCoreType != null && OperatingSystem.IsLinux())
            {
                try { SetEnv("OPENBLAS_CORETYPE", RequestedCoreType, 1); }
                catch (Exception) { RequestedCoreType = null; }
            }

            // OpenBLAS's idle threads busy-wait 2^28 TSC ticks (~0.1 s) after each call by default, stealing a core
            // from whatever runs next (the managed kernels, attention over heads, ...); measured: interleaved managed
            // 2048³ medians dropped from ~165 to ~130 GFLOP/s. Shorten it unless the user chose a value.
            ThreadTimeout = VitSharpEnvironment.InheritedOpenBlasThreadTimeout;
            if (ThreadTimeout == null && OperatingSystem.IsLinux())
            {
                string timeout = VitSharpEnvironment.OpenBlasThreadTimeout ?? "16";
                try { SetEnv("OPENBLAS_THREAD_TIMEOUT", timeout, 1); ThreadTimeout = timeout; }
                catch (Exception) { }
            }

            nint lib = 0;
            string? path = VitSharpEnvironment.OpenBlasPath;
            bool ok = (path != null && NativeLibrary.TryLoad(path, out lib))
                || NativeLibrary.TryLoad("libopenblas.so.0", out lib)
                || NativeLibrary.TryLoad("libopenblas.so", out lib)
                || NativeLibrary.TryLoad("libopenblas", out lib);
            if (!ok || !NativeLibrary.TryGetExport(lib, "cblas_sgemm", out nint sgemm)) return;
            s_sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)sgemm;
            if (NativeLibrary.TryGetExport(lib, "openblas_set_num_threads", out nint set))
                s_setThreads = (delegate* unmanaged<int, void>)set;
            if (NativeLibrary.TryGetExport(lib, "openblas_get_num_threads", out nint get))
                s_getThreads = (delegate* unmanaged<int>)get;
            if (NativeLibrary.TryGetExport(lib, "openblas_get_corename", out nint core))
                s_coreName = (delegate* unmanaged<byte*>)core;
            int threads = ComputeThreads.Freeze();
            if (VitSharpEnvironment.OpenBlasThreads is int t) threads = t;
            if (s_setThreads != null) s_setThreads(threads);
            IsAvailable = true;
        }
        catch (Exception)
        {
            IsAvailable = false;
        }
    }

    private static string? ChooseCoreType()
    {
        string? user = VitSharpEnvironment.OpenBlasCoreType;
        if (user != null)
            return user.Equals("keep", StringComparison.OrdinalIgnoreCase) ? null : user;
        return Avx512F.IsSupported ? "SkylakeX" : null;
    }

    /// <summary>cblas_sgemm in row-major order (OpenBLAS's own threading).</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (!IsAvailable) throw new InvalidOperationException("OpenBLAS is not available.");
        s_sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
}
