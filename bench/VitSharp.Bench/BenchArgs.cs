namespace VitSharp.Bench;

/// <summary>The console benches' option parsing: <c>--name value</c> pairs.</summary>
internal static class BenchArgs
{
    /// <summary>The value after <paramref name="name"/>, or null when it is absent or last.</summary>
    public static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
