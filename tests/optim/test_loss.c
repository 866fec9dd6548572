/* Losses: values and input gradients vs PyTorch 1.13 (golden/optim_loss.txt,
 * from tests/golden/make_golden_optim.py), finite-difference gradchecks
 * (including target gradients) and error reporting. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static tu_golden *G;

static nn_tensor *gt(const char *name) { return tu_golden_get(G, name); }

typedef nn_tensor *(*loss_case_fn)(nn_tensor *x, nn_reduction r);

static nn_tensor *c_mse(nn_tensor *x, nn_reduction r) { return nn_mse_loss(x, gt("t_reg"), r); }
static nn_tensor *c_l1(nn_tensor *x, nn_reduction r) { return nn_l1_loss(x, gt("t_reg"), r); }
static nn_tensor *c_sl1(nn_tensor *x, nn_reduction r) { return nn_smooth_l1_loss(x, gt("t_reg"), 1.0, r); }
static nn_tensor *c_sl1b05(nn_tensor *x, nn_reduction r) { return nn_smooth_l1_loss(x, gt("t_reg"), 0.5, r); }
static nn_tensor *c_sl1b0(nn_tensor *x, nn_reduction r) { return nn_smooth_l1_loss(x, gt("t_reg"), 0.0, r); }
static nn_tensor *c_huber(nn_tensor *x, nn_reduction r) { return nn_huber_loss(x, gt("t_reg"), 1.0, r); }
static nn_tensor *c_huber07(nn_tensor *x, nn_reduction r) { return nn_huber_loss(x, gt("t_reg"), 0.7, r); }
static nn_tensor *c_bce(nn_tensor *x, nn_reduction r) { return nn_bce_loss(x, gt("t_bce"), NULL, r); }
static nn_tensor *c_bce_w(nn_tensor *x, nn_reduction r) { return nn_bce_loss(x, gt("t_bce"), gt("w_bce"), r); }
static nn_tensor *c_bcel(nn_tensor *x, nn_reduction r) { return nn_bce_with_logits(x, gt("t_bce"), NULL, NULL, r); }
static nn_tensor *c_bcel_w(nn_tensor *x, nn_reduction r) {
    return nn_bce_with_logits(x, gt("t_bce"), gt("w_bce"), NULL, r);
}
static nn_tensor *c_bcel_pw(nn_tensor *x, nn_reduction r) {
    return nn_bce_with_logits(x, gt("t_bce"), NULL, gt("pw"), r);
}
static nn_tensor *c_bcel_wpw(nn_tensor *x, nn_reduction r) {
    return nn_bce_with_logits(x, gt("t_bce"), gt("w_bce"), gt("pw"), r);
}
static nn_tensor *c_kl(nn_tensor *x, nn_reduction r) { return nn_kl_div(x, gt("t_kl"), r, false); }
static nn_tensor *c_kl_log(nn_tensor *x, nn_reduction r) { return nn_kl_div(x, gt("tl_kl"), r, true); }
static nn_tensor *c_ce(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce0"), NULL, -100, 0.0, r);
}
static nn_tensor *c_ce_w(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce0"), gt("w_ce"), -100, 0.0, r);
}
static nn_tensor *c_ce_ign(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce"), NULL, -100, 0.0, r);
}
static nn_tensor *c_ce_ign2(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce0"), NULL, 2, 0.0, r);
}
static nn_tensor *c_ce_ls(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce0"), NULL, -100, 0.1, r);
}
static nn_tensor *c_ce_w_ls_ign(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce"), gt("w_ce"), -100, 0.2, r);
}
static nn_tensor *c_ce_prob(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("p_ce"), NULL, -100, 0.0, r);
}
static nn_tensor *c_ce_prob_w_ls(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("p_ce"), gt("w_ce"), -100, 0.15, r);
}
static nn_tensor *c_ce_kdim(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce3"), gt("w_ce3"), -100, 0.0, r);
}
static nn_tensor *c_ce_1d(nn_tensor *x, nn_reduction r) {
    return nn_cross_entropy_ex(x, gt("y_ce1"), NULL, -100, 0.0, r);
}
static nn_tensor *c_nll(nn_tensor *x, nn_reduction r) { return nn_nll_loss(x, gt("y_ce0"), NULL, -100, r); }
static nn_tensor *c_nll_w_ign(nn_tensor *x, nn_reduction r) {
    return nn_nll_loss(x, gt("y_ce"), gt("w_ce"), -100, r);
}

static const struct {
    const char *name, *input;
    loss_case_fn fn;
} CASES[] = {
    {"mse", "x_reg", c_mse},
    {"l1", "x_reg", c_l1},
    {"smooth_l1", "x_reg", c_sl1},
    {"smooth_l1_b05", "x_reg", c_sl1b05},
    {"smooth_l1_b0", "x_reg", c_sl1b0},
    {"huber", "x_reg", c_huber},
    {"huber_d07", "x_reg", c_huber07},
    {"bce", "p_bce", c_bce},
    {"bce_w", "p_bce", c_bce_w},
    {"bcel", "x_reg", c_bcel},
    {"bcel_w", "x_reg", c_bcel_w},
    {"bcel_pw", "x_reg", c_bcel_pw},
    {"bcel_wpw", "x_reg", c_bcel_wpw},
    {"kl", "x_kl", c_kl},
    {"kl_log", "x_kl", c_kl_log},
    {"ce", "x_ce", c_ce},
    {"ce_w", "x_ce", c_ce_w},
    {"ce_ign", "x_ce", c_ce_ign},
    {"ce_ign2", "x_ce", c_ce_ign2},
    {"ce_ls", "x_ce", c_ce_ls},
    {"ce_w_ls_ign", "x_ce", c_ce_w_ls_ign},
    {"ce_prob", "x_ce", c_ce_prob},
    {"ce_prob_w_ls", "x_ce", c_ce_prob_w_ls},
    {"ce_kdim", "x_ce3", c_ce_kdim},
    {"ce_1d", "x_ce1", c_ce_1d},
    {"nll", "x_nll", c_nll},
    {"nll_w_ign", "x_nll", c_nll_w_ign},
};

static const char *const RED_NAMES[] = {"none", "mean", "sum", "batchmean"};

/* One case at one reduction: value and input gradient vs PyTorch. */
static void run_case(int c, nn_reduction red) {
    char what[96], name[128];
    nn_scope *s = nn_scope_begin();
    nn_tensor *x = TU_NN(nn_tensor_clone(gt(CASES[c].input)));
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *out = CASES[c].fn(x, red);
    snprintf(what, sizeof what, "%s.%s", CASES[c].name, RED_NAMES[red]);
    if (!out) fail_msg("%s: %s", what, nn_last_error());
    snprintf(name, sizeof name, "%s.out", what);
    tu_assert_close(out, gt(name), 1e-5, 1e-6, name);
    if (red == NN_REDUCTION_NONE) {
        int64_t n = nn_tensor_numel(out);
        nn_tensor *seed = TU_NN(nn_reshape(nn_linspace(0.5, 1.5, n), nn_tensor_shape(out), nn_tensor_ndim(out)));
        TU_OK(nn_backward_ex(out, seed, false));
    } else {
        TU_OK(nn_backward(out));
    }
    snprintf(name, sizeof name, "%s.grad", what);
    tu_assert_close(nn_tensor_grad(x), gt(name), 1e-5, 1e-6, name);
    nn_scope_end(s);
}

