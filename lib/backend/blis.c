/* BLIS as a GEMM provider. libnn threads BLIS itself: C is split into column
 * (or row) stripes and each thread runs one single-threaded BLIS call on its
 * stripe. Measured on the shared 2-vCPU host: BLIS's own OpenMP threading
 * spin-waits in its barriers and collapsed to 2-4 GFLOP/s at 2 threads
 * whenever the host was oversubscribed, while one fork-join per GEMM kept
 * ~2x. Each stripe is a whole sub-GEMM over the full K, so results depend
 * only on the shape. */
#include "backend/tier.h"
#include "backend/parallel.h"
#include "backend/threadpool.h"
#include "backend/ref/ref.h"
#include "nn_config.h"
#include "core/core.h"

#if NN_HAVE_BLIS
#include <blis.h>

/* One BLIS call on the calling thread only (an explicit 1-thread runtime
 * object, whatever BLIS's global setting). Row-major: element (i,j) at
 * i*ld + j, so row stride ld, column stride 1; transposes are flags, never
 * copies. */
static void blis_1t(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc) {
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha,
                 (float *)a, (inc_t)lda, 1, (float *)b, (inc_t)ldb, 1, &beta, c, (inc_t)ldc, 1,
                 NULL, &rntm);
}

typedef struct blis_job {
    bool ta, tb, split_n;
    int64_t m, n, k, align, tasks;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc;
} blis_job;

static void blis_stripe(void *ctx, int64_t t, int thread) {
    const blis_job *J = ctx;
    (void)thread;
    int64_t lo, hi;
    nn__chunk(J->split_n ? J->n : J->m, (int)J->tasks, (int)t, J->align, &lo, &hi);
    if (lo >= hi) return;
    if (J->split_n)
        blis_1t(J->ta, J->tb, J->m, hi - lo, J->k, J->alpha, J->a, J->lda,
                J->tb ? J->b + lo * J->ldb : J->b + lo, J->ldb, J->beta, J->c + lo, J->ldc);
    else
        blis_1t(J->ta, J->tb, hi - lo, J->n, J->k, J->alpha, J->ta ? J->a + lo : J->a + lo * J->lda,
                J->lda, J->b, J->ldb, J->beta, J->c + lo * J->ldc, J->ldc);
}

/* Stripes come from the shape alone, never from the thread count: BLIS
 * picks its kernels and blocking by shape (its small-matrix "sup" path
 * included), so a split that followed the thread count would change the
 * rounding with it. Column stripes of at least BLIS_MIN_COLS columns (whole
 * NR = 16 tiles) when there are two or more, else row stripes of at least
 * BLIS_MIN_ROWS rows (whole MR = 6 tiles), at most BLIS_MAX_STRIPES, for
 * products of at least 2^20 multiply-adds; one stripe per task, claimed by
 * the pool's threads one at a time (a descheduled thread holds up one
 * stripe). With one thread the same stripes run in turn. */
#define BLIS_MIN_COLS 64
#define BLIS_MIN_ROWS 48
#define BLIS_MAX_STRIPES 8

static void blis_sgemm_nt(int nt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                          float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k == 0) { /* keep the beta == 0 contract explicit */
        nn__ref_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const bool split_n = n >= 2 * BLIS_MIN_COLS;
    int64_t tasks = split_n ? n / BLIS_MIN_COLS : m / BLIS_MIN_ROWS;
    if (tasks > BLIS_MAX_STRIPES) tasks = BLIS_MAX_STRIPES;
    if (tasks > 1 && (double)m * (double)n * (double)k >= (double)(1 << 20)) {
        blis_job J = {trans_a, trans_b, split_n, m, n, k,   split_n ? 16 : 6, tasks,
                      alpha,   beta,    a,       b, c, lda, ldb,              ldc};
        nn__parallel_for_max(tasks, nt, blis_stripe, &J);
        return;
    }
    blis_1t(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void blis_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    blis_sgemm_nt(nn__num_threads(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                  ldc);
}

static bool g_blis_used;

nn__sgemm_nt_fn nn__blis_sgemm_nt(void) {
    g_blis_used = true;
    return blis_sgemm_nt;
}
nn__sgemm_fn nn__blis_sgemm(void) {
    g_blis_used = true;
    return blis_sgemm;
}
const char *nn__blis_arch(void) {
    g_blis_used = true; /* the query initialises BLIS */
    return bli_arch_string(bli_arch_query_id());
}
const char *nn__blis_version(void) { return bli_info_get_version_str(); }
void nn__blis_set_threads(int n) { bli_thread_set_num_threads(n); }

/* At unload, hand BLIS's packing-buffer pools back (otherwise memcheck
 * reports them as "possibly lost" in every program that ran a GEMM). BLIS
 * re-initialises itself if the host calls it again afterwards. */
__attribute__((destructor)) static void release_blis(void) {
    if (g_blis_used) bli_finalize();
}

#else
nn__sgemm_nt_fn nn__blis_sgemm_nt(void) { return NULL; }
nn__sgemm_fn nn__blis_sgemm(void) { return NULL; }
const char *nn__blis_arch(void) { return "none"; }
const char *nn__blis_version(void) { return "none"; }
void nn__blis_set_threads(int n) { (void)n; }
#endif
