namespace VitSharp.Data;

/// <summary>
/// An in-place transform of one image stored as C×H×W floats. Given the same input and the same
/// <see cref="Random"/> state it produces the same output; implementations do not allocate per sample.
/// </summary>
public interface ITransform
{
    /// <summary>Transforms <paramref name="image"/> (C×H×W, exactly C·H·W elements used) in place.</summary>
    /// <param name="image">The pixels, channel planes one after another.</param>
    /// <param name="channels">C.</param>
    /// <param name="height">H.</param>
    /// <param name="width">W.</param>
    /// <param name="random">The source of randomness (ignored by deterministic transforms).</param>
    void Apply(Span<float> image, int channels, int height, int width, Random random);
}

/// <summary>Shared argument checks for transforms.</summary>
internal static class TransformChecks
{
    internal static void Check(Span<float> image, int channels, int height, int width)
    {
        if (channels <= 0 || height <= 0 || width <= 0)
            throw new ArgumentException($"image geometry {channels}×{height}×{width} must be positive");
        if (image.Length < channels * height * width)
            throw new ArgumentException($"image holds {image.Length} floats, {channels}×{height}×{width} needs {channels * height * width}");
    }
}
