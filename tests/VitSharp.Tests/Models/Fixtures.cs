namespace VitSharp.Tests.Models;

/// <summary>Locates the PyTorch fixtures: $VITSHARP_FIXTURES, else a <c>shared/fixtures</c> directory beside the repository root.</summary>
internal static class Fixtures
{
    public static string Directory
    {
        get
        {
            var tried = new List<string>();
            var env = Environment.GetEnvironmentVariable("VITSHARP_FIXTURES");
            if (!string.IsNullOrEmpty(env))
            {
                if (System.IO.Directory.Exists(env)) return env;
                tried.Add($"$VITSHARP_FIXTURES={env}");
            }
            // Walk up from the test binaries; at each level look for ../shared/fixtures relative to a repo root
            // (a directory holding .git or a solution) and, failing that, for shared/fixtures in any ancestor's parent.
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                bool isRepoRoot = System.IO.Directory.Exists(Path.Combine(dir.FullName, ".git")) || File.Exists(Path.Combine(dir.FullName, ".git"))
                    || dir.GetFiles("*.sln*").Length > 0;
                if (isRepoRoot && dir.Parent is not null)
                {
                    string candidate = Path.Combine(dir.Parent.FullName, "shared", "fixtures");
                    if (System.IO.Directory.Exists(candidate)) return candidate;
                    tried.Add(candidate);
                    // A git worktree (e.g. /work/wt/NAME) sits one level deeper than the main clone.
                    if (dir.Parent.Parent is not null)
                    {
                        candidate = Path.Combine(dir.Parent.Parent.FullName, "shared", "fixtures");
                        if (System.IO.Directory.Exists(candidate)) return candidate;
                        tried.Add(candidate);
                    }
                }
            }
            Assert.Fail($"PyTorch fixtures not found (set VITSHARP_FIXTURES to the fixtures directory). Looked in: {string.Join(", ", tried)}; walked up from {AppContext.BaseDirectory}");
            return null!;
        }
    }

    public static string Prefix(string name) => Path.Combine(Directory, name);
}
