using VitSharp.Inference;
using VitSharp.Kernels;
using VitSharp.Models;
using VitSharp.NN;

namespace VitSharp.Tests.Kernels;

/// <summary>
/// The fused inference ops gelu(x·Wᵀ + b) and residual + x·Wᵀ + b (<see cref="F.LinearGelu"/>, <see cref="F.LinearResidual"/>,
/// <see cref="GemmEpilogue"/>): every backend and
/// managed micro-kernel against a double-precision twin, the fused op against Linear followed by GELU, and the models'
/// blocks choosing it only where nothing can observe the difference (no gradients, no hooks, no export trace).
/// </summary>
public class LinearEpilogueTests
{
    // k ≤ KC (256) and k > KC (the epilogue must wait for the last K block); m below and above SplitNMaxM (256: the two
    // parallel splits); n with edge tiles; m = 1; products below the parallel threshold.
    private static readonly (int M, int N, int K)[] Shapes =
    {
        (1, 1, 1), (7, 13, 5), (33, 65, 17), (197, 130, 67), (50, 192, 96), (197, 300, 520), (400, 96, 300), (1, 200, 31), (64, 1, 40), (6, 64, 0),
    };

    private static float[] Random(int len, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var x = new float[len];
        for (int i = 0; i < len; i++) x[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return x;
    }

    /// <summary>act(x·wᵀ + b) + residual in double (act = GELU or identity); also returns Σ_k |x·w| + |b| + |residual| per
    /// element, the scale of the float rounding error.</summary>
    private static (double[] Y, double[] Scale) Reference(float[] x, float[] w, float[]? b, int m, int n, int k, bool gelu = true, float[]? residual = null)
    {
        var y = new double[m * n];
        var scale = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = b?[j] ?? 0, a = Math.Abs(b?[j] ?? 0);
                for (int p = 0; p < k; p++) { s += (double)x[i * k + p] * w[j * k + p]; a += Math.Abs((double)x[i * k + p] * w[j * k + p]); }
                double r = residual?[i * n + j] ?? 0;
                y[i * n + j] = (gelu ? ReferenceMath.Gelu(s) : s) + r;
                scale[i * n + j] = a + Math.Abs(r);
            }
        return (y, scale);
    }

