using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Parity;
using VitSharp.Tests.Data;

namespace VitSharp.Tests.Models;

/// <summary>
/// vit-pytorch's ViT with pool 'mean' keeps a class token of shape [0, dim] and still concatenates it; PyTorch then gives
/// it an empty gradient [0, dim]. The tape and <c>vit parity</c> do the same.
/// </summary>
public class ZeroElementParameterTests
{
    private static ViTConfig MeanPooled() => new()
    {
        ImageHeight = 8, ImageWidth = 8, PatchHeight = 4, PatchWidth = 4, NumClasses = 3, Dim = 8, Depth = 1, Heads = 2,
        DimHead = 4, MlpDim = 16, Pool = "mean",
    };

    [Fact]
    public void TheEmptyClassTokenGetsAnEmptyGradient()
    {
        Init.Seed(2);
        var model = new ViT(MeanPooled());
        F.CrossEntropy(model.Forward(TestData.Uniform(1, -1, 1, 2, 3, 8, 8)), [0, 2]).Backward();
        Assert.NotNull(model.ClsToken.Grad);
        Assert.Equal(new[] { 0, 8 }, model.ClsToken.Grad!.Shape);
        Assert.All(model.NamedParameters(), p => Assert.True(p.Parameter.Grad is not null, $"no gradient reached {p.Name}"));
    }

    [Fact]
    public void ParityComparesTheEmptyGradientAsAnyOther()
    {
        using var dir = new TempDir("zero-element");
        string prefix = dir.File("vit_mean");
        Init.Seed(4);
        var model = new ViT(MeanPooled());
        File.WriteAllText(prefix + ".json", new ModelSpec(ViTConfig.Constructor, model.Config.ToKwargs()).ToJson().ToJsonString());
        Weights.Save(prefix + ".weights.safetensors", model.StateDict());
        var input = TestData.Uniform(3, -1, 1, 2, 3, 8, 8);
        int[] labels = [1, 0];
        model.Eval();
        var logits = model.Forward(input);
        var loss = F.CrossEntropy(logits, labels);
        loss.Backward();
        var entries = new List<SafeTensorsWriter.Entry>
        {
            SafeTensorsWriter.F32("input", input.Shape, input.Data),
            SafeTensorsWriter.I64("labels", [2], [1L, 0L]),
            SafeTensorsWriter.F32("logits", logits.Shape, logits.Data),
            SafeTensorsWriter.F32("loss", [1], loss.Data),
        };
        foreach (var (name, p) in model.NamedParameters()) entries.Add(SafeTensorsWriter.F32("grad." + name, p.Shape, p.Grad!.Data));
        SafeTensorsWriter.Save(prefix + ".io.safetensors", entries);

        var report = ParityRunner.Run(prefix);
        var row = Assert.Single(report.Rows, r => r.Name == "grad.cls_token");
        Assert.True(row.Passed, row.Note);
        Assert.True(report.Passed, string.Join("\n", report.Rows.Where(r => !r.Passed).Select(r => $"{r.Name} {r.Note}")));
    }
}
