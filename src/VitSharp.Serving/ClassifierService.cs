using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;
using VitSharp.Data;
using VitSharp.Inference;

namespace VitSharp.Serving;

/// <summary>An error to send as <c>{"error": message}</c> with <paramref name="status"/>.</summary>
internal sealed class RequestException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>The request handlers behind <see cref="ClassifierEndpoints"/>: body reading, the inference gate, errors.</summary>
internal sealed class ClassifierService(ImageClassifier classifier, ClassifierServerOptions options)
{
    private static readonly Lazy<byte[]> Page = new(() =>
    {
        using var s = typeof(ClassifierService).Assembly.GetManifestResourceStream("VitSharp.Serving.index.html")
            ?? throw new InvalidOperationException("the page resource VitSharp.Serving.index.html is missing from the assembly");
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    });

    // Everything the page needs is inline; nothing may come from elsewhere.
    private const string PagePolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    // One inference at a time: the model's forward pass and its buffers are not thread-safe, and a decoded image can be
    // large, so decoding waits its turn too. An async gate, so waiting requests hold no thread.
    private readonly SemaphoreSlim _gate = new(1, 1);

    private string ModelName => classifier.Checkpoint.Info.Model.Constructor;

    public Task PageAsync(HttpContext ctx) => Handle(ctx, async () =>
    {
        // The page's requests are relative (v1/predict, healthz): under a prefix it must be served as "/prefix/".
        if (ctx.Request.Path.Value is { Length: > 0 } path && !path.EndsWith('/'))
        {
            ctx.Response.Redirect(ctx.Request.PathBase + path + "/" + ctx.Request.QueryString, permanent: true, preserveMethod: true);
            return;
        }
        ctx.Response.ContentType = "text/html; charset=utf-8";
        ctx.Response.Headers.ContentSecurityPolicy = PagePolicy;
        ctx.Response.Headers.XContentTypeOptions = "nosniff";
        ctx.Response.Headers.CacheControl = "no-cache";
        await ctx.Response.Body.WriteAsync(Page.Value, ctx.RequestAborted);
    });

    public Task HealthAsync(HttpContext ctx) => Handle(ctx, () =>
    {
        var (c, h, w) = classifier.InputShape;
        return WriteJson(ctx, StatusCodes.Status200OK, new JsonObject
        {
            ["status"] = "ok",
            ["model"] = ModelName,
            ["classes"] = classifier.ClassNames.Count,
            ["input"] = new JsonObject { ["channels"] = c, ["height"] = h, ["width"] = w },
            ["attention"] = classifier.SupportsAttention,
            ["max_body_bytes"] = options.MaxBodyBytes,
        });
    });

    public Task PredictAsync(HttpContext ctx) => Handle(ctx, async () =>
    {
        int k = TopK(ctx.Request);
        var (data, name) = await ReadImageAsync(ctx);
        var clock = Stopwatch.StartNew();
        ImagePrediction prediction;
        await _gate.WaitAsync(ctx.RequestAborted);
        try { prediction = classifier.Predict(data, k, name); }
        finally { _gate.Release(); }
        double ms = clock.Elapsed.TotalMilliseconds;
        await WriteJson(ctx, StatusCodes.Status200OK, new JsonObject
        {
            ["image"] = prediction.Image,
            ["model"] = ModelName,
            ["top"] = new JsonArray(prediction.Top.Select(t => (JsonNode?)new JsonObject
            {
                ["index"] = t.Index, ["class"] = t.Name, ["probability"] = Math.Round((double)t.Probability, 6),
            }).ToArray()),
            ["milliseconds"] = Math.Round(ms, 2),
        });
    });

    public Task AttentionAsync(HttpContext ctx) => Handle(ctx, async () =>
    {
        if (!classifier.SupportsAttention)
            throw new RequestException(StatusCodes.Status422UnprocessableEntity,
                $"attention rollout needs a ViT-family model (its attention layers are read); this server's model is a {ModelName}");
        var (data, name) = await ReadImageAsync(ctx);
        byte[] png;
        await _gate.WaitAsync(ctx.RequestAborted);
        try
        {
            var map = classifier.AttentionMap(data, name);
            var img = map.Image;
            int side = Math.Max(img.Width, img.Height);
            if (side > options.AttentionMaxSide)
            {
                double s = (double)options.AttentionMaxSide / side;
                map = map with { Image = PilResample.Resize(img, Math.Max(1, (int)Math.Round(img.Width * s)), Math.Max(1, (int)Math.Round(img.Height * s)), PilFilter.Bilinear) };
            }
            png = map.ToPng();
        }
        finally { _gate.Release(); }
        ctx.Response.StatusCode = StatusCodes.Status200OK;
        ctx.Response.ContentType = "image/png";
        ctx.Response.Headers.CacheControl = "no-store";
        ctx.Response.ContentLength = png.Length;
        await ctx.Response.Body.WriteAsync(png, ctx.RequestAborted);
    });

