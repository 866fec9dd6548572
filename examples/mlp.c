/* A multi-layer perceptron on Fashion-MNIST, with a learning-rate schedule,
 * a confusion matrix and per-class precision / recall.
 *
 * The PyTorch version, in the same order:
 *
 *   train = FashionMNIST(root, train=True, transform=ToTensor() + Normalize)
 *   test = FashionMNIST(root, train=False, ...)
 *   model = nn.Sequential(nn.Flatten(),                    # [N, 1, 28, 28] -> [N, 784]
 *                         nn.Linear(784, 256), nn.ReLU(),
 *                         nn.Linear(256, 128), nn.ReLU(),
 *                         nn.Linear(128, 10))
 *   opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
 *   sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
 *   for epoch in range(epochs):
 *       for x, y in DataLoader(train, batch_size=128, shuffle=True):
 *           opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
 *       sched.step()
 *   cm = confusion_matrix(test labels, model(test).argmax(1))
 *   precision, recall = cm.diag() / cm.sum(0), cm.diag() / cm.sum(1)
 *
 * Usage: mlp [--data DIR] [--epochs N] [--subset N] [--threads N]
 * NN_EXAMPLE_SMOKE=1: 1 epoch on 3000 training images, 1000 test images.
 */
#include <nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { NUM_CLASSES = 10, BATCH = 128 };

static const char *const CLASS_NAMES[NUM_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

typedef struct options {
    const char *data_dir, *profile_path;
    int epochs, threads;
    int64_t subset, test_subset;
} options;

static int fail(const char *what) {
    fprintf(stderr, "mlp: %s: %s\n", what, nn_last_error());
    return 1;
}

static int parse_options(int argc, char **argv, options *o) {
    const char *env_dir = getenv("NN_FASHION_MNIST");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (options){.data_dir = env_dir && *env_dir ? env_dir : "/usr/share/datasets/fashion-mnist",
                   .epochs = 8, .threads = ncpu > 0 ? (int)ncpu : 1};
    const char *smoke = getenv("NN_EXAMPLE_SMOKE");
    if (smoke && *smoke && strcmp(smoke, "0") != 0) {
        o->epochs = 1;
        o->subset = 3000;
        o->test_subset = 1000;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        char *end;
        long n = strtol(v, &end, 10);
        bool num_ok = *v && !*end && n >= 0 && n <= 1000000;
        if (!strcmp(a, "--data")) o->data_dir = v;
        else if (!strcmp(a, "--profile")) o->profile_path = v;
        else if (!strcmp(a, "--epochs") && num_ok) o->epochs = (int)n;
        else if (!strcmp(a, "--subset") && num_ok) o->subset = n;
        else if (!strcmp(a, "--threads") && num_ok && n >= 1) o->threads = (int)n;
        else goto usage;
    }
    if (argc % 2 == 0) goto usage;
    return 0;
usage:
    fprintf(stderr, "usage: mlp [--data DIR] [--epochs N] [--subset N] [--threads N]"
                    " [--profile TRACE.json]\n");
    return 2;
}

/* FashionMNIST(root, train) limited to its first `limit` images (0: all). */
static nn_dataset *load_split(const char *dir, const char *prefix, int64_t limit) {
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    if (access(images, R_OK) != 0 || access(labels, R_OK) != 0) {
        fprintf(stderr, "mlp: Fashion-MNIST not found in %s; install it with\n"
                        "  apt-get install dataset-fashion-mnist  (or pass --data DIR)\n", dir);
        return NULL;
    }
    nn_dataset *ds = nn_dataset_from_idx(images, labels);
    if (!ds) {
        fail("reading the IDX files");
        return NULL;
    }
    if (limit <= 0 || limit >= nn_dataset_len(ds)) return ds;
    int64_t *idx = malloc((size_t)limit * sizeof *idx);
    nn_dataset *sub = NULL;
    if (idx) {
        for (int64_t i = 0; i < limit; i++) idx[i] = i;
        sub = nn_dataset_subset(ds, idx, limit);
        if (!sub) fail("nn_dataset_subset");
    }
    free(idx);
    nn_dataset_free(ds);  /* the subset keeps its own reference to the samples */
    return sub;
}

static nn_module *build_mlp(void) {
    nn_module *seq = nn_sequential_new();
    nn_module *layers[] = {nn_flatten_new(1, -1),
                           nn_linear_new(784, 256, true), nn_relu_new(),
                           nn_linear_new(256, 128, true), nn_relu_new(),
                           nn_linear_new(128, NUM_CLASSES, true)};
    nn_status st = seq ? NN_OK : NN_ERR_NOMEM;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        if (st == NN_OK) st = nn_sequential_append(seq, layers[i]);  /* takes the reference */
        else nn_module_free(layers[i]);
    }
    if (st == NN_OK) return seq;
    nn_module_free(seq);
    return NULL;
}

