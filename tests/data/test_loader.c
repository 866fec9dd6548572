/* IDX reader (good and malformed files), splits, subsets and the loader's
 * invariants (each sample once per epoch, seeded order, drop_last, prefetch
 * on/off identical, freeing mid-epoch). */
#include "testutil.h"
#include "nn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_path2[4096];

static const char *fx(const char *name) {
    char rel[512];
    snprintf(rel, sizeof rel, "data/fixtures/%s", name);
    return tu_data_path(rel);
}

/* Open an images + labels pair of fixtures. */
static nn_dataset *open_idx(const char *images, const char *labels) {
    snprintf(g_path2, sizeof g_path2, "%s", fx(labels));
    char p1[4096];
    snprintf(p1, sizeof p1, "%s", fx(images));
    return nn_dataset_from_idx(p1, g_path2);
}

/* pixel(i, r, c) = i*16 + r*4 + c, labels i % 3 (see make_fixtures.py). */
static void check_tiny(nn_dataset *ds) {
    assert_int_equal(nn_dataset_len(ds), 6);
    int64_t shape[4];
    assert_int_equal(nn_dataset_sample_shape(ds, shape, 4), 3);
    assert_int_equal(shape[0], 1);
    assert_int_equal(shape[1], 3);
    assert_int_equal(shape[2], 4);
    assert_int_equal(nn_dataset_num_classes(ds), 3);
    TU_OK(nn_dataset_set_scale(ds, false));
    for (int64_t i = 0; i < 6; i++) {
        assert_int_equal(nn_dataset_label(ds, i), i % 3);
        nn_tensor *x, *y;
        TU_OK(nn_dataset_get(ds, i, &x, &y));
        assert_int_equal(nn_tensor_dtype(x), NN_DTYPE_F32);
        assert_int_equal(nn_tensor_ndim(x), 4);
        const float *p = nn_tensor_data(x);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) assert_float_equal(p[r * 4 + c], i * 16 + r * 4 + c, 0);
        nn_tensor_free(x);
        nn_tensor_free(y);
    }
    TU_OK(nn_dataset_set_scale(ds, true));
    nn_tensor *x, *y;
    TU_OK(nn_dataset_get(ds, 5, &x, &y));
    assert_float_equal(((float *)nn_tensor_data(x))[11], (5 * 16 + 11) / 255.0f, 1e-7);
    assert_int_equal(((int64_t *)nn_tensor_data(y))[0], 2);
    nn_tensor_free(x);
    nn_tensor_free(y);
}

static void test_idx_plain_and_gz(void **s) {
    (void)s;
    nn_dataset *a = TU_NN(open_idx("tiny-images.idx", "tiny-labels.idx"));
    check_tiny(a);
    nn_dataset *b = TU_NN(open_idx("tiny-images.idx.gz", "tiny-labels.idx.gz"));
    check_tiny(b);
    nn_dataset *c = TU_NN(open_idx("tiny-images.idx.gz", "tiny-labels.idx")); /* mixed */
    check_tiny(c);
    nn_dataset_free(a);
    nn_dataset_free(b);
    nn_dataset_free(c);
}

static void expect_idx_error(const char *images, const char *labels, nn_status st,
                             const char *substr) {
    nn_clear_error();
    assert_null(open_idx(images, labels));
    tu_expect_error(st, substr);
}

