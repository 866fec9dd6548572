/* AVX-512 tier, half-precision domain: C = A x op(B) with f32 A and f16 / bf16
 * B (backend/half.h), B converted in registers as it is read (vcvtph2ps for
 * f16; zero-extend and shift for bf16), FMA into f32, 16 lanes, masked
 * tails. The layout of the AVX2 version (x86/avx2/half_gemm.c) with blocks
 * of 4 rows of A x 4 rows of B for trans_b and 64 columns for the other
 * case. Where AVX-512 BF16 exists, half_bf16.c replaces the bf16 trans_b
 * case with vdpbf16ps (m >= 2, and batch 1 with long rows and few of them,
 * dp_gemv: the demo CNN's fc1, 3136 -> 128, where it measured faster, CNN
 * b1 0.90 -> 0.82x of f32 with 1 x 8 blocks, fc1 9-10 -> 7.5-8 us since it
 * streams one row at a time; the GPT's decode shapes, k <= 1024, measured
 * slower there, 1.54 -> 1.24x tokens/s over f32); other batch-1
 * rows take gemv_rows below, for both dtypes, A keeping its f32 bits.
 * Threads split N: fixed sum order per output. */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"

#define HG_GRAIN (1 << 18)

NN_INLINE __mmask16 mask16(int64_t r) {
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r < 0 ? 0 : r)) - 1u);
}

/* 16 halves at p (lanes outside m read as 0) -> 16 floats. */
NN_INLINE __m512 ld16(const uint16_t *p, __mmask16 m, bool bf16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                : _mm512_cvtph_ps(h);
}

typedef struct hg_args {
    int64_t m, n, k, lda, ldb, ldc;
    const float *a;
    const uint16_t *b;
    float *c;
} hg_args;

/* MB rows of A (i..i+MB) x NB rows of B (b[0..NB)), partial sums in 16
 * lanes, reduced at the end; jb of the NB results stored. MB and NB are
 * constants in each instance: batch-1 rows take 1 x 8 (eight independent
 * FMA chains), others up to 4 x 4, with no wasted work. */
NN_INLINE void nt_block(const hg_args *g, int64_t i, int64_t j, int64_t jb, const uint16_t *const *b,
                        int MB, int NB, bool bf16) {
    const int64_t k = g->k;
    __m512 acc[4][8];
    for (int x = 0; x < 4; x++) /* all of it: unused ones cost nothing */
        for (int y = 0; y < 8; y++) acc[x][y] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p += 16) {
        const __mmask16 mk = mask16(k - p);
        __m512 w[8];
        for (int y = 0; y < NB; y++) w[y] = ld16(b[y] + p, mk, bf16);
        for (int x = 0; x < MB; x++) {
            const __m512 v = _mm512_maskz_loadu_ps(mk, g->a + (i + x) * g->lda + p);
            for (int y = 0; y < NB; y++) acc[x][y] = _mm512_fmadd_ps(v, w[y], acc[x][y]);
        }
    }
    for (int x = 0; x < MB; x++)
        for (int64_t y = 0; y < jb; y++)
            g->c[(i + x) * g->ldc + j + y] = _mm512_reduce_add_ps(acc[x][y]);
}

NN_INLINE void hg_nt(const hg_args *g, int64_t lo, int64_t hi, bool bf16) {
    const int NB = g->m == 1 ? 8 : 4;
    for (int64_t j = lo; j < hi; j += NB) {
        const int64_t jb = hi - j < NB ? hi - j : NB;
        const uint16_t *b[8];
        for (int y = 0; y < NB; y++) b[y] = g->b + (j + (y < jb ? y : 0)) * g->ldb;
        if (NB == 8) {
            nt_block(g, 0, j, jb, b, 1, 8, bf16);
            continue;
        }
        int64_t i = 0;
        for (; i + 4 <= g->m; i += 4) nt_block(g, i, j, jb, b, 4, 4, bf16);
        switch (g->m - i) {
        case 3: nt_block(g, i, j, jb, b, 3, 4, bf16); break;
        case 2: nt_block(g, i, j, jb, b, 2, 4, bf16); break;
        case 1: nt_block(g, i, j, jb, b, 1, 4, bf16); break;
        default: break;
        }
    }
}

