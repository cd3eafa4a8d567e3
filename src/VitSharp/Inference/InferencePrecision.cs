namespace VitSharp.Inference;

/// <summary>The number format inference runs its Linear layers in (<c>--precision</c>).</summary>
public enum InferencePrecision
{
    /// <summary>float32 everywhere (the default; training always uses it).</summary>
    Float32,
    /// <summary>Linear weights converted once to bfloat16, activations rounded to bfloat16, float32 accumulation.</summary>
    BFloat16,
    /// <summary>Linear layers dynamically quantized: int8 weights per output channel, uint8 activations per row, int32 accumulation.</summary>
    Int8,
}

/// <summary>Names of <see cref="InferencePrecision"/> as the CLI spells them: <c>fp32</c>, <c>bf16</c>, <c>int8</c>.</summary>
public static class InferencePrecisions
{
    /// <summary>The CLI names, in enum order.</summary>
    public static IReadOnlyList<string> Names { get; } = ["fp32", "bf16", "int8"];

    /// <summary>The CLI name of <paramref name="precision"/>.</summary>
    public static string Name(this InferencePrecision precision) => precision switch
    {
        InferencePrecision.Float32 => "fp32",
        InferencePrecision.BFloat16 => "bf16",
        InferencePrecision.Int8 => "int8",
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "unknown precision"),
    };

    /// <summary>Parses <c>fp32</c>/<c>float32</c>, <c>bf16</c>/<c>bfloat16</c> or <c>int8</c> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Any other text, with the accepted names in the message.</exception>
    public static InferencePrecision Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" => InferencePrecision.Float32,
        "bf16" or "bfloat16" => InferencePrecision.BFloat16,
        "int8" => InferencePrecision.Int8,
        _ => throw new ArgumentException($"unknown precision '{text}': expected fp32, bf16 or int8"),
    };
}
