/* Scaled dot-product attention, computed in tiles (FlashAttention-style) so
 * memory grows with the sequence length T, not with T².
 *
 *   q [*, Tq, D], k [*, Tk, D], v [*, Tk, Dv]  (batch dims * broadcast)
 *   S = scale · q kᵀ (+ additive mask, or -inf where a boolean mask is 0 or
 *       where the causal rule hides a key)                     [*, Tq, Tk]
 *   P = softmax(S) along keys, Pd = P ∘ Z (dropout, Z ∈ {0, 1/(1-p)})
 *   out = Pd v                                                 [*, Tq, Dv]
 *
 * Forward: each task owns one (batch, query tile) block of out. It walks the
 * key tiles once with an online softmax (running row max m and row sum l;
 * out is rescaled by exp(m_old - m_new) whenever the max grows) and keeps
 * only the per-row log-sum-exp L = m + log l for backward. S and P of one
 * tile live in a per-thread workspace of BQ x BK floats.
 *
 * Backward recomputes P = exp(S - L) tile by tile. With Δ_i = dout_i · out_i
 * (= Σ_j P_ij dP_ij even with dropout):
 *   dv_j += Σ_i Pd_ij dout_i        dP_ij = Z_ij (dout_i · v_j)
 *   dS_ij = P_ij (dP_ij - Δ_i)      dk_j += scale Σ_i dS_ij q_i
 *   dq_i += scale Σ_j dS_ij k_j     dmask = dS (additive mask)
 * Two passes keep every task the only writer of its outputs, so results are
 * bit-identical for any thread count: pass A over (batch, key tile) blocks
 * writes dk, dv; pass B over (batch, query tile) blocks writes dq (and dmask).
 *
 * Tile products go through the backend's sgemm (serial inside a task). The
 * causal rule is PyTorch's (torch 1.13 `is_causal`, tril(ones(Tq, Tk))):
 * query i sees keys j <= i (top-left aligned when Tq != Tk); key tiles past
 * the diagonal are skipped. A row that sees no key at all (every key masked)
 * gives zeros and a zero gradient; PyTorch gives NaN there. */
#include "attention_internal.h"
#include "backend/backend.h"
#include "backend/threadpool.h"
#include "nn_ops_internal.h"
#include "ops_internal.h"

#include <math.h>
#include <string.h>

#define BQ 64  /* query rows per tile */
#define BK 128 /* key columns per tile */

static const char *const FN = "nn_scaled_dot_product_attention";

/* Everything a tile needs: geometry, base pointers, per-batch offsets. */
typedef struct sdpa_plan {
    int64_t nb, tq, tk, d, dv;
    int bnd;                      /* batch dims */
    int64_t bshape[NN_MAX_DIMS];  /* broadcast batch shape */
    const float *q, *k, *v;       /* storage bases */
    int64_t qs, ks, vs;           /* row strides (elements) */
    int64_t *qoff, *koff, *voff;  /* [nb] element offsets of each batch entry */
    int64_t *ooff, os;            /* out (and dout): [nb] offsets, row stride */
    const void *mask;             /* storage base or NULL */
    bool mask_bool;               /* u8 keep-mask, else f32 additive */
    int64_t *moff, msi, msj;      /* mask offsets, row and column strides */
    bool causal;
    float scale;
    bool dropout;
    uint64_t seed;
    uint32_t thr;
    float keep_scale;
    nn_tensor *qc, *kc, *vc; /* contiguous copies when an input's rows are not */
} sdpa_plan;

static void plan_free(sdpa_plan *p) {
    nn__free(p->qoff);
    nn__tensor_release(p->qc);
    nn__tensor_release(p->kc);
    nn__tensor_release(p->vc);
    memset(p, 0, sizeof *p);
}

/* Strides of t viewed with the shape `full` (right-aligned broadcasting;
 * 0 along broadcast dims). False when t does not broadcast to full. */
static bool bc_strides(const nn_tensor *t, const int64_t *full, int fnd, int64_t *str) {
    if (t->ndim > fnd) return false;
    for (int d = 0; d < fnd; d++) {
        const int td = d - (fnd - t->ndim);
        if (td < 0) {
            str[d] = 0;
            continue;
        }
        if (t->shape[td] != full[d] && t->shape[td] != 1) return false;
        str[d] = t->shape[td] == 1 ? 0 : t->strides[td];
    }
    return true;
}

/* off[b] = base + Σ idx_d str_d over the batch multi-index of b. */
static void batch_offsets(const int64_t *str, const int64_t *bshape, int bnd, int64_t nb,
                          int64_t base, int64_t *off) {
    int64_t idx[NN_MAX_DIMS] = {0};
    int64_t o = base;
    for (int64_t b = 0; b < nb; b++) {
        off[b] = o;
        for (int d = bnd - 1; d >= 0; d--) {
            idx[d]++;
            o += str[d];
            if (idx[d] < bshape[d]) break;
            o -= str[d] * idx[d];
            idx[d] = 0;
        }
    }
}

/* Whether the kernel can read t's rows in place: unit stride along the last
 * dim and rows at least a row apart (GEMM leading dimension). */
