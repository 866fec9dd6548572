/* GPT: PyTorch parity of a 2-layer model (loss, logits, every gradient and
 * every weight after one AdamW step; tests/golden/gpt.txt, written by
 * tests/golden/make_golden_gpt.py), model-file round trips, the byte
 * tokenizer, generation sessions (cached logits against recomputing the
 * whole sequence, sampling rules, stop/max tokens, streaming, threads) and
 * clear errors for bad configurations, ids and damaged models. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tu_golden *G;

static int setup(void **s) {
    (void)s;
    G = tu_golden_open("gpt.txt");
    return 0;
}

static int teardown(void **s) {
    (void)s;
    tu_golden_close(G);
    return 0;
}

/* The default configuration with these sizes. */
static nn_gpt_config gpt_config(int64_t vocab_size, int64_t block_size, int64_t n_layer,
                                int64_t n_head, int64_t n_embd) {
    nn_gpt_config c;
    TU_OK(nn_gpt_config_init(&c));
    c.vocab_size = vocab_size;
    c.block_size = block_size;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.n_embd = n_embd;
    return c;
}

/* The golden model's configuration (make_golden_gpt.py). */
static nn_gpt_config golden_cfg(void) { return gpt_config(40, 16, 2, 2, 16); }

/* The golden model with PyTorch's weights. */
static nn_module *golden_gpt(void) {
    nn_gpt_config c = golden_cfg();
    nn_module *m = TU_NN(nn_gpt_new(&c));
    nn_statedict *mine = TU_NN(nn_module_state_dict(m));
    nn_statedict *sd = TU_NN(nn_statedict_new());
    for (int64_t i = 0; i < nn_statedict_size(mine); i++) {
        char key[256];
        snprintf(key, sizeof key, "w.%s", nn_statedict_name(mine, i));
        TU_OK(nn_statedict_set(sd, nn_statedict_name(mine, i), tu_golden_get(G, key)));
    }
    TU_OK(nn_module_load_state_dict(m, sd, true, NULL));
    nn_statedict_free(sd);
    nn_statedict_free(mine);
    return m;
}

static nn_tensor *loss_of(nn_module *m, nn_tensor *idx, nn_tensor *tgt) {
    nn_tensor *logits = nn_module_forward(m, idx);
    if (!logits) return NULL;
    int64_t s2[2] = {-1, nn_tensor_shape(logits)[2]}, s1[1] = {-1};
    return nn_cross_entropy(nn_reshape(logits, s2, 2), nn_reshape(tgt, s1, 1));
}

/* ------------------------------------------------------------- parity */

