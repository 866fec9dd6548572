/* Sequence-model modules and containers of issue 12: Select, ModuleList,
 * ModuleDict, Embedding(padding_idx), bidirectional/stacked recurrent
 * layers and weight tying, each through a model-file round trip. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Save m to a buffer and load it back (asserting success). */
static nn_model *roundtrip(nn_module *m) {
    void *buf;
    size_t n;
    TU_OK(nn_model_save_buffer(m, NULL, NULL, &buf, &n));
    nn_model *model = nn_model_load_buffer(buf, n, NULL);
    if (!model) fail_msg("nn_model_load_buffer: %s", nn_last_error());
    nn_free(buf);
    return model;
}

/* The f32 elements of t, row-major (a contiguous copy owned by the open scope). */
static const float *f32(nn_tensor *t) { return nn_tensor_data(TU_NN(nn_tensor_contiguous(t))); }

/* Exact equality of two f32 tensors of one shape. */
static void assert_same(const nn_tensor *a, const nn_tensor *b) {
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(nn_tensor_ndim(a), nn_tensor_ndim(b));
    for (int d = 0; d < nn_tensor_ndim(a); d++)
        assert_int_equal(nn_tensor_size(a, d), nn_tensor_size(b, d));
    const float *pa = f32((nn_tensor *)a), *pb = f32((nn_tensor *)b);
    for (int64_t i = 0; i < nn_tensor_numel(a); i++)
        if (pa[i] != pb[i]) fail_msg("element %lld: %g != %g", (long long)i, pa[i], pb[i]);
}

/* ---------------------------------------------------------------- Select */

static void test_select_values(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    int64_t shape[3] = {2, 3, 4};
    nn_tensor *x = tu_rand(3, shape, 3, -1, 1);
    const float *px = f32(x);
    nn_module *last = TU_NN(nn_select_new(1, -1)), *first = TU_NN(nn_select_new(-2, 0));
    nn_module *feat = TU_NN(nn_select_new(2, 2));
    nn_tensor *y = TU_NN(nn_module_forward(last, x)), *y0 = TU_NN(nn_module_forward(first, x));
    nn_tensor *yf = TU_NN(nn_module_forward(feat, x));
    assert_int_equal(nn_tensor_ndim(y), 2);
    assert_int_equal(nn_tensor_size(y, 0), 2);
    assert_int_equal(nn_tensor_size(y, 1), 4);
    assert_int_equal(nn_tensor_size(yf, 1), 3);
    const float *py = f32(y), *py0 = f32(y0), *pyf = f32(yf);
    for (int n = 0; n < 2; n++) {
        for (int c = 0; c < 4; c++) {
            assert_true(py[n * 4 + c] == px[n * 12 + 2 * 4 + c]);
            assert_true(py0[n * 4 + c] == px[n * 12 + c]);
        }
        for (int t = 0; t < 3; t++) assert_true(pyf[n * 3 + t] == px[n * 12 + t * 4 + 2]);
    }
    /* Out of range for this input: a clear error, not a crash. */
    nn_module *far = TU_NN(nn_select_new(1, 3)), *neg = TU_NN(nn_select_new(1, -4));
    nn_module *bad_dim = TU_NN(nn_select_new(3, 0));
    assert_null(nn_module_forward(far, x));
    tu_expect_error(NN_ERR_RANGE, "index 3 is out of range for dim 1 of size 3");
    assert_null(nn_module_forward(neg, x));
    tu_expect_error(NN_ERR_RANGE, "index -4");
    assert_null(nn_module_forward(bad_dim, x));
    tu_expect_error(NN_ERR_RANGE, "dim 3 is out of range");
    assert_null(nn_select_new(9, 0));
    tu_expect_error(NN_ERR_INVALID, "Select: dim = 9");
    assert_null(nn_select_new(-9, 0));
    tu_expect_error(NN_ERR_INVALID, "Select: dim = -9");
    nn_module_free(far), nn_module_free(neg), nn_module_free(bad_dim);
    nn_module_free(last), nn_module_free(first), nn_module_free(feat);
    nn_scope_end(sc);
}

/* Gradient flows to the selected step only. */
static nn_tensor *select_fn(nn_tensor **in, void *ctx) { return nn_module_forward(ctx, in[0]); }

