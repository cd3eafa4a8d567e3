using System.CommandLine;

namespace VitSharp.Cli;

/// <summary><c>--set NAME=VALUE</c> (repeatable): a model preset's constructor arguments changed by their Python names.</summary>
internal static class ModelArgsOption
{
    /// <summary>The option, shared by <c>vit train</c> and <c>vit bench</c>.</summary>
    public static Option<string[]> Create() => new("--set")
    {
        Description = "Change one of the model's arguments, NAME=VALUE with the Python name (repeatable), e.g. --set dim=96 --set depth=4",
    };

    /// <summary>The given NAME=VALUE pairs as a dictionary (null when none); a malformed pair is an error naming it.</summary>
    public static Dictionary<string, string>? Parse(string[]? pairs) => VitSharp.Training.Trainer.ParseModelArgs(pairs);
}
