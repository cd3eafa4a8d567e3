using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using VitSharp.Inspection;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Cli;

/// <summary><c>vit summary</c>: a model's modules, output shapes and parameter counts, from one forward pass.</summary>
public static class SummaryCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m")
        {
            Description = $"Model preset ({string.Join(", ", Presets.All.Select(p => p.Name))}) or a checkpoint / pretrained weights file",
            DefaultValueFactory = _ => "vit-fmnist",
        };
        var depth = new Option<int?>("--depth", "-d")
        {
            Description = "Show modules down to this nesting depth only (0 = the model alone); parameter totals still count everything",
        };
        var json = new Option<bool>("--json") { Description = "Print the summary as JSON instead of a table" };
        var cmd = new Command("summary", "Build a model preset, run one forward pass on a zero image and list its modules, output shapes and parameters")
        {
            model, depth, json,
        };
        cmd.SetAction(pr =>
        {
            var preset = ModelSource.Resolve(pr.GetValue(model)!);
            var d = pr.GetValue(depth);
            if (d is < 0) throw new ArgumentException($"--depth must be ≥ 0, got {d}");
            var summary = Build(preset);
            if (pr.GetValue(json)) WriteJson(ctx.Out, preset, summary, d);
            else WriteTable(ctx, preset, summary, d);
            return CliApp.ExitOk;
        });
        return cmd;
    }

    /// <summary>Builds the preset and summarises it (<see cref="ModelSummary.Of"/>) on a zero image of batch 1 at its input size.</summary>
    public static ModelSummary Build(Preset preset)
    {
        var model = preset.Build();
        int h = preset.ImageSize, w = preset.ImageSize;
        if (model is IImageModel im) { h = im.InputHeight ?? h; w = im.InputWidth ?? w; }
        return ModelSummary.Of(model, [1, preset.Channels, h, w]);
    }

    /// <summary>Formats a count with thousands separators (86,543,080).</summary>
    public static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    private static string ShapeText(ModelSummaryRow r) =>
        r.OutputShape is null ? "-" : Tensor.ShapeString(r.OutputShape) + (r.Calls > 1 ? $" ×{r.Calls}" : "");

    private static void WriteTable(CliContext ctx, Preset preset, ModelSummary s, int? maxDepth)
    {
        var console = ctx.Console;
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"{Markup.Escape(preset.Name)}: {Markup.Escape(preset.Description)}")
            .AddColumn("Module")
            .AddColumn("Type")
            .AddColumn("Output shape")
            .AddColumn(new TableColumn("Params (own)").RightAligned())
            .AddColumn(new TableColumn("Params (total)").RightAligned());
        int hidden = 0;
        foreach (var r in s.Rows)
        {
            if (maxDepth is int md && r.Depth > md) { hidden++; continue; }
            string indent = new(' ', 2 * Math.Max(0, r.Depth - 1));
            string name = r.Name.Length == 0 ? "(model)" : indent + r.Name;
            table.AddRow(
                Markup.Escape(name),
                Markup.Escape(r.Type),
                Markup.Escape(ShapeText(r)),
                r.OwnParameters == 0 ? "[grey]0[/]" : Count(r.OwnParameters),
                Count(r.TotalParameters));
        }
        console.Write(table);
        var o = ctx.Out;
        if (hidden > 0) o.WriteLine($"({hidden} deeper modules not shown; --depth to change)");
        o.WriteLine($"Input: {Tensor.ShapeString(s.InputShape)} zeros; forward pass (batch 1, no grad, first call incl. JIT): {s.ForwardMilliseconds.ToString("F1", CultureInfo.InvariantCulture)} ms");
        string published = preset.PublishedParameters is long p
            ? $" (published: {Count(p)}{(p == s.TotalParameters ? ", equal" : $", difference {Count(s.TotalParameters - p)}")})"
            : "";
        o.WriteLine($"Total parameters: {Count(s.TotalParameters)}{published}");
    }

    private static void WriteJson(TextWriter o, Preset preset, ModelSummary s, int? maxDepth)
    {
        var modules = new JsonArray();
        foreach (var r in s.Rows.Where(r => maxDepth is not int md || r.Depth <= md))
            modules.Add(new JsonObject
            {
                ["name"] = r.Name,
                ["type"] = r.Type,
                ["output_shape"] = r.OutputShape is null ? null : new JsonArray(r.OutputShape.Select(x => (JsonNode?)x).ToArray()),
                ["calls"] = r.Calls,
                ["own_parameters"] = r.OwnParameters,
                ["total_parameters"] = r.TotalParameters,
            });
        var root = new JsonObject
        {
            ["model"] = preset.Name,
            ["description"] = preset.Description,
            ["input_shape"] = new JsonArray(s.InputShape.Select(x => (JsonNode?)x).ToArray()),
            ["forward_ms"] = Math.Round(s.ForwardMilliseconds, 3),
            ["total_parameters"] = s.TotalParameters,
            ["published_parameters"] = preset.PublishedParameters,
            ["modules"] = modules,
        };
        o.WriteLine(root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
