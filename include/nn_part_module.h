/* Section of nn.h (merged into nn.h before release). Include <nn.h>, not this. */
#ifndef NN_PART_MODULE_H
#define NN_PART_MODULE_H
#ifndef NN_H
#error "include <nn.h> instead"
#endif

/* ====================================================================== */
/*  Modules: layers and containers                                        */
/* ====================================================================== */
/*
 * An nn_module is an opaque, reference-counted layer (PyTorch's nn.Module):
 * constructors return a new reference, released with nn_module_free
 * (NULL-safe); nn_module_retain adds one. Containers (Sequential,
 * user-defined modules) hold references to their children.
 *
 * Parameters are leaf f32 tensors with requires_grad set; buffers (running
 * statistics) are tensors without gradient. Both are owned by the module and
 * borrowed by getters. Names are PyTorch's dotted names ("0.weight",
 * "features.3.bias"), leaves only, in definition order (a module's own
 * entries first, then each child's in order); a tensor registered twice is
 * listed once. Borrowed names stay valid until the module tree changes
 * (append, register) or is freed.
 *
 * Initialisation matches PyTorch's defaults (Linear/Conv: weight and bias
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. kaiming_uniform(a=sqrt(5));
 * norms: weight 1, bias 0; Embedding: N(0, 1); RNNs: U(-1/sqrt(hidden),
 * 1/sqrt(hidden))). Values are drawn from this thread's default generator,
 * weights before biases, layer by layer: nn_generator_seed(NULL, s) before
 * building a network makes its weights reproducible (the values differ from
 * PyTorch's, whose generator differs).
 *
 * Modules start in training mode. Threads: nn_module_forward in eval mode
 * with grad mode off does not modify the module, so one module may serve
 * concurrent inference from many threads; everything else (training
 * forward, load, register, train/eval switches) needs exclusive access.
 */

/* --- generic methods ------------------------------------------------------ */

/* Run the module on x; returns a new tensor (tracked like any op result:
 * an open scope owns it), NULL on error (shape/channel mismatch, NULL or
 * freed handles: the message names the layer and both shapes). */
NN_API nn_tensor *nn_module_forward(nn_module *m, nn_tensor *x);
/* Add a reference (returns m; NULL-safe). */
NN_API nn_module *nn_module_retain(nn_module *m);
/* Drop a reference; the last one frees the module, its parameters and its
 * children's references. NULL is a no-op. */
NN_API void nn_module_free(nn_module *m);
/* PyTorch class name: "Linear", "Conv2d", "Sequential", "Custom:<name>"...
 * (static or owned by m; NULL for a NULL/freed handle). */
NN_API const char *nn_module_type_name(const nn_module *m);
/* Switch training (true) / evaluation (false) mode, recursively. */
NN_API nn_status nn_module_train(nn_module *m, bool training);
/* Whether m is in training mode (false for NULL). */
NN_API bool nn_module_is_training(const nn_module *m);

/* Number of parameter tensors in the tree (-1 on a bad handle). */
NN_API int64_t nn_module_num_parameters(nn_module *m);
/* Parameter i (borrowed) and, if name != NULL, its dotted name (borrowed). */
NN_API nn_tensor *nn_module_parameter(nn_module *m, int64_t i, const char **name);
/* Number of buffer tensors in the tree (-1 on a bad handle). */
NN_API int64_t nn_module_num_buffers(nn_module *m);
/* Buffer i (borrowed) and, if name != NULL, its dotted name (borrowed). */
NN_API nn_tensor *nn_module_buffer(nn_module *m, int64_t i, const char **name);
/* Parameter / buffer / submodule by dotted name (borrowed), or NULL and
 * NN_ERR_NOT_FOUND. */
NN_API nn_tensor *nn_module_get_parameter(const nn_module *m, const char *name);
NN_API nn_tensor *nn_module_get_buffer(const nn_module *m, const char *name);
NN_API nn_module *nn_module_get_module(const nn_module *m, const char *name);
/* Total number of parameter scalars (PyTorch's sum(p.numel())); -1 on error. */
NN_API int64_t nn_module_param_count(nn_module *m);
/* Set requires_grad on every parameter (false freezes the module). */
NN_API nn_status nn_module_set_requires_grad(nn_module *m, bool requires_grad);
/* Drop the accumulated gradient of every parameter. */
NN_API nn_status nn_module_zero_grad(nn_module *m);

