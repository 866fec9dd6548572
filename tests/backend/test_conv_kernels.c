/* The direct convolution kernels (conv table: direct_fwd, direct_bwd_data,
 * direct_bwd_weights) of every SIMD tier this machine runs, against their
 * reference twins in lib/backend/ref/conv.c: odd channel counts (not
 * multiples of the vector width), odd planes, rows longer than a register
 * tile, batch 1 and 3, unaligned pointers, padding, dilation, row stride,
 * 1x1 and 5x5 windows, the fused bias / ReLU / 2x2 max pool and the fused
 * ReLU backward, NaN propagation, and bit-identical results on 1, 2 and 3
 * threads. Sums agree within a rounding bound computed per element by the
 * reference kernel run on the absolute values of the operands. */
#include "testutil.h"
#include "nn_internal.h"
#include "backend/backend.h"
#include "backend/tier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform [-1, 1) */
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* n random floats starting one float past a 64-byte boundary (unaligned on
 * purpose); free with buf_free. */
static float *buf_new(int64_t n) {
    size_t bytes = ((size_t)(n + 17) * sizeof(float) + 63) & ~(size_t)63;
    float *base = aligned_alloc(64, bytes);
    assert_non_null(base);
    for (int64_t i = 0; i < n; i++) base[1 + i] = frand();
    return base + 1;
}
static void buf_free(float *p) {
    if (p) free(p - 1);
}
static float *buf_abs(const float *p, int64_t n) {
    float *q = buf_new(n);
    for (int64_t i = 0; i < n; i++) q[i] = fabsf(p[i]);
    return q;
}

/* |got - want| <= 4 (taps + 2) eps * bound + tiny, NaN where the reference has NaN. */
static void expect_close(const float *got, const float *want, const float *bound, int64_t n,
                         int64_t taps, const char *what, const char *shape) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            if (!isnan(got[i]))
                fail_msg("%s %s: element %lld is %.9g, reference NaN", what, shape, (long long)i,
                         (double)got[i]);
            continue;
        }
        const double tol = 4.0 * (double)(taps + 2) * 1.2e-7 * (double)bound[i] + 1e-30;
        if (!(fabs((double)got[i] - (double)want[i]) <= tol))
            fail_msg("%s %s: element %lld is %.9g, reference %.9g (tolerance %.3g)", what, shape,
                     (long long)i, (double)got[i], (double)want[i], tol);
    }
}

static void expect_same(const float *a, const float *b, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s: element %lld differs: %.9g vs %.9g", what, (long long)i, (double)a[i],
                     (double)b[i]);
}

typedef struct conv_case {
    int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw;
} conv_case;

static nn__conv2d desc_of(const conv_case *k) {
    nn__conv2d d = {k->n, k->c, k->h,
                    k->w, k->o, {k->kh, k->kw, k->sh, k->sw, k->ph, k->pw, k->dh, k->dw, 0, 0}};
    d.g.oh = (k->h + 2 * k->ph - (k->kh - 1) * k->dh - 1) / k->sh + 1;
    d.g.ow = (k->w + 2 * k->pw - (k->kw - 1) * k->dw - 1) / k->sw + 1;
    return d;
}

static void shape_str(const conv_case *k, char *s, size_t n) {
    snprintf(s, n,
             "[n %lld c %lld %lldx%lld o %lld k %lldx%lld s %lld,%lld p %lld,%lld d %lld,%lld]",
             (long long)k->n, (long long)k->c, (long long)k->h, (long long)k->w, (long long)k->o,
             (long long)k->kh, (long long)k->kw, (long long)k->sh, (long long)k->sw,
             (long long)k->ph, (long long)k->pw, (long long)k->dh, (long long)k->dw);
}

/* Odd shapes around the vector widths (8, 16) and the tile sizes (6, 14
 * pixels), plus the demo CNN's two layers. */
