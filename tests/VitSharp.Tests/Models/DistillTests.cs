using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Parity;
using VitSharp.Tests.Autograd;
using VitSharp.Tests.Kernels;

namespace VitSharp.Tests.Models;

/// <summary>A non-ViT teacher (flatten → Dropout → Linear): any module that maps images to logits can teach.</summary>
internal sealed class LinearTeacher : Module
{
    public Linear Fc { get; }
    public Dropout Drop { get; }

    public LinearTeacher(int inFeatures, int classes, float dropout = 0f)
    {
        Drop = RegisterModule("drop", new Dropout(dropout));
        Fc = RegisterModule("fc", new Linear(inFeatures, classes));
    }

    protected override Tensor ForwardCore(Tensor img) => Fc.Forward(Drop.Forward(img.Reshape(img.Dim(0), -1)));
}

/// <summary>DistillableViT and DistillWrapper: parity with both fixtures, the distillation token, the loss, errors, other configurations.</summary>
public class DistillTests
{
    internal static ViTConfig Tiny(int image = 8, int patch = 4, int classes = 3, string pool = "cls", int channels = 3,
        int dim = 8, int depth = 1, int heads = 2, int dimHead = 4) => new()
    {
        ImageHeight = image, ImageWidth = image, PatchHeight = patch, PatchWidth = patch, NumClasses = classes,
        Dim = dim, Depth = depth, Heads = heads, DimHead = dimHead, MlpDim = 16, Pool = pool, Channels = channels,
    };

    private static JsonObject FixtureSpec(string name) => (JsonObject)JsonNode.Parse(File.ReadAllText(TestFixtures.Prefix(name) + ".json"))!;

    private static JsonObject VitKwargs(int image = 8, int patch = 4, int classes = 3, int dim = 8, int channels = 3) => new()
    {
        ["image_size"] = image, ["patch_size"] = patch, ["num_classes"] = classes, ["dim"] = dim, ["depth"] = 1, ["heads"] = 2,
        ["mlp_dim"] = 16, ["dim_head"] = 4, ["channels"] = channels,
    };

    private static JsonObject WrapperKwargs(JsonObject teacherKwargs, JsonObject studentKwargs, float temperature = 2f, float alpha = 0.5f, bool hard = false) => new()
    {
        ["teacher"] = new JsonObject { ["constructor"] = "vit_pytorch.vit.ViT", ["kwargs"] = teacherKwargs },
        ["student"] = new JsonObject { ["constructor"] = "vit_pytorch.distill.DistillableViT", ["kwargs"] = studentKwargs },
        ["temperature"] = temperature, ["alpha"] = alpha, ["hard"] = hard,
    };

    [Theory]
    [InlineData("distill_soft")]
    [InlineData("distill_hard")]
    public void ParityWithPyTorchFixture(string name)
    {
        var report = ParityRunner.Run(TestFixtures.Prefix(name));
        var bad = report.Rows.Where(r => !r.Passed).Select(r => $"{r.Name}: max abs {r.MaxAbsError:E2}, rel {r.RelativeError:E2} (tol {r.Tolerance:E0}) {r.Note}");
        Assert.True(report.Passed, "parity failed:\n" + string.Join("\n", bad));
        Assert.Equal("vit_pytorch.distill.DistillWrapper", report.Constructor);
        Assert.Contains(report.Rows, r => r.Name == "logits");
        Assert.Contains(report.Rows, r => r.Name == "loss");
        using var io = SafeTensorsFile.Open(TestFixtures.Prefix(name) + ".io.safetensors");
        var grads = io.Tensors.Where(t => t.Name.StartsWith("grad.", StringComparison.Ordinal)).Select(t => t.Name).ToList();
        Assert.Contains("grad.distillation_token", grads);
        Assert.Contains("grad.distill_mlp.1.weight", grads);
        Assert.Equal(grads.Order(StringComparer.Ordinal), report.Rows.Where(r => r.Name.StartsWith("grad.", StringComparison.Ordinal)).Select(r => r.Name).Order(StringComparer.Ordinal));
        // Achieved (soft / hard): logits 4.8e-7 / 4.8e-7, loss 1.2e-7 / 2.4e-7, gradients 6.4e-7 / 5.8e-7 relative.
        FixtureChecks.AssertAchieved(report, logitsAbs: 5e-6, gradientRel: 7e-6);
    }

