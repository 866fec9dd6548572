/* Attention and transformer ops: scaled dot-product attention against
 * PyTorch golden values (tests/golden/make_golden_attention.py) and against
 * a naive double-precision implementation whose gradients are taken by
 * central differences in double; thread-count invariance, strided inputs,
 * dropout, errors and an allocation-failure sweep. */
#include "nn_testhelp.h"
#include "nn_internal.h"
#include "ops/attention_internal.h"

#include <stdlib.h>

/* ------------------------------------------------- double reference SDPA */

/* A naive attention in double: q [nb, tq, d], k [nb, tk, d], v [nb, tk, dv],
 * add (NULL or [nb, tq, tk], -inf for hidden keys) added to the scores.
 * Dropout factors from the op's own counter-based pattern. */
typedef struct {
    int64_t nb, tq, tk, d, dv;
    bool causal;
    double scale; /* resolved, > 0 */
    double p;     /* dropout */
    uint64_t seed;
} ref_cfg;

static void ref_sdpa(const ref_cfg *c, const double *q, const double *k, const double *v,
                     const double *add, double *out) {
    double *s = malloc(sizeof(double) * (size_t)c->tk);
    const uint32_t thr = nn__sdpa_threshold(c->p);
    const float ks = c->p < 1.0 ? (float)(1.0 / (1.0 - c->p)) : 0.0f;
    for (int64_t b = 0; b < c->nb; b++)
        for (int64_t i = 0; i < c->tq; i++) {
            double mx = -INFINITY;
            for (int64_t j = 0; j < c->tk; j++) {
                double acc = 0.0;
                for (int64_t e = 0; e < c->d; e++)
                    acc += q[(b * c->tq + i) * c->d + e] * k[(b * c->tk + j) * c->d + e];
                acc *= c->scale;
                if (add) acc += add[(b * c->tq + i) * c->tk + j];
                if (c->causal && j > i) acc = -INFINITY;
                s[j] = acc;
                if (acc > mx) mx = acc;
            }
            double sum = 0.0;
            for (int64_t j = 0; j < c->tk; j++) {
                s[j] = mx == -INFINITY ? 0.0 : exp(s[j] - mx);
                sum += s[j];
            }
            for (int64_t e = 0; e < c->dv; e++) {
                double o = 0.0;
                for (int64_t j = 0; j < c->tk; j++) {
                    double z = c->p > 0.0 ? nn__sdpa_dropout(c->seed, b, i, j, c->tq, c->tk, thr, ks)
                                          : 1.0;
                    o += s[j] * z * v[(b * c->tk + j) * c->dv + e];
                }
                out[(b * c->tq + i) * c->dv + e] = sum > 0.0 ? o / sum : 0.0;
            }
        }
    free(s);
}

static double *to_double(nn_tensor *t) {
    nn_tensor *c = nn_tensor_contiguous(t);
    int64_t n = nn_tensor_numel(c);
    double *d = malloc(sizeof(double) * (size_t)(n ? n : 1));
    const float *f = nn_tensor_data(c);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    nn_tensor_free(c);
    return d;
}

/* A case for the double check: shapes, options, and which mask. */
typedef struct {
    int64_t nb, tq, tk, d, dv;
    bool causal;
    int mask; /* 0 none, 1 bool (u8), 2 float additive (requires grad) */
    double scale, p;
    int hide_row; /* >= 0: hide every key from this query row (bool mask) */
    int samples;  /* elements checked per input by differences (0: all) */
} dcase;

static nn_tensor *make_u8(uint64_t seed, const int64_t *shape, int nd, double keep, int hide_row,
                          int64_t tq, int64_t tk) {
    nn_tensor *m = TU_NN(nn_tensor_empty(NN_DTYPE_U8, shape, nd));
    uint8_t *p = nn_tensor_data(m);
    nn_generator *g = nn_generator_new(seed);
    int64_t n = nn_tensor_numel(m);
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i % tk, r = (i / tk) % tq;
        p[i] = (uint8_t)(j == 0 || (double)(nn_generator_next(g) >> 11) * 0x1.0p-53 < keep);
        if (r == hide_row) p[i] = 0;
    }
    nn_generator_free(g);
    return m;
}

