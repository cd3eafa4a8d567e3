namespace VitSharp.Data;

/// <summary>
/// torchvision's <c>ImageFolder</c> layout: one sub-folder of <c>root</c> per class, class index = position
/// of the folder name in ordinal (code-point) order, images *.png, *.jpg, *.jpeg (any case) directly inside.
/// All images are decoded up front, in parallel, converted to <see cref="Channels"/> channels and resized to
/// size×size with <see cref="ImageOps.Resize"/> (bilinear, no antialiasing); the result is held in memory
/// as bytes (size·size·channels per image), so reads are cheap and thread-safe.
/// </summary>
public sealed class ImageFolderDataset : IImageDataset
{
    /// <summary>File extensions taken as images (compared case-insensitively).</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".png", ".jpg", ".jpeg"];

    private readonly InMemoryDataset _data;
    private readonly string[] _files;

    /// <summary>Scans and decodes the folder tree.</summary>
    /// <param name="root">The folder holding one sub-folder per class.</param>
    /// <param name="size">Output height and width in pixels.</param>
    /// <param name="channels">1 (grey) or 3 (RGB).</param>
    /// <exception cref="DataSetException">The root is missing or has no class folder, a class folder holds no image, or an image cannot be decoded (the message names the file).</exception>
    public ImageFolderDataset(string root, int size, int channels = 3) : this(root, size, channels, null) { }

    /// <summary>
    /// Scans and decodes the folder tree, preparing each image with <paramref name="preprocessing"/>'s resize and centre
    /// crop (<see cref="ImagePreprocessing.ResizeAndCrop"/>, e.g. an imported model's resize 256 + crop 224) instead of
    /// a plain resize; its output must be size×size. Normalisation stays the caller's (the evaluator's).
    /// </summary>
    /// <exception cref="DataSetException">As the other constructor; also when the preprocessing does not give size×size images.</exception>
    public ImageFolderDataset(string root, int size, int channels, ImagePreprocessing? preprocessing)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (channels is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "channels must be 1 or 3");
        if (!Directory.Exists(root)) throw new DataSetException($"{root}: image folder not found");
        Root = root;

        string[] classDirs = Directory.GetDirectories(root).OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal).ToArray();
        if (classDirs.Length == 0)
            throw new DataSetException($"{root}: no class folders; expected one sub-folder per class holding *.png/*.jpg/*.jpeg images");
        var files = new List<string>();
        var labels = new List<int>();
        for (int c = 0; c < classDirs.Length; c++)
        {
            var images = Directory.GetFiles(classDirs[c])
                .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal).ToArray();
            if (images.Length == 0)
                throw new DataSetException($"{classDirs[c]}: class folder holds no *.png/*.jpg/*.jpeg image");
            files.AddRange(images);
            labels.AddRange(Enumerable.Repeat(c, images.Length));
        }

        int sample = size * size * channels;
        var pixels = new byte[(long)files.Count * sample];
        var errors = new Exception?[files.Count];
        Parallel.For(0, files.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
        {
            try
            {
                if (preprocessing is null) ImageOps.LoadChw(files[i], size, channels).CopyTo(pixels, (long)i * sample);
                else
                {
                    var img = preprocessing.ResizeAndCrop(ImageDecoder.Decode(files[i], channels));
                    if (img.Width != size || img.Height != size || img.Channels != channels)
                        throw new DataSetException($"{files[i]}: the preprocessing gives {img.Width}×{img.Height}×{img.Channels} images, the model takes {size}×{size}×{channels}");
                    ImageOps.HwcToChw(img.Pixels, size, size, channels, pixels.AsSpan((int)((long)i * sample), sample));
                }
            }
            catch (Exception e)
            {
                errors[i] = e;
            }
        });
        for (int i = 0; i < errors.Length; i++)
            if (errors[i] is { } e)
                throw e as DataSetException ?? new DataSetException($"{files[i]}: cannot load image: {e.Message}", e);

        _files = files.ToArray();
        _data = new InMemoryDataset(pixels, labels.ToArray(), channels, size, size, classDirs.Select(d => Path.GetFileName(d)).ToArray());
    }

    /// <summary>The root folder.</summary>
    public string Root { get; }

    /// <summary>The image file of each sample.</summary>
    public IReadOnlyList<string> Files => _files;

    /// <inheritdoc/>
    public int Count => _data.Count;

    /// <inheritdoc/>
    public int Channels => _data.Channels;

    /// <inheritdoc/>
    public int Height => _data.Height;

    /// <inheritdoc/>
    public int Width => _data.Width;

    /// <inheritdoc/>
    public int NumClasses => _data.NumClasses;

    /// <summary>The class folder names, in class-index order.</summary>
    public IReadOnlyList<string> ClassNames => _data.ClassNames;

    /// <inheritdoc/>
    public int Label(int index) => _data.Label(index);

    /// <inheritdoc/>
    public void ReadPixels(int index, Span<float> destination) => _data.ReadPixels(index, destination);

    /// <summary>The stored C×H×W bytes of a sample (after conversion and resizing).</summary>
    public ReadOnlySpan<byte> RawPixels(int index) => _data.RawPixels(index);
}
