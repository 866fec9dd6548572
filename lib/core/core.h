/* Internal declarations of lib/core, the lowest layer: errors, allocation,
 * size checks, the thread count and the handle kinds (core/handle.h). Every
 * folder may include it; core/ and backend/ include nothing else of libnn's
 * but nn.h (the rule: README, "Layers of the tree"). Never installed. */
#ifndef NN_CORE_CORE_H
#define NN_CORE_CORE_H

#include "nn.h"
#include "core/handle.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define NN__PRINTF(a, b) __attribute__((format(printf, a, b)))
#define NN__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define NN__PRINTF(a, b)
#define NN__UNLIKELY(x) (x)
#endif

/* ---------------------------------------------------------------- errors */

/* Record status + formatted message as this thread's last error; returns status. */
nn_status nn__err(nn_status status, const char *fmt, ...) NN__PRINTF(2, 3);
#define NN__FAIL(status, ...) (nn__err((status), __VA_ARGS__), (void *)0)

/* The pending error. nn__err makes its error pending; it stays pending until
 * a public call succeeds on this thread (a public function that returns a
 * tensor does so through nn__track, which ends it; status-returning public
 * functions end it with `return nn__ok();`). Only a pending error may be
 * reported as the root cause of a NULL argument, so a chain such as
 * nn_relu(nn_add(a, NULL)) reports nn_add's message, but an error left over
 * from an unrelated, earlier call is never blamed. */
bool nn__err_pending(void);
/* A public call succeeded: the pending error (if any) is no longer pending. */
void nn__call_ok(void);
/* nn__call_ok(), then NN_OK: the success return of a public nn_status function. */
nn_status nn__ok(void);
/* The status to return after a callee failed: the pending error's status, or,
 * when the callee failed without recording one (a libnn bug), NN_ERR_STATE
 * with a message naming fn -- never NN_OK and never a stale error. */
nn_status nn__forward(const char *fn);
/* For a required argument that is NULL: keep the pending error (the root
 * cause), else record NN_ERR_NULL "fn: argument 'name' is NULL". Returns the
 * status now recorded. */
nn_status nn__err_null(const char *fn, const char *name);
/* zstd's FORWARD_IF_ERROR: when cond holds, return the callee's error from
 * the current nn_status function (see nn__forward). */
#define NN__FORWARD_IF(cond, fn)                                                                   \
    do {                                                                                           \
        if (cond) return nn__forward(fn);                                                          \
    } while (0)

/* Check a required tensor argument. On NULL: keep the pending error if there
 * is one (root cause of a chain), else record NN_ERR_NULL
 * "fn: argument 'name' is NULL". Also rejects freed handles
 * (NN_ERR_BAD_HANDLE). Returns true when t is usable. */
bool nn__check_tensor(const nn_tensor *t, const char *fn, const char *name);
/* Generic non-tensor pointer check: on NULL, nn__err_null(fn, name). */
bool nn__check_ptr(const void *p, const char *fn, const char *name);

/* --------------------------------------------------------------- memory */

void *nn__malloc(size_t size);           /* sets NN_ERR_NOMEM on failure */
void *nn__calloc(size_t n, size_t size); /* overflow-checked, zeroed */
void *nn__realloc(void *p, size_t size);
void nn__free(void *p);
char *nn__strdup(const char *s);
/* 64-byte aligned blocks (built on the hook); free with nn__aligned_free. */
void *nn__aligned_alloc(size_t size);
void nn__aligned_free(void *p);

/* ----------------------------------------------------------- size checks */

/* *out = a*b; false (and no write) on overflow. */
bool nn__size_mul(size_t a, size_t b, size_t *out);
/* *out = a+b; false on overflow. */
bool nn__size_add(size_t a, size_t b, size_t *out);
/* Validate a shape (0 <= ndim <= NN_MAX_DIMS, each dim >= 0) and compute its
 * element count so that numel * 8 bytes fits in size_t and int64_t.
 * Records an error naming fn and returns false otherwise. */
bool nn__shape_numel(const int64_t *shape, int ndim, int64_t *numel, const char *fn);
/* Normalise a possibly negative dim against ndim; false + NN_ERR_RANGE. */
bool nn__norm_dim(int *dim, int ndim, const char *fn);
/* "[2,3,4]" into buf (for messages). Returns buf. */
const char *nn__shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* --------------------------------------------------------------- runtime */

/* The thread count set by nn_set_num_threads (core/runtime.c owns it). */
int nn__num_threads(void);
/* Register the function nn_set_num_threads calls with each new count (one
 * hook; the backend registers one at load so BLIS's count follows). */
typedef void (*nn__threads_hook)(int n);
void nn__on_num_threads(nn__threads_hook hook);

#endif /* NN_CORE_CORE_H */
