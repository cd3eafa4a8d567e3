using VitSharp.Data;
using VitSharp.Import;
using VitSharp.Inspection;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Inference;

/// <summary>One class of a prediction.</summary>
/// <param name="Index">The class index (the model's output column).</param>
/// <param name="Name">The class name the checkpoint records.</param>
/// <param name="Probability">Its softmax probability.</param>
public sealed record ClassScore(int Index, string Name, float Probability);

/// <summary>One image's most probable classes, most probable first (ties: lower index first).</summary>
/// <param name="Image">The image's path, or the name given for a stream or bytes.</param>
/// <param name="Top">The top classes.</param>
public sealed record ImagePrediction(string Image, IReadOnlyList<ClassScore> Top)
{
    /// <summary>The most probable class.</summary>
    public ClassScore Best => Top[0];
}

/// <summary>An image's attention rollout (<see cref="AttentionRollout"/>): one weight per patch of the model's grid.</summary>
/// <param name="Image">The decoded image (its own channels and size).</param>
/// <param name="Map">The rollout over the patches, row-major [GridHeight × GridWidth].</param>
/// <param name="GridHeight">Patch rows.</param>
/// <param name="GridWidth">Patch columns.</param>
public sealed record AttentionMap(DecodedImage Image, float[] Map, int GridHeight, int GridWidth)
{
    /// <summary>The map drawn with the jet colour map half over the image (<see cref="AttentionHeatmap.Overlay"/>).</summary>
    public DecodedImage Overlay(float opacity = 0.5f) => AttentionHeatmap.Overlay(Image, Map, GridHeight, GridWidth, opacity);

    /// <summary>Writes <see cref="Overlay"/> as a PNG (<see cref="AttentionHeatmap.SavePng"/>).</summary>
    public void SavePng(string path, float opacity = 0.5f) => AttentionHeatmap.SavePng(path, Image, Map, GridHeight, GridWidth, opacity);

    /// <summary><see cref="Overlay"/> encoded as an RGB PNG in memory (through libspng).</summary>
    /// <exception cref="DataSetException">libspng is missing or encoding fails.</exception>
    public byte[] ToPng(float opacity = 0.5f)
    {
        var o = Overlay(opacity);
        return ImageEncoder.EncodePng(o.Pixels, o.Width, o.Height, 3, "attention overlay");
    }
}

/// <summary>
/// Image → class with a trained or imported model, as <c>vit predict</c> does it: PNG or JPEG (recognised by content)
/// decoded to the model's channels (grey or RGB, as PIL converts), prepared as the checkpoint records — an imported model's
/// own recipe (<see cref="DataInfo.Preprocessing"/>: resize, crop, mean/std) when present, else a bilinear resize to the
/// model's input size, /255 and the stored normalisation — and run in eval mode without gradients; softmax probabilities.
/// </summary>
/// <remarks>Thread-safe: decoding and preprocessing run on the calling threads in parallel, the model's forward passes one
/// at a time (a lock).</remarks>
public sealed class ImageClassifier
{
    private const int Chunk = 64;
    private readonly object _lock = new();

