/* AVX-512 tier: ReLU forward/backward and the fused bias(+ReLU) with 16-lane
 * vectors; masked loads and stores only at the tails (no scalar remainder
 * loops). Results match the
 * reference bit for bit: the same comparisons, no arithmetic but the bias
 * add. The other elementwise kernels stay the AVX2 tier's (memory-bound
 * already). */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"

#include <math.h>

/* Lanes [0, r) set, r in 0..16. */
NN_INLINE __mmask16 tail_mask(int64_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r < 0 ? 0 : r)) - 1u);
}

/* max(v, 0) with NaN kept (the reference: v > 0 || isnan(v) ? v : 0). */
NN_INLINE __m512 relu16(__m512 v) {
    const __mmask16 keep = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ);
    return _mm512_maskz_mov_ps(keep, v);
}

typedef struct ew_args {
    const float *x, *g;
    float *y;
} ew_args;

static void relu_body(void *ctx, int64_t lo, int64_t hi) {
    const ew_args *q = ctx;
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) _mm512_storeu_ps(q->y + i, relu16(_mm512_loadu_ps(q->x + i)));
    if (i < hi) { /* masked only at the tail: masked stores cost more on AMD */
        const __mmask16 m = tail_mask(hi - i);
        _mm512_mask_storeu_ps(q->y + i, m, relu16(_mm512_maskz_loadu_ps(m, q->x + i)));
    }
}

static void avx512_relu(int64_t n, const float *x, float *y) {
    ew_args q = {x, NULL, y};
    nn__parallel_range(n, nn__threads_for(n, EW_GRAIN), 64, relu_body, &q);
}

/* gx = y > 0 ? gy : 0 */
static void relu_bwd_body(void *ctx, int64_t lo, int64_t hi) {
    const ew_args *q = ctx;
    const __m512 z = _mm512_setzero_ps();
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        const __mmask16 pos = _mm512_cmp_ps_mask(_mm512_loadu_ps(q->x + i), z, _CMP_GT_OQ);
        _mm512_storeu_ps(q->y + i, _mm512_maskz_mov_ps(pos, _mm512_loadu_ps(q->g + i)));
    }
    if (i < hi) {
        const __mmask16 m = tail_mask(hi - i);
        const __mmask16 pos =
            _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, q->x + i), z, _CMP_GT_OQ);
        _mm512_mask_storeu_ps(q->y + i, m, _mm512_maskz_loadu_ps(pos, q->g + i));
    }
}

static void avx512_relu_bwd(int64_t n, const float *y, const float *gy, float *gx) {
    ew_args q = {y, gy, gx};
    nn__parallel_range(n, nn__threads_for(n, EW_GRAIN), 64, relu_bwd_body, &q);
}

typedef struct bias_args {
    const float *bias;
    float *y;
    int64_t n, ldy;
    bool per_row, relu;
} bias_args;

static void bias_rows(void *ctx, int64_t lo, int64_t hi) {
    const bias_args *q = ctx;
    for (int64_t i = lo; i < hi; i++) {
        float *yr = q->y + i * q->ldy;
        const __m512 bconst = _mm512_set1_ps(q->bias && q->per_row ? q->bias[i] : 0.0f);
        int64_t j = 0;
        for (; j + 16 <= q->n; j += 16) {
            __m512 v = _mm512_loadu_ps(yr + j);
            if (q->bias) v = _mm512_add_ps(v, q->per_row ? bconst : _mm512_loadu_ps(q->bias + j));
            if (q->relu) v = relu16(v);
            _mm512_storeu_ps(yr + j, v);
        }
        if (j < q->n) {
            const __mmask16 m = tail_mask(q->n - j);
            __m512 v = _mm512_maskz_loadu_ps(m, yr + j);
            if (q->bias)
                v = _mm512_add_ps(v, q->per_row ? bconst : _mm512_maskz_loadu_ps(m, q->bias + j));
            if (q->relu) v = relu16(v);
            _mm512_mask_storeu_ps(yr + j, m, v);
        }
    }
}

static void avx512_bias_act(int64_t m, int64_t n, const float *bias, bool per_row, bool relu,
                            float *y, int64_t ldy) {
    bias_args q = {bias, y, n, ldy, per_row, relu};
    nn__parallel_range(m, nn__threads_for(m * n, EW_GRAIN), 1, bias_rows, &q);
}

void nn__avx512_fill_eltwise(nn__eltwise_kernels *t) {
    t->relu = avx512_relu;
    t->relu_bwd = avx512_relu_bwd;
    t->bias_act = avx512_bias_act;
}
