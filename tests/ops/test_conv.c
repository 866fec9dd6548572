/* nn_conv2d, nn_conv1d, nn_conv_transpose2d: gradcheck over every
 * combination of stride/padding/dilation/groups, PyTorch golden values,
 * errors, and an out-of-memory sweep over conv -> pool -> linear. */
#include "nn_testhelp.h"

typedef struct {
    int s, p, d, g, op;
    bool plain; /* same stride / padding on both axes */
} conv_cfg;

static nn_tensor *f_conv2d(nn_tensor **in, void *ctx) {
    const conv_cfg *c = ctx;
    if (c->plain) return nn_conv2d(in[0], in[1], in[2], c->s, c->s, c->p, c->p, c->d, c->d, c->g);
    /* stride and padding differ per axis to catch H/W mix-ups */
    return nn_conv2d(in[0], in[1], in[2], c->s, 3 - c->s, c->p, 1 - c->p, c->d, c->d, c->g);
}

static void test_conv2d_grad_all_combos(void **s) {
    (void)s;
    int n = 0;
    for (int st = 1; st <= 2; st++)
        for (int pd = 0; pd <= 1; pd++)
            for (int dl = 1; dl <= 2; dl++)
                for (int gr = 1; gr <= 2; gr++) {
                    conv_cfg c = {st, pd, dl, gr, 0, false};
                    int64_t xs[] = {2, 4, 5, 7}, ws[] = {4, 4 / gr, 2, 3}, bs[] = {4};
                    nn_tensor *in[3] = {th_param(100 + n, xs, 4), th_param(200 + n, ws, 4),
                                        th_param(300 + n, bs, 1)};
                    tu_gradcheck(f_conv2d, in, 3, &c, 1e-2, 3e-3, 1e-2);
                    th_free_all(in, 3);
                    n++;
                }
    assert_int_equal(n, 16);
}

/* 1x1 kernels take the no-im2col path; also without bias. */
static void test_conv2d_grad_1x1(void **s) {
    (void)s;
    conv_cfg c = {1, 0, 1, 2, 0, true};
    int64_t xs[] = {2, 4, 4, 5}, ws[] = {6, 2, 1, 1};
    nn_tensor *in[3] = {th_param(1, xs, 4), th_param(2, ws, 4), NULL};
    tu_gradcheck(f_conv2d, in, 3, &c, 1e-2, 3e-3, 1e-2);
    th_free_all(in, 3);
}

static nn_tensor *f_conv1d(nn_tensor **in, void *ctx) {
    const conv_cfg *c = ctx;
    return nn_conv1d(in[0], in[1], in[2], c->s, c->p, c->d, c->g);
}

static void test_conv1d_grad(void **s) {
    (void)s;
    int n = 0;
    for (int st = 1; st <= 2; st++)
        for (int pd = 0; pd <= 1; pd++)
            for (int dl = 1; dl <= 2; dl++)
                for (int gr = 1; gr <= 2; gr++) {
                    conv_cfg c = {st, pd, dl, gr, 0, true};
                    int64_t xs[] = {2, 4, 9}, ws[] = {6, 4 / gr, 3}, bs[] = {6};
                    nn_tensor *in[3] = {th_param(400 + n, xs, 3), th_param(500 + n, ws, 3),
                                        th_param(600 + n, bs, 1)};
                    tu_gradcheck(f_conv1d, in, 3, &c, 1e-2, 3e-3, 1e-2);
                    th_free_all(in, 3);
                    n++;
                }
}

static nn_tensor *f_convt(nn_tensor **in, void *ctx) {
    const conv_cfg *c = ctx;
    return nn_conv_transpose2d(in[0], in[1], in[2], c->s, c->s + 1, c->p, 1 - c->p, c->op, c->op, c->d,
                               c->d, c->g);
}

