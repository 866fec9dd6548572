/* Internals of nn_scaled_dot_product_attention (attention.c) that tests use
 * to rebuild the op's dropout pattern. Never installed. */
#ifndef NN_OPS_ATTENTION_INTERNAL_H
#define NN_OPS_ATTENTION_INTERNAL_H

#include <stdint.h>

/* Dropout of attention weights is counter-based: whether weight (b, i, j)
 * (flat batch index b, query row i, key column j, in a [batch, Tq, Tk]
 * attention matrix) is kept depends only on a 64-bit seed drawn once from
 * the op's generator and on (b, i, j). Backward recomputes the pattern
 * instead of storing Tq x Tk bits, and the pattern does not depend on the
 * tile sizes or the thread count. Returns the factor the weight is
 * multiplied by: 0 (dropped) or keep_scale = 1 / (1 - p). */
static inline uint64_t nn__sdpa_mix(uint64_t z) {
    /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline float nn__sdpa_dropout(uint64_t seed, int64_t b, int64_t i, int64_t j, int64_t tq,
                                     int64_t tk, uint32_t threshold, float keep_scale) {
    /* (b * tq + i) * tk + j wraps modulo 2^64 for absurd sizes; that only
     * makes two far-apart weights share a draw, never undefined behaviour. */
    const uint64_t idx = ((uint64_t)b * (uint64_t)tq + (uint64_t)i) * (uint64_t)tk + (uint64_t)j;
    const uint64_t h = nn__sdpa_mix(seed + idx * 0x9E3779B97F4A7C15ull);
    /* top 32 bits uniform on [0, 2^32); dropped when below threshold */
    return (uint32_t)(h >> 32) < threshold ? 0.0f : keep_scale;
}

/* The threshold for drop probability p in [0, 1]: p * 2^32, saturated. */
static inline uint32_t nn__sdpa_threshold(double p) {
    if (!(p > 0.0)) return 0;
    if (p >= 1.0) return UINT32_MAX;
    return (uint32_t)(p * 4294967296.0);
}

#endif /* NN_OPS_ATTENTION_INTERNAL_H */
