/* Gradient allreduce overlapped with backward (nn_dist_set_overlap), run
 * by `mpirun -np 2` (and alone, as a world of one). Every rank checks:
 *   1. bucket counts against the rule recomputed here from the parameter
 *      sizes in reverse registration order (1 byte: one bucket per
 *      parameter; SIZE_MAX and the 25 MiB default: one bucket);
 *   2. N steps of data-parallel SGD with momentum end with the same
 *      parameters, bit for bit, with overlap (every bucket size above) as
 *      without (the blocking nn_dist_allreduce_grads): the same sums;
 *   3. both equal one-process SGD on the concatenated global batch, within
 *      1e-6 (the oracle, computed locally);
 *   4. gradient accumulation (two backwards per step) with overlap equals
 *      the blocking path bit for bit;
 *   5. argument errors, and switching overlap off and on mid-training.
 * Prints one line per rank; exit status 0 only if every check passed. */
#include "dist_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { N = 64, F = 6, C = 3, B = 16, STEPS = N / B, MAXV = 4096 };

/* Linear(F,32) -> Tanh -> Linear(32,16) -> Tanh -> Linear(16,C): 6
 * parameters of 768, 128, 2048, 64, 192 and 12 bytes. */
static nn_module *make_net(void) {
    nn_clear_error();
    nn_generator_seed(NULL, 11);
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_linear_new(F, 32, true));
    nn_sequential_append(net, nn_tanh_new());
    nn_sequential_append(net, nn_linear_new(32, 16, true));
    nn_sequential_append(net, nn_tanh_new());
    nn_sequential_append(net, nn_linear_new(16, C, true));
    if (nn_last_status() != NN_OK) {
        fprintf(stderr, "rank %d: make_net: %s\n", g_rank, nn_last_error());
        g_failed = 1;
    }
    return net;
}

static int flatten(nn_module *net, double *out) {
    int k = 0;
    for (int64_t i = 0; i < nn_module_num_parameters(net); i++) {
        nn_tensor *t = nn_module_parameter(net, i, NULL);
        const float *p = nn_tensor_data(t);
        for (int64_t j = 0; j < nn_tensor_numel(t) && k < MAXV; j++) out[k++] = p[j];
    }
    return k;
}

/* How a run trains. */
typedef struct run_cfg {
    bool dist;         /* false: one process, the whole global batch (oracle) */
    bool overlap;      /* nn_dist_set_overlap */
    size_t bucket;     /* nn_dist_set_bucket_bytes (0: leave as is) */
    bool accumulate;   /* two backwards per step (halves of the rank's rows) */
    bool toggle;       /* overlap off for step 1, back on for step 2 */
    int64_t *buckets;  /* out: nn_dist_num_buckets after enabling */
} run_cfg;

/* STEPS steps of SGD (lr 0.1, momentum 0.9); parameters into out. */
static int train(const run_cfg *cfg, double *out) {
    nn_tensor *x, *y;
    dist_make_data(N, F, C, 5, &x, &y);
    nn_module *net = make_net();
    nn_tensor *ps[8];
    int64_t np = nn_module_num_parameters(net);
    for (int64_t i = 0; i < np && i < 8; i++) ps[i] = nn_module_parameter(net, i, NULL);
    nn_optim *opt = nn_sgd(ps, np, 0.1, 0.9);
    CHECK(opt, "nn_sgd");
    if (cfg->bucket) CHECK_OK(nn_dist_set_bucket_bytes(cfg->bucket));
    if (cfg->overlap) CHECK_OK(nn_dist_set_overlap(net, true));
    if (cfg->buckets) *cfg->buckets = nn_dist_num_buckets();
    int size = cfg->dist ? g_size : 1, rank = cfg->dist ? g_rank : 0;
    for (int s = 0; s < STEPS; s++) {
        if (cfg->toggle && s == 1) CHECK_OK(nn_dist_set_overlap(net, false));
        if (cfg->toggle && s == 2) CHECK_OK(nn_dist_set_overlap(net, true));
        int64_t idx[B], n = 0;
        for (int i = 0; i < B; i++) /* this rank's interleaved share of batch s */
            if (i % size == rank) idx[n++] = s * B + i;
        CHECK_OK(nn_optim_zero_grad(opt));
        if (cfg->accumulate) {
            dist_backward_on(net, x, y, idx, n / 2);
            dist_backward_on(net, x, y, idx + n / 2, n - n / 2);
        } else {
            dist_backward_on(net, x, y, idx, n);
        }
        if (cfg->dist) CHECK_OK(nn_dist_allreduce_grads(net));
        CHECK_OK(nn_optim_step(opt));
    }
    if (cfg->overlap) CHECK_OK(nn_dist_set_overlap(net, false));
    CHECK(nn_dist_num_buckets() == 0, "buckets left after switching overlap off");
    int k = flatten(net, out);
    nn_optim_free(opt);
    nn_module_free(net);
    nn_tensor_free(x);
    nn_tensor_free(y);
    return k;
}

