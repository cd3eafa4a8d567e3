// VitSharp quick start, built against the packed VitSharp NuGet package (scripts/pack.sh):
// writes a small image folder, trains a tiny ViT on it (Trainer.Fit) and classifies one new image (ImageClassifier).
// Exits 1 when the training loss did not fall.
using VitSharp;
using VitSharp.Data;
using VitSharp.Inference;
using VitSharp.Models;
using VitSharp.Training;

const int Size = 16, PerClass = 32, Epochs = 10;
string root = Path.Combine(Path.GetTempPath(), $"vitsharp-quickstart-{Environment.ProcessId}");
try
{
    // 1. An image folder, one sub-folder per class: horizontal vs vertical stripes, as 16×16 RGB PNGs.
    var rng = new Random(1);
    foreach (string cls in new[] { "horizontal", "vertical" })
    {
        Directory.CreateDirectory(Path.Combine(root, cls));
        for (int i = 0; i < PerClass; i++)
            ImageEncoder.SavePng(Path.Combine(root, cls, $"{i}.png"), Stripes(cls == "vertical", rng), Size, Size, 3);
    }
    var data = new ImageFolderDataset(root, Size, channels: 3);
    Console.WriteLine($"data: {data.Count} images, classes {string.Join(", ", data.ClassNames)}");

    // 2. A tiny ViT, as vit-pytorch's ViT(image_size=16, patch_size=4, num_classes=2, dim=32, depth=2, heads=2, mlp_dim=64).
    var model = new ViT(new ViTConfig
    {
        ImageHeight = Size, ImageWidth = Size, PatchHeight = 4, PatchWidth = 4, Channels = 3,
        NumClasses = data.NumClasses, Dim = 32, Depth = 2, Heads = 2, DimHead = 16, MlpDim = 64,
    });
    Console.WriteLine($"model: ViT, {model.ParameterCount():N0} parameters");

    // 3. Train with the library's loop (AdamW, warm-up + cosine, evaluation, a checkpoint per epoch).
    string runDir = Path.Combine(root, "run");
    var loader = new DataLoader(data, batchSize: 8, shuffle: false, seed: 0, transform: null);
    float before = MeanLoss(model, loader);
    TrainResult run = Trainer.Fit(model, data, test: data, new FitOptions { Epochs = Epochs, BatchSize = 8, LearningRate = 3e-3f, WarmupEpochs = 0, OutDir = runDir });
    float after = MeanLoss(model, loader);
    Console.WriteLine($"loss: {before:F4} before, {after:F4} after {Epochs} epochs; checkpoint {Path.GetFileName(run.CheckpointPath)}");

    // 4. Classify a new image file from the checkpoint, prepared as in training.
    string probe = Path.Combine(root, "probe.png");
    ImageEncoder.SavePng(probe, Stripes(vertical: true, rng), Size, Size, 3);
    ImagePrediction p = ImageClassifier.Load(run.CheckpointPath!).Predict(probe, topK: 2);
    Console.WriteLine($"prediction: {p.Best.Name} ({p.Best.Probability:P1}) for an image of vertical stripes");

    if (!(after < before))
    {
        Console.Error.WriteLine("quickstart: the loss did not fall");
        return 1;
    }
    return 0;
}
finally
{
    Directory.Delete(root, recursive: true);
}

// Stripes two pixels wide in a random colour on a dark background, with a little noise (H×W×C bytes).
static byte[] Stripes(bool vertical, Random rng)
{
    var pixels = new byte[Size * Size * 3];
    int phase = rng.Next(4);
    var colour = new[] { rng.Next(128, 256), rng.Next(128, 256), rng.Next(128, 256) };
    for (int y = 0; y < Size; y++)
        for (int x = 0; x < Size; x++)
        {
            bool on = ((vertical ? x : y) + phase) / 2 % 2 == 0;
            for (int c = 0; c < 3; c++)
                pixels[(y * Size + x) * 3 + c] = (byte)Math.Clamp((on ? colour[c] : 20) + rng.Next(-15, 16), 0, 255);
        }
    return pixels;
}

// The mean cross-entropy over the whole folder, in eval mode without gradients.
static float MeanLoss(ViT model, DataLoader loader)
{
    model.Eval();
    double sum = 0;
    int n = 0;
    using (Autograd.NoGrad())
        foreach (var batch in loader.Epoch(0))
        {
            sum += F.CrossEntropy(model.Forward(batch.Images), batch.Labels).Item() * batch.Count;
            n += batch.Count;
        }
    return (float)(sum / n);
}
