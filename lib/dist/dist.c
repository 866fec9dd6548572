/* Data-parallel training: the public nn_dist_* API. Argument checks, the
 * life cycle, layout checks and the packing of many tensors into one
 * buffer live here; dist_comm.h's engine (MPI or a world of one) moves it. */
#include "dist_comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIST_NONE, DIST_ACTIVE, DIST_DONE };
static int g_state = DIST_NONE; /* FUNNELED: only one thread touches it */

/* ------------------------------------------------------------ life cycle */

bool nn_dist_available(void) { return nn__comm_available(); }

nn_status nn_dist_init(int *argc, char ***argv) {
    if (g_state == DIST_ACTIVE) return NN_OK;
    if (g_state == DIST_DONE)
        return nn__err(NN_ERR_STATE, "nn_dist_init: called after nn_dist_finalize");
    nn_status st = nn__comm_init(argc, argv, "nn_dist_init");
    if (st == NN_OK) g_state = DIST_ACTIVE;
    return st;
}

static void overlap_free(void);
static nn_status overlap_finish(bool apply, const char *fn);
static float *g_scratch;
static size_t g_scratch_cap;

nn_status nn_dist_finalize(void) {
    if (g_state != DIST_ACTIVE) return NN_OK;
    overlap_finish(false, "nn_dist_finalize");
    overlap_free();
    nn__free(g_scratch);
    g_scratch = NULL;
    g_scratch_cap = 0;
    g_state = DIST_DONE;
    return nn__comm_finalize("nn_dist_finalize");
}

nn_status nn_dist_set_timeout(double seconds) {
    if (!(seconds >= 0) || seconds > 1e9)
        return nn__err(NN_ERR_INVALID, "nn_dist_set_timeout: %g seconds outside [0, 1e9]", seconds);
    nn__comm_set_timeout(seconds);
    return NN_OK;
}

double nn_dist_timeout(void) { return nn__comm_timeout(); }

nn_status nn_dist_abort(int code, const char *why) {
    if (g_state != DIST_ACTIVE || !nn__comm_active())
        return nn__err(NN_ERR_STATE,
                       "nn_dist_abort: no distributed job to abort (call nn_dist_init first; "
                       "in a world of one, exit instead)");
    nn__comm_abort(code == 0 ? 1 : code, why);
    return nn__err(NN_ERR_STATE, "nn_dist_abort: MPI_Abort returned");
}

int nn_dist_rank(void) { return g_state == DIST_ACTIVE ? nn__comm_rank() : 0; }

int nn_dist_size(void) { return g_state == DIST_ACTIVE ? nn__comm_size() : 1; }

nn_status nn_dist_barrier(void) {
    if (g_state != DIST_ACTIVE) return NN_OK;
    return nn__comm_barrier("nn_dist_barrier");
}

/* ------------------------------------------------------ tensor lists */

/* The tensors one collective moves, in nn_module_parameter order then
 * nn_module_buffer order (the same on every rank for the same layout). */
typedef struct tlist {
    nn_tensor **v;
    int64_t n;
    size_t bytes; /* packed size of all of them */
} tlist;

/* Collect m's parameters (only those requiring grad when grads_only) and,
 * with buffers, its buffers. Borrowed tensors; free l->v with nn__free. */
static nn_status collect(nn_module *m, bool grads_only, bool buffers, tlist *l, const char *fn) {
    memset(l, 0, sizeof *l);
    int64_t np = nn_module_num_parameters(m);
    int64_t nb = buffers ? nn_module_num_buffers(m) : 0;
    if (np < 0 || nb < 0) return nn_last_status();
    size_t cap;
    if (!nn__size_mul((size_t)(np + nb) + 1, sizeof *l->v, &cap))
        return nn__err(NN_ERR_OVERFLOW, "%s: too many tensors", fn);
    l->v = nn__malloc(cap);
    if (!l->v) return NN_ERR_NOMEM;
    for (int64_t i = 0; i < np + nb; i++) {
        nn_tensor *t = i < np ? nn_module_parameter(m, i, NULL) : nn_module_buffer(m, i - np, NULL);
        if (!t) return nn_last_status();
        if (grads_only && !t->requires_grad) continue;
        size_t tb;
        if (!nn__size_mul((size_t)t->numel, nn_dtype_size(t->dtype), &tb) ||
            !nn__size_add(l->bytes, tb, &l->bytes))
            return nn__err(NN_ERR_OVERFLOW, "%s: module too large to pack", fn);
        l->v[l->n++] = t;
    }
    return NN_OK;
}

