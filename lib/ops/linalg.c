/* Linear algebra ops: matmul (torch.matmul semantics) and linear.
 * Every product goes through the backend's sgemm; transposed operands are
 * passed as transpose flags, never copied. Forward and backward side by side. */
#include "backend/backend.h"
#include "nn_ops_internal.h"
#include "ops/linear_fuse.h"

#include <string.h>

/* ------------------------------------------------------------------ matmul */

/* How a (possibly batched, broadcast) matmul maps onto 2-D products.
 * a is promoted to [.., m, k] (1-D a: [1, k]), b to [.., k, n] (1-D b:
 * [k, 1]); batch dims broadcast. astr/bstr give, per output batch dim, the
 * step in whole matrices of a / b (0 where that operand is broadcast). */
typedef struct {
    int64_t m, k, n;
    int nb;
    int64_t bshape[NN_MAX_DIMS];
    int64_t astr[NN_MAX_DIMS], bstr[NN_MAX_DIMS];
    int64_t batch;  /* product of bshape */
    bool b_batched; /* b has batch dims (else b is one matrix for all) */
    int64_t out_shape[NN_MAX_DIMS];
    int out_ndim;
} mm_plan;

/* Per output batch dim, the matrix stride of an operand with batch dims
 * shape[0..n) aligned to the right of the nb output batch dims. */
static void mm_batch_strides(const int64_t *shape, int n, const int64_t *bshape, int nb,
                             int64_t *str) {
    int64_t s = 1;
    for (int i = nb - 1; i >= 0; i--) {
        int ai = i - (nb - n);
        if (ai < 0) {
            str[i] = 0;
            continue;
        }
        str[i] = (shape[ai] == 1 && bshape[i] != 1) ? 0 : s;
        s *= shape[ai];
    }
}

static bool mm_plan_make(const nn_tensor *a, const nn_tensor *b, mm_plan *p, const char *fn) {
    int an = a->ndim, bn = b->ndim;
    char sa[128], sb[128];
    if (an < 1 || bn < 1) {
        nn__err(NN_ERR_SHAPE, "%s: both arguments need at least 1 dim, got shapes %s and %s", fn,
                nn__shape_str(a->shape, an, sa, sizeof sa),
                nn__shape_str(b->shape, bn, sb, sizeof sb));
        return false;
    }
    p->m = an == 1 ? 1 : a->shape[an - 2];
    p->k = a->shape[an - 1];
    int64_t kb = bn == 1 ? b->shape[0] : b->shape[bn - 2];
    p->n = bn == 1 ? 1 : b->shape[bn - 1];
    if (kb != p->k) {
        nn__err(NN_ERR_SHAPE, "%s: shapes %s and %s are incompatible (inner dims %lld vs %lld)", fn,
                nn__shape_str(a->shape, an, sa, sizeof sa),
                nn__shape_str(b->shape, bn, sb, sizeof sb), (long long)p->k, (long long)kb);
        return false;
    }
    int abn = an > 2 ? an - 2 : 0, bbn = bn > 2 ? bn - 2 : 0;
    if (!nn__broadcast_shapes(a->shape, abn, b->shape, bbn, p->bshape, &p->nb, fn)) return false;
    mm_batch_strides(a->shape, abn, p->bshape, p->nb, p->astr);
    mm_batch_strides(b->shape, bbn, p->bshape, p->nb, p->bstr);
    p->b_batched = bbn > 0;
    p->batch = 1;
    p->out_ndim = 0;
    for (int i = 0; i < p->nb; i++) {
        p->batch *= p->bshape[i];
        p->out_shape[p->out_ndim++] = p->bshape[i];
    }
    if (an > 1) p->out_shape[p->out_ndim++] = p->m;
    if (bn > 1) p->out_shape[p->out_ndim++] = p->n;
    return true;
}

/* Matrix indices into a and b of output batch entry i. */
static void mm_offsets(const mm_plan *p, int64_t i, int64_t *ai, int64_t *bi) {
    int64_t oa = 0, ob = 0;
    for (int d = p->nb - 1; d >= 0; d--) {
        int64_t idx = i % p->bshape[d];
        i /= p->bshape[d];
        oa += idx * p->astr[d];
        ob += idx * p->bstr[d];
    }
    *ai = oa;
    *bi = ob;
}

/* C[batch, m, n] = A · B for contiguous A, B. */
static void mm_forward(const mm_plan *p, const float *A, const float *B, float *C) {
    const nn_kernels *kr = nn__kernels();
    int64_t m = p->m, k = p->k, n = p->n;
    nn__prof_gemm(p->batch * m, n, k);
    if (!p->b_batched) { /* one B for all: fold the batch into M */
        kr->gemm.sgemm(false, false, p->batch * m, n, k, 1.0f, A, k, B, n, 0.0f, C, n);
        return;
    }
    for (int64_t i = 0; i < p->batch; i++) {
        int64_t ai, bi;
        mm_offsets(p, i, &ai, &bi);
        kr->gemm.sgemm(false, false, m, n, k, 1.0f, A + ai * m * k, k, B + bi * k * n, n, 0.0f,
                  C + i * m * n, n);
    }
}

