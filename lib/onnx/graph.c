/* ONNX import: from a parsed ModelProto to a checked graph module.
 *
 * Every name the graph defines (inputs, initializers, node outputs) gets a
 * value id through a hash index (linear in the graph). The checks that keep
 * a crafted file from reaching the executor: each value defined once, every
 * node input defined, the nodes acyclic (Kahn's algorithm; the file's order
 * is not trusted), initializer sizes equal to their data, attribute types as
 * the op expects, ops within the opsets 11..17 of the default domain. Float
 * initializers become the module's parameters (BatchNormalization's mean
 * and variance its buffers), named as in the file, so an imported model can
 * be fine-tuned and its state dict read; nodes whose inputs are all
 * constants (Constant, integer initializers) are folded at import. */
#include "onnx/nn_onnx_config.h"

#if NN_HAVE_ONNX

#include "onnx/onnx_internal.h"
#include "onnx/onnx.pb-c.h"
#include "core/index.h"
#include "module/module_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct builder {
    const char *fn;
    nn__onnx_graph *g;
    nn__index index;
    int32_t cap;
    int32_t *producer;  /* per value: node index (file order) or -1 */
    bool *is_param;     /* per value: a parameter (never folded) */
    bool *is_bn_stat;   /* per value: BatchNormalization mean/var (a buffer) */
} builder;

typedef struct name_eq_ctx {
    const builder *b;
    const char *name;
} name_eq_ctx;

static bool name_eq(const void *ctx, int64_t e) {
    const name_eq_ctx *c = ctx;
    return strcmp(c->b->g->names[e], c->name) == 0;
}

static int32_t value_find(const builder *b, const char *name) {
    if (b->g->nvalues <= NN__INDEX_MIN || !b->index.cap) {
        for (int32_t i = 0; i < b->g->nvalues; i++)
            if (!strcmp(b->g->names[i], name)) return i;
        return -1;
    }
    name_eq_ctx c = {b, name};
    return (int32_t)nn__index_find(&b->index, nn__hash_str(name), name_eq, &c);
}

/* Define a new value; a name defined twice is NN_ERR_FORMAT. */
static nn_status value_add(builder *b, const char *name, const char *what, int32_t *id) {
    nn__onnx_graph *g = b->g;
    if (!name || !name[0])
        return nn__err(NN_ERR_FORMAT, "%s: %s has an empty name", b->fn, what);
    if (value_find(b, name) >= 0)
        return nn__err(NN_ERR_FORMAT, "%s: value '%s' is defined twice (%s)", b->fn, name, what);
    if (g->nvalues == b->cap) {
        if (b->cap > INT32_MAX / 2) return nn__err(NN_ERR_LIMIT, "%s: too many values", b->fn);
        int32_t ncap = b->cap ? b->cap * 2 : 64;
        char **nn = nn__realloc(g->names, (size_t)ncap * sizeof *nn);
        if (!nn) return NN_ERR_NOMEM;
        g->names = nn;
        b->cap = ncap;
    }
    if (nn__index_reserve(&b->index, g->nvalues + 1)) return nn_last_status();
    char *copy = nn__strdup(name);
    if (!copy) return NN_ERR_NOMEM;
    g->names[g->nvalues] = copy;
    nn__index_add(&b->index, nn__hash_str(copy), g->nvalues);
    *id = g->nvalues++;
    return NN_OK;
}

/* ------------------------------------------------------------ op table */

typedef struct op_info {
    const char *type;
    nn__onnx_op op;
    int min_in, max_in, min_out, max_out;
} op_info;

static const op_info OPS[] = {
    {"Identity", NN__OP_IDENTITY, 1, 1, 1, 1},
    {"Gemm", NN__OP_GEMM, 2, 3, 1, 1},
    {"MatMul", NN__OP_MATMUL, 2, 2, 1, 1},
    {"Conv", NN__OP_CONV, 2, 3, 1, 1},
    {"ConvTranspose", NN__OP_CONV_TRANSPOSE, 2, 3, 1, 1},
    {"MaxPool", NN__OP_MAX_POOL, 1, 1, 1, 1},
    {"AveragePool", NN__OP_AVG_POOL, 1, 1, 1, 1},
    {"GlobalAveragePool", NN__OP_GLOBAL_AVG_POOL, 1, 1, 1, 1},
    {"BatchNormalization", NN__OP_BATCH_NORM, 5, 5, 1, 1},
    {"LayerNormalization", NN__OP_LAYER_NORM, 1, 3, 1, 1},
    {"Relu", NN__OP_RELU, 1, 1, 1, 1},
    {"LeakyRelu", NN__OP_LEAKY_RELU, 1, 1, 1, 1},
    {"Sigmoid", NN__OP_SIGMOID, 1, 1, 1, 1},
    {"Tanh", NN__OP_TANH, 1, 1, 1, 1},
    {"Erf", NN__OP_ERF, 1, 1, 1, 1},
    {"Softmax", NN__OP_SOFTMAX, 1, 1, 1, 1},
    {"LogSoftmax", NN__OP_LOG_SOFTMAX, 1, 1, 1, 1},
    {"Add", NN__OP_ADD, 2, 2, 1, 1},
    {"Sub", NN__OP_SUB, 2, 2, 1, 1},
    {"Mul", NN__OP_MUL, 2, 2, 1, 1},
    {"Div", NN__OP_DIV, 2, 2, 1, 1},
    {"Pow", NN__OP_POW, 2, 2, 1, 1},
    {"Sqrt", NN__OP_SQRT, 1, 1, 1, 1},
    {"Exp", NN__OP_EXP, 1, 1, 1, 1},
    {"Log", NN__OP_LOG, 1, 1, 1, 1},
    {"Neg", NN__OP_NEG, 1, 1, 1, 1},
    {"Reshape", NN__OP_RESHAPE, 2, 2, 1, 1},
    {"Flatten", NN__OP_FLATTEN, 1, 1, 1, 1},
    {"Transpose", NN__OP_TRANSPOSE, 1, 1, 1, 1},
    {"Concat", NN__OP_CONCAT, 1, NN__ONNX_MAX_IO, 1, 1},
    {"Split", NN__OP_SPLIT, 1, 2, 1, NN__ONNX_MAX_IO},
    {"Slice", NN__OP_SLICE, 3, 5, 1, 1},
    {"Gather", NN__OP_GATHER, 2, 2, 1, 1},
    {"Squeeze", NN__OP_SQUEEZE, 1, 2, 1, 1},
    {"Unsqueeze", NN__OP_UNSQUEEZE, 1, 2, 1, 1},
    {"Shape", NN__OP_SHAPE, 1, 1, 1, 1},
    {"Constant", NN__OP_CONSTANT, 0, 0, 1, 1},
    {"Cast", NN__OP_CAST, 1, 1, 1, 1},
    {"Where", NN__OP_WHERE, 3, 3, 1, 1},
    {"Equal", NN__OP_EQUAL, 2, 2, 1, 1},
    {"Less", NN__OP_LESS, 2, 2, 1, 1},
    {"Greater", NN__OP_GREATER, 2, 2, 1, 1},
    {"ReduceMean", NN__OP_REDUCE_MEAN, 1, 2, 1, 1},
    {"ReduceSum", NN__OP_REDUCE_SUM, 1, 2, 1, 1},
    {"Pad", NN__OP_PAD, 1, 3, 1, 1},
    {"Dropout", NN__OP_DROPOUT, 1, 3, 1, 2},
    {"Expand", NN__OP_EXPAND, 2, 2, 1, 1},
    {"LSTM", NN__OP_LSTM, 3, 8, 0, 3},
    {"GRU", NN__OP_GRU, 3, 6, 0, 2},
    {"RNN", NN__OP_RNN, 3, 6, 0, 2},
    {"Elu", NN__OP_ELU, 1, 1, 1, 1},
    {"Clip", NN__OP_CLIP, 1, 3, 1, 1},
};

