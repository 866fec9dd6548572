/* Tensor tables: named tensors with dtype, shape and (compressed) data
 * (FORMAT.md 5). Decoding validates the whole table against the bytes
 * present before allocating any tensor. */
#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODEC_STORED 0
#define CODEC_ZLIB 1
/* name length (4) + dtype, ndim, codec, reserved (4) + offset, stored, raw (24) */
#define MIN_ENTRY 32

static bool host_is_le(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Reverse each element's bytes in place (big-endian hosts only). */
static void swap_elems(uint8_t *p, size_t nbytes, size_t es) {
    for (size_t i = 0; i + es <= nbytes; i += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            uint8_t t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
}

/* ------------------------------------------------------------ encoding */

typedef struct blob {
    uint8_t *p; /* owned bytes to write (compressed or a LE copy) */
    size_t len, raw;
    uint8_t codec;
} blob;

/* Little-endian bytes of t, compressed at level if that makes them smaller. */
static nn_status make_blob(const nn_tensor *t, int level, blob *b, const char *fn,
                           const char *name) {
    size_t es = nn_dtype_size(t->dtype);
    if (es == 0)
        return nn__err(NN_ERR_DTYPE, "%s: tensor '%s' has unsupported dtype %s", fn, name,
                       nn_dtype_name(t->dtype));
    size_t raw = (size_t)t->numel * es; /* the tensor exists, so this fits */
    uint8_t *bytes = nn__malloc(raw);
    if (!bytes) return NN_ERR_NOMEM;
    nn_status st = nn_tensor_copy_to(t, bytes, raw);
    if (st) {
        nn__free(bytes);
        return st;
    }
    if (!host_is_le()) swap_elems(bytes, raw, es);
    b->raw = raw;
    b->codec = CODEC_STORED;
    b->p = bytes;
    b->len = raw;
    if (level > 0 && raw > 0) {
        uint8_t *z;
        size_t zlen;
        st = nn__deflate(bytes, raw, level, &z, &zlen);
        if (st) {
            nn__free(bytes);
            b->p = NULL;
            return st;
        }
        if (zlen < raw) { /* keep whichever is smaller */
            nn__free(bytes);
            b->p = z;
            b->len = zlen;
            b->codec = CODEC_ZLIB;
        } else {
            nn__free(z);
        }
    }
    return NN_OK;
}

nn_status nn__tensors_encode(const nn__named_list *l, int level, nn__wbuf *w, const char *fn) {
    return nn__tensors_encode_ex(l, level, w, -1, fn);
}

/* Bytes of the table before the data area (count .. data size). */
static uint64_t table_bytes(const nn__named_list *l) {
    uint64_t b = 8 + 8;
    for (int64_t i = 0; i < l->n; i++)
        b += 4 + strlen(l->e[i].name) + 4 + 8 * (uint64_t)l->e[i].t->ndim + 24;
    return b;
}

static uint64_t align_pad(uint64_t at) { return (NN__IO_ALIGN - at % NN__IO_ALIGN) % NN__IO_ALIGN; }

nn_status nn__tensors_encode_ex(const nn__named_list *l, int level, nn__wbuf *w, int64_t base,
                                const char *fn) {
    if (base >= 0) level = 0; /* aligned tables store every tensor */
    if (l->n > (int64_t)NN__IO_MAX_ENTRIES)
        return nn__err(NN_ERR_LIMIT, "%s: %lld tensors exceed the limit of %u", fn, (long long)l->n,
                       NN__IO_MAX_ENTRIES);
    blob *b = nn__calloc((size_t)(l->n ? l->n : 1), sizeof *b);
    if (!b) return NN_ERR_NOMEM;
    nn_status st = NN_OK;
    for (int64_t i = 0; i < l->n && !st; i++) {
        if (!nn__check_tensor(l->e[i].t, fn, "tensor"))
            st = nn_last_status();
        else if (strlen(l->e[i].name) == 0 || strlen(l->e[i].name) > NN__IO_MAX_NAME)
            st = nn__err(NN_ERR_INVALID, "%s: tensor name of length %zu", fn, strlen(l->e[i].name));
        else
            st = make_blob(l->e[i].t, level, &b[i], fn, l->e[i].name);
    }
    if (!st) {
        nn__wbuf_u32(w, (uint32_t)l->n);
        nn__wbuf_u32(w, 0);
        uint64_t off = 0, data_at = base >= 0 ? (uint64_t)base + table_bytes(l) : 0;
        for (int64_t i = 0; i < l->n; i++) {
            if (base >= 0) off += align_pad(data_at + off);
            const nn_tensor *t = l->e[i].t;
            nn__wbuf_str(w, l->e[i].name);
            uint8_t hdr[4] = {(uint8_t)t->dtype, (uint8_t)t->ndim, b[i].codec, 0};
            nn__wbuf_bytes(w, hdr, 4);
            for (int d = 0; d < t->ndim; d++) nn__wbuf_u64(w, (uint64_t)t->shape[d]);
            nn__wbuf_u64(w, off);
            nn__wbuf_u64(w, b[i].len);
            nn__wbuf_u64(w, b[i].raw);
            off += b[i].len;
        }
        nn__wbuf_u64(w, off);
        static const uint8_t zeros[NN__IO_ALIGN];
        uint64_t at = 0;
        for (int64_t i = 0; i < l->n; i++) {
            if (base >= 0) {
                uint64_t pad = align_pad(data_at + at);
                nn__wbuf_bytes(w, zeros, (size_t)pad);
                at += pad;
            }
            nn__wbuf_bytes(w, b[i].p, b[i].len);
            at += b[i].len;
        }
        st = w->err;
    }
    for (int64_t i = 0; i < l->n; i++) nn__free(b[i].p);
    nn__free(b);
    return st;
}

/* ------------------------------------------------------------ decoding */

/* Dtype, ndim, shape, sizes and codec of one entry, checked in that order. */
static nn_status check_entry(const nn__tentry *e, int64_t *budget, const char *fn) {
    nn_dtype dt = (nn_dtype)e->dtype;
    if (dt != NN_DTYPE_F32 && dt != NN_DTYPE_I64 && dt != NN_DTYPE_U8 && dt != NN_DTYPE_F16 &&
        dt != NN_DTYPE_BF16 && dt != NN_DTYPE_I8)
        return nn__err(NN_ERR_DTYPE, "%s: tensor '%s' has unknown dtype %u", fn, e->name, e->dtype);
    char where[96];
    snprintf(where, sizeof where, "%s: tensor '%.40s'", fn, e->name);
    int64_t numel;
    if (!nn__shape_numel(e->shape, e->ndim, &numel, where)) return nn_last_status();
    size_t raw;
    if (!nn__size_mul((size_t)numel, nn_dtype_size(dt), &raw))
        return nn__err(NN_ERR_OVERFLOW, "%s: byte size overflows", where);
    if (e->raw != raw)
        return nn__err(NN_ERR_FORMAT, "%s: declares %llu bytes, its shape needs %zu", where,
                       (unsigned long long)e->raw, raw);
    if (e->codec == CODEC_STORED && e->stored != e->raw)
        return nn__err(NN_ERR_FORMAT, "%s: stored size %llu differs from its %zu bytes", where,
                       (unsigned long long)e->stored, raw);
    if (e->codec == CODEC_ZLIB) {
        size_t cap; /* deflate never packs more than 1032 bytes into one */
        if (nn__size_mul((size_t)e->stored, NN__IO_ZLIB_MAX_RATIO, &cap) && raw > cap)
            return nn__err(NN_ERR_LIMIT,
                           "%s: %zu bytes from %llu compressed exceeds zlib's "
                           "maximum ratio of %u:1",
                           where, raw, (unsigned long long)e->stored, NN__IO_ZLIB_MAX_RATIO);
    } else if (e->codec != CODEC_STORED) {
        return nn__err(NN_ERR_FORMAT, "%s: unknown codec %u", where, e->codec);
    }
    if ((uint64_t)*budget < raw)
        return nn__err(NN_ERR_LIMIT,
                       "%s: %zu bytes exceed the %lld bytes left of the load limit "
                       "(NN_IO_OPTION_MAX_BYTES)",
                       where, raw, (long long)*budget);
    *budget -= (int64_t)raw;
    return NN_OK;
}

static bool read_entry(nn__rd *r, nn__tentry *e) {
    uint8_t hdr[4];
    const uint8_t *h;
    if (!nn__rd_str(r, &e->name, NN__IO_MAX_NAME, "tensor name")) return false;
    if (!nn__rd_bytes(r, &h, 4, "tensor header")) return false;
    memcpy(hdr, h, 4);
    e->dtype = hdr[0];
    e->ndim = hdr[1];
    e->codec = hdr[2];
    if (hdr[3] != 0) {
        nn__err(NN_ERR_FORMAT, "%s: tensor '%s': reserved byte is %u", r->fn, e->name, hdr[3]);
        return r->ok = false;
    }
    if (e->ndim > NN_MAX_DIMS) {
        nn__err(NN_ERR_LIMIT, "%s: tensor '%s': ndim = %u exceeds the limit of %d", r->fn, e->name,
                e->ndim, NN_MAX_DIMS);
        return r->ok = false;
    }
    for (int d = 0; d < e->ndim; d++) nn__rd_i64(r, &e->shape[d], "tensor shape");
    nn__rd_u64(r, &e->offset, "tensor offset");
    nn__rd_u64(r, &e->stored, "tensor stored size");
    nn__rd_u64(r, &e->raw, "tensor size");
    return r->ok;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const nn__tentry *const *)a)->name, (*(const nn__tentry *const *)b)->name);
}

