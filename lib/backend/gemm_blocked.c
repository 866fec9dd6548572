/* The cache-blocked, packed GEMM driver (see gemm_blocked.h), the per-thread
 * packing buffers it runs in, and the batched GEMM built on any sgemm. */
#include "backend/gemm_blocked.h"
#include "backend/parallel.h"
#include "backend/ref/ref.h"

#include "backend/threadpool.h"
#include "core/core.h"

/* Packing buffers: this OS thread's scratch slot 0 (threadpool.h), 64-byte
 * aligned, allocated at first use, grown when a larger one is needed and
 * kept for the next call; freed at thread exit and unload. Never the
 * library's allocator hook, whose allocation counts belong to the caller's
 * objects. */
#define PACK_SLOT 0
/* B packed whole for all threads (shared B, below): the calling thread's
 * slot 1, which the direct convolution's tasks hold only inside their own
 * calls, never across a GEMM. */
#define SHARED_B_SLOT 1

/* ------------------------------------------------------------- packing */

void nn__gemm_pack_ref(const float *x, int64_t ld, bool kmajor, int64_t rows, int64_t kc, int w,
                       float *dst) {
    for (int64_t q0 = 0; q0 < rows; q0 += w, dst += kc * w) {
        const int64_t rn16 = (rows - q0 + 15) / 16 * 16, written = rn16 < w ? rn16 : w;
        for (int64_t p = 0; p < kc; p++)
            for (int64_t r = 0; r < written; r++)
                dst[p * w + r] = q0 + r >= rows ? 0.0f
                                 : kmajor       ? x[p * ld + q0 + r]
                                                : x[(q0 + r) * ld + p];
    }
}

/* ---------------------------------------------------------------- plan */

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

void nn__gemm_plan_init(nn__gemm_plan *p, int64_t l1d, int64_t l2, int64_t l3) {
    const int64_t f = (int64_t)sizeof(float);
    /* B micro-panel (KC x NR) about the size of L1d (the A micro-panels
     * stream past it from L2), at most 384: on Zen 5, 8x48 tiles ran 1024^3
     * at 141-147 GFLOP/s with KC 128 and 164-178 with KC 256-512; AVX2 6x16
     * tiles the same with KC 256-512. */
    int64_t kc = clamp64(l1d / (p->nr * f), 128, 384) / 8 * 8;
    /* A block (MC x KC) in half of L2. */
    int64_t mc = clamp64(l2 / 2 / (kc * f), p->mr, 4096) / p->mr * p->mr;
    /* B panel (KC x NC) in a quarter of L3 (shared with the other cores). */
    int64_t nc = clamp64(l3 / 4 / (kc * f), 4 * p->nr, 8192) / p->nr * p->nr;
    p->kc = kc, p->mc = mc, p->nc = nc;
}

/* --------------------------------------------------------------- driver */

typedef struct gemm_job {
    const nn__gemm_plan *p;
    bool ta, tb;
    int64_t m, n, k, kc; /* kc: the equal K block actually used */
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc;
    int64_t tr, tc; /* C is split into tr x tc rectangles (tasks) */
    /* shared B: op(B) packed whole before the rectangles run (NULL: each
     * rectangle packs its own): the K block at pc at bpk + pc*npad, its
     * panel of columns j0.. at + j0*kb; packed by tasks of bgroup panels of
     * one K block each */
    float *bpk;
    int64_t npad, bgroup;
    bool arows; /* A read in place by the plan's kernel_rows, never packed */
    bool acols; /* a transposed A read in place by the plan's kernel_cols */
    int64_t calign; /* the tasks' column boundaries: multiples of this */
    bool swap;  /* A·Bᵀ run as (B·Aᵀ)ᵀ: a, b and m, n exchanged (run_rect) */
} gemm_job;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

void nn__gemm_transpose_ref(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst,
                            int64_t ldd) {
    /* in blocks of 16 x 16, so that both sides stay in L1 */
    for (int64_t i0 = 0; i0 < rows; i0 += 16)
        for (int64_t j0 = 0; j0 < cols; j0 += 16) {
            const int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows,
                          j1 = j0 + 16 < cols ? j0 + 16 : cols;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1; i++) dst[j * ldd + i] = src[i * lds + j];
        }
}

