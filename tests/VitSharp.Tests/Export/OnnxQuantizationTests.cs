using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;
using VitSharp.Export;
using VitSharp.Export.Onnx;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;

namespace VitSharp.Tests.Export;

/// <summary>
/// <see cref="OnnxQuantization"/>: the Linear layers written in ONNX Runtime's dynamic int8 pattern (DynamicQuantizeLinear,
/// MatMulInteger, Cast, Mul), checked by ONNX Runtime itself: the file loads, ONNX Runtime fuses every chain into its
/// DynamicQuantizeMatMul kernel, and its logits follow the float32 export's on a small random-weight ViT.
/// </summary>
public sealed class OnnxQuantizationTests : IDisposable
{
    /// <summary>
    /// Cosine similarity of the int8 model's logits to the float32 model's, per image, worst over 16 images: 1 − cosine
    /// about 10× the achieved on this model (seed 0), per tensor 0.99997, per channel 0.99998 (each test prints its
    /// figures). The issue's bar is 0.99.
    /// </summary>
    private const double MinCosine = 0.9997;

    /// <summary>Images (of 16) whose top-1 class may differ between int8 and float32: achieved 0 per tensor and per channel.</summary>
    private const int MaxTop1Changes = 1;

    private readonly TempDir _dir = new("onnxq");
    private readonly ITestOutputHelper _log;

    public OnnxQuantizationTests(ITestOutputHelper log) => _log = log;

    public void Dispose() => _dir.Dispose();

    /// <summary>A small ViT (32², patch 8, dim 64, depth 2, 4 heads, 10 classes) with seeded random weights.</summary>
    internal static Module SmallVit()
    {
        Init.Seed(0);
        var model = ModelFactory.Create("vit_pytorch.vit.ViT", new JsonObject
        {
            ["image_size"] = 32, ["patch_size"] = 8, ["num_classes"] = 10, ["dim"] = 64, ["depth"] = 2, ["heads"] = 4, ["mlp_dim"] = 128, ["dim_head"] = 16,
        });
        model.Eval();
        return model;
    }

    private static float[] Run(InferenceSession session, Tensor images) => OnnxExportTests.RunOrt(session, images).Values;

