/* Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d.
 * Inputs are [N, C, H, W] or [C, H, W]; every leading dim is a "plane".
 * Max pooling records the argmax of each window as a flat h*w position in
 * its plane (like PyTorch); backward scatters the gradient to it.
 * Forward and backward side by side. */
#include "backend/backend.h"
#include "nn_ops_internal.h"

#include <math.h>
#include <string.h>

/* Validate x (3-D or 4-D f32) and split it into planes x H x W. */
static bool pool_input(const nn_tensor *x, const char *fn, int64_t *planes, int64_t *h,
                       int64_t *w) {
    if (!nn__check_f32(x, fn, "x")) return false;
    if (x->ndim != 3 && x->ndim != 4) {
        char s[128];
        nn__err(NN_ERR_SHAPE, "%s: x must be 3-D [C, H, W] or 4-D [N, C, H, W], got %s", fn,
                nn__shape_str(x->shape, x->ndim, s, sizeof s));
        return false;
    }
    *h = x->shape[x->ndim - 2];
    *w = x->shape[x->ndim - 1];
    *planes = x->shape[0] * (x->ndim == 4 ? x->shape[1] : 1);
    return true;
}

/* The f32 output of pooling x to [..., oh, ow] (x's leading dims), its i64 indices in *idx
 * when idx is not NULL, and x's contiguous values in *xc (allocated in that
 * order); NULL, nothing held, when one of them fails. */
static nn_tensor *pool_outputs(nn_tensor *x, int64_t oh, int64_t ow, nn_tensor **idx,
                               nn_tensor **xc) {
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 2] = oh;
    shape[x->ndim - 1] = ow;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, shape, x->ndim);
    if (idx) *idx = out ? nn__tensor_new(NN_DTYPE_I64, shape, x->ndim) : NULL;
    *xc = out && (!idx || *idx) ? nn__contig(x) : NULL;
    if (!*xc) {
        nn__tensor_release(out);
        if (idx) {
            nn__tensor_release(*idx);
            *idx = NULL;
        }
        return NULL;
    }
    return out;
}

/* PyTorch's pooling output size along one axis; -1 and an error if the
 * kernel does not fit or the padding exceeds half the kernel. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d,
                             bool ceil_mode, const char *fn, const char *axis) {
    if (k < 1 || s < 1 || d < 1 || pad < 0) {
        nn__err(
            NN_ERR_INVALID,
            "%s: %s kernel %lld, stride %lld, padding %lld, dilation %lld: need kernel, stride, "
            "dilation >= 1 and padding >= 0",
            fn, axis, (long long)k, (long long)s, (long long)pad, (long long)d);
        return -1;
    }
    if (pad > k / 2) {
        nn__err(NN_ERR_INVALID, "%s: %s padding %lld must be at most half the kernel size %lld", fn,
                axis, (long long)pad, (long long)k);
        return -1;
    }
    int64_t ext = (k - 1) * d + 1; /* k, d come from int: no overflow in int64 */
    int64_t span = in + 2 * pad - ext;
    if (span < 0) {
        nn__err(NN_ERR_SHAPE, "%s: %s kernel extent %lld is bigger than the padded input %lld", fn,
                axis, (long long)ext, (long long)(in + 2 * pad));
        return -1;
    }
    int64_t out = (span + (ceil_mode ? s - 1 : 0)) / s + 1;
    /* The last window must start inside the input or the left padding. */
    if (ceil_mode && (out - 1) * s >= in + pad) out--;
    return out;
}

/* -------------------------------------------------------------- max pools */

/* Shared by max_pool2d and adaptive_max_pool2d: dx[plane, idx] += dy. */
static nn_status max_pool_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const nn_tensor *x = nd->inputs[0], *idx = nd->saved[0];
    nn_tensor *gx = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    const int64_t hw = x->shape[x->ndim - 2] * x->shape[x->ndim - 1];
    const int64_t ohw = gout->shape[gout->ndim - 2] * gout->shape[gout->ndim - 1];
    const int64_t planes = ohw ? gout->numel / ohw : 0;
    /* gx is overwritten (zeroed, then scattered) by the threaded kernel. */
    const int64_t w_ = x->shape[x->ndim - 1], ow_ = gout->shape[gout->ndim - 1];
    nn__kernels()->pool.maxpool2d_bwd(nn__f32(gout), nn__i64(idx), planes, hw / (w_ ? w_ : 1), w_,
                                 ohw / (ow_ ? ow_ : 1), ow_, nn__f32(gx));
    gin[0] = gx;
    return NN_OK;
}

