using VitSharp.Data;
using VitSharp.Inference;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Tests.Inference;

/// <summary>
/// What bf16 and int8 cost in accuracy (issue 17's bar): on the default Fashion-MNIST model trained by <c>vit train</c>,
/// test accuracy within 0.3 points of float32 and the same top-1 class on ≥ 99% of the 10,000 test images; on ViT-B/16
/// with random weights, logits' cosine similarity to float32 ≥ 0.999 (bf16) and ≥ 0.99 (int8).
/// </summary>
public sealed class ReducedPrecisionAccuracyTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>The weights of a default <c>vit train</c> run (vit-fmnist, 7 epochs, seed 0), saved without the optimizer
    /// state; how it was made: tests/VitSharp.Tests/Fixtures/README.md.</summary>
    private static string FashionMnistCheckpoint =>
        Path.Combine(TestFixtures.RepoRoot()!, "tests", "VitSharp.Tests", "Fixtures", "vit_fmnist_default.safetensors");

    private static (int[] Predictions, double Accuracy) Classify(Module model, IImageDataset test, ITransform normalize)
    {
        var predictions = new int[test.Count];
        int correct = 0, at = 0;
        var loader = new DataLoader(test, 500, shuffle: false, seed: 0, normalize);
        using var noGrad = VitSharp.Autograd.NoGrad();
        foreach (var batch in loader.Epoch(0))
        {
            using var scope = TensorScope.Begin();
            var top = Evaluator.ArgMax(model.Forward(batch.Images));
            for (int i = 0; i < top.Length; i++, at++)
            {
                predictions[at] = top[i];
                if (top[i] == batch.Labels[i]) correct++;
            }
        }
        return (predictions, (double)correct / test.Count);
    }

    [Trait("Category", "DataSet")]
    [Theory]
    [InlineData(InferencePrecision.BFloat16)]
    [InlineData(InferencePrecision.Int8)]
    public void TheDefaultFashionMnistModelKeepsItsAccuracyAndItsAnswers(InferencePrecision precision)
    {
        var ckpt = Checkpoint.Load(FashionMnistCheckpoint);
        var info = DataInfo.FromJson(ckpt.Info.Data);
        var test = FashionMnist.Load(train: false);
        Assert.Equal(10_000, test.Count);
        ckpt.Model.Eval();
        var (fp32, fp32Accuracy) = Classify(ckpt.Model, test, info.Normalize());
        Assert.True(fp32Accuracy >= 0.89, $"the fixture's own float32 accuracy is {fp32Accuracy:P2}: not the default model");

        ckpt.Model.UsePrecision(precision);
        var (low, lowAccuracy) = Classify(ckpt.Model, test, info.Normalize());
        int agree = fp32.Zip(low).Count(p => p.First == p.Second);
        output.WriteLine($"{precision}: fp32 {fp32Accuracy:P2}, {precision.Name()} {lowAccuracy:P2}, top-1 agreement {agree}/10000");
        Assert.True(Math.Abs(lowAccuracy - fp32Accuracy) <= 0.003, $"{precision.Name()} accuracy {lowAccuracy:P2} vs fp32 {fp32Accuracy:P2}");
        Assert.True(agree >= 9_900, $"{precision.Name()} agrees with fp32 on {agree} of 10,000 test images");
    }

    [Theory]
    [InlineData(InferencePrecision.BFloat16, 0.999)]
    [InlineData(InferencePrecision.Int8, 0.99)]
    public void VitB16WithRandomWeightsKeepsItsLogitsDirection(InferencePrecision precision, double minCosine)
    {
        var p = Presets.Get("vit-b16");
        Init.Seed(5);
        var model = p.Spec.Build();
        model.Eval();
        var images = Tensor.RandN(new Random(5), 0, 1, 2, 3, 224, 224);
        var fp32 = ModelPrecisionTests.Logits(model, images);
        model.UsePrecision(precision);
        var low = ModelPrecisionTests.Logits(model, images);
        double cosine = ModelPrecisionTests.Cosine(low, fp32);
        output.WriteLine($"ViT-B/16 {precision}: cosine {cosine:F6}");
        Assert.True(cosine >= minCosine, $"ViT-B/16 {precision.Name()}: cosine {cosine:F6} < {minCosine}");
    }
}
