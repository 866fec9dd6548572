/* Aligned model files (NN_IO_OPTION_ALIGNED, FORMAT.md 10) and memory-mapped
 * model loading (NN_IO_OPTION_MMAP): layout, predictions equal to the copied
 * load bit for bit, no tensor page read at load, checksum modes, fallback
 * for unaligned files, hostile input (flag on a compressed file, every cut,
 * every flipped byte). */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
    return buf;
}

static int setup_dir(void **s) {
    (void)s;
    snprintf(g_dir, sizeof g_dir, "/tmp/nn_mmap_test_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **s) {
    (void)s;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') unlink(tmp_path(e->d_name));
    if (d) closedir(d);
    rmdir(g_dir);
    return 0;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len ? (size_t)len : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

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
    const char *path = tmp_path("aligned.nnm");
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    nn_io_options *save = opts(1, 0);
    nn_meta *meta = TU_NN(nn_meta_new());
    TU_OK(nn_meta_set_string(meta, "description", "mapped"));
    TU_OK(nn_model_save(net, p, meta, save));
    size_t n;
    uint8_t *file = read_file(p, &n);
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
            uint8_t *again = read_file(p, &n2);
            assert_memory_equal(again, file, n);
            free(again);
        }
        nn_model_free(m);
        nn_io_options_free(o);
    }
    /* The same state as a weights file and into a module. */
    nn_statedict *sd = TU_NN(nn_statedict_load(p, NULL));
    assert_int_equal(nn_statedict_size(sd), 8);
    nn_statedict_free(sd);
    nn_module *other = make_net();
    TU_OK(nn_module_load_weights(other, p, NULL, NULL));
    TU_OK(nn_module_train(other, false));
    y[3] = TU_NN(nn_module_forward(other, x));
    assert_true(nn_tensor_equal(y[3], want));
    for (int i = 0; i < 4; i++) nn_tensor_free(y[i]);
    /* An unaligned file asked to be mapped is read and copied. */
    TU_OK(nn_model_save(net, tmp_path("plain.nnm"), NULL, NULL));
    nn_io_options *mm = opts(0, 1);
    nn_model *m = TU_NN(nn_model_load(tmp_path("plain.nnm"), mm));
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

/* A 64 MiB model: mapping it reads none of its pages. */
static void test_mapped_rss(void **s) {
    (void)s;
    nn_module *net = nn_sequential_new();
    TU_OK(nn_sequential_append(net, nn_linear_new(4096, 4096, true)));
    nn_io_options *save = opts(1, 0);
    char p[512];
    snprintf(p, sizeof p, "%s", tmp_path("big.nnm"));
    TU_OK(nn_model_save(net, p, NULL, save));
    nn_io_options *mm = opts(0, 1);
    long before = status_kb("VmRSS");
    nn_model *m = TU_NN(nn_model_load(p, mm));
    long after = status_kb("VmRSS");
    print_message("mapped 64 MiB model: RSS +%ld kB at load\n", after - before);
    assert_true(after - before <= 5 * 1024);
    int64_t xs[2] = {2, 4096};
    nn_tensor *x = tu_rand(1, xs, 2, -1, 1);
    nn_tensor *a = TU_NN(nn_model_predict(m, x));
    nn_model *c = TU_NN(nn_model_load(p, NULL));
    nn_tensor *b = TU_NN(nn_model_predict(c, x));
    assert_true(nn_tensor_equal(a, b));
    nn_tensor_free(a);
    nn_tensor_free(b);
    nn_tensor_free(x);
    nn_model_free(c);
    nn_model_free(m);
    nn_io_options_free(mm);
    nn_io_options_free(save);
    nn_module_free(net);
}

/* Hostile input to the mapped loader. */
static void test_mapped_hostile(void **s) {
    (void)s;
    nn_module *net = make_net();
    char p[512], q[512];
    snprintf(p, sizeof p, "%s", tmp_path("h.nnm"));
    snprintf(q, sizeof q, "%s", tmp_path("h2.nnm"));
    /* The aligned flag set on a compressed file: the tiling rule refuses it. */
    TU_OK(nn_model_save(net, p, NULL, NULL));
    size_t n;
    uint8_t *file = read_file(p, &n);
    file[12] = 1;
    write_file(q, file, n);
    nn_io_options *mm = opts(0, 1), *mv = opts(0, 2);
    assert_null(nn_model_load(q, mm));
    assert_true(nn_last_status() == NN_ERR_FORMAT || nn_last_status() == NN_ERR_RANGE);
    assert_null(nn_model_load(q, mv));
    tu_expect_error(NN_ERR_CHECKSUM, "file CRC-32");
    file[12] = 2; /* an unknown flag */
    write_file(q, file, n);
    assert_null(nn_model_load(q, mm));
    tu_expect_error(NN_ERR_FORMAT, "header flags 0x2");
    free(file);
    /* Every cut and every flipped byte of an aligned file. */
    nn_io_options *save = opts(1, 0);
    TU_OK(nn_model_save(net, p, NULL, save));
    file = read_file(p, &n);
    for (size_t cut = 0; cut < n; cut += (cut < 256 ? 1 : 7)) {
        write_file(q, file, cut);
        nn_model *m = nn_model_load(q, mm);
        if (m) fail_msg("cut at %zu accepted", cut);
    }
    int lazy_rejected = 0;
    for (size_t i = 0; i < n; i++) {
        file[i] ^= 0xFF;
        write_file(q, file, n);
        nn_model *m = nn_model_load(q, mv);
        if (m) fail_msg("flip at %zu accepted with verification", i);
        m = nn_model_load(q, mm); /* lazily checked: never a crash */
        if (!m) lazy_rejected++;
        nn_model_free(m);
        file[i] ^= 0xFF;
    }
    print_message("aligned file of %zu bytes: every flip rejected with MMAP 2, %d with MMAP 1\n",
                  n, lazy_rejected);
    free(file);
    nn_io_options_free(save);
    nn_io_options_free(mm);
    nn_io_options_free(mv);
    nn_module_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aligned_roundtrip),
        cmocka_unit_test(test_mapped_rss),
        cmocka_unit_test(test_mapped_hostile),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
