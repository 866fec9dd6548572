/* Cross-entropy (fused log-softmax + NLL) and NLL over class dim 1.
 *
 * Geometry: input [N, C, d1, ...] is viewed as (outer = N, C, inner = d1*...),
 * sample (n, k) reads C values at stride `inner`; a 1-D input [C] is one
 * sample. Class-index targets are i64 of shape [N, d1, ...] ([] for 1-D);
 * probability targets are f32 of the input's shape.
 *
 * With class weights w, label smoothing e and C classes, sample i with
 * target y has
 *     loss_i = (1 - e) * (-w_y logp_y) + e / C * (-sum_c w_c logp_c)
 * and MEAN divides the sum by sum_i w_{y_i} over non-ignored samples
 * (PyTorch's weighted mean). Its gradient wrt the logits is
 *     (1 - e) w_y (p_c - [c = y]) + e / C (p_c sum_k w_k - w_c).
 * Probability targets t use t' = (1 - e) t + e / C, loss_i = -sum_c w_c t'_c
 * logp_c, gradient p_c sum_k w_k t'_k - w_c t'_c, and MEAN divides by the
 * number of samples. */
#include "loss_common.h"

#include <math.h>
#include <string.h>

typedef struct {
    int64_t outer, C, inner; /* samples = outer * inner */
} ce_geom;

static bool ce_geometry(const nn_tensor *x, ce_geom *g, const char *fn) {
    if (x->ndim == 0)
        return nn__err(NN_ERR_SHAPE, "%s: input must have a class dimension (got a scalar)", fn),
               false;
    g->outer = x->ndim == 1 ? 1 : x->shape[0];
    g->C = x->ndim == 1 ? x->shape[0] : x->shape[1];
    g->inner = 1;
    for (int d = 2; d < x->ndim; d++) g->inner *= x->shape[d];
    if (g->C == 0) return nn__err(NN_ERR_SHAPE, "%s: input has 0 classes", fn), false;
    return true;
}

/* Shape of per-sample results: input's shape without the class dim. */
static int sample_shape(const nn_tensor *x, int64_t *shape) {
    if (x->ndim == 1) return 0;
    int n = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != 1) shape[n++] = x->shape[d];
    return n;
}

/* Check an i64 index target: shape and range. */
static bool check_index_target(const nn_tensor *x, const nn_tensor *t, const ce_geom *g,
                               int64_t ignore_index, const char *fn) {
    int64_t shape[NN_MAX_DIMS];
    int n = sample_shape(x, shape);
    if (t->ndim != n || memcmp(t->shape, shape, sizeof(int64_t) * (size_t)n) != 0) {
        char s1[128], s2[128];
        nn__err(NN_ERR_SHAPE, "%s: target shape %s does not match input shape %s (expected %s)", fn,
                nn__shape_str(t->shape, t->ndim, s1, sizeof s1),
                nn__shape_str(x->shape, x->ndim, s2, sizeof s2),
                nn__shape_str(shape, n, s1, sizeof s1));
        return false;
    }
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t y = (int64_t)nn__get_flat(t, i);
        if (y != ignore_index && (y < 0 || y >= g->C)) {
            nn__err(NN_ERR_RANGE,
                    "%s: target %lld at position %lld is out of range for %lld classes", fn,
                    (long long)y, (long long)i, (long long)g->C);
            return false;
        }
    }
    return true;
}

static bool check_weight(const nn_tensor *w, const ce_geom *g, const char *fn) {
    if (!w) return true;
    if (!nn__check_f32(w, fn, "weight")) return false;
    if (w->ndim != 1 || w->shape[0] != g->C) {
        char s[128];
        nn__err(NN_ERR_SHAPE, "%s: weight shape %s, expected [%lld] (one per class)", fn,
                nn__shape_str(w->shape, w->ndim, s, sizeof s), (long long)g->C);
        return false;
    }
    return true;
}

/* Reduce per-sample losses into the output tensor. */
static nn_tensor *reduce_out(const nn_tensor *x, const double *per, int64_t ns, double denom,
                             nn_reduction red) {
    if (red == NN_REDUCTION_NONE) {
        int64_t shape[NN_MAX_DIMS];
        int n = sample_shape(x, shape);
        nn_tensor *o = nn__tensor_new(NN_DTYPE_F32, shape, n);
        if (o)
            for (int64_t i = 0; i < ns; i++) nn__f32(o)[i] = (float)per[i];
        return o;
    }
    double s = 0.0;
    for (int64_t i = 0; i < ns; i++) s += per[i];
    if (red == NN_REDUCTION_MEAN) s /= denom;
    return nn__scalar_f32((float)s);
}

/* Scale of sample i's gradient given the output gradient. */
static inline double grad_scale(const float *go, nn_reduction red, double denom, int64_t i) {
    if (red == NN_REDUCTION_NONE) return go[i];
    return red == NN_REDUCTION_MEAN ? go[0] / denom : go[0];
}

