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
 * does not depend on the thread count.
 *
 * Pooled 3x3 convolutions (unit stride and dilation, >= 8 input channels)
 * run Winograd F(2x2, 3x3) instead, its 16 products on vdpbf16ps (hw_*,
 * below). */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx512/pack.h" /* pack16_transpose */
#include "backend/x86/avx512/conv_vec.h" /* cd_relu, cd_max_nan, cd_deint */
#include "backend/x86/winograd.h"      /* wg_weight, wg_input, wg_pool_out */
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
            if (relu) a = cd_relu(a);
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
                        mx = cd_max_nan(mx, _mm512_loadu_ps(a + nbw));
                        mx = cd_max_nan(mx, _mm512_loadu_ps(b));
                        mx = cd_max_nan(mx, _mm512_loadu_ps(b + nbw));
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

/* ------------------------------- forward + 2x2 pool, Winograd F(2x2, 3x3) */

/* The f32 Winograd of x86/conv_direct.h (wg_*: one F(2x2, 3x3) tile per
 * pool window, Y = Aᵀ [sum over c of U ⊙ V] A with U = G g Gᵀ, V = Bᵀ d B)
 * with its 16 products on vdpbf16ps: U and V are computed in f32 and
 * rounded to bf16 (round to nearest even), as [p][channel pair][...] pairs
 * of channels 2q, 2q + 1, and each product M[p] = V[p]ᵀ U[p] is hb_tile on
 * a 1x1 window (tiles as pixels, channel pairs as taps), summing in f32.
 * Half the product instructions of the f32 Winograd, and 16 multiplies per
 * 4 outputs instead of the direct kernel's 36. Each product carries the
 * rounding of U and of V (relative 2^-9 each, of values that sum up to 4
 * inputs or 9 weights with the transforms' constants 0, ±1/2, ±1). U is
 * transformed once per call on the calling thread; tasks are images, or
 * chunks of tile rows (fewer images than threads): no output's sums depend
 * on the split. */
#define HW_CMIN 8

typedef struct hw_job {
    const nn__conv2d *d;
    const float *x, *bias; /* bias padded to nvec*16, or NULL */
    const uint16_t *u;     /* [16][blocks of nv vectors: [np][wid][2]] */
    float *y;
    bool relu, failed;
    int64_t np, nvec, py, px, wpf, rchunks;
    int m, nv; /* product tile: at most m tiles x nv channel vectors */
} hw_job;

static bool hw_takes(const nn__conv2d *d) {
    const nn__win2d *g = &d->g;
    return d->c >= HW_CMIN && 2 * d->o >= HB_VL && g->kh == 3 && g->kw == 3 && g->sh == 1 &&
           g->sw == 1 && g->dh == 1 && g->dw == 1 && g->oh >= 2 && g->ow >= 2;
}

/* 16 pairs {bf16(lo[l]), bf16(hi[l])} as 32-bit lanes: one vcvtne2ps2bf16
 * (lo's 16 halves, then hi's) and one vpermw to interleave them. */
NN_INLINE __m512i hw_pair(__m512 lo, __m512 hi) {
    const __m512i il = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                        8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512bh h = _mm512_cvtne2ps_pbh(hi, lo);
    __m512i r;
    memcpy(&r, &h, sizeof r);
    return _mm512_permutexvar_epi16(il, r);
}

/* U of w [o][c][3][3] (bf16 bits) into u, 16 output channels at a time:
 * their rows widened (a 16-bit shift) and transposed 16x16 into wt
 * [c][tap][lane] (scratch of 16 * c * 9 floats), then U per channel pair. */
static void hw_transform_weights(const hw_job *j, const uint16_t *w, float *wt, uint16_t *u) {
    const nn__conv2d *d = j->d;
    const int64_t cin = d->c, kt = cin * 9, np = j->np, ldo = j->nvec * HB_VL;
    const int64_t nbw = (int64_t)j->nv * HB_VL, per_p = ldo * np * 2;
    for (int64_t o0 = 0; o0 < ldo; o0 += HB_VL) {
        const int64_t no = hb_min(HB_VL, d->o - o0);
        for (int64_t k0 = 0; k0 < kt; k0 += HB_VL) {
            const int64_t nk = hb_min(HB_VL, kt - k0);
            __m512 r[16];
            for (int l = 0; l < 16; l++) {
                const __m512i h = _mm512_cvtepu16_epi32(
                    _mm256_maskz_loadu_epi16(l < no ? hb_mask(nk) : 0, w + (o0 + l) * kt + k0));
                r[l] = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
            }
            pack16_transpose(r);
            for (int64_t i = 0; i < nk; i++) _mm512_storeu_ps(wt + (k0 + i) * HB_VL, r[i]);
        }
        const int64_t ob = o0 / nbw * nbw, wid = hb_min(nbw, ldo - ob);
        for (int64_t q = 0; q < np; q++) {
            __m512 ue[16], uo[16];
            for (int h = 0; h < 2; h++) {
                const int64_t c = 2 * q + h;
                __m512 *uu = h ? uo : ue;
                if (c >= cin) {
                    for (int p = 0; p < 16; p++) uu[p] = _mm512_setzero_ps();
                    continue;
                }
                __m512 g9[9];
                for (int k = 0; k < 9; k++) g9[k] = _mm512_loadu_ps(wt + (c * 9 + k) * HB_VL);
                wg_weight(g9, uu);
            }
            uint16_t *dst = u + ob * np * 2 + (q * wid + (o0 - ob)) * 2;
            for (int p = 0; p < 16; p++)
                _mm512_storeu_si512((void *)(dst + p * per_p), hw_pair(ue[p], uo[p]));
        }
    }
}

