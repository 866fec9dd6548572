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
 *                    by 2 (Y is 4x the direct sum); wino_pool: the 2x2 max
 *                    and the pool epilogue's float operations right there
 *                    (no raw sums to memory), wino_conv: the raw sums.
 * Threads split the tile blocks. The weights' transform (once per call, not
 * per image) takes 8 outputs x a channel pair per vector, in int16. */
#include "backend/int8.h"
#include "backend/x86/avx2/int8_epi.h"
#include "backend/x86/avx2/pack.h" /* pack_transpose8 */
#include "backend/x86/avx2/simd.h"
#include "backend/threadpool.h"

#include <string.h>

#define WG_TR 5 /* tiles per register block: 10 accumulators */

typedef struct wgctx {
    const uint8_t *xp;
    int64_t c, wp, yw, ntiles, cv, nq, np, ps, n, ow, ldc;
    const int16_t *u;
    int32_t *c32; /* wino_conv's raw sums, or NULL: wino_pool's floats into y */
    const int32_t *wsum;
    float sa;
    int32_t za;
    const float *sw, *bias;
    bool relu, failed;
    float *y;
    int64_t ldy, ny;
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
        const int16_t *up = q->u + p * q->ps + P * q->nq * 32;
        const int16_t *vp = vb + p * WG_TR * q->cv;
        __m256i acc[WG_TR][2];
        for (int r = 0; r < WG_TR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int64_t k = 0; k < q->nq; k++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(up + k * 32));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(up + k * 32 + 16));
#pragma GCC unroll 5
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

/* The four conv pixels' raw sums Y / 4 (Y = A^T M A, exact: int8.h) of
 * block tile r, 8 outputs (half h of the panel): y[2r' + s'] = pixel (2ty +
 * r', 2tx + s'). */
NN_INLINE void wg_ytile(const int32_t *mb, int r, int h, __m256i y[4]) {
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
    y[0] = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(s0[0], s0[1]), s0[2]), 2);
    y[1] = _mm256_srai_epi32(_mm256_sub_epi32(_mm256_sub_epi32(s0[1], s0[2]), s0[3]), 2);
    y[2] = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(s1[0], s1[1]), s1[2]), 2);
    y[3] = _mm256_srai_epi32(_mm256_sub_epi32(_mm256_sub_epi32(s1[1], s1[2]), s1[3]), 2);
}

/* wino_conv: the raw sums of block tile r (tile index t), panel P, into c32. */
NN_INLINE void wg_output(const wgctx *q, int64_t P, int r, int64_t t, const int32_t *mb) {
    const int64_t ty = t / q->yw, tx = t % q->yw;
    int32_t *o = q->c32 + ((2 * ty) * q->ow + 2 * tx) * q->ldc;
    for (int h = 0; h < 2; h++) {
        const int64_t j0 = P * NN__QNR + h * 8;
        if (j0 >= q->n) break;
        __m256i y[4];
        wg_ytile(mb, r, h, y);
        int32_t *oj[4] = {o + j0, o + q->ldc + j0, o + q->ow * q->ldc + j0,
                          o + (q->ow + 1) * q->ldc + j0};
        if (q->n - j0 >= 8) {
            for (int k = 0; k < 4; k++) _mm256_storeu_si256((__m256i *)oj[k], y[k]);
        } else {
            const __m256i cm = lane_mask(q->n - j0);
            for (int k = 0; k < 4; k++) _mm256_maskstore_epi32(oj[k], cm, y[k]);
        }
    }
}

/* wino_pool: the block's rt tiles (pooled pixels t0 ..) of panel P: the
 * max of each tile's four raw sums, then avx2_pool_epilogue's float
 * operations in its order (int8.c: - za*wsum, * (sa*sw), + bias, ReLU with
 * NaN kept), so the bits of pool_epilogue, without the raw sums going to
 * memory. Channels-last (ldy): each tile's channels as they are; planes: an
 * 8x8 transpose gives each channel its rt consecutive pooled pixels. */
