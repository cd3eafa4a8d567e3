using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using VitSharp.Inference;

namespace VitSharp.Serving;

/// <summary>
/// Maps a classifier's HTTP endpoints onto any ASP.NET Core application:
/// <list type="bullet">
/// <item><c>POST /v1/predict[?top=K]</c> — an image (PNG or JPEG) as the raw body or as a multipart/form-data file →
/// JSON <c>{"image", "model", "top": [{"index", "class", "probability"}], "milliseconds"}</c>;</item>
/// <item><c>POST /v1/attention</c> — the same image → a PNG of its attention rollout drawn over it (ViT-family models;
/// others get 422 with a JSON error);</item>
/// <item><c>GET /healthz</c> — JSON <c>{"status": "ok", "model", "classes", "input", "attention", "max_body_bytes"}</c>;</item>
/// <item><c>GET /</c> — a self-contained web page to try the model (drop or choose an image; the top classes as bars and
/// the attention overlay beside the image).</item>
/// </list>
/// Bad input — an empty body, a content type other than an image, octet-stream or multipart, a body that is not a
/// decodable PNG or JPEG (truncated, corrupt, a header declaring an absurd size), a bad <c>?top</c> — gets 400 with
/// <c>{"error": "…"}</c>; a body over the limit 413. Inference runs one request at a time (the model is not
/// thread-safe); bodies are read concurrently.
/// </summary>
public static class ClassifierEndpoints
{
    /// <summary>
    /// Maps the endpoints above under <paramref name="prefix"/> (e.g. <c>"/vit"</c>; default: the root).
    /// Set <see cref="ClassifierServerOptions.MaxBodyBytes"/> in <paramref name="options"/>; host and port are the
    /// application's own.
    /// </summary>
    /// <returns>The route group, to add conventions (authorization, rate limiting, …).</returns>
    public static RouteGroupBuilder MapClassifier(this IEndpointRouteBuilder endpoints, ImageClassifier classifier, ClassifierServerOptions? options = null, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(classifier);
        options ??= new ClassifierServerOptions();
        options.Validate();
        var service = new ClassifierService(classifier, options);
        var group = endpoints.MapGroup(prefix);
        group.MapGet("/", service.PageAsync);
        group.MapGet("/healthz", service.HealthAsync);
        group.MapPost("/v1/predict", service.PredictAsync);
        group.MapPost("/v1/attention", service.AttentionAsync);
        return group;
    }
}