static const conv_case g_cases[] = {
    {1, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1},  /* demo conv1 */
    {3, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1}, /* demo conv2 */
    {3, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1},
    {1, 5, 9, 7, 17, 3, 3, 1, 1, 1, 1, 1, 1},
    {3, 17, 5, 31, 33, 3, 3, 1, 1, 1, 1, 1, 1},
    {1, 7, 13, 15, 10, 3, 3, 1, 1, 0, 0, 1, 1},
    {3, 6, 11, 29, 9, 3, 3, 1, 1, 2, 2, 2, 2},
    {1, 9, 8, 6, 7, 3, 3, 2, 1, 1, 1, 1, 1},
    {3, 4, 9, 9, 24, 3, 3, 2, 2, 1, 1, 1, 1},
    {1, 13, 6, 17, 19, 1, 1, 1, 1, 0, 0, 1, 1},
    {3, 21, 5, 5, 3, 1, 1, 1, 1, 0, 0, 1, 1},
    {1, 3, 12, 11, 8, 5, 5, 1, 1, 2, 2, 1, 1},
    {3, 2, 10, 12, 40, 5, 3, 1, 1, 2, 1, 1, 1},
    {1, 33, 4, 3, 16, 3, 3, 1, 1, 1, 1, 1, 1},
    {3, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 1, 1},
    {1, 4, 3, 5, 6, 3, 3, 1, 1, 3, 3, 1, 1}, /* padding past the data-gradient limit */
    /* one to four input channels (the few-channel forward: pixels in vectors) */
    {9, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1},  /* demo conv1 at 9 images (a task each) */
    {2, 1, 37, 45, 13, 3, 3, 1, 1, 1, 1, 1, 1},  /* odd sizes, several pixel tiles */
    {1, 2, 17, 33, 7, 3, 3, 1, 1, 0, 0, 1, 1},   /* no padding */
    {3, 3, 11, 19, 20, 5, 5, 1, 1, 2, 2, 1, 1},  /* 5x5 */
    {1, 4, 9, 70, 6, 3, 5, 1, 1, 1, 3, 1, 1},    /* wide rows, asymmetric window */
    {2, 1, 5, 3, 1, 3, 3, 1, 1, 2, 2, 1, 1},     /* padding wider than the image */
    {1, 2, 3, 4, 11, 2, 2, 1, 1, 0, 1, 1, 1},    /* even window */
    {1, 3, 8, 16, 5, 7, 7, 1, 1, 3, 3, 1, 1},    /* the largest window it takes */
    {1, 1, 9, 9, 4, 3, 3, 1, 1, 1, 1, 2, 2},     /* dilated: the channel tile */
    /* 3x3, unit stride, at least 8 input channels: the pooled forward is
     * Winograd F(2x2, 3x3) (one tile per pool window) */
    {2, 8, 5, 5, 16, 3, 3, 1, 1, 0, 0, 1, 1},    /* no padding: one tile, odd rows dropped */
    {1, 11, 9, 37, 9, 3, 3, 1, 1, 1, 2, 1, 1},   /* 19 tiles a row, asymmetric padding */
    {3, 40, 6, 6, 70, 3, 3, 1, 1, 2, 2, 1, 1},   /* padding 2, channel blocks and a tail */
    {1, 8, 2, 3, 8, 3, 3, 1, 1, 1, 1, 1, 1},     /* a 2x3 output: one tile */
    {9, 16, 16, 15, 24, 3, 3, 1, 1, 1, 1, 1, 1}, /* a task per image */
    {1, 16, 64, 60, 16, 3, 3, 1, 1, 1, 1, 1, 1}, /* one image large enough to split its rows */
    {1, 9, 8, 8, 17, 3, 3, 1, 1, 1, 1, 2, 2},    /* dilated: not Winograd */
};

/* A kernel may refuse a shape (false, nothing written) only when the
 * tier's rule does not take that pass; every shape it takes is checked. */
static bool taken(bool ok, unsigned passes, unsigned bit, const char *what, const char *shape) {
    if (!ok && (passes & bit)) fail_msg("%s %s refused a shape its rule takes", what, shape);
    return ok;
}

