/* batch_norm, layer_norm, group_norm, dropout, embedding: gradcheck,
 * PyTorch golden values (batch_norm also its running stats), dropout
 * statistics, errors. */
#include "nn_testhelp.h"

/* ------------------------------------------------------------ batch_norm */

typedef struct {
    nn_tensor *rm, *rv;
    bool training;
    double momentum, eps;
} bn_cfg;

static nn_tensor *f_bn(nn_tensor **in, void *ctx) {
    bn_cfg *c = ctx;
    return nn_batch_norm(in[0], c->rm, c->rv, in[1], in[2], c->training, c->momentum, c->eps);
}

static void test_batch_norm_grad(void **s) {
    (void)s;
    int64_t xs4[] = {3, 2, 3, 2}, xs2[] = {5, 3}, cs2[] = {2}, cs3[] = {3};
    for (int v = 0; v < 4; v++) {
        bool four = v % 2 == 0, affine = v < 2;
        const int64_t *cs = four ? cs2 : cs3;
        nn_tensor *rm = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, cs, 1));
        nn_tensor *rv = TU_NN(nn_tensor_ones(NN_DTYPE_F32, cs, 1));
        for (int training = 0; training <= 1; training++) {
            bn_cfg c = {rm, rv, training != 0, 0.1, 1e-5};
            nn_tensor *in[3] = {four ? th_param(10 + v, xs4, 4) : th_param(10 + v, xs2, 2),
                                affine ? th_param(20 + v, cs, 1) : NULL, affine ? th_param(30 + v, cs, 1) : NULL};
            tu_gradcheck(f_bn, in, 3, &c, 3e-3, 5e-3, 2e-2);
            th_free_all(in, 3);
        }
        nn_tensor_free(rm);
        nn_tensor_free(rv);
    }
}

/* Running stats follow PyTorch: unbiased variance, momentum blend, in place
 * and without recording a graph. */
static void test_batch_norm_running_stats(void **s) {
    (void)s;
    const float v[] = {1, 2, 3, 4, 10, 20, 30, 40}; /* [4, 2]: channel 0 = 1,3,10,30 */
    int64_t xs[] = {4, 2}, cs[] = {2};
    nn_tensor *x = tu_tensor(xs, 2, v);
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_tensor *rm = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, cs, 1)), *rv = TU_NN(nn_tensor_ones(NN_DTYPE_F32, cs, 1));
    nn_tensor *y = TU_NN(nn_batch_norm(x, rm, rv, NULL, NULL, true, 0.25, 1e-5));
    const double c0[] = {1, 3, 10, 30}, c1[] = {2, 4, 20, 40};
    const double *ch[] = {c0, c1};
    for (int c = 0; c < 2; c++) {
        double m = 0, q = 0;
        for (int i = 0; i < 4; i++) m += ch[c][i] / 4;
        for (int i = 0; i < 4; i++) q += (ch[c][i] - m) * (ch[c][i] - m);
        const float *pm = nn_tensor_data(rm), *pv = nn_tensor_data(rv);
        assert_true(fabs(pm[c] - 0.25 * m) < 1e-4);
        assert_true(fabs(pv[c] - (0.75 + 0.25 * q / 3)) < 1e-3);
    }
    assert_false(nn_tensor_requires_grad(rm));
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_tensor_free(rm);
    nn_tensor_free(rv);
}

static void test_batch_norm_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_nn.txt");
    int k;
    for (k = 0;; k++) {
        char cs[64], nm[80];
        const int64_t *p;
        if (!th_golden_params(g, "bn", k, cs, sizeof cs, &p)) break;
        snprintf(nm, sizeof nm, "%s_rm", cs);
        nn_tensor *rm = TU_NN(nn_tensor_clone(tu_golden_get(g, nm)));
        snprintf(nm, sizeof nm, "%s_rv", cs);
        nn_tensor *rv = TU_NN(nn_tensor_clone(tu_golden_get(g, nm)));
        bn_cfg c = {rm, rv, p[0] != 0, (double)p[1] / 1000, (double)p[2] / 1e6};
        th_golden_case(g, cs, 3, f_bn, &c, 1e-5, 1e-5);
        snprintf(nm, sizeof nm, "%s_rm_after", cs);
        tu_assert_close(rm, tu_golden_get(g, nm), 1e-5, 1e-6, nm);
        snprintf(nm, sizeof nm, "%s_rv_after", cs);
        tu_assert_close(rv, tu_golden_get(g, nm), 1e-5, 1e-6, nm);
        nn_tensor_free(rm);
        nn_tensor_free(rv);
    }
    assert_true(k >= 4);
    tu_golden_close(g);
}

/* ------------------------------------------------------- layer/group norm */

