using VitSharp.Import;
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
