/* Aligned model files (NN_IO_OPTION_ALIGNED, FORMAT.md 11) and memory-mapped
 * model loading (NN_IO_OPTION_MMAP): layout, predictions equal to the copied
 * load bit for bit, no tensor page read at load, pages shared by two
 * processes (/proc/self/smaps), training a mapped model never reaches the
 * file (copy-on-write), the mapping lives as long as any tensor viewing it,
 * checksum modes, fallback for unaligned files, hostile input (flag on a
 * compressed file, every cut, every flipped byte). The 400 MB load-time
 * figure is a benchmark: tests/bench/mmap_load. */
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static nn_io_options *opts(int aligned, int mmap) {
    nn_io_options *o = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_ALIGNED, aligned));
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MMAP, mmap));
    return o;
}

static nn_module *make_net(void) {
    nn_generator_seed(NULL, 5);
    nn_module *m = nn_sequential_new();
    TU_OK(nn_sequential_append(m, nn_conv2d_new(1, 3, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(m, nn_batch_norm2d_new(3, 1e-5, 0.1, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(m, nn_linear_new(3 * 5 * 5, 7, true)));
    TU_OK(nn_sequential_append(m, nn_linear_new(7, 2, false)));
    return m;
}

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key) + 1);
    if (f) fclose(f);
    return v;
}

static void test_aligned_roundtrip(void **s) {
    (void)s;
    nn_module *net = make_net();
    const char *path = tu_tmp_path("aligned.nnm");
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    nn_io_options *save = opts(1, 0);
    nn_meta *meta = TU_NN(nn_meta_new());
    TU_OK(nn_meta_set_string(meta, "description", "mapped"));
    TU_OK(nn_model_save(net, p, meta, save));
    size_t n;
    uint8_t *file = tu_read_file(p, &n);
    assert_int_equal(file[10], 1); /* minor 1 */
    assert_int_equal(file[12], 1); /* the aligned flag */
    int64_t xs[4] = {4, 1, 5, 5};
    nn_tensor *x = tu_rand(3, xs, 4, -1, 1);
    TU_OK(nn_module_train(net, false));
    nn_tensor *want = TU_NN(nn_module_forward(net, x));
    nn_tensor *y[4];
    for (int mode = 0; mode <= 2; mode++) { /* copy, map, map + verify */
        nn_io_options *o = opts(0, mode);
        nn_model *m = TU_NN(nn_model_load(p, o));
        assert_string_equal(nn_meta_get_string(nn_model_meta(m), "description"), "mapped");
        y[mode] = TU_NN(nn_model_predict(m, x));
        assert_true(nn_tensor_equal(y[mode], want)); /* bit for bit */
        if (mode) { /* parameters view the mapping, 64-byte aligned */
            nn_module *mod = nn_model_module(m);
            for (int64_t i = 0; i < nn_module_num_parameters(mod); i++)
                assert_int_equal((uintptr_t)nn_tensor_data(nn_module_parameter(mod, i, NULL)) % 64, 0);
            /* A write gets a private copy: the file keeps its bytes. */
            TU_OK(nn_tensor_fill(nn_module_parameter(mod, 0, NULL), 3.0));
            size_t n2;
            uint8_t *again = tu_read_file(p, &n2);
            assert_memory_equal(again, file, n);
            free(again);
        }
        nn_model_free(m);
        nn_io_options_free(o);
    }
    /* The same state as a weights file and into a module. */
    nn_statedict *sd = TU_NN(nn_statedict_load(p, NULL));
    assert_int_equal(nn_statedict_size(sd), 10); /* BatchNorm: 5 */
    nn_statedict_free(sd);
    nn_module *other = make_net();
    TU_OK(nn_module_load_weights(other, p, NULL, NULL));
    TU_OK(nn_module_train(other, false));
    y[3] = TU_NN(nn_module_forward(other, x));
    assert_true(nn_tensor_equal(y[3], want));
    for (int i = 0; i < 4; i++) nn_tensor_free(y[i]);
    /* An unaligned file asked to be mapped is read and copied. */
    TU_OK(nn_model_save(net, tu_tmp_path("plain.nnm"), NULL, NULL));
    nn_io_options *mm = opts(0, 1);
    nn_model *m = TU_NN(nn_model_load(tu_tmp_path("plain.nnm"), mm));
    nn_tensor *yp = TU_NN(nn_model_predict(m, x));
    assert_true(nn_tensor_equal(yp, want));
    nn_tensor_free(yp);
    nn_model_free(m);
    nn_io_options_free(mm);
    nn_tensor_free(want);
    nn_tensor_free(x);
    nn_meta_free(meta);
    nn_io_options_free(save);
    free(file);
    nn_module_free(other);
    nn_module_free(net);
}

static double sum_param(nn_module *m, int64_t i) {
    nn_tensor *t = nn_module_parameter(m, i, NULL);
    const float *p = nn_tensor_data(t);
    double acc = 0;
    for (int64_t k = 0; k < nn_tensor_numel(t); k++) acc += p[k];
    return acc;
}

/* In a second process: path mapped (options mm), its first parameter's sum. */
static double load_and_sum(const char *path, void *mm) {
    nn_model *c = nn_model_load(path, mm);
    return c ? sum_param(nn_model_module(c), 0) : -1;
}

/* A 32 MiB model: mapping it reads none of its pages, a second process
 * mapping it shares them, predictions equal the copied load's. */
static void test_mapped_shared(void **s) {
    (void)s;
    nn_generator_seed(NULL, 11);
    nn_module *net = nn_sequential_new();
    TU_OK(nn_sequential_append(net, nn_linear_new(4096, 2048, true)));
    nn_io_options *save = opts(1, 0);
    char p[512];
    snprintf(p, sizeof p, "%s", tu_tmp_path("big.nnm"));
    TU_OK(nn_model_save(net, p, NULL, save));
    nn_module_free(net);
    nn_io_options *mm = opts(0, 1);
    long before = status_kb("VmRSS");
    nn_model *m = TU_NN(nn_model_load(p, mm));
    long after = status_kb("VmRSS"), rss = tu_smaps_kb(p, "Rss");
    print_message("mapped 32 MiB model: VmRSS +%ld kB at load, mapping Rss %ld kB\n",
                  after - before, rss);
    assert_true(after - before <= 5 * 1024);
    assert_true(rss <= 5 * 1024); /* nothing read but the sections before the data */
    /* the second process maps and reads it too */
    double mine = sum_param(nn_model_module(m), 0);
    long shared, priv;
    double child_sum = tu_in_second_process(p, load_and_sum, mm, &shared, &priv);
    assert_true(child_sum == mine);
    print_message("two processes: Shared_Clean %ld kB, Private_Dirty %ld kB\n", shared, priv);
    assert_true(shared >= 30 * 1024); /* the page cache's pages, seen by both */
    assert_true(priv == 0);
    int64_t xs[2] = {2, 4096};
    nn_tensor *x = tu_rand(1, xs, 2, -1, 1);
    nn_tensor *a = TU_NN(nn_model_predict(m, x));
    nn_model *c = TU_NN(nn_model_load(p, NULL));
    nn_tensor *b = TU_NN(nn_model_predict(c, x));
    assert_true(nn_tensor_equal(a, b)); /* bit for bit */
    nn_tensor_free(a);
    nn_tensor_free(b);
    nn_tensor_free(x);
    nn_model_free(c);
    nn_model_free(m);
    nn_io_options_free(mm);
    nn_io_options_free(save);
}

/* Training a mapped model: its pages get private copies (copy-on-write);
 * the file and a second mapped load keep the saved values. */
static void test_mapped_training(void **s) {
    (void)s;
    nn_module *net = make_net();
    char p[512];
    snprintf(p, sizeof p, "%s", tu_tmp_path("train.nnm"));
    nn_io_options *save = opts(1, 0), *mm = opts(0, 1);
    TU_OK(nn_model_save(net, p, NULL, save));
    size_t n;
    uint8_t *file = tu_read_file(p, &n);
    nn_model *m = TU_NN(nn_model_load(p, mm));
    nn_model *other = TU_NN(nn_model_load(p, mm));
    nn_module *mod = nn_model_module(m);
    double w0 = sum_param(mod, 0);
    assert_int_equal(tu_smaps_kb(p, "Private_Dirty"), 0);
    TU_OK(nn_module_train(mod, true));
    nn_optim *opt = TU_NN(nn_optim_new_module(NN_OPTIM_TYPE_SGD, mod, 0.1));
    int64_t xs[4] = {4, 1, 5, 5}, ts[2] = {4, 2};
    nn_tensor *x = tu_rand(3, xs, 4, -1, 1), *y = tu_rand(4, ts, 2, -1, 1);
    for (int step = 0; step < 2; step++) {
        nn_scope *sc = nn_scope_begin();
        TU_OK(nn_optim_zero_grad(opt));
        TU_OK(nn_backward(TU_NN(nn_mse_loss(TU_NN(nn_module_forward(mod, x)), y,
                                            NN_REDUCTION_MEAN))));
        TU_OK(nn_optim_step(opt));
        TU_OK(nn_scope_end(sc));
    }
    assert_true(sum_param(mod, 0) != w0);                    /* trained */
    assert_true(tu_smaps_kb(p, "Private_Dirty") > 0);        /* written pages copied */
    assert_true(sum_param(nn_model_module(other), 0) == w0); /* another mapping: unchanged */
    size_t n2;
    uint8_t *again = tu_read_file(p, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(again, file, n); /* the file never sees the writes */
    free(again);
    nn_optim_free(opt);
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_model_free(other);
    nn_model_free(m);
    free(file);
    nn_io_options_free(save);
    nn_io_options_free(mm);
    nn_module_free(net);
}

/* The mapping lives as long as any tensor views it; replacing the file
 * (libnn saves by rename) leaves a loaded model intact. */
static void test_mapped_lifetime(void **s) {
    (void)s;
    nn_module *net = make_net();
    char p[512];
    snprintf(p, sizeof p, "%s", tu_tmp_path("life.nnm"));
    nn_io_options *save = opts(1, 0), *mm = opts(0, 1);
    TU_OK(nn_model_save(net, p, NULL, save));
    nn_model *m = TU_NN(nn_model_load(p, mm));
    assert_true(tu_smaps_kb(p, "Size") > 0);
    int64_t xs[4] = {2, 1, 5, 5};
    nn_tensor *x = tu_rand(5, xs, 4, -1, 1);
    nn_tensor *want = TU_NN(nn_model_predict(m, x));
    nn_tensor *w = nn_tensor_retain(nn_module_parameter(nn_model_module(m), 0, NULL));
    nn_tensor *wc = TU_NN(nn_tensor_clone(w));
    /* Overwrite the path with another model: the mapping keeps the old file. */
    nn_module *net2 = make_net();
    TU_OK(nn_tensor_fill(nn_module_parameter(net2, 0, NULL), 7.0));
    TU_OK(nn_model_save(net2, p, NULL, save));
    nn_tensor *y = TU_NN(nn_model_predict(m, x));
    assert_true(nn_tensor_equal(y, want));
    nn_tensor_free(y);
    nn_model_free(m); /* w still views the mapping */
    assert_true(nn_tensor_equal(w, wc));
    nn_tensor_free(w);
    nn_tensor_free(wc);
    /* the replaced file's mapping is gone with its last view */
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    int deleted = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "life.nnm")) deleted++;
    if (f) fclose(f);
    assert_int_equal(deleted, 0);
    nn_tensor_free(want);
    nn_tensor_free(x);
    nn_io_options_free(save);
    nn_io_options_free(mm);
    nn_module_free(net2);
    nn_module_free(net);
}

