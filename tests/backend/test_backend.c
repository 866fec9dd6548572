/* Every fast kernel against its reference twin (nn__ref_kernels()), for
 * every ISA tier this machine runs (forced through nn__backend_force_tier),
 * in the style of dav1d's checkasm: odd, tiny and unaligned shapes, at 1 and
 * 2 threads; plus determinism (1 vs 2 threads bit-identical). Elementwise
 * kernels must match the reference bit for bit; sums within a rounding bound
 * computed from the operands. */
#include "testutil.h"
#include "nn_internal.h"
#include "backend/backend.h"
#include "backend/gemm_blocked.h"
#include "backend/nn_backend_config.h"
#include "backend/ref/ref.h"
#include "backend/tier.h"
#if NN_HAVE_AVX2
#include "backend/x86/avx2/avx2.h"
#endif
#if NN_HAVE_AVX512
#include "backend/x86/avx512/avx512.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform [-1, 1) */
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* A buffer of n floats starting `off` (0..15) floats past a 64-byte
 * boundary, filled with random values; the float before it records the
 * offset. Free with buf_free. */
static float *buf_new_at(int64_t n, int off) {
    /* C11 aligned_alloc wants the size to be a multiple of the alignment. */
    size_t bytes = ((size_t)(n + 33) * sizeof(float) + 63) & ~(size_t)63;
    float *base = aligned_alloc(64, bytes);
    assert_non_null(base);
    float *p = base + 16 + off;
    p[-1] = (float)(16 + off);
    for (int64_t i = 0; i < n; i++) p[i] = frand();
    return p;
}
/* One float past a 64-byte boundary: odd alignment on purpose. */
static float *buf_new(int64_t n) { return buf_new_at(n, 1); }
static void buf_free(float *p) { free(p - (int)p[-1]); }
static float *buf_copy(const float *src, int64_t n) {
    float *p = buf_new(n);
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

static void expect_same(const float *got, const float *want, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && !(isnan(got[i]) && isnan(want[i])))
            fail_msg("%s: element %lld is %.9g, reference %.9g", what, (long long)i, (double)got[i],
                     (double)want[i]);
}

/* The tier under test: every tiered test runs once per runnable tier, with
 * that tier forced active (so the public API runs it too). */
static int g_tier = NN_TIER_REF;
static const nn_kernels *fast(void) { return nn__kernels(); }
static const nn_kernels *ref(void) { return nn__ref_kernels(); }

static void for_each_tier(void (*fn)(void **), void **s) {
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        if (!nn__tier_runnable(t)) continue;
        assert_true(nn__backend_force_tier(t));
        assert_int_equal(nn__backend_tier(), t);
        assert_ptr_equal(fast(), nn__tier_kernels(t));
        g_tier = t;
        fn(s);
    }
    assert_true(nn__backend_force_tier(-1));
    g_tier = nn__backend_tier();
}
#define TIERED(name)                                                                               \
    static void name##_tiers(void **s) { for_each_tier(name, s); }

static const int g_threads[] = {1, 2};

/* --------------------------------------------------------------- GEMM */

/* The GEMM functions a tier has: its table entry, its blocked GEMM alone
 * (whatever the provider) and the small-matrix path alone. */
typedef struct gemm_impl {
    const char *name;
    nn__sgemm_fn fn;
} gemm_impl;

static int tier_gemms(gemm_impl out[3]) {
    int n = 0;
    out[n++] = (gemm_impl){"table", fast()->gemm.sgemm};
    if (nn__tier_blocked_sgemm(g_tier))
        out[n++] = (gemm_impl){"blocked", nn__tier_blocked_sgemm(g_tier)};
#if NN_HAVE_AVX2
    if (g_tier == NN_TIER_AVX2) out[n++] = (gemm_impl){"small", nn__avx2_sgemm_small};
#endif
#if NN_HAVE_AVX512
    if (g_tier == NN_TIER_AVX512) out[n++] = (gemm_impl){"small", nn__avx512_sgemm_small};
#endif
    return n;
}

/* The tolerance: a few ulps times sum |alpha a b| + |beta c| per entry. */
static void expect_gemm_close(const char *what, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                              float alpha, float beta, const float *a, int64_t lda, const float *b,
                              int64_t ldb, const float *c0, const float *got, const float *want,
                              int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double mag = beta != 0.0f ? fabs((double)beta * c0[i * ldc + j]) : 0.0;
            for (int64_t p = 0; p < k; p++) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                mag += fabs(alpha * av * bv);
            }
            double tol = 2.0 * (double)(k + 2) * 1.2e-7 * mag + 1e-30;
            double g = got[i * ldc + j], w = want[i * ldc + j];
            if (!(fabs(g - w) <= tol))
                fail_msg("%s (tier %s) ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g: "
                         "C[%lld,%lld] = %.9g, ref %.9g",
                         what, nn__tier_name(g_tier), ta, tb, (long long)m, (long long)n,
                         (long long)k, (double)alpha, (double)beta, (long long)i, (long long)j, g,
                         w);
        }
    /* the padding between rows of C is never written */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = n; j < ldc; j++)
            if (memcmp(&got[i * ldc + j], &c0[i * ldc + j], sizeof(float)) != 0)
                fail_msg("%s wrote C padding at [%lld,%lld]", what, (long long)i, (long long)j);
}

/* Run one GEMM with `fn` and with the reference and compare. pad: extra
 * leading-dimension elements; off: misalignment (floats past 64 bytes). */
static void check_gemm_at(const char *what, nn__sgemm_fn fn, bool ta, bool tb, int64_t m, int64_t n,
                          int64_t k, float alpha, float beta, int64_t pad, int off) {
    int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int64_t arows = ta ? k : m, brows = tb ? n : k;
    float *a = buf_new_at(arows * lda + 1, off), *b = buf_new_at(brows * ldb + 1, (off * 3) % 16);
    float *c = buf_new_at(m * ldc + 1, (off * 5) % 16), *c2 = buf_copy(c, m * ldc + 1);
    if (beta == 0.0f) /* beta 0 must ignore C, even NaN */
        for (int64_t i = 0; i < m * ldc; i++) c[i] = c2[i] = NAN;
    float *c0 = buf_copy(c2, m * ldc + 1);
    fn(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    nn__ref_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
    expect_gemm_close(what, ta, tb, m, n, k, alpha, beta, a, lda, b, ldb, c0, c, c2, ldc);
    buf_free(a), buf_free(b), buf_free(c), buf_free(c2), buf_free(c0);
}

/* Odd, tiny and register-tile-edge sizes (the AVX2 tile is 6x16, the AVX-512
 * one 8x48). */
static const int64_t g_dims[] = {1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 47, 49, 64, 65, 127};
#define NDIMS ((int)(sizeof g_dims / sizeof g_dims[0]))
static const float g_alphas[] = {1.0f, -0.5f, 1.5f};
static const float g_betas[] = {0.0f, 1.0f, 0.5f};

/* Every (M, N) pair of g_dims with a K that cycles through g_dims, every
 * transpose combination; alpha, beta (0 with NaN garbage in C), leading
 * dimension padding and misalignment vary with the case number. */
static void test_gemm_shapes(void **s) {
    (void)s;
    gemm_impl impl[3];
    const int ni = tier_gemms(impl);
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        int64_t case_no = 0;
        for (int im = 0; im < NDIMS; im++)
            for (int in = 0; in < NDIMS; in++)
                for (int tr = 0; tr < 4; tr++, case_no++) {
                    const int64_t m = g_dims[im], n = g_dims[in];
                    const int64_t k = g_dims[(im * 5 + in * 3 + tr + t) % NDIMS];
                    if (t == 1 && case_no % 5 != 0) continue; /* threads: a sample */
                    const float alpha = g_alphas[case_no % 3], beta = g_betas[(case_no / 3) % 3];
                    const int64_t pad = (case_no % 4 == 1) ? 3 : 0;
                    const int off = (int)(case_no % 16);
                    for (int i = 0; i < ni; i++)
                        check_gemm_at(impl[i].name, impl[i].fn, tr & 1, tr & 2, m, n, k, alpha,
                                      beta, pad, off);
                }
    }
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemm_shapes)

