/* int8 post-training quantization of the Fashion-MNIST CNN: accuracy, file
 * size and latency against the f32 model, then the int8 model saved with the
 * f32 model's metadata (embed_inference runs it unchanged).
 *
 * The PyTorch version, in the same order:
 *
 *   model = load("fashion_mnist_cnn.nnm")                   # the demo's f32 model
 *   print(accuracy(model, test))
 *   dyn = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
 *   stat = prepare(model); calibrate(stat, train[:8 batches]); convert(stat)
 *   print(accuracy(dyn, test), accuracy(stat, test))
 *   torch.save(stat.state_dict(), "fashion_mnist_cnn-int8.nnm")
 *
 * Here nn_quantize_dynamic / nn_quantize_static replace Linear and Conv2d in
 * place (both, unlike PyTorch's dynamic mode which leaves convolutions in
 * f32) and return a report: per layer, the largest difference between the
 * int8 layer and the f32 layer on the same input.
 *
 * Usage: quantize [--model PATH] [--data DIR] [--save PATH] [--threads N]
 *                 [--calib-batches N] [--test-subset N] [--reps N]
 * The model defaults to fashion_mnist_cnn.nnm (written by the
 * fashion_mnist_cnn example); the data directory to $NN_FASHION_MNIST, else
 * /usr/share/datasets/fashion-mnist. NN_EXAMPLE_SMOKE=1: 500 test images,
 * 2 calibration batches, few timing repetitions.
 */
#include <nn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct options {
    const char *model, *data, *save;
    int threads, reps;
    int64_t calib_batches, test_subset;
} options;

static int fail(const char *what) {
    fprintf(stderr, "quantize: %s: %s\n", what, nn_last_error());
    return 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, options *o) {
    const char *env = getenv("NN_FASHION_MNIST"), *smoke = getenv("NN_EXAMPLE_SMOKE");
    *o = (options){.model = "fashion_mnist_cnn.nnm",
                   .data = env && *env ? env : "/usr/share/datasets/fashion-mnist",
                   .save = "fashion_mnist_cnn-int8.nnm", .threads = 1, .reps = 200,
                   .calib_batches = 8};
    if (smoke && *smoke && strcmp(smoke, "0") != 0)
        o->test_subset = 500, o->calib_batches = 2, o->reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        bool ok = v != NULL;
        i++;
        if (!ok) break;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--save")) o->save = v;
        else if (!strcmp(a, "--threads") && (ok = parse_int(v, 1, 1024, &n))) o->threads = (int)n;
        else if (!strcmp(a, "--reps") && (ok = parse_int(v, 1, 1 << 20, &n))) o->reps = (int)n;
        else if (!strcmp(a, "--calib-batches")) ok = parse_int(v, 1, 1 << 20, &o->calib_batches);
        else if (!strcmp(a, "--test-subset")) ok = parse_int(v, 0, INT64_MAX, &o->test_subset);
        else ok = false;
        if (!ok) {
            fprintf(stderr, "usage: quantize [--model PATH] [--data DIR] [--save PATH] "
                            "[--threads N] [--calib-batches N] [--test-subset N] [--reps N]\n");
            return 2;
        }
    }
    return 0;
}

/* Fashion-MNIST split `prefix` ("train", "t10k") normalized with the
 * model's metadata (the training set's mean and std), first n images. */
static nn_dataset *load_split(const options *o, const char *prefix, const nn_meta *meta,
                              int64_t n) {
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", o->data, prefix);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", o->data, prefix);
    nn_dataset *ds = nn_dataset_from_idx(images, labels);
    if (!ds) return fail("reading Fashion-MNIST (--data DIR)"), NULL;
    const double *mean, *std;
    int64_t nm, ns;
    if (nn_meta_get_array(meta, "normalize_mean", &mean, &nm) != NN_OK ||
        nn_meta_get_array(meta, "normalize_std", &std, &ns) != NN_OK || nm != 1 || ns != 1) {
        fprintf(stderr, "quantize: the model has no normalize_mean/std metadata\n");
        nn_dataset_free(ds);
        return NULL;
    }
    float m = (float)mean[0], s = (float)std[0];
    if (nn_dataset_set_normalize(ds, &m, &s, 1) != NN_OK) {
        nn_dataset_free(ds);
        return fail("normalize"), NULL;
    }
    if (n > 0 && n < nn_dataset_len(ds)) {
        int64_t *idx = malloc((size_t)n * sizeof *idx);
        for (int64_t i = 0; idx && i < n; i++) idx[i] = i;
        nn_dataset *sub = idx ? nn_dataset_subset(ds, idx, n) : NULL;
        free(idx);
        nn_dataset_free(ds);
        if (!sub) return fail("subset"), NULL;
        ds = sub;
    }
    return ds;
}

