using System.Runtime.CompilerServices;
using System.Text;

namespace VitSharp;

/// <summary>
/// A float32, contiguous, row-major tensor that can take part in reverse-mode automatic differentiation.
/// </summary>
/// <remarks>
/// Ops on tensors that require a gradient record a node on the tape (the tensor's <see cref="Creator"/>);
/// <see cref="Backward"/> runs the recorded backward functions in reverse topological order and
/// accumulates into <see cref="Grad"/> of every tensor that requires a gradient. Reshapes are views that
/// share <see cref="Data"/>; no op mutates its inputs.
/// </remarks>
public sealed partial class Tensor
{
    // Not readonly: a recycling TensorScope reuses released tensor objects (see TensorScope.Begin(bool)).
    private int[] _shape;
    private float[] _data;
    private bool _released;

    /// <summary>The elements, row-major. Its length equals <see cref="Size"/>.</summary>
    /// <exception cref="ObjectDisposedException">The tensor was created inside a <see cref="TensorScope"/> that has ended.</exception>
    public float[] Data => _released ? throw Released() : _data;

    /// <summary>The gradient accumulated by <see cref="Backward"/>, same shape as this tensor; null until one arrives.</summary>
    public Tensor? Grad { get; set; }

    /// <summary>Whether ops on this tensor record a backward node and <see cref="Backward"/> fills <see cref="Grad"/>.</summary>
    public bool RequiresGrad { get; set; }

    /// <summary>The node that produced this tensor (null for leaves and for results computed without gradient).</summary>
    internal Node? Creator { get; set; }

    /// <summary>This weight converted for low-precision inference (<see cref="Inference.ModelPrecision.UsePrecision"/>), or null.</summary>
    internal Inference.PackedLinearWeights? Packed { get; set; }

    /// <summary>Creates a zero-filled tensor of the given shape.</summary>
    public Tensor(params int[] shape) : this(new float[ChargedSize(shape)], shape) { }

    /// <summary>The element count of <paramref name="shape"/>, counted against the thread's <see cref="AllocationBudget"/>.</summary>
    private static long ChargedSize(int[] shape)
    {
        long size = CheckedSize(shape);
        AllocationBudget.Charge(size);
        return size;
    }

    /// <summary>Wraps <paramref name="data"/> (not copied) as a tensor of the given shape.</summary>
    public Tensor(float[] data, params int[] shape) : this(data, shape, copyShape: true) { }

    /// <summary>An op result: storage from the current <see cref="TensorScope"/> (uninitialised) or a fresh array.</summary>
    internal static Tensor Empty(params ReadOnlySpan<int> shape) => Scoped(TensorScope.Allocate((int)CheckedSize(shape), clear: false), shape);

    /// <summary>A zero-filled op result (pooled inside a scope).</summary>
    internal static Tensor ZerosScoped(params ReadOnlySpan<int> shape) => Scoped(TensorScope.Allocate((int)CheckedSize(shape), clear: true), shape);

    /// <summary>
    /// Wraps op-owned storage (a result or a view) and registers it with the current scope; inside a recycling scope
    /// the tensor object is one that an earlier scope on this thread released.
    /// </summary>
    internal static Tensor Scoped(float[] data, ReadOnlySpan<int> shape)
    {
        var t = TensorScope.Reuse(shape.Length);
        if (t is null)
        {
            t = new Tensor(data, shape.ToArray(), copyShape: false);
        }
        else
        {
            if (data.Length != CheckedSize(shape))
                throw new ArgumentException($"data has {data.Length} elements but shape {ShapeString(shape)} needs {CheckedSize(shape)}");
            t._data = data;
            shape.CopyTo(t._shape);
            t._released = false;
            t.RequiresGrad = false;
        }
        TensorScope.Track(t);
        return t;
    }

    private Tensor(float[] data, int[] shape, bool copyShape)
    {
        long size = CheckedSize(shape);
        if (data.Length != size)
            throw new ArgumentException($"data has {data.Length} elements but shape {ShapeString(shape)} needs {size}");
        _data = data;
        _shape = copyShape ? (int[])shape.Clone() : shape;
    }

    /// <summary>Called when the owning scope ends.</summary>
    internal void Release(bool dropStorage = false)
    {
        _released = true;
        Creator = null;
        Grad = null;
        // A recycled tensor object waits for its next use without pinning the storage it had (which went back to the
        // pool, and which TensorPool.Clear may want the GC to take).
        if (dropStorage) _data = [];
    }

    private ObjectDisposedException Released() =>
        new(nameof(Tensor), $"tensor {ShapeString(_shape)} was released when its TensorScope ended; call scope.Keep(t) or t.Clone() inside the scope to keep it");

    /// <summary>The shape (a copy).</summary>
    public int[] Shape => (int[])_shape.Clone();

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements.</summary>
    public int Size => _data.Length;

    /// <summary>The extent of dimension <paramref name="dim"/> (negative counts from the end).</summary>
    public int Dim(int dim) => _shape[NormDim(dim)];

    internal ReadOnlySpan<int> ShapeSpan => _shape;

    /// <summary>The elements as a span.</summary>
    public Span<float> Span => Data;

    /// <summary>The value of a one-element tensor.</summary>
    public float Item() => Size == 1 ? Data[0] : throw new InvalidOperationException($"Item() needs a one-element tensor, got shape {ShapeString(_shape)}");

