/* Reductions: sum, mean, var, std, amax, amin, max/min with indices,
 * argmax/argmin. Forward and backward side by side.
 *
 * Every reduction walks the input once with the broadcast iterator: operand 0
 * is the input, operand 1 the output seen in its keepdim shape (stride 0 along
 * reduced dims), so one row function serves any set of reduced dims. Sums
 * accumulate in double. */
#include "ops_internal.h"

#include <math.h>
#include <string.h>

/* Which dims are reduced, and the output shape with and without keepdim. */
typedef struct {
    uint32_t mask;               /* bit d: dim d reduced */
    int64_t kshape[NN_MAX_DIMS]; /* keepdim shape (ndim = input ndim) */
    int64_t oshape[NN_MAX_DIMS]; /* result shape */
    int ondim;
    int64_t count; /* elements reduced into each output */
} red_plan;

static bool plan_dims(const nn_tensor *a, const int *dims, int ndims, bool keepdim, red_plan *r,
                      const char *fn) {
    memset(r, 0, sizeof *r);
    if (ndims < 0 || ndims > NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_INVALID, "%s: ndims = %d, expected 0..%d", fn, ndims, NN_MAX_DIMS) !=
               NULL;
    if (ndims > 0 && !dims)
        return NN__FAIL(NN_ERR_NULL, "%s: dims is NULL with ndims = %d", fn, ndims) != NULL;
    if (ndims == 0) r->mask = (1u << a->ndim) - 1u;
    for (int k = 0; k < ndims; k++) {
        int d = dims[k];
        if (!nn__norm_dim(&d, a->ndim, fn)) return false;
        if (a->ndim == 0) continue; /* dim 0 / -1 of a scalar: nothing to reduce */
        if (r->mask & (1u << d))
            return NN__FAIL(NN_ERR_INVALID, "%s: dim %d appears twice in dims", fn, d) != NULL;
        r->mask |= 1u << d;
    }
    r->count = 1;
    for (int d = 0; d < a->ndim; d++) {
        bool red = r->mask & (1u << d);
        r->kshape[d] = red ? 1 : a->shape[d];
        if (red) r->count *= a->shape[d];
        if (!red || keepdim) r->oshape[r->ondim++] = r->kshape[d];
    }
    return true;
}

/* The plan of a node's input, rebuilt in backward from the saved mask. */
static void plan_from_mask(const nn_tensor *a, uint32_t mask, red_plan *r) {
    memset(r, 0, sizeof *r);
    r->mask = mask;
    r->count = 1;
    for (int d = 0; d < a->ndim; d++) {
        bool red = mask & (1u << d);
        r->kshape[d] = red ? 1 : a->shape[d];
        if (red) r->count *= a->shape[d];
    }
}

/* Iterator over a's shape with operand 0 = a, operand 1 = a dense buffer
 * of the keepdim shape. */
static void red_iter(nn__bc *it, const nn_tensor *a, const red_plan *r, int64_t a_offset) {
    int64_t kstr[NN_MAX_DIMS];
    nn__contiguous_strides(r->kshape, a->ndim, kstr);
    nn__bc_begin(it, a->shape, a->ndim);
    nn__bc_add(it, a->shape, a->strides, a->ndim, a_offset);
    nn__bc_add(it, r->kshape, kstr, a->ndim, 0);
    nn__bc_done(it);
}

/* ---------------------------------------------------------------- sum */

typedef struct {
    const float *x;
    double *acc;
    const double *mean; /* second pass of var: accumulate (x - mean)^2 */
} sum_ctx;

static void sum_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const sum_ctx *c = vctx;
    const float *x = c->x + off[0];
    int64_t sx = step[0];
    if (step[1] == 0) { /* reducing along the row */
        double s = 0;
        if (c->mean) {
            double m = c->mean[off[1]];
            for (int64_t i = 0; i < n; i++) s += ((double)x[i * sx] - m) * ((double)x[i * sx] - m);
        } else if (sx == 1) {
            for (int64_t i = 0; i < n; i++) s += x[i];
        } else {
            for (int64_t i = 0; i < n; i++) s += x[i * sx];
        }
        c->acc[off[1]] += s;
    } else {
        double *acc = c->acc + off[1];
        int64_t so = step[1];
        if (c->mean) {
            const double *m = c->mean + off[1];
            for (int64_t i = 0; i < n; i++) {
                double dv = (double)x[i * sx] - m[i * so];
                acc[i * so] += dv * dv;
            }
        } else if (so == 1 && sx == 1) { /* e.g. summing [N, C] over N: row adds */
            for (int64_t i = 0; i < n; i++) acc[i] += x[i];
        } else {
            for (int64_t i = 0; i < n; i++) acc[i * so] += x[i * sx];
        }
    }
}

