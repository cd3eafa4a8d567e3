namespace VitSharp.Data;

/// <summary>
/// An <see cref="IImageDataset"/> held in memory as bytes, N×C×H×W, plus one label per sample.
/// Pixels become floats on read: byte / 255 (as torchvision's ToTensor).
/// </summary>
public sealed class InMemoryDataset : IImageDataset
{
    private static readonly float[] ByteToUnit = BuildTable();
    private readonly byte[] _pixels;
    private readonly int[] _labels;
    private readonly string[] _classNames;

    /// <summary>
    /// Wraps <paramref name="pixels"/> (N×C×H×W bytes, not copied) and <paramref name="labels"/> (N labels, not
    /// copied). <paramref name="classNames"/> gives the number of classes; every label must be below it.
    /// </summary>
    /// <exception cref="ArgumentException">Sizes disagree or a label is out of range.</exception>
    public InMemoryDataset(byte[] pixels, int[] labels, int channels, int height, int width, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(classNames);
        if (channels <= 0 || height <= 0 || width <= 0)
            throw new ArgumentException($"image geometry {channels}×{height}×{width} must be positive");
        if (classNames.Count == 0) throw new ArgumentException("a data set needs at least one class");
        long sampleSize = (long)channels * height * width;
        if (pixels.LongLength != sampleSize * labels.Length)
            throw new ArgumentException($"{pixels.LongLength} pixel bytes do not hold {labels.Length} images of {channels}×{height}×{width}");
        for (int i = 0; i < labels.Length; i++)
            if ((uint)labels[i] >= (uint)classNames.Count)
                throw new ArgumentException($"label {labels[i]} of sample {i} is outside [0, {classNames.Count})");
        _pixels = pixels;
        _labels = labels;
        _classNames = classNames.ToArray();
        Channels = channels;
        Height = height;
        Width = width;
    }

    /// <inheritdoc/>
    public int Count => _labels.Length;

    /// <inheritdoc/>
    public int Channels { get; }

    /// <inheritdoc/>
    public int Height { get; }

    /// <inheritdoc/>
    public int Width { get; }

    /// <inheritdoc/>
    public int NumClasses => _classNames.Length;

    /// <inheritdoc/>
    public IReadOnlyList<string> ClassNames => _classNames;

    /// <summary>Bytes per sample (C·H·W).</summary>
    public int SampleSize => Channels * Height * Width;

    /// <summary>The raw bytes of sample <paramref name="index"/> (C×H×W, 0..255).</summary>
    public ReadOnlySpan<byte> RawPixels(int index)
    {
        CheckIndex(index);
        return _pixels.AsSpan((int)((long)index * SampleSize), SampleSize);
    }

    /// <inheritdoc/>
    public int Label(int index)
    {
        CheckIndex(index);
        return _labels[index];
    }

    /// <inheritdoc/>
    public void ReadPixels(int index, Span<float> destination)
    {
        CheckIndex(index);
        int n = SampleSize;
        if (destination.Length < n)
            throw new ArgumentException($"destination holds {destination.Length} floats, a sample needs {n}");
        ReadOnlySpan<byte> src = _pixels.AsSpan((int)((long)index * n), n);
        float[] table = ByteToUnit;
        for (int i = 0; i < src.Length; i++) destination[i] = table[src[i]];
    }

    private void CheckIndex(int index)
    {
        if ((uint)index >= (uint)_labels.Length)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"sample index outside [0, {_labels.Length})");
    }

    private static float[] BuildTable()
    {
        var t = new float[256];
        for (int i = 0; i < 256; i++) t[i] = i / 255f;
        return t;
    }
}
