/*
 * libnn — an embeddable C library for building, training, saving and
 * embedding neural networks.
 *
 * This header is the whole contract. It is ordered simplest-first:
 *   1. version, status codes, errors, runtime settings
 *   2. tensors (create, read, write) and random generators
 *   3. scopes (the memory rule for chained calls)
 *   4. autograd
 *   5. ops (elementwise, activations, reductions, linear algebra, shape,
 *      convolution, pooling, normalization, comparisons)
 *   6. modules, losses, optimizers, schedules, data, model files
 *
 * Ownership, in one sentence: every function that returns a handle gives the
 * caller a new reference, released with the matching `_free` (NULL-safe),
 * unless a scope is open on the calling thread, in which case the scope owns
 * that reference and `nn_scope_end` releases it; getters only borrow.
 *
 * Errors: functions returning `nn_status` return NN_OK (0) or a negative
 * code; functions returning a handle return NULL on error. Either way
 * `nn_last_error()` holds a message naming the function and the offending
 * values. An op handed a NULL tensor returns NULL and keeps the first error,
 * so a chain of calls reports its root cause.
 *
 * Threads: error state, grad mode and scopes are per thread. A tensor may be
 * read from many threads at once; it must not be written (fill, set, an
 * optimizer step, backward into it) while another thread uses it.
 */
#ifndef NN_H
#define NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================== */
/*  Version                                                               */
/* ====================================================================== */

#define NN_VERSION_MAJOR 0
#define NN_VERSION_MINOR 1
#define NN_VERSION_PATCH 0

#if defined(_WIN32) && defined(NN_BUILDING_DLL)
#define NN_API __declspec(dllexport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define NN_API __attribute__((visibility("default")))
#else
#define NN_API
#endif

/* The library version as "MAJOR.MINOR.PATCH"; a static string. */
NN_API const char *nn_version(void);

/* ====================================================================== */
/*  Status codes (pinned: values never change, new codes are appended)    */
/* ====================================================================== */

typedef enum nn_status {
    NN_OK = 0,
    NN_ERR_NOMEM = -1,       /* an allocation failed */
    NN_ERR_NULL = -2,        /* a required pointer argument was NULL */
    NN_ERR_INVALID = -3,     /* an argument value is outside its domain */
    NN_ERR_SHAPE = -4,       /* shapes are incompatible or malformed */
    NN_ERR_DTYPE = -5,       /* a dtype is unsupported for this operation */
    NN_ERR_OVERFLOW = -6,    /* a size computation would overflow */
    NN_ERR_RANGE = -7,       /* an index or dimension is out of range */
    NN_ERR_STATE = -8,       /* the object is in the wrong state for this call */
    NN_ERR_IO = -9,          /* reading or writing a file or stream failed */
    NN_ERR_FORMAT = -10,     /* malformed file or data */
    NN_ERR_CHECKSUM = -11,   /* a CRC-32 did not match */
    NN_ERR_VERSION = -12,    /* a file from an unsupported (future) version */
    NN_ERR_TRUNCATED = -13,  /* the data ended before the structure did */
    NN_ERR_UNSUPPORTED = -14,/* valid but not supported by this build */
    NN_ERR_NOT_FOUND = -15,  /* a named item (file, parameter, key) is missing */
    NN_ERR_BAD_HANDLE = -16, /* a handle that is freed or of the wrong kind */
    NN_ERR_NO_GRAD = -17,    /* a gradient was needed and is absent */
    NN_ERR_LIMIT = -18       /* a documented limit was exceeded */
} nn_status;

/* A static, human-readable name for a status code ("NN_ERR_SHAPE: ..."). */
NN_API const char *nn_status_string(nn_status status);

/* The message of the last error on this thread ("" if none); borrowed,
 * valid until the next libnn call on this thread. */
NN_API const char *nn_last_error(void);

/* The code of the last error on this thread (NN_OK if none). */
NN_API nn_status nn_last_status(void);

/* Forget the last error on this thread. */
NN_API void nn_clear_error(void);

/* ====================================================================== */
/*  Runtime: allocator hook, memory, threads                              */
/* ====================================================================== */

