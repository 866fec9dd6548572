/* Modules: shapes, names, modes, state dicts, freezing, summary, misuse, OOM. */
#include "testutil.h"
#include "nn_internal.h"
#include "module/module_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static int64_t S4[4];
static const int64_t *shp4(int64_t a, int64_t b, int64_t c, int64_t d) {
    S4[0] = a, S4[1] = b, S4[2] = c, S4[3] = d;
    return S4;
}

static void assert_shape(const nn_tensor *t, const int64_t *want, int ndim) {
    assert_non_null(t);
    assert_int_equal(nn_tensor_ndim(t), ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(nn_tensor_shape(t)[i], want[i]);
}

/* The Fashion-MNIST CNN of the examples. */
static nn_module *fmnist_cnn(void) {
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_conv2d_new(1, 32, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(m, nn_conv2d_new(32, 64, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(m, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(m, nn_linear_new(3136, 128, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(128, 10, true)));
    return m;
}

static void test_cnn_shapes_and_names(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_module *m = fmnist_cnn();
    assert_int_equal(nn_sequential_length(m), 10);
    assert_string_equal(nn_module_type_name(m), "Sequential");
    assert_string_equal(nn_module_type_name(nn_sequential_get(m, 0)), "Conv2d");
    assert_string_equal(nn_module_type_name(nn_sequential_get(m, -1)), "Linear");
    assert_int_equal(nn_module_param_count(m), 421642);
    static const char *names[] = {"0.weight", "0.bias", "3.weight", "3.bias",
                                  "7.weight", "7.bias", "9.weight", "9.bias"};
    assert_int_equal(nn_module_num_parameters(m), 8);
    for (int i = 0; i < 8; i++) {
        const char *nm;
        nn_tensor *p = TU_NN(nn_module_parameter(m, i, &nm));
        assert_string_equal(nm, names[i]);
        assert_true(nn_tensor_requires_grad(p));
        assert_ptr_equal(nn_module_get_parameter(m, names[i]), p);
    }
    assert_shape(nn_module_get_parameter(m, "3.weight"), shp4(64, 32, 3, 3), 4);
    nn_tensor *x = tu_rand(1, shp4(2, 1, 28, 28), 4, -1, 1);
    nn_tensor *y = TU_NN(nn_module_forward(m, x));
    int64_t want[2] = {2, 10};
    assert_shape(y, want, 2);
    assert_int_equal(nn_module_num_buffers(m), 0);
    nn_scope_end(sc);
    nn_module_free(m);
}

/* Linear forward equals x Wᵀ + b computed by hand. */
static void test_linear_values(void **s) {
    (void)s;
    nn_module *l = TU_NN(nn_linear_new(3, 2, true));
    float w[] = {1, 2, 3, -1, 0, 1}, b[] = {0.5f, -0.5f}, xv[] = {1, 1, 2};
    TU_OK(nn_tensor_copy_from(nn_module_get_parameter(l, "weight"), w, sizeof w));
    TU_OK(nn_tensor_copy_from(nn_module_get_parameter(l, "bias"), b, sizeof b));
    int64_t xs[2] = {1, 3};
    nn_tensor *x = tu_tensor(xs, 2, xv);
    nn_tensor *y = TU_NN(nn_module_forward(l, x));
    float out[2];
    TU_OK(nn_tensor_copy_to(y, out, sizeof out));
    assert_float_equal(out[0], 9.5f, 1e-6);
    assert_float_equal(out[1], 0.5f, 1e-6);
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_module_free(l);
}

/* Default init bounds: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void test_default_init(void **s) {
    (void)s;
    TU_OK(nn_generator_seed(NULL, 7));
    nn_module *c = TU_NN(nn_conv2d_new(4, 8, 3, 1, 0, true));
    double bound = 1.0 / sqrt(36.0);
    for (int k = 0; k < 2; k++) {
        nn_tensor *p = nn_module_parameter(c, k, NULL);
        double mx = 0;
        for (int64_t i = 0; i < nn_tensor_numel(p); i++) {
            double v = fabs(((float *)nn_tensor_data(p))[i]);
            if (v > mx) mx = v;
        }
        assert_true(mx <= bound);
        assert_true(mx > 0.8 * bound);
    }
    /* Same seed, same weights. */
    TU_OK(nn_generator_seed(NULL, 7));
    nn_module *c2 = TU_NN(nn_conv2d_new(4, 8, 3, 1, 0, true));
    assert_true(nn_tensor_equal(nn_module_parameter(c, 0, NULL), nn_module_parameter(c2, 0, NULL)));
    nn_module_free(c);
    nn_module_free(c2);
}

static void test_state_dict_round_trip(void **s) {
    (void)s;
    nn_module *a = fmnist_cnn(), *b = fmnist_cnn();
    nn_statedict *sd = TU_NN(nn_module_state_dict(a));
    assert_int_equal(nn_statedict_size(sd), 8);
    assert_string_equal(nn_statedict_name(sd, 4), "7.weight");
    assert_false(nn_tensor_equal(nn_module_get_parameter(a, "7.weight"), nn_module_get_parameter(b, "7.weight")));
    char *rep = NULL;
    TU_OK(nn_module_load_state_dict(b, sd, true, &rep));
    assert_string_equal(rep, "");
    nn_free(rep);
    for (int i = 0; i < 8; i++)
        assert_true(nn_tensor_equal(nn_module_parameter(a, i, NULL), nn_module_parameter(b, i, NULL)));
    /* The state dict shares data with the module. */
    float one = 1234.5f;
    int64_t idx[1] = {0};
    TU_OK(nn_tensor_set(nn_module_get_parameter(a, "0.bias"), idx, one));
    double got;
    TU_OK(nn_tensor_get(nn_statedict_get(sd, "0.bias"), idx, &got));
    assert_float_equal(got, 1234.5, 1e-3);
    /* Loading copies: b is unaffected by later changes to a. */
    TU_OK(nn_tensor_get(nn_module_get_parameter(b, "0.bias"), idx, &got));
    assert_true(got != 1234.5);
    nn_statedict_free(sd);
    nn_module_free(a);
    nn_module_free(b);
}

static void test_load_strict_and_lenient(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_linear_new(4, 3, true)));
    TU_OK(nn_sequential_append(m, nn_linear_new(3, 2, true)));
    nn_statedict *sd = TU_NN(nn_statedict_new());
    int64_t w0[2] = {3, 4}, w1[2] = {2, 5}, b1 = 2, xs = 7;
    nn_tensor *t0 = nn_tensor_full(NN_DTYPE_F32, w0, 2, 0.25);
    nn_tensor *t1 = nn_tensor_full(NN_DTYPE_F32, w1, 2, 0.5); /* wrong shape for 1.weight */
    nn_tensor *t2 = nn_tensor_full(NN_DTYPE_F32, &b1, 1, 0.75);
    nn_tensor *t3 = nn_tensor_full(NN_DTYPE_F32, &xs, 1, 1);
    TU_OK(nn_statedict_set(sd, "0.weight", t0));
    TU_OK(nn_statedict_set(sd, "1.weight", t1));
    TU_OK(nn_statedict_set(sd, "1.bias", t2));
    TU_OK(nn_statedict_set(sd, "extra.thing", t3));
    nn_tensor *before = nn_tensor_clone(nn_module_get_parameter(m, "0.weight"));
    char *rep = (char *)1;
    assert_int_equal(nn_module_load_state_dict(m, sd, true, &rep), NN_ERR_NOT_FOUND);
    assert_null(rep);
    const char *msg = nn_last_error();
    assert_non_null(strstr(msg, "0.bias"));
    assert_non_null(strstr(msg, "extra.thing"));
    assert_non_null(strstr(msg, "1.weight"));
    assert_non_null(strstr(msg, "1.weight (module [2,3], state dict [2,5])"));
    nn_clear_error();
    /* Strict failure loads nothing. */
    assert_true(nn_tensor_equal(before, nn_module_get_parameter(m, "0.weight")));
    TU_OK(nn_module_load_state_dict(m, sd, false, &rep));
    assert_non_null(strstr(rep, "missing: 0.bias\n"));
    assert_non_null(strstr(rep, "unexpected: extra.thing\n"));
    assert_non_null(strstr(rep, "wrong shape: 1.weight"));
    nn_free(rep);
    assert_true(nn_tensor_allclose(nn_module_get_parameter(m, "0.weight"), t0, 0, 0));
    assert_true(nn_tensor_allclose(nn_module_get_parameter(m, "1.bias"), t2, 0, 0));
    /* Only a shape mismatch: NN_ERR_SHAPE. */
    nn_statedict *good = TU_NN(nn_module_state_dict(m));
    TU_OK(nn_statedict_set(good, "1.weight", t1));
    assert_int_equal(nn_module_load_state_dict(m, good, true, NULL), NN_ERR_SHAPE);
    tu_expect_error(NN_ERR_SHAPE, "1.weight");
    nn_statedict_free(good);
    nn_tensor_free(before);
    nn_tensor_free(t0);
    nn_tensor_free(t1);
    nn_tensor_free(t2);
    nn_tensor_free(t3);
    nn_statedict_free(sd);
    nn_module_free(m);
}


/* Every layer: output shape on a representative input. */
static void check_shape(nn_module *m, nn_tensor *x, const int64_t *want, int ndim, const char *type) {
    assert_non_null(m);
    assert_string_equal(nn_module_type_name(m), type);
    nn_tensor *y = nn_module_forward(m, x);
    if (!y) fail_msg("%s: %s", type, nn_last_error());
    assert_shape(y, want, ndim);
    nn_module_free(m);
}

static void test_all_shapes(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    int64_t s3[3] = {2, 3, 10}, o3[3] = {2, 5, 8};
    check_shape(nn_conv1d_new(3, 5, 3, 1, 0, 1, 1, true), tu_rand(1, s3, 3, -1, 1), o3, 3, "Conv1d");
    nn_tensor *img = tu_rand(2, shp4(1, 3, 4, 4), 4, -1, 1);
    check_shape(nn_conv_transpose2d_new(3, 2, 3, 2, 1, 1, true), img, shp4(1, 2, 8, 8), 4, "ConvTranspose2d");
    check_shape(nn_conv2d_new_ex(3, 6, 3, 1, 1, 1, 1, 0, 1, 1, 3, false), img, shp4(1, 6, 4, 4), 4, "Conv2d");
    check_shape(nn_avg_pool2d_new(2, 2, 0), img, shp4(1, 3, 2, 2), 4, "AvgPool2d");
    check_shape(nn_max_pool2d_new(3, 1, 1), img, shp4(1, 3, 4, 4), 4, "MaxPool2d");
    check_shape(nn_adaptive_avg_pool2d_new(1, 1), img, shp4(1, 3, 1, 1), 4, "AdaptiveAvgPool2d");
    check_shape(nn_batch_norm2d_new(3, 1e-5, 0.1, true), img, shp4(1, 3, 4, 4), 4, "BatchNorm2d");
    check_shape(nn_group_norm_new(1, 3, 1e-5, true), img, shp4(1, 3, 4, 4), 4, "GroupNorm");
    int64_t sq[1] = {4};
    check_shape(nn_layer_norm_new(sq, 1, 1e-5, true), img, shp4(1, 3, 4, 4), 4, "LayerNorm");
    int64_t f2[2] = {1, 48};
    check_shape(nn_flatten_new(1, -1), img, f2, 2, "Flatten");
    int64_t s2[2] = {4, 3};
    nn_tensor *v = tu_rand(3, s2, 2, -1, 1);
    check_shape(nn_batch_norm1d_new(3, 1e-5, 0.1, false), v, s2, 2, "BatchNorm1d");
    check_shape(nn_dropout_new(0.5), v, s2, 2, "Dropout");
    check_shape(nn_relu_new(), v, s2, 2, "ReLU");
    check_shape(nn_leaky_relu_new(0.1), v, s2, 2, "LeakyReLU");
    check_shape(nn_elu_new(1.0), v, s2, 2, "ELU");
    check_shape(nn_gelu_new(false), v, s2, 2, "GELU");
    check_shape(nn_silu_new(), v, s2, 2, "SiLU");
    check_shape(nn_sigmoid_new(), v, s2, 2, "Sigmoid");
    check_shape(nn_tanh_new(), v, s2, 2, "Tanh");
    check_shape(nn_softplus_new(1, 20), v, s2, 2, "Softplus");
    check_shape(nn_hardtanh_new(-1, 1), v, s2, 2, "Hardtanh");
    check_shape(nn_softmax_new(1), v, s2, 2, "Softmax");
    check_shape(nn_log_softmax_new(-1), v, s2, 2, "LogSoftmax");
    check_shape(nn_identity_new(), v, s2, 2, "Identity");
    int64_t ls[2] = {4, 7};
    check_shape(nn_linear_new(3, 7, false), v, ls, 2, "Linear");
    int64_t ids_v[6] = {0, 9, 3, 3, 1, 2}, is[2] = {2, 3}, es[3] = {2, 3, 6};
    nn_tensor *ids = nn_tensor_from_data(NN_DTYPE_I64, is, 2, ids_v);
    check_shape(nn_embedding_new(10, 6), ids, es, 3, "Embedding");
    int64_t xs[3] = {2, 5, 3}, ys[3] = {2, 5, 4};
    nn_tensor *seq = tu_rand(4, xs, 3, -1, 1);
    check_shape(nn_rnn_new(3, 4, 1, NN_RNN_NONLINEARITY_RELU, false), seq, ys, 3, "RNN");
    check_shape(nn_lstm_new(3, 4, 3, true), seq, ys, 3, "LSTM");
    check_shape(nn_gru_new(3, 4, 1, false), seq, ys, 3, "GRU");
    check_shape(nn_sequential_new(), v, s2, 2, "Sequential");
    nn_scope_end(sc);
}

static void test_dropout_modes(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    int64_t n = 10000;
    nn_tensor *x = nn_tensor_ones(NN_DTYPE_F32, &n, 1);
    nn_module *d = TU_NN(nn_dropout_new(0.25));
    TU_OK(nn_dropout_seed(d, 42));
    nn_tensor *y = TU_NN(nn_module_forward(d, x));
    const float *p = nn_tensor_data(y);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] == 0) zeros++;
        else assert_float_equal(p[i], 1 / 0.75, 1e-6);
    }
    assert_true(zeros > 2200 && zeros < 2800);
    /* Reseeding reproduces the mask; the module's generator is its own. */
    TU_OK(nn_dropout_seed(d, 42));
    TU_OK(nn_generator_seed(NULL, 99));
    assert_true(nn_tensor_equal(y, TU_NN(nn_module_forward(d, x))));
    /* Eval: identity. */
    TU_OK(nn_module_train(d, false));
    assert_false(nn_module_is_training(d));
    assert_true(nn_tensor_equal(x, TU_NN(nn_module_forward(d, x))));
    nn_module *r = TU_NN(nn_relu_new());
    assert_int_equal(nn_dropout_seed(r, 1), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "not a Dropout");
    nn_module_free(r);
    nn_module_free(d);
    nn_scope_end(sc);
}

