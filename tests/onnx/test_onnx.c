/* ONNX import: PyTorch's exports of the seed's CNN and MLP, a residual
 * block, an LSTM classifier, a 2-layer TransformerEncoder and a small GPT
 * (tests/onnx/make_models.py, opsets 13 and 17) run in libnn and match
 * PyTorch's outputs (the golden .out files written by the same script);
 * unsupported operators and broken graphs fail with clear errors. */
#include "testutil.h"
#include "onnx/onnx.pb-c.h" /* generated in the build tree: the scale test builds a graph */

#include <math.h>
#include <pthread.h>
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

static void *read_file(const char *rel, size_t *len) {
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

/* An operator libnn does not run: the error names it, the node and the opset. */
static void test_unsupported_op(void **state) {
    (void)state;
    nn_model *m = nn_onnx_load(tu_data_path("onnx/models/unsupported_op17.onnx"), NULL);
    assert_null(m);
    const char *msg = nn_last_error();
    if (!strstr(msg, "my_hardmax") || !strstr(msg, "opset 17")) fail_msg("message: %s", msg);
    tu_expect_error(NN_ERR_UNSUPPORTED, "operator Hardmax");
}

/* The hostile catalogue: each file breaks one rule and gets its own error. */
static void test_hostile(void **state) {
    (void)state;
    static const struct {
        const char *file;
        nn_status st;
        const char *msg;
    } cases[] = {
        {"dangling_input.onnx", NN_ERR_FORMAT, "'nowhere', which nothing defines"},
        {"cycle.onnx", NN_ERR_FORMAT, "cycle"},
        {"defined_twice.onnx", NN_ERR_FORMAT, "defined twice"},
        {"raw_data_short.onnx", NN_ERR_FORMAT, "35 bytes of raw data"},
        {"huge_dims.onnx", NN_ERR_OVERFLOW, "overflows"},
        {"old_opset.onnx", NN_ERR_UNSUPPORTED, "opset 7"},
        {"undefined_output.onnx", NN_ERR_FORMAT, "graph output 'y' is not defined"},
        {"float_data_short.onnx", NN_ERR_FORMAT, "holds 8 elements"},
        {"deep_nesting.onnx", NN_ERR_LIMIT, "nest deeper"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "onnx/hostile/%s", cases[i].file);
        nn_model *m = nn_onnx_load(tu_data_path(rel), NULL);
        if (m) fail_msg("%s loaded", cases[i].file);
        if (nn_last_status() != cases[i].st || !strstr(nn_last_error(), cases[i].msg))
            fail_msg("%s: got %d '%s'", cases[i].file, (int)nn_last_status(), nn_last_error());
    }
    /* Errors found when running: an axis out of range, a reshape that does not fit. */
    const char *run_fail[] = {"bad_axis.onnx", "reshape_bad.onnx"};
    for (int i = 0; i < 2; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "onnx/hostile/%s", run_fail[i]);
        nn_model *m = TU_NN(nn_onnx_load(tu_data_path(rel), NULL));
        nn_tensor *x = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){2, 3}, 2));
        assert_null(nn_model_predict(m, x));
        assert_true(nn_last_status() == NN_ERR_RANGE || nn_last_status() == NN_ERR_SHAPE);
        nn_tensor_free(x);
        nn_model_free(m);
    }
    /* Not a protobuf; an empty buffer is a model without a graph. */
    assert_null(nn_onnx_load_buffer("\xff\xff\xff\xff", 4, NULL));
    tu_expect_error(NN_ERR_FORMAT, "not an ONNX model");
    assert_null(nn_onnx_load_buffer("", 0, NULL));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT);
    assert_null(nn_onnx_load("/nonexistent/model.onnx", NULL));
    assert_int_equal(nn_last_status(), NN_ERR_IO);
}

/* Every prefix and every single-byte flip of a small valid model: an error
 * or a model, never a crash (run under ASan/valgrind in CI). */
