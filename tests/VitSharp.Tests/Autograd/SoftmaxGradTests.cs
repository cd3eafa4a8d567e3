namespace VitSharp.Tests.Autograd;

/// <summary>F.Softmax and F.LogSoftmax over every dimension (including non-last and negative ones).</summary>
public class SoftmaxGradTests
{
    public static TheoryData<bool, int> Cases()
    {
        var d = new TheoryData<bool, int>();
        foreach (bool log in new[] { false, true })
            foreach (int dim in new[] { 0, 1, 2, -1, -2, -3 })
                d.Add(log, dim);
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences(bool log, int dim)
    {
        int[] shape = [3, 4, 5];
        var x = TestData.Uniform(1, -3, 3, shape);
        var y = log ? F.LogSoftmax(x, dim) : F.Softmax(x, dim);
        Assert.Equal(shape, y.Shape);
        int d = dim < 0 ? dim + 3 : dim;
        var expected = new double[x.Size];
        for (int i = 0; i < x.Size; i++)
        {
            var idx = BroadcastRef.Unravel(i, shape);
            double z = 0;
            for (int j = 0; j < shape[d]; j++) { var jj = (int[])idx.Clone(); jj[d] = j; z += Math.Exp(x[jj]); }
            expected[i] = log ? x.Data[i] - Math.Log(z) : Math.Exp(x.Data[i]) / z;
        }
        TestData.AssertClose(expected, y.Data, 1e-6, 1e-5, log ? "log_softmax" : "softmax");
        GradCheck.Verify(t => log ? F.LogSoftmax(t[0], dim) : F.Softmax(t[0], dim), x);
    }
}
