/* Residual (y = body(x) + shortcut(x), the identity without a shortcut):
 * forward against the formula computed here in double, gradients through
 * both paths against the same formula, a model-file round trip with no
 * user code, the ResNet basic block of tests/onnx in libnn, and misuse. */
#include "testutil.h"

#include <math.h>
#include <string.h>

/* A Linear(k, k) whose weight and bias are w[i*k+j] = (i+1)*0.1 - j*0.05 + s
 * and b[i] = 0.01*i - s (s shifts the two layers apart). */
static nn_module *linear_k(int64_t k, bool bias, double s, double *w, double *b) {
    nn_module *l = TU_NN(nn_linear_new(k, k, bias));
    float wf[16], bf[4];
    for (int64_t i = 0; i < k; i++) {
        for (int64_t j = 0; j < k; j++) w[i * k + j] = wf[i * k + j] = (float)((i + 1) * 0.1 - j * 0.05 + s);
        b[i] = bias ? (bf[i] = (float)(0.01 * (double)i - s)) : 0;
    }
    TU_OK(nn_tensor_copy_from(nn_module_get_parameter(l, "weight"), wf, (size_t)(k * k) * sizeof *wf));
    if (bias) TU_OK(nn_tensor_copy_from(nn_module_get_parameter(l, "bias"), bf, (size_t)k * sizeof *bf));
    return l;
}

/* y[r] = W1 x[r] + b1 + (W2 x[r] or x[r]) for rows of 3, checked in double. */
static void check_forward(nn_module *res, const double *w1, const double *b1, const double *w2) {
    static const float xs[6] = {0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.75f};
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, (int64_t[]){2, 3}, 2, xs));
    nn_tensor *y = TU_NN(nn_module_forward(res, x));
    const float *got = nn_tensor_data(y);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++) {
            double want = b1[i] + (w2 ? 0 : xs[r * 3 + i]);
            for (int j = 0; j < 3; j++)
                want += w1[i * 3 + j] * xs[r * 3 + j] + (w2 ? w2[i * 3 + j] * xs[r * 3 + j] : 0);
            if (fabs(got[r * 3 + i] - want) > 1e-5)
                fail_msg("y[%d][%d] = %g, want %g", r, i, got[r * 3 + i], want);
        }
    nn_tensor_free(y);
    nn_tensor_free(x);
}

static void test_forward_backward(void **state) {
    (void)state;
    double w1[9], b1[3], w2[9], b2[3];
    nn_module *res = TU_NN(nn_residual_new(linear_k(3, true, 0.0, w1, b1), NULL));
    assert_string_equal(nn_module_type_name(res), "Residual");
    check_forward(res, w1, b1, NULL);
    /* d sum(y) / dx = 1 + column sums of W1 (the identity path adds one) */
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, (int64_t[]){1, 3}, 2,
                                             (float[]){1, 2, 3}));
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *out = TU_NN(nn_module_forward(res, x));
    nn_tensor *loss = TU_NN(nn_sum(out, NULL, 0, false));
    TU_OK(nn_backward(loss));
    const float *g = nn_tensor_data(nn_tensor_grad(x));
    for (int j = 0; j < 3; j++)
        assert_float_equal(g[j], 1 + w1[j] + w1[3 + j] + w1[6 + j], 1e-5);
    nn_tensor_free(loss);
    nn_tensor_free(out);
    nn_tensor_free(x);
    nn_module_free(res);

    res = TU_NN(nn_residual_new(linear_k(3, true, 0.2, w1, b1), linear_k(3, false, -0.3, w2, b2)));
    check_forward(res, w1, b1, w2);
    /* d sum(y) / dx = column sums of W1 + W2; d sum(y) / d shortcut.weight[i][j] = sum_r x[r][j] */
    x = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, (int64_t[]){2, 3}, 2,
                                  (float[]){1, 2, 3, -0.5f, 0.25f, 4}));
    TU_OK(nn_tensor_set_requires_grad(x, true));
    out = TU_NN(nn_module_forward(res, x));
    loss = TU_NN(nn_sum(out, NULL, 0, false));
    TU_OK(nn_backward(loss));
    g = nn_tensor_data(nn_tensor_grad(x));
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 3; j++)
            assert_float_equal(g[r * 3 + j], w1[j] + w1[3 + j] + w1[6 + j] + w2[j] + w2[3 + j] + w2[6 + j],
                               1e-5);
    const float *gw = nn_tensor_data(nn_tensor_grad(nn_module_get_parameter(res, "shortcut.weight")));
    static const double colsum[3] = {0.5, 2.25, 7};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) assert_float_equal(gw[i * 3 + j], colsum[j], 1e-5);
    nn_tensor_free(loss);
    nn_tensor_free(out);
    nn_tensor_free(x);
    assert_int_equal(nn_module_num_parameters(res), 3); /* body.weight, body.bias, shortcut.weight */
    assert_non_null(nn_module_get_parameter(res, "shortcut.weight"));
    nn_module_free(res);
}

