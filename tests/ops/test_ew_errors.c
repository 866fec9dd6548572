/* Error paths of the elementwise, activation, reduction, comparison and join
 * ops (status + message naming the function), root-cause errors through a
 * chain, and an out-of-memory sweep over a forward + backward chain. */
#include "testutil.h"

#include <string.h>

static nn_tensor *f32(const int64_t *shape, int ndim) {
    return TU_NN(nn_tensor_ones(NN_DTYPE_F32, shape, ndim));
}

static void test_broadcast_errors(void **s) {
    (void)s;
    int64_t s23[] = {2, 3}, s4[] = {4};
    nn_tensor *a = f32(s23, 2), *b = f32(s4, 1);
    nn_tensor *(*bins[])(nn_tensor *, nn_tensor *) = {nn_add, nn_sub, nn_mul, nn_div, nn_pow,
                                                      nn_minimum, nn_maximum, nn_eq, nn_ge};
    const char *names[] = {"nn_add", "nn_sub", "nn_mul", "nn_div", "nn_pow",
                           "nn_minimum", "nn_maximum", "nn_eq", "nn_ge"};
    for (size_t k = 0; k < sizeof bins / sizeof bins[0]; k++) {
        nn_clear_error();
        assert_null(bins[k](a, b));
        tu_expect_error(NN_ERR_SHAPE, names[k]);
    }
    nn_tensor *cond = TU_NN(nn_tensor_zeros(NN_DTYPE_U8, s4, 1));
    assert_null(nn_where(cond, a, a));
    tu_expect_error(NN_ERR_SHAPE, "nn_where: shapes [4] and [2,3]");
    assert_null(nn_where(a, a, a));
    tu_expect_error(NN_ERR_DTYPE, "nn_where: argument 'cond' has dtype f32");
    nn_tensor_free(cond);
    nn_tensor_free(a);
    nn_tensor_free(b);
}

static void test_dtype_errors(void **s) {
    (void)s;
    int64_t sh[] = {3};
    nn_tensor *i = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, sh, 1));
    nn_tensor *x = f32(sh, 1);
    assert_null(nn_exp(i));
    tu_expect_error(NN_ERR_DTYPE, "nn_exp: argument 'a' has dtype i64, expected f32");
    assert_null(nn_relu(i));
    tu_expect_error(NN_ERR_DTYPE, "nn_relu");
    assert_null(nn_add(x, i));
    tu_expect_error(NN_ERR_DTYPE, "nn_add: argument 'b'");
    assert_null(nn_sum(i, NULL, 0, false));
    tu_expect_error(NN_ERR_DTYPE, "nn_sum");
    assert_null(nn_softmax(i, 0));
    tu_expect_error(NN_ERR_DTYPE, "nn_softmax");
    assert_null(nn_pad(i, NULL, 0, 0));
    tu_expect_error(NN_ERR_DTYPE, "nn_pad");
    assert_null(nn_index_select(x, 0, x));
    tu_expect_error(NN_ERR_DTYPE, "nn_index_select: index has dtype f32");
    assert_null(nn_gather(x, 0, x));
    tu_expect_error(NN_ERR_DTYPE, "nn_gather");
    nn_tensor *ts[] = {x, i};
    assert_null(nn_concat(ts, 2, 0));
    tu_expect_error(NN_ERR_DTYPE, "nn_concat: ts[1] has dtype i64");
    nn_tensor_free(i);
    nn_tensor_free(x);
}

