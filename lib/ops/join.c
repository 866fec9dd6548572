/* Joining and indexing: concat, stack, index_select, gather, constant pad.
 * Forward and backward side by side. concat/stack/index_select/gather move
 * elements of any dtype (by element size); gradients flow for f32. */
#include "ops_internal.h"

#include <stdio.h>
#include <string.h>

/* Product of shape[from..to) (dims of a validated tensor: no overflow). */
static int64_t span(const int64_t *shape, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= shape[d];
    return p;
}

/* ------------------------------------------------------- concat / stack */
/* Output viewed as [outer, total, inner]; input k fills columns
 * [off_k, off_k + len_k) of the middle dim (len_k = 1 for stack). */

static nn_status join_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    int64_t outer = nd->i[0], total = nd->i[1], inner = nd->i[2];
    bool stack = nd->i[3] != 0;
    int dim = (int)nd->i[4];
    const float *gp = nn__f32(g);
    int64_t off = 0;
    for (int k = 0; k < nd->ninputs; k++) {
        const nn_tensor *in = nd->inputs[k];
        int64_t len = stack ? 1 : in->shape[dim];
        if (in->requires_grad) {
            nn_tensor *gx = nn__tensor_new(NN_DTYPE_F32, in->shape, in->ndim);
            NN__FORWARD_IF(!gx, nd->name);
            float *o = nn__f32(gx);
            for (int64_t r = 0; r < outer; r++)
                memcpy(o + r * len * inner, gp + (r * total + off) * inner,
                       sizeof(float) * (size_t)(len * inner));
            gin[k] = gx;
        }
        off += len;
    }
    return NN_OK;
}

static nn_tensor *join(nn_tensor *const *ts, int n, int dim, bool stack, const char *fn) {
    if (!nn__check_ptr(ts, fn, "ts")) return NULL;
    if (n < 1) return NN__FAIL(NN_ERR_INVALID, "%s: n = %d, expected at least one tensor", fn, n);
    for (int k = 0; k < n; k++) {
        char nm[32];
        snprintf(nm, sizeof nm, "ts[%d]", k);
        if (!nn__check_tensor(ts[k], fn, nm)) return NULL;
    }
    const nn_tensor *t0 = ts[0];
    int ndim = t0->ndim;
    if (!stack && ndim == 0)
        return NN__FAIL(NN_ERR_SHAPE, "%s: cannot concatenate 0-d tensors", fn);
    if (stack && ndim >= NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_LIMIT, "%s: stacking %d-d tensors exceeds %d dims", fn, ndim,
                        NN_MAX_DIMS);
    int ondim = stack ? ndim + 1 : ndim;
    if (!nn__norm_dim(&dim, ondim, fn)) return NULL;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        const nn_tensor *t = ts[k];
        if (t->dtype != t0->dtype)
            return NN__FAIL(NN_ERR_DTYPE, "%s: ts[%d] has dtype %s, ts[0] has %s", fn, k,
                            nn_dtype_name(t->dtype), nn_dtype_name(t0->dtype));
        bool ok = t->ndim == ndim;
        for (int d = 0; ok && d < ndim; d++)
            ok = (!stack && d == dim) || t->shape[d] == t0->shape[d];
        if (!ok) {
            char s1[128], s2[128];
            return NN__FAIL(NN_ERR_SHAPE,
                            "%s: ts[%d] has shape %s, incompatible with ts[0] %s along dim %d", fn,
                            k, nn__shape_str(t->shape, t->ndim, s1, sizeof s1),
                            nn__shape_str(t0->shape, ndim, s2, sizeof s2), dim);
        }
        total += stack ? 1 : t->shape[dim];
    }
    int64_t oshape[NN_MAX_DIMS];
    for (int d = 0, s = 0; d < ondim; d++) {
        if (d == dim)
            oshape[d] = stack ? n : total;
        else
            oshape[d] = t0->shape[s];
        if (d != dim || !stack) s++;
    }
    nn_tensor *out = nn__tensor_new(t0->dtype, oshape, ondim);
    if (!out) return NULL;
    int64_t outer = span(oshape, 0, dim), inner = span(oshape, dim + 1, ondim);
    size_t es = nn_dtype_size(t0->dtype);
    unsigned char *o = (unsigned char *)nn__raw_base(out);
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        nn_tensor *x = nn__contig(ts[k]);
        if (!x) {
            nn__tensor_release(out);
            return NULL;
        }
        int64_t len = stack ? 1 : x->shape[dim];
        const unsigned char *src = (const unsigned char *)nn__raw_base(x) + (size_t)x->offset * es;
        for (int64_t r = 0; r < outer; r++)
            memcpy(o + (size_t)((r * total + off) * inner) * es,
                   src + (size_t)(r * len * inner) * es, (size_t)(len * inner) * es);
        off += len;
        nn__tensor_release(x);
    }
    nn_node *nd;
    if (!nn__record_or_free(out, fn, join_backward, ts, n, &nd)) return NULL;
    if (nd) {
        nd->i[0] = outer;
        nd->i[1] = total;
        nd->i[2] = inner;
        nd->i[3] = stack;
        nd->i[4] = dim;
    }
    return nn__track(out);
}

