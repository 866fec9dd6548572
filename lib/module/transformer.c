/* MultiheadAttention and the transformer layers and stacks with PyTorch's
 * semantics, parameter names and child names, so a PyTorch state dict loads
 * as is:
 *
 *   MultiheadAttention        in_proj_weight [3E, E] (or q/k/v_proj_weight
 *                             when kdim/vdim differ from E), in_proj_bias
 *                             [3E], out_proj (Linear E -> E)
 *   TransformerEncoderLayer   self_attn, linear1, dropout, linear2, norm1,
 *                             norm2, dropout1, dropout2
 *   TransformerDecoderLayer   self_attn, multihead_attn, linear1, dropout,
 *                             linear2, norm1, norm2, norm3, dropout1..3
 *   TransformerEncoder/Decoder  layers (ModuleList), norm (optional)
 *
 * The composite kinds are containers whose children the constructors make;
 * a model file brings its own children, which check_complete validates
 * (names, kinds, sizes) before the module is used. Forward runs through the
 * public ops inside the caller's compose scope, so autograd comes free; the
 * attention itself is the tiled nn_scaled_dot_product_attention unless the
 * caller asks for the attention weights. */
#include "module_internal.h"
#include "ops/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_SIZE ((double)(1LL << 40))

static int64_t ci(const nn_module *m, int k) { return (int64_t)m->cfg[k]; }

/* cfg[k] must be an integer in [lo, hi]. */
static nn_status cfg_int(const nn_module *m, int k, double lo, double hi) {
    double v = m->cfg[k];
    if (v == floor(v) && v >= lo && v <= hi) return NN_OK;
    return nn__err(NN_ERR_INVALID, "%s: %s = %g, expected an integer in %.0f..%.0f", m->kind->type,
                   m->kind->keys[k], v, lo, hi);
}

static nn_status cfg_real(const nn_module *m, int k, double lo, double hi, bool hi_open) {
    double v = m->cfg[k];
    if (v >= lo && (hi_open ? v < hi : v <= hi)) return NN_OK;
    return nn__err(NN_ERR_INVALID, "%s: %s = %g, expected a value in [%g, %g%c", m->kind->type,
                   m->kind->keys[k], v, lo, hi, hi_open ? ')' : ']');
}

/* The hyperparameter `key` of a built-in module (NAN when it has none). */
static double cfg_of(const nn_module *m, const char *key) {
    if (!m->kind) return NAN;
    for (int i = 0; i < m->kind->nkeys; i++)
        if (!strcmp(m->kind->keys[i], key)) return m->cfg[i];
    return NAN;
}

static bool is_type(const nn_module *m, const char *type) {
    return m->kind && !strcmp(m->kind->type, type);
}

/* Borrowed child by name, or NULL (no error recorded). */
static nn_module *child(const nn_module *m, const char *name) {
    for (int i = 0; i < m->nchildren; i++)
        if (!strcmp(m->children[i].name, name)) return m->children[i].m;
    return NULL;
}

/* Take over `c` as child `name` (consumed, also on failure). */
static nn_status attach(nn_module *m, const char *name, nn_module *c, const char *fn) {
    return nn__mod_attach(m, name, c, fn);
}

/* ================================================== MultiheadAttention */

/* quantized = 1 (nn_quantize_dynamic / _static): no in-projection
 * parameters; three QuantizedLinear children q_proj (E -> E), k_proj (kdim
 * -> E) and v_proj (vdim -> E) hold the int8 in-projections and their
 * biases. Written to model files only when 1. */
enum { MHA_E, MHA_H, MHA_DROPOUT, MHA_BIAS, MHA_KDIM, MHA_VDIM, MHA_BF, MHA_CAUSAL, MHA_Q };
static const char *const mha_keys[] = {"embed_dim", "num_heads",   "dropout",
                                       "bias",      "kdim",        "vdim",
                                       "batch_first", "is_causal", "quantized"};
static const double mha_defaults[] = {NAN, NAN, 0, 1, 0, 0, 0, 0, 0};
static const char *const mha_proj[3] = {"q_proj", "k_proj", "v_proj"};

static int mha_ncfg(const nn_module *m) { return ci(m, MHA_Q) ? 9 : 8; }

static bool mha_packed(const nn_module *m) {
    return ci(m, MHA_KDIM) == ci(m, MHA_E) && ci(m, MHA_VDIM) == ci(m, MHA_E);
}

/* A parameter with xavier_uniform init (PyTorch's for the in-projection). */
static nn_status add_xavier(nn_module *m, const char *name, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    nn_tensor *t = nn__mod_uniform_param(shape, 2, sqrt(6.0 / ((double)rows + (double)cols)));
    if (!t) return nn_last_status();
    nn_status st = nn__mod_add_param(m, name, t);
    if (st != NN_OK) nn__tensor_release(t);
    return st;
}

static nn_status mha_build(nn_module *m) {
    /* kdim/vdim 0: embed_dim, as PyTorch's None. */
    if (m->cfg[MHA_KDIM] == 0) m->cfg[MHA_KDIM] = m->cfg[MHA_E];
    if (m->cfg[MHA_VDIM] == 0) m->cfg[MHA_VDIM] = m->cfg[MHA_E];
    nn_status st = cfg_int(m, MHA_E, 1, MAX_SIZE);
    if (!st) st = cfg_int(m, MHA_H, 1, MAX_SIZE);
    if (!st) st = cfg_real(m, MHA_DROPOUT, 0, 1, true);
    if (!st) st = cfg_int(m, MHA_BIAS, 0, 1);
    if (!st) st = cfg_int(m, MHA_KDIM, 1, MAX_SIZE);
    if (!st) st = cfg_int(m, MHA_VDIM, 1, MAX_SIZE);
    if (!st) st = cfg_int(m, MHA_BF, 0, 1);
    if (!st) st = cfg_int(m, MHA_CAUSAL, 0, 1);
    if (!st) st = cfg_int(m, MHA_Q, 0, 1);
    if (st) return st;
    int64_t e = ci(m, MHA_E), h = ci(m, MHA_H);
    if (e % h)
        return nn__err(NN_ERR_INVALID,
                       "MultiheadAttention: embed_dim = %lld is not divisible by num_heads = %lld",
                       (long long)e, (long long)h);
    if (ci(m, MHA_Q)) {
        /* the int8 in-projections are children (a file brings them) */
    } else if (mha_packed(m)) {
        st = add_xavier(m, "in_proj_weight", 3 * e, e);
    } else {
        st = add_xavier(m, "q_proj_weight", e, e);
        if (!st) st = add_xavier(m, "k_proj_weight", e, ci(m, MHA_KDIM));
        if (!st) st = add_xavier(m, "v_proj_weight", e, ci(m, MHA_VDIM));
    }
    if (!st && ci(m, MHA_BIAS) && !ci(m, MHA_Q)) {
        int64_t n = 3 * e;
        nn_tensor *b = nn__zeros(NN_DTYPE_F32, &n, 1);
        if (!b) return nn_last_status();
        st = nn__mod_add_param(m, "in_proj_bias", b);
        if (st) nn__tensor_release(b);
    }
    if (st) return st;
    m->gen = nn_generator_new(nn__gen_next(nn__gen(NULL)));
    return m->gen ? NN_OK : nn_last_status();
}

