/* Tensors: creation, access, views, casting, comparison, printing, RNG. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_create_basic(void **s) {
    (void)s;
    int64_t shape[] = {2, 3};
    nn_tensor *z = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, shape, 2));
    assert_int_equal(nn_tensor_ndim(z), 2);
    assert_int_equal(nn_tensor_numel(z), 6);
    assert_int_equal(nn_tensor_size(z, -1), 3);
    assert_int_equal(nn_tensor_dtype(z), NN_DTYPE_F32);
    assert_true(nn_tensor_is_contiguous(z));
    assert_int_equal((uintptr_t)nn_tensor_data(z) % 64, 0);
    for (int i = 0; i < 6; i++) assert_true(((float *)nn_tensor_data(z))[i] == 0.0f);
    nn_tensor *o = TU_NN(nn_tensor_ones(NN_DTYPE_I64, shape, 2));
    assert_int_equal(((int64_t *)nn_tensor_data(o))[5], 1);
    nn_tensor *f = TU_NN(nn_tensor_full(NN_DTYPE_U8, shape, 2, 7.9));
    assert_int_equal(((uint8_t *)nn_tensor_data(f))[0], 7);
    nn_tensor *sc = TU_NN(nn_tensor_full(NN_DTYPE_F32, NULL, 0, 2.5));
    assert_int_equal(nn_tensor_ndim(sc), 0);
    assert_true(nn_tensor_item(sc) == 2.5);
    nn_tensor *e = TU_NN(nn_tensor_empty(NN_DTYPE_F32, (int64_t[]){0, 4}, 2));
    assert_int_equal(nn_tensor_numel(e), 0);
    nn_tensor_free(z);
    nn_tensor_free(o);
    nn_tensor_free(f);
    nn_tensor_free(sc);
    nn_tensor_free(e);
}

static void test_arange_linspace(void **s) {
    (void)s;
    nn_tensor *a = TU_NN(nn_arange(0, 1, 0.25, NN_DTYPE_F32));
    assert_int_equal(nn_tensor_numel(a), 4);
    assert_true(((float *)nn_tensor_data(a))[3] == 0.75f);
    nn_tensor *b = TU_NN(nn_arange(5, 0, -2, NN_DTYPE_I64));
    assert_int_equal(nn_tensor_numel(b), 3);
    assert_int_equal(((int64_t *)nn_tensor_data(b))[2], 1);
    nn_tensor *l = TU_NN(nn_linspace(-1, 1, 5));
    float want[] = {-1, -0.5f, 0, 0.5f, 1};
    for (int i = 0; i < 5; i++) assert_float_equal(((float *)nn_tensor_data(l))[i], want[i], 1e-7);
    assert_null(nn_arange(0, 1, 0, NN_DTYPE_F32));
    tu_expect_error(NN_ERR_INVALID, "nn_arange");
    nn_tensor_free(a);
    nn_tensor_free(b);
    nn_tensor_free(l);
}

static void test_bad_args(void **s) {
    (void)s;
    int64_t neg[] = {2, -3};
    assert_null(nn_tensor_zeros(NN_DTYPE_F32, neg, 2));
    tu_expect_error(NN_ERR_SHAPE, "negative");
    int64_t huge[] = {INT64_MAX / 2, 4};
    assert_null(nn_tensor_empty(NN_DTYPE_F32, huge, 2));
    tu_expect_error(NN_ERR_OVERFLOW, "nn_tensor_empty");
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_null(nn_tensor_empty(NN_DTYPE_F32, nine, 9));
    tu_expect_error(NN_ERR_LIMIT, "ndim = 9");
    assert_null(nn_tensor_empty(NN_DTYPE_F64, neg, 1));
    tu_expect_error(NN_ERR_DTYPE, "f64");
    assert_null(nn_tensor_empty((nn_dtype)99, neg, 1));
    tu_expect_error(NN_ERR_DTYPE, NULL);
    assert_null(nn_tensor_from_data(NN_DTYPE_F32, (int64_t[]){2}, 1, NULL));
    tu_expect_error(NN_ERR_NULL, "data");
    assert_int_equal(nn_tensor_ndim(NULL), -1);
    tu_expect_error(NN_ERR_NULL, "nn_tensor_ndim");
    assert_true(isnan(nn_tensor_item(NULL)));
    nn_clear_error();
    nn_tensor_free(NULL); /* no-op */
    assert_int_equal(nn_last_status(), NN_OK);
}

