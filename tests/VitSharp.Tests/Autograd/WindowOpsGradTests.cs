namespace VitSharp.Tests.Autograd;

/// <summary>F.GatherRows, F.RelativePositionBias and F.AddWindowBias (Swin's data movements and score terms): values
/// against loops written from their definitions, gradients against finite differences, bad shapes refused.</summary>
public class WindowOpsGradTests
{
    [Fact]
    public void GatherRowsCopiesMappedRowsAndZeroesPadding()
    {
        // 2 items of 3 rows of 2; output 4 rows per item: rows 2, 0, padding, 1.
        var x = TestData.Uniform(1, -1, 1, 2, 3, 2);
        int[] map = [2, 0, -1, 1];
        var y = F.GatherRows(x, map, 3, [2, 2, 4]);
        Assert.Equal(new[] { 2, 2, 4 }, y.Shape);
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 4; t++)
                for (int k = 0; k < 2; k++)
                    Assert.Equal(map[t] < 0 ? 0f : x.Data[(b * 3 + map[t]) * 2 + k], y.Data[(b * 4 + t) * 2 + k]);
        GradCheck.Verify(t => F.GatherRows(t[0], map, 3, [2, 2, 4]), x);
    }

    [Fact]
    public void GatherRowsRefusesShapesThatDoNotFit()
    {
        var x = Tensor.Zeros(2, 3, 2);
        Assert.Contains("not a batch of 4 rows", Assert.Throws<ArgumentException>(() => F.GatherRows(x, [0], 4, [2, 1, 2])).Message);
        Assert.Contains("is not 2 items of 2 rows", Assert.Throws<ArgumentException>(() => F.GatherRows(x, [0, 1], 3, [2, 3, 2])).Message);
    }

    [Fact]
    public void RelativePositionBiasGathersTableRowsPerHead()
    {
        var table = TestData.Uniform(2, -1, 1, 5, 3);   // T = 5, 3 heads
        int[] index = [0, 4, 4, 2];                     // N = 2, repeated entries accumulate
        var y = F.RelativePositionBias(table, index, 2);
        Assert.Equal(new[] { 3, 2, 2 }, y.Shape);
        for (int h = 0; h < 3; h++)
            for (int p = 0; p < 4; p++) Assert.Equal(table.Data[index[p] * 3 + h], y.Data[h * 4 + p]);
        GradCheck.Verify(t => F.RelativePositionBias(t[0], index, 2), table);
        Assert.Contains("index 5 is outside the table's 5 rows",
            Assert.Throws<ArgumentException>(() => F.RelativePositionBias(table, [0, 5, 1, 1], 2)).Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AddWindowBiasAddsTheHeadsBiasAndTheWindowsMask(bool masked)
    {
        // 2 images × 3 windows, 2 heads, 2 tokens per window.
        var scores = TestData.Uniform(3, -1, 1, 6, 2, 2, 2);
        var bias = TestData.Uniform(4, -1, 1, 2, 2, 2);
        float[]? mask = masked ? [0, -100, -100, 0, 0, 0, 0, 0, 0, -100, 0, 0] : null;
        var y = F.AddWindowBias(scores, bias, mask, 3);
        for (int g = 0; g < 6; g++)
            for (int h = 0; h < 2; h++)
                for (int p = 0; p < 4; p++)
                {
                    double e = scores.Data[(g * 2 + h) * 4 + p] + bias.Data[h * 4 + p] + (mask is null ? 0 : mask[g % 3 * 4 + p]);
                    Assert.Equal(e, y.Data[(g * 2 + h) * 4 + p], 5);
                }
        GradCheck.Verify(t => F.AddWindowBias(t[0], t[1], mask, 3), scores, bias);
    }

    [Fact]
    public void AddWindowBiasRefusesShapesThatDoNotFit()
    {
        var scores = Tensor.Zeros(6, 2, 2, 2);
        Assert.Contains("do not fit", Assert.Throws<ArgumentException>(() => F.AddWindowBias(scores, Tensor.Zeros(3, 2, 2), null, 3)).Message);
        Assert.Contains("do not fit", Assert.Throws<ArgumentException>(() => F.AddWindowBias(scores, Tensor.Zeros(2, 2, 2), null, 4)).Message);
        Assert.Contains("mask of 4 entries", Assert.Throws<ArgumentException>(() => F.AddWindowBias(scores, Tensor.Zeros(2, 2, 2), new float[4], 3)).Message);
    }
}
