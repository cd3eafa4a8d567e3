using System.Text.Json;
using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.Import;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.Training;

namespace VitSharp.Fuzz;

/// <summary>A fuzz input broke the parser contract (thrown so AFL and the regression tests record it).</summary>
public sealed class ContractViolationException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// One fuzz target per parser entry point, shared by the AFL harness (fuzz/VitSharp.Fuzz) and the regression tests
/// (tests/VitSharp.Tests/Regressions). The contract: the entry point returns, or throws the parser's own exception types;
/// any other exception propagates (a crash); allocation stays within <see cref="AllocationBound"/>.
/// </summary>
public static class FuzzTargets
{
    public static readonly string[] Names = ["safetensors", "checkpoint", "pth", "npz", "idx", "cifar", "png", "jpeg", "hfconfig"];

    /// <summary>Allowed allocation: 64× the input plus 64 MB; for compressed inputs (idx .gz, npz and pth zips, PNG and
    /// JPEG pixels) the deflate limit 1032× counts twice (decompressed bytes plus the arrays they fill).</summary>
    public static long AllocationBound(string target, int inputLength) => target switch
    {
        "idx" or "npz" or "pth" or "png" or "jpeg" => 2 * 1032L * inputLength + (64L << 20),
        _ => 64L * inputLength + (64L << 20),
    };

    /// <summary>The exception types the entry point documents.</summary>
    public static bool IsExpected(string target, Exception e) => target switch
    {
        "safetensors" => e is SafeTensorsException,
        "checkpoint" => e is CheckpointException or SafeTensorsException,
        "pth" => e is TorchFileException,
        "npz" => e is NpzException,
        "idx" or "cifar" or "png" or "jpeg" => e is DataSetException,
        "hfconfig" => e is ModelConfigException or ImportException,
        _ => false,
    };

    [ThreadStatic] private static string? _tempDir;

    /// <summary>A temporary folder per process and thread (regression tests run in parallel).</summary>
    private static string TempDir => _tempDir ??=
        Path.Combine(Path.GetTempPath(), $"vitsharp-fuzz-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}");

    /// <summary>The fixture directory (hfconfig's fixed weights); $VITSHARP_FIXTURES or /work/shared/fixtures unless set.</summary>
    public static string FixturesDir { get; set; } =
        Environment.GetEnvironmentVariable("VITSHARP_FIXTURES") is { Length: > 0 } r ? r : "/work/shared/fixtures";

    private static long Allocated(bool thisThreadOnly) =>
        thisThreadOnly ? GC.GetAllocatedBytesForCurrentThread() : GC.GetTotalAllocatedBytes(precise: false);

    /// <summary>
    /// Runs one input; returns a short description of the outcome, throws on a contract violation. The fuzzer counts the
    /// whole process's allocation; tests running in parallel count only this thread's (<paramref name="thisThreadOnly"/>).
    /// </summary>
    public static string Run(string target, byte[] data, bool thisThreadOnly = false)
    {
        long before = Allocated(thisThreadOnly);
        string outcome;
        try
        {
            outcome = "ok " + Call(target, data);
        }
        catch (Exception e) when (IsExpected(target, e))
        {
            outcome = e.GetType().Name;
        }
        long allocated = Allocated(thisThreadOnly) - before;
        long bound = AllocationBound(target, data.Length);
        if (allocated > bound)
            throw new ContractViolationException($"{target}: allocated {allocated:N0} bytes for a {data.Length:N0}-byte input (bound {bound:N0}); outcome {outcome}");
        return outcome;
    }

    private static string Call(string target, byte[] data)
    {
        Directory.CreateDirectory(TempDir);
        switch (target)
        {
            case "safetensors":
            {
                string path = Write("input.safetensors", data);
                using var f = SafeTensorsFile.Open(path);
                long n = 0;
                foreach (var t in f.Tensors)
                {
                    if (t.DType is DType.I64) n += f.ReadInt64(t.Name).Length;
                    else if (t.DType.IsFloatingPoint()) n += f.ReadFloat32(t.Name).Length;
                    else n += f.ReadRaw(t.Name).Length;
                }
                _ = f.Metadata.Count;
                return $"{f.Tensors.Count} tensors, {n} elements";
            }
            case "checkpoint":
            {
                var c = Checkpoint.Load(Write("input.ckpt.safetensors", data));
                return $"{c.Info.Model.Constructor}";
            }
            case "pth":
            {
                var sd = TorchFile.LoadStateDict(Write("input.pth", data));
                return $"{sd.Count} tensors";
            }
            case "npz":
            {
                var a = Npz.Load(Write("input.npz", data));
                return $"{a.Count} arrays";
            }
            case "idx":
            {
                // The same bytes as an images file and as a labels file (the magic decides which read gets past the header).
                string path = Write("input.idx", data);
                string r1, r2;
                try { r1 = $"{Idx.ReadImages(path).Count} images"; } catch (DataSetException e) { r1 = e.GetType().Name; }
                try { r2 = $"{Idx.ReadLabels(path).Length} labels"; } catch (DataSetException e) { r2 = e.GetType().Name; }
                return r1 + ", " + r2;
            }
            case "cifar":
            {
                string dir = Path.Combine(TempDir, "cifar");
                Directory.CreateDirectory(dir);
                File.WriteAllBytes(Path.Combine(dir, "test_batch.bin"), data);
                var ds = Cifar.Load10(dir, train: false);
                return $"{ds.Count} images";
            }
            case "png":
            case "jpeg":
            {
                var img = ImageDecoder.Decode(data, target == "png" ? "input.png" : "input.jpg");
                return $"{img.Width}x{img.Height}x{img.Channels}";
            }
            case "hfconfig":
            {
                JsonObject config;
                // As HuggingFaceVit.Load reads config.json: as text (invalid UTF-8 becomes U+FFFD), then parsed refusing duplicate names.
                string text = System.Text.Encoding.UTF8.GetString(data);
                try { config = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject ?? throw new ModelConfigException("config.json: not a JSON object"); }
                catch (JsonException e) { throw new ModelConfigException($"config.json: invalid JSON ({e.Message})"); }
                var r = HuggingFaceVit.Convert(config, HfWeights.Value, "config.json", "model.safetensors");
                return $"hidden {r.Config.HiddenDim}, layers {r.Config.NumLayers}";
            }
            default:
                throw new ArgumentException($"unknown target '{target}'");
        }
    }

    private static string Write(string name, byte[] data)
    {
        string path = Path.Combine(TempDir, name);
        File.WriteAllBytes(path, data);
        return path;
    }

    /// <summary>The fixed weights for hfconfig: the fixture snapshot's model.safetensors when present, else none.</summary>
    private static readonly Lazy<IReadOnlyDictionary<string, Tensor>> HfWeights = new(() =>
    {
        string path = Path.Combine(FixturesDir, "pretrained", "hf_vit", "model.safetensors");
        return File.Exists(path) ? Weights.Load(path) : new Dictionary<string, Tensor>();
    });
}
