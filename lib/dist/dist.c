/* Data-parallel training: the public nn_dist_* API. Argument checks, the
 * life cycle, layout checks and the packing of many tensors into one
 * buffer live here; dist_comm.h's engine (MPI or a world of one) moves it. */
#include "dist_comm.h"

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

nn_status nn_dist_finalize(void) {
    if (g_state != DIST_ACTIVE) return NN_OK;
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

nn_status nn_dist_allreduce_grads(nn_module *m) {
    static const char fn[] = "nn_dist_allreduce_grads";
    if (!nn__check_ptr(m, fn, "m")) return nn_last_status();
    int size = nn_dist_size();
    tlist l;
    nn_status st = collect(m, true, false, &l, fn);
    if (st == NN_OK && size > 1) st = check_layout(&l, fn);
    if (st != NN_OK || size == 1) { /* the mean over one rank is the gradient itself */
        nn__free(l.v);
        return st;
    }
    size_t count = l.bytes / sizeof(float) + (size_t)l.n, nbytes;
    float *buf = NULL;
    if (!nn__size_mul(count ? count : 1, sizeof(float), &nbytes))
        st = nn__err(NN_ERR_OVERFLOW, "%s: module too large to pack", fn);
    else if (!(buf = nn__malloc(nbytes)))
        st = NN_ERR_NOMEM;
    if (st == NN_OK) st = pack_grads(&l, buf);
    if (st == NN_OK) st = nn__comm_sum_f32(buf, count, fn);
    if (st == NN_OK) st = unpack_grads(&l, buf, size);
    nn__free(buf);
    nn__free(l.v);
    return st;
}

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
