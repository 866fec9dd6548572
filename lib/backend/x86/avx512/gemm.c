/* AVX-512 tier: GEMM. The register tile is MRP x (16*NVP): MRP*NVP zmm
 * accumulators, NVP B vectors and one broadcast A value within the 32 zmm
 * registers; the tile is one #define here (NN_AVX512_MR, NN_AVX512_NV). Dispatch between the
 * small-matrix path (gemm_small.c), the blocked GEMM and BLIS as in the AVX2
 * tier. */
#include "backend/x86/avx512/avx512.h"
#include "backend/x86/avx2/simd.h"
#include "backend/x86/avx2/pack.h"
#include "backend/x86/avx512/pack.h"

#include <stdio.h>

/* 8x48: 24 accumulators, 3 B vectors and a broadcast. Measured on Zen 5
 * (thread CPU time, 3 interleaved rounds, the models' shapes and 1024^3):
 * 8x48, 6x64, 12x32 and 10x48 all within noise of each other at 78-90% of
 * the FMA peak, 8x48 slightly ahead; 14x32 behind (M = 64 wastes 6 of 70
 * rows). 8 divides the models' M (32, 64, 128, 256, 288). */
#ifndef NN_AVX512_MR
#define NN_AVX512_MR 8
#endif
#ifndef NN_AVX512_NV
#define NN_AVX512_NV 3
#endif
#define MRP NN_AVX512_MR
#define NVP NN_AVX512_NV
#define NRP (16 * NVP)

/* Store the 8 x 16 block in rows[0..7] (row r, column j) transposed: its
 * column j (j < cols) as the `mr` floats at c + j*ldc. Unpacks and shuffles
 * within 128-bit lanes give each lane of u[q] rows 0-3 (q < 4) or 4-7 (q >=
 * 4) of column 4*lane + q % 4; one two-source permute per half joins rows
 * 0-3 and 4-7 of two columns. */
NN_INLINE void store_t8x16(const __m512 rows[8], int mr, int cols, float *c, int64_t ldc) {
    __m512 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) { /* rows 0-3, rows 4-7 */
        u[4 * h + 0] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        u[4 * h + 1] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
        u[4 * h + 2] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        u[4 * h + 3] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    /* lanes 0, 1 of both halves; lanes 2, 3 */
    const __m512i lo = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
    const __m512i hi =
        _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
    const __mmask8 rm = (__mmask8)((1u << mr) - 1u);
    for (int q = 0; q < 4; q++) {
        const __m512 w0 = _mm512_permutex2var_ps(u[q], lo, u[q + 4]); /* columns q, q + 4 */
        const __m512 w1 = _mm512_permutex2var_ps(u[q], hi, u[q + 4]); /* q + 8, q + 12 */
        const __m256 col[4] = {
            _mm512_castps512_ps256(w0),
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(w0), 1)),
            _mm512_castps512_ps256(w1),
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(w1), 1))};
        for (int i = 0; i < 4; i++)
            if (q + 4 * i < cols) _mm256_mask_storeu_ps(c + (q + 4 * i) * ldc, rm, col[i]);
    }
}

/* C[MR x nr] (nr <= 16*NV) = alpha Ap Bp + beta C; MR <= MRP, NV <= NVP.
 * The tile of C is prefetched before the K loop: on Zen 5 that took 1024^3
 * (C 4 MB, revisited once per K block) from 178-180 to 193-195 GFLOP/s
 * (thread CPU time, interleaved); the models' shapes, whose C stays in
 * cache, unchanged. A prefetch past the matrix's end never faults. */
