namespace VitSharp.Kernels;

/// <summary>
/// Single-precision GEMM over row-major matrices: C = alpha·op(A)·op(B) + beta·C,
/// where op(A) is [m, k], op(B) is [k, n] and C is [m, n].
/// </summary>
/// <remarks>Placeholder reference implementation; replaced by the packed SIMD kernel.</remarks>
public static class Gemm
{
    /// <summary>C = alpha·op(A)·op(B) + beta·C (row-major, leading dimensions in elements).</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        bool parallel = true)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++)
                    s += (transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                c[i * ldc + j] = beta == 0 ? alpha * s : alpha * s + beta * c[i * ldc + j];
            }
    }

    /// <summary>Strided batched GEMM: for each batch index i, C_i = alpha·op(A_i)·op(B_i) + beta·C_i.</summary>
    public static void SgemmStridedBatched(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, long strideA, ReadOnlySpan<float> b, int ldb, long strideB,
        float beta, Span<float> c, int ldc, long strideC, int batch)
    {
        for (int i = 0; i < batch; i++)
            Sgemm(transA, transB, m, n, k, alpha, a[(int)(i * strideA)..], lda, b[(int)(i * strideB)..], ldb,
                beta, c[(int)(i * strideC)..], ldc, parallel: false);
    }
}
