/* Kernel table: reference kernels first, then faster ones chosen at run time
 * by CPU detection. BLIS's thread count always follows nn_set_num_threads
 * (set explicitly here, never read from BLIS_NUM_THREADS/OMP_NUM_THREADS). */
#include "backend/backend.h"
#include "nn_config.h"
#include "backend/nn_backend_config.h"
#include "nn_internal.h"

#include <pthread.h>

#if NN_HAVE_OPENMP
#include <omp.h>
#endif

#if NN_HAVE_BLIS
#include <blis.h>
#endif

static nn_kernels g_ref;
static nn_kernels g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if NN_HAVE_BLIS
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

/* Threads: libnn splits C into column (or row) blocks itself and runs one
 * single-threaded BLIS call per thread. Measured on the shared 2-vCPU host:
 * BLIS's own OpenMP threading spin-waits in its barriers and collapsed to
 * 2-4 GFLOP/s at 2 threads whenever the host was oversubscribed, while one
 * fork-join per GEMM (libgomp, which sleeps) kept ~2x. Each block is a whole
 * sub-GEMM over the full K, so results depend only on the thread count. */
static void blis_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) { /* keep the beta == 0 contract explicit */
        nn__ref_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int nt = nn__num_threads();
#if NN_HAVE_OPENMP
    const bool split_n = n >= 32 * (int64_t)nt;
    const int64_t dim = split_n ? n : m, align = split_n ? 16 : 6; /* BLIS zen3 NR / MR */
    if ((int64_t)nt > (dim + align - 1) / align) nt = (int)((dim + align - 1) / align);
    if (nt > 1 && (double)m * (double)n * (double)k >= 1e6) {
#pragma omp parallel num_threads(nt)
        {
            const int t = omp_get_thread_num(), got = omp_get_num_threads();
            const int64_t blocks = (dim + align - 1) / align;
            const int64_t lo = blocks * t / got * align, hi0 = blocks * (t + 1) / got * align;
            const int64_t hi = hi0 < dim ? hi0 : dim;
            if (lo < hi) {
                if (split_n)
                    blis_1t(trans_a, trans_b, m, hi - lo, k, alpha, a, lda,
                            trans_b ? b + lo * ldb : b + lo, ldb, beta, c + lo, ldc);
                else
                    blis_1t(trans_a, trans_b, hi - lo, n, k, alpha, trans_a ? a + lo : a + lo * lda,
                            lda, b, ldb, beta, c + lo * ldc, ldc);
            }
        }
        return;
    }
#endif
    blis_1t(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

nn__sgemm_fn nn__blis_sgemm(void) {
#if NN_HAVE_BLIS
    return blis_sgemm;
#else
    return NULL;
#endif
}

/* True when this CPU runs the AVX2/FMA kernels compiled into this build. */
static bool use_avx2(void) {
#if NN_HAVE_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

static void init_kernels(void) {
    g_ref.name = "reference";
    g_ref.sgemm = nn__ref_sgemm;
    nn__ref_fill(&g_ref);
    g_active = g_ref;
    nn__sgemm_fn large = nn__ref_sgemm;
#if NN_HAVE_BLIS
    bli_thread_set_num_threads(nn__num_threads());
    large = blis_sgemm;
    g_active.sgemm = blis_sgemm;
    g_active.name = "blis";
#endif
#if NN_HAVE_AVX2
    if (use_avx2()) {
        nn__avx2_fill(&g_active, large);
        g_active.name = NN_HAVE_BLIS ? "avx2+blis" : "avx2";
    }
#endif
}

const nn_kernels *nn__kernels(void) {
    pthread_once(&g_once, init_kernels);
    return &g_active;
}

const nn_kernels *nn__ref_kernels(void) {
    pthread_once(&g_once, init_kernels);
    return &g_ref;
}

#if NN_HAVE_BLIS
/* At unload, hand BLIS's packing-buffer pools back (otherwise memcheck
 * reports them as "possibly lost" in every program that ran a GEMM). BLIS
 * re-initialises itself if the host calls it again afterwards. */
__attribute__((destructor)) static void release_blis(void) {
    if (g_active.sgemm) bli_finalize();
}
#endif

void nn__backend_set_threads(int n) {
#if NN_HAVE_BLIS
    bli_thread_set_num_threads(n);
#else
    (void)n;
#endif
}
