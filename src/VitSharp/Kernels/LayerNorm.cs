using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// LayerNorm over the last dimension: y = (x − mean) · rstd · weight + bias, rstd = 1/√(var + eps)
/// (biased variance, as PyTorch). Shapes: x, y, dx, dy [R, C] (R rows = all leading dims, C channels).
/// </summary>
public static class LayerNormKernel
{
    /// <summary>Forward pass; saves per-row <paramref name="mean"/> and <paramref name="rstd"/> [R] for the backward pass.</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        int rows, int cols, float eps, Span<float> mean, Span<float> rstd, Span<float> y)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            float m = TensorPrimitives.Sum(xr) / cols;
            // Two-pass variance for accuracy: y temporarily holds x − m.
            TensorPrimitives.Subtract(xr, m, yr);
            float v = TensorPrimitives.SumOfSquares(yr) / cols;
            float s = 1f / MathF.Sqrt(v + eps);
            mean[r] = m;
            rstd[r] = s;
            TensorPrimitives.Multiply(yr, s, yr);
            TensorPrimitives.FusedMultiplyAdd(yr, weight, bias, yr);
        }
    }

    /// <summary>
    /// Backward pass; accumulates into <paramref name="dx"/> [R, C], <paramref name="dweight"/> and
    /// <paramref name="dbias"/> [C]. <paramref name="scratch"/> needs 2·C elements.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, int rows, int cols,
        Span<float> dx, Span<float> dweight, Span<float> dbias, Span<float> scratch)
    {
        var xhat = scratch.Slice(0, cols);
        for (int r = 0; r < rows; r++)
        {
            var dyr = dy.Slice(r * cols, cols);
            var xr = x.Slice(r * cols, cols);
            float s = rstd[r];
            TensorPrimitives.Subtract(xr, mean[r], xhat);
            TensorPrimitives.Multiply(xhat, s, xhat);
            if (!dbias.IsEmpty) TensorPrimitives.Add(dbias, dyr, dbias);
            if (!dweight.IsEmpty) TensorPrimitives.FusedMultiplyAdd(dyr, xhat, dweight, dweight);
            if (dx.IsEmpty) continue;
            // g = dy·w; dx += s·(g − mean(g) − xhat·mean(g·xhat)), all in vector passes over the row.
            var g = scratch.Slice(cols, cols);
            TensorPrimitives.Multiply(dyr, weight, g);
            float mg = TensorPrimitives.Sum(g) / cols, mgx = TensorPrimitives.Dot(g, xhat) / cols;
            TensorPrimitives.MultiplyAdd(xhat, -mgx, g, g);
            TensorPrimitives.Subtract(g, mg, g);
            var dxr = dx.Slice(r * cols, cols);
            TensorPrimitives.MultiplyAdd(g, s, dxr, dxr);
        }
    }
}
