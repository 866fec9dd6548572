/* Sequential's fusion of Conv2d -> ReLU (-> MaxPool2d(2)) into one op
 * (lib/module/layers.c nn__mod_fuse_conv, lib/ops/conv.c nn__conv2d_relu):
 * outputs and gradients bit-identical to the same layers run one op at a
 * time, in every ISA tier this machine runs, through the direct kernels and
 * through im2col + GEMM (forced), without and with a graph (the ReLU's
 * backward fused into the convolution's), with NaN inputs, and for the
 * layer sequences it must leave alone. The exception: a fused conv + pool
 * without a graph that the SIMD tiers run as Winograd F(2x2, 3x3) (3x3,
 * unit stride, 8+ input channels) agrees within a rounding bound, NaN
 * where the ops give NaN. */
#include "testutil.h"
#include "backend/backend.h"
#include "backend/tier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void expect_same(nn_tensor *got, nn_tensor *want, const char *what) {
    assert_int_equal(nn_tensor_ndim(got), nn_tensor_ndim(want));
    for (int d = 0; d < nn_tensor_ndim(got); d++)
        assert_int_equal(nn_tensor_shape(got)[d], nn_tensor_shape(want)[d]);
    const float *a = nn_tensor_data(got), *b = nn_tensor_data(want);
    for (int64_t i = 0; i < nn_tensor_numel(got); i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i])))
            fail_msg("%s: element %lld is %.9g, unfused %.9g", what, (long long)i, (double)a[i],
                     (double)b[i]);
}

typedef struct net_case {
    int64_t n, c, h, w, o;
    int k, stride, pad;
    int pool_k, pool_s, pool_p; /* pool_k 0: no pool layer */
    bool winograd; /* the SIMD tiers' fused conv + pool is Winograd F(2x2, 3x3) here */
} net_case;

/* |got - want| within 32 (taps + 2) eps times the same layers run on the
 * absolute values (a bound of every term's size), NaN exactly where want
 * has NaN: the Winograd forward rounds differently from the direct one. */
static void expect_close(nn_tensor *got, nn_tensor *want, nn_tensor *bound, int64_t taps,
                         const char *what) {
    assert_int_equal(nn_tensor_numel(got), nn_tensor_numel(want));
    const float *a = nn_tensor_data(got), *b = nn_tensor_data(want), *m = nn_tensor_data(bound);
    for (int64_t i = 0; i < nn_tensor_numel(got); i++) {
        if (isnan(b[i]) || isnan(a[i])) {
            if (!(isnan(a[i]) && isnan(b[i])))
                fail_msg("%s: element %lld is %.9g, unfused %.9g", what, (long long)i,
                         (double)a[i], (double)b[i]);
            continue;
        }
        const double tol = 32.0 * (double)(taps + 2) * 1.2e-7 * (double)m[i];
        if (!(fabs((double)a[i] - (double)b[i]) <= tol))
            fail_msg("%s: element %lld is %.9g, unfused %.9g (tolerance %.3g)", what, (long long)i,
                     (double)a[i], (double)b[i], tol);
    }
}

