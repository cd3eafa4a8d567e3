namespace VitSharp.Tests.Autograd;

/// <summary>Naive NumPy broadcasting for forward references in tests.</summary>
internal static class BroadcastRef
{
    public static int[] OutShape(int[] a, int[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var o = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            o[i] = Math.Max(da, db);
        }
        return o;
    }

    public static int[] Unravel(int flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = flat % shape[d]; flat /= shape[d]; }
        return idx;
    }

    public static int Ravel(int[] idx, int[] shape)
    {
        int f = 0;
        for (int d = 0; d < shape.Length; d++) f = f * shape[d] + idx[d];
        return f;
    }

    /// <summary>Flat index into a tensor of <paramref name="shape"/> for an index of the broadcast output.</summary>
    public static int Source(int[] outIdx, int[] shape)
    {
        int off = outIdx.Length - shape.Length, f = 0;
        for (int d = 0; d < shape.Length; d++) f = f * shape[d] + (shape[d] == 1 ? 0 : outIdx[d + off]);
        return f;
    }
}