/* C[i0:i1, j0:j1] through the blocked loops. Swapped (J->swap): the
 * rectangle is one of Cᵀ, computed into a scratch tile t (rows i, ldt) that
 * starts as that part of Cᵀ; the plan's kernel_rows_t computes the last K
 * block from t and stores it transposed into C (without one, t is copied
 * back transposed at the end), so each element of C sees the same
 * arithmetic as unswapped. A single K block with beta == 0 needs no t. */
static void run_rect(const gemm_job *J, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const nn__gemm_plan *p = J->p;
    const int64_t mr = p->mr, nr = p->nr, kc = J->kc;
    const int64_t mcap = min64(p->mc, round_up(i1 - i0, mr));
    const int64_t ncap = min64(p->nc, round_up(j1 - j0, nr));
    const bool store_t = J->swap && p->kernel_rows_t;
    /* A block (none when A is read in place), B panel, then the swapped
     * tile; each 64-byte aligned */
    const size_t a_floats = J->arows || J->acols ? 0 : (size_t)round_up(mcap * kc, 16);
    const size_t b_floats = (size_t)round_up(ncap * kc, 16);
    const bool need_t = J->swap && (!store_t || J->beta != 0.0f || kc < J->k);
    const int64_t ldt = need_t ? round_up(j1 - j0, 16) : 0;
    const size_t t_floats = (size_t)((i1 - i0) * ldt);
    float *buf =
        nn__thread_scratch(PACK_SLOT, (a_floats + b_floats + t_floats + 16) * sizeof(float));
    if (!buf) {      /* no memory for packing: the reference path, never a failure */
        if (J->swap) /* C[j0:j1, i0:i1] = x Wᵀ with x = J->b, W = J->a */
            nn__ref_sgemm(false, true, j1 - j0, i1 - i0, J->k, J->alpha, J->b + j0 * J->ldb, J->ldb,
                          J->a + i0 * J->lda, J->lda, J->beta, J->c + j0 * J->ldc + i0, J->ldc);
        else
            nn__ref_sgemm(J->ta, J->tb, i1 - i0, j1 - j0, J->k, J->alpha,
                          J->ta ? J->a + i0 : J->a + i0 * J->lda, J->lda,
                          J->tb ? J->b + j0 * J->ldb : J->b + j0, J->ldb, J->beta,
                          J->c + i0 * J->ldc + j0, J->ldc);
        return;
    }
    float *ap = buf, *bp = buf + a_floats, *t = buf + a_floats + b_floats;
    nn__gemm_transpose_fn transpose = p->transpose ? p->transpose : nn__gemm_transpose_ref;
    if (need_t && J->beta != 0.0f)
        transpose(J->c + j0 * J->ldc + i0, J->ldc, j1 - j0, i1 - i0, t, ldt);
    for (int64_t jc = j0; jc < j1; jc += ncap) {
        const int64_t nb = min64(ncap, j1 - jc);
        for (int64_t pc = 0; pc < J->k; pc += kc) {
            const int64_t kb = min64(kc, J->k - pc);
            const float *bsrc = J->tb ? J->b + jc * J->ldb + pc : J->b + pc * J->ldb + jc;
            if (J->bpk)
                bp = J->bpk + pc * J->npad + jc * kb;
            else
                p->pack(bsrc, J->ldb, !J->tb, nb, kb, p->nr, bp);
            const float beta = pc == 0 ? J->beta : 1.0f;
            const bool last_t = store_t && pc + kb >= J->k; /* into C, transposed */
            for (int64_t ic = i0; ic < i1; ic += mcap) {
                const int64_t mb = min64(mcap, i1 - ic);
                const float *asrc = J->ta ? J->a + pc * J->lda + ic : J->a + ic * J->lda + pc;
                if (!J->arows && !J->acols) p->pack(asrc, J->lda, J->ta, mb, kb, p->mr, ap);
                for (int64_t jr = 0; jr < nb; jr += nr) {
                    const float *bpp = bp + jr * kb;
                    const int nrr = (int)min64(nr, nb - jr);
                    for (int64_t ir = 0; ir < mb; ir += mr) {
                        /* the swapped tile of Cᵀ (none: NULL), else C */
                        float *cc = !J->swap ? J->c + (ic + ir) * J->ldc + jc + jr
                                    : need_t ? t + (ic + ir - i0) * ldt + jc + jr - j0
                                             : NULL;
                        const int64_t ldcc = J->swap ? ldt : J->ldc;
                        const int mrr = (int)min64(mr, mb - ir);
                        if (last_t)
                            p->kernel_rows_t(kb, asrc + ir * J->lda, J->lda, bpp, cc, ldt,
                                             J->c + (jc + jr) * J->ldc + ic + ir, J->ldc, mrr, nrr,
                                             J->alpha, beta);
                        else if (J->arows)
                            p->kernel_rows(kb, asrc + ir * J->lda, J->lda, bpp, cc, ldcc, mrr, nrr,
                                           J->alpha, beta);
                        else if (J->acols)
                            p->kernel_cols(kb, asrc + ir, J->lda, bpp, cc, ldcc, mrr, nrr,
                                           J->alpha, beta);
                        else
                            p->kernel(kb, ap + ir * kb, bpp, cc, ldcc, mrr, nrr, J->alpha, beta);
                    }
                }
            }
        }
    }
    if (J->swap && !store_t) transpose(t, ldt, i1 - i0, j1 - j0, J->c + j0 * J->ldc + i0, J->ldc);
}

