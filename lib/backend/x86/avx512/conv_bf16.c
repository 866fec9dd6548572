/* AVX-512 BF16: direct convolution with bf16 weights (backend/half.h,
 * conv_fwd), compiled with -mavx512bf16 (its own archive) and installed
 * only when CPUID reports AVX512_BF16. NCHW, groups = 1, column stride 1.
 *
 * vdpbf16ps multiplies pairs of bf16 and adds both products to one f32
 * lane: the pairs here are two input channels (c = 2p, 2p + 1) of the same
 * tap. The input rows a task needs are copied once, rounded to bf16
 * (vcvtneps2bf16: round to nearest even, f32 denormals read as zero) and
 * zero-padded, as [p][row][column] 32-bit pairs {x[2p], x[2p+1]}; the
 * weights are packed per block of nv*16 output channels as
 * [p][ky][kx][channel][2] (zero past the last channel and for the missing
 * odd channel). The register tile is M output pixels of one row x NV vectors
 * of 16 output channels: every (p, ky, kx) loads NV weight vectors and
 * broadcasts M input pairs, so one instruction does 32 multiply-adds where
 * an f32 FMA does 16. Each product carries x's bf16 rounding (relative
 * 2^-9) besides the weight's; sums are f32, in (p, ky, kx) order. Then the
 * bias, the ReLU and the fused 2x2 max pool as the f32 direct kernel, and a
 * transposing store into NCHW. Tasks are (image, chunk of rows): a result
 * does not depend on the thread count. */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"
#include "backend/parallel.h"
#include "backend/threadpool.h"

#include <string.h>

/* Scratch slots (the f32 direct kernel's numbering; the two never nest):
 * padded input rows and the pool's row pair per task, packed weights on the
 * calling thread. */
enum { HB_SLOT_PAD = 1, HB_SLOT_ROWS = 2, HB_SLOT_PACK = 3 };

#define HB_VL 16   /* f32 lanes (output channels) per vector */
#define HB_MR 14   /* pixels per tile */
#define HB_NVMAX 4 /* channel vectors per tile */
#define HB_FITS(M, NV) ((M) * (NV) + (NV) + 1 <= 32 && (NV) <= HB_NVMAX)

static inline int64_t hb_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t hb_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t hb_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

NN_INLINE __mmask16 hb_mask(int64_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1u);
}

NN_INLINE __m512i hb_bf16_lanes(__m512 v) { /* 16 f32 -> 16 bf16 in the low half of 32-bit lanes */
    const __m256bh h = _mm512_cvtneps_pbh(v);
    __m256i r;
    memcpy(&r, &h, sizeof r);
    return _mm512_cvtepu16_epi32(r);
}

NN_INLINE __m512bh hb_as_bh(__m512i v) {
    __m512bh r;
    memcpy(&r, &v, sizeof r);
    return r;
}

/* dst[p][r][x] for r in [0, rows), x in [0, wp): the bf16 pairs of channels
 * 2p, 2p+1 of input rows [r0, r0 + rows) of one image src [c][ih][iw] padded
 * by pt on top and pl on the left (zeros outside, and for channel c when c
 * is odd). */
static void hb_pad_rows(const float *src, int64_t c, int64_t ih, int64_t iw, int64_t pt,
                        int64_t pl, int64_t r0, int64_t rows, int64_t wp, uint32_t *dst) {
    const int64_t x0 = hb_max(0, pl), x1 = hb_min(wp, iw + pl), np = hb_cdiv(c, 2);
    for (int64_t p = 0; p < np; p++)
        for (int64_t r = 0; r < rows; r++) {
            uint32_t *d = dst + (p * rows + r) * wp;
            const int64_t sy = r0 + r - pt;
            if (sy < 0 || sy >= ih || x1 <= x0) {
                memset(d, 0, (size_t)wp * sizeof(uint32_t));
                continue;
            }
            const float *s0 = src + (2 * p * ih + sy) * iw; /* column x of d is s[x - pl] */
            const float *s1 = 2 * p + 1 < c ? s0 + ih * iw : NULL;
            for (int64_t x = 0; x < x0; x++) d[x] = 0;
            for (int64_t x = x0; x < x1; x += 16) {
                const __mmask16 m = hb_mask(x1 - x);
                const __m512i lo = hb_bf16_lanes(_mm512_maskz_loadu_ps(m, s0 + (x - pl)));
                __m512i v = lo;
                if (s1) {
                    const __m512i hi = hb_bf16_lanes(_mm512_maskz_loadu_ps(m, s1 + (x - pl)));
                    v = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
                }
                _mm512_mask_storeu_epi32(d + x, m, v);
            }
            for (int64_t x = x1; x < wp; x++) d[x] = 0;
        }
}

