using System.Numerics.Tensors;
using VitSharp.Inference;
using VitSharp.Kernels;

namespace VitSharp;

/// <summary>Functional ops (as torch.nn.functional): fused, with hand-written backward passes.</summary>
public static partial class F
{
    private struct LinearState { public Tensor X, Weight; public Tensor? Bias; public int Rows, In, Out; }

    /// <summary>y = x·Wᵀ + b over the last dimension. x [..., in], weight [out, in], bias [out] or null.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias)
    {
        int inF = weight.Dim(1), outF = weight.Dim(0);
        if (x.Rank == 0 || x.Dim(-1) != inF)
            throw new ArgumentException($"linear: input {Tensor.ShapeString(x.ShapeSpan)} does not end in {inF} features (weight {Tensor.ShapeString(weight.ShapeSpan)})");
        int rows = 1;
        for (int i = 0; i < x.Rank - 1; i++) rows *= x.Dim(i);
        Span<int> shape = stackalloc int[x.Rank];
        x.ShapeSpan.CopyTo(shape);
        shape[^1] = outF;
        var y = Tensor.Empty(shape);
        if (weight.Packed is { } packed && OpTrace.Current is null)
        {
            if (Autograd.Needs(x, weight))
                throw new InvalidOperationException($"linear: this layer runs {packed.Precision.Name()} inference (UsePrecision) and has no gradient; " +
                    "run it under Autograd.NoGrad(), or call UsePrecision(InferencePrecision.Float32) before training");
            packed.Linear(x.Data, rows, bias is null ? default : bias.Data, y.Data);
            OpProfiler.Forward("linear");
            return y;
        }
        if (bias is not null && bias.Size != outF)
            throw new ArgumentException($"linear: bias {Tensor.ShapeString(bias.ShapeSpan)} does not match {outF} output features");
        if (bias is not null && Gemm.LinearBiasInEpilogue(rows, outF, inF))
            unsafe
            {
                // The managed kernel adds the bias to each finished block while it is in cache (one pass over y, not three).
                fixed (float* px = x.Data)
                fixed (float* pw = weight.Data)
                fixed (float* pb = bias.Data)
                fixed (float* py = y.Data)
                    Gemm.LinearFused(rows, outF, inF, px, pw, new GemmEpilogue(pb, false), py);
            }
        else
        {
            float beta = 0f;
            if (bias is not null)
            {
                for (int r = 0; r < rows; r++) bias.Data.CopyTo(y.Data, r * outF);
                beta = 1f;
            }
            Gemm.Sgemm(false, true, rows, outF, inF, 1f, x.Data, inF, weight.Data, inF, beta, y.Data, outF);
        }
        var st = new LinearState { X = x, Weight = weight, Bias = bias, Rows = rows, In = inF, Out = outF };
        OpTrace.Current?.Op("linear", y, [x, weight, bias], OpAttributes.None);
        return Autograd.Record(y, "linear", [x, weight, bias], st, static (in LinearState s, Tensor r) => LinearBackward(s, r.Grad!.Data));
    }

    /// <summary>The Linear's gradients from dy [rows, out]: dx += dy·W, dW += dyᵀ·x, db += Σ_rows dy.</summary>
    private static void LinearBackward(in LinearState s, float[] g)
    {
        if (s.X.RequiresGrad)
        {
            var dx = s.X.GradForWrite(out bool fresh);
            Gemm.Sgemm(false, false, s.Rows, s.In, s.Out, 1f, g, s.Out, s.Weight.Data, s.In, fresh ? 0f : 1f, dx, s.In);
        }
        if (s.Weight.RequiresGrad)
        {
            var dw = s.Weight.GradForWrite(out bool fresh);
            Gemm.Sgemm(true, false, s.Out, s.In, s.Rows, 1f, g, s.Out, s.X.Data, s.In, fresh ? 0f : 1f, dw, s.In);
        }
        if (s.Bias is { RequiresGrad: true } bias)
            ColumnSumKernel.Accumulate(g, s.Rows, s.Out, bias.GradSpan());
    }

