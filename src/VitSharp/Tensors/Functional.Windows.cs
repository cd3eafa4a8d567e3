using VitSharp.Kernels;

namespace VitSharp;

public static partial class F
{
    /// <summary>
    /// Row gather within each item (<see cref="GatherRowsKernel"/>): x holds B items of <paramref name="rowsIn"/> rows of C
    /// (C = x's last dimension); the result has <paramref name="shape"/> (B·map.Length·C entries): B items of map.Length
    /// rows, row t of an item being row map[t] of the same item of x (zeros where map[t] &lt; 0).
    /// The map is kept (not copied) for the backward pass: it must not change afterwards.
    /// </summary>
    public static Tensor GatherRows(Tensor x, int[] map, int rowsIn, ReadOnlySpan<int> shape)
    {
        int c = x.Rank == 0 ? 0 : x.Dim(-1);
        long perItem = (long)rowsIn * c;
        if (c <= 0 || rowsIn <= 0 || x.Size % perItem != 0)
            throw new ArgumentException($"gather_rows: input {Tensor.ShapeString(x.ShapeSpan)} is not a batch of {rowsIn} rows of {c}");
        int b = (int)(x.Size / perItem);
        if (Tensor.CheckedSize(shape) != (long)b * map.Length * c)
            throw new ArgumentException($"gather_rows: output {Tensor.ShapeString(shape)} is not {b} items of {map.Length} rows of {c}");
        var y = Tensor.Empty(shape);
        GatherRowsKernel.Forward(x.Data, map, b, rowsIn, c, y.Data);
        OpTrace.Current?.Op("gather_rows", y, [x], new OpAttributes { Ints = [rowsIn], Index = map });
        var st = new GatherRowsState { X = x, Map = map, B = b, RowsIn = rowsIn, C = c };
        return Autograd.Record(y, "gather_rows", [x], st, static (in GatherRowsState s, Tensor r) =>
            GatherRowsKernel.Backward(r.Grad!.Data, s.Map, s.B, s.RowsIn, s.C, s.X.GradSpan()));
    }

    private struct GatherRowsState { public Tensor X; public int[] Map; public int B, RowsIn, C; }

    /// <summary>
    /// Swin's relative position bias: table [T, H] gathered by <paramref name="index"/> (N·N entries in [0, T)) into
    /// [H, N, N], bias[h, i, j] = table[index[i·N + j], h]. Differentiable in the table.
    /// </summary>
    public static Tensor RelativePositionBias(Tensor table, int[] index, int n)
    {
        if (table.Rank != 2 || index.Length != n * n)
            throw new ArgumentException($"relative_position_bias: expected a table [T, H] and {n}·{n} indices, got {Tensor.ShapeString(table.ShapeSpan)} and {index.Length}");
        int t = table.Dim(0), heads = table.Dim(1);
        foreach (int i in index)
            if ((uint)i >= (uint)t) throw new ArgumentException($"relative_position_bias: index {i} is outside the table's {t} rows");
        var y = Tensor.Empty(heads, n, n);
        WindowBiasKernel.GatherForward(table.Data, index, heads, y.Data);
        OpTrace.Current?.Op("relative_position_bias", y, [table], new OpAttributes { Ints = [n], Index = index });
        return Autograd.Record(y, "relative_position_bias", [table], new WindowBiasState { X = table, Index = index, Heads = heads },
            static (in WindowBiasState s, Tensor r) => WindowBiasKernel.GatherBackward(r.Grad!.Data, s.Index!, s.Heads, s.X.GradSpan()));
    }

    /// <summary>
    /// Adds Swin's bias and shift mask to window attention scores: scores [G, H, N, N] (G = B·W, W windows per image),
    /// bias [H, N, N] (differentiable), mask [W, N, N] (a constant; null when the windows are not shifted) →
    /// scores + bias[h] + mask[g mod W].
    /// </summary>
    public static Tensor AddWindowBias(Tensor scores, Tensor bias, float[]? mask, int windows)
    {
        if (scores.Rank != 4 || bias.Rank != 3 || scores.Dim(1) != bias.Dim(0) || scores.Dim(2) != bias.Dim(1) || scores.Dim(3) != bias.Dim(2)
            || windows < 1 || scores.Dim(0) % windows != 0)
            throw new ArgumentException($"window_bias: scores {Tensor.ShapeString(scores.ShapeSpan)} and bias {Tensor.ShapeString(bias.ShapeSpan)} do not fit ({windows} windows)");
        int g = scores.Dim(0), heads = scores.Dim(1), p = scores.Dim(2) * scores.Dim(3);
        if (mask is not null && mask.Length != windows * p)
            throw new ArgumentException($"window_bias: mask of {mask.Length} entries for {windows} windows of {p}");
        var y = Tensor.Empty(scores.ShapeSpan);
        WindowBiasKernel.AddForward(scores.Data, bias.Data, mask, g, windows, heads, p, y.Data);
        OpTrace.Current?.Op("window_bias", y, [scores, bias], new OpAttributes { Ints = [windows], Values = mask });
        var st = new WindowBiasState { X = scores, Bias = bias, Groups = g, Heads = heads, P = p };
        return Autograd.Record(y, "window_bias", [scores, bias], st, static (in WindowBiasState s, Tensor r) =>
            WindowBiasKernel.AddBackward(r.Grad!.Data, s.Groups, s.Heads, s.P,
                s.X.RequiresGrad ? s.X.Grad0() : Span<float>.Empty, s.Bias!.RequiresGrad ? s.Bias.Grad0() : Span<float>.Empty));
    }

    private struct WindowBiasState { public Tensor X; public Tensor? Bias; public int[]? Index; public int Groups, Heads, P; }

