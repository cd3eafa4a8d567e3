using System.Globalization;
using System.Reflection;
using Module = VitSharp.NN.Module;
using System.Text.Json.Nodes;
using Google.Protobuf;
using VitSharp.Export.Onnx;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Export;

/// <summary>
/// Writes a VitSharp model as an ONNX file (IR version 8, opset 17 by default) that ONNX Runtime and other runtimes load:
/// input <c>images</c> [batch, channels, height, width], output <c>logits</c> [batch, classes], float32, the batch axis
/// symbolic; weights as initializers under their state_dict names; class names and preprocessing in
/// <c>metadata_props</c>. Standard operators only (MatMul/Gemm, Softmax, LayerNormalization, Erf, Conv,
/// BatchNormalization, Reshape, Transpose, Concat, Gather, Slice, …).
/// </summary>
/// <remarks>
/// The exporter traces the model: it runs the forward pass twice in eval mode without gradients (on random images at
/// two batch sizes, 2 and 3, or twice at the fixed batch size), with every VitSharp op reporting itself, and writes one or
/// a few ONNX nodes per op. Extents that change with the batch become computed from the input's shape, so one graph
/// serves every batch size. An op with no ONNX equivalent (<c>fold</c> at opset 17, active dropout, a loss) stops the
/// export with an <see cref="OnnxExportException"/> naming it. See docs/export.md.
/// </remarks>
public static class OnnxExporter
{
    /// <summary>The IR version written (ONNX 1.12, the release of opset 17).</summary>
    public const int IrVersion = 8;

