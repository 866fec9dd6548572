/* State dicts (ordered name -> tensor maps) and the module <-> state dict
 * round trip: nn_module_state_dict, nn_module_load_state_dict. */
#include "module_internal.h"

#include <stdio.h>
#include <string.h>

struct nn_statedict {
    nn__handle handle; /* NN__KIND_STATEDICT */
    nn__named_list list; /* entries in insertion order (names and tensors owned) */
    nn__index names; /* name -> entry, once past NN__INDEX_MIN entries */
};
NN__HANDLE_FIRST(struct nn_statedict, handle);

static bool sd_check(const nn_statedict *sd, const char *fn) {
    return nn__handle_check(sd, NN__KIND_STATEDICT, fn, "sd");
}

nn_statedict *nn_statedict_new(void) {
    nn_statedict *sd = nn__calloc(1, sizeof *sd);
    if (sd) nn__handle_set(&sd->handle, NN__KIND_STATEDICT);
    return sd;
}

void nn_statedict_free(nn_statedict *sd) {
    if (!sd) return;
    if (!sd_check(sd, "nn_statedict_free")) return;
    nn__named_list_clear(&sd->list, true);
    nn__index_free(&sd->names);
    nn__handle_clear(&sd->handle);
    nn__free(sd);
}

int64_t nn_statedict_size(const nn_statedict *sd) {
    if (!sd_check(sd, "nn_statedict_size")) return -1;
    return sd->list.n;
}

static bool sd_index(const nn_statedict *sd, int64_t i, const char *fn) {
    if (!sd_check(sd, fn)) return false;
    if (i < 0 || i >= sd->list.n) {
        nn__err(NN_ERR_RANGE, "%s: index %lld out of range (%lld entries)", fn, (long long)i,
                (long long)sd->list.n);
        return false;
    }
    return true;
}

const char *nn_statedict_name(const nn_statedict *sd, int64_t i) {
    return sd_index(sd, i, "nn_statedict_name") ? sd->list.e[i].name : NULL;
}

nn_tensor *nn_statedict_tensor(const nn_statedict *sd, int64_t i) {
    return sd_index(sd, i, "nn_statedict_tensor") ? sd->list.e[i].t : NULL;
}

typedef struct {
    const nn_statedict *sd;
    const char *name;
} sd_key;

static bool sd_eq(const void *ctx, int64_t i) {
    const sd_key *k = ctx;
    return !strcmp(k->sd->list.e[i].name, k->name);
}

/* Index of name, or -1. Small dicts are scanned; past NN__INDEX_MIN
 * entries a hash index answers (a scan per entry made loading a file of
 * 65,536 tensors quadratic). */
static int64_t sd_find(const nn_statedict *sd, const char *name) {
    if (sd->names.cap) {
        sd_key k = {sd, name};
        return nn__index_find(&sd->names, nn__hash_str(name), sd_eq, &k);
    }
    for (int64_t i = 0; i < sd->list.n; i++)
        if (!strcmp(sd->list.e[i].name, name)) return i;
    return -1;
}

/* Room to index one more entry; builds the index on crossing NN__INDEX_MIN. */
static nn_status sd_reserve(nn_statedict *sd) {
    if (!sd->names.cap && sd->list.n + 1 <= NN__INDEX_MIN) return NN_OK;
    bool build = !sd->names.cap;
    nn_status st = nn__index_reserve(&sd->names, sd->list.n + 1);
    for (int64_t i = 0; !st && build && i < sd->list.n; i++)
        nn__index_add(&sd->names, nn__hash_str(sd->list.e[i].name), i);
    return st;
}

nn_tensor *nn_statedict_get(const nn_statedict *sd, const char *name) {
    const char *fn = "nn_statedict_get";
    if (!sd_check(sd, fn) || !nn__check_ptr(name, fn, "name")) return NULL;
    int64_t i = sd_find(sd, name);
    if (i < 0) return NN__FAIL(NN_ERR_NOT_FOUND, "%s: no entry named '%.200s'", fn, name);
    return sd->list.e[i].t;
}

nn_status nn_statedict_set(nn_statedict *sd, const char *name, nn_tensor *t) {
    const char *fn = "nn_statedict_set";
    if (!sd_check(sd, fn) || !nn__check_ptr(name, fn, "name")) return nn_last_status();
    if (!nn__check_tensor(t, fn, "t")) return nn_last_status();
    if (!name[0]) return nn__err(NN_ERR_INVALID, "%s: empty name", fn);
    int64_t i = sd_find(sd, name);
    if (i >= 0) {
        nn__tensor_retain(t);
        nn__tensor_release(sd->list.e[i].t);
        sd->list.e[i].t = t;
        return NN_OK;
    }
    nn_status st = sd_reserve(sd);
    if (st) return st;
    st = nn__named_list_push(&sd->list, name, t, fn);
    if (st) return st;
    nn__tensor_retain(t);
    if (sd->names.cap) nn__index_add(&sd->names, nn__hash_str(name), sd->list.n - 1);
    return NN_OK;
}

