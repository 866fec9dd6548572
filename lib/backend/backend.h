/* The compute backend: the only part of libnn that knows about BLIS or SIMD.
 *
 * Front ends (ops/, module/, ...) call kernels through the table returned by
 * nn__kernels(). The table is filled once with the portable reference
 * kernels (backend/ref_*.c), then entries are overridden by faster ones
 * (BLIS GEMM, AVX2/FMA) chosen by CPU detection. Every fast kernel has its
 * reference twin in nn__ref_kernels(), which tests compare it against.
 *
 * All matrices are row-major with explicit leading dimensions (elements).
 */
#ifndef NN_BACKEND_H
#define NN_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

typedef struct nn_kernels {
    const char *name; /* "reference", "avx2+blis", ... */
    /* C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or Xᵀ.
     * op(A) is M x K, op(B) is K x N. beta == 0 ignores C's old contents. */
    void (*sgemm)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                  float *c, int64_t ldc);
} nn_kernels;

/* The active kernel table (initialised on first use, thread-safe). */
const nn_kernels *nn__kernels(void);
/* The portable reference kernels (the test oracle). */
const nn_kernels *nn__ref_kernels(void);
/* Tell the backend the thread count changed (sets BLIS's count). */
void nn__backend_set_threads(int n);

/* Reference kernels (backend/ref_gemm.c). */
void nn__ref_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                   float *c, int64_t ldc);

#endif
