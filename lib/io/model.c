/* Models, weights and checkpoints on top of the container: the module tree
 * section (FORMAT.md 6), the training section (FORMAT.md 7), nn_model. */
#include "io_internal.h"
#include "module/module_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIG 256

struct nn_model {
    nn__handle handle; /* NN__KIND_MODEL */
    nn_module *module;
    nn_meta *meta;
};
NN__HANDLE_FIRST(struct nn_model, handle);

/* ------------------------------------------------- state dict <-> list */

static void list_unborrow(nn__named_list *l) {
    nn__free(l->e); /* the names and tensors are the state dict's */
    memset(l, 0, sizeof *l);
}

/* Borrowing view of a state dict as a tensor list. */
static nn_status list_of_sd(const nn_statedict *sd, nn__named_list *l, const char *fn) {
    memset(l, 0, sizeof *l);
    int64_t n = nn_statedict_size(sd);
    if (n < 0) return nn_last_status();
    l->e = nn__calloc((size_t)(n ? n : 1), sizeof *l->e);
    if (!l->e) return NN_ERR_NOMEM;
    l->cap = n;
    for (int64_t i = 0; i < n; i++) {
        l->e[i].name = (char *)nn_statedict_name(sd, i);
        l->e[i].t = nn_statedict_tensor(sd, i);
    }
    l->n = n;
    (void)fn;
    return NN_OK;
}

/* A new state dict holding the list's tensors (the list keeps its own). */
static nn_statedict *sd_of_list(const nn__named_list *l) {
    nn_statedict *sd = nn_statedict_new();
    for (int64_t i = 0; sd && i < l->n; i++) {
        if (nn_statedict_set(sd, l->e[i].name, l->e[i].t)) {
            nn_statedict_free(sd);
            sd = NULL;
        }
    }
    return sd;
}

/* ---------------------------------------------------- module tree: save */

static nn_status encode_node(nn_module *m, int depth, nn__wbuf *w, const char *fn) {
    if (depth >= NN__IO_MAX_DEPTH)
        return nn__err(NN_ERR_LIMIT, "%s: module tree nesting depth exceeds %d", fn,
                       NN__IO_MAX_DEPTH);
    const char *type = nn__module_type(m);
    int nc = nn__module_config_count(m), nch = nn__module_num_children(m);
    if (!type || nc < 0 || nch < 0) return nn_last_status();
    nn__wbuf_str(w, type);
    nn__wbuf_u32(w, (uint32_t)nc);
    for (int i = 0; i < nc; i++) {
        const char *key;
        double v;
        nn_status st = nn__module_config_get(m, i, &key, &v);
        if (st) return st;
        nn__wbuf_str(w, key);
        nn__wbuf_f64(w, v);
    }
    nn__wbuf_u32(w, (uint32_t)nch);
    for (int i = 0; i < nch; i++) {
        const char *name;
        nn_module *c = nn__module_child(m, i, &name);
        if (!c) return nn_last_status();
        nn__wbuf_str(w, name);
        nn_status st = encode_node(c, depth + 1, w, fn);
        if (st) return st;
    }
    return w->err;
}

/* ---------------------------------------------------- module tree: load */

typedef struct tree_rd {
    nn__rd r;
    int nodes;
    uint64_t param_budget; /* bytes of tensors in the file */
    nn__ties ties;         /* tied parameters, applied as their modules are made */
    char *path;            /* dotted prefix of the node being read ("" or "a.b.") */
    size_t plen, pcap;
} tree_rd;


/* Type + hyperparameters -> a fresh module, checked against the budget. */
static nn_module *create_node(tree_rd *t, const char *fn) {
    nn__rd *r = &t->r;
    char *type = NULL, *keys[MAX_CONFIG] = {0};
    double values[MAX_CONFIG];
    uint32_t nc = 0, nkeys = 0; /* nkeys: how many keys[] were allocated */
    nn_module *m = NULL;
    /* A hyperparameter takes at least 4 (key length) + 8 bytes. */
    if (!nn__rd_str(r, &type, NN__IO_MAX_NAME, "module type") ||
        !nn__rd_count(r, &nc, MAX_CONFIG, 12, "hyperparameter count"))
        goto done;
    for (; nkeys < nc; nkeys++)
        if (!nn__rd_str(r, &keys[nkeys], NN__IO_MAX_NAME, "hyperparameter key") ||
            !nn__rd_f64(r, &values[nkeys], "hyperparameter value"))
            goto done;
    /* Cap what construction may allocate by what the file's tensors hold, so
     * e.g. Linear(30000, 30000) in a tiny file fails before allocating. */
    /* A module with a tied parameter makes its own copy first (freed once
     * tied): the sources made so far may be allocated again, briefly. */
    uint64_t budget = t->param_budget + t->ties.src_bytes;
    nn__tensor_budget(&budget);
    m = nn__module_create(type, (const char *const *)keys, values, (int)nc);
    nn__tensor_budget(NULL);
    if (!m) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", nn_last_error());
        nn_status st = nn_last_status();
        nn__err(st, "%s: %s", fn, msg);
        goto done;
    }
    /* Tied parameters share a tensor charged where it was first made. */
    uint64_t tied = 0;
    if (nn__ties_attach(&t->ties, t->path, m, &tied, fn)) {
        nn_module_free(m);
        m = NULL;
        goto done;
    }
    uint64_t b = nn__module_own_bytes(m) - tied; /* its children come later */
    if (b > t->param_budget) {
        nn__err(NN_ERR_FORMAT,
                "%s: module '%s' needs %llu more parameter bytes than the file's "
                "tensors hold",
                fn, type, (unsigned long long)(b - t->param_budget));
        nn_module_free(m);
        m = NULL;
        goto done;
    }
    t->param_budget -= b;
done:
    nn__free(type);
    for (uint32_t i = 0; i <= nkeys && i < MAX_CONFIG; i++) nn__free(keys[i]);
    return m;
}