static bool rows_ok(const nn_tensor *t) {
    const int nd = t->ndim;
    const int64_t w = t->shape[nd - 1], rows = t->shape[nd - 2];
    if (w > 1 && t->strides[nd - 1] != 1) return false;
    return rows <= 1 || t->strides[nd - 2] >= (w > 1 ? w : 1);
}

/* Row stride used as the GEMM leading dimension. */
static int64_t row_stride(const nn_tensor *t) {
    const int nd = t->ndim;
    const int64_t w = t->shape[nd - 1];
    if (t->shape[nd - 2] <= 1) return w > 1 ? w : 1;
    return t->strides[nd - 2];
}

/* The five per-batch-entry offset arrays of p (q, k, v, mask, out), one
 * allocation of p->nb entries each; false (error set) when too large or out
 * of memory. */
static bool plan_offsets(sdpa_plan *p) {
    size_t bytes;
    if (!nn__size_mul((size_t)p->nb, 5 * sizeof(int64_t), &bytes))
        return NN__FAIL(NN_ERR_LIMIT, "%s: batch of %lld is too large", FN, (long long)p->nb) !=
               NULL;
    p->qoff = nn__malloc(bytes ? bytes : 1);
    if (!p->qoff) return false;
    p->koff = p->qoff + p->nb;
    p->voff = p->koff + p->nb;
    p->moff = p->voff + p->nb;
    p->ooff = p->moff + p->nb;
    return true;
}
/* Check shapes (fn names the caller) and build the plan. On failure the
 * plan is freed and an error recorded. */
static bool plan_make(nn_tensor *q, nn_tensor *k, nn_tensor *v, nn_tensor *mask, sdpa_plan *p) {
    char s1[128], s2[128], s3[128];
    memset(p, 0, sizeof *p);
    if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2)
        return NN__FAIL(NN_ERR_SHAPE, "%s: q %s, k %s and v %s must have at least 2 dims", FN,
                        nn__shape_str(q->shape, q->ndim, s1, sizeof s1),
                        nn__shape_str(k->shape, k->ndim, s2, sizeof s2),
                        nn__shape_str(v->shape, v->ndim, s3, sizeof s3)) != NULL;
    p->tq = q->shape[q->ndim - 2];
    p->d = q->shape[q->ndim - 1];
    p->tk = k->shape[k->ndim - 2];
    p->dv = v->shape[v->ndim - 1];
    if (k->shape[k->ndim - 1] != p->d || v->shape[v->ndim - 2] != p->tk)
        return NN__FAIL(NN_ERR_SHAPE,
                        "%s: q %s, k %s and v %s do not match (expected q [*, Tq, D], k [*, Tk, D], "
                        "v [*, Tk, Dv])",
                        FN, nn__shape_str(q->shape, q->ndim, s1, sizeof s1),
                        nn__shape_str(k->shape, k->ndim, s2, sizeof s2),
                        nn__shape_str(v->shape, v->ndim, s3, sizeof s3)) != NULL;
    int64_t b1[NN_MAX_DIMS];
    int n1;
    if (!nn__broadcast_shapes(q->shape, q->ndim - 2, k->shape, k->ndim - 2, b1, &n1, FN) ||
        !nn__broadcast_shapes(b1, n1, v->shape, v->ndim - 2, p->bshape, &p->bnd, FN))
        return false;
    if (p->bnd + 2 > NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_SHAPE, "%s: %d batch dims are too many (at most %d)", FN, p->bnd,
                        NN_MAX_DIMS - 2) != NULL;
    if (!nn__shape_numel(p->bshape, p->bnd, &p->nb, FN)) return false;
    int64_t full[NN_MAX_DIMS], str[NN_MAX_DIMS];
    memcpy(full, p->bshape, sizeof(int64_t) * (size_t)p->bnd);
    full[p->bnd] = p->tq;
    full[p->bnd + 1] = p->tk;
    if (mask) {
        if (mask->dtype != NN_DTYPE_U8 && mask->dtype != NN_DTYPE_F32)
            return NN__FAIL(NN_ERR_DTYPE,
                            "%s: attn_mask has dtype %s, expected u8 (boolean, 1 = attend) or f32 "
                            "(added to the scores)",
                            FN, nn_dtype_name(mask->dtype)) != NULL;
        if (!bc_strides(mask, full, p->bnd + 2, str))
            return NN__FAIL(NN_ERR_SHAPE, "%s: attn_mask %s does not broadcast to %s", FN,
                            nn__shape_str(mask->shape, mask->ndim, s1, sizeof s1),
                            nn__shape_str(full, p->bnd + 2, s2, sizeof s2)) != NULL;
    }
    /* from here on only allocation can fail */
    if (!plan_offsets(p)) return false;
    p->os = p->dv;
    for (int64_t b = 0; b < p->nb; b++) p->ooff[b] = b * p->tq * p->dv;
    nn_tensor *const in[3] = {q, k, v};
    nn_tensor **copy[3] = {&p->qc, &p->kc, &p->vc};
    int64_t *offs[3] = {p->qoff, p->koff, p->voff};
    const float **base[3] = {&p->q, &p->k, &p->v};
    int64_t *rs[3] = {&p->qs, &p->ks, &p->vs};
    for (int i = 0; i < 3; i++) {
        const nn_tensor *t = in[i];
        if (!rows_ok(t)) {
            *copy[i] = nn__contig(t);
            if (!*copy[i]) {
                plan_free(p);
                return false;
            }
            t = *copy[i];
        }
        full[p->bnd] = t->shape[t->ndim - 2];
        full[p->bnd + 1] = t->shape[t->ndim - 1];
        bc_strides(t, full, p->bnd + 2, str);
        batch_offsets(str, p->bshape, p->bnd, p->nb, t->offset, offs[i]);
        *base[i] = nn__f32_base(t);
        *rs[i] = row_stride(t);
    }
    if (mask) {
        full[p->bnd] = p->tq;
        full[p->bnd + 1] = p->tk;
        bc_strides(mask, full, p->bnd + 2, str);
        batch_offsets(str, p->bshape, p->bnd, p->nb, mask->offset, p->moff);
        p->mask = nn__raw_base(mask);
        p->mask_bool = mask->dtype == NN_DTYPE_U8;
        p->msi = str[p->bnd];
        p->msj = str[p->bnd + 1];
    }
    return true;
}

