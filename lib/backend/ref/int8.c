/* Reference int8 kernels (backend/int8.h): plain C that says what each one
 * means; the oracle of the AVX2 and AVX-512 VNNI kernels, which must give the
 * same integers and the same floats. Packing and im2row are shared by every
 * tier (they run once per model, or are memory-bound). */
#include "backend/int8.h"
#include "backend/ref/ref.h"

#include <stdlib.h>
#include <string.h>

static void ref_minmax(int64_t n, const float *x, float *mn, float *mx) {
    /* NaN compares false, so it is skipped; the min/max of a set does not
     * depend on the order the SIMD tiers visit it in. */
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (lo > hi) lo = hi = NAN; /* every value NaN */
    *mn = lo, *mx = hi;
}

static void ref_quantize_u8(int64_t n, const float *x, float inv_scale, int32_t zp, uint8_t *q) {
    const float z = (float)zp;
    for (int64_t i = 0; i < n; i++) {
        float r = nearbyintf(x[i] * inv_scale) + z;
        q[i] = r >= 255.0f ? 255 : r > 0.0f ? (uint8_t)r : 0;
    }
}

/* A weight as the products see it: w7 layers clamp to [-63, 63]. */
static inline int32_t weight_of(int8_t v, bool w7) {
    return w7 ? (v > NN__QW7_MAX ? NN__QW7_MAX : v < -NN__QW7_MAX ? -NN__QW7_MAX : v) : v;
}

static void ref_colsum(int64_t n, int64_t k, const int8_t *w, bool w7, int32_t *wsum) {
    const int64_t kp = nn__qk_pad(k);
    for (int64_t j = 0; j < n; j++) {
        const int8_t *panel = w + j / NN__QNR * NN__QNR * kp;
        int32_t s = 0;
        for (int64_t p = 0; p < kp; p++)
            s += weight_of(panel[(p / 4 * NN__QNR + j % NN__QNR) * 4 + p % 4], w7);
        wsum[j] = s;
    }
}

/* Element (j, p) of packed weights. */
static inline int32_t packed_at(const int8_t *w, int64_t kp, int64_t j, int64_t p, bool w7) {
    return weight_of(w[(j / NN__QNR * kp / 4 + p / 4) * NN__QNR * 4 + (j % NN__QNR) * 4 + p % 4],
                     w7);
}

/* The epilogue every tier computes, in this order. */
static inline float epilogue(int32_t acc, int32_t za, int32_t wsum, float sa, float sw,
                             const float *bias, int64_t j, bool relu) {
    /* acc - za*wsum equals the exact sum of (qa - za)*qw, which fits int32;
     * the intermediate may wrap, so compute it in uint32 (defined). */
    int32_t v = (int32_t)((uint32_t)acc - (uint32_t)za * (uint32_t)wsum);
    float y = (float)v * (sa * sw);
    if (bias) y += bias[j];
    if (relu && !(y > 0.0f) && !isnan(y)) y = 0.0f;
    return y;
}

static void ref_gemm(const nn__qgemm *p) {
    const int64_t kp = nn__qk_pad(p->k);
    for (int64_t i = 0; i < p->m; i++) {
        const uint8_t *a = p->a + i * p->lda;
        const float sa = p->a_scale[i * p->a_step];
        const int32_t za = p->a_zp[i * p->a_step];
        for (int64_t j = 0; j < p->n; j++) {
            int64_t acc = 0;
            for (int64_t q = 0; q < p->k; q++) acc += (int64_t)a[q] * packed_at(p->w, kp, j, q, p->w7);
            if (p->c32) {
                p->c32[i * p->ldc + j] = (int32_t)acc;
                continue;
            }
            p->c[i * p->ldc + j] =
                epilogue((int32_t)acc, za, p->wsum[j], sa, p->w_scale[j], p->bias, j, p->relu);
        }
    }
}

static void ref_pack(int64_t n, int64_t k, const int8_t *qw, int64_t ldw, int8_t *w) {
    const int64_t kp = nn__qk_pad(k), np = (n + NN__QNR - 1) / NN__QNR;
    memset(w, 0, (size_t)(np * NN__QNR * kp));
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = 0; q < k; q++)
            w[(j / NN__QNR * kp / 4 + q / 4) * NN__QNR * 4 + (j % NN__QNR) * 4 + q % 4] =
                qw[j * ldw + q];
}

