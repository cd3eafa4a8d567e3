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
            case "hfconfig":
            case "npz":
                break; // fixtures only (hf_vit/config.json, google_vit.npz)
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
