/* AVX2 tier: max pooling forward/backward, threaded over planes. */
#include "backend/x86/avx2/simd.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- pooling */

typedef struct pool_args {
    const float *x;
    float *y;
    int64_t *idx;
    int64_t h, w;
    const nn__win2d *g;
    const float *gy;
    const int64_t *cidx;
    float *gx;
} pool_args;

/* The reference rule for one step of the scan (PyTorch's): take v when it
 * is larger or NaN, so the last NaN of a window wins. */
NN_INLINE bool pool_takes(float v, float best) { return v > best || isnan(v); }

/* 2x2 window, stride 2, no padding or dilation: the demo CNN's pooling. Taps
 * in the reference's order (row 0 left, right, row 1 left, right). */
static void pool2x2_plane(const float *xp, int64_t w, int64_t oh, int64_t ow, float *yp,
                          int64_t *ip) {
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        float *yr = yp + oy * ow;
        int64_t *ir = ip ? ip + oy * ow : NULL;
        for (int64_t ox = 0; ox < ow; ox++) {
            float best = r0[2 * ox];
            int64_t at = 0;
            if (pool_takes(r0[2 * ox + 1], best)) best = r0[2 * ox + 1], at = 1;
            if (pool_takes(r1[2 * ox], best)) best = r1[2 * ox], at = 2;
            if (pool_takes(r1[2 * ox + 1], best)) best = r1[2 * ox + 1], at = 3;
            yr[ox] = best;
            if (ir) ir[ox] = (2 * oy + (at >> 1)) * w + 2 * ox + (at & 1);
        }
    }
}

static void pool_general_plane(const float *xp, int64_t h, int64_t w, const nn__win2d *g, float *yp,
                               int64_t *ip) {
    for (int64_t oy = 0; oy < g->oh; oy++)
        for (int64_t ox = 0; ox < g->ow; ox++) {
            float best = -INFINITY;
            int64_t at = -1;
            for (int64_t i = 0; i < g->kh; i++) {
                int64_t yy = oy * g->sh - g->ph + i * g->dh;
                if (yy < 0 || yy >= h) continue;
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t xx = ox * g->sw - g->pw + j * g->dw;
                    if (xx < 0 || xx >= w) continue;
                    float v = xp[yy * w + xx];
                    if (at < 0 || pool_takes(v, best)) best = v, at = yy * w + xx;
                }
            }
            yp[oy * g->ow + ox] = best;
            if (ip) ip[oy * g->ow + ox] = at; /* -1: no tap */
        }
}

static void pool_planes(void *ctx, int64_t lo, int64_t hi) {
    const pool_args *q = ctx;
    const nn__win2d *g = q->g;
    const int64_t ohw = g->oh * g->ow;
    const bool fast2 = g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 &&
                       g->pw == 0 && g->dh == 1 && g->dw == 1 && 2 * g->oh <= q->h &&
                       2 * g->ow <= q->w;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = q->x + p * q->h * q->w;
        int64_t *ip = q->idx ? q->idx + p * ohw : NULL;
        if (fast2)
            pool2x2_plane(xp, q->w, g->oh, g->ow, q->y + p * ohw, ip);
        else
            pool_general_plane(xp, q->h, q->w, g, q->y + p * ohw, ip);
    }
}

static void avx2_maxpool2d(const float *x, int64_t planes, int64_t h, int64_t w, const nn__win2d *g,
                           float *y, int64_t *idx) {
    pool_args q = {x, y, idx, h, w, g, NULL, NULL, NULL};
    int nt = nn__threads_for(planes * g->oh * g->ow * g->kh * g->kw, EW_GRAIN);
    nn__parallel_range(planes, nt, 1, pool_planes, &q);
}

typedef struct pool_bwd_args {
    const float *gy;
    const int64_t *idx;
    float *gx;
    int64_t hw, ohw;
} pool_bwd_args;

static void pool_bwd_planes(void *ctx, int64_t lo, int64_t hi) {
    const pool_bwd_args *q = ctx;
    for (int64_t p = lo; p < hi; p++) {
        float *gp = q->gx + p * q->hw;
        const float *g = q->gy + p * q->ohw;
        const int64_t *ix = q->idx + p * q->ohw;
        memset(gp, 0, (size_t)q->hw * sizeof(float));
        for (int64_t o = 0; o < q->ohw; o++)
            if (ix[o] >= 0 && ix[o] < q->hw) gp[ix[o]] += g[o];
    }
}

static void avx2_maxpool2d_bwd(const float *gy, const int64_t *idx, int64_t planes, int64_t h,
                               int64_t w, int64_t oh, int64_t ow, float *gx) {
    pool_bwd_args q = {gy, idx, gx, h * w, oh * ow};
    nn__parallel_range(planes, nn__threads_for(planes * h * w, EW_GRAIN), 1, pool_bwd_planes, &q);
}

void nn__avx2_fill_pool(nn__pool_kernels *t) {
    t->maxpool2d = avx2_maxpool2d;
    t->maxpool2d_bwd = avx2_maxpool2d_bwd;
}
