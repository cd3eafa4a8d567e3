using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>
/// GELU, exact erf form (PyTorch's default): y = x · Φ(x) = ½x(1 + erf(x/√2)). Elementwise over any length,
/// vectorized (Vector512 / Vector256) with a float32 rational erf (|error| &lt; 1e-6 against the exact function).
/// </summary>
public static class GeluKernel
{
    private const float InvSqrt2 = 0.70710678118654752440f;
    private const float InvSqrt2Pi = 0.39894228040143267794f;

    /// <summary>y = gelu(x).</summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException("destination too short", nameof(y));
        int i = 0;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        if (Vector512.IsHardwareAccelerated)
            for (; i <= x.Length - 16; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref xr, (nuint)i);
                var cdf = (Vector512<float>.One + Erf(v * InvSqrt2)) * 0.5f;
                (v * cdf).StoreUnsafe(ref yr, (nuint)i);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i <= x.Length - 8; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                var cdf = (Vector256<float>.One + Erf(v * InvSqrt2)) * 0.5f;
                (v * cdf).StoreUnsafe(ref yr, (nuint)i);
            }
        for (; i < x.Length; i++)
            y[i] = x[i] * ((1f + Erf(x[i] * InvSqrt2)) * 0.5f);
    }

    /// <summary>dx += dy · (Φ(x) + x·φ(x)); with <paramref name="accumulate"/> false, dx = dy · (Φ(x) + x·φ(x)) (dx need not be
    /// cleared: the same values as adding to zeros).</summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, bool accumulate = true)
    {
        if (dy.Length < x.Length || dx.Length < x.Length) throw new ArgumentException("dy or dx shorter than x");
        if (VectorMath.IsSupported) { BackwardFused(dy, x, dx, accumulate); return; }
        if (!accumulate) dx[..x.Length].Clear();
        // φ(x) = exp(−x²/2)/√(2π) goes through TensorPrimitives.Exp in blocks that stay in L1.
        const int Block = 512;
        Span<float> pdf = stackalloc float[Block];
        for (int start = 0; start < x.Length; start += Block)
        {
            int n = Math.Min(Block, x.Length - start);
            var xs = x.Slice(start, n);
            var p = pdf[..n];
            TensorPrimitives.Multiply(xs, xs, p);
            TensorPrimitives.Multiply(p, -0.5f, p);
            TensorPrimitives.Exp(p, p);
            BackwardBlock(dy.Slice(start, n), xs, p, dx.Slice(start, n));
        }
    }

    // One pass with VectorMath.Exp (AVX2, and 16 lanes with AVX-512: the same operations lane by lane, so the same bits):
    // φ(x) in registers instead of a block of TensorPrimitives.Exp results.
    private static void BackwardFused(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, bool accumulate)
    {
        int i = 0;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float gr = ref MemoryMarshal.GetReference(dy);
        ref float dr = ref MemoryMarshal.GetReference(dx);
        if (Avx512F.IsSupported)
            for (; i <= x.Length - 16; i += 16)
                BackwardLanes512(ref Unsafe.Add(ref xr, i), ref Unsafe.Add(ref gr, i), ref Unsafe.Add(ref dr, i), accumulate);
        for (; i <= x.Length - 8; i += 8)
            BackwardLanes(ref Unsafe.Add(ref xr, i), ref Unsafe.Add(ref gr, i), ref Unsafe.Add(ref dr, i), accumulate);
        if (i < x.Length)
        {
            // The tail through the same lanes (padded with zeros), so that an element's result does not depend on
            // where a chunk boundary falls.
            int rem = x.Length - i;
            Span<float> t = stackalloc float[24];
            t.Clear();
            x.Slice(i, rem).CopyTo(t);
            dy.Slice(i, rem).CopyTo(t.Slice(8));
            dx.Slice(i, rem).CopyTo(t.Slice(16));
            BackwardLanes(ref t[0], ref t[8], ref t[16], accumulate);
            t.Slice(16, rem).CopyTo(dx.Slice(i));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardLanes(ref float x, ref float dy, ref float dx, bool accumulate)
    {
        var v = Vector256.LoadUnsafe(ref x);
        var cdf = (Vector256<float>.One + Erf(v * InvSqrt2)) * 0.5f;
        var pdf = VectorMath.Exp(v * v * Vector256.Create(-0.5f)) * InvSqrt2Pi;
        var acc = accumulate ? Vector256.LoadUnsafe(ref dx) : Vector256<float>.Zero;
        (acc + Vector256.LoadUnsafe(ref dy) * (cdf + v * pdf)).StoreUnsafe(ref dx);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardLanes512(ref float x, ref float dy, ref float dx, bool accumulate)
    {
        var v = Vector512.LoadUnsafe(ref x);
        var cdf = (Vector512<float>.One + Erf(v * InvSqrt2)) * 0.5f;
        var pdf = VectorMath.Exp(v * v * Vector512.Create(-0.5f)) * InvSqrt2Pi;
        var acc = accumulate ? Vector512.LoadUnsafe(ref dx) : Vector512<float>.Zero;
        (acc + Vector512.LoadUnsafe(ref dy) * (cdf + v * pdf)).StoreUnsafe(ref dx);
    }

    private static void BackwardBlock(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> expTerm, Span<float> dx)
    {
        int i = 0;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float gr = ref MemoryMarshal.GetReference(dy);
        ref float er = ref MemoryMarshal.GetReference(expTerm);
        ref float dr = ref MemoryMarshal.GetReference(dx);
        if (Vector512.IsHardwareAccelerated)
            for (; i <= x.Length - 16; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref xr, (nuint)i);
                var cdf = (Vector512<float>.One + Erf(v * InvSqrt2)) * 0.5f;
                var pdf = Vector512.LoadUnsafe(ref er, (nuint)i) * InvSqrt2Pi;
                var d = Vector512.LoadUnsafe(ref dr, (nuint)i) + Vector512.LoadUnsafe(ref gr, (nuint)i) * (cdf + v * pdf);
                d.StoreUnsafe(ref dr, (nuint)i);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i <= x.Length - 8; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                var cdf = (Vector256<float>.One + Erf(v * InvSqrt2)) * 0.5f;
                var pdf = Vector256.LoadUnsafe(ref er, (nuint)i) * InvSqrt2Pi;
                var d = Vector256.LoadUnsafe(ref dr, (nuint)i) + Vector256.LoadUnsafe(ref gr, (nuint)i) * (cdf + v * pdf);
                d.StoreUnsafe(ref dr, (nuint)i);
            }
        for (; i < x.Length; i++)
        {
            float v = x[i];
            float cdf = (1f + Erf(v * InvSqrt2)) * 0.5f;
            dx[i] += dy[i] * (cdf + v * (expTerm[i] * InvSqrt2Pi));
        }
    }

    // Rational approximation of erf on [−4, 4] (odd numerator of degree 13, even denominator of degree 8;
    // the coefficients of Eigen's generic_fast_erf_float); erf(±4) rounds to ±1 in float32.
    private const float A1 = -1.60960333262415e-02f, A3 = -2.95459980854025e-03f, A5 = -7.34990630326855e-04f,
        A7 = -5.69250639462346e-05f, A9 = -2.10102402082508e-06f, A11 = 2.77068142495902e-08f, A13 = -2.72614225801306e-10f;
    private const float B0 = -1.42647390514189e-02f, B2 = -7.37332916720468e-03f, B4 = -1.68282697438203e-03f,
        B6 = -2.13374055278905e-04f, B8 = -1.45660718464996e-05f;

    /// <summary>float32 erf (scalar twin of the vector paths).</summary>
    public static float Erf(float a)
    {
        float x = Math.Clamp(a, -4f, 4f), x2 = x * x;
        float p = MathF.FusedMultiplyAdd(x2, A13, A11);
        p = MathF.FusedMultiplyAdd(x2, p, A9); p = MathF.FusedMultiplyAdd(x2, p, A7);
        p = MathF.FusedMultiplyAdd(x2, p, A5); p = MathF.FusedMultiplyAdd(x2, p, A3);
        p = MathF.FusedMultiplyAdd(x2, p, A1);
        float q = MathF.FusedMultiplyAdd(x2, B8, B6);
        q = MathF.FusedMultiplyAdd(x2, q, B4); q = MathF.FusedMultiplyAdd(x2, q, B2);
        q = MathF.FusedMultiplyAdd(x2, q, B0);
        return x * p / q;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Erf(Vector512<float> a)
    {
        var x = Vector512.Min(Vector512.Max(a, Vector512.Create(-4f)), Vector512.Create(4f));
        var x2 = x * x;
        var p = Vector512.FusedMultiplyAdd(x2, Vector512.Create(A13), Vector512.Create(A11));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A9)); p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A7));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A5)); p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A3));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A1));
        var q = Vector512.FusedMultiplyAdd(x2, Vector512.Create(B8), Vector512.Create(B6));
        q = Vector512.FusedMultiplyAdd(x2, q, Vector512.Create(B4)); q = Vector512.FusedMultiplyAdd(x2, q, Vector512.Create(B2));
        q = Vector512.FusedMultiplyAdd(x2, q, Vector512.Create(B0));
        return x * p / q;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Erf(Vector256<float> a)
    {
        var x = Vector256.Min(Vector256.Max(a, Vector256.Create(-4f)), Vector256.Create(4f));
        var x2 = x * x;
        var p = Vector256.FusedMultiplyAdd(x2, Vector256.Create(A13), Vector256.Create(A11));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A9)); p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A7));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A5)); p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A3));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A1));
        var q = Vector256.FusedMultiplyAdd(x2, Vector256.Create(B8), Vector256.Create(B6));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(B4)); q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(B2));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(B0));
        return x * p / q;
    }
}