static void test_state_dict_names(void **st) {
    (void)st;
    nn_scope *sc = nn_scope_begin();
    nn_module *m = golden_gpt();
    nn_statedict *sd = TU_NN(nn_module_state_dict(m));
    /* Exactly PyTorch's names, in PyTorch's order. */
    int64_t i = 0;
    for (; i < nn_statedict_size(sd); i++) {
        char key[256];
        snprintf(key, sizeof key, "w.%s", nn_statedict_name(sd, i));
        assert_true(tu_golden_has(G, key));
    }
    assert_int_equal(i, 29);
    assert_string_equal(nn_statedict_name(sd, 0), "transformer.wte.weight");
    assert_string_equal(nn_statedict_name(sd, 4), "transformer.h.0.attn.c_attn.weight");
    assert_string_equal(nn_statedict_name(sd, 28), "lm_head.weight");
    /* Tied: one tensor under both names; the parameter list has it once. */
    assert_ptr_equal(nn_module_get_parameter(m, "lm_head.weight"),
                     nn_module_get_parameter(m, "transformer.wte.weight"));
    assert_int_equal(nn_module_num_parameters(m), 28);
    nn_statedict_free(sd);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_golden_loss_grads_adamw(void **st) {
    (void)st;
    nn_scope *sc = nn_scope_begin();
    nn_module *m = golden_gpt();
    nn_tensor *idx = tu_golden_get(G, "idx"), *tgt = tu_golden_get(G, "tgt");
    nn_tensor *logits = TU_NN(nn_module_forward(m, idx));
    tu_assert_close(logits, tu_golden_get(G, "logits"), 1e-4, 1e-5, "logits");
    nn_tensor *loss = TU_NN(loss_of(m, idx, tgt));
    int64_t one = 1;
    tu_assert_close(nn_reshape(loss, &one, 1), tu_golden_get(G, "loss"), 1e-5, 1e-6, "loss");
    TU_OK(nn_backward(loss));
    /* Every parameter's gradient; matrices decay, the rest do not. */
    int64_t np = nn_module_num_parameters(m);
    nn_tensor *decay[64], *nodecay[64];
    int nd = 0, nn_ = 0;
    for (int64_t i = 0; i < np; i++) {
        const char *name;
        nn_tensor *p = nn_module_parameter(m, i, &name);
        char key[256];
        snprintf(key, sizeof key, "g.%s", name);
        nn_tensor *g = TU_NN(nn_tensor_grad(p));
        tu_assert_close(g, tu_golden_get(G, key), 1e-3, 2e-5, key);
        if (nn_tensor_ndim(p) >= 2) decay[nd++] = p;
        else nodecay[nn_++] = p;
    }
    nn_optim *opt = TU_NN(nn_adamw(decay, nd, 1e-2, 0.1));
    TU_OK(nn_optim_add_group(opt, nodecay, nn_, 1e-2));
    TU_OK(nn_optim_set_group(opt, 1, NN_OPTIM_WEIGHT_DECAY, 0));
    TU_OK(nn_optim_set(opt, NN_OPTIM_BETA2, 0.95));
    TU_OK(nn_optim_step(opt));
    for (int64_t i = 0; i < np; i++) {
        const char *name;
        nn_tensor *p = nn_module_parameter(m, i, &name);
        char key[256];
        snprintf(key, sizeof key, "a.%s", name);
        nn_tensor *want = tu_golden_get(G, key);
        if (!strstr(name, "c_attn.bias")) {
            tu_assert_close(p, want, 1e-5, 1e-6, key);
            continue;
        }
        /* The key bias's gradient is zero in exact arithmetic (softmax over
         * keys ignores q·b_k, the same for every key), so both sides hold
         * rounding noise that Adam scales up to ±lr: compare the query and
         * value thirds, and bound the key third's step by lr. */
        const int64_t C = 16;
        tu_assert_close(nn_slice(p, 0, 0, C, 1), nn_slice(want, 0, 0, C, 1), 1e-5, 1e-6, key);
        tu_assert_close(nn_slice(p, 0, 2 * C, 3 * C, 1), nn_slice(want, 0, 2 * C, 3 * C, 1), 1e-5,
                        1e-6, key);
        snprintf(key, sizeof key, "w.%s", name);
        nn_tensor *before = tu_golden_get(G, key);
        for (int64_t j = C; j < 2 * C; j++) {
            double x, x0;
            TU_OK(nn_tensor_get(p, &j, &x));
            TU_OK(nn_tensor_get(before, &j, &x0));
            assert_true(fabs(x - x0) <= 1e-2 * 1.001);
        }
    }
    nn_optim_free(opt);
    nn_module_free(m);
    nn_scope_end(sc);
}

/* ---------------------------------------------------------- model files */

/* m saved to a buffer (*len bytes) and loaded back. */
static nn_model *save_load_len(nn_module *m, size_t *len) {
    void *buf = NULL;
    TU_OK(nn_model_save_buffer(m, NULL, NULL, &buf, len));
    nn_model *md = TU_NN(nn_model_load_buffer(buf, *len, NULL));
    nn_free(buf);
    return md;
}

static nn_model *save_load(nn_module *m) {
    size_t len = 0;
    return save_load_len(m, &len);
}

/* m saved and loaded back; m is freed. */
static nn_model *model_of(nn_module *m) {
    nn_model *md = save_load(m);
    nn_module_free(m);
    return md;
}

static void test_save_load(void **st) {
    (void)st;
    nn_scope *sc = nn_scope_begin();
    nn_module *m = golden_gpt();
    nn_model *md = save_load(m);
    nn_module *m2 = nn_model_module(md);
    assert_string_equal(nn_module_type_name(m2), "GPT");
    nn_gpt_config a = golden_cfg(), b;
    TU_OK(nn_gpt_get_config(m2, &b));
    assert_memory_equal(&a, &b, sizeof a);
    assert_ptr_equal(nn_module_get_parameter(m2, "lm_head.weight"),
                     nn_module_get_parameter(m2, "transformer.wte.weight"));
    nn_tensor *idx = tu_golden_get(G, "idx");
    nn_tensor *y1 = TU_NN(nn_module_forward(m, idx)), *y2 = TU_NN(nn_model_predict(md, idx));
    assert_true(nn_tensor_equal(y1, y2));
    nn_model_free(md);
    nn_module_free(m);
    nn_scope_end(sc);
}

static void test_no_bias_untied(void **st) {
    (void)st;
    nn_scope *sc = nn_scope_begin();
    nn_gpt_config c = golden_cfg();
    c.bias = 0;
    c.tie_weights = 0;
    c.dropout = 0.1;
    nn_module *m = TU_NN(nn_gpt_new(&c));
    assert_null(nn_module_get_parameter(m, "transformer.ln_f.bias"));
    nn_clear_error();
    assert_null(nn_module_get_parameter(m, "transformer.h.1.mlp.c_fc.bias"));
    nn_clear_error();
    assert_non_null(nn_module_get_parameter(m, "transformer.ln_f.weight"));
    assert_true(nn_module_get_parameter(m, "lm_head.weight") !=
                nn_module_get_parameter(m, "transformer.wte.weight"));
    /* 2 embeddings + 2 x (2 LN weights + 4 matrices) + ln_f + head */
    assert_int_equal(nn_module_num_parameters(m), 2 + 2 * 6 + 1 + 1);
    TU_OK(nn_module_train(m, false));
    nn_model *md = save_load(m);
    nn_gpt_config b;
    TU_OK(nn_gpt_get_config(nn_model_module(md), &b));
    assert_memory_equal(&c, &b, sizeof c);
    nn_tensor *idx = tu_golden_get(G, "idx");
    assert_true(nn_tensor_equal(TU_NN(nn_module_forward(m, idx)), TU_NN(nn_model_predict(md, idx))));
    /* Training mode with dropout: a different forward, and a gradient. */
    TU_OK(nn_module_train(m, true));
    nn_tensor *loss = TU_NN(loss_of(m, idx, tu_golden_get(G, "tgt")));
    TU_OK(nn_backward(loss));
    assert_non_null(nn_tensor_grad(nn_module_get_parameter(m, "transformer.wpe.weight")));
    nn_model_free(md);
    nn_module_free(m);
    nn_scope_end(sc);
}

/* ------------------------------------------------------------ tokenizer */

static void test_tokenizer(void **st) {
    (void)st;
    char text[256], back[256];
    int64_t ids[256];
    for (int i = 0; i < 256; i++) text[i] = (char)i;
    assert_int_equal(nn_byte_encode(text, 256, NULL, 0), 256);
    assert_int_equal(nn_byte_encode(text, 256, ids, 256), 256);
    for (int i = 0; i < 256; i++) assert_int_equal(ids[i], i);
    assert_int_equal(nn_byte_decode(ids, 256, back, 256), 256);
    assert_memory_equal(text, back, 256);
    /* "héllo" (UTF-8) round-trips byte by byte; a short buffer truncates. */
    const char *s = "h\xc3\xa9llo";
    assert_int_equal(nn_byte_encode(s, strlen(s), ids, 3), 6);
    assert_int_equal(ids[1], 0xc3);
    assert_int_equal(nn_byte_encode(s, strlen(s), ids, 6), 6);
    assert_int_equal(nn_byte_decode(ids, 6, back, 6), 6);
    assert_memory_equal(back, s, 6);
    assert_int_equal(nn_byte_decode(ids, 6, NULL, 0), 6);
    /* errors */
    ids[2] = 256;
    assert_int_equal(nn_byte_decode(ids, 6, back, 6), -1);
    tu_expect_error(NN_ERR_RANGE, "ids[2] = 256");
    ids[2] = -1;
    assert_int_equal(nn_byte_decode(ids, 6, back, 6), -1);
    tu_expect_error(NN_ERR_RANGE, "not a byte");
    assert_int_equal(nn_byte_encode(NULL, 3, ids, 3), -1);
    tu_expect_error(NN_ERR_NULL, "text");
    assert_int_equal(nn_byte_encode(s, 3, NULL, 3), -1);
    tu_expect_error(NN_ERR_NULL, "nn_byte_encode");
    assert_int_equal(nn_byte_decode(ids, -1, back, 6), -1);
    tu_expect_error(NN_ERR_INVALID, "n = -1");
}

/* ------------------------------------------------------------- sessions */

static nn_model *golden_model(void) { return model_of(golden_gpt()); }

/* Logits of the last position of tokens[0..n), recomputed from scratch. */
static void full_logits(nn_model *md, const int64_t *tokens, int64_t n, float *out, int64_t V) {
    nn_scope *sc = nn_scope_begin();
    int64_t shape[2] = {1, n};
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, shape, 2, tokens));
    nn_tensor *y = TU_NN(nn_model_predict(md, x));
    nn_tensor *last = TU_NN(nn_tensor_contiguous(nn_slice(y, 1, n - 1, n, 1)));
    TU_OK(nn_tensor_copy_to(last, out, sizeof(float) * (size_t)V));
    nn_scope_end(sc);
}

