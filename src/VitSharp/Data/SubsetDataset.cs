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

    /// <summary>
    /// Per-channel mean and (population) standard deviation of the pixel values in [0, 1] over the whole data
    /// set — the numbers <see cref="Normalize"/> expects (Fashion-MNIST train: 0.2860, 0.3530).
    /// </summary>
    public static (float[] Mean, float[] Std) ChannelMeanStd(this IImageDataset dataset)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        int c = dataset.Channels, plane = dataset.Height * dataset.Width;
        var sum = new double[c];
        var sq = new double[c];
        var buf = new float[c * plane];
        for (int i = 0; i < dataset.Count; i++)
        {
            dataset.ReadPixels(i, buf);
            for (int k = 0; k < c; k++)
            {
                double s = 0, s2 = 0;
                foreach (float v in buf.AsSpan(k * plane, plane)) { s += v; s2 += (double)v * v; }
                sum[k] += s;
                sq[k] += s2;
            }
        }
        double n = (double)dataset.Count * plane;
        var mean = new float[c];
        var std = new float[c];
        for (int k = 0; k < c; k++)
        {
            double m = n > 0 ? sum[k] / n : 0;
            mean[k] = (float)m;
            std[k] = (float)Math.Sqrt(n > 0 ? Math.Max(sq[k] / n - m * m, 0) : 0);
        }
        return (mean, std);
    }
}
