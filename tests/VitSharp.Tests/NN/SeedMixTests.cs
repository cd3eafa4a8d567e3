using System.Numerics;
using VitSharp.Data;
using VitSharp.NN;

namespace VitSharp.Tests.NN;

/// <summary>
/// <see cref="SeedMix"/> is a fixed function: the expected values come from SplitMix64's published output and from the
/// definition written out again here with arbitrary-precision arithmetic, not from the implementation's own output.
/// </summary>
public class SeedMixTests
{
    private static readonly BigInteger Two64 = BigInteger.One << 64;

    // SplitMix64's first output for a state, by its definition (Vigna's splitmix64.c), modulo 2⁶⁴ in BigIntegers.
    private static BigInteger Reference(BigInteger state)
    {
        var z = (state + 0x9E3779B97F4A7C15UL) % Two64;
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL) % Two64;
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EBUL) % Two64;
        return z ^ (z >> 31);
    }

    private static BigInteger Word(long v) => v >= 0 ? v : Two64 + v;   // two's complement as 64 bits

    private static int ReferenceCombine(int seed, long step, int replica)
    {
        var h = Reference(Word(seed));
        h = Reference(h ^ Word(step));
        h = Reference(h ^ Word(replica));
        var high = (long)(h >> 32);                                           // 0 … 2³² − 1
        return (int)(high >= 1L << 31 ? high - (1L << 32) : high);
    }

    [Fact]
    public void SplitMix64GivesItsPublishedSequence()
    {
        // splitmix64.c seeded with 0: e220a8397b1dcdaf, 6e789e6aa1b965f4, 06c45d188009454f (the n-th output is f(n·γ)).
        Assert.Equal(0xE220A8397B1DCDAFUL, SeedMix.SplitMix64(0));
        Assert.Equal(0x6E789E6AA1B965F4UL, SeedMix.SplitMix64(SeedMix.GoldenGamma));
        Assert.Equal(0x06C45D188009454FUL, SeedMix.SplitMix64(unchecked(2 * SeedMix.GoldenGamma)));
    }

    [Theory]
    [InlineData(0, 0L, 0, 595752380)]
    [InlineData(42, 0L, 0, 1662041860)]
    [InlineData(42, 7L, 0, 1438550153)]
    [InlineData(42, 7L, 1, 943534214)]
    [InlineData(-1, 123456789012L, 3, -709064719)]
    [InlineData(int.MaxValue, -1L, 0, -22502852)]
    public void CombineKeepsItsPinnedValues(int seed, long step, int replica, int expected)
    {
        // Computed once from the definition (documented on SeedMix) in Python; they must never change.
        Assert.Equal(expected, SeedMix.Combine(seed, step, replica));
        Assert.Equal(expected, ReferenceCombine(seed, step, replica));
    }

    [Fact]
    public void CombineAndMixFollowTheDefinitionEverywhere()
    {
        var rng = new Random(1234);
        for (int i = 0; i < 2000; i++)
        {
            int seed = rng.Next(int.MinValue, int.MaxValue), replica = rng.Next(-3, 64);
            long step = i < 1000 ? i : rng.NextInt64(long.MinValue, long.MaxValue);
            Assert.Equal(ReferenceCombine(seed, step, replica), SeedMix.Combine(seed, step, replica));
            var mix = Reference(Reference(Reference(Word(seed)) ^ Word(step)) ^ Word(replica));
            Assert.Equal((ulong)mix, SeedMix.Mix(seed, step, replica));
            Assert.Equal((ulong)mix, SampleRandom.Mix(seed, step, replica));   // the data loader's streams use the same mix
        }
    }

    [Fact]
    public void NeighbouringStepsAndReplicasGetUnrelatedSeeds()
    {
        var seen = new HashSet<int>();
        for (long step = 0; step < 10_000; step++)
            for (int replica = 0; replica < 2; replica++)
                seen.Add(SeedMix.Combine(7, step, replica));
        Assert.True(seen.Count > 19_980, $"only {seen.Count} distinct seeds of 20,000");
        Assert.NotEqual(SeedMix.Combine(7, 1, 0), SeedMix.Combine(7, 0, 1));   // order matters
    }
}
