namespace VitSharp.Tests.Data;

/// <summary>A fresh temporary directory, deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir(string tag = "data")
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vitsharp-{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
