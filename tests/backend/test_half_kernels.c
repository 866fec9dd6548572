/* The half-precision domain of every tier this machine runs (backend/half.h)
 * against the reference kernels: conversions bit for bit on every length
 * 0..70 and a long run, from unaligned pointers, over values that exercise
 * every rounding case (NaN payloads, infinities, f16 and f32 denormals, the
 * overflow edges, exact ties). */
#include "testutil.h"
#include "nn_internal.h"
#include "core/half.h"
#include "backend/backend.h"
#include "backend/tier.h"
#include "backend/nn_backend_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A value from one of the interesting classes. */
static float special(void) {
    static const uint32_t edge[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
                                    0xffc00001, 0x7f800001, 0x7fa5a5a5, 0x00000001, 0x807fffff,
                                    0x00400000, 0x477ff000, 0x477fefff, 0xc77ff000, 0x33000000,
                                    0x33000001, 0x38800000, 0x387fffff, 0x3f801000, 0x3f803000,
                                    0x3f808000, 0x3f818000, 0x7f7fffff, 0x7f7f8000, 0xff7f7fff};
    switch (rnd32() % 5) {
    case 0: return bitsf(edge[rnd32() % (sizeof edge / sizeof edge[0])]);
    case 1: return bitsf(rnd32());                                 /* anything */
    case 2: return bitsf((rnd32() & 0x80000000u) | (rnd32() % 0x00800000u)); /* f32 denormal */
    case 3: return bitsf((rnd32() & 0x80000000u) | (0x33000000u + rnd32() % 0x14800000u));
    default: return bitsf((rnd32() & 0xffff0000u) | (rnd32() & 1 ? 0x8000u : 0x7fffu));
    }
}

static void check_cvt(const nn__half_kernels *k, const nn__half_kernels *r, const char *tier) {
    const size_t maxn = 4099;
    float *fin = malloc((maxn + 2) * 4), *fo = malloc((maxn + 2) * 4), *fr = malloc(maxn * 4);
    uint16_t *hin = malloc((maxn + 2) * 2), *ho = malloc((maxn + 2) * 2), *hr = malloc(maxn * 2);
    for (size_t n = 0; n <= maxn; n = n < 70 ? n + 1 : n == 70 ? 1000 : n == 1000 ? maxn : maxn + 1) {
        float *x = fin + 1; /* unaligned on purpose */
        uint16_t *h = hin + 1;
        for (size_t i = 0; i < n; i++) x[i] = special(), h[i] = (uint16_t)rnd32();
        for (int bf = 0; bf < 2; bf++) {
            const char *what = bf ? "bf16" : "f16";
            (bf ? k->cvt.f32_to_bf16 : k->cvt.f32_to_f16)(x, ho + 1, n);
            (bf ? r->cvt.f32_to_bf16 : r->cvt.f32_to_f16)(x, hr, n);
            for (size_t i = 0; i < n; i++)
                if (ho[1 + i] != hr[i])
                    fail_msg("%s f32->%s n=%zu [%zu]: %.9g -> %04x, reference %04x", tier, what,
                             n, i, (double)x[i], ho[1 + i], hr[i]);
            (bf ? k->cvt.bf16_to_f32 : k->cvt.f16_to_f32)(h, fo + 1, n);
            (bf ? r->cvt.bf16_to_f32 : r->cvt.f16_to_f32)(h, fr, n);
            if (n && memcmp(fo + 1, fr, n * 4) != 0)
                fail_msg("%s %s->f32 n=%zu differs from the reference", tier, what, n);
            /* the kernel wrote nothing past n */
            ho[1 + n] = 0xabcd;
            (bf ? k->cvt.f32_to_bf16 : k->cvt.f32_to_f16)(x, ho + 1, n);
            assert_int_equal(ho[1 + n], 0xabcd);
        }
    }
    free(fin), free(fo), free(fr), free(hin), free(ho), free(hr);
}

static void test_conversions(void **state) {
    (void)state;
    const nn_kernels *ref = nn__ref_kernels();
    int ran = 0;
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        const nn_kernels *k = nn__tier_kernels(t);
        if (!k) continue;
        check_cvt(&k->half, &ref->half, nn__tier_name(t));
        ran++;
    }
    assert_true(ran >= 1);
    printf("conversions checked on %d tier(s); AVX-512 BF16 %s\n", ran,
           nn__cpu()->avx512_bf16 ? "present" : "absent");
}

