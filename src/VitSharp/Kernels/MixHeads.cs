namespace VitSharp.Kernels;

/// <summary>
/// Talking-heads / re-attention mixing across the head axis, einsum <c>'b h r, h g -> b g r'</c>:
/// y[b, g, r] = Σ_h x[b, h, r]·w[h, g] with x [B, H, R], w [H, G], y [B, G, R] (row-major; R is everything
/// after the head axis, e.g. the N×M attention map). Per batch entry this is one GEMM y_b = wᵀ·x_b.
/// </summary>
public static class MixHeadsKernel
{
    private static void Check(int batch, int heads, int outHeads, int rest, int x, int w, int y)
    {
        if (batch < 0 || heads < 0 || outHeads < 0 || rest < 0) throw new ArgumentOutOfRangeException(nameof(batch), "extents must be non-negative");
        if (x < (long)batch * heads * rest || w < (long)heads * outHeads || y < (long)batch * outHeads * rest)
            throw new ArgumentException("span too short for the given shape");
    }

    /// <summary>y[b, g, r] = Σ_h x[b, h, r]·w[h, g] (overwrites <paramref name="y"/>).</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int batch, int heads, int outHeads, int rest, Span<float> y)
    {
        Check(batch, heads, outHeads, rest, x.Length, w.Length, y.Length);
        if (batch == 0 || outHeads == 0 || rest == 0) return;
        if (heads == 0) { y[..(batch * outHeads * rest)].Clear(); return; }
        // y_b [G, R] = wᵀ [G, H] · x_b [H, R]; w is shared by every batch entry.
        Gemm.SgemmStridedBatched(true, false, outHeads, rest, heads, 1f, w, outHeads, 0, x, rest, (long)heads * rest,
            0f, y, rest, (long)outHeads * rest, batch);
    }

    /// <summary>
    /// Accumulates the gradients of <see cref="Forward"/> given dy [B, G, R]: dx[b, h, r] += Σ_g w[h, g]·dy[b, g, r] and
    /// dw[h, g] += Σ_b Σ_r x[b, h, r]·dy[b, g, r]. An empty span skips that gradient.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> w, int batch, int heads, int outHeads, int rest,
        Span<float> dx, Span<float> dw)
    {
        Check(batch, heads, outHeads, rest, x.Length, w.Length, dy.Length);
        if (batch == 0 || heads == 0 || outHeads == 0 || rest == 0) return;
        if (!dx.IsEmpty)
        {
            if (dx.Length < (long)batch * heads * rest) throw new ArgumentException("dx is too short for the given shape");
            // dx_b [H, R] += w [H, G] · dy_b [G, R].
            Gemm.SgemmStridedBatched(false, false, heads, rest, outHeads, 1f, w, outHeads, 0, dy, rest, (long)outHeads * rest,
                1f, dx, rest, (long)heads * rest, batch);
        }
        if (!dw.IsEmpty)
        {
            if (dw.Length < (long)heads * outHeads) throw new ArgumentException("dw is too short for the given shape");
            // dw [H, G] += x_b [H, R] · dy_bᵀ [R, G], batch entries in order (one shared destination).
            for (int b = 0; b < batch; b++)
                Gemm.Sgemm(false, true, heads, outHeads, rest, 1f, x.Slice(b * heads * rest, heads * rest), rest,
                    dy.Slice(b * outHeads * rest, outHeads * rest), rest, 1f, dw, outHeads);
        }
    }
}
