/* Reading and writing tensors: getters, element access, fill, compare, print. */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>


int nn_tensor_ndim(const nn_tensor *t) {
    return nn__check_tensor(t, "nn_tensor_ndim", "t") ? t->ndim : -1;
}

const int64_t *nn_tensor_shape(const nn_tensor *t) {
    return nn__check_tensor(t, "nn_tensor_shape", "t") ? t->shape : NULL;
}

int64_t nn_tensor_size(const nn_tensor *t, int dim) {
    if (!nn__check_tensor(t, "nn_tensor_size", "t")) return -1;
    if (t->ndim == 0 || !nn__norm_dim(&dim, t->ndim, "nn_tensor_size")) {
        if (t->ndim == 0) nn__err(NN_ERR_RANGE, "nn_tensor_size: a 0-d tensor has no dims");
        return -1;
    }
    return t->shape[dim];
}

int64_t nn_tensor_numel(const nn_tensor *t) {
    return nn__check_tensor(t, "nn_tensor_numel", "t") ? t->numel : -1;
}

nn_dtype nn_tensor_dtype(const nn_tensor *t) {
    return nn__check_tensor(t, "nn_tensor_dtype", "t") ? t->dtype : NN_DTYPE_F32;
}

bool nn_tensor_is_contiguous(const nn_tensor *t) {
    return nn__check_tensor(t, "nn_tensor_is_contiguous", "t") && nn__is_contiguous(t);
}

void *nn_tensor_data(nn_tensor *t) {
    if (!nn__check_tensor(t, "nn_tensor_data", "t")) return NULL;
    if (!nn__is_contiguous(t))
        return NN__FAIL(NN_ERR_STATE,
                        "nn_tensor_data: tensor is not contiguous; call nn_tensor_contiguous");
    return (unsigned char *)t->storage->data + (size_t)t->offset * nn_dtype_size(t->dtype);
}

nn_status nn_tensor_copy_to(const nn_tensor *t, void *dst, size_t nbytes) {
    if (!nn__check_tensor(t, "nn_tensor_copy_to", "t")) return nn_last_status();
    size_t need = (size_t)t->numel * nn_dtype_size(t->dtype);
    if (need && !dst) return nn__err(NN_ERR_NULL, "nn_tensor_copy_to: dst is NULL");
    if (nbytes < need)
        return nn__err(NN_ERR_RANGE, "nn_tensor_copy_to: buffer of %zu bytes, need %zu", nbytes,
                       need);
    nn_tensor *c = nn__contig(t);
    if (!c) return nn_last_status();
    if (need)
        memcpy(dst, (unsigned char *)c->storage->data + (size_t)c->offset * nn_dtype_size(c->dtype),
               need);
    nn__tensor_release(c);
    return nn__ok();
}

nn_status nn_tensor_copy_from(nn_tensor *t, const void *src, size_t nbytes) {
    if (!nn__check_tensor(t, "nn_tensor_copy_from", "t")) return nn_last_status();
    size_t es = nn_dtype_size(t->dtype), need = (size_t)t->numel * es;
    if (need && !src) return nn__err(NN_ERR_NULL, "nn_tensor_copy_from: src is NULL");
    if (nbytes < need)
        return nn__err(NN_ERR_RANGE, "nn_tensor_copy_from: %zu bytes given, need %zu", nbytes,
                       need);
    if (need) nn__scatter_dense(t, src);
    return nn__ok();
}

double nn_tensor_item(const nn_tensor *t) {
    if (!nn__check_tensor(t, "nn_tensor_item", "t")) return NAN;
    if (t->numel != 1) {
        nn__err(NN_ERR_SHAPE, "nn_tensor_item: tensor has %lld elements, expected 1",
                (long long)t->numel);
        return NAN;
    }
    return nn__get_flat(t, 0);
}

static bool elem_offset(const nn_tensor *t, const int64_t *idx, int64_t *off, const char *fn) {
    if (t->ndim > 0 && !idx) {
        nn__err(NN_ERR_NULL, "%s: idx is NULL", fn);
        return false;
    }
    int64_t o = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        int64_t i = idx[d];
        if (i < -t->shape[d] || i >= t->shape[d]) {
            nn__err(NN_ERR_RANGE, "%s: index %lld out of range for dim %d of size %lld", fn,
                    (long long)i, d, (long long)t->shape[d]);
            return false;
        }
        if (i < 0) i += t->shape[d];
        o += i * t->strides[d];
    }
    *off = o;
    return true;
}

nn_status nn_tensor_get(const nn_tensor *t, const int64_t *idx, double *out) {
    if (!nn__check_tensor(t, "nn_tensor_get", "t")) return nn_last_status();
    if (!out) return nn__err(NN_ERR_NULL, "nn_tensor_get: out is NULL");
    int64_t off;
    if (!elem_offset(t, idx, &off, "nn_tensor_get")) return nn_last_status();
    *out = nn__load_elem(t->dtype, t->storage->data, off);
    return nn__ok();
}

nn_status nn_tensor_set(nn_tensor *t, const int64_t *idx, double value) {
    if (!nn__check_tensor(t, "nn_tensor_set", "t")) return nn_last_status();
    int64_t off;
    if (!elem_offset(t, idx, &off, "nn_tensor_set")) return nn_last_status();
    nn__store_elem(t->dtype, t->storage->data, off, value);
    return nn__ok();
}

