using System.CommandLine;
using System.Globalization;
using VitSharp.Export;
using VitSharp.Import;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit export CHECKPOINT OUT.onnx</c>: writes a checkpoint or pretrained weights (anything
/// <see cref="WeightImporter.LoadCheckpoint"/> reads) as an ONNX model through <see cref="OnnxExporter"/>; prints what it
/// wrote and the file's path last. <c>--quantize int8</c> writes the Linear layers dynamically quantized
/// (<see cref="OnnxQuantization"/>).
/// </summary>
public static class ExportCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A VitSharp checkpoint or pretrained weights (.safetensors, .pth/.pt/.bin, .npz, a Hugging Face folder)" };
        var output = new Argument<string>("OUT") { Description = "The ONNX file to write (e.g. model.onnx; replaced if it exists)" };
        var opset = new Option<int>("--opset")
        {
            Description = $"ONNX opset of the graph, {OnnxExportOptions.MinOpset}–{OnnxExportOptions.MaxOpset} (models with LayerNorm need 17)",
            DefaultValueFactory = _ => OnnxExportOptions.DefaultOpset,
        };
        var dynamic = new Option<bool>("--batch-dynamic")
        {
            Description = "Symbolic batch axis: the graph takes any number of images (--batch-dynamic false fixes it to --batch)",
            DefaultValueFactory = _ => true,
            Arity = ArgumentArity.ZeroOrOne,
        };
        var batch = new Option<int?>("--batch", "-b") { Description = "The fixed batch size with --batch-dynamic false (default 1)" };
        var quantize = new Option<string>("--quantize")
        {
            Description = "none (default), int8 (Linear layers dynamically quantized as ONNX Runtime's quantize_dynamic writes them: uint8 activations and int8 weights, one scale per tensor) or int8-per-channel (one weight scale per output channel)",
            DefaultValueFactory = _ => "none",
        };
        var cmd = new Command("export", "Write a model as ONNX (opset 17, dynamic batch, input 'images', output 'logits', class names and preprocessing in the metadata) for ONNX Runtime and other runtimes")
        {
            checkpoint, output, opset, dynamic, batch, quantize,
        };
        cmd.SetAction(pr =>
        {
            string src = pr.GetValue(checkpoint)!, outPath = pr.GetValue(output)!;
            bool isDynamic = pr.GetValue(dynamic);
            int? fixedBatch = pr.GetValue(batch);
            if (isDynamic && fixedBatch is not null) throw new ArgumentException("--batch fixes the batch size: give it with --batch-dynamic false");
            if (fixedBatch is < 1) throw new ArgumentException($"--batch must be ≥ 1, got {fixedBatch}");
            if (Path.GetFullPath(outPath) == Path.GetFullPath(src)) throw new ArgumentException($"OUT {outPath} is the checkpoint itself; write the ONNX file elsewhere");
            var options = new OnnxExportOptions
            {
                Opset = pr.GetValue(opset), DynamicBatch = isDynamic, BatchSize = fixedBatch ?? 1, Quantization = ParseQuantization(pr.GetValue(quantize)!),
            };
            options.Validate();   // before loading the weights
            var ck = WeightImporter.LoadCheckpoint(src);
            var r = OnnxExporter.Export(ck, outPath, options);
            var inv = CultureInfo.InvariantCulture;
            string Shape(IReadOnlyList<long> s) => "[" + string.Join(", ", s.Select(d => d == -1 ? "batch" : d.ToString(inv))) + "]";
            ctx.Out.WriteLine($"Model: {ck.Info.Model.Constructor} from {src}");
            if (options.Quantization != OnnxQuantization.None)
                ctx.Out.WriteLine($"Quantized: {r.OpTypes.GetValueOrDefault("MatMulInteger")} Linear layers dynamically to int8 ({(options.Quantization == OnnxQuantization.DynamicInt8PerChannel ? "weights per output channel" : "weights per tensor")}, activations per tensor at run time)");
            ctx.Out.WriteLine($"Graph: opset {options.Opset}, {r.Nodes} nodes ({string.Join(", ", r.OpTypes.OrderByDescending(k => k.Value).ThenBy(k => k.Key).Select(k => $"{k.Key} {k.Value}"))}), {r.Initializers} initializers");
            ctx.Out.WriteLine($"Input: {options.InputName} {Shape(r.InputShape)} float32; output: {options.OutputName} {Shape(r.OutputShape)}");
            ctx.Out.WriteLine($"Metadata: {string.Join(", ", r.Metadata.Keys)}");
            ctx.Out.WriteLine($"Wrote {(r.Bytes / 1e6).ToString("0.0", inv)} MB:");
            ctx.Out.WriteLine(outPath);
            return CliApp.ExitOk;
        });
        return cmd;
    }

    /// <summary><c>--quantize</c>'s value: none, int8 or int8-per-channel (case-insensitive).</summary>
    internal static OnnxQuantization ParseQuantization(string text) => text.Trim().ToLowerInvariant() switch
    {
        "none" => OnnxQuantization.None,
        "int8" => OnnxQuantization.DynamicInt8,
        "int8-per-channel" => OnnxQuantization.DynamicInt8PerChannel,
        _ => throw new ArgumentException($"--quantize: unknown quantization '{text}': expected none, int8 or int8-per-channel"),
    };
}