typedef struct {
    int n;
    int groups;
    double eps;
} ln_cfg;

static nn_tensor *f_ln(nn_tensor **in, void *ctx) {
    const ln_cfg *c = ctx;
    const int64_t *sh = nn_tensor_shape(in[0]);
    return nn_layer_norm(in[0], sh + nn_tensor_ndim(in[0]) - c->n, c->n, in[1], in[2], c->eps);
}

static nn_tensor *f_gn(nn_tensor **in, void *ctx) {
    const ln_cfg *c = ctx;
    return nn_group_norm(in[0], c->groups, in[1], in[2], c->eps);
}

static void test_layer_norm_grad(void **s) {
    (void)s;
    int64_t xs[] = {3, 2, 4}, ws2[] = {2, 4}, ws1[] = {4};
    for (int v = 0; v < 3; v++) {
        ln_cfg c = {v == 0 ? 2 : 1, 0, 1e-5};
        const int64_t *ws = v == 0 ? ws2 : ws1;
        nn_tensor *in[3] = {th_param(40 + v, xs, 3), v < 2 ? th_param(41, ws, c.n) : NULL,
                            v < 2 ? th_param(42, ws, c.n) : NULL};
        tu_gradcheck(f_ln, in, 3, &c, 3e-3, 5e-3, 2e-2);
        th_free_all(in, 3);
    }
}

static void test_group_norm_grad(void **s) {
    (void)s;
    int64_t xs[] = {2, 4, 3, 2}, cs[] = {4};
    const int groups[] = {1, 2, 4};
    for (int v = 0; v < 3; v++) {
        ln_cfg c = {0, groups[v], 1e-5};
        nn_tensor *in[3] = {th_param(50 + v, xs, 4), v != 1 ? th_param(51, cs, 1) : NULL,
                            v != 1 ? th_param(52, cs, 1) : NULL};
        tu_gradcheck(f_gn, in, 3, &c, 3e-3, 5e-3, 2e-2);
        th_free_all(in, 3);
    }
}

static void test_ln_gn_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_nn.txt");
    const char *ops[] = {"ln", "gn"};
    for (int kind = 0; kind < 2; kind++) {
        int k;
        for (k = 0;; k++) {
            char cs[64];
            const int64_t *p;
            if (!th_golden_params(g, ops[kind], k, cs, sizeof cs, &p)) break;
            ln_cfg c = {(int)p[0], (int)p[0], (double)p[1] / 1e6};
            th_golden_case(g, cs, 3, kind ? f_gn : f_ln, &c, 1e-5, 2e-5);
        }
        assert_true(k >= 3);
    }
    tu_golden_close(g);
}

/* -------------------------------------------------------------- dropout */

typedef struct {
    nn_generator *g;
    double p;
    bool training;
} drop_cfg;

static nn_tensor *f_drop(nn_tensor **in, void *ctx) {
    drop_cfg *c = ctx;
    nn_generator_seed(c->g, 7); /* the same mask on every call */
    return nn_dropout(in[0], c->p, c->training, c->g);
}

static void test_dropout_grad(void **s) {
    (void)s;
    int64_t xs[] = {4, 5};
    drop_cfg cfgs[] = {{NULL, 0.4, true}, {NULL, 0.4, false}, {NULL, 0.0, true}, {NULL, 1.0, true}};
    for (int v = 0; v < 4; v++) {
        cfgs[v].g = TU_NN(nn_generator_new(1));
        nn_tensor *x = th_param(60 + v, xs, 2);
        tu_gradcheck(f_drop, &x, 1, &cfgs[v], 1e-2, 2e-3, 1e-2);
        nn_tensor_free(x);
        nn_generator_free(cfgs[v].g);
    }
}

/* RNGs differ from PyTorch's, so compare the rule and the statistics:
 * survivors scaled by exactly 1/(1-p), drop rate near p, identity in eval. */
