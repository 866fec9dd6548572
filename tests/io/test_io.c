/* Model files: round trips, metadata, atomic save under injected failures,
 * truncation and bit flips, limits, out-of-memory, threads, checkpoints. */
#include "testutil.h"
#include "io/io_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

static int count_files(void) {
    int n = 0;
    DIR *d = opendir(tu_tmpdir());
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

/* Every parameter and buffer of a and b bit-identical, same names. */
static void assert_same_weights(nn_module *a, nn_module *b) {
    nn_statedict *sa = TU_NN(nn_module_state_dict(a)), *sb = TU_NN(nn_module_state_dict(b));
    assert_int_equal(nn_statedict_size(sa), nn_statedict_size(sb));
    for (int64_t i = 0; i < nn_statedict_size(sa); i++) {
        assert_string_equal(nn_statedict_name(sa, i), nn_statedict_name(sb, i));
        nn_tensor *x = nn_statedict_tensor(sa, i), *y = nn_statedict_tensor(sb, i);
        assert_int_equal(nn_tensor_dtype(x), nn_tensor_dtype(y));
        size_t bytes = (size_t)nn_tensor_numel(x) * nn_dtype_size(nn_tensor_dtype(x));
        uint8_t *p = malloc(bytes + 1), *q = malloc(bytes + 1);
        TU_OK(nn_tensor_copy_to(x, p, bytes));
        TU_OK(nn_tensor_copy_to(y, q, bytes));
        assert_memory_equal(p, q, bytes);
        free(p);
        free(q);
    }
    nn_statedict_free(sa);
    nn_statedict_free(sb);
}

static nn_module *small_mlp(void) {
    nn_generator_seed(NULL, 7);
    nn_module *s = nn_sequential_new();
    TU_OK(nn_sequential_append(s, nn_linear_new(4, 8, true)));
    TU_OK(nn_sequential_append(s, nn_relu_new()));
    TU_OK(nn_sequential_append(s, nn_linear_new(8, 3, true)));
    return s;
}

static nn_meta *sample_meta(void) {
    nn_meta *m = TU_NN(nn_meta_new());
    const char *classes[] = {"cat", "dog", "bird"};
    const double mean[] = {0.5, 0.25, -1e300};
    TU_OK(nn_meta_set_string(m, "description", "a small MLP"));
    TU_OK(nn_meta_set_number(m, "epochs", 3));
    TU_OK(nn_meta_set_array(m, "mean", mean, 3));
    TU_OK(nn_meta_set_strings(m, "classes", classes, 3));
    TU_OK(nn_meta_set_array(m, "empty", NULL, 0));
    return m;
}

static void check_sample_meta(const nn_meta *m) {
    assert_int_equal(nn_meta_count(m), 5);
    assert_string_equal(nn_meta_key(m, 0), "description");
    assert_string_equal(nn_meta_get_string(m, "description"), "a small MLP");
    double v;
    TU_OK(nn_meta_get_number(m, "epochs", &v));
    assert_true(v == 3);
    const double *a;
    int64_t n;
    TU_OK(nn_meta_get_array(m, "mean", &a, &n));
    assert_int_equal(n, 3);
    assert_true(a[0] == 0.5 && a[1] == 0.25 && a[2] == -1e300);
    TU_OK(nn_meta_get_array(m, "empty", &a, &n));
    assert_int_equal(n, 0);
    assert_int_equal(nn_meta_strings_count(m, "classes"), 3);
    assert_string_equal(nn_meta_strings_get(m, "classes", 2), "bird");
    assert_int_equal(nn_meta_kind_of(m, "classes"), NN_META_KIND_STRINGS);
    assert_int_equal(nn_meta_kind_of(m, "nope"), NN_META_KIND_NONE);
    assert_null(nn_meta_get_string(m, "epochs"));
    tu_expect_error(NN_ERR_INVALID, "nn_meta_get_string: key 'epochs'");
    assert_null(nn_meta_get_string(m, "nope"));
    tu_expect_error(NN_ERR_NOT_FOUND, "no key 'nope'");
}

/* ---------------------------------------------------------------- tests */

static void test_crc32(void **s) {
    (void)s;
    assert_int_equal(nn__crc32(0, "123456789", 9), 0xCBF43926u); /* the standard check value */
}

static void test_model_roundtrip_meta(void **s) {
    (void)s;
    nn_module *net = small_mlp();
    nn_meta *meta = sample_meta();
    const char *path = tu_tmp_path("mlp.nnm");
    TU_OK(nn_model_save(net, path, meta, NULL));
    nn_model *model = TU_NN(nn_model_load(path, NULL));
    check_sample_meta(nn_model_meta(model));
    nn_module *got = nn_model_module(model);
    assert_string_equal(nn_module_type_name(got), "Sequential");
    assert_false(nn_module_is_training(got));
    assert_same_weights(net, got);
    int64_t shape[] = {5, 4};
    nn_tensor *x = tu_rand(3, shape, 2, -1, 1);
    nn_tensor *y0 = TU_NN(nn_module_forward(net, x));
    nn_tensor *y1 = TU_NN(nn_model_predict(model, x));
    assert_true(nn_tensor_equal(y0, y1));
    nn_tensor_free(x);
    nn_tensor_free(y0);
    nn_tensor_free(y1);
    nn_model_free(model);
    nn_meta_free(meta);
    nn_module_free(net);
    assert_int_equal(count_files(), 1); /* no temporary left behind */
}

/* One of each module type: saved and loaded at three levels, bit-identical. */
static nn_module *module_zoo(int i) {
    int64_t ln[] = {6};
    switch (i) {
    case 0: return nn_linear_new(5, 6, true);
    case 1: return nn_linear_new(5, 6, false);
    case 2: return nn_conv2d_new(2, 4, 3, 1, 1, true);
    case 3: return nn_conv1d_new(2, 4, 3, 2, 1, 1, 1, true);
    case 4: return nn_conv_transpose2d_new(2, 3, 3, 2, 1, 1, true);
    case 5: return nn_batch_norm2d_new(3, 1e-5, 0.1, true);
    case 6: return nn_batch_norm1d_new(3, 1e-3, 0.2, false);
    case 7: return nn_layer_norm_new(ln, 1, 1e-5, true);
    case 8: return nn_group_norm_new(2, 4, 1e-5, true);
    case 9: return nn_embedding_new(10, 4);
    case 10: return nn_rnn_new(3, 5, 2, NN_RNN_NONLINEARITY_TANH, true);
    case 11: return nn_lstm_new(3, 5, 1, true);
    case 12: return nn_gru_new(3, 5, 2, false);
    case 13: return nn_max_pool2d_new(2, 2, 0);
    case 14: return nn_avg_pool2d_new(3, 1, 1);
    case 15: return nn_adaptive_avg_pool2d_new(2, 3);
    case 16: return nn_flatten_new(1, -1);
    case 17: return nn_dropout_new(0.25);
    case 18: return nn_leaky_relu_new(0.3);
    case 19: return nn_elu_new(0.7);
    case 20: return nn_gelu_new(true);
    case 21: return nn_softplus_new(2, 15);
    case 22: return nn_hardtanh_new(-2, 3);
    case 23: return nn_softmax_new(1);
    case 24: return nn_log_softmax_new(-1);
    case 25: return nn_identity_new();
    case 26: return nn_silu_new();
    case 27: return nn_sigmoid_new();
    case 28: return nn_tanh_new();
    case 29: return nn_relu_new();
    case 30: return nn_select_new(1, -1);
    case 31: return nn_embedding_new_padded(10, 4, -2);
    case 32: return nn_recurrent_new(NN_RNN_MODE_LSTM, 3, 4, 2, true, false, 0.3, true);
    case 33: return nn_recurrent_new(NN_RNN_MODE_RNN_RELU, 3, 4, 1, false, true, 0, true);
    case 34: {
        nn_module *l = nn_module_list_new();
        if (l && nn_module_list_append(l, nn_linear_new(2, 3, true))) {
            nn_module_free(l);
            return NULL;
        }
        return l;
    }
    case 35: {
        nn_module *d = nn_module_dict_new();
        if (!d) return NULL;
        if (nn_module_dict_set(d, "gru",
                               nn_recurrent_new(NN_RNN_MODE_GRU, 2, 3, 2, true, true, 0, false))) {
            nn_module_free(d);
            return NULL;
        }
        return d;
    }
    }
    return NULL;
}

static void test_roundtrip_every_module(void **s) {
    (void)s;
    nn_io_options *o = TU_NN(nn_io_options_new());
    for (int i = 0; i < 36; i++) {
        nn_generator_seed(NULL, (uint64_t)i + 1);
        nn_module *seq = nn_sequential_new();
        TU_OK(nn_sequential_append(seq, TU_NN(module_zoo(i))));
        for (int level = 0; level <= 9; level += 4) {
            TU_OK(nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, level));
            void *buf;
            size_t n;
            TU_OK(nn_model_save_buffer(seq, NULL, o, &buf, &n));
            nn_model *m = nn_model_load_buffer(buf, n, NULL);
            if (!m) fail_msg("module %d (%s) level %d: %s", i,
                             nn_module_type_name(nn_sequential_get(seq, 0)), level, nn_last_error());
            nn_module *got = nn_sequential_get(nn_model_module(m), 0);
            assert_string_equal(nn_module_type_name(got),
                                nn_module_type_name(nn_sequential_get(seq, 0)));
            assert_same_weights(seq, nn_model_module(m));
            /* Saving the loaded model again gives the same bytes. */
            void *buf2;
            size_t n2;
            TU_OK(nn_model_save_buffer(nn_model_module(m), NULL, o, &buf2, &n2));
            assert_int_equal(n, n2);
            assert_memory_equal(buf, buf2, n);
            nn_free(buf2);
            nn_free(buf);
            nn_model_free(m);
        }
        nn_module_free(seq);
    }
    nn_io_options_free(o);
}

