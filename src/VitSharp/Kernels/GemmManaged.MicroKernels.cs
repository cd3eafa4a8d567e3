using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>The register-blocked micro-kernels: C[MR×NR] = alpha·Apanel·Bpanel + beta·C, each prefetching its C tile.</summary>
internal static unsafe partial class GemmManaged
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x64V512(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (Sse.IsSupported)
        {
            // The C tile is often cold (large m·n); start fetching its 6 rows × 4 lines now, the k loop hides it.
            for (int i = 0; i < MR; i++)
            {
                float* row = c + (long)i * ldc;
                Sse.Prefetch0(row); Sse.Prefetch0(row + 16); Sse.Prefetch0(row + 32); Sse.Prefetch0(row + 48); Sse.Prefetch0(row + 63);
            }
        }
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c43 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default, c53 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var b3 = Vector512.Load(b + 48);
            var av = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(av, b0, c00); c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(av, b2, c02); c03 = Vector512.FusedMultiplyAdd(av, b3, c03);
            av = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(av, b0, c10); c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(av, b2, c12); c13 = Vector512.FusedMultiplyAdd(av, b3, c13);
            av = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(av, b0, c20); c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(av, b2, c22); c23 = Vector512.FusedMultiplyAdd(av, b3, c23);
            av = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(av, b0, c30); c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(av, b2, c32); c33 = Vector512.FusedMultiplyAdd(av, b3, c33);
            av = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(av, b0, c40); c41 = Vector512.FusedMultiplyAdd(av, b1, c41);
            c42 = Vector512.FusedMultiplyAdd(av, b2, c42); c43 = Vector512.FusedMultiplyAdd(av, b3, c43);
            av = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(av, b0, c50); c51 = Vector512.FusedMultiplyAdd(av, b1, c51);
            c52 = Vector512.FusedMultiplyAdd(av, b2, c52); c53 = Vector512.FusedMultiplyAdd(av, b3, c53);
            a += MR;
            b += 64;
        }
        var va = Vector512.Create(alpha);
        if (beta == 0)
        {
            Store0(c, va, c00, c01, c02, c03); c += ldc;
            Store0(c, va, c10, c11, c12, c13); c += ldc;
            Store0(c, va, c20, c21, c22, c23); c += ldc;
            Store0(c, va, c30, c31, c32, c33); c += ldc;
            Store0(c, va, c40, c41, c42, c43); c += ldc;
            Store0(c, va, c50, c51, c52, c53);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Store1(c, va, vb, c00, c01, c02, c03); c += ldc;
            Store1(c, va, vb, c10, c11, c12, c13); c += ldc;
            Store1(c, va, vb, c20, c21, c22, c23); c += ldc;
            Store1(c, va, vb, c30, c31, c32, c33); c += ldc;
            Store1(c, va, vb, c40, c41, c42, c43); c += ldc;
            Store1(c, va, vb, c50, c51, c52, c53);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store0(float* c, Vector512<float> va, Vector512<float> x0, Vector512<float> x1,
        Vector512<float> x2, Vector512<float> x3)
    {
        Vector512.Store(va * x0, c);
        Vector512.Store(va * x1, c + 16);
        Vector512.Store(va * x2, c + 32);
        Vector512.Store(va * x3, c + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store1(float* c, Vector512<float> va, Vector512<float> vb, Vector512<float> x0,
        Vector512<float> x1, Vector512<float> x2, Vector512<float> x3)
    {
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x0, vb * Vector512.Load(c)), c);
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x1, vb * Vector512.Load(c + 16)), c + 16);
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x2, vb * Vector512.Load(c + 32)), c + 32);
        Vector512.Store(Vector512.FusedMultiplyAdd(va, x3, vb * Vector512.Load(c + 48)), c + 48);
    }

    /// <summary>
    /// The first 16 · <paramref name="vectors"/> (1 or 2) columns of <see cref="Kernel6x64V512"/>'s tile, for a last panel
    /// that narrow (the rest of the 64-wide packed panel is zero padding): b is read with the panel's stride of 64, the
    /// 6 × 16·vectors sums go to c with a row stride of 64, unscaled (the caller copies them out with alpha and beta).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelNarrowV512(int vectors, int kc, float* a, float* b, float* c)
    {
        Vector512<float> c00 = default, c10 = default, c20 = default, c30 = default, c40 = default, c50 = default;
        if (vectors == 1)
        {
            for (int p = 0; p < kc; p++)
            {
                var b0 = Vector512.Load(b);
                c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c00);
                c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c10);
                c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c20);
                c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c30);
                c40 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b0, c40);
                c50 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b0, c50);
                a += MR;
                b += 64;
            }
            c00.Store(c); c10.Store(c + 64); c20.Store(c + 128); c30.Store(c + 192); c40.Store(c + 256); c50.Store(c + 320);
            return;
        }
        Vector512<float> c01 = default, c11 = default, c21 = default, c31 = default, c41 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var av = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(av, b0, c00); c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(av, b0, c10); c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(av, b0, c20); c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(av, b0, c30); c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(av, b0, c40); c41 = Vector512.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(av, b0, c50); c51 = Vector512.FusedMultiplyAdd(av, b1, c51);
            a += MR;
            b += 64;
        }
        c00.Store(c); c01.Store(c + 16); c10.Store(c + 64); c11.Store(c + 80); c20.Store(c + 128); c21.Store(c + 144);
        c30.Store(c + 192); c31.Store(c + 208); c40.Store(c + 256); c41.Store(c + 272); c50.Store(c + 320); c51.Store(c + 336);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16Avx2(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (Sse.IsSupported)
        {
            // The C tile is often cold (large m·n); start fetching its rows now, the k loop hides the latency.
            for (int i = 0; i < MR; i++)
            {
                float* row = c + (long)i * ldc;
                Sse.Prefetch0(row); Sse.Prefetch0(row + 15);
            }
        }
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx.LoadVector256(b);
            var b1 = Avx.LoadVector256(b + 8);
            var av = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Vector256.Create(a[4]);
            c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Vector256.Create(a[5]);
            c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            a += MR;
            b += 16;
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        bool b0z = beta == 0;
        StoreRow256(c, va, vb, b0z, c00, c01); c += ldc;
        StoreRow256(c, va, vb, b0z, c10, c11); c += ldc;
        StoreRow256(c, va, vb, b0z, c20, c21); c += ldc;
        StoreRow256(c, va, vb, b0z, c30, c31); c += ldc;
        StoreRow256(c, va, vb, b0z, c40, c41); c += ldc;
        StoreRow256(c, va, vb, b0z, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow256(float* c, Vector256<float> va, Vector256<float> vb, bool beta0,
        Vector256<float> x0, Vector256<float> x1)
    {
        if (beta0)
        {
            Vector256.Store(va * x0, c);
            Vector256.Store(va * x1, c + 8);
        }
        else
        {
            Vector256.Store(Fma.MultiplyAdd(va, x0, vb * Vector256.Load(c)), c);
            Vector256.Store(Fma.MultiplyAdd(va, x1, vb * Vector256.Load(c + 8)), c + 8);
        }
    }

    private static void Kernel6x16Scalar(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        const int nr = 16;
        float* acc = stackalloc float[MR * nr];
        new Span<float>(acc, MR * nr).Clear();
        for (int p = 0; p < kc; p++)
        {
            for (int i = 0; i < MR; i++)
            {
                float ai = a[i];
                float* row = acc + i * nr;
                for (int j = 0; j < nr; j++) row[j] += ai * b[j];
            }
            a += MR;
            b += nr;
        }
        for (int i = 0; i < MR; i++)
        {
            float* dst = c + (long)i * ldc;
            float* src = acc + i * nr;
            if (beta == 0) for (int j = 0; j < nr; j++) dst[j] = alpha * src[j];
            else for (int j = 0; j < nr; j++) dst[j] = alpha * src[j] + beta * dst[j];
        }
    }
}
