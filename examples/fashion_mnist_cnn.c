/* Fashion-MNIST CNN: the libnn demo. Train, evaluate, save, reload, check.
 *
 * The PyTorch version, in the same order:
 *
 *   torch.set_num_threads(os.cpu_count())
 *   train_full = FashionMNIST(root, train=True, transform=ToTensor() + Normalize)
 *   test = FashionMNIST(root, train=False, ...)
 *   train, val = random_split(train_full, [55000, 5000])
 *   model = nn.Sequential(
 *       nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # [N, 32, 14, 14]
 *       nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, 64, 7, 7]
 *       nn.Flatten(),                                                 # [N, 3136]
 *       nn.Linear(3136, 128), nn.ReLU(),
 *       nn.Linear(128, 10))
 *   opt = torch.optim.Adam(model.parameters(), lr=1e-3)
 *   for epoch in range(epochs):
 *       for x, y in DataLoader(train, batch_size=64, shuffle=True):
 *           opt.zero_grad()
 *           loss = F.cross_entropy(model(x), y)
 *           loss.backward()
 *           opt.step()
 *       evaluate(model, val)                      # model.eval(), torch.no_grad()
 *   print(f"test accuracy: {100 * evaluate(model, test):.1f}%")
 *   torch.save(...)  ->  here nn_model_save with metadata, then nn_model_load
 *
 * Usage: fashion_mnist_cnn [--data DIR] [--epochs N] [--threads N] [--batch-size N]
 *            [--lr X] [--seed N] [--subset N] [--test-subset N] [--save PATH|--no-save]
 *            [--metrics CSV] [--min-accuracy PCT]
 * The data directory defaults to $NN_FASHION_MNIST, else
 * /usr/share/datasets/fashion-mnist. NN_EXAMPLE_SMOKE=1 makes a quick run
 * (1 epoch on 1000 images, 250 test images) for the test suite.
 */
#include <nn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const CLASS_NAMES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                            "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};

typedef struct options {
    const char *data_dir, *save_path, *metrics_path, *prom_path, *profile_path;
    int epochs, threads;
    int64_t metrics_port; /* -1: no endpoint */
    int64_t batch_size, subset, test_subset;
    double lr, min_accuracy;
    uint64_t seed;
} options;

/* Everything main() creates, so one function can free it all. */
typedef struct run {
    nn_dataset *train_full, *train, *val, *test;
    nn_loader *train_loader, *val_loader, *test_loader;
    nn_module *model;
    nn_optim *opt;
    nn_progress *progress;
    nn_metrics_log *log;
    nn_monitor *monitor; /* Prometheus metrics (--prometheus / --metrics-port) */
    nn_meta *meta;
    nn_model *reloaded;
} run;