/* A new state dict of every parameter and buffer under its dotted name, in
 * PyTorch's state_dict order. Entries share data with the module (detached
 * views): free with nn_statedict_free. */
NN_API nn_statedict *nn_module_state_dict(nn_module *m);
/* Copy values from sd into the module's parameters and buffers (dtypes are
 * converted). strict: every name must match both ways with equal shapes,
 * else nothing is loaded and the error lists all missing, unexpected and
 * wrongly shaped names. Not strict: matching entries are loaded, the others
 * skipped. If report != NULL, *report receives a text listing missing,
 * unexpected and wrongly shaped names ("" when all matched), freed with
 * nn_free. */
NN_API nn_status nn_module_load_state_dict(nn_module *m, const nn_statedict *sd, bool strict,
                                           char **report);
/* A printable table of the layers run on a zero input of input_shape (the
 * batch included): name, type, output shape, parameters and estimated FLOPs
 * (a multiply-add counts 2), then totals. Runs without grad and with
 * Dropout/BatchNorm in eval behaviour; the module is not modified. Free with
 * nn_free; NULL on error. */
NN_API char *nn_module_summary(nn_module *m, const int64_t *input_shape, int ndim);

/* --- user-defined modules -------------------------------------------------- */

/* Forward of a user-defined module: return the output (a result of public
 * ops). It runs inside a scope opened by nn_module_forward, which releases
 * every intermediate tensor: do not free them. */
typedef nn_tensor *(*nn_forward_fn)(nn_module *self, nn_tensor *x, void *user);
/* Called with `user` when the module is freed. */
typedef void (*nn_user_free_fn)(void *user);

/* A module computed by `forward`, typed "Custom:<name>". Register its
 * parameters, buffers and submodules below. free_user (may be NULL) is
 * called on user when the module is freed, and on failure here. */
NN_API nn_module *nn_module_custom_new(const char *name, nn_forward_fn forward, void *user,
                                       nn_user_free_fn free_user);
/* Register t (f32) as a parameter named name (no '.', unique in m): m takes
 * its own reference, and sets requires_grad. User-defined modules only. */
NN_API nn_status nn_module_register_parameter(nn_module *m, const char *name, nn_tensor *t);
/* Register t as a buffer (saved in state dicts, no gradient); m takes its own
 * reference. User-defined modules only. */
NN_API nn_status nn_module_register_buffer(nn_module *m, const char *name, nn_tensor *t);
/* Register child as a submodule. Takes OVER the caller's reference (also on
 * failure), so nn_module_register_module(m, "fc", nn_linear_new(...)) never
 * leaks; a NULL child fails, keeping the constructor's error. */
NN_API nn_status nn_module_register_module(nn_module *m, const char *name, nn_module *child);
/* The user pointer given to nn_module_custom_new (NULL for built-ins). */
NN_API void *nn_module_user(const nn_module *m);

/* --- containers ------------------------------------------------------------ */

/* An empty Sequential: forward runs the children in order. */
NN_API nn_module *nn_sequential_new(void);
/* Append child (named "0", "1", ...). Takes OVER the caller's reference,
 * also on failure; a NULL child fails, keeping the constructor's error. */
NN_API nn_status nn_sequential_append(nn_module *seq, nn_module *child);
/* Number of children (-1 on error). */
NN_API int64_t nn_sequential_length(const nn_module *seq);
/* Child i (borrowed; negative i counts from the end), or NULL. */
NN_API nn_module *nn_sequential_get(const nn_module *seq, int64_t i);

/* --- layers ---------------------------------------------------------------- */

/* y = x Wᵀ + b on x [*, in]: weight [out, in], bias [out]. */
NN_API nn_module *nn_linear_new(int64_t in_features, int64_t out_features, bool bias);
/* x [N, in, L]: weight [out, in/groups, k], bias [out]. */
NN_API nn_module *nn_conv1d_new(int64_t in_channels, int64_t out_channels, int kernel_size,
                                int stride, int padding, int dilation, int groups, bool bias);
/* Square kernel, dilation 1, groups 1: x [N, in, H, W]. */
NN_API nn_module *nn_conv2d_new(int64_t in_channels, int64_t out_channels, int kernel_size,
                                int stride, int padding, bool bias);