/* ======================================================= cross-entropy */

/* node: inputs {logits, target}; saved[0] lse per sample (f32 [ns]), saved[1]
 * weight (contiguous [C]) or NULL; i[0] reduction, i[1] ignore_index,
 * i[2] prob targets, i[3] the row kernels' case (below); f[0] label
 * smoothing, f[1] denominator of MEAN. */

/* The common case of a language model's loss, logits [N, C] with class
 * indices, no class weights, no label smoothing: the backend's row kernels
 * (xent_lse, xent_bwd: vectorised exp, threads over rows), and the gradient
 * written once (no zero fill first). Takes ownership of x and t. */
static bool ce_rows_case(const nn_tensor *x, bool prob, const nn_tensor *w, double eps,
                         const ce_geom *g) {
    return !prob && !w && eps == 0.0 && g->inner == 1 && x->ndim <= 2;
}

static nn_status ce_backward_rows(nn_node *nd, nn_tensor *x, nn_tensor *t, nn_tensor *gout,
                                  nn_tensor **gin) {
    ce_geom g = {1, 1, 1};
    ce_geometry(x, &g, nd->name);
    const int64_t ns = g.outer;
    nn_tensor *gx = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim);
    float *sc = nn__malloc((ns ? (size_t)ns : 1) * sizeof *sc);
    nn_status st = NN_OK;
    if (!gx || !sc) {
        nn__tensor_release(gx);
        gx = NULL;
        st = NN_ERR_NOMEM;
    } else {
        const int64_t *ty = nn__i64(t);
        const float *go = nn__f32(gout);
        for (int64_t i = 0; i < ns; i++)
            sc[i] = ty[i] == nd->i[1]
                        ? 0.0f
                        : (float)grad_scale(go, (nn_reduction)nd->i[0], nd->f[1], i);
        nn__xent_bwd_rows(ns, g.C, nn__f32(x), nn__f32(nd->saved[0]), ty, sc, nn__f32(gx));
    }
    nn__free(sc);
    nn__tensor_release(x);
    nn__tensor_release(t);
    gin[0] = gx;
    gin[1] = NULL;
    return st;
}
static nn_status ce_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *xin = nd->inputs[0], *tin = nd->inputs[1];
    ce_geom g = {1, 1, 1};
    ce_geometry(xin, &g, nd->name);
    nn_reduction red = (nn_reduction)nd->i[0];
    int64_t ignore = nd->i[1];
    bool prob = nd->i[2] != 0;
    double eps = nd->f[0], denom = nd->f[1];
    nn_tensor *x = nn__contig(xin), *t = nn__contig(tin);
    if (nd->i[3] && x && t) return ce_backward_rows(nd, x, t, gout, gin);
    nn_tensor *gx = x ? nn__zeros(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    bool want_t = prob && tin->requires_grad;
    nn_tensor *gt = (gx && want_t) ? nn__zeros(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    if (!x || !t || !gx || (want_t && !gt)) {
        nn__tensor_release(x);
        nn__tensor_release(t);
        nn__tensor_release(gx);
        return NN_ERR_NOMEM;
    }
    const float *xp = nn__f32(x), *lse = nn__f32(nd->saved[0]), *go = nn__f32(gout);
    const float *w = nd->saved[1] ? nn__f32(nd->saved[1]) : NULL;
    float *gxp = nn__f32(gx), *gtp = gt ? nn__f32(gt) : NULL;
    double wsum = 0.0;
    for (int64_t c = 0; c < g.C; c++) wsum += w ? w[c] : 1.0;
    const double C = (double)g.C;
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t k = 0; k < g.inner; k++) {
            int64_t si = o * g.inner + k, base = o * g.C * g.inner + k;
            double s = grad_scale(go, red, denom, si);
            if (!prob) {
                int64_t y = nn__i64(t)[si];
                if (y == ignore) continue;
                double wy = w ? w[y] : 1.0;
                for (int64_t c = 0; c < g.C; c++) {
                    double p = exp(xp[base + c * g.inner] - lse[si]);
                    double wc = w ? w[c] : 1.0;
                    double d = (1.0 - eps) * wy * (p - (c == y)) + eps / C * (p * wsum - wc);
                    gxp[base + c * g.inner] = (float)(s * d);
                }
            } else {
                const float *tp = nn__f32(t);
                double wt = 0.0;
                for (int64_t c = 0; c < g.C; c++)
                    wt += (w ? w[c] : 1.0) * ((1.0 - eps) * tp[base + c * g.inner] + eps / C);
                for (int64_t c = 0; c < g.C; c++) {
                    int64_t at = base + c * g.inner;
                    double lp = xp[at] - lse[si], wc = w ? w[c] : 1.0;
                    double tc = (1.0 - eps) * tp[at] + eps / C;
                    gxp[at] = (float)(s * (exp(lp) * wt - wc * tc));
                    if (gtp) gtp[at] = (float)(-s * wc * (1.0 - eps) * lp);
                }
            }
        }
    nn__tensor_release(x);
    nn__tensor_release(t);
    gin[0] = gx;
    gin[1] = gt;
    return NN_OK;
}

