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

    /// <summary>Reads a checkpoint, builds its model and loads the weights (strictly).</summary>
    public static LoadedCheckpoint Load(string path)
    {
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
        catch (ModelConfigException e) { throw new CheckpointException($"{path}: {e.Message}", e); }
        var model = info.Model.Build();
        var weights = new Dictionary<string, Tensor>();
        var optimizer = new Dictionary<string, Tensor>();
        foreach (var t in file.Tensors)
        {
            var tensor = new Tensor(file.ReadFloat32(t.Name), t.Shape);
            if (t.Name.StartsWith(OptimizerPrefix, StringComparison.Ordinal)) optimizer[t.Name[OptimizerPrefix.Length..]] = tensor;
            else weights[t.Name] = tensor;
        }
        try { model.LoadStateDict(weights, strict: true); }
        catch (StateDictException e) { throw new CheckpointException($"{path}: {e.Message}", e); }
        return new LoadedCheckpoint(path, model, info, optimizer);
    }

    private static JsonObject ParseObject(SafeTensorsFile file, string key)
    {
        if (!file.Metadata.TryGetValue(key, out var text)) throw new CheckpointException($"{file.Path}: metadata '{key}' is missing");
        try { return JsonNode.Parse(text) as JsonObject ?? throw new CheckpointException($"{file.Path}: metadata '{key}' is not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new CheckpointException($"{file.Path}: metadata '{key}' is malformed JSON ({e.Message.Split('\n')[0]})", e); }
    }
}