/* A Linear child fits: in -> out, and (bias >= 0) with or without bias;
 * int8_only: it must be a QuantizedLinear. */
static nn_status check_linear_ex(const nn_module *m, const char *name, int64_t in, int64_t out,
                                 int bias, bool int8_only) {
    const nn_module *c = child(m, name);
    if (!c) return nn__err(NN_ERR_FORMAT, "%s: child '%s' is missing", m->kind->type, name);
    /* a Linear, or its int8 twin from nn_quantize_dynamic / _static (same
     * keys; no fused ReLU: nothing follows these in a Sequential) */
    const bool q = is_type(c, "QuantizedLinear");
    if (int8_only && !q)
        return nn__err(NN_ERR_FORMAT,
                       "%s: child '%s' is a %s, expected QuantizedLinear(%lld, %lld) (quantized = 1)",
                       m->kind->type, name, nn_module_type_name(c), (long long)in, (long long)out);
    if (!(is_type(c, "Linear") || (q && cfg_of(c, "relu") == 0)) ||
        cfg_of(c, "in_features") != (double)in ||
        cfg_of(c, "out_features") != (double)out ||
        (bias >= 0 && cfg_of(c, "bias") != (double)bias))
        return nn__err(NN_ERR_FORMAT, "%s: child '%s' is a %s, expected Linear(%lld, %lld%s)",
                       m->kind->type, name, nn_module_type_name(c), (long long)in, (long long)out,
                       bias == 0 ? ", bias=False" : "");
    return NN_OK;
}

static nn_status check_linear(const nn_module *m, const char *name, int64_t in, int64_t out,
                              int bias) {
    return check_linear_ex(m, name, in, out, bias, false);
}

/* Every child's name is one of names[0..n). */
static nn_status check_names(const nn_module *m, const char *const *names, int n) {
    for (int i = 0; i < m->nchildren; i++) {
        bool known = false;
        for (int j = 0; j < n && !known; j++) known = !strcmp(m->children[i].name, names[j]);
        if (!known)
            return nn__err(NN_ERR_FORMAT, "%s: unexpected child '%.64s'", m->kind->type,
                           m->children[i].name);
    }
    return NN_OK;
}

static nn_status mha_complete(const nn_module *m) {
    static const char *const names[] = {"out_proj", "q_proj", "k_proj", "v_proj"};
    const bool q = ci(m, MHA_Q) != 0;
    const int64_t e = ci(m, MHA_E), in[3] = {e, ci(m, MHA_KDIM), ci(m, MHA_VDIM)};
    nn_status st = check_names(m, names, q ? 4 : 1);
    for (int i = 0; i < 3 && q && !st; i++)
        st = check_linear_ex(m, mha_proj[i], in[i], e, (int)ci(m, MHA_BIAS), true);
    if (!st) st = check_linear(m, "out_proj", e, e, (int)ci(m, MHA_BIAS));
    return st;
}

static const char *shape_str(const nn_tensor *t, char *buf, size_t n) {
    return nn__shape_str(t->shape, t->ndim, buf, n);
}

/* Inputs in the [N, T, C] layout (views), checked. */
typedef struct mha_in {
    nn_tensor *q, *k, *v, *kpm, *am;
    bool batched;
    int64_t n, l, s;
} mha_in;

static nn_tensor *to_batch_first(const nn_module *m, nn_tensor *x, bool batched) {
    if (!batched) return nn_unsqueeze(x, 0);
    return ci(m, MHA_BF) ? x : nn_transpose(x, 0, 1);
}

static nn_status mha_check(const nn_module *m, nn_tensor *const *xs, int n, mha_in *in) {
    const char *T = "MultiheadAttention";
    nn_tensor *q = xs[0], *k = xs[1], *v = xs[2];
    nn_tensor *kpm = n > 3 ? xs[3] : NULL, *am = n > 4 ? xs[4] : NULL;
    char a[96], b[96], c[96];
    for (int i = 0; i < 3; i++)
        if (xs[i]->dtype != NN_DTYPE_F32)
            return nn__err(NN_ERR_DTYPE, "%s: %s must be f32, got %s", T,
                           i == 0   ? "query"
                           : i == 1 ? "key"
                                    : "value",
                           nn_dtype_name(xs[i]->dtype));
    int64_t e = ci(m, MHA_E);
    bool ok = (q->ndim == 2 || q->ndim == 3) && k->ndim == q->ndim && v->ndim == q->ndim &&
              q->shape[q->ndim - 1] == e && k->shape[k->ndim - 1] == ci(m, MHA_KDIM) &&
              v->shape[v->ndim - 1] == ci(m, MHA_VDIM) && k->shape[0] == v->shape[0];
    bool batched = q->ndim == 3, bf = ci(m, MHA_BF) != 0;
    if (ok && batched) {
        int bd = bf ? 0 : 1;
        ok = k->shape[bd] == q->shape[bd] && v->shape[bd] == q->shape[bd] &&
             k->shape[1 - bd] == v->shape[1 - bd];
    }
    if (!ok)
        return nn__err(NN_ERR_SHAPE,
                       "%s: query %s, key %s and value %s do not fit embed_dim %lld, kdim %lld, "
                       "vdim %lld (expected [L, N, E] / [S, N, kdim] / [S, N, vdim]%s, or "
                       "unbatched [L, E] / [S, kdim] / [S, vdim])",
                       T, shape_str(q, a, sizeof a), shape_str(k, b, sizeof b),
                       shape_str(v, c, sizeof c), (long long)e, (long long)ci(m, MHA_KDIM),
                       (long long)ci(m, MHA_VDIM), bf ? ", batch_first: [N, L, E] ..." : "");
    in->batched = batched;
    in->n = batched ? q->shape[bf ? 0 : 1] : 1;
    in->l = q->shape[batched && bf ? 1 : 0];
    in->s = k->shape[batched && bf ? 1 : 0];
    if (kpm) {
        if (kpm->dtype != NN_DTYPE_U8 && kpm->dtype != NN_DTYPE_F32)
            return nn__err(NN_ERR_DTYPE,
                           "%s: key_padding_mask must be u8 (1 = ignore) or f32, got %s", T,
                           nn_dtype_name(kpm->dtype));
        bool fit = batched ? kpm->ndim == 2 && kpm->shape[0] == in->n && kpm->shape[1] == in->s
                           : kpm->ndim == 1 && kpm->shape[0] == in->s;
        if (!fit)
            return nn__err(NN_ERR_SHAPE, "%s: key_padding_mask is %s, expected [%lld, %lld]", T,
                           shape_str(kpm, a, sizeof a), (long long)in->n, (long long)in->s);
    }
    if (am) {
        if (am->dtype != NN_DTYPE_U8 && am->dtype != NN_DTYPE_F32)
            return nn__err(NN_ERR_DTYPE,
                           "%s: attn_mask must be u8 (1 = not allowed) or f32, got %s", T,
                           nn_dtype_name(am->dtype));
        int64_t nh = in->n * ci(m, MHA_H);
        bool fit =
            (am->ndim == 2 && am->shape[0] == in->l && am->shape[1] == in->s) ||
            (am->ndim == 3 && am->shape[0] == nh && am->shape[1] == in->l && am->shape[2] == in->s);
        if (!fit)
            return nn__err(NN_ERR_SHAPE,
                           "%s: attn_mask is %s, expected [%lld, %lld] or [%lld, %lld, %lld] "
                           "(N * num_heads, L, S)",
                           T, shape_str(am, a, sizeof a), (long long)in->l, (long long)in->s,
                           (long long)nh, (long long)in->l, (long long)in->s);
    }
    in->q = to_batch_first(m, q, batched);
    in->k = k == q ? in->q : to_batch_first(m, k, batched);
    in->v = v == k ? in->k : to_batch_first(m, v, batched);
    in->kpm = kpm && !batched ? nn_unsqueeze(kpm, 0) : kpm;
    in->am = am;
    if (!in->q || !in->k || !in->v || (kpm && !in->kpm)) return nn__forward(T);
    return NN_OK;
}

