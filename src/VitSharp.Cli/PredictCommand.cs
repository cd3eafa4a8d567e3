using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;
using VitSharp.Data;
using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Cli;

/// <summary><c>vit predict CHECKPOINT IMAGE…</c>: classifies PNG/JPEG images with a trained checkpoint and prints the top-k classes.</summary>
public static class PredictCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>One image's top classes, most probable first.</summary>
    public sealed record Prediction(string Image, IReadOnlyList<(int Index, string Class, float Probability)> Top);

    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint written by vit train" };
        var images = new Argument<string[]>("IMAGE") { Description = "PNG or JPEG files", Arity = ArgumentArity.OneOrMore };
        var top = new Option<int>("--top", "-k") { Description = "Show the K most probable classes (capped at the class count)", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with every image's top classes instead of tables" };
        var cmd = new Command("predict", "Classify images with a trained checkpoint: the top classes and their probabilities")
        {
            checkpoint, images, top, json,
        };
        cmd.SetAction(pr =>
        {
            int k = pr.GetValue(top);
            if (k < 1) throw new ArgumentException($"--top must be ≥ 1, got {k}");
            var ckpt = Checkpoint.Load(pr.GetValue(checkpoint)!);
            var predictions = Predict(ckpt, pr.GetValue(images)!, k);
            if (pr.GetValue(json)) WriteJson(ctx.Out, ckpt.Path, predictions);
            else WriteTables(ctx, predictions);
            return CliApp.ExitOk;
        });
        return cmd;
    }

    /// <summary>
    /// Preprocesses each image as training did (decode to the checkpoint's channels, bilinear resize to the model's
    /// input size, /255, the stored normalisation), runs the model in eval mode without gradients and returns the
    /// top <paramref name="k"/> classes (k capped at the class count) by softmax probability.
    /// </summary>
    public static IReadOnlyList<Prediction> Predict(LoadedCheckpoint ckpt, IReadOnlyList<string> paths, int k)
    {
        var info = DataInfo.FromJson(ckpt.Info.Data);
        int h = info.Height, w = info.Width, c = info.Channels;
        if (ckpt.Model is IImageModel im) { h = im.InputHeight; w = im.InputWidth; }
        int classes = info.ClassNames.Count;
        k = Math.Min(k, classes);
        var normalize = info.Normalize();
        int size = c * h * w;

        // Decode every image first, so that a bad file is reported before any work is done.
        var inputs = new float[paths.Count][];
        for (int n = 0; n < paths.Count; n++)
        {
            var img = ImageOps.Resize(ImageDecoder.Decode(paths[n], c), w, h);
            var chw = new byte[size];
            ImageOps.HwcToChw(img.Pixels, w, h, c, chw);
            var x = new float[size];
            for (int i = 0; i < size; i++) x[i] = chw[i] / 255f;
            normalize.Apply(x, c, h, w, Random.Shared);
            inputs[n] = x;
        }

        var model = ckpt.Model;
        model.Eval();
        var result = new List<Prediction>(paths.Count);
        const int chunk = 64;
        using var noGrad = Autograd.NoGrad();
        for (int start = 0; start < paths.Count; start += chunk)
        {
            int b = Math.Min(chunk, paths.Count - start);
            var batch = new Tensor(b, c, h, w);
            for (int i = 0; i < b; i++) inputs[start + i].CopyTo(batch.Data.AsSpan(i * size, size));
            var probs = F.Softmax(model.Forward(batch), -1);
            for (int i = 0; i < b; i++)
            {
                var row = probs.Data.AsSpan(i * classes, classes).ToArray();
                var best = Enumerable.Range(0, classes).OrderByDescending(j => row[j]).ThenBy(j => j).Take(k)
                    .Select(j => (j, info.ClassNames[j], row[j])).ToArray();
                result.Add(new Prediction(paths[start + i], best));
            }
        }
        return result;
    }

    private static void WriteTables(CliContext ctx, IReadOnlyList<Prediction> predictions)
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

    private static void WriteJson(TextWriter o, string checkpoint, IReadOnlyList<Prediction> predictions)
    {
        var arr = new JsonArray();
        foreach (var p in predictions)
            arr.Add(new JsonObject
            {
                ["image"] = p.Image,
                ["top"] = new JsonArray(p.Top.Select(t => (JsonNode?)new JsonObject
                {
                    ["index"] = t.Index, ["class"] = t.Class, ["probability"] = Math.Round((double)t.Probability, 6),
                }).ToArray()),
            });
        o.WriteLine(new JsonObject { ["checkpoint"] = checkpoint, ["predictions"] = arr }.ToJsonString());
    }
}
