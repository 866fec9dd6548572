/* AVX2 integer Winograd F(2x2, 3x3) for pooled 3x3 stride-1 int8
 * convolutions (backend/int8.h, wino_*): exact, the integers of im2row +
 * gemm. Per block of WG_TR tiles (one tile = one pooled pixel's 4x4 input
 * window):
 *   input transform  V = B^T d B, 16 channels at a time (vpmovzxbw of the
 *                    channels-last pixels, then vpaddw / vpsubw: |V| <=
 *                    1020), into vb[p][tile][channel] int16, so each
 *                    channel pair is one 32-bit word;
 *   products         for each panel of 16 outputs and each position p, a
 *                    WG_TR x 16 register tile: per channel pair, the pair of
 *                    V broadcast, two loads of U' (16 outputs x the pair),
 *                    vpmaddwd (int16 pairs -> int32, exact) + vpaddd: 16
 *                    products per 4 outputs where the direct sum takes 36;
 *   output transform Y = A^T M A (int32; exact, int8.h), an arithmetic shift
 *                    by 2 (Y is 4x the direct sum), masked stores into the
 *                    caller's raw sums.
 * Threads split the tile blocks. The weights' transform (once per call, not
 * per image) takes 8 outputs x one channel per vector, in int32. */
#include "backend/int8.h"
#include "backend/x86/avx2/simd.h"
#include "backend/threadpool.h"

#include <string.h>

#define WG_TR 6 /* tiles per register block: 12 accumulators */

typedef struct wgctx {
    const uint8_t *xp;
    int64_t c, wp, yw, ntiles, cv, nq, np, n, ow, ldc;
    const int16_t *u;
    int32_t *c32;
    bool failed;
} wgctx;

/* V of tile (ty, tx), channels [c0, c0 + 16), into vb[(p * WG_TR + r) * cv
 * + c0 ..]. Channels past c read bytes of the next pixel (or up to 15 past
 * the image: its NN__Q_SLACK); their V meets U' = 0 or is never read. */
NN_INLINE void wg_input16(const wgctx *q, int64_t ty, int64_t tx, int64_t c0, int r,
                          int16_t *vb) {
    const uint8_t *base = q->xp + ((2 * ty) * q->wp + 2 * tx) * q->c + c0;
    __m256i t[4][4];
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) {
        __m256i d[4];
        for (int a = 0; a < 4; a++)
            d[a] = _mm256_cvtepu8_epi16(
                _mm_loadu_si128((const __m128i *)(base + (a * q->wp + b) * q->c)));
        t[0][b] = _mm256_sub_epi16(d[0], d[2]), t[1][b] = _mm256_add_epi16(d[1], d[2]);
        t[2][b] = _mm256_sub_epi16(d[2], d[1]), t[3][b] = _mm256_sub_epi16(d[1], d[3]);
    }
    int16_t *o = vb + (int64_t)r * q->cv + c0;
    const int64_t ps = WG_TR * q->cv; /* between positions */
#pragma GCC unroll 4
    for (int a = 0; a < 4; a++) {
        _mm256_storeu_si256((__m256i *)(o + (4 * a + 0) * ps), _mm256_sub_epi16(t[a][0], t[a][2]));
        _mm256_storeu_si256((__m256i *)(o + (4 * a + 1) * ps), _mm256_add_epi16(t[a][1], t[a][2]));
        _mm256_storeu_si256((__m256i *)(o + (4 * a + 2) * ps), _mm256_sub_epi16(t[a][2], t[a][1]));
        _mm256_storeu_si256((__m256i *)(o + (4 * a + 3) * ps), _mm256_sub_epi16(t[a][1], t[a][3]));
    }
}

/* M[p] of WG_TR tiles x 16 outputs (panel P) into mb[(p * WG_TR + r) * 16]. */
NN_INLINE void wg_products(const wgctx *q, int64_t P, const int16_t *vb, int32_t *mb) {
    for (int p = 0; p < 16; p++) {
        const int16_t *up = q->u + ((p * q->np + P) * q->nq) * 32;
        const int16_t *vp = vb + p * WG_TR * q->cv;
        __m256i acc[WG_TR][2];
        for (int r = 0; r < WG_TR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int64_t k = 0; k < q->nq; k++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(up + k * 32));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(up + k * 32 + 16));
#pragma GCC unroll 6
            for (int r = 0; r < WG_TR; r++) {
                int32_t pair;
                memcpy(&pair, vp + r * q->cv + 2 * k, 4);
                const __m256i x = _mm256_set1_epi32(pair);
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(x, w0));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(x, w1));
            }
        }
        for (int r = 0; r < WG_TR; r++) {
            _mm256_storeu_si256((__m256i *)(mb + (p * WG_TR + r) * 16), acc[r][0]);
            _mm256_storeu_si256((__m256i *)(mb + (p * WG_TR + r) * 16 + 8), acc[r][1]);
        }
    }
}

