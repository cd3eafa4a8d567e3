namespace VitSharp.Export;

/// <summary>How <see cref="OnnxExporter"/> writes a model.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>The lowest ONNX opset the exporter writes (models with LayerNorm need <see cref="MaxOpset"/>).</summary>
    public const int MinOpset = 13;

    /// <summary>The highest ONNX opset the exporter writes, and the default: 17 (LayerNormalization's first opset).</summary>
    public const int MaxOpset = 17;

    /// <summary>The default ONNX opset.</summary>
    public const int DefaultOpset = 17;

    /// <summary>The ONNX opset of the default domain (<see cref="MinOpset"/>..<see cref="MaxOpset"/>).</summary>
    public int Opset { get; init; } = DefaultOpset;

    /// <summary>
    /// Whether the batch axis is symbolic (<c>batch</c>: any number of images per run, the default); when false, the
    /// graph takes exactly <see cref="BatchSize"/> images.
    /// </summary>
    public bool DynamicBatch { get; init; } = true;

    /// <summary>The fixed batch size when <see cref="DynamicBatch"/> is false (default 1).</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>The graph input's name: images [batch, channels, height, width], float32.</summary>
    public string InputName { get; init; } = "images";

    /// <summary>The graph output's name: logits [batch, classes], float32.</summary>
    public string OutputName { get; init; } = "logits";

    /// <summary>
    /// Whether the Linear layers are written quantized (<see cref="OnnxQuantization"/>; default
    /// <see cref="OnnxQuantization.None"/>: float32 MatMul/Gemm).
    /// </summary>
    public OnnxQuantization Quantization { get; init; } = OnnxQuantization.None;

    /// <summary>More <c>metadata_props</c> entries (added after the exporter's own; a key given here replaces the exporter's).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        if (Opset < MinOpset || Opset > MaxOpset)
            throw new ArgumentException($"opset {Opset} is not supported: the exporter writes opsets {MinOpset} to {MaxOpset}");
        if (!DynamicBatch && BatchSize < 1) throw new ArgumentException($"the fixed batch size must be ≥ 1, got {BatchSize}");
        if (!Enum.IsDefined(Quantization)) throw new ArgumentException($"unknown quantization {(int)Quantization}: expected None, DynamicInt8 or DynamicInt8PerChannel");
        if (string.IsNullOrEmpty(InputName) || string.IsNullOrEmpty(OutputName) || InputName == OutputName)
            throw new ArgumentException($"the input and output names must be distinct and non-empty, got '{InputName}' and '{OutputName}'");
    }
}

/// <summary>
/// How <see cref="OnnxExporter"/> writes the Linear layers (every MatMul or Gemm whose second operand is a weight parameter;
/// products of two activations, such as attention's, stay float32).
/// </summary>
public enum OnnxQuantization
{
    /// <summary>float32 MatMul (rank ≥ 3 input) or Gemm (rank 2), the weight a float32 initializer.</summary>
    None,

    /// <summary>
    /// Dynamic int8, as ONNX Runtime's <c>quantize_dynamic</c> writes it: the activation → DynamicQuantizeLinear (uint8,
    /// one scale and zero point per tensor, computed at run time), the weight stored once as an int8 initializer,
    /// symmetric with one scale per tensor (max|w|/127, zero point 0), then MatMulInteger → Cast(float) → Mul(activation
    /// scale · weight scale) → Add(bias). ONNX Runtime fuses the chain into its DynamicQuantizeMatMul int8 kernel.
    /// </summary>
    DynamicInt8,

    /// <summary>
    /// As <see cref="DynamicInt8"/> with one weight scale per output channel (a 1-D scale and zero point of the output
    /// width), which ONNX Runtime's MatMulInteger and DynamicQuantizeMatMul accept and fuse the same way (closer to the
    /// float32 model than one scale per tensor).
    /// </summary>
    DynamicInt8PerChannel,
}

/// <summary>
/// The model cannot be written as ONNX: an op with no ONNX equivalent at the chosen opset (<see cref="Op"/> names it, as
/// autograd does: <c>fold</c>, <c>dropout</c>, …), or a forward pass the exporter cannot capture (values computed outside
/// VitSharp's ops, a shape that does not follow the batch).
/// </summary>
public sealed class OnnxExportException : Exception
{
    /// <summary>Creates the exception.</summary>
    public OnnxExportException(string message, string? op = null) : base(message) { Op = op; }

    /// <summary>The VitSharp op that cannot be expressed, when that is the problem; else null.</summary>
    public string? Op { get; }
}

/// <summary>What <see cref="OnnxExporter"/> wrote.</summary>
/// <param name="Path">The .onnx file (null when the model was only serialised to bytes).</param>
/// <param name="Bytes">Size of the serialised model.</param>
/// <param name="Nodes">Nodes in the graph.</param>
/// <param name="Initializers">Constant tensors in the graph (weights and index maps).</param>
/// <param name="OpTypes">How many nodes of each ONNX operator type.</param>
/// <param name="InputShape">The input's shape, -1 for the symbolic batch.</param>
/// <param name="OutputShape">The output's shape, -1 for the symbolic batch.</param>
/// <param name="Metadata">The model's <c>metadata_props</c>.</param>
public sealed record OnnxExportResult(string? Path, long Bytes, int Nodes, int Initializers, IReadOnlyDictionary<string, int> OpTypes,
    IReadOnlyList<long> InputShape, IReadOnlyList<long> OutputShape, IReadOnlyDictionary<string, string> Metadata);