/// <summary>Special functions missing from System.Math.</summary>
public static class SpecialFunctions
{
    /// <summary>
    /// The error function to near double precision (W. J. Cody's rational Chebyshev approximations,
    /// as in Cephes' erf/erfc).
    /// </summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax <= 1.0)
        {
            double z = x * x;
            // Cephes ndtr.c T/U coefficients: erf(x) = x·T(x²)/U(x²)
            double t = ((((9.60497373987051638749E0 * z + 9.00260197203842689217E1) * z + 2.23200534594684319226E3) * z
                         + 7.00332514112805075473E3) * z + 5.55923013010394962768E4);
            double u = (((((z + 3.35617141647503099647E1) * z + 5.21357949780152679795E2) * z + 4.59432382970980127987E3) * z
                         + 2.26290000613890934246E4) * z + 4.92673942608635921086E4);
            return x * t / u;
        }
        double r = Erfc(ax);
        return x < 0 ? r - 1.0 : 1.0 - r;
    }

    /// <summary>The complementary error function erfc(x) = 1 − erf(x), accurate in the tails.</summary>
    public static double Erfc(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 1.0) return 1.0 - Erf(x);
        if (ax > 27) return x < 0 ? 2.0 : 0.0;
        double e = ExpMinusSquare(ax);
        double p, q;
        if (ax < 8.0)
        {
            p = Poly(ax, P); q = Poly1(ax, Q);
        }
        else
        {
            p = Poly(ax, R); q = Poly1(ax, S);
        }
        double y = e * p / q;
        return x < 0 ? 2.0 - y : y;
    }

    /// <summary>
    /// exp(−x²) without the error of rounding x² (which is up to ½ ulp of x², i.e. ~3e-14 relative in the
    /// result at x ≈ 20): x = m + f with m a multiple of 1/128, so m² is exact and the rest is small (Cephes' expx2).
    /// </summary>
    private static double ExpMinusSquare(double x)
    {
        double m = Math.Floor(x * 128 + 0.5) / 128;
        double f = x - m;
        return Math.Exp(-m * m) * Math.Exp(-(2 * m * f + f * f));
    }

    private static readonly double[] P =
    {
        2.46196981473530512524E-10, 5.64189564831068821977E-1, 7.46321056442269912687E0, 4.86371970985681366614E1,
        1.96520832956077098242E2, 5.26445194995477358631E2, 9.34528527171957607540E2, 1.02755188689515710272E3,
        5.57535335369399327526E2,
    };
    private static readonly double[] Q =
    {
        1.32281951154744992508E1, 8.67072140885989742329E1, 3.54937778887819891062E2, 9.75708501743205489753E2,
        1.82390916687909736289E3, 2.24633760818710981792E3, 1.65666309194161350182E3, 5.57535340817727675546E2,
    };
    private static readonly double[] R =
    {
        5.64189583547755073984E-1, 1.27536670759978104416E0, 5.01905042251180477414E0, 6.16021097993053585195E0,
        7.40974269950448939160E0, 2.97886665372100240670E0,
    };
    private static readonly double[] S =
    {
        2.26052863220117276590E0, 9.39603524938001434673E0, 1.20489539808096656605E1, 1.70814450747565897222E1,
        9.60896809063285878198E0, 3.36907645100081516050E0,
    };

    private static double Poly(double x, double[] c)
    {
        double r = c[0];
        for (int i = 1; i < c.Length; i++) r = r * x + c[i];
        return r;
    }

    // Polynomial with an implicit leading coefficient of 1.
    private static double Poly1(double x, double[] c)
    {
        double r = x + c[0];
        for (int i = 1; i < c.Length; i++) r = r * x + c[i];
        return r;
    }
}