    /// <summary>Whether the modules run a Linear followed by GELU as <see cref="LinearGelu"/>, and a block's output
    /// projection plus its residual as <see cref="LinearResidual"/>, when they may (benchmarks switch it off to time the
    /// unfused ops in the same process).</summary>
    internal static bool FuseEpilogues { get; set; } = true;

    /// <summary>
    /// <c>gelu(x·Wᵀ + b)</c> as one op, for inference: the bias and GELU are applied to each block of the product while it
    /// is still in cache (<see cref="GemmEpilogue"/>: in the managed fp32 GEMM, and in the int8 and bf16 kernels of a layer
    /// converted by <c>UsePrecision</c>) instead of in two more passes over the output. When gradients are recorded, or an
    /// ONNX export traces the model, it is <see cref="Linear"/> followed by <see cref="Tensor.Gelu"/> (the same values to
    /// float rounding). x [..., in], weight [out, in], bias [out] or null → [..., out].
    /// </summary>
    public static Tensor LinearGelu(Tensor x, Tensor weight, Tensor? bias)
    {
        if (OpTrace.Current is not null || Autograd.Needs([x, weight, bias])) return Linear(x, weight, bias).Gelu();
        return LinearFused(x, weight, bias, gelu: true, residual: null, "linear_gelu");
    }

    /// <summary>
    /// <c>residual + (x·Wᵀ + b)</c> as one op: a pre-norm block's output projection and the residual add after it, the add
    /// applied to each block of the product while it is still in cache (<see cref="GemmEpilogue"/>), as
    /// <see cref="LinearGelu"/>. With gradients it records one op (residual.grad += dy, then the Linear's backward) where
    /// the product runs on the managed kernel, else <see cref="Linear"/> followed by an add; under an ONNX export's trace
    /// always the two ops (the same values to float rounding). x [..., in], weight [out, in], bias [out] or null, residual
    /// of the output's shape [..., out] → [..., out].
    /// </summary>
    public static Tensor LinearResidual(Tensor x, Tensor weight, Tensor? bias, Tensor residual)
    {
        if (OpTrace.Current is not null) return Linear(x, weight, bias) + residual;
        if (Autograd.Needs([x, weight, bias, residual])) return LinearResidualTraining(x, weight, bias, residual);
        return LinearFused(x, weight, bias, gelu: false, residual, "linear_residual");
    }

    private struct LinearResidualState { public LinearState Linear; public Tensor Residual; }

    // With gradients: where the product runs on the managed kernel (a data-parallel replica, small products), the bias and
    // the residual are added in its epilogue — acc + bias, then + residual, each rounded once as in Linear followed by the
    // add — and one op records the backward of both: residual.grad += dy, then the Linear's gradients from the same dy (no
    // copy of dy for the Linear's output). Elsewhere Linear then add.
    private static Tensor LinearResidualTraining(Tensor x, Tensor weight, Tensor? bias, Tensor residual)
    {
        if (weight.Packed is not null) return Linear(x, weight, bias) + residual;   // its error
        Span<int> shape = stackalloc int[Math.Max(1, x.Rank)];
        int rows = FusedShape(x, weight, bias, residual, shape);   // as at inference: no broadcasting of the residual on either path
        if (!Gemm.LinearBiasInEpilogue(rows, weight.Dim(0), weight.Dim(1))) return Linear(x, weight, bias) + residual;
        var y = FusedProduct(x, weight, bias, gelu: false, residual, rows, shape);
        var st = new LinearResidualState
        {
            Linear = new LinearState { X = x, Weight = weight, Bias = bias, Rows = rows, In = weight.Dim(1), Out = weight.Dim(0) },
            Residual = residual,
        };
        return Autograd.Record(y, "linear_residual", [x, weight, bias, residual], st, static (in LinearResidualState s, Tensor r) =>
        {
            var g = r.Grad!.Data;
            if (s.Residual.RequiresGrad) s.Residual.AccumulateGrad(g.AsSpan(0, s.Linear.Rows * s.Linear.Out));
            LinearBackward(s.Linear, g);
        });
    }

