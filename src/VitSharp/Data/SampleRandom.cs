namespace VitSharp.Data;

/// <summary>
/// A <see cref="Random"/> that can be reseeded without allocating (SplitMix64 seeding a xoshiro256**
/// generator), so that the data loader can give every sample its own reproducible random stream. The
/// sequence for a seed is fixed by this class, not by the .NET version.
/// </summary>
public sealed class SampleRandom : Random
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Creates a generator seeded with <paramref name="seed"/>.</summary>
    public SampleRandom(ulong seed = 0) => Reset(seed);

    /// <summary>Restarts the sequence from <paramref name="seed"/>.</summary>
    public void Reset(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    /// <summary>Mixes several integers into one well-spread 64-bit seed (order matters): <see cref="NN.SeedMix.Mix"/>.</summary>
    public static ulong Mix(long a, long b = 0, long c = 0) => NN.SeedMix.Mix(a, b, c);

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next raw 64-bit value.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, n) without modulo bias (Lemire's method).</summary>
    private ulong Below(ulong n)
    {
        if (n == 0) return 0;
        UInt128 m = (UInt128)NextUInt64() * n;
        if ((ulong)m < n)
        {
            ulong threshold = unchecked(0 - n) % n;
            while ((ulong)m < threshold) m = (UInt128)NextUInt64() * n;
        }
        return (ulong)(m >> 64);
    }

    /// <inheritdoc/>
    protected override double Sample() => NextDouble();

    /// <inheritdoc/>
    public override double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <inheritdoc/>
    public override float NextSingle() => (NextUInt64() >> 40) * (1.0f / (1U << 24));

    /// <inheritdoc/>
    public override int Next() => (int)Below(int.MaxValue);

    /// <inheritdoc/>
    public override int Next(int maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxValue);
        return (int)Below((ulong)maxValue);
    }

    /// <inheritdoc/>
    public override int Next(int minValue, int maxValue)
    {
        if (minValue > maxValue) throw new ArgumentOutOfRangeException(nameof(minValue), "minValue is greater than maxValue");
        return (int)(minValue + (long)Below((ulong)((long)maxValue - minValue)));
    }

    /// <inheritdoc/>
    public override long NextInt64() => (long)Below(long.MaxValue);

    /// <inheritdoc/>
    public override long NextInt64(long maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxValue);
        return (long)Below((ulong)maxValue);
    }

    /// <inheritdoc/>
    public override long NextInt64(long minValue, long maxValue)
    {
        if (minValue > maxValue) throw new ArgumentOutOfRangeException(nameof(minValue), "minValue is greater than maxValue");
        return minValue + (long)Below((ulong)(maxValue - minValue));
    }

    /// <inheritdoc/>
    public override void NextBytes(byte[] buffer) => NextBytes(buffer.AsSpan());

    /// <inheritdoc/>
    public override void NextBytes(Span<byte> buffer)
    {
        for (int i = 0; i < buffer.Length; i++) buffer[i] = (byte)(NextUInt64() >> 56);
    }
}