/* C = alpha op(A) op(B) + beta C through the backend, tolerating empty
 * dimensions (k == 0 gives beta C). */
static void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    nn__prof_gemm(m, n, k);
    nn__kernels()->gemm.sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* S [nr, nc] (row stride BK) = scale q_i · k_j for rows i0.., keys j0..,
 * then the mask and the causal rule. */
static void score_tile(const sdpa_plan *p, int64_t b, int64_t i0, int64_t nr, int64_t j0,
                       int64_t nc, float *S) {
    gemm(false, true, nr, nc, p->d, p->scale, p->q + p->qoff[b] + i0 * p->qs, p->qs,
         p->k + p->koff[b] + j0 * p->ks, p->ks, 0.0f, S, BK);
    if (p->mask) {
        for (int64_t r = 0; r < nr; r++) {
            float *s = S + r * BK;
            const int64_t mo = p->moff[b] + (i0 + r) * p->msi + j0 * p->msj;
            if (p->mask_bool) {
                const uint8_t *m = (const uint8_t *)p->mask + mo;
                for (int64_t c = 0; c < nc; c++)
                    if (!m[c * p->msj]) s[c] = -INFINITY;
            } else {
                const float *m = (const float *)p->mask + mo;
                for (int64_t c = 0; c < nc; c++) s[c] += m[c * p->msj];
            }
        }
    }
    if (p->causal)
        for (int64_t r = 0; r < nr; r++) {
            /* key j0 + c is hidden from query i0 + r when j0 + c > i0 + r */
            int64_t c0 = i0 + r - j0 + 1;
            if (c0 < 0) c0 = 0;
            for (int64_t c = c0; c < nc; c++) S[r * BK + c] = -INFINITY;
        }
}

/* Keys a query tile [i0, i0 + nr) can see: [0, end). */
static int64_t key_end(const sdpa_plan *p, int64_t i0, int64_t nr) {
    if (!p->causal) return p->tk;
    return i0 + nr < p->tk ? i0 + nr : p->tk;
}

/* Multiply P [nr, nc] by the dropout factors of its block, into Pd. */
static void apply_dropout(const sdpa_plan *p, int64_t b, int64_t i0, int64_t nr, int64_t j0,
                          int64_t nc, const float *P, float *Pd) {
    for (int64_t r = 0; r < nr; r++)
        for (int64_t c = 0; c < nc; c++)
            Pd[r * BK + c] = P[r * BK + c] * nn__sdpa_dropout(p->seed, b, i0 + r, j0 + c, p->tq,
                                                               p->tk, p->thr, p->keep_scale);
}

/* ------------------------------------------------------------- forward */

typedef struct fwd_ctx {
    const sdpa_plan *p;
    float *out; /* storage base; rows at p->ooff, p->os */
    float *lse; /* [nb, tq] or NULL */
    float *ws;  /* per thread: S [BQ * BK], m [BQ], l [BQ] */
    size_t ws_floats;
} fwd_ctx;