static void test_truncate_flip(void **state) {
    (void)state;
    size_t len;
    uint8_t *p = read_file("onnx/hostile/valid_matmul.onnx", &len);
    nn_tensor *x = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){2, 3}, 2));
    int loaded = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        nn_model *m = nn_onnx_load_buffer(p, cut, NULL);
        if (m) {
            nn_tensor_free(nn_model_predict(m, x));
            loaded++;
        }
        nn_model_free(m);
    }
    assert_true(loaded >= 1); /* the whole file */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            p[i] ^= (uint8_t)(1u << bit);
            nn_model *m = nn_onnx_load_buffer(p, len, NULL);
            if (m) nn_tensor_free(nn_model_predict(m, x));
            nn_model_free(m);
            p[i] ^= (uint8_t)(1u << bit);
        }
    }
    nn_tensor_free(x);
    free(p);
}

/* Path, buffer and stream load the same model; metadata names the producer. */
static size_t g_pos, g_len;
static const uint8_t *g_data;
static int64_t read_cb(void *buf, size_t size, void *user) {
    (void)user;
    size_t n = g_len - g_pos < size ? g_len - g_pos : size;
    if (n > 7) n = 7; /* short reads */
    memcpy(buf, g_data + g_pos, n);
    g_pos += n;
    return (int64_t)n;
}

static void test_sources_and_meta(void **state) {
    (void)state;
    size_t len;
    void *p = read_file("onnx/models/mlp_op13.onnx", &len);
    nn_model *a = TU_NN(nn_onnx_load_buffer(p, len, NULL));
    g_pos = 0, g_len = len, g_data = p;
    nn_model *b = TU_NN(nn_onnx_load_stream(read_cb, NULL, NULL));
    nn_tensor *x = read_array("onnx/models/mlp.in");
    nn_tensor *ya = TU_NN(nn_model_predict(a, x)), *yb = TU_NN(nn_model_predict(b, x));
    assert_true(nn_tensor_equal(ya, yb));
    const nn_meta *meta = nn_model_meta(a);
    assert_string_equal(nn_meta_get_string(meta, "onnx.producer_name"), "pytorch");
    double opset = 0;
    TU_OK(nn_meta_get_number(meta, "onnx.opset", &opset));
    assert_true(opset == 13);
    /* The cap on bytes applies to every source. */
    nn_io_options *o = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MAX_BYTES, 1000));
    assert_null(nn_onnx_load_buffer(p, len, o));
    tu_expect_error(NN_ERR_LIMIT, "limit");
    g_pos = 0;
    assert_null(nn_onnx_load_stream(read_cb, NULL, o));
    tu_expect_error(NN_ERR_LIMIT, "limit");
    assert_null(nn_onnx_load(tu_data_path("onnx/models/mlp_op13.onnx"), o));
    tu_expect_error(NN_ERR_LIMIT, "limit");
    nn_io_options_free(o);
    nn_tensor_free(ya);
    nn_tensor_free(yb);
    nn_tensor_free(x);
    nn_model_free(a);
    nn_model_free(b);
    free(p);
}

/* Initializers are parameters under PyTorch's names; an imported model
 * trains: its gradients equal those of the same network built from libnn
 * layers with the same weights. */
