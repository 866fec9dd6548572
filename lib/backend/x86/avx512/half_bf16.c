/* AVX-512 BF16 additions to the AVX-512 tier's half-precision domain
 * (backend/half.h), compiled with -mavx512bf16 (its own archive) and
 * installed only when CPUID reports AVX512_BF16: f32 -> bf16 with
 * vcvtneps2bf16. That instruction treats f32 denormal inputs as zero; the
 * reference rounds them like any value, so lanes holding a denormal are
 * redone with the integer rounding (rare, and the result stays bit-identical
 * to the reference). */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"

#include <string.h>

NN_INLINE __mmask16 mask16(size_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1u);
}

NN_INLINE __m256i bh_to_si(__m256bh v) {
    __m256i r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static void f32_to_bf16(const float *s, uint16_t *d, size_t n) {
    const __m512i expo = _mm512_set1_epi32(0x7f800000), mant = _mm512_set1_epi32(0x007fffff);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, s + i);
        __m256i h = bh_to_si(_mm512_cvtneps_pbh(x));
        const __m512i xi = _mm512_castps_si512(x);
        const __mmask16 dn = _mm512_mask_test_epi32_mask(
            _mm512_testn_epi32_mask(xi, expo), xi, mant); /* exponent 0, mantissa != 0 */
        if (dn) h = _mm256_mask_mov_epi16(h, dn, nn__avx512_bf16_round16(xi));
        _mm256_mask_storeu_epi16(d + i, m, h);
    }
}

void nn__avx512bf16_fill_half(nn__half_kernels *t) { t->cvt.f32_to_bf16 = f32_to_bf16; }
