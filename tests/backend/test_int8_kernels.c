/* The int8 kernels (backend/int8.h) of every tier this machine runs against
 * the reference twins in lib/backend/ref/int8.c, bit for bit: the integer
 * products (checked through an epilogue with unit scales, whose floats are
 * the integers exactly), the float epilogue with per-row and shared
 * activation parameters, bias and ReLU (NaN kept), the activation quantizer
 * (ties to even, clamping, NaN/inf) and min/max, column sums. Shapes: depth
 * 1..70 (not multiples of 4 or 64), channels 1..50 (partial panels), rows
 * 1..13 (tiles and GEMV), depth at the int32 limit with extreme values,
 * unaligned activation rows, and 1, 2 and 3 threads. The reference itself is
 * checked against a naive int64 sum over unpacked weights. */
#include "testutil.h"
#include "nn_internal.h"
#include "backend/backend.h"
#include "backend/int8.h"
#include "backend/tier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t urand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}
static float frand(void) { return (float)(urand() >> 8) * (1.0f / 8388608.0f) - 1.0f; }

/* Reduced-range products (nn__qgemm.w7): the weights stay full range, so
 * the clamp to [-63, 63] every tier applies is exercised. */
static bool g_w7;

/* A weight as the products see it. */
static int64_t eff(int8_t v) { return g_w7 ? (v > 63 ? 63 : v < -63 ? -63 : v) : v; }

typedef struct prob {
    int64_t m, n, k, kp, lda;
    uint8_t *abuf, *a;       /* a = abuf + 1: unaligned rows */
    int8_t *qw, *w;          /* row-major [n, k] and packed */
    int32_t *wsum, *za;
    float *sa, *sw, *bias;
} prob;

static void prob_new(prob *p, int64_t m, int64_t n, int64_t k, bool extreme) {
    memset(p, 0, sizeof *p);
    p->m = m, p->n = n, p->k = k, p->kp = nn__qk_pad(k), p->lda = p->kp + 3;
    p->abuf = calloc((size_t)(m * p->lda + 1), 1);
    p->a = p->abuf + 1;
    p->qw = malloc((size_t)(n * k));
    p->w = malloc((size_t)nn__qpacked_bytes(n, k));
    p->wsum = malloc((size_t)n * sizeof(int32_t));
    p->za = malloc((size_t)m * sizeof(int32_t));
    p->sa = malloc((size_t)m * sizeof(float));
    p->sw = malloc((size_t)n * sizeof(float));
    p->bias = malloc((size_t)n * sizeof(float));
    assert_true(p->abuf && p->qw && p->w && p->wsum && p->za && p->sa && p->sw && p->bias);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t q = 0; q < k; q++)
            p->a[i * p->lda + q] = extreme ? 255 : (uint8_t)(urand() & 255);
        for (int64_t q = k; q < p->kp; q++) p->a[i * p->lda + q] = (uint8_t)(urand() & 255);
        p->za[i] = extreme ? 0 : (int32_t)(urand() % 256);
        p->sa[i] = 0.001f + 0.01f * (frand() + 1.0f);
    }
    for (int64_t j = 0; j < n; j++) {
        for (int64_t q = 0; q < k; q++)
            p->qw[j * k + q] = extreme ? (j % 2 ? -127 : 127)
                           : g_w7   ? (int8_t)((int)(urand() % 256) - 128)
                                    : (int8_t)((int)(urand() % 255) - 127);
        p->sw[j] = 0.002f + 0.01f * (frand() + 1.0f);
        p->bias[j] = frand();
    }
    nn__ref_kernels()->int8.pack(n, k, p->qw, k, p->w);
    nn__ref_kernels()->int8.colsum(n, k, p->w, g_w7, p->wsum);
}

static void prob_free(prob *p) {
    free(p->abuf), free(p->qw), free(p->w), free(p->wsum), free(p->za), free(p->sa), free(p->sw),
        free(p->bias);
}

static nn__qgemm prob_gemm(const prob *p, float *c, bool unit, bool shared, bool bias, bool relu) {
    static const float one = 1.0f;
    static const int32_t zero = 0;
    nn__qgemm g = {.m = p->m, .n = p->n, .k = p->k, .a = p->a, .lda = p->lda, .w = p->w,
                   .wsum = p->wsum, .a_scale = unit ? &one : p->sa, .a_zp = unit ? &zero : p->za,
                   .a_step = unit || shared ? 0 : 1, .w_scale = p->sw, .bias = bias ? p->bias : NULL,
                   .relu = relu, .c = c, .ldc = p->n + 1, .w7 = g_w7};
    if (unit) { /* exact integers: unit scales need a unit weight scale too */
        static float ones[256];
        for (int i = 0; i < 256; i++) ones[i] = 1.0f;
        g.w_scale = ones;
    }
    return g;
}

static void expect_same(const float *got, const float *want, const prob *p, int64_t ldc,
                        const char *tier, const char *what) {
    for (int64_t i = 0; i < p->m; i++)
        for (int64_t j = 0; j < p->n; j++) {
            float g = got[i * ldc + j], w = want[i * ldc + j];
            if (memcmp(&g, &w, sizeof g) && !(isnan(g) && isnan(w)))
                fail_msg("%s %s m %lld n %lld k %lld: c[%lld,%lld] = %.9g, reference %.9g", tier,
                         what, (long long)p->m, (long long)p->n, (long long)p->k, (long long)i,
                         (long long)j, (double)g, (double)w);
        }
}

