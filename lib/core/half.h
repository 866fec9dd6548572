/* Scalar conversions between f32 and the 16-bit storage dtypes (IEEE
 * binary16 "f16" and bfloat16 "bf16"), and the conversion hook through
 * which the tensor layer reaches the backend's vector kernels.
 *
 * These formulas are the definition every conversion kernel (ref and SIMD
 * tiers, lib/backend) must reproduce bit for bit:
 *  - f32 -> f16: round to nearest, ties to even; overflow gives +-Inf;
 *    results below the smallest f16 denormal round to +-0 (ties to even);
 *    f16 denormals are produced exactly (what F16C's vcvtps2ph does with
 *    MXCSR's defaults). NaN stays NaN: sign kept, the quiet bit set, the top
 *    9 payload bits kept (vcvtps2ph's rule).
 *  - f32 -> bf16: round to nearest, ties to even, on the top 16 bits; f32
 *    denormals round like any other value (no flush); overflow of the
 *    largest finite values rounds to +-Inf as IEEE requires. NaN: the top 16
 *    bits with the quiet bit set (vcvtneps2bf16's rule).
 *  - f16 -> f32 and bf16 -> f32 are exact, but a signalling f16 NaN comes
 *    out quiet (vcvtph2ps sets the quiet bit; bf16 -> f32 is a plain shift).
 * Only core.h's types are used, so every folder may include this header. */
#ifndef NN_CORE_HALF_H
#define NN_CORE_HALF_H

#include "core/core.h"

#include <string.h>

static inline uint32_t nn__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float nn__bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t nn__f32_to_f16(float f) {
    uint32_t x = nn__f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep the top payload bits, set quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* >= 65520 rounds to Inf (and Inf itself) */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* normal f16 range: >= 2^-14 */
        /* rebias exponent (127 -> 15) and round the 13 dropped bits */
        uint32_t m = ax - 0x38000000u; /* exponent - 112, as f16 bits << 13 */
        uint32_t r = m + 0x0fffu + ((m >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (ax < 0x33000000u) /* < 2^-25: rounds to zero (2^-25 itself ties to 0) */
        return sign;
    /* denormal f16: value = mant * 2^-24; shift the full significand */
    uint32_t e = ax >> 23;                  /* 102 .. 112 */
    uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;              /* 14 .. 24: bits dropped */
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline float nn__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) /* Inf; NaN comes out quiet (vcvtph2ps's rule) */
        return nn__bits_f32(sign | 0x7f800000u | (m ? 0x400000u | (m << 13) : 0u));
    if (e != 0) return nn__bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return nn__bits_f32(sign);
    /* denormal: m * 2^-24, exact in f32 */
    float v = (float)m * 5.9604644775390625e-08f;
    return sign ? -v : v;
}

static inline uint16_t nn__f32_to_bf16(float f) {
    uint32_t x = nn__f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static inline float nn__bf16_to_f32(uint16_t b) { return nn__bits_f32((uint32_t)b << 16); }

/* i8 storage from a double: truncation toward zero, saturated, NaN -> 0 (the
 * rule of the other integer dtypes). */
static inline int8_t nn__double_to_i8(double v) {
    return v != v ? 0 : v >= 127 ? 127 : v <= -128 ? -128 : (int8_t)v;
}

/* Contiguous conversion of n elements between f32 and f16 / bf16 (either
 * direction; from != to, one of them f32), through the backend's active
 * kernels once the backend has registered them (nn__on_convert), else
 * through the scalar formulas above. Returns false for any other pair. */
bool nn__convert(nn_dtype from, nn_dtype to, const void *src, void *dst, size_t n);

/* The conversion kernels the backend offers core (backend/half.h fills one
 * from the active tier). */
typedef void (*nn__cvt_to_half_fn)(const float *src, uint16_t *dst, size_t n);
typedef void (*nn__cvt_from_half_fn)(const uint16_t *src, float *dst, size_t n);
typedef struct nn__cvt_kernels {
    nn__cvt_to_half_fn f32_to_f16, f32_to_bf16;
    nn__cvt_from_half_fn f16_to_f32, bf16_to_f32;
} nn__cvt_kernels;
/* Register the function that returns the active conversion kernels (the
 * backend does so at load; core never calls into the backend otherwise). */
typedef const nn__cvt_kernels *(*nn__cvt_hook)(void);
void nn__on_convert(nn__cvt_hook hook);

#endif /* NN_CORE_HALF_H */
