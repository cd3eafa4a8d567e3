namespace VitSharp.Tests.Autograd;

/// <summary>+ − * / between tensors, with broadcasting: forward against a naive reference, backward by finite differences.</summary>
public class ArithmeticGradTests
{
    public static TheoryData<string, int[], int[]> Cases()
    {
        var d = new TheoryData<string, int[], int[]>();
        int[][][] shapes =
        [
            [[2, 3, 4], [2, 3, 4]],
            [[2, 3, 4], [4]],
            [[4], [2, 3, 4]],
            [[2, 1, 4], [3, 1]],
            [[3, 1], [2, 1, 4]],
            [[1], [2, 3]],
            [[2, 3], [1]],
            [[3, 1], [1, 4]],
            [[], [2, 3]],
            [[2, 1, 3, 1], [1, 4, 1, 2]],
        ];
        foreach (var op in new[] { "add", "sub", "mul", "div" })
            foreach (var s in shapes) d.Add(op, s[0], s[1]);
        return d;
    }

    private static Tensor Apply(string op, Tensor a, Tensor b) => op switch
    {
        "add" => a + b, "sub" => a - b, "mul" => a * b, _ => a / b,
    };

    private static double Apply(string op, double a, double b) => op switch
    {
        "add" => a + b, "sub" => a - b, "mul" => a * b, _ => a / b,
    };

    [Theory, MemberData(nameof(Cases))]
    public void ForwardMatchesNaiveBroadcast(string op, int[] sa, int[] sb)
    {
        var a = TestData.AwayFromZero(1, 0.5f, 1.5f, sa);
        var b = TestData.AwayFromZero(2, 0.5f, 1.5f, sb);
        var y = Apply(op, a, b);
        var os = BroadcastRef.OutShape(sa, sb);
        Assert.Equal(os, y.Shape);
        var expected = new double[TestData.Count(os)];
        for (int i = 0; i < expected.Length; i++)
        {
            var idx = BroadcastRef.Unravel(i, os);
            expected[i] = (float)Apply(op, a.Data[BroadcastRef.Source(idx, sa)], b.Data[BroadcastRef.Source(idx, sb)]);
        }
        TestData.AssertClose(expected, y.Data, 0, 1e-6, op);
    }

    [Theory, MemberData(nameof(Cases))]
    public void BackwardMatchesFiniteDifferences(string op, int[] sa, int[] sb)
    {
        var a = TestData.AwayFromZero(3, 0.5f, 1.5f, sa);
        var b = TestData.AwayFromZero(4, 0.5f, 1.5f, sb);
        GradCheck.Verify(t => Apply(op, t[0], t[1]), a, b);
    }

    [Theory]
    [InlineData("add")]
    [InlineData("sub")]
    [InlineData("mul")]
    [InlineData("div")]
    public void OnlyOneOperandRequiringGradGetsAGradient(string op)
    {
        var a = TestData.AwayFromZero(5, 0.5f, 1.5f, 2, 3);
        var b = TestData.AwayFromZero(6, 0.5f, 1.5f, 3);
        GradCheck.Verify(t => Apply(op, t[0], t[1]), [a, b], wrt: [false, true]);
        GradCheck.Verify(t => Apply(op, t[0], t[1]), [a, b], wrt: [true, false]);
    }

    [Fact]
    public void IncompatibleShapesThrow()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3) + Tensor.Zeros(4));
        Assert.Contains("[2, 3]", ex.Message);
    }

    [Fact]
    public void BroadcastingUpToRankEightWorksAndBeyondSaysWhy()
    {
        var a = Tensor.Ones(2, 1, 1, 1, 1, 1, 1, 3);
        var sum = a + Tensor.Full(2f, 3);
        Assert.Equal([2, 1, 1, 1, 1, 1, 1, 3], sum.Shape);
        Assert.All(sum.Data, v => Assert.Equal(3f, v));
        var e = Assert.Throws<NotSupportedException>(() => Tensor.Ones(1, 1, 1, 1, 1, 1, 1, 1, 2) + Tensor.Ones(2));
        Assert.Contains("rank 9", e.Message);
        Assert.Contains("[1, 1, 1, 1, 1, 1, 1, 1, 2]", e.Message);
    }
}
