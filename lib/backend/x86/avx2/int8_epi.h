/* The AVX2 int8 kernels' epilogue on 8 output channels (backend/int8.h):
 * y = (float)(acc - za*wsum) * (sa*sw) (+ bias), then max(y, 0) with NaN
 * kept: the reference's operations in its order, shared by the GEMM's
 * stores, the pool epilogue, conv1_pool and the Winograd pool (int8.c,
 * int8_wino.c), so every path gives the same bits. */
#ifndef NN_BACKEND_X86_AVX2_INT8_EPI_H
#define NN_BACKEND_X86_AVX2_INT8_EPI_H

#include "backend/x86/avx2/simd.h"

#include <stdbool.h>
#include <stdint.h>

/* The operands of channels [0, nc) (nc <= 8; pointers at the first):
 * *corr = za * wsum (wrapping), *s = sa * sw, *b = the bias (0 without). */
NN_INLINE void q8_operands(int nc, const int32_t *wsum, float sa, int32_t za, const float *sw,
                           const float *bias, __m256i *corr, __m256 *s, __m256 *b) {
    const __m256i cm = lane_mask(nc);
    *corr = _mm256_mullo_epi32(_mm256_set1_epi32(za), _mm256_maskload_epi32(wsum, cm));
    *s = _mm256_mul_ps(_mm256_set1_ps(sa), _mm256_maskload_ps(sw, cm));
    *b = bias ? _mm256_maskload_ps(bias, cm) : _mm256_setzero_ps();
}

/* The floats of the corrected sums v: v * s, + b when bias, ReLU. */
NN_INLINE __m256 q8_epilogue(__m256i v, __m256 s, __m256 b, bool bias, bool relu) {
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(v), s);
    if (bias) y = _mm256_add_ps(y, b);
    if (relu) /* max(y, 0) with NaN kept, as the reference */
        y = _mm256_and_ps(y, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_NLE_UQ));
    return y;
}

#endif