/* Conv2d -> ReLU (-> MaxPool2d) as a Sequential, and its unfused ops. */
static nn_module *make_net(const net_case *k) {
    nn_module *m = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(m, nn_conv2d_new(k->c, k->o, k->k, k->stride, k->pad, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    if (k->pool_k)
        TU_OK(nn_sequential_append(m, nn_max_pool2d_new(k->pool_k, k->pool_s, k->pool_p)));
    return m;
}

static nn_tensor *unfused(nn_module *m, const net_case *k, nn_tensor *x) {
    nn_tensor *w = nn_module_parameter(m, 0, NULL), *b = nn_module_parameter(m, 1, NULL);
    nn_tensor *y = nn_relu(nn_conv2d(x, w, b, k->stride, k->stride, k->pad, k->pad, 1, 1, 1));
    if (k->pool_k)
        y = nn_max_pool2d(y, k->pool_k, k->pool_k, k->pool_s, k->pool_s, k->pool_p, k->pool_p, 1, 1,
                          false, NULL);
    return TU_NN(y);
}

static const net_case g_cases[] = {
    {2, 3, 9, 11, 10, 3, 1, 1, 2, 2, 0, false},  /* odd plane: the pool floors */
    {1, 1, 28, 28, 32, 3, 1, 1, 2, 2, 0, false}, /* the demo CNN's first layers */
    {3, 32, 14, 14, 64, 3, 1, 1, 2, 2, 0, true},
    {2, 9, 11, 13, 9, 3, 1, 1, 2, 2, 0, true}, /* odd plane and channels, Winograd */
    {2, 5, 8, 8, 7, 3, 1, 1, 2, 2, 0, false},  /* fewer output channels than half a vector */
    {2, 4, 9, 9, 20, 3, 2, 1, 2, 2, 0, false}, /* stride 2: no direct forward */
    {2, 6, 7, 7, 18, 1, 1, 0, 0, 0, 0, false}, /* conv -> relu only */
    {2, 6, 8, 8, 18, 3, 1, 1, 3, 1, 1, false}, /* a pool the fusion does not take */
    {1, 2, 3, 3, 17, 3, 1, 0, 2, 2, 0, false}, /* a 1x1 conv output: the pool layer must reject it */
};

/* Eval without a graph: the fused Sequential equals the ops one at a time
 * (within rounding where wino: the Winograd forward). */
static void check_eval(const net_case *k, bool with_nan, bool wino) {
    nn_scope *s = nn_scope_begin();
    nn_module *m = make_net(k);
    const int64_t xs[4] = {k->n, k->c, k->h, k->w};
    nn_tensor *x = tu_rand(7, xs, 4, -1, 1);
    if (with_nan) ((float *)nn_tensor_data(x))[nn_tensor_numel(x) / 2] = NAN;
    TU_OK(nn_module_train(m, false));
    const bool was = nn_set_grad_enabled(false);
    nn_tensor *got = nn_module_forward(m, x);
    nn_tensor *want = NULL;
    if (got) {
        want = unfused(m, k, x);
        if (wino) {
            nn_tensor *w = nn_module_parameter(m, 0, NULL), *b = nn_module_parameter(m, 1, NULL);
            nn_tensor *y = nn_conv2d(TU_NN(nn_abs(x)), TU_NN(nn_abs(w)), TU_NN(nn_abs(b)),
                                     k->stride, k->stride, k->pad, k->pad, 1, 1, 1);
            nn_tensor *bound = TU_NN(nn_max_pool2d(TU_NN(y), k->pool_k, k->pool_k, k->pool_s,
                                                   k->pool_s, k->pool_p, k->pool_p, 1, 1, false,
                                                   NULL));
            expect_close(got, want, bound, k->c * k->k * k->k, "eval (Winograd)");
        } else {
            expect_same(got, want, "eval");
        }
    } else { /* the pool layer rejects the conv's output, as the unfused pool does */
        assert_int_equal(nn_last_status(), NN_ERR_SHAPE);
        nn_tensor *w = nn_module_parameter(m, 0, NULL);
        nn_tensor *y =
            nn_relu(nn_conv2d(x, w, NULL, k->stride, k->stride, k->pad, k->pad, 1, 1, 1));
        assert_non_null(y);
        assert_null(nn_max_pool2d(y, k->pool_k, k->pool_k, k->pool_s, k->pool_s, k->pool_p,
                                  k->pool_p, 1, 1, false, NULL));
    }
    nn_set_grad_enabled(was);
    nn_module_free(m);
    nn_scope_end(s);
}

/* Training with a graph: the fused conv + ReLU node gives the same output
 * and the same gradients of x, w and b as the separate ops. */
static void check_train(const net_case *k) {
    nn_scope *s = nn_scope_begin();
    nn_module *m = make_net(k);
    const int64_t xs[4] = {k->n, k->c, k->h, k->w};
    nn_tensor *x = tu_rand(9, xs, 4, -1, 1);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *got = nn_module_forward(m, x);
    if (!got) { /* a shape the layers reject: nothing to compare */
        nn_module_free(m);
        nn_scope_end(s);
        return;
    }
    /* a loss whose gradient is not zero where the ReLU clamps (sum y * r) */
    nn_tensor *r = tu_rand(5, nn_tensor_shape(got), nn_tensor_ndim(got), -1, 1);
    TU_OK(nn_backward(nn_sum(nn_mul(got, r), NULL, 0, false)));
    nn_tensor *w = nn_module_parameter(m, 0, NULL), *b = nn_module_parameter(m, 1, NULL);
    nn_tensor *gx = TU_NN(nn_tensor_clone(nn_tensor_grad(x)));
    nn_tensor *gw = TU_NN(nn_tensor_clone(nn_tensor_grad(w)));
    nn_tensor *gb = TU_NN(nn_tensor_clone(nn_tensor_grad(b)));
    TU_OK(nn_tensor_zero_grad(x));
    TU_OK(nn_tensor_zero_grad(w));
    TU_OK(nn_tensor_zero_grad(b));
    nn_tensor *want = unfused(m, k, x);
    expect_same(got, want, "train forward");
    TU_OK(nn_backward(nn_sum(nn_mul(want, r), NULL, 0, false)));
    expect_same(gx, nn_tensor_grad(x), "x gradient");
    expect_same(gw, nn_tensor_grad(w), "w gradient");
    expect_same(gb, nn_tensor_grad(b), "b gradient");
    nn_module_free(m);
    nn_scope_end(s);
}

static void all_cases(bool simd) {
    for (int force = 0; force < 2; force++) { /* the tier's rule, then im2col + GEMM only */
        nn__backend_force_conv(force ? 0 : -1);
        for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) {
            const bool wino = simd && !force && g_cases[i].winograd;
            check_eval(&g_cases[i], false, wino);
            check_eval(&g_cases[i], true, wino);
            check_train(&g_cases[i]);
        }
    }
    nn__backend_force_conv(-1);
}

static void test_fused_equals_unfused(void **state) {
    (void)state;
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        if (!nn__tier_runnable(t)) continue;
        assert_true(nn__backend_force_tier(t));
        for (int threads = 1; threads <= 2; threads++) {
            TU_OK(nn_set_num_threads(threads));
            all_cases(t != NN_TIER_REF);
        }
    }
    assert_true(nn__backend_force_tier(-1));
    TU_OK(nn_set_num_threads(1));
}