/* State dicts of every dtype, scalars and empty tensors, via all three sinks. */
typedef struct membuf {
    uint8_t *p;
    size_t len, cap, pos;
    int fail_after; /* write calls before a failure (-1 never) */
} membuf;

static int mem_write(const void *d, size_t n, void *u) {
    membuf *m = u;
    if (m->fail_after == 0) return -1;
    if (m->fail_after > 0) m->fail_after--;
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->len, d, n);
    m->len += n;
    return 0;
}

static int64_t mem_read7(void *d, size_t n, void *u) {
    membuf *m = u; /* odd chunk sizes exercise the growing reader */
    size_t k = m->len - m->pos < 7 ? m->len - m->pos : 7;
    if (k > n) k = n;
    memcpy(d, m->p + m->pos, k);
    m->pos += k;
    return (int64_t)k;
}

static nn_statedict *sample_sd(void) {
    nn_statedict *sd = nn_statedict_new();
    int64_t s23[] = {2, 3}, s4[] = {4}, s03[] = {0, 3}, s5[] = {5};
    nn_tensor *a = tu_rand(1, s23, 2, -1, 1);
    nn_tensor *b = nn_arange(-2, 2, 1, NN_DTYPE_I64);
    nn_tensor *c = nn_tensor_full(NN_DTYPE_U8, s5, 1, 200);
    nn_tensor *d = nn_tensor_full(NN_DTYPE_F32, NULL, 0, 3.5);
    nn_tensor *e = nn_tensor_zeros(NN_DTYPE_F32, s03, 2);
    nn_tensor *f = nn_tensor_zeros(NN_DTYPE_F32, s4, 1);
    nn_tensor *all[] = {a, b, c, d, e, f};
    const char *names[] = {"w", "idx", "mask", "scalar", "empty", "zeros"};
    for (int i = 0; i < 6; i++) {
        TU_OK(nn_statedict_set(sd, names[i], all[i]));
        nn_tensor_free(all[i]);
    }
    return sd;
}