static void run_task(void *ctx, int64_t t, int thread) {
    const gemm_job *J = ctx;
    (void)thread;
    int64_t i0, i1, j0, j1;
    nn__chunk(J->m, J->tr, (int)(t / J->tc), J->p->mr, &i0, &i1);
    nn__chunk(J->n, J->tc, (int)(t % J->tc), J->calign, &j0, &j1);
    if (i0 < i1 && j0 < j1) run_rect(J, i0, i1, j0, j1);
}

/* One task of packing B whole: bgroup panels of one K block. */
static void pack_b_task(void *ctx, int64_t t, int thread) {
    const gemm_job *J = ctx;
    const nn__gemm_plan *p = J->p;
    (void)thread;
    const int64_t groups = (J->npad / p->nr + J->bgroup - 1) / J->bgroup;
    const int64_t pc = t / groups * J->kc, kb = min64(J->kc, J->k - pc);
    const int64_t j0 = t % groups * J->bgroup * p->nr, nb = min64(J->bgroup * p->nr, J->n - j0);
    const float *bsrc = J->tb ? J->b + j0 * J->ldb + pc : J->b + pc * J->ldb + j0;
    p->pack(bsrc, J->ldb, !J->tb, nb, kb, p->nr, J->bpk + pc * J->npad + j0 * kb);
}

/* Packing one element of A or B costs about as much as this many
 * multiply-adds in the micro-kernel (fitted on Zen 5, AVX-512 8x48 tiles,
 * from 2-thread timings of 64x128x3136 NT cut 2x1, 4x1, 8x1 and 2x3). */
#define PACK_COST 12
/* Reading an element of an in-place A from L3 instead of L2, in the same
 * units (b6: 64x128x3136 and 64x256x784 A·Bᵀ with every column stripe
 * reading all of W were 15-21% slower than row stripes). */
#define READ_COST 12
/* Column stripes on 16 columns instead of whole tiles: taken when the
 * estimate is this much lower. */
#define FINE_GAIN 0.94