static void test_select_grad(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    int64_t shape[3] = {2, 3, 2};
    nn_tensor *x = tu_rand(5, shape, 3, -1, 1);
    nn_tensor_set_requires_grad(x, true);
    nn_module *m = TU_NN(nn_select_new(1, -2));
    tu_gradcheck(select_fn, &x, 1, m, 1e-3, 1e-3, 1e-2);
    nn_module_free(m);
    nn_scope_end(sc);
}

/* The case: an LSTM classifier that takes the last time step
 * deploys through a model file with no user code. */
static void test_lstm_select_linear_roundtrip(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_generator_seed(NULL, 42);
    nn_module *net = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(net, nn_lstm_new(3, 5, 2, true)));
    TU_OK(nn_sequential_append(net, nn_select_new(1, -1)));
    TU_OK(nn_sequential_append(net, nn_linear_new(5, 4, true)));
    TU_OK(nn_module_train(net, false));
    int64_t shape[3] = {2, 6, 3};
    nn_tensor *x = tu_rand(7, shape, 3, -1, 1);
    nn_tensor *want = TU_NN(nn_module_forward(net, x));
    assert_int_equal(nn_tensor_ndim(want), 2);
    assert_int_equal(nn_tensor_size(want, 1), 4);
    nn_model *model = roundtrip(net);
    nn_module *got = nn_model_module(model);
    assert_string_equal(nn_module_type_name(nn_sequential_get(got, 1)), "Select");
    assert_same(TU_NN(nn_model_predict(model, x)), want);
    /* The independent oracle: the LSTM's output at the last step, through Linear. */
    nn_tensor *seq = TU_NN(nn_module_forward(nn_sequential_get(net, 0), x));
    nn_tensor *last = nn_squeeze(nn_slice(seq, 1, 5, 6, 1), 1);
    assert_same(TU_NN(nn_module_forward(nn_sequential_get(net, 2), last)), want);
    nn_model_free(model);
    nn_module_free(net);
    nn_scope_end(sc);
}

/* ------------------------------------------------- ModuleList, ModuleDict */

static void test_module_list(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_module *l = TU_NN(nn_module_list_new());
    assert_string_equal(nn_module_type_name(l), "ModuleList");
    TU_OK(nn_module_list_append(l, nn_linear_new(3, 4, true)));
    TU_OK(nn_module_list_append(l, nn_relu_new()));
    TU_OK(nn_module_list_append(l, nn_linear_new(4, 2, false)));
    assert_int_equal(nn_module_num_children(l), 3);
    const char *name;
    nn_module *c = TU_NN(nn_module_child(l, -1, &name));
    assert_string_equal(name, "2");
    assert_string_equal(nn_module_type_name(c), "Linear");
    assert_ptr_equal(nn_module_get_module(l, "1"), nn_module_child(l, 1, NULL));
    assert_null(nn_module_child(l, 3, &name));
    tu_expect_error(NN_ERR_RANGE, "index 3 out of range for 3 children");
    assert_null(name);
    /* PyTorch's names and order. */
    static const char *names[] = {"0.weight", "0.bias", "2.weight"};
    assert_int_equal(nn_module_num_parameters(l), 3);
    for (int i = 0; i < 3; i++) {
        TU_NN(nn_module_parameter(l, i, &name));
        assert_string_equal(name, names[i]);
    }
    /* No forward of its own. */
    int64_t shape[2] = {2, 3};
    nn_tensor *x = tu_rand(1, shape, 2, -1, 1);
    assert_null(nn_module_forward(l, x));
    tu_expect_error(NN_ERR_UNSUPPORTED, "ModuleList has no forward of its own");
    /* Misuse: wrong container kind, NULL child, cycles. */
    nn_module *seq = TU_NN(nn_sequential_new());
    assert_int_equal(nn_module_list_append(seq, nn_relu_new()), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "not a ModuleList");
    nn_clear_error(); /* a NULL is reported as such when nothing is pending */
    assert_int_equal(nn_module_list_append(l, NULL), NN_ERR_NULL);
    assert_int_equal(nn_module_list_append(l, nn_module_retain(l)), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "contain itself");
    assert_int_equal(nn_module_num_children(l), 3);
    /* Round trip: structure and weights. */
    nn_model *model = roundtrip(l);
    nn_module *got = nn_model_module(model);
    assert_string_equal(nn_module_type_name(got), "ModuleList");
    assert_int_equal(nn_module_num_children(got), 3);
    for (int i = 0; i < 3; i++) {
        nn_tensor *p = TU_NN(nn_module_parameter(l, i, &name));
        assert_same(TU_NN(nn_module_get_parameter(got, name)), p);
    }
    assert_null(nn_model_predict(model, x));
    tu_expect_error(NN_ERR_UNSUPPORTED, "no forward");
    nn_model_free(model);
    nn_module_free(seq);
    nn_module_free(l);
    nn_scope_end(sc);
}

