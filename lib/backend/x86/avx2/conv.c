/* AVX2 tier: convolution helpers (im2col, col2im, swap01), threaded over
 * (image, channel) planes; each task owns its outputs. */
#include "backend/x86/avx2/simd.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------- convolution */

typedef struct conv_args {
    const float *x;
    float *col;
    int64_t n, c, h, w, ldcol;
    const nn__win2d *g;
    bool accumulate; /* col2im: add to x instead of overwriting it */
} conv_args;

/* im2col rows for tasks [lo, hi), task t = (b, ch): every tap of one channel
 * of one image. Stride-1 rows are contiguous copies of input rows. */
static void im2col_tasks(void *ctx, int64_t lo, int64_t hi) {
    const conv_args *q = ctx;
    const nn__win2d *g = q->g;
    const int64_t ohw = g->oh * g->ow, h = q->h, w = q->w;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t b = t / q->c, ch = t % q->c;
        const float *xp = q->x + t * h * w;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *dst = q->col + ((ch * g->kh + i) * g->kw + j) * q->ldcol + b * ohw;
                const int64_t dx = j * g->dw - g->pw;
                /* ox range whose tap column lies inside the image */
                int64_t ox0 = 0, ox1 = g->ow;
                if (g->sw == 1) {
                    ox0 = dx < 0 ? -dx : 0;
                    ox1 = w - dx < g->ow ? w - dx : g->ow;
                    if (ox1 < ox0) ox1 = ox0;
                }
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    const int64_t y = oy * g->sh - g->ph + i * g->dh;
                    float *d = dst + oy * g->ow;
                    if (y < 0 || y >= h) {
                        memset(d, 0, (size_t)g->ow * sizeof(float));
                        continue;
                    }
                    const float *xr = xp + y * w;
                    if (g->sw == 1) {
                        /* rows are short (14-28 floats): an inline loop the
                         * compiler vectorises beats a memcpy call */
                        for (int64_t ox = 0; ox < ox0; ox++) d[ox] = 0.0f;
                        for (int64_t ox = ox0; ox < ox1; ox++) d[ox] = xr[ox + dx];
                        for (int64_t ox = ox1; ox < g->ow; ox++) d[ox] = 0.0f;
                    } else {
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t xx = ox * g->sw + dx;
                            d[ox] = xx >= 0 && xx < w ? xr[xx] : 0.0f;
                        }
                    }
                }
            }
    }
}

static void avx2_im2col(const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                        const nn__win2d *g, float *col, int64_t ldcol) {
    conv_args q = {x, col, n, c, h, w, ldcol, g, false};
    int nt = nn__threads_for(n * c * g->kh * g->kw * g->oh * g->ow, 1 << 15);
    nn__parallel_range(n * c, nt, 1, im2col_tasks, &q);
}

/* col2im for tasks (b, ch): each task owns one output plane, so there are no
 * write races and the order of additions is fixed. */
static void col2im_tasks(void *ctx, int64_t lo, int64_t hi) {
    const conv_args *q = ctx;
    const nn__win2d *g = q->g;
    const int64_t ohw = g->oh * g->ow, h = q->h, w = q->w;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t b = t / q->c, ch = t % q->c;
        float *xp = (float *)q->x + t * h * w;
        if (!q->accumulate) memset(xp, 0, (size_t)(h * w) * sizeof(float));
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *src = q->col + ((ch * g->kh + i) * g->kw + j) * q->ldcol + b * ohw;
                const int64_t dx = j * g->dw - g->pw;
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    const int64_t y = oy * g->sh - g->ph + i * g->dh;
                    if (y < 0 || y >= h) continue;
                    float *xr = xp + y * w;
                    const float *s = src + oy * g->ow;
                    if (g->sw == 1) {
                        int64_t ox0 = dx < 0 ? -dx : 0;
                        int64_t ox1 = w - dx < g->ow ? w - dx : g->ow;
                        if (ox1 < ox0) ox1 = ox0;
                        for (int64_t ox = ox0; ox < ox1; ox++) xr[ox + dx] += s[ox];
                    } else {
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t xx = ox * g->sw + dx;
                            if (xx >= 0 && xx < w) xr[xx] += s[ox];
                        }
                    }
                }
            }
    }
}

static void avx2_col2im(const float *col, int64_t ldcol, int64_t n, int64_t c, int64_t h, int64_t w,
                        const nn__win2d *g, float *x, bool accumulate) {
    conv_args q = {x, (float *)col, n, c, h, w, ldcol, g, accumulate};
    int nt = nn__threads_for(n * c * g->kh * g->kw * g->oh * g->ow, 1 << 15);
    nn__parallel_range(n * c, nt, 1, col2im_tasks, &q);
}

typedef struct swap_args {
    const float *x;
    float *y;
    int64_t a, b, s;
} swap_args;

static void swap_tasks(void *ctx, int64_t lo, int64_t hi) {
    const swap_args *q = ctx;
    for (int64_t t = lo; t < hi; t++) { /* t = output block (j, i) */
        int64_t j = t / q->a, i = t % q->a;
        memcpy(q->y + t * q->s, q->x + (i * q->b + j) * q->s, (size_t)q->s * sizeof(float));
    }
}

static void avx2_swap01(const float *x, int64_t a, int64_t b, int64_t s, float *y) {
    swap_args q = {x, y, a, b, s};
    nn__parallel_range(a * b, nn__threads_for(a * b * s, 1 << 16), 1, swap_tasks, &q);
}

void nn__avx2_fill_conv(nn__conv_kernels *t) {
    t->im2col = avx2_im2col;
    t->col2im = avx2_col2im;
    t->swap01 = avx2_swap01;
}
