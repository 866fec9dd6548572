/* AVX2 tier: layer normalisation over rows (a transformer's LayerNorm), 8
 * lanes. The reference (ref/eltwise.c) says what it computes (statistics in
 * double). Here sums are taken in float over blocks of 512 values and the
 * blocks added in double, so the error does not grow with the row; results
 * agree with the reference to a few float ulps.
 *
 * Forward: rows split over the threads. Backward: dx row by row (rows over
 * the threads); dw and db column by column (blocks of 64 columns over the
 * threads, each adding its rows in order), so results do not depend on the
 * thread count. */
#include "backend/x86/avx2/avx2.h"
#include "backend/x86/avx2/simd.h"

#include <math.h>

#define BLK 512

/* sum_j p[j] - c over one row (c = 0: plain sum), or with sq the sum of
 * squares of p[j] - c. */
static double row_sum(const float *p, int64_t n, float c, bool sq) {
    const __m256 vc = _mm256_set1_ps(c);
    double acc = 0.0;
    for (int64_t j0 = 0; j0 < n; j0 += BLK) {
        const int64_t j1 = j0 + BLK < n ? j0 + BLK : n;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int64_t j = j0;
        for (; j + 16 <= j1; j += 16) {
            const __m256 a = _mm256_sub_ps(_mm256_loadu_ps(p + j), vc);
            const __m256 b = _mm256_sub_ps(_mm256_loadu_ps(p + j + 8), vc);
            s0 = sq ? _mm256_fmadd_ps(a, a, s0) : _mm256_add_ps(s0, a);
            s1 = sq ? _mm256_fmadd_ps(b, b, s1) : _mm256_add_ps(s1, b);
        }
        for (; j < j1; j++) {
            const float a = p[j] - c;
            acc += sq ? (double)a * a : (double)a;
        }
        acc += (double)hsum(_mm256_add_ps(s0, s1));
    }
    return acc;
}

typedef struct ln_args {
    int64_t m, d;
    const float *x, *g, *w, *b, *stats;
    float *y, *st, *dw, *db;
    double eps;
} ln_args;

static void fwd_body(void *ctx, int64_t lo, int64_t hi) {
    const ln_args *q = ctx;
    const int64_t d = q->d;
    for (int64_t i = lo; i < hi; i++) {
        const float *p = q->x + i * d;
        float *y = q->y + i * d;
        /* mean, then the variance about the float mean (plus the shift's
         * second-order term, so it is the variance about the exact mean) */
        const double mu = row_sum(p, d, 0.0f, false) / (double)d;
        const float mean = (float)mu;
        const double dm = mu - (double)mean;
        const double var = row_sum(p, d, mean, true) / (double)d - dm * dm;
        const float is = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + q->eps));
        q->st[2 * i] = mean;
        q->st[2 * i + 1] = is;
        const __m256 vm = _mm256_set1_ps(mean), vi = _mm256_set1_ps(is);
        int64_t j = 0;
        for (; j + 8 <= d; j += 8) {
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p + j), vm), vi);
            if (q->w) v = _mm256_mul_ps(v, _mm256_loadu_ps(q->w + j));
            if (q->b) v = _mm256_add_ps(v, _mm256_loadu_ps(q->b + j));
            _mm256_storeu_ps(y + j, v);
        }
        for (; j < d; j++) {
            float v = (p[j] - mean) * is;
            if (q->w) v *= q->w[j];
            if (q->b) v += q->b[j];
            y[j] = v;
        }
    }
}

static void avx2_layernorm_rows(int64_t m, int64_t d, const float *x, const float *w,
                                const float *b, double eps, float *y, float *stats) {
    if (d == 0) {
        nn__ref_kernels()->eltwise.layernorm_rows(m, d, x, w, b, eps, y, stats);
        return;
    }
    ln_args q = {m, d, x, NULL, w, b, NULL, y, stats, NULL, NULL, eps};
    nn__parallel_range(m, nn__threads_for(m * d * 3, EW_GRAIN), 1, fwd_body, &q);
}

