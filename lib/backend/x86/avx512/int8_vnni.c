/* AVX-512 VNNI int8 kernels (backend/int8.h): vpdpbusd adds four u8 x s8
 * products into each 32-bit lane, exactly, so the integers are the reference
 * kernel's; the float epilogue and the activation quantization do the
 * reference's operations in its order, so the floats are too. Built with
 * -mavx512vnni in its own archive and installed only when CPUID reports VNNI.
 *
 * GEMM: a tile of MR rows x NP panels (16 channels each) keeps MR*NP zmm
 * accumulators; per group of 4 depths it loads NP 64-byte weight vectors
 * and broadcasts 4 activation bytes per row. Batch-1 rows take a GEMV that
 * runs 4 panels with two accumulators each (8 independent dpbusd chains
 * cover the instruction's latency). Threads split rows (many rows) or panels
 * (few rows): independent outputs only. */
#include "backend/int8.h"
#include "backend/x86/avx512/avx512.h"
#include "backend/threadpool.h"

#include <immintrin.h>
#include <string.h>

#define NN_INLINE static inline __attribute__((always_inline))
#define MR 6

NN_INLINE __mmask16 tail16(int64_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r < 0 ? 0 : r)) - 1u);
}

/* 64 packed weight bytes; w7 layers clamp them to [-63, 63] (int8.h). */
NN_INLINE __m512i ldw(const int8_t *p, bool w7) {
    const __m512i v = _mm512_loadu_si512(p);
    if (!w7) return v;
    return _mm512_max_epi8(_mm512_min_epi8(v, _mm512_set1_epi8(NN__QW7_MAX)),
                           _mm512_set1_epi8(-NN__QW7_MAX));
}

/* ------------------------------------------------------- quantization */

static void vnni_minmax(int64_t n, const float *x, float *mn, float *mx) {
    __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        lo = _mm512_min_ps(v, lo); /* NaN in v: keeps lo (the second operand) */
        hi = _mm512_max_ps(v, hi);
    }
    if (i < n) {
        const __mmask16 m = tail16(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        lo = _mm512_mask_min_ps(lo, m, v, lo);
        hi = _mm512_mask_max_ps(hi, m, v, hi);
    }
    float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
    if (l > h) l = h = NAN;
    *mn = l, *mx = h;
}

/* round(x * inv) + zp, clamped to [0, 255] in float (NaN -> 0: max_ps
 * returns its second operand when one is NaN), then to bytes. */
NN_INLINE __m128i quant16(__m512 v, __m512 inv, __m512 z) {
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(v, inv), _MM_FROUND_TO_NEAREST_INT |
                                                               _MM_FROUND_NO_EXC);
    r = _mm512_add_ps(r, z);
    r = _mm512_max_ps(r, _mm512_setzero_ps());
    r = _mm512_min_ps(r, _mm512_set1_ps(255.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r));
}

static void vnni_quantize_u8(int64_t n, const float *x, float inv_scale, int32_t zp, uint8_t *q) {
    const __m512 inv = _mm512_set1_ps(inv_scale), z = _mm512_set1_ps((float)zp);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(q + i), quant16(_mm512_loadu_ps(x + i), inv, z));
    if (i < n) {
        const __mmask16 m = tail16(n - i);
        _mm_mask_storeu_epi8(q + i, m, quant16(_mm512_maskz_loadu_ps(m, x + i), inv, z));
    }
}

/* Column sums: vpdpbusd with all-ones activations. */
static void vnni_colsum(int64_t n, int64_t k, const int8_t *w, bool w7, int32_t *wsum) {
    const int64_t kp = nn__qk_pad(k), np = (n + NN__QNR - 1) / NN__QNR;
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t p = 0; p < np; p++) {
        const int8_t *pw = w + p * NN__QNR * kp;
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        int64_t g = 0;
        for (; g + 2 <= kp / 4; g += 2) {
            s0 = _mm512_dpbusd_epi32(s0, ones, ldw(pw + g * 64, w7));
            s1 = _mm512_dpbusd_epi32(s1, ones, ldw(pw + g * 64 + 64, w7));
        }
        if (g < kp / 4) s0 = _mm512_dpbusd_epi32(s0, ones, ldw(pw + g * 64, w7));
        _mm512_mask_storeu_epi32(wsum + p * NN__QNR, tail16(n - p * NN__QNR),
                                 _mm512_add_epi32(s0, s1));
    }
}