/* The mask for attention scores [N, H, L, S] from key_padding_mask and
 * attn_mask: u8 (1 = attend) when both are boolean, else an f32 additive
 * mask (-inf where a boolean one hides). NULL with no error: no mask. */
static nn_tensor *mha_mask(const nn_module *m, const mha_in *in, bool *failed) {
    *failed = false;
    nn_tensor *kpm = NULL, *am = NULL;
    if (in->kpm) {
        int64_t sh[4] = {in->n, 1, 1, in->s};
        kpm = nn_reshape(in->kpm, sh, 4);
    }
    if (in->am && in->am->ndim == 3) {
        int64_t sh[4] = {in->n, ci(m, MHA_H), in->l, in->s};
        am = nn_reshape(in->am, sh, 4);
    } else {
        am = in->am;
    }
    if ((in->kpm && !kpm) || (in->am && !am)) {
        *failed = true;
        return NULL;
    }
    if (!kpm && !am) return NULL;
    bool any_f32 = (kpm && kpm->dtype == NN_DTYPE_F32) || (am && am->dtype == NN_DTYPE_F32);
    nn_tensor *out = NULL;
    if (!any_f32) {
        /* allowed = !(kpm || am), broadcast to [N, 1 or H, L, S] */
        if (kpm && am)
            out = nn_eq_scalar(
                nn_add(nn_tensor_to(kpm, NN_DTYPE_F32), nn_tensor_to(am, NN_DTYPE_F32)), 0);
        else
            out = nn_eq_scalar(kpm ? kpm : am, 0);
    } else {
        nn_tensor *ninf = nn_tensor_full(NN_DTYPE_F32, NULL, 0, -INFINITY);
        nn_tensor *zero = nn_tensor_zeros(NN_DTYPE_F32, NULL, 0);
        nn_tensor *parts[2] = {kpm, am};
        for (int i = 0; i < 2; i++)
            if (parts[i] && parts[i]->dtype == NN_DTYPE_U8)
                parts[i] = nn_where(parts[i], ninf, zero);
        if (parts[0] && parts[1])
            out = nn_add(parts[0], parts[1]);
        else
            out = parts[0] ? parts[0] : parts[1];
    }
    if (!out) *failed = true;
    return out;
}

/* [N, T, E] -> [N, H, T, D]. */
static nn_tensor *split_heads(nn_tensor *x, int64_t n, int64_t t, int64_t h, int64_t d) {
    int64_t sh[4] = {n, t, h, d};
    return nn_transpose(nn_reshape(x, sh, 4), 1, 2);
}

/* The explicit attention (need_weights): softmax(q kᵀ/sqrt(D) + mask), its
 * dropout, times v, like PyTorch's multi_head_attention_forward. */
static nn_tensor *attention_explicit(nn_module *m, nn_tensor *q, nn_tensor *k, nn_tensor *v,
                                     nn_tensor *mask, bool causal, double p, nn_tensor **w) {
    int64_t d = q->shape[3], l = q->shape[2], s = k->shape[2];
    nn_tensor *sc = nn_mul_scalar(nn_matmul(q, nn_transpose(k, 2, 3)), 1.0 / sqrt((double)d));
    if (mask && mask->dtype == NN_DTYPE_F32)
        sc = nn_add(sc, mask);
    else if (mask)
        sc = nn_masked_fill(sc, nn_eq_scalar(mask, 0), -INFINITY);
    if (causal) {
        nn_tensor *row = nn_arange(0, (double)l, 1, NN_DTYPE_I64);
        nn_tensor *col = nn_arange(0, (double)s, 1, NN_DTYPE_I64);
        int64_t rs[2] = {l, 1};
        nn_tensor *hide = nn_gt(col, nn_reshape(row, rs, 2));
        sc = nn_masked_fill(sc, hide, -INFINITY);
    }
    nn_tensor *pw = nn_softmax(sc, -1);
    *w = pw;
    return nn_matmul(nn_dropout(pw, p, p > 0, m->gen), v);
}

