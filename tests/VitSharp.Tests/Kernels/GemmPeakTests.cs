using VitSharp.Kernels;

namespace VitSharp.Tests.Kernels;

/// <summary><see cref="GemmPeak"/>, <see cref="CpuFeatures"/> and <see cref="LinearGemms"/>: what they report, not how fast.</summary>
public sealed class GemmPeakTests
{
    [Fact]
    public void PeakIsTwiceSizeCubedOverTheMedianRunOfEachKernel()
    {
        var r = GemmPeak.Measure(TimeSpan.Zero, size: 96);
        Assert.Equal(96, r.Size);
        Assert.Equal(GemmPeak.MinRuns, r.ManagedTimesMs.Length);   // a zero budget: the minimum number of runs
        double Median(double[] t) { var s = t.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
        double flops = 2.0 * 96 * 96 * 96;
        Assert.Equal(flops / Median(r.ManagedTimesMs) / 1e6, r.ManagedGFlops, 9);
        if (Gemm.OpenBlasAvailable)
        {
            Assert.Equal(r.ManagedTimesMs.Length, r.OpenBlasTimesMs.Length);
            Assert.Equal(flops / Median(r.OpenBlasTimesMs) / 1e6, r.OpenBlasGFlops!.Value, 9);
        }
        else
        {
            Assert.Null(r.OpenBlasGFlops);
            Assert.Empty(r.OpenBlasTimesMs);
        }
        Assert.Equal(Math.Max(r.ManagedGFlops, r.OpenBlasGFlops ?? 0), r.BestGFlops);
        Assert.Equal(r.BestGFlops == r.ManagedGFlops ? "managed" : "openblas", r.Best);
        Assert.Equal(ComputeThreads.Count, r.Threads);
        Assert.Same(CpuFeatures.Current, r.Cpu);
    }

    [Fact]
    public void BestIsTheFasterOfTheTwo()
    {
        var cpu = CpuFeatures.FromCpuInfo(null);
        Assert.Equal("openblas", new GemmPeakResult(8, 1, 10, 12, [1], [1], 1, cpu).Best);
        Assert.Equal(12, new GemmPeakResult(8, 1, 10, 12, [1], [1], 1, cpu).BestGFlops);
        Assert.Equal("managed", new GemmPeakResult(8, 1, 12, 10, [1], [1], 1, cpu).Best);
        Assert.Equal("managed", new GemmPeakResult(8, 1, 12, null, [1], [], 0, cpu).Best);
    }

    [Fact]
    public void BadSizeOrBudgetIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => GemmPeak.Measure(TimeSpan.Zero, size: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => GemmPeak.Measure(TimeSpan.FromSeconds(-1), size: 8));
    }

    [Fact]
    public void CpuInfoGivesTheModelNameAndTheVnniAndBf16Flags()
    {
        const string info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n" +
                            "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx_vnni amx_tile\n\nprocessor\t: 1\nmodel name\t: other\nflags\t\t: avx512_vnni\n";
        var c = CpuFeatures.FromCpuInfo(info);
        Assert.Equal("Intel(R) Xeon(R) Platinum 8480+", c.ModelName);
        Assert.True(c.FlagsKnown);
        Assert.True(c.Avx512Bf16);
        Assert.True(c.AvxVnni);
        Assert.False(c.Avx512Vnni);   // only the first processor's flags are read (the second's list is not this one's)
        Assert.Contains("avx512_bf16", c.Names);
        Assert.Contains("avx_vnni", c.Names);
        Assert.DoesNotContain("avx512_vnni", c.Names);

        var none = CpuFeatures.FromCpuInfo(null);
        Assert.False(none.FlagsKnown);
        Assert.False(none.Avx512Vnni || none.Avx512Bf16 || none.AvxVnni);
        Assert.False(string.IsNullOrEmpty(none.ModelName));
    }

    [Fact]
    public void FeaturesFromDotNetAndTheManagedKernelPath()
    {
        var c = CpuFeatures.Current;
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx2.IsSupported, c.Names.Contains("avx2"));
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx512F.IsSupported, c.Names.Contains("avx512f"));
        Assert.Equal(GemmManaged.KernelName, c.ManagedKernel);
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "avx512"
            : System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported ? "avx2" : "scalar", c.Fp32Path);
        Assert.Equal(Gemm.OpenBlasAvailable, c.OpenBlasAvailable);
        if (File.Exists("/proc/cpuinfo"))
        {
            var flags = File.ReadLines("/proc/cpuinfo").First(l => l.StartsWith("flags", StringComparison.Ordinal)).Split(':')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(flags.Contains("avx512_vnni"), c.Avx512Vnni);
            Assert.Equal(flags.Contains("avx512_bf16"), c.Avx512Bf16);
        }
    }

    [Fact]
    public void LinearGemmsListsEveryLinearLayersProductInOrder()
    {
        var model = VitSharp.Tests.Export.OnnxQuantizationTests.SmallVit();   // 32², patch 8: 16 patches + class token; dim 64, 4 heads of 16, mlp 128, depth 2
        var shapes = LinearGemms.Of(model, Tensor.RandN(new Random(1), 0f, 1f, 3, 3, 32, 32));
        int tokens = 3 * 17;
        var block = new[] { new GemmShape(tokens, 3 * 64, 64), new GemmShape(tokens, 64, 64), new GemmShape(tokens, 128, 64), new GemmShape(tokens, 64, 128) };
        var expected = new List<GemmShape> { new(3 * 16, 64, 8 * 8 * 3) };
        expected.AddRange(block);
        expected.AddRange(block);
        expected.Add(new GemmShape(3, 10, 64));
        Assert.Equal(expected, shapes);
        Assert.All(shapes, s => Assert.Equal(Gemm.AutoUsesOpenBlas(s.M, s.N, s.K), s.AutoUsesOpenBlas));
    }
}
