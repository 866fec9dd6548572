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

/* ------------------------------------------------------ golden helpers */

static tu_golden *G;

static nn_tensor *gold(const char *prefix, const char *suffix) {
    char key[160];
    snprintf(key, sizeof key, "%s%s", prefix, suffix);
    return tu_golden_get(G, key);
}

/* A golden tensor as a fresh leaf that requires grad (owned by the scope). */
static nn_tensor *leaf(const char *prefix, const char *suffix) {
    nn_tensor *t = TU_NN(nn_tensor_clone(gold(prefix, suffix)));
    TU_OK(nn_tensor_set_requires_grad(t, true));
    return t;
}

/* A golden boolean mask (stored as 0/1) as u8. */
static nn_tensor *mask_u8(const char *prefix, const char *suffix) {
    return TU_NN(nn_ne_scalar(gold(prefix, suffix), 0));
}

/* Load PyTorch's state dict (prefix.<name>) into m: every entry of m's state
 * dict must be there (strict), and the count must equal PyTorch's. */
static void load_torch(nn_module *m, const char *prefix) {
    nn_statedict *mine = TU_NN(nn_module_state_dict(m));
    int64_t n = nn_statedict_size(mine);
    nn_statedict *sd = TU_NN(nn_statedict_new());
    for (int64_t i = 0; i < n; i++) {
        char key[200];
        snprintf(key, sizeof key, "%s.%s", prefix, nn_statedict_name(mine, i));
        if (!tu_golden_has(G, key)) fail_msg("PyTorch has no entry %s", key);
        TU_OK(nn_statedict_set(sd, nn_statedict_name(mine, i), tu_golden_get(G, key)));
    }
    const int64_t *want = nn_tensor_data(gold(prefix, "_nsd"));
    assert_int_equal(n, want[0]);
    TU_OK(nn_module_load_state_dict(m, sd, true, NULL));
    nn_statedict_free(sd);
    nn_statedict_free(mine);
}

#define RTOL 2e-4
#define ATOL 2e-5

/* y equals PyTorch's; then backward of sum(y * r) and every gradient (the
 * named inputs' and every parameter's) equals PyTorch's. */
static void check_against_torch(nn_module *m, const char *prefix, nn_tensor *y,
                                nn_tensor *const *ins, const char *const *names, int n) {
    char what[200];
    snprintf(what, sizeof what, "%s output", prefix);
    tu_assert_close(y, gold(prefix, "_y"), RTOL, ATOL, what);
    nn_tensor *loss = TU_NN(nn_sum(TU_NN(nn_mul(y, gold(prefix, "_r"))), NULL, 0, false));
    TU_OK(nn_module_zero_grad(m));
    TU_OK(nn_backward(loss));
    for (int i = 0; i < n; i++) {
        char suffix[64];
        snprintf(suffix, sizeof suffix, "_grad_%s", names[i]);
        snprintf(what, sizeof what, "%s d/d%s", prefix, names[i]);
        tu_assert_close(TU_NN(nn_tensor_grad(ins[i])), gold(prefix, suffix), RTOL, ATOL, what);
    }
    int64_t np = nn_module_num_parameters(m);
    assert_true(np > 0);
    for (int64_t i = 0; i < np; i++) {
        const char *name;
        nn_tensor *p = TU_NN(nn_module_parameter(m, i, &name));
        char suffix[160];
        snprintf(suffix, sizeof suffix, ".grad.%s", name);
        snprintf(what, sizeof what, "%s d/d%s", prefix, name);
        tu_assert_close(TU_NN(nn_tensor_grad(p)), gold(prefix, suffix), RTOL, ATOL, what);
    }
}

/* Save m to a buffer, load it back: the same module kinds rebuilt with no
 * user code, and the same output for inputs xs[0..n). */
static void check_roundtrip(nn_module *m, nn_tensor *const *xs, int n, nn_tensor *want) {
    void *buf;
    size_t len;
    TU_OK(nn_model_save_buffer(m, NULL, NULL, &buf, &len));
    nn_model *model = nn_model_load_buffer(buf, len, NULL);
    if (!model) fail_msg("nn_model_load_buffer: %s", nn_last_error());
    nn_free(buf);
    nn_module *back = TU_NN(nn_model_module(model));
    assert_string_equal(nn_module_type_name(back), nn_module_type_name(m));
    assert_int_equal(nn_module_num_parameters(back), nn_module_num_parameters(m));
    nn_tensor *y = TU_NN(nn_module_forward_n(back, xs, n));
    tu_assert_close(y, want, 0, 0, "output after a save/load round trip");
    nn_model_free(model);
}

