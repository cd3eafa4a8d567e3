using System.Runtime.InteropServices;
using Google.Protobuf;
using VitSharp.Export.Onnx;

namespace VitSharp.Export;

/// <summary>
/// Turns two traces of one model's forward pass (<see cref="Trace"/>, at two batch sizes or, for a fixed batch, twice at
/// the same size on other images) into an ONNX graph: one or a few standard ONNX nodes per VitSharp op, in the order the
/// ops ran. The second trace says which extents follow the batch (they differ between the traces: each is the batch
/// times a constant, and the graph computes it from the input's shape or lets Reshape infer it) and which tensors that
/// are neither parameters nor op outputs are true constants (equal in both traces: index maps, masks, precomputed
/// tables) rather than values computed outside VitSharp's ops (which the graph could not reproduce: an error).
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private const int Float = (int)TensorProto.Types.DataType.Float, Int64 = (int)TensorProto.Types.DataType.Int64,
        Int8 = (int)TensorProto.Types.DataType.Int8;

    private readonly Trace _a, _b;
    private readonly int _opset;
    private readonly OnnxQuantization _quantization;
    private readonly bool _dynamic;
    private readonly GraphProto _graph = new();
    private readonly Dictionary<Tensor, string> _names = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Tensor, Tensor> _twin = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Tensor, string> _parameters = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Tensor, string> _constants = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, string> _intConstants = new();
    private readonly Dictionary<int, string> _batchTimes = new();
    private readonly HashSet<string> _initialized = new();
    private readonly Dictionary<string, Tensor> _usedParameters = new();
    private int _counter;
    private string _where = "";

    public OnnxGraphBuilder(Trace a, Trace b, IReadOnlyDictionary<string, Tensor> parameters, int opset,
        OnnxQuantization quantization = OnnxQuantization.None)
    {
        _a = a; _b = b; _opset = opset; _quantization = quantization;
        _dynamic = a.Batch != b.Batch;
        foreach (var (name, t) in parameters) _parameters.TryAdd(t, name);
    }

    /// <summary>Op types and counts, after <see cref="Build"/>.</summary>
    public Dictionary<string, int> OpTypes { get; } = new();

    /// <summary>Builds the graph: input <paramref name="inputName"/>, output <paramref name="outputName"/>.</summary>
    public GraphProto Build(string inputName, string outputName, out long[] inputShape, out long[] outputShape)
    {
        if (_a.Ops.Count != _b.Ops.Count)
            throw new OnnxExportException($"the model's forward pass runs {_a.Ops.Count} ops on {_a.Batch} images but {_b.Ops.Count} on {_b.Batch}: it cannot be written as one graph");
        _names[_a.Input] = inputName;
        _twin[_a.Input] = _b.Input;
        inputShape = SymbolicShape(_a.Input.Shape, _b.Input.Shape);
        _graph.Input.Add(ValueInfo(inputName, inputShape));
        for (int i = 0; i < _a.Ops.Count; i++)
        {
            var (opA, opB) = (_a.Ops[i], _b.Ops[i]);
            _where = $"op {i + 1} ({opA.Name})";
            if (opA.Name != opB.Name || opA.Inputs.Length != opB.Inputs.Length)
                throw new OnnxExportException($"{_where}: the forward pass differs between batch sizes {_a.Batch} and {_b.Batch} ({opB.Name} there): it cannot be written as one graph");
            var inputs = new string?[opA.Inputs.Length];
            for (int j = 0; j < inputs.Length; j++) inputs[j] = Resolve(opA.Inputs[j], opB.Inputs[j], opA.Name, j);
            string output = Emit(opA, opB, inputs);
            _names[opA.Output] = output;
            _twin[opA.Output] = opB.Output;
        }
        _where = "the output";
        if (!_names.TryGetValue(_a.Output, out var last))
            throw new OnnxExportException("the model's output was not computed by VitSharp's ops (nothing to export)");
        outputShape = SymbolicShape(_a.Output.Shape, _b.Output.Shape);
        Node("Identity", [last], outputName);
        _graph.Output.Add(ValueInfo(outputName, outputShape));
        var read = _graph.Node.SelectMany(n => n.Input).ToHashSet();
        foreach (var (key, t) in _usedParameters)
            if (read.Contains(key) && _initialized.Add(key)) _graph.Initializer.Add(FloatTensor(key, t.Data, t.Shape));
        return _graph;
    }

    // ---- values ----

    /// <summary>The graph name of an op's input: an earlier op's output, the graph input, a parameter or a constant.</summary>
    private string? Resolve(Tensor? a, Tensor? b, string op, int index)
    {
        if (a is null || b is null)
        {
            if (a is null && b is null) return null;
            throw new OnnxExportException($"{_where}: input {index} is present at one batch size and absent at the other");
        }
        if (_names.TryGetValue(a, out var name))
        {
            if (!ReferenceEquals(_twin[a], b))
                throw new OnnxExportException($"{_where}: input {index} comes from different places at batch sizes {_a.Batch} and {_b.Batch}");
            return name;
        }
        if (_parameters.TryGetValue(a, out var key))
        {
            if (!ReferenceEquals(a, b)) throw new OnnxExportException($"{_where}: parameter {key} is not the same tensor in both passes");
            _usedParameters.TryAdd(key, a);   // written at the end if a node reads it (a Linear reads its transposed copy instead)
            return key;
        }
        if (_constants.TryGetValue(a, out var constant)) return constant;
        // A tensor that no op produced and that is no parameter: a constant of the model (buffer kept as a field, a
        // precomputed table) — or a value computed outside VitSharp's ops from the input, which the graph cannot redo.
        if (!a.SameShape(b) || !a.Data.AsSpan().SequenceEqual(b.Data))
            throw new OnnxExportException($"{_where}: input {index} is a tensor computed outside VitSharp's ops (its values change with the input), which an ONNX graph cannot reproduce; compute it with tensor ops", op);
        string c = $"const_{_constants.Count}";
        _graph.Initializer.Add(FloatTensor(c, a.Data, a.Shape));
        _constants[a] = c;
        return c;
    }

    private int[] ShapeA(Tensor t) => t.Shape;
    private int[] ShapeB(Tensor t) => _twin.TryGetValue(t, out var b) ? b.Shape : t.Shape;

    /// <summary>Per dimension: 0 for a constant extent, else k where the extent is k × batch.</summary>
    private int[] BatchFactors(int[] a, int[] b)
    {
        if (a.Length != b.Length) throw new OnnxExportException($"{_where}: the rank differs between batch sizes {_a.Batch} and {_b.Batch}");
        var k = new int[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] == b[i]) continue;
            int db = _b.Batch - _a.Batch, dx = b[i] - a[i];
            if (db == 0 || dx % db != 0 || a[i] != dx / db * _a.Batch)
                throw new OnnxExportException($"{_where}: extent {i} is {a[i]} for {_a.Batch} images and {b[i]} for {_b.Batch}, not a multiple of the batch: the graph cannot compute it");
            k[i] = dx / db;
        }
        return k;
    }

    private long[] SymbolicShape(int[] a, int[] b)
    {
        var k = BatchFactors(a, b);
        var s = new long[a.Length];
        for (int i = 0; i < a.Length; i++) s[i] = k[i] == 0 ? a[i] : -k[i];
        return s;
    }

    /// <summary>
    /// An int64 shape tensor for the extents <paramref name="a"/> (first trace) / <paramref name="b"/> (second): a constant
    /// when nothing follows the batch, a constant with −1 for the one extent that does when <paramref name="allowInfer"/>
    /// (Reshape), else a Concat of constants and batch × k computed from the input's shape.
    /// </summary>
    private string ShapeTensor(int[] a, int[] b, bool allowInfer)
    {
        var k = BatchFactors(a, b);
        int dynamicDims = k.Count(f => f != 0);
        if (dynamicDims == 0) return Ints(a.Select(v => (long)v).ToArray());
        if (dynamicDims == 1 && allowInfer) return Ints(a.Select((v, i) => k[i] != 0 ? -1L : v).ToArray());
        var pieces = new List<string>();
        var run = new List<long>();
        for (int i = 0; i < a.Length; i++)
        {
            if (k[i] == 0) { run.Add(a[i]); continue; }
            if (run.Count > 0) { pieces.Add(Ints(run.ToArray())); run.Clear(); }
            pieces.Add(BatchTimes(k[i]));
        }
        if (run.Count > 0) pieces.Add(Ints(run.ToArray()));
        return pieces.Count == 1 ? pieces[0] : Node("Concat", pieces.ToArray(), attrs: [Attr("axis", 0)]);
    }

    /// <summary>[batch × k] (int64, one element) from the graph input's shape.</summary>
    private string BatchTimes(int k)
    {
        if (_batchTimes.TryGetValue(k, out var name)) return name;
        if (k == 1) name = Node("Gather", [Node("Shape", [_names[_a.Input]]), Ints([0])], attrs: [Attr("axis", 0)]);
        else name = Node("Mul", [BatchTimes(1), Ints([k])]);
        return _batchTimes[k] = name;
    }

    /// <summary>An int64 constant (1-D, or a scalar when <paramref name="scalar"/>), shared by value.</summary>
    private string Ints(long[] values, bool scalar = false)
    {
        string key = (scalar ? "s:" : "v:") + string.Join(",", values);
        if (_intConstants.TryGetValue(key, out var name)) return name;
        name = $"ints_{_intConstants.Count}";
        var t = new TensorProto { Name = name, DataType = Int64 };
        if (!scalar) t.Dims.Add(values.Length);
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
        _graph.Initializer.Add(t);
        return _intConstants[key] = name;
    }

    /// <summary>A float constant of the given shape (new each call).</summary>
    private string Floats(float[] values, params int[] shape)
    {
        string name = $"const_f{_counter++}";
        _graph.Initializer.Add(FloatTensor(name, values, shape));
        return name;
    }

    private string Scalar(float value) => Floats([value]);

    private static TensorProto FloatTensor(string name, float[] data, int[] shape)
    {
        var t = new TensorProto { Name = name, DataType = Float };
        foreach (int d in shape) t.Dims.Add(d);
        long size = 1;
        foreach (int d in shape) size *= d;
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan(0, (int)size)));
        return t;
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape)
    {
        var s = new TensorShapeProto();
        foreach (long d in shape)
            s.Dim.Add(d >= 0 ? new TensorShapeProto.Types.Dimension { DimValue = d }
                : new TensorShapeProto.Types.Dimension { DimParam = d == -1 ? "batch" : $"batch_x{-d}" });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = Float, Shape = s } },
        };
    }

    // ---- nodes ----

    private static AttributeProto Attr(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
    private static AttributeProto Attr(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };
    private static AttributeProto Attr(string name, IEnumerable<long> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>Adds a node; returns its (single) output's name.</summary>
    private string Node(string opType, string?[] inputs, string? output = null, AttributeProto[]? attrs = null)
    {
        output ??= $"{opType}_{_counter++}";
        var n = new NodeProto { OpType = opType, Name = $"{opType}_node_{_counter++}" };
        // Absent optional inputs in the middle are empty names; trailing ones are dropped.
        int count = inputs.Length;
        while (count > 0 && inputs[count - 1] is null) count--;
        for (int i = 0; i < count; i++) n.Input.Add(inputs[i] ?? "");
        n.Output.Add(output);
        if (attrs is not null) n.Attribute.AddRange(attrs);
        _graph.Node.Add(n);
        OpTypes[opType] = OpTypes.GetValueOrDefault(opType) + 1;
        return output;
    }

    /// <summary>Adds a node with several outputs (named after the op); returns their names.</summary>
    private string[] NodeOutputs(string opType, string[] inputs, int outputs)
    {
        var n = new NodeProto { OpType = opType, Name = $"{opType}_node_{_counter++}" };
        n.Input.AddRange(inputs);
        var names = new string[outputs];
        for (int i = 0; i < outputs; i++) n.Output.Add(names[i] = $"{opType}_{_counter++}");
        _graph.Node.Add(n);
        OpTypes[opType] = OpTypes.GetValueOrDefault(opType) + 1;
        return names;
    }

    /// <summary>
    /// x · Wᵀ (+ bias) with W [out, in] a weight parameter, dynamically quantized as ONNX Runtime's <c>quantize_dynamic</c>
    /// writes it (operators/matmul.py, MatMulInteger): DynamicQuantizeLinear(x) → (x_q uint8, x_scale, x_zero_point);
    /// Wᵀ [in, out] as an int8 initializer, symmetric (zero point 0, scale max|w|/127 per tensor or per output column);
    /// MatMulInteger(x_q, Wᵀ_q, x_zero_point, w_zero_point) → Cast(float) → Mul(·, Mul(x_scale, w_scale)) → Add(bias).
    /// Each product gets its own DynamicQuantizeLinear and scale Mul: ONNX Runtime fuses the chain
    /// (MatMulIntegerToFloatFusion, then DynamicQuantizeMatMulFusion) only when their outputs have one consumer.
    /// </summary>
    private string QuantizedLinear(string x, Tensor w, string key, string? bias)
    {
        bool perChannel = _quantization == OnnxQuantization.DynamicInt8PerChannel;
        string wq = key + (perChannel ? ".T.int8_per_channel" : ".T.int8");
        string ws = wq + ".scale", wzp = wq + ".zero_point";
        if (_initialized.Add(wq))
        {
            var (q, scales) = QuantizeWeightTransposed(w, perChannel);
            int o = w.Dim(0), i = w.Dim(1);
            var t = new TensorProto { Name = wq, DataType = Int8 };
            t.Dims.Add(i);
            t.Dims.Add(o);
            t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(q.AsSpan()));
            _graph.Initializer.Add(t);
            var s = new TensorProto { Name = ws, DataType = Float };
            var z = new TensorProto { Name = wzp, DataType = Int8 };
            if (perChannel) { s.Dims.Add(o); z.Dims.Add(o); }
            s.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(scales.AsSpan()));
            z.RawData = ByteString.CopyFrom(new byte[scales.Length]);
            _graph.Initializer.Add(s);
            _graph.Initializer.Add(z);
        }
        var dq = NodeOutputs("DynamicQuantizeLinear", [x], 3);   // x_q, x_scale, x_zero_point
        var product = Node("MatMulInteger", [dq[0], wq, dq[2], wzp]);
        var asFloat = Node("Cast", [product], attrs: [Attr("to", (long)Float)]);
        var y = Node("Mul", [asFloat, Node("Mul", [dq[1], ws])]);
        return bias is null ? y : Node("Add", [y, bias]);
    }

    /// <summary>
    /// Wᵀ ([in, out] of W [out, in]) in int8, symmetric: q = round(w / scale) (half to even) clamped to ±127, with
    /// scale = max|w| / 127 over the whole tensor or over each output channel (1 where that is all zeros).
    /// </summary>
    internal static (sbyte[] Q, float[] Scales) QuantizeWeightTransposed(Tensor w, bool perChannel)
    {
        int o = w.Dim(0), i = w.Dim(1);
        var d = w.Data;
        var scales = new float[perChannel ? o : 1];
        for (int r = 0; r < o; r++)
        {
            float m = 0;
            for (int c = 0; c < i; c++) m = MathF.Max(m, MathF.Abs(d[r * i + c]));
            int at = perChannel ? r : 0;
            scales[at] = MathF.Max(scales[at], m);
        }
        for (int k = 0; k < scales.Length; k++) scales[k] = scales[k] > 0 ? scales[k] / 127f : 1f;
        var q = new sbyte[o * i];
        for (int r = 0; r < o; r++)
        {
            float s = scales[perChannel ? r : 0];
            for (int c = 0; c < i; c++)
                q[c * o + r] = (sbyte)Math.Clamp(MathF.Round(d[r * i + c] / s, MidpointRounding.ToEven), -127f, 127f);
        }
        return (q, scales);
    }

    private OnnxExportException Unsupported(string op, string why) => new($"{_where}: {why}", op);

    private static long[] Pads(VitSharp.Kernels.Window2d w) => [w.PadH, w.PadW, w.PadH, w.PadW];

    /// <summary>The ONNX nodes of one VitSharp op; returns the name of the value that stands for its output.</summary>
    private string Emit(TracedOp op, TracedOp twin, string?[] x)
    {
        var at = op.Attributes;
        var outA = op.Output.Shape;
        var outB = twin.Output.Shape;
        string Reshape(string value, int[] a, int[] b) => Node("Reshape", [value, ShapeTensor(a, b, allowInfer: true)]);
        int[] InA(int i) => ShapeA(op.Inputs[i]!);
        int[] InB(int i) => ShapeB(op.Inputs[i]!);
        switch (op.Name)
        {
            case "linear":
            {
                var w = op.Inputs[1]!;
                int rank = op.Inputs[0]!.Rank;
                if (_quantization != OnnxQuantization.None && _parameters.TryGetValue(w, out var weightKey) && w.Rank == 2)
                    return QuantizedLinear(x[0]!, w, weightKey, x[2]);
                if (rank == 2) return Node("Gemm", [x[0], x[1], x[2]], attrs: [Attr("transB", 1L)]);
                // [..., in] · Wᵀ: a parameter is stored transposed once ([in, out]); a computed weight is transposed in the graph.
                string wt;
                if (_parameters.TryGetValue(w, out var key))
                {
                    wt = key + ".T";
                    if (_initialized.Add(wt))
                    {
                        int o = w.Dim(0), i = w.Dim(1);
                        var t = new float[w.Size];
                        for (int r = 0; r < o; r++) for (int c = 0; c < i; c++) t[c * o + r] = w.Data[r * i + c];
                        _graph.Initializer.Add(FloatTensor(wt, t, [i, o]));
                    }
                }
                else wt = Node("Transpose", [x[1]], attrs: [Attr("perm", new long[] { 1, 0 })]);
                var y = Node("MatMul", [x[0], wt]);
                return x[2] is null ? y : Node("Add", [y, x[2]]);
            }
            case "layer_norm":
                if (_opset < 17) throw Unsupported(op.Name, $"layer_norm needs ONNX's LayerNormalization, which opset {_opset} does not have (use opset 17)");
                return Node("LayerNormalization", [x[0], x[1], x[2]], attrs: [Attr("axis", -1L), Attr("epsilon", at.Scalar)]);
            case "softmax": return Node("Softmax", [x[0]], attrs: [Attr("axis", -1L)]);
            case "log_softmax": return Node("LogSoftmax", [x[0]], attrs: [Attr("axis", -1L)]);
            case "mha":
            {
                int heads = at.Ints[0], d = InA(0)[2] / (3 * heads);
                var parts = Node("Transpose", [Node("Reshape", [x[0], Ints([0, 0, 3, heads, d])])], attrs: [Attr("perm", new long[] { 2, 0, 3, 1, 4 })]);
                string Part(int i) => Node("Gather", [parts, Ints([i], scalar: true)], attrs: [Attr("axis", 0L)]);   // [B, H, N, D]
                var (q, k, v) = (Part(0), Part(1), Part(2));
                var scores = Node("Mul", [Node("MatMul", [q, Node("Transpose", [k], attrs: [Attr("perm", new long[] { 0, 1, 3, 2 })])]), Scalar(at.Scalar)]);
                var o = Node("MatMul", [Node("Softmax", [scores], attrs: [Attr("axis", -1L)]), v]);
                return Node("Reshape", [Node("Transpose", [o], attrs: [Attr("perm", new long[] { 0, 2, 1, 3 })]), Ints([0, 0, heads * d])]);
            }
            case "sdpa":
            {
                int rank = op.Inputs[0]!.Rank;
                var perm = Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
                (perm[^1], perm[^2]) = (perm[^2], perm[^1]);
                var scores = Node("Mul", [Node("MatMul", [x[0], Node("Transpose", [x[1]], attrs: [Attr("perm", perm)])]), Scalar(at.Scalar)]);
                return Node("MatMul", [Node("Softmax", [scores], attrs: [Attr("axis", -1L)]), x[2]]);
            }
            case "mix_heads":
            {
                // y[b, g, …] = Σ_h w[h, g]·x[b, h, …]: wᵀ [G, H] · x [B, H, rest] (MatMul broadcasts wᵀ over the batch).
                int h = InA(0)[1];
                var x3 = Node("Reshape", [x[0], Ints([0, h, -1])]);
                var wt = Node("Transpose", [x[1]], attrs: [Attr("perm", new long[] { 1, 0 })]);
                return Reshape(Node("MatMul", [wt, x3]), outA, outB);
            }
            case "unfold":
            {
                // im2col as a grouped convolution with one-hot kernels: output channel c·kk + (i·kw + j) picks input channel c at (i, j).
                var win = at.Window;
                int c = InA(0)[1], kk = win.KernelH * win.KernelW;
                var weight = new float[c * kk * kk];
                for (int ch = 0; ch < c; ch++)
                    for (int p = 0; p < kk; p++) weight[(ch * kk + p) * kk + p] = 1f;
                var conv = Node("Conv", [x[0], Floats(weight, c * kk, 1, win.KernelH, win.KernelW)], attrs:
                [
                    Attr("group", (long)c), Attr("kernel_shape", new long[] { win.KernelH, win.KernelW }),
                    Attr("strides", new long[] { win.StrideH, win.StrideW }), Attr("pads", Pads(win)),
                ]);
                return Node("Reshape", [conv, Ints([0, c * kk, -1])]);
            }
            case "fold":
                throw Unsupported(op.Name, $"fold (col2im) has no ONNX operator at opset {_opset} (Col2Im arrived in opset 18, which this exporter does not write)");
            case "conv2d" or "conv2d_depthwise":
            {
                var win = at.Window;
                return Node("Conv", [x[0], x[1], x[2]], attrs:
                [
                    Attr("group", (long)at.Ints[0]), Attr("kernel_shape", new long[] { win.KernelH, win.KernelW }),
                    Attr("strides", new long[] { win.StrideH, win.StrideW }), Attr("pads", Pads(win)),
                ]);
            }
            case "batch_norm":
            {
                if (at.Flag) throw Unsupported(op.Name, "batch_norm normalises with the batch's own statistics (training mode, or no running statistics): export a model in eval mode with running statistics");
                int c = InA(0)[1];
                string scale = x[3] ?? Floats(Enumerable.Repeat(1f, c).ToArray(), c), bias = x[4] ?? Floats(new float[c], c);
                return Node("BatchNormalization", [x[0], scale, bias, x[1], x[2]], attrs: [Attr("epsilon", at.Scalar)]);
            }
            case "max_pool2d":
            {
                var win = at.Window;
                return Node("MaxPool", [x[0]], attrs:
                [
                    Attr("kernel_shape", new long[] { win.KernelH, win.KernelW }), Attr("strides", new long[] { win.StrideH, win.StrideW }), Attr("pads", Pads(win)),
                ]);
            }
            case "adaptive_avg_pool2d":
            {
                var s = InA(0);
                int oh = at.Ints[0], ow = at.Ints[1], h = s[2], w = s[3];
                if (oh == 1 && ow == 1) return Node("GlobalAveragePool", [x[0]]);
                if (h % oh != 0 || w % ow != 0)
                    throw Unsupported(op.Name, $"adaptive_avg_pool2d from {h}×{w} to {oh}×{ow} has uneven windows, which ONNX's AveragePool cannot express");
                return Node("AveragePool", [x[0]], attrs: [Attr("kernel_shape", new long[] { h / oh, w / ow }), Attr("strides", new long[] { h / oh, w / ow })]);
            }
            case "gather_rows":
            {
                // Items of rowsIn rows of C: [B', rowsIn, C], gathered along the rows with the constant map (−1: a zero row,
                // appended for the purpose), then the op's output shape.
                int rowsIn = at.Ints[0], c = InA(0)[^1];
                var map = at.Index!;
                var items = Node("Reshape", [x[0], Ints([-1, rowsIn, c])]);
                var idx = new long[map.Length];
                bool zeros = false;
                for (int i = 0; i < map.Length; i++) { idx[i] = map[i] < 0 ? rowsIn : map[i]; zeros |= map[i] < 0; }
                if (zeros) items = Node("Pad", [items, Ints([0, 0, 0, 0, 1, 0])]);
                var g = Node("Gather", [items, Ints(idx)], attrs: [Attr("axis", 1L)]);
                return Reshape(g, outA, outB);
            }
            case "relative_position_bias":
            {
                int n = at.Ints[0], heads = InA(0)[1];
                var g = Node("Gather", [x[0], Ints(at.Index!.Select(i => (long)i).ToArray())], attrs: [Attr("axis", 0L)]);   // [n·n, H]
                return Node("Reshape", [Node("Transpose", [g], attrs: [Attr("perm", new long[] { 1, 0 })]), Ints([heads, n, n])]);
            }
            case "window_bias":
            {
                var s = InA(0);
                int windows = at.Ints[0], heads = s[1], n1 = s[2], n2 = s[3];
                var y = Node("Add", [x[0], x[1]]);
                if (at.Values is not { } mask) return y;
                var grouped = Node("Reshape", [y, Ints([-1, windows, heads, n1, n2])]);
                var masked = Node("Add", [grouped, Floats(mask, 1, windows, 1, n1, n2)]);
                return Node("Reshape", [masked, Ints([-1, heads, n1, n2])]);
            }
            case "normalize":
            {
                var norm = Node("ReduceL2", [x[0]], attrs: [Attr("axes", new long[] { -1 }), Attr("keepdims", 1L)]);
                return Node("Div", [x[0], Node("Max", [norm, Scalar(at.Scalar)])]);
            }
            case "add": return Node("Add", [x[0], x[1]]);
            case "sub": return Node("Sub", [x[0], x[1]]);
            case "mul": return Node("Mul", [x[0], x[1]]);
            case "div": return Node("Div", [x[0], x[1]]);
            case "affine":
            {
                string y = x[0]!;
                if (at.Scalar != 1f) y = Node("Mul", [y, Scalar(at.Scalar)]);
                if (at.Scalar2 != 0f) y = Node("Add", [y, Scalar(at.Scalar2)]);
                return y == x[0] ? Node("Identity", [y]) : y;
            }
            case "relu": return Node("Relu", [x[0]]);
            case "tanh": return Node("Tanh", [x[0]]);
            case "exp": return Node("Exp", [x[0]]);
            case "sigmoid": return Node("Sigmoid", [x[0]]);
            case "clamp_max": return Node("Min", [x[0], Scalar(at.Scalar)]);
            case "gelu":
            {
                // The exact (erf) GELU as PyTorch exports it — x·½·(1 + erf(x/√2)) — a pattern ONNX Runtime fuses into one kernel.
                var erf = Node("Erf", [Node("Div", [x[0], Scalar(MathF.Sqrt(2f))])]);
                return Node("Mul", [Node("Mul", [x[0], Node("Add", [erf, Scalar(1f)])]), Scalar(0.5f)]);
            }
            case "matmul":
            {
                string TransposeLast(string v, int rank)
                {
                    var perm = Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
                    (perm[^1], perm[^2]) = (perm[^2], perm[^1]);
                    return Node("Transpose", [v], attrs: [Attr("perm", perm)]);
                }
                string a = at.Flag ? TransposeLast(x[0]!, op.Inputs[0]!.Rank) : x[0]!;
                string b = at.Flag2 ? TransposeLast(x[1]!, op.Inputs[1]!.Rank) : x[1]!;
                return Node("MatMul", [a, b]);
            }
            case "reshape": return Reshape(x[0]!, outA, outB);
            case "permute": return Node("Transpose", [x[0]], attrs: [Attr("perm", at.Ints.Select(i => (long)i))]);
            case "broadcast_to": return Node("Expand", [x[0], ShapeTensor(outA, outB, allowInfer: false)]);
            case "cat": return Node("Concat", x, attrs: [Attr("axis", (long)at.Ints[0])]);
            case "slice":
            {
                int d = at.Ints[0], start = at.Ints[1], length = at.Ints[2];
                if (BatchFactors(InA(0), InB(0))[d] != 0)
                {
                    if (start == 0 && outA[d] == InA(0)[d] && outB[d] == InB(0)[d]) return Node("Identity", [x[0]]);
                    throw Unsupported(op.Name, $"slice along dimension {d}, which follows the batch: the graph cannot take a fixed part of a dynamic batch");
                }
                return Node("Slice", [x[0], Ints([start]), Ints([start + length]), Ints([d])]);
            }
            case "index_select":
            {
                int d = at.Ints[0];
                if (BatchFactors(InA(0), InB(0))[d] != 0)
                    throw Unsupported(op.Name, $"index_select along dimension {d}, which follows the batch: the graph cannot pick fixed items of a dynamic batch");
                return Node("Gather", [x[0], Ints(at.Index!.Select(i => (long)i).ToArray())], attrs: [Attr("axis", (long)d)]);
            }
            case "mean":
                return Node("ReduceMean", [x[0]], attrs: [Attr("axes", at.Ints.Select(i => (long)i)), Attr("keepdims", at.Flag ? 1L : 0L)]);
            case "sum":
                return Node("ReduceSum", [x[0], Ints(at.Ints.Select(i => (long)i).ToArray())], attrs: [Attr("keepdims", at.Flag ? 1L : 0L)]);
            case "detach" or "clone": return x[0]!;
            case "dropout":
                throw Unsupported(op.Name, "dropout is active (the model is in training mode): export a model in eval mode");
            case "cross_entropy" or "soft_target_kl":
                throw Unsupported(op.Name, $"{op.Name} is a loss, not part of an inference graph: export the model, not its loss");
            default:
                throw Unsupported(op.Name, $"the op '{op.Name}' has no ONNX translation in this exporter");
        }
    }
}
