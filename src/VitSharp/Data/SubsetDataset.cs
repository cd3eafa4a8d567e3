namespace VitSharp.Data;

/// <summary>A view of some samples of another data set, in a given order (indices may repeat).</summary>
public sealed class SubsetDataset : IImageDataset
{
    private readonly IImageDataset _source;
    private readonly int[] _indices;

    /// <summary>A view of <paramref name="source"/> made of the samples at <paramref name="indices"/> (copied).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside the source.</exception>
    public SubsetDataset(IImageDataset source, int[] indices)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(indices);
        for (int i = 0; i < indices.Length; i++)
            if ((uint)indices[i] >= (uint)source.Count)
                throw new ArgumentOutOfRangeException(nameof(indices), $"index {indices[i]} (position {i}) is outside the source's [0, {source.Count})");
        _source = source;
        _indices = (int[])indices.Clone();
    }

    /// <summary>The data set this view reads from.</summary>
    public IImageDataset Source => _source;

    /// <summary>The source index of each sample of the view.</summary>
    public IReadOnlyList<int> Indices => _indices;

    /// <inheritdoc/>
    public int Count => _indices.Length;

    /// <inheritdoc/>
    public int Channels => _source.Channels;

    /// <inheritdoc/>
    public int Height => _source.Height;

    /// <inheritdoc/>
    public int Width => _source.Width;

    /// <inheritdoc/>
    public int NumClasses => _source.NumClasses;

    /// <inheritdoc/>
    public IReadOnlyList<string> ClassNames => _source.ClassNames;

    /// <inheritdoc/>
    public int Label(int index) => _source.Label(Map(index));

    /// <inheritdoc/>
    public void ReadPixels(int index, Span<float> destination) => _source.ReadPixels(Map(index), destination);

    private int Map(int index) => (uint)index < (uint)_indices.Length ? _indices[index]
        : throw new ArgumentOutOfRangeException(nameof(index), index, $"sample index outside [0, {_indices.Length})");
}

/// <summary>Helpers on <see cref="IImageDataset"/>.</summary>
public static class Dataset
{
    /// <summary>The samples of <paramref name="dataset"/> at <paramref name="indices"/>, in that order.</summary>
    public static IImageDataset Subset(this IImageDataset dataset, int[] indices) => new SubsetDataset(dataset, indices);

    /// <summary>The first <paramref name="count"/> samples (all of them when the data set is smaller).</summary>
    public static IImageDataset Take(this IImageDataset dataset, int count)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int n = Math.Min(count, dataset.Count);
        var idx = new int[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        return new SubsetDataset(dataset, idx);
    }

    /// <summary>Number of samples per class (index = label).</summary>
    public static int[] ClassCounts(this IImageDataset dataset)
    {
        var counts = new int[dataset.NumClasses];
        for (int i = 0; i < dataset.Count; i++) counts[dataset.Label(i)]++;
        return counts;
    }
}
