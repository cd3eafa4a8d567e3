#!/usr/bin/env -S dotnet run
// ONNX Runtime alone: a preset exported float32 and dynamically quantized to int8 (OnnxQuantization.DynamicInt8, and
// DynamicInt8PerChannel), timed interleaved step by step in one process with the session settings of `vit bench --onnx`
// (all graph optimisations, sequential, intra-op threads = VITSHARP_THREADS or the processor count). The ORT columns of
// docs/performance.md "int8 and bf16 against ONNX Runtime" until VitSharp's own int8/bf16 are wired into
// `vit bench --onnx --precision int8|bf16`, which then times both sides interleaved.
// Usage: dotnet run -c Release scripts/ort-int8-bench.cs -- PRESET BATCH [STEPS] [WARMUP]   (Release: the export traces the model)
#:project ../src/VitSharp/VitSharp.csproj
#:package Microsoft.ML.OnnxRuntime@1.32.0
#:property TreatWarningsAsErrors=false
#:property GenerateDocumentationFile=false
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using VitSharp;
using VitSharp.Export;
using VitSharp.Kernels;
using VitSharp.Models;
using VitSharp.NN;

var inv = CultureInfo.InvariantCulture;
string name = args.Length > 0 ? args[0] : "vit-b16";
int batch = args.Length > 1 ? int.Parse(args[1], inv) : 1;
int steps = args.Length > 2 ? int.Parse(args[2], inv) : 10;
int warmup = args.Length > 3 ? int.Parse(args[3], inv) : 3;
var preset = Presets.Get(name);
Init.Seed(0);
var model = preset.Build();
model.Eval();
var images = Tensor.RandN(new Random(1), 0, 1, batch, preset.Channels, preset.ImageSize, preset.ImageSize);
int threads = ComputeThreads.Count;
var variants = new[] { ("fp32", OnnxQuantization.None), ("int8", OnnxQuantization.DynamicInt8), ("int8 per-channel", OnnxQuantization.DynamicInt8PerChannel) };
var sessions = new List<(string Name, InferenceSession Session, OrtValue Input, string[] In, string[] Out)>();
foreach (var (label, q) in variants)
{
    var bytes = OnnxExporter.ToBytes(model, preset.Channels, preset.ImageSize, preset.ImageSize, new OnnxExportOptions { Quantization = q });
    var options = new SessionOptions
    {
        IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
    };
    var s = new InferenceSession(bytes, options);
    sessions.Add((label, s, OrtValue.CreateTensorValueFromMemory(images.Data, images.Shape.Select(d => (long)d).ToArray()),
        [s.InputMetadata.Keys.Single()], [s.OutputMetadata.Keys.Single()]));
}
var run = new RunOptions();
var logits = sessions.Select(x => { using var o = x.Session.Run(run, x.In, [x.Input], x.Out); return o[0].GetTensorDataAsSpan<float>().ToArray(); }).ToList();
var times = sessions.Select(_ => new List<double>()).ToList();
for (int it = 0; it < warmup + steps; it++)
    for (int j = 0; j < sessions.Count; j++)
    {
        int k = (j + it) % sessions.Count;   // rotate which goes first
        var x = sessions[k];
        long t0 = Stopwatch.GetTimestamp();
        using (x.Session.Run(run, x.In, [x.Input], x.Out)) { }
        if (it >= warmup) times[k].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
    }
static double Median(List<double> t) { var s = t.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
double Cos(float[] a, float[] b) { double ab = 0, aa = 0, bb = 0; for (int i = 0; i < a.Length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; } return ab / Math.Sqrt(aa * bb); }
Console.WriteLine($"{preset.Name}, batch {batch}, onnx runtime {OrtEnv.Instance().GetVersionString()}, {threads} intra-op threads, {steps} timed steps after {warmup} warm-up, interleaved");
double fp = Median(times[0]);
for (int k = 0; k < sessions.Count; k++)
{
    double m = Median(times[k]);
    Console.WriteLine($"{sessions[k].Name,-17} median {m.ToString("F1", inv),8} ms, min {times[k].Min().ToString("F1", inv),8} ms, max {times[k].Max().ToString("F1", inv),8} ms; " +
        $"{(batch * 1000.0 / m).ToString("F1", inv)} images/s; fp32/this {(fp / m).ToString("F2", inv)}×; logits cosine to fp32 {Cos(logits[0], logits[k]).ToString("F6", inv)}");
}
foreach (var x in sessions) { x.Input.Dispose(); x.Session.Dispose(); }