static void test_dim_errors(void **s) {
    (void)s;
    int64_t sh[] = {2, 3};
    nn_tensor *x = f32(sh, 2);
    int bad = 2, dup[] = {1, -1}, ok = 0;
    assert_null(nn_sum(x, &bad, 1, false));
    tu_expect_error(NN_ERR_RANGE, "nn_sum: dim 2 out of range");
    assert_null(nn_mean(x, dup, 2, false));
    tu_expect_error(NN_ERR_INVALID, "nn_mean: dim 1 appears twice");
    assert_null(nn_var(x, NULL, 1, 1, false));
    tu_expect_error(NN_ERR_NULL, "nn_var: dims is NULL");
    assert_null(nn_std(x, &ok, 1, -1, false));
    tu_expect_error(NN_ERR_INVALID, "nn_std: correction = -1");
    assert_null(nn_amax(x, &ok, 9, false));
    tu_expect_error(NN_ERR_INVALID, "nn_amax: ndims = 9");
    assert_null(nn_max(x, -3, false, NULL));
    tu_expect_error(NN_ERR_RANGE, "nn_max");
    assert_null(nn_argmin(x, 5, false));
    tu_expect_error(NN_ERR_RANGE, "nn_argmin");
    assert_null(nn_softmax(x, 2));
    tu_expect_error(NN_ERR_RANGE, "nn_softmax: dim 2");
    assert_null(nn_log_softmax(x, -3));
    tu_expect_error(NN_ERR_RANGE, "nn_log_softmax");
    nn_tensor *ts[] = {x, x};
    assert_null(nn_concat(ts, 2, 2));
    tu_expect_error(NN_ERR_RANGE, "nn_concat");
    assert_null(nn_stack(ts, 2, 4));
    tu_expect_error(NN_ERR_RANGE, "nn_stack");
    int64_t e[] = {2, 0};
    nn_tensor *empty = f32(e, 2);
    assert_null(nn_argmax(empty, 1, false));
    tu_expect_error(NN_ERR_SHAPE, "nn_argmax: cannot reduce dim 1 of size 0");
    nn_tensor_free(empty);
    nn_tensor_free(x);
}

static void test_join_errors(void **s) {
    (void)s;
    int64_t s23[] = {2, 3}, s24[] = {2, 4}, s3[] = {3};
    nn_tensor *a = f32(s23, 2), *b = f32(s24, 2);
    nn_tensor *ab[] = {a, b};
    assert_null(nn_concat(ab, 2, 0));
    tu_expect_error(NN_ERR_SHAPE, "nn_concat: ts[1] has shape [2,4]");
    nn_tensor_free(TU_NN(nn_concat(ab, 2, 1))); /* dim 1 differs: fine */
    assert_null(nn_stack(ab, 2, 0));
    tu_expect_error(NN_ERR_SHAPE, "nn_stack");
    assert_null(nn_concat(ab, 0, 0));
    tu_expect_error(NN_ERR_INVALID, "nn_concat: n = 0");
    assert_null(nn_concat(NULL, 2, 0));
    tu_expect_error(NN_ERR_NULL, "nn_concat: argument 'ts'");
    nn_tensor *an[] = {a, NULL};
    assert_null(nn_concat(an, 2, 0));
    tu_expect_error(NN_ERR_NULL, "nn_concat: argument 'ts[1]' is NULL");
    int64_t iv[] = {0, 3, 1};
    nn_tensor *idx = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, s3, 1, iv));
    assert_null(nn_index_select(a, 1, idx));
    tu_expect_error(NN_ERR_RANGE, "nn_index_select: index 3 out of range [0, 3)");
    iv[1] = -1;
    nn_tensor *neg = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, (int64_t[]){1, 3}, 2, iv));
    assert_null(nn_gather(a, 1, neg));
    tu_expect_error(NN_ERR_RANGE, "nn_gather: index -1");
    nn_tensor *big = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, (int64_t[]){3, 3}, 2));
    assert_null(nn_gather(a, 1, big));
    tu_expect_error(NN_ERR_SHAPE, "nn_gather: index shape [3,3] exceeds");
    assert_null(nn_gather(a, 1, idx));
    tu_expect_error(NN_ERR_SHAPE, "nn_gather: index has 1 dims, a has 2");
    int64_t p3[] = {1, 1, 1};
    assert_null(nn_pad(a, p3, 3, 0));
    tu_expect_error(NN_ERR_INVALID, "nn_pad: npads = 3");
    int64_t p6[] = {0, 0, 0, 0, 1, 1};
    assert_null(nn_pad(a, p6, 6, 0));
    tu_expect_error(NN_ERR_INVALID, "nn_pad");
    int64_t crop[] = {-2, -2};
    assert_null(nn_pad(a, crop, 2, 0));
    tu_expect_error(NN_ERR_SHAPE, "nn_pad: padding (-2, -2) of dim 1");
    assert_null(nn_clamp(a, 1, 0));
    tu_expect_error(NN_ERR_INVALID, "nn_clamp: bounds lo = 1, hi = 0");
    assert_null(nn_hardtanh(a, 1, 0));
    tu_expect_error(NN_ERR_INVALID, "nn_hardtanh");
    assert_null(nn_softplus(a, 0, 20));
    tu_expect_error(NN_ERR_INVALID, "nn_softplus: beta = 0");
    nn_tensor *tf[] = {a, b, idx, neg, big};
    for (size_t i = 0; i < sizeof tf / sizeof tf[0]; i++) nn_tensor_free(tf[i]);
}

