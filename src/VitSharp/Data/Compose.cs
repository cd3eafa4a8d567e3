namespace VitSharp.Data;

/// <summary>Applies several transforms in order.</summary>
public sealed class Compose : ITransform
{
    private readonly ITransform[] _transforms;

    /// <summary>Chains <paramref name="transforms"/>, first to last.</summary>
    public Compose(params ITransform[] transforms)
    {
        ArgumentNullException.ThrowIfNull(transforms);
        if (transforms.Any(t => t is null)) throw new ArgumentNullException(nameof(transforms), "a transform is null");
        _transforms = (ITransform[])transforms.Clone();
    }

    /// <summary>The chained transforms.</summary>
    public IReadOnlyList<ITransform> Transforms => _transforms;

    /// <inheritdoc/>
    public void Apply(Span<float> image, int channels, int height, int width, Random random)
    {
        foreach (var t in _transforms) t.Apply(image, channels, height, width, random);
    }
}