static void run_dcase(const dcase *dc, uint64_t seed) {
    const int64_t qs[] = {dc->nb, dc->tq, dc->d}, ks[] = {dc->nb, dc->tk, dc->d},
                  vs[] = {dc->nb, dc->tk, dc->dv}, ms[] = {dc->nb, dc->tq, dc->tk};
    nn_tensor *q = th_param(seed, qs, 3), *k = th_param(seed + 1, ks, 3),
              *v = th_param(seed + 2, vs, 3), *mask = NULL;
    if (dc->mask == 1) mask = make_u8(seed + 3, ms, 3, 0.6, dc->hide_row, dc->tq, dc->tk);
    if (dc->mask == 2) mask = th_param(seed + 3, ms, 3);
    const uint64_t gseed = 99 + seed;
    nn_generator *gen = nn_generator_new(gseed);
    nn_tensor *out = TU_NN(nn_scaled_dot_product_attention(q, k, v, mask, dc->causal, dc->p,
                                                           dc->scale, gen));
    nn_generator_free(gen);
    gen = nn_generator_new(gseed);
    ref_cfg c = {dc->nb, dc->tq, dc->tk, dc->d, dc->dv, dc->causal,
                 dc->scale > 0 ? dc->scale : 1.0 / sqrt((double)dc->d), dc->p,
                 dc->p > 0 ? nn_generator_next(gen) : 0};
    nn_generator_free(gen);

    /* inputs in double; a bool mask becomes 0 / -inf */
    double *in[4] = {to_double(q), to_double(k), to_double(v), NULL};
    const int64_t nin[4] = {dc->nb * dc->tq * dc->d, dc->nb * dc->tk * dc->d,
                            dc->nb * dc->tk * dc->dv, dc->nb * dc->tq * dc->tk};
    if (dc->mask == 1) {
        const uint8_t *m = nn_tensor_data(mask);
        in[3] = malloc(sizeof(double) * (size_t)nin[3]);
        for (int64_t i = 0; i < nin[3]; i++) in[3][i] = m[i] ? 0.0 : -INFINITY;
    } else if (dc->mask == 2) {
        in[3] = to_double(mask);
    }
    const int64_t no = dc->nb * dc->tq * dc->dv;
    double *ref = malloc(sizeof(double) * (size_t)no), *r2 = malloc(sizeof(double) * (size_t)no);
    ref_sdpa(&c, in[0], in[1], in[2], in[3], ref);
    const float *o = nn_tensor_data(out);
    for (int64_t i = 0; i < no; i++)
        if (!(fabs(o[i] - ref[i]) <= 1e-5 + 1e-4 * fabs(ref[i])))
            fail_msg("sdpa forward element %lld: %.8g vs double %.8g", (long long)i, o[i], ref[i]);

    /* analytic gradients of L = Σ out · R */
    double *R = malloc(sizeof(double) * (size_t)no);
    float *Rf = malloc(sizeof(float) * (size_t)no);
    nn_generator *rg = nn_generator_new(seed + 7);
    for (int64_t i = 0; i < no; i++) {
        Rf[i] = (float)((double)(nn_generator_next(rg) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
        R[i] = Rf[i];
    }
    nn_generator_free(rg);
    nn_tensor *rt = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, nn_tensor_shape(out), 3, Rf));
    TU_OK(nn_backward_ex(out, rt, false));

    /* central differences of the double reference */
    nn_tensor *const leaf[4] = {q, k, v, dc->mask == 2 ? mask : NULL};
    nn_generator *pick = nn_generator_new(seed + 11);
    for (int a = 0; a < 4; a++) {
        if (!leaf[a]) continue;
        const float *ga = nn_tensor_data(nn_tensor_grad(leaf[a]));
        const int64_t checks = dc->samples ? dc->samples : nin[a];
        for (int64_t t = 0; t < checks; t++) {
            const int64_t i = dc->samples ? (int64_t)(nn_generator_next(pick) % (uint64_t)nin[a]) : t;
            const double x0 = in[a][i], h = 1e-6;
            double f[2];
            for (int s = 0; s < 2; s++) {
                in[a][i] = x0 + (s ? -h : h);
                ref_sdpa(&c, in[0], in[1], in[2], in[3], r2);
                f[s] = 0.0;
                for (int64_t e = 0; e < no; e++) f[s] += r2[e] * R[e];
            }
            in[a][i] = x0;
            const double num = (f[0] - f[1]) / (2 * h);
            if (!(fabs(ga[i] - num) <= 2e-5 + 1e-3 * fabs(num)))
                fail_msg("sdpa input %d element %lld: analytic %.8g vs numeric %.8g", a,
                         (long long)i, ga[i], num);
        }
    }
    nn_generator_free(pick);
    if (dc->hide_row >= 0) /* a row that sees nothing: zeros out, zero gradient */
        for (int64_t b = 0; b < dc->nb; b++)
            for (int64_t e = 0; e < dc->d; e++)
                assert_true(((const float *)nn_tensor_data(nn_tensor_grad(q)))
                                [(b * dc->tq + dc->hide_row) * dc->d + e] == 0.0f);
    for (int a = 0; a < 4; a++) free(in[a]);
    free(ref);
    free(r2);
    free(R);
    free(Rf);
    nn_tensor_free(rt);
    nn_tensor_free(out);
    nn_tensor_free(q);
    nn_tensor_free(k);
    nn_tensor_free(v);
    nn_tensor_free(mask);
}

