using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>Column sums (bias gradients) against a naive double twin, over widths around the 32-column strips.</summary>
public class ColumnSumKernelTests
{
    [Theory]
    [InlineData(0, 5)] [InlineData(1, 1)] [InlineData(3, 7)] [InlineData(17, 31)] [InlineData(9, 32)]
    [InlineData(5, 33)] [InlineData(64, 63)] [InlineData(7, 64)] [InlineData(100, 65)] [InlineData(3, 257)]
    public void AccumulatesColumnSums(int rows, int cols)
    {
        var rng = new Random(rows * 1000 + cols);
        var src = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var dst = Enumerable.Range(0, cols).Select(i => 0.5f * i).ToArray();
        var expected = new double[cols];
        for (int c = 0; c < cols; c++)
        {
            expected[c] = 0.5 * c;
            for (int r = 0; r < rows; r++) expected[c] += src[r * cols + c];
        }
        ColumnSumKernel.Accumulate(src, rows, cols, dst);
        for (int c = 0; c < cols; c++)
            Assert.True(Math.Abs(dst[c] - expected[c]) <= 1e-5 * (rows + 1) + 1e-6 * Math.Abs(expected[c]), $"column {c}: {dst[c]} vs {expected[c]}");
    }

    [Fact]
    public void RejectsShortSpans() =>
        Assert.Throws<ArgumentException>(() => ColumnSumKernel.Accumulate(new float[5], 2, 3, new float[3]));
}
