using VitSharp.Data;

namespace VitSharp.Tests.Data;

public class ImageNetClassesTests
{
    private static IReadOnlyList<string> Names => ImageNetClasses.Names;

    [Fact]
    public void HasTheThousandClassesInTorchvisionsOrder()
    {
        Assert.Equal(1000, Names.Count);
        Assert.Equal("tench", Names[0]);
        Assert.Equal("goldfish", Names[1]);
        Assert.Equal("great white shark", Names[2]);
        Assert.Equal("hammerhead", Names[4]);
        Assert.Equal("tabby", Names[281]);
        Assert.Equal("tiger cat", Names[282]);
        Assert.Equal("laptop", Names[620]);
        Assert.Equal("toilet tissue", Names[999]);
    }

    [Fact]
    public void TorchvisionTellsTheTwoCranesAndTheTwoMaillotsApart()
    {
        // pytorch/hub's imagenet_classes.txt repeats "crane" (134 the bird, 517 the machine) and "maillot" (638, 639);
        // torchvision's _IMAGENET_CATEGORIES renames 134 and 639, so its 1000 names are all distinct.
        Assert.Equal("crane bird", Names[134]);
        Assert.Equal("crane", Names[517]);
        Assert.Equal("maillot", Names[638]);
        Assert.Equal("maillot tank suit", Names[639]);
        Assert.Equal(1000, Names.Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public void NamesAreTrimmedAndNonEmpty()
    {
        Assert.All(Names, n =>
        {
            Assert.False(string.IsNullOrWhiteSpace(n));
            Assert.Equal(n.Trim(), n);
        });
    }

    [Fact]
    public void TheListIsSharedAndReadOnly()
    {
        Assert.Same(Names, ImageNetClasses.Names);
        Assert.Same(Names, ClassNames.Resolve("imagenet"));
        Assert.Throws<NotSupportedException>(() => ((IList<string>)Names)[0] = "x");
    }
}
