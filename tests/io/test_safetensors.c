/* safetensors files: PyTorch-written fixtures (tests/io/safetensors/
 * make_fixtures.py, Debian python3-torch) load into libnn modules and give
 * PyTorch's outputs, and are written back byte for byte; every dtype; the
 * malformed catalogue (malformed/MANIFEST) from a path, a mapping and a
 * buffer; truncation at every byte and a flip of every byte; memory-mapped
 * loads: views of the file, copy-on-write, pages shared between processes
 * (/proc/self/smaps), the same predictions as a copied load. */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

static const char *fixture(const char *name) {
    char rel[512];
    snprintf(rel, sizeof rel, "io/safetensors/%s", name);
    return tu_data_path(rel);
}

static nn_io_options *mmap_opts(int mode) {
    nn_io_options *o = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MMAP, mode));
    return o;
}

static nn_module *make_mlp(void) {
    nn_module *m = nn_sequential_new();
    TU_OK(nn_sequential_append(m, nn_linear_new(4, 8, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(8, 3, true)));
    return m;
}

/* Forward io's "x" through m (eval) and compare with PyTorch's "y". */
static nn_tensor *check_io(nn_module *m, const char *io_file, double rtol) {
    nn_statedict *io = TU_NN(nn_safetensors_load(fixture(io_file), NULL, NULL));
    TU_OK(nn_module_train(m, false));
    nn_tensor *y = TU_NN(nn_module_forward(m, nn_statedict_get(io, "x")));
    tu_assert_close(y, nn_statedict_get(io, "y"), rtol, 1e-6, io_file);
    nn_statedict_free(io);
    return y;
}

/* --------------------------------------------------------- round trips */

static void test_mlp_pytorch(void **s) {
    (void)s;
    size_t n;
    uint8_t *file = tu_read_file(fixture("mlp.safetensors"), &n);
    nn_io_options *mm = mmap_opts(1);
    for (int src = 0; src < 3; src++) { /* path, mapping, buffer */
        nn_meta *meta = NULL;
        nn_statedict *sd = src == 0   ? nn_safetensors_load(fixture("mlp.safetensors"), NULL, &meta)
                           : src == 1 ? nn_safetensors_load(fixture("mlp.safetensors"), mm, &meta)
                                      : nn_safetensors_load_buffer(file, n, NULL, &meta);
        TU_NN(sd);
        assert_int_equal(nn_statedict_size(sd), 4);
        assert_string_equal(nn_statedict_name(sd, 0), "0.weight");
        assert_string_equal(nn_meta_get_string(meta, "format"), "pt");
        assert_string_equal(nn_meta_get_string(meta, "note"), "libnn fixture");
        /* Written back: the same bytes as PyTorch's file. */
        void *out;
        size_t out_n;
        TU_OK(nn_safetensors_save_buffer(sd, meta, NULL, &out, &out_n));
        assert_int_equal(out_n, n);
        assert_memory_equal(out, file, n);
        nn_free(out);
        nn_meta_free(meta);
        nn_statedict_free(sd);
    }
    /* Into the matching module: PyTorch's outputs; copy and mapping agree bit for bit. */
    nn_module *a = make_mlp(), *b = make_mlp();
    TU_OK(nn_module_load_safetensors(a, fixture("mlp.safetensors"), NULL, NULL));
    TU_OK(nn_module_load_safetensors(b, fixture("mlp.safetensors"), mm, NULL));
    nn_tensor *ya = check_io(a, "mlp_io.safetensors", 1e-5);
    nn_tensor *yb = check_io(b, "mlp_io.safetensors", 1e-5);
    assert_true(nn_tensor_equal(ya, yb));
    nn_tensor_free(ya);
    nn_tensor_free(yb);
    /* A module's state dict saved by libnn is PyTorch's file again (no metadata). */
    nn_statedict *sd = TU_NN(nn_module_state_dict(a));
    TU_OK(nn_safetensors_save(sd, tu_tmp_path("mlp.safetensors"), NULL, NULL));
    nn_statedict *back = TU_NN(nn_safetensors_load(tu_tmp_path("mlp.safetensors"), NULL, NULL));
    for (int64_t i = 0; i < 4; i++)
        assert_true(nn_tensor_equal(nn_statedict_tensor(sd, i), nn_statedict_tensor(back, i)));
    nn_statedict_free(back);
    nn_statedict_free(sd);
    nn_module_free(a);
    nn_module_free(b);
    nn_io_options_free(mm);
    free(file);
}

static void test_cnn_lstm_ddp(void **s) {
    (void)s;
    nn_module *cnn = nn_sequential_new();
    TU_OK(nn_sequential_append(cnn, nn_conv2d_new(1, 4, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(cnn, nn_batch_norm2d_new(4, 1e-5, 0.1, true)));
    TU_OK(nn_sequential_append(cnn, nn_relu_new()));
    TU_OK(nn_sequential_append(cnn, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(cnn, nn_linear_new(4 * 6 * 6, 5, true)));
    TU_OK(nn_module_load_safetensors(cnn, fixture("cnn.safetensors"), NULL, NULL));
    nn_tensor *nbt = TU_NN(nn_module_get_buffer(cnn, "1.num_batches_tracked"));
    assert_int_equal(nn_tensor_dtype(nbt), NN_DTYPE_I64);
    assert_true(nn_tensor_item(nbt) == 3);
    nn_tensor_free(check_io(cnn, "cnn_io.safetensors", 1e-4));
    nn_module_free(cnn);

    nn_module *lstm = TU_NN(nn_lstm_new(3, 4, 2, true));
    TU_OK(nn_module_load_safetensors(lstm, fixture("lstm.safetensors"), NULL, NULL));
    nn_tensor_free(check_io(lstm, "lstm_io.safetensors", 1e-4));
    nn_module_free(lstm);

    /* DataParallel's "module." prefix is dropped. */
    nn_module *mlp = make_mlp();
    char *report = NULL;
    TU_OK(nn_module_load_safetensors(mlp, fixture("ddp.safetensors"), NULL, &report));
    assert_string_equal(report, "");
    nn_free(report);
    nn_tensor_free(check_io(mlp, "mlp_io.safetensors", 1e-5));
    /* Strict by default: another architecture is refused, the module untouched. */
    nn_module *small = nn_sequential_new();
    TU_OK(nn_sequential_append(small, nn_linear_new(4, 8, true)));
    nn_tensor *w = nn_module_parameter(small, 0, NULL);
    float before = ((float *)nn_tensor_data(w))[0];
    assert_int_equal(nn_module_load_safetensors(small, fixture("mlp.safetensors"), NULL, NULL),
                     NN_ERR_NOT_FOUND);
    tu_expect_error(NN_ERR_NOT_FOUND, "unexpected: 2.weight");
    assert_true(((float *)nn_tensor_data(w))[0] == before);
    nn_io_options *lax = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set(lax, NN_IO_OPTION_STRICT, 0));
    TU_OK(nn_module_load_safetensors(small, fixture("mlp.safetensors"), lax, &report));
    assert_non_null(strstr(report, "unexpected: 2.weight, 2.bias"));
    nn_free(report);
    nn_statedict *sd = TU_NN(nn_safetensors_load(fixture("mlp.safetensors"), NULL, NULL));
    assert_true(nn_tensor_equal(nn_module_parameter(small, 0, NULL), nn_statedict_get(sd, "0.weight")));
    nn_statedict_free(sd);
    nn_io_options_free(lax);
    nn_module_free(small);
    nn_module_free(mlp);
}

/* Every dtype: F16/BF16 become exactly what torch's .float() gives (or stay
 * native once libnn stores them); saving writes torch's file of those. */
static void test_dtypes(void **s) {
    (void)s;
    bool native16 = nn_dtype_size(NN_DTYPE_F16) == 2;
    nn_statedict *sd = TU_NN(nn_safetensors_load(fixture("dtypes.safetensors"), NULL, NULL));
    nn_statedict *want = TU_NN(nn_safetensors_load(fixture("dtypes_f32.safetensors"), NULL, NULL));
    assert_int_equal(nn_statedict_size(sd), 7);
    for (int64_t i = 0; i < 7; i++) {
        nn_tensor *a = nn_statedict_tensor(sd, i), *b = nn_statedict_tensor(want, i);
        assert_string_equal(nn_statedict_name(sd, i), nn_statedict_name(want, i));
        if (native16 && nn_tensor_dtype(a) != nn_tensor_dtype(b)) continue;
        assert_int_equal(nn_tensor_dtype(a), nn_tensor_dtype(b));
        assert_int_equal(nn_tensor_numel(a), nn_tensor_numel(b));
        size_t nb = (size_t)nn_tensor_numel(a) * nn_dtype_size(nn_tensor_dtype(a));
        if (nb) assert_memory_equal(nn_tensor_data(a), nn_tensor_data(b), nb); /* NaN bits too */
    }
    assert_int_equal(nn_tensor_ndim(nn_statedict_get(sd, "scalar")), 0);
    assert_int_equal(nn_tensor_numel(nn_statedict_get(sd, "empty")), 0);
    nn_meta *meta = TU_NN(nn_meta_new());
    TU_OK(nn_meta_set_string(meta, "kind", "dtypes"));
    void *out;
    size_t out_n, n;
    TU_OK(nn_safetensors_save_buffer(sd, meta, NULL, &out, &out_n));
    uint8_t *file = tu_read_file(fixture(native16 ? "dtypes.safetensors" : "dtypes_f32.safetensors"), &n);
    assert_int_equal(out_n, n);
    assert_memory_equal(out, file, n);
    free(file);
    nn_free(out);
    /* Mapped: the same values. */
    nn_io_options *mm = mmap_opts(1);
    nn_statedict *m2 = TU_NN(nn_safetensors_load(fixture("dtypes.safetensors"), mm, NULL));
    for (int64_t i = 0; i < 7; i++) {
        nn_tensor *a = nn_statedict_tensor(sd, i), *b = nn_statedict_tensor(m2, i);
        size_t nb = (size_t)nn_tensor_numel(a) * nn_dtype_size(nn_tensor_dtype(a));
        if (nb) assert_memory_equal(nn_tensor_data(a), nn_tensor_data(b), nb);
    }
    nn_statedict_free(m2);
    nn_io_options_free(mm);
    nn_meta_free(meta);
    nn_statedict_free(want);
    nn_statedict_free(sd);
}

static void test_save_errors(void **s) {
    (void)s;
    nn_statedict *sd = TU_NN(nn_statedict_new());
    int64_t shape[1] = {2};
    nn_tensor *t = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, shape, 1));
    TU_OK(nn_statedict_set(sd, "__metadata__", t));
    void *out = (void *)1;
    size_t n = 1;
    assert_int_equal(nn_safetensors_save_buffer(sd, NULL, NULL, &out, &n), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "may not be named '__metadata__'");
    assert_null(out);
    nn_statedict_free(sd);
    sd = TU_NN(nn_statedict_new());
    TU_OK(nn_statedict_set(sd, "a", t));
    nn_meta *meta = TU_NN(nn_meta_new());
    TU_OK(nn_meta_set_number(meta, "epochs", 3));
    assert_int_equal(nn_safetensors_save_buffer(sd, meta, NULL, &out, &n), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "metadata 'epochs' is not a string");
    /* An empty state dict is a valid file ("{}" padded). */
    nn_statedict *empty = TU_NN(nn_statedict_new());
    TU_OK(nn_safetensors_save_buffer(empty, NULL, NULL, &out, &n));
    assert_int_equal(n, 16);
    assert_memory_equal((uint8_t *)out + 8, "{}      ", 8);
    nn_statedict *back = TU_NN(nn_safetensors_load_buffer(out, n, NULL, NULL));
    assert_int_equal(nn_statedict_size(back), 0);
    nn_statedict_free(back);
    nn_free(out);
    /* A strided (non-contiguous) tensor is written row-major. */
    int64_t sh2[2] = {2, 3};
    float v[6] = {1, 2, 3, 4, 5, 6};
    nn_tensor *m = tu_tensor(sh2, 2, v);
    nn_tensor *tt = TU_NN(nn_transpose(m, 0, 1));
    TU_OK(nn_statedict_set(empty, "t", tt));
    TU_OK(nn_safetensors_save_buffer(empty, NULL, NULL, &out, &n));
    back = TU_NN(nn_safetensors_load_buffer(out, n, NULL, NULL));
    assert_true(nn_tensor_equal(nn_statedict_get(back, "t"), tt));
    nn_statedict_free(back);
    nn_free(out);
    nn_tensor_free(tt);
    nn_tensor_free(m);
    nn_statedict_free(empty);
    nn_meta_free(meta);
    nn_statedict_free(sd);
    nn_tensor_free(t);
}

/* ------------------------------------------------------ hostile input */

static nn_status status_of(const char *name) {
    for (int c = 0; c >= -40; c--) {
        const char *str = nn_status_string((nn_status)c);
        size_t n = strlen(name);
        if (strncmp(str, name, n) == 0 && (str[n] == ':' || str[n] == '\0')) return (nn_status)c;
    }
    fail_msg("unknown status name %s", name);
    return NN_OK;
}

static void test_catalogue(void **s) {
    (void)s;
    FILE *f = fopen(fixture("malformed/MANIFEST"), "r");
    assert_non_null(f);
    char line[512];
    int count = 0;
    nn_io_options *mm = mmap_opts(1);
    static const char *const fns[3] = {"nn_safetensors_load", "nn_safetensors_load",
                                       "nn_safetensors_load_buffer"};
    while (fgets(line, sizeof line, f)) {
        char file[128], status[64], rel[256];
        int off = 0;
        if (sscanf(line, "%127s %63s %n", file, status, &off) != 2) continue;
        char *msg = line + off;
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(rel, sizeof rel, "malformed/%s", file);
        char path[4096];
        snprintf(path, sizeof path, "%s", fixture(rel));
        size_t n;
        uint8_t *data = tu_read_file(path, &n);
        nn_status want = status_of(status);
        for (int src = 0; src < 3; src++) {
            nn_clear_error();
            nn_meta *meta = NULL;
            nn_statedict *sd = src == 0   ? nn_safetensors_load(path, NULL, &meta)
                               : src == 1 ? nn_safetensors_load(path, mm, &meta)
                                          : nn_safetensors_load_buffer(data, n, NULL, &meta);
            if (want == NN_OK) {
                if (!sd) fail_msg("%s (%d): expected success, got %s", file, src, nn_last_error());
            } else {
                if (sd) fail_msg("%s (%d): accepted", file, src);
                assert_null(meta);
                if (nn_last_status() != want || !strstr(nn_last_error(), msg) ||
                    !strstr(nn_last_error(), fns[src]))
                    fail_msg("%s (%d): expected %s '%s', got %d '%s'", file, src, status, msg,
                             (int)nn_last_status(), nn_last_error());
            }
            nn_meta_free(meta);
            nn_statedict_free(sd);
        }
        free(data);
        count++;
    }
    fclose(f);
    nn_io_options_free(mm);
    assert_true(count >= 30);
}

/* Cases too big to commit: built here. */
static void test_limits(void **s) {
    (void)s;
    /* More JSON values than the cap: refused before json-c sees them. */
    size_t nv = (1u << 20) + 2, hl = 6 + 2 * nv + 2;
    hl = (hl + 7) & ~(size_t)7;
    uint8_t *buf = malloc(8 + hl);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    char *h = (char *)buf + 8;
    memset(h, ' ', hl);
    memcpy(h, "{\"a\":[", 6);
    for (size_t i = 0; i < nv; i++) memcpy(h + 6 + 2 * i, "0,", 2);
    memcpy(h + 6 + 2 * nv - 1, "]}", 2);
    assert_null(nn_safetensors_load_buffer(buf, 8 + hl, NULL, NULL));
    tu_expect_error(NN_ERR_LIMIT, "JSON values");
    free(buf);
    /* NN_IO_OPTION_MAX_BYTES caps the file and the tensors' bytes (f16 counts twice). */
    size_t n;
    uint8_t *file = tu_read_file(fixture("dtypes.safetensors"), &n);
    nn_io_options *o = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MAX_BYTES, (int64_t)n - 1));
    assert_null(nn_safetensors_load_buffer(file, n, o, NULL));
    tu_expect_error(NN_ERR_LIMIT, "more than the");
    assert_null(nn_safetensors_load(fixture("dtypes.safetensors"), o, NULL));
    tu_expect_error(NN_ERR_LIMIT, "more than the");
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MAX_BYTES, (int64_t)n));
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MMAP, 1));
    nn_statedict_free(TU_NN(nn_safetensors_load(fixture("dtypes.safetensors"), o, NULL)));
    nn_io_options_free(o);
    free(file);
    /* Not a regular file, missing file. */
    nn_io_options *mm = mmap_opts(1);
    assert_null(nn_safetensors_load(tu_tmpdir(), mm, NULL));
    tu_expect_error(NN_ERR_IO, "not a regular file");
    assert_null(nn_safetensors_load(tu_tmpdir(), NULL, NULL));
    tu_expect_error(NN_ERR_IO, "not a readable regular file");
    assert_null(nn_safetensors_load(tu_tmp_path("missing"), mm, NULL));
    tu_expect_error(NN_ERR_IO, "cannot open");
    nn_io_options_free(mm);
}

