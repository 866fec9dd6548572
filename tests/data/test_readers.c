/* CSV and image-folder readers, transforms, metrics, meter, progress and
 * the metrics log, each against hand-computed values. */
#include "testutil.h"
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *fx(const char *name) {
    char rel[512];
    snprintf(rel, sizeof rel, "data/fixtures/%s", name);
    return tu_data_path(rel);
}

/* Sample i of ds as floats (after transforms) into out; returns numel. */
static int64_t sample(nn_dataset *ds, int64_t i, float *out, int64_t cap, int64_t *label) {
    nn_tensor *x, *y;
    TU_OK(nn_dataset_get(ds, i, &x, &y));
    int64_t n = nn_tensor_numel(x);
    assert_true(n <= cap);
    memcpy(out, nn_tensor_data(x), sizeof(float) * (size_t)n);
    if (label) *label = (int64_t)nn_tensor_item(y);
    nn_tensor_free(x);
    nn_tensor_free(y);
    return n;
}

/* ------------------------------------------------------------------ CSV */

static void test_csv_good(void **s) {
    (void)s;
    int64_t dropped = -1, filled = -1;
    nn_dataset *ds = TU_NN(nn_dataset_from_csv(fx("good.csv"), true, ',', true, 2,
                                               NN_CSV_POLICY_ERROR, 0, &dropped, &filled));
    assert_int_equal(dropped, 0);
    assert_int_equal(filled, 0);
    assert_int_equal(nn_dataset_len(ds), 3);
    int64_t shape[2];
    assert_int_equal(nn_dataset_sample_shape(ds, shape, 2), 1);
    assert_int_equal(shape[0], 3);
    float v[3];
    int64_t lab;
    sample(ds, 1, v, 3, &lab);
    assert_float_equal(v[0], 4.5f, 0);
    assert_float_equal(v[1], -10.0f, 0);
    assert_float_equal(v[2], 6.0f, 0);
    assert_int_equal(lab, 1);
    assert_int_equal(nn_dataset_num_classes(ds), 3);
    nn_dataset_free(ds);
    /* No header, ';' delimiter, CRLF line ends, no label column. */
    ds = TU_NN(nn_dataset_from_csv(fx("semicolon.csv"), false, ';', false, 0,
                                   NN_CSV_POLICY_ERROR, 0, NULL, NULL));
    assert_int_equal(nn_dataset_len(ds), 2);
    sample(ds, 1, v, 3, &lab);
    assert_float_equal(v[0], 4, 0);
    assert_float_equal(v[2], 6, 0);
    assert_int_equal(lab, 0);
    nn_dataset_free(ds);
}

static void test_csv_policies(void **s) {
    (void)s;
    int64_t dropped, filled;
    nn_clear_error();
    assert_null(nn_dataset_from_csv(fx("bad-cells.csv"), true, ',', true, 2, NN_CSV_POLICY_ERROR,
                                    0, &dropped, &filled));
    tu_expect_error(NN_ERR_FORMAT, "line 3 column 1: 'abc' is not a number");
    nn_dataset *ds = TU_NN(nn_dataset_from_csv(fx("bad-cells.csv"), true, ',', true, 2,
                                               NN_CSV_POLICY_DROP, 0, &dropped, &filled));
    assert_int_equal(dropped, 2);
    assert_int_equal(filled, 0);
    assert_int_equal(nn_dataset_len(ds), 2);
    float v[2];
    sample(ds, 1, v, 2, NULL);
    assert_float_equal(v[0], 7, 0);
    nn_dataset_free(ds);
    ds = TU_NN(nn_dataset_from_csv(fx("bad-cells.csv"), true, ',', true, 2, NN_CSV_POLICY_FILL,
                                   -1.5, &dropped, &filled));
    assert_int_equal(dropped, 0);
    assert_int_equal(filled, 2);
    assert_int_equal(nn_dataset_len(ds), 4);
    sample(ds, 1, v, 2, NULL);
    assert_float_equal(v[1], -1.5f, 0);
    sample(ds, 2, v, 2, NULL);
    assert_float_equal(v[0], 5, 0);
    assert_float_equal(v[1], -1.5f, 0);
    nn_dataset_free(ds);
    /* A bad label fails under FILL, drops under DROP. */
    assert_null(nn_dataset_from_csv(fx("bad-label.csv"), true, ',', true, 1, NN_CSV_POLICY_FILL,
                                    0, NULL, NULL));
    tu_expect_error(NN_ERR_FORMAT, "line 3 column 1: label 'x' is not an integer");
    ds = TU_NN(nn_dataset_from_csv(fx("bad-label.csv"), true, ',', true, 1, NN_CSV_POLICY_DROP, 0,
                                   &dropped, NULL));
    assert_int_equal(dropped, 1);
    nn_dataset_free(ds);
}

