/* Internal interface of modules, used by io/ (model files) and data/ (fit).
 * Owned by module/. Contract agreed before implementation:
 *
 *  - Every built-in module has a type name ("Linear", "Conv2d", "Sequential",
 *    ... the PyTorch class name) and a flat list of hyperparameters as
 *    (key, double) pairs, enough to rebuild it: nn__module_create(type,
 *    keys, values, n) returns a fresh module with default init; its
 *    parameters and buffers are then loaded by name.
 *  - Containers (Sequential, user modules) have named children, in order.
 *    Sequential children are named "0", "1", ...
 *  - A user-defined module (C callback) has type "Custom:<name>"; it cannot
 *    be created from a file (nn__module_create fails with
 *    NN_ERR_UNSUPPORTED), but its weights can be saved and loaded.
 *  - Forward in eval mode with grad mode off must not mutate the module, so
 *    one module can serve many threads.
 */
#ifndef NN_MODULE_INTERNAL_H
#define NN_MODULE_INTERNAL_H

#include "nn_internal.h"

/* Type name, e.g. "Linear" (borrowed, static or owned by m). */
const char *nn__module_type(const nn_module *m);
/* Hyperparameters: count, and entry i (key borrowed). */
int nn__module_config_count(const nn_module *m);
nn_status nn__module_config_get(const nn_module *m, int i, const char **key, double *value);
/* Children (direct submodules) in order; name and module borrowed. */
int nn__module_num_children(const nn_module *m);
nn_module *nn__module_child(const nn_module *m, int i, const char **name);
/* Build a module of a built-in type from its hyperparameters (untracked new
 * reference). Unknown type: NN_ERR_FORMAT naming it. Missing or invalid
 * keys: NN_ERR_FORMAT. Containers come back empty: add children with
 * nn__module_add_child. */
nn_module *nn__module_create(const char *type, const char *const *keys, const double *values,
                             int n);
/* Append a child (the parent takes its own reference). */
nn_status nn__module_add_child(nn_module *parent, const char *name, nn_module *child);

#endif
