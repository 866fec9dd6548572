/* Byte-level primitives of the model file format: a growable write buffer,
 * a bounds-checked reader, CRC-32 and zlib wrappers. All values are
 * little-endian and assembled byte by byte, so the host's endianness and
 * alignment never matter. */
#include "io_internal.h"

#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------- write buffer */

uint8_t *nn__wbuf_reserve(nn__wbuf *w, size_t n) {
    if (w->err) return NULL;
    size_t need;
    if (!nn__size_add(w->len, n, &need)) {
        w->err = nn__err(NN_ERR_OVERFLOW, "model file: output size overflows");
        return NULL;
    }
    if (need > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < need) {
            if (!nn__size_mul(cap, 2, &cap)) {
                cap = need;
                break;
            }
        }
        uint8_t *p = nn__realloc(w->p, cap);
        if (!p) {
            w->err = NN_ERR_NOMEM;
            return NULL;
        }
        w->p = p;
        w->cap = cap;
    }
    uint8_t *at = w->p + w->len;
    w->len = need;
    return at;
}

void nn__wbuf_bytes(nn__wbuf *w, const void *data, size_t n) {
    uint8_t *p = nn__wbuf_reserve(w, n);
    if (p && n) memcpy(p, data, n);
}

void nn__put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void nn__put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void nn__wbuf_u8(nn__wbuf *w, uint8_t v) { nn__wbuf_bytes(w, &v, 1); }

void nn__wbuf_u16(nn__wbuf *w, uint16_t v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    nn__wbuf_bytes(w, b, 2);
}

void nn__wbuf_u32(nn__wbuf *w, uint32_t v) {
    uint8_t *p = nn__wbuf_reserve(w, 4);
    if (p) nn__put_u32(p, v);
}

void nn__wbuf_u64(nn__wbuf *w, uint64_t v) {
    uint8_t *p = nn__wbuf_reserve(w, 8);
    if (p) nn__put_u64(p, v);
}

void nn__wbuf_f64(nn__wbuf *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8); /* IEEE-754 binary64 bit pattern */
    nn__wbuf_u64(w, u);
}

void nn__wbuf_str(nn__wbuf *w, const char *s) {
    size_t n = strlen(s);
    if (n > UINT32_MAX) {
        if (!w->err) w->err = nn__err(NN_ERR_LIMIT, "model file: string of %zu bytes", n);
        return;
    }
    nn__wbuf_u32(w, (uint32_t)n);
    nn__wbuf_bytes(w, s, n);
}

void nn__wbuf_free(nn__wbuf *w) {
    nn__free(w->p);
    w->p = NULL;
    w->len = w->cap = 0;
}

/* ------------------------------------------------------------- reader */

uint32_t nn__get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t nn__get_u64(const uint8_t *p) {
    return (uint64_t)nn__get_u32(p) | (uint64_t)nn__get_u32(p + 4) << 32;
}

void nn__rd_init(nn__rd *r, const void *p, size_t len, const char *fn, const char *what) {
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->fn = fn;
    r->what = what;
    r->ok = true;
    r->ld = NULL;
}

void nn__rd_init_ld(nn__rd *r, nn__ld *ld, size_t len, const char *fn, const char *what) {
    nn__rd_init(r, NULL, len, fn, what);
    r->ld = ld;
}

size_t nn__rd_left(const nn__rd *r) { return r->len - r->pos; }

/* Check that n more bytes exist (the common truncation check), consume
 * them and return where they are. */
static const uint8_t *need(nn__rd *r, size_t n, const char *field) {
    if (!r->ok) return NULL;
    if (n > r->len - r->pos) {
        nn__err(NN_ERR_FORMAT, "%s: %s: %s needs %zu bytes at offset %zu, only %zu left", r->fn,
                r->what, field, n, r->pos, r->len - r->pos);
        r->ok = false;
        return NULL;
    }
    /* A reader over a stream (r->ld) has no buffer: p is NULL, and NULL + 0
     * is undefined (UBSan, fuzz_safetensors replaying seed_weights.nnm
     * through nn_model_load from a path); the stream supplies `at`. */
    const uint8_t *at = r->p ? r->p + r->pos : NULL;
    if (r->ld && nn__ld_take(r->ld, n, &at)) {
        r->ok = false;
        return NULL;
    }
    r->pos += n;
    return at;
}

bool nn__rd_bytes(nn__rd *r, const uint8_t **p, size_t n, const char *field) {
    const uint8_t *at = need(r, n, field);
    if (!at) return false;
    *p = at;
    return true;
}

bool nn__rd_u8(nn__rd *r, uint8_t *v, const char *field) {
    const uint8_t *at = need(r, 1, field);
    if (!at) return false;
    *v = at[0];
    return true;
}

bool nn__rd_u16(nn__rd *r, uint16_t *v, const char *field) {
    const uint8_t *at = need(r, 2, field);
    if (!at) return false;
    *v = (uint16_t)(at[0] | at[1] << 8);
    return true;
}

