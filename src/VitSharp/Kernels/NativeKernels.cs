using System.Runtime.InteropServices;

namespace VitSharp.Kernels;

/// <summary>Which implementation a low-precision kernel (<see cref="Int8Gemm"/>, <c>Bf16Gemm</c>) uses.</summary>
public enum LowPrecisionPath
{
    /// <summary>The native kernel when <c>libvitsharp_kernels.so</c> is loaded and the CPU has the instructions, else the managed fallback.</summary>
    Auto,
    /// <summary>Always the managed fallback (for tests and comparisons).</summary>
    Managed,
    /// <summary>Require the native kernel: throws <see cref="PlatformNotSupportedException"/> when it is not available.</summary>
    Native,
}

/// <summary>
/// The optional native library <c>libvitsharp_kernels.so</c> (C with intrinsics, built from
/// <c>src/VitSharp/Native/vitsharp_kernels.c</c> by gcc during the build on Linux x64), loaded at run time. Absent
/// library, another OS or an old CPU ⇒ <see cref="IsLoaded"/> or the feature flags are false and the low-precision
/// kernels use their managed fallbacks.
/// </summary>
/// <remarks>
/// Search order: <c>VITSHARP_NATIVE_KERNELS</c> when it names a file (<c>off</c> disables the library), then the
/// assembly's directory and the application's native search paths (NuGet: <c>runtimes/linux-x64/native</c>).
/// </remarks>
public static unsafe class NativeKernels
{
    private const int AbiVersion = 1;
    private const int FeatureVnni = 1, FeatureBf16 = 2, FeatureAvx512F = 4;

    internal static readonly delegate* unmanaged<byte*, nint, int, sbyte*, int, int, int*, nint, void> U8S8GemmVnni;
    internal static readonly delegate* unmanaged<ushort*, nint, int, ushort*, int, int, float*, nint, void> Bf16GemmNative;
    internal static readonly delegate* unmanaged<ushort*, nint, int, ushort*, int, int, float*, nint, void> Bf16GemmEmulated;
    private static readonly int s_features;
    private static readonly string? s_failure;

    /// <summary>True when the library was found, loaded and has the expected ABI version.</summary>
    public static bool IsLoaded { get; }

    /// <summary>True when the library is loaded and the CPU has AVX-512F, AVX-512BW and AVX512_VNNI (the native int8 kernel).</summary>
    public static bool HasVnni => IsLoaded && (s_features & FeatureVnni) != 0 && U8S8GemmVnni != null;

    /// <summary>True when the library is loaded, was compiled with AVX512_BF16 support and the CPU has AVX-512F and AVX512_BF16 (the native bf16 kernel).</summary>
    public static bool HasAvx512Bf16 => IsLoaded && (s_features & FeatureBf16) != 0 && Bf16GemmNative != null;

    /// <summary>The library's emulated bf16 kernel (same packing and loops, the dot-product instruction emulated with AVX-512F) can run: for tests.</summary>
    internal static bool HasBf16Emulation => IsLoaded && (s_features & FeatureAvx512F) != 0 && Bf16GemmEmulated != null;

    /// <summary>A one-line summary, e.g. <c>native: avx512-vnni, no avx512-bf16</c> or <c>native: not loaded (…)</c>.</summary>
    public static string Describe() => IsLoaded
        ? $"native: {(HasVnni ? "avx512-vnni" : "no avx512-vnni")}, {(HasAvx512Bf16 ? "avx512-bf16" : "no avx512-bf16")}"
        : $"native: not loaded ({s_failure})";

    static NativeKernels()
    {
        try
        {
            string? setting = VitSharpEnvironment.NativeKernels;
            if (string.Equals(setting, "off", StringComparison.OrdinalIgnoreCase)) { s_failure = "VITSHARP_NATIVE_KERNELS=off"; return; }
            if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            {
                s_failure = "only built for Linux x64";
                return;
            }
            const string name = "libvitsharp_kernels.so";
            nint lib = 0;
            bool ok = (setting != null && NativeLibrary.TryLoad(setting, out lib))
                || NativeLibrary.TryLoad(Path.Combine(AppContext.BaseDirectory, name), out lib)
                || NativeLibrary.TryLoad(Path.Combine(Path.GetDirectoryName(typeof(NativeKernels).Assembly.Location) ?? "", name), out lib)
                || NativeLibrary.TryLoad(name, typeof(NativeKernels).Assembly, null, out lib);
            if (!ok) { s_failure = $"{name} not found"; return; }
            if (!NativeLibrary.TryGetExport(lib, "vs_abi_version", out nint version)
                || ((delegate* unmanaged<int>)version)() != AbiVersion
                || !NativeLibrary.TryGetExport(lib, "vs_features", out nint features))
            {
                s_failure = $"{name} has another ABI version";
                return;
            }
            s_features = ((delegate* unmanaged<int>)features)();
            if (NativeLibrary.TryGetExport(lib, "vs_u8s8_gemm_vnni", out nint vnni))
                U8S8GemmVnni = (delegate* unmanaged<byte*, nint, int, sbyte*, int, int, int*, nint, void>)vnni;
            if (NativeLibrary.TryGetExport(lib, "vs_bf16_gemm", out nint bf16))
                Bf16GemmNative = (delegate* unmanaged<ushort*, nint, int, ushort*, int, int, float*, nint, void>)bf16;
            if (NativeLibrary.TryGetExport(lib, "vs_bf16_gemm_emulated", out nint emu))
                Bf16GemmEmulated = (delegate* unmanaged<ushort*, nint, int, ushort*, int, int, float*, nint, void>)emu;
            IsLoaded = true;
        }
        catch (Exception e)
        {
            s_failure = e.GetType().Name;
            IsLoaded = false;
        }
    }
}