/* ------------------------------------------------ module <-> state dict */

/* Visit every parameter and buffer in PyTorch's state_dict order: a
 * module's parameters, then its buffers, then each child's, recursively.
 * visit returns false to stop. */
typedef bool (*sd_visit_fn)(const char *name, nn_tensor *t, void *ctx);

static bool walk(const nn_module *m, char *prefix, size_t plen, size_t cap, sd_visit_fn visit,
                 void *ctx) {
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? m->bufs.n : m->params.n;
        const nn__named_tensor *arr = pass ? m->bufs.e : m->params.e;
        for (int i = 0; i < n; i++) {
            snprintf(prefix + plen, cap - plen, "%s", arr[i].name);
            if (!visit(prefix, arr[i].t, ctx)) return false;
        }
    }
    for (int i = 0; i < m->nchildren; i++) {
        int k = snprintf(prefix + plen, cap - plen, "%s.", m->children[i].name);
        if (k < 0 || (size_t)k >= cap - plen) {
            nn__err(NN_ERR_LIMIT, "nn_module_state_dict: names nest deeper than %zu bytes", cap);
            return false;
        }
        if (!walk(m->children[i].m, prefix, plen + (size_t)k, cap, visit, ctx)) return false;
    }
    return true;
}

#define NAME_CAP 4096

static bool walk_module(const nn_module *m, sd_visit_fn visit, void *ctx) {
    char *buf = nn__malloc(NAME_CAP);
    if (!buf) return false;
    buf[0] = '\0';
    bool ok = walk(m, buf, 0, NAME_CAP, visit, ctx);
    nn__free(buf);
    return ok;
}

bool nn__module_visit(const nn_module *m, bool (*visit)(const char *name, nn_tensor *t, void *ctx),
                      void *ctx) {
    return walk_module(m, visit, ctx);
}

static bool add_entry(const char *name, nn_tensor *t, void *ctx) {
    nn_statedict *sd = ctx;
    if (sd_find(sd, name) >= 0) return true; /* shared tensor under two names: first wins */
    nn_tensor *a = nn__alias(t);             /* detached, shares data */
    if (!a) return false;
    nn_status st = nn_statedict_set(sd, name, a);
    nn__tensor_release(a);
    return st == NN_OK;
}

nn_statedict *nn_module_state_dict(nn_module *m) {
    if (!nn__mod_check(m, "nn_module_state_dict", "m")) return NULL;
    nn_statedict *sd = nn_statedict_new();
    if (!sd) return NULL;
    if (!walk_module(m, add_entry, sd)) {
        nn_statedict_free(sd);
        return NULL;
    }
    return sd;
}

/* ---------------------------------------------------------- loading */

typedef struct {
    char *s;
    size_t len, cap;
    bool fail;
} strbuf;

static void sb_add(strbuf *b, const char *s) {
    if (b->fail) return;
    size_t l = strlen(s);
    if (b->len + l + 1 > b->cap) {
        size_t ncap = (b->cap ? b->cap : 128);
        while (ncap < b->len + l + 1) ncap *= 2;
        char *p = nn__realloc(b->s, ncap);
        if (!p) {
            b->fail = true;
            return;
        }
        b->s = p;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, l + 1);
    b->len += l;
}

typedef struct {
    const nn_statedict *sd;
    bool *seen; /* sd entries matched by a module name */
    strbuf missing, shape;
    int nmissing, nshape;
    bool apply;  /* copy values (second pass) */
    bool assign; /* take the entries' storage instead of copying when possible */
    nn_status st;
} load_ctx;

static bool check_entry(const char *name, nn_tensor *t, void *vctx) {
    load_ctx *c = vctx;
    int64_t i = sd_find(c->sd, name);
    if (i < 0) {
        if (!c->apply) {
            sb_add(&c->missing, c->nmissing++ ? ", " : "");
            sb_add(&c->missing, name);
        }
        return true;
    }
    c->seen[i] = true;
    nn_tensor *src = c->sd->list.e[i].t;
    if (!nn__same_shape(t, src)) {
        if (!c->apply) {
            char a[128], b[128], line[400];
            snprintf(line, sizeof line, "%s%s (module %s, state dict %s)", c->nshape++ ? ", " : "",
                     name, nn__shape_str(t->shape, t->ndim, a, sizeof a),
                     nn__shape_str(src->shape, src->ndim, b, sizeof b));
            sb_add(&c->shape, line);
        }
        return true;
    }
    if (c->apply) {
        if (c->assign && t->dtype == src->dtype && nn__is_contiguous(t) && nn__is_contiguous(src))
            c->st = nn__tensor_adopt(t, src, "nn_module_load_state_dict");
        else
            c->st = nn_tensor_assign(t, src);
        return c->st == NN_OK;
    }
    return true;
}

