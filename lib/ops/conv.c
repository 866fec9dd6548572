/* Convolutions: conv2d, conv1d (conv2d with H = 1) and conv_transpose2d.
 *
 * im2col + sgemm, one image of the batch at a time so memory stays bounded
 * by one column buffer [C*kh*kw, L] per call. conv_transpose2d is the
 * data-gradient of conv2d: its forward is a GEMM followed by col2im, its
 * backward an im2col followed by GEMMs. Forward and backward side by side. */
#include "backend/backend.h"
#include "nn_ops_internal.h"

#include <string.h>

/* ---------------------------------------------------------- im2col/col2im */

/* Geometry linking an image [c, h, w] and its column matrix
 * [c*kh*kw, oh*ow]: column (oh_i, ow_i) of row (ci, ki, kj) holds
 * img[ci, oh_i*sh - ph + ki*dh, ow_i*sw - pw + kj*dw] (0 outside). */
typedef struct {
    int64_t c, h, w;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int64_t oh, ow;
} col_geom;

/* Range [lo, hi) of output columns whose input column ow*sw + off is inside [0, w). */
static void valid_range(int64_t off, int64_t s, int64_t w, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = w - off <= 0 ? 0 : (w - off + s - 1) / s;
    if (l > ow) l = ow;
    if (h > ow) h = ow;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

static void im2col(const col_geom *g, const float *img, float *col) {
    const int64_t L = g->oh * g->ow;
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                float *row = col + ((c * g->kh + ki) * g->kw + kj) * L;
                const int64_t xoff = kj * g->dw - g->pw;
                int64_t lo, hi;
                valid_range(xoff, g->sw, g->w, g->ow, &lo, &hi);
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    float *dst = row + oy * g->ow;
                    const int64_t iy = oy * g->sh - g->ph + ki * g->dh;
                    if (iy < 0 || iy >= g->h) {
                        memset(dst, 0, sizeof(float) * (size_t)g->ow);
                        continue;
                    }
                    const float *src = img + (c * g->h + iy) * g->w;
                    for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (g->sw == 1) {
                        memcpy(dst + lo, src + lo + xoff, sizeof(float) * (size_t)(hi - lo));
                    } else {
                        const int64_t s = g->sw;
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox * s + xoff];
                    }
                    for (int64_t ox = hi; ox < g->ow; ox++) dst[ox] = 0.0f;
                }
            }
}

/* img += the columns scattered back to their pixels (adjoint of im2col). */
static void col2im(const col_geom *g, const float *col, float *img) {
    const int64_t L = g->oh * g->ow;
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                const float *row = col + ((c * g->kh + ki) * g->kw + kj) * L;
                const int64_t xoff = kj * g->dw - g->pw;
                int64_t lo, hi;
                valid_range(xoff, g->sw, g->w, g->ow, &lo, &hi);
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    const int64_t iy = oy * g->sh - g->ph + ki * g->dh;
                    if (iy < 0 || iy >= g->h) continue;
                    const float *src = row + oy * g->ow;
                    float *dst = img + (c * g->h + iy) * g->w;
                    const int64_t s = g->sw;
                    for (int64_t ox = lo; ox < hi; ox++) dst[ox * s + xoff] += src[ox];
                }
            }
}