static void test_cache_equals_recompute(void **st) {
    (void)st;
    nn_model *md = golden_model();
    const int64_t V = 40;
    nn_session *s = TU_NN(nn_session_new(md, NULL));
    int64_t toks[16] = {3, 17, 39, 0, 5, 22, 8};
    float a[40], b[40];
    TU_OK(nn_session_append(s, toks, 7)); /* prefill */
    int64_t n = 7;
    double worst = 0;
    for (;;) {
        TU_OK(nn_session_logits(s, a, V));
        full_logits(md, toks, n, b, V);
        for (int64_t i = 0; i < V; i++) {
            double d = fabs((double)a[i] - b[i]);
            if (d > worst) worst = d;
        }
        if (n == 16) break;
        int64_t t;
        TU_OK(nn_session_sample(s, &t)); /* greedy: the argmax */
        for (int64_t i = 0; i < V; i++) assert_true(a[i] <= a[t]);
        toks[n++] = t;
        TU_OK(nn_session_append(s, &t, 1));
    }
    assert_true(worst <= 1e-5);
    assert_int_equal(nn_session_length(s), 16);
    /* The cache is full: one more token is refused, nothing added. */
    TU_OK(nn_session_append(s, toks, 0));
    assert_int_equal(nn_session_append(s, toks, 1), NN_ERR_LIMIT);
    tu_expect_error(NN_ERR_LIMIT, "block_size 16");
    assert_int_equal(nn_session_length(s), 16);
    /* A prefill in several chunks equals token-by-token appends. */
    TU_OK(nn_session_reset(s));
    assert_int_equal(nn_session_logits(s, a, V), NN_ERR_STATE);
    TU_OK(nn_session_append(s, toks, 16));
    TU_OK(nn_session_logits(s, a, V));
    full_logits(md, toks, 16, b, V);
    for (int64_t i = 0; i < V; i++) assert_true(fabs((double)a[i] - b[i]) <= 1e-5);
    nn_session_free(s);
    nn_model_free(md);
}

/* A bigger random model whose prefill spans several chunks. */
static void test_cache_long_prompt(void **st) {
    (void)st;
    nn_gpt_config c = gpt_config(256, 96, 2, 4, 32);
    nn_model *md = model_of(TU_NN(nn_gpt_new(&c)));
    int64_t toks[96];
    for (int i = 0; i < 96; i++) toks[i] = (i * 37 + 11) % 256;
    nn_session *s = TU_NN(nn_session_new(md, NULL));
    float a[256], b[256];
    TU_OK(nn_session_append(s, toks, 70));
    for (int64_t n = 70; n <= 96; n += 13) {
        if (n > 70) TU_OK(nn_session_append(s, toks + n - 13, 13));
        TU_OK(nn_session_logits(s, a, 256));
        full_logits(md, toks, n, b, 256);
        for (int i = 0; i < 256; i++) assert_true(fabs((double)a[i] - b[i]) <= 1e-5);
    }
    nn_session_free(s);
    nn_model_free(md);
}

/* ---------------------------------------------- half-precision weights */