/* The reference product against a naive sum over the unpacked weights. */
static void check_reference(const prob *p) {
    float *c = calloc((size_t)(p->m * (p->n + 1)), sizeof(float));
    nn__qgemm g = prob_gemm(p, c, true, false, false, false);
    nn__ref_kernels()->int8.gemm(&g);
    for (int64_t i = 0; i < p->m; i++)
        for (int64_t j = 0; j < p->n; j++) {
            int64_t s = 0;
            for (int64_t q = 0; q < p->k; q++) s += (int64_t)p->a[i * p->lda + q] * eff(p->qw[j * p->k + q]);
            assert_true(c[i * (p->n + 1) + j] == (float)s);
        }
    int32_t *raw = calloc((size_t)(p->m * (p->n + 1)), sizeof(int32_t));
    g.c32 = raw; /* raw sums: the same integers, no epilogue */
    nn__ref_kernels()->int8.gemm(&g);
    for (int64_t i = 0; i < p->m; i++)
        for (int64_t j = 0; j < p->n; j++) {
            int64_t s = 0;
            for (int64_t q = 0; q < p->k; q++) s += (int64_t)p->a[i * p->lda + q] * eff(p->qw[j * p->k + q]);
            assert_true(raw[i * (p->n + 1) + j] == (int32_t)s);
        }
    free(raw);
    free(c);
}

static void run_shape(int64_t m, int64_t n, int64_t k, bool extreme) {
    prob p;
    prob_new(&p, m, n, k, extreme);
    if (!extreme) check_reference(&p);
    const int64_t csz = m * (n + 1);
    float *want = malloc((size_t)csz * sizeof(float)), *got = malloc((size_t)csz * sizeof(float));
    int32_t *ws = malloc((size_t)n * sizeof(int32_t));
    for (int t = NN_TIER_REF + 1; t < NN_TIER_COUNT; t++) {
        const nn_kernels *kt = nn__tier_kernels(t);
        if (!kt) continue;
        kt->int8.colsum(n, k, p.w, g_w7, ws);
        assert_memory_equal(ws, p.wsum, (size_t)n * sizeof(int32_t));
        for (int variant = 0; variant < 5; variant++) {
            const bool unit = variant == 0, shared = variant == 2, bias = variant >= 3,
                       relu = variant == 4;
            for (int64_t i = 0; i < csz; i++) want[i] = got[i] = -7.0f; /* gaps stay */
            nn__qgemm gr = prob_gemm(&p, want, unit, shared, bias, relu);
            nn__qgemm gt = prob_gemm(&p, got, unit, shared, bias, relu);
            nn__ref_kernels()->int8.gemm(&gr);
            for (int threads = 1; threads <= 3; threads++) {
                nn_set_num_threads(threads);
                kt->int8.gemm(&gt);
                static const char *const names[] = {"integers", "per-row", "shared", "bias",
                                                    "bias+relu"};
                expect_same(got, want, &p, n + 1, kt->name, names[variant]);
                for (int64_t i = 0; i < p.m; i++)
                    assert_true(got[i * (n + 1) + n] == -7.0f); /* past n untouched */
                if (!kt->int8.folds_zp(m, g_w7)) continue;
                /* no column sums: the tier folds the zero points itself */
                nn__qgemm gz = gt;
                gz.wsum = NULL;
                for (int64_t i = 0; i < csz; i++) got[i] = -7.0f;
                kt->int8.gemm(&gz);
                expect_same(got, want, &p, n + 1, kt->name, "folded zero points");
                for (int64_t i = 0; i < p.m; i++) assert_true(got[i * (n + 1) + n] == -7.0f);
            }
            nn_set_num_threads(1);
        }
        /* raw sums (c32): the tier's integers against the reference's */
        int32_t *rw = malloc((size_t)csz * sizeof(int32_t)), *rg = malloc((size_t)csz * sizeof(int32_t));
        for (int64_t i = 0; i < csz; i++) rw[i] = rg[i] = -7;
        nn__qgemm gr = prob_gemm(&p, want, false, false, true, true);
        nn__qgemm gt = prob_gemm(&p, got, false, false, true, true);
        gr.c32 = rw, gt.c32 = rg;
        nn__ref_kernels()->int8.gemm(&gr);
        for (int threads = 1; threads <= 3; threads++) {
            nn_set_num_threads(threads);
            kt->int8.gemm(&gt);
            for (int64_t i = 0; i < p.m; i++) {
                for (int64_t j = 0; j < n; j++)
                    if (rg[i * (n + 1) + j] != rw[i * (n + 1) + j])
                        fail_msg("%s raw m %lld n %lld k %lld: c32[%lld,%lld] = %d, reference %d",
                                 kt->name, (long long)m, (long long)n, (long long)k, (long long)i,
                                 (long long)j, rg[i * (n + 1) + j], rw[i * (n + 1) + j]);
                assert_int_equal(rg[i * (n + 1) + n], -7); /* past n untouched */
            }
        }
        nn_set_num_threads(1);
        free(rw), free(rg);
    }
    free(want), free(got), free(ws);
    prob_free(&p);
}

static void test_gemm_vs_reference(void **state) {
    (void)state;
    static const int64_t ms[] = {1, 2, 3, 5, 6, 7, 13};
    static const int64_t ns[] = {1, 3, 15, 16, 17, 33, 50, 64, 65};
    static const int64_t ks[] = {1, 3, 4, 5, 9, 31, 64, 70};
    for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
            for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++)
                run_shape(ms[a], ns[b], ks[c], false);
    run_shape(40, 130, 300, false); /* several row tiles on several threads */
    run_shape(1, 200, 1029, false); /* GEMV across threads */
}

/* The same shapes with reduced-range products: vpmaddubsw's pairs (AVX2)
 * and the clamp on every tier, against the reference and the naive sum;
 * column sums of the clamped weights. At the depth limit every product is
 * 255 * +-63 (the weights +-127 clamped). */
static void test_gemm_w7(void **state) {
    (void)state;
    g_w7 = true;
    static const int64_t ms[] = {1, 2, 3, 4, 5, 7, 9, 12};
    static const int64_t ns[] = {1, 8, 15, 16, 17, 33, 64, 65};
    static const int64_t ks[] = {1, 3, 4, 5, 9, 31, 70};
    for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
            for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++)
                run_shape(ms[a], ns[b], ks[c], false);
    run_shape(41, 130, 300, false); /* several row tiles on several threads */
    run_shape(1, 200, 1029, false); /* GEMV across threads */
    run_shape(3, 70, 1029, false);
    run_shape(2, 3, NN__QK_MAX, true);
    int32_t ws[3];
    prob p;
    prob_new(&p, 1, 3, 5, false);
    nn__ref_kernels()->int8.colsum(3, 5, p.w, true, ws);
    for (int j = 0; j < 3; j++) {
        int64_t s = 0;
        for (int q = 0; q < 5; q++) s += eff(p.qw[j * 5 + q]);
        assert_int_equal(ws[j], s);
    }
    prob_free(&p);
    g_w7 = false;
}

