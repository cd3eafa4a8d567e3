using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using VitSharp.Training;

namespace VitSharp.Tests.Cli;

/// <summary>
/// <c>vit train</c> as a real child process (the built vit.dll) stopped by signals: SIGINT (Ctrl-C) and SIGTERM save a
/// checkpoint and exit with 130, and SIGKILL at random moments — some of them inside a checkpoint write, which
/// happens after every epoch of this tiny run — never leaves a partial checkpoint in place of a good one.
/// </summary>
[Trait("Category", "Process")]
[Trait("Category", "Slow")]
[Collection(nameof(SignalCliTests))]
[CollectionDefinition(nameof(SignalCliTests), DisableParallelization = true)]
public sealed class SignalCliTests : IDisposable
{
    private const int SIGINT = 2, SIGKILL = 9, SIGTERM = 15, SIGSTOP = 19;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vitsharp-signals-" + Guid.NewGuid().ToString("N"))).FullName;
    private string OutDir => Path.Combine(_dir, "run");
    private string CheckpointPath => Path.Combine(OutDir, Trainer.CheckpointFile);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>A run of tiny epochs (batches of 64): an epoch and its checkpoint take well under a second.</summary>
    private string[] TinyRun(int trainImages, int testImages, int epochs) =>
        ["train", "--train-limit", trainImages.ToString(), "--test-limit", testImages.ToString(), "--batch-size", "64", "--epochs", epochs.ToString(), "--out", OutDir];

    private static long SavedStep(string path) => Checkpoint.Load(path).Info.Training["step"]!.GetValue<long>();