static void assert_sd_equal(const nn_statedict *a, const nn_statedict *b) {
    assert_int_equal(nn_statedict_size(a), nn_statedict_size(b));
    for (int64_t i = 0; i < nn_statedict_size(a); i++) {
        assert_string_equal(nn_statedict_name(a, i), nn_statedict_name(b, i));
        assert_true(nn_tensor_equal(nn_statedict_tensor(a, i), nn_statedict_tensor(b, i)));
    }
}

static void test_statedict_sinks(void **s) {
    (void)s;
    nn_statedict *sd = sample_sd();
    nn_io_options *o = nn_io_options_new();
    for (int level = 0; level <= 9; level += 9) {
        TU_OK(nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, level));
        TU_OK(nn_statedict_save(sd, tu_tmp_path("w.nnm"), o));
        nn_statedict *l1 = TU_NN(nn_statedict_load(tu_tmp_path("w.nnm"), NULL));
        assert_sd_equal(sd, l1);
        void *buf;
        size_t n;
        TU_OK(nn_statedict_save_buffer(sd, o, &buf, &n));
        nn_statedict *l2 = TU_NN(nn_statedict_load_buffer(buf, n, NULL));
        assert_sd_equal(sd, l2);
        membuf mb = {.fail_after = -1};
        TU_OK(nn_statedict_save_stream(sd, mem_write, &mb, o));
        assert_int_equal(mb.len, n);
        assert_memory_equal(mb.p, buf, n); /* the same bytes through every sink */
        nn_statedict *l3 = TU_NN(nn_statedict_load_stream(mem_read7, &mb, NULL));
        assert_sd_equal(sd, l3);
        mb.fail_after = 0;
        assert_int_equal(nn_statedict_save_stream(sd, mem_write, &mb, o), NN_ERR_IO);
        tu_expect_error(NN_ERR_IO, "write callback failed");
        free(mb.p);
        nn_free(buf);
        nn_statedict_free(l1);
        nn_statedict_free(l2);
        nn_statedict_free(l3);
    }
    /* A weights file has no module tree. */
    assert_null(nn_model_load(tu_tmp_path("w.nnm"), NULL));
    tu_expect_error(NN_ERR_FORMAT, "no module section");
    nn_io_options_free(o);
    nn_statedict_free(sd);
}