/* A random GPT of odd sizes (C 40: a partial 32-element step in every dot
 * product; V 77: a partial block of rows), the same weights for every seed. */
static nn_module *odd_gpt(void) {
    nn_gpt_config c = gpt_config(77, 24, 2, 4, 40);
    nn_generator_seed(NULL, 11);
    nn_module *m = TU_NN(nn_gpt_new(&c));
    /* nanoGPT's init leaves biases and norms at 0 / 1: give them values */
    nn_statedict *sd = TU_NN(nn_module_state_dict(m));
    for (int64_t i = 0; i < nn_statedict_size(sd); i++)
        if (nn_tensor_ndim(nn_statedict_tensor(sd, i)) == 1)
            TU_OK(nn_init_uniform(nn_statedict_tensor(sd, i), 0.5, 1.5, NULL));
    nn_statedict_free(sd);
    return m;
}

/* Session logits after the prompt and after each of `steps` greedy tokens
 * (the tokens chosen by `ref`'s run when given, so both see one sequence):
 * out[(steps + 1) x V]; toks [8 + steps]. */
static void session_logits(nn_model *md, int64_t *toks, int steps, bool choose, float *out,
                           int64_t V) {
    nn_session *s = TU_NN(nn_session_new(md, NULL));
    TU_OK(nn_session_append(s, toks, 8)); /* prefill: several rows at once */
    for (int i = 0;; i++) {
        TU_OK(nn_session_logits(s, out + i * V, V));
        if (i == steps) break;
        if (choose) TU_OK(nn_session_sample(s, &toks[8 + i]));
        TU_OK(nn_session_append(s, &toks[8 + i], 1)); /* decode: one row */
    }
    nn_session_free(s);
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

/* The int8 model's session logits lq[(steps + 1) x V] against recomputing
 * the sequence with its forward, after 1 and after all `steps` decode
 * steps: the larger rel_err. */
static double recompute_err(nn_model *mdq, const int64_t *toks, int steps, const float *lq,
                            int64_t V) {
    float full[256];
    assert_true(V <= 256);
    double e = 0;
    for (int n = 9; n <= 8 + steps; n += steps - 1) {
        full_logits(mdq, toks, n, full, V);
        e = fmax(e, rel_err(lq + (n - 8) * V, full, V));
    }
    return e;
}

/* A GPT converted to bf16 / f16 (nn_module_convert) decodes through the
 * half-weight kernels: its model file holds the 16-bit weights (about half
 * the bytes) and loads back as such; its session logits match (1) the f32
 * model holding the identical rounded weights (nn_module_convert back to
 * f32): only the sums' order and, where AVX-512 BF16 multiplies bf16, the
 * activations' rounding differ; (2) recomputing the sequence with the half
 * model's forward; (3) the original f32 model within the weights' rounding
 * (the documented tolerance: 1e-2 of the largest logit for bf16, 2e-3 for
 * f16, on this model). */
static void test_half_weights_session(void **st) {
    (void)st;
    enum { STEPS = 8, V = 77 };
    const nn_dtype dts[2] = {NN_DTYPE_BF16, NN_DTYPE_F16};
    /* measured here (AVX-512 BF16): bf16 5.0e-4 / 1.8e-3, f16 2.5e-7 / 2.1e-4 */
    const double tol_same[2] = {4e-3, 4e-6}, tol_f32[2] = {1e-2, 2e-3};
    size_t len32 = 0;
    nn_module *m = odd_gpt();
    nn_model *md32 = save_load_len(m, &len32);
    nn_module_free(m);
    int64_t toks[8 + STEPS] = {3, 76, 0, 41, 5, 22, 8, 60};
    static float l32[(STEPS + 1) * V], lh[(STEPS + 1) * V], lr[(STEPS + 1) * V];
    session_logits(md32, toks, STEPS, true, l32, V);
    for (int d = 0; d < 2; d++) {
        m = odd_gpt();
        TU_OK(nn_module_convert(m, dts[d]));
        size_t lenh = 0;
        nn_model *mdh = save_load_len(m, &lenh);
        assert_true(lenh < len32 * 0.6);
        nn_module *lm = nn_model_module(mdh);
        assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(lm, "lm_head.weight")), dts[d]);
        assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(lm, "transformer.wpe.weight")),
                         dts[d]);
        assert_int_equal(
            nn_tensor_dtype(nn_module_get_parameter(lm, "transformer.h.1.mlp.c_proj.weight")),
            dts[d]);
        TU_OK(nn_module_convert(m, NN_DTYPE_F32)); /* the rounded weights, in f32 */
        nn_model *mdr = save_load(m);
        nn_module_free(m);
        session_logits(mdh, toks, STEPS, false, lh, V);
        session_logits(mdr, toks, STEPS, false, lr, V);
        const double e_same = rel_err(lh, lr, (STEPS + 1) * V);
        const double e_f32 = rel_err(lh, l32, (STEPS + 1) * V);
        float full[V];
        full_logits(mdh, toks, 8 + STEPS, full, V);
        const double e_full = rel_err(lh + STEPS * V, full, V);
        assert_true(e_same <= tol_same[d]);
        assert_true(e_full <= tol_same[d]);
        assert_true(e_f32 <= tol_f32[d]);
        nn_model_free(mdr);
        nn_model_free(mdh);
    }
    nn_model_free(md32);
}

/* nn_quantize_dynamic on a GPT: the four projections of every block
 * become QuantizedLinear (int8 weights per output channel, activations per
 * row at run time); the tied head and the embeddings stay f32. Checked: the
 * report names the 8 projections and not the head; the head stays tied; the
 * model file is smaller and loads back with the same forward; session
 * logits (prefill + decode steps) against the f32 model within the
 * documented tolerance (1e-2 of the largest logit on this model), and
 * against recomputing the sequence with the int8 model's forward (the same
 * per-row quantization and integer sums: 1e-5). */
