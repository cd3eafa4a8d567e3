using System.Diagnostics;
using VitSharp.Data;

namespace VitSharp.Tests.Data;

/// <summary>Runs alone: the tests count the live loader threads of the whole process.</summary>
[CollectionDefinition(nameof(DataLoaderTests), DisableParallelization = true)]
public sealed class DataLoaderCollection;

[Collection(nameof(DataLoaderTests))]
public sealed class DataLoaderTests
{
    /// <summary>N grey 4×4 images; pixel k of image i is (i + k) mod 256; label i mod 3.</summary>
    private static InMemoryDataset Synthetic(int n, int c = 1)
    {
        int s = c * 16;
        var px = new byte[n * s];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < s; k++) px[i * s + k] = (byte)(i + k);
        return new InMemoryDataset(px, Enumerable.Range(0, n).Select(i => i % 3).ToArray(), c, 4, 4, ["a", "b", "c"]);
    }

    private static readonly ITransform Augment = new Compose(new RandomCrop(1), new RandomHorizontalFlip(), new Normalize([0.5f], [0.25f]));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EverySampleExactlyOncePerEpoch(bool shuffle)
    {
        var ds = Synthetic(103);
        var loader = new DataLoader(ds, 10, shuffle, seed: 5, transform: null);
        Assert.Equal(11, loader.BatchCount);
        var seen = new List<int>();
        var buf = new float[16];
        foreach (var b in loader.Epoch(0))
        {
            Assert.Equal(new[] { b.Count, 1, 4, 4 }, b.Images.Shape);
            for (int i = 0; i < b.Count; i++)
            {
                int idx = b.Indices[i];
                Assert.Equal(ds.Label(idx), b.Labels[i]);
                ds.ReadPixels(idx, buf);
                Assert.Equal(buf, b.Images.Data.AsSpan(i * 16, 16).ToArray());
            }
            seen.AddRange(b.Indices);
        }
        Assert.Equal(103, seen.Count);
        Assert.Equal(Enumerable.Range(0, 103), seen.Order());
        if (!shuffle) Assert.Equal(Enumerable.Range(0, 103), seen);
        else Assert.NotEqual(Enumerable.Range(0, 103), seen);
    }

    [Fact]
    public void SameSeedSameBatchesBitForBit()
    {
        var ds = Synthetic(50, c: 3);
        var a = new DataLoader(ds, 8, true, 11, Augment).Epoch(2).ToList();
        var b = new DataLoader(ds, 8, true, 11, Augment, prefetch: 1).Epoch(2).ToList();
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].Labels, b[i].Labels);
            Assert.Equal(a[i].Indices, b[i].Indices);
            Assert.Equal(a[i].Images.Data, b[i].Images.Data);
        }
        // The synchronous path gives the same batch as the background thread.
        var loader = new DataLoader(ds, 8, true, 11, Augment);
        Assert.Equal(a[3].Images.Data, loader.GetBatch(2, 3).Images.Data);
        // A different seed gives a different order.
        Assert.NotEqual(a[0].Indices, new DataLoader(ds, 8, true, 12, Augment).Epoch(2).First().Indices);
    }

    [Fact]
    public void AugmentationDependsOnSampleNotOnBatching()
    {
        var ds = Synthetic(20);
        var small = new DataLoader(ds, 3, false, 4, Augment).Epoch(1).SelectMany(b => Split(b)).ToList();
        var large = new DataLoader(ds, 7, false, 4, Augment).Epoch(1).SelectMany(b => Split(b)).ToList();
        for (int i = 0; i < 20; i++) Assert.Equal(small[i], large[i]);

        static IEnumerable<float[]> Split(Batch b)
        {
            for (int i = 0; i < b.Count; i++) yield return b.Images.Data.AsSpan(i * 16, 16).ToArray();
        }
    }

    [Fact]
    public void DifferentEpochsDifferentOrderAndAugmentation()
    {
        var ds = Synthetic(64);
        var loader = new DataLoader(ds, 64, true, 1, Augment);
        var e0 = loader.Epoch(0).Single();
        var e1 = loader.Epoch(1).Single();
        Assert.NotEqual(e0.Indices, e1.Indices);
        Assert.Equal(loader.Order(0), e0.Indices);
        // Same sample, different epochs: different augmentation (for most samples).
        int differ = 0;
        for (int idx = 0; idx < 64; idx++)
        {
            int p0 = Array.IndexOf(e0.Indices, idx), p1 = Array.IndexOf(e1.Indices, idx);
            if (!e0.Images.Data.AsSpan(p0 * 16, 16).SequenceEqual(e1.Images.Data.AsSpan(p1 * 16, 16))) differ++;
        }
        Assert.True(differ > 32, $"only {differ} of 64 samples changed between epochs");
    }

    [Fact]
    public void DropLast()
    {
        var ds = Synthetic(25);
        var keep = new DataLoader(ds, 10, true, 0, null).Epoch(0).Select(b => b.Count).ToArray();
        var drop = new DataLoader(ds, 10, true, 0, null, dropLast: true).Epoch(0).Select(b => b.Count).ToArray();
        Assert.Equal(new[] { 10, 10, 5 }, keep);
        Assert.Equal(new[] { 10, 10 }, drop);
        Assert.Empty(new DataLoader(Synthetic(5), 10, false, 0, null, dropLast: true).Epoch(0));
        Assert.Equal(20, new DataLoader(ds, 10, true, 0, null, dropLast: true).SamplesPerEpoch);
    }

    [Fact]
    public void AbandoningAnEpochStopsTheWorker()
    {
        var ds = new SlowDataset(Synthetic(1000));
        var loader = new DataLoader(ds, 4, true, 0, Augment);
        for (int rep = 0; rep < 5; rep++)
        {
            foreach (var b in loader.Epoch(rep))
            {
                Assert.Equal(4, b.Count);
                Assert.Equal(1, DataLoader.ActiveWorkers);
                break;
            }
            Assert.Equal(0, DataLoader.ActiveWorkers);
            using (var e = loader.Epoch(rep).GetEnumerator())
            {
                Assert.True(e.MoveNext());
                Assert.True(e.MoveNext());
            }
            Assert.Equal(0, DataLoader.ActiveWorkers);
        }
        // The worker was joined: it reads nothing after the enumerators were disposed.
        int reads = ds.Reads;
        Thread.Sleep(50);
        Assert.Equal(reads, ds.Reads);
        Assert.True(reads < 200, $"{reads} samples read for 15 consumed batches");
    }

    [Fact]
    public void AnEnumeratorAbandonedWithoutDisposeIsStoppedByTheGc()
    {
        var ds = new SlowDataset(Synthetic(2000));
        var loader = new DataLoader(ds, 4, false, 0, null, prefetch: 1);
        StartAndAbandon(loader);
        Assert.Equal(1, DataLoader.ActiveWorkers);
        var sw = Stopwatch.StartNew();   // only guards against a hang: the assertion is on the worker count
        while (DataLoader.ActiveWorkers > 0 && sw.Elapsed < TimeSpan.FromSeconds(30))
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(10);
        }
        Assert.Equal(0, DataLoader.ActiveWorkers);
        int reads = ds.Reads;
        Thread.Sleep(100);
        Assert.Equal(reads, ds.Reads);
        Assert.True(reads < 100, $"{reads} samples read");

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        static void StartAndAbandon(DataLoader l)
        {
            var e = l.Epoch(0).GetEnumerator();
            Assert.True(e.MoveNext());
        }
    }

    [Fact]
    public void EnumeratingTwiceGivesTheSameBatchesAndEmptyDatasetsWork()
    {
        var ds = Synthetic(30);
        var epoch = new DataLoader(ds, 7, true, 3, Augment).Epoch(4);
        var a = epoch.Select(b => b.Images.Data).ToList();
        var b = epoch.Select(b => b.Images.Data).ToList();
        Assert.Equal(a, b);
        Assert.Empty(new DataLoader(Synthetic(0), 4, true, 0, null).Epoch(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(ds, 0, true, 0, null));
    }

    [Fact]
    public void WorkerErrorsReachTheCaller()
    {
        var ds = new SlowDataset(Synthetic(40)) { FailAt = 25 };
        var loader = new DataLoader(ds, 10, false, 0, null);
        int got = 0;
        var e = Assert.Throws<DataSetException>(() => { foreach (var _ in loader.Epoch(0)) got++; });
        Assert.Contains("sample 25", e.Message);
        Assert.Equal(2, got);
        Assert.Equal(0, DataLoader.ActiveWorkers);
    }

    /// <summary>Wraps a data set, counting reads, sleeping a little per read and optionally failing.</summary>
    private sealed class SlowDataset(IImageDataset inner) : IImageDataset
    {
        private int _reads;
        public int Reads => Volatile.Read(ref _reads);
        public int FailAt { get; init; } = -1;
        public int Count => inner.Count;
        public int Channels => inner.Channels;
        public int Height => inner.Height;
        public int Width => inner.Width;
        public int NumClasses => inner.NumClasses;
        public IReadOnlyList<string> ClassNames => inner.ClassNames;
        public int Label(int index) => inner.Label(index);

        public void ReadPixels(int index, Span<float> destination)
        {
            if (index == FailAt) throw new DataSetException($"bad sample {index}");
            Interlocked.Increment(ref _reads);
            Thread.Sleep(1);
            inner.ReadPixels(index, destination);
        }
    }

    [Fact]
    public void SubsetAndTake()
    {
        var ds = Synthetic(10);
        var sub = ds.Subset([7, 2, 2]);
        Assert.Equal(3, sub.Count);
        Assert.Equal(ds.Label(7), sub.Label(0));
        var a = new float[16];
        var b = new float[16];
        sub.ReadPixels(1, a);
        ds.ReadPixels(2, b);
        Assert.Equal(b, a);
        Assert.Equal(4, ds.Take(4).Count);
        Assert.Equal(10, ds.Take(40).Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => ds.Subset([10]));
        Assert.Throws<ArgumentOutOfRangeException>(() => sub.Label(3));
    }
}
