/* nn_matmul and nn_linear: gradcheck, PyTorch golden values, errors. */
#include "nn_testhelp.h"

/* ------------------------------------------------------------- matmul */

static nn_tensor *f_matmul(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_matmul(in[0], in[1]);
}

typedef struct {
    int an, bn;
    int64_t a[4], b[4];
    int on;
    int64_t out[4];
} mm_case;

static const mm_case mm_cases[] = {
    {1, 1, {4}, {4}, 0, {0}},                              /* dot */
    {2, 1, {3, 4}, {4}, 1, {3}},                           /* matrix-vector */
    {1, 2, {4}, {4, 5}, 1, {5}},                           /* vector-matrix */
    {2, 2, {3, 4}, {4, 5}, 2, {3, 5}},                     /* plain */
    {3, 2, {2, 3, 4}, {4, 5}, 3, {2, 3, 5}},               /* batch x matrix */
    {2, 3, {3, 4}, {2, 4, 5}, 3, {2, 3, 5}},               /* matrix x batch */
    {4, 3, {2, 1, 3, 4}, {3, 4, 2}, 4, {2, 3, 3, 2}},      /* broadcast batch */
    {1, 3, {4}, {2, 4, 3}, 2, {2, 3}},                     /* vector x batch */
    {3, 1, {2, 3, 4}, {4}, 2, {2, 3}},                     /* batch x vector */
    {3, 3, {1, 2, 3}, {3, 3, 2}, 3, {3, 2, 2}},            /* batch broadcast from 1 */
};

static void test_matmul_grad(void **s) {
    (void)s;
    for (size_t c = 0; c < sizeof mm_cases / sizeof mm_cases[0]; c++) {
        const mm_case *k = &mm_cases[c];
        nn_tensor *in[2] = {th_param(10 + c, k->a, k->an), th_param(20 + c, k->b, k->bn)};
        nn_tensor *out = TU_NN(nn_matmul(in[0], in[1]));
        assert_int_equal(nn_tensor_ndim(out), k->on);
        for (int d = 0; d < k->on; d++) assert_int_equal(nn_tensor_shape(out)[d], k->out[d]);
        nn_tensor_free(out);
        tu_gradcheck(f_matmul, in, 2, NULL, 1e-2, 2e-3, 1e-2);
        th_free_all(in, 2);
    }
}

/* A non-contiguous operand (a transposed view) gives the same product. */
static void test_matmul_transposed_view(void **s) {
    (void)s;
    int64_t as[] = {4, 3}, bs[] = {4, 5};
    nn_tensor *a = tu_rand(1, as, 2, -1, 1), *b = tu_rand(2, bs, 2, -1, 1);
    nn_tensor *at = TU_NN(nn_transpose(a, 0, 1));
    nn_tensor *atc = TU_NN(nn_tensor_contiguous(at));
    nn_tensor *r1 = TU_NN(nn_matmul(at, b)), *r2 = TU_NN(nn_matmul(atc, b));
    tu_assert_close(r1, r2, 1e-6, 1e-6, "transposed view");
    /* and against a plain triple loop */
    float *A = nn_tensor_data(a), *B = nn_tensor_data(b);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) {
            double ref = 0;
            for (int k = 0; k < 4; k++) ref += (double)A[k * 3 + i] * B[k * 5 + j];
            double got;
            int64_t idx[2] = {i, j};
            TU_OK(nn_tensor_get(r1, idx, &got));
            assert_true(fabs(got - ref) < 1e-5);
        }
    nn_tensor *objs[] = {a, b, at, atc, r1, r2};
    th_free_all(objs, 6);
}

static void test_matmul_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_nn.txt");
    char cs[64], nm[80];
    int k;
    for (k = 0;; k++) {
        snprintf(cs, sizeof cs, "matmul_%d", k);
        snprintf(nm, sizeof nm, "%s_out", cs);
        if (!tu_golden_has(g, nm)) break;
        th_golden_case(g, cs, 2, f_matmul, NULL, 1e-5, 1e-5);
    }
    assert_true(k >= 5);
    tu_golden_close(g);
}

