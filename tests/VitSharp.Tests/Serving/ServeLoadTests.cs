using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using VitSharp.Inference;
using VitSharp.Serving;
using VitSharp.Tests.Data;
using Xunit.Abstractions;

namespace VitSharp.Tests.Serving;

/// <summary>
/// A bounded load on loopback: 8 concurrent clients × 50 requests each (PNG and JPEG, raw and multipart) against the
/// fixture's Kestrel server. Every answer must be the library's own prediction for that image (so serialising the
/// model works under concurrency) and memory must not grow after a warm-up (managed heap and working set, after a full
/// collection). Reports p50/p99 latency as seen by the clients (not asserted: timing belongs to benchmarks).
/// <c>VITSHARP_SERVE_LOAD_CHECKPOINT=PATH</c> runs the same load on another checkpoint (docs/serve.md's figures).
/// </summary>
/// <remarks>In a collection of its own that runs alone, so that other tests' allocations do not count as growth.</remarks>
[Trait("Category", "Slow")]
[Collection(nameof(ServeLoadTests))]
[CollectionDefinition(nameof(ServeLoadTests), DisableParallelization = true)]
public sealed class ServeLoadTests(ServingFixture fx, ITestOutputHelper output) : IClassFixture<ServingFixture>
{
    private const int Clients = 8, RequestsPerClient = 50, WarmupPerClient = 10;

    private sealed record Case(string Name, byte[] Data, string ContentType, bool Multipart, ClassScore Expected);

    private static HttpContent Content(Case c)
    {
        var bytes = new ByteArrayContent(c.Data);
        bytes.Headers.ContentType = new MediaTypeHeaderValue(c.ContentType);
        if (!c.Multipart) return bytes;
        return new MultipartFormDataContent { { bytes, "image", c.Name } };
    }

    private static (long Managed, long WorkingSet) Memory()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }
        using var self = Process.GetCurrentProcess();
        return (GC.GetTotalMemory(forceFullCollection: true), self.WorkingSet64);
    }

    private static async Task<List<double>> Run(Uri server, IReadOnlyList<Case> cases, int perClient, HttpClient http)
    {
        var latencies = new List<double>();
        var uri = new Uri(server, "v1/predict?top=1");
        var tasks = Enumerable.Range(0, Clients).Select(client => Task.Run(async () =>
        {
            var mine = new List<double>(perClient);
            for (int i = 0; i < perClient; i++)
            {
                var c = cases[(client + i) % cases.Count];
                var clock = Stopwatch.StartNew();
                using var r = await http.PostAsync(uri, Content(c));
                string text = await r.Content.ReadAsStringAsync();
                mine.Add(clock.Elapsed.TotalMilliseconds);
                Assert.True(r.StatusCode == HttpStatusCode.OK, $"client {client} request {i} ({c.Name}): {(int)r.StatusCode} {text}");
                var top = JsonNode.Parse(text)!["top"]![0]!;
                Assert.Equal(c.Expected.Name, top["class"]!.GetValue<string>());
                Assert.Equal(Math.Round((double)c.Expected.Probability, 6), top["probability"]!.GetValue<double>());
            }
            return mine;
        })).ToArray();
        foreach (var l in await Task.WhenAll(tasks)) latencies.AddRange(l);
        return latencies;
    }

    private static double Percentile(List<double> sorted, double p) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    [Fact]
    public async Task EightClientsTimesFiftyRequestsAreAllAnsweredCorrectlyAndMemoryDoesNotGrow()
    {
        string checkpoint = Environment.GetEnvironmentVariable("VITSHARP_SERVE_LOAD_CHECKPOINT") is { Length: > 0 } c ? c : fx.Assets.VitCheckpoint;
        var classifier = ImageClassifier.Load(checkpoint);
        await using var server = await ClassifierServer.StartAsync(classifier, new ClassifierServerOptions { Port = 0 });
        output.WriteLine($"{checkpoint}: {classifier.Checkpoint.Info.Model.Constructor}, input {classifier.InputShape}, {Environment.ProcessorCount} processors");
        var cases = new List<Case>();
        void Add(string name, byte[] data, string type, bool multipart) =>
            cases.Add(new Case(name, data, type, multipart, classifier.Predict(data, topK: 1).Best));
        Add("photo.jpg", fx.Assets.Jpeg, "image/jpeg", multipart: false);
        Add("pattern.png", fx.Assets.Png, "image/png", multipart: true);
        for (int salt = 1; salt <= 4; salt++)
            Add($"pattern{salt}.png", PngWriter.Encode(ImageDecoderTests.Pattern(64 + 16 * salt, 48, 3, salt), 64 + 16 * salt, 48, 2), "image/png", multipart: salt % 2 == 0);
        // Answers mixed up between concurrent requests would show: every image has its own top probability.
        Assert.Equal(cases.Count, cases.Select(c => Math.Round((double)c.Expected.Probability, 6)).Distinct().Count());

        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = Clients }) { Timeout = TimeSpan.FromMinutes(2) };
        await Run(server.Address, cases, WarmupPerClient, http);
        var before = Memory();
        var clock = Stopwatch.StartNew();
        var latencies = await Run(server.Address, cases, RequestsPerClient, http);
        double seconds = clock.Elapsed.TotalSeconds;
        var after = Memory();

        Assert.Equal(Clients * RequestsPerClient, latencies.Count);
        latencies.Sort();
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine(string.Format(inv, "{0} clients × {1} requests: p50 {2:0.0} ms, p99 {3:0.0} ms, max {4:0.0} ms, {5:0} requests/s",
            Clients, RequestsPerClient, Percentile(latencies, 0.50), Percentile(latencies, 0.99), latencies[^1], latencies.Count / seconds));
        output.WriteLine(string.Format(inv, "managed heap {0:0.0} → {1:0.0} MB, working set {2:0.0} → {3:0.0} MB (after a full collection)",
            before.Managed / 1e6, after.Managed / 1e6, before.WorkingSet / 1e6, after.WorkingSet / 1e6));

        // 400 requests: growth of 4 MB managed is 10 kB per request, less than one decoded 45×37 image; a leaked photo
        // (500×375×3 = 562 kB decoded) would add 225 MB.
        Assert.True(after.Managed - before.Managed < 4_000_000, $"the managed heap grew by {(after.Managed - before.Managed) / 1e6:0.0} MB over {latencies.Count} requests");
        Assert.True(after.WorkingSet - before.WorkingSet < 48_000_000, $"the working set grew by {(after.WorkingSet - before.WorkingSet) / 1e6:0.0} MB over {latencies.Count} requests");
    }
}
