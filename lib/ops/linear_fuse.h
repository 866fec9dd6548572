/* The fused Linear + ReLU for lib/module's Sequential (internal). */
#ifndef NN_OPS_LINEAR_FUSE_H
#define NN_OPS_LINEAR_FUSE_H

#include "nn_internal.h"

/* relu(nn_linear(x, w, b)) in one op: the bias and the ReLU applied in one
 * pass over the output (batch-1 inference: one tensor and one pass fewer
 * per layer). Records no graph: NN_ERR_INVALID when an input requires grad
 * and grad mode is on. Same checks and errors as nn_linear; bit-identical
 * to nn_relu(nn_linear(x, w, b)). Untracked result. */
nn_tensor *nn__linear_relu(nn_tensor *x, nn_tensor *w, nn_tensor *b);

#endif
