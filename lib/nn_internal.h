/* Internal declarations of the layers above core (tensor, scopes, autograd,
 * op helpers, generators), shared by every folder above core; core's own are
 * in core/core.h, included here. Never installed.
 *
 * Conventions (read before adding code):
 *  - Internal cross-file symbols are prefixed nn__ ; everything else static.
 *  - Functions named nn__* that return tensors return an UNTRACKED new
 *    reference (no scope involvement). Public nn_* functions return
 *    nn__track(t) so the caller's open scope owns the result. Library code
 *    must not call public tensor-returning functions unless it opens its own
 *    scope around them (see nn__compose_begin/end) -- prefer the nn__ forms.
 *  - Every size computation on caller- or file-controlled values goes
 *    through nn__size_mul / nn__size_add / nn__shape_numel.
 *  - Errors: return nn__err(status, "nn_fn: message %d", ...) which records
 *    the message and returns the status; for pointer results use
 *    NN__FAIL(status, fmt, ...) which evaluates to NULL.
 */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

#include "core/core.h"

#include <stdbool.h>
#include <stdint.h>

/* -------------------------------------------------------------- tensors */

typedef struct nn_storage {
    _Atomic long refs;
    void *data;
    size_t nbytes;
    nn_deleter_fn deleter; /* non-NULL for wrapped caller memory */
    void *user;
    bool owned; /* data allocated by nn__aligned_alloc */
} nn_storage;

typedef struct nn_node nn_node;