/* train(false) propagates; BatchNorm uses batch stats only in training. */
static void test_batchnorm_modes(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_batch_norm1d_new(2, 1e-5, 0.5, true)));
    nn_module *bn = nn_sequential_get(m, 0);
    static const char *bufs[] = {"0.running_mean", "0.running_var", "0.num_batches_tracked"};
    assert_int_equal(nn_module_num_buffers(m), 3);
    for (int i = 0; i < 3; i++) {
        const char *nm;
        TU_NN(nn_module_buffer(m, i, &nm));
        assert_string_equal(nm, bufs[i]);
    }
    float xv[] = {1, 10, 3, 20};
    int64_t xs[2] = {2, 2};
    nn_tensor *x = tu_tensor(xs, 2, xv);
    nn_tensor *y = TU_NN(nn_module_forward(m, x));
    /* Batch statistics: each column normalises to -1, +1. */
    float out[4];
    TU_OK(nn_tensor_copy_to(y, out, sizeof out));
    assert_float_equal(out[0], -1, 1e-3);
    assert_float_equal(out[3], 1, 1e-3);
    /* running_mean = 0.5 * 0 + 0.5 * batch mean. */
    float rm[2];
    TU_OK(nn_tensor_copy_to(nn_module_get_buffer(m, "0.running_mean"), rm, sizeof rm));
    assert_float_equal(rm[0], 1.0, 1e-6);
    assert_float_equal(rm[1], 7.5, 1e-6);
    assert_int_equal((int)nn_tensor_item(nn_module_get_buffer(m, "0.num_batches_tracked")), 1);
    TU_OK(nn_module_train(m, false));
    assert_false(nn_module_is_training(bn));
    nn_tensor *y2 = TU_NN(nn_module_forward(m, x));
    TU_OK(nn_tensor_copy_to(y2, out, sizeof out));
    /* Eval: (x - running_mean) / sqrt(running_var + eps); var = 0.5 + 0.5 * 2 = 1.5. */
    assert_float_equal(out[0], (1 - 1.0) / sqrt(1.5 + 1e-5), 1e-4);
    assert_float_equal(out[2], (3 - 1.0) / sqrt(1.5 + 1e-5), 1e-4);
    assert_int_equal((int)nn_tensor_item(nn_module_get_buffer(m, "0.num_batches_tracked")), 1);
    nn_scope_end(sc);
    nn_module_free(m);
}