/* nn_tensor_to reaches the active tier's kernels through core's hook: force
 * each tier in turn and compare with the reference formulas. */
static void test_tensor_to_every_tier(void **state) {
    (void)state;
    int64_t n = 1031;
    float *x = malloc((size_t)n * 4);
    uint16_t *got = malloc((size_t)n * 2), *want = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) x[i] = special();
    nn_tensor *f = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, &n, 1, x));
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        if (!nn__backend_force_tier(t)) continue;
        for (int bf = 0; bf < 2; bf++) {
            nn_tensor *h = TU_NN(nn_tensor_to(f, bf ? NN_DTYPE_BF16 : NN_DTYPE_F16));
            TU_OK(nn_tensor_copy_to(h, got, (size_t)n * 2));
            for (int64_t i = 0; i < n; i++) want[i] = bf ? nn__f32_to_bf16(x[i]) : nn__f32_to_f16(x[i]);
            assert_memory_equal(got, want, (size_t)n * 2);
            nn_tensor_free(h);
        }
    }
    nn__backend_force_tier(-1);
    nn_tensor_free(f);
    free(x), free(got), free(want);
}


/* ------------------------------------------------------------ half GEMM */

/* Per-element bound for a sum of k products: 4 (k + 2) eps sum |a||b|, plus,
 * where the kernel rounds A to bf16 (vdpbf16ps), 2^-8 sum |a||b| (A's
 * relative rounding 2^-9, doubled for margin). */
static void check_gemm_case(const nn__half_kernels *hk, const nn__half_kernels *rk, bool bf16,
                            bool trans_b, int64_t m, int64_t n, int64_t k, const char *tier) {
    const int64_t lda = k + 3, ldb = (trans_b ? k : n) + 5, ldc = n + 2;
    const int64_t brows = trans_b ? n : k;
    float *a = malloc(sizeof(float) * (size_t)(m * lda + 1)) , *c = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    float *cr = malloc(sizeof(float) * (size_t)(m * ldc + 1)), *bound = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    uint16_t *b = malloc(sizeof(uint16_t) * (size_t)(brows * ldb + 1));
    float *af = malloc(sizeof(float) * (size_t)(m * lda + 1));
    uint16_t *babs = malloc(sizeof(uint16_t) * (size_t)(brows * ldb + 1));
    float *ap = a + 1; /* unaligned */
    uint16_t *bp = b + 1;
    for (int64_t i = 0; i < m * lda; i++) ap[i] = (float)((int)(rnd32() % 2001) - 1000) / 250.0f;
    for (int64_t i = 0; i < brows * ldb; i++) {
        float v = (float)((int)(rnd32() % 2001) - 1000) / 500.0f;
        bp[i] = bf16 ? nn__f32_to_bf16(v) : nn__f32_to_f16(v);
        babs[i] = bp[i] & 0x7fff;
    }
    for (int64_t i = 0; i < m * lda; i++) af[i] = fabsf(ap[i]);
    for (int64_t i = 0; i < m * ldc; i++) c[i] = cr[i] = 12345.0f;
    hk->gemm(bf16, trans_b, m, n, k, ap, lda, bp, ldb, c, ldc);
    rk->gemm(bf16, trans_b, m, n, k, ap, lda, bp, ldb, cr, ldc);
    rk->gemm(bf16, trans_b, m, n, k, af, lda, babs, ldb, bound, ldc);
    const bool rounds = bf16 && trans_b && hk->gemm_rounds_a();
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ldc; j++) {
            const int64_t e = i * ldc + j;
            if (j >= n) { /* padding between rows is untouched */
                if (c[e] != 12345.0f) fail_msg("%s: wrote C[%lld, %lld] past n", tier, (long long)i, (long long)j);
                continue;
            }
            double tol = 4.0 * (double)(k + 2) * 1.2e-7 * bound[e] + 1e-30;
            if (rounds) tol += bound[e] / 256.0;
            if (!(fabs((double)c[e] - (double)cr[e]) <= tol))
                fail_msg("%s %s %s m=%lld n=%lld k=%lld: C[%lld,%lld] = %.9g, reference %.9g (tol %.3g)",
                         tier, bf16 ? "bf16" : "f16", trans_b ? "NT" : "NN", (long long)m,
                         (long long)n, (long long)k, (long long)i, (long long)j, (double)c[e],
                         (double)cr[e], tol);
        }
    free(a), free(c), free(cr), free(bound), free(b), free(af), free(babs);
}