/* Cut at every byte: always rejected. Flip every byte: never a crash; a
 * flip in the length field or the JSON syntax is rejected (safetensors
 * has no checksum: a flipped data byte loads as a different value). */
static void test_truncate_flip(void **s) {
    (void)s;
    size_t n;
    uint8_t *file = tu_read_file(fixture("mlp.safetensors"), &n);
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    for (size_t cut = 0; cut < n; cut++) {
        memcpy(copy, file, cut);
        nn_statedict *sd = nn_safetensors_load_buffer(copy, cut, NULL, NULL);
        if (sd) fail_msg("cut at %zu accepted", cut);
    }
    size_t hl = (size_t)file[0] | (size_t)file[1] << 8;
    int rejected = 0, header_rejected = 0;
    nn_io_options *mm = mmap_opts(1);
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, file, n);
        copy[i] ^= 0xFF;
        nn_statedict *sd = nn_safetensors_load_buffer(copy, n, NULL, NULL);
        bool ok = sd != NULL;
        if (!sd) {
            rejected++;
            if (i < 8 + hl) header_rejected++;
        }
        if (i < 8) assert_null(sd);
        if (i >= 8 + hl) assert_non_null(sd); /* data bytes: no checksum */
        nn_statedict_free(sd);
        if (i % 16 == 0) { /* the mapped loader on a sample of them */
            tu_write_file(tu_tmp_path("flip.safetensors"), copy, n);
            nn_statedict *m = nn_safetensors_load(tu_tmp_path("flip.safetensors"), mm, NULL);
            assert_true((m != NULL) == ok); /* the same verdict from a mapping */
            nn_statedict_free(m);
        }
    }
    nn_io_options_free(mm);
    print_message("flips rejected: %d of %zu bytes (%d of %zu header bytes)\n", rejected, n,
                  header_rejected, 8 + hl);
    assert_true(header_rejected >= (int)(8 + hl) / 2);
    free(copy);
    free(file);
}

