using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;
using VitSharp.Inference;
using VitSharp.Inspection;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit predict CHECKPOINT IMAGE…</c>: classifies PNG/JPEG images with a trained checkpoint and prints the top-k classes;
/// with <c>--attention OUT.png</c> it also draws each image's attention rollout as a heat map over it.
/// </summary>
public static class PredictCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint written by vit train or vit import, or pretrained weights vit import reads (.pth, .safetensors, .npz, a Hugging Face folder) whose architecture they reveal" };
        var images = new Argument<string[]>("IMAGE") { Description = "PNG or JPEG files", Arity = ArgumentArity.OneOrMore };
        var top = new Option<int>("--top", "-k") { Description = "Show the K most probable classes (capped at the class count)", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with every image's top classes instead of tables" };
        var allowNonFinite = new Option<bool>("--allow-nonfinite") { Description = "Load weights holding NaN or ±∞ with a warning instead of refusing them" };
        var attention = new Option<string?>("--attention") { Description = "Also write each image's attention rollout as a heat map over it to this PNG (several images: OUT-1.png, OUT-2.png, …)" };
        var precision = PrecisionOption.Create();
        var cmd = new Command("predict", "Classify images with a trained checkpoint: the top classes and their probabilities")
        {
            checkpoint, images, top, json, attention, allowNonFinite, precision,
        };
        cmd.SetAction(pr =>
        {
            int k = pr.GetValue(top);
            if (k < 1) throw new ArgumentException($"--top must be ≥ 1, got {k}");
            var p = PrecisionOption.Parse(pr.GetValue(precision));
            var classifier = ImageClassifier.Load(pr.GetValue(checkpoint)!, new VitSharp.Import.ImportOptions
            {
                AllowNonFinite = pr.GetValue(allowNonFinite), Warn = m => ctx.Err.WriteLine("vit: warning: " + m),
            }, p);
            var paths = pr.GetValue(images)!;
            string? outPng = pr.GetValue(attention);
            if (outPng is not null && !classifier.SupportsAttention)
                throw new ArgumentException($"--attention needs a ViT-family model; {classifier.Checkpoint.Path} holds a {classifier.Checkpoint.Info.Model.Constructor}");
            var predictions = classifier.PredictBatch(paths, k);
            var maps = outPng is null ? null : WriteAttentionMaps(classifier, paths, outPng);
            if (pr.GetValue(json)) WriteJson(ctx.Out, classifier.Checkpoint.Path, predictions, maps);
            else
            {
                WriteTables(ctx, predictions);
                if (maps is not null)
                    for (int i = 0; i < paths.Length; i++) ctx.Out.WriteLine($"{paths[i]}: attention map {maps[i]}");
            }
            return CliApp.ExitOk;
        });
        return cmd;
    }

    /// <summary>
    /// For each image: its attention rollout (<see cref="ImageClassifier.AttentionMap"/>) drawn over the image itself at
    /// its own size or an enlarged one (<see cref="AttentionHeatmap.OutputSize"/>) and written as PNG. One image goes to
    /// <paramref name="outPng"/>; several to OUT-1.png, OUT-2.png, … Returns the paths written.
    /// </summary>
    public static IReadOnlyList<string> WriteAttentionMaps(ImageClassifier classifier, IReadOnlyList<string> paths, string outPng)
    {
        string ext = Path.GetExtension(outPng) is { Length: > 0 } e ? e : ".png";
        string stem = Path.Combine(Path.GetDirectoryName(outPng) ?? "", Path.GetFileNameWithoutExtension(outPng));
        if (Path.GetDirectoryName(Path.GetFullPath(outPng)) is { } dir) Directory.CreateDirectory(dir);
        var written = new List<string>(paths.Count);
        for (int n = 0; n < paths.Count; n++)
        {
            string target = paths.Count == 1 ? outPng : $"{stem}-{n + 1}{ext}";
            classifier.AttentionMap(paths[n]).SavePng(target);
            written.Add(target);
        }
        return written;
    }

    private static void WriteTables(CliContext ctx, IReadOnlyList<ImagePrediction> predictions)
    {
        foreach (var p in predictions)
        {
            var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(p.Image))
                .AddColumn(new TableColumn("Rank").RightAligned()).AddColumn("Class")
                .AddColumn(new TableColumn("Probability").RightAligned());
            int rank = 1;
            foreach (var (_, name, prob) in p.Top)
            {
                string pct = (100.0 * prob).ToString("0.00", Inv) + "%";
                table.AddRow(rank.ToString(Inv), rank == 1 ? $"[bold]{Markup.Escape(name)}[/]" : Markup.Escape(name), pct);
                rank++;
            }
            ctx.Console.Write(table);
            var (_, top1, p1) = p.Top[0];
            ctx.Out.WriteLine($"{p.Image}: {top1} ({(100.0 * p1).ToString("0.00", Inv)}%)");
        }
    }

    private static void WriteJson(TextWriter o, string checkpoint, IReadOnlyList<ImagePrediction> predictions, IReadOnlyList<string>? maps)
    {
        var arr = new JsonArray();
        for (int i = 0; i < predictions.Count; i++)
        {
            var p = predictions[i];
            var item = new JsonObject
            {
                ["image"] = p.Image,
                ["top"] = new JsonArray(p.Top.Select(t => (JsonNode?)new JsonObject
                {
                    ["index"] = t.Index, ["class"] = t.Name, ["probability"] = Math.Round((double)t.Probability, 6),
                }).ToArray()),
            };
            if (maps is not null) item["attention"] = maps[i];
            arr.Add(item);
        }
        o.WriteLine(new JsonObject { ["checkpoint"] = checkpoint, ["predictions"] = arr }.ToJsonString());
    }
}