static void fwd_task(void *vctx, int64_t task, int thread) {
    const fwd_ctx *c = vctx;
    const sdpa_plan *p = c->p;
    const int64_t nqt = (p->tq + BQ - 1) / BQ, b = task / nqt, i0 = (task % nqt) * BQ;
    const int64_t nr = p->tq - i0 < BQ ? p->tq - i0 : BQ, dv = p->dv;
    float *S = c->ws + (size_t)thread * c->ws_floats, *m = S + BQ * BK, *l = m + BQ;
    const int64_t os = p->os;
    float *O = c->out + p->ooff[b] + i0 * os;
    const nn_kernels *kr = nn__kernels();
    for (int64_t r = 0; r < nr; r++) {
        memset(O + r * os, 0, sizeof(float) * (size_t)dv);
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const int64_t jend = key_end(p, i0, nr);
    for (int64_t j0 = 0; j0 < jend; j0 += BK) {
        const int64_t nc = jend - j0 < BK ? jend - j0 : BK;
        score_tile(p, b, i0, nr, j0, nc, S);
        for (int64_t r = 0; r < nr; r++) {
            float *s = S + r * BK, mx = m[r];
            for (int64_t j = 0; j < nc; j++) mx = s[j] > mx ? s[j] : mx;
            if (mx == -INFINITY) { /* nothing visible yet: P = 0 */
                memset(s, 0, sizeof(float) * (size_t)nc);
                continue;
            }
            const float alpha = expf(m[r] - mx); /* 0 when m[r] is -inf */
            const float sum = kr->eltwise.exp_shift(nc, s, mx);
            l[r] = l[r] * alpha + sum;
            m[r] = mx;
            if (alpha != 1.0f)
                for (int64_t e = 0; e < dv; e++) O[r * os + e] *= alpha;
        }
        if (p->dropout) apply_dropout(p, b, i0, nr, j0, nc, S, S);
        gemm(false, false, nr, dv, nc, 1.0f, S, BK, p->v + p->voff[b] + j0 * p->vs, p->vs, 1.0f,
             O, os);
    }
    for (int64_t r = 0; r < nr; r++) {
        const bool seen = l[r] > 0.0f;
        const float inv = seen ? 1.0f / l[r] : 0.0f;
        for (int64_t e = 0; e < dv; e++) O[r * os + e] *= inv;
        if (c->lse) c->lse[b * p->tq + i0 + r] = seen ? m[r] + logf(l[r]) : -INFINITY;
    }
}

/* ------------------------------------------------------------ backward */

typedef struct bwd_ctx {
    const sdpa_plan *p;
    const float *dout;  /* laid out as out (p->ooff, p->os) */
    const float *lse;   /* [nb, tq] */
    float *delta;       /* [nb, tq]: dout · out per row */
    float *dq, *dk, *dv; /* full-batch gradients (bases) or NULL */
    const int64_t *dqo, *dko, *dvo; /* [nb] offsets of each batch entry's rows */
    int64_t dqs, dks, dvs;          /* their row strides */
    float *dmask;        /* [nb, tq, tk] or NULL */
    bool fused_dq;       /* one key tile: pass A writes dq too, no pass B */
    float *ws;           /* per thread: P, Pd, dS each [BQ * BK] */
    size_t ws_floats;
} bwd_ctx;

/* For the block (b; rows i0.., keys j0..): P = exp(S - L) in P, dS = P (Z dP - Δ)
 * in dS with dP = dout vᵀ, and (with dropout) Pd = P Z in Pdrop. Returns
 * the weights out was made of: Pdrop with dropout, P without. */
static const float *grad_tile(const bwd_ctx *c, int64_t b, int64_t i0, int64_t nr, int64_t j0,
                              int64_t nc, float *P, float *Pdrop, float *dS) {
    const sdpa_plan *p = c->p;
    score_tile(p, b, i0, nr, j0, nc, P);
    const float *L = c->lse + b * p->tq + i0;
    const nn_kernels *kr = nn__kernels();
    for (int64_t r = 0; r < nr; r++) {
        float *s = P + r * BK;
        if (L[r] == -INFINITY) { /* a row that sees no key */
            memset(s, 0, sizeof(float) * (size_t)nc);
            continue;
        }
        kr->eltwise.exp_shift(nc, s, L[r]);
    }
    gemm(false, true, nr, nc, p->dv, 1.0f, c->dout + p->ooff[b] + i0 * p->os, p->os,
         p->v + p->voff[b] + j0 * p->vs, p->vs, 0.0f, dS, BK);
    const float *D = c->delta + b * p->tq + i0;
    if (!p->dropout) {
        for (int64_t r = 0; r < nr; r++)
            for (int64_t j = 0; j < nc; j++)
                dS[r * BK + j] = P[r * BK + j] * (dS[r * BK + j] - D[r]);
        return P;
    }
    for (int64_t r = 0; r < nr; r++)
        for (int64_t j = 0; j < nc; j++) {
            const float z = nn__sdpa_dropout(p->seed, b, i0 + r, j0 + j, p->tq, p->tk, p->thr,
                                             p->keep_scale);
            Pdrop[r * BK + j] = P[r * BK + j] * z;
            dS[r * BK + j] = P[r * BK + j] * (z * dS[r * BK + j] - D[r]);
        }
    return Pdrop;
}

/* Pass A: one (batch, key tile) block of dk and dv. */
static void bwd_kv_task(void *vctx, int64_t task, int thread) {
    const bwd_ctx *c = vctx;
    const sdpa_plan *p = c->p;
    const int64_t nkt = (p->tk + BK - 1) / BK, b = task / nkt, j0 = (task % nkt) * BK;
    const int64_t nc = p->tk - j0 < BK ? p->tk - j0 : BK;
    float *P = c->ws + (size_t)thread * c->ws_floats, *Pdrop = P + BQ * BK, *dS = Pdrop + BQ * BK;
    float *dK = c->dk ? c->dk + c->dko[b] + j0 * c->dks : NULL;
    float *dV = c->dv ? c->dv + c->dvo[b] + j0 * c->dvs : NULL;
    for (int64_t r = 0; r < nc; r++) {
        if (dK) memset(dK + r * c->dks, 0, sizeof(float) * (size_t)p->d);
        if (dV) memset(dV + r * c->dvs, 0, sizeof(float) * (size_t)p->dv);
    }
    /* causal: only queries i >= j0 see this tile */
    const int64_t istart = p->causal ? (j0 / BQ) * BQ : 0;
    for (int64_t i0 = istart; i0 < p->tq; i0 += BQ) {
        const int64_t nr = p->tq - i0 < BQ ? p->tq - i0 : BQ;
        /* causal: keys past the tile's last query get P = 0 and add nothing */
        const int64_t kend = key_end(p, i0, nr) - j0, ncv = kend < nc ? kend : nc;
        const float *Pd = grad_tile(c, b, i0, nr, j0, ncv, P, Pdrop, dS);
        const float *dO = c->dout + p->ooff[b] + i0 * p->os;
        if (dV) gemm(true, false, ncv, p->dv, nr, 1.0f, Pd, BK, dO, p->os, 1.0f, dV, c->dvs);
        if (dK)
            gemm(true, false, ncv, p->d, nr, p->scale, dS, BK, p->q + p->qoff[b] + i0 * p->qs,
                 p->qs, 1.0f, dK, c->dks);
        if (c->fused_dq) /* dq rows of this tile: the only key tile's product */
            gemm(false, false, nr, p->d, ncv, p->scale, dS, BK, p->k + p->koff[b] + j0 * p->ks,
                 p->ks, 0.0f, c->dq + c->dqo[b] + i0 * c->dqs, c->dqs);
    }
}

/* Pass B: one (batch, query tile) block of dq (and of the mask gradient). */
static void bwd_q_task(void *vctx, int64_t task, int thread) {
    const bwd_ctx *c = vctx;
    const sdpa_plan *p = c->p;
    const int64_t nqt = (p->tq + BQ - 1) / BQ, b = task / nqt, i0 = (task % nqt) * BQ;
    const int64_t nr = p->tq - i0 < BQ ? p->tq - i0 : BQ;
    float *P = c->ws + (size_t)thread * c->ws_floats, *Pdrop = P + BQ * BK, *dS = Pdrop + BQ * BK;
    float *dQ = c->dq ? c->dq + c->dqo[b] + i0 * c->dqs : NULL;
    if (dQ)
        for (int64_t r = 0; r < nr; r++) memset(dQ + r * c->dqs, 0, sizeof(float) * (size_t)p->d);
    if (c->dmask) /* keys a causal row cannot see get 0 */
        memset(c->dmask + (b * p->tq + i0) * p->tk, 0, sizeof(float) * (size_t)(nr * p->tk));
    const int64_t jend = key_end(p, i0, nr);
    for (int64_t j0 = 0; j0 < jend; j0 += BK) {
        const int64_t nc = jend - j0 < BK ? jend - j0 : BK;
        grad_tile(c, b, i0, nr, j0, nc, P, Pdrop, dS);
        if (dQ)
            gemm(false, false, nr, p->d, nc, p->scale, dS, BK, p->k + p->koff[b] + j0 * p->ks,
                 p->ks, 1.0f, dQ, c->dqs);
        if (c->dmask)
            for (int64_t r = 0; r < nr; r++)
                memcpy(c->dmask + (b * p->tq + i0 + r) * p->tk + j0, dS + r * BK,
                       sizeof(float) * (size_t)nc);
    }
}

/* ---------------------------------------------------------- front end */

/* The op's parameters, resolved: scale <= 0 means 1/sqrt(D). */
static void plan_params(sdpa_plan *p, bool causal, double scale, double dropout_p, uint64_t seed) {
    p->causal = causal;
    p->scale = (float)(scale > 0.0 ? scale : (p->d > 0 ? 1.0 / sqrt((double)p->d) : 1.0));
    p->dropout = dropout_p > 0.0;
    p->seed = seed;
    p->thr = nn__sdpa_threshold(dropout_p);
    p->keep_scale = dropout_p < 1.0 ? (float)(1.0 / (1.0 - dropout_p)) : 0.0f;
}

/* Per-thread workspace of `per` floats for up to nt threads (NULL + error). */
static float *workspace(int nt, size_t per) {
    size_t n;
    if (!nn__size_mul((size_t)nt, per * sizeof(float), &n))
        return NN__FAIL(NN_ERR_NOMEM, "%s: workspace too large", FN);
    return nn__malloc(n);
}

/* The batch shape followed by two dims. */
static int full_shape(const sdpa_plan *p, int64_t r, int64_t c, int64_t *shape) {
    memcpy(shape, p->bshape, sizeof(int64_t) * (size_t)p->bnd);
    shape[p->bnd] = r;
    shape[p->bnd + 1] = c;
    return p->bnd + 2;
}

/* A new full-batch gradient buffer [batch, r, c] (NULL when not wanted). */
static bool grad_buffer(bool want, const sdpa_plan *p, int64_t r, int64_t c, nn_tensor **t) {
    *t = NULL;
    if (!want) return true;
    int64_t shape[NN_MAX_DIMS];
    const int nd = full_shape(p, r, c, shape);
    *t = nn__tensor_new(NN_DTYPE_F32, shape, nd);
    return *t != NULL;
}

/* The gradient of input t from its full-batch gradient (consumed). */
static nn_tensor *reduce_grad(nn_tensor *full, const nn_tensor *t) {
    if (!full || nn__same_shape(full, t)) return full;
    nn_tensor *r = nn__sum_to_shape(full, t->shape, t->ndim);
    nn__tensor_release(full);
    return r;
}

/* Δ, then the passes (c->delta has nb * tq floats; O laid out as out). */
static void bwd_run(bwd_ctx *c, const float *O, int nt) {
    const sdpa_plan *p = c->p;
    float *delta = c->delta;
    /* Δ_i = dout_i · out_i */
    for (int64_t b = 0; b < p->nb; b++)
        for (int64_t i = 0; i < p->tq; i++) {
            const float *o = O + p->ooff[b] + i * p->os, *g = c->dout + p->ooff[b] + i * p->os;
            double s = 0.0;
            for (int64_t e = 0; e < p->dv; e++) s += (double)g[e] * o[e];
            delta[b * p->tq + i] = (float)s;
        }
    /* Tk <= BK: every pass-A task covers whole query rows, so it writes dq
     * too and the scores are recomputed once instead of twice. */
    c->fused_dq = c->dq && !c->dmask && (c->dk || c->dv) && p->tk <= BK;
    if (c->dk || c->dv) nn__parallel_for_max(p->nb * ((p->tk + BK - 1) / BK), nt, bwd_kv_task, c);
    if ((c->dq && !c->fused_dq) || c->dmask)
        nn__parallel_for_max(p->nb * ((p->tq + BQ - 1) / BQ), nt, bwd_q_task, c);
}

/* What both SDPA forwards keep for their backward (node NULL: no graph):
 * saved[0] = out (alias), saved[1] = lse (taken), i[0] = causal, i[1] = the
 * dropout seed, f[1] = p. Returns out, or NULL (out released) when the alias
 * cannot be made; lse is released when not kept. */
static nn_tensor *save_for_backward(nn_node *node, nn_tensor *out, nn_tensor *lse, bool is_causal,
                                    uint64_t seed, double dropout_p) {
    if (node) {
        node->saved[0] = nn__alias(out);
        node->saved[1] = lse;
        lse = NULL;
        node->i[0] = is_causal;
        memcpy(&node->i[1], &seed, sizeof seed);
        node->f[1] = dropout_p;
        if (!node->saved[0]) {
            nn__tensor_release(out);
            out = NULL;
        }
    }
    nn__tensor_release(lse);
    return nn__track(out);
}

/* saved[0] = out (alias), saved[1] = log-sum-exp [nb * tq];
 * i[0] = causal, i[1] = dropout seed; f[0] = scale as given, f[1] = p. */
static nn_status sdpa_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *q = nd->inputs[0], *k = nd->inputs[1], *v = nd->inputs[2], *mask = nd->inputs[3];
    sdpa_plan p;
    /* shapes were checked in forward: only allocation can fail here */
    if (!plan_make(q, k, v, mask, &p)) return NN_ERR_NOMEM;
    uint64_t seed;
    memcpy(&seed, &nd->i[1], sizeof seed);
    plan_params(&p, nd->i[0] != 0, nd->f[0], nd->f[1], seed);
    nn_tensor *g[4] = {NULL, NULL, NULL, NULL};
    float *delta = NULL, *ws = NULL;
    const int nt = nn__pool_threads();
    const size_t per = (size_t)3 * BQ * BK;
    bool ok = grad_buffer(nn__ops_wants(nd, 0), &p, p.tq, p.d, &g[0]) &&
              grad_buffer(nn__ops_wants(nd, 1), &p, p.tk, p.d, &g[1]) &&
              grad_buffer(nn__ops_wants(nd, 2), &p, p.tk, p.dv, &g[2]) &&
              grad_buffer(mask && nn__ops_wants(nd, 3), &p, p.tq, p.tk, &g[3]) &&
              (delta = nn__malloc(sizeof(float) * (size_t)(p.nb * p.tq + 1))) != NULL &&
              (ws = workspace(nt, per)) != NULL;
    if (!ok) goto fail;
    int64_t *go = nn__malloc(sizeof(int64_t) * (size_t)(3 * p.nb + 1));
    if (!go) goto fail;
    for (int64_t b = 0; b < p.nb; b++) {
        go[b] = b * p.tq * p.d;
        go[p.nb + b] = b * p.tk * p.d;
        go[2 * p.nb + b] = b * p.tk * p.dv;
    }
    bwd_ctx c = {&p, nn__f32(gout), nn__f32(nd->saved[1]), delta, g[0] ? nn__f32(g[0]) : NULL,
                 g[1] ? nn__f32(g[1]) : NULL, g[2] ? nn__f32(g[2]) : NULL,
                 go, go + p.nb, go + 2 * p.nb, p.d, p.d, p.dv,
                 g[3] ? nn__f32(g[3]) : NULL, false, ws, per};
    bwd_run(&c, nn__f32(nd->saved[0]), nt);
    nn__free(go);
    nn_tensor *const in[4] = {q, k, v, mask};
    for (int i = 0; i < 4; i++) {
        if (!g[i]) continue;
        gin[i] = reduce_grad(g[i], in[i]);
        g[i] = NULL;
        if (!gin[i]) goto fail;
    }
    nn__free(delta);
    nn__free(ws);
    plan_free(&p);
    return NN_OK;
fail:
    for (int i = 0; i < 4; i++) nn__tensor_release(g[i]);
    nn__free(delta);
    nn__free(ws);
    plan_free(&p);
    return NN_ERR_NOMEM;
}

