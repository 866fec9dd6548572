/* AVX2/FMA small-matrix GEMM: shapes too small for a packed GEMM's fixed
 * cost (packing, ~1 us per call) and batch-1 rows (where a packed GEMM would
 * pack the whole weight matrix for one row) run register-blocked
 * micro-kernels straight on the operands. Threads split columns; each column
 * block is computed the same way whatever the split, so results do not depend
 * on the thread count. */
#include "backend/x86/avx2/simd.h"
#include "backend/threadpool.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------ GEMM: op(B) = B (axpy form) */

/* C[MR x nr] block (nr <= 16) = alpha * A[MR x k] B[k x nr] + beta * C, with
 * A(i,p) at a[i*ars + p*acs] (covers A and Aᵀ) and B(p,j) at b[p*ldb + j].
 * Accumulators: MR x 2 ymm (MR <= 6: 12 of the 16 registers). */
NN_INLINE void ker_axpy(const int MR, int64_t k, const float *a, int64_t ars, int64_t acs,
                        const float *b, int64_t ldb, int64_t nr, float *c, int64_t ldc, float alpha,
                        float beta) {
    __m256 acc[6][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const bool full = nr == 16;
    const __m256i m0 = lane_mask(nr < 8 ? nr : 8), m1 = lane_mask(nr > 8 ? nr - 8 : 0);
    if (full) {
        for (int64_t p = 0; p < k; p++) {
            __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);
            for (int r = 0; r < MR; r++) {
                __m256 av = _mm256_broadcast_ss(a + r * ars + p * acs);
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
    } else {
        for (int64_t p = 0; p < k; p++) {
            __m256 b0 = _mm256_maskload_ps(b + p * ldb, m0);
            __m256 b1 = _mm256_maskload_ps(b + p * ldb + 8, m1);
            for (int r = 0; r < MR; r++) {
                __m256 av = _mm256_broadcast_ss(a + r * ars + p * acs);
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        __m256 v0 = _mm256_mul_ps(va, acc[r][0]), v1 = _mm256_mul_ps(va, acc[r][1]);
        if (full) {
            if (beta != 0.0f) {
                v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), v0);
                v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), v1);
            }
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
        } else {
            if (beta != 0.0f) {
                v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), v0);
                v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), v1);
            }
            _mm256_maskstore_ps(cr, m0, v0);
            _mm256_maskstore_ps(cr + 8, m1, v1);
        }
    }
}

