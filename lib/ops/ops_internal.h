/* Helpers shared by the op files in lib/ops/ (elementwise, activation,
 * reduce, compare, join). Never installed.
 *
 * The broadcast iterator walks an iteration shape once for several operands,
 * each with its own strides (0 along broadcast dims). Size-1 dims are dropped
 * and adjacent dims that are contiguous for every operand are merged, so a
 * same-shape contiguous op becomes one long row, a row broadcast ([N,C] with
 * [C]) becomes N rows of C, and only true strided cases pay for the walk. The
 * caller supplies a row function that runs the innermost loop.
 */
#ifndef NN_OPS_INTERNAL_H
#define NN_OPS_INTERNAL_H

#include "nn_internal.h"

#define NN__BC_MAXOPS 6

typedef struct nn__bc {
    int ndim; /* after merging; >= 1 */
    int nops;
    bool empty;                      /* some dim has size 0 */
    int64_t shape[NN_MAX_DIMS];      /* iteration shape */
    int64_t full_shape[NN_MAX_DIMS]; /* before merging */
    int full_ndim;
    int64_t str[NN__BC_MAXOPS][NN_MAX_DIMS]; /* element strides per operand */
    int64_t base[NN__BC_MAXOPS];             /* element offset of operand k */
} nn__bc;

/* Innermost loop: n elements; operand k starts at element offset off[k]
 * (from its storage base) and advances step[k] elements per element. */
typedef void (*nn__bc_row_fn)(void *ctx, int64_t n, const int64_t *off, const int64_t *step);

/* Start an iteration over shape (ndim dims). */
void nn__bc_begin(nn__bc *it, const int64_t *shape, int ndim);
/* Add an operand with the given geometry; it must broadcast to the iteration
 * shape (right-aligned; size-1 dims repeat). Returns its operand index. */
int nn__bc_add(nn__bc *it, const int64_t *shape, const int64_t *strides, int ndim, int64_t offset);
int nn__bc_add_tensor(nn__bc *it, const nn_tensor *t);
/* Merge dims; call once after the last nn__bc_add. */
void nn__bc_done(nn__bc *it);
/* Call row for every innermost row, in row-major order of the iteration shape. */
void nn__bc_run(const nn__bc *it, nn__bc_row_fn row, void *ctx);

/* Element base pointers (storage start; add offsets from the iterator). */
static inline float *nn__f32_base(const nn_tensor *t) { return (float *)t->storage->data; }
static inline void *nn__raw_base(const nn_tensor *t) { return t->storage->data; }

/* Gradient g (broadcast shape, untracked, owned) reduced to input shape:
 * g itself when shapes match, else nn__sum_to_shape(g) (g released). */
nn_tensor *nn__grad_to_shape(nn_tensor *g, const nn_tensor *input);

/* Record `out` as produced by backward from inputs; on failure frees out and
 * returns false (error recorded). *node is NULL when no grad is needed. */
bool nn__record_or_free(nn_tensor *out, const char *name, nn_backward_fn backward,
                        nn_tensor *const *inputs, int n, nn_node **node);

/* ---- unary f32 ops (elementwise.c, activation.c) ------------------------
 * fwd: y[i] = f(x[i]); bwd: gx[i] = g[i] * f'(...) from x and/or y.
 * p holds up to 4 op parameters (slope, bounds, ...). */
typedef void (*nn__unary_fwd)(int64_t n, const float *x, float *y, const double *p);
typedef void (*nn__unary_bwd)(int64_t n, const float *g, const float *x, const float *y, float *gx,
                              const double *p);
typedef struct nn__unary_desc {
    const char *name; /* public function name, for messages */
    nn__unary_fwd fwd;
    nn__unary_bwd bwd;
    bool save_in;  /* bwd reads x */
    bool save_out; /* bwd reads y */
} nn__unary_desc;

/* Untracked y = f(a) with autograd recorded; np <= 4 params. */
/* Clamp to [p[0], p[1]]; gradient 1 strictly inside. Shared by nn_clamp and
 * nn_hardtanh. */
void nn__clamp_fwd(int64_t n, const float *x, float *y, const double *p);
void nn__clamp_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                   const double *p);
nn_tensor *nn__unary(nn_tensor *a, const nn__unary_desc *d, const double *p, int np);

#endif /* NN_OPS_INTERNAL_H */