static void test_freezing(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_linear_new(3, 4, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(4, 2, true)));
    TU_OK(nn_module_set_requires_grad(nn_sequential_get(m, 0), false));
    nn_scope *sc = nn_scope_begin();
    int64_t xs[2] = {5, 3};
    nn_tensor *y = TU_NN(nn_module_forward(m, tu_rand(5, xs, 2, -1, 1)));
    TU_OK(nn_backward(nn_sum(y, NULL, 0, false)));
    assert_null(nn_tensor_grad(nn_module_get_parameter(m, "0.weight")));
    assert_null(nn_tensor_grad(nn_module_get_parameter(m, "0.bias")));
    assert_non_null(nn_tensor_grad(nn_module_get_parameter(m, "2.weight")));
    TU_OK(nn_module_zero_grad(m));
    assert_null(nn_tensor_grad(nn_module_get_parameter(m, "2.weight")));
    /* Whole model frozen: the output needs no grad. */
    TU_OK(nn_module_set_requires_grad(m, false));
    y = TU_NN(nn_module_forward(m, tu_rand(5, xs, 2, -1, 1)));
    assert_false(nn_tensor_requires_grad(y));
    nn_scope_end(sc);
    /* Frozen parameters still count and still save. */
    assert_int_equal(nn_module_param_count(m), 3 * 4 + 4 + 4 * 2 + 2);
    nn_module_free(m);
}

