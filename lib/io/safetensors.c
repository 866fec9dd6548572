/* safetensors files (https://github.com/huggingface/safetensors, format
 * description in its README): u64 little-endian header length N, N bytes of
 * JSON header, then the tensors' bytes. The header is parsed and written by
 * json-c; libnn only checks what json-c returns. See the README section
 * "safetensors" in lib/io/FORMAT.md for every rule enforced here.
 *
 * Reading validates the whole header against the file's real size before
 * any tensor is allocated: header length bounds, a lexical pre-count of the
 * JSON values (so json-c's allocations are bounded by a cap, not by what a
 * hostile header asks for), nesting depth, then per entry: dtype, shape
 * (<= 8 dims, overflow-checked product), offsets; then, sorted by offset,
 * the entries must tile the data area exactly (no gap, no overlap, nothing
 * after the last). Time and memory are linear in the file (plus n log n
 * for the sort of n entries). */
#include "io_internal.h"
#include "module/module_internal.h"

#include "io/nn_io_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if NN_HAVE_JSON
#include <json-c/json.h>
#endif

#define ST_MAX_HEADER (16u << 20) /* header bytes */
#define ST_MAX_VALUES (1u << 20)  /* JSON values in the header */
#define ST_MAX_DEPTH 4            /* json-c levels: root object > entry object > shape array */
#define ST_META_KEY "__metadata__"

#if NN_HAVE_JSON

/* ------------------------------------------------------------- dtypes */

typedef struct st_dtype {
    const char *name;
    nn_dtype dtype; /* the file's dtype */
    size_t size;
} st_dtype;

static const st_dtype ST_DTYPES[] = {
    {"F32", NN_DTYPE_F32, 4}, {"F16", NN_DTYPE_F16, 2}, {"BF16", NN_DTYPE_BF16, 2},
    {"I64", NN_DTYPE_I64, 8}, {"U8", NN_DTYPE_U8, 1},
};
#define ST_NDTYPES (int)(sizeof ST_DTYPES / sizeof ST_DTYPES[0])

/* The spec's other dtypes: valid files libnn cannot hold. */
static const char *const ST_OTHER[] = {"F64", "I32", "I16", "I8", "U16", "U32",
                                       "U64", "BOOL", "F8_E4M3", "F8_E5M2"};

/* Whether libnn stores dt natively (f16/bf16 only once the tensor layer
 * gives them a size); otherwise they are widened to f32 on load. */