static void test_dropout_statistics(void **s) {
    (void)s;
    int64_t xs[] = {200, 500};
    nn_tensor *x = TU_NN(nn_tensor_ones(NN_DTYPE_F32, xs, 2));
    TU_OK(nn_tensor_set_requires_grad(x, true));
    nn_generator *g = TU_NN(nn_generator_new(42));
    const double ps[] = {0.1, 0.3, 0.5, 0.9};
    for (int k = 0; k < 4; k++) {
        double p = ps[k];
        nn_tensor *y = TU_NN(nn_dropout(x, p, true, g));
        const float *d = nn_tensor_data(y);
        const float keep = (float)(1.0 / (1.0 - p));
        int64_t zeros = 0, n = nn_tensor_numel(y);
        for (int64_t i = 0; i < n; i++) {
            if (d[i] == 0.0f) zeros++;
            else assert_true(d[i] == keep);
        }
        double rate = (double)zeros / (double)n, sd = sqrt(p * (1 - p) / (double)n);
        if (fabs(rate - p) > 5 * sd) fail_msg("p %g: drop rate %g", p, rate);
        /* backward multiplies by the same mask: grad == y for x == 1 */
        TU_OK(nn_tensor_zero_grad(x));
        TU_OK(nn_backward_ex(y, x, false));
        assert_true(nn_tensor_equal(nn_tensor_grad(x), y));
        nn_tensor_free(y);
    }
    /* same seed -> same mask */
    nn_generator_seed(g, 5);
    nn_tensor *a = TU_NN(nn_dropout(x, 0.5, true, g));
    nn_generator_seed(g, 5);
    nn_tensor *b = TU_NN(nn_dropout(x, 0.5, true, g));
    assert_true(nn_tensor_equal(a, b));
    /* eval and p == 0: identity; p == 1: zeros */
    nn_tensor *e = TU_NN(nn_dropout(x, 0.5, false, g)), *z0 = TU_NN(nn_dropout(x, 0.0, true, g));
    nn_tensor *z1 = TU_NN(nn_dropout(x, 1.0, true, g));
    nn_tensor *zeros = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, xs, 2));
    assert_true(nn_tensor_equal(e, x));
    assert_true(nn_tensor_equal(z0, x));
    assert_true(nn_tensor_equal(z1, zeros));
    nn_tensor *objs[] = {a, b, e, z0, z1, zeros, x};
    th_free_all(objs, 7);
    nn_generator_free(g);
}

/* ------------------------------------------------------------ embedding */

static nn_tensor *f_emb(nn_tensor **in, void *ctx) {
    (void)ctx;
    return nn_embedding(in[0], in[1]);
}

static void test_embedding_grad(void **s) {
    (void)s;
    int64_t ws[] = {5, 3}, is[] = {2, 3};
    const int64_t iv[] = {4, 0, 4, 2, 2, 4}; /* repeats: backward must accumulate */
    nn_tensor *in[2] = {th_param(70, ws, 2), TU_NN(nn_tensor_from_data(NN_DTYPE_I64, is, 2, iv))};
    nn_tensor *y = TU_NN(nn_embedding(in[0], in[1]));
    assert_int_equal(nn_tensor_ndim(y), 3);
    assert_int_equal(nn_tensor_shape(y)[2], 3);
    nn_tensor_free(y);
    tu_gradcheck(f_emb, in, 2, NULL, 1e-2, 2e-3, 1e-2);
    th_free_all(in, 2);
}

/* The weight as embedding and as the LM head (tied, GPT's): the head's dW
 * reaches the leaf's gradient first and the embedding's backward adds its
 * rows into it in place; and the weight in two lookups (the second adds
 * into the first's gradient). Both against finite differences. */
static nn_tensor *f_emb_tied(nn_tensor **in, void *ctx) {
    (void)ctx;
    nn_tensor *e = nn_embedding(in[0], in[1]);
    nn_tensor *y = nn_linear(e, in[0], NULL);
    nn_tensor_free(e); /* the graph keeps what backward needs */
    return y;
}

static nn_tensor *f_emb_twice(nn_tensor **in, void *ctx) {
    (void)ctx;
    int64_t s = 3;
    nn_tensor *j = nn_tensor_from_data(NN_DTYPE_I64, &s, 1, (const int64_t[]){1, 1, 3});
    nn_tensor *e1 = nn_embedding(in[0], in[1]), *e2 = nn_embedding(in[0], j);
    nn_tensor *s2 = nn_sum(e2, NULL, 0, false);
    nn_tensor *y = nn_add(e1, s2);
    nn_tensor_free(e1);
    nn_tensor_free(e2);
    nn_tensor_free(s2);
    nn_tensor_free(j);
    return y;
}

static void test_embedding_tied_grad(void **s) {
    (void)s;
    int64_t ws[] = {5, 3}, is[] = {2, 3};
    const int64_t iv[] = {4, 0, 4, 2, 2, 4};
    nn_tensor *in[2] = {th_param(71, ws, 2), TU_NN(nn_tensor_from_data(NN_DTYPE_I64, is, 2, iv))};
    tu_gradcheck(f_emb_tied, in, 2, NULL, 1e-2, 2e-3, 1e-2);
    tu_gradcheck(f_emb_twice, in, 2, NULL, 1e-2, 2e-3, 1e-2);
    th_free_all(in, 2);
}

static void test_embedding_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("ops_nn.txt");
    int k;
    for (k = 0;; k++) {
        char cs[64], nm[80];
        snprintf(cs, sizeof cs, "emb_%d", k);
        snprintf(nm, sizeof nm, "%s_out", cs);
        if (!tu_golden_has(g, nm)) break;
        th_golden_case(g, cs, 2, f_emb, NULL, 1e-6, 1e-6);
    }
    assert_true(k >= 2);
    tu_golden_close(g);
}