static void test_gemm_every_tier(void **state) {
    (void)state;
    const nn_kernels *ref = nn__ref_kernels();
    static const int64_t ms[] = {1, 2, 3, 4, 5, 7, 9, 17};
    static const int64_t ns[] = {1, 3, 4, 5, 15, 17, 33, 65, 130};
    static const int64_t ks[] = {0, 1, 7, 8, 15, 16, 17, 31, 33, 64, 100, 257, 777};
    int cases = 0;
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        const nn_kernels *k = nn__tier_kernels(t);
        if (!k) continue;
        for (int bf = 0; bf < 2; bf++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
                    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki += 1 + (ni + mi) % 2) {
                            check_gemm_case(&k->half, &ref->half, bf, tb, ms[mi], ns[ni], ks[ki],
                                            nn__tier_name(t));
                            cases++;
                        }
        /* batch 1 with long rows, few of them (AVX512_BF16: vdpbf16ps, not the GEMV) */
        static const int64_t longk[][2] = {{37, 2500}, {128, 3136}, {9, 2048}, {513, 2049},
                                              {20, 8250}, {5, 4096}, {3, 4097}};
        for (int bf = 0; bf < 2; bf++)
            for (size_t i = 0; i < sizeof longk / sizeof longk[0]; i++, cases++)
                check_gemm_case(&k->half, &ref->half, bf, true, 1, longk[i][0], longk[i][1],
                                nn__tier_name(t));
    }
    printf("half GEMM: %d cases\n", cases);
}

/* Results do not depend on the thread count (N is split, each output summed
 * by one thread); m = 1 takes the batch-1 GEMV kernels. */
static void test_gemm_threads(void **state) {
    (void)state;
    const int64_t m = 3, n = 1001, k = 517;
    float *a = malloc(sizeof(float) * (size_t)(m * k)), *c1 = malloc(sizeof(float) * (size_t)(m * n)),
          *c2 = malloc(sizeof(float) * (size_t)(m * n));
    uint16_t *b = malloc(sizeof(uint16_t) * (size_t)(n * k));
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)((int)(rnd32() % 200) - 100) / 64.0f;
    for (int64_t i = 0; i < n * k; i++) b[i] = nn__f32_to_bf16((float)((int)(rnd32() % 200) - 100) / 32.0f);
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        const nn_kernels *kt = nn__tier_kernels(t);
        if (!kt) continue;
        for (int tb = 0; tb < 2; tb++)
            for (int64_t mm = 1; mm <= m; mm += m - 1) {
                nn_set_num_threads(1);
                kt->half.gemm(true, tb, mm, n, k, a, k, b, tb ? k : n, c1, n);
                nn_set_num_threads(2);
                kt->half.gemm(true, tb, mm, n, k, a, k, b, tb ? k : n, c2, n);
                assert_memory_equal(c1, c2, sizeof(float) * (size_t)(mm * n));
            }
    }
    nn_set_num_threads(1);
    free(a), free(c1), free(c2), free(b);
}

/* ----------------------------------------------- half-weight convolution */

/* The twin of the AVX512_BF16 Winograd (pooled 3x3 convolutions with >= 8
 * channels, x86/avx512/conv_bf16.c): U = G g Gᵀ and V = Bᵀ d B computed in
 * f32 in the kernel's order of operations (so the same f32 values), rounded
 * to bf16 (nn__f32_to_bf16: the test data hold no denormals), the 16
 * products summed over channels in double, Y = Aᵀ M A, the 2x2 max, bias,
 * ReLU. tol[i]: what the kernel's f32 sums may differ by, 4 (c + 12) eps
 * times the same sums of absolute products. */
static float bf16r(float v) { return nn__bf16_to_f32(nn__f32_to_bf16(v)); }

