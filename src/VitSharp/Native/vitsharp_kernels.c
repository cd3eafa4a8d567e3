/*
 * VitSharp native micro-kernels (libvitsharp_kernels.so), loaded at run time by src/VitSharp/Kernels/NativeKernels.cs.
 *
 * Built by src/VitSharp/VitSharp.csproj with `cc -O3 -fPIC -shared` (no -march): every SIMD function carries its own
 * target attribute, so one library runs on any x86-64 CPU and reports through vs_features() which paths the CPU
 * supports. The C side only computes one thread's block of a product; C# splits the work over the cores, quantizes
 * or rounds the activations, packs the weights and applies the epilogue (scales, zero points, bias).
 *
 * Packed weight layout (both kernels): panels of 64 output columns; panel p holds, for each k-group g (4 int8 values
 * of k, or 2 bf16 values of k), 64 columns × group bytes: byte offset p·groups·256 + g·256 + col·4 + (k mod group).
 * The last panel is zero-padded to 64 columns and k is zero-padded to a whole group.
 * Activations: row-major, a row stride of lda elements, k zero-padded to a whole group.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define VS_ABI_VERSION 1
#define VS_MR 6  /* rows per micro-tile */
#define VS_NR 64 /* columns per panel (4 zmm of 16 lanes) */

enum
{
    VS_FEATURE_AVX512_VNNI = 1, /* avx512f + avx512bw + avx512vnni: vs_u8s8_gemm_vnni */
    VS_FEATURE_AVX512_BF16 = 2, /* avx512f + avx512bf16: vs_bf16_gemm */
    VS_FEATURE_AVX512F = 4,     /* avx512f: vs_bf16_gemm_emulated */
    VS_FEATURE_AVX2_FMA = 8,
};

int vs_abi_version(void) { return VS_ABI_VERSION; }

int vs_features(void)
{
    __builtin_cpu_init();
    int f = 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
        f |= VS_FEATURE_AVX512_VNNI;
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) f |= VS_FEATURE_AVX512_BF16;
#endif
    if (__builtin_cpu_supports("avx512f")) f |= VS_FEATURE_AVX512F;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) f |= VS_FEATURE_AVX2_FMA;
    return f;
}

