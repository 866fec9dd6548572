/* Data-parallel training benchmark: the seed's CNN (tests/bench/bench.c's
 * cnn case, examples/fashion_mnist_cnn.c) on synthetic Fashion-MNIST-shaped
 * data, one process or several under mpirun (tests/bench/bench_dist.sh runs
 * 1 and 2 ranks and prints the speed-up). Every rank trains on a per-rank
 * batch of global / size; each step's time is split into
 *
 *     compute    forward + backward + optimizer step (wall, this rank)
 *     allreduce  time inside nn_dist_allreduce_grads (the collective and
 *                any wait for a slower rank), with the calling thread's CPU
 *                time beside it (a busy-polling wait burns CPU);
 *
 * then, with a barrier before each allreduce, the wait for the slowest rank
 * (barrier) apart from the collective itself; then the same steps with the
 * allreduce overlapped with backward (nn_dist_set_overlap). Figures are
 * medians over steps, the largest over ranks, printed by rank 0 as
 *
 *     BENCH dist_cnn_np<P>_<what> <threads per rank> <value> <unit>
 *
 * Options: --steps N (30), --batch B global batch (64), --threads T libnn
 * threads per rank (1), --bucket BYTES (nn_dist_set_bucket_bytes),
 * --timeout S (nn_dist_set_timeout; 0 waits in MPI_Wait). */
#include "nn.h"
#include "bench_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_rank;