static nn_module *decode_node(tree_rd *t, int depth, const char *fn) {
    if (depth >= NN__IO_MAX_DEPTH)
        return NN__FAIL(NN_ERR_LIMIT, "%s: module tree nesting depth exceeds %d", fn,
                        NN__IO_MAX_DEPTH);
    if (++t->nodes > NN__IO_MAX_NODES)
        return NN__FAIL(NN_ERR_LIMIT, "%s: module tree has more than %d nodes", fn,
                        NN__IO_MAX_NODES);
    nn_module *m = create_node(t, fn);
    uint32_t nch;
    /* A child takes at least 4 (name) + 4 (type) + 4 + 4 (counts) bytes. */
    if (!m || !nn__rd_count(&t->r, &nch, NN__IO_MAX_NODES, 16, "child count")) goto fail;
    for (uint32_t i = 0; i < nch; i++) {
        char *name = NULL;
        if (!nn__rd_str(&t->r, &name, NN__IO_MAX_NAME, "child name")) goto fail;
        size_t plen = t->plen, ln = strlen(name);
        if (t->ties.n) { /* the path, needed only to find tied names */
            if (plen + ln + 2 > t->pcap) {
                size_t cap = (plen + ln + 2) * 2;
                char *p = nn__realloc(t->path, cap);
                if (!p) {
                    nn__free(name);
                    goto fail;
                }
                t->path = p;
                t->pcap = cap;
            }
            memcpy(t->path + plen, name, ln);
            t->path[plen + ln] = '.';
            t->path[plen + ln + 1] = '\0';
            t->plen = plen + ln + 1;
        }
        nn_module *c = decode_node(t, depth + 1, fn);
        if (t->ties.n) t->path[t->plen = plen] = '\0';
        nn_status st = c ? nn__module_add_child(m, name, c) : nn_last_status();
        if (c && st) { /* name the public function, as every load error does */
            char msg[400];
            snprintf(msg, sizeof msg, "%s", nn_last_error());
            st = nn__err(st, "%s: %s", fn, msg);
        }
        nn_module_free(c); /* the parent holds its own reference */
        nn__free(name);
        if (st) goto fail;
    }
    if (nn__module_finish(m, fn)) goto fail;
    return m;
fail:
    nn_module_free(m);
    return NULL;
}

/* The module section's payload -> a module tree whose parameters and
 * buffers may take at most tensor_bytes (what the file's tensors hold). */
static nn_module *decode_tree(const uint8_t *p, size_t len, uint64_t tensor_bytes,
                              nn__ties *ties, const char *fn) {
    tree_rd t = {.param_budget = tensor_bytes};
    nn__rd_init(&t.r, p, len, fn, "module section");
    nn_module *m = NULL;
    if (!nn__ties_decode(&t.r, &t.ties, fn) && (!t.ties.n || (t.path = nn__calloc(1, 1))))
        m = decode_node(&t, 0, fn);
    if (m && (!nn__rd_end(&t.r) || nn__ties_check_done(&t.ties, fn))) {
        nn_module_free(m);
        m = NULL;
    }
    nn__free(t.path);
    if (m && ties) *ties = t.ties; /* the caller matches names past the tied ones */
    else nn__ties_free(&t.ties);
    return m;
}

/* ------------------------------------------------------ training state */

typedef struct training {
    int64_t epoch, step;
    bool has_sched;
    uint64_t rng[4];
    nn__named_list opt, sched;
} training;

static void training_clear(training *t) {
    nn__named_list_clear(&t->opt, true);
    nn__named_list_clear(&t->sched, true);
}

/* Append u64 length + tensor table of a state dict. */
static nn_status encode_sd(nn_statedict *sd, int level, nn__wbuf *w, const char *fn) {
    nn__named_list l;
    nn_status st = list_of_sd(sd, &l, fn);
    if (st) return st;
    nn__wbuf body = {0};
    st = nn__tensors_encode(&l, level, &body, fn);
    list_unborrow(&l);
    if (!st) {
        nn__wbuf_u64(w, body.len);
        nn__wbuf_bytes(w, body.p, body.len);
        st = w->err;
    }
    nn__wbuf_free(&body);
    return st;
}

static nn_status encode_training(const nn_io_options *o, int level, nn__wbuf *w, const char *fn) {
    uint64_t rng[4];
    nn_status st = nn_generator_get_state(nn__gen(o->gen), rng);
    if (st) return st;
    nn__wbuf_u64(w, (uint64_t)o->epoch);
    nn__wbuf_u64(w, (uint64_t)o->step);
    nn__wbuf_u8(w, o->sched != NULL);
    nn__wbuf_u8(w, 0);
    nn__wbuf_u16(w, 0);
    nn__wbuf_u32(w, 0);
    for (int i = 0; i < 4; i++) nn__wbuf_u64(w, rng[i]);
    nn_statedict *osd = nn_optim_state_dict(o->opt);
    if (!osd) return nn_last_status();
    st = encode_sd(osd, level, w, fn);
    nn_statedict_free(osd);
    if (st || !o->sched) return st;
    nn_statedict *ssd = nn_sched_state_dict(o->sched);
    if (!ssd) return nn_last_status();
    st = encode_sd(ssd, level, w, fn);
    nn_statedict_free(ssd);
    return st;
}

/* Decode every tensor of the table that fills r into new tensors (out). */
static nn_status table_to_list(nn__rd *r, int64_t *budget, nn__named_list *out, int64_t base,
                               const char *fn) {
    nn__ttable t;
    nn_status st = nn__ttable_read_ex(r, budget, &t, base, fn);
    if (st) return st;
    st = nn__ttable_list(&t, out, fn);
    if (!st) st = nn__ttable_finish(&t, fn);
    nn__ttable_free(&t);
    return st;
}

static nn_status decode_sd(nn__rd *r, int64_t *budget, nn__named_list *out, const char *field,
                           const char *fn) {
    uint64_t len;
    nn__rd sub;
    if (!nn__rd_u64(r, &len, field)) return nn_last_status();
    if (len > nn__rd_left(r))
        return nn__err(NN_ERR_FORMAT,
                       "%s: training section: %s length %llu exceeds the %zu "
                       "bytes left",
                       fn, field, (unsigned long long)len, nn__rd_left(r));
    if (!nn__rd_sub(r, &sub, len, "tensor table", field)) return nn_last_status();
    return table_to_list(&sub, budget, out, -1, fn);
}

/* The training section, the current section of ld. */
static nn_status decode_training(nn__ld *ld, int64_t *budget, training *t, const char *fn) {
    memset(t, 0, sizeof *t);
    nn__rd r;
    nn__rd_init_ld(&r, ld, (size_t)nn__ld_left(ld), fn, "training section");
    uint8_t has_sched, pad8;
    uint16_t pad16;
    uint32_t pad32;
    if (!nn__rd_i64(&r, &t->epoch, "epoch") || !nn__rd_i64(&r, &t->step, "step") ||
        !nn__rd_u8(&r, &has_sched, "schedule flag") || !nn__rd_u8(&r, &pad8, "reserved") ||
        !nn__rd_u16(&r, &pad16, "reserved") || !nn__rd_u32(&r, &pad32, "reserved"))
        return nn_last_status();
    for (int i = 0; i < 4; i++)
        if (!nn__rd_u64(&r, &t->rng[i], "RNG state")) return nn_last_status();
    if (t->epoch < 0 || t->step < 0 || has_sched > 1 || pad8 || pad16 || pad32)
        return nn__err(NN_ERR_FORMAT,
                       "%s: training section: epoch %lld, step %lld, schedule "
                       "flag %u or reserved fields invalid",
                       fn, (long long)t->epoch, (long long)t->step, has_sched);
    if (!(t->rng[0] | t->rng[1] | t->rng[2] | t->rng[3]))
        return nn__err(NN_ERR_FORMAT, "%s: training section: RNG state is all zero", fn);
    t->has_sched = has_sched;
    nn_status st = decode_sd(&r, budget, &t->opt, "optimizer state", fn);
    if (!st && has_sched) st = decode_sd(&r, budget, &t->sched, "schedule state", fn);
    if (!st && !nn__rd_end(&r)) st = nn_last_status();
    if (st) training_clear(t);
    return st;
}

