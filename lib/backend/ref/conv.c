/* Reference convolution helpers: plain, single-threaded C that says what each
 * kernel means (the oracle the fast kernels are tested against). */
#include "backend/ref/ref.h"

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
                       const nn__win2d *g, float *x) {
    const int64_t ohw = g->oh * g->ow;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            float *xp = x + (b * c + ch) * h * w;
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

void nn__ref_fill_conv(nn__conv_kernels *t) {
    t->im2col = ref_im2col;
    t->col2im = ref_col2im;
    t->swap01 = ref_swap01;
}