typedef void *(*nn_malloc_fn)(size_t size, void *user);
typedef void *(*nn_realloc_fn)(void *ptr, size_t size, void *user);
typedef void (*nn_free_fn)(void *ptr, void *user);

/* Route every allocation of the library through these functions (all three
 * NULL restores malloc/realloc/free). Install it before creating objects:
 * memory is returned to the hook that was installed when it was freed. */
NN_API nn_status nn_set_allocator(nn_malloc_fn malloc_fn, nn_realloc_fn realloc_fn,
                                  nn_free_fn free_fn, void *user);

/* Release memory the library returned to the caller (strings, reports).
 * NULL is a no-op. */
NN_API void nn_free(void *ptr);

/* Set the number of threads libnn (and BLIS, when built with it) may use;
 * n >= 1. The default is 1; the environment is never read. */
NN_API nn_status nn_set_num_threads(int n);

/* The current thread count setting. */
NN_API int nn_get_num_threads(void);

/* ====================================================================== */
/*  Tensors                                                               */
/* ====================================================================== */

/* Values are pinned; the gaps are reserved for future dtypes. */
typedef enum nn_dtype {
    NN_DTYPE_F32 = 0, /* 32-bit float: the compute type */
    NN_DTYPE_F64 = 1, /* reserved */
    NN_DTYPE_F16 = 2, /* reserved */
    NN_DTYPE_BF16 = 3,/* reserved */
    NN_DTYPE_I64 = 4, /* labels and indices */
    NN_DTYPE_I32 = 5, /* reserved */
    NN_DTYPE_I8 = 6,  /* reserved */
    NN_DTYPE_U8 = 7   /* raw images and boolean masks (0 or 1) */
} nn_dtype;

/* Maximum number of dimensions of a tensor. */
#define NN_MAX_DIMS 8

typedef struct nn_tensor nn_tensor;
typedef struct nn_generator nn_generator;

/* Size in bytes of one element of dtype (0 for reserved dtypes). */
NN_API size_t nn_dtype_size(nn_dtype dtype);

/* A static name for dtype ("f32", "i64", "u8", ...). */
NN_API const char *nn_dtype_name(nn_dtype dtype);

/* --- creation (each returns a new, contiguous tensor; data is 64-byte aligned) --- */

/* Uninitialised tensor of the given shape (ndim 0..8; ndim 0 is a scalar). */
NN_API nn_tensor *nn_tensor_empty(nn_dtype dtype, const int64_t *shape, int ndim);
/* Tensor filled with zeros. */
NN_API nn_tensor *nn_tensor_zeros(nn_dtype dtype, const int64_t *shape, int ndim);
/* Tensor filled with ones. */
NN_API nn_tensor *nn_tensor_ones(nn_dtype dtype, const int64_t *shape, int ndim);
/* Tensor filled with value (converted to dtype). */
NN_API nn_tensor *nn_tensor_full(nn_dtype dtype, const int64_t *shape, int ndim, double value);
/* 1-D tensor start, start+step, ... (< end for step > 0, > end for step < 0). */
NN_API nn_tensor *nn_arange(double start, double end, double step, nn_dtype dtype);
/* 1-D f32 tensor of `steps` evenly spaced values from start to end inclusive. */
NN_API nn_tensor *nn_linspace(double start, double end, int64_t steps);
/* Tensor holding a copy of `data` (numel * element size bytes, row-major). */
NN_API nn_tensor *nn_tensor_from_data(nn_dtype dtype, const int64_t *shape, int ndim,
                                      const void *data);

/* Called when the last reference to a wrapped buffer goes away. */
typedef void (*nn_deleter_fn)(void *data, void *user);

/* Tensor that wraps caller memory without a copy. The memory must stay valid
 * until the last tensor sharing it is freed; then `deleter(data, user)` is
 * called if it is non-NULL. data needs the natural alignment of dtype. */
NN_API nn_tensor *nn_tensor_from_blob(nn_dtype dtype, const int64_t *shape, int ndim,
                                      void *data, nn_deleter_fn deleter, void *user);

/* Add a reference to t (t itself is returned; NULL-safe). */
NN_API nn_tensor *nn_tensor_retain(nn_tensor *t);
/* Drop a reference to t; the last one frees it. NULL is a no-op. Inside a
 * scope, do not free the references the scope owns. */
