using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// What a GEMM does to each finished block of its output while the block is still in cache: add a bias per column,
/// apply GELU (optionally), add a residual of the output's shape (optionally):
/// <c>y[i, j] = act(c[i, j] + bias[j]) + residual[i, j]</c>. The default value does nothing.
/// </summary>
/// <remarks>Used by the fused inference ops <see cref="F.LinearGelu"/> (a Linear followed by GELU) and
/// <see cref="F.LinearResidual"/> (a residual stream plus a Linear): the managed GEMM and the int8 and bf16 kernels call
/// <see cref="Apply"/> on each block right after its last product, instead of separate passes over the whole output.</remarks>
internal readonly unsafe struct GemmEpilogue
{
    /// <summary>Bias per output column, or null.</summary>
    public readonly float* Bias;

    /// <summary>Whether GELU (exact erf form, <see cref="GeluKernel"/>) follows the bias.</summary>
    public readonly bool Gelu;

    /// <summary>Residual [m, n] with the output's row stride, added last, or null.</summary>
    public readonly float* Residual;

    /// <summary>Creates an epilogue.</summary>
    public GemmEpilogue(float* bias, bool gelu, float* residual = null) { Bias = bias; Gelu = gelu; Residual = residual; }

    /// <summary>True when the epilogue does nothing.</summary>
    public bool IsNone => Bias == null && !Gelu && Residual == null;

    /// <summary>The same epilogue without its bias (for kernels that add the bias themselves).</summary>
    public GemmEpilogue WithoutBias => new(null, Gelu, Residual);

    /// <summary>Applies the epilogue to rows × cols of c (row stride ldc), the block whose first element is
    /// [row0, col0] of the output.</summary>
    public void Apply(float* c, int ldc, int rows, int cols, int row0, int col0)
    {
        if (IsNone || rows <= 0 || cols <= 0) return;
        for (int r = 0; r < rows; r++)
        {
            var row = new Span<float>(c + (long)r * ldc, cols);
            if (Bias != null) TensorPrimitives.Add(row, new ReadOnlySpan<float>(Bias + col0, cols), row);
            if (Gelu) GeluKernel.Forward(row, row);
            if (Residual != null) TensorPrimitives.Add(row, new ReadOnlySpan<float>(Residual + (long)(row0 + r) * ldc + col0, cols), row);
        }
    }
}
