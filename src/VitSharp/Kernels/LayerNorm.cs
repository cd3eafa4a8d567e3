using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace VitSharp.Kernels;

/// <summary>
/// LayerNorm over the last dimension: y = (x − mean) · rstd · weight + bias, rstd = 1/√(var + eps)
/// (biased variance, as PyTorch). Shapes: x, y, dx, dy [R, C] (R rows = all leading dims, C channels).
/// </summary>
public static class LayerNormKernel
{
    /// <summary>Forward pass; saves per-row <paramref name="mean"/> and <paramref name="rstd"/> [R] for the backward pass.</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        int rows, int cols, float eps, Span<float> mean, Span<float> rstd, Span<float> y)
    {
        if (x.Length < rows * cols || y.Length < rows * cols || weight.Length < cols || bias.Length < cols || mean.Length < rows || rstd.Length < rows)
            throw new ArgumentException("span shorter than rows × cols");
        ref float w0 = ref MemoryMarshal.GetReference(weight);
        ref float b0 = ref MemoryMarshal.GetReference(bias);
        int full = cols & ~7;
        for (int r = 0; r < rows; r++)
        {
            ref float xr = ref Unsafe.Add(ref MemoryMarshal.GetReference(x), r * cols);
            ref float yr = ref Unsafe.Add(ref MemoryMarshal.GetReference(y), r * cols);
            // Two passes for the variance (mean first), as the reference: no cancellation in E[x²] − E[x]². Each sum runs in
            // four independent chains of 8 lanes (vectors 0, 1, 2, 3 mod 4), so that a row is not one long chain of adds.
            var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            int c = 0;
            for (; c + 32 <= full; c += 32)
            {
                a0 += Vector256.LoadUnsafe(ref xr, (nuint)c); a1 += Vector256.LoadUnsafe(ref xr, (nuint)c + 8);
                a2 += Vector256.LoadUnsafe(ref xr, (nuint)c + 16); a3 += Vector256.LoadUnsafe(ref xr, (nuint)c + 24);
            }
            for (; c < full; c += 8) a0 += Vector256.LoadUnsafe(ref xr, (nuint)c);
            float sum = Vector256.Sum((a0 + a1) + (a2 + a3));
            for (; c < cols; c++) sum += Unsafe.Add(ref xr, c);
            float m = sum / cols;
            var vm = Vector256.Create(m);
            a0 = Vector256<float>.Zero; a1 = a0; a2 = a0; a3 = a0;
            for (c = 0; c + 32 <= full; c += 32)
            {
                var t0 = Vector256.LoadUnsafe(ref xr, (nuint)c) - vm; a0 = Vector256.FusedMultiplyAdd(t0, t0, a0);
                var t1 = Vector256.LoadUnsafe(ref xr, (nuint)c + 8) - vm; a1 = Vector256.FusedMultiplyAdd(t1, t1, a1);
                var t2 = Vector256.LoadUnsafe(ref xr, (nuint)c + 16) - vm; a2 = Vector256.FusedMultiplyAdd(t2, t2, a2);
                var t3 = Vector256.LoadUnsafe(ref xr, (nuint)c + 24) - vm; a3 = Vector256.FusedMultiplyAdd(t3, t3, a3);
            }
            for (; c < full; c += 8) { var t = Vector256.LoadUnsafe(ref xr, (nuint)c) - vm; a0 = Vector256.FusedMultiplyAdd(t, t, a0); }
            float sq = Vector256.Sum((a0 + a1) + (a2 + a3));
            for (; c < cols; c++) { float t = Unsafe.Add(ref xr, c) - m; sq += t * t; }
            float s = 1f / MathF.Sqrt(sq / cols + eps);
            mean[r] = m;
            rstd[r] = s;
            var vsc = Vector256.Create(s);
            for (c = 0; c < full; c += 8)
            {
                var xh = (Vector256.LoadUnsafe(ref xr, (nuint)c) - vm) * vsc;
                Vector256.FusedMultiplyAdd(xh, Vector256.LoadUnsafe(ref w0, (nuint)c), Vector256.LoadUnsafe(ref b0, (nuint)c)).StoreUnsafe(ref yr, (nuint)c);
            }
            for (; c < cols; c++) Unsafe.Add(ref yr, c) = MathF.FusedMultiplyAdd((Unsafe.Add(ref xr, c) - m) * s, Unsafe.Add(ref w0, c), Unsafe.Add(ref b0, c));
        }
    }

