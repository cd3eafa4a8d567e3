using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>BatchNormKernel against a double-precision twin: statistics, forward and backward in both modes.</summary>
public class BatchNormKernelTests
{
    public static TheoryData<int, int, int> Shapes() => new() { { 2, 3, 5 }, { 1, 4, 7 }, { 5, 1, 1 }, { 3, 2, 33 }, { 4, 5, 9 } };

    private static (double[] mean, double[] var) Stats(float[] x, int b, int c, int s)
    {
        var mean = new double[c]; var v = new double[c];
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0; for (int n = 0; n < b; n++) for (int i = 0; i < s; i++) sum += x[(n * c + ch) * s + i];
            mean[ch] = sum / (b * s);
            double q = 0; for (int n = 0; n < b; n++) for (int i = 0; i < s; i++) q += Math.Pow(x[(n * c + ch) * s + i] - mean[ch], 2);
            v[ch] = q / (b * s);
        }
        return (mean, v);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void StatisticsAndForwardMatchReference(int b, int c, int s)
    {
        // Offset inputs (mean ≈ 5) so that a one-pass variance would lose accuracy.
        var x = TestData.Uniform(b * 10 + c, 4, 6, b, c, s).Data;
        var w = TestData.Uniform(2, 0.5f, 1.5f, c).Data; var bias = TestData.Uniform(3, -1, 1, c).Data;
        var (rm, rv) = Stats(x, b, c, s);
        var mean = new float[c]; var variance = new float[c];
        BatchNormKernel.Statistics(x, b, c, s, 0, c, mean, variance);
        TestData.AssertClose(rm, mean, 1e-6, 1e-6, "mean");
        TestData.AssertClose(rv, variance, 1e-6, 1e-4, "variance");
        var rstd = rv.Select(v => (float)(1 / Math.Sqrt(v + 1e-5))).ToArray();
        var y = new float[x.Length];
        // Two halves of the channel range, as threads would split it.
        int half = c / 2;
        BatchNormKernel.Forward(x, b, c, s, 0, half, mean, rstd, w, bias, y);
        BatchNormKernel.Forward(x, b, c, s, half, c - half, mean, rstd, w, bias, y);
        var expected = new double[x.Length];
        for (int n = 0; n < b; n++) for (int ch = 0; ch < c; ch++) for (int i = 0; i < s; i++)
        {
            int o = (n * c + ch) * s + i;
            expected[o] = (x[o] - rm[ch]) / Math.Sqrt(rv[ch] + 1e-5) * w[ch] + bias[ch];
        }
        TestData.AssertClose(expected, y, 1e-4, 1e-4, "forward");
    }

    [Theory, MemberData(nameof(Shapes))]
    public void BackwardMatchesReferenceInBothModes(int b, int c, int s)
    {
        var x = TestData.Uniform(b + 3 * c + s, -2, 2, b, c, s).Data;
        var dy = TestData.Uniform(77, -1, 1, b, c, s).Data;
        var w = TestData.Uniform(2, 0.5f, 1.5f, c).Data;
        var (m, v) = Stats(x, b, c, s);
        // Evaluation mode uses given (running) statistics that differ from the batch's.
        var runMean = TestData.Uniform(5, -0.5f, 0.5f, c).Data; var runVar = TestData.Uniform(6, 0.5f, 2f, c).Data;
        foreach (bool batchStats in new[] { true, false })
        {
            double[] mean = batchStats ? m : runMean.Select(q => (double)q).ToArray();
            double[] var = batchStats ? v : runVar.Select(q => (double)q).ToArray();
            var rstd = var.Select(q => 1 / Math.Sqrt(q + 1e-5)).ToArray();
            var eDx = new double[x.Length]; var eDw = new double[c]; var eDb = new double[c];
            int nTot = b * s;
            for (int ch = 0; ch < c; ch++)
            {
                double sg = 0, sgx = 0;
                for (int n = 0; n < b; n++) for (int i = 0; i < s; i++)
                {
                    int o = (n * c + ch) * s + i; double xh = (x[o] - mean[ch]) * rstd[ch];
                    sg += dy[o]; sgx += dy[o] * xh;
                }
                eDb[ch] = sg + 1; eDw[ch] = sgx + 1;
                for (int n = 0; n < b; n++) for (int i = 0; i < s; i++)
                {
                    int o = (n * c + ch) * s + i; double xh = (x[o] - mean[ch]) * rstd[ch];
                    eDx[o] = 1 + w[ch] * rstd[ch] * (batchStats ? dy[o] - sg / nTot - xh * sgx / nTot : dy[o]);
                }
            }
            var dx = Enumerable.Repeat(1f, x.Length).ToArray(); var dw = Enumerable.Repeat(1f, c).ToArray(); var db = Enumerable.Repeat(1f, c).ToArray();
            BatchNormKernel.Backward(dy, x, b, c, s, 0, c, mean.Select(q => (float)q).ToArray(), rstd.Select(q => (float)q).ToArray(), w, batchStats, dx, dw, db);
            TestData.AssertClose(eDx, dx, 1e-4, 1e-4, $"dx (batch statistics {batchStats})");
            TestData.AssertClose(eDw, dw, 1e-4, 1e-4, $"dweight (batch statistics {batchStats})");
            TestData.AssertClose(eDb, db, 1e-5, 1e-5, $"dbias (batch statistics {batchStats})");
        }
    }
}
