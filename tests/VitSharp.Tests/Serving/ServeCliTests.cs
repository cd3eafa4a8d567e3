using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using VitSharp.Inference;
using VitSharp.Serving;
using VitSharp.Tests.Cli;

namespace VitSharp.Tests.Serving;

/// <summary>
/// <c>vit serve</c>: bad options and checkpoints stop it before it listens, with one <c>vit: error:</c> line and exit
/// code 2; run as a real child process it prints where it listens, answers, logs requests and stops on SIGTERM.
/// </summary>
public sealed class ServeCliTests : IClassFixture<ServingAssets>
{
    private readonly ServingAssets _assets;

    public ServeCliTests(ServingAssets assets) => _assets = assets;

    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] fragments)
    {
        Assert.True(r.Code == 2, $"exit code {r.Code}\nstdout:\n{r.Out}\nstderr:\n{r.Err}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{r.Err}");
        Assert.StartsWith("vit: error: ", lines[0]);
        Assert.DoesNotContain("Exception", r.Err);
        Assert.DoesNotContain("Listening", r.Out);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    [Fact]
    public void ACheckpointThatDoesNotExistStopsItWithOneLine()
    {
        string missing = _assets.File("no-such-checkpoint.safetensors");
        AssertOneLineError(TrainCliTests.Run("serve", missing, "--port", "0"), missing, "not found");
    }

    [Fact]
    public void AFileThatIsNotACheckpointStopsItWithOneLine()
    {
        AssertOneLineError(TrainCliTests.Run("serve", _assets.PngPath, "--port", "0"), _assets.PngPath);
    }

    [Theory]
    [InlineData("--port", "70000", "--port must lie in 0–65535, got 70000")]
    [InlineData("--port", "-1", "--port must lie in 0–65535, got -1")]
    [InlineData("--host", "example.com", "--host: host 'example.com' is not an IP address or localhost")]
    [InlineData("--host", "", "--host: host '' is not an IP address or localhost")]
    [InlineData("--max-body-mb", "0", "--max-body-mb must lie in (0, 2048], got 0")]
    [InlineData("--max-body-mb", "NaN", "--max-body-mb must lie in (0, 2048]")]
    [InlineData("--top", "0", "--top must be ≥ 1, got 0")]
    public void ABadOptionStopsItWithOneLineNamingTheOption(string option, string value, string message)
    {
        AssertOneLineError(TrainCliTests.Run("serve", _assets.VitCheckpoint, option, value), message);
    }

    [Fact]
    public void APortInUseStopsItWithOneLine()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        AssertOneLineError(TrainCliTests.Run("serve", _assets.VitCheckpoint, "--port", port.ToString()), $"127.0.0.1:{port}", "address already in use");
    }

    [Fact]
    public void HelpDescribesEveryOptionAndItsDefault()
    {
        var (code, stdout, _) = TrainCliTests.Run("serve", "--help");
        Assert.Equal(0, code);
        foreach (var (option, words) in new[]
        {
            ("--port", "TCP port"), ("--host", "localhost"), ("--max-body-mb", "Largest request body"), ("--top", "?top=K"),
            ("--quiet", "line per request"), ("--allow-nonfinite", "NaN"), ("CHECKPOINT", "vit import"),
        })
        {
            var line = stdout.Split('\n').FirstOrDefault(l => l.TrimStart().StartsWith(option, StringComparison.Ordinal) || l.Contains(" " + option + " ") || l.Contains("<" + option + ">"));
            Assert.True(line is not null, $"no help line for {option}:\n{stdout}");
            Assert.Contains(words, stdout);
        }
        Assert.Contains("[default: 8080]", stdout);
        Assert.Contains("[default: 127.0.0.1]", stdout);
        Assert.Contains("[default: 10]", stdout);
    }

    [Fact]
    [Trait("Category", "Process")]
    public async Task AsAChildProcessItPrintsItsAddressAnswersLogsAndStopsOnSigterm()
    {
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        string vitDll = Path.Combine(AppContext.BaseDirectory, "vit.dll");
        Assert.True(File.Exists(vitDll), $"{vitDll} is missing (the test project references the CLI project)");
        foreach (var a in new[] { vitDll, "serve", _assets.VitCheckpoint, "--port", "0" }) psi.ArgumentList.Add(a);
        using var p = new Process { StartInfo = psi };
        var lines = new BlockingCollection<string>();
        var err = new ConcurrentQueue<string>();
        p.OutputDataReceived += (_, e) => { if (e.Data is { } l) lines.Add(l); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is { } l) err.Enqueue(l); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var seen = new List<string>();
        string Transcript() => $"stdout:\n{string.Join('\n', seen)}\nstderr:\n{string.Join('\n', err)}";
        try
        {
            Uri? address = null;
            while (address is null)
            {
                Assert.True(lines.TryTake(out var line, TimeSpan.FromMinutes(2)), "no 'Listening on' line within 2 min\n" + Transcript());
                seen.Add(line!);
                if (Regex.Match(line!, @"^Listening on (http://127\.0\.0\.1:\d+/)") is { Success: true } m) address = new Uri(m.Groups[1].Value);
            }
            Assert.Contains(seen, l => l.StartsWith("Serving " + _assets.VitCheckpoint + " (vit_pytorch.vit.ViT, 10 classes, input 3×32×32, precision fp32)", StringComparison.Ordinal));

            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
            var health = JsonNode.Parse(await http.GetStringAsync(new Uri(address, "healthz")))!;
            Assert.Equal("ok", health["status"]!.GetValue<string>());
            var content = new ByteArrayContent(_assets.Png);
            content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            var r = await http.PostAsync(new Uri(address, "v1/predict?top=1"), content);
            var expected = ImageClassifier.Load(_assets.VitCheckpoint).Predict(_assets.Png, topK: 1).Best.Name;
            Assert.Equal(expected, JsonNode.Parse(await r.Content.ReadAsStringAsync())!["top"]![0]!["class"]!.GetValue<string>());

            Assert.Equal(0, kill(p.Id, 15));   // SIGTERM
            Assert.True(p.WaitForExit(TimeSpan.FromMinutes(1)), "still running 1 min after SIGTERM\n" + Transcript());
            p.WaitForExit();
            while (lines.TryTake(out var rest)) seen.Add(rest);
            Assert.True(p.ExitCode == 0, $"exit {p.ExitCode}\n{Transcript()}");
            Assert.Contains(seen, l => Regex.IsMatch(l, @"^GET /healthz 200 \d+\.\d ms$"));
            Assert.Contains(seen, l => Regex.IsMatch(l, @"^POST /v1/predict\?top=1 200 \d+\.\d ms$"));
            Assert.Equal("Stopped", seen[^1]);
            Assert.Empty(err);
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}
