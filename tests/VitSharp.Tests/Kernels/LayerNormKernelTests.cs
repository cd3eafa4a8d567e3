using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>LayerNormKernel against a naive double-precision twin, over vector lengths 1..257.</summary>
public class LayerNormKernelTests
{
    // float32 tolerances: the kernel's sums over ≤ 257 elements carry ~√n·ε₃₂ relative error (ε₃₂ ≈ 6e-8),
    // so 1e-5 leaves ~10× margin; a wrong formula (e.g. unbiased variance, off by √(n/(n−1))) misses by ≥ 2e-3.
    private const double Tol = 1e-5;

    private static (double[] y, double[] mean, double[] rstd) Forward(float[] x, float[] w, float[] b, int rows, int cols, double eps)
    {
        var y = new double[rows * cols]; var mean = new double[rows]; var rstd = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double m = 0; for (int c = 0; c < cols; c++) m += x[r * cols + c]; m /= cols;
            double v = 0; for (int c = 0; c < cols; c++) v += (x[r * cols + c] - m) * (x[r * cols + c] - m); v /= cols;
            double s = 1 / Math.Sqrt(v + eps);
            mean[r] = m; rstd[r] = s;
            for (int c = 0; c < cols; c++) y[r * cols + c] = (x[r * cols + c] - m) * s * w[c] + b[c];
        }
        return (y, mean, rstd);
    }

    /// <summary>Backward by the textbook formula dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w.</summary>
    private static (double[] dx, double[] dw, double[] db) Backward(float[] dy, float[] x, float[] w, int rows, int cols, double eps)
    {
        var (_, mean, rstd) = Forward(x, w, new float[cols], rows, cols, eps);
        var dx = new double[rows * cols]; var dw = new double[cols]; var db = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            var xh = new double[cols]; var g = new double[cols];
            double mg = 0, mgx = 0;
            for (int c = 0; c < cols; c++)
            {
                xh[c] = (x[r * cols + c] - mean[r]) * rstd[r];
                g[c] = dy[r * cols + c] * (double)w[c];
                mg += g[c] / cols; mgx += g[c] * xh[c] / cols;
                dw[c] += dy[r * cols + c] * xh[c];
                db[c] += dy[r * cols + c];
            }
            for (int c = 0; c < cols; c++) dx[r * cols + c] = rstd[r] * (g[c] - mg - xh[c] * mgx);
        }
        return (dx, dw, db);
    }

    public static TheoryData<int, int> Shapes()
    {
        var d = new TheoryData<int, int>();
        foreach (var c in ReferenceMath.Lengths) { d.Add(1, c); d.Add(3, c); }
        return d;
    }

    [Theory, MemberData(nameof(Shapes))]
    public void ForwardMatchesReference(int rows, int cols)
    {
        // Offset inputs (mean ≈ 3) so that a one-pass E[x²]−E[x]² variance would lose accuracy.
        var x = TestData.Uniform(rows * 1000 + cols, 2, 4, rows, cols).Data;
        var w = TestData.Uniform(7, 0.5f, 1.5f, cols).Data;
        var b = TestData.Uniform(8, -1, 1, cols).Data;
        var y = new float[rows * cols]; var mean = new float[rows]; var rstd = new float[rows];
        LayerNormKernel.Forward(x, w, b, rows, cols, 1e-5f, mean, rstd, y);
        var (ey, em, es) = Forward(x, w, b, rows, cols, 1e-5);
        TestData.AssertClose(ey, y, Tol, Tol, "y");
        TestData.AssertClose(em, mean, Tol, Tol, "mean");
        TestData.AssertClose(es, rstd, 0, Tol, "rstd");
    }

    [Theory, MemberData(nameof(Shapes))]
    public void BackwardMatchesReferenceAndAccumulates(int rows, int cols)
    {
        var x = TestData.Uniform(rows * 1000 + cols, -2, 2, rows, cols).Data;
        var w = TestData.Uniform(9, 0.5f, 1.5f, cols).Data;
        var b = new float[cols];
        var dy = TestData.Uniform(10, -1, 1, rows, cols).Data;
        var y = new float[rows * cols]; var mean = new float[rows]; var rstd = new float[rows];
        LayerNormKernel.Forward(x, w, b, rows, cols, 1e-5f, mean, rstd, y);
        // Pre-filled destinations: the kernel must add, not overwrite.
        var dx = Enumerable.Repeat(0.5f, rows * cols).ToArray();
        var dw = Enumerable.Repeat(-0.25f, cols).ToArray();
        var db = Enumerable.Repeat(1f, cols).ToArray();
        LayerNormKernel.Backward(dy, x, w, mean, rstd, rows, cols, dx, dw, db);
        var (edx, edw, edb) = Backward(dy, x, w, rows, cols, 1e-5);
        // dx is a difference of O(1) terms; its absolute error scales with rstd (≤ ~2 here).
        TestData.AssertClose(edx.Select(v => v + 0.5).ToArray(), dx, 2 * Tol, Tol, "dx");
        TestData.AssertClose(edw.Select(v => v - 0.25).ToArray(), dw, Tol * rows, Tol, "dweight");
        TestData.AssertClose(edb.Select(v => v + 1).ToArray(), db, Tol * rows, Tol, "dbias");
    }

    [Fact]
    public void BackwardWithEmptyWeightAndBiasSpansOnlyComputesDx()
    {
        int rows = 2, cols = 33;
        var x = TestData.Uniform(1, -2, 2, rows, cols).Data;
        var w = TestData.Uniform(2, 0.5f, 1.5f, cols).Data;
        var dy = TestData.Uniform(3, -1, 1, rows, cols).Data;
        var y = new float[rows * cols]; var mean = new float[rows]; var rstd = new float[rows];
        LayerNormKernel.Forward(x, w, new float[cols], rows, cols, 1e-5f, mean, rstd, y);
        var dx = new float[rows * cols];
        LayerNormKernel.Backward(dy, x, w, mean, rstd, rows, cols, dx, default, default);
        TestData.AssertClose(Backward(dy, x, w, rows, cols, 1e-5).dx, dx, 2 * Tol, Tol, "dx");
    }

    [Fact]
    public void ConstantRowGivesBiasAndFiniteValues()
    {
        int cols = 17;
        var x = Enumerable.Repeat(3.25f, cols).ToArray();
        var w = TestData.Uniform(1, 0.5f, 1.5f, cols).Data;
        var b = TestData.Uniform(2, -1, 1, cols).Data;
        var y = new float[cols];
        LayerNormKernel.Forward(x, w, b, 1, cols, 1e-5f, new float[1], new float[1], y);
        Assert.Equal(b, y);
    }

    [Fact]
    public void ZeroRowsIsANoOp()
    {
        LayerNormKernel.Forward([], new float[4], new float[4], 0, 4, 1e-5f, [], [], []);
        LayerNormKernel.Backward([], [], new float[4], [], [], 0, 4, [], new float[4], new float[4]);
    }
}
