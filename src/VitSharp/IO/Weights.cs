namespace VitSharp.IO;

/// <summary>Reads and writes named tensors (state_dicts) as safetensors files.</summary>
public static class Weights
{
    /// <summary>Reads every tensor of a safetensors file as float32 (integers and halves converted).</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        var result = new Dictionary<string, Tensor>();
        foreach (var info in file.Tensors)
            result[info.Name] = new Tensor(file.ReadFloat32(info.Name), info.Shape);
        return result;
    }

    /// <summary>Writes tensors as F32 (to a temporary file, then renamed over <paramref name="path"/>).</summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensorsWriter.Save(path, tensors.Select(kv => SafeTensorsWriter.F32(kv.Key, kv.Value.Shape, kv.Value.Data)), metadata);
}
