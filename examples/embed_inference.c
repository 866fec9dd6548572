/* Embedding a trained model: load a .nnm file, classify images, time it.
 *
 *   embed_inference MODEL IMAGES.idx[.gz] [LABELS.idx[.gz]]
 *
 * This is the part of libnn an application ships with: no optimizer, no
 * loss, no autograd, only nn_model_load + nn_model_predict. The PyTorch
 * version would be:
 *
 *   model = torch.jit.load(path); model.eval()
 *   with torch.no_grad():
 *       x = (images / 255 - mean) / std            # metadata saved with the model
 *       pred = model(x).argmax(1)
 *
 * The model's metadata (written by fashion_mnist_cnn) supplies the input
 * normalization ("normalize_mean", "normalize_std"), the expected input
 * shape ("input_shape") and the class names ("class_names"); each is
 * optional. The IDX files are read here with zlib (gzip or plain), with every
 * header field checked, the way an application reads its own inputs.
 * Latency is the median over single-image calls (batch 1) on one thread.
 */
#include <nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

enum { MAX_SHOWN = 10, MAX_TIMED = 200, EVAL_BATCH = 256 };

static int fail(const char *what) {
    fprintf(stderr, "embed_inference: %s: %s\n", what, nn_last_error());
    return 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------- IDX files */

/* A u8 IDX array: dims[0] items of dims[1] x dims[2] (labels: ndim 1). */
typedef struct idx_array {
    uint8_t *data;
    int64_t dims[3];
    int ndim;
} idx_array;

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Read exactly n bytes; false on a short read or an error. */
static bool read_exact(gzFile f, void *buf, size_t n) {
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        int got = gzread(f, buf, chunk);
        if (got <= 0) return false;
        buf = (uint8_t *)buf + got;
        n -= (size_t)got;
    }
    return true;
}

/* Parse the header (magic 0x0000 08 ndim: u8 data) and the payload of an
 * IDX file with `ndim` dims; every size is checked before it is used. */
static int read_idx_body(gzFile f, const char *path, int ndim, idx_array *a) {
    uint8_t head[16];
    if (!read_exact(f, head, 4 + 4 * (size_t)ndim)) {
        fprintf(stderr, "embed_inference: %s: truncated IDX header\n", path);
        return 1;
    }
    if (be32(head) != (0x0800u | (uint32_t)ndim)) {
        fprintf(stderr, "embed_inference: %s: not a u8 IDX file with %d dims (magic 0x%08x)\n",
                path, ndim, (unsigned)be32(head));
        return 1;
    }
    uint64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        a->dims[i] = be32(head + 4 + 4 * i);
        if (a->dims[i] == 0 || total > (UINT64_C(1) << 34) / (uint64_t)a->dims[i]) {
            fprintf(stderr, "embed_inference: %s: dimension %d = %lld is zero or too large\n",
                    path, i, (long long)a->dims[i]);
            return 1;
        }
        total *= (uint64_t)a->dims[i];
    }
    a->ndim = ndim;
    a->data = malloc((size_t)total);
    uint8_t extra;
    if (!a->data || !read_exact(f, a->data, (size_t)total) || gzread(f, &extra, 1) != 0) {
        fprintf(stderr, "embed_inference: %s: %s\n", path,
                a->data ? "truncated data or trailing bytes" : "out of memory");
        return 1;
    }
    return 0;
}

static int read_idx(const char *path, int ndim, idx_array *a) {
    gzFile f = gzopen(path, "rb");  /* reads plain files too */
    if (!f) {
        fprintf(stderr, "embed_inference: cannot open %s\n", path);
        return 1;
    }
    int rc = read_idx_body(f, path, ndim, a);
    gzclose(f);
    return rc;
}

/* ----------------------------------------------------------- preprocessing */

/* The input transform saved with the model (identity when absent). */
typedef struct preprocess {
    double mean, std;
    int64_t rows, cols;  /* expected image size, 0 when unknown */
} preprocess;

static int read_preprocess(const nn_meta *meta, preprocess *p) {
    *p = (preprocess){.mean = 0.0, .std = 1.0};
    const double *v;
    int64_t n;
    if (nn_meta_kind_of(meta, "normalize_mean") == NN_META_KIND_ARRAY &&
        nn_meta_kind_of(meta, "normalize_std") == NN_META_KIND_ARRAY) {
        if (nn_meta_get_array(meta, "normalize_mean", &v, &n) || n != 1) return 1;
        p->mean = v[0];
        if (nn_meta_get_array(meta, "normalize_std", &v, &n) || n != 1 || !(v[0] > 0)) return 1;
        p->std = v[0];
    }
    if (nn_meta_kind_of(meta, "input_shape") == NN_META_KIND_ARRAY) {
        if (nn_meta_get_array(meta, "input_shape", &v, &n) || n != 4) return 1;
        p->rows = (int64_t)v[2];
        p->cols = (int64_t)v[3];
    }
    return 0;
}

/* Images first..first+count-1 as f32 [count, 1, rows, cols]: x / 255, then
 * (x - mean) / std, as ToTensor() + Normalize() did in training. */
static nn_tensor *make_batch(const idx_array *img, const preprocess *p, int64_t first,
                             int64_t count) {
    int64_t pixels = img->dims[1] * img->dims[2];
    int64_t shape[4] = {count, 1, img->dims[1], img->dims[2]};
    nn_tensor *x = nn_tensor_empty(NN_DTYPE_F32, shape, 4);
    float *dst = x ? nn_tensor_data(x) : NULL;
    if (!dst) return NULL;
    const uint8_t *src = img->data + first * pixels;
    for (int64_t i = 0; i < count * pixels; i++)
        dst[i] = (float)(((double)src[i] / 255.0 - p->mean) / p->std);
    return x;
}