NN_API void nn_tensor_free(nn_tensor *t);

/* --- random generators ----------------------------------------------------
 * xoshiro256** seeded through splitmix64, the same bits on every platform.
 * Uniform floats take the top 24 bits (f32) / 53 bits (f64) of each draw;
 * normals use Box-Muller on two doubles. A generator must not be used from
 * two threads at once. Functions below take NULL to mean the default
 * generator (seed 0 until nn_generator_seed(NULL, s)), which is per thread. */

NN_API nn_generator *nn_generator_new(uint64_t seed);
NN_API void nn_generator_free(nn_generator *g);
/* Reset g (NULL: this thread's default generator) to a seed. */
NN_API nn_status nn_generator_seed(nn_generator *g, uint64_t seed);
/* Copy out / restore the full state (4 words), for checkpoints. */
NN_API nn_status nn_generator_get_state(const nn_generator *g, uint64_t state[4]);
NN_API nn_status nn_generator_set_state(nn_generator *g, const uint64_t state[4]);
/* Next raw 64-bit draw. */
NN_API uint64_t nn_generator_next(nn_generator *g);

/* f32 uniform in [0, 1). */
NN_API nn_tensor *nn_rand(nn_generator *g, const int64_t *shape, int ndim);
/* f32 standard normal. */
NN_API nn_tensor *nn_randn(nn_generator *g, const int64_t *shape, int ndim);
/* f32 uniform in [low, high). */
NN_API nn_tensor *nn_uniform(nn_generator *g, const int64_t *shape, int ndim,
                             double low, double high);
/* f32 normal with the given mean and standard deviation (std >= 0). */
NN_API nn_tensor *nn_normal(nn_generator *g, const int64_t *shape, int ndim,
                            double mean, double std);
/* f32 tensor of 1 with probability p, else 0 (0 <= p <= 1). */
NN_API nn_tensor *nn_bernoulli(nn_generator *g, const int64_t *shape, int ndim, double p);
/* i64 random permutation of 0..n-1 (Fisher-Yates). */
NN_API nn_tensor *nn_randperm(nn_generator *g, int64_t n);

/* --- reading and writing --------------------------------------------------- */

/* Number of dimensions (-1 on a NULL tensor). */
NN_API int nn_tensor_ndim(const nn_tensor *t);
/* The shape array (ndim entries); borrowed, valid while t lives. */
NN_API const int64_t *nn_tensor_shape(const nn_tensor *t);
/* Size of dimension dim (negative dims count from the end); -1 on error. */
NN_API int64_t nn_tensor_size(const nn_tensor *t, int dim);
/* Number of elements (-1 on NULL). */
NN_API int64_t nn_tensor_numel(const nn_tensor *t);
/* The dtype. */
NN_API nn_dtype nn_tensor_dtype(const nn_tensor *t);
/* True when the elements are laid out densely in row-major order. */
NN_API bool nn_tensor_is_contiguous(const nn_tensor *t);
/* Pointer to the first element of a contiguous tensor (NULL and
 * NN_ERR_STATE if not contiguous: use nn_tensor_contiguous first). Writes
 * through it are visible to every view sharing the data. */
NN_API void *nn_tensor_data(nn_tensor *t);
/* The contiguous tensor itself (a new reference) or a contiguous copy. */
NN_API nn_tensor *nn_tensor_contiguous(nn_tensor *t);
/* Copy the elements, row-major, into dst (nbytes must be >= numel * size). */
NN_API nn_status nn_tensor_copy_to(const nn_tensor *t, void *dst, size_t nbytes);
/* Copy numel elements of t's dtype from src into t (row-major). */
NN_API nn_status nn_tensor_copy_from(nn_tensor *t, const void *src, size_t nbytes);
/* The value of a one-element tensor, as a double (NaN and an error otherwise). */
NN_API double nn_tensor_item(const nn_tensor *t);
/* Read / write one element at index idx (ndim entries, negatives allowed). */
NN_API nn_status nn_tensor_get(const nn_tensor *t, const int64_t *idx, double *out);
NN_API nn_status nn_tensor_set(nn_tensor *t, const int64_t *idx, double value);
/* Set every element to value. */
NN_API nn_status nn_tensor_fill(nn_tensor *t, double value);
/* Copy every element of src into t (same shape; dtype converted). */
NN_API nn_status nn_tensor_assign(nn_tensor *t, const nn_tensor *src);
/* A contiguous copy with its own data (not part of any graph). */
NN_API nn_tensor *nn_tensor_clone(const nn_tensor *t);
/* A copy converted to dtype (float to integer truncates toward zero). */
NN_API nn_tensor *nn_tensor_to(const nn_tensor *t, nn_dtype dtype);
/* True when shapes, dtypes and every element are equal. */
NN_API bool nn_tensor_equal(const nn_tensor *a, const nn_tensor *b);
/* True when shapes match and |a-b| <= atol + rtol*|b| elementwise. */
NN_API bool nn_tensor_allclose(const nn_tensor *a, const nn_tensor *b, double rtol, double atol);
/* A printable description: shape, dtype and values (at most max_items per
 * dimension, the rest elided). Free with nn_free. */
