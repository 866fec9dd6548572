/* AVX2/FMA kernels, compiled with -mavx2 -mfma -O3 in their own archive and
 * selected by backend.c only when the CPU has both. Threads: OpenMP, with
 * nn__num_threads() threads, splitting over independent outputs only so a
 * result never depends on the thread count.
 *
 * GEMM: shapes too small for BLIS's ~1 us fixed cost (and batch-1 rows, where
 * BLIS would pack the whole weight matrix for one row) run a register-blocked
 * micro-kernel here; everything else goes to `large_gemm` (BLIS). */
#include "backend/backend.h"
#include "backend/nn_backend_config.h"
#include "nn_internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#if NN_HAVE_OPENMP
#include <omp.h>
#endif

#define NN_INLINE static inline __attribute__((always_inline))

static nn__sgemm_fn g_large;

/* ------------------------------------------------------------------ threads */

/* Threads worth using for `work` units of roughly one float op each: one per
 * `grain` units, at most nn__num_threads(). A fork costs ~1-2 us, so tiny
 * work stays on the calling thread. */
static int threads_for(int64_t work, int64_t grain) {
#if NN_HAVE_OPENMP
    int nt = nn__num_threads();
    if (nt <= 1 || work < 2 * grain) return 1;
    int64_t most = work / grain;
    return most < nt ? (int)most : nt;
#else
    (void)work, (void)grain;
    return 1;
#endif
}

/* Split [0, n) into nt chunks whose boundaries are multiples of `align`;
 * chunk t is [*lo, *hi). */
static void chunk(int64_t n, int nt, int t, int64_t align, int64_t *lo, int64_t *hi) {
    int64_t blocks = (n + align - 1) / align;
    int64_t per = blocks / nt, extra = blocks % nt;
    int64_t b0 = t * per + (t < extra ? t : extra);
    int64_t b1 = b0 + per + (t < extra ? 1 : 0);
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}

/* Run body(ctx, lo, hi) over [0, n) split into aligned chunks on nt threads. */
typedef void (*range_fn)(void *ctx, int64_t lo, int64_t hi);
static void parallel_range(int64_t n, int nt, int64_t align, range_fn body, void *ctx) {
    if (nt <= 1) {
        body(ctx, 0, n);
        return;
    }
#if NN_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), got = omp_get_num_threads();
        int64_t lo, hi;
        chunk(n, got, t, align, &lo, &hi);
        if (lo < hi) body(ctx, lo, hi);
    }
#else
    body(ctx, 0, n);
#endif
}

/* -------------------------------------------------------------- GEMM: masks */

static const int32_t g_mask_tbl[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* Lanes [0, r) set, r in 0..8. */
NN_INLINE __m256i lane_mask(int64_t r) {
    return _mm256_loadu_si256((const __m256i *)(g_mask_tbl + 8 - r));
}

NN_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ------------------------------------------ GEMM: op(B) = B (axpy form) */

/* C[MR x nr] block (nr <= 16) = alpha * A[MR x k] B[k x nr] + beta * C, with
 * A(i,p) at a[i*ars + p*acs] (covers A and Aᵀ) and B(p,j) at b[p*ldb + j].
 * Accumulators: MR x 2 ymm (MR <= 6: 12 of the 16 registers). */
NN_INLINE void ker_axpy(const int MR, int64_t k, const float *a, int64_t ars, int64_t acs,
                        const float *b, int64_t ldb, int64_t nr, float *c, int64_t ldc, float alpha,
                        float beta) {
    __m256 acc[6][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const bool full = nr == 16;
    const __m256i m0 = lane_mask(nr < 8 ? nr : 8), m1 = lane_mask(nr > 8 ? nr - 8 : 0);
    if (full) {
        for (int64_t p = 0; p < k; p++) {
            __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);
            for (int r = 0; r < MR; r++) {
                __m256 av = _mm256_broadcast_ss(a + r * ars + p * acs);
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
    } else {
        for (int64_t p = 0; p < k; p++) {
            __m256 b0 = _mm256_maskload_ps(b + p * ldb, m0);
            __m256 b1 = _mm256_maskload_ps(b + p * ldb + 8, m1);
            for (int r = 0; r < MR; r++) {
                __m256 av = _mm256_broadcast_ss(a + r * ars + p * acs);
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        __m256 v0 = _mm256_mul_ps(va, acc[r][0]), v1 = _mm256_mul_ps(va, acc[r][1]);
        if (full) {
            if (beta != 0.0f) {
                v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), v0);
                v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), v1);
            }
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
        } else {
            if (beta != 0.0f) {
                v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), v0);
                v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), v1);
            }
            _mm256_maskstore_ps(cr, m0, v0);
            _mm256_maskstore_ps(cr + 8, m1, v1);
        }
    }
}