static void wino_bf16_twin(const nn__conv2d *d, const float *x, const uint16_t *w, const float *bias,
                           bool relu, float *y, double *tol) {
    const int64_t py = d->g.oh / 2, px = d->g.ow / 2, C = d->c;
    float *u = malloc(sizeof(float) * (size_t)(d->o * C * 16));
    for (int64_t oc = 0; oc < d->o * C; oc++) {
        float g[9], t[4][3];
        for (int k = 0; k < 9; k++) g[k] = nn__bf16_to_f32(w[oc * 9 + k]);
        for (int k = 0; k < 3; k++) {
            const float a = g[k], b = 0.5f * g[3 + k], c = g[6 + k], h = 0.5f * (a + c);
            t[0][k] = a, t[1][k] = h + b, t[2][k] = h - b, t[3][k] = c;
        }
        for (int i = 0; i < 4; i++) {
            const float a = t[i][0], b = 0.5f * t[i][1], c = t[i][2], h = 0.5f * (a + c);
            float *ui = u + oc * 16 + 4 * i;
            ui[0] = bf16r(a), ui[1] = bf16r(h + b), ui[2] = bf16r(h - b), ui[3] = bf16r(c);
        }
    }
    float *v = malloc(sizeof(float) * (size_t)(C * 16));
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t ty = 0; ty < py; ty++)
            for (int64_t tx = 0; tx < px; tx++) {
                for (int64_t c = 0; c < C; c++) { /* V of this tile's 4x4 patch */
                    float dd[4][4], t[4][4];
                    for (int r = 0; r < 4; r++)
                        for (int q = 0; q < 4; q++) {
                            const int64_t iy = 2 * ty + r - d->g.ph, ix = 2 * tx + q - d->g.pw;
                            dd[r][q] = iy >= 0 && iy < d->h && ix >= 0 && ix < d->w
                                           ? x[((n * C + c) * d->h + iy) * d->w + ix]
                                           : 0.0f;
                        }
                    for (int q = 0; q < 4; q++) {
                        t[0][q] = dd[0][q] - dd[2][q], t[1][q] = dd[1][q] + dd[2][q];
                        t[2][q] = dd[2][q] - dd[1][q], t[3][q] = dd[1][q] - dd[3][q];
                    }
                    for (int i = 0; i < 4; i++) {
                        float *vi = v + c * 16 + 4 * i;
                        vi[0] = bf16r(t[i][0] - t[i][2]), vi[1] = bf16r(t[i][1] + t[i][2]);
                        vi[2] = bf16r(t[i][2] - t[i][1]), vi[3] = bf16r(t[i][1] - t[i][3]);
                    }
                }
                for (int64_t o = 0; o < d->o; o++) {
                    double m[16] = {0}, ma[16] = {0};
                    for (int64_t c = 0; c < C; c++)
                        for (int p = 0; p < 16; p++) {
                            const double t = (double)u[(o * C + c) * 16 + p] * v[c * 16 + p];
                            m[p] += t, ma[p] += fabs(t);
                        }
                    double s0[4], s1[4], yy[4], ya = 0;
                    for (int k = 0; k < 4; k++) {
                        s0[k] = m[k] + m[4 + k] + m[8 + k];
                        s1[k] = m[4 + k] - m[8 + k] - m[12 + k];
                    }
                    yy[0] = s0[0] + s0[1] + s0[2], yy[1] = s0[1] - s0[2] - s0[3];
                    yy[2] = s1[0] + s1[1] + s1[2], yy[3] = s1[1] - s1[2] - s1[3];
                    for (int p = 0; p < 16; p++) ya += ma[p];
                    double mx = yy[0];
                    for (int k = 1; k < 4; k++) mx = yy[k] > mx ? yy[k] : mx;
                    if (bias) mx += bias[o];
                    if (relu && mx < 0) mx = 0;
                    const int64_t i = ((n * d->o + o) * py + ty) * px + tx;
                    y[i] = (float)mx;
                    tol[i] = 4.0 * (double)(C + 12) * 1.2e-7 * (ya + (bias ? fabs(bias[o]) : 0)) + 1e-30;
                }
            }
    free(u), free(v);
}

/* One shape: every tier's conv_fwd, where its conv_passes takes the shape,
 * against the reference twin (w widened, f32 direct convolution). Bound per
 * element: the twin run on |x|, |w|, |bias|: 4 (k + 2) eps of it, plus
 * 2^-8 of it where the kernel rounds x to bf16 (vdpbf16ps). The 2x2 pool
 * and the ReLU are 1-Lipschitz, so the pooled bound covers them. Also: the
 * same bits on 1 and 2 threads, and nothing written past the output. */