/* Y = A^T M A / 4 of block tile r (tile index t) for panel P, into c32. */
NN_INLINE void wg_output(const wgctx *q, int64_t P, int r, int64_t t, const int32_t *mb) {
    const int64_t ty = t / q->yw, tx = t % q->yw;
    int32_t *o = q->c32 + ((2 * ty) * q->ow + 2 * tx) * q->ldc;
    for (int h = 0; h < 2; h++) {
        const int64_t j0 = P * NN__QNR + h * 8;
        if (j0 >= q->n) break;
        __m256i s0[4], s1[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const int32_t *m = mb + (k * WG_TR + r) * 16 + h * 8;
            const int64_t ps = 4 * WG_TR * 16; /* rows of M (i = 0..3) */
            const __m256i a = _mm256_loadu_si256((const __m256i *)m);
            const __m256i b = _mm256_loadu_si256((const __m256i *)(m + ps));
            const __m256i c = _mm256_loadu_si256((const __m256i *)(m + 2 * ps));
            const __m256i d = _mm256_loadu_si256((const __m256i *)(m + 3 * ps));
            s0[k] = _mm256_add_epi32(_mm256_add_epi32(a, b), c);
            s1[k] = _mm256_sub_epi32(_mm256_sub_epi32(b, c), d);
        }
        __m256i y[4];
        y[0] = _mm256_add_epi32(_mm256_add_epi32(s0[0], s0[1]), s0[2]);
        y[1] = _mm256_sub_epi32(_mm256_sub_epi32(s0[1], s0[2]), s0[3]);
        y[2] = _mm256_add_epi32(_mm256_add_epi32(s1[0], s1[1]), s1[2]);
        y[3] = _mm256_sub_epi32(_mm256_sub_epi32(s1[1], s1[2]), s1[3]);
        int32_t *oj[4] = {o + j0, o + q->ldc + j0, o + q->ow * q->ldc + j0,
                          o + (q->ow + 1) * q->ldc + j0};
        if (q->n - j0 >= 8) {
            for (int k = 0; k < 4; k++)
                _mm256_storeu_si256((__m256i *)oj[k], _mm256_srai_epi32(y[k], 2));
        } else {
            const __m256i cm = lane_mask(q->n - j0);
            for (int k = 0; k < 4; k++) _mm256_maskstore_epi32(oj[k], cm, _mm256_srai_epi32(y[k], 2));
        }
    }
}

static void wg_blocks(void *ctx, int64_t b0, int64_t b1) {
    wgctx *q = ctx;
    const size_t vbytes = (size_t)(16 * WG_TR * q->cv) * sizeof(int16_t);
    uint8_t *buf = nn__thread_scratch(1, vbytes + (size_t)(16 * WG_TR * 16) * sizeof(int32_t) + 64);
    if (!buf) {
        __atomic_store_n(&q->failed, true, __ATOMIC_RELAXED);
        return;
    }
    int16_t *vb = (int16_t *)buf;
    int32_t *mb = (int32_t *)(buf + ((vbytes + 63) & ~(size_t)63));
    for (int64_t b = b0; b < b1; b++) {
        const int64_t t0 = b * WG_TR;
        const int rt = q->ntiles - t0 >= WG_TR ? WG_TR : (int)(q->ntiles - t0);
        for (int r = 0; r < rt; r++)
            for (int64_t c0 = 0; c0 < q->c; c0 += 16)
                wg_input16(q, (t0 + r) / q->yw, (t0 + r) % q->yw, c0, r, vb);
        if (rt < WG_TR) /* rows past the last tile: defined values, results unused */
            for (int p = 0; p < 16; p++)
                memset(vb + (p * WG_TR + rt) * q->cv, 0,
                       (size_t)((WG_TR - rt) * q->cv) * sizeof(int16_t));
        for (int64_t P = 0; P < q->np; P++) {
            wg_products(q, P, vb, mb);
            for (int r = 0; r < rt; r++) wg_output(q, P, r, t0 + r, mb);
        }
    }
}

/* U' of 8 outputs (panel P, half h) x one channel ch (< c), as int32 lanes:
 * tap t's byte of each output is byte d % 4 of its 32-bit lane in the
 * packed depth group d / 4 (d = t*c + ch), sign-extended by two shifts. */
