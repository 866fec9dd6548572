/* ONNX operators on libnn's ops: one node at a time, inputs borrowed from
 * the value table, outputs as results of public ops (the executor's scope
 * owns them). f32 math goes through the public ops, so gradients flow; the
 * small integer tensors of shape arithmetic (Shape -> Gather -> Concat ->
 * Reshape) are computed here exactly in i64. Every attribute and shape
 * input from the file is range-checked before use. */
#include "onnx/onnx_internal.h"

#if NN_HAVE_ONNX

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctx {
    const nn__onnx_graph *g;
    const nn__onnx_node *n;
    nn_tensor **vals;
    const char *fn;
} ctx;

static nn_status fail(const ctx *c, nn_status st, const char *fmt, ...) NN__PRINTF(3, 4);
static nn_status fail(const ctx *c, nn_status st, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nn__err(st, "%s: node '%s' (%s): %s", c->fn, c->n->name, nn__onnx_op_name(c->n->op),
                   msg);
}

/* When a libnn op failed: its message, prefixed with the node. */
static nn_status op_failed(const ctx *c) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", nn_last_error());
    nn_status st = nn_last_status();
    if (st == NN_OK) st = NN_ERR_STATE;
    return nn__err(st, "%s: node '%s' (%s): %s", c->fn, c->n->name, nn__onnx_op_name(c->n->op),
                   msg);
}

static nn_tensor *in(const ctx *c, int k) {
    if (k >= c->n->nin || c->n->in[k] < 0) return NULL;
    return c->vals[c->n->in[k]];
}

static bool fits_int(int64_t v) { return v >= INT_MIN / 2 && v <= INT_MAX / 2; }

/* The values of an integer tensor of at most max elements (ndim <= 1). */
static nn_status read_ints(const ctx *c, const nn_tensor *t, int64_t *out, int max, int *n,
                           const char *what) {
    if (!t) return fail(c, NN_ERR_FORMAT, "input %s is missing", what);
    if (t->dtype != NN_DTYPE_I64 || t->ndim > 1)
        return fail(c, NN_ERR_FORMAT, "input %s must be a 1-D integer tensor, got %s of %d dims",
                    what, nn_dtype_name(t->dtype), t->ndim);
    if (t->numel > max)
        return fail(c, NN_ERR_LIMIT, "input %s has %lld entries (at most %d)", what,
                    (long long)t->numel, max);
    for (int64_t i = 0; i < t->numel; i++)
        out[i] = *((const int64_t *)t->storage->data + nn__flat_offset(t, i));
    *n = (int)t->numel;
    return NN_OK;
}

static nn_status norm_axis(const ctx *c, int64_t axis, int ndim, int *out) {
    *out = 0;
    if (axis < -ndim || axis >= (ndim ? ndim : 1))
        return fail(c, NN_ERR_RANGE, "axis %lld out of range for %d dims", (long long)axis, ndim);
    *out = (int)(axis < 0 ? axis + ndim : axis);
    return NN_OK;
}

#define NEED(t)                                                                                    \
    do {                                                                                           \
        if (!(t)) return op_failed(c);                                                             \
    } while (0)

/* ------------------------------------------------- integer elementwise */

