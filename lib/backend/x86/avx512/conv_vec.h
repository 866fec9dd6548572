/* The AVX-512 tier's vector layer for the x86 convolution templates
 * (x86/conv_direct.h, x86/winograd.h): 16 f32 lanes. Included by
 * avx512/conv_direct.c and by the AVX512_BF16 convolutions (conv_bf16.c),
 * which share its ReLU and max-pool rules and Winograd's transforms. */
#ifndef NN_BACKEND_X86_AVX512_CONV_VEC_H
#define NN_BACKEND_X86_AVX512_CONV_VEC_H

#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h" /* NN_INLINE */

typedef __m512 cd_vec;
NN_INLINE cd_vec cd_zero(void) { return _mm512_setzero_ps(); }
NN_INLINE cd_vec cd_load(const float *p) { return _mm512_load_ps(p); }
NN_INLINE cd_vec cd_loadu(const float *p) { return _mm512_loadu_ps(p); }
NN_INLINE void cd_storeu(float *p, cd_vec v) { _mm512_storeu_ps(p, v); }
NN_INLINE cd_vec cd_set1(float x) { return _mm512_set1_ps(x); }
NN_INLINE cd_vec cd_fma(cd_vec a, cd_vec b, cd_vec c) { return _mm512_fmadd_ps(a, b, c); }
NN_INLINE cd_vec cd_add(cd_vec a, cd_vec b) { return _mm512_add_ps(a, b); }
NN_INLINE cd_vec cd_sub(cd_vec a, cd_vec b) { return _mm512_sub_ps(a, b); }
NN_INLINE cd_vec cd_mul(cd_vec a, cd_vec b) { return _mm512_mul_ps(a, b); }
/* *e, *o = the even, odd lanes of the 32 floats a, b (in order) */
NN_INLINE void cd_deint(cd_vec a, cd_vec b, cd_vec *e, cd_vec *o) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    *e = _mm512_permutex2var_ps(a, ev, b);
    *o = _mm512_permutex2var_ps(a, od, b);
}
/* max(v, 0), NaN stays (the relu kernel's rule) */
NN_INLINE cd_vec cd_relu(cd_vec v) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
}
/* v replaces m when v > m or v is NaN (the max-pool kernel's rule) */
NN_INLINE cd_vec cd_max_nan(cd_vec m, cd_vec v) {
    const __mmask16 take =
        _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(m, take, v);
}

#endif
