using System.CommandLine;
using VitSharp.Inference;

namespace VitSharp.Cli;

/// <summary><c>--precision fp32|bf16|int8</c>: the number format of the model's Linear layers for inference
/// (<see cref="ModelPrecision.UsePrecision"/>), shared by eval, predict, serve and bench.</summary>
internal static class PrecisionOption
{
    /// <summary>The option (default fp32).</summary>
    public static Option<string> Create() => new("--precision")
    {
        Description = "Number format of the Linear layers for inference: fp32 (default), bf16 (bfloat16 weights and activations, " +
            "float32 accumulation) or int8 (dynamic quantization: int8 weights per output channel, activations per row)",
        DefaultValueFactory = _ => "fp32",
    };

    /// <summary>The parsed value; an unknown name is a one-line error naming the option.</summary>
    public static InferencePrecision Parse(string? text)
    {
        try { return InferencePrecisions.Parse(text ?? "fp32"); }
        catch (ArgumentException e) { throw new ArgumentException("--precision: " + e.Message); }
    }

    /// <summary>"int8 (kernel: vnni)" and the like, for the commands' output.</summary>
    public static string Describe(InferencePrecision precision) => precision switch
    {
        InferencePrecision.Int8 => $"int8 (kernel: {VitSharp.Kernels.Int8Gemm.PathName()})",
        InferencePrecision.BFloat16 => $"bf16 (kernel: {VitSharp.Kernels.Bf16Gemm.PathName()})",
        _ => "fp32",
    };
}
