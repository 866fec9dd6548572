/* Gradient clipping by global norm and by value (torch.nn.utils.clip_grad_*). */
#include "optim_internal.h"

#include <math.h>

static bool check_list(nn_tensor *const *params, int64_t n, const char *fn) {
    if (n < 0) return nn__err(NN_ERR_INVALID, "%s: n = %lld", fn, (long long)n), false;
    if (n > 0 && !params) return nn__err(NN_ERR_NULL, "%s: argument 'params' is NULL", fn), false;
    for (int64_t i = 0; i < n; i++)
        if (!nn__check_f32(params[i], fn, "params[i]")) return false;
    return true;
}

/* The norm_type-norm of one gradient's elements, as sum |x|^p (or max |x| for inf). */
static double grad_accum(const nn_tensor *g, double p) {
    double acc = 0.0;
    for (int64_t i = 0; i < g->numel; i++) {
        double a = fabs(nn__get_flat(g, i));
        if (isinf(p))
            acc = a > acc || isnan(a) ? a : acc;
        else
            acc += p == 2.0 ? a * a : p == 1.0 ? a : pow(a, p);
    }
    return acc;
}

static void scale_grad(nn_tensor *g, float c) {
    if (nn__is_contiguous(g)) {
        float *d = nn__f32(g);
        for (int64_t i = 0; i < g->numel; i++) d[i] *= c;
        return;
    }
    float *base = (float *)g->storage->data;
    for (int64_t i = 0; i < g->numel; i++) base[nn__flat_offset(g, i)] *= c;
}

double nn_clip_grad_norm(nn_tensor *const *params, int64_t n, double max_norm, double norm_type) {
    const char *fn = "nn_clip_grad_norm";
    if (!check_list(params, n, fn)) return NAN;
    if (!(norm_type > 0.0))
        return nn__err(NN_ERR_INVALID, "%s: norm_type = %g, expected > 0 (or INFINITY)", fn,
                       norm_type),
               NAN;
    if (!(max_norm >= 0.0))
        return nn__err(NN_ERR_INVALID, "%s: max_norm = %g, expected >= 0", fn, max_norm), NAN;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const nn_tensor *g = params[i]->grad;
        if (!g) continue;
        double a = grad_accum(g, norm_type);
        total = isinf(norm_type) ? (a > total || isnan(a) ? a : total) : total + a;
    }
    if (!isinf(norm_type)) total = norm_type == 2.0 ? sqrt(total) : pow(total, 1.0 / norm_type);
    /* PyTorch computes the coefficient as a float tensor and clamps it to 1. */
    float coef = (float)(max_norm / (total + 1e-6));
    if (coef < 1.0f || isnan(coef))
        for (int64_t i = 0; i < n; i++)
            if (params[i]->grad) scale_grad(params[i]->grad, coef);
    return total;
}

nn_status nn_clip_grad_value(nn_tensor *const *params, int64_t n, double clip) {
    const char *fn = "nn_clip_grad_value";
    if (!check_list(params, n, fn)) return nn_last_status();
    if (!(clip >= 0.0)) return nn__err(NN_ERR_INVALID, "%s: clip = %g, expected >= 0", fn, clip);
    const float c = (float)clip;
    for (int64_t i = 0; i < n; i++) {
        nn_tensor *g = params[i]->grad;
        if (!g) continue;
        float *base = (float *)g->storage->data;
        for (int64_t k = 0; k < g->numel; k++) {
            float *x = &base[nn__flat_offset(g, k)];
            *x = *x < -c ? -c : *x > c ? c : *x;
        }
    }
    return NN_OK;
}

double nn_optim_clip_grad_norm(nn_optim *opt, double max_norm, double norm_type) {
    const char *fn = "nn_optim_clip_grad_norm";
    if (!nn__optim_check(opt, fn)) return NAN;
    int64_t n = nn_optim_num_params(opt);
    nn_tensor **ps = nn__calloc((size_t)n, sizeof *ps);
    if (!ps) return NAN;
    for (int64_t i = 0; i < n; i++) ps[i] = nn_optim_param(opt, i);
    double r = nn_clip_grad_norm(ps, n, max_norm, norm_type);
    nn__free(ps);
    return r;
}