/* The attention output [L, N, E] (or batch_first / unbatched layouts). */
static nn_tensor *mha_run(nn_module *m, nn_tensor *const *xs, int n, bool need_weights,
                          bool average, nn_tensor **weights) {
    mha_in in = {0};
    if (mha_check(m, xs, n, &in)) return NULL;
    int64_t e = ci(m, MHA_E), h = ci(m, MHA_H), d = e / h;
    nn_tensor *w = NULL, *b = nn__mod_param(m, "in_proj_bias");
    nn_tensor *bq = NULL, *bk = NULL, *bv = NULL, *q, *k, *v;
    if (child(m, "q_proj")) {
        /* int8 in-projections (or their observers while quantizing) */
        q = nn_module_forward(child(m, "q_proj"), in.q);
        k = nn_module_forward(child(m, "k_proj"), in.k);
        v = nn_module_forward(child(m, "v_proj"), in.v);
    } else {
        if (b) {
            bq = nn_slice(b, 0, 0, e, 1);
            bk = nn_slice(b, 0, e, 2 * e, 1);
            bv = nn_slice(b, 0, 2 * e, 3 * e, 1);
        }
        if (mha_packed(m)) {
            w = nn__mod_param(m, "in_proj_weight");
            if (in.q == in.k && in.k == in.v) { /* self-attention: one product */
                nn_tensor *qkv = nn_linear(in.q, w, b);
                q = nn_slice(qkv, 2, 0, e, 1);
                k = nn_slice(qkv, 2, e, 2 * e, 1);
                v = nn_slice(qkv, 2, 2 * e, 3 * e, 1);
            } else {
                q = nn_linear(in.q, nn_slice(w, 0, 0, e, 1), bq);
                k = nn_linear(in.k, nn_slice(w, 0, e, 2 * e, 1), bk);
                v = nn_linear(in.v, nn_slice(w, 0, 2 * e, 3 * e, 1), bv);
            }
        } else {
            q = nn_linear(in.q, nn__mod_param(m, "q_proj_weight"), bq);
            k = nn_linear(in.k, nn__mod_param(m, "k_proj_weight"), bk);
            v = nn_linear(in.v, nn__mod_param(m, "v_proj_weight"), bv);
        }
    }
    if (!q || !k || !v) return NULL;
    q = split_heads(q, in.n, in.l, h, d);
    k = split_heads(k, in.n, in.s, h, d);
    v = split_heads(v, in.n, in.s, h, d);
    bool failed;
    nn_tensor *mask = mha_mask(m, &in, &failed);
    if (failed || !q || !k || !v) return NULL;
    bool causal = ci(m, MHA_CAUSAL) != 0;
    double p = nn__mod_training(m) ? m->cfg[MHA_DROPOUT] : 0.0;
    nn_tensor *o, *pw = NULL;
    if (need_weights)
        o = attention_explicit(m, q, k, v, mask, causal, p, &pw);
    else
        o = nn_scaled_dot_product_attention(q, k, v, mask, causal, p, 0, m->gen);
    int64_t sh[3] = {in.n, in.l, e};
    o = nn_reshape(nn_transpose(o, 1, 2), sh, 3); /* [N, L, E] */
    o = nn_module_forward(child(m, "out_proj"), o);
    if (!o) return NULL;
    if (!in.batched)
        o = nn_squeeze(o, 0);
    else if (!ci(m, MHA_BF))
        o = nn_transpose(o, 0, 1);
    if (need_weights && o) {
        if (average) pw = nn_mul_scalar(nn_sum(pw, (int[]){1}, 1, false), 1.0 / (double)h);
        if (pw && !in.batched) pw = nn_squeeze(pw, 0);
        if (!pw) return NULL;
        *weights = pw;
    }
    return o;
}

static nn_tensor *mha_forward_n(nn_module *m, nn_tensor *const *xs, int n) {
    return mha_run(m, xs, n, false, false, NULL);
}

static nn_tensor *mha_forward(nn_module *m, nn_tensor *x) {
    nn_tensor *xs[3] = {x, x, x};
    return mha_run(m, xs, 3, false, false, NULL);
}

static double mha_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)out;
    if (!in || in->ndim < 2) return 0;
    double e = (double)ci(m, MHA_E), t = (double)in->shape[in->ndim - 2];
    double rows = (double)in->numel / e;
    /* projections (4 E x E products) + scores and weighted sum (self-attention) */
    return rows * (8.0 * e * e) + rows * 4.0 * t * e;
}

const nn__mod_kind nn__kind_mha = {.type = "MultiheadAttention",
                                   .nkeys = 9,
                                   .ncfg = mha_ncfg,
                                   .keys = mha_keys,
                                   .defaults = mha_defaults,
                                   .build = mha_build,
                                   .forward = mha_forward,
                                   .flops = mha_flops,
                                   .container = true,
                                   .forward_n = mha_forward_n,
                                   .min_inputs = 3,
                                   .max_inputs = 5,
                                   .check_complete = mha_complete};