static void test_summary_cnn(void **s) {
    (void)s;
    nn_module *m = fmnist_cnn();
    TU_OK(nn_module_set_requires_grad(nn_sequential_get(m, 0), false));
    char *txt = TU_NN(nn_module_summary(m, shp4(1, 1, 28, 28), 4));
    assert_non_null(strstr(txt, "Total params: 421,642\n"));
    assert_non_null(strstr(txt, "Trainable params: 421,322\n"));
    assert_non_null(strstr(txt, "Non-trainable params: 320\n"));
    assert_non_null(strstr(txt, "[1,32,28,28]"));
    assert_non_null(strstr(txt, "[1,3136]"));
    assert_non_null(strstr(txt, "401,536")); /* 7.weight + 7.bias */
    /* Conv 1->32 3x3 on 28x28: 25,088 outputs x (2*9 + 1) FLOPs. */
    assert_non_null(strstr(txt, "476,672"));
    const char *row = strstr(txt, "\n9 ");
    assert_non_null(row);
    assert_non_null(strstr(row, "Linear"));
    nn_free(txt);
    /* Module untouched (training mode kept) and wrong input reported. */
    assert_true(nn_module_is_training(m));
    assert_null(nn_module_summary(m, shp4(1, 3, 28, 28), 4));
    tu_expect_error(NN_ERR_SHAPE, "Conv2d: expected input [N,1,H,W], got [1,3,28,28]");
    nn_module_free(m);
}