static bool native(nn_dtype dt) { return nn_dtype_size(dt) != 0; }

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13); /* inf / NaN (payload kept) */
    } else if (e) {
        bits = sign | ((e + 112) << 23) | (m << 13);
    } else if (!m) {
        bits = sign;
    } else { /* subnormal: normalise */
        int k = -1;
        do {
            k++;
            m <<= 1;
        } while (!(m & 0x400));
        bits = sign | ((uint32_t)(113 - 1 - k) << 23) | ((m & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Widen n little-endian f16/bf16 values at src into f32 at dst. */
static void widen(const uint8_t *src, float *dst, size_t n, nn_dtype file_dt) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
        dst[i] = file_dt == NN_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
}

static bool host_le(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void swap_bytes(uint8_t *p, size_t nbytes, size_t es) {
    for (size_t i = 0; i + es <= nbytes; i += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            uint8_t t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
}

/* ------------------------------------------------------------- header */

typedef struct st_entry {
    const char *name; /* borrowed from the JSON tree */
    const st_dtype *dt;
    int ndim;
    int64_t shape[NN_MAX_DIMS];
    uint64_t begin, end; /* into the data area */
    uint32_t order;      /* position in the header (tie-break) */
} st_entry;

typedef struct st_header {
    json_object *root;
    st_entry *e;
    uint32_t n;
    uint64_t data_off, data_len; /* data area: file offset and bytes */
    uint64_t out_bytes;          /* bytes of the tensors libnn makes */
} st_header;

static void header_free(st_header *h) {
    if (h->root) json_object_put(h->root);
    nn__free(h->e);
    memset(h, 0, sizeof *h);
}

/* An upper bound on the JSON values in p[0..n): every value but the first
 * follows a ',' ':' '[' or '{' outside strings. A lexical count only, so
 * that json-c (which allocates per value) is never handed more than
 * ST_MAX_VALUES; the parse itself is json-c's. */
static uint64_t count_values(const uint8_t *p, size_t n) {
    uint64_t k = 1;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == ',' || c == ':' || c == '[' || c == '{') {
            k++;
        }
    }
    return k;
}

/* A non-negative JSON integer (json-c keeps integers as int64 or uint64). */
static bool json_u64(json_object *v, uint64_t *out) {
    if (!v || !json_object_is_type(v, json_type_int)) return false;
    if (json_object_get_int64(v) < 0) return false;
    *out = json_object_get_uint64(v);
    return true;
}

static int cmp_entry(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* One tensor entry: {"dtype": s, "shape": [d...], "data_offsets": [b, e]}. */
static nn_status parse_entry(const char *name, json_object *v, st_entry *e, const char *fn) {
    if (!*name || strlen(name) > NN__IO_MAX_NAME)
        return nn__err(NN_ERR_FORMAT, "%s: safetensors header: a tensor name is empty or longer "
                                      "than %u bytes",
                       fn, NN__IO_MAX_NAME);
    if (!json_object_is_type(v, json_type_object))
        return nn__err(NN_ERR_FORMAT, "%s: safetensors header: entry '%s' is not an object", fn,
                       name);
    json_object *dt = NULL, *shape = NULL, *off = NULL;
    int nkeys = 0;
    for (struct lh_entry *it = json_object_get_object(v)->head; it; it = it->next, nkeys++) {
        const char *k = lh_entry_k(it);
        json_object *x = (json_object *)lh_entry_v(it);
        if (!strcmp(k, "dtype")) dt = x;
        else if (!strcmp(k, "shape")) shape = x;
        else if (!strcmp(k, "data_offsets")) off = x;
        else
            return nn__err(NN_ERR_FORMAT, "%s: safetensors header: entry '%s' has unknown key '%s'",
                           fn, name, k);
    }
    if (!dt || !shape || !off || nkeys != 3 || !json_object_is_type(dt, json_type_string) ||
        !json_object_is_type(shape, json_type_array) || !json_object_is_type(off, json_type_array))
        return nn__err(NN_ERR_FORMAT,
                       "%s: safetensors header: entry '%s' needs a string \"dtype\", an array "
                       "\"shape\" and an array \"data_offsets\"",
                       fn, name);
    const char *ds = json_object_get_string(dt);
    e->dt = NULL;
    if ((size_t)json_object_get_string_len(dt) == strlen(ds))
        for (int i = 0; i < ST_NDTYPES; i++)
            if (!strcmp(ds, ST_DTYPES[i].name)) e->dt = &ST_DTYPES[i];
    if (!e->dt) {
        bool known = false;
        for (size_t i = 0; i < sizeof ST_OTHER / sizeof *ST_OTHER; i++)
            known |= !strcmp(ds, ST_OTHER[i]);
        return nn__err(NN_ERR_DTYPE,
                       "%s: safetensors header: tensor '%s' has %s dtype '%.32s' (libnn reads "
                       "F32, F16, BF16, I64, U8)",
                       fn, name, known ? "unsupported" : "unknown", ds);
    }
    size_t nd = json_object_array_length(shape);
    if (nd > NN_MAX_DIMS)
        return nn__err(NN_ERR_LIMIT, "%s: safetensors header: tensor '%s' has %zu dimensions (at "
                                     "most %d)",
                       fn, name, nd, NN_MAX_DIMS);
    e->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++) {
        uint64_t s;
        if (!json_u64(json_object_array_get_idx(shape, d), &s) || s > (uint64_t)INT64_MAX)
            return nn__err(NN_ERR_FORMAT,
                           "%s: safetensors header: tensor '%s': shape[%zu] is not an integer "
                           "in [0, 2^63)",
                           fn, name, d);
        e->shape[d] = (int64_t)s;
    }
    if (json_object_array_length(off) != 2 ||
        !json_u64(json_object_array_get_idx(off, 0), &e->begin) ||
        !json_u64(json_object_array_get_idx(off, 1), &e->end) || e->begin > e->end)
        return nn__err(NN_ERR_FORMAT,
                       "%s: safetensors header: tensor '%s': data_offsets must be two "
                       "integers begin <= end",
                       fn, name);
    int64_t numel;
    size_t bytes;
    if (!nn__shape_numel(e->shape, e->ndim, &numel, fn)) return nn_last_status();
    if (!nn__size_mul((size_t)numel, e->dt->size, &bytes))
        return nn__err(NN_ERR_OVERFLOW, "%s: safetensors header: tensor '%s': byte size overflows",
                       fn, name);
    if ((uint64_t)bytes != e->end - e->begin) {
        char s[128];
        return nn__err(NN_ERR_FORMAT,
                       "%s: safetensors header: tensor '%s' (%s %s) needs %zu bytes but its "
                       "data_offsets [%llu, %llu] hold %llu",
                       fn, name, e->dt->name, nn__shape_str(e->shape, e->ndim, s, sizeof s), bytes,
                       (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin));
    }
    return NN_OK;
}

/* __metadata__: an object of strings, copied into *meta when wanted. */
static nn_status parse_meta(json_object *v, nn_meta **meta, const char *fn) {
    if (!json_object_is_type(v, json_type_object))
        return nn__err(NN_ERR_FORMAT, "%s: safetensors header: __metadata__ is not an object", fn);
    for (struct lh_entry *it = json_object_get_object(v)->head; it; it = it->next) {
        const char *k = lh_entry_k(it);
        json_object *x = (json_object *)lh_entry_v(it);
        if (!json_object_is_type(x, json_type_string) ||
            (size_t)json_object_get_string_len(x) != strlen(json_object_get_string(x)))
            return nn__err(NN_ERR_FORMAT,
                           "%s: safetensors header: __metadata__ value of '%.64s' is not a "
                           "string (or holds a NUL byte)",
                           fn, k);
        if (meta && *meta) {
            nn_status st = nn_meta_set_string(*meta, k, json_object_get_string(x));
            if (st) {
                char msg[300];
                snprintf(msg, sizeof msg, "%s", nn_last_error());
                return nn__err(st == NN_ERR_NOMEM ? st : NN_ERR_FORMAT,
                               "%s: safetensors __metadata__: %s", fn, msg);
            }
        }
    }
    return NN_OK;
}

/* Parse and check the header (hdr, hlen bytes) of a file of file_size
 * bytes; every rule of the format is checked before this returns. */
static nn_status parse_header(const uint8_t *hdr, size_t hlen, uint64_t file_size, int64_t max,
                              nn_meta **meta, st_header *h, const char *fn) {
    memset(h, 0, sizeof *h);
    h->data_off = 8 + (uint64_t)hlen;
    h->data_len = file_size - h->data_off;
    if (hlen < 2 || hdr[0] != '{')
        return nn__err(NN_ERR_FORMAT, "%s: safetensors header does not start with '{'", fn);
    uint64_t nv = count_values(hdr, hlen);
    if (nv > ST_MAX_VALUES)
        return nn__err(NN_ERR_LIMIT, "%s: safetensors header holds up to %llu JSON values (at most "
                                     "%u)",
                       fn, (unsigned long long)nv, ST_MAX_VALUES);
    json_tokener *tok = json_tokener_new_ex(ST_MAX_DEPTH);
    if (!tok) return nn__err(NN_ERR_NOMEM, "%s: out of memory", fn);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    h->root = json_tokener_parse_ex(tok, (const char *)hdr, (int)hlen);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!h->root) {
        nn_status st = jerr == json_tokener_error_depth ? NN_ERR_LIMIT : NN_ERR_FORMAT;
        if (jerr == json_tokener_continue)
            return nn__err(st, "%s: safetensors header: the JSON ends early", fn);
        return nn__err(st, "%s: safetensors header: JSON error at byte %zu: %s", fn, end,
                       json_tokener_error_desc(jerr));
    }
    for (size_t i = end; i < hlen; i++)
        if (hdr[i] != ' ')
            return nn__err(NN_ERR_FORMAT,
                           "%s: safetensors header: byte %zu after the JSON object is not "
                           "padding (0x%02x)",
                           fn, i, hdr[i]);
    if (!json_object_is_type(h->root, json_type_object))
        return nn__err(NN_ERR_FORMAT, "%s: safetensors header is not a JSON object", fn);
    size_t nkeys = (size_t)json_object_object_length(h->root);
    if (nkeys > NN__IO_MAX_ENTRIES + 1)
        return nn__err(NN_ERR_LIMIT, "%s: safetensors header has %zu entries (at most %u)", fn,
                       nkeys, NN__IO_MAX_ENTRIES);
    h->e = nn__calloc(nkeys ? nkeys : 1, sizeof *h->e);
    if (!h->e) return NN_ERR_NOMEM;
    uint32_t order = 0;
    for (struct lh_entry *it = json_object_get_object(h->root)->head; it; it = it->next) {
        const char *k = lh_entry_k(it);
        json_object *v = (json_object *)lh_entry_v(it);
        nn_status st;
        if (!strcmp(k, ST_META_KEY)) {
            st = parse_meta(v, meta, fn);
        } else {
            st = parse_entry(k, v, &h->e[h->n], fn);
            h->e[h->n].name = k;
            h->e[h->n].order = order++;
            h->n++;
        }
        if (st) return st;
    }
    if (h->n > NN__IO_MAX_ENTRIES)
        return nn__err(NN_ERR_LIMIT, "%s: safetensors header has %u tensors (at most %u)", fn, h->n,
                       NN__IO_MAX_ENTRIES);
    qsort(h->e, h->n, sizeof *h->e, cmp_entry);
    uint64_t at = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        const st_entry *e = &h->e[i];
        if (e->end > h->data_len)
            return nn__err(NN_ERR_RANGE,
                           "%s: safetensors: tensor '%s' data_offsets [%llu, %llu] exceed the "
                           "%llu-byte data area",
                           fn, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                           (unsigned long long)h->data_len);
        if (e->begin != at)
            return nn__err(NN_ERR_FORMAT,
                           "%s: safetensors: tensor '%s' starts at %llu, not at %llu where the "
                           "previous one ends (%s)",
                           fn, e->name, (unsigned long long)e->begin, (unsigned long long)at,
                           e->begin < at ? "overlap" : "gap");
        at = e->end;
        uint64_t out = e->end - e->begin;
        if (!native(e->dt->dtype)) out *= 2; /* widened to f32 */
        h->out_bytes += out;
        if (h->out_bytes > (uint64_t)max)
            return nn__err(NN_ERR_LIMIT, "%s: safetensors tensors need more than the %lld bytes "
                                         "allowed (NN_IO_OPTION_MAX_BYTES)",
                           fn, (long long)max);
    }
    if (at != h->data_len)
        return nn__err(NN_ERR_FORMAT,
                       "%s: safetensors: the tensors end at %llu but the data area has %llu bytes",
                       fn, (unsigned long long)at, (unsigned long long)h->data_len);
    return NN_OK;
}