/* One case: every pass the tier's kernels take, against the reference. */
static void check_case(const conv_case *k, bool with_nan) {
    const nn_kernels *f = nn__kernels(), *r = nn__ref_kernels();
    const nn__conv2d d = desc_of(k);
    const int64_t oh = d.g.oh, ow = d.g.ow, taps = k->c * k->kh * k->kw;
    const int64_t nx = k->n * k->c * k->h * k->w, nw = k->o * taps, ny = k->n * k->o * oh * ow;
    const unsigned passes = f->conv.direct_passes(&d);
    char shape[160];
    shape_str(k, shape, sizeof shape);
    float *x = buf_new(nx), *w = buf_new(nw), *b = buf_new(k->o), *gy = buf_new(ny);
    float *ry = buf_new(ny); /* a ReLU output for the fused backward: about half positive */
    if (with_nan) x[nx / 2] = NAN;
    float *ax = buf_abs(x, nx), *aw = buf_abs(w, nw), *ab = buf_abs(b, k->o),
          *agy = buf_abs(gy, ny);

    /* forward: bias or not, ReLU or not, pool or not */
    for (int mode = 0; mode < 8; mode++) {
        const bool bias = mode & 1, relu = mode & 2, pool = mode & 4;
        if (pool && (oh < 2 || ow < 2)) continue;
        const int64_t n_out = pool ? k->n * k->o * (oh / 2) * (ow / 2) : ny;
        float *got = buf_new(n_out), *want = buf_new(n_out), *bound = buf_new(n_out);
        float *got2 = buf_new(n_out);
        assert_true(r->conv.direct_fwd(&d, x, w, bias ? b : NULL, relu, pool, want));
        assert_true(r->conv.direct_fwd(&d, ax, aw, bias ? ab : NULL, false, pool, bound));
        for (int threads = 1; threads <= 3; threads++) {
            TU_OK(nn_set_num_threads(threads));
            float *dst = threads == 1 ? got : got2;
            if (!taken(f->conv.direct_fwd(&d, x, w, bias ? b : NULL, relu, pool, dst), passes,
                       pool ? NN_CONV_FWD_POOL : NN_CONV_FWD, "direct_fwd", shape))
                break;
            if (threads > 1) expect_same(got2, got, n_out, "direct_fwd on more threads");
        }
        char what[64];
        snprintf(what, sizeof what, "direct_fwd bias %d relu %d pool %d", bias, relu, pool);
        if (f->conv.direct_fwd(&d, x, w, bias ? b : NULL, relu, pool, got))
            expect_close(got, want, bound, n_out, taps, what, shape);
        buf_free(got), buf_free(want), buf_free(bound), buf_free(got2);
    }

    /* data gradient, with and without the fused ReLU mask */
    for (int masked = 0; masked < 2; masked++) {
        const float *mask = masked ? ry : NULL;
        float *got = buf_new(nx), *want = buf_new(nx), *bound = buf_new(nx), *got2 = buf_new(nx);
        assert_true(r->conv.direct_bwd_data(&d, gy, mask, w, want));
        assert_true(r->conv.direct_bwd_data(&d, agy, mask, aw, bound));
        for (int threads = 1; threads <= 3; threads++) {
            TU_OK(nn_set_num_threads(threads));
            float *dst = threads == 1 ? got : got2;
            if (!taken(f->conv.direct_bwd_data(&d, gy, mask, w, dst), passes, NN_CONV_BWD_DATA,
                       "direct_bwd_data", shape))
                break;
            if (threads > 1) expect_same(got2, got, nx, "direct_bwd_data on more threads");
        }
        if (f->conv.direct_bwd_data(&d, gy, mask, w, got))
            expect_close(got, want, bound, nx, k->o * k->kh * k->kw,
                         masked ? "direct_bwd_data relu" : "direct_bwd_data", shape);
        buf_free(got), buf_free(want), buf_free(bound), buf_free(got2);
    }

    /* weight and bias gradients, accumulated onto random weights */
    for (int masked = 0; masked < 2; masked++) {
        const float *mask = masked ? ry : NULL;
        float *gw0 = buf_new(nw), *got = buf_new(nw), *want = buf_new(nw), *bound = buf_new(nw);
        float *got2 = buf_new(nw), *gb = buf_new(k->o), *gbw = buf_new(k->o), *gbb = buf_new(k->o),
              *gb2 = buf_new(k->o);
        memcpy(want, gw0, (size_t)nw * sizeof(float));
        assert_true(r->conv.direct_bwd_weights(&d, x, gy, mask, want, gbw));
        for (int64_t i = 0; i < nw; i++) bound[i] = fabsf(gw0[i]);
        assert_true(r->conv.direct_bwd_weights(&d, ax, agy, mask, bound, gbb));
        for (int threads = 1; threads <= 3; threads++) {
            TU_OK(nn_set_num_threads(threads));
            float *dst = threads == 1 ? got : got2, *dgb = threads == 1 ? gb : gb2;
            memcpy(dst, gw0, (size_t)nw * sizeof(float));
            if (!taken(f->conv.direct_bwd_weights(&d, x, gy, mask, dst, dgb), passes,
                       NN_CONV_BWD_WEIGHTS, "direct_bwd_weights", shape)) {
                memcpy(got, want, (size_t)nw * sizeof(float));
                memcpy(gb, gbw, (size_t)k->o * sizeof(float));
                break;
            }
            if (threads > 1) {
                expect_same(got2, got, nw, "direct_bwd_weights on more threads");
                expect_same(gb2, gb, k->o, "direct_bwd_weights bias on more threads");
            }
        }
        const int64_t sum_len = k->n * oh * ow;
        expect_close(got, want, bound, nw, sum_len,
                     masked ? "direct_bwd_weights relu" : "direct_bwd_weights", shape);
        expect_close(gb, gbw, gbb, k->o, sum_len, masked ? "bias grad relu" : "bias grad", shape);
        /* gb = NULL: only the weights */
        memcpy(got2, gw0, (size_t)nw * sizeof(float));
        if (f->conv.direct_bwd_weights(&d, x, gy, mask, got2, NULL))
            expect_same(got2, got, nw, "direct_bwd_weights without the bias");
        buf_free(gw0), buf_free(got), buf_free(want), buf_free(bound), buf_free(got2);
        buf_free(gb), buf_free(gbw), buf_free(gbb), buf_free(gb2);
    }
    TU_OK(nn_set_num_threads(1));
    buf_free(x), buf_free(w), buf_free(b), buf_free(gy), buf_free(ry);
    buf_free(ax), buf_free(aw), buf_free(ab), buf_free(agy);
}

