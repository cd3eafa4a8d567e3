using System.IO.Compression;
using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Fuzz;

/// <summary>Tiny valid inputs written with VitSharp's own writers (scripts/fuzz.sh adds the fixtures).</summary>
public static class Seeds
{
    public static void Write(string target, string dir)
    {
        Directory.CreateDirectory(dir);
        string P(string name) => Path.Combine(dir, name);
        switch (target)
        {
            case "safetensors":
                SafeTensorsWriter.Save(P("tiny.safetensors"),
                [
                    SafeTensorsWriter.F32("w", [2, 3], [1, 2, 3, 4, 5, 6]), SafeTensorsWriter.F16("h", [2], [0.5f, -1]),
                    SafeTensorsWriter.BF16("b", [1, 0], []), SafeTensorsWriter.I64("i", [], [7]),
                ], new Dictionary<string, string> { ["format"] = "pt" });
                break;
            case "checkpoint":
            {
                var config = new ViTConfig { ImageHeight = 8, ImageWidth = 8, PatchHeight = 4, PatchWidth = 4, NumClasses = 2, Dim = 8, Depth = 1, Heads = 2, MlpDim = 8 };
                var spec = ModelSpec.ViT(config);
                var model = spec.Build();
                Checkpoint.Save(P("tiny.ckpt"), model, new CheckpointInfo(spec, new JsonObject { ["name"] = "folder" }, new JsonObject { ["epoch"] = 1 }));
                break;
            }
            case "pth":
                TorchFile.Save(P("tiny.pth"), [
                    new KeyValuePair<string, Tensor>("w", new Tensor([1f, 2, 3, 4, 5, 6], [2, 3])),
                    new KeyValuePair<string, Tensor>("s", new Tensor([3f], [])),
                ]);
                break;
            case "idx":
            {
                byte[] images = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8];
                byte[] labels = [0, 0, 8, 1, 0, 0, 0, 2, 3, 7];
                File.WriteAllBytes(P("images.idx"), images);
                File.WriteAllBytes(P("labels.idx"), labels);
                File.WriteAllBytes(P("images.idx.gz"), Gzip(images));
                File.WriteAllBytes(P("labels.idx.gz"), Gzip(labels));
                break;
            }
            case "cifar":
            {
                var rng = new Random(1);
                var rec = new byte[2 * (1 + Cifar.ImageBytes)];
                rng.NextBytes(rec);
                rec[0] = 3; rec[1 + Cifar.ImageBytes] = 9;
                File.WriteAllBytes(P("test_batch.bin"), rec);
                break;
            }
            case "png":
                File.WriteAllBytes(P("tiny_rgb.png"), ImageEncoder.EncodePng(Pixels(4 * 3 * 3), 4, 3, 3));
                File.WriteAllBytes(P("tiny_gray.png"), ImageEncoder.EncodePng(Pixels(5 * 2), 5, 2, 1));
                break;
            case "jpeg":
                File.WriteAllBytes(P("tiny_rgb.jpg"), ImageEncoder.EncodeJpeg(Pixels(8 * 8 * 3), 8, 8, 3, 75));
                File.WriteAllBytes(P("tiny_gray.jpg"), ImageEncoder.EncodeJpeg(Pixels(9 * 3), 9, 3, 1, 75));
                break;
            case "npz":
                NpzSeeds(dir);
                break;
            case "hfconfig":
                break; // fixture only (hf_vit/config.json)
        }
    }

    /// <summary>
    /// Small .npz seeds instead of the 208 kB google_vit.npz fixture (AFL's speed falls with input size: ~340 exec/s with
    /// it): the fixture's four smallest entries (numpy-written headers, 168–320 bytes each) stored and deflated, plus
    /// hand-written arrays covering the other dtypes, byte orders, fortran_order, 0-d and empty shapes, header versions
    /// 2.0 and 3.0.
    /// </summary>
    private static void NpzSeeds(string dir)
    {
        string fixture = Path.Combine(FuzzTargets.FixturesDir, "pretrained", "google_vit.npz");
        if (File.Exists(fixture))
        {
            using var src = ZipFile.OpenRead(fixture);
            var small = src.Entries.Where(e => e.Length <= 320).OrderBy(e => e.Length).ThenBy(e => e.FullName, StringComparer.Ordinal).Take(4)
                .Select(e => { using var s = e.Open(); using var ms = new MemoryStream(); s.CopyTo(ms); return (e.FullName, ms.ToArray()); }).ToList();
            WriteZip(Path.Combine(dir, "google_vit_small.npz"), small, CompressionLevel.NoCompression);
            WriteZip(Path.Combine(dir, "google_vit_small_compressed.npz"), small, CompressionLevel.Optimal);
        }
        var arrays = new List<(string, byte[])>
        {
            ("half.npy", NpyBytes("<f2", "(3,)", false, [0x00, 0x3C, 0x00, 0xC0, 0x00, 0x7C])),
            ("double_be_fortran.npy", NpyBytes(">f8", "(2, 2)", true, Enumerable.Range(0, 4).SelectMany(i => BitConverter.GetBytes(BitConverter.DoubleToInt64Bits(i + 0.5)).Reverse()).ToArray())),
            ("int64_scalar.npy", NpyBytes("<i8", "()", false, BitConverter.GetBytes(-7L))),
            ("uint8_empty.npy", NpyBytes("|u1", "(0, 3)", false, [])),
            ("bool.npy", NpyBytes("|b1", "(2,)", false, [1, 0])),
            ("int16_v2.npy", NpyBytes("<i2", "(2,)", false, [1, 0, 0xFF, 0xFF], version: 2)),
            ("uint32_v3.npy", NpyBytes(">u4", "(1,)", false, [0, 0, 1, 0], version: 3)),
        };
        WriteZip(Path.Combine(dir, "dtypes.npz"), arrays, CompressionLevel.NoCompression);
        WriteZip(Path.Combine(dir, "dtypes_compressed.npz"), arrays, CompressionLevel.Optimal);
    }

    /// <summary>A .npy entry as numpy writes it: magic, version, header length, the header dict padded to 64 bytes, data.</summary>
    private static byte[] NpyBytes(string descr, string shape, bool fortran, byte[] data, int version = 1)
    {
        int prefix = version == 1 ? 10 : 12;
        string dict = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': {shape}, }}";
        int total = (prefix + dict.Length + 1 + 63) / 64 * 64;
        string header = dict + new string(' ', total - prefix - dict.Length - 1) + "\n";
        using var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)version, 0]);
        if (version == 1) ms.Write(BitConverter.GetBytes((ushort)header.Length));
        else ms.Write(BitConverter.GetBytes((uint)header.Length));
        ms.Write(System.Text.Encoding.Latin1.GetBytes(header));
        ms.Write(data);
        return ms.ToArray();
    }

    private static void WriteZip(string path, IEnumerable<(string Name, byte[] Bytes)> entries, CompressionLevel level)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (name, bytes) in entries)
        {
            using var s = zip.CreateEntry(name, level).Open();
            s.Write(bytes);
        }
    }

    private static byte[] Pixels(int n) => Enumerable.Range(0, n).Select(i => (byte)(i * 37)).ToArray();

    private static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Optimal)) gz.Write(data);
        return ms.ToArray();
    }
}