/* Columns [j0, j1) of C for op(B) = B; A or Aᵀ by strides. */
static void small_axpy(bool trans_a, int64_t m, int64_t j0, int64_t j1, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    const int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    for (int64_t j = j0; j < j1; j += 16) {
        const int64_t nr = j1 - j < 16 ? j1 - j : 16;
        const float *bj = b + j;
        int64_t i = 0;
        for (; i + 6 <= m; i += 6)
            ker_axpy(6, k, a + i * ars, ars, acs, bj, ldb, nr, c + i * ldc + j, ldc, alpha, beta);
        const float *ai = a + i * ars;
        float *ci = c + i * ldc + j;
        switch (m - i) {
        case 5: ker_axpy(5, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 4: ker_axpy(4, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 3: ker_axpy(3, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 2: ker_axpy(2, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 1: ker_axpy(1, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        default: break;
        }
    }
}

/* ------------------------------------------ GEMM: op(B) = Bᵀ (dot form) */

/* C[MR x NR] = alpha * A[MR x k] · B[NR x k]ᵀ + beta * C: each entry a dot
 * product of two contiguous rows (a Linear layer's x · Wᵀ). */
NN_INLINE void ker_dot(const int MR, const int NR, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float *c, int64_t ldc, float alpha,
                       float beta) {
    __m256 acc[2][8];
    for (int r = 0; r < MR; r++)
        for (int s = 0; s < NR; s++) acc[r][s] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 av[2];
        for (int r = 0; r < MR; r++) av[r] = _mm256_loadu_ps(a + r * lda + p);
        for (int s = 0; s < NR; s++) {
            __m256 bv = _mm256_loadu_ps(b + s * ldb + p);
            for (int r = 0; r < MR; r++) acc[r][s] = _mm256_fmadd_ps(av[r], bv, acc[r][s]);
        }
    }
    if (p < k) {
        const __m256i mk = lane_mask(k - p);
        __m256 av[2];
        for (int r = 0; r < MR; r++) av[r] = _mm256_maskload_ps(a + r * lda + p, mk);
        for (int s = 0; s < NR; s++) {
            __m256 bv = _mm256_maskload_ps(b + s * ldb + p, mk);
            for (int r = 0; r < MR; r++) acc[r][s] = _mm256_fmadd_ps(av[r], bv, acc[r][s]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int s = 0; s < NR; s++) {
            float v = alpha * hsum(acc[r][s]);
            float *cp = c + r * ldc + s;
            *cp = beta != 0.0f ? v + beta * *cp : v;
        }
}

/* One row of C (m == 1 or the last odd row): 8 independent dot products at a
 * time keep both FMA pipes busy. */
static void dot_row(int64_t j0, int64_t j1, int64_t k, float alpha, const float *a, const float *b,
                    int64_t ldb, float beta, float *c) {
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) ker_dot(1, 8, k, a, 0, b + j * ldb, ldb, c + j, 0, alpha, beta);
    for (; j + 4 <= j1; j += 4) ker_dot(1, 4, k, a, 0, b + j * ldb, ldb, c + j, 0, alpha, beta);
    for (; j < j1; j++) ker_dot(1, 1, k, a, 0, b + j * ldb, ldb, c + j, 0, alpha, beta);
}

/* Columns [j0, j1) of C for A · Bᵀ. */
static void small_dot(int64_t m, int64_t j0, int64_t j1, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 2 <= m; i += 2) {
        const float *ai = a + i * lda;
        float *ci = c + i * ldc;
        int64_t j = j0;
        for (; j + 4 <= j1; j += 4)
            ker_dot(2, 4, k, ai, lda, b + j * ldb, ldb, ci + j, ldc, alpha, beta);
        for (; j < j1; j++) ker_dot(2, 1, k, ai, lda, b + j * ldb, ldb, ci + j, ldc, alpha, beta);
    }
    if (i < m) dot_row(j0, j1, k, alpha, a + i * lda, b, ldb, beta, c + i * ldc);
}

typedef struct gemm_args {
    bool ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc;
    int parts; /* gemv_part: the parts C's columns are cut into */
} gemm_args;

static void gemm_cols(void *ctx, int64_t j0, int64_t j1) {
    const gemm_args *g = ctx;
    if (g->tb)
        small_dot(g->m, j0, j1, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c, g->ldc);
    else
        small_axpy(g->ta, g->m, j0, j1, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c,
                   g->ldc);
}

/* A few rows times Bᵀ (batch-1 inference): split as in the AVX-512 tier
 * (x86/avx512/gemm_small.c, GEMV_GRAIN): threads once each streams 256 KB
 * of B or more, thread t computing the t-th of nt contiguous parts of C's
 * columns as one task, so each core keeps its part of B in its own L2. */
#define GEMV_GRAIN (1 << 16)

static void gemv_part(void *ctx, int64_t t, int thread) {
    (void)thread;
    const gemm_args *g = ctx;
    int64_t j0, j1;
    nn__chunk(g->n, g->parts, (int)t, 16, &j0, &j1);
    small_dot(g->m, j0, j1, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c, g->ldc);
}

void nn__avx2_sgemm_small_nt(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n,
                             int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                             int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (trans_a && trans_b) { /* rare: no fast path of our own */
        nn__ref_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    gemm_args g = {trans_a, trans_b, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc, 1};
    if (trans_b && m <= 2) {
        const int nt = nn__threads_cap(threads, n * k, GEMV_GRAIN);
        if (nt > 1) {
            g.parts = nt;
            nn__parallel_for_max(nt, nt, gemv_part, &g);
            return;
        }
    }
    /* Threads split columns; each column block is computed the same way
     * whatever the split, so results do not depend on the thread count. */
    const int nt = nn__threads_cap(threads, m * n * k, 1 << 17);
    nn__parallel_range(n, nt, 16, gemm_cols, &g);
}

void nn__avx2_sgemm_small(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                          float *c, int64_t ldc) {
    nn__avx2_sgemm_small_nt(nn__num_threads(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                            beta, c, ldc);
}
