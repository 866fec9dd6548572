/* Reference convolution helpers: plain, single-threaded C that says what each
 * kernel means (the oracle the fast kernels are tested against). */
#include "backend/ref/ref.h"

#include <math.h>
#include <string.h>

/* One im2col row r = (c, i, j) of image b: tap (i, j) of channel c at every
 * output position. */
static void ref_im2col(const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                       const nn__win2d *g, float *col, int64_t ldcol) {
    const int64_t ohw = g->oh * g->ow;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            const float *xp = x + (b * c + ch) * h * w; /* plane [H, W] */
            for (int64_t i = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t r = (ch * g->kh + i) * g->kw + j;
                    float *dst = col + r * ldcol + b * ohw;
                    for (int64_t oy = 0; oy < g->oh; oy++)
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t y = oy * g->sh - g->ph + i * g->dh;
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;
                            bool in = y >= 0 && y < h && xx >= 0 && xx < w;
                            dst[oy * g->ow + ox] = in ? xp[y * w + xx] : 0.0f;
                        }
                }
        }
}

static void ref_col2im(const float *col, int64_t ldcol, int64_t n, int64_t c, int64_t h, int64_t w,
                       const nn__win2d *g, float *x, bool accumulate) {
    const int64_t ohw = g->oh * g->ow;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            float *xp = x + (b * c + ch) * h * w;
            if (!accumulate)
                for (int64_t q = 0; q < h * w; q++) xp[q] = 0.0f;
            for (int64_t i = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t r = (ch * g->kh + i) * g->kw + j;
                    const float *src = col + r * ldcol + b * ohw;
                    for (int64_t oy = 0; oy < g->oh; oy++)
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t y = oy * g->sh - g->ph + i * g->dh;
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;
                            if (y >= 0 && y < h && xx >= 0 && xx < w)
                                xp[y * w + xx] += src[oy * g->ow + ox];
                        }
                }
        }
}

static void ref_swap01(const float *x, int64_t a, int64_t b, int64_t s, float *y) {
    for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < b; j++)
            memcpy(y + (j * a + i) * s, x + (i * b + j) * s, (size_t)s * sizeof(float));
}

/* ------------------------------------------------- direct convolution */

/* The input pixel tap (ky, kx) of output (oy, ox) reads, or NULL when it
 * falls in the zero padding. */
static const float *tap_at(const nn__conv2d *d, const float *plane, int64_t oy, int64_t ox,
                           int64_t ky, int64_t kx) {
    const nn__win2d *g = &d->g;
    const int64_t iy = oy * g->sh - g->ph + ky * g->dh, ix = ox * g->sw - g->pw + kx * g->dw;
    if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) return NULL;
    return plane + iy * d->w + ix;
}

/* One output of the convolution: bias + sum over (c, ky, kx) in that order,
 * then the ReLU (NaN stays NaN, as the relu kernel). */
static float conv_at(const nn__conv2d *d, const float *x, const float *w, const float *bias,
                     bool relu, int64_t n, int64_t o, int64_t oy, int64_t ox) {
    const nn__win2d *g = &d->g;
    float s = 0.0f;
    for (int64_t c = 0; c < d->c; c++)
        for (int64_t ky = 0; ky < g->kh; ky++)
            for (int64_t kx = 0; kx < g->kw; kx++) {
                const float *p = tap_at(d, x + (n * d->c + c) * d->h * d->w, oy, ox, ky, kx);
                if (p) s += w[((o * d->c + c) * g->kh + ky) * g->kw + kx] * *p;
            }
    if (bias) s += bias[o];
    if (relu && !(s > 0.0f) && !isnan(s)) s = 0.0f;
    return s;
}

static unsigned ref_direct_passes(const nn__conv2d *d) {
    (void)d;
    return 0; /* the reference tier always runs im2col + GEMM (BLIS when built with it) */
}

