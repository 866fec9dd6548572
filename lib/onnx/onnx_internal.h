/* Internal interface of lib/onnx: the imported graph and its executor.
 *
 * An imported ONNX graph is a user-defined module ("Custom:onnx") whose
 * user pointer is an nn__onnx_graph: values (every name the graph defines:
 * inputs, initializers, node outputs) numbered 0..nvalues-1, nodes in a
 * checked topological order, and per value either a constant (folded at
 * import), a parameter/buffer of the module, a graph input or a node output.
 * Everything here is immutable after import, so concurrent eval-mode
 * forwards share it. graph.c builds and validates it from the protobuf
 * (onnx.c parses), ops.c runs one node. */
#ifndef NN_ONNX_INTERNAL_H
#define NN_ONNX_INTERNAL_H

#include "nn_internal.h"
#include "onnx/nn_onnx_config.h"

#if NN_HAVE_ONNX
#include "onnx/onnx.pb-c.h"
#endif

/* Hard caps checked while importing (each names itself in the error). */
#define NN__ONNX_MAX_NODES 1000000
#define NN__ONNX_MAX_IO 64         /* inputs or outputs of one node */
#define NN__ONNX_MAX_ATTR_INTS 64  /* entries of an ints attribute we read */
#define NN__ONNX_MAX_DEPTH 32      /* protobuf message nesting */
#define NN__ONNX_MIN_OPSET 11
#define NN__ONNX_MAX_OPSET 17

typedef enum nn__onnx_op {
    NN__OP_IDENTITY,
    NN__OP_GEMM,
    NN__OP_MATMUL,
    NN__OP_CONV,
    NN__OP_CONV_TRANSPOSE,
    NN__OP_MAX_POOL,
    NN__OP_AVG_POOL,
    NN__OP_GLOBAL_AVG_POOL,
    NN__OP_BATCH_NORM,
    NN__OP_LAYER_NORM,
    NN__OP_RELU,
    NN__OP_LEAKY_RELU,
    NN__OP_SIGMOID,
    NN__OP_TANH,
    NN__OP_ERF,
    NN__OP_GELU, /* the Div/Erf/Add/Mul/Mul pattern, fused at import */
    NN__OP_SOFTMAX,
    NN__OP_LOG_SOFTMAX,
    NN__OP_ADD,
    NN__OP_SUB,
    NN__OP_MUL,
    NN__OP_DIV,
    NN__OP_POW,
    NN__OP_SQRT,
    NN__OP_EXP,
    NN__OP_LOG,
    NN__OP_NEG,
    NN__OP_RESHAPE,
    NN__OP_FLATTEN,
    NN__OP_TRANSPOSE,
    NN__OP_CONCAT,
    NN__OP_SPLIT,
    NN__OP_SLICE,
    NN__OP_GATHER,
    NN__OP_SQUEEZE,
    NN__OP_UNSQUEEZE,
    NN__OP_SHAPE,
    NN__OP_CONSTANT,
    NN__OP_CAST,
    NN__OP_WHERE,
    NN__OP_EQUAL,
    NN__OP_LESS,
    NN__OP_GREATER,
    NN__OP_REDUCE_MEAN,
    NN__OP_REDUCE_SUM,
    NN__OP_PAD,
    NN__OP_DROPOUT,
    NN__OP_EXPAND,
    NN__OP_LSTM,
    NN__OP_GRU,
    NN__OP_RNN,
    NN__OP_ELU,
    NN__OP_CLIP,
    NN__OP_COUNT
} nn__onnx_op;

/* Attribute slots: ints a[], floats f[], int lists l[] (owned). Which slot
 * holds what is per op (graph.c: parse_attrs, ops.c). */
#define NN__ONNX_NI 6
#define NN__ONNX_NF 3
#define NN__ONNX_NL 4

typedef struct nn__onnx_node {
    nn__onnx_op op;
    char *name;    /* node name or "<op_type>#<index>" (owned) */
    int nin, nout;
    int32_t *in;   /* value ids; -1 for an absent optional input */
    int32_t *out;  /* value ids; -1 for an unused optional output */
    int64_t a[NN__ONNX_NI];
    double f[NN__ONNX_NF];
    int64_t *l[NN__ONNX_NL];
    int nl[NN__ONNX_NL];
    bool has_l[NN__ONNX_NL];
    nn_module *rnn; /* LSTM/GRU: the recurrent module holding its weights (owned ref) */
    nn_tensor *value; /* Constant: its value (owned, untracked) */
} nn__onnx_node;

typedef struct nn__onnx_graph {
    int32_t nvalues;
    char **names;           /* value names (owned) */
    nn_tensor **fixed;      /* per value: constant, parameter or buffer (owned ref), or NULL */
    int32_t *last_use;      /* per value: index of the last node reading it (-1: none) */
    bool *is_output;        /* per value: a graph output (never released early) */
    int32_t nnodes;
    nn__onnx_node *nodes;   /* topological order */
    int32_t ninputs, noutputs;
    int32_t *inputs, *outputs; /* value ids of the runtime inputs and the outputs */
    int64_t opset;
} nn__onnx_graph;

/* Run node n on the values vals (borrowed); on success the node's outputs
 * are stored in outs[0..nout) as results of public ops (owned by the
 * caller's open scope). NULL outs entries stand for unused outputs. */
nn_status nn__onnx_run_node(const nn__onnx_graph *g, const nn__onnx_node *n, nn_tensor **vals,
                            nn_tensor **outs, const char *fn);
/* Op name of an op (static). */
const char *nn__onnx_op_name(nn__onnx_op op);
/* Free a graph (NULL-safe). */
void nn__onnx_graph_free(nn__onnx_graph *g);
/* Elementwise erf with its gradient 2/sqrt(pi) exp(-x^2) (an op of its own:
 * libnn's public ops have no erf). Tracked result. */
nn_tensor *nn__onnx_erf(nn_tensor *x);

#if NN_HAVE_ONNX
/* The libnn dtype an ONNX element type runs as (-1: none). */
int nn__onnx_dtype(int32_t onnx_type);
/* A TensorProto as a new untracked tensor, its size checked against its
 * data; `what` names it in messages. */
nn_tensor *nn__onnx_tensor(const Onnx__TensorProto *tp, const char *what, const char *fn);
/* The graph of a parsed model as a new module ("Custom:onnx", eval mode),
 * or NULL with an error naming fn. file_len (the protobuf's size) bounds
 * what constant folding may allocate: 16 x file_len + 64 MiB. */
nn_module *nn__onnx_build(const Onnx__ModelProto *mp, size_t file_len, const char *fn);
#endif

#endif