NN_INLINE void wg_pool_out(const wgctx *q, int64_t P, int rt, int64_t t0, const int32_t *mb) {
    for (int h = 0; h < 2; h++) {
        const int64_t j0 = P * NN__QNR + h * 8;
        if (j0 >= q->n) break;
        const int nc = q->n - j0 >= 8 ? 8 : (int)(q->n - j0);
        const __m256i cm = lane_mask(nc);
        __m256i corr;
        __m256 s, b;
        q8_operands(nc, q->wsum + j0, q->sa, q->za, q->sw + j0, q->bias ? q->bias + j0 : NULL,
                    &corr, &s, &b);
        __m256 rr[8];
        for (int r = 0; r < 8; r++) {
            if (r >= rt) {
                rr[r] = _mm256_setzero_ps();
                continue;
            }
            __m256i y[4];
            wg_ytile(mb, r, h, y);
            const __m256i v = _mm256_sub_epi32(
                _mm256_max_epi32(_mm256_max_epi32(y[0], y[1]), _mm256_max_epi32(y[2], y[3])), corr);
            const __m256 yv = q8_epilogue(v, s, b, q->bias != NULL, q->relu);
            rr[r] = yv;
            if (q->ldy) _mm256_maskstore_ps(q->y + (t0 + r) * q->ldy + j0, cm, yv);
        }
        if (q->ldy) continue;
        pack_transpose8(rr);
        const __m256i pm = lane_mask(rt);
        for (int c = 0; c < nc; c++) _mm256_maskstore_ps(q->y + (j0 + c) * q->ny + t0, pm, rr[c]);
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
            if (!q->c32)
                wg_pool_out(q, P, rt, t0, mb);
            else
                for (int r = 0; r < rt; r++) wg_output(q, P, r, t0 + r, mb);
        }
    }
}

/* The pshufb control that moves byte b of each 32-bit lane to byte `at`
 * (1 or 3) of the lane, zeroing the others (b < 0: all zero). */
NN_INLINE __m256i wg_pick(int b, int at) {
    const uint32_t z = 0x80808080u;
    const uint32_t pat = b < 0 ? z : (z & ~(0xFFu << (8 * at))) | ((uint32_t)b << (8 * at));
    return _mm256_add_epi8(_mm256_set1_epi32((int)pat),
                           _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0,
                                             0x04040404, 0x08080808, 0x0C0C0C0C));
}

/* Where the 9 taps of a channel pair sit in a panel: byte offsets of the
 * packed depth groups of channels 2q and 2q + 1 (a 16-channel x 4-byte
 * group per 4 depths; tap t of channel ch is depth t*c + ch) and the pshufb
 * controls that move each one's byte of every output's 32-bit lane to byte
 * 1 (channel 2q) and byte 3 (2q + 1; none past c). The same for every panel
 * and half, so computed once per pair. */
typedef struct wgpair {
    int64_t off0[9], off1[9];
    __m256i pick0[9], pick1[9];
} wgpair;

static void wg_pair_setup(int64_t c, int64_t q, wgpair *pr) {
    for (int t = 0; t < 9; t++) {
        const int64_t d0 = t * c + 2 * q, d1 = d0 + 1;
        pr->off0[t] = d0 / 4 * NN__QNR * 4, pr->pick0[t] = wg_pick((int)(d0 % 4), 1);
        pr->off1[t] = 2 * q + 1 < c ? d1 / 4 * NN__QNR * 4 : pr->off0[t];
        pr->pick1[t] = wg_pick(2 * q + 1 < c ? (int)(d1 % 4) : -1, 3);
    }
}

/* U' (int8.h layout) of 8 outputs x the channel pair as the 16-bit halves
 * of each 32-bit lane: vpsraw 8 sign-extends both bytes the controls put
 * in place, and the transform runs on 16-bit lanes (|U'| <= 9 * 128 fits),
 * each half on its own channel. wp: the panel's half (8 outputs). */
NN_INLINE void wg_weight_pair(const int8_t *wp, const wgpair *pr, bool w7, int16_t *dst,
                              int64_t ps) {
    __m256i g[9];
    const __m256i lim = _mm256_set1_epi16(NN__QW7_MAX), nlim = _mm256_set1_epi16(-NN__QW7_MAX);
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(wp + pr->off0[t]));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(wp + pr->off1[t]));
        g[t] = _mm256_srai_epi16(_mm256_or_si256(_mm256_shuffle_epi8(a, pr->pick0[t]),
                                                 _mm256_shuffle_epi8(b, pr->pick1[t])),
                                 8);
        if (w7) g[t] = _mm256_max_epi16(nlim, _mm256_min_epi16(lim, g[t]));
    }
    __m256i tt[4][3]; /* (2G) g */
