using VitSharp.Data;
using VitSharp.Tests.Data;
using VitSharp.Training;

namespace VitSharp.Tests.Training;

public class DataSetsTests
{
    /// <summary>Writes <paramref name="perClass"/> distinct 6×6 RGB PNGs into DIR/CLASS/ for each class; returns the first pixel byte of each image.</summary>
    internal static List<byte> WriteImages(string dir, string[] classes, int perClass, ref int counter)
    {
        var marks = new List<byte>();
        foreach (var c in classes)
        {
            Directory.CreateDirectory(Path.Combine(dir, c));
            for (int i = 0; i < perClass; i++)
            {
                byte v = (byte)(counter++ * 7 % 256);
                var px = new byte[6 * 6 * 3];
                for (int k = 0; k < px.Length; k++) px[k] = (byte)(v + k % 3);
                ImageEncoder.SavePng(Path.Combine(dir, c, $"img{i:D2}.png"), px, 6, 6, 3);
                marks.Add(v);
            }
        }
        return marks;
    }

    [Fact]
    public void UnknownNameListsTheKnownNames()
    {
        var e = Assert.Throws<DataSetException>(() => DataSets.Load("imagenet-42", null));
        Assert.Contains("imagenet-42", e.Message);
        Assert.All(DataSets.Names, n => Assert.Contains(n, e.Message));
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void NamesAreCaseInsensitiveWithAliases()
    {
        var (train, _, info) = DataSets.Load("FMNIST", FashionMnist.DefaultDirectory);
        Assert.Equal(("fashion-mnist", 60000), (info.Name, train.Count));
        var e = Assert.Throws<DataSetException>(() => DataSets.Load("fashion-mnist", "/nonexistent/fmnist"));
        Assert.Contains("/nonexistent/fmnist", e.Message);
    }

    [Theory]
    [InlineData("mnist")]
    [InlineData("cifar10")]
    [InlineData("cifar100")]
    [InlineData("folder")]
    public void DataSetsWithoutDefaultLocationAskForADirectory(string name)
    {
        var e = Assert.Throws<DataSetException>(() => DataSets.Load(name, null));
        Assert.Contains("--data", e.Message);
    }

    [Trait("Category", "DataSet")]
    [Fact]
    public void FashionMnistLoadsBothSplitsWithItsInfo()
    {
        var (train, test, info) = DataSets.Load("fashion-mnist", null);
        Assert.Equal(60000, train.Count);
        Assert.Equal(10000, test.Count);
        Assert.Equal((1, 28, 28), (info.Channels, info.Height, info.Width));
        Assert.Equal(10, info.ClassNames.Count);
        var back = DataInfo.FromJson(info.ToJson());
        Assert.Equal(info.ClassNames, back.ClassNames);
        Assert.Equal(info.Mean, back.Mean);
        Assert.Equal(info.Std, back.Std);
    }

    [Theory]
    [InlineData("test")]
    [InlineData("val")]
    public void FolderWithTrainAndTestSubfoldersUsesThem(string testName)
    {
        using var dir = new TempDir("folder");
        int counter = 0;
        WriteImages(Path.Combine(dir.Path, "train"), ["cat", "dog"], 4, ref counter);
        WriteImages(Path.Combine(dir.Path, testName), ["cat", "dog"], 2, ref counter);
        var (train, test, info) = DataSets.Load("folder", dir.Path, seed: 0, imageSize: 8, channels: 3);
        Assert.Equal(8, train.Count);
        Assert.Equal(4, test.Count);
        Assert.Equal(["cat", "dog"], train.ClassNames);
        Assert.Equal(["cat", "dog"], info.ClassNames);
        Assert.Equal(("folder", 3, 8, 8), (info.Name, info.Channels, info.Height, info.Width));
        Assert.Equal([0.5f, 0.5f, 0.5f], info.Mean);
        Assert.Equal((3, 8, 8), (train.Channels, train.Height, train.Width));
        Assert.Equal([0, 0, 1, 1], Enumerable.Range(0, test.Count).Select(test.Label));
    }

    [Fact]
    public void FolderWithoutSplitsHoldsOutASeededTenPercent()
    {
        using var dir = new TempDir("folder");
        int counter = 0;
        WriteImages(dir.Path, ["a", "b", "c"], 10, ref counter);
        var (train, test, info) = DataSets.Load("folder", dir.Path, seed: 1, imageSize: 6, channels: 1);
        Assert.Equal(3, test.Count);
        Assert.Equal(27, train.Count);
        Assert.Equal(["a", "b", "c"], info.ClassNames);
        Assert.Equal(1, info.Channels);

        var trainIdx = ((SubsetDataset)train).Indices;
        var testIdx = ((SubsetDataset)test).Indices;
        Assert.Same(((SubsetDataset)train).Source, ((SubsetDataset)test).Source);
        Assert.Empty(trainIdx.Intersect(testIdx));
        Assert.Equal(Enumerable.Range(0, 30), trainIdx.Concat(testIdx).Order());

        // Same seed, same split; another seed, (here) another split.
        var (_, test1, _) = DataSets.Load("folder", dir.Path, seed: 1, imageSize: 6, channels: 1);
        Assert.Equal(testIdx, ((SubsetDataset)test1).Indices);
        var splits = Enumerable.Range(2, 4).Select(s => string.Join(",", ((SubsetDataset)DataSets.Load("folder", dir.Path, s, 6, 1).Test).Indices));
        Assert.Contains(splits, s => s != string.Join(",", testIdx));

        // Hold-out of a tiny folder keeps at least one test image.
        using var tiny = new TempDir("folder");
        counter = 0;
        WriteImages(tiny.Path, ["x", "y"], 2, ref counter);
        var (tinyTrain, tinyTest, _) = DataSets.Load("folder", tiny.Path, 0, 6, 3);
        Assert.Equal((3, 1), (tinyTrain.Count, tinyTest.Count));
    }

    [Fact]
    public void LimitTakesTheFirstSamples()
    {
        var pixels = new byte[10 * 4];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)i;
        var data = new InMemoryDataset(pixels, Enumerable.Range(0, 10).Select(i => i % 3).ToArray(), 1, 2, 2, ["p", "q", "r"]);
        Assert.Same(data, DataSets.Limit(data, null));
        Assert.Same(data, DataSets.Limit(data, 10));
        Assert.Same(data, DataSets.Limit(data, 1000));
        var five = DataSets.Limit(data, 5);
        Assert.Equal(5, five.Count);
        Assert.Equal(data.ClassNames, five.ClassNames);
        var a = new float[4];
        var b = new float[4];
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(data.Label(i), five.Label(i));
            data.ReadPixels(i, a);
            five.ReadPixels(i, b);
            Assert.Equal(a, b);
        }
    }
}
