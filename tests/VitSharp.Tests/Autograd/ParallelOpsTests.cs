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

    private struct Marks : Parallel2.IChunkBody
    {
        public int[] Chunk;
        public readonly void Run(int chunk, int start, int length)
        {
            for (int i = start; i < start + length; i++) Chunk[i] = chunk + 1;
        }
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(7, 3)]
    [InlineData(1000, 8)]
    [InlineData(257, 257)]
    public void StructChunkLoopsCoverEveryItemOnceInContiguousChunksInOrder(int count, int chunks)
    {
        var marks = new Marks { Chunk = new int[count] };
        Parallel2.For(count, chunks, marks);
        var viaDelegate = new int[count];
        Parallel2.For(count, chunks, (c, s, n) => { for (int i = s; i < s + n; i++) viaDelegate[i] = c + 1; });
        Assert.Equal(viaDelegate, marks.Chunk);
        Assert.All(marks.Chunk, c => Assert.InRange(c, 1, Math.Max(1, chunks)));
        for (int i = 1; i < count; i++) Assert.True(marks.Chunk[i] >= marks.Chunk[i - 1], $"item {i} is in chunk {marks.Chunk[i]} after chunk {marks.Chunk[i - 1]}");
    }

    private struct Nested : GemmWorkers.IItemBody
    {
        public int[] Hits; public bool Outer;
        public readonly void Run(int item)
        {
            if (Outer) GemmWorkers.For(3, new Nested { Hits = Hits, Outer = false });   // the same body type inside
            else Interlocked.Increment(ref Hits[item]);
        }
    }

    [Fact]
    public void AStructBodyLoopCanNestALoopOfTheSameBodyType()
    {
        var hits = new int[3];
        GemmWorkers.For(4, new Nested { Hits = hits, Outer = true });
        Assert.Equal([4, 4, 4], hits);
    }
}
