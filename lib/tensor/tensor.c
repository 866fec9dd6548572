/* Tensor storage, creation, views, reference counting. */
#include "nn_internal.h"
#include "core/half.h"

#include <math.h>
#include <string.h>

bool nn__check_f32(const nn_tensor *t, const char *fn, const char *name) {
    if (!nn__check_tensor(t, fn, name)) return false;
    if (t->dtype != NN_DTYPE_F32) {
        nn__err(NN_ERR_DTYPE, "%s: argument '%s' has dtype %s, expected f32", fn, name,
                nn_dtype_name(t->dtype));
        return false;
    }
    return true;
}

static bool check_dtype(nn_dtype dtype, const char *fn) {
    if (nn_dtype_size(dtype) == 0) {
        nn__err(NN_ERR_DTYPE, "%s: dtype %d (%s) is not supported", fn, (int)dtype,
                nn_dtype_name(dtype));
        return false;
    }
    return true;
}

/* Shapes accepted by nn__shape_numel have non-zero sizes whose product fits
 * in int64_t / 8, so these strides fit. The arithmetic is unsigned so that a
 * shape not yet checked cannot cause signed overflow (undefined behaviour)
 * before nn__shape_numel rejects it. */
void nn__contiguous_strides(const int64_t *shape, int ndim, int64_t *strides) {
    uint64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = (int64_t)s;
        s *= shape[i] > 0 ? (uint64_t)shape[i] : 1;
    }
}

bool nn__is_contiguous(const nn_tensor *t) {
    uint64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && (uint64_t)t->strides[i] != s) return false;
        s *= (uint64_t)t->shape[i];
    }
    return true;
}

bool nn__same_shape(const nn_tensor *a, const nn_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

static nn_tensor *tensor_struct(nn_dtype dtype, const int64_t *shape, int ndim, int64_t numel) {
    nn_tensor *t = nn__calloc(1, sizeof *t);
    if (!t) return NULL;
    nn__handle_set(&t->handle, NN__KIND_TENSOR);
    t->refs = 1;
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim > 0) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    nn__contiguous_strides(t->shape, ndim, t->strides);
    t->numel = numel;
    return t;
}

/* Optional per-thread cap on tensor bytes (see nn__tensor_budget). */
static _Thread_local uint64_t *tl_budget;

void nn__tensor_budget(uint64_t *remaining) { tl_budget = remaining; }

static nn_tensor *tensor_new(nn_dtype dtype, const int64_t *shape, int ndim, const char *fn) {
    int64_t numel;
    if (!check_dtype(dtype, fn) || !nn__shape_numel(shape, ndim, &numel, fn)) return NULL;
    size_t nbytes;
    if (!nn__size_mul((size_t)numel, nn_dtype_size(dtype), &nbytes)) {
        nn__err(NN_ERR_OVERFLOW, "%s: tensor byte size overflows", fn);
        return NULL;
    }
    if (tl_budget) {
        if (nbytes > *tl_budget) {
            nn__err(NN_ERR_LIMIT,
                    "%s: a tensor of %zu bytes exceeds the %llu bytes the input justifies", fn,
                    nbytes, (unsigned long long)*tl_budget);
            return NULL;
        }
        *tl_budget -= nbytes;
    }
    nn_tensor *t = tensor_struct(dtype, shape, ndim, numel);
    if (!t) return NULL;
    t->storage = nn__calloc(1, sizeof *t->storage);
    if (!t->storage) goto fail;
    t->storage->refs = 1;
    t->storage->owned = true;
    t->storage->nbytes = nbytes;
    t->storage->data = nn__aligned_alloc(nbytes);
    if (!t->storage->data) goto fail;
    return t;
fail:
    nn__free(t->storage);
    nn__free(t);
    return NULL;
}

nn_tensor *nn__tensor_new(nn_dtype dtype, const int64_t *shape, int ndim) {
    return tensor_new(dtype, shape, ndim, "nn_tensor_empty");
}

static _Thread_local bool tl_skip_init;

void nn__tensor_skip_init(bool on) { tl_skip_init = on; }
bool nn__tensor_init_skipped(void) { return tl_skip_init; }

