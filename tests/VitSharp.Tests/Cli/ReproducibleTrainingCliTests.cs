using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary>
/// "Same seed, same curve" across processes, with dropout on: dropout masks are seeded with the stable
/// <see cref="VitSharp.NN.SeedMix"/> (once <see cref="HashCode.Combine{T1, T2}"/>, which .NET randomises per process).
/// Each test runs <c>vit train</c> (the built vit.dll) in separate child processes on Fashion-MNIST and compares the
/// metrics.jsonl curves (all but the timings) and the final weights exactly.
/// </summary>
[Trait("Category", "Process")]
[Trait("Category", "DataSet")]
[Trait("Category", "Slow")]
[Collection(nameof(ReproducibleTrainingCliTests))]
[CollectionDefinition(nameof(ReproducibleTrainingCliTests), DisableParallelization = true)]
public sealed class ReproducibleTrainingCliTests : IDisposable
{
    private const int SIGTERM = 15;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(5);

    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-repro-" + Guid.NewGuid().ToString("N"))).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>A tiny ViT run with dropout (in the transformer and after the embedding) and two data-parallel replicas.</summary>
    private string[] Run(string outDir, int epochs) =>
        ["train", "--set", "dropout=0.1", "--set", "emb_dropout=0.1", "--train-limit", "256", "--test-limit", "64",
         "--epochs", epochs.ToString(), "--batch-size", "32", "--seed", "5", "--threads", "2", "--out", outDir];

    /// <summary>metrics.jsonl without the timings (seconds, images per second), one line per epoch.</summary>
    private static List<string> Curve(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, Trainer.MetricsFile)).Where(l => l.Length > 0).Select(l =>
        {
            var o = (JsonObject)JsonNode.Parse(l)!;
            o.Remove("seconds");
            o.Remove("images_per_second");
            return o.ToJsonString();
        }).ToList();

    private static void AssertSameWeights(string outA, string outB)
    {
        var a = Checkpoint.Load(Path.Combine(outA, Trainer.CheckpointFile)).Model.StateDict();
        var b = Checkpoint.Load(Path.Combine(outB, Trainer.CheckpointFile)).Model.StateDict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a) Assert.True(t.Data.AsSpan().SequenceEqual(b[name].Data), $"{name} differs");
    }

    [Fact]
    public void TwoProcessesWithTheSameSeedAndDropoutDrawTheSameCurve()
    {
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        using (var first = VitProcess.Start(Run(a, epochs: 2)))
        using (var second = VitProcess.Start(Run(b, epochs: 2)))
        {
            first.WaitForExit(0);
            second.WaitForExit(0);
        }
        var curve = Curve(a);
        Assert.Equal(2, curve.Count);
        Assert.Equal(curve, Curve(b));
        AssertSameWeights(a, b);
    }

    [Fact]
    public void ARunStoppedAndResumedInAnotherProcessMatchesAnUninterruptedOne()
    {
        string whole = Path.Combine(_dir, "whole"), parts = Path.Combine(_dir, "parts");
        using (var uninterrupted = VitProcess.Start(Run(whole, epochs: 3)))
        {
            using (var stopped = VitProcess.Start(Run(parts, epochs: 3)))
            {
                // Stopped somewhere in epoch 2 or 3 (SIGTERM saves a checkpoint of the step reached and exits with 130).
                stopped.WaitForLine(l => l.StartsWith("epoch 1/3:", StringComparison.Ordinal));
                stopped.Signal(SIGTERM);
                stopped.WaitForExit(130);
            }
            long step = Checkpoint.Load(Path.Combine(parts, Trainer.CheckpointFile)).Info.Training["step"]!.GetValue<long>();
            Assert.InRange(step, 8, 23);                                            // 8 steps per epoch: stopped before the end
            using (var resumed = VitProcess.Start("train", "--out", parts, "--resume"))
            {
                resumed.WaitForLine(l => l.StartsWith("resuming", StringComparison.Ordinal));
                resumed.WaitForExit(0);
            }
            uninterrupted.WaitForExit(0);
        }
        var curve = Curve(whole);
        Assert.Equal(3, curve.Count);
        Assert.Equal(curve, Curve(parts));
        AssertSameWeights(whole, parts);
    }

    /// <summary>The built vit.dll in a child process, its output lines collected.</summary>
    private sealed class VitProcess : IDisposable
    {
        private readonly Process _p;
        private readonly ConcurrentQueue<string> _out = new(), _err = new();
        private readonly string _command;

        private VitProcess(string[] args)
        {
            string vitDll = Path.Combine(AppContext.BaseDirectory, "vit.dll");
            Assert.True(File.Exists(vitDll), $"{vitDll} is missing (the test project references the CLI project)");
            string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
            var psi = new ProcessStartInfo(dotnet) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            psi.ArgumentList.Add(vitDll);
            foreach (var a in args) psi.ArgumentList.Add(a);
            _command = "vit " + string.Join(' ', args);
            _p = new Process { StartInfo = psi };
            _p.OutputDataReceived += (_, e) => { if (e.Data is { } l) _out.Enqueue(l); };
            _p.ErrorDataReceived += (_, e) => { if (e.Data is { } l) _err.Enqueue(l); };
            _p.Start();
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }

        public static VitProcess Start(params string[] args) => new(args);

        private string Transcript() =>
            $"{_command}: exit {(_p.HasExited ? _p.ExitCode.ToString() : "(running)")}\nstdout:\n{string.Join('\n', _out)}\nstderr:\n{string.Join('\n', _err)}";

        public void WaitForLine(Func<string, bool> match)
        {
            var clock = Stopwatch.StartNew();
            while (!_out.Any(match))
            {
                if (_p.HasExited) { _p.WaitForExit(); if (_out.Any(match)) return; Assert.Fail($"the process ended before the line awaited\n{Transcript()}"); }
                if (clock.Elapsed > Patience) Assert.Fail($"no such line after {Patience.TotalMinutes} min\n{Transcript()}");
                Thread.Sleep(50);
            }
        }

        public void Signal(int signal) => Assert.True(kill(_p.Id, signal) == 0, $"kill({_p.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");

        public void WaitForExit(int expectedCode)
        {
            if (!_p.WaitForExit(Patience)) Assert.Fail($"the process did not exit within {Patience.TotalMinutes} min\n{Transcript()}");
            _p.WaitForExit();   // drains the redirected streams
            Assert.True(_p.ExitCode == expectedCode, Transcript());
        }

        public void Dispose()
        {
            try { if (!_p.HasExited) _p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            _p.Dispose();
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int kill(int pid, int sig);
    }
}
