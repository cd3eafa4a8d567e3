using VitSharp.Models;

namespace VitSharp.Tests.Models;

/// <summary>The analytic FLOP count of a ViT forward pass against a hand computation.</summary>
public class FlopsTests
{
    private static ViTConfig Tiny(int heads = 2, int dimHead = 4, string pool = "cls") => new()
    {
        ImageHeight = 8, ImageWidth = 8, PatchHeight = 4, PatchWidth = 4, Channels = 1,
        NumClasses = 3, Dim = 8, Depth = 1, Heads = heads, DimHead = dimHead, MlpDim = 16, Pool = pool,
    };

    [Fact]
    public void TinyViT_MatchesHandComputation()
    {
        // batch 2; 4 patches of 16 values; 5 tokens with the class token; inner = 2·4 = 8.
        long patchEmbed = 2L * 2 * 4 * 16 * 8;        // 2048
        long qkv = 2L * 2 * 5 * 8 * 24;               // 3840
        long attention = 2L * 2 * (2 * (2 * 25 * 4)); // batch·heads·2·(2·N²·D) = 1600
        long toOut = 2L * 2 * 5 * 8 * 8;              // 1280
        long ff = 2L * (2 * 2 * 5 * 8 * 16);          // 5120
        long head = 2L * 2 * 8 * 3;                   // 96
        long expected = patchEmbed + qkv + attention + toOut + ff + head;
        Assert.Equal(13984, expected);
        Assert.Equal(expected, Flops.ViTForwardFlops(Tiny(), 2));
        Assert.Equal(3 * expected, Flops.ViTTrainStepFlops(Tiny(), 2));
    }

    [Fact]
    public void SingleHeadOfFullWidth_HasNoOutputProjection()
    {
        // heads 1, dim_head = dim: vit-pytorch's to_out is Identity.
        long withOut = Flops.ViTForwardFlops(Tiny(heads: 1, dimHead: 8), 1);
        long qkv = 2L * 5 * 8 * 24, attention = 2 * (2 * 25 * 8), ff = 2L * 2 * 5 * 8 * 16, patchEmbed = 2L * 4 * 16 * 8, head = 2L * 8 * 3;
        Assert.Equal(patchEmbed + qkv + attention + ff + head, withOut);
    }

    [Fact]
    public void MeanPool_HasNoClassToken()
    {
        long n = Flops.ViTForwardFlops(Tiny(pool: "mean"), 1);
        long expected = 2L * 4 * 16 * 8 + 2L * 4 * 8 * 24 + 2 * (2 * (2 * 16 * 4)) + 2L * 4 * 8 * 8 + 2L * 2 * 4 * 8 * 16 + 2L * 8 * 3;
        Assert.Equal(expected, n);
    }

    [Fact]
    public void VitB16_IsAbout35GigaflopsPerImage()
    {
        // The usual figure: ≈ 17.6 GMACs per 224² image.
        var b16 = new ViTConfig
        {
            ImageHeight = 224, ImageWidth = 224, PatchHeight = 16, PatchWidth = 16, NumClasses = 1000,
            Dim = 768, Depth = 12, Heads = 12, MlpDim = 3072,
        };
        double g = Flops.ViTForwardFlops(b16, 1) / 1e9;
        Assert.InRange(g, 34.5, 35.5);
    }
}