NN_API char *nn_tensor_format(const nn_tensor *t, int max_items);
/* Print nn_tensor_format(t, 6) and a newline to stdout. */
NN_API nn_status nn_tensor_print(const nn_tensor *t);

/* ====================================================================== */
/*  Scopes: the memory rule for chained calls                             */
/* ====================================================================== */
/*
 * While a scope is open on a thread, every tensor returned to the caller on
 * that thread belongs to the innermost scope, and nn_scope_end releases them
 * all. Keep a tensor beyond the scope with nn_tensor_retain (then free it
 * yourself). Without a scope, free what you get.
 *
 *     nn_scope *s = nn_scope_begin();
 *     nn_tensor *y = nn_relu(nn_add(nn_matmul(x, w), b));   // no leaks
 *     ...
 *     nn_scope_end(s);
 */

typedef struct nn_scope nn_scope;

/* Open a scope on this thread (NULL on out-of-memory). */
NN_API nn_scope *nn_scope_begin(void);
/* Release every reference the scope (and scopes opened inside it and not yet
 * ended) owns, and close it. NULL is a no-op. */
NN_API nn_status nn_scope_end(nn_scope *scope);

/* ====================================================================== */
/*  Autograd                                                              */
/* ====================================================================== */
/*
 * Define-by-run: every op whose input requires a gradient records a node
 * (when grad mode is on) and its result holds references to its inputs, so
 * freeing order never matters; freeing the last reference to a result frees
 * its graph. nn_backward accumulates (+=) into the .grad of leaf tensors.
 * After backward the graph's saved data is released: a second backward
 * through it fails with NN_ERR_STATE unless retain_graph was set.
 */

/* Mark a floating-point tensor as a leaf that needs a gradient. */
NN_API nn_status nn_tensor_set_requires_grad(nn_tensor *t, bool requires_grad);
NN_API bool nn_tensor_requires_grad(const nn_tensor *t);
/* True for tensors not produced by a recorded op. */
NN_API bool nn_tensor_is_leaf(const nn_tensor *t);
/* The accumulated gradient (borrowed; NULL if none yet). */
NN_API nn_tensor *nn_tensor_grad(const nn_tensor *t);
/* Drop the accumulated gradient (the next backward starts from zero). */
NN_API nn_status nn_tensor_zero_grad(nn_tensor *t);
/* A tensor sharing t's data but outside the graph (requires_grad false). */
NN_API nn_tensor *nn_detach(nn_tensor *t);
/* Backpropagate from a one-element tensor (seed 1). */
NN_API nn_status nn_backward(nn_tensor *loss);
/* Backpropagate from any tensor with a seed gradient of the same shape
 * (seed NULL is allowed only for one element). retain_graph keeps the graph
 * usable for another backward. */
NN_API nn_status nn_backward_ex(nn_tensor *t, const nn_tensor *seed, bool retain_graph);
/* Turn recording on or off for this thread; returns the previous setting. */
NN_API bool nn_set_grad_enabled(bool enabled);
/* Whether recording is on for this thread (on by default). */
NN_API bool nn_is_grad_enabled(void);

