/* Helpers shared by the neural-network ops (linalg.c, conv.c, pool.c,
 * norm.c). Internal: never installed. */
#ifndef NN_NN_OPS_INTERNAL_H
#define NN_NN_OPS_INTERNAL_H

#include "nn_internal.h"

/* Record the op's node on out (when some input needs a gradient). On
 * failure out is released and NULL returned; *node is NULL when nothing was
 * recorded. Returns out (untracked). */
static inline nn_tensor *nn__ops_record(nn_tensor *out, const char *name, nn_backward_fn backward,
                                        nn_tensor *const *inputs, int n, nn_node **node) {
    nn_node *nd = NULL;
    if (nn__record(out, name, backward, inputs, n, &nd) != NN_OK) {
        nn__tensor_release(out);
        if (node) *node = NULL;
        return NN__FAIL(NN_ERR_NOMEM, "%s: out of memory recording the graph", name);
    }
    if (node) *node = nd;
    return out;
}

/* ---- half-precision weights (half_weights.c) */
static inline bool nn__is_half(nn_dtype d) { return d == NN_DTYPE_F16 || d == NN_DTYPE_BF16; }
/* Products with fewer rows than this read half weights directly. */
#define NN__HALF_ROWS 16
/* A weight argument: a usable f32, f16 or bf16 tensor (NN_ERR_DTYPE naming
 * fn and name otherwise). */
bool nn__check_weight(const nn_tensor *w, const char *fn, const char *name);
/* w as a contiguous f32 tensor: w itself (a new reference) or a converted /
 * contiguous copy; NULL on failure (error recorded). */
nn_tensor *nn__weight_f32(const nn_tensor *w);
/* C[m, n] = A x op(B) through the backend's half GEMM; b a contiguous f16 /
 * bf16 tensor (trans_b: [n, k], else [k, n]) with row stride ldb. */
void nn__half_gemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const nn_tensor *b, int64_t ldb, float *c, int64_t ldc);

/* Whether backward has to produce a gradient for input k of nd. */
static inline bool nn__ops_wants(const nn_node *nd, int k) {
    return nd->inputs[k] && nd->inputs[k]->requires_grad;
}

/* Optional f32 argument: NULL is fine, anything else must be a usable f32
 * tensor. */
static inline bool nn__ops_opt_f32(const nn_tensor *t, const char *fn, const char *name) {
    return t == NULL || nn__check_f32(t, fn, name);
}

/* Optional 1-D f32 per-channel argument of length c. */
static inline bool nn__ops_opt_vec(const nn_tensor *t, int64_t c, const char *fn,
                                   const char *name) {
    if (!t) return true;
    if (!nn__check_f32(t, fn, name)) return false;
    if (t->ndim != 1 || t->shape[0] != c) {
        char s[128];
        nn__err(NN_ERR_SHAPE, "%s: %s has shape %s, expected [%lld]", fn, name,
                nn__shape_str(t->shape, t->ndim, s, sizeof s), (long long)c);
        return false;
    }
    return true;
}

/* Sum of each channel over the batch and spatial dims of g [n, c, l]
 * into out[c] (+=). Used for every bias gradient. */
static inline void nn__ops_channel_sum(const float *g, int64_t n, int64_t c, int64_t l,
                                       float *out) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            const float *p = g + (i * c + j) * l;
            float s = 0.0f;
            for (int64_t k = 0; k < l; k++) s += p[k];
            out[j] += s;
        }
}

/* The bias gradient of g [n, c, l]: a new [c] tensor of channel sums in
 * *out (NULL + NN_ERR_NOMEM on failure). */
static inline nn_status nn__ops_bias_grad(const float *g, int64_t n, int64_t c, int64_t l,
                                          nn_tensor **out) {
    *out = nn__zeros(NN_DTYPE_F32, &c, 1);
    if (!*out) return NN_ERR_NOMEM;
    nn__ops_channel_sum(g, n, c, l, nn__f32(*out));
    return NN_OK;
}

/* out[i, c, :] += b[c] for out [n, c, l]. */
static inline void nn__ops_add_bias(float *out, const float *b, int64_t n, int64_t c, int64_t l) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            float *p = out + (i * c + j) * l;
            const float bj = b[j];
            for (int64_t k = 0; k < l; k++) p[k] += bj;
        }
}

#endif /* NN_NN_OPS_INTERNAL_H */
