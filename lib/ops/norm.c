/* Normalization and regularization: batch_norm, layer_norm, group_norm,
 * dropout, embedding. Statistics are accumulated in double (two passes) so
 * large reductions stay accurate in f32. Forward and backward side by side. */
#include "backend/backend.h"
#include "nn_ops_internal.h"

#include <math.h>
#include <string.h>

/* Mean and 1/sqrt(var + eps) of the n values p[0..n) with (optional) the
 * biased variance in *var. Two passes in double. */
static void row_stats(const float *p, int64_t n, double eps, float *mean, float *invstd,
                      double *var) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += p[i];
    double m = n ? s / (double)n : 0.0, q = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = p[i] - m;
        q += d * d;
    }
    double v = n ? q / (double)n : 0.0;
    *mean = (float)m;
    *invstd = (float)(1.0 / sqrt(v + eps));
    if (var) *var = v;
}

/* -------------------------------------------------------------- batch_norm */

/* saved[0] = stats [2, C]: row 0 the mean used, row 1 the 1/std used.
 * i[0] = training. In training the mean and variance depend on x, which
 * adds the two mean terms to dx. */
static nn_status batch_norm_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *x = nd->inputs[0], *wt = nd->inputs[1];
    const bool training = nd->i[0] != 0;
    const int64_t N = x->shape[0], C = x->shape[1], S = (N * C) != 0 ? x->numel / (N * C) : 0;
    const double M = (double)(N * S);
    const float *mean = nn__f32(nd->saved[0]), *invstd = mean + C;
    nn_tensor *xc = nn__contig(x), *wc = wt ? nn__contig(wt) : NULL;
    double *sums = xc && (!wt || wc) ? nn__calloc((size_t)C * 2, sizeof(double)) : NULL;
    nn_status st = NN_OK;
    if (!sums) {
        st = NN_ERR_NOMEM;
        goto done;
    }
    const float *X = nn__f32(xc), *G = nn__f32(gout);
    /* sums[c] = Σ dy, sums[C + c] = Σ dy * xhat */
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *xp = X + (n * C + c) * S, *gp = G + (n * C + c) * S;
            const float m = mean[c], is = invstd[c];
            double sd = 0.0, sdx = 0.0;
            for (int64_t s = 0; s < S; s++) {
                sd += gp[s];
                sdx += (double)gp[s] * ((xp[s] - m) * is);
            }
            sums[c] += sd;
            sums[C + c] += sdx;
        }
    if (nn__ops_wants(nd, 0)) {
        gin[0] = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim);
        if (!gin[0]) {
            st = NN_ERR_NOMEM;
            goto done;
        }
        float *D = nn__f32(gin[0]);
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++) {
                const float *xp = X + (n * C + c) * S, *gp = G + (n * C + c) * S;
                float *dp = D + (n * C + c) * S;
                const float m = mean[c], is = invstd[c];
                const float k = (wc ? nn__f32(wc)[c] : 1.0f) * is;
                const float md = training ? (float)(sums[c] / M) : 0.0f;
                const float mdx = training ? (float)(sums[C + c] / M) : 0.0f;
                for (int64_t s = 0; s < S; s++) dp[s] = k * (gp[s] - md - (xp[s] - m) * is * mdx);
            }
    }
    for (int k = 1; k <= 2; k++) {
        if (!nn__ops_wants(nd, k)) continue;
        gin[k] = nn__tensor_new(NN_DTYPE_F32, &C, 1);
        if (!gin[k]) {
            st = NN_ERR_NOMEM;
            goto done;
        }
        for (int64_t c = 0; c < C; c++) nn__f32(gin[k])[c] = (float)sums[(k == 1 ? C : 0) + c];
    }
done:
    nn__free(sums);
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    return st;
}

/* Check an optional running-stat tensor: 1-D f32 [C]. */
static bool running_ok(const nn_tensor *t, int64_t C, const char *fn, const char *name) {
    return nn__ops_opt_vec(t, C, fn, name);
}

