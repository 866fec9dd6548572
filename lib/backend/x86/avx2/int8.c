/* AVX2 int8 kernels (backend/int8.h). Reduced-range (w7) weights take
 * vpmaddubsw + vpmaddwd(ones) (exact for |w| <= 63; see int8.h). Full-range
 * products: vpmovsxbw widens 4 channels
 * x 4 depths of packed s8 weights to 16 s16, vpmovzxbw the row's 4 u8
 * activations (repeated) to s16, and vpmaddwd multiplies and adds adjacent
 * pairs into 32-bit lanes: exact, no saturation. (vpmaddubsw would add u8 x
 * s8 pairs in 16 bits, which saturates at 255 * 127 * 2; see int8.h.) Each
 * accumulator holds two partial sums per channel, joined by vphaddd at the
 * end. Integers equal the reference's; the epilogue and the quantizer do the
 * reference's float operations in its order, so the floats do too. */
#include "backend/int8.h"
#include "backend/x86/avx2/int8_epi.h"
#include "backend/x86/avx2/simd.h"
#include "backend/threadpool.h"

#include <string.h>

#define MR 2

/* ------------------------------------------------------- quantization */

static void avx2_minmax(int64_t n, const float *x, float *mn, float *mx) {
    /* four independent chains (vminps / vmaxps latency, not throughput, bound
     * one); NaN never enters them, so joining them is the set's min / max */
    __m256 lo[4], hi[4];
    for (int j = 0; j < 4; j++) lo[j] = _mm256_set1_ps(INFINITY), hi[j] = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * j);
            lo[j] = _mm256_min_ps(v, lo[j]); /* NaN in v: keeps lo (the second operand) */
            hi[j] = _mm256_max_ps(v, hi[j]);
        }
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        lo[0] = _mm256_min_ps(v, lo[0]);
        hi[0] = _mm256_max_ps(v, hi[0]);
    }
    lo[0] = _mm256_min_ps(_mm256_min_ps(lo[0], lo[1]), _mm256_min_ps(lo[2], lo[3]));
    hi[0] = _mm256_max_ps(_mm256_max_ps(hi[0], hi[1]), _mm256_max_ps(hi[2], hi[3]));
    float l[8], h[8];
    _mm256_storeu_ps(l, lo[0]);
    _mm256_storeu_ps(h, hi[0]);
    float a = l[0], b = h[0];
    for (int j = 1; j < 8; j++) {
        if (l[j] < a) a = l[j];
        if (h[j] > b) b = h[j];
    }
    for (; i < n; i++) {
        if (x[i] < a) a = x[i];
        if (x[i] > b) b = x[i];
    }
    if (a > b) a = b = NAN;
    *mn = a, *mx = b;
}

/* round(x * inv) + zp as 8 int32 that the callers' saturating packs
 * (vpackssdw, vpackuswb) clamp to 0..255: the reference's nearbyintf(x * inv)
 * + zp clamped in float, with fewer operations. vcvtps2dq rounds to nearest
 * even (the default mode, as nearbyintf); min(2^30, v) keeps it in range
 * (+inf and the huge clamp to 255 either way) and keeps NaN, which converts
 * to INT_MIN and clamps to 0 as the reference's NaN; |r| >= 2^24, where the
 * reference's float add rounds, is far outside 0..255 on the same side. */
NN_INLINE __m256i quant8(__m256 v, __m256 inv, __m256i z) {
    const __m256 r = _mm256_min_ps(_mm256_set1_ps(1073741824.0f), _mm256_mul_ps(v, inv));
    return _mm256_add_epi32(_mm256_cvtps_epi32(r), z);
}

/* 8 such int32 -> 8 bytes in the low half (saturating packs: the clamp). */
NN_INLINE __m128i pack8(__m256i v) {
    const __m128i s16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_packus_epi16(s16, s16);
}

static void avx2_quantize_u8(int64_t n, const float *x, float inv_scale, int32_t zp, uint8_t *q) {
    const __m256 inv = _mm256_set1_ps(inv_scale);
    const __m256i z = _mm256_set1_epi32(zp);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i a = quant8(_mm256_loadu_ps(x + i), inv, z);
        const __m256i b = quant8(_mm256_loadu_ps(x + i + 8), inv, z);
        /* 16 int32 -> 16 bytes (packs work within 128-bit lanes) */
        const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
        const __m128i s16a = _mm256_castsi256_si128(w), s16b = _mm256_extracti128_si256(w, 1);
        _mm_storeu_si128((__m128i *)(q + i), _mm_packus_epi16(s16a, s16b));
    }
    for (; i < n; i += 8) { /* the tail: masked loads of up to 8 */
        const int m = n - i >= 8 ? 8 : (int)(n - i);
        const __m128i b8 = pack8(quant8(_mm256_maskload_ps(x + i, lane_mask(m)), inv, z));
        if (m == 8) {
            _mm_storel_epi64((__m128i *)(q + i), b8);
        } else {
            uint8_t t[16];
            _mm_storeu_si128((__m128i *)t, b8);
            memcpy(q + i, t, (size_t)m);
        }
    }
}

