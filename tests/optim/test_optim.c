/* Optimizers and gradient clipping vs PyTorch 1.13 (golden/optim_train.txt):
 * 5 training steps of a tiny MLP, Linear(4,8)-tanh-Linear(8,3) + cross-
 * entropy, per optimizer and option set; state export -> import resumes
 * bit-identically; errors. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static tu_golden *G;

static nn_tensor *gt(const char *name) { return tu_golden_get(G, name); }

/* Fresh copies of the script's initial parameters W1, b1, W2, b2. */
static void fresh_params(nn_tensor **p) {
    for (int i = 0; i < 4; i++) {
        char n[8];
        snprintf(n, sizeof n, "p%d", i);
        p[i] = TU_NN(nn_tensor_clone(gt(n)));
        TU_OK(nn_tensor_set_requires_grad(p[i], true));
    }
}

static void free_params(nn_tensor **p) {
    for (int i = 0; i < 4; i++) nn_tensor_free(p[i]);
}

/* Loss of the MLP on the script's batch (a new tensor; caller frees). */
static nn_tensor *mlp_loss(nn_tensor **p) {
    nn_scope *s = nn_scope_begin();
    nn_tensor *h = nn_tanh(nn_linear(gt("X"), p[0], p[1]));
    nn_tensor *l = nn_cross_entropy(nn_linear(h, p[2], p[3]), gt("Y"));
    nn_tensor_retain(l);
    nn_scope_end(s);
    if (!l) fail_msg("mlp_loss: %s", nn_last_error());
    return l;
}

/* One training step; returns the loss before the update. */
static double train_step(nn_optim *o, nn_tensor **p) {
    TU_OK(nn_optim_zero_grad(o));
    nn_tensor *l = mlp_loss(p);
    double v = nn_tensor_item(l);
    TU_OK(nn_backward(l));
    nn_tensor_free(l);
    TU_OK(nn_optim_step(o));
    return v;
}

typedef nn_optim *(*make_fn)(nn_tensor **p);

static nn_optim *set_all(nn_optim *o, const nn_optim_option *k, const double *v, int n) {
    if (!o) fail_msg("optimizer: %s", nn_last_error());
    for (int i = 0; i < n; i++) TU_OK(nn_optim_set(o, k[i], v[i]));
    return o;
}

