/* Reference pooling kernels: plain, single-threaded C (the test oracle). */
#include "backend/ref/ref.h"

#include <math.h>

static void ref_maxpool2d(const float *x, int64_t planes, int64_t h, int64_t w, const nn__win2d *g,
                          float *y, int64_t *idx) {
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * h * w;
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++) {
                float best = -INFINITY;
                int64_t at = -1;
                for (int64_t i = 0; i < g->kh; i++)
                    for (int64_t j = 0; j < g->kw; j++) {
                        int64_t yy = oy * g->sh - g->ph + i * g->dh;
                        int64_t xx = ox * g->sw - g->pw + j * g->dw;
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                        float v = xp[yy * w + xx];
                        if (at < 0 || v > best || isnan(v)) { /* PyTorch: the last NaN wins */
                            best = v;
                            at = yy * w + xx;
                        }
                    }
                int64_t o = (p * g->oh + oy) * g->ow + ox;
                y[o] = best;
                if (idx) idx[o] = at; /* -1: the window has no tap */
            }
    }
}

static void ref_maxpool2d_bwd(const float *gy, const int64_t *idx, int64_t planes, int64_t h,
                              int64_t w, int64_t oh, int64_t ow, float *gx) {
    for (int64_t p = 0; p < planes; p++) {
        float *gp = gx + p * h * w;
        for (int64_t q = 0; q < h * w; q++) gp[q] = 0.0f;
        for (int64_t o = 0; o < oh * ow; o++) {
            int64_t i = idx[p * oh * ow + o];
            if (i >= 0 && i < h * w) gp[i] += gy[p * oh * ow + o];
        }
    }
}

void nn__ref_fill_pool(nn__pool_kernels *t) {
    t->maxpool2d = ref_maxpool2d;
    t->maxpool2d_bwd = ref_maxpool2d_bwd;
}