/* Test accuracy of m (eval mode, no grad). */
static int accuracy(nn_module *m, nn_loader *test, double *acc) {
    bool grad = nn_set_grad_enabled(false);
    nn_module_train(m, false);
    double correct = 0, total = 0;
    nn_tensor *x, *y;
    int rc = nn_loader_reset(test) == NN_OK ? 0 : fail("loader");
    while (!rc && nn_loader_next(test, &x, &y)) {
        nn_scope *s = nn_scope_begin();
        double a, n = (double)nn_tensor_size(y, 0);
        if (nn_accuracy(nn_module_forward(m, x), y, &a) != NN_OK) rc = fail("evaluation");
        correct += a * n, total += n;
        nn_scope_end(s);
    }
    nn_set_grad_enabled(grad);
    *acc = total > 0 ? correct / total : 0;
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median latency (seconds) of m's forward on the first `batch` test images. */
static double latency(nn_module *m, nn_dataset *test, int64_t batch, int reps) {
    nn_loader *l = nn_loader_new(test, batch, false, 0);
    nn_tensor *x = NULL, *y;
    double med = -1;
    bool grad = nn_set_grad_enabled(false);
    if (l && nn_loader_next(l, &x, &y)) {
        double *t = malloc((size_t)reps * sizeof *t);
        for (int r = -2; t && r < reps; r++) { /* 2 warm-up runs */
            nn_scope *s = nn_scope_begin();
            double t0 = now_seconds();
            nn_module_forward(m, x);
            double dt = now_seconds() - t0;
            nn_scope_end(s);
            if (r >= 0) t[r] = dt;
        }
        if (t) qsort(t, (size_t)reps, sizeof *t, cmp_double), med = t[reps / 2];
        free(t);
    }
    nn_set_grad_enabled(grad);
    nn_loader_free(l);
    return med;
}

static size_t file_size(nn_module *m, const nn_meta *meta) {
    void *data = NULL;
    size_t size = 0;
    if (nn_model_save_buffer(m, meta, NULL, &data, &size) != NN_OK) return 0;
    nn_free(data);
    return size;
}

int main(int argc, char **argv) {
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc;
    nn_set_num_threads(o.threads);
    printf("backend: %s\n", nn_backend_info());
    /* Three copies of the f32 model: f32, dynamic, static. */
    nn_model *f32 = nn_model_load(o.model, NULL), *dyn = nn_model_load(o.model, NULL),
             *sta = nn_model_load(o.model, NULL);
    if (!f32 || !dyn || !sta) {
        fprintf(stderr, "quantize: cannot load %s (%s); train it first with fashion_mnist_cnn\n",
                o.model, nn_last_error());
        nn_model_free(f32), nn_model_free(dyn), nn_model_free(sta);
        return 1;
    }
    const nn_meta *meta = nn_model_meta(f32);
    nn_dataset *test = load_split(&o, "t10k", meta, o.test_subset);
    nn_dataset *calib = test ? load_split(&o, "train", meta, 0) : NULL;
    nn_loader *test_l = calib ? nn_loader_new(test, 256, false, 0) : NULL;
    nn_loader *calib_l = test_l ? nn_loader_new(calib, 64, true, 1) : NULL;
    char *rep_dyn = NULL, *rep_sta = NULL;
    double acc[3] = {0};
    if (!calib_l) rc = 1;

    /* The report's calibration batch: 64 training images. */
    nn_tensor *cx = NULL, *cy;
    if (!rc && (nn_loader_reset(calib_l) != NN_OK || !nn_loader_next(calib_l, &cx, &cy)))
        rc = fail("calibration batch");
    if (!rc) {
        nn_tensor_retain(cx); /* kept past the loader's next batch */
        double t0 = now_seconds();
        if (nn_quantize_dynamic(nn_model_module(dyn), cx, &rep_dyn) != NN_OK)
            rc = fail("nn_quantize_dynamic");
        printf("\n== dynamic int8 (%.0f ms) ==\n%s", 1e3 * (now_seconds() - t0),
               rep_dyn ? rep_dyn : "");
        nn_tensor_free(cx);
    }
    if (!rc) {
        double t0 = now_seconds();
        if (nn_quantize_static(nn_model_module(sta), calib_l, o.calib_batches, &rep_sta) != NN_OK)
            rc = fail("nn_quantize_static");
        printf("\n== static int8, %lld calibration batches of 64 (%.0f ms) ==\n%s",
               (long long)o.calib_batches, 1e3 * (now_seconds() - t0), rep_sta ? rep_sta : "");
    }
    nn_model *models[3] = {f32, dyn, sta};
    static const char *const names[3] = {"f32", "int8 dynamic", "int8 static"};
    for (int i = 0; !rc && i < 3; i++) rc = accuracy(nn_model_module(models[i]), test_l, &acc[i]);
    if (!rc) {
        printf("\n%-14s %10s %12s %14s %14s\n", "model", "accuracy", "file bytes", "batch 1 (us)",
               "batch 256 (ms)");
        const size_t f32_size = file_size(nn_model_module(f32), meta);
        double lat1[3], lat256[3];
        for (int i = 0; i < 3; i++) {
            nn_module *m = nn_model_module(models[i]);
            lat1[i] = latency(m, test, 1, o.reps);
            lat256[i] = latency(m, test, 256, o.reps > 20 ? 20 : o.reps);
            size_t size = file_size(m, meta);
            printf("%-14s %9.2f%% %12zu %14.1f %14.2f", names[i], 100 * acc[i], size,
                   1e6 * lat1[i], 1e3 * lat256[i]);
            if (i) printf("   size %.2fx, b1 %.2fx, b256 throughput %.2fx", (double)size / f32_size,
                          lat1[i] / lat1[0], lat256[0] / lat256[i]);
            printf("\n");
        }
        printf("accuracy change: dynamic %+.2f points, static %+.2f points (%lld test images)\n",
               100 * (acc[1] - acc[0]), 100 * (acc[2] - acc[0]),
               (long long)nn_dataset_len(test));
    }
    /* The static int8 model, with the f32 model's metadata: embed_inference
     * and nn_model_load read it like any other model file. */
    if (!rc && o.save) {
        if (nn_model_save(nn_model_module(sta), o.save, meta, NULL) != NN_OK) rc = fail("save");
        else printf("saved %s\n", o.save);
    }
    nn_free(rep_dyn), nn_free(rep_sta);
    nn_loader_free(test_l), nn_loader_free(calib_l);
    nn_dataset_free(test), nn_dataset_free(calib);
    nn_model_free(f32), nn_model_free(dyn), nn_model_free(sta);
    return rc;
}