static void test_parameters_train(void **state) {
    (void)state;
    nn_model *model = TU_NN(nn_onnx_load(tu_data_path("onnx/models/mlp_op17.onnx"), NULL));
    nn_module *m = nn_model_module(model);
    nn_tensor *w1 = TU_NN(nn_module_get_parameter(m, "1.weight"));
    assert_int_equal(nn_tensor_size(w1, 0), 16);
    assert_int_equal(nn_module_num_parameters(m), 6);
    /* The same MLP from libnn layers, weights copied through the state dict. */
    nn_module *ref = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(ref, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(ref, nn_linear_new(784, 16, true)));
    TU_OK(nn_sequential_append(ref, nn_relu_new()));
    TU_OK(nn_sequential_append(ref, nn_linear_new(16, 16, true)));
    TU_OK(nn_sequential_append(ref, nn_relu_new()));
    TU_OK(nn_sequential_append(ref, nn_linear_new(16, 10, true)));
    nn_statedict *sd = TU_NN(nn_module_state_dict(m));
    TU_OK(nn_module_load_state_dict(ref, sd, true, NULL));
    nn_statedict_free(sd);
    nn_tensor *x = read_array("onnx/models/mlp.in");
    nn_tensor *lbl = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, (int64_t[]){3}, 1,
                                               (int64_t[]){1, 7, 3}));
    TU_OK(nn_module_train(m, true));
    nn_module *nets[2] = {m, ref};
    for (int k = 0; k < 2; k++) {
        nn_scope *s = nn_scope_begin();
        nn_tensor *loss = nn_cross_entropy(nn_module_forward(nets[k], x), lbl);
        TU_OK(nn_backward(loss));
        nn_scope_end(s);
    }
    for (int64_t i = 0; i < nn_module_num_parameters(m); i++) {
        const char *name;
        nn_tensor *p = nn_module_parameter(m, i, &name);
        nn_tensor *q = TU_NN(nn_module_get_parameter(ref, name));
        assert_non_null(nn_tensor_grad(p));
        tu_assert_close(nn_tensor_grad(p), nn_tensor_grad(q), 1e-5, 1e-7, name);
    }
    nn_tensor_free(x);
    nn_tensor_free(lbl);
    nn_module_free(ref);
    nn_model_free(model);
}

/* Out of memory at every allocation of an import and a forward: a clean
 * NN_ERR_NOMEM, no leak. */
static void *g_oom_data;
static size_t g_oom_len;
static int oom_body(void *ctx) {
    (void)ctx;
    nn_model *m = nn_onnx_load_buffer(g_oom_data, g_oom_len, NULL);
    if (!m) return 1;
    nn_tensor *x = nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){2, 3}, 2);
    nn_tensor *y = x ? nn_model_predict(m, x) : NULL;
    int rc = y ? 0 : 1;
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_model_free(m);
    return rc;
}

static void test_oom(void **state) {
    (void)state;
    g_oom_data = read_file("onnx/hostile/valid_matmul.onnx", &g_oom_len);
    tu_alloc_install();
    long sites = tu_oom_sweep(oom_body, NULL);
    tu_alloc_uninstall();
    assert_true(sites > 10);
    free(g_oom_data);
}

/* A graph of two inputs runs through nn_module_forward_n; one input is an error. */
static void test_two_inputs(void **state) {
    (void)state;
    nn_model *m = TU_NN(nn_onnx_load(tu_data_path("onnx/models/two_inputs_op17.onnx"), NULL));
    nn_module *g = nn_model_module(m);
    int lo, hi;
    TU_OK(nn_module_num_inputs(g, &lo, &hi));
    nn_tensor *x = TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){2, 3}, 2));
    nn_tensor *b = TU_NN(nn_tensor_full(NN_DTYPE_F32, (int64_t[]){2, 3}, 2, 0.25));
    nn_tensor *y = TU_NN(nn_module_forward_n(g, (nn_tensor *[]){x, b}, 2));
    for (int i = 0; i < 6; i++) assert_float_equal(((float *)nn_tensor_data(y))[i], 1.75, 1e-6);
    assert_null(nn_module_forward(g, x));
    tu_expect_error(NN_ERR_INVALID, "takes 2 input(s)");
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_tensor_free(b);
    nn_model_free(m);
}

/* One imported model shared by 4 threads, each predicting 10 times: every
 * result bit-identical to the single-threaded one (the graph is immutable
 * after import; values live per call). */
typedef struct shared {
    nn_model *m;
    nn_tensor *x, *want;
    int bad;
} shared;

