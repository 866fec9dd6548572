/* Elementwise losses: MSE, L1, smooth L1, Huber, BCE, BCE with logits, KL
 * divergence. Each is one op: a per-element value f(x, t) and its
 * derivatives, reduced by none / mean / sum / batchmean. Forward and
 * backward side by side; sums are accumulated in double. */
#include "loss_common.h"

#include <math.h>
#include <string.h>

typedef enum {
    PW_MSE,
    PW_L1,
    PW_SMOOTH_L1,
    PW_HUBER,
    PW_BCE,
    PW_BCE_LOGITS,
    PW_KL,
    PW_KL_LOG
} pw_kind;

/* ------------------------------------------------------ shared helpers */

bool nn__loss_check_reduction(nn_reduction r, bool allow_batchmean, const char *fn) {
    if (r == NN_REDUCTION_NONE || r == NN_REDUCTION_MEAN || r == NN_REDUCTION_SUM) return true;
    if (r == NN_REDUCTION_BATCHMEAN && allow_batchmean) return true;
    nn__err(NN_ERR_INVALID, "%s: reduction %d is not valid here (NONE, MEAN, SUM%s)", fn, (int)r,
            allow_batchmean ? ", BATCHMEAN" : "");
    return false;
}

void *nn__loss_shape_error(const char *fn, const char *what, const nn_tensor *a,
                           const nn_tensor *b) {
    char s1[128], s2[128];
    return NN__FAIL(NN_ERR_SHAPE, "%s: %s shape %s differs from input shape %s", fn, what,
                    nn__shape_str(a->shape, a->ndim, s1, sizeof s1),
                    nn__shape_str(b->shape, b->ndim, s2, sizeof s2));
}

nn_tensor *nn__loss_broadcast(const nn_tensor *w, const nn_tensor *like, const char *fn,
                              const char *what) {
    if (!nn__check_f32(w, fn, what)) return NULL;
    int off = like->ndim - w->ndim;
    bool ok = off >= 0;
    for (int d = 0; ok && d < w->ndim; d++)
        ok = w->shape[d] == 1 || w->shape[d] == like->shape[off + d];
    if (!ok) {
        char s1[128], s2[128];
        return NN__FAIL(NN_ERR_SHAPE, "%s: %s shape %s does not broadcast to input shape %s", fn,
                        what, nn__shape_str(w->shape, w->ndim, s1, sizeof s1),
                        nn__shape_str(like->shape, like->ndim, s2, sizeof s2));
    }
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, like->shape, like->ndim);
    if (!out) return NULL;
    float *o = nn__f32(out);
    const float *base = (const float *)w->storage->data;
    int64_t idx[NN_MAX_DIMS] = {0};
    for (int64_t i = 0; i < out->numel; i++) {
        int64_t pos = w->offset;
        for (int d = 0; d < w->ndim; d++)
            if (w->shape[d] != 1) pos += idx[off + d] * w->strides[d];
        o[i] = base[pos];
        for (int d = like->ndim - 1; d >= 0; d--) { /* odometer over like's shape */
            if (++idx[d] < like->shape[d]) break;
            idx[d] = 0;
        }
    }
    return out;
}

/* --------------------------------------------- per-element definitions */

typedef struct {
    pw_kind kind;
    double p; /* beta (smooth L1) or delta (Huber) */
} pw_spec;

static double sgn(double d) { return d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0; }

/* log(1 + exp(-x)) without overflow (PyTorch's max_val form). */
static double softplus_neg(double x) {
    double m = x < 0 ? -x : 0.0;
    return log(exp(-m) + exp(-x - m)) + m;
}

/* Value of the loss at one element (w: weight, pw: pos_weight). */
static double pw_value(const pw_spec *s, double x, double t, double w, double pw) {
    double d = x - t, ad = fabs(d);
    switch (s->kind) {
    case PW_MSE: return d * d;
    case PW_L1: return ad;
    case PW_SMOOTH_L1:
        if (s->p == 0.0) return ad;
        return ad < s->p ? 0.5 * d * d / s->p : ad - 0.5 * s->p;
    case PW_HUBER: return ad < s->p ? 0.5 * d * d : s->p * (ad - 0.5 * s->p);
    case PW_BCE: {
        double lx = fmax(log(x), -100.0), l1x = fmax(log1p(-x), -100.0);
        return -w * (t * lx + (1.0 - t) * l1x);
    }
    case PW_BCE_LOGITS: return w * ((1.0 - t) * x + (1.0 + (pw - 1.0) * t) * softplus_neg(x));
    case PW_KL: return (t == 0.0 ? 0.0 : t * log(t)) - t * x; /* xlogy(t, t) - t x */
    case PW_KL_LOG: return exp(t) * (t - x);
    }
    return NAN;
}

