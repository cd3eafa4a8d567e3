using System.Reflection;

namespace VitSharp.Data;

/// <summary>
/// The 1,000 ImageNet-1k (ILSVRC-2012) class names, index = class id, in the order every ImageNet classifier's
/// outputs use (the sorted WordNet ids n01440764 … n15075141).
/// </summary>
/// <remarks>
/// The names are torchvision's, <c>torchvision.models._meta._IMAGENET_CATEGORIES</c> (the <c>categories</c> of
/// every torchvision ImageNet weight since 0.13; embedded from <c>Data/imagenet_classes.txt</c>): "tench",
/// "goldfish", "great white shark", … "toilet tissue". They are the short names of pytorch/hub's
/// <c>imagenet_classes.txt</c> except that its two repeated names are told apart — class 134 (the bird) is
/// "crane bird" where class 517 (the machine) stays "crane", and class 639 is "maillot tank suit" after 638
/// "maillot" — so all 1,000 names are distinct.
/// </remarks>
public static class ImageNetClasses
{
    /// <summary>The manifest name of the embedded list.</summary>
    public const string ResourceName = "VitSharp.Data.imagenet_classes.txt";

    private static readonly Lazy<IReadOnlyList<string>> _names = new(Read);

    /// <summary>The 1,000 names, index = class id.</summary>
    public static IReadOnlyList<string> Names => _names.Value;

    private static IReadOnlyList<string> Read()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"embedded resource {ResourceName} is missing from {Assembly.GetExecutingAssembly().GetName().Name}");
        using var reader = new StreamReader(stream);
        var names = ClassNames.ParseLines(reader.ReadToEnd(), ResourceName);
        if (names.Count != 1000) throw new InvalidOperationException($"{ResourceName} holds {names.Count} names, not 1000");
        return names;
    }
}