/* Element c of a 1-D tensor of any stride. */
static inline float *vec_at(nn_tensor *t, int64_t c) {
    return (float *)t->storage->data + t->offset + c * t->strides[0];
}

/* x of batch and group norm: f32 [N, C, *]; S the size of *. */
static bool nc_input(const nn_tensor *x, const char *fn, int64_t *N, int64_t *C, int64_t *S) {
    char s1[128];
    if (!nn__check_f32(x, fn, "x")) return false;
    if (x->ndim < 2) {
        nn__err(NN_ERR_SHAPE, "%s: x must be [N, C, *] (at least 2-D), got %s", fn,
                nn__shape_str(x->shape, x->ndim, s1, sizeof s1));
        return false;
    }
    *N = x->shape[0];
    *C = x->shape[1];
    *S = (*N * *C) != 0 ? x->numel / (*N * *C) : 0;
    return true;
}

/* What a normalization's forward holds: the statistics its backward keeps,
 * the output, and x, weight and bias contiguous. */
typedef struct norm_bufs {
    nn_tensor *stats, *y, *xc, *wc, *bc;
} norm_bufs;

static void norm_release(norm_bufs *b) {
    nn__tensor_release(b->stats);
    nn__tensor_release(b->y);
    nn__tensor_release(b->xc);
    nn__tensor_release(b->wc);
    nn__tensor_release(b->bc);
}

/* stats f32 [s0, s1], y like x, then x, weight and bias (when given)
 * contiguous, in that order; false, nothing held, when one fails. */
static bool norm_begin(norm_bufs *b, nn_tensor *x, nn_tensor *weight, nn_tensor *bias, int64_t s0,
                       int64_t s1) {
    int64_t sshape[2] = {s0, s1};
    b->stats = nn__tensor_new(NN_DTYPE_F32, sshape, 2);
    b->y = b->stats ? nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    b->xc = b->y ? nn__contig(x) : NULL;
    b->wc = weight && b->xc ? nn__contig(weight) : NULL;
    b->bc = bias && b->xc ? nn__contig(bias) : NULL;
    if (!b->xc || (weight && !b->wc) || (bias && !b->bc)) {
        norm_release(b);
        return false;
    }
    return true;
}

/* y on the tape with backward (inputs x, weight, bias; saved[0] = stats,
 * i[0] = i0); the rest released. */
static nn_tensor *norm_finish(norm_bufs *b, const char *fn, nn_backward_fn backward, nn_tensor *x,
                              nn_tensor *weight, nn_tensor *bias, int64_t i0) {
    nn_node *node = NULL;
    nn_tensor *in[3] = {x, weight, bias};
    nn_tensor *y = nn__ops_record(b->y, fn, backward, in, 3, &node);
    b->y = NULL;
    if (node) {
        node->saved[0] = b->stats;
        b->stats = NULL;
        node->i[0] = i0;
    }
    norm_release(b);
    return nn__track(y);
}

/* One channel's S values: q = p * a + b0 with a = weight[c] / std and
 * b0 = bias[c] - mean * a (weight 1 and bias 0 when not given). */
static void channel_affine(const float *p, float *q, int64_t S, const nn_tensor *wc,
                           const nn_tensor *bc, int64_t c, float mean, float invstd) {
    const float a = (wc ? nn__f32(wc)[c] : 1.0f) * invstd;
    const float b0 = (bc ? nn__f32(bc)[c] : 0.0f) - mean * a;
    for (int64_t i = 0; i < S; i++) q[i] = p[i] * a + b0;
}

/* Per-channel mean and 1/std from the batch (updating the running stats) or
 * from the running stats; stats [2, C]. */
