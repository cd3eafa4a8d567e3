namespace VitSharp.IO;

/// <summary>bfloat16 &lt;-&gt; float conversions on raw 16-bit patterns.</summary>
public static class BFloat16
{
    /// <summary>Exact widening: the bf16 bits become the top half of a binary32.</summary>
    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Narrowing with round-to-nearest-even; NaN stays NaN (quiet), infinities and signed zero are kept,
    /// values that round past the largest finite bf16 become infinity.</summary>
    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
            return (ushort)((bits >> 16) | 0x0040); // keep sign and payload top bits, force quiet
        uint lsb = (bits >> 16) & 1;
        return (ushort)((bits + 0x7FFFu + lsb) >> 16);
    }
}