/* A MultiheadAttention with its out_proj (bias zeroed, as PyTorch's reset). */
static nn_module *mha_make(const double *cfg, const char *fn) {
    nn_module *m = nn__mod_new_kind(&nn__kind_mha, cfg);
    if (!m) return NULL;
    int64_t e = ci(m, MHA_E);
    nn_module *out = nn_linear_new(e, e, ci(m, MHA_BIAS) != 0);
    if (out && ci(m, MHA_BIAS)) nn_init_zeros(nn__mod_param(out, "bias"));
    if (attach(m, "out_proj", out, fn)) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

nn_module *nn_multihead_attention_new(int64_t embed_dim, int64_t num_heads, double dropout,
                                      bool bias, int64_t kdim, int64_t vdim, bool batch_first) {
    const char *fn = "nn_multihead_attention_new";
    if (kdim < 0 || vdim < 0)
        return NN__FAIL(NN_ERR_INVALID,
                        "%s: kdim = %lld, vdim = %lld, expected >= 0 (0: embed_dim)", fn,
                        (long long)kdim, (long long)vdim);
    double cfg[9] = {(double)embed_dim, (double)num_heads, dropout,     bias,
                     (double)kdim,      (double)vdim,      batch_first, 0, 0};
    return mha_make(cfg, fn);
}

/* ---- int8 in-projections (module_internal.h; module/quantized.c drives) */

bool nn__mha_quantizable(const nn_module *m) {
    if (m->kind != &nn__kind_mha || ci(m, MHA_Q) || child(m, "q_proj")) return false;
    const char *names[3] = {"in_proj_weight", "q_proj_weight", "k_proj_weight"};
    for (int i = mha_packed(m) ? 0 : 1; i < (mha_packed(m) ? 1 : 3); i++) {
        const nn_tensor *w = nn__mod_param(m, names[i]);
        if (!w || w->dtype != NN_DTYPE_F32) return false;
    }
    const nn_tensor *v = mha_packed(m) ? NULL : nn__mod_param(m, "v_proj_weight");
    if (!mha_packed(m) && (!v || v->dtype != NN_DTYPE_F32)) return false;
    return ci(m, MHA_KDIM) <= NN__Q_DEPTH_MAX && ci(m, MHA_VDIM) <= NN__Q_DEPTH_MAX &&
           ci(m, MHA_E) <= NN__Q_DEPTH_MAX;
}

/* Rows [r0, r0 + rows) of src (f32 [*, cols]) as a new f32 [rows, cols]
 * parameter of a Linear, or the bias slice. */
static nn_status copy_rows(nn_tensor *dst, const nn_tensor *src, int64_t r0) {
    nn_tensor *c = nn__contig((nn_tensor *)src);
    if (!c) return nn_last_status();
    const int64_t cols = src->ndim == 2 ? src->shape[1] : 1;
    memcpy(nn__f32(dst), nn__f32(c) + r0 * cols, (size_t)dst->numel * sizeof(float));
    nn__tensor_release(c);
    return NN_OK;
}

nn_status nn__mha_float_projections(const nn_module *m, nn_module *out[3]) {
    const int64_t e = ci(m, MHA_E), in[3] = {e, ci(m, MHA_KDIM), ci(m, MHA_VDIM)};
    const bool bias = ci(m, MHA_BIAS) != 0, packed = mha_packed(m);
    const char *wn[3] = {"q_proj_weight", "k_proj_weight", "v_proj_weight"};
    const nn_tensor *b = bias ? nn__mod_param(m, "in_proj_bias") : NULL;
    nn_status st = NN_OK;
    for (int i = 0; i < 3; i++) out[i] = NULL;
    for (int i = 0; i < 3 && !st; i++) {
        out[i] = nn_linear_new(in[i], e, bias);
        if (!out[i]) {
            st = nn_last_status();
            break;
        }
        st = packed ? copy_rows(nn__mod_param(out[i], "weight"),
                                nn__mod_param(m, "in_proj_weight"), i * e)
                    : copy_rows(nn__mod_param(out[i], "weight"), nn__mod_param(m, wn[i]), 0);
        if (!st && b) st = copy_rows(nn__mod_param(out[i], "bias"), b, i * e);
    }
    if (st)
        for (int i = 0; i < 3; i++) {
            nn_module_free(out[i]);
            out[i] = NULL;
        }
    return st;
}

bool nn__mha_finish_quantized(nn_module *m) {
    if (m->kind != &nn__kind_mha || ci(m, MHA_Q)) return false;
    for (int i = 0; i < 3; i++) {
        const nn_module *c = child(m, mha_proj[i]);
        if (!c || !is_type(c, "QuantizedLinear")) return false;
    }
    const char *names[5] = {"in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                            "in_proj_bias"};
    for (int i = 0; i < 5; i++)
        if (nn__mod_param(m, names[i])) nn__mod_remove(m, names[i]);
    m->cfg[MHA_Q] = 1;
    return true;
}

void nn__mha_unquantize(nn_module *m) {
    if (m->kind != &nn__kind_mha || ci(m, MHA_Q)) return;
    for (int i = 0; i < 3; i++)
        if (child(m, mha_proj[i])) nn__mod_remove(m, mha_proj[i]);
}

static bool is_mha(const nn_module *m, const char *fn) {
    if (!nn__mod_check(m, fn, "m")) return false;
    if (m->kind == &nn__kind_mha) return true;
    nn__err(NN_ERR_INVALID, "%s: module is a %s, not a MultiheadAttention", fn,
            nn_module_type_name(m));
    return false;
}

nn_tensor *nn_multihead_attention_forward(nn_module *m, nn_tensor *query, nn_tensor *key,
                                          nn_tensor *value, nn_tensor *key_padding_mask,
                                          nn_tensor *attn_mask, bool need_weights,
                                          bool average_attn_weights, nn_tensor **attn_weights) {
    const char *fn = "nn_multihead_attention_forward";
    if (attn_weights) *attn_weights = NULL;
    if (!is_mha(m, fn)) return NULL;
    if (need_weights && !attn_weights) return nn__err_null(fn, "attn_weights"), NULL;
    nn_tensor *xs[5] = {query, key, value, key_padding_mask, attn_mask};
    if (!need_weights) return nn_module_forward_n(m, xs, 5);
    if (!nn__check_tensor(query, fn, "query") || !nn__check_tensor(key, fn, "key") ||
        !nn__check_tensor(value, fn, "value"))
        return NULL;
    for (int i = 3; i < 5; i++)
        if ((xs[i] || nn__err_pending()) &&
            !nn__check_tensor(xs[i], fn, i == 3 ? "key_padding_mask" : "attn_mask"))
            return NULL;
    nn_scope *s = nn__compose_begin();
    if (!s) return NULL;
    nn_tensor *w = NULL;
    nn_tensor *y = mha_run(m, xs, 5, true, average_attn_weights, &w);
    if (y)
        nn__tensor_retain(w); /* survives the scope */
    else
        w = NULL;
    y = nn__compose_end(s, y);
    if (!y) {
        nn__tensor_release(w);
        return NULL;
    }
    *attn_weights = nn__track(w);
    return nn__track(y);
}

/* ============================================ Transformer layers */

/* Keys shared by both layers, in PyTorch's argument order. */
enum { TL_D, TL_NHEAD, TL_DFF, TL_DROPOUT, TL_ACT, TL_EPS, TL_BF, TL_NORM_FIRST };
static const char *const tl_keys[] = {"d_model",     "nhead",      "dim_feedforward",
                                      "dropout",     "activation", "layer_norm_eps",
                                      "batch_first", "norm_first"};
static const double tl_defaults[] = {NAN, NAN, 2048, 0.1, 0, 1e-5, 0, 0};

extern const nn__mod_kind nn__kind_enc_layer, nn__kind_dec_layer;

static bool is_decoder_layer(const nn_module *m) { return m->kind == &nn__kind_dec_layer; }

static nn_status tl_build(nn_module *m) {
    nn_status st = cfg_int(m, TL_D, 1, MAX_SIZE);
    if (!st) st = cfg_int(m, TL_NHEAD, 1, MAX_SIZE);
    if (!st) st = cfg_int(m, TL_DFF, 1, MAX_SIZE);
    if (!st) st = cfg_real(m, TL_DROPOUT, 0, 1, true);
    if (!st) st = cfg_int(m, TL_ACT, 0, 2);
    if (!st) st = cfg_real(m, TL_EPS, 1e-300, 1, false);
    if (!st) st = cfg_int(m, TL_BF, 0, 1);
    if (!st) st = cfg_int(m, TL_NORM_FIRST, 0, 1);
    if (!st && ci(m, TL_D) % ci(m, TL_NHEAD))
        st = nn__err(NN_ERR_INVALID, "%s: d_model = %lld is not divisible by nhead = %lld",
                     m->kind->type, (long long)ci(m, TL_D), (long long)ci(m, TL_NHEAD));
    return st;
}

static nn_status check_mha_child(const nn_module *m, const char *name) {
    const nn_module *c = child(m, name);
    if (!c) return nn__err(NN_ERR_FORMAT, "%s: child '%s' is missing", m->kind->type, name);
    double d = m->cfg[TL_D];
    if (c->kind != &nn__kind_mha || c->cfg[MHA_E] != d || c->cfg[MHA_H] != m->cfg[TL_NHEAD] ||
        c->cfg[MHA_KDIM] != d || c->cfg[MHA_VDIM] != d || c->cfg[MHA_BF] != m->cfg[TL_BF])
        return nn__err(NN_ERR_FORMAT,
                       "%s: child '%s' is not a MultiheadAttention(%lld, %lld, batch_first=%d)",
                       m->kind->type, name, (long long)ci(m, TL_D), (long long)ci(m, TL_NHEAD),
                       (int)ci(m, TL_BF));
    return NN_OK;
}

static nn_status check_norm(const nn_module *m, const char *name, double d) {
    const nn_module *c = child(m, name);
    if (!c) return nn__err(NN_ERR_FORMAT, "%s: child '%s' is missing", m->kind->type, name);
    if (!is_type(c, "LayerNorm") || cfg_of(c, "ndim") != 1 || cfg_of(c, "shape0") != d)
        return nn__err(NN_ERR_FORMAT, "%s: child '%s' is a %s, expected LayerNorm(%.0f)",
                       m->kind->type, name, nn_module_type_name(c), d);
    return NN_OK;
}

static nn_status check_dropout(const nn_module *m, const char *name) {
    const nn_module *c = child(m, name);
    if (!c) return nn__err(NN_ERR_FORMAT, "%s: child '%s' is missing", m->kind->type, name);
    if (!is_type(c, "Dropout"))
        return nn__err(NN_ERR_FORMAT, "%s: child '%s' is a %s, expected Dropout", m->kind->type,
                       name, nn_module_type_name(c));
    return NN_OK;
}

static const char *const enc_names[] = {"self_attn", "linear1", "dropout",  "linear2",
                                        "norm1",     "norm2",   "dropout1", "dropout2"};
static const char *const dec_names[] = {"self_attn", "multihead_attn", "linear1", "dropout",
                                        "linear2",   "norm1",          "norm2",   "norm3",
                                        "dropout1",  "dropout2",       "dropout3"};

static nn_status tl_complete(const nn_module *m) {
    bool dec = is_decoder_layer(m);
    nn_status st = dec ? check_names(m, dec_names, 11) : check_names(m, enc_names, 8);
    int64_t d = ci(m, TL_D), dff = ci(m, TL_DFF);
    if (!st) st = check_mha_child(m, "self_attn");
    if (!st && dec) st = check_mha_child(m, "multihead_attn");
    if (!st) st = check_linear(m, "linear1", d, dff, -1);
    if (!st) st = check_linear(m, "linear2", dff, d, -1);
    static const char *const norms[] = {"norm1", "norm2", "norm3"};
    static const char *const drops[] = {"dropout", "dropout1", "dropout2", "dropout3"};
    for (int i = 0; i < (dec ? 3 : 2) && !st; i++) st = check_norm(m, norms[i], (double)d);
    for (int i = 0; i < (dec ? 4 : 3) && !st; i++) st = check_dropout(m, drops[i]);
    return st;
}

static nn_tensor *run(const nn_module *m, const char *name, nn_tensor *x) {
    return nn_module_forward(child(m, name), x);
}

/* One residual branch: attention (attn != NULL) on (x, mem, mem) with its
 * masks -- mem NULL for self-attention, whose keys and values are its
 * input -- or the feed-forward block; drop is the branch's last dropout. */
typedef struct block {
    const char *attn, *drop;
    nn_tensor *mem, *mask, *kpm;
} block;

/* dropout_k(attn(x, kv, kv, kpm, mask)) or dropout_k(linear2(dropout(act(linear1(x))))). */
static nn_tensor *apply_block(const nn_module *m, const block *b, nn_tensor *x) {
    if (b->attn) {
        nn_tensor *kv = b->mem ? b->mem : x;
        nn_tensor *xs[5] = {x, kv, kv, b->kpm, b->mask};
        return run(m, b->drop, nn__track(nn__mod_forward_n(child(m, b->attn), xs, 5)));
    }
    nn_tensor *h = run(m, "linear1", x);
    int act = (int)ci(m, TL_ACT);
    h = act == 0 ? nn_relu(h) : nn_gelu(h, act == 2);
    return run(m, b->drop, run(m, "linear2", run(m, "dropout", h)));
}

/* x + f(norm(x)) (norm_first) or norm(x + f(x)). */
static nn_tensor *residual(const nn_module *m, const char *norm, const block *b, nn_tensor *x) {
    if (ci(m, TL_NORM_FIRST)) return nn_add(x, apply_block(m, b, run(m, norm, x)));
    return run(m, norm, nn_add(x, apply_block(m, b, x)));
}

static nn_status check_f32(const nn_module *m, nn_tensor *x, const char *what) {
    if (x->dtype == NN_DTYPE_F32) return NN_OK;
    return nn__err(NN_ERR_DTYPE, "%s: %s must be f32, got %s", m->kind->type, what,
                   nn_dtype_name(x->dtype));
}

/* Encoder layer: (src[, src_mask[, src_key_padding_mask]]). */
static nn_tensor *enc_forward_n(nn_module *m, nn_tensor *const *xs, int n) {
    if (check_f32(m, xs[0], "src")) return NULL;
    block sa = {"self_attn", "dropout1", NULL, n > 1 ? xs[1] : NULL, n > 2 ? xs[2] : NULL};
    block ff = {NULL, "dropout2", NULL, NULL, NULL};
    return residual(m, "norm2", &ff, residual(m, "norm1", &sa, xs[0]));
}

static nn_tensor *enc_forward(nn_module *m, nn_tensor *x) { return enc_forward_n(m, &x, 1); }

/* Decoder layer: (tgt, memory[, tgt_mask[, memory_mask[,
 * tgt_key_padding_mask[, memory_key_padding_mask]]]]). */
static nn_tensor *dec_forward_n(nn_module *m, nn_tensor *const *xs, int n) {
    nn_tensor *opt[4] = {NULL, NULL, NULL, NULL};
    for (int i = 2; i < n; i++) opt[i - 2] = xs[i];
    if (check_f32(m, xs[0], "tgt") || check_f32(m, xs[1], "memory")) return NULL;
    block sa = {"self_attn", "dropout1", NULL, opt[0], opt[2]};
    block ca = {"multihead_attn", "dropout2", xs[1], opt[1], opt[3]};
    block ff = {NULL, "dropout3", NULL, NULL, NULL};
    nn_tensor *x = residual(m, "norm1", &sa, xs[0]);
    return residual(m, "norm3", &ff, residual(m, "norm2", &ca, x));
}

static nn_tensor *needs_memory(nn_module *m, nn_tensor *x) {
    (void)x;
    return NN__FAIL(NN_ERR_INVALID,
                    "%s: forward needs (tgt, memory): use nn_module_forward_n with 2 to 6 inputs",
                    m->kind->type);
}

static double tl_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)out;
    if (!in) return 0;
    double d = (double)ci(m, TL_D), rows = (double)in->numel / d;
    double t = in->ndim >= 2 ? (double)in->shape[ci(m, TL_BF) ? in->ndim - 2 : 0] : 1;
    double attn = rows * (8.0 * d * d + 4.0 * t * d);
    return attn * (is_decoder_layer(m) ? 2 : 1) + rows * 4.0 * d * (double)ci(m, TL_DFF);
}

