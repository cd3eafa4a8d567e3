using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace VitSharp.Tests.Distributed;

/// <summary>
/// The built vit.dll in child processes: under <c>mpirun -np N</c> on this machine (loopback, as root where needed,
/// oversubscribed on 2 cores, launched without ssh: <c>--mca plm isolated</c>), or alone. Output lines are collected from
/// mpirun (every rank's stdout and stderr); every wait has a deadline and Dispose kills the whole process tree.
/// </summary>
internal sealed class MpiJob : IDisposable
{
    public const string MpiRun = "/usr/bin/mpirun";
    public const int SIGINT = 2, SIGKILL = 9, SIGUSR1 = 10, SIGSTOP = 19;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    private readonly Process _p;
    private readonly ConcurrentQueue<string> _out = new(), _err = new();
    private readonly string _command;

    private MpiJob(ProcessStartInfo psi, string command)
    {
        _command = command;
        _p = new Process { StartInfo = psi };
        _p.OutputDataReceived += (_, e) => { if (e.Data is { } l) _out.Enqueue(Clean(l)); };
        _p.ErrorDataReceived += (_, e) => { if (e.Data is { } l) _err.Enqueue(Clean(l)); };
        _p.Start();
        _p.BeginOutputReadLine();
        _p.BeginErrorReadLine();
    }

    // Ranks write through mpirun's pseudo-terminals: .NET's console sends a keypad-mode sequence first.
    private static string Clean(string line) => line.Replace("\u001b[?1h\u001b=", "", StringComparison.Ordinal);

    private static ProcessStartInfo Psi(string file, IReadOnlyDictionary<string, string>? env)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        psi.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        return psi;
    }

    private static string VitDll()
    {
        string vitDll = Path.Combine(AppContext.BaseDirectory, "vit.dll");
        Assert.True(File.Exists(vitDll), $"{vitDll} is missing (the test project references the CLI project)");
        return vitDll;
    }

    private static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";

    /// <summary>mpirun's fixed arguments: local ranks only, no ssh, oversubscribed.</summary>
    private static readonly string[] MpiOptions = ["--oversubscribe", "--mca", "plm", "isolated"];

    /// <summary><c>mpirun -np <paramref name="ranks"/> dotnet vit.dll ARGS</c>.</summary>
    public static MpiJob Start(int ranks, params string[] args) => StartMpmd([(ranks, args)]);

    /// <summary>mpirun with several application contexts (<c>-np 1 vit … : -np 1 vit …</c>): ranks with different arguments.</summary>
    public static MpiJob StartMpmd(IReadOnlyList<(int Ranks, string[] Args)> apps, IReadOnlyDictionary<string, string>? env = null)
    {
        Assert.True(File.Exists(MpiRun), $"{MpiRun} is missing: install openmpi-bin (scripts/setup.sh does)");
        var psi = Psi(MpiRun, env);
        foreach (var o in MpiOptions) psi.ArgumentList.Add(o);
        for (int i = 0; i < apps.Count; i++)
        {
            if (i > 0) psi.ArgumentList.Add(":");
            psi.ArgumentList.Add("-np");
            psi.ArgumentList.Add(apps[i].Ranks.ToString());
            psi.ArgumentList.Add(Dotnet);
            psi.ArgumentList.Add(VitDll());
            foreach (var a in apps[i].Args) psi.ArgumentList.Add(a);
        }
        return new MpiJob(psi, "mpirun " + string.Join(" : ", apps.Select(a => $"-np {a.Ranks} vit {string.Join(' ', a.Args)}")));
    }

    /// <summary><c>dotnet vit.dll ARGS</c> without mpirun (with SIGINT at its default, as in a terminal).</summary>
    public static MpiJob StartAlone(IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        var psi = Psi("env", env);
        psi.ArgumentList.Add("--default-signal=INT");
        psi.ArgumentList.Add(Dotnet);
        psi.ArgumentList.Add(VitDll());
        foreach (var a in args) psi.ArgumentList.Add(a);
        return new MpiJob(psi, "vit " + string.Join(' ', args));
    }

    public IReadOnlyList<string> Out => _out.ToArray();
    public IReadOnlyList<string> Err => _err.ToArray();
    public int ExitCode => _p.ExitCode;
    public int Pid => _p.Id;

    public string Transcript() =>
        $"{_command}: exit {(_p.HasExited ? _p.ExitCode.ToString() : "(running)")}\nstdout:\n{string.Join('\n', Out)}\nstderr:\n{string.Join('\n', Err)}";

    /// <summary>Waits until a stdout line matches.</summary>
    public void WaitForLine(Func<string, bool> match)
    {
        var clock = Stopwatch.StartNew();
        while (!_out.Any(match))
        {
            if (_p.HasExited) { _p.WaitForExit(); if (_out.Any(match)) return; Assert.Fail($"the job ended before the line awaited\n{Transcript()}"); }
            if (clock.Elapsed > Patience) Assert.Fail($"no such line after {Patience.TotalMinutes} min\n{Transcript()}");
            Thread.Sleep(50);
        }
    }

    /// <summary>Waits for the end of the job (at most <paramref name="limit"/>, default 3 min) and returns how long it took.</summary>
    public TimeSpan WaitForExit(TimeSpan? limit = null)
    {
        var clock = Stopwatch.StartNew();
        if (!_p.WaitForExit(limit ?? Patience)) Assert.Fail($"the job did not end within {(limit ?? Patience).TotalSeconds} s\n{Transcript()}");
        _p.WaitForExit();   // drains the redirected streams
        return clock.Elapsed;
    }

    public void Signal(int signal) => Signal(_p.Id, signal);

    public static void Signal(int pid, int signal) => Assert.True(kill(pid, signal) == 0, $"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");

    /// <summary>The process id of rank <paramref name="rank"/> (a descendant of mpirun whose environment says so).</summary>
    public int RankPid(int rank)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid) || !IsDescendant(pid, _p.Id)) continue;
            try
            {
                var env = File.ReadAllText(Path.Combine(dir, "environ")).Split('\0');
                if (env.Contains($"OMPI_COMM_WORLD_RANK={rank}") && File.ReadAllText(Path.Combine(dir, "cmdline")).Contains("vit.dll", StringComparison.Ordinal))
                    return pid;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        Assert.Fail($"no process of rank {rank} under mpirun {_p.Id}\n{Transcript()}");
        return 0;
    }

    private static bool IsDescendant(int pid, int ancestor)
    {
        for (int i = 0; i < 8 && pid > 1; i++)
        {
            if (pid == ancestor) return true;
            try
            {
                string stat = File.ReadAllText($"/proc/{pid}/stat");
                pid = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
            }
            catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { return false; }
        }
        return false;
    }

    public void Dispose()
    {
        try { if (!_p.HasExited) _p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _p.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}
