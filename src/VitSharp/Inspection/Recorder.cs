using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Inspection;

/// <summary>
/// Records the attention maps of a ViT-family model, as vit-pytorch's <c>recorder.Recorder</c>: wraps the model, puts a
/// forward hook (<see cref="Module.RegisterForwardHook"/>) on the <see cref="AttentionProbabilities"/> module
/// (<c>attend</c>) of every attention layer of its transformer (vit-pytorch's <see cref="Attention"/>, timm's
/// <see cref="TimmAttention"/>, torch's <see cref="MultiheadAttention"/>, DeepViT's <see cref="ReAttention"/>, CaiT's
/// <see cref="TalkingHeadsAttention"/>), and <see cref="Forward"/> returns the model's logits together with the softmax
/// attention probabilities of every layer, stacked as [B, depth, H, N, N] (rows: queries, columns: keys; each row sums
/// to 1). The model's output is unchanged. <see cref="Eject"/> (or <see cref="Dispose"/>) removes the hooks and returns
/// the model as it was.
/// </summary>
/// <remarks>A <see cref="DistillWrapper"/> is inspected through its student (the teacher's attention is not recorded).
/// Recordings are copies, so they outlive any <see cref="TensorScope"/>. Hooks of others on the same modules are left
/// alone.</remarks>
/// <example>
/// <code>
/// using var recorder = new Recorder(vit);
/// var (logits, attention) = recorder.Forward(images);   // attention [B, depth, heads, N, N]
/// </code>
/// </example>
public sealed class Recorder : IDisposable
{
    private readonly List<IDisposable> _handles = new();
    private readonly List<Tensor> _recordings = new();
    private bool _ejected;

    /// <summary>The model whose forward runs (a wrapper's student).</summary>
    public Module Model { get; }

    /// <summary>The hooked attention layers (each the parent of an <see cref="AttentionProbabilities"/> module), in module order.</summary>
    public IReadOnlyList<Module> Blocks { get; }

    /// <summary>The attention maps recorded by the last <see cref="Forward"/>, one [B, H, N, M] per attention call.</summary>
    public IReadOnlyList<Tensor> Recordings => _recordings;

    /// <summary>Hooks every attention layer of <paramref name="model"/>'s transformer (or of the whole model when it has no <c>transformer</c> child).</summary>
    /// <exception cref="ArgumentException">The model has no attention layers.</exception>
    public Recorder(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = Inspect.Target(model);
        var layers = AttentionLayers(Inspect.Transformer(Model));
        if (layers.Count == 0) throw new ArgumentException($"{Model.GetType().Name} has no attention blocks to record");
        Blocks = layers.Select(l => l.Layer).ToList();
        Action<Module, ForwardInputs, Tensor> record = (_, _, probabilities) => _recordings.Add(probabilities.Clone());
        foreach (var (_, attend) in layers) _handles.Add(attend.RegisterForwardHook(record));
    }

    /// <summary>The attention layers under <paramref name="root"/> with their probability modules, in module order.</summary>
    public static IReadOnlyList<(Module Layer, AttentionProbabilities Attend)> AttentionLayers(Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var found = new List<(Module, AttentionProbabilities)>();
        foreach (var (_, m) in root.NamedModules())
            foreach (var (_, child) in m.NamedChildren())
                if (child is AttentionProbabilities a) found.Add((m, a));
        return found;
    }

    /// <summary>
    /// Runs the model on <paramref name="images"/>; returns its output and the attention maps [B, depth, H, N, N]
    /// (depth = the number of attention calls, one per layer).
    /// </summary>
    /// <exception cref="InvalidOperationException">The recorder was ejected, or the layers' maps differ in shape (use <see cref="Recordings"/>).</exception>
    public (Tensor Logits, Tensor Attention) Forward(Tensor images)
    {
        if (_ejected) throw new InvalidOperationException("the recorder has been ejected and cannot be used any more");
        Clear();
        var logits = Model.Forward(images);
        return (logits, Stack(_recordings));
    }

    /// <summary>Drops the recordings.</summary>
    public void Clear() => _recordings.Clear();

    /// <summary>Removes the hooks and returns the model.</summary>
    public Module Eject()
    {
        if (!_ejected)
        {
            foreach (var h in _handles) h.Dispose();
            _handles.Clear();
            _ejected = true;
        }
        return Model;
    }

    /// <summary>Same as <see cref="Eject"/>.</summary>
    public void Dispose() => Eject();

    /// <summary>Stacks maps of equal shape [B, …] into [B, L, …] (the new axis second).</summary>
    internal static Tensor Stack(IReadOnlyList<Tensor> maps)
    {
        if (maps.Count == 0) throw new InvalidOperationException("nothing was recorded in this forward pass");
        var first = maps[0].Shape;
        foreach (var m in maps)
            if (!m.Shape.SequenceEqual(first))
                throw new InvalidOperationException($"the layers' maps differ in shape ({Tensor.ShapeString(first)} and {Tensor.ShapeString(m.Shape)}); read them one by one from Recordings");
        int b = first[0], inner = maps[0].Size / Math.Max(b, 1);
        var shape = new int[first.Length + 1];
        shape[0] = b; shape[1] = maps.Count;
        Array.Copy(first, 1, shape, 2, first.Length - 1);
        var result = new Tensor(shape);
        for (int l = 0; l < maps.Count; l++)
            for (int i = 0; i < b; i++)
                maps[l].Data.AsSpan(i * inner, inner).CopyTo(result.Data.AsSpan((i * maps.Count + l) * inner, inner));
        return result;
    }
}

/// <summary>Shared lookup of the model to inspect.</summary>
internal static class Inspect
{
    /// <summary>The module whose forward is inspected: a distillation wrapper's student, otherwise the model itself.</summary>
    public static Module Target(Module model) => model is DistillWrapper w ? w.Student : model;

    /// <summary>The model's <c>transformer</c> child (as vit-pytorch's recorder and extractor use), or the model itself when there is none.</summary>
    public static Module Transformer(Module model) =>
        model.NamedChildren().FirstOrDefault(c => c.Name == "transformer").Module ?? model;

    /// <summary>The ViT behind a model (a wrapper's student is one), or null.</summary>
    public static ViT? ViT(Module model) => Target(model) as ViT;

    /// <summary>The patch-token model behind a model (a ViT, a wrapper's student, DeiT's distilled model, …), or null.</summary>
    public static IPatchTokenModel? PatchTokens(Module model) => Target(model) as IPatchTokenModel;
}