    /// <summary>Wraps a loaded checkpoint (its model is switched to eval mode).</summary>
    /// <param name="checkpoint">The checkpoint.</param>
    /// <param name="precision">The number format of the model's Linear layers (<see cref="ModelPrecision.UsePrecision"/>);
    /// float32 by default.</param>
    public ImageClassifier(LoadedCheckpoint checkpoint, InferencePrecision precision = InferencePrecision.Float32)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        checkpoint.Model.UsePrecision(precision);
        Precision = precision;
        Checkpoint = checkpoint;
        Data = DataInfo.FromJson(checkpoint.Info.Data, checkpoint.Path);
        var inner = checkpoint.Model is DistillWrapper dw ? dw.Student : checkpoint.Model;
        InputShape = inner is IImageModel im ? (Data.Channels, im.InputHeight ?? Data.Height, im.InputWidth ?? Data.Width) : (Data.Channels, Data.Height, Data.Width);
        checkpoint.Model.Eval();
    }

    /// <summary>
    /// Loads a checkpoint written by <c>vit train</c> or <c>vit import</c>, or pretrained weights
    /// <see cref="WeightImporter.LoadCheckpoint"/> reads (.pth, .safetensors, .npz, a Hugging Face folder).
    /// </summary>
    /// <exception cref="CheckpointException">The file is missing, malformed, or does not say what the model is.</exception>
    /// <param name="checkpointOrWeights">The file or folder.</param>
    /// <param name="options">How to read pretrained weights (preset, class names, non-finite weights).</param>
    /// <param name="precision">The number format of the model's Linear layers; float32 by default.</param>
    public static ImageClassifier Load(string checkpointOrWeights, ImportOptions? options = null,
        InferencePrecision precision = InferencePrecision.Float32) =>
        new(WeightImporter.LoadCheckpoint(checkpointOrWeights, options), precision);

    /// <summary>The number format the model's Linear layers run in.</summary>
    public InferencePrecision Precision { get; }

    /// <summary>The loaded checkpoint (model, spec, metadata).</summary>
    public LoadedCheckpoint Checkpoint { get; }

    /// <summary>The model (in eval mode). For a distillation checkpoint, the wrapper (its forward is the student's).</summary>
    public Module Model => Checkpoint.Model;

    /// <summary>The data info the checkpoint records: class names, normalisation, an imported model's preprocessing.</summary>
    public DataInfo Data { get; }

    /// <summary>The class names, indexed by the model's output column.</summary>
    public IReadOnlyList<string> ClassNames => Data.ClassNames;

    /// <summary>The model's input: channels, height and width.</summary>
    public (int Channels, int Height, int Width) InputShape { get; }

    /// <summary>Whether <see cref="AttentionMap(string)"/> works: a ViT-family model (a distillation checkpoint's student included).</summary>
    public bool SupportsAttention => InspectedModel is not null;

    private IPatchTokenModel? InspectedModel => (Model as DistillWrapper)?.Student ?? Model as IPatchTokenModel;

    /// <summary>Classifies a PNG or JPEG file.</summary>
    /// <exception cref="DataSetException">The file is missing, unreadable, not a PNG or JPEG, or corrupt (the message names it).</exception>
    public ImagePrediction Predict(string path, int topK = 5) => PredictBatch([path], topK)[0];

    /// <summary>Classifies a PNG or JPEG read from <paramref name="stream"/> (to its end); <paramref name="name"/> names it in the result and in errors.</summary>
    public ImagePrediction Predict(Stream stream, int topK = 5, string name = "stream")
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return Predict(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), topK, name);
    }

    /// <summary>Classifies an encoded PNG or JPEG held in memory; <paramref name="name"/> names it in the result and in errors.</summary>
    public ImagePrediction Predict(ReadOnlySpan<byte> encoded, int topK = 5, string name = "image")
    {
        CheckTopK(topK);
        var x = Preprocess(ImageDecoder.Decode(encoded, name, InputShape.Channels));
        return Classify([x], [name], topK)[0];
    }

    /// <summary>Classifies an encoded PNG or JPEG held in memory; <paramref name="name"/> names it in the result and in errors.</summary>
    public ImagePrediction Predict(byte[] encoded, int topK = 5, string name = "image") => Predict(encoded.AsSpan(), topK, name);

    /// <summary>
    /// Classifies PNG or JPEG files, up to 64 per forward pass. Every image is decoded first, so a bad file is reported
    /// (naming it) before any work is done.
    /// </summary>
    public IReadOnlyList<ImagePrediction> PredictBatch(IReadOnlyList<string> paths, int topK = 5)
    {
        ArgumentNullException.ThrowIfNull(paths);
        CheckTopK(topK);
        var inputs = new float[paths.Count][];
        for (int n = 0; n < paths.Count; n++) inputs[n] = Preprocess(ImageDecoder.Decode(paths[n], InputShape.Channels));
        return Classify(inputs, paths, topK);
    }

    /// <summary>The model's input for one decoded image (any channels): C×H×W floats, prepared as described above.</summary>
    public float[] Preprocess(DecodedImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var (c, h, w) = InputShape;
        var decoded = ImageDecoder.ConvertChannels(image, c);
        if (Data.Preprocessing is { } prep) return prep.Apply(decoded);   // an imported model's own recipe (resize, crop, mean/std)
        int size = c * h * w;
        var img = ImageOps.Resize(decoded, w, h);
        var chw = new byte[size];
        ImageOps.HwcToChw(img.Pixels, w, h, c, chw);
        var x = new float[size];
        for (int i = 0; i < size; i++) x[i] = chw[i] / 255f;
        Data.Normalize().Apply(x, c, h, w, Random.Shared);
        return x;
    }

    /// <summary>Softmax probabilities over the classes for prepared inputs (<see cref="Preprocess"/>), one row per input.</summary>
    public float[][] Probabilities(IReadOnlyList<float[]> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var (c, h, w) = InputShape;
        int size = c * h * w, classes = ClassNames.Count;
        var result = new float[inputs.Count][];
        lock (_lock)
        {
            Model.Eval();
            using var noGrad = Autograd.NoGrad();
            for (int start = 0; start < inputs.Count; start += Chunk)
            {
                int b = Math.Min(Chunk, inputs.Count - start);
                var batch = new Tensor(b, c, h, w);
                for (int i = 0; i < b; i++)
                {
                    if (inputs[start + i].Length != size) throw new ArgumentException($"input {start + i} has {inputs[start + i].Length} values, the model takes {c}×{h}×{w} = {size}");
                    inputs[start + i].CopyTo(batch.Data.AsSpan(i * size, size));
                }
                var probs = F.Softmax(Model.Forward(batch), -1);
                for (int i = 0; i < b; i++)
                {
                    var row = probs.Data.AsSpan(i * classes, classes);
                    foreach (float p in row)
                        if (!float.IsFinite(p))
                            throw new CheckpointException($"{Checkpoint.Path}: the model's output for input {start + i} is not finite (NaN or ±∞); its weights or preprocessing are corrupt, so there is no prediction to give");
                    result[start + i] = row.ToArray();
                }
            }
        }
        return result;
    }

    /// <summary>
    /// The attention rollout of a PNG or JPEG file over the model's patch grid (class-token row; see
    /// <see cref="AttentionRollout.ForModel"/>), with the decoded image to draw it over (<see cref="AttentionMap.SavePng"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is not of the ViT family (<see cref="SupportsAttention"/>).</exception>
    /// <exception cref="DataSetException">The file is missing, unreadable, not a PNG or JPEG, or corrupt (the message names it).</exception>
    public AttentionMap AttentionMap(string path)
    {
        var inspected = RequireAttention();
        return AttentionMap(inspected, ImageDecoder.Decode(path));
    }

    /// <summary>
    /// The attention rollout of an encoded PNG or JPEG held in memory (as <see cref="AttentionMap(string)"/>);
    /// <paramref name="name"/> names it in errors.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is not of the ViT family (<see cref="SupportsAttention"/>).</exception>
    /// <exception cref="DataSetException">The data is not a PNG or JPEG, or is corrupt (the message names it).</exception>
    public AttentionMap AttentionMap(ReadOnlySpan<byte> encoded, string name = "image")
    {
        var inspected = RequireAttention();
        return AttentionMap(inspected, ImageDecoder.Decode(encoded, name));
    }

    private IPatchTokenModel RequireAttention() => InspectedModel ?? throw new InvalidOperationException(
        $"attention maps need a ViT-family model; {Checkpoint.Path} holds a {Checkpoint.Info.Model.Constructor}");

    private AttentionMap AttentionMap(IPatchTokenModel inspected, DecodedImage original)
    {
        var x = Preprocess(original);
        var (c, h, w) = InputShape;
        var (gh, gw) = inspected.PatchGrid;
        float[] map;
        lock (_lock)
        {
            using var scope = TensorScope.Begin();
            map = AttentionRollout.ForModel((Module)inspected, new Tensor(x, 1, c, h, w)).Data.AsSpan(0, gh * gw).ToArray();
        }
        return new AttentionMap(original, map, gh, gw);
    }

    private IReadOnlyList<ImagePrediction> Classify(IReadOnlyList<float[]> inputs, IReadOnlyList<string> names, int topK)
    {
        int classes = ClassNames.Count, k = Math.Min(topK, classes);
        var probs = Probabilities(inputs);
        var result = new ImagePrediction[inputs.Count];
        for (int n = 0; n < inputs.Count; n++)
        {
            var row = probs[n];
            var best = Enumerable.Range(0, classes).OrderByDescending(j => row[j]).ThenBy(j => j).Take(k)
                .Select(j => new ClassScore(j, ClassNames[j], row[j])).ToArray();
            result[n] = new ImagePrediction(names[n], best);
        }
        return result;
    }

    private static void CheckTopK(int topK)
    {
        if (topK < 1) throw new ArgumentException($"topK must be ≥ 1, got {topK}", nameof(topK));
    }
}