nn_status nn_tensor_fill(nn_tensor *t, double value) {
    if (!nn__check_tensor(t, "nn_tensor_fill", "t")) return nn_last_status();
    if (t->dtype == NN_DTYPE_F32 && nn__is_contiguous(t)) {
        float *p = nn__f32(t), v = (float)value;
        for (int64_t i = 0; i < t->numel; i++) p[i] = v;
        return nn__ok();
    }
    for (int64_t i = 0; i < t->numel; i++)
        nn__store_elem(t->dtype, t->storage->data, nn__flat_offset(t, i), value);
    return nn__ok();
}

nn_status nn_tensor_assign(nn_tensor *t, const nn_tensor *src) {
    if (!nn__check_tensor(t, "nn_tensor_assign", "t") ||
        !nn__check_tensor(src, "nn_tensor_assign", "src"))
        return nn_last_status();
    if (!nn__same_shape(t, src)) {
        char a[128], b[128];
        return nn__err(NN_ERR_SHAPE, "nn_tensor_assign: shapes %s and %s differ",
                       nn__shape_str(t->shape, t->ndim, a, sizeof a),
                       nn__shape_str(src->shape, src->ndim, b, sizeof b));
    }
    if (t->dtype == src->dtype && nn__is_contiguous(t) && nn__is_contiguous(src)) {
        size_t es = nn_dtype_size(t->dtype);
        memmove((unsigned char *)t->storage->data + (size_t)t->offset * es,
                (const unsigned char *)src->storage->data + (size_t)src->offset * es,
                (size_t)t->numel * es);
        return nn__ok();
    }
    /* Read everything first so that overlapping views behave. */
    nn_tensor *c = nn__cast(src, t->dtype);
    if (!c) return nn_last_status();
    nn_status st = nn_tensor_copy_from(t, c->storage->data, c->storage->nbytes);
    nn__tensor_release(c);
    return st;
}

bool nn_tensor_equal(const nn_tensor *a, const nn_tensor *b) {
    if (!nn__check_tensor(a, "nn_tensor_equal", "a") ||
        !nn__check_tensor(b, "nn_tensor_equal", "b"))
        return false;
    if (a->dtype != b->dtype || !nn__same_shape(a, b)) return false;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = nn__get_flat(a, i), y = nn__get_flat(b, i);
        if (!(x == y)) return false;
    }
    return true;
}

bool nn_tensor_allclose(const nn_tensor *a, const nn_tensor *b, double rtol, double atol) {
    if (!nn__check_tensor(a, "nn_tensor_allclose", "a") ||
        !nn__check_tensor(b, "nn_tensor_allclose", "b"))
        return false;
    if (!nn__same_shape(a, b)) return false;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = nn__get_flat(a, i), y = nn__get_flat(b, i);
        if (isnan(x) || isnan(y)) return false;
        if (x == y) continue; /* equal infinities */
        if (!(fabs(x - y) <= atol + rtol * fabs(y))) return false;
    }
    return true;
}

/* A growable string for formatting. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} strbuf;

static void sb_put(strbuf *sb, const char *fmt, ...) NN__PRINTF(2, 3);
static void sb_put(strbuf *sb, const char *fmt, ...) {
    if (sb->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->failed = true;
            return;
        }
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t ncap = sb->cap * 2 + (size_t)n;
        char *nb = nn__realloc(sb->buf, ncap);
        if (!nb) {
            sb->failed = true;
            return;
        }
        sb->buf = nb;
        sb->cap = ncap;
    }
}

static void format_rec(strbuf *sb, const nn_tensor *t, int dim, int64_t base, int max_items) {
    if (dim == t->ndim) {
        double v = nn__get_flat(t, base);
        if (t->dtype == NN_DTYPE_F32 || t->dtype == NN_DTYPE_F16 || t->dtype == NN_DTYPE_BF16)
            sb_put(sb, "%.6g", v);
        else
            sb_put(sb, "%lld", (long long)v);
        return;
    }
    int64_t n = t->shape[dim], stride = 1;
    for (int d = dim + 1; d < t->ndim; d++) stride *= t->shape[d];
    sb_put(sb, "[");
    int64_t head = n, tail = 0;
    if (max_items > 0 && n > max_items) {
        head = (max_items + 1) / 2;
        tail = max_items / 2;
    }
    for (int64_t i = 0; i < n; i++) {
        if (i == head && tail + head < n) {
            sb_put(sb, "..., ");
            i = n - tail;
            if (i >= n) break;
        }
        format_rec(sb, t, dim + 1, base + i * stride, max_items);
        if (i + 1 < n) sb_put(sb, dim + 1 == t->ndim ? ", " : ",\n ");
    }
    sb_put(sb, "]");
}

char *nn_tensor_format(const nn_tensor *t, int max_items) {
    if (!nn__check_tensor(t, "nn_tensor_format", "t")) return NULL;
    strbuf sb = {nn__malloc(128), 0, 128, false};
    if (!sb.buf) return NULL;
    char shp[160];
    sb_put(&sb, "tensor(%s, %s%s)\n", nn__shape_str(t->shape, t->ndim, shp, sizeof shp),
           nn_dtype_name(t->dtype), t->requires_grad ? ", requires_grad" : "");
    format_rec(&sb, t, 0, 0, max_items);
    if (sb.failed) {
        nn__free(sb.buf);
        return NN__FAIL(NN_ERR_NOMEM, "nn_tensor_format: out of memory");
    }
    return sb.buf;
}

nn_status nn_tensor_print(const nn_tensor *t) {
    char *s = nn_tensor_format(t, 6);
    if (!s) return nn_last_status();
    puts(s);
    nn__free(s);
    return nn__ok();
}
