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
    public void BackwardGivesTheSameBitsWhereverTheSpanIsCut()
    {
        // 16-lane blocks, 8-lane blocks and the padded tail run the same operations per element, so a chunk boundary
        // (the ops split rows over threads) must not change any element's result.
        const int n = 16 * 7 + 8 + 5;
        var x = TestData.Uniform(3, -6, 6, n).Data;
        var dy = TestData.Uniform(4, -1, 1, n).Data;
        var whole = new float[n];
        GeluKernel.Backward(dy, x, whole);
        foreach (int cut in new[] { 1, 5, 8, 13, 16, 23, 31, 64, 100 })
        {
            var parts = new float[n];
            GeluKernel.Backward(dy.AsSpan(0, cut), x.AsSpan(0, cut), parts.AsSpan(0, cut));
            GeluKernel.Backward(dy.AsSpan(cut), x.AsSpan(cut), parts.AsSpan(cut));
            Assert.Equal(whole, parts);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(16 * 5 + 8 + 3)]
    public void BackwardWithoutAccumulateOverwritesWhateverDxHeld(int n)
    {
        var x = TestData.Uniform(5, -6, 6, n).Data;
        var dy = TestData.Uniform(6, -1, 1, n).Data;
        var added = new float[n];
        GeluKernel.Backward(dy, x, added);
        var written = Enumerable.Repeat(float.NaN, n).ToArray();
        GeluKernel.Backward(dy, x, written, accumulate: false);
        Assert.Equal(added, written);
        Assert.Throws<ArgumentException>(() => GeluKernel.Backward(dy.AsSpan(1), x, written, accumulate: false));
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
