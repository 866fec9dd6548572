/* Gradient checks (central differences, tu_gradcheck) and hand-computed
 * forward values for the elementwise, activation, reduction and join ops:
 * random shapes with broadcasting, size-1 dims, non-square and 0-d inputs. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#define EPS 1e-3
#define ATOL 2e-3
#define RTOL 2e-2

static nn_tensor *leaf(uint64_t seed, const int64_t *shape, int ndim, double lo, double hi) {
    nn_tensor *t = tu_rand(seed, shape, ndim, lo, hi);
    TU_OK(nn_tensor_set_requires_grad(t, true));
    return t;
}

/* ----------------------------------------------------------- binary ops */

typedef nn_tensor *(*bin_fn)(nn_tensor *, nn_tensor *);
static nn_tensor *call_bin(nn_tensor **in, void *ctx) { return ((bin_fn *)ctx)[0](in[0], in[1]); }

typedef struct {
    int64_t a[4], b[4];
    int an, bn;
} shape_pair;

static const shape_pair pairs[] = {
    {{3, 4}, {3, 4}, 2, 2},          /* same shape, non-square */
    {{2, 3, 4}, {4}, 3, 1},          /* row broadcast */
    {{4}, {2, 3, 4}, 1, 3},          /* row broadcast, other side */
    {{2, 1, 4}, {3, 1}, 3, 2},       /* both broadcast */
    {{2, 3}, {0}, 2, 0},             /* 0-d scalar */
    {{0}, {0}, 0, 0},                /* both 0-d */
    {{1, 1}, {3, 1, 2}, 2, 3},       /* size-1 dims */
};

static void check_binary(bin_fn f, double lo_a, double hi_a, double lo_b, double hi_b) {
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        const shape_pair *p = &pairs[k];
        nn_tensor *in[2] = {leaf(10 + k, p->a, p->an, lo_a, hi_a), leaf(20 + k, p->b, p->bn, lo_b, hi_b)};
        tu_gradcheck(call_bin, in, 2, &f, EPS, ATOL, RTOL);
        nn_tensor_free(in[0]);
        nn_tensor_free(in[1]);
    }
}

static void test_grad_add(void **s) { (void)s; check_binary(nn_add, -2, 2, -2, 2); }
static void test_grad_sub(void **s) { (void)s; check_binary(nn_sub, -2, 2, -2, 2); }
static void test_grad_mul(void **s) { (void)s; check_binary(nn_mul, -2, 2, -2, 2); }
static void test_grad_div(void **s) { (void)s; check_binary(nn_div, -2, 2, 0.5, 2); }
static void test_grad_pow(void **s) { (void)s; check_binary(nn_pow, 0.5, 2, -1.5, 1.5); }
static void test_grad_minimum(void **s) { (void)s; check_binary(nn_minimum, -2, 2, -2, 2); }
static void test_grad_maximum(void **s) { (void)s; check_binary(nn_maximum, -2, 2, -2, 2); }

static nn_tensor *call_where(nn_tensor **in, void *ctx) {
    return nn_where((nn_tensor *)ctx, in[0], in[1]);
}

static void test_grad_where(void **s) {
    (void)s;
    int64_t cs[] = {3, 1}, as[] = {3, 4}, bs[] = {4};
    uint8_t cv[] = {1, 0, 1};
    nn_tensor *cond = TU_NN(nn_tensor_from_data(NN_DTYPE_U8, cs, 2, cv));
    nn_tensor *in[2] = {leaf(1, as, 2, -1, 1), leaf(2, bs, 1, -1, 1)};
    tu_gradcheck(call_where, in, 2, cond, EPS, ATOL, RTOL);
    nn_tensor *w = TU_NN(nn_where(cond, in[0], in[1]));
    int64_t idx[] = {1, 2};
    double got, want;
    TU_OK(nn_tensor_get(w, idx, &got));
    TU_OK(nn_tensor_get(in[1], idx + 1, &want));
    assert_true(got == want);
    nn_tensor_free(w);
    nn_tensor_free(cond);
    nn_tensor_free(in[0]);
    nn_tensor_free(in[1]);
}