static int check_conv_case(const nn_kernels *k, const nn_kernels *r, bool bf16, int64_t n,
                           int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw,
                           int64_t sh, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool bias,
                           bool relu, bool pool, const char *tier) {
    nn__conv2d d = {.n = n, .c = c, .h = h, .w = w, .o = o};
    d.g = (nn__win2d){kh, kw, sh, 1, ph, pw, dh, dw, 0, 0};
    d.g.oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    d.g.ow = (w + 2 * pw - dw * (kw - 1) - 1) + 1;
    if (d.g.oh < 1 || d.g.ow < 1 || (pool && (d.g.oh < 2 || d.g.ow < 2))) return 0;
    const unsigned want_pass = pool ? NN_CONV_FWD_POOL : NN_CONV_FWD;
    if (!(k->half.conv_passes(bf16, &d) & want_pass)) return 0;
    const int64_t nx = n * c * h * w, nw = o * c * kh * kw;
    const int64_t ny = n * o * (pool ? (d.g.oh / 2) * (d.g.ow / 2) : d.g.oh * d.g.ow);
    float *x = malloc(sizeof(float) * (size_t)(nx + 1)), *ax = malloc(sizeof(float) * (size_t)nx);
    float *b = malloc(sizeof(float) * (size_t)o), *ab = malloc(sizeof(float) * (size_t)o);
    uint16_t *wh = malloc(sizeof(uint16_t) * (size_t)(nw + 1)), *aw = malloc(sizeof(uint16_t) * (size_t)nw);
    float *got = malloc(sizeof(float) * (size_t)(ny + 4)), *got2 = malloc(sizeof(float) * (size_t)ny);
    float *want = malloc(sizeof(float) * (size_t)ny), *bound = malloc(sizeof(float) * (size_t)ny);
    float *xp = x + 1; /* unaligned on purpose */
    uint16_t *wp = wh + 1;
    for (int64_t i = 0; i < nx; i++) {
        xp[i] = (float)((int)(rnd32() % 2001) - 1000) / 300.0f;
        ax[i] = fabsf(xp[i]);
    }
    for (int64_t i = 0; i < nw; i++) {
        const float v = (float)((int)(rnd32() % 2001) - 1000) / 700.0f;
        wp[i] = bf16 ? nn__f32_to_bf16(v) : nn__f32_to_f16(v);
        aw[i] = wp[i] & 0x7fff;
    }
    for (int64_t i = 0; i < o; i++) {
        b[i] = (float)((int)(rnd32() % 201) - 100) / 50.0f;
        ab[i] = fabsf(b[i]);
    }
    for (int64_t i = 0; i < ny + 4; i++) got[i] = 12345.0f;
    assert_true(r->half.conv_fwd(bf16, &d, xp, wp, bias ? b : NULL, relu, pool, want));
    assert_true(r->half.conv_fwd(bf16, &d, ax, aw, bias ? ab : NULL, false, pool, bound));
    nn_set_num_threads(1);
    assert_true(k->half.conv_fwd(bf16, &d, xp, wp, bias ? b : NULL, relu, pool, got));
    nn_set_num_threads(2);
    assert_true(k->half.conv_fwd(bf16, &d, xp, wp, bias ? b : NULL, relu, pool, got2));
    nn_set_num_threads(1);
    const double kk = (double)(c * kh * kw);
    /* x is rounded to bf16 only by the vdpbf16ps kernel (bf16 weights on a
     * tier with AVX512_BF16); the others multiply the exact f32 x */
    double xr = bf16 && k->half.gemm_rounds_a() ? 1.0 / 256.0 : 0.0;
    /* ... and with the 2x2 pool, 3x3, unit stride and dilation and >= 8
     * channels it runs Winograd F(2x2, 3x3) with U = G g Gᵀ and V = Bᵀ d B
     * rounded to bf16 (relative 2^-9 each): each output's error is then at
     * most 2^-8 times the same transforms on absolute values, which are at
     * most 8 times the direct sums of |x| |w| (per axis: |d0 g0| + |d2 g0| +
     * (|d1| + |d2|)(|g0| + |g1| + |g2|) against |d0 g0| + |d1 g1| + |d2 g2|,
     * i.e. 8/3; 64/9 for both), plus the f32 Winograd's own rounding */
    const bool wino = xr > 0 && pool && kh == 3 && kw == 3 && sh == 1 && dh == 1 && dw == 1 &&
                      c >= 8 && 2 * o >= 16;
    if (wino) {
        xr = 8.0 / 256.0 + 32.0 * 1.2e-7 * (kk + 2);
        /* and against its twin, which rounds U and V the same way: tight */
        float *tw = malloc(sizeof(float) * (size_t)ny);
        double *tt = malloc(sizeof(double) * (size_t)ny);
        wino_bf16_twin(&d, xp, wp, bias ? b : NULL, relu, tw, tt);
        for (int64_t i = 0; i < ny; i++)
            if (!(fabs((double)got[i] - (double)tw[i]) <= tt[i]))
                fail_msg("%s bf16 Winograd n%lld c%lld %lldx%lld o%lld p%lld,%lld: y[%lld] = %.9g, "
                         "twin %.9g (tol %.3g)",
                         tier, (long long)n, (long long)c, (long long)h, (long long)w, (long long)o,
                         (long long)ph, (long long)pw, (long long)i, (double)got[i], (double)tw[i],
                         tt[i]);
        free(tw), free(tt);
    }
    for (int64_t i = 0; i < ny; i++) {
        const double tol = 4.0 * (kk + 2) * 1.2e-7 * bound[i] + bound[i] * xr + 1e-30;
        if (!(fabs((double)got[i] - (double)want[i]) <= tol))
            fail_msg("%s %s conv n%lld c%lld %lldx%lld o%lld k%lldx%lld s%lld p%lld,%lld "
                     "d%lld,%lld bias %d relu %d pool %d: y[%lld] = %.9g, reference %.9g "
                     "(tol %.3g)",
                     tier, bf16 ? "bf16" : "f16", (long long)n, (long long)c, (long long)h,
                     (long long)w, (long long)o, (long long)kh, (long long)kw, (long long)sh,
                     (long long)ph, (long long)pw, (long long)dh, (long long)dw, bias, relu, pool,
                     (long long)i, (double)got[i], (double)want[i], tol);
    }
    for (int64_t i = ny; i < ny + 4; i++) assert_true(got[i] == 12345.0f);
    assert_memory_equal(got, got2, sizeof(float) * (size_t)ny);
    free(x), free(ax), free(b), free(ab), free(wh), free(aw), free(got), free(got2), free(want),
        free(bound);
    return 1;
}

