/* AVX-512 small-matrix GEMM: the AVX2 tier's unpacked path (gemm_small.c in
 * x86/avx2) with 16-lane vectors and masked tails. For batch-1 rows the
 * operands stream once from L2 and the vector width halves the loads and
 * FMAs per element. Threads split columns; each column block is computed the
 * same way whatever the split, so results do not depend on the thread
 * count. */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"
#include "backend/threadpool.h"

/* Lanes [0, r) set, r in 0..16. */
NN_INLINE __mmask16 mask16(int64_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r < 0 ? 0 : r)) - 1u);
}

/* ------------------------------------------ op(B) = B (axpy form) */

/* C[MR x nr] block (nr <= 32) = alpha * A[MR x k] B[k x nr] + beta * C, with
 * A(i,p) at a[i*ars + p*acs] (covers A and Aᵀ) and B(p,j) at b[p*ldb + j]. */
NN_INLINE void ker_axpy(const int MR, int64_t k, const float *a, int64_t ars, int64_t acs,
                        const float *b, int64_t ldb, int64_t nr, float *c, int64_t ldc,
                        const volatile float *ab) {
    __m512 acc[6][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
    for (int64_t p = 0; p < k; p++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b + p * ldb);
        const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + p * ldb + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r * ars + p * acs]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    const float alpha = ab[0], beta = ab[1];
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        __m512 v0 = _mm512_mul_ps(va, acc[r][0]), v1 = _mm512_mul_ps(va, acc[r][1]);
        if (beta != 0.0f) {
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

/* Columns [j0, j1) of C for op(B) = B; A or Aᵀ by strides. */
static void small_axpy(bool trans_a, int64_t m, int64_t j0, int64_t j1, int64_t k, const float *a,
                       int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                       const volatile float *ab) {
    const int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    for (int64_t j = j0; j < j1; j += 32) {
        const int64_t nr = j1 - j < 32 ? j1 - j : 32;
        const float *bj = b + j;
        int64_t i = 0;
        for (; i + 6 <= m; i += 6)
            ker_axpy(6, k, a + i * ars, ars, acs, bj, ldb, nr, c + i * ldc + j, ldc, ab);
        const float *ai = a + i * ars;
        float *ci = c + i * ldc + j;
        switch (m - i) {
        case 5: ker_axpy(5, k, ai, ars, acs, bj, ldb, nr, ci, ldc, ab); break;
        case 4: ker_axpy(4, k, ai, ars, acs, bj, ldb, nr, ci, ldc, ab); break;
        case 3: ker_axpy(3, k, ai, ars, acs, bj, ldb, nr, ci, ldc, ab); break;
        case 2: ker_axpy(2, k, ai, ars, acs, bj, ldb, nr, ci, ldc, ab); break;
        case 1: ker_axpy(1, k, ai, ars, acs, bj, ldb, nr, ci, ldc, ab); break;
        default: break;
        }
    }
}

/* ------------------------------------------ op(B) = Bᵀ (dot form) */

/* C[MR x NR] = alpha * A[MR x k] · B[NR x k]ᵀ + beta * C: each entry a dot
 * product of two contiguous rows (a Linear layer's x · Wᵀ). */
NN_INLINE void ker_dot(const int MR, const int NR, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float *c, int64_t ldc,
                       const volatile float *ab) {
    __m512 acc[2][8];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int s = 0; s < NR; s++) acc[r][s] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
        __m512 av[2];
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) av[r] = _mm512_loadu_ps(a + r * lda + p);
#pragma GCC unroll 8
        for (int s = 0; s < NR; s++) {
            const __m512 bv = _mm512_loadu_ps(b + s * ldb + p);
#pragma GCC unroll 8
            for (int r = 0; r < MR; r++) acc[r][s] = _mm512_fmadd_ps(av[r], bv, acc[r][s]);
        }
    }
    if (p < k) {
        const __mmask16 mk = mask16(k - p);
        __m512 av[2];
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) av[r] = _mm512_maskz_loadu_ps(mk, a + r * lda + p);
#pragma GCC unroll 8
        for (int s = 0; s < NR; s++) {
            const __m512 bv = _mm512_maskz_loadu_ps(mk, b + s * ldb + p);
#pragma GCC unroll 8
            for (int r = 0; r < MR; r++) acc[r][s] = _mm512_fmadd_ps(av[r], bv, acc[r][s]);
        }
    }
    const float alpha = ab[0], beta = ab[1];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int s = 0; s < NR; s++) {
            float v = alpha * _mm512_reduce_add_ps(acc[r][s]);
            float *cp = c + r * ldc + s;
            *cp = beta != 0.0f ? v + beta * *cp : v;
        }
}

