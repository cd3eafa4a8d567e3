using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>The kernel thread count: validated, and fixed once the worker threads exist.</summary>
public class ComputeThreadsTests
{
    [Fact]
    public void RejectsCountsBelowOne()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ComputeThreads.Count = 0);
    }

    [Fact]
    public void CannotChangeOnceTheWorkersRun()
    {
        ComputeThreads.Freeze();                // what starting the worker pool or OpenBLAS does
        int n = ComputeThreads.Count;
        ComputeThreads.Count = n;               // the same value is accepted
        var e = Assert.Throws<InvalidOperationException>(() => ComputeThreads.Count = n + 1);
        Assert.Contains("before the first kernel", e.Message);
        Assert.Equal(n, GemmWorkers.Threads);
    }
}