/* Names unique (sorted neighbours: O(n log n) even for a hostile count). */
static nn_status check_unique(nn__tentry *e, uint32_t n, const char *fn) {
    if (n < 2) return NN_OK;
    nn__tentry **s = nn__malloc(sizeof *s * n);
    if (!s) return NN_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) s[i] = &e[i];
    qsort(s, n, sizeof *s, cmp_name);
    nn_status st = NN_OK;
    for (uint32_t i = 1; i < n && !st; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0)
            st = nn__err(NN_ERR_FORMAT, "%s: tensor name '%s' is repeated", fn, s[i]->name);
    nn__free(s);
    return st;
}

/* Offsets must tile the data area exactly: each tensor starts where the
 * previous ended, so no two overlap, every byte belongs to one, and the
 * data can be read front to back in table order. */
static nn_status check_offsets(const nn__tentry *e, uint32_t n, uint64_t data_size,
                               int64_t base, const char *fn) {
    uint64_t expect = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (base >= 0) { /* aligned files: stored data at multiples of 64 in the file */
            expect += ((uint64_t)base + expect) % NN__IO_ALIGN
                          ? NN__IO_ALIGN - ((uint64_t)base + expect) % NN__IO_ALIGN
                          : 0;
            if (e[i].codec != CODEC_STORED)
                return nn__err(NN_ERR_FORMAT,
                               "%s: tensor '%s' is compressed in a file flagged aligned", fn,
                               e[i].name);
        }
        size_t end;
        if (!nn__size_add((size_t)e[i].offset, (size_t)e[i].stored, &end) ||
            e[i].offset > SIZE_MAX || e[i].stored > SIZE_MAX || end > data_size)
            return nn__err(NN_ERR_RANGE,
                           "%s: tensor '%s': data at offset %llu, %llu bytes, "
                           "outside the %llu-byte data area",
                           fn, e[i].name, (unsigned long long)e[i].offset,
                           (unsigned long long)e[i].stored, (unsigned long long)data_size);
        if (e[i].offset != expect)
            return nn__err(NN_ERR_FORMAT,
                           "%s: tensor '%s': data at offset %llu %s (expected "
                           "%llu)",
                           fn, e[i].name, (unsigned long long)e[i].offset,
                           e[i].offset < expect ? "overlaps the previous tensor"
                                                : "leaves a gap after the previous tensor",
                           (unsigned long long)expect);
        expect = end;
    }
    if (expect != data_size)
        return nn__err(NN_ERR_FORMAT, "%s: %llu unused bytes at the end of the data area", fn,
                       (unsigned long long)(data_size - expect));
    return NN_OK;
}