/* Conv2d with every option: weight [out, in/groups, kh, kw]. */
NN_API nn_module *nn_conv2d_new_ex(int64_t in_channels, int64_t out_channels, int kernel_h,
                                   int kernel_w, int stride_h, int stride_w, int pad_h,
                                   int pad_w, int dilation_h, int dilation_w, int groups,
                                   bool bias);
/* Transposed convolution, square kernel, dilation 1, groups 1. */
NN_API nn_module *nn_conv_transpose2d_new(int64_t in_channels, int64_t out_channels,
                                          int kernel_size, int stride, int padding,
                                          int output_padding, bool bias);
/* ConvTranspose2d with every option: weight [in, out/groups, kh, kw]. */
NN_API nn_module *nn_conv_transpose2d_new_ex(int64_t in_channels, int64_t out_channels,
                                             int kernel_h, int kernel_w, int stride_h,
                                             int stride_w, int pad_h, int pad_w,
                                             int output_pad_h, int output_pad_w,
                                             int dilation_h, int dilation_w, int groups,
                                             bool bias);
/* Max pooling, square window (stride >= 1; PyTorch's default is the kernel). */
NN_API nn_module *nn_max_pool2d_new(int kernel_size, int stride, int padding);
NN_API nn_module *nn_max_pool2d_new_ex(int kernel_h, int kernel_w, int stride_h, int stride_w,
                                       int pad_h, int pad_w, int dilation_h, int dilation_w,
                                       bool ceil_mode);
/* Average pooling, square window (count_include_pad true like PyTorch). */
NN_API nn_module *nn_avg_pool2d_new(int kernel_size, int stride, int padding);
NN_API nn_module *nn_avg_pool2d_new_ex(int kernel_h, int kernel_w, int stride_h, int stride_w,
                                       int pad_h, int pad_w, bool ceil_mode,
                                       bool count_include_pad);
/* Average pooling to a fixed output size. */
NN_API nn_module *nn_adaptive_avg_pool2d_new(int64_t out_h, int64_t out_w);
/* Merge dims start_dim..end_dim (PyTorch's default: 1, -1). */
NN_API nn_module *nn_flatten_new(int start_dim, int end_dim);
/* Zero elements with probability p in training (identity in eval). The
 * module owns a generator, seeded from the default generator at creation. */
NN_API nn_module *nn_dropout_new(double p);
/* Reseed a Dropout module's own generator. */
NN_API nn_status nn_dropout_seed(nn_module *dropout, uint64_t seed);
/* Batch normalisation over x [N, C] or [N, C, L] (1d) / [N, C, H, W] (2d).
 * Parameters weight, bias (if affine); buffers running_mean, running_var and
 * num_batches_tracked (i64, counted in training). PyTorch defaults:
 * eps 1e-5, momentum 0.1, affine true. */
NN_API nn_module *nn_batch_norm1d_new(int64_t num_features, double eps, double momentum,
                                      bool affine);
NN_API nn_module *nn_batch_norm2d_new(int64_t num_features, double eps, double momentum,
                                      bool affine);
/* Normalise over the last ndim dims, which must equal shape (ndim 1..8). */
NN_API nn_module *nn_layer_norm_new(const int64_t *shape, int ndim, double eps,
                                    bool elementwise_affine);
/* Group normalisation of x [N, C, *], C = num_channels divisible by groups. */
NN_API nn_module *nn_group_norm_new(int groups, int64_t num_channels, double eps, bool affine);
/* Lookup table weight [num, dim]; input i64 indices of any shape. */
NN_API nn_module *nn_embedding_new(int64_t num_embeddings, int64_t embedding_dim);

/* --- recurrent layers (batch_first: x [N, T, input_size]) -------------------- */

typedef enum nn_rnn_nonlinearity {
    NN_RNN_NONLINEARITY_TANH = 0,
    NN_RNN_NONLINEARITY_RELU = 1
} nn_rnn_nonlinearity;

/* Elman RNN, LSTM and GRU with PyTorch's gate order (LSTM i,f,g,o; GRU r,z,n)
 * and parameter names weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>,
 * bias_hh_l<k>. nn_module_forward returns the output sequence [N, T, H]
 * from zero initial states. */
NN_API nn_module *nn_rnn_new(int64_t input_size, int64_t hidden_size, int num_layers,
                             nn_rnn_nonlinearity nonlinearity, bool bias);
