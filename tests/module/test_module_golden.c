/* Modules against PyTorch (tests/golden/module.txt, written by
 * tests/golden/make_golden_module.py) and gradients of a user-defined
 * residual block against finite differences. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static tu_golden *G;

static int setup(void **s) {
    (void)s;
    G = tu_golden_open("module.txt");
    return 0;
}

static int teardown(void **s) {
    (void)s;
    tu_golden_close(G);
    return 0;
}

/* Load golden "<prefix>.<name>" for every state dict entry of m (strict). */
static void load_golden(nn_module *m, const char *prefix) {
    nn_statedict *mine = TU_NN(nn_module_state_dict(m));
    nn_statedict *sd = TU_NN(nn_statedict_new());
    for (int64_t i = 0; i < nn_statedict_size(mine); i++) {
        char key[256];
        snprintf(key, sizeof key, "%s.%s", prefix, nn_statedict_name(mine, i));
        TU_OK(nn_statedict_set(sd, nn_statedict_name(mine, i), tu_golden_get(G, key)));
    }
    TU_OK(nn_module_load_state_dict(m, sd, true, NULL));
    nn_statedict_free(sd);
    nn_statedict_free(mine);
}

static void check_recurrent(nn_module *m, const char *name) {
    char key[64];
    nn_scope *sc = nn_scope_begin();
    load_golden(m, name);
    nn_tensor *x = tu_golden_get(G, "rnn_x");
    nn_tensor *y = TU_NN(nn_module_forward(m, x));
    snprintf(key, sizeof key, "%s_y", name);
    tu_assert_close(y, tu_golden_get(G, key), 1e-4, 1e-5, key);
    /* With initial states, and the final states. */
    bool lstm = !strcmp(name, "lstm");
    snprintf(key, sizeof key, "%s_h0", name);
    nn_tensor *h0 = tu_golden_get(G, key), *c0 = NULL, *hn = NULL, *cn = NULL;
    if (lstm) c0 = tu_golden_get(G, "lstm_c0");
    nn_tensor *y2 = TU_NN(nn_recurrent_forward(m, x, h0, c0, &hn, lstm ? &cn : NULL));
    snprintf(key, sizeof key, "%s_y2", name);
    tu_assert_close(y2, tu_golden_get(G, key), 1e-4, 1e-5, key);
    snprintf(key, sizeof key, "%s_hn", name);
    tu_assert_close(hn, tu_golden_get(G, key), 1e-4, 1e-5, key);
    if (lstm) tu_assert_close(cn, tu_golden_get(G, "lstm_cn"), 1e-4, 1e-5, "lstm_cn");
    nn_scope_end(sc);
}

static void test_rnn_golden(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_rnn_new(3, 4, 2, NN_RNN_NONLINEARITY_TANH, true));
    check_recurrent(m, "rnn");
    nn_module_free(m);
}

static void test_lstm_golden(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_lstm_new(3, 4, 2, true));
    static const char *names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                  "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"};
    assert_int_equal(nn_module_num_parameters(m), 8);
    for (int i = 0; i < 8; i++) {
        const char *nm;
        TU_NN(nn_module_parameter(m, i, &nm));
        assert_string_equal(nm, names[i]);
    }
    assert_int_equal(nn_tensor_size(nn_module_get_parameter(m, "weight_ih_l0"), 0), 16);
    assert_int_equal(nn_tensor_size(nn_module_get_parameter(m, "weight_ih_l1"), 1), 4);
    check_recurrent(m, "lstm");
    nn_module_free(m);
}

static void test_gru_golden(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_gru_new(3, 4, 2, true));
    check_recurrent(m, "gru");
    nn_module_free(m);
}