static void batch_norm_stats(const float *X, int64_t N, int64_t C, int64_t S, bool training,
                             nn_tensor *rm, nn_tensor *rv, double momentum, double eps, double *acc,
                             float *stats) {
    float *mean = stats, *invstd = stats + C;
    if (!training) {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = *vec_at(rm, c);
            invstd[c] = (float)(1.0 / sqrt((double)*vec_at(rv, c) + eps));
        }
        return;
    }
    /* acc[c] = Σx, then Σ(x - mean)² in acc[C + c]. */
    const double M = (double)(N * S);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *p = X + (n * C + c) * S;
            double s = 0.0;
            for (int64_t i = 0; i < S; i++) s += p[i];
            acc[c] += s;
        }
    for (int64_t c = 0; c < C; c++) acc[c] /= M;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *p = X + (n * C + c) * S;
            const double m = acc[c];
            double q = 0.0;
            for (int64_t i = 0; i < S; i++) q += (p[i] - m) * (p[i] - m);
            acc[C + c] += q;
        }
    for (int64_t c = 0; c < C; c++) {
        const double var = acc[C + c] / M;
        mean[c] = (float)acc[c];
        invstd[c] = (float)(1.0 / sqrt(var + eps));
        /* Running stats: the unbiased variance, like PyTorch. */
        if (rm) *vec_at(rm, c) = (float)((1.0 - momentum) * *vec_at(rm, c) + momentum * acc[c]);
        if (rv)
            *vec_at(rv, c) =
                (float)((1.0 - momentum) * *vec_at(rv, c) + momentum * var * M / (M - 1.0));
    }
}

nn_tensor *nn_batch_norm(nn_tensor *x, nn_tensor *running_mean, nn_tensor *running_var,
                         nn_tensor *weight, nn_tensor *bias, bool training, double momentum,
                         double eps) {
    NN__PROF_OP("nn_batch_norm");
    const char *fn = "nn_batch_norm";
    char s1[128];
    int64_t N, C, S;
    if (!nc_input(x, fn, &N, &C, &S)) return NULL;
    if (!running_ok(running_mean, C, fn, "running_mean") ||
        !running_ok(running_var, C, fn, "running_var") ||
        !nn__ops_opt_vec(weight, C, fn, "weight") || !nn__ops_opt_vec(bias, C, fn, "bias"))
        return NULL;
    if (!(eps >= 0.0) || !(momentum >= 0.0 && momentum <= 1.0))
        return NN__FAIL(NN_ERR_INVALID, "%s: eps %g must be >= 0 and momentum %g in [0, 1]", fn,
                        eps, momentum);
    if (!training && (!running_mean || !running_var))
        return NN__FAIL(NN_ERR_INVALID,
                        "%s: running_mean and running_var are required in eval mode", fn);
    if (training && N * S <= 1)
        return NN__FAIL(NN_ERR_SHAPE,
                        "%s: expected more than 1 value per channel when training, got x %s", fn,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1));
    norm_bufs b;
    if (!norm_begin(&b, x, weight, bias, 2, C)) return NULL;
    double *acc = nn__calloc((size_t)C * 2, sizeof(double));
    if (!acc) {
        norm_release(&b);
        return NULL;
    }
    const float *X = nn__f32(b.xc);
    float *st = nn__f32(b.stats);
    batch_norm_stats(X, N, C, S, training, running_mean, running_var, momentum, eps, acc, st);
    nn__free(acc);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            channel_affine(X + (n * C + c) * S, nn__f32(b.y) + (n * C + c) * S, S, b.wc, b.bc, c,
                           st[c], st[C + c]);
    return norm_finish(&b, fn, batch_norm_backward, x, weight, bias, training);
}

/* -------------------------------------------------------------- layer_norm */

