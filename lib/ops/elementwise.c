/* Elementwise ops: binary arithmetic with NumPy broadcasting, where, scalar
 * ops and unary math. Forward and backward side by side. Also home of the
 * broadcast iterator and the unary-op framework declared in ops_internal.h. */
#include "backend/backend.h"
#include "ops_internal.h"

#include <math.h>
#include <string.h>

/* ======================================================= broadcast iterator */

void nn__bc_begin(nn__bc *it, const int64_t *shape, int ndim) {
    memset(it, 0, sizeof *it);
    it->full_ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        it->full_shape[d] = shape[d];
        if (shape[d] == 0) it->empty = true;
    }
}

int nn__bc_add(nn__bc *it, const int64_t *shape, const int64_t *strides, int ndim, int64_t offset) {
    int k = it->nops++;
    int lead = it->full_ndim - ndim;
    for (int d = 0; d < it->full_ndim; d++) {
        int td = d - lead;
        /* Leading missing dims and size-1 dims repeat: stride 0. */
        it->str[k][d] = (td < 0 || shape[td] == 1) ? 0 : strides[td];
    }
    it->base[k] = offset;
    return k;
}

int nn__bc_add_tensor(nn__bc *it, const nn_tensor *t) {
    return nn__bc_add(it, t->shape, t->strides, t->ndim, t->offset);
}

void nn__bc_done(nn__bc *it) {
    int64_t st[NN__BC_MAXOPS][NN_MAX_DIMS];
    memcpy(st, it->str, sizeof st);
    int n = 0;
    for (int d = 0; d < it->full_ndim; d++) {
        int64_t sz = it->full_shape[d];
        if (sz == 1) continue; /* contributes nothing to any offset */
        bool merge = n > 0;
        for (int k = 0; k < it->nops && merge; k++) merge = it->str[k][n - 1] == st[k][d] * sz;
        if (merge) {
            it->shape[n - 1] *= sz;
            for (int k = 0; k < it->nops; k++) it->str[k][n - 1] = st[k][d];
        } else {
            it->shape[n] = sz;
            for (int k = 0; k < it->nops; k++) it->str[k][n] = st[k][d];
            n++;
        }
    }
    if (n == 0) { /* a scalar iteration: one row of one element */
        it->shape[0] = 1;
        for (int k = 0; k < it->nops; k++) it->str[k][0] = 0;
        n = 1;
    }
    it->ndim = n;
}

void nn__bc_run(const nn__bc *it, nn__bc_row_fn row, void *ctx) {
    if (it->empty) return;
    int nd = it->ndim, nops = it->nops;
    int64_t idx[NN_MAX_DIMS] = {0}, off[NN__BC_MAXOPS], step[NN__BC_MAXOPS];
    for (int k = 0; k < nops; k++) {
        off[k] = it->base[k];
        step[k] = it->str[k][nd - 1];
    }
    int64_t inner = it->shape[nd - 1];
    for (;;) {
        row(ctx, inner, off, step);
        int d = nd - 2;
        for (; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < nops; k++) off[k] += it->str[k][d];
            if (idx[d] < it->shape[d]) break;
            for (int k = 0; k < nops; k++) off[k] -= it->str[k][d] * it->shape[d];
            idx[d] = 0;
        }
        if (d < 0) break;
    }
}

/* ================================================================ helpers */

nn_tensor *nn__grad_to_shape(nn_tensor *g, const nn_tensor *input) {
    if (!g) return NULL;
    if (nn__same_shape(g, input)) return g;
    nn_tensor *r = nn__sum_to_shape(g, input->shape, input->ndim);
    nn__tensor_release(g);
    return r;
}

bool nn__record_or_free(nn_tensor *out, const char *name, nn_backward_fn backward,
                        nn_tensor *const *inputs, int n, nn_node **node) {
    if (nn__record(out, name, backward, inputs, n, node) != NN_OK) {
        nn__tensor_release(out);
        nn__err(NN_ERR_NOMEM, "%s: out of memory recording the graph", name);
        return false;
    }
    return true;
}

/* ========================================================== unary framework */

static nn_status unary_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    const nn__unary_desc *d = nd->ctx;
    nn_tensor *gx = nn__tensor_new(NN_DTYPE_F32, g->shape, g->ndim);
    NN__FORWARD_IF(!gx, nd->name);
    const float *x = nd->saved[0] ? nn__f32(nd->saved[0]) : NULL;
    const float *y = nd->saved[1] ? nn__f32(nd->saved[1]) : NULL;
    d->bwd(g->numel, nn__f32(g), x, y, nn__f32(gx), nd->f);
    gin[0] = gx;
    return NN_OK;
}

