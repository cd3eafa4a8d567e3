using System.Numerics.Tensors;

namespace VitSharp;

public sealed partial class Tensor
{
    private enum BinOp { Add, Sub, Mul, Div }

    private struct BinaryForward : Broadcast.IRowBody
    {
        public float[] A, B, Out; public BinOp Op;
        public void Row(int o, int a, int b, int n, int sa, int sb)
        {
            var dst = Out.AsSpan(o, n);
            if (sa == 1 && sb == 1)
            {
                var x = A.AsSpan(a, n); var y = B.AsSpan(b, n);
                switch (Op)
                {
                    case BinOp.Add: TensorPrimitives.Add(x, y, dst); break;
                    case BinOp.Sub: TensorPrimitives.Subtract(x, y, dst); break;
                    case BinOp.Mul: TensorPrimitives.Multiply(x, y, dst); break;
                    default: TensorPrimitives.Divide(x, y, dst); break;
                }
                return;
            }
            for (int i = 0; i < n; i++)
            {
                float x = A[a + i * sa], y = B[b + i * sb];
                dst[i] = Op switch { BinOp.Add => x + y, BinOp.Sub => x - y, BinOp.Mul => x * y, _ => x / y };
            }
        }
    }

    /// <summary>Gradient of a broadcast binary op for one input: dX[offX] += g · factor (factor from the other operands).</summary>
    private struct BinaryBackward : Broadcast.IRowBody
    {
        // Dst is walked with the first stride set, B with the second, G and A contiguously (result layout).
        // Mode 0: dst += sign·g; 1: dst += g·B; 2: dst += g/B; 3: dst += −g·A/B (A = the quotient a/b).
        public float[] G, Dst; public float[]? A, B; public int Mode; public float Sign;
        public void Row(int o, int x, int y, int n, int sx, int sy)
        {
            for (int i = 0; i < n; i++)
            {
                float g = G[o + i];
                float v = Mode switch
                {
                    0 => Sign * g,
                    1 => g * B![y + i * sy],
                    2 => g / B![y + i * sy],
                    _ => -g * A![o + i] / B![y + i * sy],
                };
                Dst[x + i * sx] += v;
            }
        }
    }

    private struct BinaryState { public Tensor A, B; public Broadcast Bc; public BinOp Op; public bool Same; }

    private static Tensor Binary(Tensor a, Tensor b, BinOp op, string name)
    {
        var bc = new Broadcast(a._shape, b._shape);
        var result = Empty(bc.OutShape.Values);
        bool same = a.SameShape(b);
        if (same)
        {
            switch (op)
            {
                case BinOp.Add: TensorPrimitives.Add(a.Data, b.Data, result.Data); break;
                case BinOp.Sub: TensorPrimitives.Subtract(a.Data, b.Data, result.Data); break;
                case BinOp.Mul: TensorPrimitives.Multiply(a.Data, b.Data, result.Data); break;
                default: TensorPrimitives.Divide(a.Data, b.Data, result.Data); break;
            }
        }
        else
        {
            var body = new BinaryForward { A = a.Data, B = b.Data, Out = result.Data, Op = op };
            Broadcast.ForEachRow(bc.OutShape.Values, bc.StridesA.Values, bc.StridesB.Values, ref body);
        }
        OpTrace.Current?.Op(name, result, [a, b], OpAttributes.None);
        return Autograd.Record(result, name, [a, b], new BinaryState { A = a, B = b, Bc = bc, Op = op, Same = same }, BinaryBackwardFn);
    }

