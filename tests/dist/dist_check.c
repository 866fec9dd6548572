/* Data-parallel training across processes, run by `mpirun -np 2` (and
 * alone, as a world of one). Every rank checks, against oracles it computes
 * by itself in one process:
 *   1. broadcast: parameters and buffers (f32 and i64) equal the root's
 *      model, rebuilt locally from the root's seed; any root; layouts that
 *      differ across ranks are refused on every rank;
 *   2. allreduce_grads: the mean of the per-rank gradients, computed locally
 *      from every rank's shard; a rank without a gradient contributes zeros;
 *      a parameter without a gradient anywhere keeps none;
 *   3. data-parallel SGD (momentum) with global batch B on `size` ranks ends
 *      with the parameters of one-process SGD with batch B (within 1e-5);
 *   4. allreduce_scalar sums.
 * Prints one line per rank; exit status 0 only if every check passed. */
#include "dist_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { N = 32, F = 4, H = 8, C = 3, B = 8, MAXV = 4096 };

/* Linear(F,H) -> [BatchNorm1d(H)] -> Tanh -> Linear(H,C), weights from seed. */
static nn_module *make_net(uint64_t seed, bool batch_norm, int64_t hidden) {
    nn_clear_error();
    nn_generator_seed(NULL, seed);
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_linear_new(F, hidden, true));
    if (batch_norm) nn_sequential_append(net, nn_batch_norm1d_new(hidden, 1e-5, 0.1, true));
    nn_sequential_append(net, nn_tanh_new());
    nn_sequential_append(net, nn_linear_new(hidden, C, true));
    if (!net || nn_last_status() != NN_OK) {
        fprintf(stderr, "rank %d: make_net: %s\n", g_rank, nn_last_error());
        g_failed = 1;
    }
    return net;
}

/* Every parameter and buffer of net, flattened to doubles; returns the count. */
static int flatten(nn_module *net, double *out) {
    nn_statedict *sd = nn_module_state_dict(net);
    int k = 0;
    for (int64_t i = 0; sd && i < nn_statedict_size(sd); i++) {
        nn_tensor *t = nn_statedict_tensor(sd, i);
        int64_t n = nn_tensor_numel(t);
        if (k + n > MAXV) break;
        if (nn_tensor_dtype(t) == NN_DTYPE_F32) {
            float f[MAXV];
            nn_tensor_copy_to(t, f, sizeof f);
            for (int64_t j = 0; j < n; j++) out[k++] = f[j];
        } else {
            int64_t v[MAXV];
            nn_tensor_copy_to(t, v, sizeof v);
            for (int64_t j = 0; j < n; j++) out[k++] = (double)v[j];
        }
    }
    nn_statedict_free(sd);
    return k;
}