    /// <summary>Element at a multi-index.</summary>
    [IndexerName("At")]
    public float this[params int[] index]
    {
        get => Data[Offset(index)];
        set => Data[Offset(index)] = value;
    }

    private int Offset(int[] index)
    {
        if (index.Length != Rank) throw new ArgumentException($"index has {index.Length} dims, tensor has {Rank}");
        int off = 0;
        for (int i = 0; i < index.Length; i++)
        {
            if ((uint)index[i] >= (uint)_shape[i]) throw new IndexOutOfRangeException($"index {index[i]} out of range for dim {i} of size {_shape[i]}");
            off = off * _shape[i] + index[i];
        }
        return off;
    }

    /// <summary>Normalizes a possibly negative dimension index.</summary>
    public int NormDim(int dim)
    {
        int d = dim < 0 ? dim + Rank : dim;
        if ((uint)d >= (uint)Math.Max(Rank, 1) || (Rank == 0))
            throw new ArgumentOutOfRangeException(nameof(dim), $"dimension {dim} is out of range for a tensor of rank {Rank}");
        return d;
    }

    /// <summary>Creates a tensor filled with zeros.</summary>
    public static Tensor Zeros(params int[] shape) => new(shape);

    /// <summary>Creates a tensor filled with ones.</summary>
    public static Tensor Ones(params int[] shape) => Full(1f, shape);

    /// <summary>Creates a tensor filled with <paramref name="value"/>.</summary>
    public static Tensor Full(float value, params int[] shape)
    {
        var t = new Tensor(shape);
        t.Data.AsSpan().Fill(value);
        return t;
    }

    /// <summary>Creates a tensor from values (copied) and a shape.</summary>
    public static Tensor FromArray(ReadOnlySpan<float> values, params int[] shape) => new(values.ToArray(), shape);

    /// <summary>A one-element tensor of rank 0.</summary>
    public static Tensor Scalar(float value) => new(new[] { value });

    /// <summary>Samples from N(mean, std²) with the given generator.</summary>
    public static Tensor RandN(Random rng, float mean, float std, params int[] shape)
    {
        var t = new Tensor(shape);
        var d = t.Data;
        for (int i = 0; i < d.Length; i += 2)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            d[i] = (float)(mean + std * r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < d.Length) d[i + 1] = (float)(mean + std * r * Math.Sin(2 * Math.PI * u2));
        }
        return t;
    }

    /// <summary>Samples from U[low, high) with the given generator.</summary>
    public static Tensor RandU(Random rng, float low, float high, params int[] shape)
    {
        var t = new Tensor(shape);
        var d = t.Data;
        for (int i = 0; i < d.Length; i++) d[i] = (float)(low + (high - low) * rng.NextDouble());
        return t;
    }

    /// <summary>A copy of the data without history (does not require a gradient).</summary>
    public Tensor Detach() => Traced("detach", Scoped(Data, _shape));

    /// <summary>A deep copy of the data without history.</summary>
    public Tensor Clone() => Traced("clone", new((float[])Data.Clone(), _shape));

    /// <summary>Reports a copy of this tensor to the thread's <see cref="IOpTracer"/> (ONNX export sees it as the identity).</summary>
    private Tensor Traced(string name, Tensor copy)
    {
        OpTrace.Current?.Op(name, copy, [this], OpAttributes.None);
        return copy;
    }

    /// <summary>
    /// Returns the gradient buffer, creating a zero-filled one when absent: leaves (parameters) get their own
    /// array, intermediate results a pooled one inside a scope.
    /// </summary>
    internal Span<float> GradSpan()
    {
        Grad ??= Creator is null ? new Tensor(_shape) : ZerosScoped(_shape);
        return Grad.Data;
    }

    /// <summary>
    /// A gradient buffer that the caller will fully write (fresh = true, contents arbitrary) or accumulate into
    /// (fresh = false, an existing gradient): lets backward functions write the first contribution with
    /// beta = 0 or a copy instead of clearing and adding.
    /// </summary>
    internal float[] GradForWrite(out bool fresh)
    {
        fresh = Grad is null;
        Grad ??= Creator is null ? new Tensor(_shape) : Empty(_shape);
        return Grad.Data;
    }

    /// <summary>Adds <paramref name="g"/> (same size) to the gradient, copying when it is the first contribution.</summary>
    internal void AccumulateGrad(ReadOnlySpan<float> g)
    {
        var dst = GradForWrite(out bool fresh);
        if (fresh) g.CopyTo(dst);
        else System.Numerics.Tensors.TensorPrimitives.Add(dst, g, dst);
    }

    /// <summary>Clears the gradient (sets it to null).</summary>
    public void ZeroGrad() => Grad = null;

    /// <summary>Whether two shapes are equal.</summary>
    public bool SameShape(Tensor other) => _shape.AsSpan().SequenceEqual(other._shape);

    internal static long CheckedSize(ReadOnlySpan<int> shape)
    {
        long size = 1;
        foreach (int s in shape)
        {
            if (s < 0) throw new ArgumentException($"negative extent in shape {ShapeString(shape)}");
            size *= s;
            if (size > Array.MaxLength) throw new ArgumentException($"shape {ShapeString(shape)} is too large");
        }
        return size;
    }

    /// <summary>Formats a shape as [a, b, c].</summary>
    public static string ShapeString(ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < shape.Length; i++) { if (i > 0) sb.Append(", "); sb.Append(shape[i]); }
        return sb.Append(']').ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => $"Tensor{ShapeString(_shape)}" + (RequiresGrad ? " requires_grad" : "");
}
