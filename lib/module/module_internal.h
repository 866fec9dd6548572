/* Internal interface of modules. The first part is what other areas (io/
 * model files, train/ fit) use; the second, the layout of nn_module and the
 * helpers shared by the files of lib/module/, is for lib/module/ only.
 * Contract of the first part:
 *
 *  - Every built-in module has a type name ("Linear", "Conv2d", "Sequential",
 *    ... the PyTorch class name) and a flat list of hyperparameters as
 *    (key, double) pairs, enough to rebuild it: nn__module_create(type,
 *    keys, values, n) returns a fresh module with default init; its
 *    parameters and buffers are then loaded by name.
 *  - Containers (Sequential, user modules) have named children, in order.
 *    Sequential children are named "0", "1", ...
 *  - A user-defined module (C callback) has type "Custom:<name>"; it cannot
 *    be created from a file (nn__module_create fails with
 *    NN_ERR_UNSUPPORTED), but its weights can be saved and loaded.
 *  - Forward in eval mode with grad mode off must not mutate the module, so
 *    one module can serve many threads.
 */
#ifndef NN_MODULE_INTERNAL_H
#define NN_MODULE_INTERNAL_H

#include "nn_internal.h"

/* Type name, e.g. "Linear" (borrowed, static or owned by m). */
const char *nn__module_type(const nn_module *m);
/* Hyperparameters: count, and entry i (key borrowed). */
int nn__module_config_count(const nn_module *m);
nn_status nn__module_config_get(const nn_module *m, int i, const char **key, double *value);
/* Children (direct submodules) in order; name and module borrowed. */
int nn__module_num_children(const nn_module *m);
nn_module *nn__module_child(const nn_module *m, int i, const char **name);
/* Build a module of a built-in type from its hyperparameters (untracked new
 * reference). Unknown type: NN_ERR_FORMAT naming it. Missing or invalid
 * keys: NN_ERR_FORMAT. Containers come back empty: add children with
 * nn__module_add_child. */
nn_module *nn__module_create(const char *type, const char *const *keys, const double *values,
                             int n);
/* Append a child (the parent takes its own reference). Composite kinds
 * (TransformerEncoderLayer, ...) check that the child is one they expect. */
nn_status nn__module_add_child(nn_module *parent, const char *name, nn_module *child);
/* After a file's children were attached: a composite kind checks that every
 * child it needs is there (NN_ERR_FORMAT naming fn otherwise). */
nn_status nn__module_finish(const nn_module *m, const char *fn);

/* nn_module_load_state_dict; with assign, a matching entry of the same
 * dtype (both contiguous) is not copied: the module's tensor takes its
 * storage (nn__tensor_adopt; PyTorch's assign=True). */
nn_status nn__module_load_state_dict_ex(nn_module *m, const nn_statedict *sd, bool strict,
                                        char **report, bool assign);
/* Scalar state-dict entries (statedict.c; optimizer and schedule state). A
 * double is stored as a [1] i64 tensor holding its IEEE-754 bits. */
nn_status nn__sd_put_double(nn_statedict *sd, const char *name, double v);
nn_status nn__sd_put_i64(nn_statedict *sd, const char *name, int64_t v);
/* Borrowed tensor named `name`, or NULL (also for a bad sd; no error recorded). */
nn_tensor *nn__sd_find(const nn_statedict *sd, const char *name);
/* Read back; NN_ERR_NOT_FOUND / NN_ERR_FORMAT naming fn on a missing or malformed entry. */
nn_status nn__sd_get_double(const nn_statedict *sd, const char *name, double *v, const char *fn);
nn_status nn__sd_get_i64(const nn_statedict *sd, const char *name, int64_t *v, const char *fn);
/* Every parameter and buffer of m with its dotted name (borrowed for the
 * call), in state_dict order; visit returns false to stop. False when
 * stopped or on an error (recorded). */
bool nn__module_visit(const nn_module *m, bool (*visit)(const char *name, nn_tensor *t, void *ctx),
                      void *ctx);
/* Bytes of m's own parameters and buffers (its children's not counted). */
uint64_t nn__module_own_bytes(const nn_module *m);
/* m's own parameters, then buffers: count, and entry i (name and tensor
 * borrowed; *param tells which). */