/* The 8-byte length field against the file size. */
static nn_status check_len(const uint8_t len8[8], uint64_t file_size, size_t *hlen, const char *fn) {
    uint64_t n = nn__get_u64(len8);
    if (n > ST_MAX_HEADER)
        return nn__err(NN_ERR_LIMIT, "%s: safetensors header length %llu exceeds the 16 MiB limit",
                       fn, (unsigned long long)n);
    if (n > file_size - 8)
        return nn__err(NN_ERR_TRUNCATED,
                       "%s: safetensors header length %llu exceeds the %llu bytes after it", fn,
                       (unsigned long long)n, (unsigned long long)(file_size - 8));
    *hlen = (size_t)n;
    return NN_OK;
}

/* ------------------------------------------------------------- sources */

typedef struct st_src {
    const uint8_t *mem; /* buffer or mapping (whole file) */
    int fd;             /* a path read with pread (mem NULL) */
    nn__map *map;       /* mapping: tensors may view it */
    uint64_t size;
    const char *path;
} st_src;

static nn_status read_at(const st_src *s, uint64_t off, void *dst, size_t n, const char *fn) {
    if (s->mem) {
        memcpy(dst, s->mem + off, n);
        return NN_OK;
    }
    uint8_t *p = dst;
    while (n) {
        ssize_t k = pread(s->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return nn__err(NN_ERR_IO, "%s: reading '%s': %s", fn, s->path, strerror(errno));
        if (k == 0)
            return nn__err(NN_ERR_TRUNCATED, "%s: '%s' ended at %llu bytes while reading it", fn,
                           s->path, (unsigned long long)off);
        p += k;
        off += (uint64_t)k;
        n -= (size_t)k;
    }
    return NN_OK;
}

/* Entry e as a new tensor: a view of the mapping when its dtype is native
 * and its data aligned, else a copy (widened for f16/bf16). */
static nn_tensor *make_tensor(const st_src *s, const st_header *h, const st_entry *e,
                              const char *fn) {
    uint64_t off = h->data_off + e->begin;
    size_t n = (size_t)(e->end - e->begin);
    nn_dtype dt = e->dt->dtype;
    if (native(dt)) {
        if (s->map && host_le() && (uintptr_t)(s->mem + off) % e->dt->size == 0)
            return nn__map_tensor(s->map, off, dt, e->shape, e->ndim, fn);
        nn_tensor *t = nn__tensor_new(dt, e->shape, e->ndim);
        if (t && n && read_at(s, off, t->storage->data, n, fn)) {
            nn__tensor_release(t);
            return NULL;
        }
        if (t && !host_le()) swap_bytes(t->storage->data, n, e->dt->size);
        return t;
    }
    nn_tensor *t = nn__tensor_new(NN_DTYPE_F32, e->shape, e->ndim);
    if (!t || !n) return t;
    float *out = nn__f32(t);
    if (s->mem) {
        widen(s->mem + off, out, n / 2, dt);
        return t;
    }
    uint8_t chunk[1 << 16];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
        if (read_at(s, off + done, chunk, k, fn)) {
            nn__tensor_release(t);
            return NULL;
        }
        widen(chunk, out + done / 2, k / 2, dt);
        done += k;
    }
    return t;
}

