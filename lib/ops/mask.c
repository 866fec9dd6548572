/* Mask ops: masked_fill, masked_select, one_hot and comparisons with a
 * scalar (eq_scalar ... ge_scalar, giving the same u8 0/1 masks as the
 * tensor comparisons). Forward and backward side by side. */
#include "nn_ops_internal.h"
#include "ops_internal.h"

#include <math.h>
#include <string.h>

static bool any_dtype(const nn_tensor *t, const char *fn, const char *name) {
    if (t->dtype == NN_DTYPE_F32 || t->dtype == NN_DTYPE_I64 || t->dtype == NN_DTYPE_U8)
        return true;
    nn__err(NN_ERR_DTYPE, "%s: argument '%s' has unsupported dtype %s", fn, name,
            nn_dtype_name(t->dtype));
    return false;
}

static bool u8_mask(const nn_tensor *m, const char *fn, const char *name) {
    if (m->dtype == NN_DTYPE_U8) return true;
    nn__err(NN_ERR_DTYPE, "%s: argument '%s' has dtype %s, expected u8", fn, name,
            nn_dtype_name(m->dtype));
    return false;
}

/* --------------------------------------------------------- masked_fill */

typedef struct {
    void *o;
    const void *x;
    const uint8_t *m;
    nn_dtype dt;
    double value;
    bool grad; /* backward: o = x (g) where !m, else 0 */
} fill_ctx;

/* operands: 0 out, 1 x, 2 mask */
static void fill_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const fill_ctx *c = vctx;
    const uint8_t *m = c->m + off[2];
    switch (c->dt) {
    case NN_DTYPE_F32: {
        float *o = (float *)c->o + off[0];
        const float *x = (const float *)c->x + off[1];
        const float v = c->grad ? 0.0f : (float)c->value;
        for (int64_t i = 0; i < n; i++) o[i * step[0]] = m[i * step[2]] ? v : x[i * step[1]];
        break;
    }
    case NN_DTYPE_I64: {
        int64_t *o = (int64_t *)c->o + off[0];
        const int64_t *x = (const int64_t *)c->x + off[1];
        int64_t v;
        nn__store_elem(NN_DTYPE_I64, &v, 0, c->value); /* saturated */
        for (int64_t i = 0; i < n; i++) o[i * step[0]] = m[i * step[2]] ? v : x[i * step[1]];
        break;
    }
    default: {
        uint8_t *o = (uint8_t *)c->o + off[0];
        const uint8_t *x = (const uint8_t *)c->x + off[1];
        uint8_t v;
        nn__store_elem(NN_DTYPE_U8, &v, 0, c->value);
        for (int64_t i = 0; i < n; i++) o[i * step[0]] = m[i * step[2]] ? v : x[i * step[1]];
        break;
    }
    }
}

static void run_fill(nn_tensor *out, const nn_tensor *x, const nn_tensor *mask, double value,
                     bool grad) {
    nn__bc it;
    nn__bc_begin(&it, out->shape, out->ndim);
    nn__bc_add_tensor(&it, out);
    nn__bc_add_tensor(&it, x);
    nn__bc_add_tensor(&it, mask);
    nn__bc_done(&it);
    fill_ctx c = {nn__raw_base(out), nn__raw_base(x), nn__raw_base(mask), out->dtype, value, grad};
    nn__bc_run(&it, fill_row, &c);
}

/* dx = g where the mask is 0 */
static nn_status masked_fill_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    gin[0] = nn__tensor_new(NN_DTYPE_F32, gout->shape, gout->ndim);
    if (!gin[0]) return NN_ERR_NOMEM;
    run_fill(gin[0], gout, nd->inputs[1], 0.0, true);
    return NN_OK;
}