/* acc[keepdim index] = sum of a (or of (a - mean)^2). acc: numel(kshape) doubles. */
static double *sum_acc(const nn_tensor *a, const red_plan *r, const double *mean) {
    int64_t on = 1;
    for (int d = 0; d < a->ndim; d++) on *= r->kshape[d];
    double *acc = nn__calloc((size_t)(on ? on : 1), sizeof(double));
    if (!acc) return NULL;
    nn__bc it;
    red_iter(&it, a, r, a->offset);
    sum_ctx c = {nn__f32_base(a), acc, mean};
    nn__bc_run(&it, sum_row, &c);
    return acc;
}

/* Gradient broadcast: gx[i] = g[keepdim index of i] * scale (operand 0 = gx). */
typedef struct {
    float *gx;
    const float *g;
    float scale;
    const float *x; /* var/std: multiply by (x - mean) */
    const float *mean;
    const float *div; /* std: divide by std */
} bcast_ctx;

static void bcast_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const bcast_ctx *c = vctx;
    float *gx = c->gx + off[0];
    const float *g = c->g + off[1];
    int64_t so = step[1];
    if (!c->x) {
        for (int64_t i = 0; i < n; i++) gx[i] = g[i * so] * c->scale;
        return;
    }
    const float *x = c->x + off[0], *m = c->mean + off[1];
    for (int64_t i = 0; i < n; i++) {
        float v = g[i * so] * c->scale * (x[i] - m[i * so]);
        if (c->div) {
            /* std = 0 (all equal): gradient 0, as PyTorch (0/0 would be NaN). */
            float d = c->div[off[1] + i * so];
            v = d == 0.0f ? 0.0f : v / d;
        }
        gx[i] = v;
    }
}

static nn_tensor *bcast_grad(const nn_tensor *in, const nn_tensor *g, uint32_t mask, float scale,
                             const nn_tensor *x, const nn_tensor *mean, const nn_tensor *div) {
    red_plan r;
    plan_from_mask(in, mask, &r);
    nn_tensor *gx = nn__tensor_new(NN_DTYPE_F32, in->shape, in->ndim);
    if (!gx) return NULL;
    nn__bc it;
    red_iter(&it, gx, &r, 0);
    bcast_ctx c = {nn__f32(gx),
                   nn__f32(g),
                   scale,
                   x ? nn__f32(x) : NULL,
                   mean ? nn__f32(mean) : NULL,
                   div ? nn__f32(div) : NULL};
    nn__bc_run(&it, bcast_row, &c);
    return gx;
}

static nn_status sum_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    gin[0] = bcast_grad(nd->inputs[0], g, (uint32_t)nd->i[0], (float)nd->f[0], NULL, NULL, NULL);
    return gin[0] ? NN_OK : nn__forward(nd->name);
}

static nn_tensor *acc_to_tensor(const double *acc, const red_plan *r, double scale) {
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, r->oshape, r->ondim);
    if (!out) return NULL;
    float *o = nn__f32(out);
    for (int64_t i = 0; i < out->numel; i++) o[i] = (float)(acc[i] * scale);
    return out;
}

/* sum (mean when is_mean) over dims. */
static nn_tensor *sum_mean(nn_tensor *a, const int *dims, int ndims, bool keepdim, bool is_mean,
                           const char *fn) {
    if (!nn__check_f32(a, fn, "a")) return NULL;
    red_plan r;
    if (!plan_dims(a, dims, ndims, keepdim, &r, fn)) return NULL;
    double scale = is_mean ? 1.0 / (double)r.count : 1.0; /* mean of nothing: NaN like PyTorch */
    if (is_mean && r.count == 0) scale = NAN;
    double *acc = sum_acc(a, &r, NULL);
    if (!acc) return NULL;
    nn_tensor *out = acc_to_tensor(acc, &r, scale);
    nn__free(acc);
    if (!out) return NULL;
    nn_node *nd;
    if (!nn__record_or_free(out, fn, sum_backward, &a, 1, &nd)) return NULL;
    if (nd) {
        nd->i[0] = r.mask;
        nd->f[0] = scale;
    }
    return nn__track(out);
}

nn_tensor *nn_sum(nn_tensor *a, const int *dims, int ndims, bool keepdim) {
    NN__PROF_OP("nn_sum");
    return sum_mean(a, dims, ndims, keepdim, false, "nn_sum");
}