static nn_optim *m_sgd(nn_tensor **p) { return nn_sgd(p, 4, 0.1, 0.0); }
static nn_optim *m_sgd_mom(nn_tensor **p) { return nn_sgd(p, 4, 0.1, 0.9); }
static nn_optim *m_sgd_mom_damp_wd(nn_tensor **p) {
    nn_optim_option k[] = {NN_OPTIM_DAMPENING, NN_OPTIM_WEIGHT_DECAY};
    double v[] = {0.1, 0.01};
    return set_all(nn_sgd(p, 4, 0.1, 0.9), k, v, 2);
}
static nn_optim *m_sgd_nesterov(nn_tensor **p) {
    nn_optim_option k[] = {NN_OPTIM_NESTEROV, NN_OPTIM_WEIGHT_DECAY};
    double v[] = {1, 0.001};
    return set_all(nn_sgd(p, 4, 0.1, 0.9), k, v, 2);
}
static nn_optim *m_adam(nn_tensor **p) { return nn_adam(p, 4, 0.01); }
static nn_optim *m_adam_wd_ams(nn_tensor **p) {
    nn_optim_option k[] = {NN_OPTIM_BETA1, NN_OPTIM_BETA2, NN_OPTIM_EPS, NN_OPTIM_WEIGHT_DECAY, NN_OPTIM_AMSGRAD};
    double v[] = {0.8, 0.99, 1e-6, 0.01, 1};
    return set_all(nn_adam(p, 4, 0.01), k, v, 5);
}
static nn_optim *m_adamw(nn_tensor **p) { return nn_adamw(p, 4, 0.01, 0.1); }
static nn_optim *m_adamw_ams(nn_tensor **p) {
    nn_optim_option k[] = {NN_OPTIM_AMSGRAD};
    double v[] = {1};
    nn_optim *o = set_all(nn_optim_new(NN_OPTIM_TYPE_ADAMW, p, 4, 0.02), k, v, 1);
    double wd;
    TU_OK(nn_optim_get(o, 0, NN_OPTIM_WEIGHT_DECAY, &wd));
    assert_true(wd == 0.01); /* PyTorch's AdamW default */
    return o;
}
static nn_optim *m_rmsprop(nn_tensor **p) { return nn_rmsprop(p, 4, 0.01); }
static nn_optim *m_rmsprop_full(nn_tensor **p) {
    nn_optim_option k[] = {NN_OPTIM_ALPHA, NN_OPTIM_MOMENTUM, NN_OPTIM_CENTERED, NN_OPTIM_WEIGHT_DECAY};
    double v[] = {0.9, 0.9, 1, 0.01};
    return set_all(nn_rmsprop(p, 4, 0.01), k, v, 4);
}
static nn_optim *m_adagrad(nn_tensor **p) { return nn_adagrad(p, 4, 0.1); }
static nn_optim *m_adagrad_full(nn_tensor **p) {
    nn_optim_option k[] = {NN_OPTIM_LR_DECAY, NN_OPTIM_INITIAL_ACCUMULATOR_VALUE, NN_OPTIM_WEIGHT_DECAY};
    double v[] = {0.01, 0.1, 0.01};
    return set_all(nn_adagrad(p, 4, 0.1), k, v, 3);
}
static nn_optim *m_sgd_groups(nn_tensor **p) {
    /* PyTorch: SGD([{params: W1,b1, momentum: 0.9}, {params: W2,b2, lr: 0.05}], lr=0.1) */
    nn_optim *o = TU_NN(nn_optim_new(NN_OPTIM_TYPE_SGD, p, 2, 0.1));
    TU_OK(nn_optim_set_group(o, 0, NN_OPTIM_MOMENTUM, 0.9));
    TU_OK(nn_optim_add_group(o, p + 2, 2, 0.05));
    assert_int_equal(nn_optim_num_groups(o), 2);
    double m;
    TU_OK(nn_optim_get(o, 1, NN_OPTIM_MOMENTUM, &m));
    assert_true(m == 0.0);
    return o;
}
static nn_optim *m_adam_frozen(nn_tensor **p) {
    TU_OK(nn_tensor_set_requires_grad(p[3], false)); /* never gets a gradient: skipped */
    return nn_adam(p, 4, 0.01);
}

static const struct {
    const char *name;
    make_fn make;
} CONFIGS[] = {
    {"sgd", m_sgd},
    {"sgd_mom", m_sgd_mom},
    {"sgd_mom_damp_wd", m_sgd_mom_damp_wd},
    {"sgd_nesterov", m_sgd_nesterov},
    {"adam", m_adam},
    {"adam_wd_ams", m_adam_wd_ams},
    {"adamw", m_adamw},
    {"adamw_ams", m_adamw_ams},
    {"rmsprop", m_rmsprop},
    {"rmsprop_full", m_rmsprop_full},
    {"adagrad", m_adagrad},
    {"adagrad_full", m_adagrad_full},
    {"sgd_groups", m_sgd_groups},
    {"adam_frozen", m_adam_frozen},
};

static void check_params(nn_tensor **p, const char *cfg) {
    for (int i = 0; i < 4; i++) {
        char n[96];
        snprintf(n, sizeof n, "%s.p%d", cfg, i);
        tu_assert_close(p[i], gt(n), 1e-5, 1e-6, n);
    }
}

static void test_training_parity(void **st) {
    (void)st;
    for (size_t c = 0; c < sizeof CONFIGS / sizeof CONFIGS[0]; c++) {
        nn_tensor *p[4];
        fresh_params(p);
        nn_optim *o = CONFIGS[c].make(p);
        if (!o) fail_msg("%s: %s", CONFIGS[c].name, nn_last_error());
        float losses[5];
        for (int s = 0; s < 5; s++) losses[s] = (float)train_step(o, p);
        int64_t five = 5;
        nn_tensor *lt = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, &five, 1, losses));
        char n[96];
        snprintf(n, sizeof n, "%s.losses", CONFIGS[c].name);
        tu_assert_close(lt, gt(n), 1e-5, 1e-6, n);
        nn_tensor_free(lt);
        check_params(p, CONFIGS[c].name);
        nn_optim_free(o);
        free_params(p);
    }
}