/* How to cut C into tr x tc rectangles (tasks) for nt threads. Each
 * rectangle packs its own rows of A (unless A is read in place: arows) and
 * columns of B, so every extra column stripe packs A again and every extra
 * row stripe packs B again. Each split is estimated as (rounds of tasks
 * per thread) x (the largest task's multiply-adds on whole register tiles,
 * at most the whole of C's side, + PACK_COST x the elements it packs), and
 * the cheapest is taken; a split with more tasks wins within 1/16 of the
 * best (a thread the OS deschedules then holds up a smaller part of the
 * call). At least nt tasks (unless C has fewer tiles), at most 8 per thread
 * and one per 2^20 multiply-adds. On Zen 5 at 2 threads this took the
 * models' shapes from 1.21-1.89x to 1.46-2.02x of one thread (64x128x256 NT
 * 1.21x -> 1.71x: 2x1 instead of 2x3) and 1024^3 from 1.70x to 1.95x (5x2
 * instead of 4x2). Capping a task's side at C's (a stripe of 96 columns
 * when C has 64) keeps the swapped 64x128x3136 A·Bᵀ from a 48 + 16 column
 * split over threads.
 * Column stripes may also end on 16 columns (a vector) instead of whole
 * tiles: with A read in place (swapped x·Wᵀ, Aᵀ·B with a short K) column
 * stripes then pack disjoint parts of B and nothing twice, where row
 * stripes each pack all of it. On Zen 5 at 2 threads (cpu cgroup, load ~4,
 * medians of 15 interleaved runs, GFLOP/s) 64x128x256 NT (W 128 rows read
 * in place by both threads, x cut 32 + 32) went from 292 to 321, and
 * 128x256x64 TN (A read in place, B cut 128 + 128) from 301 to 354. An A
 * in place that does not fit the L2 block is charged READ_COST per element
 * for every column stripe that reads it. */
static double split_rects(const nn__gemm_plan *p, int64_t m, int64_t n, int64_t k, int nt,
                          bool ainplace, int64_t *tr_out, int64_t *tc_out, int64_t *calign_out) {
    const double apack = ainplace ? 0.0 : PACK_COST;
    const int64_t nrows = (m + p->mr - 1) / p->mr;
    /* an A read in place that does not fit the block meant for L2 comes
     * from L3 for every column stripe that reads it */
    const double aread = ainplace ? READ_COST : 0.0;
    int64_t most = (m * n / 64 + 1) * k / ((int64_t)1 << 14);
    if (most > 8 * (int64_t)nt) most = 8 * (int64_t)nt;
    if (most < nt) most = nt;
    double best = -1.0;
    int64_t btr = 1, btc = 1, bcu = p->nr;
    /* column boundaries on whole register tiles, or (a second, finer
     * grain) on 16 columns, one vector of every tier's tiles; the finer
     * grain is taken only when its best split is clearly cheaper (narrow
     * tiles at the stripes' edges run slower than the estimate says) */
    const int64_t units[2] = {p->nr, p->nr > 16 && p->nr % 16 == 0 ? 16 : 0};
    for (int u = 0; u < 2 && units[u]; u++) {
        const int64_t cu = units[u], ncols = (n + cu - 1) / cu;
        double ubest = -1.0;
        int64_t utr = 1, utc = 1;
        for (int64_t tr = 1; tr <= nrows && tr <= most; tr++)
            for (int64_t tc = 1; tc <= ncols && tr * tc <= most; tc++) {
                if (tr * tc < nt && !(tr == nrows && tc == ncols)) continue;
                const double rows = (double)min64((nrows + tr - 1) / tr * p->mr, m);
                const double cols = (double)min64((ncols + tc - 1) / tc * cu, n);
                const double ain =
                    tc > 1 && rows * (double)k > (double)(p->mc * p->kc) ? aread : 0.0;
                const double task =
                    (rows * cols + (apack + ain) * rows + PACK_COST * cols) * (double)k;
                const double est = (double)((tr * tc + nt - 1) / nt) * task;
                const bool more = tr * tc > utr * utc;
                if (ubest < 0 || est < ubest * (more ? 1.0625 : 0.9375)) {
                    if (ubest < 0 || est < ubest) ubest = est;
                    utr = tr, utc = tc;
                }
            }
        if (ubest >= 0 && (best < 0 || ubest < best * FINE_GAIN))
            best = ubest, btr = utr, btc = utc, bcu = cu;
    }
    if (best < 0) { /* no product of tile counts in [nt, most]: stripes */
        const int64_t ncols = (n + p->nr - 1) / p->nr;
        btc = ncols < nt ? ncols : nt;
        btr = (nt + btc - 1) / btc < nrows ? (nt + btc - 1) / btc : nrows;
        bcu = p->nr;
        const double rows = (double)((nrows + btr - 1) / btr * p->mr);
        const double cols = (double)((ncols + btc - 1) / btc * p->nr);
        best = (rows * cols + apack * rows + PACK_COST * cols) * (double)k;
    }
    *tr_out = btr, *tc_out = btc, *calign_out = bcu;
    return best;
}

