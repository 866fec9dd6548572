/* Loading and building at the format's limits: 65,535 children, 65,536
 * tensors, and in memory a million names. Each load is checked entry by
 * entry against the model it came from. Also: a file whose tensor section
 * comes before its module section (allowed; no writer does it) loads the
 * same.
 *
 * Why these sizes: every name lookup on these paths used to scan its array,
 * so n entries cost O(n^2) string compares. At these n that took 16 s to 44 s
 * per file and hours for the million-name maps, far beyond this test's
 * meson timeout (300 s, x10 under valgrind); with the hash indexes the
 * whole test takes a few seconds. Timing figures are measured by
 * tests/bench/hostile_load.c, not here. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define CHILDREN 65535     /* + the root: the format's 65,536 nodes */
#define LINEARS 32768      /* x (weight, bias): the format's 65,536 tensors */
#define MILLION 1000000

static char g_dir[] = "/tmp/nn_scale_XXXXXX";

static const char *path_of(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

typedef struct membuf {
    const uint8_t *p;
    size_t len, pos;
} membuf;

static int64_t mem_read(void *dst, size_t cap, void *user) {
    membuf *b = user;
    size_t n = b->len - b->pos < cap ? b->len - b->pos : cap;
    memcpy(dst, b->p + b->pos, n);
    b->pos += n;
    return (int64_t)n;
}

/* ---------------------------------------------------------- children */

static void check_children(nn_module *m) {
    assert_int_equal(nn_sequential_length(m), CHILDREN);
    const int probe[] = {0, 1, 17, 4095, 40000, CHILDREN - 1};
    for (size_t i = 0; i < sizeof probe / sizeof *probe; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", probe[i]);
        nn_module *c = TU_NN(nn_module_get_module(m, name));
        assert_ptr_equal(c, nn_sequential_get(m, probe[i]));
        assert_string_equal(nn_module_type_name(c), probe[i] % 2 ? "Tanh" : "ReLU");
    }
    assert_null(nn_module_get_module(m, "65535"));
    tu_expect_error(NN_ERR_NOT_FOUND, "no submodule named '65535'");
}

static void test_children(void **s) {
    (void)s;
    nn_module *seq = nn_sequential_new();
    for (int i = 0; i < CHILDREN; i++)
        TU_OK(nn_sequential_append(seq, i % 2 ? nn_tanh_new() : nn_relu_new()));
    check_children(seq);
    TU_OK(nn_model_save(seq, path_of("children.nnm"), NULL, NULL));
    void *buf;
    size_t n;
    TU_OK(nn_model_save_buffer(seq, NULL, NULL, &buf, &n));

    nn_model *a = TU_NN(nn_model_load(path_of("children.nnm"), NULL));
    check_children(nn_model_module(a));
    nn_model *b = TU_NN(nn_model_load_buffer(buf, n, NULL));
    check_children(nn_model_module(b));
    membuf mb = {buf, n, 0};
    nn_model *c = TU_NN(nn_model_load_stream(mem_read, &mb, NULL));
    check_children(nn_model_module(c));
    /* Saved again, the loaded tree gives the same bytes. */
    void *again;
    size_t n2;
    TU_OK(nn_model_save_buffer(nn_model_module(a), NULL, NULL, &again, &n2));
    assert_int_equal(n, n2);
    assert_memory_equal(buf, again, n);
    nn_free(again);
    nn_model_free(a);
    nn_model_free(b);
    nn_model_free(c);
    nn_free(buf);
    nn_module_free(seq);
}

/* ----------------------------------------------------------- tensors */

/* Linear i of the chain: weight [[i + 0.5]], bias [-i]. */
static nn_module *tensors_model(void) {
    nn_module *seq = nn_sequential_new();
    for (int i = 0; i < LINEARS; i++) {
        nn_module *lin = nn_linear_new(1, 1, true);
        float w = (float)i + 0.5f, b = -(float)i;
        TU_OK(nn_tensor_copy_from(nn_module_get_parameter(lin, "weight"), &w, sizeof w));
        TU_OK(nn_tensor_copy_from(nn_module_get_parameter(lin, "bias"), &b, sizeof b));
        TU_OK(nn_sequential_append(seq, lin));
    }
    return seq;
}

static void check_tensors_module(nn_module *m) {
    assert_int_equal(nn_module_num_parameters(m), 2 * LINEARS);
    for (int64_t k = 0; k < 2 * LINEARS; k++) {
        const char *name;
        nn_tensor *t = TU_NN(nn_module_parameter(m, k, &name));
        int i = atoi(name);
        char want[32];
        snprintf(want, sizeof want, "%d.%s", (int)(k / 2), k % 2 ? "bias" : "weight");
        assert_string_equal(name, want);
        float v;
        TU_OK(nn_tensor_copy_to(t, &v, sizeof v));
        assert_true(v == (k % 2 ? -(float)i : (float)i + 0.5f));
        assert_ptr_equal(t, nn_module_get_parameter(m, name));
    }
}

static void check_tensors_sd(const nn_statedict *sd) {
    assert_int_equal(nn_statedict_size(sd), 2 * LINEARS);
    for (int i = 0; i < LINEARS; i += 7) {
        char name[32];
        float v;
        snprintf(name, sizeof name, "%d.weight", i);
        TU_OK(nn_tensor_copy_to(TU_NN(nn_statedict_get(sd, name)), &v, sizeof v));
        assert_true(v == (float)i + 0.5f);
        snprintf(name, sizeof name, "%d.bias", i);
        TU_OK(nn_tensor_copy_to(TU_NN(nn_statedict_get(sd, name)), &v, sizeof v));
        assert_true(v == -(float)i);
    }
}

static void test_tensors(void **s) {
    (void)s;
    nn_module *seq = tensors_model();
    check_tensors_module(seq);
    nn_io_options *stored = nn_io_options_new();
    TU_OK(nn_io_options_set(stored, NN_IO_OPTION_COMPRESSION, 0));
    TU_OK(nn_model_save(seq, path_of("tensors.nnm"), NULL, NULL));
    TU_OK(nn_model_save(seq, path_of("tensors0.nnm"), NULL, stored));

    nn_model *a = TU_NN(nn_model_load(path_of("tensors.nnm"), NULL));
    check_tensors_module(nn_model_module(a));
    nn_model *b = TU_NN(nn_model_load(path_of("tensors0.nnm"), NULL));
    check_tensors_module(nn_model_module(b));
    nn_statedict *sd = TU_NN(nn_statedict_load(path_of("tensors.nnm"), NULL));
    check_tensors_sd(sd);
    /* Into a fresh tree of the same shape, strictly by name. */
    nn_module *fresh = nn_sequential_new();
    for (int i = 0; i < LINEARS; i++) TU_OK(nn_sequential_append(fresh, nn_linear_new(1, 1, true)));
    TU_OK(nn_module_load_weights(fresh, path_of("tensors0.nnm"), NULL, NULL));
    check_tensors_module(fresh);
    nn_statedict *msd = TU_NN(nn_module_state_dict(fresh));
    check_tensors_sd(msd);
    nn_statedict_free(msd);
    nn_module_free(fresh);
    nn_statedict_free(sd);
    nn_model_free(a);
    nn_model_free(b);
    nn_io_options_free(stored);
    nn_module_free(seq);
}

/* ---------------------------------------------- a million names in memory */

static void test_statedict_million(void **s) {
    (void)s;
    nn_statedict *sd = nn_statedict_new();
    int64_t shape[1] = {1};
    nn_tensor *t[2] = {nn_tensor_zeros(NN_DTYPE_F32, shape, 1),
                       nn_tensor_ones(NN_DTYPE_F32, shape, 1)};
    char name[32];
    for (int i = 0; i < MILLION; i++) {
        snprintf(name, sizeof name, "layer%d.w", i);
        TU_OK(nn_statedict_set(sd, name, t[i % 2]));
    }
    assert_int_equal(nn_statedict_size(sd), MILLION);
    for (int i = 0; i < MILLION; i += 3) {
        snprintf(name, sizeof name, "layer%d.w", i);
        assert_ptr_equal(nn_statedict_get(sd, name), t[i % 2]);
        assert_string_equal(nn_statedict_name(sd, i), name);
    }
    TU_OK(nn_statedict_set(sd, "layer999999.w", t[0])); /* replaces, keeps its place */
    assert_int_equal(nn_statedict_size(sd), MILLION);
    assert_ptr_equal(nn_statedict_tensor(sd, MILLION - 1), t[0]);
    assert_null(nn_statedict_get(sd, "layer1000000.w"));
    tu_expect_error(NN_ERR_NOT_FOUND, "no entry named 'layer1000000.w'");
    nn_statedict_free(sd);
    nn_tensor_free(t[0]);
    nn_tensor_free(t[1]);
}

static nn_tensor *identity_fwd(nn_module *m, nn_tensor *x, void *user) {
    (void)m;
    (void)user;
    return x;
}

static void test_module_million(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_module_custom_new("wide", identity_fwd, NULL, NULL));
    int64_t shape[1] = {1};
    nn_tensor *t = nn_tensor_zeros(NN_DTYPE_F32, shape, 1);
    char name[32];
    for (int i = 0; i < MILLION; i++) {
        snprintf(name, sizeof name, "b%d", i);
        TU_OK(nn_module_register_buffer(m, name, t));
    }
    assert_int_equal(nn_module_register_buffer(m, "b123456", t), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "'b123456' is already registered");
    assert_ptr_equal(nn_module_get_buffer(m, "b999999"), t);
    assert_null(nn_module_get_parameter(m, "b5"));
    /* One tensor under a million names is listed once (like PyTorch). */
    assert_int_equal(nn_module_num_buffers(m), 1);
    nn_module_free(m);
    nn_tensor_free(t);
}