/* ------------------------------------------------------------ unary ops */

typedef struct {
    int op;
    double p0, p1;
    int dim;
} uctx;

enum { U_ADDS, U_MULS, U_POWS, U_NEG, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_ABS, U_CLAMP, U_RELU,
       U_LEAKY, U_ELU, U_GELU, U_GELUT, U_SILU, U_SIGMOID, U_TANH, U_SOFTPLUS, U_HARDTANH,
       U_SOFTMAX, U_LOGSOFTMAX, U_COUNT };

static nn_tensor *call_unary(nn_tensor **in, void *vctx) {
    const uctx *c = vctx;
    nn_tensor *x = in[0];
    switch (c->op) {
    case U_ADDS: return nn_add_scalar(x, c->p0);
    case U_MULS: return nn_mul_scalar(x, c->p0);
    case U_POWS: return nn_pow_scalar(x, c->p0);
    case U_NEG: return nn_neg(x);
    case U_EXP: return nn_exp(x);
    case U_LOG: return nn_log(x);
    case U_SQRT: return nn_sqrt(x);
    case U_RSQRT: return nn_rsqrt(x);
    case U_ABS: return nn_abs(x);
    case U_CLAMP: return nn_clamp(x, c->p0, c->p1);
    case U_RELU: return nn_relu(x);
    case U_LEAKY: return nn_leaky_relu(x, c->p0);
    case U_ELU: return nn_elu(x, c->p0);
    case U_GELU: return nn_gelu(x, false);
    case U_GELUT: return nn_gelu(x, true);
    case U_SILU: return nn_silu(x);
    case U_SIGMOID: return nn_sigmoid(x);
    case U_TANH: return nn_tanh(x);
    case U_SOFTPLUS: return nn_softplus(x, c->p0, c->p1);
    case U_HARDTANH: return nn_hardtanh(x, c->p0, c->p1);
    case U_SOFTMAX: return nn_softmax(x, c->dim);
    case U_LOGSOFTMAX: return nn_log_softmax(x, c->dim);
    default: return NULL;
    }
}

/* Inputs avoid kinks (|x| > 0.05 for relu-like ops) by construction: values
 * in [lo, hi] pushed away from the given kink points. */
static nn_tensor *leaf_away(uint64_t seed, const int64_t *shape, int ndim, double lo, double hi,
                            double k1, double k2) {
    nn_tensor *t = tu_rand(seed, shape, ndim, lo, hi);
    float *p = nn_tensor_data(t);
    for (int64_t i = 0; i < nn_tensor_numel(t); i++) {
        if (fabs(p[i] - k1) < 0.05) p[i] = (float)(k1 + 0.1);
        if (fabs(p[i] - k2) < 0.05) p[i] = (float)(k2 - 0.1);
    }
    TU_OK(nn_tensor_set_requires_grad(t, true));
    return t;
}

static void check_unary(uctx c, double lo, double hi, double k1, double k2) {
    static const int64_t shapes[][3] = {{3, 5, 0}, {2, 1, 4}, {1, 0, 0}, {0, 0, 0}};
    static const int ndims[] = {2, 3, 1, 0};
    for (int k = 0; k < 4; k++) {
        nn_tensor *x = leaf_away(100 + (uint64_t)k, shapes[k], ndims[k], lo, hi, k1, k2);
        tu_gradcheck(call_unary, &x, 1, &c, EPS, ATOL, RTOL);
        nn_tensor_free(x);
    }
}

