/* AVX2 tier, half-precision domain: C = A x op(B) with f32 A and f16 / bf16
 * B (backend/half.h), B converted in registers as it is read: F16C's
 * vcvtph2ps for f16, a zero-extend and 16-bit shift for bf16; FMA into f32.
 * Built with -mf16c (its own archive) and installed only with F16C.
 *   trans_b (Linear, B [N, K]): blocks of 2 rows of A x 4 rows of B, each
 *     an 8-lane partial dot product over K, summed across lanes at the end.
 *   else (matmul, B [K, N]): per row of A, 32 columns of C at a time,
 *     A[i, p] broadcast against row p of B.
 * Threads split N (blocks of whole rows of B / columns of C): every output
 * is summed by one thread in a fixed order, whatever the thread count. */
#include "backend/x86/avx2/simd.h"

#include <string.h>

/* Threads for every HG_GRAIN multiply-adds. */
#define HG_GRAIN (1 << 18)

/* 8 halves at p -> 8 floats. */
NN_INLINE __m256 ld8(const uint16_t *p, bool bf16) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                : _mm256_cvtph_ps(h);
}

/* The first r (< 8) halves at p, zeros after. */
NN_INLINE __m256 ld8_part(const uint16_t *p, int64_t r, bool bf16) {
    uint16_t buf[8] = {0};
    memcpy(buf, p, (size_t)r * sizeof *p);
    return ld8(buf, bf16);
}

typedef struct hg_args {
    int64_t m, n, k, lda, ldb, ldc;
    const float *a;
    const uint16_t *b;
    float *c;
} hg_args;

/* MB (1 or 2) rows of A from i x 4 rows of B: 8-lane partial sums. */
NN_INLINE void nt_block(const hg_args *g, int64_t i, int64_t j, int64_t jb, const uint16_t *const *b,
                        int MB, bool bf16) {
    const int64_t k = g->k, k8 = k & ~(int64_t)7, r = k - k8;
    const float *a0 = g->a + i * g->lda, *a1 = a0 + (MB > 1 ? g->lda : 0);
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    for (int64_t p = 0; p <= k8; p += 8) {
        __m256 x0, x1 = _mm256_setzero_ps(), w0, w1, w2, w3;
        if (p < k8) {
            x0 = _mm256_loadu_ps(a0 + p);
            if (MB > 1) x1 = _mm256_loadu_ps(a1 + p);
            w0 = ld8(b[0] + p, bf16), w1 = ld8(b[1] + p, bf16);
            w2 = ld8(b[2] + p, bf16), w3 = ld8(b[3] + p, bf16);
        } else if (r) {
            const __m256i tail = lane_mask(r);
            x0 = _mm256_maskload_ps(a0 + p, tail);
            if (MB > 1) x1 = _mm256_maskload_ps(a1 + p, tail);
            w0 = ld8_part(b[0] + p, r, bf16), w1 = ld8_part(b[1] + p, r, bf16);
            w2 = ld8_part(b[2] + p, r, bf16), w3 = ld8_part(b[3] + p, r, bf16);
        } else {
            break;
        }
        c00 = _mm256_fmadd_ps(x0, w0, c00), c01 = _mm256_fmadd_ps(x0, w1, c01);
        c02 = _mm256_fmadd_ps(x0, w2, c02), c03 = _mm256_fmadd_ps(x0, w3, c03);
        if (MB > 1) {
            c10 = _mm256_fmadd_ps(x1, w0, c10), c11 = _mm256_fmadd_ps(x1, w1, c11);
            c12 = _mm256_fmadd_ps(x1, w2, c12), c13 = _mm256_fmadd_ps(x1, w3, c13);
        }
    }
    float s0[4] = {hsum(c00), hsum(c01), hsum(c02), hsum(c03)};
    memcpy(g->c + i * g->ldc + j, s0, (size_t)jb * sizeof(float));
    if (MB > 1) {
        float s1[4] = {hsum(c10), hsum(c11), hsum(c12), hsum(c13)};
        memcpy(g->c + (i + 1) * g->ldc + j, s1, (size_t)jb * sizeof(float));
    }
}