/* FNV-1a over the 8 bytes of x. */
static uint64_t mix(uint64_t h, uint64_t x) {
    for (int i = 0; i < 8; i++) {
        h ^= (x >> (8 * i)) & 0xffu;
        h *= 1099511628211ull;
    }
    return h;
}

/* Fail with NN_ERR_STATE unless every rank's list has the same count,
 * dtypes, shapes and grad flags: a mismatch would otherwise make the ranks
 * exchange buffers of different sizes (a hang or garbage). One allreduce
 * (max of the signature and of its negation gives both max and min). */
static nn_status check_layout(const tlist *l, const char *fn) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < l->n; i++) {
        const nn_tensor *t = l->v[i];
        h = mix(h, (uint64_t)t->dtype);
        h = mix(h, (uint64_t)t->requires_grad);
        h = mix(h, (uint64_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) h = mix(h, (uint64_t)t->shape[d]);
    }
    /* Keep 62 bits so that negation cannot overflow. */
    int64_t sig[3] = {l->n, (int64_t)(l->bytes >> 2), (int64_t)(h >> 2)};
    int64_t both[6];
    for (int i = 0; i < 3; i++) both[i] = sig[i], both[3 + i] = -sig[i];
    nn_status st = nn__comm_max_i64(both, 6, fn);
    if (st != NN_OK) return st;
    for (int i = 0; i < 3; i++)
        if (both[i] != -both[3 + i])
            return nn__err(NN_ERR_STATE,
                           "%s: ranks hold modules of different layouts (this rank: %lld tensors, "
                           "%zu bytes; the largest: %lld tensors)",
                           fn, (long long)l->n, l->bytes, (long long)both[0]);
    return NN_OK;
}

/* ------------------------------------------------------------ broadcast */

static nn_status pack_all(const tlist *l, unsigned char *buf) {
    for (int64_t i = 0; i < l->n; i++) {
        size_t tb = (size_t)l->v[i]->numel * nn_dtype_size(l->v[i]->dtype);
        nn_status st = nn_tensor_copy_to(l->v[i], buf, tb);
        if (st != NN_OK) return st;
        buf += tb;
    }
    return NN_OK;
}

static nn_status unpack_all(const tlist *l, const unsigned char *buf) {
    for (int64_t i = 0; i < l->n; i++) {
        size_t tb = (size_t)l->v[i]->numel * nn_dtype_size(l->v[i]->dtype);
        nn_status st = nn_tensor_copy_from(l->v[i], buf, tb);
        if (st != NN_OK) return st;
        buf += tb;
    }
    return NN_OK;
}

/* Pack, broadcast, unpack: one MPI_Bcast whatever the number of tensors. */
static nn_status bcast_list(const tlist *l, int root, const char *fn) {
    unsigned char *buf = nn__malloc(l->bytes ? l->bytes : 1);
    if (!buf) return NN_ERR_NOMEM;
    bool am_root = nn_dist_rank() == root;
    nn_status st = am_root ? pack_all(l, buf) : NN_OK;
    if (st == NN_OK) st = nn__comm_bcast(buf, l->bytes, root, fn);
    if (st == NN_OK && !am_root) st = unpack_all(l, buf);
    nn__free(buf);
    return st;
}