/* --------------------------------------------------------------- errors */

static void test_norm_errors(void **s) {
    (void)s;
    int64_t xs[] = {2, 4, 3}, x1[] = {4}, c3[] = {3}, c4[] = {4}, one[] = {1, 4}, ws[] = {5, 3};
    nn_tensor *x = tu_rand(1, xs, 3, -1, 1), *v = tu_rand(2, x1, 1, -1, 1);
    nn_tensor *w3 = tu_rand(3, c3, 1, -1, 1), *w4 = tu_rand(4, c4, 1, -1, 1);
    nn_tensor *x1row = tu_rand(5, one, 2, -1, 1), *emb = tu_rand(6, ws, 2, -1, 1);
    assert_null(nn_batch_norm(v, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_batch_norm: x must be [N, C, *] (at least 2-D), got [4]");
    assert_null(nn_batch_norm(x, NULL, NULL, w3, NULL, true, 0.1, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_batch_norm: weight has shape [3], expected [4]");
    assert_null(nn_batch_norm(x, w3, NULL, NULL, NULL, true, 0.1, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_batch_norm: running_mean has shape [3]");
    assert_null(nn_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5));
    tu_expect_error(NN_ERR_INVALID, "nn_batch_norm: running_mean and running_var are required in eval mode");
    assert_null(nn_batch_norm(x1row, NULL, NULL, NULL, NULL, true, 0.1, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_batch_norm: expected more than 1 value per channel when training");
    assert_null(nn_batch_norm(x, NULL, NULL, NULL, NULL, true, 1.5, 1e-5));
    tu_expect_error(NN_ERR_INVALID, "nn_batch_norm: eps");
    int64_t ns[] = {4, 4};
    assert_null(nn_layer_norm(x, ns, 2, NULL, NULL, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_layer_norm: x [2,4,3] does not end in normalized_shape [4,4]");
    assert_null(nn_layer_norm(x, ns, 4, NULL, NULL, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_layer_norm: normalized_shape has 4 dims");
    assert_null(nn_layer_norm(x, c3, 1, w4, NULL, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_layer_norm: weight has shape [4], expected normalized_shape [3]");
    assert_null(nn_group_norm(x, 3, NULL, NULL, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_group_norm: groups = 3 must be >= 1 and divide the 4 channels");
    assert_null(nn_group_norm(x, 2, w3, NULL, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_group_norm: weight has shape [3]");
    assert_null(nn_dropout(x, 1.5, true, NULL));
    tu_expect_error(NN_ERR_INVALID, "nn_dropout: p = 1.5");
    assert_null(nn_dropout(NULL, 0.5, true, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_dropout");
    int64_t is[] = {3};
    const int64_t bad[] = {1, 5, 0}, neg[] = {0, -1, 2};
    nn_tensor *ib = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, is, 1, bad));
    nn_tensor *in = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, is, 1, neg));
    nn_tensor *fi = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, is, 1));
    assert_null(nn_embedding(emb, ib));
    tu_expect_error(NN_ERR_RANGE, "nn_embedding: index 5 at position 1 is out of range [0, 5)");
    assert_null(nn_embedding(emb, in));
    tu_expect_error(NN_ERR_RANGE, "nn_embedding: index -1 at position 1");
    assert_null(nn_embedding(emb, fi));
    tu_expect_error(NN_ERR_DTYPE, "nn_embedding: indices have dtype f32, expected i64");
    assert_null(nn_embedding(v, ib));
    tu_expect_error(NN_ERR_SHAPE, "nn_embedding: weight must be 2-D");
    nn_tensor *ii = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, xs, 3));
    assert_null(nn_group_norm(ii, 2, NULL, NULL, 1e-5));
    tu_expect_error(NN_ERR_DTYPE, "nn_group_norm: argument 'x' has dtype i64");
    nn_tensor *objs[] = {x, v, w3, w4, x1row, emb, ib, in, fi, ii};
    th_free_all(objs, 10);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_norm_grad),    cmocka_unit_test(test_batch_norm_running_stats),
        cmocka_unit_test(test_batch_norm_golden),  cmocka_unit_test(test_layer_norm_grad),
        cmocka_unit_test(test_group_norm_grad),    cmocka_unit_test(test_ln_gn_golden),
        cmocka_unit_test(test_dropout_grad),       cmocka_unit_test(test_dropout_statistics),
        cmocka_unit_test(test_embedding_grad),     cmocka_unit_test(test_embedding_golden),
        cmocka_unit_test(test_embedding_tied_grad),
        cmocka_unit_test(test_norm_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
