using System.Text.Json.Nodes;
using VitSharp.Data;

namespace VitSharp.Training;

/// <summary>Where the pixels come from and how they are normalised: stored in checkpoints so that evaluation and prediction preprocess exactly as training did.</summary>
public sealed record DataInfo(string Name, IReadOnlyList<string> ClassNames, int Channels, int Height, int Width, float[] Mean, float[] Std)
{
    /// <summary>
    /// How an image file becomes the model's input, when it is more than a resize to the model's size and the
    /// normalisation (an imported model's: resize rule, interpolation, crop, mean/std); null for models trained here.
    /// </summary>
    public ImagePreprocessing? Preprocessing { get; init; }

    /// <summary>The normalisation transform.</summary>
    public Normalize Normalize() => new(Mean, Std);

    /// <summary>
    /// The same grey data seen with <paramref name="channels"/> channels (each a copy of the grey plane, see
    /// <see cref="RepeatChannelsDataset"/>): the channel count and the per-channel mean and std repeated.
    /// </summary>
    public DataInfo WithRepeatedChannels(int channels) =>
        Channels == 1 ? this with { Channels = channels, Mean = Repeat(Mean, channels), Std = Repeat(Std, channels) }
        : throw new ArgumentException($"{Name} has {Channels}-channel images; only grey images can be repeated into {channels} channels");

    private static float[] Repeat(float[] values, int channels) => values.Length == 1 ? Enumerable.Repeat(values[0], channels).ToArray() : values;

    /// <summary>As JSON for checkpoints.</summary>
    public JsonObject ToJson()
    {
        var j = Fields();
        if (Preprocessing is not null) j["preprocessing"] = Preprocessing.ToJson();
        return j;
    }

    private JsonObject Fields() => new()
    {
        ["name"] = Name, ["classes"] = new JsonArray(ClassNames.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()),
        ["channels"] = Channels, ["height"] = Height, ["width"] = Width,
        ["mean"] = new JsonArray(Mean.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
        ["std"] = new JsonArray(Std.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
    };

    /// <summary>The smallest std a checkpoint may record: dividing by less turns pixels into ±∞ or NaN.</summary>
    public const float MinStd = 1e-6f;

    /// <summary>
    /// From checkpoint JSON (<c>vitsharp.data</c>). Every field is type-checked: a missing, null or mistyped field, a
    /// channel count that does not match mean and std, a std below <see cref="MinStd"/> or a non-finite mean or std is a
    /// <see cref="CheckpointException"/> naming the field (prefixed with <paramref name="source"/> when given).
    /// </summary>
    public static DataInfo FromJson(JsonObject j, string? source = null)
    {
        string where = source is null ? "vitsharp.data" : $"{source}: vitsharp.data";
        CheckpointException Bad(string field, string expected, JsonNode? got) =>
            new($"{where}: '{field}' must be {expected}, got {(got is null ? "null or nothing" : Clip(got.ToJsonString()))}");
        JsonNode Need(string field, string expected) => j[field] ?? throw Bad(field, expected, null);
        string Str(string field)
        {
            var n = Need(field, "a string");
            return n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad(field, "a string", n);
        }
        int Int(string field, int min, int max)
        {
            string expected = $"an integer in [{min}, {max}]";
            var n = Need(field, expected);
            return n is JsonValue v && v.TryGetValue<int>(out int i) && i >= min && i <= max ? i : throw Bad(field, expected, n);
        }
        JsonArray Arr(string field, string expected) => Need(field, expected) as JsonArray ?? throw Bad(field, expected, j[field]);
        float[] Floats(string field, float min)
        {
            string expected = min > float.MinValue ? $"a list of finite numbers ≥ {min.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "a list of finite numbers";
            var a = Arr(field, expected);
            var r = new float[a.Count];
            for (int i = 0; i < a.Count; i++)
            {
                if (a[i] is not JsonValue v || v.GetValueKind() != System.Text.Json.JsonValueKind.Number
                    || !double.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double d)
                    || !double.IsFinite(d) || !float.IsFinite((float)d) || (float)d < min)
                    throw Bad(field, expected, a);
                r[i] = (float)d;
            }
            return r;
        }
        string name = Str("name");
        var classArr = Arr("classes", "a list of class-name strings");
        var classes = new string[classArr.Count];
        for (int i = 0; i < classes.Length; i++)
            classes[i] = classArr[i] is JsonValue cv && cv.TryGetValue<string>(out var c) ? c : throw Bad("classes", "a list of class-name strings", classArr);
        int channels = Int("channels", 1, 4096), height = Int("height", 1, 1 << 16), width = Int("width", 1, 1 << 16);
        float[] mean = Floats("mean", float.MinValue), std = Floats("std", MinStd);
        if (mean.Length == 0 || std.Length == 0 || mean.Length != std.Length || (mean.Length != 1 && mean.Length != channels))
            throw new CheckpointException($"{where}: 'mean' ({mean.Length} values) and 'std' ({std.Length}) must have the same length, 1 or 'channels' ({channels})");
        ImagePreprocessing? prep = null;
        if (j["preprocessing"] is { } p)
        {
            if (p is not JsonObject po) throw Bad("preprocessing", "an object", p);
            try { prep = ImagePreprocessing.FromJson(po); }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or NullReferenceException
                or System.Text.Json.JsonException or KeyNotFoundException or DataSetException)
            { throw new CheckpointException($"{where}: 'preprocessing' is malformed ({e.Message.Split('\n')[0]})", e); }
        }
        return new DataInfo(name, classes, channels, height, width, mean, std) { Preprocessing = prep };
    }

