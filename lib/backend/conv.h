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

/* A 2-D convolution with groups = 1: x [n, c, h, w], w [o, c, g.kh, g.kw],
 * y [n, o, g.oh, g.ow] (all contiguous). */
typedef struct nn__conv2d {
    int64_t n, c, h, w, o;
    nn__win2d g;
} nn__conv2d;

/* Passes of a convolution (bits of direct_passes). */
enum {
    NN_CONV_FWD = 1u << 0,         /* forward (bias, ReLU, 2x2 max pool fused) */
    NN_CONV_BWD_DATA = 1u << 1,    /* gradient of the input */
    NN_CONV_BWD_WEIGHTS = 1u << 2, /* gradient of the weights */
    NN_CONV_FWD_POOL = 1u << 3     /* forward with the 2x2 pool fused */
};

typedef struct nn__conv_kernels {
    /* x [N, C, H, W] -> columns: for image b, row r = (c*KH + i)*KW + j and
     * output position s = oy*OW + ox, col[r*ldcol + b*OH*OW + s] (ldcol >=
     * N*OH*OW; ldcol == OH*OW with N == 1 is the per-image layout).
     * Out-of-image taps are 0. */
    void (*im2col)(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, const nn__win2d *g,
                   float *col, int64_t ldcol);
    /* The adjoint of im2col: every column entry is added to the pixel im2col
     * read it from. x [N, C, H, W] is first zeroed unless `accumulate`. */
    void (*col2im)(const float *col, int64_t ldcol, int64_t n, int64_t c, int64_t h, int64_t w,
                   const nn__win2d *g, float *x, bool accumulate);
    /* y[j, i, :] = x[i, j, :] for x [A, B, S] (y [B, A, S]); swaps the batch
     * and channel axes between im2col's layout and NCHW. No aliasing. */
    void (*swap01)(const float *x, int64_t a, int64_t b, int64_t s, float *y);

    /* ---- direct convolution (no column matrix), groups = 1, NCHW ---------
     * Which passes of a shape the direct kernels take (NN_CONV_* bits) is the
     * tier's rule, `direct_passes`; the front end runs im2col + GEMM for the
     * others. A kernel returns false, having written nothing, when it does
     * not take the shape or cannot get its scratch memory (the front end then
     * falls back to im2col + GEMM); the reference tier takes no pass. */
    unsigned (*direct_passes)(const nn__conv2d *d);
    /* y = conv(x [N, C, H, W], w [O, C, KH, KW]) + bias [O] (NULL: none),
     * then max(., 0) (NaN stays) when `relu`, then, when `pool`, a 2x2
     * stride-2 max pool (floor mode, NaN propagates): y [N, O, OH, OW] or
     * [N, O, OH/2, OW/2]. */
    bool (*direct_fwd)(const nn__conv2d *d, const float *x, const float *w, const float *bias,
                       bool relu, bool pool, float *y);
    /* gx [N, C, H, W] = the gradient of x from gy [N, O, OH, OW], masked
     * by relu_y > 0 first when relu_y [N, O, OH, OW] is not NULL (a fused
     * ReLU backward). Overwrites gx. */
    bool (*direct_bwd_data)(const nn__conv2d *d, const float *gy, const float *relu_y,
                            const float *w, float *gx);
    /* gw [O, C, KH, KW] += the gradient of w, and gb [O] (may be NULL) =
     * the bias gradient (gy masked as above in both). */
    bool (*direct_bwd_weights)(const nn__conv2d *d, const float *x, const float *gy,
                               const float *relu_y, float *gw, float *gb);
} nn__conv_kernels;

/* nn__backend_force_winograd's mode (backend/tier.h): -1 the tiers' rule,
 * 0 never, 1 wherever Winograd can run. */
int nn__backend_winograd_mode(void);

#endif