static void test_matmul_errors(void **s) {
    (void)s;
    int64_t s34[] = {3, 4}, s56[] = {5, 6}, s234[] = {2, 3, 4}, s345[] = {3, 4, 5};
    nn_tensor *a = tu_rand(1, s34, 2, -1, 1), *b = tu_rand(2, s56, 2, -1, 1);
    nn_tensor *c = tu_rand(3, s234, 3, -1, 1), *d = tu_rand(4, s345, 3, -1, 1);
    nn_tensor *sc = TU_NN(nn_tensor_full(NN_DTYPE_F32, NULL, 0, 1.0));
    nn_tensor *ia = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, s34, 2));
    assert_null(nn_matmul(a, b));
    tu_expect_error(NN_ERR_SHAPE, "nn_matmul: shapes [3,4] and [5,6] are incompatible");
    assert_null(nn_matmul(c, d)); /* batch 2 vs 3 */
    tu_expect_error(NN_ERR_SHAPE, "nn_matmul");
    assert_null(nn_matmul(sc, a));
    tu_expect_error(NN_ERR_SHAPE, "nn_matmul: both arguments need at least 1 dim");
    assert_null(nn_matmul(ia, a));
    tu_expect_error(NN_ERR_DTYPE, "nn_matmul: argument 'a' has dtype i64");
    assert_null(nn_matmul(NULL, a));
    tu_expect_error(NN_ERR_NULL, "nn_matmul");
    nn_tensor *objs[] = {a, b, c, d, sc, ia};
    th_free_all(objs, 6);
}

/* ------------------------------------------------------------- linear */

static nn_tensor *f_linear(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_linear(in[0], in[1], in[2]);
}

static void test_linear_grad(void **s) {
    (void)s;
    int64_t xs3[] = {2, 3, 4}, xs1[] = {4}, ws[] = {5, 4}, bs[] = {5};
    for (int v = 0; v < 3; v++) {
        nn_tensor *in[3] = {v == 1 ? th_param(1, xs1, 1) : th_param(1, xs3, 3), th_param(2, ws, 2),
                            v == 2 ? NULL : th_param(3, bs, 1)};
        tu_gradcheck(f_linear, in, 3, NULL, 1e-2, 2e-3, 1e-2);
        th_free_all(in, 3);
    }
}

static void test_linear_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_nn.txt");
    char cs[64], nm[80];
    int k;
    for (k = 0;; k++) {
        snprintf(cs, sizeof cs, "linear_%d", k);
        snprintf(nm, sizeof nm, "%s_out", cs);
        if (!tu_golden_has(g, nm)) break;
        th_golden_case(g, cs, 3, f_linear, NULL, 1e-5, 1e-5);
    }
    assert_true(k >= 2);
    tu_golden_close(g);
}

static void test_linear_errors(void **s) {
    (void)s;
    int64_t xs[] = {2, 4}, ws[] = {5, 4}, w1[] = {4}, bad_b[] = {4}, wbad[] = {5, 3};
    nn_tensor *x = tu_rand(1, xs, 2, -1, 1), *w = tu_rand(2, ws, 2, -1, 1);
    nn_tensor *wv = tu_rand(3, w1, 1, -1, 1), *b = tu_rand(4, bad_b, 1, -1, 1);
    nn_tensor *wb = tu_rand(5, wbad, 2, -1, 1);
    assert_null(nn_linear(x, wv, NULL));
    tu_expect_error(NN_ERR_SHAPE, "nn_linear: w must be 2-D");
    assert_null(nn_linear(x, wb, NULL));
    tu_expect_error(NN_ERR_SHAPE, "nn_linear: x [2,4] does not end in in_features = 3");
    assert_null(nn_linear(x, w, b));
    tu_expect_error(NN_ERR_SHAPE, "nn_linear: b has shape [4], expected [5]");
    assert_null(nn_linear(x, NULL, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_linear");
    nn_tensor *objs[] = {x, w, wv, b, wb};
    th_free_all(objs, 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_grad),   cmocka_unit_test(test_matmul_transposed_view),
        cmocka_unit_test(test_matmul_golden), cmocka_unit_test(test_matmul_errors),
        cmocka_unit_test(test_linear_grad),   cmocka_unit_test(test_linear_golden),
        cmocka_unit_test(test_linear_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