/* Inference over a large batch runs the leading fused convolutions block by
 * block of images at one thread (lib/module/module.c forward_head_blocked):
 * a block holds max(1, L2 / 2 / peak) images, peak the largest per-image
 * input + output bytes of one fused op. The batch here is two blocks and one
 * image (the blocks do not divide it), and the result must equal the same
 * network run image by image (batch 1: never blocked), bit for bit; at 2
 * threads (the whole batch at once) too. */
typedef struct block_case {
    int64_t c, h, w;
    int64_t peak; /* bytes, as the library computes it */
    nn_module *(*make)(void);
} block_case;

static nn_module *seq_of(nn_module *const *l, int n) {
    nn_module *m = TU_NN(nn_sequential_new());
    for (int i = 0; i < n; i++) TU_OK(nn_sequential_append(m, l[i]));
    return m;
}

static nn_module *demo_cnn(void) { /* tests/bench's CNN */
    nn_module *l[] = {nn_conv2d_new(1, 32, 3, 1, 1, true),  nn_relu_new(),
                      nn_max_pool2d_new(2, 2, 0),           nn_conv2d_new(32, 64, 3, 1, 1, true),
                      nn_relu_new(),                        nn_max_pool2d_new(2, 2, 0),
                      nn_flatten_new(1, -1),                nn_linear_new(3136, 16, true),
                      nn_relu_new(),                        nn_linear_new(16, 10, true)};
    return seq_of(l, sizeof l / sizeof l[0]);
}

static nn_module *odd_cnn(void) { /* odd planes, a conv + ReLU without pool, no padding */
    nn_module *l[] = {nn_conv2d_new(3, 10, 3, 1, 1, true), nn_relu_new(),
                      nn_max_pool2d_new(2, 2, 0),          nn_conv2d_new(10, 7, 3, 1, 0, true),
                      nn_relu_new(),                       nn_flatten_new(1, -1),
                      nn_linear_new(7 * 14 * 13, 5, true)};
    return seq_of(l, sizeof l / sizeof l[0]);
}

static const block_case g_blocks[] = {
    /* conv2: in 32x14x14, out 64x7x7 */
    {1, 28, 28, 4 * (32 * 14 * 14 + 64 * 7 * 7), demo_cnn},
    /* conv1: in 3x33x31, out 10x33x31 (pooled 10x16x15; conv2 out 7x14x13) */
    {3, 33, 31, 4 * (3 * 33 * 31 + 10 * 33 * 31), odd_cnn},
};

static void check_blocked(const block_case *k, int threads) {
    nn_scope *s = nn_scope_begin();
    nn_module *m = k->make();
    TU_OK(nn_module_train(m, false));
    const int64_t fit = nn__cpu()->l2 / 2 / k->peak;
    const int64_t block = fit < 1 ? 1 : fit, n = 2 * block + 1;
    const int64_t xs[4] = {n, k->c, k->h, k->w};
    nn_tensor *x = tu_rand(11, xs, 4, -1, 1);
    const bool was = nn_set_grad_enabled(false);
    nn_tensor *got = TU_NN(nn_module_forward(m, x));
    assert_int_equal(nn_tensor_shape(got)[0], n);
    const int64_t per_out = nn_tensor_numel(got) / n;
    float *want = malloc(sizeof(float) * (size_t)nn_tensor_numel(got));
    assert_non_null(want);
    for (int64_t i = 0; i < n; i++) {
        nn_tensor *yi = TU_NN(nn_module_forward(m, TU_NN(nn_slice(x, 0, i, i + 1, 1))));
        assert_int_equal(nn_tensor_numel(yi), per_out);
        memcpy(want + i * per_out, nn_tensor_data(yi), sizeof(float) * (size_t)per_out);
    }
    const float *a = nn_tensor_data(got);
    for (int64_t i = 0; i < nn_tensor_numel(got); i++)
        if (memcmp(&a[i], &want[i], sizeof(float)) != 0)
            fail_msg("batch %lld, %d threads: element %lld is %.9g, image alone %.9g",
                     (long long)n, threads, (long long)i, (double)a[i], (double)want[i]);
    free(want);
    nn_set_grad_enabled(was);
    nn_module_free(m);
    nn_scope_end(s);
}

static void test_blocked_batch_equals_images(void **state) {
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        TU_OK(nn_set_num_threads(threads));
        for (size_t i = 0; i < sizeof g_blocks / sizeof g_blocks[0]; i++)
            check_blocked(&g_blocks[i], threads);
    }
    TU_OK(nn_set_num_threads(1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_equals_unfused),
        cmocka_unit_test(test_blocked_batch_equals_images),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