static inline __mmask16 vs_mask(int cols) /* lanes of a 16-column vector that are < cols */
{
    return cols >= 16 ? (__mmask16)0xFFFF : cols <= 0 ? (__mmask16)0 : (__mmask16)((1u << cols) - 1u);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* int8: u8 activations × s8 weights, int32 accumulators (VPDPBUSD: 4 u8·s8 products summed into each int32 lane,     */
/* exact and without saturation for k < 66,000 since |acc| ≤ k·255·127 < 2^31).                                       */
/* ---------------------------------------------------------------------------------------------------------------- */

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* acc += Σ4 u8(a)·s8(b) per int32 lane. Inline assembly rather than _mm512_dpbusd_epi32: gcc 12 copies and spills the
   accumulators of the intrinsic (it does not tie its input and output registers), which halved the kernel's speed. */
#define VS_DPBUSD(acc, a, b) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))

/* One row's four accumulators (named variables, not an array, so that gcc keeps all 24 in zmm registers). */
#define VS_ROW_DECL(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0
#define VS_ROW_DP(r)                                                                                                   \
    if (mr > r)                                                                                                        \
    {                                                                                                                  \
        int32_t v;                                                                                                     \
        memcpy(&v, a + r * lda + k4, 4);                                                                               \
        __m512i av = _mm512_set1_epi32(v);                                                                             \
        VS_DPBUSD(c##r##0, av, b0);                                                                      \
        VS_DPBUSD(c##r##1, av, b1);                                                                      \
        VS_DPBUSD(c##r##2, av, b2);                                                                      \
        VS_DPBUSD(c##r##3, av, b3);                                                                      \
    }
#define VS_ROW_STORE(r)                                                                                                \
    if (mr > r)                                                                                                        \
    {                                                                                                                  \
        int32_t *cr = c + r * ldc;                                                                                     \
        _mm512_mask_storeu_epi32((void *)(cr + 0), m0, c##r##0);                                                       \
        _mm512_mask_storeu_epi32((void *)(cr + 16), m1, c##r##1);                                                      \
        _mm512_mask_storeu_epi32((void *)(cr + 32), m2, c##r##2);                                                      \
        _mm512_mask_storeu_epi32((void *)(cr + 48), m3, c##r##3);                                                      \
    }

static inline __attribute__((always_inline)) VNNI_TARGET void
vnni_tile(const int mr, const uint8_t *a, long lda, const int8_t *b, int groups, int32_t *c, long ldc, int cols)
{
    VS_ROW_DECL(0); VS_ROW_DECL(1); VS_ROW_DECL(2); VS_ROW_DECL(3); VS_ROW_DECL(4); VS_ROW_DECL(5);
    for (long g = 0; g < groups; g++)
    {
        const int8_t *bg = b + g * 256;
        long k4 = g * 4;
        __m512i b0 = _mm512_load_si512((const void *)(bg + 0));
        __m512i b1 = _mm512_load_si512((const void *)(bg + 64));
        __m512i b2 = _mm512_load_si512((const void *)(bg + 128));
        __m512i b3 = _mm512_load_si512((const void *)(bg + 192));
        VS_ROW_DP(0) VS_ROW_DP(1) VS_ROW_DP(2) VS_ROW_DP(3) VS_ROW_DP(4) VS_ROW_DP(5)
    }
    __mmask16 m0 = vs_mask(cols), m1 = vs_mask(cols - 16), m2 = vs_mask(cols - 32), m3 = vs_mask(cols - 48);
    VS_ROW_STORE(0) VS_ROW_STORE(1) VS_ROW_STORE(2) VS_ROW_STORE(3) VS_ROW_STORE(4) VS_ROW_STORE(5)
}

/*
 * c[i, j] = Σ_k a[i, k] · w[j, k] for i < m, j < n (int32), where b points at the packed panel of column 0 of this
 * block (64-byte aligned), groups = padded k / 4, c has a row stride of ldc int32. Writes only columns < n.
 */
VNNI_TARGET void vs_u8s8_gemm_vnni(const uint8_t *a, long lda, int m, const int8_t *b, int n, int groups, int32_t *c,
                                   long ldc)
{
    long panelBytes = (long)groups * 256;
    for (int j = 0; j < n; j += VS_NR)
    {
        const int8_t *bp = b + (j / VS_NR) * panelBytes;
        int cols = n - j;
        int i = 0;
        for (; i + VS_MR <= m; i += VS_MR) vnni_tile(VS_MR, a + i * lda, lda, bp, groups, c + i * ldc + j, ldc, cols);
        switch (m - i)
        {
        case 5: vnni_tile(5, a + i * lda, lda, bp, groups, c + i * ldc + j, ldc, cols); break;
        case 4: vnni_tile(4, a + i * lda, lda, bp, groups, c + i * ldc + j, ldc, cols); break;
        case 3: vnni_tile(3, a + i * lda, lda, bp, groups, c + i * ldc + j, ldc, cols); break;
        case 2: vnni_tile(2, a + i * lda, lda, bp, groups, c + i * ldc + j, ldc, cols); break;
        case 1: vnni_tile(1, a + i * lda, lda, bp, groups, c + i * ldc + j, ldc, cols); break;
        default: break;
        }
    }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* bf16: bf16 activations × bf16 weights, fp32 accumulators (VDPBF16PS: two exact products added to each fp32 lane).  */
/* vs_bf16_gemm_emulated is the same loop nest with the instruction replaced by AVX-512F arithmetic in the order of    */
/* Intel's pseudocode (odd pair element first), so that the packing and the loops are tested on CPUs without BF16.    */
/* ---------------------------------------------------------------------------------------------------------------- */

#define BF16_TILE(NAME, TARGET, DP)                                                                                    \
    static inline __attribute__((always_inline)) TARGET void NAME(const int mr, const uint16_t *a, long lda,          \
                                                                  const uint16_t *b, int pairs, float *c, long ldc,  \
                                                                  int cols)                                          \
    {                                                                                                                  \
        __m512 acc[VS_MR][4];                                                                                          \
        for (int r = 0; r < VS_MR; r++)                                                                                \
            for (int q = 0; q < 4; q++) acc[r][q] = _mm512_setzero_ps();                                               \
        const uint16_t *ar[VS_MR];                                                                                     \
        for (int r = 0; r < VS_MR; r++) ar[r] = a + (r < mr ? r : 0) * lda;                                            \
        for (int g = 0; g < pairs; g++)                                                                                \
        {                                                                                                              \
            const uint16_t *bg = b + (long)g * 128;                                                                    \
            __m512i b0 = _mm512_load_si512((const void *)(bg + 0));                                                    \
            __m512i b1 = _mm512_load_si512((const void *)(bg + 32));                                                   \
            __m512i b2 = _mm512_load_si512((const void *)(bg + 64));                                                   \
            __m512i b3 = _mm512_load_si512((const void *)(bg + 96));                                                   \
            for (int r = 0; r < mr; r++)                                                                               \
            {                                                                                                          \
                int32_t v;                                                                                             \
                memcpy(&v, ar[r] + (long)g * 2, 4);                                                                    \
                __m512i av = _mm512_set1_epi32(v);                                                                     \
                acc[r][0] = DP(acc[r][0], av, b0);                                                                     \
                acc[r][1] = DP(acc[r][1], av, b1);                                                                     \
                acc[r][2] = DP(acc[r][2], av, b2);                                                                     \
                acc[r][3] = DP(acc[r][3], av, b3);                                                                     \
            }                                                                                                          \
        }                                                                                                              \
        for (int r = 0; r < mr; r++)                                                                                   \
            for (int q = 0; q < 4; q++) _mm512_mask_storeu_ps(c + r * ldc + q * 16, vs_mask(cols - q * 16), acc[r][q]); \
    }

#define BF16_GEMM(NAME, TILE, TARGET)                                                                                  \
    TARGET void NAME(const uint16_t *a, long lda, int m, const uint16_t *b, int n, int pairs, float *c, long ldc)      \
    {                                                                                                                  \
        long panel = (long)pairs * 128;                                                                                \
        for (int j = 0; j < n; j += VS_NR)                                                                             \
        {                                                                                                              \
            const uint16_t *bp = b + (j / VS_NR) * panel;                                                              \
            int cols = n - j;                                                                                          \
            int i = 0;                                                                                                 \
            for (; i + VS_MR <= m; i += VS_MR) TILE(VS_MR, a + i * lda, lda, bp, pairs, c + i * ldc + j, ldc, cols);   \
            switch (m - i)                                                                                             \
            {                                                                                                          \
            case 5: TILE(5, a + i * lda, lda, bp, pairs, c + i * ldc + j, ldc, cols); break;                           \
            case 4: TILE(4, a + i * lda, lda, bp, pairs, c + i * ldc + j, ldc, cols); break;                           \
            case 3: TILE(3, a + i * lda, lda, bp, pairs, c + i * ldc + j, ldc, cols); break;                           \
            case 2: TILE(2, a + i * lda, lda, bp, pairs, c + i * ldc + j, ldc, cols); break;                           \
            case 1: TILE(1, a + i * lda, lda, bp, pairs, c + i * ldc + j, ldc, cols); break;                           \
            default: break;                                                                                            \
            }                                                                                                          \
        }                                                                                                              \
    }

#define EMU_TARGET __attribute__((target("avx512f")))

/* acc + a_odd·b_odd + a_even·b_even per fp32 lane, each step rounded (products of bf16 values are exact in fp32). */
static inline __attribute__((always_inline)) EMU_TARGET __m512 vs_dpbf16_emulated(__m512 acc, __m512i a, __m512i b)
{
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 ao = _mm512_castsi512_ps(_mm512_and_si512(a, hi)), bo = _mm512_castsi512_ps(_mm512_and_si512(b, hi));
    __m512 ae = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), be = _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(ao, bo));
    return _mm512_add_ps(acc, _mm512_mul_ps(ae, be));
}

BF16_TILE(bf16_tile_emulated, EMU_TARGET, vs_dpbf16_emulated)
/* c[i, j] = Σ_k a[i, k]·w[j, k] (fp32) for i < m, j < n; a and the packed b are bf16 bit patterns, pairs = padded k / 2. */
BF16_GEMM(vs_bf16_gemm_emulated, bf16_tile_emulated, EMU_TARGET)

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#define BF16_TARGET __attribute__((target("avx512f,avx512bf16")))
/* Inline assembly for the same reason as VS_DPBUSD (the sum is symmetric in a and b). */
#define VS_DPBF16(acc, a, b) vs_dpbf16(acc, a, b)
static inline __attribute__((always_inline)) BF16_TARGET __m512 vs_dpbf16(__m512 acc, __m512i a, __m512i b)
{
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}
BF16_TILE(bf16_tile, BF16_TARGET, VS_DPBF16)
/* As vs_bf16_gemm_emulated with VDPBF16PS (which treats bf16 denormals as zero and flushes denormal results). */
BF16_GEMM(vs_bf16_gemm, bf16_tile, BF16_TARGET)
int vs_has_bf16_kernel(void) { return 1; }
#else
void vs_bf16_gemm(const uint16_t *a, long lda, int m, const uint16_t *b, int n, int pairs, float *c, long ldc)
{
    (void)a; (void)lda; (void)m; (void)b; (void)n; (void)pairs; (void)c; (void)ldc;
}
int vs_has_bf16_kernel(void) { return 0; }
#endif