NN_INLINE void hg_nn(const hg_args *g, int64_t lo, int64_t hi, bool bf16) {
    for (int64_t i = 0; i < g->m; i++) {
        const float *a = g->a + i * g->lda;
        float *c = g->c + i * g->ldc;
        int64_t j = lo;
        for (; j + 64 <= hi; j += 64) {
            __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            const uint16_t *b = g->b + j;
            for (int64_t p = 0; p < g->k; p++, b += g->ldb) {
                const __m512 x = _mm512_set1_ps(a[p]);
                c0 = _mm512_fmadd_ps(x, ld16(b, 0xFFFF, bf16), c0);
                c1 = _mm512_fmadd_ps(x, ld16(b + 16, 0xFFFF, bf16), c1);
                c2 = _mm512_fmadd_ps(x, ld16(b + 32, 0xFFFF, bf16), c2);
                c3 = _mm512_fmadd_ps(x, ld16(b + 48, 0xFFFF, bf16), c3);
            }
            _mm512_storeu_ps(c + j, c0), _mm512_storeu_ps(c + j + 16, c1);
            _mm512_storeu_ps(c + j + 32, c2), _mm512_storeu_ps(c + j + 48, c3);
        }
        for (; j < hi; j += 16) {
            const __mmask16 mj = mask16(hi - j);
            __m512 c0 = _mm512_setzero_ps();
            const uint16_t *b = g->b + j;
            for (int64_t p = 0; p < g->k; p++, b += g->ldb)
                c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[p]), ld16(b, mj, bf16), c0);
            _mm512_mask_storeu_ps(c + j, mj, c0);
        }
    }
}

/* Batch 1 (m == 1, trans_b): c[j] = a . B[j, :] for j in [lo, hi), the
 * decode step's matrix-vector product, bound by the bytes of B it streams.
 * Eight rows of B at a time, 32 halves of each per step (one 64-byte line:
 * two 16-lane conversions and FMAs into two accumulators, sixteen
 * independent chains), unmasked but for the last partial step; while it
 * reads a block it prefetches the same lines of the next block's rows, so
 * a block's loads find them in cache (the rows are K x 2 bytes apart: the
 * hardware's stream prefetch alone leaves the core waiting). */
NN_INLINE void gemv_rows(const float *a, int64_t k, const uint16_t *const *b,
                         const uint16_t *const *nx, float *c, int64_t jb, bool bf16) {
    __m512 s0[8], s1[8];
#pragma GCC unroll 8
    for (int y = 0; y < 8; y++) s0[y] = s1[y] = _mm512_setzero_ps();
    const int64_t k32 = k & ~(int64_t)31;
    /* bf16: a 32-bit lane of B holds two weights, the even element in its
     * low half: shifted up 16 bits it is that weight as f32, masked to its
     * high half the odd one; so A is split into even and odd elements once
     * per step (shared by the eight rows) instead of widening B. */
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0),
                  od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1),
                  hi16 = _mm512_set1_epi32((int)0xFFFF0000u);
    int64_t p = 0;
    for (; p < k32; p += 32) {
        __m512 x0 = _mm512_loadu_ps(a + p), x1 = _mm512_loadu_ps(a + p + 16);
        if (bf16) {
            const __m512 e = _mm512_permutex2var_ps(x0, ev, x1);
            x1 = _mm512_permutex2var_ps(x0, od, x1);
            x0 = e;
        }
#pragma GCC unroll 8
        for (int y = 0; y < 8; y++) {
            _mm_prefetch((const char *)(nx[y] + p), _MM_HINT_T0);
            const __m512i h = _mm512_loadu_si512((const void *)(b[y] + p));
            __m512 w0, w1;
            if (bf16) {
                w0 = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
                w1 = _mm512_castsi512_ps(_mm512_and_si512(h, hi16));
            } else {
                w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
                w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
            }
            s0[y] = _mm512_fmadd_ps(x0, w0, s0[y]);
            s1[y] = _mm512_fmadd_ps(x1, w1, s1[y]);
        }
    }
    for (; p < k; p += 16) {
        const __mmask16 mk = mask16(k - p);
        const __m512 x0 = _mm512_maskz_loadu_ps(mk, a + p);
#pragma GCC unroll 8
        for (int y = 0; y < 8; y++) s0[y] = _mm512_fmadd_ps(x0, ld16(b[y] + p, mk, bf16), s0[y]);
    }
    for (int64_t y = 0; y < jb; y++) c[y] = _mm512_reduce_add_ps(_mm512_add_ps(s0[y], s1[y]));
}