const nn__mod_kind nn__kind_enc_layer = {.type = "TransformerEncoderLayer",
                                         .nkeys = 8,
                                         .keys = tl_keys,
                                         .defaults = tl_defaults,
                                         .build = tl_build,
                                         .forward = enc_forward,
                                         .flops = tl_flops,
                                         .container = true,
                                         .forward_n = enc_forward_n,
                                         .min_inputs = 1,
                                         .max_inputs = 3,
                                         .check_complete = tl_complete};

const nn__mod_kind nn__kind_dec_layer = {.type = "TransformerDecoderLayer",
                                         .nkeys = 8,
                                         .keys = tl_keys,
                                         .defaults = tl_defaults,
                                         .build = tl_build,
                                         .forward = needs_memory,
                                         .flops = tl_flops,
                                         .container = true,
                                         .forward_n = dec_forward_n,
                                         .min_inputs = 2,
                                         .max_inputs = 6,
                                         .check_complete = tl_complete};

/* A layer of kind k with every child, from its hyperparameters. */
static nn_module *layer_make(const nn__mod_kind *k, const double *cfg, const char *fn) {
    nn_module *m = nn__mod_new_kind(k, cfg);
    if (!m) return NULL;
    bool dec = k == &nn__kind_dec_layer;
    int64_t d = ci(m, TL_D), dff = ci(m, TL_DFF);
    double p = m->cfg[TL_DROPOUT], eps = m->cfg[TL_EPS];
    double acfg[9] = {(double)d, m->cfg[TL_NHEAD], p, 1, (double)d, (double)d, m->cfg[TL_BF], 0, 0};
    const char *const *names = dec ? dec_names : enc_names;
    int nn_ = dec ? 11 : 8;
    nn_status st = NN_OK;
    for (int i = 0; i < nn_ && !st; i++) {
        const char *nm = names[i];
        nn_module *c;
        if (!strcmp(nm, "self_attn") || !strcmp(nm, "multihead_attn"))
            c = mha_make(acfg, fn);
        else if (!strcmp(nm, "linear1"))
            c = nn_linear_new(d, dff, true);
        else if (!strcmp(nm, "linear2"))
            c = nn_linear_new(dff, d, true);
        else if (!strncmp(nm, "norm", 4))
            c = nn_layer_norm_new(&d, 1, eps, true);
        else
            c = nn_dropout_new(p);
        st = attach(m, nm, c, fn);
    }
    if (st) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

static nn_module *layer_new(const nn__mod_kind *k, int64_t d_model, int64_t nhead,
                            int64_t dim_feedforward, double dropout,
                            nn_transformer_activation activation, double layer_norm_eps,
                            bool batch_first, bool norm_first, const char *fn) {
    double cfg[8] = {(double)d_model, (double)nhead,      (double)dim_feedforward,
                     dropout,         (double)activation, layer_norm_eps,
                     batch_first,     norm_first};
    return layer_make(k, cfg, fn);
}

nn_module *nn_transformer_encoder_layer_new(int64_t d_model, int64_t nhead, int64_t dim_feedforward,
                                            double dropout, nn_transformer_activation activation,
                                            double layer_norm_eps, bool batch_first,
                                            bool norm_first) {
    return layer_new(&nn__kind_enc_layer, d_model, nhead, dim_feedforward, dropout, activation,
                     layer_norm_eps, batch_first, norm_first, "nn_transformer_encoder_layer_new");
}

nn_module *nn_transformer_decoder_layer_new(int64_t d_model, int64_t nhead, int64_t dim_feedforward,
                                            double dropout, nn_transformer_activation activation,
                                            double layer_norm_eps, bool batch_first,
                                            bool norm_first) {
    return layer_new(&nn__kind_dec_layer, d_model, nhead, dim_feedforward, dropout, activation,
                     layer_norm_eps, batch_first, norm_first, "nn_transformer_decoder_layer_new");
}

/* ============================================ Transformer stacks */

enum { ST_LAYERS, ST_NORM };
static const char *const st_keys[] = {"num_layers", "norm"};
static const double st_defaults[] = {NAN, 0};

extern const nn__mod_kind nn__kind_encoder, nn__kind_decoder;

static const nn__mod_kind *layer_kind(const nn_module *stack) {
    return stack->kind == &nn__kind_encoder ? &nn__kind_enc_layer : &nn__kind_dec_layer;
}

static nn_status st_build(nn_module *m) {
    nn_status st = cfg_int(m, ST_LAYERS, 1, 65536);
    if (!st) st = cfg_int(m, ST_NORM, 0, 1);
    return st;
}

static nn_status st_complete(const nn_module *m) {
    static const char *const names[] = {"layers", "norm"};
    nn_status st = check_names(m, names, ci(m, ST_NORM) ? 2 : 1);
    if (st) return st;
    const nn_module *ls = child(m, "layers");
    const nn__mod_kind *lk = layer_kind(m);
    if (!ls || ls->kind != &nn__kind_module_list || ls->nchildren != ci(m, ST_LAYERS))
        return nn__err(NN_ERR_FORMAT, "%s: child 'layers' must be a ModuleList of %lld %ss",
                       m->kind->type, (long long)ci(m, ST_LAYERS), lk->type);
    double d = NAN;
    for (int i = 0; i < ls->nchildren; i++) {
        const nn_module *l = ls->children[i].m;
        if (l->kind != lk || (i > 0 && l->cfg[TL_D] != d) ||
            l->cfg[TL_BF] != ls->children[0].m->cfg[TL_BF])
            return nn__err(NN_ERR_FORMAT,
                           "%s: layers.%d is a %s, expected a %s like layers.0 (same d_model "
                           "and batch_first)",
                           m->kind->type, i, nn_module_type_name(l), lk->type);
        d = l->cfg[TL_D];
    }
    if (ci(m, ST_NORM)) return check_norm(m, "norm", d);
    return NN_OK;
}

/* Encoder: (src[, mask[, src_key_padding_mask]]); decoder: the decoder
 * layer's six inputs. Every layer gets the same masks. */
static nn_tensor *st_forward_n(nn_module *m, nn_tensor *const *xs, int n) {
    const nn_module *ls = child(m, "layers");
    nn_tensor *in[6];
    for (int i = 0; i < n; i++) in[i] = xs[i];
    for (int i = 0; i < ls->nchildren && in[0]; i++)
        in[0] = nn__track(nn__mod_forward_n(ls->children[i].m, in, n));
    if (!in[0]) return NULL;
    return ci(m, ST_NORM) ? run(m, "norm", in[0]) : in[0];
}

static nn_tensor *enc_stack_forward(nn_module *m, nn_tensor *x) { return st_forward_n(m, &x, 1); }

static double st_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    const nn_module *ls = child(m, "layers");
    return ls ? (double)ls->nchildren * tl_flops(ls->children[0].m, in, out) : 0;
}

