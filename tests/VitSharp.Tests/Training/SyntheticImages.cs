using VitSharp.Data;
using VitSharp.Models;

namespace VitSharp.Tests.Training;

/// <summary>A small learnable in-memory data set and a tiny ViT for it (tests of the library's training API).</summary>
internal static class SyntheticImages
{
    public static readonly string[] Classes = ["top vertical", "top horizontal", "bottom vertical", "bottom horizontal"];

    /// <summary>
    /// N grey (or RGB) 8×8 images: one 4×4 quadrant (a patch) in the class's half (top or bottom; left or right at random)
    /// holds noisy stripes of the class's orientation, the rest is flat grey. Flat, not noisy: vit-pytorch's patch
    /// embedding layer-normalises each patch, which would blow noise up to the stripes' contrast. Horizontal flips keep
    /// the class.
    /// </summary>
    public static InMemoryDataset Make(int count, int seed, int channels = 1)
    {
        const int size = 8, half = size / 2;
        var rng = new Random(seed);
        var pixels = new byte[count * channels * size * size];
        var labels = new int[count];
        for (int n = 0; n < count; n++)
        {
            int k = labels[n] = rng.Next(Classes.Length);
            int top = k < 2 ? 0 : half, left = rng.Next(2) * half;
            bool vertical = k % 2 == 0;
            for (int c = 0; c < channels; c++)
                for (int y = 0; y < size; y++)
                    for (int x = 0; x < size; x++)
                    {
                        bool lit = y >= top && y < top + half && x >= left && x < left + half;
                        bool bright = (vertical ? x : y) % 2 == 0;
                        pixels[((n * channels + c) * size + y) * size + x] = (byte)(lit ? (bright ? 200 : 40) + rng.Next(30) : 100);
                    }
        }
        return new InMemoryDataset(pixels, labels, channels, size, size, Classes);
    }

    public static ViTConfig Config(int channels = 1) => new()
    {
        ImageHeight = 8, ImageWidth = 8, PatchHeight = 4, PatchWidth = 4, Channels = channels, NumClasses = Classes.Length,
        Dim = 16, Depth = 1, Heads = 2, DimHead = 8, MlpDim = 32,
    };
}
