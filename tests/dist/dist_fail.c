/* Multi-node training that fails loudly and resumes (run through mpirun by
 * tests/dist/fail_test.sh, which bounds every run's time):
 *   dist_fail stall|abort|kill TIMEOUT
 *     rank 1 fails before an allreduce: it stalls (never joins), reports
 *     an error with nn_dist_abort, or dies (SIGKILL); every rank must stop
 *     within the bound with a message naming a rank.
 *   dist_fail overlap_stall|overlap_kill TIMEOUT
 *     training with the allreduce overlapped with backward (one bucket per
 *     parameter): in step 3 rank 1 stalls before its backward while rank 0
 *     has buckets in flight, or dies (SIGKILL) in the middle of its
 *     backward (from its allocator, at its 3rd allocation of that
 *     backward); every rank must stop within the bound.
 *   dist_fail train TIMEOUT EPOCHS CKPT OUT [KILL_EPOCH | resume]
 *     data-parallel training with a checkpoint after every epoch; rank 1
 *     kills itself in epoch KILL_EPOCH; "resume" restarts from CKPT. OUT
 *     receives the final weights (stored, bit-exact). */
#include "nn.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what) {
    fprintf(stderr, "dist_fail: rank %d: %s: %s\n", nn_dist_rank(), what, nn_last_error());
    nn_dist_finalize();
    return 3;
}

/* 3 classes from a fixed rule over 8 features, 256 samples, same on every rank. */
static nn_dataset *data(void) {
    int64_t sx[2] = {256, 8}, n = 256;
    nn_generator *g = nn_generator_new(7);
    nn_tensor *x = nn_randn(g, sx, 2);
    nn_tensor *y = nn_tensor_empty(NN_DTYPE_I64, &n, 1);
    const float *px = nn_tensor_data(x);
    for (int64_t i = 0; i < n; i++) {
        float s = 0;
        for (int j = 0; j < 8; j++) s += px[8 * i + j];
        ((int64_t *)nn_tensor_data(y))[i] = (s > 0.5f) + (s > -0.5f);
    }
    nn_dataset *ds = nn_dataset_from_tensors(x, y);
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_generator_free(g);
    return ds;
}

static nn_module *model(void) {
    nn_generator_seed(NULL, 1);
    nn_module *m = nn_sequential_new();
    nn_sequential_append(m, nn_linear_new(8, 16, true));
    nn_sequential_append(m, nn_relu_new());
    nn_sequential_append(m, nn_linear_new(16, 3, true));
    return m;
}

static nn_status step(nn_module *m, nn_optim *opt, nn_tensor *x, nn_tensor *y) {
    nn_scope *s = nn_scope_begin();
    nn_status st = nn_optim_zero_grad(opt);
    nn_tensor *loss = st ? NULL : nn_cross_entropy(nn_module_forward(m, x), y);
    if (!st && !loss) st = nn_last_status();
    if (!st) st = nn_backward(loss);
    if (!st) st = nn_dist_allreduce_grads(m);
    if (!st) st = nn_optim_step(opt);
    nn_scope_end(s);
    return st;
}

/* Rank 1's allocator: when armed, SIGKILL at the 3rd allocation. */
static int g_armed;
static void *die_malloc(size_t n, void *u) {
    (void)u;
    if (g_armed && ++g_armed > 3) raise(SIGKILL);
    return malloc(n);
}
static void *die_realloc(void *p, size_t n, void *u) {
    (void)u;
    return realloc(p, n);
}
static void die_free(void *p, void *u) {
    (void)u;
    free(p);
}

static int overlap_mode(const char *mode) {
    bool kill = !strcmp(mode, "overlap_kill");
    if (kill && nn_dist_rank() == 1 && nn_set_allocator(die_malloc, die_realloc, die_free, NULL))
        return fail("nn_set_allocator");
    nn_dataset *all = data(), *shard = nn_dist_shard_dataset(all, true);
    nn_module *m = model();
    nn_optim *opt = nn_optim_new_module(NN_OPTIM_TYPE_SGD, m, 0.1);
    if (!shard || !m || !opt || nn_dist_set_bucket_bytes(1) || nn_dist_set_overlap(m, true))
        return fail("setup");
    nn_loader *ld = nn_loader_new(shard, 16, false, 0);
    nn_tensor *x, *y;
    for (int s = 0; ld && nn_loader_next(ld, &x, &y); s++) {
        nn_scope *sc = nn_scope_begin();
        nn_status st = nn_optim_zero_grad(opt);
        nn_tensor *loss = st ? NULL : nn_cross_entropy(nn_module_forward(m, x), y);
        if (!st && !loss) st = nn_last_status();
        if (s == 3 && nn_dist_rank() == 1) {
            if (!kill) {
                fprintf(stderr, "dist_fail: rank 1 stalls before its overlapped backward\n");
                sleep(120);
                return 0;
            }
            fprintf(stderr, "dist_fail: rank 1 dies in its overlapped backward\n");
            g_armed = 1;
        }
        if (!st) st = nn_backward(loss);
        if (!st) st = nn_dist_allreduce_grads(m);
        if (!st) st = nn_optim_step(opt);
        nn_scope_end(sc);
        if (st) return fail("overlapped step");
    }
    fprintf(stderr, "dist_fail: rank %d: training completed (unexpected)\n", nn_dist_rank());
    nn_dist_finalize();
    return 0;
}

