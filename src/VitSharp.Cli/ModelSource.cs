using VitSharp.Models;

namespace VitSharp.Cli;

/// <summary>
/// <c>--model</c> of <c>vit summary</c> and <c>vit bench</c>: a preset name, or a checkpoint or pretrained weights file
/// (anything <see cref="VitSharp.Import.WeightImporter"/> reads) whose architecture becomes an ad-hoc preset.
/// </summary>
internal static class ModelSource
{
    /// <summary>The preset named <paramref name="nameOrPath"/>, or the architecture of the weights at that path.</summary>
    public static Preset Resolve(string nameOrPath)
    {
        if (!File.Exists(nameOrPath) && !Directory.Exists(nameOrPath)) return Presets.Get(nameOrPath);
        var ck = VitSharp.Import.WeightImporter.LoadCheckpoint(nameOrPath);
        var info = VitSharp.Training.DataInfo.FromJson(ck.Info.Data);
        var (c, size) = ck.Model is IImageModel im ? (im.InputChannels, im.InputHeight ?? info.Height) : (info.Channels, info.Height);
        return new Preset(Path.GetFileName(Path.TrimEndingDirectorySeparator(nameOrPath)), $"{ck.Info.Model.Constructor} from {nameOrPath}", ck.Info.Model, size, c);
    }
}
