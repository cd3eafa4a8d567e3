using System.Buffers.Binary;
using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Tests.Training;

/// <summary>Hostile checkpoints built from a real, tiny one (issue 14): its metadata, dtypes, values or header rewritten.</summary>
internal static class HostileFiles
{
    public static readonly ModelSpec Spec = ModelSpec.ViT(new ViTConfig
    {
        ImageHeight = 8, ImageWidth = 8, PatchHeight = 4, PatchWidth = 4, NumClasses = 3, Dim = 16, Depth = 1,
        Heads = 2, MlpDim = 32, DimHead = 8, Channels = 1,
    });

    public static JsonObject Data() => new DataInfo("folder", ["a", "b", "c"], 1, 8, 8, [0.5f], [0.25f]).ToJson();

    /// <summary>Writes a real checkpoint of the tiny ViT.</summary>
    public static string Real(string path)
    {
        Init.Seed(3);
        var model = Spec.Build();
        Checkpoint.Save(path, model, new CheckpointInfo(Spec, Data(), new JsonObject { ["epoch"] = 1 }));
        return path;
    }

    /// <summary>Rewrites <paramref name="path"/>: <paramref name="metadata"/> edits the metadata, <paramref name="entry"/>
    /// turns each (name, shape, values) into the entry written.</summary>
    public static void Rewrite(string path, Action<Dictionary<string, string>>? metadata = null,
        Func<string, int[], float[], SafeTensorsWriter.Entry>? entry = null)
    {
        Dictionary<string, string> meta;
        var entries = new List<SafeTensorsWriter.Entry>();
        using (var f = SafeTensorsFile.Open(path))
        {
            meta = new Dictionary<string, string>(f.Metadata);
            foreach (var t in f.Tensors)
            {
                var values = f.ReadFloat32(t.Name);
                entries.Add(entry?.Invoke(t.Name, t.Shape, values) ?? SafeTensorsWriter.F32(t.Name, t.Shape, values));
            }
        }
        metadata?.Invoke(meta);
        SafeTensorsWriter.Save(path, entries, meta);
    }

    /// <summary>Edits the JSON of one metadata entry.</summary>
    public static void EditJson(string path, string key, Action<JsonObject> edit) =>
        Rewrite(path, metadata: m =>
        {
            var o = (JsonObject)JsonNode.Parse(m[key])!;
            edit(o);
            m[key] = o.ToJsonString();
        });

    /// <summary>Sets vitsharp.model's kwarg <paramref name="name"/> to the JSON <paramref name="json"/>.</summary>
    public static void SetKwarg(string path, string name, string json) =>
        EditJson(path, "vitsharp.model", o => ((JsonObject)o["kwargs"]!)[name] = JsonNode.Parse(json));

    /// <summary>Poisons the first element of <paramref name="tensor"/> with <paramref name="value"/>.</summary>
    public static void Poison(string path, string tensor, float value) =>
        Rewrite(path, entry: (n, s, v) =>
        {
            if (n == tensor) v[0] = value;
            return SafeTensorsWriter.F32(n, s, v);
        });

    /// <summary>Stores <paramref name="tensor"/> as I32 with the same bits (same size, same offsets).</summary>
    public static void AsInt32(string path, string tensor) =>
        Rewrite(path, entry: (n, s, v) => n == tensor
            ? SafeTensorsWriter.I32(n, s, v.Select(BitConverter.SingleToInt32Bits).ToArray())
            : SafeTensorsWriter.F32(n, s, v));

    /// <summary>Decrements the 8-byte header length: the header ends a byte early, every tensor shifts by a byte.</summary>
    public static void HeaderOneByteShort(string path)
    {
        var bytes = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, n - 1);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Bytes this thread allocates while <paramref name="action"/> runs (it is expected to throw <typeparamref name="T"/>).</summary>
    public static (T Error, long Bytes) AllocatedWhileFailing<T>(Action action) where T : Exception
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<T>(action);
        return (e, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    public const long FastFailBytes = 64L << 20;
}