static void test_gemm_model_shapes(void **s) {
    (void)s;
    /* the demo CNN / MLP shapes (batch 1 and a short batch), K past one
     * cache block, and empty products */
    static const int64_t shapes[][3] = {
        {1, 256, 784},  {1, 10, 128},   {1, 10, 10},   {3, 128, 256}, {32, 784, 9},
        {64, 196, 288}, {10, 128, 64},  {100, 70, 90}, {0, 5, 5},     {5, 5, 0},
        {5, 0, 5},      {40, 50, 1100}, {7, 9, 2}};
    gemm_impl impl[3];
    const int ni = tier_gemms(impl);
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int tr = 0; tr < 4; tr++)
                for (int f = 0; f < ni; f++) {
                    check_gemm_at(impl[f].name, impl[f].fn, tr & 1, tr & 2, shapes[i][0],
                                  shapes[i][1], shapes[i][2], 1.0f, 0.0f, 1, 0);
                    check_gemm_at(impl[f].name, impl[f].fn, tr & 1, tr & 2, shapes[i][0],
                                  shapes[i][1], shapes[i][2], -0.5f, 1.0f, 0, 3);
                }
    }
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemm_model_shapes)

/* The blocked driver with tiny cache blocks (MC = 2 MR, KC = 8, NC = 2 NR):
 * every block edge of the loops on small shapes, against the reference. */
static const nn__gemm_plan *g_tiny_plan;
static void tiny_plan_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                           const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                           float *c, int64_t ldc) {
    nn__gemm_blocked(g_tiny_plan, nn__num_threads(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
                     c, ldc);
}

/* The blocked GEMM's plan of the tier under test (NULL: the reference tier
 * has none). */
static const nn__gemm_plan *tier_gemm_plan(void) {
#if NN_HAVE_AVX2
    if (g_tier == NN_TIER_AVX2) return nn__avx2_gemm_plan();
#endif
#if NN_HAVE_AVX512
    if (g_tier == NN_TIER_AVX512) return nn__avx512_gemm_plan();
#endif
    return NULL;
}

static void test_gemm_blocking_edges(void **s) {
    (void)s;
    const nn__gemm_plan *base = tier_gemm_plan();
    if (!base) return; /* the reference tier has no blocked GEMM */
    assert_true(base->kc >= 8 && base->kc % 4 == 0);
    assert_true(base->mc >= base->mr && base->mc % base->mr == 0);
    assert_true(base->nc >= base->nr && base->nc % base->nr == 0);
    nn__gemm_plan tiny = *base;
    tiny.mc = 2 * tiny.mr, tiny.kc = 8, tiny.nc = 2 * tiny.nr;
    g_tiny_plan = &tiny;
    /* the last four: K >= 128, A read in place (M <= MC = 2 MR) and, for
     * A·Bᵀ, the swapped product (gemm_blocked.c; {60, 300, 130}: C's rows
     * over several tiles of its transposed store) */
    static const int64_t shapes[][3] = {{1, 1, 1},     {29, 67, 17}, {30, 64, 16}, {31, 65, 9},
                                        {59, 131, 33}, {3, 200, 41}, {100, 3, 23}, {13, 150, 130},
                                        {16, 97, 141}, {9, 300, 128}, {60, 300, 130}};
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int tr = 0; tr < 4; tr++)
                for (int ab = 0; ab < 3; ab++)
                    check_gemm_at("blocked, tiny blocks", tiny_plan_gemm, tr & 1, tr & 2,
                                  shapes[i][0], shapes[i][1], shapes[i][2], g_alphas[ab],
                                  g_betas[ab], ab, (int)i);
    }
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemm_blocking_edges)

/* The tier's packing (both panel widths, both source layouts) against
 * nn__gemm_pack_ref bit for bit: row counts around the panel width and the
 * 16-row transposes, K blocks that are not a multiple of 16 (the last K
 * block of a product can be any length), padded leading dimensions and
 * misaligned sources and destinations. */
static void test_gemm_pack(void **s) {
    (void)s;
    const nn__gemm_plan *p = tier_gemm_plan();
    if (!p) return; /* the reference tier packs nothing */
    static const int64_t rows_[] = {1, 7, 8, 15, 16, 17, 31, 33, 47, 48, 49, 97};
    static const int64_t kcs[] = {1, 3, 4, 8, 13, 16, 17, 31, 33, 64, 70};
    int case_no = 0;
    for (int wi = 0; wi < 2; wi++)
        for (int km = 0; km < 2; km++)
            for (size_t ri = 0; ri < sizeof rows_ / sizeof rows_[0]; ri++)
                for (size_t ki = 0; ki < sizeof kcs / sizeof kcs[0]; ki++, case_no++) {
                    const int w = wi ? p->nr : p->mr;
                    const int64_t rows = rows_[ri], kc = kcs[ki];
                    const int64_t ld = (km ? rows : kc) + case_no % 5, panels = (rows + w - 1) / w;
                    const int64_t n = (km ? kc : rows) * ld, out = panels * kc * w;
                    float *x = buf_new_at(n, case_no % 16);
                    /* 16 floats past the panels: never written */
                    float *got = buf_new_at(out + 16, (case_no * 7) % 16);
                    float *want = buf_copy(got, out + 16);
                    p->pack(x, ld, km, rows, kc, w, got);
                    nn__gemm_pack_ref(x, ld, km, rows, kc, w, want);
                    char what[96];
                    snprintf(what, sizeof what, "%s pack w=%d kmajor=%d rows=%lld kc=%lld",
                             nn__tier_name(g_tier), w, km, (long long)rows, (long long)kc);
                    expect_same(got, want, out + 16, what);
                    buf_free(x), buf_free(got), buf_free(want);
                }
}
TIERED(test_gemm_pack)

/* The tier's transpose (the swapped A·Bᵀ's tile of Cᵀ) against
 * nn__gemm_transpose_ref bit for bit: sizes around the 16x16 blocks, padded
 * leading dimensions, misaligned buffers; the padding of dst untouched. */
static void test_gemm_transpose(void **s) {
    (void)s;
    const nn__gemm_plan *p = tier_gemm_plan();
    if (!p || !p->transpose) return; /* the driver then uses the reference */
    static const int64_t dims[] = {1, 3, 15, 16, 17, 31, 32, 33, 48, 70};
    const int nd = (int)(sizeof dims / sizeof dims[0]);
    int case_no = 0;
    for (int ri = 0; ri < nd; ri++)
        for (int ci = 0; ci < nd; ci++, case_no++) {
            const int64_t rows = dims[ri], cols = dims[ci];
            const int64_t lds = cols + case_no % 3, ldd = rows + case_no % 5;
            float *src = buf_new_at(rows * lds, case_no % 16);
            float *got = buf_new_at(cols * ldd, (case_no * 7) % 16);
            float *want = buf_copy(got, cols * ldd);
            p->transpose(src, lds, rows, cols, got, ldd);
            nn__gemm_transpose_ref(src, lds, rows, cols, want, ldd);
            /* the reference against the definition */
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < cols; j++)
                    if (memcmp(&want[j * ldd + i], &src[i * lds + j], sizeof(float)) != 0)
                        fail_msg("transpose_ref %lldx%lld at %lld,%lld", (long long)rows,
                                 (long long)cols, (long long)i, (long long)j);
            char what[96];
            snprintf(what, sizeof what, "%s transpose rows=%lld cols=%lld", nn__tier_name(g_tier),
                     (long long)rows, (long long)cols);
            expect_same(got, want, cols * ldd, what);
            buf_free(src), buf_free(got), buf_free(want);
        }
}
TIERED(test_gemm_transpose)

/* The tier's kernel_rows_t (the swapped A·Bᵀ's last K block, stored
 * transposed into C) against kernel_rows into a tile of Cᵀ followed by the
 * reference transpose, bit for bit: every tile height and width, beta 0
 * (the tile not read: NaN there) and not, padded leading dimensions; C
 * outside the mr x nr block untouched. */
static void test_gemm_kernel_rows_t(void **s) {
    (void)s;
    const nn__gemm_plan *p = tier_gemm_plan();
    if (!p || !p->kernel_rows_t) return; /* the driver transposes a tile instead */
    const int64_t kc = 37, lda = kc + 3;
    float *a = buf_new_at(p->mr * lda, 5);
    float *bp = buf_new_at(kc * p->nr, 0); /* a packed micro-panel: aligned */
    int case_no = 0;
    for (int mr = 1; mr <= p->mr; mr++)
        for (int nr = 1; nr <= p->nr; nr++, case_no++) {
            const int zero_beta = case_no % 3 == 0;
            const float alpha = case_no % 2 ? 1.0f : -0.75f, beta = zero_beta ? 0.0f : 0.5f;
            const int64_t ldt = nr + case_no % 4, ldc = mr + case_no % 5;
            float *t = buf_new_at(mr * ldt, case_no % 16);
            if (zero_beta)
                for (int64_t i = 0; i < mr * ldt; i++) t[i] = NAN;
            float *want_t = buf_copy(t, mr * ldt);
            float *got = buf_new_at(nr * ldc, (case_no * 7) % 16);
            float *want = buf_copy(got, nr * ldc);
            p->kernel_rows(kc, a, lda, bp, want_t, ldt, mr, nr, alpha, beta);
            nn__gemm_transpose_ref(want_t, ldt, mr, nr, want, ldc);
            p->kernel_rows_t(kc, a, lda, bp, zero_beta ? NULL : t, ldt, got, ldc, mr, nr, alpha,
                             beta);
            char what[96];
            snprintf(what, sizeof what, "%s kernel_rows_t mr=%d nr=%d beta=%g",
                     nn__tier_name(g_tier), mr, nr, (double)beta);
            expect_same(got, want, nr * ldc, what);
            buf_free(t), buf_free(want_t), buf_free(got), buf_free(want);
        }
    buf_free(a), buf_free(bp);
}
TIERED(test_gemm_kernel_rows_t)