nn_tensor *nn__unary(nn_tensor *a, const nn__unary_desc *d, const double *p, int np) {
    NN__PROF_OP(d ? d->name : "unary");
    if (!nn__check_f32(a, d->name, "a")) return NULL;
    double pp[4] = {0, 0, 0, 0};
    for (int i = 0; i < np && i < 4; i++) pp[i] = p[i];
    nn_tensor *x = nn__contig(a);
    if (!x) return NULL;
    nn_tensor *y = nn__tensor_new(NN_DTYPE_F32, a->shape, a->ndim);
    if (!y) {
        nn__tensor_release(x);
        return NULL;
    }
    d->fwd(x->numel, nn__f32(x), nn__f32(y), pp);
    nn_node *nd;
    if (!nn__record_or_free(y, d->name, unary_backward, &a, 1, &nd)) {
        nn__tensor_release(x);
        return NULL;
    }
    if (!nd) {
        nn__tensor_release(x);
        return y;
    }
    nd->ctx = (void *)d;
    for (int i = 0; i < 4; i++) nd->f[i] = pp[i];
    if (d->save_in)
        nd->saved[0] = x;
    else
        nn__tensor_release(x);
    if (d->save_out) {
        /* An alias without grad_fn: saving y itself would be a cycle. */
        nd->saved[1] = nn__alias(y);
        if (!nd->saved[1]) {
            nn__tensor_release(y);
            return NULL;
        }
    }
    return y;
}

/* ========================================================== binary ops */

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW, BIN_MIN, BIN_MAX } binop;

static const char *const bin_names[] = {"nn_add", "nn_sub",     "nn_mul",    "nn_div",
                                        "nn_pow", "nn_minimum", "nn_maximum"};

/* NaN-propagating minimum / maximum, like torch.minimum / torch.maximum. */
static inline float min_nan(float x, float y) { return (x != x || x < y) ? x : y; }
static inline float max_nan(float x, float y) { return (x != x || x > y) ? x : y; }

#define E_ADD(x, y) ((x) + (y))
#define E_SUB(x, y) ((x) - (y))
#define E_MUL(x, y) ((x) * (y))
#define E_DIV(x, y) ((x) / (y))
#define E_POW(x, y) powf((x), (y))
#define E_MIN(x, y) min_nan((x), (y))
#define E_MAX(x, y) max_nan((x), (y))

/* One row, with the stride patterns that matter split out so that each is
 * a plain loop the compiler vectorises: same shape, scalar on either side. */
#define BIN_ROW(E)                                                                                 \
    do {                                                                                           \
        if (sa == 1 && sb == 1) {                                                                  \
            for (int64_t i = 0; i < n; i++) o[i] = E(a[i], b[i]);                                  \
        } else if (sa == 1 && sb == 0) {                                                           \
            const float y_ = b[0];                                                                 \
            for (int64_t i = 0; i < n; i++) o[i] = E(a[i], y_);                                    \
        } else if (sa == 0 && sb == 1) {                                                           \
            const float x_ = a[0];                                                                 \
            for (int64_t i = 0; i < n; i++) o[i] = E(x_, b[i]);                                    \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) o[i] = E(a[i * sa], b[i * sb]);                        \
        }                                                                                          \
    } while (0)

static void bin_row(binop op, int64_t n, const float *a, int64_t sa, const float *b, int64_t sb,
                    float *o) {
    switch (op) {
    case BIN_ADD: BIN_ROW(E_ADD); break;
    case BIN_SUB: BIN_ROW(E_SUB); break;
    case BIN_MUL: BIN_ROW(E_MUL); break;
    case BIN_DIV: BIN_ROW(E_DIV); break;
    case BIN_POW: BIN_ROW(E_POW); break;
    case BIN_MIN: BIN_ROW(E_MIN); break;
    case BIN_MAX: BIN_ROW(E_MAX); break;
    }
}

typedef struct {
    binop op;
    float *o;
    const float *a, *b;
} bin_ctx;

static void bin_row_cb(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    bin_ctx *c = vctx;
    bin_row(c->op, n, c->a + off[1], step[1], c->b + off[2], step[2], c->o + off[0]);
}