/* saved[0] = stats [rows, 2] (mean, invstd); i[0] = D. */
static nn_status layer_norm_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *x = nd->inputs[0], *wt = nd->inputs[1], *bs = nd->inputs[2];
    const int64_t D = nd->i[0], rows = D ? x->numel / D : 0;
    nn_tensor *xc = nn__contig(x), *wc = wt ? nn__contig(wt) : NULL;
    nn_status st = NN_ERR_NOMEM;
    if (!xc || (wt && !wc)) goto done;
    if (nn__ops_wants(nd, 0) && !(gin[0] = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim)))
        goto done;
    if (nn__ops_wants(nd, 1) && !(gin[1] = nn__zeros(NN_DTYPE_F32, wt->shape, wt->ndim))) goto done;
    if (nn__ops_wants(nd, 2) && !(gin[2] = nn__zeros(NN_DTYPE_F32, bs->shape, bs->ndim))) goto done;
    nn__kernels()->eltwise.layernorm_bwd_rows(
        rows, D, nn__f32(xc), nn__f32(gout), wc ? nn__f32(wc) : NULL, nn__f32(nd->saved[0]),
        gin[0] ? nn__f32(gin[0]) : NULL, gin[1] ? nn__f32(gin[1]) : NULL,
        gin[2] ? nn__f32(gin[2]) : NULL);
    st = NN_OK;
done:
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    return st;
}

/* weight / bias, when given, must have exactly normalized_shape. */
static bool affine_ok(const nn_tensor *t, const int64_t *ns, int n, const char *fn,
                      const char *name) {
    if (!t) return true;
    if (!nn__check_f32(t, fn, name)) return false;
    if (t->ndim != n || memcmp(t->shape, ns, sizeof(int64_t) * (size_t)n) != 0) {
        char s1[128], s2[128];
        nn__err(NN_ERR_SHAPE, "%s: %s has shape %s, expected normalized_shape %s", fn, name,
                nn__shape_str(t->shape, t->ndim, s1, sizeof s1),
                nn__shape_str(ns, n, s2, sizeof s2));
        return false;
    }
    return true;
}

nn_tensor *nn_layer_norm(nn_tensor *x, const int64_t *normalized_shape, int n, nn_tensor *weight,
                         nn_tensor *bias, double eps) {
    NN__PROF_OP("nn_layer_norm");
    const char *fn = "nn_layer_norm";
    char s1[128], s2[128];
    if (!nn__check_f32(x, fn, "x")) return NULL;
    if (n < 1 || n > x->ndim)
        return NN__FAIL(NN_ERR_SHAPE, "%s: normalized_shape has %d dims, x %s has %d", fn, n,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1), x->ndim);
    if (!normalized_shape) return NN__FAIL(NN_ERR_NULL, "%s: normalized_shape is NULL", fn);
    if (memcmp(x->shape + x->ndim - n, normalized_shape, sizeof(int64_t) * (size_t)n) != 0)
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s does not end in normalized_shape %s", fn,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1),
                        nn__shape_str(normalized_shape, n, s2, sizeof s2));
    if (!affine_ok(weight, normalized_shape, n, fn, "weight") ||
        !affine_ok(bias, normalized_shape, n, fn, "bias"))
        return NULL;
    if (!(eps >= 0.0)) return NN__FAIL(NN_ERR_INVALID, "%s: eps %g must be >= 0", fn, eps);
    int64_t D = 1;
    for (int i = x->ndim - n; i < x->ndim; i++) D *= x->shape[i];
    const int64_t rows = D ? x->numel / D : 0;
    norm_bufs b;
    if (!norm_begin(&b, x, weight, bias, rows, 2)) return NULL;
    nn__kernels()->eltwise.layernorm_rows(rows, D, nn__f32(b.xc), b.wc ? nn__f32(b.wc) : NULL,
                                          b.bc ? nn__f32(b.bc) : NULL, eps, nn__f32(b.y),
                                          nn__f32(b.stats));
    return norm_finish(&b, fn, layer_norm_backward, x, weight, bias, D);
}

/* -------------------------------------------------------------- group_norm */