/* Pack w [o][c][kh][kw] (bf16 bits) per block of nv*16 channels as
 * [p][ky][kx][lane][2] at wpk + ob * np*kh*kw*2. */
static void hb_pack(const uint16_t *w, int64_t o, int64_t c, int64_t khw, int nv, int64_t nvec,
                    uint16_t *wpk) {
    const int64_t np = hb_cdiv(c, 2), nbw = (int64_t)nv * HB_VL;
    for (int64_t ob = 0; ob < nvec * HB_VL; ob += nbw) {
        const int64_t wid = hb_min(nbw, nvec * HB_VL - ob);
        uint16_t *dst = wpk + ob * np * khw * 2;
        for (int64_t p = 0; p < np; p++)
            for (int64_t k = 0; k < khw; k++) {
                uint16_t *d = dst + (p * khw + k) * wid * 2;
                for (int64_t jj = 0; jj < wid; jj++)
                    for (int64_t h = 0; h < 2; h++) {
                        const int64_t oc = ob + jj, ci = 2 * p + h;
                        d[jj * 2 + h] = oc < o && ci < c ? w[(oc * c + ci) * khw + k] : 0;
                    }
            }
    }
}

/* Geometry of a tile over the padded pairs. */
typedef struct hb_geo {
    int64_t np, kh, kw; /* taps: np channel pairs x kh x kw */
    int64_t ps;         /* stride between pairs (rows * wp) */
    int64_t tys, txs;   /* steps between taps ky (dh * wp) and kx (dw) */
} hb_geo;

/* out[i * ldo + j] (i < M, j < NV*16) = bias + sum over taps of
 * x0[tap + i] . wp[tap][j], then the ReLU (NaN stays). */
NN_INLINE void hb_tile(const int M, const int NV, const hb_geo *q, const uint32_t *x0,
                       const uint16_t *restrict wp, const float *bias, bool relu,
                       float *restrict out, int64_t ldo) {
    __m512 acc[HB_MR][HB_NVMAX];
#pragma GCC unroll 16
    for (int i = 0; i < M; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    const uint32_t *xp = x0;
    for (int64_t p = 0; p < q->np; p++, xp += q->ps) {
        const uint32_t *xr = xp;
        for (int64_t ky = 0; ky < q->kh; ky++, xr += q->tys) {
            const uint32_t *xq = xr;
            for (int64_t kx = 0; kx < q->kw; kx++, xq += q->txs, wp += NV * 2 * HB_VL) {
                __m512bh wv[HB_NVMAX];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    wv[v] = hb_as_bh(_mm512_loadu_si512((const void *)(wp + v * 2 * HB_VL)));
#pragma GCC unroll 16
                for (int i = 0; i < M; i++) {
                    const __m512bh b = hb_as_bh(_mm512_set1_epi32((int)xq[i]));
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], b, wv[v]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        const __m512 bv = bias ? _mm512_loadu_ps(bias + v * HB_VL) : _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int i = 0; i < M; i++) {
            __m512 a = _mm512_add_ps(acc[i][v], bv);
            if (relu) /* max(a, 0), NaN stays */
                a = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NLE_UQ),
                                        a);
            _mm512_storeu_ps(out + i * ldo + v * HB_VL, a);
        }
    }
}

#define HB_NV(M)                                                                                   \
    case M:                                                                                        \
        switch (nv) {                                                                              \
        case 1: hb_tile(M, 1, q, x0, wp, bias, relu, out, ldo); break;                             \
        case 2:                                                                                    \
            if (HB_FITS(M, 2)) hb_tile(M, 2, q, x0, wp, bias, relu, out, ldo);                     \
            break;                                                                                 \
        case 3:                                                                                    \
            if (HB_FITS(M, 3)) hb_tile(M, 3, q, x0, wp, bias, relu, out, ldo);                     \
            break;                                                                                 \
        default:                                                                                   \
            if (HB_FITS(M, 4)) hb_tile(M, 4, q, x0, wp, bias, relu, out, ldo);                     \
            break;                                                                                 \
        }                                                                                          \
        break;