int nn__module_own_count(const nn_module *m);
nn_tensor *nn__module_own(const nn_module *m, int i, const char **name, bool *param);
/* Make m's own parameter `name` the tensor t (same dtype and shape, else
 * NN_ERR_SHAPE; no such parameter: NN_ERR_NOT_FOUND): m takes a reference
 * and releases the tensor it held (weight tying). */
nn_status nn__module_tie_own(nn_module *m, const char *name, nn_tensor *t, const char *fn);

/* GPT (gpt.c): the tensors of a "GPT" module, found by name and checked
 * (dtype f32, contiguous, shapes from its hyperparameters), for code that
 * runs it directly (lib/generate). The pointers are borrowed from m. */
typedef struct nn__gpt_block {
    nn_tensor *ln1_w, *ln1_b, *attn_w, *attn_b, *aproj_w, *aproj_b;
    nn_tensor *ln2_w, *ln2_b, *fc_w, *fc_b, *mproj_w, *mproj_b; /* biases NULL without bias */
    /* A projection that is not a plain weight matrix (after nn_quantize_dynamic:
     * a QuantizedLinear; while quantizing: an observer): the module, whose
     * forward the GPT forward calls. For a QuantizedLinear, *_w is its packed
     * int8 weight and *_b its bias (read them through nn__qlinear_layer);
     * for an observer both are NULL. NULL for a plain (f32 / half) weight. */
    nn_module *attn_m, *aproj_m, *fc_m, *mproj_m;
} nn__gpt_block;
typedef struct nn__gpt_view {
    int64_t V, T, L, H, C; /* vocab, block size, layers, heads, channels */
    double dropout, eps;
    bool bias;
    nn_tensor *wte, *wpe, *lnf_w, *lnf_b, *head;
    nn__gpt_block *blk; /* [L], owned by the view */
} nn__gpt_view;
/* Whether m is a GPT module. */
bool nn__is_gpt(const nn_module *m);
/* Fill v from m; an error naming fn (NN_ERR_INVALID: not a GPT;
 * NN_ERR_FORMAT: a missing or malformed tensor). Free with nn__gpt_view_free. */
nn_status nn__gpt_view_get(const nn_module *m, nn__gpt_view *v, const char *fn);
void nn__gpt_view_free(nn__gpt_view *v);
/* Post-training quantization (quantized.c; lib/quant drives it). A plan
 * wraps every Linear and Conv2d (groups 1, dilation 1) below a model's root
 * in an observer holding the float layer and its int8 twin (dynamic
 * activations; a ReLU right after the layer in a Sequential fused into the
 * twin). Forwards through the model then run the float layers and, per the
 * mode, record each observed layer's input range (calibration) or the twin's
 * largest deviation from the float layer on the same input (report). The
 * model must not be used from other threads meanwhile. */
typedef struct nn__qplan nn__qplan;
/* NULL with an error naming fn when the root is itself a layer, nothing is
 * eligible, or on failure (the model is then as before). */
nn__qplan *nn__quant_prepare(nn_module *root, const char *fn);
/* false: calibrate (record ranges); true: report (compare twins). */
void nn__quant_mode(nn__qplan *p, bool report);
/* Static activation parameters for every twin from the recorded ranges. */
nn_status nn__quant_set_static(nn__qplan *p, const char *fn);
/* Put the twins (and Identity for fused ReLUs) in place of the observers. */
nn_status nn__quant_convert(nn__qplan *p, const char *fn);
/* Free the plan; layers not converted get their float layer back. */
void nn__quant_free(nn__qplan *p);
/* The per-layer table (+ tail), a new string for nn_free; NULL: NOMEM. */
char *nn__quant_report(const nn__qplan *p, const char *tail);
int nn__quant_count(const nn__qplan *p);
struct nn__qlayer; /* ops/quant.h */
/* Whether m is a QuantizedLinear; then *L describes it (borrowed tensors). */
bool nn__qlinear_layer(const nn_module *m, struct nn__qlayer *L);
/* Whether m is a quantization observer (only while a plan is active). */
bool nn__quant_is_observer(const nn_module *m);

/* ==== Private to lib/module/: the layout of nn_module and shared helpers. */

#include "core/index.h"

#include <pthread.h>

#define NN__MOD_MAX_CFG 16

/* One built-in layer type. Hyperparameters live in m->cfg[] in the order of
 * keys[]; defaults[] gives each one's default (NAN: required). */