nn_tensor *nn_masked_fill(nn_tensor *x, nn_tensor *mask, double value) {
    NN__PROF_OP("nn_masked_fill");
    const char *fn = "nn_masked_fill";
    char s1[128], s2[128];
    if (!nn__check_tensor(x, fn, "x") || !nn__check_tensor(mask, fn, "mask")) return NULL;
    if (!any_dtype(x, fn, "x") || !u8_mask(mask, fn, "mask")) return NULL;
    int64_t shape[NN_MAX_DIMS];
    int nd;
    if (!nn__broadcast_shapes(x->shape, x->ndim, mask->shape, mask->ndim, shape, &nd, fn))
        return NULL;
    if (nd != x->ndim || memcmp(shape, x->shape, sizeof(int64_t) * (size_t)nd) != 0)
        return NN__FAIL(NN_ERR_SHAPE, "%s: mask %s must broadcast to x %s without growing it", fn,
                        nn__shape_str(mask->shape, mask->ndim, s1, sizeof s1),
                        nn__shape_str(x->shape, x->ndim, s2, sizeof s2));
    nn_tensor *out = nn__tensor_new(x->dtype, x->shape, x->ndim);
    if (!out) return NULL;
    run_fill(out, x, mask, value, false);
    nn_tensor *in[2] = {x, mask};
    out = nn__ops_record(out, fn, masked_fill_backward, in, 2, NULL);
    return nn__track(out);
}

/* -------------------------------------------------------- masked_select */

/* saved: none; inputs x, mask; the broadcast shape is the node's
 * i[0..ndim), i[15] = ndim. Backward scatters g to the broadcast shape and
 * sums it down to x's shape. */
typedef struct {
    void *o;
    const void *x;
    const uint8_t *m;
    size_t esz;
    int64_t k; /* elements written so far */
    bool scatter;
} sel_ctx;

/* operands: 0 x (or the scatter target), 1 mask */
static void sel_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    sel_ctx *c = vctx;
    const uint8_t *m = c->m + off[1];
    for (int64_t i = 0; i < n; i++) {
        if (!m[i * step[1]]) continue;
        char *px = (char *)c->x + (size_t)(off[0] + i * step[0]) * c->esz;
        char *po = (char *)c->o + (size_t)c->k * c->esz;
        if (c->scatter)
            memcpy(px, po, c->esz); /* x is the writable target here */
        else
            memcpy(po, px, c->esz);
        c->k++;
    }
}

static void run_select(const int64_t *shape, int nd, const nn_tensor *x, const nn_tensor *m,
                       sel_ctx *c) {
    nn__bc it;
    nn__bc_begin(&it, shape, nd);
    nn__bc_add_tensor(&it, x);
    nn__bc_add_tensor(&it, m);
    nn__bc_done(&it);
    nn__bc_run(&it, sel_row, c);
}

static nn_status masked_select_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *x = nd->inputs[0], *m = nd->inputs[1];
    const int bnd = (int)nd->i[15];
    int64_t shape[NN_MAX_DIMS];
    for (int d = 0; d < bnd; d++) shape[d] = nd->i[d];
    nn_tensor *full = nn__zeros(NN_DTYPE_F32, shape, bnd);
    if (!full) return NN_ERR_NOMEM;
    sel_ctx c = {nn__f32(gout), nn__raw_base(full), nn__raw_base(m), sizeof(float), 0, true};
    run_select(shape, bnd, full, m, &c);
    if (nn__same_shape(full, x)) {
        gin[0] = full;
        return NN_OK;
    }
    gin[0] = nn__sum_to_shape(full, x->shape, x->ndim);
    nn__tensor_release(full);
    return gin[0] ? NN_OK : NN_ERR_NOMEM;
}