    private static Tensor LinearFused(Tensor x, Tensor weight, Tensor? bias, bool gelu, Tensor? residual, string name)
    {
        Span<int> shape = stackalloc int[Math.Max(1, x.Rank)];
        int rows = FusedShape(x, weight, bias, residual, shape);
        var y = FusedProduct(x, weight, bias, gelu, residual, rows, shape);
        OpProfiler.Forward(name);
        return y;
    }

    // Checks the fused ops' operands, writes the output's shape (x's with the last dimension out) and returns x's rows.
    private static int FusedShape(Tensor x, Tensor weight, Tensor? bias, Tensor? residual, Span<int> shape)
    {
        int inF = weight.Dim(1), outF = weight.Dim(0);
        if (x.Rank == 0 || x.Dim(-1) != inF)
            throw new ArgumentException($"linear: input {Tensor.ShapeString(x.ShapeSpan)} does not end in {inF} features (weight {Tensor.ShapeString(weight.ShapeSpan)})");
        if (bias is not null && bias.Size != outF)
            throw new ArgumentException($"linear: bias {Tensor.ShapeString(bias.ShapeSpan)} does not match {outF} output features");
        int rows = 1;
        for (int i = 0; i < x.Rank - 1; i++) rows *= x.Dim(i);
        x.ShapeSpan.CopyTo(shape);
        shape[^1] = outF;
        if (residual is not null && !residual.ShapeSpan.SequenceEqual(shape))
            throw new ArgumentException($"linear: residual {Tensor.ShapeString(residual.ShapeSpan)} does not match the output {Tensor.ShapeString(shape)}");
        return rows;
    }

    // act(x·Wᵀ + b) + residual with the epilogue in the product (the packed low-precision kernels or the fp32 GEMM).
    private static Tensor FusedProduct(Tensor x, Tensor weight, Tensor? bias, bool gelu, Tensor? residual, int rows, ReadOnlySpan<int> shape)
    {
        int inF = weight.Dim(1), outF = weight.Dim(0);
        var y = Tensor.Empty(shape);
        if (weight.Packed is { } packed)
            packed.Linear(x.Data.AsSpan(0, rows * inF), rows, bias is null ? default : bias.Data.AsSpan(0, outF), y.Data.AsSpan(0, rows * outF),
                gelu, residual is null ? default : residual.Data.AsSpan(0, rows * outF));
        else
            unsafe
            {
                fixed (float* px = x.Data)
                fixed (float* pw = weight.Data)
                fixed (float* pb = bias?.Data)
                fixed (float* pr = residual?.Data)
                fixed (float* py = y.Data)
                    Gemm.LinearFused(rows, outF, inF, px, pw, new GemmEpilogue(bias is null ? null : pb, gelu, residual is null ? null : pr), py);
            }
        return y;
    }

    private struct LayerNormState { public Tensor X, Weight, Bias; public float[] Mean, Rstd; public int Rows, C, Chunks; }

    /// <summary>LayerNorm rows split into chunks: forward when <see cref="G"/> is null, else backward with per-chunk weight/bias partials in <see cref="Partials"/>.</summary>
    private struct LayerNormChunks : Parallel2.IChunkBody
    {
        public float[] X, W, B, Mean, Rstd, Y; public float Eps; public int C;
        public float[]? G, Dx, Partials; public bool NeedW, NeedB;

        public readonly void Run(int k, int r0, int n)
        {
            int c = C;
            if (G is null)
            {
                LayerNormKernel.Forward(X.AsSpan(r0 * c, n * c), W, B, n, c, Eps, Mean.AsSpan(r0, n), Rstd.AsSpan(r0, n), Y.AsSpan(r0 * c, n * c));
                return;
            }
            var part = Partials.AsSpan(k * 2 * c, 2 * c);
            LayerNormKernel.Backward(G.AsSpan(r0 * c, n * c), X.AsSpan(r0 * c, n * c), W, Mean.AsSpan(r0, n), Rstd.AsSpan(r0, n), n, c,
                Dx is null ? default : Dx.AsSpan(r0 * c, n * c), NeedW ? part[..c] : default, NeedB ? part.Slice(c, c) : default);
        }
    }

