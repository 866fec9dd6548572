/* AVX-512 BF16 additions to the AVX-512 tier's half-precision domain
 * (backend/half.h), compiled with -mavx512bf16 (its own archive) and
 * installed only when CPUID reports AVX512_BF16: f32 -> bf16 with
 * vcvtneps2bf16. That instruction treats f32 denormal inputs as zero; the
 * reference rounds them like any value, so lanes holding a denormal are
 * redone with the integer rounding (rare, and the result stays bit-identical
 * to the reference). */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"

#include <string.h>

NN_INLINE __mmask16 mask16(size_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1u);
}

NN_INLINE __m256i bh_to_si(__m256bh v) {
    __m256i r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static void f32_to_bf16(const float *s, uint16_t *d, size_t n) {
    const __m512i expo = _mm512_set1_epi32(0x7f800000), mant = _mm512_set1_epi32(0x007fffff);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, s + i);
        __m256i h = bh_to_si(_mm512_cvtneps_pbh(x));
        const __m512i xi = _mm512_castps_si512(x);
        const __mmask16 dn = _mm512_mask_test_epi32_mask(
            _mm512_testn_epi32_mask(xi, expo), xi, mant); /* exponent 0, mantissa != 0 */
        if (dn) h = _mm256_mask_mov_epi16(h, dn, nn__avx512_bf16_round16(xi));
        _mm256_mask_storeu_epi16(d + i, m, h);
    }
}

void nn__avx512bf16_fill_half(nn__half_kernels *t) {
    t->cvt.f32_to_bf16 = f32_to_bf16;
    t->conv_passes = nn__avx512bf16_conv_passes;
    t->conv_fwd = nn__avx512bf16_conv_fwd;
}

NN_INLINE __m512bh si_to_bh(__m512i v) {
    __m512bh r;
    memcpy(&r, &v, sizeof r);
    return r;
}

/* C[i, j] = sum_p A[i, p] B[j, p] for j in [lo, hi), B bf16 [N, K]: A is
 * rounded to bf16 32 values at a time (vcvtne2ps2bf16) and multiplied with
 * vdpbf16ps, which sums pairs of products into 16 f32 lanes. Blocks of 4
 * rows of A x 4 rows of B; masked tails read zeros. */
/* MB rows of A x NB rows of B (br): see nn__avx512bf16_gemm_nt. */
NN_INLINE void dp_block(int64_t k, const float *a, int64_t lda, const uint16_t *const *br,
                        float *c, int64_t ldc, int64_t jb, int MB, int NB) {
    __m512 acc[4][8];
    for (int x = 0; x < 4; x++) /* all of it: unused ones cost nothing */
        for (int y = 0; y < 8; y++) acc[x][y] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p += 32) {
        const int64_t r = k - p;
        const __mmask16 mlo = mask16(r > 0 ? (size_t)r : 0),
                        mhi = mask16(r > 16 ? (size_t)(r - 16) : 0);
        const __mmask32 m32 = r >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << r) - 1u);
        __m512bh w[8];
        for (int y = 0; y < NB; y++) w[y] = si_to_bh(_mm512_maskz_loadu_epi16(m32, br[y] + p));
        for (int x = 0; x < MB; x++) {
            const __m512 vlo = _mm512_maskz_loadu_ps(mlo, a + x * lda + p);
            const __m512 vhi = _mm512_maskz_loadu_ps(mhi, a + x * lda + p + 16);
            const __m512bh v = _mm512_cvtne2ps_pbh(vhi, vlo);
            for (int y = 0; y < NB; y++) acc[x][y] = _mm512_dpbf16_ps(acc[x][y], v, w[y]);
        }
    }
    for (int x = 0; x < MB; x++)
        for (int64_t y = 0; y < jb; y++) c[x * ldc + y] = _mm512_reduce_add_ps(acc[x][y]);
}

/* Values of A rounded to bf16 at a time by the batch-1 kernel (a stack
 * buffer, 8 KiB). */
#define DP_KC 4096

/* Batch 1: c[j] = a . B[j, :] for j in [lo, hi), one row of B at a time (a
 * single sequential stream: the rows follow each other in memory, which the
 * hardware prefetcher reads ahead; 8 rows at once, as dp_block does, are 8
 * streams K x 2 bytes apart). a is rounded to bf16 once per DP_KC values
 * into a zero-padded buffer, so each 32 weights cost one load and one
 * vdpbf16ps; eight accumulators (256 weights a step) keep the chains
 * apart. Longer rows are summed DP_KC values at a time, the chunks' sums
 * added in order. */
