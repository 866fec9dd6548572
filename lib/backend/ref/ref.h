/* The portable reference kernels (plain C, always built): the oracle every
 * faster kernel is tested against and the fallback on any CPU. */
#ifndef NN_BACKEND_REF_H
#define NN_BACKEND_REF_H

#include "backend/backend.h"

/* ref/gemm.c */
void nn__ref_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc);
void nn__ref_sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t m, int64_t n,
                           int64_t k, float alpha, const float *a, int64_t lda, int64_t stride_a,
                           const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                           int64_t ldc, int64_t stride_c);

/* One fill per domain: every entry of the domain's table. */
void nn__ref_fill_conv(nn__conv_kernels *t);
void nn__ref_fill_pool(nn__pool_kernels *t);
void nn__ref_fill_eltwise(nn__eltwise_kernels *t);
void nn__ref_fill_optim(nn__optim_kernels *t);
void nn__ref_fill_half(nn__half_kernels *t);
void nn__ref_fill_int8(nn__int8_kernels *t);

#endif
