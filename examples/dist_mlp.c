/* Data-parallel training of an MLP on Fashion-MNIST, the libnn version of
 * PyTorch's DistributedDataParallel recipe:
 *
 *     mpirun -np 2 ./build/examples/dist_mlp            # 2 processes
 *     ./build/examples/dist_mlp                         # or just one
 *
 * Every rank builds the model, takes rank 0's weights (broadcast), trains on
 * its own shard of the training set with a per-rank batch of
 * global_batch / size, and averages gradients with the others before each
 * step, so the copies stay identical. Metrics are summed over ranks.
 *
 * Options: --epochs E (3), --batch B global batch (64), --limit N training
 * samples (all), --threads T per rank (1), --data DIR (the Debian package's
 * folder, or $NN_FMNIST_DIR). NN_EXAMPLE_SMOKE=1 runs a small, fast version.
 * On a host with fewer free cores than ranks, export
 * OMPI_MCA_mpi_yield_when_idle=1 (Open MPI otherwise busy-polls). */
#include <nn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct options {
    int64_t epochs, batch, limit, threads;
    const char *data;
} options;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what) {
    fprintf(stderr, "rank %d: %s: %s\n", nn_dist_rank(), what, nn_last_error());
    return 1;
}

static options parse(int argc, char **argv) {
    const char *env = getenv("NN_FMNIST_DIR");
    options o = {3, 64, 0, 1, env ? env : "/usr/share/datasets/fashion-mnist"};
    if (getenv("NN_EXAMPLE_SMOKE")) o.epochs = 1, o.limit = 2048;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--epochs")) o.epochs = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) o.batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--limit")) o.limit = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) o.threads = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--data")) o.data = argv[i + 1];
    }
    return o;
}

/* Fashion-MNIST split `prefix` ("train" / "t10k"), the first `limit`
 * samples (0: all), normalised with the training set's mean and std. */
static nn_dataset *load(const char *dir, const char *prefix, int64_t limit) {
    char img[512], lab[512];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    nn_dataset *ds = nn_dataset_from_idx(img, lab);
    if (ds && limit > 0 && limit < nn_dataset_len(ds)) {
        int64_t *idx = malloc((size_t)limit * sizeof *idx);
        for (int64_t i = 0; idx && i < limit; i++) idx[i] = i;
        nn_dataset *sub = idx ? nn_dataset_subset(ds, idx, limit) : NULL;
        free(idx);
        nn_dataset_free(ds);
        ds = sub;
    }
    const float mean = 0.2860f, std = 0.3530f;
    if (ds && nn_dataset_set_normalize(ds, &mean, &std, 1) != NN_OK) {
        nn_dataset_free(ds);
        ds = NULL;
    }
    return ds;
}

/* 784 -> 256 -> 128 -> 10 with ReLU. */
static nn_module *make_mlp(void) {
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_flatten_new(1, -1));
    nn_sequential_append(net, nn_linear_new(784, 256, true));
    nn_sequential_append(net, nn_relu_new());
    nn_sequential_append(net, nn_linear_new(256, 128, true));
    nn_sequential_append(net, nn_relu_new());
    nn_sequential_append(net, nn_linear_new(128, 10, true));
    return nn_last_status() == NN_OK ? net : (nn_module_free(net), NULL);
}

/* One epoch over this rank's loader; the loss summed over every rank's
 * samples goes to sums[0], their count to sums[1]. */
static nn_status train_epoch(nn_module *net, nn_optim *opt, nn_loader *train, double sums[2]) {
    nn_tensor *x, *y;
    sums[0] = sums[1] = 0;
    nn_status st = nn_loader_reset(train);
    while (st == NN_OK && nn_loader_next(train, &x, &y)) {
        nn_scope *s = nn_scope_begin();
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_cross_entropy(nn_module_forward(net, x), y);
        double n = (double)nn_tensor_size(x, 0);
        sums[0] += nn_tensor_item(loss) * n;
        sums[1] += n;
        if (!loss || (st = nn_backward(loss)) != NN_OK ||
            (st = nn_dist_allreduce_grads(net)) != NN_OK || (st = nn_optim_step(opt)) != NN_OK)
            st = st != NN_OK ? st : nn_last_status();
        nn_scope_end(s);
    }
    if (st == NN_OK) st = nn_loader_status(train);
    return st == NN_OK ? nn_dist_allreduce_scalar(sums, 2) : st;
}