void nn__ttable_free(nn__ttable *t) {
    for (uint32_t i = 0; t->e && i < t->n; i++) nn__free(t->e[i].name);
    nn__free(t->e);
    t->e = NULL;
    t->n = t->next = 0;
}

nn_status nn__ttable_read(nn__rd *r, int64_t *budget, nn__ttable *t, const char *fn) {
    return nn__ttable_read_ex(r, budget, t, -1, fn);
}

nn_status nn__ttable_read_ex(nn__rd *r, int64_t *budget, nn__ttable *t, int64_t r_file_off,
                             const char *fn) {
    memset(t, 0, sizeof *t);
    uint32_t n, reserved;
    if (!nn__rd_count(r, &n, NN__IO_MAX_ENTRIES, MIN_ENTRY, "tensor count") ||
        !nn__rd_u32(r, &reserved, "reserved"))
        return nn_last_status();
    if (reserved)
        return nn__err(NN_ERR_FORMAT, "%s: tensor table reserved field is %u", fn, reserved);
    if (!(t->e = nn__calloc(n ? n : 1, sizeof *t->e))) return NN_ERR_NOMEM;
    t->n = n;
    nn_status st = NN_OK;
    for (uint32_t i = 0; i < n && !st; i++) {
        if (!read_entry(r, &t->e[i])) st = nn_last_status();
        if (!st) st = check_entry(&t->e[i], budget, fn);
        if (!st) t->raw_bytes += t->e[i].raw;
    }
    if (!st) st = check_unique(t->e, n, fn);
    uint64_t data_size = 0;
    if (!st && !nn__rd_u64(r, &data_size, "data area size")) st = nn_last_status();
    if (!st && data_size != nn__rd_left(r))
        st = nn__err(NN_ERR_FORMAT, "%s: data area declares %llu bytes, %zu remain", fn,
                     (unsigned long long)data_size, nn__rd_left(r));
    t->data_at = r_file_off >= 0 ? (uint64_t)r_file_off + r->pos : 0;
    if (!st) st = check_offsets(t->e, n, data_size, r_file_off >= 0 ? (int64_t)t->data_at : -1, fn);
    if (!st && !nn__rd_sub(r, &t->data, data_size, "data area", "data area")) st = nn_last_status();
    if (st) nn__ttable_free(t);
    return st;
}

