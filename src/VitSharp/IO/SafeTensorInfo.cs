namespace VitSharp.IO;

/// <summary>One tensor's header entry. <see cref="Begin"/> and <see cref="End"/> are byte offsets into the data
/// buffer that follows the header (end exclusive).</summary>
/// <param name="Name">Tensor key.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions; empty for a scalar.</param>
/// <param name="Begin">First byte, relative to the data buffer.</param>
/// <param name="End">One past the last byte, relative to the data buffer.</param>
public sealed record SafeTensorInfo(string Name, DType DType, int[] Shape, long Begin, long End)
{
    /// <summary>Product of <see cref="Shape"/> (1 for a scalar, 0 if any dimension is 0).</summary>
    public long ElementCount { get; } = Product(Shape);

    /// <summary>Size of the tensor's data in bytes.</summary>
    public long ByteLength => End - Begin;

    /// <summary>Shape formatted as "[a, b, c]".</summary>
    public string ShapeString => "[" + string.Join(", ", Shape) + "]";

    internal static long Product(int[] shape)
    {
        long n = 1;
        foreach (int d in shape) n = checked(n * d);
        return n;
    }
}
