/* Convolutions: conv2d, conv1d (conv2d with H = 1) and conv_transpose2d.
 *
 * conv2d with groups = 1 runs the backend's direct kernels for the passes
 * the tier's rule takes (conv.direct_passes: forward, data gradient, weight
 * gradient; no column matrix), and im2col + GEMM for the others: images in
 * chunks whose column buffer stays in L2, one GEMM per chunk. Grouped convs
 * run im2col + one GEMM per group and image. conv_transpose2d is the
 * data-gradient of conv2d: its forward is a GEMM followed by col2im, its
 * backward an im2col followed by GEMMs. nn__conv2d_fused (ops/conv_fuse.h)
 * is conv2d + ReLU (+ 2x2 max pool without a graph) in one pass, for the
 * Sequential layers that allow it. Forward and backward side by side.
 *
 * One geometry type for all of them, the backend's nn__conv2d: the image
 * [c, h, w] that columns are cut from, the window, and the grid of window
 * positions (g.oh, g.ow); im2col / col2im are the kernel table's. */
#include "ops/conv_fuse.h"

#include "backend/backend.h"
#include "backend/tier.h"
#include "nn_ops_internal.h"

#include <string.h>

/* ---------------------------------------------------------- im2col/col2im */

/* col [c*kh*kw, oh*ow] of one image [c, h, w] (the table's im2col, N = 1). */
static void im2col(const nn__conv2d *d, const float *img, float *col) {
    nn__kernels()->conv.im2col(img, 1, d->c, d->h, d->w, &d->g, col, d->g.oh * d->g.ow);
}

/* img += the columns scattered back to their pixels (adjoint of im2col). */
static void col2im_add(const nn__conv2d *d, const float *col, float *img) {
    nn__kernels()->conv.col2im(col, d->g.oh * d->g.ow, 1, d->c, d->h, d->w, &d->g, img, true);
}

/* A 1x1 kernel with unit stride and no padding: the image is its own column matrix. */
static bool col_is_identity(const nn__conv2d *d) {
    const nn__win2d *g = &d->g;
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
           g->oh == d->h && g->ow == d->w;
}

/* ------------------------------------------------------------ parameters */

/* Spatial hyper-parameters of a conv call: [0] = H, [1] = W. */
typedef struct {
    int64_t stride[2], pad[2], dil[2], opad[2];
    int64_t groups;
} conv_params;

static bool conv_check_params(const conv_params *p, const char *fn) {
    for (int i = 0; i < 2; i++) {
        if (p->stride[i] < 1 || p->dil[i] < 1 || p->pad[i] < 0 || p->opad[i] < 0) {
            nn__err(NN_ERR_INVALID,
                    "%s: stride %lld, padding %lld, dilation %lld, output_padding %lld: "
                    "need stride >= 1, dilation >= 1, padding >= 0, output_padding >= 0",
                    fn, (long long)p->stride[i], (long long)p->pad[i], (long long)p->dil[i],
                    (long long)p->opad[i]);
            return false;
        }
    }
    if (p->groups < 1) {
        nn__err(NN_ERR_INVALID, "%s: groups = %lld, expected >= 1", fn, (long long)p->groups);
        return false;
    }
    return true;
}

/* Effective kernel extent d*(k-1)+1, or -1 when it overflows. */
static int64_t kernel_extent(int64_t k, int64_t d) {
    int64_t e;
    if (__builtin_mul_overflow(k - 1, d, &e) || __builtin_add_overflow(e, 1, &e)) return -1;
    return e;
}

static void params_to_node(nn_node *nd, const conv_params *p) {
    if (!nd) return;
    for (int i = 0; i < 2; i++) {
        nd->i[0 + i] = p->stride[i];
        nd->i[2 + i] = p->pad[i];
        nd->i[4 + i] = p->dil[i];
        nd->i[6 + i] = p->opad[i];
    }
    nd->i[8] = p->groups;
}

static void params_from_node(const nn_node *nd, conv_params *p) {
    for (int i = 0; i < 2; i++) {
        p->stride[i] = nd->i[0 + i];
        p->pad[i] = nd->i[2 + i];
        p->dil[i] = nd->i[4 + i];
        p->opad[i] = nd->i[6 + i];
    }
    p->groups = nd->i[8];
}

/* Shape of x / w viewed as 4-D (conv1d: H = 1 inserted before the last dim). */
static void as_4d(const nn_tensor *t, int64_t s[4]) {
    if (t->ndim == 4) {
        memcpy(s, t->shape, sizeof(int64_t) * 4);
    } else {
        s[0] = t->shape[0];
        s[1] = t->shape[1];
        s[2] = 1;
        s[3] = t->shape[2];
    }
}