    /// <summary>LayerNorm over the last dimension with affine weight and bias [C].</summary>
    public static Tensor LayerNorm(Tensor x, Tensor weight, Tensor bias, float eps = 1e-5f)
    {
        int c = weight.Size;
        if (x.Rank == 0 || x.Dim(-1) != c)
            throw new ArgumentException($"layer_norm: input {Tensor.ShapeString(x.ShapeSpan)} does not end in {c} features");
        int rows = c == 0 ? 0 : x.Size / c;
        var y = Tensor.Empty(x.ShapeSpan);
        var mean = TensorScope.Allocate(rows, clear: false);
        var rstd = TensorScope.Allocate(rows, clear: false);
        int chunks = Parallel2.Chunks(rows, c);
        Parallel2.For(rows, chunks, new LayerNormChunks { X = x.Data, W = weight.Data, B = bias.Data, Mean = mean, Rstd = rstd, Y = y.Data, Eps = eps, C = c });
        OpTrace.Current?.Op("layer_norm", y, [x, weight, bias], new OpAttributes { Scalar = eps });
        var st = new LayerNormState { X = x, Weight = weight, Bias = bias, Mean = mean, Rstd = rstd, Rows = rows, C = c, Chunks = chunks };
        return Autograd.Record(y, "layer_norm", [x, weight, bias], st, static (in LayerNormState s, Tensor r) =>
        {
            int c = s.C, chunks = s.Chunks;
            bool needW = s.Weight.RequiresGrad, needB = s.Bias.RequiresGrad;
            // Each chunk accumulates its weight and bias gradients into its own partial; partials are summed in chunk order.
            var scratch = TensorScope.Allocate(chunks * 2 * c, clear: true);
            Parallel2.For(s.Rows, chunks, new LayerNormChunks
            {
                X = s.X.Data, W = s.Weight.Data, Mean = s.Mean, Rstd = s.Rstd, C = c, G = r.Grad!.Data,
                Dx = s.X.RequiresGrad ? s.X.Grad0() : null, Partials = scratch, NeedW = needW, NeedB = needB,
            });
            for (int k = 0; k < chunks; k++)
            {
                var part = scratch.AsSpan(k * 2 * c, 2 * c);
                if (needW) TensorPrimitives.Add(s.Weight.GradSpan(), part[..c], s.Weight.GradSpan());
                if (needB) TensorPrimitives.Add(s.Bias.GradSpan(), part.Slice(c, c), s.Bias.GradSpan());
            }
        });
    }

    /// <summary>State of the row-wise ops (softmax, losses, dropout): input, kept buffers, rows × cols and a scalar.</summary>
    private struct RowsState { public Tensor X; public float[]? Buf0, Buf1; public int[]? Labels; public int Rows, Cols; public float Value; }

    /// <summary>Softmax over a dimension.</summary>
    public static Tensor Softmax(Tensor x, int dim = -1)
    {
        int d = x.NormDim(dim);
        if (d != x.Rank - 1) return Softmax(x.Transpose(d, -1), -1).Transpose(d, -1);
        int cols = x.Dim(-1), rows = cols == 0 ? 0 : x.Size / cols;
        var y = Tensor.Empty(x.ShapeSpan);
        Kernels.SoftmaxKernel.Forward(x.Data, rows, cols, y.Data);
        OpTrace.Current?.Op("softmax", y, [x], OpAttributes.None);
        return Autograd.Record(y, "softmax", [x], new RowsState { X = x, Rows = rows, Cols = cols }, static (in RowsState s, Tensor r) =>
            Kernels.SoftmaxKernel.Backward(r.Grad!.Data, r.Data, s.Rows, s.Cols, s.X.GradSpan()));
    }

