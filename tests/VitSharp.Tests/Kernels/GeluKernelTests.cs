using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>GeluKernel forward/backward against a double twin built on the test's own erf series.</summary>
public class GeluKernelTests
{
    [Theory, MemberData(nameof(ReferenceMath.LengthData), MemberType = typeof(ReferenceMath))]
    public void ForwardMatchesReference(int n)
    {
        var x = TestData.Uniform(n, -6, 6, n).Data;
        var y = new float[n];
        GeluKernel.Forward(x, y);
        // The kernel's float32 erf is within 5e-7 of the exact one, so |error| ≤ ½·|x|·5e-7 ≤ 1.5e-6 on [−6, 6],
        // plus one float32 rounding of the result.
        TestData.AssertClose(x.Select(v => ReferenceMath.Gelu(v)).ToArray(), y, 1.6e-6, 2e-7, "gelu");
    }

    [Theory, MemberData(nameof(ReferenceMath.LengthData), MemberType = typeof(ReferenceMath))]
    public void BackwardMatchesReferenceAndAccumulates(int n)
    {
        var x = TestData.Uniform(n + 1, -6, 6, n).Data;
        var dy = TestData.Uniform(n + 2, -1, 1, n).Data;
        var dx = Enumerable.Repeat(0.125f, n).ToArray();
        GeluKernel.Backward(dy, x, dx);
        // Φ(x) from the float32 erf: |error| ≤ ½·5e-7, times |dy| ≤ 1.
        TestData.AssertClose(x.Select((v, i) => 0.125 + dy[i] * ReferenceMath.GeluGrad(v)).ToArray(), dx, 3e-7, 2e-7, "gelu backward");
    }

    [Fact]
    public void KnownPointsAndTails()
    {
        var x = new float[] { 0f, 1f, -1f, 10f, -10f, 40f, -40f };
        var y = new float[x.Length];
        GeluKernel.Forward(x, y);
        Assert.Equal(0f, y[0]);
        Assert.Equal(0.8413447460685429, y[1], 6);   // Φ(1)
        Assert.Equal(-0.15865525393145707, y[2], 6); // −(1 − Φ(1))
        Assert.Equal(10f, y[3]);
        Assert.Equal(0f, y[4], 6);
        Assert.Equal(40f, y[5]);
        Assert.Equal(0f, y[6]);
    }

    [Fact]
    public void EmptyInputIsANoOp()
    {
        GeluKernel.Forward([], []);
        GeluKernel.Backward([], [], []);
    }
}
