/* nn_meta: the metadata map, and its section encoding (FORMAT.md 4). */
#include "io_internal.h"

#include <string.h>

/* ------------------------------------------------------------- handle */

static void entry_clear(nn__meta_entry *e) {
    nn__free(e->str);
    nn__free(e->arr);
    if (e->strs)
        for (int64_t i = 0; i < e->n; i++) nn__free(e->strs[i]);
    nn__free(e->strs);
    e->str = NULL;
    e->arr = NULL;
    e->strs = NULL;
    e->n = 0;
}

nn_meta *nn__meta_new(void) {
    nn_meta *m = nn__calloc(1, sizeof *m);
    if (m) nn__handle_set(&m->handle, NN__KIND_META);
    return m;
}

nn_meta *nn_meta_new(void) { return nn__meta_new(); }

void nn_meta_free(nn_meta *meta) {
    if (!meta || !nn__meta_check(meta, "nn_meta_free")) return;
    for (int64_t i = 0; i < meta->n; i++) {
        entry_clear(&meta->e[i]);
        nn__free(meta->e[i].key);
    }
    nn__free(meta->e);
    nn__index_free(&meta->keys);
    nn__handle_clear(&meta->handle);
    nn__free(meta);
}

bool nn__meta_check(const nn_meta *m, const char *fn) {
    return nn__handle_check(m, NN__KIND_META, fn, "meta");
}

typedef struct {
    const nn_meta *m;
    const char *key;
} meta_key;

static bool key_eq(const void *ctx, int64_t i) {
    const meta_key *k = ctx;
    return strcmp(k->m->e[i].key, k->key) == 0;
}

/* Small maps are scanned; past NN__INDEX_MIN keys a hash index answers (a
 * scan per key made decoding a section of 65,536 keys quadratic). */
static nn__meta_entry *find(const nn_meta *m, const char *key) {
    if (m->keys.cap) {
        meta_key k = {m, key};
        int64_t i = nn__index_find(&m->keys, nn__hash_str(key), key_eq, &k);
        return i >= 0 ? &m->e[i] : NULL;
    }
    for (int64_t i = 0; i < m->n; i++)
        if (strcmp(m->e[i].key, key) == 0) return &m->e[i];
    return NULL;
}

/* Room to index one more key (the index is built on crossing NN__INDEX_MIN). */
static bool keys_reserve(nn_meta *m) {
    if (!m->keys.cap && m->n + 1 <= NN__INDEX_MIN) return true;
    bool build = !m->keys.cap;
    if (nn__index_reserve(&m->keys, m->n + 1)) return false;
    for (int64_t i = 0; build && i < m->n; i++)
        nn__index_add(&m->keys, nn__hash_str(m->e[i].key), i);
    return true;
}

/* Append an entry for key (owned by m from now on); after keys_reserve. */
static nn__meta_entry *append(nn_meta *m, char *key) {
    nn__meta_entry *e = &m->e[m->n];
    memset(e, 0, sizeof *e);
    e->key = key;
    if (m->keys.cap) nn__index_add(&m->keys, nn__hash_str(key), m->n);
    m->n++;
    return e;
}

/* The entry for key, created empty if new; NULL + error on bad arguments. */
static nn__meta_entry *slot(nn_meta *m, const char *key, const char *fn) {
    if (!nn__meta_check(m, fn) || !nn__check_ptr(key, fn, "key")) return NULL;
    size_t kl = strlen(key);
    if (kl == 0 || kl > NN__IO_MAX_NAME)
        return NN__FAIL(NN_ERR_INVALID, "%s: key length %zu outside [1, %u]", fn, kl,
                        NN__IO_MAX_NAME);
    nn__meta_entry *e = find(m, key);
    if (e) return e;
    if (!keys_reserve(m)) return NULL;
    if (m->n == m->cap) {
        int64_t cap = m->cap ? m->cap * 2 : 8;
        nn__meta_entry *ne = nn__realloc(m->e, sizeof *ne * (size_t)cap);
        if (!ne) return NULL;
        m->e = ne;
        m->cap = cap;
    }
    char *k = nn__strdup(key);
    if (!k) return NULL;
    return append(m, k);
}