/* ------------------------------------------------------------ products */

/* 4 channels x 4 depths of weights at w, widened to s16. */
NN_INLINE __m256i wide_w(const int8_t *w) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w));
}

/* 4 activation bytes of a, widened and repeated: [a0 a1 a2 a3] x 4 in s16. */
NN_INLINE __m256i wide_a(const uint8_t *a) {
    int32_t v;
    memcpy(&v, a, 4);
    return _mm256_cvtepu8_epi16(_mm_set1_epi32(v));
}

/* Four accumulators (channels 0-3, 4-7, 8-11, 12-15, two partial sums each)
 * -> the 16 channel sums, in two vectors of 8. */
NN_INLINE void join(const __m256i acc[4], __m256i *lo, __m256i *hi) {
    *lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[0], acc[1]), 0xD8);
    *hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2], acc[3]), 0xD8);
}

typedef struct qctx {
    const nn__qgemm *p;
    int64_t kp, np;
    const int8_t *w7; /* w7 weights already clamped (a copy), or NULL */
} qctx;

/* The epilogue for channels [j0, j0 + 8) of row i (scalar past n). */
NN_INLINE void store8(const nn__qgemm *p, int64_t i, int64_t j0, __m256i acc) {
    if (p->c32) { /* raw sums */
        int32_t *c32 = p->c32 + i * p->ldc;
        if (j0 + 8 <= p->n) {
            _mm256_storeu_si256((__m256i *)(c32 + j0), acc);
        } else {
            int32_t a[8];
            _mm256_storeu_si256((__m256i *)a, acc);
            for (int64_t j = j0; j < p->n; j++) c32[j] = a[j - j0];
        }
        return;
    }
    const float sa = p->a_scale[i * p->a_step];
    const int32_t za = p->a_zp[i * p->a_step];
    float *c = p->c + i * p->ldc;
    if (j0 + 8 <= p->n) {
        const __m256i v =
            p->wsum ? _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(za),
                                                              _mm256_loadu_si256((const __m256i *)(p->wsum + j0))))
                    : acc; /* NULL: za folded into the products */
        const __m256 s = _mm256_mul_ps(_mm256_set1_ps(sa), _mm256_loadu_ps(p->w_scale + j0));
        const __m256 b = p->bias ? _mm256_loadu_ps(p->bias + j0) : _mm256_setzero_ps();
        _mm256_storeu_ps(c + j0, q8_epilogue(v, s, b, p->bias != NULL, p->relu));
        return;
    }
    int32_t a[8];
    _mm256_storeu_si256((__m256i *)a, acc);
    for (int64_t j = j0; j < p->n; j++) {
        int32_t v = p->wsum ? (int32_t)((uint32_t)a[j - j0] - (uint32_t)za * (uint32_t)p->wsum[j])
                            : a[j - j0];
        float y = (float)v * (sa * p->w_scale[j]);
        if (p->bias) y += p->bias[j];
        if (p->relu && !(y > 0.0f) && !isnan(y)) y = 0.0f;
        c[j] = y;
    }
}

/* Rows [i0, i0 + mr) x one panel pp, mr <= MR. */
NN_INLINE void tile(const qctx *q, int64_t i0, int mr, int64_t pp) {
    const nn__qgemm *p = q->p;
    const int64_t groups = q->kp / 4;
    const int8_t *w = p->w + pp * NN__QNR * q->kp;
    const uint8_t *a = p->a + i0 * p->lda;
    __m256i acc[MR][4];
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; g++) {
        const int8_t *wg = w + g * 64;
        const __m256i w0 = wide_w(wg), w1 = wide_w(wg + 16), w2 = wide_w(wg + 32),
                      w3 = wide_w(wg + 48);
        for (int r = 0; r < MR; r++) {
            if (r >= mr) break;
            const __m256i x = wide_a(a + r * p->lda + g * 4);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(x, w0));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(x, w1));
            acc[r][2] = _mm256_add_epi32(acc[r][2], _mm256_madd_epi16(x, w2));
            acc[r][3] = _mm256_add_epi32(acc[r][3], _mm256_madd_epi16(x, w3));
        }
    }
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        __m256i lo, hi;
        join(acc[r], &lo, &hi);
        store8(p, i0 + r, pp * NN__QNR, lo);
        if (pp * NN__QNR + 8 < p->n) store8(p, i0 + r, pp * NN__QNR + 8, hi);
    }
}

/* ---------------------------------------- reduced-range (w7) products */

/* 8 channels x 4 depths of w7 weights, clamped to [-63, 63] (int8.h). */
NN_INLINE __m256i ldw7(const int8_t *w) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)w);
    return _mm256_max_epi8(_mm256_min_epi8(v, _mm256_set1_epi8(NN__QW7_MAX)),
                           _mm256_set1_epi8(-NN__QW7_MAX));
}