nn_tensor *nn_mean(nn_tensor *a, const int *dims, int ndims, bool keepdim) {
    NN__PROF_OP("nn_mean");
    return sum_mean(a, dims, ndims, keepdim, true, "nn_mean");
}

/* ------------------------------------------------------------ var / std */
/* var = sum((x - mean)^2) / max(0, N - correction)
 * dvar/dx = 2 (x - mean) / denom;  dstd/dx = (x - mean) / (denom * std),
 * and 0 where std = 0 (PyTorch's choice at the kink of sqrt). */

static nn_status var_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    bool is_std = nd->i[1] != 0;
    nn_tensor *x = nn__contig(nd->inputs[0]);
    NN__FORWARD_IF(!x, nd->name);
    float scale = (float)(is_std ? 1.0 / nd->f[0] : 2.0 / nd->f[0]);
    gin[0] = bcast_grad(nd->inputs[0], g, (uint32_t)nd->i[0], scale, x, nd->saved[0],
                        is_std ? nd->saved[1] : NULL);
    nn__tensor_release(x);
    return gin[0] ? NN_OK : nn__forward(nd->name);
}

static nn_tensor *var_std(nn_tensor *a, const int *dims, int ndims, int correction, bool keepdim,
                          bool is_std, const char *fn) {
    if (!nn__check_f32(a, fn, "a")) return NULL;
    if (correction < 0)
        return NN__FAIL(NN_ERR_INVALID, "%s: correction = %d, expected >= 0", fn, correction);
    red_plan r;
    if (!plan_dims(a, dims, ndims, keepdim, &r, fn)) return NULL;
    double *mean = sum_acc(a, &r, NULL);
    if (!mean) return NULL;
    int64_t kn = 1;
    for (int d = 0; d < a->ndim; d++) kn *= r.kshape[d];
    for (int64_t i = 0; i < kn; i++) mean[i] /= (double)r.count;
    double *ss = sum_acc(a, &r, mean);
    double denom = (double)r.count - correction;
    if (denom < 0) denom = 0;
    nn_tensor *out = ss ? acc_to_tensor(ss, &r, 1.0 / denom) : NULL;
    nn__free(ss);
    nn_tensor *mean_t = NULL;
    if (out && is_std) {
        float *o = nn__f32(out);
        for (int64_t i = 0; i < out->numel; i++) o[i] = sqrtf(o[i]);
    }
    nn_node *nd = NULL;
    if (out && !nn__record_or_free(out, fn, var_backward, &a, 1, &nd)) out = NULL;
    if (out && nd) {
        nd->i[0] = r.mask;
        nd->i[1] = is_std;
        nd->f[0] = denom;
        /* Keep the mean (keepdim shape) and, for std, the result. */
        mean_t = nn__tensor_new(NN_DTYPE_F32, r.kshape, a->ndim);
        if (mean_t) {
            for (int64_t i = 0; i < kn; i++) nn__f32(mean_t)[i] = (float)mean[i];
            nd->saved[0] = mean_t;
            if (is_std && !(nd->saved[1] = nn__alias(out))) mean_t = NULL;
        }
        if (!mean_t) {
            nn__tensor_release(out); /* frees the node and what it saved */
            out = NULL;
        }
    }
    nn__free(mean);
    return nn__track(out);
}

nn_tensor *nn_var(nn_tensor *a, const int *dims, int ndims, int correction, bool keepdim) {
    NN__PROF_OP("nn_var");
    return var_std(a, dims, ndims, correction, keepdim, false, "nn_var");
}

nn_tensor *nn_std(nn_tensor *a, const int *dims, int ndims, int correction, bool keepdim) {
    NN__PROF_OP("nn_std");
    return var_std(a, dims, ndims, correction, keepdim, true, "nn_std");
}

/* ------------------------------------------------ max / min and arg forms */
/* best[o] = flat (row-major) index into a of the first largest (smallest)
 * element reduced into output o. NaN wins over numbers (it propagates). */

typedef struct {
    const void *x; /* contiguous input base (offset included in off[0]) */
    int64_t *best;
    bool want_max;
    nn_dtype dtype;
} arg_ctx;

#define ARG_ROW(T, ISNAN)                                                                          \
    do {                                                                                           \
        const T *x = c->x;                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                          \
            int64_t xi = off[0] + i * step[0], o = off[1] + i * step[1];                           \
            T v = x[xi];                                                                           \
            int64_t b = c->best[o];                                                                \
            if (b < 0) {                                                                           \
                c->best[o] = xi;                                                                   \
                continue;                                                                          \
            }                                                                                      \
            T cur = x[b];                                                                          \
            if (ISNAN(cur)) continue;                                                              \
            if (ISNAN(v) || (c->want_max ? v > cur : v < cur)) c->best[o] = xi;                    \
        }                                                                                          \
    } while (0)