static void test_module_dict(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_module *d = TU_NN(nn_module_dict_new());
    TU_OK(nn_module_dict_set(d, "encoder", nn_linear_new(3, 4, true)));
    TU_OK(nn_module_dict_set(d, "act", nn_tanh_new()));
    nn_module *inner = TU_NN(nn_module_list_new());
    TU_OK(nn_module_list_append(inner, nn_linear_new(4, 4, false)));
    TU_OK(nn_module_dict_set(d, "blocks", inner));
    /* Replacing keeps the key's place (insertion order, like PyTorch). */
    TU_OK(nn_module_dict_set(d, "act", nn_sigmoid_new()));
    assert_int_equal(nn_module_num_children(d), 3);
    const char *name;
    assert_string_equal(nn_module_type_name(TU_NN(nn_module_child(d, 1, &name))), "Sigmoid");
    assert_string_equal(name, "act");
    assert_string_equal(nn_module_type_name(nn_module_get_module(d, "blocks.0")), "Linear");
    TU_NN(nn_module_get_parameter(d, "blocks.0.weight"));
    assert_int_equal(nn_module_dict_set(d, "a.b", nn_relu_new()), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "contain no '.'");
    assert_int_equal(nn_module_dict_set(d, "", nn_relu_new()), NN_ERR_INVALID);
    nn_clear_error(); /* a NULL is reported as such when nothing is pending */
    assert_int_equal(nn_module_dict_set(d, NULL, nn_relu_new()), NN_ERR_NULL);
    assert_int_equal(nn_module_dict_set(d, "act", nn_module_retain(d)), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "contain itself");
    assert_int_equal(nn_module_num_children(d), 3);
    nn_model *model = roundtrip(d);
    nn_module *got = nn_model_module(model);
    assert_string_equal(nn_module_type_name(got), "ModuleDict");
    for (int i = 0; i < 3; i++) {
        const char *a, *b;
        nn_module *ca = TU_NN(nn_module_child(d, i, &a)), *cb = TU_NN(nn_module_child(got, i, &b));
        assert_string_equal(a, b);
        assert_string_equal(nn_module_type_name(ca), nn_module_type_name(cb));
    }
    assert_same(nn_module_get_parameter(got, "blocks.0.weight"),
                nn_module_get_parameter(d, "blocks.0.weight"));
    assert_same(nn_module_get_parameter(got, "encoder.bias"),
                nn_module_get_parameter(d, "encoder.bias"));
    nn_model_free(model);
    nn_module_free(d);
    nn_scope_end(sc);
}

/* ------------------------------------------------------- golden helpers */

static tu_golden *G;

static int setup(void **s) {
    (void)s;
    G = tu_golden_open("seqmod.txt");
    return 0;
}

static int teardown(void **s) {
    (void)s;
    tu_golden_close(G);
    return 0;
}