static void test_int8_session(void **st) {
    (void)st;
    enum { STEPS = 8, V = 77 };
    /* measured here (AVX-512 VNNI): 1.7e-3 vs f32, 2.0e-7 vs recompute */
    size_t len32 = 0, lenq = 0;
    nn_module *m = odd_gpt();
    nn_model *md32 = save_load_len(m, &len32);
    nn_module_free(m);
    int64_t toks[8 + STEPS] = {3, 76, 0, 41, 5, 22, 8, 60};
    static float l32[(STEPS + 1) * V], lq[(STEPS + 1) * V];
    session_logits(md32, toks, STEPS, true, l32, V);

    m = odd_gpt();
    const int64_t cs[2] = {2, 8};
    const int64_t ctok[16] = {1, 9, 33, 70, 2, 15, 40, 6, 76, 0, 12, 50, 7, 7, 19, 64};
    nn_scope *sc = nn_scope_begin();
    nn_tensor *calib = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, cs, 2, ctok));
    char *rep = NULL;
    TU_OK(nn_quantize_dynamic(m, calib, &rep));
    assert_non_null(rep);
    int lines = 0;
    for (const char *c = rep; *c; c++) lines += *c == '\n';
    assert_int_equal(lines, 1 + 8 + 2); /* header, 2 x 4 projections, model, argmax */
    assert_non_null(strstr(rep, "transformer.h.1.mlp.c_proj"));
    assert_non_null(strstr(rep, "transformer.h.0.attn.c_attn"));
    assert_null(strstr(rep, "lm_head"));
    assert_non_null(strstr(rep, "argmax agrees"));
    nn_free(rep);
    const char *projs[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 4; i++) {
            char name[64];
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, projs[i]);
            assert_string_equal(nn_module_type_name(TU_NN(nn_module_get_module(m, name))),
                                "QuantizedLinear");
        }
    assert_string_equal(nn_module_type_name(nn_module_get_module(m, "lm_head")), "Linear");
    assert_ptr_equal(nn_module_get_parameter(m, "lm_head.weight"),
                     nn_module_get_parameter(m, "transformer.wte.weight"));
    /* save / load: same forward, smaller file */
    nn_model *mdq = save_load_len(m, &lenq);
    assert_true(lenq < len32 * 0.45);
    nn_module *lm = nn_model_module(mdq);
    assert_ptr_equal(nn_module_get_parameter(lm, "lm_head.weight"),
                     nn_module_get_parameter(lm, "transformer.wte.weight"));
    nn_tensor *y1 = TU_NN(nn_module_forward(m, calib)), *y2 = TU_NN(nn_model_predict(mdq, calib));
    assert_true(nn_tensor_equal(y1, y2));
    nn_scope_end(sc);
    nn_module_free(m);

    session_logits(mdq, toks, STEPS, false, lq, V);
    const double e_f32 = rel_err(lq, l32, (STEPS + 1) * V);
    const double e_full = recompute_err(mdq, toks, STEPS, lq, V);
    assert_true(e_f32 <= 1e-2);
    assert_true(e_full <= 1e-5);
    nn_model_free(mdq);
    nn_model_free(md32);
    /* regression: layers already converted to 16 bits are not read as f32
     * (a bf16 GPT has nothing left to quantize) */
    m = odd_gpt();
    TU_OK(nn_module_convert(m, NN_DTYPE_BF16));
    assert_int_equal(nn_quantize_dynamic(m, NULL, NULL), NN_ERR_INVALID);
    assert_string_equal(nn_module_type_name(nn_module_get_module(m, "transformer.h.0.mlp.c_fc")),
                        "Linear");
    nn_module_free(m);
}

/* nn_quantize_static on a GPT: calibration over batches of token ids (a
 * loader over f32 ids, as datasets hold them), every projection gets a
 * static activation scale and zero point from the ranges seen; checked: the
 * report's lines say "static", the file round trip, session logits against
 * the f32 model (1e-2 of the largest logit, as for dynamic activations) and against
 * recomputing the sequence with the int8 model's forward (1e-5: the same
 * fixed parameters and integer sums); a batch that is not integer ids is
 * refused and leaves the GPT float. Measured here: 1.7e-3 vs f32 (dynamic:
 * 1.7e-3), 8.7e-7 vs recompute. */