/* A 1x1 kernel with unit stride and no padding: the image is its own column matrix. */
static bool col_is_identity(const col_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
           g->oh == g->h && g->ow == g->w;
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
 * per chunk instead of one per image (BLIS runs far better on a wide N and
 * threads it), with the column buffer bounded to ~256 KB so it stays in L2
 * between im2col and the GEMM that reads it. */
static int64_t conv_chunk(int64_t n, int64_t k, int64_t l) {
    int64_t per = k * l > 0 ? k * l : 1;
    int64_t c = ((int64_t)1 << 16) / per;
    if (c > n) c = n;
    return c < 1 ? 1 : c; /* >= 1 even for an empty batch (n = 0) */
}

static nn__win2d conv_win(const col_geom *g) {
    nn__win2d w = {g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->oh, g->ow};
    return w;
}

/* y [N, O, L] = conv(x [N, C, H, W], w [O, K]) + bias, K = C*kh*kw. */
static bool conv_fwd_batched(const col_geom *g, const float *x, int64_t N, const float *w,
                             int64_t O, const float *bias, float *y, const char *fn) {
    const nn_kernels *kr = nn__kernels();
    const int64_t K = g->c * g->kh * g->kw, L = g->oh * g->ow, CHW = g->c * g->h * g->w;
    const int64_t nb = conv_chunk(N, K, L);
    const nn__win2d kg = conv_win(g);
    float *col = col_alloc(K, nb * L, fn);
    float *tmp = nb > 1 ? col_alloc(O, nb * L, fn) : NULL;
    bool ok = col && (nb == 1 || tmp);
    for (int64_t n0 = 0; ok && n0 < N; n0 += nb) {
        const int64_t b = N - n0 < nb ? N - n0 : nb, bl = b * L;
        float *out = b > 1 ? tmp : y + n0 * O * L; /* [O, b, L] */
        kr->conv.im2col(x + n0 * CHW, b, g->c, g->h, g->w, &kg, col, bl);
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
static bool conv_bwd_batched(const col_geom *g, const float *x, int64_t N, const float *w,
                             int64_t O, const float *gy, float *gx, float *gw, float *gb,
                             const char *fn) {
    const nn_kernels *kr = nn__kernels();
    const int64_t K = g->c * g->kh * g->kw, L = g->oh * g->ow, CHW = g->c * g->h * g->w;
    const int64_t nb = conv_chunk(N, K, L);
    const nn__win2d kg = conv_win(g);
    float *col = col_alloc(K, nb * L, fn);
    float *gyp = nb > 1 ? col_alloc(O, nb * L, fn) : NULL;
    bool ok = col && (nb == 1 || gyp);
    for (int64_t n0 = 0; ok && n0 < N; n0 += nb) {
        const int64_t b = N - n0 < nb ? N - n0 : nb, bl = b * L;
        const float *gyc = gy + n0 * O * L;
        if (b > 1) { /* [b, O, L] -> [O, b, L], the layout of the columns */
            kr->conv.swap01(gyc, b, O, L, gyp);
            gyc = gyp;
        }
        if (gw) { /* gw [O, K] += gy [O, bL] · colᵀ [bL, K] */
            kr->conv.im2col(x + n0 * CHW, b, g->c, g->h, g->w, &kg, col, bl);
            kr->gemm.sgemm(false, true, O, K, bl, 1.0f, gyc, bl, col, bl, 1.0f, gw, K);
        }
        if (gx) { /* dcol [K, bL] = wᵀ [K, O] · gy [O, bL], then back to pixels */
            kr->gemm.sgemm(true, false, K, bl, O, 1.0f, w, K, gyc, bl, 0.0f, col, bl);
            kr->conv.col2im(col, bl, b, g->c, g->h, g->w, &kg, gx + n0 * CHW);
        }
        if (gb) kr->eltwise.sum_cols(O, bl, gyc, bl, gb, n0 > 0);
    }
    if (ok && gb && N == 0) memset(gb, 0, sizeof(float) * (size_t)O); /* empty batch: db = 0 */
    nn__aligned_free(col);
    nn__aligned_free(gyp);
    return ok;
}

/* ------------------------------------------------------------------ conv2d */

/* Column geometry of conv over x4 [N, C, H, W] with w4 [O, C/g, kh, kw]. */
static col_geom conv_geom(const int64_t x4[4], const int64_t w4[4], const conv_params *p,
                          int64_t oh, int64_t ow) {
    col_geom g = {.c = x4[1],
                  .h = x4[2],
                  .w = x4[3],
                  .kh = w4[2],
                  .kw = w4[3],
                  .sh = p->stride[0],
                  .sw = p->stride[1],
                  .ph = p->pad[0],
                  .pw = p->pad[1],
                  .dh = p->dil[0],
                  .dw = p->dil[1],
                  .oh = oh,
                  .ow = ow};
    return g;
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

/* dx, dw, db of y = conv(x, w) + b, one image at a time. */
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
    col_geom g = conv_geom(x4, w4, &p, y4[2], y4[3]);
    const bool want_x = nn__ops_wants(nd, 0), want_w = nn__ops_wants(nd, 1);
    const bool ident = col_is_identity(&g);
    nn_tensor *xc = want_w ? nn__contig(x) : NULL, *wc = want_x ? nn__contig(w) : NULL;
    nn_tensor *gx = want_x ? nn__zeros(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    nn_tensor *gw = want_w ? nn__zeros(NN_DTYPE_F32, w->shape, w->ndim) : NULL;
    float *col = ident || G == 1 ? NULL : col_alloc(x4[1] * kk, L, fn);
    nn_status st = NN_OK;
    if ((want_w && (!xc || !gw)) || (want_x && (!wc || !gx)) || (!ident && G != 1 && !col)) {
        st = nn__forward(fn);
        goto done;
    }
    const nn_kernels *kr = nn__kernels();
    const float *Gy = nn__f32(gout);
    if (G == 1) { /* the common case: batched columns, one GEMM per chunk */
        gin[2] = nn__ops_wants(nd, 2) ? nn__tensor_new(NN_DTYPE_F32, &O, 1) : NULL;
        if ((nn__ops_wants(nd, 2) && !gin[2]) ||
            !conv_bwd_batched(&g, xc ? nn__f32(xc) : NULL, N, wc ? nn__f32(wc) : NULL, O, Gy,
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
                          cm + gi * Cg * kk * L, L, 1.0f, nn__f32(gw) + gi * Og * Cg * kk, Cg * kk);
        }
        if (want_x) { /* dcol_g = W_gᵀ [Cg*kk, Og] · dY_g [Og, L], then col2im */
            float *gxn = nn__f32(gx) + n * x4[1] * HW;
            float *dcol = ident ? gxn : col;
            for (int64_t gi = 0; gi < G; gi++)
                kr->gemm.sgemm(true, false, Cg * kk, L, Og, 1.0f, nn__f32(wc) + gi * Og * Cg * kk,
                          Cg * kk, gy + gi * Og * L, L, 0.0f, dcol + gi * Cg * kk * L, L);
            if (!ident) col2im(&g, col, gxn);
        }
    }
    if (nn__ops_wants(nd, 2) && (st = nn__ops_bias_grad(Gy, N, O, L, &gin[2])) != NN_OK) goto done;
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

/* Shared front end of conv2d / conv1d: x [N, C, (H,) W], w [O, C/g, (kh,) kw]. */
static nn_tensor *conv_impl(nn_tensor *x, nn_tensor *w, nn_tensor *b, const conv_params *p, int nd_,
                            const char *fn) {
    char s1[128], s2[128];
    if (!nn__check_f32(x, fn, "x") || !nn__check_f32(w, fn, "w") || !nn__ops_opt_f32(b, fn, "b"))
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
    nn_tensor *y = nn__tensor_new(NN_DTYPE_F32, yshape, nd_);
    if (!y) return NULL;

    col_geom g = conv_geom(x4, w4, p, oh, ow);
    const bool ident = col_is_identity(&g);
    const int64_t N = x4[0], Og = O / G, Cg = w4[1], kk = w4[2] * w4[3], L = oh * ow;
    const int64_t HW = x4[2] * x4[3];
    nn_tensor *xc = nn__contig(x), *wc = nn__contig(w), *bc = b ? nn__contig(b) : NULL;
    bool bc_done = false; /* forward (and bias) done by the batched path */
    float *col = ident || G == 1 ? NULL : col_alloc(C * kk, L, fn);
    if (!xc || !wc || (b && !bc) || (!ident && G != 1 && !col)) {
        nn__forward(fn);
        nn__tensor_release(y);
        y = NULL;
        goto done;
    }
    const nn_kernels *kr = nn__kernels();
    if (G == 1) { /* the common case: batched columns, bias fused */
        if (!conv_fwd_batched(&g, nn__f32(xc), N, nn__f32(wc), O, bc ? nn__f32(bc) : NULL,
                              nn__f32(y), fn)) {
            nn__forward(fn); /* every NULL result carries an error */
            nn__tensor_release(y);
            y = NULL;
            goto done;
        }
        bc_done = true;
    }
    for (int64_t n = 0; !bc_done && n < N; n++) {
        /* Y_g [Og, L] = W_g [Og, Cg*kk] · col_g [Cg*kk, L] */
        const float *xn = nn__f32(xc) + n * C * HW;
        const float *cm = xn;
        if (!ident) {
            im2col(&g, xn, col);
            cm = col;
        }
        float *yn = nn__f32(y) + n * O * L;
        for (int64_t gi = 0; gi < G; gi++)
            kr->gemm.sgemm(false, false, Og, L, Cg * kk, 1.0f, nn__f32(wc) + gi * Og * Cg * kk, Cg * kk,
                      cm + gi * Cg * kk * L, L, 0.0f, yn + gi * Og * L, L);
    }
    if (bc && !bc_done) nn__ops_add_bias(nn__f32(y), nn__f32(bc), N, O, L);
    nn_node *node = NULL;
    nn_tensor *in[3] = {x, w, b};
    y = nn__ops_record(y, fn, conv_backward, in, 3, &node);
    params_to_node(node, p);
done:
    nn__aligned_free(col);
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn__tensor_release(bc);
    return y;
}

nn_tensor *nn_conv2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride_h, int stride_w,
                     int pad_h, int pad_w, int dilation_h, int dilation_w, int groups) {
    conv_params p = {
        {stride_h, stride_w}, {pad_h, pad_w}, {dilation_h, dilation_w}, {0, 0}, groups};
    return nn__track(conv_impl(x, w, b, &p, 4, "nn_conv2d"));
}

nn_tensor *nn_conv1d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int pad, int dilation,
                     int groups) {
    conv_params p = {{1, stride}, {0, pad}, {1, dilation}, {0, 0}, groups};
    return nn__track(conv_impl(x, w, b, &p, 3, "nn_conv1d"));
}

/* -------------------------------------------------------- conv_transpose2d */

/* x [N, Cin, H, W], w [Cin, Cout/g, kh, kw], y [N, Cout, OH, OW]. The column
 * geometry is that of a conv over y whose output is x's spatial grid. */
static col_geom convt_geom(const nn_tensor *x, const nn_tensor *w, const conv_params *p,
                           const int64_t *yshape) {
    col_geom g = {.c = yshape[1],
                  .h = yshape[2],
                  .w = yshape[3],
                  .kh = w->shape[2],
                  .kw = w->shape[3],
                  .sh = p->stride[0],
                  .sw = p->stride[1],
                  .ph = p->pad[0],
                  .pw = p->pad[1],
                  .dh = p->dil[0],
                  .dw = p->dil[1],
                  .oh = x->shape[2],
                  .ow = x->shape[3]};
    return g;
}

/* dx_g = W_g · im2col(dy)_g, dW_g += x_g · im2col(dy)_gᵀ, db = sums of dy. */
static nn_status convt_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const char *fn = nd->name;
    nn_tensor *x = nd->inputs[0], *w = nd->inputs[1];
    conv_params p;
    params_from_node(nd, &p);
    col_geom g = convt_geom(x, w, &p, gout->shape);
    const int64_t N = x->shape[0], Cin = x->shape[1], G = p.groups, Cing = Cin / G;
    const int64_t Coutg = w->shape[1], Cout = gout->shape[1], kk = g.kh * g.kw;
    const int64_t L = g.oh * g.ow, OHW = g.h * g.w, R = Coutg * kk;
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
    col_geom g = convt_geom(x, w, p, yshape);
    const int64_t N = x->shape[0], Cing = Cin / G, kk = g.kh * g.kw, R = w->shape[1] * kk;
    const int64_t L = g.oh * g.ow, OHW = oh * ow;
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
        col2im(&g, col, nn__f32(y) + n * Cout * OHW);
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
    conv_params p = {{stride_h, stride_w},
                     {pad_h, pad_w},
                     {dilation_h, dilation_w},
                     {output_pad_h, output_pad_w},
                     groups};
    return nn__track(convt_impl(x, w, b, &p));
}
