namespace VitSharp.NN;

/// <summary>
/// Stable seed mixing: derives the seed of one training step (of one data-parallel replica) from the run's seed, giving
/// the same number in every process, on every machine and every .NET version — unlike <see cref="HashCode.Combine{T1, T2}"/>,
/// which .NET randomises per process, so that seeds mixed with it made dropout masks, and so the training curve, differ
/// from one run to the next and broke an exact <c>--resume</c> in a new process.
/// </summary>
/// <remarks>
/// Built on SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; Vigna's
/// reference <c>splitmix64.c</c>), whose output function is a bijection of 64-bit words that mixes every input bit into
/// every output bit. <see cref="Mix"/> is exactly (all arithmetic modulo 2⁶⁴, the longs reinterpreted as ulongs):
/// <code>
/// h = SplitMix64((ulong)a)
/// h = SplitMix64(h ^ (ulong)b)
/// return SplitMix64(h ^ (ulong)c)
/// </code>
/// and <see cref="Combine"/>(seed, step, replica) is the high half of <c>Mix(seed, step, replica)</c> as a signed int. The
/// data loader seeds every sample's augmentation stream with the same <see cref="Mix"/> (<c>Data.SampleRandom.Mix</c>).
/// This is a fixed, documented function: changing it changes every seeded training curve, so the tests pin its values.
/// </remarks>
public static class SeedMix
{
    /// <summary>SplitMix64's increment, 2⁶⁴/φ rounded to odd (0x9E3779B97F4A7C15).</summary>
    public const ulong GoldenGamma = 0x9E3779B97F4A7C15;

    /// <summary>
    /// The first output of a SplitMix64 generator whose state is <paramref name="state"/>: z = state + γ, then
    /// z = (z ^ z ≫ 30)·0xBF58476D1CE4E5B9, z = (z ^ z ≫ 27)·0x94D049BB133111EB, z ^ z ≫ 31 (all modulo 2⁶⁴).
    /// The generator's n-th output (from 0) is <c>SplitMix64(state + n·γ)</c>.
    /// </summary>
    public static ulong SplitMix64(ulong state)
    {
        unchecked
        {
            ulong z = state + GoldenGamma;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            return z ^ (z >> 31);
        }
    }

    /// <summary>Mixes three integers (order matters) into one well-spread 64-bit value; see the remarks of <see cref="SeedMix"/>.</summary>
    public static ulong Mix(long a, long b = 0, long c = 0)
    {
        unchecked
        {
            ulong h = SplitMix64((ulong)a);
            h = SplitMix64(h ^ (ulong)b);
            return SplitMix64(h ^ (ulong)c);
        }
    }

    /// <summary>
    /// The seed of training step <paramref name="step"/> of data-parallel replica <paramref name="replica"/> in a run seeded
    /// with <paramref name="seed"/> (what <c>vit train</c> seeds the dropout generator with before each step): the high 32
    /// bits of <see cref="Mix"/>(seed, step, replica) as a signed int, stable across processes and platforms.
    /// </summary>
    public static int Combine(int seed, long step, int replica = 0) => unchecked((int)(uint)(Mix(seed, step, replica) >> 32));
}