static void test_grad_unary(void **s) {
    (void)s;
    check_unary((uctx){U_ADDS, 1.5, 0, 0}, -2, 2, 99, 99);
    check_unary((uctx){U_MULS, -2.5, 0, 0}, -2, 2, 99, 99);
    check_unary((uctx){U_POWS, 3, 0, 0}, -2, 2, 99, 99);
    check_unary((uctx){U_POWS, 0.5, 0, 0}, 0.5, 2, 99, 99);
    check_unary((uctx){U_POWS, 0, 0, 0}, 0.5, 2, 99, 99);
    check_unary((uctx){U_NEG, 0, 0, 0}, -2, 2, 99, 99);
    check_unary((uctx){U_EXP, 0, 0, 0}, -2, 2, 99, 99);
    check_unary((uctx){U_LOG, 0, 0, 0}, 0.5, 3, 99, 99);
    check_unary((uctx){U_SQRT, 0, 0, 0}, 0.5, 3, 99, 99);
    check_unary((uctx){U_RSQRT, 0, 0, 0}, 0.5, 3, 99, 99);
    check_unary((uctx){U_ABS, 0, 0, 0}, -2, 2, 0, 99);
    check_unary((uctx){U_CLAMP, -0.5, 0.7, 0}, -2, 2, -0.5, 0.7);
}

static void test_grad_activations(void **s) {
    (void)s;
    check_unary((uctx){U_RELU, 0, 0, 0}, -2, 2, 0, 99);
    check_unary((uctx){U_LEAKY, 0.1, 0, 0}, -2, 2, 0, 99);
    check_unary((uctx){U_ELU, 1.3, 0, 0}, -2, 2, 0, 99);
    check_unary((uctx){U_GELU, 0, 0, 0}, -3, 3, 99, 99);
    check_unary((uctx){U_GELUT, 0, 0, 0}, -3, 3, 99, 99);
    check_unary((uctx){U_SILU, 0, 0, 0}, -3, 3, 99, 99);
    check_unary((uctx){U_SIGMOID, 0, 0, 0}, -3, 3, 99, 99);
    check_unary((uctx){U_TANH, 0, 0, 0}, -2, 2, 99, 99);
    check_unary((uctx){U_SOFTPLUS, 2, 3, 0}, -3, 3, 1.5, 99);
    check_unary((uctx){U_HARDTANH, -1, 0.5, 0}, -2, 2, -1, 0.5);
}

static void test_grad_softmax(void **s) {
    (void)s;
    int64_t sh[] = {2, 3, 4};
    for (int dim = -3; dim < 3; dim++) {
        nn_tensor *x = leaf(7, sh, 3, -3, 3);
        tu_gradcheck(call_unary, &x, 1, &(uctx){U_SOFTMAX, 0, 0, dim}, EPS, ATOL, RTOL);
        tu_gradcheck(call_unary, &x, 1, &(uctx){U_LOGSOFTMAX, 0, 0, dim}, EPS, ATOL, RTOL);
        nn_tensor_free(x);
    }
    nn_tensor *x0 = leaf(8, NULL, 0, -1, 1); /* 0-d: softmax is 1, log_softmax 0 */
    tu_gradcheck(call_unary, &x0, 1, &(uctx){U_SOFTMAX, 0, 0, 0}, EPS, ATOL, RTOL);
    tu_gradcheck(call_unary, &x0, 1, &(uctx){U_LOGSOFTMAX, 0, 0, -1}, EPS, ATOL, RTOL);
    nn_tensor_free(x0);
}

static void test_softmax_stable(void **s) {
    (void)s;
    int64_t sh[] = {1, 3};
    float v[] = {1000, 1001, 1002};
    nn_tensor *x = tu_tensor(sh, 2, v);
    nn_tensor *y = TU_NN(nn_softmax(x, 1)), *ly = TU_NN(nn_log_softmax(x, -1));
    const float *py = nn_tensor_data(y), *pl = nn_tensor_data(ly);
    double z = exp(-2.0) + exp(-1.0) + 1.0;
    for (int i = 0; i < 3; i++) {
        assert_float_equal(py[i], exp(i - 2.0) / z, 1e-6);
        assert_float_equal(pl[i], (i - 2.0) - log(z), 2e-4); /* f32 ulp at 1000 is 6e-5 */
    }
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_tensor_free(ly);
}

/* ----------------------------------------------------------- reductions */

typedef struct {
    int op; /* 0 sum 1 mean 2 var 3 std 4 amax 5 amin 6 max 7 min */
    int dims[4];
    int ndims;
    bool keepdim;
    int correction;
} rctx;