#if NN_HAVE_AVX512
/* The AVX-512 tier's half convolution without vdpbf16ps (x86/avx512/half.c),
 * which a CPU without AVX512_BF16 runs for bf16 weights: this machine may
 * have AVX512_BF16, so the table's entry may be the vdpbf16ps kernel. */
unsigned nn__avx512_half_conv_passes(bool bf16, const nn__conv2d *d);
bool nn__avx512_half_conv_fwd(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                              const float *bias, bool relu, bool pool, float *y);
#endif
static bool rounds_none(void) { return false; }

static void test_conv_every_tier(void **state) {
    (void)state;
    const nn_kernels *ref = nn__ref_kernels();
    /* n c h w o kh kw sh ph pw dh dw */
    static const int64_t shapes[][12] = {
        {1, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1},  /* the demo CNN's conv1 */
        {1, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1}, /* and conv2 */
        {2, 1, 9, 13, 17, 3, 3, 1, 1, 1, 1, 1},   /* one channel, odd (bf16: the f32 kernel) */
        {1, 1, 7, 10, 5, 5, 5, 1, 2, 2, 1, 1},    /* one channel, 5x5 */
        {3, 3, 9, 7, 5, 3, 3, 1, 1, 1, 1, 1},     /* odd channels, batch 3 */
        {2, 7, 11, 31, 17, 3, 3, 1, 0, 1, 1, 1},  /* rows longer than a tile */
        {1, 4, 6, 5, 33, 1, 1, 1, 0, 0, 1, 1},    /* 1x1 */
        {1, 5, 13, 12, 20, 5, 3, 2, 2, 1, 1, 1},  /* 5x3, row stride 2 */
        {2, 6, 10, 10, 9, 3, 3, 1, 2, 2, 2, 2},   /* dilation 2 */
        {1, 2, 4, 3, 70, 2, 2, 1, 1, 0, 1, 1},    /* channels past 4 vectors */
        {9, 3, 6, 6, 16, 3, 3, 1, 1, 1, 1, 1},    /* batch >= 8: one task per image */
        /* >= 8 channels, 3x3, pooled (bf16 with AVX512_BF16: Winograd) */
        {2, 9, 11, 13, 20, 3, 3, 1, 0, 1, 1, 1},  /* odd channels and planes, a channel tail */
        {3, 16, 8, 40, 70, 3, 3, 1, 2, 2, 1, 1},  /* 2 tile vectors a row, 5 channel vectors */
        {1, 8, 4, 4, 8, 3, 3, 1, 1, 1, 1, 1},     /* one tile row, 8 output channels */
        {1, 33, 5, 5, 16, 3, 3, 1, 1, 0, 1, 1},   /* an odd channel pair, asymmetric pad */
    };
    int cases = 0;
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        const nn_kernels *k = nn__tier_kernels(t);
        if (!k) continue;
        for (int bf = 0; bf < 2; bf++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int f = 0; f < 4; f++) {
                    const int64_t *q = shapes[s];
                    cases += check_conv_case(k, ref, bf, q[0], q[1], q[2], q[3], q[4], q[5], q[6],
                                             q[7], q[8], q[9], q[10], q[11], f & 1, f >= 2,
                                             f == 3 || f == 1, nn__tier_name(t));
                }
    }