nn_status nn_dist_broadcast_module(nn_module *m, int root) {
    static const char fn[] = "nn_dist_broadcast_module";
    if (!nn__check_ptr(m, fn, "m")) return nn_last_status();
    int size = nn_dist_size();
    if (root < 0 || root >= size)
        return nn__err(NN_ERR_RANGE, "%s: root %d is outside 0..%d", fn, root, size - 1);
    tlist l;
    nn_status st = collect(m, false, true, &l, fn);
    if (st == NN_OK && size > 1) st = check_layout(&l, fn);
    if (st == NN_OK && size > 1) st = bcast_list(&l, root, fn);
    nn__free(l.v);
    return st;
}

/* ------------------------------------------------------- gradient mean */

/* buf: [grads of every listed parameter ... | one presence flag each]. A
 * missing gradient is packed as zeros with flag 0, so the flags' sum says
 * whether any rank produced one. */
static nn_status pack_grads(const tlist *l, float *buf) {
    float *flags = buf + l->bytes / sizeof(float);
    for (int64_t i = 0; i < l->n; i++) {
        nn_tensor *g = l->v[i]->grad;
        size_t nb = (size_t)l->v[i]->numel * sizeof(float);
        flags[i] = g ? 1.0f : 0.0f;
        if (g) {
            nn_status st = nn_tensor_copy_to(g, buf, nb);
            if (st != NN_OK) return st;
        } else {
            memset(buf, 0, nb);
        }
        buf += l->v[i]->numel;
    }
    return NN_OK;
}

/* Write sum / size into each gradient some rank had, creating it where this
 * rank had none, so every rank ends with the same set of gradients. */
static nn_status unpack_grads(const tlist *l, float *buf, int size) {
    const float *flags = buf + l->bytes / sizeof(float);
    for (int64_t i = 0; i < l->n; i++) {
        nn_tensor *p = l->v[i];
        if (flags[i] > 0.0f) {
            for (int64_t k = 0; k < p->numel; k++) buf[k] /= (float)size;
            if (!p->grad) {
                p->grad = nn__zeros(NN_DTYPE_F32, p->shape, p->ndim);
                if (!p->grad) return NN_ERR_NOMEM;
            }
            nn_status st = nn_tensor_copy_from(p->grad, buf, (size_t)p->numel * sizeof(float));
            if (st != NN_OK) return st;
        }
        buf += p->numel;
    }
    return NN_OK;
}

/* Floats of a packed gradient list: the gradients, then one flag each. */
static nn_status grad_count(const tlist *l, size_t *count, const char *fn) {
    size_t nbytes;
    *count = l->bytes / sizeof(float) + (size_t)l->n;
    if (!nn__size_mul(*count ? *count : 1, sizeof(float), &nbytes))
        return nn__err(NN_ERR_OVERFLOW, "%s: module too large to pack", fn);
    return NN_OK;
}

/* The packing buffer of the blocking gradient mean, kept from step to
 * step (freed by nn_dist_finalize): a fresh multi-megabyte malloc per step
 * is a fresh mmap, and Open MPI then moves it several times slower (page
 * faults in the copy-in/copy-out of the shared-memory transport). */
static float *g_scratch; /* declared above */
static size_t g_scratch_cap; /* floats */

static float *scratch(size_t count) {
    if (count <= g_scratch_cap && g_scratch) return g_scratch;
    nn__free(g_scratch);
    g_scratch_cap = 0;
    g_scratch = nn__malloc((count ? count : 1) * sizeof(float));
    if (g_scratch) g_scratch_cap = count ? count : 1;
    return g_scratch;
}

/* The gradient mean of the tensors of l in one blocking allreduce. */
static nn_status allreduce_list(const tlist *l, int size, const char *fn) {
    size_t count;
    float *buf = NULL;
    nn_status st = grad_count(l, &count, fn);
    if (st == NN_OK && !(buf = scratch(count))) st = NN_ERR_NOMEM;
    if (st == NN_OK) st = pack_grads(l, buf);
    if (st == NN_OK) st = nn__comm_sum_f32(buf, count, fn);
    if (st == NN_OK) st = unpack_grads(l, buf, size);
    return st;
}