NN_API nn_module *nn_lstm_new(int64_t input_size, int64_t hidden_size, int num_layers, bool bias);
NN_API nn_module *nn_gru_new(int64_t input_size, int64_t hidden_size, int num_layers, bool bias);
/* Run an RNN/LSTM/GRU with optional initial states h0 (and c0, LSTM only),
 * each [num_layers, N, H] (NULL: zeros). Returns the output [N, T, H];
 * *h_n and *c_n (if the pointers are non-NULL; c_n LSTM only) receive the
 * final states [num_layers, N, H]. All results are tracked like op results. */
NN_API nn_tensor *nn_recurrent_forward(nn_module *m, nn_tensor *x, nn_tensor *h0, nn_tensor *c0,
                                       nn_tensor **h_n, nn_tensor **c_n);

/* --- activations and simple layers as modules ------------------------------ */

NN_API nn_module *nn_relu_new(void);
NN_API nn_module *nn_leaky_relu_new(double negative_slope);
NN_API nn_module *nn_elu_new(double alpha);
NN_API nn_module *nn_gelu_new(bool tanh_approx);
NN_API nn_module *nn_silu_new(void);
NN_API nn_module *nn_sigmoid_new(void);
NN_API nn_module *nn_tanh_new(void);
NN_API nn_module *nn_softplus_new(double beta, double threshold);
NN_API nn_module *nn_hardtanh_new(double min_val, double max_val);
NN_API nn_module *nn_softmax_new(int dim);
NN_API nn_module *nn_log_softmax_new(int dim);
/* Returns its input (a new reference to the same tensor). */
NN_API nn_module *nn_identity_new(void);

/* ====================================================================== */
/*  Initialisation (in place, under no-grad; f32 tensors)                 */
/* ====================================================================== */
/* g: the generator to draw from (NULL: this thread's default generator).
 * Fans follow PyTorch: fan_in = size(1) * receptive field, fan_out =
 * size(0) * receptive field (tensors of 2 dims or more). */

typedef enum nn_fan_mode { NN_FAN_MODE_IN = 0, NN_FAN_MODE_OUT = 1 } nn_fan_mode;

typedef enum nn_nonlinearity {
    NN_NONLINEARITY_LINEAR = 0, /* also conv and sigmoid: gain 1 */
    NN_NONLINEARITY_SIGMOID = 1,
    NN_NONLINEARITY_TANH = 2,   /* 5/3 */
    NN_NONLINEARITY_RELU = 3,   /* sqrt(2) */
    NN_NONLINEARITY_LEAKY_RELU = 4, /* sqrt(2 / (1 + param^2)) */
    NN_NONLINEARITY_SELU = 5    /* 3/4 */
} nn_nonlinearity;

/* PyTorch's calculate_gain (param: the leaky_relu slope). NaN if unknown. */
NN_API double nn_init_calculate_gain(nn_nonlinearity nonlinearity, double param);
NN_API nn_status nn_init_uniform(nn_tensor *t, double low, double high, nn_generator *g);
NN_API nn_status nn_init_normal(nn_tensor *t, double mean, double std, nn_generator *g);
NN_API nn_status nn_init_constant(nn_tensor *t, double value);
NN_API nn_status nn_init_zeros(nn_tensor *t);
NN_API nn_status nn_init_ones(nn_tensor *t);
/* U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)). */
NN_API nn_status nn_init_xavier_uniform(nn_tensor *t, double gain, nn_generator *g);
/* N(0, gain * sqrt(2 / (fan_in + fan_out))). */
NN_API nn_status nn_init_xavier_normal(nn_tensor *t, double gain, nn_generator *g);
/* U(-b, b), b = gain(nonlinearity, a) * sqrt(3 / fan(mode)). */
NN_API nn_status nn_init_kaiming_uniform(nn_tensor *t, double a, nn_fan_mode mode,
                                         nn_nonlinearity nonlinearity, nn_generator *g);
/* N(0, gain(nonlinearity, a) / sqrt(fan(mode))). */
NN_API nn_status nn_init_kaiming_normal(nn_tensor *t, double a, nn_fan_mode mode,
                                        nn_nonlinearity nonlinearity, nn_generator *g);
/* A (semi-)orthogonal matrix times gain, over t viewed as [size(0), rest]
 * (Householder QR of a normal matrix, signs fixed like PyTorch). */
NN_API nn_status nn_init_orthogonal(nn_tensor *t, double gain, nn_generator *g);

#endif
