using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>SoftmaxKernel (softmax and log-softmax, forward and backward) against double-precision twins.</summary>
public class SoftmaxKernelTests
{
    public static TheoryData<int, int, float> Shapes()
    {
        var d = new TheoryData<int, int, float>();
        foreach (var c in ReferenceMath.Lengths) { d.Add(1, c, 3f); d.Add(3, c, 3f); }
        // Large magnitudes: only a max-subtracted implementation stays finite.
        d.Add(2, 33, 200f);
        d.Add(2, 129, 1000f);
        // Enough rows to be split over the compute threads (Swin's windows: 49 keys).
        d.Add(600, 49, 3f);
        d.Add(301, 197, 3f);
        return d;
    }

    private static float[] Input(int rows, int cols, float scale) => TestData.Uniform(rows * 977 + cols, -scale, scale, rows, cols).Data;

    [Theory, MemberData(nameof(Shapes))]
    public void ForwardMatchesReference(int rows, int cols, float scale)
    {
        var x = Input(rows, cols, scale);
        var y = new float[x.Length];
        SoftmaxKernel.Forward(x, rows, cols, y);
        var e = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            var lp = ReferenceMath.LogSoftmax(x.AsSpan(r * cols, cols));
            for (int c = 0; c < cols; c++) e[r * cols + c] = Math.Exp(lp[c]);
        }
        TestData.AssertClose(e, y, 1e-7, 1e-5, "softmax");
    }

    [Theory, MemberData(nameof(Shapes))]
    public void LogForwardMatchesReference(int rows, int cols, float scale)
    {
        var x = Input(rows, cols, scale);
        var y = new float[x.Length];
        SoftmaxKernel.LogForward(x, rows, cols, y);
        var e = new double[x.Length];
        for (int r = 0; r < rows; r++) ReferenceMath.LogSoftmax(x.AsSpan(r * cols, cols)).CopyTo(e, r * cols);
        // Absolute error: log-probabilities are differences of O(scale) numbers.
        TestData.AssertClose(e, y, 1e-6 * Math.Max(1, scale), 1e-6, "log_softmax");
    }

    [Theory, MemberData(nameof(Shapes))]
    public void BackwardMatchesReferenceAndAccumulates(int rows, int cols, float scale)
    {
        var x = Input(rows, cols, scale);
        var dy = TestData.Uniform(5, -1, 1, rows, cols).Data;
        var y = new float[x.Length];
        SoftmaxKernel.Forward(x, rows, cols, y);
        var dx = Enumerable.Repeat(0.25f, x.Length).ToArray();
        SoftmaxKernel.Backward(dy, y, rows, cols, dx);
        var e = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            var p = ReferenceMath.LogSoftmax(x.AsSpan(r * cols, cols)).Select(Math.Exp).ToArray();
            // Jacobian-vector product written out: dx_i = Σ_j dy_j·p_j(δ_ij − p_i).
            for (int i = 0; i < cols; i++)
            {
                double s = 0;
                for (int j = 0; j < cols; j++) s += dy[r * cols + j] * p[j] * ((i == j ? 1 : 0) - p[i]);
                e[r * cols + i] = 0.25 + s;
            }
        }
        TestData.AssertClose(e, dx, 1e-6, 1e-5, "softmax backward");
    }

    [Theory, MemberData(nameof(Shapes))]
    public void LogBackwardMatchesReferenceAndAccumulates(int rows, int cols, float scale)
    {
        var x = Input(rows, cols, scale);
        var dy = TestData.Uniform(6, -1, 1, rows, cols).Data;
        var y = new float[x.Length];
        SoftmaxKernel.LogForward(x, rows, cols, y);
        var dx = Enumerable.Repeat(-0.5f, x.Length).ToArray();
        SoftmaxKernel.LogBackward(dy, y, rows, cols, dx);
        var e = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            var p = ReferenceMath.LogSoftmax(x.AsSpan(r * cols, cols)).Select(Math.Exp).ToArray();
            // dx_i = Σ_j dy_j(δ_ij − p_i).
            for (int i = 0; i < cols; i++)
            {
                double s = 0;
                for (int j = 0; j < cols; j++) s += dy[r * cols + j] * ((i == j ? 1 : 0) - p[i]);
                e[r * cols + i] = -0.5 + s;
            }
        }
        TestData.AssertClose(e, dx, 1e-5, 1e-5, "log_softmax backward");
    }

    [Fact]
    public void ZeroColumnsIsANoOp()
    {
        SoftmaxKernel.Forward([], 2, 0, []);
        SoftmaxKernel.LogForward([], 2, 0, []);
        SoftmaxKernel.Backward([], [], 2, 0, []);
        SoftmaxKernel.LogBackward([], [], 2, 0, []);
    }

    [Fact]
    public void RowsAreIndependent()
    {
        var x = new float[] { 1, 2, 3, 100, 100, 100 };
        var y = new float[6];
        SoftmaxKernel.Forward(x, 2, 3, y);
        Assert.Equal(1f / 3, y[3], 6);
        Assert.Equal(1f, y[0] + y[1] + y[2], 6);
    }

    [Fact]
    public void ShortBuffersAreAnErrorNamingThem()
    {
        var e = Assert.Throws<ArgumentException>(() => SoftmaxKernel.Forward(new float[10], 3, 4, new float[12]));
        Assert.Contains("shorter than rows · cols", e.Message);
        e = Assert.Throws<ArgumentException>(() => SoftmaxKernel.Backward(new float[12], new float[12], 3, 4, new float[11]));
        Assert.Contains("shorter than rows · cols", e.Message);
    }
}