/* a OP b with broadcasting, for non-f32 tensors (exact in i64; no grad). */
static nn_tensor *int_binary(const ctx *c, nn_tensor *a, nn_tensor *b, nn__onnx_op op,
                             nn_tensor *cond) {
    int64_t shape[NN_MAX_DIMS], sh2[NN_MAX_DIMS];
    int nd, nd2;
    if (!nn__broadcast_shapes(a->shape, a->ndim, b->shape, b->ndim, shape, &nd, c->fn)) return NULL;
    if (cond) {
        if (!nn__broadcast_shapes(shape, nd, cond->shape, cond->ndim, sh2, &nd2, c->fn)) return NULL;
        memcpy(shape, sh2, sizeof shape);
        nd = nd2;
    }
    nn_dtype dt = a->dtype;
    nn_tensor *out = nn__tensor_new(dt, shape, nd); /* untracked: the caller tracks it */
    if (!out) return NULL;
    const nn_tensor *src[3] = {a, b, cond};
    int64_t str[3][NN_MAX_DIMS];
    for (int s = 0; s < 3; s++) {
        const nn_tensor *t = src[s];
        if (!t) continue;
        for (int d = 0; d < nd; d++) {
            int td = d - (nd - t->ndim);
            str[s][d] = td < 0 || t->shape[td] == 1 ? 0 : t->strides[td];
        }
    }
    int64_t idx[NN_MAX_DIMS] = {0};
    for (int64_t i = 0; i < out->numel; i++) {
        int64_t off[3] = {a->offset, b->offset, cond ? cond->offset : 0};
        for (int s = 0; s < 3; s++)
            for (int d = 0; d < nd && src[s]; d++) off[s] += idx[d] * str[s][d];
        int64_t ia, ib;
        if (dt == NN_DTYPE_I64) {
            ia = ((const int64_t *)a->storage->data)[off[0]];
            ib = ((const int64_t *)b->storage->data)[off[1]];
        } else {
            ia = ((const uint8_t *)a->storage->data)[off[0]];
            ib = ((const uint8_t *)b->storage->data)[off[1]];
        }
        int64_t r;
        switch (op) {
        case NN__OP_ADD: r = (int64_t)((uint64_t)ia + (uint64_t)ib); break;
        case NN__OP_SUB: r = (int64_t)((uint64_t)ia - (uint64_t)ib); break;
        case NN__OP_MUL: r = (int64_t)((uint64_t)ia * (uint64_t)ib); break;
        case NN__OP_DIV:
            if (ib == 0 || (ia == INT64_MIN && ib == -1)) {
                nn__tensor_release(out);
                return NN__FAIL(NN_ERR_INVALID, "%s: node '%s' (Div): integer division by zero",
                                c->fn, c->n->name);
            }
            r = ia / ib;
            break;
        case NN__OP_WHERE: r = ((const uint8_t *)cond->storage->data)[off[2]] ? ia : ib; break;
        default: r = 0; break;
        }
        if (dt == NN_DTYPE_I64) nn__i64(out)[i] = r;
        else nn__u8(out)[i] = (uint8_t)r;
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
    return out;
}

/* ------------------------------------------------------------- erf op */

static nn_status erf_backward(nn_node *node, nn_tensor *g, nn_tensor **gi) {
    nn_tensor *x = node->saved[0];
    nn_tensor *out = nn__empty_like(x);
    if (!out) return NN_ERR_NOMEM;
    const double k = 2.0 / sqrt(M_PI);
    for (int64_t i = 0; i < x->numel; i++) {
        double v = nn__f32(x)[i];
        nn__f32(out)[i] = (float)(nn__f32(g)[i] * k * exp(-v * v));
    }
    gi[0] = out;
    return NN_OK;
}

nn_tensor *nn__onnx_erf(nn_tensor *x) {
    const char *fn = "erf";
    if (!nn__check_f32(x, fn, "x")) return NULL;
    nn_tensor *xc = nn__contig(x);
    nn_tensor *y = xc ? nn__empty_like(xc) : NULL;
    if (!y) {
        nn__tensor_release(xc);
        return NULL;
    }
    for (int64_t i = 0; i < xc->numel; i++) nn__f32(y)[i] = erff(nn__f32(xc)[i]);
    nn_node *node = NULL;
    if (nn__record(y, "erf", erf_backward, &x, 1, &node)) {
        nn__tensor_release(xc);
        nn__tensor_release(y);
        return NULL;
    }
    if (node) node->saved[0] = nn__alias(xc);
    nn__tensor_release(xc);
    if (node && !node->saved[0]) {
        nn__tensor_release(y);
        return NULL;
    }
    return nn__track(y);
}

/* -------------------------------------------------------------- conv */

typedef struct window {
    int nsp;            /* spatial dims: 1 or 2 */
    int64_t k[2], s[2], d[2], pb[2], pe[2];
} window;

/* kernel_shape (or the weight's), strides, pads, dilations of a conv/pool
 * node on input x (ndim 3 or 4), each checked to be small and positive. */
static nn_status get_window(const ctx *c, const nn_tensor *x, const nn_tensor *w, window *win) {
    const nn__onnx_node *n = c->n;
    if (x->ndim != 3 && x->ndim != 4)
        return fail(c, NN_ERR_UNSUPPORTED, "input of %d dims (1-D and 2-D windows only)", x->ndim);
    int nsp = x->ndim - 2;
    win->nsp = nsp;
    for (int i = 0; i < nsp; i++) {
        win->k[i] = w ? (w->ndim == x->ndim ? w->shape[2 + i] : -1) : -1;
        win->s[i] = win->d[i] = 1;
        win->pb[i] = win->pe[i] = 0;
    }
    if (n->has_l[0]) {
        if (n->nl[0] != nsp) return fail(c, NN_ERR_FORMAT, "kernel_shape has %d entries", n->nl[0]);
        for (int i = 0; i < nsp; i++) win->k[i] = n->l[0][i];
    }
    if (n->has_l[1] && n->nl[1] != nsp)
        return fail(c, NN_ERR_FORMAT, "strides has %d entries for %d spatial dims", n->nl[1], nsp);
    if (n->has_l[2] && n->nl[2] != 2 * nsp)
        return fail(c, NN_ERR_FORMAT, "pads has %d entries for %d spatial dims", n->nl[2], nsp);
    if (n->has_l[3] && n->nl[3] != nsp)
        return fail(c, NN_ERR_FORMAT, "dilations has %d entries for %d spatial dims", n->nl[3], nsp);
    for (int i = 0; i < nsp; i++) {
        if (n->has_l[1]) win->s[i] = n->l[1][i];
        if (n->has_l[2]) {
            win->pb[i] = n->l[2][i];
            win->pe[i] = n->l[2][i + nsp];
        }
        if (n->has_l[3]) win->d[i] = n->l[3][i];
        if (win->k[i] < 1 || win->s[i] < 1 || win->d[i] < 1 || win->pb[i] < 0 || win->pe[i] < 0 ||
            !fits_int(win->k[i]) || !fits_int(win->s[i]) || !fits_int(win->d[i]) ||
            !fits_int(win->pb[i]) || !fits_int(win->pe[i]))
            return fail(c, NN_ERR_FORMAT,
                        "window %lld, stride %lld, dilation %lld or pads %lld/%lld out of range",
                        (long long)win->k[i], (long long)win->s[i], (long long)win->d[i],
                        (long long)win->pb[i], (long long)win->pe[i]);
    }
    return NN_OK;
}

/* Make pads symmetric by padding x explicitly (value v) where begin != end. */
static nn_tensor *pad_extra(nn_tensor *x, window *w, double v) {
    int64_t pads[4] = {0, 0, 0, 0};
    bool any = false;
    for (int i = 0; i < w->nsp; i++) {
        if (w->pb[i] == w->pe[i]) continue;
        int slot = 2 * (w->nsp - 1 - i);
        pads[slot] = w->pb[i];
        pads[slot + 1] = w->pe[i];
        w->pb[i] = w->pe[i] = 0;
        any = true;
    }
    return any ? nn_pad(x, pads, 2 * w->nsp, v) : x;
}

static nn_status run_conv(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0), *w = in(c, 1), *b = in(c, 2);
    window win;
    nn_status st = get_window(c, x, w, &win);
    if (st) return st;
    int64_t grp = c->n->a[0];
    if (grp < 1 || !fits_int(grp)) return fail(c, NN_ERR_FORMAT, "group %lld", (long long)grp);
    if (c->n->op == NN__OP_CONV_TRANSPOSE) {
        if (win.nsp != 2 || win.pb[0] != win.pe[0] || win.pb[1] != win.pe[1])
            return fail(c, NN_ERR_UNSUPPORTED, "only 2-D with symmetric pads");
        int64_t op0 = c->n->a[4], op1 = c->n->a[5];
        if (op0 < 0 || op1 < 0 || !fits_int(op0) || !fits_int(op1))
            return fail(c, NN_ERR_FORMAT, "output_padding out of range");
        outs[0] = nn_conv_transpose2d(x, w, b, (int)win.s[0], (int)win.s[1], (int)win.pb[0],
                                      (int)win.pb[1], (int)op0, (int)op1, (int)win.d[0],
                                      (int)win.d[1], (int)grp);
        NEED(outs[0]);
        return NN_OK;
    }
    NEED(x = pad_extra(x, &win, 0.0));
    if (win.nsp == 1)
        outs[0] = nn_conv1d(x, w, b, (int)win.s[0], (int)win.pb[0], (int)win.d[0], (int)grp);
    else
        outs[0] = nn_conv2d(x, w, b, (int)win.s[0], (int)win.s[1], (int)win.pb[0], (int)win.pb[1],
                            (int)win.d[0], (int)win.d[1], (int)grp);
    NEED(outs[0]);
    return NN_OK;
}

