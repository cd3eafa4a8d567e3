namespace VitSharp.Data;

/// <summary>
/// torchvision's <c>Normalize(mean, std)</c>: x ← (x − mean[c]) / std[c] per channel. A single value is
/// used for every channel.
/// </summary>
public sealed class Normalize : ITransform
{
    private readonly float[] _mean;
    private readonly float[] _std;

    /// <summary>Creates the transform.</summary>
    /// <param name="mean">Per-channel means (or one for all channels).</param>
    /// <param name="std">Per-channel standard deviations, all positive (or one for all channels).</param>
    public Normalize(float[] mean, float[] std)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        if (mean.Length == 0 || mean.Length != std.Length)
            throw new ArgumentException($"mean ({mean.Length} values) and std ({std.Length}) must have the same, non-zero length");
        if (std.Any(s => !(s > 0) || float.IsInfinity(s))) throw new ArgumentException("every std must be positive and finite", nameof(std));
        _mean = (float[])mean.Clone();
        _std = (float[])std.Clone();
    }

    /// <summary>Per-channel means.</summary>
    public IReadOnlyList<float> Mean => _mean;

    /// <summary>Per-channel standard deviations.</summary>
    public IReadOnlyList<float> Std => _std;

    /// <inheritdoc/>
    public void Apply(Span<float> image, int channels, int height, int width, Random random)
    {
        TransformChecks.Check(image, channels, height, width);
        if (_mean.Length != 1 && _mean.Length != channels)
            throw new ArgumentException($"Normalize has {_mean.Length} means but the image has {channels} channels");
        int plane = height * width;
        for (int c = 0; c < channels; c++)
        {
            float m = _mean[_mean.Length == 1 ? 0 : c], s = _std[_std.Length == 1 ? 0 : c];
            Span<float> p = image.Slice(c * plane, plane);
            // Subtract then divide, as torch's sub_(mean).div_(std), so results match bit for bit.
            for (int i = 0; i < p.Length; i++) p[i] = (p[i] - m) / s;
        }
    }
}
