/* Internal interface between optimizers and schedules (lib/optim/). */
#ifndef NN_OPTIM_INTERNAL_H
#define NN_OPTIM_INTERNAL_H

#include "nn_internal.h"

/* Reference counting so a schedule can outlive its creator's optimizer handle. */
void nn__optim_retain(nn_optim *opt);
/* True when opt is a live optimizer handle (records NN_ERR_NULL / BAD_HANDLE naming fn). */
bool nn__optim_check(const nn_optim *opt, const char *fn);

/* Doubles in state dicts: a [1] i64 tensor holding the IEEE-754 bits. */
nn_status nn__sd_put_double(nn_statedict *sd, const char *name, double v);
nn_status nn__sd_put_i64(nn_statedict *sd, const char *name, int64_t v);
/* Borrowed tensor named `name` or NULL (no error recorded). */
nn_tensor *nn__sd_find(const nn_statedict *sd, const char *name);
/* Read back; NN_ERR_NOT_FOUND / NN_ERR_FORMAT naming fn on a missing or malformed entry. */
nn_status nn__sd_get_double(const nn_statedict *sd, const char *name, double *v, const char *fn);
nn_status nn__sd_get_i64(const nn_statedict *sd, const char *name, int64_t *v, const char *fn);

#endif