#define NEVER_NAN(v) false

static void arg_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const arg_ctx *c = vctx;
    switch (c->dtype) {
    case NN_DTYPE_F32: ARG_ROW(float, isnan); break;
    case NN_DTYPE_I64: ARG_ROW(int64_t, NEVER_NAN); break;
    default: ARG_ROW(uint8_t, NEVER_NAN); break;
    }
}

/* Flat indices (i64 tensor of the keepdim shape) of the extremes of a. */
static nn_tensor *arg_extreme(const nn_tensor *a, const red_plan *r, bool want_max,
                              const char *fn) {
    for (int d = 0; d < a->ndim; d++)
        if ((r->mask & (1u << d)) && a->shape[d] == 0)
            return NN__FAIL(NN_ERR_SHAPE, "%s: cannot reduce dim %d of size 0", fn, d);
    nn_tensor *x = nn__contig(a);
    if (!x) return NULL;
    nn_tensor *best = nn__tensor_new(NN_DTYPE_I64, r->kshape, a->ndim);
    if (!best) {
        nn__tensor_release(x);
        return NULL;
    }
    int64_t *b = nn__i64(best);
    for (int64_t i = 0; i < best->numel; i++) b[i] = -1;
    nn__bc it;
    red_iter(&it, x, r, x->offset);
    arg_ctx c = {nn__raw_base(x), b, want_max, x->dtype};
    nn__bc_run(&it, arg_row, &c);
    for (int64_t i = 0; i < best->numel; i++) b[i] -= x->offset;
    nn__tensor_release(x);
    return best;
}

/* Values of a at flat indices best (contiguous copy of a used), shaped oshape. */
static nn_tensor *take_flat(const nn_tensor *a, const nn_tensor *best, const int64_t *oshape,
                            int ondim) {
    nn_tensor *x = nn__contig(a);
    if (!x) return NULL;
    nn_tensor *out = nn__tensor_new(a->dtype, oshape, ondim);
    if (out) {
        const int64_t *b = nn__i64(best);
        switch (a->dtype) {
        case NN_DTYPE_F32:
            for (int64_t i = 0; i < out->numel; i++) nn__f32(out)[i] = nn__f32(x)[b[i]];
            break;
        case NN_DTYPE_I64:
            for (int64_t i = 0; i < out->numel; i++) nn__i64(out)[i] = nn__i64(x)[b[i]];
            break;
        default:
            for (int64_t i = 0; i < out->numel; i++) nn__u8(out)[i] = nn__u8(x)[b[i]];
            break;
        }
    }
    nn__tensor_release(x);
    return out;
}

/* Backward of amax/amin/max/min: g scattered to the saved flat positions. */
static nn_status extreme_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    const nn_tensor *in = nd->inputs[0];
    nn_tensor *gx = nn__zeros(NN_DTYPE_F32, in->shape, in->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    const int64_t *b = nn__i64(nd->saved[0]);
    const float *gv = nn__f32(g);
    float *o = nn__f32(gx);
    for (int64_t i = 0; i < g->numel; i++) o[b[i]] += gv[i];
    gin[0] = gx;
    return NN_OK;
}

static bool check_extreme_dtype(const nn_tensor *a, const char *fn) {
    if (a->dtype == NN_DTYPE_F32 || a->dtype == NN_DTYPE_I64 || a->dtype == NN_DTYPE_U8)
        return true;
    nn__err(NN_ERR_DTYPE, "%s: argument 'a' has dtype %s, expected f32, i64 or u8", fn,
            nn_dtype_name(a->dtype));
    return false;
}

/* Values of the extremes over a plan; records autograd for f32. */
static nn_tensor *extreme_values(nn_tensor *a, const red_plan *r, bool want_max, const char *fn,
                                 nn_tensor **best_out) {
    nn_tensor *best = arg_extreme(a, r, want_max, fn);
    if (!best) return NULL;
    nn_tensor *out = take_flat(a, best, r->oshape, r->ondim);
    nn_node *nd = NULL;
    if (out && a->dtype == NN_DTYPE_F32) {
        if (!nn__record_or_free(out, fn, extreme_backward, &a, 1, &nd)) {
            out = NULL;
        } else if (nd) {
            nd->saved[0] = best;
            nn__tensor_retain(best);
        }
    }
    if (best_out && out)
        *best_out = best;
    else
        nn__tensor_release(best);
    return out;
}