static nn_tensor *gold(const char *fmt, const char *a) {
    char key[128];
    snprintf(key, sizeof key, fmt, a);
    return tu_golden_get(G, key);
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

/* sum(a * b) */
static nn_tensor *dot(nn_tensor *a, nn_tensor *b) { return nn_sum(nn_mul(a, b), NULL, 0, false); }

/* ------------------------------------------------- Embedding(padding_idx) */

static void check_padded(nn_module *m, const char *name, int64_t pad) {
    nn_scope *sc = nn_scope_begin();
    /* PyTorch zeroes the padding row at construction. */
    nn_tensor *w = TU_NN(nn_module_get_parameter(m, "weight"));
    for (int64_t j = 0; j < 3; j++) {
        int64_t ij[2] = {pad, j};
        double v;
        TU_OK(nn_tensor_get(w, ij, &v));
        assert_true(v == 0);
    }
    load_golden(m, name);
    nn_tensor *y = TU_NN(nn_module_forward(m, tu_golden_get(G, "emb_idx")));
    tu_assert_close(y, gold("%s_y", name), 0, 0, "embedding output");
    TU_OK(nn_backward(dot(y, gold("%s_r", name))));
    tu_assert_close(nn_tensor_grad(w), gold("%s_grad", name), 1e-6, 1e-6, "embedding grad");
    /* Round trip keeps padding_idx: the reloaded table gives no gradient to it either. */
    nn_model *model = roundtrip(m);
    nn_module *got = nn_model_module(model);
    TU_OK(nn_module_train(got, true));
    nn_tensor *y2 = TU_NN(nn_module_forward(got, tu_golden_get(G, "emb_idx")));
    TU_OK(nn_backward(dot(y2, gold("%s_r", name))));
    tu_assert_close(nn_tensor_grad(nn_module_get_parameter(got, "weight")), gold("%s_grad", name),
                    1e-6, 1e-6, "reloaded embedding grad");
    nn_model_free(model);
    nn_scope_end(sc);
}

static void test_embedding_padding_idx(void **s) {
    (void)s;
    nn_module *a = TU_NN(nn_embedding_new_padded(7, 3, 2));
    check_padded(a, "emb_pad2", 2);
    nn_module *b = TU_NN(nn_embedding_new_padded(7, 3, -1));
    check_padded(b, "emb_padm1", 6);
    assert_null(nn_embedding_new_padded(7, 3, 7));
    tu_expect_error(NN_ERR_INVALID, "padding_idx 7 out of range [-7, 7)");
    assert_null(nn_embedding_new_padded(7, 3, -8));
    tu_expect_error(NN_ERR_INVALID, "padding_idx -8");
    nn_scope *sc = nn_scope_begin();
    assert_null(
        nn_embedding_padded(nn_module_get_parameter(a, "weight"), tu_golden_get(G, "emb_idx"), 9));
    tu_expect_error(NN_ERR_RANGE, "nn_embedding_padded: padding_idx 9");
    nn_scope_end(sc);
    nn_module_free(a);
    nn_module_free(b);
}

/* ---------------------------------- bidirectional, stacked recurrent layers */

static void check_bidir(nn_rnn_mode mode, const char *name) {
    nn_scope *sc = nn_scope_begin();
    bool lstm = mode == NN_RNN_MODE_LSTM;
    nn_module *m = TU_NN(nn_recurrent_new(mode, 3, 5, 2, true, false, 0, true));
    load_golden(m, name);
    nn_tensor *x = tu_golden_get(G, "rec_x");
    nn_tensor *y = TU_NN(nn_module_forward(m, x));
    tu_assert_close(y, gold("%s_y", name), 1e-4, 1e-5, name);
    nn_tensor *xg = TU_NN(nn_tensor_clone(x));
    TU_OK(nn_tensor_set_requires_grad(xg, true));
    nn_tensor *hn = NULL, *cn = NULL;
    nn_tensor *c0 = lstm ? gold("%s_c0", name) : NULL;
    nn_tensor *y2 =
        TU_NN(nn_recurrent_forward(m, xg, gold("%s_h0", name), c0, &hn, lstm ? &cn : NULL));
    tu_assert_close(y2, gold("%s_y2", name), 1e-4, 1e-5, "y2");
    tu_assert_close(hn, gold("%s_hn", name), 1e-4, 1e-5, "h_n");
    nn_tensor *loss =
        nn_add(dot(y2, tu_golden_get(G, "rec_ry")), dot(hn, tu_golden_get(G, "rec_rh")));
    if (lstm) {
        tu_assert_close(cn, gold("%s_cn", name), 1e-4, 1e-5, "c_n");
        loss = nn_add(loss, dot(cn, tu_golden_get(G, "rec_rc")));
    }
    TU_OK(nn_backward(loss));
    tu_assert_close(nn_tensor_grad(xg), gold("%s_gx", name), 1e-3, 1e-4, "grad x");
    int64_t np = nn_module_num_parameters(m);
    assert_int_equal(np, 16);
    for (int64_t i = 0; i < np; i++) {
        const char *pn;
        nn_tensor *p = TU_NN(nn_module_parameter(m, i, &pn));
        char key[128];
        snprintf(key, sizeof key, "%s_g.%s", name, pn);
        tu_assert_close(nn_tensor_grad(p), tu_golden_get(G, key), 1e-3, 1e-4, key);
    }
    /* Saved and reloaded: the same module, the same outputs. */
    nn_model *model = roundtrip(m);
    assert_same(TU_NN(nn_model_predict(model, x)), y);
    nn_model_free(model);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_bidir_rnn(void **s) {
    (void)s;
    check_bidir(NN_RNN_MODE_RNN_TANH, "rnn");
    check_bidir(NN_RNN_MODE_RNN_RELU, "rnnrelu");
}

static void test_bidir_lstm(void **s) {
    (void)s;
    check_bidir(NN_RNN_MODE_LSTM, "lstm");
}

static void test_bidir_gru(void **s) {
    (void)s;
    check_bidir(NN_RNN_MODE_GRU, "gru");
}

static void test_recurrent_names_and_misuse(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_module *m = TU_NN(nn_recurrent_new(NN_RNN_MODE_GRU, 3, 4, 2, false, true, 0, true));
    static const char *names[] = {
        "weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse", "weight_hh_l0_reverse",
        "weight_ih_l1", "weight_hh_l1", "weight_ih_l1_reverse", "weight_hh_l1_reverse"};
    assert_int_equal(nn_module_num_parameters(m), 8);
    for (int i = 0; i < 8; i++) {
        const char *nm;
        TU_NN(nn_module_parameter(m, i, &nm));
        assert_string_equal(nm, names[i]);
    }
    assert_int_equal(nn_tensor_size(nn_module_get_parameter(m, "weight_ih_l1"), 1), 8);
    int64_t xs[3] = {2, 6, 3}, bad_h[3] = {2, 2, 4};
    nn_tensor *x = tu_rand(2, xs, 3, -1, 1);
    nn_tensor *hn = NULL;
    nn_tensor *y = TU_NN(nn_recurrent_forward(m, x, NULL, NULL, &hn, NULL));
    assert_int_equal(nn_tensor_size(y, 0), 2);
    assert_int_equal(nn_tensor_size(y, 2), 8);
    assert_int_equal(nn_tensor_size(hn, 0), 4);
    /* h0 must cover both directions. */
    assert_null(nn_recurrent_forward(m, x, tu_rand(3, bad_h, 3, -1, 1), NULL, NULL, NULL));
    tu_expect_error(NN_ERR_SHAPE, "expected h0 of shape [4,2,4]");
    assert_null(nn_recurrent_new(NN_RNN_MODE_LSTM, 3, 4, 2, true, true, 1.5, false));
    tu_expect_error(NN_ERR_INVALID, "LSTM: dropout = 1.5");
    assert_null(nn_recurrent_new((nn_rnn_mode)7, 3, 4, 2, true, true, 0, false));
    tu_expect_error(NN_ERR_INVALID, "mode = 7");
    nn_module_free(m);
    nn_scope_end(sc);
}

/* Inter-layer dropout: identity in eval; with p = 1 in training the second
 * layer sees zeros, so its output equals a one-layer net (layer 1's
 * weights) run on a zero input. */
static void test_recurrent_dropout(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_generator_seed(NULL, 9);
    nn_module *m = TU_NN(nn_recurrent_new(NN_RNN_MODE_LSTM, 3, 4, 2, true, true, 1.0, true));
    nn_module *ref = TU_NN(nn_recurrent_new(NN_RNN_MODE_LSTM, 3, 4, 2, true, true, 0, true));
    nn_module *top = TU_NN(nn_recurrent_new(NN_RNN_MODE_LSTM, 8, 4, 1, true, true, 0, true));
    nn_statedict *sd = TU_NN(nn_module_state_dict(m));
    TU_OK(nn_module_load_state_dict(ref, sd, true, NULL));
    static const char *const pn[] = {"weight_ih_l%d", "weight_hh_l%d", "bias_ih_l%d",
                                     "bias_hh_l%d"};
    for (int j = 0; j < 8; j++) {
        char a[64], b[64];
        snprintf(a, sizeof a, pn[j % 4], 1);
        snprintf(b, sizeof b, pn[j % 4], 0);
        if (j >= 4) strcat(a, "_reverse"), strcat(b, "_reverse");
        TU_OK(nn_tensor_assign(nn_module_get_parameter(top, b), nn_module_get_parameter(m, a)));
    }
    int64_t xs[3] = {2, 5, 3}, zs[3] = {2, 5, 8};
    nn_tensor *x = tu_rand(4, xs, 3, -1, 1);
    TU_OK(nn_module_train(m, false));
    TU_OK(nn_module_train(ref, false));
    assert_same(TU_NN(nn_module_forward(m, x)), TU_NN(nn_module_forward(ref, x)));
    TU_OK(nn_module_train(m, true));
    nn_tensor *zero = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, zs, 3));
    tu_assert_close(TU_NN(nn_module_forward(m, x)), TU_NN(nn_module_forward(top, zero)), 1e-6, 1e-6,
                    "dropout p=1 between layers");
    /* Saved with its options. */
    nn_model *model = roundtrip(m);
    nn_tensor *xt = tu_rand(5, xs, 3, -1, 1);
    TU_OK(nn_module_train(m, false));
    assert_same(TU_NN(nn_model_predict(model, xt)), TU_NN(nn_module_forward(m, xt)));
    nn_model_free(model);
    nn_statedict_free(sd);
    nn_module_free(m), nn_module_free(ref), nn_module_free(top);
    nn_scope_end(sc);
}

