/* Pooling: gradcheck over stride/padding/dilation/ceil_mode combinations,
 * PyTorch golden values (including max indices), errors. */
#include "nn_testhelp.h"

typedef struct {
    int kh, kw, sh, sw, ph, pw, dh, dw;
    bool ceil, cip;
} pool_cfg;

static nn_tensor *f_max(nn_tensor **in, void *ctx) {
    const pool_cfg *c = ctx;
    return nn_max_pool2d(in[0], c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->ceil, NULL);
}

static nn_tensor *f_avg(nn_tensor **in, void *ctx) {
    const pool_cfg *c = ctx;
    return nn_avg_pool2d(in[0], c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->ceil, c->cip);
}

static void test_max_pool_grad_all_combos(void **s) {
    (void)s;
    int n = 0;
    for (int st = 1; st <= 2; st++)
        for (int pd = 0; pd <= 1; pd++)
            for (int dl = 1; dl <= 2; dl++)
                for (int cm = 0; cm <= 1; cm++) {
                    /* non-square input and kernel: 2x3 kernel, 7x8 input */
                    pool_cfg c = {2, 3, st, st + 1, pd, pd, dl, dl, cm != 0, false};
                    int64_t xs[] = {2, 2, 7, 8};
                    nn_tensor *x = th_spaced(50 + n, xs, 4);
                    tu_gradcheck(f_max, &x, 1, &c, 1e-2, 1e-3, 1e-3);
                    nn_tensor_free(x);
                    n++;
                }
}

static void test_avg_pool_grad_all_combos(void **s) {
    (void)s;
    int n = 0;
    for (int st = 1; st <= 2; st++)
        for (int pd = 0; pd <= 1; pd++)
            for (int cm = 0; cm <= 1; cm++)
                for (int cip = 0; cip <= 1; cip++) {
                    pool_cfg c = {3, 2, st, st + 1, pd, pd, 1, 1, cm != 0, cip != 0};
                    int64_t xs[] = {3, 7, 6}; /* 3-D input: [C, H, W] */
                    nn_tensor *x = th_param(70 + n, xs, 3);
                    tu_gradcheck(f_avg, &x, 1, &c, 1e-2, 1e-3, 1e-3);
                    nn_tensor_free(x);
                    n++;
                }
}

typedef struct {
    int64_t oh, ow;
    int max;
} adaptive_cfg;

static nn_tensor *f_adaptive(nn_tensor **in, void *ctx) {
    const adaptive_cfg *c = ctx;
    return c->max ? nn_adaptive_max_pool2d(in[0], c->oh, c->ow, NULL) : nn_adaptive_avg_pool2d(in[0], c->oh, c->ow);
}

static void test_adaptive_grad(void **s) {
    (void)s;
    const int64_t outs[][2] = {{1, 1}, {3, 2}, {4, 5}, {7, 9}, {2, 3}};
    for (int m = 0; m <= 1; m++)
        for (int i = 0; i < 5; i++) {
            adaptive_cfg c = {outs[i][0], outs[i][1], m};
            int64_t xs[] = {2, 2, 7, 5};
            nn_tensor *x = th_spaced(90 + i, xs, 4);
            tu_gradcheck(f_adaptive, &x, 1, &c, 1e-2, 1e-3, 1e-3);
            nn_tensor_free(x);
        }
}

/* Indices are flat h*w positions of the maxima within each plane. */
static void test_max_pool_indices(void **s) {
    (void)s;
    const float v[] = {1, 9, 2, 3,  //
                       4, 5, 8, 6,  //
                       7, 0, 1, 2};
    int64_t xs[] = {1, 1, 3, 4};
    nn_tensor *x = tu_tensor(xs, 4, v), *idx = NULL;
    nn_tensor *y = TU_NN(nn_max_pool2d(x, 2, 2, 2, 2, 0, 0, 1, 1, true, &idx));
    /* ceil_mode: 2x2 windows over 3x4 -> 2x2 output, the last row partial */
    const float want[] = {9, 8, 7, 2};
    const int64_t want_i[] = {1, 6, 8, 11};
    assert_int_equal(nn_tensor_numel(y), 4);
    for (int i = 0; i < 4; i++) {
        assert_true(((const float *)nn_tensor_data(y))[i] == want[i]);
        assert_int_equal(((const int64_t *)nn_tensor_data(idx))[i], want_i[i]);
    }
    nn_tensor_free(y);
    nn_tensor_free(idx);
    /* floor mode drops the partial row */
    y = TU_NN(nn_max_pool2d(x, 2, 2, 2, 2, 0, 0, 1, 1, false, NULL));
    assert_int_equal(nn_tensor_shape(y)[2], 1);
    nn_tensor_free(y);
    nn_tensor_free(x);
}