/* ------------------------------------------------------------- inference */

static const char *class_name(const nn_meta *meta, int64_t c, char *buf, size_t cap) {
    int64_t n = nn_meta_strings_count(meta, "class_names");
    if (n > 0 && c >= 0 && c < n) return nn_meta_strings_get(meta, "class_names", c);
    nn_clear_error();  /* no names: show the index */
    snprintf(buf, cap, "class %lld", (long long)c);
    return buf;
}

/* Predicted classes of every image, in batches; pred[i] receives image i's class. */
static int predict_all(const nn_model *model, const idx_array *img, const preprocess *p,
                       int64_t *pred) {
    int64_t n = img->dims[0];
    for (int64_t first = 0; first < n; first += EVAL_BATCH) {
        int64_t count = n - first < EVAL_BATCH ? n - first : EVAL_BATCH;
        nn_scope *s = nn_scope_begin();
        nn_tensor *classes = nn_argmax(nn_model_predict(model, make_batch(img, p, first, count)),
                                       1, false);  /* i64 [count] */
        nn_status st = classes ? nn_tensor_copy_to(classes, pred + first,
                                                   (size_t)count * sizeof *pred)
                               : nn_last_status();
        nn_scope_end(s);
        if (st != NN_OK) return fail("prediction");
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall time of nn_model_predict on one image (after one warm-up call). */
static int time_single(const nn_model *model, const idx_array *img, const preprocess *p,
                       double *median_ms) {
    int64_t n = img->dims[0] < MAX_TIMED ? img->dims[0] : MAX_TIMED;
    double times[MAX_TIMED];
    for (int64_t i = -1; i < n; i++) {
        nn_scope *s = nn_scope_begin();
        nn_tensor *x = make_batch(img, p, i < 0 ? 0 : i, 1);  /* [1, 1, rows, cols] */
        double t0 = now_seconds();
        nn_tensor *y = nn_model_predict(model, x);
        double t1 = now_seconds();
        nn_scope_end(s);
        if (!y) return fail("prediction");
        if (i >= 0) times[i] = 1e3 * (t1 - t0);
    }
    qsort(times, (size_t)n, sizeof times[0], cmp_double);
    *median_ms = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    return 0;
}

static void print_predictions(const nn_meta *meta, const idx_array *labels, const int64_t *pred,
                              int64_t n) {
    char b1[32], b2[32];
    for (int64_t i = 0; i < n && i < MAX_SHOWN; i++) {
        printf("image %lld: %s", (long long)i, class_name(meta, pred[i], b1, sizeof b1));
        if (labels) printf("  (label: %s)", class_name(meta, labels->data[i], b2, sizeof b2));
        printf("\n");
    }
}

static int run(const char *model_path, const char *images_path, const char *labels_path,
               nn_model *model, idx_array *img, idx_array *lab, int64_t **pred) {
    preprocess p;
    if (read_preprocess(nn_model_meta(model), &p)) {
        fprintf(stderr, "embed_inference: %s: bad normalization or input_shape metadata\n",
                model_path);
        return 1;
    }
    if (read_idx(images_path, 3, img)) return 1;
    if (p.rows && (img->dims[1] != p.rows || img->dims[2] != p.cols)) {
        fprintf(stderr, "embed_inference: %s: images are %lldx%lld, the model expects %lldx%lld\n",
                images_path, (long long)img->dims[1], (long long)img->dims[2],
                (long long)p.rows, (long long)p.cols);
        return 1;
    }
    if (labels_path && read_idx(labels_path, 1, lab)) return 1;
    if (labels_path && lab->dims[0] != img->dims[0]) {
        fprintf(stderr, "embed_inference: %lld labels for %lld images\n",
                (long long)lab->dims[0], (long long)img->dims[0]);
        return 1;
    }
    int64_t n = img->dims[0];
    *pred = malloc((size_t)n * sizeof **pred);
    if (!*pred) return fail("out of memory");
    if (predict_all(model, img, &p, *pred)) return 1;
    print_predictions(nn_model_meta(model), labels_path ? lab : NULL, *pred, n);
    if (labels_path) {
        int64_t correct = 0;
        for (int64_t i = 0; i < n; i++) correct += (*pred)[i] == lab->data[i];
        printf("accuracy: %.2f%% (%lld of %lld)\n", 100.0 * (double)correct / (double)n,
               (long long)correct, (long long)n);
    }
    double median_ms;
    if (time_single(model, img, &p, &median_ms)) return 1;
    printf("latency: %.3f ms per image (batch 1, median of %lld, %d thread)\n", median_ms,
           (long long)(n < MAX_TIMED ? n : MAX_TIMED), nn_get_num_threads());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: embed_inference MODEL IMAGES.idx[.gz] [LABELS.idx[.gz]]\n");
        return 2;
    }
    nn_set_grad_enabled(false);  /* torch.no_grad() for the whole program */
    nn_model *model = nn_model_load(argv[1], NULL);
    if (!model) {
        fprintf(stderr, "embed_inference: cannot load model %s: %s\n", argv[1], nn_last_error());
        return 1;
    }
    const char *desc = nn_model_meta(model) ? nn_meta_get_string(nn_model_meta(model), "description")
                                            : NULL;
    nn_clear_error();
    printf("model %s: %s, %lld parameters\n", argv[1], desc ? desc : "(no description)",
           (long long)nn_module_param_count(nn_model_module(model)));
    idx_array img = {0}, lab = {0};
    int64_t *pred = NULL;
    int rc = run(argv[1], argv[2], argc > 3 ? argv[3] : NULL, model, &img, &lab, &pred);
    free(pred);
    free(img.data);
    free(lab.data);
    nn_model_free(model);
    return rc;
}
