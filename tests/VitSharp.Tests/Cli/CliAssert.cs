namespace VitSharp.Tests.Cli;

/// <summary>The CLI's error contract as the command tests check it.</summary>
internal static class CliAssert
{
    /// <summary>Exit code 2 and exactly one stderr line, <c>vit: error: …</c>, holding every fragment; no stack trace and no
    /// "internal error".</summary>
    public static void OneLineError((int Code, string Out, string Err) r, params string[] fragments)
    {
        Assert.True(r.Code == 2, $"exit code {r.Code}, stdout:\n{r.Out}\nstderr:\n{r.Err}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one stderr line, got:\n{r.Err}");
        Assert.StartsWith("vit: error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("internal error", r.Err);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }
}
