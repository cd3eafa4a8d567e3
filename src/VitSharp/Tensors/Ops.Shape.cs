using System.Numerics.Tensors;

namespace VitSharp;

public sealed partial class Tensor
{
    /// <summary>A view with a new shape (same data); one extent may be −1 and is inferred.</summary>
    public Tensor Reshape(params int[] shape)
    {
        shape = (int[])shape.Clone();
        int infer = -1; long known = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException("only one dimension can be inferred (−1) in a reshape");
                infer = i;
            }
            else known *= shape[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || Size % known != 0) throw new ArgumentException($"cannot reshape {ShapeString(_shape)} to {ShapeString(shape)}");
            shape[infer] = (int)(Size / known);
        }
        if (CheckedSize(shape) != Size) throw new ArgumentException($"cannot reshape {ShapeString(_shape)} ({Size} elements) to {ShapeString(shape)}");
        var x = this;
        var result = Scoped(Data, shape);
        return Autograd.Record(result, "reshape", [x], r => x.AccumulateGrad(r.Grad!.Data));
    }

    /// <summary>Flattens dimensions <paramref name="start"/>..<paramref name="end"/> into one.</summary>
    public Tensor Flatten(int start = 0, int end = -1)
    {
        int s = NormDim(start), e = NormDim(end);
        var shape = new List<int>();
        for (int i = 0; i < s; i++) shape.Add(_shape[i]);
        int f = 1; for (int i = s; i <= e; i++) f *= _shape[i];
        shape.Add(f);
        for (int i = e + 1; i < Rank; i++) shape.Add(_shape[i]);
        return Reshape(shape.ToArray());
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

    /// <summary>Reorders dimensions: result dimension i is input dimension <paramref name="dims"/>[i].</summary>
    public Tensor Permute(params int[] dims)
    {
        if (dims.Length != Rank) throw new ArgumentException($"permute needs {Rank} dimensions, got {dims.Length}");
        var seen = new bool[Rank];
        var outShape = new int[Rank];
        var inStrides = new int[Rank];
        int stride = 1;
        for (int i = Rank - 1; i >= 0; i--) { inStrides[i] = stride; stride *= _shape[i]; }
        var strides = new int[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int d = NormDim(dims[i]);
            if (seen[d]) throw new ArgumentException($"dimension {d} repeated in permute");
            seen[d] = true;
            outShape[i] = _shape[d];
            strides[i] = inStrides[d];
        }
        var zeros = new int[Rank];
        var x = this;
        var result = Empty(outShape);
        var body = new Gather { Src = Data, Dst = result.Data };
        Broadcast.ForEachRow(outShape, strides, zeros, ref body);
        return Autograd.Record(result, "permute", [x], r =>
        {
            var back = new ScatterAdd { G = r.Grad!.Data, Dst = x.Grad0() };
            Broadcast.ForEachRow(outShape, strides, zeros, ref back);
        });
    }

    /// <summary>Swaps two dimensions.</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        var p = new int[Rank];
        for (int i = 0; i < Rank; i++) p[i] = i;
        int a = NormDim(dim0), b = NormDim(dim1);
        (p[a], p[b]) = (p[b], p[a]);
        return Permute(p);
    }

    /// <summary>Broadcasts to <paramref name="shape"/> (as torch.Tensor.expand, but copying).</summary>
    public Tensor BroadcastTo(params int[] shape)
    {
        var bc = new Broadcast(_shape, shape);
        if (!bc.OutShape.AsSpan().SequenceEqual(shape)) throw new ArgumentException($"cannot broadcast {ShapeString(_shape)} to {ShapeString(shape)}");
        var x = this;
        var result = Empty(shape);
        var zeros = new int[shape.Length];
        var body = new Gather { Src = Data, Dst = result.Data };
        Broadcast.ForEachRow(bc.OutShape, bc.StridesA, zeros, ref body);
        return Autograd.Record(result, "broadcast_to", [x], r =>
        {
            var back = new ScatterAdd { G = r.Grad!.Data, Dst = x.Grad0() };
            Broadcast.ForEachRow(bc.OutShape, bc.StridesA, zeros, ref back);
        });
    }

    /// <summary>(outer, extent, inner) around dimension d.</summary>
    private (int outer, int extent, int inner) Split(int d)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < d; i++) outer *= _shape[i];
        for (int i = d + 1; i < Rank; i++) inner *= _shape[i];
        return (outer, _shape[d], inner);
    }

    /// <summary>Concatenates tensors along a dimension; all other extents must agree.</summary>
    public static Tensor Cat(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("cat needs at least one tensor");
        var first = tensors[0];
        int d = first.NormDim(dim);
        var shape = first.Shape;
        int total = 0;
        foreach (var t in tensors)
        {
            if (t.Rank != first.Rank) throw new ArgumentException($"cat: rank {t.Rank} differs from {first.Rank}");
            for (int i = 0; i < t.Rank; i++)
                if (i != d && t._shape[i] != first._shape[i])
                    throw new ArgumentException($"cat along {d}: shapes {ShapeString(first._shape)} and {ShapeString(t._shape)} differ in dimension {i}");
            total += t._shape[d];
        }
        shape[d] = total;
        var result = Empty(shape);
        var (outer, _, inner) = result.Split(d);
        int offset = 0;
        var offsets = new int[tensors.Count];
        for (int k = 0; k < tensors.Count; k++)
        {
            var t = tensors[k];
            int w = t._shape[d] * inner;
            offsets[k] = offset;
            for (int o = 0; o < outer; o++)
                t.Data.AsSpan(o * w, w).CopyTo(result.Data.AsSpan(o * total * inner + offset, w));
            offset += w;
        }
        var inputs = tensors.ToArray();
        return Autograd.Record(result, "cat", inputs, r =>
        {
            var g = r.Grad!.Data;
            for (int k = 0; k < inputs.Length; k++)
            {
                var t = inputs[k];
                if (!t.RequiresGrad) continue;
                int w = t._shape[d] * inner;
                var dx = t.GradSpan();
                for (int o = 0; o < outer; o++)
                    TensorPrimitives.Add(dx.Slice(o * w, w), g.AsSpan(o * total * inner + offsets[k], w), dx.Slice(o * w, w));
            }
        });
    }

    /// <summary>The sub-tensor with indices start..start+length−1 along a dimension (as torch.narrow).</summary>
    public Tensor Slice(int dim, int start, int length)
    {
        int d = NormDim(dim);
        if (start < 0 || length < 0 || start + length > _shape[d])
            throw new ArgumentOutOfRangeException(nameof(start), $"slice [{start}, {start + length}) is outside dimension {d} of size {_shape[d]}");
        var shape = Shape; shape[d] = length;
        var (outer, extent, inner) = Split(d);
        var result = Empty(shape);
        int w = length * inner;
        for (int o = 0; o < outer; o++)
            Data.AsSpan(o * extent * inner + start * inner, w).CopyTo(result.Data.AsSpan(o * w, w));
        var x = this;
        return Autograd.Record(result, "slice", [x], r =>
        {
            var dx = x.GradSpan(); var g = r.Grad!.Data;
            for (int o = 0; o < outer; o++)
            {
                var dst = dx.Slice(o * extent * inner + start * inner, w);
                TensorPrimitives.Add(dst, g.AsSpan(o * w, w), dst);
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

    private Tensor Reduce(int[]? dims, bool keepDim, bool mean)
    {
        var reduce = new bool[Rank];
        if (dims is null || dims.Length == 0) Array.Fill(reduce, true);
        else foreach (int dd in dims) reduce[NormDim(dd)] = true;
        var keptShape = new int[Rank];
        long count = 1;
        for (int i = 0; i < Rank; i++) { keptShape[i] = reduce[i] ? 1 : _shape[i]; if (reduce[i]) count *= _shape[i]; }
        var outShape = keepDim ? keptShape : keptShape.Where((_, i) => !reduce[i]).ToArray();
        float scale = mean ? 1f / count : 1f;
        var strides = Broadcast.StridesFor(keptShape, _shape);
        var zeros = new int[Rank];
        var result = ZerosScoped(outShape);
        // Walk the input; the result (in kept layout) is the strided destination.
        var body = new ReduceRows { Src = Data, Dst = result.Data, Scale = scale };
        Broadcast.ForEachRow(_shape, strides, zeros, ref body);
        var x = this;
        return Autograd.Record(result, mean ? "mean" : "sum", [x], r =>
        {
            var back = new ExpandRows { G = r.Grad!.Data, Dst = x.Grad0(), Scale = scale };
            Broadcast.ForEachRow(x._shape, strides, zeros, ref back);
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