static nn_status run_pool(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    window win;
    nn_status st = get_window(c, x, NULL, &win);
    if (st) return st;
    if (!c->n->has_l[0]) return fail(c, NN_ERR_FORMAT, "kernel_shape is required");
    if (c->n->nout > 1 && c->n->out[1] >= 0)
        return fail(c, NN_ERR_UNSUPPORTED, "the Indices output");
    bool maxp = c->n->op == NN__OP_MAX_POOL;
    if (!maxp && win.d[0] * (win.nsp > 1 ? win.d[1] : 1) != 1)
        return fail(c, NN_ERR_UNSUPPORTED, "dilated average pooling");
    NEED(x = pad_extra(x, &win, maxp ? -INFINITY : 0.0));
    bool one = win.nsp == 1;
    if (one) { /* [N, C, L] as [N, C, 1, L] */
        NEED(x = nn_unsqueeze(x, 2));
        win.k[1] = win.k[0], win.s[1] = win.s[0], win.d[1] = win.d[0], win.pb[1] = win.pb[0];
        win.k[0] = win.s[0] = win.d[0] = 1, win.pb[0] = 0;
    }
    bool ceil_mode = c->n->a[1] != 0;
    nn_tensor *y =
        maxp ? nn_max_pool2d(x, (int)win.k[0], (int)win.k[1], (int)win.s[0], (int)win.s[1],
                             (int)win.pb[0], (int)win.pb[1], (int)win.d[0], (int)win.d[1], ceil_mode,
                             NULL)
             : nn_avg_pool2d(x, (int)win.k[0], (int)win.k[1], (int)win.s[0], (int)win.s[1],
                             (int)win.pb[0], (int)win.pb[1], ceil_mode, c->n->a[3] != 0);
    NEED(y);
    if (one) NEED(y = nn_squeeze(y, 2));
    outs[0] = y;
    return NN_OK;
}

/* ------------------------------------------------------- shape helpers */

static nn_status axes_of(const ctx *c, int input, int64_t *axes, int *n, bool *given) {
    *n = 0;
    *given = false;
    if (c->n->has_l[0]) {
        memcpy(axes, c->n->l[0], (size_t)c->n->nl[0] * sizeof *axes);
        *n = c->n->nl[0];
        *given = true;
        return NN_OK;
    }
    nn_tensor *t = in(c, input);
    if (!t) return NN_OK;
    *given = true;
    return read_ints(c, t, axes, NN_MAX_DIMS, n, "axes");
}