/* Columns [j0, j1) of C for op(B) = B; A or Aᵀ by strides. */
static void small_axpy(bool trans_a, int64_t m, int64_t j0, int64_t j1, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    const int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    for (int64_t j = j0; j < j1; j += 16) {
        const int64_t nr = j1 - j < 16 ? j1 - j : 16;
        const float *bj = b + j;
        int64_t i = 0;
        for (; i + 6 <= m; i += 6)
            ker_axpy(6, k, a + i * ars, ars, acs, bj, ldb, nr, c + i * ldc + j, ldc, alpha, beta);
        const float *ai = a + i * ars;
        float *ci = c + i * ldc + j;
        switch (m - i) {
        case 5: ker_axpy(5, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 4: ker_axpy(4, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 3: ker_axpy(3, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 2: ker_axpy(2, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        case 1: ker_axpy(1, k, ai, ars, acs, bj, ldb, nr, ci, ldc, alpha, beta); break;
        default: break;
        }
    }
}

/* ------------------------------------------ GEMM: op(B) = Bᵀ (dot form) */

/* C[MR x NR] = alpha * A[MR x k] · B[NR x k]ᵀ + beta * C: each entry a dot
 * product of two contiguous rows (a Linear layer's x · Wᵀ). */
NN_INLINE void ker_dot(const int MR, const int NR, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float *c, int64_t ldc, float alpha,
                       float beta) {
    __m256 acc[2][8];
    for (int r = 0; r < MR; r++)
        for (int s = 0; s < NR; s++) acc[r][s] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 av[2];
        for (int r = 0; r < MR; r++) av[r] = _mm256_loadu_ps(a + r * lda + p);
        for (int s = 0; s < NR; s++) {
            __m256 bv = _mm256_loadu_ps(b + s * ldb + p);
            for (int r = 0; r < MR; r++) acc[r][s] = _mm256_fmadd_ps(av[r], bv, acc[r][s]);
        }
    }
    if (p < k) {
        const __m256i mk = lane_mask(k - p);
        __m256 av[2];
        for (int r = 0; r < MR; r++) av[r] = _mm256_maskload_ps(a + r * lda + p, mk);
        for (int s = 0; s < NR; s++) {
            __m256 bv = _mm256_maskload_ps(b + s * ldb + p, mk);
            for (int r = 0; r < MR; r++) acc[r][s] = _mm256_fmadd_ps(av[r], bv, acc[r][s]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int s = 0; s < NR; s++) {
            float v = alpha * hsum(acc[r][s]);
            float *cp = c + r * ldc + s;
            *cp = beta != 0.0f ? v + beta * *cp : v;
        }
}

/* One row of C (m == 1 or the last odd row): 8 independent dot products at a
 * time keep both FMA pipes busy. */
static void dot_row(int64_t j0, int64_t j1, int64_t k, float alpha, const float *a, const float *b,
                    int64_t ldb, float beta, float *c) {
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) ker_dot(1, 8, k, a, 0, b + j * ldb, ldb, c + j, 0, alpha, beta);
    for (; j + 4 <= j1; j += 4) ker_dot(1, 4, k, a, 0, b + j * ldb, ldb, c + j, 0, alpha, beta);
    for (; j < j1; j++) ker_dot(1, 1, k, a, 0, b + j * ldb, ldb, c + j, 0, alpha, beta);
}

/* Columns [j0, j1) of C for A · Bᵀ. */
static void small_dot(int64_t m, int64_t j0, int64_t j1, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 2 <= m; i += 2) {
        const float *ai = a + i * lda;
        float *ci = c + i * ldc;
        int64_t j = j0;
        for (; j + 4 <= j1; j += 4)
            ker_dot(2, 4, k, ai, lda, b + j * ldb, ldb, ci + j, ldc, alpha, beta);
        for (; j < j1; j++) ker_dot(2, 1, k, ai, lda, b + j * ldb, ldb, ci + j, ldc, alpha, beta);
    }
    if (i < m) dot_row(j0, j1, k, alpha, a + i * lda, b, ldb, beta, c + i * ldc);
}

typedef struct gemm_args {
    bool ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc;
} gemm_args;

static void gemm_cols(void *ctx, int64_t j0, int64_t j1) {
    const gemm_args *g = ctx;
    if (g->tb)
        small_dot(g->m, j0, j1, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c, g->ldc);
    else
        small_axpy(g->ta, g->m, j0, j1, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c,
                   g->ldc);
}

void nn__avx2_sgemm_small(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                          float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (trans_a && trans_b) { /* rare: no fast path of our own */
        nn__ref_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    gemm_args g = {trans_a, trans_b, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc};
    /* Threads split columns; each column block is computed the same way
     * whatever the split, so results do not depend on the thread count. */
    int nt = threads_for(m * n * k, 1 << 17);
    parallel_range(n, nt, 16, gemm_cols, &g);
}

/* Below this many multiply-adds BLIS's fixed cost (packing, ~1 us per call)
 * outweighs its better blocking (measured on Zen 3: see tests/bench). */
#define SMALL_GEMM_WORK (64 * 64 * 64)

static void fast_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    const double work = (double)m * (double)n * (double)k;
    /* A handful of rows (batch-1 inference): BLIS would pack all of B for
     * them; streaming B once through dot products / row updates is cheaper. */
    const bool few_rows = m <= 4;
    if (!(trans_a && trans_b) && (few_rows || work <= SMALL_GEMM_WORK))
        nn__avx2_sgemm_small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        g_large(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---------------------------------------------------------- convolution */

typedef struct conv_args {
    const float *x;
    float *col;
    int64_t n, c, h, w, ldcol;
    const nn__win2d *g;
} conv_args;

/* im2col rows for tasks [lo, hi), task t = (b, ch): every tap of one channel
 * of one image. Stride-1 rows are contiguous copies of input rows. */
static void im2col_tasks(void *ctx, int64_t lo, int64_t hi) {
    const conv_args *q = ctx;
    const nn__win2d *g = q->g;
    const int64_t ohw = g->oh * g->ow, h = q->h, w = q->w;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t b = t / q->c, ch = t % q->c;
        const float *xp = q->x + t * h * w;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *dst = q->col + ((ch * g->kh + i) * g->kw + j) * q->ldcol + b * ohw;
                const int64_t dx = j * g->dw - g->pw;
                /* ox range whose tap column lies inside the image */
                int64_t ox0 = 0, ox1 = g->ow;
                if (g->sw == 1) {
                    ox0 = dx < 0 ? -dx : 0;
                    ox1 = w - dx < g->ow ? w - dx : g->ow;
                    if (ox1 < ox0) ox1 = ox0;
                }
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    const int64_t y = oy * g->sh - g->ph + i * g->dh;
                    float *d = dst + oy * g->ow;
                    if (y < 0 || y >= h) {
                        memset(d, 0, (size_t)g->ow * sizeof(float));
                        continue;
                    }
                    const float *xr = xp + y * w;
                    if (g->sw == 1) {
                        /* rows are short (14-28 floats): an inline loop the
                         * compiler vectorises beats a memcpy call */
                        for (int64_t ox = 0; ox < ox0; ox++) d[ox] = 0.0f;
                        for (int64_t ox = ox0; ox < ox1; ox++) d[ox] = xr[ox + dx];
                        for (int64_t ox = ox1; ox < g->ow; ox++) d[ox] = 0.0f;
                    } else {
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t xx = ox * g->sw + dx;
                            d[ox] = xx >= 0 && xx < w ? xr[xx] : 0.0f;
                        }
                    }
                }
            }
    }
}

static void avx2_im2col(const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                        const nn__win2d *g, float *col, int64_t ldcol) {
    conv_args q = {x, col, n, c, h, w, ldcol, g};
    int nt = threads_for(n * c * g->kh * g->kw * g->oh * g->ow, 1 << 15);
    parallel_range(n * c, nt, 1, im2col_tasks, &q);
}

/* col2im for tasks (b, ch): each task owns one output plane, so there are no
 * write races and the order of additions is fixed. */
static void col2im_tasks(void *ctx, int64_t lo, int64_t hi) {
    const conv_args *q = ctx;
    const nn__win2d *g = q->g;
    const int64_t ohw = g->oh * g->ow, h = q->h, w = q->w;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t b = t / q->c, ch = t % q->c;
        float *xp = (float *)q->x + t * h * w;
        memset(xp, 0, (size_t)(h * w) * sizeof(float));
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *src = q->col + ((ch * g->kh + i) * g->kw + j) * q->ldcol + b * ohw;
                const int64_t dx = j * g->dw - g->pw;
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    const int64_t y = oy * g->sh - g->ph + i * g->dh;
                    if (y < 0 || y >= h) continue;
                    float *xr = xp + y * w;
                    const float *s = src + oy * g->ow;
                    if (g->sw == 1) {
                        int64_t ox0 = dx < 0 ? -dx : 0;
                        int64_t ox1 = w - dx < g->ow ? w - dx : g->ow;
                        for (int64_t ox = ox0; ox < ox1; ox++) xr[ox + dx] += s[ox];
                    } else {
                        for (int64_t ox = 0; ox < g->ow; ox++) {
                            int64_t xx = ox * g->sw + dx;
                            if (xx >= 0 && xx < w) xr[xx] += s[ox];
                        }
                    }
                }
            }
    }
}

