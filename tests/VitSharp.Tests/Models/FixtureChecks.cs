using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Parity;

namespace VitSharp.Tests.Models;

/// <summary>Shared assertions for a model family's PyTorch fixture: parity, state_dict layout, gradients reaching every parameter.</summary>
internal static class FixtureChecks
{
    /// <summary>Runs <see cref="ParityRunner"/> and asserts every row passed and every reference gradient was compared
    /// (<paramref name="gradients"/> false: the fixture holds none, as a forward-only one), then the test's own tighter
    /// bounds (<see cref="AssertAchieved"/>).</summary>
    public static ParityReport AssertParity(string fixture, string constructor, double logitsAbs, double gradientRel,
        double lossAbs = LossAbs, bool gradients = true)
    {
        var report = ParityRunner.Run(TestFixtures.Prefix(fixture));
        Assert.Equal(constructor, report.Constructor);
        var bad = report.Rows.Where(r => !r.Passed).Select(r => $"{r.Name}: max abs {r.MaxAbsError:E2}, rel {r.RelativeError:E2} (tol {r.Tolerance:E0}) {r.Note}");
        Assert.True(report.Passed, "parity failed:\n" + string.Join("\n", bad));
        Assert.Contains(report.Rows, r => r.Name == "logits");
        Assert.Contains(report.Rows, r => r.Name == "loss");
        using var io = SafeTensorsFile.Open(TestFixtures.Prefix(fixture) + ".io.safetensors");
        int grads = io.Tensors.Count(t => t.Name.StartsWith("grad.", StringComparison.Ordinal));
        Assert.Equal(gradients, grads > 0);
        Assert.Equal(grads, report.Rows.Count(r => r.Name.StartsWith("grad.", StringComparison.Ordinal)));
        AssertAchieved(report, logitsAbs, gradientRel, lossAbs);
        return report;
    }

    /// <summary>The loss bound of the ViT families: ~10 float32 ulps of a loss near 2.3 (achieved 0 to 2.4e-7, one ulp).</summary>
    public const double LossAbs = 2.5e-6;

    /// <summary>
    /// The test's own bounds, about 10× what the fixture achieves (the tolerances of <see cref="ParityRunner"/>, which
    /// <c>vit parity</c> uses, are 1e-4 / 1e-3 and would hide a 100-fold regression): the logits' and the loss's max
    /// |error|, every gradient's max |error| relative to the reference gradient's max |value| (NaN: no gradient rows), and
    /// every AdamW-updated parameter's max |error| (NaN: none).
    /// </summary>
    public static void AssertAchieved(ParityReport report, double logitsAbs, double gradientRel, double lossAbs = LossAbs, double adamwAbs = double.NaN)
    {
        void Check(IEnumerable<ParityRow> rows, Func<ParityRow, double> value, double bound, string what)
        {
            foreach (var r in rows)
                Assert.True(value(r) <= bound, $"{r.Name}: {what} {value(r):E2} > {bound:E1} (this test's bound, ~10× the achieved error)");
        }
        Check(report.Rows.Where(r => r.Name == "logits"), r => r.MaxAbsError, logitsAbs, "max |error|");
        Check(report.Rows.Where(r => r.Name == "loss"), r => r.MaxAbsError, lossAbs, "max |error|");
        var grads = report.Rows.Where(r => r.Name.StartsWith("grad.", StringComparison.Ordinal)).ToList();
        Assert.Equal(double.IsNaN(gradientRel), grads.Count == 0);
        Check(grads, r => r.RelativeError, gradientRel, "relative error");
        var adamw = report.Rows.Where(r => r.Name.StartsWith("adamw.", StringComparison.Ordinal)).ToList();
        Assert.Equal(double.IsNaN(adamwAbs), adamw.Count == 0);
        Check(adamw, r => r.MaxAbsError, adamwAbs, "max |error|");
    }

    /// <summary>How many reference gradients the fixture holds.</summary>
    public static int GradientCount(string fixture)
    {
        using var io = SafeTensorsFile.Open(TestFixtures.Prefix(fixture) + ".io.safetensors");
        return io.Tensors.Count(t => t.Name.StartsWith("grad.", StringComparison.Ordinal));
    }

    /// <summary>The model the fixture's JSON describes, freshly initialised.</summary>
    public static Module Build(string fixture)
    {
        var spec = (JsonObject)JsonNode.Parse(File.ReadAllText(TestFixtures.Prefix(fixture) + ".json"))!;
        return ModelFactory.Create(spec["constructor"]!.GetValue<string>(), (JsonObject)spec["kwargs"]!);
    }

    /// <summary>The fixture's weights file and the model built from its JSON have the same keys and shapes.</summary>
    public static void AssertStateDictMatches(string fixture)
    {
        var model = Build(fixture);
        using var file = SafeTensorsFile.Open(TestFixtures.Prefix(fixture) + ".weights.safetensors");
        var expected = file.Tensors.ToDictionary(t => t.Name, t => t.Shape);
        var actual = model.StateDict();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, shape) in expected)
            Assert.True(shape.SequenceEqual(actual[k].Shape), $"{k}: {Tensor.ShapeString(actual[k].Shape)} vs fixture {Tensor.ShapeString(shape)}");
    }

    /// <summary>One backward pass of the cross-entropy reaches every parameter with a non-zero gradient.</summary>
    public static void AssertEveryParameterGetsAGradient(Module model, Tensor images, int[] labels)
    {
        model.ZeroGrad();
        F.CrossEntropy(model.Forward(images), labels).Backward();
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.True(p.Grad is not null, $"no gradient reached {name}");
            Assert.True(p.Grad!.Data.Any(v => v != 0), $"the gradient of {name} is all zeros");
            Assert.True(p.Grad.Data.All(float.IsFinite), $"the gradient of {name} is not finite");
        }
        model.ZeroGrad();
    }

    /// <summary>Finite-difference check of the loss gradient for the named parameters of a (tiny) model.</summary>
    public static void AssertGradCheck(Module model, Tensor images, int[] labels, IEnumerable<string> names, double h = Autograd.GradCheck.DefaultStep)
    {
        var sd = model.StateDict();
        foreach (var name in names)
        {
            Assert.True(sd.ContainsKey(name), $"no parameter {name}");
            var p = sd[name];
            var failures = Autograd.GradCheck.Compare(_ => F.CrossEntropy(model.Forward(images), labels), [p], h: h);
            Assert.True(failures.Count == 0, $"{name}: " + string.Join("; ", failures.Take(5).Select(f => $"[{f.Element}] analytic {f.Analytic:G5} numeric {f.Numeric:G5}")));
            Assert.True(p.RequiresGrad);
        }
    }
}
