/* Multi-input forward (nn_module_forward_n), MultiheadAttention and the
 * transformer layers and stacks against PyTorch golden values
 * (make_golden_transformer.py), their model-file round trips and misuse. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------- nn_module_forward_n */

/* A user module adding all present inputs (absent ones count as zero). */
static nn_tensor *sum_inputs(nn_module *self, nn_tensor *const *xs, int n, void *user) {
    (void)self;
    (*(int *)user)++;
    nn_tensor *acc = xs[0];
    for (int i = 1; i < n; i++)
        if (xs[i]) acc = nn_add(acc, xs[i]);
    return nn_mul_scalar(acc, 1.0);
}

static nn_tensor *first_input(nn_module *self, nn_tensor *x, void *user) {
    (void)self, (void)user;
    return nn_mul_scalar(x, 2.0);
}

static void test_forward_n_single_and_custom(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    int64_t shape[2] = {2, 3};
    nn_tensor *a = tu_rand(1, shape, 2, -1, 1), *b = tu_rand(2, shape, 2, -1, 1);
    /* A single-input module: n == 1 is nn_module_forward. */
    nn_module *lin = TU_NN(nn_linear_new(3, 4, true));
    int lo = -1, hi = -1;
    TU_OK(nn_module_num_inputs(lin, &lo, &hi));
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 1);
    nn_tensor *in1[1] = {a};
    nn_tensor *y1 = TU_NN(nn_module_forward_n(lin, in1, 1));
    nn_tensor *y0 = TU_NN(nn_module_forward(lin, a));
    tu_assert_close(y1, y0, 0, 0, "forward_n(n=1) == forward");
    nn_tensor *in2[2] = {a, b};
    assert_null(nn_module_forward_n(lin, in2, 2));
    tu_expect_error(NN_ERR_INVALID, "Linear takes 1 input, got n = 2");
    assert_null(nn_module_forward_n(lin, in2, 0));
    tu_expect_error(NN_ERR_INVALID, "got n = 0");
    assert_null(nn_module_forward_n(lin, NULL, 1));
    tu_expect_error(NN_ERR_NULL, "inputs");
    nn_tensor *none[1] = {NULL};
    assert_null(nn_module_forward_n(lin, none, 1));
    tu_expect_error(NN_ERR_NULL, "inputs[0]");
    assert_int_equal(nn_module_custom_set_forward_n(lin, sum_inputs), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "built-in");

    /* A user module with a multi-input callback. */
    int calls = 0;
    nn_module *u = TU_NN(nn_module_custom_new("Adder", first_input, &calls, NULL));
    TU_OK(nn_module_num_inputs(u, &lo, &hi));
    assert_int_equal(hi, 1);
    TU_OK(nn_module_custom_set_forward_n(u, sum_inputs));
    TU_OK(nn_module_num_inputs(u, &lo, &hi));
    assert_int_equal(lo, 1);
    assert_int_equal(hi, NN_MODULE_MAX_INPUTS);
    nn_tensor *in3[3] = {a, NULL, b};
    nn_tensor *y = TU_NN(nn_module_forward_n(u, in3, 3));
    tu_assert_close(y, TU_NN(nn_add(a, b)), 0, 0, "custom forward_n");
    assert_int_equal(calls, 1);
    /* The one-input forward is still the one-input callback. */
    tu_assert_close(TU_NN(nn_module_forward(u, a)), TU_NN(nn_mul_scalar(a, 2.0)), 0, 0,
                    "custom forward");
    /* An absent input that came from a failed call reports that call. */
    nn_tensor *bad[2] = {a, nn_matmul(a, b)};
    assert_null(bad[1]);
    assert_null(nn_module_forward_n(u, bad, 2));
    tu_expect_error(NN_ERR_SHAPE, "nn_matmul");
    assert_int_equal(calls, 1);
    nn_tensor *many[NN_MODULE_MAX_INPUTS + 1];
    for (int i = 0; i <= NN_MODULE_MAX_INPUTS; i++) many[i] = a;
    assert_null(nn_module_forward_n(u, many, NN_MODULE_MAX_INPUTS + 1));
    tu_expect_error(NN_ERR_INVALID, "takes 1 to 16 inputs");
    TU_OK(nn_module_custom_set_forward_n(u, NULL));
    assert_null(nn_module_forward_n(u, in2, 2));
    tu_expect_error(NN_ERR_INVALID, "takes 1 input");
    nn_module_free(u);
    nn_module_free(lin);
    nn_scope_end(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_n_single_and_custom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
