/* A build without ONNX (-Donnx=disabled): the nn_onnx_* functions exist and
 * fail with NN_ERR_UNSUPPORTED and a message saying why. */
#include "testutil.h"

static int64_t no_read(void *buf, size_t size, void *user) {
    (void)buf, (void)size, (void)user;
    return 0;
}

static void test_unsupported(void **state) {
    (void)state;
    assert_null(nn_onnx_load("model.onnx", NULL));
    tu_expect_error(NN_ERR_UNSUPPORTED, "without ONNX");
    assert_null(nn_onnx_load_buffer("x", 1, NULL));
    tu_expect_error(NN_ERR_UNSUPPORTED, "without ONNX");
    assert_null(nn_onnx_load_stream(no_read, NULL, NULL));
    tu_expect_error(NN_ERR_UNSUPPORTED, "without ONNX");
    nn_module *l = TU_NN(nn_linear_new(2, 2, true));
    int64_t shape[2] = {1, 2};
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(nn_onnx_save_buffer(l, NN_DTYPE_F32, shape, 2, NULL, &data, &len),
                     NN_ERR_UNSUPPORTED);
    assert_int_equal(nn_onnx_save(l, "x.onnx", NN_DTYPE_F32, shape, 2, NULL), NN_ERR_UNSUPPORTED);
    nn_dtype dt = NN_DTYPE_F32;
    int nd = 2;
    assert_int_equal(nn_onnx_save_buffer_n(l, 1, &dt, shape, &nd, NULL, &data, &len),
                     NN_ERR_UNSUPPORTED);
    tu_expect_error(NN_ERR_UNSUPPORTED, "without ONNX");
    assert_int_equal(nn_onnx_save_n(l, "x.onnx", 1, &dt, shape, &nd, NULL), NN_ERR_UNSUPPORTED);
    tu_expect_error(NN_ERR_UNSUPPORTED, "without ONNX");
    nn_module_free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_unsupported)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
