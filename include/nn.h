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
 * Misuse that is detected (an error code and a message, never a crash): a
 * NULL handle or pointer where one is required (NN_ERR_NULL), and a handle
 * of the wrong kind, e.g. a module passed as an optimizer (NN_ERR_BAD_HANDLE).
 * Misuse that is undefined behaviour, as with free() in C: using a handle
 * after the last reference to it was released (including a scope-owned
 * tensor after its `nn_scope_end`), releasing a reference twice, and passing
 * a pointer that libnn never returned. A freed handle is marked dead first,
 * so such bugs are often reported as NN_ERR_BAD_HANDLE, but that is a
 * diagnostic aid, not a promise: the memory may already be reused.
 *
 * Errors: functions returning `nn_status` return NN_OK (0) or a negative
 * code; functions returning a handle return NULL on error. Either way
 * `nn_last_error()` holds a message naming the function and the offending
 * values, until the next error or `nn_clear_error()`. The error of a failed
 * call stays *pending* until a later call on the same thread succeeds in
 * returning a tensor (or NN_OK from a tensor or autograd function): a
 * function handed a NULL argument while an error is pending returns NULL (or
 * that error's code) and keeps the error, so a chain such as
 * `nn_relu(nn_add(a, b))` reports its root cause; with nothing pending the
 * NULL itself is reported (NN_ERR_NULL), never an older, unrelated error.
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

/* The compute backend in use, as a static string: the ISA tier picked for
 * this CPU, the GEMM provider and the cache sizes its blocking planned for. */
NN_API const char *nn_backend_info(void);

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
    NN_ERR_LIMIT = -18,      /* a documented limit was exceeded */
    NN_ERR_SIGNATURE = -19,  /* a signature did not verify: the file or its signature was altered */
    NN_ERR_UNSIGNED = -20,   /* a signature was required and the file has none */
    NN_ERR_WRONG_KEY = -21,  /* signed with or encrypted for another key, or no key was given */
    NN_ERR_DECRYPT = -22,    /* authenticated decryption failed: the encrypted data was altered */
    NN_ERR_TIMEOUT = -23     /* a collective did not complete in time (another rank failed) */
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

/* ---- memory statistics ---------------------------------------------------
 * libnn counts the bytes it holds, by category, as it allocates them
 * (always on; a few relaxed atomic adds per allocation). Memory given to
 * libnn by the caller (nn_tensor_from_data) is not counted. */

/* Categories of memory (pinned values, new ones appended). */
typedef enum nn_mem_category {
    NN_MEM_PARAMETERS = 0,  /* module parameters and buffers */
    NN_MEM_GRADIENTS = 1,   /* .grad of leaf tensors */
    NN_MEM_OPTIMIZER = 2,   /* optimizer state (moments, momentum) */
    NN_MEM_ACTIVATIONS = 3, /* other tensors: activations, saved tensors, graph nodes */
    NN_MEM_BLOCK_CACHE = 4, /* freed large blocks kept for reuse */
    NN_MEM_DATA = 5,        /* datasets and loader batches */
    NN_MEM_OTHER = 6,       /* everything else: handles, names, packing buffers */
    NN_MEM_CATEGORIES = 7   /* the count (grows when categories are appended) */
} nn_mem_category;

/* Room for categories in nn_memory_stats_t (fixed: the struct never grows
 * for new categories). */
#define NN_MEM_CATEGORY_SLOTS 16

/* Current and peak bytes, by category (index with nn_mem_category) and in
 * total. Set `size` to sizeof(nn_memory_stats_t) before the call: a library
 * with a longer struct fills only that prefix, so fields appended later
 * never break an older caller. */
typedef struct nn_memory_stats_t {
    uint32_t size;        /* in: sizeof(nn_memory_stats_t); out: bytes filled */
    uint32_t ncategories; /* out: categories reported (NN_MEM_CATEGORIES) */
    uint64_t current_total, peak_total;
    uint64_t current[NN_MEM_CATEGORY_SLOTS];
    uint64_t peak[NN_MEM_CATEGORY_SLOTS]; /* each category's own peak */
} nn_memory_stats_t;

/* Fill *out (NN_ERR_NULL for NULL, NN_ERR_INVALID when out->size is too
 * small to hold the header). Thread-safe; figures are a consistent-enough
 * snapshot (each counter read once). */
NN_API nn_status nn_memory_stats(nn_memory_stats_t *out);
/* Make every peak equal to the current figure (to measure a phase). */
NN_API nn_status nn_memory_reset_peak(void);
/* "parameters", "gradients", ...; "unknown" outside 0..NN_MEM_CATEGORIES-1. */
NN_API const char *nn_memory_category_name(int category);

/* ====================================================================== */
/*  Tensors                                                               */
/* ====================================================================== */

/* Values are pinned; the gaps are reserved for future dtypes. f16, bf16 and
 * i8 are storage dtypes: tensors of them are created, viewed, copied,
 * converted (nn_tensor_to), read and written element-wise, saved and loaded;
 * Linear / Conv2d / Embedding weights and nn_matmul's right operand may be
 * f16 or bf16 (f32 activations, f32 accumulation). Every other op takes f32
 * and answers NN_ERR_DTYPE for them. */
typedef enum nn_dtype {
    NN_DTYPE_F32 = 0, /* 32-bit float: the compute type */
    NN_DTYPE_F64 = 1, /* reserved */
    NN_DTYPE_F16 = 2, /* IEEE binary16 (storage) */
    NN_DTYPE_BF16 = 3,/* bfloat16: f32's top 16 bits (storage) */
    NN_DTYPE_I64 = 4, /* labels and indices */
    NN_DTYPE_I32 = 5, /* reserved */
    NN_DTYPE_I8 = 6,  /* signed 8-bit integer (storage) */
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

/* Uninitialised tensor of the given shape (ndim 0..8; ndim 0 is a scalar).
 * NN_ERR_OVERFLOW when the element count times 8, or the product of the
 * non-zero sizes (the largest stride, even when another size is 0), would
 * not fit in int64_t; the same bound holds for every shape libnn accepts. */
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
/* A copy converted to dtype (float to integer truncates toward zero and
 * saturates; NaN gives 0). To f16 / bf16: round to nearest, ties to even;
 * overflow gives +-Inf, NaN stays NaN; f16 / bf16 to f32 is exact. */
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
/* nn_embedding whose row padding_idx (negative: from the end) gets no
 * gradient, like torch's F.embedding(padding_idx=); its output is still the row. */
NN_API nn_tensor *nn_embedding_padded(nn_tensor *weight, nn_tensor *indices, int64_t padding_idx);

/* --- comparisons (any dtype, broadcast; u8 mask of 0/1) -------------------- */
NN_API nn_tensor *nn_eq(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_ne(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_lt(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_le(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_gt(nn_tensor *a, nn_tensor *b);
NN_API nn_tensor *nn_ge(nn_tensor *a, nn_tensor *b);

/* --- attention and transformer ops ----------------------------------------- */
/* softmax(scale · q kᵀ + mask) v like torch's scaled_dot_product_attention:
 * q [*, Tq, D], k [*, Tk, D], v [*, Tk, Dv] -> [*, Tq, Dv] (batch dims *
 * broadcast). attn_mask (NULL: none) broadcasts to [*, Tq, Tk]: u8 (1 =
 * attend, 0 = hide) or f32 added to the scores (it gets a gradient).
 * is_causal hides key j from query i when j > i (top-left aligned, as
 * torch's tril(ones(Tq, Tk))); with a mask both apply. dropout_p > 0 drops
 * attention weights (pass 0 in eval) using one draw from g (NULL: default);
 * scale <= 0 means 1/sqrt(D). Computed in tiles: memory grows with T, not
 * T². A query that sees no key gives zeros (PyTorch gives NaN). */
NN_API nn_tensor *nn_scaled_dot_product_attention(nn_tensor *q, nn_tensor *k, nn_tensor *v,
                                                  nn_tensor *attn_mask, bool is_causal,
                                                  double dropout_p, double scale,
                                                  nn_generator *g);
/* Rotary position embedding, GPT-NeoX/LLaMA "rotate half" form, on x
 * [..., T, D]: with R = rotary_dim (0: D; even), h = R/2, angle_k = pos ·
 * base^(-2k/R): y[k] = x[k]cos - x[k+h]sin, y[k+h] = x[k+h]cos + x[k]sin;
 * features >= R pass through. pos = offset + (positions ? positions[row] :
 * t), positions i64 broadcast to x's shape without its last dim. */
NN_API nn_tensor *nn_rope(nn_tensor *x, nn_tensor *positions, int64_t offset, double base,
                          int64_t rotary_dim);
/* x / sqrt(mean(x²) + eps) · weight over the last n dims (normalized_shape);
 * weight (that shape) may be NULL. */
NN_API nn_tensor *nn_rms_norm(nn_tensor *x, const int64_t *normalized_shape, int n,
                              nn_tensor *weight, double eps);
NN_API nn_tensor *nn_sin(nn_tensor *a);
NN_API nn_tensor *nn_cos(nn_tensor *a);
/* x with value where the u8 mask (broadcast to x's shape) is 1; any dtype. */
NN_API nn_tensor *nn_masked_fill(nn_tensor *x, nn_tensor *mask, double value);
/* 1-D tensor of the elements of x where the u8 mask is 1 (both broadcast),
 * in row-major order; gradients flow back to x. */
NN_API nn_tensor *nn_masked_select(nn_tensor *x, nn_tensor *mask);
/* i64 [..., num_classes] with 1 at each i64 index (num_classes < 0: max + 1). */
NN_API nn_tensor *nn_one_hot(nn_tensor *indices, int64_t num_classes);
/* a OP s elementwise as a u8 mask of 0/1, like the tensor comparisons (f32
 * compares with s rounded to f32, i64 exactly). */
NN_API nn_tensor *nn_eq_scalar(nn_tensor *a, double s);
NN_API nn_tensor *nn_ne_scalar(nn_tensor *a, double s);
NN_API nn_tensor *nn_lt_scalar(nn_tensor *a, double s);
NN_API nn_tensor *nn_le_scalar(nn_tensor *a, double s);
NN_API nn_tensor *nn_gt_scalar(nn_tensor *a, double s);
NN_API nn_tensor *nn_ge_scalar(nn_tensor *a, double s);

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
/* Most inputs nn_module_forward_n passes on. */
#define NN_MODULE_MAX_INPUTS 16
/* Run m on inputs[0..n), PyTorch's module(*inputs): a single-input module
 * takes n == 1 (then it is nn_module_forward); MultiheadAttention takes
 * (query, key, value[, key_padding_mask[, attn_mask]]), the transformer
 * layers their own lists (see there). An optional input may be NULL
 * (absent), unless a pending error says the call that made it failed: then
 * that error is returned. A wrong n: NULL and NN_ERR_INVALID naming the
 * accepted range. Result tracked like nn_module_forward's. */
NN_API nn_tensor *nn_module_forward_n(nn_module *m, nn_tensor *const *inputs, int n);
/* The number of inputs m accepts: *min_inputs..*max_inputs (1..1 for a
 * single-input module). */
NN_API nn_status nn_module_num_inputs(const nn_module *m, int *min_inputs, int *max_inputs);
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
/* Convert the weights of every Linear, Conv2d and Embedding in m's tree to
 * dtype (NN_DTYPE_F16 or NN_DTYPE_BF16 for inference; NN_DTYPE_F32 converts
 * back): the 16-bit weights take half the memory and file bytes and are
 * read directly by batch-1 / GEMV products (f32 activations and sums).
 * Biases, norms, recurrent and attention weights and buffers stay f32;
 * tied weights stay tied. Half weights take no gradient (train in f32, then
 * convert); model files store them natively and nn_model_load rebuilds them.
 * NN_ERR_DTYPE for another dtype; on any error nothing changes. Not while
 * other threads run m. */
NN_API nn_status nn_module_convert(nn_module *m, nn_dtype dtype);
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
/* Multi-input forward of a user-defined module: inputs[0..n), 1 <= n <=
 * NN_MODULE_MAX_INPUTS, entries after the first may be NULL (absent). Same
 * scope rules as nn_forward_fn. */
typedef nn_tensor *(*nn_forward_n_fn)(nn_module *self, nn_tensor *const *inputs, int n,
                                      void *user);
/* Give a user-defined module a multi-input forward, run by
 * nn_module_forward_n (nn_module_forward keeps the one-input callback);
 * NULL removes it. User-defined modules only (NN_ERR_INVALID otherwise). */
NN_API nn_status nn_module_custom_set_forward_n(nn_module *m, nn_forward_n_fn forward_n);

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
/* A residual block: y = body(x) + shortcut(x), or body(x) + x when shortcut
 * is NULL (the skip connection of a ResNet block; put the activation after
 * it in a Sequential). Children "body" and "shortcut"; both outputs must
 * have one shape (NN_ERR_SHAPE at forward otherwise). Takes OVER the
 * caller's references to body and shortcut, also on failure; a NULL body
 * fails (keeping a failed constructor's error). Saved in model files and
 * exported to ONNX (an Add of the two branches). */
NN_API nn_module *nn_residual_new(nn_module *body, nn_module *shortcut);

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
 * final states [num_layers, N, H]. All results are tracked like op results.
 * (Layers from nn_recurrent_new: see there for the layouts.) */
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

/* --- sequence models and containers without a forward ------------------- */
/* Built-in kinds, so nn_model_load rebuilds them with no user code. */

/* x[..., index, ...] along dim, the dim removed (PyTorch's x.select(dim,
 * index), e.g. x[:, -1]); negative dim and index count from the end. An
 * index out of range for the input fails in forward (NN_ERR_RANGE). */
NN_API nn_module *nn_select_new(int dim, int64_t index);
/* PyTorch's ModuleList: children named "0", "1", ...; nn_module_forward on
 * it fails (NN_ERR_UNSUPPORTED): run its children. */
NN_API nn_module *nn_module_list_new(void);
/* Append child. Takes OVER the caller's reference, also on failure. */
NN_API nn_status nn_module_list_append(nn_module *list, nn_module *child);
/* PyTorch's ModuleDict: children under keys (no '.'), in insertion order; no
 * forward of its own, like ModuleList. */
NN_API nn_module *nn_module_dict_new(void);
/* Put child under key, replacing (and releasing) the child already there.
 * Takes OVER the caller's reference, also on failure. */
NN_API nn_status nn_module_dict_set(nn_module *dict, const char *key, nn_module *child);
/* Number of direct children of any module (-1 on error). */
NN_API int64_t nn_module_num_children(const nn_module *m);
/* Direct child i (borrowed; negative i counts from the end) and, if name !=
 * NULL, its name (borrowed); NULL + NN_ERR_RANGE out of range. By name:
 * nn_module_get_module. */
NN_API nn_module *nn_module_child(const nn_module *m, int64_t i, const char **name);
/* Embedding whose row padding_idx (negative: counted from the end, stored
 * as 0..num-1) starts at zero and gets no gradient, like PyTorch's
 * nn.Embedding(num, dim, padding_idx=...). */
NN_API nn_module *nn_embedding_new_padded(int64_t num_embeddings, int64_t embedding_dim,
                                          int64_t padding_idx);

/* Which recurrence nn_recurrent_new builds (Elman RNN with tanh or ReLU). */
typedef enum nn_rnn_mode {
    NN_RNN_MODE_RNN_TANH = 0,
    NN_RNN_MODE_RNN_RELU = 1,
    NN_RNN_MODE_LSTM = 2,
    NN_RNN_MODE_GRU = 3
} nn_rnn_mode;

/* PyTorch's nn.RNN / LSTM / GRU with every option: num_layers stacked
 * layers, dropout p in [0, 1] on the outputs of every layer but the last in
 * training, bidirectional (parameters of the backward direction named
 * weight_ih_l<k>_reverse, ...; output [.., 2*H], forward then backward).
 * batch_first: x [N, T, in] (else [T, N, in], PyTorch's default); states
 * h0/c0/h_n/c_n are [num_layers * num_directions, N, H] either way, layer
 * by layer, forward direction first. Run with nn_recurrent_forward. */
NN_API nn_module *nn_recurrent_new(nn_rnn_mode mode, int64_t input_size, int64_t hidden_size,
                                   int num_layers, bool bias, bool batch_first, double dropout,
                                   bool bidirectional);
/* Weight tying: parameter dst (dotted name under m) becomes the tensor of
 * parameter src (same dtype and shape, else NN_ERR_SHAPE); dst's old tensor
 * is released. Both names then read and train one tensor: it is listed once
 * by nn_module_parameter (first name), under both names by
 * nn_module_state_dict (like PyTorch), and stored once in model files,
 * whose loaders tie it again. */
NN_API nn_status nn_module_tie(nn_module *m, const char *dst, const char *src);

/* --- attention and transformer layers (PyTorch semantics and names) ------ */
/* Built-in kinds: nn_model_load rebuilds them with no user code, and a
 * PyTorch state dict loads into them by name. Layouts as PyTorch: [T, N, E]
 * (sequence first) unless batch_first ([N, T, E]). Boolean masks are u8. */

/* PyTorch's nn.MultiheadAttention(embed_dim, num_heads, dropout, bias,
 * kdim, vdim, batch_first) (kdim/vdim 0: embed_dim). Parameters
 * in_proj_weight [3E, E] (q_proj_weight, k_proj_weight, v_proj_weight when
 * kdim or vdim differ from E), in_proj_bias [3E], out_proj.weight,
 * out_proj.bias; PyTorch's init (xavier_uniform, zero biases). embed_dim
 * must be divisible by num_heads. nn_module_forward_n takes (query, key,
 * value[, key_padding_mask[, attn_mask]]): query [L, N, E], key
 * [S, N, kdim], value [S, N, vdim] (or unbatched [L, E] ...);
 * key_padding_mask [N, S], u8 (1 = ignore that key) or f32 (added);
 * attn_mask [L, S] or [N * num_heads, L, S], u8 (1 = not allowed) or f32
 * (added). Returns the output [L, N, E] (PyTorch's need_weights=False path,
 * through the tiled nn_scaled_dot_product_attention); nn_module_forward(x)
 * is self-attention (x, x, x). A query that sees no key gives zeros. */
NN_API nn_module *nn_multihead_attention_new(int64_t embed_dim, int64_t num_heads,
                                             double dropout, bool bias, int64_t kdim,
                                             int64_t vdim, bool batch_first);
/* PyTorch's forward with every argument: masks may be NULL; need_weights
 * also returns in *attn_weights the attention weights [N, L, S] averaged
 * over heads (average_attn_weights) or [N, num_heads, L, S], computed
 * explicitly (memory grows with L x S; a query that sees no key gives NaN
 * like PyTorch). Both results tracked like op results. */
NN_API nn_tensor *nn_multihead_attention_forward(nn_module *m, nn_tensor *query,
                                                 nn_tensor *key, nn_tensor *value,
                                                 nn_tensor *key_padding_mask,
                                                 nn_tensor *attn_mask, bool need_weights,
                                                 bool average_attn_weights,
                                                 nn_tensor **attn_weights);

/* The feed-forward activation of the transformer layers. */
typedef enum nn_transformer_activation {
    NN_TRANSFORMER_ACTIVATION_RELU = 0,
    NN_TRANSFORMER_ACTIVATION_GELU = 1,     /* exact (erf) GELU, PyTorch's "gelu" */
    NN_TRANSFORMER_ACTIVATION_GELU_TANH = 2 /* GELU with the tanh approximation */
} nn_transformer_activation;

/* PyTorch's nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward,
 * dropout, activation, layer_norm_eps, batch_first, norm_first) (PyTorch's
 * defaults: 2048, 0.1, relu, 1e-5, false, false), children self_attn,
 * linear1, dropout, linear2, norm1, norm2, dropout1, dropout2.
 * nn_module_forward_n takes (src[, src_mask[, src_key_padding_mask]]),
 * masks as MultiheadAttention's attn_mask / key_padding_mask. */
NN_API nn_module *nn_transformer_encoder_layer_new(int64_t d_model, int64_t nhead,
                                                   int64_t dim_feedforward, double dropout,
                                                   nn_transformer_activation activation,
                                                   double layer_norm_eps, bool batch_first,
                                                   bool norm_first);
/* PyTorch's nn.TransformerDecoderLayer (same arguments), children
 * self_attn, multihead_attn, linear1, dropout, linear2, norm1..3,
 * dropout1..3. nn_module_forward_n takes (tgt, memory[, tgt_mask[,
 * memory_mask[, tgt_key_padding_mask[, memory_key_padding_mask]]]]);
 * nn_module_forward fails (it needs memory). */
NN_API nn_module *nn_transformer_decoder_layer_new(int64_t d_model, int64_t nhead,
                                                   int64_t dim_feedforward, double dropout,
                                                   nn_transformer_activation activation,
                                                   double layer_norm_eps, bool batch_first,
                                                   bool norm_first);
/* PyTorch's nn.TransformerEncoder(encoder_layer, num_layers, norm):
 * children layers.0 .. layers.<num_layers-1> (layers.0 is encoder_layer,
 * the others copies of it, weights included, as PyTorch's clones) and norm
 * (a LayerNorm(d_model), or NULL for none). Takes OVER the references to
 * encoder_layer and norm, also on failure. Inputs as the encoder layer's;
 * every layer gets the same masks. */
NN_API nn_module *nn_transformer_encoder_new(nn_module *encoder_layer, int num_layers,
                                             nn_module *norm);
/* PyTorch's nn.TransformerDecoder(decoder_layer, num_layers, norm): the
 * same for decoder layers; inputs as the decoder layer's. */
NN_API nn_module *nn_transformer_decoder_new(nn_module *decoder_layer, int num_layers,
                                             nn_module *norm);
/* Make every self-attention under m (a MultiheadAttention, a transformer
 * layer or stack; a decoder's cross-attention excepted) causal or not: key j
 * is hidden from query i when j > i, as with
 * nn_transformer_causal_mask, without building a mask. Saved in model files. */
NN_API nn_status nn_transformer_set_causal(nn_module *m, bool causal);
/* PyTorch's Transformer.generate_square_subsequent_mask(size): f32
 * [size, size], 0 on and below the diagonal, -inf above (1 <= size <= 2^20). */
NN_API nn_tensor *nn_transformer_causal_mask(int64_t size);

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

/* ====================================================================== */
/*  Losses                                                                */
/* ====================================================================== */
/* Each loss returns a new tensor: a 0-d scalar for NN_REDUCTION_MEAN / SUM
 * (and BATCHMEAN, accepted by nn_kl_div only), or the per-element (per-sample
 * for cross-entropy / NLL) losses for NN_REDUCTION_NONE. Semantics follow
 * PyTorch 1.13. Gradients flow to `input` (and to `target` where PyTorch has
 * one: the regression losses, nn_kl_div, nn_bce_loss, nn_bce_with_logits and
 * probability targets of cross-entropy); `weight` / `pos_weight` are constants. Targets
 * must have the input's shape (no broadcasting), else NN_ERR_SHAPE. */

/* Mean squared error (input - target)^2. */
NN_API nn_tensor *nn_mse_loss(nn_tensor *input, nn_tensor *target, nn_reduction reduction);
/* Mean absolute error |input - target|. */
NN_API nn_tensor *nn_l1_loss(nn_tensor *input, nn_tensor *target, nn_reduction reduction);
/* 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta >= 0; 0 is L1). */
NN_API nn_tensor *nn_smooth_l1_loss(nn_tensor *input, nn_tensor *target, double beta,
                                    nn_reduction reduction);
/* 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (delta > 0). */
NN_API nn_tensor *nn_huber_loss(nn_tensor *input, nn_tensor *target, double delta,
                                nn_reduction reduction);

/* Cross-entropy of logits [N, C] (or [C], or [N, C, d1, ...]) against i64
 * class indices [N] (or [], [N, d1, ...]); mean over the batch. One fused
 * op: log-softmax + NLL, backward softmax - onehot. */
NN_API nn_tensor *nn_cross_entropy(nn_tensor *logits, nn_tensor *target);
/* Full cross-entropy. target: i64 class indices (as above; an index equal to
 * ignore_index contributes nothing, any other index outside [0, C) is
 * NN_ERR_RANGE) or f32 class probabilities of the logits' shape. weight: f32
 * [C] class weights or NULL. label_smoothing in [0, 1]. MEAN with indices is
 * the weighted mean (divided by the summed weights of the counted targets),
 * with probabilities the mean over samples, as in PyTorch. */
NN_API nn_tensor *nn_cross_entropy_ex(nn_tensor *logits, nn_tensor *target, nn_tensor *weight,
                                      int64_t ignore_index, double label_smoothing,
                                      nn_reduction reduction);
/* Negative log-likelihood of log-probabilities [N, C, *] against i64 class
 * indices, with optional class weights [C] and ignore_index (PyTorch's
 * default is -100); MEAN is the weighted mean. */
NN_API nn_tensor *nn_nll_loss(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                              int64_t ignore_index, nn_reduction reduction);
/* Binary cross-entropy of probabilities input in [0, 1] (else
 * NN_ERR_INVALID) against targets; logs are clamped at -100 like PyTorch.
 * weight: NULL or broadcastable to input. The target gradient
 * -(log x - log(1 - x)) uses the clamped logs too, so it is finite at
 * input 0 or 1 (where PyTorch 1.13 gives +-inf). */
NN_API nn_tensor *nn_bce_loss(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                              nn_reduction reduction);
/* Sigmoid + binary cross-entropy in one numerically stable op. weight: NULL
 * or broadcastable to input; pos_weight: NULL or broadcastable to input
 * (usually [C]), weighting the positive term. */
NN_API nn_tensor *nn_bce_with_logits(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                                     nn_tensor *pos_weight, nn_reduction reduction);
/* KL divergence with input = log-probabilities: target (log t - input), or
 * exp(target) (target - input) when log_target. BATCHMEAN divides the sum
 * by the size of dim 0 (the mathematically correct KL; MEAN divides by numel). */
NN_API nn_tensor *nn_kl_div(nn_tensor *input, nn_tensor *target, nn_reduction reduction,
                            bool log_target);

/* ====================================================================== */
/*  Optimizers                                                            */
/* ====================================================================== */
/*
 * An optimizer holds references to its parameters (f32 leaf tensors), split
 * into parameter groups, each with its own options. nn_optim_step updates
 * every parameter that has a gradient (others are skipped, like PyTorch)
 * with grad mode off; update rules are those of PyTorch 1.13's single-tensor
 * path. Usage:
 *
 *     nn_optim *opt = nn_optim_new(NN_OPTIM_TYPE_ADAM, params, n, 1e-3);
 *     nn_optim_set(opt, NN_OPTIM_WEIGHT_DECAY, 1e-4);
 *     ... nn_optim_zero_grad(opt); nn_backward(loss); nn_optim_step(opt);
 *     nn_optim_free(opt);
 *
 * An optimizer must not be used from two threads at once.
 */

/* Values are pinned. */
typedef enum nn_optim_type {
    NN_OPTIM_TYPE_SGD = 0,
    NN_OPTIM_TYPE_ADAM = 1,
    NN_OPTIM_TYPE_ADAMW = 2,
    NN_OPTIM_TYPE_RMSPROP = 3,
    NN_OPTIM_TYPE_ADAGRAD = 4
} nn_optim_type;

/* Options, PyTorch's defaults in brackets. Setting one the optimizer type
 * does not have is NN_ERR_INVALID. Values are pinned. */
typedef enum nn_optim_option {
    NN_OPTIM_LR = 0,           /* all: learning rate, >= 0 */
    NN_OPTIM_MOMENTUM = 1,     /* SGD, RMSprop: >= 0 [0] */
    NN_OPTIM_DAMPENING = 2,    /* SGD: [0] */
    NN_OPTIM_NESTEROV = 3,     /* SGD: 0 or 1 [0]; needs momentum > 0, dampening 0 */
    NN_OPTIM_WEIGHT_DECAY = 4, /* all: >= 0 [0; AdamW 0.01] (AdamW: decoupled) */
    NN_OPTIM_BETA1 = 5,        /* Adam, AdamW: in [0, 1) [0.9] */
    NN_OPTIM_BETA2 = 6,        /* Adam, AdamW: in [0, 1) [0.999] */
    NN_OPTIM_EPS = 7,          /* Adam(W) [1e-8], RMSprop [1e-8], Adagrad [1e-10]: >= 0 */
    NN_OPTIM_AMSGRAD = 8,      /* Adam, AdamW: 0 or 1 [0] */
    NN_OPTIM_ALPHA = 9,        /* RMSprop smoothing: >= 0 [0.99] */
    NN_OPTIM_CENTERED = 10,    /* RMSprop: 0 or 1 [0] */
    NN_OPTIM_LR_DECAY = 11,    /* Adagrad: >= 0 [0] */
    NN_OPTIM_INITIAL_ACCUMULATOR_VALUE = 12 /* Adagrad: >= 0 [0]; set before the first step */
} nn_optim_option;

/* An optimizer of `type` over params[0..n) (one group, learning rate lr).
 * It takes its own references to the params. NULL on error. */
NN_API nn_optim *nn_optim_new(nn_optim_type type, nn_tensor *const *params, int64_t n, double lr);
/* An optimizer over every parameter of module (nn_module_parameter order),
 * like torch.optim.X(model.parameters(), lr). NULL on error. */
NN_API nn_optim *nn_optim_new_module(nn_optim_type type, nn_module *module, double lr);
/* Short forms of nn_optim_new over an explicit parameter list. */
NN_API nn_optim *nn_sgd(nn_tensor *const *params, int64_t n, double lr, double momentum);
NN_API nn_optim *nn_adam(nn_tensor *const *params, int64_t n, double lr);
NN_API nn_optim *nn_adamw(nn_tensor *const *params, int64_t n, double lr, double weight_decay);
NN_API nn_optim *nn_rmsprop(nn_tensor *const *params, int64_t n, double lr);
NN_API nn_optim *nn_adagrad(nn_tensor *const *params, int64_t n, double lr);
/* Release the optimizer (its state and parameter references). NULL is a no-op. */
NN_API void nn_optim_free(nn_optim *opt);
/* The optimizer's type. */
NN_API nn_optim_type nn_optim_get_type(const nn_optim *opt);

/* Add a parameter group with learning rate lr; its other options start as
 * the optimizer's defaults (see nn_optim_set). A parameter may be in one
 * group only (NN_ERR_INVALID). The new group's index is num_groups - 1. */
NN_API nn_status nn_optim_add_group(nn_optim *opt, nn_tensor *const *params, int64_t n, double lr);
/* Number of parameter groups (-1 on NULL). */
NN_API int nn_optim_num_groups(const nn_optim *opt);
/* Total number of parameters over all groups, and parameter i (borrowed),
 * numbered in group order: the index used by the state dict. */
NN_API int64_t nn_optim_num_params(const nn_optim *opt);
NN_API nn_tensor *nn_optim_param(const nn_optim *opt, int64_t i);
/* Set an option in every group and as the default for groups added later.
 * Out-of-range values and options of other optimizer types: NN_ERR_INVALID
 * (nothing changes). */
NN_API nn_status nn_optim_set(nn_optim *opt, nn_optim_option option, double value);
/* Set an option in one group. */
NN_API nn_status nn_optim_set_group(nn_optim *opt, int group, nn_optim_option option,
                                    double value);
/* Read an option of one group into *value. */
NN_API nn_status nn_optim_get(const nn_optim *opt, int group, nn_optim_option option,
                              double *value);

/* Drop the gradient of every parameter (PyTorch's zero_grad(set_to_none=True)). */
NN_API nn_status nn_optim_zero_grad(nn_optim *opt);
/* One update of every parameter that has a gradient (grad mode off inside).
 * NN_ERR_NO_GRAD if no parameter has one; NN_ERR_INVALID for an invalid
 * option combination (nesterov without momentum). */
NN_API nn_status nn_optim_step(nn_optim *opt);

/* The optimizer state as a new map (free with nn_statedict_free): per
 * parameter i (nn_optim_param order) "state.<i>.step" (0-d f32, as PyTorch)
 * and its buffers "state.<i>.momentum_buffer", ".exp_avg", ".exp_avg_sq",
 * ".max_exp_avg_sq", ".square_avg", ".grad_avg", ".sum"; per group g every
 * option as "param_groups.<g>.<name>" ("lr", "momentum", ...): a [1] i64
 * tensor holding the IEEE-754 bits of the double, so values restore exactly. */
NN_API nn_statedict *nn_optim_state_dict(const nn_optim *opt);
/* Restore state exported by nn_optim_state_dict from an optimizer of the same
 * type and parameter shapes (copies the tensors). Shape mismatches:
 * NN_ERR_SHAPE; missing group options: NN_ERR_NOT_FOUND. Nothing changes on error. */
NN_API nn_status nn_optim_load_state_dict(nn_optim *opt, const nn_statedict *sd);

/* --- gradient clipping ---------------------------------------------------- */

/* Scale the gradients of params[0..n) so that their global norm_type-norm
 * (2 for Euclidean, INFINITY for max-abs; > 0) is at most max_norm, like
 * torch.nn.utils.clip_grad_norm_. Returns the norm before clipping (NaN on
 * error). Parameters without a gradient are skipped. */
NN_API double nn_clip_grad_norm(nn_tensor *const *params, int64_t n, double max_norm,
                                double norm_type);
/* Clamp every gradient element of params[0..n) into [-clip, clip] (clip >= 0). */
NN_API nn_status nn_clip_grad_value(nn_tensor *const *params, int64_t n, double clip);
/* nn_clip_grad_norm over all parameters of an optimizer. */
NN_API double nn_optim_clip_grad_norm(nn_optim *opt, double max_norm, double norm_type);

/* ====================================================================== */
/*  Learning-rate schedules                                               */
/* ====================================================================== */
/*
 * A schedule drives the learning rate of every group of one optimizer (it
 * holds a reference to it). Creating it sets the epoch-0 rate, as PyTorch's
 * constructors do; call nn_sched_step once per epoch after the optimizer
 * steps. The rates match PyTorch 1.13's schedulers (their chainable forms)
 * stepped the same way. The base rate of each group is its lr at creation.
 * A schedule, like its optimizer, must not be used from two threads at once.
 */

/* lr * gamma every step_size epochs (step_size >= 1). */
NN_API nn_sched *nn_sched_step_lr(nn_optim *opt, int64_t step_size, double gamma);
/* lr * gamma at each milestone (increasing epochs, n >= 1). */
NN_API nn_sched *nn_sched_multistep(nn_optim *opt, const int64_t *milestones, int64_t n,
                                    double gamma);
/* lr * gamma every epoch. */
NN_API nn_sched *nn_sched_exponential(nn_optim *opt, double gamma);
/* Cosine annealing from the base rate to eta_min over t_max epochs (t_max >= 1). */
NN_API nn_sched *nn_sched_cosine(nn_optim *opt, int64_t t_max, double eta_min);
/* Cosine annealing restarted after t_0, t_0 * t_mult, ... epochs (t_0, t_mult >= 1). */
NN_API nn_sched *nn_sched_cosine_warm_restarts(nn_optim *opt, int64_t t_0, int64_t t_mult,
                                               double eta_min);
/* Linear warm-up (LinearLR): factor from start_factor (0 < s <= 1) to
 * end_factor (0 <= e <= 1) over total_iters epochs. */
NN_API nn_sched *nn_sched_linear(nn_optim *opt, double start_factor, double end_factor,
                                 int64_t total_iters);

typedef enum nn_anneal {
    NN_ANNEAL_COS = 0,
    NN_ANNEAL_LINEAR = 1
} nn_anneal;

/* One-cycle policy (two phases; momentum is cycled only after
 * nn_sched_cycle_momentum): from max_lr /
 * div_factor up to max_lr over pct_start of total_steps, then down to
 * max_lr / div_factor / final_div_factor. Stepping past total_steps is
 * NN_ERR_STATE. PyTorch's defaults: pct_start 0.3, div 25, final_div 1e4. */
NN_API nn_sched *nn_sched_one_cycle(nn_optim *opt, double max_lr, int64_t total_steps,
                                    double pct_start, nn_anneal anneal, double div_factor,
                                    double final_div_factor);

/* Also cycle the momentum of a one-cycle schedule inversely to the rate,
 * from max_momentum down to base_momentum and back (PyTorch's default
 * cycle_momentum=True with 0.85 / 0.95): SGD / RMSprop momentum, Adam(W)
 * beta1. Sets the current value at once. NN_ERR_STATE for other schedules,
 * NN_ERR_INVALID for Adagrad or 0 <= base <= max < 1 violated. */
NN_API nn_status nn_sched_cycle_momentum(nn_sched *s, double base_momentum, double max_momentum);

typedef enum nn_sched_mode {
    NN_SCHED_MODE_MIN = 0, /* the metric should decrease (a loss) */
    NN_SCHED_MODE_MAX = 1  /* the metric should increase (an accuracy) */
} nn_sched_mode;

/* ReduceLROnPlateau with relative threshold: multiply every lr by factor
 * (< 1) when the metric has not improved by more than threshold (relative)
 * for patience epochs, then wait cooldown epochs; never below min_lr.
 * Step it with nn_sched_step_metric. */
NN_API nn_sched *nn_sched_plateau(nn_optim *opt, nn_sched_mode mode, double factor,
                                  int64_t patience, double threshold, int64_t cooldown,
                                  double min_lr);

/* Release the schedule (and its optimizer reference). NULL is a no-op. */
NN_API void nn_sched_free(nn_sched *s);
/* Advance one epoch and set the new rates (NN_ERR_STATE for plateau). */
NN_API nn_status nn_sched_step(nn_sched *s);
/* Advance a plateau schedule with this epoch's metric (NN_ERR_STATE for others;
 * NN_ERR_INVALID for NaN). */
NN_API nn_status nn_sched_step_metric(nn_sched *s, double metric);
/* The current learning rate of group `group` (NaN on error). */
NN_API double nn_sched_get_lr(const nn_sched *s, int group);
/* The number of epochs stepped so far (PyTorch's last_epoch; -1 on NULL). */
NN_API int64_t nn_sched_last_epoch(const nn_sched *s);
/* Schedule state as a new map ("last_epoch", "base_lr.<g>", and the
 * schedule's counters), doubles stored as in nn_optim_state_dict. */
NN_API nn_statedict *nn_sched_state_dict(const nn_sched *s);
/* Restore state from nn_sched_state_dict of a schedule of the same kind;
 * nothing changes on error. The optimizer's rates are restored by
 * nn_optim_load_state_dict, not here. */
NN_API nn_status nn_sched_load_state_dict(nn_sched *s, const nn_statedict *sd);

/* ====================================================================== */
/*  Datasets                                                              */
/* ====================================================================== */
/*
 * A dataset is an indexed collection of samples (x, y): x is a tensor of a
 * fixed sample shape (u8 or f32 in memory), y an integer class label. The
 * loader turns samples into f32 batches, applying the dataset's transforms.
 *
 * Ownership: datasets are reference-counted. Each constructor returns a new
 * reference released with nn_dataset_free (NULL-safe). Subsets, splits and
 * loaders hold their own references to the samples, so freeing order never
 * matters. Subsets share the samples (no copy) and start with a copy of the
 * parent's transform settings; changing one afterwards does not affect the
 * other.
 *
 * Threads: a dataset may be read by many loaders (and their workers) at
 * once; do not change its transforms while a loader over it is mid-epoch.
 */

/* Dataset over in-memory tensors: x [N, ...] (u8 or f32), y [N] (i64 labels,
 * >= 0; NULL gives all-zero labels). The dataset keeps references (x and y
 * are made contiguous; contiguous inputs are shared, not copied). */
NN_API nn_dataset *nn_dataset_from_tensors(nn_tensor *x, nn_tensor *y);

/* MNIST / Fashion-MNIST IDX files (gzip or plain, detected by magic): images
 * u8 [N, 1, rows, cols] kept as u8, labels as i64 [N]. Every header field is
 * checked; errors: NN_ERR_IO (open/read), NN_ERR_FORMAT (magic, ndim, count
 * mismatch, trailing bytes, corrupt gzip), NN_ERR_UNSUPPORTED (an IDX dtype
 * other than u8), NN_ERR_OVERFLOW (dims product), NN_ERR_TRUNCATED. */
NN_API nn_dataset *nn_dataset_from_idx(const char *images_path, const char *labels_path);

/* What the CSV reader does with an empty or non-numeric cell. */
typedef enum nn_csv_policy {
    NN_CSV_POLICY_ERROR = 0, /* fail with NN_ERR_FORMAT naming line and column */
    NN_CSV_POLICY_DROP = 1,  /* skip the row */
    NN_CSV_POLICY_FILL = 2   /* use fill_value for a bad feature cell (a bad label still fails) */
} nn_csv_policy;

/* Numeric CSV: x f32 [N, F] (every column but the label), y i64 [N] from
 * column label_column when has_label (integral, >= 0), else zeros. RFC 4180
 * quoting ("" is a quote; delimiters and newlines may sit inside quotes);
 * blanks around cells, a UTF-8 byte-order mark and blank lines are skipped;
 * a cell over 4096 bytes is not a number. Rows with a different field count,
 * bad quoting and NUL bytes fail under every policy (NN_ERR_FORMAT, naming
 * line and column). path must be a regular file (read twice: counted, then
 * parsed straight into x and y, so memory is the result + ~70 KiB).
 * n_dropped / n_filled (may be NULL) receive how many rows were dropped and
 * how many kept rows had cells filled. */
NN_API nn_dataset *nn_dataset_from_csv(const char *path, bool header, char delimiter,
                                       bool has_label, int32_t label_column,
                                       nn_csv_policy policy, double fill_value,
                                       int64_t *n_dropped, int64_t *n_filled);

/* Image folder: root/<class>/<image>.png|.jpg|.jpeg, classes in sorted name
 * order, files sorted; each image decoded, converted to RGB (channels 3) or
 * gray (channels 1) and resized (bilinear) to height x width: x u8
 * [N, channels, height, width]. NN_ERR_UNSUPPORTED when built without
 * libpng/libjpeg; NN_ERR_FORMAT naming a file that does not decode. */
NN_API nn_dataset *nn_dataset_from_image_folder(const char *root, int64_t height, int64_t width,
                                                int channels);

/* Add a reference (ds itself is returned; NULL-safe). */
NN_API nn_dataset *nn_dataset_retain(nn_dataset *ds);
/* Drop a reference; the last one frees the dataset. NULL is a no-op. */
NN_API void nn_dataset_free(nn_dataset *ds);

/* Number of samples (-1 on NULL). */
NN_API int64_t nn_dataset_len(const nn_dataset *ds);
/* The shape of one sample as stored (before crop): writes up to cap dims
 * into shape and returns ndim (-1 on error). */
NN_API int nn_dataset_sample_shape(const nn_dataset *ds, int64_t *shape, int cap);
/* Number of classes: 1 + the largest label (folder count for image folders). */
NN_API int64_t nn_dataset_num_classes(const nn_dataset *ds);
/* Name of class i for image folders (borrowed), else NULL + NN_ERR_NOT_FOUND. */
NN_API const char *nn_dataset_class_name(const nn_dataset *ds, int64_t i);
/* Label of sample i (-1 and NN_ERR_RANGE when out of range). */
NN_API int64_t nn_dataset_label(const nn_dataset *ds, int64_t i);
/* Sample i after transforms, as a batch of one: *x f32 [1, ...], *y i64 [1]
 * (or f32 [1, C] with one-hot); new references. Random transforms draw as
 * in epoch 0, batch position 0. */
NN_API nn_status nn_dataset_get(const nn_dataset *ds, int64_t i, nn_tensor **x, nn_tensor **y);

/* --- subsets and splits (views: the samples are not copied) -------------- */

/* The samples at indices[0..n-1] (each checked against the length). */
NN_API nn_dataset *nn_dataset_subset(nn_dataset *ds, const int64_t *indices, int64_t n);
/* Seeded random split into n parts of sizes floor(fractions[i] * len); when
 * the fractions sum to 1 the remainder goes one each to the first parts, so
 * every sample lands in exactly one part. out[0..n-1] receive new datasets. */
NN_API nn_status nn_dataset_split(nn_dataset *ds, const double *fractions, int n, uint64_t seed,
                                  nn_dataset **out);

/* --- transforms (applied per batch in this fixed order: scale, random crop,
 *     random horizontal flip, normalize; labels: one-hot) ------------------ */

/* u8 samples are divided by 255 (on by default for u8 data; f32 data is
 * never scaled). */
NN_API nn_status nn_dataset_set_scale(nn_dataset *ds, bool on);
/* Per-channel (x - mean[c]) / std[c]; channels = dim 0 of a sample of ndim 3
 * ([C, H, W]), 1 for ndim 2, F for ndim 1 ([F] features). n must match;
 * n 0 turns normalization off. */
NN_API nn_status nn_dataset_set_normalize(nn_dataset *ds, const float *mean, const float *std,
                                          int64_t n);
/* Compute per-channel mean and population std over every sample (after
 * scale) and set them as the normalization. Returns the status. */
NN_API nn_status nn_dataset_compute_normalize(nn_dataset *ds);
/* Copy the normalization in use into mean/std (cap entries each); returns
 * the channel count (0 when off, -1 on error). */
NN_API int64_t nn_dataset_get_normalize(const nn_dataset *ds, float *mean, float *std,
                                        int64_t cap);
/* Flip each sample left-right with probability p (samples of ndim 2 or 3);
 * seeded: the draws depend only on (seed, epoch, position in the epoch). */
NN_API nn_status nn_dataset_set_random_flip(nn_dataset *ds, double p, uint64_t seed);
/* Pad each sample by `padding` zeros on every side, then crop a random
 * window of the original size (padding 0 turns it off). Seeded like flip. */
NN_API nn_status nn_dataset_set_random_crop(nn_dataset *ds, int64_t padding, uint64_t seed);
/* Labels become one-hot f32 [B, num_classes] (0 turns it off). */
NN_API nn_status nn_dataset_set_one_hot(nn_dataset *ds, int64_t num_classes);

/* ====================================================================== */
/*  Loader                                                                */
/* ====================================================================== */
/*
 *     nn_loader *train = nn_loader_new(ds, 64, true, 42);
 *     for (epoch ...) {
 *         nn_loader_reset(train);
 *         nn_tensor *x, *y;
 *         while (nn_loader_next(train, &x, &y)) { ... }
 *         if (nn_loader_status(train)) ... error ...
 *     }
 *
 * Each epoch yields every sample exactly once (a shuffled permutation drawn
 * from a generator seeded once with `seed`, so epoch k's order depends only
 * on seed and k). With prefetch (default on) one background thread prepares
 * the next batch while the caller trains; batches are identical either way.
 * A loader must be used from one thread at a time.
 */

/* A loader over ds (it keeps a reference) with batch_size >= 1. */
NN_API nn_loader *nn_loader_new(nn_dataset *ds, int64_t batch_size, bool shuffle, uint64_t seed);
/* Stop the worker (joined) and free the loader; NULL is a no-op. */
NN_API void nn_loader_free(nn_loader *l);
/* Drop the last incomplete batch (default false). Applies from the next epoch. */
NN_API nn_status nn_loader_set_drop_last(nn_loader *l, bool drop_last);
/* Background prefetch on/off (default on). Applies from the next epoch. */
NN_API nn_status nn_loader_set_prefetch(nn_loader *l, bool prefetch);
/* Start the next epoch (reshuffled when shuffling). The first nn_loader_next
 * without a reset starts epoch 0 itself. */
NN_API nn_status nn_loader_reset(nn_loader *l);
/* The next batch: *x f32 [B, ...], *y i64 [B] (f32 [B, C] with one-hot),
 * borrowed until the next nn_loader_next / reset / free (retain to keep).
 * Returns false at the end of the epoch or on error (see nn_loader_status). */
NN_API bool nn_loader_next(nn_loader *l, nn_tensor **x, nn_tensor **y);
/* NN_OK, or the error that ended the last nn_loader_next. */
NN_API nn_status nn_loader_status(const nn_loader *l);
/* Batches per epoch with the current settings (-1 on NULL). */
NN_API int64_t nn_loader_num_batches(const nn_loader *l);
/* The dataset (borrowed). */
NN_API nn_dataset *nn_loader_dataset(const nn_loader *l);

/* ====================================================================== */
/*  Metrics                                                               */
/* ====================================================================== */

/* Fraction of rows of logits [B, C] whose argmax (first maximum) equals
 * labels [B] (i64) into *out. */
NN_API nn_status nn_accuracy(const nn_tensor *logits, const nn_tensor *labels, double *out);
/* Fraction of rows whose label is among the k highest logits (ties broken
 * towards the lower class index, as argmax does); 1 <= k <= C. */
NN_API nn_status nn_topk_accuracy(const nn_tensor *logits, const nn_tensor *labels, int64_t k,
                                  double *out);
/* Confusion matrix i64 [C, C]: row = true label, column = prediction.
 * pred is logits f32 [B, C] (argmax is taken) or predictions i64 [B]. */
NN_API nn_tensor *nn_confusion_matrix(const nn_tensor *pred, const nn_tensor *labels,
                                      int64_t num_classes);
/* Per-class precision and recall from a confusion matrix [C, C] into
 * precision[C] and recall[C] (either may be NULL); 0 where undefined. */
NN_API nn_status nn_precision_recall(const nn_tensor *confusion, double *precision,
                                     double *recall, int64_t num_classes);

/* A running mean (of losses): add values with weights, read the mean. */
typedef struct nn_meter nn_meter;
/* A new, empty meter (free with nn_meter_free; NULL on out-of-memory). */
NN_API nn_meter *nn_meter_new(void);
/* Free m; NULL is a no-op. */
NN_API void nn_meter_free(nn_meter *m);
/* Add `value` with weight `count` (>= 0, e.g. the batch size). */
NN_API nn_status nn_meter_add(nn_meter *m, double value, double count);
/* Weighted mean so far (NaN when empty or NULL). */
NN_API double nn_meter_mean(const nn_meter *m);
/* Total weight added so far (NaN on NULL). */
NN_API double nn_meter_count(const nn_meter *m);
/* Forget every value (the mean becomes NaN). */
NN_API nn_status nn_meter_reset(nn_meter *m);

/* ====================================================================== */
/*  Training utilities                                                    */
/* ====================================================================== */
/* Meters, progress displays and metrics logs are small single-owner objects
 * (free / close them once); each must be used from one thread at a time. */

/* Progress display on file descriptor fd (1 stdout, 2 stderr): "epoch e/E
 * batch i/n loss images/s ETA", redrawn in place on a terminal, plain
 * lines (about ten per epoch) otherwise. */
typedef struct nn_progress nn_progress;
/* A display for `epochs` epochs of batches_per_epoch batches; it does not
 * own fd. Free with nn_progress_free (NULL-safe). */
NN_API nn_progress *nn_progress_new(int fd, int64_t epochs, int64_t batches_per_epoch);
NN_API void nn_progress_free(nn_progress *p);
/* Start epoch (0-based) and its clock. */
NN_API nn_status nn_progress_begin_epoch(nn_progress *p, int64_t epoch);
/* Batch batch_index (0-based) of batch_size samples is done with this loss. */
NN_API nn_status nn_progress_update(nn_progress *p, int64_t batch_index, double loss,
                                    int64_t batch_size);
/* End the epoch with a final line; extra (may be NULL) is appended. */
NN_API nn_status nn_progress_end_epoch(nn_progress *p, const char *extra);

/* CSV metrics log, one row per epoch:
 * epoch,train_loss,val_loss,val_acc,lr,seconds (flushed after each row). */
typedef struct nn_metrics_log nn_metrics_log;
/* Create or truncate path and write the header (NULL + NN_ERR_IO if it
 * cannot); close with nn_metrics_log_close. */
NN_API nn_metrics_log *nn_metrics_log_open(const char *path);
/* Append one row (NaN values print as "nan"). */
NN_API nn_status nn_metrics_log_write(nn_metrics_log *log, int64_t epoch, double train_loss,
                                      double val_loss, double val_acc, double lr,
                                      double seconds);
/* Close the file (NULL-safe); returns NN_ERR_IO if the final flush failed. */
NN_API nn_status nn_metrics_log_close(nn_metrics_log *log);

/* ====================================================================== */
/*  Fit: a ready-made training loop                                       */
/* ====================================================================== */

/* The loss nn_fit minimises. Values are pinned. */
typedef enum nn_fit_loss {
    NN_FIT_LOSS_CROSS_ENTROPY = 0, /* logits [B, C] against i64 labels [B] or one-hot f32 [B, C] */
    NN_FIT_LOSS_MSE = 1            /* outputs against f32 targets (e.g. one-hot) */
} nn_fit_loss;

/* Called after each epoch (0-based) with its results (val_* are NaN without
 * a validation loader; val_acc is NaN for non-label targets). Return false
 * to stop training. Step a learning-rate schedule here (nn_sched_step). */
typedef bool (*nn_fit_epoch_fn)(int64_t epoch, double train_loss, double val_loss,
                                double val_acc, double seconds, void *user);

/* Train model with opt for `epochs` epochs over train (reset each epoch),
 * evaluating on val (may be NULL) in eval mode without grad. patience > 0
 * stops after that many epochs without a better validation accuracy and
 * restores the best weights (needs val); 0 disables it. progress and log
 * (may be NULL) receive per-batch / per-epoch updates; on_epoch may be NULL.
 * Returns the first error of any step (the model keeps its last weights). */
NN_API nn_status nn_fit(nn_module *model, nn_optim *opt, nn_fit_loss loss, nn_loader *train,
                        nn_loader *val, int64_t epochs, int64_t patience, nn_progress *progress,
                        nn_metrics_log *log, nn_fit_epoch_fn on_epoch, void *user);

/* -------------------------------------------- monitoring (Prometheus) */
/*
 * A monitor keeps training and inference metrics and exposes them in the
 * Prometheus text exposition format (version 0.0.4): written atomically to
 * a file (temporary + rename, for node_exporter's textfile collector or any
 * reader) and, with libmicrohttpd (build option `http`), served over HTTP
 * at /metrics. Series: nn_train_loss, nn_train_steps_total,
 * nn_train_samples_total, nn_train_step_seconds, nn_train_samples_per_second,
 * nn_epoch, nn_epoch_train_loss, nn_val_loss, nn_val_accuracy,
 * nn_learning_rate, nn_epoch_seconds, nn_predictions_total and
 * nn_predicted_samples_total (every nn_model_predict of the process),
 * nn_process_resident_memory_bytes and _peak_bytes, and gauges of the
 * caller's own; each carries the monitor's constant labels. All functions
 * are thread-safe on one monitor (the HTTP server reads it from its thread).
 */
typedef struct nn_monitor nn_monitor;

/* A new monitor writing to path (NULL: no file; the file is written at each
 * epoch, at most once a second during steps, and by nn_monitor_write).
 * Free with nn_monitor_free (NULL-safe; stops the server). */
NN_API nn_monitor *nn_monitor_new(const char *path);
NN_API void nn_monitor_free(nn_monitor *mon);
/* Serve GET /metrics on address (IPv4 text; NULL = "127.0.0.1", loopback
 * only) and port (0 = a free port, read back with nn_monitor_port).
 * NN_ERR_STATE if already serving, NN_ERR_IO if the port cannot be bound,
 * NN_ERR_UNSUPPORTED without libmicrohttpd. */
NN_API nn_status nn_monitor_serve(nn_monitor *mon, const char *address, int64_t port);
/* The port being served, or -1 (with an error) when not serving. */
NN_API int64_t nn_monitor_port(const nn_monitor *mon);
/* Add or replace a constant label on every series (name: [a-zA-Z_][a-zA-Z0-9_]*,
 * not starting with "__"; value: any UTF-8, escaped in the output). */
NN_API nn_status nn_monitor_set_label(nn_monitor *mon, const char *name, const char *value);
/* Set a gauge of your own (name: [a-zA-Z_:][a-zA-Z0-9_:]*; help may be NULL). */
NN_API nn_status nn_monitor_set_gauge(nn_monitor *mon, const char *name, const char *help,
                                      double value);
/* Record one training step: its loss, its samples (images or tokens) and
 * its wall time in seconds (> 0). nn_fit calls this for an attached monitor. */
NN_API nn_status nn_monitor_record_step(nn_monitor *mon, double loss, int64_t samples,
                                        double seconds);
/* Record the end of an epoch (NaN for what is unknown); writes the file. */
NN_API nn_status nn_monitor_record_epoch(nn_monitor *mon, int64_t epoch, double train_loss,
                                         double val_loss, double val_accuracy, double lr,
                                         double seconds);
/* The exposition text now, as a new string (free with nn_free). */
NN_API char *nn_monitor_text(nn_monitor *mon);
/* Write the file now (NN_ERR_STATE if the monitor has no path). */
NN_API nn_status nn_monitor_write(nn_monitor *mon);
/* Attach mon to nn_fit calls made on this thread (NULL detaches): each
 * step and epoch is recorded. The monitor is borrowed: detach it before
 * freeing it (nn_monitor_free detaches it from the calling thread). */
NN_API nn_status nn_fit_set_monitor(nn_monitor *mon);

/* ====================================================================== */
/*  Model files                                                           */
/* ====================================================================== */
/*
 * One file format (lib/io/FORMAT.md, ".nnm") holds, in CRC-32-checked
 * sections: metadata, the module tree (type names, hyperparameters, named
 * children: a model loads without the code that built it), named tensors
 * (zlib-compressed or stored) and, for checkpoints, the training state.
 * It is pure data: no code, no callbacks, no references to other files.
 *
 * Saving to a path is atomic: a temporary file in the same directory is
 * written, synced and renamed over the target, then the directory is
 * synced; on any failure the old file is untouched and the temporary
 * removed (see nn_model_save for modes, symlinks and stale temporaries).
 * Files are built in memory before they are written, and read
 * whole into memory before they are parsed (both bounded by the file).
 *
 * Loading rejects anything malformed with NN_ERR_FORMAT, NN_ERR_TRUNCATED,
 * NN_ERR_CHECKSUM, NN_ERR_VERSION (a future major version), NN_ERR_LIMIT,
 * NN_ERR_OVERFLOW, NN_ERR_RANGE or NN_ERR_DTYPE, and a message naming the
 * offending field and values; no allocation exceeds what the file justifies.
 *
 * Threads: an nn_model may be shared by any number of threads calling
 * nn_model_predict (and the getters) concurrently, provided nobody modifies
 * it meanwhile (no training, no nn_module_* setters on nn_model_module, no
 * nn_model_free). Options, metadata and state dict handles are not
 * synchronised: share them read-only or not at all.
 */

/* ----------------------------------------------------------- callbacks */

/* Writes all `size` bytes of data; returns 0 on success, nonzero on failure. */
typedef int (*nn_write_fn)(const void *data, size_t size, void *user);
/* Reads up to `size` bytes into buf; returns the count read (0 at the end),
 * or a negative value on failure. */
typedef int64_t (*nn_read_fn)(void *buf, size_t size, void *user);

/* ------------------------------------------------------------- options */

typedef struct nn_io_options nn_io_options;

/* Keys of nn_io_options_set (pinned values). */
typedef enum nn_io_option {
    NN_IO_OPTION_COMPRESSION = 0, /* save: zlib level 0..9 (0 = stored); default 6 */
    NN_IO_OPTION_MODULE_TREE = 1, /* save: 1 = write the module tree (default), 0 = weights only */
    NN_IO_OPTION_MAX_BYTES = 2,   /* load: cap on file size and on total tensor bytes;
                                     >= 1, default 4 GiB */
    NN_IO_OPTION_STRICT = 3,      /* load weights: 1 = names must match exactly (default) */
    NN_IO_OPTION_REQUIRE_SIGNATURE = 4, /* load: 1 = refuse files not signed by the verify key
                                          (NN_ERR_UNSIGNED / NN_ERR_WRONG_KEY); default 0 */
    NN_IO_OPTION_MMAP = 5,        /* nn_model_load and safetensors loads from a path: 0 =
                                     read and copy (default); 1 = map the file, tensors
                                     view it (see "Memory-mapped loading"); 2 = the same,
                                     verifying every CRC-32 of a model file first */
    NN_IO_OPTION_ALIGNED = 6      /* save model / weights files: 1 = every tensor stored
                                     uncompressed at a 64-byte file offset (FORMAT.md 11),
                                     so nn_model_load can map it; default 0 */
} nn_io_option;

/* New options holding the defaults; free with nn_io_options_free. NULL
 * options anywhere below mean the defaults. */
NN_API nn_io_options *nn_io_options_new(void);
NN_API void nn_io_options_free(nn_io_options *opts);
/* Set one option; NN_ERR_INVALID for an unknown key or a value outside its range. */
NN_API nn_status nn_io_options_set(nn_io_options *opts, nn_io_option key, int64_t value);
/* Read one option into *value. */
NN_API nn_status nn_io_options_get(const nn_io_options *opts, nn_io_option key, int64_t *value);
/* Attach training state so that nn_model_save writes a checkpoint: the
 * optimizer's state dict, the schedule's state (sched may be NULL), the
 * generator's state (NULL: this thread's default generator), epoch and step.
 * The objects are borrowed and must live until the save returns; opt NULL
 * detaches. */
NN_API nn_status nn_io_options_set_training(nn_io_options *opts, nn_optim *opt, nn_sched *sched,
                                            nn_generator *gen, int64_t epoch, int64_t step);

/* ----------------------------------------- signed and encrypted files */
/*
 * With libsodium (build option `sodium`) a file can be signed (Ed25519 over
 * every byte of the file, prehashed: Ed25519ph) and encrypted at rest
 * (XChaCha20-Poly1305 secretstream, 64 KiB chunks); FORMAT.md section 10.
 * Both wrap the ordinary file, so every save and load function (models,
 * weights, checkpoints; paths, buffers, callbacks) takes them through its
 * options. A save with a signing key signs, with an encryption key encrypts
 * (signed first, then encrypted, when both are set).
 * A load with an encryption key decrypts (a file not encrypted is then
 * NN_ERR_DECRYPT); an encrypted file without one is NN_ERR_WRONG_KEY. A
 * signed file is verified against the verify key, or, without one, only
 * against the key it names (damage is caught, a forger is not).
 * Any failure - altered bytes (NN_ERR_SIGNATURE / NN_ERR_DECRYPT), a file
 * cut short (NN_ERR_TRUNCATED), another key (NN_ERR_WRONG_KEY), no
 * signature when NN_IO_OPTION_REQUIRE_SIGNATURE is set (NN_ERR_UNSIGNED) -
 * returns no object and leaves the caller's objects untouched.
 * Keys are raw bytes. The options copy them and wipe their copy when
 * replaced or freed; libnn never prints them, and its working copies are
 * wiped before each call returns. Builds without libsodium: the functions
 * below return NN_ERR_UNSUPPORTED, and so does loading a sealed file.
 */
#define NN_SIGN_SEED_BYTES 32
#define NN_SIGN_PUBLIC_KEY_BYTES 32
#define NN_SIGN_SECRET_KEY_BYTES 64
#define NN_ENCRYPT_KEY_BYTES 32

/* A new Ed25519 key pair into public_key (32 bytes) and secret_key (64
 * bytes): random when seed is NULL, else derived from the 32-byte seed
 * (deterministic). Lengths other than the sizes above: NN_ERR_INVALID. */
NN_API nn_status nn_sign_keypair(const uint8_t *seed, size_t seed_len, uint8_t *public_key,
                                 size_t public_len, uint8_t *secret_key, size_t secret_len);
/* A new random 32-byte encryption key into key. */
NN_API nn_status nn_encrypt_keygen(uint8_t *key, size_t key_len);
/* Save: sign with this 64-byte secret key (checked: its second half must be
 * the public key of its first); NULL (len 0) stops signing. */
NN_API nn_status nn_io_options_set_sign_key(nn_io_options *opts, const uint8_t *secret_key,
                                            size_t len);
/* Load: verify signatures against this 32-byte public key; NULL (len 0) clears. */
NN_API nn_status nn_io_options_set_verify_key(nn_io_options *opts, const uint8_t *public_key,
                                              size_t len);
/* Save: encrypt with, load: decrypt with this 32-byte key; NULL (len 0) clears. */
NN_API nn_status nn_io_options_set_encrypt_key(nn_io_options *opts, const uint8_t *key,
                                               size_t len);

/* ------------------------------------------------------------ metadata */

typedef struct nn_meta nn_meta;

/* Kinds of metadata values (pinned values). */
typedef enum nn_meta_kind {
    NN_META_KIND_NONE = 0,    /* no such key */
    NN_META_KIND_STRING = 1,  /* UTF-8 text, e.g. "description" */
    NN_META_KIND_NUMBER = 2,  /* one f64 */
    NN_META_KIND_ARRAY = 3,   /* f64 array, e.g. normalization mean/std */
    NN_META_KIND_STRINGS = 4  /* string array, e.g. class names */
} nn_meta_kind;

/* An empty key -> value map (keys kept in insertion order). Free with nn_meta_free. */
NN_API nn_meta *nn_meta_new(void);
NN_API void nn_meta_free(nn_meta *meta);
/* Insert or replace key (non-empty, < 64 KiB) with a copy of the value. */
NN_API nn_status nn_meta_set_string(nn_meta *meta, const char *key, const char *value);
NN_API nn_status nn_meta_set_number(nn_meta *meta, const char *key, double value);
NN_API nn_status nn_meta_set_array(nn_meta *meta, const char *key, const double *values,
                                   int64_t n);
NN_API nn_status nn_meta_set_strings(nn_meta *meta, const char *key,
                                     const char *const *values, int64_t n);
/* Number of keys (-1 on NULL) and key i in insertion order (borrowed). */
NN_API int64_t nn_meta_count(const nn_meta *meta);
NN_API const char *nn_meta_key(const nn_meta *meta, int64_t i);
/* Kind of the value stored under key (NN_META_KIND_NONE if absent). */
NN_API nn_meta_kind nn_meta_kind_of(const nn_meta *meta, const char *key);
/* The string under key (borrowed), or NULL + NN_ERR_NOT_FOUND / NN_ERR_INVALID (other kind). */
NN_API const char *nn_meta_get_string(const nn_meta *meta, const char *key);
/* The number under key into *value. */
NN_API nn_status nn_meta_get_number(const nn_meta *meta, const char *key, double *value);
/* The array under key: *values (borrowed, valid while meta lives) and *n. */
NN_API nn_status nn_meta_get_array(const nn_meta *meta, const char *key, const double **values,
                                   int64_t *n);
/* Number of strings under key (-1 + error if absent or another kind), and string i (borrowed). */
NN_API int64_t nn_meta_strings_count(const nn_meta *meta, const char *key);
NN_API const char *nn_meta_strings_get(const nn_meta *meta, const char *key, int64_t i);

/* ------------------------------------------------- named tensors (weights) */

/* Save a state dict (names -> tensors) as a weights-only file. */
NN_API nn_status nn_statedict_save(const nn_statedict *sd, const char *path,
                                   const nn_io_options *opts);
/* Same, into a new buffer *data of *size bytes (free with nn_free). */
NN_API nn_status nn_statedict_save_buffer(const nn_statedict *sd, const nn_io_options *opts,
                                          void **data, size_t *size);
/* Same, through a write callback. */
NN_API nn_status nn_statedict_save_stream(const nn_statedict *sd, nn_write_fn write, void *user,
                                          const nn_io_options *opts);
/* Load the named tensors of any model, weights or checkpoint file as a new
 * state dict (free with nn_statedict_free); NULL on error. */
NN_API nn_statedict *nn_statedict_load(const char *path, const nn_io_options *opts);
NN_API nn_statedict *nn_statedict_load_buffer(const void *data, size_t size,
                                              const nn_io_options *opts);
NN_API nn_statedict *nn_statedict_load_stream(nn_read_fn read, void *user,
                                              const nn_io_options *opts);

/* --------------------------------------------------------------- models */

/* Save m (module tree + parameters and buffers), meta (may be NULL) and, if
 * attached to opts, the training state, atomically to path.
 * Saving to a path (here and in every *_save to a path):
 * - the file replaced keeps its permission bits (and owner and group where
 *   the saver may set them; if the group cannot be kept, the group bits are
 *   cleared); a new file gets 0666 minus the umask, like fopen;
 * - symlinks are followed: the temporary file is written beside the link's
 *   final target and renamed over it, so the link stays a link; a target
 *   that exists and is not a regular file (directory, FIFO, device) is
 *   refused with NN_ERR_IO, and so is a link loop;
 * - the temporary file is "<target>.nnm-tmp.<pid>.<16 hex digits>", locked
 *   with flock(2) until the rename; each save first removes the temporaries
 *   of the same target whose lock nobody holds (left by a killed process;
 *   where the file system has no flock, those whose pid is gone), never a
 *   live saver's, in this process or another. */
NN_API nn_status nn_model_save(nn_module *m, const char *path, const nn_meta *meta,
                               const nn_io_options *opts);
/* Same, into a new buffer *data of *size bytes (free with nn_free). */
NN_API nn_status nn_model_save_buffer(nn_module *m, const nn_meta *meta,
                                      const nn_io_options *opts, void **data, size_t *size);
/* Same, through a write callback. */
NN_API nn_status nn_model_save_stream(nn_module *m, nn_write_fn write, void *user,
                                      const nn_meta *meta, const nn_io_options *opts);

/* Load a whole model (module tree + weights + metadata), put in eval mode.
 * Returns a new nn_model (free with nn_model_free), or NULL on error.
 *
 * Memory-mapped loading: a file saved with NN_IO_OPTION_ALIGNED 1 (every
 * tensor stored at a 64-byte file offset) and loaded with
 * NN_IO_OPTION_MMAP 1 is mapped privately; every parameter and buffer is a
 * view of the mapping, no tensor byte is read at load (time and memory of
 * the load do not grow with the weights), pages are shared with every
 * other process mapping the file and read on first use. Checked before
 * any tensor exists: the header, the framing of every section, the
 * metadata and module sections' CRC-32s, every rule of the tensor table
 * and every tensor's range against the file's size. Not checked with 1:
 * the tensor data's CRC-32 and the file CRC-32 (a damaged weight loads as
 * another value); NN_IO_OPTION_MMAP 2 checks them first by one streaming
 * read of the file (time linear in its size, RSS unchanged). Writing to a
 * mapped tensor (training, nn_tensor_fill) gives the written page a private
 * copy: the file and other processes never see it. The mapping lives until
 * the last tensor viewing it is freed. A file without the aligned flag, a
 * signed or encrypted file, or options with keys are read and copied as
 * without the option. Do not truncate or rewrite a mapped file in place
 * (libnn's saves replace files by rename, which is safe). FORMAT.md 11. */
NN_API nn_model *nn_model_load(const char *path, const nn_io_options *opts);
NN_API nn_model *nn_model_load_buffer(const void *data, size_t size, const nn_io_options *opts);
NN_API nn_model *nn_model_load_stream(nn_read_fn read, void *user, const nn_io_options *opts);
/* Free a model (NULL is a no-op); a module retained from it stays valid. */
NN_API void nn_model_free(nn_model *model);
/* The model's module (borrowed; nn_module_retain it to keep it longer). */
NN_API nn_module *nn_model_module(const nn_model *model);
/* The model's metadata (borrowed; empty, never NULL, for a valid model). */
NN_API const nn_meta *nn_model_meta(const nn_model *model);
/* Inference: forward x through the module in eval mode with grad mode off
 * on the calling thread. Thread-safe (see the contract above). Returns a new
 * tensor, owned like any op result. */
NN_API nn_tensor *nn_model_predict(const nn_model *model, nn_tensor *x);

/* Load the named tensors of a file into an existing module by name
 * (nn_module_load_state_dict); NN_IO_OPTION_STRICT 0 tolerates missing and
 * unexpected names. If report != NULL it receives a new string listing them
 * (free with nn_free). */
NN_API nn_status nn_module_load_weights(nn_module *m, const char *path,
                                        const nn_io_options *opts, char **report);
NN_API nn_status nn_module_load_weights_buffer(nn_module *m, const void *data, size_t size,
                                               const nn_io_options *opts, char **report);

/* ------------------------------------------------------------ safetensors */
/*
 * safetensors files (Hugging Face's format: u64 header length, a JSON
 * header, raw little-endian tensor data) hold state dicts. The header is
 * parsed and written by json-c; built without it (meson option json),
 * these functions fail with NN_ERR_UNSUPPORTED. Dtypes F32, I64 and U8 load
 * as themselves; F16 and BF16 are widened to f32 exactly. Names are kept
 * as they are (PyTorch's dotted state_dict names are libnn's). The file is
 * checked whole before any tensor is made: header length (<= 16 MiB), JSON
 * nesting, every entry's dtype, shape and offsets, the entries tiling the
 * data area exactly; errors as for model files (NN_ERR_FORMAT, _TRUNCATED,
 * _RANGE, _LIMIT, _DTYPE, _OVERFLOW) with a message naming the tensor.
 *
 * Memory-mapped loading (NN_IO_OPTION_MMAP 1, from a path): the file
 * is mapped privately; every F32/I64/U8 tensor whose data is aligned for
 * its dtype is a view of the mapping (others are copied). Pages are shared
 * with every other process mapping the file and nothing is read until
 * used. Writing to such a tensor is allowed: the written page gets a
 * private copy (copy-on-write), so the file and other processes never see
 * the write. The mapping lives until the last tensor viewing it is freed.
 * Do not truncate or rewrite a file in place while it is mapped (libnn's
 * saves replace files by rename, which is safe).
 */

/* Load every tensor of a safetensors file as a new state dict (in the order
 * of their data; free with nn_statedict_free), NULL on error. If meta is
 * not NULL, *meta receives the file's __metadata__ as string entries (a new
 * nn_meta, empty without any; free with nn_meta_free), NULL on error. */
NN_API nn_statedict *nn_safetensors_load(const char *path, const nn_io_options *opts,
                                         nn_meta **meta);
/* Same from memory (always copied; NN_IO_OPTION_MMAP does not apply). */
NN_API nn_statedict *nn_safetensors_load_buffer(const void *data, size_t size,
                                                const nn_io_options *opts, nn_meta **meta);
/* Save sd as a safetensors file, atomically like nn_model_save: tensors in
 * sd's order, meta (may be NULL; string entries only, else NN_ERR_INVALID)
 * as __metadata__, the header padded with spaces so the data starts at a
 * multiple of 8. */
NN_API nn_status nn_safetensors_save(const nn_statedict *sd, const char *path,
                                     const nn_meta *meta, const nn_io_options *opts);
/* Same, into a new buffer *data of *size bytes (free with nn_free). */
NN_API nn_status nn_safetensors_save_buffer(const nn_statedict *sd, const nn_meta *meta,
                                            const nn_io_options *opts, void **data,
                                            size_t *size);
/* Load a safetensors file into m by name (strict unless NN_IO_OPTION_STRICT
 * is 0; report as nn_module_load_weights). A file whose every name starts
 * with "module." (saved from DataParallel) has that prefix dropped when m
 * has no child "module"; tied parameters are filled from the one name the
 * file has. The module's tensors take over the loaded storage instead of
 * copying it (PyTorch's load_state_dict(assign=True)): with
 * NN_IO_OPTION_MMAP they view the mapping; views of m's parameters taken
 * before the load keep the old values. */
NN_API nn_status nn_module_load_safetensors(nn_module *m, const char *path,
                                            const nn_io_options *opts, char **report);
NN_API nn_status nn_module_load_safetensors_buffer(nn_module *m, const void *data, size_t size,
                                                   const nn_io_options *opts, char **report);

/* ---------------------------------------------------------- checkpoints */

/* Resume from a checkpoint written by nn_model_save with training state:
 * load the weights into m (strict), the optimizer state into opt, the
 * schedule state into sched (may be NULL), the RNG state into gen (NULL:
 * this thread's default generator), and epoch / step (each may be NULL).
 * The whole file is validated before anything is modified; the objects are
 * then updated in the order optimizer, schedule, module, generator, and a
 * mismatch (another architecture) stops there with the error. */
NN_API nn_status nn_checkpoint_load(const char *path, nn_module *m, nn_optim *opt,
                                    nn_sched *sched, nn_generator *gen, int64_t *epoch,
                                    int64_t *step, const nn_io_options *opts);
NN_API nn_status nn_checkpoint_load_buffer(const void *data, size_t size, nn_module *m,
                                           nn_optim *opt, nn_sched *sched, nn_generator *gen,
                                           int64_t *epoch, int64_t *step,
                                           const nn_io_options *opts);

/* ====================================================================== */
/*  ONNX: import and export                                               */
/* ====================================================================== */
/*
 * Import: an ONNX model (opsets 11 to 17, the default domain) becomes an
 * nn_model whose module ("Custom:onnx") runs the graph through libnn's ops,
 * in eval mode; nn_model_predict and nn_module_forward feed its one input.
 * Float initializers become the module's parameters under their names in
 * the file (dotted names nest, so "fc1.weight" reads like PyTorch's state
 * dict; BatchNormalization statistics are buffers): the model can be
 * fine-tuned when every op has a gradient. Constants and the nodes that
 * depend only on them are folded at import. Threads: like any nn_model.
 * Errors: NN_ERR_UNSUPPORTED naming the operator, the node and the opset
 * for an operator (or attribute) libnn cannot run; NN_ERR_FORMAT for a
 * graph that does not hold together (undefined or twice-defined names,
 * cycles, initializers whose data does not match their shape) or bytes that
 * are not an ONNX protobuf; NN_ERR_LIMIT past NN_IO_OPTION_MAX_BYTES or a
 * documented cap. Built without ONNX (-Donnx=disabled): NN_ERR_UNSUPPORTED.
 * Returns a new nn_model (free with nn_model_free), or NULL on error.
 */
NN_API nn_model *nn_onnx_load(const char *path, const nn_io_options *opts);
NN_API nn_model *nn_onnx_load_buffer(const void *data, size_t size, const nn_io_options *opts);
NN_API nn_model *nn_onnx_load_stream(nn_read_fn read, void *user, const nn_io_options *opts);

/* Export: write module m as an ONNX model (opset 17) traced on an input of
 * dtype input_dtype (f32, or i64 token ids for an Embedding or a GPT first)
 * and input_shape (ndim entries; dim 0, the batch, is left symbolic).
 * Built-in kinds (the GPT of nn_gpt_new included: its attention is causal
 * for the traced sequence length) and Sequential export; a kind with no
 * ONNX form, or a user-defined
 * module, fails with NN_ERR_UNSUPPORTED naming it. Saving to a path is
 * atomic like nn_model_save; the buffer form returns a new allocation in
 * *data (free with nn_free). */
NN_API nn_status nn_onnx_save(nn_module *m, const char *path, nn_dtype input_dtype,
                              const int64_t *input_shape, int ndim, const nn_io_options *opts);
NN_API nn_status nn_onnx_save_buffer(nn_module *m, nn_dtype input_dtype,
                                     const int64_t *input_shape, int ndim,
                                     const nn_io_options *opts, void **data, size_t *size);
/* Export traced on n inputs (1..NN_MODULE_MAX_INPUTS): input i has dtype
 * input_dtypes[i] and the ndims[i] dims that follow the earlier inputs' in
 * input_shapes (the shapes one after another). Besides any one-input
 * module: a TransformerDecoderLayer or TransformerDecoder on (tgt, memory)
 * and a MultiheadAttention on (query, key, value); masks as inputs fail
 * with NN_ERR_UNSUPPORTED. Graph inputs are named x0, x1, ... (x for one).
 * Ownership and atomicity as nn_onnx_save / nn_onnx_save_buffer. */
NN_API nn_status nn_onnx_save_n(nn_module *m, const char *path, int n,
                                const nn_dtype *input_dtypes, const int64_t *input_shapes,
                                const int *ndims, const nn_io_options *opts);
NN_API nn_status nn_onnx_save_buffer_n(nn_module *m, int n, const nn_dtype *input_dtypes,
                                       const int64_t *input_shapes, const int *ndims,
                                       const nn_io_options *opts, void **data, size_t *size);

/* ====================================================================== */
/*  Quantization: int8 inference                                          */
/* ====================================================================== */
/*
 * Post-training quantization, like PyTorch's quantize_dynamic and static
 * quantization: every Linear and Conv2d (groups 1, dilation 1, at most
 * 65536 inputs per output) below the model's root (or the root itself when
 * it is a MultiheadAttention) is replaced, in place, by
 * a QuantizedLinear / QuantizedConv2d with symmetric int8 weights per output
 * channel (max|w| / 127; / 63, 7 bits, without AVX-512 VNNI) and f32 bias; u8
 * activations with a zero point, per row (Linear) or per image (Conv2d) at run time
 * (dynamic), or with a scale and zero point per layer fixed from the input
 * ranges seen on calibration batches (static: faster, no range pass). A ReLU
 * right after a layer in a Sequential runs inside the int8 kernel (the ReLU
 * becomes an Identity). A MultiheadAttention's in-projections (the rows of
 * in_proj_weight, or q/k/v_proj_weight, with in_proj_bias) become three
 * QuantizedLinear children q_proj, k_proj and v_proj and the float
 * parameters go (the attention itself, softmax and weighted sum, stays f32).
 * A GPT's projections go int8; its tied head and embeddings stay.
 * Products sum in 32-bit integers (AVX-512 VNNI
 * vpdpbusd, AVX2 vpmaddwd, portable C), the same integers on every tier.
 *
 *     nn_module *net = nn_model_load("fmnist.nnm", NULL);
 *     char *report = NULL;
 *     nn_quantize_static(net, calib_loader, 8, &report);  // or nn_quantize_dynamic
 *     puts(report); nn_free(report);
 *     nn_model_save(net, "fmnist-int8.nnm", NULL);         // int8 weights in the file
 *
 * Quantized layers are inference-only (no gradients flow through them); the
 * model's training mode and the grad mode are restored when the call
 * returns. On failure the model is left as it was. A model must not be used
 * from other threads while it is being quantized.
 *
 * report (NULL: none): a new string (free with nn_free) with one line per
 * quantized layer: its activation parameters and the largest absolute
 * difference between the int8 layer and the float layer on the same input
 * (the float model's activations of a calibration batch), then the whole
 * model's largest output difference and, for [batch, classes] outputs, the
 * share of rows whose argmax agrees.
 */

/* Quantize model in place with dynamic activations. calib: an input batch
 * for the report (NULL: no report; *report is then set to NULL). */
NN_API nn_status nn_quantize_dynamic(nn_module *model, nn_tensor *calib, char **report);
/* Quantize model in place with static activations calibrated on the first
 * `batches` (>= 1) batches of loader (reset first; inputs only); the report
 * uses the first batch. A GPT calibrates on token ids [B, T]: batches of
 * integers, i64 or f32 (nn_dataset_from_tensors over the ids as f32). */
NN_API nn_status nn_quantize_static(nn_module *model, nn_loader *loader, int64_t batches,
                                    char **report);

/* ====================================================================== */
/*  Distributed data-parallel training (MPI)                              */
/* ====================================================================== */
/*
 * Data parallelism like PyTorch's DistributedDataParallel, explicit and
 * minimal: every process (rank) holds a full copy of the model, trains on
 * its own shard of the data, and averages gradients with the others before
 * each optimizer step, so all copies stay identical.
 *
 *     nn_dist_init(&argc, &argv);                    // world of 1 without mpirun
 *     nn_module *net = ...;
 *     nn_dist_broadcast_module(net, 0);              // everyone starts as rank 0
 *     nn_dataset *mine = nn_dist_shard_dataset(train, true);
 *     nn_loader *l = nn_loader_new(mine, global_batch / nn_dist_size(), true, seed);
 *     while (nn_loader_next(l, &x, &y)) {
 *         nn_optim_zero_grad(opt);
 *         nn_backward(nn_cross_entropy(nn_module_forward(net, x), y));
 *         nn_dist_allreduce_grads(net);              // mean over ranks
 *         nn_optim_step(opt);
 *     }
 *     nn_dist_finalize();
 *
 * Run it with `mpirun -np 2 ./prog`; run alone it is a world of size 1.
 * Open MPI busy-polls while a rank waits in a collective: on a machine with
 * fewer free cores than ranks, set OMPI_MCA_mpi_yield_when_idle=1 (measured
 * 8x faster on a loaded 2-core host).
 *
 * The communication engine is MPI (MPI_Init_thread with
 * MPI_THREAD_FUNNELED). Built without MPI (meson option mpi), every
 * function below still exists and behaves as a world of size 1 (rank 0):
 * the ABI does not depend on the build; nn_dist_available tells them apart.
 * libnn communicates on its own duplicate of MPI_COMM_WORLD, with MPI
 * errors returned (never aborting): a failure is NN_ERR_IO with MPI's
 * message.
 *
 * Collective calls (broadcast, allreduce, barrier) must be made by every
 * rank, in the same order, on modules of the same layout (the same
 * parameter and buffer shapes and dtypes; checked, NN_ERR_STATE otherwise).
 * Every rank must run the same number of steps: shard with even = true and
 * give every rank the same batch size.
 *
 * Threads: call the nn_dist_* functions from one thread only, the one that
 * called nn_dist_init (MPI_THREAD_FUNNELED); libnn's other threads (loader
 * prefetch, BLIS) never communicate.
 */

/* Whether this build communicates through MPI (false: always a world of 1). */
NN_API bool nn_dist_available(void);
/* Join the world: MPI_Init_thread(argc, argv) unless MPI is already
 * initialised (then libnn uses it and leaves finalising to its owner).
 * argc/argv may be NULL. Calling it again is a no-op; after
 * nn_dist_finalize it is NN_ERR_STATE (MPI cannot restart). */
NN_API nn_status nn_dist_init(int *argc, char ***argv);
/* Release libnn's communicator and, if nn_dist_init initialised MPI, call
 * MPI_Finalize. A no-op before nn_dist_init or when called twice. */
NN_API nn_status nn_dist_finalize(void);
/* This process's rank in 0..size-1 (0 before init and after finalize). */
NN_API int nn_dist_rank(void);
/* Number of processes in the world (1 before init and after finalize). */
NN_API int nn_dist_size(void);
/* Wait until every rank has called it (a collective). */
NN_API nn_status nn_dist_barrier(void);
/* Deadline of each collective, in seconds (default 600; 0 waits forever).
 * A collective that does not complete in time (another rank failed before
 * it, died or stalled) returns NN_ERR_TIMEOUT naming this rank, the world
 * size and the call. The job cannot continue: later collectives fail with
 * NN_ERR_STATE and nn_dist_finalize leaves MPI unfinalised (it would wait
 * for the lost rank) with NN_ERR_STATE; exit with a non-zero status and
 * mpirun ends every rank. NN_ERR_INVALID outside [0, 1e9]. */
NN_API nn_status nn_dist_set_timeout(double seconds);
/* The collective deadline in seconds. */
NN_API double nn_dist_timeout(void);
/* For a rank that cannot go on: print "libnn: rank R of N failed: why" on
 * stderr and end every rank of the job (MPI_Abort with code, 1 for 0), so
 * that no rank waits in a collective for it. Does not return in a job;
 * NN_ERR_STATE (nothing else happens) before nn_dist_init, after
 * nn_dist_finalize, or without MPI. */
NN_API nn_status nn_dist_abort(int code, const char *why);

/* Copy every parameter and buffer of m from rank root to all ranks (one
 * broadcast of a packed buffer), so every rank starts identical. A
 * collective. NULL m: NN_ERR_NULL; root outside 0..size-1: NN_ERR_RANGE;
 * modules of different layouts across ranks: NN_ERR_STATE, nothing changed. */
NN_API nn_status nn_dist_broadcast_module(nn_module *m, int root);
/* Replace the gradient of every parameter of m that requires grad with the
 * mean over ranks (sum / size), in one allreduce of a packed buffer. A rank
 * without a gradient for a parameter contributes zeros; a parameter that
 * has a gradient on some rank gets one on every rank, one with none on any
 * rank keeps none everywhere (the optimizer then skips it on all ranks).
 * A collective; errors as nn_dist_broadcast_module. */
NN_API nn_status nn_dist_allreduce_grads(nn_module *m);
/* Overlap the gradient mean with backward, as PyTorch's DDP does: with on,
 * m's parameters that require grad are split, in reverse registration
 * order, into buckets of about nn_dist_bucket_bytes; during each
 * nn_backward on this thread, a bucket's allreduce starts (nonblocking) as
 * soon as every gradient in it is final, while backward goes on; the next
 * nn_dist_allreduce_grads(m) starts the buckets backward did not complete,
 * waits for all of them (within the deadline of nn_dist_set_timeout) and
 * writes the means. The training loop is unchanged, and the gradients are
 * those of the blocking path (bit for bit on 2 ranks; on more, MPI may sum
 * buckets in another order: within float rounding). A second backward
 * before nn_dist_allreduce_grads (gradient accumulation) is still correct
 * (that step falls back to one blocking allreduce) but not overlapped.
 * One module at a time: enabling it for another module, or off for m,
 * completes and drops a step in flight. A collective (checks the layout as
 * nn_dist_broadcast_module); call it after nn_dist_init, from the thread
 * that runs backward and the nn_dist_* calls (NN_ERR_STATE otherwise).
 * Changing m's parameters afterwards: nn_dist_allreduce_grads fails with
 * NN_ERR_STATE until this is called again. NULL m: NN_ERR_NULL. */
NN_API nn_status nn_dist_set_overlap(nn_module *m, bool on);
/* Target bucket size for nn_dist_set_overlap in bytes of gradient (default
 * 25 MiB, DDP's): a bucket closes once it holds at least this many, so 1
 * gives one bucket per parameter and SIZE_MAX a single bucket. Takes effect
 * at the next nn_dist_set_overlap. 0: NN_ERR_INVALID. */
NN_API nn_status nn_dist_set_bucket_bytes(size_t bytes);
NN_API size_t nn_dist_bucket_bytes(void);
/* Buckets of the module with overlap on (0 when off). */
NN_API int64_t nn_dist_num_buckets(void);
/* Sum v[0..n) over all ranks, in place (for metrics: losses times counts,
 * correct predictions; divide by nn_dist_size for a mean). A collective;
 * n 0 is a no-op, n < 0 is NN_ERR_INVALID, v NULL with n > 0 NN_ERR_NULL. */
NN_API nn_status nn_dist_allreduce_scalar(double *v, int n);

/* The sample indices that rank `rank` of `size` takes from a dataset of n:
 * rank, rank + size, rank + 2 size, ... (PyTorch's DistributedSampler
 * interleaving, so the k-th batches of all ranks together are the k-th
 * global batch). Shards are disjoint and cover 0..n-1; with even, every
 * rank takes floor(n / size) (the last n % size samples are dropped) so all
 * ranks run the same number of steps. Writes min(count, cap) indices into
 * out (out may be NULL to ask the count) and returns count, or -1 on error
 * (n < 0, size < 1, rank outside 0..size-1, cap < 0, NULL out with cap > 0). */
NN_API int64_t nn_dist_shard_indices(int64_t n, int rank, int size, bool even, int64_t *out,
                                     int64_t cap);
/* This rank's shard of ds (nn_dist_shard_indices for nn_dist_rank and
 * nn_dist_size, through nn_dataset_subset: a view sharing the samples).
 * Returns a new reference (free with nn_dataset_free), NULL on error. */
NN_API nn_dataset *nn_dist_shard_dataset(nn_dataset *ds, bool even);



/* ====================================================================== */
/*  GPT: a decoder-only transformer, byte tokenizer and generation         */
/* ====================================================================== */
/*
 * nn_gpt_new builds a GPT-2 / nanoGPT model: token and position embeddings,
 * n_layer pre-LayerNorm blocks (fused QKV projection c_attn, causal
 * scaled-dot-product attention, output projection c_proj; an MLP of 4 C
 * with GELU's tanh approximation), a final LayerNorm and an LM head tied to
 * the token embedding. It is an ordinary module: nn_module_forward takes i64
 * token ids [B, T] (T <= block_size) and returns logits [B, T, vocab_size];
 * train it with nn_cross_entropy on logits reshaped to [B*T, V]. Its state
 * dict uses nanoGPT's names (transformer.wte.weight, transformer.wpe.weight,
 * transformer.h.N.ln_1.weight, .attn.c_attn.weight, .attn.c_proj.weight,
 * .ln_2, .mlp.c_fc, .mlp.c_proj, transformer.ln_f, lm_head.weight) with
 * Linear weights [out, in]; Hugging Face's GPT-2 stores the four Conv1D
 * weights transposed ([in, out]). nn_model_save/nn_model_load keep it (kind
 * "GPT"), ties included.
 *
 *     nn_gpt_config cfg;
 *     nn_gpt_config_init(&cfg);              // GPT-2 124M defaults
 *     cfg.vocab_size = 256; cfg.n_layer = 4; ...
 *     nn_module *gpt = nn_gpt_new(&cfg);
 */

/* Hyperparameters of nn_gpt_new. Fill with nn_gpt_config_init first: it
 * sets struct_size, which lets later versions append fields and still read
 * structs from programs built against this one. */
typedef struct nn_gpt_config {
    uint32_t struct_size; /* sizeof(nn_gpt_config), set by nn_gpt_config_init */
    int32_t bias;         /* 1: Linear and LayerNorm biases (GPT-2); 0: none */
    int64_t vocab_size;   /* token ids are 0..vocab_size-1 */
    int64_t block_size;   /* longest sequence (positions) */
    int64_t n_layer;      /* transformer blocks */
    int64_t n_head;       /* attention heads; must divide n_embd */
    int64_t n_embd;       /* channels C */
    double dropout;       /* on embeddings, attention weights, residual branches */
    int32_t tie_weights;  /* 1: lm_head.weight is transformer.wte.weight */
    int32_t reserved;     /* 0 */
} nn_gpt_config;

/* Fill cfg with GPT-2 124M's hyperparameters (vocab 50257, block 1024, 12
 * layers, 12 heads, 768 channels, dropout 0, bias, tied) and struct_size. */
NN_API nn_status nn_gpt_config_init(nn_gpt_config *cfg);
/* A new GPT with nanoGPT's init (normal(0, 0.02) weights, c_proj weights
 * scaled by 1/sqrt(2 n_layer), zero biases) from the default generator.
 * Bad values: NN_ERR_INVALID naming the field; struct_size not one this
 * library knows: NN_ERR_VERSION. Returns a new reference. */
NN_API nn_module *nn_gpt_new(const nn_gpt_config *cfg);
/* Read a GPT module's hyperparameters back into cfg (struct_size set).
 * A module of another kind: NN_ERR_INVALID. */
NN_API nn_status nn_gpt_get_config(const nn_module *gpt, nn_gpt_config *cfg);

/* Byte-level tokenizer: token i is byte i (256 ids). Writes min(n, cap)
 * ids of text[0..len) into out (out may be NULL with cap 0 to ask the
 * count) and returns n = len, or -1 on error. */
NN_API int64_t nn_byte_encode(const char *text, size_t len, int64_t *out, int64_t cap);
/* Bytes of ids[0..n) into out (cap bytes; out NULL with cap 0 asks the
 * count); no terminating NUL is written. Returns n, or -1 on error: an id
 * outside 0..255 (NN_ERR_RANGE naming it) or NULL pointers. */
NN_API int64_t nn_byte_decode(const int64_t *ids, int64_t n, char *out, int64_t cap);

/* A generation session: one conversation over a loaded GPT, with its own
 * key/value cache. Many sessions, on any threads, may share one nn_model
 * (it is only read); one session is used by one thread at a time. The
 * session keeps the model's module alive (nn_model_free may come first). */
typedef struct nn_session nn_session;

/* Sampling settings of a session. Fill with nn_sampling_init first. */
typedef struct nn_sampling {
    uint32_t struct_size; /* sizeof(nn_sampling), set by nn_sampling_init */
    int32_t top_k;        /* keep the k most likely tokens; 0: all */
    double temperature;   /* 0: greedy (argmax); else logits / temperature */
    double top_p;         /* keep the smallest set of probability >= top_p; 1: all */
    uint64_t seed;        /* the session's generator seed */
    int64_t max_tokens;   /* most tokens nn_session_generate makes; 0: until full */
} nn_sampling;

/* Called by nn_session_generate with each new token; return nonzero to stop. */
typedef int (*nn_token_fn)(int64_t token, void *user);

/* Greedy defaults: temperature 0, top_k 0, top_p 1, seed 0, max_tokens 0. */
NN_API nn_status nn_sampling_init(nn_sampling *s);
/* A new session over model's GPT (a module of another kind: NN_ERR_INVALID)
 * with settings opts (NULL: nn_sampling_init's). Free with nn_session_free. */
NN_API nn_session *nn_session_new(const nn_model *model, const nn_sampling *opts);
/* Free a session (NULL is a no-op). */
NN_API void nn_session_free(nn_session *s);
/* Forget every token (the cache empties, the generator is reseeded). */
NN_API nn_status nn_session_reset(nn_session *s);
/* Tokens in the cache (prompt plus generated so far); -1 on error. */
NN_API int64_t nn_session_length(const nn_session *s);
/* Run tokens[0..n) through the model after those already cached (prefill,
 * or one step with n = 1); the logits of the last one become current.
 * More than block_size tokens in all: NN_ERR_LIMIT, nothing added; an id
 * outside the vocabulary: NN_ERR_RANGE. */
NN_API nn_status nn_session_append(nn_session *s, const int64_t *tokens, int64_t n);
/* Copy the current logits (vocab_size floats) into out (cap floats).
 * Before any token: NN_ERR_STATE. */
NN_API nn_status nn_session_logits(const nn_session *s, float *out, int64_t cap);
/* Pick the next token from the current logits by the session's sampling
 * settings (nothing is appended). */
NN_API nn_status nn_session_sample(nn_session *s, int64_t *token);
/* Append prompt[0..n) (n may be 0 to continue), then sample and append one
 * token at a time until max_tokens, a token in stop[0..nstop) (not
 * appended nor reported), a full cache, cap tokens in out, or on_token
 * returning nonzero. New tokens go to out (may be NULL with cap 0 to only
 * stream) and *n_out (may be NULL); on_token (may be NULL) sees each. */
NN_API nn_status nn_session_generate(nn_session *s, const int64_t *prompt, int64_t n,
                                     const int64_t *stop, int64_t nstop, int64_t *out,
                                     int64_t cap, int64_t *n_out, nn_token_fn on_token,
                                     void *user);

/* ====================================================================== */
/*  Profiler                                                              */
/* ====================================================================== */
/* One per process, off by default (then each hook costs one predictable
 * branch). While running it records, from every thread (the backend's pool
 * workers included): each op's forward, each backward op, optimizer steps,
 * module forwards, loader batches and nn_fit steps, with wall time, the
 * thread, and the FLOPs and bytes moved of GEMM, convolution and attention.
 * The functions below are thread-safe. */

/* Flags for nn_profiler_start. */
enum {
    NN_PROFILER_MEMORY = 1u << 0 /* sample nn_memory_stats into the trace after each optimizer step */
};

/* Start a session (the previous session's records are dropped). flags: 0 or
 * NN_PROFILER_* bits. NN_ERR_STATE if a session is running, NN_ERR_INVALID
 * for unknown flag bits. */
NN_API nn_status nn_profiler_start(uint32_t flags);
/* Stop recording; the session stays available to the functions below until
 * the next start. NN_ERR_STATE if none is running. */
NN_API nn_status nn_profiler_stop(void);
/* True while a session records. */
NN_API bool nn_profiler_running(void);
/* The report of the current or last session as text: time by kind, top ops
 * by self time (calls, self and total ms, GFLOP/s and share of the FMA peak
 * where FLOPs are known), per-module totals, pool workers, memory. New
 * string (free with nn_free); NULL + NN_ERR_STATE if no session was started. */
NN_API char *nn_profiler_report(void);
/* Write the report to file descriptor fd (1 stdout, 2 stderr). */
NN_API nn_status nn_profiler_write_report(int fd);
/* Write the session's events as Chrome trace-event JSON (opens in Perfetto
 * and chrome://tracing), atomically replacing path. NN_ERR_STATE while
 * running or without a session, NN_ERR_IO if the file cannot be written. */
NN_API nn_status nn_profiler_write_trace(const char *path);
/* Sum of the self times recorded on the calling threads (every thread but
 * the pool's workers), in seconds: the wall time the profiled calls cover.
 * NaN without a session. */
NN_API double nn_profiler_total_seconds(void);

#ifdef __cplusplus
}
#endif

#endif /* NN_H */
