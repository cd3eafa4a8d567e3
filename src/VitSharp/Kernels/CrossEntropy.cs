namespace VitSharp.Kernels;

/// <summary>
/// Cross-entropy with label smoothing ε, as torch.nn.functional.cross_entropy (mean over rows):
/// loss_r = (1−ε)·(−log p[r, y_r]) + ε·mean_k(−log p[r, k]). Shapes: logits, logProbs, dlogits [R, K]; labels [R].
/// </summary>
public static class CrossEntropyKernel
{
    /// <summary>Returns the mean loss; writes log-softmax of the logits to <paramref name="logProbs"/> for the backward pass.</summary>
    public static float Forward(ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, int rows, int classes,
        float smoothing, Span<float> logProbs)
    {
        SoftmaxKernel.LogForward(logits, rows, classes, logProbs);
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            int y = labels[r];
            if ((uint)y >= (uint)classes)
                throw new ArgumentOutOfRangeException(nameof(labels), $"label {y} at row {r} is outside [0, {classes})");
            var lp = logProbs.Slice(r * classes, classes);
            double nll = -lp[y];
            if (smoothing != 0)
            {
                double mean = 0;
                for (int k = 0; k < classes; k++) mean -= lp[k];
                mean /= classes;
                nll = (1 - smoothing) * nll + smoothing * mean;
            }
            total += nll;
        }
        return rows == 0 ? float.NaN : (float)(total / rows);
    }

    /// <summary>dlogits += dloss/R · (softmax − ((1−ε)·onehot(y) + ε/K)).</summary>
    public static void Backward(float dloss, ReadOnlySpan<float> logProbs, ReadOnlySpan<int> labels, int rows, int classes,
        float smoothing, Span<float> dlogits)
    {
        if (rows == 0) return;
        float g = dloss / rows;
        float off = smoothing / classes;
        for (int r = 0; r < rows; r++)
        {
            var lp = logProbs.Slice(r * classes, classes);
            var d = dlogits.Slice(r * classes, classes);
            for (int k = 0; k < classes; k++) d[k] += g * (MathF.Exp(lp[k]) - off);
            d[labels[r]] -= g * (1 - smoothing);
        }
    }
}