const nn__mod_kind nn__kind_encoder = {.type = "TransformerEncoder",
                                       .nkeys = 2,
                                       .keys = st_keys,
                                       .defaults = st_defaults,
                                       .build = st_build,
                                       .forward = enc_stack_forward,
                                       .flops = st_flops,
                                       .container = true,
                                       .forward_n = st_forward_n,
                                       .min_inputs = 1,
                                       .max_inputs = 3,
                                       .check_complete = st_complete};

const nn__mod_kind nn__kind_decoder = {.type = "TransformerDecoder",
                                       .nkeys = 2,
                                       .keys = st_keys,
                                       .defaults = st_defaults,
                                       .build = st_build,
                                       .forward = needs_memory,
                                       .flops = st_flops,
                                       .container = true,
                                       .forward_n = st_forward_n,
                                       .min_inputs = 2,
                                       .max_inputs = 6,
                                       .check_complete = st_complete};

/* A copy of layer (same hyperparameters, weights and causal flags). */
static nn_module *layer_clone(const nn_module *layer, const char *fn) {
    nn_module *c = layer_make(layer->kind, layer->cfg, fn);
    if (!c) return NULL;
    nn_statedict *sd = nn_module_state_dict((nn_module *)layer);
    nn_status st = sd ? nn_module_load_state_dict(c, sd, true, NULL) : nn_last_status();
    nn_statedict_free(sd);
    for (int i = 0; i < c->nchildren && !st; i++)
        if (c->children[i].m->kind == &nn__kind_mha)
            c->children[i].m->cfg[MHA_CAUSAL] = child(layer, c->children[i].name)->cfg[MHA_CAUSAL];
    if (st) {
        nn_module_free(c);
        return NULL;
    }
    nn_module_train(c, layer->training);
    return c;
}

