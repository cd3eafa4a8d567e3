using System.Text.Json.Nodes;
using VitSharp.IO;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Parity;
using VitSharp.Tests.Autograd;

namespace VitSharp.Tests.Models;

/// <summary>torchvision ResNet: fixture parity, state_dict layout, published parameter counts, other configurations, bad configs.</summary>
public class ResNetTests
{
    private static ResNetConfig Small(string block = "BasicBlock", int classes = 5, int inChans = 3, int[]? layers = null) =>
        new() { Block = block, Layers = layers ?? [1, 1, 1, 1], NumClasses = classes, InChans = inChans };

    [Fact]
    public void ParityWithPyTorchFixture()
    {
        FixtureChecks.AssertParity("resnet_basic", "torchvision.models.resnet.ResNet", gradients: false,
            logitsAbs: 1e-4, gradientRel: double.NaN, lossAbs: 3e-5);   // achieved: logits 9.5e-6 (1.1e-6 of their magnitude), loss 2.9e-6
    }

    [Fact]
    public void StateDictKeysAndShapesEqualTheFixture()
    {
        FixtureChecks.AssertStateDictMatches("resnet_basic");
        Assert.IsType<ResNet>(FixtureChecks.Build("resnet_basic"));
    }

    [Trait("Category", "Slow")]
    [Theory]
    [InlineData("resnet18", 11_689_512L)]
    [InlineData("resnet34", 21_797_672L)]
    [InlineData("resnet50", 25_557_032L)]
    [InlineData("resnet101", 44_549_160L)]
    public void PresetsHaveTorchvisionsPublishedParameterCounts(string name, long published)
    {
        var preset = Presets.Get(name);
        Assert.Equal(published, preset.PublishedParameters);
        var model = (ResNet)preset.Build();
        Assert.Equal(published, model.ParameterCount());
        Assert.Equal(published, ExpectedCount(model.Config));
    }

    [Trait("Category", "Slow")]
    [Theory]
    [InlineData(32, 4, 25_028_904L)]   // torchvision resnext50_32x4d
    [InlineData(1, 128, 68_883_240L)]  // torchvision wide_resnet50_2
    public void GroupsAndWidthPerGroupGiveTorchvisionsResNeXtAndWideResNetCounts(int groups, int width, long published)
    {
        var kwargs = new JsonObject { ["block"] = "Bottleneck", ["layers"] = new JsonArray(3, 4, 6, 3), ["groups"] = groups, ["width_per_group"] = width };
        var model = (ResNet)ModelFactory.Create("torchvision.models.resnet.ResNet", kwargs);
        Assert.Equal(published, model.ParameterCount());
        Assert.Equal(published, ExpectedCount(model.Config));
    }

    /// <summary>Parameter count of torchvision's ResNet, written out from its constructor (BatchNorm: 2 per channel).</summary>
    private static long ExpectedCount(ResNetConfig c)
    {
        int exp = c.Block == "Bottleneck" ? 4 : 1;
        long n = (long)c.InChans * 64 * 49 + 2 * 64;
        int inplanes = 64;
        int[] planes = [64, 128, 256, 512];
        for (int s = 0; s < 4; s++)
            for (int j = 0; j < c.Layers[s]; j++)
            {
                int p = planes[s], stride = s > 0 && j == 0 ? 2 : 1, outC = p * exp;
                if (exp == 1) n += (long)inplanes * p * 9 + 2 * p + (long)p * p * 9 + 2 * p;
                else
                {
                    int width = (int)(p * (c.WidthPerGroup / 64.0)) * c.Groups;
                    n += (long)inplanes * width + 2 * width + (long)width * (width / c.Groups) * 9 + 2 * width + (long)width * outC + 2 * outC;
                }
                if (j == 0 && (stride != 1 || inplanes != outC)) n += (long)inplanes * outC + 2 * outC;
                inplanes = outC;
            }
        return n + (c.NumClasses > 0 ? (long)512 * exp * c.NumClasses + c.NumClasses : 0);
    }