/* Shapes [m, n, k] through the tier's GEMMs against the reference at 1 and
 * 2 threads, in every transpose form, alpha and beta (0 with NaN in C),
 * padded and misaligned operands cycling with the case number. */
static void check_gemm_shapes(const int64_t (*shapes)[3], size_t count) {
    gemm_impl impl[3];
    const int ni = tier_gemms(impl);
    int case_no = 0;
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t i = 0; i < count; i++)
            for (int tr = 0; tr < 4; tr++, case_no++)
                for (int f = 0; f < ni; f++)
                    check_gemm_at(impl[f].name, impl[f].fn, tr & 1, tr & 2, shapes[i][0],
                                  shapes[i][1], shapes[i][2], g_alphas[case_no % 3],
                                  g_betas[(case_no / 3) % 3], case_no % 4 == 1 ? 3 : 0,
                                  case_no % 16);
    }
}

/* Products long in K (>= 128) with a short op(A): A read in place by the
 * tier's row kernel, and x·Wᵀ with a wide W run swapped as (W·xᵀ)ᵀ through a
 * transposed tile (gemm_blocked.c); Aᵀ·B with K <= 256 and a short Aᵀ read
 * in place by the column kernel (the last two shapes: K 64 and 23, split
 * over threads on 16-column stripes); every transpose combination, alpha and
 * beta (0 with NaN in C), padded and misaligned operands, 1 and 2 threads. */
static void test_gemm_in_place_a(void **s) {
    (void)s;
    static const int64_t shapes[][3] = {{1, 300, 200}, {7, 260, 129},  {17, 130, 300},
                                        {33, 97, 129}, {64, 200, 256}, {9, 23, 400},
                                        {128, 256, 64}, {37, 70, 23}};
    check_gemm_shapes(shapes, sizeof shapes / sizeof shapes[0]);
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemm_in_place_a)

/* Long K with a small C: computed as two fixed halves of K, the second into
 * a scratch copy of C added last (gemm_blocked.c, "K split"). Against the
 * reference on every transpose combination, alpha and beta (0 with NaN in
 * C), padded and misaligned operands, at 1 and 2 threads (K odd and not a
 * multiple of the block; 9x40x2053 A·Bᵀ: both halves swapped, with A
 * in place; 17x20x2049: the smallest K taken), then bit-identical at 1, 2,
 * 3 and 5 threads. */
static void test_gemm_k_split(void **s) {
    (void)s;
    static const int64_t shapes[][3] = {{17, 20, 2049}, {24, 33, 2050}, {9, 40, 2053}};
    check_gemm_shapes(shapes, sizeof shapes / sizeof shapes[0]);
    gemm_impl impl[3];
    const int ni = tier_gemms(impl);
    static const int counts[] = {1, 2, 3, 5};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int tr = 0; tr < 4; tr++)
            for (int f = 0; f < ni; f++) {
                const bool ta = tr & 1, tb = tr & 2;
                const int64_t m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
                float *a = buf_new(m * k), *b = buf_new(k * n), *c0 = buf_new(m * n), *c[4];
                for (int u = 0; u < 4; u++) {
                    TU_OK(nn_set_num_threads(counts[u]));
                    c[u] = buf_copy(c0, m * n);
                    impl[f].fn(ta, tb, m, n, k, -0.5f, a, ta ? m : k, b, tb ? k : n, 0.5f, c[u],
                               n);
                }
                for (int u = 1; u < 4; u++) expect_same(c[u], c[0], m * n, impl[f].name);
                buf_free(a), buf_free(b), buf_free(c0);
                for (int u = 0; u < 4; u++) buf_free(c[u]);
            }
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemm_k_split)

/* Batched GEMM: against the reference batch (rounding bound), products that
 * share an operand (stride 0), and 1 vs 2 threads bit-identical. */
static void test_gemm_batched(void **s) {
    (void)s;
    static const int64_t shp[][4] = {/* batch, m, n, k */
                                     {1, 5, 7, 3},   {3, 17, 16, 9},  {4, 8, 64, 16},
                                     {7, 33, 31, 5}, {2, 64, 65, 64}, {12, 4, 20, 8},
                                     {0, 3, 3, 3},   {5, 1, 1, 1}};
    for (size_t si = 0; si < sizeof shp / sizeof shp[0]; si++)
        for (int tr = 0; tr < 4; tr++)
            for (int share = 0; share < 2; share++) {
                const bool ta = tr & 1, tb = tr & 2;
                const int64_t bt = shp[si][0], m = shp[si][1], n = shp[si][2], k = shp[si][3];
                const int64_t lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 1;
                const int64_t sa = (ta ? k : m) * lda + 3, sb = share ? 0 : (tb ? n : k) * ldb + 1;
                const int64_t sc = m * ldc + 5;
                const float alpha = share ? 0.75f : 1.0f, beta = (tr + share) % 2 ? 0.5f : 0.0f;
                float *a = buf_new(bt * sa + 1),
                      *b = buf_new((share ? 1 : bt) * (sb + 1) + (tb ? n : k) * ldb);
                float *c[2], *want = buf_new(bt * sc + 1);
                float *c0 = buf_copy(want, bt * sc + 1);
                if (beta == 0.0f)
                    for (int64_t i = 0; i < bt * sc; i++) c0[i] = NAN;
                memcpy(want, c0, (size_t)(bt * sc) * sizeof(float));
                nn__ref_sgemm_batched(bt, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta,
                                      want, ldc, sc);
                for (int t = 0; t < 2; t++) {
                    TU_OK(nn_set_num_threads(g_threads[t]));
                    c[t] = buf_copy(c0, bt * sc + 1);
                    fast()->gemm.sgemm_batched(bt, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb,
                                               beta, c[t], ldc, sc);
                }
                for (int64_t i = 0; i < bt; i++)
                    expect_gemm_close("sgemm_batched", ta, tb, m, n, k, alpha, beta, a + i * sa,
                                      lda, b + i * sb, ldb, c0 + i * sc, c[0] + i * sc,
                                      want + i * sc, ldc);
                /* between products (past each C's last row) nothing is written */
                for (int64_t i = 0; i < bt; i++)
                    for (int64_t q = m * ldc; q < sc; q++)
                        if (memcmp(&c[0][i * sc + q], &c0[i * sc + q], sizeof(float)) != 0)
                            fail_msg("sgemm_batched wrote between products");
                expect_same(c[1], c[0], bt * sc, "sgemm_batched 2 threads vs 1");
                buf_free(a), buf_free(b), buf_free(want), buf_free(c0);
                buf_free(c[0]), buf_free(c[1]);
            }
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemm_batched)

/* GEMM at 1, 2, 3 and 5 threads is bit-identical for every provider and
 * path (the blocked GEMM cuts C differently for each count; 24x144x1490 on
 * 5 threads has 3x3 register-tile stripes and room for 5 tasks, which no
 * product of stripe counts gives: the fallback split; 1030x200x300 at 2 and
 * 3 threads packs B once for all threads, the shared B of gemm_blocked.c,
 * and at 5 threads cuts rectangles; A·Bᵀ at 64x128x3136 and 64x256x784 runs
 * swapped, with the weight-shaped B read in place; 64x128x256 A·Bᵀ and
 * 128x256x64 Aᵀ·B split C's columns on 16-column stripes at 2 threads). */