/* -------------------------------------------------------------- saving */

static nn_status save_module(nn_module *m, const nn_meta *meta, const nn_io_options *opts,
                             const nn__io_dst *dst, const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return nn_last_status();
    if (!nn__check_ptr(m, fn, "m")) return nn_last_status();
    if (meta && !nn__meta_check(meta, fn)) return nn_last_status();
    nn_statedict *sd = nn_module_state_dict(m);
    if (!sd) return nn_last_status();
    nn__ties ties;
    nn_status st = nn__ties_collect(m, &ties);
    if (!st && ties.n) { /* a tied tensor is stored once, under its first name */
        nn_statedict *once = nn_statedict_new();
        for (int64_t i = 0; once && i < nn_statedict_size(sd) && !st; i++)
            if (!nn__ties_is_dst(&ties, nn_statedict_name(sd, i)))
                st = nn_statedict_set(once, nn_statedict_name(sd, i), nn_statedict_tensor(sd, i));
        if (!once) st = nn_last_status();
        nn_statedict_free(sd);
        sd = once;
    }
    nn__named_list l = {0};
    if (!st) st = list_of_sd(sd, &l, fn);
    nn__wbuf tree = {0}, train = {0};
    if (!st && o->module_tree) {
        nn__ties_encode(&ties, &tree);
        st = encode_node(m, 0, &tree, fn);
    }
    nn__ties_free(&ties);
    if (!st && o->opt) st = encode_training(o, (int)o->compression, &train, fn);
    if (!st) {
        nn__io_parts parts = {meta, &l, o->module_tree ? &tree : NULL, o->opt ? &train : NULL, o};
        st = nn__io_save(&parts, o->aligned ? -1 : (int)o->compression, dst, fn);
    }
    nn__wbuf_free(&tree);
    nn__wbuf_free(&train);
    list_unborrow(&l);
    nn_statedict_free(sd);
    return st;
}

nn_status nn_model_save(nn_module *m, const char *path, const nn_meta *meta,
                        const nn_io_options *opts) {
    if (!nn__check_ptr(path, "nn_model_save", "path")) return nn_last_status();
    nn__io_dst dst = {.path = path};
    return save_module(m, meta, opts, &dst, "nn_model_save");
}

nn_status nn_model_save_buffer(nn_module *m, const nn_meta *meta, const nn_io_options *opts,
                               void **data, size_t *size) {
    const char *fn = "nn_model_save_buffer";
    if (!nn__check_ptr(data, fn, "data") || !nn__check_ptr(size, fn, "size"))
        return nn_last_status();
    nn__io_dst dst = {.out_data = data, .out_size = size};
    return save_module(m, meta, opts, &dst, fn);
}

nn_status nn_model_save_stream(nn_module *m, nn_write_fn write, void *user, const nn_meta *meta,
                               const nn_io_options *opts) {
    const char *fn = "nn_model_save_stream";
    if (!nn__check_ptr((const void *)(uintptr_t)write, fn, "write")) return nn_last_status();
    nn__io_dst dst = {.write = write, .user = user};
    return save_module(m, meta, opts, &dst, fn);
}

static nn_status save_sd(const nn_statedict *sd, const nn_io_options *opts, const nn__io_dst *dst,
                         const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return nn_last_status();
    nn__named_list l;
    nn_status st = list_of_sd(sd, &l, fn);
    if (st) return st;
    nn__io_parts parts = {NULL, &l, NULL, NULL, o};
    st = nn__io_save(&parts, o->aligned ? -1 : (int)o->compression, dst, fn);
    list_unborrow(&l);
    return st;
}

nn_status nn_statedict_save(const nn_statedict *sd, const char *path, const nn_io_options *opts) {
    if (!nn__check_ptr(path, "nn_statedict_save", "path")) return nn_last_status();
    nn__io_dst dst = {.path = path};
    return save_sd(sd, opts, &dst, "nn_statedict_save");
}

nn_status nn_statedict_save_buffer(const nn_statedict *sd, const nn_io_options *opts, void **data,
                                   size_t *size) {
    const char *fn = "nn_statedict_save_buffer";
    if (!nn__check_ptr(data, fn, "data") || !nn__check_ptr(size, fn, "size"))
        return nn_last_status();
    nn__io_dst dst = {.out_data = data, .out_size = size};
    return save_sd(sd, opts, &dst, fn);
}

nn_status nn_statedict_save_stream(const nn_statedict *sd, nn_write_fn write, void *user,
                                   const nn_io_options *opts) {
    const char *fn = "nn_statedict_save_stream";
    if (!nn__check_ptr((const void *)(uintptr_t)write, fn, "write")) return nn_last_status();
    nn__io_dst dst = {.write = write, .user = user};
    return save_sd(sd, opts, &dst, fn);
}

/* ------------------------------------------------------------- loading */

/* The tensor section (the current section of ld) decoded into a new state
 * dict, each tensor straight into its own storage. */
/* The file offset of the current section's payload when the file is
 * aligned (its tensor section follows FORMAT.md 5's aligned rule), else -1. */
static int64_t aligned_base(const nn__ld *ld) {
    return nn__get_u32(ld->hdr + 12) & NN__IO_FLAG_ALIGNED ? (int64_t)ld->pos : -1;
}

static nn_status read_sd(nn__ld *ld, int64_t *budget, nn_statedict **out, const char *fn) {
    nn__rd r;
    int64_t base = aligned_base(ld);
    nn__rd_init_ld(&r, ld, (size_t)nn__ld_left(ld), fn, "tensor table");
    nn__ttable t;
    nn_status st = nn__ttable_read_ex(&r, budget, &t, base, fn);
    if (st) return st;
    nn_statedict *sd = nn_statedict_new();
    if (!sd) st = NN_ERR_NOMEM;
    while (!st && t.next < t.n) {
        const nn__tentry *e = &t.e[t.next];
        nn_tensor *x = nn__tensor_new((nn_dtype)e->dtype, e->shape, e->ndim);
        uint8_t dummy;
        if (!x) st = nn_last_status();
        if (!st) st = nn__ttable_data(&t, e->raw ? (void *)x->storage->data : &dummy, fn);
        if (!st) st = nn_statedict_set(sd, e->name, x);
        nn__tensor_release(x);
    }
    if (!st) st = nn__ttable_finish(&t, fn);
    nn__ttable_free(&t);
    if (st) nn_statedict_free(sd);
    else *out = sd;
    return st;
}