/* Shared B (nn__gemm_blocked): a fork and join in multiply-adds (~2 us);
 * at most this many floats of B packed whole; at least this many rows of C
 * per thread. Each row stripe reads all of the packed B back from the
 * shared cache, which only tall stripes amortise: on Zen 5 at 2 threads
 * (SCHED_FIFO, interleaved) 1024^3 ran 319-322 -> 343-345 GFLOP/s, while
 * stripes of 32-128 rows measured -6% to +8% (64x128x3136 NT +-0%,
 * 128x3136x64 TN -6%, 256x784x64 TN +8%) and are left to split_rects. */
#define FORK_COST ((double)(1 << 18))
#define SHARED_B_MAX ((int64_t)1 << 21)
#define SHARED_B_ROWS 256

/* A·Bᵀ with A read in place (the plan's kernel_rows) packs all of B, n x k
 * elements through transposes; run as (B·Aᵀ)ᵀ it packs A's m x k instead and
 * moves C through a transposed tile (m x n, twice). Taken when that moves
 * fewer elements: x·Wᵀ with a short batch x and a wide weight W. A
 * transposed element costs about 16 multiply-adds with the AVX-512 16x16
 * transposes (10-16 measured; scalar 50-115). On Zen 5 (2 vCPUs, load 8,
 * cpu cgroup, medians of 7 interleaved rounds, GFLOP/s) 64x128x3136 went
 * from 149 to 158 at 1 thread and 243 to 300 at 2 (the W rows split between
 * threads, each reading its half in place instead of packing all of W),
 * 64x256x784 from 146 to 155 and 251 to 304. With the plan's kernel_rows_t
 * the last K block is stored transposed from registers, so a swap moves
 * less than this charges: the rule was fitted before, and left as it is. */
#define TRANSPOSE_COST 16
/* A transposed A is read in place up to this K (each K step of a
 * micro-panel then reads one line of A; a power-of-two leading dimension
 * puts a long K's lines in few cache sets). */
#define ACOLS_MAX_K 256
static bool swap_pays(int64_t m, int64_t n, int64_t k, float beta) {
    const double moves = beta == 0.0f ? 1.0 : 2.0;
    return PACK_COST * (double)m * (double)k + TRANSPOSE_COST * moves * (double)m * (double)n <
           PACK_COST * (double)n * (double)k;
}

/* The job for C = alpha op(A) op(B) + beta C before threads: whether A is
 * read in place, whether A·Bᵀ runs swapped, the equal K block. Depends on
 * the shape and the plan only. */
static void job_init(gemm_job *J, const nn__gemm_plan *p, bool trans_a, bool trans_b, int64_t m,
                     int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    *J = (gemm_job){.p = p, .ta = trans_a, .tb = trans_b, .m = m, .n = n, .k = k,
                    .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c, .lda = lda,
                    .ldb = ldb, .ldc = ldc, .tr = 1, .tc = 1, .calign = p->nr};
    if (p->kernel_rows && !trans_a) {
        J->arows = m <= p->mc && k >= 128;
        if (trans_b && p->transpose && swap_pays(m, n, k, beta)) {
            J->m = n, J->n = m, J->a = b, J->lda = ldb, J->b = a, J->ldb = lda;
            J->swap = J->arows = true;
        }
    }
    /* Aᵀ·B with a short Aᵀ and a short K (the weight gradients at batch
     * 64): A's columns read in place, a K value per row of the stored A. */
    if (p->kernel_cols && trans_a && J->m <= p->mc && k <= ACOLS_MAX_K) J->acols = true;
    const int64_t nkb = (k + p->kc - 1) / p->kc; /* equal K blocks, a multiple of 4 */
    J->kc = min64(round_up((k + nkb - 1) / nkb, 4), p->kc);
}

