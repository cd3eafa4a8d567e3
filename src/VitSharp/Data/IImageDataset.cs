namespace VitSharp.Data;

/// <summary>
/// A labelled image classification data set with a fixed image geometry. Reads are thread-safe: several
/// threads may call <see cref="Label"/> and <see cref="ReadPixels"/> at once.
/// </summary>
public interface IImageDataset
{
    /// <summary>Number of samples.</summary>
    int Count { get; }

    /// <summary>Channels per image (1 grey, 3 RGB).</summary>
    int Channels { get; }

    /// <summary>Image height in pixels.</summary>
    int Height { get; }

    /// <summary>Image width in pixels.</summary>
    int Width { get; }

    /// <summary>Number of classes; every label is in [0, NumClasses).</summary>
    int NumClasses { get; }

    /// <summary>One name per class, indexed by label.</summary>
    IReadOnlyList<string> ClassNames { get; }

    /// <summary>The label of sample <paramref name="index"/>.</summary>
    int Label(int index);

    /// <summary>
    /// Writes sample <paramref name="index"/> as C×H×W floats in [0, 1] (byte value / 255) into
    /// <paramref name="destination"/>, which must hold at least Channels·Height·Width elements.
    /// </summary>
    void ReadPixels(int index, Span<float> destination);
}
