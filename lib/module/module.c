/* Modules: lifetime, registration, dotted names, modes, forward dispatch,
 * user-defined modules and the internal interface of module_internal.h. */
#include "module_internal.h"
#include "ops/conv_fuse.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Bumped by every structural change anywhere; flattened name lists built
 * at an older generation are rebuilt. */
static _Atomic uint64_t g_struct_gen = 1;

void nn__mod_bump_generation(void) { atomic_fetch_add(&g_struct_gen, 1); }

bool nn__mod_check(const nn_module *m, const char *fn, const char *name) {
    return nn__handle_check(m, NN__KIND_MODULE, fn, name);
}

/* ------------------------------------------------------------- lifetime */

static nn_module *mod_alloc(void) {
    nn_module *m = nn__calloc(1, sizeof *m);
    if (!m) return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        nn__free(m);
        return NN__FAIL(NN_ERR_NOMEM, "nn_module: cannot create a mutex");
    }
    nn__handle_set(&m->handle, NN__KIND_MODULE);
    m->refs = 1;
    m->training = true;
    return m;
}

static void flat_clear(nn__named_list *l) { nn__named_list_clear(l, false); }

static void mod_destroy(nn_module *m) {
    nn__named_list_clear(&m->params, true);
    nn__named_list_clear(&m->bufs, true);
    for (int i = 0; i < m->nchildren; i++) {
        nn__free(m->children[i].name);
        nn_module_free(m->children[i].m);
    }
    nn__free(m->children);
    nn__index_free(&m->names);
    flat_clear(&m->flat_params);
    flat_clear(&m->flat_bufs);
    if (m->user_free) m->user_free(m->user);
    nn_generator_free(m->gen);
    nn__free(m->type_name);
    pthread_mutex_destroy(&m->lock);
    nn__handle_clear(&m->handle);
    nn__free(m);
}