typedef struct nn__mod_kind {
    const char *type;
    int nkeys;
    const char *const *keys;
    const double *defaults;
    /* Check cfg and create parameters/buffers with default init. Messages
     * start with the type name ("Linear: ..."). */
    nn_status (*build)(nn_module *m);
    /* Runs inside a compose scope: may call public ops freely; returns a
     * tensor owned by that scope (or borrowed x), or NULL with an error. */
    nn_tensor *(*forward)(nn_module *m, nn_tensor *x);
    /* Estimated FLOPs of one forward (a multiply-add counts as 2). */
    double (*flops)(const nn_module *m, const nn_tensor *in, const nn_tensor *out);
    /* Number of keys this instance reports (NULL: nkeys). */
    int (*ncfg)(const nn_module *m);
    bool container; /* accepts children through nn__module_add_child */
    /* Several inputs (nn_module_forward_n): inputs[0..n), n within
     * [min_inputs, max_inputs]; entries from min_inputs on may be NULL
     * (absent). NULL: the kind takes one input, through forward. Same scope
     * rules as forward. */
    nn_tensor *(*forward_n)(nn_module *m, nn_tensor *const *xs, int n);
    int min_inputs, max_inputs;
    /* Composite kinds (container, fixed children built by their
     * constructor): whether a file's child fits under `name` (expected name,
     * kind and sizes), and whether every child needed is there once the
     * file's children are attached. NULL: anything goes. */
    nn_status (*check_child)(const nn_module *m, const char *name, const nn_module *child);
    nn_status (*check_complete)(const nn_module *m);
} nn__mod_kind;

typedef struct {
    char *name;
    nn_module *m;
} nn__named_module;

struct nn_module {
    nn__handle handle; /* NN__KIND_MODULE */
    _Atomic long refs;
    const nn__mod_kind *kind; /* NULL for user-defined modules */
    char *type_name;          /* "Custom:<name>" for user-defined modules */
    bool training;
    double cfg[NN__MOD_MAX_CFG];

    nn__named_list params, bufs; /* own parameters and buffers (names, tensors owned) */
    nn__named_module *children;
    int nchildren, cap_children;
    /* params, bufs and children share one namespace; past NN__INDEX_MIN
     * names this index finds them (module.c: name_find). */
    nn__index names;

    /* user-defined modules */
    nn_forward_fn user_forward;
    nn_forward_n_fn user_forward_n; /* NULL: one input */
    void *user;
    nn_user_free_fn user_free;

    nn_generator *gen; /* Dropout's own generator */

    /* Flattened parameter / buffer lists, rebuilt when any module's
     * structure changed since (global generation counter). */
    pthread_mutex_t lock;
    uint64_t flat_gen;
    bool flat_valid;
    nn__named_list flat_params, flat_bufs; /* dotted names owned, tensors borrowed */
};
NN__HANDLE_FIRST(struct nn_module, handle);

/* ---- module.c */
bool nn__mod_check(const nn_module *m, const char *fn, const char *name);
/* A fresh module of a kind with cfg = values (nkeys entries), built. */
nn_module *nn__mod_new_kind(const nn__mod_kind *kind, const double *values);
/* Add an owned (untracked) tensor; the module takes the reference. */
nn_status nn__mod_add_param(nn_module *m, const char *name, nn_tensor *t);
nn_status nn__mod_add_buffer(nn_module *m, const char *name, nn_tensor *t);
/* Forward with an untracked result (the dispatch behind nn_module_forward). */
nn_tensor *nn__mod_forward(nn_module *m, nn_tensor *x);
/* Same for several inputs (the dispatch behind nn_module_forward_n). */
nn_tensor *nn__mod_forward_n(nn_module *m, nn_tensor *const *xs, int n);
/* ---- layers.c: Sequential's fusion of Conv2d -> ReLU (-> MaxPool2d(2)):
 * the number of children ch[0..n) consumed (0: none), result in *y. */
int nn__mod_fuse_conv(const nn__named_module *ch, int n, nn_tensor *x, nn_tensor **y);
/* ---- quantized.c: Sequential's chain of QuantizedConv2d layers (Identity
 * children between them skipped), run image by image: the children
 * consumed (0: none, else at least two convolutions), result in *y. */
