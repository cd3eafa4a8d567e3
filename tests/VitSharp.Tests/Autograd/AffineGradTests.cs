namespace VitSharp.Tests.Autograd;

/// <summary>Scalar ops (all through Affine): forward values and finite-difference gradients.</summary>
public class AffineGradTests
{
    public static TheoryData<string> Ops() => new() { "x+2", "2+x", "x-3", "2-x", "x*3", "-0.5*x", "x/4", "-x", "affine(1.5,-0.25)" };

    private static Tensor Apply(string op, Tensor x) => op switch
    {
        "x+2" => x + 2f, "2+x" => 2f + x, "x-3" => x - 3f, "2-x" => 2f - x, "x*3" => x * 3f,
        "-0.5*x" => -0.5f * x, "x/4" => x / 4f, "-x" => -x, _ => x.Affine(1.5f, -0.25f),
    };

    private static double Apply(string op, double x) => op switch
    {
        "x+2" => x + 2, "2+x" => 2 + x, "x-3" => x - 3, "2-x" => 2 - x, "x*3" => x * 3,
        "-0.5*x" => -0.5 * x, "x/4" => x / 4, "-x" => -x, _ => 1.5 * x - 0.25,
    };

    [Theory, MemberData(nameof(Ops))]
    public void ForwardAndBackward(string op)
    {
        var x = TestData.Uniform(1, -2, 2, 2, 3, 4);
        var y = Apply(op, x);
        Assert.Equal(x.Shape, y.Shape);
        TestData.AssertClose(x.Data.Select(v => Apply(op, v)).ToArray(), y.Data, 1e-6, 1e-6, op);
        GradCheck.Verify(t => Apply(op, t[0]), x);
        GradCheck.Verify(t => Apply(op, t[0]), Tensor.Scalar(0.7f));
    }
}
