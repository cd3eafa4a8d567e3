namespace VitSharp.Kernels;

/// <summary>The managed GEMM over several threads: shared packing, work items handed out dynamically on
/// <see cref="GemmWorkers"/> (see the remarks on the class in GemmManaged.cs).</summary>
internal static unsafe partial class GemmManaged
{
    /// <summary>Up to this many rows, a parallel call shares one packed A block (all rows × KC, kept in L2) and
    /// distributes column chunks; above it, it shares the packed B block and distributes MC row blocks.</summary>
    internal static int SplitNMaxM = 256;

    /// <summary>Parallel GEMM with shared packing and dynamic distribution of row blocks or column chunks.</summary>
    private static void RunParallel(KernelKind kind, int threads, bool transA, bool transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, GemmEpilogue epilogue)
    {
        int nr = NrOf(kind);
        int kc = Math.Max(1, KC);
        int mc = Math.Max(MR, MC / MR * MR);
        int nc = Math.Max(nr, NC / nr * nr);
        bool splitN = m <= SplitNMaxM;
        int panels = (Math.Min(n, nc) + nr - 1) / nr;
        if (splitN && panels < 2) splitN = false;
        if (!splitN && (m + mc - 1) / mc < 2 && panels >= 2) splitN = true;
        // Split over columns, each thread packs its own B chunks: no B block is shared, so no NC blocking either —
        // A is packed once per KC block and each round hands out chunks over all of n (same sums, fewer rounds).
        int jcStep = splitN ? (n + nr - 1) / nr * nr : nc;
        var caller = PackBuffers.Get(mc, kc, nc, nr);
        // Reuse this thread's job object (a nested call from inside a body would find it busy and allocate).
        var job = t_job is { Busy: false } cached ? cached : new ParallelJob();
        t_job ??= job;
        job.Busy = true;
        job.Kind = kind; job.TransA = transA; job.TransB = transB; job.M = m; job.Alpha = alpha; job.A = a;
        job.Lda = lda; job.B = b; job.Ldb = ldb; job.C = c; job.Ldc = ldc; job.Nr = nr; job.Mc = mc; job.Kc = kc;
        job.Nc = nc; job.K = k; job.Epilogue = epilogue;
        try
        {
            for (int jc = 0; jc < n; jc += jcStep)
            {
                int nb = Math.Min(jcStep, n - jc);
                job.Jc = jc;
                job.Nb = nb;
                for (int pc = 0; pc < k; pc += kc)
                {
                    int kb = Math.Min(kc, k - pc);
                    job.Pc = pc;
                    job.Kb = kb;
                    job.Beta = pc == 0 ? beta : 1f;
                    if (splitN)
                    {
                        // ~3 chunks per thread for balance, whole NR panels each.
                        int p = (nb + nr - 1) / nr;
                        int per = Math.Clamp((p + 3 * threads - 1) / (3 * threads), 1, nc / nr);
                        job.W = per * nr;
                        job.Shared = caller.GetShared((long)((m + MR - 1) / MR * MR) * kb + 64);
                        PackA(transA, a, lda, 0, pc, m, kb, job.Shared);
                        int chunks = (nb + job.W - 1) / job.W;
                        GemmWorkers.For(chunks, job.BodyN);
                    }
                    else
                    {
                        job.Shared = caller.GetShared((long)((nb + nr - 1) / nr * nr) * kb + 64);
                        int panelsB = (nb + nr - 1) / nr;
                        if ((long)nb * kb >= 32768 && panelsB >= 2)
                        {
                            // Pack the shared B block in parallel too (it is ~1 MB; serially it idles the workers).
                            job.PackPer = Math.Max(1, (panelsB + 2 * threads - 1) / (2 * threads));
                            int packChunks = (panelsB + job.PackPer - 1) / job.PackPer;
                            GemmWorkers.For(packChunks, job.BodyPackB);
                        }
                        else
                        {
                            PackB(transB, b, ldb, pc, jc, kb, nb, nr, job.Shared);
                        }
                        int blocks = (m + mc - 1) / mc;
                        GemmWorkers.For(blocks, job.BodyM);
                    }
                }
            }
        }
        finally
        {
            job.Busy = false;
        }
    }

    [ThreadStatic] private static ParallelJob? t_job;

    private sealed class ParallelJob
    {
        public KernelKind Kind;
        public bool TransA, TransB, Busy;
        public int M, K, Lda, Ldb, Ldc, Nr, Mc, Kc, Nc, Jc, Nb, Pc, Kb, W;
        public GemmEpilogue Epilogue;
        public float Alpha, Beta;
        public float* A, B, C, Shared;
        public int PackPer;
        public readonly Action<int> BodyN, BodyM, BodyPackB;

        public ParallelJob()
        {
            BodyN = RunN;
            BodyM = RunM;
            BodyPackB = RunPackB;
        }

        private void RunPackB(int chunk)
        {
            int j0 = chunk * PackPer * Nr;
            int w = Math.Min(PackPer * Nr, Nb - j0);
            PackB(TransB, B, Ldb, Pc, Jc + j0, Kb, w, Nr, Shared + (long)j0 * Kb);
        }

        private void RunN(int chunk)
        {
            int j0 = chunk * W;
            int w = Math.Min(W, Nb - j0);
            var buf = PackBuffers.Get(Mc, Kc, Nc, Nr);
            float* cc = C + Jc + j0;
            // Panel by panel: while the kernel runs over one packed panel, the next panel's source is fetched into L2
            // (the weights of a batch-1 Linear come from memory once per call), then packed from there.
            PackB(TransB, B, Ldb, Pc, Jc + j0, Kb, Math.Min(Nr, w), Nr, buf.B);
            for (int jr = 0; jr < w; jr += Nr)
            {
                int next = jr + Nr, nextWidth = Math.Min(Nr, w - next);
                var prefetch = next >= w ? default
                    : TransB ? new SourcePrefetch(B + (long)(Jc + j0 + next) * Ldb + Pc, Ldb, nextWidth, Kb)
                    : new SourcePrefetch(B + (long)Pc * Ldb + Jc + j0 + next, Ldb, Kb, nextWidth);
                Macro(Kind, M, Math.Min(Nr, w - jr), Kb, Nr, Alpha, Beta, Shared, buf.B + (long)jr * Kb, cc + jr, Ldc, buf.Tmp, prefetch);
                if (next < w) PackB(TransB, B, Ldb, Pc, Jc + j0 + next, Kb, nextWidth, Nr, buf.B + (long)next * Kb);
            }
            if (Pc + Kb >= K) Epilogue.Apply(cc, Ldc, M, w, 0, Jc + j0);
        }

        private void RunM(int block)
        {
            int i0 = block * Mc;
            int mb = Math.Min(Mc, M - i0);
            var buf = PackBuffers.Get(Mc, Kc, Nc, Nr);
            PackA(TransA, A, Lda, i0, Pc, mb, Kb, buf.A);
            Macro(Kind, mb, Nb, Kb, Nr, Alpha, Beta, buf.A, Shared, C + (long)i0 * Ldc + Jc, Ldc, buf.Tmp);
            if (Pc + Kb >= K) Epilogue.Apply(C + (long)i0 * Ldc + Jc, Ldc, mb, Nb, i0, Jc);
        }
    }
}
