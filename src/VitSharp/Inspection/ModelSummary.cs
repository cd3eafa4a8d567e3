using System.Diagnostics;
using VitSharp.NN;

namespace VitSharp.Inspection;

/// <summary>One module of a <see cref="ModelSummary"/>.</summary>
/// <param name="Name">Its dotted PyTorch name ("" for the model itself).</param>
/// <param name="Type">Its class name.</param>
/// <param name="Depth">Nesting depth (0 for the model, 1 for its children, …).</param>
/// <param name="OutputShape">Its output's shape in the summary's forward pass (the last call's); null when it was not
/// called itself (containers such as <see cref="ModuleList"/>).</param>
/// <param name="Calls">How often it ran in that pass.</param>
/// <param name="OwnParameters">Parameters registered on the module itself (not its children).</param>
/// <param name="TotalParameters">Parameters of the module and all its descendants.</param>
public sealed record ModelSummaryRow(string Name, string Type, int Depth, int[]? OutputShape, int Calls, long OwnParameters, long TotalParameters);

/// <summary>
/// A model's modules with their output shapes and parameter counts, recorded during one forward pass without gradients
/// on a zero input (the model in eval mode), as <c>vit summary</c> prints them.
/// </summary>
/// <param name="Rows">Every module, the model first, in <see cref="Module.NamedModules"/> order.</param>
/// <param name="TotalParameters">The model's parameter count.</param>
/// <param name="InputShape">The zero input's shape.</param>
/// <param name="ForwardMilliseconds">Wall time of that single forward pass (the first call includes JIT compilation: not a benchmark).</param>
public sealed record ModelSummary(IReadOnlyList<ModelSummaryRow> Rows, long TotalParameters, int[] InputShape, double ForwardMilliseconds)
{
    /// <summary>
    /// Runs <paramref name="model"/> once (eval mode, no gradients; its training mode is restored afterwards) on zeros of
    /// <paramref name="inputShape"/> (e.g. [1, 3, 224, 224]) and records every module's output shape and parameters.
    /// </summary>
    /// <exception cref="ArgumentException">The input shape is empty or has a dimension &lt; 1.</exception>
    public static ModelSummary Of(Module model, int[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        if (inputShape.Length == 0 || inputShape.Any(d => d < 1))
            throw new ArgumentException($"input shape {Tensor.ShapeString(inputShape)} must have at least one dimension, each ≥ 1");
        var input = Tensor.Zeros(inputShape);
        var shapes = new Dictionary<Module, (int[] Shape, int Calls)>(ReferenceEqualityComparer.Instance);
        Action<Module, ForwardInputs, Tensor> hook = (m, _, output) =>
            shapes[m] = (output.Shape, shapes.TryGetValue(m, out var s) ? s.Calls + 1 : 1);
        var handles = model.NamedModules().Select(m => m.Module.RegisterForwardHook(hook)).ToList();
        bool wasTraining = model.Training;
        model.Eval();
        var sw = Stopwatch.StartNew();
        try
        {
            using (Autograd.NoGrad()) model.Forward(input);
        }
        finally
        {
            handles.ForEach(h => h.Dispose());
            model.Train(wasTraining);
        }
        sw.Stop();

        var rows = new List<ModelSummaryRow>();
        foreach (var (name, m) in model.NamedModules())
        {
            long own = m.NamedParameters().Where(p => !p.Name.Contains('.')).Sum(p => (long)p.Parameter.Size);
            int depth = name.Length == 0 ? 0 : name.Count(c => c == '.') + 1;
            var (shape, calls) = shapes.TryGetValue(m, out var s) ? s : (null, 0);
            rows.Add(new ModelSummaryRow(name, m.GetType().Name, depth, shape, calls, own, m.ParameterCount()));
        }
        return new ModelSummary(rows, model.ParameterCount(), (int[])inputShape.Clone(), sw.Elapsed.TotalMilliseconds);
    }
}