/* d value / d x and d value / d t at one element. */
static void pw_deriv(const pw_spec *s, double x, double t, double w, double pw, double *dx,
                     double *dt) {
    double d = x - t, ad = fabs(d);
    *dx = 0.0;
    *dt = 0.0;
    switch (s->kind) {
    case PW_MSE:
        *dx = 2.0 * d;
        *dt = -*dx;
        return;
    case PW_L1:
        *dx = sgn(d);
        *dt = -*dx;
        return;
    case PW_SMOOTH_L1:
        *dx = (s->p == 0.0 || ad >= s->p) ? sgn(d) : d / s->p;
        *dt = -*dx;
        return;
    case PW_HUBER:
        *dx = ad < s->p ? d : s->p * sgn(d);
        *dt = -*dx;
        return;
    case PW_BCE: {
        /* dx: PyTorch's form, its denominator clamped at 1e-12. dt: the exact
         * derivative of the value above, logs clamped at -100 like it, so a
         * probability of 0 or 1 gives a finite gradient (PyTorch 1.13's
         * -logit(x) is +-inf there; elsewhere the two agree). */
        double lx = fmax(log(x), -100.0), l1x = fmax(log1p(-x), -100.0);
        *dx = w * (x - t) / fmax((1.0 - x) * x, 1e-12);
        *dt = -w * (lx - l1x);
        return;
    }
    case PW_BCE_LOGITS: {
        double lw = 1.0 + (pw - 1.0) * t;
        double sig_neg = 1.0 / (1.0 + exp(x)); /* sigmoid(-x) */
        *dx = w * ((1.0 - t) - lw * sig_neg);
        *dt = w * (-x + (pw - 1.0) * softplus_neg(x));
        return;
    }
    case PW_KL:
        *dx = -t;
        *dt = t > 0.0 ? log(t) + 1.0 - x : 0.0;
        return;
    case PW_KL_LOG:
        *dx = -exp(t);
        *dt = exp(t) * (t - x + 1.0);
        return;
    }
}

/* ----------------------------------------------------- the op itself */

/* node->saved: [0] weight broadcast to input (or NULL), [1] pos_weight (or NULL).
 * node->i: [0] kind, [1] reduction. node->f: [0] param, [1] scale of the sum. */
static nn_status pw_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    pw_spec s = {(pw_kind)nd->i[0], nd->f[0]};
    nn_reduction red = (nn_reduction)nd->i[1];
    nn_tensor *x = nn__contig(nd->inputs[0]), *t = nn__contig(nd->inputs[1]);
    nn_tensor *gx = x ? nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    nn_tensor *gt = NULL;
    bool want_t = nd->inputs[1]->requires_grad;
    if (gx && want_t) gt = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim);
    if (!x || !t || !gx || (want_t && !gt)) {
        nn__tensor_release(x);
        nn__tensor_release(t);
        nn__tensor_release(gx);
        return nn__forward(nd->name);
    }
    const float *xp = nn__f32(x), *tp = nn__f32(t), *go = nn__f32(gout);
    const float *wp = nd->saved[0] ? nn__f32(nd->saved[0]) : NULL;
    const float *pp = nd->saved[1] ? nn__f32(nd->saved[1]) : NULL;
    float *gxp = nn__f32(gx), *gtp = gt ? nn__f32(gt) : NULL;
    double scalar = red == NN_REDUCTION_NONE ? 0.0 : go[0] * nd->f[1];
    for (int64_t i = 0; i < x->numel; i++) {
        double g = red == NN_REDUCTION_NONE ? go[i] : scalar, dx, dt;
        pw_deriv(&s, xp[i], tp[i], wp ? wp[i] : 1.0, pp ? pp[i] : 1.0, &dx, &dt);
        gxp[i] = (float)(g * dx);
        if (gtp) gtp[i] = (float)(g * dt);
    }
    nn__tensor_release(x);
    nn__tensor_release(t);
    gin[0] = gx;
    gin[1] = gt;
    return NN_OK;
}

