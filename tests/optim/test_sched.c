/* LR schedules: 30-epoch rate sequences of two parameter groups (lr 0.1 and
 * 0.05) vs PyTorch 1.13 (golden/optim_sched.txt), state round trip, errors. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static tu_golden *G;

typedef nn_sched *(*make_fn)(nn_optim *o);

static nn_sched *s_step(nn_optim *o) { return nn_sched_step_lr(o, 7, 0.5); }
static nn_sched *s_multistep(nn_optim *o) {
    int64_t m[] = {5, 12, 12, 20};
    return nn_sched_multistep(o, m, 4, 0.3);
}
static nn_sched *s_exp(nn_optim *o) { return nn_sched_exponential(o, 0.9); }
static nn_sched *s_cosine(nn_optim *o) { return nn_sched_cosine(o, 10, 0.001); }
static nn_sched *s_warm(nn_optim *o) { return nn_sched_cosine_warm_restarts(o, 4, 2, 0.01); }
static nn_sched *s_warm1(nn_optim *o) { return nn_sched_cosine_warm_restarts(o, 5, 1, 0.0); }
static nn_sched *s_linear(nn_optim *o) { return nn_sched_linear(o, 0.25, 1.0, 8); }
static nn_sched *s_linear_down(nn_optim *o) { return nn_sched_linear(o, 1.0, 0.1, 10); }
static nn_sched *s_onecycle(nn_optim *o) { return nn_sched_one_cycle(o, 1.0, 30, 0.3, NN_ANNEAL_COS, 25, 1e4); }
static nn_sched *s_onecycle_lin(nn_optim *o) {
    return nn_sched_one_cycle(o, 0.5, 30, 0.25, NN_ANNEAL_LINEAR, 10, 100);
}
static nn_sched *s_plateau(nn_optim *o) { return nn_sched_plateau(o, NN_SCHED_MODE_MIN, 0.5, 2, 0.01, 1, 0.01); }
static nn_sched *s_plateau_max(nn_optim *o) { return nn_sched_plateau(o, NN_SCHED_MODE_MAX, 0.3, 1, 1e-4, 0, 0.0); }

static const struct {
    const char *name;
    make_fn make;
    int plateau; /* 0: nn_sched_step, 1: metric, -1: negated metric */
} CASES[] = {
    {"step", s_step, 0},           {"multistep", s_multistep, 0},   {"exponential", s_exp, 0},
    {"cosine", s_cosine, 0},       {"warm", s_warm, 0},             {"warm1", s_warm1, 0},
    {"linear", s_linear, 0},       {"linear_down", s_linear_down, 0}, {"onecycle", s_onecycle, 0},
    {"onecycle_lin", s_onecycle_lin, 0}, {"plateau", s_plateau, 1}, {"plateau_max", s_plateau_max, -1},
};

static nn_tensor *A, *B;

static nn_optim *two_groups(void) {
    nn_optim *o = TU_NN(nn_sgd(&A, 1, 0.1, 0.0));
    TU_OK(nn_optim_add_group(o, &B, 1, 0.05));
    return o;
}

static double metric(int c, int e) {
    int64_t idx = e;
    double v;
    TU_OK(nn_tensor_get(tu_golden_get(G, "plateau.metrics"), &idx, &v));
    return CASES[c].plateau < 0 ? -v : v;
}

/* Advance schedule c by one epoch (epoch e = 0 is construction for non-plateau ones). */
static void advance(nn_sched *s, int c, int e) {
    if (CASES[c].plateau) TU_OK(nn_sched_step_metric(s, metric(c, e)));
    else if (e > 0) TU_OK(nn_sched_step(s));
}

