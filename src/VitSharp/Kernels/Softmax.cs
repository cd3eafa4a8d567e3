using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>Softmax and log-softmax over the last dimension of [R, C] (R rows, C classes or keys).</summary>
public static class SoftmaxKernel
{
    /// <summary>y = softmax(x) row by row (max-subtracted).</summary>
    public static void Forward(ReadOnlySpan<float> x, int rows, int cols, Span<float> y)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            if (cols == 0) continue;
            float max = TensorPrimitives.Max(xr);
            TensorPrimitives.Subtract(xr, max, yr);
            TensorPrimitives.Exp(yr, yr);
            float inv = 1f / TensorPrimitives.Sum(yr);
            TensorPrimitives.Multiply(yr, inv, yr);
        }
    }

    /// <summary>dx += y ∘ (dy − Σ dy∘y) row by row, from the forward output <paramref name="y"/>.</summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> y, int rows, int cols, Span<float> dx)
    {
        for (int r = 0; r < rows; r++)
        {
            var dyr = dy.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            var dxr = dx.Slice(r * cols, cols);
            float dot = TensorPrimitives.Dot(dyr, yr);
            for (int c = 0; c < cols; c++) dxr[c] += yr[c] * (dyr[c] - dot);
        }
    }

    /// <summary>y = log_softmax(x) row by row: x − max − log Σ exp(x − max).</summary>
    public static void LogForward(ReadOnlySpan<float> x, int rows, int cols, Span<float> y)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            if (cols == 0) continue;
            float max = TensorPrimitives.Max(xr);
            TensorPrimitives.Subtract(xr, max, yr);
            double sum = 0;
            for (int c = 0; c < cols; c++) sum += Math.Exp(yr[c]);
            TensorPrimitives.Subtract(yr, (float)Math.Log(sum), yr);
        }
    }

    /// <summary>dx += dy − exp(y)·Σ dy row by row, from the forward output <paramref name="y"/> = log_softmax(x).</summary>
    public static void LogBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> y, int rows, int cols, Span<float> dx)
    {
        for (int r = 0; r < rows; r++)
        {
            var dyr = dy.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            var dxr = dx.Slice(r * cols, cols);
            float sum = TensorPrimitives.Sum(dyr);
            for (int c = 0; c < cols; c++) dxr[c] += dyr[c] - MathF.Exp(yr[c]) * sum;
        }
    }
}