static nn_tensor *call_reduce(nn_tensor **in, void *vctx) {
    const rctx *c = vctx;
    switch (c->op) {
    case 0: return nn_sum(in[0], c->dims, c->ndims, c->keepdim);
    case 1: return nn_mean(in[0], c->dims, c->ndims, c->keepdim);
    case 2: return nn_var(in[0], c->dims, c->ndims, c->correction, c->keepdim);
    case 3: return nn_std(in[0], c->dims, c->ndims, c->correction, c->keepdim);
    case 4: return nn_amax(in[0], c->dims, c->ndims, c->keepdim);
    case 5: return nn_amin(in[0], c->dims, c->ndims, c->keepdim);
    case 6: return nn_max(in[0], c->dims[0], c->keepdim, NULL);
    default: return nn_min(in[0], c->dims[0], c->keepdim, NULL);
    }
}

static void test_grad_reduce(void **s) {
    (void)s;
    int64_t sh[] = {3, 4, 2};
    static const rctx cases[] = {
        {0, {0}, 0, false, 0}, {0, {1}, 1, true, 0}, {0, {0, 2}, 2, false, 0}, {0, {-1}, 1, false, 0},
        {1, {0}, 0, true, 0},  {1, {1, 0}, 2, false, 0},
        {2, {0}, 0, false, 1}, {2, {1}, 1, true, 1}, {2, {0, 2}, 2, false, 0},
        {3, {0}, 0, false, 1}, {3, {2}, 1, true, 0},
        {4, {0}, 0, false, 0}, {4, {1}, 1, true, 0}, {5, {0, 2}, 2, false, 0},
        {6, {1}, 1, false, 0}, {7, {-1}, 1, true, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* Distinct values so that max/min have a unique winner. */
        nn_tensor *x = TU_NN(nn_arange(0, 24, 1, NN_DTYPE_F32));
        float *p = nn_tensor_data(x);
        for (int i = 0; i < 24; i++) p[i] = (float)((i * 7) % 24) * 0.25f - 3.0f;
        nn_tensor *r = TU_NN(nn_reshape(x, sh, 3));
        nn_tensor *xr = TU_NN(nn_tensor_clone(r));
        TU_OK(nn_tensor_set_requires_grad(xr, true));
        tu_gradcheck(call_reduce, &xr, 1, (void *)&cases[k], EPS, ATOL, RTOL);
        nn_tensor_free(xr);
        nn_tensor_free(r);
        nn_tensor_free(x);
    }
    nn_tensor *x0 = leaf(3, NULL, 0, -1, 1); /* 0-d */
    tu_gradcheck(call_reduce, &x0, 1, &(rctx){0, {0}, 0, false, 0}, EPS, ATOL, RTOL);
    tu_gradcheck(call_reduce, &x0, 1, &(rctx){1, {0}, 1, true, 0}, EPS, ATOL, RTOL);
    nn_tensor_free(x0);
}

static void test_reduce_values(void **s) {
    (void)s;
    int64_t sh[] = {2, 3};
    float v[] = {1, 5, 3, 4, 2, 6};
    nn_tensor *x = tu_tensor(sh, 2, v);
    int d1 = 1, d0 = 0;
    nn_tensor *sum = TU_NN(nn_sum(x, NULL, 0, false));
    assert_float_equal(nn_tensor_item(sum), 21, 0);
    nn_tensor *m = TU_NN(nn_mean(x, &d1, 1, false));
    assert_int_equal(nn_tensor_ndim(m), 1);
    assert_float_equal(((float *)nn_tensor_data(m))[1], 4, 1e-6);
    nn_tensor *var = TU_NN(nn_var(x, &d0, 1, 1, true));
    assert_int_equal(nn_tensor_shape(var)[0], 1);
    assert_float_equal(((float *)nn_tensor_data(var))[0], 4.5, 1e-6); /* (1-4)^2*2/1 */
    nn_tensor *idx = NULL;
    nn_tensor *mx = TU_NN(nn_max(x, 1, false, &idx));
    assert_float_equal(((float *)nn_tensor_data(mx))[0], 5, 0);
    assert_int_equal(((int64_t *)nn_tensor_data(idx))[0], 1);
    assert_int_equal(((int64_t *)nn_tensor_data(idx))[1], 2);
    nn_tensor *am = TU_NN(nn_argmin(x, 0, false));
    assert_int_equal(nn_tensor_dtype(am), NN_DTYPE_I64);
    int64_t want[] = {0, 1, 0};
    assert_memory_equal(nn_tensor_data(am), want, sizeof want);
    /* i64 and u8 inputs: exact comparisons, values keep their dtype. */
    int64_t iv[] = {INT64_MAX - 1, INT64_MAX, 3, -7, 9, 9};
    nn_tensor *xi = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, sh, 2, iv));
    nn_tensor *ai = TU_NN(nn_argmax(xi, 1, true));
    assert_int_equal(nn_tensor_ndim(ai), 2);
    assert_int_equal(((int64_t *)nn_tensor_data(ai))[0], 1);
    assert_int_equal(((int64_t *)nn_tensor_data(ai))[1], 1); /* first of the tie */
    nn_tensor *mi = TU_NN(nn_min(xi, 1, false, NULL));
    assert_int_equal(nn_tensor_dtype(mi), NN_DTYPE_I64);
    assert_int_equal(((int64_t *)nn_tensor_data(mi))[1], -7);
    uint8_t uv[] = {3, 200, 7, 0, 255, 1};
    nn_tensor *xu = TU_NN(nn_tensor_from_data(NN_DTYPE_U8, sh, 2, uv));
    nn_tensor *au = TU_NN(nn_amax(xu, NULL, 0, false));
    assert_int_equal(nn_tensor_dtype(au), NN_DTYPE_U8);
    assert_float_equal(nn_tensor_item(au), 255, 0);
    nn_tensor *tf[] = {x, sum, m, var, idx, mx, am, xi, ai, mi, xu, au};
    for (size_t i = 0; i < sizeof tf / sizeof tf[0]; i++) nn_tensor_free(tf[i]);
}