static void hb_call(int m, int nv, const hb_geo *q, const uint32_t *x0, const uint16_t *wp,
                    const float *bias, bool relu, float *out, int64_t ldo) {
    switch (m) {
        HB_NV(1)
        HB_NV(2)
        HB_NV(3)
        HB_NV(4)
        HB_NV(5)
        HB_NV(6)
        HB_NV(7)
        HB_NV(8)
        HB_NV(9)
        HB_NV(10)
        HB_NV(11)
        HB_NV(12)
        HB_NV(13)
        HB_NV(14)
    default: break;
    }
}

typedef struct hb_job {
    const nn__conv2d *d;
    const float *x, *bias; /* bias padded to nvec*16, or NULL */
    const uint16_t *wpk;
    float *y;
    bool relu, pool, failed;
    int64_t np, wp, nvec, rchunks;
    int mt, nv;
} hb_job;

/* A v > m or NaN v replaces m (the max-pool kernel's rule). */
NN_INLINE __m512 hb_max_nan(__m512 m, __m512 v) {
    const __mmask16 take =
        _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(m, take, v);
}

/* dst[j * ostride + i] = src[i * lds + j] for i < npx, j < noc. */
static void hb_store_t(const float *src, int64_t lds, int64_t npx, int64_t noc, float *dst,
                       int64_t ostride) {
    for (int64_t j = 0; j < noc; j++)
        for (int64_t i = 0; i < npx; i++) dst[j * ostride + i] = src[i * lds + j];
}

/* Output rows [oy0, oy1) (pooled rows when pooling) of image n. */
static bool hb_rows(hb_job *j, int64_t n, int64_t oy0, int64_t oy1) {
    const nn__conv2d *d = j->d;
    const nn__win2d *g = &d->g;
    const int64_t krows = (g->kh - 1) * g->dh + 1;
    const int64_t cr0 = j->pool ? 2 * oy0 : oy0, cr1 = j->pool ? 2 * oy1 : oy1;
    const int64_t r0 = cr0 * g->sh, rows = (cr1 - 1) * g->sh + krows - r0;
    uint32_t *xv = nn__thread_scratch(HB_SLOT_PAD, (size_t)(j->np * rows * j->wp) * 4 + 64);
    if (!xv) return false;
    hb_pad_rows(j->x + n * d->c * d->h * d->w, d->c, d->h, d->w, g->ph, g->pw, r0, rows, j->wp,
                xv);
    const int64_t nbw = (int64_t)j->nv * HB_VL, kt2 = j->np * g->kh * g->kw * 2;
    float *rb = NULL;
    if (j->pool) {
        rb = nn__thread_scratch(HB_SLOT_ROWS, (size_t)(2 * g->ow * nbw) * sizeof(float));
        if (!rb) return false;
    }
    _Alignas(64) float tb[HB_MR * HB_NVMAX * HB_VL];
    const hb_geo q = {j->np, g->kh, g->kw, rows * j->wp, g->dh * j->wp, g->dw};
    const int64_t py = g->oh / 2, px = g->ow / 2;
    for (int64_t ob = 0; ob < d->o; ob += nbw) {
        const int nv = (int)hb_min(j->nv, j->nvec - ob / HB_VL);
        const int64_t noc = hb_min(nbw, d->o - ob);
        const uint16_t *wp = j->wpk + ob * kt2;
        const float *bias = j->bias ? j->bias + ob : NULL;
        for (int64_t oy = oy0; oy < oy1; oy++) {
            for (int64_t r = 0; r < (j->pool ? 2 : 1); r++) {
                const int64_t cy = j->pool ? 2 * oy + r : oy;
                const uint32_t *xrow = xv + (cy * g->sh - r0) * j->wp;
                int64_t ox0 = 0;
                for (int t = 0; t < j->mt; t++) {
                    const int m = (int)(g->ow / j->mt + (t < g->ow % j->mt));
                    if (j->pool) {
                        hb_call(m, nv, &q, xrow + ox0, wp, bias, j->relu,
                                rb + (r * g->ow + ox0) * nbw, nbw);
                    } else {
                        hb_call(m, nv, &q, xrow + ox0, wp, bias, j->relu, tb, nv * HB_VL);
                        hb_store_t(tb, nv * HB_VL, m, noc,
                                   j->y + ((n * d->o + ob) * g->oh + oy) * g->ow + ox0,
                                   g->oh * g->ow);
                    }
                    ox0 += m;
                }
            }
            if (j->pool) { /* max over 2x2 in channel vectors, in place into row 0 */
                for (int64_t p = 0; p < px; p++)
                    for (int v = 0; v < nv; v++) {
                        const float *a = rb + 2 * p * nbw + v * HB_VL, *b = a + g->ow * nbw;
                        __m512 mx = _mm512_loadu_ps(a);
                        mx = hb_max_nan(mx, _mm512_loadu_ps(a + nbw));
                        mx = hb_max_nan(mx, _mm512_loadu_ps(b));
                        mx = hb_max_nan(mx, _mm512_loadu_ps(b + nbw));
                        _mm512_storeu_ps(rb + p * nbw + v * HB_VL, mx);
                    }
                hb_store_t(rb, nbw, px, noc, j->y + ((n * d->o + ob) * py + oy) * px, py * px);
            }
        }
    }
    return true;
}