nn_tensor *nn_concat(nn_tensor *const *ts, int n, int dim) {
    NN__PROF_OP("nn_concat");
    return join(ts, n, dim, false, "nn_concat");
}
nn_tensor *nn_stack(nn_tensor *const *ts, int n, int dim) {
    NN__PROF_OP("nn_stack");
    return join(ts, n, dim, true, "nn_stack");
}

/* ---------------------------------------------------------- index_select */
/* a viewed as [outer, size, inner]; out [outer, m, inner] with
 * out[o, j, :] = a[o, index[j], :];  backward: gx[o, index[j], :] += g[o, j, :]. */

static nn_status index_select_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    const nn_tensor *a = nd->inputs[0];
    nn_tensor *idx = nn__contig(nd->inputs[1]);
    nn_tensor *gx = nn__zeros(NN_DTYPE_F32, a->shape, a->ndim);
    if (!idx || !gx) {
        nn__tensor_release(idx);
        nn__tensor_release(gx);
        return nn__forward(nd->name);
    }
    int dim = (int)nd->i[0];
    int64_t outer = span(a->shape, 0, dim), size = a->shape[dim],
            inner = span(a->shape, dim + 1, a->ndim);
    int64_t m = idx->numel;
    const int64_t *ix = nn__i64(idx);
    const float *gp = nn__f32(g);
    float *o = nn__f32(gx);
    for (int64_t r = 0; r < outer; r++)
        for (int64_t j = 0; j < m; j++) {
            float *dst = o + (r * size + ix[j]) * inner;
            const float *src = gp + (r * m + j) * inner;
            for (int64_t i = 0; i < inner; i++) dst[i] += src[i];
        }
    nn__tensor_release(idx);
    gin[0] = gx;
    return NN_OK;
}

/* Check an i64 index tensor's values lie in [0, size). */
static bool check_index_values(const nn_tensor *idx, int64_t size, const char *fn) {
    for (int64_t i = 0; i < idx->numel; i++) {
        int64_t v = nn__i64(idx)[i];
        if (v < 0 || v >= size)
            return NN__FAIL(NN_ERR_RANGE, "%s: index %lld out of range [0, %lld) at position %lld",
                            fn, (long long)v, (long long)size, (long long)i) != NULL;
    }
    return true;
}

nn_tensor *nn_index_select(nn_tensor *a, int dim, nn_tensor *index) {
    NN__PROF_OP("nn_index_select");
    const char *fn = "nn_index_select";
    if (!nn__check_tensor(a, fn, "a") || !nn__check_tensor(index, fn, "index")) return NULL;
    if (index->dtype != NN_DTYPE_I64)
        return NN__FAIL(NN_ERR_DTYPE, "%s: index has dtype %s, expected i64", fn,
                        nn_dtype_name(index->dtype));
    if (index->ndim > 1)
        return NN__FAIL(NN_ERR_SHAPE, "%s: index must be 1-D, got %d-d", fn, index->ndim);
    if (a->ndim == 0) return NN__FAIL(NN_ERR_RANGE, "%s: cannot index a 0-d tensor", fn);
    if (!nn__norm_dim(&dim, a->ndim, fn)) return NULL;
    nn_tensor *idx = nn__contig(index);
    if (!idx) return NULL;
    if (!check_index_values(idx, a->shape[dim], fn)) {
        nn__tensor_release(idx);
        return NULL;
    }
    int64_t oshape[NN_MAX_DIMS];
    memcpy(oshape, a->shape, sizeof oshape);
    oshape[dim] = idx->numel;
    nn_tensor *x = nn__contig(a);
    nn_tensor *out = x ? nn__tensor_new(a->dtype, oshape, a->ndim) : NULL;
    if (!out) {
        nn__tensor_release(x);
        nn__tensor_release(idx);
        return NULL;
    }
    size_t es = nn_dtype_size(a->dtype);
    int64_t outer = span(a->shape, 0, dim), size = a->shape[dim],
            inner = span(a->shape, dim + 1, a->ndim);
    int64_t m = idx->numel;
    const unsigned char *src = (const unsigned char *)nn__raw_base(x) + (size_t)x->offset * es;
    unsigned char *o = nn__raw_base(out);
    for (int64_t r = 0; r < outer; r++)
        for (int64_t j = 0; j < m; j++)
            memcpy(o + (size_t)((r * m + j) * inner) * es,
                   src + (size_t)((r * size + nn__i64(idx)[j]) * inner) * es, (size_t)inner * es);
    nn__tensor_release(x);
    nn__tensor_release(idx);
    nn_tensor *ins[2] = {a, index};
    nn_node *nd;
    if (!nn__record_or_free(out, fn, index_select_backward, ins, 2, &nd)) return NULL;
    if (nd) nd->i[0] = dim;
    return nn__track(out);
}