/* ------------------------------------------------------------ comparisons */

static void test_compare(void **s) {
    (void)s;
    int64_t sa[] = {2, 3}, sb[] = {3};
    float a[] = {1, 2, 3, 3, 2, 1}, b[] = {2, 2, 2};
    nn_tensor *ta = tu_tensor(sa, 2, a), *tb = tu_tensor(sb, 1, b);
    nn_tensor *(*fns[6])(nn_tensor *, nn_tensor *) = {nn_eq, nn_ne, nn_lt, nn_le, nn_gt, nn_ge};
    for (int f = 0; f < 6; f++) {
        nn_tensor *m = TU_NN(fns[f](ta, tb));
        assert_int_equal(nn_tensor_dtype(m), NN_DTYPE_U8);
        const uint8_t *p = nn_tensor_data(m);
        for (int i = 0; i < 6; i++) {
            float x = a[i], y = b[i % 3];
            int want = f == 0 ? x == y : f == 1 ? x != y : f == 2 ? x < y : f == 3 ? x <= y : f == 4 ? x > y : x >= y;
            assert_int_equal(p[i], want);
        }
        nn_tensor_free(m);
    }
    /* i64 exact, and mixed i64/f32. */
    int64_t iv[] = {INT64_MAX, INT64_MAX - 1};
    int64_t s2[] = {2};
    nn_tensor *ti = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, s2, 1, iv));
    nn_tensor *t0 = TU_NN(nn_slice(ti, 0, 0, 1, 1));
    nn_tensor *e = TU_NN(nn_eq(ti, t0));
    assert_int_equal(((uint8_t *)nn_tensor_data(e))[0], 1);
    assert_int_equal(((uint8_t *)nn_tensor_data(e))[1], 0);
    nn_tensor *lt = TU_NN(nn_lt(tb, t0));
    assert_int_equal(((uint8_t *)nn_tensor_data(lt))[0], 1);
    nn_tensor *tf[] = {ta, tb, ti, t0, e, lt};
    for (size_t i = 0; i < sizeof tf / sizeof tf[0]; i++) nn_tensor_free(tf[i]);
}