static nn_tensor *pass_through(nn_module *self, nn_tensor *x, void *user) {
    (void)self, (void)user;
    return x;
}

static void test_misuse(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_module *c = TU_NN(nn_conv2d_new(3, 8, 3, 1, 1, true));
    assert_null(nn_module_forward(c, nn_tensor_zeros(NN_DTYPE_F32, shp4(2, 4, 8, 8), 4)));
    tu_expect_error(NN_ERR_SHAPE, "Conv2d: expected input [N,3,H,W], got [2,4,8,8]");
    int64_t s3[3] = {3, 8, 8};
    assert_null(nn_module_forward(c, nn_tensor_zeros(NN_DTYPE_F32, s3, 3)));
    tu_expect_error(NN_ERR_SHAPE, "got [3,8,8]");
    nn_module *l = TU_NN(nn_linear_new(5, 2, true));
    int64_t s2[2] = {2, 4};
    assert_null(nn_module_forward(l, nn_tensor_zeros(NN_DTYPE_F32, s2, 2)));
    tu_expect_error(NN_ERR_SHAPE, "Linear: expected input [*,5], got [2,4]");
    /* NULL handles. */
    assert_null(nn_module_forward(NULL, nn_tensor_zeros(NN_DTYPE_F32, s2, 2)));
    tu_expect_error(NN_ERR_NULL, "nn_module_forward");
    assert_null(nn_module_forward(l, NULL));
    tu_expect_error(NN_ERR_NULL, "Linear");
    nn_module_free(NULL);
    nn_statedict_free(NULL);
    assert_int_equal(nn_module_num_parameters(NULL), -1);
    tu_expect_error(NN_ERR_NULL, NULL);
    assert_null(nn_module_parameter(l, 2, NULL));
    tu_expect_error(NN_ERR_RANGE, "index 2");
    assert_null(nn_module_get_parameter(l, "nope"));
    tu_expect_error(NN_ERR_NOT_FOUND, "nope");
    assert_int_equal(nn_module_load_state_dict(l, NULL, true, NULL), NN_ERR_NULL);
    nn_clear_error();
    /* A chain keeps the root cause. */
    assert_null(nn_module_forward(c, nn_module_forward(l, nn_tensor_zeros(NN_DTYPE_F32, s2, 2))));
    tu_expect_error(NN_ERR_SHAPE, "Linear");
    /* Bad constructor arguments. */
    assert_null(nn_linear_new(0, 3, true));
    tu_expect_error(NN_ERR_INVALID, "in_features = 0");
    assert_null(nn_conv2d_new_ex(3, 8, 3, 3, 1, 1, 0, 0, 1, 1, 2, true));
    tu_expect_error(NN_ERR_INVALID, "divisible by groups");
    assert_null(nn_dropout_new(1.5));
    tu_expect_error(NN_ERR_INVALID, "p = 1.5");
    assert_null(nn_group_norm_new(3, 4, 1e-5, true));
    tu_expect_error(NN_ERR_INVALID, "not divisible");
    /* Sequential append consumes even on failure; NULL keeps the error. */
    nn_module *seq = TU_NN(nn_sequential_new());
    assert_int_equal(nn_sequential_append(seq, nn_linear_new(-1, 2, true)), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "in_features = -1");
    assert_int_equal(nn_sequential_append(l, nn_relu_new()), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "not a Sequential");
    nn_module_retain(seq); /* the failed append consumes this reference */
    assert_int_equal(nn_sequential_append(seq, seq), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "contain itself");
    assert_int_equal(nn_sequential_length(seq), 0);
    /* Registration only on user-defined modules, names checked. */
    assert_int_equal(nn_module_register_module(l, "x", nn_relu_new()), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "built-in");
    int dummy = 0;
    nn_module *u = TU_NN(nn_module_custom_new("U", pass_through, &dummy, NULL));
    assert_int_equal(nn_module_register_module(u, "a.b", nn_relu_new()), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "'.'");
    TU_OK(nn_module_register_module(u, "a", nn_relu_new()));
    assert_int_equal(nn_module_register_parameter(u, "a", nn_tensor_zeros(NN_DTYPE_F32, s2, 2)), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "already registered");
    nn_module_free(u);
    /* RNN states of the wrong shape. */
    nn_module *lstm = TU_NN(nn_lstm_new(3, 4, 2, true));
    int64_t xs[3] = {2, 5, 3}, hs[3] = {1, 2, 4};
    assert_null(nn_recurrent_forward(lstm, nn_tensor_zeros(NN_DTYPE_F32, xs, 3),
                                     nn_tensor_zeros(NN_DTYPE_F32, hs, 3), NULL, NULL, NULL));
    tu_expect_error(NN_ERR_SHAPE, "LSTM: expected h0 of shape [2,2,4], got [1,2,4]");
    assert_null(nn_module_forward(lstm, nn_tensor_zeros(NN_DTYPE_F32, s2, 2)));
    tu_expect_error(NN_ERR_SHAPE, "LSTM: expected input [N,T,3]");
    nn_module_free(lstm);
    nn_module_free(seq);
    nn_module_free(l);
    nn_module_free(c);
    nn_scope_end(sc);
}

