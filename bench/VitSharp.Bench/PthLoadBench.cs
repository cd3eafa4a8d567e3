using static VitSharp.Bench.BenchArgs;
using System.Diagnostics;
using VitSharp.IO;
using VitSharp.Models;

namespace VitSharp.Bench;

/// <summary>
/// <c>pth-load</c>: writes a ViT-B/16 state_dict (torchvision layout, random values) with <see cref="TorchFile.Save(string, IEnumerable{KeyValuePair{string, Tensor}})"/>,
/// then times <see cref="TorchFile.LoadStateDict"/> N times: median/min/max seconds, and the peak resident-memory
/// growth of a load (VmHWM after resetting it through /proc/self/clear_refs, minus the resident set before; and the
/// process's peak over all loads minus its resident set before the first) relative to the weights' float32 bytes. The
/// loaded tensors themselves are 1× (the GC keeps freed pages between rounds, so later rounds may show less). Targets: under 2 s and under 2× the weights.
/// </summary>
public static class PthLoadBench
{
    public static void Run(string[] args)
    {
        string preset = Arg(args, "--model") ?? "vit_b_16";
        int rounds = int.Parse(Arg(args, "--rounds") ?? "5");
        string path = Arg(args, "--path") ?? Path.Combine(Path.GetTempPath(), $"vitsharp-bench-{preset}.pth");

        long weightBytes;
        {
            var model = Presets.Get(preset).Build();
            var sd = model.StateDict();
            weightBytes = sd.Values.Sum(t => (long)t.Size * 4);
            var sw = Stopwatch.StartNew();
            TorchFile.Save(path, sd);
            Console.WriteLine($"{preset}: {sd.Count} tensors, {sd.Values.Sum(t => (long)t.Size):N0} parameters, {weightBytes / 1e6:F1} MB float32; " +
                $"saved {new FileInfo(path).Length / 1e6:F1} MB to {path} in {sw.Elapsed.TotalSeconds:F2} s");
        }
        Collect();
        var times = new List<double>();
        var growth = new List<long>();
        long overall = 0;
        bool resettable = ResetPeak();
        long baseline = Status("VmRSS");   // before any load: the whole run's peak is measured against it too
        for (int r = 0; r < rounds; r++)
        {
            Collect();
            long rssBefore = Status("VmRSS");
            long runPeak = Status("VmHWM");
            resettable &= ResetPeak();
            long managedBefore = GC.GetTotalMemory(false);
            var (s, count) = LoadOnce(path);
            long peak = resettable ? Status("VmHWM") : Status("VmRSS");
            long managed = GC.GetTotalMemory(false) - managedBefore;
            times.Add(s);
            growth.Add(peak - rssBefore);
            overall = Math.Max(overall, Math.Max(peak, runPeak) - baseline);
            Console.WriteLine($"  round {r + 1}: {s:F3} s, {count} tensors, peak RSS growth {(peak - rssBefore) / 1e6:F1} MB " +
                $"({(double)(peak - rssBefore) / weightBytes:F2}× weights), managed bytes allocated {managed / 1e6:F1} MB, working set {Environment.WorkingSet / 1e6:F0} MB");
        }
        times.Sort();
        Console.WriteLine($"pth-load {preset}: median {times[times.Count / 2]:F3} s, min {times[0]:F3} s, max {times[^1]:F3} s over {rounds} loads; " +
            $"peak RSS growth max {growth.Max() / 1e6:F1} MB = {(double)growth.Max() / weightBytes:F2}× the weights ({weightBytes / 1e6:F1} MB)" +
            $"; process peak over the RSS before the first load {overall / 1e6:F1} MB = {(double)overall / weightBytes:F2}×" +
            (resettable ? "" : " (VmHWM could not be reset: RSS after the load instead)"));
        File.Delete(path);
    }

    /// <summary>One timed load; the result is dropped on return (no stack slot keeps it alive into the next round).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static (double Seconds, int Count) LoadOnce(string path)
    {
        var sw = Stopwatch.StartNew();
        var loaded = TorchFile.LoadStateDict(path);
        return (sw.Elapsed.TotalSeconds, loaded.Count);
    }

    private static void Collect()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>Resets VmHWM to the current RSS (Linux: "5" into /proc/self/clear_refs).</summary>
    private static bool ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>A /proc/self/status field in bytes (0 when unavailable).</summary>
    private static long Status(string field)
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { return 0; }
    }
}
