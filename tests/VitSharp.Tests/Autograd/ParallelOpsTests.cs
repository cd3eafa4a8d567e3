using VitSharp.Kernels;

namespace VitSharp.Tests.Autograd;

/// <summary>Ops that split large inputs into chunks over both cores give the single-threaded kernels' results.</summary>
public class ParallelOpsTests
{
    [Theory]
    [InlineData(1000, 100)]
    [InlineData(4097, 33)]
    public void ChunkedLayerNormMatchesTheSerialKernel(int rows, int cols)
    {
        Assert.True(Parallel2.Chunks(rows, cols) > 1 || Environment.ProcessorCount < 2, "the input should be large enough to be split");
        var rng = new Random(rows);
        var x = Tensor.RandN(rng, 0.5f, 2f, rows, cols); x.RequiresGrad = true;
        var w = Tensor.RandN(rng, 1f, 0.3f, cols); w.RequiresGrad = true;
        var b = Tensor.RandN(rng, 0f, 0.3f, cols); b.RequiresGrad = true;
        var dy = Tensor.RandN(rng, 0, 1, rows, cols);
        var y = F.LayerNorm(x, w, b);
        y.Backward(dy);

        var yRef = new float[rows * cols]; var mean = new float[rows]; var rstd = new float[rows];
        LayerNormKernel.Forward(x.Data, w.Data, b.Data, rows, cols, 1e-5f, mean, rstd, yRef);
        var dx = new float[rows * cols]; var dw = new float[cols]; var db = new float[cols];
        LayerNormKernel.Backward(dy.Data, x.Data, w.Data, mean, rstd, rows, cols, dx, dw, db);

        Assert.Equal(yRef, y.Data);           // rows are independent: bit for bit
        Assert.Equal(dx, x.Grad!.Data);
        // Weight and bias gradients are sums over rows: chunk partials change the order of the additions.
        for (int c = 0; c < cols; c++)
        {
            Assert.True(Math.Abs(dw[c] - w.Grad!.Data[c]) <= 1e-4f * (1 + Math.Abs(dw[c])), $"dweight[{c}]: {w.Grad.Data[c]} vs {dw[c]}");
            Assert.True(Math.Abs(db[c] - b.Grad!.Data[c]) <= 1e-4f * (1 + Math.Abs(db[c])), $"dbias[{c}]: {b.Grad.Data[c]} vs {db[c]}");
        }
    }

    [Fact]
    public void ChunkedGeluMatchesTheSerialKernelBitForBit()
    {
        int n = 300_001;
        var x = Tensor.RandN(new Random(5), 0, 3, n); x.RequiresGrad = true;
        var dy = Tensor.RandN(new Random(6), 0, 1, n);
        var y = x.Gelu();
        y.Backward(dy);
        var yRef = new float[n]; var dx = new float[n];
        GeluKernel.Forward(x.Data, yRef);
        GeluKernel.Backward(dy.Data, x.Data, dx);
        Assert.Equal(yRef, y.Data);
        Assert.Equal(dx, x.Grad!.Data);
    }

    [Fact]
    public void SmallRangesStayOnOneThreadAndLargeOnesSplit()
    {
        Assert.Equal(1, Parallel2.Chunks(10, 10));
        Assert.Equal(1, Parallel2.Chunks(1, 1 << 20));
        Assert.Equal(Environment.ProcessorCount >= 2 ? 4 * Environment.ProcessorCount : 1, Parallel2.Chunks(1 << 20, 1));
    }
}