/* ------------------------------------------------ truncation, bit flips */

static bool is_rejection(nn_status st) {
    return st == NN_ERR_FORMAT || st == NN_ERR_TRUNCATED || st == NN_ERR_CHECKSUM ||
           st == NN_ERR_VERSION || st == NN_ERR_LIMIT || st == NN_ERR_UNSUPPORTED;
}

static void test_truncate_and_flip_every_byte(void **s) {
    (void)s;
    nn_module *net = nn_sequential_new();
    TU_OK(nn_sequential_append(net, nn_linear_new(3, 2, true)));
    nn_meta *meta = sample_meta();
    void *buf;
    size_t n;
    TU_OK(nn_model_save_buffer(net, meta, NULL, &buf, &n));
    uint8_t *copy = malloc(n);
    for (size_t cut = 0; cut < n; cut++) {
        memcpy(copy, buf, cut);
        nn_clear_error();
        assert_null(nn_model_load_buffer(copy, cut, NULL));
        if (!is_rejection(nn_last_status())) fail_msg("cut %zu: %s", cut, nn_last_error());
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, buf, n);
        copy[i] ^= 0xFF;
        nn_clear_error();
        nn_model *m = nn_model_load_buffer(copy, n, NULL);
        if (m) fail_msg("flip of byte %zu accepted", i);
        if (!is_rejection(nn_last_status())) fail_msg("flip %zu: %s", i, nn_last_error());
    }
    free(copy);
    nn_free(buf);
    nn_meta_free(meta);
    nn_module_free(net);
}

/* ---------------------------------------------------- atomic save */

