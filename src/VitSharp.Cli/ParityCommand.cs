using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using VitSharp.Parity;

namespace VitSharp.Cli;

/// <summary><c>vit parity PREFIX</c>: compares a model with a PyTorch fixture (PREFIX.json, .weights.safetensors, .io.safetensors).</summary>
public static class ParityCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var prefix = new Argument<string>("PREFIX")
        {
            Description = "Fixture path without extension, e.g. ../shared/fixtures/vit (reads PREFIX.json, PREFIX.weights.safetensors, PREFIX.io.safetensors)",
        };
        var failuresOnly = new Option<bool>("--failures-only") { Description = "List only the rows out of tolerance" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON instead of a table" };
        var cmd = new Command("parity", "Check a model against a PyTorch fixture: logits, loss, every gradient and one AdamW step")
        {
            prefix, failuresOnly, json,
        };
        cmd.SetAction(pr =>
        {
            var report = ParityRunner.Run(pr.GetValue(prefix)!);
            if (pr.GetValue(json)) WriteJson(ctx.Out, report);
            else WriteTable(ctx, report, pr.GetValue(failuresOnly));
            return report.Passed ? CliApp.ExitOk : CliApp.ExitFailed;
        });
        return cmd;
    }

    private static string Num(double x) => double.IsNaN(x) ? "n/a" : x.ToString("0.000e+00", CultureInfo.InvariantCulture);

    /// <summary>The final verdict line.</summary>
    public static string Verdict(ParityReport r)
    {
        int failed = r.Rows.Count(x => !x.Passed);
        if (r.Rows.Count == 0) return "FAIL: nothing was compared";
        return failed == 0 ? $"PASS: {r.Rows.Count}/{r.Rows.Count} within tolerance" : $"FAIL: {failed} of {r.Rows.Count} out of tolerance";
    }

    private static void WriteTable(CliContext ctx, ParityReport r, bool failuresOnly)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"{Markup.Escape(r.Constructor)} vs {Markup.Escape(r.Prefix)}")
            .AddColumn("Name")
            .AddColumn(new TableColumn("Max abs error").RightAligned())
            .AddColumn(new TableColumn("Relative error").RightAligned())
            .AddColumn(new TableColumn("Tolerance").RightAligned())
            .AddColumn("Result")
            .AddColumn("Note");
        foreach (var row in r.Rows.Where(x => !failuresOnly || !x.Passed))
            table.AddRow(
                Markup.Escape(row.Name), Num(row.MaxAbsError), Num(row.RelativeError), Num(row.Tolerance),
                row.Passed ? "[green]ok[/]" : "[red bold]FAIL[/]",
                Markup.Escape(row.Note ?? ""));
        ctx.Console.Write(table);
        ctx.Out.WriteLine("Tolerances: logits/loss absolute or relative; gradients relative to the reference's max |value|; AdamW step absolute.");
        ctx.Out.WriteLine(Verdict(r));
    }

    private static void WriteJson(TextWriter o, ParityReport r)
    {
        static JsonNode? D(double x) => double.IsNaN(x) || double.IsInfinity(x) ? null : JsonValue.Create(x);
        var rows = new JsonArray();
        foreach (var row in r.Rows)
            rows.Add(new JsonObject
            {
                ["name"] = row.Name, ["max_abs_error"] = D(row.MaxAbsError), ["relative_error"] = D(row.RelativeError),
                ["tolerance"] = row.Tolerance, ["passed"] = row.Passed, ["note"] = row.Note,
            });
        var root = new JsonObject
        {
            ["prefix"] = r.Prefix, ["constructor"] = r.Constructor, ["passed"] = r.Passed,
            ["total"] = r.Rows.Count, ["failed"] = r.Rows.Count(x => !x.Passed), ["verdict"] = Verdict(r), ["rows"] = rows,
        };
        o.WriteLine(root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