NN_INLINE void wg_weight8(const int8_t *w, int64_t kp, int64_t c, int64_t P, int h, int64_t ch,
                          bool w7, __m256i u[16]) {
    __m256i g[9];
    const __m256i lim = _mm256_set1_epi32(NN__QW7_MAX), nlim = _mm256_set1_epi32(-NN__QW7_MAX);
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) {
        const int64_t d = t * c + ch;
        const __m256i v = _mm256_loadu_si256(
            (const __m256i *)(w + ((P * kp / 4 + d / 4) * NN__QNR + h * 8) * 4));
        g[t] = _mm256_srai_epi32(_mm256_sll_epi32(v, _mm_cvtsi32_si128(24 - 8 * (int)(d % 4))), 24);
        if (w7) g[t] = _mm256_max_epi32(nlim, _mm256_min_epi32(lim, g[t]));
    }
    __m256i tt[4][3]; /* (2G) g */
#pragma GCC unroll 3
    for (int b = 0; b < 3; b++) {
        const __m256i a = g[b], m = g[3 + b], z = g[6 + b], az = _mm256_add_epi32(a, z);
        tt[0][b] = _mm256_add_epi32(a, a), tt[1][b] = _mm256_add_epi32(az, m);
        tt[2][b] = _mm256_sub_epi32(az, m), tt[3][b] = _mm256_add_epi32(z, z);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* ((2G) g) (2G)^T */
        const __m256i a = tt[i][0], m = tt[i][1], z = tt[i][2], az = _mm256_add_epi32(a, z);
        u[4 * i] = _mm256_add_epi32(a, a), u[4 * i + 1] = _mm256_add_epi32(az, m);
        u[4 * i + 2] = _mm256_sub_epi32(az, m), u[4 * i + 3] = _mm256_add_epi32(z, z);
    }
}

/* The reference's U' (int8.h layout), 8 outputs x a channel pair at a time:
 * the pair's two int32 values (|U'| <= 1143) packed into one 32-bit lane. */
static void avx2_wino_weight(int64_t n, int64_t c, const int8_t *w, bool w7, int16_t *u) {
    const int64_t np = (n + NN__QNR - 1) / NN__QNR, nq = (c + 1) / 2, kp = nn__qk_pad(9 * c);
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF);
    for (int64_t P = 0; P < np; P++)
        for (int64_t q = 0; q < nq; q++)
            for (int h = 0; h < 2; h++) {
                __m256i u0[16], u1[16];
                wg_weight8(w, kp, c, P, h, 2 * q, w7, u0);
                if (2 * q + 1 < c)
                    wg_weight8(w, kp, c, P, h, 2 * q + 1, w7, u1);
                else
                    for (int p = 0; p < 16; p++) u1[p] = _mm256_setzero_si256();
                for (int p = 0; p < 16; p++)
                    _mm256_storeu_si256(
                        (__m256i *)(u + ((p * np + P) * nq + q) * 32 + h * 16),
                        _mm256_or_si256(_mm256_and_si256(u0[p], lo16), _mm256_slli_epi32(u1[p], 16)));
            }
}

static bool avx2_wino_takes(int64_t c, int64_t n) {
    return c >= 4 && c <= NN__QWG_CMAX && n >= 1;
}

static bool avx2_wino_conv(const uint8_t *xp, int64_t c, int64_t wp, int64_t yh, int64_t yw,
                           const int16_t *u, int64_t n, int64_t ow, int32_t *c32, int64_t ldc) {
    if (c < 1 || c > NN__QWG_CMAX) return false;
    if (n <= 0 || yh <= 0 || yw <= 0) return true;
    wgctx q = {.xp = xp, .c = c, .wp = wp, .yw = yw, .ntiles = yh * yw,
               .cv = (c + 15) / 16 * 16, .nq = (c + 1) / 2, .np = (n + NN__QNR - 1) / NN__QNR,
               .n = n, .ow = ow, .ldc = ldc, .u = u, .c32 = c32, .failed = false};
    const int64_t nb = (q.ntiles + WG_TR - 1) / WG_TR;
    nn__parallel_range(nb, nn__threads_for(q.ntiles * 16 * q.np * 16 * c, 1 << 16), 1, wg_blocks,
                       &q);
    return !q.failed;
}

void nn__avx2_fill_int8_wino(nn__int8_kernels *t) {
    t->wino_takes = avx2_wino_takes;
    t->wino_weight = avx2_wino_weight;
    t->wino_conv = avx2_wino_conv;
}