static void *predict_loop(void *arg) {
    shared *s = arg;
    for (int i = 0; i < 10; i++) {
        nn_tensor *y = nn_model_predict(s->m, s->x);
        if (!y || !nn_tensor_equal(y, s->want)) __atomic_add_fetch(&s->bad, 1, __ATOMIC_RELAXED);
        nn_tensor_free(y);
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    shared s = {0};
    s.m = TU_NN(nn_onnx_load(tu_data_path("onnx/models/gpt_op17.onnx"), NULL));
    s.x = read_array("onnx/models/gpt.in");
    s.want = TU_NN(nn_model_predict(s.m, s.x));
    pthread_t th[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, predict_loop, &s), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    assert_int_equal(s.bad, 0);
    nn_tensor_free(s.want);
    nn_tensor_free(s.x);
    nn_model_free(s.m);
}

/* A chain of 200,000 alternating Erf and Relu nodes, listed in reverse
 * order (the file's order is not trusted): import and run stay linear (a
 * quadratic step anywhere would blow the test's timeout). */
static void test_scale(void **state) {
    (void)state;
    enum { N = 200000 };
    Onnx__NodeProto *nodes = calloc(N, sizeof *nodes);
    Onnx__NodeProto **np = calloc(N, sizeof *np);
    char (*names)[16] = calloc(N + 1, sizeof *names);
    char **ins = calloc(N, sizeof *ins), **outs = calloc(N, sizeof *outs);
    for (int i = 0; i <= N; i++) snprintf(names[i], 16, i == 0 ? "x" : i == N ? "y" : "v%d", i);
    for (int i = 0; i < N; i++) {
        Onnx__NodeProto *n = &nodes[i];
        onnx__node_proto__init(n);
        ins[i] = names[i];
        outs[i] = names[i + 1];
        n->n_input = n->n_output = 1;
        n->input = &ins[i];
        n->output = &outs[i];
        n->op_type = i % 2 ? "Relu" : "Erf";
        np[N - 1 - i] = n;
    }
    Onnx__TensorShapeProto__Dimension d1 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT, *dp = &d1;
    d1.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d1.dim_value = 4;
    Onnx__TensorShapeProto shp = ONNX__TENSOR_SHAPE_PROTO__INIT;
    shp.n_dim = 1;
    shp.dim = &dp;
    Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
    tt.has_elem_type = 1;
    tt.elem_type = 1;
    tt.shape = &shp;
    Onnx__TypeProto ty = ONNX__TYPE_PROTO__INIT;
    ty.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    ty.tensor_type = &tt;
    Onnx__ValueInfoProto vx = ONNX__VALUE_INFO_PROTO__INIT, vy = ONNX__VALUE_INFO_PROTO__INIT;
    vx.name = "x", vx.type = &ty, vy.name = "y", vy.type = &ty;
    Onnx__ValueInfoProto *pvx = &vx, *pvy = &vy;
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    g.n_node = N, g.node = np, g.n_input = 1, g.input = &pvx, g.n_output = 1, g.output = &pvy;
    Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT, *pos = &os;
    os.domain = "", os.has_version = 1, os.version = 17;
    Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
    mp.has_ir_version = 1, mp.ir_version = 8, mp.n_opset_import = 1, mp.opset_import = &pos;
    mp.graph = &g;
    size_t len = onnx__model_proto__get_packed_size(&mp);
    uint8_t *buf = malloc(len);
    onnx__model_proto__pack(&mp, buf);
    nn_model *m = nn_onnx_load_buffer(buf, len, NULL);
    if (!m) fail_msg("%s", nn_last_error());
    nn_tensor *x = TU_NN(nn_tensor_full(NN_DTYPE_F32, (int64_t[]){4}, 1, 0.5));
    nn_tensor *y = TU_NN(nn_model_predict(m, x));
    /* relu(erf(.)) of a positive value stays in (0, 1) */
    float v = ((float *)nn_tensor_data(y))[0];
    assert_true(v > 0 && v < 1);
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_model_free(m);
    free(buf), free(nodes), free(np), free(names), free(ins), free(outs);
}

/* --------------------------------------------------------------- export */

static nn_module *seq(nn_module **layers, int n) {
    nn_module *s = TU_NN(nn_sequential_new());
    for (int i = 0; i < n; i++) TU_OK(nn_sequential_append(s, layers[i]));
    return s;
}

/* libnn export -> libnn import: the imported graph computes what the module
 * does (same kernels, so within f32 rounding of a different op order), and
 * its state dict has the module's names and values. */
static void round_trip(nn_module *m, nn_dtype dt, const int64_t *shape, int ndim, nn_tensor *x) {
    TU_OK(nn_module_train(m, false));
    void *data;
    size_t len;
    TU_OK(nn_onnx_save_buffer(m, dt, shape, ndim, NULL, &data, &len));
    nn_model *back = nn_onnx_load_buffer(data, len, NULL);
    if (!back) fail_msg("%s", nn_last_error());
    nn_free(data);
    bool prev = nn_set_grad_enabled(false);
    nn_tensor *want = TU_NN(nn_module_forward(m, x));
    nn_tensor *got = TU_NN(nn_model_predict(back, x));
    nn_set_grad_enabled(prev);
    tu_assert_close(got, want, 1e-5, 1e-6, nn_module_type_name(nn_sequential_get(m, 0)));
    /* Parameters under the same names (recurrent layers excepted: ONNX
     * stores their gates in another order). */
    nn_module *im = nn_model_module(back);
    for (int64_t i = 0; i < nn_module_num_parameters(m); i++) {
        const char *name;
        nn_tensor *p = nn_module_parameter(m, i, &name);
        if (strstr(name, "_l0") || strstr(name, "_l1")) continue;
        nn_tensor *q = nn_module_get_parameter(im, name);
        if (!q) fail_msg("parameter %s missing after the round trip: %s", name, nn_last_error());
        assert_true(nn_tensor_equal(p, q));
    }
    nn_tensor_free(want);
    nn_tensor_free(got);
    nn_model_free(back);
}

static void test_export_round_trip(void **state) {
    (void)state;
    nn_generator_seed(NULL, 5);
    int64_t img[4] = {2, 3, 12, 12};
    nn_tensor *x = TU_NN(nn_randn(NULL, img, 4));
    nn_module *bn = TU_NN(nn_batch_norm2d_new(8, 1e-5, 0.1, true));
    TU_OK(nn_init_uniform(nn_module_get_buffer(bn, "running_var"), 0.5, 1.5, NULL));
    TU_OK(nn_init_uniform(nn_module_get_buffer(bn, "running_mean"), -0.2, 0.2, NULL));
    nn_module *cnn[] = {nn_conv2d_new(3, 8, 3, 1, 1, true), bn, nn_leaky_relu_new(0.1),
                        nn_max_pool2d_new(2, 2, 0), nn_conv_transpose2d_new(8, 4, 2, 2, 0, 0, true),
                        nn_elu_new(1.0), nn_avg_pool2d_new(3, 1, 1), nn_silu_new(),
                        nn_adaptive_avg_pool2d_new(3, 3), nn_flatten_new(1, -1),
                        nn_dropout_new(0.5), nn_linear_new(36, 10, true), nn_gelu_new(false),
                        nn_hardtanh_new(-0.5, 0.5), nn_log_softmax_new(1)};
    nn_module *m = seq(cnn, 15);
    round_trip(m, NN_DTYPE_F32, img, 4, x);
    nn_module_free(m);
    nn_tensor_free(x);

    int64_t seqs[3] = {3, 5, 6};
    x = TU_NN(nn_randn(NULL, seqs, 3));
    int64_t ln_shape[1] = {16};
    nn_module *rnn[] = {nn_recurrent_new(NN_RNN_MODE_GRU, 6, 8, 2, true, true, 0.0, true),
                        nn_layer_norm_new(ln_shape, 1, 1e-5, true), nn_gelu_new(true),
                        nn_recurrent_new(NN_RNN_MODE_LSTM, 16, 4, 1, true, true, 0.0, false),
                        nn_recurrent_new(NN_RNN_MODE_RNN_TANH, 4, 5, 1, false, true, 0.0, false),
                        nn_select_new(1, -1), nn_linear_new(5, 3, false), nn_softmax_new(-1)};
    m = seq(rnn, 8);
    round_trip(m, NN_DTYPE_F32, seqs, 3, x);
    nn_module_free(m);
    nn_tensor_free(x);

    /* A 2-layer encoder (post-norm, relu) then a causal pre-norm GELU layer
     * and a MultiheadAttention of sequence-first layout. */
    int64_t tshape[3] = {2, 5, 8};
    x = TU_NN(nn_randn(NULL, tshape, 3));
    nn_module *enc = TU_NN(nn_transformer_encoder_new(
        nn_transformer_encoder_layer_new(8, 2, 16, 0.1, NN_TRANSFORMER_ACTIVATION_RELU, 1e-5, true,
                                         false),
        2, nn_layer_norm_new((int64_t[]){8}, 1, 1e-5, true)));
    nn_module *causal = TU_NN(nn_transformer_encoder_layer_new(
        8, 4, 12, 0.0, NN_TRANSFORMER_ACTIVATION_GELU, 1e-6, true, true));
    TU_OK(nn_transformer_set_causal(causal, true));
    nn_module *tf[] = {enc, causal, nn_multihead_attention_new(8, 2, 0.0, true, 0, 0, false),
                       nn_linear_new(8, 3, true)};
    m = seq(tf, 4);
    round_trip(m, NN_DTYPE_F32, tshape, 3, x);
    nn_module_free(m);
    nn_tensor_free(x);

    int64_t tok[2] = {2, 7};
    x = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, tok, 2,
                                  (int64_t[]){1, 4, 0, 9, 3, 3, 7, 2, 8, 8, 1, 0, 5, 6}));
    nn_module *lstm[] = {nn_embedding_new(10, 6), nn_lstm_new(6, 8, 1, true), nn_select_new(1, -1),
                         nn_linear_new(8, 3, true), nn_sigmoid_new(), nn_tanh_new(), nn_relu_new(),
                         nn_identity_new()};
    m = seq(lstm, 8);
    round_trip(m, NN_DTYPE_I64, tok, 2, x);
    nn_module_free(m);
    nn_tensor_free(x);
}