static void avx2_col2im(const float *col, int64_t ldcol, int64_t n, int64_t c, int64_t h, int64_t w,
                        const nn__win2d *g, float *x) {
    conv_args q = {x, (float *)col, n, c, h, w, ldcol, g};
    int nt = threads_for(n * c * g->kh * g->kw * g->oh * g->ow, 1 << 15);
    parallel_range(n * c, nt, 1, col2im_tasks, &q);
}

typedef struct swap_args {
    const float *x;
    float *y;
    int64_t a, b, s;
} swap_args;

static void swap_tasks(void *ctx, int64_t lo, int64_t hi) {
    const swap_args *q = ctx;
    for (int64_t t = lo; t < hi; t++) { /* t = output block (j, i) */
        int64_t j = t / q->a, i = t % q->a;
        memcpy(q->y + t * q->s, q->x + (i * q->b + j) * q->s, (size_t)q->s * sizeof(float));
    }
}

static void avx2_swap01(const float *x, int64_t a, int64_t b, int64_t s, float *y) {
    swap_args q = {x, y, a, b, s};
    parallel_range(a * b, threads_for(a * b * s, 1 << 16), 1, swap_tasks, &q);
}

/* ------------------------------------------------- elementwise (generic) */

/* Elementwise kernels share one shape: split [0, n) in 64-float-aligned
 * chunks and run a vectorised loop on each. */