const char *nn__onnx_op_name(nn__onnx_op op) {
    if (op == NN__OP_GELU) return "Gelu";
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (OPS[i].op == op) return OPS[i].type;
    return "?";
}

static const op_info *op_lookup(const char *type) {
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i].type, type)) return &OPS[i];
    return NULL;
}

/* ------------------------------------------------------------ tensors */

/* ONNX TensorProto.DataType values we read. */
enum { DT_FLOAT = 1, DT_UINT8 = 2, DT_INT8 = 3, DT_INT32 = 6, DT_INT64 = 7, DT_BOOL = 9,
       DT_DOUBLE = 11 };

static const char *dt_name(int32_t dt) {
    switch (dt) {
    case DT_FLOAT: return "FLOAT";
    case DT_UINT8: return "UINT8";
    case DT_INT8: return "INT8";
    case DT_INT32: return "INT32";
    case DT_INT64: return "INT64";
    case DT_BOOL: return "BOOL";
    case DT_DOUBLE: return "DOUBLE";
    default: return "unsupported";
    }
}

/* The libnn dtype an ONNX element type runs as (-1: none). */
int nn__onnx_dtype(int32_t dt) {
    switch (dt) {
    case DT_FLOAT:
    case DT_DOUBLE: return NN_DTYPE_F32;
    case DT_INT32:
    case DT_INT64:
    case DT_INT8: return NN_DTYPE_I64;
    case DT_UINT8:
    case DT_BOOL: return NN_DTYPE_U8;
    default: return -1;
    }
}

/* A TensorProto as a new untracked tensor, every size checked against the
 * data actually present. what names it for messages. */
nn_tensor *nn__onnx_tensor(const Onnx__TensorProto *tp, const char *what, const char *fn) {
    if (!tp) return NN__FAIL(NN_ERR_FORMAT, "%s: %s has no tensor", fn, what);
    int32_t dt = tp->has_data_type ? tp->data_type : 0;
    int ndt = nn__onnx_dtype(dt);
    if (ndt < 0)
        return NN__FAIL(NN_ERR_UNSUPPORTED, "%s: %s has element type %d (%s)", fn, what, (int)dt,
                        dt_name(dt));
    if (tp->segment || (tp->has_data_location &&
                        tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        tp->n_external_data)
        return NN__FAIL(NN_ERR_UNSUPPORTED, "%s: %s uses external data or segments", fn, what);
    if (tp->n_dims > NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_LIMIT, "%s: %s has %zu dims (at most %d)", fn, what, tp->n_dims,
                        NN_MAX_DIMS);
    int64_t shape[NN_MAX_DIMS];
    size_t numel = 1;
    bool zero = false;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return NN__FAIL(NN_ERR_FORMAT, "%s: %s has a negative dim %lld", fn, what,
                            (long long)tp->dims[i]);
        shape[i] = tp->dims[i];
        if (!shape[i]) zero = true;
        else if (!nn__size_mul(numel, (size_t)shape[i], &numel) || numel > (size_t)INT64_MAX / 8)
            return NN__FAIL(NN_ERR_OVERFLOW, "%s: %s: element count overflows", fn, what);
    }
    if (zero) numel = 0;
    size_t esize = dt == DT_FLOAT || dt == DT_INT32 ? 4
                   : dt == DT_INT64 || dt == DT_DOUBLE ? 8
                                                       : 1;
    size_t have;
    if (tp->has_raw_data) {
        size_t need;
        if (!nn__size_mul(numel, esize, &need) || tp->raw_data.len != need)
            return NN__FAIL(NN_ERR_FORMAT,
                            "%s: %s holds %zu bytes of raw data, its shape needs %zu x %zu", fn,
                            what, tp->raw_data.len, numel, esize);
        have = numel;
    } else {
        switch (dt) {
        case DT_FLOAT: have = tp->n_float_data; break;
        case DT_DOUBLE: have = tp->n_double_data; break;
        case DT_INT64: have = tp->n_int64_data; break;
        default: have = tp->n_int32_data; break;
        }
        if (have != numel)
            return NN__FAIL(NN_ERR_FORMAT, "%s: %s holds %zu elements, its shape needs %zu", fn,
                            what, have, numel);
    }
    nn_tensor *t = nn__tensor_new((nn_dtype)ndt, shape, (int)tp->n_dims);
    if (!t) return NULL;
    const uint8_t *raw = tp->raw_data.data;
    for (size_t i = 0; i < numel; i++) {
        double v;
        if (tp->has_raw_data) {
            const uint8_t *p = raw + i * esize;
            switch (dt) {
            case DT_FLOAT: { float f; memcpy(&f, p, 4); v = f; break; }
            case DT_DOUBLE: memcpy(&v, p, 8); break;
            case DT_INT32: { int32_t x; memcpy(&x, p, 4); v = (double)x; break; }
            case DT_INT64: {
                int64_t x;
                memcpy(&x, p, 8);
                nn__i64(t)[i] = x; /* exact, not through double */
                continue;
            }
            case DT_INT8: v = (int8_t)p[0]; break;
            default: v = p[0] ? (dt == DT_BOOL ? 1 : p[0]) : 0; break;
            }
        } else {
            switch (dt) {
            case DT_FLOAT: v = tp->float_data[i]; break;
            case DT_DOUBLE: v = tp->double_data[i]; break;
            case DT_INT64: nn__i64(t)[i] = tp->int64_data[i]; continue;
            case DT_BOOL: v = tp->int32_data[i] != 0; break;
            case DT_UINT8: v = (uint8_t)tp->int32_data[i]; break;
            default: v = tp->int32_data[i]; break;
            }
        }
        if (ndt == NN_DTYPE_F32) nn__f32(t)[i] = (float)v;
        else nn__store_elem((nn_dtype)ndt, t->storage->data, t->offset + (int64_t)i, v);
    }
    return t;
}

/* ---------------------------------------------------------- attributes */

static const Onnx__AttributeProto *attr_find(const Onnx__NodeProto *np, const char *name) {
    for (size_t i = 0; i < np->n_attribute; i++)
        if (np->attribute[i] && np->attribute[i]->name && !strcmp(np->attribute[i]->name, name))
            return np->attribute[i];
    return NULL;
}

typedef struct attr_ctx {
    const Onnx__NodeProto *np;
    const char *node; /* name for messages */
    const char *fn;
} attr_ctx;

static nn_status attr_type_err(const attr_ctx *c, const char *name, const char *want) {
    return nn__err(NN_ERR_FORMAT, "%s: node '%s' (%s): attribute '%s' is not %s", c->fn, c->node,
                   c->np->op_type, name, want);
}

