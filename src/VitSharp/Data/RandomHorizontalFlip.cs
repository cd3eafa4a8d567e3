namespace VitSharp.Data;

/// <summary>
/// torchvision's <c>RandomHorizontalFlip(p)</c>: mirrors the image left to right with probability
/// <see cref="P"/>. Draws one <c>NextDouble()</c> per image and flips when it is below p.
/// </summary>
public sealed class RandomHorizontalFlip : ITransform
{
    /// <summary>Creates the transform.</summary>
    /// <param name="p">Probability of flipping, in [0, 1].</param>
    public RandomHorizontalFlip(double p = 0.5)
    {
        if (!(p >= 0 && p <= 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "probability must be in [0, 1]");
        P = p;
    }

    /// <summary>Probability of flipping.</summary>
    public double P { get; }

    /// <inheritdoc/>
    public void Apply(Span<float> image, int channels, int height, int width, Random random)
    {
        TransformChecks.Check(image, channels, height, width);
        if (random.NextDouble() < P) Flip(image, channels, height, width);
    }

    /// <summary>Mirrors every row of every channel, in place.</summary>
    public static void Flip(Span<float> image, int channels, int height, int width)
    {
        TransformChecks.Check(image, channels, height, width);
        int rows = channels * height;
        for (int r = 0; r < rows; r++) image.Slice(r * width, width).Reverse();
    }
}