/* ----------------------------------------------------------- clipping */

static void grads_of_one_backward(nn_tensor **p) {
    fresh_params(p);
    nn_tensor *l = mlp_loss(p);
    TU_OK(nn_backward(l));
    nn_tensor_free(l);
}

static void check_grads(nn_tensor **p, const char *tag) {
    for (int i = 0; i < 4; i++) {
        char n[64];
        snprintf(n, sizeof n, "clip.%s.g%d", tag, i);
        tu_assert_close(nn_tensor_grad(p[i]), gt(n), 1e-5, 1e-7, n);
    }
}

static void test_clip(void **st) {
    (void)st;
    const struct {
        const char *tag;
        double max_norm, type;
    } cases[] = {{"n2", 0.5, 2.0}, {"n1", 0.3, 1.0}, {"ninf", 0.1, INFINITY}, {"big", 100.0, 2.0}};
    for (int c = 0; c < 4; c++) {
        nn_tensor *p[4];
        grads_of_one_backward(p);
        double norm = nn_clip_grad_norm(p, 4, cases[c].max_norm, cases[c].type);
        char n[64];
        snprintf(n, sizeof n, "clip.%s.norm", cases[c].tag);
        double want = nn_tensor_item(gt(n));
        if (fabs(norm - want) > 1e-5 * fabs(want)) fail_msg("%s: %.9g vs %.9g", n, norm, want);
        check_grads(p, cases[c].tag);
        free_params(p);
    }
    nn_tensor *p[4];
    grads_of_one_backward(p);
    TU_OK(nn_clip_grad_value(p, 4, 0.05));
    check_grads(p, "value");
    /* through the optimizer: same as the list form */
    nn_optim *o = TU_NN(nn_sgd(p, 4, 0.1, 0.0));
    double n2 = nn_optim_clip_grad_norm(o, 1e9, 2.0);
    assert_true(n2 > 0 && isfinite(n2));
    assert_true(isnan(nn_clip_grad_norm(p, 4, 1.0, 0.0)));
    tu_expect_error(NN_ERR_INVALID, "norm_type = 0");
    assert_int_equal(nn_clip_grad_value(p, 4, -1.0), NN_ERR_INVALID);
    nn_clear_error();
    nn_optim_free(o);
    free_params(p);
}

/* --------------------------------------------------- state round trip */

static void test_state_resume(void **st) {
    (void)st;
    nn_tensor *a[4], *b[4];
    fresh_params(a);
    nn_optim *oa = m_adam_wd_ams(a);
    train_step(oa, a);
    train_step(oa, a);
    nn_statedict *sd = nn_optim_state_dict(oa);
    if (!sd) fail_msg("state dict: %s", nn_last_error());
    assert_non_null(nn_statedict_get(sd, "state.0.exp_avg"));
    assert_non_null(nn_statedict_get(sd, "state.3.max_exp_avg_sq"));
    assert_true(nn_tensor_item(nn_statedict_get(sd, "state.2.step")) == 2.0);
    /* a fresh optimizer over copies of the current parameters, with default options */
    for (int i = 0; i < 4; i++) {
        b[i] = TU_NN(nn_tensor_clone(a[i]));
        TU_OK(nn_tensor_set_requires_grad(b[i], true));
    }
    nn_optim *ob = TU_NN(nn_adam(b, 4, 0.5));
    TU_OK(nn_optim_load_state_dict(ob, sd));
    double beta1;
    TU_OK(nn_optim_get(ob, 0, NN_OPTIM_BETA1, &beta1));
    assert_true(beta1 == 0.8);
    nn_statedict_free(sd);
    for (int s = 0; s < 3; s++) {
        double la = train_step(oa, a), lb = train_step(ob, b);
        assert_true(la == lb);
    }
    for (int i = 0; i < 4; i++) assert_true(nn_tensor_equal(a[i], b[i]));
    check_params(a, "adam_wd_ams");
    /* wrong shapes are rejected and change nothing */
    nn_tensor *c[4];
    fresh_params(c);
    nn_optim *oc = TU_NN(nn_adam(c + 2, 2, 0.01));
    sd = TU_NN(nn_optim_state_dict(oa));
    assert_int_equal(nn_optim_load_state_dict(oc, sd), NN_ERR_INVALID);
    nn_clear_error();
    nn_statedict_free(sd);
    nn_optim_free(oa);
    nn_optim_free(ob);
    nn_optim_free(oc);
    free_params(a);
    free_params(b);
    free_params(c);
}