nn_tensor *nn_masked_select(nn_tensor *x, nn_tensor *mask) {
    NN__PROF_OP("nn_masked_select");
    const char *fn = "nn_masked_select";
    if (!nn__check_tensor(x, fn, "x") || !nn__check_tensor(mask, fn, "mask")) return NULL;
    if (!any_dtype(x, fn, "x") || !u8_mask(mask, fn, "mask")) return NULL;
    int64_t shape[NN_MAX_DIMS];
    int nd;
    if (!nn__broadcast_shapes(x->shape, x->ndim, mask->shape, mask->ndim, shape, &nd, fn))
        return NULL;
    if (nd > 15) return NN__FAIL(NN_ERR_SHAPE, "%s: too many dims", fn);
    /* count first: the result's length */
    int64_t count = 0;
    {
        int64_t numel = 1;
        for (int d = 0; d < nd; d++) numel *= shape[d];
        if (numel > 0) {
            /* walk by flat index over the broadcast mask */
            int64_t str[NN_MAX_DIMS] = {0}, idx[NN_MAX_DIMS] = {0}, o = mask->offset;
            for (int d = 0; d < nd; d++) {
                const int md = d - (nd - mask->ndim);
                str[d] = md < 0 || mask->shape[md] == 1 ? 0 : mask->strides[md];
            }
            const uint8_t *mp = nn__raw_base(mask);
            for (int64_t i = 0; i < numel; i++) {
                count += mp[o] != 0;
                for (int d = nd - 1; d >= 0; d--) {
                    idx[d]++;
                    o += str[d];
                    if (idx[d] < shape[d]) break;
                    o -= str[d] * idx[d];
                    idx[d] = 0;
                }
            }
        }
    }
    nn_tensor *out = nn__tensor_new(x->dtype, &count, 1);
    if (!out) return NULL;
    sel_ctx c = {nn__raw_base(out), nn__raw_base(x), nn__raw_base(mask), nn_dtype_size(x->dtype),
                 0, false};
    run_select(shape, nd, x, mask, &c);
    nn_node *node = NULL;
    nn_tensor *in[2] = {x, mask};
    out = nn__ops_record(out, fn, masked_select_backward, in, 2, &node);
    if (node) {
        for (int d = 0; d < nd; d++) node->i[d] = shape[d];
        node->i[15] = nd;
    }
    return nn__track(out);
}

/* ---------------------------------------------------------------- one_hot */

nn_tensor *nn_one_hot(nn_tensor *indices, int64_t num_classes) {
    NN__PROF_OP("nn_one_hot");
    const char *fn = "nn_one_hot";
    if (!nn__check_tensor(indices, fn, "indices")) return NULL;
    if (indices->dtype != NN_DTYPE_I64)
        return NN__FAIL(NN_ERR_DTYPE, "%s: indices has dtype %s, expected i64", fn,
                        nn_dtype_name(indices->dtype));
    if (indices->ndim >= NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_SHAPE, "%s: indices has %d dims, at most %d", fn, indices->ndim,
                        NN_MAX_DIMS - 1);
    nn_tensor *ic = nn__contig(indices);
    if (!ic) return NULL;
    const int64_t *ix = nn__i64(ic), n = ic->numel;
    int64_t lo = 0, hi = -1;
    for (int64_t i = 0; i < n; i++) {
        if (ix[i] < lo) lo = ix[i];
        if (ix[i] > hi) hi = ix[i];
    }
    if (num_classes < 0) {
        if (n == 0) {
            nn__tensor_release(ic);
            return NN__FAIL(NN_ERR_INVALID,
                            "%s: num_classes -1 (inferred) needs at least one index", fn);
        }
        num_classes = hi + 1;
    }
    if (lo < 0 || hi >= num_classes) {
        nn__tensor_release(ic);
        return NN__FAIL(NN_ERR_RANGE, "%s: index %lld is out of range for %lld classes", fn,
                        (long long)(lo < 0 ? lo : hi), (long long)num_classes);
    }
    int64_t shape[NN_MAX_DIMS];
    memcpy(shape, indices->shape, sizeof(int64_t) * (size_t)indices->ndim);
    shape[indices->ndim] = num_classes;
    nn_tensor *out = nn__zeros(NN_DTYPE_I64, shape, indices->ndim + 1);
    if (out)
        for (int64_t i = 0; i < n; i++) nn__i64(out)[i * num_classes + ix[i]] = 1;
    nn__tensor_release(ic);
    return nn__track(out);
}

/* ------------------------------------------------- scalar comparisons */

