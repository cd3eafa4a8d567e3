// TEMPORARY stand-in for the int8/bf16 kernels being written on branch i17-kernels: same API, naive code.
// Deleted when that branch is merged.
namespace VitSharp.Kernels;

/// <summary>Which implementation the low-precision GEMMs use.</summary>
public enum LowPrecisionPath { /** <summary>Auto.</summary> */ Auto, /** <summary>Managed.</summary> */ Managed, /** <summary>Native.</summary> */ Native }

/// <summary>Int8 weights (stand-in).</summary>
public sealed class Int8Weights
{
    /// <summary>Out.</summary>
    public int OutFeatures { get; }
    /// <summary>In.</summary>
    public int InFeatures { get; }
    internal readonly sbyte[] Q; internal readonly float[] S; internal readonly int[] ColSum;
    /// <summary>Scales.</summary>
    public ReadOnlySpan<float> Scales => S;
    private Int8Weights(int o, int i) { OutFeatures = o; InFeatures = i; Q = new sbyte[o * i]; S = new float[o]; ColSum = new int[o]; }
    /// <summary>Quantize.</summary>
    public static Int8Weights Quantize(ReadOnlySpan<float> weight, int outFeatures, int inFeatures)
    {
        var w = new Int8Weights(outFeatures, inFeatures);
        for (int o = 0; o < outFeatures; o++)
        {
            float max = 0; for (int i = 0; i < inFeatures; i++) max = MathF.Max(max, MathF.Abs(weight[o * inFeatures + i]));
            float s = max / 127f; w.S[o] = s;
            int sum = 0;
            for (int i = 0; i < inFeatures; i++) { int q = s == 0 ? 0 : (int)MathF.Round(weight[o * inFeatures + i] / s); w.Q[o * inFeatures + i] = (sbyte)q; sum += q; }
            w.ColSum[o] = sum;
        }
        return w;
    }
}

/// <summary>Int8 GEMM (stand-in).</summary>
public static class Int8Gemm
{
    /// <summary>Linear.</summary>
    public static void Linear(ReadOnlySpan<float> x, int m, Int8Weights w, ReadOnlySpan<float> bias, Span<float> y, LowPrecisionPath path = LowPrecisionPath.Auto)
    {
        int k = w.InFeatures, n = w.OutFeatures;
        var q = new byte[k];
        for (int r = 0; r < m; r++)
        {
            var row = x.Slice(r * k, k);
            float min = 0, max = 0; foreach (var v in row) { min = MathF.Min(min, v); max = MathF.Max(max, v); }
            float s = (max - min) / 255f; int zp = s == 0 ? 0 : (int)MathF.Round(-min / s);
            for (int i = 0; i < k; i++) q[i] = (byte)Math.Clamp(s == 0 ? 0 : (int)MathF.Round(row[i] / s) + zp, 0, 255);
            for (int o = 0; o < n; o++)
            {
                int acc = 0; for (int i = 0; i < k; i++) acc += q[i] * w.Q[o * k + i];
                y[r * n + o] = s * w.S[o] * (acc - zp * w.ColSum[o]) + (bias.IsEmpty ? 0 : bias[o]);
            }
        }
    }
    /// <summary>Path.</summary>
    public static string PathName(LowPrecisionPath path = LowPrecisionPath.Auto) => "scalar";
}

/// <summary>Bf16 weights (stand-in).</summary>
public sealed class Bf16Weights
{
    /// <summary>Out.</summary>
    public int OutFeatures { get; }
    /// <summary>In.</summary>
    public int InFeatures { get; }
    internal readonly float[] W;
    private Bf16Weights(int o, int i, float[] w) { OutFeatures = o; InFeatures = i; W = w; }
    /// <summary>Convert.</summary>
    public static Bf16Weights Convert(ReadOnlySpan<float> weight, int outFeatures, int inFeatures)
    {
        var w = new float[weight.Length];
        for (int i = 0; i < w.Length; i++) w[i] = Round(weight[i]);
        return new Bf16Weights(outFeatures, inFeatures, w);
    }
    internal static float Round(float v)
    {
        uint b = BitConverter.SingleToUInt32Bits(v);
        if (float.IsNaN(v)) return v;
        b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000u;
        return BitConverter.UInt32BitsToSingle(b);
    }
}

/// <summary>Bf16 GEMM (stand-in).</summary>
public static class Bf16Gemm
{
    /// <summary>Linear.</summary>
    public static void Linear(ReadOnlySpan<float> x, int m, Bf16Weights w, ReadOnlySpan<float> bias, Span<float> y, LowPrecisionPath path = LowPrecisionPath.Auto)
    {
        int k = w.InFeatures, n = w.OutFeatures;
        for (int r = 0; r < m; r++)
            for (int o = 0; o < n; o++)
            {
                float acc = 0; for (int i = 0; i < k; i++) acc = MathF.FusedMultiplyAdd(Bf16Weights.Round(x[r * k + i]), w.W[o * k + i], acc);
                y[r * n + o] = acc + (bias.IsEmpty ? 0 : bias[o]);
            }
    }
    /// <summary>Path.</summary>
    public static string PathName(LowPrecisionPath path = LowPrecisionPath.Auto) => "fp32-fallback";
}
