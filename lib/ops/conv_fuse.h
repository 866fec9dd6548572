/* Fused convolution layers for lib/module's Sequential (internal). */
#ifndef NN_OPS_CONV_FUSE_H
#define NN_OPS_CONV_FUSE_H

#include "nn_internal.h"

/* relu(conv2d(x, w, b)) (groups 1..) in one pass, recorded as one node whose
 * backward applies the ReLU mask inside the convolution's (a fused ReLU
 * backward); with `pool`, then max_pool2d(., 2) (2x2, stride 2, floor) fused
 * too, which is only allowed when no graph is recorded (the pool's indices
 * are not kept): NN_ERR_INVALID otherwise. Same checks and errors as
 * nn_conv2d. Untracked result. */
nn_tensor *nn__conv2d_relu(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride_h, int stride_w,
                           int pad_h, int pad_w, int dilation_h, int dilation_w, int groups,
                           bool pool);

/* The per-core L2 data cache (bytes) the backend planned its blocking for
 * (nn_backend_info's "L2"): Sequential's inference path sizes its blocks of
 * images from it. */
int64_t nn__conv_fuse_l2_bytes(void);

#endif