static void test_csv_malformed(void **s) {
    (void)s;
    int64_t dropped;
    assert_null(nn_dataset_from_csv(fx("ragged.csv"), true, ',', true, 2, NN_CSV_POLICY_DROP, 0,
                                    NULL, NULL));
    tu_expect_error(NN_ERR_FORMAT, "line 3 has 2 fields, expected 3");
    assert_null(nn_dataset_from_csv(fx("empty.csv"), true, ',', true, 0, NN_CSV_POLICY_ERROR, 0,
                                    NULL, NULL));
    tu_expect_error(NN_ERR_FORMAT, "the file is empty");
    assert_null(nn_dataset_from_csv(fx("header-only.csv"), true, ',', true, 2,
                                    NN_CSV_POLICY_ERROR, 0, &dropped, NULL));
    tu_expect_error(NN_ERR_FORMAT, "no data rows");
    assert_null(nn_dataset_from_csv(fx("good.csv"), true, ',', true, 4, NN_CSV_POLICY_ERROR, 0,
                                    NULL, NULL));
    tu_expect_error(NN_ERR_RANGE, "label_column 4 outside [0, 4)");
    assert_null(nn_dataset_from_csv(fx("missing.csv"), true, ',', true, 0, NN_CSV_POLICY_ERROR,
                                    0, NULL, NULL));
    tu_expect_error(NN_ERR_NOT_FOUND, "cannot open");
    assert_null(nn_dataset_from_csv(fx("good.csv"), true, ',', true, 0, (nn_csv_policy)7, 0,
                                    NULL, NULL));
    tu_expect_error(NN_ERR_INVALID, "unknown policy 7");
}

static int csv_body(void *ctx) {
    (void)ctx;
    nn_dataset *ds = nn_dataset_from_csv(fx("bad-cells.csv"), true, ',', true, 2,
                                         NN_CSV_POLICY_FILL, 0, NULL, NULL);
    if (!ds) return 1;
    nn_dataset_free(ds);
    return 0;
}

static void test_csv_oom(void **s) {
    (void)s;
    assert_true(tu_oom_sweep(csv_body, NULL) > 3);
}

/* --------------------------------------------------------- image folder */

