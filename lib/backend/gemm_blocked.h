/* The cache-blocked, packed GEMM driver (Goto / BLIS style), portable C run
 * with a tier's micro-kernel and packing routines:
 *
 *   for jc over N in steps of NC:            B panel  KC x NC  (L3)
 *     for pc over K in steps of KC:          pack op(B)[pc.., jc..]
 *       for ic over M in steps of MC:        A block  MC x KC  (L2)
 *         pack op(A)[ic.., pc..]
 *         for jr over the panel in NR steps: B micro-panel KC x NR (L1)
 *           for ir over the block in MR steps:
 *             C[ir.., jr..] (+)= micro-kernel(A micro-panel, B micro-panel)
 *
 * A plan with a row kernel (kernel_rows) skips packing an untransposed A
 * when it is short (M <= MC, K >= 128: the models' x·Wᵀ, x·W), and runs
 * x·Wᵀ with a wide W as (W·xᵀ)ᵀ so that W is read in place and only x is
 * packed (through a transposed tile of C, or kernel_rows_t storing the last K
 * block transposed; gemm_blocked.c's swap_pays).
 * With kernel_cols it reads a short transposed A in place when K is short
 * (Aᵀ·B, the weight gradients at batch 64).
 *
 * Block sizes come from the CPU's cache sizes (nn__gemm_plan_init). K is cut
 * into equal blocks of at most KC that depend on K and the plan only, and
 * each C element is accumulated over them in order: the result never depends
 * on how C is split over threads (threads take independent rectangles of C).
 */
#ifndef NN_BACKEND_GEMM_BLOCKED_H
#define NN_BACKEND_GEMM_BLOCKED_H

#include <stdbool.h>
#include <stdint.h>

/* Pack rows [0, rows) and columns [0, kc) of X into ceil(rows/w) panels of
 * kc x w floats: dst[q*kc*w + p*w + r] = X(q*w + r, p), zero for rows past
 * `rows` up to the next multiple of 16 (one vector of the micro-kernels);
 * rows of the last panel beyond that are not written (the micro-kernel
 * never reads a vector wholly past its nr columns: on Zen 5 packing 64
 * rows into 48-wide panels, 64x3136, went from 22-25 to 17-19 us). X(r, p)
 * = kmajor ? x[p*ld + r] : x[r*ld + p]. */
typedef void (*nn__gemm_pack_fn)(const float *x, int64_t ld, bool kmajor, int64_t rows, int64_t kc,
                                 int w, float *dst);
/* The reference twin of every tier's packing: plain loops, that layout. */
void nn__gemm_pack_ref(const float *x, int64_t ld, bool kmajor, int64_t rows, int64_t kc, int w,
                       float *dst);
/* C[mr x nr] = alpha * Ap Bp + beta * C for packed micro-panels Ap (kc x MR)
 * and Bp (kc x NR), 1 <= mr <= MR, 1 <= nr <= NR; beta == 0: C not read. */
typedef void (*nn__gemm_ukr_fn)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int mr, int nr, float alpha, float beta);

/* The same with A read in place: element (r, p) of the micro-panel at
 * a[r*lda + p] (rows of an untransposed A). */
typedef void (*nn__gemm_ukr_rows_fn)(int64_t kc, const float *a, int64_t lda, const float *bp,
                                     float *c, int64_t ldc, int mr, int nr, float alpha,
                                     float beta);

/* kernel_rows computing a tile T of Cᵀ and storing it transposed: T[mr x
 * nr] = alpha * A Bp + beta * t (t[r*ldt + j], a tile of Cᵀ; beta == 0: t
 * not read, may be NULL), then c[j*ldc + r] = T[r][j]. The same arithmetic
 * as kernel_rows on t followed by a transpose. */
typedef void (*nn__gemm_ukr_rows_t_fn)(int64_t kc, const float *a, int64_t lda, const float *bp,
                                       const float *t, int64_t ldt, float *c, int64_t ldc, int mr,
                                       int nr, float alpha, float beta);

/* dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols. */
typedef void (*nn__gemm_transpose_fn)(const float *src, int64_t lds, int64_t rows, int64_t cols,
                                      float *dst, int64_t ldd);
/* Its reference twin. */
void nn__gemm_transpose_ref(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst,
                            int64_t ldd);

typedef struct nn__gemm_plan {
    const char *name;   /* e.g. "avx512 14x32" */
    int mr, nr;         /* register tile */
    int64_t mc, kc, nc; /* cache blocks: mc % mr == 0, nc % nr == 0 */
    nn__gemm_pack_fn pack;
    nn__gemm_ukr_fn kernel;
    nn__gemm_ukr_rows_fn kernel_rows; /* NULL: A is always packed */
    nn__gemm_transpose_fn transpose;  /* NULL: nn__gemm_transpose_ref */
    /* kernel_rows' signature, element (r, p) at a[p*lda + r] (columns of a
     * transposed A read in place); NULL: a transposed A is always packed. */
    nn__gemm_ukr_rows_fn kernel_cols;
    /* kernel_rows writing its tile transposed (NULL: the swapped A·Bᵀ goes
     * through a transposed tile of Cᵀ and `transpose`). */
    nn__gemm_ukr_rows_t_fn kernel_rows_t;
} nn__gemm_plan;

/* Fill p->mc/kc/nc for p->mr x p->nr tiles from the CPU's caches (bytes):
 * KC so that a B micro-panel about fills L1d, MC so that an A block
 * fills about half of L2, NC so that a B panel fills a share of L3. */
void nn__gemm_plan_init(nn__gemm_plan *p, int64_t l1d, int64_t l2, int64_t l3);

/* C = alpha op(A) op(B) + beta C with the plan, on up to `threads` threads.
 * Never fails: if a packing buffer cannot be allocated, that part is
 * computed by the reference GEMM. */
void nn__gemm_blocked(const nn__gemm_plan *p, int threads, bool trans_a, bool trans_b, int64_t m,
                      int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* An sgemm that runs on at most `threads` threads (1: the calling thread
 * only). Tiers build their table entries from one of these. */
typedef void (*nn__sgemm_nt_fn)(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n,
                                int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                                int64_t ldb, float beta, float *c, int64_t ldc);

/* Batched GEMM on top of any nn__sgemm_nt_fn: threads over the batch, each
 * product on one thread; a batch too short to share out evenly runs its
 * products one after another, each on all threads. Either way each product
 * is the same computation, so results do not depend on the thread count. */
void nn__gemm_batched(nn__sgemm_nt_fn f, int64_t batch, bool trans_a, bool trans_b, int64_t m,
                      int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                      int64_t stride_a, const float *b, int64_t ldb, int64_t stride_b, float beta,
                      float *c, int64_t ldc, int64_t stride_c);

#endif