static void test_conv_transpose2d_grad_all_combos(void **s) {
    (void)s;
    int n = 0;
    for (int st = 1; st <= 2; st++)
        for (int pd = 0; pd <= 1; pd++)
            for (int dl = 1; dl <= 2; dl++)
                for (int gr = 1; gr <= 2; gr++) {
                    /* output_padding must stay below stride or dilation */
                    conv_cfg c = {st, pd, dl, gr, (st > 1 || dl > 1) ? 1 : 0, false};
                    int64_t xs[] = {2, 4, 3, 4}, ws[] = {4, 2, 2, 3}, bs[] = {2 * gr};
                    nn_tensor *in[3] = {th_param(700 + n, xs, 4), th_param(800 + n, ws, 4),
                                        th_param(900 + n, bs, 1)};
                    tu_gradcheck(f_convt, in, 3, &c, 1e-2, 3e-3, 1e-2);
                    th_free_all(in, 3);
                    n++;
                }
}

/* conv_transpose2d is the adjoint of conv2d: <conv(x, w), y> == <x, convT(y, w)>. */
static void test_conv_transpose_is_adjoint(void **s) {
    (void)s;
    int64_t xs[] = {2, 4, 7, 6}, ws[] = {6, 2, 3, 2};
    nn_tensor *x = tu_rand(1, xs, 4, -1, 1), *w = tu_rand(2, ws, 4, -1, 1);
    nn_tensor *cx = TU_NN(nn_conv2d(x, w, NULL, 2, 1, 1, 0, 1, 2, 2));
    nn_tensor *y = tu_rand(3, nn_tensor_shape(cx), 4, -1, 1);
    nn_tensor *ty = TU_NN(nn_conv_transpose2d(y, w, NULL, 2, 1, 1, 0, 0, 0, 1, 2, 2));
    /* conv's output height (7+2-3)/2+1 = 4 maps back to 3*2-2+2+1 = 7: shapes agree */
    assert_int_equal(nn_tensor_shape(ty)[2], 7);
    assert_int_equal(nn_tensor_shape(ty)[3], 6);
    double a = 0, b = 0;
    const float *p = nn_tensor_data(cx), *q = nn_tensor_data(y);
    for (int64_t i = 0; i < nn_tensor_numel(cx); i++) a += (double)p[i] * q[i];
    p = nn_tensor_data(x);
    q = nn_tensor_data(ty);
    for (int64_t i = 0; i < nn_tensor_numel(x); i++) b += (double)p[i] * q[i];
    assert_true(fabs(a - b) < 1e-4 * (1 + fabs(a)));
    nn_tensor *objs[] = {x, w, cx, y, ty};
    th_free_all(objs, 5);
}

/* Golden cases: params = stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups
 * (conv2d), stride, pad, dil, groups (conv1d), and for conv_transpose2d
 * stride_h, stride_w, pad_h, pad_w, opad_h, opad_w, dil_h, dil_w, groups. */
typedef struct {
    const int64_t *p;
    int kind;
} golden_ctx;

static nn_tensor *f_golden(nn_tensor **in, void *ctx) {
    const golden_ctx *c = ctx;
    const int64_t *p = c->p;
    switch (c->kind) {
    case 0: return nn_conv2d(in[0], in[1], in[2], (int)p[0], (int)p[1], (int)p[2], (int)p[3], (int)p[4], (int)p[5],
                             (int)p[6]);
    case 1: return nn_conv1d(in[0], in[1], in[2], (int)p[0], (int)p[1], (int)p[2], (int)p[3]);
    default:
        return nn_conv_transpose2d(in[0], in[1], in[2], (int)p[0], (int)p[1], (int)p[2], (int)p[3], (int)p[4],
                                   (int)p[5], (int)p[6], (int)p[7], (int)p[8]);
    }
}

static void test_conv_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_nn.txt");
    const char *ops[] = {"conv2d", "conv1d", "convt2d"};
    for (int kind = 0; kind < 3; kind++) {
        int k;
        for (k = 0;; k++) {
            char cs[64];
            const int64_t *p;
            if (!th_golden_params(g, ops[kind], k, cs, sizeof cs, &p)) break;
            golden_ctx c = {p, kind};
            th_golden_case(g, cs, 3, f_golden, &c, 1e-5, 1e-5);
        }
        assert_true(k >= 2);
    }
    tu_golden_close(g);
}