/* A column buffer of rows x cols floats (NULL + error on overflow / OOM). */
static float *col_alloc(int64_t rows, int64_t cols, const char *fn) {
    size_t n;
    if (!nn__size_mul((size_t)rows, (size_t)cols, &n) || !nn__size_mul(n, sizeof(float), &n))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: column buffer of %lld x %lld floats overflows", fn,
                        (long long)rows, (long long)cols);
    return nn__aligned_alloc(n ? n : sizeof(float));
}

/* ------------------------------------------------ batched conv (groups 1) */

/* Images per chunk of the batched column layout [C*kh*kw, b*L]: one GEMM
 * per chunk instead of one per image (a wide N runs better and threads),
 * with the column buffer bounded to ~256 KB so it stays in L2 between
 * im2col and the GEMM that reads it. */
static int64_t conv_chunk(int64_t n, int64_t k, int64_t l) {
    int64_t per = k * l > 0 ? k * l : 1;
    int64_t c = ((int64_t)1 << 16) / per;
    if (c > n) c = n;
    return c < 1 ? 1 : c; /* >= 1 even for an empty batch (n = 0) */
}

/* y [N, O, L] = conv(x [N, C, H, W], w [O, K]) + bias, K = C*kh*kw. */
static bool conv_fwd_batched(const nn__conv2d *d, const float *x, const float *w, const float *bias,
                             float *y, const char *fn) {
    const nn_kernels *kr = nn__kernels();
    const int64_t N = d->n, O = d->o, K = d->c * d->g.kh * d->g.kw, L = d->g.oh * d->g.ow;
    const int64_t CHW = d->c * d->h * d->w, nb = conv_chunk(N, K, L);
    float *col = col_alloc(K, nb * L, fn);
    float *tmp = nb > 1 ? col_alloc(O, nb * L, fn) : NULL;
    bool ok = col && (nb == 1 || tmp);
    for (int64_t n0 = 0; ok && n0 < N; n0 += nb) {
        const int64_t b = N - n0 < nb ? N - n0 : nb, bl = b * L;
        float *out = b > 1 ? tmp : y + n0 * O * L; /* [O, b, L] */
        kr->conv.im2col(x + n0 * CHW, b, d->c, d->h, d->w, &d->g, col, bl);
        kr->gemm.sgemm(false, false, O, bl, K, 1.0f, w, K, col, bl, 0.0f, out, bl);
        if (bias) kr->eltwise.bias_act(O, bl, bias, true, false, out, bl);
        if (b > 1) kr->conv.swap01(out, O, b, L, y + n0 * O * L); /* -> [b, O, L] */
    }
    nn__aligned_free(col);
    nn__aligned_free(tmp);
    return ok;
}

/* Gradients of conv_fwd_batched: gw [O, K] += gy·colᵀ (x given), gx (w
 * given) overwritten through col2im, gb [O] overwritten (may be NULL). */
static bool conv_bwd_batched(const nn__conv2d *d, const float *x, const float *w, const float *gy,
                             float *gx, float *gw, float *gb, const char *fn) {
    const nn_kernels *kr = nn__kernels();
    const int64_t N = d->n, O = d->o, K = d->c * d->g.kh * d->g.kw, L = d->g.oh * d->g.ow;
    const int64_t CHW = d->c * d->h * d->w, nb = conv_chunk(N, K, L);
    float *col = gx || gw ? col_alloc(K, nb * L, fn) : NULL;
    float *gyp = nb > 1 ? col_alloc(O, nb * L, fn) : NULL;
    bool ok = (col || !(gx || gw)) && (nb == 1 || gyp);
    for (int64_t n0 = 0; ok && n0 < N; n0 += nb) {
        const int64_t b = N - n0 < nb ? N - n0 : nb, bl = b * L;
        const float *gyc = gy + n0 * O * L;
        if (b > 1) { /* [b, O, L] -> [O, b, L], the layout of the columns */
            kr->conv.swap01(gyc, b, O, L, gyp);
            gyc = gyp;
        }
        if (gw) { /* gw [O, K] += gy [O, bL] · colᵀ [bL, K] */
            kr->conv.im2col(x + n0 * CHW, b, d->c, d->h, d->w, &d->g, col, bl);
            kr->gemm.sgemm(false, true, O, K, bl, 1.0f, gyc, bl, col, bl, 1.0f, gw, K);
        }
        if (gx) { /* dcol [K, bL] = wᵀ [K, O] · gy [O, bL], then back to pixels */
            kr->gemm.sgemm(true, false, K, bl, O, 1.0f, w, K, gyc, bl, 0.0f, col, bl);
            kr->conv.col2im(col, bl, b, d->c, d->h, d->w, &d->g, gx + n0 * CHW, false);
        }
        if (gb) kr->eltwise.sum_cols(O, bl, gyc, bl, gb, n0 > 0);
    }
    if (ok && gb && N == 0) memset(gb, 0, sizeof(float) * (size_t)O); /* empty batch: db = 0 */
    nn__aligned_free(col);
    nn__aligned_free(gyp);
    return ok;
}