    /// <summary>
    /// Backward pass; accumulates into <paramref name="dx"/> [R, C], <paramref name="dweight"/> and
    /// <paramref name="dbias"/> [C] (either may be empty: not computed). Two vector passes per row:
    /// x̂ = (x − mean)·rstd, g = dy·w; then dx += rstd·(g − mean(g) − x̂·mean(g·x̂)).
    /// </summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, int rows, int cols,
        Span<float> dx, Span<float> dweight, Span<float> dbias)
    {
        if (x.Length < rows * cols || dy.Length < rows * cols || weight.Length < cols || (!dx.IsEmpty && dx.Length < rows * cols)
            || (!dweight.IsEmpty && dweight.Length < cols) || (!dbias.IsEmpty && dbias.Length < cols))
            throw new ArgumentException("span shorter than rows × cols");
        bool wantW = !dweight.IsEmpty, wantB = !dbias.IsEmpty, wantX = !dx.IsEmpty;
        ref float w0 = ref MemoryMarshal.GetReference(weight);
        ref float dw0 = ref MemoryMarshal.GetReference(dweight);
        ref float db0 = ref MemoryMarshal.GetReference(dbias);
        int full = cols & ~7;
        for (int r = 0; r < rows; r++)
        {
            ref float xr = ref Unsafe.Add(ref MemoryMarshal.GetReference(x), r * cols);
            ref float gr = ref Unsafe.Add(ref MemoryMarshal.GetReference(dy), r * cols);
            float m = mean[r], s = rstd[r];
            var vm = Vector256.Create(m);
            var vs = Vector256.Create(s);
            // Two independent chains per sum (even and odd vectors), so that a row is not one long chain of adds.
            var sg0 = Vector256<float>.Zero; var sg1 = sg0; var sgx0 = sg0; var sgx1 = sg0;
            int c = 0;
            for (; c + 16 <= full; c += 16)
            {
                BackwardLanes(ref xr, ref gr, ref w0, ref dw0, ref db0, c, vm, vs, wantW, wantB, ref sg0, ref sgx0);
                BackwardLanes(ref xr, ref gr, ref w0, ref dw0, ref db0, c + 8, vm, vs, wantW, wantB, ref sg1, ref sgx1);
            }
            for (; c < full; c += 8) BackwardLanes(ref xr, ref gr, ref w0, ref dw0, ref db0, c, vm, vs, wantW, wantB, ref sg0, ref sgx0);
            float sumG = Vector256.Sum(sg0 + sg1), sumGx = Vector256.Sum(sgx0 + sgx1);
            for (; c < cols; c++)
            {
                float xh = (Unsafe.Add(ref xr, c) - m) * s, d = Unsafe.Add(ref gr, c);
                if (wantB) Unsafe.Add(ref db0, c) += d;
                if (wantW) Unsafe.Add(ref dw0, c) += d * xh;
                float g = d * Unsafe.Add(ref w0, c);
                sumG += g;
                sumGx += g * xh;
            }
            if (!wantX) continue;
            float mg = sumG / cols, mgx = sumGx / cols;
            ref float dxr = ref Unsafe.Add(ref MemoryMarshal.GetReference(dx), r * cols);
            var vmg = Vector256.Create(mg);
            var vmgx = Vector256.Create(mgx);
            for (c = 0; c < full; c += 8)
            {
                var xh = (Vector256.LoadUnsafe(ref xr, (nuint)c) - vm) * vs;
                var g = Vector256.LoadUnsafe(ref gr, (nuint)c) * Vector256.LoadUnsafe(ref w0, (nuint)c);
                var t = g - vmg - xh * vmgx;
                Vector256.FusedMultiplyAdd(t, vs, Vector256.LoadUnsafe(ref dxr, (nuint)c)).StoreUnsafe(ref dxr, (nuint)c);
            }
            for (; c < cols; c++)
            {
                float xh = (Unsafe.Add(ref xr, c) - m) * s;
                float g = Unsafe.Add(ref gr, c) * Unsafe.Add(ref w0, c);
                Unsafe.Add(ref dxr, c) += (g - mg - xh * mgx) * s;
            }
        }
    }

    // Eight channels from c of one row's first backward pass: the weight and bias gradients, and g = dy·w and g·x̂ summed
    // into the chain (sg, sgx).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardLanes(ref float xr, ref float gr, ref float w0, ref float dw0, ref float db0, int c,
        Vector256<float> vm, Vector256<float> vs, bool wantW, bool wantB, ref Vector256<float> sg, ref Vector256<float> sgx)
    {
        var xh = (Vector256.LoadUnsafe(ref xr, (nuint)c) - vm) * vs;
        var d = Vector256.LoadUnsafe(ref gr, (nuint)c);
        if (wantB) (Vector256.LoadUnsafe(ref db0, (nuint)c) + d).StoreUnsafe(ref db0, (nuint)c);
        if (wantW) Vector256.FusedMultiplyAdd(d, xh, Vector256.LoadUnsafe(ref dw0, (nuint)c)).StoreUnsafe(ref dw0, (nuint)c);
        var g = d * Vector256.LoadUnsafe(ref w0, (nuint)c);
        sg += g;
        sgx = Vector256.FusedMultiplyAdd(g, xh, sgx);
    }
}