static void test_int8_static_session(void **st) {
    (void)st;
    enum { STEPS = 8, V = 77, N = 6, T = 8 };
    nn_model *md32 = model_of(odd_gpt());
    int64_t toks[8 + STEPS] = {3, 76, 0, 41, 5, 22, 8, 60};
    static float l32[(STEPS + 1) * V], lq[(STEPS + 1) * V];
    session_logits(md32, toks, STEPS, true, l32, V);

    nn_module *m = odd_gpt();
    nn_scope *sc = nn_scope_begin();
    float ids[N * T];
    uint64_t r = 12345;
    for (int i = 0; i < N * T; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (float)((r >> 33) % V);
    }
    const int64_t xs[2] = {N, T};
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, xs, 2, ids));
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, NULL));
    nn_loader *ld = TU_NN(nn_loader_new(ds, 2, false, 0));
    /* not token ids: refused, the GPT stays float */
    float bad[N * T];
    memcpy(bad, ids, sizeof bad);
    bad[5] = 2.5f;
    nn_tensor *xb = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, xs, 2, bad));
    nn_dataset *dsb = TU_NN(nn_dataset_from_tensors(xb, NULL));
    nn_loader *ldb = TU_NN(nn_loader_new(dsb, 6, false, 0));
    assert_int_equal(nn_quantize_static(m, ldb, 1, NULL), NN_ERR_DTYPE);
    assert_non_null(strstr(nn_last_error(), "token ids"));
    assert_string_equal(nn_module_type_name(nn_module_get_module(m, "transformer.h.0.attn.c_attn")),
                        "Linear");
    char *rep = NULL;
    TU_OK(nn_quantize_static(m, ld, 3, &rep));
    int lines = 0, stat = 0;
    for (const char *c = rep; *c; c++) lines += *c == '\n';
    for (const char *c = rep; (c = strstr(c, "static ")); c++) stat++;
    assert_int_equal(lines, 1 + 8 + 2);
    assert_int_equal(stat, 8);
    nn_free(rep);
    nn_model *mdq = save_load(m);
    nn_module_free(m);
    nn_loader_free(ld), nn_dataset_free(ds), nn_loader_free(ldb), nn_dataset_free(dsb);
    nn_scope_end(sc);
    session_logits(mdq, toks, STEPS, false, lq, V);
    const double e_f32 = rel_err(lq, l32, (STEPS + 1) * V);
    const double e_full = recompute_err(mdq, toks, STEPS, lq, V);
    print_message("static int8 GPT: session vs f32 %.3g, vs recompute %.3g\n", e_f32, e_full);
    assert_true(e_f32 <= 1e-2);
    assert_true(e_full <= 1e-5);
    nn_model_free(mdq);
    nn_model_free(md32);
}

typedef struct {
    int64_t seen[64];
    int n, stop_after;
} stream;