#if NN_HAVE_AVX512
    const nn_kernels *k5 = nn__tier_kernels(NN_TIER_AVX512);
    if (k5) {
        nn_kernels plain = *k5; /* the tier as on a CPU without AVX512_BF16 */
        plain.half.conv_passes = nn__avx512_half_conv_passes;
        plain.half.conv_fwd = nn__avx512_half_conv_fwd;
        plain.half.gemm_rounds_a = rounds_none;
        for (int bf = 0; bf < 2; bf++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int f = 0; f < 4; f++) {
                    const int64_t *q = shapes[s];
                    cases += check_conv_case(&plain, ref, bf, q[0], q[1], q[2], q[3], q[4], q[5],
                                             q[6], q[7], q[8], q[9], q[10], q[11], f & 1, f >= 2,
                                             f == 3 || f == 1, "avx512 (no BF16)");
                }
    }
#endif
    printf("half-weight convolution: %d cases taken by a tier kernel\n", cases);
    /* every SIMD tier takes both dtypes on the demo CNN's layers (no widening) */
    for (int t = NN_TIER_AVX2; t < NN_TIER_COUNT; t++) {
        const nn_kernels *k = nn__tier_kernels(t);
        if (!k || !nn__cpu()->f16c) continue;
        nn__conv2d d = {.n = 1, .c = 32, .h = 14, .w = 14, .o = 64};
        d.g = (nn__win2d){3, 3, 1, 1, 1, 1, 1, 1, 14, 14};
        nn__conv2d d1 = {.n = 1, .c = 1, .h = 28, .w = 28, .o = 32};
        d1.g = (nn__win2d){3, 3, 1, 1, 1, 1, 1, 1, 28, 28};
        for (int bf = 0; bf < 2; bf++) {
            assert_true(k->half.conv_passes(bf, &d) & NN_CONV_FWD_POOL);
            assert_true(k->half.conv_passes(bf, &d1) & NN_CONV_FWD_POOL);
        }
    }
}

/* nn_conv2d with half weights through the tiers' kernels (weights converted
 * per block while packing) against the same op with the kernels off
 * (nn__backend_half_conv(false): the weight widened to an f32 copy, then
 * the f32 direct convolution): the same bits, since both pack the same f32
 * values for the same kernel; on every SIMD tier, f16 and bf16 (bf16 not
 * where AVX512_BF16 runs its own kernel: checked above against the twin),
 * plain and with the fused ReLU + 2x2 pool of a Sequential (Winograd). */