NN_INLINE void hg_gemv(const hg_args *g, int64_t lo, int64_t hi, bool bf16) {
    const int64_t ldb = g->ldb;
    for (int64_t j = lo; j < hi; j += 8) {
        const int64_t jb = hi - j < 8 ? hi - j : 8;
        const uint16_t *b[8], *nx[8];
        for (int y = 0; y < 8; y++) {
            b[y] = g->b + (j + (y < jb ? y : 0)) * ldb;
            const int64_t r = j + 8 + y; /* the next block's row (this one's at the end) */
            nx[y] = g->b + (r < hi ? r : j + (y < jb ? y : 0)) * ldb;
        }
        gemv_rows(g->a, g->k, b, nx, g->c + j, jb, bf16);
    }
}

static void gv_f16(void *ctx, int64_t lo, int64_t hi) { hg_gemv(ctx, lo, hi, false); }
static void gv_bf16(void *ctx, int64_t lo, int64_t hi) { hg_gemv(ctx, lo, hi, true); }
static void nt_f16(void *ctx, int64_t lo, int64_t hi) { hg_nt(ctx, lo, hi, false); }
static void nt_bf16(void *ctx, int64_t lo, int64_t hi) { hg_nt(ctx, lo, hi, true); }
static void nn_f16(void *ctx, int64_t lo, int64_t hi) { hg_nn(ctx, lo, hi, false); }
static void nn_bf16(void *ctx, int64_t lo, int64_t hi) { hg_nn(ctx, lo, hi, true); }

/* The bf16 trans_b kernel of the AVX-512 BF16 build (NULL: the FMA one). */
static nn__avx512_hg_nt_fn g_dp;

static void nt_bf16_dp(void *ctx, int64_t lo, int64_t hi) {
    const hg_args *g = ctx;
    g_dp(g->m, g->k, g->a, g->lda, g->b, g->ldb, g->c, g->ldc, lo, hi);
}

static void half_gemm(bool bf16, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
                      int64_t lda, const uint16_t *b, int64_t ldb, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    hg_args g = {m, n, k, lda, ldb, ldc, a, b, c};
    const int nt = nn__threads_for(m * n * (k ? k : 1), HG_GRAIN);
    const bool dp_gemv = k >= 2048 && n <= 512; /* measured: see the top */
    nn__range_fn body = trans_b ? bf16 && g_dp && (m > 1 || dp_gemv) ? nt_bf16_dp
                                  : m == 1                           ? (bf16 ? gv_bf16 : gv_f16)
                                                                     : (bf16 ? nt_bf16 : nt_f16)
                                : (bf16 ? nn_bf16 : nn_f16);
    nn__parallel_range(n, nt, 8, body, &g);
}

static bool rounds_a(void) { return g_dp != NULL; }

void nn__avx512_fill_half_gemm(nn__half_kernels *t, nn__avx512_hg_nt_fn dp) {
    /* The kernel is fixed once, when backend.c fills the AVX-512 tier. */
    g_dp = dp;
    t->gemm = half_gemm;
    t->gemm_rounds_a = rounds_a;
}