static nn_status overlap_allreduce(nn_module *m, const char *fn);
static bool overlap_on(const nn_module *m);

nn_status nn_dist_allreduce_grads(nn_module *m) {
    static const char fn[] = "nn_dist_allreduce_grads";
    if (!nn__check_ptr(m, fn, "m")) return nn_last_status();
    int size = nn_dist_size();
    if (size > 1 && overlap_on(m)) return overlap_allreduce(m, fn);
    tlist l;
    nn_status st = collect(m, true, false, &l, fn);
    if (st == NN_OK && size > 1) st = check_layout(&l, fn);
    /* The mean over one rank is the gradient itself. */
    if (st == NN_OK && size > 1) st = allreduce_list(&l, size, fn);
    nn__free(l.v);
    return st;
}

/* ------------------------------------------ gradient mean during backward */

/* Bucketed gradient averaging overlapped with backward, as PyTorch's DDP
 * does it. nn_dist_set_overlap splits the module's parameters that require
 * grad, in reverse registration order (roughly the order backward finishes
 * them), into buckets of about g_bucket_bytes, and installs autograd's
 * leaf-ready hook on this thread. During nn_backward the hook marks each
 * parameter whose gradient is final; when every parameter of the next
 * bucket is, the bucket is packed (a flattened copy with presence flags, as
 * pack_grads) and its nonblocking sum starts while backward goes on.
 * Buckets start strictly in order 0, 1, 2, ..., so every rank issues the
 * same sequence of collectives whatever order its hooks fire in.
 * nn_dist_allreduce_grads then starts the buckets still waiting (parameters
 * that backward never reached), waits for all of them within the
 * collective deadline and unpacks the means. A hook firing for a parameter
 * already final in this step (a second backward before the allreduce:
 * gradient accumulation) marks the step stale: its buckets are completed
 * and dropped, and the whole list is averaged in one blocking allreduce. */

#define DEFAULT_BUCKET_BYTES ((size_t)25 << 20) /* PyTorch DDP's bucket_cap_mb */

static size_t g_bucket_bytes = DEFAULT_BUCKET_BYTES;

typedef struct bucket {
    tlist l;         /* a slice of g_ov.l (not owned) */
    int64_t pending; /* parameters not yet final in this step */
    size_t count;    /* floats in buf */
    float *buf;      /* gradients then flags, being summed while launched */
    nn__comm_req *req;
    bool launched, done;
} bucket;

typedef struct leaf_slot {
    const nn_tensor *t;
    int64_t i; /* index in g_ov.l */
} leaf_slot;

static struct {
    nn_module *m;       /* NULL: overlap off (borrowed, compared only) */
    tlist l;            /* parameters requiring grad, reversed, retained */
    leaf_slot *sorted;  /* l by address, for the hook's lookup */
    int64_t *bucket_of; /* l index -> bucket */
    unsigned char *ready;
    bucket *b;
    int64_t nb, next; /* buckets; the next one to start */
    bool stale;
    nn_status err; /* first failure inside the hook, with its message */
    char errmsg[512];
} g_ov;

static bool overlap_on(const nn_module *m) { return m && g_ov.m == m; }

static int cmp_slot(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const leaf_slot *)a)->t, y = (uintptr_t)((const leaf_slot *)b)->t;
    return (x > y) - (x < y);
}

static int64_t slot_of(const nn_tensor *t) {
    leaf_slot key = {t, 0};
    const leaf_slot *s = bsearch(&key, g_ov.sorted, (size_t)g_ov.l.n, sizeof key, cmp_slot);
    return s ? s->i : -1;
}

/* Remember the first failure of the hook (nn_backward's own status does
 * not carry it); nn_dist_allreduce_grads reports it. */
static void hook_fail(nn_status st) {
    if (g_ov.err != NN_OK) return;
    g_ov.err = st;
    snprintf(g_ov.errmsg, sizeof g_ov.errmsg, "%s", nn_last_error());
}