/* A strided (transposed) operand goes through the general iterator path. */
static void test_strided_operand(void **s) {
    (void)s;
    int64_t sh[] = {3, 4};
    nn_tensor *a = tu_rand(1, sh, 2, -1, 1), *b = tu_rand(2, sh, 2, -1, 1);
    nn_tensor *bt = TU_NN(nn_transpose(b, 0, 1));          /* [4,3] view */
    nn_tensor *btt = TU_NN(nn_transpose(bt, 0, 1));        /* [3,4] non-contiguous view */
    nn_tensor *sum = TU_NN(nn_add(a, btt));
    nn_tensor *ref = TU_NN(nn_add(a, b));
    tu_assert_close(sum, ref, 0, 0, "strided add");
    nn_tensor *bc = TU_NN(nn_tensor_contiguous(bt));
    nn_tensor *sum2 = TU_NN(nn_mul(bt, bc));
    nn_tensor *ref2 = TU_NN(nn_mul(bc, bc));
    tu_assert_close(sum2, ref2, 0, 0, "strided mul");
    nn_tensor *tf[] = {a, b, bt, btt, sum, ref, bc, sum2, ref2};
    for (size_t i = 0; i < sizeof tf / sizeof tf[0]; i++) nn_tensor_free(tf[i]);
}


/* ------------------------------------------------------------------ join */

static nn_tensor *call_concat(nn_tensor **in, void *ctx) { return nn_concat(in, 3, *(int *)ctx); }
static nn_tensor *call_stack(nn_tensor **in, void *ctx) { return nn_stack(in, 3, *(int *)ctx); }

static void test_grad_concat_stack(void **s) {
    (void)s;
    for (int dim = -3; dim < 3; dim++) {
        int d = dim < 0 ? dim + 3 : dim;
        int64_t sh[3][3] = {{2, 3, 2}, {2, 3, 2}, {2, 3, 2}};
        sh[1][d] = 1; /* sizes differ along the concat dim */
        sh[2][d] = 3;
        nn_tensor *in[3];
        for (int k = 0; k < 3; k++) in[k] = leaf(30 + (uint64_t)k, sh[k], 3, -1, 1);
        tu_gradcheck(call_concat, in, 3, &dim, EPS, ATOL, RTOL);
        for (int k = 0; k < 3; k++) nn_tensor_free(in[k]);
    }
    for (int dim = -4; dim < 4; dim++) {
        int64_t sh[] = {2, 1, 3};
        nn_tensor *in[3];
        for (int k = 0; k < 3; k++) in[k] = leaf(40 + (uint64_t)k, sh, 3, -1, 1);
        tu_gradcheck(call_stack, in, 3, &dim, EPS, ATOL, RTOL);
        for (int k = 0; k < 3; k++) nn_tensor_free(in[k]);
    }
    /* Stacking 0-d tensors gives a 1-D tensor; concat keeps i64 data. */
    nn_tensor *z[3];
    for (int k = 0; k < 3; k++) z[k] = leaf(50 + (uint64_t)k, NULL, 0, -1, 1);
    int zero = 0;
    tu_gradcheck(call_stack, z, 3, &zero, EPS, ATOL, RTOL);
    for (int k = 0; k < 3; k++) nn_tensor_free(z[k]);
    int64_t s2[] = {2};
    int64_t v1[] = {1, 2}, v2[] = {3, 4};
    nn_tensor *ia[2] = {TU_NN(nn_tensor_from_data(NN_DTYPE_I64, s2, 1, v1)),
                        TU_NN(nn_tensor_from_data(NN_DTYPE_I64, s2, 1, v2))};
    nn_tensor *c = TU_NN(nn_concat(ia, 2, 0));
    int64_t want[] = {1, 2, 3, 4};
    assert_memory_equal(nn_tensor_data(c), want, sizeof want);
    nn_tensor_free(c);
    nn_tensor_free(ia[0]);
    nn_tensor_free(ia[1]);
}