/* ------------------------------------------------------------ weight tying */

/* Embedding(10, 4) -> Linear(4, 10, no bias): the GPT-style tied head. */
static nn_module *tied_lm(bool tie) {
    nn_module *net = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(net, nn_embedding_new(10, 4)));
    TU_OK(nn_sequential_append(net, nn_linear_new(4, 10, false)));
    if (tie) TU_OK(nn_module_tie(net, "1.weight", "0.weight"));
    return net;
}

static void test_weight_tying(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_generator_seed(NULL, 11);
    nn_module *net = tied_lm(true);
    nn_tensor *w = TU_NN(nn_module_get_parameter(net, "0.weight"));
    assert_ptr_equal(nn_module_get_parameter(net, "1.weight"), w);
    assert_int_equal(nn_module_num_parameters(net), 1); /* listed once */
    nn_statedict *sd = TU_NN(nn_module_state_dict(net));
    assert_int_equal(nn_statedict_size(sd), 2); /* under both names, like PyTorch */
    nn_statedict_free(sd);
    /* The oracle: the same weights untied; a tied gradient is the sum of both uses. */
    nn_module *free_net = tied_lm(false);
    TU_OK(nn_tensor_assign(nn_module_get_parameter(free_net, "0.weight"), w));
    TU_OK(nn_tensor_assign(nn_module_get_parameter(free_net, "1.weight"), w));
    int64_t xs[2] = {2, 3};
    int64_t idx[6] = {1, 4, 9, 0, 4, 7};
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, xs, 2, idx));
    int64_t ys[3] = {2, 3, 10};
    nn_tensor *r = tu_rand(12, ys, 3, -1, 1);
    nn_tensor *y = TU_NN(nn_module_forward(net, x));
    assert_same(y, TU_NN(nn_module_forward(free_net, x)));
    TU_OK(nn_backward(dot(y, r)));
    TU_OK(nn_backward(dot(nn_module_forward(free_net, x), r)));
    nn_tensor *gsum = nn_add(nn_tensor_grad(nn_module_get_parameter(free_net, "0.weight")),
                             nn_tensor_grad(nn_module_get_parameter(free_net, "1.weight")));
    tu_assert_close(nn_tensor_grad(w), gsum, 1e-6, 1e-6, "tied gradient");
    /* Stored once: the file is smaller than the untied one by the tensor. */
    void *b1, *b2;
    size_t n1, n2;
    TU_OK(nn_model_save_buffer(net, NULL, NULL, &b1, &n1));
    TU_OK(nn_model_save_buffer(free_net, NULL, NULL, &b2, &n2));
    assert_true(n2 > n1 + 100); /* 160 bytes of data and a table entry, less the tie */
    nn_free(b1);
    nn_free(b2);
    /* Reloaded: tied again, same predictions, and saving it again gives the same file. */
    nn_model *model = roundtrip(net);
    nn_module *got = nn_model_module(model);
    assert_ptr_equal(nn_module_get_parameter(got, "1.weight"),
                     nn_module_get_parameter(got, "0.weight"));
    assert_int_equal(nn_module_num_parameters(got), 1);
    assert_same(TU_NN(nn_model_predict(model, x)), y);
    TU_OK(nn_model_save_buffer(net, NULL, NULL, &b1, &n1));
    TU_OK(nn_model_save_buffer(got, NULL, NULL, &b2, &n2));
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    /* Weights-only loading into a tied net built in code reads the one entry. */
    nn_module *again = tied_lm(true);
    nn_statedict *wsd = TU_NN(nn_statedict_load_buffer(b1, n1, NULL));
    assert_int_equal(nn_statedict_size(wsd), 1);
    nn_statedict_free(wsd);
    TU_OK(nn_module_load_weights_buffer(again, b1, n1, NULL, NULL));
    assert_same(nn_module_get_parameter(again, "1.weight"), w);
    nn_free(b1);
    nn_free(b2);
    nn_model_free(model);
    nn_module_free(again);
    nn_module_free(free_net);
    nn_module_free(net);
    nn_scope_end(sc);
}