typedef enum { SC_EQ, SC_NE, SC_LT, SC_LE, SC_GT, SC_GE } scop;
static const char *const sc_names[] = {"nn_eq_scalar", "nn_ne_scalar", "nn_lt_scalar",
                                       "nn_le_scalar", "nn_gt_scalar", "nn_ge_scalar"};

static inline bool sc_test(scop op, double x, double s) {
    switch (op) {
    case SC_EQ: return x == s;
    case SC_NE: return x != s;
    case SC_LT: return x < s;
    case SC_LE: return x <= s;
    case SC_GT: return x > s;
    default: return x >= s;
    }
}

/* x (i64) op s, exact for every i64 x and every double s. */
static inline bool sc_test_i64(scop op, int64_t x, double s) {
    if (s != s) return op == SC_NE; /* NaN */
    /* compare x with s exactly: s >= 2^63 or < -2^63 is beyond every x */
    if (s >= 9223372036854775808.0) return op == SC_NE || op == SC_LT || op == SC_LE;
    if (s < -9223372036854775808.0) return op == SC_NE || op == SC_GT || op == SC_GE;
    const double fl = floor(s);
    const int64_t f = (int64_t)fl; /* in range now */
    const bool integral = fl == s;
    /* x < s  <=> x <= floor(s) when s is not integral, x < s when it is */
    switch (op) {
    case SC_EQ: return integral && x == f;
    case SC_NE: return !(integral && x == f);
    case SC_LT: return integral ? x < f : x <= f;
    case SC_LE: return x <= f;
    case SC_GT: return x > f;
    default: return integral ? x >= f : x > f;
    }
}

typedef struct {
    scop op;
    uint8_t *o;
    const void *x;
    nn_dtype dt;
    double s;
} sc_ctx;

static void sc_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const sc_ctx *c = vctx;
    uint8_t *o = c->o + off[0];
    if (c->dt == NN_DTYPE_F32) {
        const float *x = (const float *)c->x + off[1];
        /* PyTorch compares a float tensor with the scalar rounded to float */
        const double s = (double)(float)c->s;
        for (int64_t i = 0; i < n; i++) o[i * step[0]] = sc_test(c->op, x[i * step[1]], s);
    } else if (c->dt == NN_DTYPE_I64) {
        const int64_t *x = (const int64_t *)c->x + off[1];
        for (int64_t i = 0; i < n; i++) o[i * step[0]] = sc_test_i64(c->op, x[i * step[1]], c->s);
    } else {
        const uint8_t *x = (const uint8_t *)c->x + off[1];
        for (int64_t i = 0; i < n; i++) o[i * step[0]] = sc_test(c->op, x[i * step[1]], c->s);
    }
}

static nn_tensor *compare_scalar(scop op, nn_tensor *a, double s) {
    const char *fn = sc_names[op];
    if (!nn__check_tensor(a, fn, "a") || !any_dtype(a, fn, "a")) return NULL;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_U8, a->shape, a->ndim);
    if (!out) return NULL;
    nn__bc it;
    nn__bc_begin(&it, a->shape, a->ndim);
    nn__bc_add_tensor(&it, out);
    nn__bc_add_tensor(&it, a);
    nn__bc_done(&it);
    sc_ctx c = {op, nn__raw_base(out), nn__raw_base(a), a->dtype, s};
    nn__bc_run(&it, sc_row, &c);
    return nn__track(out);
}

nn_tensor *nn_eq_scalar(nn_tensor *a, double s) { return compare_scalar(SC_EQ, a, s); }
nn_tensor *nn_ne_scalar(nn_tensor *a, double s) { return compare_scalar(SC_NE, a, s); }
nn_tensor *nn_lt_scalar(nn_tensor *a, double s) { return compare_scalar(SC_LT, a, s); }
nn_tensor *nn_le_scalar(nn_tensor *a, double s) { return compare_scalar(SC_LE, a, s); }
nn_tensor *nn_gt_scalar(nn_tensor *a, double s) { return compare_scalar(SC_GT, a, s); }
nn_tensor *nn_ge_scalar(nn_tensor *a, double s) { return compare_scalar(SC_GE, a, s); }