static void test_conv_errors(void **s) {
    (void)s;
    int64_t xs[] = {1, 4, 5, 5}, ws[] = {6, 4, 3, 3}, w3[] = {6, 4, 3}, wg[] = {6, 2, 3, 3};
    int64_t big[] = {6, 4, 8, 3}, bs[] = {5};
    nn_tensor *x = tu_rand(1, xs, 4, -1, 1), *w = tu_rand(2, ws, 4, -1, 1);
    nn_tensor *wr = tu_rand(3, w3, 3, -1, 1), *wgr = tu_rand(4, wg, 4, -1, 1);
    nn_tensor *wb = tu_rand(5, big, 4, -1, 1), *b = tu_rand(6, bs, 1, -1, 1);
    nn_tensor *xi = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, xs, 4));
    assert_null(nn_conv2d(x, wr, NULL, 1, 1, 0, 0, 1, 1, 1));
    tu_expect_error(NN_ERR_SHAPE, "nn_conv2d: x [1,4,5,5] and w [6,4,3] must both be 4-D");
    assert_null(nn_conv2d(x, wgr, NULL, 1, 1, 0, 0, 1, 1, 1));
    tu_expect_error(NN_ERR_SHAPE, "nn_conv2d: x [1,4,5,5] has 4 channels but w [6,2,3,3] expects 2");
    assert_null(nn_conv2d(x, w, NULL, 1, 1, 0, 0, 1, 1, 3));
    tu_expect_error(NN_ERR_SHAPE, "nn_conv2d: groups = 3 must divide in_channels 4");
    assert_null(nn_conv2d(x, wb, NULL, 1, 1, 1, 1, 1, 1, 1));
    tu_expect_error(NN_ERR_SHAPE, "nn_conv2d: kernel height extent 8");
    assert_null(nn_conv2d(x, w, NULL, 1, 1, 0, 0, 3, 3, 1)); /* dilated extent 7 > 5 */
    tu_expect_error(NN_ERR_SHAPE, "bigger than the padded input");
    assert_null(nn_conv2d(x, w, b, 1, 1, 0, 0, 1, 1, 1));
    tu_expect_error(NN_ERR_SHAPE, "nn_conv2d: b has shape [5], expected [6]");
    assert_null(nn_conv2d(x, w, NULL, 0, 1, 0, 0, 1, 1, 1));
    tu_expect_error(NN_ERR_INVALID, "nn_conv2d: stride 0");
    assert_null(nn_conv2d(x, w, NULL, 1, 1, 0, 0, 1, 1, 0));
    tu_expect_error(NN_ERR_INVALID, "nn_conv2d: groups = 0");
    assert_null(nn_conv2d(xi, w, NULL, 1, 1, 0, 0, 1, 1, 1));
    tu_expect_error(NN_ERR_DTYPE, "nn_conv2d: argument 'x' has dtype i64");
    assert_null(nn_conv2d(NULL, w, NULL, 1, 1, 0, 0, 1, 1, 1));
    tu_expect_error(NN_ERR_NULL, "nn_conv2d");
    assert_null(nn_conv1d(x, w, NULL, 1, 0, 1, 1));
    tu_expect_error(NN_ERR_SHAPE, "nn_conv1d: x [1,4,5,5] and w [6,4,3,3] must both be 3-D");
    assert_null(nn_conv_transpose2d(x, w, NULL, 1, 1, 0, 0, 1, 1, 1, 1, 1));
    tu_expect_error(NN_ERR_INVALID, "nn_conv_transpose2d: output_padding 1 must be smaller than stride 1");
    assert_null(nn_conv_transpose2d(x, w, NULL, 1, 1, 0, 0, 0, 0, 1, 1, 3));
    tu_expect_error(NN_ERR_SHAPE, "nn_conv_transpose2d: x [1,4,5,5] has 4 channels but w [6,4,3,3] expects 6");
    nn_tensor *objs[] = {x, w, wr, wgr, wb, b, xi};
    th_free_all(objs, 7);
}