static void test_gemm_thread_determinism(void **s) {
    (void)s;
    /* each big enough to run on 2 threads (> 2^21 multiply-adds) */
    static const int64_t shp[][3] = {{64, 784, 64},    {96, 200, 150},  {129, 65, 300},
                                     {7, 999, 330},    {24, 144, 1490}, {64, 128, 3136},
                                     {1030, 200, 300}, {64, 256, 784},  {64, 128, 256},
                                     {128, 256, 64}};
    static const int counts[] = {1, 2, 3, 5};
    gemm_impl impl[3];
    const int ni = tier_gemms(impl);
    for (size_t si = 0; si < sizeof shp / sizeof shp[0]; si++)
        for (int tr = 0; tr < 4; tr++)
            for (int f = 0; f < ni; f++) {
                const bool ta = tr & 1, tb = tr & 2;
                const int64_t m = shp[si][0], n = shp[si][1], k = shp[si][2];
                float *a = buf_new(m * k), *b = buf_new(k * n), *c0 = buf_new(m * n), *c[4];
                for (int t = 0; t < 4; t++) {
                    TU_OK(nn_set_num_threads(counts[t]));
                    c[t] = buf_copy(c0, m * n);
                    impl[f].fn(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.5f, c[t], n);
                }
                for (int t = 1; t < 4; t++) expect_same(c[t], c[0], m * n, impl[f].name);
                buf_free(a), buf_free(b), buf_free(c0);
                for (int t = 0; t < 4; t++) buf_free(c[t]);
            }
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemm_thread_determinism)

/* Batch-1 rows times Bᵀ (a Linear layer's x · Wᵀ at batch 1 and 2): the
 * GEMV path streams B one row at a time and, from 2 x 65,536 elements of
 * B on, gives each thread one contiguous part of C's columns. Against the
 * reference at 1, 2 and 3 threads, bit-identical across the counts, on
 * tails of K below and past one 64-float step and column counts that do not
 * divide into the parts (the model's 1x256x784 too). */
static void test_gemv(void **s) {
    (void)s;
    static const int64_t shp[][3] = {/* m, n, k */
                                     {1, 256, 784}, {1, 131, 1009}, {2, 300, 457},
                                     {1, 4099, 33}, {2, 17, 7713},  {1, 1000, 131},
                                     {1, 3, 70},    {2, 129, 65},   {1, 64, 2049}};
    static const int counts[] = {1, 2, 3};
    gemm_impl impl[3];
    const int ni = tier_gemms(impl);
    for (size_t si = 0; si < sizeof shp / sizeof shp[0]; si++)
        for (int f = 0; f < ni; f++)
            for (int ab = 0; ab < 2; ab++) {
                const int64_t m = shp[si][0], n = shp[si][1], k = shp[si][2];
                const int64_t lda = k + 3 * ab, ldb = k + ab, ldc = n + 2 * ab;
                const float alpha = ab ? -0.5f : 1.0f, beta = ab ? 0.75f : 0.0f;
                float *a = buf_new_at(m * lda, (int)si % 16), *b = buf_new_at(n * ldb, 5 * ab);
                float *c0 = buf_new(m * ldc), *want = buf_copy(c0, m * ldc), *c[3];
                nn__ref_sgemm(false, true, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc);
                for (int t = 0; t < 3; t++) {
                    TU_OK(nn_set_num_threads(counts[t]));
                    c[t] = buf_copy(c0, m * ldc);
                    impl[f].fn(false, true, m, n, k, alpha, a, lda, b, ldb, beta, c[t], ldc);
                }
                expect_gemm_close(impl[f].name, false, true, m, n, k, alpha, beta, a, lda, b, ldb,
                                  c0, c[0], want, ldc);
                for (int t = 1; t < 3; t++) expect_same(c[t], c[0], m * ldc, impl[f].name);
                buf_free(a), buf_free(b), buf_free(c0), buf_free(want);
                for (int t = 0; t < 3; t++) buf_free(c[t]);
            }
    TU_OK(nn_set_num_threads(1));
}
TIERED(test_gemv)

/* The small path's A · Bᵀ gives each row of C the bits of that row computed
 * alone (rows paired or not) when B has at most 16 rows or fewer than
 * 32,768 elements (larger ones stream B row by row at batch 1, in another
 * order): tests/module/test_conv_fuse.c relies on it. */
static void test_gemv_rows_alone(void **s) {
    (void)s;
    gemm_impl impl[3];
    const int ni = tier_gemms(impl);
    static const int64_t shp[][3] = {{5, 37, 784}, {4, 9, 131}, {3, 16, 3136}, {7, 5, 63}};
    for (int f = 0; f < ni; f++) {
        if (strcmp(impl[f].name, "small") != 0) continue;
        for (size_t si = 0; si < sizeof shp / sizeof shp[0]; si++) {
            const int64_t m = shp[si][0], n = shp[si][1], k = shp[si][2];
            float *a = buf_new(m * k), *b = buf_new(n * k), *c = buf_new(m * n), *r = buf_new(n);
            impl[f].fn(false, true, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
            for (int64_t i = 0; i < m; i++) {
                impl[f].fn(false, true, 1, n, k, 1.0f, a + i * k, k, b, k, 0.0f, r, n);
                expect_same(c + i * n, r, n, "small A·Bᵀ row vs the row alone");
            }
            buf_free(a), buf_free(b), buf_free(c), buf_free(r);
        }
    }
}
TIERED(test_gemv_rows_alone)

/* ------------------------------------------------------- convolution */

static void check_im2col(int64_t n, int64_t c, int64_t h, int64_t w, nn__win2d g, bool batched) {
    g.oh = (h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
    g.ow = (w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
    if (g.oh <= 0 || g.ow <= 0) return;
    int64_t rows = c * g.kh * g.kw, ohw = g.oh * g.ow;
    int64_t nimg = batched ? n : 1, ldcol = nimg * ohw + (batched ? 3 : 0);
    float *x = buf_new(nimg * c * h * w);
    float *col = buf_new(rows * ldcol), *col2 = buf_copy(col, rows * ldcol);
    fast()->conv.im2col(x, nimg, c, h, w, &g, col, ldcol);
    ref()->conv.im2col(x, nimg, c, h, w, &g, col2, ldcol);
    expect_same(col, col2, rows * ldcol, "im2col");
    float *gx = buf_new(nimg * c * h * w), *gx2 = buf_new(nimg * c * h * w);
    fast()->conv.col2im(col, ldcol, nimg, c, h, w, &g, gx, false);
    ref()->conv.col2im(col, ldcol, nimg, c, h, w, &g, gx2, false);
    expect_same(gx, gx2, nimg * c * h * w, "col2im");
    buf_free(x), buf_free(col), buf_free(col2), buf_free(gx), buf_free(gx2);
}

static void test_conv_helpers(void **s) {
    (void)s;
    static const nn__win2d geo[] = {{3, 3, 1, 1, 1, 1, 1, 1, 0, 0}, /* the demo CNN's convs */
                                    {3, 3, 2, 2, 1, 1, 1, 1, 0, 0}, {3, 3, 1, 2, 2, 0, 2, 1, 0, 0},
                                    {1, 1, 1, 1, 0, 0, 1, 1, 0, 0}, {5, 3, 3, 1, 2, 1, 1, 2, 0, 0},
                                    {2, 2, 1, 1, 0, 0, 1, 1, 0, 0}};
    static const int64_t hw[][2] = {{1, 1}, {3, 17}, {7, 9}, {28, 28}, {65, 3}};
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t gi = 0; gi < sizeof geo / sizeof geo[0]; gi++)
            for (size_t i = 0; i < sizeof hw / sizeof hw[0]; i++) {
                check_im2col(3, 2, hw[i][0], hw[i][1], geo[gi], true);
                check_im2col(1, 3, hw[i][0], hw[i][1], geo[gi], false);
            }
        check_im2col(8, 32, 14, 14, geo[0], true); /* big enough to thread */
    }
    TU_OK(nn_set_num_threads(1));
}

static void test_swap01(void **s) {
    (void)s;
    static const int64_t shp[][3] = {{1, 1, 1}, {3, 17, 1}, {17, 3, 65}, {64, 64, 196}};
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t i = 0; i < 4; i++) {
            int64_t n = shp[i][0] * shp[i][1] * shp[i][2];
            float *x = buf_new(n), *y = buf_new(n), *y2 = buf_new(n);
            fast()->conv.swap01(x, shp[i][0], shp[i][1], shp[i][2], y);
            ref()->conv.swap01(x, shp[i][0], shp[i][1], shp[i][2], y2);
            expect_same(y, y2, n, "swap01");
            buf_free(x), buf_free(y), buf_free(y2);
        }
    }
    TU_OK(nn_set_num_threads(1));
}

/* ------------------------------------------------------- elementwise */

static const int64_t g_lens[] = {0, 1, 3, 17, 65, 100003};