static double max_abs_diff(const double *a, const double *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* A BatchNorm net whose buffers have moved `steps` times on rows of x. */
static nn_module *trained_bn_net(uint64_t seed, int steps, nn_tensor *x, nn_tensor *y) {
    nn_module *net = make_net(seed, true, H);
    int64_t idx[4] = {0, 1, 2, 3};
    for (int i = 0; i < steps; i++) dist_backward_on(net, x, y, idx, 4);
    return net;
}

static void check_broadcast(nn_tensor *x, nn_tensor *y) {
    static double got[MAXV], want[MAXV];
    for (int root = 0; root < g_size; root++) {
        /* Rank r's model: seed 100 + r, buffers moved 1 + r times (so the
         * i64 num_batches_tracked differs too). */
        nn_module *net = trained_bn_net(100 + (uint64_t)g_rank, 1 + g_rank, x, y);
        nn_module *ref = trained_bn_net(100 + (uint64_t)root, 1 + root, x, y);
        int n = flatten(net, got), nref = flatten(ref, want);
        CHECK(n == nref && n > 0, "flatten sizes %d vs %d", n, nref);
        if (g_rank != root) CHECK(max_abs_diff(got, want, n) > 0, "models equal before broadcast");
        CHECK_OK(nn_dist_broadcast_module(net, root));
        flatten(net, got);
        CHECK(max_abs_diff(got, want, n) == 0, "root %d: differs from the root's model by %g", root,
              max_abs_diff(got, want, n));
        nn_module_free(ref);
        nn_module_free(net);
    }
    /* Local argument errors (no communication happens). */
    nn_module *net = make_net(1, false, H);
    CHECK(nn_dist_broadcast_module(net, g_size) == NN_ERR_RANGE, "root == size accepted");
    nn_clear_error();
    CHECK(nn_dist_broadcast_module(NULL, 0) == NN_ERR_NULL, "NULL module accepted");
    nn_clear_error();
    /* Different layouts: refused on every rank, nothing changes. */
    if (g_size > 1) {
        nn_module *odd = make_net(2, false, g_rank == 1 ? H + 1 : H);
        flatten(odd, want);
        CHECK(nn_dist_broadcast_module(odd, 0) == NN_ERR_STATE, "layout mismatch accepted");
        nn_clear_error();
        int n = flatten(odd, got);
        CHECK(max_abs_diff(got, want, n) == 0, "a refused broadcast changed the module");
        CHECK(nn_dist_allreduce_grads(odd) == NN_ERR_STATE, "grad layout mismatch accepted");
        nn_clear_error();
        nn_module_free(odd);
    }
    nn_module_free(net);
}

/* Gradients of every parameter, flattened (zeros for a missing one), and a
 * flag per parameter saying whether it had one. */
static int grads(nn_module *net, double *out, int *has) {
    int k = 0;
    for (int64_t i = 0; i < nn_module_num_parameters(net); i++) {
        nn_tensor *p = nn_module_parameter(net, i, NULL), *g = nn_tensor_grad(p);
        int64_t n = nn_tensor_numel(p);
        float f[MAXV];
        has[i] = g != NULL;
        if (g) nn_tensor_copy_to(g, f, sizeof f);
        for (int64_t j = 0; j < n; j++) out[k++] = g ? f[j] : 0.0;
    }
    return k;
}

static void check_allreduce_grads(nn_tensor *x, nn_tensor *y) {
    static double got[MAXV], want[MAXV], one[MAXV];
    int has[16], has_one[16], want_has[16] = {0};
    int64_t idx[N];
    /* Rank 1 drops its gradient of the last bias; every rank drops 0.bias. */
    nn_module *net = make_net(3, false, H);
    int64_t n = nn_dist_shard_indices(N, g_rank, g_size, true, idx, N);
    dist_backward_on(net, x, y, idx, n);
    if (g_rank == 1) nn_tensor_zero_grad(nn_module_get_parameter(net, "2.bias"));
    nn_tensor_zero_grad(nn_module_get_parameter(net, "0.bias"));
    CHECK_OK(nn_dist_allreduce_grads(net));
    int k = grads(net, got, has);
    /* Oracle: every rank's shard, one after the other, in this process. */
    nn_module *ref = make_net(3, false, H);
    memset(want, 0, sizeof want);
    for (int r = 0; r < g_size; r++) {
        nn_module_zero_grad(ref);
        int64_t m = nn_dist_shard_indices(N, r, g_size, true, idx, N);
        dist_backward_on(ref, x, y, idx, m);
        if (r == 1) nn_tensor_zero_grad(nn_module_get_parameter(ref, "2.bias"));
        nn_tensor_zero_grad(nn_module_get_parameter(ref, "0.bias"));
        grads(ref, one, has_one);
        for (int j = 0; j < k; j++) want[j] += one[j] / g_size;
        for (int j = 0; j < 4; j++) want_has[j] |= has_one[j];
    }
    for (int j = 0; j < 4; j++) CHECK(has[j] == want_has[j], "parameter %d: has grad %d, want %d", j, has[j], want_has[j]);
    CHECK(!has[1], "0.bias got a gradient no rank had");
    double err = 0;
    for (int j = 0; j < k; j++) err = fmax(err, fabs(got[j] - want[j]) / (1e-6 + fabs(want[j])));
    CHECK(err < 1e-5, "gradient mean off by relative %g", err);
    nn_module_free(ref);
    nn_module_free(net);
}

/* `epochs` of SGD with momentum over ds in batches of `batch`, averaging
 * gradients over ranks when dist; returns the summed loss of the last epoch
 * (summed over ranks and divided by size when dist). */
static double sgd(nn_module *net, nn_dataset *ds, int64_t batch, bool dist, int epochs) {
    nn_optim *opt = nn_optim_new_module(NN_OPTIM_TYPE_SGD, net, 0.1);
    CHECK_OK(nn_optim_set(opt, NN_OPTIM_MOMENTUM, 0.9));
    nn_loader *l = nn_loader_new(ds, batch, false, 0);
    double total = 0;
    for (int e = 0; e < epochs; e++) {
        total = 0;
        nn_tensor *xb, *yb;
        CHECK_OK(nn_loader_reset(l));
        while (nn_loader_next(l, &xb, &yb)) {
            nn_scope *s = nn_scope_begin();
            CHECK_OK(nn_optim_zero_grad(opt));
            nn_tensor *loss = nn_cross_entropy(nn_module_forward(net, xb), yb);
            double v = nn_tensor_item(loss);
            CHECK_OK(nn_backward(loss));
            if (dist) {
                CHECK_OK(nn_dist_allreduce_grads(net));
                CHECK_OK(nn_dist_allreduce_scalar(&v, 1));
                v /= g_size;
            }
            CHECK_OK(nn_optim_step(opt));
            total += v;
            nn_scope_end(s);
        }
        CHECK_OK(nn_loader_status(l));
    }
    nn_loader_free(l);
    nn_optim_free(opt);
    return total;
}

static void check_ddp_equivalence(nn_tensor *x, nn_tensor *y) {
    static double got[MAXV], want[MAXV];
    if (B % g_size) {
        fprintf(stderr, "rank %d: SGD check skipped (batch %d not divisible by %d ranks)\n",
                g_rank, B, g_size);
        return;
    }
    nn_dataset *all = nn_dataset_from_tensors(x, y);
    nn_module *ref = make_net(11, false, H);
    double ref_loss = sgd(ref, all, B, false, 3);
    nn_module *net = make_net(11 + (uint64_t)g_rank, false, H); /* differs until broadcast */
    CHECK_OK(nn_dist_broadcast_module(net, 0));
    nn_dataset *mine = nn_dist_shard_dataset(all, true);
    CHECK(nn_dataset_len(mine) == N / g_size, "shard of %lld samples", (long long)nn_dataset_len(mine));
    double loss = sgd(net, mine, B / g_size, true, 3);
    int n = flatten(net, got);
    flatten(ref, want);
    CHECK(max_abs_diff(got, want, n) < 1e-5, "parameters differ from 1-process SGD by %g",
          max_abs_diff(got, want, n));
    CHECK(fabs(loss - ref_loss) < 1e-5, "last-epoch loss %.9g vs %.9g", loss, ref_loss);
    nn_dataset_free(mine);
    nn_dataset_free(all);
    nn_module_free(net);
    nn_module_free(ref);
}

static void check_scalar(void) {
    double v[2] = {g_rank + 1.0, 0.5};
    CHECK_OK(nn_dist_allreduce_scalar(v, 2));
    CHECK(v[0] == g_size * (g_size + 1) / 2.0 && v[1] == 0.5 * g_size, "sums %g %g", v[0], v[1]);
}

int main(int argc, char **argv) {
    if (!dist_start(&argc, &argv)) return 1;
    nn_tensor *x, *y;
    dist_make_data(N, F, C, 7, &x, &y);
    check_broadcast(x, y);
    check_allreduce_grads(x, y);
    check_ddp_equivalence(x, y);
    check_scalar();
    nn_tensor_free(x);
    nn_tensor_free(y);
    /* Everyone's verdict, so that every rank reports the world's result. */
    double failed = g_failed;
    nn_dist_allreduce_scalar(&failed, 1);
    printf("rank %d of %d (%s): %s\n", g_rank, g_size, nn_dist_available() ? "MPI" : "no MPI",
           failed == 0 ? "all checks passed" : "FAILED");
    if (nn_dist_finalize() != NN_OK) failed = 1;
    return failed == 0 ? 0 : 1;
}