NN_INLINE void ukr_s(const int MR, const int NV, int64_t kc, const float *restrict ap,
                     const int64_t ars, const int64_t acs, const float *restrict bp, float *c,
                     int64_t ldc, int nr, const volatile float *ab, const int CT,
                     const float *tin, int64_t ldt) {
    __m512 acc[MRP][NVP];
    if (!CT) {
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                _mm_prefetch((const char *)(c + r * ldc + 16 * v), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + r * ldc + 16 * NV - 1), _MM_HINT_T0);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m512 bv[NVP];
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(bp + p * NRP + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(ap[p * acs + r * ars]);
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const float alpha = ab[0], beta = ab[1];
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int last = nr - 16 * (NV - 1); /* 1..16 columns in the last vector */
    const __mmask16 lm = (__mmask16)((1u << last) - 1u);
    /* CT: the tile from the accumulators and tin, stored transposed. Its
     * own copy of the epilogue below: one loop shared by both made gcc give
     * the untransposed kernels another register plan, 1-3% slower. */
    if (CT) {
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++) {
                const __mmask16 m = v < NV - 1 ? (__mmask16)0xFFFF : lm;
                __m512 o = _mm512_mul_ps(va, acc[r][v]);
                if (beta != 0.0f)
                    o = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, tin + r * ldt + 16 * v), o);
                acc[r][v] = o;
            }
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            __m512 rows[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) rows[r] = r < MR ? acc[r][v] : _mm512_setzero_ps();
            store_t8x16(rows, MR, v < NV - 1 ? 16 : last, c + 16 * v * ldc, ldc);
        }
        return;
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            const __mmask16 m = v < NV - 1 ? (__mmask16)0xFFFF : lm;
            __m512 o = _mm512_mul_ps(va, acc[r][v]);
            if (beta != 0.0f) o = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, cr + 16 * v), o);
            _mm512_mask_storeu_ps(cr + 16 * v, m, o);
        }
    }
}

/* A packed (element (r, p) at ap[p*MRP + r]) or read in place from rows of
 * op(A) (at ap[r*lda + p]). */
#define ukr(MR, NV, kc, ap, bp, c, ldc, nr, ab)                                                    \
    ukr_s(MR, NV, kc, ap, ars, acs, bp, c, ldc, nr, ab, ct, tin, ldt)

#if NVP == 1
#define UKR_NV(R)                                                                                  \
    case R:                                                                                        \
        ukr(R, 1, kc, ap, bp, c, ldc, nr, ab);                                                     \
        break;
#elif NVP == 2
#define UKR_NV(R)                                                                                  \
    case R:                                                                                        \
        if (nv == 1)                                                                               \
            ukr(R, 1, kc, ap, bp, c, ldc, nr, ab);                                                 \
        else                                                                                       \
            ukr(R, 2, kc, ap, bp, c, ldc, nr, ab);                                                 \
        break;
#elif NVP == 3
#define UKR_NV(R)                                                                                  \
    case R:                                                                                        \
        if (nv == 1)                                                                               \
            ukr(R, 1, kc, ap, bp, c, ldc, nr, ab);                                                 \
        else if (nv == 2)                                                                          \
            ukr(R, 2, kc, ap, bp, c, ldc, nr, ab);                                                 \
        else                                                                                       \
            ukr(R, 3, kc, ap, bp, c, ldc, nr, ab);                                                 \
        break;
#else
#define UKR_NV(R)                                                                                  \
    case R:                                                                                        \
        if (nv == 1)                                                                               \
            ukr(R, 1, kc, ap, bp, c, ldc, nr, ab);                                                 \
        else if (nv == 2)                                                                          \
            ukr(R, 2, kc, ap, bp, c, ldc, nr, ab);                                                 \
        else if (nv == 3)                                                                          \
            ukr(R, 3, kc, ap, bp, c, ldc, nr, ab);                                                 \
        else                                                                                       \
            ukr(R, 4, kc, ap, bp, c, ldc, nr, ab);                                                 \
        break;
#endif

NN_INLINE void ukr_any(int64_t kc, const float *ap, const int64_t ars, const int64_t acs,
                       const float *bp, float *c, int64_t ldc, int mr, int nr, float alpha,
                       float beta, const int ct, const float *tin, int64_t ldt) {
    /* alpha and beta wait in memory: kept in registers across the K loop
     * they push accumulators out of them (gcc then stores every accumulator
     * on every iteration). */
    const volatile float ab[2] = {alpha, beta};
    if (mr == MRP && nr == NRP) {
        ukr(MRP, NVP, kc, ap, bp, c, ldc, nr, ab);
        return;
    }
    const int nv = (nr + 15) / 16;
    (void)nv;
    switch (mr) {
        UKR_NV(1)
        UKR_NV(2)
        UKR_NV(3)
        UKR_NV(4)
        UKR_NV(5)
        UKR_NV(6)
#if MRP > 6
        UKR_NV(7)
        UKR_NV(8)
#endif
#if MRP > 8
        UKR_NV(9)
        UKR_NV(10)
        UKR_NV(11)
        UKR_NV(12)
#endif
#if MRP > 12
        UKR_NV(13)
        UKR_NV(14)
#endif
    default: break;
    }
}