/* Drop a just-created entry whose value could not be stored. */
static void unslot(nn_meta *m, nn__meta_entry *e) {
    if (e->kind != NN_META_KIND_NONE) return; /* an old value stays */
    int64_t i = e - m->e;
    nn__index_remove(&m->keys, nn__hash_str(e->key), i);
    nn__free(e->key);
    memmove(&m->e[i], &m->e[i + 1], sizeof *e * (size_t)(m->n - i - 1));
    m->n--;
}

nn_status nn_meta_set_string(nn_meta *meta, const char *key, const char *value) {
    const char *fn = "nn_meta_set_string";
    if (!nn__check_ptr(value, fn, "value")) return nn_last_status();
    if (strlen(value) > NN__IO_MAX_STRING)
        return nn__err(NN_ERR_LIMIT, "%s: value of %zu bytes exceeds %u", fn, strlen(value),
                       NN__IO_MAX_STRING);
    nn__meta_entry *e = slot(meta, key, fn);
    if (!e) return nn_last_status();
    char *v = nn__strdup(value);
    if (!v) {
        unslot(meta, e);
        return NN_ERR_NOMEM;
    }
    entry_clear(e);
    e->kind = NN_META_KIND_STRING;
    e->str = v;
    return NN_OK;
}

nn_status nn_meta_set_number(nn_meta *meta, const char *key, double value) {
    nn__meta_entry *e = slot(meta, key, "nn_meta_set_number");
    if (!e) return nn_last_status();
    entry_clear(e);
    e->kind = NN_META_KIND_NUMBER;
    e->num = value;
    return NN_OK;
}

nn_status nn_meta_set_array(nn_meta *meta, const char *key, const double *values, int64_t n) {
    const char *fn = "nn_meta_set_array";
    if (n < 0 || (uint64_t)n > NN__IO_MAX_STRING / 8)
        return nn__err(NN_ERR_INVALID, "%s: n = %lld outside [0, %u]", fn, (long long)n,
                       NN__IO_MAX_STRING / 8);
    if (n > 0 && !nn__check_ptr(values, fn, "values")) return nn_last_status();
    nn__meta_entry *e = slot(meta, key, fn);
    if (!e) return nn_last_status();
    double *a = nn__malloc(sizeof(double) * (size_t)n);
    if (!a) {
        unslot(meta, e);
        return NN_ERR_NOMEM;
    }
    if (n) memcpy(a, values, sizeof(double) * (size_t)n);
    entry_clear(e);
    e->kind = NN_META_KIND_ARRAY;
    e->arr = a;
    e->n = n;
    return NN_OK;
}

nn_status nn_meta_set_strings(nn_meta *meta, const char *key, const char *const *values,
                              int64_t n) {
    const char *fn = "nn_meta_set_strings";
    if (n < 0 || n > (int64_t)NN__IO_MAX_ENTRIES)
        return nn__err(NN_ERR_INVALID, "%s: n = %lld outside [0, %u]", fn, (long long)n,
                       NN__IO_MAX_ENTRIES);
    if (n > 0 && !nn__check_ptr(values, fn, "values")) return nn_last_status();
    for (int64_t i = 0; i < n; i++) {
        if (!values[i]) return nn__err(NN_ERR_NULL, "%s: values[%lld] is NULL", fn, (long long)i);
        if (strlen(values[i]) > NN__IO_MAX_NAME)
            return nn__err(NN_ERR_LIMIT, "%s: values[%lld] exceeds %u bytes", fn, (long long)i,
                           NN__IO_MAX_NAME);
    }
    nn__meta_entry *e = slot(meta, key, fn);
    if (!e) return nn_last_status();
    char **s = nn__calloc((size_t)(n ? n : 1), sizeof *s);
    for (int64_t i = 0; s && i < n; i++) {
        if (!(s[i] = nn__strdup(values[i]))) {
            for (int64_t j = 0; j < i; j++) nn__free(s[j]);
            nn__free(s);
            s = NULL;
        }
    }
    if (!s) {
        unslot(meta, e);
        return NN_ERR_NOMEM;
    }
    entry_clear(e);
    e->kind = NN_META_KIND_STRINGS;
    e->strs = s;
    e->n = n;
    return NN_OK;
}

