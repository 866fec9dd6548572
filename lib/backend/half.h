/* Backend domain: the 16-bit storage dtypes f16 and bf16 (see backend.h for
 * the conventions): conversions to and from f32 (core/half.h defines the
 * rounding every tier reproduces bit for bit) and products of f32
 * activations with half-precision weights, accumulated in f32. */
#ifndef NN_BACKEND_HALF_H
#define NN_BACKEND_HALF_H

#include "backend/conv.h"
#include "core/half.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct nn__half_kernels {
    /* f32 <-> f16 / bf16 over n contiguous elements (dst never aliases src).
     * Bit-identical in every tier. */
    nn__cvt_kernels cvt;
    /* C[M, N] (row stride ldc) = A[M, K] (lda, f32) x op(B), B half bits
     * (bf16 true: bfloat16, else f16): trans_b, B is [N, K] (ldb; Linear's
     * weight, C = A B^T); else B is [K, N] (ldb; matmul's right operand).
     * C is overwritten; sums are f32. Meant for small M (batch-1 rows and
     * GEMV): B is read and converted in registers once per block of rows,
     * never stored as f32. The reference sums k in order; the SIMD tiers sum
     * in vector lanes (results agree up to f32 rounding of the sum), except
     * that where AVX-512 BF16 exists the bf16, trans_b case with m >= 2
     * rounds A to bf16 and multiplies with vdpbf16ps: each product then carries A's rounding
     * too (relative 2^-9 per term; see half_gemm_tol in the tests). */
    void (*gemm)(bool bf16, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
                 int64_t lda, const uint16_t *b, int64_t ldb, float *c, int64_t ldc);
    /* True when gemm rounds A to bf16 for bf16 trans_b, m >= 2 (vdpbf16ps in
     * use; batch-1 rows take the GEMV kernel, which converts B instead). */
    bool (*gemm_rounds_a)(void);
    /* Convolution with half weights, no f32 copy of them (conv.h's direct
     * convolution contract: groups = 1, NCHW, x [N, C, H, W] f32, w [O, C,
     * KH, KW] half bits (bf16 true: bfloat16, else f16), bias [O] f32 or
     * NULL, then the ReLU when `relu`, then the 2x2 max pool when `pool`).
     * conv_passes says which of NN_CONV_FWD / NN_CONV_FWD_POOL the tier takes
     * for a shape (the front end widens w to f32 and runs the f32
     * convolution for the others); conv_fwd returns false, having written
     * nothing, when it does not take the shape or lacks scratch memory. The
     * reference (which takes nothing: it is the twin the tests use) widens w
     * and runs the reference direct convolution: taps summed in (c, ky, kx)
     * order in f32. The AVX2 (F16C) and AVX-512 tiers run their f32 direct
     * forward (x86/conv_direct.h), converting the weights of each block of
     * output channels to f32 while packing them (vcvtph2ps; bf16 by a 16-bit
     * shift): the whole weight never exists as f32 and the sums are those of
     * the f32 kernel on the widened weights, bit for bit; they take the
     * shapes of that kernel's forward rule. Where AVX512_BF16 exists, bf16
     * weights take the vdpbf16ps kernel instead: it rounds x to bf16 and
     * sums pairs of channels, each product carrying x's rounding too
     * (relative 2^-9), f32 denormal inputs read as zero; with the 2x2 pool,
     * a 3x3 window, unit stride and dilation and >= 8 input channels it is
     * Winograd F(2x2, 3x3) with the transformed weights and inputs (U =
     * G g Gᵀ, V = Bᵀ d B, computed in f32) rounded to bf16 instead. */
    unsigned (*conv_passes)(bool bf16, const nn__conv2d *d);
    bool (*conv_fwd)(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                     const float *bias, bool relu, bool pool, float *y);
} nn__half_kernels;

#endif
