using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace VitSharp.Kernels;

/// <summary>Packing of A and B into zero-padded micro-panels, and the per-thread pack buffers.</summary>
internal static unsafe partial class GemmManaged
{
    /// <summary>Packs op(A)[ic..ic+mb, pc..pc+kb] into MR-row micro-panels, zero-padding the last one.</summary>
    private static void PackA(bool transA, float* a, int lda, int ic, int pc, int mb, int kb, float* dst)
    {
        for (int ir = 0; ir < mb; ir += MR)
        {
            int mr = Math.Min(MR, mb - ir);
            float* d = dst + (long)ir * kb;
            if (transA)
            {
                // A stored [k, m]: element (i, p) at a[p*lda + i]; MR contiguous floats per p.
                float* s = a + (long)pc * lda + ic + ir;
                if (Avx.IsSupported)
                {
                    // One masked 8-lane load of the mr floats (no read past them) and one 8-float store per p: its two
                    // (or more) zero lanes spill into the next p's slot, which the next store overwrites (the last one into
                    // the next panel, packed after this one, or the buffer's slack), as in the [m, k] case below.
                    var mask = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(mr)).AsSingle();
                    for (int p = 0; p < kb; p++, s += lda, d += MR) Avx.Store(d, Avx.MaskLoad(s, mask));
                }
                else if (mr == MR)
                {
                    for (int p = 0; p < kb; p++, s += lda, d += MR)
                    {
                        d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; d[3] = s[3]; d[4] = s[4]; d[5] = s[5];
                    }
                }
                else
                {
                    for (int p = 0; p < kb; p++, s += lda, d += MR)
                    {
                        int i = 0;
                        for (; i < mr; i++) d[i] = s[i];
                        for (; i < MR; i++) d[i] = 0;
                    }
                }
            }
            else
            {
                // A stored [m, k]: element (i, p) at a[i*lda + p]; gather MR rows.
                float* s = a + (long)(ic + ir) * lda + pc;
                int p = 0;
                if (mr == MR && Avx.IsSupported)
                {
                    // 8×8 transposes of 6 real rows + 2 zero rows; each 8-float store at d + q*MR spills 2 floats
                    // into the next slot, which the following store (or the next panel, or the slack) absorbs.
                    var z = Vector256<float>.Zero;
                    for (; p + 8 <= kb; p += 8)
                    {
                        var r0 = Avx.LoadVector256(s + p);
                        var r1 = Avx.LoadVector256(s + lda + p);
                        var r2 = Avx.LoadVector256(s + 2L * lda + p);
                        var r3 = Avx.LoadVector256(s + 3L * lda + p);
                        var r4 = Avx.LoadVector256(s + 4L * lda + p);
                        var r5 = Avx.LoadVector256(s + 5L * lda + p);
                        Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref z, ref z,
                            out var o0, out var o1, out var o2, out var o3, out var o4, out var o5, out var o6, out var o7);
                        float* q = d + p * MR;
                        Avx.Store(q, o0); Avx.Store(q + MR, o1); Avx.Store(q + 2 * MR, o2); Avx.Store(q + 3 * MR, o3);
                        Avx.Store(q + 4 * MR, o4); Avx.Store(q + 5 * MR, o5); Avx.Store(q + 6 * MR, o6); Avx.Store(q + 7 * MR, o7);
                    }
                }
                for (; p < kb; p++)
                {
                    float* q = d + p * MR;
                    int i = 0;
                    for (; i < mr; i++) q[i] = s[(long)i * lda + p];
                    for (; i < MR; i++) q[i] = 0;
                }
            }
        }
    }

    /// <summary>Packs op(B)[pc..pc+kb, jc..jc+nb] into NR-column micro-panels, zero-padding the last one.</summary>
    private static void PackB(bool transB, float* b, int ldb, int pc, int jc, int kb, int nb, int nr, float* dst)
    {
        for (int jr = 0; jr < nb; jr += nr)
        {
            int w = Math.Min(nr, nb - jr);
            float* d = dst + (long)jr * kb;
            if (!transB)
            {
                // B stored [k, n]: row p of the panel is contiguous.
                float* s = b + (long)pc * ldb + jc + jr;
                if (w == nr && nr % 16 == 0)
                {
                    if (Vector512.IsHardwareAccelerated)
                        for (int p = 0; p < kb; p++, s += ldb, d += nr)
                            for (int j = 0; j < nr; j += 16) Vector512.Store(Vector512.Load(s + j), d + j);
                    else
                        for (int p = 0; p < kb; p++, s += ldb, d += nr)
                            for (int j = 0; j < nr; j += 8) Vector256.Store(Vector256.Load(s + j), d + j);
                }
                else
                {
                    for (int p = 0; p < kb; p++, s += ldb, d += nr)
                    {
                        int j = 0;
                        for (; j + 8 <= w; j += 8) Vector256.Store(Vector256.Load(s + j), d + j);
                        for (; j < w; j++) d[j] = s[j];
                        for (; (j & 7) != 0 && j < nr; j++) d[j] = 0;
                        for (; j + 8 <= nr; j += 8) Vector256.Store(Vector256<float>.Zero, d + j);
                        for (; j < nr; j++) d[j] = 0;
                    }
                }
            }
            else
            {
                // B stored [n, k]: element (p, j) at b[j*ldb + p]; transpose 8×8 blocks.
                float* s = b + (long)(jc + jr) * ldb + pc;
                int j = 0;
                if (Avx.IsSupported)
                {
                    for (; j + 8 <= w; j += 8)
                    {
                        float* sj = s + (long)j * ldb;
                        int p = 0;
                        for (; p + 8 <= kb; p += 8)
                        {
                            var r0 = Avx.LoadVector256(sj + p);
                            var r1 = Avx.LoadVector256(sj + ldb + p);
                            var r2 = Avx.LoadVector256(sj + 2L * ldb + p);
                            var r3 = Avx.LoadVector256(sj + 3L * ldb + p);
                            var r4 = Avx.LoadVector256(sj + 4L * ldb + p);
                            var r5 = Avx.LoadVector256(sj + 5L * ldb + p);
                            var r6 = Avx.LoadVector256(sj + 6L * ldb + p);
                            var r7 = Avx.LoadVector256(sj + 7L * ldb + p);
                            Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7,
                                out var o0, out var o1, out var o2, out var o3, out var o4, out var o5, out var o6, out var o7);
                            float* q = d + (long)p * nr + j;
                            Avx.Store(q, o0); Avx.Store(q + nr, o1); Avx.Store(q + 2 * nr, o2); Avx.Store(q + 3 * nr, o3);
                            Avx.Store(q + 4 * nr, o4); Avx.Store(q + 5 * nr, o5); Avx.Store(q + 6 * nr, o6); Avx.Store(q + 7 * nr, o7);
                        }
                        for (; p < kb; p++)
                        {
                            float* q = d + (long)p * nr + j;
                            for (int t = 0; t < 8; t++) q[t] = sj[(long)t * ldb + p];
                        }
                    }
                }
                for (; j < w; j++)
                {
                    float* sj = s + (long)j * ldb;
                    for (int p = 0; p < kb; p++) d[(long)p * nr + j] = sj[p];
                }
                if (w < nr)
                    for (int p = 0; p < kb; p++)
                        new Span<float>(d + (long)p * nr + w, nr - w).Clear();
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2,
        ref Vector256<float> r3, ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6,
        ref Vector256<float> r7, out Vector256<float> o0, out Vector256<float> o1, out Vector256<float> o2,
        out Vector256<float> o3, out Vector256<float> o4, out Vector256<float> o5, out Vector256<float> o6,
        out Vector256<float> o7)
    {
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44);
        var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44);
        var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44);
        var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44);
        var s7 = Avx.Shuffle(t5, t7, 0xEE);
        o0 = Avx.Permute2x128(s0, s4, 0x20);
        o1 = Avx.Permute2x128(s1, s5, 0x20);
        o2 = Avx.Permute2x128(s2, s6, 0x20);
        o3 = Avx.Permute2x128(s3, s7, 0x20);
        o4 = Avx.Permute2x128(s0, s4, 0x31);
        o5 = Avx.Permute2x128(s1, s5, 0x31);
        o6 = Avx.Permute2x128(s2, s6, 0x31);
        o7 = Avx.Permute2x128(s3, s7, 0x31);
    }
    /// <summary>Per-thread native pack buffers (64-byte aligned), grown on demand and freed with the thread.</summary>
    private sealed class PackBuffers
    {
        [ThreadStatic] private static PackBuffers? t_current;

        public float* A, B, Tmp;
        private float* _shared;
        private nuint _aLen, _bLen, _sharedLen;

        /// <summary>A buffer for an operand packed once and read by every thread of a parallel call.</summary>
        public float* GetShared(long floats)
        {
            if (_sharedLen < (nuint)floats)
            {
                NativeMemory.AlignedFree(_shared);
                _shared = (float*)NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);
                _sharedLen = (nuint)floats;
            }
            return _shared;
        }

        public static PackBuffers Get(int mc, int kc, int nc, int nr)
        {
            var pb = t_current ??= new PackBuffers();
            nuint aNeed = (nuint)((mc + MR) * (long)kc + 64);
            nuint bNeed = (nuint)((nc + nr) * (long)kc + 64);
            if (pb._aLen < aNeed)
            {
                NativeMemory.AlignedFree(pb.A);
                pb.A = (float*)NativeMemory.AlignedAlloc(aNeed * sizeof(float), 64);
                pb._aLen = aNeed;
            }
            if (pb._bLen < bNeed)
            {
                NativeMemory.AlignedFree(pb.B);
                pb.B = (float*)NativeMemory.AlignedAlloc(bNeed * sizeof(float), 64);
                pb._bLen = bNeed;
            }
            if (pb.Tmp == null) pb.Tmp = (float*)NativeMemory.AlignedAlloc(MR * 64 * sizeof(float), 64);
            return pb;
        }

        ~PackBuffers()
        {
            NativeMemory.AlignedFree(A);
            NativeMemory.AlignedFree(B);
            NativeMemory.AlignedFree(Tmp);
            NativeMemory.AlignedFree(_shared);
        }
    }
}
