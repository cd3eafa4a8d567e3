using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;
using VitSharp.Inference;
using VitSharp.Training;

namespace VitSharp.Cli;

/// <summary><c>vit eval CHECKPOINT</c>: accuracy, per-class accuracy and confusion matrix on the test split the checkpoint was trained with.</summary>
public static class EvalCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint written by vit train (e.g. runs/vit-fmnist/checkpoint.safetensors)" };
        var data = new Option<string?>("--data") { Description = "Data folder (default: the one the checkpoint was trained with)" };
        var limit = new Option<int?>("--limit") { Description = "Evaluate only the first N test images" };
        var batchSize = new Option<int>("--batch-size", "-b") { Description = "Images per forward pass", DefaultValueFactory = _ => 256 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (accuracy, per_class, confusion, count, …) instead of tables" };
        var allowNonFinite = new Option<bool>("--allow-nonfinite") { Description = "Load weights holding NaN or ±∞ with a warning instead of refusing them" };
        var precision = PrecisionOption.Create();
        var cmd = new Command("eval", "Evaluate a checkpoint on its data set's test split: accuracy, per-class accuracy, confusion matrix")
        {
            checkpoint, data, limit, batchSize, json, allowNonFinite, precision,
        };
        cmd.SetAction(pr =>
        {
            int? n = pr.GetValue(limit);
            if (n is < 1) throw new ArgumentException($"--limit must be ≥ 1, got {n}");
            int bs = pr.GetValue(batchSize);
            if (bs < 1) throw new ArgumentException($"--batch-size must be ≥ 1, got {bs}");
            string path = pr.GetValue(checkpoint)!;
            var prec = PrecisionOption.Parse(pr.GetValue(precision));
            var ckpt = VitSharp.Import.WeightImporter.LoadCheckpoint(path, new VitSharp.Import.ImportOptions
            {
                AllowNonFinite = pr.GetValue(allowNonFinite), Warn = m => ctx.Err.WriteLine("vit: warning: " + m),
            });
            ckpt.Model.UsePrecision(prec);
            var info = DataInfo.FromJson(ckpt.Info.Data, path);
            var trained = ckpt.Info.Training["options"] is JsonObject o ? TrainOptions.FromJson(o) : null;
            string? dir = pr.GetValue(data) ?? trained?.DataDir;
            var test = DataSets.Limit(DataSets.LoadTest(info, dir, trained?.Seed ?? 0), n);
            var result = Evaluator.Evaluate(ckpt.Model, test, info.Normalize(), bs);
            if (result.Count > 0 && (!double.IsFinite(result.Loss) || !double.IsFinite(result.Accuracy)))
                throw new CheckpointException($"{path}: the model's outputs are not finite (loss {result.Loss}); its weights are corrupt, so there is no accuracy to report");
            if (pr.GetValue(json)) { var j = ToJson(path, info, result); j["precision"] = prec.Name(); ctx.Out.WriteLine(j.ToJsonString()); }
            else WriteTables(ctx, path, info, result, prec);
            return CliApp.ExitOk;
        });
        return cmd;
    }

    private static JsonNode? Num(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;

    /// <summary>The JSON report: accuracy (fraction), per_class (name → fraction, null when a class has no images), confusion (rows = true class), count, loss.</summary>
    public static JsonObject ToJson(string path, DataInfo info, EvalResult r)
    {
        var perClass = new JsonObject();
        for (int c = 0; c < r.ClassNames.Count; c++) perClass[r.ClassNames[c]] = Num(r.PerClass[c]);
        var confusion = new JsonArray();
        int k = r.ClassNames.Count;
        for (int i = 0; i < k; i++)
        {
            var row = new JsonArray();
            for (int j = 0; j < k; j++) row.Add(r.Confusion[i, j]);
            confusion.Add(row);
        }
        return new JsonObject
        {
            ["checkpoint"] = path, ["dataset"] = info.Name, ["count"] = r.Count, ["accuracy"] = Num(r.Accuracy), ["loss"] = Num(r.Loss),
            ["classes"] = new JsonArray(r.ClassNames.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()),
            ["per_class"] = perClass, ["confusion"] = confusion,
        };
    }

    private static void WriteTables(CliContext ctx, string path, DataInfo info, EvalResult r, VitSharp.Inference.InferencePrecision precision)
    {
        int k = r.ClassNames.Count;
        var perClass = new Table().Border(TableBorder.Rounded).Title("Per class")
            .AddColumn(new TableColumn("#").RightAligned()).AddColumn("Class")
            .AddColumn(new TableColumn("Images").RightAligned()).AddColumn(new TableColumn("Correct").RightAligned())
            .AddColumn(new TableColumn("Accuracy").RightAligned());
        for (int c = 0; c < k; c++)
        {
            int total = 0;
            for (int p = 0; p < k; p++) total += r.Confusion[c, p];
            perClass.AddRow(c.ToString(Inv), Markup.Escape(r.ClassNames[c]), total.ToString(Inv), r.Confusion[c, c].ToString(Inv), TrainCommand.Pct(r.PerClass[c]));
        }
        ctx.Console.Write(perClass);

        if (k <= 20)
        {
            var confusion = new Table().Border(TableBorder.Rounded).Title("Confusion matrix (rows: true class, columns: predicted class #)")
                .AddColumn("true \\ predicted");
            for (int j = 0; j < k; j++) confusion.AddColumn(new TableColumn(j.ToString(Inv)).RightAligned());
            for (int i = 0; i < k; i++)
            {
                var cells = new List<string> { Markup.Escape($"{i} {r.ClassNames[i]}") };
                for (int j = 0; j < k; j++)
                {
                    int v = r.Confusion[i, j];
                    string s = v.ToString(Inv);
                    cells.Add(i == j ? $"[green]{s}[/]" : v == 0 ? $"[grey]{s}[/]" : s);
                }
                confusion.AddRow(cells.ToArray());
            }
            ctx.Console.Write(confusion);
        }
        else ctx.Out.WriteLine($"(the {k}×{k} confusion matrix is too wide for a table; --json prints it)");

        ctx.Out.WriteLine($"{path}: {info.Name} test split, {r.Count} images, precision {PrecisionOption.Describe(precision)}, loss {r.Loss.ToString("0.0000", Inv)}");
        ctx.Out.WriteLine($"Accuracy: {TrainCommand.Pct(r.Accuracy)}");
    }
}