static void test_get_set_copy(void **s) {
    (void)s;
    float v[] = {1, 2, 3, 4, 5, 6};
    nn_tensor *t = tu_tensor((int64_t[]){2, 3}, 2, v);
    double out;
    TU_OK(nn_tensor_get(t, (int64_t[]){1, -1}, &out));
    assert_true(out == 6);
    TU_OK(nn_tensor_set(t, (int64_t[]){0, 1}, -2));
    assert_int_equal(nn_tensor_get(t, (int64_t[]){2, 0}, &out), NN_ERR_RANGE);
    tu_expect_error(NN_ERR_RANGE, "index 2 out of range for dim 0");
    float dst[6];
    assert_int_equal(nn_tensor_copy_to(t, dst, 5 * sizeof(float)), NN_ERR_RANGE);
    nn_clear_error();
    TU_OK(nn_tensor_copy_to(t, dst, sizeof dst));
    assert_true(dst[1] == -2 && dst[5] == 6);
    float src[6] = {9, 8, 7, 6, 5, 4};
    TU_OK(nn_tensor_copy_from(t, src, sizeof src));
    TU_OK(nn_tensor_get(t, (int64_t[]){0, 0}, &out));
    assert_true(out == 9);
    TU_OK(nn_tensor_fill(t, 0.5));
    assert_true(nn_tensor_item(t) != nn_tensor_item(t)); /* NaN: not one element */
    tu_expect_error(NN_ERR_SHAPE, "6 elements");
    nn_tensor_free(t);
}

static void test_views_share_data(void **s) {
    (void)s;
    nn_tensor *a = TU_NN(nn_arange(0, 12, 1, NN_DTYPE_F32));
    nn_tensor *m = TU_NN(nn_reshape(a, (int64_t[]){3, -1}, 2));
    assert_int_equal(nn_tensor_size(m, 1), 4);
    /* reshape of contiguous data is a view: writes are shared */
    TU_OK(nn_tensor_set(m, (int64_t[]){2, 3}, 100));
    assert_true(((float *)nn_tensor_data(a))[11] == 100);
    /* transpose is a non-contiguous view; contiguous() copies */
    nn_tensor *t = TU_NN(nn_transpose(m, 0, 1));
    assert_false(nn_tensor_is_contiguous(t));
    assert_null(nn_tensor_data(t));
    tu_expect_error(NN_ERR_STATE, "not contiguous");
    double v;
    TU_OK(nn_tensor_get(t, (int64_t[]){1, 2}, &v));
    assert_true(v == 9);
    nn_tensor *c = TU_NN(nn_tensor_contiguous(t));
    assert_true(((float *)nn_tensor_data(c))[1] == 4); /* t[0][1] = m[1][0] */
    /* slice with step */
    nn_tensor *sl = TU_NN(nn_slice(a, 0, 1, 100, 3)); /* 1,4,7,10 */
    assert_int_equal(nn_tensor_numel(sl), 4);
    TU_OK(nn_tensor_get(sl, (int64_t[]){3}, &v));
    assert_true(v == 10);
    nn_tensor *sl2 = TU_NN(nn_slice(a, 0, -3, -1, 1)); /* 9,10 */
    assert_int_equal(nn_tensor_numel(sl2), 2);
    /* squeeze / unsqueeze / expand / flatten */
    nn_tensor *u = TU_NN(nn_unsqueeze(m, 1));
    assert_int_equal(nn_tensor_ndim(u), 3);
    assert_int_equal(nn_tensor_size(u, 1), 1);
    nn_tensor *q = TU_NN(nn_squeeze(u, 1));
    assert_true(nn_tensor_equal(q, m));
    nn_tensor *row = TU_NN(nn_slice(m, 0, 0, 1, 1));
    nn_tensor *ex = TU_NN(nn_expand(row, (int64_t[]){5, -1}, 2));
    TU_OK(nn_tensor_get(ex, (int64_t[]){4, 3}, &v));
    assert_true(v == 3);
    nn_tensor *fl = TU_NN(nn_flatten(u, 0, -1));
    assert_int_equal(nn_tensor_ndim(fl), 1);
    assert_null(nn_reshape(a, (int64_t[]){5, -1}, 2));
    tu_expect_error(NN_ERR_SHAPE, "nn_reshape");
    assert_null(nn_expand(m, (int64_t[]){3, 5}, 2));
    tu_expect_error(NN_ERR_SHAPE, "nn_expand");
    nn_tensor *ts[] = {a, m, t, c, sl, sl2, u, q, row, ex, fl};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) nn_tensor_free(ts[i]);
}

