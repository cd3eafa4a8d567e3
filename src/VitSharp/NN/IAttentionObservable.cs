namespace VitSharp.NN;

/// <summary>
/// An attention layer that reports its softmax probabilities [B, H, N, N] (rows: queries, columns: keys) on every forward
/// pass to <see cref="AttentionObserver"/>. <see cref="Inspection.Recorder"/> hooks every such layer of a model.
/// </summary>
public interface IAttentionObservable
{
    /// <summary>When set, receives the attention probabilities [B, H, N, N] of every forward pass.</summary>
    Action<Tensor>? AttentionObserver { get; set; }
}