/* K split: a product with a long K and a small C is computed as two halves
 * of K, fixed by the shape: C = (alpha A0 B0 + beta C) + T with T = alpha
 * A1 B1 (a scratch copy of C's shape), added last, in that order, on any
 * number of threads. Two threads then each pack and read half of the
 * operands instead of each packing all of the one that row stripes share
 * (x in x·Wᵀ at 64x128x3136: its 64 rows are C's columns after the swap,
 * and W's 128 rows the stripes). Taken when K is at least KSPLIT_MIN_K and
 * KSPLIT_K_PER_SIDE times C's longer side (the extra pass over C is then
 * under 1% of the products), and C at most KSPLIT_MAX_C elements. On Zen 5
 * (cpu cgroup, load 4, medians of 21 interleaved runs of bench --case
 * sgemm_) 64x128x3136 NT at 2 threads went from 310 to 331 GFLOP/s; at 1
 * thread 180 -> 185 (thread CPU time, 6 interleaved runs: no loss). */
#define KSPLIT_MIN_K 2048
#define KSPLIT_K_PER_SIDE 8
#define KSPLIT_MAX_C ((int64_t)1 << 16)
/* The calling thread's scratch slot for T (held only inside
 * nn__gemm_blocked, which calls nothing that uses it). */
#define KSPLIT_SLOT 4

static bool ksplit_pays(int64_t m, int64_t n, int64_t k) {
    return k >= KSPLIT_MIN_K && m * n <= KSPLIT_MAX_C && k >= KSPLIT_K_PER_SIDE * (m > n ? m : n);
}

typedef struct ksplit_job {
    gemm_job part[2];
    int64_t tasks0; /* part 0's rectangles are tasks [0, tasks0), part 1's the rest */
} ksplit_job;

static void ksplit_task(void *ctx, int64_t t, int thread) {
    ksplit_job *K = ctx;
    if (t < K->tasks0) run_task(&K->part[0], t, thread);
    else run_task(&K->part[1], t - K->tasks0, thread);
}

