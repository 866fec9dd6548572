/* The AVX-512 tier (x86-64): every file in this folder is compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512dq (and AVX2/FMA) and runs only
 * when backend.c found those extensions and the OS's ZMM/opmask state support
 * at run time. It starts from the AVX2 tier's table and overrides the entries
 * it speeds up. */
#ifndef NN_BACKEND_X86_AVX512_H
#define NN_BACKEND_X86_AVX512_H

#include "backend/x86/avx2/avx2.h"

#include <immintrin.h>

/* GEMM (gemm.c): as nn__avx2_fill_gemm, with the 8x48 AVX-512 tile. */
void nn__avx512_fill_gemm(nn__gemm_kernels *t, nn__sgemm_nt_fn large, int64_t l1d, int64_t l2,
                          int64_t l3);

/* ReLU forward/backward and bias(+ReLU) (eltwise.c); 2x2 max pooling
 * (pool.c, other windows fall back to the AVX2 tier's, filled before). */
void nn__avx512_fill_eltwise(nn__eltwise_kernels *t);
void nn__avx512_fill_pool(nn__pool_kernels *t);
/* Adam / AdamW and SGD at 16 lanes (optim.c). */
void nn__avx512_fill_optim(nn__optim_kernels *t);

/* The small-matrix path with 16-lane vectors (gemm_small.c); _nt: on at
 * most `threads` threads. */
void nn__avx512_sgemm_small_nt(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n,
                               int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                               int64_t ldb, float beta, float *c, int64_t ldc);
void nn__avx512_sgemm_small(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                            float beta, float *c, int64_t ldc);
/* int8 kernels with AVX-512 VNNI (int8_vnni.c, its own archive built with
 * -mavx512vnni): installed only when the CPU has VNNI. */
void nn__avx512vnni_fill_int8(nn__int8_kernels *t);
/* The int8 throughput probe (nn__tier_int8_peak): 12 independent vpdpbusd
 * chains (64 u8 x s8 products each) for iters rounds. */
int32_t nn__avx512vnni_dpbusd_loop(int64_t iters);
/* Direct convolution (conv_direct.c): the direct_* entries of the conv table. */
void nn__avx512_fill_conv_direct(nn__conv_kernels *t);
/* The forward direct convolution with half weights w [O][C][KH][KW] (f16 /
 * bf16 bits): cvt converts each block of output channels' rows to f32 while
 * packing (the whole weight never exists as f32); the same sums as the f32
 * forward on the widened weights. passes: the NN_CONV_FWD / NN_CONV_FWD_POOL
 * bits of the direct rule; fwd returns false, writing nothing, for a shape
 * it does not take or without scratch memory. */
unsigned nn__avx512_conv_half_passes(const nn__conv2d *d);
bool nn__avx512_conv_fwd_half(const nn__conv2d *d, const float *x, const uint16_t *w,
                              void (*cvt)(const uint16_t *, float *, size_t), const float *bias,
                              bool relu, bool pool, float *y);
/* Half-precision domain (half.c); half_bf16.c, built with -mavx512bf16,
 * adds what needs AVX-512 BF16 (fill only when the CPU has it). */
void nn__avx512_fill_half(nn__half_kernels *t);
void nn__avx512bf16_fill_half(nn__half_kernels *t);
/* half.h's conv_passes / conv_fwd without vdpbf16ps (half.c: the direct
 * forward converting f16 / bf16 weights while packing); conv_bf16.c hands
 * f16 weights to them. */
unsigned nn__avx512_half_conv_passes(bool bf16, const nn__conv2d *d);
bool nn__avx512_half_conv_fwd(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                              const float *bias, bool relu, bool pool, float *y);
/* half.h's conv_passes / conv_fwd with vdpbf16ps (conv_bf16.c; bf16 weights only). */
unsigned nn__avx512bf16_conv_passes(bool bf16, const nn__conv2d *d);
bool nn__avx512bf16_conv_fwd(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                             const float *bias, bool relu, bool pool, float *y);
/* C[i, j] = A[i, :] . B[j, :] for j in [lo, hi), B bf16 [N, K] (half.h's
 * gemm, trans_b, for rows lo..hi of B): the vdpbf16ps kernel (half_bf16.c). */
typedef void (*nn__avx512_hg_nt_fn)(int64_t m, int64_t k, const float *a, int64_t lda,
                                    const uint16_t *b, int64_t ldb, float *c, int64_t ldc,
                                    int64_t lo, int64_t hi);
void nn__avx512bf16_gemm_nt(int64_t m, int64_t k, const float *a, int64_t lda, const uint16_t *b,
                            int64_t ldb, float *c, int64_t ldc, int64_t lo, int64_t hi);
/* The GEMM with half weights (half_gemm.c); dp: the vdpbf16ps kernel for
 * bf16 trans_b (NULL: FMA on converted weights, as for f16). */
void nn__avx512_fill_half_gemm(nn__half_kernels *t, nn__avx512_hg_nt_fn dp);
/* 16 floats (as integers) -> 16 bf16, the reference's rounding (half.c). */
__m256i nn__avx512_bf16_round16(__m512i x);

/* The packed, cache-blocked GEMM with the AVX-512 micro-kernel on its own. */
void nn__avx512_sgemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc);
const nn__gemm_plan *nn__avx512_gemm_plan(void);
/* FMA throughput probe: iters x 12 independent 16-lane FMAs (gemm.c). */
float nn__avx512_fma_loop(int64_t iters);

#endif
