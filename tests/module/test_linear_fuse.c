/* Sequential's fusion of Linear -> ReLU into one op when no graph is
 * recorded (lib/module/layers.c nn__mod_fuse_linear, lib/ops/linalg.c
 * nn__linear_relu): outputs bit-identical to the same layers run one op at
 * a time, in every ISA tier this machine runs, at batch 1 (the GEMV path)
 * and in small batches, with and without bias, with NaN, negative and
 * zero pre-activations; with a graph the layers run unfused and gradients
 * flow; the fused op refuses inputs that need a gradient. */
#include "testutil.h"
#include "backend/backend.h"
#include "backend/tier.h"
#include "ops/linear_fuse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void expect_same(nn_tensor *got, nn_tensor *want, const char *what) {
    assert_int_equal(nn_tensor_numel(got), nn_tensor_numel(want));
    const float *a = nn_tensor_data(got), *b = nn_tensor_data(want);
    for (int64_t i = 0; i < nn_tensor_numel(got); i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i])))
            fail_msg("%s (tier %s): element %lld is %.9g, unfused %.9g", what,
                     nn__tier_name(nn__backend_tier()), (long long)i, (double)a[i], (double)b[i]);
}

/* in -> h1 -> ReLU -> h2 -> ReLU -> out (the benchmark's MLP shape when
 * 784-256-128-10), bias on the first two Linear layers when `bias`. */
static nn_module *make_mlp(int64_t in, int64_t h1, int64_t h2, int64_t out, bool bias) {
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_linear_new(in, h1, bias)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(h1, h2, bias)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(h2, out, true)));
    return m;
}

/* The same network, one op at a time. */
static nn_tensor *unfused(nn_module *m, nn_tensor *x, bool bias) {
    int64_t p = 0;
    nn_tensor *y = x;
    for (int l = 0; l < 3; l++) {
        nn_tensor *w = nn_module_parameter(m, p++, NULL);
        nn_tensor *b = bias || l == 2 ? nn_module_parameter(m, p++, NULL) : NULL;
        y = TU_NN(nn_linear(y, w, b));
        if (l < 2) y = TU_NN(nn_relu(y));
    }
    return y;
}

static const int64_t g_shapes[][5] = {/* rows, in, h1, h2, out */
                                      {1, 784, 256, 128, 10}, {3, 784, 256, 128, 10},
                                      {1, 33, 17, 5, 3},      {2, 70, 40, 31, 9},
                                      {1, 1000, 300, 65, 7}};

static void check_eval(void) {
    for (size_t i = 0; i < sizeof g_shapes / sizeof g_shapes[0]; i++)
        for (int bias = 0; bias < 2; bias++) {
            const int64_t *k = g_shapes[i];
            nn_scope *s = nn_scope_begin();
            nn_module *m = make_mlp(k[1], k[2], k[3], k[4], bias);
            TU_OK(nn_module_train(m, false));
            const int64_t xs[2] = {k[0], k[1]};
            nn_tensor *x = tu_rand(3 + i, xs, 2, -1, 1);
            if (i == 3) ((float *)nn_tensor_data(x))[5] = NAN; /* row 0 all NaN from layer 1 on */
            const bool was = nn_set_grad_enabled(false);
            expect_same(TU_NN(nn_module_forward(m, x)), unfused(m, x, bias), "eval");
            nn_set_grad_enabled(was);
            nn_module_free(m);
            nn_scope_end(s);
        }
}

static void test_fused_equals_unfused(void **state) {
    (void)state;
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        if (!nn__tier_runnable(t)) continue;
        assert_true(nn__backend_force_tier(t));
        for (int threads = 1; threads <= 2; threads++) {
            TU_OK(nn_set_num_threads(threads));
            check_eval();
        }
    }
    assert_true(nn__backend_force_tier(-1));
    TU_OK(nn_set_num_threads(1));
}

/* Pre-activations that are negative, -0, +0, NaN, +-inf and positive:
 * max(., 0) as nn_relu computes it (NaN kept, -0 and negatives to +0). */
static void test_relu_edges(void **state) {
    (void)state;
    nn_scope *s = nn_scope_begin();
    const float bv[] = {-1.0f, -0.0f, 0.0f, NAN, INFINITY, -INFINITY, 2.5f, -1e-30f};
    const int64_t n = (int64_t)(sizeof bv / sizeof bv[0]), ws[2] = {n, 4}, xs[2] = {1, 4};
    nn_tensor *w = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, ws, 2));
    nn_tensor *b = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, &n, 1, bv));
    nn_tensor *x = tu_rand(1, xs, 2, -1, 1);
    nn_tensor *got = TU_NN(nn__linear_relu(x, w, b));
    expect_same(got, TU_NN(nn_relu(nn_linear(x, w, b))), "edges");
    const float *g = nn_tensor_data(got);
    assert_true(signbit(g[1]) == 0 && g[1] == 0.0f);
    assert_true(isnan(g[3]));
    nn_tensor_free(got);
    /* no bias: the ReLU alone */
    got = TU_NN(nn__linear_relu(x, w, NULL));
    expect_same(got, TU_NN(nn_relu(nn_linear(x, w, NULL))), "no bias");
    nn_tensor_free(got);
    nn_scope_end(s);
}

/* With a graph the layers are not fused: the output equals the unfused
 * ops and every parameter gets a gradient; the fused op itself refuses an
 * input that needs a gradient, and reports bad shapes as nn_linear does. */
static void test_graph_and_errors(void **state) {
    (void)state;
    nn_scope *s = nn_scope_begin();
    nn_module *m = make_mlp(20, 16, 12, 3, true);
    const int64_t xs[2] = {1, 20};
    nn_tensor *x = tu_rand(4, xs, 2, -1, 1);
    nn_tensor *y = TU_NN(nn_module_forward(m, x));
    expect_same(y, unfused(m, x, true), "train");
    TU_OK(nn_backward(nn_sum(y, NULL, 0, false)));
    for (int64_t i = 0; i < nn_module_num_parameters(m); i++)
        assert_non_null(nn_tensor_grad(nn_module_parameter(m, i, NULL)));
    nn_tensor *w = nn_module_parameter(m, 0, NULL), *b = nn_module_parameter(m, 1, NULL);
    assert_null(nn__linear_relu(x, w, b));
    assert_int_equal(nn_last_status(), NN_ERR_INVALID);
    assert_non_null(strstr(nn_last_error(), "nn_linear_relu"));
    const bool was = nn_set_grad_enabled(false);
    const int64_t bad[2] = {1, 19};
    assert_null(nn__linear_relu(tu_rand(5, bad, 2, -1, 1), w, b));
    assert_int_equal(nn_last_status(), NN_ERR_SHAPE);
    assert_non_null(strstr(nn_last_error(), "nn_linear"));
    /* a Sequential given a bad input reports it through the Linear */
    assert_null(nn_module_forward(m, tu_rand(5, bad, 2, -1, 1)));
    assert_int_equal(nn_last_status(), NN_ERR_SHAPE);
    nn_set_grad_enabled(was);
    nn_module_free(m);
    nn_scope_end(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_equals_unfused),
        cmocka_unit_test(test_relu_edges),
        cmocka_unit_test(test_graph_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