static nn_status run_reduce(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t axes[NN_MAX_DIMS];
    int na, dims[NN_MAX_DIMS];
    bool given;
    nn_status st = axes_of(c, 1, axes, &na, &given);
    if (st) return st;
    if (na == 0 && c->n->a[1]) {
        outs[0] = x;
        return NN_OK;
    }
    if (na == 0)
        for (int d = 0; d < x->ndim; d++) dims[na++] = d;
    else
        for (int i = 0; i < na; i++)
            if ((st = norm_axis(c, axes[i], x->ndim, &dims[i]))) return st;
    if (x->dtype != NN_DTYPE_F32) return fail(c, NN_ERR_DTYPE, "input is %s", nn_dtype_name(x->dtype));
    bool keep = c->n->a[0] != 0;
    outs[0] = c->n->op == NN__OP_REDUCE_MEAN ? nn_mean(x, dims, na, keep) : nn_sum(x, dims, na, keep);
    NEED(outs[0]);
    return NN_OK;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static nn_status run_squeeze(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t axes[NN_MAX_DIMS];
    int na, dims[NN_MAX_DIMS];
    bool given;
    nn_status st = axes_of(c, 1, axes, &na, &given);
    if (st) return st;
    if (c->n->op == NN__OP_UNSQUEEZE) {
        if (!given || na == 0) return fail(c, NN_ERR_FORMAT, "axes are required");
        int r = x->ndim + na;
        if (r > NN_MAX_DIMS) return fail(c, NN_ERR_LIMIT, "result of %d dims", r);
        for (int i = 0; i < na; i++)
            if ((st = norm_axis(c, axes[i], r, &dims[i]))) return st;
        qsort(dims, (size_t)na, sizeof *dims, cmp_int);
        for (int i = 0; i < na; i++) {
            if (i && dims[i] == dims[i - 1]) return fail(c, NN_ERR_FORMAT, "axis %d repeated", dims[i]);
            NEED(x = nn_unsqueeze(x, dims[i]));
        }
        outs[0] = x;
        return NN_OK;
    }
    if (na == 0) {
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] == 1) dims[na++] = d;
    } else {
        for (int i = 0; i < na; i++) {
            if ((st = norm_axis(c, axes[i], x->ndim, &dims[i]))) return st;
            if (x->shape[dims[i]] != 1)
                return fail(c, NN_ERR_SHAPE, "dim %d has size %lld, not 1", dims[i],
                            (long long)x->shape[dims[i]]);
        }
        qsort(dims, (size_t)na, sizeof *dims, cmp_int);
    }
    for (int i = na - 1; i >= 0; i--) {
        if (i < na - 1 && dims[i] == dims[i + 1]) continue;
        NEED(x = nn_squeeze(x, dims[i]));
    }
    outs[0] = x;
    return NN_OK;
}

static nn_status run_reshape(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t shape[NN_MAX_DIMS];
    int n;
    nn_status st = read_ints(c, in(c, 1), shape, NN_MAX_DIMS, &n, "shape");
    if (st) return st;
    for (int i = 0; i < n; i++) {
        if (shape[i] == 0) {
            if (i >= x->ndim) return fail(c, NN_ERR_SHAPE, "shape[%d] = 0 copies a missing dim", i);
            shape[i] = x->shape[i];
        } else if (shape[i] < -1) {
            return fail(c, NN_ERR_SHAPE, "shape[%d] = %lld", i, (long long)shape[i]);
        }
    }
    NEED(outs[0] = nn_reshape(x, shape, n));
    return NN_OK;
}

static nn_status run_flatten(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t axis = c->n->a[0];
    if (axis < -x->ndim || axis > x->ndim)
        return fail(c, NN_ERR_RANGE, "axis %lld for %d dims", (long long)axis, x->ndim);
    if (axis < 0) axis += x->ndim;
    int64_t shape[2] = {1, 1};
    for (int d = 0; d < x->ndim; d++) {
        int64_t *p = d < axis ? &shape[0] : &shape[1];
        if (__builtin_mul_overflow(*p, x->shape[d], p))
            return fail(c, NN_ERR_OVERFLOW, "size overflows");
    }
    NEED(outs[0] = nn_reshape(x, shape, 2));
    return NN_OK;
}

static nn_status run_transpose(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int perm[NN_MAX_DIMS];
    if (c->n->has_l[0]) {
        if (c->n->nl[0] != x->ndim)
            return fail(c, NN_ERR_FORMAT, "perm has %d entries for %d dims", c->n->nl[0], x->ndim);
        for (int i = 0; i < x->ndim; i++) {
            int64_t p = c->n->l[0][i];
            if (p < 0 || p >= x->ndim) return fail(c, NN_ERR_RANGE, "perm entry %lld", (long long)p);
            perm[i] = (int)p;
        }
    } else {
        for (int i = 0; i < x->ndim; i++) perm[i] = x->ndim - 1 - i;
    }
    NEED(outs[0] = nn_permute(x, perm, x->ndim));
    return NN_OK;
}

static nn_status run_concat(const ctx *c, nn_tensor **outs) {
    nn_tensor *ts[NN__ONNX_MAX_IO];
    int n = 0;
    for (int k = 0; k < c->n->nin; k++) {
        if (!in(c, k)) return fail(c, NN_ERR_FORMAT, "input %d is missing", k);
        ts[n++] = in(c, k);
    }
    int axis;
    nn_status st = norm_axis(c, c->n->a[0], ts[0]->ndim, &axis);
    if (st) return st;
    NEED(outs[0] = nn_concat(ts, n, axis));
    return NN_OK;
}