/* ------------------------------------------------------- empty batch */

/* y must have shape want; then sum(y) backward: x gets an empty gradient of
 * its shape, w and b (if given) gradients of zeros, like PyTorch. */
static void check_empty(nn_tensor *y, const int64_t *want, int nd, nn_tensor *x, nn_tensor *w,
                        nn_tensor *b) {
    if (!y) fail_msg("empty batch: NULL (status %d): %s", (int)nn_last_status(), nn_last_error());
    assert_int_equal(nn_tensor_ndim(y), nd);
    for (int i = 0; i < nd; i++) assert_int_equal(nn_tensor_shape(y)[i], want[i]);
    nn_tensor *l = TU_NN(nn_sum(y, NULL, 0, false));
    TU_OK(nn_backward(l));
    nn_tensor_free(l);
    nn_tensor *gx = TU_NN(nn_tensor_grad(x));
    assert_int_equal(nn_tensor_ndim(gx), nn_tensor_ndim(x));
    assert_int_equal(nn_tensor_numel(gx), 0);
    nn_tensor *ps[2] = {w, b};
    for (int k = 0; k < 2; k++) {
        if (!ps[k]) continue;
        nn_tensor *g = TU_NN(nn_tensor_grad(ps[k]));
        assert_int_equal(nn_tensor_numel(g), nn_tensor_numel(ps[k]));
        const float *gp = nn_tensor_data(g);
        for (int64_t i = 0; i < nn_tensor_numel(g); i++) assert_true(gp[i] == 0.0f);
    }
}

/* Regression: N = 0 returned NULL with status NN_OK and no message. PyTorch
 * returns an empty [0, C_out, OH, OW] output and backward gives zero weight
 * and bias gradients (shapes checked against torch 1.13). */
static void test_conv_empty_batch(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    /* conv2d, groups 1 (the batched path), stride and padding per axis */
    int64_t xs[] = {0, 3, 5, 6}, ws[] = {4, 3, 3, 2}, bs[] = {4}, y1[] = {0, 4, 3, 5};
    nn_tensor *x = th_param(1, xs, 4), *w = th_param(2, ws, 4), *b = th_param(3, bs, 1);
    check_empty(nn_conv2d(x, w, b, 2, 1, 1, 0, 1, 1, 1), y1, 4, x, w, b);
    /* conv2d, groups 2 (the per-image path) */
    int64_t xg[] = {0, 4, 5, 5}, wg[] = {6, 2, 3, 3}, bg[] = {6}, y2[] = {0, 6, 3, 3};
    x = th_param(4, xg, 4), w = th_param(5, wg, 4), b = th_param(6, bg, 1);
    check_empty(nn_conv2d(x, w, b, 1, 1, 0, 0, 1, 1, 2), y2, 4, x, w, b);
    /* conv2d 1x1 (no im2col) */
    int64_t w1[] = {5, 4, 1, 1}, y3[] = {0, 5, 5, 5};
    x = th_param(7, xg, 4), w = th_param(8, w1, 4);
    check_empty(nn_conv2d(x, w, NULL, 1, 1, 0, 0, 1, 1, 1), y3, 4, x, w, NULL);
    /* conv1d, groups 2 */
    int64_t x1[] = {0, 4, 9}, wc1[] = {6, 2, 3}, y4[] = {0, 6, 7};
    x = th_param(9, x1, 3), w = th_param(10, wc1, 3), b = th_param(11, bg, 1);
    check_empty(nn_conv1d(x, w, b, 1, 0, 1, 2), y4, 3, x, w, b);
    /* conv_transpose2d, stride 2 */
    int64_t xt[] = {0, 4, 5, 6}, wt[] = {4, 3, 3, 3}, bt[] = {3}, y5[] = {0, 3, 11, 13};
    x = th_param(12, xt, 4), w = th_param(13, wt, 4), b = th_param(14, bt, 1);
    check_empty(nn_conv_transpose2d(x, w, b, 2, 2, 0, 0, 0, 0, 1, 1, 1), y5, 4, x, w, b);
    /* the Conv2d module */
    nn_module *m = TU_NN(nn_conv2d_new(3, 4, 3, 1, 1, true));
    int64_t xm[] = {0, 3, 8, 8}, y6[] = {0, 4, 8, 8};
    x = th_param(15, xm, 4);
    check_empty(nn_module_forward(m, x), y6, 4, x, nn_module_get_parameter(m, "weight"),
                nn_module_get_parameter(m, "bias"));
    nn_module_free(m);
    nn_scope_end(sc);
}