static void test_conv_op_matches_widened(void **state) {
    (void)state;
    /* 9 input channels: the pooled forward takes the Winograd path (8+) */
    const int64_t xs[4] = {2, 9, 9, 11}, ws[4] = {12, 9, 3, 3}, bs[1] = {12};
    nn_tensor *x = TU_NN(nn_tensor_empty(NN_DTYPE_F32, xs, 4));
    nn_tensor *w = TU_NN(nn_tensor_empty(NN_DTYPE_F32, ws, 4));
    nn_tensor *b = TU_NN(nn_tensor_empty(NN_DTYPE_F32, bs, 1));
    float *px = nn_tensor_data(x), *pw = nn_tensor_data(w), *pb = nn_tensor_data(b);
    for (int64_t i = 0; i < nn_tensor_numel(x); i++) px[i] = (float)((int)(rnd32() % 2001) - 1000) / 300.0f;
    for (int64_t i = 0; i < nn_tensor_numel(w); i++) pw[i] = (float)((int)(rnd32() % 2001) - 1000) / 700.0f;
    for (int64_t i = 0; i < 12; i++) pb[i] = (float)((int)(rnd32() % 201) - 100) / 50.0f;
    const int64_t ny = 2 * 12 * 9 * 11;
    int compared = 0;
    for (int t = NN_TIER_AVX2; t < NN_TIER_COUNT; t++) {
        const nn_kernels *k = nn__tier_kernels(t);
        if (!k || !nn__cpu()->f16c) continue;
        assert_true(nn__backend_force_tier(t));
        for (int bf = 0; bf < 2; bf++) {
            if (bf && k->half.gemm_rounds_a()) continue;
            nn_tensor *wh = TU_NN(nn_tensor_to(w, bf ? NN_DTYPE_BF16 : NN_DTYPE_F16));
            float got[2][2 * 12 * 9 * 11];
            for (int widen = 0; widen < 2; widen++) {
                nn__backend_half_conv(!widen);
                nn_tensor *y = TU_NN(nn_conv2d(x, wh, b, 1, 1, 1, 1, 1, 1, 1));
                TU_OK(nn_tensor_copy_to(y, got[widen], sizeof got[widen]));
                nn_tensor_free(y);
            }
            nn__backend_half_conv(true);
            assert_memory_equal(got[0], got[1], sizeof(float) * (size_t)ny);
            /* a Sequential's fused Conv2d -> ReLU -> MaxPool2d(2) */
            nn_module *seq = TU_NN(nn_sequential_new());
            nn_module *conv = TU_NN(nn_conv2d_new(9, 12, 3, 1, 1, true));
            TU_OK(nn_sequential_append(seq, conv));
            TU_OK(nn_sequential_append(seq, TU_NN(nn_relu_new())));
            TU_OK(nn_sequential_append(seq, TU_NN(nn_max_pool2d_new(2, 2, 0))));
            TU_OK(nn_module_train(seq, false));
            TU_OK(nn_tensor_copy_from(nn_module_get_parameter(conv, "weight"), pw,
                                      sizeof(float) * 12 * 9 * 9));
            TU_OK(nn_module_convert(seq, bf ? NN_DTYPE_BF16 : NN_DTYPE_F16));
            float pooled[2][2 * 12 * 4 * 5];
            for (int widen = 0; widen < 2; widen++) {
                nn__backend_half_conv(!widen);
                bool grad = nn_set_grad_enabled(false);
                nn_tensor *y = TU_NN(nn_module_forward(seq, x));
                nn_set_grad_enabled(grad);
                TU_OK(nn_tensor_copy_to(y, pooled[widen], sizeof pooled[widen]));
                nn_tensor_free(y);
            }
            nn__backend_half_conv(true);
            assert_memory_equal(pooled[0], pooled[1], sizeof pooled[0]);
            nn_module_free(seq);
            nn_tensor_free(wh);
            compared++;
        }
    }
    nn__backend_force_tier(-1);
    printf("half-weight nn_conv2d == widened: %d tier/dtype pairs\n", compared);
    nn_tensor_free(x), nn_tensor_free(w), nn_tensor_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_tensor_to_every_tier),
        cmocka_unit_test(test_gemm_every_tier),
        cmocka_unit_test(test_gemm_threads),
        cmocka_unit_test(test_conv_every_tier),
        cmocka_unit_test(test_conv_op_matches_widened),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