struct nn_tensor {
    nn__handle handle; /* NN__KIND_TENSOR */
    _Atomic long refs;
    long scope_refs; /* references owned by open scopes */
    nn_dtype dtype;
    int ndim;
    int64_t shape[NN_MAX_DIMS];
    int64_t strides[NN_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements, into storage */
    int64_t numel;
    nn_storage *storage;
    bool requires_grad;
    nn_tensor *grad;  /* leaf gradient (owned) */
    nn_node *grad_fn; /* owned reference to the producing node */
    long bw_uses;     /* nn_backward scratch: consumers of this leaf not yet run */
};
NN__HANDLE_FIRST(struct nn_tensor, handle);

/* Same, and require dtype f32 (NN_ERR_DTYPE otherwise). */
bool nn__check_f32(const nn_tensor *t, const char *fn, const char *name);
/* New contiguous uninitialised tensor, untracked. */
nn_tensor *nn__tensor_new(nn_dtype dtype, const int64_t *shape, int ndim);
nn_tensor *nn__zeros(nn_dtype dtype, const int64_t *shape, int ndim);
nn_tensor *nn__empty_like(const nn_tensor *t); /* same dtype and shape */
nn_tensor *nn__zeros_like(const nn_tensor *t);
nn_tensor *nn__scalar_f32(float v); /* 0-d f32 */
/* Cap the bytes of tensors this thread creates: each new tensor's size is
 * taken from *remaining, and creation fails with NN_ERR_LIMIT when it does not
 * fit. Used while building modules from a file, so a crafted file cannot make
 * an allocation larger than its data justifies. NULL removes the cap. */
void nn__tensor_budget(uint64_t *remaining);
/* An untracked tensor wrapping caller memory (nn_tensor_from_blob's rules;
 * messages name fn); deleter(data, user) runs when its storage goes. */
nn_tensor *nn__tensor_wrap(nn_dtype dtype, const int64_t *shape, int ndim, void *data,
                           nn_deleter_fn deleter, void *user, const char *fn);
/* dst drops its storage and shares src's from now on (PyTorch's
 * load_state_dict(assign=True)): same dtype and shape, both contiguous, else
 * NN_ERR_STATE. Views of dst taken before keep the old storage. */
nn_status nn__tensor_adopt(nn_tensor *dst, nn_tensor *src, const char *fn);
/* While on (this thread), nn__zeros and the module constructors' init
 * (nn__tensor_init_skipped) leave new tensors uninitialised: used while
 * building a module tree whose every tensor is then replaced (a mapped
 * model file), so no page of them is touched. */
void nn__tensor_skip_init(bool on);
bool nn__tensor_init_skipped(void);
/* A view: new tensor struct sharing t's storage with given geometry. */
nn_tensor *nn__view(const nn_tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                    int64_t offset);
/* Same data and geometry, no autograd (used to save outputs without cycles). */
nn_tensor *nn__alias(const nn_tensor *t);
/* t itself (new reference) if contiguous, else a contiguous copy. Untracked. */
nn_tensor *nn__contig(const nn_tensor *t);
/* A contiguous copy (untracked, no graph). */
nn_tensor *nn__clone(const nn_tensor *t);
/* Write dense row-major src (t's dtype, t->numel elements) into t's
 * elements, whatever t's layout. */
void nn__scatter_dense(nn_tensor *t, const void *src);
/* Convert dtype (untracked copy). */
nn_tensor *nn__cast(const nn_tensor *t, nn_dtype dtype);
/* Count t's storage (when libnn allocated it) under memory category cat
 * (nn_mem_category) from now on. NULL-safe. */
void nn__tensor_mem_tag(nn_tensor *t, int cat);
void nn__tensor_retain(nn_tensor *t);
void nn__tensor_release(nn_tensor *t); /* NULL-safe */
bool nn__is_contiguous(const nn_tensor *t);
void nn__contiguous_strides(const int64_t *shape, int ndim, int64_t *strides);
bool nn__same_shape(const nn_tensor *a, const nn_tensor *b);
/* Element pointer helpers for contiguous tensors. */
static inline float *nn__f32(const nn_tensor *t) { return (float *)t->storage->data + t->offset; }
static inline int64_t *nn__i64(const nn_tensor *t) {
    return (int64_t *)t->storage->data + t->offset;
}
static inline uint8_t *nn__u8(const nn_tensor *t) {
    return (uint8_t *)t->storage->data + t->offset;
}
/* f16 / bf16 elements (raw bits). */
static inline uint16_t *nn__u16(const nn_tensor *t) {
    return (uint16_t *)t->storage->data + t->offset;
}
static inline int8_t *nn__i8(const nn_tensor *t) { return (int8_t *)t->storage->data + t->offset; }
/* Element at offset i of base (dtype dt) as double (NaN for a dtype no tensor holds). */
double nn__load_elem(nn_dtype dt, const void *base, int64_t i);
/* Store v (converted and saturated to dtype) at element offset i of base. */
void nn__store_elem(nn_dtype dt, void *base, int64_t i, double v);
/* Read element i (row-major logical index, any layout) as double. */
double nn__get_flat(const nn_tensor *t, int64_t i);
/* Element offset (in elements, from storage base) of logical flat index i. */
int64_t nn__flat_offset(const nn_tensor *t, int64_t i);

/* A list of named tensors: the one form that module parameter lists,
 * flattened module lists and state dicts share. Names are owned by the
 * list; whether the tensors are is up to its owner (see clear). */
typedef struct nn__named_tensor {
    char *name;
    nn_tensor *t;
} nn__named_tensor;
typedef struct nn__named_list {
    nn__named_tensor *e;
    int64_t n, cap;
} nn__named_list;
/* Append (name, t): the name is copied, t stored as given (retain it first
 * to own it). NN_ERR_NOMEM / NN_ERR_OVERFLOW naming fn; l unchanged then. */
nn_status nn__named_list_push(nn__named_list *l, const char *name, nn_tensor *t, const char *fn);
/* Free the names (and release the tensors when owned), then the array. */
void nn__named_list_clear(nn__named_list *l, bool owned);

/* --------------------------------------------------------------- scopes */

/* Hand t to the innermost open scope of this thread (if any) and return it.
 * On failure to record, frees t and returns NULL (NN_ERR_NOMEM). NULL-safe. */
nn_tensor *nn__track(nn_tensor *t);
/* For composite ops that call public functions: open a private scope, and at
 * the end keep only `result` (untracked, new reference) and release the rest. */
nn_scope *nn__compose_begin(void);
nn_tensor *nn__compose_end(nn_scope *s, nn_tensor *result);

/* ------------------------------------------------------------- autograd */

/* Computes gradients of a node's inputs from the gradient of its output.
 * grad_out: contiguous f32 of the output's shape. For each input i that
 * requires grad, set grad_in[i] to a NEW untracked f32 tensor of input i's
 * shape (or leave NULL for "no contribution"). Runs with grad mode off. */
typedef nn_status (*nn_backward_fn)(nn_node *node, nn_tensor *grad_out, nn_tensor **grad_in);

#define NN__NODE_SAVED 6
#define NN__NODE_PARAMS 16

struct nn_node {
    _Atomic long refs;
    const char *name; /* op name for messages, e.g. "nn_conv2d" */
    nn_backward_fn backward;
    int ninputs;
    nn_tensor **inputs;               /* owned references */
    nn_tensor *saved[NN__NODE_SAVED]; /* owned refs, released after backward */
    double f[NN__NODE_PARAMS];        /* op parameters */
    int64_t i[NN__NODE_PARAMS];
    void *ctx; /* op-specific extra data, freed with ctx_free */
    void (*ctx_free)(void *ctx);
    bool released;
    /* engine scratch */
    nn_tensor *grad_acc;
    long pending;
    int64_t out_shape[NN_MAX_DIMS];
    int out_ndim;
};

/* True when grad mode is on and any input requires grad. */
bool nn__needs_grad(nn_tensor *const *inputs, int n);
/* Called by nn_backward once per leaf that requires grad, as soon as the
 * leaf's gradient is final for that backward (every node of the graph that
 * consumes the leaf has run: accumulated into leaf->grad, or reached by no
 * gradient). Installed per thread: only backwards run on the installing
 * thread call it (lib/dist starts a bucket's allreduce from it). fn NULL
 * removes it; without a hook nn_backward does no extra work. */
typedef void (*nn__grad_ready_fn)(nn_tensor *leaf, void *ctx);
void nn__set_grad_ready_hook(nn__grad_ready_fn fn, void *ctx);
/* If nn__needs_grad(inputs), create a node for `out` (retaining inputs), set
 * out->grad_fn and out->requires_grad, and store it in *node; else *node =
 * NULL. Fill node->saved / f / i after. Returns NN_NOMEM on failure (out is
 * left untouched, caller frees it). */
nn_status nn__record(nn_tensor *out, const char *name, nn_backward_fn backward,
                     nn_tensor *const *inputs, int n, nn_node **node);
/* Release a node reference (tensor/node.c): at zero its saved tensors, its
 * inputs and the nodes they alone kept alive are freed without recursion. */
void nn__node_release(nn_node *node);
/* Release a node's saved tensors and op context (after a backward that does
 * not retain the graph). */
void nn__node_free_saved(nn_node *node);

/* ------------------------------------------------------- ops helpers (ops/) */

/* Sum g over broadcast dims so the result has shape (shape, ndim). Untracked. */
nn_tensor *nn__sum_to_shape(const nn_tensor *g, const int64_t *shape, int ndim);

/* Causal (or full) self-attention over a packed projection, for the GPT
 * module: qkv [B, T, 3C] (each row q | k | v, heads of D = C / heads
 * columns) -> [B, T, C] (heads side by side), exactly
 * nn_scaled_dot_product_attention on the [B, H, T, D] views with the same
 * dropout pattern, without copying q, k, v or the output and with one
 * gradient written in place (lib/ops/attention.c). */
nn_tensor *nn__sdpa_packed(nn_tensor *qkv, int64_t heads, bool is_causal, double dropout_p,
                           nn_generator *g);
/* Cross-entropy row kernels for the folders that may not call the backend
 * (lib/loss), implemented in lib/ops/xent.c over the backend's eltwise
 * xent_lse / xent_bwd (see backend/eltwise.h): X [m, n] contiguous. */
void nn__xent_lse_rows(int64_t m, int64_t n, const float *x, float *lse);
void nn__xent_bwd_rows(int64_t m, int64_t n, const float *x, const float *lse, const int64_t *t,
                       const float *s, float *g);
/* out shape of broadcasting a and b; false + NN_ERR_SHAPE naming fn. */
bool nn__broadcast_shapes(const int64_t *a, int an, const int64_t *b, int bn, int64_t *out, int *on,
                          const char *fn);

/* xoshiro256** generator */
struct nn_generator {
    nn__handle handle; /* NN__KIND_GENERATOR */
    uint64_t s[4];
};
NN__HANDLE_FIRST(struct nn_generator, handle);
/* An optional generator argument: NULL (the default generator) or a live
 * generator; anything else records NN_ERR_BAD_HANDLE. */
bool nn__check_gen(const nn_generator *g, const char *fn);
/* g or this thread's default generator. */
nn_generator *nn__gen(nn_generator *g);
uint64_t nn__gen_next(nn_generator *g);
float nn__gen_uniform_f32(nn_generator *g);          /* [0,1) top 24 bits */
double nn__gen_uniform_f64(nn_generator *g);         /* [0,1) top 53 bits */
double nn__gen_normal(nn_generator *g);              /* Box-Muller */
uint64_t nn__gen_below(nn_generator *g, uint64_t n); /* unbiased [0,n) */

#endif /* NN_INTERNAL_H */