static void ref_pad_hwc(const uint8_t *x, int64_t c, int64_t h, int64_t w, int64_t ph,
                        int64_t pw, uint8_t pad, uint8_t *xp) {
    const int64_t hp = h + 2 * ph, wp = w + 2 * pw;
    memset(xp, pad, (size_t)(hp * wp * c));
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t y = 0; y < h; y++) {
            const uint8_t *src = x + (ch * h + y) * w;
            uint8_t *dst = xp + ((y + ph) * wp + pw) * c + ch;
            for (int64_t xx = 0; xx < w; xx++) dst[xx * c] = src[xx];
        }
}

/* memcpy / memset of n bytes with sizes the compiler knows, so the short
 * runs of im2row (3 bytes for a one-channel 3x3 window) cost a few moves,
 * not a library call each: fixed sizes up to 8, two overlapping fixed
 * copies up to 32, 32-byte chunks and an overlapping tail past that. */
static inline void copy_run(uint8_t *d, const uint8_t *s, int64_t n) {
    switch (n) {
    case 0: return;
    case 1: memcpy(d, s, 1); return;
    case 2: memcpy(d, s, 2); return;
    case 3: memcpy(d, s, 3); return;
    case 4: memcpy(d, s, 4); return;
    case 5: memcpy(d, s, 5); return;
    case 6: memcpy(d, s, 6); return;
    case 7: memcpy(d, s, 7); return;
    case 8: memcpy(d, s, 8); return;
    default: break;
    }
    if (n <= 16) {
        memcpy(d, s, 8), memcpy(d + n - 8, s + n - 8, 8);
    } else if (n <= 32) {
        memcpy(d, s, 16), memcpy(d + n - 16, s + n - 16, 16);
    } else {
        for (int64_t b = 0; b + 32 <= n; b += 32) memcpy(d + b, s + b, 32);
        memcpy(d + n - 32, s + n - 32, 32);
    }
}

static inline void zero_run(uint8_t *d, int64_t n) {
    static const uint8_t zeros[32];
    if (n <= 32) {
        copy_run(d, zeros, n);
        return;
    }
    memset(d, 0, (size_t)n);
}

static void ref_im2row(const uint8_t *xp, int64_t c, int64_t wp, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t oh, int64_t ow, uint8_t *col,
                       int64_t ldcol) {
    const int64_t run = kw * c, k = kh * run;
    for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++) {
            uint8_t *row = col + (oy * ow + ox) * ldcol;
            for (int64_t i = 0; i < kh; i++)
                copy_run(row + i * run, xp + ((oy * sh + i) * wp + ox * sw) * c, run);
            zero_run(row + k, ldcol - k);
        }
}

static void ref_quantize_pad_hwc(const float *x, int64_t c, int64_t h, int64_t w, int64_t ph,
                                 int64_t pw, float inv_scale, int32_t zp, uint8_t *xp) {
    const int64_t hp = h + 2 * ph, wp = w + 2 * pw;
    memset(xp, zp, (size_t)(hp * wp * c));
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t y = 0; y < h; y++) {
            uint8_t *dst = xp + ((y + ph) * wp + pw) * c + ch;
            for (int64_t xx = 0; xx < w; xx++)
                ref_quantize_u8(1, x + (ch * h + y) * w + xx, inv_scale, zp, dst + xx * c);
        }
}

static void ref_pool_epilogue(const int32_t *t, int64_t o, int64_t ow, int64_t yh, int64_t yw,
                              const int32_t *wsum, float sa, int32_t za, const float *sw,
                              const float *bias, bool relu, float *y, int64_t ldy) {
    const int64_t ny = yh * yw;
    for (int64_t py = 0; py < yh; py++)
        for (int64_t px = 0; px < yw; px++) {
            const int32_t *r0 = t + ((2 * py) * ow + 2 * px) * o, *r1 = r0 + o;
            const int32_t *r2 = r0 + ow * o, *r3 = r2 + o;
            for (int64_t c = 0; c < o; c++) {
                const int32_t a = r0[c] > r1[c] ? r0[c] : r1[c], b = r2[c] > r3[c] ? r2[c] : r3[c];
                y[ldy ? (py * yw + px) * ldy + c : c * ny + py * yw + px] =
                    epilogue(a > b ? a : b, za, wsum[c], sa, sw[c], bias, c, relu);
            }
        }
}

static bool ref_conv1_takes(int64_t kh, int64_t kw, bool w7) {
    (void)kh, (void)kw, (void)w7;
    return false; /* the front end runs im2row + gemm */
}