static void test_sdpa_double_reference(void **s) {
    (void)s;
    const dcase cases[] = {
        /* nb tq tk d dv causal mask scale p hide samples */
        {2, 5, 7, 3, 4, false, 0, 0.0, 0.0, -1, 0},
        {1, 6, 4, 3, 2, true, 2, 0.0, 0.0, -1, 0},  /* causal Tq > Tk, float mask */
        {2, 3, 8, 4, 4, true, 0, 0.7, 0.0, -1, 0},  /* causal Tq < Tk, explicit scale */
        {2, 5, 6, 3, 3, false, 1, 0.0, 0.0, 2, 0},  /* bool mask, row 2 sees nothing */
        {2, 9, 9, 4, 3, false, 0, 0.0, 0.3, -1, 0}, /* dropout */
        {1, 7, 7, 2, 2, true, 2, 0.0, 0.5, -1, 0},  /* causal + float mask + dropout */
        /* several tiles (64 x 128) in both directions */
        {2, 130, 200, 5, 3, true, 1, 0.0, 0.2, 70, 25},
        {1, 200, 140, 3, 4, false, 2, 0.0, 0.0, -1, 25},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_dcase(&cases[i], 100 + 10 * i);
}

/* The f32 finite-difference harness too, on a small case. */
static nn_tensor *f_sdpa(nn_tensor **in, void *ctx) {
    const bool causal = ctx != NULL;
    return nn_scaled_dot_product_attention(in[0], in[1], in[2], in[3], causal, 0.0, 0.0, NULL);
}

static void test_sdpa_gradcheck_f32(void **s) {
    (void)s;
    int64_t qs[] = {2, 4, 3}, ks[] = {2, 5, 3}, vs[] = {2, 5, 2}, ms[] = {4, 5};
    nn_tensor *in[4] = {th_param(1, qs, 3), th_param(2, ks, 3), th_param(3, vs, 3),
                        th_param(4, ms, 2)};
    tu_gradcheck(f_sdpa, in, 4, NULL, 1e-3, 2e-3, 2e-2);
    tu_gradcheck(f_sdpa, in, 4, (void *)1, 1e-3, 2e-3, 2e-2);
    th_free_all(in, 4);
}

/* ------------------------------------------------------------ golden */

static nn_tensor *f_golden(nn_tensor **in, void *ctx) {
    const int64_t *p = ctx; /* causal, mask kind, scale * 1e6 */
    nn_tensor *mask = in[3];
    nn_scope *sc = NULL;
    if (p[1] == 1) { /* i64 0/1 -> u8 */
        sc = nn_scope_begin();
        nn_tensor *zero = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, NULL, 0));
        mask = TU_NN(nn_ne(in[3], zero));
    }
    nn_tensor *out = nn_scaled_dot_product_attention(in[0], in[1], in[2], mask, p[0] != 0, 0.0,
                                                     (double)p[2] * 1e-6, NULL);
    if (sc) {
        nn_tensor_retain(out);
        nn_scope_end(sc);
    }
    return out;
}

static void test_sdpa_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("attention.txt");
    int k;
    for (k = 0;; k++) {
        char cs[32];
        const int64_t *p;
        if (!th_golden_params(g, "sdpa", k, cs, sizeof cs, &p)) break;
        th_golden_case(g, cs, 4, f_golden, (void *)p, 1e-4, 2e-5);
    }
    assert_true(k >= 12);
    tu_golden_close(g);
}

/* ------------------------------------------------- threads, strides */

/* out and the gradients of q, k, v for the same inputs at 1, 2 and 3
 * threads: bit-identical. */
static void test_sdpa_thread_invariance(void **s) {
    (void)s;
    int64_t qs[] = {3, 200, 16}, ks[] = {3, 300, 16}, ms[] = {200, 300};
    nn_tensor *q = th_param(5, qs, 3), *k = th_param(6, ks, 3), *v = th_param(7, ks, 3);
    nn_tensor *mask = make_u8(8, ms, 2, 0.8, -1, 200, 300);
    float *ref[4] = {0};
    const int64_t n[4] = {3 * 200 * 16, 3 * 200 * 16, 3 * 300 * 16, 3 * 300 * 16};
    const int threads[] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        TU_OK(nn_set_num_threads(threads[t]));
        nn_tensor_zero_grad(q);
        nn_tensor_zero_grad(k);
        nn_tensor_zero_grad(v);
        nn_generator *gen = nn_generator_new(3);
        nn_scope *sc = nn_scope_begin();
        nn_tensor *out = TU_NN(nn_scaled_dot_product_attention(q, k, v, mask, true, 0.1, 0.0, gen));
        TU_OK(nn_backward(nn_sum(nn_mul(out, out), NULL, 0, false)));
        const float *got[4] = {nn_tensor_data(out), nn_tensor_data(nn_tensor_grad(q)),
                               nn_tensor_data(nn_tensor_grad(k)), nn_tensor_data(nn_tensor_grad(v))};
        for (int i = 0; i < 4; i++) {
            if (t == 0) {
                ref[i] = malloc(sizeof(float) * (size_t)n[i]);
                memcpy(ref[i], got[i], sizeof(float) * (size_t)n[i]);
            } else if (memcmp(ref[i], got[i], sizeof(float) * (size_t)n[i]) != 0) {
                fail_msg("sdpa result %d differs between 1 and %d threads", i, threads[t]);
            }
        }
        nn_scope_end(sc);
        nn_generator_free(gen);
    }
    TU_OK(nn_set_num_threads(1));
    for (int i = 0; i < 4; i++) free(ref[i]);
    nn_tensor_free(q);
    nn_tensor_free(k);
    nn_tensor_free(v);
    nn_tensor_free(mask);
}

/* q, k, v as strided views of one [B, T, 3, H, D] tensor (a fused QKV
 * projection), and k also with a non-unit last stride: the same values as
 * contiguous copies, and gradients flow back into the fused tensor. */