    [Theory]
    [InlineData("BasicBlock", 3, 37, 45, 7)]
    [InlineData("Bottleneck", 1, 28, 28, 10)]
    [InlineData("Bottleneck", 4, 33, 17, 3)]
    [InlineData("BasicBlock", 1, 1, 1, 2)]
    public void OtherConfigurationsRunOnAnyImageSize(string block, int inChans, int h, int w, int classes)
    {
        Init.Seed(1);
        var model = new ResNet(Small(block, classes, inChans)); model.Eval();
        Assert.Equal(ExpectedCount(model.Config), model.ParameterCount());
        var img = TestData.Uniform(2, -1, 1, 2, inChans, h, w);
        Assert.Equal(new[] { 2, classes }, model.Forward(img).Shape);
        var features = model.ForwardFeatures(img);
        Assert.Equal(new[] { 2, model.Config.NumFeatures, Side(h), Side(w) }, features.Shape);
        Assert.Equal(new[] { 2, model.Config.NumFeatures }, model.ForwardHead(features, preLogits: true).Shape);
    }

    /// <summary>Spatial side after the stem convolution, the max pool and three stride-2 stages.</summary>
    private static int Side(int s)
    {
        s = (s + 6 - 7) / 2 + 1;
        s = (s + 2 - 3) / 2 + 1;
        for (int i = 0; i < 3; i++) s = (s + 2 - 3) / 2 + 1;
        return s;
    }

    [Fact]
    public void BlocksComputeTorchvisionsResidualFunction()
    {
        // BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x)), written out with the functional ops.
        Init.Seed(4);
        var down = new Sequential(new Conv2d(3, 4, 1, 2, bias: false), new BatchNorm2d(4));
        var block = new BasicBlock(3, 4, 2, down);
        foreach (var bn in new[] { block.Bn1, block.Bn2, (BatchNorm2d)down[1] })
        {
            bn.RunningMean!.Data.AsSpan().Fill(0.1f); bn.RunningVar!.Data.AsSpan().Fill(1.7f); bn.Bias!.Data.AsSpan().Fill(0.2f);
        }
        block.Eval();
        var x = TestData.Uniform(3, -1, 1, 2, 3, 7, 7);
        Tensor Bn(BatchNorm2d bn, Tensor t) => F.BatchNorm(t, bn.RunningMean, bn.RunningVar, bn.Weight, bn.Bias, false);
        var branch = Bn(block.Bn2, F.Conv2d(Bn(block.Bn1, F.Conv2d(x, block.Conv1.Weight, null, 2, 1)).Relu(), block.Conv2.Weight, null, 1, 1));
        var shortcut = Bn((BatchNorm2d)down[1], F.Conv2d(x, ((Conv2d)down[0]).Weight, null, 2, 0));
        Assert.Equal((branch + shortcut).Relu().Data, block.Forward(x).Data);
        // Small steps: ReLU kinks must not fall between x − h and x + h.
        GradCheck.Verify(t => block.Forward(t[0]), [x, block.Conv1.Weight, block.Conv2.Weight, ((Conv2d)down[0]).Weight], h: 1e-3);
    }

    [Fact]
    public void BottleneckHasTheStrideInTheThreeByThreeConvolution()
    {
        var model = new ResNet(Small("Bottleneck"));
        var sd = model.StateDict();
        Assert.Equal(new[] { 128, 256, 1, 1 }, sd["layer2.0.conv1.weight"].Shape);
        Assert.Equal(new[] { 128, 128, 3, 3 }, sd["layer2.0.conv2.weight"].Shape);
        Assert.Equal(new[] { 512, 128, 1, 1 }, sd["layer2.0.conv3.weight"].Shape);
        Assert.Equal(new[] { 256, 64, 1, 1 }, sd["layer1.0.downsample.0.weight"].Shape); // 64 → 256 channels at stride 1
        var b = (Bottleneck)model.Stages[1][0];
        Assert.Equal((1, 1), b.Conv1.Stride);
        Assert.Equal((2, 2), b.Conv2.Stride);
        Assert.Equal((2, 2), ((Conv2d)b.Downsample![0]).Stride);
        Assert.Equal(5, model.Fc!.OutFeatures);
    }