/* ------------------------------------------------------------- epilogue */

typedef struct qctx {
    const nn__qgemm *p;
    int64_t kp, np;
} qctx;

/* y = (float)(acc - za*wsum) * (sa*sw) (+ bias), ReLU, for channels
 * [j0, j0 + 16) of row i (masked past n). */
NN_INLINE void store16(const nn__qgemm *p, int64_t i, int64_t j0, __m512i acc) {
    const __mmask16 m = tail16(p->n - j0);
    if (p->c32) { /* raw sums */
        _mm512_mask_storeu_epi32(p->c32 + i * p->ldc + j0, m, acc);
        return;
    }
    const float sa = p->a_scale[i * p->a_step];
    const int32_t za = p->a_zp[i * p->a_step];
    const __m512i ws = _mm512_maskz_loadu_epi32(m, p->wsum + j0);
    const __m512i v = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(za), ws));
    const __m512 s = _mm512_mul_ps(_mm512_set1_ps(sa), _mm512_maskz_loadu_ps(m, p->w_scale + j0));
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
    if (p->bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, p->bias + j0));
    if (p->relu) { /* max(y, 0) with NaN kept, as the reference */
        const __mmask16 keep = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NLE_UQ);
        y = _mm512_maskz_mov_ps(keep, y);
    }
    _mm512_mask_storeu_ps(p->c + i * p->ldc + j0, m, y);
}

/* --------------------------------------------------------------- kernels */

/* Rows [i0, i0+mr) x panels [p0, p0+NP), mr <= MR (constants after inlining). */
NN_INLINE void tile(const qctx *q, int64_t i0, int mr, int64_t p0, int npan, bool w7) {
    const nn__qgemm *p = q->p;
    const int64_t groups = q->kp / 4;
    __m512i acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    const int8_t *w0 = p->w + p0 * NN__QNR * q->kp;
    const int8_t *w1 = w0 + NN__QNR * q->kp;
    const uint8_t *a = p->a + i0 * p->lda;
    for (int64_t g = 0; g < groups; g++) {
        const __m512i b0 = ldw(w0 + g * 64, w7);
        const __m512i b1 = npan > 1 ? ldw(w1 + g * 64, w7) : b0;
        for (int r = 0; r < MR; r++) {
            if (r >= mr) break;
            int32_t v;
            memcpy(&v, a + r * p->lda + g * 4, 4);
            const __m512i x = _mm512_set1_epi32(v);
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x, b0);
            if (npan > 1) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x, b1);
        }
    }
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        store16(p, i0 + r, p0 * NN__QNR, acc[r][0]);
        if (npan > 1) store16(p, i0 + r, (p0 + 1) * NN__QNR, acc[r][1]);
    }
}

/* One row, panels [p0, p1): 4 panels at a time, even and odd depth groups
 * in separate accumulators. */