/* ------------------------------------------------------------------ conv2d */

/* Geometry of conv over x4 [N, C, H, W] with w4 [O, C/g, kh, kw]. */
static nn__conv2d conv_geom(const int64_t x4[4], const int64_t w4[4], const conv_params *p,
                            int64_t oh, int64_t ow) {
    nn__conv2d d = {.n = x4[0],
                    .c = x4[1],
                    .h = x4[2],
                    .w = x4[3],
                    .o = w4[0],
                    .g = {.kh = w4[2],
                          .kw = w4[3],
                          .sh = p->stride[0],
                          .sw = p->stride[1],
                          .ph = p->pad[0],
                          .pw = p->pad[1],
                          .dh = p->dil[0],
                          .dw = p->dil[1],
                          .oh = oh,
                          .ow = ow}};
    return d;
}

/* Output spatial size of a convolution; -1 and an error when the kernel
 * does not fit the padded input. */
static int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d,
                             const char *fn, const char *axis) {
    int64_t ext = kernel_extent(k, d);
    int64_t padded = in + 2 * pad;
    if (ext < 0 || ext > padded) {
        nn__err(NN_ERR_SHAPE,
                "%s: kernel %s extent %lld (size %lld, dilation %lld) is bigger than the padded "
                "input %lld (size %lld + 2*%lld)",
                fn, axis, (long long)ext, (long long)k, (long long)d, (long long)padded,
                (long long)in, (long long)pad);
        return -1;
    }
    return (padded - ext) / s + 1;
}

/* A copy of gy zeroed where relu_y <= 0 (the ReLU backward), for the
 * paths that do not take the mask themselves. */
static nn_tensor *relu_masked(const nn_tensor *gy, const float *relu_y) {
    nn_tensor *m = nn__tensor_new(NN_DTYPE_F32, gy->shape, gy->ndim);
    if (m) nn__kernels()->eltwise.relu_bwd(gy->numel, relu_y, nn__f32(gy), nn__f32(m));
    return m;
}

/* Gradients of groups = 1: the direct kernels for the passes the tier's
 * rule takes, im2col + GEMM for the rest. gx, gw, gb may be NULL (not
 * wanted); relu_y: the fused ReLU's output, or NULL. */
static bool conv_bwd_g1(const nn__conv2d *d, const nn_tensor *gout, const float *relu_y,
                        const float *x, const float *w, float *gx, float *gw, float *gb,
                        const char *fn) {
    const nn_kernels *kr = nn__kernels();
    const float *gy = nn__f32(gout);
    const unsigned passes = kr->conv.direct_passes(d);
    if (gx && (passes & NN_CONV_BWD_DATA) && kr->conv.direct_bwd_data(d, gy, relu_y, w, gx))
        gx = NULL;
    if (gw && (passes & NN_CONV_BWD_WEIGHTS) &&
        kr->conv.direct_bwd_weights(d, x, gy, relu_y, gw, gb))
        gw = gb = NULL;
    if (!gx && !gw && !gb) return true;
    nn_tensor *gm = relu_y ? relu_masked(gout, relu_y) : NULL;
    if (relu_y && !gm) return false;
    bool ok = conv_bwd_batched(d, x, w, gm ? nn__f32(gm) : gy, gx, gw, gb, fn);
    nn__tensor_release(gm);
    return ok;
}

/* dx, dw, db of y = conv(x, w) + b, or of y = relu(conv(x, w) + b) when the
 * node is a fused conv + ReLU (i[9] = 1, saved[0] = y). */