    /// <summary>
    /// Exports a checkpoint or imported model (<see cref="Import.WeightImporter.LoadCheckpoint"/>): the input size and the
    /// metadata (class names, normalisation, preprocessing, the model's constructor and arguments) come from it. A
    /// distillation checkpoint exports its student.
    /// </summary>
    /// <exception cref="OnnxExportException">The model has an op ONNX cannot express, or a forward pass the exporter cannot capture.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public static OnnxExportResult Export(LoadedCheckpoint checkpoint, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var (model, c, h, w, metadata) = Prepare(checkpoint);
        return Export(model, c, h, w, path, Merge(metadata, options));
    }

    /// <summary>
    /// Exports <paramref name="model"/> (switched to eval mode for the export, then back) for images of
    /// <paramref name="channels"/> × <paramref name="height"/> × <paramref name="width"/> to <paramref name="path"/>
    /// (written to a temporary file beside it, then renamed).
    /// </summary>
    /// <exception cref="OnnxExportException">The model has an op ONNX cannot express, or a forward pass the exporter cannot capture.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public static OnnxExportResult Export(Module model, int channels, int height, int width, string path, OnnxExportOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var (proto, result) = Build(model, channels, height, width, options ?? new OnnxExportOptions());
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? ".";
        if (!Directory.Exists(dir)) throw new IOException($"cannot write {path}: the directory {dir} does not exist");
        if (Directory.Exists(full)) throw new IOException($"cannot write {path}: it is a directory");
        string tmp = full + ".tmp-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        try
        {
            using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                proto.WriteTo(f);
                f.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (Exception) { /* nothing was written, or it cannot be removed either */ }
            throw new IOException($"cannot write {path}: {e.Message}", e);
        }
        return result with { Path = full };
    }

    /// <summary>The serialised ONNX model (as <see cref="Export(Module, int, int, int, string, OnnxExportOptions?)"/> would write it).</summary>
    /// <exception cref="OnnxExportException">The model has an op ONNX cannot express, or a forward pass the exporter cannot capture.</exception>
    public static byte[] ToBytes(Module model, int channels, int height, int width, OnnxExportOptions? options = null) =>
        Build(model, channels, height, width, options ?? new OnnxExportOptions()).Proto.ToByteArray();

    /// <summary>The serialised ONNX model of a checkpoint (as <see cref="Export(LoadedCheckpoint, string, OnnxExportOptions?)"/> would write it).</summary>
    /// <exception cref="OnnxExportException">The model has an op ONNX cannot express, or a forward pass the exporter cannot capture.</exception>
    public static byte[] ToBytes(LoadedCheckpoint checkpoint, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var (model, c, h, w, metadata) = Prepare(checkpoint);
        return ToBytes(model, c, h, w, Merge(metadata, options));
    }

    private static (Module Model, int C, int H, int W, Dictionary<string, string> Metadata) Prepare(LoadedCheckpoint checkpoint)
    {
        var data = DataInfo.FromJson(checkpoint.Info.Data, checkpoint.Path);
        var model = checkpoint.Model is DistillWrapper dw ? dw.Student : checkpoint.Model;
        var (c, h, w) = model is IImageModel im ? (im.InputChannels, im.InputHeight ?? data.Height, im.InputWidth ?? data.Width) : (data.Channels, data.Height, data.Width);
        var spec = checkpoint.Model is DistillWrapper wrapper ? StudentSpec(checkpoint.Info.Model, wrapper) : checkpoint.Info.Model;
        var metadata = new Dictionary<string, string>
        {
            ["class_names"] = new JsonArray(data.ClassNames.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray()).ToJsonString(),
            ["preprocessing"] = Preprocessing(data, c, h, w).ToJsonString(),
            ["vitsharp.data"] = checkpoint.Info.Data.ToJsonString(),
            ["vitsharp.model"] = new JsonObject { ["constructor"] = spec.Constructor, ["kwargs"] = spec.Kwargs.DeepClone() }.ToJsonString(),
            ["source"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(checkpoint.Path)),
        };
        return (model, c, h, w, metadata);
    }

    /// <summary>The student's spec inside a DistillWrapper's (its <c>student</c> entry), else the wrapper's own.</summary>
    private static ModelSpec StudentSpec(ModelSpec spec, DistillWrapper _) =>
        spec.Kwargs["student"] is JsonObject s && s["constructor"]?.GetValue<string>() is { } ctor && s["kwargs"] is JsonObject kw
            ? new ModelSpec(ctor, kw) : spec;

    /// <summary>How an image becomes the input: the imported model's recipe, or a resize to the input size, /255, mean/std.</summary>
    private static JsonObject Preprocessing(DataInfo data, int c, int h, int w)
    {
        var j = new JsonObject
        {
            ["input"] = new JsonArray(c, h, w),
            ["layout"] = "NCHW, float32",
            ["mean"] = new JsonArray(data.Mean.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
            ["std"] = new JsonArray(data.Std.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
        };
        if (data.Preprocessing is { } p) j["recipe"] = p.ToJson();
        else j["recipe"] = $"bilinear resize to {w}×{h}, {(c == 1 ? "grey" : "RGB")}, pixel/255, then (x − mean)/std per channel";
        return j;
    }

    private static OnnxExportOptions Merge(Dictionary<string, string> metadata, OnnxExportOptions? options)
    {
        options ??= new OnnxExportOptions();
        if (options.Metadata is { } extra) foreach (var (k, v) in extra) metadata[k] = v;
        return options with { Metadata = metadata };
    }

    private static (ModelProto Proto, OnnxExportResult Result) Build(Module model, int channels, int height, int width, OnnxExportOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        options.Validate();
        if (channels < 1 || height < 1 || width < 1) throw new ArgumentException($"the input size {channels}×{height}×{width} must be positive");
        if (model is DistillWrapper dw) model = dw.Student;
        var parameters = new Dictionary<string, Tensor>();
        foreach (var (name, p) in model.NamedParameters()) parameters[name] = p;
        foreach (var (name, buffer) in model.NamedBuffers()) parameters.TryAdd(name, buffer);

        bool wasTraining = model.Training;
        Trace a, b;
        try
        {
            model.Eval();
            int batchA = options.DynamicBatch ? 2 : options.BatchSize, batchB = options.DynamicBatch ? 3 : options.BatchSize;
            a = Run(model, batchA, channels, height, width, seed: 1);
            b = Run(model, batchB, channels, height, width, seed: 2);
        }
        finally
        {
            if (wasTraining) model.Train();
        }

        var builder = new OnnxGraphBuilder(a, b, parameters, options.Opset, options.Quantization);
        var graph = builder.Build(options.InputName, options.OutputName, out var inShape, out var outShape);
        graph.Name = model.GetType().Name;
        var proto = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "VitSharp",
            ProducerVersion = typeof(OnnxExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0",
            ModelVersion = 1,
            DocString = $"{model.GetType().Name} exported by VitSharp: {options.InputName} [batch, {channels}, {height}, {width}] float32 → {options.OutputName} [batch, {outShape[^1]}]",
            Graph = graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = options.Opset });
        var metadata = new Dictionary<string, string>();
        if (options.Quantization != OnnxQuantization.None)
            metadata["quantization"] = options.Quantization == OnnxQuantization.DynamicInt8PerChannel
                ? "dynamic int8 (onnxruntime quantize_dynamic pattern): Linear weights int8 symmetric per output channel, activations uint8 per tensor (DynamicQuantizeLinear), MatMulInteger"
                : "dynamic int8 (onnxruntime quantize_dynamic pattern): Linear weights int8 symmetric per tensor, activations uint8 per tensor (DynamicQuantizeLinear), MatMulInteger";
        if (options.Metadata is { } m) foreach (var (k, v) in m) metadata[k] = v;
        foreach (var (k, v) in metadata) proto.MetadataProps.Add(new StringStringEntryProto { Key = k, Value = v });
        long bytes = proto.CalculateSize();
        var result = new OnnxExportResult(null, bytes, graph.Node.Count, graph.Initializer.Count, builder.OpTypes, inShape, outShape, metadata);
        return (proto, result);
    }

    /// <summary>
    /// One traced forward pass on <paramref name="batch"/> random images, on a thread of its own: no tensor scope of the
    /// caller's (whose recycled tensors would alias), no gradients, every op reporting to the recorder.
    /// </summary>
    private static Trace Run(Module model, int batch, int c, int h, int w, int seed)
    {
        Trace? trace = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                var input = Tensor.RandN(new Random(seed), 0f, 1f, batch, c, h, w);
                var recorder = new OpRecorder();
                Tensor output;
                using (Autograd.NoGrad())
                using (OpTrace.Begin(recorder))
                    output = model.Forward(input);
                trace = new Trace(batch, input, output, recorder.Ops);
            }
            catch (Exception e) { error = e; }
        }, maxStackSize: 16 << 20) { Name = "VitSharp ONNX trace" };
        thread.Start();
        thread.Join();
        if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
        return trace!;
    }
}