static nn_tensor *amax_amin(nn_tensor *a, const int *dims, int ndims, bool keepdim, bool want_max,
                            const char *fn) {
    if (!nn__check_tensor(a, fn, "a") || !check_extreme_dtype(a, fn)) return NULL;
    red_plan r;
    if (!plan_dims(a, dims, ndims, keepdim, &r, fn)) return NULL;
    return nn__track(extreme_values(a, &r, want_max, fn, NULL));
}

nn_tensor *nn_amax(nn_tensor *a, const int *dims, int ndims, bool keepdim) {
    NN__PROF_OP("nn_amax");
    return amax_amin(a, dims, ndims, keepdim, true, "nn_amax");
}

nn_tensor *nn_amin(nn_tensor *a, const int *dims, int ndims, bool keepdim) {
    NN__PROF_OP("nn_amin");
    return amax_amin(a, dims, ndims, keepdim, false, "nn_amin");
}

/* Convert flat indices (keepdim shape) to indices along dim, shaped oshape. */
static nn_tensor *flat_to_dim_index(const nn_tensor *a, const nn_tensor *best, int dim,
                                    const int64_t *oshape, int ondim) {
    nn_tensor *idx = nn__tensor_new(NN_DTYPE_I64, oshape, ondim);
    if (!idx) return NULL;
    int64_t inner = 1, size = a->ndim ? a->shape[dim] : 1;
    for (int d = dim + 1; d < a->ndim; d++) inner *= a->shape[d];
    for (int64_t i = 0; i < idx->numel; i++) nn__i64(idx)[i] = (nn__i64(best)[i] / inner) % size;
    return idx;
}

static nn_tensor *max_min(nn_tensor *a, int dim, bool keepdim, nn_tensor **indices, bool want_max,
                          const char *fn) {
    if (indices) *indices = NULL;
    if (!nn__check_tensor(a, fn, "a") || !check_extreme_dtype(a, fn)) return NULL;
    red_plan r;
    if (!plan_dims(a, &dim, 1, keepdim, &r, fn)) return NULL;
    nn__norm_dim(&dim, a->ndim, fn);
    nn_tensor *best = NULL;
    nn_tensor *vals = extreme_values(a, &r, want_max, fn, &best);
    if (!vals) return NULL;
    if (indices) {
        nn_tensor *idx = flat_to_dim_index(a, best, dim, r.oshape, r.ondim);
        nn__tensor_release(best);
        if (!idx) {
            nn__tensor_release(vals);
            return NULL;
        }
        /* Track values first so a failure to track idx leaves nothing behind. */
        vals = nn__track(vals);
        if (!vals) {
            nn__tensor_release(idx);
            return NULL;
        }
        /* Tracking only fails inside a scope, which then owns vals. */
        *indices = nn__track(idx);
        return *indices ? vals : NULL;
    }
    nn__tensor_release(best);
    return nn__track(vals);
}

nn_tensor *nn_max(nn_tensor *a, int dim, bool keepdim, nn_tensor **indices) {
    NN__PROF_OP("nn_max");
    return max_min(a, dim, keepdim, indices, true, "nn_max");
}

nn_tensor *nn_min(nn_tensor *a, int dim, bool keepdim, nn_tensor **indices) {
    NN__PROF_OP("nn_min");
    return max_min(a, dim, keepdim, indices, false, "nn_min");
}

static nn_tensor *arg_max_min(nn_tensor *a, int dim, bool keepdim, bool want_max, const char *fn) {
    if (!nn__check_tensor(a, fn, "a") || !check_extreme_dtype(a, fn)) return NULL;
    red_plan r;
    if (!plan_dims(a, &dim, 1, keepdim, &r, fn)) return NULL;
    nn__norm_dim(&dim, a->ndim, fn);
    nn_tensor *best = arg_extreme(a, &r, want_max, fn);
    if (!best) return NULL;
    nn_tensor *idx = flat_to_dim_index(a, best, dim, r.oshape, r.ondim);
    nn__tensor_release(best);
    return nn__track(idx);
}

nn_tensor *nn_argmax(nn_tensor *a, int dim, bool keepdim) {
    NN__PROF_OP("nn_argmax");
    return arg_max_min(a, dim, keepdim, true, "nn_argmax");
}

nn_tensor *nn_argmin(nn_tensor *a, int dim, bool keepdim) {
    NN__PROF_OP("nn_argmin");
    return arg_max_min(a, dim, keepdim, false, "nn_argmin");
}