static bool ref_conv1_pool(const uint8_t *xp, int64_t wp, const int8_t *w, int64_t n, int64_t kh,
                           int64_t kw, int64_t sh, int64_t sw, int64_t yh, int64_t yw,
                           const int32_t *wsum, float sa, int32_t za, const float *wscale,
                           const float *bias, bool relu, bool w7, float *y, int64_t ldy) {
    const int64_t kp = nn__qk_pad(kh * kw), oh = 2 * yh, ow = 2 * yw;
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(oh * ow * n > 0 ? oh * ow * n : 1));
    if (!t) return false;
    for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++)
            for (int64_t j = 0; j < n; j++) {
                int64_t s = 0;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t q = 0; q < kw; q++) {
                        const int64_t d = i * kw + q; /* packed as in `pack` */
                        s += (int64_t)xp[(oy * sh + i) * wp + ox * sw + q] *
                             weight_of(w[((j / NN__QNR * kp / 4 + d / 4) * NN__QNR + j % NN__QNR) * 4 +
                                         d % 4],
                                       w7);
                    }
                t[(oy * ow + ox) * n + j] = (int32_t)s;
            }
    ref_pool_epilogue(t, n, ow, yh, yw, wsum, sa, za, wscale, bias, relu, y, ldy);
    free(t);
    return true;
}

static bool ref_conv_hwc_takes(int64_t c, int64_t kw) {
    (void)c, (void)kw;
    return false; /* the front end runs im2row + gemm */
}

static bool ref_conv_hwc(const uint8_t *xp, int64_t c, int64_t wp, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t oh, int64_t ow, const int8_t *w, int64_t n,
                         int32_t *c32, int64_t ldc) {
    const int64_t k = kh * kw * c, kp = nn__qk_pad(k);
    uint8_t *col = malloc((size_t)(oh * ow * kp + NN__Q_SLACK));
    if (!col) return false;
    ref_im2row(xp, c, wp, kh, kw, sh, sw, oh, ow, col, kp);
    static const float one = 1.0f;
    static const int32_t zero = 0;
    nn__qgemm g = {.m = oh * ow, .n = n, .k = k, .a = col, .lda = kp, .w = w, .a_scale = &one,
                   .a_zp = &zero, .ldc = ldc, .c32 = c32};
    ref_gemm(&g);
    free(col);
    return true;
}

/* ------------------------------------------- integer Winograd F(2x2, 3x3) */

/* U' = (2G) g (2G)^T of each (output, channel) 3x3 filter (int8.h). */
static void ref_wino_weight(int64_t n, int64_t c, const int8_t *w, bool w7, int16_t *u) {
    static const int32_t G2[4][3] = {{2, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 2}};
    const int64_t nq = (c + 1) / 2, kp = nn__qk_pad(9 * c), ps = nn__qwg_pstride(n, c);
    memset(u, 0, sizeof(int16_t) * (size_t)nn__qwg_elems(n, c));
    for (int64_t j = 0; j < n; j++)
        for (int64_t ch = 0; ch < c; ch++) {
            int32_t g[3][3], t[4][3];
            for (int a = 0; a < 3; a++) /* tap (a, b) is depth (3a + b)*c + ch */
                for (int b = 0; b < 3; b++) g[a][b] = packed_at(w, kp, j, (3 * a + b) * c + ch, w7);
            for (int i = 0; i < 4; i++)
                for (int b = 0; b < 3; b++)
                    t[i][b] = G2[i][0] * g[0][b] + G2[i][1] * g[1][b] + G2[i][2] * g[2][b];
            for (int i = 0; i < 4; i++)
                for (int jj = 0; jj < 4; jj++) {
                    const int32_t v = t[i][0] * G2[jj][0] + t[i][1] * G2[jj][1] + t[i][2] * G2[jj][2];
                    u[(4 * i + jj) * ps + (j / NN__QNR * nq + ch / 2) * 32 + (j % NN__QNR) * 2 +
                      ch % 2] = (int16_t)v;
                }
        }
}

/* Tile by tile: V = B^T d B of each channel, M[p] = sum_ch U'[p] V[p] for
 * each output, Y = A^T M A = 4x the direct sums (int64 here, so the bound
 * is not relied on), Y / 4 into the four conv pixels. */
