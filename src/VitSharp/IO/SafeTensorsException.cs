using System.Text;

namespace VitSharp.IO;

/// <summary>
/// A malformed, truncated or misused safetensors file. The message is a single line that starts with the
/// file path and names the tensor key and/or byte offset where relevant.
/// </summary>
public sealed class SafeTensorsException : Exception
{
    /// <summary>The file the error concerns.</summary>
    public string FilePath { get; }

    /// <summary>The tensor key concerned, if any.</summary>
    public string? Key { get; }

    /// <summary>Creates an exception whose message is "<paramref name="filePath"/>: <paramref name="problem"/>".</summary>
    public SafeTensorsException(string filePath, string problem, string? key = null, Exception? inner = null)
        : base(OneLine($"{filePath}: {problem}"), inner)
    {
        FilePath = filePath;
        Key = key;
    }

    /// <summary>Quotes a key for a message: single quotes, control characters escaped so the message stays one line.</summary>
    internal static string Quote(string key) => "'" + Escape(key) + "'";

    private static string Escape(string s)
    {
        if (!s.Any(char.IsControl)) return s;
        var sb = new StringBuilder(s.Length + 8);
        foreach (char c in s)
            sb.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString());
        return sb.ToString();
    }

    private static string OneLine(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n");
}