/* Shared forward: out = a op b (broadcast). Untracked, no autograd. */
static nn_tensor *bin_forward(binop op, const nn_tensor *a, const nn_tensor *b, const char *fn) {
    int64_t shape[NN_MAX_DIMS];
    int nd;
    if (!nn__broadcast_shapes(a->shape, a->ndim, b->shape, b->ndim, shape, &nd, fn)) return NULL;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, shape, nd);
    if (!out) return NULL;
    if (nn__same_shape(a, b) && nn__is_contiguous(a) && nn__is_contiguous(b)) {
        /* same-shape add/sub/mul: the backend's threaded kernels */
        const nn_kernels *kr = nn__kernels();
        const float *x = nn__f32(a), *y = nn__f32(b);
        if (op == BIN_ADD)
            kr->eltwise.add(out->numel, x, y, nn__f32(out));
        else if (op == BIN_SUB)
            kr->eltwise.sub(out->numel, x, y, nn__f32(out));
        else if (op == BIN_MUL)
            kr->eltwise.mul(out->numel, x, y, nn__f32(out));
        else
            bin_row(op, out->numel, x, 1, y, 1, nn__f32(out));
        return out;
    }
    nn__bc it;
    nn__bc_begin(&it, shape, nd);
    nn__bc_add_tensor(&it, out);
    nn__bc_add_tensor(&it, a);
    nn__bc_add_tensor(&it, b);
    nn__bc_done(&it);
    bin_ctx c = {op, nn__f32_base(out), nn__f32_base(a), nn__f32_base(b)};
    nn__bc_run(&it, bin_row_cb, &c);
    return out;
}

/* Backward of mul/div/pow/min/max: full-shape partials ga = g * d(out)/da and
 * gb = g * d(out)/db in one pass over (g, a, b); reduced to the input shapes
 * afterwards. ga or gb is NULL when that input needs no gradient. */
typedef struct {
    binop op;
    float *ga, *gb;
    const float *g, *a, *b;
} binb_ctx;

static void binb_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const binb_ctx *c = vctx;
    float *ga = c->ga ? c->ga + off[0] : NULL, *gb = c->gb ? c->gb + off[0] : NULL;
    const float *g = c->g + off[1], *a = c->a + off[2], *b = c->b + off[3];
    int64_t sg = step[1], sa = step[2], sb = step[3]; /* ga/gb step = sg (same layout) */
    for (int64_t i = 0; i < n; i++) {
        float gv = g[i * sg], x = a[i * sa], y = b[i * sb];
        float da = 0, db = 0;
        switch (c->op) {
        case BIN_MUL:
            da = y;
            db = x;
            break;
        case BIN_DIV:
            da = 1.0f / y;
            db = -x / (y * y);
            break;
        case BIN_POW:
            da = y == 0 ? 0.0f : y * powf(x, y - 1.0f);
            /* d/db x^y = x^y log x; defined as 0 at x == 0 for y >= 0 (as PyTorch). */
            db = (x == 0 && y >= 0) ? 0.0f : powf(x, y) * logf(x);
            break;
        case BIN_MIN:
        case BIN_MAX: {
            bool a_wins = c->op == BIN_MIN ? x < y : x > y;
            /* Ties split the gradient evenly (PyTorch does the same). */
            da = x == y ? 0.5f : a_wins ? 1.0f : 0.0f;
            db = x == y ? 0.5f : a_wins ? 0.0f : 1.0f;
            if (x != x)
                da = 1.0f, db = 0.0f;
            else if (y != y)
                da = 0.0f, db = 1.0f;
            break;
        }
        default: break;
        }
        if (ga) ga[i * sg] = gv * da;
        if (gb) gb[i * sg] = gv * db;
    }
}

