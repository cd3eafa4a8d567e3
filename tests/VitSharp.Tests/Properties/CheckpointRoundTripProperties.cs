using System.Text.Json.Nodes;
using CsCheck;
using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Tests.Properties;

/// <summary>Property: Checkpoint.Save then Checkpoint.Load gives back the state_dict (every tensor, bit for bit) and the
/// spec/data/training JSON, for random small ViT configurations and random weights.</summary>
public sealed class CheckpointRoundTripProperties
{
    private static readonly Gen<ViTConfig> ConfigGen =
        from ph in Gen.Int[1, 4]
        from pw in Gen.Int[1, 4]
        from gh in Gen.Int[1, 3]
        from gw in Gen.Int[1, 3]
        from classes in Gen.Int[0, 4]
        from dim in Gen.Int[1, 12]
        from depth in Gen.Int[0, 2]
        from heads in Gen.Int[1, 3]
        from dimHead in Gen.Int[1, 6]
        from mlp in Gen.Int[1, 12]
        from channels in Gen.Int[1, 3]
        from pool in Gen.OneOf("cls", "mean")
        select new ViTConfig
        {
            ImageHeight = ph * gh, ImageWidth = pw * gw, PatchHeight = ph, PatchWidth = pw, NumClasses = classes, Dim = dim,
            Depth = depth, Heads = heads, DimHead = dimHead, MlpDim = mlp, Channels = channels, Pool = pool,
        };

    [Fact]
    public void SaveThenLoadGivesEqualStateDictAndSpec()
    {
        Gen.Select(ConfigGen, Gen.Int, Gen.String[0, 12], Gen.Int[0, 1000]).Sample((config, seed, dataName, epoch) =>
        {
            var spec = ModelSpec.ViT(config);
            var model = spec.Build();
            var rng = new Random(seed);
            foreach (var t in model.StateDict().Values)
                for (int i = 0; i < t.Data.Length; i++) t.Data[i] = (float)(rng.NextDouble() * 4 - 2);
            var before = model.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Data.ToArray());
            var data = new JsonObject { ["name"] = dataName, ["classes"] = new JsonArray("a", "b") };
            var training = new JsonObject { ["epoch"] = epoch, ["lr"] = 0.001 };
            string path = Path.Combine(Path.GetTempPath(), $"vitsharp-prop-{Guid.NewGuid():N}.safetensors");
            try
            {
                Checkpoint.Save(path, model, new CheckpointInfo(spec, data, training));
                var loaded = Checkpoint.Load(path);
                Assert.Equal(spec.ToJson().ToJsonString(), loaded.Info.Model.ToJson().ToJsonString());
                Assert.Equal(data.ToJsonString(), loaded.Info.Data.ToJsonString());
                Assert.Equal(training.ToJsonString(), loaded.Info.Training.ToJsonString());
                var after = loaded.Model.StateDict();
                Assert.Equal(before.Keys.Order(StringComparer.Ordinal), after.Keys.Order(StringComparer.Ordinal));
                foreach (var (k, v) in before) Assert.Equal(v, after[k].Data);
            }
            finally { File.Delete(path); }
        }, iter: 25, threads: 1);
    }
}
