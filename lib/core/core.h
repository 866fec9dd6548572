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

/* Memory accounting (nn_memory_stats): add delta bytes to a category
 * (for memory libnn holds outside the allocator, e.g. packing buffers). */
void nn__mem_account(int cat, int64_t delta);
/* nn_memory_stats without touching the error state (for the profiler). */
void nn__mem_snapshot(nn_memory_stats_t *s);
/* Move the aligned block p (from nn__aligned_alloc) to another category. */
void nn__mem_retag(void *p, int cat);
/* Blocks this thread allocates go to `cat` until popped; returns the
 * previous setting for nn__mem_pop. Use NN__MEM_SCOPE. */
int nn__mem_push(int cat);
void nn__mem_pop(int *prev);
/* Allocations until the end of the enclosing block go to category cat. */
#define NN__MEM_SCOPE(cat)                                                                         \
    __attribute__((cleanup(nn__mem_pop))) int nn__mem_prev_ = nn__mem_push(cat)

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

/* -------------------------------------------------------------- profiler
 *
 * The recording side of nn_profiler_* (core/prof.c). A span covers the rest
 * of the enclosing block: NN__PROF_SPAN declares a local whose cleanup
 * records the event, so an early return still closes it. When the profiler
 * is off a span costs one load and one predictable branch on entry and one
 * on exit; nothing else runs. Use at most one per block, as a statement
 * before any goto that could jump over it. */
typedef enum nn__prof_kind {
    NN__PROF_OP = 0,   /* an op's forward */
    NN__PROF_BACKWARD, /* a node's backward */
    NN__PROF_OPTIM,    /* optimizer step / zero_grad */
    NN__PROF_MODULE,   /* a module's forward (obj = the module) */
    NN__PROF_DATA,     /* loader batches */
    NN__PROF_STEP,     /* a training step (nn_fit) */
    NN__PROF_OTHER,    /* engine and bookkeeping (nn_backward, scope ends) */
    NN__PROF_TASK,     /* a pool worker's share of a parallel call */
    NN__PROF_KINDS
} nn__prof_kind;

/* The local a span leaves in its block: whether nn__prof_begin opened a
 * frame (the frames themselves live on a per-thread stack in prof.c). */
typedef struct nn__prof_span {
    bool on;
} nn__prof_span;

extern _Atomic int nn__prof_enabled;
/* Open a frame on this thread's stack; false when not recording. */
bool nn__prof_begin(int kind, const char *name, const void *obj);
void nn__prof_end(void);
void nn__prof_count_slow(double flops, double bytes);
static inline bool nn__prof_on(void) {
    return NN__UNLIKELY(atomic_load_explicit(&nn__prof_enabled, memory_order_relaxed));
}
static inline void nn__prof_close(nn__prof_span *s) {
    if (NN__UNLIKELY(s->on)) nn__prof_end();
}
#define NN__PROF_CAT2(a, b) a##b
#define NN__PROF_CAT(a, b) NN__PROF_CAT2(a, b)
#define NN__PROF_SPAN(kind, name, obj)                                                             \
    __attribute__((cleanup(nn__prof_close))) nn__prof_span NN__PROF_CAT(nn__prof_span_, __LINE__) = { \
        nn__prof_on() && nn__prof_begin((kind), (name), (obj))}
/* An op's forward, named by its public function. */
#define NN__PROF_OP(name) NN__PROF_SPAN(NN__PROF_OP, (name), NULL)
/* Add FLOPs and bytes moved to this thread's innermost open span. */
static inline void nn__prof_count(double flops, double bytes) {
    if (nn__prof_on()) nn__prof_count_slow(flops, bytes);
}
/* The FLOPs (2mnk) and compulsory bytes (A, B and C once, f32) of `count`
 * [m, k] x [k, n] products, added to the innermost span. */
static inline void nn__prof_gemms(int count, int64_t m, int64_t n, int64_t k) {
    if (nn__prof_on()) {
        const double dm = (double)m, dn = (double)n, dk = (double)k;
        nn__prof_count_slow(2.0 * count * dm * dn * dk, 4.0 * count * (dm * dk + dk * dn + dm * dn));
    }
}
#define nn__prof_gemm(m, n, k) nn__prof_gemms(1, (m), (n), (k))
/* The innermost open span's name on this thread (NULL if none): the pool
 * labels its workers' spans with it. */
const char *nn__prof_current_name(void);
/* Name this thread in reports and traces (copied; pool workers call it). */
void nn__prof_thread_label(const char *label);
/* The backend registers the FMA peak of its tier (GFLOP/s per core) and
 * the tier's name; the report calls it once per session, lazily. */
typedef double (*nn__prof_peak_fn)(const char **tier);
void nn__prof_on_peak(nn__prof_peak_fn fn);
/* Process-wide count of nn_model_predict calls and of the samples (first
 * dimension) they served, for monitoring (core/runtime.c). */
void nn__count_predictions(int64_t samples);
void nn__predictions(int64_t *calls, int64_t *samples);

#endif /* NN_CORE_CORE_H */