static int failure_mode(const char *mode) {
    if (!strncmp(mode, "overlap_", 8)) return overlap_mode(mode);
    nn_module *m = model();
    double v[1] = {1};
    if (nn_dist_rank() == 1) {
        if (!strcmp(mode, "stall")) {
            fprintf(stderr, "dist_fail: rank 1 stalls before the allreduce\n");
            sleep(120); /* never joins: rank 0 must time out */
            return 0;
        }
        if (!strcmp(mode, "abort")) {
            nn_dist_abort(4, "injected failure before the allreduce");
            return fail("nn_dist_abort returned");
        }
        if (!strcmp(mode, "kill")) raise(SIGKILL);
    }
    if (nn_dist_allreduce_scalar(v, 1) != NN_OK) {
        int rc = fail("allreduce");
        nn_module_free(m);
        return rc;
    }
    nn_module_free(m);
    fprintf(stderr, "dist_fail: rank %d: the allreduce completed (unexpected)\n", nn_dist_rank());
    nn_dist_finalize();
    return 0;
}

static int train(int epochs, const char *ckpt, const char *out, const char *extra) {
    int kill_epoch = extra && strcmp(extra, "resume") ? atoi(extra) : -1;
    bool resume = extra && !strcmp(extra, "resume");
    nn_dataset *all = data(), *shard = nn_dist_shard_dataset(all, true);
    nn_module *m = model();
    nn_tensor *ps[4];
    for (int i = 0; i < 4; i++) ps[i] = nn_module_parameter(m, i, NULL);
    nn_optim *opt = nn_adam(ps, 4, 1e-2);
    if (!shard || !m || !opt || nn_dist_broadcast_module(m, 0)) return fail("setup");
    int64_t start = 0;
    if (resume && nn_checkpoint_load(ckpt, m, opt, NULL, NULL, &start, NULL, NULL))
        return fail("resuming");
    for (int64_t e = start; e < epochs; e++) {
        /* A loader per epoch, seeded by the epoch: a resumed run shuffles alike. */
        nn_loader *ld = nn_loader_new(shard, 16, true, 1000 + (uint64_t)e);
        nn_tensor *x, *y;
        int batch = 0;
        while (ld && nn_loader_next(ld, &x, &y)) {
            if (e == kill_epoch && batch == 3 && nn_dist_rank() == 1) raise(SIGKILL);
            if (step(m, opt, x, y)) return fail("step");
            batch++;
        }
        nn_loader_free(ld);
        if (nn_dist_rank() == 0) {
            nn_io_options *o = nn_io_options_new();
            nn_status st = nn_io_options_set_training(o, opt, NULL, NULL, e + 1, 0);
            if (!st) st = nn_model_save(m, ckpt, NULL, o);
            nn_io_options_free(o);
            if (st) return fail("checkpoint");
        }
        if (nn_dist_barrier()) return fail("barrier");
    }
    if (nn_dist_rank() == 0) {
        nn_statedict *sd = nn_module_state_dict(m);
        nn_io_options *o = nn_io_options_new();
        nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, 0);
        nn_status st = nn_statedict_save(sd, out, o);
        nn_io_options_free(o);
        nn_statedict_free(sd);
        if (st) return fail("saving");
    }
    nn_optim_free(opt);
    nn_module_free(m);
    nn_dataset_free(shard);
    nn_dataset_free(all);
    return nn_dist_finalize() ? fail("finalize") : 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if (nn_dist_init(&argc, &argv) || nn_dist_set_timeout(atof(argv[2]))) return fail("init");
    if (!strcmp(argv[1], "train") && argc >= 6)
        return train(atoi(argv[3]), argv[4], argv[5], argc > 6 ? argv[6] : NULL);
    return failure_mode(argv[1]);
}