    [Theory]
    [InlineData("distill_soft", 3f, 0.5f, false)]
    [InlineData("distill_hard", 1f, 0.3f, true)]
    public void FixtureBuildsTheWrapperWithItsKeysAndHyperParameters(string name, float temperature, float alpha, bool hard)
    {
        var spec = FixtureSpec(name);
        var model = Assert.IsType<DistillWrapper>(ModelFactory.Create(spec["constructor"]!.GetValue<string>(), (JsonObject)spec["kwargs"]!));
        Assert.Equal(new DistillConfig { Temperature = temperature, Alpha = alpha, Hard = hard }, model.Config);
        Assert.IsType<ViT>(model.Teacher);
        using var file = SafeTensorsFile.Open(TestFixtures.Prefix(name) + ".weights.safetensors");
        var expected = file.Tensors.ToDictionary(t => t.Name, t => t.Shape);
        var actual = model.StateDict();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, shape) in expected) Assert.True(shape.SequenceEqual(actual[k].Shape), $"{k}: {Tensor.ShapeString(actual[k].Shape)} vs fixture {Tensor.ShapeString(shape)}");
    }

    [Fact]
    public void WithoutTransformerLayersTheDistillEmbeddingIsTheNormedTokenAndTheClassLogitsArePlain()
    {
        // Depth 0: the transformer is only its final LayerNorm, so no token sees another. The distillation token's output
        // is then LayerNorm(token) — no position was added to it — and the class logits equal the plain forward's.
        Init.Seed(11);
        var model = new DistillableViT(Tiny(depth: 0)); model.Eval();
        var norm = model.Transformer.Norm!;
        for (int i = 0; i < 8; i++) { norm.Weight.Data[i] = 0.5f + 0.1f * i; norm.Bias.Data[i] = 0.05f * i - 0.2f; }
        var token = TestData.Uniform(3, -2, 2, 1, 8);
        var img = TestData.Uniform(4, -1, 1, 2, 3, 8, 8);
        var (logits, distill) = model.Forward(img, token);
        Assert.Equal(new[] { 2, 8 }, distill.Shape);
        double mean = token.Data.Average(v => (double)v);
        double var_ = token.Data.Average(v => (v - mean) * (v - mean));
        var expected = new double[16];
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 8; c++)
                expected[b * 8 + c] = (token.Data[c] - mean) / Math.Sqrt(var_ + 1e-5) * norm.Weight.Data[c] + norm.Bias.Data[c];
        TestData.AssertClose(expected, distill.Data, 1e-5, 1e-5, "distill embedding");
        TestData.AssertClose(model.Forward(img).Data, logits.Data, 1e-6, 1e-6, "class logits");
    }

    [Fact]
    public void TheDistillTokenIsTheLastTokenAndAttendsWithTheOthers()
    {
        Init.Seed(12);
        var model = new DistillableViT(Tiny(depth: 2)); model.Eval();
        var img = TestData.Uniform(5, -1, 1, 2, 3, 8, 8);
        var token = TestData.Uniform(6, -1, 1, 1, 8);
        var (logits, distill) = model.Forward(img, token);
        // The same computation spelled out: positions on [cls, patches], then the token appended last.
        var x = model.Embed(img);
        Assert.Equal(new[] { 2, 5, 8 }, x.Shape);
        var all = model.Transformer.Forward(Tensor.Cat([x, token.Reshape(1, 1, 8).BroadcastTo(2, 1, 8)], 1));
        Assert.Equal(all.Slice(1, 5, 1).Reshape(2, 8).Data, distill.Data);
        Assert.Equal(F.Linear(all.Slice(1, 0, 1).Reshape(2, 8), model.MlpHead!.Weight, model.MlpHead.Bias).Data, logits.Data);
        // With attention, the token changes the class logits and the images change the token's embedding.
        Assert.False(model.Forward(img).Data.SequenceEqual(logits.Data));
        var (_, distill2) = model.Forward(TestData.Uniform(7, -1, 1, 2, 3, 8, 8), token);
        Assert.False(distill2.Data.SequenceEqual(distill.Data));
    }

    [Fact]
    public void ToViTCopiesTheWeightsIntoAPlainViT()
    {
        Init.Seed(13);
        var model = new DistillableViT(Tiny(pool: "mean", classes: 4)); model.Eval();
        var vit = model.ToViT(); vit.Eval();
        Assert.Equal(typeof(ViT), vit.GetType());
        Assert.Equal(model.Config, vit.Config);
        var img = TestData.Uniform(8, -1, 1, 3, 3, 8, 8);
        Assert.Equal(model.Forward(img).Data, vit.Forward(img).Data);
        vit.MlpHead!.Bias!.Data[0] += 1;                       // a copy, not shared storage
        Assert.NotEqual(model.MlpHead!.Bias!.Data[0], vit.MlpHead.Bias.Data[0]);
    }

    private static DistillWrapper TinyWrapper(DistillConfig config, Module? teacher = null, ViTConfig? student = null, int seed = 21)
    {
        Init.Seed(seed);
        var s = new DistillableViT(student ?? Tiny());
        teacher ??= new ViT(Tiny(dim: 12, heads: 3));
        var w = new DistillWrapper(teacher, s, config);
        w.Eval();
        return w;
    }

    [Theory]
    [InlineData(2f, 0.5f, false)]
    [InlineData(1f, 0.3f, true)]
    [InlineData(3f, 0f, false)]
    [InlineData(0.5f, 1f, false)]
    public void LossIsTheWeightedSumOfCrossEntropyAndTheDistillationTerm(float temperature, float alpha, bool hard)
    {
        var w = TinyWrapper(new DistillConfig { Temperature = temperature, Alpha = alpha, Hard = hard });
        var img = TestData.Uniform(9, -1, 1, 4, 3, 8, 8);
        int[] labels = [0, 2, 1, 2];
        var r = w.ComputeLoss(img, labels);
        var (classLogits, distillLogits) = w.ForwardHeads(img);
        var teacher = w.Teacher.Forward(img);
        Assert.Equal(teacher.Data, r.TeacherLogits.Data);
        Assert.Equal(classLogits.Data, r.Logits.Data);
        Assert.Equal(distillLogits.Data, r.DistillLogits.Data);
        double ce = CrossEntropyGradTests.Reference(classLogits.Data, labels, 4, 3, 0);
        double distill;
        if (hard)
        {
            var argmax = Enumerable.Range(0, 4).Select(b => Enumerable.Range(0, 3).MaxBy(j => teacher.Data[b * 3 + j])).ToArray();
            distill = CrossEntropyGradTests.Reference(distillLogits.Data, argmax, 4, 3, 0);
        }
        else distill = SoftTargetKLKernelTests.Reference(distillLogits.Data, teacher.Data, 4, 3, temperature).Loss;
        Assert.Equal(ce, r.ClassLoss.Item(), 1e-5);
        Assert.Equal(distill, r.DistillationLoss.Item(), 1e-5);
        Assert.Equal((1 - alpha) * ce + alpha * distill, r.Loss.Item(), 1e-5);
    }

    [Fact]
    public void PerCallTemperatureAndAlphaOverrideTheConfiguration()
    {
        var w = TinyWrapper(new DistillConfig { Temperature = 1f, Alpha = 0.5f });
        var img = TestData.Uniform(10, -1, 1, 2, 3, 8, 8);
        int[] labels = [1, 0];
        var overridden = w.ComputeLoss(img, labels, temperature: 4f, alpha: 0.9f).Loss.Item();
        var configured = TinyWrapper(new DistillConfig { Temperature = 4f, Alpha = 0.9f }).ComputeLoss(img, labels).Loss.Item();
        Assert.Equal(configured, overridden);
        Assert.NotEqual(w.ComputeLoss(img, labels).Loss.Item(), overridden);
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => w.ComputeLoss(img, labels, temperature: 0f)).Message);
        Assert.Contains("alpha", Assert.Throws<ArgumentException>(() => w.ComputeLoss(img, labels, alpha: 1.5f)).Message);
    }

    [Fact]
    public void TheTeacherGetsNoGradientAndRunsInEvalMode()
    {
        // A teacher with heavy dropout: in training mode its logits would be random.
        var teacher = new LinearTeacher(3 * 8 * 8, 3, dropout: 0.9f);
        var w = TinyWrapper(new DistillConfig { Temperature = 2f }, teacher);
        Assert.All(teacher.Parameters(), p => Assert.False(p.RequiresGrad));
        w.Train();
        var img = TestData.Uniform(11, -1, 1, 2, 3, 8, 8);
        var r = w.ComputeLoss(img, [0, 1]);
        r.Loss.Backward();
        Assert.All(teacher.Parameters(), p => Assert.Null(p.Grad));
        Assert.False(r.TeacherLogits.RequiresGrad);
        Assert.NotNull(w.DistillationToken.Grad);
        Assert.All(w.DistillMlp.Parameters(), p => Assert.NotNull(p.Grad));
        Assert.All(w.Student.Parameters(), p => Assert.NotNull(p.Grad));
        Assert.True(teacher.Training);                           // the wrapper's mode is restored afterwards
        teacher.Eval();
        Assert.Equal(teacher.Forward(img).Data, r.TeacherLogits.Data);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void WholeWrapperGradientsMatchFiniteDifferences(bool hard, bool mlpLayerNorm)
    {
        var w = TinyWrapper(new DistillConfig { Temperature = 2.5f, Alpha = 0.4f, Hard = hard, MlpLayerNorm = mlpLayerNorm });
        var img = TestData.Uniform(12, -1, 1, 2, 3, 8, 8);
        int[] labels = [2, 0];
        var sd = w.StateDict();
        var names = new List<string>
        {
            "distillation_token", "distill_mlp.1.weight", "distill_mlp.1.bias", "student.cls_token", "student.pos_embedding",
            "student.transformer.layers.0.0.to_qkv.weight", "student.transformer.norm.weight", "student.mlp_head.bias",
        };
        if (mlpLayerNorm) names.AddRange(["distill_mlp.0.weight", "distill_mlp.0.bias"]);
        foreach (var name in names)
        {
            var failures = GradCheck.Compare(_ => w.ComputeLoss(img, labels).Loss, [sd[name]]);
            Assert.True(failures.Count == 0, $"{name}: " + string.Join("; ", failures.Take(5).Select(f => $"[{f.Element}] analytic {f.Analytic:G5} numeric {f.Numeric:G5}")));
        }
    }

    [Fact]
    public void MlpLayerNormAddsDistillMlp0()
    {
        var keys = TinyWrapper(new DistillConfig { MlpLayerNorm = true }).StateDict().Keys.Where(k => k.StartsWith("distill_mlp", StringComparison.Ordinal));
        Assert.Equal(["distill_mlp.0.bias", "distill_mlp.0.weight", "distill_mlp.1.bias", "distill_mlp.1.weight"], keys.Order(StringComparer.Ordinal));
        var plain = TinyWrapper(new DistillConfig()).StateDict().Keys.Where(k => k.StartsWith("distill_mlp", StringComparison.Ordinal));
        Assert.Equal(["distill_mlp.1.bias", "distill_mlp.1.weight"], plain.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(12, 4, 1, "cls", 5)]
    [InlineData(16, 8, 3, "mean", 7)]
    [InlineData(10, 5, 1, "mean", 2)]
    public void OtherConfigurationsAndANonViTTeacher(int image, int patch, int channels, string pool, int classes)
    {
        var student = Tiny(image: image, patch: patch, classes: classes, pool: pool, channels: channels, dim: 12, heads: 3);
        var teacher = new LinearTeacher(channels * image * image, classes);
        var w = TinyWrapper(new DistillConfig { Temperature = 2f }, teacher, student);
        var img = TestData.Uniform(13, -1, 1, 3, channels, image, image);
        var labels = new[] { 0, classes - 1, 1 % classes };
        var r = w.ComputeLoss(img, labels);
        Assert.Equal(new[] { 3, classes }, r.Logits.Shape);
        Assert.Equal(new[] { 3, classes }, r.DistillLogits.Shape);
        Assert.True(float.IsFinite(r.Loss.Item()));
        Assert.Equal(w.Student.Forward(img).Data, w.Forward(img).Data);     // inference: the class-token logits
        r.Loss.Backward();
        Assert.NotNull(w.DistillationToken.Grad);
    }

    [Fact]
    public void AnyKnownConstructorCanTeachThroughTheFactory()
    {
        // The teacher may itself be a distillation wrapper (its forward gives its student's logits).
        var inner = WrapperKwargs(VitKwargs(), VitKwargs(dim: 12));
        var kwargs = new JsonObject
        {
            ["teacher"] = new JsonObject { ["constructor"] = "vit_pytorch.distill.DistillWrapper", ["kwargs"] = inner },
            ["student"] = new JsonObject { ["constructor"] = "DistillableViT", ["kwargs"] = VitKwargs() },
        };
        var w = Assert.IsType<DistillWrapper>(ModelFactory.Create("vit_pytorch.distill.DistillWrapper", kwargs));
        Assert.IsType<DistillWrapper>(w.Teacher);
        Assert.Equal(new DistillConfig(), w.Config);                        // vit-pytorch's defaults: T 1, α 0.5, soft
        Assert.Contains("teacher.student.cls_token", w.StateDict().Keys);
        Assert.Contains("teacher.distillation_token", w.StateDict().Keys);
    }

    [Fact]
    public void SpecRoundTripsThroughTheFactory()
    {
        var teacherSpec = new ModelSpec("vit_pytorch.vit.ViT", VitKwargs(classes: 4));
        var cfg = Tiny(classes: 4);
        var dc = new DistillConfig { Temperature = 3f, Alpha = 0.25f, Hard = true, MlpLayerNorm = true };
        var spec = ModelSpec.DistillWrapper(teacherSpec, ModelSpec.DistillableViT(cfg), dc);
        var w = Assert.IsType<DistillWrapper>(spec.Build());
        Assert.Equal(dc, w.Config);
        Assert.Equal(cfg, w.Student.Config);
        Assert.Equal(4, ((ViT)w.Teacher).Config.NumClasses);
    }

    [Fact]
    public void TeacherClassCountMustMatchTheStudents()
    {
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.distill.DistillWrapper",
            WrapperKwargs(VitKwargs(classes: 5), VitKwargs(classes: 3))));
        Assert.Contains("teacher predicts 5 classes but the student 3", ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => new DistillWrapper(new LinearTeacher(3 * 8 * 8, 7), new DistillableViT(Tiny(classes: 3))));
        Assert.Contains("7 classes", ex2.Message);
    }

    [Fact]
    public void TeacherMustAcceptTheStudentsImages()
    {
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.distill.DistillWrapper",
            WrapperKwargs(VitKwargs(image: 12), VitKwargs(image: 8))));
        Assert.Contains("does not accept the student's images [1, 3, 8, 8]", ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => new DistillWrapper(new LinearTeacher(10, 3), new DistillableViT(Tiny())));
        Assert.Contains("does not accept", ex2.Message);
    }

    [Theory]
    [InlineData(0f, 0.5f, "temperature")]
    [InlineData(-1f, 0.5f, "temperature")]
    [InlineData(1f, -0.1f, "alpha")]
    [InlineData(1f, 1.5f, "alpha")]
    public void BadTemperatureOrAlphaIsRejected(float temperature, float alpha, string mentioned)
    {
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.distill.DistillWrapper",
            WrapperKwargs(VitKwargs(), VitKwargs(), temperature, alpha)));
        Assert.Contains(mentioned, ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => TinyWrapper(new DistillConfig { Temperature = temperature, Alpha = alpha }));
        Assert.Contains(mentioned, ex2.Message);
    }

    [Fact]
    public void StudentMustBeADistillableViT()
    {
        var kwargs = WrapperKwargs(VitKwargs(), VitKwargs());
        kwargs["student"]!["constructor"] = "vit_pytorch.vit.ViT";
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.distill.DistillWrapper", kwargs));
        Assert.Contains("student must be a vit_pytorch.distill.DistillableViT", ex.Message);
    }

    [Fact]
    public void MalformedNestedModelsAreRejectedByName()
    {
        var kwargs = WrapperKwargs(VitKwargs(), VitKwargs());
        kwargs["teacher"] = "resnet18";
        Assert.Contains("'teacher'", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("DistillWrapper", kwargs)).Message);
        kwargs = WrapperKwargs(VitKwargs(), VitKwargs());
        kwargs["teacher"]!["kwargs"]!["depth"] = "deep";
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("DistillWrapper", kwargs));
        Assert.Contains("teacher", ex.Message);
        Assert.Contains("depth", ex.Message);
        kwargs = WrapperKwargs(VitKwargs(), VitKwargs());
        kwargs.Remove("student");
        Assert.Contains("'student'", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("DistillWrapper", kwargs)).Message);
        kwargs = WrapperKwargs(VitKwargs(), VitKwargs());
        kwargs["hard"] = "yes";
        Assert.Contains("'hard'", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("DistillWrapper", kwargs)).Message);
        kwargs = WrapperKwargs(VitKwargs(), VitKwargs());
        kwargs["beta"] = 1;
        Assert.Contains("'beta'", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("DistillWrapper", kwargs)).Message);
    }

    [Fact]
    public void AStudentWithoutClassesCannotBeDistilled()
    {
        var ex = Assert.Throws<ArgumentException>(() => new DistillWrapper(new LinearTeacher(3 * 8 * 8, 3), new DistillableViT(Tiny(classes: 0))));
        Assert.Contains("num_classes", ex.Message);
    }

    [Fact]
    public void DistillTokenOfTheWrongShapeIsRejected()
    {
        var model = new DistillableViT(Tiny());
        Assert.Contains("[1, 8]", Assert.Throws<ArgumentException>(() => model.Forward(TestData.Uniform(1, -1, 1, 1, 3, 8, 8), Tensor.Zeros(1, 7))).Message);
    }
}
