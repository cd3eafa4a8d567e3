using System.Text.Json.Nodes;
using VitSharp.Data;
using VitSharp.Inference;
using VitSharp.Models;
using VitSharp.NN;
using VitSharp.Serving;
using VitSharp.Tests.Data;
using VitSharp.Training;

namespace VitSharp.Tests.Serving;

/// <summary>
/// Small checkpoints and images for the serving tests: a vit-pytorch ViT (RGB 32×32, patches 8×8, 10 Fashion-MNIST class
/// names, seeded random weights; attention rollout applies) saved as <c>vit train</c> saves one, and the pretrained
/// fixture's ResNet imported (no attention layers); a PNG and the fixture photo (JPEG).
/// </summary>
public sealed class ServingAssets : IDisposable
{
    public static readonly string[] Classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private readonly TempDir _dir = new("serving");

    public ServingAssets()
    {
        Init.Seed(16);
        var config = new ViTConfig
        {
            ImageHeight = 32, ImageWidth = 32, PatchHeight = 8, PatchWidth = 8, Channels = 3, NumClasses = Classes.Length,
            Dim = 32, Depth = 2, Heads = 2, DimHead = 16, MlpDim = 64,
        };
        var info = new DataInfo("custom", Classes, 3, 32, 32, [0.5f, 0.5f, 0.5f], [0.25f, 0.25f, 0.25f]);
        VitCheckpoint = _dir.File("vit.safetensors");
        Checkpoint.Save(VitCheckpoint, new ViT(config), new CheckpointInfo(ModelSpec.ViT(config), info.ToJson(), new JsonObject()));

        ResNetCheckpoint = _dir.File("resnet.safetensors");
        var r = Cli.TrainCliTests.Run("import", Pretrained("resnet.pth"), "--out", ResNetCheckpoint);
        Assert.True(r.Code == 0, r.Err);

        Png = PngWriter.Encode(ImageDecoderTests.Pattern(45, 37, 3), 45, 37, 2);
        Jpeg = System.IO.File.ReadAllBytes(Pretrained("photo.jpg"));
        PngPath = _dir.File("pattern.png");
        System.IO.File.WriteAllBytes(PngPath, Png);
    }

    public static string Pretrained(string name) => Path.Combine(TestFixtures.Dir, "pretrained", name);

    public string VitCheckpoint { get; }
    public string ResNetCheckpoint { get; }
    public byte[] Png { get; }
    public byte[] Jpeg { get; }
    public string PngPath { get; }
    public string File(string name) => _dir.File(name);

    public void Dispose() => _dir.Dispose();
}

/// <summary>Two real Kestrel servers on loopback ports chosen by the system: the ViT and the ResNet of <see cref="ServingAssets"/>.</summary>
public sealed class ServingFixture : IAsyncLifetime
{
    public ServingAssets Assets { get; } = new();
    public ImageClassifier Vit { get; private set; } = null!;
    public ClassifierServer VitServer { get; private set; } = null!;
    public ClassifierServer ResNetServer { get; private set; } = null!;
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };

    /// <summary>The body limit of <see cref="VitServer"/>: 1 MiB, so that the limit is cheap to cross.</summary>
    public const long BodyLimit = 1 << 20;

    public async Task InitializeAsync()
    {
        Vit = ImageClassifier.Load(Assets.VitCheckpoint);
        VitServer = await ClassifierServer.StartAsync(Vit, new ClassifierServerOptions { Port = 0, MaxBodyBytes = BodyLimit });
        ResNetServer = await ClassifierServer.StartAsync(ImageClassifier.Load(Assets.ResNetCheckpoint), new ClassifierServerOptions { Port = 0 });
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await VitServer.DisposeAsync();
        await ResNetServer.DisposeAsync();
        Assets.Dispose();
    }
}
