namespace VitSharp.Models;

/// <summary>
/// A model that takes image batches [B, channels, height, width]. Training, evaluation and prediction read the geometry
/// from here instead of assuming a particular family (CaiT, for one, always takes 3 channels whatever the data has).
/// Every family implements it; <see cref="InputHeight"/> and <see cref="InputWidth"/> are null for a model that takes any
/// size (<see cref="ResNet"/>, whose global average pooling ends in [B, C] whatever the image): the caller then keeps the
/// data's own size.
/// </summary>
public interface IImageModel
{
    /// <summary>Channels of the input images.</summary>
    int InputChannels { get; }
    /// <summary>Height of the input images in pixels; null when any height works.</summary>
    int? InputHeight { get; }
    /// <summary>Width of the input images in pixels; null when any width works.</summary>
    int? InputWidth { get; }
}

/// <summary>
/// An image model whose tokens are <see cref="NumPrefixTokens"/> special tokens (a class token, a distillation token)
/// followed by the patches of a <see cref="PatchGrid"/> in row-major order — what attention rollout needs to draw a heat
/// map over the image (<see cref="Inspection.AttentionRollout.ForModel"/>).
/// </summary>
public interface IPatchTokenModel : IImageModel
{
    /// <summary>Rows and columns of the patch grid.</summary>
    (int Height, int Width) PatchGrid { get; }
    /// <summary>Tokens before the patches (the first is the one the head reads).</summary>
    int NumPrefixTokens { get; }
}

/// <summary>The input check every <see cref="IImageModel"/> family shares.</summary>
public static class ImageInput
{
    /// <summary>Throws an <see cref="ArgumentException"/> naming the expected and the actual shape unless
    /// <paramref name="img"/> is [B, channels, height, width] (any height or width where it is null).</summary>
    public static void Check(Tensor img, int channels, int? height, int? width, string? note = null)
    {
        if (img.Rank != 4 || img.Dim(1) != channels || (height is int h && img.Dim(2) != h) || (width is int w && img.Dim(3) != w))
            throw new ArgumentException($"expected images [B, {channels}, {height?.ToString() ?? "H"}, {width?.ToString() ?? "W"}]{note}, got {Tensor.ShapeString(img.ShapeSpan)}");
    }
}
