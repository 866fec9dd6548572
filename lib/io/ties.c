/* Tied parameters in model files (FORMAT.md, section 6): one tensor shared
 * by two modules (an embedding and an output Linear) is stored once, under
 * the first name the module tree lists it by, and the module section opens
 * with a list of ties "dst <- src" that the reader re-applies while it
 * builds the tree, each right after the module owning dst is created (so
 * that module's own copy is freed at once and never charged against the
 * file's tensor bytes). */
#include "io_internal.h"
#include "module/module_internal.h"

#include <stdio.h>
#include <string.h>

#define TIES_MAGIC "#ties"

void nn__ties_free(nn__ties *t) {
    for (uint32_t i = 0; i < t->n; i++) {
        nn__free(t->dst[i]);
        nn__free(t->src[i]);
    }
    nn__free(t->dst);
    nn__free(t->src);
    nn__free(t->src_t);
    nn__free(t->done);
    nn__index_free(&t->by_dst);
    nn__index_free(&t->by_src);
    memset(t, 0, sizeof *t);
}

typedef struct {
    char *const *names;
    const char *key;
} name_key;

static bool name_eq(const void *ctx, int64_t i) {
    const name_key *k = ctx;
    return !strcmp(k->names[i], k->key);
}

static int64_t find_in(const nn__index *x, char *const *names, const char *key) {
    name_key k = {names, key};
    return nn__index_find(x, nn__hash_str(key), name_eq, &k);
}

bool nn__ties_is_dst(const nn__ties *t, const char *name) {
    return t && t->n && find_in(&t->by_dst, t->dst, name) >= 0;
}

/* Room for n ties (arrays and indices). */
static nn_status ties_alloc(nn__ties *t, uint32_t n) {
    size_t k = n ? n : 1;
    t->dst = nn__calloc(k, sizeof *t->dst);
    t->src = nn__calloc(k, sizeof *t->src);
    t->src_t = nn__calloc(k, sizeof *t->src_t);
    t->done = nn__calloc(k, sizeof *t->done);
    if (!t->dst || !t->src || !t->src_t || !t->done) return NN_ERR_NOMEM;
    nn_status st = nn__index_reserve(&t->by_dst, n);
    if (!st) st = nn__index_reserve(&t->by_src, n);
    return st;
}

/* ------------------------------------------------------------- writing */

/* The first name of each tensor seen so far (names owned, tensors borrowed). */
typedef struct {
    nn__ties *t;
    char **names;
    const nn_tensor **seen;
    int64_t n, cap;
    nn__index by_ptr;
    nn_status st;
} collect;

static bool seen_eq(const void *ctx, int64_t i) {
    const void *const *k = ctx; /* {collect, tensor} */
    return ((const collect *)k[0])->seen[i] == k[1];
}