/* Tile rows [ty0, ty1) of image n. */
static bool hw_rows(const hw_job *j, int64_t n, int64_t ty0, int64_t ty1) {
    const nn__conv2d *d = j->d;
    const int64_t cin = d->c, np = j->np, px = j->px, nty = ty1 - ty0, T = nty * px;
    const int64_t rows = 2 * nty + 2, wpf = j->wpf, ldo = j->nvec * HB_VL;
    const int64_t cpad = 2 * np; /* an odd last channel reads a zero plane */
    float *pad = nn__thread_scratch(HB_SLOT_PAD, (size_t)(cpad * rows * wpf) * sizeof(float));
    const int64_t nmc = 16 * (int64_t)j->m * j->nv * HB_VL; /* the products of a chunk */
    uint32_t *v = nn__thread_scratch(HB_SLOT_ROWS, (size_t)(16 * np * T) * 4 +
                                                       (size_t)(nmc + T * ldo) * sizeof(float) + 64);
    if (!pad || !v) return false;
    float *mb = (float *)(void *)(v + ((16 * np * T + 15) & ~(int64_t)15)), *pb = mb + nmc;
    /* the padded rows 2 ty0 - pt .. of every channel, f32 */
    const float *src = j->x + n * cin * d->h * d->w;
    const int64_t pt = d->g.ph, pl = d->g.pw;
    const int64_t x0 = hb_max(0, pl), x1 = hb_min(wpf, d->w + pl);
    for (int64_t c = 0; c < cpad; c++)
        for (int64_t r = 0; r < rows; r++) {
            float *dr = pad + (c * rows + r) * wpf;
            const int64_t sy = 2 * ty0 + r - pt;
            if (c >= cin || sy < 0 || sy >= d->h || x1 <= x0) {
                memset(dr, 0, (size_t)wpf * sizeof(float));
                continue;
            }
            const float *sr = src + (c * d->h + sy) * d->w - pl;
            for (int64_t x = 0; x < x0; x++) dr[x] = 0.0f;
            for (int64_t x = x0; x < x1; x += 16) {
                const __mmask16 m = hb_mask(x1 - x);
                _mm512_mask_storeu_ps(dr + x, m, _mm512_maskz_loadu_ps(m, sr + x));
            }
            for (int64_t x = x1; x < wpf; x++) dr[x] = 0.0f;
        }
    /* V[p][q][t] = {V of channel 2q, of 2q + 1} in bf16 */
    for (int64_t q = 0; q < np; q++)
        for (int64_t ty = 0; ty < nty; ty++)
            for (int64_t tx0 = 0; tx0 < px; tx0 += HB_VL) {
                const int cnt = (int)hb_min(HB_VL, px - tx0);
                const bool half = 2 * cnt <= HB_VL;
                __m512 ve[16], vo[16];
                wg_input(pad + (2 * q * rows + 2 * ty) * wpf, wpf, tx0, half, ve);
                wg_input(pad + ((2 * q + 1) * rows + 2 * ty) * wpf, wpf, tx0, half, vo);
                uint32_t *dst = v + q * T + ty * px + tx0;
                const __mmask16 m = hb_mask(cnt);
#pragma GCC unroll 16
                for (int p = 0; p < 16; p++)
                    _mm512_mask_storeu_epi32(dst + p * np * T, m, hw_pair(ve[p], vo[p]));
            }
    /* Per block of channels and chunk of m tiles: the 16 products M[p] =
     * V[p]ᵀ U[p] (tiles as pixels, channel pairs as taps) into mc [16][m][nbw],
     * then Y = Aᵀ M A, Aᵀ = [1 1 1 0; 0 1 -1 -1], the max, bias and ReLU
     * into the pooled rows pb [T][ldo] (M never exists whole: it stays in L1) */
    const hb_geo geo = {np, 1, 1, T, 0, 0};
    const int64_t nbw = (int64_t)j->nv * HB_VL, mt = hb_cdiv(T, j->m);
    for (int64_t ob = 0; ob < ldo; ob += nbw) {
        const int nv = (int)hb_min(j->nv, j->nvec - ob / HB_VL);
        const uint16_t *up = j->u + ob * np * 2;
        int64_t t0 = 0;
        for (int64_t tt = 0; tt < mt; t0 += (int64_t)(T / mt + (tt < T % mt)), tt++) {
            const int m = (int)(T / mt + (tt < T % mt));
            const int64_t ps = (int64_t)m * nbw; /* between the products in mc */
            for (int p = 0; p < 16; p++)
                hb_call(m, nv, &geo, v + p * np * T + t0, up + p * ldo * np * 2, NULL, false,
                        mb + p * ps, nbw);
            for (int i = 0; i < m; i++)
                for (int vv = 0; vv < nv; vv++) {
                    const int64_t o0 = ob + vv * HB_VL;
                    _mm512_storeu_ps(pb + (t0 + i) * ldo + o0,
                                     wg_pool_out(mb + i * nbw + vv * HB_VL, ps,
                                                 j->bias ? j->bias + o0 : NULL, j->relu));
                }
        }
    }
    /* pb [T][ldo] -> y [o][T] (the tiles are the pooled pixels of rows
     * ty0 .. ty1 in order): 16x16 transposes, masked stores */
    float *yo = j->y + n * d->o * j->py * px + ty0 * px;
    const int64_t os = j->py * px;
    for (int64_t t0 = 0; t0 < T; t0 += HB_VL) {
        const int64_t nt = hb_min(HB_VL, T - t0);
        const __mmask16 tm = hb_mask(nt);
        for (int64_t o0 = 0; o0 < d->o; o0 += HB_VL) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < nt ? _mm512_loadu_ps(pb + (t0 + i) * ldo + o0) : _mm512_setzero_ps();
            pack16_transpose(r);
            const int64_t no = hb_min(HB_VL, d->o - o0);
            for (int64_t c = 0; c < no; c++) _mm512_mask_storeu_ps(yo + (o0 + c) * os + t0, tm, r[c]);
        }
    }
    return true;
}

