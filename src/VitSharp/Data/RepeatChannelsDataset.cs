namespace VitSharp.Data;

/// <summary>
/// A grey (1-channel) data set seen as a C-channel one: every channel plane is a copy of the grey plane (what
/// decoding a grey image as RGB gives). For models that always take 3 channels, such as CaiT, on Fashion-MNIST or MNIST.
/// </summary>
public sealed class RepeatChannelsDataset : IImageDataset
{
    private readonly IImageDataset _source;

    /// <summary>Wraps <paramref name="source"/> (1 channel) as <paramref name="channels"/> channels.</summary>
    /// <exception cref="ArgumentException">The source is not 1-channel or <paramref name="channels"/> is below 1.</exception>
    public RepeatChannelsDataset(IImageDataset source, int channels)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Channels != 1) throw new ArgumentException($"only grey (1-channel) images can be repeated into channels; this data set has {source.Channels}");
        if (channels < 1) throw new ArgumentException($"channels must be ≥ 1, got {channels}");
        _source = source;
        Channels = channels;
    }

    /// <summary>The grey data set this view reads from.</summary>
    public IImageDataset Source => _source;

    /// <inheritdoc/>
    public int Count => _source.Count;

    /// <inheritdoc/>
    public int Channels { get; }

    /// <inheritdoc/>
    public int Height => _source.Height;

    /// <inheritdoc/>
    public int Width => _source.Width;

    /// <inheritdoc/>
    public int NumClasses => _source.NumClasses;

    /// <inheritdoc/>
    public IReadOnlyList<string> ClassNames => _source.ClassNames;

    /// <inheritdoc/>
    public int Label(int index) => _source.Label(index);

    /// <inheritdoc/>
    public void ReadPixels(int index, Span<float> destination)
    {
        int plane = Height * Width;
        if (destination.Length < Channels * plane)
            throw new ArgumentException($"destination holds {destination.Length} floats, {Channels}×{Height}×{Width} needs {Channels * plane}");
        _source.ReadPixels(index, destination[..plane]);
        for (int c = 1; c < Channels; c++) destination[..plane].CopyTo(destination.Slice(c * plane, plane));
    }
}
