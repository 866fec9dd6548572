/* Kernel table: reference kernels first, then faster ones chosen at run time. */
#include "backend/backend.h"
#include "nn_config.h"
#include "nn_internal.h"

#include <pthread.h>

#if NN_HAVE_BLIS
#include <blis.h>
#endif

static nn_kernels g_ref = {
    .name = "reference",
    .sgemm = nn__ref_sgemm,
};

static nn_kernels g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if NN_HAVE_BLIS
static void blis_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) { /* BLIS handles it, but keep the beta == 0 contract explicit */
        nn__ref_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* Row-major: element (i,j) at i*ld + j, so row stride ld, column stride 1. */
    bli_sgemm(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k,
              &alpha, (float *)a, (inc_t)lda, 1, (float *)b, (inc_t)ldb, 1, &beta, c,
              (inc_t)ldc, 1);
}
#endif

static void init_kernels(void) {
    g_active = g_ref;
#if NN_HAVE_BLIS
    bli_thread_set_num_threads(nn__num_threads());
    g_active.sgemm = blis_sgemm;
    g_active.name = "blis";
#endif
}

const nn_kernels *nn__kernels(void) {
    pthread_once(&g_once, init_kernels);
    return &g_active;
}

const nn_kernels *nn__ref_kernels(void) { return &g_ref; }

void nn__backend_set_threads(int n) {
#if NN_HAVE_BLIS
    bli_thread_set_num_threads(n);
#else
    (void)n;
#endif
}