static void test_null_and_chain(void **s) {
    (void)s;
    nn_clear_error();
    assert_null(nn_relu(NULL));
    tu_expect_error(NN_ERR_NULL, "nn_relu: argument 'a' is NULL");
    assert_null(nn_add(NULL, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_add: argument 'a' is NULL");
    assert_null(nn_sum(NULL, NULL, 0, false));
    tu_expect_error(NN_ERR_NULL, "nn_sum");
    assert_null(nn_eq(NULL, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_eq");
    assert_null(nn_index_select(NULL, 0, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_index_select");
    /* A chain reports its root cause, not the NULL further down. */
    int64_t s23[] = {2, 3}, s4[] = {4};
    nn_scope *sc = TU_NN(nn_scope_begin());
    nn_tensor *a = f32(s23, 2), *b = f32(s4, 1);
    nn_tensor *y = nn_sum(nn_softmax(nn_relu(nn_exp(nn_add(a, b))), 1), NULL, 0, false);
    assert_null(y);
    tu_expect_error(NN_ERR_SHAPE, "nn_add: shapes [2,3] and [4]");
    nn_tensor *m = nn_max(nn_log(nn_neg(nn_mul(b, a))), 0, false, NULL);
    assert_null(m);
    tu_expect_error(NN_ERR_SHAPE, "nn_mul");
    TU_OK(nn_scope_end(sc));
}

/* ----------------------------------------------------------- OOM sweep */

static int oom_body(void *ctx) {
    (void)ctx;
    nn_scope *s = nn_scope_begin();
    if (!s) return 1;
    int rc = 1;
    int64_t sa[] = {3, 4}, sb[] = {4};
    float va[12], vb[4];
    for (int i = 0; i < 12; i++) va[i] = (float)(i % 5) * 0.3f - 0.6f;
    for (int i = 0; i < 4; i++) vb[i] = 0.5f + 0.25f * (float)i;
    nn_tensor *a = nn_tensor_from_data(NN_DTYPE_F32, sa, 2, va);
    nn_tensor *b = nn_tensor_from_data(NN_DTYPE_F32, sb, 1, vb);
    if (!a || !b || nn_tensor_set_requires_grad(a, true) || nn_tensor_set_requires_grad(b, true))
        goto out;
    int d1 = 1;
    nn_tensor *h = nn_relu(nn_add_scalar(nn_mul(a, b), 0.1));
    nn_tensor *y = nn_log_softmax(nn_div(h, b), 1);
    nn_tensor *parts[] = {y, nn_sigmoid(a)};
    nn_tensor *c = nn_concat(parts, 2, 0);
    nn_tensor *idx = NULL;
    nn_tensor *mx = nn_max(c, 1, false, &idx);
    nn_tensor *mask = nn_gt(c, nn_exp(nn_neg(b)));
    nn_tensor *w = nn_where(mask, c, nn_pow_scalar(c, 2));
    nn_tensor *red = nn_add(nn_mean(w, &d1, 1, false), nn_var(c, &d1, 1, 1, false));
    nn_tensor *loss = nn_sum(nn_add(red, mx), NULL, 0, false);
    if (!loss || nn_backward(loss) != NN_OK) goto out;
    rc = 0;
out:
    nn_scope_end(s);
    return rc;
}

static void test_oom_sweep(void **s) {
    (void)s;
    long sites = tu_oom_sweep(oom_body, NULL);
    assert_true(sites > 20);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broadcast_errors), cmocka_unit_test(test_dtype_errors),
        cmocka_unit_test(test_dim_errors),       cmocka_unit_test(test_join_errors),
        cmocka_unit_test(test_null_and_chain),   cmocka_unit_test(test_oom_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
