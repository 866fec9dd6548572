/* Comparisons: eq, ne, lt, le, gt, ge on any supported dtype with NumPy
 * broadcasting, giving a u8 mask of 0/1. No gradient. Same-dtype operands
 * compare in their own type (exact for i64); mixed dtypes compare as double. */
#include "ops_internal.h"

#include <math.h>

typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE } cmpop;

static const char *const cmp_names[] = {"nn_eq", "nn_ne", "nn_lt", "nn_le", "nn_gt", "nn_ge"};

typedef struct {
    cmpop op;
    uint8_t *o;
    const void *a, *b;
    nn_dtype da, db;
} cmp_ctx;

#define CMP_LOOP(E)                                                                                \
    do {                                                                                           \
        for (int64_t i = 0; i < n; i++) {                                                          \
            LOAD_A(x, i *step[1]);                                                                 \
            LOAD_B(y, i *step[2]);                                                                 \
            o[i * step[0]] = (uint8_t)(E);                                                         \
        }                                                                                          \
    } while (0)

#define CMP_SWITCH()                                                                               \
    switch (c->op) {                                                                               \
    case CMP_EQ: CMP_LOOP(x == y); break;                                                          \
    case CMP_NE: CMP_LOOP(x != y); break;                                                          \
    case CMP_LT: CMP_LOOP(x < y); break;                                                           \
    case CMP_LE: CMP_LOOP(x <= y); break;                                                          \
    case CMP_GT: CMP_LOOP(x > y); break;                                                           \
    case CMP_GE: CMP_LOOP(x >= y); break;                                                          \
    }

static double load_any(const void *base, nn_dtype dt, int64_t i) {
    switch (dt) {
    case NN_DTYPE_F32: return ((const float *)base)[i];
    case NN_DTYPE_I64: return (double)((const int64_t *)base)[i];
    default: return ((const uint8_t *)base)[i];
    }
}

static void cmp_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const cmp_ctx *c = vctx;
    uint8_t *o = c->o + off[0];
    if (c->da == c->db && c->da == NN_DTYPE_F32) {
        const float *pa = (const float *)c->a + off[1], *pb = (const float *)c->b + off[2];
#define LOAD_A(v, i) float v = pa[i]
#define LOAD_B(v, i) float v = pb[i]
        CMP_SWITCH()
#undef LOAD_A
#undef LOAD_B
    } else if (c->da == c->db && c->da == NN_DTYPE_I64) {
        const int64_t *pa = (const int64_t *)c->a + off[1], *pb = (const int64_t *)c->b + off[2];
#define LOAD_A(v, i) int64_t v = pa[i]
#define LOAD_B(v, i) int64_t v = pb[i]
        CMP_SWITCH()
#undef LOAD_A
#undef LOAD_B
    } else {
#define LOAD_A(v, i) double v = load_any(c->a, c->da, off[1] + (i))
#define LOAD_B(v, i) double v = load_any(c->b, c->db, off[2] + (i))
        CMP_SWITCH()
#undef LOAD_A
#undef LOAD_B
    }
}

static bool check_cmp_dtype(const nn_tensor *t, const char *fn, const char *name) {
    if (t->dtype == NN_DTYPE_F32 || t->dtype == NN_DTYPE_I64 || t->dtype == NN_DTYPE_U8)
        return true;
    nn__err(NN_ERR_DTYPE, "%s: argument '%s' has unsupported dtype %s", fn, name,
            nn_dtype_name(t->dtype));
    return false;
}

static nn_tensor *compare(cmpop op, nn_tensor *a, nn_tensor *b) {
    const char *fn = cmp_names[op];
    if (!nn__check_tensor(a, fn, "a") || !nn__check_tensor(b, fn, "b")) return NULL;
    if (!check_cmp_dtype(a, fn, "a") || !check_cmp_dtype(b, fn, "b")) return NULL;
    int64_t shape[NN_MAX_DIMS];
    int nd;
    if (!nn__broadcast_shapes(a->shape, a->ndim, b->shape, b->ndim, shape, &nd, fn)) return NULL;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_U8, shape, nd);
    if (!out) return NULL;
    nn__bc it;
    nn__bc_begin(&it, shape, nd);
    nn__bc_add_tensor(&it, out);
    nn__bc_add_tensor(&it, a);
    nn__bc_add_tensor(&it, b);
    nn__bc_done(&it);
    cmp_ctx c = {op, nn__raw_base(out), nn__raw_base(a), nn__raw_base(b), a->dtype, b->dtype};
    nn__bc_run(&it, cmp_row, &c);
    return nn__track(out);
}

nn_tensor *nn_eq(nn_tensor *a, nn_tensor *b) { return compare(CMP_EQ, a, b); }
nn_tensor *nn_ne(nn_tensor *a, nn_tensor *b) { return compare(CMP_NE, a, b); }
nn_tensor *nn_lt(nn_tensor *a, nn_tensor *b) { return compare(CMP_LT, a, b); }
nn_tensor *nn_le(nn_tensor *a, nn_tensor *b) { return compare(CMP_LE, a, b); }
nn_tensor *nn_gt(nn_tensor *a, nn_tensor *b) { return compare(CMP_GT, a, b); }
nn_tensor *nn_ge(nn_tensor *a, nn_tensor *b) { return compare(CMP_GE, a, b); }