static int g_fail_step; /* which system call fails: 1 open 2 write 3 fsync 4 close 5 rename */
static int fail_open(const char *p, int f, int m) {
    if (g_fail_step == 1) return errno = EACCES, -1;
    return open(p, f, m);
}
static ssize_t fail_write(int fd, const void *b, size_t n) {
    if (g_fail_step == 2) {
        /* a short write first, then an error: a half-written temp file */
        static int calls;
        if (calls++ % 2 == 0) return write(fd, b, n / 2 ? n / 2 : 1);
        return errno = ENOSPC, -1;
    }
    return write(fd, b, n);
}
static int fail_fsync(int fd) {
    if (g_fail_step == 3) return errno = EIO, -1;
    return fsync(fd);
}
static int fail_close(int fd) {
    int rc = close(fd);
    if (g_fail_step == 4) return errno = EIO, -1;
    return rc;
}
static int fail_rename(const char *a, const char *b) {
    if (g_fail_step == 5) return errno = EXDEV, -1;
    return rename(a, b);
}

static void test_atomic_save_failures(void **s) {
    (void)s;
    nn_module *old_net = small_mlp();
    nn_module *new_net = nn_sequential_new();
    TU_OK(nn_sequential_append(new_net, nn_linear_new(2, 2, false)));
    const char *path = tu_tmp_path("atomic.nnm");
    TU_OK(nn_model_save(old_net, path, NULL, NULL));
    size_t n0;
    uint8_t *before = read_file(path, &n0);
    int files = count_files();
    for (g_fail_step = 1; g_fail_step <= 5; g_fail_step++) {
        nn__io_sys_ops.open = fail_open;
        nn__io_sys_ops.write = fail_write;
        nn__io_sys_ops.fsync = fail_fsync;
        nn__io_sys_ops.close = fail_close;
        nn__io_sys_ops.rename = fail_rename;
        assert_int_equal(nn_model_save(new_net, path, NULL, NULL), NN_ERR_IO);
        assert_non_null(strstr(nn_last_error(), "nn_model_save"));
        nn__io_sys_reset();
        size_t n1;
        uint8_t *after = read_file(path, &n1);
        assert_int_equal(n0, n1); /* the old file, byte for byte */
        assert_memory_equal(before, after, n0);
        free(after);
        assert_int_equal(count_files(), files); /* the temporary was removed */
        nn_model *m = TU_NN(nn_model_load(path, NULL));
        assert_same_weights(old_net, nn_model_module(m));
        nn_model_free(m);
    }
    g_fail_step = 0;
    free(before);
    /* A directory that does not exist: nothing is created. */
    assert_int_equal(nn_model_save(new_net, "/nonexistent-dir/x.nnm", NULL, NULL), NN_ERR_IO);
    nn_module_free(old_net);
    nn_module_free(new_net);
}

/* ----------------------------------------------------- versions, limits */

static uint8_t *container_with(uint16_t minor, uint32_t extra_type, uint32_t extra_flags,
                               size_t *n) {
    nn__filew f;
    nn__filew_begin(&f);
    nn__wbuf t = {0}, x = {0};
    nn__named_list empty = {0};
    TU_OK(nn__tensors_encode(&empty, 0, &t, "test"));
    nn__filew_section(&f, NN__SEC_TENSORS, 0, &t);
    nn__wbuf_str(&x, "future");
    nn__filew_section(&f, extra_type, extra_flags, &x);
    uint8_t *d;
    TU_OK(nn__filew_finish(&f, &d, n, "test"));
    d[10] = (uint8_t)minor;
    nn__put_u32(d + *n - 4, nn__crc32(0, d, *n - 4));
    return d;
}

static void test_versions(void **s) {
    (void)s;
    size_t n;
    uint8_t *d = container_with(3, 77, NN__SEC_FLAG_SKIPPABLE, &n);
    nn_statedict *sd = TU_NN(nn_statedict_load_buffer(d, n, NULL));
    assert_int_equal(nn_statedict_size(sd), 0);
    nn_statedict_free(sd);
    nn__free(d);
    d = container_with(3, 77, 0, &n);
    assert_null(nn_statedict_load_buffer(d, n, NULL));
    tu_expect_error(NN_ERR_UNSUPPORTED, "unknown type 77 and is not marked skippable");
    d[8] = 2; /* major 2 */
    nn__put_u32(d + n - 4, nn__crc32(0, d, n - 4));
    assert_null(nn_statedict_load_buffer(d, n, NULL));
    tu_expect_error(NN_ERR_VERSION, "format version 2.3");
    nn__free(d);
}

