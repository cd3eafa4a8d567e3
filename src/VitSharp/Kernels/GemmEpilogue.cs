using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// What a GEMM does to each finished block of its output while the block is still in cache: add a bias per column,
/// then (optionally) apply GELU. <c>y[i, j] = gelu(c[i, j] + bias[j])</c>. The default value does nothing.
/// </summary>
/// <remarks>Used by the fused inference op <see cref="F.LinearGelu"/> (a Linear followed by GELU): the managed GEMM and
/// the int8 and bf16 kernels call <see cref="Apply"/> on each block right after its last product, instead of a separate
/// pass over the whole output for the bias and another for GELU.</remarks>
internal readonly unsafe struct GemmEpilogue
{
    /// <summary>Bias per output column (indexed by the block's first column plus j), or null.</summary>
    public readonly float* Bias;

    /// <summary>Whether GELU (exact erf form, <see cref="GeluKernel"/>) follows the bias.</summary>
    public readonly bool Gelu;

    /// <summary>Creates an epilogue.</summary>
    public GemmEpilogue(float* bias, bool gelu) { Bias = bias; Gelu = gelu; }

    /// <summary>True when the epilogue does nothing.</summary>
    public bool IsNone => Bias == null && !Gelu;

    /// <summary>Applies the epilogue to rows × cols of c (row stride ldc) whose first column is column col0 of the output.</summary>
    public void Apply(float* c, int ldc, int rows, int cols, int col0)
    {
        if (IsNone || rows <= 0 || cols <= 0) return;
        for (int r = 0; r < rows; r++)
        {
            var row = new Span<float>(c + (long)r * ldc, cols);
            if (Bias != null) TensorPrimitives.Add(row, new ReadOnlySpan<float>(Bias + col0, cols), row);
            if (Gelu) GeluKernel.Forward(row, row);
        }
    }
}
