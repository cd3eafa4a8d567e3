using CsCheck;
using VitSharp.IO;

namespace VitSharp.Tests.Properties;

/// <summary>Property: SafeTensorsWriter.Save then SafeTensorsFile.Open gives back every tensor (name, dtype, shape,
/// values) and the metadata, for random names, dtypes F32/F16/BF16/I64, shapes with empty dimensions and metadata.</summary>
public sealed class SafeTensorsRoundTripProperties
{
    public sealed record Spec(string Name, DType DType, int[] Shape, float[] Floats, long[] Longs)
    {
        public override string ToString() => $"{Name} {DType} [{string.Join(",", Shape)}]";
    }

    private static readonly Gen<string> NameGen = Gen.String[Gen.Char["abcdefghijklmnopqrstuvwxyz0123456789._-/ éλ"], 1, 12];

    private static readonly Gen<Spec> SpecGen =
        from dtype in Gen.OneOf(DType.F32, DType.F16, DType.BF16, DType.I64)
        from shape in Gen.Int[0, 4].Array[0, 3]
        from name in NameGen
        let n = shape.Aggregate(1, (a, d) => a * d)
        from floats in Gen.Float[-1e4f, 1e4f].Array[n]
        from longs in Gen.Long.Array[n]
        select new Spec(name, dtype, shape, floats.Select(v => Representable(dtype, v)).ToArray(), longs);

    /// <summary>The value as the dtype stores it (the writer rounds; the property checks the file keeps what was written).</summary>
    private static float Representable(DType dtype, float v) => dtype switch
    {
        DType.F16 => (float)(Half)v,
        DType.BF16 => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v) & unchecked((int)0xFFFF0000)),
        _ => v,
    };

    private static readonly Gen<Dictionary<string, string>> MetadataGen =
        Gen.Dictionary(Gen.String[Gen.Char.AlphaNumeric, 1, 10], Gen.String[0, 20])[0, 4];

    [Fact]
    public void WriteThenReadGivesEqualTensorsAndMetadata()
    {
        Gen.Select(SpecGen.List[0, 6], MetadataGen).Sample((specs, metadata) =>
        {
            // Unique names (the writer refuses duplicates): a numeric suffix per position.
            var tensors = specs.Select((s, i) => s with { Name = $"{s.Name}#{i}" }).ToList();
            string path = Path.Combine(Path.GetTempPath(), $"vitsharp-prop-{Guid.NewGuid():N}.safetensors");
            try
            {
                SafeTensorsWriter.Save(path, tensors.Select(Entry), metadata);
                using var f = SafeTensorsFile.Open(path);
                Assert.Equal(tensors.Count, f.Tensors.Count);
                foreach (var s in tensors)
                {
                    var info = f.Info(s.Name);
                    Assert.Equal(s.DType, info.DType);
                    Assert.Equal(s.Shape, info.Shape);
                    if (s.DType == DType.I64) Assert.Equal(s.Longs, f.ReadInt64(s.Name));
                    else Assert.Equal(s.Floats.Select(BitConverter.SingleToInt32Bits), f.ReadFloat32(s.Name).Select(BitConverter.SingleToInt32Bits));
                }
                foreach (var (k, v) in metadata) Assert.Equal(v, f.Metadata[k]);
                Assert.Equal(metadata.Count, f.Metadata.Count);
            }
            finally { File.Delete(path); }
        }, iter: 60, threads: 1);
    }

    private static SafeTensorsWriter.Entry Entry(Spec s) => s.DType switch
    {
        DType.F32 => SafeTensorsWriter.F32(s.Name, s.Shape, s.Floats),
        DType.F16 => SafeTensorsWriter.F16(s.Name, s.Shape, s.Floats),
        DType.BF16 => SafeTensorsWriter.BF16(s.Name, s.Shape, s.Floats),
        _ => SafeTensorsWriter.I64(s.Name, s.Shape, s.Longs),
    };
}