/* ---------------------------------------------------------- OOM sweep */

/* conv -> max_pool -> linear, forward and backward, everything created
 * inside so every allocation site is swept. Returns 0 on success. */
static int oom_body(void *ctx) {
    (void)ctx;
    int64_t xs[] = {2, 1, 6, 6}, ws[] = {3, 1, 3, 3}, bs[] = {3}, ls[] = {4, 27}, lb[] = {4};
    int64_t fl[] = {2, 27};
    nn_tensor *x = nn_tensor_full(NN_DTYPE_F32, xs, 4, 0.5);
    nn_tensor *w = nn_tensor_full(NN_DTYPE_F32, ws, 4, 0.1);
    nn_tensor *b = nn_tensor_full(NN_DTYPE_F32, bs, 1, 0.2);
    nn_tensor *lw = nn_tensor_full(NN_DTYPE_F32, ls, 2, 0.3);
    nn_tensor *lbias = nn_tensor_full(NN_DTYPE_F32, lb, 1, 0.4);
    nn_tensor *c = NULL, *p = NULL, *f = NULL, *y = NULL, *seed = NULL, *idx = NULL;
    int rc = 1;
    if (!x || !w || !b || !lw || !lbias) goto out;
    if (nn_tensor_set_requires_grad(x, true) || nn_tensor_set_requires_grad(w, true) ||
        nn_tensor_set_requires_grad(b, true) || nn_tensor_set_requires_grad(lw, true) ||
        nn_tensor_set_requires_grad(lbias, true))
        goto out;
    if (!(c = nn_conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1))) goto out;
    if (!(p = nn_max_pool2d(c, 2, 2, 2, 2, 0, 0, 1, 1, false, &idx))) goto out;
    if (!(f = nn_reshape(p, fl, 2))) goto out;
    if (!(y = nn_linear(f, lw, lbias))) goto out;
    if (!(seed = nn_tensor_ones(NN_DTYPE_F32, nn_tensor_shape(y), 2))) goto out;
    if (nn_backward_ex(y, seed, false) != NN_OK) goto out;
    if (!nn_tensor_grad(x) || !nn_tensor_grad(w) || !nn_tensor_grad(lw)) goto out;
    rc = 0;
out:;
    nn_tensor *all[] = {x, w, b, lw, lbias, c, p, f, y, seed, idx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nn_tensor_free(all[i]);
    return rc;
}

static void test_oom_sweep(void **s) {
    (void)s;
    long sites = tu_oom_sweep(oom_body, NULL);
    assert_true(sites > 10);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_grad_all_combos),
        cmocka_unit_test(test_conv2d_grad_1x1),
        cmocka_unit_test(test_conv1d_grad),
        cmocka_unit_test(test_conv_transpose2d_grad_all_combos),
        cmocka_unit_test(test_conv_transpose_is_adjoint),
        cmocka_unit_test(test_conv_golden),
        cmocka_unit_test(test_conv_errors),
        cmocka_unit_test(test_conv_empty_batch),
        cmocka_unit_test(test_oom_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