static nn_status attr_int(const attr_ctx *c, const char *name, int64_t dflt, int64_t *out) {
    const Onnx__AttributeProto *a = attr_find(c->np, name);
    *out = dflt;
    if (!a) return NN_OK;
    if (!a->has_i && !(a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
        return attr_type_err(c, name, "an int");
    *out = a->i;
    return NN_OK;
}

static nn_status attr_float(const attr_ctx *c, const char *name, double dflt, double *out) {
    const Onnx__AttributeProto *a = attr_find(c->np, name);
    *out = dflt;
    if (!a) return NN_OK;
    if (!a->has_f && !(a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT))
        return attr_type_err(c, name, "a float");
    *out = a->f;
    return NN_OK;
}

static nn_status attr_ints(const attr_ctx *c, const char *name, nn__onnx_node *n, int slot) {
    const Onnx__AttributeProto *a = attr_find(c->np, name);
    if (!a) return NN_OK;
    if (a->n_ints == 0 && !(a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS))
        return attr_type_err(c, name, "a list of ints");
    if (a->n_ints > NN__ONNX_MAX_ATTR_INTS)
        return nn__err(NN_ERR_LIMIT, "%s: node '%s' (%s): attribute '%s' has %zu entries (at most %d)",
                       c->fn, c->node, c->np->op_type, name, a->n_ints, NN__ONNX_MAX_ATTR_INTS);
    n->l[slot] = nn__malloc((a->n_ints ? a->n_ints : 1) * sizeof(int64_t));
    if (!n->l[slot]) return NN_ERR_NOMEM;
    memcpy(n->l[slot], a->ints, a->n_ints * sizeof(int64_t));
    n->nl[slot] = (int)a->n_ints;
    n->has_l[slot] = true;
    return NN_OK;
}

static nn_status attr_string(const attr_ctx *c, const char *name, const char *dflt,
                             char *out, size_t cap) {
    const Onnx__AttributeProto *a = attr_find(c->np, name);
    snprintf(out, cap, "%s", dflt);
    if (!a) return NN_OK;
    if (!a->has_s) return attr_type_err(c, name, "a string");
    size_t len = a->s.len < cap - 1 ? a->s.len : cap - 1;
    memcpy(out, a->s.data, len);
    out[len] = 0;
    return NN_OK;
}

/* Attributes each op reads, into the node's slots (see ops.c for use). */
static nn_status parse_attrs(const attr_ctx *c, nn__onnx_node *n, int64_t opset) {
    nn_status st = NN_OK;
    char s[32];
    switch (n->op) {
    case NN__OP_GEMM:
        if ((st = attr_float(c, "alpha", 1.0, &n->f[0])) ||
            (st = attr_float(c, "beta", 1.0, &n->f[1])) ||
            (st = attr_int(c, "transA", 0, &n->a[0])) || (st = attr_int(c, "transB", 0, &n->a[1])))
            return st;
        break;
    case NN__OP_CONV:
    case NN__OP_CONV_TRANSPOSE:
    case NN__OP_MAX_POOL:
    case NN__OP_AVG_POOL:
        if ((st = attr_string(c, "auto_pad", "NOTSET", s, sizeof s))) return st;
        if (strcmp(s, "NOTSET") && strcmp(s, "VALID"))
            return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (%s): auto_pad %s is not supported",
                           c->fn, c->node, c->np->op_type, s);
        /* l: kernel_shape, strides, pads, dilations (ConvTranspose: output_padding in a[2]) */
        if ((st = attr_ints(c, "kernel_shape", n, 0)) || (st = attr_ints(c, "strides", n, 1)) ||
            (st = attr_ints(c, "pads", n, 2)) || (st = attr_ints(c, "dilations", n, 3)) ||
            (st = attr_int(c, "group", 1, &n->a[0])) ||
            (st = attr_int(c, "ceil_mode", 0, &n->a[1])) ||
            (st = attr_int(c, "count_include_pad", 0, &n->a[3])))
            return st;
        if (n->op == NN__OP_CONV_TRANSPOSE) {
            const Onnx__AttributeProto *op = attr_find(c->np, "output_padding");
            if (op && op->n_ints > 2)
                return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (ConvTranspose): output_padding "
                               "of %zu entries", c->fn, c->node, op->n_ints);
            n->a[4] = op && op->n_ints > 0 ? op->ints[0] : 0;
            n->a[5] = op && op->n_ints > 1 ? op->ints[1] : 0;
            if (attr_find(c->np, "output_shape"))
                return nn__err(NN_ERR_UNSUPPORTED,
                               "%s: node '%s' (ConvTranspose): output_shape is not supported",
                               c->fn, c->node);
        }
        if (n->op == NN__OP_MAX_POOL && attr_find(c->np, "storage_order")) {
            int64_t so;
            if ((st = attr_int(c, "storage_order", 0, &so))) return st;
            if (so) return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (MaxPool): storage_order 1",
                                   c->fn, c->node);
        }
        break;
    case NN__OP_BATCH_NORM:
        if ((st = attr_float(c, "epsilon", 1e-5, &n->f[0])) ||
            (st = attr_int(c, "training_mode", 0, &n->a[0])))
            return st;
        if (n->a[0])
            return nn__err(NN_ERR_UNSUPPORTED,
                           "%s: node '%s' (BatchNormalization): training_mode 1 (import runs in eval)",
                           c->fn, c->node);
        break;
    case NN__OP_LAYER_NORM:
        if ((st = attr_float(c, "epsilon", 1e-5, &n->f[0])) ||
            (st = attr_int(c, "axis", -1, &n->a[0])) ||
            (st = attr_int(c, "stash_type", 1, &n->a[1])))
            return st;
        break;
    case NN__OP_LEAKY_RELU:
        if ((st = attr_float(c, "alpha", 0.01, &n->f[0]))) return st;
        break;
    case NN__OP_ELU:
        if ((st = attr_float(c, "alpha", 1.0, &n->f[0]))) return st;
        break;
    case NN__OP_SOFTMAX:
    case NN__OP_LOG_SOFTMAX:
        if ((st = attr_int(c, "axis", opset >= 13 ? -1 : 1, &n->a[0]))) return st;
        break;
    case NN__OP_FLATTEN:
        if ((st = attr_int(c, "axis", 1, &n->a[0]))) return st;
        break;
    case NN__OP_TRANSPOSE:
        if ((st = attr_ints(c, "perm", n, 0))) return st;
        break;
    case NN__OP_CONCAT:
        if (!attr_find(c->np, "axis"))
            return nn__err(NN_ERR_FORMAT, "%s: node '%s' (Concat) has no axis", c->fn, c->node);
        if ((st = attr_int(c, "axis", 0, &n->a[0]))) return st;
        break;
    case NN__OP_SPLIT:
        if ((st = attr_int(c, "axis", 0, &n->a[0])) || (st = attr_ints(c, "split", n, 0)))
            return st;
        break;
    case NN__OP_GATHER:
        if ((st = attr_int(c, "axis", 0, &n->a[0]))) return st;
        break;
    case NN__OP_SQUEEZE:
    case NN__OP_UNSQUEEZE:
    case NN__OP_REDUCE_MEAN:
    case NN__OP_REDUCE_SUM:
        if ((st = attr_ints(c, "axes", n, 0)) || (st = attr_int(c, "keepdims", 1, &n->a[0])) ||
            (st = attr_int(c, "noop_with_empty_axes", 0, &n->a[1])))
            return st;
        break;
    case NN__OP_SHAPE:
        if ((st = attr_int(c, "start", 0, &n->a[0])) ||
            (st = attr_int(c, "end", INT64_MAX, &n->a[1])))
            return st;
        break;
    case NN__OP_CAST: {
        if ((st = attr_int(c, "to", 0, &n->a[0]))) return st;
        if (nn__onnx_dtype((int32_t)n->a[0]) < 0)
            return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (Cast): target type %lld (%s)",
                           c->fn, c->node, (long long)n->a[0], dt_name((int32_t)n->a[0]));
        n->a[1] = nn__onnx_dtype((int32_t)n->a[0]);
        break;
    }
    case NN__OP_CONSTANT: {
        const Onnx__AttributeProto *a = c->np->n_attribute == 1 ? c->np->attribute[0] : NULL;
        const char *an = a && a->name ? a->name : "";
        int64_t len = a ? (int64_t)(strcmp(an, "value_floats") ? a->n_ints : a->n_floats) : 0;
        if (!a)
            return nn__err(NN_ERR_FORMAT, "%s: node '%s' (Constant) needs exactly one attribute",
                           c->fn, c->node);
        if (!strcmp(an, "value")) n->value = nn__onnx_tensor(a->t, c->node, c->fn);
        else if (!strcmp(an, "value_float") && a->has_f) n->value = nn__scalar_f32(a->f);
        else if (!strcmp(an, "value_int") && a->has_i)
            n->value = nn__tensor_new(NN_DTYPE_I64, NULL, 0);
        else if (!strcmp(an, "value_floats")) {
            if ((n->value = nn__tensor_new(NN_DTYPE_F32, &len, 1)))
                memcpy(nn__f32(n->value), a->floats, (size_t)len * sizeof(float));
        } else if (!strcmp(an, "value_ints")) {
            if ((n->value = nn__tensor_new(NN_DTYPE_I64, &len, 1)))
                memcpy(nn__i64(n->value), a->ints, (size_t)len * sizeof(int64_t));
        } else {
            return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (Constant): attribute '%s'", c->fn,
                           c->node, an);
        }
        if (!n->value) return nn_last_status();
        if (!strcmp(an, "value_int")) nn__i64(n->value)[0] = a->i;
        break;
    }
    case NN__OP_PAD:
        if ((st = attr_string(c, "mode", "constant", s, sizeof s))) return st;
        if (strcmp(s, "constant"))
            return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (Pad): mode '%s' (only constant)",
                           c->fn, c->node, s);
        break;
    case NN__OP_LSTM:
    case NN__OP_GRU:
    case NN__OP_RNN: {
        int64_t hs;
        if ((st = attr_int(c, "hidden_size", 0, &hs)) ||
            (st = attr_string(c, "direction", "forward", s, sizeof s)) ||
            (st = attr_int(c, "layout", 0, &n->a[2])) ||
            (st = attr_int(c, "linear_before_reset", 0, &n->a[3])) ||
            (st = attr_int(c, "input_forget", 0, &n->a[4])))
            return st;
        if (hs <= 0 || hs > (1 << 20))
            return nn__err(NN_ERR_FORMAT, "%s: node '%s' (%s): hidden_size %lld", c->fn, c->node,
                           c->np->op_type, (long long)hs);
        n->a[0] = hs;
        if (!strcmp(s, "forward")) n->a[1] = 1;
        else if (!strcmp(s, "bidirectional")) n->a[1] = 2;
        else
            return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (%s): direction '%s'", c->fn,
                           c->node, c->np->op_type, s);
        const Onnx__AttributeProto *acts = attr_find(c->np, "activations");
        n->a[5] = 0; /* RNN: 0 tanh, 1 relu */
        if (n->op == NN__OP_RNN && acts) {
            bool ok = acts->n_strings >= 1 && acts->n_strings <= 2;
            for (size_t i = 0; ok && i < acts->n_strings; i++) {
                const ProtobufCBinaryData *a = &acts->strings[i];
                bool relu = a->len == 4 && !memcmp(a->data, "Relu", 4);
                bool tanh_ = a->len == 4 && !memcmp(a->data, "Tanh", 4);
                if (!relu && !tanh_) ok = false;
                if (i == 0) n->a[5] = relu;
                else if (relu != (n->a[5] != 0)) ok = false;
            }
            if (!ok)
                return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (RNN): activations other than "
                               "one Tanh or Relu for every direction", c->fn, c->node);
            acts = NULL;
        }
        if (acts || attr_find(c->np, "clip") || n->a[4])
            return nn__err(NN_ERR_UNSUPPORTED,
                           "%s: node '%s' (%s): custom activations, clip or input_forget", c->fn,
                           c->node, c->np->op_type);
        if (n->op == NN__OP_GRU && !n->a[3])
            return nn__err(NN_ERR_UNSUPPORTED,
                           "%s: node '%s' (GRU): linear_before_reset 0 (libnn's GRU is PyTorch's, "
                           "linear_before_reset 1)",
                           c->fn, c->node);
        break;
    }
    default: break;
    }
    return st;
}