/* ------------------------------------------------------- memory maps */

static double sum_tensor(nn_tensor *t) {
    const float *p = nn_tensor_data(t);
    double acc = 0;
    for (int64_t i = 0; i < nn_tensor_numel(t); i++) acc += p[i];
    return acc;
}

/* Views, copy-on-write, release with the last tensor. */
static void test_mmap_views(void **s) {
    (void)s;
    size_t n;
    uint8_t *file = tu_read_file(fixture("mlp.safetensors"), &n);
    const char *path = tu_tmp_path("views.safetensors");
    tu_write_file(path, file, n);
    nn_io_options *mm = mmap_opts(1);
    nn_statedict *sd = TU_NN(nn_safetensors_load(path, mm, NULL));
    assert_true(tu_smaps_kb(path, "Size") > 0); /* mapped */
    nn_tensor *w = nn_tensor_retain(nn_statedict_get(sd, "0.weight"));
    nn_statedict_free(sd);
    assert_true(tu_smaps_kb(path, "Size") > 0); /* a tensor still views it */
    float old = ((float *)nn_tensor_data(w))[0];
    ((float *)nn_tensor_data(w))[0] = 12345.f; /* a private copy of the page */
    assert_true(tu_smaps_kb(path, "Private_Dirty") > 0);
    size_t n2;
    uint8_t *again = tu_read_file(path, &n2);
    assert_memory_equal(again, file, n); /* the file never sees the write */
    free(again);
    nn_statedict *sd2 = TU_NN(nn_safetensors_load(path, mm, NULL));
    assert_true(((float *)nn_tensor_data(nn_statedict_get(sd2, "0.weight")))[0] == old);
    nn_statedict_free(sd2);
    /* Training a mapped module works (its pages are copied when written). */
    nn_module *mlp = make_mlp();
    TU_OK(nn_module_load_safetensors(mlp, path, mm, NULL));
    nn_tensor *p0 = nn_module_parameter(mlp, 0, NULL);
    float before = ((float *)nn_tensor_data(p0))[0];
    TU_OK(nn_tensor_fill(p0, 0.5));
    assert_true(((float *)nn_tensor_data(p0))[0] == 0.5f && before == old);
    nn_module_free(mlp);
    nn_tensor_free(w);
    assert_int_equal(tu_smaps_kb(path, "Size"), 0); /* unmapped with the last view */
    nn_io_options_free(mm);
    free(file);
}