/* dA = dC · Bᵀ and dB = Aᵀ · dC, summed over broadcast batch entries. */
static nn_status matmul_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *a = nd->inputs[0], *b = nd->inputs[1];
    mm_plan p;
    NN__FORWARD_IF(!mm_plan_make(a, b, &p, "nn_matmul"), nd->name);
    nn_tensor *ac = nn__contig(a), *bc = nn__contig(b);
    nn_tensor *ga = nn__ops_wants(nd, 0) ? nn__zeros(NN_DTYPE_F32, a->shape, a->ndim) : NULL;
    nn_tensor *gb = nn__ops_wants(nd, 1) ? nn__zeros(NN_DTYPE_F32, b->shape, b->ndim) : NULL;
    if (!ac || !bc || (nn__ops_wants(nd, 0) && !ga) || (nn__ops_wants(nd, 1) && !gb)) {
        nn__tensor_release(ac);
        nn__tensor_release(bc);
        nn__tensor_release(ga);
        nn__tensor_release(gb);
        return NN_ERR_NOMEM;
    }
    const nn_kernels *kr = nn__kernels();
    const float *A = nn__f32(ac), *B = nn__f32(bc), *G = nn__f32(gout);
    int64_t m = p.m, k = p.k, n = p.n;
    nn__prof_gemms((ga != NULL) + (gb != NULL), p.batch * m, n, k); /* dA, dB */
    if (!p.b_batched) {
        if (ga) kr->gemm.sgemm(false, true, p.batch * m, k, n, 1.0f, G, n, B, n, 0.0f, nn__f32(ga), k);
        if (gb) kr->gemm.sgemm(true, false, k, n, p.batch * m, 1.0f, A, k, G, n, 0.0f, nn__f32(gb), n);
    } else {
        for (int64_t i = 0; i < p.batch; i++) {
            int64_t ai, bi;
            mm_offsets(&p, i, &ai, &bi);
            const float *Gi = G + i * m * n;
            if (ga)
                kr->gemm.sgemm(false, true, m, k, n, 1.0f, Gi, n, B + bi * k * n, n, 1.0f,
                          nn__f32(ga) + ai * m * k, k);
            if (gb)
                kr->gemm.sgemm(true, false, k, n, m, 1.0f, A + ai * m * k, k, Gi, n, 1.0f,
                          nn__f32(gb) + bi * k * n, n);
        }
    }
    nn__tensor_release(ac);
    nn__tensor_release(bc);
    gin[0] = ga;
    gin[1] = gb;
    return NN_OK;
}

nn_tensor *nn_matmul(nn_tensor *a, nn_tensor *b) {
    NN__PROF_OP("nn_matmul");
    const char *fn = "nn_matmul";
    if (!nn__check_f32(a, fn, "a") || !nn__check_weight(b, fn, "b")) return NULL;
    mm_plan p;
    if (!mm_plan_make(a, b, &p, fn)) return NULL;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, p.out_shape, p.out_ndim);
    if (!out) return NULL;
    /* half b (f32 a): one matrix, few rows, a needing no gradient: read
     * directly; else an f32 copy of b (half_weights.c), recorded instead */
    nn_tensor *in[2] = {a, b};
    const bool direct = nn__is_half(b->dtype) && !p.b_batched &&
                        p.batch * p.m < NN__HALF_ROWS && !nn__needs_grad(&a, 1);
    nn_tensor *ac = nn__contig(a), *bc = direct ? nn__contig(b) : nn__weight_f32(b);
    if (!ac || !bc) {
        nn__tensor_release(ac);
        nn__tensor_release(bc);
        nn__tensor_release(out);
        return NULL;
    }
    if (direct)
        nn__half_gemm(false, p.batch * p.m, p.n, p.k, nn__f32(ac), p.k, bc, p.n, nn__f32(out), p.n);
    else
        mm_forward(&p, nn__f32(ac), nn__f32(bc), nn__f32(out));
    if (!direct && nn__is_half(b->dtype)) in[1] = bc;
    out = nn__ops_record(out, fn, matmul_backward, in, 2, NULL);
    nn__tensor_release(ac);
    nn__tensor_release(bc);
    return nn__track(out);
}

/* ------------------------------------------------------------------ linear */

/* y [rows, out] = x [rows, in] · wᵀ + b.
 * dx = dy · w, dw = dyᵀ · x, db = column sums of dy. */