/* Specials sprinkled in: NaN, -0, +-inf (relu must keep NaN, zero -0). */
static void add_specials(float *x, int64_t n) {
    static const float sp[] = {NAN, -0.0f, INFINITY, -INFINITY, 0.0f};
    for (int64_t i = 0; i < n && i < 5; i++) x[i * 7 % n] = sp[i];
}

static void test_elementwise(void **s) {
    (void)s;
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t li = 0; li < sizeof g_lens / sizeof g_lens[0]; li++) {
            int64_t n = g_lens[li];
            float *a = buf_new(n + 1), *b = buf_new(n + 1);
            add_specials(a, n);
            float *y = buf_new(n + 1), *y2 = buf_new(n + 1);
            const nn_kernels *f = fast(), *r = ref();
            f->eltwise.add(n, a, b, y), r->eltwise.add(n, a, b, y2), expect_same(y, y2, n, "add");
            f->eltwise.sub(n, a, b, y), r->eltwise.sub(n, a, b, y2), expect_same(y, y2, n, "sub");
            f->eltwise.mul(n, a, b, y), r->eltwise.mul(n, a, b, y2), expect_same(y, y2, n, "mul");
            f->eltwise.scale(n, 0.3f, a, y), r->eltwise.scale(n, 0.3f, a, y2),
                expect_same(y, y2, n, "scale");
            f->eltwise.axpy(n, -1.7f, a, y), r->eltwise.axpy(n, -1.7f, a, y2),
                expect_same(y, y2, n, "axpy");
            f->eltwise.relu(n, a, y), r->eltwise.relu(n, a, y2), expect_same(y, y2, n, "relu");
            f->eltwise.relu_bwd(n, a, b, y), r->eltwise.relu_bwd(n, a, b, y2);
            expect_same(y, y2, n, "relu_bwd");
            memcpy(y, b, (size_t)n * sizeof(float)); /* in place */
            f->eltwise.relu(n, y, y);
            r->eltwise.relu(n, b, y2), expect_same(y, y2, n, "relu in place");
            buf_free(a), buf_free(b), buf_free(y), buf_free(y2);
        }
    }
    TU_OK(nn_set_num_threads(1));
}

static void test_bias_act(void **s) {
    (void)s;
    static const int64_t shp[][2] = {{1, 1}, {3, 17}, {17, 3}, {65, 65}, {64, 784}};
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t i = 0; i < 5; i++)
            for (int mode = 0; mode < 8; mode++) {
                int64_t m = shp[i][0], n = shp[i][1], ld = n + (mode & 1);
                bool per_row = mode & 2, relu = mode & 4;
                float *bias = buf_new(per_row ? m : n);
                float *y = buf_new(m * ld), *y2 = buf_copy(y, m * ld);
                add_specials(y, m * ld);
                memcpy(y2, y, (size_t)(m * ld) * sizeof(float));
                fast()->eltwise.bias_act(m, n, mode == 3 ? NULL : bias, per_row, relu, y, ld);
                ref()->eltwise.bias_act(m, n, mode == 3 ? NULL : bias, per_row, relu, y2, ld);
                expect_same(y, y2, m * ld, "bias_act");
                buf_free(bias), buf_free(y), buf_free(y2);
            }
    }
    TU_OK(nn_set_num_threads(1));
}

/* ------------------------------------------------------------ pooling */

static void check_pool(int64_t planes, int64_t h, int64_t w, nn__win2d g) {
    g.oh = (h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
    g.ow = (w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
    if (g.oh <= 0 || g.ow <= 0) return;
    int64_t no = planes * g.oh * g.ow, ni = planes * h * w;
    float *x = buf_new(ni), *y = buf_new(no), *y2 = buf_new(no);
    add_specials(x, ni);
    for (int64_t i = 0; i < ni; i += 11) x[i] = x[i / 2]; /* ties */
    for (int64_t i = 5; i < ni; i += 37) x[i] = NAN;      /* NaN at every tap position */
    int64_t *ix = calloc((size_t)no + 1, sizeof *ix), *ix2 = calloc((size_t)no + 1, sizeof *ix2);
    fast()->pool.maxpool2d(x, planes, h, w, &g, y, ix + 1);
    ref()->pool.maxpool2d(x, planes, h, w, &g, y2, ix2 + 1);
    expect_same(y, y2, no, "maxpool2d");
    assert_memory_equal(ix + 1, ix2 + 1, (size_t)no * sizeof *ix);
    fast()->pool.maxpool2d(x, planes, h, w, &g, y, NULL); /* inference: no indices */
    expect_same(y, y2, no, "maxpool2d without indices");
    float *gy = buf_new(no), *gx = buf_new(ni), *gx2 = buf_new(ni);
    fast()->pool.maxpool2d_bwd(gy, ix2 + 1, planes, h, w, g.oh, g.ow, gx);
    ref()->pool.maxpool2d_bwd(gy, ix2 + 1, planes, h, w, g.oh, g.ow, gx2);
    expect_same(gx, gx2, ni, "maxpool2d_bwd");
    buf_free(x), buf_free(y), buf_free(y2), buf_free(gy), buf_free(gx), buf_free(gx2);
    free(ix), free(ix2);
}

static void test_maxpool(void **s) {
    (void)s;
    static const nn__win2d geo[] = {{2, 2, 2, 2, 0, 0, 1, 1, 0, 0}, /* the demo CNN's pooling */
                                    {3, 3, 2, 2, 1, 1, 1, 1, 0, 0},
                                    {2, 3, 1, 2, 1, 1, 2, 1, 0, 0},
                                    {1, 1, 1, 1, 0, 0, 1, 1, 0, 0}};
    static const int64_t hw[][2] = {{1, 1}, {2, 2}, {3, 17}, {7, 9}, {28, 28}, {65, 3}, {5, 70}};
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t gi = 0; gi < 4; gi++)
            for (size_t i = 0; i < sizeof hw / sizeof hw[0]; i++)
                check_pool(3, hw[i][0], hw[i][1], geo[gi]);
        check_pool(64 * 32, 28, 28, geo[0]); /* the real layer: threads */
    }
    TU_OK(nn_set_num_threads(1));
}

/* --------------------------------------------------------- reductions */

static void test_reductions(void **s) {
    (void)s;
    static const int64_t shp[][2] = {{1, 1}, {3, 17}, {17, 3}, {65, 1}, {64, 128}, {300, 300}};
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t i = 0; i < 6; i++)
            for (int acc = 0; acc < 2; acc++) {
                int64_t m = shp[i][0], n = shp[i][1], ld = n + 1;
                float *x = buf_new(m * ld);
                float *y = buf_new(n > m ? n : m), *y2 = buf_copy(y, n > m ? n : m);
                fast()->eltwise.sum_rows(m, n, x, ld, y, acc),
                    ref()->eltwise.sum_rows(m, n, x, ld, y2, acc);
                expect_same(y, y2, n, "sum_rows"); /* same order: exact */
                fast()->eltwise.sum_cols(m, n, x, ld, y, acc),
                    ref()->eltwise.sum_cols(m, n, x, ld, y2, acc);
                for (int64_t r = 0; r < m; r++)
                    assert_true(fabs(y[r] - y2[r]) <= 1e-6 * (n + 4) * (2 + fabs(y2[r])));
                buf_free(x), buf_free(y), buf_free(y2);
            }
    }
    TU_OK(nn_set_num_threads(1));
}

static void test_softmax(void **s) {
    (void)s;
    static const int64_t shp[][2] = {{1, 1}, {3, 17}, {64, 10}, {65, 3}, {2000, 65}};
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t i = 0; i < 5; i++)
            for (int lg = 0; lg < 2; lg++) {
                int64_t n = shp[i][0] * shp[i][1];
                float *x = buf_new(n), *y = buf_new(n), *y2 = buf_new(n);
                for (int64_t q = 0; q < n; q++) x[q] *= 30.0f;
                fast()->eltwise.softmax_rows(shp[i][0], shp[i][1], x, y, lg);
                ref()->eltwise.softmax_rows(shp[i][0], shp[i][1], x, y2, lg);
                expect_same(y, y2, n, "softmax_rows");
                float *gy = buf_new(n), *gx = buf_new(n), *gx2 = buf_new(n);
                fast()->eltwise.softmax_bwd_rows(shp[i][0], shp[i][1], y2, gy, gx, lg);
                ref()->eltwise.softmax_bwd_rows(shp[i][0], shp[i][1], y2, gy, gx2, lg);
                expect_same(gx, gx2, n, "softmax_bwd_rows");
                buf_free(x), buf_free(y), buf_free(y2), buf_free(gy), buf_free(gx), buf_free(gx2);
            }
    }
    TU_OK(nn_set_num_threads(1));
}