/* saved[0] = stats [N*G, 2]; i[0] = groups. */
static nn_status group_norm_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *x = nd->inputs[0], *wt = nd->inputs[1];
    const int64_t N = x->shape[0], C = x->shape[1], G = nd->i[0], Cg = C / G;
    const int64_t S = (N * C) != 0 ? x->numel / (N * C) : 0, D = Cg * S;
    nn_tensor *xc = nn__contig(x), *wc = wt ? nn__contig(wt) : NULL;
    nn_status st = NN_ERR_NOMEM;
    if (!xc || (wt && !wc)) goto done;
    for (int k = 0; k < 3; k++)
        if (nn__ops_wants(nd, k) &&
            !(gin[k] = k == 0 ? nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim)
                              : nn__zeros(NN_DTYPE_F32, &C, 1)))
            goto done;
    const float *X = nn__f32(xc), *Gy = nn__f32(gout), *W = wc ? nn__f32(wc) : NULL;
    const float *St = nn__f32(nd->saved[0]);
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < G; g++) {
            const float m = St[2 * (n * G + g)], is = St[2 * (n * G + g) + 1];
            double s1 = 0.0, s2 = 0.0;
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                const float *xp = X + (n * C + c) * S, *gp = Gy + (n * C + c) * S;
                const float wcv = W ? W[c] : 1.0f;
                double sd = 0.0, sdx = 0.0;
                for (int64_t s = 0; s < S; s++) {
                    const float xh = (xp[s] - m) * is;
                    sd += gp[s];
                    sdx += (double)gp[s] * xh;
                }
                s1 += sd * wcv;
                s2 += sdx * wcv;
                if (gin[1]) nn__f32(gin[1])[c] += (float)sdx;
                if (gin[2]) nn__f32(gin[2])[c] += (float)sd;
            }
            if (!gin[0]) continue;
            const float m1 = (float)(s1 / (double)D), m2 = (float)(s2 / (double)D);
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                const float *xp = X + (n * C + c) * S, *gp = Gy + (n * C + c) * S;
                float *dp = nn__f32(gin[0]) + (n * C + c) * S;
                const float wcv = W ? W[c] : 1.0f;
                for (int64_t s = 0; s < S; s++)
                    dp[s] = is * (gp[s] * wcv - m1 - (xp[s] - m) * is * m2);
            }
        }
    st = NN_OK;
done:
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    return st;
}

nn_tensor *nn_group_norm(nn_tensor *x, int groups, nn_tensor *weight, nn_tensor *bias, double eps) {
    NN__PROF_OP("nn_group_norm");
    const char *fn = "nn_group_norm";
    int64_t N, C, S;
    if (!nc_input(x, fn, &N, &C, &S)) return NULL;
    if (groups < 1 || C % groups != 0)
        return NN__FAIL(NN_ERR_SHAPE, "%s: groups = %d must be >= 1 and divide the %lld channels",
                        fn, groups, (long long)C);
    if (!nn__ops_opt_vec(weight, C, fn, "weight") || !nn__ops_opt_vec(bias, C, fn, "bias"))
        return NULL;
    if (!(eps >= 0.0)) return NN__FAIL(NN_ERR_INVALID, "%s: eps %g must be >= 0", fn, eps);
    const int64_t G = groups, Cg = C / G;
    norm_bufs b;
    if (!norm_begin(&b, x, weight, bias, N * G, 2)) return NULL;
    float *St = nn__f32(b.stats);
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < G; g++) {
            /* A group's channels are contiguous: one row of Cg*S values. */
            const int64_t base = (n * C + g * Cg) * S;
            float *m = &St[2 * (n * G + g)], *is = m + 1;
            row_stats(nn__f32(b.xc) + base, Cg * S, eps, m, is, NULL);
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
                channel_affine(nn__f32(b.xc) + (n * C + c) * S, nn__f32(b.y) + (n * C + c) * S, S,
                               b.wc, b.bc, c, *m, *is);
        }
    return norm_finish(&b, fn, group_norm_backward, x, weight, bias, G);
}