    private static readonly BackwardFn<BinaryState> BinaryBackwardFn = static (in BinaryState s, Tensor r) =>
    {
        var (a, b, op) = (s.A, s.B, s.Op);
        ref readonly var bc = ref s.Bc;
        var g = r.Grad!.Data;
        if (s.Same && op is BinOp.Add or BinOp.Sub)
        {
            if (a.RequiresGrad) a.AccumulateGrad(g);
            if (b.RequiresGrad)
            {
                if (op == BinOp.Add) b.AccumulateGrad(g);
                else TensorPrimitives.Subtract(b.GradSpan(), g, b.GradSpan());
            }
            return;
        }
        if (a.RequiresGrad)
        {
            var body = op switch
            {
                BinOp.Add or BinOp.Sub => new BinaryBackward { G = g, Dst = a.Grad0(), Mode = 0, Sign = 1 },
                BinOp.Mul => new BinaryBackward { G = g, Dst = a.Grad0(), Mode = 1, B = b.Data },
                _ => new BinaryBackward { G = g, Dst = a.Grad0(), Mode = 2, B = b.Data },
            };
            Broadcast.ForEachRow(bc.OutShape.Values, bc.StridesA.Values, bc.StridesB.Values, ref body);
        }
        if (b.RequiresGrad)
        {
            var body = op switch
            {
                BinOp.Add => new BinaryBackward { G = g, Dst = b.Grad0(), Mode = 0, Sign = 1 },
                BinOp.Sub => new BinaryBackward { G = g, Dst = b.Grad0(), Mode = 0, Sign = -1 },
                BinOp.Mul => new BinaryBackward { G = g, Dst = b.Grad0(), Mode = 1, B = a.Data },
                // d(a/b)/db = −a/b² = −(a/b)/b: use the result r = a/b as "A" (same layout as g).
                _ => new BinaryBackward { G = g, Dst = b.Grad0(), Mode = 3, A = r.Data, B = b.Data },
            };
            if (op == BinOp.Div)
            {
                // Mode 3 reads A at the output offset and B at b's offset, so walk with b as the destination.
                Broadcast.ForEachRow(bc.OutShape.Values, bc.StridesB.Values, bc.StridesB.Values, ref body);
            }
            else
                Broadcast.ForEachRow(bc.OutShape.Values, bc.StridesB.Values, bc.StridesA.Values, ref body);
        }
    };

    internal float[] Grad0() { GradSpan(); return Grad!.Data; }

    /// <summary>Elementwise sum with broadcasting.</summary>
    public static Tensor operator +(Tensor a, Tensor b) => Binary(a, b, BinOp.Add, "add");
    /// <summary>Elementwise difference with broadcasting.</summary>
    public static Tensor operator -(Tensor a, Tensor b) => Binary(a, b, BinOp.Sub, "sub");
    /// <summary>Elementwise product with broadcasting.</summary>
    public static Tensor operator *(Tensor a, Tensor b) => Binary(a, b, BinOp.Mul, "mul");
    /// <summary>Elementwise quotient with broadcasting.</summary>
    public static Tensor operator /(Tensor a, Tensor b) => Binary(a, b, BinOp.Div, "div");

    private struct UnaryState { public Tensor X; public float Scale; public int Chunks; }

    /// <summary>y = a·x + b for scalars a, b.</summary>
    public Tensor Affine(float scale, float shift)
    {
        var result = Empty(_shape);
        TensorPrimitives.Multiply(Data, scale, result.Data);
        if (shift != 0) TensorPrimitives.Add(result.Data, shift, result.Data);
        OpTrace.Current?.Op("affine", result, [this], new OpAttributes { Scalar = scale, Scalar2 = shift });
        return Autograd.Record(result, "affine", [this], new UnaryState { X = this, Scale = scale }, static (in UnaryState s, Tensor r) =>
        {
            var dx = s.X.GradSpan();
            TensorPrimitives.MultiplyAdd(r.Grad!.Data, s.Scale, dx, dx);
        });
    }

    /// <summary>Adds a scalar.</summary>
    public static Tensor operator +(Tensor a, float s) => a.Affine(1f, s);
    /// <summary>Adds a scalar.</summary>
    public static Tensor operator +(float s, Tensor a) => a.Affine(1f, s);
    /// <summary>Subtracts a scalar.</summary>
    public static Tensor operator -(Tensor a, float s) => a.Affine(1f, -s);
    /// <summary>Scalar minus tensor.</summary>
    public static Tensor operator -(float s, Tensor a) => a.Affine(-1f, s);
    /// <summary>Multiplies by a scalar.</summary>
    public static Tensor operator *(Tensor a, float s) => a.Affine(s, 0f);
    /// <summary>Multiplies by a scalar.</summary>
    public static Tensor operator *(float s, Tensor a) => a.Affine(s, 0f);
    /// <summary>Divides by a scalar.</summary>
    public static Tensor operator /(Tensor a, float s) => a.Affine(1f / s, 0f);
    /// <summary>Negation.</summary>
    public static Tensor operator -(Tensor a) => a.Affine(-1f, 0f);

    /// <summary>Rectified linear unit, max(x, 0).</summary>
    public Tensor Relu()
    {
        var result = Empty(_shape);
        TensorPrimitives.Max(Data, 0f, result.Data);
        OpTrace.Current?.Op("relu", result, [this], OpAttributes.None);
        return Autograd.Record(result, "relu", [this], new UnaryState { X = this }, static (in UnaryState s, Tensor r) =>
        {
            var dx = s.X.GradSpan(); var g = r.Grad!.Data; var xd = s.X.Data;
            for (int i = 0; i < dx.Length; i++) if (xd[i] > 0) dx[i] += g[i];
        });
    }

