using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Tests.Data;
using VitSharp.Training;

namespace VitSharp.Tests.Training;

/// <summary>SimpleViT, DeepViT and CaiT in checkpoints and in <c>vit train</c> (CaiT with its fixed 3 channels on grey data).</summary>
public class ModelFamilyTrainingTests
{
    public static TheoryData<string, string> Specs() => new()
    {
        { SimpleViTConfig.Constructor, """{"image_size": [8, 12], "patch_size": [4, 3], "num_classes": 3, "dim": 8, "depth": 2, "heads": 2, "mlp_dim": 16, "channels": 1, "dim_head": 4}""" },
        { DeepViTConfig.Constructor, """{"image_size": 8, "patch_size": 4, "num_classes": 3, "dim": 8, "depth": 2, "heads": 3, "mlp_dim": 16, "pool": "mean", "channels": 1, "dim_head": 4, "dropout": 0.1}""" },
        { CaiTConfig.Constructor, """{"image_size": 8, "patch_size": 4, "num_classes": 3, "dim": 8, "depth": 2, "cls_depth": 1, "heads": 2, "mlp_dim": 16, "dim_head": 4, "layer_dropout": 0.25}""" },
    };

    [Theory, MemberData(nameof(Specs))]
    public void CheckpointRoundTripGivesTheSameLogits(string constructor, string kwargs)
    {
        using var dir = new TempDir("ckpt-family");
        var spec = new ModelSpec(constructor, (JsonObject)JsonNode.Parse(kwargs)!);
        Init.Seed(1);
        var model = spec.Build();
        var im = (IImageModel)model;
        int h = im.InputHeight!.Value, w = im.InputWidth!.Value;   // these families take one size
        var images = TestData.Uniform(2, 0, 1, 3, im.InputChannels, h, w);
        // One optimizer step so the weights are off their initial values.
        var opt = new VitSharp.Optim.AdamW(model.NamedParameters(), 1e-2f);
        model.Train();
        Dropout.Seed(5);
        F.CrossEntropy(model.Forward(images), [0, 1, 2]).Backward();
        opt.Step();

        string path = dir.File("c.safetensors");
        var data = new DataInfo("folder", ["a", "b", "c"], im.InputChannels, h, w, [0.5f], [0.25f]).ToJson();
        Checkpoint.Save(path, model, new CheckpointInfo(spec, data, new JsonObject()), opt);
        var loaded = Checkpoint.Load(path);
        Assert.IsType(model.GetType(), loaded.Model);
        Assert.Equal(spec.ToJson().ToJsonString(), loaded.Info.Model.ToJson().ToJsonString());

        model.Eval(); loaded.Model.Eval();
        Dropout.Seed(9);                        // CaiT's layer dropout also acts in eval mode: the same seed, the same layers
        var expected = model.Forward(images).Data;
        Dropout.Seed(9);
        var actual = loaded.Model.Forward(images).Data;
        Assert.Equal(expected, actual);
    }

    [Trait("Category", "DataSet")]
    [Trait("Category", "Slow")]
    [Theory]
    [InlineData("simplevit-fmnist", typeof(SimpleViT), 1)]
    [InlineData("deepvit-fmnist", typeof(DeepViT), 1)]
    [InlineData("cait-fmnist", typeof(CaiT), 3)]
    [InlineData("vit_fmnist", typeof(VisionTransformer), 1)]
    public void TrainEvaluateAndReloadEachFamilyOnFashionMnist(string preset, Type type, int channels)
    {
        using var dir = new TempDir("train-family");
        var progress = new SyncProgress(_ => { });
        var result = Trainer.Run(new TrainOptions
        {
            Model = preset, TrainLimit = 48, TestLimit = 24, BatchSize = 16, Epochs = 1, Seed = 3, OutDir = dir.Path,
        }, progress: progress);
        Assert.False(result.Interrupted);
        Assert.Single(result.History);
        Assert.True(double.IsFinite(result.History[0].TrainLoss));

        var ckpt = Checkpoint.Load(result.CheckpointPath!);
        Assert.IsType(type, ckpt.Model);
        var info = DataInfo.FromJson(ckpt.Info.Data);
        Assert.Equal(channels, info.Channels);
        Assert.Equal(channels, info.Mean.Length);
        var messages = progress.Events.OfType<TrainMessage>().Select(m => m.Text).ToList();
        if (channels == 3) Assert.Contains(messages, m => m.Contains("repeated into 3 channels", StringComparison.Ordinal));
        else Assert.DoesNotContain(messages, m => m.Contains("repeated", StringComparison.Ordinal));

        // Evaluation from the checkpoint alone (as vit eval does) preprocesses as training did: the same accuracy.
        var test = DataSets.Limit(DataSets.LoadTest(info, null), 24);
        Assert.Equal(channels, test.Channels);
        var eval = Evaluator.Evaluate(ckpt.Model, test, info.Normalize());
        Assert.Equal(result.History[0].TestAccuracy, eval.Accuracy);
        // The run evaluated in data-parallel halves, this evaluation in one batch: the summation order differs, so the
        // losses agree to float32 rounding (~1e-7 here), not bit for bit; a preprocessing difference moves them by ≫ 1e-3.
        Assert.True(Math.Abs(result.History[0].TestLoss - eval.Loss) <= 1e-5 * Math.Max(1, Math.Abs(eval.Loss)),
            $"test loss {result.History[0].TestLoss} during training vs {eval.Loss} from the checkpoint");
    }