/* Parameters of m under their names in the imported model, bit-identical;
 * skip names containing `skip` (NULL: none). */
static void same_parameters(nn_module *m, nn_module *im, const char *skip) {
    for (int64_t i = 0; i < nn_module_num_parameters(m); i++) {
        const char *name;
        nn_tensor *p = nn_module_parameter(m, i, &name);
        if (skip && strstr(name, skip)) continue;
        nn_tensor *q = nn_module_get_parameter(im, name);
        if (!q) fail_msg("parameter %s missing after the round trip: %s", name, nn_last_error());
        assert_true(nn_tensor_equal(p, q));
    }
}

/* nn_gpt_new's GPT: export -> import gives the same logits (tied head: one
 * initializer, under the token embedding's name; untied and bias-free: the
 * head's own), every parameter under its nanoGPT name. */
static void gpt_round_trip(bool tie, bool bias) {
    nn_gpt_config cfg;
    TU_OK(nn_gpt_config_init(&cfg));
    cfg.vocab_size = 13, cfg.block_size = 9, cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = 8;
    cfg.tie_weights = tie, cfg.bias = bias, cfg.dropout = 0.1;
    nn_module *g = TU_NN(nn_gpt_new(&cfg));
    int64_t tok[2] = {2, 7};
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, tok, 2,
                                             (int64_t[]){1, 4, 0, 9, 3, 12, 7, 2, 8, 8, 11, 0, 5, 6}));
    void *data;
    size_t len;
    TU_OK(nn_onnx_save_buffer(g, NN_DTYPE_I64, tok, 2, NULL, &data, &len));
    assert_true(nn_module_is_training(g)); /* the trace's eval mode is undone */
    nn_model *back = nn_onnx_load_buffer(data, len, NULL);
    if (!back) fail_msg("%s", nn_last_error());
    nn_free(data);
    TU_OK(nn_module_train(g, false));
    bool prev = nn_set_grad_enabled(false);
    nn_tensor *want = TU_NN(nn_module_forward(g, x));
    nn_tensor *got = TU_NN(nn_model_predict(back, x));
    /* a shorter sequence: the trace's causal mask is for T = 7 only */
    nn_tensor *x3 = TU_NN(nn_slice(x, 1, 0, 3, 1));
    assert_null(nn_model_predict(back, x3));
    nn_clear_error();
    nn_set_grad_enabled(prev);
    tu_assert_close(got, want, 1e-5, 1e-6, tie ? "GPT (tied)" : "GPT (untied, no bias)");
    nn_module *im = nn_model_module(back);
    same_parameters(g, im, NULL);
    if (tie) { /* the head is the embedding's initializer, not a copy */
        assert_null(nn_module_get_parameter(im, "lm_head.weight"));
        nn_clear_error();
    }
    nn_tensor_free(x3);
    nn_tensor_free(want);
    nn_tensor_free(got);
    nn_tensor_free(x);
    nn_model_free(back);
    nn_module_free(g);
}