#define EW_GRAIN (1 << 15)

typedef struct ew_args {
    const float *a, *b;
    float *y;
    float alpha;
    int op;
} ew_args;

enum { EW_ADD, EW_SUB, EW_MUL, EW_AXPY, EW_SCALE, EW_RELU };

static void ew_body(void *ctx, int64_t lo, int64_t hi) {
    const ew_args *q = ctx;
    const float *a = q->a, *b = q->b;
    float *y = q->y;
    const float al = q->alpha;
    switch (q->op) {
    case EW_ADD:
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
        break;
    case EW_SUB:
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] - b[i];
        break;
    case EW_MUL:
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] * b[i];
        break;
    case EW_AXPY: /* no FMA contraction: matches the reference bit for bit */
        for (int64_t i = lo; i < hi; i++) y[i] += al * a[i];
        break;
    case EW_SCALE:
        for (int64_t i = lo; i < hi; i++) y[i] = al * a[i];
        break;
    case EW_RELU: {
        /* max(x, 0) but NaN stays NaN, like the reference */
        const __m256 z = _mm256_setzero_ps();
        int64_t i = lo;
        for (; i + 8 <= hi; i += 8) {
            __m256 v = _mm256_loadu_ps(a + i);
            __m256 keep = _mm256_cmp_ps(v, z, _CMP_NLE_UQ); /* v > 0 or NaN */
            _mm256_storeu_ps(y + i, _mm256_and_ps(v, keep));
        }
        for (; i < hi; i++) y[i] = a[i] > 0.0f || isnan(a[i]) ? a[i] : 0.0f;
        break;
    }
    default: break;
    }
}