int64_t nn_meta_count(const nn_meta *meta) {
    return nn__meta_check(meta, "nn_meta_count") ? meta->n : -1;
}

const char *nn_meta_key(const nn_meta *meta, int64_t i) {
    if (!nn__meta_check(meta, "nn_meta_key")) return NULL;
    if (i < 0 || i >= meta->n)
        return NN__FAIL(NN_ERR_RANGE, "nn_meta_key: index %lld outside [0, %lld)", (long long)i,
                        (long long)meta->n);
    return meta->e[i].key;
}

/* The entry for key of the wanted kind, or NULL + an error. */
static const nn__meta_entry *get(const nn_meta *m, const char *key, nn_meta_kind kind,
                                 const char *fn) {
    if (!nn__meta_check(m, fn) || !nn__check_ptr(key, fn, "key")) return NULL;
    const nn__meta_entry *e = find(m, key);
    if (!e) return NN__FAIL(NN_ERR_NOT_FOUND, "%s: no key '%s'", fn, key);
    if (e->kind != kind)
        return NN__FAIL(NN_ERR_INVALID, "%s: key '%s' holds kind %d, not %d", fn, key, (int)e->kind,
                        (int)kind);
    return e;
}

nn_meta_kind nn_meta_kind_of(const nn_meta *meta, const char *key) {
    if (!nn__meta_check(meta, "nn_meta_kind_of") || !nn__check_ptr(key, "nn_meta_kind_of", "key"))
        return NN_META_KIND_NONE;
    const nn__meta_entry *e = find(meta, key);
    return e ? e->kind : NN_META_KIND_NONE;
}

const char *nn_meta_get_string(const nn_meta *meta, const char *key) {
    const nn__meta_entry *e = get(meta, key, NN_META_KIND_STRING, "nn_meta_get_string");
    return e ? e->str : NULL;
}

nn_status nn_meta_get_number(const nn_meta *meta, const char *key, double *value) {
    if (!nn__check_ptr(value, "nn_meta_get_number", "value")) return nn_last_status();
    const nn__meta_entry *e = get(meta, key, NN_META_KIND_NUMBER, "nn_meta_get_number");
    if (!e) return nn_last_status();
    *value = e->num;
    return NN_OK;
}

nn_status nn_meta_get_array(const nn_meta *meta, const char *key, const double **values,
                            int64_t *n) {
    const char *fn = "nn_meta_get_array";
    if (!nn__check_ptr(values, fn, "values") || !nn__check_ptr(n, fn, "n")) return nn_last_status();
    const nn__meta_entry *e = get(meta, key, NN_META_KIND_ARRAY, fn);
    if (!e) return nn_last_status();
    *values = e->arr;
    *n = e->n;
    return NN_OK;
}

int64_t nn_meta_strings_count(const nn_meta *meta, const char *key) {
    const nn__meta_entry *e = get(meta, key, NN_META_KIND_STRINGS, "nn_meta_strings_count");
    return e ? e->n : -1;
}

const char *nn_meta_strings_get(const nn_meta *meta, const char *key, int64_t i) {
    const nn__meta_entry *e = get(meta, key, NN_META_KIND_STRINGS, "nn_meta_strings_get");
    if (!e) return NULL;
    if (i < 0 || i >= e->n)
        return NN__FAIL(NN_ERR_RANGE, "nn_meta_strings_get: index %lld outside [0, %lld)",
                        (long long)i, (long long)e->n);
    return e->strs[i];
}

/* ------------------------------------------------------------ section */