/* Validate, evaluate and record a pointwise loss. weight / pos_weight may be NULL. */
static nn_tensor *pw_loss(const char *fn, pw_spec s, nn_tensor *x, nn_tensor *t, nn_tensor *w,
                          nn_tensor *pw, nn_reduction red) {
    if (!nn__check_f32(x, fn, "input") || !nn__check_f32(t, fn, "target")) return NULL;
    if (!nn__loss_check_reduction(red, s.kind == PW_KL || s.kind == PW_KL_LOG, fn)) return NULL;
    if (!nn__same_shape(x, t)) return nn__loss_shape_error(fn, "target", t, x);
    if (red == NN_REDUCTION_BATCHMEAN && x->ndim == 0)
        return NN__FAIL(NN_ERR_SHAPE, "%s: BATCHMEAN needs an input with a batch dimension", fn);
    nn_tensor *wf = NULL, *pf = NULL, *xc = NULL, *tc = NULL, *out = NULL;
    if (w && !(wf = nn__loss_broadcast(w, x, fn, "weight"))) goto fail;
    if (pw && !(pf = nn__loss_broadcast(pw, x, fn, "pos_weight"))) goto fail;
    if (!(xc = nn__contig(x)) || !(tc = nn__contig(t))) goto fail;
    const float *xp = nn__f32(xc), *tp = nn__f32(tc);
    const float *wp = wf ? nn__f32(wf) : NULL, *pp = pf ? nn__f32(pf) : NULL;
    if (s.kind == PW_BCE) {
        for (int64_t i = 0; i < x->numel; i++)
            if (!(xp[i] >= 0.0f && xp[i] <= 1.0f)) {
                nn__err(NN_ERR_INVALID, "%s: input[%lld] = %g is outside [0, 1]", fn, (long long)i,
                        (double)xp[i]);
                goto fail;
            }
    }
    double scale = 1.0;
    if (red == NN_REDUCTION_MEAN) scale = 1.0 / (double)x->numel;
    if (red == NN_REDUCTION_BATCHMEAN) scale = 1.0 / (double)x->shape[0];
    if (red == NN_REDUCTION_NONE) {
        if (!(out = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim))) goto fail;
        float *o = nn__f32(out);
        for (int64_t i = 0; i < x->numel; i++)
            o[i] = (float)pw_value(&s, xp[i], tp[i], wp ? wp[i] : 1.0, pp ? pp[i] : 1.0);
    } else {
        double acc = 0.0;
        for (int64_t i = 0; i < x->numel; i++)
            acc += pw_value(&s, xp[i], tp[i], wp ? wp[i] : 1.0, pp ? pp[i] : 1.0);
        if (!(out = nn__scalar_f32((float)(acc * scale)))) goto fail;
    }
    nn_tensor *ins[2] = {x, t};
    nn_node *nd;
    if (nn__record(out, fn, pw_backward, ins, 2, &nd) != NN_OK) {
        nn__err(NN_ERR_NOMEM, "%s: out of memory recording the graph", fn);
        goto fail;
    }
    if (nd) {
        nd->saved[0] = wf;
        nd->saved[1] = pf;
        wf = pf = NULL;
        nd->i[0] = s.kind;
        nd->i[1] = red;
        nd->f[0] = s.p;
        nd->f[1] = scale;
    }
    nn__tensor_release(wf);
    nn__tensor_release(pf);
    nn__tensor_release(xc);
    nn__tensor_release(tc);
    return nn__track(out);
fail:
    nn__tensor_release(wf);
    nn__tensor_release(pf);
    nn__tensor_release(xc);
    nn__tensor_release(tc);
    nn__tensor_release(out);
    return NULL;
}

/* ------------------------------------------------------- public API */

nn_tensor *nn_mse_loss(nn_tensor *input, nn_tensor *target, nn_reduction reduction) {
    NN__PROF_OP("nn_mse_loss");
    pw_spec s = {PW_MSE, 0.0};
    return pw_loss("nn_mse_loss", s, input, target, NULL, NULL, reduction);
}

nn_tensor *nn_l1_loss(nn_tensor *input, nn_tensor *target, nn_reduction reduction) {
    NN__PROF_OP("nn_l1_loss");
    pw_spec s = {PW_L1, 0.0};
    return pw_loss("nn_l1_loss", s, input, target, NULL, NULL, reduction);
}

nn_tensor *nn_smooth_l1_loss(nn_tensor *input, nn_tensor *target, double beta,
                             nn_reduction reduction) {
    NN__PROF_OP("nn_smooth_l1_loss");
    if (!(beta >= 0.0) || isinf(beta))
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_smooth_l1_loss: beta = %g, expected a finite value >= 0", beta);
    pw_spec s = {PW_SMOOTH_L1, beta};
    return pw_loss("nn_smooth_l1_loss", s, input, target, NULL, NULL, reduction);
}

nn_tensor *nn_huber_loss(nn_tensor *input, nn_tensor *target, double delta,
                         nn_reduction reduction) {
    NN__PROF_OP("nn_huber_loss");
    if (!(delta > 0.0) || isinf(delta))
        return NN__FAIL(NN_ERR_INVALID, "nn_huber_loss: delta = %g, expected a finite value > 0",
                        delta);
    pw_spec s = {PW_HUBER, delta};
    return pw_loss("nn_huber_loss", s, input, target, NULL, NULL, reduction);
}

nn_tensor *nn_bce_loss(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                       nn_reduction reduction) {
    NN__PROF_OP("nn_bce_loss");
    pw_spec s = {PW_BCE, 0.0};
    return pw_loss("nn_bce_loss", s, input, target, weight, NULL, reduction);
}

nn_tensor *nn_bce_with_logits(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                              nn_tensor *pos_weight, nn_reduction reduction) {
    NN__PROF_OP("nn_bce_with_logits");
    pw_spec s = {PW_BCE_LOGITS, 0.0};
    return pw_loss("nn_bce_with_logits", s, input, target, weight, pos_weight, reduction);
}

nn_tensor *nn_kl_div(nn_tensor *input, nn_tensor *target, nn_reduction reduction, bool log_target) {
    NN__PROF_OP("nn_kl_div");
    pw_spec s = {log_target ? PW_KL_LOG : PW_KL, 0.0};
    return pw_loss("nn_kl_div", s, input, target, NULL, NULL, reduction);
}