nn_tensor *nn_scaled_dot_product_attention(nn_tensor *q, nn_tensor *k, nn_tensor *v,
                                           nn_tensor *attn_mask, bool is_causal, double dropout_p,
                                           double scale, nn_generator *g) {
    NN__PROF_OP("nn_scaled_dot_product_attention");
    if (!nn__check_f32(q, FN, "q") || !nn__check_f32(k, FN, "k") || !nn__check_f32(v, FN, "v"))
        return NULL;
    if (attn_mask && !nn__check_tensor(attn_mask, FN, "attn_mask")) return NULL;
    if (!(dropout_p >= 0.0 && dropout_p <= 1.0))
        return NN__FAIL(NN_ERR_INVALID, "%s: dropout_p = %g, expected 0 <= dropout_p <= 1", FN,
                        dropout_p);
    if (!isfinite(scale))
        return NN__FAIL(NN_ERR_INVALID, "%s: scale = %g, expected a finite number (<= 0: 1/sqrt(D))",
                        FN, scale);
    if (!nn__check_gen(g, FN)) return NULL;
    sdpa_plan p;
    if (!plan_make(q, k, v, attn_mask, &p)) return NULL;
    const uint64_t seed = dropout_p > 0.0 ? nn__gen_next(nn__gen(g)) : 0;
    plan_params(&p, is_causal, scale, dropout_p, seed);
    nn_tensor *const in[4] = {q, k, v, attn_mask};
    const bool need = nn__needs_grad(in, 4);
    int64_t shape[NN_MAX_DIMS];
    const int ond = full_shape(&p, p.tq, p.dv, shape);
    const int nt = nn__pool_threads();
    const size_t per = (size_t)BQ * BK + 2 * BQ;
    int64_t nlse = p.nb * p.tq;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, shape, ond);
    nn_tensor *lse = out && need ? nn__tensor_new(NN_DTYPE_F32, &nlse, 1) : NULL;
    float *ws = out && (lse || !need) ? workspace(nt, per) : NULL;
    if (!ws) {
        nn__tensor_release(out);
        nn__tensor_release(lse);
        plan_free(&p);
        return NULL;
    }
    fwd_ctx c = {&p, nn__f32(out), lse ? nn__f32(lse) : NULL, ws, per};
    nn__parallel_for_max(p.nb * ((p.tq + BQ - 1) / BQ), nt, fwd_task, &c);
    nn__free(ws);
    plan_free(&p);
    nn_node *node = NULL;
    out = nn__ops_record(out, FN, sdpa_backward, in, 4, &node);
    if (node) node->f[0] = scale;
    return save_for_backward(node, out, lse, is_causal, seed, dropout_p);
}