static void test_export_gpt(void **state) {
    (void)state;
    nn_generator_seed(NULL, 11);
    gpt_round_trip(true, true);
    gpt_round_trip(false, false);
}

/* Several inputs: export -> import -> nn_module_forward_n equals the module. */
static void round_trip_n(nn_module *m, nn_tensor **xs, int n, const char *what) {
    nn_dtype dts[3];
    int nds[3];
    int64_t shapes[9];
    int off = 0;
    for (int i = 0; i < n; i++) {
        dts[i] = NN_DTYPE_F32;
        nds[i] = nn_tensor_ndim(xs[i]);
        for (int d = 0; d < nds[i]; d++) shapes[off++] = nn_tensor_shape(xs[i])[d];
    }
    TU_OK(nn_module_train(m, false));
    void *data;
    size_t len;
    TU_OK(nn_onnx_save_buffer_n(m, n, dts, shapes, nds, NULL, &data, &len));
    nn_model *back = nn_onnx_load_buffer(data, len, NULL);
    if (!back) fail_msg("%s: %s", what, nn_last_error());
    nn_free(data);
    bool prev = nn_set_grad_enabled(false);
    nn_tensor *want = TU_NN(nn_module_forward_n(m, xs, n));
    nn_tensor *got = TU_NN(nn_module_forward_n(nn_model_module(back), xs, n));
    nn_set_grad_enabled(prev);
    tu_assert_close(got, want, 1e-5, 1e-6, what);
    same_parameters(m, nn_model_module(back), NULL);
    nn_tensor_free(want);
    nn_tensor_free(got);
    nn_model_free(back);
}