/* One row of C: 8 independent dot products at a time keep both FMA pipes
 * busy (each in ker_dot's order, the order of the paired rows). */
static void dot_row(int64_t j0, int64_t j1, int64_t k, const float *a, const float *b, int64_t ldb,
                    float *c, const volatile float *ab) {
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) ker_dot(1, 8, k, a, 0, b + j * ldb, ldb, c + j, 0, ab);
    for (; j + 4 <= j1; j += 4) ker_dot(1, 4, k, a, 0, b + j * ldb, ldb, c + j, 0, ab);
    for (; j < j1; j++) ker_dot(1, 1, k, a, 0, b + j * ldb, ldb, c + j, 0, ab);
}

/* R (1 or 2) dot products a · b[r * ldb] of k floats, sharing each load of
 * a: for each, four accumulators over 64-float steps, then 16-float steps
 * and a masked tail (an order of the additions that depends on k only, so a
 * row's result does not depend on R, nor on which rows a thread's part of C
 * pairs up). */
NN_INLINE void dotr(const int R, int64_t k, const float *a, const float *b, int64_t ldb,
                    float *out) {
    __m512 s[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) s[r][0] = s[r][1] = s[r][2] = s[r][3] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 64 <= k; p += 64) {
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            const __m512 av = _mm512_loadu_ps(a + p + 16 * q);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                s[r][q] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + r * ldb + p + 16 * q), s[r][q]);
        }
    }
    for (; p + 16 <= k; p += 16) {
        const __m512 av = _mm512_loadu_ps(a + p);
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
            s[r][0] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + r * ldb + p), s[r][0]);
    }
    if (p < k) {
        const __mmask16 mk = mask16(k - p);
        const __m512 av = _mm512_maskz_loadu_ps(mk, a + p);
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
            s[r][1] = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(mk, b + r * ldb + p), s[r][1]);
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
        out[r] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s[r][0], s[r][1]), _mm512_add_ps(s[r][2], s[r][3])));
}

/* Batch-1 GEMV (m == 1, more than 16 columns, B of 32,768 elements or
 * more): the rows of B one after the other, each a single sequential
 * stream (dotr). Eight rows at once sharing each load of a (ker_dot's
 * register tile) streamed L2-resident weights at 70-115 GB/s on Zen 5; one
 * row at a time, with a reloaded from L1, at 145-175 GB/s (1x256x784 NT
 * 11.6 -> 5.5 us; 1x128x256 1.2 -> 0.85 us): the L2 prefetcher keeps up
 * with one stream, not with 8. Two rows at a time sharing each load of a
 * (dotr: two streams) took 1x256x784 NT from 8.3-8.6 to 7.7-8.1 us on one
 * thread of Zen 4, and 4.3-4.7 to 4.0-4.3 us on two (its 512-bit loads are
 * two 256-bit ones: reloading a for each row took half of the load
 * slots); three or four rows measured no better there, and long rows lose
 * with two streams (GEMV_PAIR_K). Paired rows of A keep ker_dot (one row
 * of B at a time for two rows of A, or 2 x 2 tiles, measured 10-40% slower
 * at 2..32 rows), and so does a small B: the rule depends on n and k only, so
 * for those shapes a row computed alone has the bits of the same row in a
 * batch of up to 8 rows or with <= 16 columns (the small path's batches:
 * tests/module/test_conv_fuse.c compares a batch with its images one by
 * one). */
static bool gemv_streams(int64_t m, int64_t n, int64_t k) {
    return m == 1 && n > 16 && n * k >= 32768;
}