/* ----------------------------------------------------------------- dropout */

/* dx = dy * mask (saved[0]; NULL means the identity). */
static nn_status dropout_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    gin[0] = nn__tensor_new(NN_DTYPE_F32, gout->shape, gout->ndim);
    NN__FORWARD_IF(!gin[0], nd->name);
    const float *g = nn__f32(gout);
    float *d = nn__f32(gin[0]);
    if (!nd->saved[0]) {
        memcpy(d, g, sizeof(float) * (size_t)gout->numel);
        return NN_OK;
    }
    const float *m = nn__f32(nd->saved[0]);
    for (int64_t i = 0; i < gout->numel; i++) d[i] = g[i] * m[i];
    return NN_OK;
}

nn_tensor *nn_dropout(nn_tensor *x, double p, bool training, nn_generator *g) {
    NN__PROF_OP("nn_dropout");
    const char *fn = "nn_dropout";
    if (!nn__check_f32(x, fn, "x")) return NULL;
    if (!(p >= 0.0 && p <= 1.0))
        return NN__FAIL(NN_ERR_INVALID, "%s: p = %g, expected 0 <= p <= 1", fn, p);
    if (!nn__check_gen(g, fn)) return NULL;
    nn_tensor *y = nn__clone(x), *mask = NULL;
    if (!y) return NULL;
    if (training && p > 0.0) {
        mask = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim);
        if (!mask) {
            nn__tensor_release(y);
            return NULL;
        }
        /* keep with probability 1-p, scaled by 1/(1-p); p == 1 drops all */
        nn_generator *gen = nn__gen(g);
        const float keep = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f, pf = (float)p;
        float *m = nn__f32(mask), *yp = nn__f32(y);
        for (int64_t i = 0; i < x->numel; i++) {
            m[i] = nn__gen_uniform_f32(gen) < pf ? 0.0f : keep;
            yp[i] *= m[i];
        }
    }
    nn_node *node = NULL;
    y = nn__ops_record(y, fn, dropout_backward, &x, 1, &node);
    if (node) {
        node->saved[0] = mask;
        mask = NULL;
    }
    nn__tensor_release(mask);
    return nn__track(y);
}

/* --------------------------------------------------------------- embedding */

/* dW[idx[i], :] += dy[i, :] (saved[0] = the contiguous indices), except
 * for the padding row i[0] (-1: none), which gets no gradient. */
static nn_status embedding_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const nn_tensor *w = nd->inputs[0], *idx = nd->saved[0];
    const int64_t dim = w->shape[1];
    float *d;
    nn_tensor *acc = w->grad_fn ? NULL : w->grad;
    if (acc && acc->storage->refs == 1 && nn__is_contiguous(acc) && nn__same_shape(acc, w)) {
        /* A leaf whose gradient is already there (a tied LM head's dW ran
         * first): add the rows into it in place, which is what the
         * engine's accumulation of a dense [V, C] result would do, without
         * a zero-filled V x C tensor and a pass over it (GPT-2: 154 MB
         * each, every step). gin[0] stays NULL: nothing left to add. */
        d = nn__f32(acc);
    } else {
        gin[0] = nn__zeros(NN_DTYPE_F32, w->shape, 2);
        NN__FORWARD_IF(!gin[0], nd->name);
        d = nn__f32(gin[0]);
    }
    const int64_t *ix = nn__i64(idx);
    const float *g = nn__f32(gout);
    for (int64_t i = 0; i < idx->numel; i++) {
        if (ix[i] == nd->i[0]) continue;
        float *row = d + ix[i] * dim;
        const float *gr = g + i * dim;
        for (int64_t j = 0; j < dim; j++) row[j] += gr[j];
    }
    return NN_OK;
}