static void avx512_ukr(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int mr,
                       int nr, float alpha, float beta) {
    ukr_any(kc, ap, 1, MRP, bp, c, ldc, mr, nr, alpha, beta, 0, NULL, 0);
}

/* A read in place: mr rows of op(A) at a, a + lda, ... (A·B and A·Bᵀ with
 * A untransposed; gemm_blocked.h's nn__gemm_ukr_rows_fn). */
static void avx512_ukr_rows(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                            int64_t ldc, int mr, int nr, float alpha, float beta) {
    ukr_any(kc, a, lda, 1, bp, c, ldc, mr, nr, alpha, beta, 0, NULL, 0);
}

#if MRP == 8
/* A read in place from rows, the tile of Cᵀ stored transposed into C
 * (gemm_blocked.h's kernel_rows_t): the swapped x·Wᵀ without its tile of
 * Cᵀ and the transposed copy. */
static void avx512_ukr_rows_t(int64_t kc, const float *a, int64_t lda, const float *bp,
                              const float *t, int64_t ldt, float *c, int64_t ldc, int mr, int nr,
                              float alpha, float beta) {
    ukr_any(kc, a, lda, 1, bp, c, ldc, mr, nr, alpha, beta, 1, t, ldt);
}
#define UKR_ROWS_T avx512_ukr_rows_t
#else
#define UKR_ROWS_T NULL
#endif

/* A read in place from columns: mr columns of a transposed A at a, a + 1,
 * ..., its K values lda apart (Aᵀ·B; gemm_blocked.h's kernel_cols). */
static void avx512_ukr_cols(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                            int64_t ldc, int mr, int nr, float alpha, float beta) {
    ukr_any(kc, a, 1, lda, bp, c, ldc, mr, nr, alpha, beta, 0, NULL, 0);
}

/* Panels of B (NRP wide) through zmm (pack.h): read along rows (A·Bᵀ) with
 * 16x16 transposes, on Zen 5 the models' A·Bᵀ shapes went from 64x128x3136
 * 146-152 to 155-163 GFLOP/s and 64x256x784 161-167 to 167-174 (thread CPU
 * time, interleaved); read along columns (A·B) as masked copies. The A
 * panels (MRP wide) through the 8x8 AVX transposes and copies of
 * x86/avx2/pack.h. */
static void avx512_pack(const float *x, int64_t ld, bool kmajor, int64_t rows, int64_t kc, int w,
                        float *dst) {
    if (w == MRP)
        pack_panels(MRP, x, ld, kmajor, rows, kc, dst);
    else if (NRP % 16 == 0 && NRP <= 128)
        pack16_panels(NRP, x, ld, kmajor, rows, kc, dst);
    else
        pack_panels(NRP, x, ld, kmajor, rows, kc, dst);
}

/* nn__gemm_transpose_fn through 16x16 zmm transposes (pack.h), edges
 * masked; the swapped A·Bᵀ's tile of Cᵀ (gemm_blocked.c). */
static void avx512_transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst,
                             int64_t ldd) {
    for (int64_t i0 = 0; i0 < rows; i0 += 16) {
        const int64_t in = rows - i0 < 16 ? rows - i0 : 16;
        const __mmask16 mi = (__mmask16)((1u << in) - 1u);
        for (int64_t j0 = 0; j0 < cols; j0 += 16) {
            const int64_t jn = cols - j0 < 16 ? cols - j0 : 16;
            const __mmask16 mj = (__mmask16)((1u << jn) - 1u);
            __m512 v[16];
            for (int i = 0; i < 16; i++)
                v[i] = i < in ? _mm512_maskz_loadu_ps(mj, src + (i0 + i) * lds + j0)
                              : _mm512_setzero_ps();
            pack16_transpose(v);
            for (int j = 0; j < 16; j++)
                if (j < jn) _mm512_mask_storeu_ps(dst + (j0 + j) * ldd + i0, mi, v[j]);
        }
    }
}