static nn_statedict *load(st_src *s, const nn_io_options *o, nn_meta **meta, const char *fn) {
    if (s->size < 8) {
        nn__err(NN_ERR_TRUNCATED, "%s: a safetensors file needs at least 8 bytes, got %llu", fn,
                (unsigned long long)s->size);
        return NULL;
    }
    uint8_t len8[8];
    size_t hlen = 0;
    if (read_at(s, 0, len8, 8, fn) || check_len(len8, s->size, &hlen, fn)) return NULL;
    uint8_t *hcopy = NULL;
    const uint8_t *hdr = s->mem ? s->mem + 8 : NULL;
    if (!hdr) {
        if (!(hcopy = nn__malloc(hlen ? hlen : 1))) return NULL;
        if (read_at(s, 8, hcopy, hlen, fn)) {
            nn__free(hcopy);
            return NULL;
        }
        hdr = hcopy;
    }
    if (meta && !(*meta = nn__meta_new())) {
        nn__free(hcopy);
        return NULL;
    }
    st_header h;
    nn_status st = parse_header(hdr, hlen, s->size, o->max_bytes, meta, &h, fn);
    nn__free(hcopy);
    nn_statedict *sd = st ? NULL : nn_statedict_new();
    for (uint32_t i = 0; sd && i < h.n; i++) {
        nn_tensor *t = make_tensor(s, &h, &h.e[i], fn);
        if (!t || nn_statedict_set(sd, h.e[i].name, t)) {
            nn_statedict_free(sd);
            sd = NULL;
        }
        nn__tensor_release(t);
    }
    header_free(&h);
    if (!sd && meta) {
        nn_meta_free(*meta);
        *meta = NULL;
    }
    return sd;
}