/* trans_b: C[i, j] = sum_p A[i, p] B[j, p] for j in [lo, hi). */
NN_INLINE void hg_nt(const hg_args *g, int64_t lo, int64_t hi, bool bf16) {
    for (int64_t j = lo; j < hi; j += 4) {
        const int64_t jb = hi - j < 4 ? hi - j : 4;
        const uint16_t *b[4];
        for (int q = 0; q < 4; q++) b[q] = g->b + (j + (q < jb ? q : 0)) * g->ldb;
        int64_t i = 0;
        for (; i + 2 <= g->m; i += 2) nt_block(g, i, j, jb, b, 2, bf16);
        if (i < g->m) nt_block(g, i, j, jb, b, 1, bf16);
    }
}

/* not trans_b: C[i, j] = sum_p A[i, p] B[p, j] for j in [lo, hi). */
NN_INLINE void hg_nn(const hg_args *g, int64_t lo, int64_t hi, bool bf16) {
    for (int64_t i = 0; i < g->m; i++) {
        const float *a = g->a + i * g->lda;
        float *c = g->c + i * g->ldc;
        int64_t j = lo;
        for (; j + 32 <= hi; j += 32) {
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            const uint16_t *b = g->b + j;
            for (int64_t p = 0; p < g->k; p++, b += g->ldb) {
                const __m256 x = _mm256_broadcast_ss(a + p);
                c0 = _mm256_fmadd_ps(x, ld8(b, bf16), c0);
                c1 = _mm256_fmadd_ps(x, ld8(b + 8, bf16), c1);
                c2 = _mm256_fmadd_ps(x, ld8(b + 16, bf16), c2);
                c3 = _mm256_fmadd_ps(x, ld8(b + 24, bf16), c3);
            }
            _mm256_storeu_ps(c + j, c0), _mm256_storeu_ps(c + j + 8, c1);
            _mm256_storeu_ps(c + j + 16, c2), _mm256_storeu_ps(c + j + 24, c3);
        }
        for (; j < hi; j += 8) {
            const int64_t r = hi - j < 8 ? hi - j : 8;
            __m256 c0 = _mm256_setzero_ps();
            const uint16_t *b = g->b + j;
            for (int64_t p = 0; p < g->k; p++, b += g->ldb)
                c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + p),
                                     r == 8 ? ld8(b, bf16) : ld8_part(b, r, bf16), c0);
            _mm256_maskstore_ps(c + j, lane_mask(r), c0);
        }
    }
}

/* Batch 1 (m == 1, trans_b): c[j] = a . B[j, :] for j in [lo, hi), the
 * decode step's matrix-vector product, bound by the bytes of B it streams.
 * Four rows of B at a time, 16 halves of each per step (two 8-lane
 * conversions and FMAs into two accumulators: eight independent chains),
 * unmasked but for the last partial step; every other step it prefetches
 * the line of the next block's rows at the same offset, so a block's loads
 * find them in cache. bf16: a 32-bit lane holds two weights, the even one
 * in its low half: shifted up it is that weight as f32, masked to its high
 * half the odd one; so A is split into even and odd elements once per step
 * (shared by the rows) instead of widening B. */