static nn_statedict *load_sd(const nn__io_src *src, const nn_io_options *opts, const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return NULL;
    nn__ld ld;
    nn__unseal *u;
    nn_status st = nn__ld_open_sealed(&ld, &u, src, o, fn);
    nn_statedict *sd = NULL;
    int64_t budget = o->max_bytes;
    uint32_t type;
    while (!st && !(st = nn__ld_next(&ld, &type)) && type)
        if (type == NN__SEC_TENSORS) st = read_sd(&ld, &budget, &sd, fn);
    if (!st && !sd) st = nn__err(NN_ERR_FORMAT, "%s: the file has no tensor section", fn);
    if (nn__ld_close_sealed(&ld, u, st)) {
        nn_statedict_free(sd);
        return NULL;
    }
    return sd;
}

nn_statedict *nn_statedict_load(const char *path, const nn_io_options *opts) {
    if (!nn__check_ptr(path, "nn_statedict_load", "path")) return NULL;
    nn__io_src src = {.path = path};
    return load_sd(&src, opts, "nn_statedict_load");
}

nn_statedict *nn_statedict_load_buffer(const void *data, size_t size, const nn_io_options *opts) {
    nn__io_src src = {.data = data, .size = size};
    return load_sd(&src, opts, "nn_statedict_load_buffer");
}

nn_statedict *nn_statedict_load_stream(nn_read_fn read, void *user, const nn_io_options *opts) {
    const char *fn = "nn_statedict_load_stream";
    if (!nn__check_ptr((const void *)(uintptr_t)read, fn, "read")) return NULL;
    nn__io_src src = {.read = read, .user = user};
    return load_sd(&src, opts, fn);
}

static uint64_t list_bytes(const nn__named_list *l) {
    uint64_t b = 0;
    for (int64_t i = 0; i < l->n; i++)
        b += (uint64_t)l->e[i].t->numel * nn_dtype_size(l->e[i].t->dtype);
    return b;
}

/* "a, b, c and 4 more" into a bounded message part. */
static void name_list(char *buf, size_t cap, const char *what, const char *const *names, int n,
                      int total) {
    size_t o = strlen(buf);
    int k = snprintf(buf + o, cap - o, "%s%s ", o ? "; " : "", what);
    for (int i = 0; i < n && k >= 0 && (o += (size_t)k) < cap; i++)
        k = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", names[i]);
    if (k >= 0 && (o += (size_t)k) < cap && total > n)
        snprintf(buf + o, cap - o, " and %d more", total - n);
}

#define SHOWN 4 /* names listed per kind of mismatch */

/* Matching a module's tensors to a table's entries: every parameter and
 * buffer exactly once, with its shape, nothing extra. */
typedef struct match {
    const nn__ttable *t;
    const nn__ties *ties; /* their destinations are matched through their sources */
    nn__index names; /* entry name -> entry */
    nn_tensor **dst; /* per entry: the module's tensor */
    char missing[SHOWN][128], shape_msg[200];
    int nmissing, nshape;
    const char *shape[SHOWN];
    bool nomem;
} match;

static bool entry_eq(const void *ctx, int64_t i) {
    const void *const *k = ctx; /* {table, name} */
    return !strcmp(((const nn__ttable *)k[0])->e[i].name, (const char *)k[1]);
}

static bool match_one(const char *name, nn_tensor *x, void *ctx) {
    match *c = ctx;
    if (nn__ties_is_dst(c->ties, name)) return true;
    const void *key[2] = {c->t, name};
    int64_t i = nn__index_find(&c->names, nn__hash_str(name), entry_eq, key);
    if (i < 0 || c->dst[i]) { /* not in the file (or a second name of one already matched) */
        if (c->nmissing < SHOWN) snprintf(c->missing[c->nmissing], 128, "%s", name);
        c->nmissing++;
        return true;
    }
    const nn__tentry *e = &c->t->e[i];
    c->dst[i] = x;
    bool same = x->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = x->shape[d] == e->shape[d];
    if (!same) {
        if (c->nshape < SHOWN) c->shape[c->nshape] = e->name;
        if (!c->nshape++) {
            char a[128], b[128];
            snprintf(c->shape_msg, sizeof c->shape_msg, " (%s: module %s, file %s)", e->name,
                     nn__shape_str(x->shape, x->ndim, a, sizeof a),
                     nn__shape_str(e->shape, e->ndim, b, sizeof b));
        }
    }
    return true;
}

/* Where each table entry goes (dst[i]), found before any data is decoded. */
static nn_status match_tree(nn_module *m, const nn__ttable *t, const nn__ties *ties,
                            nn_tensor **dst, const char *fn) {
    match c = {.t = t, .ties = ties, .dst = dst};
    nn_status st = nn__index_reserve(&c.names, t->n);
    for (uint32_t i = 0; !st && i < t->n; i++) nn__index_add(&c.names, nn__hash_str(t->e[i].name), i);
    if (!st && !nn__module_visit(m, match_one, &c)) st = nn_last_status();
    nn__index_free(&c.names);
    if (st) return st;
    const char *extra[SHOWN], *missing[SHOWN];
    int nextra = 0;
    for (uint32_t i = 0; i < t->n; i++)
        if (!dst[i] && nextra++ < SHOWN) extra[nextra - 1] = t->e[i].name;
    if (!nextra && !c.nmissing && !c.nshape) return NN_OK;
    for (int i = 0; i < SHOWN; i++) missing[i] = c.missing[i];
    char msg[1024] = "";
    if (c.nmissing)
        name_list(msg, sizeof msg, "missing", missing, c.nmissing < SHOWN ? c.nmissing : SHOWN,
                  c.nmissing);
    if (nextra) name_list(msg, sizeof msg, "unexpected", extra, nextra < SHOWN ? nextra : SHOWN, nextra);
    if (c.nshape)
        name_list(msg, sizeof msg, "wrong shape", c.shape, c.nshape < SHOWN ? c.nshape : SHOWN,
                  c.nshape);
    return nn__err(NN_ERR_FORMAT, "%s: the file's tensors do not fit its module tree: %s%s", fn, msg,
                   c.shape_msg);
}

