namespace VitSharp.Data;

/// <summary>
/// torchvision's <c>RandomCrop(size, padding)</c> with the crop size equal to the image size: pads every
/// side with <see cref="Padding"/> zeros, then crops an H×W window at a uniformly random position. This is
/// a random shift by (dy, dx) ∈ [−padding, padding]², done in place with zeros filling the uncovered border.
/// The random draws are: top offset, then left offset (each <c>Next(0, 2·padding + 1)</c>).
/// </summary>
public sealed class RandomCrop : ITransform
{
    /// <summary>Creates the transform.</summary>
    /// <param name="padding">Zero padding on each side (≥ 0); 0 makes the transform the identity.</param>
    public RandomCrop(int padding)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(padding);
        Padding = padding;
    }

    /// <summary>Zero padding on each side, in pixels.</summary>
    public int Padding { get; }

    /// <inheritdoc/>
    public void Apply(Span<float> image, int channels, int height, int width, Random random)
    {
        TransformChecks.Check(image, channels, height, width);
        if (Padding == 0) return;
        int top = random.Next(0, 2 * Padding + 1);
        int left = random.Next(0, 2 * Padding + 1);
        Shift(image, channels, height, width, top - Padding, left - Padding);
    }

    /// <summary>In place: out[c, y, x] = in[c, y + dy, x + dx], zero where that falls outside the image.</summary>
    public static void Shift(Span<float> image, int channels, int height, int width, int dy, int dx)
    {
        TransformChecks.Check(image, channels, height, width);
        if (dy == 0 && dx == 0) return;
        int plane = height * width;
        int adx = Math.Abs(dx);
        int len = Math.Max(0, width - adx);
        int srcX = Math.Max(0, dx), dstX = Math.Max(0, -dx);
        for (int c = 0; c < channels; c++)
        {
            Span<float> p = image.Slice(c * plane, plane);
            // Rows read ahead when dy > 0 (walk down), behind when dy < 0 (walk up), so no source row is overwritten first.
            for (int k = 0; k < height; k++)
            {
                int y = dy >= 0 ? k : height - 1 - k;
                int sy = y + dy;
                Span<float> dst = p.Slice(y * width, width);
                if ((uint)sy >= (uint)height || len == 0)
                {
                    dst.Clear();
                    continue;
                }
                // Span.CopyTo is a memmove: correct when source and destination overlap (same row, dy == 0).
                p.Slice(sy * width + srcX, len).CopyTo(dst[dstX..]);
                if (dx > 0) dst[len..].Clear();
                else if (dx < 0) dst[..adx].Clear();
            }
        }
    }
}