static void hw_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    hw_job *j = ctx;
    const int64_t n = t / j->rchunks, ch = t % j->rchunks;
    const int64_t per = hb_cdiv(j->py, j->rchunks);
    const int64_t lo = ch * per, hi = hb_min(j->py, lo + per);
    if (lo < hi && !hw_rows(j, n, lo, hi)) __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
}

static bool hw_fwd_pool(const nn__conv2d *d, const float *x, const uint16_t *w, const float *bias,
                        bool relu, float *y) {
    const nn__win2d *g = &d->g;
    hw_job j = {.d = d, .x = x, .y = y, .relu = relu};
    j.np = hb_cdiv(d->c, 2);
    j.nvec = hb_cdiv(d->o, HB_VL);
    j.py = g->oh / 2, j.px = g->ow / 2;
    j.wpf = 2 * hb_cdiv(j.px, HB_VL) * HB_VL + 2;
    const double work = (double)(d->c * 9 * d->o * g->oh * g->ow);
    const int nt = nn__threads_for((int64_t)(work * (double)d->n), 1 << 18);
    j.rchunks = d->n >= nt ? 1 : hb_min(j.py, hb_cdiv(nt, d->n));
    /* product tiles: at most HB_MR tiles x as many channel vectors as fit */
    const int64_t T = hb_cdiv(j.py, j.rchunks) * j.px;
    j.m = (int)hb_cdiv(T, hb_cdiv(T, HB_MR));
    int cap = 1;
    while (cap < HB_NVMAX && HB_FITS(j.m, cap + 1)) cap++;
    j.nv = (int)hb_cdiv(j.nvec, hb_cdiv(j.nvec, cap));
    const int64_t ldo = j.nvec * HB_VL, nu = 16 * ldo * j.np * 2; /* u's halves */
    uint16_t *u = nn__thread_scratch(HB_SLOT_PACK, (size_t)nu * 2 + (size_t)ldo * 4 +
                                                       (size_t)(HB_VL * d->c * 9) * 4 + 64);
    if (!u) return false;
    float *bp = (float *)(void *)(u + nu); /* nu is a multiple of 32: aligned */
    hw_transform_weights(&j, w, bp + ldo, u);
    j.u = u;
    if (bias) {
        for (int64_t o = 0; o < ldo; o++) bp[o] = o < d->o ? bias[o] : 0.0f;
        j.bias = bp;
    }
    const int64_t tasks = d->n * j.rchunks;
    if (tasks == 1 || nt == 1)
        for (int64_t t = 0; t < tasks; t++) hw_task(&j, t, 0);
    else
        nn__parallel_for_max(tasks, nt, hw_task, &j);
    return !j.failed;
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
     * CPU time). Pooled 3x3 layers with many channels take the bf16
     * Winograd (hw_*): the CNN's conv2 at batch 1, thread CPU time, 20-21
     * us against 27 on the direct kernel below and 28-30 for f32's
     * Winograd (q6's f32 Winograd converting bf16 weights was slower than
     * the direct kernel: model b1 0.92-0.99x of f32). */
    if (pool && d->c == 1) return nn__avx512_half_conv_fwd(true, d, x, w, bias, relu, pool, y);
    if (d->n == 0 || d->o == 0 || d->c == 0) return false; /* the f32 path's business */
    if (pool && hw_takes(d)) return hw_fwd_pool(d, x, w, bias, relu, y);
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
