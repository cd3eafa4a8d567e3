using VitSharp.Inspection;
using VitSharp.Models;
using VitSharp.Tests.Training;

namespace VitSharp.Tests.Inspection;

/// <summary><see cref="ModelSummary.Of"/>: modules, output shapes and parameter counts of one forward pass.</summary>
public class ModelSummaryTests
{
    [Fact]
    public void TotalsEqualTheModelsParameterCountAndOutputShapesAreRecorded()
    {
        var model = new ViT(SyntheticImages.Config());
        model.Train();
        var s = ModelSummary.Of(model, [1, 1, 8, 8]);
        Assert.Equal(model.ParameterCount(), s.TotalParameters);
        Assert.Equal(model.ParameterCount(), s.Rows[0].TotalParameters);
        Assert.Equal(model.ParameterCount(), s.Rows.Sum(r => r.OwnParameters));   // every parameter belongs to one module
        Assert.Equal(("", 0, nameof(ViT)), (s.Rows[0].Name, s.Rows[0].Depth, s.Rows[0].Type));
        Assert.Equal([1, SyntheticImages.Classes.Length], s.Rows[0].OutputShape!);
        Assert.Equal([1, 1, 8, 8], s.InputShape);
        Assert.All(s.Rows.Skip(1), r => Assert.Equal(r.Name.Count(c => c == '.') + 1, r.Depth));
        Assert.True(model.Training, "the model's training mode is restored");
        Assert.Throws<ArgumentException>(() => ModelSummary.Of(model, [1, 0, 8, 8]));
    }
}
