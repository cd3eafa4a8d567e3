namespace VitSharp.Models;

/// <summary>
/// A model that takes image batches [B, channels, height, width] of one fixed geometry. Training, evaluation and
/// prediction read the geometry from here instead of assuming a particular family (CaiT, for one, always takes
/// 3 channels whatever the data has).
/// </summary>
public interface IImageModel
{
    /// <summary>Channels of the input images.</summary>
    int InputChannels { get; }
    /// <summary>Height of the input images in pixels.</summary>
    int InputHeight { get; }
    /// <summary>Width of the input images in pixels.</summary>
    int InputWidth { get; }
}