/* ------------------------------------------------ packed q, k, v (GPT) */

/* The plan of nn__sdpa_packed over x [B, T, 3C] contiguous (each row q | k |
 * v, each C = H x D): batch entry b H + h reads head h's columns in place
 * (row stride 3C) and writes out [B, T, C] at the same columns (row stride
 * C), the layout a following linear layer reads. */
static bool plan_packed(const nn_tensor *x, int64_t H, sdpa_plan *p) {
    memset(p, 0, sizeof *p);
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2] / 3, D = C / H;
    p->nb = B * H;
    p->tq = p->tk = T;
    p->d = p->dv = D;
    p->bnd = 2;
    p->bshape[0] = B;
    p->bshape[1] = H;
    if (!plan_offsets(p)) return false;
    p->q = p->k = p->v = nn__f32_base(x);
    p->qs = p->ks = p->vs = 3 * C;
    p->os = C;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t bi = b * H + h, base = x->offset + b * T * 3 * C + h * D;
            p->qoff[bi] = base;
            p->koff[bi] = base + C;
            p->voff[bi] = base + 2 * C;
            p->ooff[bi] = b * T * C + h * D;
        }
    return true;
}

/* saved[0] = out (alias), saved[1] = log-sum-exp [B H T]; i[0] = causal,
 * i[1] = dropout seed, i[2] = heads; f[1] = p. One gradient [B, T, 3C],
 * written in place by the passes (no zero fill, no copies, no adds). */