/* The tensor section (the current one of ld) of a file whose module
 * section came first: the table, then the tree (its allocations capped by
 * the table's bytes), then a strict name and shape match, and only then the
 * data, decoded straight into the parameters and buffers. */
static nn_status tensors_into_tree(nn__ld *ld, const uint8_t *tree, size_t tree_len,
                                   int64_t *budget, nn_module **out, const char *fn) {
    nn__rd r;
    int64_t base = aligned_base(ld);
    nn__rd_init_ld(&r, ld, (size_t)nn__ld_left(ld), fn, "tensor table");
    nn__ttable t;
    nn_status st = nn__ttable_read_ex(&r, budget, &t, base, fn);
    if (st) return st;
    nn__ties ties = {0};
    nn_module *m = decode_tree(tree, tree_len, t.raw_bytes, &ties, fn);
    nn_tensor **dst = m ? nn__calloc(t.n ? t.n : 1, sizeof *dst) : NULL;
    if (!dst) st = nn_last_status();
    if (!st) st = match_tree(m, &t, &ties, dst, fn);
    nn__ties_free(&ties);
    while (!st && t.next < t.n) {
        nn_tensor *d = dst[t.next];
        const nn__tentry *e = &t.e[t.next];
        if (d->dtype == (nn_dtype)e->dtype && nn__is_contiguous(d)) {
            uint8_t dummy;
            void *p = (uint8_t *)d->storage->data + (size_t)d->offset * nn_dtype_size(d->dtype);
            st = nn__ttable_data(&t, e->raw ? p : &dummy, fn);
        } else { /* another dtype (converted) or a strided view: via a copy */
            nn_tensor *x = nn__tensor_new((nn_dtype)e->dtype, e->shape, e->ndim);
            uint8_t dummy;
            st = x ? nn__ttable_data(&t, e->raw ? (void *)x->storage->data : &dummy, fn)
                   : nn_last_status();
            if (!st) st = nn_tensor_assign(d, x);
            nn__tensor_release(x);
        }
    }
    if (!st) st = nn__ttable_finish(&t, fn);
    nn__free(dst);
    nn__ttable_free(&t);
    if (st) nn_module_free(m);
    else *out = m;
    return st;
}

/* A file whose tensor section comes before its module section (allowed,
 * written by no version of libnn): the tensors are kept decoded until the
 * tree is known, then copied in. */
static nn_status tree_from_list(const uint8_t *tree, size_t tree_len, const nn__named_list *tl,
                                nn_module **out, const char *fn) {
    nn__ties ties = {0};
    nn_module *m = decode_tree(tree, tree_len, list_bytes(tl), &ties, fn);
    if (!m) return nn_last_status();
    nn_statedict *sd = sd_of_list(tl);
    /* A tied parameter is in the file once: give it its other names too. */
    for (uint32_t i = 0; sd && i < ties.n; i++) {
        nn_tensor *x = nn_statedict_get(sd, ties.src[i]);
        nn_clear_error();
        if (x && nn_statedict_set(sd, ties.dst[i], x)) {
            nn_statedict_free(sd);
            sd = NULL;
        }
    }
    nn__ties_free(&ties);
    nn_status st = sd ? nn_module_load_state_dict(m, sd, true, NULL) : nn_last_status();
    if (st && sd) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", nn_last_error());
        st = nn__err(NN_ERR_FORMAT, "%s: the file's tensors do not fit its module tree: %s", fn,
                     msg);
    }
    nn_statedict_free(sd);
    if (st) nn_module_free(m);
    else *out = m;
    return st;
}

/* One pass over the file: metadata, module tree (kept as bytes), then the
 * tensor section, decoded into the tree built from those bytes. */
static nn_model *load_model(const nn__io_src *src, const nn_io_options *opts, const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return NULL;
    nn__ld ld;
    nn__unseal *u;
    nn_status st = nn__ld_open_sealed(&ld, &u, src, o, fn);
    nn_model *model = st ? NULL : nn__calloc(1, sizeof *model);
    uint8_t *tree = NULL;
    size_t tree_len = 0;
    nn__named_list staged = {0};
    bool have_tensors = false;
    int64_t budget = o->max_bytes;
    uint32_t type;
    if (!st && !model) st = NN_ERR_NOMEM;
    while (!st && !(st = nn__ld_next(&ld, &type)) && type) {
        const uint8_t *p;
        size_t len;
        if (type == NN__SEC_META) {
            st = nn__ld_whole(&ld, &p, &len);
            if (!st && !(model->meta = nn__meta_decode(p, len, fn))) st = nn_last_status();
        } else if (type == NN__SEC_MODULE) {
            st = nn__ld_whole(&ld, &p, &len);
            if (!st && !(tree = nn__malloc(len))) st = NN_ERR_NOMEM;
            if (!st) memcpy(tree, p, len);
            tree_len = len;
        } else if (type == NN__SEC_TENSORS) {
            have_tensors = true;
            if (tree) {
                st = tensors_into_tree(&ld, tree, tree_len, &budget, &model->module, fn);
            } else {
                nn__rd r;
                int64_t base = aligned_base(&ld);
                nn__rd_init_ld(&r, &ld, (size_t)nn__ld_left(&ld), fn, "tensor table");
                st = table_to_list(&r, &budget, &staged, base, fn);
            }
        }
    }
    if (!st && !have_tensors) st = nn__err(NN_ERR_FORMAT, "%s: the file has no tensor section", fn);
    if (!st && !tree)
        st = nn__err(NN_ERR_FORMAT,
                     "%s: the file has no module section (a weights-only file: use "
                     "nn_module_load_weights)",
                     fn);
    if (!st && !model->module) st = tree_from_list(tree, tree_len, &staged, &model->module, fn);
    if (!st && !model->meta && !(model->meta = nn__meta_new())) st = NN_ERR_NOMEM;
    if (!st) st = nn_module_train(model->module, false);
    st = nn__ld_close_sealed(&ld, u, st);
    nn__named_list_clear(&staged, true);
    nn__free(tree);
    if (st) {
        if (model) {
            nn_module_free(model->module);
            nn_meta_free(model->meta);
            nn__free(model);
        }
        return NULL;
    }
    nn__handle_set(&model->handle, NN__KIND_MODEL);
    return model;
}

/* ------------------------------------------- memory-mapped model files
 *
 * NN_IO_OPTION_MMAP on a plain aligned file (FORMAT.md 11): the file is
 * mapped (lib/io/mapped.c), its header and section framing checked in
 * place, the metadata and module sections (small) CRC-checked and decoded,
 * the tensor table checked by every rule of FORMAT.md 5 and 11 against the
 * real size, and each parameter and buffer then views its bytes in the
 * mapping: no tensor byte is read at load. The tree is built without
 * initialising its tensors (nn__tensor_skip_init), since they are all
 * replaced. Mode 2 first checks every section CRC and the file CRC with one
 * streaming read() of the file (page cache only: the mapping's pages are
 * not touched, so the process's RSS does not grow). Anything else (a file
 * without the aligned flag, a signed or encrypted file, options carrying
 * keys, an empty or unmappable file) is loaded by copying, as without the
 * option. */