nn_module *nn_module_retain(nn_module *m) {
    if (!m) return NULL;
    if (!nn__mod_check(m, "nn_module_retain", "m")) return NULL;
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void nn_module_free(nn_module *m) {
    if (!m) return;
    if (!nn__mod_check(m, "nn_module_free", "m")) return;
    if (atomic_fetch_sub(&m->refs, 1) == 1) mod_destroy(m);
}

nn_module *nn__mod_new_kind(const nn__mod_kind *kind, const double *values) {
    nn_module *m = mod_alloc();
    if (!m) return NULL;
    m->kind = kind;
    for (int i = 0; i < kind->nkeys; i++) m->cfg[i] = values[i];
    if (kind->build && kind->build(m) != NN_OK) {
        mod_destroy(m);
        return NULL;
    }
    return m;
}

/* ---------------------------------------------------------- registration */

/* Parameters, buffers and children share one namespace. A name's entry is
 * slot i of one of the three arrays, encoded as i * 4 + kind. Small modules
 * are scanned; past NN__INDEX_MIN names a hash index answers (a scan per
 * added child made loading a 65,535-child Sequential quadratic). */
enum { NAME_PARAM, NAME_BUF, NAME_CHILD };

static const char *name_at(const nn_module *m, int64_t e) {
    int i = (int)(e >> 2);
    switch ((int)(e & 3)) {
    case NAME_PARAM: return m->params.e[i].name;
    case NAME_BUF: return m->bufs.e[i].name;
    default: return m->children[i].name;
    }
}

typedef struct {
    const nn_module *m;
    const char *name;
} name_key;

static bool name_eq(const void *ctx, int64_t e) {
    const name_key *k = ctx;
    return !strcmp(name_at(k->m, e), k->name);
}

/* The entry called name (encoded as above), or -1. */
static int64_t name_find(const nn_module *m, const char *name) {
    if (m->names.cap) {
        name_key k = {m, name};
        return nn__index_find(&m->names, nn__hash_str(name), name_eq, &k);
    }
    for (int i = 0; i < m->params.n; i++)
        if (!strcmp(m->params.e[i].name, name)) return (int64_t)i << 2 | NAME_PARAM;
    for (int i = 0; i < m->bufs.n; i++)
        if (!strcmp(m->bufs.e[i].name, name)) return (int64_t)i << 2 | NAME_BUF;
    for (int i = 0; i < m->nchildren; i++)
        if (!strcmp(m->children[i].name, name)) return (int64_t)i << 2 | NAME_CHILD;
    return -1;
}

/* Room to index one more name; builds the index when the module crosses
 * NN__INDEX_MIN names. Called before an array changes, so a failure leaves
 * the module as it was. */
static nn_status name_reserve(nn_module *m) {
    int64_t n = (int64_t)m->params.n + m->bufs.n + m->nchildren + 1;
    if (!m->names.cap && n <= NN__INDEX_MIN) return NN_OK;
    bool build = !m->names.cap;
    nn_status st = nn__index_reserve(&m->names, n);
    if (st || !build) return st;
    for (int i = 0; i < m->params.n; i++)
        nn__index_add(&m->names, nn__hash_str(m->params.e[i].name), (int64_t)i << 2 | NAME_PARAM);
    for (int i = 0; i < m->bufs.n; i++)
        nn__index_add(&m->names, nn__hash_str(m->bufs.e[i].name), (int64_t)i << 2 | NAME_BUF);
    for (int i = 0; i < m->nchildren; i++)
        nn__index_add(&m->names, nn__hash_str(m->children[i].name),
                      (int64_t)i << 2 | NAME_CHILD);
    return NN_OK;
}

/* Index the entry just appended (after name_reserve: cannot fail). */
static void name_record(nn_module *m, int64_t e) {
    if (m->names.cap) nn__index_add(&m->names, nn__hash_str(name_at(m, e)), e);
}

static nn_status check_name(const nn_module *m, const char *name, const char *fn) {
    if (!nn__check_ptr(name, fn, "name")) return nn_last_status();
    if (!name[0] || strchr(name, '.'))
        return nn__err(NN_ERR_INVALID, "%s: name '%s' must be non-empty and contain no '.'", fn,
                       name);
    if (strlen(name) > 255) return nn__err(NN_ERR_LIMIT, "%s: name longer than 255 bytes", fn);
    if (name_find(m, name) >= 0)
        return nn__err(NN_ERR_INVALID, "%s: '%s' is already registered in this module", fn, name);
    return NN_OK;
}

/* Grow a named array by one slot (elem bytes each). */
static bool grow(void **arr, int n, int *cap, size_t elem) {
    if (n < *cap) return true;
    int ncap = *cap ? *cap * 2 : 4;
    void *p = nn__realloc(*arr, (size_t)ncap * elem);
    if (!p) return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static nn_status add_tensor(nn_module *m, bool param, const char *name, nn_tensor *t) {
    nn__named_list *l = param ? &m->params : &m->bufs;
    nn__tensor_mem_tag(t, NN_MEM_PARAMETERS);
    nn_status st = name_reserve(m);
    if (!st) st = nn__named_list_push(l, name, t, "nn_module");
    if (st) return st;
    name_record(m, (l->n - 1) << 2 | (param ? NAME_PARAM : NAME_BUF));
    nn__mod_bump_generation();
    return NN_OK;
}

nn_status nn__mod_add_param(nn_module *m, const char *name, nn_tensor *t) {
    t->requires_grad = true;
    return add_tensor(m, true, name, t);
}

nn_status nn__mod_add_buffer(nn_module *m, const char *name, nn_tensor *t) {
    return add_tensor(m, false, name, t);
}

/* Add child (the parent takes over the reference only on success). */
static nn_status add_child(nn_module *m, const char *name, nn_module *child) {
    nn_status st = name_reserve(m);
    if (st) return st;
    if (!grow((void **)&m->children, m->nchildren, &m->cap_children, sizeof *m->children))
        return NN_ERR_NOMEM;
    char *nm = nn__strdup(name);
    if (!nm) return NN_ERR_NOMEM;
    m->children[m->nchildren].name = nm;
    m->children[m->nchildren].m = child;
    name_record(m, (int64_t)m->nchildren << 2 | NAME_CHILD);
    m->nchildren++;
    nn__mod_bump_generation();
    return NN_OK;
}

/* Would adding child under m create a cycle (m inside child's tree)? */
static bool contains(const nn_module *root, const nn_module *m) {
    if (root == m) return true;
    for (int i = 0; i < root->nchildren; i++)
        if (contains(root->children[i].m, m)) return true;
    return false;
}

nn_tensor *nn__mod_param(const nn_module *m, const char *name) {
    int64_t e = name_find(m, name);
    return e >= 0 && (e & 3) == NAME_PARAM ? m->params.e[e >> 2].t : NULL;
}

uint64_t nn__module_own_bytes(const nn_module *m) {
    uint64_t b = 0;
    for (int i = 0; i < m->params.n; i++)
        b += (uint64_t)m->params.e[i].t->numel * nn_dtype_size(m->params.e[i].t->dtype);
    for (int i = 0; i < m->bufs.n; i++)
        b += (uint64_t)m->bufs.e[i].t->numel * nn_dtype_size(m->bufs.e[i].t->dtype);
    return b;
}

int64_t nn__mod_own_param_count(const nn_module *m) {
    int64_t n = 0;
    for (int i = 0; i < m->params.n; i++) n += m->params.e[i].t->numel;
    return n;
}

/* ---------------------------------------------------------- user modules */

nn_module *nn_module_custom_new(const char *name, nn_forward_fn forward, void *user,
                                nn_user_free_fn free_user) {
    const char *fn = "nn_module_custom_new";
    if (!nn__check_ptr(name, fn, "name") || !nn__check_ptr((const void *)forward, fn, "forward")) {
        if (free_user) free_user(user);
        return NULL;
    }
    nn_module *m = mod_alloc();
    size_t len = strlen(name);
    char *tn = m && len < 256 ? nn__malloc(len + 8) : NULL;
    if (!tn) {
        if (m && len >= 256) nn__err(NN_ERR_LIMIT, "%s: name longer than 255 bytes", fn);
        if (m) mod_destroy(m);
        if (free_user) free_user(user);
        return NULL;
    }
    snprintf(tn, len + 8, "Custom:%s", name);
    m->type_name = tn;
    m->user_forward = forward;
    m->user = user;
    m->user_free = free_user;
    return m;
}

static nn_status check_custom(const nn_module *m, const char *fn) {
    if (!nn__mod_check(m, fn, "m")) return nn_last_status();
    if (m->kind)
        return nn__err(NN_ERR_INVALID,
                       "%s: %s is a built-in layer; only user-defined modules accept registrations",
                       fn, m->kind->type);
    return NN_OK;
}

static nn_status register_tensor(nn_module *m, const char *name, nn_tensor *t, bool param,
                                 const char *fn) {
    nn_status st = check_custom(m, fn);
    if (st != NN_OK) return st;
    if (!nn__check_tensor(t, fn, "t")) return nn_last_status();
    if (param && t->dtype != NN_DTYPE_F32)
        return nn__err(NN_ERR_DTYPE, "%s: parameter '%s' must be f32, got %s", fn,
                       name ? name : "?", nn_dtype_name(t->dtype));
    if (param && t->grad_fn)
        return nn__err(NN_ERR_INVALID, "%s: parameter '%s' is not a leaf tensor (detach it first)",
                       fn, name ? name : "?");
    if ((st = check_name(m, name, fn)) != NN_OK) return st;
    nn__tensor_retain(t);
    st = param ? nn__mod_add_param(m, name, t) : nn__mod_add_buffer(m, name, t);
    if (st != NN_OK) nn__tensor_release(t);
    return st;
}

nn_status nn_module_register_parameter(nn_module *m, const char *name, nn_tensor *t) {
    return register_tensor(m, name, t, true, "nn_module_register_parameter");
}

nn_status nn_module_register_buffer(nn_module *m, const char *name, nn_tensor *t) {
    return register_tensor(m, name, t, false, "nn_module_register_buffer");
}

/* Common checks of adding child under parent; consumes nothing. */
static nn_status check_child(nn_module *parent, const char *name, nn_module *child,
                             const char *fn) {
    if (!child) return nn__err_null(fn, "child"); /* keeps the constructor's error */
    if (!nn__mod_check(child, fn, "child")) return nn_last_status();
    nn_status st = check_name(parent, name, fn);
    if (st != NN_OK) return st;
    if (contains(child, parent))
        return nn__err(NN_ERR_INVALID, "%s: adding '%s' would make the module contain itself", fn,
                       name);
    return NN_OK;
}

nn_status nn_module_register_module(nn_module *m, const char *name, nn_module *child) {
    const char *fn = "nn_module_register_module";
    nn_status st = check_custom(m, fn);
    if (st == NN_OK) st = check_child(m, name, child, fn);
    if (st == NN_OK) st = add_child(m, name, child);
    if (st != NN_OK && nn__handle_is(child, NN__KIND_MODULE)) nn_module_free(child);
    return st;
}

void *nn_module_user(const nn_module *m) {
    if (!nn__mod_check(m, "nn_module_user", "m")) return NULL;
    return m->user;
}

/* ------------------------------------------------------------ Sequential */

/* Inference over a large batch at one thread: the leading fused
 * convolutions (Conv2d -> ReLU (-> MaxPool2d(2)), layers.c) run block by
 * block of images, so one op's output is still in L2 when the next op reads
 * it (at batch 256 the demo CNN's first pooled output, 6.4 MB, went to
 * memory and back). A block holds max(1, L2 / 2 / peak) images, L2 the
 * per-core cache the backend planned for (nn_backend_info), peak the largest
 * per-image input + output of one op (demo CNN: 13 images with 1 MiB).
 * Measured at batch 256: 1 thread 4-5% faster (blocks of 8..26 alike);
 * at 2 threads every block size tried (8..86) was 0-8% slower (the pool's
 * fork and join per op and block cost what the cache saves), so more
 * threads keep the whole batch. Each image's result is computed as on the
 * whole batch, so it is bit-identical. Returns the children consumed (0:
 * not worth it, *y untouched); *y NULL on error. */
static int forward_head_blocked(nn_module *m, nn_tensor *x, nn_tensor **y) {
    if (x->ndim != 4 || x->shape[0] < 2 || nn_get_num_threads() != 1) return 0;
    int64_t peak;
    const int k = nn__mod_fuse_conv_run(m->children, m->nchildren, x, &peak);
    if (k == 0 || peak <= 0) return 0;
    const int64_t N = x->shape[0];
    const int64_t fit = nn__conv_fuse_l2_bytes() / 2 / peak;
    const int64_t B = fit < 1 ? 1 : fit;
    if (N < 2 * B) return 0;
    nn_tensor *xc = nn__contig(x), *out = NULL;
    const int64_t in_img = x->numel / N;
    int64_t out_img = 0;
    *y = NULL;
    for (int64_t n0 = 0; xc && n0 < N; n0 += B) {
        const int64_t nb = N - n0 < B ? N - n0 : B;
        const int64_t shape[4] = {nb, x->shape[1], x->shape[2], x->shape[3]};
        nn_tensor *cur = nn__view(xc, shape, xc->strides, 4, xc->offset + n0 * in_img);
        for (int j = 0; j < k && cur; j++) {
            nn_tensor *next = NULL;
            const int fused = nn__mod_fuse_conv(m->children + j, k - j, cur, &next);
            if (fused)
                j += fused - 1;
            else
                next = nn__mod_forward(m->children[j].m, cur);
            nn__tensor_release(cur);
            cur = next;
        }
        nn_tensor *cc = cur ? nn__contig(cur) : NULL;
        nn__tensor_release(cur);
        if (cc && !out) {
            int64_t os[NN_MAX_DIMS];
            memcpy(os, cc->shape, sizeof(int64_t) * (size_t)cc->ndim);
            os[0] = N;
            out_img = cc->numel / nb;
            out = nn__tensor_new(NN_DTYPE_F32, os, cc->ndim);
        }
        if (cc && out)
            memcpy(nn__f32(out) + n0 * out_img, nn__f32(cc), sizeof(float) * (size_t)cc->numel);
        const bool ok = cc && out;
        nn__tensor_release(cc);
        if (!ok) {
            nn__tensor_release(out);
            out = NULL;
            break;
        }
    }
    nn__tensor_release(xc);
    *y = out;
    return k;
}

static nn_tensor *sequential_forward(nn_module *m, nn_tensor *x) {
    /* Hand each intermediate to the next child untracked, so it is freed as
     * soon as it is no longer needed (peak memory of one layer pair). */
    nn_tensor *cur = NULL;
    int i = forward_head_blocked(m, x, &cur);
    if (i == 0) {
        cur = x;
        nn__tensor_retain(cur);
    }
    for (; i < m->nchildren && cur; i++) {
        nn_tensor *next = NULL;
        int fused = nn__mod_fuse_conv(m->children + i, m->nchildren - i, cur, &next);
        if (!fused) fused = nn__mod_fuse_qconv(m->children + i, m->nchildren - i, cur, &next);
        if (!fused) fused = nn__mod_fuse_linear(m->children + i, m->nchildren - i, cur, &next);
        if (fused)
            i += fused - 1; /* conv -> relu (-> pool), linear -> relu in one op; int8 convs */
        else
            next = nn__mod_forward(m->children[i].m, cur);
        nn__tensor_release(cur);
        cur = next;
    }
    return nn__track(cur);
}

static const nn__mod_kind kind_sequential = {
    .type = "Sequential", .forward = sequential_forward, .container = true};

nn_module *nn_sequential_new(void) {
    nn_module *m = mod_alloc();
    if (m) m->kind = &kind_sequential;
    return m;
}

static bool is_sequential(const nn_module *m, const char *fn) {
    if (!nn__mod_check(m, fn, "seq")) return false;
    if (m->kind != &kind_sequential) {
        nn__err(NN_ERR_INVALID, "%s: module is a %s, not a Sequential", fn, nn_module_type_name(m));
        return false;
    }
    return true;
}

nn_status nn_sequential_append(nn_module *seq, nn_module *child) {
    const char *fn = "nn_sequential_append";
    nn_status st = NN_OK;
    if (!is_sequential(seq, fn)) st = nn_last_status();
    char name[24] = "";
    if (st == NN_OK) {
        snprintf(name, sizeof name, "%d", seq->nchildren);
        st = check_child(seq, name, child, fn);
    }
    if (st == NN_OK) st = add_child(seq, name, child);
    if (st != NN_OK && nn__handle_is(child, NN__KIND_MODULE)) nn_module_free(child);
    return st;
}

int64_t nn_sequential_length(const nn_module *seq) {
    if (!is_sequential(seq, "nn_sequential_length")) return -1;
    return seq->nchildren;
}

nn_module *nn_sequential_get(const nn_module *seq, int64_t i) {
    const char *fn = "nn_sequential_get";
    if (!is_sequential(seq, fn)) return NULL;
    int64_t n = seq->nchildren;
    if (i < -n || i >= n)
        return NN__FAIL(NN_ERR_RANGE, "%s: index %lld out of range for %lld children", fn,
                        (long long)i, (long long)n);
    return seq->children[i < 0 ? i + n : i].m;
}

/* ------------------------------------- containers (containers.c) helpers */

nn_status nn__mod_attach(nn_module *m, const char *name, nn_module *child, const char *fn) {
    nn_status st = check_child(m, name, child, fn);
    if (st == NN_OK) st = add_child(m, name, child);
    if (st != NN_OK && nn__handle_is(child, NN__KIND_MODULE)) nn_module_free(child);
    return st;
}

nn_status nn__mod_replace_child(nn_module *m, const char *name, nn_module *child,
                                const char *fn) {
    int64_t e = name ? name_find(m, name) : -1;
    if (e < 0 || (e & 3) != NAME_CHILD) return nn__mod_attach(m, name, child, fn);
    nn_module *old = m->children[e >> 2].m;
    nn_status st = NN_OK;
    if (!child) st = nn__err_null(fn, "child");
    else if (!nn__mod_check(child, fn, "child")) st = nn_last_status();
    else if (child != old && contains(child, m))
        st = nn__err(NN_ERR_INVALID, "%s: adding '%s' would make the module contain itself", fn,
                     name);
    if (st != NN_OK) {
        if (nn__handle_is(child, NN__KIND_MODULE)) nn_module_free(child);
        return st;
    }
    m->children[e >> 2].m = child;
    nn_module_free(old);
    nn__mod_bump_generation();
    return NN_OK;
}

void nn__mod_remove(nn_module *m, const char *name) {
    int64_t e = name_find(m, name);
    if (e < 0) return;
    const int i = (int)(e >> 2);
    if ((e & 3) == NAME_CHILD) {
        nn__free(m->children[i].name);
        nn_module_free(m->children[i].m);
        memmove(m->children + i, m->children + i + 1,
                (size_t)(m->nchildren - i - 1) * sizeof *m->children);
        m->nchildren--;
    } else {
        nn__named_list *l = (e & 3) == NAME_PARAM ? &m->params : &m->bufs;
        nn__free(l->e[i].name);
        nn__tensor_release(l->e[i].t);
        memmove(l->e + i, l->e + i + 1, (size_t)(l->n - i - 1) * sizeof *l->e);
        l->n--;
    }
    /* entry numbers past i moved: drop the index (lookups scan until the
     * next registration rebuilds it past NN__INDEX_MIN names) */
    nn__index_free(&m->names);
    memset(&m->names, 0, sizeof m->names);
    nn__mod_bump_generation();
}

/* ------------------------------------------------------- tied parameters */

int nn__module_own_count(const nn_module *m) { return m->params.n + m->bufs.n; }

nn_tensor *nn__module_own(const nn_module *m, int i, const char **name, bool *param) {
    bool p = i < m->params.n;
    const nn__named_tensor *e = p ? &m->params.e[i] : &m->bufs.e[i - m->params.n];
    if (name) *name = e->name;
    if (param) *param = p;
    return e->t;
}

nn_status nn__module_tie_own(nn_module *m, const char *name, nn_tensor *t, const char *fn) {
    int64_t e = name_find(m, name);
    if (e < 0 || (e & 3) != NAME_PARAM)
        return nn__err(NN_ERR_NOT_FOUND, "%s: no parameter named '%s' in %s", fn, name,
                       nn_module_type_name(m));
    nn__named_tensor *slot = &m->params.e[e >> 2];
    if (slot->t == t) return NN_OK;
    bool same = slot->t->dtype == t->dtype && slot->t->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = slot->t->shape[d] == t->shape[d];
    if (!same) {
        char a[128], b[128];
        return nn__err(NN_ERR_SHAPE, "%s: cannot tie '%s' (%s %s) to a %s %s tensor", fn, name,
                       nn_dtype_name(slot->t->dtype),
                       nn__shape_str(slot->t->shape, slot->t->ndim, a, sizeof a),
                       nn_dtype_name(t->dtype), nn__shape_str(t->shape, t->ndim, b, sizeof b));
    }
    nn__tensor_retain(t);
    nn__tensor_mem_tag(t, NN_MEM_PARAMETERS);
    nn__tensor_release(slot->t);
    slot->t = t;
    nn__mod_bump_generation();
    return NN_OK;
}

/* --------------------------------------------------------------- forward */

nn_tensor *nn__mod_forward(nn_module *m, nn_tensor *x) {
    if (!nn__mod_check(m, "nn_module_forward", "m")) return NULL;
    const char *tn = nn_module_type_name(m);
    if (!nn__check_tensor(x, tn, "x")) return NULL;
    NN__PROF_SPAN(NN__PROF_MODULE, tn, m);
    bool rec = nn__summary_active();
    if (rec) nn__summary_enter(m);
    nn_scope *s = nn__compose_begin();
    nn_tensor *y = NULL;
    if (s) {
        if (m->kind) {
            y = m->kind->forward(m, x);
        } else {
            y = m->user_forward(m, x, m->user);
            if (!y && !nn__err_pending())
                nn__err(NN_ERR_INVALID, "%s: forward callback returned NULL without an error", tn);
        }
        y = nn__compose_end(s, y);
    }
    if (rec) nn__summary_leave(m, x, y);
    return y;
}

nn_tensor *nn_module_forward(nn_module *m, nn_tensor *x) {
    return nn__track(nn__mod_forward(m, x));
}

/* The inputs m accepts: [*lo, *hi], and whether it has a multi-input forward. */
static bool input_range(const nn_module *m, int *lo, int *hi) {
    *lo = *hi = 1;
    if (m->kind && m->kind->forward_n) {
        *lo = m->kind->min_inputs;
        *hi = m->kind->max_inputs;
        return true;
    }
    if (!m->kind && m->user_forward_n) {
        *hi = NN_MODULE_MAX_INPUTS;
        return true;
    }
    return false;
}

nn_tensor *nn__mod_forward_n(nn_module *m, nn_tensor *const *xs, int n) {
    const char *fn = "nn_module_forward_n";
    if (!nn__mod_check(m, fn, "m")) return NULL;
    if (!xs) return nn__err_null(fn, "inputs"), NULL;
    const char *tn = nn_module_type_name(m);
    int lo, hi;
    bool multi = input_range(m, &lo, &hi);
    if (n < lo || n > hi) {
        if (lo == hi)
            return NN__FAIL(NN_ERR_INVALID, "%s: %s takes %d input%s, got n = %d", fn, tn, lo,
                            lo == 1 ? "" : "s", n);
        return NN__FAIL(NN_ERR_INVALID, "%s: %s takes %d to %d inputs, got n = %d", fn, tn, lo,
                        hi, n);
    }
    for (int i = 0; i < n; i++) {
        /* An optional input may be absent (NULL), unless the call that was
         * to make it failed: then its error is the root cause. */
        if (!xs[i] && i >= lo && !nn__err_pending()) continue;
        char name[32];
        snprintf(name, sizeof name, "inputs[%d]", i);
        if (!nn__check_tensor(xs[i], fn, name)) return NULL;
    }
    if (!multi) return nn__mod_forward(m, xs[0]);
    bool rec = nn__summary_active();
    if (rec) nn__summary_enter(m);
    nn_scope *s = nn__compose_begin();
    nn_tensor *y = NULL;
    if (s) {
        if (m->kind) {
            y = m->kind->forward_n(m, xs, n);
        } else {
            y = m->user_forward_n(m, xs, n, m->user);
            if (!y && !nn__err_pending())
                nn__err(NN_ERR_INVALID, "%s: forward_n callback returned NULL without an error",
                        tn);
        }
        y = nn__compose_end(s, y);
    }
    if (rec) nn__summary_leave(m, xs[0], y);
    return y;
}

nn_tensor *nn_module_forward_n(nn_module *m, nn_tensor *const *inputs, int n) {
    return nn__track(nn__mod_forward_n(m, inputs, n));
}

nn_status nn_module_num_inputs(const nn_module *m, int *min_inputs, int *max_inputs) {
    const char *fn = "nn_module_num_inputs";
    if (!nn__mod_check(m, fn, "m") || !nn__check_ptr(min_inputs, fn, "min_inputs") ||
        !nn__check_ptr(max_inputs, fn, "max_inputs"))
        return nn_last_status();
    input_range(m, min_inputs, max_inputs);
    return nn__ok();
}

nn_status nn_module_custom_set_forward_n(nn_module *m, nn_forward_n_fn forward_n) {
    const char *fn = "nn_module_custom_set_forward_n";
    nn_status st = check_custom(m, fn);
    if (st != NN_OK) return st;
    m->user_forward_n = forward_n;
    return nn__ok();
}

/* ---------------------------------------------------------------- modes */

const char *nn_module_type_name(const nn_module *m) {
    if (!nn__mod_check(m, "nn_module_type_name", "m")) return NULL;
    return m->kind ? m->kind->type : m->type_name;
}

static void set_training(nn_module *m, bool training) {
    m->training = training;
    for (int i = 0; i < m->nchildren; i++) set_training(m->children[i].m, training);
}

nn_status nn_module_train(nn_module *m, bool training) {
    if (!nn__mod_check(m, "nn_module_train", "m")) return nn_last_status();
    set_training(m, training);
    return NN_OK;
}

bool nn_module_is_training(const nn_module *m) {
    return nn__mod_check(m, "nn_module_is_training", "m") && m->training;
}

bool nn__mod_training(const nn_module *m) { return m->training && !nn__summary_active(); }

/* ------------------------------------------------------- dotted-name lists */

typedef struct {
    nn__named_list l; /* the list being built (names owned, tensors borrowed) */
    nn__index listed; /* tensor -> entry, once past NN__INDEX_MIN entries */
    bool fail;
} flat_builder;

typedef struct {
    const flat_builder *b;
    const nn_tensor *t;
} tensor_key;

static bool tensor_eq(const void *ctx, int64_t i) {
    const tensor_key *k = ctx;
    return k->b->l.e[i].t == k->t;
}

static bool fb_listed(const flat_builder *b, const nn_tensor *t) {
    if (b->listed.cap) {
        tensor_key k = {b, t};
        return nn__index_find(&b->listed, nn__hash_ptr(t), tensor_eq, &k) >= 0;
    }
    for (int64_t i = 0; i < b->l.n; i++)
        if (b->l.e[i].t == t) return true;
    return false;
}

/* Room to index one more entry (the index is built on crossing NN__INDEX_MIN). */
static bool fb_reserve(flat_builder *b) {
    if (!b->listed.cap && b->l.n + 1 <= NN__INDEX_MIN) return true;
    bool build = !b->listed.cap;
    if (nn__index_reserve(&b->listed, b->l.n + 1)) return false;
    for (int64_t i = 0; build && i < b->l.n; i++)
        nn__index_add(&b->listed, nn__hash_ptr(b->l.e[i].t), i);
    return true;
}

static void fb_add(flat_builder *b, const char *prefix, const char *name, nn_tensor *t) {
    if (b->fail) return;
    if (fb_listed(b, t)) return; /* shared tensor: listed once, like PyTorch */
    if (!fb_reserve(b)) {
        b->fail = true;
        return;
    }
    if (b->l.n == b->l.cap) {
        int64_t ncap = b->l.cap ? b->l.cap * 2 : 16;
        size_t bytes;
        void *p =
            nn__size_mul((size_t)ncap, sizeof *b->l.e, &bytes) ? nn__realloc(b->l.e, bytes) : NULL;
        if (!p) {
            b->fail = true;
            return;
        }
        b->l.e = p;
        b->l.cap = ncap;
    }
    size_t lp = strlen(prefix), ln = strlen(name);
    char *s = nn__malloc(lp + ln + 1);
    if (!s) {
        b->fail = true;
        return;
    }
    memcpy(s, prefix, lp);
    memcpy(s + lp, name, ln + 1);
    b->l.e[b->l.n].name = s;
    b->l.e[b->l.n].t = t;
    if (b->listed.cap) nn__index_add(&b->listed, nn__hash_ptr(t), b->l.n);
    b->l.n++;
}

/* Append m's tensors (params or buffers) and its children's, pre-order. */
static void fb_walk(flat_builder *b, const nn_module *m, const char *prefix, bool params) {
    int n = params ? m->params.n : m->bufs.n;
    const nn__named_tensor *arr = params ? m->params.e : m->bufs.e;
    for (int i = 0; i < n; i++) fb_add(b, prefix, arr[i].name, arr[i].t);
    size_t lp = strlen(prefix);
    for (int i = 0; i < m->nchildren && !b->fail; i++) {
        size_t lc = strlen(m->children[i].name);
        char *p = nn__malloc(lp + lc + 2);
        if (!p) {
            b->fail = true;
            return;
        }
        memcpy(p, prefix, lp);
        memcpy(p + lp, m->children[i].name, lc);
        p[lp + lc] = '.';
        p[lp + lc + 1] = '\0';
        fb_walk(b, m->children[i].m, p, params);
        nn__free(p);
    }
}

static bool flat_build(const nn_module *m, bool params, nn__named_list *out) {
    flat_builder b = {0};
    fb_walk(&b, m, "", params);
    nn__index_free(&b.listed);
    if (b.fail) {
        flat_clear(&b.l);
        return false;
    }
    *out = b.l;
    return true;
}

/* Make sure m's cached lists are current. Returns false on OOM. */
static bool flat_refresh(nn_module *m) {
    uint64_t gen = atomic_load(&g_struct_gen);
    pthread_mutex_lock(&m->lock);
    bool ok = true;
    if (!m->flat_valid || m->flat_gen != gen) {
        nn__named_list p = {0}, b = {0};
        ok = flat_build(m, true, &p) && flat_build(m, false, &b);
        if (ok) {
            flat_clear(&m->flat_params);
            flat_clear(&m->flat_bufs);
            m->flat_params = p;
            m->flat_bufs = b;
            m->flat_gen = gen;
            m->flat_valid = true;
        } else {
            flat_clear(&p);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return ok;
}

int64_t nn_module_num_parameters(nn_module *m) {
    if (!nn__mod_check(m, "nn_module_num_parameters", "m") || !flat_refresh(m)) return -1;
    return m->flat_params.n;
}

int64_t nn_module_num_buffers(nn_module *m) {
    if (!nn__mod_check(m, "nn_module_num_buffers", "m") || !flat_refresh(m)) return -1;
    return m->flat_bufs.n;
}

static nn_tensor *flat_get(nn_module *m, int64_t i, const char **name, bool params,
                           const char *fn) {
    if (name) *name = NULL;
    if (!nn__mod_check(m, fn, "m") || !flat_refresh(m)) return NULL;
    const nn__named_list *l = params ? &m->flat_params : &m->flat_bufs;
    if (i < 0 || i >= l->n)
        return NN__FAIL(NN_ERR_RANGE, "%s: index %lld out of range (%lld entries)", fn,
                        (long long)i, (long long)l->n);
    if (name) *name = l->e[i].name;
    return l->e[i].t;
}

nn_tensor *nn_module_parameter(nn_module *m, int64_t i, const char **name) {
    return flat_get(m, i, name, true, "nn_module_parameter");
}

nn_tensor *nn_module_buffer(nn_module *m, int64_t i, const char **name) {
    return flat_get(m, i, name, false, "nn_module_buffer");
}

/* Resolve a dotted path to (module, last segment). */
static const nn_module *resolve(const nn_module *m, const char *path, const char **last) {
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        if (!dot) {
            *last = p;
            return m;
        }
        size_t len = (size_t)(dot - p);
        char seg[256]; /* registered names are at most 255 bytes */
        if (len >= sizeof seg) return NULL;
        memcpy(seg, p, len);
        seg[len] = '\0';
        int64_t e = name_find(m, seg);
        if (e < 0 || (e & 3) != NAME_CHILD) return NULL;
        m = m->children[e >> 2].m;
        p = dot + 1;
    }
}

static void *get_named(const nn_module *m, const char *name, int what, const char *fn) {
    if (!nn__mod_check(m, fn, "m") || !nn__check_ptr(name, fn, "name")) return NULL;
    const char *last;
    const nn_module *owner = resolve(m, name, &last);
    int64_t e = owner ? name_find(owner, last) : -1;
    if (e >= 0 && (e & 3) == what) { /* what: NAME_PARAM, NAME_BUF or NAME_CHILD */
        int i = (int)(e >> 2);
        if (what == NAME_PARAM) return owner->params.e[i].t;
        if (what == NAME_BUF) return owner->bufs.e[i].t;
        return owner->children[i].m;
    }
    static const char *const kinds[] = {"parameter", "buffer", "submodule"};
    return NN__FAIL(NN_ERR_NOT_FOUND, "%s: no %s named '%s' in %s", fn, kinds[what], name,
                    nn_module_type_name(m));
}

nn_tensor *nn_module_get_parameter(const nn_module *m, const char *name) {
    return get_named(m, name, 0, "nn_module_get_parameter");
}

nn_tensor *nn_module_get_buffer(const nn_module *m, const char *name) {
    return get_named(m, name, 1, "nn_module_get_buffer");
}

nn_module *nn_module_get_module(const nn_module *m, const char *name) {
    return get_named(m, name, 2, "nn_module_get_module");
}

int64_t nn_module_param_count(nn_module *m) {
    if (!nn__mod_check(m, "nn_module_param_count", "m") || !flat_refresh(m)) return -1;
    int64_t n = 0;
    for (int64_t i = 0; i < m->flat_params.n; i++) n += m->flat_params.e[i].t->numel;
    return n;
}

nn_status nn_module_set_requires_grad(nn_module *m, bool requires_grad) {
    if (!nn__mod_check(m, "nn_module_set_requires_grad", "m")) return nn_last_status();
    for (int i = 0; i < m->params.n; i++) m->params.e[i].t->requires_grad = requires_grad;
    for (int i = 0; i < m->nchildren; i++)
        nn_module_set_requires_grad(m->children[i].m, requires_grad);
    return NN_OK;
}

nn_status nn_module_zero_grad(nn_module *m) {
    if (!nn__mod_check(m, "nn_module_zero_grad", "m")) return nn_last_status();
    for (int i = 0; i < m->params.n; i++) {
        nn__tensor_release(m->params.e[i].t->grad);
        m->params.e[i].t->grad = NULL;
    }
    for (int i = 0; i < m->nchildren; i++) nn_module_zero_grad(m->children[i].m);
    return NN_OK;
}

/* ------------------------------------------- internal interface (io/, data/) */

const char *nn__module_type(const nn_module *m) { return nn_module_type_name(m); }

int nn__module_config_count(const nn_module *m) {
    if (!nn__mod_check(m, "nn__module_config_count", "m")) return -1;
    if (!m->kind) return 0;
    return m->kind->ncfg ? m->kind->ncfg(m) : m->kind->nkeys;
}

nn_status nn__module_config_get(const nn_module *m, int i, const char **key, double *value) {
    const char *fn = "nn__module_config_get";
    if (!nn__mod_check(m, fn, "m")) return nn_last_status();
    int n = nn__module_config_count(m);
    if (i < 0 || i >= n)
        return nn__err(NN_ERR_RANGE, "%s: index %d out of range (%d keys)", fn, i, n);
    if (key) *key = m->kind->keys[i];
    if (value) *value = m->cfg[i];
    return NN_OK;
}

int nn__module_num_children(const nn_module *m) {
    if (!nn__mod_check(m, "nn__module_num_children", "m")) return -1;
    return m->nchildren;
}

nn_module *nn__module_child(const nn_module *m, int i, const char **name) {
    const char *fn = "nn__module_child";
    if (!nn__mod_check(m, fn, "m")) return NULL;
    if (i < 0 || i >= m->nchildren)
        return NN__FAIL(NN_ERR_RANGE, "%s: index %d out of range (%d children)", fn, i,
                        m->nchildren);
    if (name) *name = m->children[i].name;
    return m->children[i].m;
}

nn_module *nn__module_create(const char *type, const char *const *keys, const double *values,
                             int n) {
    const char *fn = "nn__module_create";
    if (!nn__check_ptr(type, fn, "type")) return NULL;
    if (n < 0 || (n > 0 && (!keys || !values)))
        return NN__FAIL(NN_ERR_FORMAT, "%s: %s: bad hyperparameter list (n = %d)", fn, type, n);
    if (!strncmp(type, "Custom:", 7))
        return NN__FAIL(NN_ERR_UNSUPPORTED,
                        "%s: '%s' is a user-defined module: build it in code and load its weights",
                        fn, type);
    if (!strcmp(type, "Sequential")) {
        if (n > 0)
            return NN__FAIL(NN_ERR_FORMAT, "%s: Sequential takes no hyperparameters (got %d)", fn,
                            n);
        return nn_sequential_new();
    }
    const nn__mod_kind *kind = nn__mod_find_kind(type);
    if (!kind) return NN__FAIL(NN_ERR_FORMAT, "%s: unknown module type '%.64s'", fn, type);
    double v[NN__MOD_MAX_CFG];
    bool set[NN__MOD_MAX_CFG] = {false};
    for (int i = 0; i < kind->nkeys; i++) v[i] = kind->defaults[i];
    for (int j = 0; j < n; j++) {
        int k = -1;
        for (int i = 0; i < kind->nkeys && keys[j]; i++)
            if (!strcmp(kind->keys[i], keys[j])) k = i;
        if (k < 0 || set[k])
            return NN__FAIL(NN_ERR_FORMAT, "%s: %s: %s hyperparameter '%.64s'", fn, type,
                            k < 0 ? "unknown" : "repeated", keys[j] ? keys[j] : "(null)");
        if (!isfinite(values[j]))
            return NN__FAIL(NN_ERR_FORMAT, "%s: %s: hyperparameter '%s' is not finite", fn, type,
                            keys[j]);
        v[k] = values[j];
        set[k] = true;
    }
    for (int i = 0; i < kind->nkeys; i++)
        if (isnan(v[i]))
            return NN__FAIL(NN_ERR_FORMAT, "%s: %s: hyperparameter '%s' is missing", fn, type,
                            kind->keys[i]);
    nn_clear_error();
    nn_module *m = nn__mod_new_kind(kind, v);
    if (!m && nn_last_status() != NN_ERR_NOMEM) {
        /* Invalid hyperparameter values are a malformed file; a size cap
         * (NN_ERR_LIMIT, see nn__tensor_budget) keeps its own code. */
        nn_status st = nn_last_status() == NN_ERR_LIMIT ? NN_ERR_LIMIT : NN_ERR_FORMAT;
        char msg[400];
        snprintf(msg, sizeof msg, "%s", nn_last_error());
        return NN__FAIL(st, "%s: %s", fn, msg);
    }
    return m;
}

nn_status nn__module_add_child(nn_module *parent, const char *name, nn_module *child) {
    const char *fn = "nn__module_add_child";
    if (!nn__mod_check(parent, fn, "parent")) return nn_last_status();
    if (parent->kind && !parent->kind->container)
        return nn__err(NN_ERR_FORMAT, "%s: a %s has no children", fn, parent->kind->type);
    nn_status st = check_child(parent, name, child, fn);
    if (st == NN_OK && parent->kind && parent->kind->check_child)
        st = parent->kind->check_child(parent, name, child);
    if (st != NN_OK) return st;
    if (parent->kind == &kind_sequential || parent->kind == &nn__kind_module_list) {
        char want[24];
        snprintf(want, sizeof want, "%d", parent->nchildren);
        if (strcmp(name, want))
            return nn__err(NN_ERR_FORMAT, "%s: %s child named '%s', expected '%s'", fn,
                           parent->kind->type, name, want);
    }
    nn_module_retain(child);
    st = add_child(parent, name, child);
    if (st != NN_OK) nn_module_free(child);
    return st;
}

nn_status nn__module_finish(const nn_module *m, const char *fn) {
    if (!nn__mod_check(m, fn, "m")) return nn_last_status();
    if (!m->kind || !m->kind->check_complete) return NN_OK;
    nn_status st = m->kind->check_complete(m);
    if (st == NN_OK) return NN_OK;
    char msg[400];
    snprintf(msg, sizeof msg, "%s", nn_last_error());
    return nn__err(NN_ERR_FORMAT, "%s: %s", fn, msg);
}
