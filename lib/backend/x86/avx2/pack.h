/* Packing for the blocked GEMM (gemm_blocked.h's nn__gemm_pack_fn) with AVX
 * 8x8 transposes: included by the GEMM file of each x86 tier (AVX2 and up),
 * which instantiates it for its panel widths. */
#ifndef NN_BACKEND_X86_PACK_H
#define NN_BACKEND_X86_PACK_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

#define NN_PACK_INLINE static inline __attribute__((always_inline))

/* Lanes [0, r) set, r in 0..8. */
NN_PACK_INLINE __m256i pack_mask(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* r[j] <- column j of the 8x8 block whose rows are r[0..7]. */
NN_PACK_INLINE void pack_transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Store the first `n` (1..8) lanes of v at p. */
NN_PACK_INLINE void pack_store(float *p, __m256 v, int64_t n) {
    if (n >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, pack_mask(n), v);
}

/* One panel of W (constant) rows: dst[p*W + r] = X(r, p) for r < rn, 0 for
 * rn <= r < W; X(r, p) = kmajor ? x[p*ld + r] : x[r*ld + p]. */
NN_PACK_INLINE void pack_panel(const int W, const float *x, int64_t ld, bool kmajor, int64_t rn,
                               int64_t kc, float *dst) {
    if (kmajor) { /* each p is a contiguous run of rn values */
        for (int64_t p = 0; p < kc; p++) {
            const float *s = x + p * ld;
            float *d = dst + p * W;
            for (int r0 = 0; r0 < W; r0 += 8) {
                const int64_t have = rn - r0 < 0 ? 0 : rn - r0 > 8 ? 8 : rn - r0;
                __m256 v = have == 8  ? _mm256_loadu_ps(s + r0)
                           : have > 0 ? _mm256_maskload_ps(s + r0, pack_mask(have))
                                      : _mm256_setzero_ps();
                pack_store(d + r0, v, W - r0);
            }
        }
        return;
    }
    /* each r is a contiguous run along p: transpose 8x8 blocks */
    for (int r0 = 0; r0 < W; r0 += 8) {
        const int64_t have = rn - r0 < 0 ? 0 : rn - r0 > 8 ? 8 : rn - r0;
        const int64_t width = W - r0 < 8 ? W - r0 : 8;
        int64_t p = 0;
        if (have > 0)
            for (; p + 8 <= kc; p += 8) {
                __m256 v[8];
                for (int i = 0; i < 8; i++)
                    v[i] = i < have ? _mm256_loadu_ps(x + (r0 + i) * ld + p) : _mm256_setzero_ps();
                pack_transpose8(v);
                for (int j = 0; j < 8; j++) pack_store(dst + (p + j) * W + r0, v[j], width);
            }
        for (; p < kc; p++)
            for (int64_t i = 0; i < width; i++)
                dst[p * W + r0 + i] = i < have ? x[(r0 + i) * ld + p] : 0.0f;
    }
}

/* All panels of `rows` rows, W at a time (gemm_blocked.h's layout). */
NN_PACK_INLINE void pack_panels(const int W, const float *x, int64_t ld, bool kmajor, int64_t rows,
                                int64_t kc, float *dst) {
    for (int64_t q0 = 0; q0 < rows; q0 += W, dst += kc * W) {
        const float *xs = kmajor ? x + q0 : x + q0 * ld;
        pack_panel(W, xs, ld, kmajor, rows - q0 < W ? rows - q0 : W, kc, dst);
    }
}

#endif