typedef struct map_secs {
    uint64_t off[NN__IO_MAX_SECTIONS], len[NN__IO_MAX_SECTIONS]; /* payloads, in file order */
    uint32_t crc[NN__IO_MAX_SECTIONS], type[NN__IO_MAX_SECTIONS], n;
    int at[NN__SEC_TRAINING + 1]; /* known types: their index, or -1 */
} map_secs;

static const char *map_sec_name(uint32_t type) {
    switch (type) {
    case NN__SEC_META: return "metadata section";
    case NN__SEC_MODULE: return "module section";
    case NN__SEC_TENSORS: return "tensor section";
    case NN__SEC_TRAINING: return "training section";
    default: return "section";
    }
}

/* Header (past the magic and flags, which the caller checked) and the
 * section framing (FORMAT.md 2-3) of the mapped file d of `size` bytes. */
static nn_status map_frame(const uint8_t *d, size_t size, map_secs *s, const char *fn) {
    nn_status st = nn__io_header_fields(d, size, d + size - 8, fn);
    if (st) return st;
    uint16_t major = (uint16_t)(d[8] | d[9] << 8), minor = (uint16_t)(d[10] | d[11] << 8);
    uint32_t count = nn__get_u32(d + 24);
    if (count > NN__IO_MAX_SECTIONS)
        return nn__err(NN_ERR_LIMIT, "%s: section count %u exceeds the limit of %d", fn, count,
                       NN__IO_MAX_SECTIONS);
    for (int t = 0; t <= NN__SEC_TRAINING; t++) s->at[t] = -1;
    s->n = count;
    uint64_t pos = NN__IO_HEADER_SIZE, end = size - NN__IO_TRAILER_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        if (end - pos < NN__IO_SECTION_HEADER_SIZE)
            return nn__err(NN_ERR_FORMAT, "%s: section list: section %u header needs 24 bytes at "
                                          "offset %llu, only %llu left",
                           fn, i, (unsigned long long)(pos - NN__IO_HEADER_SIZE),
                           (unsigned long long)(end - pos));
        const uint8_t *h = d + pos;
        uint32_t type = nn__get_u32(h), sflags = nn__get_u32(h + 4);
        uint64_t len = nn__get_u64(h + 8);
        pos += NN__IO_SECTION_HEADER_SIZE;
        if ((sflags & ~NN__SEC_FLAG_SKIPPABLE) || nn__get_u32(h + 20))
            return nn__err(NN_ERR_FORMAT, "%s: section %u (type %u): flags 0x%x / reserved 0x%x invalid",
                           fn, i, type, sflags, nn__get_u32(h + 20));
        if (len > end - pos)
            return nn__err(NN_ERR_FORMAT, "%s: section %u (type %u) length %llu exceeds the %llu bytes left",
                           fn, i, type, (unsigned long long)len, (unsigned long long)(end - pos));
        if (type >= NN__SEC_META && type <= NN__SEC_TRAINING) {
            if (s->at[type] >= 0)
                return nn__err(NN_ERR_FORMAT, "%s: duplicate %s (section %u)", fn,
                               map_sec_name(type), i);
            s->at[type] = (int)i;
        } else if (!(sflags & NN__SEC_FLAG_SKIPPABLE)) {
            return nn__err(NN_ERR_UNSUPPORTED, "%s: section %u has unknown type %u and is not "
                                               "marked skippable (file version %u.%u)",
                           fn, i, type, major, minor);
        }
        s->off[i] = pos;
        s->len[i] = len;
        s->crc[i] = nn__get_u32(h + 16);
        s->type[i] = type;
        pos += len;
    }
    if (pos != end)
        return nn__err(NN_ERR_FORMAT, "%s: %llu bytes between the last of %u sections and the trailer",
                       fn, (unsigned long long)(end - pos), count);
    if (s->at[NN__SEC_TENSORS] < 0)
        return nn__err(NN_ERR_FORMAT, "%s: the file has no tensor section", fn);
    if (s->at[NN__SEC_MODULE] < 0)
        return nn__err(NN_ERR_FORMAT, "%s: the file has no module section (a weights-only file: use "
                                      "nn_module_load_weights)",
                       fn);
    return NN_OK;
}

/* The CRC-32 of section i, computed through the mapping (small sections only). */
static nn_status map_crc(const uint8_t *d, const map_secs *s, uint32_t i, const char *fn) {
    uint32_t crc = nn__crc32(0, d + s->off[i], (size_t)s->len[i]);
    if (crc != s->crc[i])
        return nn__err(NN_ERR_CHECKSUM, "%s: %s %u CRC-32 is 0x%08x, its header says 0x%08x", fn,
                       map_sec_name(s->type[i]), i, crc, s->crc[i]);
    return NN_OK;
}

/* Mode 2: every section CRC and the file CRC, by one streaming read of the
 * file (1 MiB at a time) rather than through the mapping. */
static nn_status map_verify(const char *path, const uint8_t *d, size_t size, const map_secs *s,
                            const char *fn) {
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = nn__malloc(CHUNK);
    if (!buf) return NN_ERR_NOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    nn_status st = fd < 0 ? nn__err(NN_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno))
                          : NN_OK;
    uint32_t file_crc = 0, crc[NN__IO_MAX_SECTIONS] = {0}, cur = 0;
    uint64_t at = 0, crc_end = size - 4;
    while (!st && at < crc_end) {
        size_t want = crc_end - at < CHUNK ? (size_t)(crc_end - at) : CHUNK;
        ssize_t got = read(fd, buf, want);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            st = nn__err(got < 0 ? NN_ERR_IO : NN_ERR_TRUNCATED,
                         "%s: '%s' changed while mapped: read %llu of %zu bytes (%s)", fn, path,
                         (unsigned long long)at, size, got < 0 ? strerror(errno) : "end of file");
            break;
        }
        uint64_t b = at + (uint64_t)got;
        file_crc = nn__crc32(file_crc, buf, (size_t)got);
        while (cur < s->n && s->off[cur] < b) { /* the sections this chunk covers */
            uint64_t lo = s->off[cur] > at ? s->off[cur] : at;
            uint64_t se = s->off[cur] + s->len[cur], hi = se < b ? se : b;
            if (hi > lo) crc[cur] = nn__crc32(crc[cur], buf + (lo - at), (size_t)(hi - lo));
            if (se > b) break;
            cur++;
        }
        at = b;
    }
    if (fd >= 0) close(fd);
    nn__free(buf);
    for (uint32_t i = 0; !st && i < s->n; i++)
        if (crc[i] != s->crc[i])
            st = nn__err(NN_ERR_CHECKSUM, "%s: %s %u CRC-32 is 0x%08x, its header says 0x%08x", fn,
                         map_sec_name(s->type[i]), i, crc[i], s->crc[i]);
    uint32_t want = nn__get_u32(d + size - 4);
    if (!st && file_crc != want)
        st = nn__err(NN_ERR_CHECKSUM, "%s: file CRC-32 is 0x%08x, the trailer says 0x%08x", fn,
                     file_crc, want);
    return st;
}