static nn_module *stack_new(const nn__mod_kind *k, nn_module *layer, int num_layers,
                            nn_module *norm, const char *fn) {
    const nn__mod_kind *lk = k == &nn__kind_encoder ? &nn__kind_enc_layer : &nn__kind_dec_layer;
    nn_status st = NN_OK;
    bool pending_norm = !norm && nn__err_pending(); /* NULL from a failed constructor */
    if (!layer)
        st = nn__err_null(fn, "layer");
    else if (!nn__mod_check(layer, fn, "layer"))
        st = nn_last_status();
    else if (layer->kind != lk)
        st = nn__err(NN_ERR_INVALID, "%s: layer is a %s, expected a %s", fn,
                     nn_module_type_name(layer), lk->type);
    else if (pending_norm)
        st = nn_last_status();
    else if (norm && !nn__mod_check(norm, fn, "norm"))
        st = nn_last_status();
    else if (norm && (!is_type(norm, "LayerNorm") || cfg_of(norm, "ndim") != 1 ||
                      cfg_of(norm, "shape0") != layer->cfg[TL_D]))
        st = nn__err(NN_ERR_INVALID, "%s: norm is a %s, expected LayerNorm(%lld)", fn,
                     nn_module_type_name(norm), (long long)ci(layer, TL_D));
    nn_module *m = NULL, *list = NULL;
    if (!st) {
        double cfg[2] = {num_layers, norm != NULL};
        m = nn__mod_new_kind(k, cfg);
        list = m ? nn_module_list_new() : NULL;
        if (!m || !list) st = nn_last_status();
    }
    /* layers.0 is the layer given, the others copies of it */
    if (!st) st = nn_module_list_append(list, nn_module_retain(layer));
    for (int i = 1; i < num_layers && !st; i++)
        st = nn_module_list_append(list, layer_clone(layer, fn));
    if (!st) {
        st = attach(m, "layers", list, fn);
        list = NULL;
    }
    if (!st && norm) {
        st = attach(m, "norm", norm, fn);
        norm = NULL;
    }
    nn_module_free(list);
    if (nn__handle_is(norm, NN__KIND_MODULE)) nn_module_free(norm);
    if (nn__handle_is(layer, NN__KIND_MODULE)) nn_module_free(layer);
    if (st) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

nn_module *nn_transformer_encoder_new(nn_module *encoder_layer, int num_layers, nn_module *norm) {
    return stack_new(&nn__kind_encoder, encoder_layer, num_layers, norm,
                     "nn_transformer_encoder_new");
}

nn_module *nn_transformer_decoder_new(nn_module *decoder_layer, int num_layers, nn_module *norm) {
    return stack_new(&nn__kind_decoder, decoder_layer, num_layers, norm,
                     "nn_transformer_decoder_new");
}

/* ============================================ causal attention */

/* Set is_causal on every self-attention under m (not cross-attention). */
static int set_causal(nn_module *m, bool causal) {
    if (m->kind == &nn__kind_mha) {
        m->cfg[MHA_CAUSAL] = causal;
        return 1;
    }
    if (m->kind == &nn__kind_enc_layer || m->kind == &nn__kind_dec_layer)
        return set_causal(child(m, "self_attn"), causal);
    int n = 0;
    if (m->kind == &nn__kind_encoder || m->kind == &nn__kind_decoder) {
        nn_module *ls = child(m, "layers");
        for (int i = 0; i < ls->nchildren; i++) n += set_causal(ls->children[i].m, causal);
    }
    return n;
}

nn_status nn_transformer_set_causal(nn_module *m, bool causal) {
    const char *fn = "nn_transformer_set_causal";
    if (!nn__mod_check(m, fn, "m")) return nn_last_status();
    if (m->kind != &nn__kind_mha && m->kind != &nn__kind_enc_layer &&
        m->kind != &nn__kind_dec_layer && m->kind != &nn__kind_encoder &&
        m->kind != &nn__kind_decoder)
        return nn__err(NN_ERR_INVALID,
                       "%s: module is a %s, not a MultiheadAttention or transformer layer/stack",
                       fn, nn_module_type_name(m));
    set_causal(m, causal);
    return nn__ok();
}

nn_tensor *nn_transformer_causal_mask(int64_t size) {
    const char *fn = "nn_transformer_causal_mask";
    if (size < 1 || size > (1LL << 20))
        return NN__FAIL(NN_ERR_INVALID, "%s: size = %lld, expected 1..2^20", fn, (long long)size);
    int64_t sh[2] = {size, size};
    nn_tensor *t = nn__zeros(NN_DTYPE_F32, sh, 2);
    if (!t) return NULL;
    float *p = nn__f32(t);
    for (int64_t i = 0; i < size; i++)
        for (int64_t j = i + 1; j < size; j++) p[i * size + j] = -INFINITY;
    return nn__track(t);
}