/* 4 activation bytes of a, repeated 8 times. */
NN_INLINE __m256i bcast4(const uint8_t *a) {
    int32_t v;
    memcpy(&v, a, 4);
    return _mm256_set1_epi32(v);
}

/* acc + the 4-depth sums of 8 channels: vpmaddubsw adds u8 x s8 pairs in
 * 16 bits (|sum| <= 255 * 63 * 2 = 32130: exact), vpmaddwd with ones adds
 * the two pairs of each channel into its 32-bit lane. */
NN_INLINE __m256i dot7(__m256i acc, __m256i x, __m256i w, __m256i ones) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones));
}

/* dot7 of (x - za) with za's byte broadcast in zb (fold): x0*w0 + x1*w1 -
 * (za*w0 + za*w1) = (x0 - za)*w0 + (x1 - za)*w1, |.| <= 255 * 63 * 2: the
 * 16-bit difference is exact, so the lanes get sum (qa - za)*qw, the
 * integers acc - za*wsum without the column sums. */
NN_INLINE __m256i dot7z(__m256i acc, __m256i x, __m256i w, __m256i zb, __m256i ones, bool fold) {
    __m256i t = _mm256_maddubs_epi16(x, w);
    if (fold) t = _mm256_sub_epi16(t, _mm256_maddubs_epi16(zb, w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(t, ones));
}

#define MR7 4
#define W7_SLOT 2 /* nn__thread_scratch slot of the clamped weights */

/* Rows [i0, i0 + mr) x one panel pp of w7 weights, mr <= MR7: two
 * accumulators per row (channels 0-7, 8-15), each lane one channel's sum.
 * pre: from q->w7, clamped once per call, instead of clamping each load. */
NN_INLINE void tile7(const qctx *q, int64_t i0, int mr, int64_t pp, bool pre, bool fold) {
    const nn__qgemm *p = q->p;
    const int64_t groups = q->kp / 4;
    const int8_t *w = (pre ? q->w7 : p->w) + pp * NN__QNR * q->kp;
    const uint8_t *a = p->a + i0 * p->lda;
    const __m256i ones = _mm256_set1_epi16(1);
    /* fold (mr 1 only): row i0's zero point into the products */
    const __m256i zb = _mm256_set1_epi8(fold ? (char)p->a_zp[i0 * p->a_step] : 0);
    __m256i acc[MR7][2];
    for (int r = 0; r < MR7; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; g++) {
        const __m256i w0 = pre ? _mm256_loadu_si256((const __m256i *)(w + g * 64)) : ldw7(w + g * 64);
        const __m256i w1 =
            pre ? _mm256_loadu_si256((const __m256i *)(w + g * 64 + 32)) : ldw7(w + g * 64 + 32);
        for (int r = 0; r < MR7; r++) {
            if (r >= mr) break;
            const __m256i x = bcast4(a + r * p->lda + g * 4);
            acc[r][0] = dot7z(acc[r][0], x, w0, zb, ones, fold);
            acc[r][1] = dot7z(acc[r][1], x, w1, zb, ones, fold);
        }
    }
    for (int r = 0; r < MR7; r++) {
        if (r >= mr) break;
        store8(p, i0 + r, pp * NN__QNR, acc[r][0]);
        if (pp * NN__QNR + 8 < p->n) store8(p, i0 + r, pp * NN__QNR + 8, acc[r][1]);
    }
}

/* One row against panels [p0, p1), 4 panels at a time (8 independent
 * chains), the row's 4 bytes broadcast once per depth group. fold: wsum is
 * NULL and the row's zero point is not 0 (dot7z). */
NN_INLINE void gemv7_body(const qctx *q, int64_t i, int64_t p0, int64_t p1, bool fold) {
    const nn__qgemm *p = q->p;
    const int64_t groups = q->kp / 4, ps = NN__QNR * q->kp;
    const uint8_t *a = p->a + i * p->lda;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i zb = _mm256_set1_epi8(fold ? (char)p->a_zp[i * p->a_step] : 0);
    int64_t pp = p0;
    for (; pp + 4 <= p1; pp += 4) {
        const int8_t *w = p->w + pp * ps;
        /* eight named accumulators: with an array GCC 12 kept two on the
         * stack (a store and reload in their add chains each group) */
        __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0,
                c6 = c0, c7 = c0;
        for (int64_t g = 0; g < groups; g++) {
            const __m256i x = bcast4(a + g * 4);
            const int8_t *wg = w + g * 64;
            c0 = dot7z(c0, x, ldw7(wg), zb, ones, fold);
            c1 = dot7z(c1, x, ldw7(wg + 32), zb, ones, fold);
            c2 = dot7z(c2, x, ldw7(wg + ps), zb, ones, fold);
            c3 = dot7z(c3, x, ldw7(wg + ps + 32), zb, ones, fold);
            c4 = dot7z(c4, x, ldw7(wg + 2 * ps), zb, ones, fold);
            c5 = dot7z(c5, x, ldw7(wg + 2 * ps + 32), zb, ones, fold);
            c6 = dot7z(c6, x, ldw7(wg + 3 * ps), zb, ones, fold);
            c7 = dot7z(c7, x, ldw7(wg + 3 * ps + 32), zb, ones, fold);
        }
        const __m256i c[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
        for (int u = 0; u < 4; u++) {
            store8(p, i, (pp + u) * NN__QNR, c[2 * u]);
            if ((pp + u) * NN__QNR + 8 < p->n) store8(p, i, (pp + u) * NN__QNR + 8, c[2 * u + 1]);
        }
    }
    for (; pp < p1; pp++) tile7(q, i, 1, pp, false, fold);
}

static void gemv7(const qctx *q, int64_t i, int64_t p0, int64_t p1) {
    if (!q->p->wsum && q->p->a_zp[i * q->p->a_step] != 0)
        gemv7_body(q, i, p0, p1, true);
    else
        gemv7_body(q, i, p0, p1, false);
}

/* tile7 for 4 rows of pre-clamped weights without the fold, written out
 * row by row: the generic tile7 with its arrays and row guards made GCC 12
 * keep two of the eight accumulators on the stack (a store and a reload in
 * their add chains every depth group: the 256x128x3136 GEMM ran at ~140
 * GOP/s); this form keeps all eight, the two weight vectors, ones and one
 * broadcast in registers. Same products, same order: same integers. */
static void tile7x4(const qctx *q, int64_t i0, int64_t pp) {
    const nn__qgemm *p = q->p;
    const int64_t groups = q->kp / 4;
    const int8_t *w = q->w7 + pp * NN__QNR * q->kp;
    const uint8_t *a0 = p->a + i0 * p->lda, *a1 = a0 + p->lda, *a2 = a1 + p->lda,
                  *a3 = a2 + p->lda;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,
            c21 = c00, c30 = c00, c31 = c00;
    for (int64_t g = 0; g < groups; g++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + g * 64));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + g * 64 + 32));
        __m256i x = bcast4(a0 + g * 4);
        c00 = dot7(c00, x, w0, ones), c01 = dot7(c01, x, w1, ones);
        x = bcast4(a1 + g * 4);
        c10 = dot7(c10, x, w0, ones), c11 = dot7(c11, x, w1, ones);
        x = bcast4(a2 + g * 4);
        c20 = dot7(c20, x, w0, ones), c21 = dot7(c21, x, w1, ones);
        x = bcast4(a3 + g * 4);
        c30 = dot7(c30, x, w0, ones), c31 = dot7(c31, x, w1, ones);
    }
    const int64_t j0 = pp * NN__QNR;
    const bool two = j0 + 8 < p->n;
    store8(p, i0, j0, c00);
    if (two) store8(p, i0, j0 + 8, c01);
    store8(p, i0 + 1, j0, c10);
    if (two) store8(p, i0 + 1, j0 + 8, c11);
    store8(p, i0 + 2, j0, c20);
    if (two) store8(p, i0 + 2, j0 + 8, c21);
    store8(p, i0 + 3, j0, c30);
    if (two) store8(p, i0 + 3, j0 + 8, c31);
}