/* create + forward + backward of a small Sequential under failing allocations. */
static int oom_body(void *ctx) {
    (void)ctx;
    int rc = 1;
    nn_module *m = nn_sequential_new();
    nn_tensor *x = NULL, *y = NULL, *loss = NULL;
    if (!m || nn_sequential_append(m, nn_linear_new(4, 5, true)) || nn_sequential_append(m, nn_relu_new()) ||
        nn_sequential_append(m, nn_dropout_new(0.2)) || nn_sequential_append(m, nn_linear_new(5, 2, true)))
        goto out;
    int64_t xs[2] = {3, 4};
    x = nn_tensor_ones(NN_DTYPE_F32, xs, 2);
    y = x ? nn_module_forward(m, x) : NULL;
    loss = y ? nn_sum(y, NULL, 0, false) : NULL;
    if (!loss || nn_backward(loss)) goto out;
    nn_statedict *sd = nn_module_state_dict(m);
    if (!sd) goto out;
    char *rep = NULL;
    nn_status st = nn_module_load_state_dict(m, sd, true, &rep);
    nn_statedict_free(sd);
    nn_free(rep);
    if (st) goto out;
    char *txt = nn_module_summary(m, xs, 2);
    if (!txt) goto out;
    nn_free(txt);
    rc = nn_module_num_parameters(m) == 4 && nn_tensor_grad(nn_module_parameter(m, 0, NULL)) ? 0 : 1;
out:
    nn_tensor_free(loss);
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_module_free(m);
    return rc;
}

static void test_oom_sweep(void **s) {
    (void)s;
    long n = tu_oom_sweep(oom_body, NULL);
    assert_true(n > 20);
}

