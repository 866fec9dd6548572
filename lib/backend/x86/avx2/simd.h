/* Helpers for the AVX2 tier's files (and the tiers above it): compiled
 * only with -mavx2 -mfma or more. */
#ifndef NN_BACKEND_X86_AVX2_SIMD_H
#define NN_BACKEND_X86_AVX2_SIMD_H

#include "backend/x86/avx2/avx2.h"

#include <immintrin.h>

#define NN_INLINE static inline __attribute__((always_inline))

/* Elementwise kernels: threads for every EW_GRAIN floats of work. */
#define EW_GRAIN (1 << 15)

/* Lanes [0, r) set, r in 0..8. */
NN_INLINE __m256i lane_mask(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

NN_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x) for x <= 0 (shifted logits and scores, the logistic function of
 * -|u|; x a little above 0 is fine too): relative error ~2e-7, a few float
 * ulps; 0 below about -87.3 (so a masked class, -inf, has probability 0
 * exactly); NaN stays NaN. */
NN_INLINE __m256 exp8_nonpos(__m256 x0) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    const __m256 keep = _mm256_cmp_ps(x0, lo, _CMP_NLT_UQ); /* x >= lo or NaN */
    const __m256 x = _mm256_max_ps(lo, x0);                 /* NaN in x0: x0 */
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    /* exp(r), |r| <= ln2/2: Taylor to degree 7 (truncation < 3e-9) */
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

#endif
