namespace VitSharp.Models;

/// <summary>
/// A model that computes its own training loss instead of plain cross-entropy on its logits (e.g.
/// <see cref="DistillWrapper"/>: cross-entropy plus a distillation term). The trainer and <c>vit parity</c> use
/// <see cref="ComputeLoss"/> when a model implements this; <see cref="NN.Module.Forward(Tensor)"/> still returns the
/// logits used for evaluation and prediction.
/// </summary>
public interface ILossModel
{
    /// <summary>
    /// Runs the model on <paramref name="images"/> and returns its training loss against <paramref name="labels"/> (one
    /// class index per image), with <paramref name="labelSmoothing"/> applied to the cross-entropy part.
    /// </summary>
    ModelLoss ComputeLoss(Tensor images, ReadOnlySpan<int> labels, float labelSmoothing = 0f);
}

/// <summary>The result of <see cref="ILossModel.ComputeLoss"/>.</summary>
/// <param name="Loss">The scalar loss to differentiate.</param>
/// <param name="Logits">The logits [B, classes] the model predicts with (for training accuracy).</param>
public record ModelLoss(Tensor Loss, Tensor Logits);