/* Depth at the limit, every product 255 * +-127: sums of +-2.12e9 stay exact. */
static void test_gemm_extreme(void **state) {
    (void)state;
    run_shape(2, 3, NN__QK_MAX, true);
}

static void test_quantize_vs_reference(void **state) {
    (void)state;
    const nn__int8_kernels *r = &nn__ref_kernels()->int8;
    for (int64_t n = 1; n <= 70; n += (n < 20 ? 1 : 7)) {
        float *x = malloc((size_t)(n + 1) * sizeof(float));
        uint8_t *qr = malloc((size_t)n + 1), *qt = malloc((size_t)n + 1);
        for (int64_t i = 0; i < n; i++) x[i + 1] = 3.0f * frand();
        /* ties at .5 after scaling, the clamps, the non-finite values, and
         * scaled values past 2^24 (the float add rounds), 2^30 and 2^31
         * (beyond int32: the AVX2 tier's conversion saturates first) */
        const float special[] = {0.5f,      1.5f,    -2.5f,    400.0f,  -400.0f, NAN,
                                 INFINITY,  -INFINITY, 1.7e7f, -1.7e7f, 3.0e9f, -3.0e9f,
                                 1.2e9f, 1.0e38f};
        const int64_t ns = (int64_t)(sizeof special / sizeof special[0]);
        for (int64_t i = 0; i < n && i < ns; i++) x[1 + (i * 5) % n] = special[i];
        for (int t = NN_TIER_REF + 1; t < NN_TIER_COUNT; t++) {
            const nn_kernels *kt = nn__tier_kernels(t);
            if (!kt) continue;
            const float invs[] = {1.0f, 40.0f, 0.37f};
            for (int s = 0; s < 3; s++) {
                const int32_t zp = s == 0 ? 0 : s == 1 ? 128 : 255;
                memset(qr, 0xAA, (size_t)n + 1), memset(qt, 0xAA, (size_t)n + 1);
                r->quantize_u8(n, x + 1, invs[s], zp, qr + 1);
                kt->int8.quantize_u8(n, x + 1, invs[s], zp, qt + 1);
                assert_memory_equal(qr, qt, (size_t)n + 1);
            }
            float a, b, c, d;
            r->minmax(n, x + 1, &a, &b);
            kt->int8.minmax(n, x + 1, &c, &d);
            assert_true(a == c || (isnan(a) && isnan(c)));
            assert_true(b == d || (isnan(b) && isnan(d)));
        }
        free(x), free(qr), free(qt);
    }
}

/* The quantizer's meaning, on the reference: ties to even, zero exact. */
static void test_quantize_meaning(void **state) {
    (void)state;
    const nn__int8_kernels *r = &nn__ref_kernels()->int8;
    const float x[] = {0.5f, 1.5f, 2.5f, -0.5f, 0.0f, 1000.0f, -1000.0f, NAN};
    uint8_t q[8];
    r->quantize_u8(8, x, 1.0f, 10, q);
    const uint8_t want[] = {10, 12, 12, 10, 10, 255, 0, 0};
    assert_memory_equal(q, want, 8);
    float mn, mx, s;
    int32_t zp;
    r->minmax(8, x, &mn, &mx); /* NaN skipped */
    assert_true(mn == -1000.0f && mx == 1000.0f);
    nn__qparams_u8(-1.0f, 3.0f, &s, &zp);
    assert_true(fabsf(s - 4.0f / 255.0f) < 1e-9f && zp == 64);
    nn__qparams_u8(0.5f, 2.0f, &s, &zp); /* the range holds 0 */
    assert_true(zp == 0 && fabsf(s - 2.0f / 255.0f) < 1e-9f);
    nn__qparams_u8(0.0f, 0.0f, &s, &zp);
    assert_true(s == 1.0f && zp == 0);
    nn__qparams_u8(NAN, NAN, &s, &zp);
    assert_true(s == 1.0f && zp == 0);
    const float allnan[] = {NAN, NAN};
    r->minmax(2, allnan, &mn, &mx);
    assert_true(isnan(mn) && isnan(mx));
}

/* quantize_pad_hwc and im2row of every tier against the reference, and the
 * reference quantize_pad_hwc against quantize_u8 + pad_hwc; odd channel
 * counts (1, 3, 16, 17, 33), widths past 16, strides 1 and 2, buffers with
 * exactly the documented slack. */