/* Rows of at most this many floats go two at a time (dotr), longer ones
 * one at a time: on Zen 4 pairs took 1x256x784 NT from 4.5-4.8 to 3.9-4.5
 * us on two threads, but 1x128x3136 (the demo CNN's fc1, streamed from L3
 * on one thread) from 18.6-18.9 to 22.4-24.8 us on one and 9.2-11.4 to
 * 10.4-10.8 on two (alternating runs of the same calls). */
#define GEMV_PAIR_K 1024

static void gemv_row(int64_t j0, int64_t j1, int64_t k, const float *a, const float *b,
                     int64_t ldb, float *c, const volatile float *ab) {
    const float alpha = ab[0], beta = ab[1];
    const int64_t step = k <= GEMV_PAIR_K ? 2 : 1;
    for (int64_t j = j0; j < j1; j += step) {
        float d[2];
        if (step == 2 && j + 2 <= j1)
            dotr(2, k, a, b + j * ldb, ldb, d);
        else
            dotr(1, k, a, b + j * ldb, ldb, d);
        for (int r = 0; r < step && j + r < j1; r++) {
            const float v = alpha * d[r];
            c[j + r] = beta != 0.0f ? v + beta * c[j + r] : v;
        }
    }
}

/* Columns [j0, j1) of C (n columns in all) for A · Bᵀ. */
static void small_dot(int64_t m, int64_t n, int64_t j0, int64_t j1, int64_t k, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                      const volatile float *ab) {
    if (gemv_streams(m, n, k)) {
        gemv_row(j0, j1, k, a, b, ldb, c, ab);
        return;
    }
    int64_t i = 0;
    for (; i + 2 <= m; i += 2) {
        const float *ai = a + i * lda;
        float *ci = c + i * ldc;
        int64_t j = j0;
        for (; j + 4 <= j1; j += 4) ker_dot(2, 4, k, ai, lda, b + j * ldb, ldb, ci + j, ldc, ab);
        for (; j < j1; j++) ker_dot(2, 1, k, ai, lda, b + j * ldb, ldb, ci + j, ldc, ab);
    }
    if (i < m) dot_row(j0, j1, k, a + i * lda, b, ldb, c + i * ldc, ab);
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
    /* alpha and beta wait in memory (see x86/avx2/gemm.c) */
    const volatile float ab[2] = {g->alpha, g->beta};
    if (g->tb)
        small_dot(g->m, g->n, j0, j1, g->k, g->a, g->lda, g->b, g->ldb, g->c, g->ldc, ab);
    else
        small_axpy(g->ta, g->m, j0, j1, g->k, g->a, g->lda, g->b, g->ldb, g->c, g->ldc, ab);
}

/* A few rows times Bᵀ (batch-1 inference) streams B once, so its size is
 * the work. Threads pay once each streams 256 KB or more (~1.5 us from L2):
 * a fork and join costs 0.7-1 us on a VM whose two cores exchange a cache
 * line in ~230 ns (1x256x784 NT, 2 threads: 5.5 -> 3.6 us; 1x128x256 would
 * lose). Thread t computes the t-th of nt contiguous parts of C's columns,
 * as one task: the pool gives participant t task t (its home range), so
 * each core reads the same part of B every call and keeps it in its own
 * L2. Sixteen smaller blocks (nn__parallel_range) let a thread that
 * arrives late lose blocks to the other, whose L2 then pulls that part of
 * B across (4.6 vs 3.6 us). Each column is one dot product whatever the
 * split, so the result does not depend on the thread count. */
#define GEMV_GRAIN (1 << 16)

static void gemv_part(void *ctx, int64_t t, int thread) {
    (void)thread;
    const gemm_args *g = ctx;
    const volatile float ab[2] = {g->alpha, g->beta};
    int64_t j0, j1;
    nn__chunk(g->n, g->parts, (int)t, 16, &j0, &j1);
    small_dot(g->m, g->n, j0, j1, g->k, g->a, g->lda, g->b, g->ldb, g->c, g->ldc, ab);
}

void nn__avx512_sgemm_small_nt(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n,
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
    const int nt = nn__threads_cap(threads, m * n * k, 1 << 17);
    nn__parallel_range(n, nt, 32, gemm_cols, &g);
}

void nn__avx512_sgemm_small(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                            float beta, float *c, int64_t ldc) {
    nn__avx512_sgemm_small_nt(nn__num_threads(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                              beta, c, ldc);
}
