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

#endif