/* 65,536 distinct tensors in one flattened list (the shared-tensor check). */
static void test_flat_list(void **s) {
    (void)s;
    nn_module *m = TU_NN(nn_module_custom_new("many", identity_fwd, NULL, NULL));
    int64_t shape[1] = {1};
    char name[32];
    for (int i = 0; i < 65536; i++) {
        nn_tensor *t = nn_tensor_full(NN_DTYPE_F32, shape, 1, (double)i);
        snprintf(name, sizeof name, "p%d", i);
        TU_OK(nn_module_register_parameter(m, name, t));
        if (i % 1000 == 0) /* a taken name, found through the index */
            assert_int_equal(nn_module_register_parameter(m, name, t), NN_ERR_INVALID);
        nn_tensor_free(t);
    }
    nn_clear_error();
    assert_int_equal(nn_module_num_parameters(m), 65536);
    for (int64_t i = 0; i < 65536; i += 97) {
        const char *nm;
        nn_tensor *t = TU_NN(nn_module_parameter(m, i, &nm));
        float v;
        TU_OK(nn_tensor_copy_to(t, &v, sizeof v));
        assert_true(v == (float)i);
        snprintf(name, sizeof name, "p%d", (int)i);
        assert_string_equal(nm, name);
    }
    nn_module_free(m);
}

