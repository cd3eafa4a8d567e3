namespace VitSharp.Tests.Autograd;

/// <summary>Tensor.MatMul: all four transpose combinations, unbatched, batched (rank 3 and 4) and with a shared 2-D B.</summary>
public class MatMulGradTests
{
    public static TheoryData<bool, bool, int[], bool> Cases()
    {
        var d = new TheoryData<bool, bool, int[], bool>();
        int[][] batches = [[], [2], [2, 3]];
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
            {
                foreach (var b in batches) d.Add(ta, tb, b, false);
                d.Add(ta, tb, [2], true);
                d.Add(ta, tb, [2, 2], true);
            }
        return d;
    }

    private static (int[] sa, int[] sb) Shapes(bool ta, bool tb, int[] batch, bool shared, int m, int k, int n)
    {
        int[] a = ta ? [.. batch, k, m] : [.. batch, m, k];
        int[] bm = tb ? [n, k] : [k, n];
        int[] b = shared ? bm : [.. batch, .. bm];
        return (a, b);
    }

    [Theory, MemberData(nameof(Cases))]
    public void ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences(bool transA, bool transB, int[] batch, bool sharedB)
    {
        const int m = 3, k = 4, n = 5;
        var (sa, sb) = Shapes(transA, transB, batch, sharedB, m, k, n);
        var a = TestData.Uniform(1, -1, 1, sa);
        var b = TestData.Uniform(2, -1, 1, sb);
        var c = Tensor.MatMul(a, b, transA, transB);
        int nb = TestData.Count(batch);
        Assert.Equal([.. batch, m, n], c.Shape);
        var expected = new double[nb * m * n];
        for (int q = 0; q < nb; q++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double av = a.Data[q * m * k + (transA ? p * m + i : i * k + p)];
                        int boff = sharedB ? 0 : q * k * n;
                        double bv = b.Data[boff + (transB ? j * k + p : p * n + j)];
                        s += av * bv;
                    }
                    expected[(q * m + i) * n + j] = s;
                }
        TestData.AssertClose(expected, c.Data, 1e-5, 1e-5, "matmul");
        GradCheck.Verify(t => Tensor.MatMul(t[0], t[1], transA, transB), a, b);
    }

    [Fact]
    public void SharedBGradientAccumulatesOverTheBatch()
    {
        var a = TestData.Uniform(3, -1, 1, 4, 2, 3);
        var b = TestData.Uniform(4, -1, 1, 3, 2);
        b.RequiresGrad = true;
        Tensor.MatMul(a, b).Backward(Tensor.Ones(4, 2, 2));
        // dB = Σ_batch Aᵀ·1: each entry is the sum of column p of every A.
        for (int p = 0; p < 3; p++)
        {
            double s = 0;
            for (int q = 0; q < 4; q++) for (int i = 0; i < 2; i++) s += a[q, i, p];
            Assert.Equal(s, b.Grad![p, 0], 4);
            Assert.Equal(s, b.Grad![p, 1], 4);
        }
    }

    [Fact]
    public void MismatchedShapesThrow()
    {
        Assert.Throws<ArgumentException>(() => Tensor.MatMul(Tensor.Zeros(2, 3), Tensor.Zeros(4, 5)));
        Assert.Throws<ArgumentException>(() => Tensor.MatMul(Tensor.Zeros(2, 2, 3), Tensor.Zeros(3, 3, 5)));
        Assert.Throws<ArgumentException>(() => Tensor.MatMul(Tensor.Zeros(3), Tensor.Zeros(3, 5)));
    }
}