static uint64_t le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int k = bytes - 1; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

/* Where the bytes of an aligned file are (FORMAT.md 3 and 5): the tensor
 * section's CRC field and its data area. */
static void tensor_regions(const uint8_t *f, size_t *crc_at, size_t *data_at, size_t *data_end) {
    uint32_t count = (uint32_t)le(f + 24, 4);
    size_t pos = 32;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t len = le(f + pos + 8, 8);
        if (le(f + pos, 4) == 3) {
            *crc_at = pos + 16;
            *data_end = pos + 24 + (size_t)len;
            size_t at = pos + 24;
            uint32_t nt = (uint32_t)le(f + at, 4);
            at += 8;
            for (uint32_t t = 0; t < nt; t++) {
                at += 4 + (size_t)le(f + at, 4);
                uint8_t ndim = f[at + 1];
                at += 4 + 8 * (size_t)ndim + 24;
            }
            *data_at = at + 8;
        }
        pos += 24 + (size_t)len;
    }
}

/* Hostile input to the mapped loader. */
static void test_mapped_hostile(void **s) {
    (void)s;
    nn_generator_seed(NULL, 2);
    nn_module *net = nn_sequential_new();
    TU_OK(nn_sequential_append(net, nn_linear_new(3, 2, true)));
    char p[512], q[512];
    snprintf(p, sizeof p, "%s", tu_tmp_path("h.nnm"));
    snprintf(q, sizeof q, "%s", tu_tmp_path("h2.nnm"));
    /* The aligned flag set on a compressed file: the tiling rule refuses it. */
    TU_OK(nn_model_save(net, p, NULL, NULL));
    size_t n;
    uint8_t *file = tu_read_file(p, &n);
    file[12] = 1;
    tu_write_file(q, file, n);
    nn_io_options *mm = opts(0, 1), *mv = opts(0, 2);
    assert_null(nn_model_load(q, mm));
    assert_true(nn_last_status() == NN_ERR_FORMAT || nn_last_status() == NN_ERR_RANGE);
    assert_null(nn_model_load(q, mv));
    tu_expect_error(NN_ERR_CHECKSUM, "file CRC-32");
    file[12] = 2; /* an unknown flag */
    tu_write_file(q, file, n);
    assert_null(nn_model_load(q, mm));
    tu_expect_error(NN_ERR_FORMAT, "header flags 0x2");
    free(file);
    /* Every cut and every flipped byte of an aligned file. */
    nn_io_options *save = opts(1, 0);
    TU_OK(nn_model_save(net, p, NULL, save));
    file = tu_read_file(p, &n);
    for (size_t cut = 0; cut < n; cut++) {
        tu_write_file(q, file, cut);
        if (nn_model_load(q, mm)) fail_msg("cut at %zu accepted", cut);
        if (nn_model_load(q, mv)) fail_msg("cut at %zu accepted (MMAP 2)", cut);
    }
    size_t crc_at = 0, data_at = 0, data_end = 0;
    tensor_regions(file, &crc_at, &data_at, &data_end);
    assert_true(crc_at > 32 && data_at > crc_at && data_end == n - 8);
    int lazy_loaded = 0;
    for (size_t i = 0; i < n; i++) {
        file[i] ^= 0xFF;
        tu_write_file(q, file, n);
        nn_model *m = nn_model_load(q, mv);
        if (m) fail_msg("flip at %zu accepted with verification", i);
        m = nn_model_load(q, mm); /* lazily checked: never a crash */
        /* MMAP 1 checks no CRC over the header's minor version (10-11),
         * the tensor section's CRC, its data, or the file CRC. */
        bool unchecked = i == 10 || i == 11 || (i >= crc_at && i < crc_at + 4) ||
                         (i >= data_at && i < data_end) || i >= n - 4;
        if (m && !unchecked) fail_msg("flip at %zu accepted with MMAP 1", i);
        if (m) lazy_loaded++;
        nn_model_free(m);
        file[i] ^= 0xFF;
    }
    print_message("aligned file of %zu bytes: every flip rejected with MMAP 2; with MMAP 1, "
                  "%d loaded (all in the minor version, tensor CRC, tensor data or file CRC)\n",
                  n, lazy_loaded);
    free(file);
    nn_io_options_free(save);
    nn_io_options_free(mm);
    nn_io_options_free(mv);
    nn_module_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aligned_roundtrip),
        cmocka_unit_test(test_mapped_shared),
        cmocka_unit_test(test_mapped_training),
        cmocka_unit_test(test_mapped_lifetime),
        cmocka_unit_test(test_mapped_hostile),
    };
    return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
