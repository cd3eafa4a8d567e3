using VitSharp.Cli;
using VitSharp.Data;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Training;

namespace VitSharp.Tests.Training;

/// <summary>The one <see cref="TrainStep"/>: what <c>vit bench --train</c> times is what <see cref="Trainer.Fit"/> runs.</summary>
public class TrainStepTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BenchStepAndFitGiveIdenticalParametersAfterNStepsFromTheSameSeed(bool dataParallel)
    {
        var spec = ModelSpec.ViT(SyntheticImages.Config());
        var train = SyntheticImages.Make(40, seed: 1);
        // Bench's step: AdamW lr 1e-3, weight decay 0.05, label smoothing 0.1, no clipping → Fit with the same, a
        // constant learning rate and no normalisation or augmentation (so both see the loader's batches as they are).
        var options = new FitOptions
        {
            Epochs = 3, BatchSize = 16, LearningRate = 1e-3f, MinLearningRate = 1e-3f, WarmupEpochs = 0, WeightDecay = 0.05f,
            LabelSmoothing = 0.1f, ClipGradNorm = 0, Seed = 5, Spec = spec, DataParallel = dataParallel,
        };
        Init.Seed(11);
        var fitted = spec.Build();
        var r = Trainer.Fit(fitted, train, null, options);
        Assert.Equal(9, r.History[^1].Step);   // 3 epochs × 3 batches (16, 16, 8)

        Init.Seed(11);
        var benched = spec.Build();
        using var step = BenchCommand.CreateTrainStep(benched, spec, dataParallel);
        var loader = new DataLoader(train, options.BatchSize, shuffle: true, options.Seed, transform: null);
        for (int epoch = 0; epoch < options.Epochs; epoch++)
            foreach (var b in loader.Epoch(epoch)) step.Run(b.Images, b.Labels);
        Assert.Equal(9, step.Step);

        var expected = fitted.NamedParameters().ToList();
        var actual = benched.NamedParameters().ToList();
        Assert.Equal(expected.Select(p => p.Name), actual.Select(p => p.Name));
        bool moved = false;
        Init.Seed(11);
        var initial = spec.Build().NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Data.ToArray());
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(expected[i].Parameter.Data.AsSpan().SequenceEqual(actual[i].Parameter.Data), $"parameter '{expected[i].Name}' differs");
            moved |= !initial[expected[i].Name].AsSpan().SequenceEqual(expected[i].Parameter.Data);
        }
        Assert.True(moved, "the parameters did not change");
    }

    [Fact]
    public void ANonFiniteLossThrowsAndNamesTheStep()
    {
        var model = new ViT(SyntheticImages.Config());
        using var step = new TrainStep(model, new VitSharp.Optim.AdamW(model.NamedParameters()));
        var images = new Tensor(2, 1, 8, 8);
        images.Data[0] = float.NaN;
        var e = Assert.Throws<NonFiniteLossException>(() => step.Run(images, [0, 1]));
        Assert.Contains("step 1", e.Message);
        Assert.Equal(0, step.Step);
    }
}