/* Golden parameters: max: kh kw sh sw ph pw dh dw ceil; avg: kh kw sh sw ph
 * pw ceil count_include_pad; adaptive: oh ow. */
typedef struct {
    const int64_t *p;
    int kind;
    nn_tensor *idx;
} golden_ctx;

static nn_tensor *f_golden(nn_tensor **in, void *ctx) {
    golden_ctx *c = ctx;
    const int64_t *p = c->p;
    switch (c->kind) {
    case 0:
        return nn_max_pool2d(in[0], (int)p[0], (int)p[1], (int)p[2], (int)p[3], (int)p[4], (int)p[5], (int)p[6],
                             (int)p[7], p[8] != 0, &c->idx);
    case 1:
        return nn_avg_pool2d(in[0], (int)p[0], (int)p[1], (int)p[2], (int)p[3], (int)p[4], (int)p[5], p[6] != 0,
                             p[7] != 0);
    case 2: return nn_adaptive_avg_pool2d(in[0], p[0], p[1]);
    default: return nn_adaptive_max_pool2d(in[0], p[0], p[1], &c->idx);
    }
}

static void test_pool_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_nn.txt");
    const char *ops[] = {"maxpool", "avgpool", "adaptavg", "adaptmax"};
    for (int kind = 0; kind < 4; kind++) {
        int k;
        for (k = 0;; k++) {
            char cs[64], nm[80];
            const int64_t *p;
            if (!th_golden_params(g, ops[kind], k, cs, sizeof cs, &p)) break;
            golden_ctx c = {p, kind, NULL};
            th_golden_case(g, cs, 1, f_golden, &c, 1e-5, 1e-6);
            snprintf(nm, sizeof nm, "%s_indices", cs);
            if (tu_golden_has(g, nm)) {
                assert_non_null(c.idx);
                assert_true(nn_tensor_equal(c.idx, tu_golden_get(g, nm)));
            }
            nn_tensor_free(c.idx);
        }
        assert_true(k >= 2);
    }
    tu_golden_close(g);
}

static void test_pool_errors(void **s) {
    (void)s;
    int64_t xs[] = {1, 2, 4, 4}, x2[] = {4, 4};
    nn_tensor *x = tu_rand(1, xs, 4, -1, 1), *x2d = tu_rand(2, x2, 2, -1, 1);
    nn_tensor *xi = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, xs, 4));
    nn_tensor *idx = (nn_tensor *)0x1;
    assert_null(nn_max_pool2d(x2d, 2, 2, 2, 2, 0, 0, 1, 1, false, &idx));
    tu_expect_error(NN_ERR_SHAPE, "nn_max_pool2d: x must be 3-D [C, H, W] or 4-D [N, C, H, W], got [4,4]");
    assert_null(idx);
    assert_null(nn_max_pool2d(x, 5, 2, 1, 1, 0, 0, 1, 1, false, NULL));
    tu_expect_error(NN_ERR_SHAPE, "nn_max_pool2d: height kernel extent 5 is bigger than the padded input 4");
    assert_null(nn_max_pool2d(x, 3, 3, 1, 1, 0, 0, 2, 2, false, NULL));
    tu_expect_error(NN_ERR_SHAPE, "kernel extent 5");
    assert_null(nn_max_pool2d(x, 2, 2, 2, 2, 2, 0, 1, 1, false, NULL));
    tu_expect_error(NN_ERR_INVALID, "nn_max_pool2d: height padding 2 must be at most half the kernel size 2");
    assert_null(nn_max_pool2d(x, 2, 2, 0, 2, 0, 0, 1, 1, false, NULL));
    tu_expect_error(NN_ERR_INVALID, "nn_max_pool2d: height kernel 2, stride 0");
    assert_null(nn_avg_pool2d(xi, 2, 2, 2, 2, 0, 0, false, true));
    tu_expect_error(NN_ERR_DTYPE, "nn_avg_pool2d: argument 'x' has dtype i64");
    assert_null(nn_avg_pool2d(NULL, 2, 2, 2, 2, 0, 0, false, true));
    tu_expect_error(NN_ERR_NULL, "nn_avg_pool2d");
    assert_null(nn_adaptive_avg_pool2d(x, 0, 2));
    tu_expect_error(NN_ERR_INVALID, "nn_adaptive_avg_pool2d: output size 0x2");
    assert_null(nn_adaptive_max_pool2d(x2d, 2, 2, NULL));
    tu_expect_error(NN_ERR_SHAPE, "nn_adaptive_max_pool2d");
    nn_tensor *objs[] = {x, x2d, xi};
    th_free_all(objs, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_pool_grad_all_combos), cmocka_unit_test(test_avg_pool_grad_all_combos),
        cmocka_unit_test(test_adaptive_grad),            cmocka_unit_test(test_max_pool_indices),
        cmocka_unit_test(test_pool_golden),              cmocka_unit_test(test_pool_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