/* Record the node (saving the indices), hand out *indices if asked, and
 * track the result. Consumes out and idx. */
static nn_tensor *max_pool_finish(nn_tensor *x, nn_tensor *out, nn_tensor *idx, nn_tensor **indices,
                                  const char *fn, const int64_t *params, int nparams) {
    nn_node *node = NULL;
    out = nn__ops_record(out, fn, max_pool_backward, &x, 1, &node);
    if (!out) {
        nn__tensor_release(idx);
        return NULL;
    }
    if (node) {
        nn__tensor_retain(idx);
        node->saved[0] = idx;
        for (int i = 0; i < nparams; i++) node->i[i] = params[i];
    }
    if (indices) {
        *indices = nn__track(idx);
        if (!*indices) {
            nn__tensor_release(out);
            return NULL;
        }
    } else {
        nn__tensor_release(idx);
    }
    out = nn__track(out);
    if (!out && indices) *indices = NULL; /* the open scope still owns and frees it */
    return out;
}

typedef struct {
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
} pool_geom;

nn_tensor *nn_max_pool2d(nn_tensor *x, int kernel_h, int kernel_w, int stride_h, int stride_w,
                         int pad_h, int pad_w, int dilation_h, int dilation_w, bool ceil_mode,
                         nn_tensor **indices) {
    NN__PROF_OP("nn_max_pool2d");
    const char *fn = "nn_max_pool2d";
    if (indices) *indices = NULL;
    int64_t planes, h, w;
    if (!pool_input(x, fn, &planes, &h, &w)) return NULL;
    pool_geom g = {kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w};
    int64_t oh = pool_out_size(h, g.kh, g.sh, g.ph, g.dh, ceil_mode, fn, "height");
    if (oh < 0) return NULL;
    int64_t ow = pool_out_size(w, g.kw, g.sw, g.pw, g.dw, ceil_mode, fn, "width");
    if (ow < 0) return NULL;
    nn_tensor *idx, *xc, *out = pool_outputs(x, oh, ow, &idx, &xc);
    if (!out) return NULL;
    /* The backend's threaded kernel (a 2x2/stride-2 fast path); its scan
     * order and NaN rule are PyTorch's (the last NaN of a window wins). Without a graph or a caller
     * asking for them the indices are not written at all (inference). */
    const nn__win2d kg = {g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, oh, ow};
    const bool want_idx = indices || nn__needs_grad(&x, 1);
    nn__kernels()->pool.maxpool2d(nn__f32(xc), planes, h, w, &kg, nn__f32(out),
                             want_idx ? nn__i64(idx) : NULL);
    nn__tensor_release(xc);
    return max_pool_finish(x, out, idx, indices, fn, NULL, 0);
}

/* Adaptive bins: start = floor(i*in/out), end = ceil((i+1)*in/out). */
static inline int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
static inline int64_t bin_end(int64_t i, int64_t in, int64_t out) {
    return ((i + 1) * in + out - 1) / out;
}

static bool adaptive_check(const nn_tensor *x, int64_t oh, int64_t ow, int64_t h, int64_t w,
                           const char *fn) {
    if (oh < 1 || ow < 1) {
        nn__err(NN_ERR_INVALID, "%s: output size %lldx%lld, expected both >= 1", fn, (long long)oh,
                (long long)ow);
        return false;
    }
    if (h < 1 || w < 1) {
        char s[128];
        nn__err(NN_ERR_SHAPE, "%s: input %s has an empty spatial dim", fn,
                nn__shape_str(x->shape, x->ndim, s, sizeof s));
        return false;
    }
    /* i*in in bin_start/bin_end must not overflow. */
    if (oh > (INT64_MAX / 4) / h || ow > (INT64_MAX / 4) / w) {
        nn__err(NN_ERR_OVERFLOW, "%s: output size %lldx%lld is too large", fn, (long long)oh,
                (long long)ow);
        return false;
    }
    return true;
}

