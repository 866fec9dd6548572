/* AVX2 tier: GEMM. A 6x16 register tile (12 ymm accumulators, two B vectors
 * and one broadcast A value: 15 of the 16 ymm registers) for the packed,
 * cache-blocked driver (backend/gemm_blocked.c), and the dispatch between
 * the small-matrix path (gemm_small.c), the blocked GEMM and BLIS. */
#include "backend/x86/avx2/simd.h"
#include "backend/x86/avx2/pack.h"

#define MRP 6  /* rows of a register tile (A panel width) */
#define NVP 2  /* ymm vectors across a tile */
#define NRP 16 /* columns of a register tile (B panel width) */

/* C[MR x nr] (nr <= 8*NV) = alpha Ap Bp + beta C; MR <= MRP, NV <= NVP.
 * Element (r, p) of the A micro-panel at ap[p*acs + r*ars]: packed (ars 1,
 * acs MRP) or read in place from rows (ars lda, acs 1) or columns (ars 1,
 * acs lda) of A. */
NN_INLINE void ukr_s(const int MR, const int NV, int64_t kc, const float *restrict ap,
                     const int64_t ars, const int64_t acs, const float *restrict bp, float *c,
                     int64_t ldc, int nr, const volatile float *ab) {
    __m256 acc[MRP][NVP];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m256 bv[NVP];
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) bv[v] = _mm256_load_ps(bp + p * NRP + 8 * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            const __m256 av = _mm256_broadcast_ss(ap + p * acs + r * ars);
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const float alpha = ab[0], beta = ab[1];
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const int last = nr - 8 * (NV - 1); /* 1..8 columns in the last vector */
    const __m256i lm = lane_mask(last);
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            __m256 o = _mm256_mul_ps(va, acc[r][v]);
            if (v < NV - 1 || last == 8) {
                if (beta != 0.0f) o = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8 * v), o);
                _mm256_storeu_ps(cr + 8 * v, o);
            } else {
                if (beta != 0.0f) o = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8 * v, lm), o);
                _mm256_maskstore_ps(cr + 8 * v, lm, o);
            }
        }
    }
}

#define ukr(MR, NV, kc, ap, bp, c, ldc, nr, ab) ukr_s(MR, NV, kc, ap, ars, acs, bp, c, ldc, nr, ab)

#define UKR_NV(R)                                                                                  \
    case R:                                                                                        \
        if (nv == 1)                                                                               \
            ukr(R, 1, kc, ap, bp, c, ldc, nr, ab);                                                 \
        else                                                                                       \
            ukr(R, 2, kc, ap, bp, c, ldc, nr, ab);                                                 \
        break;

NN_INLINE void ukr_any(int64_t kc, const float *ap, const int64_t ars, const int64_t acs,
                       const float *bp, float *c, int64_t ldc, int mr, int nr, float alpha,
                       float beta) {
    /* alpha and beta wait in memory: kept in registers across the K loop
     * they push accumulators out of them (gcc then stores every accumulator
     * on every iteration). */
    const volatile float ab[2] = {alpha, beta};
    if (mr == MRP && nr == NRP) {
        ukr(MRP, NVP, kc, ap, bp, c, ldc, nr, ab);
        return;
    }
    const int nv = (nr + 7) / 8;
    switch (mr) {
        UKR_NV(1)
        UKR_NV(2)
        UKR_NV(3)
        UKR_NV(4)
        UKR_NV(5)
        UKR_NV(6)
    default: break;
    }
}

static void avx2_ukr(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int mr,
                     int nr, float alpha, float beta) {
    ukr_any(kc, ap, 1, MRP, bp, c, ldc, mr, nr, alpha, beta);
}

/* A read in place: mr rows of an untransposed A (gemm_blocked.h's
 * kernel_rows), or mr columns of a transposed one (kernel_cols). */
static void avx2_ukr_rows(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                          int64_t ldc, int mr, int nr, float alpha, float beta) {
    ukr_any(kc, a, lda, 1, bp, c, ldc, mr, nr, alpha, beta);
}
static void avx2_ukr_cols(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                          int64_t ldc, int mr, int nr, float alpha, float beta) {
    ukr_any(kc, a, 1, lda, bp, c, ldc, mr, nr, alpha, beta);
}

static void avx2_pack(const float *x, int64_t ld, bool kmajor, int64_t rows, int64_t kc, int w,
                      float *dst) {
    if (w == MRP)
        pack_panels(MRP, x, ld, kmajor, rows, kc, dst);
    else
        pack_panels(NRP, x, ld, kmajor, rows, kc, dst);
}

static nn__gemm_plan g_plan = {"avx2 6x16", MRP,  NRP,           0,    0,
                               0,           avx2_pack, avx2_ukr, avx2_ukr_rows, NULL,
                               avx2_ukr_cols, NULL};
static nn__sgemm_nt_fn g_large; /* BLIS when it is the provider, else NULL */

const nn__gemm_plan *nn__avx2_gemm_plan(void) { return &g_plan; }

void nn__avx2_sgemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                            float beta, float *c, int64_t ldc) {
    nn__gemm_blocked(&g_plan, nn__num_threads(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                     beta, c, ldc);
}

/* Below this many multiply-adds the packed GEMM's fixed cost (packing, ~1 us
 * per call) outweighs its better blocking (measured on Zen 3, see
 * tests/bench); a handful of rows (batch-1 inference) streams B once instead
 * of packing all of it for them. */
#define SMALL_GEMM_WORK (64 * 64 * 64)

static void avx2_sgemm_nt(int nt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                          float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    const double work = (double)m * (double)n * (double)k;
    const bool few_cols_dot = trans_b && !trans_a && n <= 16;
    if (!(trans_a && trans_b) && (m <= 4 || work <= SMALL_GEMM_WORK || few_cols_dot))
        nn__avx2_sgemm_small_nt(nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else if (g_large)
        g_large(nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        nn__gemm_blocked(&g_plan, nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                         ldc);
}

static void avx2_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    avx2_sgemm_nt(nn__num_threads(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                  ldc);
}

static void avx2_sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t m, int64_t n,
                               int64_t k, float alpha, const float *a, int64_t lda,
                               int64_t stride_a, const float *b, int64_t ldb, int64_t stride_b,
                               float beta, float *c, int64_t ldc, int64_t stride_c) {
    nn__gemm_batched(avx2_sgemm_nt, batch, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b,
                     ldb, stride_b, beta, c, ldc, stride_c);
}

void nn__avx2_fill_gemm(nn__gemm_kernels *t, nn__sgemm_nt_fn large, int64_t l1d, int64_t l2,
                        int64_t l3) {
    nn__gemm_plan_init(&g_plan, l1d, l2, l3);
    g_large = large;
    t->sgemm = avx2_sgemm;
    t->sgemm_batched = avx2_sgemm_batched;
}

/* The FMA throughput probe (nn__tier_fma_peak): 12 independent accumulator
 * chains, enough to cover the FMA latency on both pipes. Returns a value
 * derived from every lane so the loop cannot be dropped. */
float nn__avx2_fma_loop(int64_t iters) {
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
    __m256 a[12];
    for (int j = 0; j < 12; j++) a[j] = _mm256_set1_ps((float)j);
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], x, y);
    __m256 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, a[j]);
    return hsum(s);
}