static void test_golden_losses(void **st) {
    (void)st;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        run_case((int)c, NN_REDUCTION_NONE);
        run_case((int)c, NN_REDUCTION_MEAN);
        run_case((int)c, NN_REDUCTION_SUM);
        if (strncmp(CASES[c].name, "kl", 2) == 0) run_case((int)c, NN_REDUCTION_BATCHMEAN);
    }
}

static void test_short_form(void **st) {
    (void)st;
    nn_scope *s = nn_scope_begin();
    nn_tensor *a = TU_NN(nn_cross_entropy(gt("x_ce"), gt("y_ce0")));
    tu_assert_close(a, gt("ce.mean.out"), 1e-5, 1e-6, "nn_cross_entropy");
    nn_scope_end(s);
}

/* ---------------------------------------------------------- gradchecks */

static nn_tensor *g_mse(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_mse_loss(in[0], in[1], NN_REDUCTION_NONE);
}
static nn_tensor *g_huber(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_huber_loss(in[0], in[1], 0.7, NN_REDUCTION_SUM);
}
static nn_tensor *g_sl1(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_smooth_l1_loss(in[0], in[1], 0.5, NN_REDUCTION_MEAN);
}
static nn_tensor *g_bcel(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_bce_with_logits(in[0], in[1], gt("w_bce"), gt("pw"), NN_REDUCTION_NONE);
}
static nn_tensor *g_bce(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_bce_loss(in[0], gt("t_bce"), gt("w_bce"), NN_REDUCTION_MEAN);
}
static nn_tensor *g_bce_xt(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_bce_loss(in[0], in[1], gt("w_bce"), NN_REDUCTION_SUM);
}
/* ctx: a fixed input of probabilities; in[0]: the target; weight 2. */
static nn_tensor *g_bce_t_only(nn_tensor **in, void *ctx) {
    nn_tensor *x = ctx;
    nn_tensor *w = nn_tensor_full(NN_DTYPE_F32, nn_tensor_shape(x), nn_tensor_ndim(x), 2.0);
    nn_tensor *l = nn_bce_loss(x, in[0], w, NN_REDUCTION_NONE);
    nn_tensor_free(w);
    return l;
}
static nn_tensor *g_kl(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_kl_div(in[0], in[1], NN_REDUCTION_BATCHMEAN, false);
}
static nn_tensor *g_kl_log(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_kl_div(in[0], in[1], NN_REDUCTION_NONE, true);
}
static nn_tensor *g_ce(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_cross_entropy_ex(in[0], gt("y_ce"), gt("w_ce"), -100, 0.2, NN_REDUCTION_NONE);
}
static nn_tensor *g_ce_prob(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_cross_entropy_ex(in[0], in[1], gt("w_ce"), -100, 0.1, NN_REDUCTION_MEAN);
}
static nn_tensor *g_ce_kdim(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_cross_entropy_ex(in[0], gt("y_ce3"), gt("w_ce3"), 1, 0.3, NN_REDUCTION_MEAN);
}
static nn_tensor *g_nll(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_nll_loss(in[0], gt("y_ce"), gt("w_ce"), -100, NN_REDUCTION_MEAN);
}