/* Cross-entropy rows: lse and the gradient within a few float ulps of the
 * double reference (the fast exp is a polynomial), bit-identical for 1 and 2
 * threads; ignored rows (s = 0) exact zeros; a row with +inf / NaN gives
 * the reference's non-finite values; -inf logits (masked classes) a zero
 * probability. Row lengths hit every tail, a row of 50257 (GPT-2's
 * vocabulary) the blocked sums. */
static void test_xent(void **s) {
    (void)s;
    static const int64_t shp[][2] = {{1, 1}, {3, 7}, {5, 17}, {9, 513}, {4, 1031}, {3, 50257}};
    for (size_t i = 0; i < sizeof shp / sizeof shp[0]; i++) {
        const int64_t m = shp[i][0], n = shp[i][1], mn = m * n;
        float *x = buf_new(mn), *lse = buf_new(m), *lse2 = buf_new(m), *lse1 = buf_new(m);
        float *sc = buf_new(m), *g = buf_new(mn), *g2 = buf_new(mn), *g1 = buf_new(mn);
        int64_t *t = malloc(sizeof *t * (size_t)m);
        assert_non_null(t);
        for (int64_t q = 0; q < mn; q++) x[q] *= 12.0f;
        for (int64_t r = 0; r < m; r++) {
            t[r] = (r * 7919) % n;
            sc[r] = 0.25f + 0.1f * (float)r;
        }
        if (m > 2) {
            sc[1] = 0.0f;         /* an ignored row */
            t[2] = -1;            /* no target term */
            x[2 * n] = -INFINITY; /* a masked class */
        }
        if (n > 100) {
            x[n + 3] = INFINITY;                     /* row 1 (ignored): inf */
            if (m > 3) x[(m - 1) * n + n / 2] = NAN; /* last row: NaN */
        }
        ref()->eltwise.xent_lse(m, n, x, lse2);
        for (int th = 0; th < 2; th++) {
            TU_OK(nn_set_num_threads(g_threads[th]));
            fast()->eltwise.xent_lse(m, n, x, th ? lse : lse1);
            fast()->eltwise.xent_bwd(m, n, x, lse2, t, sc, th ? g : g1);
        }
        expect_same(lse, lse1, m, "xent_lse 1 vs 2 threads");
        expect_same(g, g1, mn, "xent_bwd 1 vs 2 threads");
        ref()->eltwise.xent_bwd(m, n, x, lse2, t, sc, g2);
        for (int64_t r = 0; r < m; r++) {
            if (!isfinite(lse2[r])) {
                if (memcmp(&lse[r], &lse2[r], sizeof(float)) && !(isnan(lse[r]) && isnan(lse2[r])))
                    fail_msg("xent_lse row %lld: %g, reference %g", (long long)r, (double)lse[r],
                             (double)lse2[r]);
            } else if (fabsf(lse[r] - lse2[r]) > 4e-6f * (1.0f + fabsf(lse2[r]))) {
                fail_msg("xent_lse [%lld x %lld] row %lld: %.9g, reference %.9g", (long long)m,
                         (long long)n, (long long)r, (double)lse[r], (double)lse2[r]);
            }
            for (int64_t j = 0; j < n; j++) {
                const float a = g[r * n + j], b = g2[r * n + j];
                if (sc[r] == 0.0f && a != 0.0f)
                    fail_msg("xent_bwd: ignored row %lld has %g at %lld", (long long)r, (double)a,
                             (long long)j);
                if (isnan(b) ? !isnan(a) : fabsf(a - b) > 1e-6f * sc[r] + 4e-6f * fabsf(b))
                    fail_msg("xent_bwd [%lld x %lld] (%lld, %lld): %.9g, reference %.9g",
                             (long long)m, (long long)n, (long long)r, (long long)j, (double)a,
                             (double)b);
            }
        }
        if (m > 2 && g[2 * n] != 0.0f)
            fail_msg("xent_bwd [%lld x %lld]: a -inf logit has gradient %g, tier %d", (long long)m,
                     (long long)n, (double)g[2 * n], g_tier);
        free(t);
        buf_free(x), buf_free(lse), buf_free(lse2), buf_free(lse1);
        buf_free(sc), buf_free(g), buf_free(g2), buf_free(g1);
    }
    TU_OK(nn_set_num_threads(1));
}

/* --------------------------------------------------------- optimizers */

static void test_adam(void **s) {
    (void)s;
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t li = 1; li < sizeof g_lens / sizeof g_lens[0]; li++)
            for (int mode = 0; mode < 8; mode++) {
                int64_t n = g_lens[li];
                const float wd = (mode & 1) ? 0.01f : 0.0f;
                nn__adam_hp hp = {
                    0.9f,           0.999f,        0.1f,     0.001f,  1e-8f, wd, 1.0f - 1e-3f * wd,
                    -1e-3f / 0.19f, 0.0447101778f, mode & 2, mode & 4};
                float *p = buf_new(n), *g = buf_new(n), *m = buf_new(n), *v = buf_new(n);
                float *vm = buf_new(n);
                for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]), vm[i] = fabsf(vm[i]);
                float *p2 = buf_copy(p, n), *m2 = buf_copy(m, n), *v2 = buf_copy(v, n);
                float *vm2 = buf_copy(vm, n);
                bool ams = mode == 5;
                for (int step = 0; step < 2; step++) {
                    fast()->optim.adam(n, p, g, m, v, ams ? vm : NULL, &hp);
                    ref()->optim.adam(n, p2, g, m2, v2, ams ? vm2 : NULL, &hp);
                }
                expect_same(p, p2, n, "adam p");
                expect_same(m, m2, n, "adam m");
                expect_same(v, v2, n, "adam v");
                expect_same(vm, vm2, n, "adam vmax");
                buf_free(p), buf_free(g), buf_free(m), buf_free(v), buf_free(vm);
                buf_free(p2), buf_free(m2), buf_free(v2), buf_free(vm2);
            }
    }
    TU_OK(nn_set_num_threads(1));
}

static void test_sgd(void **s) {
    (void)s;
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        for (size_t li = 1; li < sizeof g_lens / sizeof g_lens[0]; li++)
            for (int mode = 0; mode < 16; mode++) {
                int64_t n = g_lens[li];
                nn__sgd_hp hp = {-0.1f,
                                 (mode & 1) ? 0.9f : 0.0f,
                                 (mode & 2) ? 0.9f : 1.0f,
                                 (mode & 4) ? 1e-4f : 0.0f,
                                 mode & 8,
                                 false,
                                 mode == 5};
                float *p = buf_new(n), *g = buf_new(n), *b = buf_new(n);
                float *p2 = buf_copy(p, n), *b2 = buf_copy(b, n);
                for (int step = 0; step < 2; step++) {
                    hp.first = step == 0;
                    fast()->optim.sgd(n, p, g, (mode & 1) ? b : NULL, &hp);
                    ref()->optim.sgd(n, p2, g, (mode & 1) ? b2 : NULL, &hp);
                }
                expect_same(p, p2, n, "sgd p");
                expect_same(b, b2, n, "sgd buf");
                buf_free(p), buf_free(g), buf_free(b), buf_free(p2), buf_free(b2);
            }
    }
    TU_OK(nn_set_num_threads(1));
}

/* ------------------------------------------------------- determinism */

/* A GEMM and a conv backward at 1 and 2 threads: bit-identical. */
static void test_thread_determinism(void **s) {
    (void)s;
    const int64_t m = 64, n = 3136, k = 128;
    float *a = buf_new(m * k), *b = buf_new(k * n);
    float *c[2];
    nn__win2d g = {3, 3, 1, 1, 1, 1, 1, 1, 14, 14};
    float *col = buf_new(288 * 8 * 196), *gx[2];
    for (int t = 0; t < 2; t++) {
        TU_OK(nn_set_num_threads(g_threads[t]));
        c[t] = buf_new(m * n);
        fast()->gemm.sgemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c[t], n);
        gx[t] = buf_new(8 * 32 * 196);
        fast()->conv.col2im(col, 8 * 196, 8, 32, 14, 14, &g, gx[t], false);
    }
    expect_same(c[1], c[0], m * n, "sgemm 2 threads vs 1");
    expect_same(gx[1], gx[0], 8 * 32 * 196, "col2im 2 threads vs 1");
    TU_OK(nn_set_num_threads(1));
    buf_free(a), buf_free(b), buf_free(col);
    for (int t = 0; t < 2; t++) buf_free(c[t]), buf_free(gx[t]);
}