/* ---------------------------------------------------------------- gather */
/* out[i] = a[i with coordinate dim replaced by index[i]] (out has index's
 * shape);  backward scatters: gx[...] += g[i]. */

/* Offsets into contiguous a for every element of index, in row-major order. */
static void gather_offsets(const nn_tensor *a, const nn_tensor *idx, int dim, int64_t *offs) {
    int64_t astr[NN_MAX_DIMS], pos[NN_MAX_DIMS] = {0};
    nn__contiguous_strides(a->shape, a->ndim, astr);
    const int64_t *ix = nn__i64(idx);
    for (int64_t i = 0; i < idx->numel; i++) {
        int64_t off = 0;
        for (int d = 0; d < a->ndim; d++) off += (d == dim ? ix[i] : pos[d]) * astr[d];
        offs[i] = off;
        for (int d = idx->ndim - 1; d >= 0; d--) {
            if (++pos[d] < idx->shape[d]) break;
            pos[d] = 0;
        }
    }
}

static nn_status gather_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    const nn_tensor *a = nd->inputs[0];
    nn_tensor *gx = nn__zeros(NN_DTYPE_F32, a->shape, a->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    const int64_t *offs = nn__i64(nd->saved[0]);
    const float *gp = nn__f32(g);
    float *o = nn__f32(gx);
    for (int64_t i = 0; i < g->numel; i++) o[offs[i]] += gp[i];
    gin[0] = gx;
    return NN_OK;
}

static bool check_gather_shapes(const nn_tensor *a, const nn_tensor *index, int dim,
                                const char *fn) {
    if (index->ndim != a->ndim)
        return NN__FAIL(NN_ERR_SHAPE, "%s: index has %d dims, a has %d", fn, index->ndim,
                        a->ndim) != NULL;
    for (int d = 0; d < a->ndim; d++)
        if (d != dim && index->shape[d] > a->shape[d]) {
            char s1[128], s2[128];
            return NN__FAIL(NN_ERR_SHAPE, "%s: index shape %s exceeds a's shape %s at dim %d", fn,
                            nn__shape_str(index->shape, index->ndim, s1, sizeof s1),
                            nn__shape_str(a->shape, a->ndim, s2, sizeof s2), d) != NULL;
        }
    return true;
}

nn_tensor *nn_gather(nn_tensor *a, int dim, nn_tensor *index) {
    NN__PROF_OP("nn_gather");
    const char *fn = "nn_gather";
    if (!nn__check_tensor(a, fn, "a") || !nn__check_tensor(index, fn, "index")) return NULL;
    if (index->dtype != NN_DTYPE_I64)
        return NN__FAIL(NN_ERR_DTYPE, "%s: index has dtype %s, expected i64", fn,
                        nn_dtype_name(index->dtype));
    if (!nn__norm_dim(&dim, a->ndim, fn) || !check_gather_shapes(a, index, dim, fn)) return NULL;
    nn_tensor *idx = nn__contig(index);
    if (!idx) return NULL;
    if (!check_index_values(idx, a->ndim ? a->shape[dim] : 1, fn)) {
        nn__tensor_release(idx);
        return NULL;
    }
    nn_tensor *offs = nn__tensor_new(NN_DTYPE_I64, idx->shape, idx->ndim);
    nn_tensor *x = offs ? nn__contig(a) : NULL;
    nn_tensor *out = x ? nn__tensor_new(a->dtype, idx->shape, idx->ndim) : NULL;
    if (!out) {
        nn__tensor_release(offs);
        nn__tensor_release(x);
        nn__tensor_release(idx);
        return NULL;
    }
    gather_offsets(a, idx, dim, nn__i64(offs));
    nn__tensor_release(idx);
    size_t es = nn_dtype_size(a->dtype);
    const unsigned char *src = (const unsigned char *)nn__raw_base(x) + (size_t)x->offset * es;
    unsigned char *o = nn__raw_base(out);
    for (int64_t i = 0; i < out->numel; i++)
        memcpy(o + (size_t)i * es, src + (size_t)nn__i64(offs)[i] * es, es);
    nn__tensor_release(x);
    nn_tensor *ins[2] = {a, index};
    nn_node *nd;
    if (!nn__record_or_free(out, fn, gather_backward, ins, 2, &nd)) {
        nn__tensor_release(offs);
        return NULL;
    }
    if (nd)
        nd->saved[0] = offs;
    else
        nn__tensor_release(offs);
    return nn__track(out);
}