static nn_status run_split(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int axis;
    nn_status st = norm_axis(c, c->n->a[0], x->ndim, &axis);
    if (st) return st;
    int64_t sizes[NN__ONNX_MAX_IO];
    int ns = 0, nout = c->n->nout;
    if (c->n->has_l[0]) {
        if (c->n->nl[0] > NN__ONNX_MAX_IO) return fail(c, NN_ERR_LIMIT, "too many splits");
        memcpy(sizes, c->n->l[0], (size_t)c->n->nl[0] * sizeof *sizes);
        ns = c->n->nl[0];
    } else if (in(c, 1)) {
        if ((st = read_ints(c, in(c, 1), sizes, NN__ONNX_MAX_IO, &ns, "split"))) return st;
    } else {
        int64_t len = x->shape[axis];
        if (len % nout) return fail(c, NN_ERR_SHAPE, "%lld does not split in %d", (long long)len, nout);
        for (int i = 0; i < nout; i++) sizes[i] = len / nout;
        ns = nout;
    }
    if (ns != nout) return fail(c, NN_ERR_FORMAT, "%d split sizes for %d outputs", ns, nout);
    int64_t start = 0;
    for (int i = 0; i < ns; i++) {
        if (sizes[i] < 0 || sizes[i] > x->shape[axis] - start)
            return fail(c, NN_ERR_SHAPE, "split sizes do not add up to %lld", (long long)x->shape[axis]);
        NEED(outs[i] = nn_slice(x, axis, start, start + sizes[i], 1));
        start += sizes[i];
    }
    if (start != x->shape[axis])
        return fail(c, NN_ERR_SHAPE, "split sizes add up to %lld, not %lld", (long long)start,
                    (long long)x->shape[axis]);
    return NN_OK;
}

static nn_status run_slice(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t st_[NN_MAX_DIMS], en[NN_MAX_DIMS], ax[NN_MAX_DIMS], sp[NN_MAX_DIMS];
    int ns, ne, na, nsp;
    nn_status st;
    if ((st = read_ints(c, in(c, 1), st_, NN_MAX_DIMS, &ns, "starts")) ||
        (st = read_ints(c, in(c, 2), en, NN_MAX_DIMS, &ne, "ends")))
        return st;
    if (ns != ne) return fail(c, NN_ERR_FORMAT, "%d starts and %d ends", ns, ne);
    if (in(c, 3)) {
        if ((st = read_ints(c, in(c, 3), ax, NN_MAX_DIMS, &na, "axes"))) return st;
        if (na != ns) return fail(c, NN_ERR_FORMAT, "%d axes for %d starts", na, ns);
    } else {
        for (int i = 0; i < ns; i++) ax[i] = i;
    }
    if (in(c, 4)) {
        if ((st = read_ints(c, in(c, 4), sp, NN_MAX_DIMS, &nsp, "steps"))) return st;
        if (nsp != ns) return fail(c, NN_ERR_FORMAT, "%d steps for %d starts", nsp, ns);
    } else {
        for (int i = 0; i < ns; i++) sp[i] = 1;
    }
    for (int i = 0; i < ns; i++) {
        int a = 0;
        if ((st = norm_axis(c, ax[i], x->ndim, &a))) return st;
        if (sp[i] < 1) return fail(c, NN_ERR_UNSUPPORTED, "step %lld (only positive steps)", (long long)sp[i]);
        NEED(x = nn_slice(x, a, st_[i], en[i], sp[i]));
    }
    outs[0] = x;
    return NN_OK;
}

static nn_status run_gather(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0), *idx = in(c, 1);
    int axis;
    nn_status st = norm_axis(c, c->n->a[0], x->ndim, &axis);
    if (st) return st;
    if (idx->dtype != NN_DTYPE_I64) return fail(c, NN_ERR_DTYPE, "indices are %s", nn_dtype_name(idx->dtype));
    if (x->ndim - 1 + idx->ndim > NN_MAX_DIMS) return fail(c, NN_ERR_LIMIT, "result has too many dims");
    /* Negative indices count from the end. */
    int64_t len = x->shape[axis];
    nn_tensor *flat = nn_reshape(idx, (int64_t[]){-1}, 1);
    NEED(flat);
    nn_tensor *fixed = nn_tensor_empty(NN_DTYPE_I64, flat->shape, 1);
    NEED(fixed);
    for (int64_t i = 0; i < flat->numel; i++) {
        int64_t v = *((const int64_t *)flat->storage->data + nn__flat_offset(flat, i));
        if (v < -len || v >= len)
            return fail(c, NN_ERR_RANGE, "index %lld out of range for size %lld", (long long)v,
                        (long long)len);
        nn__i64(fixed)[i] = v < 0 ? v + len : v;
    }
    nn_tensor *y = nn_index_select(x, axis, fixed);
    NEED(y);
    int64_t shape[NN_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < axis; d++) shape[nd++] = x->shape[d];
    for (int d = 0; d < idx->ndim; d++) shape[nd++] = idx->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) shape[nd++] = x->shape[d];
    NEED(outs[0] = nn_reshape(y, shape, nd));
    return NN_OK;
}

static nn_status run_shape(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t s = c->n->a[0], e = c->n->a[1], r = x->ndim;
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    int64_t n = e > s ? e - s : 0;
    NEED(outs[0] = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, x->shape + s));
    return NN_OK;
}