NN_INLINE void gemv_row(const qctx *q, int64_t i, int64_t p0, int64_t p1, bool w7) {
    const nn__qgemm *p = q->p;
    const int64_t groups = q->kp / 4, pstride = NN__QNR * q->kp;
    const uint8_t *a = p->a + i * p->lda;
    int64_t pp = p0;
    for (; pp + 4 <= p1; pp += 4) {
        const int8_t *w = p->w + pp * pstride;
        __m512i e0 = _mm512_setzero_si512(), e1 = e0, e2 = e0, e3 = e0;
        __m512i o0 = e0, o1 = e0, o2 = e0, o3 = e0;
        int64_t g = 0;
        for (; g + 2 <= groups; g += 2) {
            int32_t v0, v1;
            memcpy(&v0, a + g * 4, 4);
            memcpy(&v1, a + g * 4 + 4, 4);
            const __m512i x0 = _mm512_set1_epi32(v0), x1 = _mm512_set1_epi32(v1);
            const int8_t *wg = w + g * 64;
            e0 = _mm512_dpbusd_epi32(e0, x0, ldw(wg, w7));
            o0 = _mm512_dpbusd_epi32(o0, x1, ldw(wg + 64, w7));
            e1 = _mm512_dpbusd_epi32(e1, x0, ldw(wg + pstride, w7));
            o1 = _mm512_dpbusd_epi32(o1, x1, ldw(wg + pstride + 64, w7));
            e2 = _mm512_dpbusd_epi32(e2, x0, ldw(wg + 2 * pstride, w7));
            o2 = _mm512_dpbusd_epi32(o2, x1, ldw(wg + 2 * pstride + 64, w7));
            e3 = _mm512_dpbusd_epi32(e3, x0, ldw(wg + 3 * pstride, w7));
            o3 = _mm512_dpbusd_epi32(o3, x1, ldw(wg + 3 * pstride + 64, w7));
        }
        if (g < groups) {
            int32_t v0;
            memcpy(&v0, a + g * 4, 4);
            const __m512i x0 = _mm512_set1_epi32(v0);
            const int8_t *wg = w + g * 64;
            e0 = _mm512_dpbusd_epi32(e0, x0, ldw(wg, w7));
            e1 = _mm512_dpbusd_epi32(e1, x0, ldw(wg + pstride, w7));
            e2 = _mm512_dpbusd_epi32(e2, x0, ldw(wg + 2 * pstride, w7));
            e3 = _mm512_dpbusd_epi32(e3, x0, ldw(wg + 3 * pstride, w7));
        }
        store16(p, i, pp * NN__QNR, _mm512_add_epi32(e0, o0));
        store16(p, i, (pp + 1) * NN__QNR, _mm512_add_epi32(e1, o1));
        store16(p, i, (pp + 2) * NN__QNR, _mm512_add_epi32(e2, o2));
        store16(p, i, (pp + 3) * NN__QNR, _mm512_add_epi32(e3, o3));
    }
    for (; pp < p1; pp++) {
        const int8_t *w = p->w + pp * pstride;
        __m512i e = _mm512_setzero_si512(), o = e;
        int64_t g = 0;
        for (; g + 2 <= groups; g += 2) {
            int32_t v0, v1;
            memcpy(&v0, a + g * 4, 4);
            memcpy(&v1, a + g * 4 + 4, 4);
            e = _mm512_dpbusd_epi32(e, _mm512_set1_epi32(v0), ldw(w + g * 64, w7));
            o = _mm512_dpbusd_epi32(o, _mm512_set1_epi32(v1), ldw(w + g * 64 + 64, w7));
        }
        if (g < groups) {
            int32_t v0;
            memcpy(&v0, a + g * 4, 4);
            e = _mm512_dpbusd_epi32(e, _mm512_set1_epi32(v0), ldw(w + g * 64, w7));
        }
        store16(p, i, pp * NN__QNR, _mm512_add_epi32(e, o));
    }
}

/* Rows [r0, r1) against every panel, MR rows at a time. */
static void rows_body(void *ctx, int64_t r0, int64_t r1) {
    const qctx *q = ctx;
    for (int64_t i = r0; i < r1; i += MR) {
        const int64_t left = r1 - i;
        for (int64_t pp = 0; pp < q->np; pp += 2) {
            const int npan = q->np - pp >= 2 ? 2 : 1;
            if (q->p->w7) {
                tile(q, i, left >= MR ? MR : (int)left, pp, npan, true);
                continue;
            }
            switch (left >= MR ? MR : left) {
            case 6: tile(q, i, 6, pp, npan, false); break;
            case 5: tile(q, i, 5, pp, npan, false); break;
            case 4: tile(q, i, 4, pp, npan, false); break;
            case 3: tile(q, i, 3, pp, npan, false); break;
            case 2: tile(q, i, 2, pp, npan, false); break;
            default: tile(q, i, 1, pp, npan, false); break;
            }
        }
    }
}

/* Every row (few of them) against panels [p0, p1). */
static void panels_body(void *ctx, int64_t p0, int64_t p1) {
    const qctx *q = ctx;
    for (int64_t i = 0; i < q->p->m; i++) {
        if (q->p->w7) gemv_row(q, i, p0, p1, true);
        else gemv_row(q, i, p0, p1, false);
    }
}

