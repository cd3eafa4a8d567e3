using System.Net;

namespace VitSharp.Serving;

/// <summary>Options of <see cref="ClassifierServer"/> and <see cref="ClassifierEndpoints.MapClassifier"/>.</summary>
public sealed class ClassifierServerOptions
{
    /// <summary>The default request-body limit: 10 MiB.</summary>
    public const long DefaultMaxBodyBytes = 10L * 1024 * 1024;

    /// <summary>
    /// The address to listen on (<see cref="ClassifierServer"/> only): an IP address (<c>127.0.0.1</c>, <c>::1</c>,
    /// <c>0.0.0.0</c> for every interface) or <c>localhost</c> (both loopback addresses). Default: <c>127.0.0.1</c>, loopback only.
    /// </summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The TCP port (<see cref="ClassifierServer"/> only); 0 picks a free one (<see cref="ClassifierServer.Address"/> tells which). Default 8080.</summary>
    public int Port { get; init; } = 8080;

    /// <summary>The largest request body accepted, in bytes; a larger one gets 413 with a JSON error. Default 10 MiB.</summary>
    public long MaxBodyBytes { get; init; } = DefaultMaxBodyBytes;

    /// <summary><c>?top=K</c> when the request does not say: the K most probable classes (capped at the class count). Default 5.</summary>
    public int DefaultTopK { get; init; } = 5;

    /// <summary>The longer side, in pixels, the image under an attention overlay is reduced to when larger. Default 512.</summary>
    public int AttentionMaxSide { get; init; } = 512;

    /// <summary>
    /// Receives one line per request (<c>POST /v1/predict 200 12.3 ms</c>) and the details of internal errors; null
    /// (the default) logs nothing.
    /// </summary>
    public Action<string>? Log { get; init; }

    /// <summary>Checks every option; throws <see cref="ArgumentException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"port must lie in 0–65535, got {Port}");
        if (MaxBodyBytes < 1) throw new ArgumentException($"the body limit must be at least 1 byte, got {MaxBodyBytes}");
        if (DefaultTopK < 1) throw new ArgumentException($"the default top-k must be ≥ 1, got {DefaultTopK}");
        if (AttentionMaxSide < 16) throw new ArgumentException($"the attention overlay's longer side must be at least 16 pixels, got {AttentionMaxSide}");
        _ = ParseHost(Host);
    }

    /// <summary>
    /// The IP address <paramref name="host"/> names, or null for <c>localhost</c> (every loopback address).
    /// </summary>
    /// <exception cref="ArgumentException">Neither an IP address nor <c>localhost</c>.</exception>
    public static IPAddress? ParseHost(string host)
    {
        ArgumentNullException.ThrowIfNull(host);
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return null;
        string h = host.StartsWith('[') && host.EndsWith(']') ? host[1..^1] : host;
        if (IPAddress.TryParse(h, out var ip)) return ip;
        throw new ArgumentException($"host '{host}' is not an IP address or localhost (e.g. 127.0.0.1, ::1, 0.0.0.0)");
    }
}
