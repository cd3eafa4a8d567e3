namespace VitSharp.Data;

/// <summary>
/// Fashion-MNIST (Zalando): 60,000 training and 10,000 test grey 28×28 images of 10 clothing classes, in
/// the IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
/// t10k-labels-idx1-ubyte.gz (gzipped or not). Debian's <c>dataset-fashion-mnist</c> installs them in
/// <see cref="DefaultDirectory"/>.
/// </summary>
public static class FashionMnist
{
    /// <summary>Where Debian's dataset-fashion-mnist package puts the files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>The ten class names, indexed by label.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>Loads the training split (60,000 images) or the test split (10,000).</summary>
    /// <param name="directory">The folder holding the four files; null for <see cref="DefaultDirectory"/>.</param>
    /// <param name="train">True for the training split, false for the test split.</param>
    /// <exception cref="DataSetException">A file is missing (the message says how to install the data) or malformed.</exception>
    public static InMemoryDataset Load(string? directory = null, bool train = true) =>
        MnistFiles.Load(directory ?? DefaultDirectory, train, ClassNames, "Fashion-MNIST",
            "install it with `apt-get install dataset-fashion-mnist` (or run ./scripts/setup.sh)");
}

/// <summary>
/// The original MNIST handwritten digits in the same four-file IDX layout as <see cref="FashionMnist"/>
/// (train-images-idx3-ubyte[.gz], …). Debian packages no copy, so the directory must be given.
/// </summary>
public static class Mnist
{
    /// <summary>The ten class names "0" … "9".</summary>
    public static IReadOnlyList<string> ClassNames { get; } = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

    /// <summary>Loads the training split (60,000 images) or the test split (10,000).</summary>
    /// <param name="directory">The folder holding the four IDX files.</param>
    /// <param name="train">True for the training split, false for the test split.</param>
    /// <exception cref="DataSetException">A file is missing or malformed.</exception>
    public static InMemoryDataset Load(string directory, bool train = true) =>
        MnistFiles.Load(directory, train, ClassNames, "MNIST", "download the four IDX files of MNIST into it");
}

/// <summary>Finds and loads the four-file MNIST-style layout.</summary>
internal static class MnistFiles
{
    internal static readonly string[] AllFiles =
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

    internal static InMemoryDataset Load(string directory, bool train, IReadOnlyList<string> classNames, string name, string installHint)
    {
        string prefix = train ? "train" : "t10k";
        string? images = Find(directory, prefix + "-images-idx3-ubyte");
        string? labels = Find(directory, prefix + "-labels-idx1-ubyte");
        if (images is null || labels is null)
        {
            string missing = images is null ? prefix + "-images-idx3-ubyte.gz" : prefix + "-labels-idx1-ubyte.gz";
            string where = Directory.Exists(directory) ? $"{missing} (or without .gz) is missing in {directory}" : $"{directory} does not exist";
            throw new DataSetException(
                $"{name} not found: {where}; {installHint}, or point --data DIR at a folder holding {string.Join(", ", AllFiles.Select(f => f + ".gz"))}");
        }
        return Idx.Load(images, labels, classNames.Count, classNames);
    }

    private static string? Find(string directory, string stem)
    {
        foreach (var candidate in new[] { stem + ".gz", stem, stem.Replace("-idx", ".idx") + ".gz", stem.Replace("-idx", ".idx") })
        {
            string p = Path.Combine(directory, candidate);
            if (File.Exists(p)) return p;
        }
        return null;
    }
}