void nn__gemm_blocked(const nn__gemm_plan *p, int threads, bool trans_a, bool trans_b, int64_t m,
                      int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) { /* C = beta C (beta == 0: zeros, old C ignored) */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    /* Threads take rectangles of C (split_rects); each C element gets the
     * same arithmetic in any rectangle, so the split never changes the
     * result. */
    int nt = nn__threads_cap(threads, (m * n / 64 + 1) * k, (int64_t)1 << 14);
    float *t = ksplit_pays(m, n, k)
                   ? nn__thread_scratch(KSPLIT_SLOT, (size_t)(m * n) * sizeof(float))
                   : NULL;
    if (t) { /* else (no memory) one product: other bits, never a failure */
        const int64_t k0 = round_up(k / 2, 16);
        ksplit_job K;
        job_init(&K.part[0], p, trans_a, trans_b, m, n, k0, alpha, a, lda, b, ldb, beta, c, ldc);
        job_init(&K.part[1], p, trans_a, trans_b, m, n, k - k0, alpha,
                 trans_a ? a + k0 * lda : a + k0, lda, trans_b ? b + k0 : b + k0 * ldb, ldb,
                 0.0f, t, n);
        if (nt <= 1) {
            run_rect(&K.part[0], 0, K.part[0].m, 0, K.part[0].n);
            run_rect(&K.part[1], 0, K.part[1].m, 0, K.part[1].n);
        } else {
            /* each half on half of the threads (at 2: one each) */
            for (int h = 0; h < 2; h++) {
                gemm_job *J = &K.part[h];
                if (nt / 2 > 1)
                    split_rects(p, J->m, J->n, J->k, nt / 2, J->arows || J->acols, &J->tr, &J->tc,
                                &J->calign);
            }
            K.tasks0 = K.part[0].tr * K.part[0].tc;
            nn__parallel_for_max(K.tasks0 + K.part[1].tr * K.part[1].tc, nt, ksplit_task, &K);
        }
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] += t[i * n + j];
        return;
    }
    gemm_job J;
    job_init(&J, p, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    m = J.m, n = J.n; /* swapped: the shape of Cᵀ */
    if (nt <= 1) {
        run_rect(&J, 0, m, 0, n);
        return;
    }
    const double est =
        split_rects(p, m, n, k, nt, J.arows || J.acols, &J.tr, &J.tc, &J.calign);
    /* Shared B: every rectangle of a column stripe packs that stripe of B,
     * so tr row stripes pack B tr times. When B is one column block, it can
     * instead be packed once by all threads (a parallel loop of its own),
     * then nt row stripes each pack only their rows of A. Taken when the
     * estimate of that (split_rects' terms, the packing of B shared out,
     * one more fork) is lower. The packed values, K blocks and micro-kernel
     * calls are the same either way, and so is the result. */
    const int64_t npad = round_up(n, p->nr), nrows = (m + p->mr - 1) / p->mr;
    if (n <= p->nc && npad * k <= SHARED_B_MAX && (m >= SHARED_B_ROWS * (int64_t)nt)) {
        const double rows = (double)((nrows + nt - 1) / nt * p->mr);
        const double est_s =
            (rows * (double)npad + (J.arows || J.acols ? 0.0 : PACK_COST) * rows) * (double)k +
            PACK_COST * (double)(npad * k) / nt + FORK_COST;
        float *bpk =
            est_s < est ? nn__thread_scratch(SHARED_B_SLOT, (size_t)(npad * k + 16) * sizeof(float))
                        : NULL;
        if (bpk) { /* else (no memory) the rectangles pack their own */
            const int64_t panels = npad / p->nr, kblocks = (k + J.kc - 1) / J.kc;
            /* about 2 packing tasks per thread, each within one K block */
            J.bgroup = min64(panels, (panels * kblocks + 2 * nt - 1) / (2 * nt));
            J.bpk = bpk, J.npad = npad, J.tr = nt, J.tc = 1, J.calign = p->nr;
            nn__parallel_for_max(kblocks * ((panels + J.bgroup - 1) / J.bgroup), nt, pack_b_task,
                                 &J);
        }
    }
    nn__parallel_for_max(J.tr * J.tc, nt, run_task, &J);
}

/* ------------------------------------------------------------- batched */

typedef struct batch_job {
    nn__sgemm_nt_fn f;
    bool ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc, sa, sb, sc;
} batch_job;

static void run_batch(void *ctx, int64_t i, int thread) {
    const batch_job *J = ctx;
    (void)thread;
    J->f(1, J->ta, J->tb, J->m, J->n, J->k, J->alpha, J->a + i * J->sa, J->lda, J->b + i * J->sb,
         J->ldb, J->beta, J->c + i * J->sc, J->ldc);
}

void nn__gemm_batched(nn__sgemm_nt_fn f, int64_t batch, bool trans_a, bool trans_b, int64_t m,
                      int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                      int64_t stride_a, const float *b, int64_t ldb, int64_t stride_b, float beta,
                      float *c, int64_t ldc, int64_t stride_c) {
    if (batch <= 0 || m <= 0 || n <= 0) return;
    batch_job J = {f, trans_a, trans_b, m,   n,   k,        alpha,    beta,    a,
                   b, c,       lda,     ldb, ldc, stride_a, stride_b, stride_c};
    const int64_t per = (m * n / 64 + 1) * (k + 1); /* ~ multiply-adds / 64 per product */
    const int nt = nn__threads_for(per * batch, (int64_t)1 << 12);
    /* Whole products as tasks when there are at least two per thread (the
     * pool balances them); otherwise each product in turn on every thread. */
    if (nt <= 1 || batch >= 2 * (int64_t)nt) {
        nn__parallel_for_max(batch, nt, run_batch, &J);
        return;
    }
    for (int64_t i = 0; i < batch; i++)
        f(nt, trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
          c + i * stride_c, ldc);
}