static void rows7_body(void *ctx, int64_t r0, int64_t r1) {
    const qctx *q = ctx;
    for (int64_t i = r0; i < r1; i += MR7)
        for (int64_t pp = 0; pp < q->np; pp++) {
            const int64_t mr = r1 - i >= MR7 ? MR7 : r1 - i;
            if (!q->w7) {
                tile7(q, i, (int)mr, pp, false, false);
                continue;
            }
            switch (mr) {
            case 4: tile7x4(q, i, pp); break;
            case 3: tile7(q, i, 3, pp, true, false); break;
            case 2: tile7(q, i, 2, pp, true, false); break;
            default: tile7(q, i, 1, pp, true, false); break;
            }
        }
}

static void panels7_body(void *ctx, int64_t p0, int64_t p1) {
    const qctx *q = ctx;
    for (int64_t i = 0; i < q->p->m; i++) gemv7(q, i, p0, p1);
}

/* -------------------------------------------- full-range products */

static void rows_body(void *ctx, int64_t r0, int64_t r1) {
    const qctx *q = ctx;
    for (int64_t i = r0; i < r1; i += MR)
        for (int64_t pp = 0; pp < q->np; pp++) {
            if (r1 - i >= 2)
                tile(q, i, 2, pp);
            else
                tile(q, i, 1, pp);
        }
}

static void panels_body(void *ctx, int64_t p0, int64_t p1) {
    const qctx *q = ctx;
    for (int64_t i = 0; i < q->p->m; i += MR)
        for (int64_t pp = p0; pp < p1; pp++) {
            if (q->p->m - i >= 2)
                tile(q, i, 2, pp);
            else
                tile(q, i, 1, pp);
        }
}

/* Rows below 8 with w7 weights (gemv7) take wsum NULL (int8.h). */
static bool avx2_folds_zp(int64_t m, bool w7) { return w7 && m < 8; }