static void test_cnn_golden(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_conv2d_new(1, 4, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(m, nn_conv2d_new(4, 8, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(m, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(m, nn_linear_new(72, 16, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(16, 5, true)));
    load_golden(m, "cnn");
    nn_scope *sc = nn_scope_begin();
    nn_tensor *y = TU_NN(nn_module_forward(m, tu_golden_get(G, "cnn_x")));
    tu_assert_close(y, tu_golden_get(G, "cnn_y"), 1e-4, 1e-5, "cnn_y");
    /* Eval + no grad gives the same values (and records nothing). */
    TU_OK(nn_module_train(m, false));
    bool prev = nn_set_grad_enabled(false);
    nn_tensor *y2 = TU_NN(nn_module_forward(m, tu_golden_get(G, "cnn_x")));
    nn_set_grad_enabled(prev);
    assert_false(nn_tensor_requires_grad(y2));
    tu_assert_close(y2, y, 0, 0, "eval");
    nn_scope_end(sc);
    nn_module_free(m);
}

static void test_batchnorm_golden(void **s) {
    (void)s;
    nn_module *bn = TU_NN(nn_batch_norm2d_new(3, 1e-5, 0.1, true));
    load_golden(bn, "bn");
    assert_int_equal((int)nn_tensor_item(nn_module_get_buffer(bn, "num_batches_tracked")), 7);
    nn_scope *sc = nn_scope_begin();
    nn_tensor *x = tu_golden_get(G, "bn_x");
    TU_OK(nn_module_train(bn, false));
    nn_tensor *before = nn_tensor_clone(nn_module_get_buffer(bn, "running_mean"));
    tu_assert_close(TU_NN(nn_module_forward(bn, x)), tu_golden_get(G, "bn_y_eval"), 1e-4, 1e-5, "eval");
    /* Eval does not touch the running statistics. */
    assert_true(nn_tensor_equal(before, nn_module_get_buffer(bn, "running_mean")));
    TU_OK(nn_module_train(bn, true));
    tu_assert_close(TU_NN(nn_module_forward(bn, x)), tu_golden_get(G, "bn_y_train"), 1e-4, 1e-5, "train");
    tu_assert_close(nn_module_get_buffer(bn, "running_mean"), tu_golden_get(G, "bn_running_mean_after"),
                    1e-5, 1e-6, "running_mean");
    tu_assert_close(nn_module_get_buffer(bn, "running_var"), tu_golden_get(G, "bn_running_var_after"),
                    1e-5, 1e-6, "running_var");
    assert_int_equal((int)nn_tensor_item(nn_module_get_buffer(bn, "num_batches_tracked")), 8);
    nn_scope_end(sc);
    nn_module_free(bn);
}

/* ------------------------------------------------ user-defined residual block */

/* y = relu(x + fc2(relu(fc1(x)))) with a learnable scale on the branch. */
static nn_tensor *residual_forward(nn_module *self, nn_tensor *x, void *user) {
    int *calls = user;
    (*calls)++;
    nn_tensor *h = nn_relu(nn_module_forward(nn_module_get_module(self, "fc1"), x));
    nn_tensor *b = nn_module_forward(nn_module_get_module(self, "fc2"), h);
    return nn_relu(nn_add(x, nn_mul(b, nn_module_get_parameter(self, "scale"))));
}

static int g_freed;
static void residual_free(void *user) {
    (void)user;
    g_freed++;
}

static nn_module *residual_new(int64_t d, int *calls) {
    nn_module *m = TU_NN(nn_module_custom_new("Residual", residual_forward, calls, residual_free));
    TU_OK(nn_module_register_module(m, "fc1", nn_linear_new(d, d, true)));
    TU_OK(nn_module_register_module(m, "fc2", nn_linear_new(d, d, true)));
    int64_t one = 1;
    nn_tensor *scale = nn_tensor_full(NN_DTYPE_F32, &one, 1, 0.7);
    TU_OK(nn_module_register_parameter(m, "scale", scale));
    nn_tensor_free(scale);
    return m;
}

typedef struct {
    nn_module *m;
} res_ctx;

/* inputs: x, then every parameter of the block (so all grads are checked). */
static nn_tensor *residual_fn(nn_tensor **in, void *vctx) {
    res_ctx *c = vctx;
    return nn_module_forward(c->m, in[0]);
}

static void test_custom_residual_gradcheck(void **s) {
    (void)s;
    int calls = 0;
    g_freed = 0;
    nn_module *m = residual_new(3, &calls);
    assert_string_equal(nn_module_type_name(m), "Custom:Residual");
    static const char *names[] = {"scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    assert_int_equal(nn_module_num_parameters(m), 5);
    nn_tensor *in[6];
    int64_t xs[2] = {4, 3};
    in[0] = tu_rand(3, xs, 2, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(in[0], true));
    for (int i = 0; i < 5; i++) {
        const char *nm;
        in[i + 1] = nn_module_parameter(m, i, &nm);
        assert_string_equal(nm, names[i]);
    }
    res_ctx c = {m};
    tu_gradcheck(residual_fn, in, 6, &c, 1e-3, 2e-3, 2e-2);
    assert_true(calls > 0);
    /* Inside a Sequential, names nest. */
    nn_module *seq = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(seq, nn_module_retain(m)));
    assert_non_null(nn_module_get_parameter(seq, "0.fc2.bias"));
    nn_module_free(seq);
    assert_int_equal(g_freed, 0);
    nn_tensor_free(in[0]);
    nn_module_free(m);
    assert_int_equal(g_freed, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rnn_golden),
        cmocka_unit_test(test_lstm_golden),
        cmocka_unit_test(test_gru_golden),
        cmocka_unit_test(test_cnn_golden),
        cmocka_unit_test(test_batchnorm_golden),
        cmocka_unit_test(test_custom_residual_gradcheck),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
