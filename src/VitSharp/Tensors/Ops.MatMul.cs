using System.Numerics.Tensors;
using VitSharp.Kernels;

namespace VitSharp;

public sealed partial class Tensor
{
    /// <summary>
    /// Matrix product op(A)·op(B) over the last two dimensions, batched over the leading ones.
    /// A is [..., M, K] ([..., K, M] when <paramref name="transA"/>), B is [..., K, N] ([..., N, K] when
    /// <paramref name="transB"/>) with the same leading dimensions, or a 2-D B shared by every batch entry.
    /// </summary>
    public static Tensor MatMul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        if (a.Rank < 2 || b.Rank < 2) throw new ArgumentException($"matmul needs matrices, got {ShapeString(a._shape)} and {ShapeString(b._shape)}");
        int m = transA ? a._shape[^1] : a._shape[^2];
        int k = transA ? a._shape[^2] : a._shape[^1];
        int kb = transB ? b._shape[^1] : b._shape[^2];
        int n = transB ? b._shape[^2] : b._shape[^1];
        if (k != kb) throw new ArgumentException($"matmul: inner dimensions differ ({ShapeString(a._shape)}{(transA ? "ᵀ" : "")} · {ShapeString(b._shape)}{(transB ? "ᵀ" : "")})");
        bool shared = b.Rank == 2;
        if (!shared && !a._shape.AsSpan(0, a.Rank - 2).SequenceEqual(b._shape.AsSpan(0, b.Rank - 2)))
            throw new ArgumentException($"matmul: batch dimensions of {ShapeString(a._shape)} and {ShapeString(b._shape)} differ");
        int batch = 1;
        for (int i = 0; i < a.Rank - 2; i++) batch *= a._shape[i];
        Span<int> outShape = stackalloc int[a.Rank];
        a.ShapeSpan.CopyTo(outShape);
        outShape[^2] = m; outShape[^1] = n;
        var result = Empty(outShape);
        int lda = transA ? m : k, ldb = transB ? k : n;
        long sA = (long)m * k, sB = shared ? 0 : (long)k * n, sC = (long)m * n;

        Batched(transA, transB, m, n, k, a.Data, lda, sA, b.Data, ldb, sB, result.Data, n, sC, batch, 0f);

        OpTrace.Current?.Op("matmul", result, [a, b], new OpAttributes { Flag = transA, Flag2 = transB });
        var st = new MatMulState { A = a, B = b, TransA = transA, TransB = transB, M = m, N = n, K = k, Batch = batch, SA = sA, SB = sB, SC = sC };
        return Autograd.Record(result, "matmul", [a, b], st, static (in MatMulState s, Tensor r) =>
        {
            var (a, b, m, n, k, batch) = (s.A, s.B, s.M, s.N, s.K, s.Batch);
            int lda = s.TransA ? m : k, ldb = s.TransB ? k : n;
            var g = r.Grad!.Data;
            if (a.RequiresGrad)
            {
                if (!s.TransA) Batched(false, !s.TransB, m, k, n, g, n, s.SC, b.Data, ldb, s.SB, a.Grad0(), k, s.SA, batch, 1f);
                else Batched(s.TransB, true, k, m, n, b.Data, ldb, s.SB, g, n, s.SC, a.Grad0(), m, s.SA, batch, 1f);
            }
            if (b.RequiresGrad)
            {
                // With a shared B the per-batch contributions accumulate into one gradient: run them in order.
                if (!s.TransB) Batched(!s.TransA, false, k, n, m, a.Data, lda, s.SA, g, n, s.SC, b.Grad0(), n, s.SB, batch, 1f);
                else Batched(true, s.TransA, n, k, m, g, n, s.SC, a.Data, lda, s.SA, b.Grad0(), k, s.SB, batch, 1f);
            }
        });
    }

    private struct MatMulState { public Tensor A, B; public bool TransA, TransB; public int M, N, K, Batch; public long SA, SB, SC; }

    private static void Batched(bool ta, bool tb, int m, int n, int k, float[] a, int lda, long sa,
        float[] b, int ldb, long sb, float[] c, int ldc, long sc, int batch, float beta)
    {
        if (batch == 1) { Gemm.Sgemm(ta, tb, m, n, k, 1f, a, lda, b, ldb, beta, c, ldc); return; }
        // A·B with B shared and A not transposed: one tall GEMM over all batch rows.
        if (sb == 0 && !ta && sc != 0 && sa == (long)m * lda && sc == (long)m * ldc)
        { Gemm.Sgemm(false, tb, m * batch, n, k, 1f, a, lda, b, ldb, beta, c, ldc); return; }
        if (sc == 0 || sb == 0 || sa == 0)
        {
            // A shared operand or a shared destination: sequential so accumulation does not race.
            for (int i = 0; i < batch; i++)
                Gemm.Sgemm(ta, tb, m, n, k, 1f, a.AsSpan((int)(i * sa)), lda, b.AsSpan((int)(i * sb)), ldb, beta, c.AsSpan((int)(i * sc)), ldc);
            return;
        }
        Gemm.SgemmStridedBatched(ta, tb, m, n, k, 1f, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
    }
}
