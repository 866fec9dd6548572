/* ONNX export of libnn modules (nn_onnx_save): the module tree is walked
 * while an example input (zeros of the caller's shape) runs through it
 * layer by layer in eval mode without grad, so every node knows its input
 * and output shapes. Each built-in kind maps to a few ONNX nodes of opset
 * 17; parameters become initializers under their dotted names (what
 * PyTorch's export writes), so importing the file gives the same state
 * dict. Dim 0 of the input and the output is the symbolic batch "N";
 * internal reshapes keep it with 0 ("copy this dim"). Built on the
 * protobuf-c structs generated from onnx.proto, packed at the end; every
 * allocation of the walk lives in one arena freed at the end. */
#include "onnx/onnx_internal.h"
#include "io/io_internal.h"
#include "module/module_internal.h"
#include "nn_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#if NN_HAVE_ONNX

#define OPSET 17

typedef struct ex {
    const char *fn;
    void **blocks;
    size_t nblocks, capblocks;
    Onnx__NodeProto **nodes;
    size_t nnodes, capnodes;
    Onnx__TensorProto **inits;
    size_t ninits, capinits;
    int counter;
    nn_status err;
} ex;

static void *ex_alloc(ex *e, size_t n) {
    if (e->err) return NULL;
    if (e->nblocks == e->capblocks) {
        size_t nc = e->capblocks ? e->capblocks * 2 : 64;
        void **nb = nn__realloc(e->blocks, nc * sizeof *nb);
        if (!nb) {
            e->err = NN_ERR_NOMEM;
            return NULL;
        }
        e->blocks = nb;
        e->capblocks = nc;
    }
    void *p = nn__calloc(1, n ? n : 1);
    if (!p) {
        e->err = NN_ERR_NOMEM;
        return NULL;
    }
    e->blocks[e->nblocks++] = p;
    return p;
}