static double now_s(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static double wall(void) { return now_s(CLOCK_MONOTONIC); }
static double cpu(void) { return now_s(CLOCK_THREAD_CPUTIME_ID); }

static void die(const char *what) {
    fprintf(stderr, "bench_dist: rank %d: %s failed: %s\n", g_rank, what, nn_last_error());
    nn_dist_abort(1, what);
    exit(1);
}
#define CHECK(expr) ((expr) ? (void)0 : die(#expr))
#define CHECK_OK(expr) ((expr) == NN_OK ? (void)0 : die(#expr))

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(const double *v, int n) {
    double *c = malloc((size_t)n * sizeof *c);
    CHECK(c);
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* The median of v over this rank's steps, the largest over ranks. */
static double rank_max_median(const double *v, int n) {
    int size = nn_dist_size();
    /* max through a sum: every rank puts its median in its own slot. */
    double *all = calloc((size_t)size, sizeof *all);
    CHECK(all);
    all[g_rank] = median(v, n);
    CHECK_OK(nn_dist_allreduce_scalar(all, size));
    double mx = all[0];
    for (int r = 1; r < size; r++) mx = all[r] > mx ? all[r] : mx;
    free(all);
    return mx;
}

static void report(const char *what, int threads, double value, const char *unit) {
    if (g_rank != 0) return;
    printf("BENCH dist_cnn_np%d_%s %d %.6g %s\n", nn_dist_size(), what, threads, value, unit);
    fflush(stdout);
}

static nn_module *make_cnn(void) {
    nn_module *m = bench_cnn();
    if (!m) die("bench_cnn");
    return m;
}

/* Synthetic batch k of this rank: x [n, 1, 28, 28] in [0, 1), labels 0..9. */
static void make_batch(uint64_t seed, int64_t n, nn_tensor **x, nn_tensor **y) {
    nn_generator *g = nn_generator_new(seed);
    CHECK(g);
    int64_t xs[4] = {n, 1, 28, 28}, ys[1] = {n};
    *x = nn_rand(g, xs, 4);
    int64_t *lab = malloc((size_t)n * sizeof *lab);
    CHECK(*x && lab);
    for (int64_t i = 0; i < n; i++) lab[i] = (int64_t)(nn_generator_next(g) % 10);
    *y = nn_tensor_from_data(NN_DTYPE_I64, ys, 1, lab);
    free(lab);
    CHECK(*y);
    nn_generator_free(g);
}

enum { NBATCH = 4 };
enum mode { PLAIN, SPLIT, OVERLAP };

typedef struct times {
    double *step, *compute, *ar, *ar_cpu, *barrier;
} times;

/* `steps` training steps (after 3 warm-up steps) in one mode. */
static void run(nn_module *net, nn_optim *opt, nn_tensor **xs, nn_tensor **ys, int steps,
                enum mode mode, times *t) {
    for (int s = -3; s < steps; s++) {
        nn_scope *sc = nn_scope_begin();
        CHECK(sc);
        double t0 = wall();
        CHECK_OK(nn_optim_zero_grad(opt));
        nn_tensor *loss = nn_cross_entropy(nn_module_forward(net, xs[(s + 3) % NBATCH]),
                                           ys[(s + 3) % NBATCH]);
        CHECK(loss);
        CHECK_OK(nn_backward(loss));
        double t1 = wall();
        if (mode == SPLIT) CHECK_OK(nn_dist_barrier());
        double t2 = wall(), c2 = cpu();
        CHECK_OK(nn_dist_allreduce_grads(net));
        double t3 = wall(), c3 = cpu();
        CHECK_OK(nn_optim_step(opt));
        double t4 = wall();
        nn_scope_end(sc);
        if (s < 0) continue;
        t->step[s] = (t4 - t0) - (t2 - t1); /* the barrier is the benchmark's, not the step's */
        t->compute[s] = (t1 - t0) + (t4 - t3);
        t->ar[s] = t3 - t2;
        t->ar_cpu[s] = c3 - c2;
        t->barrier[s] = t2 - t1;
    }
}

int main(int argc, char **argv) {
    if (nn_dist_init(&argc, &argv) != NN_OK) {
        fprintf(stderr, "bench_dist: nn_dist_init: %s\n", nn_last_error());
        return 1;
    }
    g_rank = nn_dist_rank();
    int size = nn_dist_size(), steps = 30, threads = 1;
    int64_t batch = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout"))
            CHECK_OK(nn_dist_set_timeout(atof(argv[i + 1])));
        else if (!strcmp(argv[i], "--bucket"))
            CHECK_OK(nn_dist_set_bucket_bytes((size_t)strtoull(argv[i + 1], NULL, 10)));
    }
    if (steps < 1 || threads < 1 || batch < size || batch % size) {
        fprintf(stderr, "bench_dist: need steps >= 1, threads >= 1 and a global batch that the "
                        "ranks divide\n");
        nn_dist_finalize();
        return 1;
    }
    CHECK_OK(nn_set_num_threads(threads));
    int64_t local = batch / size;

    nn_generator_seed(NULL, 1);
    nn_module *net = make_cnn();
    CHECK_OK(nn_dist_broadcast_module(net, 0));
    nn_optim *opt = nn_optim_new_module(NN_OPTIM_TYPE_SGD, net, 0.01);
    CHECK(opt);
    nn_tensor *xs[NBATCH], *ys[NBATCH];
    for (int k = 0; k < NBATCH; k++)
        make_batch(1000 + (uint64_t)(k * size + g_rank), local, &xs[k], &ys[k]);

    if (g_rank == 0)
        printf("bench_dist: %d rank(s) x %d thread(s), global batch %lld (%lld per rank), %d "
               "steps per mode, median over steps, slowest rank\n",
               size, threads, (long long)batch, (long long)local, steps);

    /* Three modes, interleaved in rounds of 5 steps so that a change of
     * the host's load hits all of them alike:
     *   plain    the DDP step: backward, then nn_dist_allreduce_grads;
     *   split    a barrier first: the wait for the slowest rank, then the
     *            collective alone (2 ranks or more);
     *   overlap  the allreduce overlapped with backward (nn_dist_set_overlap):
     *            compute then includes starting buckets during backward,
     *            allreduce is what is left to wait for after it. */
    enum { ROUND = 5 };
    int rounds = (steps + ROUND - 1) / ROUND, n = rounds * ROUND;
    double *all = calloc((size_t)n * 5 * 3, sizeof *all);
    CHECK(all);
    times mt[3];
    for (int k = 0; k < 3; k++) {
        double *b = all + (size_t)k * 5 * n;
        mt[k] = (times){b, b + n, b + 2 * n, b + 3 * n, b + 4 * n};
    }
    int nmodes = size > 1 ? 3 : 1;
    int64_t buckets = 0;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < nmodes; k++) {
            if (k == OVERLAP) CHECK_OK(nn_dist_set_overlap(net, true));
            if (k == OVERLAP) buckets = nn_dist_num_buckets();
            times at = {mt[k].step + r * ROUND, mt[k].compute + r * ROUND, mt[k].ar + r * ROUND,
                        mt[k].ar_cpu + r * ROUND, mt[k].barrier + r * ROUND};
            run(net, opt, xs, ys, ROUND, (enum mode)k, &at);
            if (k == OVERLAP) CHECK_OK(nn_dist_set_overlap(net, false));
        }

    double step = rank_max_median(mt[PLAIN].step, n);
    report("step", threads, step * 1e3, "ms");
    report("compute", threads, rank_max_median(mt[PLAIN].compute, n) * 1e3, "ms");
    report("allreduce", threads, rank_max_median(mt[PLAIN].ar, n) * 1e3, "ms");
    report("allreduce_cpu", threads, rank_max_median(mt[PLAIN].ar_cpu, n) * 1e3, "ms");
    report("img_per_s", threads, (double)batch / step, "img/s");
    if (size > 1) {
        report("wait_barrier", threads, rank_max_median(mt[SPLIT].barrier, n) * 1e3, "ms");
        report("allreduce_after_barrier", threads, rank_max_median(mt[SPLIT].ar, n) * 1e3, "ms");
        double ostep = rank_max_median(mt[OVERLAP].step, n);
        report("overlap_buckets", threads, (double)buckets, "buckets");
        report("overlap_step", threads, ostep * 1e3, "ms");
        report("overlap_compute", threads, rank_max_median(mt[OVERLAP].compute, n) * 1e3, "ms");
        report("overlap_allreduce_left", threads, rank_max_median(mt[OVERLAP].ar, n) * 1e3, "ms");
        report("overlap_img_per_s", threads, (double)batch / ostep, "img/s");
        report("overlap_vs_plain", threads, step / ostep, "x");
    }
    free(all);

    for (int k = 0; k < NBATCH; k++) nn_tensor_free(xs[k]), nn_tensor_free(ys[k]);
    nn_optim_free(opt);
    nn_module_free(net);
    return nn_dist_finalize() == NN_OK ? 0 : 1;
}
