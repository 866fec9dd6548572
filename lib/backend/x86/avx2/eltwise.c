/* AVX2 tier: elementwise kernels, activations, bias, reductions, softmax.
 * Elementwise results match the reference bit for bit (no FMA contraction:
 * -ffp-contract stays off under -std=c11). */
#include "backend/x86/avx2/simd.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------- elementwise (generic) */

/* Elementwise kernels share one shape: split [0, n) in 64-float-aligned
 * chunks and run a vectorised loop on each. */
#define EW_GRAIN (1 << 15)

typedef struct ew_args {
    const float *a, *b;
    float *y;
    float alpha;
    int op;
} ew_args;

enum { EW_ADD, EW_SUB, EW_MUL, EW_AXPY, EW_SCALE, EW_RELU };

static void ew_body(void *ctx, int64_t lo, int64_t hi) {
    const ew_args *q = ctx;
    const float *a = q->a, *b = q->b;
    float *y = q->y;
    const float al = q->alpha;
    switch (q->op) {
    case EW_ADD:
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
        break;
    case EW_SUB:
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] - b[i];
        break;
    case EW_MUL:
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] * b[i];
        break;
    case EW_AXPY: /* no FMA contraction: matches the reference bit for bit */
        for (int64_t i = lo; i < hi; i++) y[i] += al * a[i];
        break;
    case EW_SCALE:
        for (int64_t i = lo; i < hi; i++) y[i] = al * a[i];
        break;
    case EW_RELU: {
        /* max(x, 0) but NaN stays NaN, like the reference */
        const __m256 z = _mm256_setzero_ps();
        int64_t i = lo;
        for (; i + 8 <= hi; i += 8) {
            __m256 v = _mm256_loadu_ps(a + i);
            __m256 keep = _mm256_cmp_ps(v, z, _CMP_NLE_UQ); /* v > 0 or NaN */
            _mm256_storeu_ps(y + i, _mm256_and_ps(v, keep));
        }
        for (; i < hi; i++) y[i] = a[i] > 0.0f || isnan(a[i]) ? a[i] : 0.0f;
        break;
    }
    default: break;
    }
}

static void ew_run(int op, int64_t n, const float *a, const float *b, float *y, float alpha) {
    ew_args q = {a, b, y, alpha, op};
    nn__parallel_range(n, nn__threads_for(n, EW_GRAIN), 64, ew_body, &q);
}

static void avx2_add(int64_t n, const float *a, const float *b, float *y) {
    ew_run(EW_ADD, n, a, b, y, 0.0f);
}
static void avx2_sub(int64_t n, const float *a, const float *b, float *y) {
    ew_run(EW_SUB, n, a, b, y, 0.0f);
}
static void avx2_mul(int64_t n, const float *a, const float *b, float *y) {
    ew_run(EW_MUL, n, a, b, y, 0.0f);
}
static void avx2_axpy(int64_t n, float alpha, const float *x, float *y) {
    ew_run(EW_AXPY, n, x, NULL, y, alpha);
}
static void avx2_scale(int64_t n, float alpha, const float *x, float *y) {
    ew_run(EW_SCALE, n, x, NULL, y, alpha);
}
static void avx2_relu(int64_t n, const float *x, float *y) { ew_run(EW_RELU, n, x, NULL, y, 0.0f); }

typedef struct relu_bwd_args {
    const float *y, *gy;
    float *gx;
} relu_bwd_args;

static void relu_bwd_body(void *ctx, int64_t lo, int64_t hi) {
    const relu_bwd_args *q = ctx;
    const __m256 z = _mm256_setzero_ps();
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(q->y + i), z, _CMP_GT_OQ);
        _mm256_storeu_ps(q->gx + i, _mm256_and_ps(_mm256_loadu_ps(q->gy + i), pos));
    }
    for (; i < hi; i++) q->gx[i] = q->y[i] > 0.0f ? q->gy[i] : 0.0f;
}

static void avx2_relu_bwd(int64_t n, const float *y, const float *gy, float *gx) {
    relu_bwd_args q = {y, gy, gx};
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
    const __m256 z = _mm256_setzero_ps();
    for (int64_t i = lo; i < hi; i++) {
        float *yr = q->y + i * q->ldy;
        const float *br = q->bias && !q->per_row ? q->bias : NULL;
        const __m256 bconst = _mm256_set1_ps(q->bias && q->per_row ? q->bias[i] : 0.0f);
        int64_t j = 0;
        for (; j + 8 <= q->n; j += 8) {
            __m256 v = _mm256_loadu_ps(yr + j);
            if (q->bias) v = _mm256_add_ps(v, br ? _mm256_loadu_ps(br + j) : bconst);
            if (q->relu) v = _mm256_and_ps(v, _mm256_cmp_ps(v, z, _CMP_NLE_UQ));
            _mm256_storeu_ps(yr + j, v);
        }
        for (; j < q->n; j++) {
            float v = yr[j];
            if (q->bias) v += q->bias[q->per_row ? i : j];
            if (q->relu && !(v > 0.0f) && !isnan(v)) v = 0.0f;
            yr[j] = v;
        }
    }
}