nn_status nn__ttable_data(nn__ttable *t, void *dst, const char *fn) {
    if (t->next >= t->n)
        return nn__err(NN_ERR_RANGE, "%s: tensor table: all %u entries read", fn, t->n);
    const nn__tentry *e = &t->e[t->next++];
    if (e->offset > t->consumed && /* an aligned file's padding */
        !nn__rd_copy(&t->data, NULL, (size_t)(e->offset - t->consumed), "padding"))
        return nn_last_status();
    t->consumed = e->offset + e->stored;
    if (!dst) return nn__rd_copy(&t->data, NULL, (size_t)e->stored, "tensor data")
                         ? NN_OK
                         : nn_last_status();
    nn_status st = NN_OK;
    if (e->codec == CODEC_STORED) {
        if (!nn__rd_copy(&t->data, dst, (size_t)e->stored, "tensor data")) st = nn_last_status();
    } else {
        st = nn__inflate_rd(&t->data, (size_t)e->stored, dst, (size_t)e->raw, fn, e->name);
    }
    if (!st && !host_is_le()) swap_elems(dst, (size_t)e->raw, nn_dtype_size((nn_dtype)e->dtype));
    return st;
}

nn_status nn__ttable_list(nn__ttable *t, nn__named_list *out, const char *fn) {
    int64_t n = (int64_t)(t->n - t->next);
    nn__named_tensor *e0 = nn__realloc(out->e, sizeof *e0 * (size_t)(out->n + n + 1));
    if (!e0) return NN_ERR_NOMEM;
    out->e = e0;
    out->cap = out->n + n + 1;
    while (t->next < t->n) {
        nn__tentry *e = &t->e[t->next];
        nn_tensor *x = nn__tensor_new((nn_dtype)e->dtype, e->shape, e->ndim);
        if (!x) return nn_last_status();
        uint8_t dummy;
        nn_status st = nn__ttable_data(t, e->raw ? (void *)x->storage->data : &dummy, fn);
        if (st) {
            nn__tensor_release(x);
            return st;
        }
        out->e[out->n].name = e->name; /* ownership moves to out */
        out->e[out->n++].t = x;
        e->name = NULL;
    }
    return NN_OK;
}

nn_status nn__ttable_finish(nn__ttable *t, const char *fn) {
    while (t->next < t->n) {
        nn_status st = nn__ttable_data(t, NULL, fn);
        if (st) return st;
    }
    return nn__rd_end(&t->data) ? NN_OK : nn_last_status();
}