static nn_status conv_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const char *fn = nd->name;
    nn_tensor *x = nd->inputs[0], *w = nd->inputs[1];
    conv_params p;
    params_from_node(nd, &p);
    int64_t x4[4], w4[4], y4[4];
    as_4d(x, x4);
    as_4d(w, w4);
    as_4d(gout, y4);
    const int64_t N = x4[0], G = p.groups, O = w4[0], Og = O / G, Cg = w4[1];
    const int64_t kk = w4[2] * w4[3], L = y4[2] * y4[3], HW = x4[2] * x4[3];
    const nn__conv2d g = conv_geom(x4, w4, &p, y4[2], y4[3]);
    const float *relu_y = nd->i[9] ? nn__f32(nd->saved[0]) : NULL;
    const bool want_x = nn__ops_wants(nd, 0), want_w = nn__ops_wants(nd, 1);
    nn__prof_gemms(want_x + want_w, N * O, L, Cg * kk); /* dx, dw: a product each */
    const bool ident = col_is_identity(&g);
    nn_tensor *xc = want_w ? nn__contig(x) : NULL, *wc = want_x ? nn__contig(w) : NULL;
    nn_tensor *gx = want_x ? nn__zeros(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    nn_tensor *gw = want_w ? nn__zeros(NN_DTYPE_F32, w->shape, w->ndim) : NULL;
    nn_tensor *gm = relu_y && G != 1 ? relu_masked(gout, relu_y) : NULL;
    float *col = ident || G == 1 ? NULL : col_alloc(x4[1] * kk, L, fn);
    nn_status st = NN_OK;
    if ((want_w && (!xc || !gw)) || (want_x && (!wc || !gx)) || (!ident && G != 1 && !col) ||
        (relu_y && G != 1 && !gm)) {
        st = nn__forward(fn);
        goto done;
    }
    const nn_kernels *kr = nn__kernels();
    const float *Gy = gm ? nn__f32(gm) : nn__f32(gout);
    if (G == 1) { /* the common case */
        gin[2] = nn__ops_wants(nd, 2) ? nn__tensor_new(NN_DTYPE_F32, &O, 1) : NULL;
        if ((nn__ops_wants(nd, 2) && !gin[2]) ||
            !conv_bwd_g1(&g, gout, relu_y, xc ? nn__f32(xc) : NULL, wc ? nn__f32(wc) : NULL,
                         gx ? nn__f32(gx) : NULL, gw ? nn__f32(gw) : NULL,
                         gin[2] ? nn__f32(gin[2]) : NULL, fn)) {
            nn__tensor_release(gin[2]);
            gin[2] = NULL;
            st = nn__forward(fn);
            goto done;
        }
        gin[0] = gx;
        gin[1] = gw;
        gx = gw = NULL;
        goto done;
    }
    for (int64_t n = 0; n < N; n++) {
        const float *gy = Gy + n * O * L;
        if (want_w) { /* dW_g += dY_g [Og, L] · col_gᵀ [L, Cg*kk] */
            const float *xn = nn__f32(xc) + n * x4[1] * HW;
            const float *cm = xn;
            if (!ident) {
                im2col(&g, xn, col);
                cm = col;
            }
            for (int64_t gi = 0; gi < G; gi++)
                kr->gemm.sgemm(false, true, Og, Cg * kk, L, 1.0f, gy + gi * Og * L, L,
                               cm + gi * Cg * kk * L, L, 1.0f, nn__f32(gw) + gi * Og * Cg * kk,
                               Cg * kk);
        }
        if (want_x) { /* dcol_g = W_gᵀ [Cg*kk, Og] · dY_g [Og, L], then col2im */
            float *gxn = nn__f32(gx) + n * x4[1] * HW;
            float *dcol = ident ? gxn : col;
            for (int64_t gi = 0; gi < G; gi++)
                kr->gemm.sgemm(true, false, Cg * kk, L, Og, 1.0f, nn__f32(wc) + gi * Og * Cg * kk,
                               Cg * kk, gy + gi * Og * L, L, 0.0f, dcol + gi * Cg * kk * L, L);
            if (!ident) col2im_add(&g, col, gxn); /* gxn is still zero */
        }
    }
    if (nn__ops_wants(nd, 2) && (st = nn__ops_bias_grad(Gy, N, O, L, &gin[2])) != NN_OK) goto done;
    gin[0] = gx;
    gin[1] = gw;
    gx = gw = NULL;
done:
    nn__aligned_free(col);
    nn__tensor_release(gm);
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn__tensor_release(gx);
    nn__tensor_release(gw);
    return st;
}

/* y = conv(x, w) + b into y [N, O, OH, OW] (contiguous inputs): direct when
 * the tier's rule takes it, else im2col + GEMM; then the ReLU when `relu`
 * and the 2x2 max pool into yp when `yp` (both fused in the direct kernel
 * when it takes them; y is then unused and may be NULL). */
