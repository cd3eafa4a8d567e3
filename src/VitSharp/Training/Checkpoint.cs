using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Training;

/// <summary>A checkpoint file is missing, malformed or does not fit.</summary>
public sealed class CheckpointException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>What a checkpoint holds besides the tensors.</summary>
/// <param name="Model">The model's constructor and keyword arguments.</param>
/// <param name="Data">The data set and preprocessing (name, class names, image size, channels, mean, std).</param>
/// <param name="Training">Training options and position (epoch, step, …).</param>
public sealed record CheckpointInfo(ModelSpec Model, JsonObject Data, JsonObject Training);

/// <summary>How <see cref="Checkpoint.Load(string, CheckpointLoadOptions?)"/> treats doubtful weights.</summary>
public sealed record CheckpointLoadOptions
{
    /// <summary>Load weights holding NaN or ±∞ (reported through <see cref="Warn"/>) instead of refusing them.</summary>
    public bool AllowNonFinite { get; init; }
    /// <summary>Receives one-line warnings (non-finite weights allowed by <see cref="AllowNonFinite"/>).</summary>
    public Action<string>? Warn { get; init; }
}

/// <summary>A loaded checkpoint: the built model with its weights, the optimizer state and the metadata.</summary>
public sealed record LoadedCheckpoint(string Path, Module Model, CheckpointInfo Info, IReadOnlyDictionary<string, Tensor> OptimizerState);

/// <summary>
/// Checkpoints as one safetensors file: the model's state_dict under its own PyTorch key names (so
/// <c>safetensors.torch.load_file</c> gives a state_dict back), the optimizer state under <c>optimizer.*</c>, and
/// JSON metadata (<c>vitsharp.model</c>, <c>vitsharp.data</c>, <c>vitsharp.training</c>). Written to a temporary
/// file and renamed, so a crash never leaves a partial checkpoint in place of a good one.
/// </summary>
public static class Checkpoint
{
    /// <summary>Format tag in the metadata.</summary>
    public const string Format = "vitsharp-checkpoint-1";
    private const string OptimizerPrefix = "optimizer.";

    /// <summary>Writes a checkpoint atomically.</summary>
    public static void Save(string path, Module model, CheckpointInfo info, Optim.Optimizer? optimizer = null)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>(model.StateDict());
        if (optimizer is not null)
            tensors.AddRange(optimizer.StateDict().Select(kv => new KeyValuePair<string, Tensor>(OptimizerPrefix + kv.Key, kv.Value)));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["vitsharp.model"] = info.Model.ToJson().ToJsonString(),
            ["vitsharp.data"] = info.Data.ToJsonString(),
            ["vitsharp.training"] = info.Training.ToJsonString(),
        };
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        Weights.Save(path, tensors, metadata);
    }

    /// <summary>Reads a checkpoint, builds its model and loads the weights (strictly); non-finite weights are an error.</summary>
    public static LoadedCheckpoint Load(string path) => Load(path, null);

    /// <summary>
    /// Reads a checkpoint, builds its model and loads the weights (strictly). Before anything is built, the recorded
    /// configuration is checked against the tensors the file holds (<see cref="ModelSpec.BuildFor"/>: a configuration
    /// whose model would outgrow them is refused at once), and every model tensor must have a float dtype; after
    /// reading, a weight holding NaN or ±∞ is an error naming it unless <see cref="CheckpointLoadOptions.AllowNonFinite"/>.
    /// </summary>
    public static LoadedCheckpoint Load(string path, CheckpointLoadOptions? options)
    {
        options ??= new CheckpointLoadOptions();
        if (!File.Exists(path)) throw new CheckpointException($"{path}: checkpoint not found");
        using var file = SafeTensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("format", out var format) || format != Format)
            throw new CheckpointException($"{path}: not a VitSharp checkpoint (metadata 'format' is {(format is null ? "missing" : $"'{format}'")}, expected '{Format}')");
        CheckpointInfo info;
        try
        {
            info = new CheckpointInfo(
                ModelSpec.FromJson(ParseObject(file, "vitsharp.model")),
                ParseObject(file, "vitsharp.data"),
                ParseObject(file, "vitsharp.training"));
        }
        catch (ModelConfigException e) { throw new CheckpointException($"{path}: vitsharp.model: {e.Message}", e); }
        long weightElements = 0;
        foreach (var t in file.Tensors)
        {
            if (t.Name.StartsWith(OptimizerPrefix, StringComparison.Ordinal)) continue;
            if (!IsFloat(t.DType))
                throw new CheckpointException($"{path}: tensor '{t.Name}' has dtype {t.DType}; the model's tensors are stored as floats (F32, F16, BF16 or F64)");
            weightElements += t.ElementCount;
        }
        Module model;
        try { model = info.Model.BuildFor(weightElements, "vitsharp.model"); }
        catch (ModelConfigException e) { throw new CheckpointException($"{path}: {(e.Message.StartsWith("vitsharp.model", StringComparison.Ordinal) ? "" : "vitsharp.model: ")}{e.Message}", e); }
        var weights = new Dictionary<string, Tensor>();
        var optimizer = new Dictionary<string, Tensor>();
        foreach (var t in file.Tensors)
        {
            var tensor = new Tensor(file.ReadFloat32(t.Name), t.Shape);
            if (t.Name.StartsWith(OptimizerPrefix, StringComparison.Ordinal)) optimizer[t.Name[OptimizerPrefix.Length..]] = tensor;
            else
            {
                CheckFinite(path, t.Name, tensor.Data, options);
                weights[t.Name] = tensor;
            }
        }
        try { model.LoadStateDict(weights, strict: true); }
        catch (StateDictException e) { throw new CheckpointException($"{path}: {e.Message}", e); }
        return new LoadedCheckpoint(path, model, info, optimizer);
    }

    private static bool IsFloat(DType d) => d is DType.F32 or DType.F16 or DType.BF16 or DType.F64;

    /// <summary>Throws (or, with <see cref="CheckpointLoadOptions.AllowNonFinite"/>, warns) when <paramref name="values"/> hold NaN or ±∞.</summary>
    internal static void CheckFinite(string path, string name, ReadOnlySpan<float> values, CheckpointLoadOptions options)
    {
        int bad = 0, first = -1;
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) { bad++; if (first < 0) first = i; }
        if (bad == 0) return;
        string message = $"{path}: tensor '{name}' holds {bad:N0} non-finite value(s) (first: {values[first].ToString(System.Globalization.CultureInfo.InvariantCulture)} at element {first})";
        if (!options.AllowNonFinite) throw new CheckpointException(message + "; the weights are corrupt (allow them with --allow-nonfinite)");
        options.Warn?.Invoke(message);
    }

    private static JsonObject ParseObject(SafeTensorsFile file, string key)
    {
        if (!file.Metadata.TryGetValue(key, out var text)) throw new CheckpointException($"{file.Path}: metadata '{key}' is missing");
        try { return JsonNode.Parse(text) as JsonObject ?? throw new CheckpointException($"{file.Path}: metadata '{key}' is not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new CheckpointException($"{file.Path}: metadata '{key}' is malformed JSON ({e.Message.Split('\n')[0]})", e); }
    }
}