static void check2(tu_fn fn, const char *x, const char *t, bool t_grad) {
    nn_scope *s = nn_scope_begin();
    nn_tensor *in[2] = {TU_NN(nn_tensor_clone(gt(x))), t ? TU_NN(nn_tensor_clone(gt(t))) : NULL};
    TU_OK(nn_tensor_set_requires_grad(in[0], true));
    if (t_grad) TU_OK(nn_tensor_set_requires_grad(in[1], true));
    tu_gradcheck(fn, in, t ? 2 : 1, NULL, 1e-3, 2e-3, 2e-2);
    nn_scope_end(s);
}

static void test_gradcheck(void **st) {
    (void)st;
    check2(g_mse, "x_reg", "t_reg", true);
    check2(g_huber, "x_reg", "t_reg", true);
    check2(g_sl1, "x_reg", "t_reg", true);
    check2(g_bcel, "x_reg", "t_bce", true);
    check2(g_bce, "p_bce", NULL, false);
    check2(g_kl, "x_kl", "t_kl", false);
    check2(g_kl_log, "x_kl", "tl_kl", true);
    check2(g_ce, "x_ce", NULL, false);
    check2(g_ce_prob, "x_ce", "p_ce", true);
    check2(g_ce_kdim, "x_ce3", NULL, false);
    check2(g_nll, "x_nll", NULL, false);
}

/* BCE with a target that requires grad (regression: it was refused with
 * NN_ERR_UNSUPPORTED). Values and both gradients vs PyTorch 1.13, a
 * finite-difference check of both, and the target gradient at inputs 0 and 1,
 * where it is the derivative of the loss with its logs clamped at -100. */