    /// <summary>Log-softmax over a dimension.</summary>
    public static Tensor LogSoftmax(Tensor x, int dim = -1)
    {
        int d = x.NormDim(dim);
        if (d != x.Rank - 1) return LogSoftmax(x.Transpose(d, -1), -1).Transpose(d, -1);
        int cols = x.Dim(-1), rows = cols == 0 ? 0 : x.Size / cols;
        var y = Tensor.Empty(x.ShapeSpan);
        Kernels.SoftmaxKernel.LogForward(x.Data, rows, cols, y.Data);
        OpTrace.Current?.Op("log_softmax", y, [x], OpAttributes.None);
        return Autograd.Record(y, "log_softmax", [x], new RowsState { X = x, Rows = rows, Cols = cols }, static (in RowsState s, Tensor r) =>
            Kernels.SoftmaxKernel.LogBackward(r.Grad!.Data, r.Data, s.Rows, s.Cols, s.X.GradSpan()));
    }

    /// <summary>Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1−p). Identity when not training or p = 0.</summary>
    public static Tensor Dropout(Tensor x, float p, bool training, Random rng)
    {
        if (p < 0 || p > 1) throw new ArgumentOutOfRangeException(nameof(p), $"dropout probability {p} is outside [0, 1]");
        if (!training || p == 0) return x;
        var mask = TensorScope.Allocate(x.Size, clear: false);
        float keep = p >= 1 ? 0f : 1f / (1 - p);
        for (int i = 0; i < mask.Length; i++) mask[i] = rng.NextSingle() >= p ? keep : 0f;
        var y = Tensor.Empty(x.ShapeSpan);
        TensorPrimitives.Multiply(x.Data, mask, y.Data);
        OpTrace.Current?.Op("dropout", y, [x], new OpAttributes { Scalar = p });
        return Autograd.Record(y, "dropout", [x], new RowsState { X = x, Buf0 = mask }, static (in RowsState s, Tensor r) =>
        {
            var dx = s.X.GradSpan();
            TensorPrimitives.FusedMultiplyAdd(r.Grad!.Data, s.Buf0, dx, dx);
        });
    }

    /// <summary>Mean cross-entropy of logits [R, K] against class indices [R], with optional label smoothing.</summary>
    public static Tensor CrossEntropy(Tensor logits, ReadOnlySpan<int> labels, float labelSmoothing = 0f)
    {
        if (logits.Rank != 2) throw new ArgumentException($"cross_entropy expects logits [batch, classes], got {Tensor.ShapeString(logits.ShapeSpan)}");
        int rows = logits.Dim(0), k = logits.Dim(1);
        if (labels.Length != rows) throw new ArgumentException($"cross_entropy: {labels.Length} labels for {rows} rows of logits");
        if (labelSmoothing < 0 || labelSmoothing > 1) throw new ArgumentOutOfRangeException(nameof(labelSmoothing));
        var logProbs = TensorScope.Allocate(logits.Size, clear: false);
        // The labels are kept for the backward pass in a rented array (longer than rows), returned when that pass has run.
        var lab = System.Buffers.ArrayPool<int>.Shared.Rent(rows);
        labels.CopyTo(lab);
        float loss = Kernels.CrossEntropyKernel.Forward(logits.Data, lab.AsSpan(0, rows), rows, k, labelSmoothing, logProbs);
        var y = Tensor.Empty(); y.Data[0] = loss;
        if (!Autograd.Needs(logits)) System.Buffers.ArrayPool<int>.Shared.Return(lab);
        OpTrace.Current?.Op("cross_entropy", y, [logits], OpAttributes.None);
        var st = new RowsState { X = logits, Buf0 = logProbs, Labels = lab, Rows = rows, Cols = k, Value = labelSmoothing };
        return Autograd.Record(y, "cross_entropy", [logits], st, static (in RowsState s, Tensor r) =>
        {
            Kernels.CrossEntropyKernel.Backward(r.Grad!.Data[0], s.Buf0, s.Labels.AsSpan(0, s.Rows), s.Rows, s.Cols, s.Value, s.X.GradSpan());
            System.Buffers.ArrayPool<int>.Shared.Return(s.Labels!);
        });
    }

