using VitSharp.Inference;
using VitSharp.Kernels;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Tests.Inference;

/// <summary><see cref="ModelPrecision.UsePrecision"/>: which layers it converts, what a converted model computes, and
/// what it refuses. The kernels themselves are checked against their reference twins in Int8GemmTests / Bf16GemmTests.</summary>
public sealed class ModelPrecisionTests(Xunit.Abstractions.ITestOutputHelper output)
{
    internal static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
        return ab / Math.Sqrt(aa * bb);
    }

    internal static float[] Logits(Module model, Tensor images)
    {
        using var noGrad = VitSharp.Autograd.NoGrad();
        return model.Forward(images).Data.ToArray();
    }

    private static (Module Model, Tensor Images) Build(string preset, int seed = 3, int batch = 4)
    {
        var p = Presets.Get(preset);
        Init.Seed(seed);
        var model = p.Spec.Build();
        model.Eval();
        // torchvision initialises its classifier head to zeros (every logit would be the bias): give such matrices weights.
        var rng = new Random(seed);
        foreach (var (_, w) in model.NamedParameters())
            if (w.Rank == 2 && w.Data.All(v => v == 0))
                for (int i = 0; i < w.Size; i++) w.Data[i] = 0.02f * (float)(rng.NextDouble() * 2 - 1);
        return (model, Tensor.RandN(new Random(seed), 0, 1, batch, p.Channels, p.ImageSize, p.ImageSize));
    }

    // 1 − cosine(low precision, fp32) over the logits of four random images, per family: measured (random weights)
    // 1.7e-6…2.0e-5 for bf16 and 1.6e-5…1.9e-4 for int8 (vit_fmnist the worst of both); the bounds are ten times the worst.
    [Theory]
    [InlineData("vit-fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("vit-fmnist", InferencePrecision.Int8, 2e-3)]
    [InlineData("simplevit-fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("simplevit-fmnist", InferencePrecision.Int8, 2e-3)]
    [InlineData("deepvit-fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("deepvit-fmnist", InferencePrecision.Int8, 2e-3)]
    [InlineData("cait-fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("cait-fmnist", InferencePrecision.Int8, 2e-3)]
    [InlineData("t2t-fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("t2t-fmnist", InferencePrecision.Int8, 2e-3)]
    [InlineData("pit-fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("pit-fmnist", InferencePrecision.Int8, 2e-3)]
    [InlineData("vit_fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("vit_fmnist", InferencePrecision.Int8, 2e-3)]
    [InlineData("swin-fmnist", InferencePrecision.BFloat16, 2e-4)]
    [InlineData("swin-fmnist", InferencePrecision.Int8, 2e-3)]
    public void EveryFamilysLogitsStayNearFloat32AndComeBackExactly(string preset, InferencePrecision precision, double maxOneMinusCosine)
    {
        var (model, images) = Build(preset);
        var fp32 = Logits(model, images);
        int converted = model.UsePrecision(precision);
        Assert.True(converted > 0);
        Assert.Equal(precision, model.GetPrecision());
        var low = Logits(model, images);
        Assert.False(low.AsSpan().SequenceEqual(fp32), "the low-precision logits equal float32's bit for bit: the converted layers were not used");
        double gap = 1 - Cosine(low, fp32);
        output.WriteLine($"{preset} {precision}: 1 − cosine = {gap:E2}");
        Assert.True(gap <= maxOneMinusCosine, $"{preset} {precision}: 1 − cosine = {gap:E2} > {maxOneMinusCosine:E0}");

        Assert.Equal(converted, model.UsePrecision(InferencePrecision.Float32));
        Assert.Equal(InferencePrecision.Float32, model.GetPrecision());
        Assert.Equal(fp32, Logits(model, images));   // the float32 weights were never touched
    }

    [Fact]
    public void EveryLinearWeightIsConvertedIncludingPackedAttentionProjections()
    {
        // vit-pytorch ViT, depth 6: per layer to_qkv, to_out.0, net.1, net.4; plus the patch embedding's Linear and the head.
        var (vit, _) = Build("vit-fmnist");
        Assert.Equal(6 * 4 + 2, vit.UsePrecision(InferencePrecision.Int8));
        var convertedVit = vit.NamedParameters().Where(p => p.Parameter.Packed is not null).Select(p => p.Name).ToList();
        Assert.Contains("to_patch_embedding.2.weight", convertedVit);
        Assert.Contains("transformer.layers.0.0.to_qkv.weight", convertedVit);
        Assert.Contains("mlp_head.weight", convertedVit);
        Assert.DoesNotContain(convertedVit, n => n.Contains("norm") || n.EndsWith(".bias") || n.Contains("pos_embedding"));

        // torchvision VisionTransformer: the packed in_proj_weight of nn.MultiheadAttention is a Linear too.
        var (tv, _) = Build("vit_fmnist");
        tv.UsePrecision(InferencePrecision.BFloat16);
        var convertedTv = tv.NamedParameters().Where(p => p.Parameter.Packed is not null).Select(p => p.Name).ToList();
        Assert.Contains("encoder.layers.encoder_layer_0.self_attention.in_proj_weight", convertedTv);
        Assert.Contains("encoder.layers.encoder_layer_0.self_attention.out_proj.weight", convertedTv);
        Assert.DoesNotContain("conv_proj.weight", convertedTv);   // convolutions stay float32
    }

    [Fact]
    public void AForwardPassThatRecordsGradientsThroughAConvertedLayerIsRefused()
    {
        var (model, images) = Build("vit-fmnist", batch: 2);
        model.UsePrecision(InferencePrecision.Int8);
        model.Train();
        var e = Assert.Throws<InvalidOperationException>(() => model.Forward(images));
        Assert.Contains("int8", e.Message);
        Assert.Contains("UsePrecision(InferencePrecision.Float32)", e.Message);
    }

    [Fact]
    public void LoadingAStateDictConvertsTheNewWeightsAgain()
    {
        var (a, images) = Build("vit-fmnist", seed: 1, batch: 2);
        var (b, _) = Build("vit-fmnist", seed: 2, batch: 2);
        a.UsePrecision(InferencePrecision.Int8);
        b.UsePrecision(InferencePrecision.Int8);
        var expected = Logits(b, images);
        Assert.NotEqual(expected, Logits(a, images));
        a.LoadStateDict(b.StateDict());
        Assert.Equal(expected, Logits(a, images));
    }

    [Fact]
    public void ImageClassifierAppliesThePrecisionItIsGiven()
    {
        var (model, _) = Build("vit-fmnist");
        var checkpoint = new VitSharp.Training.LoadedCheckpoint("model", model,
            new VitSharp.Training.CheckpointInfo(Presets.Get("vit-fmnist").Spec,
                new VitSharp.Training.DataInfo("fashion-mnist", Enumerable.Range(0, 10).Select(i => i.ToString()).ToList(), 1, 28, 28, [0.5f], [0.5f]).ToJson(),
                new System.Text.Json.Nodes.JsonObject()), new Dictionary<string, Tensor>());
        var classifier = new ImageClassifier(checkpoint, InferencePrecision.BFloat16);
        Assert.Equal(InferencePrecision.BFloat16, classifier.Precision);
        Assert.Equal(InferencePrecision.BFloat16, model.GetPrecision());
    }

    [Fact]
    public void AnUndefinedPrecisionIsRejected()
    {
        var (model, _) = Build("vit-fmnist");
        Assert.Throws<ArgumentOutOfRangeException>(() => model.UsePrecision((InferencePrecision)7));
        var e = Assert.Throws<ArgumentException>(() => InferencePrecisions.Parse("fp16"));
        Assert.Contains("'fp16'", e.Message);
        Assert.Equal(InferencePrecision.BFloat16, InferencePrecisions.Parse(" BF16 "));
        Assert.Equal("int8", InferencePrecision.Int8.Name());
    }
}
