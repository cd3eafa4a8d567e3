namespace VitSharp.Tests;

/// <summary>
/// Finds the PyTorch fixtures: $VITSHARP_FIXTURES if set, else <c>&lt;repo&gt;/../shared/fixtures</c>, where
/// the repository root is found by walking up from the test binaries to the directory holding VitSharp.slnx.
/// </summary>
public static class TestFixtures
{
    private static readonly Lazy<string> _dir = new(Locate);

    /// <summary>The fixture directory (throws with a clear message when it cannot be found).</summary>
    public static string Dir => _dir.Value;

    /// <summary>The path prefix of one fixture, e.g. <c>Prefix("vit")</c>.</summary>
    public static string Prefix(string name) => Path.Combine(Dir, name);

    /// <summary>The repository root (the directory with VitSharp.slnx), or null.</summary>
    public static string? RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "VitSharp.slnx"))) return d.FullName;
        return null;
    }

    private static string Locate()
    {
        string? env = Environment.GetEnvironmentVariable("VITSHARP_FIXTURES");
        if (!string.IsNullOrEmpty(env))
            return Directory.Exists(env) ? Path.GetFullPath(env)
                : throw new DirectoryNotFoundException($"VITSHARP_FIXTURES={env} is not a directory");
        string root = RepoRoot() ?? throw new DirectoryNotFoundException(
            $"cannot find the repository root (VitSharp.slnx) above {AppContext.BaseDirectory}; set VITSHARP_FIXTURES");
        // CI lays shared/ beside the clone; a git worktree (e.g. /work/wt/NAME) sits one level deeper.
        string dir = Path.GetFullPath(Path.Combine(root, "..", "shared", "fixtures"));
        string deeper = Path.GetFullPath(Path.Combine(root, "..", "..", "shared", "fixtures"));
        foreach (var candidate in new[] { dir, deeper })
            if (File.Exists(Path.Combine(candidate, "vit.json"))) return candidate;
        throw new DirectoryNotFoundException($"fixtures not found at {dir} or {deeper} (expected ../shared/fixtures beside the repository); set VITSHARP_FIXTURES");
    }
}