static void ew_run(int op, int64_t n, const float *a, const float *b, float *y, float alpha) {
    ew_args q = {a, b, y, alpha, op};
    parallel_range(n, threads_for(n, EW_GRAIN), 64, ew_body, &q);
}

static void avx2_add(int64_t n, const float *a, const float *b, float *y) {
    ew_run(EW_ADD, n, a, b, y, 0.0f);
}
static void avx2_sub(int64_t n, const float *a, const float *b, float *y) {
    ew_run(EW_SUB, n, a, b, y, 0.0f);
}
static void avx2_mul(int64_t n, const float *a, const float *b, float *y) {
    ew_run(EW_MUL, n, a, b, y, 0.0f);
}
static void avx2_axpy(int64_t n, float alpha, const float *x, float *y) {
    ew_run(EW_AXPY, n, x, NULL, y, alpha);
}
static void avx2_scale(int64_t n, float alpha, const float *x, float *y) {
    ew_run(EW_SCALE, n, x, NULL, y, alpha);
}
static void avx2_relu(int64_t n, const float *x, float *y) { ew_run(EW_RELU, n, x, NULL, y, 0.0f); }

typedef struct relu_bwd_args {
    const float *y, *gy;
    float *gx;
} relu_bwd_args;

static void relu_bwd_body(void *ctx, int64_t lo, int64_t hi) {
    const relu_bwd_args *q = ctx;
    const __m256 z = _mm256_setzero_ps();
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(q->y + i), z, _CMP_GT_OQ);
        _mm256_storeu_ps(q->gx + i, _mm256_and_ps(_mm256_loadu_ps(q->gy + i), pos));
    }
    for (; i < hi; i++) q->gx[i] = q->y[i] > 0.0f ? q->gy[i] : 0.0f;
}

static void avx2_relu_bwd(int64_t n, const float *y, const float *gy, float *gx) {
    relu_bwd_args q = {y, gy, gx};
    parallel_range(n, threads_for(n, EW_GRAIN), 64, relu_bwd_body, &q);
}

typedef struct bias_args {
    const float *bias;
    float *y;
    int64_t n, ldy;
    bool per_row, relu;
} bias_args;

static void bias_rows(void *ctx, int64_t lo, int64_t hi) {
    const bias_args *q = ctx;
    const __m256 z = _mm256_setzero_ps();
    for (int64_t i = lo; i < hi; i++) {
        float *yr = q->y + i * q->ldy;
        const float *br = q->bias && !q->per_row ? q->bias : NULL;
        const __m256 bconst = _mm256_set1_ps(q->bias && q->per_row ? q->bias[i] : 0.0f);
        int64_t j = 0;
        for (; j + 8 <= q->n; j += 8) {
            __m256 v = _mm256_loadu_ps(yr + j);
            if (q->bias) v = _mm256_add_ps(v, br ? _mm256_loadu_ps(br + j) : bconst);
            if (q->relu) v = _mm256_and_ps(v, _mm256_cmp_ps(v, z, _CMP_NLE_UQ));
            _mm256_storeu_ps(yr + j, v);
        }
        for (; j < q->n; j++) {
            float v = yr[j];
            if (q->bias) v += q->bias[q->per_row ? i : j];
            if (q->relu && !(v > 0.0f) && !isnan(v)) v = 0.0f;
            yr[j] = v;
        }
    }
}

static void avx2_bias_act(int64_t m, int64_t n, const float *bias, bool per_row, bool relu,
                          float *y, int64_t ldy) {
    bias_args q = {bias, y, n, ldy, per_row, relu};
    parallel_range(m, threads_for(m * n, EW_GRAIN), 1, bias_rows, &q);
}

/* ---------------------------------------------------------------- pooling */

typedef struct pool_args {
    const float *x;
    float *y;
    int64_t *idx;
    int64_t h, w;
    const nn__win2d *g;
    const float *gy;
    const int64_t *cidx;
    float *gx;
} pool_args;