/* dst may take over v's storage: it owns a whole storage of its own. */
static bool adoptable(const nn_tensor *dst, const nn_tensor *v) {
    return dst->dtype == v->dtype && nn__is_contiguous(dst) && dst->offset == 0 &&
           dst->storage->refs == 1 && !dst->storage->deleter &&
           dst->storage->nbytes == (size_t)dst->numel * nn_dtype_size(dst->dtype);
}

/* The tree, its tensors viewing the mapping. */
static nn_status map_tensors(nn__map *map, const uint8_t *d, const map_secs *s, int64_t budget,
                             nn_module **out, const char *fn) {
    nn__rd r;
    int ti = s->at[NN__SEC_TENSORS], mi = s->at[NN__SEC_MODULE];
    nn__rd_init(&r, d + s->off[ti], (size_t)s->len[ti], fn, "tensor table");
    nn__ttable t;
    nn_status st = nn__ttable_read_ex(&r, &budget, &t, (int64_t)s->off[ti], fn);
    if (st) return st;
    nn__ties ties = {0};
    nn__tensor_skip_init(true);
    nn_module *m = decode_tree(d + s->off[mi], (size_t)s->len[mi], t.raw_bytes, &ties, fn);
    nn__tensor_skip_init(false);
    nn_tensor **dst = m ? nn__calloc(t.n ? t.n : 1, sizeof *dst) : NULL;
    if (!dst) st = nn_last_status();
    if (!st) st = match_tree(m, &t, &ties, dst, fn);
    nn__ties_free(&ties);
    for (uint32_t i = 0; !st && i < t.n; i++) {
        const nn__tentry *e = &t.e[i];
        nn_tensor *v = nn__map_tensor(map, t.data_at + e->offset, (nn_dtype)e->dtype, e->shape,
                                      e->ndim, fn);
        if (!v) st = nn_last_status();
        else if (adoptable(dst[i], v))
            st = nn__tensor_adopt(dst[i], v, fn);
        else /* another dtype, or part of a shared storage: copied (its pages read) */
            st = nn_tensor_assign(dst[i], v);
        nn__tensor_release(v);
    }
    nn__free(dst);
    nn__ttable_free(&t);
    if (st) nn_module_free(m);
    else *out = m;
    return st;
}

static nn_model *load_model_mapped(const char *path, const nn_io_options *o, const char *fn) {
    nn__map *map = NULL;
    const uint8_t *d = NULL;
    size_t size = 0;
    bool keys = o->has_verify_key || o->has_encrypt_key || o->require_signature;
    bool mapped = !keys && !nn__map_open(path, 1, o->max_bytes, &map, &d, &size, fn);
    if (!mapped || size < NN__IO_HEADER_SIZE + NN__IO_TRAILER_SIZE ||
        memcmp(d, NN__IO_MAGIC, 8) != 0 || !(nn__get_u32(d + 12) & NN__IO_FLAG_ALIGNED)) {
        /* Not a plain aligned file (or not mappable): read and copied. */
        nn__map_release(map);
        nn_clear_error();
        nn__io_src src = {.path = path};
        return load_model(&src, o, fn);
    }
    map_secs *s = nn__malloc(sizeof *s);
    nn_status st = s ? map_frame(d, size, s, fn) : NN_ERR_NOMEM;
    if (!st && o->mmap == 2) st = map_verify(path, d, size, s, fn);
    for (int t = NN__SEC_META; !st && t <= NN__SEC_MODULE; t++)
        if (s->at[t] >= 0) st = map_crc(d, s, (uint32_t)s->at[t], fn);
    nn_meta *meta = NULL;
    nn_module *m = NULL;
    int mi = st ? -1 : s->at[NN__SEC_META];
    if (!st && mi >= 0 && !(meta = nn__meta_decode(d + s->off[mi], (size_t)s->len[mi], fn)))
        st = nn_last_status();
    if (!st && !meta && !(meta = nn__meta_new())) st = NN_ERR_NOMEM;
    if (!st) st = map_tensors(map, d, s, o->max_bytes, &m, fn);
    if (!st) st = nn_module_train(m, false);
    nn__map_release(map); /* the tensors hold their own references */
    nn__free(s);
    if (st) {
        nn_module_free(m);
        nn_meta_free(meta);
        return NULL;
    }
    return nn__model_wrap(m, meta);
}

nn_model *nn_model_load(const char *path, const nn_io_options *opts) {
    const char *fn = "nn_model_load";
    if (!nn__check_ptr(path, fn, "path")) return NULL;
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return NULL;
    if (o->mmap) return load_model_mapped(path, o, fn);
    nn__io_src src = {.path = path};
    return load_model(&src, opts, fn);
}

nn_model *nn_model_load_buffer(const void *data, size_t size, const nn_io_options *opts) {
    nn__io_src src = {.data = data, .size = size};
    return load_model(&src, opts, "nn_model_load_buffer");
}

nn_model *nn_model_load_stream(nn_read_fn read, void *user, const nn_io_options *opts) {
    const char *fn = "nn_model_load_stream";
    if (!nn__check_ptr((const void *)(uintptr_t)read, fn, "read")) return NULL;
    nn__io_src src = {.read = read, .user = user};
    return load_model(&src, opts, fn);
}

nn_model *nn__model_wrap(nn_module *m, nn_meta *meta) {
    nn_model *model = m && meta ? nn__calloc(1, sizeof *model) : NULL;
    if (!model) {
        nn_module_free(m);
        nn_meta_free(meta);
        return NULL;
    }
    model->module = m;
    model->meta = meta;
    nn__handle_set(&model->handle, NN__KIND_MODEL);
    return model;
}

static bool model_check(const nn_model *m, const char *fn) {
    return nn__handle_check(m, NN__KIND_MODEL, fn, "model");
}

void nn_model_free(nn_model *model) {
    if (!model || !model_check(model, "nn_model_free")) return;
    nn__handle_clear(&model->handle);
    nn_module_free(model->module);
    nn_meta_free(model->meta);
    nn__free(model);
}