/* In a second process: path mapped (options mm), the sum of its "weight". */
static double load_and_sum(const char *path, void *mm) {
    nn_statedict *c = nn_safetensors_load(path, mm, NULL);
    return c ? sum_tensor(nn_statedict_get(c, "weight")) : -1;
}

/* A 64 MiB tensor: no page read at load, pages shared with a second
 * process, predictions equal to a copied load. (The 400 MB load-time figure
 * is a benchmark: tests/bench/mmap_load.) */
static void test_mmap_shared(void **s) {
    (void)s;
    const int64_t rows = 4096, cols = 4096; /* 64 MiB of f32 */
    nn_statedict *sd = TU_NN(nn_statedict_new());
    int64_t shape[2] = {rows, cols};
    nn_tensor *w = TU_NN(nn_tensor_empty(NN_DTYPE_F32, shape, 2));
    float *p = nn_tensor_data(w);
    for (int64_t i = 0; i < rows * cols; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.f;
    TU_OK(nn_statedict_set(sd, "weight", w));
    const char *path = tu_tmp_path("big.safetensors");
    char path_copy[512];
    snprintf(path_copy, sizeof path_copy, "%s", path);
    TU_OK(nn_safetensors_save(sd, path_copy, NULL, NULL));
    nn_tensor_free(w);
    nn_statedict_free(sd);

    nn_io_options *mm = mmap_opts(1);
    nn_statedict *m = TU_NN(nn_safetensors_load(path_copy, mm, NULL));
    long rss = tu_smaps_kb(path_copy, "Rss");
    assert_true(rss <= 5 * 1024); /* nothing read but the header */
    /* the second process maps and reads it too */
    double mine = sum_tensor(nn_statedict_get(m, "weight"));
    long shared, priv;
    double child_sum = tu_in_second_process(path_copy, load_and_sum, mm, &shared, &priv);
    assert_true(child_sum == mine);
    print_message("64 MiB mapped: Rss %ld kB before use; Shared_Clean %ld kB, Private_Dirty %ld "
                  "kB with two processes\n",
                  rss, shared, priv);
    assert_true(shared >= 60 * 1024); /* the pages are the page cache's, seen by both */
    assert_true(priv == 0);
    /* The same predictions as a copied load, bit for bit. */
    nn_statedict *c = TU_NN(nn_safetensors_load(path_copy, NULL, NULL));
    int64_t xs[2] = {3, rows};
    nn_tensor *x = tu_rand(7, xs, 2, -1, 1);
    nn_tensor *ya = TU_NN(nn_matmul(x, nn_statedict_get(m, "weight")));
    nn_tensor *yb = TU_NN(nn_matmul(x, nn_statedict_get(c, "weight")));
    assert_true(nn_tensor_equal(ya, yb));
    nn_tensor_free(ya);
    nn_tensor_free(yb);
    nn_tensor_free(x);
    nn_statedict_free(c);
    nn_statedict_free(m);
    nn_io_options_free(mm);
}

static int oom_body(void *ctx) {
    const uint8_t *file = ((const uint8_t *const *)ctx)[0];
    size_t n = *((const size_t *const *)ctx)[1];
    nn_meta *meta = NULL;
    nn_statedict *sd = nn_safetensors_load_buffer(file, n, NULL, &meta);
    if (!sd) return 1;
    void *out = NULL;
    size_t on;
    nn_status st = nn_safetensors_save_buffer(sd, meta, NULL, &out, &on);
    nn_free(out);
    nn_meta_free(meta);
    nn_statedict_free(sd);
    return st != NN_OK;
}

static void test_oom(void **s) {
    (void)s;
    size_t n;
    uint8_t *file = tu_read_file(fixture("mlp.safetensors"), &n);
    const void *ctx[2] = {file, &n};
    long sites = tu_oom_sweep(oom_body, ctx);
    assert_true(sites > 5);
    free(file);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_pytorch),  cmocka_unit_test(test_cnn_lstm_ddp),
        cmocka_unit_test(test_dtypes),       cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_catalogue),    cmocka_unit_test(test_limits),
        cmocka_unit_test(test_truncate_flip), cmocka_unit_test(test_mmap_views),
        cmocka_unit_test(test_mmap_shared),  cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