static void avx2_gemm(const nn__qgemm *p) {
    if (p->m <= 0 || p->n <= 0) return;
    qctx q = {.p = p, .kp = nn__qk_pad(p->k), .np = (p->n + NN__QNR - 1) / NN__QNR};
    const int64_t work = p->m * p->n * q.kp / 4;
    const int nt = nn__threads_for(work, 1 << 15);
    if (p->w7 && p->m < 8) {
        nn__parallel_range(q.np, nt, 1, panels7_body, &q);
    } else if (p->w7) {
        /* many rows: clamp the weights once into this thread's scratch (the
         * tiles then load them as they are); without it, clamp each load */
        const int64_t bytes = q.np * NN__QNR * q.kp;
        int8_t *wc = nn__thread_scratch(W7_SLOT, (size_t)bytes);
        if (wc) {
            const __m256i hi = _mm256_set1_epi8(NN__QW7_MAX), lo = _mm256_set1_epi8(-NN__QW7_MAX);
            for (int64_t b = 0; b < bytes; b += 32) /* bytes: a multiple of 64 */
                _mm256_storeu_si256((__m256i *)(wc + b),
                                    _mm256_max_epi8(_mm256_min_epi8(_mm256_loadu_si256((const __m256i *)(p->w + b)), hi), lo));
            q.w7 = wc;
        }
        nn__parallel_range(p->m, nt, MR7, rows7_body, &q);
    }
    else if (p->m < 8)
        nn__parallel_range(q.np, nt, 1, panels_body, &q);
    else
        nn__parallel_range(p->m, nt, MR, rows_body, &q);
}

/* Column sums of w7 weights: vpmaddubsw with ones adds each channel's
 * clamped pairs (|sum| <= 126) in 16 bits, up to 256 depth groups at a time
 * (<= 32256: exact), then vpmaddwd with ones into 32 bits. Each lane is one
 * channel. A dynamic layer whose input is not after a ReLU needs these on
 * every call (its zero point is not 0), so they run at memory speed. */
static void colsum7(int64_t n, int64_t k, const int8_t *w, int32_t *wsum) {
    const int64_t kp = nn__qk_pad(k), np = (n + NN__QNR - 1) / NN__QNR, groups = kp / 4;
    const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
    for (int64_t pp = 0; pp < np; pp++) {
        const int8_t *pw = w + pp * NN__QNR * kp;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        for (int64_t g0 = 0; g0 < groups; g0 += 256) {
            const int64_t g1 = g0 + 256 < groups ? g0 + 256 : groups;
            __m256i h0 = _mm256_setzero_si256(), h1 = h0;
            for (int64_t g = g0; g < g1; g++) {
                h0 = _mm256_add_epi16(h0, _mm256_maddubs_epi16(one8, ldw7(pw + g * 64)));
                h1 = _mm256_add_epi16(h1, _mm256_maddubs_epi16(one8, ldw7(pw + g * 64 + 32)));
            }
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(h0, one16));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(h1, one16));
        }
        int32_t s[16];
        _mm256_storeu_si256((__m256i *)s, s0);
        _mm256_storeu_si256((__m256i *)(s + 8), s1);
        for (int64_t j = pp * NN__QNR; j < n && j < (pp + 1) * NN__QNR; j++)
            wsum[j] = s[j - pp * NN__QNR];
    }
}

/* Column sums: widen and add (memory-bound). */
static void avx2_colsum(int64_t n, int64_t k, const int8_t *w, bool w7, int32_t *wsum) {
    const int64_t kp = nn__qk_pad(k), np = (n + NN__QNR - 1) / NN__QNR;
    const __m256i ones = _mm256_set1_epi16(1);
    if (w7) {
        colsum7(n, k, w, wsum);
        return;
    }
    for (int64_t pp = 0; pp < np; pp++) {
        const int8_t *pw = w + pp * NN__QNR * kp;
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
        for (int64_t g = 0; g < kp / 4; g++)
            for (int c = 0; c < 4; c++)
                acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(wide_w(pw + g * 64 + c * 16), ones));
        __m256i lo, hi;
        join(acc, &lo, &hi);
        int32_t s[16];
        _mm256_storeu_si256((__m256i *)s, lo);
        _mm256_storeu_si256((__m256i *)(s + 8), hi);
        for (int64_t j = pp * NN__QNR; j < n && j < (pp + 1) * NN__QNR; j++)
            wsum[j] = s[j - pp * NN__QNR];
    }
}

/* im2row in fixed 32-byte pieces (one or two vector moves): each window
 * row's copy may run past its end, into bytes the next copy (or the zero
 * fill, or the next pixel's row) writes afterwards; the last row's overrun
 * and the reads past xp fall in the callers' NN__Q_SLACK. */
