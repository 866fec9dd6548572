/* The AVX2+FMA tier (x86-64): every file in this folder is compiled with
 * -mavx2 -mfma -O3 and runs only when backend.c found AVX2, FMA and the OS's
 * YMM state support at run time. Threads: backend/parallel.h. This header
 * only declares (backend.c includes it); simd.h has the intrinsics helpers. */
#ifndef NN_BACKEND_X86_AVX2_H
#define NN_BACKEND_X86_AVX2_H

#include "backend/backend.h"
#include "backend/gemm_blocked.h"
#include "backend/parallel.h"
#include "backend/ref/ref.h"
#include "core/core.h"

/* Fill the tier's entries of each domain table (x86/avx2/<domain>.c). */
/* GEMM: `large` (BLIS, when it is the provider) takes the shapes the
 * small-matrix path does not; NULL: libnn's blocked GEMM, with block sizes
 * planned for the given cache sizes (bytes). */
void nn__avx2_fill_gemm(nn__gemm_kernels *t, nn__sgemm_nt_fn large, int64_t l1d, int64_t l2,
                        int64_t l3);
void nn__avx2_fill_conv(nn__conv_kernels *t);
/* Direct convolution (conv_direct.c): the direct_* entries of the conv table. */
void nn__avx2_fill_conv_direct(nn__conv_kernels *t);
/* The forward direct convolution with half weights w [O][C][KH][KW] (f16 /
 * bf16 bits): cvt converts each block of output channels' rows to f32 while
 * packing (the whole weight never exists as f32); the same sums as the f32
 * forward on the widened weights. passes: the NN_CONV_FWD / NN_CONV_FWD_POOL
 * bits of the direct rule; fwd returns false, writing nothing, for a shape
 * it does not take or without scratch memory. */
unsigned nn__avx2_conv_half_passes(const nn__conv2d *d);
bool nn__avx2_conv_fwd_half(const nn__conv2d *d, const float *x, const uint16_t *w,
                              void (*cvt)(const uint16_t *, float *, size_t), const float *bias,
                              bool relu, bool pool, float *y);
void nn__avx2_fill_pool(nn__pool_kernels *t);
void nn__avx2_fill_eltwise(nn__eltwise_kernels *t);
/* Cross-entropy rows (xent.c), called by nn__avx2_fill_eltwise. */
void nn__avx2_fill_xent(nn__eltwise_kernels *t);
/* GELU (tanh) forward / backward and exp_shift (act.c), called by
 * nn__avx2_fill_eltwise. */
void nn__avx2_fill_act(nn__eltwise_kernels *t);
/* Layer normalisation rows (norm.c), called by nn__avx2_fill_eltwise. */
void nn__avx2_fill_norm(nn__eltwise_kernels *t);
void nn__avx2_fill_optim(nn__optim_kernels *t);
/* Half-precision domain (half.c, built with -mf16c too: fill only when the
 * CPU has F16C). */
void nn__avx2_fill_half(nn__half_kernels *t);
/* Its GEMM with half weights (half_gemm.c, also built with -mf16c). */
void nn__avx2_fill_half_gemm(nn__half_kernels *t);
/* int8 GEMM and activation quantization (int8.c; vpmaddwd, see int8.h). */
void nn__avx2_fill_int8(nn__int8_kernels *t);
/* The integer Winograd F(2x2, 3x3) convolution (int8_wino.c; int8.h). */
void nn__avx2_fill_int8_wino(nn__int8_kernels *t);

/* The small-matrix GEMM path on its own (gemm_small.c; tests, benchmark);
 * _nt: on at most `threads` threads. */
void nn__avx2_sgemm_small_nt(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n,
                             int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                             int64_t ldb, float beta, float *c, int64_t ldc);
void nn__avx2_sgemm_small(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                          float *c, int64_t ldc);
/* The packed, cache-blocked GEMM with the 6x16 micro-kernel (gemm.c). */
void nn__avx2_sgemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                            float beta, float *c, int64_t ldc);
/* FMA throughput probe: iters x 12 independent 8-lane FMAs (gemm.c). */
float nn__avx2_fma_loop(int64_t iters);
/* Its micro-kernel plan (block sizes set by nn__avx2_fill_gemm). */
const nn__gemm_plan *nn__avx2_gemm_plan(void);

#endif