void nn__meta_encode(const nn_meta *m, nn__wbuf *w) {
    int64_t n = m ? m->n : 0;
    nn__wbuf_u32(w, (uint32_t)n);
    for (int64_t i = 0; i < n; i++) {
        const nn__meta_entry *e = &m->e[i];
        nn__wbuf_str(w, e->key);
        nn__wbuf_u8(w, (uint8_t)e->kind);
        switch (e->kind) {
        case NN_META_KIND_STRING: nn__wbuf_str(w, e->str); break;
        case NN_META_KIND_NUMBER: nn__wbuf_f64(w, e->num); break;
        case NN_META_KIND_ARRAY:
            nn__wbuf_u64(w, (uint64_t)e->n);
            for (int64_t j = 0; j < e->n; j++) nn__wbuf_f64(w, e->arr[j]);
            break;
        case NN_META_KIND_STRINGS:
            nn__wbuf_u32(w, (uint32_t)e->n);
            for (int64_t j = 0; j < e->n; j++) nn__wbuf_str(w, e->strs[j]);
            break;
        case NN_META_KIND_NONE: break;
        }
    }
}

/* Decode one value of kind into e (already holding its key). */
static bool decode_value(nn__rd *r, nn__meta_entry *e) {
    switch (e->kind) {
    case NN_META_KIND_STRING: return nn__rd_str(r, &e->str, NN__IO_MAX_STRING, "string value");
    case NN_META_KIND_NUMBER: return nn__rd_f64(r, &e->num, "number value");
    case NN_META_KIND_ARRAY: {
        uint64_t n;
        if (!nn__rd_u64(r, &n, "array length")) return false;
        if (n > nn__rd_left(r) / 8) {
            nn__err(NN_ERR_FORMAT,
                    "%s: metadata '%s': array length %llu exceeds the %zu bytes "
                    "left",
                    r->fn, e->key, (unsigned long long)n, nn__rd_left(r));
            return r->ok = false;
        }
        if (!(e->arr = nn__malloc(sizeof(double) * (size_t)n))) return r->ok = false;
        e->n = (int64_t)n;
        for (uint64_t j = 0; j < n; j++) nn__rd_f64(r, &e->arr[j], "array value");
        return r->ok;
    }
    case NN_META_KIND_STRINGS: {
        uint32_t n;
        if (!nn__rd_count(r, &n, NN__IO_MAX_ENTRIES, 4, "string count")) return false;
        if (!(e->strs = nn__calloc(n ? n : 1, sizeof *e->strs))) return r->ok = false;
        for (uint32_t j = 0; j < n; j++) {
            if (!nn__rd_str(r, &e->strs[j], NN__IO_MAX_NAME, "string array item")) return false;
            e->n = (int64_t)j + 1;
        }
        return true;
    }
    case NN_META_KIND_NONE: break;
    }
    nn__err(NN_ERR_FORMAT, "%s: metadata '%s' has unknown kind %d", r->fn, e->key, (int)e->kind);
    return r->ok = false;
}

nn_meta *nn__meta_decode(const uint8_t *p, size_t len, const char *fn) {
    nn__rd r;
    nn__rd_init(&r, p, len, fn, "metadata section");
    uint32_t n;
    /* An entry takes at least 4 (key length) + 1 (kind) + 4 bytes. */
    if (!nn__rd_count(&r, &n, NN__IO_MAX_ENTRIES, 9, "entry count")) return NULL;
    nn_meta *m = nn__meta_new();
    if (!m) return NULL;
    if (n && !(m->e = nn__calloc(n, sizeof *m->e))) goto fail;
    m->cap = n;
    for (uint32_t i = 0; i < n; i++) {
        char *key;
        uint8_t kind;
        if (!nn__rd_str(&r, &key, NN__IO_MAX_NAME, "key")) goto fail;
        if (!*key || find(m, key)) {
            nn__err(NN_ERR_FORMAT, "%s: metadata key '%s' is empty or repeated", fn, key);
            nn__free(key);
            goto fail;
        }
        if (!keys_reserve(m)) {
            nn__free(key);
            goto fail;
        }
        nn__meta_entry *e = append(m, key);
        if (!nn__rd_u8(&r, &kind, "kind")) goto fail;
        e->kind = (nn_meta_kind)kind;
        if (!decode_value(&r, e)) {
            if (e->kind < NN_META_KIND_STRING || e->kind > NN_META_KIND_STRINGS)
                e->kind = NN_META_KIND_NONE;
            goto fail;
        }
    }
    if (!nn__rd_end(&r)) goto fail;
    return m;
fail:
    nn_meta_free(m);
    return NULL;
}