static void test_im2row_tiers(void **state) {
    (void)state;
    static const int64_t cs[] = {1, 3, 16, 17, 33};
    static const int64_t shapes[][6] = {/* h, w, kh, kw, stride, pad */
                                        {28, 28, 3, 3, 1, 1}, {5, 19, 3, 3, 2, 1},
                                        {7, 7, 1, 1, 1, 0},   {6, 35, 5, 5, 1, 2}};
    const nn__int8_kernels *r = &nn__ref_kernels()->int8;
    for (size_t a = 0; a < sizeof cs / sizeof cs[0]; a++)
        for (size_t b = 0; b < sizeof shapes / sizeof shapes[0]; b++) {
            const int64_t c = cs[a], h = shapes[b][0], w = shapes[b][1], kh = shapes[b][2],
                          kw = shapes[b][3], st = shapes[b][4], pd = shapes[b][5];
            const int64_t hp = h + 2 * pd, wp = w + 2 * pd;
            const int64_t oh = (hp - kh) / st + 1, ow = (wp - kw) / st + 1;
            const int64_t k = c * kh * kw, ld = nn__qk_pad(k), plane = c * h * w;
            const int64_t xpn = hp * wp * c, coln = oh * ow * ld;
            float *x = malloc(sizeof(float) * (size_t)plane);
            for (int64_t i = 0; i < plane; i++) x[i] = 3.0f * frand();
            x[0] = NAN, x[plane - 1] = INFINITY;
            uint8_t *q = malloc((size_t)plane), *want = malloc((size_t)(xpn + NN__Q_SLACK));
            uint8_t *got = malloc((size_t)(xpn + NN__Q_SLACK));
            uint8_t *cw = malloc((size_t)(coln + NN__Q_SLACK)), *cg = malloc((size_t)(coln + NN__Q_SLACK));
            const float inv = 1.0f / 0.0237f;
            const int32_t zp = 121;
            r->quantize_u8(plane, x, inv, zp, q);
            r->pad_hwc(q, c, h, w, pd, pd, (uint8_t)zp, want);
            memset(got, 0xA5, (size_t)(xpn + NN__Q_SLACK));
            r->quantize_pad_hwc(x, c, h, w, pd, pd, inv, zp, got);
            assert_memory_equal(got, want, (size_t)xpn);
            memset(want + xpn, 0, NN__Q_SLACK);
            r->im2row(want, c, wp, kh, kw, st, st, oh, ow, cw, ld);
            for (int t = NN_TIER_REF + 1; t < NN_TIER_COUNT; t++) {
                const nn_kernels *kt = nn__tier_kernels(t);
                if (!kt) continue;
                memset(got, 0xA5, (size_t)(xpn + NN__Q_SLACK));
                kt->int8.quantize_pad_hwc(x, c, h, w, pd, pd, inv, zp, got);
                if (memcmp(got, want, (size_t)xpn))
                    fail_msg("%s quantize_pad_hwc c %lld %lldx%lld differs", kt->name, (long long)c,
                             (long long)h, (long long)w);
                for (int i = 0; i < NN__Q_SLACK; i++) assert_int_equal(got[xpn + i], 0xA5);
                memset(cg, 0xEE, (size_t)(coln + NN__Q_SLACK));
                kt->int8.im2row(want, c, wp, kh, kw, st, st, oh, ow, cg, ld);
                if (memcmp(cg, cw, (size_t)coln))
                    fail_msg("%s im2row c %lld %lldx%lld k %lldx%lld differs", kt->name,
                             (long long)c, (long long)h, (long long)w, (long long)kh, (long long)kw);
            }
            free(x), free(q), free(want), free(got), free(cw), free(cg);
        }
}

/* y in planes [o, yh, yw] (want) against channels-last y (got, pixel
 * stride ldy > o): the same floats, and the gaps past o untouched (gap). */
static void expect_hwc(const float *got, const float *want, int64_t o, int64_t ny, int64_t ldy,
                       float gap, const char *what) {
    for (int64_t p = 0; p < ny; p++) {
        for (int64_t c = 0; c < o; c++)
            if (memcmp(&got[p * ldy + c], &want[c * ny + p], sizeof(float)))
                fail_msg("%s channels-last: pixel %lld channel %lld is %.9g, planes %.9g", what,
                         (long long)p, (long long)c, (double)got[p * ldy + c],
                         (double)want[c * ny + p]);
        for (int64_t c = o; c < ldy; c++)
            if (got[p * ldy + c] != gap) fail_msg("%s channels-last: gap written", what);
    }
}

/* The fused pool + epilogue of every tier against the reference (bits),
 * and the reference against the epilogue of each window sum pooled as floats
 * (the order it replaces). Odd planes, channel counts around 16, pooled
 * widths past 16. Channels-last output (ldy) of every tier, the reference
 * included, against the planes. */
static void test_pool_epilogue(void **state) {
    (void)state;
    static const int64_t os[] = {1, 5, 16, 17, 33};
    static const int64_t hw[][2] = {{2, 2}, {5, 7}, {9, 40}, {3, 35}};
    for (size_t a = 0; a < sizeof os / sizeof os[0]; a++)
        for (size_t b = 0; b < sizeof hw / sizeof hw[0]; b++)
            for (int variant = 0; variant < 4; variant++) {
                const int64_t o = os[a], oh = hw[b][0], ow = hw[b][1], yh = oh / 2, yw = ow / 2;
                const bool bias = variant & 1, relu = variant & 2;
                const int64_t ny = yh * yw;
                int32_t *t = malloc(sizeof(int32_t) * (size_t)(oh * ow * o));
                int32_t *ws = malloc(sizeof(int32_t) * (size_t)o);
                float *sw = malloc(sizeof(float) * (size_t)o), *bs = malloc(sizeof(float) * (size_t)o);
                float *want = malloc(sizeof(float) * (size_t)(o * ny + 1));
                float *got = malloc(sizeof(float) * (size_t)(o * ny + 1));
                for (int64_t i = 0; i < oh * ow * o; i++) t[i] = (int32_t)(urand() % 200001) - 100000;
                for (int64_t c = 0; c < o; c++) {
                    ws[c] = (int32_t)(urand() % 4001) - 2000;
                    sw[c] = 0.002f + 0.01f * (frand() + 1.0f);
                    bs[c] = frand();
                }
                const int32_t za = (int32_t)(urand() % 256);
                const float sa = 0.003f;
                want[o * ny] = got[o * ny] = -7.0f;
                nn__ref_kernels()->int8.pool_epilogue(t, o, ow, yh, yw, ws, sa, za, sw,
                                                      bias ? bs : NULL, relu, want, 0);
                /* oracle: the epilogue of each sum, then the max of the floats */
                for (int64_t c = 0; c < o; c++)
                    for (int64_t py = 0; py < yh; py++)
                        for (int64_t px = 0; px < yw; px++) {
                            float m = -INFINITY;
                            for (int dy = 0; dy < 2; dy++)
                                for (int dx = 0; dx < 2; dx++) {
                                    int32_t acc = t[((2 * py + dy) * ow + 2 * px + dx) * o + c];
                                    float y = (float)(acc - za * ws[c]) * (sa * sw[c]);
                                    if (bias) y += bs[c];
                                    if (relu && !(y > 0.0f)) y = 0.0f;
                                    if (y > m) m = y;
                                }
                            float w = want[c * ny + py * yw + px];
                            if (memcmp(&m, &w, sizeof m))
                                fail_msg("reference pool o %lld %lldx%lld: %.9g, floats pooled %.9g",
                                         (long long)o, (long long)oh, (long long)ow, (double)w, (double)m);
                        }
                for (int tier = NN_TIER_REF + 1; tier < NN_TIER_COUNT; tier++) {
                    const nn_kernels *kt = nn__tier_kernels(tier);
                    if (!kt) continue;
                    for (int64_t i = 0; i < o * ny; i++) got[i] = -3.0f;
                    kt->int8.pool_epilogue(t, o, ow, yh, yw, ws, sa, za, sw, bias ? bs : NULL, relu,
                                           got, 0);
                    for (int64_t i = 0; i < o * ny; i++)
                        if (memcmp(&got[i], &want[i], sizeof(float)))
                            fail_msg("%s pool o %lld %lldx%lld variant %d: y[%lld] = %.9g, reference %.9g",
                                     kt->name, (long long)o, (long long)oh, (long long)ow, variant,
                                     (long long)i, (double)got[i], (double)want[i]);
                    assert_true(got[o * ny] == -7.0f); /* nothing written past the planes */
                }
                const int64_t ldy = o + 3;
                float *hwc = malloc(sizeof(float) * (size_t)(ny * ldy));
                for (int tier = NN_TIER_REF; tier < NN_TIER_COUNT; tier++) {
                    const nn_kernels *kt = nn__tier_kernels(tier);
                    if (!kt) continue;
                    for (int64_t i = 0; i < ny * ldy; i++) hwc[i] = -5.0f;
                    kt->int8.pool_epilogue(t, o, ow, yh, yw, ws, sa, za, sw, bias ? bs : NULL, relu,
                                           hwc, ldy);
                    expect_hwc(hwc, want, o, ny, ldy, -5.0f, kt->name);
                }
                free(hwc);
                free(t), free(ws), free(sw), free(bs), free(want), free(got);
            }
}