/* The int8 layer's output yq [n values] differs from the float layer's yf,
 * by at most 1.5e-2 of yf's largest value. */
static void check_int8_close(nn_tensor *yq, nn_tensor *yf, int n) {
    float a[2 * 5 * 24], b[2 * 5 * 24];
    assert_true(n <= 2 * 5 * 24);
    TU_OK(nn_tensor_copy_to(yq, a, sizeof(float) * (size_t)n));
    TU_OK(nn_tensor_copy_to(yf, b, sizeof(float) * (size_t)n));
    double d = 0, mx = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    assert_true(d > 0 && d <= 1.5e-2 * mx);
}

/* nn_quantize_dynamic on a TransformerEncoderLayer: its Linear children
 * (self_attn.out_proj, linear1, linear2) become QuantizedLinear, and so do
 * the attention's in-projections (self_attn.q_proj / k_proj / v_proj from
 * the rows of in_proj_weight, which goes); the output stays within 1.5e-2
 * of its largest value of the float layer's, and the quantized layer saves
 * and loads (the structure checks accept the int8 twins; before, the file
 * was refused on load). */
static void test_quantized_encoder_layer(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_generator *g = TU_NN(nn_generator_new(5));
    nn_generator_seed(NULL, 5);
    nn_module *m = TU_NN(nn_transformer_encoder_layer_new(
        24, 4, 40, 0.0, NN_TRANSFORMER_ACTIVATION_GELU, 1e-5, true, false));
    TU_OK(nn_module_train(m, false));
    const int64_t xs[3] = {2, 5, 24};
    nn_tensor *x = TU_NN(nn_randn(g, xs, 3));
    nn_tensor *yf = TU_NN(nn_tensor_contiguous(nn_module_forward(m, x)));
    char *rep = NULL;
    TU_OK(nn_quantize_dynamic(m, x, &rep));
    assert_non_null(strstr(rep, "self_attn.out_proj"));
    assert_non_null(strstr(rep, "linear2"));
    assert_non_null(strstr(rep, "self_attn.q_proj"));
    nn_free(rep);
    const char *names[6] = {"self_attn.out_proj", "linear1", "linear2", "self_attn.q_proj",
                            "self_attn.k_proj", "self_attn.v_proj"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(nn_module_type_name(TU_NN(nn_module_get_module(m, names[i]))),
                            "QuantizedLinear");
    nn_tensor *yq = TU_NN(nn_tensor_contiguous(nn_module_forward(m, x)));
    check_int8_close(yq, yf, 2 * 5 * 24);
    check_roundtrip(m, &x, 1, yq);
    nn_module_free(m);
    nn_generator_free(g);
    nn_scope_end(sc);
}

/* A TransformerDecoderLayer: both attentions' in-projections go int8 (the
 * cross-attention's packed weight runs q and k/v on different inputs); the
 * output stays within 1.5e-2 of the float layer's largest value; file round
 * trip. */
static void test_quantized_decoder_layer(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_generator *g = TU_NN(nn_generator_new(6));
    nn_generator_seed(NULL, 6);
    nn_module *m = TU_NN(nn_transformer_decoder_layer_new(
        16, 2, 24, 0.0, NN_TRANSFORMER_ACTIVATION_RELU, 1e-5, false, true));
    TU_OK(nn_module_train(m, false));
    const int64_t ts[3] = {4, 2, 16}, ms[3] = {6, 2, 16};
    nn_tensor *xs[2] = {TU_NN(nn_randn(g, ts, 3)), TU_NN(nn_randn(g, ms, 3))};
    nn_tensor *yf = TU_NN(nn_tensor_contiguous(nn_module_forward_n(m, xs, 2)));
    TU_OK(nn_quantize_dynamic(m, NULL, NULL));
    const char *names[2] = {"self_attn.k_proj", "multihead_attn.v_proj"};
    for (int i = 0; i < 2; i++)
        assert_string_equal(nn_module_type_name(TU_NN(nn_module_get_module(m, names[i]))),
                            "QuantizedLinear");
    assert_null(nn_module_get_parameter(m, "multihead_attn.in_proj_weight"));
    nn_clear_error();
    nn_tensor *yq = TU_NN(nn_tensor_contiguous(nn_module_forward_n(m, xs, 2)));
    check_int8_close(yq, yf, 4 * 2 * 16);
    check_roundtrip(m, xs, 2, yq);
    nn_module_free(m);
    nn_generator_free(g);
    nn_scope_end(sc);
}

/* ------------------------------------------------- MultiheadAttention */

static void test_mha_self(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    nn_module *m = TU_NN(nn_multihead_attention_new(8, 2, 0, true, 0, 0, false));
    load_torch(m, "mha_self");
    nn_tensor *x = leaf("mha_self", "_x");
    int lo, hi;
    TU_OK(nn_module_num_inputs(m, &lo, &hi));
    assert_int_equal(lo, 3);
    assert_int_equal(hi, 5);
    nn_tensor *y = TU_NN(nn_module_forward(m, x)); /* self-attention convenience */
    const char *names[] = {"x"};
    check_against_torch(m, "mha_self", y, &x, names, 1);
    nn_tensor *xs[3] = {x, x, x};
    tu_assert_close(TU_NN(nn_module_forward_n(m, xs, 3)), y, 0, 0, "forward_n(x, x, x)");
    check_roundtrip(m, xs, 3, y);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_mha_cross_bool_masks(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const char *p = "mha_cross";
    nn_module *m = TU_NN(nn_multihead_attention_new(8, 2, 0, true, 0, 0, true));
    load_torch(m, p);
    nn_tensor *q = leaf(p, "_q"), *k = leaf(p, "_k"), *v = leaf(p, "_v");
    nn_tensor *kpm = mask_u8(p, "_kpm"), *am = mask_u8(p, "_am");
    nn_tensor *xs[5] = {q, k, v, kpm, am};
    nn_tensor *y = TU_NN(nn_module_forward_n(m, xs, 5));
    nn_tensor *ins[3] = {q, k, v};
    const char *names[] = {"q", "k", "v"};
    check_against_torch(m, p, y, ins, names, 3);
    /* need_weights: the explicit path gives the same output and the weights */
    nn_tensor *w = NULL, *wh = NULL;
    nn_tensor *y2 = TU_NN(nn_multihead_attention_forward(m, q, k, v, kpm, am, true, true, &w));
    tu_assert_close(y2, y, RTOL, ATOL, "need_weights output");
    tu_assert_close(w, gold(p, "_w"), RTOL, ATOL, "averaged attention weights");
    TU_NN(nn_multihead_attention_forward(m, q, k, v, kpm, am, true, false, &wh));
    tu_assert_close(wh, gold(p, "_wheads"), RTOL, ATOL, "per-head attention weights");
    nn_tensor *y3 = TU_NN(nn_multihead_attention_forward(m, q, k, v, kpm, am, false, true, NULL));
    tu_assert_close(y3, y, 0, 0, "need_weights=false");
    check_roundtrip(m, xs, 5, y);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_mha_float_masks(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const char *p = "mha_fmask";
    nn_module *m = TU_NN(nn_multihead_attention_new(8, 2, 0, true, 0, 0, false));
    load_torch(m, p);
    nn_tensor *q = leaf(p, "_q"), *k = leaf(p, "_k");
    nn_tensor *xs[5] = {q, k, k, mask_u8(p, "_kpm"), gold(p, "_am")};
    nn_tensor *y = TU_NN(nn_module_forward_n(m, xs, 5));
    nn_tensor *ins[2] = {q, k};
    const char *names[] = {"q", "k"};
    check_against_torch(m, p, y, ins, names, 2);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_mha_kdim_vdim(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const char *p = "mha_kv";
    nn_module *m = TU_NN(nn_multihead_attention_new(8, 2, 0, true, 5, 6, false));
    load_torch(m, p);
    nn_tensor *q = leaf(p, "_q"), *k = leaf(p, "_k"), *v = leaf(p, "_v");
    nn_tensor *xs[4] = {q, k, v, gold(p, "_kpm")};
    nn_tensor *y = TU_NN(nn_module_forward_n(m, xs, 4));
    nn_tensor *ins[3] = {q, k, v};
    const char *names[] = {"q", "k", "v"};
    check_against_torch(m, p, y, ins, names, 3);
    check_roundtrip(m, xs, 4, y);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_mha_nobias_unbatched(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const char *p = "mha_nobias";
    nn_module *m = TU_NN(nn_multihead_attention_new(8, 2, 0, false, 0, 0, false));
    load_torch(m, p);
    nn_tensor *x = leaf(p, "_x");
    nn_tensor *y = TU_NN(nn_module_forward(m, x));
    const char *names[] = {"x"};
    check_against_torch(m, p, y, &x, names, 1);
    nn_module_free(m);
    nn_scope_end(sc);
}

/* ---------------------------------------------------- transformer layers */

static void run_encoder_layer(const char *p, nn_transformer_activation act, bool bf, bool nf) {
    nn_scope *sc = nn_scope_begin();
    nn_module *m = TU_NN(nn_transformer_encoder_layer_new(8, 2, 16, 0.0, act, 1e-5, bf, nf));
    load_torch(m, p);
    nn_tensor *x = leaf(p, "_x");
    nn_tensor *xs[3] = {x, mask_u8(p, "_mask"), mask_u8(p, "_kpm")};
    nn_tensor *y = TU_NN(nn_module_forward_n(m, xs, 3));
    const char *names[] = {"x"};
    check_against_torch(m, p, y, &x, names, 1);
    /* a causal float mask, and the same through is_causal */
    nn_tensor *xc[2] = {x, TU_NN(nn_transformer_causal_mask(5))};
    assert_true(nn_tensor_equal(xc[1], gold("causal5", ""))); /* generate_square_subsequent_mask */
    nn_tensor *yc = TU_NN(nn_module_forward_n(m, xc, 2));
    char what[96];
    snprintf(what, sizeof what, "%s with the causal mask", p);
    tu_assert_close(yc, gold(p, "_ycausal"), RTOL, ATOL, what);
    TU_OK(nn_transformer_set_causal(m, true));
    tu_assert_close(TU_NN(nn_module_forward(m, x)), yc, RTOL, ATOL, "is_causal");
    check_roundtrip(m, &x, 1, TU_NN(nn_module_forward(m, x))); /* causal survives */
    TU_OK(nn_transformer_set_causal(m, false));
    check_roundtrip(m, xs, 3, y);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_encoder_layer_post_relu(void **s) {
    (void)s;
    run_encoder_layer("enc_post_relu", NN_TRANSFORMER_ACTIVATION_RELU, false, false);
}

static void test_encoder_layer_pre_gelu(void **s) {
    (void)s;
    run_encoder_layer("enc_pre_gelu", NN_TRANSFORMER_ACTIVATION_GELU, true, true);
}

static void run_decoder_layer(const char *p, nn_transformer_activation act, bool bf, bool nf) {
    nn_scope *sc = nn_scope_begin();
    nn_module *m = TU_NN(nn_transformer_decoder_layer_new(8, 2, 16, 0.0, act, 1e-5, bf, nf));
    load_torch(m, p);
    nn_tensor *tgt = leaf(p, "_tgt"), *mem = leaf(p, "_mem");
    nn_tensor *xs[6] = {tgt, mem, gold("causal5", ""), NULL, NULL, mask_u8(p, "_mkpm")};
    nn_tensor *y = TU_NN(nn_module_forward_n(m, xs, 6));
    nn_tensor *ins[2] = {tgt, mem};
    const char *names[] = {"tgt", "mem"};
    check_against_torch(m, p, y, ins, names, 2);
    /* is_causal instead of the mask tensor */
    TU_OK(nn_transformer_set_causal(m, true));
    nn_tensor *xc[6] = {tgt, mem, NULL, NULL, NULL, xs[5]};
    tu_assert_close(TU_NN(nn_module_forward_n(m, xc, 6)), y, RTOL, ATOL, "decoder is_causal");
    check_roundtrip(m, xc, 6, TU_NN(nn_module_forward_n(m, xc, 6)));
    assert_null(nn_module_forward(m, tgt));
    tu_expect_error(NN_ERR_INVALID, "needs (tgt, memory)");
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_decoder_layer_post_relu(void **s) {
    (void)s;
    run_decoder_layer("dec_post_relu", NN_TRANSFORMER_ACTIVATION_RELU, false, false);
}

static void test_decoder_layer_pre_gelu(void **s) {
    (void)s;
    run_decoder_layer("dec_pre_gelu", NN_TRANSFORMER_ACTIVATION_GELU, true, true);
}

/* ---------------------------------------------------------------- stacks */

static void test_encoder_stack(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const char *p = "encoder2";
    nn_module *layer = TU_NN(nn_transformer_encoder_layer_new(
        8, 2, 16, 0.0, NN_TRANSFORMER_ACTIVATION_RELU, 1e-5, false, false));
    int64_t d = 8;
    nn_module *m = TU_NN(nn_transformer_encoder_new(layer, 2, nn_layer_norm_new(&d, 1, 1e-5, true)));
    /* the clone starts equal to the layer given, like PyTorch's deep copies */
    tu_assert_close(TU_NN(nn_module_get_parameter(m, "layers.1.linear1.weight")),
                    TU_NN(nn_module_get_parameter(m, "layers.0.linear1.weight")), 0, 0, "clone");
    load_torch(m, p);
    nn_tensor *x = leaf(p, "_x");
    nn_tensor *xs[3] = {x, NULL, mask_u8(p, "_kpm")};
    nn_tensor *y = TU_NN(nn_module_forward_n(m, xs, 3));
    const char *names[] = {"x"};
    check_against_torch(m, p, y, &x, names, 1);
    check_roundtrip(m, xs, 3, y);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_decoder_stack(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const char *p = "decoder2";
    int64_t d = 8;
    nn_module *m = TU_NN(nn_transformer_decoder_new(
        nn_transformer_decoder_layer_new(8, 2, 16, 0.0, NN_TRANSFORMER_ACTIVATION_RELU, 1e-5,
                                         true, true),
        2, nn_layer_norm_new(&d, 1, 1e-5, true)));
    load_torch(m, p);
    nn_tensor *tgt = leaf(p, "_tgt"), *mem = leaf(p, "_mem");
    nn_tensor *xs[3] = {tgt, mem, gold("causal5", "")};
    nn_tensor *y = TU_NN(nn_module_forward_n(m, xs, 3));
    nn_tensor *ins[2] = {tgt, mem};
    const char *names[] = {"tgt", "mem"};
    check_against_torch(m, p, y, ins, names, 2);
    check_roundtrip(m, xs, 3, y);
    nn_module_free(m);
    nn_scope_end(sc);
}

/* ------------------------------------------------------- errors, misuse */

static void test_mha_errors(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    assert_null(nn_multihead_attention_new(10, 3, 0, true, 0, 0, false));
    tu_expect_error(NN_ERR_INVALID, "embed_dim = 10 is not divisible by num_heads = 3");
    assert_null(nn_multihead_attention_new(8, 2, 1.0, true, 0, 0, false));
    tu_expect_error(NN_ERR_INVALID, "dropout = 1, expected a value in [0, 1)");
    assert_null(nn_multihead_attention_new(8, 2, 0, true, -1, 0, false));
    tu_expect_error(NN_ERR_INVALID, "kdim = -1");
    nn_module *m = TU_NN(nn_multihead_attention_new(8, 2, 0, true, 0, 0, false));
    int64_t sq[3] = {3, 2, 8}, sk[3] = {4, 2, 8}, bad[3] = {3, 2, 6}, sb[3] = {4, 3, 8};
    nn_tensor *q = tu_rand(1, sq, 3, -1, 1), *k = tu_rand(2, sk, 3, -1, 1);
    nn_tensor *xs[5] = {q, k, k, NULL, NULL};
    assert_null(nn_module_forward_n(m, xs, 2));
    tu_expect_error(NN_ERR_INVALID, "MultiheadAttention takes 3 to 5 inputs, got n = 2");
    xs[0] = tu_rand(3, bad, 3, -1, 1);
    assert_null(nn_module_forward_n(m, xs, 3));
    tu_expect_error(NN_ERR_SHAPE, "query [3,2,6], key [4,2,8] and value [4,2,8] do not fit "
                                  "embed_dim 8");
    xs[0] = q;
    xs[1] = tu_rand(4, sb, 3, -1, 1); /* batch 3 against 2 */
    assert_null(nn_module_forward_n(m, xs, 3));
    tu_expect_error(NN_ERR_SHAPE, "do not fit");
    xs[1] = k;
    int64_t kb[2] = {2, 3}, amb[2] = {3, 3}, am3[3] = {2, 3, 4};
    xs[3] = TU_NN(nn_tensor_zeros(NN_DTYPE_U8, kb, 2));
    assert_null(nn_module_forward_n(m, xs, 4));
    tu_expect_error(NN_ERR_SHAPE, "key_padding_mask is [2,3], expected [2, 4]");
    int64_t kg[2] = {2, 4};
    xs[3] = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, kg, 2));
    assert_null(nn_module_forward_n(m, xs, 4));
    tu_expect_error(NN_ERR_DTYPE, "key_padding_mask must be u8 (1 = ignore) or f32, got i64");
    xs[3] = NULL;
    xs[4] = TU_NN(nn_tensor_zeros(NN_DTYPE_U8, amb, 2));
    assert_null(nn_module_forward_n(m, xs, 5));
    tu_expect_error(NN_ERR_SHAPE, "attn_mask is [3,3], expected [3, 4] or [4, 3, 4]");
    xs[4] = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, am3, 3)); /* N * H = 4, not 2 */
    assert_null(nn_module_forward_n(m, xs, 5));
    tu_expect_error(NN_ERR_SHAPE, "attn_mask is [2,3,4]");
    nn_tensor *qi = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, sq, 3));
    assert_null(nn_module_forward(m, qi));
    tu_expect_error(NN_ERR_DTYPE, "query must be f32, got i64");
    nn_tensor *w;
    assert_null(nn_multihead_attention_forward(m, q, k, k, NULL, NULL, true, true, NULL));
    tu_expect_error(NN_ERR_NULL, "attn_weights");
    nn_module *lin = TU_NN(nn_linear_new(8, 8, true));
    assert_null(nn_multihead_attention_forward(lin, q, k, k, NULL, NULL, true, true, &w));
    tu_expect_error(NN_ERR_INVALID, "module is a Linear, not a MultiheadAttention");
    assert_null(w);
    assert_int_equal(nn_transformer_set_causal(lin, true), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "Linear, not a MultiheadAttention or transformer");
    assert_null(nn_transformer_causal_mask(0));
    tu_expect_error(NN_ERR_INVALID, "size = 0");
    /* A failed mask computation is the root cause, not a silently absent mask. */
    assert_null(nn_multihead_attention_forward(m, q, k, k, nn_matmul(q, q), NULL, true, true,
                                               &w));
    tu_expect_error(NN_ERR_SHAPE, "nn_matmul");
    xs[3] = nn_matmul(q, q);
    xs[4] = NULL;
    assert_null(nn_module_forward_n(m, xs, 5));
    tu_expect_error(NN_ERR_SHAPE, "nn_matmul");
    nn_module_free(lin);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_layer_errors(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const nn_transformer_activation relu = NN_TRANSFORMER_ACTIVATION_RELU;
    assert_null(nn_transformer_encoder_layer_new(8, 3, 16, 0.1, relu, 1e-5, false, false));
    tu_expect_error(NN_ERR_INVALID, "TransformerEncoderLayer: d_model = 8 is not divisible by "
                                    "nhead = 3");
    assert_null(nn_transformer_decoder_layer_new(8, 2, 0, 0.1, relu, 1e-5, false, false));
    tu_expect_error(NN_ERR_INVALID, "dim_feedforward = 0");
    assert_null(nn_transformer_encoder_layer_new(8, 2, 16, 0.1, (nn_transformer_activation)7,
                                                 1e-5, false, false));
    tu_expect_error(NN_ERR_INVALID, "activation = 7");
    nn_module *l = TU_NN(nn_transformer_encoder_layer_new(8, 2, 16, 0.1, relu, 1e-5, false, false));
    int64_t sx[3] = {5, 2, 6};
    nn_tensor *x = tu_rand(1, sx, 3, -1, 1);
    assert_null(nn_module_forward(l, x));
    tu_expect_error(NN_ERR_SHAPE, "do not fit embed_dim 8");
    nn_tensor *xs[4] = {x, NULL, NULL, NULL};
    assert_null(nn_module_forward_n(l, xs, 4));
    tu_expect_error(NN_ERR_INVALID, "TransformerEncoderLayer takes 1 to 3 inputs, got n = 4");
    /* stacks: the layer kind, the norm's size, a failed constructor */
    int64_t d = 6;
    assert_null(nn_transformer_decoder_new(l, 2, NULL)); /* consumes l */
    tu_expect_error(NN_ERR_INVALID, "layer is a TransformerEncoderLayer, expected a "
                                    "TransformerDecoderLayer");
    l = TU_NN(nn_transformer_encoder_layer_new(8, 2, 16, 0.1, relu, 1e-5, false, false));
    assert_null(nn_transformer_encoder_new(l, 2, nn_layer_norm_new(&d, 1, 1e-5, true)));
    tu_expect_error(NN_ERR_INVALID, "norm is a LayerNorm, expected LayerNorm(8)");
    assert_null(nn_transformer_encoder_new(
        nn_transformer_encoder_layer_new(8, 3, 16, 0.1, relu, 1e-5, false, false), 2, NULL));
    tu_expect_error(NN_ERR_INVALID, "d_model = 8 is not divisible by nhead = 3");
    l = TU_NN(nn_transformer_encoder_layer_new(8, 2, 16, 0.1, relu, 1e-5, false, false));
    assert_null(nn_transformer_encoder_new(l, 2, nn_layer_norm_new(&d, 0, 1e-5, true)));
    tu_expect_error(NN_ERR_INVALID, "nn_layer_norm_new: ndim = 0");
    l = TU_NN(nn_transformer_encoder_layer_new(8, 2, 16, 0.1, relu, 1e-5, false, false));
    assert_null(nn_transformer_encoder_new(l, 0, NULL));
    tu_expect_error(NN_ERR_INVALID, "num_layers = 0");
    nn_scope_end(sc);
}

/* Dropout acts in training only: in eval the layer is deterministic and
 * equals the same weights with dropout 0. */
static void test_dropout_train_eval(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    const nn_transformer_activation gelu = NN_TRANSFORMER_ACTIVATION_GELU;
    nn_module *a = TU_NN(nn_transformer_encoder_layer_new(8, 2, 16, 0.5, gelu, 1e-5, true, false));
    nn_module *b = TU_NN(nn_transformer_encoder_layer_new(8, 2, 16, 0.0, gelu, 1e-5, true, false));
    nn_statedict *sd = TU_NN(nn_module_state_dict(a));
    TU_OK(nn_module_load_state_dict(b, sd, true, NULL));
    nn_statedict_free(sd);
    int64_t sx[3] = {2, 5, 8};
    nn_tensor *x = tu_rand(5, sx, 3, -1, 1);
    nn_tensor *ya = TU_NN(nn_module_forward(a, x)), *yb = TU_NN(nn_module_forward(b, x));
    assert_false(nn_tensor_allclose(ya, yb, 1e-3, 1e-3));
    TU_OK(nn_module_train(a, false));
    tu_assert_close(TU_NN(nn_module_forward(a, x)), yb, 0, 0, "eval == dropout 0");
    nn_module_free(a);
    nn_module_free(b);
    nn_scope_end(sc);
}

/* Build an encoder stack (a layer and its clone), forward with a mask and
 * backward under failing allocations. */
static int oom_body(void *ctx) {
    (void)ctx;
    int rc = 1;
    nn_scope *sc = nn_scope_begin();
    if (!sc) return 1;
    nn_module *m = nn_transformer_encoder_new(
        nn_transformer_encoder_layer_new(4, 2, 8, 0.0, NN_TRANSFORMER_ACTIVATION_RELU, 1e-5,
                                         false, true),
        2, NULL);
    int64_t sx[3] = {3, 2, 4}, sk[2] = {2, 3};
    nn_tensor *x = nn_tensor_ones(NN_DTYPE_F32, sx, 3);
    nn_tensor *kpm = nn_tensor_zeros(NN_DTYPE_U8, sk, 2);
    nn_tensor *xs[3] = {x, NULL, kpm};
    nn_tensor *y = m && x && kpm ? nn_module_forward_n(m, xs, 3) : NULL;
    nn_tensor *loss = y ? nn_sum(y, NULL, 0, false) : NULL;
    if (loss && !nn_backward(loss)) rc = 0;
    nn_module_free(m);
    nn_scope_end(sc);
    return rc;
}

static void test_oom_sweep(void **s) {
    (void)s;
    long n = tu_oom_sweep(oom_body, NULL);
    assert_true(n > 100);
}

/* The slices of a packed projection scatter their gradients into strided
 * views (nn__scatter_dense, row by row): every slice geometry gives the
 * gradient of a direct formula (1 where the element was taken, else 0, times
 * the upstream gradient). */
static void test_slice_gradient_scatter(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    int64_t shape[3] = {3, 4, 6};
    struct {
        int dim;
        int64_t start, stop, step;
    } cases[] = {{2, 2, 4, 1}, {2, 1, 6, 2}, {1, 1, 4, 2}, {0, 1, 3, 1}, {2, 0, 6, 5}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nn_tensor *x = tu_rand(7, shape, 3, -1, 1);
        TU_OK(nn_tensor_set_requires_grad(x, true));
        nn_tensor *y = TU_NN(nn_slice(x, cases[c].dim, cases[c].start, cases[c].stop, cases[c].step));
        nn_tensor *r = tu_rand(8 + c, nn_tensor_shape(y), 3, -1, 1);
        TU_OK(nn_backward(TU_NN(nn_sum(TU_NN(nn_mul(y, r)), NULL, 0, false))));
        const float *g = nn_tensor_data(TU_NN(nn_tensor_grad(x)));
        const float *pr = nn_tensor_data(r);
        const int64_t *ys = nn_tensor_shape(y);
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 4; j++)
                for (int64_t k = 0; k < 6; k++) {
                    int64_t at[3] = {i, j, k}, d = cases[c].dim, v = at[d] - cases[c].start;
                    float want = 0;
                    if (v >= 0 && v % cases[c].step == 0 && at[d] < cases[c].stop) {
                        at[d] = v / cases[c].step;
                        want = pr[(at[0] * ys[1] + at[1]) * ys[2] + at[2]];
                    }
                    assert_true(g[(i * 4 + j) * 6 + k] == want);
                }
    }
    nn_scope_end(sc);
}

/* The summary names the layers of a stack by their dotted paths (the
 * ModuleList between the stack and its layers has no forward of its own). */
static void test_summary_names(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_transformer_encoder_new(
        nn_transformer_encoder_layer_new(8, 2, 16, 0.1, NN_TRANSFORMER_ACTIVATION_RELU, 1e-5,
                                         false, false),
        2, NULL));
    int64_t shape[3] = {5, 2, 8};
    char *txt = TU_NN(nn_module_summary(m, shape, 3));
    assert_non_null(strstr(txt, "layers.1.self_attn.out_proj  Linear"));
    assert_non_null(strstr(txt, "layers.0.linear2"));
    assert_null(strstr(txt, "?."));
    /* per layer: in_proj 3*8*8 + 24, out_proj 72, linear1 144, linear2 136, norms 32 */
    assert_int_equal(nn_module_param_count(m), 2 * (216 + 72 + 144 + 136 + 32));
    assert_non_null(strstr(txt, "Total params: 1,200"));
    nn_free(txt);
    nn_module_free(m);
}

static int setup(void **s) {
    (void)s;
    G = tu_golden_open("transformer.txt");
    return 0;
}

static int teardown(void **s) {
    (void)s;
    tu_golden_close(G);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_n_single_and_custom),
        cmocka_unit_test(test_mha_self),
        cmocka_unit_test(test_mha_cross_bool_masks),
        cmocka_unit_test(test_mha_float_masks),
        cmocka_unit_test(test_mha_kdim_vdim),
        cmocka_unit_test(test_mha_nobias_unbatched),
        cmocka_unit_test(test_encoder_layer_post_relu),
        cmocka_unit_test(test_encoder_layer_pre_gelu),
        cmocka_unit_test(test_decoder_layer_post_relu),
        cmocka_unit_test(test_decoder_layer_pre_gelu),
        cmocka_unit_test(test_encoder_stack),
        cmocka_unit_test(test_decoder_stack),
        cmocka_unit_test(test_mha_errors),
        cmocka_unit_test(test_layer_errors),
        cmocka_unit_test(test_dropout_train_eval),
        cmocka_unit_test(test_oom_sweep),
        cmocka_unit_test(test_slice_gradient_scatter),
        cmocka_unit_test(test_summary_names),
        cmocka_unit_test(test_quantized_encoder_layer),
        cmocka_unit_test(test_quantized_decoder_layer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
