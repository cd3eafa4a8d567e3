using System.CommandLine;
using System.Globalization;
using VitSharp.Import;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit import SOURCE --out CHECKPOINT</c>: turns pretrained weights (.pth/.pt/.bin, safetensors, Google's .npz, a
/// Hugging Face snapshot folder) into a VitSharp checkpoint with the model's configuration, class names and
/// preprocessing, through <see cref="WeightImporter"/>. Prints what it found and the checkpoint's path last.
/// </summary>
public static class ImportCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var source = new Argument<string>("SOURCE") { Description = "Weights: a .pth/.pt/.bin (torch.save), .safetensors, .npz (Google's ViT releases) or a Hugging Face snapshot folder" };
        var output = new Option<string>("--out", "-o") { Description = "The VitSharp checkpoint to write (.safetensors)", Required = true };
        var model = new Option<string?>("--model", "-m") { Description = "A model preset for what the weights do not say (a ViT's head count) or for models whose keys are not recognised" };
        var set = ModelArgsOption.Create();
        var classes = new Option<string?>("--classes") { Description = "Class names: imagenet (the 1,000 shipped with VitSharp) or a file (one per line, a JSON list or an id2label object)" };
        var cmd = new Command("import", "Bring pretrained weights in from PyTorch, timm, DeiT, Google (.npz) or Hugging Face as a VitSharp checkpoint")
        {
            source, output, model, set, classes,
        };
        cmd.SetAction(pr =>
        {
            string src = pr.GetValue(source)!;
            string outPath = pr.GetValue(output)!;
            if (Path.GetFullPath(outPath) == Path.GetFullPath(src)) throw new ArgumentException($"--out {outPath} is the source itself; write the checkpoint elsewhere");
            var options = new ImportOptions
            {
                Model = pr.GetValue(model), ModelArgs = ModelArgsOption.Parse(pr.GetValue(set)), Classes = pr.GetValue(classes),
            };
            var imported = WeightImporter.Import(src, options);
            imported.Save(outPath);
            Describe(ctx.Out, imported);
            ctx.Out.WriteLine(outPath);
            return CliApp.ExitOk;
        });
        return cmd;
    }

    /// <summary>What was imported, in a few lines.</summary>
    public static void Describe(TextWriter o, ImportedModel m)
    {
        var inv = CultureInfo.InvariantCulture;
        long parameters = m.Model.NamedParameters().Sum(p => (long)p.Parameter.Size);
        o.WriteLine($"Read {m.Source} ({m.Format}{(m.Architecture != WeightArchitecture.Unknown ? $", {m.Architecture}" : "")})");
        o.WriteLine($"Model: {m.Spec.Constructor}({string.Join(", ", m.Spec.Kwargs.Select(kv => $"{kv.Key}={kv.Value?.ToJsonString() ?? "None"}"))})");
        o.WriteLine($"Parameters: {parameters.ToString("N0", inv)}; classes: {m.Data.ClassNames.Count}" +
            (m.Data.ClassNames.Count > 0 ? $" ({string.Join(", ", m.Data.ClassNames.Take(3))}{(m.Data.ClassNames.Count > 3 ? ", …" : "")})" : ""));
        if (m.Data.Preprocessing is { } p) o.WriteLine($"Preprocessing: {p}");
        foreach (var note in m.Notes) o.WriteLine($"Note: {note}");
        o.WriteLine("Checkpoint:");
    }
}