    /// <summary>Runs a handler; every failure becomes a JSON error, never a stack trace.</summary>
    private async Task Handle(HttpContext ctx, Func<Task> handler)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            await handler();
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return;   // the client went away
        }
        catch (Exception e)
        {
            var (status, message) = Classify(e);
            if (status >= 500) options.Log?.Invoke($"{ctx.Request.Method} {ctx.Request.Path}: internal error: {e}");
            if (ctx.Response.HasStarted) { ctx.Abort(); return; }
            ctx.Response.Clear();
            await WriteJson(ctx, status, new JsonObject { ["error"] = message });
        }
        finally
        {
            options.Log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"{ctx.Request.Method} {ctx.Request.Path}{ctx.Request.QueryString} {ctx.Response.StatusCode} {clock.Elapsed.TotalMilliseconds:0.0} ms"));
        }
    }

    private (int Status, string Message) Classify(Exception e) => e switch
    {
        RequestException r => (r.Status, r.Message),
        DataSetException => (StatusCodes.Status400BadRequest, e.Message),                // not a decodable PNG or JPEG
        BadHttpRequestException b => (b.StatusCode, b.StatusCode == StatusCodes.Status413PayloadTooLarge
            ? TooLarge(null).Message : "bad request: " + b.Message),
        InvalidDataException or IOException => (StatusCodes.Status400BadRequest, "malformed request body: " + e.Message),
        VitSharp.Training.CheckpointException => (StatusCodes.Status500InternalServerError, "the model could not classify this image: " + e.Message),
        _ => (StatusCodes.Status500InternalServerError, $"internal error ({e.GetType().Name}); the server's log has the details"),
    };

    private int TopK(HttpRequest request)
    {
        var values = request.Query["top"];
        if (values.Count == 0) return options.DefaultTopK;
        if (values.Count > 1 || !int.TryParse(values[0], NumberStyles.None, CultureInfo.InvariantCulture, out int k) || k < 1)
            throw new RequestException(StatusCodes.Status400BadRequest, $"?top must be one whole number ≥ 1, got '{string.Join(",", values.ToArray())}'");
        return k;
    }

    /// <summary>The image bytes from a raw body (image/png, image/jpeg, application/octet-stream or no content type) or from the first file of a multipart/form-data body.</summary>
    private async Task<(byte[] Data, string Name)> ReadImageAsync(HttpContext ctx)
    {
        var request = ctx.Request;
        long limit = options.MaxBodyBytes;
        if (request.ContentLength > limit) throw TooLarge(request.ContentLength.Value);
        if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature) feature.MaxRequestBodySize = limit;

        string? contentType = request.ContentType;
        if (string.IsNullOrWhiteSpace(contentType))
            return (await ReadAllAsync(request.Body, limit, ctx.RequestAborted), "upload");
        if (!MediaTypeHeaderValue.TryParse(contentType, out var mediaType))
            throw new RequestException(StatusCodes.Status400BadRequest, $"malformed Content-Type '{contentType}'");
        string media = mediaType.MediaType.Value?.ToLowerInvariant() ?? "";
        if (media is "image/png" or "image/jpeg" or "image/jpg" or "image/pjpeg" or "application/octet-stream")
            return (await ReadAllAsync(request.Body, limit, ctx.RequestAborted), "upload");
        if (media == "multipart/form-data")
            return await ReadMultipartAsync(mediaType, request.Body, limit, ctx.RequestAborted);
        throw new RequestException(StatusCodes.Status400BadRequest,
            $"Content-Type '{media}' is not accepted: send a PNG or JPEG as the body (image/png, image/jpeg or application/octet-stream) or as a file in multipart/form-data");
    }

    private static async Task<(byte[] Data, string Name)> ReadMultipartAsync(MediaTypeHeaderValue mediaType, Stream body, long limit, CancellationToken ct)
    {
        string boundary = HeaderUtilities.RemoveQuotes(mediaType.Boundary).Value ?? "";
        if (boundary.Length == 0 || boundary.Length > 200)
            throw new RequestException(StatusCodes.Status400BadRequest, "multipart/form-data without a valid boundary parameter");
        var reader = new MultipartReader(boundary, body) { BodyLengthLimit = limit, HeadersLengthLimit = 16 * 1024, HeadersCountLimit = 16 };
        while (await reader.ReadNextSectionAsync(ct) is { } section)
        {
            if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition)
                || !disposition.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase)) continue;
            string field = HeaderUtilities.RemoveQuotes(disposition.Name).Value ?? "";
            string? fileName = disposition.IsFileDisposition() ? (HeaderUtilities.RemoveQuotes(disposition.FileNameStar).Value ?? HeaderUtilities.RemoveQuotes(disposition.FileName).Value) : null;
            if (fileName is null && field is not ("image" or "file")) continue;
            var data = await ReadAllAsync(section.Body, limit, ct);
            return (data, SafeName(fileName ?? field));
        }
        throw new RequestException(StatusCodes.Status400BadRequest, "the multipart/form-data body holds no file (send the image as a file field, e.g. curl -F image=@photo.jpg)");
    }

    /// <summary>A file name fit to echo back: no directories, no control characters, at most 100 characters.</summary>
    private static string SafeName(string name)
    {
        name = Path.GetFileName(name.Replace('\\', '/'));
        var sb = new StringBuilder(Math.Min(name.Length, 100));
        foreach (char c in name)
        {
            if (sb.Length == 100) break;
            if (!char.IsControl(c)) sb.Append(c);
        }
        return sb.Length == 0 ? "upload" : sb.ToString();
    }

    private static async Task<byte[]> ReadAllAsync(Stream body, long limit, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await body.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + read > limit) throw TooLarge(null, limit);
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0)
            throw new RequestException(StatusCodes.Status400BadRequest, "empty body: send a PNG or JPEG image");
        return buffer.ToArray();
    }

    private RequestException TooLarge(long? length) => TooLarge(length, options.MaxBodyBytes);

    private static RequestException TooLarge(long? length, long limit) => new(StatusCodes.Status413PayloadTooLarge,
        $"the request body{(length is { } n ? $" ({n.ToString(CultureInfo.InvariantCulture)} bytes)" : "")} is larger than the limit of {limit.ToString(CultureInfo.InvariantCulture)} bytes");

    private static async Task WriteJson(HttpContext ctx, int status, JsonObject body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        ctx.Response.Headers.CacheControl = "no-store";
        await ctx.Response.WriteAsync(body.ToJsonString(), ctx.RequestAborted);
    }
}