/* One epoch; *mean_loss receives the mean training loss. */
static int train_epoch(nn_module *model, nn_optim *opt, nn_loader *loader, double *mean_loss) {
    double sum = 0, count = 0;
    nn_tensor *x, *y;
    if (nn_loader_reset(loader) != NN_OK) return fail("nn_loader_reset");
    while (nn_loader_next(loader, &x, &y)) {
        nn_scope *step = nn_scope_begin();
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_cross_entropy(nn_module_forward(model, x), y);
        bool ok = step && loss && nn_backward(loss) == NN_OK && nn_optim_step(opt) == NN_OK;
        if (ok) {
            double n = (double)nn_tensor_size(y, 0);
            sum += nn_tensor_item(loss) * n;
            count += n;
        }
        nn_scope_end(step);
        if (!ok) return fail("training step");
    }
    if (nn_loader_status(loader) != NN_OK) return fail("loading a batch");
    *mean_loss = count > 0 ? sum / count : 0.0;
    return 0;
}

/* Accumulate the test set's confusion matrix into cm (row: label, column:
 * prediction), in eval mode without grad. */
static int confusion(nn_module *model, nn_loader *loader, int64_t cm[NUM_CLASSES][NUM_CLASSES]) {
    bool grad_was = nn_set_grad_enabled(false);
    nn_module_train(model, false);
    memset(cm, 0, sizeof(int64_t) * NUM_CLASSES * NUM_CLASSES);
    nn_tensor *x, *y;
    int rc = nn_loader_reset(loader) == NN_OK ? 0 : fail("nn_loader_reset");
    while (!rc && nn_loader_next(loader, &x, &y)) {
        nn_scope *s = nn_scope_begin();
        nn_tensor *batch_cm = nn_confusion_matrix(nn_module_forward(model, x), y, NUM_CLASSES);
        int64_t part[NUM_CLASSES][NUM_CLASSES];
        if (!s || !batch_cm || nn_tensor_copy_to(batch_cm, part, sizeof part) != NN_OK)
            rc = fail("confusion matrix");
        else
            for (int i = 0; i < NUM_CLASSES; i++)
                for (int j = 0; j < NUM_CLASSES; j++) cm[i][j] += part[i][j];
        nn_scope_end(s);
    }
    if (!rc && nn_loader_status(loader) != NN_OK) rc = fail("loading a batch");
    nn_module_train(model, true);
    nn_set_grad_enabled(grad_was);
    return rc;
}