/* Forward: per-sample losses into per[], lse into lse[]; returns the MEAN denominator. */
static double ce_forward(const float *xp, const nn_tensor *t, const float *w, const ce_geom *g,
                         int64_t ignore, double eps, bool prob, bool rows, double *per,
                         float *lse) {
    const double C = (double)g->C;
    if (rows) nn__xent_lse_rows(g->outer, g->C, xp, lse);
    double denom = 0.0;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t k = 0; k < g->inner; k++) {
            int64_t si = o * g->inner + k, base = o * g->C * g->inner + k;
            double l;
            if (rows) { /* the backend's row kernel filled lse[] */
                l = lse[si];
            } else {
                double m = -INFINITY, acc = 0.0;
                for (int64_t c = 0; c < g->C; c++) m = fmax(m, xp[base + c * g->inner]);
                for (int64_t c = 0; c < g->C; c++) acc += exp(xp[base + c * g->inner] - m);
                l = m + log(acc);
                lse[si] = (float)l;
            }
            double loss = 0.0;
            if (!prob) {
                int64_t y = nn__i64(t)[si];
                if (y == ignore) {
                    per[si] = 0.0;
                    continue;
                }
                double wy = w ? w[y] : 1.0;
                loss = (1.0 - eps) * -wy * (xp[base + y * g->inner] - l);
                if (eps > 0.0) {
                    double sm = 0.0;
                    for (int64_t c = 0; c < g->C; c++)
                        sm -= (w ? w[c] : 1.0) * (xp[base + c * g->inner] - l);
                    loss += eps / C * sm;
                }
                denom += wy;
            } else {
                const float *tp = nn__f32(t);
                for (int64_t c = 0; c < g->C; c++) {
                    int64_t at = base + c * g->inner;
                    loss -= (w ? w[c] : 1.0) * ((1.0 - eps) * tp[at] + eps / C) * (xp[at] - l);
                }
                denom += 1.0;
            }
            per[si] = loss;
        }
    return denom;
}

nn_tensor *nn_cross_entropy_ex(nn_tensor *logits, nn_tensor *target, nn_tensor *weight,
                               int64_t ignore_index, double label_smoothing,
                               nn_reduction reduction) {
    NN__PROF_OP("nn_cross_entropy_ex");
    const char *fn = "nn_cross_entropy";
    if (!nn__check_f32(logits, fn, "logits") || !nn__check_tensor(target, fn, "target"))
        return NULL;
    if (!nn__loss_check_reduction(reduction, false, fn)) return NULL;
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
        return NN__FAIL(NN_ERR_INVALID, "%s: label_smoothing = %g, expected a value in [0, 1]", fn,
                        label_smoothing);
    ce_geom g = {1, 1, 1};
    if (!ce_geometry(logits, &g, fn) || !check_weight(weight, &g, fn)) return NULL;
    bool prob = target->dtype == NN_DTYPE_F32;
    if (prob) {
        if (!nn__same_shape(logits, target))
            return nn__loss_shape_error(fn, "probability target", target, logits);
    } else if (target->dtype != NN_DTYPE_I64) {
        return NN__FAIL(NN_ERR_DTYPE,
                        "%s: target must be i64 class indices or f32 probabilities (got %s)", fn,
                        nn_dtype_name(target->dtype));
    } else if (!check_index_target(logits, target, &g, ignore_index, fn)) {
        return NULL;
    }
    int64_t ns = g.outer * g.inner;
    nn_tensor *x = nn__contig(logits), *t = nn__contig(target),
              *wc = weight ? nn__contig(weight) : NULL;
    int64_t one = ns;
    nn_tensor *lse = nn__tensor_new(NN_DTYPE_F32, &one, 1);
    double *per = nn__calloc(ns ? (size_t)ns : 1, sizeof *per);
    nn_tensor *out = NULL;
    if (!x || !t || (weight && !wc) || !lse || !per) goto done;
    const bool rows = ce_rows_case(logits, prob, weight, label_smoothing, &g);
    double denom = ce_forward(nn__f32(x), t, wc ? nn__f32(wc) : NULL, &g, ignore_index,
                              label_smoothing, prob, rows, per, nn__f32(lse));
    out = reduce_out(logits, per, ns, denom, reduction);
    if (!out) goto done;
    nn_tensor *ins[2] = {logits, target};
    nn_node *nd;
    if (nn__record(out, fn, ce_backward, ins, 2, &nd) != NN_OK) {
        nn__err(NN_ERR_NOMEM, "%s: out of memory recording the graph", fn);
        nn__tensor_release(out);
        out = NULL;
        goto done;
    }
    if (nd) {
        nd->saved[0] = lse;
        nd->saved[1] = wc;
        lse = wc = NULL;
        nd->i[0] = reduction;
        nd->i[1] = ignore_index;
        nd->i[2] = prob;
        nd->i[3] = rows;
        nd->f[0] = label_smoothing;
        nd->f[1] = denom;
    }
done:
    nn__tensor_release(x);
    nn__tensor_release(t);
    nn__tensor_release(wc);
    nn__tensor_release(lse);
    nn__free(per);
    return nn__track(out);
}