static int fail(const char *what) {
    fprintf(stderr, "fashion_mnist_cnn: %s: %s\n", what, nn_last_error());
    return 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- options */

static int usage(void) {
    fprintf(stderr,
            "usage: fashion_mnist_cnn [--data DIR] [--epochs N] [--threads N] [--batch-size N]\n"
            "         [--lr X] [--seed N] [--subset N] [--test-subset N]\n"
            "         [--save PATH | --no-save] [--metrics CSV] [--min-accuracy PCT]\n"
            "         [--prometheus FILE] [--metrics-port N (0: any free port)]\n"
            "         [--profile TRACE.json]\n");
    return 2;
}

/* Parse a whole decimal number in [lo, hi]; false on junk. */
static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, options *o) {
    const char *env_dir = getenv("NN_FASHION_MNIST");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (options){.data_dir = env_dir && *env_dir ? env_dir : "/usr/share/datasets/fashion-mnist",
                   .save_path = "fashion_mnist_cnn.nnm", .epochs = 3,
                   .threads = ncpu > 0 ? (int)ncpu : 1, .batch_size = 64, .lr = 1e-3, .seed = 42,
                   .metrics_port = -1};
    const char *smoke = getenv("NN_EXAMPLE_SMOKE");
    if (smoke && *smoke && strcmp(smoke, "0") != 0) {
        o->epochs = 1;
        o->subset = 1000;
        o->test_subset = 250;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n = 0;
        bool ok = true;
        if (!strcmp(a, "--no-save")) { o->save_path = NULL; continue; }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--data")) o->data_dir = v;
        else if (!strcmp(a, "--save")) o->save_path = v;
        else if (!strcmp(a, "--metrics")) o->metrics_path = v;
        else if (!strcmp(a, "--profile")) o->profile_path = v;
        else if (!strcmp(a, "--prometheus")) o->prom_path = v;
        else if (!strcmp(a, "--metrics-port")) ok = parse_int(v, 0, 65535, &o->metrics_port);
        else if (!strcmp(a, "--epochs") && (ok = parse_int(v, 0, 1000, &n))) o->epochs = (int)n;
        else if (!strcmp(a, "--threads") && (ok = parse_int(v, 1, 1024, &n))) o->threads = (int)n;
        else if (!strcmp(a, "--batch-size")) ok = parse_int(v, 1, 1 << 20, &o->batch_size);
        else if (!strcmp(a, "--subset")) ok = parse_int(v, 0, INT64_MAX, &o->subset);
        else if (!strcmp(a, "--test-subset")) ok = parse_int(v, 0, INT64_MAX, &o->test_subset);
        else if (!strcmp(a, "--seed") && (ok = parse_int(v, 0, INT64_MAX, &n))) o->seed = (uint64_t)n;
        else if (!strcmp(a, "--lr")) ok = (o->lr = strtod(v, NULL)) > 0;
        else if (!strcmp(a, "--min-accuracy")) ok = (o->min_accuracy = strtod(v, NULL)) >= 0;
        else return usage();
        if (!ok) {
            fprintf(stderr, "fashion_mnist_cnn: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------- data */

/* dir/name into buf; false if it does not fit. */
static bool join_path(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

/* FashionMNIST(root, train): the IDX .gz pair, or NULL with a hint. */
static nn_dataset *load_split(const char *dir, const char *prefix) {
    char images[4096], labels[4096], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    bool ok = join_path(images, sizeof images, dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    ok = ok && join_path(labels, sizeof labels, dir, name);
    if (!ok || access(images, R_OK) != 0 || access(labels, R_OK) != 0) {
        fprintf(stderr,
                "fashion_mnist_cnn: Fashion-MNIST not found in %s (%s-*-ubyte.gz).\n"
                "  Install it with: apt-get install dataset-fashion-mnist\n"
                "  or point --data DIR (or NN_FASHION_MNIST) at a folder holding the four\n"
                "  IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
                "  t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz.\n",
                dir, prefix);
        return NULL;
    }
    nn_dataset *ds = nn_dataset_from_idx(images, labels);
    if (!ds) fail("reading the IDX files");
    return ds;
}

/* The first n samples of *ds (n 0 or >= len keeps all): replaces *ds. */
static int take_first(nn_dataset **ds, int64_t n) {
    int64_t len = nn_dataset_len(*ds);
    if (n <= 0 || n >= len) return 0;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return fail("out of memory");
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    nn_dataset *sub = nn_dataset_subset(*ds, idx, n);
    free(idx);
    if (!sub) return fail("nn_dataset_subset");
    nn_dataset_free(*ds);
    *ds = sub;
    return 0;
}

/* ToTensor() + Normalize(mean, std) with the training set's statistics, and
 * the 55000/5000 train/validation split (random_split). */
static int make_datasets(run *r, const options *o) {
    r->train_full = load_split(o->data_dir, "train");
    if (!r->train_full) return 1;
    r->test = load_split(o->data_dir, "t10k");
    if (!r->test) return 1;
    if (take_first(&r->train_full, o->subset) || take_first(&r->test, o->test_subset)) return 1;

    float mean[1], std[1];
    if (nn_dataset_compute_normalize(r->train_full) != NN_OK ||
        nn_dataset_get_normalize(r->train_full, mean, std, 1) != 1 ||
        nn_dataset_set_normalize(r->test, mean, std, 1) != NN_OK)
        return fail("normalization");
    printf("normalization: mean %.4f, std %.4f\n", mean[0], std[0]);

    nn_dataset *parts[2];
    double fractions[2] = {55.0 / 60.0, 5.0 / 60.0};
    if (nn_dataset_split(r->train_full, fractions, 2, o->seed, parts) != NN_OK)
        return fail("nn_dataset_split");
    r->train = parts[0];
    r->val = parts[1];
    return 0;
}

static int make_loaders(run *r, const options *o) {
    r->train_loader = nn_loader_new(r->train, o->batch_size, true, o->seed);
    r->val_loader = nn_loader_new(r->val, 256, false, 0);  /* eval batches can be larger */
    r->test_loader = nn_loader_new(r->test, 256, false, 0);
    return r->train_loader && r->val_loader && r->test_loader ? 0 : fail("nn_loader_new");
}

/* ------------------------------------------------------------------ model */

/* Appends the layers in order; the first failure is kept (append takes over
 * the reference even on failure, so nothing leaks). */
static nn_module *build_model(void) {
    nn_module *seq = nn_sequential_new();
    nn_module *layers[] = {
        nn_conv2d_new(1, 32, 3, 1, 1, true),  nn_relu_new(), nn_max_pool2d_new(2, 2, 0),
        nn_conv2d_new(32, 64, 3, 1, 1, true), nn_relu_new(), nn_max_pool2d_new(2, 2, 0),
        nn_flatten_new(1, -1),
        nn_linear_new(64 * 7 * 7, 128, true), nn_relu_new(),
        nn_linear_new(128, 10, true),
    };
    nn_status st = seq ? NN_OK : NN_ERR_NOMEM;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        if (st == NN_OK) st = nn_sequential_append(seq, layers[i]);
        else nn_module_free(layers[i]);
    }
    if (st != NN_OK) {
        nn_module_free(seq);
        return NULL;
    }
    return seq;
}

/* ---------------------------------------------------------------- training */

/* One pass over the training loader; *mean_loss is the sample-weighted mean. */
static int train_one_epoch(run *r, int epoch, double *mean_loss) {
    nn_meter *meter = nn_meter_new();
    if (!meter || nn_loader_reset(r->train_loader) != NN_OK ||
        nn_progress_begin_epoch(r->progress, epoch) != NN_OK) {
        nn_meter_free(meter);
        return fail("starting the epoch");
    }
    nn_tensor *x, *y;  /* borrowed from the loader until the next batch */
    int64_t batch = 0;
    int rc = 0;
    while (!rc && nn_loader_next(r->train_loader, &x, &y)) {
        double t0 = now_seconds();
        nn_scope *step = nn_scope_begin();   /* releases this step's temporaries */
        nn_optim_zero_grad(r->opt);
        nn_tensor *loss = nn_cross_entropy(nn_module_forward(r->model, x), y);
        if (!step || !loss || nn_backward(loss) != NN_OK || nn_optim_step(r->opt) != NN_OK) {
            rc = fail("training step");
        } else {
            double l = nn_tensor_item(loss);
            int64_t n = nn_tensor_size(y, 0);
            nn_meter_add(meter, l, (double)n);
            nn_progress_update(r->progress, batch++, l, n);
            if (r->monitor && nn_monitor_record_step(r->monitor, l, n, now_seconds() - t0) != NN_OK)
                rc = fail("recording metrics");
        }
        nn_scope_end(step);
    }
    if (!rc && nn_loader_status(r->train_loader) != NN_OK) rc = fail("loading a batch");
    *mean_loss = nn_meter_mean(meter);
    nn_meter_free(meter);
    return rc;
}

/* Mean loss and accuracy over a loader, in eval mode without grad
 * (model.eval(); with torch.no_grad(): ...). Uses `loaded` when given
 * (nn_model_predict, the inference entry point), else `model`. */
static int evaluate(nn_module *model, const nn_model *loaded, nn_loader *loader,
                    double *loss_out, double *acc_out) {
    bool grad_was = nn_set_grad_enabled(false);
    if (model) nn_module_train(model, false);
    nn_meter *loss_m = nn_meter_new(), *acc_m = nn_meter_new();
    int rc = loss_m && acc_m && nn_loader_reset(loader) == NN_OK ? 0 : fail("evaluate");
    nn_tensor *x, *y;
    while (!rc && nn_loader_next(loader, &x, &y)) {
        nn_scope *s = nn_scope_begin();
        nn_tensor *logits = loaded ? nn_model_predict(loaded, x) : nn_module_forward(model, x);
        nn_tensor *loss = nn_cross_entropy(logits, y);
        double acc, n = (double)nn_tensor_size(y, 0);
        if (!s || !loss || nn_accuracy(logits, y, &acc) != NN_OK) rc = fail("evaluation batch");
        else {
            nn_meter_add(loss_m, nn_tensor_item(loss), n);
            nn_meter_add(acc_m, acc, n);
        }
        nn_scope_end(s);
    }
    if (!rc && nn_loader_status(loader) != NN_OK) rc = fail("loading a batch");
    *loss_out = nn_meter_mean(loss_m);
    *acc_out = nn_meter_mean(acc_m);
    nn_meter_free(loss_m);
    nn_meter_free(acc_m);
    if (model) nn_module_train(model, true);
    nn_set_grad_enabled(grad_was);
    return rc;
}

/* --profile FILE: the profiler's report on stderr (top ops by self time,
 * per-module totals, GFLOP/s against the FMA peak, memory by category) and
 * its Chrome trace in FILE (open it in https://ui.perfetto.dev). */
static int finish_profile(const char *path) {
    if (nn_profiler_stop() != NN_OK || nn_profiler_write_report(2) != NN_OK ||
        nn_profiler_write_trace(path) != NN_OK)
        return fail("--profile");
    fprintf(stderr, "profile: trace written to %s\n", path);
    return 0;
}

static int train(run *r, const options *o) {
    if (o->profile_path && nn_profiler_start(NN_PROFILER_MEMORY) != NN_OK)
        return fail("nn_profiler_start");
    r->progress = nn_progress_new(2, o->epochs, nn_loader_num_batches(r->train_loader));
    if (!r->progress) return fail("nn_progress_new");
    if (o->metrics_path && !(r->log = nn_metrics_log_open(o->metrics_path)))
        return fail("opening the metrics log");
    /* Metrics for a monitoring system: a file written atomically, and/or
     * GET http://127.0.0.1:PORT/metrics while training runs. */
    if (o->prom_path || o->metrics_port >= 0) {
        if (!(r->monitor = nn_monitor_new(o->prom_path)) ||
            nn_monitor_set_label(r->monitor, "job", "fashion_mnist_cnn") != NN_OK)
            return fail("creating the monitor");
        if (o->metrics_port >= 0) {
            if (nn_monitor_serve(r->monitor, NULL, o->metrics_port) != NN_OK)
                return fail("serving metrics");
            fprintf(stderr, "metrics: http://127.0.0.1:%lld/metrics\n",
                    (long long)nn_monitor_port(r->monitor));
        }
    }
    for (int epoch = 0; epoch < o->epochs; epoch++) {
        double t0 = now_seconds(), train_loss = 0, val_loss = 0, val_acc = 0;
        if (train_one_epoch(r, epoch, &train_loss) ||
            evaluate(r->model, NULL, r->val_loader, &val_loss, &val_acc))
            return 1;
        double secs = now_seconds() - t0;
        char extra[128];
        snprintf(extra, sizeof extra, "val accuracy %.2f%%", 100 * val_acc);
        nn_progress_end_epoch(r->progress, extra);
        printf("epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.2f%% (%.1f s)\n",
               epoch + 1, o->epochs, train_loss, val_loss, 100 * val_acc, secs);
        fflush(stdout);
        if (r->log && nn_metrics_log_write(r->log, epoch, train_loss, val_loss, val_acc,
                                           o->lr, secs) != NN_OK)
            return fail("writing the metrics log");
        if (r->monitor && nn_monitor_record_epoch(r->monitor, epoch, train_loss, val_loss,
                                                  val_acc, o->lr, secs) != NN_OK)
            return fail("recording metrics");
    }
    return o->profile_path ? finish_profile(o->profile_path) : 0;
}

/* ------------------------------------------------------- save and reload */

/* Metadata an embedding application needs: the input normalization and the
 * class names (read back by examples/embed_inference.c). */
static int make_meta(run *r, double test_acc) {
    float mean[1], std[1];
    if (nn_dataset_get_normalize(r->test, mean, std, 1) != 1) return fail("reading normalization");
    double m = mean[0], s = std[0], shape[4] = {1, 1, 28, 28};
    r->meta = nn_meta_new();
    if (!r->meta ||
        nn_meta_set_string(r->meta, "description", "Fashion-MNIST CNN (examples/fashion_mnist_cnn.c)") ||
        nn_meta_set_array(r->meta, "normalize_mean", &m, 1) ||
        nn_meta_set_array(r->meta, "normalize_std", &s, 1) ||
        nn_meta_set_array(r->meta, "input_shape", shape, 4) ||
        nn_meta_set_strings(r->meta, "class_names", CLASS_NAMES, 10) ||
        nn_meta_set_number(r->meta, "test_accuracy", test_acc))
        return fail("building the metadata");
    return 0;
}

/* Save atomically, load it back and require the same test accuracy. */
static int save_and_check(run *r, const char *path, double test_acc) {
    if (make_meta(r, test_acc) || nn_model_save(r->model, path, r->meta, NULL) != NN_OK)
        return fail("saving the model");
    r->reloaded = nn_model_load(path, NULL);
    if (!r->reloaded) return fail("reloading the model");
    double loss, acc;
    if (evaluate(NULL, r->reloaded, r->test_loader, &loss, &acc)) return 1;
    printf("saved %s; reloaded model test accuracy: %.1f%%\n", path, 100 * acc);
    if (acc != test_acc) {
        fprintf(stderr, "fashion_mnist_cnn: reloaded model disagrees (%.4f vs %.4f)\n", acc,
                test_acc);
        return 1;
    }
    return 0;
}

static void free_run(run *r) {
    /* A last write, so the file also counts the test set's predictions
     * (no file: NN_ERR_STATE, nothing to do). */
    if (r->monitor && nn_monitor_write(r->monitor) == NN_ERR_IO)
        fprintf(stderr, "fashion_mnist_cnn: writing the metrics: %s\n", nn_last_error());
    nn_monitor_free(r->monitor);
    nn_model_free(r->reloaded);
    nn_meta_free(r->meta);
    nn_progress_free(r->progress);
    if (r->log && nn_metrics_log_close(r->log) != NN_OK)
        fprintf(stderr, "fashion_mnist_cnn: closing the metrics log: %s\n", nn_last_error());
    nn_optim_free(r->opt);
    nn_module_free(r->model);
    nn_loader_free(r->train_loader);
    nn_loader_free(r->val_loader);
    nn_loader_free(r->test_loader);
    nn_dataset_free(r->train);
    nn_dataset_free(r->val);
    nn_dataset_free(r->test);
    nn_dataset_free(r->train_full);
}

static int run_demo(run *r, const options *o) {
    if (nn_set_num_threads(o->threads) != NN_OK) return fail("nn_set_num_threads");
    nn_generator_seed(NULL, o->seed);  /* torch.manual_seed: reproducible weights */
    if (make_datasets(r, o) || make_loaders(r, o)) return 1;

    r->model = build_model();
    if (!r->model) return fail("building the model");
    r->opt = nn_optim_new_module(NN_OPTIM_TYPE_ADAM, r->model, o->lr);
    if (!r->opt) return fail("nn_optim_new_module");
    printf("libnn %s, %d threads: train %lld, val %lld, test %lld images, %lld parameters\n",
           nn_version(), nn_get_num_threads(), (long long)nn_dataset_len(r->train),
           (long long)nn_dataset_len(r->val), (long long)nn_dataset_len(r->test),
           (long long)nn_module_param_count(r->model));
    fflush(stdout);

    double t0 = now_seconds();
    if (train(r, o)) return 1;
    double test_loss, test_acc;
    if (evaluate(r->model, NULL, r->test_loader, &test_loss, &test_acc)) return 1;
    printf("training + evaluation time: %.1f s\n", now_seconds() - t0);
    printf("test accuracy: %.1f%%\n", 100 * test_acc);
    fflush(stdout);

    if (o->save_path && save_and_check(r, o->save_path, test_acc)) return 1;
    if (100 * test_acc < o->min_accuracy) {
        fprintf(stderr, "fashion_mnist_cnn: test accuracy %.1f%% below --min-accuracy %.1f%%\n",
                100 * test_acc, o->min_accuracy);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc;
    run r = {0};
    rc = run_demo(&r, &o);
    free_run(&r);
    return rc;
}