static void test_image_folder(void **s) {
    (void)s;
    nn_clear_error();
    nn_dataset *ds = nn_dataset_from_image_folder(fx("imgs"), 2, 4, 3);
#ifndef NN_HAVE_IMAGE_FOLDER
    assert_null(ds);
    tu_expect_error(NN_ERR_UNSUPPORTED, "without libpng");
    return;
#endif
    assert_non_null(ds);
    assert_int_equal(nn_dataset_len(ds), 3); /* notes.txt skipped */
    assert_int_equal(nn_dataset_num_classes(ds), 2);
    assert_string_equal(nn_dataset_class_name(ds, 0), "cat");
    assert_string_equal(nn_dataset_class_name(ds, 1), "dog");
    TU_OK(nn_dataset_set_scale(ds, false));
    float v[3 * 2 * 4];
    int64_t lab;
    /* cat/a.png at its own size: pixel (x, y) = (60x, 100y, 7). */
    sample(ds, 0, v, 24, &lab);
    assert_int_equal(lab, 0);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++) {
            assert_float_equal(v[(0 * 2 + y) * 4 + x], 60 * x, 0);
            assert_float_equal(v[(1 * 2 + y) * 4 + x], 100 * y, 0);
            assert_float_equal(v[(2 * 2 + y) * 4 + x], 7, 0);
        }
    sample(ds, 1, v, 24, &lab); /* cat/b.jpg: flat 128 (+-1 for JPEG) */
    for (int i = 0; i < 24; i++) assert_float_equal(v[i], 128, 1);
    sample(ds, 2, v, 24, &lab); /* dog/c.png gray [[0,255],[255,0]] upscaled 2x4 */
    assert_int_equal(lab, 1);
    /* Row 0 of the 2x4 result samples source row 0: x -> sx = (x+.5)/2-.5
     * clamped: 0, .25, .75, 1 (clamped to 1) -> 0, 64 (63.75), 191 (191.25), 255. */
    assert_float_equal(v[0], 0, 0);
    assert_float_equal(v[1], 64, 0);
    assert_float_equal(v[2], 191, 0);
    assert_float_equal(v[3], 255, 0);
    nn_dataset_free(ds);
    /* Gray conversion of the same folder. */
    ds = TU_NN(nn_dataset_from_image_folder(fx("imgs"), 2, 2, 1));
    int64_t shape[3];
    assert_int_equal(nn_dataset_sample_shape(ds, shape, 3), 3);
    assert_int_equal(shape[0], 1);
    nn_dataset_free(ds);
    /* Corrupt files: a clear error naming the file. */
    assert_null(nn_dataset_from_image_folder(fx("badimgs"), 4, 4, 3));
    tu_expect_error(NN_ERR_FORMAT, "broken.jpg' is a corrupt JPEG");
    assert_null(nn_dataset_from_image_folder(fx("nothing-here"), 4, 4, 3));
    tu_expect_error(NN_ERR_NOT_FOUND, "cannot open directory");
    assert_null(nn_dataset_from_image_folder(fx("imgs"), 4, 4, 2));
    tu_expect_error(NN_ERR_INVALID, "channels = 2");
}

static void test_image_folder_png_corrupt(void **s) {
    (void)s;
#ifndef NN_HAVE_IMAGE_FOLDER
    skip();
#endif
    /* broken.jpg sorts before broken.png: decode the PNG alone via a subset-free path. */
    char dir[] = "/tmp/nn_data_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[256], dst[300];
    snprintf(sub, sizeof sub, "%s/c", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(dst, sizeof dst, "%s/broken.png", sub);
    FILE *in = fopen(fx("badimgs/x/broken.png"), "rb"), *out = fopen(dst, "wb");
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    assert_null(nn_dataset_from_image_folder(dir, 4, 4, 3));
    tu_expect_error(NN_ERR_FORMAT, "broken.png' is");
    unlink(dst);
    rmdir(sub);
    rmdir(dir);
}

static int image_body(void *ctx) {
    (void)ctx;
    nn_dataset *ds = nn_dataset_from_image_folder(fx("imgs"), 3, 3, 3);
    if (!ds) return 1;
    nn_dataset_free(ds);
    return 0;
}

static void test_image_folder_oom(void **s) {
    (void)s;
#ifndef NN_HAVE_IMAGE_FOLDER
    skip();
#endif
    assert_true(tu_oom_sweep(image_body, NULL) > 5);
}

/* ----------------------------------------------------------- transforms */

/* x [2, 1, 2, 3] u8: sample 0 = 0..5, sample 1 = 10..15; labels 0, 2. */
static nn_dataset *tiny_images(void) {
    int64_t shape[4] = {2, 1, 2, 3}, n = 2;
    uint8_t px[12] = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
    int64_t lab[2] = {0, 2};
    nn_tensor *x = nn_tensor_from_data(NN_DTYPE_U8, shape, 4, px);
    nn_tensor *y = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, lab);
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y));
    nn_tensor_free(x);
    nn_tensor_free(y);
    return ds;
}