/* ------------------------------------------------------------ building */

static void node_clear(nn__onnx_node *n) {
    nn__free(n->name);
    nn__free(n->in);
    nn__free(n->out);
    for (int i = 0; i < NN__ONNX_NL; i++) nn__free(n->l[i]);
    nn_module_free(n->rnn);
    nn__tensor_release(n->value);
}

void nn__onnx_graph_free(nn__onnx_graph *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->nvalues; i++) {
        nn__free(g->names[i]);
        if (g->fixed) nn__tensor_release(g->fixed[i]);
    }
    for (int32_t i = 0; i < g->nnodes; i++) node_clear(&g->nodes[i]);
    nn__free(g->names);
    nn__free(g->fixed);
    nn__free(g->last_use);
    nn__free(g->is_output);
    nn__free(g->nodes);
    nn__free(g->inputs);
    nn__free(g->outputs);
    nn__free(g);
}

/* The node's value ids, checked against the table (inputs) or defined
 * (outputs). Empty names are absent optionals. */
static nn_status node_io(builder *b, const Onnx__NodeProto *np, nn__onnx_node *n,
                         const op_info *info) {
    const char *fn = b->fn;
    if (np->n_input > NN__ONNX_MAX_IO || np->n_output > NN__ONNX_MAX_IO)
        return nn__err(NN_ERR_LIMIT, "%s: node '%s' has %zu inputs and %zu outputs (at most %d)",
                       fn, n->name, np->n_input, np->n_output, NN__ONNX_MAX_IO);
    if ((int)np->n_input < info->min_in || (int)np->n_input > info->max_in ||
        (int)np->n_output < info->min_out || (int)np->n_output > info->max_out)
        return nn__err(NN_ERR_FORMAT, "%s: node '%s' (%s) has %zu inputs and %zu outputs", fn,
                       n->name, info->type, np->n_input, np->n_output);
    n->nin = (int)np->n_input;
    n->nout = (int)np->n_output;
    n->in = nn__calloc(n->nin ? (size_t)n->nin : 1, sizeof *n->in);
    n->out = nn__calloc(n->nout ? (size_t)n->nout : 1, sizeof *n->out);
    if (!n->in || !n->out) return NN_ERR_NOMEM;
    for (int i = 0; i < n->nin; i++) n->in[i] = -2; /* resolved after all outputs are known */
    for (int i = 0; i < n->nout; i++) {
        n->out[i] = -1;
        if (!np->output[i] || !np->output[i][0]) continue;
        nn_status st = value_add(b, np->output[i], n->name, &n->out[i]);
        if (st) return st;
    }
    return NN_OK;
}

static nn_status resolve_inputs(builder *b, const Onnx__NodeProto *np, nn__onnx_node *n,
                                int min_in) {
    for (int i = 0; i < n->nin; i++) {
        const char *nm = np->input[i];
        if (!nm || !nm[0]) {
            if (i < min_in)
                return nn__err(NN_ERR_FORMAT, "%s: node '%s' (%s): required input %d is empty",
                               b->fn, n->name, np->op_type, i);
            n->in[i] = -1;
            continue;
        }
        int32_t v = value_find(b, nm);
        if (v < 0)
            return nn__err(NN_ERR_FORMAT, "%s: node '%s' (%s) reads '%s', which nothing defines",
                           b->fn, n->name, np->op_type, nm);
        n->in[i] = v;
    }
    return NN_OK;
}

/* Kahn's algorithm over the nodes in file order: the result is a
 * topological order (file order among independent nodes) or a cycle error. */
