/* The autograd engine, exercised through the view ops (ops of their own are
 * tested in tests/ops). */
#include "testutil.h"

#include <string.h>

static nn_tensor *f_transpose_slice(nn_tensor **in, void *ctx) {
    (void)ctx;
    nn_scope *s = nn_scope_begin();
    nn_tensor *t = nn_slice(nn_transpose(in[0], 0, 2), 1, 1, 3, 1);
    nn_tensor *r = nn_tensor_retain(nn_tensor_contiguous(nn_expand(nn_unsqueeze(t, 0), (int64_t[]){2, -1, -1, -1}, 4)));
    nn_scope_end(s);
    return r;
}

static nn_tensor *f_permute_flatten(nn_tensor **in, void *ctx) {
    (void)ctx;
    nn_scope *s = nn_scope_begin();
    nn_tensor *r = nn_tensor_retain(nn_flatten(nn_permute(in[0], (int[]){2, 0, 1}, 3), 1, 2));
    nn_scope_end(s);
    return r;
}

static nn_tensor *f_reshape_noncontig(nn_tensor **in, void *ctx) {
    (void)ctx;
    nn_scope *s = nn_scope_begin();
    nn_tensor *r = nn_tensor_retain(nn_reshape(nn_slice(in[0], 2, 0, 4, 2), (int64_t[]){-1}, 1));
    nn_scope_end(s);
    return r;
}

static void test_gradcheck_views(void **s) {
    (void)s;
    nn_tensor *x = tu_rand(1, (int64_t[]){3, 4, 5}, 3, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    tu_gradcheck(f_transpose_slice, &x, 1, NULL, 1e-2, 1e-3, 1e-3);
    tu_gradcheck(f_permute_flatten, &x, 1, NULL, 1e-2, 1e-3, 1e-3);
    tu_gradcheck(f_reshape_noncontig, &x, 1, NULL, 1e-2, 1e-3, 1e-3);
    nn_tensor_free(x);
}

static void test_expand_grad_sums(void **s) {
    (void)s;
    /* d/dx sum(expand(x)) = number of copies; checked by hand. */
    nn_tensor *x = tu_rand(2, (int64_t[]){1, 3}, 2, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *e = TU_NN(nn_expand(x, (int64_t[]){4, 3}, 2));
    nn_tensor *seed = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){4, 3}, 2));
    TU_OK(nn_backward_ex(e, seed, false));
    const float *g = nn_tensor_data(nn_tensor_grad(x));
    for (int i = 0; i < 3; i++) assert_true(g[i] == 4.0f);
    /* gradients accumulate across backward calls (+=) */
    nn_tensor *e2 = TU_NN(nn_expand(x, (int64_t[]){2, 3}, 2));
    nn_tensor *seed2 = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){2, 3}, 2));
    TU_OK(nn_backward_ex(e2, seed2, false));
    g = nn_tensor_data(nn_tensor_grad(x));
    assert_true(g[0] == 6.0f);
    TU_OK(nn_tensor_zero_grad(x));
    assert_null(nn_tensor_grad(x));
    nn_tensor *ts[] = {x, e, seed, e2, seed2};
    for (int i = 0; i < 5; i++) nn_tensor_free(ts[i]);
}

static void test_backward_errors(void **s) {
    (void)s;
    nn_tensor *x = tu_rand(3, (int64_t[]){2, 3}, 2, -1, 1);
    /* no graph */
    assert_int_equal(nn_backward(x), NN_ERR_NO_GRAD);
    tu_expect_error(NN_ERR_NO_GRAD, "does not require grad");
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *t = TU_NN(nn_transpose(x, 0, 1));
    assert_false(nn_tensor_is_leaf(t));
    assert_true(nn_tensor_requires_grad(t));
    /* non-scalar without a seed */
    assert_int_equal(nn_backward(t), NN_ERR_SHAPE);
    tu_expect_error(NN_ERR_SHAPE, "not a scalar");
    /* wrong seed shape */
    nn_tensor *bad = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){2, 3}, 2));
    assert_int_equal(nn_backward_ex(t, bad, false), NN_ERR_SHAPE);
    tu_expect_error(NN_ERR_SHAPE, "seed shape");
    /* twice through a released graph */
    nn_tensor *seed = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){3, 2}, 2));
    TU_OK(nn_backward_ex(t, seed, true)); /* retained */
    TU_OK(nn_backward_ex(t, seed, false));
    assert_int_equal(nn_backward_ex(t, seed, false), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "already used");
    assert_true(((float *)nn_tensor_data(nn_tensor_grad(x)))[0] == 2.0f);
    /* integer tensors cannot require grad; non-leaves cannot be unmarked */
    nn_tensor *i = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, (int64_t[]){2}, 1));
    assert_int_equal(nn_tensor_set_requires_grad(i, true), NN_ERR_DTYPE);
    nn_clear_error();
    assert_int_equal(nn_tensor_set_requires_grad(t, false), NN_ERR_STATE);
    nn_clear_error();
    nn_tensor *ts[] = {x, t, bad, seed, i};
    for (int k = 0; k < 5; k++) nn_tensor_free(ts[k]);
}