    private static void AssertNear(double[] expected, double[] scale, float[] actual, int k, string what)
    {
        // Float accumulation of k products: |error| ≲ k·6e-8·Σ|x·w| in the worst case; GELU's slope is ≤ 1.13 and its own
        // error < 1e-6 (GeluKernel). Observed errors are ~10× below this bound.
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1.2 * Math.Max(1, k) * 6e-8 * scale[i] + 2e-6 * Math.Max(1, Math.Abs(expected[i]));
            double d = Math.Abs(expected[i] - actual[i]);
            Assert.True(d <= tol, $"{what}: y[{i}] expected {expected[i]:R} got {actual[i]:R} (|diff| {d:g3} > {tol:g3})");
        }
    }

    public static IEnumerable<object[]> Backends()
    {
        yield return new object[] { GemmBackend.Managed };
        yield return new object[] { GemmBackend.OpenBlas };
        yield return new object[] { GemmBackend.Naive };
        yield return new object[] { GemmBackend.Auto };
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public unsafe void EveryBackendMatchesTheDoubleTwinWithAndWithoutBias(GemmBackend backend)
    {
        Assert.True(backend != GemmBackend.OpenBlas || Gemm.OpenBlasAvailable, "OpenBLAS is not available (scripts/setup.sh installs it)");
        int seed = 10;
        foreach (var (m, n, k) in Shapes)
            foreach (bool withBias in new[] { true, false })
                foreach (bool parallel in new[] { true, false })
                    foreach (var (gelu, withResidual) in new[] { (true, false), (false, true), (true, true) })
                    {
                        var x = Random(m * k, seed++, 2f);
                        var w = Random(n * k, seed++, 1f / MathF.Sqrt(Math.Max(k, 1)));
                        var b = withBias ? Random(n, seed++) : null;
                        var res = withResidual ? Random(m * n, seed++, 3f) : null;
                        var y = Enumerable.Repeat(float.NaN, m * n).ToArray();   // every element must be written
                        fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b) fixed (float* pr = res) fixed (float* py = y)
                            Gemm.LinearFused(backend, m, n, k, px, pw, new GemmEpilogue(pb, gelu, pr), py, parallel);
                        var (e, s) = Reference(x, w, b, m, n, k, gelu, res);
                        AssertNear(e, s, y, k, $"{backend} m={m} n={n} k={k} bias={withBias} gelu={gelu} residual={withResidual} parallel={parallel}");
                    }
    }

    /// <summary>The epilogue inside each managed micro-kernel's loop nest (the 6×64 Vector512 one is software-emulated
    /// where the CPU lacks AVX-512), serial and parallel.</summary>
    [SkippableTheory]
    [InlineData((int)GemmManaged.KernelKind.V512x64)]
    [InlineData((int)GemmManaged.KernelKind.Avx2x16)]
    [InlineData((int)GemmManaged.KernelKind.Scalar16)]
    public unsafe void EveryManagedKernelAppliesTheEpilogueAfterTheLastKBlock(int kernel)
    {
        var kind = (GemmManaged.KernelKind)kernel;
        Skip.If(kind == GemmManaged.KernelKind.Avx2x16 && !(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported),
            "this CPU lacks AVX2/FMA, which the 6×16 AVX2 kernel needs");
        int seed = 500;
        foreach (var (m, n, k) in new[] { (7, 13, 5), (197, 130, 300), (300, 70, 600), (6, 64, 0) })
            foreach (bool parallel in new[] { true, false })
            {
                var x = Random(m * k, seed++, 2f);
                var w = Random(n * k, seed++, 1f / MathF.Sqrt(Math.Max(k, 1)));
                var b = Random(n, seed++);
                var res = Random(m * n, seed++, 3f);
                var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
                fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b) fixed (float* pr = res) fixed (float* py = y)
                    GemmManaged.Sgemm(kind, false, true, m, n, k, 1f, px, k, pw, k, 0f, py, n, parallel, new GemmEpilogue(pb, gelu: true, pr));
                var (e, s) = Reference(x, w, b, m, n, k, gelu: true, res);
                AssertNear(e, s, y, k, $"{kind} m={m} n={n} k={k} parallel={parallel}");
            }
    }

    [Fact]
    public void TheFusedOpEqualsLinearThenGeluWithinFloatRounding()
    {
        foreach (var (rows, inF, outF) in new[] { (50, 96, 192), (197, 384, 1536), (3, 5, 7) })
        {
            var x = Tensor.RandN(new Random(rows), 0, 1, 2, rows, inF);
            var w = Tensor.RandN(new Random(inF), 0, 1f / MathF.Sqrt(inF), outF, inF);
            var b = Tensor.RandN(new Random(outF), 0, 0.5f, outF);
            using var _ = VitSharp.Autograd.NoGrad();
            var residual = Tensor.RandN(new Random(rows + 1), 0, 1, 2, rows, outF);
            foreach (var (fused, plain, what) in new[]
            {
                (F.LinearGelu(x, w, b), F.Linear(x, w, b).Gelu(), "gelu"),
                (F.LinearResidual(x, w, b, residual), F.Linear(x, w, b) + residual, "residual"),
                (F.LinearResidual(x, w, null, residual), F.Linear(x, w, null) + residual, "residual without bias"),
            })
            {
                Assert.Equal(plain.Shape, fused.Shape);
                double worst = 0;
                for (int i = 0; i < plain.Size; i++) worst = Math.Max(worst, Math.Abs(plain.Data[i] - fused.Data[i]));
                // Both are float products of the same operands: they differ only in summation order (bias first or last,
                // OpenBLAS or the managed kernel); observed ≤ 1e-6 at k = 384.
                Assert.True(worst < 1e-5, $"{what} [{rows}, {inF}] → {outF}: fused and unfused differ by {worst:g3}");
            }
        }
    }

    [Fact]
    public void AMismatchedInputOrBiasIsRefusedWithItsShapes()
    {
        using var _ = VitSharp.Autograd.NoGrad();
        var w = Tensor.Zeros(4, 3);
        var e = Assert.Throws<ArgumentException>(() => F.LinearGelu(Tensor.Zeros(2, 5), w, null));
        Assert.Contains("[2, 5]", e.Message);
        Assert.Contains("3 features", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => F.LinearGelu(Tensor.Zeros(2, 3), w, Tensor.Zeros(5)));
        Assert.Contains("bias [5]", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => F.LinearResidual(Tensor.Zeros(2, 3), w, null, Tensor.Zeros(2, 5)));
        Assert.Contains("residual [2, 5]", e3.Message);
        Assert.Contains("output [2, 4]", e3.Message);
    }

    [Fact]
    public void TheLowPrecisionKernelsRefuseAResidualOfTheWrongLength()
    {
        var w = new float[4 * 3];
        var x = new float[2 * 3];
        var y = new float[2 * 4];
        var e8 = Assert.Throws<ArgumentException>(() => Int8Gemm.Linear(x, 2, Int8Weights.Quantize(w, 4, 3), default, y, LowPrecisionPath.Auto, false, new float[7]));
        Assert.Equal("residual", e8.ParamName);
        Assert.Contains("7 elements", e8.Message);
        var e16 = Assert.Throws<ArgumentException>(() => Bf16Gemm.Linear(x, 2, Bf16Weights.Convert(w, 4, 3), default, y, LowPrecisionPath.Auto, true, new float[9]));
        Assert.Equal("residual", e16.ParamName);
    }

    [Fact]
    public void WithGradientsItRecordsLinearAndGeluAndBackpropagates()
    {
        var x = Tensor.RandN(new Random(1), 0, 1, 4, 6);
        var w = Tensor.RandN(new Random(2), 0, 0.5f, 5, 6);
        var b = Tensor.RandN(new Random(3), 0, 0.5f, 5);
        var x2 = x.Clone(); var w2 = w.Clone(); var b2 = b.Clone();
        foreach (var t in new[] { x, w, b, x2, w2, b2 }) t.RequiresGrad = true;
        var r = Tensor.RandN(new Random(4), 0, 1, 4, 5);
        var r2 = r.Clone();
        r.RequiresGrad = true; r2.RequiresGrad = true;
        (F.LinearGelu(x, w, b).Sum() + F.LinearResidual(x, w, b, r).Sum()).Backward();
        (F.Linear(x2, w2, b2).Gelu().Sum() + (F.Linear(x2, w2, b2) + r2).Sum()).Backward();
        Assert.Equal(r2.Grad!.Data, r.Grad!.Data);
        Assert.Equal(x2.Grad!.Data, x.Grad!.Data);
        Assert.Equal(w2.Grad!.Data, w.Grad!.Data);
        Assert.Equal(b2.Grad!.Data, b.Grad!.Data);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public unsafe void TheTrainingLinearAddsItsBiasInTheEpilogueWithTheBitsOfBiasFirstUpToOneKBlock(bool serial)
    {
        // F.Linear with gradients adds the bias in the managed kernel's epilogue wherever its product runs on the managed
        // kernel (a data-parallel replica's serial thread; small products under Auto). Up to k = KC (one packed block) that
        // is acc + bias rounded once, the same bits as the bias copied into y first and the product added with beta = 1;
        // above it the bias follows the blocks' partial sums, within float rounding of the double twin.
        int seed = 40;
        foreach (var (m, n, k) in new[] { (50, 96, 96), (50, 288, 96), (37, 192, 200), (64, 96, 256), (33, 65, 300), (9, 10, 520) })
        {
            var xv = Random(m * k, seed++, 2f);
            var wv = Random(n * k, seed++, 0.5f);
            var bv = Random(n, seed++);
            var x = Tensor.FromArray(xv, m, k); x.RequiresGrad = true;
            var w = Tensor.FromArray(wv, n, k); w.RequiresGrad = true;
            var b = Tensor.FromArray(bv, n); b.RequiresGrad = true;
            Tensor y;
            bool epilogue;
            using (serial ? ComputeThreads.Serial() : default(ComputeThreads.SerialScope?))
            {
                y = F.Linear(x, w, b);
                epilogue = Gemm.LinearBiasInEpilogue(m, n, k);
            }
            if (serial) Assert.True(epilogue, $"[{m}, {k}] → {n} on a serial thread should add the bias in the epilogue");
            var biasFirst = new float[m * n];
            for (int i = 0; i < m; i++) bv.CopyTo(biasFirst, i * n);
            Gemm.Sgemm(epilogue ? GemmBackend.Managed : Gemm.Backend, false, true, m, n, k, 1f, xv, k, wv, k, 1f, biasFirst, n,
                parallel: !serial);
            if (k <= GemmManaged.KC) Assert.Equal(biasFirst, y.Data[..(m * n)]);
            var (expected, scale) = Reference(xv, wv, bv, m, n, k, gelu: false);
            AssertNear(expected, scale, y.Data, k, $"linear [{m}, {k}] → {n}, serial {serial}");
            // The backward is the Linear's: db is the column sum of dy.
            y.Sum().Backward();
            Assert.All(b.Grad!.Data[..n], g => Assert.Equal((float)m, g));
        }
    }

    [Fact]
    public void ATrainingLinearRefusesABiasOfTheWrongLengthAndLinearResidualAResidualOfAnotherShape()
    {
        var x = Tensor.Zeros(2, 3); x.RequiresGrad = true;
        var e = Assert.Throws<ArgumentException>(() => F.Linear(x, Tensor.Zeros(4, 3), Tensor.Zeros(5)));
        Assert.Contains("bias [5]", e.Message);
        Assert.Contains("4 output features", e.Message);
        // A residual that an add would broadcast ([1, 4] against [2, 4]) is refused as at inference.
        var e2 = Assert.Throws<ArgumentException>(() => F.LinearResidual(x, Tensor.Zeros(4, 3), null, Tensor.Zeros(1, 4)));
        Assert.Contains("residual [1, 4]", e2.Message);
        Assert.Contains("output [2, 4]", e2.Message);
    }

    private static IReadOnlyList<(string Op, double Ms, long Calls, long Bytes)> Profile(Func<Tensor> forward, out Tensor output)
    {
        OpProfiler.Enable();
        output = forward();
        return OpProfiler.Disable();
    }

    [Fact]
    public void AViTRunsItsMlpAndResidualsFusedWithoutGradientsAndGivesTheUnfusedLogits()
    {
        var model = Presets.Get("vit-fmnist").Spec.Build();
        model.Eval();
        var images = Tensor.RandN(new Random(5), 0, 1, 3, 1, 28, 28);
        Tensor fused, unfused;
        IReadOnlyList<(string Op, double Ms, long Calls, long Bytes)> pf, pu;
        using (VitSharp.Autograd.NoGrad())
        {
            pf = Profile(() => model.Forward(images), out fused);
            // A hook on each GELU makes its output observable: the blocks then run Linear and GELU apart.
            var hooks = model.NamedModules().Select(t => t.Module).Where(m => m is GELU).Select(m => m.RegisterForwardHook((_, _, _) => { })).ToList();
            pu = Profile(() => model.Forward(images), out unfused);
            foreach (var h in hooks) h.Dispose();
        }
        Assert.Equal(6, pf.Single(r => r.Op == "fwd linear_gelu").Calls);
        Assert.Equal(12, pf.Single(r => r.Op == "fwd linear_residual").Calls);   // each layer's attention and MLP outputs
        Assert.DoesNotContain(pf, r => r.Op == "fwd gelu");
        Assert.Equal(1, pf.Single(r => r.Op == "fwd add").Calls);   // only the position embedding's
        Assert.Equal(13, pu.Single(r => r.Op == "fwd add").Calls);
        Assert.DoesNotContain(pu, r => r.Op == "fwd linear_gelu");
        Assert.DoesNotContain(pu, r => r.Op == "fwd linear_residual");
        Assert.Equal(6, pu.Single(r => r.Op == "fwd gelu").Calls);
        double worst = 0;
        for (int i = 0; i < fused.Size; i++) worst = Math.Max(worst, Math.Abs(fused.Data[i] - unfused.Data[i]));
        Assert.True(worst < 1e-5, $"fused and unfused logits differ by {worst:g3}");
    }

    [Fact]
    public void TrainingForwardsFuseTheResidualsOnlyAndGiveTheUnfusedLogitsAndGradientsBitForBit()
    {
        // In training the blocks add their residuals in the last Linears' epilogues (one linear_residual op each); GELU stays
        // apart (its input is kept for the backward). With a hook in the tree they run Linear, then add. k ≤ KC here, so the
        // values are the same bits either way, and so are the gradients (residual.grad += dy, then the Linear's backward).
        var model = Presets.Get("vit-fmnist").Spec.Build();
        model.Train();
        var images = Tensor.RandN(new Random(6), 0, 1, 2, 1, 28, 28);
        var p = Profile(() => model.Forward(images), out var logits);
        Assert.DoesNotContain(p, r => r.Op == "fwd linear_gelu");
        Assert.Equal(12, p.Single(r => r.Op == "fwd linear_residual").Calls);
        logits.Sum().Backward();
        var fusedGrads = model.NamedParameters().ToDictionary(t => t.Name, t => t.Parameter.Grad!.Data.ToArray());
        model.ZeroGrad();
        using var hook = model.NamedModules().Select(t => t.Module).First(m => m is GELU).RegisterForwardHook((_, _, _) => { });
        var pu = Profile(() => model.Forward(images), out var unfused);
        Assert.DoesNotContain(pu, r => r.Op == "fwd linear_residual");
        Assert.Equal(logits.Data, unfused.Data);
        unfused.Sum().Backward();
        foreach (var (name, t) in model.NamedParameters())
            Assert.True(fusedGrads[name].AsSpan().SequenceEqual(t.Grad!.Data), $"{name}: fused and unfused gradients differ");
    }

    [Theory]
    [InlineData(true, 0f)]
    [InlineData(false, 0f)]
    [InlineData(true, 0.2f)]
    public void ATimmBlockAddsItsResidualsInItsLastLinearsAndGivesTheTwoStepValuesAndGradients(bool training, float dropPath)
    {
        // timm's Block: x + attn.proj(…) and x + mlp.fc2(…) as linear_residual ops when nothing can see the difference
        // (no hooks, stochastic depth and dropout inactive); k ≤ KC here, so the same bits as the two steps.
        var block = new VitSharp.Models.TimmBlock(64, 4, mlpRatio: 4.0, qkvBias: true, dropPath: dropPath);
        if (training) block.Train(); else block.Eval();
        var x = Tensor.RandN(new Random(8), 0, 1, 2, 10, 64);
        x.RequiresGrad = true;
        using var grad = training ? (IDisposable?)null : VitSharp.Autograd.NoGrad();
        var p = Profile(() => block.Forward(x), out var fused);
        bool expectFused = dropPath == 0;
        Assert.Equal(expectFused ? 2 : 0, p.Where(r => r.Op == "fwd linear_residual").Sum(r => r.Calls));
        using var hook = block.Mlp.Fc2.RegisterForwardHook((_, _, _) => { });
        var unfusedProfile = Profile(() => block.Forward(x), out var unfused);
        Assert.DoesNotContain(unfusedProfile, r => r.Op == "fwd linear_residual");
        if (dropPath > 0) return;   // stochastic depth draws new masks each forward: nothing to compare
        Assert.Equal(unfused.Data[..unfused.Size], fused.Data[..fused.Size]);
        if (!training) return;
        fused.Sum().Backward();
        var fusedGrads = block.NamedParameters().Select(t => t.Parameter.Grad!.Data.ToArray()).Append(x.Grad!.Data.ToArray()).ToList();
        block.ZeroGrad();
        x.ZeroGrad();
        unfused.Sum().Backward();
        var unfusedGrads = block.NamedParameters().Select(t => t.Parameter.Grad!.Data.ToArray()).Append(x.Grad!.Data.ToArray()).ToList();
        for (int i = 0; i < fusedGrads.Count; i++) Assert.Equal(unfusedGrads[i], fusedGrads[i]);
    }

    [Theory]
    [InlineData(InferencePrecision.Int8)]
    [InlineData(InferencePrecision.BFloat16)]
    public void LowPrecisionLayersFuseGeluIntoTheirBlocks(InferencePrecision precision)
    {
        var model = Presets.Get("vit-fmnist").Spec.Build();
        model.Eval();
        model.UsePrecision(precision);
        var images = Tensor.RandN(new Random(7), 0, 1, 3, 1, 28, 28);
        Tensor fused, unfused;
        IReadOnlyList<(string Op, double Ms, long Calls, long Bytes)> pf;
        using (VitSharp.Autograd.NoGrad())
        {
            pf = Profile(() => model.Forward(images), out fused);
            var hooks = model.NamedModules().Select(t => t.Module).Where(m => m is GELU).Select(m => m.RegisterForwardHook((_, _, _) => { })).ToList();
            unfused = model.Forward(images);
            foreach (var h in hooks) h.Dispose();
        }
        Assert.Equal(6, pf.Single(r => r.Op == "fwd linear_gelu").Calls);
        Assert.Equal(12, pf.Single(r => r.Op == "fwd linear_residual").Calls);
        // The same low-precision products and the same GELU kernel: only the vector/scalar split of GELU may differ.
        double worst = 0;
        for (int i = 0; i < fused.Size; i++) worst = Math.Max(worst, Math.Abs(fused.Data[i] - unfused.Data[i]));
        Assert.True(worst < 1e-5, $"{precision}: fused and unfused logits differ by {worst:g3}");
    }
}