static nn_status topo_sort(builder *b, nn__onnx_node *nodes, int32_t nn, const char *fn) {
    nn__onnx_graph *g = b->g;
    int32_t nv = g->nvalues;
    int32_t *pending = nn__calloc((size_t)nn + 1, sizeof *pending);
    int32_t *cons_start = nn__calloc((size_t)nv + 1, sizeof *cons_start);
    int32_t *order = nn__calloc((size_t)nn + 1, sizeof *order);
    int32_t *cons = NULL;
    size_t nedges = 0;
    nn_status st = NN_OK;
    if (!pending || !cons_start || !order) {
        st = NN_ERR_NOMEM;
        goto done;
    }
    /* Consumers of each value produced by a node (CSR lists). */
    for (int32_t i = 0; i < nn; i++)
        for (int k = 0; k < nodes[i].nin; k++) {
            int32_t v = nodes[i].in[k];
            if (v >= 0 && b->producer[v] >= 0) {
                cons_start[v + 1]++;
                nedges++;
                pending[i]++;
            }
        }
    for (int32_t v = 0; v < nv; v++) cons_start[v + 1] += cons_start[v];
    cons = nn__calloc(nedges ? nedges : 1, sizeof *cons);
    int32_t *fill = nn__calloc((size_t)nv + 1, sizeof *fill);
    if (!cons || !fill) {
        nn__free(fill);
        st = NN_ERR_NOMEM;
        goto done;
    }
    for (int32_t i = 0; i < nn; i++)
        for (int k = 0; k < nodes[i].nin; k++) {
            int32_t v = nodes[i].in[k];
            if (v >= 0 && b->producer[v] >= 0) cons[cons_start[v] + fill[v]++] = i;
        }
    nn__free(fill);
    /* order[] doubles as the queue. */
    int32_t head = 0, tail = 0;
    for (int32_t i = 0; i < nn; i++)
        if (!pending[i]) order[tail++] = i;
    while (head < tail) {
        int32_t i = order[head++];
        for (int k = 0; k < nodes[i].nout; k++) {
            int32_t v = nodes[i].out[k];
            if (v < 0) continue;
            for (int32_t e = cons_start[v]; e < cons_start[v + 1]; e++)
                if (--pending[cons[e]] == 0) order[tail++] = cons[e];
        }
    }
    if (tail != nn) {
        int32_t bad = 0;
        while (bad < nn && !pending[bad]) bad++;
        st = nn__err(NN_ERR_FORMAT, "%s: the graph has a cycle (node '%s' is on or after it)", fn,
                     bad < nn ? nodes[bad].name : "?");
        goto done;
    }
    g->nodes = nn__calloc((size_t)nn + 1, sizeof *g->nodes);
    if (!g->nodes) {
        st = NN_ERR_NOMEM;
        goto done;
    }
    for (int32_t i = 0; i < nn; i++) {
        g->nodes[i] = nodes[order[i]];
        memset(&nodes[order[i]], 0, sizeof nodes[order[i]]);
    }
    g->nnodes = nn;
done:
    nn__free(pending);
    nn__free(cons_start);
    nn__free(cons);
    nn__free(order);
    return st;
}

/* --------------------------------------------------------- GELU fusion */

static bool const_scalar(const nn__onnx_graph *g, int32_t v, double *out) {
    if (v < 0 || !g->fixed[v] || g->fixed[v]->numel != 1 || g->fixed[v]->dtype != NN_DTYPE_F32)
        return false;
    *out = nn__get_flat(g->fixed[v], 0);
    return true;
}

/* Per value: the node producing it and the one node reading it (-1 when
 * none or several), both as indices into the sorted nodes; computed once
 * so the fusion below stays linear in the graph. */
typedef struct links {
    int32_t *prod, *cons;
} links;

static int32_t sole_consumer(const nn__onnx_graph *g, const links *lk, const int32_t *uses,
                             int32_t v) {
    if (v < 0 || uses[v] != 1 || g->is_output[v]) return -1;
    return lk->cons[v];
}

/* x * 0.5 * (1 + erf(x / sqrt 2)) in torch's export order (Div or Mul by
 * 1/sqrt 2, Erf, Add 1, Mul x, Mul 0.5, either operand order) becomes one
 * exact GELU node; the four others are marked dead (op NN__OP_COUNT). */
static nn_status fuse_gelu(nn__onnx_graph *g, const int32_t *uses) {
    links lk = {nn__malloc(((size_t)g->nvalues + 1) * sizeof *lk.prod),
                nn__malloc(((size_t)g->nvalues + 1) * sizeof *lk.cons)};
    if (!lk.prod || !lk.cons) {
        nn__free(lk.prod);
        nn__free(lk.cons);
        return NN_ERR_NOMEM;
    }
    for (int32_t v = 0; v < g->nvalues; v++) lk.prod[v] = lk.cons[v] = -1;
    for (int32_t i = 0; i < g->nnodes; i++) {
        for (int k = 0; k < g->nodes[i].nout; k++)
            if (g->nodes[i].out[k] >= 0) lk.prod[g->nodes[i].out[k]] = i;
        for (int k = 0; k < g->nodes[i].nin; k++)
            if (g->nodes[i].in[k] >= 0) lk.cons[g->nodes[i].in[k]] = i;
    }
    for (int32_t e = 0; e < g->nnodes; e++) {
        nn__onnx_node *erf = &g->nodes[e];
        if (erf->op != NN__OP_ERF) continue;
        int32_t dv = erf->in[0];
        int32_t d = dv >= 0 ? lk.prod[dv] : -1;
        if (d < 0 || uses[dv] != 1 || g->is_output[dv]) continue;
        nn__onnx_node *div = &g->nodes[d];
        double c;
        if (!(div->op == NN__OP_DIV && const_scalar(g, div->in[1], &c) &&
              fabs(c - sqrt(2.0)) < 1e-4) &&
            !(div->op == NN__OP_MUL && const_scalar(g, div->in[1], &c) &&
              fabs(c - sqrt(0.5)) < 1e-4))
            continue;
        int32_t x = div->in[0];
        int32_t a = sole_consumer(g, &lk, uses, erf->out[0]);
        if (a < 0 || g->nodes[a].op != NN__OP_ADD) continue;
        nn__onnx_node *add = &g->nodes[a];
        int32_t other = add->in[0] == erf->out[0] ? add->in[1] : add->in[0];
        if (!const_scalar(g, other, &c) || c != 1.0) continue;
        int32_t m1 = sole_consumer(g, &lk, uses, add->out[0]);
        if (m1 < 0 || g->nodes[m1].op != NN__OP_MUL) continue;
        nn__onnx_node *mul1 = &g->nodes[m1];
        other = mul1->in[0] == add->out[0] ? mul1->in[1] : mul1->in[0];
        int32_t m2 = -1;
        nn__onnx_node *mul2 = NULL;
        if (other == x) { /* Mul(x, 1 + erf) then Mul(., 0.5) */
            m2 = sole_consumer(g, &lk, uses, mul1->out[0]);
            if (m2 < 0 || g->nodes[m2].op != NN__OP_MUL) continue;
            mul2 = &g->nodes[m2];
            int32_t h = mul2->in[0] == mul1->out[0] ? mul2->in[1] : mul2->in[0];
            if (!const_scalar(g, h, &c) || c != 0.5) continue;
        } else {
            continue;
        }
        /* mul2 becomes GELU(x); the others die. */
        mul2->op = NN__OP_GELU;
        mul2->in[0] = x;
        mul2->nin = 1;
        div->op = erf->op = add->op = mul1->op = NN__OP_COUNT;
    }
    nn__free(lk.prod);
    nn__free(lk.cons);
    return NN_OK;
}