static void test_no_grad_and_detach(void **s) {
    (void)s;
    nn_tensor *x = tu_rand(4, (int64_t[]){4}, 1, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    bool prev = nn_set_grad_enabled(false);
    assert_true(prev);
    assert_false(nn_is_grad_enabled());
    nn_tensor *v = TU_NN(nn_reshape(x, (int64_t[]){2, 2}, 2));
    assert_false(nn_tensor_requires_grad(v));
    nn_set_grad_enabled(true);
    nn_tensor *d = TU_NN(nn_detach(x));
    assert_false(nn_tensor_requires_grad(d));
    assert_true(nn_tensor_data(d) == nn_tensor_data(x)); /* shares data */
    nn_tensor_free(v);
    nn_tensor_free(d);
    nn_tensor_free(x);
}

static void test_free_order(void **s) {
    (void)s;
    /* Results hold their inputs: free the leaf first, backward still works. */
    nn_tensor *x = tu_rand(5, (int64_t[]){2, 2}, 2, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *t = TU_NN(nn_transpose(x, 0, 1));
    nn_tensor *keep = nn_tensor_retain(x);
    nn_tensor_free(x);
    nn_tensor *seed = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){2, 2}, 2));
    TU_OK(nn_backward_ex(t, seed, false));
    nn_tensor_free(t);
    assert_non_null(nn_tensor_grad(keep));
    nn_tensor_free(keep);
    nn_tensor_free(seed);
}

static void test_deep_chain(void **s) {
    (void)s;
    /* 20000 chained views: the engine must not recurse per node. */
    nn_tensor *x = tu_rand(6, (int64_t[]){4}, 1, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *cur = nn_tensor_retain(x);
    for (int i = 0; i < 20000; i++) {
        nn_tensor *n = nn_reshape(cur, (int64_t[]){i % 2 ? 4 : 2, i % 2 ? 1 : 2}, 2);
        nn_tensor_free(cur);
        cur = n;
    }
    nn_tensor *seed = TU_NN(nn_tensor_ones(NN_DTYPE_F32, nn_tensor_shape(cur), 2));
    TU_OK(nn_backward_ex(cur, seed, false));
    assert_true(((float *)nn_tensor_data(nn_tensor_grad(x)))[3] == 1.0f);
    nn_tensor_free(cur);
    nn_tensor_free(seed);
    nn_tensor_free(x);
}

static void test_free_long_chain(void **s) {
    (void)s;
    /* Freeing the last reference to the end of a 300,000-node chain must not
     * recurse once per node (that overflows an 8 MB stack). */
    nn_tensor *x = tu_rand(7, (int64_t[]){2}, 1, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *cur = nn_tensor_retain(x);
    for (int i = 0; i < 300000; i++) {
        nn_tensor *n = TU_NN(nn_unsqueeze(cur, 0));
        nn_tensor_free(cur);
        cur = TU_NN(nn_squeeze(n, 0));
        nn_tensor_free(n);
    }
    nn_tensor_free(cur); /* frees 600,000 nodes */
    assert_int_equal(nn_tensor_numel(x), 2);
    nn_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_views), cmocka_unit_test(test_expand_grad_sums),
        cmocka_unit_test(test_backward_errors), cmocka_unit_test(test_no_grad_and_detach),
        cmocka_unit_test(test_free_order),      cmocka_unit_test(test_deep_chain),
        cmocka_unit_test(test_free_long_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
