/* Backend domain: convolution helpers (see backend.h for the conventions). */
#ifndef NN_BACKEND_CONV_H
#define NN_BACKEND_CONV_H

#include <stdbool.h>
#include <stdint.h>

/* Geometry of a 2-D window op (convolution or pooling) on one plane. */
typedef struct nn__win2d {
    int64_t kh, kw; /* window */
    int64_t sh, sw; /* stride (>= 1) */
    int64_t ph, pw; /* zero (conv) / -inf (pool) padding (>= 0) */
    int64_t dh, dw; /* dilation (>= 1) */
    int64_t oh, ow; /* output size, computed by the front end */
} nn__win2d;

typedef struct nn__conv_kernels {
    /* x [N, C, H, W] -> columns: for image b, row r = (c*KH + i)*KW + j and
     * output position s = oy*OW + ox, col[r*ldcol + b*OH*OW + s] (ldcol >=
     * N*OH*OW; ldcol == OH*OW with N == 1 is the per-image layout).
     * Out-of-image taps are 0. */
    void (*im2col)(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, const nn__win2d *g,
                   float *col, int64_t ldcol);
    /* The adjoint of im2col: x [N, C, H, W] is OVERWRITTEN with the sum of
     * every column entry that im2col would have read from each pixel. */
    void (*col2im)(const float *col, int64_t ldcol, int64_t n, int64_t c, int64_t h, int64_t w,
                   const nn__win2d *g, float *x);
    /* y[j, i, :] = x[i, j, :] for x [A, B, S] (y [B, A, S]); swaps the batch
     * and channel axes between im2col's layout and NCHW. No aliasing. */
    void (*swap01)(const float *x, int64_t a, int64_t b, int64_t s, float *y);
} nn__conv_kernels;

#endif
