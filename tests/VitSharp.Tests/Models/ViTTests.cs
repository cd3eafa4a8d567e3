using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Parity;
using VitSharp.Tests.Autograd;

namespace VitSharp.Tests.Models;

/// <summary>ViT: parity with the PyTorch fixture, parameter counts, state_dict layout, configurations, gradients, bad configs.</summary>
public class ViTTests
{
    private static ViTConfig Tiny(int image = 8, int patch = 4, int classes = 3, string pool = "cls", int channels = 3,
        int dim = 8, int heads = 2, int dimHead = 4) => new()
    {
        ImageHeight = image, ImageWidth = image, PatchHeight = patch, PatchWidth = patch, NumClasses = classes,
        Dim = dim, Depth = 1, Heads = heads, DimHead = dimHead, MlpDim = 16, Pool = pool, Channels = channels,
    };

    private static JsonObject FixtureSpec() => (JsonObject)JsonNode.Parse(File.ReadAllText(TestFixtures.Prefix("vit") + ".json"))!;

    [Fact]
    public void ParityWithPyTorchFixture()
    {
        var report = ParityRunner.Run(TestFixtures.Prefix("vit"));
        var bad = report.Rows.Where(r => !r.Passed).Select(r => $"{r.Name}: max abs {r.MaxAbsError:E2}, rel {r.RelativeError:E2} (tol {r.Tolerance:E0}) {r.Note}");
        Assert.True(report.Passed, "parity failed:\n" + string.Join("\n", bad));
        // The run must actually have compared logits, loss, gradients of every parameter and the AdamW step.
        Assert.Contains(report.Rows, r => r.Name == "logits");
        Assert.Contains(report.Rows, r => r.Name == "loss");
        using var io = SafeTensorsFile.Open(TestFixtures.Prefix("vit") + ".io.safetensors");
        int grads = io.Tensors.Count(t => t.Name.StartsWith("grad.", StringComparison.Ordinal));
        int adam = io.Tensors.Count(t => t.Name.StartsWith("adamw.", StringComparison.Ordinal));
        Assert.True(grads > 0 && adam > 0);
        Assert.Equal(grads, report.Rows.Count(r => r.Name.StartsWith("grad.", StringComparison.Ordinal)));
        Assert.Equal(adam, report.Rows.Count(r => r.Name.StartsWith("adamw.", StringComparison.Ordinal)));
        // Achieved: logits 2.4e-7, loss 0, gradients 7.7e-7 relative, AdamW step 5.0e-6 (10× that would exceed the
        // runner's own 1e-5, which therefore stays the AdamW bound).
        FixtureChecks.AssertAchieved(report, logitsAbs: 3e-6, gradientRel: 8e-6, adamwAbs: ParityRunner.AdamWTolerance);
    }

