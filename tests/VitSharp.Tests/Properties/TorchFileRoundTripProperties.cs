using CsCheck;
using VitSharp.IO;

namespace VitSharp.Tests.Properties;

/// <summary>Property: TorchFile.Save then TorchFile.LoadStateDict gives back every tensor (key order, shape, values),
/// for random state dicts with 0-dim and empty tensors.</summary>
public sealed class TorchFileRoundTripProperties
{
    private static readonly Gen<(string Key, int[] Shape, float[] Data)> TensorGen =
        from key in Gen.String[Gen.Char["abcdefghijklmnopqrstuvwxyz0123456789._ ü"], 1, 16]
        from shape in Gen.Int[0, 4].Array[0, 4]
        let n = shape.Aggregate(1, (a, d) => a * d)
        from data in Gen.Float.Array[n]
        select (key, shape, data);

    [Fact]
    public void SaveThenLoadStateDictGivesEqualTensors()
    {
        TensorGen.List[0, 8].Sample(list =>
        {
            var sd = list.Select((t, i) => new KeyValuePair<string, Tensor>($"{t.Key}.{i}", new Tensor(t.Data, t.Shape))).ToList();
            string path = Path.Combine(Path.GetTempPath(), $"vitsharp-prop-{Guid.NewGuid():N}.pth");
            try
            {
                TorchFile.Save(path, sd);
                var back = TorchFile.LoadStateDict(path);
                Assert.Equal(sd.Select(kv => kv.Key), back.Keys);
                foreach (var (k, t) in sd)
                {
                    Assert.Equal(t.Shape, back[k].Shape);
                    // Bit patterns: NaN payloads and signed zeros survive too.
                    Assert.Equal(t.Data.Select(BitConverter.SingleToInt32Bits), back[k].Data.Select(BitConverter.SingleToInt32Bits));
                }
            }
            finally { File.Delete(path); }
        }, iter: 60, threads: 1);
    }
}