    private static string Clip(string s) => s.Length <= 80 ? s : s[..77] + "...";
}

/// <summary>The data sets <c>vit train</c> knows: fashion-mnist (default), mnist, cifar10, cifar100, folder.</summary>
public static class DataSets
{
    /// <summary>Names accepted by <see cref="Load"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["fashion-mnist", "mnist", "cifar10", "cifar100", "folder"];

    /// <summary>
    /// Loads the train and test splits. <paramref name="directory"/> overrides the default location (required for
    /// mnist, cifar and folder). A folder data set uses DIR/train and DIR/test (or DIR/val) when present, else a
    /// seeded 10% hold-out of DIR; its images are resized to <paramref name="imageSize"/> with <paramref name="channels"/> channels.
    /// </summary>
    public static (IImageDataset Train, IImageDataset Test, DataInfo Info) Load(string name, string? directory, int seed = 0,
        int imageSize = 32, int channels = 3)
    {
        switch (name.ToLowerInvariant())
        {
            case "fashion-mnist" or "fmnist":
            {
                var train = FashionMnist.Load(directory, train: true);
                var test = FashionMnist.Load(directory, train: false);
                return (train, test, new DataInfo("fashion-mnist", train.ClassNames, 1, 28, 28, [0.2860f], [0.3530f]));
            }
            case "mnist":
            {
                string dir = directory ?? throw new DataSetException("mnist: give the folder with the four IDX files with --data DIR");
                var train = Mnist.Load(dir, train: true);
                var test = Mnist.Load(dir, train: false);
                return (train, test, new DataInfo("mnist", train.ClassNames, 1, 28, 28, [0.1307f], [0.3081f]));
            }
            case "cifar10" or "cifar-10":
            {
                string dir = directory ?? throw new DataSetException("cifar10: give the folder with data_batch_1.bin … test_batch.bin with --data DIR");
                var train = Cifar.Load10(dir, train: true);
                return (train, Cifar.Load10(dir, train: false), new DataInfo("cifar10", train.ClassNames, 3, 32, 32, [0.4914f, 0.4822f, 0.4465f], [0.2470f, 0.2435f, 0.2616f]));
            }
            case "cifar100" or "cifar-100":
            {
                string dir = directory ?? throw new DataSetException("cifar100: give the folder with train.bin and test.bin with --data DIR");
                var train = Cifar.Load100(dir, train: true);
                return (train, Cifar.Load100(dir, train: false), new DataInfo("cifar100", train.ClassNames, 3, 32, 32, [0.5071f, 0.4865f, 0.4409f], [0.2673f, 0.2564f, 0.2762f]));
            }
            case "folder":
            {
                string dir = directory ?? throw new DataSetException("folder: give the image folder (one sub-folder per class) with --data DIR");
                IImageDataset train, test;
                string trainDir = Path.Combine(dir, "train");
                string? testDir = new[] { "test", "val" }.Select(s => Path.Combine(dir, s)).FirstOrDefault(Directory.Exists);
                if (Directory.Exists(trainDir) && testDir is not null)
                {
                    train = new ImageFolderDataset(trainDir, imageSize, channels);
                    test = new ImageFolderDataset(testDir, imageSize, channels);
                }
                else
                {
                    var all = new ImageFolderDataset(dir, imageSize, channels);
                    var order = Enumerable.Range(0, all.Count).ToArray();
                    new Random(seed).Shuffle(order);
                    int nTest = Math.Max(1, all.Count / 10);
                    test = new SubsetDataset(all, order[..nTest].Order().ToArray());
                    train = new SubsetDataset(all, order[nTest..].Order().ToArray());
                }
                var mean = Enumerable.Repeat(0.5f, channels).ToArray();
                var std = Enumerable.Repeat(0.5f, channels).ToArray();
                return (train, test, new DataInfo("folder", train.ClassNames, channels, imageSize, imageSize, mean, std));
            }
            default:
                throw new DataSetException($"unknown data set '{name}' (known: {string.Join(", ", Names)})");
        }
    }