/* A checkpoint of a tied net resumes into a tied net built in code. */
static void test_weight_tying_checkpoint(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_generator_seed(NULL, 21);
    nn_module *net = tied_lm(true);
    nn_tensor *w = nn_module_get_parameter(net, "0.weight");
    nn_optim *opt = TU_NN(nn_adam(&w, 1, 1e-2));
    int64_t xs[2] = {1, 3}, idx[3] = {2, 5, 7};
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, xs, 2, idx));
    TU_OK(nn_backward(nn_sum(nn_module_forward(net, x), NULL, 0, false)));
    TU_OK(nn_optim_step(opt));
    nn_io_options *o = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set_training(o, opt, NULL, NULL, 1, 1));
    void *buf;
    size_t n;
    TU_OK(nn_model_save_buffer(net, NULL, o, &buf, &n));
    nn_module *again = tied_lm(true);
    nn_tensor *w2 = nn_module_get_parameter(again, "0.weight");
    nn_optim *opt2 = TU_NN(nn_adam(&w2, 1, 1e-2));
    TU_OK(nn_checkpoint_load_buffer(buf, n, again, opt2, NULL, NULL, NULL, NULL, NULL));
    assert_same(nn_module_get_parameter(again, "1.weight"), w);
    nn_free(buf);
    nn_io_options_free(o);
    nn_optim_free(opt2);
    nn_optim_free(opt);
    nn_module_free(again);
    nn_module_free(net);
    nn_scope_end(sc);
}