/* pad_hwc + im2row: a 2x3x4 image, 3x3 window, stride 2, padding 1, against
 * taps computed here (depth order (i*KW + j)*C + c). */
static void test_im2row(void **state) {
    (void)state;
    const int64_t c = 2, h = 3, w = 4, kh = 3, kw = 3, sh = 2, sw = 2, ph = 1, pw = 1;
    const int64_t oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1;
    const int64_t k = c * kh * kw, ld = nn__qk_pad(k) + 4;
    uint8_t x[24], xp[5 * 6 * 2], col[64 * 8];
    for (int i = 0; i < 24; i++) x[i] = (uint8_t)(i + 1);
    memset(col, 0xEE, sizeof col);
    const nn__int8_kernels *r = &nn__ref_kernels()->int8;
    r->pad_hwc(x, c, h, w, ph, pw, 77, xp);
    r->im2row(xp, c, w + 2 * pw, kh, kw, sh, sw, oh, ow, col, ld);
    for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++)
            for (int64_t q = 0; q < ld; q++) {
                uint8_t want = 0;
                if (q < k) {
                    int64_t i = q / (kw * c), j = q / c % kw, ch = q % c;
                    int64_t y = oy * sh - ph + i, xx = ox * sw - pw + j;
                    want = y < 0 || y >= h || xx < 0 || xx >= w ? 77 : x[(ch * h + y) * w + xx];
                }
                assert_int_equal(col[(oy * ow + ox) * ld + q], want);
            }
}

/* With VNNI the AVX-512 tier runs its own kernels (the VNNI file), not the
 * AVX2 tier's it starts from. */
/* The one-channel direct convolution with the fused pool (conv1_pool) of
 * every tier that takes a window, and the reference twin, against im2row +
 * the reference GEMM's raw sums + the reference pool_epilogue (bits): odd
 * planes (an odd conv width is cropped by the pool), strides, windows 1x1 ..
 * 4x4 and 3x2, channel counts around the 16-wide panels and past 4 panels,
 * zero points 0 and not, bias or none, ReLU or not, 1 and 2 threads. */