/* Append to a growing array of pointers (*cap entries of size elem). */
static bool grow(void **arr, int64_t n, int64_t *cap, size_t elem) {
    if (n < *cap) return true;
    int64_t ncap = *cap ? *cap * 2 : 64;
    size_t bytes;
    void *p = nn__size_mul((size_t)ncap, elem, &bytes) ? nn__realloc(*arr, bytes) : NULL;
    if (!p) return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static bool collect_one(const char *name, nn_tensor *x, void *ctx) {
    collect *c = ctx;
    const void *key[2] = {c, x};
    int64_t i = nn__index_find(&c->by_ptr, nn__hash_ptr(x), seen_eq, key);
    if (i < 0) {
        int64_t cap = c->cap;
        if (!grow((void **)&c->names, c->n, &cap, sizeof *c->names) ||
            !grow((void **)&c->seen, c->n, &c->cap, sizeof *c->seen) ||
            nn__index_reserve(&c->by_ptr, c->n + 1) || !(c->names[c->n] = nn__strdup(name)))
            return !(c->st = NN_ERR_NOMEM);
        c->seen[c->n] = x;
        nn__index_add(&c->by_ptr, nn__hash_ptr(x), c->n++);
        return true;
    }
    nn__ties *t = c->t;
    if (t->n % 64 == 0) { /* grow by 64 */
        size_t cap = (size_t)t->n + 64;
        char **d = nn__realloc(t->dst, cap * sizeof *d);
        if (d) t->dst = d;
        char **s = d ? nn__realloc(t->src, cap * sizeof *s) : NULL;
        if (s) t->src = s;
        if (!d || !s) return !(c->st = NN_ERR_NOMEM);
    }
    t->dst[t->n] = nn__strdup(name);
    t->src[t->n] = nn__strdup(c->names[i]);
    if (!t->dst[t->n] || !t->src[t->n]) {
        nn__free(t->dst[t->n]);
        nn__free(t->src[t->n]);
        return !(c->st = NN_ERR_NOMEM);
    }
    t->n++;
    return true;
}

nn_status nn__ties_collect(nn_module *m, nn__ties *out) {
    memset(out, 0, sizeof *out);
    collect c = {.t = out};
    if (!nn__module_visit(m, collect_one, &c) && !c.st) c.st = nn_last_status();
    for (int64_t i = 0; i < c.n; i++) nn__free(c.names[i]);
    nn__free(c.names);
    nn__free(c.seen);
    nn__index_free(&c.by_ptr);
    if (!c.st && out->n > NN__IO_MAX_ENTRIES)
        c.st = nn__err(NN_ERR_LIMIT, "nn_model_save: %u tied tensors, at most %u", out->n,
                       NN__IO_MAX_ENTRIES);
    if (!c.st) c.st = nn__index_reserve(&out->by_dst, out->n);
    for (uint32_t i = 0; !c.st && i < out->n; i++)
        nn__index_add(&out->by_dst, nn__hash_str(out->dst[i]), i);
    if (c.st) nn__ties_free(out);
    return c.st;
}

void nn__ties_encode(const nn__ties *t, nn__wbuf *w) {
    if (!t->n) return; /* files without ties are as before */
    nn__wbuf_str(w, TIES_MAGIC);
    nn__wbuf_u32(w, t->n);
    for (uint32_t i = 0; i < t->n; i++) {
        nn__wbuf_str(w, t->dst[i]);
        nn__wbuf_str(w, t->src[i]);
    }
}

/* ------------------------------------------------------------- reading */

nn_status nn__ties_decode(nn__rd *r, nn__ties *out, const char *fn) {
    memset(out, 0, sizeof *out);
    nn__rd peek = *r;
    char *magic = NULL;
    if (!nn__rd_str(&peek, &magic, NN__IO_MAX_NAME, "module type")) return nn_last_status();
    bool has = !strcmp(magic, TIES_MAGIC);
    nn__free(magic);
    if (!has) return NN_OK; /* no ties: the root node starts here */
    *r = peek;
    uint32_t n;
    /* A tie takes at least two 4-byte string lengths. */
    if (!nn__rd_count(r, &n, NN__IO_MAX_ENTRIES, 8, "tie count")) return nn_last_status();
    nn_status st = ties_alloc(out, n);
    if (st) {
        nn__ties_free(out);
        return st;
    }
    for (uint32_t i = 0; !st && i < n; i++) {
        if (!nn__rd_str(r, &out->dst[i], NN__IO_MAX_NAME, "tie name") ||
            !nn__rd_str(r, &out->src[i], NN__IO_MAX_NAME, "tie source")) {
            st = nn_last_status();
            break;
        }
        out->n = i + 1;
        if (!strcmp(out->dst[i], out->src[i]))
            st = nn__err(NN_ERR_FORMAT, "%s: '%.200s' is tied to itself", fn, out->dst[i]);
        else if (find_in(&out->by_dst, out->dst, out->dst[i]) >= 0)
            st = nn__err(NN_ERR_FORMAT, "%s: '%.200s' is tied twice", fn, out->dst[i]);
        else
            nn__index_add(&out->by_dst, nn__hash_str(out->dst[i]), i);
        /* by_src: one entry per distinct source (the first tie naming it). */
        if (!st && find_in(&out->by_src, out->src, out->src[i]) < 0)
            nn__index_add(&out->by_src, nn__hash_str(out->src[i]), i);
    }
    out->n = n;
    if (st) nn__ties_free(out);
    return st;
}

/* The tensor recorded for source name s, or NULL. */
static nn_tensor *source_of(const nn__ties *t, const char *s) {
    int64_t i = find_in(&t->by_src, t->src, s);
    return i >= 0 ? t->src_t[i] : NULL;
}

nn_status nn__ties_attach(nn__ties *t, const char *path, nn_module *m, uint64_t *tied_bytes,
                          const char *fn) {
    *tied_bytes = 0;
    if (!t->n) return NN_OK;
    int n = nn__module_own_count(m);
    size_t plen = strlen(path);
    /* Sources first (a tie within one module names an earlier parameter). */
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < n; j++) {
            const char *name;
            bool param;
            nn_tensor *x = nn__module_own(m, j, &name, &param);
            size_t ln = strlen(name);
            char *full = nn__malloc(plen + ln + 1);
            if (!full) return NN_ERR_NOMEM;
            memcpy(full, path, plen);
            memcpy(full + plen, name, ln + 1);
            nn_status st = NN_OK;
            if (pass == 0) {
                int64_t i = find_in(&t->by_src, t->src, full);
                if (i >= 0 && param && !t->src_t[i]) {
                    t->src_t[i] = x;
                    t->src_bytes += (uint64_t)x->numel * nn_dtype_size(x->dtype);
                }
            } else {
                int64_t i = find_in(&t->by_dst, t->dst, full);
                nn_tensor *s = i >= 0 ? source_of(t, t->src[i]) : NULL;
                if (i >= 0 && !param) {
                    st = nn__err(NN_ERR_FORMAT, "%s: tie '%.200s': not a parameter", fn, full);
                } else if (i >= 0 && !s) {
                    st = nn__err(NN_ERR_FORMAT,
                                 "%s: tie '%.200s' <- '%.200s': no such parameter before it in "
                                 "the tree",
                                 fn, full, t->src[i]);
                } else if (i >= 0) {
                    uint64_t b = (uint64_t)x->numel * nn_dtype_size(x->dtype);
                    st = nn__module_tie_own(m, name, s, fn);
                    if (st) { /* the message names the shapes; a file error */
                        char msg[400];
                        snprintf(msg, sizeof msg, "%s", nn_last_error());
                        st = nn__err(NN_ERR_FORMAT, "%s (tie '%.200s' <- '%.200s')", msg, full,
                                     t->src[i]);
                    } else {
                        t->done[i] = true;
                        *tied_bytes += b;
                    }
                }
            }
            nn__free(full);
            if (st) return st;
        }
    return NN_OK;
}

nn_status nn__ties_check_done(const nn__ties *t, const char *fn) {
    for (uint32_t i = 0; i < t->n; i++)
        if (!t->done[i])
            return nn__err(NN_ERR_FORMAT,
                           "%s: tie '%.200s' <- '%.200s': no parameter '%.200s' "
                           "in the module tree",
                           fn, t->dst[i], t->src[i], t->dst[i]);
    return NN_OK;
}
