using VitSharp.Kernels;
using static VitSharp.Tests.Kernels.SpatialReference;

namespace VitSharp.Tests.Kernels;

/// <summary>DepthwiseConv2dKernel against the direct-convolution twin (forward) and naive loops (backward).</summary>
public class DepthwiseConv2dKernelTests
{
    public static TheoryData<int, int, int, int, int, int, int, int> Cases() => new()
    {
        // B, C, H, W, multiplier, kernel, stride, padding
        { 2, 3, 7, 7, 1, 3, 1, 1 },
        { 1, 4, 9, 8, 2, 3, 2, 1 },
        { 2, 2, 5, 6, 3, 2, 1, 0 },
        { 1, 3, 11, 5, 1, 5, 3, 2 },
        { 2, 2, 4, 4, 1, 1, 2, 0 },
    };

    [Theory, MemberData(nameof(Cases))]
    public void ForwardAndBackwardMatchReference(int b, int c, int h, int w, int mult, int k, int s, int p)
    {
        var win = Window2d.Square(k, s, p);
        int oh = OutSize(h, k, s, p), ow = OutSize(w, k, s, p), cout = c * mult;
        var x = TestData.Uniform(b + c + h, -1, 1, b, c, h, w).Data;
        var wt = TestData.Uniform(k + mult, -1, 1, cout, 1, k, k).Data;
        var bias = TestData.Uniform(3, -1, 1, cout).Data;
        var y = Enumerable.Repeat(float.NaN, b * cout * oh * ow).ToArray();
        int half = c / 2;
        DepthwiseConv2dKernel.Forward(x, b, c, h, w, mult, wt, bias, win, 0, half, y);
        DepthwiseConv2dKernel.Forward(x, b, c, h, w, mult, wt, bias, win, half, c - half, y);
        TestData.AssertClose(Conv2d(x, wt, bias, b, c, h, w, cout, k, k, s, s, p, p, c), y, 1e-5, 1e-5, "depthwise forward");

        var dy = TestData.Uniform(4, -1, 1, y.Length).Data;
        var eDx = Enumerable.Repeat(0.5, x.Length).ToArray(); var eDw = Enumerable.Repeat(-0.25, wt.Length).ToArray();
        for (int n = 0; n < b; n++) for (int co = 0; co < cout; co++) for (int i = 0; i < oh; i++) for (int j = 0; j < ow; j++)
            for (int ki = 0; ki < k; ki++) for (int kj = 0; kj < k; kj++)
            {
                int yy = i * s - p + ki, xx = j * s - p + kj;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                double g = dy[((n * cout + co) * oh + i) * ow + j];
                int xi = ((n * c + co / mult) * h + yy) * w + xx, wi = (co * k + ki) * k + kj;
                eDx[xi] += g * wt[wi];
                eDw[wi] += g * x[xi];
            }
        var dx = Enumerable.Repeat(0.5f, x.Length).ToArray(); var dw = Enumerable.Repeat(-0.25f, wt.Length).ToArray();
        DepthwiseConv2dKernel.Backward(dy, x, b, c, h, w, mult, wt, win, 0, half, dx, dw);
        DepthwiseConv2dKernel.Backward(dy, x, b, c, h, w, mult, wt, win, half, c - half, dx, dw);
        TestData.AssertClose(eDx, dx, 1e-5, 1e-5, "depthwise dx");
        TestData.AssertClose(eDw, dw, 1e-4, 1e-5, "depthwise dweight");
        // Either gradient alone.
        var dxOnly = new float[x.Length];
        DepthwiseConv2dKernel.Backward(dy, x, b, c, h, w, mult, wt, win, 0, c, dxOnly, default);
        TestData.AssertClose(eDx.Select(v => v - 0.5).ToArray(), dxOnly, 1e-5, 1e-5, "depthwise dx alone");
    }
}