static void test_weight_tying_errors(void **s) {
    (void)s;
    nn_module *net = tied_lm(false);
    assert_int_equal(nn_module_tie(net, "1.weight", "0.nothing"), NN_ERR_NOT_FOUND);
    tu_expect_error(NN_ERR_NOT_FOUND, "no parameter named '0.nothing'");
    assert_int_equal(nn_module_tie(net, "2.weight", "0.weight"), NN_ERR_NOT_FOUND);
    assert_int_equal(nn_module_tie(net, "0.weight", "0.weight"), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "to itself");
    nn_clear_error(); /* a NULL is reported as such when nothing is pending */
    assert_int_equal(nn_module_tie(net, NULL, "0.weight"), NN_ERR_NULL);
    nn_module *lin = TU_NN(nn_linear_new(3, 4, true));
    assert_int_equal(nn_module_tie(lin, "weight", "bias"), NN_ERR_SHAPE);
    tu_expect_error(NN_ERR_SHAPE, "cannot tie 'weight' (f32 [4,3]) to a f32 [4] tensor");
    nn_module_free(lin);
    nn_module_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_values),
        cmocka_unit_test(test_select_grad),
        cmocka_unit_test(test_lstm_select_linear_roundtrip),
        cmocka_unit_test(test_module_list),
        cmocka_unit_test(test_module_dict),
        cmocka_unit_test(test_embedding_padding_idx),
        cmocka_unit_test(test_bidir_rnn),
        cmocka_unit_test(test_bidir_lstm),
        cmocka_unit_test(test_bidir_gru),
        cmocka_unit_test(test_recurrent_names_and_misuse),
        cmocka_unit_test(test_recurrent_dropout),
        cmocka_unit_test(test_weight_tying),
        cmocka_unit_test(test_weight_tying_checkpoint),
        cmocka_unit_test(test_weight_tying_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