/* ====================================================================== */
/*  Ops                                                                   */
/* ====================================================================== */
/* Each op returns a new tensor (NULL on error). Ops are f32 unless stated.
 * Binary elementwise ops broadcast like NumPy. Negative dims count from the
 * end. Views (reshape of contiguous data, slice, transpose, permute, squeeze,
 * unsqueeze, expand, flatten, detach) share data with their input; every
 * other op returns fresh data. */

/* --- elementwise ---------------------------------------------------------- */
NN_API nn_tensor *nn_add(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_sub(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_mul(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_div(nn_tensor *a, nn_tensor *b);
/* a ** b elementwise (a > 0 where b is not an integer). */
NN_API nn_tensor *nn_pow(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_minimum(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_maximum(nn_tensor *a, nn_tensor *b);
/* cond ? a : b, with cond a u8 mask; all three broadcast. */
NN_API nn_tensor *nn_where(nn_tensor *cond, nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_add_scalar(nn_tensor *a, double s);
NN_API nn_tensor *nn_mul_scalar(nn_tensor *a, double s);
NN_API nn_tensor *nn_pow_scalar(nn_tensor *a, double exponent);
NN_API nn_tensor *nn_neg(nn_tensor *a);
NN_API nn_tensor *nn_exp(nn_tensor *a);
NN_API nn_tensor *nn_log(nn_tensor *a);
NN_API nn_tensor *nn_sqrt(nn_tensor *a);
NN_API nn_tensor *nn_rsqrt(nn_tensor *a);
NN_API nn_tensor *nn_abs(nn_tensor *a);
/* min(max(a, lo), hi); gradient 1 strictly inside [lo, hi]. */
NN_API nn_tensor *nn_clamp(nn_tensor *a, double lo, double hi);

/* --- activations ------------------------------------------------------------ */
NN_API nn_tensor *nn_relu(nn_tensor *a);
NN_API nn_tensor *nn_leaky_relu(nn_tensor *a, double negative_slope);
NN_API nn_tensor *nn_elu(nn_tensor *a, double alpha);
/* GELU: exact erf form, or the tanh approximation when tanh_approx. */
NN_API nn_tensor *nn_gelu(nn_tensor *a, bool tanh_approx);
NN_API nn_tensor *nn_silu(nn_tensor *a);
NN_API nn_tensor *nn_sigmoid(nn_tensor *a);
NN_API nn_tensor *nn_tanh(nn_tensor *a);
/* log(1 + exp(beta x)) / beta, linear where beta x > threshold. */
NN_API nn_tensor *nn_softplus(nn_tensor *a, double beta, double threshold);
NN_API nn_tensor *nn_hardtanh(nn_tensor *a, double min_val, double max_val);
/* Numerically stable softmax / log-softmax along dim. */
NN_API nn_tensor *nn_softmax(nn_tensor *a, int dim);
NN_API nn_tensor *nn_log_softmax(nn_tensor *a, int dim);

/* --- reductions (dims: ndims entries; ndims 0 reduces over all elements) ---- */
NN_API nn_tensor *nn_sum(nn_tensor *a, const int *dims, int ndims, bool keepdim);
NN_API nn_tensor *nn_mean(nn_tensor *a, const int *dims, int ndims, bool keepdim);
/* Variance with `correction` (1: unbiased, 0: population). */
NN_API nn_tensor *nn_var(nn_tensor *a, const int *dims, int ndims, int correction, bool keepdim);
NN_API nn_tensor *nn_std(nn_tensor *a, const int *dims, int ndims, int correction, bool keepdim);
/* Largest / smallest values over dims (gradient flows to the first max). */
NN_API nn_tensor *nn_amax(nn_tensor *a, const int *dims, int ndims, bool keepdim);
NN_API nn_tensor *nn_amin(nn_tensor *a, const int *dims, int ndims, bool keepdim);
/* Max / min along one dim: values, and (if indices != NULL) the i64 indices
 * in *indices (a new reference, owned like any result). */
NN_API nn_tensor *nn_max(nn_tensor *a, int dim, bool keepdim, nn_tensor **indices);
NN_API nn_tensor *nn_min(nn_tensor *a, int dim, bool keepdim, nn_tensor **indices);
/* i64 index of the largest / smallest element along dim (any dtype). */
NN_API nn_tensor *nn_argmax(nn_tensor *a, int dim, bool keepdim);
NN_API nn_tensor *nn_argmin(nn_tensor *a, int dim, bool keepdim);

/* --- linear algebra -------------------------------------------------------- */
/* torch.matmul semantics: 1-D, 2-D and batched with broadcast batch dims. */
NN_API nn_tensor *nn_matmul(nn_tensor *a, nn_tensor *b);
/* x [*, in] · w[out, in]ᵀ + b[out] (b may be NULL). */
NN_API nn_tensor *nn_linear(nn_tensor *x, nn_tensor *w, nn_tensor *b);
NN_API nn_tensor *nn_transpose(nn_tensor *a, int dim0, int dim1);
NN_API nn_tensor *nn_permute(nn_tensor *a, const int *perm, int ndims);

/* --- shape ----------------------------------------------------------------- */
/* New shape with the same numel; one entry may be -1 (inferred). A view when
 * a is contiguous, else a copy. */
NN_API nn_tensor *nn_reshape(nn_tensor *a, const int64_t *shape, int ndim);
/* Merge dims start..end (inclusive) into one. */
NN_API nn_tensor *nn_flatten(nn_tensor *a, int start_dim, int end_dim);
/* Remove dim if its size is 1 (a no-op view otherwise). */
NN_API nn_tensor *nn_squeeze(nn_tensor *a, int dim);
/* Insert a size-1 dim at position dim (0..ndim). */
NN_API nn_tensor *nn_unsqueeze(nn_tensor *a, int dim);
/* Broadcast size-1 dims to shape (a view; -1 keeps a size). */
NN_API nn_tensor *nn_expand(nn_tensor *a, const int64_t *shape, int ndim);
/* Join n tensors along an existing dim / a new dim. */
NN_API nn_tensor *nn_concat(nn_tensor *const *ts, int n, int dim);
NN_API nn_tensor *nn_stack(nn_tensor *const *ts, int n, int dim);
/* Elements start, start+step, ... < stop along dim (step >= 1; start and
 * stop are clamped like Python slices, negatives count from the end). */
NN_API nn_tensor *nn_slice(nn_tensor *a, int dim, int64_t start, int64_t stop, int64_t step);
/* Entries of a along dim at the positions in the 1-D i64 tensor index. */
NN_API nn_tensor *nn_index_select(nn_tensor *a, int dim, nn_tensor *index);
/* out[i][j] = a[index[i][j]][j] for dim 0, etc. (index i64, same ndim). */
NN_API nn_tensor *nn_gather(nn_tensor *a, int dim, nn_tensor *index);
/* Constant padding: pads = {last_lo, last_hi, prev_lo, prev_hi, ...}
 * (npads even, <= 2*ndim), like torch.nn.functional.pad. */
NN_API nn_tensor *nn_pad(nn_tensor *a, const int64_t *pads, int npads, double value);

/* --- convolution and pooling (NCHW; weights [out, in/groups, kh, kw]) ------ */
NN_API nn_tensor *nn_conv2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride_h,
                            int stride_w, int pad_h, int pad_w, int dilation_h,
                            int dilation_w, int groups);
/* x [N, C, L], w [out, in/groups, k]. */
NN_API nn_tensor *nn_conv1d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int pad,
                            int dilation, int groups);
/* w [in, out/groups, kh, kw], like torch.nn.functional.conv_transpose2d. */
NN_API nn_tensor *nn_conv_transpose2d(nn_tensor *x, nn_tensor *w, nn_tensor *b,
                                      int stride_h, int stride_w, int pad_h, int pad_w,
                                      int output_pad_h, int output_pad_w, int dilation_h,
                                      int dilation_w, int groups);
/* Max pooling; if indices != NULL, *indices receives i64 flat h*w positions. */
NN_API nn_tensor *nn_max_pool2d(nn_tensor *x, int kernel_h, int kernel_w, int stride_h,
                                int stride_w, int pad_h, int pad_w, int dilation_h,
                                int dilation_w, bool ceil_mode, nn_tensor **indices);
NN_API nn_tensor *nn_avg_pool2d(nn_tensor *x, int kernel_h, int kernel_w, int stride_h,
                                int stride_w, int pad_h, int pad_w, bool ceil_mode,
                                bool count_include_pad);
NN_API nn_tensor *nn_adaptive_avg_pool2d(nn_tensor *x, int64_t out_h, int64_t out_w);
NN_API nn_tensor *nn_adaptive_max_pool2d(nn_tensor *x, int64_t out_h, int64_t out_w,
                                         nn_tensor **indices);

/* --- normalization and regularization ------------------------------------- */
/* x [N, C, *]. In training, normalise with batch statistics and update
 * running_mean/var in place (momentum like PyTorch); in eval, use them.
 * running stats, weight and bias may be NULL. */
NN_API nn_tensor *nn_batch_norm(nn_tensor *x, nn_tensor *running_mean, nn_tensor *running_var,
                                nn_tensor *weight, nn_tensor *bias, bool training,
                                double momentum, double eps);
/* Normalise over the last n dims (normalized_shape); weight/bias may be NULL. */
NN_API nn_tensor *nn_layer_norm(nn_tensor *x, const int64_t *normalized_shape, int n,
                                nn_tensor *weight, nn_tensor *bias, double eps);
/* x [N, C, *] in `groups` groups of channels; weight/bias [C] may be NULL. */
NN_API nn_tensor *nn_group_norm(nn_tensor *x, int groups, nn_tensor *weight, nn_tensor *bias,
                                double eps);
/* Zero each element with probability p and scale the rest by 1/(1-p) when
 * training; identity otherwise. g NULL: default generator. */
NN_API nn_tensor *nn_dropout(nn_tensor *x, double p, bool training, nn_generator *g);
/* Rows of weight [num, dim] at the i64 indices (any shape) -> [*, dim]. */
NN_API nn_tensor *nn_embedding(nn_tensor *weight, nn_tensor *indices);

/* --- comparisons (any dtype, broadcast; u8 mask of 0/1) -------------------- */
NN_API nn_tensor *nn_eq(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_ne(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_lt(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_le(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_gt(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_ge(nn_tensor *a, nn_tensor *b);

/* NN_SECTIONS: later sections are appended below this line. */
/* ====================================================================== */
/*  Handles used by the sections below                                    */
/* ====================================================================== */

typedef struct nn_module nn_module;       /* a layer or a container of layers */
typedef struct nn_statedict nn_statedict; /* an ordered name -> tensor map */
typedef struct nn_optim nn_optim;         /* an optimizer */
typedef struct nn_sched nn_sched;         /* a learning-rate schedule */
typedef struct nn_dataset nn_dataset;     /* indexed samples (x, y) */
typedef struct nn_loader nn_loader;       /* batches over a dataset */
typedef struct nn_model nn_model;         /* a loaded model file: module + metadata */

/* How a loss reduces over elements. */
typedef enum nn_reduction {
    NN_REDUCTION_NONE = 0,
    NN_REDUCTION_MEAN = 1,
    NN_REDUCTION_SUM = 2,
    NN_REDUCTION_BATCHMEAN = 3 /* KL divergence only: sum / batch size */
} nn_reduction;

/* ====================================================================== */
/*  State dicts: ordered name -> tensor maps                              */
/* ====================================================================== */

/* An empty map. */
NN_API nn_statedict *nn_statedict_new(void);
NN_API void nn_statedict_free(nn_statedict *sd);
/* Number of entries. */
NN_API int64_t nn_statedict_size(const nn_statedict *sd);
/* Name and tensor of entry i in insertion order (borrowed). */
NN_API const char *nn_statedict_name(const nn_statedict *sd, int64_t i);
NN_API nn_tensor *nn_statedict_tensor(const nn_statedict *sd, int64_t i);
/* Tensor stored under name (borrowed), or NULL + NN_ERR_NOT_FOUND. */
NN_API nn_tensor *nn_statedict_get(const nn_statedict *sd, const char *name);
/* Insert or replace name -> t (the map takes its own reference to t). */
NN_API nn_status nn_statedict_set(nn_statedict *sd, const char *name, nn_tensor *t);

#include "nn_part_module.h"
#include "nn_part_optim.h"
#include "nn_part_data.h"
#include "nn_part_io.h"
#include "nn_part_dist.h"


#ifdef __cplusplus
}
#endif

#endif /* NN_H */