static nn_status bin_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    binop op = (binop)nd->i[0];
    nn_tensor *a = nd->inputs[0], *b = nd->inputs[1];
    bool need_a = a->requires_grad, need_b = b->requires_grad;
    if (op == BIN_ADD || op == BIN_SUB) {
        if (need_a) {
            nn__tensor_retain(g);
            gin[0] = nn__grad_to_shape(g, a);
            NN__FORWARD_IF(!gin[0], nd->name);
        }
        if (need_b) {
            nn_tensor *gb = nn__clone(g);
            NN__FORWARD_IF(!gb, nd->name);
            if (op == BIN_SUB) {
                float *p = nn__f32(gb);
                for (int64_t i = 0; i < gb->numel; i++) p[i] = -p[i];
            }
            gin[1] = nn__grad_to_shape(gb, b);
            NN__FORWARD_IF(!gin[1], nd->name);
        }
        return NN_OK;
    }
    nn_tensor *ga = need_a ? nn__tensor_new(NN_DTYPE_F32, g->shape, g->ndim) : NULL;
    nn_tensor *gb = need_b ? nn__tensor_new(NN_DTYPE_F32, g->shape, g->ndim) : NULL;
    if ((need_a && !ga) || (need_b && !gb)) {
        nn__tensor_release(ga);
        nn__tensor_release(gb);
        return nn__forward(nd->name);
    }
    nn__bc it;
    nn__bc_begin(&it, g->shape, g->ndim);
    nn__bc_add_tensor(&it, ga ? ga : gb);
    nn__bc_add_tensor(&it, g);
    nn__bc_add_tensor(&it, a);
    nn__bc_add_tensor(&it, b);
    nn__bc_done(&it);
    binb_ctx c = {op,
                  ga ? nn__f32_base(ga) : NULL,
                  gb ? nn__f32_base(gb) : NULL,
                  nn__f32_base(g),
                  nn__f32_base(a),
                  nn__f32_base(b)};
    nn__bc_run(&it, binb_row, &c);
    if (ga && !(gin[0] = nn__grad_to_shape(ga, a))) {
        nn__tensor_release(gb);
        return nn__forward(nd->name);
    }
    NN__FORWARD_IF(gb && !(gin[1] = nn__grad_to_shape(gb, b)), nd->name);
    return NN_OK;
}

static nn_tensor *binary(binop op, nn_tensor *a, nn_tensor *b) {
    const char *fn = bin_names[op];
    NN__PROF_OP(fn);
    if (!nn__check_f32(a, fn, "a") || !nn__check_f32(b, fn, "b")) return NULL;
    nn_tensor *out = bin_forward(op, a, b, fn);
    if (!out) return NULL;
    nn_tensor *ins[2] = {a, b};
    nn_node *nd;
    if (!nn__record_or_free(out, fn, bin_backward, ins, 2, &nd)) return NULL;
    if (nd) nd->i[0] = op;
    return nn__track(out);
}

nn_tensor *nn_add(nn_tensor *a, nn_tensor *b) { return binary(BIN_ADD, a, b); }
nn_tensor *nn_sub(nn_tensor *a, nn_tensor *b) { return binary(BIN_SUB, a, b); }
nn_tensor *nn_mul(nn_tensor *a, nn_tensor *b) { return binary(BIN_MUL, a, b); }
nn_tensor *nn_div(nn_tensor *a, nn_tensor *b) { return binary(BIN_DIV, a, b); }
nn_tensor *nn_pow(nn_tensor *a, nn_tensor *b) { return binary(BIN_POW, a, b); }
nn_tensor *nn_minimum(nn_tensor *a, nn_tensor *b) { return binary(BIN_MIN, a, b); }
nn_tensor *nn_maximum(nn_tensor *a, nn_tensor *b) { return binary(BIN_MAX, a, b); }

/* ================================================================ where */

typedef struct {
    float *o;
    const uint8_t *c;
    const float *a, *b;
} where_ctx;

/* out = cond ? a : b;  operands: 0 out, 1 cond, 2 a, 3 b. */
static void where_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const where_ctx *w = vctx;
    float *o = w->o + off[0];
    const uint8_t *c = w->c + off[1];
    const float *a = w->a + off[2], *b = w->b + off[3];
    for (int64_t i = 0; i < n; i++) o[i] = c[i * step[1]] ? a[i * step[2]] : b[i * step[3]];
}

/* Backward: ga = g where cond, gb = g where !cond; operands 0 ga, 1 gb, 2 g, 3 cond. */
static void where_grad_row(void *vctx, int64_t n, const int64_t *off, const int64_t *step) {
    const where_ctx *w = vctx; /* o: ga, a: gb (as writable), b: g */
    float *ga = w->o + off[0], *gb = (float *)w->a + off[1];
    const float *g = w->b + off[2];
    const uint8_t *c = w->c + off[3];
    for (int64_t i = 0; i < n; i++) {
        bool t = c[i * step[3]] != 0;
        ga[i] = t ? g[i] : 0.0f;
        gb[i] = t ? 0.0f : g[i];
    }
}

