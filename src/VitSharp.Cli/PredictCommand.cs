using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;
using VitSharp.Data;
using VitSharp.Inspection;
using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit predict CHECKPOINT IMAGE…</c>: classifies PNG/JPEG images with a trained checkpoint and prints the top-k classes;
/// with <c>--attention OUT.png</c> it also draws each image's attention rollout as a heat map over it.
/// </summary>
public static class PredictCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>One image's top classes, most probable first.</summary>
    public sealed record Prediction(string Image, IReadOnlyList<(int Index, string Class, float Probability)> Top);

    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint written by vit train or vit import, or pretrained weights vit import reads (.pth, .safetensors, .npz, a Hugging Face folder) whose architecture they reveal" };
        var images = new Argument<string[]>("IMAGE") { Description = "PNG or JPEG files", Arity = ArgumentArity.OneOrMore };
        var top = new Option<int>("--top", "-k") { Description = "Show the K most probable classes (capped at the class count)", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with every image's top classes instead of tables" };
        var attention = new Option<string?>("--attention") { Description = "Also write each image's attention rollout as a heat map over it to this PNG (several images: OUT-1.png, OUT-2.png, …)" };
        var cmd = new Command("predict", "Classify images with a trained checkpoint: the top classes and their probabilities")
        {
            checkpoint, images, top, json, attention,
        };
        cmd.SetAction(pr =>
        {
            int k = pr.GetValue(top);
            if (k < 1) throw new ArgumentException($"--top must be ≥ 1, got {k}");
            var ckpt = VitSharp.Import.WeightImporter.LoadCheckpoint(pr.GetValue(checkpoint)!);
            var paths = pr.GetValue(images)!;
            string? outPng = pr.GetValue(attention);
            if (outPng is not null && InspectedModel(ckpt.Model) is null)
                throw new ArgumentException($"--attention needs a ViT-family model; {ckpt.Path} holds a {ckpt.Info.Model.Constructor}");
            var predictions = Predict(ckpt, paths, k);
            var maps = outPng is null ? null : WriteAttentionMaps(ckpt, paths, outPng);
            if (pr.GetValue(json)) WriteJson(ctx.Out, ckpt.Path, predictions, maps);
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
    /// Preprocesses each image as training did (decode to the checkpoint's channels, bilinear resize to the model's
    /// input size, /255, the stored normalisation), runs the model in eval mode without gradients and returns the
    /// top <paramref name="k"/> classes (k capped at the class count) by softmax probability.
    /// </summary>
    public static IReadOnlyList<Prediction> Predict(LoadedCheckpoint ckpt, IReadOnlyList<string> paths, int k)
    {
        var info = DataInfo.FromJson(ckpt.Info.Data);
        var (c, h, w) = InputShape(ckpt);
        int classes = info.ClassNames.Count;
        k = Math.Min(k, classes);
        int size = c * h * w;

        // Decode every image first, so that a bad file is reported before any work is done.
        var inputs = new float[paths.Count][];
        for (int n = 0; n < paths.Count; n++) inputs[n] = Preprocess(ImageDecoder.Decode(paths[n], c), info, c, h, w);

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

    /// <summary>The model's input channels, height and width (a ViT's configuration, else the data set's).</summary>
    private static (int C, int H, int W) InputShape(LoadedCheckpoint ckpt)
    {
        var info = DataInfo.FromJson(ckpt.Info.Data);
        var model = ckpt.Model is DistillWrapper dw ? dw.Student : ckpt.Model;
        return model is IImageModel im ? (info.Channels, im.InputHeight ?? info.Height, im.InputWidth ?? info.Width) : (info.Channels, info.Height, info.Width);
    }

    /// <summary>The patch-token model of a ViT-family checkpoint model (a ViT, a distillation wrapper's student, DeiT's distilled model), or null.</summary>
    private static IPatchTokenModel? InspectedModel(VitSharp.NN.Module model) => (model as DistillWrapper)?.Student ?? model as IPatchTokenModel;

    /// <summary>Training's preprocessing of one decoded image (already in <paramref name="c"/> channels): bilinear resize, /255, normalisation; C×H×W floats.</summary>
    private static float[] Preprocess(DecodedImage decoded, DataInfo info, int c, int h, int w)
    {
        if (info.Preprocessing is { } prep) return prep.Apply(decoded);   // an imported model's own recipe (resize, crop, mean/std)
        int size = c * h * w;
        var img = ImageOps.Resize(decoded, w, h);
        var chw = new byte[size];
        ImageOps.HwcToChw(img.Pixels, w, h, c, chw);
        var x = new float[size];
        for (int i = 0; i < size; i++) x[i] = chw[i] / 255f;
        info.Normalize().Apply(x, c, h, w, Random.Shared);
        return x;
    }

    /// <summary>
    /// For each image: the attention rollout of the checkpoint's ViT (class-token row, patches; see
    /// <see cref="AttentionRollout"/>) on the preprocessed image, drawn over the image itself at its own size or an
    /// enlarged one (<see cref="AttentionHeatmap.OutputSize"/>) and written as PNG. One image goes to
    /// <paramref name="outPng"/>; several to OUT-1.png, OUT-2.png, … Returns the paths written.
    /// </summary>
    public static IReadOnlyList<string> WriteAttentionMaps(LoadedCheckpoint ckpt, IReadOnlyList<string> paths, string outPng)
    {
        var inspected = InspectedModel(ckpt.Model) ?? throw new ArgumentException($"attention maps need a ViT-family model; {ckpt.Path} holds a {ckpt.Info.Model.Constructor}");
        var vit = (VitSharp.NN.Module)inspected;
        var info = DataInfo.FromJson(ckpt.Info.Data);
        var (c, h, w) = InputShape(ckpt);
        var (gh, gw) = inspected.PatchGrid;
        string ext = Path.GetExtension(outPng) is { Length: > 0 } e ? e : ".png";
        string stem = Path.Combine(Path.GetDirectoryName(outPng) ?? "", Path.GetFileNameWithoutExtension(outPng));
        if (Path.GetDirectoryName(Path.GetFullPath(outPng)) is { } dir) Directory.CreateDirectory(dir);
        vit.Eval();
        var written = new List<string>(paths.Count);
        for (int n = 0; n < paths.Count; n++)
        {
            var original = ImageDecoder.Decode(paths[n]);
            var x = Preprocess(ImageDecoder.ConvertChannels(original, c), info, c, h, w);
            Tensor map;
            using (var scope = TensorScope.Begin()) map = AttentionRollout.ForModel(vit, new Tensor(x, 1, c, h, w));
            string target = paths.Count == 1 ? outPng : $"{stem}-{n + 1}{ext}";
            AttentionHeatmap.SavePng(target, original, map.Data, gh, gw);
            written.Add(target);
        }
        return written;
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

    private static void WriteJson(TextWriter o, string checkpoint, IReadOnlyList<Prediction> predictions, IReadOnlyList<string>? maps)
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
                    ["index"] = t.Index, ["class"] = t.Class, ["probability"] = Math.Round((double)t.Probability, 6),
                }).ToArray()),
            };
            if (maps is not null) item["attention"] = maps[i];
            arr.Add(item);
        }
        o.WriteLine(new JsonObject { ["checkpoint"] = checkpoint, ["predictions"] = arr }.ToJsonString());
    }
}
