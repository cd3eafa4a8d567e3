using System.CommandLine;
using System.Globalization;
using VitSharp.Inference;
using VitSharp.Serving;

namespace VitSharp.Cli;

/// <summary>
/// <c>vit serve CHECKPOINT</c>: serves a classifier over HTTP (<see cref="ClassifierServer"/>) — <c>POST /v1/predict</c>,
/// <c>POST /v1/attention</c>, <c>GET /healthz</c> and a web page at <c>/</c> — until Ctrl-C or SIGTERM.
/// </summary>
public static class ServeCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Creates the command.</summary>
    public static Command Create(CliContext ctx)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint written by vit train or vit import, or pretrained weights vit import reads (.pth, .safetensors, .npz, a Hugging Face folder) whose architecture they reveal" };
        var port = new Option<int>("--port", "-p") { Description = "TCP port to listen on (0: any free port, printed at start)", DefaultValueFactory = _ => 8080 };
        var host = new Option<string>("--host") { Description = "Address to listen on: an IP address or localhost; 0.0.0.0 exposes the server to the network", DefaultValueFactory = _ => "127.0.0.1" };
        var maxBody = new Option<double>("--max-body-mb") { Description = "Largest request body accepted, in MiB (larger: 413)", DefaultValueFactory = _ => 10 };
        var top = new Option<int>("--top", "-k") { Description = "Classes returned when a request has no ?top=K", DefaultValueFactory = _ => 5 };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Do not print a line per request" };
        var allowNonFinite = new Option<bool>("--allow-nonfinite") { Description = "Load weights holding NaN or ±∞ with a warning instead of refusing them" };
        var precision = PrecisionOption.Create();
        var cmd = new Command("serve", "Serve a checkpoint over HTTP: POST /v1/predict (JSON top-k), POST /v1/attention (PNG), GET /healthz, and a web page at / to try it")
        {
            checkpoint, port, host, maxBody, top, quiet, allowNonFinite, precision,
        };
        cmd.SetAction(pr =>
        {
            double mb = pr.GetValue(maxBody);
            if (!(mb > 0) || mb > 2048) throw new ArgumentException($"--max-body-mb must lie in (0, 2048], got {mb.ToString(Inv)}");
            int k = pr.GetValue(top);
            if (k < 1) throw new ArgumentException($"--top must be ≥ 1, got {k}");
            int p = pr.GetValue(port);
            if (p is < 0 or > 65535) throw new ArgumentException($"--port must lie in 0–65535, got {p}");
            string h = pr.GetValue(host)!;
            try { ClassifierServerOptions.ParseHost(h); }
            catch (ArgumentException e) { throw new ArgumentException("--host: " + e.Message); }
            var prec = PrecisionOption.Parse(pr.GetValue(precision));
            bool logRequests = !pr.GetValue(quiet);
            var options = new ClassifierServerOptions
            {
                Host = h, Port = p, MaxBodyBytes = (long)Math.Round(mb * 1024 * 1024), DefaultTopK = k,
                Log = logRequests ? line => { lock (ctx.Out) { ctx.Out.WriteLine(line); ctx.Out.Flush(); } } : null,
            };
            var classifier = ImageClassifier.Load(pr.GetValue(checkpoint)!, new VitSharp.Import.ImportOptions
            {
                AllowNonFinite = pr.GetValue(allowNonFinite), Warn = m => ctx.Err.WriteLine("vit: warning: " + m),
            }, prec);
            var server = ClassifierServer.StartAsync(classifier, options).GetAwaiter().GetResult();
            try
            {
                var (c, ih, iw) = classifier.InputShape;
                ctx.Out.WriteLine($"Serving {classifier.Checkpoint.Path} ({classifier.Checkpoint.Info.Model.Constructor}, {classifier.ClassNames.Count} classes, input {c}×{ih}×{iw}, precision {PrecisionOption.Describe(prec)})");
                ctx.Out.WriteLine($"Listening on {server.Address} (the page: {server.Address}; API: POST {server.Address}v1/predict); Ctrl-C stops");
                ctx.Out.Flush();
                server.WaitForShutdownAsync().GetAwaiter().GetResult();
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            ctx.Out.WriteLine("Stopped");
            return CliApp.ExitOk;
        });
        return cmd;
    }
}