static nn_status where_backward(nn_node *nd, nn_tensor *g, nn_tensor **gin) {
    nn_tensor *cond = nd->inputs[0], *a = nd->inputs[1], *b = nd->inputs[2];
    nn_tensor *ga = nn__tensor_new(NN_DTYPE_F32, g->shape, g->ndim);
    nn_tensor *gb = nn__tensor_new(NN_DTYPE_F32, g->shape, g->ndim);
    nn_tensor *gc = nn__contig(g);
    if (!ga || !gb || !gc) goto fail;
    nn__bc it;
    nn__bc_begin(&it, g->shape, g->ndim);
    nn__bc_add_tensor(&it, ga);
    nn__bc_add_tensor(&it, gb);
    nn__bc_add_tensor(&it, gc);
    nn__bc_add_tensor(&it, cond);
    nn__bc_done(&it);
    where_ctx w = {nn__f32_base(ga), nn__raw_base(cond), nn__f32_base(gb), nn__f32_base(gc)};
    nn__bc_run(&it, where_grad_row, &w);
    nn__tensor_release(gc);
    gc = NULL;
    if (a->requires_grad) {
        gin[1] = nn__grad_to_shape(ga, a);
        ga = NULL;
        if (!gin[1]) goto fail;
    }
    if (b->requires_grad) {
        gin[2] = nn__grad_to_shape(gb, b);
        gb = NULL;
        if (!gin[2]) goto fail;
    }
    nn__tensor_release(ga);
    nn__tensor_release(gb);
    return NN_OK;
fail:
    nn__tensor_release(ga);
    nn__tensor_release(gb);
    nn__tensor_release(gc);
    return nn__forward(nd->name);
}

nn_tensor *nn_where(nn_tensor *cond, nn_tensor *a, nn_tensor *b) {
    NN__PROF_OP("nn_where");
    const char *fn = "nn_where";
    if (!nn__check_tensor(cond, fn, "cond") || !nn__check_f32(a, fn, "a") ||
        !nn__check_f32(b, fn, "b"))
        return NULL;
    if (cond->dtype != NN_DTYPE_U8)
        return NN__FAIL(NN_ERR_DTYPE, "%s: argument 'cond' has dtype %s, expected u8", fn,
                        nn_dtype_name(cond->dtype));
    int64_t s1[NN_MAX_DIMS], shape[NN_MAX_DIMS];
    int n1, nd;
    if (!nn__broadcast_shapes(a->shape, a->ndim, b->shape, b->ndim, s1, &n1, fn) ||
        !nn__broadcast_shapes(cond->shape, cond->ndim, s1, n1, shape, &nd, fn))
        return NULL;
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, shape, nd);
    if (!out) return NULL;
    nn__bc it;
    nn__bc_begin(&it, shape, nd);
    nn__bc_add_tensor(&it, out);
    nn__bc_add_tensor(&it, cond);
    nn__bc_add_tensor(&it, a);
    nn__bc_add_tensor(&it, b);
    nn__bc_done(&it);
    where_ctx w = {nn__f32_base(out), nn__raw_base(cond), nn__f32_base(a), nn__f32_base(b)};
    nn__bc_run(&it, where_row, &w);
    nn_tensor *ins[3] = {cond, a, b};
    nn_node *node;
    if (!nn__record_or_free(out, fn, where_backward, ins, 3, &node)) return NULL;
    return nn__track(out);
}

/* ====================================================== unary math ops */
/* Each op: forward kernel, backward kernel, descriptor, public function. */

static void add_s_fwd(int64_t n, const float *x, float *y, const double *p) {
    const float s = (float)p[0];
    for (int64_t i = 0; i < n; i++) y[i] = x[i] + s;
}
static void add_s_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                      const double *p) {
    memcpy(gx, g, sizeof(float) * (size_t)n);
}
static const nn__unary_desc ADD_S = {"nn_add_scalar", add_s_fwd, add_s_bwd, false, false};
nn_tensor *nn_add_scalar(nn_tensor *a, double s) { return nn__track(nn__unary(a, &ADD_S, &s, 1)); }

static void mul_s_fwd(int64_t n, const float *x, float *y, const double *p) {
    const float s = (float)p[0];
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s;
}
static void mul_s_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                      const double *p) {
    const float s = (float)p[0];
    for (int64_t i = 0; i < n; i++) gx[i] = g[i] * s;
}
static const nn__unary_desc MUL_S = {"nn_mul_scalar", mul_s_fwd, mul_s_bwd, false, false};
nn_tensor *nn_mul_scalar(nn_tensor *a, double s) { return nn__track(nn__unary(a, &MUL_S, &s, 1)); }

