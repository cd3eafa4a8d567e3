using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace VitSharp;

/// <summary>Up to <see cref="MaxRank"/> extents or strides stored inline: op state (and shapes) without arrays.</summary>
internal struct Dims
{
    /// <summary>The highest rank that broadcasting, permutes and reductions handle.</summary>
    public const int MaxRank = 8;

    [InlineArray(MaxRank)]
    private struct Buffer { private int _e; }

    private Buffer _values;

    /// <summary>Number of entries.</summary>
    public int Length;

    /// <summary>A copy of <paramref name="values"/>.</summary>
    public Dims(ReadOnlySpan<int> values)
    {
        if (values.Length > MaxRank)
            throw new NotSupportedException($"tensors of rank {values.Length} are not supported here (at most {MaxRank} dimensions), shape {Tensor.ShapeString(values)}");
        values.CopyTo(_values);
        Length = values.Length;
    }

    /// <summary><paramref name="length"/> zeros.</summary>
    public static Dims Zeros(int length) => new(stackalloc int[length]);

    /// <summary>The entries (writable).</summary>
    [UnscopedRef] public Span<int> Span => ((Span<int>)_values)[..Length];

    /// <summary>The entries.</summary>
    [UnscopedRef] public readonly ReadOnlySpan<int> Values => ((ReadOnlySpan<int>)_values)[..Length];
}

/// <summary>
/// NumPy-style broadcasting of two shapes: the result shape and, per input, strides over the result's
/// dimensions (0 where the input is broadcast). A value type with inline storage: ops keep it in their backward state.
/// </summary>
internal struct Broadcast
{
    public Dims OutShape;
    public Dims StridesA;
    public Dims StridesB;
    public readonly int OutSize;

    public Broadcast(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        int r = Math.Max(a.Length, b.Length);
        if (r > Dims.MaxRank)
            throw new NotSupportedException($"shapes {Tensor.ShapeString(a)} and {Tensor.ShapeString(b)}: broadcasting tensors of rank {r} is not supported (at most {Dims.MaxRank} dimensions)");
        OutShape = Dims.Zeros(r);
        var outShape = OutShape.Span;
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"shapes {Tensor.ShapeString(a)} and {Tensor.ShapeString(b)} cannot be broadcast together (dimension {i}: {da} vs {db})");
            outShape[i] = da == 1 ? db : da;
        }
        StridesA = Dims.Zeros(r); StridesFor(a, outShape, StridesA.Span);
        StridesB = Dims.Zeros(r); StridesFor(b, outShape, StridesB.Span);
        OutSize = (int)Tensor.CheckedSize(outShape);
    }

    /// <summary>Strides of <paramref name="shape"/> laid over <paramref name="outShape"/> (0 for broadcast dims) into <paramref name="strides"/> (length of outShape).</summary>
    public static void StridesFor(ReadOnlySpan<int> shape, ReadOnlySpan<int> outShape, Span<int> strides)
    {
        int r = outShape.Length, off = r - shape.Length;
        strides.Clear();
        int stride = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i + off] = shape[i] == 1 && outShape[i + off] != 1 ? 0 : stride;
            stride *= shape[i];
        }
    }

    /// <summary>Row body: called for each run of the innermost dimension.</summary>
    public interface IRowBody
    {
        void Row(int outOff, int aOff, int bOff, int length, int strideA, int strideB);
    }

    /// <summary>
    /// As <see cref="ForEachRow"/>, with the rows split into contiguous chunks over the compute threads
    /// (<see cref="Kernels.Parallel2"/>) when there is enough work. Only for bodies whose rows write disjoint elements
    /// (a gather into the result, or a scatter through a permutation), since chunks run concurrently.
    /// </summary>
    public static void ForEachRowParallel<T>(in Dims outShape, in Dims sa, in Dims sb, in T body) where T : struct, IRowBody
    {
        var shape = outShape.Values;
        int r = shape.Length;
        long size = Tensor.CheckedSize(shape);
        if (size == 0) return;
        if (r == 0) { var one = body; one.Row(0, 0, 0, 1, 0, 0); return; }
        int len = shape[r - 1];
        int rows = (int)(size / len);
        Kernels.Parallel2.For(rows, Kernels.Parallel2.Chunks(rows, len), new RowChunks<T> { Shape = outShape, Sa = sa, Sb = sb, Body = body });
    }

    private struct RowChunks<T> : Kernels.Parallel2.IChunkBody where T : struct, IRowBody
    {
        public Dims Shape, Sa, Sb;
        public T Body;

        public readonly void Run(int chunk, int start, int length)
        {
            var body = Body;
            WalkRows(Shape.Values, Sa.Values, Sb.Values, start, length, ref body);
        }
    }

    /// <summary>Walks the result in rows of its last dimension, tracking input offsets.</summary>
    public static void ForEachRow<T>(ReadOnlySpan<int> outShape, ReadOnlySpan<int> sa, ReadOnlySpan<int> sb, ref T body) where T : struct, IRowBody
    {
        int r = outShape.Length;
        long size = Tensor.CheckedSize(outShape);
        if (size == 0) return;
        if (r == 0) { body.Row(0, 0, 0, 1, 0, 0); return; }
        WalkRows(outShape, sa, sb, 0, (int)(size / outShape[r - 1]), ref body);
    }

    /// <summary>Rows start..start+length−1 of the result (rank ≥ 1; rows enumerate dimensions 0..r−2, the last fastest).</summary>
    private static void WalkRows<T>(ReadOnlySpan<int> shape, ReadOnlySpan<int> sa, ReadOnlySpan<int> sb, int start, int length, ref T body)
        where T : struct, IRowBody
    {
        int r = shape.Length, len = shape[r - 1];
        Span<int> idx = stackalloc int[r];
        // The multi-index of row `start` and its offsets.
        int aOff = 0, bOff = 0;
        long rest = start;
        for (int d = r - 2; d >= 0; d--)
        {
            idx[d] = (int)(rest % shape[d]);
            rest /= shape[d];
            aOff += idx[d] * sa[d]; bOff += idx[d] * sb[d];
        }
        for (int row = start; row < start + length; row++)
        {
            body.Row(row * len, aOff, bOff, len, sa[r - 1], sb[r - 1]);
            for (int d = r - 2; d >= 0; d--)
            {
                idx[d]++;
                aOff += sa[d]; bOff += sb[d];
                if (idx[d] < shape[d]) break;
                aOff -= sa[d] * shape[d]; bOff -= sb[d] * shape[d];
                idx[d] = 0;
            }
        }
    }
}