/* The reference rule for one step of the scan (PyTorch's): take v when it
 * is larger or NaN, so the last NaN of a window wins. */
NN_INLINE bool pool_takes(float v, float best) { return v > best || isnan(v); }

/* 2x2 window, stride 2, no padding or dilation: the demo CNN's pooling. Taps
 * in the reference's order (row 0 left, right, row 1 left, right). */
static void pool2x2_plane(const float *xp, int64_t w, int64_t oh, int64_t ow, float *yp,
                          int64_t *ip) {
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        float *yr = yp + oy * ow;
        int64_t *ir = ip ? ip + oy * ow : NULL;
        for (int64_t ox = 0; ox < ow; ox++) {
            float best = r0[2 * ox];
            int64_t at = 0;
            if (pool_takes(r0[2 * ox + 1], best)) best = r0[2 * ox + 1], at = 1;
            if (pool_takes(r1[2 * ox], best)) best = r1[2 * ox], at = 2;
            if (pool_takes(r1[2 * ox + 1], best)) best = r1[2 * ox + 1], at = 3;
            yr[ox] = best;
            if (ir) ir[ox] = (2 * oy + (at >> 1)) * w + 2 * ox + (at & 1);
        }
    }
}

static void pool_general_plane(const float *xp, int64_t h, int64_t w, const nn__win2d *g, float *yp,
                               int64_t *ip) {
    for (int64_t oy = 0; oy < g->oh; oy++)
        for (int64_t ox = 0; ox < g->ow; ox++) {
            float best = -INFINITY;
            int64_t at = -1;
            for (int64_t i = 0; i < g->kh; i++) {
                int64_t yy = oy * g->sh - g->ph + i * g->dh;
                if (yy < 0 || yy >= h) continue;
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t xx = ox * g->sw - g->pw + j * g->dw;
                    if (xx < 0 || xx >= w) continue;
                    float v = xp[yy * w + xx];
                    if (at < 0 || pool_takes(v, best)) best = v, at = yy * w + xx;
                }
            }
            yp[oy * g->ow + ox] = best;
            if (ip) ip[oy * g->ow + ox] = at; /* -1: no tap */
        }
}

static void pool_planes(void *ctx, int64_t lo, int64_t hi) {
    const pool_args *q = ctx;
    const nn__win2d *g = q->g;
    const int64_t ohw = g->oh * g->ow;
    const bool fast2 = g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 &&
                       g->pw == 0 && g->dh == 1 && g->dw == 1 && 2 * g->oh <= q->h &&
                       2 * g->ow <= q->w;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = q->x + p * q->h * q->w;
        int64_t *ip = q->idx ? q->idx + p * ohw : NULL;
        if (fast2)
            pool2x2_plane(xp, q->w, g->oh, g->ow, q->y + p * ohw, ip);
        else
            pool_general_plane(xp, q->h, q->w, g, q->y + p * ohw, ip);
    }
}

static void avx2_maxpool2d(const float *x, int64_t planes, int64_t h, int64_t w, const nn__win2d *g,
                           float *y, int64_t *idx) {
    pool_args q = {x, y, idx, h, w, g, NULL, NULL, NULL};
    int nt = threads_for(planes * g->oh * g->ow * g->kh * g->kw, EW_GRAIN);
    parallel_range(planes, nt, 1, pool_planes, &q);
}

typedef struct pool_bwd_args {
    const float *gy;
    const int64_t *idx;
    float *gx;
    int64_t hw, ohw;
} pool_bwd_args;

static void pool_bwd_planes(void *ctx, int64_t lo, int64_t hi) {
    const pool_bwd_args *q = ctx;
    for (int64_t p = lo; p < hi; p++) {
        float *gp = q->gx + p * q->hw;
        const float *g = q->gy + p * q->ohw;
        const int64_t *ix = q->idx + p * q->ohw;
        memset(gp, 0, (size_t)q->hw * sizeof(float));
        for (int64_t o = 0; o < q->ohw; o++)
            if (ix[o] >= 0 && ix[o] < q->hw) gp[ix[o]] += g[o];
    }
}

