/* Backend domain: pooling (see backend.h for the conventions). */
#ifndef NN_BACKEND_POOL_H
#define NN_BACKEND_POOL_H

#include "backend/conv.h" /* nn__win2d */

typedef struct nn__pool_kernels {
    /* Max pooling of `planes` planes x [planes, H, W] -> y [planes, OH, OW];
     * idx (may be NULL) receives the flat h*W+w position of each maximum
     * (first one on ties; the last NaN wins, as in PyTorch; -1 when a window
     * has no tap inside the input). Padding acts as -inf. */
    void (*maxpool2d)(const float *x, int64_t planes, int64_t h, int64_t w, const nn__win2d *g,
                      float *y, int64_t *idx);
    /* gx [planes, H, W] is OVERWRITTEN: zero, then gx[idx] += gy (indices
     * outside [0, H*W), e.g. -1 for a window with no tap, are skipped). */
    void (*maxpool2d_bwd)(const float *gy, const int64_t *idx, int64_t planes, int64_t h, int64_t w,
                          int64_t oh, int64_t ow, float *gx);
} nn__pool_kernels;

#endif
