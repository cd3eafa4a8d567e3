namespace VitSharp;

/// <summary>
/// Sums the gradients of a set of parameters over every MPI rank (<see cref="Distributed"/>), as PyTorch DDP and
/// Horovod do: the gradients are packed into a preallocated, pinned bucket of <see cref="BucketElements"/> floats, each
/// full bucket is all-reduced in place and unpacked — one MPI call per bucket instead of one per tensor, and no managed
/// allocation per step. Every rank must hold the same parameters in the same order.
/// </summary>
/// <remarks>The all-reduce runs after the backward pass (no overlap with it); see docs/distributed.md for what that costs.</remarks>
public sealed class GradientAllReducer
{
    /// <summary>The default bucket: 1 Mi floats (4 MiB), large enough that the per-call latency is amortised, small
    /// enough to stay in a cache-friendly copy.</summary>
    public const int DefaultBucketElements = 1 << 20;

    private readonly Tensor[] _parameters;
    private readonly float[] _bucket;
    private readonly BucketReduce? _reduce;

    /// <summary>Sums one bucket over the ranks in place (tests replace the MPI all-reduce with it).</summary>
    internal delegate void BucketReduce(Span<float> bucket);

    /// <summary>Sets up the reducer over <paramref name="parameters"/> (those with <c>RequiresGrad</c>; frozen ones are skipped).</summary>
    /// <param name="parameters">The model's parameters, in the same order on every rank.</param>
    /// <param name="bucketElements">Floats per all-reduce call (≥ 1).</param>
    public GradientAllReducer(IEnumerable<Tensor> parameters, int bucketElements = DefaultBucketElements) : this(parameters, bucketElements, null) { }

    internal GradientAllReducer(IEnumerable<Tensor> parameters, int bucketElements, BucketReduce? reduce)
    {
        _reduce = reduce;
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketElements, 1);
        _parameters = parameters.Where(p => p.RequiresGrad).ToArray();
        Elements = _parameters.Sum(p => (long)p.Size);
        BucketElements = (int)Math.Max(1, Math.Min(bucketElements, Elements));
        _bucket = GC.AllocateUninitializedArray<float>(BucketElements, pinned: true);
    }

    /// <summary>Gradient floats summed per step (all trainable parameters).</summary>
    public long Elements { get; }

    /// <summary>Floats per all-reduce call.</summary>
    public int BucketElements { get; }

    /// <summary>All-reduce calls per step.</summary>
    public int Buckets => (int)((Elements + BucketElements - 1) / BucketElements);

    /// <summary>
    /// Replaces every parameter's gradient by its sum over all ranks (a missing gradient counts as zeros and is created).
    /// With one rank, or MPI not initialised, nothing changes.
    /// </summary>
    public void SumOverRanks()
    {
        if (_reduce is null && Distributed.Size == 1) return;
        int filled = 0;
        int first = 0, firstOffset = 0;   // where the bucket's content starts: parameter index and offset in it
        for (int i = 0; i < _parameters.Length; i++)
        {
            var g = _parameters[i].GradSpan();
            int offset = 0;
            while (offset < g.Length)
            {
                int n = Math.Min(g.Length - offset, _bucket.Length - filled);
                g.Slice(offset, n).CopyTo(_bucket.AsSpan(filled, n));
                filled += n; offset += n;
                if (filled == _bucket.Length)
                {
                    Flush(filled, first, firstOffset);
                    filled = 0;
                    (first, firstOffset) = offset == g.Length ? (i + 1, 0) : (i, offset);
                }
            }
        }
        if (filled > 0) Flush(filled, first, firstOffset);
    }

    /// <summary>Copies rank 0's parameter values into every rank (at the start of a run: one identical model everywhere).</summary>
    public static void BroadcastParameters(IEnumerable<Tensor> parameters)
    {
        if (Distributed.Size == 1) return;
        foreach (var p in parameters) Distributed.Broadcast(p.Data, 0);
    }

    // All-reduces the bucket's first `count` floats, then unpacks them into the gradients from (parameter, offset) on.
    private void Flush(int count, int parameter, int offset)
    {
        if (_reduce is null) Distributed.AllReduceSum(_bucket.AsSpan(0, count));
        else _reduce(_bucket.AsSpan(0, count));
        int read = 0;
        for (int i = parameter; read < count; i++, offset = 0)
        {
            var g = _parameters[i].GradSpan();
            int n = Math.Min(g.Length - offset, count - read);
            _bucket.AsSpan(read, n).CopyTo(g.Slice(offset, n));
            read += n;
        }
    }
}
