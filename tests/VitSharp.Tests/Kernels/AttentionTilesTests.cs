using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>The tile path's row kernels (in-place softmax and its backward over padded rows) and the transposed-left
/// product against double twins, over every row length 1..130 (tails of 1..7 lanes) and odd product shapes.</summary>
public unsafe class AttentionTilesTests
{
    public static TheoryData<int> Lengths()
    {
        var data = new TheoryData<int>();
        for (int m = 1; m <= 130; m++) data.Add(m);
        return data;
    }

    [Theory, MemberData(nameof(Lengths))]
    public void SoftmaxRowMatchesReferenceInPlaceAndIntoAnotherRow(int m)
    {
        Assert.True(AttentionTiles.Supported(8), "the tile path needs AVX2 and FMA, which every machine we target has");
        int mp = AttentionTiles.Pad8(m);
        var x = TestData.Uniform(m, -6, 6, mp).Data;
        for (int j = m; j < mp; j++) x[j] = 1e6f; // garbage in the padding must not reach the max or the sum
        var expected = new double[m];
        double max = x.Take(m).Max(), z = x.Take(m).Sum(t => Math.Exp(t - max));
        for (int j = 0; j < m; j++) expected[j] = Math.Exp(x[j] - max) / z;
        var inPlace = (float[])x.Clone();
        var into = new float[m + 1];
        into[m] = 42f;
        fixed (float* px = x, pi = inPlace, po = into)
        {
            AttentionTiles.SoftmaxRow(pi, m, pi);
            AttentionTiles.SoftmaxRow(px, m, po);
        }
        for (int j = 0; j < m; j++)
        {
            Assert.True(Math.Abs(inPlace[j] - expected[j]) <= 2e-7 + 2e-6 * expected[j], $"m={m} j={j}: {inPlace[j]} vs {expected[j]}");
            Assert.Equal(inPlace[j], into[j]);
        }
        for (int j = m; j < mp; j++) Assert.Equal(0f, inPlace[j]);
        Assert.Equal(42f, into[m]); // nothing written past the row
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 7)]
    [InlineData(7, 50)]
    [InlineData(4, 63)]
    [InlineData(3, 64)]
    [InlineData(6, 100)]
    public void SoftmaxRowsGiveEachRowSoftmaxRowsBitsInPlaceAndIntoP(int n, int m)
    {
        // Rows go two at a time (interleaved) where they have no 16-lane prefix; every row must still get SoftmaxRow's bits,
        // with a shift-mask-like −100 in some rows (the subnormal floor) and garbage in the padding.
        int mp = AttentionTiles.Pad8(m);
        var x = TestData.Uniform(n * 31 + m, -6, 6, n * mp).Data;
        for (int i = 0; i < n; i++)
        {
            for (int j = m; j < mp; j++) x[i * mp + j] = 1e6f;
            if (i % 2 == 1) for (int j = 0; j < m; j += 3) x[i * mp + j] -= 100f;
        }
        var single = (float[])x.Clone();
        var singleP = new float[n * m];
        var rows = (float[])x.Clone();
        var rowsP = new float[n * m];
        var inPlace = (float[])x.Clone();
        var inPlaceSingle = (float[])x.Clone();
        fixed (float* ps = single, psp = singleP, pr = rows, prp = rowsP, pi = inPlace, pis = inPlaceSingle)
        {
            for (int i = 0; i < n; i++)
            {
                AttentionTiles.SoftmaxRow(ps + i * mp, m, psp + i * m);
                AttentionTiles.SoftmaxRow(pis + i * mp, m, pis + i * mp);
            }
            AttentionTiles.SoftmaxRows(pr, n, m, mp, prp, m);
            AttentionTiles.SoftmaxRows(pi, n, m, mp, pi, mp);
        }
        Assert.Equal(singleP, rowsP);
        Assert.Equal(single, rows);          // the unnormalised exponentials left in s
        Assert.Equal(inPlaceSingle, inPlace);
    }

    /// <summary>A row with Swin's shift mask (−100 on some scores): the masked probabilities (true values ~1e−44, subnormal
    /// in float32) come out 0, never subnormal, and the rest match the double reference.</summary>
    [Theory]
    [InlineData(49)]
    [InlineData(7)]
    [InlineData(100)]
    public void SoftmaxRowGivesZeroNotSubnormalProbabilities(int m)
    {
        int mp = AttentionTiles.Pad8(m);
        var x = TestData.Uniform(m, -3, 3, mp).Data;
        for (int j = 0; j < m; j += 3) x[j] -= 100f;
        x[m / 2] = 84.5f - 100f + x[1]; // e^(x − max) near the floor: either 0 or a normal float
        var p = new float[m];
        double max = x.Take(m).Max(), z = x.Take(m).Sum(t => Math.Exp(t - max));
        var exact = x.Take(m).Select(t => Math.Exp(t - max) / z).ToArray();
        fixed (float* px = x, pp = p) AttentionTiles.SoftmaxRow(px, m, pp);
        for (int j = 0; j < m; j++)
        {
            double expected = exact[j];
            Assert.False(float.IsSubnormal(p[j]), $"m={m} j={j}: subnormal {p[j]:E}");
            if (j % 3 == 0 && j != m / 2) Assert.Equal(0f, p[j]);
            Assert.True(Math.Abs(p[j] - expected) <= 3e-38 + 2e-6 * expected, $"m={m} j={j}: {p[j]} vs {expected}");
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(8, 8)]
    [InlineData(50, 32)]
    [InlineData(17, 24)]
    [InlineData(9, 13)]
    [InlineData(3, 40)]
    public void TransposeCopiesAndZeroPadsTheRows(int rows, int cols)
    {
        int lds = cols + 3, ldd = AttentionTiles.Pad8(rows) + 8;
        var src = TestData.Uniform(rows * 7 + cols, -1, 1, rows * lds).Data;
        var dst = Enumerable.Repeat(float.NaN, cols * ldd).ToArray();
        fixed (float* ps = src, pd = dst) AttentionTiles.Transpose(ps, lds, rows, cols, pd, ldd);
        for (int j = 0; j < cols; j++)
            for (int i = 0; i < ldd; i++)
                Assert.Equal(i < rows ? src[i * lds + j] : 0f, dst[j * ldd + i]);
    }

    [Theory, MemberData(nameof(Lengths))]
    public void SoftmaxBackwardRowMatchesReference(int m)
    {
        Assert.True(AttentionTiles.Supported(8), "the tile path needs AVX2 and FMA, which every machine we target has");
        int mp = AttentionTiles.Pad8(m);
        var p = TestData.Uniform(m + 7, 0, 1, m).Data;
        var d = TestData.Uniform(m + 9, -1, 1, mp).Data;
        double dot = 0;
        for (int j = 0; j < m; j++) dot += (double)p[j] * d[j];
        var expected = Enumerable.Range(0, m).Select(j => p[j] * (d[j] - dot)).ToArray();
        fixed (float* pp = p, pd = d) AttentionTiles.SoftmaxBackwardRow(pp, pd, m);
        for (int j = 0; j < m; j++) Assert.True(Math.Abs(d[j] - expected[j]) <= 1e-5, $"m={m} j={j}: {d[j]} vs {expected[j]}");
        for (int j = m; j < mp; j++) Assert.Equal(0f, d[j]);
    }

    [Theory]
    [InlineData(1, 8, 1, false)]
    [InlineData(5, 8, 3, true)]
    [InlineData(50, 32, 50, true)]
    [InlineData(7, 24, 13, false)]
    [InlineData(13, 40, 29, true)]
    [InlineData(50, 56, 32, false)]
    [InlineData(50, 32, 50, false)]
    [InlineData(6, 64, 9, true)]
    [InlineData(11, 120, 7, true)]
    public void ColsTimesPanelMatchesTransposedProduct(int rows, int cols, int k, bool accumulate)
    {
        Assert.True(AttentionTiles.Supported(8), "the tile path needs AVX2 and FMA, which every machine we target has");
        int lda = rows + 3, ldb = cols + 5, ldc = cols + 8;
        var a = TestData.Uniform(rows * 31 + k, -1, 1, k * lda).Data;      // A stored [k, rows] with a row stride
        var b = TestData.Uniform(cols * 17 + k, -1, 1, k * ldb).Data;
        var c = TestData.Uniform(rows + cols, -1, 1, rows * ldc).Data;
        var c0 = (float[])c.Clone();
        const float alpha = 0.75f;
        fixed (float* pa = a, pb = b, pc = c) AttentionTiles.ColsTimesPanel(pa, lda, pb, ldb, pc, ldc, rows, cols, k, alpha, accumulate);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < ldc; j++)
            {
                if (j >= cols) { Assert.Equal(c0[i * ldc + j], c[i * ldc + j]); continue; } // outside the product: untouched
                double acc = 0;
                for (int t = 0; t < k; t++) acc += (double)a[t * lda + i] * b[t * ldb + j];
                double expected = alpha * acc + (accumulate ? c0[i * ldc + j] : 0);
                Assert.True(Math.Abs(c[i * ldc + j] - expected) <= 1e-5 * (1 + Math.Abs(expected)), $"({i},{j}): {c[i * ldc + j]} vs {expected}");
            }
    }

    /// <summary>The 16-lane 4 × 32 blocks (AVX-512) against the 8-lane ones on the attention shapes (scores 50 × 56 and
    /// 50 × 200, outputs × 32 and × 64, odd rows and depths): one FMA chain per element either way, so equal bits.</summary>
    [Theory]
    [InlineData(50, 56, 32, false)]
    [InlineData(50, 32, 50, true)]
    [InlineData(197, 64, 197, false)]
    [InlineData(9, 200, 64, true)]
    [InlineData(7, 40, 3, false)]
    public void SixteenLaneBlocksGiveTheEightLaneBlocksBits(int rows, int cols, int k, bool accumulate)
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) { Assert.False(AttentionTiles.Use512); return; }
        int lda = k + 3, ldb = cols + 5, ldc = cols + 8;
        var a = TestData.Uniform(rows * 13 + k, -1, 1, rows * lda).Data;
        var b = TestData.Uniform(cols * 7 + k, -1, 1, k * ldb).Data;
        var c = TestData.Uniform(rows + cols + 1, -1, 1, rows * ldc).Data;
        var wide = (float[])c.Clone();
        var narrow = (float[])c.Clone();
        try
        {
            Assert.True(AttentionTiles.Use512);
            fixed (float* pa = a, pb = b, pc = wide) AttentionTiles.RowsTimesPanel(pa, lda, pb, ldb, pc, ldc, rows, cols, k, 0.5f, accumulate);
            AttentionTiles.Use512 = false;
            fixed (float* pa = a, pb = b, pc = narrow) AttentionTiles.RowsTimesPanel(pa, lda, pb, ldb, pc, ldc, rows, cols, k, 0.5f, accumulate);
        }
        finally { AttentionTiles.Use512 = true; }
        Assert.Equal(narrow, wide);
        Assert.NotEqual(c, wide); // the product was written
        for (int i = 0; i < rows; i++) // spot-check against double sums: both could be wrong in the same way
        {
            int j = (i * 7) % cols;
            double acc = 0;
            for (int t = 0; t < k; t++) acc += (double)a[i * lda + t] * b[t * ldb + j];
            double expected = 0.5 * acc + (accumulate ? c[i * ldc + j] : 0);
            Assert.True(Math.Abs(wide[i * ldc + j] - expected) <= 1e-5 * (1 + Math.Abs(expected)), $"({i},{j}): {wide[i * ldc + j]} vs {expected}");
        }
    }
}