static void test_sdpa_strided_inputs(void **s) {
    (void)s;
    const int64_t B = 2, T = 70, H = 3, D = 8;
    int64_t xs[] = {B, T, 3, H, D};
    nn_tensor *x = th_param(9, xs, 5);
    nn_scope *sc = nn_scope_begin();
    int perm[] = {0, 2, 1, 3}; /* [B, T, H, D] -> [B, H, T, D] */
    nn_tensor *qkv[3], *cont[3];
    for (int i = 0; i < 3; i++) {
        nn_tensor *part = nn_squeeze(nn_slice(x, 2, i, i + 1, 1), 2);
        qkv[i] = TU_NN(nn_permute(part, perm, 4));
        assert_false(nn_tensor_is_contiguous(qkv[i]));
        cont[i] = TU_NN(nn_tensor_clone(qkv[i]));
        TU_OK(nn_tensor_set_requires_grad(cont[i], true));
    }
    /* k through a transpose of its last two dims: non-unit last stride */
    nn_tensor *kt = TU_NN(nn_transpose(nn_tensor_clone(nn_transpose(qkv[1], 2, 3)), 2, 3));
    nn_tensor *a = TU_NN(nn_scaled_dot_product_attention(qkv[0], kt, qkv[2], NULL, true, 0.0, 0.0, NULL));
    nn_tensor *b = TU_NN(nn_scaled_dot_product_attention(cont[0], cont[1], cont[2], NULL, true, 0.0, 0.0, NULL));
    tu_assert_close(a, b, 1e-6, 1e-7, "strided vs contiguous");
    TU_OK(nn_backward(nn_sum(a, NULL, 0, false)));
    TU_OK(nn_backward(nn_sum(b, NULL, 0, false)));
    /* dq and dv reach x through the views; compare with the contiguous grads */
    nn_tensor *gx = nn_tensor_grad(x);
    const int which[] = {0, 2};
    for (int w = 0; w < 2; w++) {
        int i = which[w];
        nn_tensor *gpart = nn_permute(nn_squeeze(nn_slice(gx, 2, i, i + 1, 1), 2), perm, 4);
        tu_assert_close(gpart, nn_tensor_grad(cont[i]), 1e-5, 1e-6, "strided grad");
    }
    nn_scope_end(sc); /* owns the views and the contiguous copies */
    nn_tensor_free(x);
}

/* ------------------------------------------------------------ dropout */

static void test_sdpa_dropout(void **s) {
    (void)s;
    int64_t qs[] = {2, 40, 4}, vs[] = {2, 50, 4};
    nn_tensor *q = tu_rand(1, qs, 3, -1, 1), *k = tu_rand(2, vs, 3, -1, 1);
    nn_tensor *v = TU_NN(nn_tensor_ones(NN_DTYPE_F32, vs, 3));
    nn_scope *sc = nn_scope_begin();
    /* same generator seed -> same output; the draw advances the generator */
    nn_generator *g1 = nn_generator_new(5), *g2 = nn_generator_new(5);
    nn_tensor *a = TU_NN(nn_scaled_dot_product_attention(q, k, v, NULL, false, 0.4, 0.0, g1));
    nn_tensor *b = TU_NN(nn_scaled_dot_product_attention(q, k, v, NULL, false, 0.4, 0.0, g2));
    assert_true(nn_tensor_equal(a, b));
    nn_tensor *c = TU_NN(nn_scaled_dot_product_attention(q, k, v, NULL, false, 0.4, 0.0, g1));
    assert_false(nn_tensor_equal(a, c));
    /* with v = 1 each output is Σ_j P_ij Z_ij: mean over rows ~ 1 */
    double m = nn_tensor_item(nn_mean(a, NULL, 0, false));
    assert_true(fabs(m - 1.0) < 0.05);
    /* p = 0 leaves the generator alone and equals no dropout */
    nn_generator_next(g2);
    nn_generator *g3 = nn_generator_new(5);
    nn_generator_next(g3);
    nn_generator_next(g3);
    nn_tensor *d = TU_NN(nn_scaled_dot_product_attention(q, k, v, NULL, false, 0.0, 0.0, g3));
    assert_true(nn_generator_next(g3) == nn_generator_next(g2));
    nn_tensor *e = TU_NN(nn_scaled_dot_product_attention(q, k, v, NULL, false, 0.0, 0.0, NULL));
    assert_true(nn_tensor_equal(d, e));
    /* p = 1 drops everything */
    nn_tensor *z = TU_NN(nn_scaled_dot_product_attention(q, k, v, NULL, false, 1.0, 0.0, g1));
    assert_true(nn_tensor_item(nn_sum(nn_abs(z), NULL, 0, false)) == 0.0);
    /* the pattern keeps about 1 - p of the weights */
    long kept = 0, total = 0;
    const uint32_t thr = nn__sdpa_threshold(0.3);
    for (int64_t i = 0; i < 100; i++)
        for (int64_t j = 0; j < 1000; j++, total++)
            kept += nn__sdpa_dropout(42, 1, i, j, 100, 1000, thr, 1.0f) != 0.0f;
    assert_true(fabs((double)kept / (double)total - 0.7) < 0.01);
    nn_scope_end(sc);
    nn_generator_free(g1);
    nn_generator_free(g2);
    nn_generator_free(g3);
    nn_tensor_free(q);
    nn_tensor_free(k);
    nn_tensor_free(v);
}

/* ------------------------------------------------ packed q, k, v (GPT) */

/* nn__sdpa_packed (the GPT module's attention over its fused projection)
 * against nn_scaled_dot_product_attention on the [B, H, T, D] views of the
 * same tensor: outputs and the gradient of the packed tensor, causal or
 * not, with dropout (the same pattern for the same generator seed), with
 * one key tile (dq written in pass A) and with several (pass B). */