static void avx2_im2row(const uint8_t *xp, int64_t c, int64_t wp, int64_t kh, int64_t kw,
                        int64_t sh, int64_t sw, int64_t oh, int64_t ow, uint8_t *col,
                        int64_t ldcol) {
    const int64_t run = kw * c, k = kh * run;
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++) {
            uint8_t *row = col + (oy * ow + ox) * ldcol;
            for (int64_t i = 0; i < kh; i++) {
                const uint8_t *src = xp + ((oy * sh + i) * wp + ox * sw) * c;
                uint8_t *dst = row + i * run;
                for (int64_t b = 0; b < run; b += 32)
                    _mm256_storeu_si256((__m256i *)(dst + b),
                                        _mm256_loadu_si256((const __m256i *)(src + b)));
            }
            for (int64_t b = k; b < ldcol; b += 32) _mm256_storeu_si256((__m256i *)(row + b), zero);
        }
}

/* 7-bit weights: vpmaddubsw + vpmaddwd(ones) instead of widening first. */
static int avx2_weight_bits(void) { return 7; }

/* ------------------------------------------------- pool + epilogue */

/* Transpose the 8x8 floats r[0..8) (row i = r[i]) in place. */
NN_INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int j = 0; j < 2; j++) {
        u[4 * j] = _mm256_shuffle_ps(t[4 * j], t[4 * j + 2], 0x44);
        u[4 * j + 1] = _mm256_shuffle_ps(t[4 * j], t[4 * j + 2], 0xEE);
        u[4 * j + 2] = _mm256_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0x44);
        u[4 * j + 3] = _mm256_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

/* 8 pooled pixels x 8 channels at a time: the 4-way max of the window sums
 * (vpmaxsd), store8's epilogue on the pooled sums (the reference's float
 * operations in its order), then an 8x8 transpose so each channel's plane
 * gets 8 contiguous floats. Channel tails load masked. */
static void avx2_pool_epilogue(const int32_t *t, int64_t o, int64_t ow, int64_t yh, int64_t yw,
                               const int32_t *wsum, float sa, int32_t za, const float *sw,
                               const float *bias, bool relu, float *y, int64_t ldy) {
    const int64_t ny = yh * yw;
    __m256 r[8];
    for (int64_t c0 = 0; c0 < o; c0 += 8) {
        const int nc = o - c0 >= 8 ? 8 : (int)(o - c0);
        const __m256i cm = lane_mask(nc);
        __m256i corr;
        __m256 s, b;
        q8_operands(nc, wsum + c0, sa, za, sw + c0, bias ? bias + c0 : NULL, &corr, &s, &b);
        for (int64_t py = 0; py < yh; py++)
            for (int64_t px0 = 0; px0 < yw; px0 += 8) {
                const int np = yw - px0 >= 8 ? 8 : (int)(yw - px0);
                for (int q = 0; q < 8; q++) {
                    if (q >= np) {
                        r[q] = _mm256_setzero_ps();
                        continue;
                    }
                    const int32_t *r0 = t + ((2 * py) * ow + 2 * (px0 + q)) * o + c0;
                    const __m256i m01 = _mm256_max_epi32(_mm256_maskload_epi32(r0, cm),
                                                         _mm256_maskload_epi32(r0 + o, cm));
                    const __m256i m23 =
                        _mm256_max_epi32(_mm256_maskload_epi32(r0 + ow * o, cm),
                                         _mm256_maskload_epi32(r0 + ow * o + o, cm));
                    const __m256i v = _mm256_sub_epi32(_mm256_max_epi32(m01, m23), corr);
                    const __m256 yv = q8_epilogue(v, s, b, bias != NULL, relu);
                    r[q] = yv;
                    if (ldy) /* channels-last: the lanes are the channels */
                        _mm256_maskstore_ps(y + (py * yw + px0 + q) * ldy + c0, cm, yv);
                }
                if (ldy) continue;
                transpose8(r);
                float *yb = y + c0 * ny + py * yw + px0;
                if (np == 8)
                    for (int c = 0; c < nc; c++) _mm256_storeu_ps(yb + c * ny, r[c]);
                else
                    for (int c = 0; c < nc; c++) _mm256_maskstore_ps(yb + c * ny, lane_mask(np), r[c]);
            }
    }
}

/* Quantize [c, h, w] floats into a padded channels-last image: one channel
 * a row at a time straight into place; more channels in 8 x 8 blocks
 * (channels x pixels of an image row), transposed as floats so each pixel's
 * 8 channels quantize (quant8: the reference's bytes) into 8
 * contiguous bytes. */
