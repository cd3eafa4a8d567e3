namespace VitSharp.Data;

/// <summary>A decoded 8-bit image, pixels interleaved row by row (H×W×C).</summary>
/// <param name="Pixels">Height·Width·Channels bytes, row-major, channels interleaved (RGB or grey).</param>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Channels">1 (grey), 3 (RGB) or 4 (RGBA).</param>
public sealed record DecodedImage(byte[] Pixels, int Width, int Height, int Channels);