/* A model file rebuilds it with no user code; the same outputs. */
static void test_save_load(void **state) {
    (void)state;
    double w1[9], b1[3], w2[9], b2[3];
    nn_module *seq = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(
        seq, nn_residual_new(linear_k(3, true, 0.1, w1, b1), linear_k(3, true, 0.4, w2, b2))));
    TU_OK(nn_sequential_append(seq, nn_relu_new()));
    TU_OK(nn_sequential_append(seq, nn_residual_new(linear_k(3, false, -0.2, w1, b1), NULL)));
    void *data;
    size_t len;
    TU_OK(nn_model_save_buffer(seq, NULL, NULL, &data, &len));
    nn_model *back = nn_model_load_buffer(data, len, NULL);
    if (!back) fail_msg("%s", nn_last_error());
    nn_free(data);
    nn_tensor *x = TU_NN(nn_randn(NULL, (int64_t[]){4, 3}, 2));
    TU_OK(nn_module_train(seq, false));
    nn_tensor *want = TU_NN(nn_module_forward(seq, x));
    nn_tensor *got = TU_NN(nn_model_predict(back, x));
    assert_true(nn_tensor_equal(got, want));
    assert_string_equal(nn_module_type_name(nn_sequential_get(nn_model_module(back), 0)),
                        "Residual");
    nn_tensor_free(x);
    nn_tensor_free(want);
    nn_tensor_free(got);
    nn_model_free(back);
    nn_module_free(seq);
}

/* The ResNet basic block: relu(x + bn2(conv2(relu(bn1(conv1(x)))))), with a
 * 1x1 convolution shortcut when the channels change. */
static void test_resnet_block(void **state) {
    (void)state;
    nn_module *body = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(body, nn_conv2d_new(4, 8, 3, 1, 1, false)));
    TU_OK(nn_sequential_append(body, nn_batch_norm2d_new(8, 1e-5, 0.1, true)));
    TU_OK(nn_sequential_append(body, nn_relu_new()));
    TU_OK(nn_sequential_append(body, nn_conv2d_new(8, 8, 3, 1, 1, false)));
    TU_OK(nn_sequential_append(body, nn_batch_norm2d_new(8, 1e-5, 0.1, true)));
    nn_module *res = TU_NN(nn_residual_new(body, nn_conv2d_new(4, 8, 1, 1, 0, false)));
    nn_tensor *x = TU_NN(nn_randn(NULL, (int64_t[]){2, 4, 5, 5}, 4));
    TU_OK(nn_module_train(res, false));
    nn_tensor *y = TU_NN(nn_module_forward(res, x));
    nn_tensor *yb = TU_NN(nn_module_forward(nn_module_get_module(res, "body"), x));
    nn_tensor *ys = TU_NN(nn_module_forward(nn_module_get_module(res, "shortcut"), x));
    nn_tensor *want = TU_NN(nn_add(yb, ys));
    assert_true(nn_tensor_equal(y, want));
    nn_tensor_free(yb);
    nn_tensor_free(ys);
    nn_tensor_free(y);
    nn_tensor_free(want);
    /* without the shortcut the channels do not match: a clear error */
    nn_module *bad = TU_NN(nn_residual_new(nn_conv2d_new(4, 8, 3, 1, 1, false), NULL));
    assert_null(nn_module_forward(bad, x));
    tu_expect_error(NN_ERR_SHAPE, "Residual: body gives [2,8,5,5] but the input gives [2,4,5,5]");
    nn_module_free(bad);
    nn_tensor_free(x);
    nn_module_free(res);
}

static void test_misuse(void **state) {
    (void)state;
    assert_null(nn_residual_new(NULL, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_residual_new");
    /* a failed constructor's NULL keeps its error */
    assert_null(nn_residual_new(nn_linear_new(-1, 2, true), NULL));
    tu_expect_error(NN_ERR_INVALID, "Linear: in_features = -1");
    nn_module *l = TU_NN(nn_linear_new(2, 2, true));
    assert_null(nn_residual_new(nn_relu_new(), nn_linear_new(0, 2, true)));
    assert_int_equal(nn_last_status(), NN_ERR_INVALID);
    assert_null(nn_residual_new(l, l)); /* one reference consumed */
    tu_expect_error(NN_ERR_INVALID, "body and shortcut are the same module");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_backward),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_resnet_block),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