    private static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
        return ab / Math.Sqrt(aa * bb);
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /// <summary>Worst per-image cosine and top-1 changes of the quantized export against the float32 one, both in ONNX Runtime.</summary>
    /// <remarks><paramref name="level"/>: with <see cref="GraphOptimizationLevel.ORT_DISABLE_ALL"/> ONNX Runtime runs the
    /// nodes as written (the ONNX semantics of MatMulInteger and its zero points); with all optimisations, its fused
    /// DynamicQuantizeMatMul kernel.</remarks>
    private (double WorstCosine, int Top1Changes, double MeanCosine) Compare(Module model, OnnxQuantization quantization, GraphOptimizationLevel level)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = level };
        using var fp32 = new InferenceSession(OnnxExporter.ToBytes(model, 3, 32, 32));
        using var int8 = new InferenceSession(OnnxExporter.ToBytes(model, 3, 32, 32, new OnnxExportOptions { Quantization = quantization }), options);
        const int n = 16, classes = 10;
        var images = Tensor.RandN(new Random(5), 0f, 1f, n, 3, 32, 32);
        var a = Run(fp32, images);
        var b = Run(int8, images);
        double worst = 1, sum = 0;
        int changes = 0;
        for (int i = 0; i < n; i++)
        {
            var x = a.AsSpan(i * classes, classes);
            var y = b.AsSpan(i * classes, classes);
            double c = Cosine(x, y);
            worst = Math.Min(worst, c);
            sum += c;
            if (ArgMax(x) != ArgMax(y)) changes++;
        }
        _log.WriteLine($"{quantization}, {level}: cosine to float32 worst {worst:F5}, mean {sum / n:F5}; top-1 changed on {changes} of {n} images");
        return (worst, changes, sum / n);
    }

    [Theory]
    [InlineData(OnnxQuantization.DynamicInt8, GraphOptimizationLevel.ORT_ENABLE_ALL)]
    [InlineData(OnnxQuantization.DynamicInt8PerChannel, GraphOptimizationLevel.ORT_ENABLE_ALL)]
    [InlineData(OnnxQuantization.DynamicInt8, GraphOptimizationLevel.ORT_DISABLE_ALL)]
    [InlineData(OnnxQuantization.DynamicInt8PerChannel, GraphOptimizationLevel.ORT_DISABLE_ALL)]
    public void QuantizedExportFollowsTheFloat32ExportInOnnxRuntime(OnnxQuantization quantization, GraphOptimizationLevel level)
    {
        var (worst, changes, _) = Compare(SmallVit(), quantization, level);
        Assert.True(worst >= MinCosine, $"worst cosine {worst:F5} < {MinCosine}");
        Assert.True(changes <= MaxTop1Changes, $"top-1 changed on {changes} images");
    }

    [Theory]
    [InlineData(OnnxQuantization.DynamicInt8)]
    [InlineData(OnnxQuantization.DynamicInt8PerChannel)]
    public void EveryLinearLayerBecomesTheDynamicInt8ChainAndAttentionStaysFloat(OnnxQuantization quantization)
    {
        var model = SmallVit();
        var fp = OnnxExporter.Export(model, 3, 32, 32, _dir.File("fp32.onnx"));
        var q = OnnxExporter.Export(model, 3, 32, 32, _dir.File("int8.onnx"), new OnnxExportOptions { Quantization = quantization });
        int Count(OnnxExportResult r, string op) => r.OpTypes.GetValueOrDefault(op);
        // Linear layers: every Gemm (rank-2 input: the head) and the MatMuls by a weight; the attention's two MatMuls per
        // layer (activation × activation) stay float.
        int attentionMatMuls = 2 * 2;
        int linears = Count(fp, "Gemm") + Count(fp, "MatMul") - attentionMatMuls;
        Assert.Equal(2 * 4 + 2, linears);   // per layer qkv, out, fc1, fc2; the patch embedding and the head
        Assert.Equal(linears, Count(q, "MatMulInteger"));
        Assert.Equal(linears, Count(q, "DynamicQuantizeLinear"));
        Assert.Equal(linears, Count(q, "Cast"));
        Assert.Equal(attentionMatMuls, Count(q, "MatMul"));
        Assert.Equal(0, Count(q, "Gemm"));
        Assert.Contains("quantization", q.Metadata.Keys);
        Assert.True(q.Bytes < fp.Bytes * 0.5, $"{q.Bytes} B int8 against {fp.Bytes} B float32");   // weights in one byte instead of four

        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(q.Path!));
        var inits = proto.Graph.Initializer.ToDictionary(t => t.Name);
        foreach (var node in proto.Graph.Node.Where(n => n.OpType == "MatMulInteger"))
        {
            var w = inits[node.Input[1]];
            Assert.Equal((int)TensorProto.Types.DataType.Int8, w.DataType);
            var zp = inits[node.Input[3]];
            Assert.Equal((int)TensorProto.Types.DataType.Int8, zp.DataType);
            Assert.All(zp.RawData.ToByteArray(), b => Assert.Equal(0, b));
            Assert.Equal(quantization == OnnxQuantization.DynamicInt8PerChannel ? [w.Dims[1]] : Array.Empty<long>(), zp.Dims.ToArray());
        }
    }

    [Theory]
    [InlineData(OnnxQuantization.DynamicInt8)]
    [InlineData(OnnxQuantization.DynamicInt8PerChannel)]
    public void OnnxRuntimeFusesEveryChainIntoDynamicQuantizeMatMul(OnnxQuantization quantization)
    {
        var q = OnnxExporter.ToBytes(SmallVit(), 3, 32, 32, new OnnxExportOptions { Quantization = quantization });
        int linears = ModelProto.Parser.ParseFrom(q).Graph.Node.Count(n => n.OpType == "MatMulInteger");
        string optimized = _dir.File($"optimized-{quantization}.onnx");
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED, OptimizedModelFilePath = optimized })
        using (new InferenceSession(q, options)) { }
        var ops = ModelProto.Parser.ParseFrom(File.ReadAllBytes(optimized)).Graph.Node.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count());
        _log.WriteLine($"{quantization}, after ONNX Runtime's optimisations: {string.Join(", ", ops.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}"))}");
        Assert.Equal(linears, ops.GetValueOrDefault("DynamicQuantizeMatMul"));
        Assert.Equal(0, ops.GetValueOrDefault("MatMulInteger"));
        Assert.Equal(0, ops.GetValueOrDefault("DynamicQuantizeLinear"));
        Assert.Equal(0, ops.GetValueOrDefault("Cast"));
    }

    /// <summary>One Linear layer (48 → 40, bias) on the images' rows shifted by +1.5: no LayerNorm after it to hide a
    /// per-row error (a wrong zero point shifts every output of a row by the same amount), and an activation zero point
    /// that is not 0.</summary>
    private sealed class OneLinear : Module
    {
        private readonly Linear _fc;

        public OneLinear()
        {
            Init.Seed(3);
            _fc = RegisterModule("fc", new Linear(48, 40));
        }

        protected override Tensor ForwardCore(Tensor x) => _fc.Forward(x + 1.5f);
    }

    /// <summary>
    /// ‖int8 − float32‖ / ‖float32‖ over one Linear layer's outputs, ONNX Runtime's int8 against VitSharp's float32, as
    /// written (no fusion) and fused. Achieved (deterministic: seeded weights and images): 0.0062 per tensor, 0.0059 per channel, the same fused and
    /// unfused; bounds about 1.3× that.
    /// </summary>
    [Theory]
    [InlineData(OnnxQuantization.DynamicInt8, GraphOptimizationLevel.ORT_ENABLE_ALL, 0.008)]
    [InlineData(OnnxQuantization.DynamicInt8, GraphOptimizationLevel.ORT_DISABLE_ALL, 0.008)]
    [InlineData(OnnxQuantization.DynamicInt8PerChannel, GraphOptimizationLevel.ORT_ENABLE_ALL, 0.0075)]
    [InlineData(OnnxQuantization.DynamicInt8PerChannel, GraphOptimizationLevel.ORT_DISABLE_ALL, 0.0075)]
    public void OneLinearLayerQuantizedIsWithinTheInt8ErrorOfFloat32(OnnxQuantization quantization, GraphOptimizationLevel level, double bound)
    {
        var model = new OneLinear();
        var images = Tensor.RandN(new Random(9), 0f, 1f, 2, 1, 6, 48);
        Tensor expected;
        using (VitSharp.Autograd.NoGrad()) expected = model.Forward(images);
        using var options = new SessionOptions { GraphOptimizationLevel = level };
        using var session = new InferenceSession(OnnxExporter.ToBytes(model, 1, 6, 48, new OnnxExportOptions { Quantization = quantization }), options);
        var actual = Run(session, images);
        Assert.Equal(expected.Size, actual.Length);
        double err = 0, norm = 0;
        for (int i = 0; i < actual.Length; i++) { err += Math.Pow(actual[i] - expected.Data[i], 2); norm += Math.Pow(expected.Data[i], 2); }
        double relative = Math.Sqrt(err / norm);
        _log.WriteLine($"{quantization}, {level}: ‖int8 − float32‖/‖float32‖ = {relative:F5} over {actual.Length} outputs");
        Assert.True(relative <= bound, $"relative error {relative:F5} > {bound}");
    }

    [Fact]
    public void WeightsAreStoredTransposedSymmetricWithScaleMaxOver127()
    {
        // W [out 2, in 3]; Wᵀ [3, 2] holds column r = row r of W.
        var w = new Tensor([0.5f, -1.3f, 0.1f, 2.54f, 1.0f, -0.64f], 2, 3);
        var (q, s) = OnnxGraphBuilder.QuantizeWeightTransposed(w, perChannel: false);
        Assert.Equal([2.54f / 127f], s);
        Assert.Equal(new sbyte[] { 25, 127, -65, 50, 5, -32 }, q);   // scale 0.02: 0.5 → 25, −1.3 → −65, 0.1 → 5; 2.54 → 127, 1 → 50, −0.64 → −32
        var (qc, sc) = OnnxGraphBuilder.QuantizeWeightTransposed(w, perChannel: true);
        Assert.Equal([1.3f / 127f, 2.54f / 127f], sc);
        Assert.Equal(new sbyte[] { 49, 127, -127, 50, 10, -32 }, qc);   // row 0 by 1.3/127: 0.5 → 48.8 → 49, 0.1 → 9.8 → 10
        // All-zero channel: scale 1, not a division by zero.
        var (qz, sz) = OnnxGraphBuilder.QuantizeWeightTransposed(new Tensor(new float[4], 2, 2), perChannel: true);
        Assert.Equal([1f, 1f], sz);
        Assert.All(qz, v => Assert.Equal(0, v));
    }

    [Fact]
    public void UnknownQuantizationIsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => OnnxExporter.ToBytes(SmallVit(), 3, 32, 32, new OnnxExportOptions { Quantization = (OnnxQuantization)7 }));
        Assert.Contains("unknown quantization 7", e.Message);
    }
}