static void test_sdpa_packed(void **s) {
    (void)s;
    const int64_t B = 2, H = 3, D = 8, C = H * D;
    const int64_t Ts[] = {70, 200};
    for (int ti = 0; ti < 2; ti++)
        for (int mode = 0; mode < 3; mode++) {
            const int64_t T = Ts[ti];
            const bool causal = mode != 1;
            const double p = mode == 2 ? 0.3 : 0.0;
            int64_t xs[] = {B, T, 3 * C}, os[] = {B, T, C}, x5[] = {B, T, 3, H, D};
            nn_tensor *x = th_param(31, xs, 3), *x2 = th_param(31, xs, 3);
            nn_tensor *w = tu_rand(32, os, 3, -1, 1);
            nn_scope *sc = nn_scope_begin();
            nn_generator *g1 = nn_generator_new(9), *g2 = nn_generator_new(9);
            nn_tensor *a = TU_NN(nn__sdpa_packed(x, H, causal, p, g1));
            const int perm5[] = {2, 0, 3, 1, 4}, perm4[] = {0, 2, 1, 3};
            nn_tensor *v5 = nn_permute(nn_reshape(x2, x5, 5), perm5, 5);
            nn_tensor *q = nn_squeeze(nn_slice(v5, 0, 0, 1, 1), 0);
            nn_tensor *k = nn_squeeze(nn_slice(v5, 0, 1, 2, 1), 0);
            nn_tensor *v = nn_squeeze(nn_slice(v5, 0, 2, 3, 1), 0);
            nn_tensor *b = TU_NN(nn_reshape(
                nn_permute(nn_scaled_dot_product_attention(q, k, v, NULL, causal, p, 0.0, g2),
                           perm4, 4),
                os, 3));
            tu_assert_close(a, b, 1e-6, 1e-7, "packed vs views");
            TU_OK(nn_backward(nn_sum(nn_mul(a, w), NULL, 0, false)));
            TU_OK(nn_backward(nn_sum(nn_mul(b, w), NULL, 0, false)));
            tu_assert_close(nn_tensor_grad(x), nn_tensor_grad(x2), 1e-5, 1e-6,
                            "packed grad vs views");
            nn_scope_end(sc);
            nn_generator_free(g1);
            nn_generator_free(g2);
            nn_tensor_free(x);
            nn_tensor_free(x2);
            nn_tensor_free(w);
        }
    /* shapes it refuses */
    int64_t bad[] = {2, 5, 10}, two[] = {5, 12};
    nn_tensor *x = tu_rand(1, bad, 3, -1, 1), *y = tu_rand(1, two, 2, -1, 1);
    assert_null(nn__sdpa_packed(x, 2, true, 0.0, NULL)); /* 10 is not 3 x 2k */
    assert_int_equal(nn_last_status(), NN_ERR_SHAPE);
    assert_null(nn__sdpa_packed(y, 1, true, 0.0, NULL));
    assert_int_equal(nn_last_status(), NN_ERR_SHAPE);
    assert_null(nn__sdpa_packed(y, 0, true, 0.0, NULL));
    assert_null(nn__sdpa_packed(NULL, 1, true, 0.0, NULL));
    nn_tensor_free(x);
    nn_tensor_free(y);
}

/* ------------------------------------------------------------- errors */

static void test_sdpa_errors(void **s) {
    (void)s;
    nn_scope *sc = nn_scope_begin();
    int64_t qs[] = {2, 3, 4}, ks[] = {2, 5, 4}, bad[] = {2, 5, 3}, vs5[] = {2, 6, 4}, bs[] = {3, 3, 4};
    nn_tensor *q = tu_rand(1, qs, 3, -1, 1), *k = tu_rand(2, ks, 3, -1, 1);
    nn_tensor *kb = tu_rand(3, bad, 3, -1, 1), *v6 = tu_rand(4, vs5, 3, -1, 1);
    nn_tensor *qb = tu_rand(5, bs, 3, -1, 1);
    assert_null(nn_scaled_dot_product_attention(q, kb, k, NULL, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_SHAPE, "nn_scaled_dot_product_attention: q [2,3,4], k [2,5,3]");
    assert_null(nn_scaled_dot_product_attention(q, k, v6, NULL, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_SHAPE, "v [2,6,4] do not match");
    assert_null(nn_scaled_dot_product_attention(qb, k, k, NULL, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_SHAPE, "cannot be broadcast");
    int64_t s1[] = {4};
    nn_tensor *one = tu_rand(6, s1, 1, -1, 1);
    assert_null(nn_scaled_dot_product_attention(one, k, k, NULL, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_SHAPE, "must have at least 2 dims");
    int64_t m1[] = {3, 4}, m2[] = {3, 5};
    nn_tensor *mbad = tu_rand(7, m1, 2, -1, 1);
    assert_null(nn_scaled_dot_product_attention(q, k, k, mbad, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_SHAPE, "attn_mask [3,4] does not broadcast to [2,3,5]");
    nn_tensor *mi = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, m2, 2));
    assert_null(nn_scaled_dot_product_attention(q, k, k, mi, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_DTYPE, "attn_mask has dtype i64");
    assert_null(nn_scaled_dot_product_attention(q, k, k, NULL, false, 1.5, 0, NULL));
    tu_expect_error(NN_ERR_INVALID, "dropout_p = 1.5");
    assert_null(nn_scaled_dot_product_attention(q, k, k, NULL, false, NAN, 0, NULL));
    tu_expect_error(NN_ERR_INVALID, "dropout_p = nan");
    assert_null(nn_scaled_dot_product_attention(q, k, k, NULL, false, 0, INFINITY, NULL));
    tu_expect_error(NN_ERR_INVALID, "scale = inf");
    assert_null(nn_scaled_dot_product_attention(NULL, k, k, NULL, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_NULL, "'q'");
    nn_tensor *qi = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, qs, 3));
    assert_null(nn_scaled_dot_product_attention(qi, k, k, NULL, false, 0, 0, NULL));
    tu_expect_error(NN_ERR_DTYPE, "nn_scaled_dot_product_attention");
    /* a tensor handle is not a generator */
    assert_null(nn_scaled_dot_product_attention(q, k, k, NULL, false, 0.5, 0, (nn_generator *)q));
    tu_expect_error(NN_ERR_BAD_HANDLE, "nn_scaled_dot_product_attention");
    /* empty sizes are fine: Tk = 0 gives zeros, D = 0 too */
    int64_t e0[] = {2, 0, 4}, d0[] = {2, 3, 0}, dk0[] = {2, 5, 0};
    nn_tensor *k0 = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, e0, 3));
    nn_tensor *o = TU_NN(nn_scaled_dot_product_attention(q, k0, k0, NULL, false, 0, 0, NULL));
    assert_true(nn_tensor_item(nn_sum(nn_abs(o), NULL, 0, false)) == 0.0);
    nn_tensor *qd = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, d0, 3)), *kd = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, dk0, 3));
    o = TU_NN(nn_scaled_dot_product_attention(qd, kd, k, NULL, false, 0, 0, NULL));
    assert_int_equal(nn_tensor_shape(o)[2], 4);
    nn_scope_end(sc);
}

