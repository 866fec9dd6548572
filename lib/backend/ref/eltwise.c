/* Reference elementwise kernels, activations, reductions and softmax: plain,
 * single-threaded C that says what each kernel means. They are the oracle the
 * fast kernels (x86/...) are tested against, and the fallback on CPUs without
 * a SIMD tier. */
#include "backend/ref/ref.h"

#include <math.h>

/* ------------------------------------------------------------ activations */

static void ref_relu(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f || isnan(x[i]) ? x[i] : 0.0f;
}

static void ref_relu_bwd(int64_t n, const float *y, const float *gy, float *gx) {
    for (int64_t i = 0; i < n; i++) gx[i] = y[i] > 0.0f ? gy[i] : 0.0f;
}

static void ref_bias_act(int64_t m, int64_t n, const float *bias, bool per_row, bool relu, float *y,
                         int64_t ldy) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float v = y[i * ldy + j];
            if (bias) v += bias[per_row ? i : j];
            if (relu && !(v > 0.0f) && !isnan(v)) v = 0.0f;
            y[i * ldy + j] = v;
        }
}

/* GELU (tanh form) as x s(2u): 1/2 (1 + tanh u) = s(2u) exactly, one expf
 * instead of tanhf's expm1f and division; exp(-2u) clamped below overflow. */
#define GELU_K 0.7978845608028654f
#define GELU_C 0.044715f
static inline float gelu_t_sig(float v) {
    const float u2 = 2.0f * GELU_K * (v + GELU_C * v * v * v);
    return 1.0f / (1.0f + expf(u2 < -80.0f ? 80.0f : -u2));
}

static void ref_gelu_tanh(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = v == -INFINITY ? NAN : v * gelu_t_sig(v);
    }
}

static void ref_gelu_tanh_bwd(int64_t n, const float *x, const float *gy, float *gx) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i], s = gelu_t_sig(v);
        const float du = 2.0f * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        gx[i] = gy[i] * (s + v * s * (1.0f - s) * du);
    }
}

static float ref_exp_shift(int64_t n, float *x, float shift) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        x[j] = expf(x[j] - shift);
        sum += x[j];
    }
    return sum;
}

/* ------------------------------------------------------------ elementwise */

static void ref_add(int64_t n, const float *a, const float *b, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
static void ref_sub(int64_t n, const float *a, const float *b, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i];
}
static void ref_mul(int64_t n, const float *a, const float *b, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}
static void ref_axpy(int64_t n, float alpha, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}
static void ref_scale(int64_t n, float alpha, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i];
}

/* ------------------------------------------------------------- reductions */

static void ref_sum_rows(int64_t m, int64_t n, const float *x, int64_t ldx, float *y,
                         bool accumulate) {
    for (int64_t j = 0; j < n; j++) {
        float s = accumulate ? y[j] : 0.0f;
        for (int64_t i = 0; i < m; i++) s += x[i * ldx + j];
        y[j] = s;
    }
}

static void ref_sum_cols(int64_t m, int64_t n, const float *x, int64_t ldx, float *y,
                         bool accumulate) {
    for (int64_t i = 0; i < m; i++) {
        float s = 0.0f;
        for (int64_t j = 0; j < n; j++) s += x[i * ldx + j];
        y[i] = accumulate ? y[i] + s : s;
    }
}

/* ---------------------------------------------------------------- softmax */

static void ref_softmax_rows(int64_t m, int64_t n, const float *x, float *y, bool log) {
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * n;
        float *yr = y + i * n;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) mx = xr[j] > mx ? xr[j] : mx;
        double s = 0.0;
        for (int64_t j = 0; j < n; j++) s += exp((double)xr[j] - mx);
        if (log) {
            float lse = mx + (float)logf((float)s);
            for (int64_t j = 0; j < n; j++) yr[j] = xr[j] - lse;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t j = 0; j < n; j++) yr[j] = expf(xr[j] - mx) * inv;
        }
    }
}

static void ref_softmax_bwd_rows(int64_t m, int64_t n, const float *y, const float *gy, float *gx,
                                 bool log) {
    for (int64_t i = 0; i < m; i++) {
        const float *yr = y + i * n, *gr = gy + i * n;
        float *xr = gx + i * n;
        double s = 0.0;
        if (log) {
            for (int64_t j = 0; j < n; j++) s += gr[j];
            for (int64_t j = 0; j < n; j++) xr[j] = gr[j] - expf(yr[j]) * (float)s;
        } else {
            for (int64_t j = 0; j < n; j++) s += (double)gr[j] * yr[j];
            for (int64_t j = 0; j < n; j++) xr[j] = yr[j] * (gr[j] - (float)s);
        }
    }
}