static void avx2_quantize_pad_hwc(const float *x, int64_t c, int64_t h, int64_t w, int64_t ph,
                                  int64_t pw, float inv_scale, int32_t zp, uint8_t *xp) {
    const int64_t hp = h + 2 * ph, wp = w + 2 * pw;
    memset(xp, zp, (size_t)(hp * wp * c));
    if (c == 1) {
        for (int64_t y = 0; y < h; y++)
            avx2_quantize_u8(w, x + y * w, inv_scale, zp, xp + (y + ph) * wp + pw);
        return;
    }
    const __m256 inv = _mm256_set1_ps(inv_scale);
    const __m256i z = _mm256_set1_epi32(zp);
    __m256 r[8];
    for (int64_t y = 0; y < h; y++)
        for (int64_t x0 = 0; x0 < w; x0 += 8) {
            const int np = w - x0 >= 8 ? 8 : (int)(w - x0);
            const __m256i pm = lane_mask(np);
            for (int64_t c0 = 0; c0 < c; c0 += 8) {
                const int nc = c - c0 >= 8 ? 8 : (int)(c - c0);
                for (int i = 0; i < 8; i++)
                    r[i] = i < nc ? _mm256_maskload_ps(x + ((c0 + i) * h + y) * w + x0, pm)
                                  : _mm256_setzero_ps();
                transpose8(r);
                uint8_t *dst = xp + ((y + ph) * wp + pw + x0) * c + c0;
                for (int q = 0; q < np; q++) {
                    const __m128i b8 = pack8(quant8(r[q], inv, z));
                    if (nc == 8) {
                        _mm_storel_epi64((__m128i *)(dst + q * c), b8);
                    } else {
                        uint8_t tmp[16];
                        _mm_storeu_si128((__m128i *)tmp, b8);
                        memcpy(dst + q * c, tmp, (size_t)nc);
                    }
                }
            }
        }
}

/* ------------------- one-channel direct convolution + pool (w7 weights) */

/* A one-channel image needs no im2row: the kw <= 4 taps of window row i for
 * conv pixel ox are 4 contiguous bytes of the padded row, one 32-bit
 * broadcast (the fourth byte meets a zero weight). Weights, clamped, are
 * regrouped per window row, [panel][i][16 channels][4 taps], 4 panels (64
 * channels) at a time. A tile is one pooled pixel x one panel: its 2 x 2
 * conv pixels x 16 channels of raw sums (8 ymm), kh vpmaddubsw + vpmaddwd
 * each (exact: w7); the 2x2 max of the sums, then avx2_pool_epilogue's
 * operations, into a row of pooled pixels x channels that 8x8 transposes
 * write into the planes. Threads split pooled rows. Full-range weights
 * would saturate vpmaddubsw: those layers take im2row + gemm. */
#define A1_KH 8 /* the most window rows avx2_conv1_takes accepts */

typedef struct a1ctx {
    const uint8_t *xp;
    int64_t wp, n, kh, sh, sw, yh, yw, np; /* n, np: channels and panels of this chunk */
    const int8_t *wr;                      /* regrouped weights of the chunk */
    const int32_t *corr; /* za * wsum per channel of the chunk (64, zero past n) */
    const float *sc, *bs; /* sa * w_scale and the bias (0 without) per channel, likewise */
    bool bias, relu, failed;
    float *y;    /* the chunk's first plane (ldy 0) or first channel */
    int64_t ldy; /* channels-last pixel stride, or 0 (planes) */
} a1ctx;

NN_INLINE void a1_tile(const a1ctx *q, int64_t py, int64_t px, int64_t pn, float *rb) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[2][2][2];
    for (int r = 0; r < 2; r++)
        for (int u = 0; u < 2; u++) acc[r][u][0] = acc[r][u][1] = _mm256_setzero_si256();
    for (int64_t i = 0; i < q->kh; i++) {
        const int8_t *wi = q->wr + (pn * q->kh + i) * 64;
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)wi);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wi + 32));
        for (int r = 0; r < 2; r++) {
            const uint8_t *row = q->xp + ((2 * py + r) * q->sh + i) * q->wp + 2 * px * q->sw;
            for (int u = 0; u < 2; u++) {
                const __m256i x = bcast4(row + u * q->sw);
                acc[r][u][0] = dot7(acc[r][u][0], x, w0, ones);
                acc[r][u][1] = dot7(acc[r][u][1], x, w1, ones);
            }
        }
    }
    for (int h = 0; h < 2; h++) {
        const int64_t j0 = pn * NN__QNR + h * 8;
        if (j0 >= q->n) break;
        const __m256i corr = _mm256_load_si256((const __m256i *)(q->corr + j0));
        const __m256 s = _mm256_load_ps(q->sc + j0);
        const __m256i m01 = _mm256_max_epi32(acc[0][0][h], acc[0][1][h]);
        const __m256i m23 = _mm256_max_epi32(acc[1][0][h], acc[1][1][h]);
        const __m256i v = _mm256_sub_epi32(_mm256_max_epi32(m01, m23), corr);
        _mm256_storeu_ps(rb + px * 64 + j0,
                         q8_epilogue(v, s, _mm256_load_ps(q->bs + j0), q->bias, q->relu));
    }
}

