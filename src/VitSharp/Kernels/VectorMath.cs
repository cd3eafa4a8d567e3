using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// Float32 vector functions for the inner loops of fused kernels where <see cref="Vector256.Exp(Vector256{float})"/>
/// (evaluated through double precision) dominates: exp by Cephes' expf scheme — n = round(x·log₂e), r = x − n·ln 2 in two
/// parts, a degree-6 polynomial in r, then ·2ⁿ through the exponent bits. Relative error ≤ 2 ulp on [−87.3, 88.7].
/// </summary>
internal static class VectorMath
{
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f,
        P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;
    /// <summary>Inputs are clamped to [MinArg, MaxArg]: exp(MinArg) ≈ 1.2e-38 (the smallest normal float), exp(MaxArg) ≈ 3.4e38.</summary>
    public const float MinArg = -87.33654f, MaxArg = 88.72283f;

    /// <summary>Whether <see cref="Exp(Vector256{float})"/> runs on this CPU (AVX2 and FMA).</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>e^x per lane (x clamped to [<see cref="MinArg"/>, <see cref="MaxArg"/>]; NaN stays NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var input = x;
        var nan = Avx.CompareUnordered(x, x);
        x = Avx.Min(Avx.Max(x, Vector256.Create(MinArg)), Vector256.Create(MaxArg));
        var n = Avx.RoundToNearestInteger(Avx.Multiply(x, Vector256.Create(Log2E)));
        var r = Fma.MultiplyAddNegated(n, Vector256.Create(Ln2Hi), x);
        r = Fma.MultiplyAddNegated(n, Vector256.Create(Ln2Lo), r);
        var p = Fma.MultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P2));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P3));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P4));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P5));
        var y = Fma.MultiplyAdd(p, Avx.Multiply(r, r), Avx.Add(r, Vector256<float>.One));
        // 2ⁿ: n + 127 in the exponent field. n ∈ [−126, 128]: split 2ⁿ = 2^(n−h)·2^h with h = n/2 so both halves are normal.
        var ni = Avx.ConvertToVector256Int32(n);
        var half = Avx2.ShiftRightArithmetic(ni, 1);
        var s1 = Avx2.ShiftLeftLogical(Avx2.Add(half, Vector256.Create(127)), 23).AsSingle();
        var s2 = Avx2.ShiftLeftLogical(Avx2.Add(Avx2.Subtract(ni, half), Vector256.Create(127)), 23).AsSingle();
        y = Avx.Multiply(Avx.Multiply(y, s1), s2);
        return Avx.BlendVariable(y, input, nan);
    }

    /// <summary>e^x on 16 lanes (AVX-512F): the same operations lane by lane as <see cref="Exp(Vector256{float})"/>, so
    /// the same results bit for bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var input = x;
        var nan = Avx512F.CompareUnordered(x, x);
        x = Avx512F.Min(Avx512F.Max(x, Vector512.Create(MinArg)), Vector512.Create(MaxArg));
        var n = Avx512F.RoundScale(Avx512F.Multiply(x, Vector512.Create(Log2E)), 0);   // nearest, ties to even
        var r = Avx512F.FusedMultiplyAddNegated(n, Vector512.Create(Ln2Hi), x);
        r = Avx512F.FusedMultiplyAddNegated(n, Vector512.Create(Ln2Lo), r);
        var p = Avx512F.FusedMultiplyAdd(Vector512.Create(P0), r, Vector512.Create(P1));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(P2));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(P3));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(P4));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(P5));
        var y = Avx512F.FusedMultiplyAdd(p, Avx512F.Multiply(r, r), Avx512F.Add(r, Vector512<float>.One));
        var ni = Avx512F.ConvertToVector512Int32(n);
        var half = Avx512F.ShiftRightArithmetic(ni, 1);
        var s1 = Avx512F.ShiftLeftLogical(Avx512F.Add(half, Vector512.Create(127)), 23).AsSingle();
        var s2 = Avx512F.ShiftLeftLogical(Avx512F.Add(Avx512F.Subtract(ni, half), Vector512.Create(127)), 23).AsSingle();
        y = Avx512F.Multiply(Avx512F.Multiply(y, s1), s2);
        return Vector512.ConditionalSelect(nan, input, y);
    }
}