static void test_idx_malformed(void **s) {
    (void)s;
    expect_idx_error("bad-magic.idx", "tiny-labels.idx", NN_ERR_FORMAT, "bad magic 0x01020803");
    expect_idx_error("bad-dtype-f32.idx", "tiny-labels.idx", NN_ERR_UNSUPPORTED,
                     "dtype byte 0x0d (f32) unsupported");
    expect_idx_error("bad-dtype-byte.idx", "tiny-labels.idx", NN_ERR_FORMAT,
                     "invalid IDX dtype byte 0x07");
    expect_idx_error("bad-ndim.idx", "tiny-labels.idx", NN_ERR_FORMAT, "ndim 2, expected 3");
    expect_idx_error("truncated.idx", "tiny-labels.idx", NN_ERR_TRUNCATED,
                     "promises 72 data bytes, file has 67");
    expect_idx_error("truncated-header.idx", "tiny-labels.idx", NN_ERR_TRUNCATED, "header dims");
    expect_idx_error("truncated.idx.gz", "tiny-labels.idx", NN_ERR_TRUNCATED, "images file");
    expect_idx_error("trailing.idx", "tiny-labels.idx", NN_ERR_FORMAT, "trailing bytes");
    expect_idx_error("tiny-images.idx", "labels-5.idx", NN_ERR_FORMAT,
                     "has 6 images but labels file");
    expect_idx_error("huge-dims.idx", "tiny-labels.idx", NN_ERR_OVERFLOW, "dims product overflows");
    /* 10^12 claimed bytes in an 88-byte file: rejected without a huge allocation. */
    tu_alloc_install();
    expect_idx_error("huge-claim.idx", "huge-claim-labels.idx", NN_ERR_TRUNCATED,
                     "promises 1000000000000 data bytes, file has 72");
    tu_alloc_uninstall();
    expect_idx_error("corrupt.idx.gz", "tiny-labels.idx", NN_ERR_FORMAT, "corrupt gzip");
    expect_idx_error("no-such-file.idx", "tiny-labels.idx", NN_ERR_NOT_FOUND, "cannot open images");
    expect_idx_error("tiny-labels.idx", "tiny-labels.idx", NN_ERR_FORMAT, "expected 3");
    nn_clear_error();
    assert_null(nn_dataset_from_idx(NULL, "x"));
    tu_expect_error(NN_ERR_NULL, "images_path");
}

/* Every prefix of a valid file (plain and gzip) is rejected cleanly. */
static void cut_sweep(const char *name) {
    FILE *f = fopen(fx(name), "rb");
    assert_non_null(f);
    unsigned char buf[512];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char tmp[] = "/tmp/nn_idx_cut_XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    close(fd);
    char labels[4096];
    snprintf(labels, sizeof labels, "%s", fx("tiny-labels.idx"));
    for (size_t cut = 0; cut < len; cut++) {
        f = fopen(tmp, "wb");
        fwrite(buf, 1, cut, f);
        fclose(f);
        nn_clear_error();
        nn_dataset *ds = nn_dataset_from_idx(tmp, labels);
        if (ds) fail_msg("%s cut at %zu bytes was accepted", name, cut);
        nn_status st = nn_last_status();
        assert_true(st == NN_ERR_TRUNCATED || st == NN_ERR_FORMAT);
    }
    remove(tmp);
}

/* Every flipped byte after the 10-byte gzip header is caught (by the
 * inflater or the CRC-32 in the trailer). */
static void flip_sweep(void) {
    FILE *f = fopen(fx("tiny-images.idx.gz"), "rb");
    unsigned char buf[512];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char tmp[] = "/tmp/nn_idx_flip_XXXXXX";
    close(mkstemp(tmp));
    char labels[4096];
    snprintf(labels, sizeof labels, "%s", fx("tiny-labels.idx"));
    for (size_t i = 10; i < len; i++) {
        buf[i] ^= 0x5a;
        f = fopen(tmp, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        buf[i] ^= 0x5a;
        nn_dataset *ds = nn_dataset_from_idx(tmp, labels);
        if (ds) fail_msg("byte %zu flipped was accepted", i);
    }
    remove(tmp);
}

static void test_idx_every_cut(void **s) {
    (void)s;
    cut_sweep("tiny-images.idx");
    cut_sweep("tiny-images.idx.gz");
    flip_sweep();
}

/* The OOM sweep: every allocation in the IDX path fails cleanly. */
static int idx_body(void *ctx) {
    (void)ctx;
    nn_dataset *ds = open_idx("tiny-images.idx.gz", "tiny-labels.idx.gz");
    if (!ds) return 1;
    nn_dataset_free(ds);
    return 0;
}

static void test_idx_oom(void **s) {
    (void)s;
    assert_true(tu_oom_sweep(idx_body, NULL) > 3);
}

/* x [n, 2] f32 with x[i] = (i, -i), labels i % k. */
static nn_dataset *range_dataset(int64_t n, int64_t k) {
    int64_t shape[2] = {n, 2};
    nn_tensor *x = nn_tensor_empty(NN_DTYPE_F32, shape, 2);
    nn_tensor *y = nn_tensor_empty(NN_DTYPE_I64, &n, 1);
    float *px = nn_tensor_data(x);
    int64_t *py = nn_tensor_data(y);
    for (int64_t i = 0; i < n; i++) {
        px[2 * i] = (float)i;
        px[2 * i + 1] = (float)-i;
        py[i] = i % k;
    }
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y));
    nn_tensor_free(x); /* the dataset holds its own references */
    nn_tensor_free(y);
    return ds;
}