static int g_deleted;
static void deleter(void *data, void *user) {
    (void)data;
    *(int *)user += 1;
}

static void test_from_blob(void **s) {
    (void)s;
    float buf[4] = {1, 2, 3, 4};
    g_deleted = 0;
    nn_tensor *t = TU_NN(nn_tensor_from_blob(NN_DTYPE_F32, (int64_t[]){4}, 1, buf, deleter, &g_deleted));
    nn_tensor *v = TU_NN(nn_reshape(t, (int64_t[]){2, 2}, 2));
    buf[3] = 40; /* no copy: the tensor sees caller writes */
    double x;
    TU_OK(nn_tensor_get(v, (int64_t[]){1, 1}, &x));
    assert_true(x == 40);
    nn_tensor_free(t);
    assert_int_equal(g_deleted, 0); /* the view still holds the data */
    nn_tensor_free(v);
    assert_int_equal(g_deleted, 1);
    char raw[16];
    assert_null(nn_tensor_from_blob(NN_DTYPE_F32, (int64_t[]){2}, 1, raw + 1, NULL, NULL));
    tu_expect_error(NN_ERR_INVALID, "aligned");
}

static void test_cast_equal_clone(void **s) {
    (void)s;
    float v[] = {-1.7f, 0.2f, 3.9f, 300.0f};
    nn_tensor *t = tu_tensor((int64_t[]){4}, 1, v);
    nn_tensor *i = TU_NN(nn_tensor_to(t, NN_DTYPE_I64));
    int64_t *ip = nn_tensor_data(i);
    assert_true(ip[0] == -1 && ip[1] == 0 && ip[2] == 3 && ip[3] == 300);
    nn_tensor *u = TU_NN(nn_tensor_to(t, NN_DTYPE_U8));
    uint8_t *up = nn_tensor_data(u);
    assert_true(up[0] == 0 && up[2] == 3 && up[3] == 255); /* saturates */
    nn_tensor *back = TU_NN(nn_tensor_to(u, NN_DTYPE_F32));
    assert_true(((float *)nn_tensor_data(back))[3] == 255.0f);
    nn_tensor *c = TU_NN(nn_tensor_clone(t));
    assert_true(nn_tensor_equal(c, t));
    assert_true(nn_tensor_data(c) != nn_tensor_data(t));
    ((float *)nn_tensor_data(c))[0] += 1e-6f;
    assert_false(nn_tensor_equal(c, t));
    assert_true(nn_tensor_allclose(c, t, 1e-5, 1e-5));
    assert_false(nn_tensor_allclose(c, t, 0, 1e-9));
    assert_false(nn_tensor_equal(t, i)); /* dtype differs */
    nn_tensor *ts[] = {t, i, u, back, c};
    for (int k = 0; k < 5; k++) nn_tensor_free(ts[k]);
}

static void test_format(void **s) {
    (void)s;
    nn_tensor *a = TU_NN(nn_arange(0, 100, 1, NN_DTYPE_F32));
    char *str = TU_NN(nn_tensor_format(a, 6));
    assert_non_null(strstr(str, "tensor([100], f32)"));
    assert_non_null(strstr(str, "[0, 1, 2, ..., 97, 98, 99]"));
    nn_free(str);
    nn_tensor *m = TU_NN(nn_reshape(a, (int64_t[]){10, 10}, 2));
    str = TU_NN(nn_tensor_format(m, 4));
    assert_non_null(strstr(str, "[0, 1, ..., 8, 9]"));
    assert_non_null(strstr(str, "..."));
    nn_free(str);
    nn_tensor_free(a);
    nn_tensor_free(m);
}