/* ------------------------------------------------------------- layer norm */

/* Statistics in double, two passes, so long rows stay accurate in f32. */
static void ref_layernorm_rows(int64_t m, int64_t d, const float *x, const float *w,
                               const float *b, double eps, float *y, float *stats) {
    for (int64_t i = 0; i < m; i++) {
        const float *p = x + i * d;
        float *q = y + i * d;
        double s = 0.0, ss = 0.0;
        for (int64_t j = 0; j < d; j++) s += p[j];
        const double mu = d ? s / (double)d : 0.0;
        for (int64_t j = 0; j < d; j++) ss += (p[j] - mu) * (p[j] - mu);
        const float mean = (float)mu, is = (float)(1.0 / sqrt((d ? ss / (double)d : 0.0) + eps));
        stats[2 * i] = mean;
        stats[2 * i + 1] = is;
        for (int64_t j = 0; j < d; j++) {
            float v = (p[j] - mean) * is;
            if (w) v *= w[j];
            if (b) v += b[j];
            q[j] = v;
        }
    }
}

static void ref_layernorm_bwd_rows(int64_t m, int64_t d, const float *x, const float *gy,
                                   const float *w, const float *stats, float *dx, float *dw,
                                   float *db) {
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * d, *g = gy + i * d, mean = stats[2 * i], is = stats[2 * i + 1];
        double s1 = 0.0, s2 = 0.0;
        for (int64_t j = 0; j < d; j++) {
            const float xh = (xr[j] - mean) * is, dxh = g[j] * (w ? w[j] : 1.0f);
            s1 += dxh;
            s2 += (double)dxh * xh;
            if (dw) dw[j] += g[j] * xh;
            if (db) db[j] += g[j];
        }
        if (!dx) continue;
        const float m1 = (float)(s1 / (double)d), m2 = (float)(s2 / (double)d);
        for (int64_t j = 0; j < d; j++) {
            const float xh = (xr[j] - mean) * is;
            dx[i * d + j] = is * (g[j] * (w ? w[j] : 1.0f) - m1 - xh * m2);
        }
    }
}

/* ---------------------------------------------------------- cross-entropy */

static void ref_xent_lse(int64_t m, int64_t n, const float *x, float *lse) {
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * n;
        double mx = -INFINITY, acc = 0.0;
        for (int64_t j = 0; j < n; j++) mx = fmax(mx, xr[j]);
        for (int64_t j = 0; j < n; j++) acc += exp(xr[j] - mx);
        lse[i] = (float)(mx + log(acc));
    }
}

static void ref_xent_bwd(int64_t m, int64_t n, const float *x, const float *lse, const int64_t *t,
                         const float *s, float *g) {
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * n;
        float *gr = g + i * n;
        for (int64_t j = 0; j < n; j++)
            gr[j] = s[i] == 0.0f ? 0.0f
                                 : (float)(s[i] * (exp(xr[j] - lse[i]) - (j == t[i] ? 1.0 : 0.0)));
    }
}

void nn__ref_fill_eltwise(nn__eltwise_kernels *t) {
    t->relu = ref_relu;
    t->relu_bwd = ref_relu_bwd;
    t->bias_act = ref_bias_act;
    t->gelu_tanh = ref_gelu_tanh;
    t->gelu_tanh_bwd = ref_gelu_tanh_bwd;
    t->exp_shift = ref_exp_shift;
    t->add = ref_add;
    t->sub = ref_sub;
    t->mul = ref_mul;
    t->axpy = ref_axpy;
    t->scale = ref_scale;
    t->sum_rows = ref_sum_rows;
    t->sum_cols = ref_sum_cols;
    t->softmax_rows = ref_softmax_rows;
    t->softmax_bwd_rows = ref_softmax_bwd_rows;
    t->layernorm_rows = ref_layernorm_rows;
    t->layernorm_bwd_rows = ref_layernorm_bwd_rows;
    t->xent_lse = ref_xent_lse;
    t->xent_bwd = ref_xent_bwd;
}
