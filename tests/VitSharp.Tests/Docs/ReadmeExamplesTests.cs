using VitSharp.Data;
using VitSharp.Import;
using VitSharp.Inference;
using VitSharp.Models;
using VitSharp.Training;
using VitSharp.Tests.Data;

namespace VitSharp.Tests.Docs;

/// <summary>The README's C# quick start, run as written (on the fixtures' small weights instead of a real download).</summary>
public sealed class ReadmeExamplesTests
{
    private static string P(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    [Fact]
    public void CSharpQuickStart_BuildsAViT()
    {
        var vit = new ViT(new ViTConfig
        {
            ImageHeight = 28, ImageWidth = 28, PatchHeight = 4, PatchWidth = 4, Channels = 1,
            NumClasses = 10, Dim = 96, Depth = 6, Heads = 3, DimHead = 32, MlpDim = 192,
        });
        using (VitSharp.Autograd.NoGrad()) Assert.Equal("Tensor[2, 10]", vit.Forward(Tensor.Zeros(2, 1, 28, 28)).ToString());
    }

    [Fact]
    public void CSharpQuickStart_FitsOnAnImageFolderAndClassifiesAFile()
    {
        // The README's code on a folder the test writes (two classes of grey stripes) and one epoch instead of five.
        using var dir = new TempDir("readme");
        var rng = new Random(1);
        foreach (var (cls, vertical) in new[] { ("horizontal", false), ("vertical", true) })
        {
            Directory.CreateDirectory(dir.File($"photos/train/{cls}"));
            for (int i = 0; i < 16; i++)
            {
                var px = new byte[28 * 28];
                for (int y = 0; y < 28; y++)
                    for (int x = 0; x < 28; x++)
                        px[y * 28 + x] = (byte)((((vertical ? x : y) / 2) % 2 == 0 ? 200 : 40) + rng.Next(0, 30));
                File.WriteAllBytes(dir.File($"photos/train/{cls}/{i}.png"), PngWriter.Encode(px, 28, 28, colorType: 0));
            }
        }
        File.Copy(dir.File("photos/train/vertical/0.png"), dir.File("shirt.png"));

        var vit = new ViT(new ViTConfig { ImageHeight = 28, ImageWidth = 28, PatchHeight = 4, PatchWidth = 4, Channels = 1,
            NumClasses = 2, Dim = 96, Depth = 6, Heads = 3, DimHead = 32, MlpDim = 192 });   // vit-pytorch's ViT(...)
        var train = new ImageFolderDataset(dir.File("photos/train"), size: 28, channels: 1);   // one sub-folder per class
        TrainResult run = Trainer.Fit(vit, train, test: null, new FitOptions { Epochs = 1, OutDir = dir.File("runs/mine") });

        var classifier = ImageClassifier.Load(run.CheckpointPath!);   // also a .pth, .npz or Hugging Face folder
        ImagePrediction p = classifier.Predict(dir.File("shirt.png"), topK: 3);
        Assert.Equal(2, p.Top.Count);   // topK is capped at the class count
        Assert.Contains(p.Best.Name, new[] { "horizontal", "vertical" });
        Assert.InRange(p.Best.Probability, 0.5f, 1f);
    }

    [Fact]
    public void CSharpQuickStart_ImportsClassifiesAndSaves()
    {
        using var dir = new TempDir("readme");
        ImportedModel m = WeightImporter.Import(P("tv_vit.pth"), new ImportOptions
        {
            ModelArgs = new Dictionary<string, string> { ["num_heads"] = "3" },   // the fixture's width (48) has no conventional head count
        });
        float[] x = m.Data.Preprocessing!.Load(P("photo.jpg"));
        Assert.Equal(3 * 32 * 32, x.Length);
        using (VitSharp.Autograd.NoGrad())
        {
            var probs = F.Softmax(m.Model.Forward(new Tensor(x, 1, 3, 32, 32)), -1);
            int best = Evaluator.ArgMax(probs)[0];
            Assert.InRange(best, 0, 9);
            Assert.Equal(best.ToString(System.Globalization.CultureInfo.InvariantCulture), m.Data.ClassNames[best]);
        }
        m.Save(dir.File("tv.safetensors"));
        Assert.Equal(WeightFormat.VitSharpCheckpoint, WeightImporter.Detect(dir.File("tv.safetensors")));
    }
}