/* ------------------------------------------------------------ module */

/* Register parameter/buffer t under the file's name: a dotted name nests
 * holder modules like PyTorch's ("layer1.0.conv1.weight"), so state dicts
 * match torch's; a name that cannot be registered that way gets a flat
 * fallback "onnx_<i>". */
static nn_tensor *holder_forward(nn_module *self, nn_tensor *x, void *user) {
    (void)self, (void)x, (void)user;
    return NN__FAIL(NN_ERR_UNSUPPORTED,
                    "nn_module_forward: a scope of an imported ONNX graph has no forward of its own");
}

static nn_status register_named(nn_module *root, const char *name, nn_tensor *t, bool param,
                                int32_t id) {
    char buf[512];
    size_t len = strlen(name);
    nn_module *m = root;
    bool ok = len < sizeof buf && name[0] && name[len - 1] != '.';
    if (ok) {
        memcpy(buf, name, len + 1);
        char *seg = buf;
        for (char *dot; ok && (dot = strchr(seg, '.')); seg = dot + 1) {
            *dot = 0;
            if (!seg[0] || strlen(seg) > 255) {
                ok = false;
                break;
            }
            nn_module *child = nn_module_get_module(m, seg);
            if (!child) {
                nn_clear_error();
                child = nn_module_custom_new("onnx_scope", holder_forward, NULL, NULL);
                if (!child) return nn_last_status();
                if (nn_module_register_module(m, seg, child)) {
                    ok = false;
                    break;
                }
            } else if (nn_module_user(child) != NULL ||
                       strcmp(nn_module_type_name(child), "Custom:onnx_scope")) {
                ok = false;
                break;
            }
            m = child;
        }
        if (ok && (strlen(seg) > 255 ||
                   (param ? nn_module_register_parameter(m, seg, t)
                          : nn_module_register_buffer(m, seg, t))))
            ok = false;
    }
    if (ok) return NN_OK;
    nn_clear_error();
    snprintf(buf, sizeof buf, "onnx_%d", (int)id);
    return param ? nn_module_register_parameter(root, buf, t) : nn_module_register_buffer(root, buf, t);
}

/* ---------------------------------------------------- recurrent layers */

/* LSTM/GRU weights W [dirs, G*H, I], R [dirs, G*H, H], B [dirs, 2*G*H] in
 * ONNX's gate order (LSTM i,o,f,c; GRU z,r,h) become an nn_recurrent
 * module in PyTorch's (LSTM i,f,g,o; GRU r,z,n). */
static nn_status build_rnn(nn__onnx_graph *g, nn__onnx_node *n, const char *fn) {
    bool lstm = n->op == NN__OP_LSTM, gru = n->op == NN__OP_GRU;
    int G = lstm ? 4 : gru ? 3 : 1;
    static const int lstm_perm[4] = {0, 2, 3, 1}, gru_perm[3] = {1, 0, 2}, one[1] = {0};
    const int *perm = lstm ? lstm_perm : gru ? gru_perm : one;
    int64_t H = n->a[0], dirs = n->a[1];
    nn_tensor *W = n->in[1] >= 0 ? g->fixed[n->in[1]] : NULL;
    nn_tensor *R = n->in[2] >= 0 ? g->fixed[n->in[2]] : NULL;
    nn_tensor *B = n->nin > 3 && n->in[3] >= 0 ? g->fixed[n->in[3]] : NULL;
    if (!W || !R || (n->nin > 3 && n->in[3] >= 0 && !B))
        return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (%s): W, R and B must be initializers",
                       fn, n->name, nn__onnx_op_name(n->op));
    if (lstm && n->nin > 7 && n->in[7] >= 0)
        return nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s' (LSTM): peepholes (input P)", fn, n->name);
    if (W->dtype != NN_DTYPE_F32 || W->ndim != 3 || W->shape[0] != dirs || W->shape[1] != G * H ||
        W->shape[2] < 1 || R->dtype != NN_DTYPE_F32 || R->ndim != 3 || R->shape[0] != dirs ||
        R->shape[1] != G * H || R->shape[2] != H ||
        (B && (B->dtype != NN_DTYPE_F32 || B->ndim != 2 || B->shape[0] != dirs ||
               B->shape[1] != 2 * G * H)))
        return nn__err(NN_ERR_SHAPE, "%s: node '%s' (%s): W, R, B shapes do not match hidden_size "
                       "%lld and %lld direction(s)", fn, n->name, nn__onnx_op_name(n->op),
                       (long long)H, (long long)dirs);
    int64_t I = W->shape[2];
    nn_rnn_mode mode = lstm  ? NN_RNN_MODE_LSTM
                       : gru ? NN_RNN_MODE_GRU
                       : n->a[5] ? NN_RNN_MODE_RNN_RELU
                                 : NN_RNN_MODE_RNN_TANH;
    nn_module *m = nn_recurrent_new(mode, I, H, 1, true, n->a[2] == 1, 0.0, dirs == 2);
    if (!m) return nn_last_status();
    for (int64_t d = 0; d < dirs; d++) {
        const char *sfx = d ? "_reverse" : "";
        char name[4][32];
        snprintf(name[0], 32, "weight_ih_l0%s", sfx);
        snprintf(name[1], 32, "weight_hh_l0%s", sfx);
        snprintf(name[2], 32, "bias_ih_l0%s", sfx);
        snprintf(name[3], 32, "bias_hh_l0%s", sfx);
        nn_tensor *p[4];
        for (int k = 0; k < 4; k++) {
            p[k] = nn_module_get_parameter(m, name[k]);
            if (!p[k]) {
                nn_module_free(m);
                return nn_last_status();
            }
        }
        const float *w = nn__f32(W) + d * G * H * I, *r = nn__f32(R) + d * G * H * H;
        const float *bb = B ? nn__f32(B) + d * 2 * G * H : NULL;
        for (int t = 0; t < G; t++) {
            int o = perm[t];
            memcpy(nn__f32(p[0]) + t * H * I, w + o * H * I, (size_t)(H * I) * sizeof(float));
            memcpy(nn__f32(p[1]) + t * H * H, r + o * H * H, (size_t)(H * H) * sizeof(float));
            for (int64_t j = 0; j < H; j++) {
                nn__f32(p[2])[t * H + j] = bb ? bb[o * H + j] : 0.0f;
                nn__f32(p[3])[t * H + j] = bb ? bb[G * H + o * H + j] : 0.0f;
            }
        }
    }
    n->rnn = m;
    return NN_OK;
}

/* ------------------------------------------------------------- forward */

/* Run the graph on inputs[0..n) (the graph's runtime inputs in order; n
 * must match, absent (NULL) inputs are errors). */