/* y = x^e; dy/dx = e x^(e-1) (0 for e == 0, as PyTorch). */
static void pow_s_fwd(int64_t n, const float *x, float *y, const double *p) {
    const float e = (float)p[0];
    if (e == 2.0f)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = powf(x[i], e);
}
static void pow_s_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                      const double *p) {
    const float e = (float)p[0];
    for (int64_t i = 0; i < n; i++) gx[i] = e == 0.0f ? 0.0f : g[i] * e * powf(x[i], e - 1.0f);
}
static const nn__unary_desc POW_S = {"nn_pow_scalar", pow_s_fwd, pow_s_bwd, true, false};
nn_tensor *nn_pow_scalar(nn_tensor *a, double e) { return nn__track(nn__unary(a, &POW_S, &e, 1)); }

static void neg_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = -x[i];
}
static void neg_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                    const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = -g[i];
}
static const nn__unary_desc NEG = {"nn_neg", neg_fwd, neg_bwd, false, false};
nn_tensor *nn_neg(nn_tensor *a) { return nn__track(nn__unary(a, &NEG, NULL, 0)); }

/* y = e^x; dy/dx = y. */
static void exp_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}
static void exp_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                    const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = g[i] * y[i];
}
static const nn__unary_desc EXP = {"nn_exp", exp_fwd, exp_bwd, false, true};
nn_tensor *nn_exp(nn_tensor *a) { return nn__track(nn__unary(a, &EXP, NULL, 0)); }

/* y = ln x; dy/dx = 1/x. */
static void log_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]);
}
static void log_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                    const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = g[i] / x[i];
}
static const nn__unary_desc LOG = {"nn_log", log_fwd, log_bwd, true, false};
nn_tensor *nn_log(nn_tensor *a) { return nn__track(nn__unary(a, &LOG, NULL, 0)); }

/* y = sqrt x; dy/dx = 1 / (2y). */
static void sqrt_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]);
}
static void sqrt_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                     const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = g[i] / (2.0f * y[i]);
}
static const nn__unary_desc SQRT = {"nn_sqrt", sqrt_fwd, sqrt_bwd, false, true};
nn_tensor *nn_sqrt(nn_tensor *a) { return nn__track(nn__unary(a, &SQRT, NULL, 0)); }

/* y = 1/sqrt x; dy/dx = -y^3 / 2. */
static void rsqrt_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / sqrtf(x[i]);
}
static void rsqrt_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                      const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = -0.5f * g[i] * y[i] * y[i] * y[i];
}
static const nn__unary_desc RSQRT = {"nn_rsqrt", rsqrt_fwd, rsqrt_bwd, false, true};
nn_tensor *nn_rsqrt(nn_tensor *a) { return nn__track(nn__unary(a, &RSQRT, NULL, 0)); }

/* y = |x|; dy/dx = sign(x) (0 at 0). */
static void abs_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
}
static void abs_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                    const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = x[i] > 0 ? g[i] : x[i] < 0 ? -g[i] : 0.0f;
}
static const nn__unary_desc ABS = {"nn_abs", abs_fwd, abs_bwd, true, false};
nn_tensor *nn_abs(nn_tensor *a) { return nn__track(nn__unary(a, &ABS, NULL, 0)); }

/* y = min(max(x, lo), hi); gradient 1 strictly inside (lo, hi). NaN stays NaN. */
void nn__clamp_fwd(int64_t n, const float *x, float *y, const double *p) {
    const float lo = (float)p[0], hi = (float)p[1];
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v < lo ? lo : v > hi ? hi : v;
    }
}
void nn__clamp_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                   const double *p) {
    const float lo = (float)p[0], hi = (float)p[1];
    for (int64_t i = 0; i < n; i++) gx[i] = (x[i] > lo && x[i] < hi) ? g[i] : 0.0f;
}
static const nn__unary_desc CLAMP = {"nn_clamp", nn__clamp_fwd, nn__clamp_bwd, true, false};
nn_tensor *nn_clamp(nn_tensor *a, double lo, double hi) {
    NN__PROF_OP("nn_clamp");
    if (!nn__check_f32(a, "nn_clamp", "a")) return NULL;
    if (isnan(lo) || isnan(hi) || lo > hi)
        return NN__FAIL(NN_ERR_INVALID, "nn_clamp: bounds lo = %g, hi = %g (need lo <= hi)", lo,
                        hi);
    double p[2] = {lo, hi};
    return nn__track(nn__unary(a, &CLAMP, p, 2));
}