/* The bucket count rule, recomputed: reverse registration order, a bucket
 * closes once it holds >= cap bytes. */
static int64_t expected_buckets(size_t cap) {
    nn_module *net = make_net();
    int64_t np = nn_module_num_parameters(net), nb = 0;
    size_t fill = 0;
    for (int64_t i = np - 1; i >= 0; i--) {
        fill += (size_t)nn_tensor_numel(nn_module_parameter(net, i, NULL)) * sizeof(float);
        if (fill >= cap || i == 0) nb++, fill = 0;
    }
    nn_module_free(net);
    return nb;
}

static void same_bits(const double *a, const double *b, int n, const char *what) {
    int bad = 0;
    for (int i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof a[i]) != 0;
    CHECK(bad == 0, "%s: %d of %d parameters differ from the blocking path", what, bad, n);
}

static void close_to(const double *a, const double *b, int n, double tol, const char *what) {
    double worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    CHECK(worst <= tol, "%s: max |difference| %g from one-process SGD (tolerance %g)", what, worst,
          tol);
}

int main(int argc, char **argv) {
    if (!dist_start(&argc, &argv)) return 1;
    CHECK(nn_dist_set_timeout(60) == NN_OK, "nn_dist_set_timeout");
    static double oracle[MAXV], blocking[MAXV], got[MAXV], acc_block[MAXV];

    /* Argument errors: nothing changes. */
    size_t def = nn_dist_bucket_bytes();
    CHECK(def == (size_t)25 << 20, "default bucket bytes %zu, want 25 MiB", def);
    CHECK(nn_dist_set_bucket_bytes(0) == NN_ERR_INVALID, "bucket bytes 0 accepted");
    CHECK(nn_dist_bucket_bytes() == def, "a refused size changed the setting");
    nn_clear_error(); /* a NULL argument reports a pending error first */
    nn_status st = nn_dist_set_overlap(NULL, true);
    CHECK(st == NN_ERR_NULL, "NULL module: status %d", (int)st);
    CHECK(nn_dist_num_buckets() == 0, "buckets without overlap");

    run_cfg one = {.dist = false};
    int n = train(&one, oracle);
    run_cfg blk = {.dist = true};
    CHECK(train(&blk, blocking) == n, "parameter count");
    close_to(blocking, oracle, n, 1e-6, "blocking");

    struct {
        size_t bucket;
        const char *name;
    } sizes[] = {{def, "default 25 MiB"}, {1, "1 byte"}, {SIZE_MAX, "SIZE_MAX"},
                 {200, "200 bytes"}, {2048, "2048 bytes"}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t nb = -1;
        run_cfg ov = {.dist = true, .overlap = true, .bucket = sizes[k].bucket, .buckets = &nb};
        CHECK(train(&ov, got) == n, "parameter count");
        int64_t want = expected_buckets(sizes[k].bucket);
        CHECK(nb == want, "bucket size %s: %lld buckets, want %lld", sizes[k].name,
              (long long)nb, (long long)want);
        same_bits(got, blocking, n, sizes[k].name);
        close_to(got, oracle, n, 1e-6, sizes[k].name);
    }
    CHECK(expected_buckets(1) == 6 && expected_buckets(SIZE_MAX) == 1, "bucket rule oracle");

    /* Gradient accumulation: two backwards per step. */
    run_cfg ab = {.dist = true, .accumulate = true};
    train(&ab, acc_block);
    run_cfg ao = {.dist = true, .overlap = true, .bucket = 1, .accumulate = true};
    train(&ao, got);
    same_bits(got, acc_block, n, "accumulation with overlap");

    /* Overlap off for one step, on again. */
    run_cfg tg = {.dist = true, .overlap = true, .bucket = 200, .toggle = true};
    train(&tg, got);
    same_bits(got, blocking, n, "toggled overlap");
    CHECK_OK(nn_dist_set_bucket_bytes(def));

    printf("dist_overlap: rank %d of %d: %s\n", g_rank, g_size, g_failed ? "FAILED" : "ok");
    if (nn_dist_finalize() != NN_OK) g_failed = 1;
    return g_failed;
}