static int on_tok(int64_t t, void *user) {
    stream *s = user;
    s->seen[s->n++] = t;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_sampling_rules(void **st) {
    (void)st;
    nn_model *md = golden_model();
    const int64_t prompt[3] = {1, 2, 3};
    int64_t out[16], out2[16], n1, n2;
    nn_sampling o;
    TU_OK(nn_sampling_init(&o));
    o.max_tokens = 10;
    /* greedy, top_k 1 and a tiny top_p all take the argmax */
    nn_session *g = TU_NN(nn_session_new(md, &o));
    TU_OK(nn_session_generate(g, prompt, 3, NULL, 0, out, 16, &n1, NULL, NULL));
    assert_int_equal(n1, 10);
    o.temperature = 1.5;
    o.top_k = 1;
    o.seed = 9;
    nn_session *k1 = TU_NN(nn_session_new(md, &o));
    TU_OK(nn_session_generate(k1, prompt, 3, NULL, 0, out2, 16, &n2, NULL, NULL));
    assert_memory_equal(out, out2, sizeof(int64_t) * 10);
    o.top_k = 0;
    o.top_p = 1e-6;
    nn_session *p0 = TU_NN(nn_session_new(md, &o));
    TU_OK(nn_session_generate(p0, prompt, 3, NULL, 0, out2, 16, &n2, NULL, NULL));
    assert_memory_equal(out, out2, sizeof(int64_t) * 10);
    /* seeded sampling repeats after a reset; another seed differs somewhere */
    o.top_p = 0.9;
    o.top_k = 20;
    o.temperature = 2.0;
    o.seed = 123;
    nn_session *a = TU_NN(nn_session_new(md, &o));
    TU_OK(nn_session_generate(a, prompt, 3, NULL, 0, out, 16, &n1, NULL, NULL));
    TU_OK(nn_session_reset(a));
    TU_OK(nn_session_generate(a, prompt, 3, NULL, 0, out2, 16, &n2, NULL, NULL));
    assert_int_equal(n1, n2);
    assert_memory_equal(out, out2, sizeof(int64_t) * (size_t)n1);
    /* top-k: each sampled token is among the k most likely */
    o.top_k = 3;
    o.top_p = 1;
    nn_session *k3 = TU_NN(nn_session_new(md, &o));
    TU_OK(nn_session_append(k3, prompt, 3));
    for (int step = 0; step < 12; step++) {
        float lg[40];
        int64_t t;
        TU_OK(nn_session_logits(k3, lg, 40));
        TU_OK(nn_session_sample(k3, &t));
        int above = 0;
        for (int i = 0; i < 40; i++) above += lg[i] > lg[t];
        assert_true(above < 3);
        TU_OK(nn_session_append(k3, &t, 1));
    }
    /* top-p: the token lies in the smallest prefix holding p of the mass */
    o.top_k = 0;
    o.top_p = 0.5;
    o.temperature = 1;
    nn_session *pp = TU_NN(nn_session_new(md, &o));
    TU_OK(nn_session_append(pp, prompt, 3));
    for (int step = 0; step < 12; step++) {
        float lg[40];
        double pr[40], mx = -1e30, sum = 0;
        int64_t t;
        TU_OK(nn_session_logits(pp, lg, 40));
        TU_OK(nn_session_sample(pp, &t));
        for (int i = 0; i < 40; i++) mx = lg[i] > mx ? lg[i] : mx;
        for (int i = 0; i < 40; i++) sum += pr[i] = exp(lg[i] - mx);
        double higher = 0; /* mass strictly above the chosen token's */
        for (int i = 0; i < 40; i++)
            if (pr[i] > pr[t]) higher += pr[i] / sum;
        assert_true(higher < 0.5 + 1e-6);
        TU_OK(nn_session_append(pp, &t, 1));
    }
    /* stop tokens end generation (not emitted), the callback sees each token
     * and can stop, out's capacity bounds the count */
    o.top_p = 1;
    o.top_k = 0;
    o.temperature = 0;
    o.max_tokens = 0;
    nn_session *sg = TU_NN(nn_session_new(md, &o));
    TU_OK(nn_session_generate(sg, prompt, 3, NULL, 0, out, 16, &n1, NULL, NULL));
    assert_int_equal(n1, 13); /* the cache (16) fills first */
    TU_OK(nn_session_reset(sg));
    int64_t stop = out[4];
    int first = 0;
    while (out[first] != stop) first++;
    TU_OK(nn_session_generate(sg, prompt, 3, &stop, 1, out2, 16, &n2, NULL, NULL));
    assert_int_equal(n2, first);
    assert_memory_equal(out, out2, sizeof(int64_t) * (size_t)first);
    TU_OK(nn_session_reset(sg));
    stream str = {.stop_after = 4};
    TU_OK(nn_session_generate(sg, prompt, 3, NULL, 0, NULL, 0, &n2, on_tok, &str));
    assert_int_equal(n2, 4);
    assert_int_equal(str.n, 4);
    assert_memory_equal(out, str.seen, sizeof(int64_t) * 4);
    /* continue the conversation without a new prompt */
    TU_OK(nn_session_generate(sg, NULL, 0, NULL, 0, out2, 2, &n2, NULL, NULL));
    assert_int_equal(n2, 2);
    assert_memory_equal(out + 4, out2, sizeof(int64_t) * 2);
    assert_int_equal(nn_session_length(sg), 3 + 6);
    nn_session *all[] = {g, k1, p0, a, k3, pp, sg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nn_session_free(all[i]);
    nn_model_free(md);
}

/* -------------------------------------------------------------- threads */

typedef struct {
    nn_model *md;
    uint64_t seed;
    int64_t out[64], n;
    nn_status st;
} job;

static void run_job(job *j) {
    nn_sampling o;
    nn_sampling_init(&o);
    o.temperature = 0.9;
    o.top_k = 30;
    o.top_p = 0.95;
    o.seed = j->seed;
    o.max_tokens = 40;
    nn_session *s = nn_session_new(j->md, &o);
    int64_t prompt[4] = {5, 6, 7, (int64_t)(j->seed % 200)};
    j->st = s ? nn_session_generate(s, prompt, 4, NULL, 0, j->out, 64, &j->n, NULL, NULL)
              : nn_last_status();
    nn_session_free(s);
}

static void *thread_main(void *p) {
    run_job(p);
    return NULL;
}

static void test_threads_share_model(void **st) {
    (void)st;
    nn_gpt_config c = gpt_config(256, 64, 2, 2, 32);
    nn_model *md = model_of(TU_NN(nn_gpt_new(&c)));
    enum { N = 6 };
    job ref[N], par[N];
    for (int i = 0; i < N; i++) {
        ref[i] = (job){.md = md, .seed = 100 + (uint64_t)i};
        par[i] = ref[i];
        run_job(&ref[i]);
        TU_OK(ref[i].st);
        assert_int_equal(ref[i].n, 40);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) assert_int_equal(pthread_create(&th[i], NULL, thread_main, &par[i]), 0);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        TU_OK(par[i].st);
        assert_int_equal(par[i].n, ref[i].n);
        assert_memory_equal(par[i].out, ref[i].out, sizeof(int64_t) * (size_t)ref[i].n);
    }
    /* different seeds gave different texts */
    assert_true(memcmp(ref[0].out, ref[1].out, sizeof(int64_t) * 40) != 0);
    nn_model_free(md);
}

/* --------------------------------------------------------------- errors */

static void test_bad_configs(void **st) {
    (void)st;
    nn_gpt_config c;
    TU_OK(nn_gpt_config_init(&c));
    c.n_embd = 30;
    c.n_head = 4;
    assert_null(nn_gpt_new(&c));
    tu_expect_error(NN_ERR_INVALID, "n_embd 30 is not divisible by n_head 4");
    TU_OK(nn_gpt_config_init(&c));
    c.vocab_size = 0;
    assert_null(nn_gpt_new(&c));
    tu_expect_error(NN_ERR_INVALID, "vocab_size = 0");
    TU_OK(nn_gpt_config_init(&c));
    c.n_layer = -2;
    assert_null(nn_gpt_new(&c));
    tu_expect_error(NN_ERR_INVALID, "n_layer = -2");
    TU_OK(nn_gpt_config_init(&c));
    c.dropout = 1.0;
    assert_null(nn_gpt_new(&c));
    tu_expect_error(NN_ERR_INVALID, "dropout = 1");
    TU_OK(nn_gpt_config_init(&c));
    c.bias = 2;
    assert_null(nn_gpt_new(&c));
    tu_expect_error(NN_ERR_INVALID, "bias = 2");
    TU_OK(nn_gpt_config_init(&c));
    c.block_size = (int64_t)1 << 40;
    assert_null(nn_gpt_new(&c));
    tu_expect_error(NN_ERR_INVALID, "block_size");
    TU_OK(nn_gpt_config_init(&c));
    c.struct_size = 8;
    assert_null(nn_gpt_new(&c));
    tu_expect_error(NN_ERR_VERSION, "struct_size = 8");
    assert_null(nn_gpt_new(NULL));
    tu_expect_error(NN_ERR_NULL, "nn_gpt_new");
    /* a module of another kind */
    nn_module *lin = TU_NN(nn_linear_new(2, 3, true));
    assert_int_equal(nn_gpt_get_config(lin, &c), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "Linear, not a GPT");
    nn_model *md = save_load(lin);
    assert_null(nn_session_new(md, NULL));
    tu_expect_error(NN_ERR_INVALID, "not a GPT");
    nn_model_free(md);
    nn_module_free(lin);
    /* sampling settings */
    nn_model *gm = golden_model();
    nn_sampling o;
    TU_OK(nn_sampling_init(&o));
    o.top_p = 0;
    assert_null(nn_session_new(gm, &o));
    tu_expect_error(NN_ERR_INVALID, "top_p = 0");
    TU_OK(nn_sampling_init(&o));
    o.temperature = -1;
    assert_null(nn_session_new(gm, &o));
    tu_expect_error(NN_ERR_INVALID, "temperature = -1");
    TU_OK(nn_sampling_init(&o));
    o.struct_size = 4;
    assert_null(nn_session_new(gm, &o));
    tu_expect_error(NN_ERR_VERSION, "struct_size = 4");
    nn_model_free(gm);
}

static void test_bad_ids(void **st) {
    (void)st;
    nn_scope *sc = nn_scope_begin();
    nn_model *md = golden_model();
    nn_module *m = nn_model_module(md);
    int64_t s2[2] = {1, 3}, big[2] = {1, 17};
    int64_t bad[3] = {1, 40, 2};
    nn_tensor *x = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, s2, 2, bad));
    assert_null(nn_module_forward(m, x));
    tu_expect_error(NN_ERR_RANGE, "40");
    assert_null(nn_module_forward(m, nn_tensor_zeros(NN_DTYPE_I64, big, 2)));
    tu_expect_error(NN_ERR_SHAPE, "sequence length 17, expected 1..16");
    assert_null(nn_module_forward(m, nn_tensor_zeros(NN_DTYPE_F32, s2, 2)));
    tu_expect_error(NN_ERR_SHAPE, "expected i64 token ids [B, T], got f32");
    assert_null(nn_module_forward(m, nn_tensor_zeros(NN_DTYPE_I64, s2, 1)));
    tu_expect_error(NN_ERR_SHAPE, "expected i64 token ids");
    nn_session *s = TU_NN(nn_session_new(md, NULL));
    assert_int_equal(nn_session_append(s, bad, 3), NN_ERR_RANGE);
    tu_expect_error(NN_ERR_RANGE, "tokens[1] = 40 is outside the vocabulary 0..39");
    assert_int_equal(nn_session_length(s), 0);
    int64_t t;
    assert_int_equal(nn_session_sample(s, &t), NN_ERR_STATE);
    assert_int_equal(nn_session_generate(s, NULL, 0, NULL, 0, NULL, 0, NULL, NULL, NULL),
                     NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "give a prompt");
    int64_t ok[1] = {2};
    assert_int_equal(nn_session_generate(s, ok, 1, NULL, 2, NULL, 0, NULL, NULL, NULL),
                     NN_ERR_NULL);
    assert_int_equal(nn_session_append(s, ok, -1), NN_ERR_INVALID);
    float lg[8];
    TU_OK(nn_session_append(s, ok, 1));
    assert_int_equal(nn_session_logits(s, lg, 8), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "the vocabulary needs 40");
    /* the wrong handle kind */
    assert_int_equal(nn_session_reset((nn_session *)m), NN_ERR_BAD_HANDLE);
    tu_expect_error(NN_ERR_BAD_HANDLE, "is a module, expected a generation session");
    nn_session_free(s);
    nn_model_free(md);
    nn_scope_end(sc);
}