/* A damaged state is rejected with its specific error and changes nothing. */
static void test_state_malformed(void **st) {
    (void)st;
    nn_tensor *p[4];
    fresh_params(p);
    nn_optim *o = TU_NN(nn_adam(p, 4, 0.01));
    train_step(o, p);
    nn_statedict *good = TU_NN(nn_optim_state_dict(o));
    nn_statedict *sd = TU_NN(nn_optim_state_dict(o));
    int64_t sh[] = {3, 3};
    nn_tensor *bad = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, sh, 2));
    TU_OK(nn_statedict_set(sd, "state.1.exp_avg", bad));
    TU_OK(nn_statedict_set(sd, "param_groups.0.lr", bad)); /* checked first: malformed double */
    assert_int_equal(nn_optim_load_state_dict(o, sd), NN_ERR_FORMAT);
    tu_expect_error(NN_ERR_FORMAT, "'param_groups.0.lr' is not a one-element i64 tensor");
    nn_statedict_free(sd);
    sd = TU_NN(nn_optim_state_dict(o));
    TU_OK(nn_statedict_set(sd, "state.1.exp_avg", bad));
    assert_int_equal(nn_optim_load_state_dict(o, sd), NN_ERR_SHAPE);
    tu_expect_error(NN_ERR_SHAPE, "'state.1.exp_avg' has shape [3,3]");
    nn_statedict_free(sd);
    sd = TU_NN(nn_statedict_new());
    assert_int_equal(nn_optim_load_state_dict(o, sd), NN_ERR_NOT_FOUND);
    tu_expect_error(NN_ERR_NOT_FOUND, "'param_groups.0.lr' is missing");
    nn_statedict_free(sd);
    /* still the same state */
    nn_statedict *now = TU_NN(nn_optim_state_dict(o));
    assert_int_equal(nn_statedict_size(now), nn_statedict_size(good));
    for (int64_t i = 0; i < nn_statedict_size(good); i++)
        assert_true(nn_tensor_equal(nn_statedict_tensor(now, i), nn_statedict_tensor(good, i)));
    nn_tensor_free(bad);
    nn_statedict_free(now);
    nn_statedict_free(good);
    nn_optim_free(o);
    free_params(p);
}

/* An optimizer over a module's parameters: one SGD step is p - lr * grad. */
static void test_module_params(void **st) {
    (void)st;
    nn_module *lin = TU_NN(nn_linear_new(4, 3, true));
    nn_optim *o = TU_NN(nn_optim_new_module(NN_OPTIM_TYPE_SGD, lin, 0.5));
    assert_int_equal(nn_optim_num_params(o), nn_module_num_parameters(lin));
    nn_scope *s = nn_scope_begin();
    nn_tensor *before = TU_NN(nn_tensor_clone(nn_optim_param(o, 0)));
    nn_tensor *out = TU_NN(nn_module_forward(lin, gt("X")));
    TU_OK(nn_backward(nn_sum(nn_mul(out, out), NULL, 0, false)));
    nn_tensor *want = TU_NN(nn_sub(before, nn_mul_scalar(nn_tensor_grad(nn_optim_param(o, 0)), 0.5)));
    TU_OK(nn_optim_step(o));
    tu_assert_close(nn_optim_param(o, 0), want, 1e-6, 1e-7, "module SGD step");
    nn_scope_end(s);
    nn_optim_free(o);
    nn_module_free(lin);
}