    [Fact]
    public void SigintSavesACheckpointExitsWith130AndSigtermStopsTheResumedRunTheSameWay()
    {
        using (var run = VitProcess.Start(TinyRun(trainImages: 256, testImages: 128, epochs: 500)))
        {
            run.WaitForLine(l => l.StartsWith("epoch 2/500:", StringComparison.Ordinal));
            run.Signal(SIGINT);
            run.WaitForExit();
            Assert.True(run.ExitCode == 130, run.Transcript());
            Assert.Contains(run.Err, l => l.StartsWith("vit: interrupted", StringComparison.Ordinal));
            Assert.Contains(run.Out, l => l.StartsWith("Interrupted", StringComparison.Ordinal));
            Assert.Equal(CheckpointPath, run.Out.Last());
            Assert.DoesNotContain(run.Err, l => l.Contains("Exception", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        }
        long stepAfterSigint = SavedStep(CheckpointPath);
        Assert.True(stepAfterSigint >= 8, $"the checkpoint holds step {stepAfterSigint}, before the end of epoch 2 (4 steps per epoch)");

        int nextEpoch = (int)(stepAfterSigint / 4) + 1;   // the epoch the resumed run finishes first (mid-epoch positions are kept)
        using (var resumed = VitProcess.Start("train", "--out", OutDir, "--resume"))
        {
            resumed.WaitForLine(l => l.StartsWith("resuming", StringComparison.Ordinal));
            resumed.WaitForLine(l => l.StartsWith($"epoch {nextEpoch}/500:", StringComparison.Ordinal));
            resumed.Signal(SIGTERM);
            resumed.WaitForExit();
            Assert.True(resumed.ExitCode == 130, resumed.Transcript());
            Assert.Contains(resumed.Err, l => l.StartsWith("vit: terminated", StringComparison.Ordinal));
            Assert.Equal(CheckpointPath, resumed.Out.Last());
        }
        long stepAfterSigterm = SavedStep(CheckpointPath);
        Assert.True(stepAfterSigterm >= 4 * nextEpoch, $"the resumed run's checkpoint holds step {stepAfterSigterm}, before the end of epoch {nextEpoch}");
    }

    [Fact]
    public void KillingTheProcessInsideACheckpointWriteOrAtRandomMomentsNeverLeavesAPartialCheckpoint()
    {
        var random = new Random(20261121);
        long lastStep = 0;
        int caughtWriting = 0;
        for (int round = 0; round < 8; round++)
        {
            // One step per epoch: a checkpoint is written every fraction of a second.
            using var run = round == 0
                ? VitProcess.Start(TinyRun(trainImages: 64, testImages: 64, epochs: 100000))
                : VitProcess.Start("train", "--out", OutDir, "--resume");
            run.WaitForLine(l => l.StartsWith("epoch ", StringComparison.Ordinal) && l.Contains(": train loss", StringComparison.Ordinal));
            if (round % 2 == 0)
            {
                // Frozen (SIGSTOP) from the file-system event of the next checkpoint write, which is then under
                // way: the file under the final name must be the last whole checkpoint at that very moment.
                bool writing = run.FreezeOnWrite(OutDir, Trainer.CheckpointFile);
                if (writing) caughtWriting++;
                long frozenStep = SavedStep(CheckpointPath);
                Assert.True(frozenStep >= Math.Max(1, lastStep), $"round {round}: the checkpoint holds step {frozenStep}, after {lastStep}");
            }
            else
                Thread.Sleep(random.Next(0, 600));    // anywhere in the step / evaluation / write cycle
            run.Signal(SIGKILL);
            run.WaitForExit();
            Assert.True(run.ExitCode == 128 + SIGKILL, run.Transcript());

            long step = SavedStep(CheckpointPath);    // throws on a partial file
            Assert.True(step >= Math.Max(1, lastStep), $"round {round}: the checkpoint holds step {step}, after {lastStep}");
            lastStep = step;
        }
        Assert.True(caughtWriting >= 2, $"only {caughtWriting} of 4 freezes happened while a checkpoint file was being written");
    }

    /// <summary>The built vit.dll in a child process with SIGINT at its default (as in a terminal), lines collected.</summary>
    private sealed class VitProcess : IDisposable
    {
        private readonly Process _p;
        private readonly ConcurrentQueue<string> _out = new(), _err = new();
        private readonly SemaphoreSlim _lines = new(0);
        private readonly string _command;

        private VitProcess(string[] args)
        {
            string vitDll = Path.Combine(AppContext.BaseDirectory, "vit.dll");
            Assert.True(File.Exists(vitDll), $"{vitDll} is missing (the test project references the CLI project)");
            string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
            // A job started from a non-interactive shell inherits SIGINT ignored, and .NET keeps ignored signals
            // ignored; env --default-signal gives the child what a terminal's foreground process has.
            var psi = new ProcessStartInfo("env") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            psi.ArgumentList.Add("--default-signal=INT");
            psi.ArgumentList.Add(dotnet);
            psi.ArgumentList.Add(vitDll);
            foreach (var a in args) psi.ArgumentList.Add(a);
            _command = "vit " + string.Join(' ', args);
            _p = new Process { StartInfo = psi };
            _p.OutputDataReceived += (_, e) => { if (e.Data is { } l) { _out.Enqueue(l); _lines.Release(); } };
            _p.ErrorDataReceived += (_, e) => { if (e.Data is { } l) _err.Enqueue(l); };
            _p.Start();
            _p.BeginOutputReadLine();
            _p.BeginErrorReadLine();
        }

        public static VitProcess Start(params string[] args) => new(args);

        public IReadOnlyList<string> Out => _out.ToArray();
        public IReadOnlyList<string> Err => _err.ToArray();
        public int ExitCode => _p.ExitCode;

        public string Transcript() =>
            $"{_command}: exit {(_p.HasExited ? _p.ExitCode.ToString() : "(running)")}\nstdout:\n{string.Join('\n', Out)}\nstderr:\n{string.Join('\n', Err)}";

        /// <summary>Waits until a stdout line matches (lines already seen count).</summary>
        public void WaitForLine(Func<string, bool> match)
        {
            var deadline = Stopwatch.StartNew();
            int seen = 0;
            while (true)
            {
                var lines = _out.ToArray();
                for (; seen < lines.Length; seen++)
                    if (match(lines[seen])) return;
                if (_p.HasExited && _out.Count == seen) Assert.Fail($"the process ended before the line awaited\n{Transcript()}");
                if (deadline.Elapsed > Patience) Assert.Fail($"no such line after {Patience.TotalMinutes} min\n{Transcript()}");
                _lines.Wait(TimeSpan.FromMilliseconds(200));
            }
        }

        /// <summary>
        /// Sends SIGSTOP from inside the first file-system event (inotify) on a file named <paramref name="name"/> or
        /// <paramref name="name"/>.tmp in <paramref name="dir"/>. Returns whether the process had not yet
        /// renamed that write into place when it stopped (a .tmp file is still there, or the write went to the
        /// final name directly).
        /// </summary>
        public bool FreezeOnWrite(string dir, string name)
        {
            using var frozen = new ManualResetEventSlim();
            int stopped = 0;
            string? changedName = null;
            using var watcher = new FileSystemWatcher(dir) { NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.FileName };
            FileSystemEventHandler onEvent = (_, e) =>
            {
                if (e.Name != name && e.Name != name + ".tmp") return;
                if (Interlocked.Exchange(ref stopped, 1) != 0) return;
                kill(_p.Id, SIGSTOP);
                changedName = e.Name;
                frozen.Set();
            };
            watcher.Changed += onEvent;
            watcher.Created += onEvent;
            watcher.EnableRaisingEvents = true;
            if (!frozen.Wait(Patience)) Assert.Fail($"no checkpoint write within {Patience.TotalMinutes} min\n{Transcript()}");
            return changedName == name || File.Exists(Path.Combine(dir, name + ".tmp"));
        }

        public void Signal(int signal) => Assert.True(kill(_p.Id, signal) == 0, $"kill({_p.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");

        public void WaitForExit()
        {
            if (!_p.WaitForExit(Patience)) Assert.Fail($"the process did not exit within {Patience.TotalMinutes} min of the signal\n{Transcript()}");
            _p.WaitForExit();   // drains the redirected streams
        }

        public void Dispose()
        {
            try { if (!_p.HasExited) _p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            _p.Dispose();
            _lines.Dispose();
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int kill(int pid, int sig);
    }
}
