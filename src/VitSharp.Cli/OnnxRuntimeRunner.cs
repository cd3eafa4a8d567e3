using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using VitSharp.Export;
using VitSharp.Inference;
using VitSharp.NN;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit bench --onnx</c>'s peer: the benchmarked model exported to ONNX in memory (<see cref="OnnxExporter"/>, opset 17,
/// dynamic batch) and run by ONNX Runtime on the same images, with its default graph optimisations (all levels) and as
/// many intra-op threads as VitSharp's kernels use. For <see cref="InferencePrecision.Int8"/> the export is dynamically
/// quantized (<see cref="OnnxQuantization.DynamicInt8"/>, the pattern ONNX Runtime fuses into its DynamicQuantizeMatMul
/// int8 kernel).
/// </summary>
internal sealed class OnnxRuntimeRunner : IDisposable
{
    private readonly InferenceSession _session;
    private readonly OrtValue _input;
    private readonly RunOptions _run = new();
    private readonly string[] _inputNames, _outputNames;
    private bool _profiling;

    /// <summary>Exports <paramref name="model"/> (in eval mode) for <paramref name="images"/>' size and opens the session.</summary>
    /// <param name="model">The model, in eval mode.</param>
    /// <param name="images">The batch every step runs.</param>
    /// <param name="threads">Intra-op threads.</param>
    /// <param name="precision">Float32, or Int8 for the dynamically quantized export (BFloat16 is not an ONNX Runtime CPU path).</param>
    /// <param name="profile">Turn on ONNX Runtime's session profiling (per-node kernel times), read by <see cref="EndProfile"/>.</param>
    public OnnxRuntimeRunner(Module model, Tensor images, int threads, InferencePrecision precision = InferencePrecision.Float32,
        bool profile = false)
    {
        if (precision == InferencePrecision.BFloat16)
            throw new ArgumentException("ONNX Runtime has no bfloat16 CPU path worth timing: compare bf16 against its fp32");
        Precision = precision;
        long start = Stopwatch.GetTimestamp();
        var bytes = OnnxExporter.ToBytes(model, images.Dim(1), images.Dim(2), images.Dim(3), new OnnxExportOptions
        {
            Quantization = precision == InferencePrecision.Int8 ? OnnxQuantization.DynamicInt8 : OnnxQuantization.None,
        });
        ExportMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        var options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (profile)
        {
            // The prefix first: enabling profiling takes the prefix set at that moment.
            options.ProfileOutputPathPrefix = Path.Combine(Path.GetTempPath(), $"vitsharp-ort-profile-{Environment.ProcessId}-");
            options.EnableProfiling = true;
        }
        _session = new InferenceSession(bytes, options);
        _profiling = profile;
        Threads = threads;
        Version = OrtEnv.Instance().GetVersionString();
        _input = OrtValue.CreateTensorValueFromMemory(images.Data, images.Shape.Select(d => (long)d).ToArray());
        _inputNames = [_session.InputMetadata.Keys.Single()];
        _outputNames = [_session.OutputMetadata.Keys.Single()];

        // Once, untimed: the two runtimes' logits on these images.
        Tensor expected;
        using (TensorScope.Begin())
        using (Autograd.NoGrad())
        {
            expected = model.Forward(images);
            using var outputs = _session.Run(_run, _inputNames, [_input], _outputNames);
            var actual = outputs[0].GetTensorDataAsSpan<float>();
            double diff = 0, ab = 0, aa = 0, bb = 0;
            for (int i = 0; i < actual.Length; i++)
            {
                float x = actual[i], y = expected.Data[i];
                diff = Math.Max(diff, Math.Abs(x - y));
                ab += (double)x * y; aa += (double)x * x; bb += (double)y * y;
            }
            MaxAbsDifference = diff;
            Cosine = aa > 0 && bb > 0 ? ab / Math.Sqrt(aa * bb) : aa == bb ? 1 : 0;
        }
    }

    /// <summary>What ONNX Runtime runs: float32 or the int8-quantized export.</summary>
    public InferencePrecision Precision { get; }

    /// <summary>Cosine similarity of VitSharp's and ONNX Runtime's logits over the images (all logits as one vector).</summary>
    public double Cosine { get; }

    /// <summary>ONNX Runtime's version.</summary>
    public string Version { get; }

    /// <summary>Intra-op threads.</summary>
    public int Threads { get; }

    /// <summary>How long the export took (ms).</summary>
    public double ExportMs { get; }

    /// <summary>Max |VitSharp − ONNX Runtime| over the logits of the images.</summary>
    public double MaxAbsDifference { get; }

    /// <summary>Runs one batch; returns the milliseconds it took.</summary>
    public double Step()
    {
        long start = Stopwatch.GetTimestamp();
        using var outputs = _session.Run(_run, _inputNames, [_input], _outputNames);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    /// <summary>
    /// Ends ONNX Runtime's profiling and returns its kernel time per operator type over the last <paramref name="runs"/>
    /// runs (the timed steps; the untimed comparison run and warm-up come first), per run, largest first. The profile file
    /// ONNX Runtime wrote (in the temp directory) is deleted.
    /// </summary>
    public IReadOnlyList<BenchCommand.OpTime> EndProfile(int runs)
    {
        if (!_profiling) throw new InvalidOperationException("the session was opened without profiling");
        _profiling = false;
        string file = _session.EndProfiling();
        try
        {
            using var stream = File.OpenRead(file);
            using var doc = JsonDocument.Parse(stream);
            var windows = new List<(long Start, long End)>();
            foreach (var e in doc.RootElement.EnumerateArray())
                if (e.TryGetProperty("cat", out var cat) && cat.GetString() == "Session" && e.GetProperty("name").GetString() == "model_run")
                {
                    long ts = e.GetProperty("ts").GetInt64();
                    windows.Add((ts, ts + e.GetProperty("dur").GetInt64()));
                }
            windows = windows.OrderBy(w => w.Start).TakeLast(runs).ToList();
            if (windows.Count == 0) return [];
            var table = new Dictionary<string, (double Us, long Calls)>();
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                if (!e.TryGetProperty("cat", out var cat) || cat.GetString() != "Node") continue;
                if (e.GetProperty("name").GetString() is not { } name || !name.EndsWith("_kernel_time", StringComparison.Ordinal)) continue;
                long ts = e.GetProperty("ts").GetInt64();
                if (!windows.Any(w => ts >= w.Start && ts <= w.End)) continue;
                string op = e.TryGetProperty("args", out var a) && a.TryGetProperty("op_name", out var o) ? o.GetString() ?? "?" : "?";
                table.TryGetValue(op, out var v);
                table[op] = (v.Us + e.GetProperty("dur").GetDouble(), v.Calls + 1);
            }
            int n = windows.Count;
            return table.Select(kv => new BenchCommand.OpTime(kv.Key, kv.Value.Us / 1000 / n, (double)kv.Value.Calls / n))
                .OrderByDescending(t => t.MsPerStep).ToList();
        }
        finally
        {
            try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    public void Dispose()
    {
        _input.Dispose();
        _run.Dispose();
        _session.Dispose();
    }
}