/* TransformerDecoderLayer and TransformerDecoder on (tgt, memory) of other
 * lengths, both layouts, pre/post norm, relu/gelu, causal self-attention;
 * a MultiheadAttention on (query, key, value). */
static void test_export_decoder(void **state) {
    (void)state;
    nn_generator_seed(NULL, 12);
    int64_t tb[3] = {2, 5, 8}, mb[3] = {2, 7, 8}, ts[3] = {5, 2, 8}, ms[3] = {7, 2, 8};
    nn_tensor *bf[2] = {TU_NN(nn_randn(NULL, tb, 3)), TU_NN(nn_randn(NULL, mb, 3))};
    nn_tensor *sf[2] = {TU_NN(nn_randn(NULL, ts, 3)), TU_NN(nn_randn(NULL, ms, 3))};
    nn_module *layer = TU_NN(nn_transformer_decoder_layer_new(
        8, 2, 16, 0.1, NN_TRANSFORMER_ACTIVATION_RELU, 1e-5, true, false));
    TU_OK(nn_transformer_set_causal(layer, true));
    round_trip_n(layer, bf, 2, "TransformerDecoderLayer (batch first, post-norm, causal)");
    nn_module_free(layer);
    nn_module *dec = TU_NN(nn_transformer_decoder_new(
        nn_transformer_decoder_layer_new(8, 4, 12, 0.0, NN_TRANSFORMER_ACTIVATION_GELU_TANH, 1e-6,
                                         false, true),
        2, nn_layer_norm_new((int64_t[]){8}, 1, 1e-5, true)));
    round_trip_n(dec, sf, 2, "TransformerDecoder (sequence first, pre-norm, gelu_tanh)");
    TU_OK(nn_transformer_set_causal(dec, true));
    round_trip_n(dec, sf, 2, "TransformerDecoder (causal)");
    /* masks are inputs the export does not take */
    void *data = NULL;
    size_t len = 0;
    nn_dtype dts[3] = {NN_DTYPE_F32, NN_DTYPE_F32, NN_DTYPE_F32};
    int nds[3] = {3, 3, 2};
    int64_t shapes[8] = {5, 2, 8, 7, 2, 8, 5, 5};
    assert_int_equal(nn_onnx_save_buffer_n(dec, 3, dts, shapes, nds, NULL, &data, &len),
                     NN_ERR_UNSUPPORTED);
    tu_expect_error(NN_ERR_UNSUPPORTED, "3 inputs");
    assert_int_equal(nn_onnx_save_buffer_n(dec, 0, dts, shapes, nds, NULL, &data, &len),
                     NN_ERR_INVALID);
    assert_int_equal(nn_onnx_save_buffer_n(dec, 2, dts, shapes, (int[]){3, 0}, NULL, &data, &len),
                     NN_ERR_INVALID);
    assert_int_equal(nn_onnx_save_n(dec, "/nonexistent/dir/d.onnx", 2, dts, shapes, nds, NULL),
                     NN_ERR_IO);
    nn_module_free(dec);
    nn_module *mha = TU_NN(nn_multihead_attention_new(8, 2, 0.0, true, 0, 0, true));
    nn_tensor *qkv[3] = {bf[0], bf[1], TU_NN(nn_randn(NULL, mb, 3))};
    round_trip_n(mha, qkv, 3, "MultiheadAttention (query, key, value)");
    nn_module_free(mha);
    nn_tensor_free(qkv[2]);
    for (int i = 0; i < 2; i++) nn_tensor_free(bf[i]), nn_tensor_free(sf[i]);
}