static nn_status run_pad(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t p[2 * NN_MAX_DIMS], pads[2 * NN_MAX_DIMS];
    int np;
    nn_status st = read_ints(c, in(c, 1), p, 2 * NN_MAX_DIMS, &np, "pads");
    if (st) return st;
    if (np != 2 * x->ndim) return fail(c, NN_ERR_FORMAT, "%d pads for %d dims", np, x->ndim);
    double v = 0;
    nn_tensor *cv = in(c, 2);
    if (cv) {
        if (cv->numel != 1) return fail(c, NN_ERR_FORMAT, "constant_value has %lld elements", (long long)cv->numel);
        v = nn__get_flat(cv, 0);
    }
    if (c->n->nin > 3 && in(c, 3)) return fail(c, NN_ERR_UNSUPPORTED, "the axes input");
    for (int d = 0; d < x->ndim; d++) {
        int k = x->ndim - 1 - d;
        if (p[d] < 0 || p[d + x->ndim] < 0) return fail(c, NN_ERR_UNSUPPORTED, "negative pads");
        pads[2 * k] = p[d];
        pads[2 * k + 1] = p[d + x->ndim];
    }
    NEED(outs[0] = nn_pad(x, pads, np, v));
    return NN_OK;
}

static nn_status run_expand(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int64_t shape[NN_MAX_DIMS], out[NN_MAX_DIMS];
    int n, no;
    nn_status st = read_ints(c, in(c, 1), shape, NN_MAX_DIMS, &n, "shape");
    if (st) return st;
    for (int i = 0; i < n; i++)
        if (shape[i] < 0) return fail(c, NN_ERR_SHAPE, "shape[%d] = %lld", i, (long long)shape[i]);
    if (!nn__broadcast_shapes(x->shape, x->ndim, shape, n, out, &no, c->fn)) return op_failed(c);
    NEED(outs[0] = nn_expand(x, out, no));
    return NN_OK;
}

static nn_status run_softmax(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    int axis;
    nn_status st = norm_axis(c, c->n->a[0], x->ndim, &axis);
    if (st) return st;
    bool log = c->n->op == NN__OP_LOG_SOFTMAX;
    if (c->g->opset >= 13 || axis == x->ndim - 1) {
        NEED(outs[0] = log ? nn_log_softmax(x, axis) : nn_softmax(x, axis));
        return NN_OK;
    }
    /* Opsets < 13: over the input coerced to 2-D at axis. */
    NEED(x = nn_flatten(x, axis, -1));
    NEED(x = log ? nn_log_softmax(x, axis) : nn_softmax(x, axis));
    NEED(outs[0] = nn_reshape(x, in(c, 0)->shape, in(c, 0)->ndim));
    return NN_OK;
}

static nn_status run_gemm(const ctx *c, nn_tensor **outs) {
    nn_tensor *a = in(c, 0), *b = in(c, 1), *bias = in(c, 2);
    double alpha = c->n->f[0], beta = c->n->f[1];
    if (a->ndim != 2 || b->ndim != 2) return fail(c, NN_ERR_SHAPE, "A and B must be 2-D");
    if (c->n->a[0]) NEED(a = nn_transpose(a, 0, 1));
    if (c->n->a[1] && alpha == 1.0 && (!bias || (beta == 1.0 && bias->ndim == 1 &&
                                                 bias->shape[0] == b->shape[0]))) {
        NEED(outs[0] = nn_linear(a, b, bias)); /* x Wᵀ + b */
        return NN_OK;
    }
    if (c->n->a[1]) NEED(b = nn_transpose(b, 0, 1));
    nn_tensor *y = nn_matmul(a, b);
    NEED(y);
    if (alpha != 1.0) NEED(y = nn_mul_scalar(y, alpha));
    if (bias) {
        if (beta != 1.0) NEED(bias = nn_mul_scalar(bias, beta));
        NEED(y = nn_add(y, bias));
    }
    outs[0] = y;
    return NN_OK;
}

static nn_status run_layer_norm(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0), *w = in(c, 1), *b = in(c, 2);
    int axis;
    nn_status st = norm_axis(c, c->n->a[0], x->ndim, &axis);
    if (st) return st;
    int n = x->ndim - axis;
    const int64_t *ns = x->shape + axis;
    int64_t numel = 1;
    for (int i = 0; i < n; i++) numel *= ns[i];
    if (w && w->numel == numel && !nn__same_shape(w, x) && w->ndim != n) NEED(w = nn_reshape(w, ns, n));
    if (b && b->numel == numel && b->ndim != n) NEED(b = nn_reshape(b, ns, n));
    NEED(outs[0] = nn_layer_norm(x, ns, n, w, b, c->n->f[0]));
    return NN_OK;
}

