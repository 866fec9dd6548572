/* Forward values and input gradients of the elementwise, activation,
 * reduction, comparison and join ops against PyTorch 1.13
 * (tests/golden/ops_ew.txt, written by tests/golden/make_golden_ew.py). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#define RTOL 1e-5
#define ATOL 1e-6

static nn_tensor *run(const char *c, nn_tensor **in) {
    static const int d1[] = {1}, d02[] = {0, 2}, dm1[] = {-1}, d2[] = {2};
#define IS(s) (strcmp(c, s) == 0)
    /* binary */
    if (IS("add")) return nn_add(in[0], in[1]);
    if (IS("sub")) return nn_sub(in[0], in[1]);
    if (IS("mul") || IS("mul_scalar_b")) return nn_mul(in[0], in[1]);
    if (IS("div")) return nn_div(in[0], in[1]);
    if (IS("pow")) return nn_pow(in[0], in[1]);
    if (IS("minimum")) return nn_minimum(in[0], in[1]);
    if (IS("maximum")) return nn_maximum(in[0], in[1]);
    if (IS("where")) return nn_where(in[0], in[1], in[2]);
    /* unary */
    if (IS("add_scalar")) return nn_add_scalar(in[0], 1.5);
    if (IS("mul_scalar")) return nn_mul_scalar(in[0], -2.5);
    if (IS("pow_scalar")) return nn_pow_scalar(in[0], 3);
    if (IS("pow_scalar_half")) return nn_pow_scalar(in[0], 0.5);
    if (IS("neg")) return nn_neg(in[0]);
    if (IS("exp")) return nn_exp(in[0]);
    if (IS("log")) return nn_log(in[0]);
    if (IS("sqrt")) return nn_sqrt(in[0]);
    if (IS("rsqrt")) return nn_rsqrt(in[0]);
    if (IS("abs")) return nn_abs(in[0]);
    if (IS("clamp")) return nn_clamp(in[0], -0.5, 0.7);
    /* activations */
    if (IS("relu")) return nn_relu(in[0]);
    if (IS("leaky_relu")) return nn_leaky_relu(in[0], 0.1);
    if (IS("elu")) return nn_elu(in[0], 1.3);
    if (IS("gelu")) return nn_gelu(in[0], false);
    if (IS("gelu_tanh")) return nn_gelu(in[0], true);
    if (IS("silu")) return nn_silu(in[0]);
    if (IS("sigmoid")) return nn_sigmoid(in[0]);
    if (IS("tanh")) return nn_tanh(in[0]);
    if (IS("softplus")) return nn_softplus(in[0], 2.0, 3.0);
    if (IS("hardtanh")) return nn_hardtanh(in[0], -1.0, 0.5);
    if (!strncmp(c, "softmax", 7)) return nn_softmax(in[0], c[7] - '0');
    if (!strncmp(c, "log_softmax", 11)) return nn_log_softmax(in[0], c[11] - '0');
    /* reductions */
    if (IS("sum_all")) return nn_sum(in[0], NULL, 0, false);
    if (IS("sum_d1k")) return nn_sum(in[0], d1, 1, true);
    if (IS("sum_d02")) return nn_sum(in[0], d02, 2, false);
    if (IS("mean_all")) return nn_mean(in[0], NULL, 0, false);
    if (IS("mean_dm1")) return nn_mean(in[0], dm1, 1, false);
    if (IS("var_d02")) return nn_var(in[0], d02, 2, 1, false);
    if (IS("var_all0")) return nn_var(in[0], NULL, 0, 0, false);
    if (IS("std_d1k")) return nn_std(in[0], d1, 1, 0, true);
    if (IS("std_d2") || IS("std_const_d2")) return nn_std(in[0], d2, 1, 1, false);
    if (IS("std_const_d2k0")) return nn_std(in[0], d2, 1, 0, true);
    if (IS("std_const_all")) return nn_std(in[0], NULL, 0, 1, false);
    if (IS("amax_d1")) return nn_amax(in[0], d1, 1, false);
    if (IS("amin_all")) return nn_amin(in[0], NULL, 0, false);
    if (IS("amax_d02k")) return nn_amax(in[0], d02, 2, true);
    if (IS("max_d2")) return nn_max(in[0], 2, false, NULL);
    if (IS("max_d2_idx")) {
        nn_tensor *idx = NULL, *v = nn_max(in[0], 2, false, &idx);
        nn_tensor_free(v);
        return idx;
    }
    if (IS("min_d0k")) return nn_min(in[0], 0, true, NULL);
    if (IS("argmax_d1")) return nn_argmax(in[0], 1, false);
    if (IS("argmin_d0k")) return nn_argmin(in[0], 0, true);
    /* comparisons */
    if (IS("eq")) return nn_eq(in[0], in[1]);
    if (IS("ne")) return nn_ne(in[0], in[1]);
    if (IS("lt")) return nn_lt(in[0], in[1]);
    if (IS("le")) return nn_le(in[0], in[1]);
    if (IS("gt")) return nn_gt(in[0], in[1]);
    if (IS("ge")) return nn_ge(in[0], in[1]);
    /* join */
    if (IS("concat1")) return nn_concat(in, 3, 1);
    if (IS("stack1")) return nn_stack(in, 3, 1);
    if (IS("index_select1")) return nn_index_select(in[0], 1, in[1]);
    if (IS("gather0")) return nn_gather(in[0], 0, in[1]);
    if (IS("pad")) {
        int64_t p[] = {1, 2, 0, 1};
        return nn_pad(in[0], p, 4, 0.25);
    }
    if (IS("pad_neg")) {
        int64_t p[] = {-1, 2, 1, -1};
        return nn_pad(in[0], p, 4, -1.0);
    }