nn_tensor *nn__zeros(nn_dtype dtype, const int64_t *shape, int ndim) {
    nn_tensor *t = nn__tensor_new(dtype, shape, ndim);
    if (t && !tl_skip_init) memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

nn_tensor *nn__empty_like(const nn_tensor *t) {
    return nn__tensor_new(t->dtype, t->shape, t->ndim);
}
nn_tensor *nn__zeros_like(const nn_tensor *t) { return nn__zeros(t->dtype, t->shape, t->ndim); }

nn_tensor *nn__scalar_f32(float v) {
    nn_tensor *t = nn__tensor_new(NN_DTYPE_F32, NULL, 0);
    if (t) nn__f32(t)[0] = v;
    return t;
}

static void storage_release(nn_storage *s) {
    if (!s) return;
    if (--s->refs > 0) return;
    if (s->owned)
        nn__aligned_free(s->data);
    else if (s->deleter)
        s->deleter(s->data, s->user);
    nn__free(s);
}

void nn__tensor_mem_tag(nn_tensor *t, int cat) {
    if (t && t->storage && t->storage->owned) nn__mem_retag(t->storage->data, cat);
}

void nn__tensor_retain(nn_tensor *t) {
    if (t) t->refs++;
}

void nn__tensor_release(nn_tensor *t) {
    if (!t) return;
    if (--t->refs > 0) return;
    nn_node *fn = t->grad_fn;
    nn_tensor *g = t->grad;
    nn_storage *s = t->storage;
    nn__handle_clear(&t->handle);
    nn__free(t);
    storage_release(s);
    nn__tensor_release(g);
    nn__node_release(fn);
}

nn_tensor *nn_tensor_retain(nn_tensor *t) {
    if (!nn__check_tensor(t, "nn_tensor_retain", "t")) return NULL;
    t->refs++;
    return t;
}

void nn_tensor_free(nn_tensor *t) {
    if (!t) return;
    if (!nn__handle_check(t, NN__KIND_TENSOR, "nn_tensor_free", "t")) return;
    if (t->refs <= t->scope_refs) {
        nn__err(
            NN_ERR_STATE,
            "nn_tensor_free: this reference belongs to an open scope; nn_scope_end releases it");
        return;
    }
    nn__tensor_release(t);
}

nn_tensor *nn__view(const nn_tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                    int64_t offset) {
    int64_t numel;
    if (!nn__shape_numel(shape, ndim, &numel, "view")) return NULL;
    nn_tensor *v = tensor_struct(t->dtype, shape, ndim, numel);
    if (!v) return NULL;
    if (ndim > 0) memcpy(v->strides, strides, sizeof(int64_t) * (size_t)ndim);
    v->offset = offset;
    v->storage = t->storage;
    v->storage->refs++;
    return v;
}

nn_tensor *nn__alias(const nn_tensor *t) {
    return nn__view(t, t->shape, t->strides, t->ndim, t->offset);
}

int64_t nn__flat_offset(const nn_tensor *t, int64_t i) {
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t sz = t->shape[d];
        off += (i % sz) * t->strides[d];
        i /= sz;
    }
    return off;
}

double nn__load_elem(nn_dtype dt, const void *base, int64_t off) {
    switch (dt) {
    case NN_DTYPE_F32: return ((const float *)base)[off];
    case NN_DTYPE_I64: return (double)((const int64_t *)base)[off];
    case NN_DTYPE_U8: return ((const uint8_t *)base)[off];
    case NN_DTYPE_F16: return nn__f16_to_f32(((const uint16_t *)base)[off]);
    case NN_DTYPE_BF16: return nn__bf16_to_f32(((const uint16_t *)base)[off]);
    case NN_DTYPE_I8: return ((const int8_t *)base)[off];
    default: return NAN;
    }
}

double nn__get_flat(const nn_tensor *t, int64_t i) {
    int64_t off = nn__is_contiguous(t) ? t->offset + i : nn__flat_offset(t, i);
    return nn__load_elem(t->dtype, t->storage->data, off);
}

