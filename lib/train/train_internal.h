/* Internal interface of lib/train. */
#ifndef NN_TRAIN_INTERNAL_H
#define NN_TRAIN_INTERNAL_H

#include "nn_internal.h"

/* The monitor attached to nn_fit on this thread (nn_fit_set_monitor), or NULL. */
nn_monitor *nn__fit_monitor(void);

#endif
