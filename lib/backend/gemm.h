/* Backend domain: GEMM (see backend.h for the conventions every kernel
 * follows). */
#ifndef NN_BACKEND_GEMM_H
#define NN_BACKEND_GEMM_H

#include <stdbool.h>
#include <stdint.h>

/* C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or Xᵀ; op(A) is M x K,
 * op(B) is K x N. beta == 0 ignores C's old contents (even NaN). */
typedef void (*nn__sgemm_fn)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                             float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                             float beta, float *c, int64_t ldc);

/* `batch` independent GEMMs of one shape: product i reads A + i*stride_a,
 * B + i*stride_b and writes C + i*stride_c (strides in elements; a stride of
 * 0 reuses one operand for every product). Products must not overlap in C. */
typedef void (*nn__sgemm_batched_fn)(int64_t batch, bool trans_a, bool trans_b, int64_t m,
                                     int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                                     int64_t stride_a, const float *b, int64_t ldb,
                                     int64_t stride_b, float beta, float *c, int64_t ldc,
                                     int64_t stride_c);

typedef struct nn__gemm_kernels {
    nn__sgemm_fn sgemm;
    nn__sgemm_batched_fn sgemm_batched;
} nn__gemm_kernels;

#endif