/* dx for rows [lo, hi). */
static void bwd_dx_body(void *ctx, int64_t lo, int64_t hi) {
    const ln_args *q = ctx;
    const int64_t d = q->d;
    for (int64_t i = lo; i < hi; i++) {
        const float *x = q->x + i * d, *g = q->g + i * d;
        float *dx = q->y + i * d;
        const float mean = q->stats[2 * i], is = q->stats[2 * i + 1];
        const __m256 vm = _mm256_set1_ps(mean), vi = _mm256_set1_ps(is);
        double s1 = 0.0, s2 = 0.0;
        for (int64_t j0 = 0; j0 < d; j0 += BLK) {
            const int64_t j1 = j0 + BLK < d ? j0 + BLK : d;
            __m256 a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
            int64_t j = j0;
            for (; j + 8 <= j1; j += 8) {
                const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vi);
                __m256 dxh = _mm256_loadu_ps(g + j);
                if (q->w) dxh = _mm256_mul_ps(dxh, _mm256_loadu_ps(q->w + j));
                a1 = _mm256_add_ps(a1, dxh);
                a2 = _mm256_fmadd_ps(dxh, xh, a2);
            }
            for (; j < j1; j++) {
                const float xh = (x[j] - mean) * is, dxh = g[j] * (q->w ? q->w[j] : 1.0f);
                s1 += dxh;
                s2 += (double)dxh * xh;
            }
            s1 += (double)hsum(a1);
            s2 += (double)hsum(a2);
        }
        const float m1 = (float)(s1 / (double)d), m2 = (float)(s2 / (double)d);
        const __m256 v1 = _mm256_set1_ps(m1), v2 = _mm256_set1_ps(m2);
        int64_t j = 0;
        for (; j + 8 <= d; j += 8) {
            const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vi);
            __m256 dxh = _mm256_loadu_ps(g + j);
            if (q->w) dxh = _mm256_mul_ps(dxh, _mm256_loadu_ps(q->w + j));
            const __m256 t = _mm256_fnmadd_ps(xh, v2, _mm256_sub_ps(dxh, v1));
            _mm256_storeu_ps(dx + j, _mm256_mul_ps(vi, t));
        }
        for (; j < d; j++) {
            const float xh = (x[j] - mean) * is;
            dx[j] = is * (g[j] * (q->w ? q->w[j] : 1.0f) - m1 - xh * m2);
        }
    }
}

/* dw, db for the columns [lo, hi) (a multiple of 8 apart but at the end):
 * every row in order. Rows are added in float, as the reference does. */
static void bwd_dwb_body(void *ctx, int64_t lo, int64_t hi) {
    const ln_args *q = ctx;
    const int64_t d = q->d, m = q->m;
    int64_t j = lo;
    for (; j + 8 <= hi; j += 8) {
        __m256 aw = q->dw ? _mm256_loadu_ps(q->dw + j) : _mm256_setzero_ps();
        __m256 ab = q->db ? _mm256_loadu_ps(q->db + j) : _mm256_setzero_ps();
        for (int64_t i = 0; i < m; i++) {
            const __m256 g = _mm256_loadu_ps(q->g + i * d + j);
            const __m256 xh = _mm256_mul_ps(
                _mm256_sub_ps(_mm256_loadu_ps(q->x + i * d + j), _mm256_set1_ps(q->stats[2 * i])),
                _mm256_set1_ps(q->stats[2 * i + 1]));
            aw = _mm256_add_ps(aw, _mm256_mul_ps(g, xh));
            ab = _mm256_add_ps(ab, g);
        }
        if (q->dw) _mm256_storeu_ps(q->dw + j, aw);
        if (q->db) _mm256_storeu_ps(q->db + j, ab);
    }
    for (; j < hi; j++)
        for (int64_t i = 0; i < m; i++) {
            const float g = q->g[i * d + j];
            const float xh = (q->x[i * d + j] - q->stats[2 * i]) * q->stats[2 * i + 1];
            if (q->dw) q->dw[j] += g * xh;
            if (q->db) q->db[j] += g;
        }
}

static void avx2_layernorm_bwd_rows(int64_t m, int64_t d, const float *x, const float *gy,
                                    const float *w, const float *stats, float *dx, float *dw,
                                    float *db) {
    if (d == 0) return;
    ln_args q = {m, d, x, gy, w, NULL, stats, dx, NULL, dw, db, 0.0};
    if (dx) nn__parallel_range(m, nn__threads_for(m * d * 4, EW_GRAIN), 1, bwd_dx_body, &q);
    if (dw || db) nn__parallel_range(d, nn__threads_for(m * d * 2, EW_GRAIN), 64, bwd_dwb_body, &q);
}

void nn__avx2_fill_norm(nn__eltwise_kernels *t) {
    t->layernorm_rows = avx2_layernorm_rows;
    t->layernorm_bwd_rows = avx2_layernorm_bwd_rows;
}
