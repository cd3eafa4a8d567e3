using VitSharp.Data;

namespace VitSharp.Tests.Data;

public class ClassNamesTests
{
    private static IReadOnlyList<string> LoadText(string text, string file = "classes.txt")
    {
        using var dir = new TempDir("classes");
        string path = dir.File(file);
        File.WriteAllText(path, text);
        return ClassNames.Load(path);
    }

    private static DataSetException Fails(string text, string file = "classes.txt")
    {
        using var dir = new TempDir("classes");
        string path = dir.File(file);
        File.WriteAllText(path, text);
        var e = Assert.Throws<DataSetException>(() => ClassNames.Load(path));
        Assert.Contains(path, e.Message);
        return e;
    }

    [Fact]
    public void ReadsOneNamePerLineTrimmed() =>
        Assert.Equal(["cat", "dog", "great white shark"], LoadText("cat\n  dog \r\ngreat white shark"));

    [Fact]
    public void SkipsTrailingEmptyLines() =>
        Assert.Equal(["a", "b"], LoadText("a\nb\n\n  \n"));

    [Fact]
    public void ReadsAJsonArray() =>
        Assert.Equal(["a", "b c"], LoadText(" [\"a\", \" b c \"]"));

    [Fact]
    public void ReadsAnId2LabelObjectInAnyOrder() =>
        Assert.Equal(["zero", "one", "two"], LoadText("{\"2\": \"two\", \"0\": \"zero\", \"1\": \"one\"}"));

    [Fact]
    public void ReadsTheId2LabelOfAHuggingFaceConfig()
    {
        string config = Path.Combine(TestFixtures.Dir, "pretrained", "hf_vit", "config.json");
        var names = ClassNames.Load(config);
        Assert.Equal(10, names.Count);
        Assert.Equal("airplane", names[0]);
        Assert.Equal("truck", names[9]);
    }

    [Fact]
    public void ResolveReadsAPathAndKnowsImageNet()
    {
        Assert.Same(ImageNetClasses.Names, ClassNames.Resolve("ImageNet"));
        using var dir = new TempDir("classes");
        string path = dir.File("imagenet"); // a file is only read when the spec is not the built-in name
        File.WriteAllText(path, "x\ny\n");
        Assert.Equal(["x", "y"], ClassNames.Resolve(dir.File("imagenet")));
        Assert.Throws<DataSetException>(() => ClassNames.Resolve(dir.File("nope.txt")));
    }

    [Fact]
    public void AMissingFileIsNamed()
    {
        var e = Assert.Throws<DataSetException>(() => ClassNames.Load("/nonexistent/classes.txt"));
        Assert.Contains("/nonexistent/classes.txt", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void AnEmptyFileIsAnError() => Assert.Contains("empty", Fails("\n\n").Message);

    [Fact]
    public void AnEmptyLineInTheMiddleNamesItsLine() => Assert.Contains("line 3", Fails("a\nb\n\nd\n").Message);

    [Fact]
    public void InvalidJsonNamesItsLine() => Assert.Contains("line 3", Fails("[\n\"a\",\n\"b\" \"c\"\n]").Message);

    [Fact]
    public void ANonStringElementIsNamed() => Assert.Contains("element 1", Fails("[\"a\", 2]").Message);

    [Fact]
    public void AnEmptyJsonNameIsNamed() => Assert.Contains("element 0", Fails("[\" \"]").Message);

    [Fact]
    public void AnEmptyJsonArrayIsAnError() => Assert.Contains("no class names", Fails("[]").Message);

    [Fact]
    public void ANonNumericKeyIsNamed() => Assert.Contains("\"cat\"", Fails("{\"0\": \"a\", \"cat\": \"b\"}").Message);

    [Fact]
    public void AGapInTheIdsIsNamed() => Assert.Contains("class id 1 is missing", Fails("{\"0\": \"a\", \"2\": \"b\"}").Message);

    [Fact]
    public void ARepeatedIdIsNamed() => Assert.Contains("class id 0 appears twice", Fails("{\"0\": \"a\", \"00\": \"b\"}").Message);

    [Fact]
    public void ANonStringLabelIsNamed() => Assert.Contains("class 0", Fails("{\"0\": null}").Message);

    [Fact]
    public void AMalformedId2LabelIsNamed() => Assert.Contains("id2label", Fails("{\"id2label\": [\"a\"]}").Message);
}