/* A GPT whose file lost a tensor, or holds one of another shape: the load
 * rejects it (the kind's completeness check), and a module changed in
 * memory reports it on use. */
static void test_damaged_structure(void **st) {
    (void)st;
    nn_scope *sc = nn_scope_begin();
    nn_gpt_config c = golden_cfg();
    nn_module *m = TU_NN(nn_gpt_new(&c));
    /* swap block 1's MLP for an empty dict */
    nn_module *h1 = TU_NN(nn_module_get_module(m, "transformer.h.1"));
    TU_OK(nn_module_dict_set(h1, "mlp", nn_module_dict_new()));
    assert_null(nn_module_forward(m, tu_golden_get(G, "idx")));
    tu_expect_error(NN_ERR_FORMAT, "no parameter 'transformer.h.1.mlp.c_fc.weight'");
    void *buf = NULL;
    size_t len = 0;
    TU_OK(nn_model_save_buffer(m, NULL, NULL, &buf, &len));
    assert_null(nn_model_load_buffer(buf, len, NULL));
    tu_expect_error(NN_ERR_FORMAT, "transformer.h.1.mlp.c_fc.weight");
    nn_free(buf);
    /* a c_attn of the wrong width */
    nn_module *a0 = TU_NN(nn_module_get_module(m, "transformer.h.0.attn"));
    TU_OK(nn_module_dict_set(a0, "c_attn", nn_linear_new(16, 40, true)));
    assert_null(nn_module_forward(m, tu_golden_get(G, "idx")));
    tu_expect_error(NN_ERR_FORMAT, "'transformer.h.0.attn.c_attn.weight' is f32 [40,16]");
    nn_module_free(m);
    nn_scope_end(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_dict_names),
        cmocka_unit_test(test_golden_loss_grads_adamw),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_no_bias_untied),
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_cache_equals_recompute),
        cmocka_unit_test(test_cache_long_prompt),
        cmocka_unit_test(test_half_weights_session),
        cmocka_unit_test(test_int8_session),
        cmocka_unit_test(test_int8_static_session),
        cmocka_unit_test(test_sampling_rules),
        cmocka_unit_test(test_threads_share_model),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_damaged_structure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