static void hb_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    hb_job *j = ctx;
    const int64_t n = t / j->rchunks, c = t % j->rchunks;
    const int64_t rows = j->pool ? j->d->g.oh / 2 : j->d->g.oh;
    const int64_t per = hb_cdiv(rows, j->rchunks);
    const int64_t lo = c * per, hi = hb_min(rows, lo + per);
    if (lo < hi && !hb_rows(j, n, lo, hi)) __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
}

unsigned nn__avx512bf16_conv_passes(bool bf16, const nn__conv2d *d) {
    if (!bf16) return nn__avx512_half_conv_passes(bf16, d); /* f16: no vdpbf16ps */
    if (d->g.sw != 1) return 0;
    return NN_CONV_FWD | NN_CONV_FWD_POOL;
}

bool nn__avx512bf16_conv_fwd(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                             const float *bias, bool relu, bool pool, float *y) {
    const nn__win2d *g = &d->g;
    if (!bf16) return nn__avx512_half_conv_fwd(bf16, d, x, w, bias, relu, pool, y);
    if (!nn__avx512bf16_conv_passes(bf16, d) || (pool && (g->oh < 2 || g->ow < 2))) return false;
    /* One input channel: every vdpbf16ps pair would multiply a zero channel;
     * the f32 few-channel pooled kernel, converting the weights while
     * packing, is faster (the CNN's conv1, 1 -> 32, 28x28, batch 1, thread
     * CPU time). The 3x3 layers with many channels stay here: q6's f32
     * Winograd converting bf16 weights measured slower on the CNN's conv2
     * (model b1 0.81-0.84x of f32 here, 0.92-0.99x there). */
    if (pool && d->c == 1) return nn__avx512_half_conv_fwd(true, d, x, w, bias, relu, pool, y);
    if (d->n == 0 || d->o == 0 || d->c == 0) return false; /* the f32 path's business */
    hb_job j = {.d = d, .x = x, .y = y, .relu = relu, .pool = pool};
    j.np = hb_cdiv(d->c, 2);
    j.wp = (g->ow - 1) + (g->kw - 1) * g->dw + 1;
    j.nvec = hb_cdiv(d->o, HB_VL);
    /* tiles along a row: mt of at most MR pixels; channel blocks of nv vectors */
    j.mt = (int)hb_cdiv(g->ow, HB_MR);
    const int m = (int)hb_cdiv(g->ow, j.mt);
    int cap = 1;
    while (cap < HB_NVMAX && HB_FITS(m, cap + 1)) cap++;
    j.nv = (int)hb_cdiv(j.nvec, hb_cdiv(j.nvec, cap));
    const int64_t khw = g->kh * g->kw, wel = j.nvec * HB_VL * j.np * khw * 2;
    uint16_t *pk = nn__thread_scratch(HB_SLOT_PACK, (size_t)wel * 2 + (size_t)j.nvec * HB_VL * 4 + 64);
    if (!pk) return false;
    hb_pack(w, d->o, d->c, khw, j.nv, j.nvec, pk);
    j.wpk = pk;
    if (bias) {
        float *bp = (float *)(void *)(pk + wel); /* wel is a multiple of 32: aligned */
        for (int64_t o = 0; o < j.nvec * HB_VL; o++) bp[o] = o < d->o ? bias[o] : 0.0f;
        j.bias = bp;
    }
    const int64_t rows = pool ? g->oh / 2 : g->oh;
    const double work = (double)(d->c * khw * d->o * g->oh * g->ow);
    j.rchunks = d->n >= 8 ? 1 : hb_max(1, hb_min(rows, (int64_t)(work / (double)(1 << 20))));
    const int64_t tasks = d->n * j.rchunks;
    if (tasks == 1)
        hb_task(&j, 0, 0);
    else
        nn__parallel_for_max(tasks, nn__threads_for((int64_t)work * d->n, 1 << 18), hb_task, &j);
    return !j.failed;
}