    [Fact]
    public void StateDictKeysAndShapesEqualTheFixture()
    {
        var spec = FixtureSpec();
        var model = ModelFactory.Create(spec["constructor"]!.GetValue<string>(), (JsonObject)spec["kwargs"]!);
        using var file = SafeTensorsFile.Open(TestFixtures.Prefix("vit") + ".weights.safetensors");
        var expected = file.Tensors.ToDictionary(t => t.Name, t => t.Shape);
        var actual = model.StateDict();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, shape) in expected) Assert.True(shape.SequenceEqual(actual[k].Shape), $"{k}: {Tensor.ShapeString(actual[k].Shape)} vs fixture {Tensor.ShapeString(shape)}");
    }

    /// <summary>Parameter count of vit-pytorch's ViT, written out from its constructor.</summary>
    private static long ExpectedCount(ViTConfig c)
    {
        long patchDim = (long)c.Channels * c.PatchHeight * c.PatchWidth, d = c.Dim, inner = (long)c.Heads * c.DimHead;
        long n = c.NumPatches + (c.Pool == "cls" ? 1 : 0);
        long embed = 2 * patchDim + patchDim * d + d + 2 * d;
        long attn = 2 * d + d * 3 * inner + (c.Heads == 1 && c.DimHead == c.Dim ? 0 : inner * d + d);
        long ff = 2 * d + d * c.MlpDim + c.MlpDim + c.MlpDim * d + d;
        long head = c.NumClasses > 0 ? d * c.NumClasses + c.NumClasses : 0;
        return embed + n * d + (c.Pool == "cls" ? d : 0) + c.Depth * (attn + ff) + 2 * d + head;
    }

    [Fact]
    public void VitB16HasThePublishedParameterCount()
    {
        var preset = Presets.Get("vit-b16");
        Assert.Equal(86_543_080L, preset.PublishedParameters);
        var model = preset.Build();
        Assert.Equal(86_543_080L, model.ParameterCount());
        Assert.Equal(86_543_080L, ExpectedCount(((ViT)model).Config));
    }

    [Theory]
    [InlineData("vit-fmnist")]
    [InlineData("deit-ti16")]
    public void SmallerPresetsMatchTheConstructorFormula(string name)
    {
        var model = (ViT)Presets.Get(name).Build();
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
    }

    [Fact]
    public void UnknownPresetNamesTheKnownOnes()
    {
        var ex = Assert.Throws<ModelConfigException>(() => Presets.Get("vit-zz"));
        Assert.Contains("vit-zz", ex.Message);
        Assert.Contains("vit-b16", ex.Message);
    }

    [Fact]
    public void ClsPoolShapesAndPooling()
    {
        var model = new ViT(Tiny()); model.Eval();
        Assert.Equal(new[] { 1, 8 }, model.ClsToken.Shape);
        Assert.Equal(new[] { 5, 8 }, model.PosEmbedding.Shape);
        var img = TestData.Uniform(1, -1, 1, 2, 3, 8, 8);
        var tokens = model.ForwardFeatures(img);
        Assert.Equal(new[] { 2, 5, 8 }, tokens.Shape);
        var logits = model.Forward(img);
        Assert.Equal(new[] { 2, 3 }, logits.Shape);
        var cls = tokens.Slice(1, 0, 1).Reshape(2, 8);
        Assert.Equal(F.Linear(cls, model.MlpHead!.Weight, model.MlpHead.Bias).Data, logits.Data);
    }

    [Fact]
    public void MeanPoolHasNoClassTokenAndAveragesTokens()
    {
        var model = new ViT(Tiny(pool: "mean")); model.Eval();
        Assert.Equal(new[] { 0, 8 }, model.ClsToken.Shape);
        Assert.Equal(new[] { 4, 8 }, model.PosEmbedding.Shape);
        Assert.Equal(new[] { 0, 8 }, model.StateDict()["cls_token"].Shape);
        var img = TestData.Uniform(2, -1, 1, 2, 3, 8, 8);
        var tokens = model.ForwardFeatures(img);
        Assert.Equal(new[] { 2, 4, 8 }, tokens.Shape);
        var logits = model.Forward(img);
        Assert.Equal(new[] { 2, 3 }, logits.Shape);
        var pooled = new float[2 * 8];
        for (int b = 0; b < 2; b++) for (int t = 0; t < 4; t++) for (int c = 0; c < 8; c++) pooled[b * 8 + c] += tokens[b, t, c] / 4;
        var expected = F.Linear(new Tensor(pooled, 2, 8), model.MlpHead!.Weight, model.MlpHead.Bias);
        TestData.AssertClose(expected.Data, logits.Data, 1e-6, 1e-5, "mean-pooled logits");
    }

    [Theory]
    [InlineData("cls", 5)]
    [InlineData("mean", 4)]
    public void NumClassesZeroReturnsTokens(string pool, int tokens)
    {
        var model = new ViT(Tiny(classes: 0, pool: pool));
        Assert.Null(model.MlpHead);
        Assert.DoesNotContain(model.StateDict().Keys, k => k.StartsWith("mlp_head", StringComparison.Ordinal));
        Assert.Equal(new[] { 2, tokens, 8 }, model.Forward(TestData.Uniform(3, -1, 1, 2, 3, 8, 8)).Shape);
    }

    [Fact]
    public void RectangularImageWithRectangularPatches()
    {
        var kwargs = new JsonObject
        {
            ["image_size"] = new JsonArray(24, 32), ["patch_size"] = new JsonArray(4, 8), ["num_classes"] = 5, ["dim"] = 16,
            ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 32, ["dim_head"] = 8,
        };
        var model = (ViT)ModelFactory.Create("vit_pytorch.vit.ViT", kwargs);
        Assert.Equal(24, model.Config.NumPatches);                         // (24/4)·(32/8)
        Assert.Equal(new[] { 25, 16 }, model.PosEmbedding.Shape);
        Assert.Equal(new[] { 16, 4 * 8 * 3 }, model.StateDict()["to_patch_embedding.2.weight"].Shape);
        Assert.Equal(new[] { 2, 5 }, model.Forward(TestData.Uniform(4, -1, 1, 2, 3, 24, 32)).Shape);
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
    }

    [Fact]
    public void PatchRearrangeOrdersTokensRowMajorAndChannelsFastest()
    {
        int b = 2, c = 3, p1 = 2, p2 = 3, h = 2, w = 3;
        var img = TestData.Uniform(5, -1, 1, b, c, h * p1, w * p2);
        var t = new PatchRearrange(p1, p2).Forward(img);
        Assert.Equal(new[] { b, h * w, p1 * p2 * c }, t.Shape);
        for (int bi = 0; bi < b; bi++)
            for (int hi = 0; hi < h; hi++)
                for (int wi = 0; wi < w; wi++)
                    for (int i = 0; i < p1; i++)
                        for (int j = 0; j < p2; j++)
                            for (int ci = 0; ci < c; ci++)
                                Assert.Equal(img[bi, ci, hi * p1 + i, wi * p2 + j], t[bi, hi * w + wi, (i * p2 + j) * c + ci]);
    }

    [Fact]
    public void OneHeadWithDimHeadEqualToDimHasNoOutputProjection()
    {
        var model = new ViT(Tiny(heads: 1, dimHead: 8));
        Assert.DoesNotContain(model.StateDict().Keys, k => k.Contains("to_out", StringComparison.Ordinal));
        Assert.Equal(new[] { 24, 8 }, model.StateDict()["transformer.layers.0.0.to_qkv.weight"].Shape);
        Assert.Equal(new[] { 2, 3 }, model.Forward(TestData.Uniform(6, -1, 1, 2, 3, 8, 8)).Shape);
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
        // With one head but dim_head ≠ dim the projection is there.
        Assert.Contains(new ViT(Tiny(heads: 1, dimHead: 4)).StateDict().Keys, k => k.Contains("to_out.0.weight", StringComparison.Ordinal));
    }

    [Fact]
    public void SingleChannelImages()
    {
        var model = new ViT(Tiny(channels: 1));
        Assert.Equal(new[] { 16 }, model.StateDict()["to_patch_embedding.1.weight"].Shape);
        Assert.Equal(new[] { 2, 3 }, model.Forward(TestData.Uniform(7, -1, 1, 2, 1, 8, 8)).Shape);
    }

    [Fact]
    public void EveryParameterAffectsTheOutput()
    {
        // A random (non-uniform: LayerNorm would cancel a uniform shift) perturbation of any parameter must
        // change the logits, so no parameter is silently ignored.
        var model = new ViT(Tiny()); model.Eval();
        var img = TestData.Uniform(8, -1, 1, 1, 3, 8, 8);
        var before = model.Forward(img).Data;
        foreach (var (name, p) in model.NamedParameters())
        {
            var saved = (float[])p.Data.Clone();
            var delta = TestData.Uniform(name.Length, -0.5f, 0.5f, p.Size).Data;
            for (int i = 0; i < p.Size; i++) p.Data[i] += delta[i];
            var after = model.Forward(img).Data;
            Array.Copy(saved, p.Data, saved.Length);
            Assert.False(before.SequenceEqual(after), $"parameter {name} has no effect on the output");
        }
    }

    [Fact]
    public void WholeTinyViTGradientsMatchFiniteDifferences()
    {
        Init.Seed(3);
        var model = new ViT(Tiny()); model.Eval();
        var img = TestData.Uniform(9, -1, 1, 2, 3, 8, 8);
        int[] labels = [2, 0];
        var sd = model.StateDict();
        string[] names =
        [
            "cls_token", "pos_embedding", "to_patch_embedding.1.weight", "to_patch_embedding.3.bias",
            "transformer.layers.0.0.norm.weight", "transformer.layers.0.0.to_qkv.weight", "transformer.layers.0.0.to_out.0.bias",
            "transformer.layers.0.1.net.1.weight", "transformer.norm.bias", "mlp_head.weight",
        ];
        foreach (var name in names)
        {
            var p = sd[name];
            var failures = GradCheck.Compare(_ => F.CrossEntropy(model.Forward(img), labels), [p]);
            Assert.True(failures.Count == 0, $"{name}: " + string.Join("; ", failures.Take(5).Select(f => $"[{f.Element}] analytic {f.Analytic:G5} numeric {f.Numeric:G5}")));
            Assert.True(p.RequiresGrad);
        }
    }

    [Fact]
    public void ImageNotDivisibleByPatchIsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => new ViT(Tiny(image: 10, patch: 4)));
        Assert.Contains("not divisible", ex.Message);
        Assert.Contains("10", ex.Message);
        var kwargs = new JsonObject { ["image_size"] = 30, ["patch_size"] = 8, ["num_classes"] = 10, ["dim"] = 16, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 32 };
        var ex2 = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.vit.ViT", kwargs));
        Assert.Contains("not divisible", ex2.Message);
    }

    [Theory]
    [InlineData(new[] { 2, 1, 8, 8 }, "3")]
    [InlineData(new[] { 2, 3, 8, 12 }, "12")]
    [InlineData(new[] { 3, 8, 8 }, "[3, 8, 8]")]
    public void WrongInputShapeAtForwardIsRejected(int[] shape, string mentioned)
    {
        var model = new ViT(Tiny());
        var ex = Assert.Throws<ArgumentException>(() => model.Forward(new Tensor(shape)));
        Assert.Contains("[B, 3, 8, 8]", ex.Message);
        Assert.Contains(mentioned, ex.Message);
    }

    [Fact]
    public void UnknownConstructorIsRejected()
    {
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.nope.NotAViT", new JsonObject()));
        Assert.Contains("NotAViT", ex.Message);
        Assert.Contains("vit_pytorch.vit.ViT", ex.Message);
    }

    [Fact]
    public void ShortConstructorNameIsAccepted()
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 2, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        Assert.IsType<ViT>(ModelFactory.Create("ViT", kwargs));
    }

    [Theory]
    [InlineData("colour_channels", 3, "colour_channels")]
    [InlineData("pool", "max", "max")]
    [InlineData("dim", "wide", "dim")]
    public void BadKwargsAreRejectedByName(string key, object value, string mentioned)
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 2, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2, ["mlp_dim"] = 16 };
        kwargs[key] = value is int i ? JsonValue.Create(i) : JsonValue.Create((string)value);
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.vit.ViT", kwargs));
        Assert.Contains(mentioned, ex.Message);
    }

    [Fact]
    public void MissingRequiredKwargIsRejectedByName()
    {
        var kwargs = new JsonObject { ["image_size"] = 8, ["patch_size"] = 4, ["num_classes"] = 2, ["dim"] = 8, ["depth"] = 1, ["heads"] = 2 };
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("vit_pytorch.vit.ViT", kwargs));
        Assert.Contains("mlp_dim", ex.Message);
    }
}