nn_tensor *nn_adaptive_max_pool2d(nn_tensor *x, int64_t out_h, int64_t out_w, nn_tensor **indices) {
    NN__PROF_OP("nn_adaptive_max_pool2d");
    const char *fn = "nn_adaptive_max_pool2d";
    if (indices) *indices = NULL;
    int64_t planes, h, w;
    if (!pool_input(x, fn, &planes, &h, &w) || !adaptive_check(x, out_h, out_w, h, w, fn))
        return NULL;
    nn_tensor *idx, *xc, *out = pool_outputs(x, out_h, out_w, &idx, &xc);
    if (!out) return NULL;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = nn__f32(xc) + p * h * w;
        float *dst = nn__f32(out) + p * out_h * out_w;
        int64_t *ix = nn__i64(idx) + p * out_h * out_w;
        for (int64_t oy = 0; oy < out_h; oy++) {
            const int64_t y0 = bin_start(oy, h, out_h), y1 = bin_end(oy, h, out_h);
            for (int64_t ox = 0; ox < out_w; ox++) {
                const int64_t x0 = bin_start(ox, w, out_w), x1 = bin_end(ox, w, out_w);
                float best = src[y0 * w + x0];
                int64_t bi = y0 * w + x0;
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++) {
                        const float v = src[yy * w + xx];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = yy * w + xx;
                        }
                    }
                dst[oy * out_w + ox] = best;
                ix[oy * out_w + ox] = bi;
            }
        }
    }
    nn__tensor_release(xc);
    return max_pool_finish(x, out, idx, indices, fn, NULL, 0);
}

/* -------------------------------------------------------------- avg pools */

/* Window [y0, y1) x [x0, x1) of output (oy, ox) clipped to the input, and
 * its divisor, following PyTorch's avg_pool2d. */
typedef struct {
    int64_t kh, kw, sh, sw, ph, pw;
    bool count_include_pad;
} avg_geom;

static int64_t avg_window(const avg_geom *g, int64_t h, int64_t w, int64_t oy, int64_t ox,
                          int64_t *y0, int64_t *y1, int64_t *x0, int64_t *x1) {
    int64_t hs = oy * g->sh - g->ph, ws = ox * g->sw - g->pw;
    int64_t he = hs + g->kh, we = ws + g->kw;
    if (he > h + g->ph) he = h + g->ph;
    if (we > w + g->pw) we = w + g->pw;
    int64_t pool = (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > h) he = h;
    if (we > w) we = w;
    *y0 = hs;
    *y1 = he;
    *x0 = ws;
    *x1 = we;
    int64_t div = g->count_include_pad ? pool : (he - hs) * (we - ws);
    return div > 0 ? div : 1;
}

static void avg_geom_from_node(const nn_node *nd, avg_geom *g) {
    g->kh = nd->i[0];
    g->kw = nd->i[1];
    g->sh = nd->i[2];
    g->sw = nd->i[3];
    g->ph = nd->i[4];
    g->pw = nd->i[5];
    g->count_include_pad = nd->i[6] != 0;
}

static nn_status avg_pool_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const nn_tensor *x = nd->inputs[0];
    avg_geom g;
    avg_geom_from_node(nd, &g);
    nn_tensor *gx = nn__zeros(NN_DTYPE_F32, x->shape, x->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    const int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    const int64_t oh = gout->shape[gout->ndim - 2], ow = gout->shape[gout->ndim - 1];
    const int64_t planes = (oh * ow) != 0 ? gout->numel / (oh * ow) : 0;
    for (int64_t p = 0; p < planes; p++) {
        float *dp = nn__f32(gx) + p * h * w;
        const float *gp = nn__f32(gout) + p * oh * ow;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t y0, y1, x0, x1;
                float v =
                    gp[oy * ow + ox] / (float)avg_window(&g, h, w, oy, ox, &y0, &y1, &x0, &x1);
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++) dp[yy * w + xx] += v;
            }
    }
    gin[0] = gx;
    return NN_OK;
}