typedef struct {
    int dim;
    nn_tensor *index;
} ictx;

static nn_tensor *call_index_select(nn_tensor **in, void *vctx) {
    const ictx *c = vctx;
    return nn_index_select(in[0], c->dim, c->index);
}
static nn_tensor *call_gather(nn_tensor **in, void *vctx) {
    const ictx *c = vctx;
    return nn_gather(in[0], c->dim, c->index);
}

static void test_grad_index(void **s) {
    (void)s;
    int64_t sh[] = {3, 4, 2};
    int64_t iv[] = {2, 0, 2, 1, 2};
    int64_t is[] = {5};
    nn_tensor *idx = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, is, 1, iv));
    for (int dim = 0; dim < 3; dim++) {
        nn_tensor *x = leaf(60, sh, 3, -1, 1);
        ictx c = {dim, idx};
        if (dim == 2) { /* dim of size 2: indices must stay below 2 */
            int64_t iv2[] = {1, 0, 1};
            int64_t is2[] = {3};
            c.index = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, is2, 1, iv2));
        }
        tu_gradcheck(call_index_select, &x, 1, &c, EPS, ATOL, RTOL);
        if (c.index != idx) nn_tensor_free(c.index);
        nn_tensor_free(x);
    }
    nn_tensor_free(idx);
    /* gather along dim 1 with a smaller index tensor, repeated positions. */
    int64_t gs[] = {2, 3, 2};
    int64_t gv[] = {0, 3, 3, 1, 2, 2, 1, 1, 0, 0, 3, 2};
    nn_tensor *gidx = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, gs, 3, gv));
    nn_tensor *x = leaf(61, sh, 3, -1, 1);
    int64_t sh2[] = {3, 4, 2};
    (void)sh2;
    ictx c = {1, gidx};
    tu_gradcheck(call_gather, &x, 1, &c, EPS, ATOL, RTOL);
    nn_tensor *gout = TU_NN(nn_gather(x, 1, gidx));
    int64_t pos[] = {1, 2, 1}, src[] = {1, 2, 1}; /* index[1][2][1] = 2 */
    double got, want;
    TU_OK(nn_tensor_get(gout, pos, &got));
    TU_OK(nn_tensor_get(x, src, &want));
    assert_true(got == want);
    nn_tensor_free(gout);
    nn_tensor_free(x);
    nn_tensor_free(gidx);
}

typedef struct {
    int64_t pads[6];
    int npads;
} pctx;

static nn_tensor *call_pad(nn_tensor **in, void *vctx) {
    const pctx *c = vctx;
    return nn_pad(in[0], c->pads, c->npads, 0.5);
}