    /// <summary>
    /// Soft-target distillation loss, as vit-pytorch's <c>DistillWrapper</c> computes it:
    /// <c>kl_div(log_softmax(logits / T), softmax(targetLogits / T), reduction='batchmean') · T²</c> — the KL divergence
    /// KL(p ‖ q) of the student's tempered distribution q from the target's p, summed over classes, averaged over the
    /// R rows and scaled by T². logits and targetLogits [R, K]. The target is a constant (as <c>.detach()</c>): no
    /// gradient flows into <paramref name="targetLogits"/>; ∂loss/∂logits = T/R · (q − p).
    /// </summary>
    /// <exception cref="ArgumentException">The shapes differ or are not [R, K], or <paramref name="temperature"/> ≤ 0.</exception>
    public static Tensor SoftTargetKLDiv(Tensor logits, Tensor targetLogits, float temperature = 1f)
    {
        if (logits.Rank != 2 || !logits.SameShape(targetLogits))
            throw new ArgumentException($"soft-target KL expects logits and target logits of the same shape [batch, classes], got {Tensor.ShapeString(logits.ShapeSpan)} and {Tensor.ShapeString(targetLogits.ShapeSpan)}");
        if (!(temperature > 0) || float.IsInfinity(temperature)) throw new ArgumentException($"temperature must be a positive number, got {temperature}");
        int rows = logits.Dim(0), k = logits.Dim(1);
        var logQ = TensorScope.Allocate(logits.Size, clear: false);
        var logP = TensorScope.Allocate(logits.Size, clear: false);
        float loss = Kernels.SoftTargetKLKernel.Forward(logits.Data, targetLogits.Data, rows, k, temperature, logQ, logP);
        var y = Tensor.Empty(); y.Data[0] = loss;
        OpTrace.Current?.Op("soft_target_kl", y, [logits, targetLogits], OpAttributes.None);
        var st = new RowsState { X = logits, Buf0 = logQ, Buf1 = logP, Rows = rows, Cols = k, Value = temperature };
        return Autograd.Record(y, "soft_target_kl", [logits], st, static (in RowsState s, Tensor r) =>
            Kernels.SoftTargetKLKernel.Backward(r.Grad!.Data[0], s.Buf0, s.Buf1, s.Rows, s.Cols, s.Value, s.X.GradSpan()));
    }

    /// <summary>Attention's backward state: inputs, kept probabilities, sizes (in the packed form Groups = B and M = H).</summary>
    private struct AttentionState { public Tensor Q, K, V; public float[] P; public int Groups, N, M, D; public float Scale; }

    /// <summary>
    /// Multi-head self-attention core straight from a fused projection: qkv [B, N, 3·H·D] (q, k, v blocks, heads
    /// contiguous inside each, as vit-pytorch's <c>to_qkv</c>) → [B, N, H·D] ("b n (h d)"), computing
    /// softmax(scale·q·kᵀ)·v per head without permute copies. Scale defaults to D^-½; <paramref name="probs"/>
    /// receives the attention probabilities [B, H, N, N].
    /// </summary>
    public static Tensor MultiHeadAttention(Tensor qkv, int heads, float? scale = null, Action<Tensor>? probs = null)
    {
        if (qkv.Rank != 3 || heads <= 0 || qkv.Dim(2) % (3 * heads) != 0)
            throw new ArgumentException($"attention: expected qkv [B, N, 3·H·D] with H = {heads}, got {Tensor.ShapeString(qkv.ShapeSpan)}");
        int b = qkv.Dim(0), n = qkv.Dim(1), d = qkv.Dim(2) / (3 * heads);
        float s = scale ?? 1f / MathF.Sqrt(d);
        var o = Tensor.Empty(b, n, heads * d);
        if (probs is null && !Autograd.Needs(qkv))
        {
            // Inference: each group's probabilities stay in its scratch rows ([B, H, N, N] is never written).
            Kernels.AttentionKernel.ForwardPacked(qkv.Data, b, n, heads, d, s, null, o.Data);
            OpTrace.Current?.Op("mha", o, [qkv], new OpAttributes { Ints = [heads], Scalar = s });
            OpProfiler.Forward("mha");
            return o;
        }
        var p = TensorScope.Allocate(checked(b * heads * n * n), clear: false);
        Kernels.AttentionKernel.ForwardPacked(qkv.Data, b, n, heads, d, s, p, o.Data);
        OpTrace.Current?.Op("mha", o, [qkv], new OpAttributes { Ints = [heads], Scalar = s });
        probs?.Invoke(Tensor.Scoped(p, [b, heads, n, n]));
        var st = new AttentionState { Q = qkv, P = p, Groups = b, N = n, M = heads, D = d, Scale = s };
        return Autograd.Record(o, "mha", [qkv], st, static (in AttentionState s, Tensor r) =>
        {
            // The first gradient of qkv is written, not added to a cleared buffer (the same values).
            var dqkv = s.Q.GradForWrite(out bool fresh);
            Kernels.AttentionKernel.BackwardPacked(r.Grad!.Data, s.Q.Data, s.P, s.Groups, s.N, s.M, s.D, s.Scale, dqkv, accumulate: !fresh);
        });
    }

