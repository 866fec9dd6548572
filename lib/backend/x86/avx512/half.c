/* AVX-512 tier, half-precision domain (backend/half.h): f16 conversions with
 * the 16-lane vcvtps2ph / vcvtph2ps (AVX-512F), bf16 by integer shifts with
 * the reference's rounding; masked loads and stores at the tails. Where the
 * CPU has AVX-512 BF16, half_bf16.c replaces f32 -> bf16 with vcvtneps2bf16. */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"

NN_INLINE __mmask16 mask16(size_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1u);
}

static void f32_to_f16(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, s + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(d + i, m, h);
    }
}

static void f16_to_f32(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        _mm512_mask_storeu_ps(d + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i)));
    }
}

__m256i nn__avx512_bf16_round16(__m512i x) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __m512i ax = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(ax, _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
}

static void f32_to_bf16(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        __m512i x = _mm512_maskz_loadu_epi32(m, s + i);
        _mm256_mask_storeu_epi16(d + i, m, nn__avx512_bf16_round16(x));
    }
}

static void bf16_to_f32(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s + i));
        _mm512_mask_storeu_epi32(d + i, m, _mm512_slli_epi32(w, 16));
    }
}

/* Convolution with half weights (backend/half.h): the tier's direct
 * forward, converting each block of output channels' weights while packing
 * (conv_direct.c). */
unsigned nn__avx512_half_conv_passes(bool bf16, const nn__conv2d *d) {
    (void)bf16;
    return nn__avx512_conv_half_passes(d);
}

bool nn__avx512_half_conv_fwd(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                              const float *bias, bool relu, bool pool, float *y) {
    return nn__avx512_conv_fwd_half(d, x, w, bf16 ? bf16_to_f32 : f16_to_f32, bias, relu, pool, y);
}

void nn__avx512_fill_half(nn__half_kernels *t) {
    t->cvt.f32_to_f16 = f32_to_f16;
    t->cvt.f16_to_f32 = f16_to_f32;
    t->cvt.f32_to_bf16 = f32_to_bf16;
    t->cvt.bf16_to_f32 = bf16_to_f32;
    t->conv_passes = nn__avx512_half_conv_passes;
    t->conv_fwd = nn__avx512_half_conv_fwd;
}