/* The internal interface used by model files: config, children, create. */
static void test_internal_interface(void **s) {
    (void)s;
    nn_module *m = fmnist_cnn();
    assert_int_equal(nn__module_num_children(m), 10);
    const char *name;
    nn_module *c0 = nn__module_child(m, 0, &name);
    assert_string_equal(name, "0");
    assert_string_equal(nn__module_type(c0), "Conv2d");
    int n = nn__module_config_count(c0);
    assert_int_equal(n, 12);
    const char *keys[16];
    double vals[16];
    for (int i = 0; i < n; i++) TU_OK(nn__module_config_get(c0, i, &keys[i], &vals[i]));
    assert_string_equal(keys[0], "in_channels");
    assert_true(vals[1] == 32 && vals[6] == 1);
    /* Rebuild every child from its config into a new Sequential. */
    nn_module *r = TU_NN(nn__module_create("Sequential", NULL, NULL, 0));
    for (int i = 0; i < nn__module_num_children(m); i++) {
        nn_module *ch = nn__module_child(m, i, &name);
        int k = nn__module_config_count(ch);
        for (int j = 0; j < k; j++) TU_OK(nn__module_config_get(ch, j, &keys[j], &vals[j]));
        nn_module *nc = TU_NN(nn__module_create(nn__module_type(ch), keys, vals, k));
        TU_OK(nn__module_add_child(r, name, nc));
        nn_module_free(nc);
    }
    nn_statedict *sd = TU_NN(nn_module_state_dict(m));
    TU_OK(nn_module_load_state_dict(r, sd, true, NULL));
    nn_statedict_free(sd);
    nn_scope *sc = nn_scope_begin();
    nn_tensor *x = tu_rand(9, shp4(1, 1, 28, 28), 4, 0, 1);
    assert_true(nn_tensor_equal(TU_NN(nn_module_forward(m, x)), TU_NN(nn_module_forward(r, x))));
    nn_scope_end(sc);
    /* LayerNorm reports only its used shape keys. */
    int64_t ls[2] = {3, 4};
    nn_module *ln = TU_NN(nn_layer_norm_new(ls, 2, 1e-5, true));
    assert_int_equal(nn__module_config_count(ln), 5);
    nn_module_free(ln);
    /* Errors. */
    const char *k1[] = {"in_features"};
    double v1[] = {3};
    assert_null(nn__module_create("Linear", k1, v1, 1));
    tu_expect_error(NN_ERR_FORMAT, "out_features");
    assert_null(nn__module_create("Bogus", NULL, NULL, 0));
    tu_expect_error(NN_ERR_FORMAT, "Bogus");
    assert_null(nn__module_create("Custom:Res", NULL, NULL, 0));
    tu_expect_error(NN_ERR_UNSUPPORTED, "Custom:Res");
    const char *k2[] = {"in_features", "out_features"};
    double v2[] = {3, -2};
    assert_null(nn__module_create("Linear", k2, v2, 2));
    tu_expect_error(NN_ERR_FORMAT, "out_features = -2");
    nn_module *lin = TU_NN(nn_linear_new(2, 2, true));
    assert_int_equal(nn__module_add_child(r, "11", lin), NN_ERR_FORMAT);
    tu_expect_error(NN_ERR_FORMAT, "expected '10'");
    assert_int_equal(nn__module_add_child(lin, "x", r), NN_ERR_FORMAT);
    nn_clear_error();
    nn_module_free(lin);
    nn_module_free(r);
    nn_module_free(m);
}