static void a1_rows(void *ctx, int64_t py0, int64_t py1) {
    a1ctx *q = ctx;
    float *rb = nn__thread_scratch(1, (size_t)(q->yw * 64 + 8) * sizeof(float));
    if (!rb) {
        __atomic_store_n(&q->failed, true, __ATOMIC_RELAXED);
        return;
    }
    const int64_t ny = q->yh * q->yw;
    __m256 r[8];
    for (int64_t py = py0; py < py1; py++) {
        for (int64_t px = 0; px < q->yw; px++)
            for (int64_t pn = 0; pn < q->np; pn++) a1_tile(q, py, px, pn, rb);
        if (q->ldy) { /* channels-last: each pixel's channels as they are */
            for (int64_t px = 0; px < q->yw; px++)
                memcpy(q->y + (py * q->yw + px) * q->ldy, rb + px * 64,
                       sizeof(float) * (size_t)q->n);
            continue;
        }
        /* [pooled pixel][channel] -> planes, 8 x 8 at a time */
        for (int64_t px0 = 0; px0 < q->yw; px0 += 8) {
            const int npx = q->yw - px0 >= 8 ? 8 : (int)(q->yw - px0);
            for (int64_t c0 = 0; c0 < q->n; c0 += 8) {
                for (int u = 0; u < 8; u++)
                    r[u] = u < npx ? _mm256_loadu_ps(rb + (px0 + u) * 64 + c0) : _mm256_setzero_ps();
                transpose8(r);
                const int nc = q->n - c0 >= 8 ? 8 : (int)(q->n - c0);
                float *yb = q->y + c0 * ny + py * q->yw + px0;
                if (npx == 8)
                    for (int c = 0; c < nc; c++) _mm256_storeu_ps(yb + c * ny, r[c]);
                else
                    for (int c = 0; c < nc; c++) _mm256_maskstore_ps(yb + c * ny, lane_mask(npx), r[c]);
            }
        }
    }
}

static bool avx2_conv1_takes(int64_t kh, int64_t kw, bool w7) {
    return w7 && kw <= 4 && kh <= A1_KH;
}

static bool avx2_conv1_pool(const uint8_t *xp, int64_t wp, const int8_t *w, int64_t n, int64_t kh,
                            int64_t kw, int64_t sh, int64_t sw, int64_t yh, int64_t yw,
                            const int32_t *wsum, float sa, int32_t za, const float *wscale,
                            const float *bias, bool relu, bool w7, float *y, int64_t ldy) {
    if (!avx2_conv1_takes(kh, kw, w7)) return false;
    if (n <= 0 || yh <= 0 || yw <= 0) return true;
    const int64_t np = (n + NN__QNR - 1) / NN__QNR, kp = nn__qk_pad(kh * kw), ny = yh * yw;
    _Alignas(32) int8_t wr[A1_KH * 64 * 4]; /* 4 panels per chunk of channels */
    for (int64_t p0 = 0; p0 < np; p0 += 4) {
        const int64_t npc = np - p0 < 4 ? np - p0 : 4;
        for (int64_t p = 0; p < npc; p++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < 16; j++)
                    for (int64_t t = 0; t < 4; t++) {
                        const int64_t d = i * kw + t; /* depth of tap (i, t) */
                        const int8_t v =
                            t < kw ? w[(((p0 + p) * kp / 4 + d / 4) * 16 + j) * 4 + d % 4] : 0;
                        wr[((p * kh + i) * 16 + j) * 4 + t] =
                            v > NN__QW7_MAX ? NN__QW7_MAX : v < -NN__QW7_MAX ? -NN__QW7_MAX : v;
                    }
        const int64_t c0 = p0 * NN__QNR, nc = n - c0 < 64 ? n - c0 : 64;
        /* the epilogue's per-channel operands, once per chunk instead of per
         * tile (the same operations: za * wsum wrapping, sa * w_scale) */
        _Alignas(32) int32_t corr[64];
        _Alignas(32) float sc[64], bs[64];
        for (int64_t j = 0; j < 64; j++) {
            corr[j] = j < nc && za ? (int32_t)((uint32_t)za * (uint32_t)wsum[c0 + j]) : 0;
            sc[j] = j < nc ? sa * wscale[c0 + j] : 0.0f;
            bs[j] = j < nc && bias ? bias[c0 + j] : 0.0f;
        }
        a1ctx q = {.xp = xp, .wp = wp, .n = nc, .kh = kh, .sh = sh, .sw = sw, .yh = yh, .yw = yw,
                   .np = npc, .wr = wr, .corr = corr, .sc = sc, .bs = bs, .bias = bias != NULL,
                   .relu = relu, .failed = false, .y = ldy ? y + c0 : y + c0 * ny, .ldy = ldy};
        nn__parallel_range(yh, nn__threads_for(4 * ny * npc * 16 * kh, 1 << 15), 1, a1_rows, &q);
        if (q.failed) return false;
    }
    return true;
}

void nn__avx2_fill_int8(nn__int8_kernels *t) {
    t->weight_bits = avx2_weight_bits;
    t->minmax = avx2_minmax;
    t->quantize_u8 = avx2_quantize_u8;
    t->colsum = avx2_colsum;
    t->gemm = avx2_gemm;
    t->folds_zp = avx2_folds_zp;
    t->im2row = avx2_im2row;
    t->pool_epilogue = avx2_pool_epilogue;
    t->quantize_pad_hwc = avx2_quantize_pad_hwc;
    t->conv1_takes = avx2_conv1_takes;
    t->conv1_pool = avx2_conv1_pool;
    nn__avx2_fill_int8_wino(t);
}
