/* Helpers shared by the loss files (lib/loss/). Internal. */
#ifndef NN_LOSS_COMMON_H
#define NN_LOSS_COMMON_H

#include "nn_internal.h"

/* Validate a reduction; BATCHMEAN only when allow_batchmean. */
bool nn__loss_check_reduction(nn_reduction r, bool allow_batchmean, const char *fn);
/* A contiguous f32 tensor of like's shape holding w broadcast to it (w's
 * dims aligned from the right, each equal or 1). Untracked; NULL + error
 * naming fn/what if w does not broadcast. */
nn_tensor *nn__loss_broadcast(const nn_tensor *w, const nn_tensor *like, const char *fn,
                              const char *what);
/* Record "fn: <what> shape [..] differs from input shape [..]" (NN_ERR_SHAPE). */
void *nn__loss_shape_error(const char *fn, const char *what, const nn_tensor *a,
                           const nn_tensor *b);

#endif