static nn_status sdpa_packed_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *qkv = nd->inputs[0];
    nn_tensor *x = nn__contig(qkv), *gc = x ? nn__contig(gout) : NULL, *gq = NULL;
    float *delta = NULL, *ws = NULL;
    int64_t *go = NULL;
    sdpa_plan p;
    memset(&p, 0, sizeof p);
    if (!gc || !plan_packed(x, nd->i[2], &p)) goto fail;
    uint64_t seed;
    memcpy(&seed, &nd->i[1], sizeof seed);
    plan_params(&p, nd->i[0] != 0, 0.0, nd->f[1], seed);
    const int nt = nn__pool_threads();
    const size_t per = (size_t)3 * BQ * BK;
    const int64_t H = nd->i[2], C = qkv->shape[2] / 3, T = p.tq;
    if (!(gq = nn__tensor_new(NN_DTYPE_F32, qkv->shape, qkv->ndim)) ||
        !(delta = nn__malloc(sizeof(float) * (size_t)(p.nb * p.tq + 1))) ||
        !(ws = workspace(nt, per)) ||
        !(go = nn__malloc(sizeof(int64_t) * (size_t)(3 * p.nb + 1))))
        goto fail;
    for (int64_t bi = 0; bi < p.nb; bi++) {
        const int64_t base = (bi / H) * T * 3 * C + (bi % H) * p.d;
        go[bi] = base;
        go[p.nb + bi] = base + C;
        go[2 * p.nb + bi] = base + 2 * C;
    }
    float *G = nn__f32(gq);
    bwd_ctx c = {&p, nn__f32(gc), nn__f32(nd->saved[1]), delta, G, G, G, go, go + p.nb,
                 go + 2 * p.nb, 3 * C, 3 * C, 3 * C, NULL, false, ws, per};
    bwd_run(&c, nn__f32(nd->saved[0]), nt);
    gin[0] = gq;
    gq = NULL;
