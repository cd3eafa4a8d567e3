using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using VitSharp.Data;
using VitSharp.Inference;
using VitSharp.Inspection;
using VitSharp.Serving;
using VitSharp.Tests.Data;

namespace VitSharp.Tests.Serving;

/// <summary>
/// <see cref="ClassifierServer"/> over real HTTP on loopback: every endpoint answers as the library's
/// <see cref="ImageClassifier"/> does, and every bad input gets a 4xx with a one-line JSON error, never a 500 or a trace.
/// </summary>
public sealed class ClassifierServerTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    private Uri Vit(string path) => new(fx.VitServer.Address, path);
    private Uri ResNet(string path) => new(fx.ResNetServer.Address, path);

    private static ByteArrayContent Body(byte[] data, string? contentType)
    {
        var c = new ByteArrayContent(data);
        if (contentType is not null) c.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return c;
    }

    private static MultipartFormDataContent Form(byte[] data, string field, string? fileName, string contentType = "image/png")
    {
        var form = new MultipartFormDataContent();
        var part = new ByteArrayContent(data);
        part.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        if (fileName is null) form.Add(part, field); else form.Add(part, field, fileName);
        return form;
    }

    private async Task<JsonObject> Json(HttpResponseMessage r, HttpStatusCode status)
    {
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == status, $"{(int)r.StatusCode} {r.StatusCode}: {text}");
        Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
        return JsonNode.Parse(text)!.AsObject();
    }

    /// <summary>A 4xx JSON error <c>{"error": "…"}</c>: one line, containing every fragment, no stack trace.</summary>
    private async Task AssertError(HttpResponseMessage r, HttpStatusCode status, params string[] fragments)
    {
        var body = await Json(r, status);
        Assert.Single(body);
        string message = body["error"]!.GetValue<string>();
        Assert.DoesNotContain('\n', message);
        Assert.DoesNotContain("   at ", message);
        Assert.DoesNotContain("Exception", message);
        foreach (var f in fragments) Assert.Contains(f, message);
    }

    private static void AssertSameTop(ImagePrediction expected, JsonObject actual)
    {
        var top = actual["top"]!.AsArray();
        Assert.Equal(expected.Top.Count, top.Count);
        for (int i = 0; i < top.Count; i++)
        {
            Assert.Equal(expected.Top[i].Index, top[i]!["index"]!.GetValue<int>());
            Assert.Equal(expected.Top[i].Name, top[i]!["class"]!.GetValue<string>());
            Assert.Equal(Math.Round((double)expected.Top[i].Probability, 6), top[i]!["probability"]!.GetValue<double>());
        }
    }

    // ---------------------------------------------------------------- the endpoints

    [Fact]
    public async Task HealthzDescribesTheModelAndWhetherAttentionApplies()
    {
        var vit = await Json(await fx.Http.GetAsync(Vit("healthz")), HttpStatusCode.OK);
        Assert.Equal("ok", vit["status"]!.GetValue<string>());
        Assert.Equal("vit_pytorch.vit.ViT", vit["model"]!.GetValue<string>());
        Assert.Equal(10, vit["classes"]!.GetValue<int>());
        Assert.Equal((3, 32, 32), (vit["input"]!["channels"]!.GetValue<int>(), vit["input"]!["height"]!.GetValue<int>(), vit["input"]!["width"]!.GetValue<int>()));
        Assert.True(vit["attention"]!.GetValue<bool>());
        Assert.Equal(ServingFixture.BodyLimit, vit["max_body_bytes"]!.GetValue<long>());

        var resnet = await Json(await fx.Http.GetAsync(ResNet("healthz")), HttpStatusCode.OK);
        Assert.Equal("torchvision.models.resnet.ResNet", resnet["model"]!.GetValue<string>());
        Assert.False(resnet["attention"]!.GetValue<bool>());
        Assert.Equal(ClassifierServerOptions.DefaultMaxBodyBytes, resnet["max_body_bytes"]!.GetValue<long>());
    }

    [Fact]
    public async Task ThePageIsOneSelfContainedHtmlFileThatLoadsNothingFromElsewhere()
    {
        var r = await fx.Http.GetAsync(Vit(""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/html", r.Content.Headers.ContentType?.MediaType);
        string html = await r.Content.ReadAsStringAsync();
        Assert.Contains("<title>VitSharp", html);
        Assert.Contains("type=\"file\"", html);
        Assert.Contains("v1/predict", html);
        Assert.Contains("v1/attention", html);
        // No scripts, styles, fonts or images from another origin: no absolute or protocol-relative URL anywhere.
        Assert.DoesNotMatch(@"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html);
        Assert.DoesNotMatch(@"(?i)<(script|link|img|iframe)[^>]+(src|href)\s*=", html);
        Assert.DoesNotContain("@import", html);
        // The browser is told the same: everything from this origin or inline.
        string csp = string.Join(";", r.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("default-src 'none'", csp);
        Assert.Contains("connect-src 'self'", csp);
    }

    [Theory]
    [InlineData("image/png")]
    [InlineData("application/octet-stream")]
    [InlineData(null)]
    public async Task PredictOnARawPngBodyGivesTheLibrarysTopFive(string? contentType)
    {
        var expected = fx.Vit.Predict(fx.Assets.Png, topK: 5);
        var body = await Json(await fx.Http.PostAsync(Vit("v1/predict"), Body(fx.Assets.Png, contentType)), HttpStatusCode.OK);
        AssertSameTop(expected, body);
        Assert.Equal("upload", body["image"]!.GetValue<string>());
        Assert.Equal("vit_pytorch.vit.ViT", body["model"]!.GetValue<string>());
        Assert.True(body["milliseconds"]!.GetValue<double>() >= 0);
    }

    [Fact]
    public async Task PredictOnAJpegBodyHonoursTopAndCapsItAtTheClassCount()
    {
        var three = await Json(await fx.Http.PostAsync(Vit("v1/predict?top=3"), Body(fx.Assets.Jpeg, "image/jpeg")), HttpStatusCode.OK);
        AssertSameTop(fx.Vit.Predict(fx.Assets.Jpeg, topK: 3), three);
        var all = await Json(await fx.Http.PostAsync(Vit("v1/predict?top=1000"), Body(fx.Assets.Jpeg, "image/jpeg")), HttpStatusCode.OK);
        Assert.Equal(10, all["top"]!.AsArray().Count);
        double sum = all["top"]!.AsArray().Sum(t => t!["probability"]!.GetValue<double>());
        Assert.InRange(sum, 0.9999, 1.0001);
    }

    [Fact]
    public async Task PredictOnAMultipartFileUsesItAndEchoesItsFileNameWithoutDirectories()
    {
        var body = await Json(await fx.Http.PostAsync(Vit("v1/predict?top=2"), Form(fx.Assets.Jpeg, "image", "../../etc/photo.jpg", "image/jpeg")), HttpStatusCode.OK);
        AssertSameTop(fx.Vit.Predict(fx.Assets.Jpeg, topK: 2), body);
        Assert.Equal("photo.jpg", body["image"]!.GetValue<string>());

        // A plain field named "image" (no file name) counts too; other fields before it are skipped.
        var form = new MultipartFormDataContent { { new StringContent("hello"), "note" }, { new ByteArrayContent(fx.Assets.Png), "image" } };
        AssertSameTop(fx.Vit.Predict(fx.Assets.Png, topK: 5), await Json(await fx.Http.PostAsync(Vit("v1/predict"), form), HttpStatusCode.OK));
    }

    [Fact]
    public async Task AttentionReturnsThePngTheLibraryDraws()
    {
        var r = await fx.Http.PostAsync(Vit("v1/attention"), Body(fx.Assets.Png, "image/png"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("image/png", r.Content.Headers.ContentType?.MediaType);
        byte[] png = await r.Content.ReadAsByteArrayAsync();
        Assert.Equal(fx.Vit.AttentionMap(fx.Assets.Png).ToPng(), png);
        var img = ImageDecoder.Decode(png, "overlay");
        Assert.Equal(AttentionHeatmap.OutputSize(45, 37), (img.Width, img.Height));   // 45×37 enlarged ×5 to 225×185

        var multipart = await fx.Http.PostAsync(Vit("v1/attention"), Form(fx.Assets.Jpeg, "file", "photo.jpg", "image/jpeg"));
        Assert.Equal(HttpStatusCode.OK, multipart.StatusCode);
        var photo = ImageDecoder.Decode(await multipart.Content.ReadAsByteArrayAsync(), "overlay");
        Assert.Equal((500, 375, 3), (photo.Width, photo.Height, photo.Channels));
    }

    [Fact]
    public async Task AttentionOfALargeImageIsDrawnAtMost512PixelsWide()
    {
        var wide = PngWriter.Encode(ImageDecoderTests.Pattern(1200, 300, 3), 1200, 300, 2);
        var r = await fx.Http.PostAsync(Vit("v1/attention"), Body(wide, "image/png"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var img = ImageDecoder.Decode(await r.Content.ReadAsByteArrayAsync(), "overlay");
        Assert.Equal((512, 128), (img.Width, img.Height));
    }

    [Fact]
    public async Task AttentionOnAModelWithoutAttentionLayersIs422SayingWhy()
    {
        var r = await fx.Http.PostAsync(ResNet("v1/attention"), Body(fx.Assets.Png, "image/png"));
        await AssertError(r, HttpStatusCode.UnprocessableEntity, "ViT-family", "torchvision.models.resnet.ResNet");
        // The same server still classifies.
        var ok = await fx.Http.PostAsync(ResNet("v1/predict?top=1"), Body(fx.Assets.Png, "image/png"));
        Assert.Single((await Json(ok, HttpStatusCode.OK))["top"]!.AsArray());
    }

    // ---------------------------------------------------------------- bad input: 400, never 500

    public static TheoryData<string> Endpoints => new() { "v1/predict", "v1/attention" };

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task AnEmptyBodyIs400(string endpoint)
    {
        await AssertError(await fx.Http.PostAsync(Vit(endpoint), Body([], "image/png")), HttpStatusCode.BadRequest, "empty body");
        await AssertError(await fx.Http.PostAsync(Vit(endpoint), Body([], null)), HttpStatusCode.BadRequest, "empty body");
    }

    [Theory]
    [InlineData("v1/predict", "text/plain")]
    [InlineData("v1/predict", "application/json")]
    [InlineData("v1/predict", "application/x-www-form-urlencoded")]
    [InlineData("v1/attention", "image/gif")]
    public async Task AWrongContentTypeIs400NamingIt(string endpoint, string contentType)
    {
        var r = await fx.Http.PostAsync(Vit(endpoint), Body(fx.Assets.Png, contentType));
        await AssertError(r, HttpStatusCode.BadRequest, $"Content-Type '{contentType}' is not accepted");
    }

    [Fact]
    public async Task AMalformedContentTypeIs400()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, Vit("v1/predict")) { Content = new ByteArrayContent(fx.Assets.Png) };
        Assert.True(request.Content.Headers.TryAddWithoutValidation("Content-Type", "image/png; ===; \"unterminated"));
        await AssertError(await fx.Http.SendAsync(request), HttpStatusCode.BadRequest, "Content-Type");
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task ATruncatedPngIs400(string endpoint)
    {
        var r = await fx.Http.PostAsync(Vit(endpoint), Body(fx.Assets.Png[..(fx.Assets.Png.Length / 2)], "image/png"));
        await AssertError(r, HttpStatusCode.BadRequest, "upload: truncated PNG");
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task ATruncatedJpegIs400(string endpoint)
    {
        var r = await fx.Http.PostAsync(Vit(endpoint), Body(fx.Assets.Jpeg[..(fx.Assets.Jpeg.Length / 2)], "image/jpeg"));
        await AssertError(r, HttpStatusCode.BadRequest, "upload: corrupt JPEG");
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task A20000By20000PngHeaderIsRefusedBeforeDecoding(string endpoint)
    {
        var huge = PngWriter.WithIhdrSize(fx.Assets.Png, 20000, 20000);
        var r = await fx.Http.PostAsync(Vit(endpoint), Body(huge, "image/png"));
        // The size check that runs on the header alone, before any pixel buffer exists.
        await AssertError(r, HttpStatusCode.BadRequest, "header declares 20000×20000");
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task A20000By20000JpegHeaderIsRefusedBeforeDecoding(string endpoint)
    {
        var huge = (byte[])fx.Assets.Jpeg.Clone();
        int sof = 2;
        while (huge[sof] == 0xFF && huge[sof + 1] != 0xC0) sof += 2 + BinaryPrimitives.ReadUInt16BigEndian(huge.AsSpan(sof + 2));
        Assert.Equal(0xC0, huge[sof + 1]);
        BinaryPrimitives.WriteUInt16BigEndian(huge.AsSpan(sof + 5), 20000);
        BinaryPrimitives.WriteUInt16BigEndian(huge.AsSpan(sof + 7), 20000);
        var r = await fx.Http.PostAsync(Vit(endpoint), Body(huge, "image/jpeg"));
        await AssertError(r, HttpStatusCode.BadRequest, "header declares 20000×20000");
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task BytesThatAreNotAnImageAre400(string endpoint)
    {
        var text = Encoding.UTF8.GetBytes("this is not an image, just text that claims to be one");
        await AssertError(await fx.Http.PostAsync(Vit(endpoint), Body(text, "image/png")), HttpStatusCode.BadRequest, "upload: not a PNG or JPEG");
        var gif = Encoding.ASCII.GetBytes("GIF89a\x01\0\x01\0\0\0\0;");
        await AssertError(await fx.Http.PostAsync(Vit(endpoint), Form(gif, "image", "anim.gif", "image/gif")), HttpStatusCode.BadRequest, "anim.gif: not a PNG or JPEG");
    }

    [Fact]
    public async Task AMultipartBodyWithoutAFileOrWithoutABoundaryIs400()
    {
        var noFile = new MultipartFormDataContent { { new StringContent("hello"), "note" } };
        await AssertError(await fx.Http.PostAsync(Vit("v1/predict"), noFile), HttpStatusCode.BadRequest, "holds no file");
        await AssertError(await fx.Http.PostAsync(Vit("v1/predict"), Body(fx.Assets.Png, "multipart/form-data")), HttpStatusCode.BadRequest, "boundary");
        var garbage = Body(Encoding.ASCII.GetBytes("--xyz\r\nnot a header line at all\r\n\r\nbody"), "multipart/form-data; boundary=xyz");
        await AssertError(await fx.Http.PostAsync(Vit("v1/predict"), garbage), HttpStatusCode.BadRequest, "malformed request body");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("x")]
    [InlineData("1.5")]
    [InlineData("99999999999")]
    public async Task ABadTopIs400(string top)
    {
        var r = await fx.Http.PostAsync(Vit("v1/predict?top=" + top), Body(fx.Assets.Png, "image/png"));
        await AssertError(r, HttpStatusCode.BadRequest, "?top must be one whole number ≥ 1", top);
    }

    [Fact]
    public async Task ABodyOverTheLimitIs413WithOrWithoutAContentLength()
    {
        var big = new byte[ServingFixture.BodyLimit + 1];
        fx.Assets.Png.CopyTo(big, 0);
        // With Content-Length the server answers 413 from the headers and closes the connection; with "Expect:
        // 100-continue" the client waits for that answer instead of racing it with the 1 MiB body (which could end in
        // a broken pipe on the client's side before it reads the 413: seen once in CI).
        var sized = new HttpRequestMessage(HttpMethod.Post, Vit("v1/predict")) { Content = Body(big, "image/png") };
        sized.Headers.ExpectContinue = true;
        await AssertError(await fx.Http.SendAsync(sized), HttpStatusCode.RequestEntityTooLarge, $"limit of {ServingFixture.BodyLimit} bytes");

        // Chunked: no Content-Length to refuse up front, so the limit stops the read. (A server with a limit of 1000
        // bytes and a body of 1500, so that the client has sent it all before the server answers and closes.)
        await using (var small = await ClassifierServer.StartAsync(fx.Vit, new ClassifierServerOptions { Port = 0, MaxBodyBytes = 1000 }))
        {
            var chunked = new StreamContent(new MemoryStream(big[..1500]));
            chunked.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            var request = new HttpRequestMessage(HttpMethod.Post, new Uri(small.Address, "v1/attention")) { Content = chunked };
            request.Headers.TransferEncodingChunked = true;
            await AssertError(await fx.Http.SendAsync(request), HttpStatusCode.RequestEntityTooLarge, "larger than the limit of 1000 bytes");
        }

        // A body exactly at the limit is read and classified (the zeros after the PNG's IEND are ignored, as PIL does).
        var atLimit = await fx.Http.PostAsync(Vit("v1/predict"), Body(big[..^1], "image/png"));
        AssertSameTop(fx.Vit.Predict(fx.Assets.Png), await Json(atLimit, HttpStatusCode.OK));
    }

    [Fact]
    public async Task GetOnAPostEndpointIs405AndAnUnknownPathIs404()
    {
        Assert.Equal(HttpStatusCode.MethodNotAllowed, (await fx.Http.GetAsync(Vit("v1/predict"))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await fx.Http.GetAsync(Vit("v2/predict"))).StatusCode);
    }

    [Fact]
    public async Task AfterEveryKindOfBadRequestTheServerStillAnswersCorrectly()
    {
        await fx.Http.PostAsync(Vit("v1/predict"), Body(fx.Assets.Png[..100], "image/png"));
        await fx.Http.PostAsync(Vit("v1/attention"), Body([1, 2, 3], null));
        var body = await Json(await fx.Http.PostAsync(Vit("v1/predict"), Body(fx.Assets.Png, "image/png")), HttpStatusCode.OK);
        AssertSameTop(fx.Vit.Predict(fx.Assets.Png), body);
    }

    // ---------------------------------------------------------------- hosting

    [Fact]
    public void ItListensOnLoopbackByDefault()
    {
        Assert.Equal("127.0.0.1", new ClassifierServerOptions().Host);
        Assert.Equal(8080, new ClassifierServerOptions().Port);
        Assert.Equal(10L * 1024 * 1024, new ClassifierServerOptions().MaxBodyBytes);
        Assert.Equal("127.0.0.1", fx.VitServer.Address.Host);
        Assert.True(fx.VitServer.Address.Port > 0);
    }

    [Theory]
    [InlineData("example.com", 8080, 1, "host 'example.com' is not an IP address or localhost")]
    [InlineData("127.0.0.1", 70000, 1, "port must lie in 0–65535")]
    [InlineData("127.0.0.1", 8080, 0, "body limit")]
    public async Task BadOptionsAreRefusedBeforeAnythingStarts(string host, int port, long maxBody, string fragment)
    {
        var options = new ClassifierServerOptions { Host = host, Port = port, MaxBodyBytes = maxBody };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => ClassifierServer.StartAsync(fx.Vit, options));
        Assert.Contains(fragment, e.Message);
    }

    [Fact]
    public async Task APortInUseIsAnIOException()
    {
        int port = fx.VitServer.Address.Port;
        var e = await Assert.ThrowsAsync<IOException>(() => ClassifierServer.StartAsync(fx.Vit, new ClassifierServerOptions { Port = port }));
        Assert.Contains(port.ToString(), e.Message);
    }

    [Fact]
    public async Task TheEndpointsMapOntoAnApplicationsOwnWebApplicationUnderAPrefix()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        await using var app = builder.Build();
        app.MapGet("/", () => "the application's own page");
        app.MapClassifier(fx.Vit, new ClassifierServerOptions { MaxBodyBytes = 4096 }, prefix: "/vit");
        await app.StartAsync();
        var address = new Uri(app.Urls.First() + "/");

        Assert.Equal("the application's own page", await fx.Http.GetStringAsync(address));
        // The page under the prefix, also without its trailing slash (redirected, so that its relative requests work).
        Assert.Contains("<title>VitSharp", await fx.Http.GetStringAsync(new Uri(address, "vit/")));
        using (var noRedirect = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }))
        {
            var r = await noRedirect.GetAsync(new Uri(address, "vit"));
            Assert.Equal(HttpStatusCode.PermanentRedirect, r.StatusCode);
            Assert.Equal("/vit/", r.Headers.Location?.OriginalString);
        }
        Assert.Equal("ok", (await Json(await fx.Http.GetAsync(new Uri(address, "vit/healthz")), HttpStatusCode.OK))["status"]!.GetValue<string>());
        AssertSameTop(fx.Vit.Predict(fx.Assets.Png), await Json(await fx.Http.PostAsync(new Uri(address, "vit/v1/predict"), Body(fx.Assets.Png, "image/png")), HttpStatusCode.OK));
        // The endpoint's own body limit holds on the application's Kestrel (whose default is 30 MB).
        var big = await fx.Http.PostAsync(new Uri(address, "vit/v1/predict"), Body(new byte[5000], "image/png"));
        await AssertError(big, HttpStatusCode.RequestEntityTooLarge, "limit of 4096 bytes");
        await app.StopAsync();
    }
}
