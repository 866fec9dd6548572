/* Activations: pointwise ones through the unary framework (ops_internal.h),
 * softmax / log-softmax along a dim. Forward and backward side by side. */
#include "backend/backend.h"
#include "ops_internal.h"

#include <math.h>
#include <string.h>

/* relu: y = max(x, 0) (NaN stays NaN, as in PyTorch); dy/dx = [x > 0].
 * Through the backend's threaded SIMD kernels. */
static void relu_fwd(int64_t n, const float *x, float *y, const double *p) {
    nn__kernels()->eltwise.relu(n, x, y);
}
static void relu_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                     const double *p) {
    nn__kernels()->eltwise.relu_bwd(n, y, g, gx);
}
static const nn__unary_desc RELU = {"nn_relu", relu_fwd, relu_bwd, false, true};
nn_tensor *nn_relu(nn_tensor *a) { return nn__track(nn__unary(a, &RELU, NULL, 0)); }

/* leaky_relu: y = x > 0 ? x : s x. */
static void leaky_fwd(int64_t n, const float *x, float *y, const double *p) {
    const float s = (float)p[0];
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : x[i] * s;
}
static void leaky_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                      const double *p) {
    const float s = (float)p[0];
    for (int64_t i = 0; i < n; i++) gx[i] = x[i] > 0 ? g[i] : g[i] * s;
}
static const nn__unary_desc LEAKY = {"nn_leaky_relu", leaky_fwd, leaky_bwd, true, false};
nn_tensor *nn_leaky_relu(nn_tensor *a, double slope) {
    NN__PROF_OP("nn_leaky_relu");
    return nn__track(nn__unary(a, &LEAKY, &slope, 1));
}

/* elu: y = x > 0 ? x : alpha (e^x - 1); dy/dx = 1 or y + alpha. */
static void elu_fwd(int64_t n, const float *x, float *y, const double *p) {
    const float al = (float)p[0];
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : al * expm1f(x[i]);
}
static void elu_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                    const double *p) {
    const float al = (float)p[0];
    for (int64_t i = 0; i < n; i++) gx[i] = x[i] > 0 ? g[i] : g[i] * al * expf(x[i]);
}
static const nn__unary_desc ELU = {"nn_elu", elu_fwd, elu_bwd, true, false};
nn_tensor *nn_elu(nn_tensor *a, double alpha) { return nn__track(nn__unary(a, &ELU, &alpha, 1)); }

/* gelu (erf): y = x Phi(x); dy/dx = Phi(x) + x phi(x). */
static void gelu_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}
static void gelu_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                     const double *p) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * (float)M_SQRT1_2));
        gx[i] = g[i] * (cdf + v * inv_sqrt_2pi * expf(-0.5f * v * v));
    }
}
static const nn__unary_desc GELU = {"nn_gelu", gelu_fwd, gelu_bwd, true, false};

/* gelu (tanh): y = x/2 (1 + tanh(k (x + c x^3))), k = sqrt(2/pi), c = 0.044715.
 * Through the backend (eltwise.gelu_tanh: x s(2u), one exp, vectorised). */
static void gelu_t_fwd(int64_t n, const float *x, float *y, const double *p) {
    nn__kernels()->eltwise.gelu_tanh(n, x, y);
}
static void gelu_t_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                       const double *p) {
    nn__kernels()->eltwise.gelu_tanh_bwd(n, x, g, gx);
}
static const nn__unary_desc GELU_T = {"nn_gelu", gelu_t_fwd, gelu_t_bwd, true, false};
nn_tensor *nn_gelu(nn_tensor *a, bool tanh_approx) {
    NN__PROF_OP("nn_gelu");
    return nn__track(nn__unary(a, tanh_approx ? &GELU_T : &GELU, NULL, 0));
}

static inline float sigmoidf(float v) {
    /* Two forms so that exp never overflows. */
    if (v >= 0) return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}