fail:;
    const nn_status st = gin[0] ? NN_OK : NN_ERR_NOMEM;
    nn__tensor_release(gq);
    nn__tensor_release(x);
    nn__tensor_release(gc);
    nn__free(delta);
    nn__free(ws);
    nn__free(go);
    plan_free(&p);
    return st;
}

nn_tensor *nn__sdpa_packed(nn_tensor *qkv, int64_t heads, bool is_causal, double dropout_p,
                           nn_generator *g) {
    NN__PROF_OP("nn_scaled_dot_product_attention");
    if (!nn__check_f32(qkv, FN, "qkv")) return NULL;
    if (qkv->ndim != 3 || heads < 1 || qkv->shape[2] % (3 * heads) != 0) {
        char s1[128];
        return NN__FAIL(NN_ERR_SHAPE,
                        "%s: packed qkv %s with %lld heads, expected [B, T, 3 C] with C a "
                        "multiple of the heads",
                        FN, nn__shape_str(qkv->shape, qkv->ndim, s1, sizeof s1),
                        (long long)heads);
    }
    if (!(dropout_p >= 0.0 && dropout_p <= 1.0))
        return NN__FAIL(NN_ERR_INVALID, "%s: dropout_p = %g, expected 0 <= dropout_p <= 1", FN,
                        dropout_p);
    if (!nn__check_gen(g, FN)) return NULL;
    nn_tensor *x = nn__contig(qkv);
    sdpa_plan p;
    if (!x || !plan_packed(x, heads, &p)) {
        nn__tensor_release(x);
        return NULL;
    }
    const uint64_t seed = dropout_p > 0.0 ? nn__gen_next(nn__gen(g)) : 0;
    plan_params(&p, is_causal, 0.0, dropout_p, seed);
    const bool need = nn__needs_grad(&qkv, 1);
    const int64_t shape[3] = {qkv->shape[0], qkv->shape[1], qkv->shape[2] / 3};
    const int nt = nn__pool_threads();
    const size_t per = (size_t)BQ * BK + 2 * BQ;
    int64_t nlse = p.nb * p.tq;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, shape, 3);
    nn_tensor *lse = out && need ? nn__tensor_new(NN_DTYPE_F32, &nlse, 1) : NULL;
    float *ws = out && (lse || !need) ? workspace(nt, per) : NULL;
    if (!ws) {
        nn__tensor_release(out);
        nn__tensor_release(lse);
        nn__tensor_release(x);
        plan_free(&p);
        return NULL;
    }
    fwd_ctx c = {&p, nn__f32(out), lse ? nn__f32(lse) : NULL, ws, per};
    nn__parallel_for_max(p.nb * ((p.tq + BQ - 1) / BQ), nt, fwd_task, &c);
    nn__free(ws);
    plan_free(&p);
    nn__tensor_release(x);
    nn_node *node = NULL;
    out = nn__ops_record(out, FN, sdpa_packed_backward, &qkv, 1, &node);
    if (node) node->i[2] = heads;
    return save_for_backward(node, out, lse, is_causal, seed, dropout_p);
}