static void test_limits_and_misuse(void **s) {
    (void)s;
    nn_statedict *sd = sample_sd();
    void *buf;
    size_t n;
    TU_OK(nn_statedict_save_buffer(sd, NULL, &buf, &n));
    nn_io_options *o = nn_io_options_new();
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MAX_BYTES, 16));
    assert_null(nn_statedict_load_buffer(buf, n, o));
    tu_expect_error(NN_ERR_LIMIT, "NN_IO_OPTION_MAX_BYTES");
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MAX_BYTES, (int64_t)n)); /* file fits, tensors not */
    nn_statedict *l = nn_statedict_load_buffer(buf, n, o);
    if (l) {
        nn_statedict_free(l);
    }
    membuf mb = {.p = buf, .len = n, .fail_after = -1};
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MAX_BYTES, (int64_t)n - 1));
    assert_null(nn_statedict_load_stream(mem_read7, &mb, o));
    tu_expect_error(NN_ERR_LIMIT, "stream exceeds");
    assert_int_equal(nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, 10), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "value 10 outside [0, 9]");
    assert_int_equal(nn_io_options_set(o, (nn_io_option)42, 1), NN_ERR_INVALID);
    int64_t v;
    TU_OK(nn_io_options_get(o, NN_IO_OPTION_STRICT, &v));
    assert_int_equal(v, 1);
    nn_io_options_free(o);
    /* NULL arguments and freed handles */
    nn_clear_error();
    assert_null(nn_model_load(NULL, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_model_load: argument 'path' is NULL");
    assert_null(nn_model_load(tu_tmp_path("missing.nnm"), NULL));
    tu_expect_error(NN_ERR_NOT_FOUND, "cannot open");
    assert_null(nn_model_load_buffer(NULL, 10, NULL));
    tu_expect_error(NN_ERR_NULL, "data");
    assert_null(nn_model_load_buffer(buf, 0, NULL));
    tu_expect_error(NN_ERR_TRUNCATED, "ends inside the magic");
    nn_clear_error();
    assert_int_equal(nn_model_save(NULL, tu_tmp_path("x.nnm"), NULL, NULL), NN_ERR_NULL);
    nn_clear_error();
    assert_int_equal(nn_model_save_buffer(NULL, NULL, NULL, NULL, NULL), NN_ERR_NULL);
    assert_null(nn_model_module(NULL));
    nn_clear_error();
    assert_null(nn_model_predict(NULL, NULL));
    tu_expect_error(NN_ERR_NULL, "nn_model_predict: argument 'model' is NULL");
    nn_model_free(NULL);
    nn_meta_free(NULL);
    nn_io_options_free(NULL);
    nn_meta *m = nn_meta_new();
    assert_int_equal(nn_meta_set_string(m, "", "x"), NN_ERR_INVALID);
    nn_clear_error();
    assert_int_equal(nn_meta_set_string(m, "k", NULL), NN_ERR_NULL);
    assert_int_equal(nn_meta_count(m), 0);
    assert_null(nn_meta_key(m, 0));
    tu_expect_error(NN_ERR_RANGE, "nn_meta_key: index 0");
    nn_meta_free(m);
    nn_free(buf);
    nn_statedict_free(sd);
}

/* -------------------------------------------------------- out of memory */

static int oom_body(void *ctx) {
    nn_module *net = ctx;
    nn_meta *meta = nn_meta_new();
    void *buf = NULL;
    size_t n;
    int rc = 1;
    if (meta && !nn_meta_set_string(meta, "d", "x") &&
        !nn_model_save_buffer(net, meta, NULL, &buf, &n)) {
        nn_model *m = nn_model_load_buffer(buf, n, NULL);
        if (m) rc = 0;
        nn_model_free(m);
    }
    nn_free(buf);
    nn_meta_free(meta);
    return rc;
}

static void test_oom_save_load(void **s) {
    (void)s;
    nn_module *net = small_mlp();
    long sites = tu_oom_sweep(oom_body, net);
    assert_true(sites > 20);
    nn_module_free(net);
}

/* ------------------------------------------------------------- threads */

typedef struct job {
    const nn_model *model;
    nn_tensor *x;
    const float *want;
    size_t n;
    int mismatches;
} job;

static void *infer_loop(void *arg) {
    job *j = arg;
    float *got = malloc(j->n * sizeof(float));
    for (int it = 0; it < 1000; it++) {
        nn_tensor *y = nn_model_predict(j->model, j->x);
        if (!y || nn_tensor_copy_to(y, got, j->n * sizeof(float)) ||
            memcmp(got, j->want, j->n * sizeof(float)) != 0)
            j->mismatches++;
        nn_tensor_free(y);
    }
    free(got);
    return NULL;
}

static void test_threads_share_a_model(void **s) {
    (void)s;
    nn_module *net = small_mlp();
    void *buf;
    size_t n;
    TU_OK(nn_model_save_buffer(net, NULL, NULL, &buf, &n));
    nn_model *model = TU_NN(nn_model_load_buffer(buf, n, NULL));
    int64_t shape[] = {16, 4};
    nn_tensor *x = tu_rand(11, shape, 2, -2, 2);
    nn_tensor *y = TU_NN(nn_model_predict(model, x));
    size_t ny = (size_t)nn_tensor_numel(y);
    float *want = malloc(ny * sizeof(float));
    TU_OK(nn_tensor_copy_to(y, want, ny * sizeof(float)));
    pthread_t th[8];
    job jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (job){model, x, want, ny, 0};
        assert_int_equal(pthread_create(&th[i], NULL, infer_loop, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].mismatches, 0);
    }
    free(want);
    nn_tensor_free(y);
    nn_tensor_free(x);
    nn_model_free(model);
    nn_free(buf);
    nn_module_free(net);
}

