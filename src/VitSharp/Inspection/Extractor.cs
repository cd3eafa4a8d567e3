using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Inspection;

/// <summary>What <see cref="Extractor.Forward"/> returns.</summary>
/// <param name="Logits">The model's output.</param>
/// <param name="Embeddings">The transformer's output tokens [B, N, C] (for <see cref="ViT"/>: after its final LayerNorm, class token first).</param>
/// <param name="Layers">With layer-by-layer extraction, the residual stream after each layer [B, depth, N, C] (before the final LayerNorm); otherwise null.</param>
public sealed record Extraction(Tensor Logits, Tensor Embeddings, Tensor? Layers);

/// <summary>
/// Extracts token embeddings from a ViT-family model, as vit-pytorch's <c>extractor.Extractor</c>: a forward hook
/// (<see cref="Module.RegisterForwardHook"/>) on the model's <c>transformer</c> captures its output tokens [B, N, C] while
/// the model computes its logits as usual; optionally (<c>layerByLayer</c>) also the residual stream after every layer,
/// from hooks on the layers' feed-forward blocks (layer i's stream is <c>layers.i.1</c>'s output plus its input).
/// <see cref="Eject"/> (or <see cref="Dispose"/>) removes the hooks and returns the model.
/// </summary>
/// <remarks>A <see cref="DistillWrapper"/> is inspected through its student. The embeddings are copies.</remarks>
public sealed class Extractor : IDisposable
{
    private readonly List<IDisposable> _handles = new();
    private readonly List<Tensor> _perLayer = new();
    private Tensor? _latents;
    private bool _ejected;

    /// <summary>The model whose forward runs (a wrapper's student).</summary>
    public Module Model { get; }

    /// <summary>Whether <see cref="Extraction.Layers"/> is filled.</summary>
    public bool LayerByLayer { get; }

    /// <summary>Hooks <paramref name="model"/>'s <c>transformer</c> child.</summary>
    /// <exception cref="ArgumentException">The model has no <c>transformer</c> child, or layer-by-layer extraction was asked of one that is not a <see cref="Transformer"/>.</exception>
    public Extractor(Module model, bool layerByLayer = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = Inspect.Target(model);
        var transformer = Model.NamedChildren().FirstOrDefault(c => c.Name == "transformer").Module
            ?? throw new ArgumentException($"{Model.GetType().Name} has no 'transformer' module to extract embeddings from");
        LayerByLayer = layerByLayer;
        if (layerByLayer)
        {
            var layers = transformer as Transformer
                ?? throw new ArgumentException($"layer-by-layer embeddings need a {nameof(Transformer)}; {Model.GetType().Name}'s transformer is a {transformer.GetType().Name}");
            // The stream after a layer, x + ff(x), is not any module's output: the hook adds the block's input back, as the layer does.
            Action<Module, ForwardInputs, Tensor> record = (_, inputs, output) => _perLayer.Add(Sum(output, inputs.Input));
            for (int i = 0; i < layers.Layers.Count; i++)
                _handles.Add(((ModuleList)layers.Layers[i])[1].RegisterForwardHook(record));
        }
        _handles.Add(transformer.RegisterForwardHook((_, _, output) => _latents = output.Clone()));
    }

    // a + b into a tensor of its own (outside any scope, off the tape); float addition rounds as the layer's own sum.
    private static Tensor Sum(Tensor a, Tensor b)
    {
        var sum = new Tensor(a.Shape);
        System.Numerics.Tensors.TensorPrimitives.Add(a.Data.AsSpan(0, a.Size), b.Data.AsSpan(0, b.Size), sum.Data);
        return sum;
    }

    /// <summary>Runs the model on <paramref name="images"/> and returns its output with the captured embeddings.</summary>
    /// <exception cref="InvalidOperationException">The extractor was ejected.</exception>
    public Extraction Forward(Tensor images)
    {
        if (_ejected) throw new InvalidOperationException("the extractor has been ejected and cannot be used any more");
        _latents = null;
        _perLayer.Clear();
        var logits = Model.Forward(images);
        var latents = _latents ?? throw new InvalidOperationException($"{Model.GetType().Name}'s forward did not run its transformer");
        return new Extraction(logits, latents, LayerByLayer ? (_perLayer.Count == 0 ? new Tensor(latents.Dim(0), 0, latents.Dim(1), latents.Dim(2)) : Recorder.Stack(_perLayer)) : null);
    }

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
}