static void test_bce_target_grad(void **st) {
    (void)st;
    static const char *const names[] = {"bce_tgt", "bce_w_tgt"};
    for (int c = 0; c < 2; c++)
        for (int r = 0; r < 3; r++) {
            char what[64], name[96];
            nn_scope *s = nn_scope_begin();
            nn_tensor *x = TU_NN(nn_tensor_clone(gt("p_bce"))), *t = TU_NN(nn_tensor_clone(gt("t_bce")));
            TU_OK(nn_tensor_set_requires_grad(x, true));
            TU_OK(nn_tensor_set_requires_grad(t, true));
            nn_tensor *out = TU_NN(nn_bce_loss(x, t, c ? gt("w_bce") : NULL, (nn_reduction)r));
            snprintf(what, sizeof what, "%s.%s", names[c], RED_NAMES[r]);
            snprintf(name, sizeof name, "%s.out", what);
            tu_assert_close(out, gt(name), 1e-5, 1e-6, name);
            if (r == NN_REDUCTION_NONE) {
                int64_t n = nn_tensor_numel(out);
                nn_tensor *seed = TU_NN(nn_reshape(nn_linspace(0.5, 1.5, n), nn_tensor_shape(out), 2));
                TU_OK(nn_backward_ex(out, seed, false));
            } else {
                TU_OK(nn_backward(out));
            }
            snprintf(name, sizeof name, "%s.grad", what);
            tu_assert_close(nn_tensor_grad(x), gt(name), 1e-5, 1e-6, name);
            snprintf(name, sizeof name, "%s.tgrad", what);
            tu_assert_close(nn_tensor_grad(t), gt(name), 1e-5, 1e-6, name);
            nn_scope_end(s);
        }
    check2(g_bce_xt, "p_bce", "t_bce", true);

    /* Probabilities 0 and 1 (and one in between): only the target varies. */
    nn_scope *s = nn_scope_begin();
    int64_t sh[] = {2, 3};
    const float xv[] = {0.0f, 1.0f, 0.25f, 1.0f, 0.0f, 0.5f}, tv[] = {0.3f, 0.6f, 0.1f, 0.9f, 0.0f, 1.0f};
    nn_tensor *in[1] = {tu_tensor(sh, 2, tv)};
    TU_OK(nn_tensor_set_requires_grad(in[0], true));
    nn_tensor *x01 = tu_tensor(sh, 2, xv);
    tu_gradcheck(g_bce_t_only, in, 1, x01, 1e-2, 1e-3, 1e-3);
    /* d/dt of -w (t max(log x, -100) + (1 - t) max(log(1 - x), -100)), weight 2 */
    TU_OK(nn_tensor_zero_grad(in[0])); /* drop what the gradcheck accumulated */
    nn_tensor *l = TU_NN(g_bce_t_only(in, x01));
    TU_OK(nn_backward_ex(l, nn_tensor_ones(NN_DTYPE_F32, sh, 2), false));
    const float *g = nn_tensor_data(nn_tensor_grad(in[0]));
    for (int i = 0; i < 6; i++) {
        double lx = fmax(log(xv[i]), -100.0), l1x = fmax(log1p(-(double)xv[i]), -100.0);
        assert_true(isfinite(g[i]));
        assert_float_equal(g[i], -2.0 * (lx - l1x), 1e-4 * fmax(1.0, fabs(lx - l1x)));
    }
    nn_scope_end(s); /* owns x01, in[0] and the rest */
}

/* ------------------------------------------------------------- errors */