static void test_conv1_pool(void **state) {
    (void)state;
    static const int64_t shapes[][7] = {/* h, w, kh, kw, sh, sw, pad */
                                        {28, 28, 3, 3, 1, 1, 1}, {9, 31, 3, 3, 2, 1, 1},
                                        {7, 5, 1, 1, 1, 1, 0},   {11, 13, 4, 4, 1, 2, 2},
                                        {6, 17, 3, 2, 1, 3, 0},  {5, 40, 2, 3, 2, 2, 1}};
    static const int64_t ns[] = {1, 5, 16, 17, 32, 33, 70};
    const nn__int8_kernels *r = &nn__ref_kernels()->int8;
    int taken = 0, cases = 0;
    for (size_t b = 0; b < sizeof shapes / sizeof shapes[0]; b++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            const int64_t h = shapes[b][0], w = shapes[b][1], kh = shapes[b][2],
                          kw = shapes[b][3], sh = shapes[b][4], sw = shapes[b][5],
                          pd = shapes[b][6], n = ns[a];
            const int64_t hp = h + 2 * pd, wp = w + 2 * pd;
            const int64_t oh = (hp - kh) / sh + 1, ow = (wp - kw) / sw + 1;
            const int64_t yh = oh / 2, yw = ow / 2, ny = yh * yw;
            const int64_t k = kh * kw, kp = nn__qk_pad(k), npix = oh * ow;
            uint8_t *xp = malloc((size_t)(hp * wp + NN__Q_SLACK));
            uint8_t *col = malloc((size_t)(npix * kp + NN__Q_SLACK));
            int8_t *qw = malloc((size_t)(n * k)), *pw = malloc((size_t)nn__qpacked_bytes(n, k));
            int32_t *raw = malloc(sizeof(int32_t) * (size_t)(npix * n));
            int32_t *wsum = malloc(sizeof(int32_t) * (size_t)n);
            float *scale = malloc(sizeof(float) * (size_t)n), *bias = malloc(sizeof(float) * (size_t)n);
            float *want = malloc(sizeof(float) * (size_t)(n * ny + 1));
            float *got = malloc(sizeof(float) * (size_t)(n * ny + 1));
            float *hwc = malloc(sizeof(float) * (size_t)(ny * (n + 1)));
            for (int64_t i = 0; i < hp * wp; i++) xp[i] = (uint8_t)urand();
            memset(xp + hp * wp, 0, NN__Q_SLACK);
            for (int64_t i = 0; i < n * k; i++) qw[i] = (int8_t)((int)(urand() % 255) - 127);
            xp[0] = 255, qw[0] = -127; /* the extremes */
            for (int64_t i = 0; i < n; i++) {
                scale[i] = 1e-3f * (1.0f + frand() * 0.5f);
                bias[i] = frand();
            }
            r->pack(n, k, qw, k, pw);
            r->im2row(xp, 1, wp, kh, kw, sh, sw, oh, ow, col, kp);
            for (int w7 = 0; w7 < 2; w7++) { /* full range, and reduced (clamped) */
            r->colsum(n, k, pw, w7, wsum);
            static const float one = 1.0f;
            static const int32_t zero = 0;
            nn__qgemm g = {.m = npix, .n = n, .k = k, .a = col, .lda = kp, .w = pw,
                           .a_scale = &one, .a_zp = &zero, .ldc = n, .c32 = raw, .w7 = w7};
            r->gemm(&g);
            for (int f = 0; f < 4; f++) {
                const int32_t za = f & 1 ? 131 : 0;
                const float sa = 0.0173f;
                const bool relu = f >= 2;
                const float *bp = f == 1 ? NULL : bias;
                r->pool_epilogue(raw, n, ow, yh, yw, wsum, sa, za, scale, bp, relu, want, 0);
                for (int t = NN_TIER_REF; t < NN_TIER_COUNT; t++) {
                    const nn_kernels *kt = nn__tier_kernels(t);
                    if (!kt || (t != NN_TIER_REF && !kt->int8.conv1_takes(kh, kw, w7))) continue;
                    for (int thr = 1; thr <= 2; thr++) {
                        nn_set_num_threads(thr);
                        for (int64_t i = 0; i <= n * ny; i++) got[i] = -777.0f;
                        assert_true(kt->int8.conv1_pool(xp, wp, pw, n, kh, kw, sh, sw, yh, yw, wsum,
                                                        sa, za, scale, bp, relu, w7, got, 0));
                        if (memcmp(got, want, sizeof(float) * (size_t)(n * ny)))
                            fail_msg("%s conv1_pool %lldx%lld k %lldx%lld s %lld,%lld n %lld "
                                     "za %d bias %d relu %d w7 %d differs from the reference",
                                     kt->name, (long long)h, (long long)w, (long long)kh,
                                     (long long)kw, (long long)sh, (long long)sw, (long long)n,
                                     za, bp != NULL, relu, w7);
                        assert_true(got[n * ny] == -777.0f);
                        /* channels-last (pixel stride n + 1) */
                        for (int64_t i = 0; i < ny * (n + 1); i++) hwc[i] = -555.0f;
                        assert_true(kt->int8.conv1_pool(xp, wp, pw, n, kh, kw, sh, sw, yh, yw, wsum,
                                                        sa, za, scale, bp, relu, w7, hwc, n + 1));
                        expect_hwc(hwc, want, n, ny, n + 1, -555.0f, kt->name);
                        taken += t != NN_TIER_REF;
                        cases++;
                    }
                }
            }
            }
            nn_set_num_threads(1);
            free(xp), free(col), free(qw), free(pw), free(raw), free(wsum), free(scale), free(bias),
                free(want), free(got), free(hwc);
        }
    printf("conv1_pool: %d runs, %d by a tier kernel\n", cases, taken);
}

/* conv_hwc (activation rows read in place from the padded channels-last
 * image) of every tier that takes a shape, and the reference twin, against
 * im2row + the reference GEMM's raw sums (bits): channel counts 4 .. 36,
 * odd planes, strides, windows 1x1 .. 5x5, output channels around the
 * panels, columns past n untouched, 1 and 2 threads. */