/* Copy t's elements (any layout) into dense row-major dst of t's dtype. */
static void gather_dense(const nn_tensor *t, void *dst) {
    size_t es = nn_dtype_size(t->dtype);
    const unsigned char *base = t->storage->data;
    unsigned char *out = dst;
    if (nn__is_contiguous(t)) {
        memcpy(out, base + (size_t)t->offset * es, (size_t)t->numel * es);
        return;
    }
    /* Walk with an index counter; the innermost dim is copied in a loop. */
    int nd = t->ndim;
    int64_t idx[NN_MAX_DIMS] = {0};
    int64_t inner = t->shape[nd - 1], istride = t->strides[nd - 1];
    int64_t rows = t->numel / (inner ? inner : 1);
    for (int64_t r = 0; r < rows && inner > 0; r++) {
        int64_t off = t->offset;
        for (int d = 0; d < nd - 1; d++) off += idx[d] * t->strides[d];
        if (es == 4) {
            const float *s = (const float *)base + off;
            float *o = (float *)out;
            for (int64_t j = 0; j < inner; j++) o[j] = s[j * istride];
        } else if (es == 8) {
            const int64_t *s = (const int64_t *)base + off;
            int64_t *o = (int64_t *)out;
            for (int64_t j = 0; j < inner; j++) o[j] = s[j * istride];
        } else if (es == 2) {
            const uint16_t *s = (const uint16_t *)base + off;
            uint16_t *o = (uint16_t *)out;
            for (int64_t j = 0; j < inner; j++) o[j] = s[j * istride];
        } else {
            const uint8_t *s = base + off;
            for (int64_t j = 0; j < inner; j++) out[j] = s[j * istride];
        }
        out += (size_t)inner * es;
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

void nn__scatter_dense(nn_tensor *t, const void *src) {
    size_t es = nn_dtype_size(t->dtype);
    unsigned char *base = t->storage->data;
    const unsigned char *in = src;
    if (nn__is_contiguous(t)) {
        memcpy(base + (size_t)t->offset * es, in, (size_t)t->numel * es);
        return;
    }
    /* gather_dense's walk, writing: rows of the innermost dim at a time
     * (a slice's gradient scattered with one flat_offset per element took
     * 3% of a transformer layer's training step). */
    int nd = t->ndim;
    int64_t idx[NN_MAX_DIMS] = {0};
    int64_t inner = t->shape[nd - 1], istride = t->strides[nd - 1];
    int64_t rows = t->numel / (inner ? inner : 1);
    for (int64_t r = 0; r < rows && inner > 0; r++) {
        int64_t off = t->offset;
        for (int d = 0; d < nd - 1; d++) off += idx[d] * t->strides[d];
        if (istride == 1) {
            memcpy(base + (size_t)off * es, in, (size_t)inner * es);
        } else {
            for (int64_t j = 0; j < inner; j++)
                memcpy(base + (size_t)(off + j * istride) * es, in + (size_t)j * es, es);
        }
        in += (size_t)inner * es;
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

nn_tensor *nn__clone(const nn_tensor *t) {
    nn_tensor *c = nn__tensor_new(t->dtype, t->shape, t->ndim);
    if (c) gather_dense(t, c->storage->data);
    return c;
}

nn_tensor *nn__contig(const nn_tensor *t) {
    if (nn__is_contiguous(t)) {
        nn_tensor *m = (nn_tensor *)t;
        m->refs++;
        return m;
    }
    return nn__clone(t);
}

static void store_elem(nn_dtype dt, void *base, int64_t i, double v) {
    switch (dt) {
    case NN_DTYPE_F32: ((float *)base)[i] = (float)v; break;
    case NN_DTYPE_I64:
        ((int64_t *)base)[i] = isnan(v)       ? 0
                               : v >= 9.2e18  ? INT64_MAX
                               : v <= -9.2e18 ? INT64_MIN
                                              : (int64_t)v;
        break;
    case NN_DTYPE_U8:
        ((uint8_t *)base)[i] = isnan(v) || v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
        break;
    /* A double goes to f16 / bf16 through f32: correct to nearest except
     * for doubles within half an f32 ulp of a 16-bit tie (double rounding);
     * every value an f32 tensor holds converts exactly as nn_tensor_to does. */
    case NN_DTYPE_F16: ((uint16_t *)base)[i] = nn__f32_to_f16((float)v); break;
    case NN_DTYPE_BF16: ((uint16_t *)base)[i] = nn__f32_to_bf16((float)v); break;
    case NN_DTYPE_I8: ((int8_t *)base)[i] = nn__double_to_i8(v); break;
    default: break;
    }
}

nn_tensor *nn__cast(const nn_tensor *t, nn_dtype dtype) {
    if (!check_dtype(dtype, "nn_tensor_to")) return NULL;
    if (dtype == t->dtype) return nn__clone(t);
    nn_tensor *c = nn__tensor_new(dtype, t->shape, t->ndim);
    if (!c) return NULL;
    nn_tensor *src = nn__contig(t);
    if (!src) {
        nn__tensor_release(c);
        return NULL;
    }
    void *d = c->storage->data;
    int64_t n = t->numel;
    const void *sp = (const unsigned char *)src->storage->data +
                     (size_t)src->offset * nn_dtype_size(src->dtype);
    if (nn__convert(src->dtype, dtype, sp, d, (size_t)n)) {
        /* f32 <-> f16 / bf16: the backend's conversion kernels */
    } else if ((src->dtype == NN_DTYPE_F16 || src->dtype == NN_DTYPE_BF16) &&
               (dtype == NN_DTYPE_F16 || dtype == NN_DTYPE_BF16)) {
        /* f16 <-> bf16: through f32 (exact), then rounded once */
        for (int64_t i = 0; i < n; i++) store_elem(dtype, d, i, nn__get_flat(src, i));
    } else if (src->dtype == NN_DTYPE_U8 && dtype == NN_DTYPE_F32) {
        const uint8_t *s = nn__u8(src);
        float *o = d;
        for (int64_t i = 0; i < n; i++) o[i] = s[i];
    } else if (src->dtype == NN_DTYPE_I64 && dtype == NN_DTYPE_F32) {
        const int64_t *s = nn__i64(src);
        float *o = d;
        for (int64_t i = 0; i < n; i++) o[i] = (float)s[i];
    } else {
        for (int64_t i = 0; i < n; i++) store_elem(dtype, d, i, nn__get_flat(src, i));
    }
    nn__tensor_release(src);
    return c;
}

void nn__store_elem(nn_dtype dt, void *base, int64_t i, double v) { store_elem(dt, base, i, v); }

/* ------------------------------------------------------------ public API */

nn_tensor *nn_tensor_empty(nn_dtype dtype, const int64_t *shape, int ndim) {
    return nn__track(tensor_new(dtype, shape, ndim, "nn_tensor_empty"));
}

nn_tensor *nn_tensor_zeros(nn_dtype dtype, const int64_t *shape, int ndim) {
    nn_tensor *t = tensor_new(dtype, shape, ndim, "nn_tensor_zeros");
    if (t) memset(t->storage->data, 0, t->storage->nbytes);
    return nn__track(t);
}

static nn_tensor *full(nn_dtype dtype, const int64_t *shape, int ndim, double v, const char *fn) {
    nn_tensor *t = tensor_new(dtype, shape, ndim, fn);
    if (!t) return NULL;
    if (dtype == NN_DTYPE_F32) {
        float *p = nn__f32(t), fv = (float)v;
        for (int64_t i = 0; i < t->numel; i++) p[i] = fv;
    } else {
        for (int64_t i = 0; i < t->numel; i++) store_elem(dtype, t->storage->data, i, v);
    }
    return t;
}

nn_tensor *nn_tensor_ones(nn_dtype dtype, const int64_t *shape, int ndim) {
    return nn__track(full(dtype, shape, ndim, 1.0, "nn_tensor_ones"));
}

nn_tensor *nn_tensor_full(nn_dtype dtype, const int64_t *shape, int ndim, double value) {
    return nn__track(full(dtype, shape, ndim, value, "nn_tensor_full"));
}

nn_tensor *nn_arange(double start, double end, double step, nn_dtype dtype) {
    if (!isfinite(start) || !isfinite(end) || !isfinite(step) || step == 0)
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_arange: start %g, end %g, step %g: need finite values, step != 0",
                        start, end, step);
    double count = ceil((end - start) / step);
    if (count < 0) count = 0;
    if (count > 1e15) return NN__FAIL(NN_ERR_LIMIT, "nn_arange: %g elements is too many", count);
    int64_t n = (int64_t)count;
    nn_tensor *t = tensor_new(dtype, &n, 1, "nn_arange");
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++)
        store_elem(dtype, t->storage->data, i, start + (double)i * step);
    return nn__track(t);
}

nn_tensor *nn_linspace(double start, double end, int64_t steps) {
    if (steps < 0 || !isfinite(start) || !isfinite(end))
        return NN__FAIL(NN_ERR_INVALID, "nn_linspace: steps %lld, start %g, end %g",
                        (long long)steps, start, end);
    nn_tensor *t = tensor_new(NN_DTYPE_F32, &steps, 1, "nn_linspace");
    if (!t) return NULL;
    float *p = nn__f32(t);
    double d = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
    for (int64_t i = 0; i < steps; i++) p[i] = (float)(start + d * (double)i);
    if (steps > 1) p[steps - 1] = (float)end;
    return nn__track(t);
}

nn_tensor *nn_tensor_from_data(nn_dtype dtype, const int64_t *shape, int ndim, const void *data) {
    nn_tensor *t = tensor_new(dtype, shape, ndim, "nn_tensor_from_data");
    if (!t) return NULL;
    if (t->numel > 0) {
        if (!data) {
            nn__tensor_release(t);
            return NN__FAIL(NN_ERR_NULL, "nn_tensor_from_data: data is NULL");
        }
        memcpy(t->storage->data, data, t->storage->nbytes);
    }
    return nn__track(t);
}

nn_tensor *nn__tensor_wrap(nn_dtype dtype, const int64_t *shape, int ndim, void *data,
                           nn_deleter_fn deleter, void *user, const char *fn) {
    int64_t numel;
    if (!check_dtype(dtype, fn) || !nn__shape_numel(shape, ndim, &numel, fn)) return NULL;
    if (!data) return NN__FAIL(NN_ERR_NULL, "%s: data is NULL", fn);
    if ((uintptr_t)data % nn_dtype_size(dtype) != 0)
        return NN__FAIL(NN_ERR_INVALID, "%s: data %p is not aligned to %zu bytes", fn, data,
                        nn_dtype_size(dtype));
    nn_tensor *t = tensor_struct(dtype, shape, ndim, numel);
    if (!t) return NULL;
    t->storage = nn__calloc(1, sizeof *t->storage);
    if (!t->storage) {
        nn__free(t);
        return NULL;
    }
    t->storage->refs = 1;
    t->storage->data = data;
    t->storage->nbytes = (size_t)numel * nn_dtype_size(dtype);
    t->storage->deleter = deleter;
    t->storage->user = user;
    return t;
}

nn_tensor *nn_tensor_from_blob(nn_dtype dtype, const int64_t *shape, int ndim, void *data,
                               nn_deleter_fn deleter, void *user) {
    return nn__track(
        nn__tensor_wrap(dtype, shape, ndim, data, deleter, user, "nn_tensor_from_blob"));
}

nn_status nn__tensor_adopt(nn_tensor *dst, nn_tensor *src, const char *fn) {
    if (dst->dtype != src->dtype || !nn__same_shape(dst, src) || !nn__is_contiguous(dst) ||
        !nn__is_contiguous(src))
        return nn__err(NN_ERR_STATE, "%s: cannot adopt the storage of a %s tensor", fn,
                       nn_dtype_name(src->dtype));
    if (dst->storage == src->storage && dst->offset == src->offset) return NN_OK;
    src->storage->refs++;
    storage_release(dst->storage);
    dst->storage = src->storage;
    dst->offset = src->offset;
    return NN_OK;
}

nn_tensor *nn_tensor_clone(const nn_tensor *t) {
    if (!nn__check_tensor(t, "nn_tensor_clone", "t")) return NULL;
    return nn__track(nn__clone(t));
}

nn_tensor *nn_tensor_to(const nn_tensor *t, nn_dtype dtype) {
    if (!nn__check_tensor(t, "nn_tensor_to", "t")) return NULL;
    return nn__track(nn__cast(t, dtype));
}