static void vnni_gemm(const nn__qgemm *p) {
    if (p->m <= 0 || p->n <= 0) return;
    qctx q = {.p = p, .kp = nn__qk_pad(p->k), .np = (p->n + NN__QNR - 1) / NN__QNR};
    const int64_t work = p->m * p->n * q.kp / 4; /* ~ one dpbusd lane each */
    if (p->m < MR) {
        nn__parallel_range(q.np, nn__threads_for(work, 1 << 15), 1, panels_body, &q);
        return;
    }
    nn__parallel_range(p->m, nn__threads_for(work, 1 << 15), MR, rows_body, &q);
}

/* ------------------------------------------------- pool + epilogue */

/* Transpose the 16x16 floats r[0..16) (row i = r[i]) in place. */
NN_INLINE void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* each 128-bit lane of t[4j..4j+3] now holds 2x2 blocks; finish the 4x4 */
    for (int j = 0; j < 4; j++) {
        r[4 * j] = _mm512_shuffle_ps(t[4 * j], t[4 * j + 2], 0x44);
        r[4 * j + 1] = _mm512_shuffle_ps(t[4 * j], t[4 * j + 2], 0xEE);
        r[4 * j + 2] = _mm512_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0x44);
        r[4 * j + 3] = _mm512_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0xEE);
    }
    /* 4x4 blocks of 128-bit lanes */
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    }
}

/* 16 pooled pixels x 16 channels at a time: the 4-way max of the window
 * sums (vpmaxsd), the epilogue of store16 on the pooled sums, then a 16x16
 * transpose so each channel's plane gets 16 contiguous floats. The pixels
 * run over the flattened plane (py * yw + px), so narrow planes (7 x 7)
 * still fill the transposes. */
static void vnni_pool_epilogue(const int32_t *t, int64_t o, int64_t ow, int64_t yh, int64_t yw,
                               const int32_t *wsum, float sa, int32_t za, const float *sw,
                               const float *bias, bool relu, float *y, int64_t ldy) {
    const int64_t ny = yh * yw;
    __m512 r[16];
    for (int64_t p0 = 0; p0 < ny; p0 += 16) {
        const int np = ny - p0 >= 16 ? 16 : (int)(ny - p0);
        for (int64_t c0 = 0; c0 < o; c0 += 16) {
            const __mmask16 m = tail16(o - c0);
            const __m512i corr =
                _mm512_mullo_epi32(_mm512_set1_epi32(za), _mm512_maskz_loadu_epi32(m, wsum + c0));
            const __m512 s = _mm512_mul_ps(_mm512_set1_ps(sa), _mm512_maskz_loadu_ps(m, sw + c0));
            const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + c0) : _mm512_setzero_ps();
            for (int q = 0; q < 16; q++) {
                if (q >= np) {
                    r[q] = _mm512_setzero_ps();
                    continue;
                }
                const int64_t py = (p0 + q) / yw, px = (p0 + q) % yw;
                const int32_t *r0 = t + ((2 * py) * ow + 2 * px) * o + c0;
                const __m512i m01 = _mm512_max_epi32(_mm512_maskz_loadu_epi32(m, r0),
                                                     _mm512_maskz_loadu_epi32(m, r0 + o));
                const __m512i m23 = _mm512_max_epi32(_mm512_maskz_loadu_epi32(m, r0 + ow * o),
                                                     _mm512_maskz_loadu_epi32(m, r0 + ow * o + o));
                const __m512i v = _mm512_sub_epi32(_mm512_max_epi32(m01, m23), corr);
                __m512 yv = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
                if (bias) yv = _mm512_add_ps(yv, b);
                if (relu) { /* max(y, 0) with NaN kept, as the reference */
                    const __mmask16 keep = _mm512_cmp_ps_mask(yv, _mm512_setzero_ps(), _CMP_NLE_UQ);
                    yv = _mm512_maskz_mov_ps(keep, yv);
                }
                r[q] = yv;
                if (ldy) /* channels-last: the lanes are the channels */
                    _mm512_mask_storeu_ps(y + (p0 + q) * ldy + c0, m, yv);
            }
            if (ldy) continue;
            transpose16(r);
            const __mmask16 pm = tail16(np);
            const int nc = o - c0 >= 16 ? 16 : (int)(o - c0);
            float *yb = y + c0 * ny + p0;
            for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(yb + c * ny, pm, r[c]);
        }
    }
}