nn_tensor *nn_avg_pool2d(nn_tensor *x, int kernel_h, int kernel_w, int stride_h, int stride_w,
                         int pad_h, int pad_w, bool ceil_mode, bool count_include_pad) {
    NN__PROF_OP("nn_avg_pool2d");
    const char *fn = "nn_avg_pool2d";
    int64_t planes, h, w;
    if (!pool_input(x, fn, &planes, &h, &w)) return NULL;
    avg_geom g = {kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad};
    int64_t oh = pool_out_size(h, g.kh, g.sh, g.ph, 1, ceil_mode, fn, "height");
    if (oh < 0) return NULL;
    int64_t ow = pool_out_size(w, g.kw, g.sw, g.pw, 1, ceil_mode, fn, "width");
    if (ow < 0) return NULL;
    nn_tensor *xc, *out = pool_outputs(x, oh, ow, NULL, &xc);
    if (!out) return NULL;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = nn__f32(xc) + p * h * w;
        float *dst = nn__f32(out) + p * oh * ow;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t y0, y1, x0, x1;
                int64_t div = avg_window(&g, h, w, oy, ox, &y0, &y1, &x0, &x1);
                float s = 0.0f;
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++) s += src[yy * w + xx];
                dst[oy * ow + ox] = s / (float)div;
            }
    }
    nn__tensor_release(xc);
    nn_node *node = NULL;
    out = nn__ops_record(out, fn, avg_pool_backward, &x, 1, &node);
    if (node) {
        int64_t prm[7] = {g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, count_include_pad};
        memcpy(node->i, prm, sizeof prm);
    }
    return nn__track(out);
}

static nn_status adaptive_avg_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const nn_tensor *x = nd->inputs[0];
    nn_tensor *gx = nn__zeros(NN_DTYPE_F32, x->shape, x->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    const int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    const int64_t oh = gout->shape[gout->ndim - 2], ow = gout->shape[gout->ndim - 1];
    const int64_t planes = gout->numel / (oh * ow);
    for (int64_t p = 0; p < planes; p++) {
        float *dp = nn__f32(gx) + p * h * w;
        const float *gp = nn__f32(gout) + p * oh * ow;
        for (int64_t oy = 0; oy < oh; oy++) {
            const int64_t y0 = bin_start(oy, h, oh), y1 = bin_end(oy, h, oh);
            for (int64_t ox = 0; ox < ow; ox++) {
                const int64_t x0 = bin_start(ox, w, ow), x1 = bin_end(ox, w, ow);
                const float v = gp[oy * ow + ox] / (float)((y1 - y0) * (x1 - x0));
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++) dp[yy * w + xx] += v;
            }
        }
    }
    gin[0] = gx;
    return NN_OK;
}

nn_tensor *nn_adaptive_avg_pool2d(nn_tensor *x, int64_t out_h, int64_t out_w) {
    NN__PROF_OP("nn_adaptive_avg_pool2d");
    const char *fn = "nn_adaptive_avg_pool2d";
    int64_t planes, h, w;
    if (!pool_input(x, fn, &planes, &h, &w) || !adaptive_check(x, out_h, out_w, h, w, fn))
        return NULL;
    nn_tensor *xc, *out = pool_outputs(x, out_h, out_w, NULL, &xc);
    if (!out) return NULL;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = nn__f32(xc) + p * h * w;
        float *dst = nn__f32(out) + p * out_h * out_w;
        for (int64_t oy = 0; oy < out_h; oy++) {
            const int64_t y0 = bin_start(oy, h, out_h), y1 = bin_end(oy, h, out_h);
            for (int64_t ox = 0; ox < out_w; ox++) {
                const int64_t x0 = bin_start(ox, w, out_w), x1 = bin_end(ox, w, out_w);
                float s = 0.0f;
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++) s += src[yy * w + xx];
                dst[oy * out_w + ox] = s / (float)((y1 - y0) * (x1 - x0));
            }
        }
    }
    nn__tensor_release(xc);
    return nn__track(nn__ops_record(out, fn, adaptive_avg_backward, &x, 1, NULL));
}
