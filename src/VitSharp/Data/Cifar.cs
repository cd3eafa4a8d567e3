namespace VitSharp.Data;

/// <summary>
/// CIFAR-10 and CIFAR-100 in their binary versions. A CIFAR-10 record is 1 label byte and 3,072 pixel
/// bytes (the 32×32 red plane, then green, then blue: already C×H×W); CIFAR-100 records carry two label
/// bytes (coarse, fine) before the pixels. The directory may be the extracted folder itself or its parent
/// (cifar-10-batches-bin / cifar-100-binary are looked for inside it).
/// </summary>
public static class Cifar
{
    /// <summary>Pixel bytes per image (3×32×32).</summary>
    public const int ImageBytes = 3 * 32 * 32;

    /// <summary>The CIFAR-10 class names, used when batches.meta.txt is absent.</summary>
    public static IReadOnlyList<string> Cifar10ClassNames { get; } =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    /// <summary>
    /// Loads CIFAR-10: data_batch_1.bin … data_batch_5.bin (training, in that order) or test_batch.bin.
    /// Class names come from batches.meta.txt when present.
    /// </summary>
    /// <exception cref="DataSetException">A file is missing or malformed.</exception>
    public static InMemoryDataset Load10(string directory, bool train = true)
    {
        string[] files = train ? Enumerable.Range(1, 5).Select(i => $"data_batch_{i}.bin").ToArray() : ["test_batch.bin"];
        string dir = Locate(directory, "cifar-10-batches-bin", files, "CIFAR-10");
        var names = ReadNames(Path.Combine(dir, "batches.meta.txt"), 10) ?? Cifar10ClassNames;
        return Read(dir, files, labelBytes: 1, labelIndex: 0, names);
    }

    /// <summary>
    /// Loads CIFAR-100: train.bin or test.bin, labelled with the 100 fine classes or the 20 coarse ones.
    /// Class names come from fine_label_names.txt / coarse_label_names.txt when present, else "0", "1", ….
    /// </summary>
    /// <exception cref="DataSetException">A file is missing or malformed.</exception>
    public static InMemoryDataset Load100(string directory, bool train = true, bool fineLabels = true)
    {
        string[] files = [train ? "train.bin" : "test.bin"];
        string dir = Locate(directory, "cifar-100-binary", files, "CIFAR-100");
        int classes = fineLabels ? 100 : 20;
        var names = ReadNames(Path.Combine(dir, fineLabels ? "fine_label_names.txt" : "coarse_label_names.txt"), classes)
                    ?? Enumerable.Range(0, classes).Select(i => i.ToString()).ToArray();
        return Read(dir, files, labelBytes: 2, labelIndex: fineLabels ? 1 : 0, names);
    }

    private static string Locate(string directory, string subfolder, string[] files, string name)
    {
        ArgumentNullException.ThrowIfNull(directory);
        foreach (var dir in new[] { directory, Path.Combine(directory, subfolder) })
            if (files.All(f => File.Exists(Path.Combine(dir, f)))) return dir;
        var missing = files.Where(f => !File.Exists(Path.Combine(directory, f))).ToArray();
        string what = missing.Length == files.Length ? "" : $"missing {string.Join(", ", missing)}; ";
        throw new DataSetException(
            $"{name} not found in {directory}: {what}expected {string.Join(", ", files)} (the binary version) in it or in {subfolder}/ under it");
    }

    /// <summary>Reads one name per non-empty line, or null when the file is absent or holds the wrong number of names.</summary>
    private static string[]? ReadNames(string path, int count)
    {
        if (!File.Exists(path)) return null;
        var names = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        return names.Length == count ? names : null;
    }

    /// <summary>
    /// Reads the record files. Allocation is bounded by the files' real sizes: every size must be a whole,
    /// non-zero number of records before anything is allocated, then each file is read whole (its size) and
    /// its pixels copied into one array of (total records × 3,072) bytes.
    /// </summary>
    private static InMemoryDataset Read(string dir, string[] files, int labelBytes, int labelIndex, IReadOnlyList<string> names)
    {
        int record = labelBytes + ImageBytes;
        var sizes = new long[files.Length];
        for (int f = 0; f < files.Length; f++)
        {
            string path = Path.Combine(dir, files[f]);
            long size = new FileInfo(path).Length;
            if (size % record != 0)
                throw new DataSetException(
                    $"{path}: {size} bytes is not a whole number of {record}-byte records: partial record of {size % record} bytes at offset {size - size % record}");
            if (size == 0)
                throw new DataSetException($"{path}: empty file at offset 0: expected whole {record}-byte records");
            sizes[f] = size / record;
        }
        long total = sizes.Sum();
        if (total * ImageBytes > Array.MaxLength) throw new DataSetException($"{dir}: {total} images are too many to load at once");
        var pixels = new byte[total * ImageBytes];
        var labels = new int[total];
        int n = 0;
        for (int f = 0; f < files.Length; f++)
        {
            string path = Path.Combine(dir, files[f]);
            byte[] bytes;
            try { bytes = File.ReadAllBytes(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new DataSetException($"{path}: cannot read: {e.Message}", e);
            }
            if (bytes.LongLength != sizes[f] * record)
                throw new DataSetException($"{path}: changed size while being read");
            for (int r = 0; r < sizes[f]; r++, n++)
            {
                int off = r * record;
                int label = bytes[off + labelIndex];
                if (label >= names.Count)
                    throw new DataSetException(
                        $"{path}: record {r} at offset {off}: label {label} (byte offset {off + labelIndex}) is out of range [0, {names.Count})");
                labels[n] = label;
                Buffer.BlockCopy(bytes, off + labelBytes, pixels, n * ImageBytes, ImageBytes);
            }
        }
        return new InMemoryDataset(pixels, labels, 3, 32, 32, names);
    }
}
