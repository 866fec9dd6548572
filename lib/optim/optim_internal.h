/* Internal interface between optimizers and schedules (lib/optim/). */
#ifndef NN_OPTIM_INTERNAL_H
#define NN_OPTIM_INTERNAL_H

#include "module/module_internal.h" /* nn__sd_*: scalar state-dict entries */

/* Reference counting so a schedule can outlive its creator's optimizer handle. */
void nn__optim_retain(nn_optim *opt);
/* True when opt is a live optimizer handle (records NN_ERR_NULL / BAD_HANDLE naming fn). */
bool nn__optim_check(const nn_optim *opt, const char *fn);

#endif