/* End to end: a small CNN trained for a few Adam steps through the public
 * API (conv, relu, max-pool, linear, cross-entropy: every routed kernel).
 * Same seed and thread count -> bit-identical parameters (the determinism
 * target). 1 and 2 threads agree to rounding only: BLIS picks a different
 * blocking when threaded. */
static void train_small_cnn(int threads, float *out, int64_t cap) {
    TU_OK(nn_set_num_threads(threads));
    TU_OK(nn_generator_seed(NULL, 123));
    nn_module *net = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(net, nn_conv2d_new(1, 8, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(net, nn_conv2d_new(8, 16, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(net, nn_linear_new(16 * 7 * 7, 10, true)));
    int64_t np = nn_module_num_parameters(net);
    nn_tensor *ps[16];
    assert_true(np > 0 && np <= 16);
    for (int64_t i = 0; i < np; i++) ps[i] = nn_module_parameter(net, i, NULL);
    nn_optim *opt = TU_NN(nn_adam(ps, np, 1e-2));
    nn_generator *g = TU_NN(nn_generator_new(7));
    int64_t xs[4] = {24, 1, 14, 14};
    nn_tensor *x = TU_NN(nn_rand(g, xs, 4));
    int64_t lab[24], ys[1] = {24};
    for (int i = 0; i < 24; i++) lab[i] = i % 10;
    nn_tensor *y = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, ys, 1, lab));
    for (int step = 0; step < 3; step++) {
        nn_scope *sc = TU_NN(nn_scope_begin());
        TU_OK(nn_optim_zero_grad(opt));
        nn_tensor *loss = TU_NN(nn_cross_entropy(nn_module_forward(net, x), y));
        TU_OK(nn_backward(loss));
        TU_OK(nn_optim_step(opt));
        TU_OK(nn_scope_end(sc));
    }
    int64_t at = 0;
    for (int64_t i = 0; i < np; i++) {
        int64_t n = nn_tensor_numel(ps[i]);
        assert_true(at + n <= cap);
        TU_OK(nn_tensor_copy_to(ps[i], out + at, (size_t)n * sizeof(float)));
        at += n;
    }
    nn_tensor_free(x), nn_tensor_free(y);
    nn_generator_free(g);
    nn_optim_free(opt);
    nn_module_free(net);
    TU_OK(nn_set_num_threads(1));
}

static void test_training_determinism(void **s) {
    (void)s;
    const int64_t cap = 16384;
    float *a = calloc(cap, sizeof(float)), *b = calloc(cap, sizeof(float));
    float *c = calloc(cap, sizeof(float));
    assert_true(a && b && c);
    train_small_cnn(2, a, cap);
    train_small_cnn(2, b, cap);
    train_small_cnn(1, c, cap);
    expect_same(b, a, cap, "2 threads, run 2 vs run 1");
    for (int64_t i = 0; i < cap; i++)
        if (!(fabsf(c[i] - a[i]) <= 1e-4f * (1.0f + fabsf(a[i]))))
            fail_msg("1 vs 2 threads: parameter %lld is %.9g vs %.9g", (long long)i, (double)c[i],
                     (double)a[i]);
    free(a), free(b), free(c);
}

/* Every entry of every runnable tier's table (and the reference's) is set. */
/* GELU (tanh form) forward / backward and exp_shift: within a few float ulps
 * of the reference (a polynomial exp beside libm's expf), IEEE results for
 * non-finite x, and 1 vs 2 threads bit-identical. */
static void test_gelu_exp(void **s) {
    (void)s;
    static const int64_t sizes[] = {1, 7, 8, 9, 33, 1000, 70001};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t n = sizes[si];
        float *x = buf_new(n), *g = buf_new(n), *y = buf_new(n), *y1 = buf_new(n);
        float *y2 = buf_new(n), *gx = buf_new(n), *gx1 = buf_new(n), *gx2 = buf_new(n);
        for (int64_t i = 0; i < n; i++) x[i] *= 12.0f;
        if (n > 20) {
            x[3] = -INFINITY, x[5] = INFINITY, x[9] = NAN, x[11] = 0.0f;
            x[13] = -100.0f, x[17] = 100.0f, x[19] = -9.5f;
        }
        for (int th = 0; th < 2; th++) {
            TU_OK(nn_set_num_threads(g_threads[th]));
            fast()->eltwise.gelu_tanh(n, x, th ? y : y1);
            fast()->eltwise.gelu_tanh_bwd(n, x, g, th ? gx : gx1);
        }
        expect_same(y, y1, n, "gelu_tanh 1 vs 2 threads");
        expect_same(gx, gx1, n, "gelu_tanh_bwd 1 vs 2 threads");
        ref()->eltwise.gelu_tanh(n, x, y2);
        ref()->eltwise.gelu_tanh_bwd(n, x, g, gx2);
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i];
            if (!isfinite(v)) {
                expect_same(y + i, y2 + i, 1, "gelu_tanh (non-finite x)");
                expect_same(gx + i, gx2 + i, 1, "gelu_tanh_bwd (non-finite x)");
                continue;
            }
            /* scales of the terms: x s and g (s + |x| s (1 - s) du), s <= 1 */
            const float du = 1.6f * (1.0f + 0.135f * v * v);
            if (fabsf(y[i] - y2[i]) > 4e-6f * fabsf(v) + 1e-30f)
                fail_msg("gelu_tanh [%lld] x %.9g: %.9g, reference %.9g", (long long)i, (double)v,
                         (double)y[i], (double)y2[i]);
            if (fabsf(gx[i] - gx2[i]) > 4e-6f * fabsf(g[i]) * (1.0f + fabsf(v) * du) + 1e-30f)
                fail_msg("gelu_tanh_bwd [%lld] x %.9g: %.9g, reference %.9g", (long long)i,
                         (double)v, (double)gx[i], (double)gx2[i]);
        }
        /* exp_shift: a softmax row shifted by its max, masked entries -inf */
        for (int64_t i = 0; i < n; i++) x[i] = 8.0f * frand();
        if (n > 4) x[1] = -INFINITY, x[n - 1] = -INFINITY;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        memcpy(y, x, sizeof(float) * (size_t)n);
        memcpy(y2, x, sizeof(float) * (size_t)n);
        const float sf = fast()->eltwise.exp_shift(n, y, mx);
        const float sr = ref()->eltwise.exp_shift(n, y2, mx);
        for (int64_t i = 0; i < n; i++)
            if (fabsf(y[i] - y2[i]) > 4e-7f * y2[i] || (y2[i] == 0.0f && y[i] != 0.0f))
                fail_msg("exp_shift [%lld of %lld] x %.9g: %.9g, reference %.9g", (long long)i,
                         (long long)n, (double)x[i], (double)y[i], (double)y2[i]);
        if (fabsf(sf - sr) > 1e-6f * (float)n * sr)
            fail_msg("exp_shift sum of %lld: %.9g, reference %.9g", (long long)n, (double)sf,
                     (double)sr);
        buf_free(x), buf_free(g), buf_free(y), buf_free(y1);
        buf_free(y2), buf_free(gx), buf_free(gx1), buf_free(gx2);
    }
    TU_OK(nn_set_num_threads(1));
}

/* Layer normalisation rows: statistics, y, dx, dw and db within a few float
 * ulps of the reference (double statistics), 1 vs 2 threads bit-identical;
 * with and without the affine parameters, rows of odd lengths and rows
 * offset far from 0 (the variance's cancellation). */