static bool conv_fwd_any(const nn__conv2d *d, const conv_params *p, const float *x, const float *w,
                         const float *b, bool relu, float *y, float *yp, const char *fn) {
    const nn_kernels *kr = nn__kernels();
    const int64_t G = p->groups, O = d->o, Og = O / G, Cg = d->c / G;
    const int64_t kk = d->g.kh * d->g.kw, L = d->g.oh * d->g.ow, HW = d->h * d->w;
    nn__prof_gemm(d->n * O, L, Cg * kk); /* the FLOPs of Y = W · col, image by image */
    if (G == 1) {
        const unsigned passes = kr->conv.direct_passes(d);
        if ((passes & (yp ? NN_CONV_FWD_POOL : NN_CONV_FWD)) &&
            kr->conv.direct_fwd(d, x, w, b, relu, yp != NULL, yp ? yp : y))
            return true;
        if (!y) return false; /* the caller provides y when it may be needed */
        if (!conv_fwd_batched(d, x, w, b, y, fn)) return false;
    } else {
        const bool ident = col_is_identity(d);
        float *col = ident ? NULL : col_alloc(d->c * kk, L, fn);
        if (!ident && !col) return false;
        for (int64_t n = 0; n < d->n; n++) {
            /* Y_g [Og, L] = W_g [Og, Cg*kk] · col_g [Cg*kk, L] */
            const float *xn = x + n * d->c * HW;
            const float *cm = xn;
            if (!ident) {
                im2col(d, xn, col);
                cm = col;
            }
            float *yn = y + n * O * L;
            for (int64_t gi = 0; gi < G; gi++)
                kr->gemm.sgemm(false, false, Og, L, Cg * kk, 1.0f, w + gi * Og * Cg * kk, Cg * kk,
                               cm + gi * Cg * kk * L, L, 0.0f, yn + gi * Og * L, L);
        }
        nn__aligned_free(col);
        if (b) nn__ops_add_bias(y, b, d->n, O, L);
    }
    if (relu) kr->eltwise.relu(d->n * O * L, y, y);
    if (yp) {
        const nn__win2d pg = {2, 2, 2, 2, 0, 0, 1, 1, d->g.oh / 2, d->g.ow / 2};
        kr->pool.maxpool2d(y, d->n * O, d->g.oh, d->g.ow, &pg, yp, NULL);
    }
    return true;
}

/* The convolution of a half weight w by the tier's half kernel, reading the
 * 16-bit weights without an f32 copy (groups 1, no graph): y [N, O, OH, OW]
 * (pooled: [.., OH/2, OW/2]), or NULL when the tier does not take the shape
 * (no error; *failed stays false) or on failure (*failed, error set). */
static nn_tensor *conv_half(const nn__conv2d *g, nn_tensor *x, nn_tensor *w, nn_tensor *b,
                            bool relu, bool pool, const char *fn, bool *failed) {
    const nn_kernels *kr = nn__kernels();
    const bool bf16 = w->dtype == NN_DTYPE_BF16;
    if (!(kr->half.conv_passes(bf16, g) & (pool ? NN_CONV_FWD_POOL : NN_CONV_FWD))) return NULL;
    nn_tensor *xc = nn__contig(x), *wc = nn__contig(w), *bc = b ? nn__contig(b) : NULL, *y = NULL;
    const int64_t ys[4] = {g->n, g->o, pool ? g->g.oh / 2 : g->g.oh, pool ? g->g.ow / 2 : g->g.ow};
    if (!xc || !wc || (b && !bc) || !(y = nn__tensor_new(NN_DTYPE_F32, ys, 4))) {
        *failed = true;
        nn__forward(fn);
    } else {
        nn__prof_gemm(g->n * g->o, g->g.oh * g->g.ow, g->c * g->g.kh * g->g.kw);
        if (!kr->half.conv_fwd(bf16, g, nn__f32(xc), nn__u16(wc), bc ? nn__f32(bc) : NULL, relu,
                               pool, nn__f32(y))) {
            nn__tensor_release(y);
            y = NULL;
        }
    }
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn__tensor_release(bc);
    return y;
}

/* Shared front end of conv2d / conv1d: x [N, C, (H,) W], w [O, C/g, (kh,) kw].
 * relu: y = relu(conv) recorded as one node; pool (only without a graph):
 * y = max_pool2d(relu(conv), 2). */