static void avx2_maxpool2d_bwd(const float *gy, const int64_t *idx, int64_t planes, int64_t h,
                               int64_t w, int64_t oh, int64_t ow, float *gx) {
    pool_bwd_args q = {gy, idx, gx, h * w, oh * ow};
    parallel_range(planes, threads_for(planes * h * w, EW_GRAIN), 1, pool_bwd_planes, &q);
}

/* ------------------------------------------------------------- reductions */

typedef struct red_args {
    const float *x;
    float *y;
    int64_t m, n, ldx;
    bool acc;
} red_args;

/* sum_rows over columns [lo, hi): the same order of additions as the
 * reference (row by row), so the result is bit-identical to it. */
static void sum_rows_body(void *ctx, int64_t lo, int64_t hi) {
    const red_args *q = ctx;
    float *y = q->y;
    if (!q->acc)
        for (int64_t j = lo; j < hi; j++) y[j] = 0.0f;
    for (int64_t i = 0; i < q->m; i++) {
        const float *xr = q->x + i * q->ldx;
        for (int64_t j = lo; j < hi; j++) y[j] += xr[j];
    }
}

static void avx2_sum_rows(int64_t m, int64_t n, const float *x, int64_t ldx, float *y,
                          bool accumulate) {
    red_args q = {x, y, m, n, ldx, accumulate};
    parallel_range(n, threads_for(m * n, EW_GRAIN), 64, sum_rows_body, &q);
}

static void sum_cols_body(void *ctx, int64_t lo, int64_t hi) {
    const red_args *q = ctx;
    for (int64_t i = lo; i < hi; i++) {
        const float *xr = q->x + i * q->ldx;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= q->n; j += 16) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + j));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + j + 8));
        }
        float s = hsum(_mm256_add_ps(s0, s1));
        for (; j < q->n; j++) s += xr[j];
        q->y[i] = q->acc ? q->y[i] + s : s;
    }
}

static void avx2_sum_cols(int64_t m, int64_t n, const float *x, int64_t ldx, float *y,
                          bool accumulate) {
    red_args q = {x, y, m, n, ldx, accumulate};
    parallel_range(m, threads_for(m * n, EW_GRAIN), 1, sum_cols_body, &q);
}

/* ---------------------------------------------------------------- softmax */

typedef struct sm_args {
    const float *x, *gy;
    float *y;
    int64_t n;
    bool log;
} sm_args;

/* Row-parallel; each row uses the reference's exact arithmetic. */
static void softmax_body(void *ctx, int64_t lo, int64_t hi) {
    const sm_args *q = ctx;
    nn__ref_kernels()->softmax_rows(hi - lo, q->n, q->x + lo * q->n, q->y + lo * q->n, q->log);
}

static void avx2_softmax_rows(int64_t m, int64_t n, const float *x, float *y, bool log) {
    sm_args q = {x, NULL, y, n, log};
    parallel_range(m, threads_for(m * n * 8, EW_GRAIN), 1, softmax_body, &q);
}

static void softmax_bwd_body(void *ctx, int64_t lo, int64_t hi) {
    const sm_args *q = ctx;
    nn__ref_kernels()->softmax_bwd_rows(hi - lo, q->n, q->x + lo * q->n, q->gy + lo * q->n,
                                        q->y + lo * q->n, q->log);
}

static void avx2_softmax_bwd_rows(int64_t m, int64_t n, const float *y, const float *gy, float *gx,
                                  bool log) {
    sm_args q = {y, gy, gx, n, log};
    parallel_range(m, threads_for(m * n * 4, EW_GRAIN), 1, softmax_bwd_body, &q);
}

/* ------------------------------------------------------------- optimizers */

typedef struct adam_args {
    float *p, *m, *v, *vmax;
    const float *g;
    const nn__adam_hp *hp;
} adam_args;

/* The reference's arithmetic, vectorised by the compiler (sqrtf and division
 * are exact IEEE operations and nothing is contracted, so lanes match the
 * scalar loop bit for bit). */