/* Quantize [c, h, w] floats into a padded channels-last image: one channel
 * rows at a time straight into place; more channels in 16 x 16 blocks
 * (channels x pixels of an image row), transposed as floats so each pixel's
 * 16 channels quantize into 16 contiguous bytes. */
static void vnni_quantize_pad_hwc(const float *x, int64_t c, int64_t h, int64_t w, int64_t ph,
                                  int64_t pw, float inv_scale, int32_t zp, uint8_t *xp) {
    const int64_t hp = h + 2 * ph, wp = w + 2 * pw;
    memset(xp, zp, (size_t)(hp * wp * c));
    if (c == 1) {
        for (int64_t y = 0; y < h; y++)
            vnni_quantize_u8(w, x + y * w, inv_scale, zp, xp + (y + ph) * wp + pw);
        return;
    }
    const __m512 inv = _mm512_set1_ps(inv_scale), z = _mm512_set1_ps((float)zp);
    __m512 r[16];
    for (int64_t y = 0; y < h; y++)
        for (int64_t x0 = 0; x0 < w; x0 += 16) {
            const int np = w - x0 >= 16 ? 16 : (int)(w - x0);
            const __mmask16 pm = tail16(np);
            for (int64_t c0 = 0; c0 < c; c0 += 16) {
                const int nc = c - c0 >= 16 ? 16 : (int)(c - c0);
                for (int i = 0; i < 16; i++)
                    r[i] = i < nc ? _mm512_maskz_loadu_ps(pm, x + ((c0 + i) * h + y) * w + x0)
                                  : _mm512_setzero_ps();
                transpose16(r);
                const __mmask16 cm = tail16(nc);
                uint8_t *dst = xp + ((y + ph) * wp + pw + x0) * c + c0;
                for (int q = 0; q < np; q++) _mm_mask_storeu_epi8(dst + q * c, cm, quant16(r[q], inv, z));
            }
        }
}

/* ------------------------------ one-channel direct convolution + pool */

/* A one-channel image needs no im2row: the kw <= 4 taps of window row i
 * for conv pixel ox are 4 contiguous bytes of the padded row, one 32-bit
 * broadcast (the fourth byte meets a zero weight). The weights are
 * regrouped per window row, [panel][i][16 channels][4 taps], 4 panels at a
 * time. A tile is C1_P pooled pixels of one pooled row: 2 conv rows x
 * 2*C1_P conv pixels x 2 panels of raw sums (24 zmm), kh dpbusd each; the
 * 2x2 max of the sums, then the epilogue of vnni_pool_epilogue (the same
 * operations, so the same bits), into a row of pooled pixels x channels
 * that 16x16 transposes write into the planes. Threads split pooled rows. */
#define C1_P 3
#define C1_KH 8 /* the most window rows conv1_takes accepts */

typedef struct c1ctx {
    const uint8_t *xp;
    int64_t wp, n, kh, sh, sw, yh, yw, np; /* n, np: channels and panels of this chunk */
    const int8_t *wr;                      /* regrouped weights of the chunk */
    const int32_t *wsum;
    float sa;
    int32_t za;
    const float *ws, *bias;
    bool relu, failed;
    float *y;    /* the chunk's first plane (ldy 0) or first channel */
    int64_t ldy; /* channels-last pixel stride, or 0 (planes) */
} c1ctx;