#pragma GCC unroll 3
    for (int b = 0; b < 3; b++) {
        const __m256i a = g[b], m = g[3 + b], z = g[6 + b], az = _mm256_add_epi16(a, z);
        tt[0][b] = _mm256_add_epi16(a, a), tt[1][b] = _mm256_add_epi16(az, m);
        tt[2][b] = _mm256_sub_epi16(az, m), tt[3][b] = _mm256_add_epi16(z, z);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* ((2G) g) (2G)^T, stored as it comes */
        const __m256i a = tt[i][0], m = tt[i][1], z = tt[i][2], az = _mm256_add_epi16(a, z);
        _mm256_storeu_si256((__m256i *)(dst + (4 * i) * ps), _mm256_add_epi16(a, a));
        _mm256_storeu_si256((__m256i *)(dst + (4 * i + 1) * ps), _mm256_add_epi16(az, m));
        _mm256_storeu_si256((__m256i *)(dst + (4 * i + 2) * ps), _mm256_sub_epi16(az, m));
        _mm256_storeu_si256((__m256i *)(dst + (4 * i + 3) * ps), _mm256_add_epi16(z, z));
    }
}

/* The reference's U', 8 outputs x a channel pair per vector. */
static void avx2_wino_weight(int64_t n, int64_t c, const int8_t *w, bool w7, int16_t *u) {
    const int64_t np = (n + NN__QNR - 1) / NN__QNR, nq = (c + 1) / 2, kp = nn__qk_pad(9 * c);
    const int64_t ps = nn__qwg_pstride(n, c);
    wgpair pr;
    for (int64_t q = 0; q < nq; q++) {
        wg_pair_setup(c, q, &pr);
        for (int64_t P = 0; P < np; P++)
            for (int h = 0; h < 2; h++)
                wg_weight_pair(w + (P * kp / 4 * NN__QNR + h * 8) * 4, &pr, w7,
                               u + (P * nq + q) * 32 + h * 16, ps);
    }
}

static bool avx2_wino_takes(int64_t c, int64_t n) {
    return c >= 4 && c <= NN__QWG_CMAX && n >= 1;
}

static bool wg_run(wgctx *q) {
    if (q->c < 1 || q->c > NN__QWG_CMAX) return false;
    if (q->n <= 0 || q->ntiles <= 0) return true;
    q->cv = (q->c + 15) / 16 * 16, q->nq = (q->c + 1) / 2, q->np = (q->n + NN__QNR - 1) / NN__QNR;
    q->ps = nn__qwg_pstride(q->n, q->c), q->failed = false;
    const int64_t nb = (q->ntiles + WG_TR - 1) / WG_TR;
    nn__parallel_range(nb, nn__threads_for(q->ntiles * 16 * q->np * 16 * q->c, 1 << 16), 1,
                       wg_blocks, q);
    return !q->failed;
}

static bool avx2_wino_conv(const uint8_t *xp, int64_t c, int64_t wp, int64_t yh, int64_t yw,
                           const int16_t *u, int64_t n, int64_t ow, int32_t *c32, int64_t ldc) {
    wgctx q = {.xp = xp, .c = c, .wp = wp, .yw = yw, .ntiles = yh * yw, .n = n, .ow = ow,
               .ldc = ldc, .u = u, .c32 = c32};
    return wg_run(&q);
}

static bool avx2_wino_pool(const uint8_t *xp, int64_t c, int64_t wp, int64_t yh, int64_t yw,
                           const int16_t *u, int64_t n, const int32_t *wsum, float sa, int32_t za,
                           const float *sw, const float *bias, bool relu, float *y, int64_t ldy) {
    wgctx q = {.xp = xp, .c = c, .wp = wp, .yw = yw, .ntiles = yh * yw, .n = n, .u = u,
               .wsum = wsum, .sa = sa, .za = za, .sw = sw, .bias = bias, .relu = relu, .y = y,
               .ldy = ldy, .ny = yh * yw};
    return wg_run(&q);
}

void nn__avx2_fill_int8_wino(nn__int8_kernels *t) {
    t->wino_takes = avx2_wino_takes;
    t->wino_weight = avx2_wino_weight;
    t->wino_pool = avx2_wino_pool;
    t->wino_conv = avx2_wino_conv;
}