    /// <summary>
    /// Swin's window attention in one op, straight from the fused projection: qkv [G, N, 3·H·D] (G = images · W windows;
    /// q, k, v blocks, heads contiguous inside each, as torchvision's <c>qkv</c> Linear writes them) → [G, N, H·D],
    /// softmax(scale·q·kᵀ + bias[h] + mask[g mod W])·v per window and head without the permute, slice and batched-product
    /// copies of the step-by-step form (<see cref="AddWindowBias"/>, <see cref="Softmax"/>). bias [H, N, N] is
    /// differentiable (the relative position bias), mask [W, N, N] a constant or null. Scale defaults to D^-½;
    /// <paramref name="probs"/> receives the probabilities [G, H, N, N].
    /// </summary>
    public static Tensor WindowAttention(Tensor qkv, int heads, Tensor bias, float[]? mask, int windows, float? scale = null,
        Action<Tensor>? probs = null)
    {
        if (qkv.Rank != 3 || heads <= 0 || qkv.Dim(2) % (3 * heads) != 0)
            throw new ArgumentException($"window attention: expected qkv [G, N, 3·H·D] with H = {heads}, got {Tensor.ShapeString(qkv.ShapeSpan)}");
        int g = qkv.Dim(0), n = qkv.Dim(1), d = qkv.Dim(2) / (3 * heads);
        if (bias.Rank != 3 || bias.Dim(0) != heads || bias.Dim(1) != n || bias.Dim(2) != n)
            throw new ArgumentException($"window attention: bias {Tensor.ShapeString(bias.ShapeSpan)} does not fit [{heads}, {n}, {n}]");
        float s = scale ?? 1f / MathF.Sqrt(d);
        var o = Tensor.Empty(g, n, heads * d);
        bool grad = Autograd.Needs(qkv, bias);
        var p = probs is null && !grad ? null : TensorScope.Allocate(checked(g * heads * n * n), clear: false);
        Kernels.AttentionKernel.ForwardWindows(qkv.Data, g, n, heads, d, s, bias.Data, mask, windows, p, o.Data);
        if (p is null) { OpProfiler.Forward("window_mha"); return o; }
        probs?.Invoke(Tensor.Scoped(p, [g, heads, n, n]));
        var st = new WindowAttentionState { Qkv = qkv, Bias = bias, P = p, Groups = g, N = n, Heads = heads, D = d, Scale = s };
        return Autograd.Record(o, "window_mha", [qkv, bias], st, static (in WindowAttentionState s, Tensor r) =>
        {
            int g = s.Groups, n = s.N, h = s.Heads;
            // The kernel accumulates into dqkv; a qkv that needs no gradient gets a scratch buffer.
            var dqkv = s.Qkv.RequiresGrad ? s.Qkv.Grad0() : TensorScope.Allocate(s.Qkv.Size, clear: true);
            var ds = TensorScope.Allocate(checked(g * h * n * n), clear: false);
            Kernels.AttentionKernel.BackwardWindows(r.Grad!.Data, s.Qkv.Data, s.P, g, n, h, s.D, s.Scale, dqkv, ds);
            if (s.Bias.RequiresGrad) Kernels.AttentionKernel.SumGroups(ds, g, h * n * n, s.Bias.Grad0());
        });
    }

    private struct WindowAttentionState { public Tensor Qkv, Bias; public float[] P; public int Groups, N, Heads, D; public float Scale; }

    /// <summary>
    /// torch.nn.functional.normalize(x, dim=-1): each last-axis vector divided by max(‖x‖₂, eps). Backward: where the
    /// norm exceeds eps, dx = (g − y·(g·y)) / ‖x‖; else dx = g / eps.
    /// </summary>
    public static Tensor L2Normalize(Tensor x, float eps = 1e-12f)
    {
        int c = x.Rank == 0 ? 0 : x.Dim(-1);
        if (c == 0) throw new ArgumentException($"normalize: input {Tensor.ShapeString(x.ShapeSpan)} has no last axis to normalise");
        int rows = x.Size / c;
        var y = Tensor.Empty(x.ShapeSpan);
        var denom = TensorScope.Allocate(rows, clear: false);
        for (int r = 0; r < rows; r++)
        {
            var row = x.Data.AsSpan(r * c, c);
            float d = MathF.Max(MathF.Sqrt(System.Numerics.Tensors.TensorPrimitives.Dot(row, row)), eps);
            denom[r] = d;
            System.Numerics.Tensors.TensorPrimitives.Divide(row, d, y.Data.AsSpan(r * c, c));
        }
        OpTrace.Current?.Op("normalize", y, [x], new OpAttributes { Scalar = eps });
        var st = new NormalizeState { X = x, Denom = denom, Rows = rows, C = c, Eps = eps };
        return Autograd.Record(y, "normalize", [x], st, static (in NormalizeState s, Tensor r) =>
        {
            var dx = s.X.GradSpan(); var g = r.Grad!.Data; var yd = r.Data;
            int c = s.C;
            for (int i = 0; i < s.Rows; i++)
            {
                var gi = g.AsSpan(i * c, c); var yi = yd.AsSpan(i * c, c); var dxi = dx.Slice(i * c, c);
                float d = s.Denom[i];
                // Clamped rows (‖x‖ ≤ eps) are x / eps, a linear map: dx = g / eps.
                float dot = d > s.Eps ? System.Numerics.Tensors.TensorPrimitives.Dot(gi, yi) : 0f;
                for (int k = 0; k < c; k++) dxi[k] += (gi[k] - yi[k] * dot) / d;
            }
        });
    }

    private struct NormalizeState { public Tensor X; public float[] Denom; public int Rows, C; public float Eps; }
}