/* Run one epoch, writing the sample ids (x[:,0]) in order into ids. */
static int64_t epoch_ids(nn_loader *l, int64_t *ids, int64_t cap, int64_t *nbatches) {
    TU_OK(nn_loader_reset(l));
    nn_tensor *x, *y;
    int64_t n = 0, b = 0;
    while (nn_loader_next(l, &x, &y)) {
        int64_t bs = nn_tensor_size(x, 0);
        assert_int_equal(nn_tensor_size(y, 0), bs);
        const float *px = nn_tensor_data(x);
        const int64_t *py = nn_tensor_data(y);
        for (int64_t j = 0; j < bs; j++) {
            assert_true(n < cap);
            ids[n] = (int64_t)px[2 * j];
            assert_float_equal(px[2 * j + 1], -px[2 * j], 0);
            assert_int_equal(py[j], ids[n] % 3);
            n++;
        }
        b++;
    }
    TU_OK(nn_loader_status(l));
    if (nbatches) *nbatches = b;
    return n;
}

static void assert_permutation(const int64_t *ids, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        assert_true(ids[i] >= 0 && ids[i] < n);
        assert_false(seen[ids[i]]);
        seen[ids[i]] = 1;
    }
    free(seen);
}

static void test_loader_epochs(void **s) {
    (void)s;
    enum { N = 103 };
    nn_dataset *ds = range_dataset(N, 3);
    int64_t a[N], b[N], c[N], nb;
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        nn_loader *l1 = TU_NN(nn_loader_new(ds, 10, true, 7));
        nn_loader *l2 = TU_NN(nn_loader_new(ds, 10, true, 7));
        nn_loader *l3 = TU_NN(nn_loader_new(ds, 10, true, 8));
        TU_OK(nn_loader_set_prefetch(l1, prefetch));
        assert_int_equal(nn_loader_num_batches(l1), 11);
        assert_int_equal(epoch_ids(l1, a, N, &nb), N);
        assert_int_equal(nb, 11);
        assert_permutation(a, N);
        assert_int_equal(epoch_ids(l2, b, N, NULL), N);
        assert_memory_equal(a, b, sizeof a); /* same seed, same order */
        assert_int_equal(epoch_ids(l3, c, N, NULL), N);
        assert_memory_not_equal(a, c, sizeof a); /* different seed */
        assert_int_equal(epoch_ids(l1, b, N, NULL), N); /* epoch 2 is reshuffled */
        assert_permutation(b, N);
        assert_memory_not_equal(a, b, sizeof a);
        nn_loader_free(l1);
        nn_loader_free(l2);
        nn_loader_free(l3);
    }
    /* No shuffle: identity order; drop_last drops the last 3 samples. */
    nn_loader *l = TU_NN(nn_loader_new(ds, 10, false, 0));
    TU_OK(nn_loader_set_drop_last(l, true));
    assert_int_equal(nn_loader_num_batches(l), 10);
    assert_int_equal(epoch_ids(l, a, N, &nb), 100);
    assert_int_equal(nb, 10);
    for (int64_t i = 0; i < 100; i++) assert_int_equal(a[i], i);
    /* Settings are refused mid-epoch. */
    nn_tensor *x, *y;
    TU_OK(nn_loader_reset(l));
    assert_true(nn_loader_next(l, &x, &y));
    assert_int_equal(nn_loader_set_drop_last(l, false), NN_ERR_STATE);
    nn_loader_free(l); /* mid-epoch: the worker is joined */
    /* batch larger than the dataset */
    l = TU_NN(nn_loader_new(ds, 1000, true, 1));
    assert_int_equal(nn_loader_num_batches(l), 1);
    TU_OK(nn_loader_set_drop_last(l, true));
    assert_int_equal(nn_loader_num_batches(l), 0);
    assert_int_equal(epoch_ids(l, a, N, &nb), 0);
    nn_loader_free(l);
    nn_dataset_free(ds);
}