/* "missing: a, b\nunexpected: c\nwrong shape: d (...)\n" (empty parts left out). */
static void build_report(load_ctx *c, strbuf *out, int *nunexpected) {
    sb_add(out, "");
    if (c->nmissing) {
        sb_add(out, "missing: ");
        sb_add(out, c->missing.s);
        sb_add(out, "\n");
    }
    *nunexpected = 0;
    for (int64_t i = 0; i < c->sd->list.n; i++) {
        if (c->seen[i]) continue;
        sb_add(out, (*nunexpected)++ ? ", " : "unexpected: ");
        sb_add(out, c->sd->list.e[i].name);
    }
    if (*nunexpected) sb_add(out, "\n");
    if (c->nshape) {
        sb_add(out, "wrong shape: ");
        sb_add(out, c->shape.s);
        sb_add(out, "\n");
    }
}

nn_status nn_module_load_state_dict(nn_module *m, const nn_statedict *sd, bool strict,
                                    char **report) {
    return nn__module_load_state_dict_ex(m, sd, strict, report, false);
}

nn_status nn__module_load_state_dict_ex(nn_module *m, const nn_statedict *sd, bool strict,
                                        char **report, bool assign) {
    const char *fn = "nn_module_load_state_dict";
    if (report) *report = NULL;
    if (!nn__mod_check(m, fn, "m") || !sd_check(sd, fn)) return nn_last_status();
    load_ctx c = {.sd = sd, .assign = assign};
    strbuf rep = {0};
    nn_status st = NN_OK;
    c.seen = nn__calloc((size_t)(sd->list.n ? sd->list.n : 1), sizeof *c.seen);
    if (!c.seen) return NN_ERR_NOMEM;
    /* Pass 1: match names and shapes without touching the module. */
    if (!walk_module(m, check_entry, &c)) st = nn_last_status();
    int nunexpected = 0;
    if (st == NN_OK) build_report(&c, &rep, &nunexpected);
    if (st == NN_OK && (c.missing.fail || c.shape.fail || rep.fail))
        st = nn__err(NN_ERR_NOMEM, "%s: out of memory", fn);
    if (st == NN_OK && strict && (c.nmissing || nunexpected || c.nshape)) {
        /* Replace newlines for a one-line message. */
        for (char *p = rep.s; *p; p++)
            if (*p == '\n') *p = p[1] ? ';' : '\0';
        st = nn__err(c.nshape && !c.nmissing && !nunexpected ? NN_ERR_SHAPE : NN_ERR_NOT_FOUND,
                     "%s (strict): %s", fn, rep.s);
    }
    if (st == NN_OK) {
        /* Pass 2: copy every matching entry (shapes already checked). */
        c.apply = true;
        if (!walk_module(m, check_entry, &c)) st = c.st != NN_OK ? c.st : nn_last_status();
    }
    if (st == NN_OK && report) {
        *report = rep.s;
        rep.s = NULL;
    }
    nn__free(rep.s);
    nn__free(c.missing.s);
    nn__free(c.shape.s);
    nn__free(c.seen);
    return st;
}

/* ------------------------------------------------ scalar entries (optim/) */

nn_status nn__sd_put_double(nn_statedict *sd, const char *name, double v) {
    int64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return nn__sd_put_i64(sd, name, bits);
}

nn_status nn__sd_put_i64(nn_statedict *sd, const char *name, int64_t v) {
    int64_t one = 1;
    nn_tensor *t = nn__tensor_new(NN_DTYPE_I64, &one, 1);
    if (!t) return NN_ERR_NOMEM;
    nn__i64(t)[0] = v;
    nn_status st = nn_statedict_set(sd, name, t);
    nn__tensor_release(t);
    return st;
}

nn_tensor *nn__sd_find(const nn_statedict *sd, const char *name) {
    if (!nn__handle_is(sd, NN__KIND_STATEDICT)) return NULL;
    int64_t i = sd_find(sd, name);
    return i < 0 ? NULL : sd->list.e[i].t;
}

nn_status nn__sd_get_i64(const nn_statedict *sd, const char *name, int64_t *v, const char *fn) {
    if (!nn__handle_check(sd, NN__KIND_STATEDICT, fn, "sd")) return nn_last_status();
    nn_tensor *t = nn__sd_find(sd, name);
    if (!t) return nn__err(NN_ERR_NOT_FOUND, "%s: state entry '%s' is missing", fn, name);
    if (t->dtype != NN_DTYPE_I64 || t->numel != 1)
        return nn__err(NN_ERR_FORMAT, "%s: state entry '%s' is not a one-element i64 tensor", fn,
                       name);
    *v = (int64_t)nn__get_flat(t, 0);
    if (nn__is_contiguous(t)) *v = nn__i64(t)[0]; /* exact, beyond 2^53 */
    return NN_OK;
}

nn_status nn__sd_get_double(const nn_statedict *sd, const char *name, double *v, const char *fn) {
    int64_t bits = 0;
    nn_status st = nn__sd_get_i64(sd, name, &bits, fn);
    if (!st) memcpy(v, &bits, sizeof *v);
    return st;
}
