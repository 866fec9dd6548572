/* AVX2 tier: GELU (tanh form) forward and backward, and the in-place
 * exp(x - shift) of softmax rows (attention tiles), with the 8-lane
 * polynomial exp of simd.h. The reference (ref/eltwise.c) says what they
 * compute; results agree with it to a few float ulps.
 *
 * GELU: y = x s(2u), u = k (x + c x^3), s the logistic function. With
 * e = exp(-|2u|) (an argument <= 0, so no overflow), s(2u) = 1 / (1 + e)
 * for u >= 0 and e / (1 + e) below. A block of 8 with a non-finite x goes
 * to the reference, which gives the IEEE results (-inf: NaN). */
#include "backend/x86/avx2/avx2.h"
#include "backend/x86/avx2/simd.h"

#include <math.h>

#define GELU_K 0.7978845608028654f
#define GELU_C 0.044715f

/* s(2u) for 8 finite x. */
NN_INLINE __m256 gelu_sig8(__m256 v) {
    const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    const __m256 u2 = _mm256_mul_ps(_mm256_set1_ps(2.0f * GELU_K),
                                    _mm256_fmadd_ps(_mm256_set1_ps(GELU_C), v3, v));
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 e = exp8_nonpos(_mm256_or_ps(u2, sign)); /* exp(-|2u|) */
    const __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
    const __m256 neg = _mm256_cmp_ps(u2, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_div_ps(_mm256_blendv_ps(_mm256_set1_ps(1.0f), e, neg), den);
}

/* All 8 lanes finite. */
NN_INLINE bool finite8(__m256 v) {
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    return _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(INFINITY), _CMP_LT_OQ)) == 0xFF;
}

typedef struct act_args {
    const float *x, *g;
    float *y;
} act_args;

static void gelu_body(void *ctx, int64_t lo, int64_t hi) {
    const act_args *q = ctx;
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        const __m256 v = _mm256_loadu_ps(q->x + i);
        if (!finite8(v)) {
            nn__ref_kernels()->eltwise.gelu_tanh(8, q->x + i, q->y + i);
            continue;
        }
        _mm256_storeu_ps(q->y + i, _mm256_mul_ps(v, gelu_sig8(v)));
    }
    if (i < hi) nn__ref_kernels()->eltwise.gelu_tanh(hi - i, q->x + i, q->y + i);
}

static void avx2_gelu_tanh(int64_t n, const float *x, float *y) {
    act_args q = {x, NULL, y};
    nn__parallel_range(n, nn__threads_for(n * 8, EW_GRAIN), 64, gelu_body, &q);
}

static void gelu_bwd_body(void *ctx, int64_t lo, int64_t hi) {
    const act_args *q = ctx;
    const __m256 one = _mm256_set1_ps(1.0f), k2 = _mm256_set1_ps(2.0f * GELU_K),
                 c3 = _mm256_set1_ps(3.0f * GELU_C);
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        const __m256 v = _mm256_loadu_ps(q->x + i);
        if (!finite8(v)) {
            nn__ref_kernels()->eltwise.gelu_tanh_bwd(8, q->x + i, q->g + i, q->y + i);
            continue;
        }
        const __m256 s = gelu_sig8(v);
        const __m256 du = _mm256_mul_ps(k2, _mm256_fmadd_ps(c3, _mm256_mul_ps(v, v), one));
        const __m256 vs1s = _mm256_mul_ps(_mm256_mul_ps(v, s), _mm256_sub_ps(one, s));
        const __m256 d = _mm256_fmadd_ps(vs1s, du, s);
        _mm256_storeu_ps(q->y + i, _mm256_mul_ps(_mm256_loadu_ps(q->g + i), d));
    }
    if (i < hi) nn__ref_kernels()->eltwise.gelu_tanh_bwd(hi - i, q->x + i, q->g + i, q->y + i);
}

static void avx2_gelu_tanh_bwd(int64_t n, const float *x, const float *gy, float *gx) {
    act_args q = {x, gy, gx};
    nn__parallel_range(n, nn__threads_for(n * 10, EW_GRAIN), 64, gelu_bwd_body, &q);
}

static float avx2_exp_shift(int64_t n, float *x, float shift) {
    const __m256 vs = _mm256_set1_ps(shift);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m256 e0 = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + j), vs));
        const __m256 e1 = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vs));
        _mm256_storeu_ps(x + j, e0);
        _mm256_storeu_ps(x + j + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; j < n; j += 8) {
        const __m256i k = lane_mask(n - j);
        const __m256 e = _mm256_and_ps(
            exp8_nonpos(_mm256_sub_ps(_mm256_maskload_ps(x + j, k), vs)), _mm256_castsi256_ps(k));
        _mm256_maskstore_ps(x + j, k, e);
        s0 = _mm256_add_ps(s0, e);
    }
    return hsum(_mm256_add_ps(s0, s1));
}

void nn__avx2_fill_act(nn__eltwise_kernels *t) {
    t->gelu_tanh = avx2_gelu_tanh;
    t->gelu_tanh_bwd = avx2_gelu_tanh_bwd;
    t->exp_shift = avx2_exp_shift;
}