/* silu: y = x s(x); dy/dx = s (1 + x (1 - s)). */
static void silu_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
}
static void silu_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                     const double *p) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        gx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
static const nn__unary_desc SILU = {"nn_silu", silu_fwd, silu_bwd, true, false};
nn_tensor *nn_silu(nn_tensor *a) { return nn__track(nn__unary(a, &SILU, NULL, 0)); }

/* sigmoid: dy/dx = y (1 - y). */
static void sigmoid_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
}
static void sigmoid_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                        const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = g[i] * y[i] * (1.0f - y[i]);
}
static const nn__unary_desc SIGMOID = {"nn_sigmoid", sigmoid_fwd, sigmoid_bwd, false, true};
nn_tensor *nn_sigmoid(nn_tensor *a) { return nn__track(nn__unary(a, &SIGMOID, NULL, 0)); }

/* tanh: dy/dx = 1 - y^2. */
static void tanh_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}
static void tanh_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                     const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = g[i] * (1.0f - y[i] * y[i]);
}
static const nn__unary_desc TANH = {"nn_tanh", tanh_fwd, tanh_bwd, false, true};
nn_tensor *nn_tanh(nn_tensor *a) { return nn__track(nn__unary(a, &TANH, NULL, 0)); }

/* softplus: y = log1p(e^(bx)) / b, or x where bx > threshold; dy/dx = s(bx). */
static void softplus_fwd(int64_t n, const float *x, float *y, const double *p) {
    const float b = (float)p[0], th = (float)p[1];
    for (int64_t i = 0; i < n; i++) {
        float bx = b * x[i];
        y[i] = bx > th ? x[i] : log1pf(expf(bx)) / b;
    }
}
static void softplus_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                         const double *p) {
    const float b = (float)p[0], th = (float)p[1];
    for (int64_t i = 0; i < n; i++) {
        float bx = b * x[i];
        gx[i] = bx > th ? g[i] : g[i] * sigmoidf(bx);
    }
}
static const nn__unary_desc SOFTPLUS = {"nn_softplus", softplus_fwd, softplus_bwd, true, false};
nn_tensor *nn_softplus(nn_tensor *a, double beta, double threshold) {
    NN__PROF_OP("nn_softplus");
    if (!nn__check_f32(a, "nn_softplus", "a")) return NULL;
    if (!(beta != 0) || isnan(threshold))
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_softplus: beta = %g, threshold = %g (beta must be nonzero)", beta,
                        threshold);
    double p[2] = {beta, threshold};
    return nn__track(nn__unary(a, &SOFTPLUS, p, 2));
}

/* hardtanh is clamp under another name: same kernels (elementwise.c). */
static const nn__unary_desc HARDTANH = {"nn_hardtanh", nn__clamp_fwd, nn__clamp_bwd, true, false};
nn_tensor *nn_hardtanh(nn_tensor *a, double min_val, double max_val) {
    NN__PROF_OP("nn_hardtanh");
    if (!nn__check_f32(a, "nn_hardtanh", "a")) return NULL;
    if (isnan(min_val) || isnan(max_val) || min_val > max_val)
        return NN__FAIL(NN_ERR_INVALID, "nn_hardtanh: min_val = %g > max_val = %g", min_val,
                        max_val);
    double p[2] = {min_val, max_val};
    return nn__track(nn__unary(a, &HARDTANH, p, 2));
}

/* ------------------------------------------------- softmax / log_softmax */
/* x viewed as [outer, n, inner] around dim. Stable: subtract the max first.
 *   softmax:     y = e^(x - m) / s,          gx = y (g - sum(g y))
 *   log_softmax: y = x - m - log s,          gx = g - e^y sum(g)           */

typedef struct {
    int64_t outer, n, inner;
} dim3;

