namespace VitSharp.Kernels;

/// <summary>
/// The soft-target distillation loss of vit-pytorch's <c>DistillWrapper</c>:
/// <c>F.kl_div(F.log_softmax(s / T), F.softmax(t / T), reduction='batchmean') · T²</c>, i.e.
/// loss = T²/R · Σ_r Σ_k p[r, k]·(log p[r, k] − log q[r, k]) with p = softmax(t/T) (the target, a constant) and
/// q = softmax(s/T). Terms with p = 0 count 0 (PyTorch's xlogy). Shapes: logits, targetLogits, logQ, logP, dlogits [R, K].
/// </summary>
public static class SoftTargetKLKernel
{
    /// <summary>
    /// Returns the loss; writes log q = log_softmax(logits/T) to <paramref name="logQ"/> and log p = log_softmax(targetLogits/T)
    /// to <paramref name="logP"/> for the backward pass. NaN when R = 0 (as PyTorch's batchmean of an empty batch).
    /// </summary>
    public static float Forward(ReadOnlySpan<float> logits, ReadOnlySpan<float> targetLogits, int rows, int classes, float temperature,
        Span<float> logQ, Span<float> logP)
    {
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature must be > 0, got {temperature}");
        int n = rows * classes;
        System.Numerics.Tensors.TensorPrimitives.Divide(logits[..n], temperature, logQ[..n]);
        System.Numerics.Tensors.TensorPrimitives.Divide(targetLogits[..n], temperature, logP[..n]);
        SoftmaxKernel.LogForward(logQ, rows, classes, logQ);
        SoftmaxKernel.LogForward(logP, rows, classes, logP);
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            float p = MathF.Exp(logP[i]);
            if (p != 0) total += (double)p * ((double)logP[i] - logQ[i]);
        }
        return rows == 0 ? float.NaN : (float)(total * temperature * temperature / rows);
    }

    /// <summary>dlogits += dloss · T/R · (q − p), from the forward pass's <paramref name="logQ"/> and <paramref name="logP"/>.</summary>
    public static void Backward(float dloss, ReadOnlySpan<float> logQ, ReadOnlySpan<float> logP, int rows, int classes, float temperature,
        Span<float> dlogits)
    {
        if (rows == 0) return;
        float g = dloss * temperature / rows;
        int n = rows * classes;
        for (int i = 0; i < n; i++) dlogits[i] += g * (MathF.Exp(logQ[i]) - MathF.Exp(logP[i]));
    }
}