static char *ex_str(ex *e, const char *s) {
    size_t n = strlen(s);
    char *p = ex_alloc(e, n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

/* A fresh value name "<prefix>_<k>". */
static char *ex_name(ex *e, const char *prefix) {
    char buf[300];
    snprintf(buf, sizeof buf, "%s_%d", prefix[0] ? prefix : "v", e->counter++);
    return ex_str(e, buf);
}

static bool grow(ex *e, void ***arr, size_t n, size_t *cap) {
    if (e->err) return false;
    if (n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 32;
    void **na = nn__realloc(*arr, nc * sizeof *na);
    if (!na) {
        e->err = NN_ERR_NOMEM;
        return false;
    }
    *arr = na;
    *cap = nc;
    return true;
}

static Onnx__NodeProto *ex_node(ex *e, const char *op, const char *const *ins, int nin,
                                const char *out) {
    Onnx__NodeProto *n = ex_alloc(e, sizeof *n);
    char **in = ex_alloc(e, (size_t)(nin ? nin : 1) * sizeof *in);
    char **outs = ex_alloc(e, sizeof *outs);
    if (!n || !in || !outs || !grow(e, (void ***)&e->nodes, e->nnodes, &e->capnodes)) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++) in[i] = (char *)ins[i];
    outs[0] = (char *)out;
    n->n_input = (size_t)nin;
    n->input = in;
    n->n_output = 1;
    n->output = outs;
    n->op_type = (char *)op;
    n->name = ex_name(e, op);
    e->nodes[e->nnodes++] = n;
    return n;
}

static Onnx__AttributeProto *attr_new(ex *e, Onnx__NodeProto *n, const char *name) {
    if (!n) return NULL;
    Onnx__AttributeProto *a = ex_alloc(e, sizeof *a);
    Onnx__AttributeProto **arr = ex_alloc(e, (n->n_attribute + 1) * sizeof *arr);
    if (!a || !arr) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    if (n->n_attribute) memcpy(arr, n->attribute, n->n_attribute * sizeof *arr);
    arr[n->n_attribute++] = a;
    n->attribute = arr;
    return a;
}

static void attr_i(ex *e, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr_new(e, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

static void attr_f(ex *e, Onnx__NodeProto *n, const char *name, double v) {
    Onnx__AttributeProto *a = attr_new(e, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = (float)v;
}

static void attr_is(ex *e, Onnx__NodeProto *n, const char *name, const int64_t *v, int k) {
    Onnx__AttributeProto *a = attr_new(e, n, name);
    int64_t *p = ex_alloc(e, (size_t)(k ? k : 1) * sizeof *p);
    if (!a || !p) return;
    memcpy(p, v, (size_t)k * sizeof *p);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)k;
    a->ints = p;
}

static void attr_s(ex *e, Onnx__NodeProto *n, const char *name, const char *s) {
    Onnx__AttributeProto *a = attr_new(e, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.data = (uint8_t *)s;
    a->s.len = strlen(s);
}

/* An initializer named name holding t's elements (f32 or i64). */
static const char *ex_init(ex *e, const char *name, const nn_tensor *t) {
    Onnx__TensorProto *tp = ex_alloc(e, sizeof *tp);
    int64_t *dims = ex_alloc(e, (size_t)(t->ndim ? t->ndim : 1) * sizeof *dims);
    size_t es = nn_dtype_size(t->dtype), nb;
    if (!nn__size_mul((size_t)t->numel, es, &nb)) {
        e->err = nn__err(NN_ERR_OVERFLOW, "%s: tensor '%s' too large", e->fn, name);
        return NULL;
    }
    uint8_t *raw = ex_alloc(e, nb);
    char *nm = ex_str(e, name);
    if (!tp || !dims || !raw || !nm || !grow(e, (void ***)&e->inits, e->ninits, &e->capinits))
        return NULL;
    if (nn_tensor_copy_to(t, raw, nb)) {
        e->err = nn_last_status();
        return NULL;
    }
    onnx__tensor_proto__init(tp);
    for (int i = 0; i < t->ndim; i++) dims[i] = t->shape[i];
    tp->n_dims = (size_t)t->ndim;
    tp->dims = dims;
    tp->has_data_type = 1;
    tp->data_type = t->dtype == NN_DTYPE_I64 ? 7 : 1;
    tp->name = nm;
    tp->has_raw_data = 1;
    tp->raw_data.data = raw;
    tp->raw_data.len = nb;
    e->inits[e->ninits++] = tp;
    return nm;
}

/* A fresh initializer from values (f32 when f != NULL, else i64 from iv). */
static const char *ex_const(ex *e, const char *prefix, const float *f, const int64_t *iv,
                            const int64_t *shape, int ndim) {
    nn_tensor *t = f ? nn__tensor_new(NN_DTYPE_F32, shape, ndim)
                     : nn__tensor_new(NN_DTYPE_I64, shape, ndim);
    if (!t) {
        e->err = NN_ERR_NOMEM;
        return NULL;
    }
    size_t n = (size_t)t->numel;
    if (f) memcpy(nn__f32(t), f, n * sizeof *f);
    else memcpy(nn__i64(t), iv, n * sizeof *iv);
    const char *name = ex_name(e, prefix);
    const char *r = name ? ex_init(e, name, t) : NULL;
    nn__tensor_release(t);
    return r;
}

static const char *ex_scalar(ex *e, float v) { return ex_const(e, "const", &v, NULL, NULL, 0); }

static const char *ex_ints(ex *e, const int64_t *v, int n) {
    int64_t s = n;
    return ex_const(e, "shape", NULL, v, &s, 1);
}

/* Shortcut: one node op(ins) -> a fresh value. */
static const char *ex_op(ex *e, const char *op, const char *const *ins, int nin,
                         Onnx__NodeProto **node) {
    const char *out = ex_name(e, op);
    Onnx__NodeProto *n = out ? ex_node(e, op, ins, nin, out) : NULL;
    if (node) *node = n;
    return n ? out : NULL;
}

/* ---------------------------------------------------------- the walk */

static double cfg(const nn_module *m, const char *key, double dflt) {
    int n = nn__module_config_count(m);
    for (int i = 0; i < n; i++) {
        const char *k;
        double v;
        if (!nn__module_config_get(m, i, &k, &v) && !strcmp(k, key)) return v;
    }
    return dflt;
}

static const char *param(ex *e, const nn_module *m, const char *prefix, const char *name) {
    nn_tensor *t = nn_module_get_parameter(m, name);
    if (!t) t = nn_module_get_buffer(m, name);
    if (!t) {
        e->err = nn_last_status();
        return NULL;
    }
    char full[600];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return ex_init(e, full, t);
}

static nn_status unsupported(ex *e, const nn_module *m, const char *why) {
    return e->err = nn__err(NN_ERR_UNSUPPORTED, "%s: module %s has no ONNX export%s%s", e->fn,
                            nn_module_type_name(m), why ? ": " : "", why ? why : "");
}

/* Reorder the gate blocks of a [G*H, K] weight or [G*H] bias from
 * PyTorch's order into ONNX's: dst block t = src block perm[t]. */
static void regate(float *dst, const float *src, int G, int64_t blk, const int *perm) {
    for (int t = 0; t < G; t++) memcpy(dst + t * blk, src + perm[t] * blk, (size_t)blk * sizeof *dst);
}

/* RNN/LSTM/GRU (nn_recurrent): one ONNX node per layer, [T, N, *] inside. */
static const char *emit_rnn(ex *e, nn_module *m, const char *prefix, const char *x) {
    const char *type = nn_module_type_name(m);
    bool lstm = !strcmp(type, "LSTM"), gru = !strcmp(type, "GRU");
    int G = lstm ? 4 : gru ? 3 : 1;
    static const int lstm_perm[4] = {0, 3, 1, 2}; /* ONNX i,o,f,c from torch i,f,g,o */
    static const int gru_perm[3] = {1, 0, 2};     /* ONNX z,r,h from torch r,z,n */
    static const int one[1] = {0};
    const int *perm = lstm ? lstm_perm : gru ? gru_perm : one;
    int64_t H = (int64_t)cfg(m, "hidden_size", 0), L = (int64_t)cfg(m, "num_layers", 1);
    bool bf = cfg(m, "batch_first", 1) != 0, bi = cfg(m, "bidirectional", 0) != 0;
    bool bias = cfg(m, "bias", 1) != 0;
    int64_t dirs = bi ? 2 : 1;
    if (bf) {
        Onnx__NodeProto *n;
        x = ex_op(e, "Transpose", (const char *[]){x}, 1, &n);
        attr_is(e, n, "perm", (int64_t[]){1, 0, 2}, 3);
    }
    for (int64_t l = 0; l < L && !e->err; l++) {
        nn_tensor *w0 = NULL;
        char nm[64];
        snprintf(nm, sizeof nm, "weight_ih_l%lld", (long long)l);
        if (!(w0 = nn_module_get_parameter(m, nm))) return e->err = nn_last_status(), NULL;
        int64_t I = w0->shape[1];
        int64_t ws[3] = {dirs, G * H, I}, rs[3] = {dirs, G * H, H}, bs[2] = {dirs, 2 * G * H};
        nn_tensor *W = nn__tensor_new(NN_DTYPE_F32, ws, 3), *R = nn__tensor_new(NN_DTYPE_F32, rs, 3);
        nn_tensor *B = nn__zeros(NN_DTYPE_F32, bs, 2);
        for (int64_t d = 0; W && R && B && d < dirs; d++) {
            const char *sfx = d ? "_reverse" : "";
            char n1[64], n2[64], n3[64], n4[64];
            snprintf(n1, 64, "weight_ih_l%lld%s", (long long)l, sfx);
            snprintf(n2, 64, "weight_hh_l%lld%s", (long long)l, sfx);
            snprintf(n3, 64, "bias_ih_l%lld%s", (long long)l, sfx);
            snprintf(n4, 64, "bias_hh_l%lld%s", (long long)l, sfx);
            nn_tensor *wi = nn_module_get_parameter(m, n1), *wh = nn_module_get_parameter(m, n2);
            if (!wi || !wh) {
                e->err = nn_last_status();
                break;
            }
            regate(nn__f32(W) + d * G * H * I, nn__f32(wi), G, H * I, perm);
            regate(nn__f32(R) + d * G * H * H, nn__f32(wh), G, H * H, perm);
            if (bias) {
                nn_tensor *bi_ = nn_module_get_parameter(m, n3), *bh = nn_module_get_parameter(m, n4);
                if (!bi_ || !bh) {
                    e->err = nn_last_status();
                    break;
                }
                regate(nn__f32(B) + d * 2 * G * H, nn__f32(bi_), G, H, perm);
                regate(nn__f32(B) + d * 2 * G * H + G * H, nn__f32(bh), G, H, perm);
            }
        }
        if (!W || !R || !B) e->err = NN_ERR_NOMEM;
        char base[600];
        snprintf(base, sizeof base, "%sonnx_l%lld_", prefix, (long long)l);
        char wn[700], rn[700], bn[700];
        snprintf(wn, sizeof wn, "%sW", base);
        snprintf(rn, sizeof rn, "%sR", base);
        snprintf(bn, sizeof bn, "%sB", base);
        const char *wv = !e->err ? ex_init(e, wn, W) : NULL;
        const char *rv = !e->err ? ex_init(e, rn, R) : NULL;
        const char *bv = !e->err ? ex_init(e, bn, B) : NULL;
        nn__tensor_release(W);
        nn__tensor_release(R);
        nn__tensor_release(B);
        if (e->err) return NULL;
        Onnx__NodeProto *n;
        const char *y = ex_op(e, lstm ? "LSTM" : gru ? "GRU" : "RNN",
                              (const char *[]){x, wv, rv, bv}, 4, &n);
        attr_i(e, n, "hidden_size", H);
        attr_s(e, n, "direction", bi ? "bidirectional" : "forward");
        if (gru) attr_i(e, n, "linear_before_reset", 1);
        if (!lstm && !gru) {
            Onnx__AttributeProto *a = attr_new(e, n, "activations");
            char **s = ex_alloc(e, sizeof *s);
            ProtobufCBinaryData *sd = ex_alloc(e, sizeof *sd);
            if (a && s && sd) {
                const char *act = cfg(m, "nonlinearity", 0) != 0 ? "Relu" : "Tanh";
                sd->data = (uint8_t *)act;
                sd->len = strlen(act);
                a->has_type = 1;
                a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
                a->n_strings = 1;
                a->strings = sd;
            }
            (void)s;
        }
        /* Y [T, dirs, N, H] -> [T, N, dirs, H] -> [T, N, dirs*H] */
        y = ex_op(e, "Transpose", (const char *[]){y}, 1, &n);
        attr_is(e, n, "perm", (int64_t[]){0, 2, 1, 3}, 4);
        x = ex_op(e, "Reshape", (const char *[]){y, ex_ints(e, (int64_t[]){0, 0, -1}, 3)}, 2, NULL);
    }
    if (bf) {
        Onnx__NodeProto *n;
        x = ex_op(e, "Transpose", (const char *[]){x}, 1, &n);
        attr_is(e, n, "perm", (int64_t[]){1, 0, 2}, 3);
    }
    return x;
}

static const char *emit(ex *e, nn_module *m, const char *prefix, const char *x,
                        const nn_tensor *xin, const nn_tensor *yout);

/* x Wᵀ (+ b) for a parameter pair of m (W [out, in]) on x [.., in]. */
static const char *linear_of(ex *e, const char *w, const char *b, const char *x) {
    Onnx__NodeProto *n;
    const char *wt = ex_op(e, "Transpose", (const char *[]){w}, 1, &n);
    attr_is(e, n, "perm", (int64_t[]){1, 0}, 2);
    const char *y = ex_op(e, "MatMul", (const char *[]){x, wt}, 2, NULL);
    return b ? ex_op(e, "Add", (const char *[]){y, b}, 2, NULL) : y;
}

static void too_long(ex *e, const char *prefix) {
    e->err = nn__err(NN_ERR_LIMIT, "%s: parameter names under '%.64s...' are too long", e->fn,
                     prefix);
}

/* p = "<prefix><name>." (a dotted parameter-name prefix); false past its size. */
static bool child_prefix(ex *e, char *p, size_t size, const char *prefix, const char *name) {
    int k = snprintf(p, size, "%s%s.", prefix, name);
    if (k >= 0 && (size_t)k < size) return true;
    too_long(e, prefix);
    return false;
}

static const char *child_emit(ex *e, nn_module *m, const char *prefix, const char *name,
                              const char *x, const nn_tensor *xin) {
    nn_module *c = nn_module_get_module(m, name);
    if (!c) return e->err = nn_last_status(), NULL;
    char p[600];
    if (!child_prefix(e, p, sizeof p, prefix, name)) return NULL;
    return emit(e, c, p, x, xin, xin);
}

static const char *ex_transpose(ex *e, const char *x, const int64_t *perm, int k) {
    Onnx__NodeProto *n;
    const char *y = ex_op(e, "Transpose", (const char *[]){x}, 1, &n);
    attr_is(e, n, "perm", perm, k);
    return y;
}

/* Split value x along axis into k parts of the given sizes (fresh names in
 * out[0..k)); false on error. */
static bool ex_split(ex *e, const char *x, int axis, const int64_t *sizes, int k,
                     const char **out) {
    Onnx__NodeProto *sp = ex_node(e, "Split", (const char *[]){x, ex_ints(e, sizes, k)}, 2, "");
    char **outs = ex_alloc(e, (size_t)k * sizeof *outs);
    if (!sp || !outs) return false;
    for (int i = 0; i < k; i++) out[i] = outs[i] = ex_name(e, "split");
    sp->n_output = (size_t)k;
    sp->output = outs;
    attr_i(e, sp, "axis", axis);
    return !e->err;
}

/* softmax(q kᵀ / sqrt(Dh) [+ causal mask]) v per head for q [N, L, E] and
 * k, v [N, S, E] (batch first), merged back to [N, L, E]. Heads by
 * Reshape [0, 0, H, Dh] + Transpose; the causal mask is an [L, S]
 * initializer hiding key j > query i (top-left aligned, as the modules'
 * own attention). */
static const char *ex_attention(ex *e, const char *q, const char *k, const char *v, int64_t E,
                                int64_t H, int64_t L, int64_t S, bool causal) {
    const int64_t Dh = E / H;
    const char *heads = ex_ints(e, (int64_t[]){0, 0, H, Dh}, 4);
    static const int64_t nhtd[4] = {0, 2, 1, 3}, nhdt[4] = {0, 2, 3, 1};
    const char *qh = ex_transpose(e, ex_op(e, "Reshape", (const char *[]){q, heads}, 2, NULL), nhtd, 4);
    const char *kh = ex_transpose(e, ex_op(e, "Reshape", (const char *[]){k, heads}, 2, NULL), nhdt, 4);
    const char *vh = ex_transpose(e, ex_op(e, "Reshape", (const char *[]){v, heads}, 2, NULL), nhtd, 4);
    const char *sc = ex_op(e, "MatMul", (const char *[]){qh, kh}, 2, NULL);
    sc = ex_op(e, "Mul", (const char *[]){sc, ex_scalar(e, (float)(1.0 / sqrt((double)Dh)))}, 2, NULL);
    if (causal && !e->err) {
        int64_t ls[2] = {L, S};
        nn_tensor *mask = nn__zeros(NN_DTYPE_F32, ls, 2);
        for (int64_t i = 0; mask && i < L; i++)
            for (int64_t j = i + 1; j < S; j++) nn__f32(mask)[i * S + j] = -INFINITY;
        const char *mk = mask ? ex_const(e, "causal", nn__f32(mask), NULL, ls, 2) : NULL;
        if (!mask) e->err = nn_last_status();
        nn__tensor_release(mask);
        sc = ex_op(e, "Add", (const char *[]){sc, mk}, 2, NULL);
    }
    Onnx__NodeProto *n;
    const char *pr = ex_op(e, "Softmax", (const char *[]){sc}, 1, &n);
    attr_i(e, n, "axis", -1);
    const char *o = ex_transpose(e, ex_op(e, "MatMul", (const char *[]){pr, vh}, 2, NULL), nhtd, 4);
    return ex_op(e, "Reshape", (const char *[]){o, ex_ints(e, (int64_t[]){0, 0, E}, 3)}, 2, NULL);
}

/* A MultiheadAttention on query x [N, L, E] (batch_first) or [L, N, E]:
 * self-attention when key is NULL (one packed projection, then Split),
 * else attention over key/value [N, S, E] (the packed weight and bias
 * split in three); heads, the output projection. xin and kin are the
 * example query and key (kin NULL for self-attention). */
static const char *emit_mha(ex *e, nn_module *m, const char *prefix, const char *x,
                            const char *key, const char *value, const nn_tensor *xin,
                            const nn_tensor *kin) {
    int64_t E = (int64_t)cfg(m, "embed_dim", 0), H = (int64_t)cfg(m, "num_heads", 1);
    bool bf = cfg(m, "batch_first", 0) != 0, bias = cfg(m, "bias", 1) != 0;
    if (xin->ndim != 3 || (kin && kin->ndim != 3)) return unsupported(e, m, "unbatched input"), NULL;
    int64_t L = xin->shape[bf ? 1 : 0], S = kin ? kin->shape[bf ? 1 : 0] : L;
    static const int64_t swap[3] = {1, 0, 2};
    if (!bf) {
        x = ex_transpose(e, x, swap, 3);
        if (key) key = ex_transpose(e, key, swap, 3);
        if (value) value = value == key ? key : ex_transpose(e, value, swap, 3);
    }
    if (!nn_module_get_parameter(m, "in_proj_weight")) {
        nn_clear_error();
        const bool q = nn_module_get_module(m, "q_proj") != NULL;
        nn_clear_error();
        return unsupported(e, m, q ? "int8 in-projections (nn_quantize_dynamic / _static)"
                                   : "separate q/k/v projections (kdim/vdim)"),
               NULL;
    }
    const char *w = param(e, m, prefix, "in_proj_weight");
    const char *b = bias ? param(e, m, prefix, "in_proj_bias") : NULL;
    const int64_t thirds[3] = {E, E, E};
    const char *q, *k, *v;
    if (!key) {
        const char *qkv[3];
        if (!ex_split(e, linear_of(e, w, b, x), -1, thirds, 3, qkv)) return NULL;
        q = qkv[0], k = qkv[1], v = qkv[2];
    } else {
        const char *ws[3], *bs[3] = {NULL, NULL, NULL};
        if (!ex_split(e, w, 0, thirds, 3, ws) || (b && !ex_split(e, b, 0, thirds, 3, bs)))
            return NULL;
        q = linear_of(e, ws[0], bs[0], x);
        k = linear_of(e, ws[1], bs[1], key);
        v = linear_of(e, ws[2], bs[2], value);
    }
    const char *o = ex_attention(e, q, k, v, E, H, L, S, cfg(m, "is_causal", 0) != 0);
    o = child_emit(e, m, prefix, "out_proj", o, xin);
    return bf ? o : ex_transpose(e, o, swap, 3);
}

/* The child MultiheadAttention `name` of a transformer layer. */
static const char *mha_child(ex *e, nn_module *m, const char *prefix, const char *name,
                             const char *x, const char *mem, const nn_tensor *xin,
                             const nn_tensor *memin) {
    nn_module *c = nn_module_get_module(m, name);
    if (!c) return e->err = nn_last_status(), NULL;
    char p[600];
    if (!child_prefix(e, p, sizeof p, prefix, name)) return NULL;
    return emit_mha(e, c, p, x, mem, mem, xin, memin);
}

/* A transformer layer's feed-forward block: linear2(act(linear1(h))). */
static const char *emit_ff(ex *e, nn_module *m, const char *prefix, const char *h,
                           const nn_tensor *xin) {
    int act = (int)cfg(m, "activation", 0);
    h = child_emit(e, m, prefix, "linear1", h, xin);
    if (act == 0) h = ex_op(e, "Relu", (const char *[]){h}, 1, NULL);
    else {
        nn_module *g = nn_gelu_new(act == 2);
        h = g ? emit(e, g, prefix, h, xin, xin) : NULL;
        if (!g) e->err = nn_last_status();
        nn_module_free(g);
    }
    return child_emit(e, m, prefix, "linear2", h, xin);
}

/* One residual branch of a transformer layer: x + f(norm(x)) (norm_first)
 * or norm(x + f(x)), f the self-attention (mem NULL), the cross-attention
 * over mem, or the feed-forward block (ff). */
static const char *emit_branch(ex *e, nn_module *m, const char *prefix, const char *norm,
                               const char *attn, bool ff, const char *x, const char *mem,
                               const nn_tensor *xin, const nn_tensor *memin) {
    bool pre = cfg(m, "norm_first", 0) != 0;
    const char *h = pre ? child_emit(e, m, prefix, norm, x, xin) : x;
    h = ff ? emit_ff(e, m, prefix, h, xin) : mha_child(e, m, prefix, attn, h, mem, xin, memin);
    x = ex_op(e, "Add", (const char *[]){x, h}, 2, NULL);
    return pre ? x : child_emit(e, m, prefix, norm, x, xin);
}

/* TransformerEncoderLayer: the self-attention branch, then the feed-forward one. */
static const char *emit_enc_layer(ex *e, nn_module *m, const char *prefix, const char *x,
                                  const nn_tensor *xin) {
    x = emit_branch(e, m, prefix, "norm1", "self_attn", false, x, NULL, xin, NULL);
    return emit_branch(e, m, prefix, "norm2", NULL, true, x, NULL, xin, NULL);
}

/* TransformerDecoderLayer on (tgt, memory): self-attention, cross-attention
 * over memory, feed-forward. */
static const char *emit_dec_layer(ex *e, nn_module *m, const char *prefix, const char *x,
                                  const char *mem, const nn_tensor *xin, const nn_tensor *memin) {
    x = emit_branch(e, m, prefix, "norm1", "self_attn", false, x, NULL, xin, NULL);
    x = emit_branch(e, m, prefix, "norm2", "multihead_attn", false, x, mem, xin, memin);
    return emit_branch(e, m, prefix, "norm3", NULL, true, x, NULL, xin, NULL);
}

/* TransformerEncoder / TransformerDecoder (mem non-NULL): the layers in
 * order, then the optional final norm. */
static const char *emit_stack(ex *e, nn_module *m, const char *prefix, const char *x,
                              const char *mem, const nn_tensor *xin, const nn_tensor *memin) {
    nn_module *ls = nn_module_get_module(m, "layers");
    if (!ls) return e->err = nn_last_status(), NULL;
    int n = nn__module_num_children(ls);
    for (int i = 0; i < n && x; i++) {
        const char *nm;
        nn_module *l = nn__module_child(ls, i, &nm);
        char p[600];
        if (!l) return e->err = nn_last_status(), NULL;
        if (snprintf(p, sizeof p, "%slayers.%s.", prefix, nm) >= (int)sizeof p)
            return too_long(e, prefix), NULL;
        x = mem ? emit_dec_layer(e, l, p, x, mem, xin, memin) : emit_enc_layer(e, l, p, x, xin);
    }
    if (x && cfg(m, "norm", 0) != 0) x = child_emit(e, m, prefix, "norm", x, xin);
    return x;
}

/* GPT (lib/module/gpt.c) on token ids x [N, T]: Gather of the token and
 * position embeddings, per block LayerNormalization, the packed qkv
 * projection split in three, causal attention, the output projection, the
 * GELU(tanh) MLP (as primitive ops: valid in opset 17), both residual
 * adds; the final LayerNormalization and the head, which reads the token
 * embedding's initializer when tied (one copy in the file). The children
 * are emitted as the Linear / LayerNorm modules they are, on a [1, T, C]
 * example (their emitters only read its rank). */
static const char *emit_gpt(ex *e, nn_module *m, const char *prefix, const char *x,
                            const nn_tensor *xin) {
    nn_gpt_config c;
    if (nn_gpt_get_config(m, &c)) return e->err = nn_last_status(), NULL;
    if (xin->ndim != 2) return unsupported(e, m, "token ids other than [N, T]"), NULL;
    const int64_t T = xin->shape[1], C = c.n_embd, H = c.n_head;
    nn_tensor *ex3 = nn__zeros(NN_DTYPE_F32, (int64_t[]){1, T, C}, 3);
    int64_t *iota = ex_alloc(e, (size_t)T * sizeof *iota);
    if (!ex3 || !iota) {
        if (!e->err) e->err = nn_last_status();
        nn__tensor_release(ex3);
        return NULL;
    }
    for (int64_t t = 0; t < T; t++) iota[t] = t;
    const char *wte = param(e, m, prefix, "transformer.wte.weight");
    const char *wpe = param(e, m, prefix, "transformer.wpe.weight");
    const char *pos = ex_const(e, "positions", NULL, iota, &T, 1);
    const char *h = ex_op(e, "Add", (const char *[]){ex_op(e, "Gather", (const char *[]){wte, x}, 2, NULL),
                                                     ex_op(e, "Gather", (const char *[]){wpe, pos}, 2, NULL)}, 2, NULL);
    nn_module *gelu = nn_gelu_new(true);
    if (!gelu && !e->err) e->err = nn_last_status();
    const int64_t thirds[3] = {C, C, C};
    char p[600];
    for (int64_t l = 0; l < c.n_layer && h && !e->err; l++) {
        snprintf(p, sizeof p, "transformer.h.%lld", (long long)l);
        nn_module *blk = nn_module_get_module(m, p);
        if (!blk) {
            e->err = nn_last_status();
            break;
        }
        if (snprintf(p, sizeof p, "%stransformer.h.%lld.", prefix, (long long)l) >= (int)sizeof p) {
            too_long(e, prefix);
            break;
        }
        const char *a = child_emit(e, blk, p, "ln_1", h, ex3);
        const char *qkv[3];
        if (!ex_split(e, child_emit(e, blk, p, "attn.c_attn", a, ex3), -1, thirds, 3, qkv)) break;
        a = ex_attention(e, qkv[0], qkv[1], qkv[2], C, H, T, T, true);
        h = ex_op(e, "Add", (const char *[]){h, child_emit(e, blk, p, "attn.c_proj", a, ex3)}, 2, NULL);
        a = child_emit(e, blk, p, "mlp.c_fc", child_emit(e, blk, p, "ln_2", h, ex3), ex3);
        a = child_emit(e, blk, p, "mlp.c_proj", emit(e, gelu, p, a, ex3, ex3), ex3);
        h = ex_op(e, "Add", (const char *[]){h, a}, 2, NULL);
    }
    nn_module_free(gelu);
    h = child_emit(e, m, prefix, "transformer.ln_f", h, ex3);
    nn_tensor *head = nn_module_get_parameter(m, "lm_head.weight");
    if (head && head == nn_module_get_parameter(m, "transformer.wte.weight"))
        h = linear_of(e, wte, NULL, h); /* tied: the one initializer */
    else
        h = child_emit(e, m, prefix, "lm_head", h, ex3);
    nn__tensor_release(ex3);
    return h;
}

/* A Sequential: children in order, each on the previous one's example output. */
static const char *emit_seq(ex *e, nn_module *m, const char *prefix, const char *x,
                            nn_tensor *xin) {
    /* The export's scope owns the example tensors. */
    int nch = nn__module_num_children(m);
    nn_tensor *cur = xin;
    for (int i = 0; i < nch && x && !e->err; i++) {
        const char *cname;
        nn_module *c = nn__module_child(m, i, &cname);
        nn_tensor *next = c ? nn_module_forward(c, cur) : NULL;
        if (!next) {
            e->err = nn_last_status();
            break;
        }
        char p[600];
        snprintf(p, sizeof p, "%s%s.", prefix, cname);
        x = emit(e, c, p, x, cur, next);
        cur = next;
    }
    return e->err ? NULL : x;
}

static const char *emit(ex *e, nn_module *m, const char *prefix, const char *x,
                        const nn_tensor *xin, const nn_tensor *yout) {
    const char *t = nn_module_type_name(m);
    Onnx__NodeProto *n = NULL;
    if (e->err || !x || !t) return NULL;
    if (!strcmp(t, "Sequential")) return emit_seq(e, m, prefix, x, (nn_tensor *)xin);
    if (!strcmp(t, "Identity") || !strcmp(t, "Dropout"))
        return ex_op(e, "Identity", (const char *[]){x}, 1, NULL);
    if (!strcmp(t, "ReLU")) return ex_op(e, "Relu", (const char *[]){x}, 1, NULL);
    if (!strcmp(t, "Sigmoid")) return ex_op(e, "Sigmoid", (const char *[]){x}, 1, NULL);
    if (!strcmp(t, "Tanh")) return ex_op(e, "Tanh", (const char *[]){x}, 1, NULL);
    if (!strcmp(t, "LeakyReLU")) {
        const char *y = ex_op(e, "LeakyRelu", (const char *[]){x}, 1, &n);
        attr_f(e, n, "alpha", cfg(m, "negative_slope", 0.01));
        return y;
    }
    if (!strcmp(t, "ELU")) {
        const char *y = ex_op(e, "Elu", (const char *[]){x}, 1, &n);
        attr_f(e, n, "alpha", cfg(m, "alpha", 1.0));
        return y;
    }
    if (!strcmp(t, "SiLU")) {
        const char *s = ex_op(e, "Sigmoid", (const char *[]){x}, 1, NULL);
        return ex_op(e, "Mul", (const char *[]){x, s}, 2, NULL);
    }
    if (!strcmp(t, "GELU")) {
        if (cfg(m, "approximate_tanh", 0) != 0) {
            /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
            const char *x3 = ex_op(e, "Mul", (const char *[]){x, ex_op(e, "Mul", (const char *[]){x, x}, 2, NULL)}, 2, NULL);
            const char *in = ex_op(e, "Add", (const char *[]){x, ex_op(e, "Mul", (const char *[]){x3, ex_scalar(e, 0.044715f)}, 2, NULL)}, 2, NULL);
            const char *th = ex_op(e, "Tanh", (const char *[]){ex_op(e, "Mul", (const char *[]){in, ex_scalar(e, (float)sqrt(2.0 / M_PI))}, 2, NULL)}, 1, NULL);
            const char *p1 = ex_op(e, "Add", (const char *[]){th, ex_scalar(e, 1.0f)}, 2, NULL);
            return ex_op(e, "Mul", (const char *[]){ex_op(e, "Mul", (const char *[]){x, p1}, 2, NULL), ex_scalar(e, 0.5f)}, 2, NULL);
        }
        /* torch's own pattern: x * 0.5 * (1 + erf(x / sqrt 2)); the importer fuses it */
        const char *d = ex_op(e, "Div", (const char *[]){x, ex_scalar(e, (float)sqrt(2.0))}, 2, NULL);
        const char *er = ex_op(e, "Erf", (const char *[]){d}, 1, NULL);
        const char *p1 = ex_op(e, "Add", (const char *[]){er, ex_scalar(e, 1.0f)}, 2, NULL);
        const char *mx = ex_op(e, "Mul", (const char *[]){x, p1}, 2, NULL);
        return ex_op(e, "Mul", (const char *[]){mx, ex_scalar(e, 0.5f)}, 2, NULL);
    }
    if (!strcmp(t, "Softmax") || !strcmp(t, "LogSoftmax")) {
        const char *y = ex_op(e, t[0] == 'S' ? "Softmax" : "LogSoftmax", (const char *[]){x}, 1, &n);
        attr_i(e, n, "axis", (int64_t)cfg(m, "dim", -1));
        return y;
    }
    if (!strcmp(t, "Residual")) {
        /* body(x) + shortcut(x), or + x: both branches see the block's input */
        char pb[600], ps[600];
        nn_module *body = nn_module_get_module(m, "body");
        nn_module *sc = cfg(m, "shortcut", 0) != 0 ? nn_module_get_module(m, "shortcut") : NULL;
        if (!body || (cfg(m, "shortcut", 0) != 0 && !sc)) return e->err = nn_last_status(), NULL;
        if (!child_prefix(e, pb, sizeof pb, prefix, "body") ||
            !child_prefix(e, ps, sizeof ps, prefix, "shortcut"))
            return NULL;
        const char *y = emit(e, body, pb, x, xin, yout);
        const char *s = sc ? emit(e, sc, ps, x, xin, yout) : x;
        return ex_op(e, "Add", (const char *[]){y, s}, 2, NULL);
    }
    if (!strcmp(t, "Hardtanh"))
        return ex_op(e, "Clip", (const char *[]){x, ex_scalar(e, (float)cfg(m, "min_val", -1)),
                                                  ex_scalar(e, (float)cfg(m, "max_val", 1))}, 3, NULL);
    if (!strcmp(t, "Linear")) {
        const char *w = param(e, m, prefix, "weight");
        const char *b = cfg(m, "bias", 1) != 0 ? param(e, m, prefix, "bias") : NULL;
        if (xin->ndim == 2) {
            const char *y = ex_op(e, "Gemm", (const char *[]){x, w, b}, b ? 3 : 2, &n);
            attr_i(e, n, "transB", 1);
            return y;
        }
        const char *wt = ex_op(e, "Transpose", (const char *[]){w}, 1, &n);
        attr_is(e, n, "perm", (int64_t[]){1, 0}, 2);
        const char *y = ex_op(e, "MatMul", (const char *[]){x, wt}, 2, NULL);
        return b ? ex_op(e, "Add", (const char *[]){y, b}, 2, NULL) : y;
    }
    if (!strcmp(t, "Conv2d") || !strcmp(t, "ConvTranspose2d") || !strcmp(t, "Conv1d")) {
        bool one = t[4] == '1', tr = t[4] == 'T';
        const char *w = param(e, m, prefix, "weight");
        const char *b = cfg(m, "bias", 1) != 0 ? param(e, m, prefix, "bias") : NULL;
        const char *y = ex_op(e, tr ? "ConvTranspose" : "Conv", (const char *[]){x, w, b}, b ? 3 : 2, &n);
        if (one) {
            attr_is(e, n, "kernel_shape", (int64_t[]){(int64_t)cfg(m, "kernel_size", 1)}, 1);
            attr_is(e, n, "strides", (int64_t[]){(int64_t)cfg(m, "stride", 1)}, 1);
            int64_t p = (int64_t)cfg(m, "padding", 0);
            attr_is(e, n, "pads", (int64_t[]){p, p}, 2);
            attr_is(e, n, "dilations", (int64_t[]){(int64_t)cfg(m, "dilation", 1)}, 1);
        } else {
            int64_t ph = (int64_t)cfg(m, "padding_h", 0), pw = (int64_t)cfg(m, "padding_w", 0);
            attr_is(e, n, "kernel_shape", (int64_t[]){(int64_t)cfg(m, "kernel_h", 1), (int64_t)cfg(m, "kernel_w", 1)}, 2);
            attr_is(e, n, "strides", (int64_t[]){(int64_t)cfg(m, "stride_h", 1), (int64_t)cfg(m, "stride_w", 1)}, 2);
            attr_is(e, n, "pads", (int64_t[]){ph, pw, ph, pw}, 4);
            attr_is(e, n, "dilations", (int64_t[]){(int64_t)cfg(m, "dilation_h", 1), (int64_t)cfg(m, "dilation_w", 1)}, 2);
            if (tr)
                attr_is(e, n, "output_padding", (int64_t[]){(int64_t)cfg(m, "output_padding_h", 0), (int64_t)cfg(m, "output_padding_w", 0)}, 2);
        }
        attr_i(e, n, "group", (int64_t)cfg(m, "groups", 1));
        return y;
    }
    if (!strcmp(t, "MaxPool2d") || !strcmp(t, "AvgPool2d")) {
        bool mx = t[0] == 'M';
        const char *y = ex_op(e, mx ? "MaxPool" : "AveragePool", (const char *[]){x}, 1, &n);
        int64_t ph = (int64_t)cfg(m, "padding_h", 0), pw = (int64_t)cfg(m, "padding_w", 0);
        attr_is(e, n, "kernel_shape", (int64_t[]){(int64_t)cfg(m, "kernel_h", 1), (int64_t)cfg(m, "kernel_w", 1)}, 2);
        attr_is(e, n, "strides", (int64_t[]){(int64_t)cfg(m, "stride_h", 1), (int64_t)cfg(m, "stride_w", 1)}, 2);
        attr_is(e, n, "pads", (int64_t[]){ph, pw, ph, pw}, 4);
        attr_i(e, n, "ceil_mode", (int64_t)cfg(m, "ceil_mode", 0));
        if (mx) attr_is(e, n, "dilations", (int64_t[]){(int64_t)cfg(m, "dilation_h", 1), (int64_t)cfg(m, "dilation_w", 1)}, 2);
        else attr_i(e, n, "count_include_pad", (int64_t)cfg(m, "count_include_pad", 1));
        return y;
    }
    if (!strcmp(t, "AdaptiveAvgPool2d")) {
        int64_t oh = yout->shape[2], ow = yout->shape[3], h = xin->shape[2], w = xin->shape[3];
        if (oh == 1 && ow == 1) return ex_op(e, "GlobalAveragePool", (const char *[]){x}, 1, NULL);
        if (h % oh || w % ow) return unsupported(e, m, "input size not a multiple of the output"), NULL;
        const char *y = ex_op(e, "AveragePool", (const char *[]){x}, 1, &n);
        attr_is(e, n, "kernel_shape", (int64_t[]){h / oh, w / ow}, 2);
        attr_is(e, n, "strides", (int64_t[]){h / oh, w / ow}, 2);
        return y;
    }
    if (!strcmp(t, "Flatten") || !strcmp(t, "Select")) {
        if (!strcmp(t, "Select")) {
            int dim = (int)cfg(m, "dim", 0);
            int64_t idx = (int64_t)cfg(m, "index", 0);
            if (dim < 0) dim += xin->ndim;
            if (idx < 0) idx += xin->shape[dim];
            if (dim == 0) return unsupported(e, m, "selecting along the batch dim"), NULL;
            const char *y = ex_op(e, "Gather", (const char *[]){x, ex_const(e, "index", NULL, &idx, NULL, 0)}, 2, &n);
            attr_i(e, n, "axis", dim);
            return y;
        }
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < yout->ndim; d++) shape[d] = d == 0 ? 0 : yout->shape[d];
        return ex_op(e, "Reshape", (const char *[]){x, ex_ints(e, shape, yout->ndim)}, 2, NULL);
    }
    if (!strcmp(t, "BatchNorm1d") || !strcmp(t, "BatchNorm2d")) {
        int64_t C = (int64_t)cfg(m, "num_features", 1);
        const char *w, *b;
        if (cfg(m, "affine", 1) != 0) {
            w = param(e, m, prefix, "weight");
            b = param(e, m, prefix, "bias");
        } else {
            nn_tensor *ones = nn__tensor_new(NN_DTYPE_F32, &C, 1);
            for (int64_t i = 0; ones && i < C; i++) nn__f32(ones)[i] = 1;
            w = ones ? ex_const(e, "ones", nn__f32(ones), NULL, &C, 1) : NULL;
            nn__tensor_release(ones);
            nn_tensor *z = nn__zeros(NN_DTYPE_F32, &C, 1);
            b = z ? ex_const(e, "zeros", nn__f32(z), NULL, &C, 1) : NULL;
            nn__tensor_release(z);
        }
        const char *mean = param(e, m, prefix, "running_mean"), *var = param(e, m, prefix, "running_var");
        const char *y = ex_op(e, "BatchNormalization", (const char *[]){x, w, b, mean, var}, 5, &n);
        attr_f(e, n, "epsilon", cfg(m, "eps", 1e-5));
        attr_f(e, n, "momentum", 1.0 - cfg(m, "momentum", 0.1));
        return y;
    }
    if (!strcmp(t, "LayerNorm")) {
        int nd = (int)cfg(m, "ndim", 1);
        const char *w = NULL, *b = NULL;
        if (cfg(m, "elementwise_affine", 1) != 0) {
            w = param(e, m, prefix, "weight");
            b = nn_module_get_parameter(m, "bias") ? param(e, m, prefix, "bias") : NULL;
            nn_clear_error();
        } else {
            int64_t shape[NN_MAX_DIMS];
            for (int i = 0; i < nd; i++) shape[i] = xin->shape[xin->ndim - nd + i];
            nn_tensor *ones = nn__tensor_new(NN_DTYPE_F32, shape, nd);
            for (int64_t i = 0; ones && i < ones->numel; i++) nn__f32(ones)[i] = 1;
            w = ones ? ex_const(e, "ones", nn__f32(ones), NULL, shape, nd) : NULL;
            nn__tensor_release(ones);
        }
        const char *y = ex_op(e, "LayerNormalization", (const char *[]){x, w, b}, b ? 3 : 2, &n);
        attr_i(e, n, "axis", -nd);
        attr_f(e, n, "epsilon", cfg(m, "eps", 1e-5));
        return y;
    }
    if (!strcmp(t, "Embedding")) {
        const char *w = param(e, m, prefix, "weight");
        return ex_op(e, "Gather", (const char *[]){w, x}, 2, NULL);
    }
    if (!strcmp(t, "MultiheadAttention")) return emit_mha(e, m, prefix, x, NULL, NULL, xin, NULL);
    if (!strcmp(t, "TransformerEncoderLayer")) return emit_enc_layer(e, m, prefix, x, xin);
    if (!strcmp(t, "TransformerEncoder")) return emit_stack(e, m, prefix, x, NULL, xin, NULL);
    if (!strcmp(t, "GPT")) return emit_gpt(e, m, prefix, x, xin);
    if (!strcmp(t, "RNN") || !strcmp(t, "LSTM") || !strcmp(t, "GRU")) {
        if (cfg(m, "num_layers", 1) < 1) return unsupported(e, m, NULL), NULL;
        return emit_rnn(e, m, prefix, x);
    }
    return unsupported(e, m, NULL), NULL;
}

/* ---------------------------------------------------------- the model */

static Onnx__ValueInfoProto *value_info(ex *e, const char *name, const nn_tensor *t,
                                        const char *dim0) {
    Onnx__ValueInfoProto *vi = ex_alloc(e, sizeof *vi);
    Onnx__TypeProto *tp = ex_alloc(e, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ex_alloc(e, sizeof *tt);
    Onnx__TensorShapeProto *sp = ex_alloc(e, sizeof *sp);
    Onnx__TensorShapeProto__Dimension **dims = ex_alloc(e, (size_t)(t->ndim + 1) * sizeof *dims);
    if (!vi || !tp || !tt || !sp || !dims) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int d = 0; d < t->ndim; d++) {
        Onnx__TensorShapeProto__Dimension *dm = ex_alloc(e, sizeof *dm);
        if (!dm) return NULL;
        onnx__tensor_shape_proto__dimension__init(dm);
        if (d == 0) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = (char *)dim0;
        } else {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = t->shape[d];
        }
        dims[d] = dm;
    }
    sp->n_dim = (size_t)t->ndim;
    sp->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = t->dtype == NN_DTYPE_I64 ? 7 : 1;
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = (char *)name;
    vi->type = tp;
    return vi;
}

/* The module on its graph inputs xs (examples ins): one input through
 * emit; a TransformerDecoder(Layer) on (tgt, memory); a MultiheadAttention
 * on (query, key, value). Masks have no export. */
static const char *emit_top(ex *e, nn_module *m, const char *const *xs, nn_tensor *const *ins,
                            int n, const nn_tensor *y) {
    const char *t = nn_module_type_name(m);
    if (n == 1) return emit(e, m, "", xs[0], ins[0], y);
    if (n == 2 && !strcmp(t, "TransformerDecoderLayer"))
        return emit_dec_layer(e, m, "", xs[0], xs[1], ins[0], ins[1]);
    if (n == 2 && !strcmp(t, "TransformerDecoder"))
        return emit_stack(e, m, "", xs[0], xs[1], ins[0], ins[1]);
    if (n == 3 && !strcmp(t, "MultiheadAttention"))
        return emit_mha(e, m, "", xs[0], xs[1], xs[2], ins[0], ins[1]);
    char why[96];
    snprintf(why, sizeof why, "%d inputs (masks are not exported)", n);
    return unsupported(e, m, why), NULL;
}

/* Export m traced on n inputs (dtypes[i], shape at shapes + the earlier
 * ndims): graph inputs "x" (one) or "x0", "x1", ..., output "y"; dim 0 of
 * each is symbolic ("N" where it equals input 0's, else "N<i>"). */
static nn_status export(nn_module *m, int n, const nn_dtype *dtypes, const int64_t *shapes,
                        const int *ndims, uint8_t **out, size_t *out_len, const char *fn) {
    if (!m) return nn__err_null(fn, "m");
    if (!nn_module_type_name(m)) return nn_last_status(); /* a freed or foreign handle */
    if (n < 1 || n > NN_MODULE_MAX_INPUTS)
        return nn__err(NN_ERR_INVALID, "%s: %d inputs (1..%d)", fn, n, NN_MODULE_MAX_INPUTS);
    if (!nn__check_ptr(dtypes, fn, "input_dtypes") || !nn__check_ptr(shapes, fn, "input_shape") ||
        !nn__check_ptr(ndims, fn, "ndims"))
        return nn_last_status();
    for (int i = 0; i < n; i++) {
        if (ndims[i] < 1 || ndims[i] > NN_MAX_DIMS)
            return nn__err(NN_ERR_INVALID, "%s: input %d: ndim %d (1..%d, dim 0 the batch)", fn,
                           i, ndims[i], NN_MAX_DIMS);
        if (dtypes[i] != NN_DTYPE_F32 && dtypes[i] != NN_DTYPE_I64)
            return nn__err(NN_ERR_DTYPE, "%s: input %d: dtype %s (f32 or i64)", fn, i,
                           nn_dtype_name(dtypes[i]));
    }
    ex e = {.fn = fn};
    bool was_training = nn_module_is_training(m);
    bool prev = nn_set_grad_enabled(false);
    nn_scope *scope = nn_scope_begin();
    nn_status st = scope ? nn_module_train(m, false) : NN_ERR_NOMEM;
    nn_tensor *xs[NN_MODULE_MAX_INPUTS] = {0};
    const char *names[NN_MODULE_MAX_INPUTS] = {0};
    for (int i = 0, off = 0; i < n && !st; off += ndims[i], i++) {
        char nm[16];
        snprintf(nm, sizeof nm, n == 1 ? "x" : "x%d", i);
        names[i] = ex_str(&e, nm);
        xs[i] = nn_tensor_zeros(dtypes[i], shapes + off, ndims[i]);
        if (!xs[i] || !names[i]) st = e.err ? e.err : nn_last_status();
    }
    nn_tensor *y = st ? NULL : n == 1 ? nn_module_forward(m, xs[0]) : nn_module_forward_n(m, xs, n);
    if (!st && !y) st = nn_last_status();
    const char *out_name = NULL;
    if (!st) {
        out_name = emit_top(&e, m, names, xs, n, y);
        st = e.err ? e.err : out_name ? NN_OK : nn_last_status();
        if (st == NN_ERR_NOMEM && nn_last_status() != NN_ERR_NOMEM)
            nn__err(NN_ERR_NOMEM, "%s: out of memory", fn);
    }
    if (!st) { /* the graph output named "y" */
        const char *final = ex_node(&e, "Identity", (const char *[]){out_name}, 1, "y") ? "y" : NULL;
        Onnx__ValueInfoProto *vout = value_info(&e, "y", y, "N");
        Onnx__GraphProto *g = ex_alloc(&e, sizeof *g);
        Onnx__ModelProto *mp = ex_alloc(&e, sizeof *mp);
        Onnx__OperatorSetIdProto *os = ex_alloc(&e, sizeof *os);
        Onnx__ValueInfoProto **ins = ex_alloc(&e, (size_t)n * sizeof *ins);
        Onnx__ValueInfoProto **outs = ex_alloc(&e, sizeof *outs);
        Onnx__OperatorSetIdProto **oss = ex_alloc(&e, sizeof *oss);
        bool ok = final && vout && g && mp && os && ins && outs && oss;
        for (int i = 0; i < n && ok; i++) {
            char dim0[16];
            snprintf(dim0, sizeof dim0, i && xs[i]->shape[0] != xs[0]->shape[0] ? "N%d" : "N", i);
            const char *d0 = ex_str(&e, dim0);
            ok = d0 && (ins[i] = value_info(&e, names[i], xs[i], d0));
        }
        if (!ok) {
            st = nn__err(e.err ? e.err : NN_ERR_NOMEM, "%s: out of memory", fn);
        } else {
            onnx__graph_proto__init(g);
            onnx__model_proto__init(mp);
            onnx__operator_set_id_proto__init(os);
            g->name = "libnn";
            g->n_node = e.nnodes;
            g->node = e.nodes;
            g->n_initializer = e.ninits;
            g->initializer = e.inits;
            outs[0] = vout;
            g->n_input = (size_t)n;
            g->n_output = 1;
            g->input = ins;
            g->output = outs;
            os->domain = "";
            os->has_version = 1;
            os->version = OPSET;
            oss[0] = os;
            mp->has_ir_version = 1;
            mp->ir_version = 8;
            mp->n_opset_import = 1;
            mp->opset_import = oss;
            mp->producer_name = "libnn";
            mp->producer_version = NN_VERSION_STRING;
            mp->graph = g;
            size_t len = onnx__model_proto__get_packed_size(mp);
            *out = nn__malloc(len ? len : 1);
            if (!*out) st = NN_ERR_NOMEM;
            else *out_len = onnx__model_proto__pack(mp, *out);
        }
    }
    nn_scope_end(scope);
    for (size_t i = 0; i < e.nblocks; i++) nn__free(e.blocks[i]);
    nn__free(e.blocks);
    nn__free(e.nodes);
    nn__free(e.inits);
    nn_module_train(m, was_training);
    nn_set_grad_enabled(prev);
    return st;
}

static nn_status save_path(nn_module *m, const char *path, int n, const nn_dtype *dtypes,
                           const int64_t *shapes, const int *ndims, const char *fn) {
    if (!nn__check_ptr(path, fn, "path")) return nn_last_status();
    uint8_t *data = NULL;
    size_t len = 0;
    nn_status st = export(m, n, dtypes, shapes, ndims, &data, &len, fn);
    if (!st) st = nn__io_write_path(path, data, len, fn);
    nn__free(data);
    return st ? st : nn__ok();
}

static nn_status save_buffer(nn_module *m, int n, const nn_dtype *dtypes, const int64_t *shapes,
                             const int *ndims, void **data, size_t *size, const char *fn) {
    if (!nn__check_ptr(data, fn, "data") || !nn__check_ptr(size, fn, "size")) return nn_last_status();
    *data = NULL;
    *size = 0;
    uint8_t *p = NULL;
    size_t len = 0;
    nn_status st = export(m, n, dtypes, shapes, ndims, &p, &len, fn);
    if (st) return st;
    *data = p;
    *size = len;
    return nn__ok();
}

nn_status nn_onnx_save(nn_module *m, const char *path, nn_dtype input_dtype,
                       const int64_t *input_shape, int ndim, const nn_io_options *opts) {
    (void)opts;
    return save_path(m, path, 1, &input_dtype, input_shape, &ndim, "nn_onnx_save");
}

nn_status nn_onnx_save_buffer(nn_module *m, nn_dtype input_dtype, const int64_t *input_shape,
                              int ndim, const nn_io_options *opts, void **data, size_t *size) {
    (void)opts;
    return save_buffer(m, 1, &input_dtype, input_shape, &ndim, data, size, "nn_onnx_save_buffer");
}

nn_status nn_onnx_save_n(nn_module *m, const char *path, int n, const nn_dtype *input_dtypes,
                         const int64_t *input_shapes, const int *ndims,
                         const nn_io_options *opts) {
    (void)opts;
    return save_path(m, path, n, input_dtypes, input_shapes, ndims, "nn_onnx_save_n");
}

nn_status nn_onnx_save_buffer_n(nn_module *m, int n, const nn_dtype *input_dtypes,
                                const int64_t *input_shapes, const int *ndims,
                                const nn_io_options *opts, void **data, size_t *size) {
    (void)opts;
    return save_buffer(m, n, input_dtypes, input_shapes, ndims, data, size,
                       "nn_onnx_save_buffer_n");
}

#else /* !NN_HAVE_ONNX */

nn_status nn_onnx_save(nn_module *m, const char *path, nn_dtype input_dtype,
                       const int64_t *input_shape, int ndim, const nn_io_options *opts) {
    (void)m, (void)path, (void)input_dtype, (void)input_shape, (void)ndim, (void)opts;
    return nn__err(NN_ERR_UNSUPPORTED, "nn_onnx_save: libnn was built without ONNX support (-Donnx)");
}

nn_status nn_onnx_save_buffer(nn_module *m, nn_dtype input_dtype, const int64_t *input_shape,
                              int ndim, const nn_io_options *opts, void **data, size_t *size) {
    (void)m, (void)input_dtype, (void)input_shape, (void)ndim, (void)opts, (void)data, (void)size;
    return nn__err(NN_ERR_UNSUPPORTED,
                   "nn_onnx_save_buffer: libnn was built without ONNX support (-Donnx)");
}

nn_status nn_onnx_save_n(nn_module *m, const char *path, int n, const nn_dtype *input_dtypes,
                         const int64_t *input_shapes, const int *ndims,
                         const nn_io_options *opts) {
    (void)m, (void)path, (void)n, (void)input_dtypes, (void)input_shapes, (void)ndims, (void)opts;
    return nn__err(NN_ERR_UNSUPPORTED,
                   "nn_onnx_save_n: libnn was built without ONNX support (-Donnx)");
}

nn_status nn_onnx_save_buffer_n(nn_module *m, int n, const nn_dtype *input_dtypes,
                                const int64_t *input_shapes, const int *ndims,
                                const nn_io_options *opts, void **data, size_t *size) {
    (void)m, (void)n, (void)input_dtypes, (void)input_shapes, (void)ndims, (void)opts;
    (void)data, (void)size;
    return nn__err(NN_ERR_UNSUPPORTED,
                   "nn_onnx_save_buffer_n: libnn was built without ONNX support (-Donnx)");
}

#endif
