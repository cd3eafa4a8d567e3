using System.Numerics.Tensors;

namespace VitSharp.Kernels;

/// <summary>
/// The shape of a grouped 2-D convolution (dilation 1): x [B, Cin, H, W], weight [Cout, Cin/groups, kh, kw],
/// y [B, Cout, OH, OW].
/// </summary>
/// <param name="B">Images.</param>
/// <param name="Cin">Input channels.</param>
/// <param name="H">Input height.</param>
/// <param name="W">Input width.</param>
/// <param name="Cout">Output channels.</param>
/// <param name="Groups">Groups (dividing Cin and Cout).</param>
/// <param name="Window">Kernel size, stride and padding.</param>
public readonly record struct Conv2dGeometry(int B, int Cin, int H, int W, int Cout, int Groups, Window2d Window)
{
    /// <summary>Output height.</summary>
    public int OutH => Window.OutH(H);
    /// <summary>Output width.</summary>
    public int OutW => Window.OutW(W);
    /// <summary>Output positions per image (OH·OW).</summary>
    public int L => OutH * OutW;
    /// <summary>Rows of the full column matrix (Cin·kh·kw).</summary>
    public int K => Cin * Window.KernelH * Window.KernelW;
    /// <summary>Rows of one group's block of the column matrix.</summary>
    public int Kg => K / Groups;
    /// <summary>Output channels per group.</summary>
    public int CoutG => Cout / Groups;
    /// <summary>Elements of one input image (Cin·H·W).</summary>
    public int Image => Cin * H * W;

    /// <summary>
    /// Images per im2col block: enough that the GEMM has about <paramref name="targetColumns"/> columns (small feature
    /// maps are batched into one product), and at most <see cref="Conv2dKernel.MaxColumnElements"/> elements of column matrix.
    /// </summary>
    public int ImagesPerBlock(int targetColumns = Conv2dKernel.TargetColumns)
    {
        int nb = Math.Clamp((targetColumns + L - 1) / L, 1, B);
        return Math.Max(1, Math.Min(nb, Conv2dKernel.MaxColumnElements / Math.Max(1, K * L)));
    }

    /// <summary>Elements of the column scratch for blocks of <paramref name="imagesPerBlock"/> images (0: a pointwise
    /// convolution one image at a time multiplies the image directly).</summary>
    public int ColumnsLength(int imagesPerBlock) => imagesPerBlock == 1 && Window.IsPointwise ? 0 : K * imagesPerBlock * L;

    /// <summary>Elements of the output-block scratch [Cout, nb·L] (0 for one image per block: written in place).</summary>
    public int BlockLength(int imagesPerBlock) => imagesPerBlock == 1 ? 0 : Cout * imagesPerBlock * L;
}

/// <summary>
/// 2-D convolution as im2col + GEMM per group over blocks of images (torch.nn.functional.conv2d, dilation 1): the
/// columns of a block's images sit side by side, [K, nb·L], so one GEMM per group covers the block; a pointwise
/// convolution one image at a time multiplies the image directly. Scratch comes from the caller (lengths from
/// <see cref="Conv2dGeometry.ColumnsLength"/> and <see cref="Conv2dGeometry.BlockLength"/>); the backward pass
/// recomputes the columns. The GEMMs and the im2col of a block run on the kernel threads.
/// </summary>
public static unsafe class Conv2dKernel
{
    /// <summary>Default GEMM column target of a block (see <see cref="Conv2dGeometry.ImagesPerBlock"/>).</summary>
    public const int TargetColumns = 2048;

    /// <summary>Largest column matrix of a block, in elements.</summary>
    public const int MaxColumnElements = 1 << 23;

    /// <summary>y = conv(x, weight) + bias (bias may be empty); y is overwritten.</summary>
    public static void Forward(in Conv2dGeometry g, int imagesPerBlock, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, Span<float> cols, Span<float> yBlock, Span<float> y)
    {
        int nbMax = imagesPerBlock, l = g.L, outImg = g.Cout * l;
        bool direct = nbMax == 1 && g.Window.IsPointwise, inPlace = nbMax == 1;
        for (int b0 = 0; b0 < g.B; b0 += nbMax)
        {
            int nb = Math.Min(nbMax, g.B - b0), ld = nb * l;
            ReadOnlySpan<float> src;
            if (direct) src = x.Slice(b0 * g.Image, g.Image);
            else { Columns(g, x, b0, nb, cols); src = cols; }
            // Output block: straight into y for one image, else [Cout, nb·L] then scattered.
            Span<float> dst = inPlace ? y.Slice(b0 * outImg, outImg) : yBlock;
            float beta = 0f;
            if (inPlace && !bias.IsEmpty)
            {
                for (int co = 0; co < g.Cout; co++) dst.Slice(co * l, l).Fill(bias[co]);
                beta = 1f;
            }
            for (int gi = 0; gi < g.Groups; gi++)
                Gemm.Sgemm(false, false, g.CoutG, ld, g.Kg, 1f, weight[(gi * g.CoutG * g.Kg)..], g.Kg,
                    src[(gi * g.Kg * ld)..], ld, beta, dst[(gi * g.CoutG * ld)..], ld);
            if (inPlace) continue;
            for (int i = 0; i < nb; i++)
                for (int co = 0; co < g.Cout; co++)
                {
                    var s = yBlock.Slice(co * ld + i * l, l);
                    var d = y.Slice((b0 + i) * outImg + co * l, l);
                    if (bias.IsEmpty) s.CopyTo(d);
                    else TensorPrimitives.Add(s, bias[co], d);
                }
        }
    }