static nn_status run_binary(const ctx *c, nn_tensor **outs) {
    nn_tensor *a = in(c, 0), *b = in(c, 1);
    nn__onnx_op op = c->n->op;
    if (op == NN__OP_POW) {
        if (a->dtype != NN_DTYPE_F32) return fail(c, NN_ERR_DTYPE, "base is %s", nn_dtype_name(a->dtype));
        if (b->numel == 1 && !b->requires_grad) {
            NEED(outs[0] = nn_pow_scalar(a, nn__get_flat(b, 0)));
            return NN_OK;
        }
        if (b->dtype != NN_DTYPE_F32) NEED(b = nn_tensor_to(b, NN_DTYPE_F32));
        NEED(outs[0] = nn_pow(a, b));
        return NN_OK;
    }
    if (a->dtype != b->dtype)
        return fail(c, NN_ERR_DTYPE, "operands are %s and %s", nn_dtype_name(a->dtype),
                    nn_dtype_name(b->dtype));
    if (a->dtype != NN_DTYPE_F32) {
        if (a->dtype != NN_DTYPE_I64) return fail(c, NN_ERR_DTYPE, "operands are %s", nn_dtype_name(a->dtype));
        nn_tensor *y = int_binary(c, a, b, op, NULL);
        if (!y) return op_failed(c);
        NEED(outs[0] = nn__track(y));
        return NN_OK;
    }
    nn_tensor *y = op == NN__OP_ADD ? nn_add(a, b)
                   : op == NN__OP_SUB ? nn_sub(a, b)
                   : op == NN__OP_MUL ? nn_mul(a, b)
                                      : nn_div(a, b);
    NEED(outs[0] = y);
    return NN_OK;
}

static nn_status run_where(const ctx *c, nn_tensor **outs) {
    nn_tensor *cond = in(c, 0), *a = in(c, 1), *b = in(c, 2);
    if (cond->dtype != NN_DTYPE_U8) return fail(c, NN_ERR_DTYPE, "condition is %s", nn_dtype_name(cond->dtype));
    if (a->dtype != b->dtype)
        return fail(c, NN_ERR_DTYPE, "operands are %s and %s", nn_dtype_name(a->dtype), nn_dtype_name(b->dtype));
    if (a->dtype == NN_DTYPE_F32) {
        NEED(outs[0] = nn_where(cond, a, b));
        return NN_OK;
    }
    nn_tensor *y = int_binary(c, a, b, NN__OP_WHERE, cond);
    if (!y) return op_failed(c);
    NEED(outs[0] = nn__track(y));
    return NN_OK;
}

static nn_status run_cast(const ctx *c, nn_tensor **outs) {
    nn_tensor *x = in(c, 0);
    nn_dtype to = (nn_dtype)c->n->a[1];
    if (x->dtype == to) outs[0] = x;
    else if (to == NN_DTYPE_U8 && c->n->a[0] == 9) outs[0] = nn_ne_scalar(x, 0.0); /* BOOL */
    else outs[0] = nn_tensor_to(x, to);
    NEED(outs[0]);
    return NN_OK;
}

static nn_status run_rnn(const ctx *c, nn_tensor **outs) {
    const nn__onnx_node *n = c->n;
    nn_tensor *x = in(c, 0);
    bool lstm = n->op == NN__OP_LSTM;
    if (in(c, 4)) return fail(c, NN_ERR_UNSUPPORTED, "sequence_lens");
    nn_tensor *h0 = in(c, 5), *c0 = lstm ? in(c, 6) : NULL;
    int64_t dirs = n->a[1], H = n->a[0];
    bool bf = n->a[2] == 1;
    if (x->ndim != 3) return fail(c, NN_ERR_SHAPE, "X has %d dims, expected 3", x->ndim);
    if (bf) { /* initial states [N, dirs, H] -> [dirs, N, H] */
        if (h0) NEED(h0 = nn_transpose(h0, 0, 1));
        if (c0) NEED(c0 = nn_transpose(c0, 0, 1));
    }
    nn_tensor *hn = NULL, *cn = NULL;
    nn_tensor *y = nn_recurrent_forward(n->rnn, x, h0, c0, &hn, lstm ? &cn : NULL);
    NEED(y);
    /* y [T, N, dirs*H] (layout 0) or [N, T, dirs*H]. ONNX: [T, dirs, N, H] / [N, T, dirs, H]. */
    int64_t s4[4] = {y->shape[0], y->shape[1], dirs, H};
    NEED(y = nn_reshape(y, s4, 4));
    if (!bf) NEED(y = nn_transpose(y, 1, 2));
    if (n->nout > 0) outs[0] = y;
    if (bf) {
        NEED(hn = nn_transpose(hn, 0, 1));
        if (cn) NEED(cn = nn_transpose(cn, 0, 1));
    }
    if (n->nout > 1) outs[1] = hn;
    if (n->nout > 2) outs[2] = cn;
    return NN_OK;
}

/* ------------------------------------------------------------ dispatch */

