using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>The processor's vendor and family from CPUID (leaf 0 and leaf 1), for kernel choices measured per kind of
/// CPU (like OpenBLAS's own core selection). Empty and 0 where CPUID is not available.</summary>
internal static class CpuIdentity
{
    /// <summary>"AuthenticAMD", "GenuineIntel", … or "" without CPUID.</summary>
    public static readonly string Vendor;

    /// <summary>The display family (base family, plus the extended family when the base is 0xF): 0x19 for AMD Zen 3/4,
    /// 0x1A for Zen 5, 6 for Intel's cores.</summary>
    public static readonly int Family;

    static CpuIdentity()
    {
        Vendor = "";
        if (!X86Base.IsSupported) return;
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<byte> name = stackalloc byte[12];
        BitConverter.TryWriteBytes(name, ebx);
        BitConverter.TryWriteBytes(name[4..], edx);
        BitConverter.TryWriteBytes(name[8..], ecx);
        Vendor = System.Text.Encoding.ASCII.GetString(name);
        int eax1 = X86Base.CpuId(1, 0).Eax;
        int baseFamily = (eax1 >> 8) & 0xF;
        Family = baseFamily == 0xF ? baseFamily + ((eax1 >> 20) & 0xFF) : baseFamily;
    }

    /// <summary>AMD Zen 4: family 0x19 with AVX-512 (Zen 3 has the same family and no AVX-512), which runs 512-bit
    /// instructions on 256-bit units.</summary>
    public static bool IsZen4 => Vendor == "AuthenticAMD" && Family == 0x19 && Avx512F.IsSupported;
}