static void test_rng(void **s) {
    (void)s;
    /* Oracle: an independent Python implementation of splitmix64-seeded
     * xoshiro256** gives these first draws for seed 42. */
    nn_generator *g = TU_NN(nn_generator_new(42));
    assert_true(nn_generator_next(g) == 0x15780b2e0c2ec716ULL);
    assert_true(nn_generator_next(g) == 0x6104d9866d113a7eULL);
    assert_true(nn_generator_next(g) == 0xae17533239e499a1ULL);
    uint64_t st[4];
    TU_OK(nn_generator_get_state(g, st));
    uint64_t a = nn_generator_next(g);
    TU_OK(nn_generator_set_state(g, st));
    assert_true(nn_generator_next(g) == a);
    assert_int_equal(nn_generator_set_state(g, (uint64_t[4]){0, 0, 0, 0}), NN_ERR_INVALID);
    nn_clear_error();

    int64_t shape[] = {20000};
    TU_OK(nn_generator_seed(g, 7));
    nn_tensor *u = TU_NN(nn_rand(g, shape, 1));
    nn_tensor *n = TU_NN(nn_randn(g, shape, 1));
    nn_tensor *b = TU_NN(nn_bernoulli(g, shape, 1, 0.3));
    double su = 0, sn = 0, sn2 = 0, sb = 0;
    const float *pu = nn_tensor_data(u), *pn = nn_tensor_data(n), *pb = nn_tensor_data(b);
    for (int i = 0; i < 20000; i++) {
        assert_true(pu[i] >= 0 && pu[i] < 1);
        su += pu[i];
        sn += pn[i];
        sn2 += (double)pn[i] * pn[i];
        sb += pb[i];
    }
    assert_float_equal(su / 20000, 0.5, 0.01);
    assert_float_equal(sn / 20000, 0.0, 0.03);
    assert_float_equal(sn2 / 20000, 1.0, 0.04);
    assert_float_equal(sb / 20000, 0.3, 0.015);
    /* same seed, same tensor */
    TU_OK(nn_generator_seed(g, 7));
    nn_tensor *u2 = TU_NN(nn_rand(g, shape, 1));
    assert_true(nn_tensor_equal(u, u2));
    nn_tensor *p = TU_NN(nn_randperm(g, 1000));
    char seen[1000] = {0};
    for (int i = 0; i < 1000; i++) seen[((int64_t *)nn_tensor_data(p))[i]]++;
    for (int i = 0; i < 1000; i++) assert_int_equal(seen[i], 1);
    nn_tensor *un = TU_NN(nn_uniform(NULL, (int64_t[]){100}, 1, -2, -1));
    for (int i = 0; i < 100; i++) assert_true(((float *)nn_tensor_data(un))[i] >= -2 && ((float *)nn_tensor_data(un))[i] < -1);
    assert_null(nn_normal(g, shape, 1, 0, -1));
    tu_expect_error(NN_ERR_INVALID, "std");
    nn_tensor *ts[] = {u, n, b, u2, p, un};
    for (int k = 0; k < 6; k++) nn_tensor_free(ts[k]);
    nn_generator_free(g);
}

static void test_scope(void **s) {
    (void)s;
    nn_scope *sc = TU_NN(nn_scope_begin());
    nn_tensor *a = TU_NN(nn_arange(0, 6, 1, NN_DTYPE_F32));
    nn_tensor *kept = NULL;
    nn_scope *inner = TU_NN(nn_scope_begin());
    nn_tensor *v = TU_NN(nn_reshape(nn_reshape(a, (int64_t[]){2, 3}, 2), (int64_t[]){3, 2}, 2));
    kept = nn_tensor_retain(v);
    /* freeing a scope-owned reference is refused, not a double free */
    nn_tensor *b = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, (int64_t[]){2}, 1));
    nn_tensor_free(b);
    tu_expect_error(NN_ERR_STATE, "scope");
    TU_OK(nn_scope_end(inner));
    assert_int_equal(nn_scope_end(inner), NN_ERR_BAD_HANDLE);
    nn_clear_error();
    TU_OK(nn_scope_end(sc));
    assert_int_equal(nn_tensor_numel(kept), 6); /* kept alive by retain */
    nn_tensor_free(kept);
    /* ending an outer scope closes inner ones left open */
    sc = TU_NN(nn_scope_begin());
    TU_NN(nn_scope_begin());
    TU_NN(nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){3}, 1));
    TU_OK(nn_scope_end(sc));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_basic), cmocka_unit_test(test_arange_linspace),
        cmocka_unit_test(test_bad_args),     cmocka_unit_test(test_get_set_copy),
        cmocka_unit_test(test_views_share_data), cmocka_unit_test(test_from_blob),
        cmocka_unit_test(test_cast_equal_clone), cmocka_unit_test(test_format),
        cmocka_unit_test(test_rng),          cmocka_unit_test(test_scope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
