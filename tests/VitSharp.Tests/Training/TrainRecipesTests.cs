using VitSharp.Training;

namespace VitSharp.Tests.Training;

/// <summary>Named option sets for vit train.</summary>
public class TrainRecipesTests
{
    [Fact]
    public void DefaultRecipeIsTheDefaultOptions() => Assert.Equal(new TrainOptions(), TrainRecipes.Get("default"));

    [Fact]
    public void LongRecipeTrainsLongerIntoItsOwnFolder()
    {
        var o = TrainRecipes.Get("LONG");
        Assert.True(o.Epochs > new TrainOptions().Epochs);
        Assert.NotEqual(new TrainOptions().OutDir, o.OutDir);
        Assert.Equal("vit-fmnist-128", o.Model);   // the wider model
        Assert.NotNull(VitSharp.Models.Presets.Get(o.Model));
        o.Validate();
    }

    [Fact]
    public void UnknownRecipeNamesTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => TrainRecipes.Get("fast"));
        Assert.Contains("default", e.Message);
        Assert.Contains("long", e.Message);
    }
}