static nn_tensor *conv_impl(nn_tensor *x, nn_tensor *w, nn_tensor *b, const conv_params *p, int nd_,
                            bool relu, bool pool, const char *fn) {
    char s1[128], s2[128];
    /* conv2d takes f16 / bf16 weights too: converted once per call to an
     * f32 copy (half_weights.c) that the kernels and the node use */
    if (!nn__check_f32(x, fn, "x") ||
        !(nd_ == 4 ? nn__check_weight(w, fn, "w") : nn__check_f32(w, fn, "w")) ||
        !nn__ops_opt_f32(b, fn, "b"))
        return NULL;
    if (x->ndim != nd_ || w->ndim != nd_)
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s and w %s must both be %d-D", fn,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1),
                        nn__shape_str(w->shape, w->ndim, s2, sizeof s2), nd_);
    if (!conv_check_params(p, fn)) return NULL;
    int64_t x4[4], w4[4];
    as_4d(x, x4);
    as_4d(w, w4);
    const int64_t G = p->groups, C = x4[1], O = w4[0];
    if (C % G != 0 || O % G != 0)
        return NN__FAIL(NN_ERR_SHAPE,
                        "%s: groups = %lld must divide in_channels %lld and out_channels %lld", fn,
                        (long long)G, (long long)C, (long long)O);
    if (w4[1] * G != C)
        return NN__FAIL(
            NN_ERR_SHAPE, "%s: x %s has %lld channels but w %s expects %lld (x %lld groups)", fn,
            nn__shape_str(x->shape, x->ndim, s1, sizeof s1), (long long)C,
            nn__shape_str(w->shape, w->ndim, s2, sizeof s2), (long long)(w4[1] * G), (long long)G);
    if (!nn__ops_opt_vec(b, O, fn, "b")) return NULL;
    int64_t oh = conv_out_size(x4[2], w4[2], p->stride[0], p->pad[0], p->dil[0], fn, "height");
    if (oh < 0) return NULL;
    int64_t ow = conv_out_size(x4[3], w4[3], p->stride[1], p->pad[1], p->dil[1], fn, "width");
    if (ow < 0) return NULL;
    int64_t yshape[4] = {x4[0], O, oh, ow};
    if (nd_ == 3) yshape[2] = ow;
    nn_tensor *in[3] = {x, w, b};
    if (pool && (nd_ != 4 || nn__needs_grad(in, 3) || oh < 2 || ow < 2))
        return NN__FAIL(NN_ERR_INVALID,
                        "%s: the fused 2x2 pool needs a 4-D output of at least 2x2 and no graph",
                        fn);
    const nn__conv2d g = conv_geom(x4, w4, p, oh, ow);
    if (nd_ == 4 && G == 1 && nn__is_half(w->dtype) && !nn__needs_grad(in, 3)) {
        bool failed = false;
        nn_tensor *hy = conv_half(&g, x, w, b, relu, pool, fn, &failed);
        if (hy || failed) return hy;
    }
    nn_tensor *xc = nn__contig(x), *wc = nn__weight_f32(w), *bc = b ? nn__contig(b) : NULL;
    if (wc && nn__is_half(w->dtype)) in[1] = wc; /* a half w's f32 copy */
    nn_tensor *y = NULL, *yp = NULL;
    if (!xc || !wc || (b && !bc)) {
        nn__forward(fn);
        goto done;
    }
    const float *bp = bc ? nn__f32(bc) : NULL;
    if (pool) {
        int64_t pshape[4] = {x4[0], O, oh / 2, ow / 2};
        yp = nn__tensor_new(NN_DTYPE_F32, pshape, 4);
        bool ok =
            yp && conv_fwd_any(&g, p, nn__f32(xc), nn__f32(wc), bp, relu, NULL, nn__f32(yp), fn);
        if (yp && !ok) { /* the direct kernel did not take it: through a full-size y */
            y = nn__tensor_new(NN_DTYPE_F32, yshape, nd_);
            ok = y && conv_fwd_any(&g, p, nn__f32(xc), nn__f32(wc), bp, relu, nn__f32(y),
                                   nn__f32(yp), fn);
            nn__tensor_release(y);
            y = NULL;
        }
        if (!ok) {
            nn__forward(fn); /* every NULL result carries an error */
            nn__tensor_release(yp);
            yp = NULL;
        }
        y = yp;
        goto done;
    }
    y = nn__tensor_new(NN_DTYPE_F32, yshape, nd_);
    if (!y || !conv_fwd_any(&g, p, nn__f32(xc), nn__f32(wc), bp, relu, nn__f32(y), NULL, fn)) {
        nn__forward(fn);
        nn__tensor_release(y);
        y = NULL;
        goto done;
    }
    nn_node *node = NULL;
    y = nn__ops_record(y, fn, conv_backward, in, 3, &node);
    params_to_node(node, p);
    if (node && relu) { /* the fused ReLU's backward reads its output */
        node->i[9] = 1;
        if (!(node->saved[0] = nn__alias(y))) {
            nn__tensor_release(y);
            y = NN__FAIL(NN_ERR_NOMEM, "%s: out of memory recording the graph", fn);
        }
    }
done:
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn__tensor_release(bc);
    return y;
}

nn_tensor *nn_conv2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride_h, int stride_w,
                     int pad_h, int pad_w, int dilation_h, int dilation_w, int groups) {
    NN__PROF_OP("nn_conv2d");
    conv_params p = {
        {stride_h, stride_w}, {pad_h, pad_w}, {dilation_h, dilation_w}, {0, 0}, groups};
    return nn__track(conv_impl(x, w, b, &p, 4, false, false, "nn_conv2d"));
}

nn_tensor *nn__conv2d_relu(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride_h, int stride_w,
                           int pad_h, int pad_w, int dilation_h, int dilation_w, int groups,
                           bool pool) {
    NN__PROF_OP("nn_conv2d+relu");
    conv_params p = {
        {stride_h, stride_w}, {pad_h, pad_w}, {dilation_h, dilation_w}, {0, 0}, groups};
    return conv_impl(x, w, b, &p, 4, true, pool, "nn_conv2d");
}