static nn_status launch(bucket *b, const char *fn) {
    b->launched = true;
    nn_status st = pack_grads(&b->l, b->buf);
    if (st == NN_OK) st = nn__comm_isum_f32(b->buf, b->count, &b->req, fn);
    b->done = st != NN_OK || !b->req;
    return st;
}

/* Start every bucket, in order, whose parameters are all final. */
static void launch_ready(void) {
    while (g_ov.err == NN_OK && g_ov.next < g_ov.nb && g_ov.b[g_ov.next].pending == 0) {
        nn_status st = launch(&g_ov.b[g_ov.next++], "nn_backward (gradient allreduce)");
        if (st != NN_OK) hook_fail(st);
    }
}

/* Let MPI move the buckets in flight (Open MPI progresses nonblocking
 * collectives only inside MPI calls). */
static void progress(void) {
    for (int64_t k = 0; k < g_ov.next && g_ov.err == NN_OK; k++) {
        bucket *b = &g_ov.b[k];
        if (b->done) continue;
        bool done = false;
        nn_status st = nn__comm_test(b->req, &done, "nn_backward (gradient allreduce)");
        if (st != NN_OK) hook_fail(st);
        b->done = done;
    }
}

static void on_grad_ready(nn_tensor *leaf, void *ctx) {
    (void)ctx;
    int64_t i = slot_of(leaf);
    if (i < 0) return; /* not a parameter of the overlapped module */
    bucket *b = &g_ov.b[g_ov.bucket_of[i]];
    if (g_ov.ready[i] || b->launched) {
        g_ov.stale = true; /* its gradient changes after it was final */
        return;
    }
    g_ov.ready[i] = 1;
    b->pending--;
    if (!g_ov.stale) launch_ready();
    progress();
}

/* Complete the step: start the buckets not started, wait for all (every
 * rank issues every bucket once per step, so ranks stay in step whatever
 * failed), then, with apply, write the means. Resets the step. */
static nn_status overlap_finish(bool apply, const char *fn) {
    /* Report the first failure: later waits on a broken job fail too. */
    nn_status st = g_ov.err;
    char first[sizeof g_ov.errmsg];
    snprintf(first, sizeof first, "%s", g_ov.errmsg);
    while (g_ov.next < g_ov.nb) {
        nn_status ls = launch(&g_ov.b[g_ov.next++], fn);
        if (st == NN_OK && ls != NN_OK) st = ls, snprintf(first, sizeof first, "%s", nn_last_error());
    }
    for (int64_t k = 0; k < g_ov.nb; k++) {
        bucket *b = &g_ov.b[k];
        nn_status ws = nn__comm_wait(b->req, fn);
        b->req = NULL;
        if (st == NN_OK && ws != NN_OK) st = ws, snprintf(first, sizeof first, "%s", nn_last_error());
    }
    if (st != NN_OK) nn__err(st, "%s", first);
    int size = nn_dist_size();
    if (st == NN_OK && apply && g_ov.stale) st = allreduce_list(&g_ov.l, size, fn);
    else if (st == NN_OK && apply)
        for (int64_t k = 0; k < g_ov.nb && st == NN_OK; k++)
            st = unpack_grads(&g_ov.b[k].l, g_ov.b[k].buf, size);
    for (int64_t k = 0; k < g_ov.nb; k++) {
        g_ov.b[k].pending = g_ov.b[k].l.n;
        g_ov.b[k].launched = g_ov.b[k].done = false;
    }
    if (g_ov.l.n) memset(g_ov.ready, 0, (size_t)g_ov.l.n);
    g_ov.next = 0;
    g_ov.stale = false;
    g_ov.err = NN_OK;
    return st;
}

static void overlap_free(void) {
    nn__set_grad_ready_hook(NULL, NULL);
    for (int64_t k = 0; k < g_ov.nb; k++) nn__free(g_ov.b[k].buf);
    for (int64_t i = 0; i < g_ov.l.n; i++) nn__tensor_release(g_ov.l.v[i]);
    nn__free(g_ov.l.v);
    nn__free(g_ov.sorted);
    nn__free(g_ov.bucket_of);
    nn__free(g_ov.ready);
    nn__free(g_ov.b);
    memset(&g_ov, 0, sizeof g_ov);
}

