/* Backend domain: elementwise work, activations, reductions and softmax (see
 * backend.h for the conventions). */
#ifndef NN_BACKEND_ELTWISE_H
#define NN_BACKEND_ELTWISE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct nn__eltwise_kernels {
    /* ---- activations ---------------------------------------------------- */
    /* y = max(x, 0) (NaN propagates); y may alias x. */
    void (*relu)(int64_t n, const float *x, float *y);
    /* gx = y > 0 ? gy : 0, with y the relu output (or input); gx may alias gy. */
    void (*relu_bwd)(int64_t n, const float *y, const float *gy, float *gx);
    /* In place on Y [M, N] (row stride ldy): Y[i,j] += bias[per_row ? i : j]
     * (bias NULL: no bias), then max(., 0) when relu. */
    void (*bias_act)(int64_t m, int64_t n, const float *bias, bool per_row, bool relu, float *y,
                     int64_t ldy);
    /* GELU, tanh approximation: y = x s(2u), u = k (x + c x^3), s the
     * logistic function (= x/2 (1 + tanh u)), k = sqrt(2/pi), c = 0.044715;
     * x = -inf gives NaN (the tanh form's -inf * 0). y may alias x. */
    void (*gelu_tanh)(int64_t n, const float *x, float *y);
    /* gx = gy (s + x s (1 - s) 2k (1 + 3 c x^2)), s = s(2u) as above; gx may
     * alias gy. */
    void (*gelu_tanh_bwd)(int64_t n, const float *x, const float *gy, float *gx);
    /* x[j] = exp(x[j] - shift) in place for j < n; returns the sum of the
     * new x. For softmax-like rows (x[j] - shift <= 0 up to rounding; -inf
     * gives 0). Single-threaded: called inside tasks (attention tiles). */
    float (*exp_shift)(int64_t n, float *x, float shift);

    /* ---- elementwise (y may alias an input) ------------------------------ */
    void (*add)(int64_t n, const float *a, const float *b, float *y); /* y = a + b */
    void (*sub)(int64_t n, const float *a, const float *b, float *y); /* y = a - b */
    void (*mul)(int64_t n, const float *a, const float *b, float *y); /* y = a * b */
    void (*axpy)(int64_t n, float alpha, const float *x, float *y);   /* y += alpha x */
    void (*scale)(int64_t n, float alpha, const float *x, float *y);  /* y = alpha x */

    /* ---- reductions ------------------------------------------------------ */
    /* y[j] (+)= sum_i X[i, j] over X [M, N] (row stride ldx): bias gradient
     * of a linear layer. accumulate false overwrites y. */
    void (*sum_rows)(int64_t m, int64_t n, const float *x, int64_t ldx, float *y, bool accumulate);
    /* y[i] (+)= sum_j X[i, j]: per-channel sums (conv bias gradient). */
    void (*sum_cols)(int64_t m, int64_t n, const float *x, int64_t ldx, float *y, bool accumulate);

    /* ---- softmax over the rows of X [M, N] (contiguous) ------------------ */
    /* y = softmax(x) or log_softmax(x) row by row; y may alias x. */
    void (*softmax_rows)(int64_t m, int64_t n, const float *x, float *y, bool log);
    /* Backward from the output y: softmax gx = y*(gy - sum(gy*y));
     * log-softmax gx = gy - exp(y)*sum(gy). gx may alias gy. */
    void (*softmax_bwd_rows)(int64_t m, int64_t n, const float *y, const float *gy, float *gx,
                             bool log);

    /* ---- layer normalisation over the rows of X [M, D] (contiguous) ----- */
    /* stats[2i] = mean of row i, stats[2i + 1] = 1 / sqrt(var + eps) (biased
     * variance, two passes); y = (x - mean) invstd * w + b (w, b may be
     * NULL: 1 and 0). */
    void (*layernorm_rows)(int64_t m, int64_t d, const float *x, const float *w, const float *b,
                           double eps, float *y, float *stats);
    /* With xh = (x - mean) invstd and g = gy * w: dx = invstd (g - mean(g) -
     * xh mean(g xh)) (dx may be NULL); dw[j] += sum_i gy xh, db[j] += sum_i gy
     * over the rows (each may be NULL). */
    void (*layernorm_bwd_rows)(int64_t m, int64_t d, const float *x, const float *gy,
                               const float *w, const float *stats, float *dx, float *dw,
                               float *db);

    /* ---- cross-entropy over the rows of X [M, N] (contiguous): the fused
     * log-softmax + NLL of class-index targets, for many classes ---------- */
    /* lse[i] = log sum_j exp(X[i, j]) (shifted by the row's max). */
    void (*xent_lse)(int64_t m, int64_t n, const float *x, float *lse);
    /* G[i, j] = s[i] (exp(X[i, j] - lse[i]) - [j == t[i]]) (t[i] outside
     * [0, N): no target term); rows with s[i] == 0 are written as zeros. */
    void (*xent_bwd)(int64_t m, int64_t n, const float *x, const float *lse, const int64_t *t,
                     const float *s, float *g);
} nn__eltwise_kernels;

#endif