static void test_conv_hwc(void **state) {
    (void)state;
    static const int64_t shapes[][8] = {/* c, h, w, kh, kw, sh, sw, pad */
                                        {32, 14, 14, 3, 3, 1, 1, 1}, {4, 9, 31, 3, 3, 2, 1, 1},
                                        {8, 7, 5, 1, 1, 1, 1, 0},    {12, 11, 13, 5, 5, 1, 2, 2},
                                        {36, 6, 17, 3, 2, 1, 3, 0},  {16, 5, 9, 2, 3, 2, 2, 1}};
    static const int64_t ns[] = {1, 17, 32, 33, 64, 70};
    const nn__int8_kernels *r = &nn__ref_kernels()->int8;
    int taken = 0;
    for (size_t b = 0; b < sizeof shapes / sizeof shapes[0]; b++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            const int64_t c = shapes[b][0], h = shapes[b][1], w = shapes[b][2], kh = shapes[b][3],
                          kw = shapes[b][4], sh = shapes[b][5], sw = shapes[b][6],
                          pd = shapes[b][7], n = ns[a];
            const int64_t hp = h + 2 * pd, wp = w + 2 * pd;
            const int64_t oh = (hp - kh) / sh + 1, ow = (wp - kw) / sw + 1;
            const int64_t k = kh * kw * c, kp = nn__qk_pad(k), ldc = n + 3, npix = oh * ow;
            const int64_t xn = hp * wp * c;
            uint8_t *xp = malloc((size_t)(xn + NN__Q_SLACK));
            uint8_t *col = malloc((size_t)(npix * kp + NN__Q_SLACK));
            int8_t *qw = malloc((size_t)(n * k)), *pw = malloc((size_t)nn__qpacked_bytes(n, k));
            int32_t *want = malloc(sizeof(int32_t) * (size_t)(npix * ldc));
            int32_t *got = malloc(sizeof(int32_t) * (size_t)(npix * ldc));
            for (int64_t i = 0; i < xn; i++) xp[i] = (uint8_t)urand();
            memset(xp + xn, 0, NN__Q_SLACK);
            for (int64_t i = 0; i < n * k; i++) qw[i] = (int8_t)((int)(urand() % 255) - 127);
            xp[0] = 255, qw[0] = -127;
            r->pack(n, k, qw, k, pw);
            r->im2row(xp, c, wp, kh, kw, sh, sw, oh, ow, col, kp);
            static const float one = 1.0f;
            static const int32_t zero = 0;
            nn__qgemm g = {.m = npix, .n = n, .k = k, .a = col, .lda = kp, .w = pw,
                           .a_scale = &one, .a_zp = &zero, .ldc = ldc, .c32 = want};
            r->gemm(&g);
            for (int t = NN_TIER_REF; t < NN_TIER_COUNT; t++) {
                const nn_kernels *kt = nn__tier_kernels(t);
                if (!kt || (t != NN_TIER_REF && !kt->int8.conv_hwc_takes(c, kw))) continue;
                for (int thr = 1; thr <= 2; thr++) {
                    nn_set_num_threads(thr);
                    for (int64_t i = 0; i < npix * ldc; i++) got[i] = 0x5A5A5A5A;
                    assert_true(kt->int8.conv_hwc(xp, c, wp, kh, kw, sh, sw, oh, ow, pw, n, got, ldc));
                    for (int64_t s = 0; s < npix; s++)
                        for (int64_t j = 0; j < ldc; j++) {
                            const int32_t e = j < n ? want[s * ldc + j] : 0x5A5A5A5A;
                            if (got[s * ldc + j] != e)
                                fail_msg("%s conv_hwc c %lld %lldx%lld k %lldx%lld s %lld,%lld "
                                         "n %lld: c32[%lld, %lld] = %d, expected %d",
                                         kt->name, (long long)c, (long long)h, (long long)w,
                                         (long long)kh, (long long)kw, (long long)sh,
                                         (long long)sw, (long long)n, (long long)s, (long long)j,
                                         got[s * ldc + j], e);
                        }
                    taken += t != NN_TIER_REF;
                }
            }
            nn_set_num_threads(1);
            free(xp), free(col), free(qw), free(pw), free(want), free(got);
        }
    printf("conv_hwc: %d tier runs checked\n", taken);
}

/* The integer Winograd F(2x2, 3x3) (wino_weight + wino_conv) of every tier
 * that takes a shape, and the reference twin, against im2row + the
 * reference GEMM's raw sums (bits) on the pixels a 2x2 pool reads, and
 * every tier's transformed weights against the reference's; the fused
 * pool (wino_pool) against pool_epilogue of those sums (bits; planes and
 * channels-last, zero point 0 and not, bias or none, ReLU or not); other
 * pixels and columns past n untouched. Odd and even planes (an odd conv
 * size leaves a row or column the pool drops), padding 1 and 0, odd channel
 * counts (a half-filled last pair), output channels around the panels,
 * full-range and w7 (clamped) weights, 1 and 2 threads; and the extremes at
 * the channel limit NN__QWG_CMAX (bytes 0/255, weights -128/127). */
