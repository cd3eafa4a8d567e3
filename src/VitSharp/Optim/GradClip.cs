using System.Numerics.Tensors;

namespace VitSharp.Optim;

/// <summary>Gradient clipping as torch.nn.utils.clip_grad_norm_.</summary>
public static class GradClip
{
    /// <summary>Scales all gradients so that their global L2 norm is at most <paramref name="maxNorm"/>; returns the norm before clipping.</summary>
    public static float ClipGradNorm(IEnumerable<Tensor> parameters, float maxNorm) =>
        // Module.Parameters() is an array: walked as a span (enumerating it as IEnumerable would allocate an enumerator).
        ClipGradNorm((parameters as Tensor[] ?? parameters.ToArray()).AsSpan(), maxNorm);

    /// <summary>Scales all gradients so that their global L2 norm is at most <paramref name="maxNorm"/>; returns the norm before clipping.</summary>
    public static float ClipGradNorm(ReadOnlySpan<Tensor> parameters, float maxNorm)
    {
        double sum = 0;
        foreach (var p in parameters)
            if (p.Grad is { } g) sum += TensorPrimitives.SumOfSquares<float>(g.Data);
        float norm = (float)Math.Sqrt(sum);
        float coef = maxNorm / (norm + 1e-6f);
        if (coef < 1f)
            foreach (var p in parameters)
                if (p.Grad is { } g) TensorPrimitives.Multiply(g.Data, coef, g.Data);
        return norm;
    }
}