/* The SIMD tiers this machine runs (the reference tier takes no pass). */
static int for_simd_tiers(void (*fn)(void)) {
    int ran = 0;
    for (int t = NN_TIER_REF + 1; t < NN_TIER_COUNT; t++) {
        if (!nn__tier_runnable(t)) continue;
        assert_true(nn__backend_force_tier(t));
        print_message("tier %s\n", nn__tier_name(t));
        fn();
        ran++;
    }
    assert_true(nn__backend_force_tier(-1));
    return ran;
}

static void all_cases(void) {
    for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) check_case(&g_cases[i], false);
}

static void test_direct_vs_reference(void **s) {
    (void)s;
    if (!for_simd_tiers(all_cases)) skip();
}

static void nan_cases(void) {
    check_case(&g_cases[2], true);
    check_case(&g_cases[4], true);
}

/* A NaN input reaches every output whose window covers it, through the
 * fused ReLU and pool as through the separate kernels. */
static void test_direct_nan(void **s) {
    (void)s;
    if (!for_simd_tiers(nan_cases)) skip();
}

/* Winograd F(2x2, 3x3) for the unpooled forward, the data gradient and the
 * weight gradient, forced on whatever the rule says: odd planes (a last
 * tile row / column that keeps one output), one and many images, channel counts off the
 * vector widths, padding 0, 1 and 2, one-tile planes, a plane split over
 * threads. Every pass also runs through the checks above (bias, ReLU, the
 * ReLU mask, 1-3 threads bit-identical). The tolerance is expect_close's:
 * Winograd's sums differ from the direct ones by its transforms' roundings,
 * whose constants (0, ±1/2, ±1) keep each error within a few units of the
 * same per-element bound sum |x| |w| (U = G g Gᵀ and V = Bᵀ d B add at most
 * 4 terms of magnitude <= that of the taps at each stage). Measured margin:
 * these cases (and the rule's Winograd shapes above) still pass with an
 * eighth of that tolerance. The weight gradient (dU = sum over tiles of
 * (A dY Aᵀ) ⊙ V, then Gᵀ dU G) rounds its transformed products, whose
 * terms cancel in exact arithmetic, so its error is a constant factor of
 * the bound sum |gy| |x| above the direct one's; measured margin: these
 * cases pass with a quarter of expect_close's tolerance (not an eighth:
 * the 2x3 and 4x3 planes, 12-18 terms). A NaN input makes NaN every tap
 * of the windows (o, c) whose tiles read it: at least the taps the direct
 * sums make NaN (x[nx / 2] below is inside the plane, where those are all
 * 9), more near the border (0 x NaN in the transforms); the chunks (9 and
 * 7 images) make the threads check meaningful. */