nn_status nn__onnx_run_node(const nn__onnx_graph *g, const nn__onnx_node *n, nn_tensor **vals,
                            nn_tensor **outs, const char *fn) {
    ctx cc = {g, n, vals, fn}, *c = &cc;
    /* Required inputs are present (checked at import); the values exist. */
    for (int k = 0; k < n->nin; k++)
        if (n->in[k] >= 0 && !vals[n->in[k]])
            return fail(c, NN_ERR_UNSUPPORTED, "input '%s' has no value (a second graph input?)",
                        g->names[n->in[k]]);
    nn_tensor *x = in(c, 0);
    switch (n->op) {
    case NN__OP_IDENTITY: outs[0] = x; return NN_OK;
    case NN__OP_DROPOUT:
        outs[0] = x;
        if (n->nout > 1 && n->out[1] >= 0) NEED(outs[1] = nn_tensor_ones(NN_DTYPE_U8, x->shape, x->ndim));
        return NN_OK;
    case NN__OP_CONSTANT: outs[0] = n->value; return NN_OK;
    case NN__OP_GEMM: return run_gemm(c, outs);
    case NN__OP_MATMUL: NEED(outs[0] = nn_matmul(x, in(c, 1))); return NN_OK;
    case NN__OP_CONV:
    case NN__OP_CONV_TRANSPOSE: return run_conv(c, outs);
    case NN__OP_MAX_POOL:
    case NN__OP_AVG_POOL: return run_pool(c, outs);
    case NN__OP_GLOBAL_AVG_POOL: {
        int dims[NN_MAX_DIMS], nd = 0;
        for (int d = 2; d < x->ndim; d++) dims[nd++] = d;
        if (!nd) return fail(c, NN_ERR_SHAPE, "input of %d dims", x->ndim);
        NEED(outs[0] = nn_mean(x, dims, nd, true));
        return NN_OK;
    }
    case NN__OP_BATCH_NORM:
        NEED(outs[0] = nn_batch_norm(x, in(c, 3), in(c, 4), in(c, 1), in(c, 2), false, 0.1, n->f[0]));
        return NN_OK;
    case NN__OP_LAYER_NORM: return run_layer_norm(c, outs);
    case NN__OP_RELU: NEED(outs[0] = nn_relu(x)); return NN_OK;
    case NN__OP_LEAKY_RELU: NEED(outs[0] = nn_leaky_relu(x, n->f[0])); return NN_OK;
    case NN__OP_SIGMOID: NEED(outs[0] = nn_sigmoid(x)); return NN_OK;
    case NN__OP_TANH: NEED(outs[0] = nn_tanh(x)); return NN_OK;
    case NN__OP_ERF: NEED(outs[0] = nn__onnx_erf(x)); return NN_OK;
    case NN__OP_GELU: NEED(outs[0] = nn_gelu(x, false)); return NN_OK;
    case NN__OP_SOFTMAX:
    case NN__OP_LOG_SOFTMAX: return run_softmax(c, outs);
    case NN__OP_ADD:
    case NN__OP_SUB:
    case NN__OP_MUL:
    case NN__OP_DIV:
    case NN__OP_POW: return run_binary(c, outs);
    case NN__OP_SQRT: NEED(outs[0] = nn_sqrt(x)); return NN_OK;
    case NN__OP_EXP: NEED(outs[0] = nn_exp(x)); return NN_OK;
    case NN__OP_LOG: NEED(outs[0] = nn_log(x)); return NN_OK;
    case NN__OP_NEG:
        if (x->dtype == NN_DTYPE_I64) {
            nn_tensor *z = nn_tensor_zeros(NN_DTYPE_I64, NULL, 0);
            NEED(z);
            nn_tensor *y = int_binary(c, z, x, NN__OP_SUB, NULL);
            if (!y) return op_failed(c);
            NEED(outs[0] = nn__track(y));
            return NN_OK;
        }
        NEED(outs[0] = nn_neg(x));
        return NN_OK;
    case NN__OP_RESHAPE: return run_reshape(c, outs);
    case NN__OP_FLATTEN: return run_flatten(c, outs);
    case NN__OP_TRANSPOSE: return run_transpose(c, outs);
    case NN__OP_CONCAT: return run_concat(c, outs);
    case NN__OP_SPLIT: return run_split(c, outs);
    case NN__OP_SLICE: return run_slice(c, outs);
    case NN__OP_GATHER: return run_gather(c, outs);
    case NN__OP_SQUEEZE:
    case NN__OP_UNSQUEEZE: return run_squeeze(c, outs);
    case NN__OP_SHAPE: return run_shape(c, outs);
    case NN__OP_CAST: return run_cast(c, outs);
    case NN__OP_WHERE: return run_where(c, outs);
    case NN__OP_EQUAL: NEED(outs[0] = nn_eq(x, in(c, 1))); return NN_OK;
    case NN__OP_LESS: NEED(outs[0] = nn_lt(x, in(c, 1))); return NN_OK;
    case NN__OP_GREATER: NEED(outs[0] = nn_gt(x, in(c, 1))); return NN_OK;
    case NN__OP_REDUCE_MEAN:
    case NN__OP_REDUCE_SUM: return run_reduce(c, outs);
    case NN__OP_PAD: return run_pad(c, outs);
    case NN__OP_EXPAND: return run_expand(c, outs);
    case NN__OP_LSTM:
    case NN__OP_GRU:
    case NN__OP_RNN: return run_rnn(c, outs);
    case NN__OP_ELU: NEED(outs[0] = nn_elu(x, n->f[0])); return NN_OK;
    case NN__OP_CLIP: {
        double lo = -INFINITY, hi = INFINITY;
        nn_tensor *a = in(c, 1), *b = in(c, 2);
        if ((a && a->numel != 1) || (b && b->numel != 1))
            return fail(c, NN_ERR_FORMAT, "min and max must be scalars");
        if (a) lo = nn__get_flat(a, 0);
        if (b) hi = nn__get_flat(b, 0);
        NEED(outs[0] = nn_clamp(x, lo, hi));
        return NN_OK;
    }
    case NN__OP_COUNT: break;
    }
    return fail(c, NN_ERR_STATE, "no implementation");
}

#endif