    /// <summary>
    /// Fused scaled dot-product attention: softmax(scale·Q·Kᵀ)·V per (batch, head).
    /// q [..., N, D], k and v [..., M, D] with equal leading dimensions; result [..., N, D].
    /// Scale defaults to D^-½. When <paramref name="probs"/> is given, it receives the attention
    /// probabilities [..., N, M].
    /// </summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, float? scale = null, Action<Tensor>? probs = null)
    {
        if (q.Rank < 2 || k.Rank != q.Rank || v.Rank != q.Rank)
            throw new ArgumentException($"attention: q, k, v must have equal rank ≥ 2, got {Tensor.ShapeString(q.ShapeSpan)}, {Tensor.ShapeString(k.ShapeSpan)}, {Tensor.ShapeString(v.ShapeSpan)}");
        int n = q.Dim(-2), d = q.Dim(-1), m = k.Dim(-2);
        if (k.Dim(-1) != d || !k.SameShape(v) || !q.ShapeSpan[..^2].SequenceEqual(k.ShapeSpan[..^2]))
            throw new ArgumentException($"attention: shapes q {Tensor.ShapeString(q.ShapeSpan)}, k {Tensor.ShapeString(k.ShapeSpan)}, v {Tensor.ShapeString(v.ShapeSpan)} do not fit");
        int groups = 1;
        for (int i = 0; i < q.Rank - 2; i++) groups *= q.Dim(i);
        float s = scale ?? 1f / MathF.Sqrt(d);
        var o = Tensor.Empty(q.ShapeSpan);
        var p = TensorScope.Allocate(checked(groups * n * m), clear: false);
        Kernels.AttentionKernel.Forward(q.Data, k.Data, v.Data, groups, n, m, d, s, p, o.Data);
        OpTrace.Current?.Op("sdpa", o, [q, k, v], new OpAttributes { Scalar = s });
        if (probs is not null)
        {
            var pShape = q.Shape; pShape[^1] = m;
            probs(Tensor.Scoped(p, pShape));
        }
        var st = new AttentionState { Q = q, K = k, V = v, P = p, Groups = groups, N = n, M = m, D = d, Scale = s };
        return Autograd.Record(o, "sdpa", [q, k, v], st, static (in AttentionState s, Tensor r) =>
        {
            var (q, k, v) = (s.Q, s.K!, s.V!);
            // The kernel accumulates into all three; inputs that need no gradient get a scratch buffer.
            var dq = q.RequiresGrad ? q.Grad0() : TensorScope.Allocate(q.Size, clear: true);
            var dk = k.RequiresGrad ? k.Grad0() : TensorScope.Allocate(k.Size, clear: true);
            var dv = v.RequiresGrad ? v.Grad0() : TensorScope.Allocate(v.Size, clear: true);
            Kernels.AttentionKernel.Backward(r.Grad!.Data, q.Data, k.Data, v.Data, s.P, s.Groups, s.N, s.M, s.D, s.Scale, dq, dk, dv);
        });
    }
}