static nn_statedict *load_path(const char *path, const nn_io_options *opts, nn_meta **meta,
                               const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return NULL;
    st_src s = {.fd = -1, .path = path};
    nn_statedict *sd = NULL;
    if (o->mmap) {
        size_t size;
        if (nn__map_open(path, 8, o->max_bytes, &s.map, &s.mem, &size, fn)) return NULL;
        s.size = size;
        sd = load(&s, o, meta, fn);
        nn__map_release(s.map); /* the views hold their own references */
        return sd;
    }
    s.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s.fd < 0) {
        nn__err(NN_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(s.fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        nn__err(NN_ERR_IO, "%s: '%s' is not a readable regular file", fn, path);
    else if ((uint64_t)sb.st_size > (uint64_t)o->max_bytes)
        nn__err(NN_ERR_LIMIT, "%s: '%s' has %lld bytes, more than the %lld allowed", fn, path,
                (long long)sb.st_size, (long long)o->max_bytes);
    else {
        s.size = (uint64_t)sb.st_size;
        sd = load(&s, o, meta, fn);
    }
    close(s.fd);
    return sd;
}

static nn_statedict *load_buffer(const void *data, size_t size, const nn_io_options *opts,
                                 nn_meta **meta, const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return NULL;
    if (!data && size) return NN__FAIL(NN_ERR_NULL, "%s: data is NULL", fn);
    if ((uint64_t)size > (uint64_t)o->max_bytes)
        return NN__FAIL(NN_ERR_LIMIT, "%s: %zu bytes, more than the %lld allowed", fn, size,
                        (long long)o->max_bytes);
    st_src s = {.mem = data, .fd = -1, .size = size, .path = "buffer"};
    return load(&s, o, meta, fn);
}

/* ---------------------------------------------------------------- save */

static const st_dtype *dtype_of(nn_dtype dt) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (ST_DTYPES[i].dtype == dt && native(dt)) return &ST_DTYPES[i];
    return NULL;
}

/* The header JSON of sd (+ meta) as text (*txt owned by *root). */
static nn_status build_header(const nn_statedict *sd, const nn_meta *meta, json_object **root,
                              uint64_t *data_len, const char *fn) {
    json_object *r = json_object_new_object();
    if (!r) return NN_ERR_NOMEM;
    nn_status st = NN_OK;
    if (meta && meta->n) {
        json_object *m = json_object_new_object();
        if (!m || json_object_object_add(r, ST_META_KEY, m)) {
            json_object_put(m);
            st = NN_ERR_NOMEM;
        }
        for (int64_t i = 0; !st && i < meta->n; i++) {
            const nn__meta_entry *e = &meta->e[i];
            if (e->kind != NN_META_KIND_STRING) {
                st = nn__err(NN_ERR_INVALID,
                             "%s: metadata '%s' is not a string (safetensors __metadata__ holds "
                             "strings only)",
                             fn, e->key);
                break;
            }
            json_object *v = json_object_new_string(e->str);
            if (!v || json_object_object_add(m, e->key, v)) {
                json_object_put(v);
                st = NN_ERR_NOMEM;
            }
        }
    }
    uint64_t at = 0;
    int64_t n = nn_statedict_size(sd);
    for (int64_t i = 0; !st && i < n; i++) {
        const char *name = nn_statedict_name(sd, i);
        const nn_tensor *t = nn_statedict_tensor(sd, i);
        const st_dtype *dt = dtype_of(t->dtype);
        if (!dt) {
            st = nn__err(NN_ERR_DTYPE, "%s: tensor '%s' has dtype %s, which safetensors files "
                                       "of libnn do not hold",
                         fn, name, nn_dtype_name(t->dtype));
            break;
        }
        if (!strcmp(name, ST_META_KEY)) {
            st = nn__err(NN_ERR_INVALID, "%s: a tensor may not be named '%s'", fn, ST_META_KEY);
            break;
        }
        uint64_t bytes = (uint64_t)t->numel * dt->size;
        json_object *e = json_object_new_object(), *shape = json_object_new_array(),
                    *off = json_object_new_array();
        bool ok = e && shape && off;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = !json_object_array_add(shape, json_object_new_int64(t->shape[d]));
        ok = ok && !json_object_array_add(off, json_object_new_uint64(at)) &&
             !json_object_array_add(off, json_object_new_uint64(at + bytes));
        ok = ok && !json_object_object_add(e, "dtype", json_object_new_string(dt->name));
        if (ok) {
            ok = !json_object_object_add(e, "shape", shape);
            shape = NULL;
        }
        if (ok) {
            ok = !json_object_object_add(e, "data_offsets", off);
            off = NULL;
        }
        if (ok) {
            ok = !json_object_object_add(r, name, e);
            e = NULL;
        }
        json_object_put(e);
        json_object_put(shape);
        json_object_put(off);
        if (!ok) st = nn__err(NN_ERR_NOMEM, "%s: out of memory", fn);
        at += bytes;
    }
    if (st) {
        json_object_put(r);
        return st;
    }
    *root = r;
    *data_len = at;
    return NN_OK;
}

static nn_status save(const nn_statedict *sd, const nn_meta *meta, const nn_io_options *opts,
                      const nn__io_dst *dst, const char *fn) {
    nn_io_options tmp;
    if (!nn__io_opts(opts, &tmp, fn)) return nn_last_status();
    if (nn_statedict_size(sd) < 0) return nn_last_status();
    if (meta && !nn__meta_check(meta, fn)) return nn_last_status();
    json_object *root;
    uint64_t data_len;
    nn_status st = build_header(sd, meta, &root, &data_len, fn);
    if (st) return st;
    size_t tlen;
    const char *txt = json_object_to_json_string_length(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &tlen);
    size_t hlen = (tlen + 7) & ~(size_t)7; /* data starts 8-byte aligned */
    size_t total = 0;
    uint8_t *buf = NULL;
    if (!txt) st = nn__err(NN_ERR_NOMEM, "%s: out of memory", fn);
    else if (hlen > ST_MAX_HEADER)
        st = nn__err(NN_ERR_LIMIT, "%s: the safetensors header would take %zu bytes (at most %u)",
                     fn, hlen, ST_MAX_HEADER);
    else if (data_len > SIZE_MAX - 8 - hlen)
        st = nn__err(NN_ERR_OVERFLOW, "%s: the file size overflows", fn);
    else if (!(buf = nn__malloc(total = 8 + hlen + (size_t)data_len)))
        st = NN_ERR_NOMEM;
    if (!st) {
        nn__put_u64(buf, hlen);
        memcpy(buf + 8, txt, tlen);
        memset(buf + 8 + tlen, ' ', hlen - tlen);
        uint8_t *p = buf + 8 + hlen;
        for (int64_t i = 0; !st && i < nn_statedict_size(sd); i++) {
            const nn_tensor *t = nn_statedict_tensor(sd, i);
            size_t nb = (size_t)t->numel * nn_dtype_size(t->dtype);
            st = nn_tensor_copy_to(t, p, nb);
            if (!st && !host_le()) swap_bytes(p, nb, nn_dtype_size(t->dtype));
            p += nb;
        }
    }
    json_object_put(root);
    if (st) {
        nn__free(buf);
        return st;
    }
    return nn__io_deliver(dst, buf, total, fn);
}

#endif /* NN_HAVE_JSON */

/* ---------------------------------------------------------- public API */

#if NN_HAVE_JSON
#define NEED_JSON(fn, fail)
#else
#define NEED_JSON(fn, fail)                                                                      \
    do {                                                                                         \
        nn__err(NN_ERR_UNSUPPORTED, "%s: libnn was built without json-c (meson option json)",   \
                fn);                                                                             \
        return fail;                                                                             \
    } while (0)
#endif

nn_statedict *nn_safetensors_load(const char *path, const nn_io_options *opts, nn_meta **meta) {
    const char *fn = "nn_safetensors_load";
    if (meta) *meta = NULL;
    if (!nn__check_ptr(path, fn, "path")) return NULL;
    NEED_JSON(fn, NULL);
#if NN_HAVE_JSON
    return load_path(path, opts, meta, fn);
#endif
}

nn_statedict *nn_safetensors_load_buffer(const void *data, size_t size, const nn_io_options *opts,
                                         nn_meta **meta) {
    const char *fn = "nn_safetensors_load_buffer";
    if (meta) *meta = NULL;
    NEED_JSON(fn, NULL);
#if NN_HAVE_JSON
    return load_buffer(data, size, opts, meta, fn);
#endif
}

nn_status nn_safetensors_save(const nn_statedict *sd, const char *path, const nn_meta *meta,
                              const nn_io_options *opts) {
    const char *fn = "nn_safetensors_save";
    if (!nn__check_ptr(path, fn, "path")) return nn_last_status();
    NEED_JSON(fn, NN_ERR_UNSUPPORTED);
#if NN_HAVE_JSON
    nn__io_dst dst = {.path = path};
    return save(sd, meta, opts, &dst, fn);
#endif
}

nn_status nn_safetensors_save_buffer(const nn_statedict *sd, const nn_meta *meta,
                                     const nn_io_options *opts, void **data, size_t *size) {
    const char *fn = "nn_safetensors_save_buffer";
    if (!nn__check_ptr(data, fn, "data") || !nn__check_ptr(size, fn, "size"))
        return nn_last_status();
    *data = NULL;
    *size = 0;
    NEED_JSON(fn, NN_ERR_UNSUPPORTED);
#if NN_HAVE_JSON
    nn__io_dst dst = {.out_data = data, .out_size = size};
    return save(sd, meta, opts, &dst, fn);
#endif
}

#if NN_HAVE_JSON
/* A state dict saved from a DataParallel / DistributedDataParallel wrapper
 * names everything "module.<name>": when every name has that prefix and m
 * has no child "module", the prefix is dropped. */
static nn_statedict *strip_module_prefix(nn_module *m, nn_statedict *sd) {
    int64_t n = nn_statedict_size(sd);
    bool all = n > 0;
    for (int64_t i = 0; all && i < n; i++) all = !strncmp(nn_statedict_name(sd, i), "module.", 7);
    if (!all) return sd;
    if (nn_module_get_module(m, "module")) return sd;
    nn_clear_error();
    nn_statedict *out = nn_statedict_new();
    for (int64_t i = 0; out && i < n; i++)
        if (nn_statedict_set(out, nn_statedict_name(sd, i) + 7, nn_statedict_tensor(sd, i))) {
            nn_statedict_free(out);
            out = NULL;
        }
    nn_statedict_free(sd);
    return out;
}

static nn_status load_module(nn_module *m, nn_statedict *sd, const nn_io_options *opts,
                             char **report, const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    nn_status st = o ? NN_OK : nn_last_status();
    if (!st && !(sd = strip_module_prefix(m, sd))) st = nn_last_status();
    if (!st) st = nn__io_add_tied_names(m, sd);
    /* The tensors are this call's own: the module takes them over (mapped
     * views stay views) instead of copying. */
    if (!st) st = nn__module_load_state_dict_ex(m, sd, o->strict != 0, report, true);
    nn_statedict_free(sd);
    return st;
}
#endif

nn_status nn_module_load_safetensors(nn_module *m, const char *path, const nn_io_options *opts,
                                     char **report) {
    const char *fn = "nn_module_load_safetensors";
    if (report) *report = NULL;
    if (!nn__check_ptr(m, fn, "m") || !nn__check_ptr(path, fn, "path")) return nn_last_status();
    NEED_JSON(fn, NN_ERR_UNSUPPORTED);
#if NN_HAVE_JSON
    if (!nn__mod_check(m, fn, "m")) return nn_last_status();
    nn_statedict *sd = load_path(path, opts, NULL, fn);
    if (!sd) return nn_last_status();
    return load_module(m, sd, opts, report, fn);
#endif
}

nn_status nn_module_load_safetensors_buffer(nn_module *m, const void *data, size_t size,
                                            const nn_io_options *opts, char **report) {
    const char *fn = "nn_module_load_safetensors_buffer";
    if (report) *report = NULL;
    if (!nn__check_ptr(m, fn, "m")) return nn_last_status();
    NEED_JSON(fn, NN_ERR_UNSUPPORTED);
#if NN_HAVE_JSON
    if (!nn__mod_check(m, fn, "m")) return nn_last_status();
    nn_statedict *sd = load_buffer(data, size, opts, NULL, fn);
    if (!sd) return nn_last_status();
    return load_module(m, sd, opts, report, fn);
#endif
}