/* Prefetch on and off give identical batches, random transforms included. */
static void test_loader_prefetch_identical(void **s) {
    (void)s;
    nn_dataset *ds = TU_NN(open_idx("tiny-images.idx", "tiny-labels.idx"));
    TU_OK(nn_dataset_set_random_flip(ds, 0.5, 11));
    TU_OK(nn_dataset_set_random_crop(ds, 1, 12));
    nn_loader *on = TU_NN(nn_loader_new(ds, 4, true, 3));
    nn_loader *off = TU_NN(nn_loader_new(ds, 4, true, 3));
    TU_OK(nn_loader_set_prefetch(off, false));
    for (int epoch = 0; epoch < 3; epoch++) {
        TU_OK(nn_loader_reset(on));
        TU_OK(nn_loader_reset(off));
        nn_tensor *x1, *y1, *x2, *y2;
        int batches = 0;
        for (;;) {
            bool a = nn_loader_next(on, &x1, &y1), b = nn_loader_next(off, &x2, &y2);
            assert_int_equal(a, b);
            if (!a) break;
            assert_true(nn_tensor_equal(x1, x2));
            assert_true(nn_tensor_equal(y1, y2));
            batches++;
        }
        assert_int_equal(batches, 2);
    }
    nn_loader_free(on);
    nn_loader_free(off);
    nn_dataset_free(ds);
}

static void test_split_subset(void **s) {
    (void)s;
    enum { N = 101 };
    nn_dataset *ds = range_dataset(N, 3);
    double fr[3] = {0.8, 0.1, 0.1};
    nn_dataset *parts[3], *again[3];
    TU_OK(nn_dataset_split(ds, fr, 3, 5, parts));
    TU_OK(nn_dataset_split(ds, fr, 3, 5, again));
    assert_int_equal(nn_dataset_len(parts[0]), 81); /* 80 + 1 of the remainder */
    assert_int_equal(nn_dataset_len(parts[1]), 10);
    assert_int_equal(nn_dataset_len(parts[2]), 10);
    int64_t all[N], k = 0;
    for (int p = 0; p < 3; p++) {
        int64_t n = nn_dataset_len(parts[p]);
        nn_loader *l = TU_NN(nn_loader_new(parts[p], 7, false, 0));
        int64_t ids[N], ids2[N];
        assert_int_equal(epoch_ids(l, ids, N, NULL), n);
        nn_loader *l2 = TU_NN(nn_loader_new(again[p], 7, false, 0));
        assert_int_equal(epoch_ids(l2, ids2, N, NULL), n);
        assert_memory_equal(ids, ids2, sizeof(int64_t) * (size_t)n); /* seeded */
        memcpy(all + k, ids, sizeof(int64_t) * (size_t)n);
        k += n;
        nn_loader_free(l);
        nn_loader_free(l2);
        nn_dataset_free(again[p]);
    }
    assert_int_equal(k, N);
    assert_permutation(all, N); /* the parts are disjoint and cover everything */
    /* a subset of a split part maps through both views */
    int64_t idx[2] = {3, 0};
    nn_dataset *sub = TU_NN(nn_dataset_subset(parts[1], idx, 2));
    nn_dataset_free(parts[1]); /* the subset keeps the samples alive */
    nn_tensor *x, *y;
    TU_OK(nn_dataset_get(sub, 0, &x, &y));
    int64_t want = (int64_t)((float *)nn_tensor_data(x))[0];
    assert_int_equal(nn_dataset_label(sub, 0), want % 3);
    nn_tensor_free(x);
    nn_tensor_free(y);
    int64_t bad[1] = {2};
    assert_null(nn_dataset_subset(sub, bad, 1));
    tu_expect_error(NN_ERR_RANGE, "indices[0] = 2 outside [0, 2)");
    double badfr[2] = {0.7, 0.7};
    nn_dataset *none[2];
    assert_int_equal(nn_dataset_split(ds, badfr, 2, 0, none), NN_ERR_INVALID);
    assert_null(none[0]);
    tu_expect_error(NN_ERR_INVALID, "sum to 1.4");
    nn_dataset_free(sub);
    nn_dataset_free(parts[0]);
    nn_dataset_free(parts[2]);
    nn_dataset_free(ds);
}

/* An error inside the worker thread surfaces from nn_loader_next with its
 * message, and ends the epoch. */