/* Switch overlap off: finish the step in flight without applying it. */
static nn_status overlap_off(const char *fn) {
    nn_status st = overlap_finish(false, fn);
    overlap_free();
    return st;
}

/* Build the buckets of l (taken over) and the lookup tables. */
static nn_status overlap_build(nn_module *m, tlist *l, const char *fn) {
    g_ov.l = *l;
    for (int64_t i = 0; i < l->n; i++) nn__tensor_retain(l->v[i]);
    for (int64_t i = 0, j = l->n - 1; i < j; i++, j--) { /* reverse registration order */
        nn_tensor *t = l->v[i];
        l->v[i] = l->v[j];
        l->v[j] = t;
    }
    size_t n = (size_t)(l->n ? l->n : 1);
    g_ov.sorted = nn__malloc(n * sizeof *g_ov.sorted);
    g_ov.bucket_of = nn__malloc(n * sizeof *g_ov.bucket_of);
    g_ov.ready = nn__calloc(n, 1);
    g_ov.b = nn__calloc(n, sizeof *g_ov.b);
    if (!g_ov.sorted || !g_ov.bucket_of || !g_ov.ready || !g_ov.b) return NN_ERR_NOMEM;
    for (int64_t i = 0; i < l->n; i++) {
        bucket *b = &g_ov.b[g_ov.nb];
        if (b->l.n == 0) b->l.v = l->v + i;
        size_t tb = (size_t)l->v[i]->numel * sizeof(float);
        b->l.n++;
        b->l.bytes += tb;
        g_ov.bucket_of[i] = g_ov.nb;
        g_ov.sorted[i] = (leaf_slot){l->v[i], i};
        if (b->l.bytes >= g_bucket_bytes || i == l->n - 1) g_ov.nb++;
    }
    for (int64_t k = 0; k < g_ov.nb; k++) {
        bucket *b = &g_ov.b[k];
        nn_status st = grad_count(&b->l, &b->count, fn);
        if (st != NN_OK) return st;
        b->pending = b->l.n;
        if (!(b->buf = nn__malloc((b->count ? b->count : 1) * sizeof(float)))) return NN_ERR_NOMEM;
    }
    qsort(g_ov.sorted, (size_t)l->n, sizeof *g_ov.sorted, cmp_slot);
    g_ov.m = m;
    /* In a world of one there is nothing to sum (nn_dist_allreduce_grads
     * returns at once): no hook, no copies. */
    if (nn_dist_size() > 1) nn__set_grad_ready_hook(on_grad_ready, NULL);
    return NN_OK;
}

nn_status nn_dist_set_overlap(nn_module *m, bool on) {
    static const char fn[] = "nn_dist_set_overlap";
    if (!nn__check_ptr(m, fn, "m")) return nn_last_status();
    if (!on) return overlap_on(m) ? overlap_off(fn) : NN_OK;
    if (g_state != DIST_ACTIVE)
        return nn__err(NN_ERR_STATE, "%s: call nn_dist_init first (and not after nn_dist_finalize)",
                       fn);
    if (g_ov.m) {
        nn_status st = overlap_off(fn);
        if (st != NN_OK) return st;
    }
    tlist l;
    nn_status st = collect(m, true, false, &l, fn);
    if (st == NN_OK) {
        for (int64_t i = 0; i < l.n; i++)
            if (l.v[i]->dtype != NN_DTYPE_F32) /* requires_grad implies f32 today */
                st = nn__err(NN_ERR_DTYPE, "%s: parameter %lld is not f32", fn, (long long)i);
    }
    if (st == NN_OK && nn_dist_size() > 1) st = check_layout(&l, fn);
    if (st != NN_OK) {
        nn__free(l.v);
        return st;
    }
    st = overlap_build(m, &l, fn);
    if (st != NN_OK) overlap_free();
    return st;
}