/* --------------------------------------------------------- checkpoints */

typedef struct run {
    nn_module *net;
    nn_optim *opt;
    nn_sched *sched;
} run;

static run run_new(void) {
    run r;
    r.net = small_mlp();
    int64_t np = nn_module_num_parameters(r.net);
    nn_tensor *params[16];
    for (int64_t i = 0; i < np; i++) params[i] = nn_module_parameter(r.net, i, NULL);
    r.opt = TU_NN(nn_adam(params, np, 1e-2));
    r.sched = TU_NN(nn_sched_step_lr(r.opt, 2, 0.5));
    return r;
}

static void run_free(run *r) {
    nn_sched_free(r->sched);
    nn_optim_free(r->opt);
    nn_module_free(r->net);
}

/* One epoch of 3 steps on random data drawn from the default generator
 * (so the RNG state matters), with dropout-free MSE; returns the last loss. */
static float run_epoch(run *r) {
    float last = 0;
    for (int k = 0; k < 3; k++) {
        nn_scope *sc = nn_scope_begin();
        int64_t sx[] = {8, 4}, sy[] = {8, 3};
        nn_tensor *x = nn_randn(NULL, sx, 2), *y = nn_randn(NULL, sy, 2);
        TU_OK(nn_optim_zero_grad(r->opt));
        nn_tensor *loss = TU_NN(nn_mse_loss(nn_module_forward(r->net, x), y, NN_REDUCTION_MEAN));
        TU_OK(nn_backward(loss));
        TU_OK(nn_optim_step(r->opt));
        last = (float)nn_tensor_item(loss);
        nn_scope_end(sc);
    }
    TU_OK(nn_sched_step(r->sched));
    return last;
}