int64_t nn__conv_fuse_l2_bytes(void) { return nn__cpu()->l2; }

nn_tensor *nn_conv1d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int pad, int dilation,
                     int groups) {
    NN__PROF_OP("nn_conv1d");
    conv_params p = {{1, stride}, {0, pad}, {1, dilation}, {0, 0}, groups};
    return nn__track(conv_impl(x, w, b, &p, 3, false, false, "nn_conv1d"));
}

/* -------------------------------------------------------- conv_transpose2d */

/* x [N, Cin, H, W], w [Cin, Cout/g, kh, kw], y [N, Cout, OH, OW]. The column
 * geometry is that of a conv over y whose output is x's spatial grid. */
static nn__conv2d convt_geom(const nn_tensor *x, const nn_tensor *w, const conv_params *p,
                             const int64_t *yshape) {
    nn__conv2d g = {.n = 1,
                    .c = yshape[1],
                    .h = yshape[2],
                    .w = yshape[3],
                    .o = x->shape[1],
                    .g = {.kh = w->shape[2],
                          .kw = w->shape[3],
                          .sh = p->stride[0],
                          .sw = p->stride[1],
                          .ph = p->pad[0],
                          .pw = p->pad[1],
                          .dh = p->dil[0],
                          .dw = p->dil[1],
                          .oh = x->shape[2],
                          .ow = x->shape[3]}};
    return g;
}

/* dx_g = W_g · im2col(dy)_g, dW_g += x_g · im2col(dy)_gᵀ, db = sums of dy. */
static nn_status convt_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const char *fn = nd->name;
    nn_tensor *x = nd->inputs[0], *w = nd->inputs[1];
    conv_params p;
    params_from_node(nd, &p);
    const nn__conv2d g = convt_geom(x, w, &p, gout->shape);
    const int64_t N = x->shape[0], Cin = x->shape[1], G = p.groups, Cing = Cin / G;
    const int64_t Coutg = w->shape[1], Cout = gout->shape[1], kk = g.g.kh * g.g.kw;
    const int64_t L = g.g.oh * g.g.ow, OHW = g.h * g.w, R = Coutg * kk;
    const bool want_x = nn__ops_wants(nd, 0), want_w = nn__ops_wants(nd, 1);
    nn_tensor *xc = want_w ? nn__contig(x) : NULL, *wc = want_x ? nn__contig(w) : NULL;
    nn_tensor *gx = want_x ? nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    nn_tensor *gw = want_w ? nn__zeros(NN_DTYPE_F32, w->shape, w->ndim) : NULL;
    float *col = (want_x || want_w) ? col_alloc(Cout * kk, L, fn) : NULL;
    nn_status st = NN_OK;
    if ((want_w && (!xc || !gw)) || (want_x && (!wc || !gx)) || ((want_x || want_w) && !col)) {
        st = nn__forward(fn);
        goto done;
    }
    const nn_kernels *kr = nn__kernels();
    const float *Gy = nn__f32(gout);
    for (int64_t n = 0; n < N && (want_x || want_w); n++) {
        im2col(&g, Gy + n * Cout * OHW, col);
        for (int64_t gi = 0; gi < G; gi++) {
            const float *cg = col + gi * R * L;
            if (want_x)
                kr->gemm.sgemm(false, false, Cing, L, R, 1.0f, nn__f32(wc) + gi * Cing * R, R, cg, L,
                          0.0f, nn__f32(gx) + (n * Cin + gi * Cing) * L, L);
            if (want_w)
                kr->gemm.sgemm(false, true, Cing, R, L, 1.0f, nn__f32(xc) + (n * Cin + gi * Cing) * L, L,
                          cg, L, 1.0f, nn__f32(gw) + gi * Cing * R, R);
        }
    }
    if (nn__ops_wants(nd, 2) && (st = nn__ops_bias_grad(Gy, N, Cout, OHW, &gin[2])) != NN_OK)
        goto done;
    gin[0] = gx;
    gin[1] = gw;
    gx = gw = NULL;
done:
    nn__aligned_free(col);
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn__tensor_release(gx);
    nn__tensor_release(gw);
    return st;
}

/* Output size (in-1)*s - 2p + d*(k-1) + op + 1 of a transposed conv; -1 + error if < 1. */
static int64_t convt_out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d, int64_t op,
                              const char *fn, const char *axis) {
    int64_t ext = kernel_extent(k, d), v;
    if (ext < 0 || __builtin_mul_overflow(in - 1, s, &v) ||
        __builtin_add_overflow(v, ext + op, &v)) {
        nn__err(NN_ERR_OVERFLOW, "%s: output %s overflows", fn, axis);
        return -1;
    }
    v -= 2 * pad;
    if (v < 1) {
        nn__err(NN_ERR_SHAPE,
                "%s: output %s would be %lld (input %lld, kernel %lld, stride %lld, padding %lld)",
                fn, axis, (long long)v, (long long)in, (long long)k, (long long)s, (long long)pad);
        return -1;
    }
    return v;
}