/* Out of memory at every allocation of step + state export: clean failure, no leak. */
static int oom_body(void *ctx) {
    nn_tensor **p = ctx;
    nn_optim *o = nn_adam(p, 4, 0.01);
    if (!o) return 1;
    TU_OK(nn_optim_set(o, NN_OPTIM_AMSGRAD, 1));
    int rc = nn_optim_step(o) != NN_OK;
    nn_statedict *sd = rc ? NULL : nn_optim_state_dict(o);
    if (!rc && !sd) rc = 1;
    if (!rc) rc = nn_optim_load_state_dict(o, sd) != NN_OK;
    nn_statedict_free(sd);
    nn_optim_free(o);
    return rc;
}

static void test_oom(void **st) {
    (void)st;
    nn_tensor *p[4];
    grads_of_one_backward(p);
    tu_alloc_install();
    long sites = tu_oom_sweep(oom_body, p);
    tu_alloc_uninstall();
    assert_true(sites > 10);
    free_params(p);
}

/* -------------------------------------------------------------- errors */

static void test_errors(void **st) {
    (void)st;
    nn_tensor *p[4];
    fresh_params(p);
    nn_optim *o = TU_NN(nn_adam(p, 4, 0.01));
    assert_int_equal(nn_optim_step(o), NN_ERR_NO_GRAD);
    tu_expect_error(NN_ERR_NO_GRAD, "nn_optim_step: no parameter has a gradient");
    assert_int_equal(nn_optim_set(o, NN_OPTIM_LR, -1.0), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "nn_optim_set: lr = -1");
    assert_int_equal(nn_optim_set(o, NN_OPTIM_BETA1, 1.0), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "beta1 = 1");
    assert_int_equal(nn_optim_set(o, NN_OPTIM_EPS, NAN), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "eps = nan");
    assert_int_equal(nn_optim_set(o, NN_OPTIM_MOMENTUM, 0.9), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "'momentum' is not valid for Adam");
    assert_int_equal(nn_optim_set(o, (nn_optim_option)99, 0.9), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "unknown option 99");
    assert_int_equal(nn_optim_set_group(o, 1, NN_OPTIM_LR, 0.1), NN_ERR_RANGE);
    tu_expect_error(NN_ERR_RANGE, "group 1 out of range");
    assert_int_equal(nn_optim_add_group(o, p, 1, 0.1), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "already in group 0");
    double lr;
    TU_OK(nn_optim_get(o, 0, NN_OPTIM_LR, &lr));
    assert_true(lr == 0.01); /* failed sets changed nothing */
    nn_optim_free(o);

    nn_tensor *dup[2] = {p[0], p[0]};
    assert_null(nn_sgd(dup, 2, 0.1, 0.0));
    tu_expect_error(NN_ERR_INVALID, "appears twice");
    assert_null(nn_sgd(p, 0, 0.1, 0.0));
    tu_expect_error(NN_ERR_INVALID, "empty parameter list");
    nn_tensor *nl = TU_NN(nn_mul_scalar(p[0], 2.0));
    assert_null(nn_sgd(&nl, 1, 0.1, 0.0));
    tu_expect_error(NN_ERR_INVALID, "not a leaf");
    nn_tensor_free(nl);
    assert_null(nn_optim_new((nn_optim_type)7, p, 4, 0.1));
    tu_expect_error(NN_ERR_INVALID, "unknown optimizer type 7");
    assert_int_equal(nn_optim_step(NULL), NN_ERR_NULL);
    nn_clear_error();

    /* nesterov without momentum fails at the step, before any update */
    nn_optim *s = TU_NN(nn_sgd(p, 4, 0.1, 0.0));
    TU_OK(nn_optim_set(s, NN_OPTIM_NESTEROV, 1));
    nn_tensor *l = mlp_loss(p);
    TU_OK(nn_backward(l));
    nn_tensor_free(l);
    assert_int_equal(nn_optim_step(s), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "nesterov needs momentum > 0");
    tu_assert_close(p[0], gt("p0"), 0, 0, "untouched");
    nn_optim_free(s);
    free_params(p);
}

static int setup(void **st) {
    (void)st;
    G = tu_golden_open("optim_train.txt");
    return 0;
}

static int teardown(void **st) {
    (void)st;
    tu_golden_close(G);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_parity), cmocka_unit_test(test_clip),
        cmocka_unit_test(test_state_resume),    cmocka_unit_test(test_state_malformed),
        cmocka_unit_test(test_module_params),   cmocka_unit_test(test_oom),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
