using System.Numerics.Tensors;

namespace VitSharp;

public sealed partial class Tensor
{
    private struct ViewState { public Tensor X; }

    /// <summary>A view with a new shape (same data); one extent may be −1 and is inferred.</summary>
    public Tensor Reshape(params ReadOnlySpan<int> shape)
    {
        Span<int> dims = shape.Length <= 16 ? stackalloc int[shape.Length] : new int[shape.Length];
        shape.CopyTo(dims);
        int infer = -1; long known = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException("only one dimension can be inferred (−1) in a reshape");
                infer = i;
            }
            else known *= dims[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || Size % known != 0) throw new ArgumentException($"cannot reshape {ShapeString(_shape)} to {ShapeString(dims)}");
            dims[infer] = (int)(Size / known);
        }
        if (CheckedSize(dims) != Size) throw new ArgumentException($"cannot reshape {ShapeString(_shape)} ({Size} elements) to {ShapeString(dims)}");
        var result = Scoped(Data, dims);
        OpTrace.Current?.Op("reshape", result, [this], OpAttributes.None);
        return Autograd.Record(result, "reshape", [this], new ViewState { X = this }, static (in ViewState s, Tensor r) => s.X.AccumulateGrad(r.Grad!.Data));
    }

    /// <summary>Flattens dimensions <paramref name="start"/>..<paramref name="end"/> into one.</summary>
    public Tensor Flatten(int start = 0, int end = -1)
    {
        int s = NormDim(start), e = NormDim(end);
        Span<int> shape = stackalloc int[Rank - (e - s)];
        int k = 0;
        for (int i = 0; i < s; i++) shape[k++] = _shape[i];
        int f = 1; for (int i = s; i <= e; i++) f *= _shape[i];
        shape[k++] = f;
        for (int i = e + 1; i < Rank; i++) shape[k++] = _shape[i];
        return Reshape(shape);
    }

    private struct Gather : Broadcast.IRowBody
    {
        public float[] Src, Dst;
        public void Row(int o, int a, int b, int n, int sa, int sb)
        {
            if (sa == 1) Src.AsSpan(a, n).CopyTo(Dst.AsSpan(o, n));
            else for (int i = 0; i < n; i++) Dst[o + i] = Src[a + i * sa];
        }
    }

    private struct ScatterAdd : Broadcast.IRowBody
    {
        public float[] G, Dst;
        public void Row(int o, int a, int b, int n, int sa, int sb)
        {
            if (sa == 1) TensorPrimitives.Add(Dst.AsSpan(a, n), G.AsSpan(o, n), Dst.AsSpan(a, n));
            else for (int i = 0; i < n; i++) Dst[a + i * sa] += G[o + i];
        }
    }

    /// <summary>A gather/scatter over strides: result dims OutShape, input strides In (0 where broadcast); Permutation
    /// when every result element comes from a different input element (so the scatter's rows can run in parallel).</summary>
    private struct StridedState { public Tensor X; public Dims OutShape, In, Zeros; public bool Permutation; }

    private static readonly BackwardFn<StridedState> ScatterBackward = static (in StridedState s, Tensor r) =>
    {
        var back = new ScatterAdd { G = r.Grad!.Data, Dst = s.X.Grad0() };
        if (s.Permutation) Broadcast.ForEachRowParallel(s.OutShape, s.In, s.Zeros, back);
        else Broadcast.ForEachRow(s.OutShape.Values, s.In.Values, s.Zeros.Values, ref back);
    };

    /// <summary>Reorders dimensions: result dimension i is input dimension <paramref name="dims"/>[i].</summary>
    public Tensor Permute(params ReadOnlySpan<int> dims)
    {
        if (dims.Length != Rank) throw new ArgumentException($"permute needs {Rank} dimensions, got {dims.Length}");
        var st = new StridedState { X = this, OutShape = Dims.Zeros(Rank), In = Dims.Zeros(Rank), Zeros = Dims.Zeros(Rank) };
        Span<int> inStrides = stackalloc int[Rank];
        Span<bool> seen = stackalloc bool[Rank];
        int stride = 1;
        for (int i = Rank - 1; i >= 0; i--) { inStrides[i] = stride; stride *= _shape[i]; }
        var outShape = st.OutShape.Span; var strides = st.In.Span;
        for (int i = 0; i < Rank; i++)
        {
            int d = NormDim(dims[i]);
            if (seen[d]) throw new ArgumentException($"dimension {d} repeated in permute");
            seen[d] = true;
            outShape[i] = _shape[d];
            strides[i] = inStrides[d];
        }
        var result = Empty(outShape);
        st.Permutation = true;
        Broadcast.ForEachRowParallel(st.OutShape, st.In, st.Zeros, new Gather { Src = Data, Dst = result.Data });
        if (OpTrace.Current is { } tracer)
        {
            var perm = new int[Rank];
            for (int i = 0; i < Rank; i++) perm[i] = NormDim(dims[i]);
            tracer.Op("permute", result, [this], new OpAttributes { Ints = perm });
        }
        return Autograd.Record(result, "permute", [this], st, ScatterBackward);
    }

    /// <summary>Swaps two dimensions.</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        Span<int> p = stackalloc int[Rank];
        for (int i = 0; i < Rank; i++) p[i] = i;
        int a = NormDim(dim0), b = NormDim(dim1);
        (p[a], p[b]) = (p[b], p[a]);
        return Permute(p);
    }

    /// <summary>Broadcasts to <paramref name="shape"/> (as torch.Tensor.expand, but copying).</summary>
    public Tensor BroadcastTo(params ReadOnlySpan<int> shape)
    {
        var bc = new Broadcast(_shape, shape);
        if (!bc.OutShape.Values.SequenceEqual(shape)) throw new ArgumentException($"cannot broadcast {ShapeString(_shape)} to {ShapeString(shape)}");
        var st = new StridedState { X = this, OutShape = bc.OutShape, In = bc.StridesA, Zeros = Dims.Zeros(shape.Length) };
        var result = Empty(shape);
        var body = new Gather { Src = Data, Dst = result.Data };
        Broadcast.ForEachRow(st.OutShape.Values, st.In.Values, st.Zeros.Values, ref body);
        OpTrace.Current?.Op("broadcast_to", result, [this], OpAttributes.None);
        return Autograd.Record(result, "broadcast_to", [this], st, ScatterBackward);
    }

    /// <summary>(outer, extent, inner) around dimension d.</summary>
    private (int outer, int extent, int inner) Split(int d)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < d; i++) outer *= _shape[i];
        for (int i = d + 1; i < Rank; i++) inner *= _shape[i];
        return (outer, _shape[d], inner);
    }

    private struct SliceState { public Tensor X; public int Outer, Extent, Inner, Start, Total; }

    /// <summary>Concatenates tensors along a dimension; all other extents must agree.</summary>
    public static Tensor Cat(IReadOnlyList<Tensor> tensors, int dim = 0) => Cat(tensors.ToArray().AsSpan(), dim);

    /// <summary>Concatenates tensors along a dimension; all other extents must agree.</summary>
    public static Tensor Cat(ReadOnlySpan<Tensor> tensors, int dim = 0)
    {
        if (tensors.Length == 0) throw new ArgumentException("cat needs at least one tensor");
        var first = tensors[0];
        int d = first.NormDim(dim);
        int total = 0;
        foreach (var t in tensors)
        {
            if (t.Rank != first.Rank) throw new ArgumentException($"cat: rank {t.Rank} differs from {first.Rank}");
            for (int i = 0; i < t.Rank; i++)
                if (i != d && t._shape[i] != first._shape[i])
                    throw new ArgumentException($"cat along {d}: shapes {ShapeString(first._shape)} and {ShapeString(t._shape)} differ in dimension {i}");
            total += t._shape[d];
        }
        Span<int> shape = stackalloc int[first.Rank];
        first.ShapeSpan.CopyTo(shape);
        shape[d] = total;
        var result = Empty(shape);
        var (outer, _, inner) = result.Split(d);
        int offset = 0;
        foreach (var t in tensors)
        {
            int w = t._shape[d] * inner;
            for (int o = 0; o < outer; o++)
                t.Data.AsSpan(o * w, w).CopyTo(result.Data.AsSpan(o * total * inner + offset, w));
            offset += w;
        }
        // Start carries the dimension; the inputs come from the node (their widths give the offsets).
        OpTrace.Current?.Op("cat", result, tensors.ToArray(), new OpAttributes { Ints = [d] });
        return Autograd.Record(result, "cat", tensors!, new SliceState { Outer = outer, Inner = inner, Start = d, Total = total }, static (in SliceState s, Tensor r) =>
        {
            var g = r.Grad!.Data;
            int offset = 0;
            foreach (var t in r.Creator!.Inputs)
            {
                int w = t._shape[s.Start] * s.Inner;
                if (t.RequiresGrad)
                {
                    var dx = t.GradSpan();
                    for (int o = 0; o < s.Outer; o++)
                        TensorPrimitives.Add(dx.Slice(o * w, w), g.AsSpan(o * s.Total * s.Inner + offset, w), dx.Slice(o * w, w));
                }
                offset += w;
            }
        });
    }

    /// <summary>The sub-tensor with indices start..start+length−1 along a dimension (as torch.narrow).</summary>
    public Tensor Slice(int dim, int start, int length)
    {
        int d = NormDim(dim);
        if (start < 0 || length < 0 || start + length > _shape[d])
            throw new ArgumentOutOfRangeException(nameof(start), $"slice [{start}, {start + length}) is outside dimension {d} of size {_shape[d]}");
        Span<int> shape = stackalloc int[Rank];
        ShapeSpan.CopyTo(shape);
        shape[d] = length;
        var (outer, extent, inner) = Split(d);
        var result = Empty(shape);
        int w = length * inner;
        for (int o = 0; o < outer; o++)
            Data.AsSpan(o * extent * inner + start * inner, w).CopyTo(result.Data.AsSpan(o * w, w));
        var st = new SliceState { X = this, Outer = outer, Extent = extent, Inner = inner, Start = start, Total = w };
        OpTrace.Current?.Op("slice", result, [this], new OpAttributes { Ints = [d, start, length] });
        return Autograd.Record(result, "slice", [this], st, static (in SliceState s, Tensor r) =>
        {
            var dx = s.X.GradSpan(); var g = r.Grad!.Data;
            for (int o = 0; o < s.Outer; o++)
            {
                var dst = dx.Slice(o * s.Extent * s.Inner + s.Start * s.Inner, s.Total);
                TensorPrimitives.Add(dst, g.AsSpan(o * s.Total, s.Total), dst);
            }
        });
    }

    /// <summary>Selects entries along a dimension by index (indices may repeat).</summary>
    public Tensor IndexSelect(int dim, params int[] indices)
    {
        int d = NormDim(dim);
        var (outer, extent, inner) = Split(d);
        foreach (int i in indices)
            if ((uint)i >= (uint)extent) throw new ArgumentOutOfRangeException(nameof(indices), $"index {i} is outside dimension {d} of size {extent}");
        var shape = Shape; shape[d] = indices.Length;
        var result = Empty(shape);
        int n = indices.Length;
        for (int o = 0; o < outer; o++)
            for (int j = 0; j < n; j++)
                Data.AsSpan((o * extent + indices[j]) * inner, inner).CopyTo(result.Data.AsSpan((o * n + j) * inner, inner));
        var x = this;
        var idx = (int[])indices.Clone();
        OpTrace.Current?.Op("index_select", result, [x], new OpAttributes { Ints = [d], Index = idx });
        return Autograd.Record(result, "index_select", [x], r =>
        {
            var dx = x.GradSpan(); var g = r.Grad!.Data;
            for (int o = 0; o < outer; o++)
                for (int j = 0; j < n; j++)
                {
                    var dst = dx.Slice((o * extent + idx[j]) * inner, inner);
                    TensorPrimitives.Add(dst, g.AsSpan((o * n + j) * inner, inner), dst);
                }
        });
    }

    /// <summary>Sum over the given dimensions (all when none are given).</summary>
    public Tensor Sum(int[]? dims = null, bool keepDim = false) => Reduce(dims, keepDim, mean: false);

    /// <summary>Sum over one dimension.</summary>
    public Tensor Sum(int dim, bool keepDim = false) => Reduce([dim], keepDim, mean: false);

    /// <summary>Mean over the given dimensions (all when none are given).</summary>
    public Tensor Mean(int[]? dims = null, bool keepDim = false) => Reduce(dims, keepDim, mean: true);

    /// <summary>Mean over one dimension.</summary>
    public Tensor Mean(int dim, bool keepDim = false) => Reduce([dim], keepDim, mean: true);

    private struct ReduceState { public Tensor X; public Dims Strides, Zeros; public float Scale; }

    private Tensor Reduce(ReadOnlySpan<int> dims, bool keepDim, bool mean)
    {
        Span<bool> reduce = stackalloc bool[Rank];
        if (dims.IsEmpty) reduce.Fill(true);
        else foreach (int dd in dims) reduce[NormDim(dd)] = true;
        Span<int> keptShape = stackalloc int[Rank];
        Span<int> outShape = stackalloc int[Rank];
        int outRank = 0;
        long count = 1;
        for (int i = 0; i < Rank; i++)
        {
            keptShape[i] = reduce[i] ? 1 : _shape[i];
            if (reduce[i]) count *= _shape[i];
            if (keepDim || !reduce[i]) outShape[outRank++] = keptShape[i];
        }
        var st = new ReduceState { X = this, Strides = Dims.Zeros(Rank), Zeros = Dims.Zeros(Rank), Scale = mean ? 1f / count : 1f };
        Broadcast.StridesFor(keptShape, _shape, st.Strides.Span);
        var result = ZerosScoped(outShape[..outRank]);
        // Walk the input; the result (in kept layout) is the strided destination.
        var body = new ReduceRows { Src = Data, Dst = result.Data, Scale = st.Scale };
        Broadcast.ForEachRow(_shape, st.Strides.Values, st.Zeros.Values, ref body);
        if (OpTrace.Current is { } tracer)
        {
            var axes = new List<int>();
            for (int i = 0; i < Rank; i++) if (reduce[i]) axes.Add(i);
            tracer.Op(mean ? "mean" : "sum", result, [this], new OpAttributes { Ints = axes.ToArray(), Flag = keepDim });
        }
        return Autograd.Record(result, mean ? "mean" : "sum", [this], st, static (in ReduceState s, Tensor r) =>
        {
            var back = new ExpandRows { G = r.Grad!.Data, Dst = s.X.Grad0(), Scale = s.Scale };
            Broadcast.ForEachRow(s.X._shape, s.Strides.Values, s.Zeros.Values, ref back);
        });
    }

    private struct ReduceRows : Broadcast.IRowBody
    {
        public float[] Src, Dst; public float Scale;
        public void Row(int o, int a, int b, int n, int sa, int sb)
        {
            var src = Src.AsSpan(o, n);
            if (sa == 0) Dst[a] += Scale * TensorPrimitives.Sum(src);
            else if (Scale == 1f) TensorPrimitives.Add(Dst.AsSpan(a, n), src, Dst.AsSpan(a, n));
            else TensorPrimitives.MultiplyAdd(src, Scale, Dst.AsSpan(a, n), Dst.AsSpan(a, n));
        }
    }

    private struct ExpandRows : Broadcast.IRowBody
    {
        public float[] G, Dst; public float Scale;
        public void Row(int o, int a, int b, int n, int sa, int sb)
        {
            var dst = Dst.AsSpan(o, n);
            if (sa == 0) TensorPrimitives.Add(dst, Scale * G[a], dst);
            else TensorPrimitives.MultiplyAdd(G.AsSpan(a, n), Scale, dst, dst);
        }
    }
}
