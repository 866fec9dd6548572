/* The registry of handle kinds: one enum, one tag layout, one check.
 *
 * Every struct behind a public opaque handle (nn_tensor, nn_module, ...)
 * starts with an nn__handle whose tag says which kind it is. Tags are
 * NN__HANDLE_TAG(kind): distinct by construction, so a handle of one kind
 * handed to a function of another is always reported as NN_ERR_BAD_HANDLE
 * (the per-file magic numbers this replaces had four collisions). A freed
 * handle has its tag cleared first; a use after free is still undefined
 * behaviour (the memory may be reused), the check only catches what it can.
 */
#ifndef NN_CORE_HANDLE_H
#define NN_CORE_HANDLE_H

#include "nn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nn__kind {
    NN__KIND_TENSOR = 1,
    NN__KIND_GENERATOR,
    NN__KIND_SCOPE,
    NN__KIND_MODULE,
    NN__KIND_STATEDICT,
    NN__KIND_OPTIM,
    NN__KIND_SCHED,
    NN__KIND_DATASET,
    NN__KIND_LOADER,
    NN__KIND_MODEL,
    NN__KIND_METER,
    NN__KIND_PROGRESS,
    NN__KIND_METRICS_LOG,
    NN__KIND_IO_OPTIONS,
    NN__KIND_META,
    NN__KIND_SESSION,
    NN__KIND_MONITOR,
    NN__KIND_COUNT /* one past the last kind */
} nn__kind;

/* "NNH" in the top three bytes, the kind in the low byte; 0 when freed. */
#define NN__HANDLE_TAG(kind) (0x4e4e4800u | (uint32_t)(kind))

/* First member of every handle struct (check with NN__HANDLE_FIRST). */
typedef struct nn__handle {
    uint32_t tag;
} nn__handle;

/* Compile-time proof that nn__handle `member` comes first in `type`. */
#define NN__HANDLE_FIRST(type, member)                                                            \
    _Static_assert(offsetof(type, member) == 0, #type ": the nn__handle must be the first member")

/* Initialiser and setters of the tag. */
#define NN__HANDLE_INIT(kind) {NN__HANDLE_TAG(kind)}
static inline void nn__handle_set(nn__handle *h, nn__kind kind) { h->tag = NN__HANDLE_TAG(kind); }
/* Call right before freeing the struct. */
static inline void nn__handle_clear(nn__handle *h) { h->tag = 0; }

/* Whether p (a handle struct, or NULL) is a live handle of this kind. No error
 * is recorded. */
static inline bool nn__handle_is(const void *p, nn__kind kind) {
    return p && ((const nn__handle *)p)->tag == NN__HANDLE_TAG(kind);
}

/* A kind with its article, for messages ("a module", "an optimizer"). */
const char *nn__kind_name(nn__kind kind);

/* Check a handle argument `name` of function fn. NULL: as nn__check_ptr
 * (keeps a pending error, else NN_ERR_NULL). Any other tag than kind's:
 * NN_ERR_BAD_HANDLE "fn: argument 'name' is a module, expected a meter"
 * (or "... is not a meter (a freed handle, or not a libnn handle)"). True
 * when usable. */
bool nn__handle_check(const void *p, nn__kind kind, const char *fn, const char *name);

#endif /* NN_CORE_HANDLE_H */
