using VitSharp.Kernels;

namespace VitSharp;

/// <summary>Spatial ops on images in NCHW layout (as torch.nn.functional): unfold/fold, conv2d, batch norm, pooling — the
/// autograd wrappers (checks, scratch, parallel chunks, recording); the arithmetic is in VitSharp.Kernels: UnfoldKernel,
/// FoldKernel, Conv2dKernel, DepthwiseConv2dKernel, BatchNormKernel, MaxPoolKernel, AdaptiveAvgPoolKernel.</summary>
public static partial class F
{
    /// <summary>Tests: when set, depthwise convolutions take the im2col + GEMM path on this thread.</summary>
    [ThreadStatic] internal static bool DepthwiseViaGemm;

    /// <summary>Tests: when positive, overrides the GEMM column target of convolutions on this thread (1 = one image per block).</summary>
    [ThreadStatic] internal static int ConvTargetColumnsOverride;

    private static (int b, int c, int h, int w) Nchw(Tensor x, string op)
    {
        if (x.Rank != 4) throw new ArgumentException($"{op}: expected images [B, C, H, W], got {Tensor.ShapeString(x.ShapeSpan)}");
        return (x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3));
    }

    /// <summary>Per-image im2col work over a chunk of images: unfold or fold, forward or backward (a struct: no allocation).</summary>
    private struct WindowImages : Parallel2.IChunkBody
    {
        public float[] Src, Dst; public Window2d Window; public int C, H, W, L, Img, Col; public bool Fold, Backward;

        public readonly void Run(int chunk, int i0, int n)
        {
            for (int i = i0; i < i0 + n; i++)
            {
                if (!Fold && !Backward) UnfoldKernel.Forward(Src.AsSpan(i * Img, Img), C, H, W, Window, Dst.AsSpan(i * Col, Col), L);
                else if (!Fold) UnfoldKernel.Backward(Src.AsSpan(i * Col, Col), L, C, H, W, Window, Dst.AsSpan(i * Img, Img));
                else if (!Backward) FoldKernel.Forward(Src.AsSpan(i * Col, Col), L, C, H, W, Window, Dst.AsSpan(i * Img, Img));
                else FoldKernel.Backward(Src.AsSpan(i * Img, Img), C, H, W, Window, Dst.AsSpan(i * Col, Col), L);
            }
        }
    }

    private struct WindowState { public Tensor X; public WindowImages Body; public int B; }

    // Backward of unfold and fold: the same per-image loop with the gradients as source and destination.
    private static readonly BackwardFn<WindowState> WindowImagesBackward = static (in WindowState s, Tensor r) =>
    {
        var body = s.Body;
        (body.Src, body.Dst, body.Backward) = (r.Grad!.Data, s.X.Grad0(), true);
        Parallel2.For(s.B, Parallel2.Chunks(s.B, s.Body.Col), body);
    };

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
        var body = new WindowImages { Src = x.Data, Dst = y.Data, Window = window, C = c, H = h, W = w, L = l, Img = c * h * w, Col = k * l };
        Parallel2.For(b, Parallel2.Chunks(b, body.Col), body);
        OpTrace.Current?.Op("unfold", y, [x], new OpAttributes { Window = window });
        return Autograd.Record(y, "unfold", [x], new WindowState { X = x, Body = body, B = b }, WindowImagesBackward);
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
        int c = k / kk;
        var y = Tensor.Empty(b, c, outH, outW);
        var body = new WindowImages { Src = cols.Data, Dst = y.Data, Window = window, C = c, H = outH, W = outW, L = l, Img = c * outH * outW, Col = k * l, Fold = true };
        Parallel2.For(b, Parallel2.Chunks(b, body.Col), body);
        OpTrace.Current?.Op("fold", y, [cols], new OpAttributes { Window = window, Ints = [outH, outW] });
        return Autograd.Record(y, "fold", [cols], new WindowState { X = cols, Body = body, B = b }, WindowImagesBackward);
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
        var g = new Conv2dGeometry(b, cin, h, w, cout, groups, window);
        var y = Tensor.Empty(b, cout, g.OutH, g.OutW);
        if (groups == cin && groups > 1 && !window.IsPointwise && !DepthwiseViaGemm)
        {
            // Depthwise: a direct kernel (a GEMM per channel would have one row and kh·kw columns of depth).
            int mult = cout / cin, chunks = Parallel2.Chunks(cin, (long)b * mult * g.L * window.KernelH * window.KernelW);
            Parallel2.For(cin, chunks, new Depthwise { G = g, X = x.Data, Weight = weight.Data, Bias = bias?.Data, Out = y.Data });
            OpTrace.Current?.Op("conv2d_depthwise", y, [x, weight, bias], new OpAttributes { Window = window, Ints = [groups] });
            return Autograd.Record(y, "conv2d_depthwise", [x, weight, bias], new ConvState { X = x, Weight = weight, Bias = bias, G = g, Chunks = chunks },
                static (in ConvState s, Tensor r) =>
                {
                    var (x, weight, bias, g) = (s.X, s.Weight, s.Bias, s.G);
                    var dy = r.Grad!.Data;
                    float[]? dx = x.RequiresGrad ? x.Grad0() : null, dw = weight.RequiresGrad ? weight.Grad0() : null;
                    if (bias is not null && bias.RequiresGrad) Conv2dKernel.BiasBackward(dy, g.B, g.Cout, g.L, bias.GradSpan());
                    if (dx is null && dw is null) return;
                    Parallel2.For(g.Cin, s.Chunks, new Depthwise { G = g, X = x.Data, Weight = weight.Data, Out = dy, Dx = dx, Dw = dw, Backward = true });
                });
        }
        int nb = ConvImagesPerBlock(g);
        float[]? cols = Scratch(g.ColumnsLength(nb)), yBlock = Scratch(g.BlockLength(nb));
        Conv2dKernel.Forward(g, nb, x.Data, weight.Data, bias is null ? default : bias.Data.AsSpan(0, cout), cols, yBlock, y.Data);
        Release(cols); Release(yBlock);
        OpTrace.Current?.Op("conv2d", y, [x, weight, bias], new OpAttributes { Window = window, Ints = [groups] });
        return Autograd.Record(y, "conv2d", [x, weight, bias], new ConvState { X = x, Weight = weight, Bias = bias, G = g },
            static (in ConvState s, Tensor r) =>
            {
                var (x, weight, bias, g) = (s.X, s.Weight, s.Bias, s.G);
                var dy = r.Grad!.Data;
                if (bias is not null && bias.RequiresGrad) Conv2dKernel.BiasBackward(dy, g.B, g.Cout, g.L, bias.GradSpan());
                if (!x.RequiresGrad && !weight.RequiresGrad) return;
                int nb = ConvImagesPerBlock(g);
                float[]? cols = Scratch(g.ColumnsLength(nb)), dyBlock = Scratch(g.BlockLength(nb));
                Conv2dKernel.Backward(g, nb, dy, x.Data, weight.Data, cols, dyBlock,
                    x.RequiresGrad ? x.Grad0() : default, weight.RequiresGrad ? weight.Grad0() : default);
                Release(cols); Release(dyBlock);
            });
    }

    private static int ConvImagesPerBlock(in Conv2dGeometry g) =>
        g.ImagesPerBlock(ConvTargetColumnsOverride > 0 ? ConvTargetColumnsOverride : Conv2dKernel.TargetColumns);

    private static float[]? Scratch(int length) => length == 0 ? null : TensorScope.Allocate(length, clear: false);

    private static void Release(float[]? scratch)
    {
        if (scratch is not null) TensorScope.ReturnEarly(scratch);
    }

    private struct ConvState { public Tensor X, Weight; public Tensor? Bias; public Conv2dGeometry G; public int Chunks; }

    /// <summary>The depthwise kernel over a chunk of channels; Out is y (forward) or dy (backward).</summary>
    private struct Depthwise : Parallel2.IChunkBody
    {
        public Conv2dGeometry G; public float[] X, Weight, Out; public float[]? Bias, Dx, Dw; public bool Backward;

        public readonly void Run(int chunk, int c0, int n)
        {
            int mult = G.Cout / G.Cin;
            if (!Backward) DepthwiseConv2dKernel.Forward(X, G.B, G.Cin, G.H, G.W, mult, Weight, Bias, G.Window, c0, n, Out);
            else DepthwiseConv2dKernel.Backward(Out, X, G.B, G.Cin, G.H, G.W, mult, Weight, G.Window, c0, n, Dx, Dw);
        }
    }

    /// <summary>Conv2d with equal stride and padding on both axes.</summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0, int groups = 1) =>
        Conv2d(x, weight, bias, (stride, stride), (padding, padding), groups);

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
        CheckChannels(runningMean, "running_mean", c); CheckChannels(runningVar, "running_var", c);
        CheckChannels(weight, "weight", c); CheckChannels(bias, "bias", c);
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
            Parallel2.For(c, chunks, new BatchNormChannels { Mode = 0, X = xd, B = b, C = c, S = s, Mean = mean, Rstd = variance });
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
        var y = Tensor.Empty(x.ShapeSpan);
        var body = new BatchNormChannels { Mode = 1, X = xd, B = b, C = c, S = s, Mean = mean, Rstd = rstd, Weight = weight?.Data, Bias = bias?.Data, Y = y.Data };
        Parallel2.For(c, chunks, body);
        OpTrace.Current?.Op("batch_norm", y, [x, runningMean, runningVar, weight, bias], new OpAttributes { Scalar = eps, Flag = batchStats });
        var st = new BatchNormState { X = x, Weight = weight, Bias = bias, Body = body, Chunks = chunks, BatchStats = batchStats };
        return Autograd.Record(y, "batch_norm", [x, weight, bias], st, static (in BatchNormState s, Tensor r) =>
        {
            var body = s.Body;
            body.Mode = 2;
            body.Y = r.Grad!.Data;
            body.BatchStats = s.BatchStats;
            body.Dx = s.X.RequiresGrad ? s.X.Grad0() : null;
            body.Dw = s.Weight is { RequiresGrad: true } ? s.Weight.Grad0() : null;
            body.Db = s.Bias is { RequiresGrad: true } ? s.Bias.Grad0() : null;
            Parallel2.For(s.Body.C, s.Chunks, body);
        });
    }

    private static void CheckChannels(Tensor? t, string name, int c)
    {
        if (t is not null && t.Size != c) throw new ArgumentException($"batch_norm: {name} has {t.Size} elements, the input has {c} channels");
    }

    /// <summary>Batch norm over a chunk of channels: statistics (mode 0), forward (1) or backward (2, Y holds dy).</summary>
    private struct BatchNormChannels : Parallel2.IChunkBody
    {
        public int Mode, B, C, S; public bool BatchStats;
        public float[] X, Mean, Rstd; public float[]? Weight, Bias, Y, Dx, Dw, Db;

        public readonly void Run(int chunk, int c0, int k)
        {
            if (Mode == 0) BatchNormKernel.Statistics(X, B, C, S, c0, k, Mean, Rstd);
            else if (Mode == 1) BatchNormKernel.Forward(X, B, C, S, c0, k, Mean, Rstd, Weight, Bias, Y);
            else BatchNormKernel.Backward(Y, X, B, C, S, c0, k, Mean, Rstd, Weight, BatchStats, Dx, Dw, Db);
        }
    }

    private struct BatchNormState { public Tensor X; public Tensor? Weight, Bias; public BatchNormChannels Body; public int Chunks; public bool BatchStats; }

    /// <summary>Pooling over a chunk of planes: max (with Window) or adaptive average, forward or backward.</summary>
    private struct PoolPlanes : Parallel2.IChunkBody
    {
        public float[] X, Y; public float[]? Dy, Dx; public Window2d Window; public int H, W, OutH, OutW; public bool Max, Backward;

        public readonly void Run(int chunk, int p0, int n)
        {
            int inP = H * W, outP = OutH * OutW;
            var x = X.AsSpan(p0 * inP, n * inP);
            if (Max && !Backward) MaxPoolKernel.Forward(x, n, H, W, Window, Y.AsSpan(p0 * outP, n * outP));
            else if (Max) MaxPoolKernel.Backward(Dy.AsSpan(p0 * outP, n * outP), x, n, H, W, Window, Dx.AsSpan(p0 * inP, n * inP));
            else if (!Backward) AdaptiveAvgPoolKernel.Forward(x, n, H, W, OutH, OutW, Y.AsSpan(p0 * outP, n * outP));
            else AdaptiveAvgPoolKernel.Backward(Dy.AsSpan(p0 * outP, n * outP), n, H, W, OutH, OutW, Dx.AsSpan(p0 * inP, n * inP));
        }
    }

    private struct PoolState { public Tensor X; public PoolPlanes Body; public int Planes, Chunks; }

    private static readonly BackwardFn<PoolState> PoolBackward = static (in PoolState s, Tensor r) =>
    {
        var body = s.Body;
        (body.Dy, body.Dx, body.Backward) = (r.Grad!.Data, s.X.Grad0(), true);
        Parallel2.For(s.Planes, s.Chunks, body);
    };

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
        int oh = window.OutH(h), ow = window.OutW(w), planes = b * c;
        var y = Tensor.Empty(b, c, oh, ow);
        int chunks = Parallel2.Chunks(planes, (long)oh * ow * window.KernelH * window.KernelW);
        var body = new PoolPlanes { X = x.Data, Y = y.Data, Window = window, H = h, W = w, OutH = oh, OutW = ow, Max = true };
        Parallel2.For(planes, chunks, body);
        OpTrace.Current?.Op("max_pool2d", y, [x], new OpAttributes { Window = window });
        return Autograd.Record(y, "max_pool2d", [x], new PoolState { X = x, Body = body, Planes = planes, Chunks = chunks }, PoolBackward);
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
        int planes = b * c;
        var y = Tensor.Empty(b, c, outH, outW);
        int chunks = Parallel2.Chunks(planes, Math.Max(h * w, outH * outW));
        var body = new PoolPlanes { X = x.Data, Y = y.Data, H = h, W = w, OutH = outH, OutW = outW };
        Parallel2.For(planes, chunks, body);
        OpTrace.Current?.Op("adaptive_avg_pool2d", y, [x], new OpAttributes { Ints = [outH, outW] });
        return Autograd.Record(y, "adaptive_avg_pool2d", [x], new PoolState { X = x, Body = body, Planes = planes, Chunks = chunks }, PoolBackward);
    }
}