#undef IS
    fail_msg("no runner for golden case %s", c);
    return NULL;
}

static const char *const cases[] = {
    "add", "sub", "mul", "div", "pow", "minimum", "maximum", "mul_scalar_b", "where",
    "add_scalar", "mul_scalar", "pow_scalar", "pow_scalar_half", "neg", "exp", "log", "sqrt",
    "rsqrt", "abs", "clamp",
    "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softplus",
    "hardtanh", "softmax0", "softmax1", "softmax2", "log_softmax0", "log_softmax1", "log_softmax2",
    "sum_all", "sum_d1k", "sum_d02", "mean_all", "mean_dm1", "var_d02", "var_all0", "std_d1k",
    "std_d2", "amax_d1", "amin_all", "amax_d02k", "max_d2", "max_d2_idx", "min_d0k", "argmax_d1",
    "argmin_d0k",
    "eq", "ne", "lt", "le", "gt", "ge",
    "concat1", "stack1", "index_select1", "gather0", "pad", "pad_neg",
    "std_const_d2", "std_const_d2k0", "std_const_all", /* std = 0: gradient 0, not NaN */
};

static void check_case(tu_golden *g, const char *c) {
    char key[160];
    nn_tensor *in[8] = {0};
    int n = 0;
    for (; n < 8; n++) {
        snprintf(key, sizeof key, "%s.in%d", c, n);
        if (!tu_golden_has(g, key)) break;
        nn_tensor *src = tu_golden_get(g, key);
        if (strcmp(c, "where") == 0 && n == 0) {
            in[n] = TU_NN(nn_tensor_to(src, NN_DTYPE_U8)); /* the mask */
        } else {
            in[n] = TU_NN(nn_tensor_clone(src));
            if (nn_tensor_dtype(in[n]) == NN_DTYPE_F32) TU_OK(nn_tensor_set_requires_grad(in[n], true));
        }
    }
    nn_tensor *out = run(c, in);
    snprintf(key, sizeof key, "%s.out", c);
    tu_assert_close(out, tu_golden_get(g, key), RTOL, ATOL, key);
    snprintf(key, sizeof key, "%s.gout", c);
    if (tu_golden_has(g, key)) {
        TU_OK(nn_backward_ex(out, tu_golden_get(g, key), false));
        for (int k = 0; k < n; k++) {
            snprintf(key, sizeof key, "%s.g%d", c, k);
            if (!tu_golden_has(g, key)) continue;
            nn_tensor *gr = nn_tensor_grad(in[k]);
            if (!gr) fail_msg("%s: no gradient", key);
            tu_assert_close(gr, tu_golden_get(g, key), RTOL, ATOL, key);
        }
    }
    nn_tensor_free(out);
    for (int k = 0; k < n; k++) nn_tensor_free(in[k]);
}

static void test_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_ew.txt");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) check_case(g, cases[k]);
    tu_golden_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_golden)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