nn_module *nn_model_module(const nn_model *model) {
    return model_check(model, "nn_model_module") ? model->module : NULL;
}

const nn_meta *nn_model_meta(const nn_model *model) {
    return model_check(model, "nn_model_meta") ? model->meta : NULL;
}

nn_tensor *nn_model_predict(const nn_model *model, nn_tensor *x) {
    if (!model_check(model, "nn_model_predict")) return NULL;
    if (!nn__check_tensor(x, "nn_model_predict", "x")) return NULL;
    /* Grad mode is per thread, and an eval-mode forward without grad does
     * not write to the module: concurrent calls share it safely. */
    bool prev = nn_set_grad_enabled(false);
    nn_tensor *y = nn_module_forward(model->module, x);
    nn_set_grad_enabled(prev);
    if (y) nn__count_predictions(x->ndim > 0 ? x->shape[0] : 1);
    return y;
}

/* --------------------------------------------- weights into a module */

/* A model file stores a tied tensor once: m's other names for it (its tie
 * destinations) read the same entry of sd. */
nn_status nn__io_add_tied_names(nn_module *m, nn_statedict *sd) {
    nn__ties ties;
    nn_status st = nn__ties_collect(m, &ties);
    for (uint32_t i = 0; !st && i < ties.n; i++) {
        nn_tensor *x = nn__sd_find(sd, ties.src[i]);
        if (x && !nn__sd_find(sd, ties.dst[i])) st = nn_statedict_set(sd, ties.dst[i], x);
    }
    nn__ties_free(&ties);
    return st;
}

static nn_status load_weights(nn_module *m, const nn__io_src *src, const nn_io_options *opts,
                              char **report, const char *fn) {
    if (report) *report = NULL;
    if (!nn__check_ptr(m, fn, "m")) return nn_last_status();
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return nn_last_status();
    nn_statedict *sd = load_sd(src, o, fn);
    if (!sd) return nn_last_status();
    nn_status st = nn__io_add_tied_names(m, sd);
    if (!st) st = nn_module_load_state_dict(m, sd, o->strict != 0, report);
    nn_statedict_free(sd);
    return st;
}

nn_status nn_module_load_weights(nn_module *m, const char *path, const nn_io_options *opts,
                                 char **report) {
    if (!nn__check_ptr(path, "nn_module_load_weights", "path")) return nn_last_status();
    nn__io_src src = {.path = path};
    return load_weights(m, &src, opts, report, "nn_module_load_weights");
}

nn_status nn_module_load_weights_buffer(nn_module *m, const void *data, size_t size,
                                        const nn_io_options *opts, char **report) {
    nn__io_src src = {.data = data, .size = size};
    return load_weights(m, &src, opts, report, "nn_module_load_weights_buffer");
}

/* ---------------------------------------------------------- checkpoints */

/* Everything is decoded and validated first; the objects are then updated
 * in the order least likely to fail: optimizer, schedule, module, RNG. */
static nn_status load_checkpoint(const nn__io_src *src, nn_module *m, nn_optim *opt,
                                 nn_sched *sched, nn_generator *gen, int64_t *epoch, int64_t *step,
                                 const nn_io_options *opts, const char *fn) {
    if (!nn__check_ptr(m, fn, "m") || !nn__check_ptr(opt, fn, "opt")) return nn_last_status();
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return nn_last_status();
    nn_generator *g = nn__gen(gen);
    if (!g) return nn_last_status();
    nn__ld ld;
    nn__unseal *u;
    nn_status st = nn__ld_open_sealed(&ld, &u, src, o, fn);
    int64_t budget = o->max_bytes;
    nn__named_list tl = {0};
    training t = {0};
    nn_statedict *msd = NULL, *osd = NULL, *ssd = NULL;
    bool have_tensors = false, have_training = false;
    uint32_t type;
    while (!st && !(st = nn__ld_next(&ld, &type)) && type) {
        if (type == NN__SEC_TENSORS) {
            nn__rd r;
            int64_t base = aligned_base(&ld);
            nn__rd_init_ld(&r, &ld, (size_t)nn__ld_left(&ld), fn, "tensor table");
            st = table_to_list(&r, &budget, &tl, base, fn);
            have_tensors = true;
        } else if (type == NN__SEC_TRAINING) {
            st = decode_training(&ld, &budget, &t, fn);
            have_training = true;
        }
    }
    if (!st && !have_tensors) st = nn__err(NN_ERR_FORMAT, "%s: the file has no tensor section", fn);
    if (!st && !have_training)
        st = nn__err(NN_ERR_FORMAT, "%s: the file has no training section (not a checkpoint)", fn);
    st = nn__ld_close_sealed(&ld, u, st);
    if (!st && sched && !t.has_sched)
        st = nn__err(NN_ERR_FORMAT, "%s: a schedule was given but the checkpoint has none", fn);
    if (!st && (!(msd = sd_of_list(&tl)) || !(osd = sd_of_list(&t.opt)) ||
                (sched && !(ssd = sd_of_list(&t.sched)))))
        st = nn_last_status();
    if (!st) st = nn_optim_load_state_dict(opt, osd);
    if (!st && sched) st = nn_sched_load_state_dict(sched, ssd);
    if (!st) st = nn__io_add_tied_names(m, msd);
    if (!st) st = nn_module_load_state_dict(m, msd, true, NULL);
    if (!st) st = nn_generator_set_state(g, t.rng);
    if (!st) {
        if (epoch) *epoch = t.epoch;
        if (step) *step = t.step;
    }
    nn_statedict_free(msd);
    nn_statedict_free(osd);
    nn_statedict_free(ssd);
    training_clear(&t);
    nn__named_list_clear(&tl, true);
    return st;
}

nn_status nn_checkpoint_load(const char *path, nn_module *m, nn_optim *opt, nn_sched *sched,
                             nn_generator *gen, int64_t *epoch, int64_t *step,
                             const nn_io_options *opts) {
    if (!nn__check_ptr(path, "nn_checkpoint_load", "path")) return nn_last_status();
    nn__io_src src = {.path = path};
    return load_checkpoint(&src, m, opt, sched, gen, epoch, step, opts, "nn_checkpoint_load");
}

nn_status nn_checkpoint_load_buffer(const void *data, size_t size, nn_module *m, nn_optim *opt,
                                    nn_sched *sched, nn_generator *gen, int64_t *epoch,
                                    int64_t *step, const nn_io_options *opts) {
    nn__io_src src = {.data = data, .size = size};
    return load_checkpoint(&src, m, opt, sched, gen, epoch, step, opts,
                           "nn_checkpoint_load_buffer");
}
