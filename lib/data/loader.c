/* The loader: seeded shuffled batches over a dataset, with an optional
 * background worker (one pthread) that builds batch i+1 while the caller
 * trains on batch i.
 *
 * Hand-off protocol (all fields below `mu` are guarded by it):
 *   main:   want = i        -> worker takes the job (want = -1, busy = true)
 *   worker: builds outside the lock, then ready_idx = i, rx/ry, busy = false
 *   main:   waits for ready_idx == i, takes rx/ry, then asks for i+1.
 * The epoch order (perm), epoch number and batch size change only while the
 * worker is idle (quiesce: want = -1 and !busy), and the mutex orders those
 * writes before the worker's next reads. */
#include "data_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define ERRMSG_CAP 512

struct nn_loader {
    nn__handle handle; /* NN__KIND_LOADER */
    nn_dataset *ds;
    int64_t batch;
    bool shuffle, drop_last, prefetch;
    nn_generator gen; /* the shuffle stream, seeded once */
    int64_t *perm;    /* this epoch's order: positions in ds */
    int64_t epoch;    /* epochs started - 1 (-1: none yet) */
    int64_t next_batch, nbatches;
    bool started;
    nn_tensor *cur_x, *cur_y; /* the borrowed batch */
    nn_status status;
    /* worker */
    bool thread_up;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t want; /* batch requested (-1: none) */
    bool busy, quit;
    int64_t ready_idx; /* batch waiting in rx/ry (-1: none) */
    nn_tensor *rx, *ry;
    nn_status rst;
    char rmsg[ERRMSG_CAP];
};
NN__HANDLE_FIRST(struct nn_loader, handle);

static bool check_loader(const nn_loader *l, const char *fn) {
    return nn__handle_check(l, NN__KIND_LOADER, fn, "l");
}

static int64_t count_batches(const nn_loader *l) {
    int64_t n = l->ds->n;
    return l->drop_last ? n / l->batch : (n + l->batch - 1) / l->batch;
}

/* Batch i of the current epoch; records errors on the calling thread. */
static nn_status build_batch(nn_loader *l, int64_t i, nn_tensor **x, nn_tensor **y) {
    int64_t first = i * l->batch;
    int64_t b = l->ds->n - first < l->batch ? l->ds->n - first : l->batch;
    return nn__dataset_batch(l->ds, l->perm + first, b, (uint64_t)l->epoch, first, x, y);
}

static void *worker_main(void *arg) {
    nn_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && (l->want < 0 || l->ready_idx >= 0)) pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        int64_t job = l->want;
        l->want = -1;
        l->busy = true;
        pthread_mutex_unlock(&l->mu);

        nn_tensor *x = NULL, *y = NULL;
        nn_clear_error();
        nn_status st = build_batch(l, job, &x, &y);
        char msg[ERRMSG_CAP];
        snprintf(msg, sizeof msg, "%s", st ? nn_last_error() : "");

        pthread_mutex_lock(&l->mu);
        l->busy = false;
        l->ready_idx = job;
        l->rx = x;
        l->ry = y;
        l->rst = st;
        memcpy(l->rmsg, msg, sizeof msg);
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Cancel any request and wait until the worker is idle; drop a ready batch. */
static void worker_quiesce(nn_loader *l) {
    if (!l->thread_up) return;
    pthread_mutex_lock(&l->mu);
    l->want = -1;
    while (l->busy) pthread_cond_wait(&l->cv, &l->mu);
    nn__tensor_release(l->rx);
    nn__tensor_release(l->ry);
    l->rx = l->ry = NULL;
    l->ready_idx = -1;
    pthread_mutex_unlock(&l->mu);
}

/* Start the worker if needed; false (prefetch falls back to inline) on failure. */
static bool worker_start(nn_loader *l) {
    if (l->thread_up) return true;
    l->quit = false;
    l->want = l->ready_idx = -1;
    l->busy = false;
    if (pthread_create(&l->thread, NULL, worker_main, l) != 0) return false;
    l->thread_up = true;
    return true;
}

static void worker_request(nn_loader *l, int64_t i) {
    pthread_mutex_lock(&l->mu);
    l->want = i;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void drop_current(nn_loader *l) {
    nn__tensor_release(l->cur_x);
    nn__tensor_release(l->cur_y);
    l->cur_x = l->cur_y = NULL;
}

/* Ask the worker for the next batch of the epoch, if prefetching. */
static void prefetch_next(nn_loader *l) {
    if (!l->prefetch || l->next_batch >= l->nbatches) return;
    if (!worker_start(l)) {
        l->prefetch = false; /* no thread: build inline, same batches */
        return;
    }
    worker_request(l, l->next_batch);
}

nn_loader *nn_loader_new(nn_dataset *ds, int64_t batch_size, bool shuffle, uint64_t seed) {
    const char *fn = "nn_loader_new";
    if (!nn__check_dataset(ds, fn)) return NULL;
    if (batch_size < 1)
        return NN__FAIL(NN_ERR_INVALID, "%s: batch_size = %lld must be >= 1", fn,
                        (long long)batch_size);
    nn_loader *l = nn__calloc(1, sizeof *l);
    if (!l) return NULL;
    l->perm = nn__calloc(ds->n > 0 ? (size_t)ds->n : 1, sizeof(int64_t));
    if (!l->perm) {
        nn__free(l);
        return NULL;
    }
    if (pthread_mutex_init(&l->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&l->cv, NULL) != 0) {
        pthread_mutex_destroy(&l->mu);
        goto fail;
    }
    nn__handle_set(&l->handle, NN__KIND_LOADER);
    l->ds = ds;
    ds->refs++;
    l->batch = batch_size;
    l->shuffle = shuffle;
    l->prefetch = true;
    nn__handle_set(&l->gen.handle, NN__KIND_GENERATOR);
    nn_generator_seed(&l->gen, seed);
    l->epoch = -1;
    l->want = l->ready_idx = -1;
    l->nbatches = count_batches(l);
    return l;
fail:
    nn__free(l->perm);
    nn__free(l);
    return NN__FAIL(NN_ERR_NOMEM, "%s: cannot create the worker's mutex", fn);
}

void nn_loader_free(nn_loader *l) {
    if (!l) return;
    if (!check_loader(l, "nn_loader_free")) return;
    if (l->thread_up) {
        pthread_mutex_lock(&l->mu);
        l->quit = true;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL); /* waits for at most the batch in progress */
        nn__tensor_release(l->rx);
        nn__tensor_release(l->ry);
    }
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    drop_current(l);
    nn__handle_clear(&l->handle);
    nn_dataset_free(l->ds);
    nn__free(l->perm);
    nn__free(l);
}