static void test_init_functions(void **s) {
    (void)s;
    nn_generator *g = TU_NN(nn_generator_new(5));
    int64_t shapes[2][2] = {{6, 4}, {3, 7}};
    for (int k = 0; k < 2; k++) {
        int64_t r = shapes[k][0], c = shapes[k][1];
        nn_tensor *t = nn_tensor_zeros(NN_DTYPE_F32, shapes[k], 2);
        TU_OK(nn_init_orthogonal(t, 2.0, g));
        const float *p = nn_tensor_data(t);
        /* Rows (if fewer) or columns are orthogonal with norm gain. */
        bool rows = r < c;
        int64_t n = rows ? r : c, len = rows ? c : r;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                double d = 0;
                for (int64_t q = 0; q < len; q++)
                    d += rows ? (double)p[i * c + q] * p[j * c + q] : (double)p[q * c + i] * p[q * c + j];
                assert_float_equal(d, i == j ? 4.0 : 0.0, 1e-4);
            }
        nn_tensor_free(t);
    }
    int64_t ws[4] = {16, 8, 3, 3};
    nn_tensor *w = nn_tensor_zeros(NN_DTYPE_F32, ws, 4);
    TU_OK(nn_init_xavier_uniform(w, 1.0, g));
    double a = sqrt(6.0 / (72 + 144)), mx = 0, ss = 0;
    const float *p = nn_tensor_data(w);
    for (int64_t i = 0; i < nn_tensor_numel(w); i++) mx = fmax(mx, fabs(p[i]));
    assert_true(mx <= a && mx > 0.9 * a);
    TU_OK(nn_init_kaiming_normal(w, 0, NN_FAN_MODE_IN, NN_NONLINEARITY_RELU, NULL));
    for (int64_t i = 0; i < nn_tensor_numel(w); i++) ss += (double)p[i] * p[i];
    double sd = sqrt(ss / (double)nn_tensor_numel(w)), want = sqrt(2.0 / 72);
    assert_true(fabs(sd - want) < 0.1 * want);
    TU_OK(nn_init_kaiming_uniform(w, sqrt(5.0), NN_FAN_MODE_IN, NN_NONLINEARITY_LEAKY_RELU, g));
    mx = 0;
    for (int64_t i = 0; i < nn_tensor_numel(w); i++) mx = fmax(mx, fabs(p[i]));
    assert_true(mx <= 1 / sqrt(72.0) + 1e-7);
    TU_OK(nn_init_ones(w));
    assert_float_equal(p[5], 1, 0);
    assert_float_equal(nn_init_calculate_gain(NN_NONLINEARITY_TANH, 0), 5.0 / 3, 1e-12);
    int64_t one = 5;
    nn_tensor *v = nn_tensor_zeros(NN_DTYPE_F32, &one, 1);
    assert_int_equal(nn_init_xavier_uniform(v, 1, g), NN_ERR_SHAPE);
    tu_expect_error(NN_ERR_SHAPE, "at least 2 dims");
    assert_int_equal(nn_init_uniform(v, 1, 0, g), NN_ERR_INVALID);
    nn_clear_error();
    nn_tensor_free(v);
    nn_tensor_free(w);
    nn_generator_free(g);
}

/* One module in eval mode serves 4 threads: results bit-identical to a
 * single-thread run, and the module (BatchNorm buffers) unchanged. */
typedef struct {
    nn_module *m;
    nn_tensor *x, *want;
    int ok;
} thread_arg;

static void *infer_thread(void *p) {
    thread_arg *a = p;
    nn_set_grad_enabled(false);
    a->ok = 1;
    for (int i = 0; i < 20; i++) {
        nn_tensor *y = nn_module_forward(a->m, a->x);
        if (!y || !nn_tensor_equal(y, a->want)) a->ok = 0;
        nn_tensor_free(y);
    }
    return NULL;
}

static void test_threaded_inference(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_conv2d_new(1, 4, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(m, nn_batch_norm2d_new(4, 1e-5, 0.1, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_dropout_new(0.5)));
    TU_OK(nn_sequential_append(m, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(m, nn_linear_new(4 * 36, 3, true)));
    TU_OK(nn_module_train(m, false));
    nn_tensor *x = tu_rand(11, shp4(2, 1, 6, 6), 4, -1, 1);
    bool prev = nn_set_grad_enabled(false);
    nn_tensor *want = TU_NN(nn_module_forward(m, x));
    nn_set_grad_enabled(prev);
    nn_tensor *rm = nn_tensor_clone(nn_module_get_buffer(m, "1.running_mean"));
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){m, x, want, 0};
        assert_int_equal(pthread_create(&th[i], NULL, infer_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 1);
    }
    assert_true(nn_tensor_equal(rm, nn_module_get_buffer(m, "1.running_mean")));
    assert_int_equal((int)nn_tensor_item(nn_module_get_buffer(m, "1.num_batches_tracked")), 0);
    nn_tensor_free(rm);
    nn_tensor_free(want);
    nn_tensor_free(x);
    nn_module_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn_shapes_and_names),
        cmocka_unit_test(test_linear_values),
        cmocka_unit_test(test_default_init),
        cmocka_unit_test(test_state_dict_round_trip),
        cmocka_unit_test(test_load_strict_and_lenient),
        cmocka_unit_test(test_all_shapes),
        cmocka_unit_test(test_dropout_modes),
        cmocka_unit_test(test_batchnorm_modes),
        cmocka_unit_test(test_freezing),
        cmocka_unit_test(test_summary_cnn),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_oom_sweep),
        cmocka_unit_test(test_internal_interface),
        cmocka_unit_test(test_init_functions),
        cmocka_unit_test(test_threaded_inference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