static void test_meta_many_keys(void **s) {
    (void)s;
    enum { KEYS = 300000, SAVED = 65536 };
    nn_meta *big = nn_meta_new(), *saved = nn_meta_new();
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "k%d", i);
        TU_OK(nn_meta_set_number(big, key, i));
        if (i < SAVED) TU_OK(nn_meta_set_number(saved, key, -i));
    }
    TU_OK(nn_meta_set_number(big, "k7", 7.5)); /* replaces */
    assert_int_equal(nn_meta_count(big), KEYS);
    for (int i = 0; i < KEYS; i += 11) {
        double v;
        snprintf(key, sizeof key, "k%d", i);
        TU_OK(nn_meta_get_number(big, key, &v));
        assert_true(v == (i == 7 ? 7.5 : i));
    }
    /* The format's 65,536 keys, through a file. */
    nn_module *m = nn_sequential_new();
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_model_save(m, path_of("meta.nnm"), saved, NULL));
    nn_model *l = TU_NN(nn_model_load(path_of("meta.nnm"), NULL));
    const nn_meta *lm = nn_model_meta(l);
    assert_int_equal(nn_meta_count(lm), SAVED);
    for (int i = 0; i < SAVED; i += 5) {
        double v;
        snprintf(key, sizeof key, "k%d", i);
        TU_OK(nn_meta_get_number(lm, key, &v));
        assert_true(v == -i);
        assert_string_equal(nn_meta_key(lm, i), key);
    }
    nn_model_free(l);
    nn_module_free(m);
    nn_meta_free(big);
    nn_meta_free(saved);
}