/* ------------------------------------------------------------ OOM sweep */

static int oom_body(void *ctx) {
    (void)ctx;
    nn_scope *sc = nn_scope_begin();
    if (!sc) return 1;
    int rc = 1;
    int64_t qs[] = {2, 70, 4}, ms[] = {70, 130}, ks[] = {2, 130, 4};
    nn_tensor *q = nn_tensor_ones(NN_DTYPE_F32, qs, 3), *k = nn_tensor_ones(NN_DTYPE_F32, ks, 3);
    nn_tensor *m = nn_tensor_zeros(NN_DTYPE_F32, ms, 2);
    if (!q || !k || !m || nn_tensor_set_requires_grad(q, true) ||
        nn_tensor_set_requires_grad(k, true) || nn_tensor_set_requires_grad(m, true))
        goto out;
    nn_tensor *y = nn_scaled_dot_product_attention(q, k, k, m, true, 0.1, 0.0, NULL);
    nn_tensor *loss = nn_sum(y, NULL, 0, false);
    if (!loss || nn_backward(loss) != NN_OK) goto out;
    rc = 0;
out:
    nn_scope_end(sc);
    return rc;
}

static void test_sdpa_oom_sweep(void **s) {
    (void)s;
    long sites = tu_oom_sweep(oom_body, NULL);
    assert_true(sites > 8);
}


/* ------------------------------------------------------------------ rope */

/* Direct formula in double: rows of D at position pos[row]. */
static void rope_ref(const float *x, const int64_t *pos, int64_t rows, int64_t d, int64_t rd,
                     double base, double *y) {
    const int64_t h = rd / 2;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < d; j++) {
            if (j >= rd) {
                y[r * d + j] = x[r * d + j];
                continue;
            }
            const int64_t k = j < h ? j : j - h;
            const double a = (double)pos[r] / pow(base, 2.0 * (double)k / (double)rd);
            const double x1 = x[r * d + k], x2 = x[r * d + k + h];
            y[r * d + j] = j < h ? x1 * cos(a) - x2 * sin(a) : x2 * cos(a) + x1 * sin(a);
        }
}

typedef struct {
    nn_tensor *pos;
    int64_t offset, rd;
    double base;
} rope_cfg;

static nn_tensor *f_rope(nn_tensor **in, void *ctx) {
    const rope_cfg *c = ctx;
    return nn_rope(in[0], c->pos, c->offset, c->base, c->rd);
}