    /// <summary>Hyperbolic tangent; backward dx += dy·(1 − y²).</summary>
    public Tensor Tanh()
    {
        var result = Empty(_shape);
        TensorPrimitives.Tanh(Data, result.Data);
        OpTrace.Current?.Op("tanh", result, [this], OpAttributes.None);
        return Autograd.Record(result, "tanh", [this], new UnaryState { X = this }, static (in UnaryState s, Tensor r) =>
        {
            var dx = s.X.GradSpan(); var g = r.Grad!.Data; var y = r.Data;
            for (int i = 0; i < dx.Length; i++) dx[i] += g[i] * (1f - y[i] * y[i]);
        });
    }

    /// <summary>Exponential; backward dx += dy·y.</summary>
    public Tensor Exp()
    {
        var result = Empty(_shape);
        TensorPrimitives.Exp(Data, result.Data);
        OpTrace.Current?.Op("exp", result, [this], OpAttributes.None);
        return Autograd.Record(result, "exp", [this], new UnaryState { X = this }, static (in UnaryState s, Tensor r) =>
        {
            var dx = s.X.GradSpan(); var g = r.Grad!.Data; var y = r.Data;
            for (int i = 0; i < dx.Length; i++) dx[i] += g[i] * y[i];
        });
    }

    /// <summary>Logistic sigmoid 1 / (1 + e^−x); backward dx += dy·y·(1 − y).</summary>
    public Tensor Sigmoid()
    {
        var result = Empty(_shape);
        TensorPrimitives.Sigmoid(Data, result.Data);
        OpTrace.Current?.Op("sigmoid", result, [this], OpAttributes.None);
        return Autograd.Record(result, "sigmoid", [this], new UnaryState { X = this }, static (in UnaryState s, Tensor r) =>
        {
            var dx = s.X.GradSpan(); var g = r.Grad!.Data; var y = r.Data;
            for (int i = 0; i < dx.Length; i++) dx[i] += g[i] * y[i] * (1f - y[i]);
        });
    }

    /// <summary>min(x, max) (torch.clamp(x, max=max)); the gradient passes where x ≤ max, as torch's.</summary>
    public Tensor ClampMax(float max)
    {
        var result = Empty(_shape);
        TensorPrimitives.Min(Data, max, result.Data);
        OpTrace.Current?.Op("clamp_max", result, [this], new OpAttributes { Scalar = max });
        return Autograd.Record(result, "clamp_max", [this], new UnaryState { X = this, Scale = max }, static (in UnaryState s, Tensor r) =>
        {
            var dx = s.X.GradSpan(); var g = r.Grad!.Data; var xd = s.X.Data;
            for (int i = 0; i < dx.Length; i++) if (xd[i] <= s.Scale) dx[i] += g[i];
        });
    }

    private struct GeluChunks : Kernels.Parallel2.IChunkBody
    {
        public float[] X, Y, G, Dx;
        public bool Accumulate;
        public readonly void Run(int chunk, int s, int n)
        {
            if (G is null) Kernels.GeluKernel.Forward(X.AsSpan(s, n), Y.AsSpan(s, n));
            else Kernels.GeluKernel.Backward(G.AsSpan(s, n), X.AsSpan(s, n), Dx.AsSpan(s, n), Accumulate);
        }
    }

    /// <summary>GELU, exact erf form.</summary>
    public Tensor Gelu()
    {
        var result = Empty(_shape);
        int chunks = Kernels.Parallel2.Chunks(Size, 1);
        Kernels.Parallel2.For(Size, chunks, new GeluChunks { X = Data, Y = result.Data });
        OpTrace.Current?.Op("gelu", result, [this], OpAttributes.None);
        return Autograd.Record(result, "gelu", [this], new UnaryState { X = this, Chunks = chunks }, static (in UnaryState s, Tensor r) =>
        {
            // The first gradient of x is written, not added to a cleared buffer (the same values).
            var x = s.X;
            var dx = x.GradForWrite(out bool fresh);
            Kernels.Parallel2.For(x.Size, s.Chunks, new GeluChunks { X = x.Data, G = r.Grad!.Data, Dx = dx, Accumulate = !fresh });
        });
    }
}