static void test_layernorm(void **s) {
    (void)s;
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 8}, {9, 33}, {64, 256}, {2, 1100}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t m = shapes[si][0], d = shapes[si][1], n = m * d;
        for (int affine = 0; affine < 2; affine++) {
            float *x = buf_new(n), *gy = buf_new(n), *w = buf_new(d), *b = buf_new(d);
            float *y[3], *st[3], *dx[3], *dw[3], *db[3];
            for (int k = 0; k < 3; k++) {
                y[k] = buf_new(n), st[k] = buf_new(2 * m), dx[k] = buf_new(n);
                dw[k] = buf_new(d), db[k] = buf_new(d);
                memcpy(dw[k], w, sizeof(float) * (size_t)d); /* accumulated into */
                memcpy(db[k], b, sizeof(float) * (size_t)d);
            }
            for (int64_t i = 0; i < n; i++) x[i] = x[i] * 3.0f + (i / d == 1 ? 1000.0f : 0.0f);
            const float *wp = affine ? w : NULL, *bp = affine ? b : NULL;
            ref()->eltwise.layernorm_rows(m, d, x, wp, bp, 1e-5, y[2], st[2]);
            ref()->eltwise.layernorm_bwd_rows(m, d, x, gy, wp, st[2], dx[2], dw[2], db[2]);
            for (int th = 0; th < 2; th++) {
                TU_OK(nn_set_num_threads(g_threads[th]));
                fast()->eltwise.layernorm_rows(m, d, x, wp, bp, 1e-5, y[th], st[th]);
                fast()->eltwise.layernorm_bwd_rows(m, d, x, gy, wp, st[2], dx[th], dw[th], db[th]);
            }
            expect_same(y[0], y[1], n, "layernorm y 1 vs 2 threads");
            expect_same(dx[0], dx[1], n, "layernorm dx 1 vs 2 threads");
            expect_same(dw[0], dw[1], d, "layernorm dw 1 vs 2 threads");
            expect_same(db[0], db[1], d, "layernorm db 1 vs 2 threads");
            for (int64_t i = 0; i < m; i++) {
                if (fabsf(st[0][2 * i] - st[2][2 * i]) > 1e-6f * (1.0f + fabsf(st[2][2 * i])) ||
                    fabsf(st[0][2 * i + 1] - st[2][2 * i + 1]) > 1e-5f * st[2][2 * i + 1])
                    fail_msg(
                        "layernorm [%lld x %lld] row %lld stats %.9g %.9g, reference %.9g %.9g",
                        (long long)m, (long long)d, (long long)i, (double)st[0][2 * i],
                        (double)st[0][2 * i + 1], (double)st[2][2 * i], (double)st[2][2 * i + 1]);
                for (int64_t j = 0; j < d; j++) {
                    const int64_t k = i * d + j;
                    /* |xh| <= sqrt(d); y scale |xh w| + |b|, dx scale is (|g| + sums) */
                    const float sc = sqrtf((float)d) + 1.0f;
                    if (fabsf(y[0][k] - y[2][k]) > 2e-5f * sc)
                        fail_msg("layernorm y [%lld x %lld] (%lld, %lld): %.9g, reference %.9g",
                                 (long long)m, (long long)d, (long long)i, (long long)j,
                                 (double)y[0][k], (double)y[2][k]);
                    if (fabsf(dx[0][k] - dx[2][k]) > 2e-5f * sc * st[2][2 * i + 1] * sc)
                        fail_msg("layernorm dx [%lld x %lld] (%lld, %lld): %.9g, reference %.9g",
                                 (long long)m, (long long)d, (long long)i, (long long)j,
                                 (double)dx[0][k], (double)dx[2][k]);
                }
            }
            for (int64_t j = 0; j < d; j++)
                if (fabsf(dw[0][j] - dw[2][j]) > 2e-5f * (float)m * (sqrtf((float)d) + 1.0f) ||
                    fabsf(db[0][j] - db[2][j]) > 2e-6f * (float)(m + 1))
                    fail_msg("layernorm [%lld x %lld] column %lld: dw %.9g db %.9g, reference "
                             "%.9g %.9g",
                             (long long)m, (long long)d, (long long)j, (double)dw[0][j],
                             (double)db[0][j], (double)dw[2][j], (double)db[2][j]);
            buf_free(x), buf_free(gy), buf_free(w), buf_free(b);
            for (int k = 0; k < 3; k++)
                buf_free(y[k]), buf_free(st[k]), buf_free(dx[k]), buf_free(dw[k]), buf_free(db[k]);
        }
    }
    TU_OK(nn_set_num_threads(1));
}

static void expect_full_table(const nn_kernels *t) {
    assert_non_null(t);
    assert_non_null(t->name);
    const char *p = (const char *)&t->gemm, *end = (const char *)(t + 1);
    for (; p + sizeof(void (*)(void)) <= end; p += sizeof(void (*)(void))) {
        void (*fp)(void);
        memcpy(&fp, p, sizeof fp);
        if (!fp)
            fail_msg("table %s: entry at byte %d is NULL", t->name, (int)(p - (const char *)t));
    }
}

static void test_table(void **s) {
    (void)s;
    const nn_kernels *r = ref();
    assert_string_equal(r->name, "reference");
    assert_ptr_equal(r->gemm.sgemm, nn__ref_sgemm);
    assert_ptr_equal(r->gemm.sgemm_batched, nn__ref_sgemm_batched);
    expect_full_table(r);
    int best = NN_TIER_REF;
    for (int t = 0; t < NN_TIER_COUNT; t++)
        if (nn__tier_runnable(t)) {
            expect_full_table(nn__tier_kernels(t));
            assert_string_equal(nn__tier_kernels(t)->name, nn__tier_name(t));
            best = t;
        } else {
            assert_null(nn__tier_kernels(t));
            assert_false(nn__backend_force_tier(t));
        }
    /* the best runnable tier is the default; unknown tiers are refused */
    assert_int_equal(nn__backend_tier(), best);
    assert_false(nn__backend_force_tier(NN_TIER_COUNT));
    assert_false(nn__backend_force_tier(1000));
    assert_int_equal(nn__backend_tier(), best);
    /* the CPU facts the tiers rest on */
    const nn__cpu_info *cpu = nn__cpu();
    assert_true(cpu->l1d >= 8 * 1024 && cpu->l2 >= cpu->l1d && cpu->l3 >= cpu->l2);
    if (cpu->avx512) assert_true(cpu->avx2_fma);
#if NN_HAVE_AVX2
    assert_int_equal(nn__tier_runnable(NN_TIER_AVX2), cpu->avx2_fma);
#endif
#if NN_HAVE_AVX512
    assert_int_equal(nn__tier_runnable(NN_TIER_AVX512), cpu->avx512);
#endif
    printf("active kernels: %s\n", fast()->name);
}

/* nn_backend_info names the tier in use, the GEMM provider and the caches. */
static void test_backend_info(void **s) {
    (void)s;
    const char *info = nn_backend_info();
    assert_non_null(info);
    assert_ptr_equal(info, nn_backend_info()); /* a static string */
    char want[64];
    snprintf(want, sizeof want, "tier %s;", nn__tier_name(nn__backend_tier()));
    if (!strstr(info, want)) fail_msg("nn_backend_info() = '%s' lacks '%s'", info, want);
    snprintf(want, sizeof want, "gemm %s", nn__tier_gemm_provider(nn__backend_tier()));
    if (!strstr(info, want)) fail_msg("nn_backend_info() = '%s' lacks '%s'", info, want);
    snprintf(want, sizeof want, "L1d %lld KiB", (long long)(nn__cpu()->l1d / 1024));
    if (!strstr(info, want)) fail_msg("nn_backend_info() = '%s' lacks '%s'", info, want);
    printf("%s\n", info);
}

TIERED(test_conv_helpers)
TIERED(test_swap01)
TIERED(test_elementwise)
TIERED(test_bias_act)
TIERED(test_maxpool)
TIERED(test_reductions)
TIERED(test_softmax)
TIERED(test_xent)
TIERED(test_gelu_exp)
TIERED(test_layernorm)
TIERED(test_adam)
TIERED(test_sgd)
TIERED(test_thread_determinism)
TIERED(test_training_determinism)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_backend_info),
        cmocka_unit_test(test_gemm_shapes_tiers),
        cmocka_unit_test(test_gemm_model_shapes_tiers),
        cmocka_unit_test(test_gemm_blocking_edges_tiers),
        cmocka_unit_test(test_gemm_pack_tiers),
        cmocka_unit_test(test_gemm_transpose_tiers),
        cmocka_unit_test(test_gemm_kernel_rows_t_tiers),
        cmocka_unit_test(test_gemm_in_place_a_tiers),
        cmocka_unit_test(test_gemm_k_split_tiers),
        cmocka_unit_test(test_gemm_batched_tiers),
        cmocka_unit_test(test_gemm_thread_determinism_tiers),
        cmocka_unit_test(test_gemv_tiers),
        cmocka_unit_test(test_gemv_rows_alone_tiers),
        cmocka_unit_test(test_conv_helpers_tiers),
        cmocka_unit_test(test_swap01_tiers),
        cmocka_unit_test(test_elementwise_tiers),
        cmocka_unit_test(test_bias_act_tiers),
        cmocka_unit_test(test_maxpool_tiers),
        cmocka_unit_test(test_reductions_tiers),
        cmocka_unit_test(test_softmax_tiers),
        cmocka_unit_test(test_xent_tiers),
        cmocka_unit_test(test_gelu_exp_tiers),
        cmocka_unit_test(test_layernorm_tiers),
        cmocka_unit_test(test_adam_tiers),
        cmocka_unit_test(test_sgd_tiers),
        cmocka_unit_test(test_thread_determinism_tiers),
        cmocka_unit_test(test_training_determinism_tiers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