/* nn_dist_allreduce_grads for the overlapped module. */
static nn_status overlap_allreduce(nn_module *m, const char *fn) {
    /* The module must still hold the parameters the buckets were built of. */
    tlist cur;
    nn_status st = collect(m, true, false, &cur, fn);
    bool same = st == NN_OK && cur.n == g_ov.l.n;
    for (int64_t i = 0; same && i < cur.n; i++) same = cur.v[i] == g_ov.l.v[cur.n - 1 - i];
    nn__free(cur.v);
    nn_status fs = overlap_finish(same, fn);
    if (st != NN_OK) return st;
    if (!same)
        return nn__err(NN_ERR_STATE,
                       "%s: the module's parameters changed since nn_dist_set_overlap (%lld now, "
                       "%lld then); call nn_dist_set_overlap again",
                       fn, (long long)(cur.n), (long long)g_ov.l.n);
    return fs;
}

nn_status nn_dist_set_bucket_bytes(size_t bytes) {
    if (bytes == 0)
        return nn__err(NN_ERR_INVALID, "nn_dist_set_bucket_bytes: bytes is 0, must be >= 1");
    g_bucket_bytes = bytes;
    return NN_OK;
}

size_t nn_dist_bucket_bytes(void) { return g_bucket_bytes; }

int64_t nn_dist_num_buckets(void) { return g_ov.m ? g_ov.nb : 0; }

nn_status nn_dist_allreduce_scalar(double *v, int n) {
    static const char fn[] = "nn_dist_allreduce_scalar";
    if (n < 0) return nn__err(NN_ERR_INVALID, "%s: n is %d, must be >= 0", fn, n);
    if (n == 0) return NN_OK;
    if (!nn__check_ptr(v, fn, "v")) return nn_last_status();
    if (g_state != DIST_ACTIVE) return NN_OK;
    return nn__comm_sum_f64(v, (size_t)n, fn);
}

/* ------------------------------------------------------------- sharding */

int64_t nn_dist_shard_indices(int64_t n, int rank, int size, bool even, int64_t *out, int64_t cap) {
    static const char fn[] = "nn_dist_shard_indices";
    if (n < 0 || size < 1 || rank < 0 || rank >= size || cap < 0) {
        nn__err(NN_ERR_INVALID,
                "%s: need n >= 0, size >= 1, 0 <= rank < size, cap >= 0 "
                "(got n %lld, rank %d, size %d, cap %lld)",
                fn, (long long)n, rank, size, (long long)cap);
        return -1;
    }
    if (!out && cap > 0) {
        nn__check_ptr(out, fn, "out");
        return -1;
    }
    /* Interleaved: sample i belongs to rank i % size. */
    int64_t count = even ? n / size : (n > rank ? (n - rank - 1) / size + 1 : 0);
    for (int64_t k = 0; k < count && k < cap; k++) out[k] = rank + k * (int64_t)size;
    return count;
}

nn_dataset *nn_dist_shard_dataset(nn_dataset *ds, bool even) {
    static const char fn[] = "nn_dist_shard_dataset";
    if (!nn__check_ptr(ds, fn, "ds")) return NULL;
    int64_t len = nn_dataset_len(ds);
    if (len < 0) return NULL;
    int64_t count = nn_dist_shard_indices(len, nn_dist_rank(), nn_dist_size(), even, NULL, 0);
    size_t nbytes;
    if (count < 0) return NULL;
    if (!nn__size_mul((size_t)(count ? count : 1), sizeof(int64_t), &nbytes))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: %lld indices", fn, (long long)count);
    int64_t *idx = nn__malloc(nbytes);
    if (!idx) return NULL;
    nn_dist_shard_indices(len, nn_dist_rank(), nn_dist_size(), even, idx, count);
    nn_dataset *sub = nn_dataset_subset(ds, idx, count);
    nn__free(idx);
    return sub;
}