static nn_tensor *graph_run(const nn__onnx_graph *g, nn_tensor *const *inputs, int ninputs,
                            const char *fn) {
    int n_in = ninputs;
    if (n_in != g->ninputs)
        return NN__FAIL(NN_ERR_INVALID, "%s: the imported ONNX graph takes %d input(s), got %d%s",
                        fn, (int)g->ninputs, n_in,
                        g->ninputs > 1 ? " (use nn_module_forward_n)" : "");
    for (int i = 0; i < n_in; i++)
        if (!inputs[i])
            return NN__FAIL(NN_ERR_NULL, "%s: graph input %d ('%s') is NULL", fn, i,
                            g->names[g->inputs[i]]);
    nn_tensor **vals = nn__calloc((size_t)g->nvalues + 1, sizeof *vals);
    bool *own = nn__calloc((size_t)g->nvalues + 1, sizeof *own);
    nn_tensor *outs[NN__ONNX_MAX_IO];
    nn_status st = vals && own ? NN_OK : NN_ERR_NOMEM;
    for (int32_t v = 0; !st && v < g->nvalues; v++) vals[v] = g->fixed[v];
    for (int i = 0; !st && i < n_in; i++) vals[g->inputs[i]] = inputs[i];
    for (int32_t i = 0; !st && i < g->nnodes; i++) {
        const nn__onnx_node *n = &g->nodes[i];
        if (n->op == NN__OP_COUNT) continue; /* folded or fused away */
        nn_scope *s = nn_scope_begin();
        if (!s) {
            st = NN_ERR_NOMEM;
            break;
        }
        memset(outs, 0, sizeof outs);
        st = nn__onnx_run_node(g, n, vals, outs, fn);
        for (int k = 0; !st && k < n->nout; k++) {
            int32_t v = n->out[k];
            if (v < 0 || !outs[k]) continue;
            vals[v] = nn_tensor_retain(outs[k]);
            own[v] = true;
        }
        nn_scope_end(s);
        for (int k = 0; !st && k < n->nin; k++) {
            int32_t v = n->in[k];
            if (v >= 0 && own[v] && g->last_use[v] == i && !g->is_output[v]) {
                nn_tensor_free(vals[v]);
                vals[v] = NULL;
                own[v] = false;
            }
        }
    }
    nn_tensor *y = NULL;
    if (!st) {
        int32_t o = g->outputs[0];
        y = vals[o];
        if (!y)
            st = nn__err(NN_ERR_STATE, "%s: graph output '%s' was not computed", fn, g->names[o]);
        else if (own[o])
            own[o] = false; /* the reference moves to the forward's scope */
        else
            y = nn_tensor_retain(y);
    }
    for (int32_t v = 0; vals && own && v < g->nvalues; v++)
        if (own[v]) nn_tensor_free(vals[v]);
    nn__free(vals);
    nn__free(own);
    if (st) return NULL;
    return nn__track(y);
}

static nn_tensor *graph_forward(nn_module *self, nn_tensor *x, void *user) {
    (void)self;
    return graph_run(user, &x, 1, "nn_module_forward");
}

static nn_tensor *graph_forward_n(nn_module *self, nn_tensor *const *inputs, int n, void *user) {
    (void)self;
    return graph_run(user, inputs, n, "nn_module_forward_n");
}

static void graph_free(void *user) { nn__onnx_graph_free(user); }

/* ------------------------------------------------------------- import */

static nn_status opset_of(const Onnx__ModelProto *mp, int64_t *opset, const char *fn) {
    *opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (!o) continue;
        if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx"))
            *opset = o->has_version ? o->version : -1;
    }
    if (*opset < 0)
        return nn__err(NN_ERR_FORMAT, "%s: the model imports no version of the default opset", fn);
    if (*opset < NN__ONNX_MIN_OPSET || *opset > NN__ONNX_MAX_OPSET)
        return nn__err(NN_ERR_UNSUPPORTED, "%s: opset %lld (libnn imports opsets %d to %d)", fn,
                       (long long)*opset, NN__ONNX_MIN_OPSET, NN__ONNX_MAX_OPSET);
    return NN_OK;
}

static bool is_rnn_weight(const nn__onnx_node *n, int k) {
    return (n->op == NN__OP_LSTM || n->op == NN__OP_GRU || n->op == NN__OP_RNN) && k >= 1 && k <= 3;
}

/* Fold node i (all inputs constant, none a parameter): run it now, with
 * grad off, and keep its outputs as constants. */
static nn_status fold_node(nn__onnx_graph *g, nn__onnx_node *n, uint64_t *budget,
                           const char *fn) {
    nn_tensor *outs[NN__ONNX_MAX_IO] = {0};
    bool prev = nn_set_grad_enabled(false);
    /* What folding may allocate is capped (NN_ERR_LIMIT past it): a small
     * file must not expand to gigabytes of constants at import. */
    nn__tensor_budget(budget);
    nn_scope *s = nn_scope_begin();
    nn_status st = s ? nn__onnx_run_node(g, n, g->fixed, outs, fn) : NN_ERR_NOMEM;
    for (int k = 0; !st && k < n->nout; k++) {
        int32_t v = n->out[k];
        if (v < 0 || !outs[k]) continue;
        nn_tensor *c = nn_tensor_contiguous(outs[k]);
        nn_tensor *d = c ? nn__clone(c) : NULL; /* owned, untracked, no graph */
        if (!d) st = nn_last_status();
        else g->fixed[v] = d;
    }
    nn_scope_end(s);
    nn__tensor_budget(NULL);
    nn_set_grad_enabled(prev);
    if (!st) n->op = NN__OP_COUNT;
    return st;
}