int nn__mod_fuse_qconv(const nn__named_module *ch, int n, nn_tensor *x, nn_tensor **y);
/* ---- layers.c: Sequential's fusion of Linear -> ReLU when no graph is
 * recorded (inference): 2 when ch[0..1] are a Linear and a ReLU that x can
 * go through that way (result, or NULL on error, in *y), else 0. */
int nn__mod_fuse_linear(const nn__named_module *ch, int n, nn_tensor *x, nn_tensor **y);
/* The leading children of ch[0..n) that nn__mod_fuse_conv fuses one op
 * after another for the input x with no graph recorded (0: none, or a
 * summary runs); *peak: the largest per-image input plus output of one of
 * those ops, in bytes. */
int nn__mod_fuse_conv_run(const nn__named_module *ch, int n, const nn_tensor *x, int64_t *peak);
/* Whether m should behave as in training (false while a summary runs). */
bool nn__mod_training(const nn_module *m);
/* Direct parameter by name, or NULL. */
nn_tensor *nn__mod_param(const nn_module *m, const char *name);
/* Own-parameter scalar count. */
int64_t nn__mod_own_param_count(const nn_module *m);
void nn__mod_bump_generation(void);
/* The cfg index of `weight_dtype` for the kinds whose weight may be f16 /
 * bf16 (Linear, Conv2d, Embedding: layers.c); -1 for any other module. */
int nn__mod_weight_dtype_key(const nn_module *m);
/* Walk children; callbacks in PyTorch's state_dict order. */

/* ---- module.c, for containers.c */
/* Append child under name after the checks of registration (unique name,
 * no cycle); consumes the caller's reference, also on failure. */
nn_status nn__mod_attach(nn_module *m, const char *name, nn_module *child, const char *fn);
/* Put child under name, replacing (and releasing) a child of that name if
 * there is one, else appending; consumes the reference like nn__mod_attach. */
nn_status nn__mod_replace_child(nn_module *m, const char *name, nn_module *child,
                                const char *fn);

/* Remove m's own parameter, buffer or child `name` (released); no-op when
 * there is none. Cannot fail. */
void nn__mod_remove(nn_module *m, const char *name);

/* ---- containers.c: Select, ModuleList, ModuleDict */
extern const nn__mod_kind nn__kind_select, nn__kind_module_list, nn__kind_module_dict;
/* Residual: body(x) + shortcut(x), or + x without a shortcut */
extern const nn__mod_kind nn__kind_residual;

/* ---- layers.c */
const nn__mod_kind *nn__mod_find_kind(const char *type);
/* Uniform(-bound, bound) fill from the default generator (f32, contiguous). */
nn_tensor *nn__mod_uniform_param(const int64_t *shape, int ndim, double bound);

/* ---- gpt.c */
extern const nn__mod_kind nn__kind_gpt;
/* LayerNorm(features) with a weight and no bias (PyTorch's bias=False). */
nn_module *nn__layer_norm_new_nobias(int64_t features, double eps);
/* ---- quantized.c */
extern const nn__mod_kind nn__kind_qlinear, nn__kind_qconv;

/* ---- rnn.c */
extern const nn__mod_kind nn__kind_rnn, nn__kind_lstm, nn__kind_gru;

/* ---- transformer.c */
extern const nn__mod_kind nn__kind_mha, nn__kind_enc_layer, nn__kind_dec_layer,
    nn__kind_encoder, nn__kind_decoder;
/* int8 in-projections of a MultiheadAttention (quantized.c drives them):
 * whether m is a float MHA whose f32 in-projections can be quantized; its
 * q/k/v projections as three new float Linear modules (copies of the rows
 * of in_proj_weight / q,k,v_proj_weight and of in_proj_bias; out[] NULL on
 * error). While m has children q_proj/k_proj/v_proj its forward runs them
 * instead of its parameters. finish: when all three are QuantizedLinear,
 * drop the float in-projection parameters and set quantized = 1 (true);
 * unquantize: remove q_proj/k_proj/v_proj from a not yet finished m. */
bool nn__mha_quantizable(const nn_module *m);
nn_status nn__mha_float_projections(const nn_module *m, nn_module *out[3]);
bool nn__mha_finish_quantized(nn_module *m);
void nn__mha_unquantize(nn_module *m);

/* ---- summary.c: recorder hooks used by nn__mod_forward */
bool nn__summary_active(void);
void nn__summary_enter(nn_module *m);
void nn__summary_leave(nn_module *m, const nn_tensor *x, const nn_tensor *y);

#endif