static void dp_gemv(int64_t k, const float *a, const uint16_t *b, int64_t ldb, float *c,
                    int64_t lo, int64_t hi) {
    _Alignas(64) uint16_t ab[DP_KC];
    for (int64_t k0 = 0; k0 < k; k0 += DP_KC) {
        const int64_t kc = k - k0 < DP_KC ? k - k0 : DP_KC, k32 = (kc + 31) & ~(int64_t)31;
        for (int64_t p = 0; p < k32; p += 32) {
            const int64_t r = kc - p;
            const __m512 vlo = _mm512_maskz_loadu_ps(mask16((size_t)r), a + k0 + p);
            const __m512 vhi = _mm512_maskz_loadu_ps(mask16(r > 16 ? (size_t)(r - 16) : 0),
                                                     a + k0 + p + 16);
            const __m512bh v = _mm512_cvtne2ps_pbh(vhi, vlo);
            memcpy(ab + p, &v, sizeof v);
        }
        const int64_t k256 = kc & ~(int64_t)255;
        const int64_t r = kc & 31;
        const __mmask32 mt = r ? (__mmask32)((1u << r) - 1u) : (__mmask32)0xFFFFFFFFu;
        for (int64_t j = lo; j < hi; j++) {
            const uint16_t *bj = b + j * ldb + k0;
            __m512 s[8];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) s[u] = _mm512_setzero_ps();
            int64_t p = 0;
            for (; p < k256; p += 256)
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++)
                    s[u] = _mm512_dpbf16_ps(
                        s[u], si_to_bh(_mm512_load_si512((const void *)(ab + p + 32 * u))),
                        si_to_bh(_mm512_loadu_si512((const void *)(bj + p + 32 * u))));
            for (int u = 0; p < k32; p += 32, u++) {
                const __mmask32 m = p + 32 <= kc ? (__mmask32)0xFFFFFFFFu : mt;
                s[u] = _mm512_dpbf16_ps(s[u],
                                        si_to_bh(_mm512_load_si512((const void *)(ab + p))),
                                        si_to_bh(_mm512_maskz_loadu_epi16(m, bj + p)));
            }
            const __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]),
                                                         _mm512_add_ps(s[2], s[3])),
                                           _mm512_add_ps(_mm512_add_ps(s[4], s[5]),
                                                         _mm512_add_ps(s[6], s[7])));
            const float sum = _mm512_reduce_add_ps(t);
            c[j] = k0 ? c[j] + sum : sum;
        }
    }
}

/* C[i, j] = sum_p A[i, p] B[j, p] for j in [lo, hi), B bf16 [N, K]: A is
 * rounded to bf16 32 values at a time (vcvtne2ps2bf16) and multiplied with
 * vdpbf16ps, which sums pairs of products into 16 f32 lanes. Blocks of up
 * to 4 rows of A x 4 rows of B; batch 1 streams rows (dp_gemv); masked
 * tails read zeros. */
void nn__avx512bf16_gemm_nt(int64_t m, int64_t k, const float *a, int64_t lda, const uint16_t *b,
                            int64_t ldb, float *c, int64_t ldc, int64_t lo, int64_t hi) {
    if (m == 1 && k > 0) {
        dp_gemv(k, a, b, ldb, c, lo, hi);
        return;
    }
    const int NB = m == 1 ? 8 : 4; /* batch 1: eight independent chains */
    for (int64_t j = lo; j < hi; j += NB) {
        const int64_t jb = hi - j < NB ? hi - j : NB;
        const uint16_t *br[8];
        for (int y = 0; y < NB; y++) br[y] = b + (j + (y < jb ? y : 0)) * ldb;
        if (NB == 8) {
            dp_block(k, a, lda, br, c + j, ldc, jb, 1, 8);
            continue;
        }
        int64_t i = 0;
        for (; i + 4 <= m; i += 4)
            dp_block(k, a + i * lda, lda, br, c + i * ldc + j, ldc, jb, 4, 4);
        const float *ai = a + i * lda;
        float *ci = c + i * ldc + j;
        switch (m - i) {
        case 3: dp_block(k, ai, lda, br, ci, ldc, jb, 3, 4); break;
        case 2: dp_block(k, ai, lda, br, ci, ldc, jb, 2, 4); break;
        case 1: dp_block(k, ai, lda, br, ci, ldc, jb, 1, 4); break;
        default: break;
        }
    }
}