/* Accuracy over every rank's test shard: correct and count summed over ranks. */
static nn_status evaluate(nn_module *net, nn_loader *test, double sums[2]) {
    nn_tensor *x, *y;
    sums[0] = sums[1] = 0;
    bool prev = nn_set_grad_enabled(false);
    nn_module_train(net, false);
    nn_status st = nn_loader_reset(test);
    while (st == NN_OK && nn_loader_next(test, &x, &y)) {
        nn_scope *s = nn_scope_begin();
        double acc = 0, n = (double)nn_tensor_size(x, 0);
        st = nn_accuracy(nn_module_forward(net, x), y, &acc);
        sums[0] += acc * n;
        sums[1] += n;
        nn_scope_end(s);
    }
    nn_module_train(net, true);
    nn_set_grad_enabled(prev);
    if (st == NN_OK) st = nn_loader_status(test);
    return st == NN_OK ? nn_dist_allreduce_scalar(sums, 2) : st;
}

int main(int argc, char **argv) {
    if (nn_dist_init(&argc, &argv) != NN_OK) return fail("nn_dist_init");
    options o = parse(argc, argv);
    int rank = nn_dist_rank(), size = nn_dist_size();
    if (o.batch < size || o.batch % size) {
        fprintf(stderr, "the global batch %lld must be a multiple of the %d ranks\n",
                (long long)o.batch, size);
        nn_dist_finalize();
        return 1;
    }
    nn_set_num_threads((int)o.threads);

    /* Data: an even shard for training (every rank runs the same number of
     * steps), any shard for testing (no collective per batch there). */
    nn_dataset *train_set = load(o.data, "train", o.limit);
    nn_dataset *test_set = load(o.data, "t10k", o.limit ? o.limit / 2 : 0);
    if (!train_set || !test_set) return fail("loading Fashion-MNIST");
    nn_dataset *train_shard = nn_dist_shard_dataset(train_set, true);
    nn_dataset *test_shard = nn_dist_shard_dataset(test_set, false);
    nn_loader *train = nn_loader_new(train_shard, o.batch / size, true, 42 + (uint64_t)rank);
    nn_loader *test = nn_loader_new(test_shard, 1000, false, 0);
    if (!train || !test || nn_loader_set_drop_last(train, true) != NN_OK)
        return fail("making the loaders");

    /* Model: every rank starts from rank 0's weights. */
    nn_generator_seed(NULL, (uint64_t)rank); /* deliberately different ... */
    nn_module *net = make_mlp();
    if (!net || nn_dist_broadcast_module(net, 0) != NN_OK) /* ... until now */
        return fail("building the model");
    nn_optim *opt = nn_optim_new_module(NN_OPTIM_TYPE_ADAM, net, 1e-3);
    if (!opt) return fail("nn_optim_new_module");
    if (rank == 0)
        printf("dist_mlp: %d rank(s) x %lld thread(s), %lld training samples, global batch %lld\n",
               size, (long long)o.threads, (long long)nn_dataset_len(train_set),
               (long long)o.batch);

    int rc = 0;
    for (int64_t e = 0; e < o.epochs && rc == 0; e++) {
        double tr[2], te[2];
        nn_dist_barrier();
        double t0 = now();
        if (train_epoch(net, opt, train, tr) != NN_OK) rc = fail("training");
        nn_dist_barrier();
        double secs = now() - t0;
        if (rc == 0 && evaluate(net, test, te) != NN_OK) rc = fail("evaluating");
        if (rc == 0 && rank == 0)
            printf("epoch %lld: train loss %.4f, test accuracy %.4f, %.2f s, %.0f images/s\n",
                   (long long)e + 1, tr[0] / tr[1], te[0] / te[1], secs, tr[1] / secs);
    }
    nn_optim_free(opt);
    nn_module_free(net);
    nn_loader_free(train);
    nn_loader_free(test);
    nn_dataset_free(train_shard);
    nn_dataset_free(test_shard);
    nn_dataset_free(train_set);
    nn_dataset_free(test_set);
    if (nn_dist_finalize() != NN_OK) rc = fail("nn_dist_finalize");
    return rc;
}