static void test_sequences(void **st) {
    (void)st;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        nn_optim *o = two_groups();
        nn_sched *s = CASES[c].make(o);
        if (!s) fail_msg("%s: %s", CASES[c].name, nn_last_error());
        nn_optim_free(o); /* the schedule keeps its own reference */
        float lrs[60];
        for (int e = 0; e < 30; e++) {
            advance(s, (int)c, e);
            lrs[2 * e] = (float)nn_sched_get_lr(s, 0);
            lrs[2 * e + 1] = (float)nn_sched_get_lr(s, 1);
        }
        int64_t shape[] = {30, 2};
        nn_tensor *got = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, shape, 2, lrs));
        char n[64];
        snprintf(n, sizeof n, "%s.lrs", CASES[c].name);
        tu_assert_close(got, tu_golden_get(G, n), 1e-6, 1e-12, n);
        nn_tensor_free(got);
        nn_sched_free(s);
    }
}

/* Export after 11 epochs, import into a fresh schedule + optimizer: the rest
 * of the sequence is identical. */
static void test_state_resume(void **st) {
    (void)st;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        nn_optim *o1 = two_groups(), *o2 = two_groups();
        nn_sched *s1 = TU_NN(CASES[c].make(o1));
        for (int e = 0; e < 11; e++) advance(s1, (int)c, e);
        nn_statedict *ss = nn_sched_state_dict(s1), *os = nn_optim_state_dict(o1);
        if (!ss || !os) fail_msg("state dict: %s", nn_last_error());
        nn_sched *s2 = TU_NN(CASES[c].make(o2));
        TU_OK(nn_sched_load_state_dict(s2, ss));
        TU_OK(nn_optim_load_state_dict(o2, os));
        assert_int_equal(nn_sched_last_epoch(s2), nn_sched_last_epoch(s1));
        for (int e = 11; e < 30; e++) {
            advance(s1, (int)c, e);
            advance(s2, (int)c, e);
            for (int g = 0; g < 2; g++)
                if (nn_sched_get_lr(s1, g) != nn_sched_get_lr(s2, g))
                    fail_msg("%s: epoch %d group %d: %.17g vs %.17g", CASES[c].name, e, g,
                             nn_sched_get_lr(s1, g), nn_sched_get_lr(s2, g));
        }
        nn_statedict_free(ss);
        nn_statedict_free(os);
        nn_sched_free(s1);
        nn_sched_free(s2);
        nn_optim_free(o1);
        nn_optim_free(o2);
    }
}

/* One-cycle with momentum (SGD) / beta1 (Adam) cycling, vs PyTorch's defaults. */
static void run_cycle(const char *name, nn_optim *o, nn_sched *s, nn_optim_option mom) {
    if (!s) fail_msg("%s: %s", name, nn_last_error());
    TU_OK(nn_sched_cycle_momentum(s, 0.85, 0.95));
    float lrs[60], moms[60];
    for (int e = 0; e < 30; e++) {
        if (e > 0) TU_OK(nn_sched_step(s));
        for (int g = 0; g < 2; g++) {
            double m;
            TU_OK(nn_optim_get(o, g, mom, &m));
            lrs[2 * e + g] = (float)nn_sched_get_lr(s, g);
            moms[2 * e + g] = (float)m;
        }
    }
    int64_t shape[] = {30, 2};
    char n[64];
    nn_tensor *got = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, shape, 2, lrs));
    snprintf(n, sizeof n, "%s.lrs", name);
    tu_assert_close(got, tu_golden_get(G, n), 1e-6, 1e-12, n);
    nn_tensor_free(got);
    got = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, shape, 2, moms));
    snprintf(n, sizeof n, "%s.moms", name);
    tu_assert_close(got, tu_golden_get(G, n), 1e-6, 1e-12, n);
    nn_tensor_free(got);
    nn_sched_free(s);
    nn_optim_free(o);
}

