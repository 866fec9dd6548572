/* AVX-512 tier: direct convolution (the template x86/conv_direct.h with
 * 16-lane vectors and 32 registers). Forward tile: up to 14 pixels x 2
 * channel vectors (28 accumulators); weight-gradient tile: up to 28. */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"

#define CD_VL 16   /* lanes */
#define CD_REGS 32 /* vector registers */
#define CD_MR 14   /* pixels per forward tile */
#define CD_WACC 28 /* taps per weight-gradient tile */
#define CD_WG 6    /* (c, ky) rows per weight-gradient tile */
#define CF_NX 2    /* few-channel tile: pixel vectors per row */
#define CF_OB 6    /* few-channel tile: output channels (2 x 2 x 6 accumulators) */

#include "backend/x86/avx512/conv_vec.h"
/* g where m > 0, else 0 (the relu backward's rule) */
NN_INLINE cd_vec cd_gate(cd_vec g, cd_vec m) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ), g);
}
NN_INLINE __mmask16 cd_mask(int n) { return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u); }
NN_INLINE cd_vec cd_load_n(const float *p, int n) { return _mm512_maskz_loadu_ps(cd_mask(n), p); }
NN_INLINE void cd_store_n(float *p, cd_vec v, int n) { _mm512_mask_storeu_ps(p, cd_mask(n), v); }

/* lane i = the max of pixels 2i, 2i + 1 of the 32 in a, b: the rule above
 * (exact), or plain max (no NaN among them) */
NN_INLINE cd_vec cd_pool_pairs(cd_vec a, cd_vec b, bool exact) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const cd_vec e = _mm512_permutex2var_ps(a, ev, b), o = _mm512_permutex2var_ps(a, od, b);
    return exact ? cd_max_nan(e, o) : _mm512_max_ps(e, o);
}
NN_INLINE cd_vec cd_maxf(cd_vec a, cd_vec b) { return _mm512_max_ps(a, b); }
/* whether a lane of a or b is NaN */
NN_INLINE bool cd_any_nan(cd_vec a, cd_vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q) != 0; }

/* r[j] <- column j of the 16x16 block whose rows are r[0..15]. */
NN_INLINE void cd_transpose(cd_vec r[16]) {
    cd_vec t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* r[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j */
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
    }
}

#include "backend/x86/conv_direct.h"

void nn__avx512_fill_conv_direct(nn__conv_kernels *t) { cd_fill(t); }

/* Half weights (backend/half.h's conv_fwd, through half.c): see
 * cd_direct_fwd_half. */
unsigned nn__avx512_conv_half_passes(const nn__conv2d *d) { return cd_half_passes(d); }

bool nn__avx512_conv_fwd_half(const nn__conv2d *d, const float *x, const uint16_t *w,
                              void (*cvt)(const uint16_t *, float *, size_t), const float *bias,
                              bool relu, bool pool, float *y) {
    return cd_direct_fwd_half(d, x, w, cvt, bias, relu, pool, y);
}