    [Fact]
    public void InitialisationFollowsTorchvision()
    {
        Init.Seed(5);
        var model = new ResNet(Small(layers: [2, 1, 1, 1]) with { ZeroInitResidual = true });
        // Convolutions: N(0, 2/fan_out), fan_out = Cout·kh·kw.
        var w = model.Stages[1][0] is BasicBlock bb ? bb.Conv1.Weight : throw new InvalidOperationException();
        double var = w.Data.Select(v => (double)v * v).Average();
        Assert.InRange(var, 0.85 * 2.0 / (128 * 9), 1.15 * 2.0 / (128 * 9));
        foreach (var (name, t) in model.StateDict())
        {
            if (name.EndsWith("bn2.weight", StringComparison.Ordinal)) Assert.All(t.Data, v => Assert.Equal(0f, v));
            else if (name.EndsWith("bn1.weight", StringComparison.Ordinal) || name.EndsWith("running_var", StringComparison.Ordinal)) Assert.All(t.Data, v => Assert.Equal(1f, v));
        }
    }

    [Fact]
    public void TrainingModeUsesBatchStatisticsAndLearns()
    {
        Init.Seed(6);
        var model = new ResNet(Small(classes: 3, inChans: 1));
        model.Train();
        var img = TestData.Uniform(7, -1, 1, 6, 1, 16, 16);
        int[] labels = [0, 1, 2, 0, 1, 2];
        var opt = new VitSharp.Optim.AdamW(model.NamedParameters(), 1e-3f, weightDecay: 0f);
        float first = 0, last = 0;
        for (int step = 0; step < 8; step++)
        {
            model.ZeroGrad();
            var loss = F.CrossEntropy(model.Forward(img), labels);
            loss.Backward();
            if (step == 0)
            {
                first = loss.Item();
                Assert.All(model.NamedParameters(), p => Assert.True(p.Parameter.Grad is not null, $"{p.Name} got no gradient"));
            }
            last = loss.Item();
            opt.Step();
        }
        Assert.True(last < 0.5f * first, $"loss {first} → {last}: a ResNet in training mode should fit 6 images in 8 steps");
        Assert.Equal(8f, model.Bn1.NumBatchesTracked!.Item());
        Assert.NotEqual(0f, model.Bn1.RunningMean!.Data[0]);
    }

    [Fact]
    public void ResetClassifierReplacesTheHeadAndKeepsTheBackbone()
    {
        Init.Seed(8);
        var model = new ResNet(Small(classes: 5));
        var conv = model.Conv1.Weight.Data.ToArray();
        model.Eval();
        var img = TestData.Uniform(9, -1, 1, 2, 3, 32, 32);
        var features = model.ForwardHead(model.ForwardFeatures(img), preLogits: true).Data;
        model.ResetClassifier(12);
        Assert.Equal(12, model.Config.NumClasses);
        Assert.Equal(new[] { 12, 512 }, model.StateDict()["fc.weight"].Shape);
        Assert.Equal(conv, model.Conv1.Weight.Data);
        Assert.False(model.Fc!.Training);
        Assert.Equal(new[] { 2, 12 }, model.Forward(img).Shape);
        Assert.Contains(model.NamedParameters(), p => p.Parameter == model.Fc.Weight);
        model.ResetClassifier(0);
        Assert.Null(model.Fc);
        Assert.DoesNotContain(model.StateDict().Keys, k => k.StartsWith("fc.", StringComparison.Ordinal));
        Assert.Equal(features, model.Forward(img).Data);
        // The rebuilt spec matches the new head, so a checkpoint of the fine-tuned model reloads.
        var rebuilt = ModelSpec.ResNet(model.Config).Build();
        rebuilt.LoadStateDict(model.StateDict());
        Assert.Throws<ArgumentException>(() => model.ResetClassifier(-1));
    }

