using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace VitSharp.Kernels;

/// <summary>Softmax and log-softmax over the last dimension of [R, C] (R rows, C classes or keys).</summary>
public static class SoftmaxKernel
{
    /// <summary>y = softmax(x) row by row (max-subtracted); rows in parallel over the compute threads.</summary>
    public static unsafe void Forward(ReadOnlySpan<float> x, int rows, int cols, Span<float> y)
    {
        if (rows <= 0 || cols <= 0) return;
        if ((long)rows * cols > x.Length || (long)rows * cols > y.Length) throw new ArgumentException("softmax: x or y is shorter than rows · cols");
        fixed (float* px = x, py = y)
            Parallel2.For(rows, Parallel2.Chunks(rows, 8L * cols), new Rows { X = px, Y = py, Cols = cols });
    }

    /// <summary>dx += y ∘ (dy − Σ dy∘y) row by row, from the forward output <paramref name="y"/>; rows in parallel.</summary>
    public static unsafe void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> y, int rows, int cols, Span<float> dx)
    {
        if (rows <= 0 || cols <= 0) return;
        long n = (long)rows * cols;
        if (n > dy.Length || n > y.Length || n > dx.Length) throw new ArgumentException("softmax backward: dy, y or dx is shorter than rows · cols");
        fixed (float* pdy = dy, py = y, pdx = dx)
            Parallel2.For(rows, Parallel2.Chunks(rows, 4L * cols), new Rows { Dy = pdy, Y = py, Dx = pdx, Cols = cols, Backward = true });
    }

    private unsafe struct Rows : Parallel2.IChunkBody
    {
        public float* X, Y, Dy, Dx;
        public int Cols;
        public bool Backward;

        public readonly void Run(int chunk, int start, int length)
        {
            int cols = Cols;
            for (int r = start; r < start + length; r++)
            {
                long o = (long)r * cols;
                var yr = new Span<float>(Y + o, cols);
                if (!Backward)
                {
                    var xr = new ReadOnlySpan<float>(X + o, cols);
                    float max = TensorPrimitives.Max(xr);
                    TensorPrimitives.Subtract(xr, max, yr);
                    TensorPrimitives.Exp(yr, yr);
                    float inv = 1f / TensorPrimitives.Sum(yr);
                    TensorPrimitives.Multiply(yr, inv, yr);
                    continue;
                }
                float* dyr = Dy + o, py = Y + o, dxr = Dx + o;
                float dot = TensorPrimitives.Dot(new ReadOnlySpan<float>(dyr, cols), yr);
                // dx += y·(dy − dot): the same product and sums as the scalar loop, 8 lanes at a time.
                int c = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var vd = Vector256.Create(dot);
                    for (; c + 8 <= cols; c += 8)
                        (Vector256.Load(dxr + c) + Vector256.Load(py + c) * (Vector256.Load(dyr + c) - vd)).Store(dxr + c);
                }
                for (; c < cols; c++) dxr[c] += py[c] * (dyr[c] - dot);
            }
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