static void test_errors(void **st) {
    (void)st;
    nn_scope *s = nn_scope_begin();
    int64_t sh43[] = {4, 3};
    nn_tensor *bad_t = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, sh43, 2));
    assert_null(nn_mse_loss(gt("x_reg"), bad_t, NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_SHAPE, "nn_mse_loss: target shape [4,3] differs from input shape [3,4]");
    assert_null(nn_mse_loss(gt("x_reg"), gt("t_reg"), NN_REDUCTION_BATCHMEAN));
    tu_expect_error(NN_ERR_INVALID, "nn_mse_loss: reduction 3");
    assert_null(nn_l1_loss(NULL, gt("t_reg"), NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_NULL, "input");
    assert_null(nn_huber_loss(gt("x_reg"), gt("t_reg"), 0.0, NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_INVALID, "delta = 0");
    assert_null(nn_bce_loss(gt("x_reg"), gt("t_bce"), NULL, NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_INVALID, "outside [0, 1]");
    int64_t sh3[] = {3};
    nn_tensor *w3 = TU_NN(nn_tensor_ones(NN_DTYPE_F32, sh3, 1));
    assert_null(nn_bce_with_logits(gt("x_reg"), gt("t_bce"), w3, NULL, NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_SHAPE, "weight shape [3] does not broadcast to input shape [3,4]");

    /* cross-entropy: class range, target shape and dtype, weights, smoothing */
    int64_t y_bad[] = {0, 3, 4, 2, 1}, n5 = 5, n4 = 4;
    nn_tensor *yb = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, &n5, 1, y_bad));
    assert_null(nn_cross_entropy(gt("x_ce"), yb));
    tu_expect_error(NN_ERR_RANGE, "nn_cross_entropy: target 4 at position 2 is out of range for 4 classes");
    int64_t y_neg[] = {0, -1, 1, 2, 1};
    nn_tensor *yn = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, &n5, 1, y_neg));
    assert_null(nn_cross_entropy(gt("x_ce"), yn));
    tu_expect_error(NN_ERR_RANGE, "target -1");
    nn_tensor *y4 = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, &n4, 1));
    assert_null(nn_cross_entropy(gt("x_ce"), y4));
    tu_expect_error(NN_ERR_SHAPE, "target shape [4] does not match input shape [5,4]");
    nn_tensor *yu8 = TU_NN(nn_tensor_zeros(NN_DTYPE_U8, &n5, 1));
    assert_null(nn_cross_entropy(gt("x_ce"), yu8));
    tu_expect_error(NN_ERR_DTYPE, "u8");
    assert_null(nn_cross_entropy_ex(gt("x_ce"), gt("y_ce0"), w3, -100, 0.0, NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_SHAPE, "weight shape [3], expected [4]");
    assert_null(nn_cross_entropy_ex(gt("x_ce"), gt("y_ce0"), NULL, -100, 1.5, NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_INVALID, "label_smoothing = 1.5");
    assert_null(nn_cross_entropy_ex(gt("x_ce"), bad_t, NULL, -100, 0.0, NN_REDUCTION_MEAN));
    tu_expect_error(NN_ERR_SHAPE, "probability target shape");
    assert_null(nn_nll_loss(gt("x_nll"), yb, NULL, -100, NN_REDUCTION_SUM));
    tu_expect_error(NN_ERR_RANGE, "nn_nll_loss: target 4");
    /* a chain keeps its root cause */
    assert_null(nn_cross_entropy(nn_cross_entropy(gt("x_ce"), yb), gt("y_ce0")));
    tu_expect_error(NN_ERR_RANGE, "target 4");
    nn_scope_end(s);
}

/* Out-of-memory at every allocation of a forward + backward: clean failure, no leak. */
static int oom_body(void *ctx) {
    (void)ctx;
    nn_tensor *x = nn_tensor_clone(gt("x_ce"));
    if (!x) return 1;
    nn_tensor_set_requires_grad(x, true);
    nn_tensor *l = nn_cross_entropy_ex(x, gt("y_ce"), gt("w_ce"), -100, 0.1, NN_REDUCTION_MEAN);
    int rc = !l || nn_backward(l) != NN_OK;
    nn_tensor_free(l);
    nn_tensor *m = rc ? NULL : nn_bce_with_logits(x, gt("p_ce"), NULL, gt("w_ce"), NN_REDUCTION_NONE);
    if (!rc && !m) rc = 1;
    nn_tensor_free(m);
    nn_tensor_free(x);
    return rc;
}

static void test_oom(void **st) {
    (void)st;
    tu_alloc_install();
    long sites = tu_oom_sweep(oom_body, NULL);
    tu_alloc_uninstall();
    assert_true(sites > 3);
}

static int setup(void **st) {
    (void)st;
    G = tu_golden_open("optim_loss.txt");
    return 0;
}

static int teardown(void **st) {
    (void)st;
    tu_golden_close(G);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_losses), cmocka_unit_test(test_short_form),
        cmocka_unit_test(test_gradcheck),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_oom),           cmocka_unit_test(test_bce_target_grad),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
