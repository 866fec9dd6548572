/* Version, thread count, dims and shape helpers. */
#include "core/core.h"
#include "nn_config.h"

#include <stdio.h>
#include <string.h>

const char *nn_version(void) { return NN_VERSION_STRING; }

/* The thread count lives here and only here: the backend reads it through
 * nn__num_threads(); the one thing it needs pushed (BLIS's own count) comes
 * through the hook it registers, so core never calls into the backend. */
static _Atomic int g_threads = 1;
static _Atomic(nn__threads_hook) g_threads_hook;

void nn__on_num_threads(nn__threads_hook hook) { g_threads_hook = hook; }

nn_status nn_set_num_threads(int n) {
    if (n < 1 || n > 1024)
        return nn__err(NN_ERR_INVALID, "nn_set_num_threads: n = %d, expected 1..1024", n);
    g_threads = n;
    nn__threads_hook hook = g_threads_hook;
    if (hook) hook(n);
    return NN_OK;
}

int nn_get_num_threads(void) { return g_threads; }
int nn__num_threads(void) { return g_threads; }

bool nn__shape_numel(const int64_t *shape, int ndim, int64_t *numel, const char *fn) {
    if (ndim < 0 || ndim > NN_MAX_DIMS) {
        nn__err(NN_ERR_LIMIT, "%s: ndim = %d, expected 0..%d", fn, ndim, NN_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        nn__err(NN_ERR_NULL, "%s: shape is NULL with ndim = %d", fn, ndim);
        return false;
    }
    /* Bound so that numel * 8 bytes fits in both size_t and int64_t. The
     * same bound applies to the product of the non-zero sizes: it is the
     * largest row-major stride, so a tensor with a zero size ([0, 2^62, 4])
     * still has strides (and stride x index sums) that fit in int64_t. */
    const uint64_t limit = (uint64_t)INT64_MAX / 8 < (uint64_t)SIZE_MAX / 8
                               ? (uint64_t)INT64_MAX / 8
                               : (uint64_t)SIZE_MAX / 8;
    uint64_t n = 1, span = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            nn__err(NN_ERR_SHAPE, "%s: dimension %d has negative size %lld", fn, i,
                    (long long)shape[i]);
            return false;
        }
        uint64_t d = (uint64_t)shape[i], r = n * d; /* n * d <= span * d: checked below */
        if (d > 1 && (__builtin_mul_overflow(span, d, &span) || span > limit)) {
            char buf[160];
            nn__err(NN_ERR_OVERFLOW, "%s: shape %s has too many elements (or strides)", fn,
                    nn__shape_str(shape, ndim, buf, sizeof buf));
            return false;
        }
        n = r;
    }
    *numel = (int64_t)n;
    return true;
}

bool nn__norm_dim(int *dim, int ndim, const char *fn) {
    int d = *dim;
    int lim = ndim > 0 ? ndim : 1;
    if (d < -lim || d >= lim) {
        nn__err(NN_ERR_RANGE, "%s: dim %d out of range for a %d-d tensor", fn, d, ndim);
        return false;
    }
    if (d < 0) d += lim;
    *dim = d;
    return true;
}

const char *nn__shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t used = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    int n = snprintf(buf, cap, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < cap; i++) {
        n = snprintf(buf + used, cap - used, i ? ",%lld" : "%lld", (long long)shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

static _Atomic int64_t g_predict_calls, g_predict_samples;

void nn__count_predictions(int64_t samples) {
    atomic_fetch_add_explicit(&g_predict_calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_predict_samples, samples, memory_order_relaxed);
}

void nn__predictions(int64_t *calls, int64_t *samples) {
    *calls = atomic_load_explicit(&g_predict_calls, memory_order_relaxed);
    *samples = atomic_load_explicit(&g_predict_samples, memory_order_relaxed);
}