static bool ref_wino_conv(const uint8_t *xp, int64_t c, int64_t wp, int64_t yh, int64_t yw,
                          const int16_t *u, int64_t n, int64_t ow, int32_t *c32, int64_t ldc) {
    const int64_t nq = (c + 1) / 2, ps = nn__qwg_pstride(n, c);
    int32_t *v = malloc(sizeof(int32_t) * 16 * (size_t)(c > 0 ? c : 1));
    if (!v) return false;
    for (int64_t ty = 0; ty < yh; ty++)
        for (int64_t tx = 0; tx < yw; tx++) {
            for (int64_t ch = 0; ch < c; ch++) {
                int32_t d[4][4], t[4][4];
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) d[a][b] = xp[((2 * ty + a) * wp + 2 * tx + b) * c + ch];
                for (int b = 0; b < 4; b++) { /* B^T d */
                    t[0][b] = d[0][b] - d[2][b], t[1][b] = d[1][b] + d[2][b];
                    t[2][b] = d[2][b] - d[1][b], t[3][b] = d[1][b] - d[3][b];
                }
                for (int a = 0; a < 4; a++) { /* (B^T d) B */
                    int32_t *va = v + (4 * a) * c + ch;
                    va[0] = t[a][0] - t[a][2], va[c] = t[a][1] + t[a][2];
                    va[2 * c] = t[a][2] - t[a][1], va[3 * c] = t[a][1] - t[a][3];
                }
            }
            for (int64_t j = 0; j < n; j++) {
                int64_t m[4][4], s[2][4];
                for (int p = 0; p < 16; p++) {
                    const int16_t *up = u + p * ps + (j / NN__QNR * nq) * 32 + (j % NN__QNR) * 2;
                    int64_t acc = 0;
                    for (int64_t ch = 0; ch < c; ch++)
                        acc += (int64_t)up[ch / 2 * 32 + ch % 2] * v[p * c + ch];
                    m[p / 4][p % 4] = acc;
                }
                for (int b = 0; b < 4; b++) {
                    s[0][b] = m[0][b] + m[1][b] + m[2][b];
                    s[1][b] = m[1][b] - m[2][b] - m[3][b];
                }
                for (int r = 0; r < 2; r++) {
                    const int64_t y0 = s[r][0] + s[r][1] + s[r][2], y1 = s[r][1] - s[r][2] - s[r][3];
                    int32_t *o = c32 + ((2 * ty + r) * ow + 2 * tx) * ldc + j;
                    o[0] = (int32_t)(y0 / 4), o[ldc] = (int32_t)(y1 / 4);
                }
            }
        }
    free(v);
    return true;
}

static bool ref_wino_pool(const uint8_t *xp, int64_t c, int64_t wp, int64_t yh, int64_t yw,
                          const int16_t *u, int64_t n, const int32_t *wsum, float sa, int32_t za,
                          const float *sw, const float *bias, bool relu, float *y, int64_t ldy) {
    const int64_t ow = 2 * yw, cnt = 2 * yh * ow * n;
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(cnt > 0 ? cnt : 1));
    if (!t) return false;
    const bool ok = ref_wino_conv(xp, c, wp, yh, yw, u, n, ow, t, n);
    if (ok) ref_pool_epilogue(t, n, ow, yh, yw, wsum, sa, za, sw, bias, relu, y, ldy);
    free(t);
    return ok;
}

static bool ref_wino_takes(int64_t c, int64_t n) {
    (void)c, (void)n;
    return false; /* the front end runs im2row + gemm */
}

/* Plain C has no faster path for 7-bit weights. */
static int ref_weight_bits(void) { return 8; }

static bool ref_folds_zp(int64_t m, bool w7) {
    (void)m, (void)w7;
    return false;
}

void nn__ref_fill_int8(nn__int8_kernels *t) {
    t->folds_zp = ref_folds_zp;
    t->weight_bits = ref_weight_bits;
    t->minmax = ref_minmax;
    t->quantize_u8 = ref_quantize_u8;
    t->colsum = ref_colsum;
    t->gemm = ref_gemm;
    t->pack = ref_pack;
    t->pad_hwc = ref_pad_hwc;
    t->im2row = ref_im2row;
    t->pool_epilogue = ref_pool_epilogue;
    t->quantize_pad_hwc = ref_quantize_pad_hwc;
    t->conv1_takes = ref_conv1_takes;
    t->conv1_pool = ref_conv1_pool;
    t->conv_hwc_takes = ref_conv_hwc_takes;
    t->conv_hwc = ref_conv_hwc;
    t->wino_takes = ref_wino_takes;
    t->wino_weight = ref_wino_weight;
    t->wino_conv = ref_wino_conv;
    t->wino_pool = ref_wino_pool;
}
