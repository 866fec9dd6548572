/* Portable reference kernels for everything but GEMM: plain, single-threaded
 * C that says what each kernel means. They are the oracle the fast kernels
 * (kern_avx2.c) are tested against, and the fallback on CPUs without AVX2. */
#include "backend/backend.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ convolution */

/* One im2col row r = (c, i, j) of image b: tap (i, j) of channel c at every
 * output position. */
static void ref_im2col(const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                       const nn__win2d *g, float *col, int64_t ldcol) {
    const int64_t ohw = g->oh * g->ow;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            const float *xp = x + (b * c + ch) * h * w; /* plane [H, W] */
            for (int64_t i = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t r = (ch * g->kh + i) * g->kw + j;
                    float *dst = col + r * ldcol + b * ohw;
                    for (int64_t oy = 0; oy < g->oh; oy++)
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t y = oy * g->sh - g->ph + i * g->dh;
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;
                            bool in = y >= 0 && y < h && xx >= 0 && xx < w;
                            dst[oy * g->ow + ox] = in ? xp[y * w + xx] : 0.0f;
                        }
                }
        }
}

static void ref_col2im(const float *col, int64_t ldcol, int64_t n, int64_t c, int64_t h, int64_t w,
                       const nn__win2d *g, float *x) {
    const int64_t ohw = g->oh * g->ow;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            float *xp = x + (b * c + ch) * h * w;
            for (int64_t q = 0; q < h * w; q++) xp[q] = 0.0f;
            for (int64_t i = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t r = (ch * g->kh + i) * g->kw + j;
                    const float *src = col + r * ldcol + b * ohw;
                    for (int64_t oy = 0; oy < g->oh; oy++)
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t y = oy * g->sh - g->ph + i * g->dh;
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;
                            if (y >= 0 && y < h && xx >= 0 && xx < w)
                                xp[y * w + xx] += src[oy * g->ow + ox];
                        }
                }
        }
}

static void ref_swap01(const float *x, int64_t a, int64_t b, int64_t s, float *y) {
    for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < b; j++)
            memcpy(y + (j * a + i) * s, x + (i * b + j) * s, (size_t)s * sizeof(float));
}

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

/* ---------------------------------------------------------------- pooling */

static void ref_maxpool2d(const float *x, int64_t planes, int64_t h, int64_t w, const nn__win2d *g,
                          float *y, int64_t *idx) {
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * h * w;
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++) {
                float best = -INFINITY;
                int64_t at = -1;
                for (int64_t i = 0; i < g->kh; i++)
                    for (int64_t j = 0; j < g->kw; j++) {
                        int64_t yy = oy * g->sh - g->ph + i * g->dh;
                        int64_t xx = ox * g->sw - g->pw + j * g->dw;
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                        float v = xp[yy * w + xx];
                        if (at < 0 || v > best || isnan(v)) { /* PyTorch: the last NaN wins */
                            best = v;
                            at = yy * w + xx;
                        }
                    }
                int64_t o = (p * g->oh + oy) * g->ow + ox;
                y[o] = best;
                if (idx) idx[o] = at; /* -1: the window has no tap */
            }
    }
}

static void ref_maxpool2d_bwd(const float *gy, const int64_t *idx, int64_t planes, int64_t h,
                              int64_t w, int64_t oh, int64_t ow, float *gx) {
    for (int64_t p = 0; p < planes; p++) {
        float *gp = gx + p * h * w;
        for (int64_t q = 0; q < h * w; q++) gp[q] = 0.0f;
        for (int64_t o = 0; o < oh * ow; o++) {
            int64_t i = idx[p * oh * ow + o];
            if (i >= 0 && i < h * w) gp[i] += gy[p * oh * ow + o];
        }
    }
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

/* ------------------------------------------------------------- optimizers */

static void ref_adam(int64_t n, float *p, const float *g, float *m, float *v, float *vmax,
                     const nn__adam_hp *hp) {
    for (int64_t i = 0; i < n; i++) {
        float gi = hp->maximize ? -g[i] : g[i];
        if (hp->decoupled)
            p[i] *= hp->decay; /* AdamW: shrink the weights first */
        else
            gi = gi + hp->weight_decay * p[i]; /* Adam: L2 penalty in the gradient */
        m[i] = m[i] * hp->beta1 + hp->c1 * gi;
        v[i] = v[i] * hp->beta2 + hp->c2 * gi * gi;
        float vv = v[i];
        if (vmax) vv = vmax[i] = vmax[i] > v[i] ? vmax[i] : v[i];
        float denom = sqrtf(vv) / hp->bc2_sqrt + hp->eps;
        p[i] += hp->neg_step * (m[i] / denom);
    }
}

static void ref_sgd(int64_t n, float *p, const float *g, float *buf, const nn__sgd_hp *hp) {
    for (int64_t i = 0; i < n; i++) {
        float d = (hp->maximize ? -g[i] : g[i]) + hp->weight_decay * p[i];
        if (hp->momentum != 0.0f && buf) {
            buf[i] = hp->first ? d : buf[i] * hp->momentum + hp->damp1 * d;
            d = hp->nesterov ? d + hp->momentum * buf[i] : buf[i];
        }
        p[i] += hp->neg_lr * d;
    }
}

void nn__ref_fill(nn_kernels *t) {
    t->im2col = ref_im2col;
    t->col2im = ref_col2im;
    t->swap01 = ref_swap01;
    t->relu = ref_relu;
    t->relu_bwd = ref_relu_bwd;
    t->bias_act = ref_bias_act;
    t->maxpool2d = ref_maxpool2d;
    t->maxpool2d_bwd = ref_maxpool2d_bwd;
    t->add = ref_add;
    t->sub = ref_sub;
    t->mul = ref_mul;
    t->axpy = ref_axpy;
    t->scale = ref_scale;
    t->sum_rows = ref_sum_rows;
    t->sum_cols = ref_sum_cols;
    t->softmax_rows = ref_softmax_rows;
    t->softmax_bwd_rows = ref_softmax_bwd_rows;
    t->adam = ref_adam;
    t->sgd = ref_sgd;
}