NN_INLINE void c1_tile(const c1ctx *q, int64_t py, int64_t px0, int P, int64_t p0, int npan,
                       float *rb) {
    __m512i acc[2][2 * C1_P][2];
    for (int r = 0; r < 2; r++)
        for (int u = 0; u < 2 * C1_P; u++) acc[r][u][0] = acc[r][u][1] = _mm512_setzero_si512();
    for (int64_t i = 0; i < q->kh; i++) {
        const __m512i b0 = _mm512_loadu_si512(q->wr + (p0 * q->kh + i) * 64);
        const __m512i b1 = npan > 1 ? _mm512_loadu_si512(q->wr + ((p0 + 1) * q->kh + i) * 64) : b0;
        for (int r = 0; r < 2; r++) {
            const uint8_t *row = q->xp + ((2 * py + r) * q->sh + i) * q->wp + 2 * px0 * q->sw;
            for (int u = 0; u < 2 * C1_P; u++) {
                if (u >= 2 * P) break;
                int32_t v;
                memcpy(&v, row + u * q->sw, 4);
                const __m512i x = _mm512_set1_epi32(v);
                acc[r][u][0] = _mm512_dpbusd_epi32(acc[r][u][0], x, b0);
                if (npan > 1) acc[r][u][1] = _mm512_dpbusd_epi32(acc[r][u][1], x, b1);
            }
        }
    }
    for (int pn = 0; pn < npan; pn++) {
        const int64_t j0 = (p0 + pn) * NN__QNR;
        const __mmask16 m = tail16(q->n - j0);
        const __m512i corr = _mm512_mullo_epi32(_mm512_set1_epi32(q->za),
                                                _mm512_maskz_loadu_epi32(m, q->wsum + j0));
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(q->sa), _mm512_maskz_loadu_ps(m, q->ws + j0));
        const __m512 b = q->bias ? _mm512_maskz_loadu_ps(m, q->bias + j0) : _mm512_setzero_ps();
        for (int t = 0; t < C1_P; t++) {
            if (t >= P) break;
            const __m512i m01 = _mm512_max_epi32(acc[0][2 * t][pn], acc[0][2 * t + 1][pn]);
            const __m512i m23 = _mm512_max_epi32(acc[1][2 * t][pn], acc[1][2 * t + 1][pn]);
            const __m512i v = _mm512_sub_epi32(_mm512_max_epi32(m01, m23), corr);
            __m512 yv = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
            if (q->bias) yv = _mm512_add_ps(yv, b);
            if (q->relu) { /* max(y, 0) with NaN kept, as the reference */
                const __mmask16 keep = _mm512_cmp_ps_mask(yv, _mm512_setzero_ps(), _CMP_NLE_UQ);
                yv = _mm512_maskz_mov_ps(keep, yv);
            }
            _mm512_storeu_ps(rb + (px0 + t) * 64 + j0, yv);
        }
    }
}

static void c1_rows(void *ctx, int64_t py0, int64_t py1) {
    c1ctx *q = ctx;
    float *rb = nn__thread_scratch(1, (size_t)(q->yw * 64) * sizeof(float));
    if (!rb) {
        __atomic_store_n(&q->failed, true, __ATOMIC_RELAXED);
        return;
    }
    const int64_t ny = q->yh * q->yw;
    __m512 r[16];
    for (int64_t py = py0; py < py1; py++) {
        for (int64_t px0 = 0; px0 < q->yw; px0 += C1_P) {
            const int P = q->yw - px0 >= C1_P ? C1_P : (int)(q->yw - px0);
            for (int64_t pp = 0; pp < q->np; pp += 2) {
                /* constant tile shapes, so the sums stay in registers */
                if (q->np - pp >= 2) {
                    switch (P) {
                    case 3: c1_tile(q, py, px0, 3, pp, 2, rb); break;
                    case 2: c1_tile(q, py, px0, 2, pp, 2, rb); break;
                    default: c1_tile(q, py, px0, 1, pp, 2, rb); break;
                    }
                } else {
                    switch (P) {
                    case 3: c1_tile(q, py, px0, 3, pp, 1, rb); break;
                    case 2: c1_tile(q, py, px0, 2, pp, 1, rb); break;
                    default: c1_tile(q, py, px0, 1, pp, 1, rb); break;
                    }
                }
            }
        }
        if (q->ldy) { /* channels-last: each pixel's channels as they are */
            for (int64_t px = 0; px < q->yw; px++)
                memcpy(q->y + (py * q->yw + px) * q->ldy, rb + px * 64,
                       sizeof(float) * (size_t)q->n);
            continue;
        }
        /* [pooled pixel][channel] -> planes, 16 x 16 at a time */
        for (int64_t px0 = 0; px0 < q->yw; px0 += 16) {
            const int npx = q->yw - px0 >= 16 ? 16 : (int)(q->yw - px0);
            for (int64_t c0 = 0; c0 < q->n; c0 += 16) {
                for (int u = 0; u < 16; u++)
                    r[u] = u < npx ? _mm512_loadu_ps(rb + (px0 + u) * 64 + c0) : _mm512_setzero_ps();
                transpose16(r);
                const __mmask16 pm = tail16(npx);
                const int nc = q->n - c0 >= 16 ? 16 : (int)(q->n - c0);
                float *yb = q->y + c0 * ny + py * q->yw + px0;
                for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(yb + c * ny, pm, r[c]);
            }
        }
    }
}