NN_INLINE void gemv_rows(const float *a, int64_t k, const uint16_t *const *b,
                         const uint16_t *const *nx, float *c, int64_t jb, bool bf16) {
    __m256 s0[4], s1[4];
    for (int y = 0; y < 4; y++) s0[y] = s1[y] = _mm256_setzero_ps();
    const int64_t k16 = k & ~(int64_t)15;
    const __m256i hi16 = _mm256_set1_epi32((int)0xFFFF0000u);
    int64_t p = 0;
    for (; p < k16; p += 16) {
        __m256 x0 = _mm256_loadu_ps(a + p), x1 = _mm256_loadu_ps(a + p + 8);
        if (bf16) { /* x0 = even elements, x1 = odd, in the lanes' order */
            const __m256 e = _mm256_shuffle_ps(x0, x1, 0x88), o = _mm256_shuffle_ps(x0, x1, 0xDD);
            /* shuffle_ps works per 128-bit half: lanes are (0 2 8 10 4 6 12 14) */
            x0 = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
            x1 = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
        }
        for (int y = 0; y < 4; y++) {
            if (!(p & 31)) _mm_prefetch((const char *)(nx[y] + p), _MM_HINT_T0);
            const __m256i h = _mm256_loadu_si256((const __m256i *)(b[y] + p));
            __m256 w0, w1;
            if (bf16) {
                w0 = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
                w1 = _mm256_castsi256_ps(_mm256_and_si256(h, hi16));
            } else {
                w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
                w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
            }
            s0[y] = _mm256_fmadd_ps(x0, w0, s0[y]);
            s1[y] = _mm256_fmadd_ps(x1, w1, s1[y]);
        }
    }
    for (; p < k; p += 8) {
        const int64_t r = k - p < 8 ? k - p : 8;
        const __m256 x0 = r == 8 ? _mm256_loadu_ps(a + p) : _mm256_maskload_ps(a + p, lane_mask(r));
        for (int y = 0; y < 4; y++)
            s0[y] = _mm256_fmadd_ps(x0, r == 8 ? ld8(b[y] + p, bf16) : ld8_part(b[y] + p, r, bf16),
                                    s0[y]);
    }
    for (int64_t y = 0; y < jb; y++) c[y] = hsum(_mm256_add_ps(s0[y], s1[y]));
}

NN_INLINE void hg_gemv(const hg_args *g, int64_t lo, int64_t hi, bool bf16) {
    const int64_t ldb = g->ldb;
    for (int64_t j = lo; j < hi; j += 4) {
        const int64_t jb = hi - j < 4 ? hi - j : 4;
        const uint16_t *b[4], *nx[4];
        for (int y = 0; y < 4; y++) {
            b[y] = g->b + (j + (y < jb ? y : 0)) * ldb;
            const int64_t r = j + 4 + y; /* the next block's row (this one's at the end) */
            nx[y] = g->b + (r < hi ? r : j + (y < jb ? y : 0)) * ldb;
        }
        gemv_rows(g->a, g->k, b, nx, g->c + j, jb, bf16);
    }
}

static void gv_f16(void *ctx, int64_t lo, int64_t hi) { hg_gemv(ctx, lo, hi, false); }
static void gv_bf16(void *ctx, int64_t lo, int64_t hi) { hg_gemv(ctx, lo, hi, true); }
static void nt_f16(void *ctx, int64_t lo, int64_t hi) { hg_nt(ctx, lo, hi, false); }
static void nt_bf16(void *ctx, int64_t lo, int64_t hi) { hg_nt(ctx, lo, hi, true); }
static void nn_f16(void *ctx, int64_t lo, int64_t hi) { hg_nn(ctx, lo, hi, false); }
static void nn_bf16(void *ctx, int64_t lo, int64_t hi) { hg_nn(ctx, lo, hi, true); }

static void half_gemm(bool bf16, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
                      int64_t lda, const uint16_t *b, int64_t ldb, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    hg_args g = {m, n, k, lda, ldb, ldc, a, b, c};
    const int nt = nn__threads_for(m * n * (k ? k : 1), HG_GRAIN);
    nn__range_fn body = trans_b ? m == 1 ? (bf16 ? gv_bf16 : gv_f16) : (bf16 ? nt_bf16 : nt_f16)
                                : (bf16 ? nn_bf16 : nn_f16);
    nn__parallel_range(n, nt, trans_b ? 4 : 32, body, &g);
}

void nn__avx2_fill_half_gemm(nn__half_kernels *t) { t->gemm = half_gemm; }