static bool ref_direct_fwd(const nn__conv2d *d, const float *x, const float *w, const float *bias,
                           bool relu, bool pool, float *y) {
    const nn__win2d *g = &d->g;
    const int64_t oh = pool ? g->oh / 2 : g->oh, ow = pool ? g->ow / 2 : g->ow;
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t o = 0; o < d->o; o++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    float v;
                    if (!pool) {
                        v = conv_at(d, x, w, bias, relu, n, o, oy, ox);
                    } else { /* max over the 2x2 window in row-major order; the last NaN wins */
                        v = conv_at(d, x, w, bias, relu, n, o, 2 * oy, 2 * ox);
                        for (int t = 1; t < 4; t++) {
                            float u = conv_at(d, x, w, bias, relu, n, o, 2 * oy + t / 2,
                                              2 * ox + t % 2);
                            if (u > v || isnan(u)) v = u;
                        }
                    }
                    y[((n * d->o + o) * oh + oy) * ow + ox] = v;
                }
    return true;
}

/* gy, masked by relu_y > 0 when relu_y is given. */
static float grad_at(const float *gy, const float *relu_y, int64_t i) {
    return relu_y && !(relu_y[i] > 0.0f) ? 0.0f : gy[i];
}

static bool ref_direct_bwd_data(const nn__conv2d *d, const float *gy, const float *relu_y,
                                const float *w, float *gx) {
    const nn__win2d *g = &d->g;
    const int64_t hw = d->h * d->w, ohw = g->oh * g->ow;
    for (int64_t q = 0; q < d->n * d->c * hw; q++) gx[q] = 0.0f;
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t o = 0; o < d->o; o++)
            for (int64_t oy = 0; oy < g->oh; oy++)
                for (int64_t ox = 0; ox < g->ow; ox++) {
                    const float gv = grad_at(gy, relu_y, (n * d->o + o) * ohw + oy * g->ow + ox);
                    for (int64_t c = 0; c < d->c; c++)
                        for (int64_t ky = 0; ky < g->kh; ky++)
                            for (int64_t kx = 0; kx < g->kw; kx++) {
                                float *p = (float *)tap_at(d, gx + (n * d->c + c) * hw, oy, ox, ky,
                                                           kx);
                                if (p) *p += w[((o * d->c + c) * g->kh + ky) * g->kw + kx] * gv;
                            }
                }
    return true;
}

static bool ref_direct_bwd_weights(const nn__conv2d *d, const float *x, const float *gy,
                                   const float *relu_y, float *gw, float *gb) {
    const nn__win2d *g = &d->g;
    const int64_t hw = d->h * d->w, ohw = g->oh * g->ow;
    for (int64_t o = 0; o < d->o; o++)
        for (int64_t c = 0; c < d->c; c++)
            for (int64_t ky = 0; ky < g->kh; ky++)
                for (int64_t kx = 0; kx < g->kw; kx++) {
                    float s = 0.0f;
                    for (int64_t n = 0; n < d->n; n++)
                        for (int64_t oy = 0; oy < g->oh; oy++)
                            for (int64_t ox = 0; ox < g->ow; ox++) {
                                const float *p =
                                    tap_at(d, x + (n * d->c + c) * hw, oy, ox, ky, kx);
                                if (p)
                                    s += *p * grad_at(gy, relu_y,
                                                      (n * d->o + o) * ohw + oy * g->ow + ox);
                            }
                    gw[((o * d->c + c) * g->kh + ky) * g->kw + kx] += s;
                }
    for (int64_t o = 0; gb && o < d->o; o++) {
        float s = 0.0f;
        for (int64_t n = 0; n < d->n; n++)
            for (int64_t p = 0; p < ohw; p++) s += grad_at(gy, relu_y, (n * d->o + o) * ohw + p);
        gb[o] = s;
    }
    return true;
}

void nn__ref_fill_conv(nn__conv_kernels *t) {
    t->im2col = ref_im2col;
    t->col2im = ref_col2im;
    t->swap01 = ref_swap01;
    t->direct_passes = ref_direct_passes;
    t->direct_fwd = ref_direct_fwd;
    t->direct_bwd_data = ref_direct_bwd_data;
    t->direct_bwd_weights = ref_direct_bwd_weights;
}
