using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace VitSharp.Data;

/// <summary>
/// Cuts a data set into mini-batches, optionally shuffled and augmented, and prepares the next batches on a
/// background thread while the caller works on the current one.
/// </summary>
/// <remarks>
/// Reproducible: epoch e visits the samples in a permutation drawn from (seed, e) (or in order without
/// shuffling), and the transform of sample i in epoch e draws from a <see cref="SampleRandom"/> seeded with
/// (seed, e, i) — so the batches depend only on (seed, epoch), never on thread timing, and the same seed
/// gives the same batches bit for bit. The background thread keeps at most <c>prefetch</c> finished batches
/// ahead; disposing an epoch's enumerator (e.g. leaving a foreach early) stops and joins it.
/// </remarks>
public sealed class DataLoader
{
    private static int _activeWorkers;
    private readonly IImageDataset _dataset;
    private readonly ITransform? _transform;
    private readonly int _prefetch;

    /// <summary>Creates a loader.</summary>
    /// <param name="dataset">The samples.</param>
    /// <param name="batchSize">Samples per batch (≥ 1).</param>
    /// <param name="shuffle">Visit the samples in a new random order every epoch.</param>
    /// <param name="seed">Seed of the shuffling and of the per-sample augmentation randomness.</param>
    /// <param name="transform">Applied to every sample (C×H×W floats in [0, 1]); null for none.</param>
    /// <param name="dropLast">Drop the last batch of an epoch when it is smaller than <paramref name="batchSize"/>.</param>
    /// <param name="prefetch">How many finished batches the background thread may keep ready (≥ 1).</param>
    /// <param name="shard">With <paramref name="shards"/> &gt; 1: which part of every batch this loader builds (0 …
    /// shards − 1), e.g. the MPI rank. A batch of n samples is cut into contiguous parts at ⌈k·n/shards⌉, so the global
    /// batches, their order and augmentation do not depend on the number of shards.</param>
    /// <param name="shards">Parts every batch is cut into (≥ 1); 1: whole batches.</param>
    public DataLoader(IImageDataset dataset, int batchSize, bool shuffle, int seed, ITransform? transform, bool dropLast = false, int prefetch = 2,
        int shard = 0, int shards = 1)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefetch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        if ((uint)shard >= (uint)shards) throw new ArgumentOutOfRangeException(nameof(shard), shard, $"the shard must lie in [0, {shards})");
        Shard = shard;
        Shards = shards;
        _dataset = dataset;
        BatchSize = batchSize;
        Shuffle = shuffle;
        Seed = seed;
        _transform = transform;
        DropLast = dropLast;
        _prefetch = prefetch;
    }

    /// <summary>The data set.</summary>
    public IImageDataset Dataset => _dataset;

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Whether each epoch uses a new random order.</summary>
    public bool Shuffle { get; }

    /// <summary>The seed.</summary>
    public int Seed { get; }

    /// <summary>Whether a smaller last batch is dropped.</summary>
    public bool DropLast { get; }

    /// <summary>The part of every batch this loader builds (0 when not sharded).</summary>
    public int Shard { get; }

    /// <summary>Parts every batch is cut into (1: whole batches).</summary>
    public int Shards { get; }

    /// <summary>The start of part <paramref name="shard"/> of <paramref name="shards"/> in a batch of <paramref name="count"/>
    /// samples: ⌈shard·count/shards⌉ (part k holds [Start(k), Start(k + 1))).</summary>
    public static int ShardStart(int count, int shard, int shards) => (int)(((long)shard * count + shards - 1) / shards);

    /// <summary>Background threads of all loaders still running (for tests and diagnostics).</summary>
    internal static int ActiveWorkers => Volatile.Read(ref _activeWorkers);

    /// <summary>Batches per epoch.</summary>
    public int BatchCount => DropLast ? _dataset.Count / BatchSize : (_dataset.Count + BatchSize - 1) / BatchSize;

    /// <summary>Samples per epoch (all of them, or fewer with <see cref="DropLast"/>).</summary>
    public int SamplesPerEpoch => DropLast ? BatchCount * BatchSize : _dataset.Count;

    /// <summary>The order in which epoch <paramref name="epoch"/> visits the data set's indices.</summary>
    public int[] Order(int epoch)
    {
        int n = _dataset.Count;
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        if (Shuffle)
        {
            var rng = new SampleRandom(SampleRandom.Mix(Seed, epoch, -1));
            for (int i = n - 1; i > 0; i--)
            {
                int j = rng.Next(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
        }
        return order;
    }

    /// <summary>
    /// The batches of epoch <paramref name="epoch"/>, prepared ahead on a background thread. An exception
    /// thrown while preparing a batch (e.g. a <see cref="DataSetException"/>) is rethrown by the enumerator
    /// after the batches that were ready before it.
    /// </summary>
    public IEnumerable<Batch> Epoch(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        return Run(epoch);
    }

    /// <summary>Builds batch <paramref name="batchIndex"/> of an epoch on the calling thread (the same batch <see cref="Epoch"/> yields).</summary>
    public Batch GetBatch(int epoch, int batchIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        if ((uint)batchIndex >= (uint)BatchCount)
            throw new ArgumentOutOfRangeException(nameof(batchIndex), batchIndex, $"an epoch has {BatchCount} batches");
        return Build(Order(epoch), epoch, batchIndex, new SampleRandom());
    }

    private IEnumerable<Batch> Run(int epoch) => new EpochBatches(this, epoch);

    /// <summary>The batches of one epoch; each enumeration starts its own background thread on the first MoveNext.</summary>
    private sealed class EpochBatches(DataLoader loader, int epoch) : IEnumerable<Batch>
    {
        public IEnumerator<Batch> GetEnumerator() => new EpochEnumerator(loader, epoch);

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>
    /// Hands out the prefetched batches. Dispose stops and joins the worker; an enumerator abandoned without
    /// Dispose stops it from its finalizer (the worker holds no reference to the enumerator, so it can be collected).
    /// </summary>
    private sealed class EpochEnumerator(DataLoader loader, int epoch) : IEnumerator<Batch>
    {
        private Prefetcher? _prefetcher;
        private Batch? _current;
        private bool _finished;

        public Batch Current => _current ?? throw new InvalidOperationException("MoveNext has not returned true");

        object System.Collections.IEnumerator.Current => Current;

        public bool MoveNext()
        {
            if (_finished) return false;
            _prefetcher ??= new Prefetcher(loader, epoch);
            if (_prefetcher.Queue.TryTake(out var batch, Timeout.Infinite))
            {
                _current = batch;
                return true;
            }
            _finished = true;
            _current = null;
            Exception? error = _prefetcher.Error;
            Dispose();
            if (error is not null) ExceptionDispatchInfo.Throw(error);
            return false;
        }

        public void Reset() => throw new NotSupportedException("call DataLoader.Epoch again");

        public void Dispose()
        {
            _finished = true;
            var p = Interlocked.Exchange(ref _prefetcher, null);
            p?.Stop(join: true);
            GC.SuppressFinalize(this);
        }

        ~EpochEnumerator() => _prefetcher?.Stop(join: false);
    }

    /// <summary>The background thread and its bounded queue of finished batches.</summary>
    private sealed class Prefetcher
    {
        private readonly DataLoader _loader;
        private readonly int _epoch;
        private readonly int[] _order;
        private readonly CancellationTokenSource _cts = new();
        private readonly Thread _thread;

        public Prefetcher(DataLoader loader, int epoch)
        {
            _loader = loader;
            _epoch = epoch;
            _order = loader.Order(epoch);
            Queue = new BlockingCollection<Batch>(loader._prefetch);
            _thread = new Thread(Produce) { IsBackground = true, Name = $"VitSharp DataLoader epoch {epoch}" };
            Interlocked.Increment(ref _activeWorkers);
            _thread.Start();
        }

        public BlockingCollection<Batch> Queue { get; }

        /// <summary>The exception that stopped the worker, if any (read after the queue completes).</summary>
        public Exception? Error { get; private set; }

        private void Produce()
        {
            CancellationToken token = _cts.Token;
            try
            {
                var rng = new SampleRandom();
                int batches = _loader.BatchCount;
                for (int b = 0; b < batches && !token.IsCancellationRequested; b++)
                    Queue.Add(_loader.Build(_order, _epoch, b, rng), token);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested) { }
            catch (Exception e) { Error = e; }
            finally
            {
                Queue.CompleteAdding();
                Interlocked.Decrement(ref _activeWorkers);
            }
        }

        public void Stop(bool join)
        {
            try { _cts.Cancel(); } catch (ObjectDisposedException) { }
            if (!join) return;
            _thread.Join();
            _cts.Dispose();
            Queue.Dispose();
        }
    }

    private Batch Build(int[] order, int epoch, int batchIndex, SampleRandom rng)
    {
        int globalStart = batchIndex * BatchSize;
        int globalCount = Math.Min(BatchSize, order.Length - globalStart);
        int lo = ShardStart(globalCount, Shard, Shards);
        int start = globalStart + lo, count = ShardStart(globalCount, Shard + 1, Shards) - lo;
        int c = _dataset.Channels, h = _dataset.Height, w = _dataset.Width;
        int sample = c * h * w;
        var data = new float[(long)count * sample];
        var labels = new int[count];
        var indices = new int[count];
        for (int i = 0; i < count; i++)
        {
            int idx = order[start + i];
            indices[i] = idx;
            labels[i] = _dataset.Label(idx);
            Span<float> dst = data.AsSpan(i * sample, sample);
            _dataset.ReadPixels(idx, dst);
            if (_transform is not null)
            {
                rng.Reset(SampleRandom.Mix(Seed, epoch, idx));
                _transform.Apply(dst, c, h, w, rng);
            }
        }
        return new Batch(new Tensor(data, count, c, h, w), labels, indices, globalCount);
    }
}