static nn_tensor *convt_impl(nn_tensor *x, nn_tensor *w, nn_tensor *b, const conv_params *p) {
    const char *fn = "nn_conv_transpose2d";
    char s1[128], s2[128];
    if (!nn__check_f32(x, fn, "x") || !nn__check_f32(w, fn, "w") || !nn__ops_opt_f32(b, fn, "b"))
        return NULL;
    if (x->ndim != 4 || w->ndim != 4)
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s and w %s must both be 4-D", fn,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1),
                        nn__shape_str(w->shape, w->ndim, s2, sizeof s2));
    if (!conv_check_params(p, fn)) return NULL;
    for (int i = 0; i < 2; i++)
        if (p->opad[i] >= p->stride[i] && p->opad[i] >= p->dil[i])
            return NN__FAIL(
                NN_ERR_INVALID,
                "%s: output_padding %lld must be smaller than stride %lld or dilation %lld", fn,
                (long long)p->opad[i], (long long)p->stride[i], (long long)p->dil[i]);
    const int64_t G = p->groups, Cin = x->shape[1];
    if (w->shape[0] != Cin)
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s has %lld channels but w %s expects %lld", fn,
                        nn__shape_str(x->shape, 4, s1, sizeof s1), (long long)Cin,
                        nn__shape_str(w->shape, 4, s2, sizeof s2), (long long)w->shape[0]);
    if (Cin % G != 0)
        return NN__FAIL(NN_ERR_SHAPE, "%s: groups = %lld must divide in_channels %lld", fn,
                        (long long)G, (long long)Cin);
    int64_t Cout;
    if (__builtin_mul_overflow(w->shape[1], G, &Cout))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: out_channels overflows", fn);
    if (!nn__ops_opt_vec(b, Cout, fn, "b")) return NULL;
    int64_t oh = convt_out_size(x->shape[2], w->shape[2], p->stride[0], p->pad[0], p->dil[0],
                                p->opad[0], fn, "height");
    if (oh < 0) return NULL;
    int64_t ow = convt_out_size(x->shape[3], w->shape[3], p->stride[1], p->pad[1], p->dil[1],
                                p->opad[1], fn, "width");
    if (ow < 0) return NULL;
    int64_t yshape[4] = {x->shape[0], Cout, oh, ow};
    nn_tensor *y = nn__zeros(NN_DTYPE_F32, yshape, 4);
    if (!y) return NULL;
    const nn__conv2d g = convt_geom(x, w, p, yshape);
    const int64_t N = x->shape[0], Cing = Cin / G, kk = g.g.kh * g.g.kw, R = w->shape[1] * kk;
    const int64_t L = g.g.oh * g.g.ow, OHW = oh * ow;
    nn_tensor *xc = nn__contig(x), *wc = nn__contig(w), *bc = b ? nn__contig(b) : NULL;
    float *col = col_alloc(Cout * kk, L, fn);
    if (!xc || !wc || (b && !bc) || !col) {
        nn__tensor_release(y);
        y = NULL;
        goto done;
    }
    const nn_kernels *kr = nn__kernels();
    for (int64_t n = 0; n < N; n++) {
        /* col_g [R, L] = W_gᵀ [R, Cin_g] · x_g [Cin_g, L], then scatter into y */
        for (int64_t gi = 0; gi < G; gi++)
            kr->gemm.sgemm(true, false, R, L, Cing, 1.0f, nn__f32(wc) + gi * Cing * R, R,
                      nn__f32(xc) + (n * Cin + gi * Cing) * L, L, 0.0f, col + gi * R * L, L);
        col2im_add(&g, col, nn__f32(y) + n * Cout * OHW);
    }
    if (bc) nn__ops_add_bias(nn__f32(y), nn__f32(bc), N, Cout, OHW);
    nn_node *node = NULL;
    nn_tensor *in[3] = {x, w, b};
    y = nn__ops_record(y, fn, convt_backward, in, 3, &node);
    params_to_node(node, p);
done:
    nn__aligned_free(col);
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn__tensor_release(bc);
    return y;
}

nn_tensor *nn_conv_transpose2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride_h, int stride_w,
                               int pad_h, int pad_w, int output_pad_h, int output_pad_w,
                               int dilation_h, int dilation_w, int groups) {
    NN__PROF_OP("nn_conv_transpose2d");
    conv_params p = {{stride_h, stride_w},
                     {pad_h, pad_w},
                     {dilation_h, dilation_w},
                     {output_pad_h, output_pad_w},
                     groups};
    return nn__track(convt_impl(x, w, b, &p));
}
