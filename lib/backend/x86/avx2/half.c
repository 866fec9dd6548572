/* AVX2 tier, half-precision domain (backend/half.h): f16 conversions with
 * F16C (vcvtps2ph / vcvtph2ps), bf16 by integer shifts with the reference's
 * round-to-nearest-even and NaN rule. Compiled with -mf16c as well as the
 * tier's flags (its own archive); installed only when CPUID reports F16C.
 * Tails go through a small stack buffer so the same instructions convert
 * every element (bit-identical to the reference, tested). */
#include "backend/x86/avx2/simd.h"

#include <string.h>

static void f32_to_f16(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float fb[8] = {0};
        uint16_t hb[8];
        memcpy(fb, s + i, (n - i) * sizeof *s);
        _mm_storeu_si128((__m128i *)hb,
                         _mm256_cvtps_ph(_mm256_loadu_ps(fb), _MM_FROUND_TO_NEAREST_INT));
        memcpy(d + i, hb, (n - i) * sizeof *d);
    }
}

static void f16_to_f32(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    if (i < n) {
        uint16_t hb[8] = {0};
        float fb[8];
        memcpy(hb, s + i, (n - i) * sizeof *s);
        _mm256_storeu_ps(fb, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)hb)));
        memcpy(d + i, fb, (n - i) * sizeof *d);
    }
}

/* 8 floats (as integers) -> 8 bf16 in the low 16 bits of each lane. */
NN_INLINE __m256i bf16_round8(__m256i x) {
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
    r = _mm256_srli_epi32(r, 16);
    const __m256i ax = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x7f800000));
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}

static void f32_to_bf16(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i lo = bf16_round8(_mm256_loadu_si256((const __m256i *)(s + i)));
        __m256i hi = bf16_round8(_mm256_loadu_si256((const __m256i *)(s + i + 8)));
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
        _mm256_storeu_si256((__m256i *)(d + i), p);
    }
    for (; i < n; i += 8) {
        size_t r = n - i < 8 ? n - i : 8;
        float fb[8] = {0};
        memcpy(fb, s + i, r * sizeof *s);
        __m256i v = bf16_round8(_mm256_loadu_si256((const __m256i *)fb));
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        uint16_t hb[8];
        _mm_storeu_si128((__m128i *)hb, p);
        memcpy(d + i, hb, r * sizeof *d);
    }
}

static void bf16_to_f32(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_slli_epi32(w, 16));
    }
    for (; i < n; i++) d[i] = nn__bf16_to_f32(s[i]); /* a shift: exact either way */
}

/* Convolution with half weights (backend/half.h): the tier's direct
 * forward, converting each block of output channels' weights while packing
 * (conv_direct.c). */
static unsigned conv_passes(bool bf16, const nn__conv2d *d) {
    (void)bf16;
    return nn__avx2_conv_half_passes(d);
}

static bool conv_fwd(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                     const float *bias, bool relu, bool pool, float *y) {
    return nn__avx2_conv_fwd_half(d, x, w, bf16 ? bf16_to_f32 : f16_to_f32, bias, relu, pool, y);
}

void nn__avx2_fill_half(nn__half_kernels *t) {
    t->cvt.f32_to_f16 = f32_to_f16;
    t->cvt.f16_to_f32 = f16_to_f32;
    t->cvt.f32_to_bf16 = f32_to_bf16;
    t->cvt.bf16_to_f32 = bf16_to_f32;
    t->conv_passes = conv_passes;
    t->conv_fwd = conv_fwd;
}
