namespace VitSharp;

/// <summary>
/// NumPy-style broadcasting of two shapes: the result shape and, per input, strides over the result's
/// dimensions (0 where the input is broadcast).
/// </summary>
internal sealed class Broadcast
{
    public readonly int[] OutShape;
    public readonly int[] StridesA;
    public readonly int[] StridesB;
    public readonly int OutSize;

    public Broadcast(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        int r = Math.Max(a.Length, b.Length);
        OutShape = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"shapes {Tensor.ShapeString(a)} and {Tensor.ShapeString(b)} cannot be broadcast together (dimension {i}: {da} vs {db})");
            OutShape[i] = da == 1 ? db : da;
        }
        StridesA = StridesFor(a, OutShape);
        StridesB = StridesFor(b, OutShape);
        OutSize = (int)Tensor.CheckedSize(OutShape);
    }

    /// <summary>Strides of <paramref name="shape"/> laid over <paramref name="outShape"/> (0 for broadcast dims).</summary>
    public static int[] StridesFor(ReadOnlySpan<int> shape, int[] outShape)
    {
        int r = outShape.Length, off = r - shape.Length;
        var s = new int[r];
        int stride = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            s[i + off] = shape[i] == 1 && outShape[i + off] != 1 ? 0 : stride;
            stride *= shape[i];
        }
        return s;
    }

    /// <summary>Row body: called for each run of the innermost dimension.</summary>
    public interface IRowBody
    {
        void Row(int outOff, int aOff, int bOff, int length, int strideA, int strideB);
    }

    /// <summary>Walks the result in rows of its last dimension, tracking input offsets.</summary>
    public static void ForEachRow<T>(int[] outShape, int[] sa, int[] sb, ref T body) where T : struct, IRowBody
    {
        int r = outShape.Length;
        long size = Tensor.CheckedSize(outShape);
        if (size == 0) return;
        if (r == 0) { body.Row(0, 0, 0, 1, 0, 0); return; }
        int len = outShape[r - 1];
        int rows = (int)(size / len);
        Span<int> idx = stackalloc int[r];
        int aOff = 0, bOff = 0;
        for (int row = 0; row < rows; row++)
        {
            body.Row(row * len, aOff, bOff, len, sa[r - 1], sb[r - 1]);
            for (int d = r - 2; d >= 0; d--)
            {
                idx[d]++;
                aOff += sa[d]; bOff += sb[d];
                if (idx[d] < outShape[d]) break;
                aOff -= sa[d] * outShape[d]; bOff -= sb[d] * outShape[d];
                idx[d] = 0;
            }
        }
    }
}