static void test_transforms(void **s) {
    (void)s;
    nn_dataset *ds = tiny_images();
    float v[6];
    sample(ds, 1, v, 6, NULL); /* u8 data is scaled by default */
    assert_float_equal(v[0], 10 / 255.0f, 1e-7);
    TU_OK(nn_dataset_set_scale(ds, false));
    /* mean/std over all 12 pixels: mean 7.5, population var = 32.9166.. */
    TU_OK(nn_dataset_compute_normalize(ds));
    float mean, std;
    assert_int_equal(nn_dataset_get_normalize(ds, &mean, &std, 1), 1);
    assert_float_equal(mean, 7.5, 1e-6);
    double var = 0;
    for (int i = 0; i < 12; i++) {
        double p = i < 6 ? i : i + 4;
        var += (p - 7.5) * (p - 7.5) / 12;
    }
    assert_float_equal(std, sqrt(var), 1e-5);
    sample(ds, 0, v, 6, NULL);
    assert_float_equal(v[2], (2 - 7.5) / sqrt(var), 1e-5);
    float m2 = 1, s2 = 2;
    TU_OK(nn_dataset_set_normalize(ds, &m2, &s2, 1));
    sample(ds, 0, v, 6, NULL);
    assert_float_equal(v[5], 2.0f, 0);
    assert_int_equal(nn_dataset_set_normalize(ds, &m2, &s2, 3), NN_ERR_SHAPE);
    s2 = 0;
    assert_int_equal(nn_dataset_set_normalize(ds, &m2, &s2, 1), NN_ERR_INVALID);
    TU_OK(nn_dataset_set_normalize(ds, NULL, NULL, 0));
    /* Flip with p = 1: each row reversed. */
    TU_OK(nn_dataset_set_random_flip(ds, 1.0, 9));
    sample(ds, 0, v, 6, NULL);
    float flipped[6] = {2, 1, 0, 5, 4, 3};
    assert_memory_equal(v, flipped, sizeof v);
    TU_OK(nn_dataset_set_random_flip(ds, 0.0, 9));
    /* Crop with padding 1: the window is the image shifted by (dy-1, dx-1),
     * zeros outside; every pixel equals the source at that shift. */
    TU_OK(nn_dataset_set_random_crop(ds, 1, 4));
    int shifts_seen = 0;
    nn_loader *l = TU_NN(nn_loader_new(ds, 2, false, 0));
    for (int epoch = 0; epoch < 8; epoch++) {
        nn_tensor *x, *y;
        TU_OK(nn_loader_reset(l));
        assert_true(nn_loader_next(l, &x, &y));
        const float *p = nn_tensor_data(x);
        int found = 0;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int ok = 1;
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 3; j++) {
                        int si = i + dy, sj = j + dx;
                        float want = (si >= 0 && si < 2 && sj >= 0 && sj < 3) ? si * 3 + sj : 0;
                        if (p[i * 3 + j] != want) ok = 0;
                    }
                found += ok;
                if (ok && (dy || dx)) shifts_seen++;
            }
        assert_true(found >= 1);
    }
    assert_true(shifts_seen > 0); /* not always the identity window */
    nn_loader_free(l);
    /* one-hot labels */
    TU_OK(nn_dataset_set_random_crop(ds, 0, 0));
    TU_OK(nn_dataset_set_one_hot(ds, 3));
    nn_tensor *x, *y;
    TU_OK(nn_dataset_get(ds, 1, &x, &y));
    assert_int_equal(nn_tensor_dtype(y), NN_DTYPE_F32);
    float oh[3] = {0, 0, 1};
    assert_memory_equal(nn_tensor_data(y), oh, sizeof oh);
    nn_tensor_free(x);
    nn_tensor_free(y);
    TU_OK(nn_dataset_set_one_hot(ds, 2)); /* label 2 does not fit */
    assert_int_equal(nn_dataset_get(ds, 1, &x, &y), NN_ERR_RANGE);
    tu_expect_error(NN_ERR_RANGE, "label 2 >= one-hot classes 2");
    nn_dataset_free(ds);
    /* Flip needs images. */
    int64_t shape[2] = {3, 4};
    nn_tensor *t = nn_tensor_zeros(NN_DTYPE_F32, shape, 2);
    ds = TU_NN(nn_dataset_from_tensors(t, NULL));
    nn_tensor_free(t);
    assert_int_equal(nn_dataset_set_random_flip(ds, 0.5, 1), NN_ERR_SHAPE);
    nn_dataset_free(ds);
}