static void test_grad_pad(void **s) {
    (void)s;
    int64_t sh[] = {2, 3, 4};
    static const pctx cases[] = {
        {{1, 2}, 2}, {{0, 1, 2, 0}, 4}, {{1, 1, 1, 1, 1, 1}, 6}, {{-1, 2, 1, -2}, 4}, {{0}, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nn_tensor *x = leaf(70, sh, 3, -1, 1);
        tu_gradcheck(call_pad, &x, 1, (void *)&cases[k], EPS, ATOL, RTOL);
        nn_tensor_free(x);
    }
    int64_t s1[] = {2};
    float v[] = {1, 2};
    nn_tensor *x = tu_tensor(s1, 1, v);
    int64_t p[] = {1, 2};
    nn_tensor *y = TU_NN(nn_pad(x, p, 2, -1));
    float want[] = {-1, 1, 2, -1, -1};
    assert_int_equal(nn_tensor_numel(y), 5);
    assert_memory_equal(nn_tensor_data(y), want, sizeof want);
    nn_tensor_free(y);
    nn_tensor_free(x);
}


/* Every op family on a non-contiguous view gives the same result as on its
 * contiguous copy (the reference). */
static void test_views_match_copies(void **s) {
    (void)s;
    nn_scope *sc = TU_NN(nn_scope_begin());
    int64_t sh[] = {4, 3, 5};
    nn_tensor *base = tu_rand(9, sh, 3, 0.1, 2);
    nn_tensor *v = TU_NN(nn_transpose(base, 0, 2)); /* [5,3,4], strided */
    nn_tensor *c = TU_NN(nn_tensor_contiguous(v));
    assert_false(nn_tensor_is_contiguous(v));
    int d02[] = {0, 2};
    int64_t pads[] = {1, 0, 0, 2};
    int64_t iv[] = {2, 0};
    nn_tensor *idx = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, (int64_t[]){2}, 1, iv));
    for (int k = 0; k < 12; k++) {
        nn_tensor *r[2];
        for (int j = 0; j < 2; j++) {
            nn_tensor *x = j ? c : v;
            switch (k) {
            case 0: r[j] = nn_exp(x); break;
            case 1: r[j] = nn_gelu(x, false); break;
            case 2: r[j] = nn_sum(x, d02, 2, false); break;
            case 3: r[j] = nn_var(x, d02, 2, 1, true); break;
            case 4: r[j] = nn_amax(x, d02 + 1, 1, false); break;
            case 5: r[j] = nn_argmax(x, 1, false); break;
            case 6: r[j] = nn_softmax(x, 0); break;
            case 7: r[j] = nn_concat((nn_tensor *[]){x, x}, 2, 1); break;
            case 8: r[j] = nn_index_select(x, 2, idx); break;
            case 9: r[j] = nn_pad(x, pads, 4, 3.0); break;
            case 10: r[j] = nn_maximum(x, c); break;
            default: r[j] = nn_le(x, c); break;
            }
            TU_NN(r[j]);
        }
        tu_assert_close(r[0], r[1], 1e-6, 1e-7, "view vs copy");
    }
    TU_OK(nn_scope_end(sc));
}

/* Empty tensors: elementwise results are empty, sums are 0, means NaN. */
static void test_empty(void **s) {
    (void)s;
    nn_scope *sc = TU_NN(nn_scope_begin());
    int64_t e[] = {0, 3}, r[] = {3};
    nn_tensor *a = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, e, 2)), *b = TU_NN(nn_tensor_ones(NN_DTYPE_F32, r, 1));
    nn_tensor *y = TU_NN(nn_add(a, b));
    assert_int_equal(nn_tensor_numel(y), 0);
    assert_int_equal(nn_tensor_shape(y)[1], 3);
    assert_int_equal(nn_tensor_numel(TU_NN(nn_exp(a))), 0);
    assert_float_equal(nn_tensor_item(TU_NN(nn_sum(a, NULL, 0, false))), 0, 0);
    int d0 = 0;
    nn_tensor *m = TU_NN(nn_mean(a, &d0, 1, false));
    assert_int_equal(nn_tensor_numel(m), 3);
    assert_true(isnan(((float *)nn_tensor_data(m))[0]));
    TU_OK(nn_scope_end(sc));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_add),        cmocka_unit_test(test_grad_sub),
        cmocka_unit_test(test_grad_mul),        cmocka_unit_test(test_grad_div),
        cmocka_unit_test(test_grad_pow),        cmocka_unit_test(test_grad_minimum),
        cmocka_unit_test(test_grad_maximum),    cmocka_unit_test(test_grad_where),
        cmocka_unit_test(test_grad_unary),      cmocka_unit_test(test_grad_activations),
        cmocka_unit_test(test_grad_softmax),    cmocka_unit_test(test_softmax_stable),
        cmocka_unit_test(test_grad_reduce),     cmocka_unit_test(test_reduce_values),
        cmocka_unit_test(test_compare),         cmocka_unit_test(test_strided_operand),
        cmocka_unit_test(test_grad_concat_stack), cmocka_unit_test(test_grad_index),
        cmocka_unit_test(test_grad_pad),        cmocka_unit_test(test_views_match_copies),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