static void test_wino(void **state) {
    (void)state;
    static const int64_t shapes[][4] = {/* c, h, w, pad */
                                        {32, 14, 14, 1}, {5, 7, 9, 1},  {4, 6, 5, 0},
                                        {17, 11, 13, 1}, {33, 4, 4, 1}, {7, 5, 12, 0},
                                        {1024, 2, 3, 1}};
    static const int64_t ns[] = {1, 8, 17, 32, 64, 70};
    const nn__int8_kernels *r = &nn__ref_kernels()->int8;
    int taken = 0;
    for (size_t b = 0; b < sizeof shapes / sizeof shapes[0]; b++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            const int64_t c = shapes[b][0], h = shapes[b][1], w = shapes[b][2],
                          pd = shapes[b][3], n = ns[a];
            const bool extreme = c == NN__QWG_CMAX;
            if (extreme && n > 17) continue;
            const int64_t hp = h + 2 * pd, wp = w + 2 * pd, oh = hp - 2, ow = wp - 2;
            const int64_t yh = oh / 2, yw = ow / 2;
            const int64_t k = 9 * c, kp = nn__qk_pad(k), ldc = n + 3, npix = oh * ow;
            const int64_t xn = hp * wp * c;
            uint8_t *xp = malloc((size_t)(xn + NN__Q_SLACK));
            uint8_t *col = malloc((size_t)(npix * kp + NN__Q_SLACK));
            int8_t *qw = malloc((size_t)(n * k)), *pw = malloc((size_t)nn__qpacked_bytes(n, k));
            int16_t *u = malloc(sizeof(int16_t) * (size_t)nn__qwg_elems(n, c));
            int16_t *uref = malloc(sizeof(int16_t) * (size_t)nn__qwg_elems(n, c));
            int32_t *want = malloc(sizeof(int32_t) * (size_t)(npix * ldc));
            int32_t *got = malloc(sizeof(int32_t) * (size_t)(npix * ldc));
            const int64_t ny = yh * yw;
            int32_t *wsum = malloc(sizeof(int32_t) * (size_t)n);
            int32_t *wantc = malloc(sizeof(int32_t) * (size_t)(npix * n));
            float *scale = malloc(sizeof(float) * (size_t)n), *bias = malloc(sizeof(float) * (size_t)n);
            float *pwant = malloc(sizeof(float) * (size_t)(n * ny + 1));
            float *pgot = malloc(sizeof(float) * (size_t)(n * ny + 1));
            float *phwc = malloc(sizeof(float) * (size_t)(ny * (n + 1)));
            for (int64_t i = 0; i < n; i++) {
                scale[i] = 1e-3f * (1.0f + frand() * 0.5f);
                bias[i] = frand();
            }
            for (int64_t i = 0; i < xn; i++)
                xp[i] = extreme ? (urand() & 1 ? 255 : 0) : (uint8_t)urand();
            memset(xp + xn, 0, NN__Q_SLACK);
            for (int64_t i = 0; i < n * k; i++)
                qw[i] = extreme ? (urand() & 1 ? 127 : -128) : (int8_t)((int)(urand() % 256) - 128);
            xp[0] = 255, qw[0] = -127;
            r->pack(n, k, qw, k, pw);
            r->im2row(xp, c, wp, 3, 3, 1, 1, oh, ow, col, kp);
            for (int w7 = 0; w7 < 2; w7++) {
                static const float one = 1.0f;
                static const int32_t zero = 0;
                nn__qgemm g = {.m = npix, .n = n, .k = k, .a = col, .lda = kp, .w = pw,
                               .a_scale = &one, .a_zp = &zero, .ldc = ldc, .c32 = want,
                               .w7 = w7};
                r->gemm(&g);
                for (int t = NN_TIER_REF; t < NN_TIER_COUNT; t++) {
                    const nn_kernels *kt = nn__tier_kernels(t);
                    if (!kt || (t != NN_TIER_REF && !kt->int8.wino_takes(c, n))) continue;
                    kt->int8.wino_weight(n, c, pw, w7, u);
                    if (t == NN_TIER_REF) { /* every tier's U' is the reference's */
                        memcpy(uref, u, sizeof(int16_t) * (size_t)nn__qwg_elems(n, c));
                    } else if (memcmp(u, uref, sizeof(int16_t) * (size_t)nn__qwg_elems(n, c))) {
                        fail_msg("%s wino_weight c %lld n %lld w7 %d differs from the reference",
                                 kt->name, (long long)c, (long long)n, w7);
                    }
                    for (int thr = 1; thr <= 2; thr++) {
                        nn_set_num_threads(thr);
                        for (int64_t i = 0; i < npix * ldc; i++) got[i] = 0x5A5A5A5A;
                        assert_true(kt->int8.wino_conv(xp, c, wp, yh, yw, u, n, ow, got, ldc));
                        for (int64_t s = 0; s < npix; s++)
                            for (int64_t j = 0; j < ldc; j++) {
                                const bool pooled = s / ow < 2 * yh && s % ow < 2 * yw;
                                const int32_t e = j < n && pooled ? want[s * ldc + j] : 0x5A5A5A5A;
                                if (got[s * ldc + j] != e)
                                    fail_msg("%s wino c %lld %lldx%lld pad %lld n %lld w7 %d: "
                                             "c32[%lld, %lld] = %d, expected %d",
                                             kt->name, (long long)c, (long long)h, (long long)w,
                                             (long long)pd, (long long)n, w7, (long long)s,
                                             (long long)j, got[s * ldc + j], e);
                            }
                        /* wino_pool: the floats of pool_epilogue on those sums */
                        for (int f = 0; f < 4; f++) {
                            const int32_t za = f & 1 ? 131 : 0;
                            const bool relu = f >= 2;
                            const float *bp = f == 1 ? NULL : bias;
                            r->colsum(n, k, pw, w7, wsum);
                            for (int64_t q = 0; q < npix * n; q++) /* rows of n sums */
                                wantc[q] = want[q / n * ldc + q % n];
                            r->pool_epilogue(wantc, n, ow, yh, yw, wsum, 0.0173f, za, scale, bp,
                                             relu, pwant, 0);
                            for (int64_t i = 0; i <= n * ny; i++) pgot[i] = -777.0f;
                            assert_true(kt->int8.wino_pool(xp, c, wp, yh, yw, u, n, wsum, 0.0173f,
                                                           za, scale, bp, relu, pgot, 0));
                            if (memcmp(pgot, pwant, sizeof(float) * (size_t)(n * ny)))
                                fail_msg("%s wino_pool c %lld %lldx%lld pad %lld n %lld w7 %d "
                                         "za %d bias %d relu %d differs from pool_epilogue",
                                         kt->name, (long long)c, (long long)h, (long long)w,
                                         (long long)pd, (long long)n, w7, za, bp != NULL, relu);
                            assert_true(pgot[n * ny] == -777.0f);
                            for (int64_t i = 0; i < ny * (n + 1); i++) phwc[i] = -555.0f;
                            assert_true(kt->int8.wino_pool(xp, c, wp, yh, yw, u, n, wsum, 0.0173f,
                                                           za, scale, bp, relu, phwc, n + 1));
                            expect_hwc(phwc, pwant, n, ny, n + 1, -555.0f, kt->name);
                        }
                        taken += t != NN_TIER_REF;
                    }
                }
            }
            nn_set_num_threads(1);
            free(xp), free(col), free(qw), free(pw), free(u), free(uref), free(want), free(got);
            free(wsum), free(wantc), free(scale), free(bias), free(pwant), free(pgot), free(phwc);
        }
    printf("wino: %d tier runs checked\n", taken);
}

static void test_vnni_installed(void **state) {
    (void)state;
    const nn_kernels *a2 = nn__tier_kernels(NN_TIER_AVX2), *a5 = nn__tier_kernels(NN_TIER_AVX512);
    if (!a2 || !a5 || !nn__cpu()->avx512_vnni) skip();
    assert_true(a5->int8.gemm != a2->int8.gemm && a5->int8.quantize_u8 != a2->int8.quantize_u8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_vs_reference),   cmocka_unit_test(test_gemm_extreme),
        cmocka_unit_test(test_gemm_w7),
        cmocka_unit_test(test_quantize_vs_reference), cmocka_unit_test(test_quantize_meaning),
        cmocka_unit_test(test_im2row), cmocka_unit_test(test_pool_epilogue),
        cmocka_unit_test(test_im2row_tiers), cmocka_unit_test(test_vnni_installed),
        cmocka_unit_test(test_conv1_pool),
        cmocka_unit_test(test_conv_hwc),
        cmocka_unit_test(test_wino),
    };
    printf("int8 kernels: tier %s, AVX-512 VNNI %s\n", nn__kernels()->name,
           nn__cpu()->avx512_vnni ? "yes" : "no");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