static char g_plan_name[32];
static nn__gemm_plan g_plan = {
    g_plan_name,     MRP, NRP, 0, 0, 0, avx512_pack, avx512_ukr, avx512_ukr_rows, avx512_transpose,
    avx512_ukr_cols, UKR_ROWS_T};
static nn__sgemm_nt_fn g_large; /* BLIS when it is the provider, else NULL */

const nn__gemm_plan *nn__avx512_gemm_plan(void) { return &g_plan; }

void nn__avx512_sgemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc) {
    nn__gemm_blocked(&g_plan, nn__num_threads(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                     beta, c, ldc);
}

/* When the unpacked small-matrix path (gemm_small.c) beats packing.
 * Measured on Zen 5 (EPYC, AVX-512; thread CPU time, GFLOP/s small vs
 * blocked):
 *  - any form below 32^3 multiply-adds (fixed costs);
 *  - a handful of rows (batch-1 inference): 1x256x784 NT 47 vs 16, 8x256x784
 *    NT 100 vs 82, 8x784x256 NN 156 vs 94, 16x256x784 TN 176 vs 134;
 *  - A·Bᵀ with <= 16 columns and a long K, as dot products on both operands:
 *    32x9x7056 NT 85 vs 37;
 *  - A·B when A fits in L1d and a 32-column panel of B does too: the 6x32
 *    axpy tile then runs from L1 (64x3136x128 206 vs 191, 32x784x256 196 vs
 *    167); beyond that the blocked GEMM wins (512x2048x128 124 vs 200: B's
 *    panel is evicted between the 85 row groups).
 * The choice depends on the shape and the cache sizes only, never on the
 * thread count. */
#define SMALL_GEMM_WORK (32 * 32 * 32)
static int64_t g_l1d = 32 * 1024;

static bool use_small(bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
    if (ta && tb) return false; /* no small path of its own */
    if ((double)m * (double)n * (double)k <= SMALL_GEMM_WORK) return true;
    if (tb) return m <= 8 || n <= 16;
    if (ta) return m <= 16;
    return m <= 8 || (m * k * 4 <= g_l1d && k * 32 * 4 <= g_l1d);
}

static void avx512_sgemm_nt(int nt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                            float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (use_small(trans_a, trans_b, m, n, k))
        nn__avx512_sgemm_small_nt(nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                                  ldc);
    else if (g_large)
        g_large(nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        nn__gemm_blocked(&g_plan, nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                         ldc);
}

static void avx512_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         float *c, int64_t ldc) {
    avx512_sgemm_nt(nn__num_threads(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                    ldc);
}

static void avx512_sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t m, int64_t n,
                                 int64_t k, float alpha, const float *a, int64_t lda,
                                 int64_t stride_a, const float *b, int64_t ldb, int64_t stride_b,
                                 float beta, float *c, int64_t ldc, int64_t stride_c) {
    nn__gemm_batched(avx512_sgemm_nt, batch, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b,
                     ldb, stride_b, beta, c, ldc, stride_c);
}

void nn__avx512_fill_gemm(nn__gemm_kernels *t, nn__sgemm_nt_fn large, int64_t l1d, int64_t l2,
                          int64_t l3) {
    snprintf(g_plan_name, sizeof g_plan_name, "avx512 %dx%d", MRP, NRP);
    nn__gemm_plan_init(&g_plan, l1d, l2, l3);
    g_large = large;
    g_l1d = l1d;
    t->sgemm = avx512_sgemm;
    t->sgemm_batched = avx512_sgemm_batched;
}

/* The FMA throughput probe (nn__tier_fma_peak), as nn__avx2_fma_loop with
 * zmm registers: 12 chains x 16 lanes. */
float nn__avx512_fma_loop(int64_t iters) {
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
    __m512 a[12];
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps((float)j);
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], x, y);
    __m512 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, a[j]);
    return _mm512_reduce_add_ps(s);
}
