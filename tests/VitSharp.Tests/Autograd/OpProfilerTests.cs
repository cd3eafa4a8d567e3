namespace VitSharp.Tests.Autograd;

/// <summary>OpProfiler: per-op calls, time and managed bytes of forward and backward on the calling thread.</summary>
public class OpProfilerTests
{
    [Fact]
    public void CountsEachOpsForwardAndBackwardCallsAndItsAllocations()
    {
        var x = TestData.Uniform(1, -1, 1, 4, 8); x.RequiresGrad = true;
        OpProfiler.Enable();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                var y = x.Gelu().Sum();
                y.Backward();
            }
        }
        finally
        {
            var table = OpProfiler.Disable();
            var fwd = Assert.Single(table, r => r.Op == "fwd gelu");
            var bwd = Assert.Single(table, r => r.Op == "bwd gelu");
            Assert.Equal(3, fwd.Calls);
            Assert.Equal(3, bwd.Calls);
            Assert.True(fwd.Ms >= 0 && bwd.Ms >= 0);
            Assert.True(fwd.Bytes > 0, "a forward op allocates at least its output tensor object");
            Assert.Empty(OpProfiler.Disable()); // off again
        }
    }
}