static dim3 split_at(const nn_tensor *t, int dim) {
    dim3 s = {1, 1, 1};
    for (int d = 0; d < t->ndim; d++) {
        if (d < dim)
            s.outer *= t->shape[d];
        else if (d == dim)
            s.n = t->shape[d];
        else
            s.inner *= t->shape[d];
    }
    return s;
}

static void softmax_fwd(const float *x, float *y, dim3 s, bool log_form) {
    for (int64_t o = 0; o < s.outer; o++) {
        for (int64_t j = 0; j < s.inner; j++) {
            const float *xr = x + o * s.n * s.inner + j;
            float *yr = y + o * s.n * s.inner + j;
            float m = -INFINITY;
            for (int64_t k = 0; k < s.n; k++) m = xr[k * s.inner] > m ? xr[k * s.inner] : m;
            if (m == -INFINITY) m = 0; /* all -inf: keep the arithmetic finite */
            double sum = 0;
            for (int64_t k = 0; k < s.n; k++) sum += exp((double)(xr[k * s.inner] - m));
            if (log_form) {
                float lse = m + (float)log(sum);
                for (int64_t k = 0; k < s.n; k++) yr[k * s.inner] = xr[k * s.inner] - lse;
            } else {
                double inv = 1.0 / sum;
                for (int64_t k = 0; k < s.n; k++)
                    yr[k * s.inner] = (float)(exp((double)(xr[k * s.inner] - m)) * inv);
            }
        }
    }
}

static nn_status softmax_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    bool log_form = nd->i[1] != 0;
    dim3 s = {nd->i[2], nd->i[3], nd->i[4]};
    nn_tensor *gx = nn__tensor_new(NN_DTYPE_F32, g->shape, g->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    const float *gp = nn__f32(g), *y = nn__f32(nd->saved[0]);
    float *o = nn__f32(gx);
    for (int64_t a = 0; a < s.outer; a++) {
        for (int64_t j = 0; j < s.inner; j++) {
            int64_t base = a * s.n * s.inner + j;
            double dot = 0;
            for (int64_t k = 0; k < s.n; k++) {
                int64_t i = base + k * s.inner;
                dot += log_form ? (double)gp[i] : (double)gp[i] * y[i];
            }
            for (int64_t k = 0; k < s.n; k++) {
                int64_t i = base + k * s.inner;
                o[i] = log_form ? gp[i] - expf(y[i]) * (float)dot : y[i] * (gp[i] - (float)dot);
            }
        }
    }
    gin[0] = gx;
    return NN_OK;
}

static nn_tensor *softmax_impl(nn_tensor *a, int dim, bool log_form, const char *fn) {
    if (!nn__check_f32(a, fn, "a")) return NULL;
    if (!nn__norm_dim(&dim, a->ndim, fn)) return NULL;
    nn_tensor *x = nn__contig(a);
    if (!x) return NULL;
    nn_tensor *y = nn__tensor_new(NN_DTYPE_F32, a->shape, a->ndim);
    if (!y) {
        nn__tensor_release(x);
        return NULL;
    }
    dim3 s = split_at(a, dim);
    softmax_fwd(nn__f32(x), nn__f32(y), s, log_form);
    nn__tensor_release(x);
    nn_node *nd;
    if (!nn__record_or_free(y, fn, softmax_backward, &a, 1, &nd)) return NULL;
    if (nd) {
        nd->i[1] = log_form;
        nd->i[2] = s.outer;
        nd->i[3] = s.n;
        nd->i[4] = s.inner;
        if (!(nd->saved[0] = nn__alias(y))) {
            nn__tensor_release(y);
            return NULL;
        }
    }
    return nn__track(y);
}

nn_tensor *nn_softmax(nn_tensor *a, int dim) { return softmax_impl(a, dim, false, "nn_softmax"); }

nn_tensor *nn_log_softmax(nn_tensor *a, int dim) {
    NN__PROF_OP("nn_log_softmax");
    return softmax_impl(a, dim, true, "nn_log_softmax");
}
