/* AVX2 tier: direct convolution (the template x86/conv_direct.h with 8-lane
 * vectors and 16 registers). Forward tile: up to 6 pixels x 2 channel
 * vectors (12 accumulators); weight-gradient tile: up to 12 accumulators. */
#include "backend/x86/avx2/pack.h"
#include "backend/x86/avx2/simd.h"

#define CD_VL 8    /* lanes */
#define CD_REGS 16 /* vector registers */
#define CD_MR 6    /* pixels per forward tile */
#define CD_WACC 12 /* taps per weight-gradient tile */
#define CD_WG 4    /* (c, ky) rows per weight-gradient tile */
#define CF_NX 2    /* few-channel tile: pixel vectors per row */
#define CF_OB 3    /* few-channel tile: output channels (2 x 2 x 3 accumulators) */

typedef __m256 cd_vec;
NN_INLINE cd_vec cd_zero(void) { return _mm256_setzero_ps(); }
NN_INLINE cd_vec cd_load(const float *p) { return _mm256_load_ps(p); }
NN_INLINE cd_vec cd_loadu(const float *p) { return _mm256_loadu_ps(p); }
NN_INLINE void cd_storeu(float *p, cd_vec v) { _mm256_storeu_ps(p, v); }
NN_INLINE cd_vec cd_set1(float x) { return _mm256_set1_ps(x); }
NN_INLINE cd_vec cd_fma(cd_vec a, cd_vec b, cd_vec c) { return _mm256_fmadd_ps(a, b, c); }
NN_INLINE cd_vec cd_add(cd_vec a, cd_vec b) { return _mm256_add_ps(a, b); }
NN_INLINE cd_vec cd_sub(cd_vec a, cd_vec b) { return _mm256_sub_ps(a, b); }
NN_INLINE cd_vec cd_mul(cd_vec a, cd_vec b) { return _mm256_mul_ps(a, b); }
/* *e, *o = the even, odd lanes of the 16 floats a, b (in order): per
 * 128-bit lane pairs of a then of b; 64-bit chunks 0 2 1 3 restore the order */
NN_INLINE void cd_deint(cd_vec a, cd_vec b, cd_vec *e, cd_vec *o) {
    *e = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *o = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
/* max(v, 0), NaN stays (the relu kernel's rule) */
NN_INLINE cd_vec cd_relu(cd_vec v) {
    return _mm256_and_ps(v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NLE_UQ));
}
/* v replaces m when v > m or v is NaN (the max-pool kernel's rule) */
NN_INLINE cd_vec cd_max_nan(cd_vec m, cd_vec v) {
    const cd_vec take =
        _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_ps(m, v, take);
}
/* g where m > 0, else 0 (the relu backward's rule) */
NN_INLINE cd_vec cd_gate(cd_vec g, cd_vec m) {
    return _mm256_and_ps(g, _mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_GT_OQ));
}
NN_INLINE cd_vec cd_load_n(const float *p, int n) {
    return n >= CD_VL ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(n));
}
NN_INLINE void cd_store_n(float *p, cd_vec v, int n) {
    if (n >= CD_VL)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, lane_mask(n), v);
}
/* lane i = the max of pixels 2i, 2i + 1 of the 16 in a, b: the rule above
 * (exact), or plain max (no NaN among them) */
NN_INLINE cd_vec cd_pool_pairs(cd_vec a, cd_vec b, bool exact) {
    /* per 128-bit lane: pairs of a then of b; 64-bit chunks 0 2 1 3 restore the order */
    const cd_vec e = _mm256_shuffle_ps(a, b, 0x88), o = _mm256_shuffle_ps(a, b, 0xDD);
    const cd_vec m = exact ? cd_max_nan(e, o) : _mm256_max_ps(e, o);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), 0xD8));
}
NN_INLINE cd_vec cd_maxf(cd_vec a, cd_vec b) { return _mm256_max_ps(a, b); }
/* whether a lane of a or b is NaN */
NN_INLINE bool cd_any_nan(cd_vec a, cd_vec b) {
    return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q)) != 0;
}
NN_INLINE void cd_transpose(cd_vec r[CD_VL]) { pack_transpose8(r); }

#include "backend/x86/conv_direct.h"

void nn__avx2_fill_conv_direct(nn__conv_kernels *t) { cd_fill(t); }

/* Half weights (backend/half.h's conv_fwd, through half.c): see
 * cd_direct_fwd_half. */
unsigned nn__avx2_conv_half_passes(const nn__conv2d *d) { return cd_half_passes(d); }

bool nn__avx2_conv_fwd_half(const nn__conv2d *d, const float *x, const uint16_t *w,
                              void (*cvt)(const uint16_t *, float *, size_t), const float *bias,
                              bool relu, bool pool, float *y) {
    return cd_direct_fwd_half(d, x, w, cvt, bias, relu, pool, y);
}
