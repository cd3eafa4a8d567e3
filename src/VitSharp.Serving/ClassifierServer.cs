using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using VitSharp.Inference;

namespace VitSharp.Serving;

/// <summary>
/// A classifier served over HTTP by Kestrel: the endpoints of <see cref="ClassifierEndpoints.MapClassifier"/> on
/// <see cref="ClassifierServerOptions.Host"/>:<see cref="ClassifierServerOptions.Port"/> (loopback, 8080 by default).
/// What <c>vit serve</c> runs.
/// </summary>
/// <example>
/// <code>
/// var classifier = ImageClassifier.Load("runs/vit-fmnist/checkpoint.safetensors");
/// await using var server = await ClassifierServer.StartAsync(classifier, new ClassifierServerOptions { Port = 8080 });
/// Console.WriteLine($"open {server.Address}");
/// await server.WaitForShutdownAsync();   // Ctrl-C or SIGTERM
/// </code>
/// </example>
public sealed class ClassifierServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ClassifierServer(WebApplication app, ImageClassifier classifier, Uri address)
    {
        _app = app;
        Classifier = classifier;
        Address = address;
    }

    /// <summary>The classifier it serves.</summary>
    public ImageClassifier Classifier { get; }

    /// <summary>The address it listens on, e.g. <c>http://127.0.0.1:8080/</c> (the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>Builds the server and starts listening; returns once requests are accepted.</summary>
    /// <exception cref="ArgumentException">An option is out of range or the host is not an IP address or localhost.</exception>
    /// <exception cref="IOException">The address cannot be bound (e.g. the port is in use).</exception>
    public static async Task<ClassifierServer> StartAsync(ImageClassifier classifier, ClassifierServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        options ??= new ClassifierServerOptions();
        options.Validate();
        var ip = ClassifierServerOptions.ParseHost(options.Host);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [], EnvironmentName = Environments.Production, ApplicationName = typeof(ClassifierServer).Assembly.GetName().Name,
        });
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            if (ip is not null) k.Listen(ip, options.Port);
            else if (options.Port == 0) k.Listen(IPAddress.Loopback, 0);   // Kestrel binds "localhost" only to a fixed port
            else k.ListenLocalhost(options.Port);
        });
        var app = builder.Build();
        app.MapClassifier(classifier, options);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        string first = addresses?.FirstOrDefault() ?? $"http://{options.Host}:{options.Port}";
        return new ClassifierServer(app, classifier, new Uri(first.EndsWith('/') ? first : first + "/"));
    }

    /// <summary>Completes when the server is stopped: <see cref="StopAsync"/>, Ctrl-C or SIGTERM, or <paramref name="cancellationToken"/>.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops accepting requests and lets the ones under way finish (up to 5 s).</summary>
    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    /// <summary>Stops the server and releases it.</summary>
    public async ValueTask DisposeAsync()
    {
        try { await _app.StopAsync(); } catch (ObjectDisposedException) { }
        await _app.DisposeAsync();
    }
}
