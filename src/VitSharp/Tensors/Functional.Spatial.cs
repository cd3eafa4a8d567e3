using System.Numerics.Tensors;
using VitSharp.Kernels;

namespace VitSharp;

/// <summary>Spatial ops on images in NCHW layout (as torch.nn.functional): unfold/fold, conv2d, batch norm, pooling.</summary>
public static partial class F
{
    /// <summary>
    /// Images per im2col block of a convolution: enough that the GEMM has about this many columns (small feature maps are
    /// batched into one product), and at most <see cref="ConvMaxColumnElements"/> elements of column matrix.
    /// </summary>
    private const int ConvTargetColumns = 2048;
    private const int ConvMaxColumnElements = 1 << 23;

    /// <summary>Tests: when set, depthwise convolutions take the im2col + GEMM path on this thread.</summary>
    [ThreadStatic] internal static bool DepthwiseViaGemm;

    /// <summary>Tests: when positive, overrides the GEMM column target of convolutions on this thread (1 = one image per block).</summary>
    [ThreadStatic] internal static int ConvTargetColumnsOverride;

    private static (int b, int c, int h, int w) Nchw(Tensor x, string op)
    {
        if (x.Rank != 4) throw new ArgumentException($"{op}: expected images [B, C, H, W], got {Tensor.ShapeString(x.ShapeSpan)}");
        return (x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3));
    }

    /// <summary>
    /// torch.nn.functional.unfold: images [B, C, H, W] → [B, C·kh·kw, L], L = OH·OW window positions (row-major), the
    /// unfolded vector ordered (channel, ki, kj) with the channel slowest; zero padding.
    /// </summary>
    public static Tensor Unfold(Tensor x, Window2d window)
    {
        var (b, c, h, w) = Nchw(x, "unfold");
        window.Validate("unfold", h, w);
        int oh = window.OutH(h), ow = window.OutW(w), l = oh * ow, k = c * window.KernelH * window.KernelW;
        var y = Tensor.Empty(b, k, l);
        float[] xd = x.Data, yd = y.Data;
        int img = c * h * w, col = k * l;
        Parallel2.For(b, Parallel2.Chunks(b, col), (_, i0, n) =>
        {
            for (int i = i0; i < i0 + n; i++) UnfoldKernel.Forward(xd.AsSpan(i * img, img), c, h, w, window, yd.AsSpan(i * col, col), l);
        });
        return Autograd.Record(y, "unfold", [x], r =>
        {
            var g = r.Grad!.Data; var dx = x.Grad0();
            Parallel2.For(b, Parallel2.Chunks(b, col), (_, i0, n) =>
            {
                for (int i = i0; i < i0 + n; i++) UnfoldKernel.Backward(g.AsSpan(i * col, col), l, c, h, w, window, dx.AsSpan(i * img, img));
            });
        });
    }

    /// <summary>Unfold with a square kernel, stride and padding.</summary>
    public static Tensor Unfold(Tensor x, int kernel, int stride = 1, int padding = 0) => Unfold(x, Window2d.Square(kernel, stride, padding));

    /// <summary>
    /// torch.nn.functional.fold (the adjoint of <see cref="Unfold(Tensor, Window2d)"/>): [B, C·kh·kw, L] → images
    /// [B, C, outH, outW], overlapping entries summed; L must equal the number of window positions on that image.
    /// </summary>
    public static Tensor Fold(Tensor cols, int outH, int outW, Window2d window)
    {
        if (cols.Rank != 3) throw new ArgumentException($"fold: expected [B, C·kh·kw, L], got {Tensor.ShapeString(cols.ShapeSpan)}");
        if (outH < 1 || outW < 1) throw new ArgumentException($"fold: output size {outH}×{outW} must be positive");
        window.Validate("fold", outH, outW);
        int b = cols.Dim(0), k = cols.Dim(1), l = cols.Dim(2), kk = window.KernelH * window.KernelW;
        int oh = window.OutH(outH), ow = window.OutW(outW);
        if (k % kk != 0) throw new ArgumentException($"fold: {k} rows are not a multiple of the kernel's {window.KernelH}×{window.KernelW} positions");
        if (l != oh * ow) throw new ArgumentException($"fold: {l} columns, but a {outH}×{outW} image has {oh}×{ow} = {oh * ow} window positions ({window})");
        int c = k / kk, img = c * outH * outW, col = k * l;
        var y = Tensor.Empty(b, c, outH, outW);
        float[] xd = cols.Data, yd = y.Data;
        Parallel2.For(b, Parallel2.Chunks(b, col), (_, i0, n) =>
        {
            for (int i = i0; i < i0 + n; i++) FoldKernel.Forward(xd.AsSpan(i * col, col), l, c, outH, outW, window, yd.AsSpan(i * img, img));
        });
        return Autograd.Record(y, "fold", [cols], r =>
        {
            var g = r.Grad!.Data; var dx = cols.Grad0();
            Parallel2.For(b, Parallel2.Chunks(b, col), (_, i0, n) =>
            {
                for (int i = i0; i < i0 + n; i++) FoldKernel.Backward(g.AsSpan(i * img, img), c, outH, outW, window, dx.AsSpan(i * col, col), l);
            });
        });
    }

    /// <summary>Fold with a square kernel, stride and padding.</summary>
    public static Tensor Fold(Tensor cols, (int H, int W) outputSize, int kernel, int stride = 1, int padding = 0) =>
        Fold(cols, outputSize.H, outputSize.W, Window2d.Square(kernel, stride, padding));

    /// <summary>
    /// torch.nn.functional.conv2d (dilation 1): x [B, Cin, H, W], weight [Cout, Cin/groups, kh, kw], bias [Cout] or null →
    /// [B, Cout, OH, OW]. Computed as im2col + GEMM per group (small feature maps of several images share one GEMM); a
    /// 1×1, stride-1, unpadded convolution multiplies the images directly; a depthwise one (groups = Cin, any channel
    /// multiplier) runs a direct kernel. The backward pass recomputes the columns.
    /// </summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, (int H, int W) stride, (int H, int W) padding, int groups = 1)
    {
        var (b, cin, h, w) = Nchw(x, "conv2d");
        if (weight.Rank != 4) throw new ArgumentException($"conv2d: weight must be [Cout, Cin/groups, kh, kw], got {Tensor.ShapeString(weight.ShapeSpan)}");
        int cout = weight.Dim(0);
        if (groups < 1 || cin % groups != 0 || cout % groups != 0)
            throw new ArgumentException($"conv2d: groups {groups} must divide the input channels {cin} and output channels {cout}");
        if (weight.Dim(1) != cin / groups)
            throw new ArgumentException($"conv2d: weight {Tensor.ShapeString(weight.ShapeSpan)} expects {weight.Dim(1) * groups} input channels (groups {groups}), the input has {cin}");
        if (bias is not null && (bias.Rank != 1 || bias.Dim(0) != cout))
            throw new ArgumentException($"conv2d: bias must be [{cout}], got {Tensor.ShapeString(bias.ShapeSpan)}");
        var window = new Window2d(weight.Dim(2), weight.Dim(3), stride.H, stride.W, padding.H, padding.W);
        window.Validate("conv2d", h, w);
        var g = new ConvGeometry(b, cin, h, w, cout, groups, window);
        var y = Tensor.Empty(b, cout, g.OutH, g.OutW);
        Tensor[] inputs = bias is null ? [x, weight] : [x, weight, bias];
        if (groups == cin && groups > 1 && !window.IsPointwise && !DepthwiseViaGemm)
        {
            // Depthwise: a direct kernel (a GEMM per channel would have one row and kh·kw columns of depth).
            int mult = cout / cin, chunks = Parallel2.Chunks(cin, (long)b * mult * g.L * window.KernelH * window.KernelW);
            float[] xd = x.Data, wd = weight.Data, yd = y.Data; float[]? bd = bias?.Data;
            Parallel2.For(cin, chunks, (_, c0, n) => DepthwiseConv2dKernel.Forward(xd, b, cin, h, w, mult, wd, bd, window, c0, n, yd));
            return Autograd.Record(y, "conv2d_depthwise", inputs, r =>
            {
                var dy = r.Grad!.Data;
                float[]? dx = x.RequiresGrad ? x.Grad0() : null, dw = weight.RequiresGrad ? weight.Grad0() : null;
                if (bias is not null && bias.RequiresGrad)
                {
                    var db = bias.GradSpan();
                    for (int i = 0; i < b; i++)
                        for (int co = 0; co < cout; co++) db[co] += TensorPrimitives.Sum(dy.AsSpan((i * cout + co) * g.L, g.L));
                }
                if (dx is null && dw is null) return;
                Parallel2.For(cin, chunks, (_, c0, n) => DepthwiseConv2dKernel.Backward(dy, xd, b, cin, h, w, mult, wd, window, c0, n, dx, dw));
            });
        }
        ConvForward(g, x.Data, weight.Data, bias?.Data, y.Data);
        return Autograd.Record(y, "conv2d", inputs, r => ConvBackward(g, x, weight, bias, r.Grad!.Data));
    }

    /// <summary>Conv2d with equal stride and padding on both axes.</summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0, int groups = 1) =>
        Conv2d(x, weight, bias, (stride, stride), (padding, padding), groups);

    private sealed record ConvGeometry(int B, int Cin, int H, int W, int Cout, int Groups, Window2d Window)
    {
        public int OutH => Window.OutH(H);
        public int OutW => Window.OutW(W);
        public int L => OutH * OutW;
        /// <summary>Rows of the full column matrix (Cin·kh·kw) and of one group's block.</summary>
        public int K => Cin * Window.KernelH * Window.KernelW;
        public int Kg => K / Groups;
        public int CoutG => Cout / Groups;
        public int Image => Cin * H * W;

        /// <summary>Images per block.</summary>
        public int Block
        {
            get
            {
                int target = ConvTargetColumnsOverride > 0 ? ConvTargetColumnsOverride : ConvTargetColumns;
                int nb = Math.Clamp((target + L - 1) / L, 1, B);
                return Math.Max(1, Math.Min(nb, ConvMaxColumnElements / Math.Max(1, K * L)));
            }
        }
    }

    /// <summary>cols [K, nb·L] = im2col of images b0..b0+nb−1 side by side.</summary>
    private static void ConvColumns(ConvGeometry g, float[] x, int b0, int nb, float[] cols)
    {
        int ld = nb * g.L;
        Parallel2.For(nb, Parallel2.Chunks(nb, (long)g.K * g.L), (_, i0, n) =>
        {
            for (int i = i0; i < i0 + n; i++)
                UnfoldKernel.Forward(x.AsSpan((b0 + i) * g.Image, g.Image), g.Cin, g.H, g.W, g.Window, cols.AsSpan(i * g.L), ld);
        });
    }

    private static void ConvForward(ConvGeometry g, float[] x, float[] weight, float[]? bias, float[] y)
    {
        int nbMax = g.Block, l = g.L, outImg = g.Cout * l;
        bool direct = g.Window.IsPointwise;
        float[]? cols = nbMax == 1 && direct ? null : TensorScope.Allocate(g.K * nbMax * l, clear: false);
        float[]? ybig = nbMax == 1 ? null : TensorScope.Allocate(g.Cout * nbMax * l, clear: false);
        for (int b0 = 0; b0 < g.B; b0 += nbMax)
        {
            int nb = Math.Min(nbMax, g.B - b0), ld = nb * l;
            ReadOnlySpan<float> src;
            if (cols is null) src = x.AsSpan(b0 * g.Image, g.Image);
            else { ConvColumns(g, x, b0, nb, cols); src = cols; }
            // Output block: straight into y for one image, else [Cout, nb·L] then scattered.
            Span<float> dst = ybig is null ? y.AsSpan(b0 * outImg, outImg) : ybig;
            float beta = 0f;
            if (ybig is null && bias is not null)
            {
                for (int co = 0; co < g.Cout; co++) dst.Slice(co * l, l).Fill(bias[co]);
                beta = 1f;
            }
            for (int gi = 0; gi < g.Groups; gi++)
                Gemm.Sgemm(false, false, g.CoutG, ld, g.Kg, 1f, weight.AsSpan(gi * g.CoutG * g.Kg), g.Kg,
                    src[(gi * g.Kg * ld)..], ld, beta, dst[(gi * g.CoutG * ld)..], ld);
            if (ybig is null) continue;
            for (int i = 0; i < nb; i++)
                for (int co = 0; co < g.Cout; co++)
                {
                    var s = ybig.AsSpan(co * ld + i * l, l);
                    var d = y.AsSpan((b0 + i) * outImg + co * l, l);
                    if (bias is null) s.CopyTo(d);
                    else TensorPrimitives.Add(s, bias[co], d);
                }
        }
        if (cols is not null) TensorScope.ReturnEarly(cols);
        if (ybig is not null) TensorScope.ReturnEarly(ybig);
    }

    private static void ConvBackward(ConvGeometry g, Tensor x, Tensor weight, Tensor? bias, float[] dy)
    {
        int nbMax = g.Block, l = g.L, outImg = g.Cout * l;
        bool direct = g.Window.IsPointwise;
        bool needX = x.RequiresGrad, needW = weight.RequiresGrad, needB = bias is not null && bias.RequiresGrad;
        float[] xd = x.Data, wd = weight.Data;
        float[]? dx = needX ? x.Grad0() : null;
        float[]? dw = needW ? weight.Grad0() : null;
        if (needB)
        {
            var db = bias!.GradSpan();
            for (int i = 0; i < g.B; i++)
                for (int co = 0; co < g.Cout; co++) db[co] += TensorPrimitives.Sum(dy.AsSpan(i * outImg + co * l, l));
        }
        if (!needX && !needW) return;
        float[]? cols = nbMax == 1 && direct ? null : TensorScope.Allocate(g.K * nbMax * l, clear: false);
        float[]? dybig = nbMax == 1 ? null : TensorScope.Allocate(g.Cout * nbMax * l, clear: false);
        for (int b0 = 0; b0 < g.B; b0 += nbMax)
        {
            int nb = Math.Min(nbMax, g.B - b0), ld = nb * l;
            ReadOnlySpan<float> gy;
            if (dybig is null) gy = dy.AsSpan(b0 * outImg, outImg);
            else
            {
                for (int i = 0; i < nb; i++)
                    for (int co = 0; co < g.Cout; co++)
                        dy.AsSpan((b0 + i) * outImg + co * l, l).CopyTo(dybig.AsSpan(co * ld + i * l, l));
                gy = dybig;
            }
            if (needW)
            {
                ReadOnlySpan<float> src;
                if (cols is null) src = xd.AsSpan(b0 * g.Image, g.Image);
                else { ConvColumns(g, xd, b0, nb, cols); src = cols; }
                // dW_g [CoutG, Kg] += dY_g [CoutG, nb·L] · cols_gᵀ.
                for (int gi = 0; gi < g.Groups; gi++)
                    Gemm.Sgemm(false, true, g.CoutG, g.Kg, ld, 1f, gy[(gi * g.CoutG * ld)..], ld, src[(gi * g.Kg * ld)..], ld,
                        1f, dw!.AsSpan(gi * g.CoutG * g.Kg), g.Kg);
            }
            if (!needX) continue;
            if (cols is null)
            {
                // Pointwise, one image: dx_b [Cin, L] += Wᵀ·dY directly.
                var dxb = dx!.AsSpan(b0 * g.Image, g.Image);
                for (int gi = 0; gi < g.Groups; gi++)
                    Gemm.Sgemm(true, false, g.Kg, ld, g.CoutG, 1f, wd.AsSpan(gi * g.CoutG * g.Kg), g.Kg, gy[(gi * g.CoutG * ld)..], ld,
                        1f, dxb[(gi * g.Kg * ld)..], ld);
                continue;
            }
            // dcols_g [Kg, nb·L] = W_gᵀ · dY_g, then col2im into every image.
            for (int gi = 0; gi < g.Groups; gi++)
                Gemm.Sgemm(true, false, g.Kg, ld, g.CoutG, 1f, wd.AsSpan(gi * g.CoutG * g.Kg), g.Kg, gy[(gi * g.CoutG * ld)..], ld,
                    0f, cols.AsSpan(gi * g.Kg * ld), ld);
            var dcols = cols;
            Parallel2.For(nb, Parallel2.Chunks(nb, (long)g.K * l), (_, i0, n) =>
            {
                for (int i = i0; i < i0 + n; i++)
                    UnfoldKernel.Backward(dcols.AsSpan(i * l), ld, g.Cin, g.H, g.W, g.Window, dx!.AsSpan((b0 + i) * g.Image, g.Image));
            });
        }
        if (cols is not null) TensorScope.ReturnEarly(cols);
        if (dybig is not null) TensorScope.ReturnEarly(dybig);
    }

    /// <summary>
    /// torch.nn.functional.batch_norm over x [B, C, *] (statistics per channel over the batch and every trailing position).
    /// With <paramref name="training"/> (or without running statistics) it normalises with the batch mean and biased variance
    /// and, when running statistics are given, updates them in place: mean ← (1 − momentum)·mean + momentum·batch mean,
    /// var ← (1 − momentum)·var + momentum·unbiased batch variance. Otherwise it uses the running statistics. Weight and
    /// bias [C] are optional (1 and 0).
    /// </summary>
    public static Tensor BatchNorm(Tensor x, Tensor? runningMean, Tensor? runningVar, Tensor? weight, Tensor? bias,
        bool training, float momentum = 0.1f, float eps = 1e-5f)
    {
        if (x.Rank < 2) throw new ArgumentException($"batch_norm: expected [B, C, ...], got {Tensor.ShapeString(x.ShapeSpan)}");
        int b = x.Dim(0), c = x.Dim(1), s = c == 0 || b == 0 ? 0 : x.Size / (b * c);
        foreach (var (t, name) in new[] { (runningMean, "running_mean"), (runningVar, "running_var"), (weight, "weight"), (bias, "bias") })
            if (t is not null && t.Size != c) throw new ArgumentException($"batch_norm: {name} has {t.Size} elements, the input has {c} channels");
        if ((runningMean is null) != (runningVar is null)) throw new ArgumentException("batch_norm: give both running_mean and running_var or neither");
        bool batchStats = training || runningMean is null;
        long n = (long)b * s;
        if (batchStats && n <= 1) throw new ArgumentException($"batch_norm: expected more than 1 value per channel when training, got input {Tensor.ShapeString(x.ShapeSpan)}");
        var mean = TensorScope.Allocate(c, clear: false);
        var rstd = TensorScope.Allocate(c, clear: false);
        float[] xd = x.Data;
        int chunks = Parallel2.Chunks(c, n);
        if (batchStats)
        {
            var variance = rstd;
            Parallel2.For(c, chunks, (_, c0, k) => BatchNormKernel.Statistics(xd, b, c, s, c0, k, mean, variance));
            if (training && runningMean is not null)
            {
                var rm = runningMean.Data; var rv = runningVar!.Data;
                float unbias = (float)((double)n / (n - 1));
                for (int i = 0; i < c; i++)
                {
                    rm[i] = (1 - momentum) * rm[i] + momentum * mean[i];
                    rv[i] = (1 - momentum) * rv[i] + momentum * variance[i] * unbias;
                }
            }
            for (int i = 0; i < c; i++) rstd[i] = 1f / MathF.Sqrt(variance[i] + eps);
        }
        else
        {
            runningMean!.Data.AsSpan(0, c).CopyTo(mean);
            var rv = runningVar!.Data;
            for (int i = 0; i < c; i++) rstd[i] = 1f / MathF.Sqrt(rv[i] + eps);
        }
        var y = Tensor.Empty(x.Shape);
        float[] yd = y.Data;
        float[]? wd = weight?.Data, bd = bias?.Data;
        Parallel2.For(c, chunks, (_, c0, k) => BatchNormKernel.Forward(xd, b, c, s, c0, k, mean, rstd, wd, bd, yd));
        var inputs = new List<Tensor> { x };
        if (weight is not null) inputs.Add(weight);
        if (bias is not null) inputs.Add(bias);
        return Autograd.Record(y, "batch_norm", inputs.ToArray(), r =>
        {
            var g = r.Grad!.Data;
            float[]? dx = x.RequiresGrad ? x.Grad0() : null;
            float[]? dw = weight is not null && weight.RequiresGrad ? weight.Grad0() : null;
            float[]? db = bias is not null && bias.RequiresGrad ? bias.Grad0() : null;
            Parallel2.For(c, chunks, (_, c0, k) => BatchNormKernel.Backward(g, xd, b, c, s, c0, k, mean, rstd, wd, batchStats, dx, dw, db));
        });
    }

    /// <summary>
    /// torch.nn.functional.max_pool2d (dilation 1, ceil_mode off): [B, C, H, W] → [B, C, OH, OW]. Padding counts as −∞ and
    /// may be at most half the kernel, as in PyTorch. The gradient goes to the first maximum of each window.
    /// </summary>
    public static Tensor MaxPool2d(Tensor x, Window2d window)
    {
        var (b, c, h, w) = Nchw(x, "max_pool2d");
        window.Validate("max_pool2d", h, w);
        if (window.PadH > window.KernelH / 2 || window.PadW > window.KernelW / 2)
            throw new ArgumentException($"max_pool2d: padding {window.PadH}×{window.PadW} must be at most half the kernel {window.KernelH}×{window.KernelW}");
        int oh = window.OutH(h), ow = window.OutW(w), planes = b * c, inP = h * w, outP = oh * ow;
        var y = Tensor.Empty(b, c, oh, ow);
        float[] xd = x.Data, yd = y.Data;
        int chunks = Parallel2.Chunks(planes, (long)outP * window.KernelH * window.KernelW);
        Parallel2.For(planes, chunks, (_, p0, n) =>
            MaxPoolKernel.Forward(xd.AsSpan(p0 * inP, n * inP), n, h, w, window, yd.AsSpan(p0 * outP, n * outP)));
        return Autograd.Record(y, "max_pool2d", [x], r =>
        {
            var g = r.Grad!.Data; var dx = x.Grad0();
            Parallel2.For(planes, chunks, (_, p0, n) =>
                MaxPoolKernel.Backward(g.AsSpan(p0 * outP, n * outP), xd.AsSpan(p0 * inP, n * inP), n, h, w, window, dx.AsSpan(p0 * inP, n * inP)));
        });
    }

    /// <summary>Max pooling with a square kernel; the stride defaults to the kernel size, as in PyTorch.</summary>
    public static Tensor MaxPool2d(Tensor x, int kernel, int? stride = null, int padding = 0) =>
        MaxPool2d(x, Window2d.Square(kernel, stride ?? kernel, padding));

    /// <summary>
    /// torch.nn.functional.adaptive_avg_pool2d: [B, C, H, W] → [B, C, outH, outW], output cell (i, j) averaging input rows
    /// [⌊i·H/outH⌋, ⌈(i+1)·H/outH⌉) and the columns likewise.
    /// </summary>
    public static Tensor AdaptiveAvgPool2d(Tensor x, int outH, int outW)
    {
        var (b, c, h, w) = Nchw(x, "adaptive_avg_pool2d");
        if (outH < 1 || outW < 1) throw new ArgumentException($"adaptive_avg_pool2d: output size {outH}×{outW} must be positive");
        if (h < 1 || w < 1) throw new ArgumentException($"adaptive_avg_pool2d: input {Tensor.ShapeString(x.ShapeSpan)} has an empty plane");
        int planes = b * c, inP = h * w, outP = outH * outW;
        var y = Tensor.Empty(b, c, outH, outW);
        float[] xd = x.Data, yd = y.Data;
        int chunks = Parallel2.Chunks(planes, Math.Max(inP, outP));
        Parallel2.For(planes, chunks, (_, p0, n) =>
            AdaptiveAvgPoolKernel.Forward(xd.AsSpan(p0 * inP, n * inP), n, h, w, outH, outW, yd.AsSpan(p0 * outP, n * outP)));
        return Autograd.Record(y, "adaptive_avg_pool2d", [x], r =>
        {
            var g = r.Grad!.Data; var dx = x.Grad0();
            Parallel2.For(planes, chunks, (_, p0, n) =>
                AdaptiveAvgPoolKernel.Backward(g.AsSpan(p0 * outP, n * outP), n, h, w, outH, outW, dx.AsSpan(p0 * inP, n * inP)));
        });
    }
}