static nn_tensor *embedding(nn_tensor *weight, nn_tensor *indices, int64_t padding_idx,
                            const char *fn) {
    char s1[128];
    if (!nn__check_weight(weight, fn, "weight") || !nn__check_tensor(indices, fn, "indices"))
        return NULL;
    if (indices->dtype != NN_DTYPE_I64)
        return NN__FAIL(NN_ERR_DTYPE, "%s: indices have dtype %s, expected i64", fn,
                        nn_dtype_name(indices->dtype));
    if (weight->ndim != 2)
        return NN__FAIL(NN_ERR_SHAPE, "%s: weight must be 2-D [num, dim], got %s", fn,
                        nn__shape_str(weight->shape, weight->ndim, s1, sizeof s1));
    if (indices->ndim >= NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_LIMIT, "%s: indices have %d dims, at most %d allowed", fn,
                        indices->ndim, NN_MAX_DIMS - 1);
    const int64_t num = weight->shape[0], dim = weight->shape[1];
    nn_tensor *ic = nn__contig(indices);
    if (!ic) return NULL;
    const int64_t *ix = nn__i64(ic);
    for (int64_t i = 0; i < ic->numel; i++)
        if (ix[i] < 0 || ix[i] >= num) {
            nn__tensor_release(ic);
            return NN__FAIL(NN_ERR_RANGE,
                            "%s: index %lld at position %lld is out of range [0, %lld)", fn,
                            (long long)ix[i], (long long)i, (long long)num);
        }
    int64_t shape[NN_MAX_DIMS];
    memcpy(shape, indices->shape, sizeof(int64_t) * (size_t)indices->ndim);
    shape[indices->ndim] = dim;
    nn_tensor *y = nn__tensor_new(NN_DTYPE_F32, shape, indices->ndim + 1);
    nn_tensor *wc = y ? nn__contig(weight) : NULL;
    if (!wc) {
        nn__tensor_release(y);
        nn__tensor_release(ic);
        return NULL;
    }
    if (nn__is_half(wc->dtype)) { /* gather rows, converted (a half weight needs no node) */
        const nn__cvt_kernels *cv = &nn__kernels()->half.cvt;
        nn__cvt_from_half_fn cvt = wc->dtype == NN_DTYPE_F16 ? cv->f16_to_f32 : cv->bf16_to_f32;
        for (int64_t i = 0; i < ic->numel; i++)
            cvt(nn__u16(wc) + ix[i] * dim, nn__f32(y) + i * dim, (size_t)dim);
    } else {
        for (int64_t i = 0; i < ic->numel; i++)
            memcpy(nn__f32(y) + i * dim, nn__f32(wc) + ix[i] * dim, sizeof(float) * (size_t)dim);
    }
    nn__tensor_release(wc);
    nn_node *node = NULL;
    y = nn__ops_record(y, fn, embedding_backward, &weight, 1, &node);
    if (node) {
        node->saved[0] = ic;
        node->i[0] = padding_idx;
        ic = NULL;
    }
    nn__tensor_release(ic);
    return nn__track(y);
}

nn_tensor *nn_embedding(nn_tensor *weight, nn_tensor *indices) {
    NN__PROF_OP("nn_embedding");
    return embedding(weight, indices, -1, "nn_embedding");
}

nn_tensor *nn_embedding_padded(nn_tensor *weight, nn_tensor *indices, int64_t padding_idx) {
    NN__PROF_OP("nn_embedding_padded");
    const char *fn = "nn_embedding_padded";
    if (!nn__check_f32(weight, fn, "weight")) return NULL;
    int64_t num = weight->ndim == 2 ? weight->shape[0] : 0;
    if (weight->ndim == 2 && (padding_idx < -num || padding_idx >= num))
        return NN__FAIL(NN_ERR_RANGE, "%s: padding_idx %lld is out of range [%lld, %lld)", fn,
                        (long long)padding_idx, (long long)-num, (long long)num);
    return embedding(weight, indices, padding_idx < 0 ? padding_idx + num : padding_idx, fn);
}
