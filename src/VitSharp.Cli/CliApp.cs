using System.CommandLine;
using Spectre.Console;

namespace VitSharp.Cli;

/// <summary>
/// The <c>vit</c> command line: builds the command tree and runs it, turning every exception into one
/// <c>vit: error: …</c> line on stderr with exit code 2 (a stack trace only with <c>--verbose</c> or
/// VITSHARP_DEBUG=1).
/// </summary>
public static class CliApp
{
    /// <summary>Exit code: everything passed / succeeded.</summary>
    public const int ExitOk = 0;
    /// <summary>Exit code: the command ran but found failures (e.g. parity rows out of tolerance).</summary>
    public const int ExitFailed = 1;
    /// <summary>Exit code: bad input or usage, or an error while running.</summary>
    public const int ExitError = 2;
    /// <summary>Exit code: training stopped because the loss became NaN or infinite (the last good checkpoint is kept).</summary>
    public const int ExitNonFinite = 3;
    /// <summary>Exit code: interrupted by Ctrl-C (128 + SIGINT), after saving what can be resumed.</summary>
    public const int ExitInterrupted = 130;

    /// <summary>Runs the CLI with <paramref name="args"/>, writing to <paramref name="stdout"/> and <paramref name="stderr"/>.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var verbose = new Option<bool>("--verbose", "-v")
        {
            Description = "Show stack traces on errors (also: environment variable VITSHARP_DEBUG=1)",
            Recursive = true,
        };
        var context = new CliContext(stdout, stderr);
        var root = new RootCommand("VitSharp: Vision Transformers on .NET (build, inspect and check models against PyTorch; train, evaluate, classify)");
        root.Options.Add(verbose);
        root.Subcommands.Add(SummaryCommand.Create(context));
        root.Subcommands.Add(ParityCommand.Create(context));
        root.Subcommands.Add(TrainCommand.Create(context));
        root.Subcommands.Add(EvalCommand.Create(context));
        root.Subcommands.Add(PredictCommand.Create(context));
        root.Subcommands.Add(BenchCommand.Create(context));
        root.Subcommands.Add(ImportCommand.Create(context));
        root.Subcommands.Add(ExportCommand.Create(context));
        root.Subcommands.Add(ServeCommand.Create(context));

        ParseResult parsed;
        try { parsed = root.Parse(args); }
        catch (Exception e) { return ReportError(e, stderr, Debug(false)); }

        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        if (parsed.Errors.Count > 0)
        {
            parsed.Invoke(config);          // System.CommandLine's usual messages and help
            return ExitError;
        }
        try { return parsed.Invoke(config); }
        catch (Exception e) { return ReportError(e, stderr, Debug(parsed.GetValue(verbose))); }
    }

    private static bool Debug(bool verbose) =>
        verbose || Environment.GetEnvironmentVariable("VITSHARP_DEBUG") is { Length: > 0 } v && v != "0" && !v.Equals("false", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Writes one <c>vit: error: …</c> line (plus the stack trace when asked) and returns <see cref="ExitError"/>
    /// (<see cref="ExitNonFinite"/> for a training run whose loss became NaN or infinite).
    /// </summary>
    internal static int ReportError(Exception e, TextWriter stderr, bool debug)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } ae) e = ae.InnerException!;
        while (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
        stderr.WriteLine("vit: error: " + OneLine(Describe(e)));
        if (debug) stderr.WriteLine(e.ToString());
        stderr.Flush();
        return e is VitSharp.Training.NonFiniteLossException ? ExitNonFinite : ExitError;
    }

    private static string Describe(Exception e) => e switch
    {
        // Bad-input exceptions carry messages written for the user.
        VitSharp.IO.SafeTensorsException or VitSharp.IO.TorchFileException or VitSharp.IO.NpzException or VitSharp.Parity.ParityException or VitSharp.Models.ModelConfigException
            or VitSharp.NN.StateDictException or ArgumentException or IOException or UnauthorizedAccessException
            or System.Text.Json.JsonException or FormatException or InvalidDataException
            or VitSharp.Data.DataSetException or VitSharp.Training.CheckpointException or VitSharp.Training.NonFiniteLossException or VitSharp.Import.ImportException
            or VitSharp.Export.OnnxExportException or VitSharp.DistributedException => e.Message,
        OutOfMemoryException => "out of memory: " + e.Message,
        // Anything else is a bug in VitSharp: say so, with the type, so it can be reported.
        _ => $"internal error ({e.GetType().Name}): {e.Message} (run with --verbose for the stack trace)",
    };

    private static string OneLine(string s)
    {
        var parts = s.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return parts.Length == 0 ? "(no message)" : string.Join(" ", parts);
    }
}

/// <summary>Where commands write: plain text writers and a Spectre console over stdout.</summary>
public sealed class CliContext(TextWriter stdout, TextWriter stderr)
{
    /// <summary>Standard output.</summary>
    public TextWriter Out { get; } = stdout;
    /// <summary>Standard error.</summary>
    public TextWriter Err { get; } = stderr;

    /// <summary>Whether <see cref="Out"/> is the process's stdout on a real terminal (live displays, colours); false for pipes, files and tests.</summary>
    public bool IsTerminal => ReferenceEquals(Out, System.Console.Out) && !System.Console.IsOutputRedirected;

    /// <summary>A Spectre console over <see cref="Out"/>: colours only on a real terminal; wide when redirected.</summary>
    public IAnsiConsole Console
    {
        get
        {
            if (_console is not null) return _console;
            bool terminal = IsTerminal;
            var c = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(Out),
                Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
                ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
                Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
            });
            if (!terminal) c.Profile.Width = 200;
            return _console = c;
        }
    }
    private IAnsiConsole? _console;
}