    /// <summary>
    /// Accumulates the gradients of x (dx) and of the weight (dw) from dy; an empty dx or dw is not computed.
    /// The bias gradient is <see cref="BiasBackward"/>.
    /// </summary>
    public static void Backward(in Conv2dGeometry g, int imagesPerBlock, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> weight, Span<float> cols, Span<float> dyBlock, Span<float> dx, Span<float> dw)
    {
        bool needX = !dx.IsEmpty, needW = !dw.IsEmpty;
        if (!needX && !needW) return;
        int nbMax = imagesPerBlock, l = g.L, outImg = g.Cout * l;
        bool direct = nbMax == 1 && g.Window.IsPointwise, inPlace = nbMax == 1;
        for (int b0 = 0; b0 < g.B; b0 += nbMax)
        {
            int nb = Math.Min(nbMax, g.B - b0), ld = nb * l;
            ReadOnlySpan<float> gy;
            if (inPlace) gy = dy.Slice(b0 * outImg, outImg);
            else
            {
                for (int i = 0; i < nb; i++)
                    for (int co = 0; co < g.Cout; co++)
                        dy.Slice((b0 + i) * outImg + co * l, l).CopyTo(dyBlock.Slice(co * ld + i * l, l));
                gy = dyBlock;
            }
            if (needW)
            {
                ReadOnlySpan<float> src;
                if (direct) src = x.Slice(b0 * g.Image, g.Image);
                else { Columns(g, x, b0, nb, cols); src = cols; }
                // dW_g [CoutG, Kg] += dY_g [CoutG, nb·L] · cols_gᵀ.
                for (int gi = 0; gi < g.Groups; gi++)
                    Gemm.Sgemm(false, true, g.CoutG, g.Kg, ld, 1f, gy[(gi * g.CoutG * ld)..], ld, src[(gi * g.Kg * ld)..], ld,
                        1f, dw[(gi * g.CoutG * g.Kg)..], g.Kg);
            }
            if (!needX) continue;
            if (direct)
            {
                // Pointwise, one image: dx_b [Cin, L] += Wᵀ·dY directly.
                var dxb = dx.Slice(b0 * g.Image, g.Image);
                for (int gi = 0; gi < g.Groups; gi++)
                    Gemm.Sgemm(true, false, g.Kg, ld, g.CoutG, 1f, weight[(gi * g.CoutG * g.Kg)..], g.Kg, gy[(gi * g.CoutG * ld)..], ld,
                        1f, dxb[(gi * g.Kg * ld)..], ld);
                continue;
            }
            // dcols_g [Kg, nb·L] = W_gᵀ · dY_g, then col2im into every image.
            for (int gi = 0; gi < g.Groups; gi++)
                Gemm.Sgemm(true, false, g.Kg, ld, g.CoutG, 1f, weight[(gi * g.CoutG * g.Kg)..], g.Kg, gy[(gi * g.CoutG * ld)..], ld,
                    0f, cols[(gi * g.Kg * ld)..], ld);
            ColumnsBackward(g, cols, b0, nb, dx);
        }
    }

    /// <summary>db[co] += Σ over images and positions of dy [B, Cout, L] (shared with the depthwise path).</summary>
    public static void BiasBackward(ReadOnlySpan<float> dy, int batch, int cout, int l, Span<float> db)
    {
        for (int i = 0; i < batch; i++)
            for (int co = 0; co < cout; co++) db[co] += TensorPrimitives.Sum(dy.Slice((i * cout + co) * l, l));
    }

    /// <summary>cols [K, nb·L] = im2col of images b0..b0+nb−1 side by side.</summary>
    private static void Columns(in Conv2dGeometry g, ReadOnlySpan<float> x, int b0, int nb, Span<float> cols)
    {
        fixed (float* px = x, pc = cols)
            Parallel2.For(nb, Parallel2.Chunks(nb, (long)g.K * g.L), new Block
            {
                G = g, Images = px, ImagesLength = x.Length, Cols = pc, ColsLength = cols.Length, B0 = b0, Ld = nb * g.L,
            });
    }

    /// <summary>col2im of cols [K, nb·L], accumulated into images b0..b0+nb−1 of dx.</summary>
    private static void ColumnsBackward(in Conv2dGeometry g, Span<float> cols, int b0, int nb, Span<float> dx)
    {
        fixed (float* pd = dx, pc = cols)
            Parallel2.For(nb, Parallel2.Chunks(nb, (long)g.K * g.L), new Block
            {
                G = g, Images = pd, ImagesLength = dx.Length, Cols = pc, ColsLength = cols.Length, B0 = b0, Ld = nb * g.L, Backward = true,
            });
    }

    /// <summary>im2col (forward) or col2im accumulated into the images (backward) over a chunk of a block's images;
    /// the spans are pinned by the caller for the duration of the loop.</summary>
    private struct Block : Parallel2.IChunkBody
    {
        public Conv2dGeometry G; public float* Images, Cols; public int ImagesLength, ColsLength, B0, Ld; public bool Backward;

        public readonly void Run(int chunk, int i0, int n)
        {
            var images = new Span<float>(Images, ImagesLength);
            var cols = new Span<float>(Cols, ColsLength);
            for (int i = i0; i < i0 + n; i++)
            {
                var image = images.Slice((B0 + i) * G.Image, G.Image);
                if (!Backward) UnfoldKernel.Forward(image, G.Cin, G.H, G.W, G.Window, cols[(i * G.L)..], Ld);
                else UnfoldKernel.Backward(cols[(i * G.L)..], Ld, G.Cin, G.H, G.W, G.Window, image);
            }
        }
    }
}
