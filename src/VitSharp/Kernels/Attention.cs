using System.Buffers;
using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// Scaled dot-product attention per (batch, head), fused so that one head's scores stay in cache:
/// P = softmax(scale · Q·Kᵀ), O = P·V. Shapes: q, o [G, N, D]; k, v [G, M, D]; probs [G, N, M]
/// (G = B·H groups, N query tokens, M key tokens, D head dim). Parallel over groups.
/// </summary>
public static class AttentionKernel
{
    /// <summary>Forward pass; keeps the attention probabilities in <paramref name="probs"/> for the backward pass.</summary>
    public static void Forward(float[] q, float[] k, float[] v, int groups, int n, int m, int d, float scale,
        float[] probs, float[] o)
    {
        Run(groups, n * m * 2L * d, g =>
        {
            var qg = q.AsSpan(g * n * d, n * d);
            var kg = k.AsSpan(g * m * d, m * d);
            var vg = v.AsSpan(g * m * d, m * d);
            var pg = probs.AsSpan(g * n * m, n * m);
            Gemm.Sgemm(false, true, n, m, d, scale, qg, d, kg, d, 0f, pg, m, parallel: false);
            SoftmaxKernel.Forward(pg, n, m, pg);
            Gemm.Sgemm(false, false, n, d, m, 1f, pg, m, vg, d, 0f, o.AsSpan(g * n * d, n * d), d, parallel: false);
        });
    }

    /// <summary>
    /// Backward pass; accumulates into <paramref name="dq"/>, <paramref name="dk"/>, <paramref name="dv"/>:
    /// dV += Pᵀ·dO; dP = dO·Vᵀ; dS = P∘(dP − rowsum(dP∘P)); dQ += scale·dS·K; dK += scale·dSᵀ·Q.
    /// </summary>
    public static void Backward(float[] dout, float[] q, float[] k, float[] v, float[] probs,
        int groups, int n, int m, int d, float scale, float[] dq, float[] dk, float[] dv)
    {
        Run(groups, n * m * 4L * d, g =>
        {
            var pg = probs.AsSpan(g * n * m, n * m);
            var dog = dout.AsSpan(g * n * d, n * d);
            float[] dsBuf = ArrayPool<float>.Shared.Rent(n * m);
            try
            {
                var ds = dsBuf.AsSpan(0, n * m);
                Gemm.Sgemm(true, false, m, d, n, 1f, pg, m, dog, d, 1f, dv.AsSpan(g * m * d, m * d), d, parallel: false);
                Gemm.Sgemm(false, true, n, m, d, 1f, dog, d, v.AsSpan(g * m * d, m * d), d, 0f, ds, m, parallel: false);
                for (int i = 0; i < n; i++)
                {
                    var pr = pg.Slice(i * m, m);
                    var dr = ds.Slice(i * m, m);
                    float dot = TensorPrimitives.Dot(pr, dr);
                    TensorPrimitives.Subtract(dr, dot, dr);
                    TensorPrimitives.Multiply(dr, pr, dr);
                }
                Gemm.Sgemm(false, false, n, d, m, scale, ds, m, k.AsSpan(g * m * d, m * d), d, 1f, dq.AsSpan(g * n * d, n * d), d, parallel: false);
                Gemm.Sgemm(true, false, m, d, n, scale, ds, m, q.AsSpan(g * n * d, n * d), d, 1f, dk.AsSpan(g * m * d, m * d), d, parallel: false);
            }
            finally { ArrayPool<float>.Shared.Return(dsBuf); }
        });
    }

    private static void Run(int groups, long flopsPerGroup, Action<int> body)
    {
        if (groups > 1 && flopsPerGroup * groups > 200_000)
            Parallel.For(0, groups, body);
        else
            for (int g = 0; g < groups; g++) body(g);
    }
}