static bool mid_epoch(const nn_loader *l) {
    return l->started && l->next_batch > 0 && l->next_batch < l->nbatches;
}

/* Apply a setting between epochs (or before the first batch of one). */
static nn_status apply_setting(nn_loader *l, const char *fn, bool *field, bool value) {
    if (!check_loader(l, fn)) return nn_last_status();
    if (mid_epoch(l))
        return nn__err(NN_ERR_STATE, "%s: mid-epoch (batch %lld of %lld); call between epochs", fn,
                       (long long)l->next_batch, (long long)l->nbatches);
    worker_quiesce(l);
    *field = value;
    if (!l->started || l->next_batch == 0) {
        l->nbatches = count_batches(l);
        if (l->started) prefetch_next(l);
    }
    return NN_OK;
}

nn_status nn_loader_set_drop_last(nn_loader *l, bool drop_last) {
    return apply_setting(l, "nn_loader_set_drop_last", l ? &l->drop_last : NULL, drop_last);
}

nn_status nn_loader_set_prefetch(nn_loader *l, bool prefetch) {
    return apply_setting(l, "nn_loader_set_prefetch", l ? &l->prefetch : NULL, prefetch);
}

nn_status nn_loader_reset(nn_loader *l) {
    if (!check_loader(l, "nn_loader_reset")) return nn_last_status();
    worker_quiesce(l);
    drop_current(l);
    int64_t n = l->ds->n;
    for (int64_t i = 0; i < n; i++) l->perm[i] = i;
    if (l->shuffle)
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)nn__gen_below(&l->gen, (uint64_t)i + 1);
            int64_t t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    l->epoch++;
    l->started = true;
    l->next_batch = 0;
    l->nbatches = count_batches(l);
    l->status = NN_OK;
    prefetch_next(l);
    return NN_OK;
}

/* Take batch next_batch from the worker (waiting for it) or build it here. */
static nn_status fetch(nn_loader *l, nn_tensor **x, nn_tensor **y) {
    if (!l->prefetch || !l->thread_up) return build_batch(l, l->next_batch, x, y);
    pthread_mutex_lock(&l->mu);
    while (l->ready_idx != l->next_batch) pthread_cond_wait(&l->cv, &l->mu);
    *x = l->rx;
    *y = l->ry;
    nn_status st = l->rst;
    char msg[ERRMSG_CAP];
    memcpy(msg, l->rmsg, sizeof msg);
    l->rx = l->ry = NULL;
    l->ready_idx = -1;
    pthread_mutex_unlock(&l->mu);
    if (st) return nn__err(st, "%s", msg);
    return NN_OK;
}

bool nn_loader_next(nn_loader *l, nn_tensor **x, nn_tensor **y) {
    const char *fn = "nn_loader_next";
    NN__PROF_SPAN(NN__PROF_DATA, fn, NULL);
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!check_loader(l, fn)) return false;
    if (!nn__check_ptr(x, fn, "x") || !nn__check_ptr(y, fn, "y")) {
        l->status = NN_ERR_NULL;
        return false;
    }
    if (!l->started && nn_loader_reset(l)) return false;
    drop_current(l);
    if (l->next_batch >= l->nbatches) return false;
    nn_tensor *bx = NULL, *by = NULL;
    nn_status st = fetch(l, &bx, &by);
    if (st) {
        l->status = st;
        l->next_batch = l->nbatches; /* the epoch ends at the error */
        return false;
    }
    l->next_batch++;
    prefetch_next(l);
    nn__tensor_mem_tag(bx, NN_MEM_DATA);
    nn__tensor_mem_tag(by, NN_MEM_DATA);
    l->cur_x = *x = bx;
    l->cur_y = *y = by;
    return true;
}

nn_status nn_loader_status(const nn_loader *l) {
    if (!check_loader(l, "nn_loader_status")) return nn_last_status();
    return l->status;
}

int64_t nn_loader_num_batches(const nn_loader *l) {
    if (!check_loader(l, "nn_loader_num_batches")) return -1;
    return l->started ? l->nbatches : count_batches(l);
}

nn_dataset *nn_loader_dataset(const nn_loader *l) {
    return check_loader(l, "nn_loader_dataset") ? l->ds : NULL;
}
