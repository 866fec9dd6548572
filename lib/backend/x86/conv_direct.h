/* Direct convolution (no column matrix) for the x86 SIMD tiers: one template,
 * included by x86/<tier>/conv_direct.c after it defines the vector layer
 * (CD_* macros and cd_* functions, see x86/avx2/conv_direct.c). NCHW tensors,
 * groups = 1.
 *
 * Forward: the output channels are vectorised. Weights are packed once per
 * call as [oc block][c][ky][kx][NV*VL] (zero past the last channel; half
 * weights, f16 or bf16, are converted block by block while packing); the
 * register tile is M output pixels of one row x NV vectors of output
 * channels; every tap loads NV weight vectors and broadcasts M input pixels
 * (embedded-broadcast FMAs). The input is read through a zero-padded copy of
 * the rows a task needs, so padding costs no branches. The tile ends as
 * pixel-major vectors [M][NV*VL] (+ bias, ReLU) that a VLxVL transpose writes
 * into the NCHW output, or, with the 2x2 max pool fused, into a two-row
 * buffer that is pooled in channel vectors before the (4x smaller)
 * transpose.
 *
 * Backward data (stride 1): the forward kernel on gy padded by
 * (k-1)*d - p, with the weights transposed and flipped: packed as
 * [c block][o][ky'][kx'] = w[o][c][kh-1-ky'][kw-1-kx'].
 *
 * Backward weights: gwᵀ[(c, ky, kx)][o] += sum over pixels of x(tap) *
 * gyᵀ[pixel][o]. The register tile is G (c, ky) rows x KW taps x NV channel
 * vectors, accumulated over every pixel of an image in registers; gy is
 * transposed to pixel-major per image (the fused ReLU mask and the bias sums
 * ride on that transpose). Images are cut into chunks fixed by the batch
 * size alone, each with its own partial sum, added in chunk order: the
 * result is the same for any thread count.
 *
 * Forward with the 2x2 pool, 3x3 windows, unit stride and dilation and at
 * least WG_CMIN input channels: Winograd F(2x2, 3x3), one tile per pool
 * window (wg_*, below). The unpooled forward and the data gradient of such
 * windows run Winograd too where it measured faster (wg_fast_rule): every
 * 2x2 output tile stored, the data gradient on gy (masked, padded by 2 - p)
 * with the windows flipped and transposed before the weight transform.
 * The weight gradient of such windows runs the adjoint, Winograd's dU =
 * sum over tiles of (A dY Aᵀ) ⊙ V, where wgw_fast says (wg_direct_bwd_weights).
 *
 * Every output element is summed over (c, ky, kx) (forward, backward data)
 * or over (image, oy, ox) (weights, within a chunk) in a fixed order that
 * does not depend on the tiling or the threads. */
#ifndef NN_BACKEND_X86_CONV_DIRECT_H
#define NN_BACKEND_X86_CONV_DIRECT_H

#include "backend/parallel.h"
#include "backend/threadpool.h"

#include <stdlib.h>
#include <string.h>

/* Scratch slots (threadpool.h): the calling thread keeps the packed weights
 * and the partial sums' bookkeeping in slot 3; each task its padded input
 * rows in slot 1 and its row / gyᵀ buffer in slot 2. Slot 0 is the GEMM's. */
enum { CD_SLOT_PAD = 1, CD_SLOT_ROWS = 2, CD_SLOT_PACK = 3 };

/* The most vectors of channels a tile holds. */
#define CD_NVMAX 4

static inline int64_t cd_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t cd_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t cd_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* A tile of M x NV fits the register file: M*NV accumulators, NV weight
 * vectors and one broadcast. */
#define CD_FITS(M, NV) ((M) * (NV) + (NV) + 1 <= CD_REGS && (NV) <= CD_NVMAX)

/* --------------------------------------------------------------- helpers */

/* dst[c][r][x] for r in [0, rows), x in [0, wp): the padded input rows
 * [r0, r0 + rows) of one image src [cin][ih][iw] (pad pt on top, pl on the
 * left, zeros outside), times (mask > 0) when mask is given. */
static void cd_pad_rows(const float *src, const float *mask, int64_t cin, int64_t ih, int64_t iw,
                        int64_t pt, int64_t pl, int64_t r0, int64_t rows, int64_t wp, float *dst) {
    const int64_t x0 = cd_max(0, pl), x1 = cd_min(wp, iw + pl); /* columns from the image */
    for (int64_t c = 0; c < cin; c++)
        for (int64_t r = 0; r < rows; r++) {
            float *d = dst + (c * rows + r) * wp;
            const int64_t sy = r0 + r - pt;
            if (sy < 0 || sy >= ih || x1 <= x0) {
                memset(d, 0, (size_t)wp * sizeof(float));
                continue;
            }
            const float *s = src + (c * ih + sy) * iw; /* column x of d is s[x - pl] */
            for (int64_t x = 0; x < x0; x++) d[x] = 0.0f;
            /* vectors: rows are short (library calls cost more than the copy) */
            int64_t x = x0;
            if (mask) { /* s where m > 0, else 0 (cd_gate: the ReLU backward's rule) */
                const float *m = mask + (c * ih + sy) * iw; /* beside s */
                for (; x + CD_VL <= x1; x += CD_VL)
                    cd_storeu(d + x, cd_gate(cd_loadu(s + x - pl), cd_loadu(m + x - pl)));
                if (x < x1) {
                    const int nr = (int)(x1 - x);
                    cd_store_n(d + x, cd_gate(cd_load_n(s + x - pl, nr), cd_load_n(m + x - pl, nr)),
                               nr);
                }
            } else {
                for (; x + CD_VL <= x1; x += CD_VL) cd_storeu(d + x, cd_loadu(s + x - pl));
                if (x < x1) cd_store_n(d + x, cd_load_n(s + x - pl, (int)(x1 - x)), (int)(x1 - x));
            }
            for (x = x1; x < wp; x += CD_VL)
                cd_store_n(d + x, cd_zero(), (int)cd_min(CD_VL, wp - x));
        }
}

/* dst[oc * ostride + p] = src[p * lds + oc] for p < npx, oc < noc: a
 * pixel-major tile into NCHW planes, VL x VL blocks at a time. */
static void cd_store_t(const float *src, int64_t lds, int64_t npx, int64_t noc, float *dst,
                       int64_t ostride) {
    for (int64_t p0 = 0; p0 < npx; p0 += CD_VL) {
        const int np = (int)cd_min(CD_VL, npx - p0);
        for (int64_t o0 = 0; o0 < noc; o0 += CD_VL) {
            cd_vec r[CD_VL];
            for (int i = 0; i < CD_VL; i++)
                r[i] = i < np ? cd_loadu(src + (p0 + i) * lds + o0) : cd_zero();
            cd_transpose(r);
            const int no = (int)cd_min(CD_VL, noc - o0);
            for (int j = 0; j < no; j++) cd_store_n(dst + (o0 + j) * ostride + p0, r[j], np);
        }
    }
}

/* --------------------------------------------------------------- forward */

/* Geometry of the forward tile over one padded image view. */
typedef struct cd_geo {
    int64_t cin, kh, kw; /* taps: cin x kh x kw */
    int64_t cs;          /* channel stride of the view */
    int64_t tys, txs;    /* input step between taps ky (dh * row stride) and kx (dw) */
} cd_geo;

/* out[i * ldo + j] (i < M, j < NV*VL) = bias + sum over taps of
 * x0[tap + i] * wp[tap][j], then the ReLU. */
