using System.Text;
using System.Text.Json;

namespace VitSharp.Data;

/// <summary>Reads a model's class names (index = class id) from a file, or names the built-in ImageNet list.</summary>
public static class ClassNames
{
    /// <summary>
    /// Reads class names from <paramref name="path"/>: a text file with one name per line (each trimmed; trailing
    /// empty lines ignored; an empty line elsewhere is an error), a JSON array of strings (<c>["tench", …]</c>), or a
    /// JSON object mapping ids to names as Hugging Face's <c>id2label</c> (<c>{"0": "tench", …}</c>, ids 0…n−1 each
    /// once, in any order) — or a Hugging Face <c>config.json</c> holding such an <c>id2label</c>. JSON is recognised
    /// by a first non-blank character <c>[</c> or <c>{</c>.
    /// </summary>
    /// <exception cref="DataSetException">The file cannot be read or is malformed; the message names the file and, where it applies, the line.</exception>
    public static IReadOnlyList<string> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try
        {
            text = File.ReadAllText(path, Encoding.UTF8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataSetException(e is FileNotFoundException or DirectoryNotFoundException
                ? $"{path}: file not found" : $"{path}: cannot read: {e.Message}", e);
        }
        string trimmed = text.TrimStart();
        return trimmed.StartsWith('[') || trimmed.StartsWith('{') ? ParseJson(text, path) : ParseLines(text, path);
    }

    /// <summary>
    /// The class names <paramref name="spec"/> names: "imagenet" (any case) is <see cref="ImageNetClasses.Names"/>;
    /// anything else is a file read with <see cref="Load"/>.
    /// </summary>
    /// <exception cref="DataSetException">The file cannot be read or is malformed.</exception>
    public static IReadOnlyList<string> Resolve(string spec)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        return string.Equals(spec.Trim(), "imagenet", StringComparison.OrdinalIgnoreCase) ? ImageNetClasses.Names : Load(spec);
    }

    /// <summary>One name per line, trimmed; trailing empty lines skipped; <paramref name="name"/> names the source in errors.</summary>
    internal static IReadOnlyList<string> ParseLines(string text, string name)
    {
        var lines = text.Split('\n').Select(l => l.Trim()).ToList();
        while (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        if (lines.Count == 0) throw new DataSetException($"{name}: no class names (the file is empty)");
        for (int i = 0; i < lines.Count; i++)
            if (lines[i].Length == 0)
                throw new DataSetException($"{name}: line {i + 1}: empty class name (only trailing empty lines are allowed)");
        return lines.AsReadOnly();
    }

    private static IReadOnlyList<string> ParseJson(string text, string name)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new DataSetException($"{name}: line {(e.LineNumber ?? 0) + 1}: invalid JSON: {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Array)
            {
                var names = new List<string>();
                int i = 0;
                foreach (var item in root.EnumerateArray())
                {
                    names.Add(NameOf(item, name, $"element {i}"));
                    i++;
                }
                if (names.Count == 0) throw new DataSetException($"{name}: no class names (empty JSON array)");
                return names.AsReadOnly();
            }
            if (root.TryGetProperty("id2label", out var id2label))
            {
                if (id2label.ValueKind != JsonValueKind.Object)
                    throw new DataSetException($"{name}: \"id2label\" must be an object of id → name, not {id2label.ValueKind}");
                root = id2label;
            }
            var byId = new SortedDictionary<int, string>();
            foreach (var prop in root.EnumerateObject())
            {
                if (!int.TryParse(prop.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
                    throw new DataSetException($"{name}: key \"{prop.Name}\" is not a class id (expected \"0\", \"1\", …)");
                if (!byId.TryAdd(id, NameOf(prop.Value, name, $"class {id}")))
                    throw new DataSetException($"{name}: class id {id} appears twice");
            }
            if (byId.Count == 0) throw new DataSetException($"{name}: no class names (empty JSON object)");
            for (int i = 0; i < byId.Count; i++)
                if (!byId.ContainsKey(i))
                    throw new DataSetException($"{name}: class id {i} is missing (ids must run from 0 to {byId.Count - 1}, the largest is {byId.Keys.Last()})");
            return byId.Values.ToList().AsReadOnly();
        }
    }

    private static string NameOf(JsonElement item, string file, string what)
    {
        if (item.ValueKind != JsonValueKind.String)
            throw new DataSetException($"{file}: {what} must be a string, not {item.ValueKind.ToString().ToLowerInvariant()} {item.GetRawText()}");
        string s = item.GetString()!.Trim();
        if (s.Length == 0) throw new DataSetException($"{file}: {what} is an empty class name");
        return s;
    }
}
