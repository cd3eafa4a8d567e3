using VitSharp.Kernels;

namespace VitSharp;

public static partial class F
{
    /// <summary>
    /// Mixes the head axis (dimension 1) with a matrix, as vit-pytorch's talking heads and re-attention
    /// (<c>einsum('b h i j, h g -> b g i j', x, w)</c>): x [B, H, ...], weight [H, G] → [B, G, ...],
    /// y[b, g, …] = Σ_h x[b, h, …]·weight[h, g]. Differentiable in both inputs.
    /// </summary>
    public static Tensor MixHeads(Tensor x, Tensor weight)
    {
        if (x.Rank < 2 || weight.Rank != 2 || weight.Dim(0) != x.Dim(1))
            throw new ArgumentException($"mix_heads: expected x [B, H, ...] and weight [H, G] with equal H, got {Tensor.ShapeString(x.ShapeSpan)} and {Tensor.ShapeString(weight.ShapeSpan)}");
        int b = x.Dim(0), h = x.Dim(1), g = weight.Dim(1);
        int rest = 1;
        for (int i = 2; i < x.Rank; i++) rest *= x.Dim(i);
        Span<int> shape = stackalloc int[x.Rank];
        x.ShapeSpan.CopyTo(shape);
        shape[1] = g;
        var y = Tensor.Empty(shape);
        MixHeadsKernel.Forward(x.Data, weight.Data, b, h, g, rest, y.Data);
        OpTrace.Current?.Op("mix_heads", y, [x, weight], OpAttributes.None);
        var st = new MixHeadsState { X = x, Weight = weight, B = b, H = h, G = g, Rest = rest };
        return Autograd.Record(y, "mix_heads", [x, weight], st, static (in MixHeadsState s, Tensor r) =>
        {
            var dx = s.X.RequiresGrad ? s.X.Grad0() : Span<float>.Empty;
            var dw = s.Weight.RequiresGrad ? s.Weight.Grad0() : Span<float>.Empty;
            MixHeadsKernel.Backward(r.Grad!.Data, s.X.Data, s.Weight.Data, s.B, s.H, s.G, s.Rest, dx, dw);
        });
    }

    private struct MixHeadsState { public Tensor X, Weight; public int B, H, G, Rest; }
}