/* ------------------------------------------------------------------- pad */
/* out[j] = a[j - lo] where that is inside a, else value (lo per dim; pads
 * may be negative, which crops). Backward: gx[i] = g[i + lo]. */

/* Walk every element of `in_shape`; call with its contiguous offset in the
 * input and (if inside) in the output, -1 otherwise. */
static void pad_walk(const int64_t *in_shape, const int64_t *out_shape, int ndim, const int64_t *lo,
                     float *out, const float *in, bool backward) {
    int64_t ostr[NN_MAX_DIMS], pos[NN_MAX_DIMS] = {0};
    nn__contiguous_strides(out_shape, ndim, ostr);
    int64_t n = span(in_shape, 0, ndim);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        bool inside = true;
        for (int d = 0; d < ndim && inside; d++) {
            int64_t j = pos[d] + lo[d];
            inside = j >= 0 && j < out_shape[d];
            off += j * ostr[d];
        }
        if (backward)
            out[i] = inside ? in[off] : 0.0f; /* out: gx, in: g */
        else if (inside)
            out[off] = in[i];
        for (int d = ndim - 1; d >= 0; d--) {
            if (++pos[d] < in_shape[d]) break;
            pos[d] = 0;
        }
    }
}

static nn_status pad_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    const nn_tensor *a = nd->inputs[0];
    nn_tensor *gx = nn__tensor_new(NN_DTYPE_F32, a->shape, a->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    pad_walk(a->shape, g->shape, a->ndim, nd->i, nn__f32(gx), nn__f32(g), true);
    gin[0] = gx;
    return NN_OK;
}

nn_tensor *nn_pad(nn_tensor *a, const int64_t *pads, int npads, double value) {
    NN__PROF_OP("nn_pad");
    const char *fn = "nn_pad";
    if (!nn__check_f32(a, fn, "a")) return NULL;
    if (npads < 0 || npads % 2 != 0 || npads > 2 * a->ndim)
        return NN__FAIL(NN_ERR_INVALID, "%s: npads = %d, expected an even number <= 2 * ndim = %d",
                        fn, npads, 2 * a->ndim);
    if (npads > 0 && !pads)
        return NN__FAIL(NN_ERR_NULL, "%s: pads is NULL with npads = %d", fn, npads);
    int64_t lo[NN_MAX_DIMS] = {0}, oshape[NN_MAX_DIMS];
    memcpy(oshape, a->shape, sizeof oshape);
    for (int k = 0; k < npads / 2; k++) {
        int d = a->ndim - 1 - k;
        int64_t l = pads[2 * k], h = pads[2 * k + 1];
        int64_t sz;
        if (__builtin_add_overflow(a->shape[d], l, &sz) || __builtin_add_overflow(sz, h, &sz) ||
            sz < 0)
            return NN__FAIL(NN_ERR_SHAPE,
                            "%s: padding (%lld, %lld) of dim %d (size %lld) gives a bad size", fn,
                            (long long)l, (long long)h, d, (long long)a->shape[d]);
        lo[d] = l;
        oshape[d] = sz;
    }
    nn_tensor *x = nn__contig(a);
    if (!x) return NULL;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, oshape, a->ndim);
    if (!out) {
        nn__tensor_release(x);
        return NULL;
    }
    float *o = nn__f32(out);
    for (int64_t i = 0; i < out->numel; i++) o[i] = (float)value;
    pad_walk(a->shape, oshape, a->ndim, lo, o, nn__f32(x), false);
    nn__tensor_release(x);
    nn_node *nd;
    if (!nn__record_or_free(out, fn, pad_backward, &a, 1, &nd)) return NULL;
    if (nd) memcpy(nd->i, lo, sizeof lo);
    return nn__track(out);
}