static void test_one_cycle_momentum(void **st) {
    (void)st;
    nn_optim *o = two_groups();
    TU_OK(nn_optim_set(o, NN_OPTIM_MOMENTUM, 0.9));
    run_cycle("onecycle_sgd_mom", o, nn_sched_one_cycle(o, 1.0, 30, 0.3, NN_ANNEAL_COS, 25, 1e4), NN_OPTIM_MOMENTUM);
    o = TU_NN(nn_adam(&A, 1, 0.1));
    TU_OK(nn_optim_add_group(o, &B, 1, 0.05));
    run_cycle("onecycle_adam_mom", o, nn_sched_one_cycle(o, 0.3, 30, 0.4, NN_ANNEAL_LINEAR, 25, 1e4), NN_OPTIM_BETA1);
    o = TU_NN(nn_adagrad(&A, 1, 0.1));
    nn_sched *s = TU_NN(nn_sched_one_cycle(o, 0.3, 30, 0.4, NN_ANNEAL_LINEAR, 25, 1e4));
    assert_int_equal(nn_sched_cycle_momentum(s, 0.85, 0.95), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "neither momentum nor beta1");
    assert_int_equal(nn_sched_cycle_momentum(s, 0.95, 0.85), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "base_momentum = 0.95");
    nn_sched_free(s);
    s = TU_NN(nn_sched_exponential(o, 0.5));
    assert_int_equal(nn_sched_cycle_momentum(s, 0.85, 0.95), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "only one-cycle");
    nn_sched_free(s);
    nn_optim_free(o);
}

static void test_errors(void **st) {
    (void)st;
    nn_optim *o = two_groups();
    assert_null(nn_sched_step_lr(o, 0, 0.5));
    tu_expect_error(NN_ERR_INVALID, "nn_sched_step_lr: step_size = 0");
    assert_null(nn_sched_cosine(NULL, 10, 0.0));
    tu_expect_error(NN_ERR_NULL, "nn_sched_cosine");
    assert_null(nn_sched_linear(o, 0.0, 1.0, 5));
    tu_expect_error(NN_ERR_INVALID, "start_factor = 0");
    assert_null(nn_sched_plateau(o, NN_SCHED_MODE_MIN, 1.0, 2, 0.01, 0, 0.0));
    tu_expect_error(NN_ERR_INVALID, "factor = 1");
    assert_null(nn_sched_one_cycle(o, 1.0, 10, 1.5, NN_ANNEAL_COS, 25, 1e4));
    tu_expect_error(NN_ERR_INVALID, "pct_start = 1.5");
    nn_sched *p = TU_NN(nn_sched_plateau(o, NN_SCHED_MODE_MIN, 0.5, 2, 0.01, 0, 0.0));
    assert_int_equal(nn_sched_step(p), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "needs a metric");
    assert_int_equal(nn_sched_step_metric(p, NAN), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "metric is NaN");
    nn_sched *e = TU_NN(nn_sched_exponential(o, 0.5));
    assert_int_equal(nn_sched_step_metric(e, 1.0), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "only plateau");
    assert_true(isnan(nn_sched_get_lr(e, 2)));
    tu_expect_error(NN_ERR_RANGE, "group 2");
    nn_statedict *sd = TU_NN(nn_sched_state_dict(p));
    assert_int_equal(nn_sched_load_state_dict(e, sd), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "kind");
    nn_statedict_free(sd);
    nn_sched *oc = TU_NN(nn_sched_one_cycle(o, 1.0, 3, 0.3, NN_ANNEAL_COS, 25, 1e4));
    for (int i = 0; i < 3; i++) TU_OK(nn_sched_step(oc));
    assert_int_equal(nn_sched_step(oc), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "past total_steps = 3");
    nn_sched_free(oc);
    nn_sched_free(p);
    nn_sched_free(e);
    nn_optim_free(o);
}

static int setup(void **st) {
    (void)st;
    G = tu_golden_open("optim_sched.txt");
    int64_t two = 2;
    A = nn_tensor_zeros(NN_DTYPE_F32, &two, 1);
    B = nn_tensor_zeros(NN_DTYPE_F32, &two, 1);
    nn_tensor_set_requires_grad(A, true);
    nn_tensor_set_requires_grad(B, true);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    nn_tensor_free(A);
    nn_tensor_free(B);
    tu_golden_close(G);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_state_resume),
        cmocka_unit_test(test_one_cycle_momentum),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