nn_module *nn__onnx_build(const Onnx__ModelProto *mp, size_t file_len, const char *fn) {
    int64_t opset;
    if (opset_of(mp, &opset, fn)) return NULL;
    const Onnx__GraphProto *gp = mp->graph;
    if (!gp) return NN__FAIL(NN_ERR_FORMAT, "%s: the model has no graph", fn);
    if (gp->n_node > NN__ONNX_MAX_NODES)
        return NN__FAIL(NN_ERR_LIMIT, "%s: %zu nodes (at most %d)", fn, gp->n_node,
                        NN__ONNX_MAX_NODES);
    if (gp->n_output < 1) return NN__FAIL(NN_ERR_FORMAT, "%s: the graph has no output", fn);
    if (gp->n_input > NN_MODULE_MAX_INPUTS + gp->n_initializer)
        return NN__FAIL(NN_ERR_LIMIT, "%s: %zu graph inputs (at most %d besides initializers)", fn,
                        gp->n_input, NN_MODULE_MAX_INPUTS);
    builder b = {.fn = fn};
    uint64_t fold_budget = (uint64_t)file_len * 16 + ((uint64_t)64 << 20);
    nn__onnx_graph *g = nn__calloc(1, sizeof *g);
    nn_tensor **init = nn__calloc(gp->n_initializer + 1, sizeof *init);
    int32_t *init_id = nn__calloc(gp->n_initializer + 1, sizeof *init_id);
    nn__onnx_node *nodes = nn__calloc(gp->n_node + 1, sizeof *nodes);
    int32_t *uses = NULL;
    bool *param = NULL, *bn_stat = NULL, *other_use = NULL;
    nn_module *mod = NULL;
    nn_status st = g && init && init_id && nodes ? NN_OK : NN_ERR_NOMEM;
    if (st) goto fail;
    b.g = g;
    g->opset = opset;
    /* Initializers, then the runtime inputs (an IR < 4 file lists
     * initializers among the inputs too). */
    for (size_t i = 0; !st && i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        char what[64];
        snprintf(what, sizeof what, "initializer %zu", i);
        if (!tp || !tp->name) {
            st = nn__err(NN_ERR_FORMAT, "%s: %s has no name", fn, what);
            break;
        }
        if ((st = value_add(&b, tp->name, what, &init_id[i]))) break;
        if (!(init[i] = nn__onnx_tensor(tp, tp->name, fn))) st = nn_last_status();
    }
    int32_t ninit_values = g->nvalues;
    g->inputs = nn__calloc(gp->n_input + 1, sizeof *g->inputs);
    if (!st && !g->inputs) st = NN_ERR_NOMEM;
    for (size_t i = 0; !st && i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi || !vi->name) {
            st = nn__err(NN_ERR_FORMAT, "%s: graph input %zu has no name", fn, i);
            break;
        }
        int32_t v = value_find(&b, vi->name);
        if (v >= 0 && v < ninit_values) continue; /* an initializer listed as an input */
        if (g->ninputs == NN_MODULE_MAX_INPUTS) {
            st = nn__err(NN_ERR_LIMIT, "%s: more than %d graph inputs", fn, NN_MODULE_MAX_INPUTS);
            break;
        }
        if ((st = value_add(&b, vi->name, "graph input", &v))) break;
        g->inputs[g->ninputs++] = v;
    }
    /* Nodes: op, outputs defined, attributes. */
    for (size_t i = 0; !st && i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        nn__onnx_node *n = &nodes[i];
        if (!np || !np->op_type) {
            st = nn__err(NN_ERR_FORMAT, "%s: node %zu has no op_type", fn, i);
            break;
        }
        char nm[300];
        if (np->name && np->name[0]) snprintf(nm, sizeof nm, "%s", np->name);
        else snprintf(nm, sizeof nm, "%s#%zu", np->op_type, i);
        if (!(n->name = nn__strdup(nm))) {
            st = NN_ERR_NOMEM;
            break;
        }
        const op_info *info = NULL;
        if (np->domain && np->domain[0] && strcmp(np->domain, "ai.onnx"))
            st = nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s': operator %s of domain '%s' is not "
                         "supported (opset %lld)", fn, n->name, np->op_type, np->domain,
                         (long long)opset);
        else if (!(info = op_lookup(np->op_type)))
            st = nn__err(NN_ERR_UNSUPPORTED, "%s: node '%s': operator %s is not supported (opset %lld)",
                         fn, n->name, np->op_type, (long long)opset);
        if (st) break;
        n->op = info->op;
        if ((st = node_io(&b, np, n, info))) break;
        attr_ctx c = {np, n->name, fn};
        st = parse_attrs(&c, n, opset);
    }
    if (!st) b.producer = nn__malloc(((size_t)g->nvalues + 1) * sizeof *b.producer);
    if (!st && !b.producer) st = NN_ERR_NOMEM;
    for (int32_t v = 0; !st && v < g->nvalues; v++) b.producer[v] = -1;
    for (size_t i = 0; !st && i < gp->n_node; i++)
        for (int k = 0; k < nodes[i].nout; k++)
            if (nodes[i].out[k] >= 0) b.producer[nodes[i].out[k]] = (int32_t)i;
    for (size_t i = 0; !st && i < gp->n_node; i++) {
        const op_info *info = op_lookup(gp->node[i]->op_type);
        st = resolve_inputs(&b, gp->node[i], &nodes[i], info->min_in);
    }
    if (!st) st = topo_sort(&b, nodes, (int32_t)gp->n_node, fn);
    /* Outputs. */
    g->outputs = nn__calloc(gp->n_output + 1, sizeof *g->outputs);
    g->fixed = nn__calloc((size_t)g->nvalues + 1, sizeof *g->fixed);
    g->is_output = nn__calloc((size_t)g->nvalues + 1, sizeof *g->is_output);
    g->last_use = nn__calloc((size_t)g->nvalues + 1, sizeof *g->last_use);
    uses = nn__calloc((size_t)g->nvalues + 1, sizeof *uses);
    param = nn__calloc((size_t)g->nvalues + 1, sizeof *param);
    bn_stat = nn__calloc((size_t)g->nvalues + 1, sizeof *bn_stat);
    other_use = nn__calloc((size_t)g->nvalues + 1, sizeof *other_use);
    if (!st && (!g->outputs || !g->fixed || !g->is_output || !g->last_use || !uses || !param ||
                !bn_stat || !other_use))
        st = NN_ERR_NOMEM;
    for (size_t i = 0; !st && i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        int32_t v = vi && vi->name ? value_find(&b, vi->name) : -1;
        if (v < 0) {
            st = nn__err(NN_ERR_FORMAT, "%s: graph output '%s' is not defined", fn,
                         vi && vi->name ? vi->name : "");
            break;
        }
        g->outputs[g->noutputs++] = v;
        g->is_output[v] = true;
    }
    /* Constants: initializers and Constant nodes. */
    for (size_t i = 0; !st && i < gp->n_initializer; i++) {
        g->fixed[init_id[i]] = init[i];
        init[i] = NULL;
    }
    for (int32_t i = 0; !st && i < g->nnodes; i++) {
        nn__onnx_node *n = &g->nodes[i];
        for (int k = 0; k < n->nin; k++) {
            if (n->in[k] < 0) continue;
            uses[n->in[k]]++;
            if (n->op == NN__OP_BATCH_NORM && k >= 3) bn_stat[n->in[k]] = true;
            if (!is_rnn_weight(n, k)) other_use[n->in[k]] = true;
        }
    }
    for (size_t i = 0; !st && i < gp->n_initializer; i++) {
        int32_t v = init_id[i];
        param[v] = g->fixed[v]->dtype == NN_DTYPE_F32 && !bn_stat[v] && other_use[v];
    }
    if (!st) st = fuse_gelu(g, uses);
    for (int32_t i = 0; !st && i < g->nnodes; i++) {
        nn__onnx_node *n = &g->nodes[i];
        if (n->op == NN__OP_COUNT) continue;
        if (n->op == NN__OP_LSTM || n->op == NN__OP_GRU || n->op == NN__OP_RNN) {
            st = build_rnn(g, n, fn);
            continue;
        }
        bool foldable = true;
        for (int k = 0; k < n->nin; k++)
            if (n->in[k] >= 0 && (!g->fixed[n->in[k]] || param[n->in[k]])) foldable = false;
        if (n->op == NN__OP_CONSTANT || foldable) st = fold_node(g, n, &fold_budget, fn);
    }
    /* Last use of each value by a node that still runs. */
    for (int32_t v = 0; !st && v < g->nvalues; v++) g->last_use[v] = -1;
    for (int32_t i = 0; !st && i < g->nnodes; i++)
        if (g->nodes[i].op != NN__OP_COUNT)
            for (int k = 0; k < g->nodes[i].nin; k++)
                if (g->nodes[i].in[k] >= 0) g->last_use[g->nodes[i].in[k]] = i;
    /* The module: parameters and buffers under the file's names. */
    if (!st) {
        mod = nn_module_custom_new("onnx", graph_forward, g, graph_free);
        if (!mod) g = NULL; /* freed by the constructor's failure path */
        if (!mod) st = nn_last_status();
        else st = nn_module_custom_set_forward_n(mod, graph_forward_n);
    }
    for (size_t i = 0; !st && i < gp->n_initializer; i++) {
        int32_t v = init_id[i];
        if (param[v]) st = register_named(mod, g->names[v], g->fixed[v], true, v);
        else if (bn_stat[v] && g->fixed[v]->dtype == NN_DTYPE_F32)
            st = register_named(mod, g->names[v], g->fixed[v], false, v);
    }
    for (int32_t i = 0, r = 0; !st && i < g->nnodes; i++) {
        if (!g->nodes[i].rnn) continue;
        char nm[32];
        snprintf(nm, sizeof nm, "rnn%d", (int)r++);
        st = nn_module_register_module(mod, nm, nn_module_retain(g->nodes[i].rnn));
    }
    if (!st) st = nn_module_train(mod, false);
fail:
    for (size_t i = 0; init && i < gp->n_initializer; i++) nn__tensor_release(init[i]);
    nn__free(init);
    nn__free(init_id);
    for (size_t i = 0; nodes && i < gp->n_node; i++) node_clear(&nodes[i]);
    nn__free(nodes);
    nn__free(uses);
    nn__free(param);
    nn__free(bn_stat);
    nn__free(other_use);
    nn__free(b.producer);
    nn__index_free(&b.index);
    if (st) {
        if (mod) nn_module_free(mod);
        else nn__onnx_graph_free(g);
        return NULL;
    }
    return mod;
}

#endif