/* ------------------------------------------------------ section order */

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* The same file with its sections in the order given (indices into the
 * original order), the file CRC made right again. */
static uint8_t *reorder(const uint8_t *d, size_t n, const int *order, int count) {
    size_t at[8], len[8], pos = 32;
    for (int i = 0; i < count; i++) {
        at[i] = pos;
        len[i] = 24 + (size_t)get64(d + pos + 8);
        pos += len[i];
    }
    assert_int_equal(pos, n - 8);
    uint8_t *o = malloc(n);
    memcpy(o, d, 32);
    pos = 32;
    for (int i = 0; i < count; i++) {
        memcpy(o + pos, d + at[order[i]], len[order[i]]);
        pos += len[order[i]];
    }
    memcpy(o + pos, d + pos, 4); /* NEND */
    uint32_t crc = (uint32_t)crc32(0, o, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) o[n - 4 + i] = (uint8_t)(crc >> (8 * i));
    return o;
}

static void test_tensor_section_first(void **s) {
    (void)s;
    nn_module *net = nn_sequential_new();
    TU_OK(nn_sequential_append(net, nn_linear_new(5, 4, true)));
    TU_OK(nn_sequential_append(net, nn_batch_norm1d_new(4, 1e-5, 0.1, true)));
    nn_meta *meta = nn_meta_new();
    TU_OK(nn_meta_set_string(meta, "description", "order"));
    void *buf;
    size_t n;
    TU_OK(nn_model_save_buffer(net, meta, NULL, &buf, &n));
    const int orders[2][3] = {{2, 1, 0}, {0, 2, 1}}; /* tensors, module, meta / meta, tensors, module */
    for (int k = 0; k < 2; k++) {
        uint8_t *o = reorder(buf, n, orders[k], 3);
        nn_model *m = TU_NN(nn_model_load_buffer(o, n, NULL));
        nn_statedict *a = TU_NN(nn_module_state_dict(net)), *b = TU_NN(nn_module_state_dict(nn_model_module(m)));
        assert_int_equal(nn_statedict_size(a), nn_statedict_size(b));
        for (int64_t i = 0; i < nn_statedict_size(a); i++) {
            assert_string_equal(nn_statedict_name(a, i), nn_statedict_name(b, i));
            assert_true(nn_tensor_equal(nn_statedict_tensor(a, i), nn_statedict_tensor(b, i)));
        }
        assert_string_equal(nn_meta_get_string(nn_model_meta(m), "description"), "order");
        nn_statedict_free(a);
        nn_statedict_free(b);
        nn_model_free(m);
        free(o);
    }
    nn_free(buf);
    nn_meta_free(meta);
    nn_module_free(net);
}

static int setup(void **s) {
    (void)s;
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    const char *names[] = {"children.nnm", "tensors.nnm", "tensors0.nnm", "meta.nnm"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) unlink(path_of(names[i]));
    return rmdir(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_children),         cmocka_unit_test(test_tensors),
        cmocka_unit_test(test_statedict_million), cmocka_unit_test(test_module_million),
        cmocka_unit_test(test_flat_list),         cmocka_unit_test(test_meta_many_keys),
        cmocka_unit_test(test_tensor_section_first),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