static int report(int64_t cm[NUM_CLASSES][NUM_CLASSES]) {
    int64_t shape[2] = {NUM_CLASSES, NUM_CLASSES}, correct = 0, total = 0;
    nn_tensor *t = nn_tensor_from_data(NN_DTYPE_I64, shape, 2, cm);
    double precision[NUM_CLASSES], recall[NUM_CLASSES];
    nn_status st = t ? nn_precision_recall(t, precision, recall, NUM_CLASSES) : nn_last_status();
    nn_tensor_free(t);
    if (st != NN_OK) return fail("nn_precision_recall");
    printf("\nconfusion matrix (rows: true class, columns: predicted):\n%12s", "");
    for (int j = 0; j < NUM_CLASSES; j++) printf("%6d", j);
    printf("\n");
    for (int i = 0; i < NUM_CLASSES; i++) {
        printf("%d %-10.10s", i, CLASS_NAMES[i]);
        for (int j = 0; j < NUM_CLASSES; j++) printf("%6lld", (long long)cm[i][j]);
        printf("\n");
        for (int j = 0; j < NUM_CLASSES; j++) total += cm[i][j];
        correct += cm[i][i];
    }
    printf("\n%-12s %9s %9s\n", "class", "precision", "recall");
    for (int i = 0; i < NUM_CLASSES; i++)
        printf("%-12s %8.1f%% %8.1f%%\n", CLASS_NAMES[i], 100 * precision[i], 100 * recall[i]);
    printf("test accuracy: %.1f%%\n", total ? 100.0 * (double)correct / (double)total : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc;
    nn_dataset *train = NULL, *test = NULL;
    nn_loader *train_loader = NULL, *test_loader = NULL;
    nn_module *model = NULL;
    nn_optim *opt = NULL;
    nn_sched *sched = NULL;
    rc = 1;
    if (nn_set_num_threads(o.threads) != NN_OK) { fail("nn_set_num_threads"); goto done; }
    nn_generator_seed(NULL, 1);  /* torch.manual_seed(1) */

    train = load_split(o.data_dir, "train", o.subset);
    test = load_split(o.data_dir, "t10k", o.test_subset);
    if (!train || !test) goto done;
    float mean[1], std[1];  /* Normalize with the training set's statistics */
    if (nn_dataset_compute_normalize(train) != NN_OK ||
        nn_dataset_get_normalize(train, mean, std, 1) != 1 ||
        nn_dataset_set_normalize(test, mean, std, 1) != NN_OK) {
        fail("normalization");
        goto done;
    }
    train_loader = nn_loader_new(train, BATCH, true, 7);
    test_loader = nn_loader_new(test, 512, false, 0);
    model = build_mlp();
    opt = model ? nn_optim_new_module(NN_OPTIM_TYPE_SGD, model, 0.05) : NULL;
    if (!train_loader || !test_loader || !opt ||
        nn_optim_set(opt, NN_OPTIM_MOMENTUM, 0.9) != NN_OK) {
        fail("setting up");
        goto done;
    }
    sched = nn_sched_cosine(opt, o.epochs > 0 ? o.epochs : 1, 0.0);
    if (!sched) { fail("nn_sched_cosine"); goto done; }
    printf("MLP 784-256-128-10, %lld parameters; SGD momentum 0.9, cosine lr; "
           "train %lld, test %lld images\n", (long long)nn_module_param_count(model),
           (long long)nn_dataset_len(train), (long long)nn_dataset_len(test));

    /* --profile FILE: report on stderr, Chrome trace (Perfetto) in FILE */
    if (o.profile_path && nn_profiler_start(NN_PROFILER_MEMORY) != NN_OK) {
        fail("nn_profiler_start");
        goto done;
    }
    for (int epoch = 0; epoch < o.epochs; epoch++) {
        double lr = nn_sched_get_lr(sched, 0);
        double loss;
        if (train_epoch(model, opt, train_loader, &loss)) goto done;
        if (nn_sched_step(sched) != NN_OK) { fail("nn_sched_step"); goto done; }
        printf("epoch %d/%d: lr %.4f, train loss %.4f\n", epoch + 1, o.epochs, lr, loss);
    }
    if (o.profile_path && (nn_profiler_stop() != NN_OK || nn_profiler_write_report(2) != NN_OK ||
                           nn_profiler_write_trace(o.profile_path) != NN_OK)) {
        fail("--profile");
        goto done;
    }
    int64_t cm[NUM_CLASSES][NUM_CLASSES];
    if (confusion(model, test_loader, cm) || report(cm)) goto done;
    rc = 0;

done:
    nn_sched_free(sched);
    nn_optim_free(opt);
    nn_module_free(model);
    nn_loader_free(train_loader);
    nn_loader_free(test_loader);
    nn_dataset_free(train);
    nn_dataset_free(test);
    return rc;
}
