using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary>SpecialFunctions.Erf/Erfc against values from CPython's math.erf/math.erfc (glibc, &lt; 1 ulp).</summary>
public class SpecialFunctionsTests
{
    public static TheoryData<double, double, double> KnownValues() => new()
    {
        // x, erf(x), erfc(x) — printed by python3 -c "import math; print(repr(math.erf(x)), repr(math.erfc(x)))"
        { 0.0, 0.0, 1.0 },
        { 1e-10, 1.1283791670955126e-10, 0.999999999887162 },
        { 1e-05, 1.1283791670579e-05, 0.9999887162083294 },
        { 0.1, 0.1124629160182849, 0.8875370839817152 },
        { 0.3, 0.3286267594591274, 0.6713732405408726 },
        { 0.5, 0.5204998778130465, 0.4795001221869535 },
        { 0.8, 0.7421009647076605, 0.2578990352923395 },
        { 0.99, 0.8385080695553698, 0.1614919304446302 },
        { 1.0, 0.8427007929497149, 0.15729920705028513 },
        { 1.01, 0.8468104962282768, 0.1531895037717233 },
        { 1.5, 0.9661051464753108, 0.033894853524689274 },
        { 2.0, 0.9953222650189527, 0.004677734981047265 },
        { 2.5, 0.999593047982555, 0.0004069520174449589 },
        { 2.7, 0.9998656672600594, 0.00013433273994052422 },
        { 3.0, 0.9999779095030014, 2.2090496998585438e-05 },
        { 3.3, 0.9999969422902035, 3.0577097964381654e-06 },
        { 4.0, 0.9999999845827421, 1.541725790028002e-08 },
        { 4.3, 0.9999999988065282, 1.193471793722043e-09 },
        { 5.0, 0.9999999999984626, 1.5374597944280351e-12 },
        { 5.5, 0.9999999999999927, 7.357847917974398e-15 },
        { 6.0, 1.0, 2.1519736712498916e-17 },
        { 6.7, 1.0, 2.661714576376588e-21 },
        { 7.5, 1.0, 2.776649386030569e-26 },
        { 8.0, 1.0, 1.1224297172982928e-29 },
        { 9.0, 1.0, 4.13703174651381e-37 },
        { 9.9, 1.0, 1.5431200214053075e-44 },
        { 10.0, 1.0, 2.088487583762545e-45 },
        { 12.3, 1.0, 9.029925149482068e-68 },
        { 15.0, 1.0, 7.212994172451206e-100 },
        { 17.1, 1.0, 3.354594540034991e-129 },
        { 20.0, 1.0, 5.3958656116079005e-176 },
        { 20.7, 1.0, 2.2085481102488885e-188 },
        { 25.9, 1.0, 1.0202833184732667e-293 },
        { 26.0, 1.0, 5.663192408856143e-296 },
        { 1.37, 0.947312398035252, 0.052687601964748 },
        { 2.93, 0.9999658172333573, 3.418276664265989e-05 },
        { 5.83, 0.9999999999999999, 1.653466935437589e-16 },
        { 7.77, 1.0, 4.343717238924728e-28 },
        { 8.3, 1.0, 8.141478353024892e-32 },
        { 11.11, 1.0, 1.2533989031960393e-55 },
        { -3.71, -0.9999998451794108, 1.9999998451794108 },
        { -0.3, -0.3286267594591274, 1.3286267594591274 },
        { -0.99, -0.8385080695553698, 1.83850806955537 },
        { -1.5, -0.9661051464753108, 1.9661051464753108 },
        { -2.7, -0.9998656672600594, 1.9998656672600594 },
        { -5.0, -0.9999999999984626, 1.9999999999984626 },
        { -10.0, -1.0, 2.0 },
    };

    private static void AssertRel(double expected, double actual, double rel, string what)
    {
        double err = expected == 0 ? Math.Abs(actual) : Math.Abs(actual - expected) / Math.Abs(expected);
        Assert.True(err <= rel, $"{what}: got {actual:R}, expected {expected:R} (relative error {err:E2} > {rel:E0})");
    }

    [Theory, MemberData(nameof(KnownValues))]
    public void ErfMatchesKnownValues(double x, double erf, double erfc)
    {
        _ = erfc;
        AssertRel(erf, SpecialFunctions.Erf(x), 1e-14, $"erf({x})");
    }

    [Theory, MemberData(nameof(KnownValues))]
    public void ErfcMatchesKnownValuesIncludingTails(double x, double erf, double erfc)
    {
        _ = erf;
        AssertRel(erfc, SpecialFunctions.Erfc(x), 1e-14, $"erfc({x})");
    }

    [Theory, MemberData(nameof(KnownValues))]
    public void TheTestsOwnReferenceErfAgreesWithKnownValues(double x, double erf, double erfc)
    {
        _ = erfc;
        // Validates the independent twin used by the GELU kernel tests (its accuracy need only beat float32).
        AssertRel(erf, ReferenceMath.Erf(x), 1e-12, $"reference erf({x})");
    }

    [Fact]
    public void ErfIsOddAndErfcIsTwoMinusErfcOfNegative()
    {
        for (double x = 0; x <= 6; x += 0.173)
        {
            Assert.Equal(-SpecialFunctions.Erf(x), SpecialFunctions.Erf(-x));
            // erfc(−x) ∈ [1, 2], so 2 − erfc(x) is well conditioned there.
            AssertRel(2 - SpecialFunctions.Erfc(x), SpecialFunctions.Erfc(-x), 1e-15, $"erfc(−{x})");
        }
    }

    [Fact]
    public void ExtremeArguments()
    {
        Assert.Equal(1.0, SpecialFunctions.Erf(double.PositiveInfinity));
        Assert.Equal(-1.0, SpecialFunctions.Erf(double.NegativeInfinity));
        Assert.Equal(0.0, SpecialFunctions.Erfc(double.PositiveInfinity));
        Assert.Equal(2.0, SpecialFunctions.Erfc(double.NegativeInfinity));
        Assert.Equal(0.0, SpecialFunctions.Erfc(30));
        Assert.True(double.IsNaN(SpecialFunctions.Erf(double.NaN)));
    }
}