static bool vnni_conv1_takes(int64_t kh, int64_t kw, bool w7) {
    (void)w7; /* w7 weights are clamped as they are regrouped */
    return kw <= 4 && kh <= C1_KH;
}

static bool vnni_conv1_pool(const uint8_t *xp, int64_t wp, const int8_t *w, int64_t n, int64_t kh,
                            int64_t kw, int64_t sh, int64_t sw, int64_t yh, int64_t yw,
                            const int32_t *wsum, float sa, int32_t za, const float *wscale,
                            const float *bias, bool relu, bool w7, float *y, int64_t ldy) {
    if (!vnni_conv1_takes(kh, kw, w7)) return false;
    if (n <= 0 || yh <= 0 || yw <= 0) return true;
    const int64_t np = (n + NN__QNR - 1) / NN__QNR, kp = nn__qk_pad(kh * kw), ny = yh * yw;
    _Alignas(64) int8_t wr[C1_KH * 64 * 4]; /* 4 panels per chunk of channels */
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
                            !w7 ? v : v > NN__QW7_MAX ? NN__QW7_MAX : v < -NN__QW7_MAX ? -NN__QW7_MAX : v;
                    }
        const int64_t c0 = p0 * NN__QNR, nc = n - c0 < 64 ? n - c0 : 64;
        c1ctx q = {.xp = xp, .wp = wp, .n = nc, .kh = kh, .sh = sh, .sw = sw, .yh = yh, .yw = yw,
                   .np = npc, .wr = wr, .wsum = wsum + c0, .sa = sa, .za = za,
                   .ws = wscale + c0, .bias = bias ? bias + c0 : NULL, .relu = relu,
                   .failed = false, .y = ldy ? y + c0 : y + c0 * ny, .ldy = ldy};
        nn__parallel_range(yh, nn__threads_for(4 * ny * npc * 16 * kh, 1 << 15), 1, c1_rows, &q);
        if (q.failed) return false;
    }
    return true;
}

/* ------------------------------- direct convolution on a padded HWC image */

/* With c % 4 == 0, window row i of output pixel (oy, ox) is kw*c contiguous
 * bytes of the padded channels-last image, in the packed depth order: the
 * GEMM's activation row is kh such segments, read in place instead of
 * copied by im2row. A tile is HW_M pixels of one output row x 2 panels,
 * summed over the kh segments in registers; raw sums as gemm's c32. */
#define HW_M 7

typedef struct hwctx {
    const uint8_t *xp;
    int64_t c, wp, kh, kw, sh, sw, ow, n, np, kp, ldc;
    const int8_t *w;
    int32_t *c32;
} hwctx;

NN_INLINE void hw_tile(const hwctx *q, int64_t oy, int64_t ox0, int m, int64_t p0, int npan) {
    __m512i acc[HW_M][2];
    for (int r = 0; r < HW_M; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    const int64_t seg = q->kw * q->c / 4, lda = q->sw * q->c, pstride = NN__QNR * q->kp;
    const int8_t *w0 = q->w + p0 * pstride;
    for (int64_t i = 0; i < q->kh; i++) {
        const uint8_t *a = q->xp + ((oy * q->sh + i) * q->wp + ox0 * q->sw) * q->c;
        const int8_t *wi = w0 + i * seg * 64;
        for (int64_t g = 0; g < seg; g++) {
            const __m512i b0 = _mm512_loadu_si512(wi + g * 64);
            const __m512i b1 = npan > 1 ? _mm512_loadu_si512(wi + pstride + g * 64) : b0;
            for (int r = 0; r < HW_M; r++) {
                if (r >= m) break;
                int32_t v;
                memcpy(&v, a + r * lda + g * 4, 4);
                const __m512i x = _mm512_set1_epi32(v);
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x, b0);
                if (npan > 1) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x, b1);
            }
        }
    }
    const __mmask16 m0 = tail16(q->n - p0 * 16), m1 = tail16(q->n - p0 * 16 - 16);
    for (int r = 0; r < HW_M; r++) {
        if (r >= m) break;
        int32_t *dst = q->c32 + (oy * q->ow + ox0 + r) * q->ldc + p0 * 16;
        _mm512_mask_storeu_epi32(dst, m0, acc[r][0]);
        if (npan > 1) _mm512_mask_storeu_epi32(dst + 16, m1, acc[r][1]);
    }
}