/* -------------------------------------------------------------- metrics */

static void test_metrics(void **s) {
    (void)s;
    /* 4 samples, 3 classes. argmax: 1, 0 (tie 0/2 -> first), 2, 1. */
    int64_t ls[2] = {4, 3}, n = 4;
    float lg[12] = {0.1f, 0.7f, 0.2f, 0.5f, 0.0f, 0.5f, 0.0f, 0.1f, 0.9f, 0.3f, 0.4f, 0.3f};
    int64_t lab[4] = {1, 2, 2, 0};
    nn_tensor *logits = tu_tensor(ls, 2, lg);
    nn_tensor *labels = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, lab);
    double acc;
    TU_OK(nn_accuracy(logits, labels, &acc));
    assert_float_equal(acc, 0.5, 1e-12);
    /* top-2: row0 label1 rank0 ✓; row1 label2 (tie with class 0 at lower
     * index) rank1 ✓; row2 ✓; row3 label0: 0.4 beats it, 0.3 at index 2 ties
     * at a higher index -> rank 1 ✓. */
    TU_OK(nn_topk_accuracy(logits, labels, 2, &acc));
    assert_float_equal(acc, 1.0, 1e-12);
    assert_int_equal(nn_topk_accuracy(logits, labels, 4, &acc), NN_ERR_INVALID);
    nn_tensor *cm = TU_NN(nn_confusion_matrix(logits, labels, 3));
    int64_t want[9] = {0, 1, 0, 0, 1, 0, 1, 0, 1};
    assert_memory_equal(nn_tensor_data(cm), want, sizeof want);
    double prec[3], rec[3];
    TU_OK(nn_precision_recall(cm, prec, rec, 3));
    assert_float_equal(prec[0], 0.0, 1e-12); /* predicted 0 once, wrong */
    assert_float_equal(prec[1], 0.5, 1e-12);
    assert_float_equal(prec[2], 1.0, 1e-12);
    assert_float_equal(rec[0], 0.0, 1e-12);
    assert_float_equal(rec[1], 1.0, 1e-12);
    assert_float_equal(rec[2], 0.5, 1e-12);
    /* predictions as i64 give the same matrix */
    int64_t pred[4] = {1, 0, 2, 1};
    nn_tensor *p = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, pred);
    nn_tensor *cm2 = TU_NN(nn_confusion_matrix(p, labels, 3));
    assert_true(nn_tensor_equal(cm, cm2));
    lab[3] = 3;
    nn_tensor *bad = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, lab);
    assert_int_equal(nn_accuracy(logits, bad, &acc), NN_ERR_RANGE);
    tu_expect_error(NN_ERR_RANGE, "labels[3] = 3 outside [0, 3)");
    assert_int_equal(nn_accuracy(NULL, bad, &acc), NN_ERR_NULL);
    nn_tensor_free(bad);
    nn_tensor_free(p);
    nn_tensor_free(cm2);
    nn_tensor_free(cm);
    nn_tensor_free(labels);
    nn_tensor_free(logits);
    /* running mean */
    nn_meter *m = TU_NN(nn_meter_new());
    assert_true(isnan(nn_meter_mean(m)));
    TU_OK(nn_meter_add(m, 2.0, 3));
    TU_OK(nn_meter_add(m, 6.0, 1));
    assert_float_equal(nn_meter_mean(m), 3.0, 1e-12);
    assert_float_equal(nn_meter_count(m), 4.0, 0);
    assert_int_equal(nn_meter_add(m, 1.0, -1), NN_ERR_INVALID);
    TU_OK(nn_meter_reset(m));
    assert_true(isnan(nn_meter_mean(m)));
    nn_meter_free(m);
}

