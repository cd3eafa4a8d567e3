using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>AttentionKernel forward and backward against a double twin over odd shapes.</summary>
public class AttentionKernelTests
{
    public static TheoryData<int, int, int, int, bool> Shapes()
    {
        var data = new TheoryData<int, int, int, int, bool>();
        // Head dims that are multiples of 8 take the direct tile path (when the CPU has AVX2/FMA) unless it is
        // switched off; each shape runs both ways. Tails: rows not a multiple of 4, keys not a multiple of 8.
        foreach (var (g, n, m, d) in new[] { (1, 1, 1, 1), (2, 3, 5, 7), (3, 17, 9, 8), (1, 33, 65, 16), (4, 7, 7, 64), (2, 1, 257, 3),
                     (2, 50, 50, 32), (1, 13, 11, 24), (1, 5, 3, 40),
                     // 16·16·16·2·32 flops > the kernel's 200k threshold: the parallel path.
                     (16, 16, 16, 32) })
            foreach (bool tiles in new[] { true, false }) data.Add(g, n, m, d, tiles);
        return data;
    }

    [Theory, MemberData(nameof(Shapes))]
    public void ForwardAndBackwardMatchReference(int groups, int n, int m, int d, bool tiles)
    {
        bool saved = AttentionKernel.UseTiles;
        AttentionKernel.UseTiles = tiles;
        try { Check(groups, n, m, d); }
        finally { AttentionKernel.UseTiles = saved; }
    }

    [Theory]
    [InlineData(2, 50, 3, 32, true)]
    [InlineData(2, 50, 3, 32, false)]
    [InlineData(3, 7, 2, 8, true)]
    [InlineData(1, 9, 2, 7, false)]
    [InlineData(8, 16, 4, 16, true)]
    public void PackedBackwardWithoutAccumulateWritesWhatAddingToZerosGives(int batch, int n, int heads, int d, bool tiles)
    {
        // A fresh qkv gradient is written, not cleared and added to: every element of dqkv belongs to one (image, head)
        // group, so all of it is written, and the values are those of accumulating into zeros.
        bool saved = AttentionKernel.UseTiles;
        AttentionKernel.UseTiles = tiles;
        try
        {
            var rng = new Random(batch * 100 + n);
            float[] Rand(int len) => Enumerable.Range(0, len).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            var qkv = Rand(batch * n * 3 * heads * d);
            var dout = Rand(batch * n * heads * d);
            var o = new float[batch * n * heads * d];
            var probs = new float[batch * heads * n * n];
            float scale = 1f / MathF.Sqrt(d);
            AttentionKernel.ForwardPacked(qkv, batch, n, heads, d, scale, probs, o);
            var added = new float[qkv.Length];
            AttentionKernel.BackwardPacked(dout, qkv, probs, batch, n, heads, d, scale, added);
            var written = Enumerable.Repeat(float.NaN, qkv.Length).ToArray();
            AttentionKernel.BackwardPacked(dout, qkv, probs, batch, n, heads, d, scale, written, accumulate: false);
            Assert.Equal(added, written);
            Assert.Contains(added, v => v != 0);
        }
        finally { AttentionKernel.UseTiles = saved; }
    }

    [Fact]
    public void ThePathSwitchBelongsToTheCallingThread()
    {
        // Tests switch the path while training tests run in parallel: the two paths round differently, so a
        // process-wide switch made resumed training runs differ from their baselines in the last bits.
        bool saved = AttentionKernel.UseTiles;
        AttentionKernel.UseTiles = false;
        try
        {
            Assert.False(AttentionKernel.UseTiles);
            bool other = false;
            var thread = new Thread(() => other = AttentionKernel.UseTiles);
            thread.Start();
            thread.Join();
            Assert.True(other);
        }
        finally { AttentionKernel.UseTiles = saved; }
    }

    private static void Check(int groups, int n, int m, int d)
    {
        int seed = groups * 1000 + n * 100 + m * 10 + d;
        var q = TestData.Uniform(seed, -1, 1, groups * n * d).Data;
        var k = TestData.Uniform(seed + 1, -1, 1, groups * m * d).Data;
        var v = TestData.Uniform(seed + 2, -1, 1, groups * m * d).Data;
        var dout = TestData.Uniform(seed + 3, -1, 1, groups * n * d).Data;
        float scale = 1 / MathF.Sqrt(d) * 1.5f;
        var probs = new float[groups * n * m];
        var o = new float[groups * n * d];
        AttentionKernel.Forward(q, k, v, groups, n, m, d, scale, probs, o);

        var ep = new double[probs.Length]; var eo = new double[o.Length];
        var edq = new double[q.Length]; var edk = new double[k.Length]; var edv = new double[v.Length];
        for (int g = 0; g < groups; g++)
        {
            int qo = g * n * d, ko = g * m * d, po = g * n * m;
            for (int i = 0; i < n; i++)
            {
                var s = new double[m];
                for (int j = 0; j < m; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)q[qo + i * d + c] * k[ko + j * d + c];
                    s[j] = scale * dot;
                }
                double max = s.Max(), z = s.Sum(t => Math.Exp(t - max));
                for (int j = 0; j < m; j++) ep[po + i * m + j] = Math.Exp(s[j] - max) / z;
                for (int c = 0; c < d; c++)
                {
                    double acc = 0;
                    for (int j = 0; j < m; j++) acc += ep[po + i * m + j] * v[ko + j * d + c];
                    eo[qo + i * d + c] = acc;
                }
                // dP_ij = dO_i·V_j; dS_ij = P_ij(dP_ij − Σ_l P_il dP_il)
                var dp = new double[m];
                for (int j = 0; j < m; j++)
                    for (int c = 0; c < d; c++) dp[j] += (double)dout[qo + i * d + c] * v[ko + j * d + c];
                double rowdot = 0;
                for (int j = 0; j < m; j++) rowdot += ep[po + i * m + j] * dp[j];
                for (int j = 0; j < m; j++)
                {
                    double p = ep[po + i * m + j];
                    double ds = p * (dp[j] - rowdot);
                    for (int c = 0; c < d; c++)
                    {
                        edv[ko + j * d + c] += p * dout[qo + i * d + c];
                        edq[qo + i * d + c] += scale * ds * k[ko + j * d + c];
                        edk[ko + j * d + c] += scale * ds * q[qo + i * d + c];
                    }
                }
            }
        }
        TestData.AssertClose(ep, probs, 1e-6, 1e-5, "probs");
        TestData.AssertClose(eo, o, 1e-5, 1e-5, "output");

        var dq = Enumerable.Repeat(0.5f, q.Length).ToArray();
        var dk = Enumerable.Repeat(-0.5f, k.Length).ToArray();
        var dv = Enumerable.Repeat(0.25f, v.Length).ToArray();
        AttentionKernel.Backward(dout, q, k, v, probs, groups, n, m, d, scale, dq, dk, dv);
        TestData.AssertClose(edq.Select(x => x + 0.5).ToArray(), dq, 1e-5, 1e-4, "dq");
        TestData.AssertClose(edk.Select(x => x - 0.5).ToArray(), dk, 1e-5, 1e-4, "dk");
        TestData.AssertClose(edv.Select(x => x + 0.25).ToArray(), dv, 1e-5, 1e-4, "dv");
    }
}
