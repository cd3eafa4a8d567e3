namespace VitSharp.Tests.Distributed;

/// <summary>
/// <see cref="GradientAllReducer"/>'s bucketing, with the MPI all-reduce replaced by a stand-in that records each bucket
/// and plays a world of three identical ranks (every value × 3): every gradient element must be reduced exactly once,
/// in buckets of the given size, whatever the tensor boundaries.
/// </summary>
public sealed class GradientAllReducerTests
{
    private static Tensor Parameter(int size, bool requiresGrad = true, bool withGrad = true)
    {
        var p = new Tensor(size) { RequiresGrad = requiresGrad };
        if (withGrad)
        {
            p.Grad = new Tensor(size);
            for (int i = 0; i < size; i++) p.Grad.Data[i] = 1000 * size + i + 1;
        }
        return p;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(7)]
    [InlineData(19)]
    [InlineData(1000)]
    public void EveryGradientElementIsSummedExactlyOnceInBucketsOfTheGivenSize(int bucket)
    {
        Tensor[] ps = [Parameter(5), Parameter(3), Parameter(10), Parameter(1)];
        var before = ps.Select(p => p.Grad!.Data.ToArray()).ToArray();
        var calls = new List<int>();
        var reducer = new GradientAllReducer(ps, bucket, b => { calls.Add(b.Length); for (int i = 0; i < b.Length; i++) b[i] *= 3; });
        reducer.SumOverRanks();
        for (int k = 0; k < ps.Length; k++)
            Assert.Equal(before[k].Select(v => v * 3), ps[k].Grad!.Data);
        int total = 19, size = Math.Min(bucket, total);
        Assert.Equal(total, reducer.Elements);
        Assert.Equal((total + size - 1) / size, reducer.Buckets);
        Assert.Equal(Enumerable.Range(0, reducer.Buckets).Select(i => Math.Min(size, total - i * size)), calls);
    }

    [Fact]
    public void FrozenParametersAreLeftOutAndAMissingGradientIsReducedAsZeros()
    {
        var frozen = Parameter(4, requiresGrad: false);
        var noGradYet = Parameter(3, withGrad: false);   // a rank whose shard was empty had no backward pass
        var trained = Parameter(2);
        var reducer = new GradientAllReducer([frozen, noGradYet, trained], 1000, b => { for (int i = 0; i < b.Length; i++) b[i] += 1; });
        var frozenGrad = frozen.Grad!.Data.ToArray();
        reducer.SumOverRanks();
        Assert.Equal(5, reducer.Elements);
        Assert.Equal(frozenGrad, frozen.Grad!.Data);
        Assert.Equal([1f, 1f, 1f], noGradYet.Grad!.Data);
        Assert.Equal([2002f, 2003f], trained.Grad!.Data);
    }

    [Fact]
    public void WithoutMpiTheGradientsStayAsTheyAre()
    {
        Assert.False(VitSharp.Distributed.IsInitialized);
        var p = Parameter(6);
        var before = p.Grad!.Data.ToArray();
        new GradientAllReducer([p]).SumOverRanks();
        Assert.Equal(before, p.Grad!.Data);
        Assert.Equal(1, VitSharp.Distributed.Size);
        Assert.Equal(0, VitSharp.Distributed.Rank);
    }
}
