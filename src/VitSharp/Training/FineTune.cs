using System.Text.Json.Nodes;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Training;

/// <summary>
/// Fine-tuning from pretrained weights: the pretrained model's family and weights adapted to a new data set — the
/// classifier replaced when the class count differs, the position embedding resampled when the image size differs —
/// and optionally everything but the classifier frozen.
/// </summary>
public static class FineTune
{
    /// <summary>Key prefixes of the classifier heads of every family (torchvision ViT, timm/DeiT, ResNet, vit-pytorch).</summary>
    public static IReadOnlyList<string> HeadPrefixes { get; } = ["heads.", "head.", "head_dist.", "fc.", "mlp_head."];

    /// <summary>Whether a state_dict key belongs to a classifier head.</summary>
    public static bool IsHeadKey(string key) => HeadPrefixes.Any(p => key.StartsWith(p, StringComparison.Ordinal));

    /// <summary>
    /// The spec of <paramref name="pretrained"/> with its image size and class count set to the data's (input channels
    /// kept: grey data is repeated into the model's channels).
    /// </summary>
    public static ModelSpec AdaptSpec(ModelSpec pretrained, DataInfo info)
    {
        var kwargs = (JsonObject)pretrained.Kwargs.DeepClone();
        foreach (var key in new[] { "image_size", "img_size" })
            if (kwargs.ContainsKey(key))
                kwargs[key] = info.Height == info.Width ? info.Height : new JsonArray(info.Height, info.Width);
        if (kwargs.ContainsKey("num_classes")) kwargs["num_classes"] = info.ClassNames.Count;
        return pretrained with { Kwargs = kwargs };
    }

    /// <summary>
    /// Builds the model of <paramref name="spec"/> (from <see cref="AdaptSpec"/>) and copies <paramref name="pretrained"/>'s
    /// weights into it: tensors of the same shape as they are; a position embedding of another grid resampled (bicubic,
    /// prefix tokens kept); classifier tensors of another shape left freshly initialised. Any other tensor that does not
    /// fit is an error naming it. Returns the model and the keys it did not take from the weights.
    /// </summary>
    public static (Module Model, IReadOnlyList<string> NewKeys) Build(ModelSpec spec, Module pretrained, string source)
    {
        var model = spec.Build();
        var own = model.StateDict();
        var sd = pretrained.StateDict();
        var load = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var fresh = new List<string>();
        var bad = new List<string>();
        foreach (var (key, target) in own)
        {
            if (!sd.TryGetValue(key, out var src))
            {
                if (IsHeadKey(key)) fresh.Add(key); else bad.Add($"{key} (missing from the pretrained weights)");
                continue;
            }
            if (src.SameShape(target)) { load[key] = src; continue; }
            if (IsHeadKey(key)) { fresh.Add(key); continue; }
            if (TryResamplePositions(src, target) is { } resampled) { load[key] = resampled; continue; }
            bad.Add($"{key} (pretrained {Tensor.ShapeString(src.ShapeSpan)}, model {Tensor.ShapeString(target.ShapeSpan)})");
        }
        if (bad.Count > 0) throw new CheckpointException($"{source}: the pretrained weights do not fit the fine-tuned model: {string.Join(", ", bad)}");
        model.LoadStateDict(load, strict: false);
        return (model, fresh);
    }

    /// <summary>
    /// A position embedding [1, P + g², C] resampled to the target's [1, P + g'², C] (square grids, P = 0, 1 or 2 prefix
    /// tokens: the one P for which both grids are square), or null when the tensor is not one.
    /// </summary>
    public static Tensor? TryResamplePositions(Tensor src, Tensor target)
    {
        if (src.Rank != 3 || target.Rank != 3 || src.Dim(0) != 1 || target.Dim(0) != 1 || src.Dim(2) != target.Dim(2)) return null;
        for (int prefix = 0; prefix <= 2; prefix++)
        {
            int a = src.Dim(1) - prefix, b = target.Dim(1) - prefix;
            int ga = (int)Math.Round(Math.Sqrt(Math.Max(a, 0))), gb = (int)Math.Round(Math.Sqrt(Math.Max(b, 0)));
            if (a > 0 && b > 0 && ga * ga == a && gb * gb == b)
                return PosEmbedResample.Resample(src, (ga, ga), (gb, gb), prefix, ResampleMode.Bicubic);
        }
        return null;
    }

    /// <summary>Freezes every parameter except those whose keys are in <paramref name="trainable"/> and the classifier heads'.</summary>
    public static int Freeze(Module model, IEnumerable<string> trainable)
    {
        var keep = new HashSet<string>(trainable, StringComparer.Ordinal);
        int frozen = 0;
        foreach (var (name, p) in model.NamedParameters())
        {
            bool train = keep.Contains(name) || IsHeadKey(name);
            p.RequiresGrad = train;
            if (!train) frozen++;
        }
        return frozen;
    }
}