static void test_checkpoint_resume(void **s) {
    (void)s;
    float want[6], got[6];
    run a = run_new();
    nn_generator_seed(NULL, 99);
    for (int e = 0; e < 6; e++) want[e] = run_epoch(&a);
    run_free(&a);

    run b = run_new();
    nn_generator_seed(NULL, 99);
    for (int e = 0; e < 3; e++) got[e] = run_epoch(&b);
    nn_io_options *o = nn_io_options_new();
    TU_OK(nn_io_options_set_training(o, b.opt, b.sched, NULL, 3, 9));
    TU_OK(nn_model_save(b.net, tu_tmp_path("ckpt.nnm"), NULL, o));
    run_free(&b);
    nn_generator_seed(NULL, 12345); /* disturb the RNG: the checkpoint restores it */

    run c = run_new();
    int64_t epoch = -1, step = -1;
    TU_OK(nn_checkpoint_load(tu_tmp_path("ckpt.nnm"), c.net, c.opt, c.sched, NULL, &epoch, &step, NULL));
    assert_int_equal(epoch, 3);
    assert_int_equal(step, 9);
    for (int e = 3; e < 6; e++) got[e] = run_epoch(&c);
    run_free(&c);
    for (int e = 0; e < 6; e++)
        if (memcmp(&want[e], &got[e], sizeof(float)) != 0)
            fail_msg("epoch %d: uninterrupted %.9g, resumed %.9g", e, want[e], got[e]);
    /* A plain model file is not a checkpoint. */
    run d = run_new();
    TU_OK(nn_model_save(d.net, tu_tmp_path("plain.nnm"), NULL, NULL));
    assert_int_equal(nn_checkpoint_load(tu_tmp_path("plain.nnm"), d.net, d.opt, NULL, NULL, NULL,
                                        NULL, NULL), NN_ERR_FORMAT);
    tu_expect_error(NN_ERR_FORMAT, "no training section");
    run_free(&d);
    nn_io_options_free(o);
}

/* ------------------------------------------------- weights into a module */

static void test_load_weights_strict(void **s) {
    (void)s;
    nn_module *net = small_mlp();
    nn_statedict *sd = TU_NN(nn_module_state_dict(net));
    TU_OK(nn_statedict_save(sd, tu_tmp_path("weights.nnm"), NULL));
    nn_statedict_free(sd);
    nn_generator_seed(NULL, 1234);
    nn_module *other = nn_sequential_new();
    TU_OK(nn_sequential_append(other, nn_linear_new(4, 8, true)));
    TU_OK(nn_sequential_append(other, nn_relu_new()));
    TU_OK(nn_sequential_append(other, nn_linear_new(8, 3, true)));
    TU_OK(nn_module_load_weights(other, tu_tmp_path("weights.nnm"), NULL, NULL));
    assert_same_weights(net, other);
    /* A smaller network: strict fails, non-strict loads what matches. */
    nn_module *part = nn_sequential_new();
    TU_OK(nn_sequential_append(part, nn_linear_new(4, 8, true)));
    assert_int_not_equal(nn_module_load_weights(part, tu_tmp_path("weights.nnm"), NULL, NULL), NN_OK);
    nn_io_options *o = nn_io_options_new();
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_STRICT, 0));
    char *report = NULL;
    TU_OK(nn_module_load_weights(part, tu_tmp_path("weights.nnm"), o, &report));
    assert_non_null(report);
    assert_non_null(strstr(report, "2.weight"));
    nn_free(report);
    assert_true(nn_tensor_equal(nn_module_get_parameter(part, "0.weight"),
                                nn_module_get_parameter(net, "0.weight")));
    nn_io_options_free(o);
    nn_module_free(part);
    nn_module_free(other);
    nn_module_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_model_roundtrip_meta),
        cmocka_unit_test(test_roundtrip_every_module),
        cmocka_unit_test(test_statedict_sinks),
        cmocka_unit_test(test_truncate_and_flip_every_byte),
        cmocka_unit_test(test_atomic_save_failures),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_limits_and_misuse),
        cmocka_unit_test(test_oom_save_load),
        cmocka_unit_test(test_threads_share_a_model),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_load_weights_strict),
    };
    return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