static void test_rope(void **s) {
    (void)s;
    const int64_t B = 2, H = 3, T = 5, D = 8;
    int64_t xs[] = {B, H, T, D};
    nn_tensor *x = th_param(21, xs, 4);
    const float *xd = nn_tensor_data(x);
    const int64_t rows = B * H * T;
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)rows);
    double *want = malloc(sizeof(double) * (size_t)(rows * D));
    /* implicit positions offset + t, full and partial rotary dims */
    const int64_t rds[] = {0, 4};
    for (int v = 0; v < 2; v++) {
        const int64_t rd = rds[v] ? rds[v] : D;
        for (int64_t r = 0; r < rows; r++) pos[r] = 1000 + r % T;
        rope_ref(xd, pos, rows, D, rd, 10000.0, want);
        nn_tensor *y = TU_NN(nn_rope(x, NULL, 1000, 10000.0, rds[v]));
        const float *yd = nn_tensor_data(y);
        for (int64_t i = 0; i < rows * D; i++)
            if (fabs(yd[i] - want[i]) > 1e-6 + 1e-5 * fabs(want[i]))
                fail_msg("rope element %lld: %.8g vs %.8g", (long long)i, yd[i], want[i]);
        nn_tensor_free(y);
    }
    /* explicit positions [B, 1, T] broadcast over heads, base 500 */
    int64_t ps[] = {B, 1, T};
    nn_tensor *pt = TU_NN(nn_tensor_empty(NN_DTYPE_I64, ps, 3));
    int64_t *pp = nn_tensor_data(pt);
    for (int64_t i = 0; i < B * T; i++) pp[i] = (i * 7) % 11;
    for (int64_t r = 0; r < rows; r++) pos[r] = 3 + pp[(r / (H * T)) * T + r % T];
    rope_ref(xd, pos, rows, D, D, 500.0, want);
    nn_tensor *y = TU_NN(nn_rope(x, pt, 3, 500.0, 0));
    const float *yd = nn_tensor_data(y);
    for (int64_t i = 0; i < rows * D; i++)
        if (fabs(yd[i] - want[i]) > 1e-6 + 1e-5 * fabs(want[i]))
            fail_msg("rope (positions) element %lld: %.8g vs %.8g", (long long)i, yd[i], want[i]);
    nn_tensor_free(y);
    /* gradients */
    rope_cfg c1 = {NULL, 7, 0, 10000.0}, c2 = {pt, 0, 4, 100.0};
    nn_tensor *in[1] = {x};
    tu_gradcheck(f_rope, in, 1, &c1, 1e-3, 1e-3, 1e-2);
    tu_gradcheck(f_rope, in, 1, &c2, 1e-3, 1e-3, 1e-2);
    /* errors */
    assert_null(nn_rope(x, NULL, 0, 10000.0, 3));
    tu_expect_error(NN_ERR_INVALID, "nn_rope: rotary_dim 3 must be even");
    assert_null(nn_rope(x, NULL, 0, -1.0, 0));
    tu_expect_error(NN_ERR_INVALID, "nn_rope: base -1");
    int64_t bad[] = {4};
    nn_tensor *pb = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, bad, 1));
    assert_null(nn_rope(x, pb, 0, 10000.0, 0));
    tu_expect_error(NN_ERR_SHAPE, "nn_rope: positions [4] does not broadcast to x's rows [2,3,5]");
    nn_tensor_free(pb);
    free(pos);
    free(want);
    nn_tensor_free(pt);
    nn_tensor_free(x);
}

/* ------------------------------------------------------------- rms_norm */

typedef struct {
    const int64_t *ns;
    int n;
    double eps;
} rms_cfg;

static nn_tensor *f_rms(nn_tensor **in, void *ctx) {
    const rms_cfg *c = ctx;
    return nn_rms_norm(in[0], c->ns, c->n, in[1], c->eps);
}

static void test_rms_norm(void **s) {
    (void)s;
    int64_t xs[] = {3, 4, 6}, ws[] = {4, 6};
    nn_tensor *x = th_param(31, xs, 3), *w = th_param(32, ws, 2);
    const float *xd = nn_tensor_data(x), *wd = nn_tensor_data(w);
    /* over the last two dims, with weight */
    nn_tensor *y = TU_NN(nn_rms_norm(x, ws, 2, w, 1e-5));
    const float *yd = nn_tensor_data(y);
    for (int r = 0; r < 3; r++) {
        double ms = 0;
        for (int j = 0; j < 24; j++) ms += (double)xd[r * 24 + j] * xd[r * 24 + j] / 24.0;
        for (int j = 0; j < 24; j++) {
            double want = xd[r * 24 + j] / sqrt(ms + 1e-5) * wd[j];
            if (fabs(yd[r * 24 + j] - want) > 1e-5 * (1 + fabs(want)))
                fail_msg("rms_norm element %d: %.8g vs %.8g", r * 24 + j, yd[r * 24 + j], want);
        }
    }
    nn_tensor_free(y);
    rms_cfg c1 = {ws, 2, 1e-5}, c2 = {ws + 1, 1, 0.1};
    nn_tensor *in[2] = {x, w};
    tu_gradcheck(f_rms, in, 2, &c1, 1e-3, 2e-3, 1e-2);
    nn_tensor *in2[2] = {x, NULL};
    tu_gradcheck(f_rms, in2, 2, &c2, 1e-3, 2e-3, 1e-2);
    assert_null(nn_rms_norm(x, ws + 1, 1, w, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_rms_norm: weight [4,6] must have the shape normalized_shape [6]");
    int64_t bad[] = {5};
    assert_null(nn_rms_norm(x, bad, 1, NULL, 1e-5));
    tu_expect_error(NN_ERR_SHAPE, "nn_rms_norm: x [3,4,6] does not end in normalized_shape [5]");
    assert_null(nn_rms_norm(x, ws, 2, NULL, -1.0));
    tu_expect_error(NN_ERR_INVALID, "nn_rms_norm: eps -1");
    nn_tensor_free(x);
    nn_tensor_free(w);
}

/* -------------------------------------------- mask ops, sin/cos golden */

static nn_tensor *u8_of(nn_tensor *t) {
    nn_tensor *zero = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, NULL, 0));
    nn_tensor *m = TU_NN(nn_ne(t, zero));
    nn_tensor_free(zero);
    return m;
}

static nn_tensor *f_masked_fill(nn_tensor **in, void *ctx) {
    const int64_t *p = ctx;
    nn_tensor *m = u8_of(in[1]);
    nn_tensor *out = nn_masked_fill(in[0], m, (double)p[0] * 1e-6);
    nn_tensor_free(m);
    return out;
}

static nn_tensor *f_masked_select(nn_tensor **in, void *ctx) {
    (void)ctx;
    nn_tensor *m = u8_of(in[1]);
    nn_tensor *out = nn_masked_select(in[0], m);
    nn_tensor_free(m);
    return out;
}

static nn_tensor *f_one_hot(nn_tensor **in, void *ctx) {
    return nn_one_hot(in[0], ((const int64_t *)ctx)[0]);
}