static void test_loader_worker_error(void **s) {
    (void)s;
    nn_dataset *ds = TU_NN(open_idx("tiny-images.idx", "tiny-labels.idx"));
    TU_OK(nn_dataset_set_one_hot(ds, 2)); /* label 2 does not fit */
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        nn_loader *l = TU_NN(nn_loader_new(ds, 6, false, 0));
        TU_OK(nn_loader_set_prefetch(l, prefetch));
        nn_tensor *x, *y;
        nn_clear_error();
        assert_false(nn_loader_next(l, &x, &y));
        assert_null(x);
        assert_int_equal(nn_loader_status(l), NN_ERR_RANGE);
        tu_expect_error(NN_ERR_RANGE, "label 2 >= one-hot classes 2");
        assert_false(nn_loader_next(l, &x, &y)); /* the epoch is over */
        TU_OK(nn_dataset_set_one_hot(ds, 3));
        TU_OK(nn_loader_reset(l));
        assert_true(nn_loader_next(l, &x, &y));
        TU_OK(nn_loader_status(l));
        TU_OK(nn_dataset_set_one_hot(ds, 2));
        nn_loader_free(l);
    }
    nn_dataset_free(ds);
    assert_null(nn_loader_new(NULL, 1, false, 0));
    tu_expect_error(NN_ERR_NULL, "nn_loader_new");
}

/* OOM sweep over dataset + split + loader epoch (prefetch off: the failing
 * allocator counts allocations of one thread). */
static int loader_body(void *ctx) {
    (void)ctx;
    int rc = 1;
    nn_dataset *ds = open_idx("tiny-images.idx", "tiny-labels.idx"), *parts[2] = {0};
    nn_loader *l = NULL;
    double fr[2] = {0.5, 0.5};
    if (!ds || nn_dataset_split(ds, fr, 2, 1, parts)) goto out;
    if (nn_dataset_set_random_flip(parts[0], 0.5, 1) || nn_dataset_compute_normalize(parts[0]))
        goto out;
    if (!(l = nn_loader_new(parts[0], 2, true, 1)) || nn_loader_set_prefetch(l, false)) goto out;
    nn_tensor *x, *y;
    int64_t got = 0;
    if (nn_loader_reset(l)) goto out;
    while (nn_loader_next(l, &x, &y)) got += nn_tensor_size(x, 0);
    if (nn_loader_status(l) || got != 3) goto out;
    rc = 0;
out:
    nn_loader_free(l);
    nn_dataset_free(parts[0]);
    nn_dataset_free(parts[1]);
    nn_dataset_free(ds);
    return rc;
}

static void test_loader_oom(void **s) {
    (void)s;
    assert_true(tu_oom_sweep(loader_body, NULL) > 5);
}

static void test_fashion_mnist(void **s) {
    (void)s;
    const char *im = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lb = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    FILE *f = fopen(im, "rb");
    if (!f) skip();
    fclose(f);
    nn_dataset *ds = TU_NN(nn_dataset_from_idx(im, lb));
    assert_int_equal(nn_dataset_len(ds), 10000);
    int64_t shape[3];
    assert_int_equal(nn_dataset_sample_shape(ds, shape, 3), 3);
    assert_int_equal(shape[0], 1);
    assert_int_equal(shape[1], 28);
    assert_int_equal(shape[2], 28);
    assert_int_equal(nn_dataset_num_classes(ds), 10);
    int64_t hist[10] = {0};
    for (int64_t i = 0; i < 10000; i++) hist[nn_dataset_label(ds, i)]++;
    for (int c = 0; c < 10; c++) assert_int_equal(hist[c], 1000);
    /* Mean pixel of Fashion-MNIST is about 0.286 (std about 0.353). */
    TU_OK(nn_dataset_compute_normalize(ds));
    float mean, std;
    assert_int_equal(nn_dataset_get_normalize(ds, &mean, &std, 1), 1);
    assert_true(mean > 0.27 && mean < 0.30);
    assert_true(std > 0.34 && std < 0.37);
    /* Free a loader while its worker is still building a big batch. */
    nn_loader *l = TU_NN(nn_loader_new(ds, 5000, true, 1));
    nn_tensor *x, *y;
    assert_true(nn_loader_next(l, &x, &y));
    assert_int_equal(nn_tensor_size(x, 0), 5000);
    nn_loader_free(l);
    nn_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_plain_and_gz),
        cmocka_unit_test(test_idx_malformed),
        cmocka_unit_test(test_idx_oom),
        cmocka_unit_test(test_idx_every_cut),
        cmocka_unit_test(test_loader_epochs),
        cmocka_unit_test(test_loader_prefetch_identical),
        cmocka_unit_test(test_split_subset),
        cmocka_unit_test(test_loader_worker_error),
        cmocka_unit_test(test_loader_oom),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