static void adam_body(void *ctx, int64_t lo, int64_t hi) {
    const adam_args *q = ctx;
    const nn__adam_hp *hp = q->hp;
    float *restrict p = q->p, *restrict m = q->m, *restrict v = q->v;
    const float *restrict g = q->g;
    const float b1 = hp->beta1, b2 = hp->beta2, c1 = hp->c1, c2 = hp->c2, eps = hp->eps;
    const float wd = hp->weight_decay, decay = hp->decay, ns = hp->neg_step, bc = hp->bc2_sqrt;
    const float sg = hp->maximize ? -1.0f : 1.0f;
    if (q->vmax) {
        float *restrict vm = q->vmax;
        for (int64_t i = lo; i < hi; i++) {
            float gi = sg * g[i];
            if (hp->decoupled)
                p[i] *= decay;
            else
                gi = gi + wd * p[i];
            m[i] = m[i] * b1 + c1 * gi;
            v[i] = v[i] * b2 + c2 * gi * gi;
            float vv = vm[i] = vm[i] > v[i] ? vm[i] : v[i];
            p[i] += ns * (m[i] / (sqrtf(vv) / bc + eps));
        }
    } else if (hp->decoupled) {
        for (int64_t i = lo; i < hi; i++) {
            float gi = sg * g[i];
            p[i] *= decay;
            m[i] = m[i] * b1 + c1 * gi;
            v[i] = v[i] * b2 + c2 * gi * gi;
            p[i] += ns * (m[i] / (sqrtf(v[i]) / bc + eps));
        }
    } else {
        for (int64_t i = lo; i < hi; i++) {
            float gi = sg * g[i] + wd * p[i];
            m[i] = m[i] * b1 + c1 * gi;
            v[i] = v[i] * b2 + c2 * gi * gi;
            p[i] += ns * (m[i] / (sqrtf(v[i]) / bc + eps));
        }
    }
}

static void avx2_adam(int64_t n, float *p, const float *g, float *m, float *v, float *vmax,
                      const nn__adam_hp *hp) {
    adam_args q = {p, m, v, vmax, g, hp};
    parallel_range(n, threads_for(n * 4, EW_GRAIN), 64, adam_body, &q);
}

typedef struct sgd_args {
    float *p, *buf;
    const float *g;
    const nn__sgd_hp *hp;
} sgd_args;

static void sgd_body(void *ctx, int64_t lo, int64_t hi) {
    const sgd_args *q = ctx;
    const nn__sgd_hp *hp = q->hp;
    float *restrict p = q->p;
    const float *restrict g = q->g;
    const float nlr = hp->neg_lr, wd = hp->weight_decay, mom = hp->momentum;
    const float damp1 = hp->damp1, sg = hp->maximize ? -1.0f : 1.0f;
    if (mom == 0.0f || !q->buf) {
        for (int64_t i = lo; i < hi; i++) p[i] += nlr * (sg * g[i] + wd * p[i]);
        return;
    }
    float *restrict b = q->buf;
    for (int64_t i = lo; i < hi; i++) {
        float d = sg * g[i] + wd * p[i];
        b[i] = hp->first ? d : b[i] * mom + damp1 * d;
        d = hp->nesterov ? d + mom * b[i] : b[i];
        p[i] += nlr * d;
    }
}

static void avx2_sgd(int64_t n, float *p, const float *g, float *buf, const nn__sgd_hp *hp) {
    sgd_args q = {p, buf, g, hp};
    parallel_range(n, threads_for(n * 2, EW_GRAIN), 64, sgd_body, &q);
}

void nn__avx2_fill(nn_kernels *t, nn__sgemm_fn large_gemm) {
    g_large = large_gemm ? large_gemm : nn__ref_sgemm;
    t->sgemm = fast_sgemm;
    t->im2col = avx2_im2col;
    t->col2im = avx2_col2im;
    t->swap01 = avx2_swap01;
    t->relu = avx2_relu;
    t->relu_bwd = avx2_relu_bwd;
    t->bias_act = avx2_bias_act;
    t->maxpool2d = avx2_maxpool2d;
    t->maxpool2d_bwd = avx2_maxpool2d_bwd;
    t->add = avx2_add;
    t->sub = avx2_sub;
    t->mul = avx2_mul;
    t->axpy = avx2_axpy;
    t->scale = avx2_scale;
    t->sum_rows = avx2_sum_rows;
    t->sum_cols = avx2_sum_cols;
    t->softmax_rows = avx2_softmax_rows;
    t->softmax_bwd_rows = avx2_softmax_bwd_rows;
    t->adam = avx2_adam;
    t->sgd = avx2_sgd;
}