static nn_tensor *f_sin(nn_tensor **in, void *ctx) { return ctx ? nn_cos(in[0]) : nn_sin(in[0]); }

static nn_tensor *f_cmp(nn_tensor **in, void *ctx) {
    const int64_t *p = ctx;
    nn_tensor *(*const fns[])(nn_tensor *, double) = {nn_eq_scalar, nn_ne_scalar, nn_lt_scalar,
                                                      nn_le_scalar, nn_gt_scalar, nn_ge_scalar};
    nn_tensor *r = fns[p[0]](in[0], (double)p[1] * 1e-6);
    if (!r) return NULL;
    assert_int_equal(nn_tensor_dtype(r), NN_DTYPE_U8);
    nn_tensor *w = nn_tensor_to(r, NN_DTYPE_I64); /* golden masks are i64 */
    nn_tensor_free(r);
    return w;
}

static void golden_family(tu_golden *g, const char *prefix, int nin, th_fn fn, int min_cases) {
    int k;
    for (k = 0;; k++) {
        char cs[48], nm[64];
        snprintf(cs, sizeof cs, "%s_%d", prefix, k);
        snprintf(nm, sizeof nm, "%s_out", cs);
        if (!tu_golden_has(g, nm)) break;
        snprintf(nm, sizeof nm, "%s_params", cs);
        int64_t np = 0;
        const int64_t *p = tu_golden_has(g, nm) ? th_params(g, nm, &np) : NULL;
        th_golden_case(g, cs, nin, fn, (void *)p, 1e-5, 1e-6);
    }
    if (k < min_cases) fail_msg("golden family %s: %d cases, expected %d", prefix, k, min_cases);
}

static void test_mask_ops_golden(void **s) {
    (void)s;
    tu_golden *g = tu_golden_open("attention.txt");
    golden_family(g, "masked_fill", 2, f_masked_fill, 3);
    golden_family(g, "masked_select", 2, f_masked_select, 2);
    golden_family(g, "one_hot", 1, f_one_hot, 2);
    golden_family(g, "sin", 1, f_sin, 1);
    golden_family(g, "cmp_scalar", 1, f_cmp, 30);
    /* cos: ctx non-NULL selects cos in f_sin */
    th_golden_case(g, "cos_0", 1, f_sin, (void *)1, 1e-5, 1e-6);
    tu_golden_close(g);
}

static nn_tensor *f_sel_grad(nn_tensor **in, void *ctx) {
    return ctx ? nn_masked_select(in[0], ctx) : nn_sin(in[0]);
}

static void test_mask_ops_grad_and_errors(void **s) {
    (void)s;
    int64_t xs[] = {3, 4}, ms[] = {2, 3, 4};
    nn_tensor *x = th_param(41, xs, 2);
    nn_tensor *m = make_u8(42, ms, 3, 0.5, -1, 3, 4);
    nn_tensor *in[1] = {x};
    tu_gradcheck(f_sel_grad, in, 1, m, 1e-3, 1e-3, 1e-2);
    tu_gradcheck(f_sel_grad, in, 1, NULL, 1e-3, 1e-3, 1e-2);
    nn_scope *sc = nn_scope_begin();
    assert_null(nn_masked_fill(x, x, 0));
    tu_expect_error(NN_ERR_DTYPE, "nn_masked_fill: argument 'mask' has dtype f32, expected u8");
    assert_null(nn_masked_fill(x, m, 0));
    tu_expect_error(NN_ERR_SHAPE, "nn_masked_fill: mask [2,3,4] must broadcast to x [3,4]");
    int64_t is[] = {3};
    nn_tensor *idx = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, is, 1));
    TU_OK(nn_tensor_fill(idx, 4));
    assert_null(nn_one_hot(idx, 3));
    tu_expect_error(NN_ERR_RANGE, "nn_one_hot: index 4 is out of range for 3 classes");
    TU_OK(nn_tensor_fill(idx, -1));
    assert_null(nn_one_hot(idx, 3));
    tu_expect_error(NN_ERR_RANGE, "nn_one_hot: index -1");
    assert_null(nn_one_hot(x, 3));
    tu_expect_error(NN_ERR_DTYPE, "nn_one_hot: indices has dtype f32");
    /* i64 comparisons are exact beyond 2^53 */
    int64_t big = ((int64_t)1 << 60) + 1;
    nn_tensor *bt = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, is, 1, (int64_t[]){big, big - 1, 0}));
    nn_tensor *eq = TU_NN(nn_gt_scalar(bt, (double)((int64_t)1 << 60)));
    const uint8_t *e = nn_tensor_data(eq);
    assert_true(e[0] == 1 && e[1] == 0 && e[2] == 0);
    nn_scope_end(sc);
    nn_tensor_free(x);
    nn_tensor_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdpa_double_reference),
        cmocka_unit_test(test_sdpa_gradcheck_f32),
        cmocka_unit_test(test_sdpa_golden),
        cmocka_unit_test(test_sdpa_thread_invariance),
        cmocka_unit_test(test_sdpa_strided_inputs),
        cmocka_unit_test(test_sdpa_dropout),
        cmocka_unit_test(test_sdpa_packed),
        cmocka_unit_test(test_sdpa_errors),
        cmocka_unit_test(test_sdpa_oom_sweep),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rms_norm),
        cmocka_unit_test(test_mask_ops_golden),
        cmocka_unit_test(test_mask_ops_grad_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