bool nn__rd_u32(nn__rd *r, uint32_t *v, const char *field) {
    const uint8_t *at = need(r, 4, field);
    if (!at) return false;
    *v = nn__get_u32(at);
    return true;
}

bool nn__rd_u64(nn__rd *r, uint64_t *v, const char *field) {
    const uint8_t *at = need(r, 8, field);
    if (!at) return false;
    *v = nn__get_u64(at);
    return true;
}

bool nn__rd_i64(nn__rd *r, int64_t *v, const char *field) {
    uint64_t u;
    if (!nn__rd_u64(r, &u, field)) return false;
    memcpy(v, &u, 8); /* two's complement */
    return true;
}

bool nn__rd_f64(nn__rd *r, double *v, const char *field) {
    uint64_t u;
    if (!nn__rd_u64(r, &u, field)) return false;
    memcpy(v, &u, 8);
    return true;
}

bool nn__rd_str(nn__rd *r, char **s, uint32_t cap, const char *field) {
    uint32_t n;
    if (!nn__rd_u32(r, &n, field)) return false;
    if (n > cap) {
        nn__err(NN_ERR_LIMIT, "%s: %s: %s length %u exceeds the limit of %u bytes", r->fn, r->what,
                field, n, cap);
        return r->ok = false;
    }
    if (n > nn__rd_left(r)) {
        nn__err(NN_ERR_FORMAT, "%s: %s: %s length %u exceeds the %zu bytes left", r->fn, r->what,
                field, n, nn__rd_left(r));
        return r->ok = false;
    }
    const uint8_t *src = need(r, n, field);
    if (!src) return false;
    if (memchr(src, 0, n)) {
        nn__err(NN_ERR_FORMAT, "%s: %s: %s contains a NUL byte", r->fn, r->what, field);
        return r->ok = false;
    }
    char *d = nn__malloc((size_t)n + 1); /* n <= cap < SIZE_MAX: no overflow */
    if (!d) return r->ok = false;
    memcpy(d, src, n);
    d[n] = '\0';
    *s = d;
    return true;
}

bool nn__rd_count(nn__rd *r, uint32_t *n, uint32_t cap, size_t min_item, const char *field) {
    uint32_t v; /* *n is written only once the count is known to be sane */
    if (!nn__rd_u32(r, &v, field)) return false;
    if (v > cap) {
        nn__err(NN_ERR_LIMIT, "%s: %s: %s %u exceeds the limit of %u", r->fn, r->what, field, v,
                cap);
        return r->ok = false;
    }
    size_t bytes;
    if (!nn__size_mul(v, min_item, &bytes) || bytes > nn__rd_left(r)) {
        nn__err(NN_ERR_FORMAT, "%s: %s: %s %u cannot fit in the %zu bytes left", r->fn, r->what,
                field, v, nn__rd_left(r));
        return r->ok = false;
    }
    *n = v;
    return true;
}

bool nn__rd_sub(nn__rd *r, nn__rd *sub, uint64_t n, const char *what, const char *field) {
    if (!r->ok) return false;
    if (n > nn__rd_left(r)) {
        nn__err(NN_ERR_FORMAT, "%s: %s: %s length %llu exceeds the %zu bytes left", r->fn, r->what,
                field, (unsigned long long)n, nn__rd_left(r));
        return r->ok = false;
    }
    nn__rd_init(sub, r->ld ? NULL : r->p + r->pos, (size_t)n, r->fn, what);
    sub->ld = r->ld;
    r->pos += (size_t)n; /* the sub-cursor consumes them from a file */
    return true;
}

bool nn__rd_chunk(nn__rd *r, size_t max, const uint8_t **p, size_t *n, const char *field) {
    *n = 0;
    size_t k = nn__rd_left(r) < max ? nn__rd_left(r) : max;
    if (!r->ok) return false;
    if (r->ld) {
        if (nn__ld_chunk(r->ld, k, p, n)) return r->ok = false;
        r->pos += *n;
        return true;
    }
    *p = need(r, k, field);
    *n = k;
    return *p != NULL;
}

bool nn__rd_copy(nn__rd *r, void *dst, size_t n, const char *field) {
    if (!r->ok) return false;
    if (r->ld) {
        if (n > nn__rd_left(r)) return need(r, n, field) != NULL; /* the error */
        if (nn__ld_copy(r->ld, dst, n)) return r->ok = false;
        r->pos += n;
        return true;
    }
    const uint8_t *src = need(r, n, field);
    if (src && dst && n) memcpy(dst, src, n);
    return src != NULL;
}

bool nn__rd_end(nn__rd *r) {
    if (!r->ok) return false;
    if (r->pos != r->len) {
        nn__err(NN_ERR_FORMAT, "%s: %s: %zu unexpected bytes at its end", r->fn, r->what,
                r->len - r->pos);
        return r->ok = false;
    }
    return true;
}

