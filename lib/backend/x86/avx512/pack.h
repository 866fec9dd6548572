/* Packing for the AVX-512 tier's blocked GEMM, the B panels (16 floats a
 * vector): read along rows (A·Bᵀ) through 16x16 transposes in zmm
 * registers, read along columns (A·B) as masked zmm copies. Included by
 * gemm.c only; the A panels (8 wide) go through x86/avx2/pack.h. The
 * reference twin is nn__gemm_pack_ref (gemm_blocked.c). */
#ifndef NN_BACKEND_X86_AVX512_PACK_H
#define NN_BACKEND_X86_AVX512_PACK_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

/* r[j] <- column j of the 16x16 block whose rows are r[0..15]: pairs of
 * rows interleaved, then quads within 128-bit lanes, then the lanes. */
static inline __attribute__((always_inline)) void pack16_transpose(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4g + q], 128-bit lane L: element 4L + q of rows 4g .. 4g+3 */
    for (int g = 0; g < 4; g++) {
        const __m512 a = t[4 * g], b = t[4 * g + 1], c = t[4 * g + 2], d = t[4 * g + 3];
        u[4 * g + 0] = _mm512_shuffle_ps(a, c, 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(a, c, 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(b, d, 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(b, d, 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
        const __m512 v1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
        r[q] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[4 + q] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[12 + q] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

/* How far ahead (floats) each source row is prefetched: the rows of a
 * K block are short runs (a KC of ~250 floats, 16 cache lines) at a large
 * stride, too short for the hardware prefetcher to ramp up. On Zen 5
 * (128x3136 and 256x784 from L3, thread CPU time) 64 packed at 40 GB/s,
 * 32 at 39, 128 at 33, none at 37 (the 8x8 AVX2 transposes: 27-31). */
#define PACK16_AHEAD 64

/* One panel of W (a multiple of 16) rows: dst[p*W + r] = x[r*ld + p] for
 * r < rn, 0 for rn <= r < W rounded up to 16 (beyond: not written, never
 * read); p in [0, kc). */
static inline __attribute__((always_inline)) void pack16_panel(const int W, const float *x,
                                                               int64_t ld, int64_t rn, int64_t kc,
                                                               float *dst) {
    for (int r0 = 0; r0 < W && r0 < rn; r0 += 16) { /* groups past rn: not written */
        const int64_t have = rn - r0 > 16 ? 16 : rn - r0;
        for (int64_t p = 0; p < kc; p += 16) {
            const int64_t left = kc - p < 16 ? kc - p : 16;
            const __mmask16 m = (__mmask16)((1u << left) - 1u);
            __m512 v[16];
            for (int i = 0; i < 16; i++)
                if (i < have)
                    _mm_prefetch((const char *)(x + (r0 + i) * ld + p + PACK16_AHEAD),
                                 _MM_HINT_T0);
            for (int i = 0; i < 16; i++)
                v[i] = i < have ? _mm512_maskz_loadu_ps(m, x + (r0 + i) * ld + p)
                                : _mm512_setzero_ps();
            pack16_transpose(v);
            for (int j = 0; j < 16; j++)
                if (j < left) _mm512_storeu_ps(dst + (p + j) * W + r0, v[j]);
        }
    }
}

/* One panel of W (a multiple of 16, at most 128) rows stored along p
 * (A·B's B): dst[p*W + r] = x[p*ld + r] for r < rn, 0 beyond up to a
 * multiple of 16 (then not written, as pack16_panel); a masked zmm
 * copy per 16 rows. On Zen 5 (128x3136, 256x784 from L3, 288x196 from L2)
 * 46-61 GB/s against 41-47 for the AVX2 tier's ymm copy; a software
 * prefetch of later rows measured slower. */
static inline __attribute__((always_inline)) void pack16_panel_k(const int W, const float *x,
                                                                 int64_t ld, int64_t rn, int64_t kc,
                                                                 float *dst) {
    __mmask16 mk[8];
    const int nv = rn >= W ? W / 16 : (int)((rn + 15) / 16); /* groups past rn: not written */
    for (int v = 0; v < nv; v++) {
        const int64_t have = rn - 16 * v > 16 ? 16 : rn - 16 * v;
        mk[v] = (__mmask16)((1u << have) - 1u);
    }
    for (int64_t p = 0; p < kc; p++)
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(dst + p * W + 16 * v,
                             _mm512_maskz_loadu_ps(mk[v], x + p * ld + 16 * v));
}

/* All panels of `rows` rows, W at a time (gemm_blocked.h's layout); X(r, p)
 * = kmajor ? x[p*ld + r] : x[r*ld + p]. */
static inline __attribute__((always_inline)) void pack16_panels(const int W, const float *x,
                                                                int64_t ld, bool kmajor,
                                                                int64_t rows, int64_t kc,
                                                                float *dst) {
    for (int64_t q0 = 0; q0 < rows; q0 += W, dst += kc * W) {
        const int64_t rn = rows - q0 < W ? rows - q0 : W;
        if (kmajor)
            pack16_panel_k(W, x + q0, ld, rn, kc, dst);
        else
            pack16_panel(W, x + q0 * ld, ld, rn, kc, dst);
    }
}

#endif