NN_INLINE void cd_fwd_tile(const int M, const int NV, const cd_geo *q, const float *x0,
                           const float *restrict wp, const float *bias, bool relu,
                           float *restrict out, int64_t ldo) {
    cd_vec acc[CD_MR][CD_NVMAX];
#pragma GCC unroll 16
    for (int i = 0; i < M; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = cd_zero();
    const int64_t cin = q->cin, kh = q->kh, kw = q->kw, cs = q->cs, tys = q->tys, txs = q->txs;
    const float *xc = x0;
    for (int64_t c = 0; c < cin; c++, xc += cs) {
        const float *xr = xc;
        for (int64_t ky = 0; ky < kh; ky++, xr += tys) {
            const float *xq = xr;
            for (int64_t kx = 0; kx < kw; kx++, xq += txs, wp += NV * CD_VL) {
                cd_vec wv[CD_NVMAX];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) wv[v] = cd_load(wp + v * CD_VL);
#pragma GCC unroll 16
                for (int i = 0; i < M; i++) {
                    const cd_vec b = cd_set1(xq[i]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) acc[i][v] = cd_fma(b, wv[v], acc[i][v]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        const cd_vec bv = bias ? cd_loadu(bias + v * CD_VL) : cd_zero();
#pragma GCC unroll 16
        for (int i = 0; i < M; i++) {
            cd_vec a = acc[i][v];
            if (bias) a = cd_add(a, bv);
            if (relu) a = cd_relu(a);
            cd_storeu(out + i * ldo + v * CD_VL, a);
        }
    }
}

/* One forward tile of runtime size m x nv (CD_FITS(m, nv)). */
#define CD_FWD_NV(M)                                                                               \
    case M:                                                                                        \
        switch (nv) {                                                                              \
        case 1: cd_fwd_tile(M, 1, q, x0, wp, bias, relu, out, ldo); break;                         \
        case 2:                                                                                    \
            if (CD_FITS(M, 2)) cd_fwd_tile(M, 2, q, x0, wp, bias, relu, out, ldo);                 \
            break;                                                                                 \
        case 3:                                                                                    \
            if (CD_FITS(M, 3)) cd_fwd_tile(M, 3, q, x0, wp, bias, relu, out, ldo);                 \
            break;                                                                                 \
        default:                                                                                   \
            if (CD_FITS(M, 4)) cd_fwd_tile(M, 4, q, x0, wp, bias, relu, out, ldo);                 \
            break;                                                                                 \
        }                                                                                          \
        break;

static void cd_fwd_call(int m, int nv, const cd_geo *q, const float *x0, const float *wp,
                        const float *bias, bool relu, float *out, int64_t ldo) {
    switch (m) {
        CD_FWD_NV(1)
        CD_FWD_NV(2)
        CD_FWD_NV(3)
        CD_FWD_NV(4)
        CD_FWD_NV(5)
        CD_FWD_NV(6)
#if CD_MR > 6
        CD_FWD_NV(7)
        CD_FWD_NV(8)
        CD_FWD_NV(9)
        CD_FWD_NV(10)
        CD_FWD_NV(11)
        CD_FWD_NV(12)
        CD_FWD_NV(13)
        CD_FWD_NV(14)
#endif
    default: break;
    }
}

/* The most channel vectors a tile of m pixels holds. */
static int cd_nv_cap(int64_t m) {
    int nv = 1;
    while (nv < CD_NVMAX && CD_FITS(m, nv + 1)) nv++;
    return nv;
}

/* Tiles along a row of ow pixels (*mt of at most *m pixels each) and channel
 * blocks of *nv vectors (the last may be narrower) for nvec vectors. */
static void cd_plan_tiles(int64_t ow, int64_t nvec, int *mt, int *m, int *nv) {
    *mt = (int)cd_cdiv(ow, CD_MR);
    *m = (int)cd_cdiv(ow, *mt);
    const int cap = cd_nv_cap(*m);
    const int64_t nblk = cd_cdiv(nvec, cap);
    *nv = (int)cd_cdiv(nvec, nblk);
}

/* A forward-shaped job: out = conv(in) over an input padded on the fly. */
typedef struct cd_job {
    const float *x, *mask; /* input images [n][cin][ih][iw]; mask: ReLU output gating x, or NULL */
    int64_t n, cin, ih, iw, pt, pl;
    int64_t hp, wp; /* padded rows / columns the convolution reads */
    bool copy;      /* read through a padded copy (else x itself, row stride iw) */
    int64_t kh, kw, dh, dw, sh;
    int64_t cout, oh, ow; /* output [n][cout][oh][ow] (pooled: [oh/2][ow/2]) */
    float *y;
    const float *wpk, *bias; /* packed weights; bias padded to nvec*VL, or NULL */
    bool relu, pool;
    int mt, m, nv;   /* row tiles and channel blocks */
    int64_t nvec;    /* channel vectors: ceil(cout / VL) */
    int64_t rchunks; /* row chunks per image (tasks: n * rchunks) */
    bool failed;     /* a task could not get its scratch */
} cd_job;

/* Output rows [oy0, oy1) (pooled rows when pooling) of image n, every
 * channel block. Returns false when scratch memory is missing. */
static bool cd_fwd_rows(cd_job *j, int64_t n, int64_t oy0, int64_t oy1) {
    const int64_t krows = (j->kh - 1) * j->dh + 1;
    const int64_t cr0 = j->pool ? 2 * oy0 : oy0, cr1 = j->pool ? 2 * oy1 : oy1; /* conv rows */
    const int64_t r0 = cr0 * j->sh, rows = (cr1 - 1) * j->sh + krows - r0;      /* input rows */
    const float *xv; /* the view's row r0 */
    int64_t cs, rs;
    if (j->copy) {
        float *buf =
            nn__thread_scratch(CD_SLOT_PAD, (size_t)(j->cin * rows * j->wp) * sizeof(float));
        if (!buf) return false;
        cd_pad_rows(j->x + n * j->cin * j->ih * j->iw,
                    j->mask ? j->mask + n * j->cin * j->ih * j->iw : NULL, j->cin, j->ih, j->iw,
                    j->pt, j->pl, r0, rows, j->wp, buf);
        xv = buf, cs = rows * j->wp, rs = j->wp;
    } else {
        xv = j->x + n * j->cin * j->ih * j->iw + r0 * j->iw, cs = j->ih * j->iw, rs = j->iw;
    }
    const int64_t nbw = (int64_t)j->nv * CD_VL, kt = j->cin * j->kh * j->kw;
    float *rb = NULL;
    if (j->pool) {
        rb = nn__thread_scratch(CD_SLOT_ROWS, (size_t)(2 * j->ow * nbw) * sizeof(float));
        if (!rb) return false;
    }
    _Alignas(64) float tb[CD_MR * CD_NVMAX * CD_VL];
    const cd_geo q = {j->cin, j->kh, j->kw, cs, j->dh * rs, j->dw};
    const int64_t py = j->oh / 2, px = j->ow / 2;
    for (int64_t ob = 0; ob < j->cout; ob += nbw) {
        const int nv = (int)cd_min(j->nv, j->nvec - ob / CD_VL);
        const int64_t noc = cd_min(nbw, j->cout - ob);
        const float *wp = j->wpk + ob * kt, *bias = j->bias ? j->bias + ob : NULL;
        for (int64_t oy = oy0; oy < oy1; oy++) {
            for (int64_t r = 0; r < (j->pool ? 2 : 1); r++) {
                const int64_t cy = j->pool ? 2 * oy + r : oy;
                const float *xrow = xv + (cy * j->sh - r0) * rs;
                int64_t ox0 = 0;
                for (int t = 0; t < j->mt; t++) {
                    /* balanced tiles: the first ow % mt hold one pixel more */
                    const int m = (int)(j->ow / j->mt + (t < j->ow % j->mt));
                    if (j->pool) {
                        cd_fwd_call(m, nv, &q, xrow + ox0, wp, bias, j->relu,
                                    rb + (r * j->ow + ox0) * nbw, nbw);
                    } else {
                        cd_fwd_call(m, nv, &q, xrow + ox0, wp, bias, j->relu, tb, nv * CD_VL);
                        cd_store_t(tb, nv * CD_VL, m, noc,
                                   j->y + ((n * j->cout + ob) * j->oh + oy) * j->ow + ox0,
                                   j->oh * j->ow);
                    }
                    ox0 += m;
                }
            }
            if (j->pool) { /* max over 2x2 in channel vectors, in place into row 0 */
                for (int64_t p = 0; p < px; p++)
                    for (int v = 0; v < nv; v++) {
                        const float *a = rb + 2 * p * nbw + v * CD_VL, *b = a + j->ow * nbw;
                        cd_vec mx = cd_loadu(a);
                        mx = cd_max_nan(mx, cd_loadu(a + nbw));
                        mx = cd_max_nan(mx, cd_loadu(b));
                        mx = cd_max_nan(mx, cd_loadu(b + nbw));
                        cd_storeu(rb + p * nbw + v * CD_VL, mx);
                    }
                cd_store_t(rb, nbw, px, noc, j->y + ((n * j->cout + ob) * py + oy) * px, py * px);
            }
        }
    }
    return true;
}

static void cd_fwd_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    cd_job *j = ctx;
    const int64_t n = t / j->rchunks, c = t % j->rchunks;
    const int64_t rows = j->pool ? j->oh / 2 : j->oh;
    const int64_t per = cd_cdiv(rows, j->rchunks);
    const int64_t lo = c * per, hi = cd_min(rows, lo + per);
    if (lo < hi && !cd_fwd_rows(j, n, lo, hi)) __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
}

/* Pack weights for the forward tile: block b (channels [ob, ob + nv*VL))
 * as [c][ky][kx][nv*VL] at wpk + ob * cin*kh*kw; zero past cout. get(o, c,
 * ky, kx) reads w [cout][cin][kh][kw] (transposed = false) or, for the
 * data gradient, w [cin][cout][kh][kw] flipped in both axes. */
static void cd_pack(const float *w, bool transposed, int64_t cout, int64_t cin, int64_t kh,
                    int64_t kw, int nv, int64_t nvec, float *wpk) {
    const int64_t khw = kh * kw, kt = cin * khw, nbw = (int64_t)nv * CD_VL;
    for (int64_t ob = 0; ob < nvec * CD_VL; ob += nbw) {
        const int64_t wid = cd_min(nbw, nvec * CD_VL - ob);
        float *dst = wpk + ob * kt;
        for (int64_t c = 0; c < cin; c++)
            for (int64_t k = 0; k < khw; k++) {
                float *d = dst + (c * khw + k) * wid;
                for (int64_t jj = 0; jj < wid; jj++) {
                    const int64_t o = ob + jj;
                    float v = 0.0f;
                    if (o < cout)
                        v = transposed ? w[(c * cout + o) * khw + (khw - 1 - k)]
                                       : w[(o * cin + c) * khw + k];
                    d[jj] = v;
                }
            }
    }
}

/* Half weights (backend/half.h's conv_fwd: f16 or bf16 bits, inference
 * only): converts a 16-bit [n] run to f32 (the tier's conversion). */
typedef void (*cd_cvt_fn)(const uint16_t *src, float *dst, size_t n);

/* cd_pack (not transposed) from half weights w [cout][cin][kh][kw]: each
 * block's rows are converted by cvt into stage ([nv*VL][cin*kh*kw] floats),
 * then packed; the whole weight never exists as f32. */
static void cd_pack_half(const uint16_t *w, cd_cvt_fn cvt, int64_t cout, int64_t cin, int64_t kh,
                         int64_t kw, int nv, int64_t nvec, float *stage, float *wpk) {
    const int64_t khw = kh * kw, kt = cin * khw, nbw = (int64_t)nv * CD_VL;
    for (int64_t ob = 0; ob < nvec * CD_VL; ob += nbw) {
        const int64_t wid = cd_min(nbw, nvec * CD_VL - ob), rows = cd_max(0, cd_min(wid, cout - ob));
        if (rows > 0) cvt(w + ob * kt, stage, (size_t)(rows * kt));
        float *dst = wpk + ob * kt;
        for (int64_t c = 0; c < cin; c++)
            for (int64_t k = 0; k < khw; k++) {
                float *d = dst + (c * khw + k) * wid;
                const float *s = stage + c * khw + k;
                for (int64_t jj = 0; jj < wid; jj++) d[jj] = jj < rows ? s[jj * kt] : 0.0f;
            }
    }
}

/* Row chunks per image: one when the batch alone feeds the threads, else
 * enough for ~2^20 multiply-adds per task (from the shape only). */
static int64_t cd_rchunks(int64_t n, int64_t rows, double work_per_image) {
    if (n >= 8) return 1;
    return cd_max(1, cd_min(rows, (int64_t)(work_per_image / (double)(1 << 20))));
}

/* Run a forward-shaped job: pack (from w, or from half weights wh through
 * cvt), then tasks (image, row chunk). */
static bool cd_run_w(cd_job *j, const float *w, const uint16_t *wh, cd_cvt_fn cvt,
                     bool transposed, const float *bias) {
    j->nvec = cd_cdiv(j->cout, CD_VL);
    cd_plan_tiles(j->ow, j->nvec, &j->mt, &j->m, &j->nv);
    const int64_t kt = j->cin * j->kh * j->kw, wfl = kt * j->nvec * CD_VL;
    float *pk = nn__thread_scratch(CD_SLOT_PACK, (size_t)(wfl + j->nvec * CD_VL) * sizeof(float));
    if (!pk) return false;
    if (wh) { /* the stage lives in the task slot: tasks start after packing */
        float *stage = nn__thread_scratch(CD_SLOT_PAD, (size_t)(kt * j->nv * CD_VL) * sizeof(float));
        if (!stage) return false;
        cd_pack_half(wh, cvt, j->cout, j->cin, j->kh, j->kw, j->nv, j->nvec, stage, pk);
    } else {
        cd_pack(w, transposed, j->cout, j->cin, j->kh, j->kw, j->nv, j->nvec, pk);
    }
    j->wpk = pk;
    j->bias = NULL;
    if (bias) {
        float *bp = pk + wfl;
        for (int64_t o = 0; o < j->nvec * CD_VL; o++) bp[o] = o < j->cout ? bias[o] : 0.0f;
        j->bias = bp;
    }
    const int64_t rows = j->pool ? j->oh / 2 : j->oh;
    j->rchunks = cd_rchunks(j->n, rows, (double)(kt * j->cout * j->oh * j->ow));
    j->failed = false;
    const int64_t tasks = j->n * j->rchunks;
    if (tasks == 1)
        cd_fwd_task(j, 0, 0);
    else
        nn__parallel_for_max(tasks, nn__threads_for(tasks * kt * j->cout * rows * j->ow, 1 << 18),
                             cd_fwd_task, j);
    return !j->failed;
}

static bool cd_run(cd_job *j, const float *w, bool transposed, const float *bias) {
    return cd_run_w(j, w, NULL, NULL, transposed, bias);
}

/* ------------------------------------------- forward, few input channels */

/* With one to CF_CMAX input channels (a network's first layer) the tile
 * above has cin*kh*kw taps only, too few to pay for its transpose and its
 * epilogue. The fused forward with the 2x2 pool vectorises the output
 * pixels of a row instead: the register tile is 2 output rows (one pooled
 * row) x CF_NX vectors of pixels x OB (<= CF_OB) output channels. Every
 * input vector (a row of the padded copy, shifted by kx) is loaded once
 * and used by both rows and every channel of the block (weights
 * broadcast); the pool (rows, then pixel pairs), the bias and the ReLU run
 * in registers after the sums (max(a) + b = max(a + b) and the ReLU
 * commutes with the max, both exactly, rounding being monotonic) and only
 * the pooled NCHW output is stored. Unit stride and dilation. Each output
 * is summed over (c, ky, kx) in that order; a tile with a NaN pools by the
 * NaN rule (cd_max_nan), one without by plain max (the same values). The
 * unpooled forward keeps the tile above (measured: this one is no faster
 * when the whole output is stored). */
#define CF_CMAX 4
#define CF_KMAX 7

/* A few-channel job. */
typedef struct cf_job {
    const float *x; /* [n][cin][ih][iw] */
    int64_t n, cin, ih, iw, pt, pl, kh, kw;
    int64_t cout, oh, ow; /* conv output, stored pooled: [oh/2][ow/2] */
    float *y;
    const float *wpk;   /* weights: block [c][ky][kx][ob] at block start * kt */
    const float *bias;  /* or NULL */
    bool relu;
    int64_t ntx, wpf;   /* x tiles of CF_NX*VL pixels; padded row width */
    int64_t pairs;      /* row pairs per image: the pooled rows */
    int64_t nblk, rchunks;
    bool failed;
} cf_job;

/* Channels [o0, o0 + OB) of output rows 2 pr, 2 pr + 1, pixels [x0, x0 +
 * CF_NX*VL), pooled into row pr of y: xp is the padded copy at that pair's first input row and
 * column x0 (channel stride cs, row stride rs); wp the block's packed
 * weights [c][ky][kx][OB]. */
NN_INLINE void cf_tile(const int OB, const int K3, const cf_job *j, const float *xp, int64_t cs, int64_t rs,
                       const float *restrict wp, int64_t o0, int64_t n, int64_t pr, int64_t x0) {
    cd_vec acc[CF_OB][2][CF_NX];
#pragma GCC unroll 8
    for (int o = 0; o < OB; o++) {
#pragma GCC unroll 4
        for (int v = 0; v < CF_NX; v++) acc[o][0][v] = acc[o][1][v] = cd_zero();
    }
    const int64_t kh = K3 ? 3 : j->kh, kw = K3 ? 3 : j->kw, krow = kw * OB;
    for (int64_t c = 0; c < j->cin; c++) {
        const float *wc = wp + c * kh * krow;
        for (int64_t ky = 0; ky < kh; ky++) { /* input rows ky (row 0) and ky + 1 (row 1) */
            const float *xr = xp + c * cs + ky * rs;
#pragma GCC unroll 3
            for (int64_t kx = 0; kx < kw; kx++) {
                cd_vec x0v[CF_NX], x1v[CF_NX];
#pragma GCC unroll 4
                for (int v = 0; v < CF_NX; v++) {
                    x0v[v] = cd_loadu(xr + kx + v * CD_VL);
                    x1v[v] = cd_loadu(xr + rs + kx + v * CD_VL);
                }
                const float *w0 = wc + ky * krow + kx * OB;
#pragma GCC unroll 8
                for (int o = 0; o < OB; o++) {
                    const cd_vec wv = cd_set1(w0[o]);
#pragma GCC unroll 4
                    for (int v = 0; v < CF_NX; v++) {
                        acc[o][0][v] = cd_fma(x0v[v], wv, acc[o][0][v]);
                        acc[o][1][v] = cd_fma(x1v[v], wv, acc[o][1][v]);
                    }
                }
            }
        }
    }
    /* max over the row pair, then over pixel pairs; bias and ReLU after */
    const int64_t py = j->oh / 2, px = j->ow / 2;
    const int np = (int)cd_min(CD_VL * CF_NX / 2, px - x0 / 2);
#pragma GCC unroll 8
    for (int o = 0; o < OB; o++) {
        float *dst = j->y + ((n * j->cout + o0 + o) * py + pr) * px + x0 / 2;
#pragma GCC unroll 2
        for (int v = 0; v < CF_NX; v += 2) {
            const cd_vec a0 = acc[o][0][v], a1 = acc[o][1][v];
            const cd_vec b0 = acc[o][0][v + 1], b1 = acc[o][1][v + 1];
            cd_vec m;
            if (!cd_any_nan(a0, a1) && !cd_any_nan(b0, b1)) /* plain max is the rule */
                m = cd_pool_pairs(cd_maxf(a0, a1), cd_maxf(b0, b1), false);
            else
                m = cd_pool_pairs(cd_max_nan(a0, a1), cd_max_nan(b0, b1), true);
            if (j->bias) m = cd_add(m, cd_set1(j->bias[o0 + o])); /* max(a) + b: exact */
            if (j->relu) m = cd_relu(m);
            const int cnt = np - v / 2 * CD_VL;
            if (cnt > 0) cd_store_n(dst + v / 2 * CD_VL, m, cnt);
        }
    }
}

#define CF_CASE(OB)                                                                                \
    case OB:                                                                                       \
        if (k3)                                                                                    \
            cf_tile(OB, 1, j, xp, cs, rs, wp, o0, n, pr, x0);                                      \
        else                                                                                       \
            cf_tile(OB, 0, j, xp, cs, rs, wp, o0, n, pr, x0);                                      \
        break;

/* One tile of ob channels; the 3x3 window unrolled. */
static void cf_tile_call(int ob, const cf_job *j, const float *xp, int64_t cs, int64_t rs,
                         const float *wp, int64_t o0, int64_t n, int64_t pr, int64_t x0) {
    const bool k3 = j->kh == 3 && j->kw == 3;
    switch (ob) {
        CF_CASE(1)
        CF_CASE(2)
        CF_CASE(3)
#if CF_OB > 3
        CF_CASE(4)
        CF_CASE(5)
        CF_CASE(6)
#endif
    default: break;
    }
}

/* Block b of the channels: [*o0, *o0 + *ob), blocks as even as can be. */
static void cf_block(const cf_job *j, int64_t b, int64_t *o0, int *ob) {
    const int64_t base = j->cout / j->nblk, extra = j->cout % j->nblk;
    *o0 = b * base + cd_min(b, extra);
    *ob = (int)(base + (b < extra));
}

static void cf_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    cf_job *j = ctx;
    const int64_t n = t / j->rchunks, ch = t % j->rchunks;
    const int64_t per = cd_cdiv(j->pairs, j->rchunks);
    const int64_t lo = ch * per, hi = cd_min(j->pairs, lo + per);
    if (lo >= hi) return;
    const int64_t rows = 2 * (hi - lo) + j->kh - 1; /* input rows of the padded copy */
    float *buf = nn__thread_scratch(CD_SLOT_PAD, (size_t)(j->cin * rows * j->wpf) * sizeof(float));
    if (!buf) {
        __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
        return;
    }
    cd_pad_rows(j->x + n * j->cin * j->ih * j->iw, NULL, j->cin, j->ih, j->iw, j->pt, j->pl,
                2 * lo, rows, j->wpf, buf);
    const int64_t cs = rows * j->wpf, kt = j->cin * j->kh * j->kw;
    for (int64_t pr = lo; pr < hi; pr++)
        for (int64_t tx = 0; tx < j->ntx; tx++) {
            const int64_t x0 = tx * CF_NX * CD_VL;
            const float *xp = buf + 2 * (pr - lo) * j->wpf + x0;
            for (int64_t b = 0; b < j->nblk; b++) {
                int64_t o0;
                int ob;
                cf_block(j, b, &o0, &ob);
                cf_tile_call(ob, j, xp, cs, j->wpf, j->wpk + o0 * kt, o0, n, pr, x0);
            }
        }
}

/* Whether the few-channel path takes the forward of d. */
static bool cf_takes(const nn__conv2d *d) {
    const nn__win2d *g = &d->g;
    return d->c >= 1 && d->c <= CF_CMAX && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
           g->dw == 1 && g->kh <= CF_KMAX && g->kw <= CF_KMAX;
}

static bool cf_direct_fwd_pool(const nn__conv2d *d, const float *x, const float *w,
                               const uint16_t *wh, cd_cvt_fn cvt, const float *bias, bool relu,
                               float *y) {
    const nn__win2d *g = &d->g;
    cf_job j = {.x = x,
                .n = d->n,
                .cin = d->c,
                .ih = d->h,
                .iw = d->w,
                .pt = g->ph,
                .pl = g->pw,
                .kh = g->kh,
                .kw = g->kw,
                .cout = d->o,
                .oh = g->oh,
                .ow = g->ow,
                .y = y,
                .bias = bias,
                .relu = relu};
    j.ntx = cd_cdiv(2 * (g->ow / 2), CF_NX * CD_VL); /* the conv columns the pool reads */
    j.wpf = j.ntx * CF_NX * CD_VL + g->kw - 1;
    j.pairs = g->oh / 2;
    j.nblk = cd_cdiv(d->o, CF_OB);
    const int64_t kt = d->c * g->kh * g->kw;
    float *pk = nn__thread_scratch(CD_SLOT_PACK, (size_t)(kt * d->o) * sizeof(float));
    /* half weights: a block's rows converted into a stage first */
    float *stage = pk && wh ? nn__thread_scratch(CD_SLOT_PAD, (size_t)(kt * CF_OB) * sizeof(float))
                            : NULL;
    if (!pk || (wh && !stage)) return false;
    for (int64_t b = 0; b < j.nblk; b++) { /* block [c][ky][kx][ob] at o0 * kt */
        int64_t o0;
        int ob;
        cf_block(&j, b, &o0, &ob);
        const float *src = w ? w + o0 * kt : stage;
        if (wh) cvt(wh + o0 * kt, stage, (size_t)(ob * kt));
        for (int64_t k = 0; k < kt; k++)
            for (int o = 0; o < ob; o++) pk[o0 * kt + k * ob + o] = src[o * kt + k];
    }
    j.wpk = pk;
    const double work = (double)(kt * d->o * g->oh * g->ow);
    j.rchunks = cd_rchunks(d->n, j.pairs, work);
    j.failed = false;
    const int64_t tasks = d->n * j.rchunks;
    if (tasks == 1)
        cf_task(&j, 0, 0);
    else
        nn__parallel_for_max(tasks, nn__threads_for((int64_t)(work * (double)d->n), 1 << 18),
                             cf_task, &j);
    return !j.failed;
}

/* ------------- forward (+ 2x2 pool), data gradient: Winograd F(2x2, 3x3) */

/* A 3x3 convolution with unit stride and dilation followed by the fused 2x2
 * max pool: every pool window is one 2x2 output tile of Winograd's
 * F(2x2, 3x3), Y = Aᵀ [sum over c of (G g Gᵀ) ⊙ (Bᵀ d B)] A, with d the
 * tile's 4x4 input patch (padded copy, rows and columns 2t .. 2t + 3) and g
 * the 3x3 window: 16 multiplies per 4 outputs instead of 36. Per image (or
 * chunk of tile rows: tasks as in the forward above):
 *  - input transform, vectorised over the tiles of a tile row (even / odd
 *    columns of the padded rows by cd_deint): V[p][c][tile], p = 4i + j;
 *  - 16 products M[p][tile][o] = sum over c of V[p][c][tile] U[p][c][o],
 *    each the channel tile of the forward above (cd_fwd_tile: 1x1 "window",
 *    cin taps, tiles as pixels) on weights transformed once per call,
 *    U = G g Gᵀ, packed like cd_pack's blocks;
 *  - output transform Aᵀ M A in channel vectors, the pool's max (NaN rule),
 *    bias, ReLU; the pooled pixel-major rows are transposed into NCHW.
 * Unpooled (wg_direct_fwd with pool false, wg_direct_bwd_data): the tiles
 * cover ceil(oh/2) x ceil(ow/2) (the padded copy is zero past the input),
 * each tile's 2x2 outputs get the bias and ReLU and those inside the plane
 * are stored (odd sizes: the last tile row / column keeps one), then the
 * pixel-major rows are transposed into NCHW.
 * The rounding differs from the direct kernel's (within the usual Winograd
 * bound: the transforms' constants are 0, ±1, ±1/2); each output's sums
 * run in a fixed order (c, then the transforms), so results do not depend
 * on the threads or the tiling. The pooled forward is taken for at least
 * WG_CMIN input channels (the transforms cost per input and per output
 * channel, the products per pair). */
#define WG_CMIN 8

typedef struct wg_job {
    const float *x, *mask; /* input [n][cin][ih][iw]; mask: ReLU output gating x, or NULL */
    int64_t n, cin, ih, iw, pt, pl;
    int64_t cout, oh, ow; /* conv output [n][cout][oh][ow] */
    bool pool;            /* stored pooled: [n][cout][oh/2][ow/2], one tile each */
    int64_t ty, tx;       /* tiles: pooled oh/2 x ow/2, else ceil(oh/2) x ceil(ow/2) */
    float *y;
    const float *u;    /* [16][cin * nvec*VL], blocks of nv vectors at ob * cin */
    const float *bias; /* padded to nvec*VL, or NULL */
    bool relu;
    int m, nv;      /* product tile: at most m tiles x nv channel vectors */
    int64_t nvec;   /* channel vectors */
    int64_t wpf;    /* padded row width: the columns wg_input reads (wg_run) */
    int64_t rchunks;
    bool failed;
} wg_job;

#include "backend/x86/winograd.h" /* wg_weight */

/* A stride of at least n floats that is an odd number of cache lines: the
 * 16 blocks V[p] (and M[p]) the transforms read or write together then
 * fall into 16 different L1 sets. (With plain strides, 64 channels over 16
 * tiles make 4 KiB blocks: 7x7 and 8x8 planes ran 1.1-1.6x slower than the
 * direct tile on Zen 4, and 1.0-1.3x faster with this.) */
static int64_t wg_stride(int64_t n) {
    const int64_t lines = cd_cdiv(n, 16);
    return 16 * (lines | 1);
}

/* Tile rows [ty0, ty1) of image n. */
static bool wg_rows(const wg_job *j, int64_t n, int64_t ty0, int64_t ty1) {
    const int64_t cin = j->cin, px = j->tx, nty = ty1 - ty0, T = nty * px;
    const int64_t rows = 2 * nty + 2, wpf = j->wpf, ldo = j->nvec * CD_VL;
    /* pixel-major outputs: T pooled, or conv rows [2 ty0, 2 ty0 + orows) */
    const int64_t orows = j->pool ? 0 : cd_min(2 * ty1, j->oh) - 2 * ty0;
    const int64_t npx = j->pool ? T : orows * j->ow;
    float *pad = nn__thread_scratch(CD_SLOT_PAD, (size_t)(cin * rows * wpf) * sizeof(float));
    const int64_t vps = wg_stride(cin * T), mps = wg_stride(T * ldo); /* V[p], M[p] strides */
    float *v =
        nn__thread_scratch(CD_SLOT_ROWS, (size_t)(16 * (vps + mps) + npx * ldo) * sizeof(float));
    if (!pad || !v) return false;
    float *mb = v + 16 * vps, *pb = mb + 16 * mps;
    const int64_t ihw = j->ih * j->iw;
    cd_pad_rows(j->x + n * cin * ihw, j->mask ? j->mask + n * cin * ihw : NULL, cin, j->ih, j->iw,
                j->pt, j->pl, 2 * ty0, rows, wpf, pad);
    /* V = Bᵀ d B, Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]: rows, then columns */
    for (int64_t c = 0; c < cin; c++)
        for (int64_t ty = 0; ty < nty; ty++) {
            const float *r0 = pad + (c * rows + 2 * ty) * wpf;
            for (int64_t tx0 = 0; tx0 < px; tx0 += CD_VL) {
                const int cnt = (int)cd_min(CD_VL, px - tx0);
                cd_vec vv[16];
                wg_input(r0, wpf, tx0, 2 * cnt <= CD_VL, vv);
                float *vo = v + c * T + ty * px + tx0;
                for (int p = 0; p < 16; p++) cd_store_n(vo + p * vps, vv[p], cnt);
            }
        }
    /* M[p] = V[p]ᵀ U[p], tiles as the pixels of the channel tile */
    const cd_geo q = {cin, 1, 1, T, 0, 0};
    const int64_t nbw = (int64_t)j->nv * CD_VL, mt = cd_cdiv(T, j->m);
    for (int p = 0; p < 16; p++)
        for (int64_t ob = 0; ob < ldo; ob += nbw) {
            const int nv = (int)cd_min(j->nv, j->nvec - ob / CD_VL);
            const float *up = j->u + p * cin * ldo + ob * cin;
            int64_t t0 = 0;
            for (int64_t tt = 0; tt < mt; tt++) {
                const int m = (int)(T / mt + (tt < T % mt));
                cd_fwd_call(m, nv, &q, v + p * vps + t0, up, NULL, false,
                            mb + p * mps + t0 * ldo + ob, ldo);
                t0 += m;
            }
        }
    if (j->pool) { /* Y = Aᵀ M A, then max, bias, ReLU */
        for (int64_t t = 0; t < T; t++)
            for (int64_t o0 = 0; o0 < ldo; o0 += CD_VL) {
                const float *bo = j->bias ? j->bias + o0 : NULL;
                cd_storeu(pb + t * ldo + o0, wg_pool_out(mb + t * ldo + o0, mps, bo, j->relu));
            }
        cd_store_t(pb, ldo, T, j->cout, j->y + n * j->cout * j->ty * px + ty0 * px, j->ty * px);
        return true;
    }
    /* Y = Aᵀ M A, + bias, ReLU: the 2x2 outputs of each tile that lie in the
     * plane (odd sizes: the last tile row / column keeps one) */
    const int64_t ow = j->ow;
    for (int64_t t = 0; t < T; t++) {
        const int64_t y0 = 2 * (t / px), x0 = 2 * (t % px);
        const bool down = y0 + 1 < orows, right = x0 + 1 < ow;
        float *dst = pb + (y0 * ow + x0) * ldo;
        for (int64_t o0 = 0; o0 < ldo; o0 += CD_VL) {
            cd_vec yv[4];
            wg_output(mb + t * ldo + o0, mps, yv);
            const cd_vec bv = j->bias ? cd_loadu(j->bias + o0) : cd_zero();
            for (int i = 0; i < 4; i++) {
                if (j->bias) yv[i] = cd_add(yv[i], bv);
                if (j->relu) yv[i] = cd_relu(yv[i]);
            }
            cd_storeu(dst + o0, yv[0]);
            if (right) cd_storeu(dst + ldo + o0, yv[1]);
            if (down) cd_storeu(dst + ow * ldo + o0, yv[2]);
            if (down && right) cd_storeu(dst + (ow + 1) * ldo + o0, yv[3]);
        }
    }
    cd_store_t(pb, ldo, npx, j->cout, j->y + (n * j->cout * j->oh + 2 * ty0) * ow, j->oh * ow);
    return true;
}

static void wg_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    wg_job *j = ctx;
    const int64_t n = t / j->rchunks, ch = t % j->rchunks;
    const int64_t per = cd_cdiv(j->ty, j->rchunks);
    const int64_t lo = ch * per, hi = cd_min(j->ty, lo + per);
    if (lo < hi && !wg_rows(j, n, lo, hi)) __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
}

/* The window every Winograd pass needs: 3x3, unit stride and dilation. */
static bool wg_window(const nn__win2d *g) {
    return g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1;
}

/* The forwards Winograd can run: wg_window and at least half a vector of
 * output channels. */
static bool wg_shape(const nn__conv2d *d) { return 2 * d->o >= CD_VL && wg_window(&d->g); }

/* At most a third more outputs in the 2x2 tiles covering oh x ow than in
 * the plane (the outputs past it are computed and dropped). */
static bool wg_tiles_fit(int64_t oh, int64_t ow) {
    return 3 * (4 * cd_cdiv(oh, 2) * cd_cdiv(ow, 2)) <= 4 * oh * ow;
}

/* Whether the Winograd path takes the fused forward with pool of d. */
static bool wg_takes(const nn__conv2d *d) {
    return wg_shape(d) && d->c >= WG_CMIN && d->g.oh >= 2 && d->g.ow >= 2;
}

/* Unpooled forward and data gradient: Winograd where it measured faster
 * than the direct tile, on a job of cin -> cout channels (the data
 * gradient's: o -> c) and an output plane of oh x ow. Paired runs in one
 * process (bench --case conv_wino: Winograd forced on and off, medians of
 * 21, batch 64 unless said; Zen 4, 2 cores, shared host; ratio = direct
 * time / Winograd time, forward and data gradient, 1 and 2 threads):
 *  - AVX-512: demo conv2 32 -> 64 at 14x14 1.62 / 1.47 (1 thread, 2.78 vs
 *    4.51 ms and 3.26 vs 4.80 ms), 1.62 / 1.44 (2 threads); 64 -> 64
 *    1.72 / 1.68; 16 -> 16 1.17 / 1.14; 8 -> 16 1.06 / 1.19; 28x28 (batch
 *    32) 1.38-1.55; 7x7 (a third of the tiles' outputs dropped) 1.0-1.3,
 *    128 -> 128 1.4; 4x4 1.3; 5x5 (44% dropped) 0.97-1.06; 3x3 0.91-0.99.
 *    Rule: cin >= 8, cout >= 16 and at most a third more tile outputs than
 *    the plane has.
 *  - AVX2 (the same machine, 8 lanes, 16 registers): conv2 1.57 / 1.15;
 *    32 -> 32 at 14x14 1.19 / 1.17, at 28x28 1.38 / 1.34; 16 -> 16 0.94 /
 *    0.99; 8 -> 16 1.02 / 0.83; 64 -> 32 at 9x9 0.88 and at 7x7 0.82 (data
 *    gradients), 64 -> 64 at 7x7 1.0 / 0.98, at 4x4 0.89. Rule: cin >= 16,
 *    cout >= 32, planes of at least 12x12 (and the dropped-output limit). */
#if CD_VL >= 16
#define WG_FAST_CMIN 8
#define WG_FAST_OMIN 16
#define WG_FAST_PLANE 1
#else
#define WG_FAST_CMIN 16
#define WG_FAST_OMIN 32
#define WG_FAST_PLANE 144
#endif

/* The rule above (or nn__backend_force_winograd's mode in tests and the
 * benchmark) for a job that Winograd can run. */
static bool wg_fast_rule(int64_t cin, int64_t cout, int64_t oh, int64_t ow) {
    const int mode = nn__backend_winograd_mode();
    if (mode >= 0) return mode > 0;
    return cin >= WG_FAST_CMIN && cout >= WG_FAST_OMIN && oh * ow >= WG_FAST_PLANE &&
           wg_tiles_fit(oh, ow);
}

/* Whether the unpooled forward of d runs Winograd. */
static bool wg_fwd_fast(const nn__conv2d *d) {
    return wg_shape(d) && d->c >= 1 && wg_fast_rule(d->c, d->o, d->g.oh, d->g.ow);
}

/* Whether the data gradient of d runs Winograd: the forward's shape with c
 * and o swapped, padding at most 2 (the gradient's is 2 - p). */
static bool wg_bwd_fast(const nn__conv2d *d) {
    const nn__win2d *g = &d->g;
    return 2 * d->c >= CD_VL && d->o >= 1 && wg_window(g) && g->ph <= 2 && g->pw <= 2 &&
           wg_fast_rule(d->o, d->c, d->h, d->w);
}

/* Fewer images than threads: an image's tile rows are split over the
 * threads only when its products reach this many (smaller images run one
 * per thread). The demo CNN's conv2 at batch 1 has 3.6M products. On Zen 4
 * (AVX-512 at half width, 118 GFLOP/s per core; 2 threads, ten ABBA pairs
 * of cnn_infer_b1 on a shared host) splitting it measured 71-74 us per
 * image in the fast runs against 72-95 us whole: beside the split itself,
 * a worker that takes part in conv2 is still spinning when fc1's GEMV
 * forks, where one left idle through a 45 us serial conv2 has gone to
 * sleep (WORKER_SPIN_NS) and must be woken. On Zen 5 (full width, 31 us
 * whole) the split had measured slower in paired runs (45-89 us against
 * 32-49), with other work running on the host. */
#define WG_SPLIT_IMAGE_WORK 2e6

/* Run a job whose geometry is set (x .. tx, y, relu): transform the weights
 * U = G g Gᵀ, g the 3x3 windows of w [cout][cin][3][3] (or of half weights
 * wh through cvt) or, transposed (the data gradient), of w [cin][cout][3][3]
 * flipped in both axes; then tasks (image, tile-row chunk). */
static bool wg_run(wg_job *j, const float *w, const uint16_t *wh, cd_cvt_fn cvt, bool transposed,
                   const float *bias) {
    j->nvec = cd_cdiv(j->cout, CD_VL);
    /* wg_input reads 2 VL + 2 columns per VL tiles, VL + 2 for the last
     * vector when it holds at most VL/2 tiles */
    const int64_t last = j->tx - (cd_cdiv(j->tx, CD_VL) - 1) * CD_VL; /* tiles in it */
    j->wpf = 2 * (j->tx - last) + (2 * last <= CD_VL ? CD_VL : 2 * CD_VL) + 2;
    const double work = (double)(j->cin * 9 * j->cout * j->oh * j->ow);
    /* tasks: images, or, with fewer images than threads, tile-row chunks
     * enough for every thread (no output's sums depend on the split) */
    int nt = nn__threads_for((int64_t)(work * (double)j->n), 1 << 18);
    if (j->n < nt && work < WG_SPLIT_IMAGE_WORK) nt = j->n > 1 ? (int)j->n : 1;
    j->rchunks = j->n >= nt ? 1 : cd_min(j->ty, cd_cdiv(nt, j->n));
    int mt;
    cd_plan_tiles(cd_cdiv(j->ty, j->rchunks) * j->tx, j->nvec, &mt, &j->m, &j->nv);
    const int64_t ldo = j->nvec * CD_VL, nbw = (int64_t)j->nv * CD_VL, cin = j->cin;
    const int64_t cout = j->cout, kt = cin * 9;
    float *u = nn__thread_scratch(CD_SLOT_PACK,
                                  (size_t)(16 * cin * ldo + ldo + kt * CD_VL) * sizeof(float));
    /* half weights: each vector of channels' rows converted into a stage */
    float *stage = u && wh ? nn__thread_scratch(CD_SLOT_PAD, (size_t)(kt * CD_VL) * sizeof(float))
                           : NULL;
    if (!u || (wh && !stage)) return false;
    float *wt = u + 16 * cin * ldo + ldo; /* [c][k][lane]: one vector of channels, transposed */
    for (int64_t o0 = 0; o0 < ldo; o0 += CD_VL) { /* VL output channels at a time */
        const int64_t ob = o0 / nbw * nbw, wid = cd_min(nbw, ldo - ob);
        if (transposed) { /* window (o, c) = w[c][o] rotated by 180° */
            for (int64_t c = 0; c < cin; c++)
                for (int k = 0; k < 9; k++)
                    for (int l = 0; l < CD_VL; l++)
                        wt[(c * 9 + k) * CD_VL + l] =
                            o0 + l < cout ? w[(c * cout + o0 + l) * 9 + 8 - k] : 0.0f;
        } else {
            const float *src = w ? w + o0 * kt : stage; /* row l: channel o0 + l */
            if (wh) cvt(wh + o0 * kt, stage, (size_t)(cd_min(CD_VL, cout - o0) * kt));
            for (int64_t k0 = 0; k0 < kt; k0 += CD_VL) {
                const int nk = (int)cd_min(CD_VL, kt - k0);
                cd_vec r[CD_VL];
                for (int l = 0; l < CD_VL; l++)
                    r[l] = o0 + l < cout ? cd_load_n(src + l * kt + k0, nk) : cd_zero();
                cd_transpose(r);
                for (int i = 0; i < nk; i++) cd_storeu(wt + (k0 + i) * CD_VL, r[i]);
            }
        }
        for (int64_t c = 0; c < cin; c++) {
            cd_vec g9[9], uv[16];
            for (int k = 0; k < 9; k++) g9[k] = cd_loadu(wt + (c * 9 + k) * CD_VL);
            wg_weight(g9, uv);
            float *dst = u + ob * cin + c * wid + (o0 - ob);
            for (int p = 0; p < 16; p++) cd_storeu(dst + p * cin * ldo, uv[p]);
        }
    }
    j->u = u;
    j->bias = NULL;
    if (bias) {
        float *bp = u + 16 * cin * ldo;
        for (int64_t o = 0; o < ldo; o++) bp[o] = o < cout ? bias[o] : 0.0f;
        j->bias = bp;
    }
    j->failed = false;
    const int64_t tasks = j->n * j->rchunks;
    if (tasks == 1 || nt == 1)
        for (int64_t t = 0; t < tasks; t++) wg_task(j, t, 0);
    else
        nn__parallel_for_max(tasks, nt, wg_task, j);
    return !j->failed;
}

/* The forward of d (wg_shape) with Winograd: pooled (wg_takes) or not. */
static bool wg_direct_fwd(const nn__conv2d *d, const float *x, const float *w, const uint16_t *wh,
                          cd_cvt_fn cvt, const float *bias, bool relu, bool pool, float *y) {
    const nn__win2d *g = &d->g;
    wg_job j = {.x = x,
                .n = d->n,
                .cin = d->c,
                .ih = d->h,
                .iw = d->w,
                .pt = g->ph,
                .pl = g->pw,
                .cout = d->o,
                .oh = g->oh,
                .ow = g->ow,
                .pool = pool,
                .ty = pool ? g->oh / 2 : cd_cdiv(g->oh, 2),
                .tx = pool ? g->ow / 2 : cd_cdiv(g->ow, 2),
                .y = y,
                .relu = relu};
    return wg_run(&j, w, wh, cvt, false, bias);
}

/* The data gradient of d (wg_shape with the roles of c and o swapped, and
 * padding at most 2) with Winograd: the forward on gy (masked by relu_y > 0
 * when given) padded by 2 - p, with the windows flipped and transposed. */
static bool wg_direct_bwd_data(const nn__conv2d *d, const float *gy, const float *relu_y,
                               const float *w, float *gx) {
    const nn__win2d *g = &d->g;
    wg_job j = {.x = gy,
                .mask = relu_y,
                .n = d->n,
                .cin = d->o,
                .ih = g->oh,
                .iw = g->ow,
                .pt = 2 - g->ph,
                .pl = 2 - g->pw,
                .cout = d->c,
                .oh = d->h,
                .ow = d->w,
                .ty = cd_cdiv(d->h, 2),
                .tx = cd_cdiv(d->w, 2),
                .y = gx};
    return wg_run(&j, w, NULL, NULL, true, NULL);
}

/* Columns the padded view needs: the last tap of the last output. */
static int64_t cd_span(int64_t out, int64_t s, int64_t k, int64_t d) {
    return (out - 1) * s + (k - 1) * d + 1;
}

static bool cd_direct_fwd_w(const nn__conv2d *d, const float *x, const float *w,
                            const uint16_t *wh, cd_cvt_fn cvt, const float *bias, bool relu,
                            bool pool, float *y) {
    const nn__win2d *g = &d->g;
    if (g->sw != 1 || (pool && (g->oh < 2 || g->ow < 2))) return false;
    if (d->n == 0 || d->o == 0) return true;
    cd_job j = {.x = x,
                .n = d->n,
                .cin = d->c,
                .ih = d->h,
                .iw = d->w,
                .pt = g->ph,
                .pl = g->pw,
                .kh = g->kh,
                .kw = g->kw,
                .dh = g->dh,
                .dw = g->dw,
                .sh = g->sh,
                .cout = d->o,
                .oh = g->oh,
                .ow = g->ow,
                .y = y,
                .relu = relu,
                .pool = pool};
    j.hp = cd_span(g->oh, g->sh, g->kh, g->dh);
    j.wp = cd_span(g->ow, 1, g->kw, g->dw);
    j.copy = g->ph > 0 || g->pw > 0 || j.hp > d->h || j.wp > d->w;
    if (d->c == 0) { /* no taps: bias (+ ReLU) only */
        for (int64_t i = 0; i < d->n * d->o; i++) {
            const int64_t ohw = pool ? (g->oh / 2) * (g->ow / 2) : g->oh * g->ow;
            float v = bias ? bias[i % d->o] : 0.0f;
            if (relu && !(v > 0.0f) && v == v) v = 0.0f;
            for (int64_t p = 0; p < ohw; p++) y[i * ohw + p] = v;
        }
        return true;
    }
    if (pool && cf_takes(d)) return cf_direct_fwd_pool(d, x, w, wh, cvt, bias, relu, y);
    if (pool && wg_takes(d)) return wg_direct_fwd(d, x, w, wh, cvt, bias, relu, true, y);
    if (!pool && wg_fwd_fast(d)) return wg_direct_fwd(d, x, w, wh, cvt, bias, relu, false, y);
    return cd_run_w(&j, w, wh, cvt, false, bias);
}

static bool cd_direct_fwd(const nn__conv2d *d, const float *x, const float *w, const float *bias,
                          bool relu, bool pool, float *y) {
    return cd_direct_fwd_w(d, x, w, NULL, NULL, bias, relu, pool, y);
}

static bool cd_direct_bwd_data(const nn__conv2d *d, const float *gy, const float *relu_y,
                               const float *w, float *gx) {
    const nn__win2d *g = &d->g;
    const int64_t pt = (g->kh - 1) * g->dh - g->ph, pl = (g->kw - 1) * g->dw - g->pw;
    if (g->sh != 1 || g->sw != 1 || pt < 0 || pl < 0) return false;
    if (d->n == 0 || d->c == 0) return true;
    if (d->o == 0) {
        memset(gx, 0, (size_t)(d->n * d->c * d->h * d->w) * sizeof(float));
        return true;
    }
    if (wg_bwd_fast(d)) return wg_direct_bwd_data(d, gy, relu_y, w, gx);
    cd_job j = {.x = gy,
                .mask = relu_y,
                .n = d->n,
                .cin = d->o,
                .ih = g->oh,
                .iw = g->ow,
                .pt = pt,
                .pl = pl,
                .kh = g->kh,
                .kw = g->kw,
                .dh = g->dh,
                .dw = g->dw,
                .sh = 1,
                .cout = d->c,
                .oh = d->h,
                .ow = d->w,
                .y = gx};
    j.hp = cd_span(d->h, 1, g->kh, g->dh);
    j.wp = cd_span(d->w, 1, g->kw, g->dw);
    j.copy = true;
    return cd_run(&j, w, true, NULL);
}

/* ------------------------------------------------------ weight gradient */

/* gp[(g*KW + kx) * ldg + v*VL ..] += sum over the image's pixels of
 * x(row offset roff[g] + kx) * dyT[pixel][v*VL ..]. */
NN_INLINE void cd_w_tile(const int G, const int KW, const int NV, const float *xc,
                         const int64_t *roff, const float *restrict dyt, int64_t ldd, int64_t oh,
                         int64_t ow, int64_t rsh, int64_t sw, float *restrict gp, int64_t ldg) {
    cd_vec acc[CD_WACC][CD_NVMAX];
    int64_t off[CD_WACC];
#pragma GCC unroll 16
    for (int g = 0; g < G; g++) off[g] = roff[g];
#pragma GCC unroll 16
    for (int t = 0; t < G * KW; t++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[t][v] = cd_loadu(gp + t * ldg + v * CD_VL);
    for (int64_t oy = 0; oy < oh; oy++) {
        const float *xr = xc + oy * rsh;
        const float *dr = dyt + oy * ow * ldd;
        for (int64_t ox = 0; ox < ow; ox++, xr += sw, dr += ldd) {
            cd_vec dv[CD_NVMAX];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) dv[v] = cd_load(dr + v * CD_VL);
#pragma GCC unroll 16
            for (int g = 0; g < G; g++)
#pragma GCC unroll 4
                for (int kx = 0; kx < KW; kx++) {
                    const cd_vec b = cd_set1(xr[off[g] + kx]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++)
                        acc[g * KW + kx][v] = cd_fma(b, dv[v], acc[g * KW + kx][v]);
                }
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < G * KW; t++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) cd_storeu(gp + t * ldg + v * CD_VL, acc[t][v]);
}

/* The weight tile of G rows x KW taps x NV vectors fits: accumulators, NV
 * gy vectors and a broadcast in the registers, and at most CD_WG rows (one
 * general register each). */
#define CD_WFITS(G, KW, NV) ((G) * (KW) <= CD_WACC && (G) <= CD_WG && CD_FITS((G) * (KW), NV))

#define CD_W_NV(G, KW)                                                                             \
    case G:                                                                                        \
        switch (nv) {                                                                              \
        case 1:                                                                                    \
            if (CD_WFITS(G, KW, 1)) cd_w_tile(G, KW, 1, CD_WARGS);                                 \
            break;                                                                                 \
        case 2:                                                                                    \
            if (CD_WFITS(G, KW, 2)) cd_w_tile(G, KW, 2, CD_WARGS);                                 \
            break;                                                                                 \
        case 3:                                                                                    \
            if (CD_WFITS(G, KW, 3)) cd_w_tile(G, KW, 3, CD_WARGS);                                 \
            break;                                                                                 \
        default:                                                                                   \
            if (CD_WFITS(G, KW, 4)) cd_w_tile(G, KW, 4, CD_WARGS);                                 \
            break;                                                                                 \
        }                                                                                          \
        break;
#define CD_WARGS xc, roff, dyt, ldd, oh, ow, rsh, sw, gp, ldg

#define CD_W_SWITCH(KW)                                                                            \
    switch (g) {                                                                                   \
        CD_W_NV(1, KW)                                                                             \
        CD_W_NV(2, KW)                                                                             \
        CD_W_NV(3, KW)                                                                             \
        CD_W_NV(4, KW)                                                                             \
        CD_W_NV(5, KW)                                                                             \
        CD_W_NV(6, KW)                                                                             \
    default: break;                                                                                \
    }

static void cd_w_call(int g, int kw, int nv, const float *xc, const int64_t *roff, const float *dyt,
                      int64_t ldd, int64_t oh, int64_t ow, int64_t rsh, int64_t sw, float *gp,
                      int64_t ldg) {
    if (kw == 3) {
        CD_W_SWITCH(3)
    } else {
        CD_W_SWITCH(1)
    }
}

/* Rows (c, ky) per weight tile and channel vectors per block for kw taps
 * per row and nvec vectors: the most accumulators that fit. */
static void cd_w_plan(int64_t kw, int64_t nvec, int64_t rows_total, int *g, int *nv) {
    int best = 0;
    *g = 1, *nv = 1;
    for (int cnv = 1; cnv <= CD_NVMAX; cnv++) {
        const int64_t nblk = cd_cdiv(nvec, cnv), bnv = cd_cdiv(nvec, nblk);
        if (bnv != cnv) continue; /* balanced blocks only */
        for (int cg = 1; cg <= CD_WG && cg <= rows_total; cg++) {
            if (!(cg * kw <= CD_WACC && CD_FITS(cg * kw, cnv))) continue;
            const int score = (int)(cg * kw * cnv);
            if (score > best) best = score, *g = cg, *nv = cnv;
        }
    }
}

typedef struct cd_wjob {
    const float *x, *gy, *mask;
    int64_t n, cin, ih, iw, ph, pw, hp, wp;
    int64_t kh, kw, dh, sh, sw;
    int64_t cout, oh, ow;
    int64_t nvec, ldd;   /* channel vectors; gyᵀ row length nvec*VL */
    int g, nv;           /* tile: g rows (c, ky) x kw taps x nv vectors */
    int64_t per, chunks; /* images per chunk, chunks */
    int64_t kt, pstride; /* taps cin*kh*kw; floats per partial: (kt + 1) * ldd */
    float *part;         /* chunks partials [kt + 1][ldd]; row kt: bias sums */
    bool failed;
} cd_wjob;

/* dyt[p][o] = gy[o][p] (0 past cout; 0 where mask <= 0) for one image, and
 * bsum[o] += sum over p. */
static void cd_gy_t(const cd_wjob *j, const float *gy, const float *mask, float *dyt, float *bsum) {
    const int64_t P = j->oh * j->ow;
    for (int64_t o0 = 0; o0 < j->ldd; o0 += CD_VL) {
        cd_vec s = cd_loadu(bsum + o0);
        for (int64_t p0 = 0; p0 < P; p0 += CD_VL) {
            const int np = (int)cd_min(CD_VL, P - p0);
            cd_vec r[CD_VL];
            for (int i = 0; i < CD_VL; i++) {
                const int64_t o = o0 + i;
                r[i] = cd_zero();
                if (o < j->cout) {
                    r[i] = cd_load_n(gy + o * P + p0, np);
                    if (mask) r[i] = cd_gate(r[i], cd_load_n(mask + o * P + p0, np));
                }
            }
            cd_transpose(r);
            for (int i = 0; i < np; i++) {
                cd_storeu(dyt + (p0 + i) * j->ldd + o0, r[i]);
                s = cd_add(s, r[i]);
            }
        }
        cd_storeu(bsum + o0, s);
    }
}

static void cd_w_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    cd_wjob *j = ctx;
    float *part = j->part + t * j->pstride;
    memset(part, 0, (size_t)j->pstride * sizeof(float));
    const int64_t P = j->oh * j->ow;
    float *pad = nn__thread_scratch(CD_SLOT_PAD, (size_t)(j->cin * j->hp * j->wp) * sizeof(float));
    float *dyt = nn__thread_scratch(CD_SLOT_ROWS, (size_t)(P * j->ldd) * sizeof(float));
    if (!pad || !dyt) {
        __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
        return;
    }
    const int64_t nbw = (int64_t)j->nv * CD_VL;
    int64_t roff[CD_WG];
    for (int64_t n = t * j->per; n < cd_min(j->n, (t + 1) * j->per); n++) {
        const int64_t ihw = j->ih * j->iw;
        cd_pad_rows(j->x + n * j->cin * ihw, NULL, j->cin, j->ih, j->iw, j->ph, j->pw, 0, j->hp,
                    j->wp, pad);
        cd_gy_t(j, j->gy + n * j->cout * P, j->mask ? j->mask + n * j->cout * P : NULL, dyt,
                part + j->kt * j->ldd);
        const int64_t rows_total = j->cin * j->kh; /* (c, ky) rows */
        for (int64_t r0 = 0; r0 < rows_total; r0 += j->g) {
            const int g = (int)cd_min(j->g, rows_total - r0);
            for (int i = 0; i < g; i++) {
                const int64_t c = (r0 + i) / j->kh, ky = (r0 + i) % j->kh;
                roff[i] = (c * j->hp + ky * j->dh) * j->wp;
            }
            for (int64_t ob = 0; ob < j->ldd; ob += nbw) {
                const int nv = (int)cd_min(j->nv, (j->ldd - ob) / CD_VL);
                cd_w_call(g, (int)j->kw, nv, pad, roff, dyt + ob, j->ldd, j->oh, j->ow,
                          j->sh * j->wp, j->sw, part + r0 * j->kw * j->ldd + ob, j->ldd);
            }
        }
    }
}

typedef struct cd_wsum {
    const cd_wjob *j;
    float *gw;
} cd_wsum;

/* gw[o][tap] += sum over chunks (in order) of part[tap][o], taps [lo, hi). */
static void cd_w_reduce(void *ctx, int64_t lo, int64_t hi, int thread) {
    (void)thread;
    const cd_wsum *s = ctx;
    const cd_wjob *j = s->j;
    float acc[256];
    for (int64_t k = lo; k < hi; k++)
        for (int64_t o0 = 0; o0 < j->cout; o0 += 256) {
            const int64_t no = cd_min(256, j->cout - o0);
            const float *p = j->part + k * j->ldd + o0;
            for (int64_t o = 0; o < no; o++) acc[o] = p[o];
            for (int64_t ch = 1; ch < j->chunks; ch++)
                for (int64_t o = 0; o < no; o++) acc[o] += p[ch * j->pstride + o];
            for (int64_t o = 0; o < no; o++) s->gw[(o0 + o) * j->kt + k] += acc[o];
        }
}

/* The chunks of a weight gradient of `total` multiply-adds (j->n, j->pstride
 * set): fixed by the shape, never by the thread count: at most 16, each of
 * at least 2^18 multiply-adds, and few enough that summing their partials
 * (chunks x pstride adds) costs under 1/32 of the work. (A fixed ~2^22
 * multiply-adds per chunk gave conv1 of the demo CNN, 1 -> 32 channels at
 * batch 64, 3 chunks: 2 threads ran it at 1.1x of one.) Sets per, chunks
 * and part, the partial sums in the caller's scratch (kept between calls:
 * fresh pages would cost more than the sums); false when it cannot be had. */
static bool cd_w_chunks(cd_wjob *j, double total) {
    j->chunks = cd_min(cd_min(j->n, 16), (int64_t)(total / (1 << 18)));
    j->chunks = cd_max(1, cd_min(j->chunks, (int64_t)(total / (32.0 * (double)j->pstride))));
    j->per = cd_cdiv(j->n, j->chunks);
    j->chunks = cd_cdiv(j->n, j->per);
    j->part = nn__thread_scratch(CD_SLOT_PACK, (size_t)(j->chunks * j->pstride) * sizeof(float));
    return j->part != NULL;
}

/* ------------------------------ weight gradient: Winograd F(2x2, 3x3) */

/* 3x3 windows, unit stride and dilation: the adjoint of the Winograd
 * forward. With Y = Aᵀ [sum over c of U[o][c] ⊙ V[c]] A per 2x2 output tile,
 * U = G g Gᵀ and V = Bᵀ d B (wg_weight, wg_input), the gradient of the
 * window g[o][c] is Gᵀ dU[o][c] G with dU[o][c] = sum over tiles of
 * (A dY Aᵀ) ⊙ V[c], dY the tile's 2x2 output gradient (masked; zero past
 * the plane, odd sizes). Per image of a chunk (chunks as the direct path's:
 * fixed by the shape, each with its own partial, added in chunk order),
 * gy is transposed to pixel-major (cd_gy_t: the mask and the bias sums, as
 * the direct path), then per group of tile rows (WGW_GROUP_BYTES):
 *  - the padded input rows are transposed to pixel-major [pixel][c] and
 *    transformed with the channels in lanes: V[p][tile][c], p = 4i + j;
 *  - the gy tiles are transformed, W = A dY Aᵀ: W[p][tile][o];
 *  - 16 products dU[p][c][o] += sum over tiles of V[p][t][c] W[p][t][o]:
 *    a register tile of m input channels (broadcast) x nv vectors of output
 *    channels, accumulated into the chunk's partial.
 * Then the partials are added in chunk order and each (o, c) transformed
 * back (Gᵀ dU G) and added into gw. 16 products per 4 outputs instead of 36,
 * at the cost of the transforms; the rounding is Winograd's (the constants
 * 0, ±1, ±1/2), the order of every sum fixed by the shape. */
typedef struct wgw_job {
    cd_wjob b;        /* x, gy, mask, n, cin, ih, iw, ph, pw, cout, oh, ow, ldd, per, chunks,
                         part, failed (cd_gy_t reads oh, ow, cout, ldd) */
    int64_t ty, tx;   /* tiles: ceil(oh/2) x ceil(ow/2) */
    int64_t gty;      /* tile rows per group (the transforms' working set) */
    int64_t wpf;      /* padded columns the tiles read: 2 tx + 2 */
    int64_t ldc;      /* cin rounded up to vectors */
    int64_t vps, wps; /* strides of V[p] (gty tx ldc) and W[p] (gty tx ldd), wg_stride */
    int m, nv;        /* product tile: m input channels x nv vectors */
} wgw_job;

/* out[i * ldo + v*VL ..] (= 0 first when zero) += sum over t < T of
 * vt[t * ldv + i] * w[t * ldw + v*VL ..], i < M, v < NV. */
NN_INLINE void wgw_tile(const int M, const int NV, const float *restrict vt, int64_t ldv,
                        const float *restrict w, int64_t ldw, int64_t T, bool zero,
                        float *restrict out, int64_t ldo) {
    cd_vec acc[CD_MR][CD_NVMAX];
#pragma GCC unroll 16
    for (int i = 0; i < M; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = zero ? cd_zero() : cd_loadu(out + i * ldo + v * CD_VL);
    for (int64_t t = 0; t < T; t++, vt += ldv, w += ldw) {
        cd_vec wv[CD_NVMAX];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) wv[v] = cd_loadu(w + v * CD_VL);
#pragma GCC unroll 16
        for (int i = 0; i < M; i++) {
            const cd_vec b = cd_set1(vt[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = cd_fma(b, wv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < M; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) cd_storeu(out + i * ldo + v * CD_VL, acc[i][v]);
}

#define WGW_NV(M)                                                                                  \
    case M:                                                                                        \
        switch (nv) {                                                                              \
        case 1: wgw_tile(M, 1, vt, ldv, w, ldw, T, zero, out, ldo); break;                         \
        case 2:                                                                                    \
            if (CD_FITS(M, 2)) wgw_tile(M, 2, vt, ldv, w, ldw, T, zero, out, ldo);                 \
            break;                                                                                 \
        case 3:                                                                                    \
            if (CD_FITS(M, 3)) wgw_tile(M, 3, vt, ldv, w, ldw, T, zero, out, ldo);                 \
            break;                                                                                 \
        default:                                                                                   \
            if (CD_FITS(M, 4)) wgw_tile(M, 4, vt, ldv, w, ldw, T, zero, out, ldo);                 \
            break;                                                                                 \
        }                                                                                          \
        break;

static void wgw_call(int m, int nv, const float *vt, int64_t ldv, const float *w, int64_t ldw,
                     int64_t T, bool zero, float *out, int64_t ldo) {
    switch (m) {
        WGW_NV(1)
        WGW_NV(2)
        WGW_NV(3)
        WGW_NV(4)
        WGW_NV(5)
        WGW_NV(6)
#if CD_MR > 6
        WGW_NV(7)
        WGW_NV(8)
        WGW_NV(9)
        WGW_NV(10)
        WGW_NV(11)
        WGW_NV(12)
        WGW_NV(13)
        WGW_NV(14)
#endif
    default: break;
    }
}

/* dst[p * ldc + c] = src[c * np + p] for c < nc (0 up to ldc), p < np. */
static void wgw_t(const float *src, int64_t nc, int64_t np, float *dst, int64_t ldc) {
    for (int64_t p0 = 0; p0 < np; p0 += CD_VL) {
        const int cnt = (int)cd_min(CD_VL, np - p0);
        for (int64_t c0 = 0; c0 < ldc; c0 += CD_VL) {
            cd_vec r[CD_VL];
            for (int i = 0; i < CD_VL; i++)
                r[i] = c0 + i < nc ? cd_load_n(src + (c0 + i) * np + p0, cnt) : cd_zero();
            cd_transpose(r);
            for (int i = 0; i < cnt; i++) cd_storeu(dst + (p0 + i) * ldc + c0, r[i]);
        }
    }
}

static void wgw_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    wgw_job *j = ctx;
    cd_wjob *b = &j->b;
    const int64_t cin = b->cin, ldc = j->ldc, ldd = b->ldd, P = b->oh * b->ow;
    const int64_t np = (2 * j->gty + 2) * j->wpf, ustride = 16 * cin * ldd;
    /* dU is set by the chunk's first products; the bias sums are added to */
    float *part = b->part + t * b->pstride;
    memset(part + ustride, 0, (size_t)ldd * sizeof(float));
    float *pad = nn__thread_scratch(CD_SLOT_PAD, (size_t)(cin * np) * sizeof(float));
    float *xt = nn__thread_scratch(
        CD_SLOT_ROWS, (size_t)(np * ldc + P * ldd + 16 * (j->vps + j->wps)) * sizeof(float));
    if (!pad || !xt) {
        __atomic_store_n(&b->failed, true, __ATOMIC_RELAXED);
        return;
    }
    float *dyt = xt + np * ldc, *vb = dyt + P * ldd, *wb = vb + 16 * j->vps;
    const int64_t nbw = (int64_t)j->nv * CD_VL, wpf = j->wpf;
    for (int64_t n = t * b->per; n < cd_min(b->n, (t + 1) * b->per); n++) {
        const int64_t ihw = b->ih * b->iw;
        cd_gy_t(b, b->gy + n * b->cout * P, b->mask ? b->mask + n * b->cout * P : NULL, dyt,
                part + ustride);
        for (int64_t g0 = 0; g0 < j->ty; g0 += j->gty) { /* tile rows [g0, g0 + nty) */
            const int64_t nty = cd_min(j->gty, j->ty - g0), T = nty * j->tx;
            cd_pad_rows(b->x + n * cin * ihw, NULL, cin, b->ih, b->iw, b->ph, b->pw, 2 * g0,
                        2 * nty + 2, wpf, pad);
            wgw_t(pad, cin, (2 * nty + 2) * wpf, xt, ldc);
            /* V = Bᵀ d B, channels in lanes: rows, then columns */
            for (int64_t ty = 0; ty < nty; ty++)
                for (int64_t tx = 0; tx < j->tx; tx++) {
                    const float *d = xt + (2 * ty * wpf + 2 * tx) * ldc;
                    float *vo = vb + (ty * j->tx + tx) * ldc;
                    for (int64_t c0 = 0; c0 < ldc; c0 += CD_VL) {
                        cd_vec r[4][4]; /* [row combination][column] */
#pragma GCC unroll 4
                        for (int k = 0; k < 4; k++) {
                            const float *s = d + k * ldc + c0;
                            const cd_vec d0 = cd_loadu(s), d1 = cd_loadu(s + wpf * ldc);
                            const cd_vec d2 = cd_loadu(s + 2 * wpf * ldc);
                            const cd_vec d3 = cd_loadu(s + 3 * wpf * ldc);
                            r[0][k] = cd_sub(d0, d2), r[1][k] = cd_add(d1, d2);
                            r[2][k] = cd_sub(d2, d1), r[3][k] = cd_sub(d1, d3);
                        }
#pragma GCC unroll 4
                        for (int i = 0; i < 4; i++) {
                            float *o = vo + 4 * i * j->vps + c0;
                            cd_storeu(o, cd_sub(r[i][0], r[i][2]));
                            cd_storeu(o + j->vps, cd_add(r[i][1], r[i][2]));
                            cd_storeu(o + 2 * j->vps, cd_sub(r[i][2], r[i][1]));
                            cd_storeu(o + 3 * j->vps, cd_sub(r[i][1], r[i][3]));
                        }
                    }
                }
            /* W = A dY Aᵀ, A = [1 0; 1 1; 1 -1; 0 -1]: columns, then rows */
            for (int64_t ty = 0; ty < nty; ty++)
                for (int64_t tx = 0; tx < j->tx; tx++) {
                    const int64_t y0 = 2 * (g0 + ty), x0 = 2 * tx;
                    const bool down = y0 + 1 < b->oh, right = x0 + 1 < b->ow;
                    const float *s = dyt + (y0 * b->ow + x0) * ldd;
                    float *wo = wb + (ty * j->tx + tx) * ldd;
                    for (int64_t o0 = 0; o0 < ldd; o0 += CD_VL) {
                        const cd_vec z = cd_zero();
                        const cd_vec d00 = cd_loadu(s + o0);
                        const cd_vec d01 = right ? cd_loadu(s + ldd + o0) : z;
                        const cd_vec d10 = down ? cd_loadu(s + b->ow * ldd + o0) : z;
                        const cd_vec d11 = down && right ? cd_loadu(s + (b->ow + 1) * ldd + o0) : z;
                        const cd_vec r0[4] = {d00, cd_add(d00, d01), cd_sub(d00, d01),
                                              cd_sub(z, d01)};
                        const cd_vec r1[4] = {d10, cd_add(d10, d11), cd_sub(d10, d11),
                                              cd_sub(z, d11)};
#pragma GCC unroll 4
                        for (int k = 0; k < 4; k++) {
                            float *o = wo + k * j->wps + o0;
                            cd_storeu(o, r0[k]);
                            cd_storeu(o + 4 * j->wps, cd_add(r0[k], r1[k]));
                            cd_storeu(o + 8 * j->wps, cd_sub(r0[k], r1[k]));
                            cd_storeu(o + 12 * j->wps, cd_sub(z, r1[k]));
                        }
                    }
                }
            /* dU[p][c][o] += sum over tiles of V[p][t][c] W[p][t][o] */
            const int64_t mt = cd_cdiv(cin, j->m);
            for (int p = 0; p < 16; p++)
                for (int64_t ob = 0; ob < ldd; ob += nbw) {
                    const int nv = (int)cd_min(j->nv, (ldd - ob) / CD_VL);
                    int64_t c0 = 0;
                    for (int64_t tt = 0; tt < mt; tt++) {
                        const int m = (int)(cin / mt + (tt < cin % mt));
                        wgw_call(m, nv, vb + p * j->vps + c0, ldc, wb + p * j->wps + ob, ldd, T,
                                 n == t * b->per && g0 == 0, part + (p * cin + c0) * ldd + ob, ldd);
                        c0 += m;
                    }
                }
        }
    }
}

typedef struct wgw_sum {
    const wgw_job *j;
    float *gw;
} wgw_sum;

/* Input channels [lo, hi): dU = the chunks' partials added in chunk order,
 * gw[o][c] += Gᵀ dU[o][c] G, G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]. */
static void wgw_reduce(void *ctx, int64_t lo, int64_t hi, int thread) {
    (void)thread;
    const wgw_sum *s = ctx;
    const cd_wjob *b = &s->j->b;
    const int64_t cin = b->cin, ldd = b->ldd;
    const cd_vec half = cd_set1(0.5f);
    _Alignas(64) float out[9][CD_VL];
    for (int64_t c = lo; c < hi; c++)
        for (int64_t o0 = 0; o0 < b->cout; o0 += CD_VL) {
            cd_vec u[16], h[4][3];
            for (int p = 0; p < 16; p++) {
                const float *q = b->part + (p * cin + c) * ldd + o0;
                u[p] = cd_loadu(q);
                for (int64_t ch = 1; ch < b->chunks; ch++)
                    u[p] = cd_add(u[p], cd_loadu(q + ch * b->pstride));
            }
            for (int i = 0; i < 4; i++) { /* dU G */
                const cd_vec e = cd_mul(half, cd_add(u[4 * i + 1], u[4 * i + 2]));
                h[i][0] = cd_add(u[4 * i], e);
                h[i][1] = cd_mul(half, cd_sub(u[4 * i + 1], u[4 * i + 2]));
                h[i][2] = cd_add(e, u[4 * i + 3]);
            }
            for (int l = 0; l < 3; l++) { /* Gᵀ (dU G) */
                const cd_vec e = cd_mul(half, cd_add(h[1][l], h[2][l]));
                cd_storeu(out[l], cd_add(h[0][l], e));
                cd_storeu(out[3 + l], cd_mul(half, cd_sub(h[1][l], h[2][l])));
                cd_storeu(out[6 + l], cd_add(e, h[3][l]));
            }
            const int64_t no = cd_min(CD_VL, b->cout - o0);
            for (int64_t o = 0; o < no; o++) {
                float *g = s->gw + ((o0 + o) * cin + c) * 9;
                for (int k = 0; k < 9; k++) g[k] += out[k][o];
            }
        }
}

/* Whether the weight gradient of d can run Winograd: 3x3 windows, unit
 * stride and dilation, the usual output size. */
static bool wgw_shape(const nn__conv2d *d) {
    const nn__win2d *g = &d->g;
    return wg_window(g) && g->oh == d->h + 2 * g->ph - 2 && g->ow == d->w + 2 * g->pw - 2 && g->oh >= 1 &&
           g->ow >= 1;
}

/* Where the Winograd weight gradient measured faster than the direct tile
 * (bench --case conv_wino: Winograd forced on and off in one process,
 * medians of 3 x 7 paired runs, batch 64 unless said; Zen 4, 2 cores,
 * shared host; ratio = direct time / Winograd time at 1 thread):
 *  - AVX-512: demo conv2 32 -> 64 at 14x14 1.56-1.62 (3.27-3.71 vs
 *    5.29-5.80 ms), 1.33 at 2 threads; 16 -> 16, 16 -> 32, 32 -> 32, 64 ->
 *    32 at 14x14 1.59-1.68; 8 -> 16 1.20-1.34; 28x28 (batch 32) 1.23-1.67;
 *    odd planes 13, 15, 9 1.29-1.56; 7x7 1.24-1.30; 4x4 1.23-1.27; 5x5
 *    1.10-1.14; 3x3 0.89-0.95; 64 -> 64 at 14x14 1.28-1.71, but 128 ->
 *    128 at 7x7 1.01-1.05 (a chunk's partial, 16 cin cout floats, is 1 MiB:
 *    the L2). Rule: the forward's (wg_fast_rule: cin >= 8, cout >= 16, at
 *    most a third more tile outputs than the plane) and cin * cout <= 8192
 *    (a partial of at most 512 KiB).
 *  - AVX2 (the same machine): faster everywhere measured: conv2 2.17;
 *    8 -> 16 1.45; 128 -> 128 at 7x7 1.90; 5x5 1.60; 3x3 1.15. Rule: cin >=
 *    8 and cout >= 16 (smaller ones are not measured). */
#if CD_VL >= 16
#define WGW_PAIRS_MAX 8192
#define WGW_TILED_RULE 1
#else
#define WGW_PAIRS_MAX INT64_MAX
#define WGW_TILED_RULE 0
#endif

/* The rule above (or nn__backend_force_winograd's mode) for d (wgw_shape). */
static bool wgw_fast(const nn__conv2d *d) {
    const int mode = nn__backend_winograd_mode();
    if (mode >= 0) return mode > 0;
    if (WGW_TILED_RULE && !wg_tiles_fit(d->g.oh, d->g.ow)) return false;
    return d->c >= 8 && d->o >= 16 && d->c <= WGW_PAIRS_MAX / d->o;
}

/* The product tile for cin input channels and nvec vectors of output
 * channels: the most accumulators (m after balancing the cin rows over
 * tiles, times nv; balanced channel blocks only), the fewer vectors on a
 * tie. AVX-512, demo conv2 (32 -> 64): 6 x 4 (24 accumulators) ran 2.96-2.97
 * ms against 3.34-3.42 for the forward plan's 11 x 2 (bench --case
 * conv_wino, 1 thread, alternating), 128 -> 128 at 7x7 9.8-10.1 against
 * 10.8-10.9 ms; AVX2 keeps 6 x 2 (4 x 3 measured the same). */
static void wgw_plan(int64_t cin, int64_t nvec, int *m, int *nv) {
    int64_t best = 0;
    *m = 1, *nv = 1;
    for (int cnv = 1; cnv <= CD_NVMAX && cnv <= nvec; cnv++) {
        if (cd_cdiv(nvec, cd_cdiv(nvec, cnv)) != cnv) continue;
        int cm = 0;
        while (cm < CD_MR && CD_FITS(cm + 1, cnv)) cm++;
        if (cm == 0) continue;
        const int64_t mt = cd_cdiv(cin, cm), meff = cd_cdiv(cin, mt);
        if (meff * cnv > best) best = meff * cnv, *m = (int)meff, *nv = cnv;
    }
}

/* The most bytes of V and W a task transforms at once (wg_direct_bwd_weights). */
#define WGW_GROUP_BYTES (384 * 1024)

/* The weight gradient of d (wgw_shape, n, c, o >= 1) with Winograd; chunks
 * as cd_direct_bwd_weights'. */
static bool wg_direct_bwd_weights(const nn__conv2d *d, const float *x, const float *gy,
                                  const float *relu_y, float *gw, float *gb) {
    const nn__win2d *g = &d->g;
    wgw_job j = {.b = {.x = x,
                       .gy = gy,
                       .mask = relu_y,
                       .n = d->n,
                       .cin = d->c,
                       .ih = d->h,
                       .iw = d->w,
                       .ph = g->ph,
                       .pw = g->pw,
                       .kh = 3,
                       .kw = 3,
                       .dh = 1,
                       .sh = 1,
                       .sw = 1,
                       .cout = d->o,
                       .oh = g->oh,
                       .ow = g->ow}};
    cd_wjob *b = &j.b;
    j.ty = cd_cdiv(g->oh, 2), j.tx = cd_cdiv(g->ow, 2);
    j.wpf = 2 * j.tx + 2;
    b->nvec = cd_cdiv(d->o, CD_VL);
    b->ldd = b->nvec * CD_VL;
    j.ldc = cd_cdiv(d->c, CD_VL) * CD_VL;
    /* tile-row groups (as even as can be) whose V and W take at most
     * WGW_GROUP_BYTES: the transforms' working set stays in the L2, and
     * large planes need no image-sized scratch beyond gyᵀ (the direct
     * path's). Each dU sums its tiles in the same order either way. */
    const int64_t row_bytes = 16 * j.tx * (j.ldc + b->ldd) * (int64_t)sizeof(float);
    const int64_t gmax = cd_max(1, WGW_GROUP_BYTES / row_bytes), groups = cd_cdiv(j.ty, gmax);
    j.gty = cd_cdiv(j.ty, groups);
    const int64_t T = j.gty * j.tx;
    j.vps = wg_stride(T * j.ldc), j.wps = wg_stride(T * b->ldd);
    wgw_plan(d->c, b->nvec, &j.m, &j.nv);
    b->kt = 9 * d->c;
    b->pstride = (16 * d->c + 1) * b->ldd;
    /* chunks: cd_direct_bwd_weights' rule (the direct work) */
    const double total = (double)(b->kt * d->o * g->oh * g->ow) * (double)d->n;
    if (!cd_w_chunks(b, total)) return false;
    b->failed = false;
    if (b->chunks == 1)
        wgw_task(&j, 0, 0);
    else
        nn__parallel_for_max(b->chunks, nn__threads_for((int64_t)total, 1 << 18), wgw_task, &j);
    if (b->failed) return false;
    wgw_sum s = {&j, gw};
    nn__parallel_blocks(d->c, nn__block_size(d->c, 8, 1), wgw_reduce, &s);
    if (gb)
        for (int64_t o = 0; o < d->o; o++) {
            float acc = 0.0f;
            for (int64_t ch = 0; ch < b->chunks; ch++)
                acc += b->part[ch * b->pstride + 16 * d->c * b->ldd + o];
            gb[o] = acc;
        }
    return true;
}

static bool cd_direct_bwd_weights(const nn__conv2d *d, const float *x, const float *gy,
                                  const float *relu_y, float *gw, float *gb) {
    const nn__win2d *g = &d->g;
    if ((g->kw != 1 && g->kw != 3) || g->dw != 1) return false;
    if (d->o == 0) return true;
    if (d->n == 0 || d->c == 0) {
        if (gb) memset(gb, 0, (size_t)d->o * sizeof(float));
        return true;
    }
    if (wgw_shape(d) && wgw_fast(d))
        return wg_direct_bwd_weights(d, x, gy, relu_y, gw, gb);
    cd_wjob j = {.x = x,
                 .gy = gy,
                 .mask = relu_y,
                 .n = d->n,
                 .cin = d->c,
                 .ih = d->h,
                 .iw = d->w,
                 .ph = g->ph,
                 .pw = g->pw,
                 .kh = g->kh,
                 .kw = g->kw,
                 .dh = g->dh,
                 .sh = g->sh,
                 .sw = g->sw,
                 .cout = d->o,
                 .oh = g->oh,
                 .ow = g->ow};
    j.hp = cd_span(g->oh, g->sh, g->kh, g->dh);
    j.wp = cd_span(g->ow, g->sw, g->kw, 1);
    j.nvec = cd_cdiv(d->o, CD_VL);
    j.ldd = j.nvec * CD_VL;
    cd_w_plan(g->kw, j.nvec, d->c * g->kh, &j.g, &j.nv);
    j.kt = d->c * g->kh * g->kw;
    j.pstride = (j.kt + 1) * j.ldd;
    const double work = (double)(j.kt * d->o * g->oh * g->ow);
    const double total = work * (double)d->n;
    if (!cd_w_chunks(&j, total)) return false;
    j.failed = false;
    if (j.chunks == 1)
        cd_w_task(&j, 0, 0);
    else
        nn__parallel_for_max(j.chunks, nn__threads_for((int64_t)(work * (double)d->n), 1 << 18),
                             cd_w_task, &j);
    if (!j.failed) {
        cd_wsum s = {&j, gw};
        nn__parallel_blocks(j.kt, nn__block_size(j.kt, 64, 1), cd_w_reduce, &s);
        if (gb)
            for (int64_t o = 0; o < d->o; o++) {
                float acc = 0.0f;
                for (int64_t ch = 0; ch < j.chunks; ch++)
                    acc += j.part[ch * j.pstride + j.kt * j.ldd + o];
                gb[o] = acc;
            }
    }
    return !j.failed;
}

/* ------------------------------------------------------------- the rule */

/* Which passes the direct kernels take; the front end runs im2col + GEMM
 * for the rest. Measured against im2col + the tier's GEMM through nn_conv2d
 * in the same run (tests/bench: conv_* cases; the README has the figures):
 *  - forward (and the fused ReLU / pool): unit column stride and at least
 *    half a vector of output channels (the vectorised axis: 1 output channel
 *    would use 1 lane in 16);
 *  - forward with the 2x2 pool: also one to CF_CMAX input channels with unit
 *    stride and dilation and a window up to CF_KMAX (the few-channel tile);
 *    3x3 windows with unit stride and dilation and WG_CMIN or more input
 *    channels run Winograd F(2x2, 3x3) (wg_takes), and so do the unpooled
 *    forward and the data gradient of 3x3 windows where wg_fast_rule says;
 *  - data gradient: unit stride, padding within the window's extent (it is
 *    the forward on gy padded by (k-1)*d - p), and at least half a vector of
 *    input channels (its output channels);
 *  - weight gradient: windows 1 or 3 wide without column dilation (the
 *    register tile's taps), any stride, padding and channel count; 3x3
 *    windows with unit stride and dilation run Winograd where wgw_fast
 *    says. */
static unsigned cd_direct_passes(const nn__conv2d *d) {
    const nn__win2d *g = &d->g;
    unsigned p = 0;
    if (g->sw == 1 && 2 * d->o >= CD_VL) p |= NN_CONV_FWD;
    if (g->sw == 1 && (2 * d->o >= CD_VL || cf_takes(d))) p |= NN_CONV_FWD_POOL;
    if (g->sh == 1 && g->sw == 1 && g->ph <= (g->kh - 1) * g->dh && g->pw <= (g->kw - 1) * g->dw &&
        2 * d->c >= CD_VL)
        p |= NN_CONV_BWD_DATA;
    if ((g->kw == 1 || g->kw == 3) && g->dw == 1) p |= NN_CONV_BWD_WEIGHTS;
    return p;
}

/* The forward with half weights w (f16 / bf16 bits, converted by cvt while
 * packing: per block of output channels, never the whole tensor), for
 * backend/half.h's conv_fwd: the passes it takes are the forward ones of
 * cd_direct_passes; the same sums as cd_direct_fwd on the widened weights,
 * bit for bit. */
static unsigned cd_half_passes(const nn__conv2d *d) {
    return cd_direct_passes(d) & (NN_CONV_FWD | NN_CONV_FWD_POOL);
}

static bool cd_direct_fwd_half(const nn__conv2d *d, const float *x, const uint16_t *w,
                               cd_cvt_fn cvt, const float *bias, bool relu, bool pool, float *y) {
    if (!(cd_half_passes(d) & (pool ? NN_CONV_FWD_POOL : NN_CONV_FWD))) return false;
    return cd_direct_fwd_w(d, x, NULL, w, cvt, bias, relu, pool, y);
}

static void cd_fill(nn__conv_kernels *t) {
    t->direct_passes = cd_direct_passes;
    t->direct_fwd = cd_direct_fwd;
    t->direct_bwd_data = cd_direct_bwd_data;
    t->direct_bwd_weights = cd_direct_bwd_weights;
}

#endif
