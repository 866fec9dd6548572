/* AVX-512 tier: 2x2 / stride 2 max pooling (the demo CNN's) with 16 outputs
 * per vector: the even and odd input columns are separated with a two-source
 * permute, and the reference's scan (row 0 left, right, row 1 left, right;
 * a tap wins when larger or NaN, so the last NaN wins) runs as masked blends
 * of the values and of the tap numbers. Other windows, and the backward pass,
 * stay the AVX2 tier's. */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"

/* The AVX2 tier's kernel, for the windows this file does not cover. */
static void (*g_general)(const float *x, int64_t planes, int64_t h, int64_t w, const nn__win2d *g,
                         float *y, int64_t *idx);

/* Lanes [0, r) set, r in 0..16. */
NN_INLINE __mmask16 tail_mask(int64_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r < 0 ? 0 : r)) - 1u);
}

/* One step of the scan: take v where v > best or v is NaN. */
NN_INLINE void take(__m512 v, int tap, __m512 *best, __m512i *at) {
    const __mmask16 t =
        _mm512_cmp_ps_mask(v, *best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    *best = _mm512_mask_mov_ps(*best, t, v);
    *at = _mm512_mask_mov_epi32(*at, t, _mm512_set1_epi32(tap));
}

/* Outputs [ox0, ox0 + cnt) (cnt <= 16) of output row oy of one plane. */
NN_INLINE void pool16(const float *xp, int64_t w, int64_t oy, int64_t ox0, int64_t cnt, float *yr,
                      int64_t *ir) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const float *r0 = xp + 2 * oy * w + 2 * ox0, *r1 = r0 + w;
    const __mmask16 lo = tail_mask(2 * cnt), hi = tail_mask(2 * cnt - 16);
    const __m512 a0 = _mm512_maskz_loadu_ps(lo, r0), a1 = _mm512_maskz_loadu_ps(hi, r0 + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(lo, r1), b1 = _mm512_maskz_loadu_ps(hi, r1 + 16);
    __m512 best = _mm512_permutex2var_ps(a0, even, a1);
    __m512i at = _mm512_setzero_si512();
    take(_mm512_permutex2var_ps(a0, odd, a1), 1, &best, &at);
    take(_mm512_permutex2var_ps(b0, even, b1), 2, &best, &at);
    take(_mm512_permutex2var_ps(b0, odd, b1), 3, &best, &at);
    const __mmask16 m = tail_mask(cnt);
    _mm512_mask_storeu_ps(yr + ox0, m, best);
    if (!ir) return;
    /* flat index (2 oy + at / 2) * w + 2 (ox0 + lane) + at % 2, in int64 */
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i base = _mm512_set1_epi32((int)(2 * oy * w + 2 * ox0));
    __m512i flat = _mm512_add_epi32(base, _mm512_add_epi32(lane, lane));
    flat = _mm512_add_epi32(flat, _mm512_and_si512(at, _mm512_set1_epi32(1)));
    flat = _mm512_add_epi32(
        flat, _mm512_mullo_epi32(_mm512_srli_epi32(at, 1), _mm512_set1_epi32((int)w)));
    _mm512_mask_storeu_epi64(ir + ox0, (__mmask8)m,
                             _mm512_cvtepi32_epi64(_mm512_castsi512_si256(flat)));
    _mm512_mask_storeu_epi64(ir + ox0 + 8, (__mmask8)(m >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(flat, 1)));
}

typedef struct pool_args {
    const float *x;
    float *y;
    int64_t *idx;
    int64_t h, w, oh, ow;
} pool_args;

static void pool2x2_planes(void *ctx, int64_t lo, int64_t hi) {
    const pool_args *q = ctx;
    const int64_t ohw = q->oh * q->ow;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = q->x + p * q->h * q->w;
        for (int64_t oy = 0; oy < q->oh; oy++) {
            float *yr = q->y + p * ohw + oy * q->ow;
            int64_t *ir = q->idx ? q->idx + p * ohw + oy * q->ow : NULL;
            for (int64_t ox = 0; ox < q->ow; ox += 16)
                pool16(xp, q->w, oy, ox, q->ow - ox < 16 ? q->ow - ox : 16, yr, ir);
        }
    }
}

static void avx512_maxpool2d(const float *x, int64_t planes, int64_t h, int64_t w,
                             const nn__win2d *g, float *y, int64_t *idx) {
    /* flat indices are computed in int32: planes of fewer than 2^31 pixels */
    const bool fast2 = g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 &&
                       g->pw == 0 && g->dh == 1 && g->dw == 1 && 2 * g->oh <= h && 2 * g->ow <= w &&
                       h * w < ((int64_t)1 << 31);
    if (!fast2) {
        g_general(x, planes, h, w, g, y, idx);
        return;
    }
    pool_args q = {x, y, idx, h, w, g->oh, g->ow};
    int nt = nn__threads_for(planes * g->oh * g->ow * 4, EW_GRAIN);
    nn__parallel_range(planes, nt, 1, pool2x2_planes, &q);
}

void nn__avx512_fill_pool(nn__pool_kernels *t) {
    g_general = t->maxpool2d; /* the AVX2 tier's, filled before */
    t->maxpool2d = avx512_maxpool2d;
}