/* -------------------------------------------------- progress and the log */

static void test_progress_and_log(void **s) {
    (void)s;
    char path[] = "/tmp/nn_progress_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    nn_progress *p = TU_NN(nn_progress_new(fd, 2, 20));
    TU_OK(nn_progress_begin_epoch(p, 0));
    for (int i = 0; i < 20; i++) TU_OK(nn_progress_update(p, i, 1.0 + (i % 2), 8));
    TU_OK(nn_progress_end_epoch(p, "val_acc 0.5"));
    nn_progress_free(p);
    close(fd);
    FILE *f = fopen(path, "r");
    char line[512];
    int lines = 0, last_ok = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        assert_non_null(strstr(line, "epoch 1/2"));
        assert_null(strchr(line, '\r')); /* not a terminal: plain lines */
        if (strstr(line, "batch 20/20  loss 1.5000") && strstr(line, "val_acc 0.5")) last_ok = 1;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(lines, 11); /* one per 10% + the final line */
    assert_true(last_ok);

    char lpath[] = "/tmp/nn_mlog_XXXXXX";
    close(mkstemp(lpath));
    nn_metrics_log *log = TU_NN(nn_metrics_log_open(lpath));
    TU_OK(nn_metrics_log_write(log, 1, 0.5, 0.25, 0.875, 1e-3, 12.5));
    TU_OK(nn_metrics_log_close(log));
    f = fopen(lpath, "r");
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "epoch,train_loss,val_loss,val_acc,lr,seconds\n");
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "1,0.5,0.25,0.875,0.001,12.500\n");
    fclose(f);
    unlink(lpath);
    assert_null(nn_metrics_log_open("/nonexistent-dir/x.csv"));
    tu_expect_error(NN_ERR_IO, "cannot create");
}

/* On a terminal the line is redrawn in place: "\r...\033[K", no newline
 * until the end of the epoch. */
static void test_progress_tty(void **s) {
    (void)s;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) skip();
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (slave < 0) skip();
    nn_progress *p = TU_NN(nn_progress_new(slave, 1, 3));
    TU_OK(nn_progress_begin_epoch(p, 0));
    for (int i = 0; i < 3; i++) TU_OK(nn_progress_update(p, i, 0.5, 4));
    TU_OK(nn_progress_end_epoch(p, NULL));
    nn_progress_free(p);
    /* The pty hands the output over in chunks: read until it is drained. */
    char buf[2048];
    ssize_t n = 0, got;
    struct pollfd pfd = {.fd = master, .events = POLLIN};
    while (n < (ssize_t)sizeof buf - 1 && poll(&pfd, 1, 200) > 0 &&
           (got = read(master, buf + n, sizeof buf - 1 - (size_t)n)) > 0)
        n += got;
    assert_true(n > 0);
    buf[n] = '\0';
    int redraws = 0, newlines = 0;
    for (ssize_t i = 0; i < n; i++) newlines += buf[i] == '\n';
    for (const char *q = buf; (q = strstr(q, "\033[K")); q++) redraws++;
    assert_int_equal(redraws, 3);
    assert_true(newlines >= 1 && newlines <= 2); /* the pty may map \n to \r\n */
    assert_non_null(strstr(buf, "batch 3/3"));
    close(slave);
    close(master);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_good),
        cmocka_unit_test(test_csv_policies),
        cmocka_unit_test(test_csv_malformed),
        cmocka_unit_test(test_csv_oom),
        cmocka_unit_test(test_image_folder),
        cmocka_unit_test(test_image_folder_png_corrupt),
        cmocka_unit_test(test_image_folder_oom),
        cmocka_unit_test(test_progress_tty),
        cmocka_unit_test(test_transforms),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_progress_and_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