static const conv_case g_wino_cases[] = {
    {1, 32, 13, 13, 64, 3, 3, 1, 1, 1, 1, 1, 1}, /* odd plane, one image */
    {5, 17, 9, 15, 33, 3, 3, 1, 1, 1, 1, 1, 1},  /* odd channels and plane */
    {3, 40, 6, 7, 70, 3, 3, 1, 1, 2, 2, 1, 1},   /* padding 2, channel tail */
    {2, 9, 7, 5, 8, 3, 3, 1, 1, 0, 0, 1, 1},     /* no padding: 5x3 output */
    {1, 8, 1, 1, 9, 3, 3, 1, 1, 1, 1, 1, 1},     /* a 1x1 plane: one partial tile */
    {2, 24, 2, 3, 16, 3, 3, 1, 1, 1, 2, 1, 1},   /* asymmetric padding */
    {1, 32, 41, 45, 24, 3, 3, 1, 1, 1, 1, 1, 1}, /* one image split over threads */
    {3, 3, 9, 11, 40, 3, 3, 1, 1, 1, 1, 1, 1},   /* few input channels */
    {9, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1}, /* demo conv2, a task per image */
    /* the weight gradient (the forward's cases above run it too) */
    {4, 1, 6, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1},     /* one input channel, 5 outputs */
    {2, 5, 3, 4, 3, 3, 3, 1, 1, 3, 3, 1, 1},     /* padding 3: tiles of padding only */
    {7, 19, 11, 9, 21, 3, 3, 1, 1, 1, 0, 1, 1},  /* 7 images in chunks, odd everything */
    {6, 33, 5, 14, 47, 3, 3, 1, 1, 2, 1, 1, 1},  /* channel tails on both axes */
};

static void wino_cases(void) {
    nn__backend_force_winograd(1);
    for (size_t i = 0; i < sizeof g_wino_cases / sizeof g_wino_cases[0]; i++)
        check_case(&g_wino_cases[i], false);
    check_case(&g_wino_cases[1], true); /* a NaN through the transforms */
    nn__backend_force_winograd(-1);
}

static void test_winograd_vs_reference(void **s) {
    (void)s;
    if (!for_simd_tiers(wino_cases)) skip();
}

/* The rule: the reference tier takes nothing; the SIMD tiers take the demo
 * CNN's passes, and no stride-2 data gradient. */
static void rule_checks(void) {
    const nn_kernels *f = nn__kernels();
    nn__conv2d d = desc_of(&g_cases[1]);
    const unsigned p = f->conv.direct_passes(&d);
    assert_true(p & NN_CONV_BWD_DATA);
    assert_true(p & NN_CONV_BWD_WEIGHTS);
    nn__conv2d s2 = desc_of(&g_cases[8]);
    assert_false(f->conv.direct_passes(&s2) & NN_CONV_BWD_DATA);
    float one = 1.0f, out[4];
    assert_false(f->conv.direct_bwd_data(&s2, &one, NULL, &one, out));
}

static void test_rule(void **s) {
    (void)s;
    nn__conv2d d = desc_of(&g_cases[1]);
    assert_true(nn__backend_force_tier(NN_TIER_REF));
    assert_int_equal(nn__kernels()->conv.direct_passes(&d), 0);
    assert_true(nn__backend_force_tier(-1));
    if (!for_simd_tiers(rule_checks)) skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct_vs_reference),
        cmocka_unit_test(test_direct_nan),
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_winograd_vs_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