static void avx2_bias_act(int64_t m, int64_t n, const float *bias, bool per_row, bool relu,
                          float *y, int64_t ldy) {
    bias_args q = {bias, y, n, ldy, per_row, relu};
    nn__parallel_range(m, nn__threads_for(m * n, EW_GRAIN), 1, bias_rows, &q);
}

/* ------------------------------------------------------------- reductions */

typedef struct red_args {
    const float *x;
    float *y;
    int64_t m, n, ldx;
    bool acc;
} red_args;

/* sum_rows over columns [lo, hi): the same order of additions as the
 * reference (row by row), so the result is bit-identical to it. */
static void sum_rows_body(void *ctx, int64_t lo, int64_t hi) {
    const red_args *q = ctx;
    float *y = q->y;
    if (!q->acc)
        for (int64_t j = lo; j < hi; j++) y[j] = 0.0f;
    for (int64_t i = 0; i < q->m; i++) {
        const float *xr = q->x + i * q->ldx;
        for (int64_t j = lo; j < hi; j++) y[j] += xr[j];
    }
}

static void avx2_sum_rows(int64_t m, int64_t n, const float *x, int64_t ldx, float *y,
                          bool accumulate) {
    red_args q = {x, y, m, n, ldx, accumulate};
    nn__parallel_range(n, nn__threads_for(m * n, EW_GRAIN), 64, sum_rows_body, &q);
}

static void sum_cols_body(void *ctx, int64_t lo, int64_t hi) {
    const red_args *q = ctx;
    for (int64_t i = lo; i < hi; i++) {
        const float *xr = q->x + i * q->ldx;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= q->n; j += 16) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + j));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + j + 8));
        }
        float s = hsum(_mm256_add_ps(s0, s1));
        for (; j < q->n; j++) s += xr[j];
        q->y[i] = q->acc ? q->y[i] + s : s;
    }
}

static void avx2_sum_cols(int64_t m, int64_t n, const float *x, int64_t ldx, float *y,
                          bool accumulate) {
    red_args q = {x, y, m, n, ldx, accumulate};
    nn__parallel_range(m, nn__threads_for(m * n, EW_GRAIN), 1, sum_cols_body, &q);
}

/* ---------------------------------------------------------------- softmax */

typedef struct sm_args {
    const float *x, *gy;
    float *y;
    int64_t n;
    bool log;
} sm_args;

/* Row-parallel; each row uses the reference's exact arithmetic. */
static void softmax_body(void *ctx, int64_t lo, int64_t hi) {
    const sm_args *q = ctx;
    nn__ref_kernels()->eltwise.softmax_rows(hi - lo, q->n, q->x + lo * q->n, q->y + lo * q->n,
                                            q->log);
}

static void avx2_softmax_rows(int64_t m, int64_t n, const float *x, float *y, bool log) {
    sm_args q = {x, NULL, y, n, log};
    nn__parallel_range(m, nn__threads_for(m * n * 8, EW_GRAIN), 1, softmax_body, &q);
}

static void softmax_bwd_body(void *ctx, int64_t lo, int64_t hi) {
    const sm_args *q = ctx;
    nn__ref_kernels()->eltwise.softmax_bwd_rows(hi - lo, q->n, q->x + lo * q->n, q->gy + lo * q->n,
                                                q->y + lo * q->n, q->log);
}

static void avx2_softmax_bwd_rows(int64_t m, int64_t n, const float *y, const float *gy, float *gx,
                                  bool log) {
    sm_args q = {y, gy, gx, n, log};
    nn__parallel_range(m, nn__threads_for(m * n * 4, EW_GRAIN), 1, softmax_bwd_body, &q);
}

void nn__avx2_fill_eltwise(nn__eltwise_kernels *t) {
    t->add = avx2_add;
    t->sub = avx2_sub;
    t->mul = avx2_mul;
    t->axpy = avx2_axpy;
    t->scale = avx2_scale;
    t->relu = avx2_relu;
    t->relu_bwd = avx2_relu_bwd;
    t->bias_act = avx2_bias_act;
    t->sum_rows = avx2_sum_rows;
    t->sum_cols = avx2_sum_cols;
    t->softmax_rows = avx2_softmax_rows;
    t->softmax_bwd_rows = avx2_softmax_bwd_rows;
    nn__avx2_fill_xent(t);
    nn__avx2_fill_act(t);
    nn__avx2_fill_norm(t);
}