    [Theory]
    [InlineData("block", "Foo", "Foo")]
    [InlineData("groups", 2, "BasicBlock")]
    [InlineData("in_chans", 0, "in_chans")]
    [InlineData("colour", 3, "colour")]
    public void BadConfigurationsAreRejectedByName(string key, object value, string mentioned)
    {
        var kwargs = new JsonObject { ["block"] = "BasicBlock", ["layers"] = new JsonArray(1, 1, 1, 1) };
        kwargs[key] = value is int i ? JsonValue.Create(i) : JsonValue.Create((string)value);
        var ex = Assert.Throws<ModelConfigException>(() => ModelFactory.Create("torchvision.models.resnet.ResNet", kwargs));
        Assert.Contains(mentioned, ex.Message);
    }

    [Fact]
    public void LayersAndDilationAreChecked()
    {
        var three = new JsonObject { ["block"] = "BasicBlock", ["layers"] = new JsonArray(1, 1, 1) };
        Assert.Contains("layers", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("ResNet", three)).Message);
        var noBlock = new JsonObject { ["layers"] = new JsonArray(1, 1, 1, 1) };
        Assert.Contains("block", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("ResNet", noBlock)).Message);
        var dil = new JsonObject { ["block"] = "Bottleneck", ["layers"] = new JsonArray(1, 1, 1, 1), ["replace_stride_with_dilation"] = new JsonArray(false, true, true) };
        Assert.Contains("dilation", Assert.Throws<ModelConfigException>(() => ModelFactory.Create("ResNet", dil)).Message);
        dil["replace_stride_with_dilation"] = new JsonArray(false, false, false);
        Assert.IsType<ResNet>(ModelFactory.Create("ResNet", dil));
        var model = new ResNet(Small(inChans: 1));
        Assert.Contains("[B, 1, H, W]", Assert.Throws<ArgumentException>(() => model.Forward(Tensor.Zeros(1, 3, 8, 8))).Message);
    }

    [Fact]
    public void FitToDataSetsInChansAndClasses()
    {
        var info = new VitSharp.Training.DataInfo("fashion-mnist", Enumerable.Range(0, 10).Select(i => $"c{i}").ToArray(), 1, 28, 28, [0.5f], [0.25f]);
        var fitted = VitSharp.Training.Trainer.FitToData(Presets.Get("resnet50").Spec, info);
        Assert.Equal(1, fitted.Kwargs["in_chans"]!.GetValue<int>());
        Assert.Equal(10, fitted.Kwargs["num_classes"]!.GetValue<int>());
        Assert.False(fitted.Kwargs.ContainsKey("image_size"));
        var model = (ResNet)fitted.Build();
        Assert.Equal(new[] { 64, 1, 7, 7 }, model.Conv1.Weight.Shape);
        Assert.Equal(1, Presets.Get("resnet18-fmnist").Channels);
    }

    [Fact]
    public void KwargsRoundTripThroughTheFactory()
    {
        var c = new ResNetConfig { Block = "Bottleneck", Layers = [1, 2, 1, 1], NumClasses = 4, ZeroInitResidual = true, Groups = 2, WidthPerGroup = 32, InChans = 1 };
        var model = (ResNet)ModelFactory.Create("torchvision.models.resnet.ResNet", c.ToKwargs());
        Assert.Equal(c.ToKwargs().ToJsonString(), model.Config.ToKwargs().ToJsonString());
        Assert.Equal(ExpectedCount(c), model.ParameterCount());
    }
}
