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
    public void CSharpQuickStart_FitsOnOwnImagesAndClassifiesAFile()
    {
        using var dir = new TempDir("readme");
        var vit = new ViT(new ViTConfig
        {
            ImageHeight = 28, ImageWidth = 28, PatchHeight = 4, PatchWidth = 4, Channels = 1,
            NumClasses = 10, Dim = 96, Depth = 6, Heads = 3, DimHead = 32, MlpDim = 192,
        });
        // 32 random images and one epoch instead of the README's data and 5 epochs.
        var rng = new Random(1);
        var pixels = new byte[32 * 28 * 28];
        rng.NextBytes(pixels);
        int[] labels = Enumerable.Range(0, 32).Select(i => i % 10).ToArray();
        string[] classNames = Enumerable.Range(0, 10).Select(i => $"class {i}").ToArray();
        File.WriteAllBytes(dir.File("shirt.png"), PngWriter.Encode(pixels[..(28 * 28)], 28, 28, colorType: 0));

        var train = new InMemoryDataset(pixels, labels, channels: 1, height: 28, width: 28, classNames);
        TrainResult run = Trainer.Fit(vit, train, test: null, new FitOptions { Epochs = 1, OutDir = dir.File("runs/mine") });

        var classifier = ImageClassifier.Load(run.CheckpointPath!);
        ImagePrediction p = classifier.Predict(dir.File("shirt.png"), topK: 3);
        Assert.Equal(3, p.Top.Count);
        Assert.StartsWith("class ", p.Best.Name);
        Assert.InRange(p.Best.Probability, 0.1f, 1f);
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