/* ------------------------------------------------------ CRC and zlib */

uint32_t nn__crc32(uint32_t crc, const void *data, size_t n) {
    const Bytef *p = data;
    /* zlib's length is a uInt: feed huge buffers in pieces. */
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

/* zlib's allocations go through the library's hook (counted, injectable). */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    return nn__calloc(items, size);
}
static void z_free(voidpf opaque, voidpf p) {
    (void)opaque;
    nn__free(p);
}

static nn_status z_error(int rc, const char *what) {
    if (rc == Z_MEM_ERROR) return nn__err(NN_ERR_NOMEM, "%s: zlib is out of memory", what);
    return nn__err(NN_ERR_IO, "%s: zlib error %d", what, rc);
}

nn_status nn__deflate(const void *src, size_t n, int level, uint8_t **out, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    z.zalloc = z_alloc;
    z.zfree = z_free;
    int rc = deflateInit(&z, level);
    if (rc != Z_OK) return z_error(rc, "model file: deflate");
    /* deflateBound is exact enough for one-shot deflate; it takes a uLong. */
    size_t cap = (size_t)deflateBound(&z, (uLong)n);
    uint8_t *dst = nn__malloc(cap);
    if (!dst) {
        deflateEnd(&z);
        return NN_ERR_NOMEM;
    }
    const uint8_t *in = src;
    size_t in_left = n;
    z.next_out = dst;
    for (;;) {
        uInt in_chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
        z.next_in = (Bytef *)(uintptr_t)in;
        z.avail_in = in_chunk;
        size_t out_left = cap - (size_t)((uint8_t *)z.next_out - dst);
        z.avail_out = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
        in_left -= in_chunk;
        rc = deflate(&z, in_left ? Z_NO_FLUSH : Z_FINISH);
        in += in_chunk - z.avail_in;
        in_left += z.avail_in;
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            nn__free(dst);
            deflateEnd(&z);
            return z_error(rc, "model file: deflate");
        }
    }
    *out_len = (size_t)((uint8_t *)z.next_out - dst);
    *out = dst;
    deflateEnd(&z);
    return NN_OK;
}

nn_status nn__inflate_rd(nn__rd *r, size_t in_len, void *out, size_t out_len, const char *fn,
                         const char *name) {
    z_stream z;
    memset(&z, 0, sizeof z);
    z.zalloc = z_alloc;
    z.zfree = z_free;
    int rc = inflateInit(&z);
    if (rc != Z_OK) return z_error(rc, fn);
    size_t in_left = in_len, out_left = out_len; /* not yet fetched / not yet written */
    z.next_out = out;
    nn_status st = NN_OK;
    for (;;) {
        if (z.avail_in == 0 && in_left > 0) {
            /* The next piece of input (a window's worth from a file). */
            const uint8_t *p;
            size_t n;
            if (!nn__rd_chunk(r, in_left > (1u << 30) ? (1u << 30) : in_left, &p, &n,
                              "compressed data")) {
                st = nn_last_status();
                break;
            }
            z.next_in = (Bytef *)(uintptr_t)p;
            z.avail_in = (uInt)n;
            in_left -= n;
        }
        /* avail_out never exceeds the declared size, so a stream that
         * inflates further cannot write past it. */
        z.avail_out = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
        uInt ao = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        out_left -= ao - z.avail_out;
        if (rc == Z_STREAM_END || rc == Z_OK) {
            if (rc == Z_STREAM_END) break;
            continue;
        }
        if (rc == Z_BUF_ERROR && out_left > 0 && z.avail_in == 0 && in_left > 0)
            continue; /* more input to come */
        if (rc == Z_MEM_ERROR)
            st = z_error(rc, fn);
        else if (rc == Z_BUF_ERROR && out_left == 0)
            st = nn__err(NN_ERR_FORMAT, "%s: tensor '%s' inflates to more than its declared %zu bytes",
                         fn, name, out_len);
        else if (rc == Z_BUF_ERROR)
            st = nn__err(NN_ERR_FORMAT, "%s: tensor '%s': compressed data ends early", fn, name);
        else
            st = nn__err(NN_ERR_FORMAT, "%s: tensor '%s': corrupt compressed data (zlib %d)", fn,
                         name, rc);
        break;
    }
    size_t unused = z.avail_in + in_left;
    inflateEnd(&z);
    if (st) return st;
    if (out_left != 0)
        return nn__err(NN_ERR_FORMAT, "%s: tensor '%s' inflates to %zu bytes, %zu declared", fn,
                       name, out_len - out_left, out_len);
    if (unused != 0)
        return nn__err(NN_ERR_FORMAT, "%s: tensor '%s': %zu bytes after the compressed stream", fn,
                       name, unused);
    return NN_OK;
}
