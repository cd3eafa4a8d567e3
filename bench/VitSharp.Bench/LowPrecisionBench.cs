using System.Diagnostics;
using VitSharp.Kernels;

namespace VitSharp.Bench;

/// <summary>
/// <c>-- lowp</c>: fp32 <see cref="Gemm.Sgemm(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int, bool)"/>
/// (Auto backend and managed) vs <see cref="Int8Gemm.Linear(ReadOnlySpan{float}, int, Int8Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>
/// (native and managed) vs <see cref="Bf16Gemm.Linear(ReadOnlySpan{float}, int, Bf16Weights, ReadOnlySpan{float}, Span{float}, LowPrecisionPath)"/>
/// on Linear shapes (y[m, n] = x[m, k]·Wᵀ + b), interleaved; medians. Low-precision times include the activations'
/// quantization (or bf16 rounding) and the epilogue, i.e. the whole Linear call.
/// </summary>
public static class LowPrecisionTable
{
    /// <summary>ViT-B/16 batch 1 (qkv, proj, fc1, fc2) and DeiT-S batch 32 (m = 32·197).</summary>
    public static readonly (int M, int K, int N)[] Shapes =
    {
        (197, 768, 2304), (197, 768, 768), (197, 768, 3072), (197, 3072, 768),
        (6304, 384, 1152), (6304, 384, 384), (6304, 384, 1536), (6304, 1536, 384),
    };

    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        Console.WriteLine($"{NativeKernels.Describe()}; int8 auto path {Int8Gemm.PathName()}, managed {Int8Gemm.PathName(LowPrecisionPath.Managed)}; bf16 auto path {Bf16Gemm.PathName()}; threads {ComputeThreads.Count}; openblas {(Gemm.OpenBlasAvailable ? OpenBlas.CoreName : "not available")}");
        Console.WriteLine($"{"shape m x k -> n",-22} {"path",-22} {"runs",5} {"median ms",10} {"GOP/s",8} {"vs fp32",8}");
        foreach (var (m, k, n) in Shapes)
        {
            var r = new Random(42);
            var x = new float[m * k]; var w = new float[n * k]; var b = new float[n]; var y = new float[m * n];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 2 - 1);
            for (int i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() * 2 - 1) * 0.05f;
            for (int i = 0; i < b.Length; i++) b[i] = (float)(r.NextDouble() * 2 - 1);
            var q8 = Int8Weights.Quantize(w, n, k);
            var q16 = Bf16Weights.Convert(w, n, k);
            var paths = new List<(string Name, Action Run)>
            {
                ("fp32 sgemm (auto)", () => { Gemm.Sgemm(false, true, m, n, k, 1f, x, k, w, k, 0f, y, n); }),
                ("fp32 sgemm (managed)", () => { Gemm.Sgemm(GemmBackend.Managed, false, true, m, n, k, 1f, x, k, w, k, 0f, y, n); }),
            };
            if (NativeKernels.HasVnni) paths.Add(("int8 native vnni", () => Int8Gemm.Linear(x, m, q8, b, y, LowPrecisionPath.Native)));
            if (NativeKernels.HasVnni && args.Contains("--parts"))
            {
                // The pieces of the int8 call on the calling thread: the whole call on one thread, quantizing the
                // activations, the VNNI kernel alone over the whole product in the call's blocks (48 rows × 128 columns,
                // column-major order), the int32 → float epilogue alone (over the whole product: colder than in the call).
                int kp = q8.Groups * 4;
                var qa = new byte[m * kp]; var sx = new float[m]; var zp = new int[m]; var acc = new int[m * n];
                var sw = new float[n]; var cs = new int[n];
                paths.Add(("int8 linear 1t", () => { using (ComputeThreads.Serial()) Int8Gemm.Linear(x, m, q8, b, y, LowPrecisionPath.Native); }));
                paths.Add(("int8 quantize 1t", () => { unsafe { fixed (float* px = x) fixed (byte* pq = qa) for (int i = 0; i < m; i++) Int8Gemm.QuantizeRow(px + (long)i * k, k, pq + (long)i * kp, kp, out sx[i], out zp[i]); } }));
                paths.Add(("int8 vnni kernel 1t", () =>
                {
                    unsafe
                    {
                        fixed (byte* pq = qa)
                        fixed (int* pc = acc)
                            for (int j0 = 0; j0 < n; j0 += Int8Gemm.BlockCols)
                                for (int i0 = 0; i0 < m; i0 += Int8Gemm.BlockRows)
                                    NativeKernels.U8S8GemmVnni(pq + (long)i0 * kp, kp, Math.Min(Int8Gemm.BlockRows, m - i0),
                                        q8.Packed + (long)(j0 / 64) * q8.Groups * 256, Math.Min(Int8Gemm.BlockCols, n - j0), q8.Groups, pc + (long)i0 * n + j0, n);
                    }
                }));
                paths.Add(("int8 epilogue 1t", () => { unsafe { fixed (int* pc = acc) fixed (float* psx = sx) fixed (int* pz = zp) fixed (float* psw = sw) fixed (int* pcs = cs) fixed (float* pb = b) Int8Gemm.Epilogue(pc, n, m, n, psx, pz, psw, pcs, pb); } }));
            }
            paths.Add(($"int8 managed {Int8Gemm.PathName(LowPrecisionPath.Managed)}", () => Int8Gemm.Linear(x, m, q8, b, y, LowPrecisionPath.Managed)));
            if (NativeKernels.HasAvx512Bf16) paths.Add(("bf16 native", () => Bf16Gemm.Linear(x, m, q16, b, y, LowPrecisionPath.Native)));
            paths.Add(("bf16 fp32-fallback", () => Bf16Gemm.Linear(x, m, q16, b, y, LowPrecisionPath.Managed)));
            double ops = 2.0 * m * n * k;
            int reps = (int)Math.Clamp(150e9 * (quick ? 0.2 : 1.0) / ops, 7, 200);
            var times = paths.Select(_ => new List<double>()).ToArray();
            foreach (var p in paths) for (int i = 0; i < 3; i++) p.Run();
            for (int rep = 0; rep < reps; rep++)
                for (int p = 0; p < paths.Count; p++) // interleaved: machine noise hits every path alike
                {
                    long t0 = Stopwatch.GetTimestamp();
                    paths[p].Run();
                    times[p].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
            double fp32 = 0;
            for (int p = 0; p < paths.Count; p++)
            {
                var t = times[p];
                t.Sort();
                double med = t[t.Count / 2];
                if (p == 0) fp32 = med;
                Console.WriteLine($"{$"{m} x {k} -> {n}",-22} {paths[p].Name,-22} {t.Count,5} {med,10:F3} {ops / med / 1e6,8:F1} {fp32 / med,7:F2}x");
            }
        }
    }
}
