/* AVX2 tier: the row kernels of cross-entropy over many classes (a language
 * model's logits: rows of 50257 for GPT-2). The reference (ref/eltwise.c)
 * says what they compute; here exp is an 8-lane polynomial (relative error
 * ~2e-7, a few float ulps) and rows are split over the threads.
 *
 *   xent_lse:  lse[i] = log sum_j exp(X[i, j])   (max-shifted)
 *   xent_bwd:  G[i, j] = s[i] (exp(X[i, j] - lse[i]) - [j == t[i]])
 *
 * Sums of exponentials are taken in float over blocks of 512 classes and
 * the blocks added in double, so the error does not grow with the row.
 * A row whose maximum is not finite (inf or NaN logits) is handed to the
 * reference, which gives the IEEE results (NaN, or inf - inf). */
#include "backend/x86/avx2/avx2.h"
#include "backend/x86/avx2/simd.h"

#include <math.h>

NN_INLINE float hmax8(__m256 v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

NN_INLINE double hsum8d(__m256 v) {
    __m256d a = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* max of a row; NaN anywhere makes the result NaN. */
static float row_max(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        m = _mm256_max_ps(m, v);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    float mx = hmax8(m);
    bool any_nan = _mm256_movemask_ps(nan) != 0;
    for (; j < n; j++) {
        if (isnan(x[j])) any_nan = true;
        if (x[j] > mx) mx = x[j];
    }
    return any_nan ? NAN : mx;
}

typedef struct xent_args {
    int64_t n;
    const float *x, *lse, *s;
    const int64_t *t;
    float *out;
} xent_args;

static void lse_body(void *ctx, int64_t lo, int64_t hi) {
    const xent_args *q = ctx;
    const int64_t n = q->n;
    for (int64_t i = lo; i < hi; i++) {
        const float *x = q->x + i * n;
        const float mx = row_max(x, n);
        if (!isfinite(mx)) {
            nn__ref_kernels()->eltwise.xent_lse(1, n, x, q->out + i);
            continue;
        }
        const __m256 vm = _mm256_set1_ps(mx);
        double acc = 0.0;
        for (int64_t j0 = 0; j0 < n; j0 += 512) {
            const int64_t j1 = j0 + 512 < n ? j0 + 512 : n;
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
            int64_t j = j0;
            for (; j + 16 <= j1; j += 16) {
                s0 = _mm256_add_ps(s0, exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm)));
                s1 = _mm256_add_ps(s1,
                                   exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vm)));
            }
            for (; j < j1; j += 8) {
                const __m256i k = lane_mask(j1 - j);
                const __m256 e =
                    exp8_nonpos(_mm256_sub_ps(_mm256_maskload_ps(x + j, k), vm));
                s0 = _mm256_add_ps(s0, _mm256_and_ps(e, _mm256_castsi256_ps(k)));
            }
            acc += hsum8d(_mm256_add_ps(s0, s1));
        }
        q->out[i] = (float)((double)mx + log(acc));
    }
}

static void avx2_xent_lse(int64_t m, int64_t n, const float *x, float *lse) {
    xent_args q = {n, x, NULL, NULL, NULL, lse};
    nn__parallel_range(m, nn__threads_for(m * n * 8, EW_GRAIN), 1, lse_body, &q);
}

static void bwd_body(void *ctx, int64_t lo, int64_t hi) {
    const xent_args *q = ctx;
    const int64_t n = q->n;
    for (int64_t i = lo; i < hi; i++) {
        const float *x = q->x + i * n;
        float *g = q->out + i * n;
        const float s = q->s[i], l = q->lse[i];
        if (s == 0.0f || !isfinite(l)) { /* ignored rows; non-finite: the reference */
            nn__ref_kernels()->eltwise.xent_bwd(1, n, x, q->lse + i, q->t + i, q->s + i, g);
            continue;
        }
        const __m256 vl = _mm256_set1_ps(l), vs = _mm256_set1_ps(s);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(
                g + j, _mm256_mul_ps(vs, exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + j), vl))));
        if (j < n) {
            const __m256i k = lane_mask(n - j);
            _mm256_maskstore_ps(
                g + j, k,
                _mm256_mul_ps(vs, exp8_nonpos(_mm256_sub_ps(_mm256_maskload_ps(x + j, k), vl))));
        }
        const int64_t t = q->t[i];
        if (t >= 0 && t < n) g[t] -= s;
    }
}

static void avx2_xent_bwd(int64_t m, int64_t n, const float *x, const float *lse,
                          const int64_t *t, const float *s, float *g) {
    xent_args q = {n, x, lse, s, t, g};
    nn__parallel_range(m, nn__threads_for(m * n * 8, EW_GRAIN), 1, bwd_body, &q);
}

void nn__avx2_fill_xent(nn__eltwise_kernels *t) {
    t->xent_lse = avx2_xent_lse;
    t->xent_bwd = avx2_xent_bwd;
}