    [Fact]
    public void ChannelMismatchesOtherThanGreyToRgbAreErrors()
    {
        var rgb = new InMemoryDataset(new byte[2 * 3 * 4 * 4], [0, 1], 3, 4, 4, ["a", "b"]);
        var info = new DataInfo("folder", ["a", "b"], 3, 4, 4, [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]);
        var grey = new SimpleViT(new SimpleViTConfig { ImageHeight = 4, ImageWidth = 4, PatchHeight = 2, PatchWidth = 2, NumClasses = 2, Dim = 8, Depth = 1, Heads = 1, MlpDim = 8, Channels = 1 });
        var ex = Assert.Throws<ArgumentException>(() => Trainer.FitChannels(grey, rgb, rgb, info, "grey-model"));
        Assert.Contains("1-channel", ex.Message);
        Assert.Contains("3 channels", ex.Message);
        // Matching channels pass through untouched.
        var rgbModel = new CaiT(new CaiTConfig { ImageSize = 4, PatchSize = 2, NumClasses = 2, Dim = 8, Depth = 1, ClsDepth = 1, Heads = 1, MlpDim = 8 });
        var (train, _, same) = Trainer.FitChannels(rgbModel, rgb, rgb, info, "cait");
        Assert.Same(rgb, train);
        Assert.Same(info, same);
    }

    [Fact]
    public void RepeatChannelsDatasetCopiesTheGreyPlane()
    {
        var pixels = Enumerable.Range(0, 2 * 6).Select(i => (byte)(i * 20)).ToArray();
        var grey = new InMemoryDataset(pixels, [1, 0], 1, 2, 3, ["a", "b"]);
        var rgb = new RepeatChannelsDataset(grey, 3);
        Assert.Equal((3, 2, 3, 2, 2), (rgb.Channels, rgb.Height, rgb.Width, rgb.Count, rgb.NumClasses));
        Assert.Equal(0, rgb.Label(1));
        var plane = new float[6];
        grey.ReadPixels(1, plane);
        var buf = new float[18];
        rgb.ReadPixels(1, buf);
        for (int c = 0; c < 3; c++) Assert.Equal(plane, buf.AsSpan(c * 6, 6).ToArray());
        Assert.Throws<ArgumentException>(() => rgb.ReadPixels(0, new float[17]));
        Assert.Throws<ArgumentException>(() => new RepeatChannelsDataset(rgb, 3));   // only grey sources
        var info = new DataInfo("fashion-mnist", ["a", "b"], 1, 2, 3, [0.25f], [0.5f]).WithRepeatedChannels(3);
        Assert.Equal(3, info.Channels);
        Assert.Equal([0.25f, 0.25f, 0.25f], info.Mean);
        Assert.Equal([0.5f, 0.5f, 0.5f], info.Std);
        Assert.Throws<ArgumentException>(() => info.WithRepeatedChannels(3));                 // already 3 channels
    }

    [Theory]
    [InlineData("vit-fmnist", "default", "runs/vit-fmnist")]
    [InlineData("cait-fmnist", "default", "runs/cait-fmnist")]
    [InlineData("SimpleViT-FMNIST", "long", "runs/SimpleViT-FMNIST-long")]
    [InlineData("vit-fmnist", "long", "runs/vit-fmnist-long")]
    [InlineData("vit-fmnist-128", "long", "runs/vit-fmnist-128-long")]
    [InlineData("vit-fmnist-128", "default", "runs/vit-fmnist-128")]
    public void DefaultOutputFolderFollowsThePreset(string model, string recipe, string expected)
    {
        var r = TrainRecipes.Get(recipe);
        Assert.Equal(expected.Replace('/', Path.DirectorySeparatorChar), VitSharp.Cli.TrainCommand.DefaultOutDir(r with { Model = model }, r));
    }
}
