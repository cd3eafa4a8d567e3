using VitSharp.Data;

namespace VitSharp.Tests.Data;

/// <summary>
/// A sharded <see cref="DataLoader"/> (one shard per MPI rank): the shards of every batch, put back in shard order, are
/// exactly the unsharded loader's batch — same samples, pixels (augmented), labels and order — for any number of shards.
/// </summary>
[Collection(nameof(DataLoaderTests))]
public sealed class ShardedDataLoaderTests
{
    private static InMemoryDataset Synthetic(int n)
    {
        var px = new byte[n * 16];
        for (int i = 0; i < px.Length; i++) px[i] = (byte)(i * 7 + i / 16);
        return new InMemoryDataset(px, Enumerable.Range(0, n).Select(i => i % 3).ToArray(), 1, 4, 4, ["a", "b", "c"]);
    }

    private static readonly ITransform Augment = new Compose(new RandomCrop(1), new RandomHorizontalFlip());

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void TheShardsOfEveryBatchPutTogetherAreTheWholeBatch(int shards)
    {
        var ds = Synthetic(23);   // batches of 8, 8, 7 (the last one smaller than 8 and not a multiple of 2, 3 or 5)
        var whole = new DataLoader(ds, 8, shuffle: true, seed: 11, Augment);
        var parts = Enumerable.Range(0, shards).Select(k => new DataLoader(ds, 8, shuffle: true, seed: 11, Augment, shard: k, shards: shards)).ToArray();
        for (int epoch = 0; epoch < 2; epoch++)
            for (int b = 0; b < whole.BatchCount; b++)
            {
                var expected = whole.GetBatch(epoch, b);
                var got = parts.Select(p => p.GetBatch(epoch, b)).ToArray();
                Assert.All(got, g => Assert.Equal(expected.Count, g.GlobalCount));
                Assert.Equal(expected.Indices, got.SelectMany(g => g.Indices));
                Assert.Equal(expected.Labels, got.SelectMany(g => g.Labels));
                Assert.Equal(expected.Images.Data, got.SelectMany(g => g.Images.Data));
                Assert.All(got, g => Assert.Equal(g.Count, g.Images.Dim(0)));
            }
    }

    [Fact]
    public void ShardsDifferInSizeByAtMostOneAndTwoShardsCutWhereTheTwoCoreSplitDoes()
    {
        // The in-process two-core split gives its first half ⌈n/2⌉ samples; two ranks must cut a batch at the same place.
        Assert.Equal(4, DataLoader.ShardStart(7, 1, 2));
        Assert.Equal(32, DataLoader.ShardStart(64, 1, 2));
        for (int n = 0; n <= 40; n++)
            for (int shards = 1; shards <= 6; shards++)
            {
                var sizes = Enumerable.Range(0, shards).Select(k => DataLoader.ShardStart(n, k + 1, shards) - DataLoader.ShardStart(n, k, shards)).ToArray();
                Assert.Equal(n, sizes.Sum());
                Assert.True(sizes.Max() - sizes.Min() <= 1, $"n {n}, shards {shards}: {string.Join(", ", sizes)}");
            }
    }

    [Fact]
    public void ABatchSmallerThanTheShardsLeavesSomeShardsEmpty()
    {
        var ds = Synthetic(2);
        var counts = Enumerable.Range(0, 3).Select(k => new DataLoader(ds, 8, shuffle: false, seed: 0, null, shard: k, shards: 3).GetBatch(0, 0)).ToArray();
        Assert.Equal([1, 1, 0], counts.Select(b => b.Count));
        Assert.All(counts, b => Assert.Equal(2, b.GlobalCount));
        Assert.Equal([0, 1], counts.SelectMany(b => b.Indices));
    }

    [Fact]
    public void AShardOutsideTheShardsIsRefused()
    {
        var ds = Synthetic(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(ds, 2, false, 0, null, shard: 2, shards: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(ds, 2, false, 0, null, shard: 0, shards: 0));
    }
}