    /// <summary>
    /// Loads only the test split described by a checkpoint's <paramref name="info"/>, as <see cref="Load"/> would
    /// (for a folder without train/ and test/: the same seeded 10% hold-out), without loading the training split
    /// where the files allow it. <paramref name="directory"/> is the data folder (null: the data set's default).
    /// </summary>
    /// <exception cref="DataSetException">The data is missing or its classes differ from the checkpoint's.</exception>
    public static IImageDataset LoadTest(DataInfo info, string? directory, int seed = 0)
    {
        IImageDataset test;
        switch (info.Name.ToLowerInvariant())
        {
            case "fashion-mnist" or "fmnist":
                test = FashionMnist.Load(directory, train: false);
                break;
            case "mnist":
                test = Mnist.Load(directory ?? throw new DataSetException("mnist: give the folder with the four IDX files with --data DIR"), train: false);
                break;
            case "cifar10" or "cifar-10":
                test = Cifar.Load10(directory ?? throw new DataSetException("cifar10: give the folder with data_batch_1.bin … test_batch.bin with --data DIR"), train: false);
                break;
            case "cifar100" or "cifar-100":
                test = Cifar.Load100(directory ?? throw new DataSetException("cifar100: give the folder with train.bin and test.bin with --data DIR"), train: false);
                break;
            case "folder":
            {
                string dir = directory ?? throw new DataSetException("folder: give the image folder (one sub-folder per class) with --data DIR");
                string? testDir = new[] { "test", "val" }.Select(s => Path.Combine(dir, s)).FirstOrDefault(Directory.Exists);
                if (info.Preprocessing is { } prep)
                {
                    // An imported model: its own recipe (resize and centre crop) on the whole folder, or on its test/ or val/ split.
                    test = new ImageFolderDataset(testDir ?? dir, info.Height, info.Channels, prep);
                    break;
                }
                test = Directory.Exists(Path.Combine(dir, "train")) && testDir is not null
                    ? new ImageFolderDataset(testDir, info.Height, info.Channels)
                    : Load("folder", dir, seed, info.Height, info.Channels).Test;
                break;
            }
            default:
                throw new DataSetException($"unknown data set '{info.Name}' (known: {string.Join(", ", Names)})");
        }
        // A grey data set that was trained as C channels (a model that always takes RGB): repeat it again.
        if (test.Channels == 1 && info.Channels > 1) test = new RepeatChannelsDataset(test, info.Channels);
        if (!test.ClassNames.SequenceEqual(info.ClassNames))
            throw new DataSetException($"{info.Name}: the classes in {directory ?? "the data folder"} ({string.Join(", ", test.ClassNames)}) differ from the checkpoint's ({string.Join(", ", info.ClassNames)})");
        return test;
    }

    /// <summary>The first <paramref name="limit"/> samples (or all), for quick runs.</summary>
    public static IImageDataset Limit(IImageDataset data, int? limit) =>
        limit is int n && n < data.Count ? new SubsetDataset(data, Enumerable.Range(0, n).ToArray()) : data;
}
