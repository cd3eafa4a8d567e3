using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using VitSharp.Kernels;

namespace VitSharp.Bench.Experiments;

/// <summary>
/// Experiment (issue 17): the managed GEMM's 6×64 AVX-512 micro-kernel reading A's six rows in place (row stride lda)
/// instead of from a packed panel, for products where A is large and B narrow (n of one to five 64-wide panels: the fmnist
/// model's Linear products, attention's P·V at 197 tokens), where packing A costs a pass over A per product. B is packed
/// into 64-wide zero-padded panels as in the library. Single-threaded, timed against <c>Gemm.Sgemm(Managed, parallel:
/// false)</c> interleaved; the sums are the same products in the same order, so the results must be equal.
/// <c>dotnet run -c Release --project bench/VitSharp.Bench -- gemm-direct [--shapes 3200x96x96t,...]</c>
/// </summary>
internal static unsafe class DirectAGemm
{
    public static void Run(string[] args)
    {
        if (!Avx512F.IsSupported) { Console.WriteLine("gemm-direct: needs AVX-512"); return; }
        int si = Array.IndexOf(args, "--shapes");
        var shapes = si >= 0 && si + 1 < args.Length
            ? args[si + 1].Split(',').Select(GemmShape.Parse).ToArray()
            : new[] { "3200x96x96t", "3200x288x96t", "3200x192x96t", "3200x96x192t", "3200x96x288", "197x64x197", "197x197x64t" }.Select(GemmShape.Parse).ToArray();
        Console.WriteLine($"{"shape (m x n x k)",-24} {"packed A ms",12} {"direct A ms",12} {"packed GF/s",12} {"direct GF/s",12} {"max |diff|",11}");
        foreach (var s in shapes)
        {
            if (s.TransA) { Console.WriteLine($"{s}: A stored [k, m] not covered"); continue; }
            var ops = new GemmOperands(s);
            int ldb = s.TransB ? s.K : s.N;
            var packed = new float[(s.N + 63) / 64 * 64 * s.K];
            var direct = new float[s.M * s.N];
            var tmp = new float[6 * 64];
            var rows = new float[6 * Math.Max(1, s.K)];
            void Direct()
            {
                fixed (float* pa = ops.A, pb = ops.B, pp = packed, pc = direct, pt = tmp, pr = rows)
                {
                    PackB(s.TransB, pb, ldb, s.K, s.N, pp);
                    Product(s.M, s.N, s.K, pa, s.K, pp, pc, s.N, pt, pr);
                }
            }
            void Packed() => Gemm.Sgemm(GemmBackend.Managed, false, s.TransB, s.M, s.N, s.K, 1f, ops.A, s.K, ops.B, ldb, 0f, ops.C, s.N, parallel: false);
            for (int w = 0; w < 20; w++) { Packed(); Direct(); }
            float maxDiff = 0;
            for (int i = 0; i < direct.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(direct[i] - ops.C[i]));
            int reps = (int)Math.Clamp(100e9 / s.Flops, 20, 400);
            var tp = new List<double>(); var td = new List<double>();
            for (int r = 0; r < reps; r++)
            {
                long t0 = Stopwatch.GetTimestamp(); Packed(); tp.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                t0 = Stopwatch.GetTimestamp(); Direct(); td.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            tp.Sort(); td.Sort();
            double mp = tp[tp.Count / 2], md = td[td.Count / 2];
            Console.WriteLine($"{s,-24} {mp,12:F3} {md,12:F3} {s.Flops / mp / 1e6,12:F1} {s.Flops / md / 1e6,12:F1} {maxDiff,11:G3}");
        }
    }

    // B [k, n] (or [n, k] when transB) into 64-wide panels of k rows, zero-padded past n.
    private static void PackB(bool transB, float* b, int ldb, int k, int n, float* dst)
    {
        for (int jr = 0; jr < n; jr += 64)
        {
            int w = Math.Min(64, n - jr);
            float* d = dst + (long)jr * k;
            for (int p = 0; p < k; p++, d += 64)
            {
                int j = 0;
                if (!transB) for (; j < w; j++) d[j] = b[(long)p * ldb + jr + j];
                else for (; j < w; j++) d[j] = b[(long)(jr + j) * ldb + p];
                for (; j < 64; j++) d[j] = 0;
            }
        }
    }

    // C = A·B with A read in place; rows past a multiple of 6 copied into a zero-padded 6-row block, a last panel narrower
    // than 64 through the scratch tile.
    private static void Product(int m, int n, int k, float* a, int lda, float* bp, float* c, int ldc, float* tmp, float* rows)
    {
        for (int jr = 0; jr < n; jr += 64)
        {
            int w = Math.Min(64, n - jr);
            float* b = bp + (long)jr * k;
            for (int i = 0; i < m; i += 6)
            {
                int h = Math.Min(6, m - i);
                float* ai = a + (long)i * lda;
                int ldA = lda;
                if (h < 6)
                {
                    new Span<float>(rows, 6 * k).Clear();
                    for (int r = 0; r < h; r++) new Span<float>(ai + (long)r * lda, k).CopyTo(new Span<float>(rows + r * k, k));
                    ai = rows; ldA = k;
                }
                if (w == 64 && h == 6) { Kernel(k, ai, ldA, b, c + (long)i * ldc + jr, ldc); continue; }
                Kernel(k, ai, ldA, b, tmp, 64);
                for (int r = 0; r < h; r++) new Span<float>(tmp + r * 64, w).CopyTo(new Span<float>(c + (long)(i + r) * ldc + jr, w));
            }
        }
    }

    private static void Kernel(int k, float* a, int lda, float* b, float* c, int ldc)
    {
        float* a0 = a, a1 = a + lda, a2 = a + 2L * lda, a3 = a + 3L * lda, a4 = a + 4L * lda, a5 = a + 5L * lda;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c43 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default, c53 = default;
        for (int p = 0; p < k; p++, b += 64)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + 16); var b2 = Vector512.Load(b + 32); var b3 = Vector512.Load(b + 48);
            var av = Vector512.Create(a0[p]);
            c00 = Vector512.FusedMultiplyAdd(av, b0, c00); c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(av, b2, c02); c03 = Vector512.FusedMultiplyAdd(av, b3, c03);
            av = Vector512.Create(a1[p]);
            c10 = Vector512.FusedMultiplyAdd(av, b0, c10); c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(av, b2, c12); c13 = Vector512.FusedMultiplyAdd(av, b3, c13);
            av = Vector512.Create(a2[p]);
            c20 = Vector512.FusedMultiplyAdd(av, b0, c20); c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(av, b2, c22); c23 = Vector512.FusedMultiplyAdd(av, b3, c23);
            av = Vector512.Create(a3[p]);
            c30 = Vector512.FusedMultiplyAdd(av, b0, c30); c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(av, b2, c32); c33 = Vector512.FusedMultiplyAdd(av, b3, c33);
            av = Vector512.Create(a4[p]);
            c40 = Vector512.FusedMultiplyAdd(av, b0, c40); c41 = Vector512.FusedMultiplyAdd(av, b1, c41);
            c42 = Vector512.FusedMultiplyAdd(av, b2, c42); c43 = Vector512.FusedMultiplyAdd(av, b3, c43);
            av = Vector512.Create(a5[p]);
            c50 = Vector512.FusedMultiplyAdd(av, b0, c50); c51 = Vector512.FusedMultiplyAdd(av, b1, c51);
            c52 = Vector512.FusedMultiplyAdd(av, b2, c52); c53 = Vector512.FusedMultiplyAdd(av, b3, c53);
        }
        Store(c, c00, c01, c02, c03); Store(c + ldc, c10, c11, c12, c13); Store(c + 2L * ldc, c20, c21, c22, c23);
        Store(c + 3L * ldc, c30, c31, c32, c33); Store(c + 4L * ldc, c40, c41, c42, c43); Store(c + 5L * ldc, c50, c51, c52, c53);
    }

    private static void Store(float* c, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3)
    {
        x0.Store(c); x1.Store(c + 16); x2.Store(c + 32); x3.Store(c + 48);
    }
}