static nn_status linear_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *x = nd->inputs[0], *w = nd->inputs[1];
    int64_t nout = w->shape[0], nin = w->shape[1];
    int64_t rows = nin ? x->numel / nin : 0;
    if (nin == 0) rows = nout ? gout->numel / nout : 0;
    const nn_kernels *kr = nn__kernels();
    const float *G = nn__f32(gout);
    nn__prof_gemms(nn__ops_wants(nd, 0) + nn__ops_wants(nd, 1), rows, nout, nin); /* dx, dw */
    if (nn__ops_wants(nd, 0)) {
        nn_tensor *wc = nn__contig(w);
        gin[0] = wc ? nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
        if (gin[0])
            kr->gemm.sgemm(false, false, rows, nin, nout, 1.0f, G, nout, nn__f32(wc), nin, 0.0f,
                      nn__f32(gin[0]), nin);
        nn__tensor_release(wc);
        if (!gin[0]) return NN_ERR_NOMEM;
    }
    if (nn__ops_wants(nd, 1)) {
        nn_tensor *xc = nn__contig(x);
        gin[1] = xc ? nn__tensor_new(NN_DTYPE_F32, w->shape, w->ndim) : NULL;
        if (gin[1])
            kr->gemm.sgemm(true, false, nout, nin, rows, 1.0f, G, nout, nn__f32(xc), nin, 0.0f,
                      nn__f32(gin[1]), nin);
        nn__tensor_release(xc);
        if (!gin[1]) return NN_ERR_NOMEM;
    }
    if (nn__ops_wants(nd, 2)) {
        gin[2] = nn__tensor_new(NN_DTYPE_F32, &nout, 1);
        if (!gin[2]) return NN_ERR_NOMEM;
        kr->eltwise.sum_rows(rows, nout, G, nout, nn__f32(gin[2]), false); /* column sums of dy */
    }
    return NN_OK;
}

/* x · wᵀ + b, then max(., 0) when `relu` (one pass over the output: the
 * bias and the ReLU in one kernel). The fused ReLU records no graph: it is
 * for inference only (nn__linear_relu fails when a graph would be
 * recorded). Untracked result. */
static nn_tensor *linear_impl(nn_tensor *x, nn_tensor *w, nn_tensor *b, bool relu) {
    const char *fn = "nn_linear";
    if (!nn__check_f32(x, fn, "x") || !nn__check_weight(w, fn, "w") || !nn__ops_opt_f32(b, fn, "b"))
        return NULL;
    char s1[128], s2[128];
    if (w->ndim != 2)
        return NN__FAIL(NN_ERR_SHAPE, "%s: w must be 2-D [out, in], got %s", fn,
                        nn__shape_str(w->shape, w->ndim, s1, sizeof s1));
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s does not end in in_features = %lld of w %s", fn,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1), (long long)w->shape[1],
                        nn__shape_str(w->shape, w->ndim, s2, sizeof s2));
    int64_t nout = w->shape[0], nin = w->shape[1];
    if (!nn__ops_opt_vec(b, nout, fn, "b")) return NULL;
    int64_t shape[NN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = nout;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, shape, x->ndim);
    if (!out) return NULL;
    int64_t rows = 1;
    for (int i = 0; i < x->ndim - 1; i++) rows *= x->shape[i];
    /* half w: read directly for few rows unless x needs a gradient (the
     * node may then keep w: backward reads it only for dx), else an f32
     * copy (half_weights.c), on which the node is recorded */
    nn_tensor *in[3] = {x, w, b};
    const bool direct = nn__is_half(w->dtype) && rows < NN__HALF_ROWS && !nn__needs_grad(&x, 1);
    nn_tensor *xc = nn__contig(x), *wc = direct ? nn__contig(w) : nn__weight_f32(w),
              *bc = b ? nn__contig(b) : NULL;
    if (!xc || !wc || (b && !bc)) {
        nn__tensor_release(xc);
        nn__tensor_release(wc);
        nn__tensor_release(bc);
        nn__tensor_release(out);
        return NULL;
    }
    float *Y = nn__f32(out);
    nn__prof_gemm(rows, nout, nin);
    if (direct)
        nn__half_gemm(true, rows, nout, nin, nn__f32(xc), nin, wc, nin, Y, nout);
    else
        nn__kernels()->gemm.sgemm(false, true, rows, nout, nin, 1.0f, nn__f32(xc), nin,
                                  nn__f32(wc), nin, 0.0f, Y, nout);
    if (bc || relu)
        nn__kernels()->eltwise.bias_act(rows, nout, bc ? nn__f32(bc) : NULL, false, relu, Y, nout);
    if (!direct && nn__is_half(w->dtype)) in[1] = wc;
    if (!relu) out = nn__ops_record(out, fn, linear_backward, in, 3, NULL);
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn__tensor_release(bc);
    return out;
}

nn_tensor *nn_linear(nn_tensor *x, nn_tensor *w, nn_tensor *b) {
    NN__PROF_OP("nn_linear");
    return nn__track(linear_impl(x, w, b, false));
}

nn_tensor *nn__linear_relu(nn_tensor *x, nn_tensor *w, nn_tensor *b) {
    NN__PROF_OP("nn_linear_relu");
    nn_tensor *in[3] = {x, w, b};
    if (nn__needs_grad(in, 3))
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_linear_relu: the fused Linear + ReLU records no graph; an input "
                        "requires grad (run nn_linear and nn_relu)");
    return linear_impl(x, w, b, true);
}