/* What has no ONNX form fails naming the module; bad arguments are refused. */
static nn_tensor *fwd_twice(nn_module *self, nn_tensor *x, void *user) {
    (void)self, (void)user;
    return nn_add(x, x);
}

static void test_export_errors(void **state) {
    (void)state;
    nn_module *c = TU_NN(nn_module_custom_new("twice", fwd_twice, NULL, NULL));
    void *data = (void *)1;
    size_t len = 1;
    int64_t shape[2] = {2, 3};
    assert_int_equal(nn_onnx_save_buffer(c, NN_DTYPE_F32, shape, 2, NULL, &data, &len),
                     NN_ERR_UNSUPPORTED);
    tu_expect_error(NN_ERR_UNSUPPORTED, "Custom:twice");
    assert_null(data);
    nn_module_free(c);
    nn_module *l = TU_NN(nn_linear_new(3, 2, true));
    assert_int_equal(nn_onnx_save_buffer(l, NN_DTYPE_F32, shape, 0, NULL, &data, &len),
                     NN_ERR_INVALID);
    assert_int_equal(nn_onnx_save_buffer(l, NN_DTYPE_U8, shape, 2, NULL, &data, &len),
                     NN_ERR_DTYPE);
    assert_int_equal(nn_onnx_save_buffer(l, NN_DTYPE_F32, (int64_t[]){2, 4}, 2, NULL, &data, &len),
                     NN_ERR_SHAPE);
    assert_int_equal(nn_onnx_save(l, "/nonexistent/dir/x.onnx", NN_DTYPE_F32, shape, 2, NULL),
                     NN_ERR_IO);
    nn_module_free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn),     cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_residual), cmocka_unit_test(test_lstm),
        cmocka_unit_test(test_encoder), cmocka_unit_test(test_gpt),
        cmocka_unit_test(test_unsupported_op), cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_truncate_flip), cmocka_unit_test(test_sources_and_meta),
        cmocka_unit_test(test_parameters_train), cmocka_unit_test(test_oom),
        cmocka_unit_test(test_export_round_trip), cmocka_unit_test(test_export_errors),
        cmocka_unit_test(test_export_gpt),      cmocka_unit_test(test_export_decoder),
        cmocka_unit_test(test_two_inputs),      cmocka_unit_test(test_threads),
        cmocka_unit_test(test_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