static void hw_rows(void *ctx, int64_t oy0, int64_t oy1) {
    const hwctx *q = ctx;
    const int64_t tiles = (q->ow + HW_M - 1) / HW_M;
    for (int64_t oy = oy0; oy < oy1; oy++) {
        int64_t ox0 = 0;
        for (int64_t t = 0; t < tiles; t++) {
            /* balanced tiles: the first ow % tiles hold one pixel more */
            const int m = (int)(q->ow / tiles + (t < q->ow % tiles));
            for (int64_t pp = 0; pp < q->np; pp += 2) {
                const int npan = q->np - pp >= 2 ? 2 : 1;
                switch (m) {
                case 7: hw_tile(q, oy, ox0, 7, pp, npan); break;
                case 6: hw_tile(q, oy, ox0, 6, pp, npan); break;
                case 5: hw_tile(q, oy, ox0, 5, pp, npan); break;
                case 4: hw_tile(q, oy, ox0, 4, pp, npan); break;
                default: hw_tile(q, oy, ox0, m, pp, npan); break;
                }
            }
            ox0 += m;
        }
    }
}

/* The AVX2 tier's integer Winograd sums 16 products per vpmaddwd; vpdpbusd
 * here sums 64 per instruction directly (conv_hwc), which outweighs
 * Winograd's 2.25x fewer products: this tier keeps conv_hwc. */
static bool vnni_wino_takes(int64_t c, int64_t n) {
    (void)c, (void)n;
    return false;
}

static bool vnni_conv_hwc_takes(int64_t c, int64_t kw) { return c % 4 == 0 && kw >= 1; }

static bool vnni_conv_hwc(const uint8_t *xp, int64_t c, int64_t wp, int64_t kh, int64_t kw,
                          int64_t sh, int64_t sw, int64_t oh, int64_t ow, const int8_t *w,
                          int64_t n, int32_t *c32, int64_t ldc) {
    if (n <= 0 || oh <= 0 || ow <= 0) return true;
    hwctx q = {.xp = xp, .c = c, .wp = wp, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .ow = ow,
               .n = n, .np = (n + NN__QNR - 1) / NN__QNR, .kp = nn__qk_pad(kh * kw * c),
               .ldc = ldc, .w = w, .c32 = c32};
    nn__parallel_range(oh, nn__threads_for(oh * ow * n * q.kp / 4, 1 << 15), 1, hw_rows, &q);
    return true;
}

int32_t nn__avx512vnni_dpbusd_loop(int64_t iters) {
    const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(-1);
    __m512i a[12];
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_epi32(j);
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_dpbusd_epi32(a[j], x, y);
    __m512i s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_epi32(s, a[j]);
    return _mm512_reduce_add_epi32(s);
}

/* vpdpbusd sums full-range products exactly: 8-bit weights. */
static int vnni_weight_bits(void) { return 8; }

/* The inherited AVX2 gemm folds zero points; this one takes column sums. */
static bool vnni_folds_zp(int64_t m, bool w7) {
    (void)m, (void)w7;
    return false;
}

void nn__avx512vnni_fill_int8(nn__int8_kernels *t) {
    t->weight_bits = vnni_weight_bits;
    t->minmax = vnni_minmax;
    t->quantize_u8 = vnni_quantize_u8;
    t->colsum = vnni_colsum;
    t->gemm = vnni_gemm;
    t->folds_zp = vnni_folds_zp;
    t->pool_epilogue = vnni_pool_epilogue;
    t->quantize_pad_hwc = vnni_quantize_pad_hwc;
    t->conv1_takes = vnni_conv1_takes;
    t->conv1_pool = vnni_conv1_pool;
    t->conv_hwc_takes = vnni_conv_hwc_takes;
    t->conv_hwc = vnni_conv_hwc;
    t->wino_takes = vnni_wino_takes;
}