nn_tensor *nn_cross_entropy(nn_tensor *logits, nn_tensor *target) {
    NN__PROF_OP("nn_cross_entropy");
    return nn_cross_entropy_ex(logits, target, NULL, -100, 0.0, NN_REDUCTION_MEAN);
}

/* ================================================================= NLL */

/* node: inputs {input, target}; saved[0] weight or NULL; i[0] reduction,
 * i[1] ignore_index; f[1] denominator. */
static nn_status nll_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *xin = nd->inputs[0];
    ce_geom g = {1, 1, 1};
    ce_geometry(xin, &g, nd->name);
    nn_reduction red = (nn_reduction)nd->i[0];
    nn_tensor *t = nn__contig(nd->inputs[1]);
    nn_tensor *gx = t ? nn__zeros(NN_DTYPE_F32, xin->shape, xin->ndim) : NULL;
    if (!gx) {
        nn__tensor_release(t);
        return NN_ERR_NOMEM;
    }
    const float *w = nd->saved[0] ? nn__f32(nd->saved[0]) : NULL, *go = nn__f32(gout);
    float *gxp = nn__f32(gx);
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t k = 0; k < g.inner; k++) {
            int64_t si = o * g.inner + k, y = nn__i64(t)[si];
            if (y == nd->i[1]) continue;
            double s = grad_scale(go, red, nd->f[1], si);
            gxp[o * g.C * g.inner + y * g.inner + k] = (float)(-s * (w ? w[y] : 1.0));
        }
    nn__tensor_release(t);
    gin[0] = gx;
    return NN_OK;
}

nn_tensor *nn_nll_loss(nn_tensor *input, nn_tensor *target, nn_tensor *weight, int64_t ignore_index,
                       nn_reduction reduction) {
    NN__PROF_OP("nn_nll_loss");
    const char *fn = "nn_nll_loss";
    if (!nn__check_f32(input, fn, "input") || !nn__check_tensor(target, fn, "target")) return NULL;
    if (!nn__loss_check_reduction(reduction, false, fn)) return NULL;
    ce_geom g = {1, 1, 1};
    if (!ce_geometry(input, &g, fn) || !check_weight(weight, &g, fn)) return NULL;
    if (target->dtype != NN_DTYPE_I64)
        return NN__FAIL(NN_ERR_DTYPE, "%s: target must be i64 class indices (got %s)", fn,
                        nn_dtype_name(target->dtype));
    if (!check_index_target(input, target, &g, ignore_index, fn)) return NULL;
    int64_t ns = g.outer * g.inner;
    nn_tensor *x = nn__contig(input), *t = nn__contig(target),
              *wc = weight ? nn__contig(weight) : NULL;
    double *per = nn__calloc(ns ? (size_t)ns : 1, sizeof *per);
    nn_tensor *out = NULL;
    if (!x || !t || (weight && !wc) || !per) goto done;
    const float *xp = nn__f32(x), *w = wc ? nn__f32(wc) : NULL;
    double denom = 0.0;
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t k = 0; k < g.inner; k++) {
            int64_t si = o * g.inner + k, y = nn__i64(t)[si];
            if (y == ignore_index) continue;
            double wy = w ? w[y] : 1.0;
            per[si] = -wy * xp[o * g.C * g.inner + y * g.inner + k];
            denom += wy;
        }
    out = reduce_out(input, per, ns, denom, reduction);
    if (!out) goto done;
    nn_tensor *ins[2] = {input, target};
    nn_node *nd;
    if (nn__record(out, fn, nll_backward, ins, 2, &nd) != NN_OK) {
        nn__err(NN_ERR_NOMEM, "%s: out of memory recording the graph", fn);
        nn__tensor_release(out);
        out = NULL;
        goto done;
    }
    if (nd) {
        nd->saved[0] = wc;
        wc = NULL;
        nd->i[0] = reduction;
        nd->i[1] = ignore_index;
        nd->f[1] = denom;
    }
done:
    nn__tensor_release(x);
    nn__tensor_release(t);
    nn__tensor_release(wc);
    nn__free(per);
    return nn__track(out);
}
